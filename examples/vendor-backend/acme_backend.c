/*
 * acme_backend.c — a minimal out-of-tree Bastion backend: the template a hardware vendor copies.
 *
 * It drives one pretend device, "ACME Example Accelerator", whose memory is ordinary host memory
 * and whose kernels are plain C loops run on the host's thread pool. It offers four kernels, all
 * f32 in and f32 out: ADD and MUL (with backend.h's broadcasting of b), SILU, and MATMUL
 * (a[...,M,K] . b[...,N,K]^T with grouped batch broadcasting). Any strides (views, padded rows,
 * transposes) and symbolic dims (n_tokens, n_kv) are handled; everything else is declined in
 * query, so the runtime places it on another backend.
 *
 * It is built against the installed <bastion/backend.h> only and links nothing of Bastion: every
 * service (allocation, error messages, logging, threads) comes through the bst_host_api table
 * the host passes to bst_backend_entry, the one symbol the module exports. A real device would
 * replace the buffer functions with device allocations and DMA, compile with a command-stream
 * build, and execute with a submit + wait; the checks around them stay the same.
 *
 * The rules this file follows (ownership, threading, errors) are numbered in Bastion's
 * backends/README.md; comments below cite them as "policy N".
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */

#include <bastion/backend.h>

#include <math.h>
#include <string.h>
#include <time.h>

#ifndef ACME_SOURCE_HASH
#error "define ACME_SOURCE_HASH (a 64-bit hash of this source and its build flags; CMakeLists.txt and Makefile do)"
#endif

#define ACME_NAME "acme"
#define ACME_VERSION "0.1.0"
#define ACME_MEMORY_BYTES (1ull << 30) /* the pretend device's memory: 1 GiB */

/* ---------- plugin, device, buffer ---------- */

typedef struct acme_ctx {
    const bst_host_api *host;
} acme_ctx;

typedef struct acme_device {
    acme_ctx *ctx;
    uint64_t used_bytes; /* device memory in use; calls on one device are serialized */
} acme_device;

typedef struct acme_buffer {
    uint64_t size;
    unsigned char *data;
} acme_buffer;

/* Which host services this plugin calls: a host whose table is shorter is refused in entry. */
#define HOST_NEEDS(h) BST_HAS_FIELD(h, bst_host_api, fault)

static void acme_destroy(void *ctx)
{
    acme_ctx *c = ctx;
    c->host->free(c);
}

/* FNV-1a over a string, chained: fingerprints and variant hashes. */
static uint64_t fnv_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static bst_status acme_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                 uint32_t capacity, uint32_t *out_count)
{
    (void)ctx;
    *out_count = 1;
    if (capacity < 1)
        return BST_OK;
    /* Policy 8: fill our own copy, then write no more than the host's struct holds (it may be
     * from an older or newer header than ours). */
    bst_device_info mine;
    memset(&mine, 0, sizeof mine);
    mine.struct_size = sizeof mine;
    mine.kind = BST_DEVICE_CPU; /* honest: this example computes on the host CPU */
    strcpy(mine.name, "ACME Example Accelerator");
    strcpy(mine.vendor, "ACME");
    strcpy(mine.driver_version, ACME_VERSION);
    mine.memory_bytes = ACME_MEMORY_BYTES;
    mine.max_alloc_bytes = ACME_MEMORY_BYTES;
    mine.max_binding_bytes = ACME_MEMORY_BYTES;
    mine.unified_memory = true;
    mine.self_threaded = false; /* it runs on the host's pool (policy 1) */
    mine.fingerprint = fnv_str(fnv_str(0xcbf29ce484222325ull, mine.name), mine.driver_version);
    (void)stride; /* one device: only out_infos[0] is written */
    uint32_t host_size = out_infos->struct_size;
    size_t n = host_size < sizeof mine ? host_size : sizeof mine;
    memcpy(out_infos, &mine, n);
    out_infos->struct_size = (uint32_t)n;
    return BST_OK;
}

static bst_status acme_device_open(void *ctx, uint32_t index, void **out_device)
{
    acme_ctx *c = ctx;
    if (index != 0) {
        c->host->set_error(ACME_NAME ": no device %u (there is one)", index);
        return BST_ERR_INVALID_ARG;
    }
    acme_device *d = c->host->alloc(sizeof *d, sizeof(void *));
    if (!d) {
        c->host->set_error(ACME_NAME ": out of memory opening the device");
        return BST_ERR_OUT_OF_MEMORY;
    }
    d->ctx = c;
    d->used_bytes = 0;
    *out_device = d;
    return BST_OK;
}

static void acme_device_close(void *device)
{
    acme_device *d = device;
    d->ctx->host->free(d);
}

static bst_status acme_buffer_alloc(void *device, uint64_t size, void **out_buffer)
{
    acme_device *d = device;
    const bst_host_api *host = d->ctx->host;
    bst_status fault = host->fault("alloc"); /* lets the host's tests reach the OOM path */
    if (fault != BST_OK) {
        host->set_error(ACME_NAME ": buffer of %llu bytes not allocated (injected fault)",
                        (unsigned long long)size);
        return fault;
    }
    if (size > ACME_MEMORY_BYTES - d->used_bytes) {
        host->set_error(ACME_NAME ": %llu bytes requested, %llu of %llu in use",
                        (unsigned long long)size, (unsigned long long)d->used_bytes,
                        (unsigned long long)ACME_MEMORY_BYTES);
        return BST_ERR_DEVICE_OOM;
    }
    acme_buffer *b = host->alloc(sizeof *b, sizeof(void *));
    unsigned char *data = host->alloc(size ? (size_t)size : 1, 64);
    if (!b || !data) {
        host->free(b);
        host->free(data);
        host->set_error(ACME_NAME ": out of memory for a buffer of %llu bytes",
                        (unsigned long long)size);
        return BST_ERR_DEVICE_OOM;
    }
    b->size = size;
    b->data = data;
    d->used_bytes += size;
    *out_buffer = b;
    return BST_OK;
}

static void acme_buffer_free(void *device, void *buffer)
{
    acme_device *d = device;
    acme_buffer *b = buffer;
    if (!b)
        return;
    d->used_bytes -= b->size;
    d->ctx->host->free(b->data);
    d->ctx->host->free(b);
}

static bool in_range(const acme_buffer *b, uint64_t offset, uint64_t size)
{
    return b && offset <= b->size && size <= b->size - offset;
}

static bst_status acme_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                                    uint64_t size)
{
    acme_device *d = device;
    acme_buffer *b = buffer;
    if (!in_range(b, offset, size)) {
        d->ctx->host->set_error(ACME_NAME ": write of %llu bytes at %llu is outside the buffer",
                                (unsigned long long)size, (unsigned long long)offset);
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memcpy(b->data + offset, src, (size_t)size);
    return BST_OK;
}

static bst_status acme_buffer_read(void *device, void *buffer, uint64_t offset, void *dst,
                                   uint64_t size)
{
    acme_device *d = device;
    acme_buffer *b = buffer;
    if (!in_range(b, offset, size)) {
        d->ctx->host->set_error(ACME_NAME ": read of %llu bytes at %llu is outside the buffer",
                                (unsigned long long)size, (unsigned long long)offset);
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memcpy(dst, b->data + offset, (size_t)size);
    return BST_OK;
}

/* ---------- which nodes this backend runs ---------- */

/* A tensor descriptor this plugin can read: v1-sized, f32, native layout, sane rank and strides. */
static bool plain_f32(const bst_tensor_desc *t)
{
    if (!t || t->struct_size < sizeof(bst_tensor_desc) || t->dtype != BST_DTYPE_F32 ||
        t->layout != BST_LAYOUT_NATIVE || t->rank < 1 || t->rank > BST_MAX_DIMS ||
        t->offset % sizeof(float) != 0)
        return false;
    for (uint32_t i = 0; i < t->rank; i++)
        if (t->shape[i] < 0 || t->strides[i] < 0 || t->strides[i] % (int64_t)sizeof(float) ||
            t->sym[i] >= BST_SYM_COUNT)
            return false;
    return true;
}

static bool same_dim(const bst_tensor_desc *a, uint32_t i, const bst_tensor_desc *b, uint32_t j)
{
    return a->shape[i] == b->shape[j] && a->sym[i] == b->sym[j];
}

static bool same_shape(const bst_tensor_desc *a, const bst_tensor_desc *b)
{
    if (a->rank != b->rank)
        return false;
    for (uint32_t i = 0; i < a->rank; i++)
        if (!same_dim(a, i, b, i))
            return false;
    return true;
}

/* The node's tensors, once its struct and pointers have been checked (policy 8). */
static bool node_tensors(const bst_node_desc *node, uint32_t n_inputs)
{
    if (!node || node->struct_size < sizeof(bst_node_desc) || node->n_inputs != n_inputs ||
        !node->inputs || !plain_f32(node->output))
        return false;
    for (uint32_t i = 0; i < n_inputs; i++)
        if (!plain_f32(node->inputs[i]))
            return false;
    return true;
}

static bool supports_binary(const bst_node_desc *node)
{
    if (!node_tensors(node, 2))
        return false;
    const bst_tensor_desc *a = node->inputs[0], *b = node->inputs[1], *out = node->output;
    if (!same_shape(a, out) || b->rank > a->rank)
        return false;
    /* b aligns with a at the innermost dim; each of its dims equals a's or is 1. */
    uint32_t lead = a->rank - b->rank;
    for (uint32_t j = 0; j < b->rank; j++)
        if (!(b->shape[j] == 1 && b->sym[j] == BST_SYM_NONE) && !same_dim(a, lead + j, b, j))
            return false;
    return true;
}

static bool supports_silu(const bst_node_desc *node)
{
    return node_tensors(node, 1) && same_shape(node->inputs[0], node->output);
}

static bool supports_matmul(const bst_node_desc *node)
{
    if (!node_tensors(node, 2))
        return false;
    const bst_tensor_desc *a = node->inputs[0], *b = node->inputs[1], *out = node->output;
    uint32_t ra = a->rank, rb = b->rank;
    if (ra < 2 || rb < 2 || rb > ra || out->rank != ra)
        return false;
    /* K must agree and be fixed; M and N may be symbolic (n_tokens, n_kv). */
    if (!same_dim(a, ra - 1, b, rb - 1) || a->sym[ra - 1] != BST_SYM_NONE ||
        !same_dim(a, ra - 2, out, ra - 2) || !same_dim(b, rb - 2, out, ra - 1))
        return false;
    /* Batch dims: fixed, out's equal a's, and b's count divides a's (grouped broadcast). */
    int64_t batch_a = 1, batch_b = 1;
    for (uint32_t i = 0; i + 2 < ra; i++) {
        if (a->sym[i] != BST_SYM_NONE || !same_dim(a, i, out, i))
            return false;
        batch_a *= a->shape[i];
    }
    for (uint32_t i = 0; i + 2 < rb; i++) {
        if (b->sym[i] != BST_SYM_NONE)
            return false;
        batch_b *= b->shape[i];
    }
    return batch_b > 0 && batch_a % batch_b == 0;
}

/* Kernel variant name for a node this backend runs, or NULL. */
static const char *variant_of(const bst_node_desc *node)
{
    if (!node || node->struct_size < sizeof(bst_node_desc))
        return NULL;
    switch (node->op) { /* an op id we do not know (a newer host's) is simply unsupported */
    case BST_OP_ADD: return supports_binary(node) ? "acme_add_f32" : NULL;
    case BST_OP_MUL: return supports_binary(node) ? "acme_mul_f32" : NULL;
    case BST_OP_SILU: return supports_silu(node) ? "acme_silu_f32" : NULL;
    case BST_OP_MATMUL: return supports_matmul(node) ? "acme_matmul_f32" : NULL;
    default: return NULL;
    }
}

static bst_status acme_query(void *device, const bst_node_desc *node,
                             bst_kernel_variant *out_variants, size_t stride, uint32_t capacity,
                             uint32_t *out_count)
{
    (void)device;
    (void)stride; /* one variant per node: only out_variants[0] is written */
    *out_count = 0;
    const char *name = variant_of(node);
    if (!name)
        return BST_OK; /* unsupported is an answer, not an error */
    *out_count = 1;
    if (capacity < 1)
        return BST_OK;
    bst_kernel_variant mine;
    memset(&mine, 0, sizeof mine);
    mine.struct_size = sizeof mine;
    strcpy(mine.name, name);
    /* Changes whenever this file or its build flags change (ACME_SOURCE_HASH), so the tuning
     * database never reuses a time measured on older code. */
    mine.source_hash = fnv_str(ACME_SOURCE_HASH, name);
    uint32_t host_size = out_variants->struct_size;
    size_t n = host_size < sizeof mine ? host_size : sizeof mine;
    memcpy(out_variants, &mine, n);
    out_variants->struct_size = (uint32_t)n;
    return BST_OK;
}

/* ---------- compile: copy what execute needs (policy 5: no pointer is kept) ---------- */

typedef struct acme_step {
    uint32_t op;
    uint32_t n_inputs;
    bst_tensor_desc in[2];
    bst_tensor_desc out;
} acme_step;

typedef struct acme_exec {
    uint32_t n_steps;
    uint32_t n_bindings;
    acme_step *steps;
    uint64_t last_ns;
} acme_exec;

static bst_status acme_compile(void *device, const bst_partition_desc *partition,
                               void **out_executable)
{
    acme_device *d = device;
    const bst_host_api *host = d->ctx->host;
    bst_status fault = host->fault("compile");
    if (fault != BST_OK) {
        host->set_error(ACME_NAME ": compile failed (injected fault)");
        return fault;
    }
    if (!partition || partition->struct_size < sizeof(bst_partition_desc) ||
        partition->n_nodes == 0 || !partition->nodes) {
        host->set_error(ACME_NAME ": empty or malformed partition");
        return BST_ERR_INVALID_ARG;
    }
    acme_exec *e = host->alloc(sizeof *e, sizeof(void *));
    acme_step *steps = host->alloc((size_t)partition->n_nodes * sizeof *steps, sizeof(void *));
    if (!e || !steps) {
        host->free(e);
        host->free(steps);
        host->set_error(ACME_NAME ": out of memory compiling %u nodes", partition->n_nodes);
        return BST_ERR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < partition->n_nodes; i++) {
        const bst_node_desc *node = partition->nodes[i];
        /* The host promised a node query accepted, with a variant index query gave; check
         * anyway: a wrong answer here is a status, never a crash (policy 3). */
        if (!variant_of(node) || node->variant != 0) {
            host->free(e);
            host->free(steps);
            host->set_error(ACME_NAME ": node %u of the partition (op %u) is not one query "
                            "accepted", i, node ? node->op : 0u);
            return BST_ERR_UNSUPPORTED;
        }
        acme_step *s = &steps[i];
        memset(s, 0, sizeof *s);
        s->op = node->op;
        s->n_inputs = node->n_inputs;
        for (uint32_t k = 0; k < node->n_inputs; k++)
            s->in[k] = *node->inputs[k];
        s->out = *node->output;
        bool bound = s->out.binding < partition->n_bindings;
        for (uint32_t k = 0; k < s->n_inputs; k++)
            bound = bound && s->in[k].binding < partition->n_bindings;
        if (!bound) {
            host->free(e);
            host->free(steps);
            host->set_error(ACME_NAME ": node %u names a binding outside the partition's %u", i,
                            partition->n_bindings);
            return BST_ERR_INVALID_ARG;
        }
    }
    e->n_steps = partition->n_nodes;
    e->n_bindings = partition->n_bindings;
    e->steps = steps;
    e->last_ns = 0;
    *out_executable = e;
    return BST_OK;
}

static void acme_executable_free(void *device, void *executable)
{
    acme_device *d = device;
    acme_exec *e = executable;
    if (!e)
        return;
    d->ctx->host->free(e->steps);
    d->ctx->host->free(e);
}

/* ---------- execute ---------- */

/* A tensor at its run-time extents, padded to four dims (leading dims of extent 1). */
typedef struct view4 {
    int64_t ext[4];
    int64_t stride[4]; /* bytes */
    unsigned char *base;
} view4;

/* Resolves `t` against the bound buffers and the run's symbolic values, and checks that every
 * byte it can touch lies inside its buffer. */
static bst_status resolve(const bst_host_api *host, const bst_tensor_desc *t, void *const *buffers,
                          const bst_run_params *params, view4 *out)
{
    uint32_t lead = BST_MAX_DIMS - t->rank;
    uint64_t last = 0; /* byte offset of the last element, from t->offset */
    bool empty = false, overflow = false;
    for (uint32_t i = 0; i < BST_MAX_DIMS; i++) {
        out->ext[i] = 1;
        out->stride[i] = 0;
    }
    for (uint32_t i = 0; i < t->rank; i++) {
        int64_t ext = t->shape[i];
        if (t->sym[i] != BST_SYM_NONE) {
            if (!params || params->struct_size < sizeof(bst_run_params)) {
                host->set_error(ACME_NAME ": a symbolic dim needs run params");
                return BST_ERR_INVALID_ARG;
            }
            ext = t->sym[i] == BST_SYM_N_TOKENS ? params->n_tokens : params->n_kv;
            if (ext < 0 || ext > t->shape[i]) {
                host->set_error(ACME_NAME ": symbolic dim bound to %lld, outside 0..%lld",
                                (long long)ext, (long long)t->shape[i]);
                return BST_ERR_INVALID_ARG;
            }
        }
        out->ext[lead + i] = ext;
        out->stride[lead + i] = t->strides[i];
        uint64_t steps = ext > 0 ? (uint64_t)(ext - 1) : 0, stride = (uint64_t)t->strides[i];
        if (ext == 0)
            empty = true;
        else if (stride != 0 && steps > (UINT64_MAX - last) / stride)
            overflow = true;
        else
            last += steps * stride;
    }
    const acme_buffer *b = buffers[t->binding];
    if (!b) {
        host->set_error(ACME_NAME ": binding %u has no buffer", t->binding);
        return BST_ERR_INVALID_ARG;
    }
    if (!empty && (overflow || last > UINT64_MAX - sizeof(float) ||
                   !in_range(b, t->offset, last + sizeof(float)))) {
        host->set_error(ACME_NAME ": a tensor in binding %u reaches past its buffer (%llu bytes)",
                        t->binding, (unsigned long long)b->size);
        return BST_ERR_INVALID_ARG;
    }
    out->base = empty ? b->data : b->data + t->offset; /* an empty view touches nothing */
    return BST_OK;
}

static float *at(const view4 *v, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    return (float *)(void *)(v->base + i0 * v->stride[0] + i1 * v->stride[1] +
                             i2 * v->stride[2] + i3 * v->stride[3]);
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* out = a op b (b broadcast: its extent-1 dims read index 0), or out = silu(a). */
static void run_elementwise(uint32_t op, const view4 *out, const view4 *a, const view4 *b)
{
    view4 bb = *b;
    for (int k = 0; k < 4; k++)
        if (bb.ext[k] == 1)
            bb.stride[k] = 0;
    for (int64_t i0 = 0; i0 < out->ext[0]; i0++)
        for (int64_t i1 = 0; i1 < out->ext[1]; i1++)
            for (int64_t i2 = 0; i2 < out->ext[2]; i2++)
                for (int64_t i3 = 0; i3 < out->ext[3]; i3++) {
                    float x = *at(a, i0, i1, i2, i3);
                    float y = op == BST_OP_SILU ? 0.0f : *at(&bb, i0, i1, i2, i3);
                    float r = op == BST_OP_ADD ? x + y : op == BST_OP_MUL ? x * y : silu(x);
                    *at(out, i0, i1, i2, i3) = r;
                }
}

typedef struct matmul_job {
    view4 a, b, out;
    int64_t group; /* batches of a per batch of b */
} matmul_job;

/* Rows [begin, end) of the flattened (batch, M) space; each row is independent (policy 1: the
 * work is split by the host's pool, never by threads of our own). */
static void matmul_rows(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    (void)worker;
    const matmul_job *j = arg;
    int64_t M = j->a.ext[2], K = j->a.ext[3], N = j->b.ext[2];
    for (int64_t row = begin; row < end; row++) {
        int64_t batch = row / M, m = row % M;
        int64_t a0 = batch / j->a.ext[1], a1 = batch % j->a.ext[1];
        int64_t bbatch = batch / j->group;
        int64_t b0 = bbatch / j->b.ext[1], b1 = bbatch % j->b.ext[1];
        for (int64_t n = 0; n < N; n++) {
            double sum = 0.0; /* plain and accurate; a fast kernel would block and vectorize */
            for (int64_t k = 0; k < K; k++)
                sum += (double)*at(&j->a, a0, a1, m, k) * (double)*at(&j->b, b0, b1, n, k);
            *at(&j->out, a0, a1, m, n) = (float)sum;
        }
    }
}

static bst_status run_step(const bst_host_api *host, const acme_step *s, void *const *buffers,
                           const bst_run_params *params)
{
    view4 in[2], out;
    bst_status st = resolve(host, &s->out, buffers, params, &out);
    for (uint32_t k = 0; k < s->n_inputs && st == BST_OK; k++)
        st = resolve(host, &s->in[k], buffers, params, &in[k]);
    if (st != BST_OK)
        return st;
    if (s->op != BST_OP_MATMUL) {
        run_elementwise(s->op, &out, &in[0], s->n_inputs > 1 ? &in[1] : &in[0]);
        return BST_OK;
    }
    int64_t batch_a = in[0].ext[0] * in[0].ext[1], batch_b = in[1].ext[0] * in[1].ext[1];
    matmul_job job = {in[0], in[1], out, batch_a / batch_b};
    host->parallel_for(batch_a * in[0].ext[2], 1, matmul_rows, &job);
    return BST_OK;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bst_status acme_execute(void *device, void *executable, void *const *buffers,
                               uint32_t n_buffers, const bst_run_params *params)
{
    acme_device *d = device;
    const bst_host_api *host = d->ctx->host;
    acme_exec *e = executable;
    bst_status fault = host->fault("execute");
    if (fault != BST_OK) {
        host->set_error(ACME_NAME ": execute failed (injected fault)");
        return fault;
    }
    if (!e || !buffers || n_buffers < e->n_bindings) {
        host->set_error(ACME_NAME ": %u buffers bound, the executable needs %u", n_buffers,
                        e ? e->n_bindings : 0u);
        return BST_ERR_INVALID_ARG;
    }
    uint64_t start = now_ns();
    for (uint32_t i = 0; i < e->n_steps; i++) {
        bst_status st = run_step(host, &e->steps[i], buffers, params);
        if (st != BST_OK)
            return st;
    }
    /* A real device reports its own timestamps here, without launch and sync overhead. */
    e->last_ns = now_ns() - start;
    return BST_OK;
}

static bst_status acme_last_execute_ns(void *device, void *executable, uint64_t *out_ns)
{
    acme_device *d = device;
    const acme_exec *e = executable;
    if (!e || !out_ns) {
        d->ctx->host->set_error(ACME_NAME ": last_execute_ns: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_ns = e->last_ns;
    return BST_OK;
}

/* ---------- the one exported symbol ---------- */

BST_BACKEND_ENTRY
{
    /* Policy 9: refuse before allocating anything when no version overlaps. A host table
     * shorter than version 1 cannot even carry set_error, so that refusal has no message. */
    if (!host || !out || !HOST_NEEDS(host))
        return BST_ERR_ABI;
    if (host_abi < 1) {
        host->set_error(ACME_NAME ": speaks ABI versions 1..%u, the host offers %u",
                        BST_ABI_VERSION, host_abi);
        return BST_ERR_ABI;
    }
    if (out->struct_size < offsetof(bst_backend_api, execute) + sizeof(void *)) {
        host->set_error(ACME_NAME ": the host's bst_backend_api (%u bytes) cannot hold version 1",
                        out->struct_size);
        return BST_ERR_ABI;
    }
    acme_ctx *c = host->alloc(sizeof *c, sizeof(void *));
    if (!c) {
        host->set_error(ACME_NAME ": out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    c->host = host;

    bst_backend_api api;
    memset(&api, 0, sizeof api); /* optional entries we do not offer stay NULL */
    api.struct_size = sizeof api;
    /* The newest version both sides speak. Nothing here needs more than version 1, and the
     * later additions (version 2's events, version 3's node times) are optional and left NULL. */
    api.abi_version = host_abi < BST_ABI_VERSION ? host_abi : BST_ABI_VERSION;
    api.name = ACME_NAME;
    api.version = ACME_VERSION;
    api.ctx = c;
    api.destroy = acme_destroy;
    api.enumerate = acme_enumerate;
    api.device_open = acme_device_open;
    api.device_close = acme_device_close;
    api.query = acme_query;
    api.buffer_alloc = acme_buffer_alloc;
    api.buffer_free = acme_buffer_free;
    api.buffer_write = acme_buffer_write;
    api.buffer_read = acme_buffer_read;
    api.compile = acme_compile;
    api.executable_free = acme_executable_free;
    api.execute = acme_execute;
    api.last_execute_ns = acme_last_execute_ns;

    /* Write no more than the host's struct holds; tell it how much we wrote. */
    uint32_t host_size = out->struct_size;
    size_t n = host_size < sizeof api ? host_size : sizeof api;
    memcpy(out, &api, n);
    out->struct_size = (uint32_t)n;
    return BST_OK;
}
