/*
 * graph/pass_infer.c — shape/type inference over a whole graph. Passes that edit nodes (fold,
 * lower, hand edits through the API) leave types and alias fields stale; re-running the op
 * table's rule on every node in topological order makes them true again, and the first node
 * whose rule fails names itself in the message.
 */
#include "graph/passes.h"
#include "graph/status.h"

bst_status bsti_pass_infer_shapes(bst_graph *g)
{
    if (!g)
        return bsti_fail(BST_ERR_INVALID_ARG, "infer: graph is NULL");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bst_status st = bsti_infer_node(g, i);
        if (st != BST_OK) {
            char where[BSTI_WHERE_MAX];
            return bsti_fail_context(st, "infer: %s", bsti_pass_where(g, i, where));
        }
    }
    return BST_OK;
}
