/* Graphviz export of a graph: one box per value labelled "op\ntype", sources drawn as
 * ellipses (weights, state and consts shaded), outputs with a double border. For looking at
 * graphs, not for reading back. */
#include "graph/ir.h"
#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dbuf {
    char *s;
    size_t len, cap;
    bool oom;
} dbuf;

static void put(dbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n > SIZE_MAX / 4 - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(dbuf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(dbuf *b, const char *fmt, ...) BST_PRINTF(2, 3);
static void putf(dbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A DOT string literal's body: quotes and backslashes escaped, control bytes dropped. */
static void put_escaped(dbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            put(b, "\\", 1);
        if ((unsigned char)*s >= 0x20)
            put(b, s, 1);
    }
}

BST_API bst_status bst_graph_to_dot(const bst_graph *graph, char **out_text)
{
    if (!graph || !out_text)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_to_dot: NULL argument");
    *out_text = NULL;
    dbuf b = {0};
    puts_(&b, "digraph bastion {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
    for (uint32_t i = 0; i < graph->n_nodes; i++) {
        const bsti_node *n = &graph->nodes[i];
        const bsti_op_info *info = bsti_op_get(n->op);
        if (!info) {
            free(b.s);
            return bsti_fail(BST_ERR_GRAPH, "to_dot: node %%%u has unknown op id %d", i,
                             (int)n->op);
        }
        char type[256];
        bsti_type_format(&n->type, type, sizeof type);
        putf(&b, "  n%u [label=\"%%%u = %s", i, i, info->name);
        if (n->name) {
            puts_(&b, " \\\"");
            put_escaped(&b, n->name);
            puts_(&b, "\\\"");
        }
        putf(&b, "\\n%s\"", type);
        if (info->is_source)
            puts_(&b, n->op == BST_OP_INPUT ? ", shape=ellipse"
                                            : ", shape=ellipse, style=filled, fillcolor=lightgrey");
        else if (info->is_high_level)
            puts_(&b, ", style=rounded");
        if (n->flags & BSTI_NODE_OUTPUT)
            puts_(&b, ", peripheries=2, color=blue");
        if (n->flags & BSTI_NODE_EFFECT)
            puts_(&b, ", color=red");
        puts_(&b, "];\n");
        for (uint32_t k = 0; k < n->n_inputs && k < BST_MAX_INPUTS; k++) {
            if (n->inputs[k] >= graph->n_nodes) {
                free(b.s);
                return bsti_fail(BST_ERR_GRAPH, "to_dot: node %%%u uses missing value %u", i,
                                 n->inputs[k]);
            }
            putf(&b, "  n%u -> n%u", n->inputs[k], i);
            if (n->n_inputs > 1)
                putf(&b, " [label=\"%u\"]", k);
            puts_(&b, ";\n");
        }
        if (n->alias_of != BSTI_NONE && n->alias_of < graph->n_nodes &&
            (n->n_inputs == 0 || n->inputs[0] != n->alias_of))
            putf(&b, "  n%u -> n%u [style=dotted, arrowhead=none];\n", n->alias_of, i);
    }
    puts_(&b, "}\n");
    if (b.oom) {
        free(b.s);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory writing DOT");
    }
    *out_text = b.s;
    return BST_OK;
}
