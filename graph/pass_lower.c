/*
 * graph/pass_lower.c — lowering of high-level ops (ATTENTION, FFN_SWIGLU, RMS_NORM_MUL) into
 * primitives, exactly per their semantics in backend.h, so a lowered graph computes what a
 * backend's fused kernel computes:
 *
 *   rms_norm_mul(x, w)          -> mul(rms_norm(x), w)
 *   ffn_swiglu(x, g, u, d)      -> matmul(mul(silu(matmul(x, g)), matmul(x, u)), d)
 *   attention(q, k, v [, mask]) -> qp = permute(q, [1,0,2])             [Hq,T,D]
 *                                  kp = permute(k, [1,0,2])             [Hkv,S,D]
 *                                  s  = matmul(qp, kp)                  [Hq,T,S] (grouped: GQA)
 *                                  p  = softmax(s [, m]) scale=SCALE
 *                                  vt = permute(v, [1,2,0])             [Hkv,D,S]
 *                                  o  = matmul(p, vt)                   [Hq,T,D]
 *                                  cont(permute(o, [1,0,2]))            [T,Hq,D]
 *
 * Masking: with CAUSAL or WINDOW and static T and S, the mask those attributes describe is built
 * here as an f32[T,S] CONST (0 where key j is visible to query t, -INFINITY where not) and added
 * to the explicit mask when there is one. With a symbolic T or S that constant cannot exist (the
 * visible keys depend on the bound values), so the model must pass the mask as an input, and that
 * mask must already hide what CAUSAL/WINDOW hide; without one the pass fails with
 * BST_ERR_UNSUPPORTED.
 *
 * Inserting nodes means renumbering: the pass rebuilds the graph into a new node array in
 * topological order, placing each lowering right where the high-level node stood, and swaps it in
 * only when everything succeeded (on failure the graph is untouched). The lowering's last node
 * takes the high-level node's output flag and name, and every use of the old value.
 */
#include "graph/passes.h"
#include "graph/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rebuild state: the new graph, old id -> new id, and the node being lowered (for messages and
 * for the line/col the new nodes inherit). */
typedef struct rebuild {
    const bst_graph *old;
    bst_graph *ng;
    uint32_t *map;
    uint32_t current;
} rebuild;

static bst_status lower_fail(const rebuild *r, bst_status st, const char *what)
{
    char where[BSTI_WHERE_MAX];
    return bsti_fail(st, "lower: %s: %s", bsti_pass_where(r->old, r->current, where), what);
}

static void init_node(const rebuild *r, bsti_node *n, bst_op op)
{
    memset(n, 0, sizeof *n);
    n->op = op;
    n->alias_of = BSTI_NONE;
    n->device = BSTI_NONE;
    n->variant = BSTI_NONE;
    n->line = r->old->nodes[r->current].line;
    n->col = r->old->nodes[r->current].col;
}

/* Appends an op node to the new graph and infers its type. */
static bst_status emit(rebuild *r, bst_op op, const uint32_t *inputs, uint32_t n_inputs,
                       const bst_attr *attrs, uint32_t n_attrs, uint32_t *out_id)
{
    bsti_node n;
    init_node(r, &n, op);
    n.n_inputs = n_inputs;
    memcpy(n.inputs, inputs, n_inputs * sizeof inputs[0]);
    n.n_attrs = n_attrs;
    if (n_attrs)
        memcpy(n.attrs, attrs, n_attrs * sizeof attrs[0]);
    uint32_t id = 0;
    bst_status st = bsti_graph_append(r->ng, &n, &id);
    if (st != BST_OK)
        return bsti_fail_context(st, "lower");
    st = bsti_infer_node(r->ng, id);
    if (st != BST_OK) {
        char where[BSTI_WHERE_MAX];
        return bsti_fail_context(st, "lower: %s: lowered %s",
                                 bsti_pass_where(r->old, r->current, where), bst_op_name(op));
    }
    *out_id = id;
    return BST_OK;
}

static bst_status emit1(rebuild *r, bst_op op, uint32_t a, const bst_attr *attrs,
                        uint32_t n_attrs, uint32_t *out_id)
{
    return emit(r, op, &a, 1, attrs, n_attrs, out_id);
}

static bst_status emit2(rebuild *r, bst_op op, uint32_t a, uint32_t b, const bst_attr *attrs,
                        uint32_t n_attrs, uint32_t *out_id)
{
    uint32_t in[2] = {a, b};
    return emit(r, op, in, 2, attrs, n_attrs, out_id);
}

static bst_status lower_rms_norm_mul(rebuild *r, const bsti_node *n, uint32_t *out_id)
{
    const bst_attr *eps = bsti_node_attr(n, BST_ATTR_EPS);
    uint32_t norm = 0;
    bst_status st = emit1(r, BST_OP_RMS_NORM, r->map[n->inputs[0]], eps, eps ? 1u : 0u, &norm);
    if (st != BST_OK)
        return st;
    return emit2(r, BST_OP_MUL, norm, r->map[n->inputs[1]], NULL, 0, out_id);
}

static bst_status lower_ffn_swiglu(rebuild *r, const bsti_node *n, uint32_t *out_id)
{
    uint32_t x = r->map[n->inputs[0]];
    uint32_t gate = 0, up = 0, act = 0, prod = 0;
    bst_status st = emit2(r, BST_OP_MATMUL, x, r->map[n->inputs[1]], NULL, 0, &gate);
    if (st == BST_OK)
        st = emit2(r, BST_OP_MATMUL, x, r->map[n->inputs[2]], NULL, 0, &up);
    if (st == BST_OK)
        st = emit1(r, BST_OP_SILU, gate, NULL, 0, &act);
    if (st == BST_OK)
        st = emit2(r, BST_OP_MUL, act, up, NULL, 0, &prod);
    if (st == BST_OK)
        st = emit2(r, BST_OP_MATMUL, prod, r->map[n->inputs[3]], NULL, 0, out_id);
    return st;
}

/* f32[T,S] of 0 / -INFINITY: query t sits at position p = S - T + t; key j is hidden when
 * causal and j > p, or when window > 0 and j <= p - window. */
static bst_status emit_causal_mask(rebuild *r, int64_t T, int64_t S, bool causal, int64_t window,
                                   uint32_t *out_id)
{
    if (T > INT64_MAX / S || T * S > (int64_t)(SIZE_MAX / sizeof(float)))
        return lower_fail(r, BST_ERR_OVERFLOW, "causal mask size overflows");
    size_t count = (size_t)(T * S);
    float *data = malloc(count * sizeof *data);
    if (!data)
        return lower_fail(r, BST_ERR_OUT_OF_MEMORY, "out of memory for the causal mask");
    for (int64_t t = 0; t < T; t++) {
        int64_t p = S - T + t;
        for (int64_t j = 0; j < S; j++) {
            bool hidden = (causal && j > p) || (window > 0 && j <= p - window);
            data[t * S + j] = hidden ? -INFINITY : 0.0f;
        }
    }
    bsti_node n;
    init_node(r, &n, BST_OP_CONST);
    n.type.dtype = BST_DTYPE_F32;
    n.type.rank = 2;
    n.type.shape[0] = T;
    n.type.shape[1] = S;
    bsti_type_set_contiguous(&n.type);
    n.const_data = data;
    n.data_size = count * sizeof *data;
    bst_status st = bsti_graph_append(r->ng, &n, out_id); /* owns data, even on failure */
    if (st != BST_OK)
        return bsti_fail_context(st, "lower");
    return BST_OK;
}

static bst_status lower_attention(rebuild *r, const bsti_node *n, uint32_t *out_id)
{
    uint32_t q = r->map[n->inputs[0]], k = r->map[n->inputs[1]], v = r->map[n->inputs[2]];
    uint32_t mask = n->n_inputs > 3 ? r->map[n->inputs[3]] : BSTI_NONE;
    const bsti_type *tq = &r->ng->nodes[q].type, *tk = &r->ng->nodes[k].type;
    const bsti_type *tv = &r->ng->nodes[v].type;
    if (tq->rank != 3 || tk->rank != 3 || tv->rank != 3)
        return lower_fail(r, BST_ERR_SHAPE, "q, k and v must have rank 3 ([T,H,D])");
    bool causal = bsti_attr_int(n, BST_ATTR_CAUSAL, 0) != 0;
    int64_t window = bsti_attr_int(n, BST_ATTR_WINDOW, 0);
    double scale = bsti_attr_float(n, BST_ATTR_SCALE, 1.0 / sqrt((double)tq->shape[2]));
    bool symbolic = tq->sym[0] != BST_SYM_NONE || tk->sym[0] != BST_SYM_NONE;
    bst_status st = BST_OK;

    if ((causal || window > 0) && !symbolic) {
        uint32_t built = 0;
        st = emit_causal_mask(r, tq->shape[0], tk->shape[0], causal, window, &built);
        if (st == BST_OK && mask != BSTI_NONE)
            st = emit2(r, BST_OP_ADD, built, mask, NULL, 0, &built);
        if (st != BST_OK)
            return st;
        mask = built;
    } else if ((causal || window > 0) && mask == BSTI_NONE) {
        return lower_fail(r, BST_ERR_UNSUPPORTED,
                          "attention with symbolic dims needs an explicit mask input");
    }

    static const int64_t swap01[3] = {1, 0, 2}, to_hds[3] = {1, 2, 0};
    bst_attr p01 = bst_attr_ints(BST_ATTR_PERM, swap01, 3);
    bst_attr phds = bst_attr_ints(BST_ATTR_PERM, to_hds, 3);
    bst_attr sc = bst_attr_float(BST_ATTR_SCALE, scale);
    uint32_t qp = 0, kp = 0, scores = 0, probs = 0, vt = 0, out = 0, outp = 0;
    st = emit1(r, BST_OP_PERMUTE, q, &p01, 1, &qp);
    if (st == BST_OK)
        st = emit1(r, BST_OP_PERMUTE, k, &p01, 1, &kp);
    if (st == BST_OK)
        st = emit2(r, BST_OP_MATMUL, qp, kp, NULL, 0, &scores);
    if (st == BST_OK) {
        if (mask != BSTI_NONE)
            st = emit2(r, BST_OP_SOFTMAX, scores, mask, &sc, 1, &probs);
        else
            st = emit1(r, BST_OP_SOFTMAX, scores, &sc, 1, &probs);
    }
    if (st == BST_OK)
        st = emit1(r, BST_OP_PERMUTE, v, &phds, 1, &vt);
    if (st == BST_OK)
        st = emit2(r, BST_OP_MATMUL, probs, vt, NULL, 0, &out);
    if (st == BST_OK)
        st = emit1(r, BST_OP_PERMUTE, out, &p01, 1, &outp);
    if (st == BST_OK)
        st = emit1(r, BST_OP_CONT, outp, NULL, 0, out_id);
    return st;
}

/* Copies node `id` of the old graph into the new one with inputs renumbered. Names and const
 * data are copied, not moved, so the old graph stays whole until the swap. */
static bst_status copy_node(rebuild *r, uint32_t id, uint32_t *out_id)
{
    const bsti_node *o = &r->old->nodes[id];
    bsti_node n = *o;
    for (uint32_t k = 0; k < n.n_inputs; k++)
        n.inputs[k] = r->map[o->inputs[k]];
    if (o->alias_of != BSTI_NONE)
        n.alias_of = o->alias_of < id ? r->map[o->alias_of] : BSTI_NONE;
    n.name = NULL;
    n.const_data = NULL;
    if (o->name) {
        n.name = strdup(o->name);
        if (!n.name)
            return lower_fail(r, BST_ERR_OUT_OF_MEMORY, "out of memory copying a name");
    }
    if (o->const_data) {
        n.const_data = malloc(o->data_size ? (size_t)o->data_size : 1);
        if (!n.const_data) {
            free(n.name);
            return lower_fail(r, BST_ERR_OUT_OF_MEMORY, "out of memory copying a constant");
        }
        memcpy(n.const_data, o->const_data, (size_t)o->data_size);
    }
    bst_status st = bsti_graph_append(r->ng, &n, out_id); /* owns both, even on failure */
    if (st != BST_OK)
        return bsti_fail_context(st, "lower");
    const bsti_op_info *info = bsti_op_get(o->op);
    if (info && !info->is_source) {
        /* New ids for the inputs: alias fields follow them. */
        st = bsti_infer_node(r->ng, *out_id);
        if (st != BST_OK) {
            char where[BSTI_WHERE_MAX];
            return bsti_fail_context(st, "lower: %s", bsti_pass_where(r->old, id, where));
        }
    }
    return BST_OK;
}

static bst_status lower_node(rebuild *r, uint32_t id, uint32_t *out_id)
{
    const bsti_node *n = &r->old->nodes[id];
    r->current = id;
    bst_status st;
    switch (n->op) {
    case BST_OP_RMS_NORM_MUL: st = lower_rms_norm_mul(r, n, out_id); break;
    case BST_OP_FFN_SWIGLU: st = lower_ffn_swiglu(r, n, out_id); break;
    case BST_OP_ATTENTION: st = lower_attention(r, n, out_id); break;
    default: return lower_fail(r, BST_ERR_UNSUPPORTED, "no lowering rule for this op");
    }
    if (st != BST_OK)
        return st;
    bsti_node *last = &r->ng->nodes[*out_id];
    last->flags |= n->flags & BSTI_NODE_OUTPUT;
    if (n->name) {
        last->name = strdup(n->name);
        if (!last->name)
            return lower_fail(r, BST_ERR_OUT_OF_MEMORY, "out of memory copying a name");
    }
    return BST_OK;
}

bst_status bsti_pass_lower(bst_graph *g, bsti_keep_fn keep, void *user)
{
    if (!g)
        return bsti_fail(BST_ERR_INVALID_ARG, "lower: graph is NULL");
    uint32_t n = g->n_nodes;
    if (n == 0)
        return BST_OK;
    /* Decide everything first: `keep` sees the graph as it was given. */
    bool *lower = calloc(n, sizeof *lower);
    uint32_t *map = malloc(n * sizeof *map);
    if (!lower || !map) {
        free(lower);
        free(map);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "lower: out of memory for %u nodes", n);
    }
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        const bsti_op_info *info = bsti_op_get(g->nodes[i].op);
        lower[i] = info && info->is_high_level && !(keep && keep(user, g, i));
        any |= lower[i];
    }
    bst_status st = BST_OK;
    bst_graph *ng = NULL;
    if (!any)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        const bsti_node *node = &g->nodes[i];
        for (uint32_t k = 0; k < node->n_inputs && k < BST_MAX_INPUTS; k++) {
            if (node->inputs[k] >= i) {
                char where[BSTI_WHERE_MAX];
                st = bsti_fail(BST_ERR_GRAPH, "lower: %s: input %u (%%%u) is not defined before it",
                               bsti_pass_where(g, i, where), k, node->inputs[k]);
                goto done;
            }
        }
    }
    st = bst_graph_create(&ng);
    if (st != BST_OK)
        goto done;
    rebuild r = {g, ng, map, 0};
    for (uint32_t i = 0; i < n && st == BST_OK; i++)
        st = lower[i] ? lower_node(&r, i, &map[i]) : copy_node(&r, i, &map[i]);
    if (st == BST_OK) {
        /* Swap node arrays; destroying ng then frees the old nodes with the owner's code. */
        bsti_node *nodes = g->nodes;
        uint32_t count = g->n_nodes, cap = g->cap_nodes;
        g->nodes = ng->nodes;
        g->n_nodes = ng->n_nodes;
        g->cap_nodes = ng->cap_nodes;
        ng->nodes = nodes;
        ng->n_nodes = count;
        ng->cap_nodes = cap;
    }
done:
    bst_graph_destroy(ng);
    free(lower);
    free(map);
    return st;
}
