/*
 * tests/plugins/broken.c — a plugin that claims ops and gets them wrong in every way
 * `bastion conformance` must report without stopping (tests/test_conformance.c). One host-memory
 * device; every op on contiguous f32 tensors of equal shape, no symbolic dims:
 *   SCALE     correct (so the report is not all failures)
 *   ADD       wrong values (computes a - b)
 *   MUL       right values, but writes one element past its output (guard bytes)
 *   GELU      NaN everywhere
 *   SILU      crashes the process (SIGSEGV)
 *   RMS_NORM  claimed only for f32[17], where execute never returns (the per-case timeout)
 *   LAYER_NORM claimed only for f32[17], where it dies as LLVM does on a fatal error: a message
 *             on stderr, then abort()
 * Built against backend.h alone, as a vendor would build one.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <bastion/backend.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const bst_host_api *g_host;

typedef struct buffer {
    uint64_t size;
    unsigned char *data;
} buffer;

typedef struct exe {
    bst_op op;
    double scale;
    int64_t n;                    /* elements */
    uint32_t n_in;
    uint32_t bind[3];             /* inputs, then the output */
    uint64_t off[3];
} exe;

static bst_status enumerate(void *ctx, bst_device_info *out, size_t stride, uint32_t cap,
                            uint32_t *count)
{
    (void)ctx;
    *count = 1;
    if (cap == 0)
        return BST_OK;
    if (out->struct_size < sizeof(bst_device_info)) {
        g_host->set_error("broken: bst_device_info struct_size %u too small", out->struct_size);
        return BST_ERR_ABI;
    }
    (void)stride;
    bst_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    info.kind = BST_DEVICE_CPU;
    strcpy(info.name, "broken test device");
    strcpy(info.vendor, "Bastion tests");
    info.memory_bytes = 1ull << 30;
    info.max_alloc_bytes = 1ull << 30;
    info.max_binding_bytes = 1ull << 30;
    info.unified_memory = true;
    info.fingerprint = 0xb40c3du;
    memcpy(out, &info, sizeof info);
    return BST_OK;
}

static bst_status device_open(void *ctx, uint32_t index, void **out)
{
    (void)index;
    *out = ctx;
    return BST_OK;
}

static void device_close(void *device) { (void)device; }

static bool contiguous_f32(const bst_tensor_desc *t)
{
    if (t->dtype != BST_DTYPE_F32 || t->rank == 0 || t->rank > BST_MAX_DIMS)
        return false;
    int64_t expect = 4;
    for (uint32_t d = t->rank; d-- > 0;) {
        if (t->sym[d] != BST_SYM_NONE || t->strides[d] != expect)
            return false;
        expect *= t->shape[d];
    }
    return true;
}

static bool same_shape(const bst_tensor_desc *a, const bst_tensor_desc *b)
{
    return a->rank == b->rank && memcmp(a->shape, b->shape, a->rank * sizeof a->shape[0]) == 0;
}

static uint32_t arity(bst_op op)
{
    switch (op) {
    case BST_OP_SCALE: case BST_OP_GELU: case BST_OP_SILU: case BST_OP_RMS_NORM:
    case BST_OP_LAYER_NORM: return 1;
    case BST_OP_ADD: case BST_OP_MUL: return 2;
    default: return 0;
    }
}

static bool supported(const bst_node_desc *node)
{
    uint32_t n = arity(node->op);
    if (n == 0 || node->n_inputs != n || !contiguous_f32(node->output))
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!contiguous_f32(node->inputs[i]) || !same_shape(node->inputs[i], node->output))
            return false;
    if (node->op == BST_OP_RMS_NORM || node->op == BST_OP_LAYER_NORM)
        return node->output->rank == 1 && node->output->shape[0] == 17;
    return true;
}

static bst_status query(void *device, const bst_node_desc *node, bst_kernel_variant *out,
                        size_t stride, uint32_t cap, uint32_t *count)
{
    (void)device;
    (void)stride;
    *count = 0;
    if (!supported(node))
        return BST_OK;
    if (cap > 0) {
        memset(out->name, 0, sizeof out->name);
        strcpy(out->name, "broken");
        out->source_hash = 1;
    }
    *count = 1;
    return BST_OK;
}

static bst_status buffer_alloc(void *device, uint64_t size, void **out)
{
    (void)device;
    buffer *b = g_host->alloc(sizeof *b, 8);
    unsigned char *data = g_host->alloc(size ? (size_t)size : 1, 64);
    if (!b || !data) {
        g_host->free(b);
        g_host->free(data);
        g_host->set_error("broken: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    b->size = size;
    b->data = data;
    *out = b;
    return BST_OK;
}

static void buffer_free(void *device, void *p)
{
    (void)device;
    buffer *b = p;
    if (b)
        g_host->free(b->data);
    g_host->free(b);
}

static bst_status buffer_write(void *device, void *p, uint64_t off, const void *src, uint64_t n)
{
    (void)device;
    buffer *b = p;
    if (off > b->size || n > b->size - off) {
        g_host->set_error("broken: write outside the buffer");
        return BST_ERR_INVALID_ARG;
    }
    memcpy(b->data + off, src, (size_t)n);
    return BST_OK;
}

static bst_status buffer_read(void *device, void *p, uint64_t off, void *dst, uint64_t n)
{
    (void)device;
    buffer *b = p;
    if (off > b->size || n > b->size - off) {
        g_host->set_error("broken: read outside the buffer");
        return BST_ERR_INVALID_ARG;
    }
    memcpy(dst, b->data + off, (size_t)n);
    return BST_OK;
}

static bst_status compile(void *device, const bst_partition_desc *part, void **out)
{
    (void)device;
    if (part->n_nodes != 1 || !supported(part->nodes[0])) {
        g_host->set_error("broken: only single supported nodes compile");
        return BST_ERR_UNSUPPORTED;
    }
    const bst_node_desc *node = part->nodes[0];
    exe *e = g_host->alloc(sizeof *e, 8);
    if (!e) {
        g_host->set_error("broken: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(e, 0, sizeof *e);
    e->op = node->op;
    e->n_in = node->n_inputs;
    e->n = 1;
    for (uint32_t d = 0; d < node->output->rank; d++)
        e->n *= node->output->shape[d];
    e->scale = 1.0;
    for (uint32_t i = 0; i < node->n_attrs; i++)
        if (node->attrs[i]->key == BST_ATTR_SCALE)
            e->scale = node->attrs[i]->f;
    for (uint32_t i = 0; i < e->n_in; i++) {
        e->bind[i] = node->inputs[i]->binding;
        e->off[i] = node->inputs[i]->offset;
    }
    e->bind[e->n_in] = node->output->binding;
    e->off[e->n_in] = node->output->offset;
    *out = e;
    return BST_OK;
}

static void executable_free(void *device, void *e)
{
    (void)device;
    g_host->free(e);
}

static float *at(void *const *buffers, const exe *e, uint32_t i)
{
    buffer *b = buffers[e->bind[i]];
    return (float *)(void *)(b->data + e->off[i]);
}

static bst_status execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                          const bst_run_params *params)
{
    (void)device;
    (void)params;
    const exe *e = executable;
    for (uint32_t i = 0; i <= e->n_in; i++)
        if (e->bind[i] >= n_buffers) {
            g_host->set_error("broken: binding %u not bound", e->bind[i]);
            return BST_ERR_INVALID_ARG;
        }
    const float *a = at(buffers, e, 0), *b = e->n_in > 1 ? at(buffers, e, 1) : NULL;
    float *o = at(buffers, e, e->n_in);
    switch (e->op) {
    case BST_OP_SCALE:
        for (int64_t i = 0; i < e->n; i++)
            o[i] = (float)(a[i] * e->scale);
        break;
    case BST_OP_ADD:
        for (int64_t i = 0; i < e->n; i++)
            o[i] = a[i] - b[i];
        break;
    case BST_OP_MUL:
        for (int64_t i = 0; i <= e->n; i++) /* one past the end */
            o[i] = i < e->n ? a[i] * b[i] : 0.0f;
        break;
    case BST_OP_GELU:
        for (int64_t i = 0; i < e->n; i++)
            o[i] = NAN;
        break;
    case BST_OP_SILU:
        raise(SIGSEGV);
        break;
    case BST_OP_LAYER_NORM:
        fprintf(stderr, "LLVM ERROR: broken: simulated fatal error in a driver's compiler\n");
        abort();
    case BST_OP_RMS_NORM:
        for (;;) {
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    default:
        g_host->set_error("broken: op %d not compiled here", (int)e->op);
        return BST_ERR_UNSUPPORTED;
    }
    return BST_OK;
}

static void destroy(void *ctx) { (void)ctx; }

BST_BACKEND_ENTRY
{
    if (host_abi < 1) {
        host->set_error("broken: needs ABI version 1, host offers %u", host_abi);
        return BST_ERR_ABI;
    }
    if (out->struct_size < BST_BACKEND_API_SIZE_V1) {
        host->set_error("broken: bst_backend_api struct_size %u too small", out->struct_size);
        return BST_ERR_ABI;
    }
    g_host = host;
    bst_backend_api api;
    memset(&api, 0, sizeof api);
    api.struct_size = (uint32_t)BST_BACKEND_API_SIZE_V1; /* a version-1 plugin */
    api.abi_version = 1;
    api.name = "broken";
    api.version = "1.0";
    api.ctx = &g_host;
    api.destroy = destroy;
    api.enumerate = enumerate;
    api.device_open = device_open;
    api.device_close = device_close;
    api.query = query;
    api.buffer_alloc = buffer_alloc;
    api.buffer_free = buffer_free;
    api.buffer_write = buffer_write;
    api.buffer_read = buffer_read;
    api.compile = compile;
    api.executable_free = executable_free;
    api.execute = execute;
    memcpy(out, &api, BST_BACKEND_API_SIZE_V1);
    return BST_OK;
}
