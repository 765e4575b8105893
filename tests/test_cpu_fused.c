/*
 * tests/test_cpu_fused.c — the CPU backend's fused kernels for the high-level ops (ATTENTION,
 * RMS_NORM_MUL, FFN_SWIGLU; backends/cpu/cpu_fused.h), run through bst_program on the real CPU
 * plugin: placement must keep the ops whole and pick a fused_* variant, and the results must
 * match naive double-precision implementations of backend.h's definitions (written here; the
 * FFN's in test_util.c) and the lowered graph, run with BASTION_CPU_KERNELS=lowered, which hides
 * the fused variants.
 * Shapes cross the kernels' internal block sizes (16 query rows, 64 keys, 4 activation rows).
 * Bounds: NMSE <= 5e-4 (DESIGN.md's attention / quantized matmul bound) where activations are
 * quantized, 1e-9 for the f32 norm and attention (measured values are printed).
 */
#include "graph/ir.h"
#include "graph/quant.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK BST_TEST_OK

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static void fill(float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = amp * frand();
}

static double nmse(const float *got, const double *want, size_t n)
{
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        err += d * d;
        ref += want[i] * want[i];
    }
    return ref > 0 ? err / ref : err;
}

/* Named input of a test graph. */
typedef struct feed {
    const char *name;
    const void *data;
    size_t bytes;
} feed;

/* Builds a program for g on the CPU backend (kernels = value of BASTION_CPU_KERNELS, NULL for
 * the default), feeds it, runs it, reads output "y" and says whether any node ran a fused_*
 * variant. */
static bool run_graph(const bst_graph *g, const char *kernels, const feed *feeds, uint32_t n_feeds,
                      float *out, size_t n_out)
{
    if (kernels) {
        CU_ASSERT_FATAL(setenv("BASTION_CPU_KERNELS", kernels, 1) == 0);
    } else {
        unsetenv("BASTION_CPU_KERNELS");
    }
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
    bst_context *ctx = NULL;
    OK(bst_context_create(&o, &ctx));
    bst_program *p = NULL;
    OK(bst_program_create(ctx, g, &p)); /* the device opens (and reads the variable) here */
    unsetenv("BASTION_CPU_KERNELS");
    for (uint32_t i = 0; i < n_feeds; i++)
        OK(bst_program_set_input(p, feeds[i].name, feeds[i].data, feeds[i].bytes));
    OK(bst_program_run(p, NULL));
    OK(bst_program_get_output(p, "y", out, n_out * sizeof(float)));
    char *text = NULL;
    OK(bst_program_describe(p, &text));
    bool fused = strstr(text, "fused_") != NULL;
    bst_free(text);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
    return fused;
}

/* --- attention --- */

/* Mask shapes (0: no mask): per key and row [T,S]; one value per row [T,1] (stride 0 over the
 * keys); one row for all [1,S]; [T,S] with row 0 all -inf (a row that sees no key: zeros);
 * [T,S] of zeros (+0 and -0) where causal attention sees a key and -inf past it, as the model's
 * session writes it (the kernels find it adds nothing and skip it). */
enum { MASK_NONE, MASK_TS, MASK_T1, MASK_1S, MASK_TS_BLIND, MASK_CAUSAL_ZERO };

/* The mask values of `kind` ([mt, mk] at m) for T queries, the last T of S positions. */
static void fill_mask(int kind, int64_t T, int64_t S, int64_t mt, int64_t mk, float *m)
{
    for (size_t i = 0; i < (size_t)(mt * mk); i++)
        m[i] = frand() < -0.6f ? -INFINITY : 0.5f * frand();
    if (kind == MASK_TS_BLIND)
        for (int64_t j = 0; j < S; j++)
            m[j] = -INFINITY;
    if (kind == MASK_CAUSAL_ZERO)
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < S; j++)
                m[t * S + j] = j > S - T + t ? -INFINITY : j % 2 ? -0.0f : 0.0f;
}

typedef struct attn_case {
    int64_t T, S, Hq, Hkv, D;
    bool causal;
    int64_t window;
    int mask; /* MASK_* (false / true: none / [T,S]) */
    bst_dtype kv;
    bool v_padded; /* V is a strided view of rows padded by V_PAD elements: V's strides not K's */
    bool m_strided; /* the mask is a view of the even floats of a [mt, 2 mk] tensor (NaN between) */
} attn_case;

#define V_PAD 16

static float round_to(bst_dtype t, float x)
{
    uint16_t h;
    float f;
    OK(bsti_quantize(t, &x, &h, 1));
    OK(bsti_dequantize(t, &h, &f, 1));
    return f;
}

static void attention_ref(const attn_case *c, const float *q, const float *k, const float *v,
                          const float *mask, double scale, double *out)
{
    const int64_t group = c->Hq / c->Hkv;
    double *w = malloc((size_t)c->S * sizeof *w);
    CU_ASSERT_FATAL(w != NULL);
    for (int64_t t = 0; t < c->T; t++) {
        const int64_t pos = c->S - c->T + t;
        for (int64_t h = 0; h < c->Hq; h++) {
            const int64_t kh = h / group;
            double mx = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < c->S; j++) {
                bool hidden = (c->causal && j > pos) || (c->window > 0 && j <= pos - c->window);
                double s = -INFINITY;
                if (!hidden) {
                    double dot = 0.0;
                    for (int64_t d = 0; d < c->D; d++)
                        dot += (double)q[(t * c->Hq + h) * c->D + d] *
                               k[(j * c->Hkv + kh) * c->D + d];
                    s = dot * scale + (mask ? mask[t * c->S + j] : 0.0);
                }
                w[j] = s;
                mx = s > mx ? s : mx;
            }
            for (int64_t j = 0; j < c->S; j++) {
                w[j] = mx == -INFINITY || w[j] == -INFINITY ? 0.0 : exp(w[j] - mx);
                sum += w[j];
            }
            for (int64_t d = 0; d < c->D; d++) {
                double acc = 0.0;
                for (int64_t j = 0; j < c->S; j++)
                    acc += w[j] * v[(j * c->Hkv + kh) * c->D + d];
                out[(t * c->Hq + h) * c->D + d] = sum > 0 ? acc / sum : 0.0;
            }
        }
    }
    free(w);
}

static void check_attention(const attn_case *c)
{
    const size_t nq = (size_t)(c->T * c->Hq * c->D), nkv = (size_t)(c->S * c->Hkv * c->D);
    const size_t nm = (size_t)(c->T * c->S);
    const int64_t mt = c->mask == MASK_1S ? 1 : c->T, mk = c->mask == MASK_T1 ? 1 : c->S;
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *m = malloc(nm * sizeof *m), *mfull = malloc(nm * sizeof *mfull);
    float *got = malloc(nq * sizeof *got), *low = malloc(nq * sizeof *low);
    uint16_t *kh = malloc(nkv * sizeof *kh), *vh = malloc(nkv * sizeof *vh);
    double *want = malloc(nq * sizeof *want);
    CU_ASSERT_FATAL(q && k && v && m && mfull && got && low && kh && vh && want);
    fill(q, nq, 1.0f);
    fill(k, nkv, 1.0f);
    fill(v, nkv, 1.0f);
    fill_mask(c->mask, c->T, c->S, mt, mk, m);
    for (int64_t t = 0; t < c->T; t++) /* the mask as the reference reads it: [T,S] */
        for (int64_t j = 0; j < c->S; j++)
            mfull[t * c->S + j] = m[(mt == 1 ? 0 : t) * mk + (mk == 1 ? 0 : j)];
    const bool half = c->kv == BST_DTYPE_F16 || c->kv == BST_DTYPE_BF16;
    if (half) { /* the reference sees the values the cache holds */
        for (size_t i = 0; i < nkv; i++) {
            k[i] = round_to(c->kv, k[i]);
            v[i] = round_to(c->kv, v[i]);
        }
        OK(bsti_quantize(c->kv, k, kh, (int64_t)nkv));
        OK(bsti_quantize(c->kv, v, vh, (int64_t)nkv));
    }
    /* The padded V: each row of D elements followed by V_PAD others (never read). */
    const size_t esz = half ? 2 : 4, vrow = (size_t)(c->D + (c->v_padded ? V_PAD : 0)) * esz;
    const size_t n_vrows = (size_t)(c->S * c->Hkv);
    uint8_t *vfeed = calloc(n_vrows, vrow);
    CU_ASSERT_FATAL(vfeed != NULL);
    for (size_t i = 0; i < n_vrows; i++) {
        const size_t at = i * (size_t)c->D;
        memcpy(vfeed + i * vrow, half ? (void *)(vh + at) : (void *)(v + at), (size_t)c->D * esz);
    }
    const double scale = 1.0 / sqrt((double)c->D);
    attention_ref(c, q, k, v, c->mask ? mfull : NULL, scale, want);

    bst_graph *g = NULL;
    OK(bst_graph_create(&g));
    int64_t qs[3] = {c->T, c->Hq, c->D}, ks[3] = {c->S, c->Hkv, c->D}, ms[2] = {mt, mk};
    bst_value in[4], y;
    OK(bst_graph_add_input(g, "q", BST_DTYPE_F32, 3, qs, NULL, &in[0]));
    OK(bst_graph_add_input(g, "k", c->kv, 3, ks, NULL, &in[1]));
    int64_t vs[3] = {c->S, c->Hkv, c->D + (c->v_padded ? V_PAD : 0)};
    OK(bst_graph_add_input(g, "v", c->kv, 3, vs, NULL, &in[2]));
    if (c->v_padded) {
        bst_attr view[2] = {{.struct_size = sizeof(bst_attr), .key = BST_ATTR_SHAPE,
                             .kind = BST_ATTR_KIND_INTS, .count = 3,
                             .ints = {c->S, c->Hkv, c->D}},
                            {.struct_size = sizeof(bst_attr), .key = BST_ATTR_STRIDES,
                             .kind = BST_ATTR_KIND_INTS, .count = 3,
                             .ints = {(int64_t)(c->Hkv * vrow), (int64_t)vrow, (int64_t)esz}}};
        OK(bst_graph_add_op(g, BST_OP_VIEW, &in[2], 1, view, 2, &in[2]));
    }
    /* A strided mask: its values at the even floats of each row, NaN at the odd ones, which a
     * kernel that steps over the keys wrongly would add. */
    const int64_t mstep = c->m_strided ? 2 : 1, mfs[2] = {mt, mk * mstep};
    float *mfeed = malloc((size_t)(mt * mk * mstep) * sizeof *mfeed);
    CU_ASSERT_FATAL(mfeed != NULL);
    for (int64_t i = 0; i < mt * mk; i++) {
        mfeed[i * mstep] = m[i];
        if (mstep == 2)
            mfeed[i * 2 + 1] = NAN;
    }
    if (c->mask)
        OK(bst_graph_add_input(g, "m", BST_DTYPE_F32, 2, c->m_strided ? mfs : ms, NULL, &in[3]));
    if (c->mask && c->m_strided) {
        bst_attr view[2] = {{.struct_size = sizeof(bst_attr), .key = BST_ATTR_SHAPE,
                             .kind = BST_ATTR_KIND_INTS, .count = 2, .ints = {mt, mk}},
                            {.struct_size = sizeof(bst_attr), .key = BST_ATTR_STRIDES,
                             .kind = BST_ATTR_KIND_INTS, .count = 2,
                             .ints = {mk * 2 * 4, 2 * 4}}};
        OK(bst_graph_add_op(g, BST_OP_VIEW, &in[3], 1, view, 2, &in[3]));
    }
    bst_attr attrs[3] = {bst_attr_float(BST_ATTR_SCALE, scale),
                         bst_attr_int(BST_ATTR_CAUSAL, c->causal),
                         bst_attr_int(BST_ATTR_WINDOW, c->window)};
    OK(bst_graph_add_op(g, BST_OP_ATTENTION, in, c->mask ? 4 : 3, attrs, 3, &y));
    OK(bst_graph_mark_output(g, y, "y"));
    const size_t kvb = nkv * esz;
    feed feeds[4] = {{"q", q, nq * 4}, {"k", half ? (void *)kh : (void *)k, kvb},
                     {"v", vfeed, n_vrows * vrow}, {"m", mfeed, (size_t)(mt * mk * mstep) * 4}};
    const uint32_t n_feeds = c->mask ? 4 : 3;
    CU_ASSERT(run_graph(g, NULL, feeds, n_feeds, got, nq));
    CU_ASSERT(!run_graph(g, "lowered", feeds, n_feeds, low, nq));
    double e = nmse(got, want, nq), el = nmse(low, want, nq);
    printf("\n    attention T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld %s%s%s%s%s: NMSE fused %.2e, "
           "lowered %.2e",
           (long long)c->T, (long long)c->S, (long long)c->Hq, (long long)c->Hkv,
           (long long)c->D, bst_dtype_name(c->kv), c->v_padded ? " v-padded" : "",
           c->window ? " window" : "",
           (const char *[]){"", " mask[T,S]", " mask[T,1]", " mask[1,S]", " mask[T,S] row 0 blind",
                            " mask[T,S] causal zeros"}[c->mask],
           c->m_strided ? " (strided)" : "",
           e, el);
    CU_ASSERT(e <= 1e-9);
    bst_graph_destroy(g);
    free(q);
    free(k);
    free(v);
    free(m);
    free(mfeed);
    free(mfull);
    free(got);
    free(low);
    free(kh);
    free(vh);
    free(vfeed);
    free(want);
}

static void test_attention_prefill(void)
{
    /* 37 query rows (three blocks), 150 keys (three blocks), GQA 4 / 2 */
    check_attention(&(attn_case){37, 150, 4, 2, 64, true, 0, false, BST_DTYPE_F32, false, false});
    check_attention(&(attn_case){37, 150, 4, 2, 64, true, 0, false, BST_DTYPE_F16, false, false});
}

static void test_attention_decode(void)
{
    check_attention(&(attn_case){1, 600, 9, 3, 64, true, 0, false, BST_DTYPE_F32, false, false});
    check_attention(&(attn_case){1, 600, 9, 3, 64, true, 0, false, BST_DTYPE_F16, false, false});
    /* keys split over threads: a window leaves some shares empty; a mask with removed keys */
    check_attention(&(attn_case){1, 600, 9, 3, 64, true, 70, false, BST_DTYPE_F16, false, false});
    check_attention(&(attn_case){1, 700, 4, 1, 64, true, 0, true, BST_DTYPE_F32, false, false});
}

static void test_attention_window_mask(void)
{
    check_attention(&(attn_case){20, 130, 2, 1, 40, true, 70, false, BST_DTYPE_F32, false, false});
    /* a window in the AVX-512 tile (units of 32 rows; 8 of them, so the keys are not split):
     * each unit's first key block is whole for its first rows and hidden in part from its
     * last, 7 positions later */
    check_attention(&(attn_case){64, 300, 4, 1, 64, true, 70, false, BST_DTYPE_F16, false, false});
    check_attention(&(attn_case){20, 130, 2, 2, 36, false, 0, true, BST_DTYPE_F16, false, false});
    check_attention(&(attn_case){18, 100, 3, 1, 64, true, 0, true, BST_DTYPE_F32, false, false});
    /* the session's mask: skipped by the tile, the few-row kernel and the per-row loops */
    check_attention(
        &(attn_case){18, 100, 3, 1, 64, true, 0, MASK_CAUSAL_ZERO, BST_DTYPE_F32, false, false});
    check_attention(
        &(attn_case){1, 600, 9, 3, 64, true, 0, MASK_CAUSAL_ZERO, BST_DTYPE_F16, false, false});
    check_attention(
        &(attn_case){20, 130, 2, 1, 40, true, 70, MASK_CAUSAL_ZERO, BST_DTYPE_F32, false, false});
}

/* What the CPU backend found out about a mask that adds nothing is kept for the rest of an
 * execute, never for the next: (a) one program run twice on one mask input, first the
 * session's mask (skipped), then one that adds to the scores (keeping the answer across
 * executes fails this). (b) Two attention nodes whose masks are computed in the graph, the
 * first adding nothing, the second adding to the scores, output their sum: a partition that
 * writes the masks' binding looks at each mask anew (this case passes whether or not the
 * planner puts the two masks at one address, which it does not today). */
static void test_attention_mask_memo(void)
{
    enum { T = 18, S = 100, HQ = 3, HKV = 1, D = 64, NY = T * HQ * D };
    const attn_case c = {T, S, HQ, HKV, D, true, 0, MASK_TS, BST_DTYPE_F32, false, false};
    static float q[NY], k[S * HKV * D], v[S * HKV * D], m[2][T * S], y[NY];
    static double want[2][NY];
    fill(q, NY, 1.0f);
    fill(k, S * HKV * D, 1.0f);
    fill(v, S * HKV * D, 1.0f);
    const double scale = 1.0 / sqrt((double)D);
    for (int computed = 0; computed < 2; computed++) {
        bst_graph *g = NULL;
        OK(bst_graph_create(&g));
        const int64_t qs[3] = {T, HQ, D}, ks[3] = {S, HKV, D}, ms[2] = {T, S};
        bst_value in[4], mv[2], y_node[2], out;
        OK(bst_graph_add_input(g, "q", BST_DTYPE_F32, 3, qs, NULL, &in[0]));
        OK(bst_graph_add_input(g, "k", BST_DTYPE_F32, 3, ks, NULL, &in[1]));
        OK(bst_graph_add_input(g, "v", BST_DTYPE_F32, 3, ks, NULL, &in[2]));
        OK(bst_graph_add_input(g, "m0", BST_DTYPE_F32, 2, ms, NULL, &mv[0]));
        OK(bst_graph_add_input(g, "m1", BST_DTYPE_F32, 2, ms, NULL, &mv[1]));
        bst_attr attrs[2] = {bst_attr_float(BST_ATTR_SCALE, scale),
                             bst_attr_int(BST_ATTR_CAUSAL, 1)};
        const bst_attr one = bst_attr_float(BST_ATTR_SCALE, 1.0);
        for (int a = 0; a < 1 + computed; a++) {
            in[3] = mv[a];
            if (computed)
                OK(bst_graph_add_op(g, BST_OP_SCALE, &mv[a], 1, &one, 1, &in[3]));
            OK(bst_graph_add_op(g, BST_OP_ATTENTION, in, 4, attrs, 2, &y_node[a]));
        }
        if (computed)
            OK(bst_graph_add_op(g, BST_OP_ADD, y_node, 2, NULL, 0, &out));
        OK(bst_graph_mark_output(g, computed ? out : y_node[0], "y"));
        bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
        bst_context *ctx = NULL;
        OK(bst_context_create(&o, &ctx));
        bst_program *p = NULL;
        OK(bst_program_create(ctx, g, &p));
        OK(bst_program_set_input(p, "q", q, sizeof q));
        OK(bst_program_set_input(p, "k", k, sizeof k));
        OK(bst_program_set_input(p, "v", v, sizeof v));
        for (int run = 0; run < 2 - computed; run++) {
            fill_mask(MASK_CAUSAL_ZERO, T, S, T, S, m[0]);
            fill_mask(MASK_TS, T, S, T, S, m[1]);
            OK(bst_program_set_input(p, "m0", m[computed ? 0 : run], sizeof m[0]));
            OK(bst_program_set_input(p, "m1", m[1], sizeof m[1]));
            OK(bst_program_run(p, NULL));
            OK(bst_program_get_output(p, "y", y, sizeof y));
            attention_ref(&c, q, k, v, m[computed ? 0 : run], scale, want[0]);
            attention_ref(&c, q, k, v, m[1], scale, want[1]);
            for (int i = 0; computed && i < NY; i++)
                want[0][i] = (double)(float)want[0][i] + (double)(float)want[1][i];
            const double e = nmse(y, want[0], NY);
            printf("\n    %s, run %d: NMSE %.2e",
                   computed ? "two computed masks (zeros, mask[T,S]), summed" : "one mask input",
                   run, e);
            CU_ASSERT(e <= 1e-9);
        }
        bst_program_destroy(p);
        bst_context_destroy(ctx);
        bst_graph_destroy(g);
    }
}

/* Decode-sized units (the G query heads of one or more kv heads at 1..4 positions; few-row
 * kernel with AVX-512): group sizes 1, 3, 4, 8 (and 16 rows of 4 positions x G 4), units of
 * several kv heads (3 of 3 rows, 2 of 4, 2 + 1 of 6: T 2 x G 3), few keys (1, 5, 17: one partial
 * group of 16) and many (600+: several blocks, split across the two workers), every K/V dtype,
 * D 64 / 128 / 80 (a 64-column chunk and a 16-column one), V rows strided unlike K's (the
 * kernel then requests them its other way), and a D the kernel declines (36: the per-row
 * loops). */
static void test_attention_decode_few(void)
{
    static const attn_case cases[] = {
        {.T = 1, .S = 1, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_F32},
        {.T = 1, .S = 5, .Hq = 3, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_F16},
        {.T = 1, .S = 17, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_BF16},
        {.T = 1, .S = 17, .Hq = 8, .Hkv = 2, .D = 128, .causal = true, .kv = BST_DTYPE_F32},
        {.T = 1, .S = 650, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_BF16},
        {.T = 1, .S = 777, .Hq = 8, .Hkv = 1, .D = 128, .causal = true, .kv = BST_DTYPE_F16},
        {.T = 1, .S = 640, .Hq = 4, .Hkv = 4, .D = 80, .causal = true, .kv = BST_DTYPE_F32},
        {.T = 2, .S = 17, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_F32},
        {.T = 3, .S = 600, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_F16},
        {.T = 4, .S = 700, .Hq = 8, .Hkv = 2, .D = 64, .causal = true, .kv = BST_DTYPE_BF16},
        {.T = 4, .S = 5, .Hq = 4, .Hkv = 1, .D = 128, .causal = true, .kv = BST_DTYPE_F32},
        /* window: keys before it are skipped (some shares see none), inside a block too */
        {.T = 1, .S = 700, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .window = 100,
         .kv = BST_DTYPE_F32},
        {.T = 3, .S = 300, .Hq = 6, .Hkv = 2, .D = 64, .causal = true, .window = 37,
         .kv = BST_DTYPE_BF16},
        /* masks: per key, one value per row (stride 0), one row for all, a row that sees none */
        {.T = 1, .S = 600, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .mask = MASK_TS,
         .kv = BST_DTYPE_F16},
        {.T = 2, .S = 40, .Hq = 3, .Hkv = 1, .D = 64, .mask = MASK_T1, .kv = BST_DTYPE_F32},
        {.T = 1, .S = 650, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .mask = MASK_T1,
         .kv = BST_DTYPE_F32},
        {.T = 3, .S = 130, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .mask = MASK_1S,
         .kv = BST_DTYPE_F16},
        {.T = 2, .S = 600, .Hq = 8, .Hkv = 2, .D = 64, .mask = MASK_TS_BLIND,
         .kv = BST_DTYPE_F32},
        {.T = 1, .S = 600, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .window = 50,
         .mask = MASK_TS, .kv = BST_DTYPE_BF16},
        /* a mask whose keys are not adjacent floats (a strided view) */
        {.T = 1, .S = 600, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .mask = MASK_TS,
         .kv = BST_DTYPE_F16, .m_strided = true},
        {.T = 3, .S = 130, .Hq = 9, .Hkv = 3, .D = 128, .causal = true, .mask = MASK_TS,
         .kv = BST_DTYPE_F32, .m_strided = true},
        /* V rows padded: V's row and head strides differ from K's */
        {.T = 1, .S = 650, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_F16,
         .v_padded = true},
        {.T = 2, .S = 100, .Hq = 9, .Hkv = 3, .D = 64, .causal = true, .kv = BST_DTYPE_F32,
         .v_padded = true},
        /* a head dim the few-row kernel declines: the per-row loops */
        {.T = 2, .S = 300, .Hq = 6, .Hkv = 3, .D = 36, .causal = true, .mask = MASK_T1,
         .kv = BST_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_attention(&cases[i]);
}

/* --- rms_norm_mul --- */

static void test_rms_norm_mul(void)
{
    enum { R = 7, E = 576 };
    static float x[R * E], w[E], got[R * E], low[R * E];
    static double want[R * E];
    fill(x, R * E, 3.0f);
    fill(w, E, 1.0f);
    const double eps = 1e-5;
    for (int r = 0; r < R; r++) {
        double sq = 0.0;
        for (int i = 0; i < E; i++)
            sq += (double)x[r * E + i] * x[r * E + i];
        double inv = 1.0 / sqrt(sq / E + eps);
        for (int i = 0; i < E; i++)
            want[r * E + i] = x[r * E + i] * inv * w[i];
    }
    bst_graph *g = NULL;
    OK(bst_graph_create(&g));
    int64_t xs[2] = {R, E}, ws[1] = {E};
    bst_value in[2], y;
    OK(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &in[0]));
    OK(bst_graph_add_weight(g, "w", BST_DTYPE_F32, 1, ws, w, sizeof w, &in[1]));
    bst_attr a = bst_attr_float(BST_ATTR_EPS, eps);
    OK(bst_graph_add_op(g, BST_OP_RMS_NORM_MUL, in, 2, &a, 1, &y));
    OK(bst_graph_mark_output(g, y, "y"));
    feed f = {"x", x, sizeof x};
    CU_ASSERT(run_graph(g, NULL, &f, 1, got, R * E));
    CU_ASSERT(!run_graph(g, "lowered", &f, 1, low, R * E));
    double e = nmse(got, want, R * E);
    printf("\n    rms_norm_mul NMSE %.2e", e);
    CU_ASSERT(e <= 1e-9);
    bst_graph_destroy(g);
}

/* --- ffn_swiglu --- */

/* native: the weights are graph inputs instead of weights, so prepare_weight never sees them and
 * the kernels read their GGUF layout (the int8 block loops, and the f32 GEMM from 48 rows),
 * as on a machine without the packed copy's AVX-512 VNNI kernels. */
static void check_ffn(bst_dtype wt, int64_t rows, bool native)
{
    enum { E = 128, F = 320 };
    uint32_t bs, bb;
    CU_ASSERT_FATAL(bsti_quant_geometry(wt, &bs, &bb));
    static float g[F * E], u[F * E], d[E * F], gd[F * E], ud[F * E], dd[E * F];
    fill(g, F * E, 0.2f);
    fill(u, F * E, 0.2f);
    fill(d, E * F, 0.2f);
    size_t gb = (size_t)F * E / bs * bb, db = (size_t)E * F / bs * bb;
    uint8_t *gq = malloc(gb), *uq = malloc(gb), *dq = malloc(db);
    float *x = malloc((size_t)(rows * E) * sizeof *x), *got = malloc((size_t)(rows * E) * 4);
    float *low = malloc((size_t)(rows * E) * 4);
    double *want = malloc((size_t)(rows * E) * sizeof *want);
    CU_ASSERT_FATAL(gq && uq && dq && x && got && low && want);
    OK(bsti_quantize(wt, g, gq, F * E));
    OK(bsti_quantize(wt, u, uq, F * E));
    OK(bsti_quantize(wt, d, dq, E * F));
    OK(bsti_dequantize(wt, gq, gd, F * E)); /* the reference uses the weights as stored */
    OK(bsti_dequantize(wt, uq, ud, F * E));
    OK(bsti_dequantize(wt, dq, dd, E * F));
    fill(x, (size_t)(rows * E), 2.0f);
    bst_test_ffn_swiglu(x, rows, E, F, gd, ud, dd, want);
    bst_graph *gr = NULL;
    OK(bst_graph_create(&gr));
    int64_t xs[2] = {rows, E}, fe[2] = {F, E}, ef[2] = {E, F};
    bst_value in[4], y;
    OK(bst_graph_add_input(gr, "x", BST_DTYPE_F32, 2, xs, NULL, &in[0]));
    if (native) {
        OK(bst_graph_add_input(gr, "gate", wt, 2, fe, NULL, &in[1]));
        OK(bst_graph_add_input(gr, "up", wt, 2, fe, NULL, &in[2]));
        OK(bst_graph_add_input(gr, "down", wt, 2, ef, NULL, &in[3]));
    } else {
        OK(bst_graph_add_weight(gr, "gate", wt, 2, fe, gq, gb, &in[1]));
        OK(bst_graph_add_weight(gr, "up", wt, 2, fe, uq, gb, &in[2]));
        OK(bst_graph_add_weight(gr, "down", wt, 2, ef, dq, db, &in[3]));
    }
    OK(bst_graph_add_op(gr, BST_OP_FFN_SWIGLU, in, 4, NULL, 0, &y));
    OK(bst_graph_mark_output(gr, y, "y"));
    feed f[4] = {
        {"x", x, (size_t)(rows * E) * 4}, {"gate", gq, gb}, {"up", uq, gb}, {"down", dq, db}};
    const uint32_t n_feeds = native ? 4 : 1;
    const size_t n = (size_t)(rows * E);
    CU_ASSERT(run_graph(gr, NULL, f, n_feeds, got, n));
    CU_ASSERT(!run_graph(gr, "lowered", f, n_feeds, low, n));
    double e = nmse(got, want, n), el = nmse(low, want, n);
    printf("\n    ffn_swiglu %s rows=%lld%s: NMSE fused %.2e, lowered %.2e", bst_dtype_name(wt),
           (long long)rows, native ? " (native weights)" : "", e, el);
    CU_ASSERT(e <= 5e-4);
    bst_graph_destroy(gr);
    free(gq);
    free(uq);
    free(dq);
    free(x);
    free(got);
    free(low);
    free(want);
}

static void test_ffn_swiglu(void)
{
    check_ffn(BST_DTYPE_Q4_1, 1, false);
    check_ffn(BST_DTYPE_Q4_1, 7, false);
    check_ffn(BST_DTYPE_Q4_0, 5, false);
    check_ffn(BST_DTYPE_Q8_0, 9, false);
    check_ffn(BST_DTYPE_Q4_1, 40, false);
    check_ffn(BST_DTYPE_Q4_0, 50, false);
    check_ffn(BST_DTYPE_Q4_1, 1, true);
    check_ffn(BST_DTYPE_Q8_0, 9, true);
    check_ffn(BST_DTYPE_Q4_0, 50, true); /* the f32 GEMM prompt path */
}

/* f32 weights have no fused FFN kernel: the node must be lowered, not refused. */
static void test_ffn_f32_weights_lowered(void)
{
    enum { E = 64, F = 96 };
    static float g[F * E], u[F * E], d[E * F], x[2 * E], got[2 * E];
    fill(g, F * E, 0.2f);
    fill(u, F * E, 0.2f);
    fill(d, E * F, 0.2f);
    fill(x, 2 * E, 1.0f);
    bst_graph *gr = NULL;
    OK(bst_graph_create(&gr));
    int64_t xs[2] = {2, E}, fe[2] = {F, E}, ef[2] = {E, F};
    bst_value in[4], y;
    OK(bst_graph_add_input(gr, "x", BST_DTYPE_F32, 2, xs, NULL, &in[0]));
    OK(bst_graph_add_weight(gr, "gate", BST_DTYPE_F32, 2, fe, g, sizeof g, &in[1]));
    OK(bst_graph_add_weight(gr, "up", BST_DTYPE_F32, 2, fe, u, sizeof u, &in[2]));
    OK(bst_graph_add_weight(gr, "down", BST_DTYPE_F32, 2, ef, d, sizeof d, &in[3]));
    OK(bst_graph_add_op(gr, BST_OP_FFN_SWIGLU, in, 4, NULL, 0, &y));
    OK(bst_graph_mark_output(gr, y, "y"));
    feed f = {"x", x, sizeof x};
    CU_ASSERT(!run_graph(gr, NULL, &f, 1, got, 2 * E));
    bst_graph_destroy(gr);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"attention_prefill", test_attention_prefill},
        {"attention_decode", test_attention_decode},
        {"attention_window_mask", test_attention_window_mask},
        {"attention_mask_memo", test_attention_mask_memo},
        {"attention_decode_few", test_attention_decode_few},
        {"rms_norm_mul", test_rms_norm_mul},
        {"ffn_swiglu", test_ffn_swiglu},
        {"ffn_f32_weights_lowered", test_ffn_f32_weights_lowered},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_fused", cases);
}
