#!/bin/sh
# bench/llama_cpp_compare.sh — llama.cpp's llama-bench and `bastion bench model` on the same model,
# same machine, same run, side by side (issue #9's last target). Not part of CI: building
# llama.cpp takes many minutes on two cores.
#
# Where llama.cpp comes from: the PyPI source distribution of llama-cpp-python, which vendors
# llama.cpp (vendor/llama.cpp). `pip download --no-binary :all:` fetches the sdist only — no
# wheel, no code is run — and the script builds the `llama-bench` target alone with CMake: CPU
# only, -DGGML_NATIVE=ON (the same ISA this machine gives Bastion's own dispatch), Release.
#
# Usage: bench/llama_cpp_compare.sh [BUILD_DIR]
#   BUILD_DIR     a configured and built Bastion build tree (default: build-bench); the download,
#                 the llama.cpp build and every output go to BUILD_DIR/llama-cpp/ (the build
#                 tree is git-ignored; nothing is committed)
# Environment:
#   LLAMA_CPP_PYTHON_VERSION  the sdist to build (default 0.3.36)
#   MODEL      the GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   THREADS    threads of both engines (default 2)
#   PP, TG     comma-separated prompt and generation lengths (default 64,512 and 32,128; paired
#              in order: pp64 with tg32, pp512 with tg128, one Bastion row per pair)
#   REPS       repetitions (default 5, llama-bench's default)
#   BACKENDS   Bastion's --backend list (default cpu)
#   BUILD_JOBS parallel compile jobs for llama.cpp (default 2)
#   LLAMA_BENCH_ARGS  extra llama-bench arguments (e.g. "--poll 0"), recorded in the table
#   KV         the KV cache dtype of both engines, f16 (default: llama-bench's own default) or
#              f32: llama-bench -ctk/-ctv, bastion --kv-type (both default to f16)
#   DEPTH      tokens already in the KV cache when each pp and tg repetition starts (default 0):
#              llama-bench -d, bastion bench model -d; tests then read "tg128 @ d4096"
#   REQUANT    a llama.cpp quantization type (e.g. Q4_0): run both engines on a copy of MODEL
#              requantized to it by llama.cpp's own llama-quantize (--allow-requantize; built
#              here too), kept in BUILD_DIR/llama-cpp/models/. The default model is Q4_1, which
#              llama.cpp's CPU backend has no repacked or tinyBLAS kernels for; Q4_0 it has, so
#              REQUANT=Q4_0 compares against llama.cpp at its best
#
# Outputs in BUILD_DIR/llama-cpp/t<THREADS>[-<REQUANT>][-d<DEPTH>]/ (a nonzero DEPTH only; the
# download and build stay in llama-cpp/):
#   llama-bench.json   llama-bench -o json, as it wrote it
#   bastion-pP-nN.json one `bastion bench model --json` document per (pp, tg) pair
#   compare.json       one `bastion.bench/1` model document (readable by `bastion bench report`
#                      and `bastion bench compare`): Bastion's rows, then one row per pair for
#                      llama.cpp with "engine": "llama.cpp" (bench/SCHEMA.md, "llama.cpp rows")
#   compare.md         the side-by-side table this script prints
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-bench}
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
MODEL=${MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
PP=${PP:-64,512}
TG=${TG:-32,128}
REPS=${REPS:-5}
KV=${KV:-f16}
case $KV in f16 | f32) ;; *) echo "KV is f16 or f32, not '$KV'" >&2; exit 2 ;; esac
DEPTH=${DEPTH:-0}
case $DEPTH in '' | *[!0-9]*) echo "DEPTH is a token count, not '$DEPTH'" >&2; exit 2 ;; esac
BACKENDS=${BACKENDS:-cpu}
JOBS=${BUILD_JOBS:-2}
OUT=$BUILD/llama-cpp
REQUANT=${REQUANT:-}
RES=$OUT/t$THREADS${REQUANT:+-$REQUANT}
[ "$DEPTH" -eq 0 ] || RES=$RES-d$DEPTH # so runs at different depths keep their own outputs
LB_ARGS=${LLAMA_BENCH_ARGS:-}
BASTION=$BUILD/bin/bastion

log() { printf '[llama_cpp_compare] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$MODEL" ] || die "$MODEL not found: run tools/fetch-model.sh"
command -v python3 >/dev/null || die "python3 is needed (pip download, JSON merging)"
command -v cmake >/dev/null || die "cmake is needed to build llama.cpp"
mkdir -p "$OUT/dl"

# 1. The source distribution (sdist only: --no-binary :all:, --no-deps).
SDIST=$(ls "$OUT"/dl/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
    log "downloading llama-cpp-python==$VERSION (source distribution) from PyPI"
    python3 -m pip download --no-deps --no-binary :all: \
        "llama-cpp-python==$VERSION" -d "$OUT/dl" >&2 ||
        die "pip download of llama-cpp-python==$VERSION failed (is PyPI reachable?)"
    SDIST=$(ls "$OUT"/dl/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null) ||
        die "pip download left no llama_cpp_python-$VERSION.tar.gz in $OUT/dl"
fi
SRC=$OUT/src/llama_cpp_python-$VERSION
if [ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]; then
    log "unpacking $SDIST"
    mkdir -p "$OUT/src"
    tar -xzf "$SDIST" -C "$OUT/src"
    [ -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ] ||
        die "$SDIST has no vendor/llama.cpp/CMakeLists.txt"
fi

# 2. llama-bench alone, CPU only, native ISA, Release. No network at configure time (no curl, no
# tests, no server).
LB=$OUT/build/bin/llama-bench
if [ ! -x "$LB" ]; then
    log "configuring llama.cpp (CPU only, GGML_NATIVE, Release)"
    cmake -S "$SRC/vendor/llama.cpp" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF \
        -DGGML_BLAS=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON >"$OUT/cmake.log" 2>&1 ||
        die "configuring llama.cpp failed: see $OUT/cmake.log"
    log "building llama-bench with $JOBS jobs (this takes a while; log: $OUT/build.log)"
    cmake --build "$OUT/build" --target llama-bench -j "$JOBS" >"$OUT/build.log" 2>&1 ||
        die "building llama-bench failed: see $OUT/build.log"
    [ -x "$LB" ] || LB=$(find "$OUT/build" -name llama-bench -type f -perm -u+x | head -n 1)
    if [ -z "$LB" ] || [ ! -x "$LB" ]; then die "the build produced no llama-bench binary"; fi
fi
# 2b. Optionally the model requantized by llama.cpp itself.
if [ -n "$REQUANT" ]; then
    LQ=$OUT/build/bin/llama-quantize
    if [ ! -x "$LQ" ]; then
        log "building llama-quantize (log: $OUT/build.log)"
        cmake --build "$OUT/build" --target llama-quantize -j "$JOBS" >>"$OUT/build.log" 2>&1 ||
            die "building llama-quantize failed: see $OUT/build.log"
    fi
    QMODEL=$OUT/models/$(basename "$MODEL" .gguf).requant-$REQUANT.gguf
    if [ ! -f "$QMODEL" ]; then
        mkdir -p "$OUT/models"
        log "requantizing $MODEL to $REQUANT"
        "$LQ" --allow-requantize "$MODEL" "$QMODEL.part" "$REQUANT" >"$OUT/quantize.log" 2>&1 ||
            die "llama-quantize to $REQUANT failed: see $OUT/quantize.log"
        mv "$QMODEL.part" "$QMODEL"
    fi
    MODEL=$QMODEL
fi
[ "${LLAMA_CPP_BUILD_ONLY:-0}" = 1 ] && { log "built $LB"; exit 0; }
[ -x "$BASTION" ] || die "$BASTION not found: build Bastion first (cmake --build $BUILD --target bastion-cli)"

# 3. Both engines, one after the other, in this one run. The load average goes into the table:
# on a shared machine it says more about the numbers than anything else (a spinning thread
# pool loses most when the cores are oversubscribed).
mkdir -p "$RES"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "llama-bench -t $THREADS -p $PP -n $TG -d $DEPTH -r $REPS -ctk $KV -ctv $KV $LB_ARGS"
# shellcheck disable=SC2086
"$LB" -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" -d "$DEPTH" -r "$REPS" -ctk "$KV" -ctv "$KV" \
    $LB_ARGS -o json \
    >"$RES/llama-bench.json" || die "llama-bench failed"

pairs=$(python3 - "$PP" "$TG" <<'EOF'
import sys
pp = [int(x) for x in sys.argv[1].split(",") if x]
tg = [int(x) for x in sys.argv[2].split(",") if x]
if len(pp) != len(tg):
    sys.exit("PP and TG must list the same number of lengths (they are paired in order)")
print(" ".join(f"{p}:{n}" for p, n in zip(pp, tg)))
EOF
) || die "bad PP/TG lists"
docs=""
for pair in $pairs; do
    p=${pair%:*}
    n=${pair#*:}
    doc=$RES/bastion-p$p-n$n.json
    log "bastion bench model -p $p -n $n -d $DEPTH -r $REPS --threads $THREADS --kv-type $KV --backend $BACKENDS"
    "$BASTION" bench model -m "$MODEL" -p "$p" -n "$n" -d "$DEPTH" -r "$REPS" --threads "$THREADS" \
        --kv-type "$KV" --backend "$BACKENDS" --json "$doc" >/dev/null ||
        die "bastion bench model failed"
    docs="$docs $doc"
done

# 4. One document and the side-by-side table.
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck disable=SC2086
python3 - "$RES/llama-bench.json" "$RES/compare.json" "$RES/compare.md" "$VERSION" \
    "$load_before" "$load_after" "$LB_ARGS" $docs <<'EOF'
import json, statistics, sys

lb_path, out_json, out_md, version, load_before, load_after, lb_args, *docs = sys.argv[1:]
with open(lb_path) as f:
    lb = json.load(f)
bastion = []
for d in docs:
    with open(d) as f:
        bastion.append(json.load(f))
base = bastion[0]

def lb_test(n_prompt, n_gen, n_depth):
    # llama-bench builds before -d wrote no n_depth: theirs ran from an empty cache.
    for t in lb:
        if (t.get("n_prompt") == n_prompt and t.get("n_gen") == n_gen
                and t.get("n_depth", 0) == n_depth):
            return t
    return None

def timing(t):
    """A bastion.bench timing object from llama-bench's samples (ns per whole test)."""
    s = [int(x) for x in t.get("samples_ns", [])]
    if not s:
        return None
    n = len(s)
    return {
        "first_ns": 0,  # llama-bench runs one untimed warm-up and does not report it
        "warmup": 1,
        "samples_ns": s,
        "stats": {
            "n": n, "median_ns": float(statistics.median(s)), "min_ns": float(min(s)),
            "max_ns": float(max(s)), "mean_ns": float(statistics.fmean(s)),
            "stddev_ns": float(statistics.stdev(s)) if n > 1 else 0.0,
        },
    }

rows = []
for d in bastion:
    for r in d["model_results"]:
        r.setdefault("engine", "bastion")
        rows.append(r)
lb_rows = []
for d in bastion:
    r0 = d["model_results"][0]
    p, n, dep = r0["n_prompt"], r0["n_gen"], r0.get("n_depth", 0)
    tp, tt = lb_test(p, 0, dep), lb_test(0, n, dep)
    if tp is None or tt is None:
        sys.exit(f"llama-bench has no pp{p}/tg{n} test at depth {dep}")
    info = tp
    row = {
        "engine": "llama.cpp",
        "engine_version": f"llama-cpp-python {version}, llama.cpp build {info.get('build_number')}"
                          f" ({info.get('build_commit')})",
        "backends": "llama.cpp:" + str(info.get("backends", "CPU")),
        "status": "ok", "reason": "",
        "n_prompt": p, "n_gen": n, "n_depth": int(tp.get("n_depth", 0)),
        "reps": len(tp.get("samples_ns", [])),
        "threads": int(info.get("n_threads", 0)),
        "kv_type": str(info.get("type_k", "")),
        "load_s": None, "session_s": None, "pp_cold_tps": None, "tg_cold_tps": None,
        "pp_timing": timing(tp), "tg_timing": timing(tt),
        "pp_tps": p / (statistics.median(tp["samples_ns"]) * 1e-9),
        "tg_tps": n / (statistics.median(tt["samples_ns"]) * 1e-9),
        # The Bastion row's roofline: same model, KV cache type, lengths and depth (lb_test
        # matched the depth), so the same bytes per token.
        "weight_bytes_per_token": r0.get("weight_bytes_per_token"),
        "kv_bytes_per_token": r0.get("kv_bytes_per_token"),
        "roofline_tps": r0.get("roofline_tps"),
        "roofline_fraction": None,
        "peak_rss_bytes": 0,
        "llama_bench": {"pp": tp, "tg": tt},
    }
    if row["roofline_tps"]:
        row["roofline_fraction"] = row["tg_tps"] / row["roofline_tps"]
    lb_rows.append(row)

doc = dict(base)
doc["command"] = "bench/llama_cpp_compare.sh: " + " | ".join(d["command"] for d in bastion)
doc["model_results"] = rows + lb_rows
doc["load_average"] = {"before": load_before, "after": load_after}
with open(out_json, "w") as f:
    json.dump(doc, f, indent=1)

def best(row, kind):
    """tok/s of the fastest repetition: on a shared machine interference only ever slows a run
    down, so the best repetition is the least disturbed one."""
    t = row.get(kind + "_timing")
    n = row["n_prompt"] if kind == "pp" else row["n_gen"]
    return n / (min(t["samples_ns"]) * 1e-9) if t and t.get("samples_ns") else None

def cell(v):
    return f"{v:.2f}" if v else "-"

def test_name(row, kind):
    """As llama-bench and `bastion bench report` name a test: pp512, tg128 @ d4096."""
    n = row["n_prompt"] if kind == "pp" else row["n_gen"]
    depth = row.get("n_depth", 0)
    return f"{kind}{n}" + (f" @ d{depth}" if depth else "")

lines = ["| test | bastion tok/s | llama.cpp tok/s | bastion / llama.cpp | bastion best | "
         "llama.cpp best | best / best |",
         "|---|---:|---:|---:|---:|---:|---:|"]
for r, l in zip(rows, lb_rows):
    for kind, key in (("pp", "pp_tps"), ("tg", "tg_tps")):
        b, c = r.get(key), l.get(key)
        bb, cb = best(r, kind), best(l, kind)
        ratio = f"{b / c:.3f}" if b and c else "-"
        bratio = f"{bb / cb:.3f}" if bb and cb else "-"
        lines.append(f"| {test_name(r, kind)} | {cell(b)} | {cell(c)} | {ratio} | {cell(bb)} | "
                     f"{cell(cb)} | {bratio} |")
lines.append("")
lines.append("tok/s columns: medians of the repetitions; best: the fastest repetition.")
m = base["machine"]
head = (f"model {base['model']['path']} ({base['model']['file_hash'][:23]}...), "
        f"{rows[0]['threads']} threads, KV cache {rows[0].get('kv_type', '?')} (llama.cpp "
        f"{lb_rows[0].get('kv_type') or '?'}), {m['cpu_model']}\n"
        f"bastion {base['bastion']['version']} ({base['bastion']['git_commit'][:12]}), "
        f"--backend {rows[0]['backends'] or '(default)'}; {lb_rows[0]['engine_version']}\n"
        f"llama-bench extra arguments: {lb_args or '(none)'}; load average (1, 5, 15 min) "
        f"before {load_before}, after {load_after}\n")
for r in rows:  # each Bastion row's roofline: weight + KV bytes per token at its tg bandwidth
    bw = r.get("tg_bandwidth_gbs") or base["baselines"]["bandwidth"]["gbs"]
    head += (f"roofline {test_name(r, 'tg')}: {r.get('roofline_tps') or 0:.1f} tok/s (read "
             f"bandwidth {bw:.2f} GB/s, range {r.get('tg_bandwidth_min_gbs') or bw:.2f}-"
             f"{r.get('tg_bandwidth_max_gbs') or bw:.2f}, sampled around Bastion's tg "
             f"repetitions / weight and KV cache bytes per token)\n")
text = head + "\n" + "\n".join(lines) + "\n"
with open(out_md, "w") as f:
    f.write(text)
print(text, end="")
EOF
log "wrote $RES/compare.json and $RES/compare.md"
