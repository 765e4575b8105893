/*
 * graph/memplan.c — per-device memory planning for a partitioned graph.
 *
 * Memory is planned for "roots": values that own memory. An alias (view/reshape/permute/
 * transpose, and SET_ROWS, which writes into its state) owns none; its location is its root's
 * plus alias_offset. Roots come in two kinds:
 *  - persistent: sources (INPUT, WEIGHT, STATE, CONST), graph outputs, and anything written in
 *    place by another node. They live across runs, so each gets its own buffer on every device
 *    that touches it, outside the liveness planner.
 *  - scratch: every other computed value. They share one arena per device, placed by liveness.
 *
 * Time is the execution order of the partitions: each partition has a "copy slot" (when the
 * executor brings values produced elsewhere onto its device) followed by one step per node. A
 * scratch root is live on its producer's device from its definition to its last read there or
 * its last copy out; on another device, from the copy before the first partition there that
 * reads it to its last read there. Offsets come from greedy-by-size best-fit placement
 * (Pisarchyk & Lee, "Efficient Memory Management for Deep Neural Net Inference", 2020), which
 * stays within a few percent of the optimum on transformer graphs at O(n^2) cost.
 */
#include "graph/ir.h"
#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64u
#define UNSET UINT64_MAX

typedef struct interval {
    uint32_t root;
    uint64_t size; /* rounded up to ARENA_ALIGN */
    uint64_t start, end; /* inclusive */
    uint64_t offset;
} interval;

typedef struct planner {
    const bst_graph *g;
    const bsti_partitioning *parts;
    uint32_t n_dev;
    uint32_t *root;      /* per value */
    uint64_t *span;      /* per value: bytes its type addresses */
    bool *persistent;    /* per root */
    bool *need;          /* [root * n_dev + d]: root has memory on d */
    uint64_t *start;     /* [root * n_dev + d]: scratch liveness */
    uint64_t *end;
    uint32_t *part_of;   /* per value: partition index or BSTI_NONE */
    uint64_t *time;      /* per value: execution step of its node */
    uint64_t *copy_time; /* per partition */
    uint64_t *arena_off; /* [root * n_dev + d]: arena offset */
    uint32_t *buf_index; /* [root * n_dev + d]: persistent buffer index */
} planner;

static const char *op_name(bst_op op)
{
    const char *s = bst_op_name(op);
    return s ? s : "?";
}

/* "%7 "blk.0.attn_q.weight"" or "%7 (matmul)", for messages. */
static const char *value_label(const bst_graph *g, uint32_t v, char *buf, size_t cap)
{
    const bsti_node *n = &g->nodes[v];
    if (n->name)
        snprintf(buf, cap, "%%%u \"%s\"", v, n->name);
    else
        snprintf(buf, cap, "%%%u (%s)", v, op_name(n->op));
    return buf;
}

static bool add_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }
static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* Bytes from the first to one past the last byte a type addresses (strides may be permuted or
 * padded, so this is not always the element count times the element size). */
static bst_status type_span(const bst_graph *g, uint32_t v, uint64_t *out)
{
    const bsti_type *t = &g->nodes[v].type;
    uint32_t bs = bst_dtype_block_size(t->dtype), bb = bst_dtype_block_bytes(t->dtype);
    char label[160];
    if (bs == 0 || bb == 0)
        return bsti_fail(BST_ERR_GRAPH, "memory plan: value %s has invalid dtype %u",
                         value_label(g, v, label, sizeof label), (unsigned)t->dtype);
    if (t->rank > BST_MAX_DIMS)
        return bsti_fail(BST_ERR_GRAPH, "memory plan: value %s has rank %u",
                         value_label(g, v, label, sizeof label), t->rank);
    uint64_t span = 0;
    for (uint32_t i = 0; i < t->rank; i++) {
        int64_t ext = t->shape[i];
        if (ext < 0 || t->strides[i] < 0)
            return bsti_fail(BST_ERR_GRAPH,
                             "memory plan: value %s has a negative extent or stride in dim %u",
                             value_label(g, v, label, sizeof label), i);
        if (ext == 0) {
            *out = 0;
            return BST_OK;
        }
        uint64_t units = (uint64_t)ext;
        if (i + 1 == t->rank) {
            if (units % bs != 0)
                return bsti_fail(BST_ERR_GRAPH,
                                 "memory plan: value %s: innermost dim %lld is not a multiple "
                                 "of the block size %u",
                                 value_label(g, v, label, sizeof label), (long long)ext, bs);
            units /= bs;
        }
        uint64_t part;
        if (!mul_u64(units - 1, (uint64_t)t->strides[i], &part) || !add_u64(span, part, &span))
            return bsti_fail(BST_ERR_OVERFLOW, "memory plan: size of value %s overflows",
                             value_label(g, v, label, sizeof label));
    }
    if (!add_u64(span, bb, &span))
        return bsti_fail(BST_ERR_OVERFLOW, "memory plan: size of value %s overflows",
                         value_label(g, v, label, sizeof label));
    *out = span;
    return BST_OK;
}

static void planner_free(planner *p)
{
    free(p->root);
    free(p->span);
    free(p->persistent);
    free(p->need);
    free(p->start);
    free(p->end);
    free(p->part_of);
    free(p->time);
    free(p->copy_time);
    free(p->arena_off);
    free(p->buf_index);
}

static bst_status planner_init(planner *p, const bst_graph *g, const bsti_partitioning *parts,
                               uint32_t n_dev)
{
    memset(p, 0, sizeof *p);
    p->g = g;
    p->parts = parts;
    p->n_dev = n_dev;
    size_t n = g->n_nodes;
    size_t nd = n * (size_t)(n_dev ? n_dev : 1);
    if (n_dev && nd / n_dev != n)
        return bsti_fail(BST_ERR_OVERFLOW, "memory plan: %zu values x %u devices overflows", n,
                         n_dev);
    size_t cells = nd ? nd : 1, values = n ? n : 1;
    p->root = malloc(values * sizeof *p->root);
    p->span = calloc(values, sizeof *p->span);
    p->persistent = calloc(values, sizeof *p->persistent);
    p->part_of = malloc(values * sizeof *p->part_of);
    p->time = calloc(values, sizeof *p->time);
    p->copy_time = calloc(parts->n_parts ? parts->n_parts : 1, sizeof *p->copy_time);
    p->need = calloc(cells, sizeof *p->need);
    p->start = malloc(cells * sizeof *p->start);
    p->end = malloc(cells * sizeof *p->end);
    p->arena_off = malloc(cells * sizeof *p->arena_off);
    p->buf_index = malloc(cells * sizeof *p->buf_index);
    if (!p->root || !p->span || !p->persistent || !p->part_of || !p->time || !p->copy_time ||
        !p->need || !p->start || !p->end || !p->arena_off || !p->buf_index)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "memory plan: out of memory for %zu values", n);
    for (size_t i = 0; i < cells; i++) {
        p->start[i] = UNSET;
        p->end[i] = 0;
        p->arena_off[i] = UNSET;
        p->buf_index[i] = BSTI_NONE;
    }
    for (size_t i = 0; i < n; i++)
        p->part_of[i] = BSTI_NONE;
    return BST_OK;
}

static bool is_alias_op(bst_op op)
{
    const bsti_op_info *info = bsti_op_get(op);
    return info && info->is_alias;
}

static bool is_source_op(bst_op op)
{
    const bsti_op_info *info = bsti_op_get(op);
    return info && info->is_source;
}

/* Roots, spans, partition membership and the execution timeline. */
static bst_status plan_values(planner *p)
{
    const bst_graph *g = p->g;
    char label[160];
    for (uint32_t v = 0; v < g->n_nodes; v++) {
        const bsti_node *n = &g->nodes[v];
        if (!bsti_op_get(n->op))
            return bsti_fail(BST_ERR_GRAPH, "memory plan: node %%%u has unknown op id %u", v,
                             (unsigned)n->op);
        uint32_t r = v;
        if (n->alias_of != BSTI_NONE) {
            if (n->alias_of >= v)
                return bsti_fail(BST_ERR_GRAPH,
                                 "memory plan: value %s aliases %%%u, which is not defined "
                                 "before it",
                                 value_label(g, v, label, sizeof label), n->alias_of);
            r = p->root[n->alias_of];
        } else if (is_alias_op(n->op) && n->n_inputs > 0 && n->inputs[0] < v) {
            r = p->root[n->inputs[0]];
        }
        p->root[v] = r;
        bst_status st = type_span(g, v, &p->span[v]);
        if (st != BST_OK)
            return st;
        if (r == v) {
            /* A root's buffer holds at least its contiguous size, whatever its strides say. */
            uint64_t bytes;
            st = bsti_type_nbytes(&n->type, &bytes);
            if (st != BST_OK)
                return st;
            if (bytes > p->span[v])
                p->span[v] = bytes;
        }
    }
    uint64_t t = 0;
    for (uint32_t pi = 0; pi < p->parts->n_parts; pi++) {
        const bsti_partition *part = &p->parts->parts[pi];
        if (part->device >= p->n_dev)
            return bsti_fail(BST_ERR_INVALID_ARG,
                             "memory plan: partition %u is on device %u of %u", pi,
                             part->device, p->n_dev);
        p->copy_time[pi] = t++;
        for (uint32_t k = 0; k < part->n_nodes; k++) {
            uint32_t id = part->nodes[k];
            if (id >= g->n_nodes)
                return bsti_fail(BST_ERR_INVALID_ARG,
                                 "memory plan: partition %u names node %%%u of %u", pi, id,
                                 g->n_nodes);
            if (p->part_of[id] != BSTI_NONE)
                return bsti_fail(BST_ERR_INVALID_ARG,
                                 "memory plan: node %%%u is in partitions %u and %u", id,
                                 p->part_of[id], pi);
            p->part_of[id] = pi;
            p->time[id] = t++;
        }
    }
    return BST_OK;
}

/* Which roots are persistent, and which devices each root needs memory on. */
static void plan_needs(planner *p)
{
    const bst_graph *g = p->g;
    for (uint32_t v = 0; v < g->n_nodes; v++) {
        const bsti_node *n = &g->nodes[v];
        if (p->root[v] == v && is_source_op(n->op))
            p->persistent[v] = true;
        if (n->flags & BSTI_NODE_OUTPUT)
            p->persistent[p->root[v]] = true;
        /* A node that writes into another value's memory (SET_ROWS into its state) makes that
         * memory outlive the liveness planner's single-writer view. */
        if (p->root[v] != v && !is_alias_op(n->op))
            p->persistent[p->root[v]] = true;
    }
    for (uint32_t pi = 0; pi < p->parts->n_parts; pi++) {
        const bsti_partition *part = &p->parts->parts[pi];
        uint32_t d = part->device;
        for (uint32_t k = 0; k < part->n_nodes; k++) {
            const bsti_node *n = &g->nodes[part->nodes[k]];
            p->need[(size_t)p->root[part->nodes[k]] * p->n_dev + d] = true;
            for (uint32_t i = 0; i < n->n_inputs; i++)
                if (n->inputs[i] < g->n_nodes)
                    p->need[(size_t)p->root[n->inputs[i]] * p->n_dev + d] = true;
        }
    }
    /* An output nobody computes on (a graph that returns an input or a weight) still has to
     * live somewhere for the caller to read it back. */
    if (p->n_dev == 0)
        return;
    for (uint32_t v = 0; v < g->n_nodes; v++) {
        if (!(g->nodes[v].flags & BSTI_NODE_OUTPUT))
            continue;
        uint32_t r = p->root[v];
        bool any = false;
        for (uint32_t d = 0; d < p->n_dev; d++)
            any = any || p->need[(size_t)r * p->n_dev + d];
        if (!any)
            p->need[(size_t)r * p->n_dev] = true;
    }
}

static void extend(uint64_t *start, uint64_t *end, uint64_t s, uint64_t e)
{
    if (*start == UNSET || s < *start)
        *start = s;
    if (e > *end)
        *end = e;
}

/* Liveness of scratch roots on every device that needs them. */
static bst_status plan_liveness(planner *p)
{
    const bst_graph *g = p->g;
    char label[160];
    size_t nd = p->n_dev;
    for (uint32_t pi = 0; pi < p->parts->n_parts; pi++) {
        const bsti_partition *part = &p->parts->parts[pi];
        uint32_t d = part->device;
        for (uint32_t k = 0; k < part->n_nodes; k++) {
            uint32_t id = part->nodes[k];
            const bsti_node *n = &g->nodes[id];
            uint64_t t = p->time[id];
            if (p->root[id] == id && !p->persistent[id])
                extend(&p->start[id * nd + d], &p->end[id * nd + d], t, t);
            for (uint32_t i = 0; i < n->n_inputs; i++) {
                if (n->inputs[i] >= g->n_nodes)
                    continue;
                uint32_t r = p->root[n->inputs[i]];
                if (p->persistent[r])
                    continue;
                uint32_t rp = p->part_of[r];
                if (rp == BSTI_NONE || p->time[r] >= t)
                    return bsti_fail(BST_ERR_INVALID_ARG,
                                     "memory plan: node %%%u reads %s, which no earlier "
                                     "partition computes",
                                     id, value_label(g, r, label, sizeof label));
                uint32_t home = p->parts->parts[rp].device;
                if (home == d) {
                    extend(&p->start[r * nd + d], &p->end[r * nd + d], p->time[r], t);
                    continue;
                }
                /* Copied in before the first partition on d that reads it; the producer's copy
                 * must survive until then. */
                uint64_t *s = &p->start[r * nd + d];
                if (*s == UNSET) {
                    uint64_t ct = p->copy_time[pi];
                    extend(&p->start[r * nd + home], &p->end[r * nd + home], p->time[r], ct);
                    *s = ct;
                }
                extend(s, &p->end[r * nd + d], *s, t);
            }
        }
    }
    return BST_OK;
}

static int by_size_desc(const void *a, const void *b)
{
    const interval *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->root < y->root ? -1 : (x->root > y->root);
}

static int by_offset(const void *a, const void *b)
{
    const interval *const *x = a, *const *y = b;
    if ((*x)->offset != (*y)->offset)
        return (*x)->offset < (*y)->offset ? -1 : 1;
    return 0;
}

/* Greedy by size, best fit: each interval, largest first, goes into the smallest gap between the
 * already placed intervals it overlaps in time, or after the last of them. */
static bst_status place_arena(interval *iv, uint32_t n, uint64_t *out_peak)
{
    qsort(iv, n, sizeof *iv, by_size_desc);
    const interval **live = malloc((n ? n : 1) * sizeof *live);
    if (!live)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "memory plan: out of memory");
    uint64_t peak = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m = 0;
        for (uint32_t j = 0; j < i; j++)
            if (iv[j].start <= iv[i].end && iv[i].start <= iv[j].end)
                live[m++] = &iv[j];
        qsort(live, m, sizeof *live, by_offset);
        uint64_t best = UNSET, best_gap = UNSET, prev_end = 0;
        for (uint32_t j = 0; j < m; j++) {
            if (live[j]->offset > prev_end) {
                uint64_t gap = live[j]->offset - prev_end;
                if (gap >= iv[i].size && gap < best_gap) {
                    best_gap = gap;
                    best = prev_end;
                }
            }
            uint64_t e = live[j]->offset + live[j]->size;
            if (e > prev_end)
                prev_end = e;
        }
        iv[i].offset = best != UNSET ? best : prev_end;
        uint64_t top;
        if (!add_u64(iv[i].offset, iv[i].size, &top)) {
            free(live);
            return bsti_fail(BST_ERR_OVERFLOW, "memory plan: arena size overflows");
        }
        if (top > peak)
            peak = top;
    }
    free(live);
    *out_peak = peak;
    return BST_OK;
}

static bst_status plan_arenas(planner *p, bsti_memplan *out, const uint64_t *max_alloc)
{
    const bst_graph *g = p->g;
    char label[160];
    size_t nd = p->n_dev;
    interval *iv = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *iv);
    if (!iv)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "memory plan: out of memory");
    bst_status st = BST_OK;
    for (uint32_t d = 0; d < p->n_dev && st == BST_OK; d++) {
        uint32_t n = 0;
        uint64_t limit = max_alloc ? max_alloc[d] : 0;
        for (uint32_t r = 0; r < g->n_nodes; r++) {
            if (p->root[r] != r || p->persistent[r] || !p->need[r * nd + d])
                continue;
            if (p->start[r * nd + d] == UNSET)
                continue; /* needed only by a node outside every partition: nothing reads it */
            uint64_t size = p->span[r];
            if (limit && size > limit) {
                st = bsti_fail(BST_ERR_DEVICE_OOM,
                               "memory plan: value %s needs %llu bytes on device %u, above its "
                               "largest allocation of %llu bytes",
                               value_label(g, r, label, sizeof label), (unsigned long long)size,
                               d, (unsigned long long)limit);
                break;
            }
            if (!add_u64(size, ARENA_ALIGN - 1, &size)) {
                st = bsti_fail(BST_ERR_OVERFLOW, "memory plan: size of value %s overflows",
                               value_label(g, r, label, sizeof label));
                break;
            }
            size &= ~(uint64_t)(ARENA_ALIGN - 1);
            iv[n++] = (interval){.root = r, .size = size, .start = p->start[r * nd + d],
                                 .end = p->end[r * nd + d]};
        }
        if (st != BST_OK)
            break;
        uint64_t peak = 0;
        st = place_arena(iv, n, &peak);
        if (st != BST_OK)
            break;
        if (limit && peak > limit) {
            st = bsti_fail(BST_ERR_DEVICE_OOM,
                           "memory plan: the scratch arena of device %u needs %llu bytes, above "
                           "its largest allocation of %llu bytes",
                           d, (unsigned long long)peak, (unsigned long long)limit);
            break;
        }
        out->arena_bytes[d] = peak;
        for (uint32_t i = 0; i < n; i++)
            p->arena_off[(size_t)iv[i].root * nd + d] = iv[i].offset;
    }
    free(iv);
    return st;
}

static bst_status plan_persistent(planner *p, bsti_memplan *out, const uint64_t *max_alloc)
{
    const bst_graph *g = p->g;
    char label[160];
    size_t nd = p->n_dev;
    uint32_t count = 0;
    for (uint32_t r = 0; r < g->n_nodes; r++)
        if (p->root[r] == r && p->persistent[r])
            for (uint32_t d = 0; d < p->n_dev; d++)
                count += p->need[r * nd + d];
    out->buffers = calloc(count ? count : 1, sizeof *out->buffers);
    if (!out->buffers)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "memory plan: out of memory");
    for (uint32_t r = 0; r < g->n_nodes; r++) {
        if (p->root[r] != r || !p->persistent[r])
            continue;
        for (uint32_t d = 0; d < p->n_dev; d++) {
            if (!p->need[r * nd + d])
                continue;
            uint64_t size = p->span[r];
            if (max_alloc && max_alloc[d] && size > max_alloc[d])
                return bsti_fail(BST_ERR_DEVICE_OOM,
                                 "memory plan: value %s needs %llu bytes on device %u, above its "
                                 "largest allocation of %llu bytes",
                                 value_label(g, r, label, sizeof label),
                                 (unsigned long long)size, d,
                                 (unsigned long long)max_alloc[d]);
            if (!add_u64(out->persistent_bytes[d], size, &out->persistent_bytes[d]))
                return bsti_fail(BST_ERR_OVERFLOW,
                                 "memory plan: persistent bytes of device %u overflow", d);
            p->buf_index[r * nd + d] = out->n_buffers;
            out->buffers[out->n_buffers++] =
                (bsti_persistent_buffer){.value = r, .device = d, .size = size};
        }
    }
    return BST_OK;
}

static int by_value_device(const void *a, const void *b)
{
    const bsti_value_loc *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return x->device < y->device ? -1 : (x->device > y->device);
}

/* A location for every (value, device) whose root has memory on that device. */
static bst_status plan_locs(planner *p, bsti_memplan *out)
{
    const bst_graph *g = p->g;
    char label[160];
    size_t nd = p->n_dev;
    size_t count = 0;
    for (uint32_t v = 0; v < g->n_nodes; v++)
        for (uint32_t d = 0; d < p->n_dev; d++) {
            size_t c = (size_t)p->root[v] * nd + d;
            count += p->buf_index[c] != BSTI_NONE || p->arena_off[c] != UNSET;
        }
    if (count > UINT32_MAX)
        return bsti_fail(BST_ERR_OVERFLOW, "memory plan: too many locations");
    out->locs = calloc(count ? count : 1, sizeof *out->locs);
    if (!out->locs)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "memory plan: out of memory");
    for (uint32_t v = 0; v < g->n_nodes; v++) {
        uint32_t r = p->root[v];
        uint64_t extra = r == v ? 0 : g->nodes[v].alias_offset;
        if (r != v) {
            uint64_t top;
            if (!add_u64(extra, p->span[v], &top) || top > p->span[r])
                return bsti_fail(BST_ERR_GRAPH,
                                 "memory plan: alias %s reaches past the end of its base %%%u "
                                 "(%llu + %llu > %llu bytes)",
                                 value_label(g, v, label, sizeof label), r,
                                 (unsigned long long)extra, (unsigned long long)p->span[v],
                                 (unsigned long long)p->span[r]);
        }
        for (uint32_t d = 0; d < p->n_dev; d++) {
            size_t c = (size_t)r * nd + d;
            bsti_value_loc loc = {.value = v, .device = d, .size = p->span[v]};
            if (p->buf_index[c] != BSTI_NONE) {
                loc.kind = BSTI_LOC_PERSISTENT;
                loc.buffer = p->buf_index[c];
                loc.offset = extra;
            } else if (p->arena_off[c] != UNSET) {
                loc.kind = BSTI_LOC_ARENA;
                loc.buffer = BSTI_NONE;
                loc.offset = p->arena_off[c] + extra;
            } else {
                continue;
            }
            out->locs[out->n_locs++] = loc;
        }
    }
    qsort(out->locs, out->n_locs, sizeof *out->locs, by_value_device);
    return BST_OK;
}

bst_status bsti_plan_memory(const bst_graph *g, const bsti_partitioning *parts,
                            uint32_t n_devices, const uint64_t *max_alloc, bsti_memplan *out)
{
    if (!g || !parts || !out || (parts->n_parts && !parts->parts))
        return bsti_fail(BST_ERR_INVALID_ARG, "memory plan: NULL argument");
    memset(out, 0, sizeof *out);
    out->n_devices = n_devices;
    out->arena_bytes = calloc(n_devices ? n_devices : 1, sizeof *out->arena_bytes);
    out->persistent_bytes = calloc(n_devices ? n_devices : 1, sizeof *out->persistent_bytes);
    if (!out->arena_bytes || !out->persistent_bytes) {
        bsti_memplan_free(out);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "memory plan: out of memory");
    }
    planner p;
    bst_status st = planner_init(&p, g, parts, n_devices);
    if (st == BST_OK)
        st = plan_values(&p);
    if (st == BST_OK) {
        plan_needs(&p);
        st = plan_liveness(&p);
    }
    if (st == BST_OK)
        st = plan_persistent(&p, out, max_alloc);
    if (st == BST_OK)
        st = plan_arenas(&p, out, max_alloc);
    if (st == BST_OK)
        st = plan_locs(&p, out);
    planner_free(&p);
    if (st != BST_OK)
        bsti_memplan_free(out);
    return st;
}

void bsti_memplan_free(bsti_memplan *plan)
{
    if (!plan)
        return;
    free(plan->arena_bytes);
    free(plan->persistent_bytes);
    free(plan->locs);
    free(plan->buffers);
    memset(plan, 0, sizeof *plan);
}

const bsti_value_loc *bsti_memplan_find(const bsti_memplan *plan, uint32_t value,
                                        uint32_t device)
{
    if (!plan || !plan->locs)
        return NULL;
    bsti_value_loc key = {.value = value, .device = device};
    return bsearch(&key, plan->locs, plan->n_locs, sizeof *plan->locs, by_value_device);
}
