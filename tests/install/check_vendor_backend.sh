#!/usr/bin/env bash
# A vendor's path, end to end, against an installed Bastion only: install the build tree into a
# temporary prefix, copy the vendor-backend example from the install (share/bastion/examples),
# build it with CMake (find_package) and with its Makefile (pkg-config), check it exports only
# bst_backend_entry, load it through BASTION_BACKEND_PATH (`bastion backends --json` must show it
# loaded with its device), run `bastion conformance` on it (every case it claims passes, the ABI
# checks pass), then run a small graph with `--backend acme,cpu` and compare every output value
# with the CPU backend's.
set -euo pipefail
build_dir=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check_vendor_backend: $*" >&2; exit 1; }

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
unset BASTION_BACKEND_PATH BASTION_BACKENDS BASTION_BACKENDS_DISABLE
libdir=$(ls -d "$work"/prefix/lib*/ | head -1)
bastion="$work/prefix/bin/bastion"
example="$work/prefix/share/bastion/examples/vendor-backend"
test -f "$example/CMakeLists.txt" || fail "the example is not installed at $example"

# A vendor copies the folder and builds it; no Bastion source tree is involved. Built without
# the sanitizer flags of the tree under test: the installed `bastion` is what loads it.
cp -r "$example" "$work/src"
env -u CFLAGS -u LDFLAGS cmake -S "$work/src" -B "$work/build" \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_C_FLAGS=-Werror >/dev/null
cmake --build "$work/build" >/dev/null
plugin="$work/build/libbst-backend-acme.so"
test -f "$plugin" || fail "the CMake build made no $plugin"
exports=$(nm -D --defined-only "$plugin" | awk '{print $3}')
[ "$exports" = "bst_backend_entry" ] || fail "the plugin exports '$exports', not only bst_backend_entry"
if readelf -d "$plugin" | grep -q 'libbastion'; then fail "the plugin links libbastion"; fi

# The pkg-config route builds the same plugin.
cp -r "$example" "$work/src-make"
env -u LDFLAGS PKG_CONFIG_PATH="${libdir}pkgconfig" CFLAGS="-O2 -Werror" \
    make -C "$work/src-make" >/dev/null
test -f "$work/src-make/libbst-backend-acme.so" || fail "the Makefile made no plugin"

# Loaded, with its device, through BASTION_BACKEND_PATH.
export BASTION_BACKEND_PATH="$work/build"
"$bastion" backends --json > "$work/backends.json"
python3 - "$work/backends.json" "$plugin" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
acme = [p for p in doc["plugins"] if p["name"] == "acme"]
assert len(acme) == 1, "acme is not listed: %s" % [p["name"] for p in doc["plugins"]]
p = acme[0]
assert p["state"] == "loaded", "acme is %s: %s" % (p["state"], p["detail"])
assert p["path"] == sys.argv[2], p["path"]
assert p["version"] == "0.1.0", p["version"]
assert p["abi_version"] >= 1, p["abi_version"]
names = [d["name"] for d in p["devices"]]
assert names == ["ACME Example Accelerator"], names
EOF

# The conformance kit: every case acme claims passes, each of its four ops is claimed, nothing
# else is, and the ABI checks pass.
"$bastion" conformance --backend acme --json "$work/conformance.json" > "$work/conformance.txt" ||
    { cat "$work/conformance.txt" >&2; fail "bastion conformance reported a failure"; }
python3 - "$work/conformance.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
s = doc["summary"]
assert doc["ok"] is True and doc["fatal"] is None, doc["fatal"]
for k in ("fail", "crash", "timeout", "abi_fail"):
    assert s[k] == 0, "%s: %d" % (k, s[k])
passed = {c["op"] for c in doc["cases"] if c["result"] == "pass"}
assert passed == {"add", "mul", "silu", "matmul"}, passed
assert doc["abi_checks"] and all(c["result"] == "pass" for c in doc["abi_checks"]), doc["abi_checks"]
EOF

# A graph on acme (with the CPU backend for anything acme declines), against the CPU alone.
cat > "$work/vendor.bir" <<'EOF'
%x = input f32[n_tokens:8,64] "x"
%w = input f32[48,64] "w"
%b = input f32[48] "b"
%h = matmul %x, %w ; f32[n_tokens:8,48]
%g = silu %h ; f32[n_tokens:8,48]
%m = mul %g, %h ; f32[n_tokens:8,48]
%y = add %m, %b ; f32[n_tokens:8,48]
output %y "y"
EOF
for bind in 8 3; do
    "$bastion" run-graph "$work/vendor.bir" --backend acme,cpu --bind n_tokens=$bind --seed 7 \
        --describe --print --limit 100000 > "$work/acme.txt"
    "$bastion" run-graph "$work/vendor.bir" --backend cpu --bind n_tokens=$bind --seed 7 \
        --print --limit 100000 > "$work/cpu.txt"
    python3 - "$work/acme.txt" "$work/cpu.txt" $bind <<'EOF'
import re, sys
acme_text, cpu_text, rows = open(sys.argv[1]).read(), open(sys.argv[2]).read(), int(sys.argv[3])
# Every compute node ran on acme: the placement lists acme and never the CPU backend.
placement = acme_text.split("output y", 1)[0]
assert "acme" in placement, "no node on acme:\n" + placement
assert not re.search(r"\bcpu/", placement), "a node fell back to the CPU backend:\n" + placement
def values(text):
    body = text.split("output y", 1)[1]
    return [float(v) for line in body.splitlines() if line.startswith("  [")
            for v in line.split("]", 1)[1].split()]
a, c = values(acme_text), values(cpu_text)
assert len(a) == len(c) == rows * 48, (len(a), len(c))
err = sum((x - y) ** 2 for x, y in zip(a, c))
ref = sum(y * y for y in c)
nmse = err / ref
# test_backend_ops' bound for f32 matmul is 5e-4; f32 against f32 lands near 1e-14.
assert nmse <= 1e-10, "acme differs from cpu: NMSE %g" % nmse
print("n_tokens=%d: %d values, NMSE %.3g" % (rows, len(a), nmse))
EOF
done
echo "vendor backend check passed"
