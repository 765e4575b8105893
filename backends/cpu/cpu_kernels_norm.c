/*
 * Row-reduction reference kernels: rms_norm, layer_norm, softmax (scale, broadcast mask,
 * -inf handling), and rope (normal and neox). Reductions and angles are computed in double: this
 * backend is the oracle the others are measured against, so its own error should be negligible.
 */
#include "cpu_backend.h"

#include <math.h>
#include <string.h>

static bst_status need_float_in(cpu_run *r, const cpu_tensor *t, const char *what)
{
    if (!cpu_is_loadable(t->dtype) || t->dtype == BST_DTYPE_I32 || t->dtype == BST_DTYPE_I8)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "%s dtype %s is not a float or block type", what,
                        cpu_dtype_name(t->dtype));
    return BST_OK;
}

static bst_status need_like_x(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    bst_status st = need_float_in(r, x, "x");
    if (st != BST_OK)
        return st;
    if (!cpu_is_storable(o->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "output dtype %s cannot be written",
                        cpu_dtype_name(o->dtype));
    if (x->rank != o->rank || !cpu_same_shape(x, o))
        return cpu_fail(r, BST_ERR_SHAPE, "output shape differs from x's");
    return BST_OK;
}

#define ROW_INDEX(o, row, i0, i1, i2)                      \
    int64_t i2 = (row) % (o)->ne[2];                       \
    int64_t i1 = ((row) / (o)->ne[2]) % (o)->ne[1];        \
    int64_t i0 = (row) / (o)->ne[2] / (o)->ne[1]

/* --- rms_norm, layer_norm --- */

bst_status cpu_check_norm(cpu_run *r)
{
    bst_status st = need_like_x(r);
    if (st != BST_OK)
        return st;
    if (r->in[0].rank == 0)
        return cpu_fail(r, BST_ERR_SHAPE, "x must have at least one dim");
    const bst_attr *eps = cpu_attr(r->node, BST_ATTR_EPS);
    if (!eps)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "missing attribute eps");
    double e = cpu_attr_float(r->node, BST_ATTR_EPS, 0.0);
    if (!isfinite(e) || e < 0)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "eps %g must be finite and >= 0", e);
    return BST_OK;
}

static void norm_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const bool layer = r->node->op == BST_OP_LAYER_NORM;
    const double eps = cpu_attr_float(r->node, BST_ATTR_EPS, 0.0);
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        ROW_INDEX(o, row, i0, i1, i2);
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        float *z = cpu_out_row(o, i0, i1, i2, cpu_slot(r, w, 2));
        double mean = 0.0;
        if (layer) {
            for (int64_t i = 0; i < n; i++)
                mean += v[i];
            mean /= (double)n;
        }
        double sq = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)v[i] - mean;
            sq += d * d;
        }
        double inv = 1.0 / sqrt(sq / (double)n + eps);
        for (int64_t i = 0; i < n; i++)
            z[i] = (float)(((double)v[i] - mean) * inv);
        cpu_commit_row(r, o, i0, i1, i2, z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_norm(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 3), norm_rows);
    return BST_OK;
}

/* --- softmax --- */

bst_status cpu_check_softmax(cpu_run *r)
{
    bst_status st = need_like_x(r);
    if (st != BST_OK)
        return st;
    if (r->in[0].rank == 0)
        return cpu_fail(r, BST_ERR_SHAPE, "x must have at least one dim");
    double scale = cpu_attr_float(r->node, BST_ATTR_SCALE, 1.0);
    if (!isfinite(scale))
        return cpu_fail(r, BST_ERR_INVALID_ARG, "scale is not finite");
    if (r->node->n_inputs == 2) {
        const cpu_tensor *x = &r->in[0], *m = &r->in[1];
        if ((st = need_float_in(r, m, "mask")) != BST_OK)
            return st;
        if (m->rank > x->rank)
            return cpu_fail(r, BST_ERR_SHAPE, "mask has more dims than x");
        for (int d = 0; d < 4; d++)
            if (m->ne[d] != 1 && m->ne[d] != x->ne[d])
                return cpu_fail(r, BST_ERR_SHAPE, "mask dim of %lld does not broadcast to %lld",
                                (long long)m->ne[d], (long long)x->ne[d]);
    }
    return BST_OK;
}

static void softmax_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const cpu_tensor *m = r->node->n_inputs == 2 ? &r->in[1] : NULL;
    const double scale = cpu_attr_float(r->node, BST_ATTR_SCALE, 1.0);
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        ROW_INDEX(o, row, i0, i1, i2);
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        const float *mk = NULL;
        if (m)
            mk = cpu_load_row(r, m, m->ne[0] == 1 ? 0 : i0, m->ne[1] == 1 ? 0 : i1,
                              m->ne[2] == 1 ? 0 : i2, cpu_slot(r, w, 1), cpu_slot(r, w, 3));
        const bool mb = m && m->ne[3] == 1;
        float *z = cpu_out_row(o, i0, i1, i2, cpu_slot(r, w, 2));
        /* The logits are recomputed in each pass (rather than stored as float) so the result
         * only rounds once. z may alias v (in place), so z is written in the last pass only. */
#define LOGIT(i) ((double)v[i] * scale + (mk ? (double)mk[mb ? 0 : (i)] : 0.0))
        double mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            double t = LOGIT(i);
            if (t > mx)
                mx = t;
        }
        if (mx == -INFINITY) { /* every position removed (or nothing finite): zeros */
            for (int64_t i = 0; i < n; i++)
                z[i] = 0.0f;
        } else {
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++)
                sum += exp(LOGIT(i) - mx);
            for (int64_t i = 0; i < n; i++)
                z[i] = (float)(exp(LOGIT(i) - mx) / sum);
        }
#undef LOGIT
        cpu_commit_row(r, o, i0, i1, i2, z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_softmax(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 16), softmax_rows);
    return BST_OK;
}

/* --- rope --- */

bst_status cpu_check_rope(cpu_run *r)
{
    bst_status st = need_like_x(r);
    if (st != BST_OK)
        return st;
    const cpu_tensor *x = &r->in[0], *pos = &r->in[1];
    if (x->rank != 3)
        return cpu_fail(r, BST_ERR_SHAPE, "x must be [T, H, D], got rank %u", x->rank);
    if (pos->dtype != BST_DTYPE_I32 || pos->rank != 1 || pos->ne[3] != x->ne[1])
        return cpu_fail(r, BST_ERR_SHAPE, "pos must be i32[T] with T = %lld", (long long)x->ne[1]);
    const cpu_node *n = r->node;
    if (!cpu_attr(n, BST_ATTR_ROPE_MODE) || !cpu_attr(n, BST_ATTR_ROPE_THETA) ||
        !cpu_attr(n, BST_ATTR_ROPE_DIMS))
        return cpu_fail(r, BST_ERR_INVALID_ARG, "needs rope_mode, rope_theta and rope_dims");
    int64_t mode = cpu_attr_int(n, BST_ATTR_ROPE_MODE, -1);
    double theta = cpu_attr_float(n, BST_ATTR_ROPE_THETA, 0.0);
    int64_t dims = cpu_attr_int(n, BST_ATTR_ROPE_DIMS, 0);
    if (mode != 0 && mode != 2)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "rope mode %lld (0 normal, 2 neox)",
                        (long long)mode);
    if (!isfinite(theta) || theta <= 0)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "rope theta %g must be positive", theta);
    if (dims < 2 || dims % 2 != 0 || dims > x->ne[3])
        return cpu_fail(r, BST_ERR_INVALID_ARG, "rope dims %lld must be even, 2..%lld",
                        (long long)dims, (long long)x->ne[3]);
    return BST_OK;
}

static void rope_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *pos = &r->in[1], *o = &r->out;
    const bool neox = cpu_attr_int(r->node, BST_ATTR_ROPE_MODE, 0) == 2;
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0), half = dims / 2;
    const int64_t n = o->ne[3];
    const double *inv_freq = (const double *)(const void *)r->shared;
    for (int64_t row = begin; row < end; row++) {
        ROW_INDEX(o, row, i0, i1, i2);
        int32_t p;
        memcpy(&p, pos->data + i1 * pos->nb[3], sizeof p);
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        float *z = cpu_out_row(o, i0, i1, i2, cpu_slot(r, w, 2));
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)p * inv_freq[i];
            double c = cos(ang), s = sin(ang);
            int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            double x0 = v[a], x1 = v[b];
            z[a] = (float)(x0 * c - x1 * s);
            z[b] = (float)(x0 * s + x1 * c);
        }
        for (int64_t i = dims; i < n; i++)
            z[i] = v[i];
        cpu_commit_row(r, o, i0, i1, i2, z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_rope(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    const double theta = cpu_attr_float(r->node, BST_ATTR_ROPE_THETA, 10000.0);
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0);
    /* base^(-2i/dims) for i < dims/2, shared by all rows: dims <= D doubles fit in the
     * shared region (at least two rows of max_row floats). */
    double *inv_freq = (double *)(void *)r->shared;
    for (int64_t i = 0; i < dims / 2; i++)
        inv_freq[i] = pow(theta, -2.0 * (double)i / (double)dims);
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 16), rope_rows);
    return BST_OK;
}
