/*
 * tests/test_cpu_gemv_float.c — the CPU backend's kernels for float weights with few activation
 * rows (backends/cpu/cpu_gemv_float.h): the GEMV for f16 and bf16 weights (one row) and the tile
 * kernels (from 2 rows, f32 weights too; f32 with one row runs the reference), built on the
 * public API and run through bst_program on the real CPU plugin (tuning off: the static choice
 * picks them, gemm_avx512, or gemm_avx2 under BASTION_CPU_ISA=avx2 as ctest also runs it).
 * Weights constant (prepare_weight keeps the host's data) and fed as plain inputs; on one, two
 * and three threads (a share per thread, and a weight too small to split). K of 1, 15, 16, 64,
 * 100, 576, 1040 and 2100 reaches every loop: the GEMVs' 64- and 32-element bodies, 16- and
 * 8-element steps, masked and scalar tails; the tile kernels' one, two and three K blocks of
 * 1024, the last a 16-element, a masked (AVX-512) or an element-by-element (AVX2) one. N of 1,
 * 17, 40 and 100 and M up to 100 leave the shares and the tiles' edges (4 x 4 rows with AVX-512,
 * 4 x 2 with AVX2) uneven.
 *
 * Oracle: a double-precision dot of the weights as stored (bsti_*_to_f32) with the f32
 * activations. Bound: |got - want| <= 1e-5 times the output's sum of |terms|. The kernels sum in
 * f32 over ~K / 16 steps per partial sum (the GEMV fewer); their rounding grows like the square
 * root of that, ~4e-7 of the terms at K = 2100, while one wrong lane, element, row or block is
 * off by a whole term or more, orders of magnitude more. Activations and weights span several
 * decades.
 */
#include "graph/quant.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK BST_TEST_OK
#define SUM_BOUND 1e-5

enum { N_KS = 8, N_NS = 4, MAX_M = 100 };
static const int64_t ks[N_KS] = {1, 15, 16, 64, 100, 576, 1040, 2100};
static const int64_t ns[N_NS] = {1, 17, 40, 100};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static size_t elem_bytes(bst_dtype t) { return t == BST_DTYPE_F32 ? 4 : 2; }

/* Stores f as element e of q in dtype t; returns the value stored, as f32. */
static float store(bst_dtype t, uint8_t *q, int64_t e, float f)
{
    if (t == BST_DTYPE_F32) {
        memcpy(q + 4 * e, &f, sizeof f);
        return f;
    }
    const uint16_t h = t == BST_DTYPE_BF16 ? bsti_f32_to_bf16(f) : bsti_f32_to_f16(f);
    memcpy(q + 2 * e, &h, sizeof h);
    return t == BST_DTYPE_BF16 ? bsti_bf16_to_f32(h) : bsti_f16_to_f32(h);
}

/* Runs g on the CPU backend with `threads` threads and checks every output against the double
 * dot; returns the largest error relative to its output's sum of |terms|. */
static double run_and_check(const bst_graph *g, const bst_test_wmat *w, int nw, bool constant,
                            float *const *xs, int64_t m, uint32_t threads)
{
    float *out[N_KS * N_NS];
    for (int i = 0; i < nw; i++)
        out[i] = malloc((size_t)(m * w[i].n) * sizeof *out[i]);
    bst_test_matmul_run(g, ks, N_KS, w, nw, constant, xs, m, out, threads);
    double worst = 0.0;
    for (int i = 0; i < nw; i++) {
        int xi = 0;
        while (ks[xi] != w[i].k)
            xi++;
        const int64_t n = w[i].n, k = w[i].k;
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < n; c++) {
                double want = 0.0, mag = 0.0;
                for (int64_t e = 0; e < k; e++) {
                    const double t = (double)xs[xi][r * k + e] * w[i].deq[c * k + e];
                    want += t;
                    mag += fabs(t);
                }
                const double err = fabs((double)out[i][r * n + c] - want) / (mag > 0 ? mag : 1.0);
                if (!(err <= worst))
                    worst = isnan(err) ? INFINITY : err;
            }
        free(out[i]);
    }
    return worst;
}

static void check_dtype(bst_dtype wt)
{
    bst_test_wmat w[N_KS * N_NS];
    int nw = 0;
    for (int a = 0; a < N_KS; a++)
        for (int b = 0; b < N_NS; b++, nw++) {
            bst_test_wmat *x = &w[nw];
            x->n = ns[b];
            x->k = ks[a];
            x->bytes = (size_t)(x->n * x->k) * elem_bytes(wt);
            x->q = malloc(x->bytes);
            x->deq = malloc((size_t)(x->n * x->k) * sizeof *x->deq);
            CU_ASSERT_FATAL(x->q && x->deq);
            bst_test_fill_wide(&rng_state, x->deq, x->n, x->k);
            for (int64_t e = 0; e < x->n * x->k; e++) /* as stored, and its value back */
                x->deq[e] = store(wt, x->q, e, x->deq[e]);
            snprintf(x->wname, sizeof x->wname, "w%d", nw);
            snprintf(x->yname, sizeof x->yname, "y%d", nw);
        }
    float *xs[N_KS];
    for (int i = 0; i < N_KS; i++) {
        xs[i] = malloc((size_t)(MAX_M * ks[i]) * sizeof *xs[i]);
        bst_test_fill_wide(&rng_state, xs[i], MAX_M, ks[i]);
    }
    static const int64_t ms[] = {1, 2, 3, 4, 5, 7, 16, 31, 37, 100};
    double worst = 0.0;
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (int constant = 0; constant < 2; constant++) {
            bst_graph *g = bst_test_matmul_graph(wt, ks, N_KS, w, nw, ms[mi], constant);
            for (uint32_t threads = 1; threads <= 3; threads++) {
                const double e = run_and_check(g, w, nw, constant, xs, ms[mi], threads);
                if (!(e <= SUM_BOUND))
                    printf("\n  %s m %lld %s %u threads: error %.2e of the terms",
                           bst_dtype_name(wt), (long long)ms[mi],
                           constant ? "constant" : "input", threads, e);
                worst = e > worst || isnan(e) ? e : worst;
            }
            bst_graph_destroy(g);
        }
    printf("worst %.2e of the terms ", worst);
    CU_ASSERT(worst <= SUM_BOUND);
    for (int i = 0; i < nw; i++) {
        free(w[i].q);
        free(w[i].deq);
    }
    for (int i = 0; i < N_KS; i++)
        free(xs[i]);
}

static void test_f16(void) { check_dtype(BST_DTYPE_F16); }

static void test_bf16(void) { check_dtype(BST_DTYPE_BF16); }

static void test_f32(void) { check_dtype(BST_DTYPE_F32); }

int main(void)
{
    static const bst_test_case cases[] = {
        {"f16 weights, 1..100 activation rows", test_f16},
        {"bf16 weights, 1..100 activation rows", test_bf16},
        {"f32 weights, 1..100 activation rows", test_f32},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_gemv_float", cases);
}
