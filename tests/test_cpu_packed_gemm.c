/*
 * tests/test_cpu_packed_gemm.c — the CPU backend's int8 GEMM on the packed weight copy
 * (backends/cpu/cpu_packed.h, cpu_packed_gemm_avx512.c): many activation rows (a prompt) times a
 * q4_0 / q4_1 / q8_0 weight that went through prepare_weight, run through the plugin ABI (dlopen,
 * query, prepare_weight, compile, execute) with the variant forced to q8x2dot_avx512vnni, which
 * multiplies more than 4 rows with the packed GEMM (or to another, see gemm_variant). Shapes cross
 * the kernel's blocking: 8-row register tiles and their remainders (5, 7, 9, 31, 100, 257 rows),
 * weight row counts that are not a multiple of the 16-row group (17, 100: the last group's stores
 * are masked), several activation-row slices (257 rows of K = 576 exceed one slice), K of 1, 3 and
 * 18 blocks.
 *
 * Oracles: a double-precision loop over the dequantized weights (NMSE <= 5e-4, DESIGN.md's
 * quantized-matmul bound, per output row and per output column, so one wrong lane or row cannot
 * hide in the total), and the same variant on the native (unprepared) weight, whose integer dots
 * are the same: the two may differ only in the order of float sums. Activations and weights span
 * several decades per block and per row. Skipped (with a message) when the variant is not offered
 * on this CPU. Few rows (the decode GEMV, 1..6 rows through the static variant choice) are
 * test_cpu_packed.c.
 */
#include "graph/quant.h"
#include "runtime/runtime.h"

#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The variant under test: q8x2dot_avx512vnni, or the one BASTION_TEST_VARIANT names (ctest also
 * runs q8x2dot_avx2 under BASTION_CPU_ISA=avx2 and avxvnni: its 256-bit packed kernel takes any
 * row count with AVX-VNNI, up to 127 with maddubs). */
static const char *gemm_variant(void)
{
    const char *v = getenv("BASTION_TEST_VARIANT");
    return v && v[0] ? v : "q8x2dot_avx512vnni";
}
#define GUARD 64

static bst_backend_api api;
static void *dev;
static bool loaded;

static bool load_plugin(void)
{
    if (loaded)
        return true;
    bst_backend_entry_fn entry = bst_test_plugin_entry("libbst-backend-cpu.so");
    if (!entry)
        return false;
    memset(&api, 0, sizeof api);
    api.struct_size = sizeof api;
    if (entry(bsti_host_api(), BST_ABI_VERSION, &api) != BST_OK)
        return false;
    loaded = api.device_open(api.ctx, 0, &dev) == BST_OK;
    return loaded;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static bst_tensor_desc desc2(bst_dtype t, int64_t rows, int64_t cols, int64_t row_bytes,
                             int64_t elem_bytes)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.dtype = t;
    d.rank = 2;
    d.shape[0] = rows;
    d.shape[1] = cols;
    d.strides[0] = row_bytes;
    d.strides[1] = elem_bytes;
    return d;
}

/* Index of variant `name` for a matmul of these descriptors, or -1 when not offered. */
static int find_variant(const bst_node_desc *nd, const char *name)
{
    bst_kernel_variant v[16];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 16; i++)
        v[i].struct_size = sizeof v[i];
    uint32_t n = 0;
    CU_ASSERT_EQUAL_FATAL(api.query(dev, nd, v, sizeof v[0], 16, &n), BST_OK);
    for (uint32_t i = 0; i < n && i < 16; i++)
        if (strcmp(v[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* out[M x N] = a[M x K] . w[N x K]^T with variant gemm_variant(); the weight imported through
 * prepare_weight (the packed copy) when `prepared`, else written into a plain buffer. Returns
 * false when the variant is not offered here. GUARD bytes after the output must stay intact. */
static bool run_matmul(bst_dtype wt, const void *wq, size_t row_bytes, int64_t N, int64_t K,
                       const float *a, int64_t M, bool prepared, float *out)
{
    bst_tensor_desc ta = desc2(BST_DTYPE_F32, M, K, K * 4, 4);
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_FATAL(bsti_quant_geometry(wt, &bs, &bb));
    bst_tensor_desc tw = desc2(wt, N, K, (int64_t)row_bytes, bb);
    bst_tensor_desc to = desc2(BST_DTYPE_F32, M, N, N * 4, 4);
    ta.binding = 0;
    tw.binding = 1;
    to.binding = 2;
    const bst_tensor_desc *ins[2] = {&ta, &tw};
    bst_node_desc nd = {.struct_size = sizeof nd, .op = BST_OP_MATMUL, .n_inputs = 2,
                        .inputs = ins, .output = &to};
    const int variant = find_variant(&nd, gemm_variant());
    if (variant < 0)
        return false;
    nd.variant = (uint32_t)variant;
    const bst_node_desc *nodes[1] = {&nd};
    bst_partition_desc part = {.struct_size = sizeof part, .n_nodes = 1, .nodes = nodes,
                               .n_bindings = 3};
    void *exe = NULL, *bufs[3] = {NULL, NULL, NULL};
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &part, &exe), BST_OK);

    const size_t a_bytes = (size_t)(M * K) * 4, w_bytes = row_bytes * (size_t)N;
    const size_t o_bytes = (size_t)(M * N) * 4;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, a_bytes, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_write(dev, bufs[0], 0, a, a_bytes), BST_OK);
    if (prepared) {
        uint64_t cost = 0;
        uint32_t layout = 0;
        CU_ASSERT_EQUAL_FATAL(api.prepare_weight(dev, &tw, wq, w_bytes, &bufs[1], &cost, &layout),
                              BST_OK);
    } else {
        CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, w_bytes, &bufs[1]), BST_OK);
        CU_ASSERT_EQUAL_FATAL(api.buffer_write(dev, bufs[1], 0, wq, w_bytes), BST_OK);
    }
    uint8_t guard[GUARD];
    memset(guard, 0xab, sizeof guard);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, o_bytes + GUARD, &bufs[2]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_write(dev, bufs[2], o_bytes, guard, GUARD), BST_OK);
    bst_run_params params = {.struct_size = sizeof params, .n_tokens = 1, .n_kv = 1};
    const bst_status st = api.execute(dev, exe, bufs, 3, &params);
    if (st != BST_OK)
        fprintf(stderr, "\n  execute: %s\n", bst_last_error());
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, out, o_bytes), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], o_bytes, guard, GUARD), BST_OK);
    for (int i = 0; i < GUARD; i++)
        CU_ASSERT_EQUAL(guard[i], 0xab);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    api.executable_free(dev, exe);
    return true;
}

/* The largest NMSE of got against want over any output row and any output column. */
static double worst_nmse(const float *got, const double *want, int64_t M, int64_t N)
{
    double worst = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        const int64_t outer = pass ? N : M, inner = pass ? M : N;
        for (int64_t o = 0; o < outer; o++) {
            double err = 0.0, ref = 0.0;
            for (int64_t i = 0; i < inner; i++) {
                const int64_t at = pass ? i * N + o : o * N + i;
                const double d = (double)got[at] - want[at];
                err += d * d;
                ref += want[at] * want[at];
            }
            const double e = ref > 0.0 ? err / ref : err;
            if (!(e <= worst)) /* NaN counts as worst */
                worst = e;
        }
    }
    return worst;
}

static bool skipped; /* the variant is missing on this CPU: said once */
static double worst_ref, worst_native; /* the largest NMSEs of a dtype's cases, printed */

/* One shape: both oracles, for every row count in ms. */
static void check_shape(bst_dtype wt, int64_t N, int64_t K, const int64_t *ms, size_t n_ms)
{
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_FATAL(bsti_quant_geometry(wt, &bs, &bb));
    const size_t row_bytes = (size_t)(K / bs) * bb;
    int64_t max_m = 0;
    for (size_t i = 0; i < n_ms; i++)
        max_m = ms[i] > max_m ? ms[i] : max_m;
    float *w = malloc(sizeof(float) * (size_t)(N * K)), *wd = malloc(sizeof(float) * (size_t)(N * K));
    uint8_t *wq = malloc(row_bytes * (size_t)N);
    float *a = malloc(sizeof(float) * (size_t)(max_m * K));
    float *got = malloc(sizeof(float) * (size_t)(max_m * N));
    float *native = malloc(sizeof(float) * (size_t)(max_m * N));
    double *want = malloc(sizeof(double) * (size_t)(max_m * N));
    CU_ASSERT_FATAL(w && wd && wq && a && got && native && want);
    bst_test_fill_wide(&rng_state, w, N, K);
    for (int64_t n = 0; n < N; n++) {
        CU_ASSERT_EQUAL_FATAL(bsti_quantize(wt, w + n * K, wq + (size_t)n * row_bytes, K), BST_OK);
        CU_ASSERT_EQUAL_FATAL(bsti_dequantize(wt, wq + (size_t)n * row_bytes, wd + n * K, K),
                              BST_OK);
    }
    bst_test_fill_wide(&rng_state, a, max_m, K);
    for (int64_t j = 0; j < max_m; j++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)a[j * K + k] * wd[n * K + k];
            want[j * N + n] = s;
        }
    for (size_t i = 0; i < n_ms && !skipped; i++) {
        const int64_t M = ms[i];
        if (!run_matmul(wt, wq, row_bytes, N, K, a, M, true, got)) {
            fprintf(stderr, "\n  skipped: variant %s is not offered on this CPU\n", gemm_variant());
            skipped = true;
            break;
        }
        CU_ASSERT_TRUE_FATAL(run_matmul(wt, wq, row_bytes, N, K, a, M, false, native));
        const double e_ref = worst_nmse(got, want, M, N);
        double *nat = malloc(sizeof(double) * (size_t)(M * N));
        CU_ASSERT_FATAL(nat != NULL);
        for (int64_t x = 0; x < M * N; x++) /* the native run as the oracle */
            nat[x] = native[x];
        const double e_nat = worst_nmse(got, nat, M, N);
        free(nat);
        worst_ref = e_ref > worst_ref ? e_ref : worst_ref;
        worst_native = e_nat > worst_native ? e_nat : worst_native;
        if (!(e_ref <= 5e-4) || !(e_nat <= 1e-8))
            fprintf(stderr, "\n  %s N=%lld K=%lld M=%lld: worst NMSE %.3g vs double, %.3g vs "
                            "native",
                    wt == BST_DTYPE_Q4_0 ? "q4_0" : wt == BST_DTYPE_Q4_1 ? "q4_1" : "q8_0",
                    (long long)N, (long long)K, (long long)M, e_ref, e_nat);
        CU_ASSERT_TRUE(e_ref <= 5e-4);
        /* Same integer dots, float sums in another order: rounding differences only (measured
         * <= 3e-10); one wrong integer dot of a block would show as more than 1e-6. */
        CU_ASSERT_TRUE(e_nat <= 1e-8);
    }
    free(w);
    free(wd);
    free(wq);
    free(a);
    free(got);
    free(native);
    free(want);
}

static const int64_t row_counts[] = {5, 7, 8, 9, 31, 64, 100, 257};
#define N_ROW_COUNTS (sizeof row_counts / sizeof row_counts[0])

static void check_dtype(bst_dtype wt)
{
    CU_ASSERT_TRUE_FATAL(load_plugin());
    bsti_pool_set_threads(2);
    worst_ref = worst_native = 0.0;
    check_shape(wt, 17, 32, row_counts, N_ROW_COUNTS);
    check_shape(wt, 100, 96, row_counts, N_ROW_COUNTS);
    check_shape(wt, 17, 576, row_counts, N_ROW_COUNTS);
    check_shape(wt, 100, 576, row_counts, N_ROW_COUNTS);
    check_shape(wt, 64, 96, row_counts, N_ROW_COUNTS); /* whole groups only */
    if (!skipped)
        fprintf(stderr, "(worst NMSE %.2g vs double, %.2g vs native) ", worst_ref, worst_native);
}

static void test_q4_0(void) { check_dtype(BST_DTYPE_Q4_0); }
static void test_q4_1(void) { check_dtype(BST_DTYPE_Q4_1); }
static void test_q8_0(void) { check_dtype(BST_DTYPE_Q8_0); }

int main(void)
{
    static const bst_test_case cases[] = {
        {"packed gemm q4_0", test_q4_0},
        {"packed gemm q4_1", test_q4_1},
        {"packed gemm q8_0", test_q8_0},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_packed_gemm", cases);
}
