/*
 * Ops that index rows: get_rows (any table dtype, quantized tables dequantized on the fly),
 * set_rows (into f32/f16/bf16 or block-type states; a pre-pass marks bad ids and rows a later
 * id overwrites, so writes never race and the last one wins) and argmax. Bad ids raise the
 * executable's error flag instead of touching memory.
 */
#include "ocl_backend.h"

#include <string.h>

#define ROW_WG 64

static bool loadable(uint32_t dt)
{
    return ocl_is_float_in(dt) || dt == BST_DTYPE_I32 || dt == BST_DTYPE_I8;
}

static bst_status check_aligned_all(ocl_run *r)
{
    bst_status st;
    for (uint32_t i = 0; i < r->node->n_inputs; i++)
        if ((st = ocl_check_aligned(r, &r->in[i], "input")) != BST_OK)
            return st;
    return ocl_check_aligned(r, &r->out, "output");
}

static bst_status launch_flat(ocl_run *r, cl_kernel k, const char *name, int64_t items)
{
    size_t local = ROW_WG;
    size_t global = ocl_round_up(r, items, local);
    return ocl_enqueue(r, k, name, 1, &global, &local);
}

/* --- get_rows --- */

static bst_status check_get_rows(ocl_run *r)
{
    const ocl_tensor *t = &r->in[0], *ids = &r->in[1], *o = &r->out;
    if (!loadable(t->dtype))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "table dtype %s", bstc_dtype_name(t->dtype));
    bst_status st = ocl_need_plain_out(r);
    if (st != BST_OK)
        return st;
    if (t->rank != 2)
        return ocl_fail(r, BST_ERR_SHAPE, "table must be [R, C], got rank %u", t->rank);
    if (ids->dtype != BST_DTYPE_I32 || ids->rank > 3)
        return ocl_fail(r, BST_ERR_SHAPE, "ids must be i32 of rank 0..3");
    if (o->rank != ids->rank + 1 || o->ne[3] != t->ne[3])
        return ocl_fail(r, BST_ERR_SHAPE, "output must be [ids..., %lld]", (long long)t->ne[3]);
    for (int d = 0; d < 3; d++)
        if (o->ne[d] != ids->ne[d + 1])
            return ocl_fail(r, BST_ERR_SHAPE, "output dims differ from ids' dims");
    if (t->ne[2] > INT32_MAX)
        return ocl_fail(r, BST_ERR_OVERFLOW, "table has more rows than an i32 id can name");
    return check_aligned_all(r);
}

static uint32_t fam_rows(const ocl_run *r)
{
    (void)r;
    return 1u << OCL_FAM_ROWS;
}

static bst_status prepare_get_rows(ocl_run *r)
{
    return ocl_kernel_create(r, OCL_FAM_ROWS, "k_get_rows", &r->node->k[0]);
}

static bst_status launch_get_rows(ocl_run *r)
{
    const ocl_tensor *t = &r->in[0], *ids = &r->in[1], *o = &r->out;
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, t, NULL, true);
    ocl_arg_tensor(&g, ids, NULL, false);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, o->ne);
    ocl_arg_i64(&g, ocl_numel(o));
    ocl_arg_i64(&g, t->ne[2]);
    ocl_arg_mem(&g, r->flag);
    bst_status st = ocl_args_end(&g, "k_get_rows");
    return st ? st : launch_flat(r, r->node->k[0], "k_get_rows", ocl_numel(o));
}

const ocl_op_impl ocl_op_get_rows = {"get_rows", 2, 2, false, check_get_rows, ocl_one_variant,
                                     fam_rows, prepare_get_rows, launch_get_rows};

/* --- set_rows --- */

/* Padded index of dst's (and src's) row dim. */
static int row_dim(const ocl_run *r) { return BST_MAX_DIMS - (int)r->in[0].rank; }

static bst_status check_set_rows(ocl_run *r)
{
    const ocl_tensor *dst = &r->in[0], *src = &r->in[1], *ids = &r->in[2], *o = &r->out;
    if ((!ocl_is_plain_out(dst->dtype) && !bstc_dtype_is_block(dst->dtype)) || !loadable(src->dtype))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "set_rows of %s into %s",
                        bstc_dtype_name(src->dtype), bstc_dtype_name(dst->dtype));
    if (dst->rank < 2 || src->rank != dst->rank)
        return ocl_fail(r, BST_ERR_SHAPE,
                        "dst (rank %u) and src (rank %u) must have the same rank >= 2", dst->rank,
                        src->rank);
    if (ids->dtype != BST_DTYPE_I32 || ids->rank != 1)
        return ocl_fail(r, BST_ERR_SHAPE, "ids must be i32[N]");
    int p = row_dim(r);
    if (src->ne[p] != ids->ne[3])
        return ocl_fail(r, BST_ERR_SHAPE, "src has %lld rows but ids has %lld",
                        (long long)src->ne[p], (long long)ids->ne[3]);
    for (int d = 0; d < 4; d++)
        if (d != p && src->ne[d] != dst->ne[d])
            return ocl_fail(r, BST_ERR_SHAPE, "src and dst differ outside the row dim");
    if (o->dtype != dst->dtype || o->rank != dst->rank || !ocl_same_shape(o, dst))
        return ocl_fail(r, BST_ERR_SHAPE, "output must have dst's type");
    if (dst->ne[p] > INT32_MAX)
        return ocl_fail(r, BST_ERR_OVERFLOW, "dst has more rows than an i32 id can name");
    return check_aligned_all(r);
}

static uint32_t fam_set_rows(const ocl_run *r)
{
    return (1u << OCL_FAM_ROWS) | (1u << OCL_FAM_ELEM) |
           (bstc_dtype_is_block(r->out.dtype) ? 1u << OCL_FAM_QUANT : 0u);
}

static bst_status prepare_set_rows(ocl_run *r)
{
    ocl_node *n = r->node;
    bool block = bstc_dtype_is_block(r->out.dtype);
    bst_status st;
    if ((st = ocl_kernel_create(r, OCL_FAM_ROWS, "k_set_rows_prep", &n->k[0])) ||
        (st = ocl_kernel_create(r, block ? OCL_FAM_QUANT : OCL_FAM_ROWS,
                                block ? "k_set_rows_q" : "k_set_rows", &n->k[1])) ||
        (st = ocl_kernel_create(r, OCL_FAM_ELEM, "k_copy", &n->k[2])))
        return st;
    /* skip[n] for every row of src's bound */
    int64_t rows = r->in[2].ne[3] > 0 ? r->in[2].ne[3] : 1;
    cl_int err = CL_SUCCESS;
    n->aux = clCreateBuffer(r->dev->context, CL_MEM_READ_WRITE, (size_t)rows * sizeof(cl_int), NULL,
                            &err);
    if (err != CL_SUCCESS) {
        n->aux = NULL;
        return ocl_fail(r, ocl_status_of(err), "clCreateBuffer(set_rows skip list): %s",
                        ocl_cl_error_name(err));
    }
    return BST_OK;
}

/* The output is dst itself (the planner aliases them); otherwise dst's rows are copied first so
 * the result is still "dst with these rows replaced". */
static bool out_is_dst(const ocl_run *r)
{
    const ocl_tensor *dst = &r->in[0], *o = &r->out;
    if (o->mem != dst->mem || o->offset != dst->offset)
        return false;
    for (int d = 0; d < 4; d++)
        if (o->ne[d] > 1 && o->nb[d] != dst->nb[d])
            return false;
    return true;
}

static bst_status launch_set_rows(ocl_run *r)
{
    const ocl_tensor *dst = &r->in[0], *src = &r->in[1], *ids = &r->in[2], *o = &r->out;
    ocl_node *n = r->node;
    bst_status st;
    if (r->mode == OCL_MODE_EXECUTE && !out_is_dst(r)) {
        bool saved = r->set_shapes;
        r->set_shapes = true; /* the copy's arguments were never preset for this layout */
        st = ocl_launch_copy(r, n->k[2], dst, o);
        r->set_shapes = saved;
        if (st != BST_OK)
            return st;
    }
    int64_t n_ids = ids->ne[3];
    if (n_ids == 0)
        return BST_OK;
    int p = row_dim(r);
    ocl_args g;
    ocl_args_begin(&g, r, n->k[0]);
    ocl_arg_mem(&g, ids->mem);
    ocl_arg_i64(&g, (int64_t)ids->offset);
    ocl_arg_i64(&g, ids->nb[3]);
    ocl_arg_i64(&g, n_ids);
    ocl_arg_i64(&g, dst->ne[p]);
    ocl_arg_mem(&g, n->aux);
    ocl_arg_mem(&g, r->flag);
    if ((st = ocl_args_end(&g, "k_set_rows_prep")) ||
        (st = launch_flat(r, n->k[0], "k_set_rows_prep", n_ids)))
        return st;

    bool block = bstc_dtype_is_block(o->dtype);
    int64_t items = block ? ocl_rows(src) * (src->ne[3] / 32) : ocl_numel(src);
    const char *name = block ? "k_set_rows_q" : "k_set_rows";
    ocl_args_begin(&g, r, n->k[1]);
    ocl_arg_tensor(&g, src, NULL, true);
    ocl_arg_mem(&g, ids->mem);
    ocl_arg_i64(&g, (int64_t)ids->offset);
    ocl_arg_i64(&g, ids->nb[3]);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, src->ne);
    ocl_arg_i64(&g, items);
    ocl_arg_i32(&g, p);
    ocl_arg_mem(&g, n->aux);
    if ((st = ocl_args_end(&g, name)))
        return st;
    return items > 0 ? launch_flat(r, n->k[1], name, items) : BST_OK;
}

const ocl_op_impl ocl_op_set_rows = {"set_rows", 3, 3, false, check_set_rows, ocl_one_variant,
                                     fam_set_rows, prepare_set_rows, launch_set_rows};

/* --- argmax --- */

static bst_status check_argmax(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    bst_status st = ocl_need_float_in(r, x, "x");
    if (st != BST_OK)
        return st;
    if (o->dtype != BST_DTYPE_I32)
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "argmax writes i32, not %s",
                        bstc_dtype_name(o->dtype));
    if (x->rank < 1 || o->rank != x->rank - 1)
        return ocl_fail(r, BST_ERR_SHAPE, "output rank must be x's rank - 1");
    for (int d = 0; d < 3; d++)
        if (o->ne[d + 1] != x->ne[d])
            return ocl_fail(r, BST_ERR_SHAPE, "output dims must be x's outer dims");
    if (x->ne[3] == 0)
        return ocl_fail(r, BST_ERR_SHAPE, "argmax over an empty dim");
    if (x->ne[3] > INT32_MAX)
        return ocl_fail(r, BST_ERR_OVERFLOW, "argmax index does not fit i32");
    return check_aligned_all(r);
}

static bst_status prepare_argmax(ocl_run *r)
{
    return ocl_kernel_create(r, OCL_FAM_ROWS, "k_argmax", &r->node->k[0]);
}

static bst_status launch_argmax(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, x, NULL, true);
    ocl_arg_tensor(&g, o, NULL, false);
    ocl_arg_long4(&g, x->ne);
    ocl_arg_local(&g, ROW_WG * sizeof(cl_float));
    ocl_arg_local(&g, ROW_WG * sizeof(cl_int));
    bst_status st = ocl_args_end(&g, "k_argmax");
    if (st != BST_OK)
        return st;
    size_t local = ROW_WG;
    size_t global = ocl_round_up(r, ocl_rows(x) * ROW_WG, local);
    return ocl_enqueue(r, r->node->k[0], "k_argmax", 1, &global, &local);
}

const ocl_op_impl ocl_op_argmax = {"argmax", 1, 1, false, check_argmax, ocl_one_variant,
                                   fam_rows, prepare_argmax, launch_argmax};
