/*
 * The public graph-building API (graph.h): argument checking at the library boundary, then the
 * internal append + shape inference. A call that fails leaves the graph as it was.
 */
#include "graph/ir.h"
#include "graph/status.h"

#include <stdlib.h>
#include <string.h>

BST_API bst_status bst_graph_create(bst_graph **out_graph)
{
    if (!out_graph)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_create: out_graph is NULL");
    *out_graph = calloc(1, sizeof **out_graph);
    if (!*out_graph)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory creating a graph");
    return BST_OK;
}

BST_API void bst_graph_destroy(bst_graph *graph)
{
    if (!graph)
        return;
    for (uint32_t i = 0; i < graph->n_nodes; i++) {
        free(graph->nodes[i].name);
        free(graph->nodes[i].const_data);
    }
    free(graph->nodes);
    free(graph);
}

BST_API void bst_free(void *ptr) { free(ptr); }

BST_API uint32_t bst_graph_value_count(const bst_graph *graph)
{
    return graph ? graph->n_nodes : 0;
}

BST_API bst_status bst_graph_value_desc(const bst_graph *graph, bst_value value,
                                        bst_tensor_desc *out_desc)
{
    if (!graph || !out_desc)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_value_desc: NULL argument");
    if (value >= graph->n_nodes)
        return bsti_fail(BST_ERR_INVALID_ARG, "value %u does not exist (graph has %u)", value,
                         graph->n_nodes);
    bsti_type_to_desc(&graph->nodes[value].type, out_desc);
    return BST_OK;
}

static void node_init(bsti_node *n, bst_op op)
{
    memset(n, 0, sizeof *n);
    n->op = op;
    n->alias_of = BSTI_NONE;
    n->device = BSTI_NONE;
    n->variant = BSTI_NONE;
}

/* Appends `n` and infers it; on failure removes it again so the graph is unchanged. */
static bst_status append_and_infer(bst_graph *g, bsti_node *n, bst_value *out_value)
{
    uint32_t id;
    bst_status st = bsti_graph_append(g, n, &id);
    if (st)
        return st;
    st = bsti_infer_node(g, id);
    if (st) {
        free(g->nodes[id].name);
        free(g->nodes[id].const_data);
        g->n_nodes--;
        return st;
    }
    if (out_value)
        *out_value = id;
    return BST_OK;
}

static bst_status add_source(bst_graph *g, bst_op op, const char *name, bst_dtype dtype,
                             uint32_t rank, const int64_t *shape, const uint32_t *sym,
                             bst_value *out_value, bsti_node *n)
{
    const char *what = bst_op_name(op);
    if (!g || !out_value)
        return bsti_fail(BST_ERR_INVALID_ARG, "add %s: NULL graph or out_value", what);
    if (op != BST_OP_CONST && (!name || !name[0]))
        return bsti_fail(BST_ERR_INVALID_ARG, "add %s: a name is required", what);
    if (rank > BST_MAX_DIMS)
        return bsti_fail(BST_ERR_INVALID_ARG, "add %s \"%s\": rank %u exceeds %d", what,
                         name ? name : "", rank, BST_MAX_DIMS);
    if (rank && !shape)
        return bsti_fail(BST_ERR_INVALID_ARG, "add %s: shape is NULL", what);
    n->type.dtype = dtype;
    n->type.rank = rank;
    for (uint32_t i = 0; i < rank; i++) {
        n->type.shape[i] = shape[i];
        n->type.sym[i] = sym ? sym[i] : BST_SYM_NONE;
    }
    if (name && !(n->name = strdup(name)))
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory");
    return BST_OK;
}

BST_API bst_status bst_graph_add_input(bst_graph *graph, const char *name, bst_dtype dtype,
                                       uint32_t rank, const int64_t *shape, const uint32_t *sym,
                                       bst_value *out_value)
{
    bsti_node n;
    node_init(&n, BST_OP_INPUT);
    bst_status st = add_source(graph, BST_OP_INPUT, name, dtype, rank, shape, sym, out_value, &n);
    if (st)
        return st;
    return append_and_infer(graph, &n, out_value);
}

BST_API bst_status bst_graph_add_weight(bst_graph *graph, const char *name, bst_dtype dtype,
                                        uint32_t rank, const int64_t *shape, const void *data,
                                        uint64_t size, bst_value *out_value)
{
    if (!data && size)
        return bsti_fail(BST_ERR_INVALID_ARG, "add weight: data is NULL but size is %llu",
                         (unsigned long long)size);
    bsti_node n;
    node_init(&n, BST_OP_WEIGHT);
    bst_status st = add_source(graph, BST_OP_WEIGHT, name, dtype, rank, shape, NULL, out_value, &n);
    if (st)
        return st;
    n.weight_data = data;
    n.data_size = size;
    return append_and_infer(graph, &n, out_value);
}

BST_API bst_status bst_graph_add_state(bst_graph *graph, const char *name, bst_dtype dtype,
                                       uint32_t rank, const int64_t *shape, bst_value *out_value)
{
    bsti_node n;
    node_init(&n, BST_OP_STATE);
    bst_status st = add_source(graph, BST_OP_STATE, name, dtype, rank, shape, NULL, out_value, &n);
    if (st)
        return st;
    return append_and_infer(graph, &n, out_value);
}

BST_API bst_status bst_graph_add_const(bst_graph *graph, bst_dtype dtype, uint32_t rank,
                                       const int64_t *shape, const void *data, uint64_t size,
                                       bst_value *out_value)
{
    if (!data)
        return bsti_fail(BST_ERR_INVALID_ARG, "add const: data is NULL");
    if (size > SIZE_MAX / 2)
        return bsti_fail(BST_ERR_OVERFLOW, "add const: %llu bytes is too large",
                         (unsigned long long)size);
    bsti_node n;
    node_init(&n, BST_OP_CONST);
    bst_status st = add_source(graph, BST_OP_CONST, NULL, dtype, rank, shape, NULL, out_value, &n);
    if (st)
        return st;
    n.const_data = malloc(size ? (size_t)size : 1);
    if (!n.const_data)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory copying %llu const bytes",
                         (unsigned long long)size);
    memcpy(n.const_data, data, (size_t)size);
    n.data_size = size;
    return append_and_infer(graph, &n, out_value);
}

BST_API bst_status bst_graph_add_op(bst_graph *graph, bst_op op, const bst_value *inputs,
                                    uint32_t n_inputs, const bst_attr *attrs, uint32_t n_attrs,
                                    bst_value *out_value)
{
    if (!graph || !out_value)
        return bsti_fail(BST_ERR_INVALID_ARG, "add op: NULL graph or out_value");
    const bsti_op_info *info = bsti_op_get(op);
    if (!info)
        return bsti_fail(BST_ERR_INVALID_ARG, "add op: unknown op id %d", (int)op);
    if (info->is_source)
        return bsti_fail(BST_ERR_INVALID_ARG, "add op: %s is a value source; use bst_graph_add_%s",
                         info->name, info->name);
    if (n_inputs > BST_MAX_INPUTS || (n_inputs && !inputs))
        return bsti_fail(BST_ERR_INVALID_ARG, "%s: %u inputs (at most %d, non-NULL array)",
                         info->name, n_inputs, BST_MAX_INPUTS);
    if (n_attrs > BST_MAX_ATTRS || (n_attrs && !attrs))
        return bsti_fail(BST_ERR_INVALID_ARG, "%s: %u attributes (at most %d, non-NULL array)",
                         info->name, n_attrs, BST_MAX_ATTRS);
    bsti_node n;
    node_init(&n, op);
    n.n_inputs = n_inputs;
    for (uint32_t i = 0; i < n_inputs; i++) {
        if (inputs[i] >= graph->n_nodes)
            return bsti_fail(BST_ERR_INVALID_ARG,
                             "%s: operand %u is value %u, which does not exist", info->name, i,
                             inputs[i]);
        n.inputs[i] = inputs[i];
    }
    n.n_attrs = n_attrs;
    for (uint32_t i = 0; i < n_attrs; i++) {
        n.attrs[i] = attrs[i];
        n.attrs[i].struct_size = (uint32_t)sizeof(bst_attr);
    }
    return append_and_infer(graph, &n, out_value);
}

BST_API bst_status bst_graph_mark_output(bst_graph *graph, bst_value value, const char *name)
{
    if (!graph)
        return bsti_fail(BST_ERR_INVALID_ARG, "mark output: graph is NULL");
    if (value >= graph->n_nodes)
        return bsti_fail(BST_ERR_INVALID_ARG, "mark output: value %u does not exist", value);
    bsti_node *n = &graph->nodes[value];
    if (!name || !name[0])
        return bsti_fail(BST_ERR_INVALID_ARG, "mark output: value %u needs a name", value);
    /* One name slot per node: a source keeps its own name, and an op output keeps its first. */
    if (n->name && strcmp(n->name, name) != 0)
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "mark output: value %u is already named \"%s\"; cannot also be "
                         "output \"%s\"",
                         value, n->name, name);
    if (!n->name && !(n->name = strdup(name)))
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory");
    n->flags |= BSTI_NODE_OUTPUT;
    return BST_OK;
}
