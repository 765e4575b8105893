/*
 * Elementwise reference kernels: add/mul (with broadcasting), scale, silu, gelu, cast, quantize,
 * cont, concat, and the aliasing ops (view, reshape, permute, transpose), which only check that
 * the memory planner really aliased them.
 */
#include "cpu_backend.h"

#include <math.h>
#include <string.h>

static bst_status need_loadable(cpu_run *r, const cpu_tensor *t, const char *what)
{
    if (!cpu_is_loadable(t->dtype) || t->dtype == BST_DTYPE_I32 || t->dtype == BST_DTYPE_I8)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "%s dtype %s is not a float or block type", what,
                        cpu_dtype_name(t->dtype));
    return BST_OK;
}

static bst_status need_storable(cpu_run *r, const cpu_tensor *t)
{
    if (!cpu_is_storable(t->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "output dtype %s cannot be written",
                        cpu_dtype_name(t->dtype));
    return BST_OK;
}

static bst_status need_same_shape(cpu_run *r, const cpu_tensor *a, const cpu_tensor *b,
                                  const char *what)
{
    if (a->rank != b->rank || !cpu_same_shape(a, b))
        return cpu_fail(r, BST_ERR_SHAPE, "%s shape does not match the output's", what);
    return BST_OK;
}

/* --- add, mul --- */

bst_status cpu_check_binary(cpu_run *r)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    bst_status st;
    if ((st = need_loadable(r, a, "a")) || (st = need_loadable(r, b, "b")) ||
        (st = need_storable(r, o)) || (st = need_same_shape(r, a, o, "a")))
        return st;
    if (b->rank > a->rank)
        return cpu_fail(r, BST_ERR_SHAPE, "b has more dims (%u) than a (%u)", b->rank, a->rank);
    for (int d = 0; d < 4; d++)
        if (b->ne[d] != 1 && b->ne[d] != a->ne[d])
            return cpu_fail(r, BST_ERR_SHAPE, "b dim of %lld does not broadcast to a's %lld",
                            (long long)b->ne[d], (long long)a->ne[d]);
    return BST_OK;
}

static void binary_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    const bool mul = r->node->op == BST_OP_MUL;
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1], i0 = row / o->ne[2] / o->ne[1];
        const float *x = cpu_load_row(r, a, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        const float *y = cpu_load_row(r, b, b->ne[0] == 1 ? 0 : i0, b->ne[1] == 1 ? 0 : i1,
                                      b->ne[2] == 1 ? 0 : i2, cpu_slot(r, w, 1), cpu_slot(r, w, 3));
        float *z = cpu_out_row(o, i0, i1, i2, cpu_slot(r, w, 2));
        const bool bcast = b->ne[3] == 1;
        for (int64_t i = 0; i < n; i++) {
            float yi = bcast ? y[0] : y[i];
            z[i] = mul ? x[i] * yi : x[i] + yi;
        }
        cpu_commit_row(r, o, i0, i1, i2, z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_binary(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3]), binary_rows);
    return BST_OK;
}

/* --- scale, silu, gelu --- */

bst_status cpu_check_unary(cpu_run *r)
{
    bst_status st;
    if ((st = need_loadable(r, &r->in[0], "x")) || (st = need_storable(r, &r->out)) ||
        (st = need_same_shape(r, &r->in[0], &r->out, "x")))
        return st;
    if (r->node->op == BST_OP_SCALE) {
        if (!cpu_attr(r->node, BST_ATTR_SCALE))
            return cpu_fail(r, BST_ERR_INVALID_ARG, "missing attribute scale");
        if (!isfinite(cpu_attr_float(r->node, BST_ATTR_SCALE, 1.0)))
            return cpu_fail(r, BST_ERR_INVALID_ARG, "scale is not finite");
    }
    return BST_OK;
}

static void unary_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const bst_op op = r->node->op;
    const float scale = (float)cpu_attr_float(r->node, BST_ATTR_SCALE, 1.0);
    const double c = 0.7978845608028654; /* sqrt(2/pi) */
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1], i0 = row / o->ne[2] / o->ne[1];
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        float *z = cpu_out_row(o, i0, i1, i2, cpu_slot(r, w, 2));
        for (int64_t i = 0; i < n; i++) {
            double t = v[i];
            if (op == BST_OP_SCALE)
                z[i] = v[i] * scale;
            else if (op == BST_OP_SILU)
                z[i] = (float)(t / (1.0 + exp(-t)));
            else /* gelu, tanh approximation */
                z[i] = (float)(0.5 * t * (1.0 + tanh(c * (t + 0.044715 * t * t * t))));
        }
        cpu_commit_row(r, o, i0, i1, i2, z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_unary(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 8), unary_rows);
    return BST_OK;
}

/* --- cast, quantize, cont --- */

bst_status cpu_check_convert(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const bst_op op = r->node->op;
    bst_status st;
    if ((st = need_same_shape(r, x, o, "x")))
        return st;
    if (!cpu_is_loadable(x->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "x dtype %s cannot be read",
                        cpu_dtype_name(x->dtype));
    if (op == BST_OP_CONT) {
        /* Same dtype: a byte copy, any dtype. Otherwise a conversion through f32. */
        if (x->dtype != o->dtype && (st = need_storable(r, o)))
            return st;
        return BST_OK;
    }
    int64_t want = cpu_attr_int(r->node, BST_ATTR_DTYPE, -1);
    if (want != (int64_t)o->dtype)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "attribute dtype %lld does not match output %s",
                        (long long)want, cpu_dtype_name(o->dtype));
    bool block = cpu_is_block(o->dtype);
    if (op == BST_OP_CAST && (block || !cpu_is_storable(o->dtype)))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "cast to %s (use quantize for block types)",
                        cpu_dtype_name(o->dtype));
    if (op == BST_OP_QUANTIZE && !block)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "quantize to %s: not a block type",
                        cpu_dtype_name(o->dtype));
    return BST_OK;
}

static void convert_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1], i0 = row / o->ne[2] / o->ne[1];
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        cpu_commit_row(r, o, i0, i1, i2, v, cpu_slot(r, w, 3));
    }
}

/* Same dtype: bytes move unchanged (bit-exact for every dtype, NaN payloads included). */
static void copy_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    uint32_t bs = 1, bb = 1;
    cpu_dtype_geometry(x->dtype, &bs, &bb);
    const int64_t units = o->ne[3] / bs; /* elements, or blocks */
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1], i0 = row / o->ne[2] / o->ne[1];
        const uint8_t *s = cpu_row_ptr(x, i0, i1, i2);
        uint8_t *d = cpu_row_ptr(o, i0, i1, i2);
        if (x->nb[3] == (int64_t)bb && o->nb[3] == (int64_t)bb) {
            memmove(d, s, (size_t)(units * bb));
        } else {
            for (int64_t i = 0; i < units; i++)
                memmove(d + i * o->nb[3], s + i * x->nb[3], bb);
        }
    }
}

bst_status cpu_run_convert(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    int64_t rows = o->ne[0] * o->ne[1] * o->ne[2];
    if (r->node->op == BST_OP_CONT && x->dtype == o->dtype)
        cpu_parallel(r, rows, cpu_grain(o->ne[3] / 4), copy_rows);
    else
        cpu_parallel(r, rows, cpu_grain(o->ne[3] * 2), convert_rows);
    return BST_OK;
}

/* --- concat --- */

static int concat_axis(const cpu_run *r)
{
    int64_t axis = cpu_attr_int(r->node, BST_ATTR_AXIS, -1);
    return (int)(axis + (BST_MAX_DIMS - (int64_t)r->out.rank)); /* in padded dims */
}

bst_status cpu_check_concat(cpu_run *r)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    bst_status st;
    if ((st = need_loadable(r, a, "a")) || (st = need_loadable(r, b, "b")) ||
        (st = need_storable(r, o)))
        return st;
    int64_t axis = cpu_attr_int(r->node, BST_ATTR_AXIS, -1);
    if (a->rank != o->rank || b->rank != o->rank || o->rank == 0 || axis < 0 ||
        axis >= (int64_t)o->rank)
        return cpu_fail(r, BST_ERR_SHAPE, "concat of rank %u and %u into %u along axis %lld",
                        a->rank, b->rank, o->rank, (long long)axis);
    int ax = concat_axis(r);
    for (int d = 0; d < 4; d++) {
        int64_t want = d == ax ? a->ne[d] + b->ne[d] : a->ne[d];
        if ((d != ax && b->ne[d] != a->ne[d]) || o->ne[d] != want)
            return cpu_fail(r, BST_ERR_SHAPE, "concat shapes disagree in dim %d", d - (4 - (int)o->rank));
    }
    /* A block row split along the innermost axis must fall on block boundaries. */
    uint32_t bs, bb;
    cpu_dtype_geometry(o->dtype, &bs, &bb);
    if (ax == 3 && bs > 1 && a->ne[3] % bs != 0)
        return cpu_fail(r, BST_ERR_SHAPE, "concat splits a %s block", cpu_dtype_name(o->dtype));
    return BST_OK;
}

static void concat_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    const int ax = concat_axis(r);
    for (int64_t row = begin; row < end; row++) {
        int64_t i[3] = {row / o->ne[2] / o->ne[1], (row / o->ne[2]) % o->ne[1], row % o->ne[2]};
        float *z = cpu_out_row(o, i[0], i[1], i[2], cpu_slot(r, w, 2));
        if (ax == 3) {
            const float *x = cpu_load_row(r, a, i[0], i[1], i[2], cpu_slot(r, w, 0), cpu_slot(r, w, 3));
            memmove(z, x, (size_t)a->ne[3] * sizeof(float));
            const float *y = cpu_load_row(r, b, i[0], i[1], i[2], cpu_slot(r, w, 1), cpu_slot(r, w, 3));
            memmove(z + a->ne[3], y, (size_t)b->ne[3] * sizeof(float));
        } else {
            const cpu_tensor *src = a;
            int64_t j[3] = {i[0], i[1], i[2]};
            if (j[ax] >= a->ne[ax]) {
                j[ax] -= a->ne[ax];
                src = b;
            }
            const float *x = cpu_load_row(r, src, j[0], j[1], j[2], cpu_slot(r, w, 0), cpu_slot(r, w, 3));
            memmove(z, x, (size_t)o->ne[3] * sizeof(float));
        }
        cpu_commit_row(r, o, i[0], i[1], i[2], z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_concat(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 2), concat_rows);
    return BST_OK;
}

/* --- view, reshape, permute, transpose --- */

/* The planner gives an alias the memory of its input (VIEW: plus its offset attribute); the
 * kernel is then nothing. If the descriptors say otherwise, running "nothing" would silently
 * produce garbage, so that is an error. */
bst_status cpu_check_alias(cpu_run *r)
{
    const bst_tensor_desc *x = &r->node->in[0], *o = &r->node->out;
    uint64_t extra = 0;
    if (r->node->op == BST_OP_VIEW) {
        int64_t off = cpu_attr_int(r->node, BST_ATTR_OFFSET, 0);
        if (off < 0)
            return cpu_fail(r, BST_ERR_INVALID_ARG, "view offset %lld is negative", (long long)off);
        extra = (uint64_t)off;
    }
    if (x->dtype != o->dtype)
        return cpu_fail(r, BST_ERR_SHAPE, "an alias cannot change the dtype");
    if (o->binding != x->binding || o->offset != x->offset + extra)
        return cpu_fail(r, BST_ERR_INVALID_ARG,
                        "output (binding %u, offset %llu) does not alias input (binding %u, "
                        "offset %llu + %llu)",
                        o->binding, (unsigned long long)o->offset, x->binding,
                        (unsigned long long)x->offset, (unsigned long long)extra);
    return BST_OK;
}

bst_status cpu_run_alias(cpu_run *r)
{
    (void)r;
    return BST_OK;
}
