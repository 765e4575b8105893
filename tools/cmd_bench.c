/*
 * tools/cmd_bench.c — `bastion bench`: the benchmark harness (bench/) on the command line.
 *   bench ops      every op x dtype x shape on every device and kernel variant, with the
 *                  bandwidth and sgemm baselines of the same run
 *   bench report   a Markdown, CSV or SVG report from a saved JSON document
 *   bench model    prompt processing and generation tok/s of a GGUF model, cold and warm,
 *                  against the memory-bandwidth roofline
 *   bench compare  two JSON documents side by side, regressions flagged
 * JSON first: every number a report shows comes from the document, which can be rendered again
 * or compared later. Progress goes to stderr when it is a terminal; `--json -` puts the document
 * alone on stdout.
 */
#include "bench.h"
#include "cli.h"
#include "cli_model.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "bench"
#define MAX_SHAPES 64

void cli_usage_bench(FILE *out)
{
    fprintf(out,
            "Usage: bastion bench ops [options]\n"
            "       bastion bench model -m MODEL.gguf [-p N] [-n N] [-d N] [-r N] [options]\n"
            "       bastion bench report FILE.json [--format md|csv|svg] [-o OUT]\n"
            "       bastion bench compare A.json B.json [--threshold PCT]\n"
            "\n"
            "bench ops times each op x dtype x shape on every device and kernel variant of the\n"
            "selected backends: median, min, max and stddev per call after warm-up, GFLOP/s\n"
            "and GB/s from the op's own flop and byte counts, and ratios to baselines measured\n"
            "in the same run (memory read bandwidth over 4x the last-level cache; for each\n"
            "variant of a GEMV-like case a cold read of just its weight's bytes, \"x read\",\n"
            "timed in blocks between the variant's calls, then a streaming read of its\n"
            "footprint, \"x bandwidth\", and the hand-off round trip between the read's\n"
            "threads; OpenBLAS sgemm for f32 matmul). Weights are read\n"
            "cache-cold (rotated through copies larger than the LLC). A case over the\n"
            "device's limits, or whose single call would take longer than the budget\n"
            "(estimated from a smaller probe), is skipped with the reason. A backend that\n"
            "keeps its own time (last_execute_ns: a device's timestamps, or npu-sim's\n"
            "modelled time) gets device median/min/max next to the wall times, and its\n"
            "GFLOP/s and GB/s come from the device time.\n"
            "\n"
            "Options of bench ops:\n"
            "  --backend LIST      backends, comma-separated (default: all found)\n"
            "  --plugin-path DIRS  ':'-separated directories searched for plugins first\n"
            "  --op LIST           ops to time (%s)\n"
            "  --dtype LIST        dtypes: the weights' for matmul and ffn_swiglu, K/V's for\n"
            "                      attention, the input's otherwise\n"
            "  --shape SHAPE       replaces the default shapes; repeatable or comma-separated.\n"
            "                      matmul: MxNxK (M output rows, N tokens, K reduced: a GEMV\n"
            "                      has N=1); rope: TxHxD; attention: TxSxHQxHKVxD (causal, the\n"
            "                      last T of S positions, HQ query and HKV kv heads of D; a\n"
            "                      decode step has T=1); ffn_swiglu: TxExF (T tokens, hidden\n"
            "                      E, width F); others: the input shape, e.g. 512x576.\n"
            "                      Each shape goes to every op of the --op list (default:\n"
            "                      matmul) and dtype it fits\n"
            "  --budget SECONDS    time per case (default 1)\n"
            "  --reps N            at most N timed calls per case (default 1000)\n"
            "  --threads N         worker threads (default: online CPUs)\n"
            "  --quick             a few small cases with a short budget (seconds in all)\n"
            "  --json FILE         write the JSON document (schema \"%s\") to FILE; '-'\n"
            "                      writes it to stdout instead of the Markdown table\n"
            "\n"
            "bench model measures whole-model speed as llama-bench does: prompt processing\n"
            "(pp: one batch of -p tokens from an empty cache) and generation (tg: -n single-\n"
            "token steps from an empty cache), -r warm repetitions after a cold one, with\n"
            "load and compile times, peak memory, and generation as a fraction of the\n"
            "roofline (read bandwidth sampled before every tg repetition and after the last\n"
            "/ bytes a token reads: every weight, and the KV cache at its mean length over\n"
            "the tg steps). One more pp and tg repetition, timed per partition, gives each\n"
            "device's own time (npu-sim: the modelled chip, BASTION_NPU_SIM_DEVICE) and\n"
            "device-time tok/s. With -d N every repetition of both tests starts instead\n"
            "from a cache already holding N tokens, evaluated untimed just before it\n"
            "(\"tg128 @ d4096\"): the speed of a long context, where attention reads the\n"
            "cache.\n"
            "\n"
            "Options of bench model:\n"
            "  -m, --model FILE    the GGUF model\n"
            "  -p, --n-prompt N    prompt tokens (default 512; 0 skips pp)\n"
            "  -n, --n-gen N       generated tokens (default 128; 0 skips tg)\n"
            "  -d, --n-depth N     tokens already in the KV cache when each pp and tg\n"
            "                      repetition starts (default 0: an empty cache)\n"
            "  -r, --reps N        warm repetitions of each test (default 5)\n"
            "  --backend LIST      a backend selection; repeat for one row per selection\n"
            "  --threads N, --json FILE, --plugin-path DIRS   as for bench ops\n"
            "  --profile FILE      after the measured repetitions, run one more pp and tg\n"
            "                      repetition profiled and write its per-node timings as a\n"
            "                      Chrome trace (chrome://tracing, Perfetto) to FILE, with a\n"
            "                      top-N summary on stderr; the measured numbers stay\n"
            "                      unprofiled\n"
            "  --profile-level L   nodes (default: each node compiled and run alone, timed),\n"
            "                      partitions (what normally runs, timed per partition) or\n"
            "                      nodes-in-run (what normally runs, each node timed inside\n"
            "                      it by its backend; cpu only; its summary's pieces of work\n"
            "                      that stream from memory are rated against a same-size\n"
            "                      cold read, x_read, as bench ops rates a GEMV)\n"
            "  --profile-top N     rows of the summary (default 10)\n"
            "  --tune MODE         kernel selection: off (default: static priority), cached\n"
            "                      (database rows, measuring misses), full (measure all\n"
            "                      again) or frozen (rows only); each row records the mode,\n"
            "                      whether the database answered (hit/miss), and the seconds\n"
            "                      spent measuring (part of the compile time)\n"
            "  --no-cache          tune in memory only: nothing read from or written to disk\n"
            "  --kv-type T         KV cache dtype: f16 (default, as llama-bench's: half the\n"
            "                      memory and cache reads) or f32, in every row\n"
            "  --quick             -p 16 -n 8 -r 2 and a short bandwidth measurement (seconds;\n"
            "                      what tests run); explicit -p/-n/-r win\n"
            "\n"
            "Options of bench report:\n"
            "  --format F          md (default), csv or svg (a bar chart per backend and op)\n"
            "  -o, --output FILE   write to FILE instead of stdout\n"
            "\n"
            "Options of bench compare:\n"
            "  --threshold PCT     noise threshold in percent (default 5): B slower than A by\n"
            "                      more than this is a regression. Exit status 1 when any case\n"
            "                      regressed.\n"
            "\n"
            "The default set: the default model's shapes (SmolLM2-135M: q4_1 layer matmuls,\n"
            "the q8_0 output head, rms_norm, rope, softmax, silu, mul, add, for 1 and 512\n"
            "tokens) and the standard GEMV/GEMM shapes (m=4096, n=1 and 512, k=14336 and\n"
            "4096, and a 64-token prompt at m=k=4096, in f32, f16, q4_0, q4_1, q8_0) plus a\n"
            "2048^3 f32 GEMM.\n",
            bench_ops_supported(), BENCH_SCHEMA_ID);
}

typedef struct ops_options {
    const char *backends, *plugin_path, *ops, *dtypes, *json;
    const char *shapes[MAX_SHAPES];
    uint32_t n_shapes;
    double budget;
    uint32_t reps, threads;
    bool quick, budget_set, reps_set;
    char *shape_copy; /* owned: the split --shape lists */
} ops_options;

static bool parse_double(const char *text, double *out)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (!text[0] || *end != '\0' || !(v > 0) || v > 1e6)
        return false;
    *out = v;
    return true;
}

static int add_shapes(ops_options *o, const char *arg)
{
    size_t len = strlen(arg), old = 0;
    for (uint32_t i = 0; i < o->n_shapes; i++)
        old += strlen(o->shapes[i]) + 1;
    /* Shapes point into one growing buffer: rebuild it with the new list appended. */
    char *buf = malloc(old + len + 1);
    if (!buf) {
        cli_error(CMD, "out of memory");
        return CLI_EXIT_FAIL;
    }
    size_t at = 0;
    for (uint32_t i = 0; i < o->n_shapes; i++) {
        size_t n = strlen(o->shapes[i]) + 1;
        memcpy(buf + at, o->shapes[i], n);
        o->shapes[i] = buf + at;
        at += n;
    }
    memcpy(buf + at, arg, len + 1);
    free(o->shape_copy);
    o->shape_copy = buf;
    char *p = buf + at;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (!*p)
            return cli_usage_error(CMD, "empty shape in --shape '%s'", arg);
        if (o->n_shapes == MAX_SHAPES)
            return cli_usage_error(CMD, "more than %d shapes", MAX_SHAPES);
        o->shapes[o->n_shapes++] = p;
        if (!comma)
            return CLI_EXIT_OK;
        p = comma + 1;
    }
}

static int parse_ops_args(int argc, char **argv, ops_options *o)
{
    static const struct option options[] = {
        {"backend", required_argument, NULL, 'b'}, {"plugin-path", required_argument, NULL, 'P'},
        {"op", required_argument, NULL, 'o'},      {"dtype", required_argument, NULL, 'd'},
        {"shape", required_argument, NULL, 's'},   {"budget", required_argument, NULL, 'B'},
        {"reps", required_argument, NULL, 'r'},    {"threads", required_argument, NULL, 't'},
        {"quick", no_argument, NULL, 'q'},         {"json", required_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int c, rc;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->backends = optarg;
            break;
        case 'P':
            o->plugin_path = optarg;
            break;
        case 'o':
            o->ops = optarg;
            break;
        case 'd':
            o->dtypes = optarg;
            break;
        case 's':
            if ((rc = add_shapes(o, optarg)) != CLI_EXIT_OK)
                return rc;
            break;
        case 'B':
            if (!parse_double(optarg, &o->budget))
                return cli_usage_error(CMD, "--budget: '%s' is not a positive number of seconds",
                                       optarg);
            o->budget_set = true;
            break;
        case 'r':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 10000000)
                return cli_usage_error(CMD, "--reps: '%s' is not a count in 1..10000000", optarg);
            o->reps = (uint32_t)v;
            o->reps_set = true;
            break;
        case 't':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 1024)
                return cli_usage_error(CMD, "--threads: '%s' is not a count in 1..1024", optarg);
            o->threads = (uint32_t)v;
            break;
        case 'q':
            o->quick = true;
            break;
        case 'j':
            o->json = optarg;
            break;
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "bench ops takes no operand ('%s')", argv[optind]);
    return CLI_EXIT_OK;
}

typedef struct progress {
    bool tty;
} progress;

static void on_progress(void *user, size_t index, size_t total, const bench_result *r)
{
    const progress *p = user;
    if (!p->tty)
        return;
    char what[96];
    if (r->status == BENCH_OK) {
        double us = r->timing.stats.median_ns / 1e3;
        snprintf(what, sizeof what, "%.4g us", us);
    } else {
        snprintf(what, sizeof what, "%s", bench_result_status_name(r->status));
    }
    fprintf(stderr, "\r\033[K[%zu/%zu] %s %s %s on %s:%d %s: %s", index + 1,
            total > index ? total : index + 1, r->op, r->dtype, r->shape, r->backend, r->device,
            r->variant, what);
    fflush(stderr);
}

/* argc/argv start at "ops"; the document records the whole command line (cmd_argv). */
static int run_ops(int argc, char **argv, int cmd_argc, char **cmd_argv)
{
    ops_options o;
    memset(&o, 0, sizeof o);
    int rc = parse_ops_args(argc, argv, &o);
    if (rc != CLI_EXIT_OK) {
        free(o.shape_copy);
        return rc;
    }
    bench_error e;
    memset(&e, 0, sizeof e);
    bench_selection sel = {o.ops, o.dtypes, o.shapes, o.n_shapes, o.quick};
    bench_case_list cases;
    bst_status st = bench_cases_select(&sel, &cases, &e);
    if (st != BST_OK) {
        free(o.shape_copy);
        if (st == BST_ERR_PARSE || st == BST_ERR_NOT_FOUND)
            return cli_usage_error(CMD, "%s", e.msg);
        cli_error(CMD, "%s", e.msg);
        return CLI_EXIT_FAIL;
    }

    bst_context_options copt;
    memset(&copt, 0, sizeof copt);
    copt.struct_size = sizeof copt;
    copt.n_threads = o.threads;
    copt.backends = o.backends;
    copt.plugin_paths = o.plugin_path;
    bst_context *ctx = NULL;
    st = bst_context_create(&copt, &ctx);
    if (st != BST_OK) {
        bench_case_list_free(&cases);
        free(o.shape_copy);
        return cli_lib_error(CMD, st, "cannot create a context");
    }

    bench_doc doc;
    bench_doc_init(&doc, "ops", cmd_argc, cmd_argv);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    doc.threads = o.threads ? o.threads : (online > 0 ? (uint32_t)online : 1);
    doc.quick = o.quick;
    doc.budget.seconds = o.budget_set ? o.budget : (o.quick ? 0.05 : 1.0);
    doc.budget.min_reps = 3;
    doc.budget.max_reps = o.reps_set ? o.reps : (o.quick ? 50 : 1000);
    doc.budget.max_warmup = 10;
    bench_machine_probe(&doc.machine);
    rc = CLI_EXIT_FAIL;
    st = bench_doc_add_context(&doc, ctx, &e);
    if (st != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    if (doc.n_devices == 0) {
        cli_error(CMD, "no device to benchmark: run 'bastion backends' to see why");
        goto done;
    }

    progress prog = {isatty(STDERR_FILENO) == 1};
    bench_ops_options oo = {doc.budget, doc.threads, doc.machine.llc_bytes, on_progress, &prog};
    if (prog.tty)
        fprintf(stderr, "measuring baselines (memory bandwidth, same-size reads, sgemm)...");
    st = bench_run_baselines(&cases, &oo, &doc.machine, &doc.baselines, &e);
    if (st == BST_OK)
        st = bench_run_ops(ctx, &cases, &oo, &doc.baselines, &doc.results, &e);
    if (prog.tty)
        fprintf(stderr, "\r\033[K");
    if (st != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }

    bool json_stdout = o.json && strcmp(o.json, "-") == 0;
    if (o.json && bench_doc_write(&doc, o.json, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    if (!json_stdout && bench_report(&doc, BENCH_FORMAT_MD, stdout, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    size_t failed = 0;
    for (size_t i = 0; i < doc.results.n; i++)
        failed += doc.results.items[i].status == BENCH_FAILED;
    if (failed)
        cli_error(CMD, "%zu case%s failed (see their reasons)", failed, failed == 1 ? "" : "s");
    rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
done:
    bench_doc_free(&doc);
    bench_case_list_free(&cases);
    bst_context_destroy(ctx);
    free(o.shape_copy);
    return rc;
}

#define MAX_SETS 16

static void on_info(void *user, const char *what)
{
    const progress *p = user;
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s...", what);
        fflush(stderr);
    }
}

static int run_model(int argc, char **argv, int cmd_argc, char **cmd_argv)
{
    static const struct option options[] = {
        {"model", required_argument, NULL, 'm'},    {"n-prompt", required_argument, NULL, 'p'},
        {"n-gen", required_argument, NULL, 'n'},    {"reps", required_argument, NULL, 'r'},
        {"n-depth", required_argument, NULL, 'd'},
        {"backend", required_argument, NULL, 'b'},  {"threads", required_argument, NULL, 't'},
        {"json", required_argument, NULL, 'j'},     {"plugin-path", required_argument, NULL, 'P'},
        {"profile", required_argument, NULL, 'F'},  {"profile-level", required_argument, NULL, 'L'},
        {"profile-top", required_argument, NULL, 'T'},
        {"tune", required_argument, NULL, 'U'},     {"no-cache", no_argument, NULL, 'N'},
        {"quick", no_argument, NULL, 'q'},  {"kv-type", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    const char *profile_path = NULL;
    bool quick = false, p_set = false, n_set = false, r_set = false;
    uint32_t profile_top = 10;
    bench_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.n_prompt = 512;
    mo.n_gen = 128;
    mo.reps = 5;
    mo.kv_type = CLI_DEFAULT_KV_TYPE;
    mo.profile_level = BST_PROFILE_NODES;
    const char *sets[MAX_SETS];
    const char *json = NULL;
    opterr = 0;
    optind = 1;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":m:p:n:d:r:", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            mo.path = optarg;
            break;
        case 'p':
        case 'n':
        case 'd':
            if (!cli_parse_u64(optarg, &v) || v > 65536)
                return cli_usage_error(CMD, "-%c: '%s' is not a token count in 0..65536", c,
                                       optarg);
            if (c == 'p') {
                mo.n_prompt = (uint32_t)v;
                p_set = true;
            } else if (c == 'n') {
                mo.n_gen = (uint32_t)v;
                n_set = true;
            } else {
                mo.n_depth = (uint32_t)v;
            }
            break;
        case 'r':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 1000)
                return cli_usage_error(CMD, "-r: '%s' is not a count in 1..1000", optarg);
            mo.reps = (uint32_t)v;
            r_set = true;
            break;
        case 'U':
            if (!cli_parse_tune(optarg, &mo.tune_mode))
                return cli_usage_error(CMD, "--tune is off, cached, full or frozen, not '%s'",
                                       optarg);
            break;
        case 'N':
            mo.no_cache = true;
            break;
        case 'K':
            if (!cli_parse_kv_type(optarg, &mo.kv_type))
                return cli_usage_error(CMD, "--kv-type is f32 or f16, not '%s'", optarg);
            break;
        case 'q':
            quick = true;
            break;
        case 'b':
            if (mo.n_backend_sets == MAX_SETS)
                return cli_usage_error(CMD, "more than %d --backend lists", MAX_SETS);
            sets[mo.n_backend_sets++] = optarg;
            break;
        case 't':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 1024)
                return cli_usage_error(CMD, "--threads: '%s' is not a count in 1..1024", optarg);
            mo.threads = (uint32_t)v;
            break;
        case 'j':
            json = optarg;
            break;
        case 'P':
            mo.plugin_paths = optarg;
            break;
        case 'F':
            profile_path = optarg;
            break;
        case 'L':
            if (!bench_profile_parse_level(optarg, &mo.profile_level))
                return cli_usage_error(CMD, "--profile-level is nodes, partitions or "
                                            "nodes-in-run, not '%s'", optarg);
            break;
        case 'T':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 1000)
                return cli_usage_error(CMD, "--profile-top: '%s' is not a count in 1..1000",
                                       optarg);
            profile_top = (uint32_t)v;
            break;
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "bench model takes no operand ('%s')", argv[optind]);
    if (!mo.path)
        return cli_usage_error(CMD, "bench model needs -m MODEL.gguf");
    if (quick) {
        /* Seconds, not minutes: short tests, two warm repetitions; explicit values win. */
        mo.n_prompt = p_set ? mo.n_prompt : 16;
        mo.n_gen = n_set ? mo.n_gen : 8;
        mo.reps = r_set ? mo.reps : 2;
        mo.quick_bandwidth = true;
    }
    if (mo.n_prompt == 0 && mo.n_gen == 0)
        return cli_usage_error(CMD, "-p 0 and -n 0 leave nothing to measure");
    mo.backend_sets = sets;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (!mo.threads)
        mo.threads = online > 0 ? (uint32_t)online : 1;
    progress prog = {isatty(STDERR_FILENO) == 1};
    mo.info = on_info;
    mo.info_user = &prog;

    bench_doc doc;
    bench_doc_init(&doc, "model", cmd_argc, cmd_argv);
    doc.threads = mo.threads;
    doc.budget.min_reps = doc.budget.max_reps = mo.reps;
    doc.budget.max_warmup = 1;
    doc.quick = quick;
    snprintf(doc.tune_mode, sizeof doc.tune_mode, "%s", bench_tune_mode_name(mo.tune_mode));
    doc.tune_no_cache = mo.no_cache;
    bench_machine_probe(&doc.machine);
    bench_error e;
    memset(&e, 0, sizeof e);
    int rc = CLI_EXIT_FAIL;
    /* The document lists every plugin and device found, whichever sets the rows use. */
    bst_context_options copt;
    memset(&copt, 0, sizeof copt);
    copt.struct_size = sizeof copt;
    copt.plugin_paths = mo.plugin_paths;
    copt.n_threads = mo.threads;
    bst_context *ctx = NULL;
    bst_status st = bst_context_create(&copt, &ctx);
    if (st != BST_OK) {
        rc = cli_lib_error(CMD, st, "cannot create a context");
        goto done;
    }
    st = bench_doc_add_context(&doc, ctx, &e);
    bst_context_destroy(ctx);
    /* And the devices of each --backend set: a plugin that loads only when named (npu-sim) is
     * not in the default context, and the rows' device indices must find it. */
    for (uint32_t i = 0; st == BST_OK && i < mo.n_backend_sets; i++) {
        copt.backends = mo.backend_sets[i];
        ctx = NULL;
        if (bst_context_create(&copt, &ctx) == BST_OK)
            st = bench_doc_add_context(&doc, ctx, &e);
        bst_context_destroy(ctx); /* a set that fails here fails again as its row, with why */
    }
    ctx = NULL;
    mo.devices = doc.devices;
    mo.n_devices = doc.n_devices;
    if (st == BST_OK && profile_path)
        st = bench_profile_create(&mo.profile, &e);
    if (st == BST_OK)
        st = bench_run_model(&mo, &doc.machine, &doc, &e);
    if (st == BST_OK && mo.profile) {
        st = bench_profile_write_trace(mo.profile, profile_path, &e);
        if (st == BST_OK)
            bench_profile_summary(mo.profile, stderr, profile_top);
    }
    if (prog.tty)
        fprintf(stderr, "\r\033[K");
    if (st != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    bool json_stdout = json && strcmp(json, "-") == 0;
    if (json && bench_doc_write(&doc, json, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    if (!json_stdout && bench_report(&doc, BENCH_FORMAT_MD, stdout, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        goto done;
    }
    size_t failed = 0;
    for (uint32_t i = 0; i < doc.n_model_results; i++)
        failed += strcmp(doc.model_results[i].status, "ok") != 0;
    if (failed)
        cli_error(CMD, "%zu backend selection%s failed (see the reasons)", failed,
                  failed == 1 ? "" : "s");
    rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
done:
    bench_profile_destroy(mo.profile);
    bench_doc_free(&doc);
    return rc;
}

static int run_report(int argc, char **argv)
{
    static const struct option options[] = {
        {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    bench_format fmt = BENCH_FORMAT_MD;
    const char *output = NULL;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":o:", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (!bench_format_parse(optarg, &fmt))
                return cli_usage_error(CMD, "--format: '%s' is not md, csv or svg", optarg);
            break;
        case 'o':
            output = optarg;
            break;
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(CMD, "bench report takes one FILE.json");
    bench_doc doc;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_doc_load(argv[optind], &doc, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        return CLI_EXIT_FAIL;
    }
    FILE *out = output ? fopen(output, "w") : stdout;
    if (!out) {
        cli_error(CMD, "cannot write '%s'", output);
        bench_doc_free(&doc);
        return CLI_EXIT_FAIL;
    }
    bst_status st = bench_report(&doc, fmt, out, &e);
    if (output && fclose(out) != 0 && st == BST_OK)
        st = bench_fail(&e, BST_ERR_IO, "error writing '%s'", output);
    bench_doc_free(&doc);
    if (st != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static int run_compare(int argc, char **argv)
{
    static const struct option options[] = {
        {"threshold", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    double threshold = 5.0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 't': {
            char *end = NULL;
            threshold = strtod(optarg, &end);
            if (!optarg[0] || *end != '\0' || !(threshold >= 0) || threshold > 1000)
                return cli_usage_error(CMD, "--threshold: '%s' is not a percentage in 0..1000",
                                       optarg);
            break;
        }
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error(CMD, "bench compare takes two files: A.json B.json");
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_doc_load(argv[optind], &a, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        return CLI_EXIT_FAIL;
    }
    if (bench_doc_load(argv[optind + 1], &b, &e) != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        bench_doc_free(&a);
        return CLI_EXIT_FAIL;
    }
    bench_compare_summary sum;
    bst_status st = bench_compare(&a, &b, threshold, stdout, &sum, &e);
    bench_doc_free(&a);
    bench_doc_free(&b);
    if (st != BST_OK) {
        cli_error(CMD, "%s", e.msg);
        return CLI_EXIT_FAIL;
    }
    return sum.regressions ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_cmd_bench(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error(CMD, "missing subcommand: ops, model, report or compare");
    const char *sub = argv[1];
    if (strcmp(sub, "ops") == 0)
        return run_ops(argc - 1, argv + 1, argc, argv);
    if (strcmp(sub, "model") == 0)
        return run_model(argc - 1, argv + 1, argc, argv);
    if (strcmp(sub, "report") == 0)
        return run_report(argc - 1, argv + 1);
    if (strcmp(sub, "compare") == 0)
        return run_compare(argc - 1, argv + 1);
    return cli_usage_error(CMD, "unknown subcommand '%s' (ops, model, report or compare)", sub);
}
