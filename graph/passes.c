/*
 * graph/passes.c — bst_graph_run_passes (the public way to run passes by name) and the helpers
 * every pass shares (graph/passes.h).
 */
#include "graph/passes.h"

#include "graph/status.h"

#include <stdio.h>
#include <string.h>

const char *bsti_pass_where(const bst_graph *g, uint32_t id, char *buf)
{
    const char *op = "?";
    uint32_t line = 0, col = 0;
    if (g && id < g->n_nodes) {
        const char *name = bst_op_name(g->nodes[id].op);
        if (name)
            op = name;
        line = g->nodes[id].line;
        col = g->nodes[id].col;
    }
    if (line != 0)
        snprintf(buf, BSTI_WHERE_MAX, "%%%u (%s) at %u:%u", id, op, line, col);
    else
        snprintf(buf, BSTI_WHERE_MAX, "%%%u (%s)", id, op);
    return buf;
}

bool bsti_pass_is_effect(const bsti_node *n)
{
    if (n->flags & BSTI_NODE_EFFECT)
        return true;
    const bsti_op_info *info = bsti_op_get(n->op);
    return info && info->has_effect;
}

void bsti_pass_state_analysis(const bst_graph *g, bool *out_state, uint32_t *out_epoch)
{
    uint32_t epoch = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *n = &g->nodes[i];
        bool state = n->op == BST_OP_STATE;
        for (uint32_t k = 0; k < n->n_inputs && k < BST_MAX_INPUTS; k++)
            if (n->inputs[k] < i && out_state[n->inputs[k]])
                state = true;
        out_state[i] = state;
        out_epoch[i] = epoch;
        if (bsti_pass_is_effect(n))
            epoch++;
    }
}

void bsti_pass_use_counts(const bst_graph *g, uint32_t *out_uses)
{
    memset(out_uses, 0, (size_t)g->n_nodes * sizeof *out_uses);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *n = &g->nodes[i];
        for (uint32_t k = 0; k < n->n_inputs && k < BST_MAX_INPUTS; k++)
            if (n->inputs[k] < g->n_nodes)
                out_uses[n->inputs[k]]++;
    }
}

/* --- running passes by name --- */

typedef enum pass_id { PASS_VERIFY, PASS_INFER, PASS_DCE, PASS_CSE, PASS_FOLD, PASS_LOWER } pass_id;

static const struct {
    const char *name;
    pass_id id;
} pass_table[] = {
    {"verify", PASS_VERIFY}, {"infer", PASS_INFER}, {"dce", PASS_DCE},
    {"cse", PASS_CSE},       {"fold", PASS_FOLD},   {"lower", PASS_LOWER},
};
#define N_PASSES (sizeof pass_table / sizeof pass_table[0])
#define MAX_PASS_LIST 64

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Splits the list and resolves every name before anything runs, so a typo late in the list never
 * leaves the graph half-transformed. */
static bst_status parse_list(const char *passes, pass_id *out_ids, uint32_t *out_count)
{
    uint32_t count = 0;
    const char *p = passes;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && is_space(*b))
            b++;
        while (e > b && is_space(e[-1]))
            e--;
        size_t len = (size_t)(e - b);
        if (len == 0)
            return bsti_fail(BST_ERR_INVALID_ARG, "empty pass name in pass list \"%s\"", passes);
        bool found = false;
        for (size_t i = 0; i < N_PASSES; i++) {
            if (strlen(pass_table[i].name) == len && memcmp(pass_table[i].name, b, len) == 0) {
                if (count == MAX_PASS_LIST)
                    return bsti_fail(BST_ERR_INVALID_ARG, "pass list has more than %d passes",
                                     MAX_PASS_LIST);
                out_ids[count++] = pass_table[i].id;
                found = true;
                break;
            }
        }
        if (!found)
            return bsti_fail(BST_ERR_INVALID_ARG,
                             "unknown pass \"%.*s\" (known: verify, infer, dce, cse, fold, lower)",
                             (int)(len > 64 ? 64 : len), b);
        if (*end == '\0')
            break;
        p = end + 1;
    }
    *out_count = count;
    return BST_OK;
}

BST_API bst_status bst_graph_run_passes(bst_graph *graph, const char *passes)
{
    if (!graph)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_run_passes: graph is NULL");
    if (!passes)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_run_passes: pass list is NULL");
    pass_id ids[MAX_PASS_LIST];
    uint32_t count = 0;
    bst_status st = parse_list(passes, ids, &count);
    if (st != BST_OK)
        return st;
    for (uint32_t i = 0; i < count; i++) {
        switch (ids[i]) {
        case PASS_VERIFY: st = bsti_pass_verify(graph); break;
        case PASS_INFER: st = bsti_pass_infer_shapes(graph); break;
        case PASS_DCE: st = bsti_pass_dce(graph); break;
        case PASS_CSE: st = bsti_pass_cse(graph); break;
        case PASS_FOLD: st = bsti_pass_fold(graph); break;
        case PASS_LOWER: st = bsti_pass_lower(graph, NULL, NULL); break;
        }
        if (st != BST_OK)
            return st;
    }
    return BST_OK;
}
