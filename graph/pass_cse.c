/*
 * graph/pass_cse.c — common subexpression elimination: a node identical to an earlier one (same
 * op, inputs, attributes, type, placement) is replaced by it, and its uses are redirected.
 *
 * What is never merged:
 *  - effects (SET_ROWS): each is a write that must happen;
 *  - INPUT and STATE sources: each is a distinct buffer the embedder owns by name (a WEIGHT with
 *    the same name, data pointer and type is the same tensor and merges; a CONST merges with an
 *    equal CONST byte for byte);
 *  - state reads across an effect. A STATE's memory changes at each SET_ROWS, so a view of the
 *    KV cache taken after a write is not the value the same view gave before it. The rule chosen
 *    here is the simple sound one: a node that depends on a STATE (transitively, through any
 *    input) has the number of effects before it (its "epoch") in its key, so it merges only with
 *    a twin that saw the same writes. Nodes that do not depend on state merge freely. The rule is
 *    conservative (a write to layer 3's cache also separates reads of layer 4's), which costs
 *    nothing in practice: model graphs do not repeat state reads within a layer.
 * An output that merges into an earlier node hands it its output name, unless the earlier node
 * already has a name (then both stay, so every output keeps its own node).
 */
#include "graph/passes.h"
#include "graph/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct cse_ctx {
    const bst_graph *g;
    const bool *state;
    const uint32_t *epoch;
} cse_ctx;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_bytes(uint64_t h, const void *data, size_t size)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < size; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_attr(const bst_attr *a)
{
    uint64_t h = mix(a->key, a->kind);
    if (a->kind == BST_ATTR_KIND_FLOAT)
        return hash_bytes(h, &a->f, sizeof a->f);
    uint32_t count = a->kind == BST_ATTR_KIND_INTS ? a->count : 1;
    for (uint32_t i = 0; i < count && i < BST_MAX_DIMS; i++)
        h = mix(h, (uint64_t)a->ints[i]);
    return mix(h, count);
}

static bool attr_equal(const bst_attr *a, const bst_attr *b)
{
    if (a->key != b->key || a->kind != b->kind)
        return false;
    if (a->kind == BST_ATTR_KIND_FLOAT)
        return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    if (a->kind == BST_ATTR_KIND_INTS) {
        if (a->count != b->count || a->count > BST_MAX_DIMS)
            return false;
        return memcmp(a->ints, b->ints, a->count * sizeof a->ints[0]) == 0;
    }
    return a->ints[0] == b->ints[0];
}

static uint64_t hash_node(const cse_ctx *c, uint32_t id)
{
    const bsti_node *n = &c->g->nodes[id];
    uint64_t h = mix(0x51ed27, n->op);
    h = mix(h, n->n_inputs);
    for (uint32_t k = 0; k < n->n_inputs; k++)
        h = mix(h, n->inputs[k]);
    /* Attribute order carries no meaning, so the combination is order-independent. */
    uint64_t attrs = 0;
    for (uint32_t a = 0; a < n->n_attrs; a++)
        attrs += hash_attr(&n->attrs[a]);
    h = mix(h, attrs);
    h = mix(h, (uint64_t)n->type.dtype);
    for (uint32_t d = 0; d < n->type.rank; d++)
        h = mix(mix(h, (uint64_t)n->type.shape[d]), (uint64_t)n->type.strides[d]);
    if (c->state[id])
        h = mix(h, c->epoch[id]);
    if (n->op == BST_OP_CONST && n->const_data)
        h = hash_bytes(h, n->const_data, (size_t)n->data_size);
    if (n->op == BST_OP_WEIGHT) {
        h = mix(h, (uint64_t)(uintptr_t)n->weight_data);
        if (n->name)
            h = hash_bytes(h, n->name, strlen(n->name));
    }
    return h;
}

static bool type_equal(const bsti_type *a, const bsti_type *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank)
        return false;
    for (uint32_t d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d] || a->strides[d] != b->strides[d] || a->sym[d] != b->sym[d])
            return false;
    return true;
}

static bool nodes_equal(const cse_ctx *c, uint32_t x, uint32_t y)
{
    const bsti_node *a = &c->g->nodes[x], *b = &c->g->nodes[y];
    if (a->op != b->op || a->n_inputs != b->n_inputs || a->n_attrs != b->n_attrs)
        return false;
    if (c->state[x] != c->state[y] || (c->state[x] && c->epoch[x] != c->epoch[y]))
        return false;
    if (memcmp(a->inputs, b->inputs, a->n_inputs * sizeof a->inputs[0]) != 0)
        return false;
    for (uint32_t i = 0; i < a->n_attrs; i++) {
        bool found = false;
        for (uint32_t j = 0; j < b->n_attrs && !found; j++)
            found = attr_equal(&a->attrs[i], &b->attrs[j]);
        if (!found)
            return false;
    }
    if (!type_equal(&a->type, &b->type) || a->alias_offset != b->alias_offset)
        return false;
    if (a->device != b->device || a->variant != b->variant)
        return false;
    if (a->op == BST_OP_CONST)
        return a->data_size == b->data_size &&
               (a->data_size == 0 || memcmp(a->const_data, b->const_data, a->data_size) == 0);
    if (a->op == BST_OP_WEIGHT)
        return a->weight_data == b->weight_data && a->data_size == b->data_size && a->name &&
               b->name && strcmp(a->name, b->name) == 0;
    return true;
}

static bool mergeable(const bsti_node *n)
{
    if (bsti_pass_is_effect(n) || n->op == BST_OP_INPUT || n->op == BST_OP_STATE)
        return false;
    const bsti_op_info *info = bsti_op_get(n->op);
    return info != NULL && n->op != BST_OP_NONE;
}

bst_status bsti_pass_cse(bst_graph *g)
{
    if (!g)
        return bsti_fail(BST_ERR_INVALID_ARG, "cse: graph is NULL");
    uint32_t n = g->n_nodes;
    if (n == 0)
        return BST_OK;
    /* Open addressing at load <= 1/2. */
    uint32_t cap = 16;
    while (cap < 2u * n && cap < (1u << 31))
        cap <<= 1;
    bool *state = malloc(n * sizeof *state);
    uint32_t *epoch = malloc(n * sizeof *epoch);
    uint32_t *rep = malloc(n * sizeof *rep);
    bool *keep = malloc(n * sizeof *keep);
    uint32_t *table = malloc((size_t)cap * sizeof *table);
    uint64_t *hashes = malloc(n * sizeof *hashes);
    bst_status st = BST_OK;
    if (!state || !epoch || !rep || !keep || !table || !hashes) {
        st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "cse: out of memory for %u nodes", n);
        goto done;
    }
    memset(table, 0xff, (size_t)cap * sizeof *table);
    bsti_pass_state_analysis(g, state, epoch);
    cse_ctx c = {g, state, epoch};
    bool merged = false;
    for (uint32_t i = 0; i < n; i++) {
        bsti_node *node = &g->nodes[i];
        rep[i] = i;
        keep[i] = true;
        for (uint32_t k = 0; k < node->n_inputs && k < BST_MAX_INPUTS; k++) {
            if (node->inputs[k] >= i) {
                char where[BSTI_WHERE_MAX];
                st = bsti_fail(BST_ERR_GRAPH, "cse: %s: input %u (%%%u) is not defined before it",
                               bsti_pass_where(g, i, where), k, node->inputs[k]);
                goto done;
            }
            node->inputs[k] = rep[node->inputs[k]];
        }
        if (node->alias_of != BSTI_NONE && node->alias_of < i)
            node->alias_of = rep[node->alias_of];
        if (!mergeable(node))
            continue;
        uint64_t h = hash_node(&c, i);
        hashes[i] = h;
        uint32_t slot = (uint32_t)(h & (cap - 1));
        for (;; slot = (slot + 1) & (cap - 1)) {
            uint32_t other = table[slot];
            if (other == BSTI_NONE) {
                table[slot] = i;
                break;
            }
            if (hashes[other] != h || !nodes_equal(&c, other, i))
                continue;
            bsti_node *first = &g->nodes[other];
            if (node->flags & BSTI_NODE_OUTPUT) {
                if (first->name)
                    break; /* both named: keep both, `first` stays the table entry */
                first->name = node->name;
                first->flags |= BSTI_NODE_OUTPUT;
                node->name = NULL;
                node->flags &= ~(uint32_t)BSTI_NODE_OUTPUT;
            }
            rep[i] = other;
            keep[i] = false;
            merged = true;
            break;
        }
    }
    if (merged) {
        st = bsti_graph_compact(g, keep, NULL);
        if (st != BST_OK)
            st = bsti_fail_context(st, "cse");
    }
done:
    free(state);
    free(epoch);
    free(rep);
    free(keep);
    free(table);
    free(hashes);
    return st;
}
