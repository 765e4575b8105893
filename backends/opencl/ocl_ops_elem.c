/*
 * Elementwise ops: add/mul (b broadcast through zero strides), scale/silu/gelu, cast, quantize,
 * cont (a bit-exact unit copy when the dtype stays, else a conversion), concat, and the aliasing
 * view ops (no kernel: the memory planner aliases them; the check refuses descriptors that say
 * otherwise, as the CPU reference does). Checks follow backends/cpu's rules.
 */
#include "ocl_backend.h"

#include <math.h>

#define FLAT_WG 64

/* Flat launch: one work-item per item, in groups of FLAT_WG. */
static bst_status launch_flat(ocl_run *r, cl_kernel k, const char *name, int64_t items)
{
    size_t local = FLAT_WG;
    size_t global = ocl_round_up(r, items, local);
    return ocl_enqueue(r, k, name, 1, &global, &local);
}

static bst_status check_all_aligned(ocl_run *r)
{
    bst_status st;
    for (uint32_t i = 0; i < r->node->n_inputs; i++)
        if ((st = ocl_check_aligned(r, &r->in[i], "input")) != BST_OK)
            return st;
    return ocl_check_aligned(r, &r->out, "output");
}

/* Row-major without gaps at the run-time extents (a symbolic middle dim leaves gaps). */
static bool dense_f32(const ocl_tensor *t)
{
    if (t->dtype != BST_DTYPE_F32 || t->offset % 4 != 0)
        return false;
    int64_t want = 4;
    for (int d = 3; d >= 0; d--) {
        if (t->ne[d] > 1 && t->nb[d] != want)
            return false;
        want *= t->ne[d];
    }
    return true;
}

/* b repeats along a's outer dims only: its dims are 1 up to some d0, a's from there on. */
static bool suffix_broadcast(const ocl_tensor *b, const ocl_tensor *a)
{
    int d = 0;
    while (d < 4 && b->ne[d] == 1 && a->ne[d] != 1)
        d++;
    for (; d < 4; d++)
        if (b->ne[d] != a->ne[d])
            return false;
    return true;
}

static uint32_t fam_elem(const ocl_run *r)
{
    (void)r;
    return 1u << OCL_FAM_ELEM;
}

/* --- add, mul --- */

static bst_status check_binary(ocl_run *r)
{
    const ocl_tensor *a = &r->in[0], *b = &r->in[1];
    bst_status st;
    if ((st = ocl_need_float_in(r, a, "a")) || (st = ocl_need_float_in(r, b, "b")) ||
        (st = ocl_need_plain_out(r)) || (st = ocl_need_same_shape(r, a, "a")))
        return st;
    if (b->rank > a->rank)
        return ocl_fail(r, BST_ERR_SHAPE, "b has more dims (%u) than a (%u)", b->rank, a->rank);
    for (int d = 0; d < 4; d++)
        if (b->ne[d] != 1 && b->ne[d] != a->ne[d])
            return ocl_fail(r, BST_ERR_SHAPE, "b dim of %lld does not broadcast to a's %lld",
                            (long long)b->ne[d], (long long)a->ne[d]);
    return check_all_aligned(r);
}

static bst_status prepare_binary(ocl_run *r)
{
    bst_status st = ocl_kernel_create(r, OCL_FAM_ELEM, "k_binary", &r->node->k[0]);
    return st ? st : ocl_kernel_create(r, OCL_FAM_ELEM, "k_binary_flat", &r->node->k[1]);
}

static bst_status launch_binary(ocl_run *r)
{
    const ocl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    if (dense_f32(a) && dense_f32(b) && dense_f32(o) && suffix_broadcast(b, a)) {
        ocl_args g;
        ocl_args_begin(&g, r, r->node->k[1]);
        ocl_arg_mem(&g, a->mem);
        ocl_arg_i64(&g, (int64_t)(a->offset / 4));
        ocl_arg_mem(&g, b->mem);
        ocl_arg_i64(&g, (int64_t)(b->offset / 4));
        ocl_arg_i64(&g, ocl_numel(b));
        ocl_arg_mem(&g, o->mem);
        ocl_arg_i64(&g, (int64_t)(o->offset / 4));
        ocl_arg_i64(&g, ocl_numel(o));
        ocl_arg_i32(&g, r->node->op == BST_OP_MUL);
        bst_status st = ocl_args_end(&g, "k_binary_flat");
        return st ? st : launch_flat(r, r->node->k[1], "k_binary_flat", ocl_numel(o));
    }
    int64_t bnb[4];
    for (int d = 0; d < 4; d++)
        bnb[d] = b->ne[d] == 1 ? 0 : b->nb[d];
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, a, NULL, true);
    ocl_arg_tensor(&g, b, bnb, true);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, o->ne);
    ocl_arg_i64(&g, ocl_numel(o));
    ocl_arg_i32(&g, r->node->op == BST_OP_MUL);
    bst_status st = ocl_args_end(&g, "k_binary");
    return st ? st : launch_flat(r, r->node->k[0], "k_binary", ocl_numel(o));
}

const ocl_op_impl ocl_op_add = {"add", 2, 2, false, check_binary, ocl_one_variant, fam_elem,
                                prepare_binary, launch_binary};
const ocl_op_impl ocl_op_mul = {"mul", 2, 2, false, check_binary, ocl_one_variant, fam_elem,
                                prepare_binary, launch_binary};

/* --- scale, silu, gelu --- */

enum { UN_SCALE = 0, UN_SILU = 1, UN_GELU = 2, UN_COPY = 3 };

static bst_status check_unary(ocl_run *r)
{
    bst_status st;
    if ((st = ocl_need_float_in(r, &r->in[0], "x")) || (st = ocl_need_plain_out(r)) ||
        (st = ocl_need_same_shape(r, &r->in[0], "x")))
        return st;
    if (r->node->op == BST_OP_SCALE) {
        if (!bstc_attr(&r->node->base, BST_ATTR_SCALE))
            return ocl_fail(r, BST_ERR_INVALID_ARG, "missing attribute scale");
        if (!isfinite(bstc_attr_float(&r->node->base, BST_ATTR_SCALE, 1.0)))
            return ocl_fail(r, BST_ERR_INVALID_ARG, "scale is not finite");
    }
    return check_all_aligned(r);
}

static bst_status prepare_unary(ocl_run *r)
{
    bst_status st = ocl_kernel_create(r, OCL_FAM_ELEM, "k_unary", &r->node->k[0]);
    return st ? st : ocl_kernel_create(r, OCL_FAM_ELEM, "k_unary_flat", &r->node->k[1]);
}

/* k[0] is k_unary; k[1], when created, the flat kernel for dense f32 tensors. */
static bst_status launch_unary_op(ocl_run *r, int op)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    float scale = (float)bstc_attr_float(&r->node->base, BST_ATTR_SCALE, 1.0);
    ocl_args g;
    if (r->node->k[1] && dense_f32(x) && dense_f32(o)) {
        ocl_args_begin(&g, r, r->node->k[1]);
        ocl_arg_mem(&g, x->mem);
        ocl_arg_i64(&g, (int64_t)(x->offset / 4));
        ocl_arg_mem(&g, o->mem);
        ocl_arg_i64(&g, (int64_t)(o->offset / 4));
        ocl_arg_i64(&g, ocl_numel(o));
        ocl_arg_i32(&g, op);
        ocl_arg_f32(&g, scale);
        bst_status st = ocl_args_end(&g, "k_unary_flat");
        return st ? st : launch_flat(r, r->node->k[1], "k_unary_flat", ocl_numel(o));
    }
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, x, NULL, true);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, o->ne);
    ocl_arg_i64(&g, ocl_numel(o));
    ocl_arg_i32(&g, op);
    ocl_arg_f32(&g, scale);
    bst_status st = ocl_args_end(&g, "k_unary");
    return st ? st : launch_flat(r, r->node->k[0], "k_unary", ocl_numel(o));
}

static bst_status launch_unary(ocl_run *r)
{
    int op = r->node->op == BST_OP_SCALE  ? UN_SCALE
             : r->node->op == BST_OP_SILU ? UN_SILU
                                          : UN_GELU;
    return launch_unary_op(r, op);
}

const ocl_op_impl ocl_op_scale = {"scale", 1, 1, false, check_unary, ocl_one_variant, fam_elem,
                                  prepare_unary, launch_unary};
const ocl_op_impl ocl_op_silu = {"silu", 1, 1, false, check_unary, ocl_one_variant, fam_elem,
                                 prepare_unary, launch_unary};
const ocl_op_impl ocl_op_gelu = {"gelu", 1, 1, false, check_unary, ocl_one_variant, fam_elem,
                                 prepare_unary, launch_unary};

/* --- cast, quantize, cont --- */

static bool loadable(uint32_t dt)
{
    return ocl_is_float_in(dt) || dt == BST_DTYPE_I32 || dt == BST_DTYPE_I8;
}

typedef enum conv_kind { CONV_COPY, CONV_PLAIN, CONV_QUANT } conv_kind;

static conv_kind conv_of(const ocl_run *r)
{
    if (r->node->op == BST_OP_CONT && r->in[0].dtype == r->out.dtype)
        return CONV_COPY;
    return bstc_dtype_is_block(r->out.dtype) ? CONV_QUANT : CONV_PLAIN;
}

static bst_status check_convert(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    const bst_op op = r->node->op;
    bst_status st;
    if ((st = ocl_need_same_shape(r, x, "x")))
        return st;
    if (!loadable(x->dtype))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "x dtype %s cannot be read",
                        bstc_dtype_name(x->dtype));
    if (op == BST_OP_CONT) {
        if (x->dtype != o->dtype && !ocl_is_plain_out(o->dtype) && !bstc_dtype_is_block(o->dtype))
            return ocl_fail(r, BST_ERR_UNSUPPORTED, "cont into %s", bstc_dtype_name(o->dtype));
        return check_all_aligned(r);
    }
    int64_t want = bstc_attr_int(&r->node->base, BST_ATTR_DTYPE, -1);
    if (want != (int64_t)o->dtype)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "attribute dtype %lld does not match output %s",
                        (long long)want, bstc_dtype_name(o->dtype));
    bool block = bstc_dtype_is_block(o->dtype);
    if (op == BST_OP_CAST && (block || !ocl_is_plain_out(o->dtype)))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "cast to %s (use quantize for block types)",
                        bstc_dtype_name(o->dtype));
    if (op == BST_OP_QUANTIZE && !block)
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "quantize to %s: not a block type",
                        bstc_dtype_name(o->dtype));
    return check_all_aligned(r);
}

static uint32_t fam_convert(const ocl_run *r)
{
    return conv_of(r) == CONV_QUANT ? 1u << OCL_FAM_QUANT : 1u << OCL_FAM_ELEM;
}

static bst_status prepare_convert(ocl_run *r)
{
    switch (conv_of(r)) {
    case CONV_COPY:
        return ocl_kernel_create(r, OCL_FAM_ELEM, "k_copy", &r->node->k[0]);
    case CONV_QUANT:
        return ocl_kernel_create(r, OCL_FAM_QUANT, "k_quantize", &r->node->k[0]);
    default:
        return ocl_kernel_create(r, OCL_FAM_ELEM, "k_unary", &r->node->k[0]);
    }
}

/* Shared with set_rows, whose output may need dst's old rows first. */
bst_status ocl_launch_copy(ocl_run *r, cl_kernel k, const ocl_tensor *x, const ocl_tensor *o)
{
    uint32_t bs, bb;
    if (!bstc_dtype_geometry(o->dtype, &bs, &bb))
        return ocl_fail(r, BST_ERR_INTERNAL, "copy of an invalid dtype");
    int64_t ne[4] = {o->ne[0], o->ne[1], o->ne[2], o->ne[3] / bs};
    int64_t total = ne[0] * ne[1] * ne[2] * ne[3];
    ocl_args g;
    ocl_args_begin(&g, r, k);
    ocl_arg_tensor(&g, x, NULL, false);
    ocl_arg_tensor(&g, o, NULL, false);
    ocl_arg_long4(&g, ne);
    ocl_arg_i64(&g, total);
    ocl_arg_i32(&g, (int32_t)bb);
    bst_status st = ocl_args_end(&g, "k_copy");
    return st ? st : launch_flat(r, k, "k_copy", total);
}

static bst_status launch_convert(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    switch (conv_of(r)) {
    case CONV_COPY:
        return ocl_launch_copy(r, r->node->k[0], x, o);
    case CONV_QUANT: {
        int64_t blocks = ocl_rows(o) * (o->ne[3] / 32);
        ocl_args g;
        ocl_args_begin(&g, r, r->node->k[0]);
        ocl_arg_tensor(&g, x, NULL, true);
        ocl_arg_tensor(&g, o, NULL, true);
        ocl_arg_long4(&g, o->ne);
        ocl_arg_i64(&g, blocks);
        bst_status st = ocl_args_end(&g, "k_quantize");
        return st ? st : launch_flat(r, r->node->k[0], "k_quantize", blocks);
    }
    default:
        return launch_unary_op(r, UN_COPY);
    }
}

const ocl_op_impl ocl_op_cast = {"cast", 1, 1, false, check_convert, ocl_one_variant,
                                 fam_convert, prepare_convert, launch_convert};
const ocl_op_impl ocl_op_quantize = {"quantize", 1, 1, false, check_convert, ocl_one_variant,
                                     fam_convert, prepare_convert, launch_convert};
const ocl_op_impl ocl_op_cont = {"cont", 1, 1, false, check_convert, ocl_one_variant,
                                 fam_convert, prepare_convert, launch_convert};

/* --- concat --- */

static int concat_axis(const ocl_run *r)
{
    int64_t axis = bstc_attr_int(&r->node->base, BST_ATTR_AXIS, -1);
    return (int)(axis + (BST_MAX_DIMS - (int64_t)r->out.rank)); /* in padded dims */
}

static bst_status check_concat(ocl_run *r)
{
    const ocl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    bst_status st;
    if ((st = ocl_need_float_in(r, a, "a")) || (st = ocl_need_float_in(r, b, "b")) ||
        (st = ocl_need_plain_out(r)))
        return st;
    int64_t axis = bstc_attr_int(&r->node->base, BST_ATTR_AXIS, -1);
    if (a->rank != o->rank || b->rank != o->rank || o->rank == 0 || axis < 0 ||
        axis >= (int64_t)o->rank)
        return ocl_fail(r, BST_ERR_SHAPE, "concat of rank %u and %u into %u along axis %lld",
                        a->rank, b->rank, o->rank, (long long)axis);
    int ax = concat_axis(r);
    for (int d = 0; d < 4; d++) {
        int64_t want = d == ax ? a->ne[d] + b->ne[d] : a->ne[d];
        if ((d != ax && b->ne[d] != a->ne[d]) || o->ne[d] != want)
            return ocl_fail(r, BST_ERR_SHAPE, "concat shapes disagree in dim %d",
                            d - (4 - (int)o->rank));
    }
    return check_all_aligned(r);
}

static bst_status prepare_concat(ocl_run *r)
{
    return ocl_kernel_create(r, OCL_FAM_ELEM, "k_concat", &r->node->k[0]);
}

static bst_status launch_concat(ocl_run *r)
{
    const ocl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    int ax = concat_axis(r);
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, a, NULL, true);
    ocl_arg_tensor(&g, b, NULL, true);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, o->ne);
    ocl_arg_i64(&g, ocl_numel(o));
    ocl_arg_i32(&g, ax);
    ocl_arg_i64(&g, a->ne[ax]);
    bst_status st = ocl_args_end(&g, "k_concat");
    return st ? st : launch_flat(r, r->node->k[0], "k_concat", ocl_numel(o));
}

const ocl_op_impl ocl_op_concat = {"concat", 2, 2, false, check_concat, ocl_one_variant,
                                   fam_elem, prepare_concat, launch_concat};

/* --- view, reshape, permute, transpose --- */

static bst_status check_alias(ocl_run *r)
{
    const bst_tensor_desc *x = &r->node->in[0], *o = &r->node->out;
    uint64_t extra = 0;
    if (r->node->op == BST_OP_VIEW) {
        int64_t off = bstc_attr_int(&r->node->base, BST_ATTR_OFFSET, 0);
        if (off < 0)
            return ocl_fail(r, BST_ERR_INVALID_ARG, "view offset %lld is negative",
                            (long long)off);
        extra = (uint64_t)off;
    }
    if (x->dtype != o->dtype)
        return ocl_fail(r, BST_ERR_SHAPE, "an alias cannot change the dtype");
    if (o->binding != x->binding || o->offset != x->offset + extra)
        return ocl_fail(r, BST_ERR_INVALID_ARG,
                        "output (binding %u, offset %llu) does not alias input (binding %u, "
                        "offset %llu + %llu)",
                        o->binding, (unsigned long long)o->offset, x->binding,
                        (unsigned long long)x->offset, (unsigned long long)extra);
    return BST_OK;
}

static uint32_t fam_none(const ocl_run *r)
{
    (void)r;
    return 0;
}

static bst_status no_kernel(ocl_run *r)
{
    (void)r;
    return BST_OK;
}

const ocl_op_impl ocl_op_view = {"view", 1, 1, true, check_alias, ocl_one_variant, fam_none,
                                 no_kernel, no_kernel};
const ocl_op_impl ocl_op_reshape = {"reshape", 1, 1, true, check_alias, ocl_one_variant,
                                    fam_none, no_kernel, no_kernel};
const ocl_op_impl ocl_op_permute = {"permute", 1, 1, true, check_alias, ocl_one_variant,
                                    fam_none, no_kernel, no_kernel};
const ocl_op_impl ocl_op_transpose = {"transpose", 1, 1, true, check_alias, ocl_one_variant,
                                      fam_none, no_kernel, no_kernel};
