/*
 * graph/pass_dce.c — dead code elimination. A node lives when a graph output or an effect
 * (SET_ROWS: it writes state that outlives the run) needs it. Effects are always live and
 * bsti_graph_compact keeps the relative order of what it keeps, so effects are never dropped or
 * reordered.
 *
 * INPUT and STATE nodes are kept even when unused: they are the graph's interface (the embedder
 * sets inputs and owns state by name), and removing one would turn a valid set_input call into
 * BST_ERR_NOT_FOUND.
 */
#include "graph/passes.h"
#include "graph/status.h"

#include <stdlib.h>

bst_status bsti_pass_dce(bst_graph *g)
{
    if (!g)
        return bsti_fail(BST_ERR_INVALID_ARG, "dce: graph is NULL");
    if (g->n_nodes == 0)
        return BST_OK;
    bool *live = calloc(g->n_nodes, sizeof *live);
    if (!live)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "dce: out of memory for %u nodes", g->n_nodes);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *n = &g->nodes[i];
        if ((n->flags & BSTI_NODE_OUTPUT) || bsti_pass_is_effect(n) || n->op == BST_OP_INPUT ||
            n->op == BST_OP_STATE)
            live[i] = true;
    }
    /* Inputs precede their users, so one backward sweep reaches every transitive input. */
    bool dead = false;
    for (uint32_t i = g->n_nodes; i-- > 0;) {
        const bsti_node *n = &g->nodes[i];
        if (!live[i]) {
            dead = true;
            continue;
        }
        for (uint32_t k = 0; k < n->n_inputs && k < BST_MAX_INPUTS; k++) {
            if (n->inputs[k] >= i) {
                free(live);
                char where[BSTI_WHERE_MAX];
                return bsti_fail(BST_ERR_GRAPH, "dce: %s: input %u (%%%u) is not defined before it",
                                 bsti_pass_where(g, i, where), k, n->inputs[k]);
            }
            live[n->inputs[k]] = true;
        }
        if (n->alias_of != BSTI_NONE && n->alias_of < i)
            live[n->alias_of] = true;
    }
    bst_status st = BST_OK;
    if (dead) {
        st = bsti_graph_compact(g, live, NULL);
        if (st != BST_OK)
            st = bsti_fail_context(st, "dce");
    }
    free(live);
    return st;
}
