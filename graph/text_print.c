/*
 * The text form's printer (bst_graph_print); the format and its naming scheme are described at
 * the top of graph/text.c, next to the parser.
 */
#include "graph/status.h"
#include "graph/text.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- printing --- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_grow(sbuf *b, size_t extra)
{
    if (b->oom)
        return;
    if (extra > SIZE_MAX / 4 - b->len) {
        b->oom = true;
        return;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return;
    }
    b->s = s;
    b->cap = cap;
}

static void sb_put(sbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) BST_PRINTF(2, 3);
static void sb_fmt(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    sb_grow(b, (size_t)n);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Shortest %.Ng that strtod reads back as exactly `v` (as a float when `as_float`). */
static void sb_real(sbuf *b, double v, bool as_float)
{
    if (isnan(v)) {
        sb_str(b, signbit(v) ? "-nan" : "nan");
        return;
    }
    if (isinf(v)) {
        sb_str(b, v < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        /* Integral values read better in full ("100000", not "1e+05") and are exact. */
        snprintf(tmp, sizeof tmp, "%.0f", v);
        sb_str(b, tmp);
        return;
    }
    int max = as_float ? 9 : 17;
    for (int prec = 1; prec <= max; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        double back = strtod(tmp, NULL);
        if (as_float ? (float)back == (float)v : back == v)
            break;
    }
    sb_str(b, tmp);
}

static void sb_quoted(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_fmt(b, "\\%c", *p);
        else if (*p == '\n')
            sb_str(b, "\\n");
        else if (*p == '\t')
            sb_str(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            sb_fmt(b, "\\x%02x", *p);
        else
            sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

static void sb_type(sbuf *b, const bsti_type *t)
{
    char tmp[256];
    bsti_type_format(t, tmp, sizeof tmp);
    sb_str(b, tmp);
}

/* Printed names of sources (NULL entries print as %<id>). */
static bst_status source_names(const bst_graph *g, char ***out_names)
{
    *out_names = NULL;
    char **names = calloc(g->n_nodes ? g->n_nodes : 1, sizeof *names);
    bsti_strmap used = {0};
    if (!names || !bsti_map_init(&used, g->n_nodes)) {
        free(names);
        free(used.slots);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory printing graph");
    }
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *n = &g->nodes[i];
        const bsti_op_info *info = bsti_op_get(n->op);
        if (!info || !info->is_source || n->op == BST_OP_CONST || !n->name)
            continue;
        size_t len = strlen(n->name);
        bool prefix = len == 0 || (n->name[0] >= '0' && n->name[0] <= '9');
        char *s = malloc(len + 2);
        if (!s) {
            for (uint32_t k = 0; k < i; k++)
                free(names[k]);
            free(names);
            free(used.slots);
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory printing graph");
        }
        size_t o = 0;
        if (prefix)
            s[o++] = '_';
        for (size_t k = 0; k < len; k++)
            s[o++] = bsti_text_ident_char((unsigned char)n->name[k]) ? n->name[k] : '_';
        s[o] = '\0';
        if (bsti_map_put(&used, s, o, i)) {
            free(s); /* taken: this one prints as %<id> */
            continue;
        }
        names[i] = s;
    }
    free(used.slots);
    *out_names = names;
    return BST_OK;
}

static void sb_value(sbuf *b, char **names, uint32_t id)
{
    if (names[id])
        sb_fmt(b, "%%%s", names[id]);
    else
        sb_fmt(b, "%%%u", id);
}

static void print_const_data(sbuf *b, const bsti_node *n)
{
    const unsigned char *d = n->const_data;
    uint64_t size = n->data_size;
    bst_dtype dt = n->type.dtype;
    if (dt == BST_DTYPE_F32 || dt == BST_DTYPE_I32 || dt == BST_DTYPE_I8) {
        uint64_t esize = dt == BST_DTYPE_I8 ? 1 : 4;
        sb_put(b, "[", 1);
        for (uint64_t i = 0; i + esize <= size; i += esize) {
            if (i)
                sb_put(b, ", ", 2);
            if (dt == BST_DTYPE_F32) {
                float f;
                memcpy(&f, d + i, 4);
                sb_real(b, f, true);
            } else if (dt == BST_DTYPE_I32) {
                int32_t v;
                memcpy(&v, d + i, 4);
                sb_fmt(b, "%" PRId32, v);
            } else {
                sb_fmt(b, "%d", (int)(int8_t)d[i]);
            }
        }
        sb_put(b, "]", 1);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "x\"", 2);
    for (uint64_t i = 0; i < size && !b->oom; i++) {
        char two[2] = {hex[d[i] >> 4], hex[d[i] & 15]};
        sb_put(b, two, 2);
    }
    sb_put(b, "\"", 1);
}

static void print_attr(sbuf *b, const bsti_node *n, const bst_attr *a)
{
    const char *an = bsti_attr_name((bst_attr_key)a->key);
    sb_fmt(b, " %s=", an ? an : "?");
    if (a->kind == BST_ATTR_KIND_FLOAT) {
        sb_real(b, a->f, false);
    } else if (a->kind == BST_ATTR_KIND_INT) {
        const char *dn = a->key == BST_ATTR_DTYPE ? bst_dtype_name((bst_dtype)a->ints[0]) : NULL;
        if (dn)
            sb_str(b, dn);
        else
            sb_fmt(b, "%" PRId64, a->ints[0]);
    } else {
        const bst_attr *sym = a->key == BST_ATTR_SHAPE ? bsti_node_attr(n, BST_ATTR_SYM) : NULL;
        sb_put(b, "[", 1);
        for (uint32_t i = 0; i < a->count && i < BST_MAX_DIMS; i++) {
            if (i)
                sb_put(b, ",", 1);
            const char *sn = sym && i < sym->count ? bsti_sym_name((bst_sym)sym->ints[i]) : NULL;
            if (sn)
                sb_fmt(b, "%s:", sn);
            sb_fmt(b, "%" PRId64, a->ints[i]);
        }
        sb_put(b, "]", 1);
    }
}

BST_API bst_status bst_graph_print(const bst_graph *graph, char **out_text)
{
    if (!graph || !out_text)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_print: NULL argument");
    *out_text = NULL;
    for (uint32_t i = 0; i < graph->n_nodes; i++) {
        const bsti_node *n = &graph->nodes[i];
        if (!bsti_op_get(n->op))
            return bsti_fail(BST_ERR_GRAPH, "print: node %%%u has unknown op id %d", i, (int)n->op);
        if (n->n_inputs > BST_MAX_INPUTS || n->n_attrs > BST_MAX_ATTRS)
            return bsti_fail(BST_ERR_GRAPH, "print: node %%%u is malformed", i);
        for (uint32_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= graph->n_nodes)
                return bsti_fail(BST_ERR_GRAPH, "print: node %%%u uses missing value %u", i,
                                 n->inputs[k]);
    }
    char **names;
    bst_status st = source_names(graph, &names);
    if (st)
        return st;
    bsti_c_locale loc;
    bsti_c_locale_enter(&loc);
    sbuf b = {0};
    for (uint32_t i = 0; i < graph->n_nodes && !b.oom; i++) {
        const bsti_node *n = &graph->nodes[i];
        const bsti_op_info *info = bsti_op_get(n->op);
        sb_value(&b, names, i);
        sb_fmt(&b, " = %s", info->name);
        if (info->is_source) {
            sb_put(&b, " ", 1);
            sb_type(&b, &n->type);
            sb_put(&b, " ", 1);
            if (n->op == BST_OP_CONST)
                print_const_data(&b, n);
            else
                sb_quoted(&b, n->name ? n->name : "");
            sb_put(&b, "\n", 1);
            continue;
        }
        for (uint32_t k = 0; k < n->n_inputs; k++) {
            sb_str(&b, k ? ", " : " ");
            sb_value(&b, names, n->inputs[k]);
        }
        for (unsigned key = 1; key < BST_ATTR_COUNT; key++) {
            const bst_attr *a = bsti_node_attr(n, (bst_attr_key)key);
            if (a && !(key == BST_ATTR_SYM && bsti_node_attr(n, BST_ATTR_SHAPE)))
                print_attr(&b, n, a);
        }
        sb_str(&b, " ; ");
        sb_type(&b, &n->type);
        sb_put(&b, "\n", 1);
    }
    for (uint32_t i = 0; i < graph->n_nodes && !b.oom; i++) {
        const bsti_node *n = &graph->nodes[i];
        if (!(n->flags & BSTI_NODE_OUTPUT))
            continue;
        sb_str(&b, "output ");
        sb_value(&b, names, i);
        sb_put(&b, " ", 1);
        sb_quoted(&b, n->name ? n->name : "");
        sb_put(&b, "\n", 1);
    }
    bsti_c_locale_leave(&loc);
    for (uint32_t i = 0; i < graph->n_nodes; i++)
        free(names[i]);
    free(names);
    if (b.oom) {
        free(b.s);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory printing graph");
    }
    if (!b.s) {
        b.s = calloc(1, 1);
        if (!b.s)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory printing graph");
    }
    *out_text = b.s;
    return BST_OK;
}
