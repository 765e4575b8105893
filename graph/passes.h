/*
 * graph/passes.h — helpers shared by the graph passes (graph/pass_*.c) and their driver
 * (graph/passes.c). Not installed, not part of the runtime's view of the IR (graph/ir.h holds the
 * pass entry points themselves).
 *
 * The state analysis here is what keeps CSE and folding sound around effects: a STATE's memory
 * changes at every SET_ROWS, so two identical nodes that read state-derived values compute the
 * same thing only when no effect ran between them.
 */
#ifndef BASTION_GRAPH_PASSES_H
#define BASTION_GRAPH_PASSES_H

#include "graph/ir.h"

#define BSTI_WHERE_MAX 96

/* Writes "%ID (op)" or "%ID (op) at LINE:COL" into buf (BSTI_WHERE_MAX bytes) for messages and
 * returns buf. Safe on any id and any op value. */
const char *bsti_pass_where(const bst_graph *g, uint32_t id, char *buf);

/* True for nodes that write state (SET_ROWS, or flagged BSTI_NODE_EFFECT). */
bool bsti_pass_is_effect(const bsti_node *n);

/* Per node: out_state[i] is true when value i depends (through any chain of inputs) on a STATE;
 * out_epoch[i] is the number of effect nodes before i. Both arrays are n_nodes long. Two
 * state-derived nodes can only be equal when their epochs are equal. */
void bsti_pass_state_analysis(const bst_graph *g, bool *out_state, uint32_t *out_epoch);

/* Number of input slots that name each value (out_uses is n_nodes long). */
void bsti_pass_use_counts(const bst_graph *g, uint32_t *out_uses);

#endif /* BASTION_GRAPH_PASSES_H */
