/*
 * tests/test_bench.c — `bastion bench` end to end: the JSON documents of bench ops and bench
 * model, reports and comparisons (the harness's parts alone: tests/test_bench_units.c).
 *
 * The schema check is this file's own validator, written from bench/SCHEMA.md (not from the
 * writer's code): it is run on a document produced by `bastion bench ops --quick`, and shown
 * to reject documents with a field missing or mistyped. No timing is asserted — a benchmark
 * reports numbers, a test checks that they are internally consistent (stats from the samples,
 * GFLOP/s from the flop count and the median, ratios from the baselines).
 */
#include "bench.h"
#include "bench_schema_check.h"
#include "runtime/model/gguf.h"
#include "test_util.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef BENCH_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

extern char **environ;

static bool near(double a, double b, double rel)
{
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-12;
}

/* --- running the command ------------------------------------------------------------------- */

static char tmp_dir[128];

/* A path in this run's temporary directory; the caller owns `path`. */
static const char *tmp_path(const char *name, char *path, size_t size)
{
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/bastion-test-bench-XXXXXX");
        if (!mkdtemp(tmp_dir))
            tmp_dir[0] = '\0';
    }
    snprintf(path, size, "%s/%s", tmp_dir, name);
    return path;
}

/* Runs $BASTION_BIN with args (NULL-terminated), stdout into `out_file` (or /dev/null), stderr
 * inherited. Returns the exit status, -1 if it did not exit normally. */
static int run_bastion(const char *out_file, const char *const *args)
{
    const char *bin = getenv("BASTION_BIN");
    if (!bin)
        bin = "bastion";
    const char *argv[32];
    size_t n = 0;
    argv[n++] = bin;
    for (size_t i = 0; args[i] && n + 1 < sizeof argv / sizeof argv[0]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_file ? out_file : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "cannot spawn %s: %s\n", bin, strerror(rc));
        return -1;
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define RUN(out, ...) run_bastion(out, (const char *const[]){__VA_ARGS__, NULL})

static double jnum(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : NAN;
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* stats agree with samples_ns. */
static void check_timing_consistent(json_object *t)
{
    json_object *st = jget(t, "stats"), *s = jget(t, "samples_ns");
    size_t n = json_object_array_length(s);
    CU_ASSERT_EQUAL(n, (size_t)jnum(st, "n"));
    CU_ASSERT_TRUE_FATAL(n >= 1);
    int64_t *v = malloc(n * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = json_object_get_int64(json_object_array_get_idx(s, i));
        sum += (double)v[i];
    }
    qsort(v, n, sizeof *v, cmp_i64);
    double median = n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
    CU_ASSERT_TRUE(near(jnum(st, "median_ns"), median, 1e-9));
    CU_ASSERT_TRUE(near(jnum(st, "min_ns"), (double)v[0], 1e-9));
    CU_ASSERT_TRUE(near(jnum(st, "max_ns"), (double)v[n - 1], 1e-9));
    CU_ASSERT_TRUE(near(jnum(st, "mean_ns"), sum / (double)n, 1e-9));
    CU_ASSERT_TRUE(jnum(t, "warmup") >= 1);
    free(v);
}

/* The numbers of one ok result agree with each other and with the baselines. */
static void check_consistency(json_object *root, json_object *r, double bw_gbs)
{
    json_object *t = jget(r, "timing");
    check_timing_consistent(t);
    double median = jnum(jget(t, "stats"), "median_ns");
    /* With device time: one device sample per wall sample, ordered stats, and the rates from
     * the device median (bench/SCHEMA.md). No order between wall and device time: a modelled
     * device's time may be above or below the host's. */
    const char *source = json_object_get_string(jget(r, "time_source"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(source);
    CU_ASSERT_TRUE(strcmp(source, "device") == 0 || strcmp(source, "wall") == 0);
    json_object *dt = jget(r, "device_timing");
    CU_ASSERT_EQUAL(strcmp(source, "device") == 0, dt != NULL);
    if (dt) {
        check_timing_consistent(dt);
        CU_ASSERT_EQUAL(json_object_array_length(jget(dt, "samples_ns")),
                        json_object_array_length(jget(t, "samples_ns")));
        CU_ASSERT_EQUAL(jnum(dt, "warmup"), jnum(t, "warmup"));
        json_object *st = jget(dt, "stats");
        CU_ASSERT_TRUE(jnum(st, "min_ns") > 0);
        CU_ASSERT_TRUE(jnum(st, "min_ns") <= jnum(st, "median_ns"));
        CU_ASSERT_TRUE(jnum(st, "median_ns") <= jnum(st, "max_ns"));
        CU_ASSERT_TRUE(jnum(dt, "first_ns") > 0);
        median = jnum(st, "median_ns");
    }
    CU_ASSERT_TRUE(near(jnum(r, "gflops"), jnum(r, "flops") / median, 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "gbs"), jnum(r, "bytes") / median, 1e-9));
    json_object *b = jget(r, "baseline");
    double frac = jnum(b, "bandwidth_fraction");
    if (!isnan(frac)) {
        /* Against the streaming read measured with the variant's own read, where it has one. */
        json_object *rd = isnan(jnum(b, "read"))
                              ? NULL
                              : json_object_array_get_idx(jget(jget(root, "baselines"), "reads"),
                                                          (size_t)jnum(b, "read"));
        const double stream = rd ? jnum(rd, "stream_gbs") : NAN;
        CU_ASSERT_TRUE(near(frac, jnum(r, "gbs") / (stream > 0 ? stream : bw_gbs), 1e-9));
    }
    /* A cache-cold GEMV has the fraction; ops without a weight never do. */
    bool cold = json_object_get_boolean(jget(r, "cache_cold"));
    bool wb = json_object_get_boolean(jget(r, "weight_bound"));
    CU_ASSERT_EQUAL(!isnan(frac), cold && wb);
    const char *op = json_object_get_string(jget(r, "op"));
    if (strcmp(op, "matmul") != 0)
        CU_ASSERT_FALSE(cold || wb);
    /* The same-size read's time for the weight's bytes over this median: one of the reads
     * gives exactly the fraction. */
    double rf = jnum(b, "read_fraction");
    CU_ASSERT_EQUAL(!isnan(rf), cold && wb);
    if (!isnan(rf)) {
        json_object *reads = jget(jget(root, "baselines"), "reads");
        json_object *rd = json_object_array_get_idx(reads, (size_t)jnum(b, "read"));
        CU_ASSERT_PTR_NOT_NULL_FATAL(rd);
        CU_ASSERT_TRUE(near(rf, jnum(rd, "bytes") / jnum(rd, "gbs") / median, 1e-9));
        CU_ASSERT_EQUAL(jnum(rd, "copies"), jnum(r, "weight_copies"));
    }
    double ratio = jnum(b, "sgemm_ratio");
    if (!isnan(ratio)) {
        /* The sgemm case of the same shape, and the ratio of the medians. */
        json_object *cases = jget(jget(jget(root, "baselines"), "sgemm"), "cases");
        const char *shape = json_object_get_string(jget(r, "shape"));
        bool found = false;
        for (size_t i = 0; i < json_object_array_length(cases); i++) {
            json_object *c = json_object_array_get_idx(cases, i);
            char cs[64];
            snprintf(cs, sizeof cs, "%lldx%lldx%lld", (long long)jnum(c, "m"),
                     (long long)jnum(c, "n"), (long long)jnum(c, "k"));
            if (strcmp(cs, shape) != 0)
                continue;
            found = true;
            double sm = jnum(jget(jget(c, "timing"), "stats"), "median_ns");
            CU_ASSERT_TRUE(near(ratio, sm / median, 1e-9));
        }
        CU_ASSERT_TRUE(found);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "dtype")), "f32");
    }
}

static void test_ops_quick_json(void)
{
    char json_buf[256], md_buf[256];
    const char *json_path = tmp_path("quick.json", json_buf, sizeof json_buf);
    const char *md_path = tmp_path("quick.md", md_buf, sizeof md_buf);
    int rc = RUN(md_path, "bench", "ops", "--quick", "--backend", "cpu", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(root, "kind")), "ops");
    CU_ASSERT_TRUE(json_object_get_boolean(jget(jget(root, "settings"), "quick")));

    json_object *bw = jget(jget(root, "baselines"), "bandwidth");
    CU_ASSERT_TRUE_FATAL(json_object_get_boolean(jget(bw, "measured")));
    double bw_gbs = jnum(bw, "gbs");
    CU_ASSERT_TRUE(bw_gbs > 0);
    /* The read covers at least 4x the LLC the machine section states (64 MiB floor). */
    double llc = jnum(jget(root, "machine"), "llc_bytes");
    CU_ASSERT_TRUE(jnum(bw, "bytes") >= fmax(4 * llc, 64.0 * 1048576) * 0.99);
    CU_ASSERT_TRUE(near(bw_gbs, jnum(bw, "bytes") / jnum(jget(jget(bw, "timing"), "stats"),
                                                         "median_ns"), 1e-9));

    /* Each same-size read: measured, by one thread or the run's count, its rate from the
     * whole 128-byte blocks per thread it read (at most 128 bytes per thread short of the
     * weight), rotated over at least 4x the LLC like the weight it serves. */
    json_object *reads = jget(jget(root, "baselines"), "reads");
    CU_ASSERT_TRUE_FATAL(reads && json_object_array_length(reads) > 0);
    double threads = jnum(jget(root, "settings"), "threads");
    for (size_t i = 0; i < json_object_array_length(reads); i++) {
        json_object *rd = json_object_array_get_idx(reads, i);
        CU_ASSERT_TRUE_FATAL(json_object_get_boolean(jget(rd, "measured")));
        double th = jnum(rd, "threads"), bytes = jnum(rd, "bytes");
        CU_ASSERT_TRUE(th == 1 || th == threads);
        double read = jnum(rd, "gbs") * jnum(jget(jget(rd, "timing"), "stats"), "median_ns");
        CU_ASSERT_TRUE(read <= bytes * (1 + 1e-9) && read > bytes - 128 * th - 1);
        CU_ASSERT_TRUE(jnum(rd, "copies") * bytes >= fmax(4 * llc, 1) * 0.99);
        /* Timed in blocks between its variant's calls and once after them (bench_reader), each
         * block with its own warm-up call. */
        CU_ASSERT_TRUE(jnum(jget(rd, "timing"), "warmup") >= 2);
        /* The team's hand-off, timed with the run's count when that is more than one thread. */
        const double handoff = jnum(rd, "handoff_ns");
        CU_ASSERT_TRUE(threads >= 2 ? handoff > 0 : isnan(handoff));
    }

    json_object *results = jget(root, "results");
    size_t n = json_object_array_length(results), ok = 0;
    bool q41 = false, f32_ratio = false;
    for (size_t i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(results, i);
        const char *status = json_object_get_string(jget(r, "status"));
        if (strcmp(json_object_get_string(jget(r, "backend")), "cpu") == 0) {
            /* The CPU reference backend runs every op of the quick set. */
            CU_ASSERT_STRING_EQUAL(status, "ok");
        }
        if (strcmp(status, "ok") != 0)
            continue;
        ok++;
        check_consistency(root, r, bw_gbs);
        const char *op = json_object_get_string(jget(r, "op"));
        const char *dt = json_object_get_string(jget(r, "dtype"));
        if (strcmp(op, "matmul") == 0 && strcmp(dt, "q4_1") == 0) {
            q41 = true;
            CU_ASSERT_TRUE(json_object_get_boolean(jget(r, "cache_cold")));
            CU_ASSERT_TRUE(jnum(r, "weight_copies") > 1);
        }
        if (!isnan(jnum(jget(r, "baseline"), "sgemm_ratio")))
            f32_ratio = true;
    }
    CU_ASSERT_TRUE(ok >= 5);
    CU_ASSERT_TRUE(q41);
    bool have_blas = json_object_get_boolean(jget(jget(jget(root, "baselines"), "sgemm"),
                                                  "available"));
    CU_ASSERT_EQUAL(f32_ratio, have_blas);
    size_t n_reads = json_object_array_length(reads);
    uint64_t first_read_bytes = (uint64_t)jnum(json_object_array_get_idx(reads, 0), "bytes");
    const double first_handoff = jnum(json_object_array_get_idx(reads, 0), "handoff_ns");
    json_object_put(root);

    /* The reader takes what the writer wrote, and writing it again gives a valid document. */
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL(d.results.n, n);
    CU_ASSERT_EQUAL(d.baselines.n_reads, n_reads);
    CU_ASSERT_TRUE(d.baselines.n_reads > 0 && d.baselines.reads[0].bytes == first_read_bytes);
    CU_ASSERT_TRUE(d.baselines.n_reads > 0 && d.baselines.reads[0].stream_gbs > 0);
    CU_ASSERT_TRUE(d.baselines.n_reads > 0 &&
                   (isnan(first_handoff) ? d.baselines.reads[0].handoff_ns == 0
                                         : d.baselines.reads[0].handoff_ns == first_handoff));
    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(bench_doc_to_string(&d, &text, &e), BST_OK);
    json_object *again = json_tokener_parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(again);
    CU_ASSERT_EQUAL(bench_schema_check(again), 0);
    json_object_put(again);
    free(text);
    bench_doc_free(&d);

    /* The Markdown printed next to --json FILE names every measured case. */
    size_t size = 0;
    char *md = bst_test_read_file(md_path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(md);
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| matmul | q4_1 | 576x1x576 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "memory read bandwidth"));
    free(md);
}

static void test_ops_cli_errors(void)
{
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "ops", "--op", "nosuchop"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "ops", "--shape", "12x"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "ops", "--budget", "-1"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "ops", "--op", "matmul", "--shape", "64x64"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "nosuch"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", "/nonexistent/x.json"), 1);
}

/* A user shape on one op: exactly the cases asked for, in order. */
static void test_ops_user_shape(void)
{
    char json_buf[256];
    const char *json_path = tmp_path("user.json", json_buf, sizeof json_buf);
    int rc = RUN(NULL, "bench", "ops", "--backend", "cpu", "--op", "matmul", "--dtype", "q8_0",
                 "--shape", "64x1x64,32x3x64", "--budget", "0.01", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    /* One result per case and kernel variant the CPU backend offers (fast variants first, then
     * "ref"): the "ref" results are exactly the cases asked for, in order, and every result
     * belongs to one of them. */
    const bench_result *ref[3] = {NULL, NULL, NULL};
    size_t n_ref = 0;
    for (size_t i = 0; i < (size_t)d.results.n; i++) {
        const bench_result *res = &d.results.items[i];
        CU_ASSERT(strcmp(res->shape, "64x1x64") == 0 || strcmp(res->shape, "32x3x64") == 0);
        if (strcmp(res->variant, "ref") == 0 && n_ref < 3)
            ref[n_ref++] = res;
    }
    CU_ASSERT_EQUAL_FATAL(n_ref, 2);
    CU_ASSERT_STRING_EQUAL(ref[0]->shape, "64x1x64");
    CU_ASSERT_STRING_EQUAL(ref[1]->shape, "32x3x64");
    CU_ASSERT_STRING_EQUAL(ref[1]->tensors, "f32[3,64], q8_0[32,64] -> f32[3,32]");
    CU_ASSERT_STRING_EQUAL(ref[0]->dtype, "q8_0");
    CU_ASSERT_TRUE(d.budget.seconds > 0.0099 && d.budget.seconds < 0.0101);
    CU_ASSERT_EQUAL(d.baselines.n_sgemm, 0); /* no f32 matmul, no sgemm */
    CU_ASSERT_PTR_NOT_NULL(strstr(d.command, "bastion bench ops"));
    bench_doc_free(&d);
}

/* `bench ops` of one op, dtype and shape on the CPU backend with a short budget, its document
 * loaded into *d (at least one result); false after failed assertions. */
static bool run_cpu_case(const char *op, const char *dtype, const char *shape, bench_doc *d)
{
    char json_buf[256];
    const char *json_path = tmp_path("case.json", json_buf, sizeof json_buf);
    int rc = RUN(NULL, "bench", "ops", "--backend", "cpu", "--op", op, "--dtype", dtype,
                 "--shape", shape, "--budget", "0.02", "--json", json_path);
    CU_ASSERT_EQUAL(rc, 0);
    bench_error e;
    memset(&e, 0, sizeof e);
    if (rc != 0 || bench_doc_load(json_path, d, &e) != BST_OK) {
        CU_FAIL("bench ops did not write a readable document");
        return false;
    }
    const bool any = d->results.n > 0;
    CU_ASSERT_TRUE(any);
    if (!any)
        bench_doc_free(d);
    return any;
}

/* Fused attention through `bench ops`: the CPU backend's variants time a decode step, whose
 * K/V cache is rotated cache-cold like a GEMV's weight and rated against a same-size read of
 * K and V, and a prompt of 8 tokens, whose K/V are read as they lie; the rate comes from the
 * case's own flop count. */
static void test_ops_attention(void)
{
    bench_doc d;
    /* 128 KiB of K and V: few enough copies (at most 4096) fill 4x the LLC. */
    CU_ASSERT_TRUE_FATAL(run_cpu_case("attention", "f16", "1x256x6x2x64", &d));
    for (size_t i = 0; i < (size_t)d.results.n; i++) {
        const bench_result *res = &d.results.items[i];
        CU_ASSERT_STRING_EQUAL(res->op, "attention");
        CU_ASSERT_STRING_EQUAL(res->tensors,
                               "f32[1,6,64], f16[256,2,64], f16[256,2,64] -> f32[1,6,64]");
        CU_ASSERT_PTR_NOT_NULL(strstr(res->variant, "fused_attention"));
        CU_ASSERT_DOUBLE_EQUAL(res->flops, 4.0 * 64 * 6 * 256, 0.0);
        CU_ASSERT_TRUE(res->weight_bound);
        CU_ASSERT_TRUE(res->weight_copies > 1);
        CU_ASSERT_EQUAL(res->status, BENCH_OK);
        if (res->status == BENCH_OK)
            CU_ASSERT_TRUE(res->gflops > 0.0);
        CU_ASSERT_TRUE(res->cache_cold);
        CU_ASSERT_TRUE_FATAL(res->read_index >= 0 &&
                             (size_t)res->read_index < d.baselines.n_reads);
        CU_ASSERT_EQUAL(d.baselines.reads[res->read_index].bytes, 2u * 256u * 2u * 64u * 2u);
    }
    bench_doc_free(&d);
    CU_ASSERT_TRUE_FATAL(run_cpu_case("attention", "f16", "8x40x6x2x32", &d));
    for (size_t i = 0; i < (size_t)d.results.n; i++) {
        const bench_result *res = &d.results.items[i];
        CU_ASSERT_FALSE(res->weight_bound);
        CU_ASSERT_FALSE(res->cache_cold);
        CU_ASSERT_EQUAL(res->weight_copies, 0);
        CU_ASSERT_EQUAL(res->read_index, -1);
    }
    bench_doc_free(&d);
}

/* The fused FFN: three weights rotated cache-cold, rated against a same-size read of all
 * three (cache-cold needs copies x bytes >= 4x the LLC, with at most 4096 copies), each variant
 * against its own read, measured just before it and naming it. */
static void test_ops_ffn(void)
{
    bench_doc d;
    CU_ASSERT_TRUE_FATAL(run_cpu_case("ffn_swiglu", "q8_0", "1x256x512", &d));
    /* q8_0: 34 bytes per 32 elements; ~0.4 MB, so few enough copies fill 4x the LLC. */
    const uint64_t weight_bytes = 3u * 512u * 8u * 34u;
    for (size_t i = 0; i < (size_t)d.results.n; i++) {
        const bench_result *res = &d.results.items[i];
        CU_ASSERT_STRING_EQUAL(res->op, "ffn_swiglu");
        CU_ASSERT_PTR_NOT_NULL(strstr(res->variant, "fused_ffn"));
        CU_ASSERT_TRUE(res->weight_bound);
        CU_ASSERT_TRUE(res->weight_copies > 1);
        CU_ASSERT_EQUAL(res->status, BENCH_OK);
        CU_ASSERT_TRUE(res->cache_cold);
        CU_ASSERT_TRUE_FATAL(res->read_index >= 0 &&
                             (size_t)res->read_index < d.baselines.n_reads);
        CU_ASSERT_EQUAL(d.baselines.reads[res->read_index].bytes, weight_bytes);
        const char *what = d.baselines.reads[res->read_index].what;
        CU_ASSERT_STRING_EQUAL(what + (strlen(what) > strlen(res->variant)
                                           ? strlen(what) - strlen(res->variant) : 0),
                               res->variant);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT_NOT_EQUAL(d.results.items[j].read_index, res->read_index);
        /* x bandwidth against the streaming read measured with that read (a real one: at
         * least a GB/s), not the run's baseline. */
        const double stream = d.baselines.reads[res->read_index].stream_gbs;
        CU_ASSERT_TRUE(stream > 1.0);
        CU_ASSERT_DOUBLE_EQUAL(res->bandwidth_fraction, res->gbs / stream,
                               1e-9 * res->bandwidth_fraction);
    }
    bench_doc_free(&d);
}

static json_object *result0(json_object *root)
{
    return json_object_array_get_idx(jget(root, "results"), 0);
}

static void mut_no_schema(json_object *root) { json_object_object_del(root, "schema"); }

static void mut_median_string(json_object *root)
{
    json_object *st = jget(jget(result0(root), "timing"), "stats");
    json_object_object_add(st, "median_ns", json_object_new_string("100000"));
}

static void mut_bad_status(json_object *root)
{
    json_object_object_add(result0(root), "status", json_object_new_string("great"));
}

static void mut_device_range(json_object *root)
{
    json_object_object_add(result0(root), "device", json_object_new_int(7));
}

static void mut_no_fingerprint(json_object *root)
{
    json_object *dev = json_object_array_get_idx(jget(root, "devices"), 0);
    json_object_object_add(dev, "fingerprint", json_object_new_int(42));
}

static void mut_ok_without_timing(json_object *root)
{
    json_object_object_add(result0(root), "timing", NULL);
}

static void mut_bad_time_source(json_object *root)
{
    json_object_object_add(result0(root), "time_source", json_object_new_string("sundial"));
}

/* "device" promises device_timing. */
static void mut_device_without_timing(json_object *root)
{
    json_object_object_add(result0(root), "time_source", json_object_new_string("device"));
    json_object_object_add(result0(root), "device_timing", NULL);
}

/* device_timing on a wall-clock result. */
static void mut_wall_with_device_timing(json_object *root)
{
    json_object *t = jget(result0(root), "timing");
    json_object_object_add(result0(root), "time_source", json_object_new_string("wall"));
    json_object_object_add(result0(root), "device_timing", json_object_get(t));
}

/* The validator, and the reader, reject documents with a field missing or mistyped. */
static void test_schema_rejects(void)
{
    const char *path = bst_test_fixture("bench/a.json");
    json_object *good = json_object_from_file(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(good);
    CU_ASSERT_EQUAL(bench_schema_check(good), 0);
    json_object_put(good);

    static const struct {
        const char *what;
        void (*fn)(json_object *);
    } cases[] = {
        {"schema missing", mut_no_schema},
        {"median a string", mut_median_string},
        {"unknown status", mut_bad_status},
        {"device out of range", mut_device_range},
        {"fingerprint a number", mut_no_fingerprint},
        {"ok result without timing", mut_ok_without_timing},
        {"unknown time_source", mut_bad_time_source},
        {"time_source device without device_timing", mut_device_without_timing},
        {"device_timing with time_source wall", mut_wall_with_device_timing},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *root = json_object_from_file(path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(root);
        cases[i].fn(root);
        int errors = bench_schema_check(root);
        if (errors == 0)
            fprintf(stderr, "validator accepted: %s\n", cases[i].what);
        CU_ASSERT_TRUE(errors > 0);
        bench_doc d;
        bench_error e;
        memset(&e, 0, sizeof e);
        CU_ASSERT_EQUAL(bench_doc_parse(json_object_to_json_string(root), &d, &e),
                        BST_ERR_FORMAT);
        CU_ASSERT_TRUE(e.msg[0] != '\0');
        json_object_put(root);
    }
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(bench_doc_parse("{\"schema\": \"bastion.bench/2\"}", &d, &e), BST_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "bastion.bench/2"));
    CU_ASSERT_EQUAL(bench_doc_parse("[1, 2", &d, &e), BST_ERR_FORMAT);
}

/* --- reports and comparisons on hand-written documents ------------------------------------- */

/* d's report in format f, or (b not NULL) the comparison of d with b, as a string to free;
 * NULL when it fails. */
static char *doc_text(const bench_doc *d, bench_format f, const bench_doc *b, double threshold,
                      bench_compare_summary *sum)
{
    bench_error e;
    memset(&e, 0, sizeof e);
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (!out)
        return NULL;
    bst_status st = b ? bench_compare(d, b, threshold, out, sum, &e) : bench_report(d, f, out, &e);
    fclose(out);
    if (st != BST_OK) {
        fprintf(stderr, "%s: %s\n", b ? "compare" : "report", e.msg);
        free(buf);
        return NULL;
    }
    return buf;
}

static char *report_text(const char *fixture, bench_format f)
{
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_doc_load(bst_test_fixture(fixture), &d, &e) != BST_OK) {
        fprintf(stderr, "load %s: %s\n", fixture, e.msg);
        return NULL;
    }
    char *buf = doc_text(&d, f, NULL, 0.0, NULL);
    bench_doc_free(&d);
    return buf;
}

static void test_report_csv(void)
{
    char *csv = report_text("bench/a.json", BENCH_FORMAT_CSV);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    const char *header =
        "op,dtype,shape,label,backend,device,device_name,variant,status,reason,n,median_ns,"
        "min_ns,max_ns,mean_ns,stddev_ns,gflops,gbs,bandwidth_fraction,sgemm_ratio,compile_ns,"
        "prepare_ns,first_ns,cache_cold,weight_copies,flops,bytes,time_source,device_median_ns,"
        "device_min_ns,device_max_ns,read_fraction\n";
    CU_ASSERT_EQUAL(strncmp(csv, header, strlen(header)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\nmatmul,q4_1,1536x1x576,smollm2 ffn_gate/up decode,cpu,0,"
                                       "Test CPU,ref,ok,,3,100000,99000,101000,100000,1000,"
                                       "17.6947,5.61408,0.280704,,12000,3000,150000,1,240,"
                                       "1.76947e+06,561408,wall,,,,0.2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\nmatmul,f32,576x1x576,quick f32 gemv,cpu,0,Test CPU,"
                                       "tile&pack,ok,,3,40000,40000,40000,40000,0,16.5888,"
                                       "33.2928,1.66464,1.25,"));
    /* A skipped case: no numbers but its counts. */
    CU_ASSERT_PTR_NOT_NULL(strstr(csv, "\nmatmul,f32,4096x512x14336,std gemm,cpu,0,Test CPU,ref,"
                                       "skipped,estimated 3.5 s per call (from a 16x512x14336 "
                                       "probe) is over the 1 s budget,,,,,,,,,,,,,,1,1,"
                                       "6.01295e+10,2.7263e+08,wall,,,,\n"));
    size_t lines = 0;
    for (const char *p = csv; *p; p++)
        lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 6); /* header + five results */
    free(csv);
}

static void test_report_md(void)
{
    char *md = report_text("bench/a.json", BENCH_FORMAT_MD);
    CU_ASSERT_PTR_NOT_NULL_FATAL(md);
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "# Bastion benchmark (ops)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "commit 0123456789ab,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "memory read bandwidth (baseline): 20 GB/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| matmul | q4_1 | 1536x1x576 | smollm2 ffn_gate/up decode "
                                      "| cpu:0 | ref | 100 µs | 99 µs | 101 µs | 1 µs | 17.69 "
                                      "| 5.614 | 0.28 | 0.20 | - | 12 µs | 150 µs |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "| 1.66 | - | 1.25 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- same-size cold read of 540 KiB (matmul q4_1 "
                                      "1536x1x576 on cpu:0): 20 µs, 27.6 GB/s (2 threads, 243 "
                                      "copies); hand-off round trip: 250 ns\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(md, "- matmul f32 4096x512x14336 on cpu:0 variant ref: skipped: "
                                      "estimated 3.5 s"));
    free(md);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_report_svg(void)
{
    char *svg = report_text("bench/a.json", BENCH_FORMAT_SVG);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT_EQUAL(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "</svg>\n"));
    CU_ASSERT_EQUAL(count(svg, "fill=\"#4a7fb5\""), 4); /* one bar per measured result */
    /* Groups per backend and op, each scaled to its own best. */
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">cpu / matmul (GFLOP/s)</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">cpu / add (GB/s)</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">cpu / silu (GB/s)</text>"));
    CU_ASSERT_EQUAL(count(svg, "width=\"460.0\""), 3); /* best of each of the three groups */
    CU_ASSERT_EQUAL(count(svg, "width=\"431.2\""), 1); /* 16.5888 / 17.69472 of 460 */
    CU_ASSERT_PTR_NOT_NULL(strstr(svg, "tile&amp;pack"));
    CU_ASSERT_PTR_NULL(strstr(svg, "tile&pack"));
    free(svg);
}

static char *compare_text(double threshold, bench_compare_summary *sum)
{
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_doc_load(bst_test_fixture("bench/a.json"), &a, &e) != BST_OK)
        return NULL;
    if (bench_doc_load(bst_test_fixture("bench/b.json"), &b, &e) != BST_OK) {
        bench_doc_free(&a);
        return NULL;
    }
    char *buf = doc_text(&a, BENCH_FORMAT_MD, &b, threshold, sum);
    bench_doc_free(&a);
    bench_doc_free(&b);
    return buf;
}

static const char *line_with(const char *text, const char *needle, char *buf, size_t n)
{
    const char *p = strstr(text, needle);
    if (!p)
        return "";
    if (*p == '\n')
        p++;
    while (p > text && p[-1] != '\n')
        p--;
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len >= n)
        len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static void test_compare(void)
{
    bench_compare_summary s;
    char *text = compare_text(5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(s.matched, 3);
    CU_ASSERT_EQUAL(s.regressions, 1);
    CU_ASSERT_EQUAL(s.improvements, 1);
    CU_ASSERT_EQUAL(s.noisy, 1);
    CU_ASSERT_EQUAL(s.only_a, 1);
    CU_ASSERT_EQUAL(s.only_b, 1);
    char line[256];
    /* 120 us against 100 us: 1.2, flagged. */
    line_with(text, "1536x1x576", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.200"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "REGRESSION"));
    /* 515 ns against 500: 1.03, within the threshold; its spread marks it noisy. */
    line_with(text, "\nadd ", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.030"));
    CU_ASSERT_PTR_NULL(strstr(line, "REGRESSION"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "(noisy)"));
    line_with(text, "tile&pack", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "0.900"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "improvement"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Measured only in A:\n  silu f32 1x1536"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Measured only in B:\n  rms_norm f32 1x576"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Noise threshold 5%"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "B/A 0.950")); /* bandwidth 19 vs 20 GB/s */
    free(text);

    /* A looser threshold flags nothing: 1.2 < 1.25 and 0.9 > 1/1.25. */
    text = compare_text(25.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(s.regressions, 0);
    CU_ASSERT_EQUAL(s.improvements, 0);
    CU_ASSERT_PTR_NULL(strstr(text, "  REGRESSION")); /* no verdict in the table */
    free(text);
}

/* Whole-model rows compare tokens per second: fewer is slower. */
static void test_compare_model(void)
{
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_a.json"), &a, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_b.json"), &b, &e), BST_OK);
    CU_ASSERT_TRUE(a.has_model);
    CU_ASSERT_EQUAL(a.n_model_results, 1);
    bench_compare_summary s;
    char *buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(s.matched, 2);
    CU_ASSERT_EQUAL(s.regressions, 1);
    CU_ASSERT_EQUAL(s.improvements, 1);
    char line[256];
    /* pp512: 5 s -> 4 s per prompt, 102.40 -> 128.00 tok/s. */
    line_with(buf, "pp512", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "102.40"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "128.00"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "1.250"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "improvement"));
    /* tg128: 10 s -> 11 s, 12.80 -> 11.64 tok/s. */
    line_with(buf, "tg128", line, sizeof line);
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "12.80"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "11.64"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "0.909"));
    CU_ASSERT_PTR_NOT_NULL(strstr(line, "REGRESSION"));
    free(buf);
    bench_doc_free(&a);
    bench_doc_free(&b);
}

/* n_depth: absent in older documents (0); written and read back; names the tests "tg128 @
 * d4096" in reports; model rows match only at the same depth. */
static void test_model_depth_docs(void)
{
    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_a.json"), &a, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(bst_test_fixture("bench/model_b.json"), &b, &e), BST_OK);
    CU_ASSERT_EQUAL(a.model_results[0].n_depth, 0);
    char name[32];
    bench_model_test_name(&a.model_results[0], true, name, sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "tg128");
    a.model_results[0].n_depth = 4096;
    bench_model_test_name(&a.model_results[0], false, name, sizeof name);
    CU_ASSERT_STRING_EQUAL(name, "pp512 @ d4096");

    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(bench_doc_to_string(&a, &text, &e), BST_OK);
    bench_doc back;
    CU_ASSERT_EQUAL_FATAL(bench_doc_parse(text, &back, &e), BST_OK);
    free(text);
    CU_ASSERT_EQUAL(back.model_results[0].n_depth, 4096);
    bench_doc_free(&back);

    char *buf = doc_text(&a, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| pp512 @ d4096 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| tg128 @ d4096 |"));
    free(buf);
    buf = doc_text(&a, BENCH_FORMAT_CSV, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, ",pp_device_tps,tg_device_tps,kv_type,n_depth\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, ",4096\n"));
    free(buf);

    /* B at depth 0 is another test; at the same depth the rows match again. */
    bench_compare_summary s;
    buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(s.matched, 0);
    free(buf);
    b.model_results[0].n_depth = 4096;
    buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL(s.matched, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "tg128 @ d4096"));
    free(buf);
    bench_doc_free(&a);
    bench_doc_free(&b);
}

static void test_cli_report_compare(void)
{
    char a[512], b[512];
    snprintf(a, sizeof a, "%s", bst_test_fixture("bench/a.json"));
    snprintf(b, sizeof b, "%s", bst_test_fixture("bench/b.json"));
    char out_buf[256];
    const char *out = tmp_path("report.svg", out_buf, sizeof out_buf);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", a, "--format", "svg", "-o", out), 0);
    size_t size = 0;
    char *svg = bst_test_read_file(out, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT_EQUAL(strncmp(svg, "<svg", 4), 0);
    free(svg);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", a, "--format", "csv"), 0);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "report", a, "--format", "pdf"), 2);
    /* compare: exit 1 when something regressed, 0 when nothing did. */
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a, b), 1);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a, b, "--threshold", "25"), 0);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", b, b), 0);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "compare", a, b, "--threshold", "x"), 2);
}

/* --- bench model on the default model ------------------------------------------------------ */

/* Weight bytes one token reads, counted with the library's own GGUF reader: every tensor, but
 * one row of an input embedding that has a separate output head. */
static double expected_weight_bytes(const char *path)
{
    bsti_gguf *g = NULL;
    if (bsti_gguf_open(path, NULL, &g) != BST_OK)
        return NAN;
    double total = 0.0;
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(g); i++)
        total += (double)bsti_gguf_tensor_at(g, i)->size;
    const bsti_gguf_tensor *embd = bsti_gguf_tensor_find(g, "token_embd.weight");
    if (embd && bsti_gguf_tensor_find(g, "output.weight"))
        total += (double)embd->size / (double)embd->shape[0] - (double)embd->size;
    bsti_gguf_close(g);
    return total;
}

/* Bytes of an f32 KV cache of n_ctx rows: K and V of every layer, n_kv_heads x head_dim wide. */
static double expected_kv_bytes(const char *path, uint32_t n_ctx)
{
    bsti_gguf *g = NULL;
    if (bsti_gguf_open(path, NULL, &g) != BST_OK)
        return NAN;
    uint32_t layers = 0, embd = 0, heads = 0, kv_heads = 0;
    bool ok = bsti_gguf_get_u32(g, "llama.block_count", &layers) == BST_OK &&
              bsti_gguf_get_u32(g, "llama.embedding_length", &embd) == BST_OK &&
              bsti_gguf_get_u32(g, "llama.attention.head_count", &heads) == BST_OK &&
              bsti_gguf_get_u32(g, "llama.attention.head_count_kv", &kv_heads) == BST_OK &&
              heads > 0;
    bsti_gguf_close(g);
    return ok ? 2.0 * layers * n_ctx * (double)kv_heads * (embd / heads) * 4.0 : NAN;
}

/* The fields added within /1 to a model row, for a run with --tune `mode` on one backend. */
static void check_model_additions(json_object *root, json_object *r, const char *mode,
                                  const char *backend)
{
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(jget(root, "settings"), "tune_mode")),
                           mode);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "engine")), "bastion");
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "tune_mode")), mode);
    const char *cache = json_object_get_string(jget(r, "tune_cache"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cache);
    double hits = jnum(r, "tune_hits"), measured = jnum(r, "tune_measured");
    double frozen = jnum(r, "tune_frozen_misses"), tune_s = jnum(r, "tune_s");
    /* The one-word summary follows from the counts (bench/SCHEMA.md). */
    if (strcmp(mode, "off") == 0) {
        CU_ASSERT_STRING_EQUAL(cache, "off");
        CU_ASSERT_TRUE(hits == 0 && measured == 0 && frozen == 0 && tune_s == 0);
    } else if (frozen > 0) {
        CU_ASSERT_STRING_EQUAL(cache, "frozen-miss");
    } else if (measured > 0) {
        CU_ASSERT_STRING_EQUAL(cache, hits > 0 ? "partial" : "miss");
    } else {
        CU_ASSERT_STRING_EQUAL(cache, "hit");
    }
    if (strcmp(mode, "frozen") == 0)
        CU_ASSERT_EQUAL(measured, 0); /* frozen never measures */
    /* Measuring is part of creating the session. */
    CU_ASSERT_TRUE(tune_s >= 0 && tune_s <= jnum(r, "session_s") + 1e-3);
    json_object *mem = jget(r, "device_memory");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mem);
    CU_ASSERT_TRUE_FATAL(json_object_array_length(mem) >= 1);
    json_object *devices = jget(root, "devices");
    double state = 0, weights = 0;
    for (size_t i = 0; i < json_object_array_length(mem); i++) {
        json_object *m = json_object_array_get_idx(mem, i);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(m, "backend")), backend);
        int64_t d = (int64_t)jnum(m, "device");
        CU_ASSERT_TRUE_FATAL(d >= 0 && (size_t)d < json_object_array_length(devices));
        json_object *dev = json_object_array_get_idx(devices, (size_t)d);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(dev, "backend")), backend);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(dev, "name")),
                               json_object_get_string(jget(m, "device_name")));
        CU_ASSERT_TRUE(jnum(m, "total_bytes") > 0);
        state += jnum(m, "state_bytes");
        weights += jnum(m, "weight_bytes");
    }
    /* The kernel summary: every entry on this backend. */
    json_object *ks = jget(r, "kernels");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ks);
    CU_ASSERT_TRUE(json_object_array_length(ks) >= 1);
    double khits = 0, kmeasured = 0;
    bool has_matmul = false;
    for (size_t i = 0; i < json_object_array_length(ks); i++) {
        json_object *kn = json_object_array_get_idx(ks, i);
        const char *dev = json_object_get_string(jget(kn, "device"));
        CU_ASSERT_TRUE(strncmp(dev, backend, strlen(backend)) == 0 && dev[strlen(backend)] == '/');
        CU_ASSERT_TRUE(jnum(kn, "nodes") >= 1);
        CU_ASSERT_TRUE(jnum(kn, "hits") + jnum(kn, "measured") <= jnum(kn, "nodes"));
        khits += jnum(kn, "hits");
        kmeasured += jnum(kn, "measured");
        has_matmul |= strcmp(json_object_get_string(jget(kn, "op")), "matmul") == 0;
    }
    CU_ASSERT_TRUE(has_matmul);
    /* The row's counts also cover the alternative plans the whole-graph check built and threw
     * away; the summary covers the program that ran. */
    CU_ASSERT_TRUE(khits <= hits);
    CU_ASSERT_TRUE(kmeasured <= measured);
    /* The KV cache is the only state: n_ctx = the depth + the longer test + 1 rows of the row's
     * kv_type (f32 or half that for f16); twice when tuning split a prompt body (with its own
     * copy of the cache) from the decode body. */
    const char *model = getenv("BASTION_MODEL");
    uint32_t longest = (uint32_t)fmax(jnum(r, "n_prompt"), jnum(r, "n_gen"));
    const uint32_t depth = (uint32_t)jnum(r, "n_depth");
    const bool f16 = strcmp(json_object_get_string(jget(r, "kv_type")), "f16") == 0;
    double kv = expected_kv_bytes(model, depth + longest + 1) / (f16 ? 2 : 1);
    if (strcmp(mode, "off") == 0)
        CU_ASSERT_TRUE(near(state, kv, 1e-12));
    CU_ASSERT_TRUE(near(state, kv, 1e-12) || near(state, 2 * kv, 1e-12));
    CU_ASSERT_TRUE(weights > 0);
}

static void expected_hash(const char *path, char *out, size_t size)
{
    snprintf(out, size, "?");
#ifdef BENCH_HAVE_LIBCRYPTO
    size_t n = 0;
    char *data = bst_test_read_file(path, &n);
    unsigned char d[32];
    unsigned int dl = 0;
    if (data && EVP_Digest(data, n, d, &dl, EVP_sha256(), NULL) == 1 && dl == 32) {
        size_t used = (size_t)snprintf(out, size, "sha256:");
        for (unsigned i = 0; i < 32; i++)
            used += (size_t)snprintf(out + used, size - used, "%02x", d[i]);
    }
    free(data);
#endif
}

static void check_model_device_times(json_object *root, json_object *r, uint32_t n_prompt,
                                     uint32_t n_gen);

static void test_model_bench(void)
{
    const char *model = getenv("BASTION_MODEL");
    if (!model || !*model) {
        fprintf(stderr, "\n  BASTION_MODEL is not set: bench model not exercised\n");
        return;
    }
    struct stat sb;
    if (stat(model, &sb) != 0)
        fprintf(stderr, "\n  %s is missing: run tools/fetch-model.sh\n", model);
    CU_ASSERT_EQUAL_FATAL(stat(model, &sb), 0);
    char json_buf[256];
    const char *json_path = tmp_path("model.json", json_buf, sizeof json_buf);
    int rc = RUN(NULL, "bench", "model", "-m", model, "-p", "8", "-n", "4", "-r", "2", "--backend",
                 "cpu", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(root, "kind")), "model");
    json_object *m = jget(root, "model");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(m, "architecture")), "llama");
    CU_ASSERT_EQUAL((int64_t)jnum(m, "file_bytes"), (int64_t)sb.st_size);
#ifdef BENCH_HAVE_LIBCRYPTO
    char hash[80];
    expected_hash(model, hash, sizeof hash);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(m, "file_hash")), hash);
#endif
    json_object *rows = jget(root, "model_results");
    CU_ASSERT_EQUAL_FATAL(json_object_array_length(rows), 1);
    json_object *r = json_object_array_get_idx(rows, 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "status")), "ok");
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "backends")), "cpu");
    CU_ASSERT_EQUAL((int)jnum(r, "n_prompt"), 8);
    CU_ASSERT_EQUAL((int)jnum(r, "n_gen"), 4);
    CU_ASSERT_EQUAL(jnum(r, "n_depth"), 0); /* from an empty cache unless -d */
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "kv_type")), "f16"); /* the default */
    json_object *pp = jget(r, "pp_timing"), *tg = jget(r, "tg_timing");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tg);
    CU_ASSERT_EQUAL(json_object_array_length(jget(pp, "samples_ns")), 2); /* -r 2 */
    check_timing_consistent(pp);
    check_timing_consistent(tg);
    double pp_med = jnum(jget(pp, "stats"), "median_ns"), tg_med = jnum(jget(tg, "stats"),
                                                                        "median_ns");
    CU_ASSERT_TRUE(near(jnum(r, "pp_tps"), 8 / (pp_med * 1e-9), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "tg_tps"), 4 / (tg_med * 1e-9), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "pp_cold_tps"), 8 / (jnum(pp, "first_ns") * 1e-9), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "tg_cold_tps"), 4 / (jnum(tg, "first_ns") * 1e-9), 1e-9));
    /* The roofline: measured bandwidth over the bytes a token reads: the weights, and the f16
     * KV cache (half an f32 one's bytes) at (4 + 1) / 2 positions on average over the 4 steps
     * from an empty cache. */
    double wbytes = jnum(r, "weight_bytes_per_token"), kvbytes = jnum(r, "kv_bytes_per_token");
    CU_ASSERT_TRUE(near(wbytes, expected_weight_bytes(model), 1e-12));
    CU_ASSERT_TRUE(near(kvbytes, expected_kv_bytes(model, 1) / 2 * 2.5, 1e-12));
    /* ... at the bandwidth sampled around the tg repetitions: before each of the 1 + 2 and after
     * the last, a median of the samples within their range. */
    double bw = jnum(r, "tg_bandwidth_gbs"), lo = jnum(r, "tg_bandwidth_min_gbs"),
           hi = jnum(r, "tg_bandwidth_max_gbs");
    CU_ASSERT_TRUE(lo > 0 && lo <= bw && bw <= hi);
    CU_ASSERT_TRUE(near(jnum(r, "roofline_tps"), bw * 1e9 / (wbytes + kvbytes), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "roofline_fraction"), jnum(r, "tg_tps") / jnum(r, "roofline_tps"),
                        1e-9));
    CU_ASSERT_TRUE(jnum(r, "peak_rss_bytes") > 0);
    CU_ASSERT_TRUE(jnum(r, "session_s") >= 0 && jnum(r, "load_s") >= 0);
    check_model_additions(root, r, "off", "cpu");
    check_model_device_times(root, r, 8, 4);
    /* The CPU backend reports its own time: one device, every partition timed. */
    json_object *dts = jget(r, "device_times");
    CU_ASSERT_EQUAL_FATAL(json_object_array_length(dts), 1);
    json_object *dt0 = json_object_array_get_idx(dts, 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(dt0, "backend")), "cpu");
    CU_ASSERT_TRUE(json_object_get_boolean(jget(dt0, "pp_all_device")));
    CU_ASSERT_TRUE(json_object_get_boolean(jget(dt0, "tg_all_device")));
    CU_ASSERT_TRUE(jnum(r, "pp_device_tps") > 0 && jnum(r, "tg_device_tps") > 0);
    json_object_put(root);

    /* The reader takes it back, and its Markdown has the model row. */
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL(d.n_model_results, 1);
    char *buf = doc_text(&d, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| cpu | "));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| pp8 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| off | cpu "));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "### Device time"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| cpu | all devices + copies |"));
    CU_ASSERT_EQUAL(d.model_results[0].n_memory, 1);
    CU_ASSERT_STRING_EQUAL(d.model_results[0].tune_cache, "off");
    CU_ASSERT_STRING_EQUAL(d.tune_mode, "off");
    free(buf);
    /* CSV of a model document: its rows, with the device memory summed. */
    buf = doc_text(&d, BENCH_FORMAT_CSV, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_TRUE(strncmp(buf, "engine,backends,status,", 23) == 0);
    char mem_col[48];
    snprintf(mem_col, sizeof mem_col, ",%llu,",
             (unsigned long long)d.model_results[0].memory[0].total_bytes);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\nbastion,cpu,ok,,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, mem_col));
    free(buf);
    bench_doc_free(&d);

    /* --kv-type f32: the session's cache is f32, and the row says so. */
    rc = RUN(NULL, "bench", "model", "-m", model, "--quick", "-p", "4", "-n", "2", "-r", "1",
             "--backend", "cpu", "--kv-type", "f32", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(d.n_model_results, 1);
    CU_ASSERT_STRING_EQUAL(d.model_results[0].status, "ok");
    CU_ASSERT_STRING_EQUAL(d.model_results[0].kv_type, "f32");
    CU_ASSERT_TRUE(d.model_results[0].tg_tps > 0);
    /* The f32 cache's bytes at (2 + 1) / 2 positions. */
    CU_ASSERT_TRUE(near(d.model_results[0].kv_bytes_per_token,
                        expected_kv_bytes(model, 1) * 1.5, 1e-12));
    bench_doc_free(&d);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "--kv-type", "q3"), 2);

    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-p", "0", "-n", "0"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", "/nonexistent.gguf", "-p", "1", "-n", "1"),
                    1);
}

/* The trace of a -p 4 -n 4 -d 8 run at --profile-level partitions (the device-time
 * repetitions): every record's n_kv is the cache's length when it ran, so the tg steps ran at
 * 9..12 positions and the prompt at 12 (8 of depth, then its own 4), and the untimed prefill (8
 * tokens at once: n_batch is min(depth, 512) when that is above -p) left no record. */
static void check_depth_trace(const char *trace_path)
{
    json_object *trace = json_object_from_file(trace_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trace);
    json_object *events = jget(trace, "traceEvents");
    CU_ASSERT_PTR_NOT_NULL_FATAL(events);
    uint32_t tg_seen = 0, pp_runs = 0, other = 0; /* tg_seen: bit k for n_kv 9 + k */
    for (size_t i = 0; i < json_object_array_length(events); i++) {
        json_object *ev = json_object_array_get_idx(events, i), *args = jget(ev, "args");
        if (strcmp(json_object_get_string(jget(ev, "ph")), "X") != 0)
            continue;
        const double n_tokens = jnum(args, "n_tokens"), n_kv = jnum(args, "n_kv");
        const bool body = strcmp(json_object_get_string(jget(args, "program")), "body") == 0;
        if (n_tokens == 1 && n_kv >= 9 && n_kv <= 12)
            tg_seen |= body ? 1u << (uint32_t)(n_kv - 9) : 0;
        else if (n_tokens == 4 && n_kv == 12)
            pp_runs += body;
        else
            other++;
    }
    CU_ASSERT_EQUAL(tg_seen, 0xfu);
    CU_ASSERT_EQUAL(pp_runs, 1);
    CU_ASSERT_EQUAL(other, 0);
    json_object_put(trace);
}

/* -d: every pp and tg repetition starts from a cache holding n_depth tokens. */
static void test_model_depth(void)
{
    const char *model = getenv("BASTION_MODEL");
    struct stat sb;
    if (!model || !*model || stat(model, &sb) != 0) {
        fprintf(stderr, "\n  BASTION_MODEL is not set or missing: bench model -d not exercised\n");
        return;
    }
    char json_buf[256], trace_buf[256];
    const char *json_path = tmp_path("model-depth.json", json_buf, sizeof json_buf);
    const char *trace_path = tmp_path("model-depth-trace.json", trace_buf, sizeof trace_buf);
    int rc = RUN(NULL, "bench", "model", "-m", model, "--quick", "-p", "4", "-n", "4", "-d", "8",
                 "-r", "1", "--backend", "cpu", "--profile", trace_path, "--profile-level",
                 "partitions", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    json_object *r = json_object_array_get_idx(jget(root, "model_results"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_STRING_EQUAL_FATAL(json_object_get_string(jget(r, "status")), "ok");
    CU_ASSERT_EQUAL(jnum(r, "n_depth"), 8);
    /* The f16 cache's bytes at 8 + (4 + 1) / 2 positions per step. */
    const double kvbytes = jnum(r, "kv_bytes_per_token");
    CU_ASSERT_TRUE(near(kvbytes, expected_kv_bytes(model, 1) / 2 * 10.5, 1e-12));
    CU_ASSERT_TRUE(near(jnum(r, "roofline_tps"),
                        jnum(r, "tg_bandwidth_gbs") * 1e9 /
                            (jnum(r, "weight_bytes_per_token") + kvbytes),
                        1e-9));
    check_model_additions(root, r, "off", "cpu"); /* the cache holds 8 + 4 + 1 positions */
    check_model_device_times(root, r, 4, 4);
    json_object_put(root);
    check_depth_trace(trace_path);

    /* The reader takes n_depth back, and the reports name the tests as llama-bench does. */
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(d.n_model_results, 1);
    CU_ASSERT_EQUAL(d.model_results[0].n_depth, 8);
    char *buf = doc_text(&d, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| pp4 @ d8 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| tg4 @ d8 |"));
    free(buf);
    bench_doc_free(&d);

    /* Token counts, as -p and -n. */
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-d", "65537"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "--n-depth", "deep"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-d", "-1"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-d"), 2);
}

/* --- device time (last_execute_ns): bench ops' device_timing, bench model's device_times ---- */

/* model_results[].device_times against each other and the row (bench/SCHEMA.md): per device,
 * the rates follow from the sums; the row's rate counts every device's time plus copies, so it
 * is at most any one device's rate when every device reported. */
static void check_model_device_times(json_object *root, json_object *r, uint32_t n_prompt,
                                     uint32_t n_gen)
{
    json_object *dts = jget(r, "device_times");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dts);
    size_t n = json_object_array_length(dts), n_dev = json_object_array_length(jget(root,
                                                                                    "devices"));
    CU_ASSERT_TRUE(n >= 1);
    bool all_pp = true, all_tg = true;
    double sum_pp = 0, sum_tg = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(dts, i);
        int64_t d = (int64_t)jnum(t, "device");
        CU_ASSERT_TRUE(d >= 0 && (size_t)d < n_dev);
        static const char *const tests[2] = {"pp", "tg"};
        const uint32_t tokens[2] = {n_prompt, n_gen};
        for (int k = 0; k < 2; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_partitions", tests[k]);
            double parts = jnum(t, key);
            snprintf(key, sizeof key, "%s_all_device", tests[k]);
            bool all = json_object_get_boolean(jget(t, key));
            snprintf(key, sizeof key, "%s_device_ns", tests[k]);
            double dev_ns = jnum(t, key);
            snprintf(key, sizeof key, "%s_wall_ns", tests[k]);
            double wall_ns = jnum(t, key);
            snprintf(key, sizeof key, "%s_device_tps", tests[k]);
            double tps = jnum(t, key);
            CU_ASSERT_TRUE(parts >= 0 && dev_ns >= 0 && wall_ns >= 0);
            if (parts > 0)
                CU_ASSERT_TRUE(wall_ns > 0);
            if (all && parts > 0 && dev_ns > 0)
                CU_ASSERT_TRUE(near(tps, tokens[k] / (dev_ns * 1e-9), 1e-9));
            if (!all)
                CU_ASSERT_TRUE(isnan(tps));
            if (parts > 0) {
                if (k == 0) {
                    all_pp = all_pp && all;
                    sum_pp += dev_ns;
                } else {
                    all_tg = all_tg && all;
                    sum_tg += dev_ns;
                }
            }
        }
    }
    double pp = jnum(r, "pp_device_tps"), tg = jnum(r, "tg_device_tps");
    CU_ASSERT_EQUAL(isnan(pp), !all_pp);
    CU_ASSERT_EQUAL(isnan(tg), !all_tg);
    if (all_pp && sum_pp > 0)
        CU_ASSERT_TRUE(pp <= n_prompt / (sum_pp * 1e-9) * (1 + 1e-9));
    if (all_tg && sum_tg > 0)
        CU_ASSERT_TRUE(tg <= n_gen / (sum_tg * 1e-9) * (1 + 1e-9));
}

/* Whether this build has the npu-sim plugin (a note when not). */
static bool have_npu_sim(void)
{
    const char *dir = getenv("BASTION_BACKEND_PATH");
    char path[512];
    snprintf(path, sizeof path, "%s/libbst-backend-npu-sim.so", dir ? dir : "");
    struct stat sb;
    if (dir && stat(path, &sb) == 0)
        return true;
    fprintf(stderr, "\n  npu-sim plugin not built: device time of a modelled device not "
                    "exercised\n");
    return false;
}

/* Runs `bastion` with BASTION_NPU_SIM_DEVICE=chip; restores the variable. */
static int run_on_chip(const char *chip, const char *out, const char *const *args)
{
    const char *saved_env = getenv("BASTION_NPU_SIM_DEVICE");
    char *saved = saved_env ? strdup(saved_env) : NULL;
    if (setenv("BASTION_NPU_SIM_DEVICE", chip, 1) != 0) {
        free(saved);
        return -1;
    }
    int rc = run_bastion(out, args);
    int restored = saved ? setenv("BASTION_NPU_SIM_DEVICE", saved, 1)
                         : unsetenv("BASTION_NPU_SIM_DEVICE");
    free(saved);
    return restored == 0 ? rc : -1;
}

/* bench ops on the simulated NPU: its modelled time becomes device_timing, consistent with the
 * wall samples, and bench compare lines the two shipped chips up. The one order asserted is
 * between two outputs of the cost model (deterministic, not a measurement): the large chip's
 * modelled GEMV is faster — a harness that fell back to wall time would not reliably see it. */
static void test_ops_npu_sim_device_time(void)
{
    if (!have_npu_sim())
        return;
    static const char *const chips[2] = {"npu-small", "npu-large"};
    char paths[2][256];
    double dev_median[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        char name[32];
        snprintf(name, sizeof name, "ops-%s.json", chips[c]);
        tmp_path(name, paths[c], sizeof paths[c]);
        int rc = run_on_chip(chips[c], NULL,
                             (const char *const[]){"bench", "ops", "--backend", "npu-sim", "--op",
                                                   "matmul", "--dtype", "q4_1", "--shape",
                                                   "576x1x576", "--budget", "0.02", "--json",
                                                   paths[c], NULL});
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        json_object *root = json_object_from_file(paths[c]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(root);
        CU_ASSERT_EQUAL(bench_schema_check(root), 0);
        json_object *results = jget(root, "results");
        CU_ASSERT_EQUAL_FATAL(json_object_array_length(results), 1);
        json_object *r = json_object_array_get_idx(results, 0);
        CU_ASSERT_STRING_EQUAL_FATAL(json_object_get_string(jget(r, "status")), "ok");
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "time_source")), "device");
        check_consistency(root, r, jnum(jget(jget(root, "baselines"), "bandwidth"), "gbs"));
        dev_median[c] = jnum(jget(jget(r, "device_timing"), "stats"), "median_ns");
        json_object_put(root);
    }
    CU_ASSERT_TRUE(dev_median[1] > 0 && dev_median[1] < dev_median[0]);

    bench_doc a, b;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(paths[0], &a, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(paths[1], &b, &e), BST_OK);
    CU_ASSERT_STRING_EQUAL(a.results.items[0].time_source, "device");
    CU_ASSERT_EQUAL(a.results.items[0].device_timing.n_samples,
                    a.results.items[0].timing.n_samples);
    bench_compare_summary sum;
    char *buf = doc_text(&a, BENCH_FORMAT_MD, &b, 5.0, &sum);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    /* Different device names, one case each: matched as the same plugin on another chip. */
    CU_ASSERT_EQUAL(sum.matched, 1);
    CU_ASSERT_EQUAL(sum.only_a + sum.only_b, 0);
    CU_ASSERT_EQUAL(sum.improvements, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, " device "));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "npu-small, B Simulated NPU npu-large"));
    free(buf);
    /* The Markdown shows the device columns. */
    buf = doc_text(&a, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| device median | device min | device max |"));
    free(buf);
    bench_doc_free(&a);
    bench_doc_free(&b);
}

/* bench model with npu-sim,cpu: both devices in device_times, the NPU's time modelled. */
static void test_model_npu_sim_device_time(void)
{
    const char *model = getenv("BASTION_MODEL");
    if (!model || !*model || !have_npu_sim())
        return;
    char json_buf[256], trace_buf[256];
    const char *json_path = tmp_path("model-npu.json", json_buf, sizeof json_buf);
    const char *trace_path = tmp_path("model-npu-trace.json", trace_buf, sizeof trace_buf);
    /* --profile-level partitions: the device-time repetition is also the traced one. */
    int rc = run_on_chip("npu-large", NULL,
                         (const char *const[]){"bench", "model", "-m", model, "--quick", "-p",
                                               "4", "-n", "2", "-r", "1", "--backend",
                                               "npu-sim,cpu", "--profile", trace_path,
                                               "--profile-level", "partitions", "--json",
                                               json_path, NULL});
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *trace = json_object_from_file(trace_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trace);
    size_t size = 0;
    char *trace_text = bst_test_read_file(trace_path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trace_text);
    CU_ASSERT_PTR_NOT_NULL(strstr(trace_text, "\"device_us\""));
    free(trace_text);
    json_object_put(trace);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    json_object *r = json_object_array_get_idx(jget(root, "model_results"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_STRING_EQUAL_FATAL(json_object_get_string(jget(r, "status")), "ok");
    check_model_device_times(root, r, 4, 2);
    json_object *dts = jget(r, "device_times");
    bool npu = false;
    for (size_t i = 0; i < json_object_array_length(dts); i++) {
        json_object *t = json_object_array_get_idx(dts, i);
        if (strcmp(json_object_get_string(jget(t, "backend")), "npu-sim") != 0)
            continue;
        npu = true;
        CU_ASSERT_TRUE(jnum(t, "pp_partitions") > 0 && jnum(t, "tg_partitions") > 0);
        CU_ASSERT_TRUE(json_object_get_boolean(jget(t, "pp_all_device")));
        CU_ASSERT_TRUE(jnum(t, "tg_device_ns") > 0);
        /* The row's devices now include the plugin that loads only when named. */
        int64_t d = (int64_t)jnum(t, "device");
        CU_ASSERT_TRUE_FATAL(d >= 0);
        CU_ASSERT_STRING_EQUAL(
            json_object_get_string(jget(json_object_array_get_idx(jget(root, "devices"),
                                                                   (size_t)d),
                                        "backend")),
            "npu-sim");
    }
    CU_ASSERT_TRUE(npu);
    json_object_put(root);
}

/* --- bst_program_memory / bst_session_memory (what bench model's device_memory reports) ----- */

/* z = silu(x . w^T + b): x f32[2,3] input, w f32[4,3] weight, b f32[4] constant, z output; the
 * matmul and the add are scratch values in the arena. */
static void test_memory_api(void)
{
    static const float w[4][3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {1, 0, 1}};
    static const float bias[4] = {1, 2, 3, 4};
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t xs[2] = {2, 3}, ws[2] = {4, 3}, bs[1] = {4};
    bst_value vx, vw, vb, mm, y, z;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &vx) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w", BST_DTYPE_F32, 2, ws, w, sizeof w, &vw) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_const(g, BST_DTYPE_F32, 1, bs, bias, sizeof bias, &vb) == BST_OK);
    bst_value in[2] = {vx, vw};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_MATMUL, in, 2, NULL, 0, &mm) == BST_OK);
    in[0] = mm;
    in[1] = vb;
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_ADD, in, 2, NULL, 0, &y) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_SILU, &y, 1, NULL, 0, &z) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, z, "z") == BST_OK);
    /* cpu first: everything lands there; a second backend's device, when there is one, holds
     * nothing. */
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 1, .backends = "cpu,opencl"};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    CU_ASSERT_FATAL(bst_context_device_count(ctx) >= 1);
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    bst_graph_destroy(g);

    bst_memory_usage u;
    memset(&u, 0, sizeof u);
    u.struct_size = sizeof u;
    CU_ASSERT_EQUAL_FATAL(bst_program_memory(prog, 0, &u), BST_OK);
    CU_ASSERT_EQUAL(u.struct_size, sizeof u);
    CU_ASSERT_EQUAL(u.io_bytes, 2 * 3 * 4 + 2 * 4 * 4); /* x and z */
    CU_ASSERT_EQUAL(u.state_bytes, 0);
    CU_ASSERT_TRUE(u.weight_bytes > 0);                  /* w and b, as the backend holds them */
    CU_ASSERT_TRUE(u.arena_bytes >= 2 * 4 * 4);          /* at least one [2,4] scratch value */
    CU_ASSERT_EQUAL(u.total_bytes, u.arena_bytes + u.weight_bytes + u.state_bytes + u.io_bytes);
    for (uint32_t d = 1; d < bst_context_device_count(ctx); d++) {
        bst_memory_usage other = {.struct_size = sizeof other};
        CU_ASSERT_EQUAL(bst_program_memory(prog, d, &other), BST_OK);
        CU_ASSERT_EQUAL(other.total_bytes, 0);
    }

    /* Errors name the problem and write nothing. */
    uint32_t n_dev = bst_context_device_count(ctx);
    bst_memory_usage e = {.struct_size = sizeof e, .arena_bytes = 7};
    CU_ASSERT_EQUAL(bst_program_memory(prog, n_dev, &e), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "out of range"));
    CU_ASSERT_EQUAL(e.arena_bytes, 7);
    e.struct_size = 8;
    CU_ASSERT_EQUAL(bst_program_memory(prog, 0, &e), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "struct_size"));
    CU_ASSERT_EQUAL(e.arena_bytes, 7);
    CU_ASSERT_EQUAL(bst_program_memory(NULL, 0, &u), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_program_memory(prog, 0, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_session_memory(NULL, 0, &u), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "bst_session_memory"));
    bst_program_destroy(prog);
    bst_context_destroy(ctx);
}

/* Runs bench model --quick with --tune `mode` against the tuning database in `cache_dir`; the
 * row's JSON object (to json_object_put *out_root), or NULL. */
static json_object *tuned_row(const char *model, const char *mode, json_object **out_root)
{
    char json_buf[256], name[64];
    snprintf(name, sizeof name, "tune-%s.json", mode);
    const char *json_path = tmp_path(name, json_buf, sizeof json_buf);
    *out_root = NULL;
    int rc = RUN(NULL, "bench", "model", "-m", model, "--quick", "-p", "4", "-n", "2", "-r", "1",
                 "--backend", "cpu", "--tune", mode, "--json", json_path);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        return NULL;
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL(root);
    if (!root)
        return NULL;
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    CU_ASSERT_TRUE(json_object_get_boolean(jget(jget(root, "settings"), "quick")));
    *out_root = root;
    return json_object_array_get_idx(jget(root, "model_results"), 0);
}

/* --tune: frozen on an empty database misses and measures nothing; cached then measures; a
 * second cached run finds every row (hit). Each row's counts agree with its summary word. */
static void test_model_tune(void)
{
    const char *model = getenv("BASTION_MODEL");
    struct stat sb;
    if (!model || !*model || stat(model, &sb) != 0) {
        fprintf(stderr, "\n  BASTION_MODEL is not set or missing: bench model --tune not exercised\n");
        return;
    }
    char dir_buf[256];
    const char *dir = tmp_path("tune-cache", dir_buf, sizeof dir_buf);
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    /* The spawned command inherits it: its own database, not the suite's or the user's. */
    char *saved = getenv("BASTION_CACHE_DIR") ? strdup(getenv("BASTION_CACHE_DIR")) : NULL;
    CU_ASSERT_EQUAL_FATAL(setenv("BASTION_CACHE_DIR", dir, 1), 0);

    json_object *root = NULL, *r = tuned_row(model, "frozen", &root);
    if (r) {
        check_model_additions(root, r, "frozen", "cpu");
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "tune_cache")), "frozen-miss");
    }
    json_object_put(root);
    r = tuned_row(model, "cached", &root);
    if (r) {
        check_model_additions(root, r, "cached", "cpu");
        CU_ASSERT_TRUE(jnum(r, "tune_measured") > 0);
    }
    json_object_put(root);
    r = tuned_row(model, "cached", &root);
    if (r) {
        check_model_additions(root, r, "cached", "cpu");
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "tune_cache")), "hit");
        /* Nothing measured again; whether nodes count as hits depends on the plan kept (a
         * static plan consults no kernel rows). */
        CU_ASSERT_EQUAL(jnum(r, "tune_measured"), 0);
    }
    json_object_put(root);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "--tune", "sometimes"), 2);

    int restored = saved ? setenv("BASTION_CACHE_DIR", saved, 1) : unsetenv("BASTION_CACHE_DIR");
    CU_ASSERT_EQUAL(restored, 0);
    free(saved);
}

static void cleanup(void)
{
    if (tmp_dir[0]) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"schema_rejects", test_schema_rejects},
        {"ops_quick_json", test_ops_quick_json},
        {"ops_user_shape", test_ops_user_shape},
        {"ops_attention", test_ops_attention},
        {"ops_ffn", test_ops_ffn},
        {"ops_cli_errors", test_ops_cli_errors},
        {"report_csv", test_report_csv},
        {"report_md", test_report_md},
        {"report_svg", test_report_svg},
        {"compare", test_compare},
        {"compare_model", test_compare_model},
        {"model_depth_docs", test_model_depth_docs},
        {"cli_report_compare", test_cli_report_compare},
        {"model_bench", test_model_bench},
        {"model_depth", test_model_depth},
        {"ops_npu_sim_device_time", test_ops_npu_sim_device_time},
        {"model_npu_sim_device_time", test_model_npu_sim_device_time},
        {"model_tune", test_model_tune},
        {"memory_api", test_memory_api},
        {"cleanup", cleanup},
        {NULL, NULL},
    };
    return bst_test_run_suite("bench", cases);
}
