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

bool dnnl_dtype_geometry(uint32_t dtype, uint32_t *out_block_size, uint32_t *out_block_bytes)
{
    return bstc_dtype_geometry(dtype, out_block_size, out_block_bytes);
}

const char *dnnl_dtype_str(uint32_t dtype) { return bstc_dtype_name(dtype); }

bool dnnl_is_qweight(uint32_t dtype)
{
    return dtype == BST_DTYPE_Q4_0 || dtype == BST_DTYPE_Q4_1 || dtype == BST_DTYPE_Q8_0;
}

double dnnl_attr_float(const dnnl_node *n, bst_attr_key key, double fallback)
{
    return bstc_attr_float(&n->base, key, fallback);
}

/* --- descriptors --- */

/* Any op this backend names, with up to BST_MAX_INPUTS inputs (each op's check counts them). */
static bool arity(uint32_t op, bstc_op_arity *out)
{
    const char *name = dnnl_op_name(op);
    if (!name)
        return false;
    *out = (bstc_op_arity){name, 0, BST_MAX_INPUTS};
    return true;
}

/* Inputs may be the weights prepare_weight requantized. */
static bool layout_ok(uint32_t dtype, uint32_t layout)
{
    return (layout == DNNL_LAYOUT_S8ROWS || layout == DNNL_LAYOUT_BF16ROWS) &&
           dnnl_is_qweight(dtype);
}

static bst_status copy_node(dnnl_run *r, const bst_node_desc *src, dnnl_node *dst)
{
    memset(dst, 0, sizeof *dst);
    bst_status st = bstc_copy_node(src, arity, layout_ok, &dst->base, r->msg, sizeof r->msg);
    dst->symbolic = st == BST_OK && bstc_node_symbolic(&dst->base);
    dst->key[0] = dst->key[1] = -1;
    return st;
}

/* --- resolution --- */

typedef struct bind_env {
    void *const *buffers; /* NULL: shapes only, at their bounds */
    uint32_t n_buffers;
    const bst_run_params *params;
} bind_env;

static bst_status resolve(dnnl_run *r, const bind_env *env, const bst_tensor_desc *d,
                          dnnl_tensor *t, const char *what)
{
    memset(t, 0, sizeof *t);
    t->dtype = d->dtype;
    t->layout = d->layout;
    t->rank = d->rank;
    bst_status st = bstc_pad_dims(d, env->params, t->ne, t->nb, what, r->msg, sizeof r->msg);
    if (st != BST_OK)
        return st;
    int64_t lo, hi;
    if (!bstc_byte_span(t->dtype, t->ne, t->nb, &lo, &hi))
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
    t->ptr = b->data + d->offset;
    return bstc_check_in_buffer(d, t->ne, t->nb, b->size, what, r->msg, sizeof r->msg);
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
    uint64_t h = bstc_fnv1a(DNNL_PLUGIN_SOURCE_HASH, text, strlen(text));
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
    bst_status st = bstc_query_args(&dnnl_plugin, node, out_variants, stride, capacity, out_count);
    if (st != BST_OK)
        return st;
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
    st = copy_node(r, node, n);
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
        for (uint32_t i = 0; i < nv && i < capacity; i++)
            bstc_put_variant(out_variants, stride, i, names[i], variant_hash(n, names[i]));
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
    if ((st = bstc_check_bindings(&n->base, n_bindings, r->msg, sizeof r->msg)) != BST_OK)
        return st;
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
    bst_status st = bstc_check_partition(&dnnl_plugin, partition);
    if (st == BST_OK)
        st = dnnl_injected_fault("compile");
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

bst_status dnnl_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                        const bst_run_params *params)
{
    dnnl_dev *d = device_of(device, "execute");
    if (!d)
        return BST_ERR_INVALID_ARG;
    dnnl_exec *e = executable;
    bst_run_params run;
    bst_status st = bstc_execute_args(&dnnl_plugin, e && e->magic == DNNL_MAGIC_EXEC, buffers,
                                      n_buffers, params, &run);
    if (st == BST_OK)
        st = dnnl_injected_fault("execute");
    if (st != BST_OK)
        return st;
    dnnl_run *r = dnnl_host->alloc(sizeof *r, 64);
    if (!r) {
        dnnl_host->set_error("onednn: execute: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    dnnl_apply_threads(d);
    uint64_t t0 = bstc_now_ns();
    static void *const no_buffers[1] = {NULL};
    bind_env env = {buffers ? buffers : no_buffers, n_buffers, &run};
    params = &run;
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
    e->last_ns = bstc_now_ns() - t0;
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
