/*
 * graph/pass_verify.c — structural verification. Every pass and the runtime assume what this
 * checks (topological order, arity, attribute kinds, well-formed types, consistent alias fields,
 * effects that target state), so a graph from a file or from hand edits is checked once here and
 * the later code can index without re-checking. The last check re-runs the op's type rule and
 * compares, which catches a pass that edited a node and forgot to re-infer it.
 *
 * Every message starts "verify: %ID (op)[ at LINE:COL]: " so the user can find the node.
 */
#include "graph/passes.h"
#include "graph/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Fails with "verify: <where>: <message>". */
static bst_status node_fail(const bst_graph *g, uint32_t id, bst_status st, const char *fmt, ...)
    BST_PRINTF(4, 5);
static bst_status node_fail(const bst_graph *g, uint32_t id, bst_status st, const char *fmt, ...)
{
    char where[BSTI_WHERE_MAX];
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return bsti_fail(st, "verify: %s: %s", bsti_pass_where(g, id, where), message);
}

/* Dtype, rank, dims, symbols and strides; `materialized` nodes own contiguous memory. */
static bst_status check_type(const bst_graph *g, uint32_t id, bool materialized)
{
    const bsti_type *t = &g->nodes[id].type;
    uint32_t bs = bst_dtype_block_size(t->dtype);
    uint32_t bb = bst_dtype_block_bytes(t->dtype);
    if (bs == 0 || bb == 0)
        return node_fail(g, id, BST_ERR_SHAPE, "invalid dtype %d", (int)t->dtype);
    if (t->rank > BST_MAX_DIMS)
        return node_fail(g, id, BST_ERR_SHAPE, "rank %u exceeds the maximum of %d", t->rank,
                         BST_MAX_DIMS);
    for (uint32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] <= 0)
            return node_fail(g, id, BST_ERR_SHAPE, "dim %u is %lld; dims must be positive", d,
                             (long long)t->shape[d]);
        if (t->sym[d] >= BST_SYM_COUNT)
            return node_fail(g, id, BST_ERR_SHAPE, "dim %u has unknown symbol %u", d, t->sym[d]);
        if (t->strides[d] < 0 || t->strides[d] % (int64_t)bb != 0)
            return node_fail(g, id, BST_ERR_SHAPE,
                             "stride %lld of dim %u is not a non-negative multiple of the %s "
                             "element size %u",
                             (long long)t->strides[d], d, bst_dtype_name(t->dtype), bb);
    }
    if (bs > 1) {
        if (t->rank == 0 || t->shape[t->rank - 1] % bs != 0)
            return node_fail(g, id, BST_ERR_SHAPE,
                             "%s needs an innermost dim that is a multiple of its block size %u",
                             bst_dtype_name(t->dtype), bs);
        if (t->strides[t->rank - 1] != (int64_t)bb)
            return node_fail(g, id, BST_ERR_SHAPE,
                             "%s innermost stride is %lld, not the block size of %u bytes",
                             bst_dtype_name(t->dtype), (long long)t->strides[t->rank - 1], bb);
    }
    if (materialized && !bsti_type_is_contiguous(t))
        return node_fail(g, id, BST_ERR_SHAPE,
                         "strides are not contiguous for its shape, but it owns its memory");
    int64_t n = 0;
    bst_status st = bsti_type_nelements(t, &n);
    if (st != BST_OK)
        return node_fail(g, id, st, "element count overflows");
    return BST_OK;
}

/* Bytes an alias reaches into its root, from its offset, shape and strides. */
static bool alias_extent(const bsti_type *t, uint64_t offset, uint64_t *out_end)
{
    uint32_t bs = bst_dtype_block_size(t->dtype);
    uint64_t end = offset;
    for (uint32_t d = 0; d < t->rank; d++) {
        int64_t count = (d + 1 == t->rank && bs > 1) ? t->shape[d] / bs : t->shape[d];
        if (count <= 1)
            continue;
        uint64_t c1 = (uint64_t)(count - 1), stride = (uint64_t)t->strides[d];
        if (stride != 0 && c1 > UINT64_MAX / stride)
            return false;
        if (end > UINT64_MAX - c1 * stride)
            return false;
        end += c1 * stride;
    }
    uint64_t last = bst_dtype_block_bytes(t->dtype);
    if (end + last < end)
        return false;
    *out_end = end + last;
    return true;
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case BST_ATTR_KIND_INT: return "an int";
    case BST_ATTR_KIND_FLOAT: return "a float";
    case BST_ATTR_KIND_INTS: return "a list of ints";
    default: return "of unknown kind";
    }
}

static bst_status check_attrs(const bst_graph *g, uint32_t id)
{
    const bsti_node *n = &g->nodes[id];
    if (n->n_attrs > BST_MAX_ATTRS)
        return node_fail(g, id, BST_ERR_GRAPH, "%u attributes, more than the maximum of %d",
                         n->n_attrs, BST_MAX_ATTRS);
    for (uint32_t a = 0; a < n->n_attrs; a++) {
        const bst_attr *at = &n->attrs[a];
        if (at->key == BST_ATTR_NONE || at->key >= BST_ATTR_COUNT)
            return node_fail(g, id, BST_ERR_GRAPH, "attribute %u has unknown key %u", a, at->key);
        const char *name = bsti_attr_name((bst_attr_key)at->key);
        if (at->kind != (uint32_t)bsti_attr_kind((bst_attr_key)at->key))
            return node_fail(g, id, BST_ERR_GRAPH, "attribute %s is %s, but must be %s",
                             name ? name : "?", kind_name(at->kind),
                             kind_name((uint32_t)bsti_attr_kind((bst_attr_key)at->key)));
        if (!bsti_op_allows_attr(n->op, (bst_attr_key)at->key))
            return node_fail(g, id, BST_ERR_GRAPH, "%s takes no attribute %s",
                             bst_op_name(n->op), name ? name : "?");
        if (at->kind == BST_ATTR_KIND_INTS && at->count > BST_MAX_DIMS)
            return node_fail(g, id, BST_ERR_GRAPH, "attribute %s has %u ints, more than %d",
                             name ? name : "?", at->count, BST_MAX_DIMS);
        for (uint32_t b = 0; b < a; b++)
            if (n->attrs[b].key == at->key)
                return node_fail(g, id, BST_ERR_GRAPH, "attribute %s appears twice",
                                 name ? name : "?");
    }
    return BST_OK;
}

static bst_status check_source(const bst_graph *g, uint32_t id)
{
    const bsti_node *n = &g->nodes[id];
    if (n->n_inputs != 0)
        return node_fail(g, id, BST_ERR_GRAPH, "a source has %u inputs", n->n_inputs);
    if (n->op != BST_OP_CONST && (!n->name || !n->name[0]))
        return node_fail(g, id, BST_ERR_GRAPH, "%s has no name", bst_op_name(n->op));
    if (n->op != BST_OP_INPUT)
        for (uint32_t d = 0; d < n->type.rank; d++)
            if (n->type.sym[d] != BST_SYM_NONE)
                return node_fail(g, id, BST_ERR_SHAPE,
                                 "dim %u is symbolic, but a %s has a fixed size", d,
                                 bst_op_name(n->op));
    uint64_t bytes = 0;
    bst_status st = bsti_type_nbytes(&n->type, &bytes);
    if (st != BST_OK)
        return node_fail(g, id, st, "byte size overflows");
    if (n->op == BST_OP_CONST) {
        if (!n->const_data && bytes > 0)
            return node_fail(g, id, BST_ERR_GRAPH, "const has no data");
        if (n->data_size != bytes)
            return node_fail(g, id, BST_ERR_GRAPH, "const holds %llu bytes, its type needs %llu",
                             (unsigned long long)n->data_size, (unsigned long long)bytes);
    } else if (n->op == BST_OP_WEIGHT) {
        /* A weight parsed from text has no data yet; bound data must match the type. */
        if (n->weight_data && n->data_size != bytes)
            return node_fail(g, id, BST_ERR_GRAPH,
                             "weight \"%s\" holds %llu bytes, its type needs %llu", n->name,
                             (unsigned long long)n->data_size, (unsigned long long)bytes);
    }
    return BST_OK;
}

/* Root of the memory `v` uses: itself unless it is an alias. */
static uint32_t root_of(const bst_graph *g, uint32_t v)
{
    return g->nodes[v].alias_of != BSTI_NONE ? g->nodes[v].alias_of : v;
}

static uint64_t offset_in_root(const bst_graph *g, uint32_t v)
{
    return g->nodes[v].alias_of != BSTI_NONE ? g->nodes[v].alias_offset : 0;
}

static bst_status check_alias(const bst_graph *g, uint32_t id, const bsti_op_info *info)
{
    const bsti_node *n = &g->nodes[id];
    bool aliases = info->is_alias || info->has_effect;
    if (!aliases) {
        if (n->alias_of != BSTI_NONE || n->alias_offset != 0)
            return node_fail(g, id, BST_ERR_GRAPH,
                             "alias fields are set (alias of %%%u), but %s owns its memory",
                             n->alias_of, info->name);
        return BST_OK;
    }
    if (n->n_inputs == 0)
        return BST_OK; /* arity already reported */
    uint32_t want = root_of(g, n->inputs[0]);
    if (n->alias_of == BSTI_NONE)
        return node_fail(g, id, BST_ERR_GRAPH,
                         "alias_of is not set, but its memory belongs to %%%u", want);
    if (n->alias_of != want)
        return node_fail(g, id, BST_ERR_GRAPH,
                         "alias_of is %%%u, but its memory belongs to %%%u", n->alias_of, want);
    uint64_t offset = offset_in_root(g, n->inputs[0]);
    if (n->op == BST_OP_VIEW) {
        int64_t extra = bsti_attr_int(n, BST_ATTR_OFFSET, 0);
        if (extra < 0)
            return node_fail(g, id, BST_ERR_SHAPE, "view offset %lld is negative",
                             (long long)extra);
        offset += (uint64_t)extra;
    }
    if (n->alias_offset != offset)
        return node_fail(g, id, BST_ERR_GRAPH, "alias_offset is %llu, expected %llu",
                         (unsigned long long)n->alias_offset, (unsigned long long)offset);
    uint64_t end = 0, root_bytes = 0;
    if (!alias_extent(&n->type, n->alias_offset, &end))
        return node_fail(g, id, BST_ERR_OVERFLOW, "view extent overflows");
    if (bsti_type_nbytes(&g->nodes[want].type, &root_bytes) != BST_OK || end > root_bytes)
        return node_fail(g, id, BST_ERR_SHAPE,
                         "reaches byte %llu of %%%u, which holds only %llu bytes",
                         (unsigned long long)end, want, (unsigned long long)root_bytes);
    return BST_OK;
}

static bool types_equal(const bsti_type *a, const bsti_type *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank)
        return false;
    for (uint32_t d = 0; d < a->rank && d < BST_MAX_DIMS; d++)
        if (a->shape[d] != b->shape[d] || a->strides[d] != b->strides[d] || a->sym[d] != b->sym[d])
            return false;
    return true;
}

static void format_type(const bsti_type *t, char *buf, size_t size)
{
    const char *dn = bst_dtype_name(t->dtype);
    int pos = snprintf(buf, size, "%s[", dn ? dn : "?");
    for (uint32_t d = 0; d < t->rank && d < BST_MAX_DIMS && pos > 0 && (size_t)pos < size; d++)
        pos += snprintf(buf + pos, size - (size_t)pos, "%s%lld", d ? "," : "",
                        (long long)t->shape[d]);
    if (pos > 0 && (size_t)pos < size)
        snprintf(buf + pos, size - (size_t)pos, "]");
}

/* Re-runs the op's rule on a scratch copy and compares: the node must already hold what the
 * rule says. The node is restored whatever happens. */
static bst_status check_inferred(bst_graph *g, uint32_t id)
{
    bsti_node saved = g->nodes[id];
    bst_status st = bsti_infer_node(g, id);
    bsti_node inferred = g->nodes[id];
    g->nodes[id] = saved;
    if (st != BST_OK) {
        char where[BSTI_WHERE_MAX];
        return bsti_fail_context(st, "verify: %s", bsti_pass_where(g, id, where));
    }
    if (!types_equal(&saved.type, &inferred.type)) {
        char have[96], want[96];
        format_type(&saved.type, have, sizeof have);
        format_type(&inferred.type, want, sizeof want);
        return node_fail(g, id, BST_ERR_SHAPE,
                         "type %s (strides included) differs from %s given by the op's rule",
                         have, want);
    }
    if (saved.alias_of != inferred.alias_of || saved.alias_offset != inferred.alias_offset)
        return node_fail(g, id, BST_ERR_GRAPH, "alias fields differ from the op's rule");
    return BST_OK;
}

static bst_status check_node(bst_graph *g, uint32_t id)
{
    const bsti_node *n = &g->nodes[id];
    const bsti_op_info *info = n->op == BST_OP_NONE ? NULL : bsti_op_get(n->op);
    if (!info)
        return node_fail(g, id, BST_ERR_GRAPH, "unknown op id %u", (unsigned)n->op);
    if (n->n_inputs > BST_MAX_INPUTS || n->n_inputs < info->min_inputs ||
        n->n_inputs > info->max_inputs) {
        if (info->min_inputs == info->max_inputs)
            return node_fail(g, id, BST_ERR_GRAPH, "has %u inputs; %s takes %u", n->n_inputs,
                             info->name, info->min_inputs);
        return node_fail(g, id, BST_ERR_GRAPH, "has %u inputs; %s takes %u to %u", n->n_inputs,
                         info->name, info->min_inputs, info->max_inputs);
    }
    for (uint32_t k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= id)
            return node_fail(g, id, BST_ERR_GRAPH,
                             "input %u (%%%u) is not defined before its use (graph not in "
                             "topological order)",
                             k, n->inputs[k]);
    bst_status st = check_attrs(g, id);
    if (st == BST_OK)
        st = check_type(g, id, !info->is_alias && !info->has_effect);
    if (st != BST_OK)
        return st;
    if (info->is_source) {
        st = check_source(g, id);
    } else {
        if (n->const_data || n->weight_data)
            return node_fail(g, id, BST_ERR_GRAPH, "carries data, but only sources do");
    }
    if (st == BST_OK)
        st = check_alias(g, id, info);
    if (st != BST_OK)
        return st;
    bool flagged = (n->flags & BSTI_NODE_EFFECT) != 0;
    if (flagged != info->has_effect)
        return node_fail(g, id, BST_ERR_GRAPH,
                         info->has_effect ? "writes state but is not flagged as an effect"
                                          : "is flagged as an effect but %s writes nothing",
                         info->name);
    if (info->has_effect) {
        uint32_t root = root_of(g, n->inputs[0]);
        if (g->nodes[root].op != BST_OP_STATE)
            return node_fail(g, id, BST_ERR_GRAPH,
                             "writes into %%%u (%s), which is not a state", root,
                             bst_op_name(g->nodes[root].op) ? bst_op_name(g->nodes[root].op)
                                                            : "?");
    }
    if ((n->flags & BSTI_NODE_OUTPUT) && (!n->name || !n->name[0]))
        return node_fail(g, id, BST_ERR_GRAPH, "is marked as an output but has no name");
    return check_inferred(g, id);
}

/* Names the embedder uses to address inputs, states and outputs must be unique per kind. */
static bst_status check_unique_names(const bst_graph *g)
{
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *a = &g->nodes[i];
        if (!a->name)
            continue;
        bool a_out = (a->flags & BSTI_NODE_OUTPUT) != 0;
        bool a_in = a->op == BST_OP_INPUT || a->op == BST_OP_STATE;
        if (!a_out && !a_in)
            continue;
        for (uint32_t j = i + 1; j < g->n_nodes; j++) {
            const bsti_node *b = &g->nodes[j];
            if (!b->name || strcmp(a->name, b->name) != 0)
                continue;
            bool b_out = (b->flags & BSTI_NODE_OUTPUT) != 0;
            if ((a_out && b_out) || (a_in && b->op == a->op))
                return node_fail(g, j, BST_ERR_GRAPH, "name \"%s\" is already used by %%%u",
                                 b->name, i);
        }
    }
    return BST_OK;
}

bst_status bsti_pass_verify(bst_graph *g)
{
    if (!g)
        return bsti_fail(BST_ERR_INVALID_ARG, "verify: graph is NULL");
    if (g->n_nodes > 0 && !g->nodes)
        return bsti_fail(BST_ERR_GRAPH, "verify: graph has %u nodes but no node array",
                         g->n_nodes);
    bool has_result = false;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bst_status st = check_node(g, i);
        if (st != BST_OK)
            return st;
        if (g->nodes[i].flags & (BSTI_NODE_OUTPUT | BSTI_NODE_EFFECT))
            has_result = true;
    }
    if (!has_result)
        return bsti_fail(BST_ERR_GRAPH,
                         "verify: the graph has no output and no effect, so it computes nothing");
    return check_unique_names(g);
}
