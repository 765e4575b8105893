/*
 * graph/pass_fold.c — constant folding and algebraic simplification.
 *
 *  - A pure op whose inputs are all constant (a CONST, or an alias of one) is evaluated here and
 *    becomes a CONST, for outputs of at most FOLD_MAX_ELEMENTS elements so folding never bloats a
 *    graph: reshape, view, permute, transpose and cont (byte moves, any plain dtype; contiguous
 *    runs of block types), and in f32 add, mul (with broadcast), scale, silu, gelu, cast to f32.
 *    The evaluator follows the op semantics of backend.h and computes in float, as the reference
 *    kernels do. A VIEW's strides and offset are bytes of the memory it aliases, so an alias is
 *    turned into a CONST (fresh dense memory) only when no VIEW reads through it, or when its
 *    bytes would not move; constant values are always read out of their root CONST.
 *  - scale(scale(x, a), b) becomes scale(x, a*b) whatever x is.
 *  - Identities disappear: aliases that change nothing (reshape to the same shape, a view or
 *    permute equal to its input) and copies that change nothing (scale by exactly 1, cast to the
 *    same dtype, cont of a contiguous value).
 *
 * Bypassing a node makes its users read the node's input later than before. For a value that
 * depends on a STATE that matters — a SET_ROWS in between changes the memory — so a compute
 * identity over state-derived data is kept, and a scale chain over it collapses only when no
 * effect lies between the two scales. Graph outputs are never bypassed (they keep their node and
 * name); a folded output becomes a CONST that keeps its name. Nodes left without users by
 * folding are removed. Every node is re-inferred when the pass reaches it, so types and alias
 * fields always describe the inputs as they are after the edits above it.
 */
#include "graph/passes.h"
#include "graph/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FOLD_MAX_ELEMENTS ((int64_t)1 << 20)

typedef struct fold_ctx {
    bst_graph *g;
    uint32_t *uses;
    uint32_t *fwd; /* value -> value that replaces it (itself if none) */
    bool *removed;
    bool *state;
    uint32_t *epoch;
    bool *view_below; /* a VIEW reads this value's memory, directly or through aliases */
    bool changed;
} fold_ctx;

static bool removable(const bsti_node *n)
{
    return !(n->flags & BSTI_NODE_OUTPUT) && !bsti_pass_is_effect(n) && n->op != BST_OP_INPUT &&
           n->op != BST_OP_STATE;
}

/* Drops one use of `v`; a node folding left without users goes, and releases its own inputs.
 * Worklist instead of recursion: chains can be thousands of nodes long. */
static void release(fold_ctx *c, uint32_t v)
{
    uint32_t stack[64];
    uint32_t top = 0;
    stack[top++] = v;
    while (top > 0) {
        uint32_t x = stack[--top];
        if (c->uses[x] > 0)
            c->uses[x]--;
        if (c->uses[x] != 0 || c->removed[x] || !removable(&c->g->nodes[x]))
            continue;
        c->removed[x] = true;
        c->changed = true;
        const bsti_node *n = &c->g->nodes[x];
        for (uint32_t k = 0; k < n->n_inputs; k++) {
            if (top < sizeof stack / sizeof stack[0])
                stack[top++] = n->inputs[k];
            else if (c->uses[n->inputs[k]] > 0)
                c->uses[n->inputs[k]]--; /* stays as dead code for DCE: still a valid graph */
        }
    }
}

static uint32_t root_of(const bst_graph *g, uint32_t v)
{
    return g->nodes[v].alias_of != BSTI_NONE ? g->nodes[v].alias_of : v;
}

static uint64_t offset_in_root(const bst_graph *g, uint32_t v)
{
    return g->nodes[v].alias_of != BSTI_NONE ? g->nodes[v].alias_offset : 0;
}

static bool types_equal(const bsti_type *a, const bsti_type *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank)
        return false;
    for (uint32_t d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d] || a->strides[d] != b->strides[d] || a->sym[d] != b->sym[d])
            return false;
    return true;
}

static bool has_symbols(const bsti_type *t)
{
    for (uint32_t d = 0; d < t->rank; d++)
        if (t->sym[d] != BST_SYM_NONE)
            return true;
    return false;
}

/* Makes later nodes read `to` where they read `from`. Later nodes pick it up through fwd when
 * the main loop reaches them. */
static void forward(fold_ctx *c, uint32_t from, uint32_t to)
{
    c->fwd[from] = to;
    c->uses[to] += c->uses[from];
    c->uses[from] = 0;
    c->removed[from] = true;
    c->changed = true;
    const bsti_node *n = &c->g->nodes[from];
    for (uint32_t k = 0; k < n->n_inputs; k++)
        release(c, n->inputs[k]);
}

/* --- identities --- */

static bool is_identity(const fold_ctx *c, uint32_t id)
{
    const bsti_node *n = &c->g->nodes[id];
    if (n->n_inputs < 1 || (n->flags & BSTI_NODE_OUTPUT))
        return false;
    uint32_t x = n->inputs[0];
    const bsti_node *in = &c->g->nodes[x];
    if (!types_equal(&n->type, &in->type))
        return false;
    switch (n->op) {
    case BST_OP_RESHAPE:
    case BST_OP_VIEW:
    case BST_OP_PERMUTE:
        /* Same memory, same shape and strides: users see exactly what they saw. */
        return n->alias_of == root_of(c->g, x) && n->alias_offset == offset_in_root(c->g, x);
    case BST_OP_SCALE:
        if (in->type.dtype != BST_DTYPE_F32 || bsti_attr_float(n, BST_ATTR_SCALE, 1.0) != 1.0)
            return false;
        return !c->state[x];
    case BST_OP_CAST:
        return bsti_attr_int(n, BST_ATTR_DTYPE, -1) == (int64_t)in->type.dtype && !c->state[x];
    case BST_OP_CONT:
        return !c->state[x];
    default:
        return false;
    }
}

/* --- scale chains --- */

static bst_status set_scale(bsti_node *n, double scale)
{
    for (uint32_t a = 0; a < n->n_attrs; a++) {
        if (n->attrs[a].key == BST_ATTR_SCALE) {
            n->attrs[a].f = scale;
            return BST_OK;
        }
    }
    if (n->n_attrs >= BST_MAX_ATTRS)
        return BST_ERR_INTERNAL;
    bst_attr *at = &n->attrs[n->n_attrs++];
    memset(at, 0, sizeof *at);
    at->struct_size = sizeof *at;
    at->key = BST_ATTR_SCALE;
    at->kind = BST_ATTR_KIND_FLOAT;
    at->count = 1;
    at->f = scale;
    return BST_OK;
}

static void fold_scale_chain(fold_ctx *c, uint32_t id)
{
    bsti_node *n = &c->g->nodes[id];
    if (n->op != BST_OP_SCALE || n->n_inputs != 1)
        return;
    uint32_t inner = n->inputs[0];
    const bsti_node *in = &c->g->nodes[inner];
    if (in->op != BST_OP_SCALE || in->n_inputs != 1)
        return;
    uint32_t x = in->inputs[0];
    if (c->state[x] && c->epoch[inner] != c->epoch[id])
        return; /* an effect between the scales: x's memory changed */
    double a = bsti_attr_float(in, BST_ATTR_SCALE, 1.0);
    double b = bsti_attr_float(n, BST_ATTR_SCALE, 1.0);
    if (set_scale(n, a * b) != BST_OK)
        return;
    n->inputs[0] = x;
    c->uses[x]++;
    c->changed = true;
    release(c, inner);
}

/* --- constant evaluation --- */

/* Values are "constant" when they are a CONST or an alias whose memory is a CONST. An alias's
 * strides and offset are bytes of its root's memory, so values are always read out of the root. */
static bool const_valued(const bst_graph *g, uint32_t v)
{
    const bsti_node *root = &g->nodes[root_of(g, v)];
    return root->op == BST_OP_CONST && (root->const_data || root->data_size == 0) &&
           !has_symbols(&g->nodes[v].type);
}

/* Copies the elements of the strided type `t` out of `src` (size bytes) from `offset` into a
 * dense buffer; false when an element would fall outside src. Plain dtypes only. */
static bool gather(const bsti_type *t, const void *src, uint64_t size, uint64_t offset,
                   void *dst, int64_t count)
{
    uint32_t es = bst_dtype_block_bytes(t->dtype);
    int64_t idx[BST_MAX_DIMS] = {0};
    unsigned char *out = dst;
    for (int64_t i = 0; i < count; i++) {
        uint64_t at = offset;
        for (uint32_t d = 0; d < t->rank; d++)
            at += (uint64_t)(idx[d] * t->strides[d]);
        if (at > size || size - at < es)
            return false;
        memcpy(out + (size_t)i * es, (const unsigned char *)src + at, es);
        for (uint32_t d = t->rank; d-- > 0;) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return true;
}

/* Dense bytes of constant value `v` (its own dtype, contiguous) in a new buffer, or NULL. */
static void *materialize(const bst_graph *g, uint32_t v, int64_t *out_count, uint64_t *out_bytes)
{
    const bsti_node *n = &g->nodes[v];
    const bsti_node *root = &g->nodes[root_of(g, v)];
    uint64_t offset = offset_in_root(g, v);
    int64_t count = 0;
    uint64_t bytes = 0;
    bsti_type dense = n->type;
    bsti_type_set_contiguous(&dense);
    if (bsti_type_nelements(&n->type, &count) != BST_OK || count > FOLD_MAX_ELEMENTS ||
        bsti_type_nbytes(&dense, &bytes) != BST_OK)
        return NULL;
    void *data = malloc(bytes ? (size_t)bytes : 1);
    if (!data)
        return NULL;
    bool ok;
    if (bst_dtype_block_size(n->type.dtype) == 1) {
        ok = gather(&n->type, root->const_data, root->data_size, offset, data, count);
    } else {
        /* Blocks cannot be gathered element-wise; a contiguous run is a plain copy. */
        ok = bsti_type_is_contiguous(&n->type) && offset <= root->data_size &&
             root->data_size - offset >= bytes;
        if (ok && bytes)
            memcpy(data, (const unsigned char *)root->const_data + offset, (size_t)bytes);
    }
    if (!ok) {
        free(data);
        return NULL;
    }
    *out_count = count;
    *out_bytes = bytes;
    return data;
}

/* Dense f32 copy of constant value `v` (f32 or i32 elements), or NULL. */
static float *materialize_f32(const bst_graph *g, uint32_t v, int64_t *out_count)
{
    bst_dtype dt = g->nodes[v].type.dtype;
    if (dt != BST_DTYPE_F32 && dt != BST_DTYPE_I32)
        return NULL;
    uint64_t bytes = 0;
    void *raw = materialize(g, v, out_count, &bytes);
    if (!raw || dt == BST_DTYPE_F32)
        return raw;
    /* i32 -> f32 in place: both are 4 bytes wide. */
    int32_t *ints = raw;
    float *floats = raw;
    for (int64_t i = 0; i < *out_count; i++) {
        int32_t x = ints[i];
        floats[i] = (float)x;
    }
    return floats;
}

static float gelu(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    const float coef_a = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + coef_a * x * x)));
}

/* Elementwise add/mul with b broadcast (aligned at the innermost dim, each dim equal or 1). */
static bool eval_binary(const bsti_type *ta, float *a, const bsti_type *tb, const float *b,
                        bool is_add, int64_t count)
{
    if (tb->rank > ta->rank)
        return false;
    uint32_t shift = ta->rank - tb->rank;
    int64_t bstride[BST_MAX_DIMS] = {0};
    int64_t s = 1;
    for (uint32_t d = tb->rank; d-- > 0;) {
        if (tb->shape[d] != 1 && tb->shape[d] != ta->shape[d + shift])
            return false;
        bstride[d + shift] = tb->shape[d] == 1 ? 0 : s;
        s *= tb->shape[d];
    }
    int64_t idx[BST_MAX_DIMS] = {0};
    for (int64_t i = 0; i < count; i++) {
        int64_t bi = 0;
        for (uint32_t d = 0; d < ta->rank; d++)
            bi += idx[d] * bstride[d];
        a[i] = is_add ? a[i] + b[bi] : a[i] * b[bi];
        for (uint32_t d = ta->rank; d-- > 0;) {
            if (++idx[d] < ta->shape[d])
                break;
            idx[d] = 0;
        }
    }
    return true;
}

/* Evaluates node `id` over its constant inputs into a new dense buffer; false when it cannot
 * (op or dtype not covered, too large). */
static bool evaluate(const bst_graph *g, uint32_t id, void **out_data, uint64_t *out_size)
{
    const bsti_node *n = &g->nodes[id];
    const bsti_op_info *info = bsti_op_get(n->op);
    int64_t count = 0;
    uint64_t bytes = 0;
    if (info->is_alias) {
        /* The node's own type and alias fields say which root bytes it shows. */
        void *data = materialize(g, id, &count, &bytes);
        if (!data)
            return false;
        *out_data = data;
        *out_size = bytes;
        return true;
    }
    if (n->op == BST_OP_CONT) {
        if (g->nodes[n->inputs[0]].type.dtype != n->type.dtype)
            return false;
        void *data = materialize(g, n->inputs[0], &count, &bytes);
        if (!data)
            return false;
        *out_data = data;
        *out_size = bytes;
        return true;
    }
    if (n->type.dtype != BST_DTYPE_F32)
        return false;
    float *out = materialize_f32(g, n->inputs[0], &count);
    if (!out)
        return false;
    bool ok = true;
    switch (n->op) {
    case BST_OP_SCALE: {
        float s = (float)bsti_attr_float(n, BST_ATTR_SCALE, 1.0);
        for (int64_t i = 0; i < count; i++)
            out[i] *= s;
        break;
    }
    case BST_OP_SILU:
        for (int64_t i = 0; i < count; i++)
            out[i] = out[i] / (1.0f + expf(-out[i]));
        break;
    case BST_OP_GELU:
        for (int64_t i = 0; i < count; i++)
            out[i] = gelu(out[i]);
        break;
    case BST_OP_CAST:
        ok = bsti_attr_int(n, BST_ATTR_DTYPE, -1) == BST_DTYPE_F32;
        break;
    case BST_OP_ADD:
    case BST_OP_MUL: {
        int64_t bcount = 0;
        float *b = materialize_f32(g, n->inputs[1], &bcount);
        ok = b && eval_binary(&g->nodes[n->inputs[0]].type, out, &g->nodes[n->inputs[1]].type, b,
                              n->op == BST_OP_ADD, count);
        free(b);
        break;
    }
    default:
        ok = false;
        break;
    }
    if (!ok) {
        free(out);
        return false;
    }
    *out_data = out;
    *out_size = (uint64_t)count * sizeof(float);
    return true;
}

/* An alias turned into a CONST gets its own dense memory. A VIEW further down (directly or
 * through other aliases) addresses bytes of the memory it aliases, so that is only allowed when
 * the bytes stay where they were: the alias already covered its whole root contiguously. */
static bool alias_may_become_const(const fold_ctx *c, uint32_t id)
{
    if (!c->view_below[id])
        return true;
    const bst_graph *g = c->g;
    const bsti_node *n = &g->nodes[id];
    uint64_t bytes = 0, root_bytes = 0;
    return n->alias_offset == 0 && bsti_type_is_contiguous(&n->type) &&
           bsti_type_nbytes(&n->type, &bytes) == BST_OK &&
           bsti_type_nbytes(&g->nodes[root_of(g, id)].type, &root_bytes) == BST_OK &&
           bytes == root_bytes;
}

static bool foldable(const fold_ctx *c, uint32_t id)
{
    const bsti_node *n = &c->g->nodes[id];
    const bsti_op_info *info = bsti_op_get(n->op);
    if (!info || info->is_source || info->has_effect || info->is_high_level ||
        n->n_inputs == 0 || has_symbols(&n->type))
        return false;
    if (info->is_alias && !alias_may_become_const(c, id))
        return false;
    for (uint32_t k = 0; k < n->n_inputs; k++)
        if (!const_valued(c->g, n->inputs[k]))
            return false;
    return true;
}

static void fold_constant(fold_ctx *c, uint32_t id)
{
    if (!foldable(c, id))
        return;
    void *data = NULL;
    uint64_t size = 0;
    if (!evaluate(c->g, id, &data, &size))
        return;
    bsti_node *n = &c->g->nodes[id];
    uint32_t inputs[BST_MAX_INPUTS];
    uint32_t n_inputs = n->n_inputs;
    memcpy(inputs, n->inputs, sizeof inputs);
    n->op = BST_OP_CONST;
    n->n_inputs = 0;
    memset(n->inputs, 0, sizeof n->inputs);
    n->n_attrs = 0;
    memset(n->attrs, 0, sizeof n->attrs);
    bsti_type_set_contiguous(&n->type);
    n->alias_of = BSTI_NONE;
    n->alias_offset = 0;
    n->const_data = data;
    n->data_size = size;
    c->changed = true;
    for (uint32_t k = 0; k < n_inputs; k++)
        release(c, inputs[k]);
}

bst_status bsti_pass_fold(bst_graph *g)
{
    if (!g)
        return bsti_fail(BST_ERR_INVALID_ARG, "fold: graph is NULL");
    uint32_t n = g->n_nodes;
    if (n == 0)
        return BST_OK;
    fold_ctx c = {g, NULL, NULL, NULL, NULL, NULL, NULL, false};
    c.uses = malloc(n * sizeof *c.uses);
    c.fwd = malloc(n * sizeof *c.fwd);
    c.removed = calloc(n, sizeof *c.removed);
    c.state = malloc(n * sizeof *c.state);
    c.epoch = malloc(n * sizeof *c.epoch);
    c.view_below = calloc(n, sizeof *c.view_below);
    bst_status st = BST_OK;
    bool *keep = NULL;
    if (!c.uses || !c.fwd || !c.removed || !c.state || !c.epoch || !c.view_below) {
        st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "fold: out of memory for %u nodes", n);
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        const bsti_node *node = &g->nodes[i];
        for (uint32_t k = 0; k < node->n_inputs && k < BST_MAX_INPUTS; k++) {
            if (node->inputs[k] >= i) {
                char where[BSTI_WHERE_MAX];
                st = bsti_fail(BST_ERR_GRAPH, "fold: %s: input %u (%%%u) is not defined before it",
                               bsti_pass_where(g, i, where), k, node->inputs[k]);
                goto done;
            }
        }
        c.fwd[i] = i;
    }
    bsti_pass_use_counts(g, c.uses);
    bsti_pass_state_analysis(g, c.state, c.epoch);
    for (uint32_t i = n; i-- > 0;) {
        const bsti_node *node = &g->nodes[i];
        const bsti_op_info *info = bsti_op_get(node->op);
        bool reads_bytes = node->op == BST_OP_VIEW || (info && info->is_alias && c.view_below[i]);
        for (uint32_t k = 0; k < node->n_inputs && reads_bytes; k++)
            c.view_below[node->inputs[k]] = true;
    }

    for (uint32_t i = 0; i < n && st == BST_OK; i++) {
        bsti_node *node = &g->nodes[i];
        for (uint32_t k = 0; k < node->n_inputs; k++)
            node->inputs[k] = c.fwd[node->inputs[k]];
        if (c.removed[i])
            continue;
        /* An input may have been folded or bypassed: alias roots and strides follow it, so the
         * node is re-inferred from its inputs as they are now (cheap, and never stale). */
        if (node->n_inputs > 0) {
            st = bsti_infer_node(g, i);
            if (st != BST_OK) {
                char where[BSTI_WHERE_MAX];
                st = bsti_fail_context(st, "fold: %s", bsti_pass_where(g, i, where));
                break;
            }
        }
        if (bsti_pass_is_effect(node))
            continue;
        fold_scale_chain(&c, i);
        if (is_identity(&c, i)) {
            forward(&c, i, node->inputs[0]);
            continue;
        }
        fold_constant(&c, i);
    }

    /* Even after a failure the graph must stay consistent: removed nodes go. */
    if (!c.changed)
        goto done;
    bool any_removed = false;
    for (uint32_t i = 0; i < n; i++)
        any_removed |= c.removed[i];
    if (any_removed) {
        keep = malloc(n * sizeof *keep);
        if (!keep) {
            st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "fold: out of memory for %u nodes", n);
            goto done;
        }
        for (uint32_t i = 0; i < n; i++)
            keep[i] = !c.removed[i];
        bst_status cst = bsti_graph_compact(g, keep, NULL);
        if (cst != BST_OK && st == BST_OK)
            st = bsti_fail_context(cst, "fold");
    }
done:
    free(c.uses);
    free(c.fwd);
    free(c.removed);
    free(c.state);
    free(c.epoch);
    free(c.view_below);
    free(keep);
    return st;
}
