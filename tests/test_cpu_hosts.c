/*
 * tests/test_cpu_hosts.c — the CPU plugin (cpu_plugin.h) under hosts other than the runtime's:
 * one without a pool, served serially; and one whose pool never gets a worker going, under which
 * the packed FFN's parallel section must still finish (its parts' gate/up are run by whoever needs
 * them). The real host is restored after each.
 */
#include "cpu_plugin.h"
#include "graph/quant.h"
#include "runtime/runtime.h"

#include "test_util.h"

#include <stdio.h>
#include <string.h>

/* A host without a pool (or fault hook) is served serially; then the real host is restored. */
static void test_host_without_pool(void)
{
    NEED_PLUGIN();
    static bst_host_api serial;
    serial = *bsti_host_api();
    serial.parallel_for = NULL;
    serial.num_workers = NULL;
    serial.fault = NULL;
    bst_backend_api a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    CU_ASSERT_EQUAL_FATAL(cpu_entry(&serial, BST_ABI_VERSION, &a), BST_OK);
    int64_t sa[2] = {3, 40}, sb[2] = {5, 40}, so[2] = {3, 5};
    float x[120], w[200], out[15];
    for (int i = 0; i < 120; i++)
        x[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < 200; i++)
        w[i] = (float)(i % 5) * 0.5f;
    one_node n = {.op = BST_OP_MATMUL, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 2, sa), mk(BST_DTYPE_F32, 2, sb)}, .data = {x, w},
                  .out = mk(BST_DTYPE_F32, 2, so)};
    CU_ASSERT_EQUAL(run_one(&n, out), BST_OK);
    for (int m = 0; m < 3; m++)
        for (int j = 0; j < 5; j++) {
            double s = 0;
            for (int k = 0; k < 40; k++)
                s += (double)x[m * 40 + k] * w[j * 40 + k];
            ASSERT_NEAR(out[m * 5 + j], s, 1e-4);
        }
    a.destroy(a.ctx);
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    CU_ASSERT_EQUAL(cpu_entry(bsti_host_api(), BST_ABI_VERSION, &a), BST_OK);
    a.destroy(a.ctx);
}

/* --- the packed FFN's parts (backends/cpu/cpu_fused_ffn.c) --- */

/* A host whose pool never gets a worker going: every chunk runs on the calling thread, in order,
 * while num_workers says three threads take part. */
static void chunks_in_order(int64_t n, int64_t grain, bst_range_fn fn, void *arg)
{
    for (int64_t b = 0; b < n; b += grain)
        fn(arg, b, b + grain < n ? b + grain : n, 0);
}

static uint32_t three_workers(void) { return 3; }

enum { FFN_E = 64, FFN_F = 160, FFN_ROWS = 6 };

/* FFN_SWIGLU of `rows` rows of x with q4_1 weights (gate, up [F, E], down [E, F]) given through
 * prepare_weight, as a model's are (packed on a CPU with AVX-512 VNNI), on the plugin's current
 * host; the first variant query offers. */
static void run_ffn(int64_t rows, const float *x, uint8_t *const w[3], const size_t wbytes[3],
                    float *out)
{
    const int64_t xs[2] = {rows, FFN_E}, fe[2] = {FFN_F, FFN_E}, ef[2] = {FFN_E, FFN_F};
    one_node c = {.op = BST_OP_FFN_SWIGLU, .n_in = 4,
                  .in = {mk(BST_DTYPE_F32, 2, xs), mk(BST_DTYPE_Q4_1, 2, fe),
                         mk(BST_DTYPE_Q4_1, 2, fe), mk(BST_DTYPE_Q4_1, 2, ef)},
                  .out = mk(BST_DTYPE_F32, 2, xs)};
    void *exe = NULL, *bufs[5] = {NULL};
    CU_ASSERT_EQUAL_FATAL(compile_one(&c, &exe), BST_OK);
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, span(&c.in[0]), &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.buffer_write(cpu_dev, bufs[0], 0, x, span(&c.in[0])), BST_OK);
    for (int i = 0; i < 3; i++) {
        uint64_t bytes = 0;
        uint32_t layout = 0;
        CU_ASSERT_EQUAL_FATAL(cpu_api.prepare_weight(cpu_dev, &c.in[1 + i], w[i], wbytes[i],
                                                     &bufs[1 + i], &bytes, &layout),
                              BST_OK);
    }
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, span(&c.out), &bufs[4]), BST_OK);
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 1, .n_kv = 1};
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 5, &rp), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, bufs[4], 0, out, span(&c.out)), BST_OK);
    cpu_api.executable_free(cpu_dev, exe);
    for (int i = 0; i < 5; i++)
        cpu_api.buffer_free(cpu_dev, bufs[i]);
}

/* The packed FFN runs as one parallel section of one part per worker; a part needs every other
 * part's gate/up before its down, and a thread that finds one nobody has started runs it itself.
 * With chunks_in_order the caller's part 0 must so run parts 1 and 2 (a wait would never end),
 * and the later chunks find them done: the results must equal the real pool's bit for bit (each
 * output is the same kernel on the same rows whoever runs it) and the double-precision oracle
 * (NMSE <= 5e-4, DESIGN.md's quantized-matmul bound). One row quantizes x inside the section,
 * six before it. */
static void test_ffn_parts_without_workers(void)
{
    NEED_PLUGIN();
    static float g[FFN_F * FFN_E], u[FFN_F * FFN_E], d[FFN_E * FFN_F], x[FFN_ROWS * FFN_E];
    static uint8_t gq[FFN_F * FFN_E / 32 * 20], uq[sizeof gq], dq[sizeof gq];
    uint64_t seed = 7;
    for (int i = 0; i < FFN_F * FFN_E; i++) {
        g[i] = (float)(bst_test_urand(&seed) - 0.5);
        u[i] = (float)(bst_test_urand(&seed) - 0.5);
        d[i] = (float)(bst_test_urand(&seed) - 0.5);
    }
    for (int i = 0; i < FFN_ROWS * FFN_E; i++)
        x[i] = (float)(bst_test_urand(&seed) * 4.0 - 2.0);
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_1, g, gq, FFN_F * FFN_E), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_1, u, uq, FFN_F * FFN_E), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_1, d, dq, FFN_E * FFN_F), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q4_1, gq, g, FFN_F * FFN_E), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q4_1, uq, u, FFN_F * FFN_E), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q4_1, dq, d, FFN_E * FFN_F), BST_OK);
    uint8_t *w[3] = {gq, uq, dq};
    const size_t wb[3] = {sizeof gq, sizeof uq, sizeof dq};
    static bst_host_api lonely;
    lonely = *bsti_host_api();
    lonely.parallel_for = chunks_in_order;
    lonely.num_workers = three_workers;
    static const int64_t row_counts[2] = {1, FFN_ROWS};
    for (int t = 0; t < 2; t++) {
        const int64_t rows = row_counts[t];
        static float pooled[FFN_ROWS * FFN_E], alone[FFN_ROWS * FFN_E];
        run_ffn(rows, x, w, wb, pooled);
        bst_backend_api a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        CU_ASSERT_EQUAL_FATAL(cpu_entry(&lonely, BST_ABI_VERSION, &a), BST_OK);
        run_ffn(rows, x, w, wb, alone);
        a.destroy(a.ctx);
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        CU_ASSERT_EQUAL_FATAL(cpu_entry(bsti_host_api(), BST_ABI_VERSION, &a), BST_OK);
        a.destroy(a.ctx);
        CU_ASSERT_EQUAL(memcmp(pooled, alone, (size_t)(rows * FFN_E) * sizeof(float)), 0);
        static double want[FFN_ROWS * FFN_E];
        bst_test_ffn_swiglu(x, rows, FFN_E, FFN_F, g, u, d, want);
        double err = 0.0, ref = 0.0;
        for (int64_t i = 0; i < rows * FFN_E; i++) {
            err += (alone[i] - want[i]) * (alone[i] - want[i]);
            ref += want[i] * want[i];
        }
        printf("\n    %lld rows: NMSE %.2e", (long long)rows, err / ref);
        CU_ASSERT(err / ref <= 5e-4);
    }
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"host without a pool", test_host_without_pool},
        {"ffn parts without workers", test_ffn_parts_without_workers},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_hosts", cases);
}
