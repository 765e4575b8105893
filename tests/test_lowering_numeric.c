/*
 * tests/test_lowering_numeric.c — the lowering pass computes what the high-level ops mean.
 * Attention (GQA, causal, sliding window, explicit mask; prompt and single-token decode),
 * ffn_swiglu and rms_norm_mul are lowered with bsti_pass_lower, run through bst_program on the
 * CPU backend, and compared with naive double-precision implementations of backend.h's
 * definitions written here. Bound: NMSE <= 1e-6 (the lowered graph computes in f32 with
 * reference kernels; measured values are printed).
 */
#include "graph/ir.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NMSE_BOUND 1e-6

#define OK BST_TEST_OK

static bst_context *ctx;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

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
    double err = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        err += d * d;
        ref += want[i] * want[i];
    }
    return ref > 0 ? err / ref : err;
}

static bool only_primitives(const bst_graph *g)
{
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_op_info *info = bsti_op_get(g->nodes[i].op);
        if (!info || info->is_high_level)
            return false;
    }
    return true;
}

/* Lowers `g`, builds a program on the CPU backend, sets the named inputs, runs it and reads the
 * output "y" (n floats). */
static void run_lowered(bst_graph *g, const char *const *names, const float *const *data,
                        const size_t *sizes, uint32_t n_inputs, float *out, size_t n)
{
    OK(bsti_pass_lower(g, NULL, NULL));
    CU_ASSERT_FATAL(only_primitives(g));
    bst_program *p = NULL;
    OK(bst_program_create(ctx, g, &p));
    for (uint32_t i = 0; i < n_inputs; i++)
        OK(bst_program_set_input(p, names[i], data[i], sizes[i] * sizeof(float)));
    OK(bst_program_run(p, NULL));
    OK(bst_program_get_output(p, "y", out, n * sizeof(float)));
    bst_program_destroy(p);
}

/* --- attention --- */

typedef struct attn_case {
    int64_t T, S, Hq, Hkv, D;
    bool causal;
    int64_t window;
    bool mask; /* pass an explicit random 0/-inf mask too */
} attn_case;

/* backend.h: query t sits at S - T + t; head h uses kv head h / (Hq/Hkv); softmax(x*scale +
 * mask) with fully masked rows giving zeros. */
static void attention_ref(const attn_case *c, const float *q, const float *k, const float *v,
                          const float *mask, double scale, double *out)
{
    int64_t group = c->Hq / c->Hkv;
    double *p = malloc((size_t)c->S * sizeof *p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    for (int64_t t = 0; t < c->T; t++) {
        int64_t pos = c->S - c->T + t;
        for (int64_t h = 0; h < c->Hq; h++) {
            int64_t kh = h / group;
            double mx = -INFINITY;
            for (int64_t j = 0; j < c->S; j++) {
                bool hidden = (c->causal && j > pos) || (c->window > 0 && j <= pos - c->window);
                double m = mask ? (double)mask[t * c->S + j] : 0.0;
                if (hidden || isinf(m)) {
                    p[j] = -INFINITY;
                    continue;
                }
                double dot = 0;
                for (int64_t d = 0; d < c->D; d++)
                    dot += (double)q[(t * c->Hq + h) * c->D + d] *
                           (double)k[(j * c->Hkv + kh) * c->D + d];
                p[j] = dot * scale + m;
                if (p[j] > mx)
                    mx = p[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < c->S; j++) {
                p[j] = isinf(mx) || isinf(p[j]) ? 0.0 : exp(p[j] - mx);
                sum += p[j];
            }
            for (int64_t d = 0; d < c->D; d++) {
                double acc = 0;
                for (int64_t j = 0; j < c->S; j++)
                    acc += sum > 0 ? p[j] / sum * (double)v[(j * c->Hkv + kh) * c->D + d] : 0.0;
                out[(t * c->Hq + h) * c->D + d] = acc;
            }
        }
    }
    free(p);
}

static void check_attention(const attn_case *c)
{
    size_t nq = (size_t)(c->T * c->Hq * c->D), nk = (size_t)(c->S * c->Hkv * c->D);
    size_t nm = (size_t)(c->T * c->S);
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    float *mask = malloc(nm * sizeof *mask), *out = malloc(nq * sizeof *out);
    double *ref = malloc(nq * sizeof *ref);
    CU_ASSERT_FATAL(q && k && v && mask && out && ref);
    fill(q, nq, 1.0f);
    fill(k, nk, 1.0f);
    fill(v, nk, 1.0f);
    for (size_t i = 0; i < nm; i++)
        mask[i] = frand() > 0.6f ? -INFINITY : 0.0f;
    double scale = 1.0 / sqrt((double)c->D) * 1.5;

    bst_graph *g = NULL;
    OK(bst_graph_create(&g));
    int64_t qs[3] = {c->T, c->Hq, c->D}, ks[3] = {c->S, c->Hkv, c->D}, ms[2] = {c->T, c->S};
    bst_value in[4];
    OK(bst_graph_add_input(g, "q", BST_DTYPE_F32, 3, qs, NULL, &in[0]));
    OK(bst_graph_add_input(g, "k", BST_DTYPE_F32, 3, ks, NULL, &in[1]));
    OK(bst_graph_add_input(g, "v", BST_DTYPE_F32, 3, ks, NULL, &in[2]));
    if (c->mask)
        OK(bst_graph_add_input(g, "mask", BST_DTYPE_F32, 2, ms, NULL, &in[3]));
    bst_attr attrs[3] = {bst_attr_float(BST_ATTR_SCALE, scale),
                         bst_attr_int(BST_ATTR_CAUSAL, c->causal),
                         bst_attr_int(BST_ATTR_WINDOW, c->window)};
    bst_value y = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_ATTENTION, in, c->mask ? 4 : 3, attrs, 3, &y));
    OK(bst_graph_mark_output(g, y, "y"));

    const char *names[4] = {"q", "k", "v", "mask"};
    const float *data[4] = {q, k, v, mask};
    size_t sizes[4] = {nq, nk, nk, nm};
    run_lowered(g, names, data, sizes, c->mask ? 4 : 3, out, nq);
    attention_ref(c, q, k, v, c->mask ? mask : NULL, scale, ref);
    double e = nmse(out, ref, nq);
    fprintf(stderr, "\n    attention T=%lld S=%lld Hq=%lld Hkv=%lld causal=%d window=%lld mask=%d: "
                    "NMSE %.3g",
            (long long)c->T, (long long)c->S, (long long)c->Hq, (long long)c->Hkv, c->causal,
            (long long)c->window, c->mask, e);
    CU_ASSERT(e <= NMSE_BOUND);
    bst_graph_destroy(g);
    free(q);
    free(k);
    free(v);
    free(mask);
    free(out);
    free(ref);
}

static void test_attention_prompt_gqa_causal(void)
{
    attn_case c = {3, 7, 4, 2, 8, true, 0, false};
    check_attention(&c);
}

static void test_attention_decode_gqa_causal(void)
{
    attn_case c = {1, 7, 6, 2, 16, true, 0, false};
    check_attention(&c);
}

static void test_attention_window(void)
{
    attn_case c = {3, 7, 4, 1, 8, true, 3, false};
    check_attention(&c);
}

static void test_attention_mask_and_causal(void)
{
    attn_case c = {3, 7, 4, 2, 8, true, 0, true};
    check_attention(&c);
}

static void test_attention_no_causal(void)
{
    attn_case c = {5, 5, 2, 2, 4, false, 0, false};
    check_attention(&c);
}

/* --- ffn_swiglu and rms_norm_mul --- */

enum { FT = 5, FE = 16, FF = 24 };
static float w_gate[FF * FE], w_up[FF * FE], w_down[FE * FF], w_norm[FE];

static double silu(double x) { return x / (1.0 + exp(-x)); }

static void test_ffn_swiglu(void)
{
    float x[FT * FE], out[FT * FE];
    double ref[FT * FE];
    fill(x, FT * FE, 1.0f);
    fill(w_gate, FF * FE, 0.5f);
    fill(w_up, FF * FE, 0.5f);
    fill(w_down, FE * FF, 0.5f);
    bst_graph *g = NULL;
    OK(bst_graph_create(&g));
    int64_t xs[2] = {FT, FE}, gs[2] = {FF, FE}, ds[2] = {FE, FF};
    bst_value in[4];
    OK(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &in[0]));
    OK(bst_graph_add_weight(g, "gate", BST_DTYPE_F32, 2, gs, w_gate, sizeof w_gate, &in[1]));
    OK(bst_graph_add_weight(g, "up", BST_DTYPE_F32, 2, gs, w_up, sizeof w_up, &in[2]));
    OK(bst_graph_add_weight(g, "down", BST_DTYPE_F32, 2, ds, w_down, sizeof w_down, &in[3]));
    bst_value y = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_FFN_SWIGLU, in, 4, NULL, 0, &y));
    OK(bst_graph_mark_output(g, y, "y"));
    const char *names[1] = {"x"};
    const float *data[1] = {x};
    size_t sizes[1] = {FT * FE};
    run_lowered(g, names, data, sizes, 1, out, FT * FE);
    for (int t = 0; t < FT; t++) {
        double h[FF];
        for (int f = 0; f < FF; f++) {
            double a = 0, b = 0;
            for (int e = 0; e < FE; e++) {
                a += (double)x[t * FE + e] * w_gate[f * FE + e];
                b += (double)x[t * FE + e] * w_up[f * FE + e];
            }
            h[f] = silu(a) * b;
        }
        for (int e = 0; e < FE; e++) {
            double acc = 0;
            for (int f = 0; f < FF; f++)
                acc += h[f] * w_down[e * FF + f];
            ref[t * FE + e] = acc;
        }
    }
    double e = nmse(out, ref, FT * FE);
    fprintf(stderr, "\n    ffn_swiglu: NMSE %.3g", e);
    CU_ASSERT(e <= NMSE_BOUND);
    bst_graph_destroy(g);
}

static void test_rms_norm_mul(void)
{
    float x[FT * FE], out[FT * FE];
    double ref[FT * FE];
    fill(x, FT * FE, 3.0f);
    fill(w_norm, FE, 2.0f);
    const double eps = 1e-5;
    bst_graph *g = NULL;
    OK(bst_graph_create(&g));
    int64_t xs[2] = {FT, FE}, ws[1] = {FE};
    bst_value in[2];
    OK(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &in[0]));
    OK(bst_graph_add_weight(g, "norm", BST_DTYPE_F32, 1, ws, w_norm, sizeof w_norm, &in[1]));
    bst_attr eps_attr = bst_attr_float(BST_ATTR_EPS, eps);
    bst_value y = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_RMS_NORM_MUL, in, 2, &eps_attr, 1, &y));
    OK(bst_graph_mark_output(g, y, "y"));
    const char *names[1] = {"x"};
    const float *data[1] = {x};
    size_t sizes[1] = {FT * FE};
    run_lowered(g, names, data, sizes, 1, out, FT * FE);
    for (int t = 0; t < FT; t++) {
        double ss = 0;
        for (int e = 0; e < FE; e++)
            ss += (double)x[t * FE + e] * x[t * FE + e];
        double r = 1.0 / sqrt(ss / FE + eps);
        for (int e = 0; e < FE; e++)
            ref[t * FE + e] = (double)x[t * FE + e] * r * w_norm[e];
    }
    double e = nmse(out, ref, FT * FE);
    fprintf(stderr, "\n    rms_norm_mul: NMSE %.3g", e);
    CU_ASSERT(e <= NMSE_BOUND);
    bst_graph_destroy(g);
}

static void test_cpu_backend_loaded(void)
{
    bst_context_options opt;
    memset(&opt, 0, sizeof opt);
    opt.struct_size = sizeof opt;
    opt.backends = "cpu";
    OK(bst_context_create(&opt, &ctx));
    CU_ASSERT_FATAL(bst_context_device_count(ctx) >= 1);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"cpu_backend_loaded", test_cpu_backend_loaded},
        {"attention_prompt_gqa_causal", test_attention_prompt_gqa_causal},
        {"attention_decode_gqa_causal", test_attention_decode_gqa_causal},
        {"attention_window", test_attention_window},
        {"attention_mask_and_causal", test_attention_mask_and_causal},
        {"attention_no_causal", test_attention_no_causal},
        {"ffn_swiglu", test_ffn_swiglu},
        {"rms_norm_mul", test_rms_norm_mul},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("lowering_numeric", cases);
    bst_context_destroy(ctx);
    return rc;
}
