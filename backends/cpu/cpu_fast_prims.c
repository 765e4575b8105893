/*
 * Fast variants of primitive ops other than matmul (see cpu_fused.h, "primitive variants"):
 * offered before "ref" wherever they apply, so the static priority picks them.
 *
 * rope_cached: the reference kernel evaluates cos and sin for every (token, head, pair); a
 * token's angles are the same for all of its heads, so this variant computes them once per token
 * (in double, by the same expression) and rotates every head with them. The arithmetic per
 * element is the reference's, so the result is bit-identical and only the H-fold redundant
 * trigonometry is gone (rope was ~6% of a SmolLM2 prompt on the reference kernel).
 */
#include "cpu_fused.h"

#include <math.h>
#include <string.h>

#define ROPE_MAX_HALF 256 /* rotated pairs held on the stack; wider ropes keep "ref" */

static bool rope_cached_applies(const cpu_run *r)
{
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0);
    return dims / 2 <= ROPE_MAX_HALF;
}

/* Tokens [begin, end): rows (0, t, h) for every head h. */
static void rope_tokens(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *pos = &r->in[1], *o = &r->out;
    const bool neox = cpu_attr_int(r->node, BST_ATTR_ROPE_MODE, 0) == 2;
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0), half = dims / 2;
    const int64_t n = o->ne[3];
    const double *inv_freq = (const double *)(const void *)r->shared;
    double cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    for (int64_t t = begin; t < end; t++) {
        int32_t p;
        memcpy(&p, pos->data + t * pos->nb[3], sizeof p);
        for (int64_t i = 0; i < half; i++) {
            const double ang = (double)p * inv_freq[i];
            cs[i] = cos(ang);
            sn[i] = sin(ang);
        }
        for (int64_t i0 = 0; i0 < o->ne[0]; i0++) {
            for (int64_t h = 0; h < o->ne[2]; h++) {
                const float *v =
                    cpu_load_row(r, x, i0, t, h, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
                float *z = cpu_out_row(o, i0, t, h, cpu_slot(r, w, 2));
                if (neox) {
                    for (int64_t i = 0; i < half; i++) {
                        const double x0 = v[i], x1 = v[i + half];
                        z[i] = (float)(x0 * cs[i] - x1 * sn[i]);
                        z[i + half] = (float)(x0 * sn[i] + x1 * cs[i]);
                    }
                } else {
                    for (int64_t i = 0; i < half; i++) {
                        const double x0 = v[2 * i], x1 = v[2 * i + 1];
                        z[2 * i] = (float)(x0 * cs[i] - x1 * sn[i]);
                        z[2 * i + 1] = (float)(x0 * sn[i] + x1 * cs[i]);
                    }
                }
                for (int64_t i = dims; i < n; i++)
                    z[i] = v[i];
                cpu_commit_row(r, o, i0, t, h, z, cpu_slot(r, w, 3));
            }
        }
    }
}

static bst_status rope_cached_run(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    const double theta = cpu_attr_float(r->node, BST_ATTR_ROPE_THETA, 10000.0);
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0);
    if (dims / 2 > ROPE_MAX_HALF)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "rope_cached handles at most %d rotated dims",
                        2 * ROPE_MAX_HALF);
    /* As the reference kernel: base^(-2i/dims) in the shared slots (dims <= D doubles fit). */
    double *inv_freq = (double *)(void *)r->shared;
    for (int64_t i = 0; i < dims / 2; i++)
        inv_freq[i] = pow(theta, -2.0 * (double)i / (double)dims);
    cpu_parallel(r, o->ne[1], cpu_grain(o->ne[0] * o->ne[2] * o->ne[3] * 2), rope_tokens);
    return BST_OK;
}

static const cpu_fused_impl prim_impls[] = {
    {"rope_cached", BST_OP_ROPE, 0, NULL, NULL, NULL, rope_cached_run},
};

uint32_t cpu_prim_variants(const cpu_run *r, const cpu_fused_impl **out, uint32_t cap)
{
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof prim_impls / sizeof prim_impls[0] && n < cap; i++) {
        const cpu_fused_impl *impl = &prim_impls[i];
        if (impl->op != r->node->op)
            continue;
        if (impl->op == BST_OP_ROPE && !rope_cached_applies(r))
            continue;
        out[n++] = impl;
    }
    return n;
}
