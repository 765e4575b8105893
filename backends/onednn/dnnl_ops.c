/*
 * The ops the oneDNN backend runs, and the oneDNN primitives each becomes.
 *
 *  - MATMUL a[...,M,K] . b[...,N,K]^T: batch dims are merged into one, then b's batch is
 *    broadcast (Bb == 1), matched (Bb == Ba) or grouped (Ba = g * Bb, as GQA: expressed as a 4-D
 *    matmul [Bb, g, M, K] x [Bb, 1, K, N]). Variants by b's dtype:
 *      dnnl_matmul_f32   f32 weights, f32 compute, tensors used in place with their strides;
 *      dnnl_matmul_bf16  bf16 weights, a rounded to bf16 (round to nearest even), f32 output;
 *                        also q4_0/q4_1/q8_0 weights by default: dequantized once to bf16 rows
 *                        by prepare_weight (or at every call for a native-layout weight);
 *      dnnl_matmul_s8    (BASTION_ONEDNN_QMATMUL=s8) q4_0/q4_1/q8_0 weights as s8 rows with a per-row scale (done once by
 *                        prepare_weight, or at every call for a native-layout weight), a
 *                        quantized per row to s8, s8 x s8 -> s32 in oneDNN, then the plugin's
 *                        epilogue multiplies by both scales.
 *  - SILU (swish, alpha 1) and GELU (gelu_tanh): eltwise.
 *  - ADD, MUL: binary, b broadcast (oneDNN's broadcast is exactly "dim equals a's or is 1").
 *  - SOFTMAX(x [, mask]) attr SCALE: binary add (x scaled through the src0 scale attribute) or a
 *    scaling reorder into the output, then softmax in place; rows whose every position is -inf
 *    (all masked) come out of oneDNN as NaN and are set to zeros, as the op requires.
 *  - LAYER_NORM: layer normalization without scale/shift (reorder first when the output's layout
 *    differs from the input's).
 * RMS_NORM is not claimed: oneDNN 2.6 has no RMS normalization (layer normalization always
 * subtracts the mean), and composing it from other primitives would not be one oneDNN kernel.
 * Every op writes f32.
 */
#include "dnnl_backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { ST_REORDER = 1, ST_ELTWISE, ST_BINARY, ST_SOFTMAX, ST_LNORM, ST_MATMUL };
enum { MM_F32 = 0, MM_BF16, MM_S8, MM_QBF16 };

const char *dnnl_op_name(uint32_t op)
{
    switch (op) {
    case BST_OP_MATMUL: return "matmul";
    case BST_OP_SILU: return "silu";
    case BST_OP_GELU: return "gelu";
    case BST_OP_ADD: return "add";
    case BST_OP_MUL: return "mul";
    case BST_OP_SOFTMAX: return "softmax";
    case BST_OP_LAYER_NORM: return "layer_norm";
    default: return NULL;
    }
}

static bool is_plain_float(uint32_t dt)
{
    return dt == BST_DTYPE_F32 || dt == BST_DTYPE_F16 || dt == BST_DTYPE_BF16;
}

static dnnl_data_type_t dt_of(uint32_t dt)
{
    switch (dt) {
    case BST_DTYPE_F32: return dnnl_f32;
    case BST_DTYPE_F16: return dnnl_f16;
    case BST_DTYPE_BF16: return dnnl_bf16;
    default: return dnnl_data_type_undef;
    }
}

static int64_t esize(uint32_t dt)
{
    uint32_t bs = 1, bb = 4;
    dnnl_dtype_geometry(dt, &bs, &bb);
    return bs == 1 ? (int64_t)bb : 1;
}

/* Strides oneDNN can address: non-negative whole elements. */
static bst_status need_elem_strides(dnnl_run *r, const dnnl_tensor *t, const char *what)
{
    int64_t es = esize(t->dtype);
    for (int d = 0; d < 4; d++)
        if (t->ne[d] > 1 && (t->nb[d] < 0 || t->nb[d] % es != 0))
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "%s stride %lld is not whole elements", what,
                              (long long)t->nb[d]);
    return BST_OK;
}

static bool same_dims(const dnnl_tensor *a, const dnnl_tensor *b)
{
    for (int d = 0; d < 4; d++)
        if (a->ne[d] != b->ne[d])
            return false;
    return true;
}

/* Memory descriptor of the innermost `nd` dims of t (dims padded to 4), as `dt`. Size-1 dims
 * get a canonical stride so that equal layouts compare equal. */
static bst_status md_of(dnnl_run *r, const dnnl_tensor *t, int nd, dnnl_data_type_t dt,
                        dnnl_memory_desc_t *md, const char *what)
{
    dnnl_dims_t dims, strides;
    int64_t es = esize(t->dtype), inner = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int src = 4 - nd + i;
        dims[i] = t->ne[src];
        strides[i] = t->ne[src] == 1 ? inner : t->nb[src] / es;
        int64_t span = strides[i] * dims[i];
        inner = span > inner ? span : inner;
    }
    return dnnl_rcheck(r, dnnl_memory_desc_init_by_strides(md, nd, dims, dt, strides), what);
}

static int rank_of(const dnnl_tensor *t) { return t->rank ? (int)t->rank : 1; }

/* --- checks --- */

static bst_status check_matmul(dnnl_run *r)
{
    const dnnl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    if (a->dtype != BST_DTYPE_F32)
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "a must be f32, not %s",
                          dnnl_dtype_str(a->dtype));
    if (b->dtype != BST_DTYPE_F32 && b->dtype != BST_DTYPE_BF16 && !dnnl_is_qweight(b->dtype))
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "b dtype %s is not f32, bf16, q4_0, q4_1 or "
                          "q8_0", dnnl_dtype_str(b->dtype));
    if (a->rank < 2 || b->rank < 2 || o->rank != a->rank)
        return dnnl_rfail(r, BST_ERR_SHAPE, "ranks a %u, b %u, out %u", a->rank, b->rank,
                          o->rank);
    if (a->ne[3] != b->ne[3] || o->ne[2] != a->ne[2] || o->ne[3] != b->ne[2] ||
        o->ne[0] != a->ne[0] || o->ne[1] != a->ne[1])
        return dnnl_rfail(r, BST_ERR_SHAPE, "matmul shapes do not agree");
    /* Batch dims are merged into one: they must be uniformly strided. */
    const dnnl_tensor *ts[3] = {a, b, o};
    for (int i = 0; i < 3; i++)
        if (ts[i]->ne[0] > 1 && ts[i]->ne[1] > 1 && ts[i]->nb[0] != ts[i]->ne[1] * ts[i]->nb[1])
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "batch dims cannot be merged");
    int64_t ba = a->ne[0] * a->ne[1], bb = b->ne[0] * b->ne[1];
    if (bb == 0 || ba % bb != 0)
        return dnnl_rfail(r, BST_ERR_SHAPE, "batch %lld of a is not a multiple of b's %lld",
                          (long long)ba, (long long)bb);
    if (dnnl_is_qweight(b->dtype)) {
        uint32_t want = r->dev->int8 ? DNNL_LAYOUT_S8ROWS : DNNL_LAYOUT_BF16ROWS;
        if (b->layout != BST_LAYOUT_NATIVE && b->layout != want)
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "weight layout %u is not this device's %u",
                              b->layout, want);
        if (b->layout == BST_LAYOUT_NATIVE &&
            (b->nb[2] <= 0 || (bb > 1 && b->ne[1] > 1 && b->nb[1] <= 0)))
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "weight rows must have positive strides");
    } else {
        bst_status st = need_elem_strides(r, b, "b");
        if (st != BST_OK)
            return st;
    }
    bst_status st = need_elem_strides(r, a, "a");
    return st != BST_OK ? st : need_elem_strides(r, o, "output");
}

static bst_status check_same_shape_unary(dnnl_run *r)
{
    const dnnl_tensor *x = &r->in[0];
    if (!is_plain_float(x->dtype))
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "x dtype %s", dnnl_dtype_str(x->dtype));
    if (x->rank != r->out.rank || !same_dims(x, &r->out))
        return dnnl_rfail(r, BST_ERR_SHAPE, "x and output shapes differ");
    return need_elem_strides(r, x, "x");
}

static bst_status check_broadcast(dnnl_run *r, const dnnl_tensor *b, const char *what)
{
    if (!is_plain_float(b->dtype))
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "%s dtype %s", what, dnnl_dtype_str(b->dtype));
    if (b->rank > r->out.rank)
        return dnnl_rfail(r, BST_ERR_SHAPE, "%s has more dims than the output", what);
    for (int d = 0; d < 4; d++)
        if (b->ne[d] != 1 && b->ne[d] != r->out.ne[d])
            return dnnl_rfail(r, BST_ERR_SHAPE, "%s does not broadcast to the output", what);
    return need_elem_strides(r, b, what);
}

bst_status dnnl_op_check(dnnl_run *r)
{
    dnnl_node *n = r->node;
    if (r->out.dtype != BST_DTYPE_F32)
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "output dtype %s is not f32",
                          dnnl_dtype_str(r->out.dtype));
    bst_status st = need_elem_strides(r, &r->out, "output");
    if (st != BST_OK)
        return st;
    uint32_t want_min = 1, want_max = 1;
    if (n->op == BST_OP_MATMUL || n->op == BST_OP_ADD || n->op == BST_OP_MUL)
        want_min = want_max = 2;
    if (n->op == BST_OP_SOFTMAX)
        want_max = 2;
    if (n->n_inputs < want_min || n->n_inputs > want_max)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "%s takes %u..%u inputs, got %u",
                          dnnl_op_name(n->op), want_min, want_max, n->n_inputs);
    for (uint32_t i = 0; i < n->n_inputs; i++)
        if (r->in[i].layout != BST_LAYOUT_NATIVE && !(n->op == BST_OP_MATMUL && i == 1))
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "input %u has a backend layout", i);
    switch (n->op) {
    case BST_OP_MATMUL:
        return check_matmul(r);
    case BST_OP_SILU:
    case BST_OP_GELU:
    case BST_OP_LAYER_NORM:
        return check_same_shape_unary(r);
    case BST_OP_ADD:
    case BST_OP_MUL:
        if ((st = check_same_shape_unary(r)) != BST_OK)
            return st;
        return check_broadcast(r, &r->in[1], "b");
    case BST_OP_SOFTMAX:
        if ((st = check_same_shape_unary(r)) != BST_OK)
            return st;
        if (!isfinite(dnnl_attr_float(n, BST_ATTR_SCALE, 1.0)))
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "scale is not finite");
        return n->n_inputs == 2 ? check_broadcast(r, &r->in[1], "mask") : BST_OK;
    default:
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "op %u", (unsigned)n->op);
    }
}

uint32_t dnnl_op_variants(const dnnl_run *r, const char **out_names, uint32_t cap)
{
    const char *name = NULL;
    switch (r->node->op) {
    case BST_OP_MATMUL:
        name = r->in[1].dtype == BST_DTYPE_F32 ? "dnnl_matmul_f32"
               : !dnnl_is_qweight(r->in[1].dtype) || !r->dev->int8 ? "dnnl_matmul_bf16"
                                                                    : "dnnl_matmul_s8";
        break;
    case BST_OP_SILU: name = "dnnl_eltwise_swish"; break;
    case BST_OP_GELU: name = "dnnl_eltwise_gelu_tanh"; break;
    case BST_OP_ADD: name = "dnnl_binary_add"; break;
    case BST_OP_MUL: name = "dnnl_binary_mul"; break;
    case BST_OP_SOFTMAX: name = "dnnl_softmax"; break;
    case BST_OP_LAYER_NORM: name = "dnnl_layer_norm"; break;
    default: return 0;
    }
    if (cap > 0)
        out_names[0] = name;
    return 1;
}

/* --- primitive creation --- */

/* Creates s->prim; with want_wei, also stores the weights layout the primitive chose in
 * s->md[1] (its descriptor was created with format "any"). */
static bst_status make_prim_w(dnnl_run *r, const void *op_desc, const_dnnl_primitive_attr_t attr,
                              dnnl_step *s, const char *what, bool want_wei)
{
    dnnl_primitive_desc_t pd = NULL;
    char msg[96];
    snprintf(msg, sizeof msg, "%s: dnnl_primitive_desc_create", what);
    bst_status st = dnnl_rcheck(r, dnnl_primitive_desc_create(&pd, (const_dnnl_op_desc_t)op_desc,
                                                              attr, r->dev->engine, NULL),
                                msg);
    if (st != BST_OK)
        return st;
    if (want_wei) {
        const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (!w) {
            (void)dnnl_primitive_desc_destroy(pd);
            return dnnl_rfail(r, BST_ERR_BACKEND, "%s: no weights descriptor", what);
        }
        s->md[1] = *w;
    }
    snprintf(msg, sizeof msg, "%s: dnnl_primitive_create", what);
    st = dnnl_rcheck(r, dnnl_primitive_create(&s->prim, pd), msg);
    (void)dnnl_primitive_desc_destroy(pd);
    if (st != BST_OK)
        s->prim = NULL;
    return st;
}

static bst_status make_prim(dnnl_run *r, const void *op_desc, const_dnnl_primitive_attr_t attr,
                            dnnl_step *s, const char *what)
{
    return make_prim_w(r, op_desc, attr, s, what, false);
}

static dnnl_step *new_step(dnnl_run *r, int kind, int src_in)
{
    dnnl_node *n = r->node;
    if (n->n_steps >= DNNL_MAX_STEPS)
        return NULL;
    dnnl_step *s = &n->steps[n->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->src_in = src_in;
    s->scale = 1.0f;
    return s;
}

/* Reorder of input `in` into the output (converting to f32), times `scale`. */
static bst_status plan_reorder(dnnl_run *r, int in, float scale)
{
    dnnl_step *s = new_step(r, ST_REORDER, in);
    int nd = rank_of(&r->out);
    bst_status st = md_of(r, &r->in[in], nd, dt_of(r->in[in].dtype), &s->md[0], "reorder src");
    if (st == BST_OK)
        st = md_of(r, &r->out, nd, dnnl_f32, &s->md[2], "reorder dst");
    if (st != BST_OK)
        return st;
    dnnl_primitive_attr_t attr = NULL;
    if (scale != 1.0f) {
        if ((st = dnnl_rcheck(r, dnnl_primitive_attr_create(&attr), "reorder attr")) != BST_OK)
            return st;
        st = dnnl_rcheck(r, dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale),
                         "reorder: output scales");
    }
    dnnl_primitive_desc_t pd = NULL;
    if (st == BST_OK)
        st = dnnl_rcheck(r, dnnl_reorder_primitive_desc_create(&pd, &s->md[0], r->dev->engine,
                                                               &s->md[2], r->dev->engine, attr),
                         "reorder: dnnl_reorder_primitive_desc_create");
    if (attr)
        (void)dnnl_primitive_attr_destroy(attr);
    if (st != BST_OK)
        return st;
    st = dnnl_rcheck(r, dnnl_primitive_create(&s->prim, pd), "reorder: dnnl_primitive_create");
    (void)dnnl_primitive_desc_destroy(pd);
    return st;
}

/* True when input `in` can be read in place as the output's f32 layout. */
static bool same_layout_f32(dnnl_run *r, int in)
{
    if (r->in[in].dtype != BST_DTYPE_F32)
        return false;
    dnnl_memory_desc_t a, b;
    int nd = rank_of(&r->out);
    if (md_of(r, &r->in[in], nd, dnnl_f32, &a, "x") != BST_OK ||
        md_of(r, &r->out, nd, dnnl_f32, &b, "out") != BST_OK)
        return false;
    return dnnl_memory_desc_equal(&a, &b) != 0;
}

static bst_status plan_eltwise(dnnl_run *r)
{
    dnnl_alg_kind_t alg = r->node->op == BST_OP_SILU ? dnnl_eltwise_swish : dnnl_eltwise_gelu_tanh;
    bool direct = same_layout_f32(r, 0);
    bst_status st = direct ? BST_OK : plan_reorder(r, 0, 1.0f);
    if (st != BST_OK)
        return st;
    dnnl_step *s = new_step(r, ST_ELTWISE, direct ? 0 : -1);
    if ((st = md_of(r, &r->out, rank_of(&r->out), dnnl_f32, &s->md[2], "eltwise")) != BST_OK)
        return st;
    dnnl_eltwise_desc_t d;
    st = dnnl_rcheck(r, dnnl_eltwise_forward_desc_init(&d, dnnl_forward_inference, alg, &s->md[2],
                                                       1.0f, 0.0f),
                     "eltwise: dnnl_eltwise_forward_desc_init");
    return st != BST_OK ? st : make_prim(r, &d, NULL, s, "eltwise");
}

/* out = scale * in0 + in1 (binary add or mul with src1 broadcast). */
static bst_status plan_binary(dnnl_run *r, dnnl_alg_kind_t alg, float scale)
{
    dnnl_step *s = new_step(r, ST_BINARY, 0);
    int nd = rank_of(&r->out);
    bst_status st = md_of(r, &r->in[0], nd, dt_of(r->in[0].dtype), &s->md[0], "binary src0");
    if (st == BST_OK)
        st = md_of(r, &r->in[1], nd, dt_of(r->in[1].dtype), &s->md[1], "binary src1");
    if (st == BST_OK)
        st = md_of(r, &r->out, nd, dnnl_f32, &s->md[2], "binary dst");
    if (st != BST_OK)
        return st;
    dnnl_binary_desc_t d;
    st = dnnl_rcheck(r, dnnl_binary_desc_init(&d, alg, &s->md[0], &s->md[1], &s->md[2]),
                     "binary: dnnl_binary_desc_init");
    if (st != BST_OK)
        return st;
    dnnl_primitive_attr_t attr = NULL;
    if (scale != 1.0f) {
        if ((st = dnnl_rcheck(r, dnnl_primitive_attr_create(&attr), "binary attr")) != BST_OK)
            return st;
        st = dnnl_rcheck(r, dnnl_primitive_attr_set_scales(attr, DNNL_ARG_SRC_0, 1, 0, &scale),
                         "binary: src0 scale");
    }
    if (st == BST_OK)
        st = make_prim(r, &d, attr, s, "binary");
    if (attr)
        (void)dnnl_primitive_attr_destroy(attr);
    return st;
}

static bst_status plan_softmax(dnnl_run *r)
{
    float scale = (float)dnnl_attr_float(r->node, BST_ATTR_SCALE, 1.0);
    bst_status st;
    int src = -1;
    if (r->node->n_inputs == 2)
        st = plan_binary(r, dnnl_binary_add, scale);
    else if (scale == 1.0f && same_layout_f32(r, 0))
        st = BST_OK, src = 0;
    else
        st = plan_reorder(r, 0, scale);
    if (st != BST_OK)
        return st;
    dnnl_step *s = new_step(r, ST_SOFTMAX, src);
    int nd = rank_of(&r->out);
    if ((st = md_of(r, &r->out, nd, dnnl_f32, &s->md[2], "softmax")) != BST_OK)
        return st;
    dnnl_softmax_v2_desc_t d;
    st = dnnl_rcheck(r, dnnl_softmax_v2_forward_desc_init(&d, dnnl_forward_inference,
                                                          dnnl_softmax_accurate, &s->md[2],
                                                          &s->md[2], nd - 1),
                     "softmax: dnnl_softmax_v2_forward_desc_init");
    return st != BST_OK ? st : make_prim(r, &d, NULL, s, "softmax");
}

static bst_status plan_layer_norm(dnnl_run *r)
{
    bool direct = same_layout_f32(r, 0);
    bst_status st = direct ? BST_OK : plan_reorder(r, 0, 1.0f);
    if (st != BST_OK)
        return st;
    dnnl_step *s = new_step(r, ST_LNORM, direct ? 0 : -1);
    if ((st = md_of(r, &r->out, rank_of(&r->out), dnnl_f32, &s->md[2], "layer_norm")) != BST_OK)
        return st;
    float eps = (float)dnnl_attr_float(r->node, BST_ATTR_EPS, 1e-5);
    dnnl_layer_normalization_desc_t d;
    st = dnnl_rcheck(r, dnnl_layer_normalization_forward_desc_init(&d, dnnl_forward_inference,
                                                                   &s->md[2], NULL, eps, 0u),
                     "layer_norm: dnnl_layer_normalization_forward_desc_init");
    return st != BST_OK ? st : make_prim(r, &d, NULL, s, "layer_norm");
}

/* --- matmul --- */

static int mm_kind(const dnnl_run *r)
{
    if (r->in[1].dtype == BST_DTYPE_F32)
        return MM_F32;
    if (r->in[1].dtype == BST_DTYPE_BF16)
        return MM_BF16;
    return r->dev->int8 ? MM_S8 : MM_QBF16;
}

/* Element stride of the merged batch dim of t (dims 0,1 merged), in elements of size es. */
static int64_t batch_stride(const dnnl_tensor *t, int64_t es)
{
    int64_t nb = t->ne[1] > 1 ? t->nb[1] : t->nb[0];
    return nb / es;
}

static bst_status init_md(dnnl_run *r, dnnl_memory_desc_t *md, int nd, const int64_t *dims,
                          const int64_t *strides, dnnl_data_type_t dt, const char *what)
{
    dnnl_dims_t d, s;
    for (int i = 0; i < nd; i++) {
        d[i] = dims[i];
        s[i] = strides[i];
    }
    return dnnl_rcheck(r, dnnl_memory_desc_init_by_strides(md, nd, d, dt, s), what);
}

static bst_status plan_matmul(dnnl_run *r)
{
    dnnl_node *n = r->node;
    const dnnl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    int kind = mm_kind(r);
    int64_t M = a->ne[2], K = a->ne[3], N = b->ne[2];
    int64_t Ba = a->ne[0] * a->ne[1], Bb = b->ne[0] * b->ne[1], g = Ba / Bb;
    n->mm_ba = Ba, n->mm_bb = Bb, n->mm_m = M, n->mm_n = N, n->mm_k = K;
    /* Operand layouts (strides in elements): a, as oneDNN reads it (scratch copies for bf16/s8
     * are contiguous); b as [K, N]; the destination (s32 scratch for s8). */
    int64_t sa_b, sa_m, sa_k, sw_b, sw_k, sw_n, so_b, so_m, so_n;
    if (kind == MM_F32) {
        sa_b = batch_stride(a, 4), sa_m = a->nb[2] / 4, sa_k = a->nb[3] / 4;
    } else {
        sa_b = M * K, sa_m = K, sa_k = 1;
    }
    if (kind == MM_S8 || kind == MM_QBF16) {
        sw_b = N * K, sw_k = 1, sw_n = K;
    } else {
        int64_t es = esize(b->dtype);
        sw_b = batch_stride(b, es), sw_k = b->nb[3] / es, sw_n = b->nb[2] / es;
    }
    if (kind == MM_S8) {
        so_b = M * N, so_m = N, so_n = 1;
    } else {
        so_b = batch_stride(o, 4), so_m = o->nb[2] / 4, so_n = o->nb[3] / 4;
    }
    if (M == 1)
        sa_m = K * sa_k, so_m = N * so_n;
    if (N == 1)
        sw_n = K * sw_k, so_n = 1;
    if (K == 1)
        sa_k = 1, sw_k = 1;
    dnnl_data_type_t adt = kind == MM_F32 ? dnnl_f32 : kind == MM_S8 ? dnnl_s8 : dnnl_bf16;
    dnnl_data_type_t wdt = adt;
    dnnl_data_type_t odt = kind == MM_S8 ? dnnl_s32 : dnnl_f32;
    int nd;
    int64_t ad[4], as[4], wd[4], ws[4], od[4], os[4];
    bool fold = Bb == 1 && Ba > 1 && sa_b == M * sa_m && so_b == M * so_m;
    if (Ba == 1 || fold) {
        nd = 2;
        int64_t m = Ba * M;
        ad[0] = m, ad[1] = K, as[0] = sa_m, as[1] = sa_k;
        wd[0] = K, wd[1] = N, ws[0] = sw_k, ws[1] = sw_n;
        od[0] = m, od[1] = N, os[0] = so_m, os[1] = so_n;
    } else if (g == 1 || Bb == 1) {
        nd = 3;
        ad[0] = Ba, ad[1] = M, ad[2] = K, as[0] = sa_b, as[1] = sa_m, as[2] = sa_k;
        wd[0] = Bb, wd[1] = K, wd[2] = N, ws[0] = Bb == 1 ? N * K : sw_b, ws[1] = sw_k,
        ws[2] = sw_n;
        od[0] = Ba, od[1] = M, od[2] = N, os[0] = so_b, os[1] = so_m, os[2] = so_n;
    } else {
        nd = 4;
        ad[0] = Bb, ad[1] = g, ad[2] = M, ad[3] = K;
        as[0] = g * sa_b, as[1] = sa_b, as[2] = sa_m, as[3] = sa_k;
        wd[0] = Bb, wd[1] = 1, wd[2] = K, wd[3] = N;
        ws[0] = sw_b, ws[1] = sw_b, ws[2] = sw_k, ws[3] = sw_n;
        od[0] = Bb, od[1] = g, od[2] = M, od[3] = N;
        os[0] = g * so_b, os[1] = so_b, os[2] = so_m, os[3] = so_n;
    }
    dnnl_step *s = new_step(r, ST_MATMUL, 0);
    bst_status st = init_md(r, &s->md[0], nd, ad, as, adt, "matmul src");
    if (st == BST_OK)
        st = init_md(r, &s->md[1], nd, wd, ws, wdt, "matmul weights");
    if (st == BST_OK)
        st = init_md(r, &s->md[2], nd, od, os, odt, "matmul dst");
    if (st != BST_OK)
        return st;
    /* Repacked weights are ours to lay out: let oneDNN choose (blocked for its brgemm kernels,
     * which otherwise copy a plain weight into that form at every call). */
    bool any_w = kind == MM_S8 || kind == MM_QBF16;
    if (any_w) {
        dnnl_dims_t dd;
        for (int i = 0; i < nd; i++)
            dd[i] = wd[i];
        s->wplain = s->md[1];
        st = dnnl_rcheck(r, dnnl_memory_desc_init_by_tag(&s->md[1], nd, dd, wdt,
                                                         dnnl_format_tag_any),
                         "matmul weights (any)");
        if (st != BST_OK)
            return st;
    }
    dnnl_matmul_desc_t d;
    st = dnnl_rcheck(r, dnnl_matmul_desc_init(&d, &s->md[0], &s->md[1], NULL, &s->md[2]),
                     "matmul: dnnl_matmul_desc_init");
    const char *what = kind == MM_F32 ? "matmul f32" : kind == MM_S8 ? "matmul s8"
                                                                     : "matmul bf16";
    return st != BST_OK ? st : make_prim_w(r, &d, NULL, s, what, any_w);
}

bst_status dnnl_op_plan(dnnl_run *r)
{
    switch (r->node->op) {
    case BST_OP_MATMUL: return plan_matmul(r);
    case BST_OP_SILU:
    case BST_OP_GELU: return plan_eltwise(r);
    case BST_OP_ADD: return plan_binary(r, dnnl_binary_add, 1.0f);
    case BST_OP_MUL: return plan_binary(r, dnnl_binary_mul, 1.0f);
    case BST_OP_SOFTMAX: return plan_softmax(r);
    case BST_OP_LAYER_NORM: return plan_layer_norm(r);
    default: return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "op %u", (unsigned)r->node->op);
    }
}

void dnnl_node_release(dnnl_node *n)
{
    for (uint32_t i = 0; i < n->n_steps; i++)
        if (n->steps[i].prim)
            (void)dnnl_primitive_destroy(n->steps[i].prim);
    n->n_steps = 0;
    n->planned = false;
}

/* --- execution --- */

typedef struct arg_set {
    int n;
    dnnl_exec_arg_t args[4];
} arg_set;

static void args_free(arg_set *a)
{
    for (int i = 0; i < a->n; i++)
        (void)dnnl_memory_destroy(a->args[i].memory);
    a->n = 0;
}

static bst_status arg_add(dnnl_run *r, arg_set *a, int arg, const dnnl_memory_desc_t *md,
                          const void *ptr)
{
    dnnl_memory_t m = NULL;
    bst_status st = dnnl_rcheck(r, dnnl_memory_create(&m, md, r->dev->engine, (void *)ptr),
                                "dnnl_memory_create");
    if (st != BST_OK)
        return st;
    a->args[a->n].arg = arg;
    a->args[a->n].memory = m;
    a->n++;
    return BST_OK;
}

static bst_status run_prim(dnnl_run *r, const dnnl_step *s, arg_set *a, const char *what)
{
    bst_status st = dnnl_rcheck(r, dnnl_primitive_execute(s->prim, r->dev->stream, a->n, a->args),
                                what);
    if (st == BST_OK)
        st = dnnl_rcheck(r, dnnl_stream_wait(r->dev->stream), what);
    args_free(a);
    return st;
}

/* Sets every row of the output whose positions were all removed (x*scale + mask all -inf) to
 * zeros: oneDNN's softmax makes such rows NaN. Only NaN rows are looked at again. */
static void softmax_fix_rows(dnnl_run *r)
{
    const dnnl_tensor *o = &r->out, *x = &r->in[0];
    const dnnl_tensor *m = r->node->n_inputs == 2 ? &r->in[1] : NULL;
    float scale = (float)dnnl_attr_float(r->node, BST_ATTR_SCALE, 1.0);
    for (int64_t i0 = 0; i0 < o->ne[0]; i0++)
        for (int64_t i1 = 0; i1 < o->ne[1]; i1++)
            for (int64_t i2 = 0; i2 < o->ne[2]; i2++) {
                uint8_t *orow = o->ptr + i0 * o->nb[0] + i1 * o->nb[1] + i2 * o->nb[2];
                float first;
                memcpy(&first, orow, sizeof first);
                if (!isnan(first))
                    continue;
                bool all_removed = true;
                for (int64_t k = 0; k < o->ne[3] && all_removed; k++) {
                    int64_t idx[4] = {i0, i1, i2, k};
                    double v = 0.0;
                    const dnnl_tensor *ts[2] = {x, m};
                    for (int t = 0; t < 2; t++) {
                        if (!ts[t])
                            continue;
                        const uint8_t *p = ts[t]->ptr;
                        for (int d = 0; d < 4; d++)
                            p += (ts[t]->ne[d] == 1 ? 0 : idx[d]) * ts[t]->nb[d];
                        float f;
                        if (ts[t]->dtype == BST_DTYPE_F32) {
                            memcpy(&f, p, sizeof f);
                        } else {
                            uint16_t h;
                            memcpy(&h, p, sizeof h);
                            if (ts[t]->dtype == BST_DTYPE_BF16) {
                                uint32_t u = (uint32_t)h << 16;
                                memcpy(&f, &u, sizeof f);
                            } else {
                                f = (h & 0x7c00u) == 0x7c00u && !(h & 0x3ffu)
                                        ? ((h & 0x8000u) ? -INFINITY : INFINITY)
                                        : 0.0f; /* only infinities matter here */
                            }
                        }
                        v += t == 0 ? (double)(f * scale) : (double)f;
                    }
                    all_removed = isinf(v) && v < 0;
                }
                if (all_removed)
                    for (int64_t k = 0; k < o->ne[3]; k++)
                        memset(orow + k * o->nb[3], 0, sizeof(float));
            }
}

static const uint8_t *row_ptr(const dnnl_tensor *t, int64_t batch, int64_t row)
{
    int64_t b0 = t->ne[1] ? batch / t->ne[1] : 0, b1 = t->ne[1] ? batch % t->ne[1] : 0;
    return t->ptr + b0 * t->nb[0] + b1 * t->nb[1] + row * t->nb[2];
}

static uint64_t align64(uint64_t v) { return (v + 63) & ~UINT64_C(63); }

static bst_status reorder_mem(dnnl_run *r, const dnnl_memory_desc_t *from, const void *src,
                              const dnnl_memory_desc_t *to, void *dst)
{
    dnnl_step tmp;
    memset(&tmp, 0, sizeof tmp);
    dnnl_primitive_desc_t pd = NULL;
    bst_status st = dnnl_rcheck(r, dnnl_reorder_primitive_desc_create(&pd, from, r->dev->engine,
                                                                      to, r->dev->engine, NULL),
                                "weights reorder: dnnl_reorder_primitive_desc_create");
    if (st != BST_OK)
        return st;
    st = dnnl_rcheck(r, dnnl_primitive_create(&tmp.prim, pd), "weights reorder: create");
    (void)dnnl_primitive_desc_destroy(pd);
    if (st != BST_OK)
        return st;
    arg_set args = {0};
    if ((st = arg_add(r, &args, DNNL_ARG_FROM, from, src)) == BST_OK &&
        (st = arg_add(r, &args, DNNL_ARG_TO, to, dst)) == BST_OK)
        st = run_prim(r, &tmp, &args, "weights reorder: dnnl_primitive_execute");
    args_free(&args);
    (void)dnnl_primitive_destroy(tmp.prim);
    return st;
}

/* A prepared weight in plain rows becomes, once, the layout the primitive chose: new storage
 * (values in that layout, then the s8 scales), the old freed. */
static bst_status block_weight(dnnl_run *r, dnnl_buf *b, const dnnl_step *s)
{
    uint64_t vbytes = dnnl_memory_desc_get_size(&s->md[1]);
    bool s8 = b->repacked == DNNL_LAYOUT_S8ROWS;
    uint64_t scale_off = s8 ? align64(vbytes) : 0;
    uint64_t total = s8 ? scale_off + (uint64_t)b->rows * 4u : vbytes;
    if (vbytes == 0 || total > (uint64_t)SIZE_MAX / 2)
        return dnnl_rfail(r, BST_ERR_OVERFLOW, "blocked weight size");
    uint8_t *p = dnnl_host->alloc((size_t)total, 64);
    if (!p)
        return dnnl_rfail(r, BST_ERR_DEVICE_OOM, "out of memory blocking a weight (%llu bytes)",
                          (unsigned long long)total);
    bst_status st = reorder_mem(r, &s->wplain, b->data, &s->md[1], p);
    if (st != BST_OK) {
        dnnl_host->free(p);
        return st;
    }
    if (s8)
        memcpy(p + scale_off, b->data + b->scale_offset, (size_t)b->rows * 4u);
    dnnl_host->free(b->data);
    b->data = p;
    b->scale_offset = scale_off;
    b->size = total;
    b->blocked = true;
    b->wmd = s->md[1];
    return BST_OK;
}

bst_status dnnl_block_prepared(dnnl_dev *dev, dnnl_buf *b)
{
    dnnl_run *r = dnnl_host->alloc(sizeof *r, 64);
    if (!r) {
        dnnl_host->set_error("onednn: prepare_weight: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(r, 0, sizeof *r);
    r->dev = dev;
    bool s8 = b->repacked == DNNL_LAYOUT_S8ROWS;
    dnnl_data_type_t dt = s8 ? dnnl_s8 : dnnl_bf16;
    int64_t K = b->cols, N = b->rows;
    dnnl_step s;
    memset(&s, 0, sizeof s);
    bst_status st = init_md(r, &s.md[0], 2, (const int64_t[]){1, K}, (const int64_t[]){K, 1}, dt,
                            "matmul src");
    if (st == BST_OK)
        st = init_md(r, &s.wplain, 2, (const int64_t[]){K, N}, (const int64_t[]){1, K}, dt,
                     "matmul weights");
    if (st == BST_OK)
        st = init_md(r, &s.md[2], 2, (const int64_t[]){1, N}, (const int64_t[]){N, 1},
                     s8 ? dnnl_s32 : dnnl_f32, "matmul dst");
    if (st == BST_OK)
        st = dnnl_rcheck(r, dnnl_memory_desc_init_by_tag(&s.md[1], 2, (dnnl_dims_t){K, N}, dt,
                                                         dnnl_format_tag_any),
                         "matmul weights (any)");
    dnnl_matmul_desc_t d;
    if (st == BST_OK)
        st = dnnl_rcheck(r, dnnl_matmul_desc_init(&d, &s.md[0], &s.md[1], NULL, &s.md[2]),
                         "matmul: dnnl_matmul_desc_init");
    if (st == BST_OK)
        st = make_prim_w(r, &d, NULL, &s, s8 ? "matmul s8" : "matmul bf16", true);
    if (s.prim)
        (void)dnnl_primitive_destroy(s.prim);
    if (st == BST_OK && !dnnl_memory_desc_equal(&s.wplain, &s.md[1]))
        st = block_weight(r, b, &s);
    if (st != BST_OK)
        dnnl_host->set_error("onednn: prepare_weight: %s", r->msg);
    dnnl_host->free(r);
    return st;
}

/* The weights operand of a matmul on repacked (or converted-per-call, `plain`) weights in the
 * layout the primitive wants: the buffer itself, or a copy in `spare` (scratch). */
static bst_status weights_for(dnnl_run *r, const dnnl_step *s, dnnl_buf *b, const void *plain,
                              void *spare, const void **out)
{
    const dnnl_memory_desc_t *cur = b && b->blocked ? &b->wmd : &s->wplain;
    const void *data = b ? b->data : plain;
    if (dnnl_memory_desc_equal(cur, &s->md[1])) {
        *out = data;
        return BST_OK;
    }
    if (b && !b->blocked) {
        bst_status st = block_weight(r, b, s);
        *out = b->data;
        return st;
    }
    *out = spare;
    return reorder_mem(r, cur, data, &s->md[1], spare);
}

/* Scratch bytes weights_for may need for a copy (0 when the weight is used in place). */
static uint64_t weights_spare(const dnnl_step *s, const dnnl_buf *b)
{
    const dnnl_memory_desc_t *cur = b && b->blocked ? &b->wmd : &s->wplain;
    if (dnnl_memory_desc_equal(cur, &s->md[1]) || (b && !b->blocked))
        return 0;
    return align64(dnnl_memory_desc_get_size(&s->md[1]));
}

static bst_status exec_matmul(dnnl_run *r, const dnnl_step *s)
{
    dnnl_node *n = r->node;
    const dnnl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    int kind = mm_kind(r);
    int64_t Ba = n->mm_ba, Bb = n->mm_bb, M = n->mm_m, N = n->mm_n, K = n->mm_k;
    arg_set args = {0};
    bst_status st;
    if (kind == MM_F32) {
        if ((st = arg_add(r, &args, DNNL_ARG_SRC, &s->md[0], a->ptr)) != BST_OK ||
            (st = arg_add(r, &args, DNNL_ARG_WEIGHTS, &s->md[1], b->ptr)) != BST_OK ||
            (st = arg_add(r, &args, DNNL_ARG_DST, &s->md[2], o->ptr)) != BST_OK) {
            args_free(&args);
            return st;
        }
        return run_prim(r, s, &args, "matmul f32: dnnl_primitive_execute");
    }
    if (kind == MM_BF16 || kind == MM_QBF16) {
        /* scratch = a as bf16 | the weight as bf16 rows when it is a native-layout q weight */
        bool native_q = kind == MM_QBF16 && b->layout == BST_LAYOUT_NATIVE;
        dnnl_buf *wb = kind == MM_QBF16 && !native_q ? b->buf : NULL;
        uint64_t off_w = align64((uint64_t)(Ba * M * K) * 2u);
        uint64_t off_spare = align64(off_w + (native_q ? (uint64_t)(Bb * N * K) * 2u : 0u));
        uint64_t total = off_spare + (kind == MM_QBF16 ? weights_spare(s, wb) : 0u);
        uint8_t *scr;
        if ((st = dnnl_scratch(r, total, &scr)) != BST_OK)
            return st;
        uint16_t *abf = (uint16_t *)(void *)scr;
        for (int64_t bi = 0; bi < Ba; bi++)
            dnnl_to_bf16_rows(row_ptr(a, bi, 0), a->nb[2], a->nb[3], M, K, abf + bi * M * K);
        const void *w = kind == MM_BF16 ? (const void *)b->ptr : (const void *)b->buf->data;
        if (native_q) {
            uint16_t *wbf = (uint16_t *)(void *)(scr + off_w);
            for (int64_t bi = 0; bi < Bb && st == BST_OK; bi++)
                st = dnnl_dequant_bf16_rows(b->dtype, row_ptr(b, bi, 0), b->nb[2], N, K,
                                            wbf + bi * N * K);
            if (st != BST_OK)
                return dnnl_rfail(r, st, "matmul bf16: converting the weight failed");
            w = wbf;
        }
        if (kind == MM_QBF16 && (st = weights_for(r, s, wb, w, scr + off_spare, &w)) != BST_OK)
            return st;
        if ((st = arg_add(r, &args, DNNL_ARG_SRC, &s->md[0], abf)) != BST_OK ||
            (st = arg_add(r, &args, DNNL_ARG_WEIGHTS, &s->md[1], w)) != BST_OK ||
            (st = arg_add(r, &args, DNNL_ARG_DST, &s->md[2], o->ptr)) != BST_OK) {
            args_free(&args);
            return st;
        }
        return run_prim(r, s, &args, "matmul bf16: dnnl_primitive_execute");
    }
    /* s8: scratch = a_q | a_scale | acc (s32) | [w_q | w_scale when the weight is native] */
    bool native = b->layout == BST_LAYOUT_NATIVE;
    uint64_t off_as = align64((uint64_t)(Ba * M * K));
    uint64_t off_acc = align64(off_as + (uint64_t)(Ba * M) * 4u);
    uint64_t off_wq = align64(off_acc + (uint64_t)(Ba * M * N) * 4u);
    uint64_t off_ws = align64(off_wq + (native ? (uint64_t)(Bb * N * K) : 0u));
    uint64_t off_spare = align64(off_ws + (native ? (uint64_t)(Bb * N) * 4u : 0u));
    dnnl_buf *wb = native ? NULL : b->buf;
    uint64_t total = off_spare + weights_spare(s, wb);
    uint8_t *scr;
    if ((st = dnnl_scratch(r, total, &scr)) != BST_OK)
        return st;
    int8_t *aq = (int8_t *)scr;
    float *asc = (float *)(void *)(scr + off_as);
    int32_t *acc = (int32_t *)(void *)(scr + off_acc);
    const int8_t *wq;
    const float *wsc;
    if (native) {
        int8_t *q = (int8_t *)(scr + off_wq);
        float *sc = (float *)(void *)(scr + off_ws);
        for (int64_t bi = 0; bi < Bb && st == BST_OK; bi++)
            st = dnnl_requant_rows(b->dtype, row_ptr(b, bi, 0), b->nb[2], N, K, q + bi * N * K,
                                   sc + bi * N);
        if (st != BST_OK)
            return dnnl_rfail(r, st, "matmul s8: requantizing the weight failed");
        wq = q, wsc = sc;
    } else {
        wq = NULL;
        wsc = NULL;
    }
    const void *wsrc = NULL;
    if ((st = weights_for(r, s, wb, wq, scr + off_spare, &wsrc)) != BST_OK)
        return st;
    if (!native) /* after weights_for: blocking moves the buffer's storage */
        wsc = (const float *)(const void *)(b->buf->data + b->buf->scale_offset);
    for (int64_t bi = 0; bi < Ba; bi++)
        dnnl_quant_act_rows(row_ptr(a, bi, 0), a->nb[2], a->nb[3], M, K, aq + bi * M * K,
                            asc + bi * M);
    if ((st = arg_add(r, &args, DNNL_ARG_SRC, &s->md[0], aq)) != BST_OK ||
        (st = arg_add(r, &args, DNNL_ARG_WEIGHTS, &s->md[1], wsrc)) != BST_OK ||
        (st = arg_add(r, &args, DNNL_ARG_DST, &s->md[2], acc)) != BST_OK) {
        args_free(&args);
        return st;
    }
    if ((st = run_prim(r, s, &args, "matmul s8: dnnl_primitive_execute")) != BST_OK)
        return st;
    /* Epilogue: both scales, into the output with its strides. */
    int64_t g = Ba / Bb;
    for (int64_t bi = 0; bi < Ba; bi++) {
        const float *ws = wsc + (bi / g) * N;
        for (int64_t m = 0; m < M; m++) {
            const int32_t *row = acc + (bi * M + m) * N;
            float sa = asc[bi * M + m];
            uint8_t *orow = (uint8_t *)row_ptr(o, bi, m);
            if (o->nb[3] == 4) {
                float *f = (float *)(void *)orow;
                for (int64_t j = 0; j < N; j++)
                    f[j] = (float)row[j] * sa * ws[j];
            } else {
                for (int64_t j = 0; j < N; j++) {
                    float v = (float)row[j] * sa * ws[j];
                    memcpy(orow + j * o->nb[3], &v, sizeof v);
                }
            }
        }
    }
    return BST_OK;
}

bst_status dnnl_op_exec(dnnl_run *r)
{
    dnnl_node *n = r->node;
    bst_status st = BST_OK;
    for (uint32_t i = 0; i < n->n_steps && st == BST_OK; i++) {
        const dnnl_step *s = &n->steps[i];
        arg_set args = {0};
        const char *what = "";
        const void *src = s->src_in >= 0 ? r->in[s->src_in].ptr : r->out.ptr;
        switch (s->kind) {
        case ST_MATMUL:
            st = exec_matmul(r, s);
            continue;
        case ST_REORDER:
            what = "reorder: dnnl_primitive_execute";
            if ((st = arg_add(r, &args, DNNL_ARG_FROM, &s->md[0], src)) == BST_OK)
                st = arg_add(r, &args, DNNL_ARG_TO, &s->md[2], r->out.ptr);
            break;
        case ST_BINARY:
            what = "binary: dnnl_primitive_execute";
            if ((st = arg_add(r, &args, DNNL_ARG_SRC_0, &s->md[0], r->in[0].ptr)) == BST_OK &&
                (st = arg_add(r, &args, DNNL_ARG_SRC_1, &s->md[1], r->in[1].ptr)) == BST_OK)
                st = arg_add(r, &args, DNNL_ARG_DST, &s->md[2], r->out.ptr);
            break;
        case ST_ELTWISE:
        case ST_SOFTMAX:
        case ST_LNORM:
            what = s->kind == ST_ELTWISE   ? "eltwise: dnnl_primitive_execute"
                   : s->kind == ST_SOFTMAX ? "softmax: dnnl_primitive_execute"
                                           : "layer_norm: dnnl_primitive_execute";
            if ((st = arg_add(r, &args, DNNL_ARG_SRC, &s->md[2], src)) == BST_OK)
                st = arg_add(r, &args, DNNL_ARG_DST, &s->md[2], r->out.ptr);
            break;
        default:
            st = dnnl_rfail(r, BST_ERR_INTERNAL, "unknown step kind %d", s->kind);
        }
        if (st != BST_OK) {
            args_free(&args);
            break;
        }
        st = run_prim(r, s, &args, what);
    }
    if (st == BST_OK && n->op == BST_OP_SOFTMAX)
        softmax_fix_rows(r);
    return st;
}
