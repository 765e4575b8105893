/*
 * What the Vulkan backend accepts: its op table (the descriptors themselves are copied and
 * checked by bst_backend_common.h), binding symbolic dims, and one check per op that serves
 * query (at bound shapes), compile (the same) and execute (at the run's extents). The op rules
 * are those of backend.h and the CPU reference backend; on top of them come this backend's own
 * limits, reported as "unsupported" so the runtime places the node elsewhere:
 *  - outputs: f32/f16/bf16 (i32 for argmax); block types only from quantize, set_rows and a
 *    same-dtype cont;
 *  - attention (the one fused op) only where the device offers fused ops (vkb_device), with
 *    plain float inputs and a head dim of at most VKB_ATT_MAX_D;
 *  - every tensor's offset and strides are multiples of its element's alignment (4 bytes for
 *    f32/i32, 2 for f16/bf16 and block types), strides are not negative;
 *  - a tensor's byte span fits the device's max_binding_bytes (shaders use 32-bit offsets
 *    inside a tensor). Tensors are addressed by buffer device address, not through descriptors,
 *    so maxStorageBufferRange does not limit them; a larger tensor is declined, not split.
 */
#include "vk_backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static bool is_block(uint32_t dtype) { return bstc_dtype_is_block(dtype); }
static bool is_plain_float(uint32_t t)
{
    return t == BST_DTYPE_F32 || t == BST_DTYPE_F16 || t == BST_DTYPE_BF16;
}
/* Float or block: what most ops read. */
static bool is_numeric(uint32_t t) { return is_plain_float(t) || is_block(t); }

/* --- ops ----------------------------------------------------------------------------------- */

typedef struct op_info {
    const char *name;
    uint8_t min_inputs, max_inputs;
} op_info;

static const op_info ops[BST_OP_COUNT] = {
    [BST_OP_GET_ROWS] = {"get_rows", 2, 2}, [BST_OP_ADD] = {"add", 2, 2},
    [BST_OP_MUL] = {"mul", 2, 2},           [BST_OP_SCALE] = {"scale", 1, 1},
    [BST_OP_MATMUL] = {"matmul", 2, 2},     [BST_OP_RMS_NORM] = {"rms_norm", 1, 1},
    [BST_OP_LAYER_NORM] = {"layer_norm", 1, 1}, [BST_OP_ROPE] = {"rope", 2, 2},
    [BST_OP_SOFTMAX] = {"softmax", 1, 2},   [BST_OP_SILU] = {"silu", 1, 1},
    [BST_OP_GELU] = {"gelu", 1, 1},         [BST_OP_CAST] = {"cast", 1, 1},
    [BST_OP_QUANTIZE] = {"quantize", 1, 1}, [BST_OP_CONCAT] = {"concat", 2, 2},
    [BST_OP_CONT] = {"cont", 1, 1},         [BST_OP_VIEW] = {"view", 1, 1},
    [BST_OP_RESHAPE] = {"reshape", 1, 1},   [BST_OP_PERMUTE] = {"permute", 1, 1},
    [BST_OP_TRANSPOSE] = {"transpose", 1, 1}, [BST_OP_ARGMAX] = {"argmax", 1, 1},
    [BST_OP_SET_ROWS] = {"set_rows", 3, 3}, [BST_OP_ATTENTION] = {"attention", 3, 4},
};

static const op_info *op_of(uint32_t op)
{
    return op < BST_OP_COUNT && ops[op].name ? &ops[op] : NULL;
}

const char *vkb_op_name(uint32_t op)
{
    const op_info *o = op_of(op);
    return o ? o->name : "unknown op";
}

bool vkb_is_alias_op(uint32_t op)
{
    return op == BST_OP_VIEW || op == BST_OP_RESHAPE || op == BST_OP_PERMUTE ||
           op == BST_OP_TRANSPOSE;
}

bool vkb_arity(uint32_t op, bstc_op_arity *out)
{
    const op_info *o = op_of(op);
    if (!o)
        return false;
    *out = (bstc_op_arity){o->name, o->min_inputs, o->max_inputs};
    return true;
}

/* --- shapes -------------------------------------------------------------------------------- */

static bst_status resolve(vkb_shapes *s, const bst_tensor_desc *d, vkb_tensor *t,
                          const bst_run_params *params, const char *what)
{
    memset(t, 0, sizeof *t);
    t->dtype = d->dtype;
    t->rank = d->rank;
    return bstc_pad_dims(d, params, t->ne, t->nb, what, s->msg, sizeof s->msg);
}

bst_status vkb_shapes_resolve(vkb_shapes *s, const vkb_node *n, bool bind, int64_t n_tokens,
                              int64_t n_kv)
{
    s->node = n;
    s->msg[0] = '\0';
    const bst_run_params run = {
        .struct_size = (uint32_t)sizeof run, .n_tokens = n_tokens, .n_kv = n_kv};
    const bst_run_params *params = bind ? &run : NULL;
    char what[32];
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        snprintf(what, sizeof what, "input %u", i);
        bst_status st = resolve(s, &n->in[i], &s->in[i], params, what);
        if (st != BST_OK)
            return st;
    }
    return resolve(s, &n->out, &s->out, params, "output");
}

#define FAIL(st, ...) return bstc_msg(s->msg, sizeof s->msg, st, __VA_ARGS__)

/* This backend's addressing limits for one tensor (see the file comment). */
static bst_status check_addressing(const vkb_device *d, vkb_shapes *s, const bst_tensor_desc *desc,
                                   const vkb_tensor *t, const char *what)
{
    const uint32_t align = bstc_dtype_align(t->dtype);
    if (desc->offset % align != 0)
        FAIL(BST_ERR_UNSUPPORTED, "%s offset %llu is not a multiple of %u bytes", what,
             (unsigned long long)desc->offset, align);
    for (int i = 0; i < 4; i++) {
        if (t->ne[i] <= 1)
            continue;
        if (t->nb[i] < 0 || t->nb[i] % align != 0)
            FAIL(BST_ERR_UNSUPPORTED, "%s stride %lld is negative or not a multiple of %u bytes",
                 what, (long long)t->nb[i], align);
    }
    int64_t lo, hi;
    if (!bstc_byte_span(t->dtype, t->ne, t->nb, &lo, &hi) || (uint64_t)hi > d->max_tensor_bytes)
        FAIL(BST_ERR_UNSUPPORTED, "%s spans more than the %llu bytes one tensor may address here",
             what, (unsigned long long)d->max_tensor_bytes);
    return BST_OK;
}

/* --- op rules ------------------------------------------------------------------------------ */

static bool same_shape(const vkb_tensor *a, const vkb_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < 4; d++)
        if (a->ne[d] != b->ne[d])
            return false;
    return true;
}

static bst_status need_numeric(vkb_shapes *s, const vkb_tensor *t, const char *what)
{
    if (!is_numeric(t->dtype))
        FAIL(BST_ERR_UNSUPPORTED, "%s dtype %s is not a float or block type", what,
             bstc_dtype_name(t->dtype));
    return BST_OK;
}

/* Outputs this backend writes element by element. */
static bst_status need_plain_out(vkb_shapes *s)
{
    if (!is_plain_float(s->out.dtype))
        FAIL(BST_ERR_UNSUPPORTED, "output dtype %s: this backend writes f32, f16 or bf16 here",
             bstc_dtype_name(s->out.dtype));
    return BST_OK;
}

static bst_status check_like_x(vkb_shapes *s)
{
    bst_status st;
    if ((st = need_numeric(s, &s->in[0], "x")) || (st = need_plain_out(s)))
        return st;
    if (!same_shape(&s->in[0], &s->out))
        FAIL(BST_ERR_SHAPE, "output shape differs from x's");
    return BST_OK;
}

static bst_status check_broadcast(vkb_shapes *s, const vkb_tensor *a, const vkb_tensor *b,
                                  const char *what)
{
    if (b->rank > a->rank)
        FAIL(BST_ERR_SHAPE, "%s has more dims (%u) than its target (%u)", what, b->rank, a->rank);
    for (int d = 0; d < 4; d++)
        if (b->ne[d] != 1 && b->ne[d] != a->ne[d])
            FAIL(BST_ERR_SHAPE, "%s dim of %lld does not broadcast to %lld", what,
                 (long long)b->ne[d], (long long)a->ne[d]);
    return BST_OK;
}

static bst_status check_get_rows(vkb_shapes *s)
{
    const vkb_tensor *t = &s->in[0], *ids = &s->in[1], *o = &s->out;
    bst_status st = need_plain_out(s);
    if (st != BST_OK)
        return st;
    if (t->rank != 2)
        FAIL(BST_ERR_SHAPE, "table must be [R, C], got rank %u", t->rank);
    if (ids->dtype != BST_DTYPE_I32 || ids->rank > 3)
        FAIL(BST_ERR_SHAPE, "ids must be i32 of rank 0..3");
    if (o->rank != ids->rank + 1 || o->ne[3] != t->ne[3])
        FAIL(BST_ERR_SHAPE, "output must be [ids..., %lld]", (long long)t->ne[3]);
    for (int d = 0; d < 3; d++)
        if (o->ne[d] != ids->ne[d + 1])
            FAIL(BST_ERR_SHAPE, "output dims differ from ids' dims");
    return BST_OK;
}

static bst_status check_binary(vkb_shapes *s)
{
    bst_status st;
    if ((st = need_numeric(s, &s->in[1], "b")) || (st = check_like_x(s)))
        return st;
    return check_broadcast(s, &s->in[0], &s->in[1], "b");
}

static bst_status check_unary(vkb_shapes *s)
{
    bst_status st = check_like_x(s);
    if (st != BST_OK)
        return st;
    if (s->node->op == BST_OP_SCALE) {
        if (!bstc_attr(s->node, BST_ATTR_SCALE))
            FAIL(BST_ERR_INVALID_ARG, "missing attribute scale");
        if (!isfinite(bstc_attr_float(s->node, BST_ATTR_SCALE, 1.0)))
            FAIL(BST_ERR_INVALID_ARG, "scale is not finite");
    }
    return BST_OK;
}

static bst_status check_matmul(vkb_shapes *s)
{
    const vkb_tensor *a = &s->in[0], *b = &s->in[1], *o = &s->out;
    bst_status st;
    if ((st = need_numeric(s, a, "a")) || (st = need_numeric(s, b, "b")))
        return st;
    if (o->dtype != BST_DTYPE_F32)
        FAIL(BST_ERR_UNSUPPORTED, "matmul writes f32, not %s", bstc_dtype_name(o->dtype));
    if (a->rank < 2 || b->rank < 2 || b->rank > a->rank || o->rank != a->rank)
        FAIL(BST_ERR_SHAPE, "matmul ranks a %u, b %u, out %u", a->rank, b->rank, o->rank);
    if (a->ne[3] != b->ne[3])
        FAIL(BST_ERR_SHAPE, "inner dims differ: a has %lld, b has %lld", (long long)a->ne[3],
             (long long)b->ne[3]);
    if (o->ne[2] != a->ne[2] || o->ne[3] != b->ne[2])
        FAIL(BST_ERR_SHAPE, "output must be [..., %lld, %lld]", (long long)a->ne[2],
             (long long)b->ne[2]);
    for (int d = 0; d < 2; d++) {
        if (o->ne[d] != a->ne[d])
            FAIL(BST_ERR_SHAPE, "output batch dims differ from a's");
        if (b->ne[d] == 0 ? a->ne[d] != 0 : a->ne[d] % b->ne[d] != 0)
            FAIL(BST_ERR_SHAPE, "b batch dim %lld does not divide a's %lld", (long long)b->ne[d],
                 (long long)a->ne[d]);
    }
    return BST_OK;
}

static bst_status check_norm(vkb_shapes *s)
{
    bst_status st = check_like_x(s);
    if (st != BST_OK)
        return st;
    if (s->in[0].rank == 0)
        FAIL(BST_ERR_SHAPE, "x must have at least one dim");
    if (!bstc_attr(s->node, BST_ATTR_EPS))
        FAIL(BST_ERR_INVALID_ARG, "missing attribute eps");
    double e = bstc_attr_float(s->node, BST_ATTR_EPS, 0.0);
    if (!isfinite(e) || e < 0)
        FAIL(BST_ERR_INVALID_ARG, "eps %g must be finite and >= 0", e);
    return BST_OK;
}

static bst_status check_rope(vkb_shapes *s)
{
    bst_status st = check_like_x(s);
    if (st != BST_OK)
        return st;
    const vkb_tensor *x = &s->in[0], *pos = &s->in[1];
    const vkb_node *n = s->node;
    if (x->rank != 3)
        FAIL(BST_ERR_SHAPE, "x must be [T, H, D], got rank %u", x->rank);
    if (pos->dtype != BST_DTYPE_I32 || pos->rank != 1 || pos->ne[3] != x->ne[1])
        FAIL(BST_ERR_SHAPE, "pos must be i32[T] with T = %lld", (long long)x->ne[1]);
    if (!bstc_attr(n, BST_ATTR_ROPE_MODE) || !bstc_attr(n, BST_ATTR_ROPE_THETA) ||
        !bstc_attr(n, BST_ATTR_ROPE_DIMS))
        FAIL(BST_ERR_INVALID_ARG, "needs rope_mode, rope_theta and rope_dims");
    int64_t mode = bstc_attr_int(n, BST_ATTR_ROPE_MODE, -1);
    double theta = bstc_attr_float(n, BST_ATTR_ROPE_THETA, 0.0);
    int64_t dims = bstc_attr_int(n, BST_ATTR_ROPE_DIMS, 0);
    if (mode != 0 && mode != 2)
        FAIL(BST_ERR_UNSUPPORTED, "rope mode %lld (0 normal, 2 neox)", (long long)mode);
    if (!isfinite(theta) || theta <= 0)
        FAIL(BST_ERR_INVALID_ARG, "rope theta %g must be positive", theta);
    if (dims < 2 || dims % 2 != 0 || dims > x->ne[3])
        FAIL(BST_ERR_INVALID_ARG, "rope dims %lld must be even, 2..%lld", (long long)dims,
             (long long)x->ne[3]);
    return BST_OK;
}

static bst_status check_softmax(vkb_shapes *s)
{
    bst_status st = check_like_x(s);
    if (st != BST_OK)
        return st;
    if (s->in[0].rank == 0)
        FAIL(BST_ERR_SHAPE, "x must have at least one dim");
    if (!isfinite(bstc_attr_float(s->node, BST_ATTR_SCALE, 1.0)))
        FAIL(BST_ERR_INVALID_ARG, "scale is not finite");
    if (s->node->n_inputs == 2) {
        if ((st = need_numeric(s, &s->in[1], "mask")) != BST_OK)
            return st;
        return check_broadcast(s, &s->in[0], &s->in[1], "mask");
    }
    return BST_OK;
}

static bst_status check_convert(vkb_shapes *s)
{
    const vkb_tensor *x = &s->in[0], *o = &s->out;
    const bst_op op = s->node->op;
    if (!same_shape(x, o))
        FAIL(BST_ERR_SHAPE, "x shape does not match the output's");
    if (op == BST_OP_CONT) {
        if (x->dtype == o->dtype)
            return BST_OK; /* a byte copy, any dtype */
        return need_plain_out(s);
    }
    int64_t want = bstc_attr_int(s->node, BST_ATTR_DTYPE, -1);
    if (want != (int64_t)o->dtype)
        FAIL(BST_ERR_INVALID_ARG, "attribute dtype %lld does not match output %s",
             (long long)want, bstc_dtype_name(o->dtype));
    if (op == BST_OP_CAST && !is_plain_float(o->dtype))
        FAIL(BST_ERR_UNSUPPORTED, "cast to %s (use quantize for block types)",
             bstc_dtype_name(o->dtype));
    if (op == BST_OP_QUANTIZE && !is_block(o->dtype))
        FAIL(BST_ERR_UNSUPPORTED, "quantize to %s: not a block type", bstc_dtype_name(o->dtype));
    return BST_OK;
}

static bst_status check_concat(vkb_shapes *s)
{
    const vkb_tensor *a = &s->in[0], *b = &s->in[1], *o = &s->out;
    bst_status st;
    if ((st = need_numeric(s, a, "a")) || (st = need_numeric(s, b, "b")) ||
        (st = need_plain_out(s)))
        return st;
    int64_t axis = bstc_attr_int(s->node, BST_ATTR_AXIS, -1);
    if (a->rank != o->rank || b->rank != o->rank || o->rank == 0 || axis < 0 ||
        axis >= (int64_t)o->rank)
        FAIL(BST_ERR_SHAPE, "concat of rank %u and %u into %u along axis %lld", a->rank, b->rank,
             o->rank, (long long)axis);
    int ax = (int)(axis + (BST_MAX_DIMS - (int64_t)o->rank));
    for (int d = 0; d < 4; d++) {
        int64_t want = d == ax ? a->ne[d] + b->ne[d] : a->ne[d];
        if ((d != ax && b->ne[d] != a->ne[d]) || o->ne[d] != want)
            FAIL(BST_ERR_SHAPE, "concat shapes disagree in dim %d", d - (4 - (int)o->rank));
    }
    return BST_OK;
}

static bst_status check_argmax(vkb_shapes *s)
{
    const vkb_tensor *x = &s->in[0], *o = &s->out;
    bst_status st = need_numeric(s, x, "x");
    if (st != BST_OK)
        return st;
    if (o->dtype != BST_DTYPE_I32)
        FAIL(BST_ERR_UNSUPPORTED, "argmax writes i32, not %s", bstc_dtype_name(o->dtype));
    if (x->rank < 1 || o->rank != x->rank - 1)
        FAIL(BST_ERR_SHAPE, "output rank must be x's rank - 1");
    for (int d = 0; d < 3; d++)
        if (o->ne[d + 1] != x->ne[d])
            FAIL(BST_ERR_SHAPE, "output dims must be x's outer dims");
    if (x->ne[3] == 0)
        FAIL(BST_ERR_SHAPE, "argmax over an empty dim");
    if (x->ne[3] > INT32_MAX)
        FAIL(BST_ERR_OVERFLOW, "argmax index does not fit i32");
    return BST_OK;
}

static bst_status check_set_rows(vkb_shapes *s)
{
    const vkb_tensor *dst = &s->in[0], *src = &s->in[1], *ids = &s->in[2], *o = &s->out;
    if (!is_plain_float(dst->dtype) && !is_block(dst->dtype))
        FAIL(BST_ERR_UNSUPPORTED, "set_rows into %s", bstc_dtype_name(dst->dtype));
    if (dst->rank < 2 || src->rank != dst->rank)
        FAIL(BST_ERR_SHAPE, "dst (rank %u) and src (rank %u) must have the same rank >= 2",
             dst->rank, src->rank);
    if (ids->dtype != BST_DTYPE_I32 || ids->rank != 1)
        FAIL(BST_ERR_SHAPE, "ids must be i32[N]");
    int p = BST_MAX_DIMS - (int)dst->rank;
    if (src->ne[p] != ids->ne[3])
        FAIL(BST_ERR_SHAPE, "src has %lld rows but ids has %lld", (long long)src->ne[p],
             (long long)ids->ne[3]);
    for (int d = 0; d < 4; d++)
        if (d != p && src->ne[d] != dst->ne[d])
            FAIL(BST_ERR_SHAPE, "src and dst differ outside the row dim");
    if (o->dtype != dst->dtype || !same_shape(o, dst))
        FAIL(BST_ERR_SHAPE, "output must have dst's type");
    return BST_OK;
}

/* Fused attention (shaders/attention.comp): q[T,Hq,D], k/v[S,Hkv,D] and the optional mask in
 * plain float dtypes, any strides; the head dim bounded by what one workgroup keeps in shared
 * memory and registers. */
static bst_status check_attention(const vkb_device *d, vkb_shapes *s)
{
    if (!d->offer_fused)
        FAIL(BST_ERR_UNSUPPORTED,
             "fused attention is not offered on this CPU-type device (BASTION_VULKAN_FUSED=1)");
    const vkb_tensor *q = &s->in[0], *k = &s->in[1], *v = &s->in[2], *o = &s->out;
    const char *names[4] = {"q", "k", "v", "mask"};
    for (uint32_t i = 0; i < s->node->n_inputs; i++)
        if (!is_plain_float(s->in[i].dtype))
            FAIL(BST_ERR_UNSUPPORTED, "%s dtype %s: attention reads f32, f16 or bf16", names[i],
                 bstc_dtype_name(s->in[i].dtype));
    bst_status st = need_plain_out(s);
    if (st != BST_OK)
        return st;
    if (q->rank != 3 || k->rank != 3 || v->rank != 3 || o->rank != 3)
        FAIL(BST_ERR_SHAPE, "q, k, v and the output must be [T, H, D]");
    int64_t T = q->ne[1], Hq = q->ne[2], D = q->ne[3], S = k->ne[1], Hkv = k->ne[2];
    if (k->ne[3] != D || v->ne[3] != D || v->ne[1] != S || v->ne[2] != Hkv)
        FAIL(BST_ERR_SHAPE, "k and v must be [S, Hkv, %lld] alike", (long long)D);
    if (Hkv == 0 ? Hq != 0 : Hq % Hkv != 0)
        FAIL(BST_ERR_SHAPE, "%lld query heads do not group over %lld kv heads", (long long)Hq,
             (long long)Hkv);
    if (o->ne[1] != T || o->ne[2] != Hq || o->ne[3] != D)
        FAIL(BST_ERR_SHAPE, "output must be [T, Hq, D] like q");
    if (D < 1 || D > VKB_ATT_MAX_D)
        FAIL(BST_ERR_UNSUPPORTED, "head dim %lld outside 1..%d", (long long)D, VKB_ATT_MAX_D);
    if (S > INT32_MAX || T > INT32_MAX)
        FAIL(BST_ERR_UNSUPPORTED, "T %lld or S %lld does not fit the shader's 32-bit positions",
             (long long)T, (long long)S);
    if (s->node->n_inputs == 4) {
        const vkb_tensor *m = &s->in[3];
        if (m->rank > 2 || (m->ne[2] != 1 && m->ne[2] != T) || (m->ne[3] != 1 && m->ne[3] != S))
            FAIL(BST_ERR_SHAPE, "mask must broadcast to [T, S]");
    }
    if (!isfinite(bstc_attr_float(s->node, BST_ATTR_SCALE, 1.0)))
        FAIL(BST_ERR_INVALID_ARG, "scale is not finite");
    if (bstc_attr_int(s->node, BST_ATTR_WINDOW, 0) < 0)
        FAIL(BST_ERR_INVALID_ARG, "window is negative");
    return BST_OK;
}

/* The planner gives an alias its input's memory; running "nothing" on descriptors that say
 * otherwise would silently produce garbage. */
static bst_status check_alias(vkb_shapes *s)
{
    const bst_tensor_desc *x = &s->node->in[0], *o = &s->node->out;
    uint64_t extra = 0;
    if (s->node->op == BST_OP_VIEW) {
        int64_t off = bstc_attr_int(s->node, BST_ATTR_OFFSET, 0);
        if (off < 0)
            FAIL(BST_ERR_INVALID_ARG, "view offset %lld is negative", (long long)off);
        extra = (uint64_t)off;
    }
    if (x->dtype != o->dtype)
        FAIL(BST_ERR_SHAPE, "an alias cannot change the dtype");
    if (o->binding != x->binding || o->offset != x->offset + extra)
        FAIL(BST_ERR_INVALID_ARG,
             "output (binding %u, offset %llu) does not alias input (binding %u, offset %llu + "
             "%llu)",
             o->binding, (unsigned long long)o->offset, x->binding, (unsigned long long)x->offset,
             (unsigned long long)extra);
    return BST_OK;
}

bst_status vkb_check(const vkb_device *d, vkb_shapes *s)
{
    const vkb_node *n = s->node;
    bst_status st;
    switch (n->op) {
    case BST_OP_GET_ROWS: st = check_get_rows(s); break;
    case BST_OP_ADD:
    case BST_OP_MUL: st = check_binary(s); break;
    case BST_OP_SCALE:
    case BST_OP_SILU:
    case BST_OP_GELU: st = check_unary(s); break;
    case BST_OP_MATMUL: st = check_matmul(s); break;
    case BST_OP_RMS_NORM:
    case BST_OP_LAYER_NORM: st = check_norm(s); break;
    case BST_OP_ROPE: st = check_rope(s); break;
    case BST_OP_SOFTMAX: st = check_softmax(s); break;
    case BST_OP_CAST:
    case BST_OP_QUANTIZE:
    case BST_OP_CONT: st = check_convert(s); break;
    case BST_OP_CONCAT: st = check_concat(s); break;
    case BST_OP_ARGMAX: st = check_argmax(s); break;
    case BST_OP_SET_ROWS: st = check_set_rows(s); break;
    case BST_OP_ATTENTION: st = check_attention(d, s); break;
    case BST_OP_VIEW:
    case BST_OP_RESHAPE:
    case BST_OP_PERMUTE:
    case BST_OP_TRANSPOSE: return check_alias(s);
    default: FAIL(BST_ERR_UNSUPPORTED, "op %u", n->op);
    }
    if (st != BST_OK)
        return st;
    char what[32];
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        snprintf(what, sizeof what, "input %u", i);
        if ((st = check_addressing(d, s, &n->in[i], &s->in[i], what)) != BST_OK)
            return st;
    }
    return check_addressing(d, s, &n->out, &s->out, "output");
}
