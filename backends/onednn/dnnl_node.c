/*
 * query, compile and execute for the oneDNN backend.
 *
 * query copies and checks the node, then creates its oneDNN primitives at the bound shapes: a
 * node is only claimed when oneDNN really has an implementation for it (a failed primitive
 * descriptor means "unsupported", never an error). compile does the same and keeps the
 * primitives. Symbolic dims (n_tokens, n_kv) are bound at execute: a node with such dims keeps
 * the primitives of the last extents it ran with and recreates them when the extents change;
 * oneDNN's primitive cache makes that recreation a lookup (the JIT kernels are not generated
 * again). Every tensor's whole byte range is checked against its buffer before any primitive
 * runs on it.
 */
#include "dnnl_backend.h"
#include "dnnl_source_hash.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct dnnl_exec {
    uint32_t magic;
    uint32_t n_nodes;
    dnnl_node *nodes;
    uint8_t *scratch;
    uint64_t scratch_size;
    uint64_t last_ns;
} dnnl_exec;

bst_status dnnl_rfail(dnnl_run *r, bst_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return st;
}

bst_status dnnl_rcheck(dnnl_run *r, dnnl_status_t s, const char *what)
{
    if (s == dnnl_success)
        return BST_OK;
    return dnnl_rfail(r, dnnl_fail_status(s), "%s: %s", what, dnnl_status_name(s));
}

bst_status dnnl_scratch(dnnl_run *r, uint64_t size, uint8_t **out)
{
    if (!r->scratch)
        return dnnl_rfail(r, BST_ERR_INTERNAL, "scratch memory requested outside execute");
    if (*r->scratch_size < size) {
        if (size > (uint64_t)SIZE_MAX / 2)
            return dnnl_rfail(r, BST_ERR_OVERFLOW, "%llu bytes of scratch",
                              (unsigned long long)size);
        uint8_t *p = dnnl_host->alloc((size_t)size, 64);
        if (!p)
            return dnnl_rfail(r, BST_ERR_OUT_OF_MEMORY, "out of memory (%llu bytes of scratch)",
                              (unsigned long long)size);
        dnnl_host->free(*r->scratch);
        *r->scratch = p;
        *r->scratch_size = size;
    }
    *out = *r->scratch;
    return BST_OK;
}

/* --- dtypes --- */

typedef struct dtype_info {
    const char *name;
    uint32_t block_size, block_bytes;
} dtype_info;

static const dtype_info dtypes[BST_DTYPE_COUNT] = {
    [BST_DTYPE_F32] = {"f32", 1, 4},    [BST_DTYPE_F16] = {"f16", 1, 2},
    [BST_DTYPE_BF16] = {"bf16", 1, 2},  [BST_DTYPE_I32] = {"i32", 1, 4},
    [BST_DTYPE_I8] = {"i8", 1, 1},      [BST_DTYPE_Q4_0] = {"q4_0", 32, 18},
    [BST_DTYPE_Q4_1] = {"q4_1", 32, 20}, [BST_DTYPE_Q5_0] = {"q5_0", 32, 22},
    [BST_DTYPE_Q5_1] = {"q5_1", 32, 24}, [BST_DTYPE_Q8_0] = {"q8_0", 32, 34},
};

bool dnnl_dtype_geometry(uint32_t dtype, uint32_t *out_block_size, uint32_t *out_block_bytes)
{
    if (dtype >= BST_DTYPE_COUNT || !dtypes[dtype].name)
        return false;
    *out_block_size = dtypes[dtype].block_size;
    *out_block_bytes = dtypes[dtype].block_bytes;
    return true;
}

const char *dnnl_dtype_str(uint32_t dtype)
{
    return dtype < BST_DTYPE_COUNT && dtypes[dtype].name ? dtypes[dtype].name : "invalid";
}

bool dnnl_is_qweight(uint32_t dtype)
{
    return dtype == BST_DTYPE_Q4_0 || dtype == BST_DTYPE_Q4_1 || dtype == BST_DTYPE_Q8_0;
}

double dnnl_attr_float(const dnnl_node *n, bst_attr_key key, double fallback)
{
    for (uint32_t i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].key == (uint32_t)key)
            return n->attrs[i].kind == BST_ATTR_KIND_FLOAT ? n->attrs[i].f
                                                           : (double)n->attrs[i].ints[0];
    return fallback;
}

/* --- descriptors --- */

static bst_status check_desc(dnnl_run *r, const bst_tensor_desc *d, const char *what)
{
    uint32_t bs, bb;
    if (!dnnl_dtype_geometry(d->dtype, &bs, &bb))
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "%s has unknown dtype %u", what, d->dtype);
    if (d->layout != BST_LAYOUT_NATIVE &&
        !((d->layout == DNNL_LAYOUT_S8ROWS || d->layout == DNNL_LAYOUT_BF16ROWS) &&
          dnnl_is_qweight(d->dtype)))
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "%s has layout %u", what, d->layout);
    if (d->rank > BST_MAX_DIMS)
        return dnnl_rfail(r, BST_ERR_SHAPE, "%s has rank %u", what, d->rank);
    for (uint32_t i = 0; i < d->rank; i++) {
        if (d->shape[i] < 0 || d->shape[i] > (INT64_C(1) << 40))
            return dnnl_rfail(r, BST_ERR_SHAPE, "%s dim %u (%lld) is out of range", what, i,
                              (long long)d->shape[i]);
        if (d->strides[i] < -(INT64_C(1) << 48) || d->strides[i] > (INT64_C(1) << 48))
            return dnnl_rfail(r, BST_ERR_SHAPE, "%s stride %u is out of range", what, i);
        if (d->sym[i] >= BST_SYM_COUNT)
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "%s dim %u has unknown symbol %u", what,
                              i, d->sym[i]);
    }
    if (bs > 1 && (d->rank == 0 || d->shape[d->rank - 1] % bs != 0 ||
                   d->strides[d->rank - 1] != (int64_t)bb))
        return dnnl_rfail(r, BST_ERR_SHAPE, "%s (%s) must have whole, contiguous blocks", what,
                          dnnl_dtype_str(d->dtype));
    return BST_OK;
}

static bst_status copy_desc(dnnl_run *r, const bst_tensor_desc *src, bst_tensor_desc *dst,
                            const char *what)
{
    if (!src)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "%s descriptor is NULL", what);
    if (src->struct_size < sizeof(bst_tensor_desc))
        return dnnl_rfail(r, BST_ERR_ABI, "%s descriptor has struct_size %u < %zu", what,
                          src->struct_size, sizeof(bst_tensor_desc));
    memcpy(dst, src, sizeof *dst);
    dst->struct_size = (uint32_t)sizeof *dst;
    return check_desc(r, dst, what);
}

static bst_status copy_node(dnnl_run *r, const bst_node_desc *src, dnnl_node *dst)
{
    memset(dst, 0, sizeof *dst);
    if (!src)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "node descriptor is NULL");
    if (src->struct_size < sizeof(bst_node_desc))
        return dnnl_rfail(r, BST_ERR_ABI, "node descriptor has struct_size %u < %zu",
                          src->struct_size, sizeof(bst_node_desc));
    if (!dnnl_op_name(src->op))
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "op %u is not run by this backend", src->op);
    dst->op = (bst_op)src->op;
    dst->variant = src->variant;
    if (src->n_inputs > BST_MAX_INPUTS || src->n_attrs > BST_MAX_ATTRS)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "%u inputs / %u attributes", src->n_inputs,
                          src->n_attrs);
    if ((src->n_inputs && !src->inputs) || (src->n_attrs && !src->attrs))
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "NULL input or attribute array");
    dst->n_inputs = src->n_inputs;
    char what[32];
    for (uint32_t i = 0; i < src->n_inputs; i++) {
        snprintf(what, sizeof what, "input %u", i);
        bst_status st = copy_desc(r, src->inputs[i], &dst->in[i], what);
        if (st != BST_OK)
            return st;
    }
    bst_status st = copy_desc(r, src->output, &dst->out, "output");
    if (st != BST_OK)
        return st;
    if (dst->out.layout != BST_LAYOUT_NATIVE)
        return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "output has layout %u", dst->out.layout);
    for (uint32_t i = 0; i < src->n_attrs; i++) {
        const bst_attr *a = src->attrs[i];
        if (!a || a->struct_size < sizeof(bst_attr))
            return dnnl_rfail(r, BST_ERR_ABI, "attribute %u is NULL or too small", i);
        if (a->key == BST_ATTR_NONE || a->key >= BST_ATTR_COUNT)
            return dnnl_rfail(r, BST_ERR_UNSUPPORTED, "unknown attribute key %u", a->key);
        if (a->kind > BST_ATTR_KIND_INTS ||
            (a->kind == BST_ATTR_KIND_INTS && a->count > BST_MAX_DIMS))
            return dnnl_rfail(r, BST_ERR_INVALID_ARG, "attribute %u has a bad kind or count", i);
        memcpy(&dst->attrs[i], a, sizeof(bst_attr));
        dst->attrs[i].struct_size = (uint32_t)sizeof(bst_attr);
    }
    dst->n_attrs = src->n_attrs;
    for (uint32_t i = 0; i <= dst->n_inputs; i++) {
        const bst_tensor_desc *d = i < dst->n_inputs ? &dst->in[i] : &dst->out;
        for (uint32_t k = 0; k < d->rank; k++)
            if (d->sym[k] != BST_SYM_NONE)
                dst->symbolic = true;
    }
    dst->key[0] = dst->key[1] = -1;
    return BST_OK;
}

/* --- resolution --- */

typedef struct bind_env {
    void *const *buffers; /* NULL: shapes only, at their bounds */
    uint32_t n_buffers;
    const bst_run_params *params;
} bind_env;

static bool byte_span(const dnnl_tensor *t, int64_t *out_lo, int64_t *out_hi)
{
    uint32_t bs, bb;
    if (!dnnl_dtype_geometry(t->dtype, &bs, &bb))
        return false;
    int64_t lo = 0, hi = (int64_t)bb;
    for (int d = 0; d < 4; d++) {
        int64_t count = d == 3 ? t->ne[3] / bs : t->ne[d];
        int64_t ext;
        if (count <= 1)
            continue;
        if (__builtin_mul_overflow(count - 1, t->nb[d], &ext))
            return false;
        if (ext < 0 ? __builtin_add_overflow(lo, ext, &lo) : __builtin_add_overflow(hi, ext, &hi))
            return false;
    }
    *out_lo = lo;
    *out_hi = hi;
    return true;
}

static bst_status resolve(dnnl_run *r, const bind_env *env, const bst_tensor_desc *d,
                          dnnl_tensor *t, const char *what)
{
    memset(t, 0, sizeof *t);
    t->dtype = d->dtype;
    t->layout = d->layout;
    t->rank = d->rank;
    uint32_t pad = BST_MAX_DIMS - d->rank;
    for (int i = 0; i < 4; i++) {
        t->ne[i] = 1;
        t->nb[i] = 0;
    }
    bool empty = false;
    for (uint32_t i = 0; i < d->rank; i++) {
        int64_t n = d->shape[i];
        if (d->sym[i] != BST_SYM_NONE && env->params) {
            int64_t v = d->sym[i] == BST_SYM_N_TOKENS ? env->params->n_tokens : env->params->n_kv;
            if (v < 0 || v > n)
                return dnnl_rfail(r, BST_ERR_INVALID_ARG,
                                  "%s dim %u: %s = %lld is outside 0..%lld (its bound)", what, i,
                                  d->sym[i] == BST_SYM_N_TOKENS ? "n_tokens" : "n_kv",
                                  (long long)v, (long long)n);
            n = v;
        }
        t->ne[pad + i] = n;
        t->nb[pad + i] = d->strides[i];
        empty = empty || n == 0;
    }
    uint32_t bs = 1, bb = 1;
    dnnl_dtype_geometry(d->dtype, &bs, &bb);
    if (t->ne[3] % bs != 0)
        return dnnl_rfail(r, BST_ERR_SHAPE, "%s innermost extent %lld is not whole %s blocks",
                          what, (long long)t->ne[3], dnnl_dtype_str(d->dtype));
    int64_t lo, hi;
    if (!byte_span(t, &lo, &hi))
        return dnnl_rfail(r, BST_ERR_OVERFLOW, "%s: its byte range overflows", what);
    if (!env->buffers)
        return BST_OK;
    if (d->binding >= env->n_buffers)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "%s uses binding %u of %u", what, d->binding,
                          env->n_buffers);
    dnnl_buf *b = dnnl_buf_get(env->buffers[d->binding]);
    if (!b)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "%s: binding %u is not an onednn buffer", what,
                          d->binding);
    t->buf = b;
    if (d->layout != BST_LAYOUT_NATIVE) {
        /* A repacked weight: the whole tensor, rows x cols as prepare_weight made it. */
        int64_t rows = t->ne[0] * t->ne[1] * t->ne[2];
        if (b->repacked != d->layout || d->offset != 0 || b->rows != rows ||
            b->cols != t->ne[3])
            return dnnl_rfail(r, BST_ERR_INVALID_ARG,
                              "%s: binding %u is not the requantized %lldx%lld weight it names",
                              what, d->binding, (long long)rows, (long long)t->ne[3]);
        t->ptr = b->data;
        return BST_OK;
    }
    if (b->repacked)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG,
                          "%s: binding %u holds a repacked weight, but the tensor is native",
                          what, d->binding);
    if (d->offset > b->size)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "%s: offset %llu is past the %llu-byte buffer",
                          what, (unsigned long long)d->offset, (unsigned long long)b->size);
    if (!empty && ((int64_t)d->offset + lo < 0 || hi > (int64_t)(b->size - d->offset)))
        return dnnl_rfail(r, BST_ERR_INVALID_ARG,
                          "%s at offset %llu reaches outside its %llu-byte buffer (binding %u)",
                          what, (unsigned long long)d->offset, (unsigned long long)b->size,
                          d->binding);
    t->ptr = b->data + d->offset;
    return BST_OK;
}

static bst_status resolve_node(dnnl_run *r, const bind_env *env, dnnl_node *n)
{
    char what[32];
    r->node = n;
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        snprintf(what, sizeof what, "input %u", i);
        bst_status st = resolve(r, env, &n->in[i], &r->in[i], what);
        if (st != BST_OK)
            return st;
    }
    return resolve(r, env, &n->out, &r->out, "output");
}

static bool has_elements(const dnnl_tensor *t)
{
    for (int d = 0; d < 4; d++)
        if (t->ne[d] == 0)
            return false;
    return true;
}

/* Bound extents stand in for zero-sized symbolic ones when planning at query/compile. */
static bst_status plan_node(dnnl_run *r)
{
    dnnl_node_release(r->node);
    bst_status st = dnnl_op_plan(r);
    if (st != BST_OK)
        dnnl_node_release(r->node);
    else
        r->node->planned = true;
    return st;
}

/* --- query --- */

static dnnl_dev *device_of(void *device, const char *what)
{
    dnnl_dev *d = device;
    if (!d || d->magic != DNNL_MAGIC_DEVICE) {
        dnnl_host->set_error("onednn: %s: not an onednn device", what);
        return NULL;
    }
    return d;
}

static uint64_t variant_hash(const dnnl_node *n, const char *name)
{
    const dnnl_version_t *v = dnnl_version();
    char text[256];
    snprintf(text, sizeof text, "%s|%d.%d.%d|%s|%u|%d|%u", name, v->major, v->minor, v->patch,
             v->hash ? v->hash : "", (unsigned)n->op, (int)dnnl_get_effective_cpu_isa(),
             n->out.dtype);
    uint64_t h = DNNL_PLUGIN_SOURCE_HASH;
    for (const char *p = text; *p; p++) {
        h ^= (uint8_t)*p;
        h *= UINT64_C(0x100000001b3);
    }
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        h ^= n->in[i].dtype;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

bst_status dnnl_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                      size_t stride, uint32_t capacity, uint32_t *out_count)
{
    dnnl_dev *d = device_of(device, "query");
    if (!d)
        return BST_ERR_INVALID_ARG;
    if (!out_count || !node || (capacity && !out_variants)) {
        dnnl_host->set_error("onednn: query: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_count = 0;
    if (capacity && stride < sizeof(bst_kernel_variant)) {
        dnnl_host->set_error("onednn: query: stride %zu < %zu", stride,
                             sizeof(bst_kernel_variant));
        return BST_ERR_ABI;
    }
    dnnl_run *r = dnnl_host->alloc(sizeof *r, 64);
    dnnl_node *n = dnnl_host->alloc(sizeof *n, 64);
    if (!r || !n) {
        dnnl_host->free(r);
        dnnl_host->free(n);
        dnnl_host->set_error("onednn: query: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(r, 0, sizeof *r);
    r->dev = d;
    bind_env env = {0};
    bst_status st = copy_node(r, node, n);
    if (st == BST_OK)
        st = resolve_node(r, &env, n);
    if (st == BST_OK)
        st = dnnl_op_check(r);
    const char *names[4];
    uint32_t nv = st == BST_OK ? dnnl_op_variants(r, names, 4) : 0;
    /* Claimed only when oneDNN has primitives for every variant at the bound shapes. */
    for (uint32_t i = 0; i < nv && st == BST_OK; i++) {
        n->variant = i;
        st = plan_node(r);
    }
    dnnl_node_release(n);
    if (st == BST_ERR_ABI) {
        dnnl_host->set_error("onednn: query: %s", r->msg);
    } else if (st != BST_OK) {
        dnnl_host->log(BST_LOG_DEBUG, "onednn: query: %s not claimed: %s",
                       dnnl_op_name(node->op) ? dnnl_op_name(node->op) : "op", r->msg);
        st = BST_OK; /* anything this backend cannot run is "unsupported", not an error */
    } else {
        *out_count = nv;
        for (uint32_t i = 0; i < nv && i < capacity; i++) {
            bst_kernel_variant v;
            memset(&v, 0, sizeof v);
            v.struct_size = (uint32_t)sizeof v;
            snprintf(v.name, sizeof v.name, "%s", names[i]);
            v.source_hash = variant_hash(n, names[i]);
            memcpy((char *)out_variants + (size_t)i * stride, &v, sizeof v);
        }
    }
    dnnl_host->free(r);
    dnnl_host->free(n);
    return st;
}

/* --- compile --- */

void dnnl_executable_free(void *device, void *executable)
{
    (void)device;
    dnnl_exec *e = executable;
    if (!e || e->magic != DNNL_MAGIC_EXEC)
        return;
    e->magic = 0;
    for (uint32_t i = 0; i < e->n_nodes; i++)
        dnnl_node_release(&e->nodes[i]);
    dnnl_host->free(e->scratch);
    dnnl_host->free(e->nodes);
    dnnl_host->free(e);
}

static bst_status compile_node(dnnl_run *r, const bst_node_desc *src, dnnl_node *n,
                               uint32_t n_bindings)
{
    bst_status st = copy_node(r, src, n);
    bind_env env = {0};
    if (st != BST_OK || (st = resolve_node(r, &env, n)) != BST_OK ||
        (st = dnnl_op_check(r)) != BST_OK)
        return st;
    for (uint32_t k = 0; k <= n->n_inputs; k++) {
        const bst_tensor_desc *d = k < n->n_inputs ? &n->in[k] : &n->out;
        if (d->binding >= n_bindings)
            return dnnl_rfail(r, BST_ERR_INVALID_ARG, "binding %u of %u", d->binding, n_bindings);
    }
    const char *names[4];
    uint32_t nv = dnnl_op_variants(r, names, 4);
    if (n->variant >= nv)
        return dnnl_rfail(r, BST_ERR_INVALID_ARG, "variant %u does not exist (%u offered)",
                          n->variant, nv);
    /* The primitives for the bound shapes, created now (symbolic nodes recreate them at
     * execute for their actual extents). */
    return plan_node(r);
}

bst_status dnnl_compile(void *device, const bst_partition_desc *partition, void **out_executable)
{
    dnnl_dev *d = device_of(device, "compile");
    if (!d)
        return BST_ERR_INVALID_ARG;
    if (!partition || !out_executable) {
        dnnl_host->set_error("onednn: compile: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_executable = NULL;
    if (partition->struct_size < sizeof(bst_partition_desc)) {
        dnnl_host->set_error("onednn: compile: partition descriptor of %u bytes is too small",
                             partition->struct_size);
        return BST_ERR_ABI;
    }
    if (partition->n_nodes && !partition->nodes) {
        dnnl_host->set_error("onednn: compile: NULL node array");
        return BST_ERR_INVALID_ARG;
    }
    bst_status st = dnnl_injected_fault("compile");
    if (st != BST_OK)
        return st;
    dnnl_exec *e = dnnl_host->alloc(sizeof *e, 64);
    dnnl_run *r = dnnl_host->alloc(sizeof *r, 64);
    size_t nodes_bytes = (size_t)(partition->n_nodes ? partition->n_nodes : 1) * sizeof(dnnl_node);
    dnnl_node *nodes = e && r ? dnnl_host->alloc(nodes_bytes, 64) : NULL;
    if (!e || !r || !nodes) {
        dnnl_host->free(e);
        dnnl_host->free(r);
        dnnl_host->free(nodes);
        dnnl_host->set_error("onednn: compile: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(e, 0, sizeof *e);
    memset(nodes, 0, nodes_bytes);
    e->magic = DNNL_MAGIC_EXEC;
    e->nodes = nodes;
    dnnl_apply_threads(d);
    for (uint32_t i = 0; i < partition->n_nodes; i++) {
        memset(r, 0, sizeof *r);
        r->dev = d;
        e->n_nodes = i + 1;
        st = compile_node(r, partition->nodes[i], &nodes[i], partition->n_bindings);
        if (st != BST_OK) {
            const char *name = partition->nodes[i] ? dnnl_op_name(partition->nodes[i]->op) : NULL;
            dnnl_host->set_error("onednn: compile: node %u (%s): %s", i,
                                 name ? name : "unknown op", r->msg);
            dnnl_executable_free(d, e);
            dnnl_host->free(r);
            return st;
        }
    }
    dnnl_host->free(r);
    *out_executable = e;
    return BST_OK;
}

/* --- execute --- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

bst_status dnnl_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                        const bst_run_params *params)
{
    dnnl_dev *d = device_of(device, "execute");
    if (!d)
        return BST_ERR_INVALID_ARG;
    dnnl_exec *e = executable;
    if (!e || e->magic != DNNL_MAGIC_EXEC) {
        dnnl_host->set_error("onednn: execute: not an onednn executable");
        return BST_ERR_INVALID_ARG;
    }
    if (n_buffers && !buffers) {
        dnnl_host->set_error("onednn: execute: NULL buffer array");
        return BST_ERR_INVALID_ARG;
    }
    bst_run_params none = {.struct_size = (uint32_t)sizeof none, .n_tokens = -1, .n_kv = -1};
    if (!params) {
        params = &none;
    } else if (params->struct_size < sizeof(bst_run_params)) {
        dnnl_host->set_error("onednn: execute: run params of %u bytes are too small",
                             params->struct_size);
        return BST_ERR_ABI;
    }
    bst_status st = dnnl_injected_fault("execute");
    if (st != BST_OK)
        return st;
    dnnl_run *r = dnnl_host->alloc(sizeof *r, 64);
    if (!r) {
        dnnl_host->set_error("onednn: execute: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    dnnl_apply_threads(d);
    uint64_t t0 = now_ns();
    static void *const no_buffers[1] = {NULL};
    bind_env env = {buffers ? buffers : no_buffers, n_buffers, params};
    for (uint32_t i = 0; i < e->n_nodes && st == BST_OK; i++) {
        dnnl_node *n = &e->nodes[i];
        memset(r, 0, sizeof *r);
        r->dev = d;
        r->scratch = &e->scratch;
        r->scratch_size = &e->scratch_size;
        st = resolve_node(r, &env, n);
        if (st == BST_OK)
            st = dnnl_op_check(r);
        if (st == BST_OK && has_elements(&r->out)) {
            if (n->symbolic && (!n->planned || n->key[0] != params->n_tokens ||
                                n->key[1] != params->n_kv)) {
                st = plan_node(r);
                n->key[0] = params->n_tokens;
                n->key[1] = params->n_kv;
                if (st != BST_OK)
                    n->key[0] = n->key[1] = -2;
            }
            if (st == BST_OK) {
                r->executing = true;
                st = dnnl_op_exec(r);
            }
        }
        if (st != BST_OK)
            dnnl_host->set_error("onednn: execute: node %u (%s): %s", i, dnnl_op_name(n->op),
                                 r->msg);
    }
    dnnl_host->free(r);
    e->last_ns = now_ns() - t0;
    return st;
}

bst_status dnnl_last_execute_ns(void *device, void *executable, uint64_t *out_ns)
{
    (void)device;
    dnnl_exec *e = executable;
    if (!e || e->magic != DNNL_MAGIC_EXEC || !out_ns) {
        dnnl_host->set_error("onednn: last_execute_ns: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_ns = e->last_ns;
    return BST_OK;
}
