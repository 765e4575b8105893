/*
 * graph/api_query.c — read-only per-value queries of the public graph API (op, name, output
 * flag). Tools that run an arbitrary graph (the CLI's run-graph) need them to find the graph's
 * inputs and outputs without reaching into graph/ir.h. They never fail loudly: an invalid
 * graph or value id answers "nothing", so no error message is set.
 */
#include "graph/ir.h"

static const bsti_node *node_at(const bst_graph *graph, bst_value value)
{
    if (!graph || value >= graph->n_nodes)
        return NULL;
    return &graph->nodes[value];
}

BST_API bst_op bst_graph_value_op(const bst_graph *graph, bst_value value)
{
    const bsti_node *n = node_at(graph, value);
    return n ? n->op : BST_OP_NONE;
}

BST_API const char *bst_graph_value_name(const bst_graph *graph, bst_value value)
{
    const bsti_node *n = node_at(graph, value);
    return n ? n->name : NULL;
}

BST_API bool bst_graph_value_is_output(const bst_graph *graph, bst_value value)
{
    const bsti_node *n = node_at(graph, value);
    return n && (n->flags & BSTI_NODE_OUTPUT) != 0;
}
