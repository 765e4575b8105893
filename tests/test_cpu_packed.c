/*
 * tests/test_cpu_packed.c — the CPU backend's decode GEMV on the packed weight copy
 * (backends/cpu/cpu_packed.h, cpu_packed_avx512.c, cpu_packed_simd256.h): matmuls of 1..6
 * activation rows against q4_0 / q4_1 / q8_0 weights, built on the public API and run through
 * bst_program on the real CPU plugin (tuning off: the static choice, gemm_avx512, hands fewer than
 * 8 rows to q8x2dot_avx512vnni, which runs cpu_packed_gemv_avx512 for up to 4 rows and the packed
 * GEMM for 5 and 6; under BASTION_CPU_ISA=avx2 or avxvnni, as ctest also runs it, gemm_avx2 hands
 * them to q8x2dot_avx2, which runs the 256-bit packed kernel, 4 rows at a time). Constant weights
 * go through prepare_weight, which keeps the 16-row interleaved copy on a CPU with AVX2; the same
 * weights fed as plain inputs are never prepared and take the native q8x2dot block loops. Weight
 * row counts 1, 15, 16, 17, 33 and 100 leave the last 16-row group partly padded (or are one whole
 * group); K of 1, 2, 3 and 18 blocks (an odd count leaves the last block pair of the packed layout
 * half empty). The six matmuls of one x<K> follow each other in the graph, so with packed weights
 * they run as sibling groups of four and two (cpu_run_q8dot_group: one quantization, one parallel
 * section over all their row groups).
 *
 * Oracles: a double-precision loop over the dequantized weights (graph/quant.h), NMSE <= 5e-4
 * (DESIGN.md's quantized-matmul bound) per output column and per activation row (worst_nmse),
 * so one wrong lane or row cannot hide in the total; and the native run, whose integer dots are
 * the same, so that the two differ only by float rounding: |packed - native| <= SUM_BOUND times
 * the output's sum of |terms|. Values span several decades per block and per row (with
 * outliers). A second set uses activations the two-plane quantizer represents exactly and dots
 * that cancel to ~1e-3 of their terms; there the packed result must also be within SUM_BOUND of
 * the double one, which checks the kernel's integer math on its own. Measured values are
 * printed. Without AVX2 both runs are native and the oracles still apply.
 */
#include "graph/ir.h"
#include "graph/quant.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK BST_TEST_OK

enum { MAX_M = 6, N_KS = 4, N_NS = 6 };
/* Bound on |packed - native| (and, with exact activations, |packed - double|) relative to the
 * output's sum of |terms|: float rounding of sums over at most 18 blocks, whose offset terms
 * (q4: 8 * d_w * s_a; q8_0: 128 * ...) can exceed the terms tenfold. A wrong lane, block or
 * scale is off by a whole block's share, orders of magnitude more. */
#define SUM_BOUND 1e-5
static const int64_t ks[N_KS] = {32, 64, 96, 576};
static const int64_t ns[N_NS] = {1, 15, 16, 17, 33, 100};

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static double urand(void) { return bst_test_urand(&rng_state); }

static void fill_wide(float *x, int64_t rows, int64_t k) { bst_test_fill_wide(&rng_state, x, rows, k); }

/* Values the activation quantizer (cpu_q8dot.h) represents exactly, so that whatever error is
 * left is the kernel's own: each block is 2^e (e in [-7, 6]) times integers 256 h + l with
 * |l| <= 127, element 0 at +-127 * 256 (it sets the block maximum, so the block's d is 2^e
 * exactly); other elements have |h| <= 124, one in 8 up to that and the rest ten times smaller. */
static void fill_exact(float *x, int64_t rows, int64_t k)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < k; b += 32) {
            const double scale = ldexp(1.0, (int)(urand() * 14.0) - 7);
            for (int64_t i = b; i < b + 32; i++) {
                int32_t u;
                if (i == b) {
                    u = urand() < 0.5 ? -127 * 256 : 127 * 256;
                } else {
                    const int32_t hmax = urand() < 0.125 ? 124 : 12;
                    u = 256 * ((int32_t)(urand() * (2 * hmax + 1)) - hmax) +
                        (int32_t)(urand() * 255.0) - 127;
                }
                x[r * k + i] = (float)(u * scale);
            }
        }
}

/* Cancellation: every weight row's second half repeats its first half, and every activation
 * row's second half is minus its first half plus up to 1% noise (in the block's integer units,
 * so it stays exact; the block maxima are left alone), so each dot is ~1% of its terms. */
static void repeat_halves(float *w, int64_t rows, int64_t k)
{
    for (int64_t r = 0; r < rows; r++)
        memcpy(w + r * k + k / 2, w + r * k, (size_t)(k / 2) * sizeof *w);
}

static void negate_halves(float *a, int64_t rows, int64_t k)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < k / 2; i++) {
            const float v = a[r * k + i];
            float noisy = v;
            if (i % 32 != 0 && v != 0.0f) {
                /* v = 2^e * u exactly; the block maximum gives 2^e. */
                float bmax = 0.0f;
                for (int64_t j = i - i % 32; j < i - i % 32 + 32; j++)
                    bmax = fabsf(a[r * k + j]) > bmax ? fabsf(a[r * k + j]) : bmax;
                const double unit = (double)bmax / (127.0 * 256.0);
                int32_t u = (int32_t)lround(v / unit);
                u += (int32_t)lround((double)u * 0.02 * (urand() - 0.5));
                if (((u % 256) + 256) % 256 == 128) /* h would round away: keep |l| <= 127 */
                    u += 1;
                noisy = (float)(u * unit);
            }
            a[r * k + k / 2 + i] = -noisy;
        }
}

/* One weight matrix of the test graph (quantized); the graph for m activation rows, its weights
 * constant (prepared, packed) or fed as inputs (native), and its run on the CPU backend. */
typedef bst_test_wmat wmat;

static bst_graph *build_graph(bst_dtype wt, const wmat *w, int nw, int64_t m, bool constant)
{
    return bst_test_matmul_graph(wt, ks, N_KS, w, nw, m, constant);
}

/* Runs the graph on the CPU backend; out[i] receives weight i's [m, n] output. */
static void run_graph(const bst_graph *g, const wmat *w, int nw, bool constant, float *const *xs,
                      int64_t m, float **out, uint32_t threads)
{
    bst_test_matmul_run(g, ks, N_KS, w, nw, constant, xs, m, out, threads);
}

/* The largest squared error of any output column (weight row) and of any activation row, each
 * relative to the mean energy of a column or a row of want: NMSE per column and per row, but
 * measured against the matrix's scale, so that one wrong lane or row cannot hide in the total
 * while an output that happens to be near zero does not count as a relative error of 100%. NaN
 * counts as infinitely bad. */
static double worst_nmse(const float *got, const double *want, int64_t m, int64_t n)
{
    double total = 0.0;
    for (int64_t i = 0; i < m * n; i++)
        total += want[i] * want[i];
    double worst = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        const int64_t outer = pass ? n : m, inner = pass ? m : n;
        const double ref = total / (double)outer;
        for (int64_t o = 0; o < outer; o++) {
            double err = 0.0;
            for (int64_t i = 0; i < inner; i++) {
                const int64_t at = pass ? i * n + o : o * n + i;
                const double d = (double)got[at] - want[at];
                err += d * d;
            }
            const double e = ref > 0.0 ? err / ref : err;
            if (!(e <= worst))
                worst = isnan(e) ? INFINITY : e;
        }
    }
    return worst;
}

static void check_dtype(bst_dtype wt, bool cancelling)
{
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_FATAL(bsti_quant_geometry(wt, &bs, &bb));
    enum { NW = N_KS * N_NS };
    wmat w[NW];
    float *xs[N_KS];
    for (int ki = 0; ki < N_KS; ki++) {
        xs[ki] = malloc(sizeof(float) * (size_t)(MAX_M * ks[ki]));
        CU_ASSERT_FATAL(xs[ki] != NULL);
        if (cancelling) {
            fill_exact(xs[ki], MAX_M, ks[ki]);
            negate_halves(xs[ki], MAX_M, ks[ki]);
        } else {
            fill_wide(xs[ki], MAX_M, ks[ki]);
        }
    }
    for (int ki = 0; ki < N_KS; ki++)
        for (int ni = 0; ni < N_NS; ni++) {
            wmat *m = &w[ki * N_NS + ni];
            m->n = ns[ni];
            m->k = ks[ki];
            m->bytes = (size_t)(m->n * m->k / bs) * bb;
            m->q = malloc(m->bytes);
            m->deq = malloc(sizeof(float) * (size_t)(m->n * m->k));
            CU_ASSERT_FATAL(m->q && m->deq);
            fill_wide(m->deq, m->n, m->k);
            if (cancelling)
                repeat_halves(m->deq, m->n, m->k);
            OK(bsti_quantize(wt, m->deq, m->q, m->n * m->k));
            OK(bsti_dequantize(wt, m->q, m->deq, m->n * m->k)); /* the oracle's weights */
            snprintf(m->wname, sizeof m->wname, "w%lld_%lld", (long long)m->k, (long long)m->n);
            snprintf(m->yname, sizeof m->yname, "y%lld_%lld", (long long)m->k, (long long)m->n);
        }
    float *packed[NW], *native[NW];
    double *want[NW], *mag[NW];
    for (int i = 0; i < NW; i++) {
        const size_t n = (size_t)(MAX_M * w[i].n);
        packed[i] = malloc(n * sizeof(float));
        native[i] = malloc(n * sizeof(float));
        want[i] = malloc(n * sizeof(double));
        mag[i] = malloc(n * sizeof(double));
        CU_ASSERT_FATAL(packed[i] && native[i] && want[i] && mag[i]);
        const float *x = xs[0];
        for (int ki = 0; ki < N_KS; ki++)
            if (ks[ki] == w[i].k)
                x = xs[ki];
        for (int64_t j = 0; j < MAX_M; j++)
            for (int64_t r = 0; r < w[i].n; r++) {
                double s = 0.0, sa = 0.0;
                for (int64_t e = 0; e < w[i].k; e++) {
                    const double t = (double)x[j * w[i].k + e] * w[i].deq[r * w[i].k + e];
                    s += t;
                    sa += fabs(t);
                }
                want[i][j * w[i].n + r] = s;
                mag[i][j * w[i].n + r] = sa > 0.0 ? sa : 1.0;
            }
    }

    double worst_ref = 0.0, worst_nat = 0.0, worst_exact = 0.0;
    for (int64_t m = 1; m <= MAX_M; m++) {
        bst_graph *gc = build_graph(wt, w, NW, m, true), *gi = build_graph(wt, w, NW, m, false);
        run_graph(gc, w, NW, true, xs, m, packed, 2);
        run_graph(gi, w, NW, false, xs, m, native, 2);
        bst_graph_destroy(gc);
        bst_graph_destroy(gi);
        for (int i = 0; i < NW; i++) {
            if (cancelling && (w[i].k / 2) % 32 != 0)
                continue; /* halves that split a block (K = 96): neither exact nor cancelling */
            const double e_ref = worst_nmse(packed[i], want[i], m, w[i].n);
            const double e_nat_ref = worst_nmse(native[i], want[i], m, w[i].n);
            /* Errors relative to each output's sum of |terms|, where float rounding lives. */
            double e_nat = 0.0, e_exact = 0.0;
            for (int64_t x = 0; x < m * w[i].n; x++) {
                const double dn = fabs((double)packed[i][x] - native[i][x]) / mag[i][x];
                const double dr = fabs((double)packed[i][x] - want[i][x]) / mag[i][x];
                e_nat = dn <= e_nat ? e_nat : isnan(dn) ? INFINITY : dn;
                e_exact = dr <= e_exact ? e_exact : isnan(dr) ? INFINITY : dr;
            }
            if (!cancelling)
                e_exact = 0.0; /* activations not exactly representable: quantization error */
            const bool bad = !(e_ref <= 5e-4) || !(e_nat_ref <= 5e-4) || !(e_nat <= SUM_BOUND) ||
                             !(e_exact <= SUM_BOUND);
            if (bad)
                fprintf(stderr,
                        "\n  %s N=%lld K=%lld M=%lld: worst NMSE %.3g vs double (native %.3g); "
                        "worst |difference| / sum|terms| %.3g vs native, %.3g vs double",
                        bst_dtype_name(wt), (long long)w[i].n, (long long)w[i].k, (long long)m,
                        e_ref, e_nat_ref, e_nat, e_exact);
            CU_ASSERT(e_ref <= 5e-4);
            CU_ASSERT(e_nat_ref <= 5e-4);
            /* Same integer dots, float sums in another order: only rounding apart. */
            CU_ASSERT(e_nat <= SUM_BOUND);
            CU_ASSERT(e_exact <= SUM_BOUND);
            worst_ref = e_ref > worst_ref || isnan(e_ref) ? e_ref : worst_ref;
            worst_nat = e_nat > worst_nat ? e_nat : worst_nat;
            worst_exact = e_exact > worst_exact ? e_exact : worst_exact;
        }
    }
    printf("\n    %s%s: worst NMSE %.2e vs double; worst |difference| / sum|terms| %.2e vs "
           "native%s",
           bst_dtype_name(wt), cancelling ? " (exact activations, cancelling dots)" : "",
           worst_ref, worst_nat, cancelling ? "" : " ");
    if (cancelling)
        printf(", %.2e vs double ", worst_exact);
    for (int i = 0; i < NW; i++) {
        free(w[i].q);
        free(w[i].deq);
        free(packed[i]);
        free(native[i]);
        free(want[i]);
        free(mag[i]);
    }
    for (int ki = 0; ki < N_KS; ki++)
        free(xs[ki]);
}

static void test_q4_0(void) { check_dtype(BST_DTYPE_Q4_0, false); }
static void test_q4_1(void) { check_dtype(BST_DTYPE_Q4_1, false); }
static void test_q8_0(void) { check_dtype(BST_DTYPE_Q8_0, false); }
static void test_cancelling(void)
{
    check_dtype(BST_DTYPE_Q4_0, true);
    check_dtype(BST_DTYPE_Q4_1, true);
    check_dtype(BST_DTYPE_Q8_0, true);
}

/* The packed run splits a matmul group's 16-row groups over the threads unevenly (the caller's
 * share leads by ~10 KiB, cpu_packed_run_group), and a small weight can go to the caller alone:
 * every output is computed by the same kernel on the same group whatever the split, so one, two
 * and three threads must agree bit for bit, and with the double oracle. Four siblings of K = 576
 * (1536, 192, 576 and 40 rows: 96 + 12 + 36 + 3 groups) and one weight alone (K = 64, 100 rows). */
static void test_split(void)
{
    const bst_dtype wt = BST_DTYPE_Q4_1;
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_FATAL(bsti_quant_geometry(wt, &bs, &bb));
    enum { NS = 5, M = 2 };
    static const int64_t rows[NS] = {1536, 192, 576, 40, 100}, cols[NS] = {576, 576, 576, 576, 64};
    wmat w[NS];
    float *xs[N_KS];
    for (int ki = 0; ki < N_KS; ki++) {
        xs[ki] = malloc(sizeof(float) * (size_t)(M * ks[ki]));
        CU_ASSERT_FATAL(xs[ki] != NULL);
        fill_wide(xs[ki], M, ks[ki]);
    }
    float *out[3][NS];
    for (int i = 0; i < NS; i++) {
        wmat *m = &w[i];
        m->n = rows[i];
        m->k = cols[i];
        m->bytes = (size_t)(m->n * m->k / bs) * bb;
        m->q = malloc(m->bytes);
        m->deq = malloc(sizeof(float) * (size_t)(m->n * m->k));
        CU_ASSERT_FATAL(m->q && m->deq);
        fill_wide(m->deq, m->n, m->k);
        OK(bsti_quantize(wt, m->deq, m->q, m->n * m->k));
        OK(bsti_dequantize(wt, m->q, m->deq, m->n * m->k));
        snprintf(m->wname, sizeof m->wname, "w%d", i);
        snprintf(m->yname, sizeof m->yname, "y%d", i);
        for (int t = 0; t < 3; t++) {
            out[t][i] = malloc(sizeof(float) * (size_t)(M * m->n));
            CU_ASSERT_FATAL(out[t][i] != NULL);
        }
    }
    for (int64_t m = 1; m <= M; m++) {
        bst_graph *g = build_graph(wt, w, NS, m, true);
        for (uint32_t t = 0; t < 3; t++)
            run_graph(g, w, NS, true, xs, m, out[t], t + 1);
        bst_graph_destroy(g);
        for (int i = 0; i < NS; i++) {
            const float *x = xs[0];
            for (int ki = 0; ki < N_KS; ki++)
                if (ks[ki] == w[i].k)
                    x = xs[ki];
            double *want = malloc(sizeof(double) * (size_t)(m * w[i].n));
            CU_ASSERT_FATAL(want != NULL);
            for (int64_t j = 0; j < m; j++)
                for (int64_t r = 0; r < w[i].n; r++) {
                    double s = 0.0;
                    for (int64_t e = 0; e < w[i].k; e++)
                        s += (double)x[j * w[i].k + e] * w[i].deq[r * w[i].k + e];
                    want[j * w[i].n + r] = s;
                }
            const size_t bytes = sizeof(float) * (size_t)(m * w[i].n);
            const double e = worst_nmse(out[1][i], want, m, w[i].n);
            if (!(e <= 5e-4) || memcmp(out[0][i], out[1][i], bytes) ||
                memcmp(out[0][i], out[2][i], bytes))
                fprintf(stderr, "\n  split: N=%lld K=%lld M=%lld: NMSE %.3g, 1 vs 2 threads %s, "
                        "1 vs 3 %s", (long long)w[i].n, (long long)w[i].k, (long long)m, e,
                        memcmp(out[0][i], out[1][i], bytes) ? "differ" : "agree",
                        memcmp(out[0][i], out[2][i], bytes) ? "differ" : "agree");
            CU_ASSERT(e <= 5e-4);
            CU_ASSERT(memcmp(out[0][i], out[1][i], bytes) == 0);
            CU_ASSERT(memcmp(out[0][i], out[2][i], bytes) == 0);
            free(want);
        }
    }
    for (int i = 0; i < NS; i++) {
        free(w[i].q);
        free(w[i].deq);
        for (int t = 0; t < 3; t++)
            free(out[t][i]);
    }
    for (int ki = 0; ki < N_KS; ki++)
        free(xs[ki]);
}

/* A decode GEMV quantizes its activation inside the parallel section (cpu_once): the first
 * thread there quantizes, the others must wait for it, not read the blocks meanwhile. f16
 * activations make the quantization slow (each row is converted first, one value at a time), so a
 * worker arrives while it runs; three GEMVs in a row on their own inputs keep the workers spinning
 * between sections, and the work area still holds the previous GEMV's blocks. A thread that did
 * not wait would use those: the outputs are checked against the double oracle. */
static void test_waits_for_quantized_activation(void)
{
    enum { NW = 3, N = 64, K = 16384 };
    const bst_dtype wt = BST_DTYPE_Q4_1;
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_FATAL(bsti_quant_geometry(wt, &bs, &bb));
    const size_t wbytes = (size_t)(N * K / bs) * bb;
    uint8_t *q[NW];
    float *deq[NW], *x = malloc(sizeof(float) * K), got[N];
    uint16_t *xh[NW];
    CU_ASSERT_FATAL(x != NULL);
    bst_graph *g = NULL;
    OK(bst_graph_create(&g));
    for (int i = 0; i < NW; i++) {
        q[i] = malloc(wbytes);
        deq[i] = malloc(sizeof(float) * N * K);
        xh[i] = malloc(sizeof(uint16_t) * K);
        CU_ASSERT_FATAL(q[i] && deq[i] && xh[i]);
        fill_wide(deq[i], N, K);
        OK(bsti_quantize(wt, deq[i], q[i], N * K));
        OK(bsti_dequantize(wt, q[i], deq[i], N * K));
        char name[16];
        const int64_t xs[2] = {1, K}, ws[2] = {N, K};
        bst_value in[2], y;
        snprintf(name, sizeof name, "x%d", i);
        OK(bst_graph_add_input(g, name, BST_DTYPE_F16, 2, xs, NULL, &in[0]));
        snprintf(name, sizeof name, "w%d", i);
        OK(bst_graph_add_weight(g, name, wt, 2, ws, q[i], wbytes, &in[1]));
        OK(bst_graph_add_op(g, BST_OP_MATMUL, in, 2, NULL, 0, &y));
        snprintf(name, sizeof name, "y%d", i);
        OK(bst_graph_mark_output(g, y, name));
    }
    double worst = 0.0;
    for (uint32_t threads = 2; threads <= 3; threads++) {
        bst_context_options o = {.struct_size = sizeof o, .n_threads = threads,
                                 .backends = "cpu"};
        bst_context *ctx = NULL;
        OK(bst_context_create(&o, &ctx));
        bst_program *p = NULL;
        OK(bst_program_create(ctx, g, &p));
        for (int run = 0; run < 3; run++) {
            for (int i = 0; i < NW; i++) {
                char name[16];
                fill_wide(x, 1, K);
                for (int e = 0; e < K; e++)
                    xh[i][e] = bsti_f32_to_f16(x[e]);
                snprintf(name, sizeof name, "x%d", i);
                OK(bst_program_set_input(p, name, xh[i], sizeof(uint16_t) * K));
            }
            OK(bst_program_run(p, NULL));
            for (int i = 0; i < NW; i++) {
                char name[16];
                snprintf(name, sizeof name, "y%d", i);
                OK(bst_program_get_output(p, name, got, sizeof got));
                double want[N];
                for (int r = 0; r < N; r++) {
                    want[r] = 0.0;
                    for (int e = 0; e < K; e++)
                        want[r] += (double)bsti_f16_to_f32(xh[i][e]) * deq[i][r * K + e];
                }
                const double e = worst_nmse(got, want, 1, N);
                worst = e > worst || isnan(e) ? e : worst;
            }
        }
        bst_program_destroy(p);
        bst_context_destroy(ctx);
    }
    printf("worst NMSE %.2e ", worst);
    CU_ASSERT(worst <= 5e-4);
    bst_graph_destroy(g);
    for (int i = 0; i < NW; i++) {
        free(q[i]);
        free(deq[i]);
        free(xh[i]);
    }
    free(x);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"packed gemv q4_0", test_q4_0},
        {"packed gemv q4_1", test_q4_1},
        {"packed gemv q8_0", test_q8_0},
        {"packed gemv cancelling dots", test_cancelling},
        {"packed gemv split over 1, 2 and 3 threads", test_split},
        {"packed gemv waits for its quantized activation", test_waits_for_quantized_activation},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_packed", cases);
}
