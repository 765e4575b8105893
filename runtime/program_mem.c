/*
 * runtime/program_mem.c — a program's device memory: the scratch arena of every device in use,
 * one buffer per persistent (value, device) from the memory plan, their initial contents
 * (weights uploaded or prepared by the backend, constants copied, state and inputs zeroed), and
 * the copies that bring a value onto another device before a partition there reads it.
 *
 * Which copies run is decided once, here, by replaying the partitions in order and tracking on
 * which devices each root's newest contents are. A state written during a run starts the next
 * run valid only where its last writer put it, so the same static list of copies is right for
 * every run, the first (all copies zero) included.
 */
#include "runtime/program_internal.h"

#include "graph/quant.h"
#include "graph/status.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define STAGING_MAX ((uint64_t)16 << 20)
#define FILL_CHUNK ((uint64_t)64 << 10)

static const uint8_t zeros[FILL_CHUNK];

static const char *value_label(const bst_graph *g, uint32_t v, char *buf, size_t cap)
{
    const bsti_node *n = &g->nodes[v];
    const char *op = bst_op_name(n->op);
    if (n->name)
        snprintf(buf, cap, "%%%u \"%s\"", v, n->name);
    else
        snprintf(buf, cap, "%%%u (%s)", v, op ? op : "?");
    return buf;
}

static const bst_backend_api *dev_api(const bst_program *p, uint32_t d)
{
    return &p->ctx->devices[d].plugin->api;
}

static void *dev_handle(const bst_program *p, uint32_t d) { return p->ctx->devices[d].handle; }

void *bsti_prog_loc_buffer(const bst_program *p, const bsti_value_loc *loc)
{
    if (loc->kind == BSTI_LOC_ARENA)
        return p->devs[loc->device].arena;
    return loc->buffer < p->plan.n_buffers ? p->buffers[loc->buffer] : NULL;
}

/* --- deterministic stand-in weights for graphs without data (the text form) --- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* Uniform in [-1, 1]. */
static float next_unit(uint64_t *state)
{
    return (float)((double)(splitmix64(state) >> 11) * 0x1.0p-52 - 1.0);
}

/* Fills a WEIGHT that has no data with values in [-1, 1] from a generator seeded by the weight's
 * name, so the same text graph always computes the same numbers. Integer weights get 0 or 1
 * (valid row ids for get_rows). */
static bst_status generate_weight(bst_program *p, uint32_t r, const void **out_data)
{
    const bsti_node *n = &p->g->nodes[r];
    if (p->generated[r]) {
        *out_data = p->generated[r];
        return BST_OK;
    }
    uint64_t bytes;
    int64_t count;
    bst_status st = bsti_type_nbytes(&n->type, &bytes);
    if (st == BST_OK)
        st = bsti_type_nelements(&n->type, &count);
    if (st != BST_OK)
        return st;
    if (bytes > SIZE_MAX)
        return bsti_fail(BST_ERR_OVERFLOW, "weight %%%u is too large for this host", r);
    uint8_t *data = malloc(bytes ? (size_t)bytes : 1);
    if (!data)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY,
                         "out of memory generating %llu bytes of weight %%%u",
                         (unsigned long long)bytes, r);
    char idname[32];
    snprintf(idname, sizeof idname, "%%%u", r);
    uint64_t state = fnv1a(n->name ? n->name : idname);
    bst_dtype dt = n->type.dtype;
    if (dt == BST_DTYPE_I32 || dt == BST_DTYPE_I8) {
        for (int64_t i = 0; i < count; i++) {
            int32_t v = next_unit(&state) < 0.0f ? 0 : 1;
            if (dt == BST_DTYPE_I32)
                memcpy(data + i * 4, &v, 4);
            else
                data[i] = (uint8_t)v;
        }
    } else {
        uint32_t bs = bst_dtype_block_size(dt), bb = bst_dtype_block_bytes(dt);
        if (bs == 0 || bb == 0) {
            free(data);
            return bsti_fail(BST_ERR_UNSUPPORTED, "cannot generate weight %%%u of dtype %u", r,
                             (unsigned)dt);
        }
        enum { CHUNK = 8192 };
        float vals[CHUNK];
        int64_t per = (int64_t)(CHUNK / bs) * bs;
        for (int64_t done = 0; done < count && st == BST_OK; done += per) {
            int64_t m = count - done < per ? count - done : per;
            for (int64_t i = 0; i < m; i++)
                vals[i] = next_unit(&state);
            st = bsti_quantize(dt, vals, data + (uint64_t)(done / bs) * bb, m);
        }
        if (st != BST_OK) {
            free(data);
            return bsti_fail_context(st, "generating weight %%%u", r);
        }
    }
    p->generated[r] = data;
    *out_data = data;
    return BST_OK;
}

/* --- buffers --- */

static bst_status fill_buffer(bst_program *p, uint32_t d, void *buf, const void *data,
                              uint64_t size, uint32_t value)
{
    const bst_backend_api *api = dev_api(p, d);
    char label[160];
    for (uint64_t off = 0; off < size;) {
        uint64_t m = data ? size : (size - off < FILL_CHUNK ? size - off : FILL_CHUNK);
        bsti_prog_clear_error();
        bst_status st = api->buffer_write(dev_handle(p, d), buf, off,
                                          data ? (const uint8_t *)data + off : zeros, m);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, d, st, "writing %llu bytes of value %s",
                                           (unsigned long long)m,
                                           value_label(p->g, value, label, sizeof label));
        off += m;
    }
    return BST_OK;
}

static bst_status alloc_buffer(bst_program *p, uint32_t d, uint64_t size, uint32_t value,
                               void **out)
{
    char label[160];
    bsti_prog_clear_error();
    bst_status st = dev_api(p, d)->buffer_alloc(dev_handle(p, d), size ? size : 1, out);
    if (st != BST_OK || !*out) {
        *out = NULL;
        if (value == BSTI_NONE)
            return bsti_prog_backend_error(p, d, st ? st : BST_ERR_BACKEND,
                                           "allocating a %llu-byte scratch arena",
                                           (unsigned long long)size);
        return bsti_prog_backend_error(p, d, st ? st : BST_ERR_BACKEND,
                                       "allocating %llu bytes for value %s",
                                       (unsigned long long)size,
                                       value_label(p->g, value, label, sizeof label));
    }
    return BST_OK;
}

/* The pages wholly inside a file-mapped weight's bytes stop counting as this process's memory
 * once the weight is on its device: a backend that copied or repacked it never reads them
 * again, and one that reads the weight in place maps them again on first use (a minor fault:
 * the page cache keeps them). Without this, every copied weight was resident twice, the copy
 * and the file pages the copying read. Advisory: a failure changes nothing but memory. */
static void release_file_pages(const bsti_node *n)
{
    if (!(n->flags & BSTI_NODE_FILE_MAPPED) || !n->weight_data)
        return;
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0)
        return;
    uintptr_t page = (uintptr_t)ps, begin = (uintptr_t)n->weight_data;
    uintptr_t lo = (begin + page - 1) / page * page, hi = (begin + n->data_size) / page * page;
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
        bsti_log(BST_LOG_DEBUG, "program: madvise(MADV_DONTNEED) of a weight's %zu file bytes "
                 "failed: %s", (size_t)(hi - lo), strerror(errno));
}

static bst_status upload_weight(bst_program *p, uint32_t i, bool has_aliases)
{
    const bsti_persistent_buffer *b = &p->plan.buffers[i];
    const bsti_node *n = &p->g->nodes[b->value];
    char label[160], type[160];
    uint64_t bytes;
    bst_status st = bsti_type_nbytes(&n->type, &bytes);
    if (st != BST_OK)
        return st;
    const void *data = n->weight_data;
    if (!data) {
        st = generate_weight(p, b->value, &data);
        if (st != BST_OK)
            return st;
    } else if (n->data_size != bytes) {
        bsti_type_format(&n->type, type, sizeof type);
        return bsti_fail(BST_ERR_INVALID_ARG, "weight %s has %llu bytes of data; %s needs %llu",
                         value_label(p->g, b->value, label, sizeof label),
                         (unsigned long long)n->data_size, type, (unsigned long long)bytes);
    }
    const bst_backend_api *api = dev_api(p, b->device);
    /* A repacked weight cannot be addressed through views, so a weight with aliases is always
     * uploaded in its native layout. */
    if (api->prepare_weight && !has_aliases) {
        bst_tensor_desc desc;
        bsti_type_to_desc(&n->type, &desc);
        desc.struct_size = (uint32_t)sizeof desc;
        desc.layout = BST_LAYOUT_NATIVE;
        desc.binding = 0;
        desc.offset = 0;
        void *buf = NULL;
        uint64_t cost = 0;
        uint32_t layout = BST_LAYOUT_NATIVE;
        bsti_prog_clear_error();
        st = api->prepare_weight(dev_handle(p, b->device), &desc, data, bytes, &buf, &cost,
                                 &layout);
        if (st != BST_OK || !buf)
            return bsti_prog_backend_error(p, b->device, st ? st : BST_ERR_BACKEND,
                                           "preparing weight %s",
                                           value_label(p->g, b->value, label, sizeof label));
        p->buffers[i] = buf;
        p->buffer_bytes[i] = cost;
        p->buffer_layout[i] = layout;
        release_file_pages(n);
        return BST_OK;
    }
    st = alloc_buffer(p, b->device, b->size, b->value, &p->buffers[i]);
    if (st == BST_OK)
        st = fill_buffer(p, b->device, p->buffers[i], data, bytes, b->value);
    if (st == BST_OK)
        release_file_pages(n);
    return st;
}

static bst_status init_buffer(bst_program *p, uint32_t i, bool has_aliases)
{
    const bsti_persistent_buffer *b = &p->plan.buffers[i];
    const bsti_node *n = &p->g->nodes[b->value];
    p->buffer_bytes[i] = b->size;
    p->buffer_layout[i] = BST_LAYOUT_NATIVE;
    if (n->op == BST_OP_WEIGHT)
        return upload_weight(p, i, has_aliases);
    bst_status st = alloc_buffer(p, b->device, b->size, b->value, &p->buffers[i]);
    if (st != BST_OK)
        return st;
    if (n->op == BST_OP_CONST) {
        char label[160];
        if (!n->const_data || n->data_size != b->size)
            return bsti_fail(BST_ERR_INVALID_ARG, "constant %s has %llu bytes for a %llu-byte "
                             "value", value_label(p->g, b->value, label, sizeof label),
                             (unsigned long long)n->data_size, (unsigned long long)b->size);
        return fill_buffer(p, b->device, p->buffers[i], n->const_data, n->data_size, b->value);
    }
    /* State starts at zero (an empty KV cache); inputs and outputs too, so a run before
     * set_input computes on defined data. */
    return fill_buffer(p, b->device, p->buffers[i], NULL, b->size, b->value);
}

bst_status bsti_prog_alloc_buffers(bst_program *p)
{
    bst_context *ctx = p->ctx;
    for (uint32_t i = 0; i < p->parts.n_parts; i++)
        p->devs[p->parts.parts[i].device].used = true;
    for (uint32_t i = 0; i < p->plan.n_buffers; i++)
        p->devs[p->plan.buffers[i].device].used = true;
    for (uint32_t d = 0; d < ctx->n_devices; d++) {
        if (!p->devs[d].used)
            continue;
        void *handle = NULL;
        bst_status st = bsti_device_get(ctx, d, &handle);
        if (st != BST_OK)
            return st;
        if (!handle)
            return bsti_fail(BST_ERR_INTERNAL, "device %u opened without a handle", d);
        if (p->plan.arena_bytes[d] > 0) {
            st = alloc_buffer(p, d, p->plan.arena_bytes[d], BSTI_NONE, &p->devs[d].arena);
            if (st != BST_OK)
                return st;
        }
    }
    size_t nb = p->plan.n_buffers ? p->plan.n_buffers : 1;
    p->buffers = calloc(nb, sizeof *p->buffers);
    p->buffer_layout = calloc(nb, sizeof *p->buffer_layout);
    p->buffer_bytes = calloc(nb, sizeof *p->buffer_bytes);
    bool *aliased = calloc(p->g->n_nodes ? p->g->n_nodes : 1, sizeof *aliased);
    if (!p->buffers || !p->buffer_layout || !p->buffer_bytes || !aliased) {
        free(aliased);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory");
    }
    for (uint32_t v = 0; v < p->g->n_nodes; v++)
        if (p->root[v] != v)
            aliased[p->root[v]] = true;
    bst_status st = BST_OK;
    for (uint32_t i = 0; i < p->plan.n_buffers && st == BST_OK; i++)
        st = init_buffer(p, i, aliased[p->plan.buffers[i].value]);
    free(aliased);
    return st;
}

void bsti_prog_free_buffers(bst_program *p)
{
    if (p->buffers) {
        for (uint32_t i = 0; i < p->plan.n_buffers; i++) {
            uint32_t d = p->plan.buffers[i].device;
            if (p->buffers[i])
                dev_api(p, d)->buffer_free(dev_handle(p, d), p->buffers[i]);
        }
    }
    free(p->buffers);
    free(p->buffer_layout);
    free(p->buffer_bytes);
    p->buffers = NULL;
    p->buffer_layout = NULL;
    p->buffer_bytes = NULL;
    if (p->devs && p->ctx) {
        for (uint32_t d = 0; d < p->ctx->n_devices; d++) {
            if (p->devs[d].arena)
                dev_api(p, d)->buffer_free(dev_handle(p, d), p->devs[d].arena);
            p->devs[d].arena = NULL;
        }
    }
}

/* --- cross-device copies --- */

bst_status bsti_prog_copy(bst_program *p, uint32_t src_dev, const bsti_value_loc *src,
                          uint32_t dst_dev, const bsti_value_loc *dst, uint64_t size)
{
    uint64_t chunk = size < STAGING_MAX ? size : STAGING_MAX;
    if (chunk > p->staging_size) {
        uint8_t *s = realloc(p->staging, (size_t)chunk);
        if (!s)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory for a %llu-byte copy buffer",
                             (unsigned long long)chunk);
        p->staging = s;
        p->staging_size = chunk;
    }
    void *sbuf = bsti_prog_loc_buffer(p, src), *dbuf = bsti_prog_loc_buffer(p, dst);
    char label[160];
    for (uint64_t off = 0; off < size; off += chunk) {
        uint64_t m = size - off < chunk ? size - off : chunk;
        bsti_prog_clear_error();
        bst_status st = dev_api(p, src_dev)->buffer_read(dev_handle(p, src_dev), sbuf,
                                                         src->offset + off, p->staging, m);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, src_dev, st, "reading value %s for a copy",
                                           value_label(p->g, src->value, label, sizeof label));
        bsti_prog_clear_error();
        st = dev_api(p, dst_dev)->buffer_write(dev_handle(p, dst_dev), dbuf, dst->offset + off,
                                               p->staging, m);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, dst_dev, st, "writing value %s for a copy",
                                           value_label(p->g, dst->value, label, sizeof label));
    }
    return BST_OK;
}

static bst_status add_transfer(bsti_prog_part *pp, uint32_t root, uint32_t src)
{
    bsti_prog_transfer *t = realloc(pp->transfers, (pp->n_transfers + 1) * sizeof *t);
    if (!t)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory");
    t[pp->n_transfers++] = (bsti_prog_transfer){.root = root, .src_device = src};
    pp->transfers = t;
    return BST_OK;
}

bst_status bsti_prog_plan_transfers(bst_program *p)
{
    const bst_graph *g = p->g;
    uint32_t nd = p->ctx->n_devices;
    size_t cells = (size_t)g->n_nodes * nd;
    if (nd && cells / nd != g->n_nodes)
        return bsti_fail(BST_ERR_OVERFLOW, "program: too many values");
    bool *valid = calloc(cells ? cells : 1, sizeof *valid);
    uint32_t *last_writer = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *last_writer);
    if (!valid || !last_writer) {
        free(valid);
        free(last_writer);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory");
    }
    for (uint32_t v = 0; v < g->n_nodes; v++)
        last_writer[v] = BSTI_NONE;
    for (uint32_t pi = 0; pi < p->parts.n_parts; pi++)
        for (uint32_t k = 0; k < p->parts.parts[pi].n_nodes; k++) {
            uint32_t id = p->parts.parts[pi].nodes[k];
            if (!bsti_prog_is_alias_op(g->nodes[id].op))
                last_writer[p->root[id]] = p->parts.parts[pi].device;
        }
    /* Where each root's contents are valid when a run starts. */
    for (uint32_t r = 0; r < g->n_nodes; r++) {
        p->holder[r] = BSTI_NONE;
        if (p->root[r] != r)
            continue;
        const bsti_op_info *info = bsti_op_get(g->nodes[r].op);
        if (!info || !info->is_source)
            continue;
        if (last_writer[r] != BSTI_NONE) {
            p->holder[r] = last_writer[r];
            valid[(size_t)r * nd + last_writer[r]] = true;
            continue;
        }
        for (uint32_t d = 0; d < nd; d++) {
            if (!bsti_memplan_find(&p->plan, r, d))
                continue;
            valid[(size_t)r * nd + d] = true;
            if (p->holder[r] == BSTI_NONE)
                p->holder[r] = d;
        }
    }
    bst_status st = BST_OK;
    char label[160];
    for (uint32_t pi = 0; pi < p->parts.n_parts && st == BST_OK; pi++) {
        const bsti_partition *part = &p->parts.parts[pi];
        uint32_t d = part->device;
        for (uint32_t k = 0; k < part->n_nodes && st == BST_OK; k++) {
            uint32_t id = part->nodes[k];
            const bsti_node *n = &g->nodes[id];
            for (uint32_t i = 0; i < n->n_inputs && st == BST_OK; i++) {
                uint32_t r = p->root[n->inputs[i]];
                if (valid[(size_t)r * nd + d])
                    continue;
                uint32_t src = p->holder[r];
                if (src == BSTI_NONE || !bsti_memplan_find(&p->plan, r, src) ||
                    !bsti_memplan_find(&p->plan, r, d)) {
                    st = bsti_fail(BST_ERR_INTERNAL,
                                   "program: node %%%u reads %s, which has no copy to take",
                                   id, value_label(g, r, label, sizeof label));
                    break;
                }
                st = add_transfer(&p->pparts[pi], r, src);
                valid[(size_t)r * nd + d] = true;
            }
            if (st != BST_OK || bsti_prog_is_alias_op(n->op))
                continue;
            uint32_t r = p->root[id];
            memset(valid + (size_t)r * nd, 0, nd * sizeof *valid);
            valid[(size_t)r * nd + d] = true;
            p->holder[r] = d;
        }
    }
    free(valid);
    free(last_writer);
    return st;
}
