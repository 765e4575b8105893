/*
 * bench/bench.h — the benchmark harness behind `bastion bench`: what a backend is worth on this
 * machine, measured the way the model will run and recorded so that a run can be reproduced and
 * compared.
 *
 * The pieces, in the order a run uses them:
 *  - machine facts (CPU, ISA flags, caches, memory) from /proc and sysfs;
 *  - cases: op x dtype x shape, from the default set (the default model's shapes and the
 *    standard GEMV/GEMM shapes) or the command line, each with its tensor descriptors and its
 *    own flop and byte counts;
 *  - baselines measured in the same run: a STREAM-style read over >= 4x the last-level cache,
 *    and OpenBLAS cblas_sgemm for f32 matmul;
 *  - the op runner: every case on every device and kernel variant, at the plugin ABI (through
 *    bst_context_device_backend), weights rotated through copies larger than the LLC so they are
 *    read cache-cold, each case held to a time budget;
 *  - the JSON document (schema "bastion.bench/1", bench/SCHEMA.md), and what is built from it:
 *    Markdown/CSV/SVG reports and run-to-run comparisons.
 *
 * This is tool code, linked into the `bastion` command and the tests, never into libbastion or a
 * plugin. It prints nothing on its own (reports go to the FILE the caller passes), returns
 * bst_status on every fallible call with the message in a caller-provided bench_error, and uses
 * only the public API plus the experimental device entry point. Not thread-safe: one run at a
 * time per process.
 */
#ifndef BASTION_BENCH_H
#define BASTION_BENCH_H

#include <bastion/bastion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_SCHEMA_ID "bastion.bench/1"

/* --- errors, time, statistics ---------------------------------------------------------------- */

typedef struct bench_error {
    bst_status status;
    char msg[512];
} bench_error;

/* Records `st` and the message in *e (e may be NULL) and returns st. */
bst_status bench_fail(bench_error *e, bst_status st, const char *fmt, ...) BST_PRINTF(3, 4);
/* Same, with "what: " followed by the library's bst_last_error(). */
bst_status bench_lib_fail(bench_error *e, bst_status st, const char *what);

uint64_t bench_now_ns(void); /* CLOCK_MONOTONIC */

typedef struct bench_stats {
    uint32_t n;
    double median_ns, min_ns, max_ns, mean_ns, stddev_ns; /* stddev: sample (n - 1) */
} bench_stats;

/* Statistics of n samples (n may be 0: all zero). Needs a sorted copy: may fail on memory. */
BST_MUST_CHECK bst_status bench_stats_compute(const uint64_t *samples, uint32_t n,
                                              bench_stats *out, bench_error *e);

/* How long to measure one case: warm-up calls (at least one; more, up to max_warmup, while they
 * take under 5% of the budget), then timed calls until `seconds` have passed and at least
 * min_reps were taken — min_reps yields when the next call would end past twice the budget —
 * or max_reps were taken. seconds = 0 takes exactly min_reps (at most max_reps). */
typedef struct bench_budget {
    double seconds;
    uint32_t min_reps, max_reps, max_warmup;
} bench_budget;

typedef struct bench_timing {
    uint64_t first_ns; /* the first call (cold: first touch, lazy set-up) */
    uint32_t warmup;   /* warm-up calls, the first included */
    uint32_t n_samples;
    uint64_t *samples_ns; /* owned */
    bench_stats stats;
} bench_timing;

void bench_timing_free(bench_timing *t);

/* One timed call; `iteration` counts every call from 0 (warm-up included), for rotation. */
typedef bst_status (*bench_call_fn)(void *user, uint64_t iteration, bench_error *e);

/* Runs fn as `b` says and fills *out (freed by the caller with bench_timing_free, also on
 * failure). A failing call ends the measurement with its status. */
BST_MUST_CHECK bst_status bench_measure(const bench_budget *b, bench_call_fn fn, void *user,
                                        bench_timing *out, bench_error *e);
/* The same, calling `between` before every call of fn, outside the call's timing (bench model
 * samples the memory bandwidth there). */
BST_MUST_CHECK bst_status bench_measure_between(const bench_budget *b, bench_call_fn fn,
                                                bench_call_fn between, void *user,
                                                bench_timing *out, bench_error *e);

/* --- machine ------------------------------------------------------------------------------- */

#define BENCH_MAX_CACHES 8
#define BENCH_MAX_ISA 64

typedef struct bench_cache {
    uint32_t level;
    char type[16]; /* "Data", "Instruction", "Unified" */
    uint64_t size_bytes;
    char shared_cpus[64]; /* sysfs shared_cpu_list, e.g. "0-1" */
} bench_cache;

typedef struct bench_machine {
    char cpu_model[128];
    char cpu_vendor[64];
    char os[128]; /* "Linux 6.1.0-18-amd64 x86_64" */
    uint32_t logical_cpus;   /* online */
    uint32_t physical_cores; /* distinct (physical id, core id); 0 if unknown */
    uint32_t n_isa;
    char isa[BENCH_MAX_ISA][24]; /* SIMD-relevant /proc/cpuinfo flags, in file order */
    uint32_t n_caches;
    bench_cache caches[BENCH_MAX_CACHES];
    uint64_t llc_bytes;    /* largest data/unified cache of cpu0; 0 if unknown */
    uint64_t memory_bytes; /* MemTotal */
} bench_machine;

/* Everything this machine tells about itself; unknown facts stay 0 / "". Never fails. */
void bench_machine_probe(bench_machine *out);
/* The parts of bench_machine_probe, separated so tests can feed them their own files. */
void bench_machine_parse_cpuinfo(const char *text, bench_machine *m);
/* Reads level, type, size and shared_cpu_list of every index directory under `dir` (a sysfs
 * cpu cache directory such as /sys/devices/system/cpu/cpu0/cache). */
void bench_machine_read_caches(const char *dir, bench_machine *m);
/* "32768K", "1M", "512" -> bytes. False on junk or overflow. */
bool bench_parse_size(const char *text, uint64_t *out);

/* --- cases --------------------------------------------------------------------------------- */

/* One op x dtype x shape. dims follow the op's shape form (bench_op_shape_form): matmul is
 * MxNxK as ggml and BLAS write it — M output features (weight rows), N tokens (activation rows),
 * K the reduced dim; a GEMV has N = 1. The other ops take their input's shape. */
/* Dims of a case's shape: a tensor's four, or attention's five (TxSxHQxHKVxD). */
#define BENCH_CASE_MAX_DIMS 5

typedef struct bench_case {
    bst_op op;
    bst_dtype dtype; /* matmul: the weight's dtype; other ops: the input's */
    uint32_t rank;
    int64_t dims[BENCH_CASE_MAX_DIMS];
    char shape[64]; /* dims joined by 'x' */
    char label[48]; /* where the case comes from, e.g. "smollm2 ffn_up", "std gemv" */
} bench_case;

typedef struct bench_case_list {
    bench_case *items;
    size_t n, cap;
} bench_case_list;

typedef struct bench_selection {
    const char *ops;    /* comma-separated op names, NULL = every op of the default set */
    const char *dtypes; /* comma-separated dtype names, NULL = each op's defaults */
    const char *const *shapes; /* user shapes (replace the default shapes), may be NULL */
    uint32_t n_shapes;
    bool quick; /* the default set cut to small decode-size cases (what tests run) */
} bench_selection;

/* Ops the harness can time, comma-separated, for help texts. */
const char *bench_ops_supported(void);
/* "MxNxK" for matmul, "TxHxD" for rope, "R[xC...]" for the rest; NULL if not benchable. */
const char *bench_op_shape_form(bst_op op);
/* Parses "4096x1x14336" into c->rank/dims/shape. False (with a message) when malformed. */
bool bench_parse_shape(const char *text, bench_case *c, char *why, size_t why_size);
/* Builds the case list. An unknown op or dtype name, or a shape no selected op takes, is
 * BST_ERR_PARSE; a selection that leaves no case at all is BST_ERR_NOT_FOUND. */
BST_MUST_CHECK bst_status bench_cases_select(const bench_selection *s, bench_case_list *out,
                                             bench_error *e);
void bench_case_list_free(bench_case_list *l);

/* A case as one node at the ABI: one binding per tensor (inputs in order, then the output). */
typedef struct bench_geometry {
    uint32_t n_in;
    bst_tensor_desc in[BST_MAX_INPUTS];
    bst_tensor_desc out;
    uint32_t n_attrs;
    bst_attr attrs[BST_MAX_ATTRS];
    int32_t weight;      /* first input that is a model weight (rotated), or -1 */
    uint32_t n_weights;  /* inputs weight .. weight + n_weights - 1 are weights (FFN: 3) */
    uint64_t size[BST_MAX_INPUTS + 1]; /* bytes of each binding */
    int64_t id_bound[BST_MAX_INPUTS];  /* i32 inputs: values are drawn from [0, bound) */
    double flops; /* the op's nominal flop count (bench/SCHEMA.md) */
    double bytes; /* bytes the op must move: every input read once, the output written once */
    char text[256]; /* "f32[1,576], q4_1[1536,576] -> f32[1,1536]" */
} bench_geometry;

/* A GEMV-like case: it reads a weight and does at most 16 flops per weight element (a matmul
 * with at most 8 tokens), so its speed is the speed at which the weight streams from memory. */
bool bench_weight_bound(const bench_geometry *g);
/* Bytes of all the case's weights together (0 without one). */
uint64_t bench_weight_bytes(const bench_geometry *g);
/* Descriptors, sizes (overflow-checked) and counts of a case. */
BST_MUST_CHECK bst_status bench_case_geometry(const bench_case *c, bench_geometry *out,
                                              bench_error *e);
/* A smaller case of the same op and dtype whose time, times *out_scale, estimates c's: used to
 * skip cases that would blow the budget before running them. False when c is already small. */
bool bench_case_probe(const bench_case *c, bench_case *out, double *out_scale);
/* Fills `size` bytes of input `index` with valid random data of its dtype: finite values in
 * [-1, 1) for float types, blocks with normal f16 scales for block types, ids in range. */
void bench_fill_input(const bench_geometry *g, uint32_t index, void *dst, uint64_t seed);

/* --- baselines ----------------------------------------------------------------------------- */

typedef struct bench_bandwidth {
    bool measured;
    char reason[256]; /* why not, when !measured */
    char loads[48];   /* added within /1: the read loop (bench_read_best), "" in older documents */
    uint64_t bytes;   /* buffer read per call */
    uint32_t threads;
    bench_timing timing;
    double gbs; /* bytes / median time */
} bench_bandwidth;

typedef struct bench_sgemm {
    char routine[8]; /* "sgemm"; "sgemv" for N = 1, the BLAS routine made for that product */
    int64_t m, n, k;
    uint32_t copies; /* weight copies rotated, as for the case it serves */
    bench_timing timing;
    double gflops;
} bench_sgemm;

/* A cold read of exactly one weight's bytes (rotated through `copies` copies like the case's
 * weight), the faster of one thread and the run's count: what reading that many bytes costs at
 * best, start-up and hand-off included, which the streaming bandwidth leaves out. Added within
 * bastion.bench/1. */
typedef struct bench_read {
    bool measured;
    char reason[256]; /* why not, when !measured */
    char loads[48];   /* the read loop (bench_read_best) */
    char what[96];    /* the case it serves: "matmul q4_1 576x1x1536 on cpu:0 ref" */
    uint64_t bytes;   /* the weight's bytes */
    uint32_t copies;
    uint32_t threads; /* the thread count of the faster read */
    bench_timing timing;
    double gbs; /* bytes actually read (whole 128-byte blocks per thread) / median time */
    /* The streaming read bandwidth at the run's thread count over all `copies` copies (at least
     * 4x the LLC, as the bandwidth baseline's buffer), measured right after: the case's
     * "x bandwidth" is against this one. 0 when not measured (then against the baseline).
     * Added within bastion.bench/1. */
    double stream_gbs;
    /* With the run's thread count (>= 2), the median time of the same team's call with nothing
     * to read: one hand-off to every worker and back, the latency between these cores now. 0 when
     * not measured. Added within bastion.bench/1. */
    double handoff_ns;
} bench_read;

typedef struct bench_baselines {
    bench_bandwidth bandwidth;
    bench_read *reads; /* one per variant of a cache-cold weight-bound case, timed with it */
    size_t n_reads, cap_reads;
    bool sgemm_available;
    char sgemm_library[256]; /* "OpenBLAS 0.3.21 ..." or why it is missing */
    bench_sgemm *sgemm;
    size_t n_sgemm, cap_sgemm;
} bench_baselines;

void bench_baselines_free(bench_baselines *b);

/* The read loop of the bandwidth yardsticks (bench/bench_read.c): sums n words (a multiple of
 * 16) with the widest loads this CPU has, prefetching ahead but never past p + n. *name says
 * which loads. */
typedef uint64_t (*bench_read_fn)(const uint64_t *p, size_t n);
bench_read_fn bench_read_best(const char **name);

/* The bandwidth buffer's size: 4x the LLC, at least 64 MiB; 256 MiB when the LLC is unknown. */
uint64_t bench_bandwidth_bytes(uint64_t llc_bytes);
/* Reads `bytes` (rounded down to whole 128-byte blocks per thread) with `threads` threads per
 * call. */
BST_MUST_CHECK bst_status bench_bandwidth_measure(uint64_t bytes, uint32_t threads,
                                                  const bench_budget *budget,
                                                  bench_bandwidth *out, bench_error *e);
/* Measures a bench_read of `bytes` at 1 and at `threads` threads, each on `budget`, then the
 * streaming read and hand-off on a half and a quarter of it. A read the machine cannot do
 * (memory, threads) is recorded with its reason, not an error. */
BST_MUST_CHECK bst_status bench_read_measure(uint64_t bytes, uint32_t copies, uint32_t threads,
                                             const bench_budget *budget, bench_read *out,
                                             bench_error *e);
/* The same read kept open, so that its calls can alternate with a case's (bench_ops.c): open
 * it (its threads parked), time blocks of it between the case's calls, then finish it into a
 * bench_read. A machine that cannot do it leaves the reader unusable: blocks then do nothing
 * and finish records the reason. Only running out of memory for the reader itself is an error;
 * close it (NULL is fine) in every case. */
typedef struct bench_reader bench_reader;
BST_MUST_CHECK bst_status bench_reader_open(uint64_t bytes, uint32_t copies, uint32_t threads,
                                            bench_reader **out, bench_error *e);
/* Times the read at 1 and at the run's thread count, each as `budget` says, and keeps the
 * samples (each block's first call is its warm-up: the parked threads wake in it). */
BST_MUST_CHECK bst_status bench_reader_block(bench_reader *r, const bench_budget *budget,
                                             bench_error *e);
/* The faster count's samples of every block into *out, then the streaming read and hand-off
 * measured now, on a half and a quarter of `budget`. */
BST_MUST_CHECK bst_status bench_reader_finish(bench_reader *r, const bench_budget *budget,
                                              bench_read *out, bench_error *e);
void bench_reader_close(bench_reader *r);
/* Appends a copy of *r (its timing now owned by b). */
BST_MUST_CHECK bst_status bench_baselines_add_read(bench_baselines *b, const bench_read *r,
                                                   bench_error *e);
/* True when this build links OpenBLAS; fills `library` with its configuration or the reason. */
bool bench_sgemm_available(char *library, size_t size);
/* Times OpenBLAS computing C[n,m] = A[n,k] . B[m,k]^T (the same product as Bastion's matmul
 * of a GEMV/GEMM case), B rotated through `copies` copies: cblas_sgemm, or cblas_sgemv when
 * n = 1 (OpenBLAS's sgemm does not forward a single column to its GEMV kernel, and packs the
 * whole matrix instead, which no one would use for a GEMV). */
BST_MUST_CHECK bst_status bench_sgemm_measure(int64_t m, int64_t n, int64_t k, uint32_t copies,
                                              uint32_t threads, const bench_budget *budget,
                                              bench_sgemm *out, bench_error *e);
const bench_sgemm *bench_baselines_find_sgemm(const bench_baselines *b, int64_t m, int64_t n,
                                              int64_t k);

/* Makes room for `need` elements of `elem` bytes in *buf (capacity *cap, doubled as needed).
 * False, with *buf untouched, when memory runs out. */
bool bench_grow(void **buf, size_t *cap, size_t need, size_t elem);

/* Weight copies needed so that rotating through them reads from memory, not the LLC: enough to
 * hold 4x the LLC, the bandwidth baseline's footprint (at least 1, at most 4096). */
uint32_t bench_cold_copies(uint64_t weight_bytes, uint64_t llc_bytes);

/* --- results ------------------------------------------------------------------------------- */

typedef enum bench_result_status {
    BENCH_OK = 0,
    BENCH_SKIPPED = 1,     /* the device cannot hold it, or it would not fit the budget */
    BENCH_UNSUPPORTED = 2, /* no kernel variant on the device */
    BENCH_FAILED = 3       /* a call failed: reason holds the message */
} bench_result_status;

const char *bench_result_status_name(bench_result_status s);
/* Inverse; false for an unknown name. */
bool bench_result_status_parse(const char *name, bench_result_status *out);

typedef struct bench_result {
    char op[24], dtype[16], shape[64], label[48], tensors[256];
    char backend[32], device_name[128], variant[48];
    int32_t device; /* index into the run's device list, -1 when none */
    uint64_t variant_hash;
    bench_result_status status;
    char reason[512];
    bool cache_cold;
    bool weight_bound; /* reads a weight, at most 16 flops per weight element (GEMV-like) */
    uint32_t weight_copies;
    double flops, bytes;
    uint64_t compile_ns, prepare_ns;
    bench_timing timing;
    double gflops, gbs;         /* from the median; 0 when not measured */
    double bandwidth_fraction;  /* gbs / baseline bandwidth (cache-cold weight-bound cases);
                                   NaN when not applicable */
    double sgemm_ratio;         /* sgemm median / this median (> 1: faster); NaN when n/a */
    double read_fraction;       /* added within /1: the same-size read's time for the weight's
                                   bytes / this median (cache-cold weight-bound cases); NaN
                                   when not applicable */
    int32_t read_index;         /* that read in baselines.reads, -1 when none */
    /* Added within /1: the backend's own time of each timed call (last_execute_ns). "device"
     * when the backend reported a non-zero time for every call (device_timing then holds one
     * sample per sample of `timing`, first_ns/warmup as there), else "wall" (device_timing
     * empty). gflops, gbs, bandwidth_fraction and sgemm_ratio come from the device median when
     * time_source is "device", else from the wall median. */
    char time_source[8];
    bench_timing device_timing;
} bench_result;

typedef struct bench_result_list {
    bench_result *items;
    size_t n, cap;
} bench_result_list;

void bench_result_list_free(bench_result_list *l);
/* Appends a zeroed result (NaN ratios, device -1) and returns it, or NULL on memory. */
bench_result *bench_result_list_add(bench_result_list *l);

/* --- running ops --------------------------------------------------------------------------- */

/* Called after each (case, device, variant) with the finished result. */
typedef void (*bench_progress_fn)(void *user, size_t index, size_t total, const bench_result *r);

typedef struct bench_ops_options {
    bench_budget budget;
    uint32_t threads;   /* for the sgemm baseline and bandwidth; the context has its own */
    uint64_t llc_bytes; /* for cache-cold rotation; 0 = no rotation */
    bench_progress_fn progress;
    void *progress_user;
} bench_ops_options;

/* Measures the baselines the cases need: bandwidth (always) and sgemm for each distinct f32
 * matmul shape. A baseline that cannot be measured is recorded as such, not an error. */
BST_MUST_CHECK bst_status bench_run_baselines(const bench_case_list *cases,
                                              const bench_ops_options *o,
                                              const bench_machine *m, bench_baselines *out,
                                              bench_error *e);
/* Every case on every device of `ctx` and every kernel variant the device offers. Per-case
 * problems (unsupported, skipped, failed) become results; only harness failures (memory) are
 * errors. A cache-cold weight-bound case first adds its same-size read to bl->reads. */
BST_MUST_CHECK bst_status bench_run_ops(bst_context *ctx, const bench_case_list *cases,
                                        const bench_ops_options *o, bench_baselines *bl,
                                        bench_result_list *out, bench_error *e);

/* --- the document -------------------------------------------------------------------------- */

typedef struct bench_device {
    char backend[32], name[128], vendor[64], kind[8], driver_version[64];
    uint64_t fingerprint, memory_bytes, max_alloc_bytes, max_binding_bytes;
    bool unified_memory, self_threaded;
} bench_device;

typedef struct bench_plugin {
    char name[32], state[24], version[64], path[512], detail[512];
    uint32_t abi_version;
} bench_plugin;

/* Device memory of one model row on one device (bst_session_memory). */
#define BENCH_MAX_MODEL_DEVICES 8
typedef struct bench_model_memory {
    int32_t device; /* index into the document's devices, -1 when not found there */
    char backend[32], device_name[128];
    uint64_t arena_bytes, weight_bytes, state_bytes, io_bytes, total_bytes;
} bench_model_memory;

/* Which kernels a model row ran: nodes per (op, device, kernel variant) over the session's
 * programs, and how many of them the tuning database answered (hit) or were measured now. */
#define BENCH_MAX_MODEL_KERNELS 48
typedef struct bench_model_kernel {
    char op[24], device[160], kernel[48];
    uint32_t nodes, hits, measured;
} bench_model_kernel;

/* Device time of one model row on one device (partition profiling, bench_model.c). */
typedef struct bench_model_device_time {
    int32_t device; /* index into the document's devices, -1 when not found there */
    char backend[32], device_name[128];
    uint32_t pp_partitions, tg_partitions; /* partition runs in the profiled repetition */
    bool pp_all_device, tg_all_device;     /* every one of them reported a device time */
    uint64_t pp_device_ns, tg_device_ns;   /* summed last_execute_ns of those runs */
    uint64_t pp_wall_ns, tg_wall_ns;       /* summed host wall time around the same executes */
    double pp_device_tps, tg_device_tps;   /* n_prompt / pp_device_ns, n_gen / tg_device_ns: the
                                              device's own rate if it were the only one; NaN
                                              when not every partition reported a time */
} bench_model_device_time;

/* Model benchmark results (bench model): one per backend selection. */
typedef struct bench_model_result {
    char backends[64]; /* the --backend list this row ran with, "" = default */
    char status[16];   /* "ok", "failed" */
    char reason[512];
    uint32_t n_prompt, n_gen, reps, threads;
    double load_s;       /* bst_model_load */
    double session_s;    /* bst_session_create: compile (cold) */
    double pp_cold_tps, tg_cold_tps; /* first repetition */
    bench_timing pp, tg; /* warm repetitions: ns per whole prompt / per whole generation */
    double pp_tps, tg_tps; /* from the warm medians */
    double weight_bytes_per_token;
    double kv_bytes_per_token; /* KV cache bytes a tg step reads, averaged over the n_gen steps
                                  (from a cache holding n_depth tokens) */
    double roofline_tps;     /* tg_bandwidth_gbs (else the document's bandwidth baseline) /
                                (weight + KV cache bytes per token) */
    double tg_bandwidth_gbs; /* read bandwidth sampled around the tg repetitions: median */
    double tg_bandwidth_min_gbs, tg_bandwidth_max_gbs;
    double roofline_fraction; /* tg_tps / roofline_tps */
    uint64_t peak_rss_bytes;
    /* Added within /1 (optional to readers: absent in older documents). */
    char engine[16];          /* "bastion"; "llama.cpp" for rows bench/llama_cpp_compare.sh adds */
    char tune_mode[8];        /* "off", "cached", "full", "frozen" */
    char kv_type[8];          /* the KV cache's dtype, "f32" or "f16"; "" when not recorded */
    char tune_cache[16];      /* "off", "hit", "miss", "partial", "frozen-miss" (see SCHEMA.md) */
    uint32_t tune_hits, tune_measured, tune_frozen_misses; /* nodes, over the session's programs */
    double tune_s;            /* part of session_s spent measuring candidates; NaN when unknown */
    uint32_t n_depth;         /* tokens in the KV cache before each pp and tg repetition (-d) */
    uint32_t n_memory;        /* devices the session holds memory on */
    bench_model_memory memory[BENCH_MAX_MODEL_DEVICES];
    uint32_t n_kernels;
    bench_model_kernel kernels[BENCH_MAX_MODEL_KERNELS];
    /* Added within /1: device time of one extra pp and one extra tg repetition run with
     * partition profiling (bench_model.c says why one), per device that ran partitions. */
    uint32_t n_device_times;
    bench_model_device_time device_times[BENCH_MAX_MODEL_DEVICES];
    /* Sum over all devices' device times plus the copies' wall time, as if nothing overlapped:
     * the whole run's time measured in device time (a modelled device's time counts as if it
     * were real). NaN unless every partition of the test reported a device time. */
    double pp_device_tps, tg_device_tps;
} bench_model_result;

typedef struct bench_model_info {
    char path[512], name[128], architecture[32];
    uint64_t file_bytes, n_params;
    char file_hash[80]; /* "sha256:<64 hex>" (or "fnv1a64:<16 hex>" without libcrypto) */
} bench_model_info;

typedef struct bench_doc {
    char schema[32];
    char kind[16]; /* "ops" or "model" */
    char created[32]; /* UTC, ISO 8601 */
    char bastion_version[32], git_commit[48];
    char command[1024];
    uint32_t threads;
    bench_budget budget;
    bool quick;
    /* Added within /1: model documents only ("" in ops documents, written as null). */
    char tune_mode[8];
    bool tune_no_cache;
    bench_machine machine;
    uint32_t n_plugins;
    bench_plugin *plugins;
    uint32_t n_devices;
    bench_device *devices;
    bench_baselines baselines;
    bench_result_list results;
    bool has_model;
    bench_model_info model;
    uint32_t n_model_results;
    bench_model_result *model_results;
} bench_doc;

/* Starts a document: schema id, creation time, version, commit, the command line. */
void bench_doc_init(bench_doc *d, const char *kind, int argc, char **argv);
/* Copies the context's plugin records and devices into d. */
BST_MUST_CHECK bst_status bench_doc_add_context(bench_doc *d, const bst_context *ctx,
                                                bench_error *e);
void bench_doc_free(bench_doc *d);

/* Writes the document as JSON to `path` ("-" = stdout). */
BST_MUST_CHECK bst_status bench_doc_write(const bench_doc *d, const char *path, bench_error *e);
/* The JSON text (malloc'd). */
BST_MUST_CHECK bst_status bench_doc_to_string(const bench_doc *d, char **out_text,
                                              bench_error *e);
/* Reads a document written by bench_doc_write (any bastion.bench/1 file): BST_ERR_FORMAT naming
 * the field when something required is missing or has the wrong type. */
BST_MUST_CHECK bst_status bench_doc_load(const char *path, bench_doc *out, bench_error *e);
BST_MUST_CHECK bst_status bench_doc_parse(const char *text, bench_doc *out, bench_error *e);

/* --- running a model ------------------------------------------------------------------------ */

/* Progress: what is starting now ("loading the model", "generation"). */
typedef void (*bench_info_fn)(void *user, const char *what);

/* --- profiles (`--profile FILE`) ------------------------------------------------------------ */

/* Events kept for the trace; the summary counts past it. */
#define BENCH_PROFILE_MAX_EVENTS 250000u

typedef struct bench_profile bench_profile;

BST_MUST_CHECK bst_status bench_profile_create(bench_profile **out, bench_error *e);
void bench_profile_destroy(bench_profile *p);
/* Starts a trace process named `name` whose threads are ctx's devices; the records that follow
 * belong to it, profiled at `level` (which the summary names). */
BST_MUST_CHECK bst_status bench_profile_begin(bench_profile *p, const char *name,
                                              const bst_context *ctx, bst_profile_level level,
                                              bench_error *e);
/* A bst_profile_fn; user is the bench_profile. */
void bench_profile_record(void *user, const bst_profile_record *record);
/* The Chrome trace (Trace Event Format JSON). */
BST_MUST_CHECK bst_status bench_profile_write_trace(const bench_profile *p, const char *path,
                                                    bench_error *e);
/* The top_n op/kernel pairs (or partitions, when only partitions were profiled) by total wall
 * time, then one line of totals:
 *   profile: top N of M op/kernel pairs by total time (...)
 *     total_ms  share  calls  avg_us  device_ms  GB/s  op/kernel@backend
 *     <ms> <pct>% <calls> <us> <ms or -> <GB/s>  <op>[/<variant>]@<backend>
 *   profile: P partition runs X ms, N node runs Y ms, C copies Z ms (B bytes); E trace events
 * and, at BST_PROFILE_NODES_IN_RUN, the top_n pieces of work (a node with the nodes run as part of
 * it, whose time is 0) by total time, told apart by op, kernel, backend, n_tokens, node count and
 * one piece's bytes:
 *   profile: top N of M pieces of work by total time (...)
 *     total_ms  share  calls  avg_us  GB/s  x_read  tokens  nodes  bytes  op/kernel@backend
 * where x_read is "-" for a piece bench_profile_rate_reads did not rate (and, when some were, a
 * line saying what it is follows the rows).
 */
void bench_profile_summary(bench_profile *p, FILE *out, uint32_t top_n);
/* At BST_PROFILE_NODES_IN_RUN, after the run: times a same-size cold read (bench_read_measure,
 * the yardstick of bench ops' "x read", with `threads` and copies for `llc_bytes`) for each piece
 * of work that streams its bytes from memory (a decode step's, of 64 KiB or more), so the summary
 * can rate the model's own matmul shapes as the model runs them. */
BST_MUST_CHECK bst_status bench_profile_rate_reads(bench_profile *p, uint64_t llc_bytes,
                                                   uint32_t threads, const bench_budget *budget,
                                                   bench_error *e);
/* "off", "cached", "full", "frozen" <-> bst_tune_mode. */
const char *bench_tune_mode_name(uint32_t mode);
/* "nodes" or "partitions". */
bool bench_profile_parse_level(const char *text, bst_profile_level *out);

typedef struct bench_model_options {
    const char *path;
    uint32_t n_prompt, n_gen; /* tokens of the pp and tg tests; 0 skips a test */
    uint32_t n_depth;         /* tokens evaluated, untimed, before each repetition (0: none) */
    uint32_t reps;            /* warm repetitions of each test, after one cold one */
    uint32_t threads;         /* 0 = online CPUs */
    const char *const *backend_sets; /* one row per entry, each a --backend list */
    uint32_t n_backend_sets;         /* 0: one row with the default selection */
    const char *plugin_paths;
    bench_info_fn info;
    void *info_user;
    /* When set: after the measured repetitions of each selection, one more pp and tg repetition
     * runs with profiling at `profile_level` into it (the measured numbers stay unprofiled). */
    bench_profile *profile;
    bst_profile_level profile_level;
    uint32_t tune_mode; /* bst_tune_mode of every row's context */
    uint32_t kv_type;   /* bst_dtype of the KV cache (bst_session_options.kv_type; 0 = f32) */
    bool no_cache;      /* tune in memory only */
    bool quick_bandwidth; /* a short bandwidth measurement (--quick) */
    /* The document's devices, to index the memory rows (may be NULL / 0). */
    const bench_device *devices;
    uint32_t n_devices;
} bench_model_options;

/* Fills d's model section, bandwidth baseline and model_results (one per backend set). A set
 * that fails becomes a row with status "failed" and the reason; only an unreadable model file
 * or memory exhaustion is an error. */
BST_MUST_CHECK bst_status bench_run_model(const bench_model_options *o,
                                          const bench_machine *machine, bench_doc *d,
                                          bench_error *e);

/* --- reports and comparisons --------------------------------------------------------------- */

typedef enum bench_format { BENCH_FORMAT_MD, BENCH_FORMAT_CSV, BENCH_FORMAT_SVG } bench_format;

bool bench_format_parse(const char *name, bench_format *out);
/* A model row's test as llama-bench names it: "pp512", "tg128", and with a depth
 * "tg128 @ d4096" (tg: the generation test, else the prompt's). */
void bench_model_test_name(const bench_model_result *m, bool tg, char *out, size_t size);
BST_MUST_CHECK bst_status bench_report(const bench_doc *d, bench_format f, FILE *out,
                                       bench_error *e);

typedef struct bench_compare_summary {
    uint32_t matched, regressions, improvements, only_a, only_b, noisy;
} bench_compare_summary;

/* Prints each case found in both documents with the ratio of median times (B / A) and flags a
 * regression when B is slower by more than threshold_pct percent; cases in one document only
 * are listed. The threshold and what it means are printed with the table. */
BST_MUST_CHECK bst_status bench_compare(const bench_doc *a, const bench_doc *b,
                                        double threshold_pct, FILE *out,
                                        bench_compare_summary *out_summary, bench_error *e);

#endif /* BASTION_BENCH_H */
