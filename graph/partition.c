/*
 * graph/partition.c — cuts a placed graph into partitions: maximal runs of consecutive compute
 * nodes (in graph order, which is execution order) that sit on one device. A partition is the
 * unit a backend compiles at once, so longer runs mean fewer launches and transfers.
 *
 * Sources (INPUT/WEIGHT/STATE/CONST) are not computed and belong to no partition; neither do
 * alias ops whose memory is a source's (a view of a weight or of the KV cache): they are pure
 * address arithmetic that the executor resolves into descriptors. Alias ops of computed values
 * are kept, on the device placement gave them (their first consumer's), so that they never cut
 * a run in two in the common case.
 */
#include "graph/ir.h"
#include "graph/status.h"

#include <stdlib.h>
#include <string.h>

/* True when node `id` takes part in a partition; fails on ops the table does not know. */
static bst_status node_is_compute(const bst_graph *g, uint32_t id, bool *out_compute)
{
    const bsti_node *n = &g->nodes[id];
    const bsti_op_info *info = bsti_op_get(n->op);
    if (!info)
        return bsti_fail(BST_ERR_GRAPH, "partition: node %%%u has unknown op id %u", id,
                         (unsigned)n->op);
    if (info->is_source) {
        *out_compute = false;
        return BST_OK;
    }
    if (info->is_alias) {
        /* alias_of is resolved to the root by shape inference; fall back to walking input 0 so
         * a graph whose aliases were not yet resolved is still classified correctly. */
        uint32_t root = n->alias_of;
        if (root == BSTI_NONE) {
            uint32_t cur = id;
            while (cur != BSTI_NONE && cur < g->n_nodes) {
                const bsti_node *c = &g->nodes[cur];
                const bsti_op_info *ci = bsti_op_get(c->op);
                if (!ci || !ci->is_alias || c->n_inputs == 0)
                    break;
                cur = c->alias_of != BSTI_NONE ? c->alias_of : c->inputs[0];
            }
            root = cur;
        }
        if (root >= g->n_nodes)
            return bsti_fail(BST_ERR_GRAPH, "partition: alias node %%%u has no base value", id);
        const bsti_op_info *ri = bsti_op_get(g->nodes[root].op);
        if (ri && ri->is_source) {
            *out_compute = false;
            return BST_OK;
        }
    }
    *out_compute = true;
    return BST_OK;
}

bst_status bsti_partition_graph(const bst_graph *g, bsti_partitioning *out)
{
    if (!g || !out)
        return bsti_fail(BST_ERR_INVALID_ARG, "partition: NULL argument");
    memset(out, 0, sizeof *out);

    /* One pass to count, one to fill: no reallocation, and the node list of every partition is
     * a slice of a single array owned by the first partition. */
    uint32_t n_parts = 0, n_compute = 0, cur_dev = BSTI_NONE;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bool compute = false;
        bst_status st = node_is_compute(g, i, &compute);
        if (st != BST_OK)
            return st;
        if (!compute)
            continue;
        const bsti_node *n = &g->nodes[i];
        if (n->device == BSTI_NONE)
            return bsti_fail(BST_ERR_INVALID_ARG, "partition: node %%%u (%s) has no device",
                             i, bst_op_name(n->op) ? bst_op_name(n->op) : "?");
        if (n_compute == 0 || n->device != cur_dev)
            n_parts++;
        cur_dev = n->device;
        n_compute++;
    }
    if (n_parts == 0)
        return BST_OK;

    bsti_partition *parts = calloc(n_parts, sizeof *parts);
    uint32_t *ids = malloc((size_t)n_compute * sizeof *ids);
    if (!parts || !ids) {
        free(parts);
        free(ids);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "partition: out of memory for %u partitions",
                         n_parts);
    }
    uint32_t p = 0, k = 0;
    bool started = false;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        bool compute = false;
        bst_status st = node_is_compute(g, i, &compute);
        if (st != BST_OK) {
            free(parts);
            free(ids);
            return st;
        }
        if (!compute)
            continue;
        uint32_t dev = g->nodes[i].device;
        if (!started || dev != parts[p].device) {
            if (started)
                p++;
            started = true;
            parts[p].device = dev;
            parts[p].nodes = ids + k;
        }
        parts[p].nodes[parts[p].n_nodes++] = i;
        k++;
    }
    out->parts = parts;
    out->n_parts = n_parts;
    return BST_OK;
}

void bsti_partitioning_free(bsti_partitioning *p)
{
    if (!p)
        return;
    if (p->n_parts > 0 && p->parts)
        free(p->parts[0].nodes); /* the shared id array starts at the first partition */
    free(p->parts);
    p->parts = NULL;
    p->n_parts = 0;
}
