/*
 * The ABI plumbing shared by the in-tree plugins (see bst_backend_common.h).
 */
#include "bst_backend_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

bst_status bstc_fail(const bstc_plugin *p, bst_status st, const char *fmt, ...)
{
    char buf[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (p->host && p->host->set_error)
        p->host->set_error("%s: %s", p->name, buf);
    return st;
}

bst_status bstc_injected_fault(const bstc_plugin *p, const char *site)
{
    if (!p->host || !p->host->fault)
        return BST_OK;
    bst_status st = p->host->fault(site);
    if (st != BST_OK)
        bstc_fail(p, st, "injected fault at '%s'", site);
    return st;
}

bst_status bstc_open_single_device(const bstc_plugin *p, uint32_t index, void **out_device)
{
    if (!out_device)
        return bstc_fail(p, BST_ERR_INVALID_ARG, "device_open: NULL output");
    *out_device = NULL;
    if (index != 0)
        return bstc_fail(p, BST_ERR_NOT_FOUND, "device_open: no device %u (there is one)", index);
    return bstc_injected_fault(p, "device_open");
}

bst_status bstc_msg(char *msg, size_t cap, bst_status st, const char *fmt, ...)
{
    if (cap == 0)
        return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return st;
}

/* --- entry --------------------------------------------------------------------------------- */

bst_status bstc_entry_begin(bstc_plugin *p, const bst_host_api *host, uint32_t host_abi,
                            bst_backend_api *out, uint32_t needs, uint32_t *out_host_size)
{
    if (!host || host->struct_size < sizeof(bst_host_api))
        return BST_ERR_ABI; /* too old or too small to even carry set_error */
    if (host_abi < BST_ABI_VERSION_MIN) {
        if (host->set_error)
            host->set_error("%s: host ABI %u is older than the oldest this plugin speaks (%u)",
                            p->name, host_abi, BST_ABI_VERSION_MIN);
        return BST_ERR_ABI;
    }
    bool usable = host->log && host->set_error && host->alloc && host->free;
    if (((needs & BSTC_NEEDS_DEQUANTIZE) && !host->dequantize) ||
        ((needs & BSTC_NEEDS_QUANTIZE) && !host->quantize))
        usable = false;
    if (!usable) {
        if (host->set_error)
            host->set_error("%s: host service table lacks a required service", p->name);
        return BST_ERR_ABI;
    }
    if (!out) {
        host->set_error("%s: entry: NULL output table", p->name);
        return BST_ERR_INVALID_ARG;
    }
    if (out->struct_size < BST_BACKEND_API_SIZE_V1) {
        host->set_error("%s: backend table of %u bytes is smaller than version 1's %zu", p->name,
                        out->struct_size, (size_t)BST_BACKEND_API_SIZE_V1);
        return BST_ERR_ABI;
    }
    /* The entry runs again for every context, possibly while other contexts' threads read
     * p->host: written only when it changes (the host table is one static object), so a second
     * context's entry does not race with the first's readers. */
    if (p->host != host)
        p->host = host;
    *out_host_size = out->struct_size;
    return BST_OK;
}

void bstc_entry_publish(bst_backend_api *out, uint32_t host_size, uint32_t host_abi,
                        const bst_backend_api *ours)
{
    bst_backend_api t = *ours;
    t.abi_version = host_abi < BST_ABI_VERSION ? host_abi : BST_ABI_VERSION;
    t.struct_size = host_size < sizeof t ? host_size : (uint32_t)sizeof t;
    /* Events only for a version-2 host whose table holds all four (they come as a set); else
     * "none" wherever the host's table has room. */
    if (t.abi_version < 2 ||
        host_size < offsetof(bst_backend_api, event_wait) + sizeof t.event_wait) {
        t.event_create = NULL;
        t.event_destroy = NULL;
        t.execute_async = NULL;
        t.event_wait = NULL;
    }
    /* Node times likewise as a pair, for a version-3 host. */
    if (t.abi_version < 3 ||
        host_size < offsetof(bst_backend_api, node_times) + sizeof t.node_times) {
        t.node_timing = NULL;
        t.node_times = NULL;
    }
    /* An older host's table is smaller: only the fields it has are written. */
    memcpy(out, &t, t.struct_size);
}

void *bstc_alloc_zero(const bstc_plugin *p, size_t size, const char *what)
{
    void *m = p->host->alloc(size ? size : 1, 64);
    if (!m) {
        bstc_fail(p, BST_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        return NULL;
    }
    memset(m, 0, size);
    return m;
}

/* --- enumerate and query outputs ----------------------------------------------------------- */

bst_status bstc_enumerate_out(const bstc_plugin *p, bst_device_info *out_infos, size_t stride,
                              uint32_t capacity, uint32_t *out_count, const bst_device_info *src,
                              size_t src_stride, uint32_t n)
{
    if (!out_count || (capacity > 0 && !out_infos))
        return bstc_fail(p, BST_ERR_INVALID_ARG, "enumerate: NULL output");
    *out_count = n;
    /* Every field is in version 1, so a slot must hold at least that much. */
    const size_t v1 = sizeof(bst_device_info);
    for (uint32_t i = 0; i < n && i < capacity; i++) {
        bst_device_info *slot = (bst_device_info *)(void *)((char *)out_infos + (size_t)i * stride);
        if (stride < v1 || slot->struct_size < v1)
            return bstc_fail(p, BST_ERR_ABI,
                             "enumerate: stride %zu / struct_size %u smaller than the %zu bytes "
                             "of bst_device_info",
                             stride, slot->struct_size, v1);
        size_t bytes = slot->struct_size < sizeof *slot ? slot->struct_size : sizeof *slot;
        memcpy(slot, (const char *)src + (size_t)i * src_stride, bytes);
        slot->struct_size = (uint32_t)bytes;
    }
    return BST_OK;
}

bst_status bstc_query_args(const bstc_plugin *p, const bst_node_desc *node,
                           const bst_kernel_variant *out_variants, size_t stride,
                           uint32_t capacity, uint32_t *out_count)
{
    if (out_count)
        *out_count = 0;
    if (!out_count || !node || (capacity && !out_variants))
        return bstc_fail(p, BST_ERR_INVALID_ARG, "query: NULL argument");
    if (capacity && stride < sizeof(bst_kernel_variant))
        return bstc_fail(p, BST_ERR_ABI, "query: stride %zu < %zu", stride,
                         sizeof(bst_kernel_variant));
    return BST_OK;
}

void bstc_put_variant(bst_kernel_variant *out_variants, size_t stride, uint32_t index,
                      const char *name, uint64_t source_hash)
{
    bst_kernel_variant v;
    memset(&v, 0, sizeof v);
    v.struct_size = (uint32_t)sizeof v;
    snprintf(v.name, sizeof v.name, "%s", name);
    v.source_hash = source_hash;
    memcpy((char *)out_variants + (size_t)index * stride, &v, sizeof v);
}

/* --- descriptors --------------------------------------------------------------------------- */

bst_status bstc_copy_tensor(const bst_tensor_desc *src, bst_tensor_desc *dst,
                            bstc_layout_fn layout_ok, const char *what, char *msg, size_t cap)
{
    if (!src)
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "%s descriptor is NULL", what);
    if (src->struct_size < sizeof(bst_tensor_desc))
        return bstc_msg(msg, cap, BST_ERR_ABI, "%s descriptor has struct_size %u < %zu", what,
                        src->struct_size, sizeof(bst_tensor_desc));
    memcpy(dst, src, sizeof *dst);
    dst->struct_size = (uint32_t)sizeof *dst;
    uint32_t bs, bb;
    if (!bstc_dtype_geometry(dst->dtype, &bs, &bb))
        return bstc_msg(msg, cap, BST_ERR_UNSUPPORTED, "%s has unknown dtype %u", what,
                        dst->dtype);
    if (dst->layout != BST_LAYOUT_NATIVE && !(layout_ok && layout_ok(dst->dtype, dst->layout)))
        return bstc_msg(msg, cap, BST_ERR_UNSUPPORTED, "%s has layout %u, which is not supported",
                        what, dst->layout);
    if (dst->rank > BST_MAX_DIMS)
        return bstc_msg(msg, cap, BST_ERR_SHAPE, "%s has rank %u", what, dst->rank);
    for (uint32_t i = 0; i < dst->rank; i++) {
        if (dst->shape[i] < 0 || dst->shape[i] > BSTC_MAX_EXTENT)
            return bstc_msg(msg, cap, BST_ERR_SHAPE, "%s dim %u (%lld) is out of range", what, i,
                            (long long)dst->shape[i]);
        if (dst->strides[i] < -BSTC_MAX_STRIDE || dst->strides[i] > BSTC_MAX_STRIDE)
            return bstc_msg(msg, cap, BST_ERR_SHAPE, "%s stride %u (%lld) is out of range", what,
                            i, (long long)dst->strides[i]);
        if (dst->sym[i] >= BST_SYM_COUNT)
            return bstc_msg(msg, cap, BST_ERR_UNSUPPORTED, "%s dim %u has unknown symbol %u",
                            what, i, dst->sym[i]);
    }
    if (bs > 1 && (dst->rank == 0 || dst->shape[dst->rank - 1] % bs != 0 ||
                   dst->strides[dst->rank - 1] != (int64_t)bb))
        return bstc_msg(msg, cap, BST_ERR_SHAPE,
                        "%s (%s) must have whole, contiguous blocks along its innermost dim",
                        what, bstc_dtype_name(dst->dtype));
    return BST_OK;
}

bst_status bstc_copy_node(const bst_node_desc *src, bstc_arity_fn arity,
                          bstc_layout_fn layout_ok, bstc_node *dst, char *msg, size_t cap)
{
    memset(dst, 0, sizeof *dst);
    if (!src)
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "node descriptor is NULL");
    if (src->struct_size < sizeof(bst_node_desc))
        return bstc_msg(msg, cap, BST_ERR_ABI, "node descriptor has struct_size %u < %zu",
                        src->struct_size, sizeof(bst_node_desc));
    bstc_op_arity ar = {0};
    if (!arity(src->op, &ar))
        return bstc_msg(msg, cap, BST_ERR_UNSUPPORTED,
                        "op %u is not a primitive op of this backend", src->op);
    dst->op = (bst_op)src->op;
    dst->variant = src->variant;
    if (src->n_inputs < ar.min_inputs || src->n_inputs > ar.max_inputs ||
        src->n_inputs > BST_MAX_INPUTS)
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "%s takes %u..%u inputs, got %u", ar.name,
                        ar.min_inputs, ar.max_inputs, src->n_inputs);
    if (src->n_attrs > BST_MAX_ATTRS)
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "%u attributes (at most %d)",
                        src->n_attrs, BST_MAX_ATTRS);
    if ((src->n_inputs && !src->inputs) || (src->n_attrs && !src->attrs))
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "NULL input or attribute array");
    dst->n_inputs = src->n_inputs;
    char what[32];
    for (uint32_t i = 0; i < src->n_inputs; i++) {
        snprintf(what, sizeof what, "input %u", i);
        bst_status st = bstc_copy_tensor(src->inputs[i], &dst->in[i], layout_ok, what, msg, cap);
        if (st != BST_OK)
            return st;
    }
    bst_status st = bstc_copy_tensor(src->output, &dst->out, NULL, "output", msg, cap);
    if (st != BST_OK)
        return st;
    for (uint32_t i = 0; i < src->n_attrs; i++) {
        const bst_attr *a = src->attrs[i];
        if (!a || a->struct_size < sizeof(bst_attr))
            return bstc_msg(msg, cap, BST_ERR_ABI, "attribute %u is NULL or too small", i);
        if (a->key == BST_ATTR_NONE || a->key >= BST_ATTR_COUNT)
            return bstc_msg(msg, cap, BST_ERR_UNSUPPORTED, "unknown attribute key %u", a->key);
        if (a->kind > BST_ATTR_KIND_INTS ||
            (a->kind == BST_ATTR_KIND_INTS && a->count > BST_MAX_DIMS))
            return bstc_msg(msg, cap, BST_ERR_INVALID_ARG,
                            "attribute %u has a bad kind or count", i);
        memcpy(&dst->attrs[i], a, sizeof(bst_attr));
        dst->attrs[i].struct_size = (uint32_t)sizeof(bst_attr);
    }
    dst->n_attrs = src->n_attrs;
    return BST_OK;
}

bool bstc_node_symbolic(const bstc_node *n)
{
    for (uint32_t i = 0; i <= n->n_inputs && i <= BST_MAX_INPUTS; i++) {
        const bst_tensor_desc *d = i < n->n_inputs ? &n->in[i] : &n->out;
        for (uint32_t k = 0; k < d->rank && k < BST_MAX_DIMS; k++)
            if (d->sym[k] != BST_SYM_NONE)
                return true;
    }
    return false;
}

bst_status bstc_check_bindings(const bstc_node *n, uint32_t n_bindings, char *msg, size_t cap)
{
    for (uint32_t k = 0; k <= n->n_inputs && k <= BST_MAX_INPUTS; k++) {
        const bst_tensor_desc *d = k < n->n_inputs ? &n->in[k] : &n->out;
        if (d->binding >= n_bindings)
            return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "binding %u of %u", d->binding,
                            n_bindings);
    }
    return BST_OK;
}

const bst_attr *bstc_attr(const bstc_node *n, bst_attr_key key)
{
    for (uint32_t i = 0; i < n->n_attrs && i < BST_MAX_ATTRS; i++)
        if (n->attrs[i].key == (uint32_t)key)
            return &n->attrs[i];
    return NULL;
}

double bstc_attr_float(const bstc_node *n, bst_attr_key key, double fallback)
{
    const bst_attr *a = bstc_attr(n, key);
    if (!a)
        return fallback;
    return a->kind == BST_ATTR_KIND_FLOAT ? a->f : (double)a->ints[0];
}

int64_t bstc_attr_int(const bstc_node *n, bst_attr_key key, int64_t fallback)
{
    const bst_attr *a = bstc_attr(n, key);
    if (!a || a->kind == BST_ATTR_KIND_FLOAT)
        return fallback;
    return a->ints[0];
}

bst_status bstc_check_partition(const bstc_plugin *p, const bst_partition_desc *partition)
{
    if (partition->struct_size < sizeof(bst_partition_desc))
        return bstc_fail(p, BST_ERR_ABI,
                         "compile: partition descriptor of %u bytes is too small",
                         partition->struct_size);
    if (partition->n_nodes && !partition->nodes)
        return bstc_fail(p, BST_ERR_INVALID_ARG, "compile: NULL node array");
    return BST_OK;
}

bst_status bstc_run_params(const bstc_plugin *p, const bst_run_params *params,
                           bst_run_params *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = (uint32_t)sizeof *out;
    out->n_tokens = -1;
    out->n_kv = -1;
    if (!params)
        return BST_OK;
    if (params->struct_size < sizeof(bst_run_params))
        return bstc_fail(p, BST_ERR_ABI, "execute: run params of %u bytes are too small",
                         params->struct_size);
    *out = *params;
    out->struct_size = (uint32_t)sizeof *out;
    return BST_OK;
}

bst_status bstc_execute_args(const bstc_plugin *p, bool executable_ok, void *const *buffers,
                             uint32_t n_buffers, const bst_run_params *params,
                             bst_run_params *out_run)
{
    if (!executable_ok)
        return bstc_fail(p, BST_ERR_INVALID_ARG, "execute: not an executable of the %s backend", p->name);
    if (n_buffers && !buffers)
        return bstc_fail(p, BST_ERR_INVALID_ARG, "execute: NULL buffer array");
    return bstc_run_params(p, params, out_run); /* NULL params: fine unless a dim is symbolic */
}

/* --- dtypes, shapes, hashing --------------------------------------------------------------- */

typedef struct dtype_info {
    const char *name;
    uint32_t block_size, block_bytes;
} dtype_info;

static const dtype_info dtypes[BST_DTYPE_COUNT] = {
    [BST_DTYPE_F32] = {"f32", 1, 4},     [BST_DTYPE_F16] = {"f16", 1, 2},
    [BST_DTYPE_BF16] = {"bf16", 1, 2},   [BST_DTYPE_I32] = {"i32", 1, 4},
    [BST_DTYPE_I8] = {"i8", 1, 1},       [BST_DTYPE_Q4_0] = {"q4_0", 32, 18},
    [BST_DTYPE_Q4_1] = {"q4_1", 32, 20}, [BST_DTYPE_Q5_0] = {"q5_0", 32, 22},
    [BST_DTYPE_Q5_1] = {"q5_1", 32, 24}, [BST_DTYPE_Q8_0] = {"q8_0", 32, 34},
};

static const dtype_info *dtype_of(uint32_t dtype)
{
    return dtype < BST_DTYPE_COUNT && dtypes[dtype].name ? &dtypes[dtype] : NULL;
}

bool bstc_dtype_geometry(uint32_t dtype, uint32_t *out_block_size, uint32_t *out_block_bytes)
{
    const dtype_info *d = dtype_of(dtype);
    if (!d)
        return false;
    *out_block_size = d->block_size;
    *out_block_bytes = d->block_bytes;
    return true;
}

const char *bstc_dtype_name(uint32_t dtype)
{
    const dtype_info *d = dtype_of(dtype);
    return d ? d->name : "invalid";
}

bool bstc_dtype_is_block(uint32_t dtype)
{
    const dtype_info *d = dtype_of(dtype);
    return d && d->block_size > 1;
}

uint32_t bstc_dtype_align(uint32_t dtype)
{
    const dtype_info *d = dtype_of(dtype);
    if (!d)
        return 0;
    return d->block_size > 1 ? 2 : d->block_bytes;
}

bst_status bstc_pad_dims(const bst_tensor_desc *d, const bst_run_params *params, int64_t ne[4],
                         int64_t nb[4], const char *what, char *msg, size_t cap)
{
    for (int i = 0; i < 4; i++) {
        ne[i] = 1;
        nb[i] = 0;
    }
    uint32_t bs, bb;
    if (!bstc_dtype_geometry(d->dtype, &bs, &bb) || d->rank > BST_MAX_DIMS)
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG, "%s was not checked", what);
    uint32_t pad = BST_MAX_DIMS - d->rank;
    for (uint32_t i = 0; i < d->rank; i++) {
        int64_t n = d->shape[i];
        if (d->sym[i] != BST_SYM_NONE && params) {
            int64_t v = d->sym[i] == BST_SYM_N_TOKENS ? params->n_tokens : params->n_kv;
            if (v < 0 || v > n)
                return bstc_msg(msg, cap, BST_ERR_INVALID_ARG,
                                "%s dim %u: %s = %lld is outside 0..%lld (its bound)", what, i,
                                d->sym[i] == BST_SYM_N_TOKENS ? "n_tokens" : "n_kv",
                                (long long)v, (long long)n);
            n = v;
        }
        ne[pad + i] = n;
        nb[pad + i] = d->strides[i];
    }
    if (ne[3] % bs != 0)
        return bstc_msg(msg, cap, BST_ERR_SHAPE, "%s innermost extent %lld is not whole %s blocks",
                        what, (long long)ne[3], bstc_dtype_name(d->dtype));
    return BST_OK;
}

bool bstc_byte_span(uint32_t dtype, const int64_t ne[4], const int64_t nb[4], int64_t *out_lo,
                    int64_t *out_hi)
{
    uint32_t bs, bb;
    if (!bstc_dtype_geometry(dtype, &bs, &bb))
        return false;
    int64_t lo = 0, hi = (int64_t)bb;
    for (int d = 0; d < 4; d++) {
        int64_t count = d == 3 ? ne[3] / bs : ne[d];
        int64_t ext;
        if (count <= 1)
            continue;
        if (__builtin_mul_overflow(count - 1, nb[d], &ext))
            return false;
        if (ext < 0 ? __builtin_add_overflow(lo, ext, &lo) : __builtin_add_overflow(hi, ext, &hi))
            return false;
    }
    *out_lo = lo;
    *out_hi = hi;
    return true;
}

bool bstc_fits_buffer(uint32_t dtype, const int64_t ne[4], const int64_t nb[4], uint64_t offset,
                      uint64_t size)
{
    if (offset > size)
        return false;
    for (int d = 0; d < 4; d++)
        if (ne[d] == 0)
            return true; /* no element: nothing is read or written */
    int64_t lo, hi;
    if (!bstc_byte_span(dtype, ne, nb, &lo, &hi))
        return false;
    /* lo <= 0 < hi; the element range is [offset + lo, offset + hi). */
    if (lo < 0 && (uint64_t)0 - (uint64_t)lo > offset)
        return false;
    return (uint64_t)hi <= size - offset;
}

bst_status bstc_check_in_buffer(const bst_tensor_desc *d, const int64_t ne[4],
                                const int64_t nb[4], uint64_t buffer_size, const char *what,
                                char *msg, size_t cap)
{
    if (d->offset > buffer_size)
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG,
                        "%s: offset %llu is past the %llu-byte buffer (binding %u)", what,
                        (unsigned long long)d->offset, (unsigned long long)buffer_size,
                        d->binding);
    if (!bstc_fits_buffer(d->dtype, ne, nb, d->offset, buffer_size))
        return bstc_msg(msg, cap, BST_ERR_INVALID_ARG,
                        "%s at offset %llu with its shape and strides reaches outside its "
                        "%llu-byte buffer (binding %u)",
                        what, (unsigned long long)d->offset, (unsigned long long)buffer_size,
                        d->binding);
    return BST_OK;
}

uint64_t bstc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t bstc_fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}
