/*
 * tests/test_bench_units.c — the benchmark harness's parts on their own (bench/): statistics and
 * the measuring loop, machine facts (sizes, /proc/cpuinfo, cache topology), case selection,
 * shapes and geometry. test_bench runs the `bastion bench` command and checks its documents.
 */
#include "bench.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool near(double a, double b, double rel)
{
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-12;
}

/* --- statistics ---------------------------------------------------------------------------- */

static void test_stats(void)
{
    bench_stats s;
    const uint64_t odd[] = {5, 1, 3, 2, 4};
    CU_ASSERT_EQUAL_FATAL(bench_stats_compute(odd, 5, &s, NULL), BST_OK);
    CU_ASSERT_EQUAL(s.n, 5);
    CU_ASSERT_DOUBLE_EQUAL(s.median_ns, 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.min_ns, 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.max_ns, 5.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.mean_ns, 3.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.stddev_ns, sqrt(2.5), 1e-12); /* (4+1+0+1+4)/4 */
    const uint64_t even[] = {10, 1, 3, 2};
    CU_ASSERT_EQUAL_FATAL(bench_stats_compute(even, 4, &s, NULL), BST_OK);
    CU_ASSERT_DOUBLE_EQUAL(s.median_ns, 2.5, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.mean_ns, 4.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s.stddev_ns, sqrt(50.0 / 3.0), 1e-12); /* 9+4+1+36 over 3 */
    CU_ASSERT_EQUAL_FATAL(bench_stats_compute(odd, 1, &s, NULL), BST_OK);
    CU_ASSERT_DOUBLE_EQUAL(s.stddev_ns, 0.0, 1e-12);
    CU_ASSERT_EQUAL_FATAL(bench_stats_compute(NULL, 0, &s, NULL), BST_OK);
    CU_ASSERT_EQUAL(s.n, 0);
}

typedef struct counter {
    uint64_t calls, last;
    uint32_t fail_at; /* 0 = never */
} counter;

static bst_status count_call(void *user, uint64_t iteration, bench_error *e)
{
    counter *c = user;
    c->last = iteration;
    if (c->fail_at && ++c->calls == c->fail_at)
        return bench_fail(e, BST_ERR_BACKEND, "call %llu failed", (unsigned long long)iteration);
    if (!c->fail_at)
        c->calls++;
    return BST_OK;
}

static void test_measure_loop(void)
{
    /* A zero budget still takes min_reps; max_reps caps a generous one. */
    counter c = {0, 0, 0};
    bench_budget b = {0.0, 3, 100, 1};
    bench_timing t;
    CU_ASSERT_EQUAL_FATAL(bench_measure(&b, count_call, &c, &t, NULL), BST_OK);
    CU_ASSERT_EQUAL(t.warmup, 1);
    CU_ASSERT_EQUAL(t.n_samples, 3);
    CU_ASSERT_EQUAL(t.stats.n, 3);
    CU_ASSERT_EQUAL(c.calls, 4);
    CU_ASSERT_EQUAL(c.last, 3); /* iterations count every call, warm-up included */
    bench_timing_free(&t);

    counter c2 = {0, 0, 0};
    bench_budget b2 = {10.0, 3, 7, 4};
    CU_ASSERT_EQUAL_FATAL(bench_measure(&b2, count_call, &c2, &t, NULL), BST_OK);
    CU_ASSERT_EQUAL(t.n_samples, 7);
    CU_ASSERT_TRUE(t.warmup >= 1 && t.warmup <= 4);
    CU_ASSERT_EQUAL(c2.calls, t.warmup + 7);
    bench_timing_free(&t);

    /* Calls of about the whole budget: min_reps gives way rather than doubling the time. */
    counter slow = {0, 0, 0};
    bench_budget tight = {1e-9, 5, 100, 1};
    CU_ASSERT_EQUAL_FATAL(bench_measure(&tight, count_call, &slow, &t, NULL), BST_OK);
    CU_ASSERT_EQUAL(t.n_samples, 1);
    bench_timing_free(&t);

    counter c3 = {0, 0, 3};
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(bench_measure(&b, count_call, &c3, &t, &e), BST_ERR_BACKEND);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "failed"));
    bench_timing_free(&t);
}

/* --- machine ------------------------------------------------------------------------------- */

static void test_parse_size(void)
{
    uint64_t v = 0;
    CU_ASSERT_TRUE(bench_parse_size("48K", &v) && v == 49152);
    CU_ASSERT_TRUE(bench_parse_size("32768K\n", &v) && v == 33554432);
    CU_ASSERT_TRUE(bench_parse_size("2M", &v) && v == 2097152);
    CU_ASSERT_TRUE(bench_parse_size("512", &v) && v == 512);
    CU_ASSERT_FALSE(bench_parse_size("", &v));
    CU_ASSERT_FALSE(bench_parse_size("K", &v));
    CU_ASSERT_FALSE(bench_parse_size("12X", &v));
    CU_ASSERT_FALSE(bench_parse_size("-4K", &v));
    CU_ASSERT_FALSE(bench_parse_size("99999999999999999999K", &v));
}

static void test_cpuinfo(void)
{
    /* Two cores with two hyperthreads each: four processors, two physical cores. */
    const char *text =
        "processor\t: 0\nvendor_id\t: GenuineTest\nmodel name\t: Test CPU @ 3.0GHz\n"
        "physical id\t: 0\ncore id\t: 0\n"
        "flags\t\t: fpu vmx sse sse2 ssse3 sse4_2 avx avx2 fma f16c avx512f avx512_vnni "
        "amx_tile hypervisor\n\n"
        "processor\t: 1\nvendor_id\t: GenuineTest\nmodel name\t: Test CPU @ 3.0GHz\n"
        "physical id\t: 0\ncore id\t: 1\nflags\t\t: fpu sse\n\n"
        "processor\t: 2\nphysical id\t: 0\ncore id\t: 0\n\n"
        "processor\t: 3\nphysical id\t: 0\ncore id\t: 1\n";
    bench_machine m;
    memset(&m, 0, sizeof m);
    bench_machine_parse_cpuinfo(text, &m);
    CU_ASSERT_STRING_EQUAL(m.cpu_model, "Test CPU @ 3.0GHz");
    CU_ASSERT_STRING_EQUAL(m.cpu_vendor, "GenuineTest");
    CU_ASSERT_EQUAL(m.physical_cores, 2);
    const char *want[] = {"sse",  "sse2",    "ssse3",       "sse4_2",  "avx",
                          "avx2", "fma",     "f16c",        "avx512f", "avx512_vnni",
                          "amx_tile"};
    CU_ASSERT_EQUAL_FATAL(m.n_isa, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CU_ASSERT_STRING_EQUAL(m.isa[i], want[i]);
}

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static void make_cache(const char *root, int idx, const char *level, const char *type,
                       const char *size)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/index%d", root, idx);
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/level", dir);
    CU_ASSERT_TRUE(write_text(path, level));
    snprintf(path, sizeof path, "%s/type", dir);
    CU_ASSERT_TRUE(write_text(path, type));
    snprintf(path, sizeof path, "%s/size", dir);
    CU_ASSERT_TRUE(write_text(path, size));
    snprintf(path, sizeof path, "%s/shared_cpu_list", dir);
    CU_ASSERT_TRUE(write_text(path, "0-1\n"));
}

static void test_read_caches(void)
{
    char root[] = "/tmp/bastion-test-bench-cache-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
    make_cache(root, 0, "1\n", "Data\n", "48K\n");
    make_cache(root, 1, "1\n", "Instruction\n", "32K\n");
    make_cache(root, 2, "2\n", "Unified\n", "1024K\n");
    make_cache(root, 3, "3\n", "Unified\n", "32768K\n");
    bench_machine m;
    memset(&m, 0, sizeof m);
    bench_machine_read_caches(root, &m);
    CU_ASSERT_EQUAL(m.n_caches, 4);
    CU_ASSERT_EQUAL(m.llc_bytes, 33554432u);
    CU_ASSERT_EQUAL(m.caches[0].level, 1);
    CU_ASSERT_EQUAL(m.caches[3].level, 3);
    CU_ASSERT_STRING_EQUAL(m.caches[3].shared_cpus, "0-1");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CU_ASSERT_EQUAL(system(cmd), 0);

    /* A machine whose only caches are L1/L2: the LLC is L2. */
    bench_machine m2;
    memset(&m2, 0, sizeof m2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(strcpy(root, "/tmp/bastion-test-bench-cache-XXXXXX")));
    make_cache(root, 0, "1\n", "Data\n", "32K\n");
    make_cache(root, 1, "2\n", "Unified\n", "2M\n");
    bench_machine_read_caches(root, &m2);
    CU_ASSERT_EQUAL(m2.llc_bytes, 2097152u);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_cold_copies(void)
{
    const uint64_t llc = 32u << 20;
    CU_ASSERT_EQUAL(bench_cold_copies(1u << 20, llc), 128); /* 4 x 32 MiB of 1 MiB copies */
    CU_ASSERT_EQUAL(bench_cold_copies(3u << 20, llc), 43);  /* rounded up */
    CU_ASSERT_EQUAL(bench_cold_copies(300u << 20, llc), 1);
    CU_ASSERT_EQUAL(bench_cold_copies(16, llc), 4096); /* capped */
    CU_ASSERT_EQUAL(bench_cold_copies(1u << 20, 0), 1); /* LLC unknown: no rotation */
}

/* A same-size read: too few bytes for a 128-byte block per thread is recorded with its reason,
 * not an error; a real one keeps the faster of 1 and N threads, its rate from whole blocks. */
static void test_read_measure(void)
{
    bench_budget b = {0.0, 5, 5, 1};
    bench_error e;
    memset(&e, 0, sizeof e);
    bench_read r;
    CU_ASSERT_EQUAL(bench_read_measure(64, 4, 2, &b, &r, &e), BST_OK);
    CU_ASSERT_FALSE(r.measured);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, "too small"));
    bench_timing_free(&r.timing);

    const uint64_t bytes = (1u << 20) + 300; /* not a whole number of blocks */
    CU_ASSERT_EQUAL(bench_read_measure(bytes, 8, 2, &b, &r, &e), BST_OK);
    CU_ASSERT_TRUE(r.measured);
    CU_ASSERT_EQUAL(r.reason[0], '\0');
    CU_ASSERT_EQUAL(r.bytes, bytes);
    CU_ASSERT_EQUAL(r.copies, 8);
    CU_ASSERT_TRUE(r.threads == 1 || r.threads == 2);
    CU_ASSERT_EQUAL(r.timing.n_samples, 5);
    double read = r.gbs * r.timing.stats.median_ns; /* whole 128-byte blocks per thread */
    uint64_t per = bytes / r.threads / 128 * 128;
    CU_ASSERT_DOUBLE_EQUAL(read, (double)(per * r.threads), 1e-6 * (double)bytes);
    bench_timing_free(&r.timing);
}

/* A read kept open: its blocks add up (each block's first call is a warm-up), both thread
 * counts are timed, and finish keeps the faster's samples; a read the machine cannot do leaves
 * blocks doing nothing and finish saying why. */
static void test_reader_blocks(void)
{
    bench_error e;
    memset(&e, 0, sizeof e);
    bench_reader *r = NULL;
    const bench_budget three = {0.0, 3, 3, 1}, four = {0.0, 4, 4, 1};
    CU_ASSERT_EQUAL_FATAL(bench_reader_open(1u << 20, 8, 2, &r, &e), BST_OK);
    CU_ASSERT_EQUAL(bench_reader_block(r, &three, &e), BST_OK);
    CU_ASSERT_EQUAL(bench_reader_block(r, &four, &e), BST_OK);
    bench_read rd;
    const bench_budget stream = {0.0, 2, 2, 1};
    CU_ASSERT_EQUAL(bench_reader_finish(r, &stream, &rd, &e), BST_OK);
    bench_reader_close(r);
    CU_ASSERT_TRUE(rd.measured);
    CU_ASSERT_EQUAL(rd.timing.n_samples, 7);
    CU_ASSERT_EQUAL(rd.timing.warmup, 2);
    CU_ASSERT_EQUAL(rd.timing.stats.n, 7);
    CU_ASSERT_TRUE(rd.threads == 1 || rd.threads == 2);
    CU_ASSERT_TRUE(rd.stream_gbs > 0);
    CU_ASSERT_TRUE(rd.handoff_ns > 0);
    bench_timing_free(&rd.timing);

    CU_ASSERT_EQUAL_FATAL(bench_reader_open(64, 4, 2, &r, &e), BST_OK);
    CU_ASSERT_EQUAL(bench_reader_block(r, &three, &e), BST_OK);
    CU_ASSERT_EQUAL(bench_reader_finish(r, &stream, &rd, &e), BST_OK);
    bench_reader_close(r);
    CU_ASSERT_FALSE(rd.measured);
    CU_ASSERT_PTR_NOT_NULL(strstr(rd.reason, "too small"));
    CU_ASSERT_EQUAL(rd.timing.n_samples, 0);
    bench_reader_close(NULL);
}

/* --- cases --------------------------------------------------------------------------------- */

static void test_parse_shape(void)
{
    bench_case c;
    char why[160];
    memset(&c, 0, sizeof c);
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("4096x1x14336", &c, why, sizeof why));
    CU_ASSERT_EQUAL(c.rank, 3);
    CU_ASSERT_EQUAL(c.dims[0], 4096);
    CU_ASSERT_EQUAL(c.dims[1], 1);
    CU_ASSERT_EQUAL(c.dims[2], 14336);
    CU_ASSERT_STRING_EQUAL(c.shape, "4096x1x14336");
    CU_ASSERT_TRUE(bench_parse_shape("576", &c, why, sizeof why) && c.rank == 1);
    CU_ASSERT_TRUE(bench_parse_shape("1x512x9x3x64", &c, why, sizeof why) && c.rank == 5 &&
                   c.dims[4] == 64); /* attention's TxSxHQxHKVxD */
    const char *bad[] = {"", "x", "4096x", "x4096", "4096x0x1", "1x2x3x4x5x6", "12a", "-1x2",
                         "99999999999x1", "4096 x 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        CU_ASSERT_FALSE(bench_parse_shape(bad[i], &c, why, sizeof why));
        CU_ASSERT_TRUE(why[0] != '\0');
    }
}

static void test_select(void)
{
    bench_case_list l;
    bench_error e;
    memset(&e, 0, sizeof e);
    bench_selection all = {NULL, NULL, NULL, 0, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&all, &l, &e), BST_OK);
    /* The default set holds the model's head, the standard GEMV and the 2048^3 GEMM. */
    bool head = false, gemv = false, gemm = false;
    for (size_t i = 0; i < l.n; i++) {
        const bench_case *c = &l.items[i];
        head = head || (c->op == BST_OP_MATMUL && c->dtype == BST_DTYPE_Q8_0 &&
                        strcmp(c->shape, "49152x1x576") == 0);
        gemv = gemv || (c->op == BST_OP_MATMUL && c->dtype == BST_DTYPE_Q4_0 &&
                        strcmp(c->shape, "4096x1x14336") == 0);
        gemm = gemm || strcmp(c->shape, "2048x2048x2048") == 0;
    }
    CU_ASSERT_TRUE(head && gemv && gemm);
    size_t n_all = l.n;
    bench_case_list_free(&l);

    bench_selection q = {"matmul", "q4_1", NULL, 0, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&q, &l, &e), BST_OK);
    CU_ASSERT_TRUE(l.n > 0 && l.n < n_all);
    for (size_t i = 0; i < l.n; i++)
        CU_ASSERT_TRUE(l.items[i].op == BST_OP_MATMUL && l.items[i].dtype == BST_DTYPE_Q4_1);
    bench_case_list_free(&l);

    const char *shapes[] = {"4096x1x14336", "64x2x32"};
    bench_selection u = {NULL, "q4_1,f32", shapes, 2, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&u, &l, &e), BST_OK);
    CU_ASSERT_EQUAL(l.n, 4); /* two shapes x two dtypes, matmul by default */
    bench_case_list_free(&l);

    bench_selection bad_op = {"matmull", NULL, NULL, 0, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_op, &l, &e), BST_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "matmull"));
    bench_selection bad_dt = {NULL, "q4_9", NULL, 0, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_dt, &l, &e), BST_ERR_PARSE);
    const char *odd_k[] = {"64x1x100"};
    bench_selection blk = {"matmul", "q4_1", odd_k, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&blk, &l, &e), BST_ERR_PARSE);
    const char *two[] = {"64x64"};
    bench_selection no_fit = {"matmul", NULL, two, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&no_fit, &l, &e), BST_ERR_PARSE);
    bench_selection none = {"silu", "q4_1", NULL, 0, false};
    CU_ASSERT_EQUAL(bench_cases_select(&none, &l, &e), BST_ERR_NOT_FOUND);

    /* Attention: the default set has the model's decode and prompt steps; a user shape must
     * have its queries within the positions and whole GQA groups. */
    bench_selection att = {"attention", NULL, NULL, 0, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&att, &l, &e), BST_OK);
    bool decode = false, prompt = false;
    for (size_t i = 0; i < l.n; i++) {
        decode = decode || strcmp(l.items[i].shape, "1x512x9x3x64") == 0;
        prompt = prompt || strcmp(l.items[i].shape, "512x512x9x3x64") == 0;
    }
    CU_ASSERT_TRUE(decode && prompt);
    bench_case_list_free(&l);
    const char *att_shapes[] = {"1x512x9x3x64", "8x8x4x4x32"};
    bench_selection att_user = {"attention", NULL, att_shapes, 2, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&att_user, &l, &e), BST_OK);
    CU_ASSERT_EQUAL(l.n, 4); /* two shapes x f32 and f16 (the KV cache's dtypes) */
    bench_case_list_free(&l);
    const char *late[] = {"9x8x4x2x32"}, *ragged[] = {"1x8x9x2x64"}, *four[] = {"1x8x9x64"};
    bench_selection bad_t = {"attention", NULL, late, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_t, &l, &e), BST_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "T <= S"));
    bench_selection bad_g = {"attention", NULL, ragged, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_g, &l, &e), BST_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "multiple of HKV"));
    /* Two ops of the same rank: each shape goes to the op it fits (a GEMV shape is no FFN,
     * whose E would be 1); only a shape neither takes is an error. */
    const char *mixed[] = {"3072x1x576", "1x576x1536"};
    bench_selection both = {"matmul,ffn_swiglu", "q4_1", mixed, 2, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&both, &l, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 3); /* 3072x1x576 as matmul; 1x576x1536 as matmul and FFN */
    CU_ASSERT_TRUE(l.items[0].op == BST_OP_MATMUL && l.items[1].op == BST_OP_MATMUL &&
                   l.items[2].op == BST_OP_FFN_SWIGLU);
    bench_case_list_free(&l);
    const char *neither[] = {"3x1x100"};
    bench_selection bad_both = {"matmul,ffn_swiglu", "q4_1", neither, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_both, &l, &e), BST_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "multiple of the 32-element block"));
    const char *ffn_odd[] = {"1x576x1500"};
    bench_selection bad_ffn = {"ffn_swiglu", "q4_1", ffn_odd, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_ffn, &l, &e), BST_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "multiples of the 32-element block"));
    bench_selection ffn_default = {"ffn_swiglu", NULL, NULL, 0, false};
    CU_ASSERT_EQUAL_FATAL(bench_cases_select(&ffn_default, &l, &e), BST_OK);
    CU_ASSERT_EQUAL(l.n, 2); /* the model's FFN for one token and for 512 */
    CU_ASSERT_STRING_EQUAL(l.items[0].shape, "1x576x1536");
    bench_case_list_free(&l);
    bench_selection bad_rank = {"attention", NULL, four, 1, false};
    CU_ASSERT_EQUAL(bench_cases_select(&bad_rank, &l, &e), BST_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "TxSxHQxHKVxD"));
}

static void test_geometry(void)
{
    bench_case c;
    char why[160];
    memset(&c, 0, sizeof c);
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("1536x1x576", &c, why, sizeof why));
    c.op = BST_OP_MATMUL;
    c.dtype = BST_DTYPE_Q4_1;
    bench_geometry g;
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
    CU_ASSERT_EQUAL(g.n_in, 2);
    CU_ASSERT_EQUAL(g.weight, 1);
    CU_ASSERT_DOUBLE_EQUAL(g.flops, 2.0 * 1536 * 576, 0.0);
    /* q4_1: 20 bytes per 32 elements; activations and output in f32. */
    CU_ASSERT_EQUAL(g.size[1], 1536u * 18u * 20u);
    CU_ASSERT_EQUAL(g.size[0], 576u * 4u);
    CU_ASSERT_EQUAL(g.size[2], 1536u * 4u);
    CU_ASSERT_DOUBLE_EQUAL(g.bytes, 552960.0 + 2304.0 + 6144.0, 0.0);
    CU_ASSERT_EQUAL(g.in[1].shape[0], 1536);
    CU_ASSERT_EQUAL(g.in[1].shape[1], 576);
    CU_ASSERT_EQUAL(g.in[1].strides[1], 20);
    CU_ASSERT_EQUAL(g.in[1].strides[0], 360);
    CU_ASSERT_EQUAL(g.in[0].shape[0], 1);
    CU_ASSERT_EQUAL(g.out.shape[1], 1536);
    CU_ASSERT_EQUAL(g.out.binding, 2);
    CU_ASSERT_STRING_EQUAL(g.text, "f32[1,576], q4_1[1536,576] -> f32[1,1536]");

    CU_ASSERT_TRUE_FATAL(bench_parse_shape("4x9x64", &c, why, sizeof why));
    c.op = BST_OP_ROPE;
    c.dtype = BST_DTYPE_F32;
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
    CU_ASSERT_EQUAL(g.n_in, 2);
    CU_ASSERT_EQUAL(g.in[1].dtype, BST_DTYPE_I32);
    CU_ASSERT_EQUAL(g.weight, -1);
    CU_ASSERT_EQUAL_FATAL(g.n_attrs, 3);
    for (uint32_t i = 1; i < g.n_attrs; i++) /* the ABI wants attributes sorted by key */
        CU_ASSERT_TRUE(g.attrs[i - 1].key < g.attrs[i].key);
    CU_ASSERT_EQUAL(g.attrs[2].key, BST_ATTR_ROPE_DIMS);
    CU_ASSERT_EQUAL(g.attrs[2].ints[0], 64);

    /* Attention: f32 queries and output, K and V in the case's dtype, causal; flops count
     * 4 D per visible (query, key) pair and head: 4 queries at the end of 8 positions see
     * 5, 6, 7 and 8 keys. */
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("4x8x6x2x32", &c, why, sizeof why));
    c.op = BST_OP_ATTENTION;
    c.dtype = BST_DTYPE_F16;
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
    CU_ASSERT_EQUAL(g.n_in, 3);
    CU_ASSERT_EQUAL(g.weight, -1);
    CU_ASSERT_EQUAL(g.size[0], 4u * 6u * 32u * 4u);
    CU_ASSERT_EQUAL(g.size[1], 8u * 2u * 32u * 2u);
    CU_ASSERT_EQUAL(g.size[2], g.size[1]);
    CU_ASSERT_EQUAL(g.size[3], g.size[0]);
    CU_ASSERT_DOUBLE_EQUAL(g.flops, 4.0 * 32 * 6 * (5 + 6 + 7 + 8), 0.0);
    CU_ASSERT_STRING_EQUAL(g.text, "f32[4,6,32], f16[8,2,32], f16[8,2,32] -> f32[4,6,32]");
    CU_ASSERT_EQUAL_FATAL(g.n_attrs, 3);
    for (uint32_t i = 1; i < g.n_attrs; i++)
        CU_ASSERT_TRUE(g.attrs[i - 1].key < g.attrs[i].key);
    CU_ASSERT_EQUAL(g.attrs[1].key, BST_ATTR_CAUSAL);
    CU_ASSERT_EQUAL(g.attrs[1].ints[0], 1);
    CU_ASSERT_DOUBLE_EQUAL(g.attrs[0].f, 1.0 / sqrt(32.0), 1e-15);
    /* A long prompt is probed with fewer positions (T and S halved together). */
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("4096x4096x32x8x128", &c, why, sizeof why));
    c.dtype = BST_DTYPE_F32;
    bench_case ap;
    double ascale = 0;
    CU_ASSERT_TRUE_FATAL(bench_case_probe(&c, &ap, &ascale));
    CU_ASSERT_TRUE(ap.dims[0] < 4096 && ap.dims[0] <= ap.dims[1] && ap.dims[4] == 128);
    bench_geometry ag;
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&ap, &ag, NULL), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
    CU_ASSERT_TRUE(near(ag.flops * ascale, g.flops, 1e-12));

    /* The fused FFN: three weights, all rotated; GEMV-like for one token. */
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("1x576x1536", &c, why, sizeof why));
    c.op = BST_OP_FFN_SWIGLU;
    c.dtype = BST_DTYPE_Q4_1;
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
    CU_ASSERT_EQUAL(g.n_in, 4);
    CU_ASSERT_EQUAL(g.weight, 1);
    CU_ASSERT_EQUAL(g.n_weights, 3);
    CU_ASSERT_EQUAL(bench_weight_bytes(&g), 3u * 1536u * 18u * 20u);
    CU_ASSERT_DOUBLE_EQUAL(g.flops, 6.0 * 576 * 1536, 0.0);
    CU_ASSERT_TRUE(bench_weight_bound(&g));
    CU_ASSERT_STRING_EQUAL(g.text, "f32[1,576], q4_1[1536,576], q4_1[1536,576], q4_1[576,1536] "
                                   "-> f32[1,576]");
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("4096x4096x14336", &c, why, sizeof why));
    CU_ASSERT_TRUE_FATAL(bench_case_probe(&c, &ap, &ascale));
    CU_ASSERT_TRUE(ap.dims[2] < 14336 && ap.dims[2] % 32 == 0 && ap.dims[0] == 4096);
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&ap, &ag, NULL), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
    CU_ASSERT_TRUE(near(ag.flops * ascale, g.flops, 1e-12));

    /* Probes are smaller and scale back to the same work. */
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("4096x512x14336", &c, why, sizeof why));
    c.op = BST_OP_MATMUL;
    bench_case p;
    double scale = 0;
    CU_ASSERT_TRUE_FATAL(bench_case_probe(&c, &p, &scale));
    CU_ASSERT_EQUAL(p.dims[2], 14336);
    CU_ASSERT_TRUE(p.dims[0] < 4096);
    bench_geometry pg;
    CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&p, &pg, NULL), BST_OK);
    CU_ASSERT_TRUE(near(pg.flops * scale, 2.0 * 4096 * 512 * 14336, 1e-12));
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("576x1x576", &c, why, sizeof why));
    CU_ASSERT_FALSE(bench_case_probe(&c, &p, &scale));
}

static void test_fill_valid(void)
{
    bench_case c;
    char why[160];
    memset(&c, 0, sizeof c);
    CU_ASSERT_TRUE_FATAL(bench_parse_shape("8x1x64", &c, why, sizeof why));
    c.op = BST_OP_MATMUL;
    const bst_dtype types[] = {BST_DTYPE_Q4_0, BST_DTYPE_Q4_1, BST_DTYPE_Q5_1, BST_DTYPE_Q8_0,
                               BST_DTYPE_F16};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        c.dtype = types[t];
        bench_geometry g;
        CU_ASSERT_EQUAL_FATAL(bench_case_geometry(&c, &g, NULL), BST_OK);
        uint8_t *w = malloc((size_t)g.size[1]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        bench_fill_input(&g, 1, w, 42);
        uint32_t bb = bst_dtype_block_bytes(types[t]);
        bool has_min = types[t] == BST_DTYPE_Q4_1 || types[t] == BST_DTYPE_Q5_1;
        uint32_t step = types[t] == BST_DTYPE_F16 ? 2 : bb;
        for (uint64_t off = 0; off < g.size[1]; off += step) {
            uint16_t h;
            memcpy(&h, w + off, 2);
            unsigned exp = (h >> 10) & 0x1Fu;
            CU_ASSERT_TRUE(exp != 0 && exp != 0x1F); /* normal: no zero, denormal, inf, NaN */
            if (types[t] != BST_DTYPE_F16)
                CU_ASSERT_EQUAL(h >> 15, 0); /* block scales are positive */
            if (has_min) {
                memcpy(&h, w + off + 2, 2);
                exp = (h >> 10) & 0x1Fu;
                CU_ASSERT_TRUE(exp != 0 && exp != 0x1F);
            }
        }
        free(w);
    }
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"stats", test_stats},
        {"measure_loop", test_measure_loop},
        {"parse_size", test_parse_size},
        {"cpuinfo", test_cpuinfo},
        {"read_caches", test_read_caches},
        {"cold_copies", test_cold_copies},
        {"read_measure", test_read_measure},
        {"reader_blocks", test_reader_blocks},
        {"parse_shape", test_parse_shape},
        {"select", test_select},
        {"geometry", test_geometry},
        {"fill_valid", test_fill_valid},
        {NULL, NULL},
    };
    return bst_test_run_suite("bench_units", cases);
}
