/*
 * The graph core: growing and copying the node array, compaction with renumbering, and the
 * type helpers (strides, sizes, formatting) every other part of the compiler leans on.
 * Ownership: a node's name and const_data belong to the graph once appended.
 */
#include "graph/ir.h"
#include "graph/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BYTES ((uint64_t)1 << 62)

static void node_free(bsti_node *n)
{
    free(n->name);
    free(n->const_data);
    n->name = NULL;
    n->const_data = NULL;
}

bst_status bsti_graph_append(bst_graph *g, const bsti_node *node, uint32_t *out_id)
{
    if (!g || !node) {
        if (node) {
            free(node->name);
            free(node->const_data);
        }
        return bsti_fail(BST_ERR_INVALID_ARG, "graph append: NULL graph or node");
    }
    if (g->n_nodes >= BSTI_MAX_NODES) {
        free(node->name);
        free(node->const_data);
        return bsti_fail(BST_ERR_OVERFLOW, "graph has too many nodes (limit %u)", BSTI_MAX_NODES);
    }
    if (g->n_nodes == g->cap_nodes) {
        uint32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        if (cap > BSTI_MAX_NODES)
            cap = BSTI_MAX_NODES;
        bsti_node *grown = realloc(g->nodes, (size_t)cap * sizeof *grown);
        if (!grown) {
            free(node->name);
            free(node->const_data);
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory growing graph to %u nodes", cap);
        }
        g->nodes = grown;
        g->cap_nodes = cap;
    }
    uint32_t id = g->n_nodes++;
    g->nodes[id] = *node;
    if (out_id)
        *out_id = id;
    return BST_OK;
}

bst_status bsti_graph_clone(const bst_graph *g, bst_graph **out_graph)
{
    if (!g || !out_graph)
        return bsti_fail(BST_ERR_INVALID_ARG, "graph clone: NULL argument");
    *out_graph = NULL;
    bst_graph *c = calloc(1, sizeof *c);
    if (!c)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory cloning graph");
    if (g->n_nodes) {
        c->nodes = calloc(g->n_nodes, sizeof *c->nodes);
        if (!c->nodes) {
            free(c);
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory cloning %u nodes", g->n_nodes);
        }
        c->cap_nodes = g->n_nodes;
    }
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *src = &g->nodes[i];
        bsti_node *dst = &c->nodes[i];
        *dst = *src;
        dst->name = NULL;
        dst->const_data = NULL;
        c->n_nodes = i + 1; /* so destroy frees exactly what was copied */
        if (src->name && !(dst->name = strdup(src->name)))
            goto oom;
        if (src->const_data) {
            dst->const_data = malloc(src->data_size ? (size_t)src->data_size : 1);
            if (!dst->const_data)
                goto oom;
            memcpy(dst->const_data, src->const_data, (size_t)src->data_size);
        }
    }
    *out_graph = c;
    return BST_OK;
oom:
    bst_graph_destroy(c);
    return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory cloning graph");
}

bst_status bsti_graph_compact(bst_graph *g, const bool *keep, uint32_t *remap)
{
    if (!g || !keep)
        return bsti_fail(BST_ERR_INVALID_ARG, "graph compact: NULL argument");
    /* Validate everything before touching the graph, so a failure leaves it unchanged. */
    uint32_t next = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (!keep[i])
            continue;
        const bsti_node *n = &g->nodes[i];
        for (uint32_t k = 0; k < n->n_inputs; k++) {
            uint32_t in = n->inputs[k];
            if (in >= g->n_nodes || !keep[in])
                return bsti_fail(BST_ERR_GRAPH,
                                 "compact: kept node %%%u (%s) uses removed value %%%u", i,
                                 bst_op_name(n->op) ? bst_op_name(n->op) : "?", in);
        }
        if (n->alias_of != BSTI_NONE && (n->alias_of >= g->n_nodes || !keep[n->alias_of]))
            return bsti_fail(BST_ERR_GRAPH, "compact: kept node %%%u aliases removed value %%%u", i,
                             n->alias_of);
        next++;
    }
    uint32_t *map = remap;
    uint32_t *owned = NULL;
    if (!map) {
        owned = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *owned);
        if (!owned)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory compacting graph");
        map = owned;
    }
    next = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        map[i] = keep[i] ? next++ : BSTI_NONE;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (!keep[i]) {
            node_free(&g->nodes[i]);
            continue;
        }
        bsti_node n = g->nodes[i];
        for (uint32_t k = 0; k < n.n_inputs; k++)
            n.inputs[k] = map[n.inputs[k]];
        if (n.alias_of != BSTI_NONE)
            n.alias_of = map[n.alias_of];
        g->nodes[map[i]] = n;
    }
    g->n_nodes = next;
    free(owned);
    return BST_OK;
}

/* --- types --- */

void bsti_type_set_contiguous(bsti_type *t)
{
    uint32_t bs = bst_dtype_block_size(t->dtype);
    uint32_t bb = bst_dtype_block_bytes(t->dtype);
    if (!bs)
        bs = bb = 1;
    /* Unsigned wrap-around cannot trap; callers reject such shapes through bsti_type_nbytes. */
    uint64_t stride = bb;
    for (uint32_t i = t->rank; i-- > 0;) {
        t->strides[i] = (int64_t)stride;
        uint64_t extent = (uint64_t)t->shape[i];
        if (i == t->rank - 1)
            extent /= bs;
        stride *= extent;
    }
    for (uint32_t i = t->rank; i < BST_MAX_DIMS; i++)
        t->strides[i] = 0;
}

bool bsti_type_is_contiguous(const bsti_type *t)
{
    bsti_type c = *t;
    bsti_type_set_contiguous(&c);
    for (uint32_t i = 0; i < t->rank && i < BST_MAX_DIMS; i++) {
        /* A dim of extent 1 is never stepped over, so its stride does not matter. */
        if (t->shape[i] != 1 && t->strides[i] != c.strides[i])
            return false;
    }
    return true;
}

bst_status bsti_type_nelements(const bsti_type *t, int64_t *out_n)
{
    if (t->rank > BST_MAX_DIMS)
        return bsti_fail(BST_ERR_SHAPE, "rank %u exceeds %d", t->rank, BST_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->rank; i++) {
        if (t->shape[i] < 0)
            return bsti_fail(BST_ERR_SHAPE, "negative dim %" PRId64, t->shape[i]);
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n) || n > MAX_BYTES)
            return bsti_fail(BST_ERR_OVERFLOW, "tensor has more than 2^62 elements");
    }
    *out_n = (int64_t)n;
    return BST_OK;
}

bst_status bsti_type_nbytes(const bsti_type *t, uint64_t *out_bytes)
{
    int64_t n = 0;
    bst_status st = bsti_type_nelements(t, &n);
    if (st)
        return st;
    uint32_t bs = bst_dtype_block_size(t->dtype);
    uint32_t bb = bst_dtype_block_bytes(t->dtype);
    if (!bs)
        return bsti_fail(BST_ERR_SHAPE, "invalid dtype %d", (int)t->dtype);
    if (bs > 1 && (t->rank == 0 || t->shape[t->rank - 1] % bs != 0))
        return bsti_fail(BST_ERR_SHAPE, "%s tensor's innermost dim is not a multiple of %u",
                         bst_dtype_name(t->dtype), bs);
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)n / bs, (uint64_t)bb, &bytes) || bytes > MAX_BYTES)
        return bsti_fail(BST_ERR_OVERFLOW, "tensor is larger than 2^62 bytes");
    *out_bytes = bytes;
    return BST_OK;
}

void bsti_type_to_desc(const bsti_type *t, bst_tensor_desc *out_desc)
{
    memset(out_desc, 0, sizeof *out_desc);
    out_desc->struct_size = (uint32_t)sizeof *out_desc;
    out_desc->dtype = (uint32_t)t->dtype;
    out_desc->layout = BST_LAYOUT_NATIVE;
    out_desc->rank = t->rank;
    for (uint32_t i = 0; i < t->rank && i < BST_MAX_DIMS; i++) {
        out_desc->shape[i] = t->shape[i];
        out_desc->strides[i] = t->strides[i];
        out_desc->sym[i] = t->sym[i];
    }
}

const char *bsti_sym_name(bst_sym sym)
{
    switch (sym) {
    case BST_SYM_N_TOKENS:
        return "n_tokens";
    case BST_SYM_N_KV:
        return "n_kv";
    default:
        return NULL;
    }
}

/* Appends to a bounded buffer; truncation is silent because messages are best-effort. */
static void append(char *buf, size_t size, size_t *pos, const char *fmt, ...) BST_PRINTF(4, 5);
static void append(char *buf, size_t size, size_t *pos, const char *fmt, ...)
{
    if (*pos >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, size - *pos, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *pos += (size_t)n;
    if (*pos >= size)
        *pos = size;
}

void bsti_type_format(const bsti_type *t, char *buf, size_t size)
{
    if (!buf || !size)
        return;
    buf[0] = '\0';
    size_t pos = 0;
    const char *dn = bst_dtype_name(t->dtype);
    append(buf, size, &pos, "%s[", dn ? dn : "?");
    uint32_t rank = t->rank <= BST_MAX_DIMS ? t->rank : BST_MAX_DIMS;
    for (uint32_t i = 0; i < rank; i++) {
        const char *sn = bsti_sym_name((bst_sym)t->sym[i]);
        if (sn)
            append(buf, size, &pos, "%s%s:%" PRId64, i ? "," : "", sn, t->shape[i]);
        else
            append(buf, size, &pos, "%s%" PRId64, i ? "," : "", t->shape[i]);
    }
    append(buf, size, &pos, "]");
    if (!bsti_type_is_contiguous(t)) {
        append(buf, size, &pos, " strides=[");
        for (uint32_t i = 0; i < rank; i++)
            append(buf, size, &pos, "%s%" PRId64, i ? "," : "", t->strides[i]);
        append(buf, size, &pos, "]");
    }
}

/* --- attributes --- */

const bst_attr *bsti_node_attr(const bsti_node *n, bst_attr_key key)
{
    for (uint32_t i = 0; i < n->n_attrs && i < BST_MAX_ATTRS; i++)
        if (n->attrs[i].key == (uint32_t)key)
            return &n->attrs[i];
    return NULL;
}

int64_t bsti_attr_int(const bsti_node *n, bst_attr_key key, int64_t fallback)
{
    const bst_attr *a = bsti_node_attr(n, key);
    if (!a || a->kind == BST_ATTR_KIND_FLOAT || a->count == 0)
        return fallback;
    return a->ints[0];
}

double bsti_attr_float(const bsti_node *n, bst_attr_key key, double fallback)
{
    const bst_attr *a = bsti_node_attr(n, key);
    if (!a)
        return fallback;
    if (a->kind == BST_ATTR_KIND_FLOAT)
        return a->f;
    return a->count ? (double)a->ints[0] : fallback;
}
