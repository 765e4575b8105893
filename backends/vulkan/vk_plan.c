/*
 * Planning: which shader dispatches run a node, with which specialization constants (dtypes, op
 * variant, tile and workgroup sizes), push constants (strides, attributes) and work-item count
 * rule. Everything here is decided at compile time from the node's descriptors; only extents and
 * addresses are filled in per run (vk_exec.c).
 *
 * Matmul has three kernels, all reading any weight dtype in its GGUF blocks directly:
 *   "vec":   a workgroup reduces over K for a few rows of a and b (decode-sized a on GPUs);
 *   "tiled": shared-memory tiles of a and b (prompt-sized a on GPUs);
 *   "rows":  one invocation per output element, no barriers (software rasterizers: lavapipe).
 * query offers all three, ordered by preference for the node and device (mm_kind_of); kernel
 * selection measures them. Every other op has one kernel; attention (fused) is one shader too.
 */
#include "vk_backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { SPEC_WG = 0, SPEC_T0 = 1, SPEC_OP = 5, SPEC_X = 6 };

/* Matmul tile shapes. */
#define VEC_WG 64u
#define VEC_NR 2u
#define ROWS_RN 4u
#define TILE_BM 32u
#define TILE_BN 32u
#define TILE_TM 4u
#define TILE_TN 2u

uint32_t vkb_variant_count(uint32_t op) { return op == BST_OP_MATMUL ? 3u : 1u; }

typedef enum mm_kind { MM_VEC, MM_TILED, MM_ROWS } mm_kind;

/* Matmul kernels in this node's order of preference, so that variant 0 (what the runtime takes
 * before anything is measured) is the likely winner: devices that run workgroups in software
 * (lavapipe) lose most to barriers and shared memory, so "rows" first; GPUs want "vec" for
 * decode-sized a and "tiled" for prompts. */
static mm_kind mm_kind_of(const vkb_device *d, const vkb_shapes *s, uint32_t variant)
{
    static const mm_kind software[3] = {MM_ROWS, MM_VEC, MM_TILED};
    static const mm_kind gpu_few[3] = {MM_VEC, MM_ROWS, MM_TILED};
    static const mm_kind gpu_many[3] = {MM_TILED, MM_VEC, MM_ROWS};
    const mm_kind *order = d->phys->info.kind == BST_DEVICE_CPU ? software
                           : s->in[0].ne[2] <= 4                ? gpu_few
                                                                : gpu_many;
    return order[variant < 3 ? variant : 0];
}

const char *vkb_variant_name(const vkb_device *d, const vkb_shapes *s, uint32_t variant)
{
    uint32_t op = s->node->op;
    if (op == BST_OP_MATMUL) {
        static const char *const names[3] = {"vk_matmul_vec", "vk_matmul_tiled", "vk_matmul_rows"};
        return names[mm_kind_of(d, s, variant)];
    }
    if (vkb_is_alias_op(op))
        return "vk_alias";
    if (op == BST_OP_ATTENTION)
        return "vk_attention";
    return "vk_shader";
}

static const vkb_tensor *slot_tensor(const vkb_shapes *s, uint8_t src)
{
    if (src == VKB_SRC_OUT)
        return &s->out;
    if (src >= VKB_SRC_IN0 && src - VKB_SRC_IN0 < (int)s->node->n_inputs)
        return &s->in[src - VKB_SRC_IN0];
    return NULL;
}

/* Starts dispatch i of the plan: shader, workgroup size, item rule, slot sources (their dtypes
 * become T0..T3, their strides the push constants). */
static vkb_dispatch *add(vkb_plan *p, const vkb_shapes *s, uint32_t shader, uint32_t wg,
                         vkb_items items, uint8_t s0, uint8_t s1, uint8_t s2, uint8_t s3)
{
    vkb_dispatch *d = &p->d[p->n];
    vkb_pipe_key *k = &p->key[p->n];
    p->n++;
    memset(d, 0, sizeof *d);
    memset(k, 0, sizeof *k);
    k->shader = shader;
    k->spec[SPEC_WG] = wg;
    d->wg = wg;
    d->items = items;
    d->src[0] = s0;
    d->src[1] = s1;
    d->src[2] = s2;
    d->src[3] = s3;
    for (int i = 0; i < 4; i++) {
        const vkb_tensor *t = slot_tensor(s, d->src[i]);
        k->spec[SPEC_T0 + i] = t ? t->dtype : BST_DTYPE_F32;
        for (int j = 0; t && j < 4; j++)
            d->push.nb[i][j] = (uint32_t)t->nb[j]; /* checked: 0 <= stride < 2^32 */
    }
    return d;
}

/* Is the output the same memory, laid out the same way, as input 0 (set_rows' dst)? */
static bool out_is_in0(const vkb_shapes *s)
{
    const bst_tensor_desc *o = &s->node->out, *x = &s->node->in[0];
    if (o->binding != x->binding || o->offset != x->offset)
        return false;
    for (int d = 0; d < 4; d++)
        if (s->out.ne[d] > 1 && s->out.nb[d] != s->in[0].nb[d])
            return false;
    return true;
}

/* Workgroup size of a row-reduction kernel: enough invocations to cover the row a few elements
 * each, no more; every barrier costs all of them. A device that runs workgroups in software
 * (lavapipe) gets one subgroup per workgroup: its barriers are coroutine switches, and a row per
 * SIMD subgroup is what it does best. */
static uint32_t row_wg(const vkb_device *dev, int64_t row)
{
    uint32_t sg = dev->phys->subgroup_size;
    bool software = dev->phys->info.kind == BST_DEVICE_CPU;
    uint32_t cap = software ? (sg >= 8 && sg <= 128 ? sg : 8u) : 128u;
    uint32_t wg = cap < 32u ? cap : 32u;
    while (wg < cap && (int64_t)wg * 4 < row)
        wg *= 2;
    return wg;
}

/* Workgroup size of fused attention: the keys scored per chunk, one per invocation. Software
 * devices get one subgroup (as row_wg: their barriers are coroutine switches, and there is one
 * chunk-wide barrier set per WG keys); GPUs 64 invocations. */
static uint32_t attention_wg(const vkb_device *dev)
{
    uint32_t sg = dev->phys->subgroup_size;
    if (dev->phys->info.kind == BST_DEVICE_CPU)
        return sg >= 8 && sg <= 128 ? sg : 8u;
    return 64u;
}

static uint32_t unit_bytes(uint32_t dtype)
{
    uint32_t bs, bb;
    return bstc_dtype_geometry(dtype, &bs, &bb) ? bb : 4u;
}

bst_status vkb_plan_node(const vkb_device *dev, const vkb_shapes *s, uint32_t variant,
                         vkb_plan *p, char *msg, size_t cap)
{
    const vkb_node *n = s->node;
    memset(p, 0, sizeof *p);
    if (variant >= vkb_variant_count(n->op)) {
        snprintf(msg, cap, "variant %u does not exist (%s has %u)", variant, vkb_op_name(n->op),
                 vkb_variant_count(n->op));
        return BST_ERR_INVALID_ARG;
    }
    const uint8_t OUT = VKB_SRC_OUT, A = VKB_SRC_IN0, B = VKB_SRC_IN0 + 1, C = VKB_SRC_IN0 + 2;
    vkb_dispatch *d;
    switch (n->op) {
    case BST_OP_ADD:
    case BST_OP_MUL:
        d = add(p, s, VKS_ELTWISE, 64, VKB_ITEMS_ELEMS, OUT, A, B, 0);
        p->key[0].spec[SPEC_OP] = n->op == BST_OP_ADD ? 0 : 1;
        break;
    case BST_OP_SCALE:
    case BST_OP_SILU:
    case BST_OP_GELU:
        d = add(p, s, VKS_ELTWISE, 64, VKB_ITEMS_ELEMS, OUT, A, 0, 0);
        p->key[0].spec[SPEC_OP] = n->op == BST_OP_SCALE ? 2 : n->op == BST_OP_SILU ? 3 : 4;
        d->push.f[0] = (float)bstc_attr_float(n, BST_ATTR_SCALE, 1.0);
        break;
    case BST_OP_CAST:
    case BST_OP_CONT:
        if (n->op == BST_OP_CONT && s->in[0].dtype == s->out.dtype) {
            add(p, s, VKS_COPY, 64, VKB_ITEMS_UNITS, OUT, A, 0, 0);
            p->key[0].spec[SPEC_X] = unit_bytes(s->out.dtype);
        } else {
            add(p, s, VKS_ELTWISE, 64, VKB_ITEMS_ELEMS, OUT, A, 0, 0);
            p->key[0].spec[SPEC_OP] = 5;
        }
        break;
    case BST_OP_CONCAT:
        d = add(p, s, VKS_ELTWISE, 64, VKB_ITEMS_ELEMS, OUT, A, B, 0);
        p->key[0].spec[SPEC_OP] = 6;
        d->push.u[0] = (uint32_t)(bstc_attr_int(n, BST_ATTR_AXIS, 0) + (BST_MAX_DIMS - s->out.rank));
        break;
    case BST_OP_QUANTIZE:
        add(p, s, VKS_QUANTIZE, 64, VKB_ITEMS_BLOCKS, OUT, A, 0, 0);
        break;
    case BST_OP_GET_ROWS:
        add(p, s, VKS_GET_ROWS, 64, VKB_ITEMS_ELEMS, OUT, A, B, 0);
        break;
    case BST_OP_SET_ROWS:
        /* The result is dst with rows replaced: when the output is not dst's own memory, dst
         * is copied into it first. */
        if (!out_is_in0(s)) {
            add(p, s, VKS_COPY, 64, VKB_ITEMS_UNITS, OUT, A, 0, 0);
            p->key[0].spec[SPEC_X] = unit_bytes(s->out.dtype);
        }
        d = add(p, s, VKS_SET_ROWS, 64, VKB_ITEMS_ROWS2, OUT, A, B, C);
        d->push.u[0] = BST_MAX_DIMS - s->in[0].rank;
        break;
    case BST_OP_RMS_NORM:
    case BST_OP_LAYER_NORM:
        d = add(p, s, VKS_NORM, row_wg(dev, s->out.ne[3]), VKB_ITEMS_ROWS0, OUT, A, 0, 0);
        p->key[0].spec[SPEC_OP] = n->op == BST_OP_LAYER_NORM;
        d->push.f[0] = (float)bstc_attr_float(n, BST_ATTR_EPS, 0.0);
        break;
    case BST_OP_SOFTMAX:
        d = add(p, s, VKS_SOFTMAX, row_wg(dev, s->out.ne[3]), VKB_ITEMS_ROWS0, OUT, A,
                n->n_inputs == 2 ? B : 0, 0);
        p->key[0].spec[SPEC_X] = n->n_inputs == 2;
        d->push.f[0] = (float)bstc_attr_float(n, BST_ATTR_SCALE, 1.0);
        break;
    case BST_OP_ROPE: {
        d = add(p, s, VKS_ROPE, 64, VKB_ITEMS_ROPE, OUT, A, B, 0);
        int64_t dims = bstc_attr_int(n, BST_ATTR_ROPE_DIMS, 2);
        p->key[0].spec[SPEC_OP] = (uint32_t)bstc_attr_int(n, BST_ATTR_ROPE_MODE, 0);
        d->push.u[0] = (uint32_t)dims;
        p->aux_words = (uint32_t)dims; /* two words per rotated pair */
        break;
    }
    case BST_OP_ARGMAX:
        d = add(p, s, VKS_ARGMAX, row_wg(dev, s->in[0].ne[3]), VKB_ITEMS_ROWS1, OUT, A, 0, 0);
        d->shift_out = true; /* out has one dim less: its dims line up with x's outer ones */
        for (int j = 0; j < 3; j++)
            d->push.nb[0][j] = (uint32_t)s->out.nb[j + 1];
        d->push.nb[0][3] = 0;
        break;
    case BST_OP_MATMUL: {
        mm_kind kind = mm_kind_of(dev, s, variant);
        if (kind == MM_VEC) {
            int64_t m = s->in[0].ne[2];
            uint32_t mr = m <= 1 ? 1u : m <= 2 ? 2u : 4u;
            d = add(p, s, VKS_MATMUL_VEC, VEC_WG, VKB_ITEMS_MM, OUT, A, B, 0);
            p->key[0].spec[SPEC_X] = VEC_NR;
            p->key[0].spec[SPEC_X + 1] = mr;
            d->mm_tile[0] = mr;
            d->mm_tile[1] = VEC_NR;
        } else if (kind == MM_ROWS) {
            int64_t m = s->in[0].ne[2];
            uint32_t rm = m <= 1 ? 1u : m <= 2 ? 2u : 4u;
            d = add(p, s, VKS_MATMUL_ROWS, 64, VKB_ITEMS_MM_PATCH, OUT, A, B, 0);
            p->key[0].spec[SPEC_X] = rm;
            p->key[0].spec[SPEC_X + 1] = ROWS_RN;
            d->mm_tile[0] = rm;
            d->mm_tile[1] = ROWS_RN;
        } else {
            uint32_t wg = (TILE_BM / TILE_TM) * (TILE_BN / TILE_TN);
            d = add(p, s, VKS_MATMUL_TILED, wg, VKB_ITEMS_MM, OUT, A, B, 0);
            p->key[0].spec[SPEC_X] = TILE_BM;
            p->key[0].spec[SPEC_X + 1] = TILE_BN;
            p->key[0].spec[SPEC_X + 2] = TILE_TM;
            p->key[0].spec[SPEC_X + 3] = TILE_TN;
            d->mm_tile[0] = TILE_BM;
            d->mm_tile[1] = TILE_BN;
        }
        break;
    }
    case BST_OP_ATTENTION: {
        uint32_t wg = attention_wg(dev), dim = (uint32_t)s->in[0].ne[3]; /* checked: 1..256 */
        d = add(p, s, VKS_ATTENTION, wg, VKB_ITEMS_ROWS1, OUT, A, B, C);
        if (n->n_inputs == 4) {
            d->src[4] = VKB_SRC_IN0 + 3;
            p->key[0].spec[SPEC_X] = 1;
            p->key[0].spec[SPEC_X + 1] = s->in[3].dtype;
            d->push.u[2] = (uint32_t)s->in[3].nb[2]; /* checked: 0 <= stride < 2^32 */
            d->push.u[3] = (uint32_t)s->in[3].nb[3];
        }
        p->key[0].spec[SPEC_X + 2] = dim;
        p->key[0].spec[SPEC_X + 3] = (dim + wg - 1) / wg;
        int64_t window = bstc_attr_int(n, BST_ATTR_WINDOW, 0); /* checked: >= 0 */
        d->push.u[0] = bstc_attr_int(n, BST_ATTR_CAUSAL, 0) != 0;
        d->push.u[1] = (uint32_t)(window > INT32_MAX ? INT32_MAX : window); /* > S: no effect */
        d->push.f[0] = (float)bstc_attr_float(n, BST_ATTR_SCALE, 1.0 / sqrt((double)dim));
        break;
    }
    case BST_OP_VIEW:
    case BST_OP_RESHAPE:
    case BST_OP_PERMUTE:
    case BST_OP_TRANSPOSE:
        break; /* the memory planner aliased it: nothing to run */
    default:
        snprintf(msg, cap, "no kernel for %s", vkb_op_name(n->op));
        return BST_ERR_UNSUPPORTED;
    }
    return BST_OK;
}

void vkb_plan_aux(const vkb_node *n, const vkb_plan *p, uint32_t *out)
{
    if (n->op != BST_OP_ROPE || p->aux_words == 0)
        return;
    /* Per rotated pair i: base^(-2i/dims) radians per position as a 64-bit fixed-point
     * fraction of a turn (see shaders/rope.comp). */
    const double theta = bstc_attr_float(n, BST_ATTR_ROPE_THETA, 10000.0);
    const int64_t dims = bstc_attr_int(n, BST_ATTR_ROPE_DIMS, 2);
    const double two_pi = 6.283185307179586476925286766559;
    for (int64_t i = 0; i < dims / 2; i++) {
        double turns = pow(theta, -2.0 * (double)i / (double)dims) / two_pi;
        double frac = turns - floor(turns);
        double hi = floor(ldexp(frac, 32));
        double lo = floor(ldexp(ldexp(frac, 32) - hi, 32));
        if (hi > 4294967295.0)
            hi = 4294967295.0;
        if (lo > 4294967295.0)
            lo = 4294967295.0;
        out[2 * i] = (uint32_t)hi;
        out[2 * i + 1] = (uint32_t)lo;
    }
}
