/*
 * Fused attention (kernels/attention.cl): q[T,Hq,D], k[S,Hkv,D], v[S,Hkv,D] (usually f16 or f32
 * views of the KV cache), optional mask f32[T,S], attrs SCALE, CAUSAL, WINDOW -> [T,Hq,D].
 * Offered only where the device says fused ops are wanted (ocl_device.offer_fused).
 */
#include "ocl_backend.h"

#include <math.h>

#define ATT_WG 64
#define ATT_MAX_D (ATT_WG * 4) /* kernels/attention.cl: ATT_MAX_D_PER_ITEM per work-item */

static bst_status check_attention(ocl_run *r)
{
    if (!r->dev->offer_fused)
        return ocl_fail(r, BST_ERR_UNSUPPORTED,
                        "fused ops are not offered on this device (BASTION_OPENCL_FUSED)");
    const ocl_tensor *q = &r->in[0], *k = &r->in[1], *v = &r->in[2], *o = &r->out;
    bst_status st;
    if ((st = ocl_need_float_in(r, q, "q")) || (st = ocl_need_float_in(r, k, "k")) ||
        (st = ocl_need_float_in(r, v, "v")) || (st = ocl_need_plain_out(r)))
        return st;
    if (q->rank != 3 || k->rank != 3 || v->rank != 3 || o->rank != 3)
        return ocl_fail(r, BST_ERR_SHAPE, "q, k, v and the output must be [T, H, D]");
    int64_t T = q->ne[1], Hq = q->ne[2], D = q->ne[3], S = k->ne[1], Hkv = k->ne[2];
    if (k->ne[3] != D || v->ne[3] != D || v->ne[1] != S || v->ne[2] != Hkv)
        return ocl_fail(r, BST_ERR_SHAPE, "k and v must be [S, Hkv, %lld] alike", (long long)D);
    if (Hkv == 0 ? Hq != 0 : Hq % Hkv != 0)
        return ocl_fail(r, BST_ERR_SHAPE, "%lld query heads do not group over %lld kv heads",
                        (long long)Hq, (long long)Hkv);
    if (o->ne[1] != T || o->ne[2] != Hq || o->ne[3] != D)
        return ocl_fail(r, BST_ERR_SHAPE, "output must be [T, Hq, D] like q");
    if (D > ATT_MAX_D)
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "head dim %lld > %d", (long long)D, ATT_MAX_D);
    if (r->node->n_inputs == 4) {
        const ocl_tensor *m = &r->in[3];
        if ((st = ocl_need_float_in(r, m, "mask")))
            return st;
        if (m->rank > 2 || (m->ne[2] != 1 && m->ne[2] != T) || (m->ne[3] != 1 && m->ne[3] != S))
            return ocl_fail(r, BST_ERR_SHAPE, "mask must broadcast to [T, S]");
    }
    double scale = bstc_attr_float(&r->node->base, BST_ATTR_SCALE, 1.0 / sqrt((double)(D ? D : 1)));
    if (!isfinite(scale))
        return ocl_fail(r, BST_ERR_INVALID_ARG, "scale is not finite");
    if (bstc_attr_int(&r->node->base, BST_ATTR_WINDOW, 0) < 0)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "window is negative");
    for (uint32_t i = 0; i < r->node->n_inputs; i++)
        if ((st = ocl_check_aligned(r, &r->in[i], "input")))
            return st;
    return ocl_check_aligned(r, o, "output");
}

static uint32_t fam_attention(const ocl_run *r)
{
    (void)r;
    return 1u << OCL_FAM_ATTN;
}

static bst_status prepare_attention(ocl_run *r)
{
    return ocl_kernel_create(r, OCL_FAM_ATTN, "k_attention", &r->node->k[0]);
}

static bst_status launch_attention(ocl_run *r)
{
    const ocl_tensor *q = &r->in[0], *k = &r->in[1], *v = &r->in[2], *o = &r->out;
    bool has_mask = r->node->n_inputs == 4;
    const ocl_tensor *m = has_mask ? &r->in[3] : q;
    int64_t mnb[4] = {0, 0, 0, 0};
    if (has_mask)
        for (int d = 2; d < 4; d++)
            mnb[d] = m->ne[d] != 1 ? m->nb[d] : 0;
    int64_t T = q->ne[1], Hq = q->ne[2], D = q->ne[3], S = k->ne[1], Hkv = k->ne[2];
    double scale = bstc_attr_float(&r->node->base, BST_ATTR_SCALE, 1.0 / sqrt((double)(D ? D : 1)));
    ocl_args g;
    ocl_args_begin(&g, r, r->node->k[0]);
    ocl_arg_tensor(&g, q, NULL, true);
    ocl_arg_tensor(&g, k, NULL, true);
    ocl_arg_tensor(&g, v, NULL, true);
    ocl_arg_tensor(&g, m, mnb, true);
    ocl_arg_i32(&g, has_mask);
    ocl_arg_tensor(&g, o, NULL, true);
    ocl_arg_i64(&g, T);
    ocl_arg_i64(&g, Hq);
    ocl_arg_i64(&g, D);
    ocl_arg_i64(&g, S);
    ocl_arg_i64(&g, Hkv ? Hq / Hkv : 1);
    ocl_arg_f32(&g, (float)scale);
    ocl_arg_i32(&g, bstc_attr_int(&r->node->base, BST_ATTR_CAUSAL, 0) != 0);
    ocl_arg_i64(&g, bstc_attr_int(&r->node->base, BST_ATTR_WINDOW, 0));
    ocl_arg_local(&g, (size_t)(D ? D : 1) * sizeof(cl_float));
    ocl_arg_local(&g, ATT_WG * sizeof(cl_float));
    ocl_arg_local(&g, ATT_WG * sizeof(cl_float));
    bst_status st = ocl_args_end(&g, "k_attention");
    if (st != BST_OK)
        return st;
    size_t local = ATT_WG;
    size_t global = ocl_round_up(r, T * Hq * ATT_WG, local);
    return ocl_enqueue(r, r->node->k[0], "k_attention", 1, &global, &local);
}

const ocl_op_impl ocl_op_attention = {"attention", 3, 4, false, check_attention,
                                      ocl_one_variant, fam_attention, prepare_attention,
                                      launch_attention};
