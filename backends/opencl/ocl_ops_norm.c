/*
 * Row-reduction ops: rms_norm, layer_norm and softmax (one 64-wide work-group per row), and rope
 * (one work-item per pair; its frequency table is computed in double on the host at compile
 * time and kept on the device as float pairs, see kernels/norm.cl).
 */
#include "ocl_backend.h"

#include <math.h>

#define NORM_WG 64

static bst_status check_aligned_all(ocl_run *r)
{
    bst_status st;
    for (uint32_t i = 0; i < r->node->n_inputs; i++)
        if ((st = ocl_check_aligned(r, &r->in[i], "input")) != BST_OK)
            return st;
    return ocl_check_aligned(r, &r->out, "output");
}

static bst_status need_like_x(ocl_run *r)
{
    bst_status st;
    if ((st = ocl_need_float_in(r, &r->in[0], "x")) || (st = ocl_need_plain_out(r)) ||
        (st = ocl_need_same_shape(r, &r->in[0], "x")))
        return st;
    return BST_OK;
}

static uint32_t fam_norm(const ocl_run *r)
{
    (void)r;
    return 1u << OCL_FAM_NORM;
}

static bst_status launch_rows(ocl_run *r, cl_kernel k, const char *name, int64_t rows)
{
    size_t local = NORM_WG;
    size_t global = ocl_round_up(r, rows * NORM_WG, local);
    return ocl_enqueue(r, k, name, 1, &global, &local);
}

/* --- rms_norm, layer_norm --- */

static bst_status check_norm(ocl_run *r)
{
    bst_status st = need_like_x(r);
    if (st != BST_OK)
        return st;
    if (r->in[0].rank == 0)
        return ocl_fail(r, BST_ERR_SHAPE, "x must have at least one dim");
    if (!bstc_attr(&r->node->base, BST_ATTR_EPS))
        return ocl_fail(r, BST_ERR_INVALID_ARG, "missing attribute eps");
    double e = bstc_attr_float(&r->node->base, BST_ATTR_EPS, 0.0);
    if (!isfinite(e) || e < 0)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "eps %g must be finite and >= 0", e);
    return check_aligned_all(r);
}

static bst_status prepare_norm(ocl_run *r)
{
    return ocl_kernel_create(r, OCL_FAM_NORM, "k_norm", &r->node->k[0]);
}

static bst_status launch_norm(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, x, NULL, true);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, x->ne);
    ocl_arg_i32(&g, r->node->op == BST_OP_LAYER_NORM);
    ocl_arg_f32(&g, (float)bstc_attr_float(&r->node->base, BST_ATTR_EPS, 0.0));
    ocl_arg_local(&g, NORM_WG * sizeof(cl_float));
    bst_status st = ocl_args_end(&g, "k_norm");
    return st ? st : launch_rows(r, r->node->k[0], "k_norm", ocl_rows(x));
}

const ocl_op_impl ocl_op_rms_norm = {"rms_norm", 1, 1, false, check_norm, ocl_one_variant,
                                     fam_norm, prepare_norm, launch_norm};
const ocl_op_impl ocl_op_layer_norm = {"layer_norm", 1, 1, false, check_norm, ocl_one_variant,
                                       fam_norm, prepare_norm, launch_norm};

/* --- softmax --- */

static bst_status check_softmax(ocl_run *r)
{
    bst_status st = need_like_x(r);
    if (st != BST_OK)
        return st;
    if (r->in[0].rank == 0)
        return ocl_fail(r, BST_ERR_SHAPE, "x must have at least one dim");
    if (!isfinite(bstc_attr_float(&r->node->base, BST_ATTR_SCALE, 1.0)))
        return ocl_fail(r, BST_ERR_INVALID_ARG, "scale is not finite");
    if (r->node->n_inputs == 2) {
        const ocl_tensor *x = &r->in[0], *m = &r->in[1];
        if ((st = ocl_need_float_in(r, m, "mask")) != BST_OK)
            return st;
        if (m->rank > x->rank)
            return ocl_fail(r, BST_ERR_SHAPE, "mask has more dims than x");
        for (int d = 0; d < 4; d++)
            if (m->ne[d] != 1 && m->ne[d] != x->ne[d])
                return ocl_fail(r, BST_ERR_SHAPE, "mask dim of %lld does not broadcast to %lld",
                                (long long)m->ne[d], (long long)x->ne[d]);
    }
    return check_aligned_all(r);
}

static bst_status prepare_softmax(ocl_run *r)
{
    return ocl_kernel_create(r, OCL_FAM_NORM, "k_softmax", &r->node->k[0]);
}

static bst_status launch_softmax(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *o = &r->out;
    bool has_mask = r->node->n_inputs == 2;
    /* Without a mask the kernel never reads it; x stands in for the buffer argument. */
    const ocl_tensor *m = has_mask ? &r->in[1] : x;
    int64_t mnb[4];
    for (int d = 0; d < 4; d++)
        mnb[d] = has_mask && m->ne[d] != 1 ? m->nb[d] : 0;
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, x, NULL, true);
    ocl_arg_tensor(&g, m, mnb, true);
    ocl_arg_i32(&g, has_mask);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, x->ne);
    ocl_arg_f32(&g, (float)bstc_attr_float(&r->node->base, BST_ATTR_SCALE, 1.0));
    ocl_arg_local(&g, NORM_WG * sizeof(cl_float));
    bst_status st = ocl_args_end(&g, "k_softmax");
    return st ? st : launch_rows(r, r->node->k[0], "k_softmax", ocl_rows(x));
}

const ocl_op_impl ocl_op_softmax = {"softmax", 1, 2, false, check_softmax, ocl_one_variant,
                                    fam_norm, prepare_softmax, launch_softmax};

/* --- rope --- */

static bst_status check_rope(ocl_run *r)
{
    bst_status st = need_like_x(r);
    if (st != BST_OK)
        return st;
    const ocl_tensor *x = &r->in[0], *pos = &r->in[1];
    if (x->rank != 3)
        return ocl_fail(r, BST_ERR_SHAPE, "x must be [T, H, D], got rank %u", x->rank);
    if (pos->dtype != BST_DTYPE_I32 || pos->rank != 1 || pos->ne[3] != x->ne[1])
        return ocl_fail(r, BST_ERR_SHAPE, "pos must be i32[T] with T = %lld",
                        (long long)x->ne[1]);
    const ocl_node *n = r->node;
    if (!bstc_attr(&n->base, BST_ATTR_ROPE_MODE) || !bstc_attr(&n->base, BST_ATTR_ROPE_THETA) ||
        !bstc_attr(&n->base, BST_ATTR_ROPE_DIMS))
        return ocl_fail(r, BST_ERR_INVALID_ARG, "needs rope_mode, rope_theta and rope_dims");
    int64_t mode = bstc_attr_int(&n->base, BST_ATTR_ROPE_MODE, -1);
    double theta = bstc_attr_float(&n->base, BST_ATTR_ROPE_THETA, 0.0);
    int64_t dims = bstc_attr_int(&n->base, BST_ATTR_ROPE_DIMS, 0);
    if (mode != 0 && mode != 2)
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "rope mode %lld (0 normal, 2 neox)",
                        (long long)mode);
    if (!isfinite(theta) || theta <= 0)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "rope theta %g must be positive", theta);
    if (dims < 2 || dims % 2 != 0 || dims > x->ne[3] || dims > INT32_MAX)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "rope dims %lld must be even, 2..%lld",
                        (long long)dims, (long long)x->ne[3]);
    return check_aligned_all(r);
}

static bst_status prepare_rope(ocl_run *r)
{
    ocl_node *n = r->node;
    bst_status st = ocl_kernel_create(r, OCL_FAM_NORM, "k_rope", &n->k[0]);
    if (st != BST_OK)
        return st;
    double theta = bstc_attr_float(&n->base, BST_ATTR_ROPE_THETA, 10000.0);
    int64_t dims = bstc_attr_int(&n->base, BST_ATTR_ROPE_DIMS, 2), half = dims / 2;
    cl_float2 *tab = ocl_host->alloc((size_t)half * sizeof *tab, 64);
    if (!tab)
        return ocl_fail(r, BST_ERR_OUT_OF_MEMORY, "rope frequency table");
    for (int64_t i = 0; i < half; i++) {
        double f = pow(theta, -2.0 * (double)i / (double)dims);
        float hi = (float)f;
        tab[i].s[0] = hi;
        tab[i].s[1] = (float)(f - (double)hi);
    }
    cl_int err = CL_SUCCESS;
    n->aux = clCreateBuffer(r->dev->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                            (size_t)half * sizeof *tab, tab, &err);
    ocl_host->free(tab);
    if (err != CL_SUCCESS) {
        n->aux = NULL;
        return ocl_fail(r, ocl_status_of(err), "clCreateBuffer(rope table): %s",
                        ocl_cl_error_name(err));
    }
    return BST_OK;
}

static bst_status launch_rope(ocl_run *r)
{
    const ocl_tensor *x = &r->in[0], *pos = &r->in[1], *o = &r->out;
    int64_t pairs = (x->ne[3] + 1) / 2, total = x->ne[1] * x->ne[2] * pairs;
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, x, NULL, true);
    ocl_arg_mem(&g, pos->mem);
    ocl_arg_i64(&g, (int64_t)pos->offset);
    ocl_arg_i64(&g, pos->nb[3]);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_long4(&g, x->ne);
    ocl_arg_i64(&g, total);
    ocl_arg_mem(&g, r->node->aux);
    ocl_arg_i32(&g, (int32_t)bstc_attr_int(&r->node->base, BST_ATTR_ROPE_DIMS, 2));
    ocl_arg_i32(&g, bstc_attr_int(&r->node->base, BST_ATTR_ROPE_MODE, 0) == 2);
    bst_status st = ocl_args_end(&g, "k_rope");
    if (st != BST_OK)
        return st;
    size_t local = NORM_WG;
    size_t global = ocl_round_up(r, total, local);
    return ocl_enqueue(r, r->node->k[0], "k_rope", 1, &global, &local);
}

const ocl_op_impl ocl_op_rope = {"rope", 2, 2, false, check_rope, ocl_one_variant, fam_norm,
                                 prepare_rope, launch_rope};
