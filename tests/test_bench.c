/*
 * tests/test_bench.c — `bastion bench ops` end to end: its JSON document, checked by this
 * suite's own validator written from bench/SCHEMA.md (bench_schema_check.c, not the writer's
 * code) and shown to reject documents with a field missing or mistyped; user shapes, attention
 * and the fused FFN; the command line's errors; a modelled device's time. No timing is asserted
 * — a benchmark reports numbers, a test checks that they are internally consistent (stats from
 * the samples, GFLOP/s from the flop count and the median, ratios from the baselines).
 * Reports and comparisons: test_bench_docs.c; bench model: test_bench_model.c.
 */
#include "bench.h"
#include "bench_schema_check.h"
#include "bench_test_util.h"
#include "runtime/model/gguf.h"
#include "test_util.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int main(void)
{
    static const bst_test_case cases[] = {
        {"schema_rejects", test_schema_rejects},
        {"ops_quick_json", test_ops_quick_json},
        {"ops_user_shape", test_ops_user_shape},
        {"ops_attention", test_ops_attention},
        {"ops_ffn", test_ops_ffn},
        {"ops_cli_errors", test_ops_cli_errors},
        {"ops_npu_sim_device_time", test_ops_npu_sim_device_time},
        {"cleanup", bench_test_cleanup},
        {NULL, NULL},
    };
    return bst_test_run_suite("bench", cases);
}
