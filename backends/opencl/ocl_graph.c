/*
 * query, compile and execute for the OpenCL backend.
 *
 * One set of checks serves all three (as in the CPU reference): query and compile run the op's
 * check on the tensors at their bound shapes, execute runs it again on the actual extents after
 * binding every tensor to its buffer and checking that its whole byte range lies inside it, so
 * no kernel is ever launched on an address range it could overrun.
 *
 * A partition compiles to one enqueue sequence: each node gets its own kernel objects with
 * every argument that does not depend on the run set at compile time; execute sets the buffers
 * (bindings come with each run) and, for nodes with symbolic dims, the shape arguments, then
 * enqueues everything and waits once. Buffers are always passed as (cl_mem, byte offset)
 * arguments rather than sub-buffers: an offset need not be a multiple of
 * CL_DEVICE_MEM_BASE_ADDR_ALIGN (the planner packs tensors more tightly), and no sub-buffer has
 * to be created and released per run.
 */
#include "ocl_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct ocl_executable {
    uint32_t magic;
    uint32_t n_nodes;
    ocl_node *nodes;
    uint32_t n_bindings;
    bool needs_flag; /* some node can raise the error flag (bad ids) */
    cl_mem flag;
    uint64_t last_ns;
} ocl_executable;

bst_status ocl_fail(ocl_run *r, bst_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return status;
}

/* --- dtypes --- */

bool ocl_is_float_in(uint32_t dtype)
{
    return dtype == BST_DTYPE_F32 || dtype == BST_DTYPE_F16 || dtype == BST_DTYPE_BF16 ||
           bstc_dtype_is_block(dtype);
}

bool ocl_is_plain_out(uint32_t dtype)
{
    return dtype == BST_DTYPE_F32 || dtype == BST_DTYPE_F16 || dtype == BST_DTYPE_BF16;
}

/* --- shapes --- */

bool ocl_same_shape(const ocl_tensor *a, const ocl_tensor *b)
{
    for (int d = 0; d < 4; d++)
        if (a->ne[d] != b->ne[d])
            return false;
    return true;
}

int64_t ocl_rows(const ocl_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2]; }

int64_t ocl_numel(const ocl_tensor *t) { return ocl_rows(t) * t->ne[3]; }

bst_status ocl_need_float_in(ocl_run *r, const ocl_tensor *t, const char *what)
{
    if (!ocl_is_float_in(t->dtype))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "%s dtype %s is not a float or block type", what,
                        bstc_dtype_name(t->dtype));
    return BST_OK;
}

bst_status ocl_need_plain_out(ocl_run *r)
{
    if (!ocl_is_plain_out(r->out.dtype))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "output dtype %s is not f32, f16 or bf16",
                        bstc_dtype_name(r->out.dtype));
    return BST_OK;
}

bst_status ocl_need_same_shape(ocl_run *r, const ocl_tensor *a, const char *what)
{
    if (a->rank != r->out.rank || !ocl_same_shape(a, &r->out))
        return ocl_fail(r, BST_ERR_SHAPE, "%s shape does not match the output's", what);
    return BST_OK;
}

bst_status ocl_check_aligned(ocl_run *r, const ocl_tensor *t, const char *what)
{
    /* The natural alignment of what kernels load: elements, or a block's f16 fields. */
    int64_t align = bstc_dtype_align(t->dtype);
    if (align == 0)
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "%s has invalid dtype", what);
    bool ok = t->offset % (uint64_t)align == 0;
    for (int d = 0; d < 4; d++)
        if (t->ne[d] > 1 && t->nb[d] % align != 0)
            ok = false;
    if (!ok)
        return ocl_fail(r, BST_ERR_UNSUPPORTED,
                        "%s (%s) has an offset or stride that is not a multiple of %lld bytes",
                        what, bstc_dtype_name(t->dtype), (long long)align);
    return BST_OK;
}

uint32_t ocl_one_variant(const ocl_run *r, const char **out_names, uint32_t cap)
{
    (void)r;
    if (cap > 0)
        out_names[0] = "cl";
    return 1;
}

/* --- descriptors --- */

static bool arity(uint32_t op, bstc_op_arity *out)
{
    const ocl_op_impl *impl = ocl_op_of(op);
    if (!impl)
        return false;
    *out = (bstc_op_arity){impl->name, impl->min_inputs, impl->max_inputs};
    return true;
}

static bst_status copy_node(ocl_run *r, const bst_node_desc *src, ocl_node *dst)
{
    memset(dst, 0, sizeof *dst);
    bst_status st = bstc_copy_node(src, arity, NULL, &dst->base, r->msg, sizeof r->msg);
    dst->symbolic = st == BST_OK && bstc_node_symbolic(&dst->base);
    return st;
}

/* --- resolution --- */

typedef struct bind_env {
    void *const *buffers; /* NULL: shapes only, at their bounds */
    uint32_t n_buffers;
    const bst_run_params *params;
} bind_env;

static bool has_elements(const ocl_tensor *t)
{
    for (int d = 0; d < 4; d++)
        if (t->ne[d] == 0)
            return false;
    return true;
}

static bst_status resolve(ocl_run *r, const bind_env *env, const bst_tensor_desc *d,
                          ocl_tensor *t, bool writable, const char *what)
{
    memset(t, 0, sizeof *t);
    t->dtype = d->dtype;
    t->rank = d->rank;
    t->offset = d->offset;
    bst_status st = bstc_pad_dims(d, env->buffers ? env->params : NULL, t->ne, t->nb, what,
                                  r->msg, sizeof r->msg);
    if (st != BST_OK)
        return st;
    int64_t lo, hi;
    if (!bstc_byte_span(t->dtype, t->ne, t->nb, &lo, &hi))
        return ocl_fail(r, BST_ERR_OVERFLOW, "%s: its byte range overflows", what);
    if (!env->buffers)
        return BST_OK;
    if (d->binding >= env->n_buffers)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "%s uses binding %u of %u", what, d->binding,
                        env->n_buffers);
    ocl_buffer *b = ocl_buffer_get(env->buffers[d->binding]);
    if (!b)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "%s: binding %u is not an opencl buffer", what,
                        d->binding);
    if (writable && b->read_only)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "%s: binding %u is a read-only weight", what,
                        d->binding);
    t->mem = b->mem;
    return bstc_check_in_buffer(d, t->ne, t->nb, b->size, what, r->msg, sizeof r->msg);
}

static bst_status resolve_node(ocl_run *r, const bind_env *env, ocl_node *n)
{
    char what[32];
    r->node = n;
    const ocl_op_impl *impl = ocl_op_of(n->op);
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        snprintf(what, sizeof what, "input %u", i);
        bst_status st = resolve(r, env, &n->in[i], &r->in[i], false, what);
        if (st != BST_OK)
            return st;
    }
    return resolve(r, env, &n->out, &r->out, !impl->alias, "output");
}

/* --- arguments and launches --- */

void ocl_args_begin(ocl_args *a, ocl_run *r, cl_kernel k)
{
    a->r = r;
    a->k = k;
    a->next = 0;
    a->err = CL_SUCCESS;
    a->err_index = 0;
}

static void set_arg(ocl_args *a, bool wanted, size_t size, const void *value)
{
    cl_uint i = a->next++;
    if (!wanted || a->err != CL_SUCCESS)
        return;
    cl_int err = clSetKernelArg(a->k, i, size, value);
    if (err != CL_SUCCESS) {
        a->err = err;
        a->err_index = i;
    }
}

static bool want_shapes(const ocl_args *a)
{
    return a->r->mode == OCL_MODE_PRESET || (a->r->mode == OCL_MODE_EXECUTE && a->r->set_shapes);
}

void ocl_arg_mem(ocl_args *a, cl_mem m)
{
    set_arg(a, a->r->mode == OCL_MODE_EXECUTE, sizeof m, &m);
}

void ocl_arg_i32(ocl_args *a, int32_t v)
{
    cl_int x = v;
    set_arg(a, want_shapes(a), sizeof x, &x);
}

void ocl_arg_i64(ocl_args *a, int64_t v)
{
    cl_long x = v;
    set_arg(a, want_shapes(a), sizeof x, &x);
}

void ocl_arg_f32(ocl_args *a, float v)
{
    cl_float x = v;
    set_arg(a, want_shapes(a), sizeof x, &x);
}

void ocl_arg_long4(ocl_args *a, const int64_t v[4])
{
    cl_long4 x;
    for (int i = 0; i < 4; i++)
        x.s[i] = v[i];
    set_arg(a, want_shapes(a), sizeof x, &x);
}

void ocl_arg_local(ocl_args *a, size_t bytes)
{
    set_arg(a, want_shapes(a), bytes, NULL);
}

void ocl_arg_tensor(ocl_args *a, const ocl_tensor *t, const int64_t *nb, bool with_dtype)
{
    ocl_arg_mem(a, t->mem);
    cl_ulong off = t->offset;
    set_arg(a, want_shapes(a), sizeof off, &off);
    ocl_arg_long4(a, nb ? nb : t->nb);
    if (with_dtype)
        ocl_arg_i32(a, (int32_t)t->dtype);
}

bst_status ocl_args_end(ocl_args *a, const char *kernel_name)
{
    if (a->err == CL_SUCCESS)
        return BST_OK;
    bst_status st = ocl_status_of(a->err);
    return ocl_fail(a->r, st == BST_ERR_BACKEND ? BST_ERR_INTERNAL : st,
                    "clSetKernelArg(%s, %u): %s (%d)", kernel_name, a->err_index,
                    ocl_cl_error_name(a->err), (int)a->err);
}

size_t ocl_round_up(ocl_run *r, int64_t items, size_t local)
{
    if (items <= 0)
        return local;
    uint64_t g = ((uint64_t)items + local - 1) / local * local;
    if (g > (uint64_t)SIZE_MAX / 2) {
        (void)ocl_fail(r, BST_ERR_OVERFLOW, "%lld work-items are too many", (long long)items);
        return 0;
    }
    return (size_t)g;
}

bst_status ocl_enqueue(ocl_run *r, cl_kernel k, const char *name, cl_uint dims,
                       const size_t *global, const size_t *local)
{
    if (r->mode != OCL_MODE_EXECUTE)
        return BST_OK;
    for (cl_uint i = 0; i < dims; i++)
        if (global[i] == 0)
            return ocl_fail(r, BST_ERR_OVERFLOW, "%s: work size overflow", name);
    cl_int err = clEnqueueNDRangeKernel(r->dev->queue, k, dims, NULL, global, local, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        bst_status st = ocl_status_of(err);
        if (st == BST_ERR_DEVICE_LOST)
            r->dev->lost = true;
        return ocl_fail(r, st, "clEnqueueNDRangeKernel(%s): %s (%d)", name,
                        ocl_cl_error_name(err), (int)err);
    }
    return BST_OK;
}

bst_status ocl_kernel_create(ocl_run *r, ocl_family f, const char *name, cl_kernel *out)
{
    cl_program p = NULL;
    bst_status st = ocl_program_get(r->dev, f, &p);
    if (st != BST_OK) {
        const char *m = r->dev->prog[f].message;
        return ocl_fail(r, st, "%s", m ? m : "building its kernel family failed");
    }
    cl_int err = CL_SUCCESS;
    *out = clCreateKernel(p, name, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return ocl_fail(r, ocl_status_of(err), "clCreateKernel(%s): %s (%d)", name,
                        ocl_cl_error_name(err), (int)err);
    }
    return BST_OK;
}

/* --- query --- */

/* Builds the families a node needs; a failed build is the query's error (with the log). */
static bst_status need_families(ocl_run *r, const ocl_op_impl *impl)
{
    uint32_t fams = impl->families ? impl->families(r) : 0;
    for (int f = 0; f < OCL_FAM_COUNT; f++)
        if (fams & (1u << f)) {
            bst_status st = ocl_program_get(r->dev, (ocl_family)f, NULL);
            if (st != BST_OK)
                return st; /* message already set, with the build log */
        }
    return BST_OK;
}

static uint64_t variant_hash(ocl_run *r, const ocl_op_impl *impl, const char *name)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    uint32_t fams = impl->families ? impl->families(r) : 0;
    uint64_t parts[OCL_FAM_COUNT + 1];
    uint32_t np = 0;
    for (int f = 0; f < OCL_FAM_COUNT; f++)
        if (fams & (1u << f))
            parts[np++] = ocl_program_hash(r->dev, (ocl_family)f);
    const ocl_node *n = r->node;
    uint32_t key[2 + BST_MAX_INPUTS] = {(uint32_t)n->op, n->out.dtype};
    for (uint32_t i = 0; i < n->n_inputs; i++)
        key[2 + i] = n->in[i].dtype;
    const uint8_t *bufs[3] = {(const uint8_t *)parts, (const uint8_t *)key,
                              (const uint8_t *)name};
    size_t lens[3] = {np * sizeof parts[0], sizeof key, strlen(name)};
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < lens[b]; i++) {
            h ^= bufs[b][i];
            h *= UINT64_C(0x100000001b3);
        }
    return h;
}

bst_status ocl_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count)
{
    ocl_device *d = ocl_device_of(device, "query");
    if (!d)
        return BST_ERR_INVALID_ARG;
    bst_status st = bstc_query_args(&ocl_plugin, node, out_variants, stride, capacity, out_count);
    if (st == BST_OK)
        st = ocl_device_usable(d, "query");
    if (st != BST_OK)
        return st;
    ocl_run *r = ocl_host->alloc(sizeof *r, 64);
    ocl_node *n = ocl_host->alloc(sizeof *n, 64);
    if (!r || !n) {
        ocl_host->free(r);
        ocl_host->free(n);
        ocl_host->set_error("opencl: query: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(r, 0, sizeof *r);
    r->dev = d;
    r->mode = OCL_MODE_CHECK;
    bind_env env = {0};
    st = copy_node(r, node, n);
    const ocl_op_impl *impl = st == BST_OK ? ocl_op_of(n->op) : NULL;
    if (st == BST_OK)
        st = resolve_node(r, &env, n);
    if (st == BST_OK)
        st = impl->check(r);
    if (st == BST_ERR_ABI) {
        ocl_host->set_error("opencl: query: %s", r->msg);
    } else if (st != BST_OK) {
        st = BST_OK; /* anything this backend cannot run is "unsupported", not an error */
    } else if ((st = need_families(r, impl)) == BST_OK) {
        const char *names[4];
        uint32_t nv = impl->variants(r, names, 4);
        *out_count = nv;
        for (uint32_t i = 0; i < nv && i < capacity; i++)
            bstc_put_variant(out_variants, stride, i, names[i], variant_hash(r, impl, names[i]));
    }
    ocl_host->free(r);
    ocl_host->free(n);
    return st;
}

/* --- compile --- */

static void node_release(ocl_node *n)
{
    for (int i = 0; i < OCL_NODE_KERNELS; i++)
        if (n->k[i]) {
            (void)clReleaseKernel(n->k[i]);
            n->k[i] = NULL;
        }
    if (n->aux) {
        (void)clReleaseMemObject(n->aux);
        n->aux = NULL;
    }
}

void ocl_executable_free(void *device, void *executable)
{
    (void)device;
    ocl_executable *e = executable;
    if (!e || e->magic != OCL_MAGIC_EXEC)
        return;
    e->magic = 0;
    for (uint32_t i = 0; i < e->n_nodes; i++)
        node_release(&e->nodes[i]);
    if (e->flag)
        (void)clReleaseMemObject(e->flag);
    ocl_host->free(e->nodes);
    ocl_host->free(e);
}

static bst_status compile_node(ocl_run *r, ocl_executable *e, const bst_node_desc *src,
                               ocl_node *n, uint32_t n_bindings)
{
    bst_status st = copy_node(r, src, n);
    if (st != BST_OK)
        return st;
    const ocl_op_impl *impl = ocl_op_of(n->op);
    bind_env env = {0};
    if ((st = resolve_node(r, &env, n)) != BST_OK || (st = impl->check(r)) != BST_OK)
        return st;
    if ((st = bstc_check_bindings(&n->base, n_bindings, r->msg, sizeof r->msg)) != BST_OK)
        return st;
    const char *names[4];
    uint32_t nv = impl->variants(r, names, 4);
    if (n->variant >= nv)
        return ocl_fail(r, BST_ERR_INVALID_ARG, "variant %u does not exist (%u offered)",
                        n->variant, nv);
    if (impl->alias)
        return BST_OK;
    if ((st = impl->prepare(r)) != BST_OK)
        return st;
    if (n->op == BST_OP_GET_ROWS || n->op == BST_OP_SET_ROWS)
        e->needs_flag = true;
    if (!n->symbolic && has_elements(&r->out)) {
        r->mode = OCL_MODE_PRESET;
        st = impl->launch(r);
        r->mode = OCL_MODE_CHECK;
    }
    return st;
}

bst_status ocl_compile(void *device, const bst_partition_desc *partition, void **out_executable)
{
    ocl_device *d = ocl_device_of(device, "compile");
    if (!d)
        return BST_ERR_INVALID_ARG;
    if (!partition || !out_executable) {
        ocl_host->set_error("opencl: compile: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_executable = NULL;
    bst_status st = bstc_check_partition(&ocl_plugin, partition);
    if (st == BST_OK)
        st = ocl_device_usable(d, "compile");
    if (st != BST_OK)
        return st;
    cl_int inj = ocl_injected_cl_error("compile");
    if (inj != CL_SUCCESS)
        return ocl_cl_fail(d, inj, "compile: clBuildProgram");

    ocl_executable *e = ocl_host->alloc(sizeof *e, 64);
    ocl_run *r = ocl_host->alloc(sizeof *r, 64);
    size_t nodes_bytes = (size_t)(partition->n_nodes ? partition->n_nodes : 1) * sizeof(ocl_node);
    ocl_node *nodes = e && r ? ocl_host->alloc(nodes_bytes, 64) : NULL;
    if (!e || !r || !nodes) {
        ocl_host->free(e);
        ocl_host->free(r);
        ocl_host->free(nodes);
        ocl_host->set_error("opencl: compile: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(e, 0, sizeof *e);
    memset(nodes, 0, nodes_bytes);
    e->magic = OCL_MAGIC_EXEC;
    e->nodes = nodes;
    e->n_bindings = partition->n_bindings;
    for (uint32_t i = 0; i < partition->n_nodes; i++) {
        memset(r, 0, sizeof *r);
        r->dev = d;
        r->mode = OCL_MODE_CHECK;
        e->n_nodes = i + 1;
        st = compile_node(r, e, partition->nodes[i], &nodes[i], partition->n_bindings);
        if (st != BST_OK) {
            const ocl_op_impl *impl = partition->nodes[i] ? ocl_op_of(partition->nodes[i]->op)
                                                          : NULL;
            ocl_host->set_error("opencl: compile: node %u (%s): %s", i,
                                impl ? impl->name : "unknown op", r->msg);
            ocl_executable_free(d, e);
            ocl_host->free(r);
            return st;
        }
    }
    ocl_host->free(r);
    if (e->needs_flag) {
        cl_int err = CL_SUCCESS;
        e->flag = clCreateBuffer(d->context, CL_MEM_READ_WRITE, sizeof(cl_int), NULL, &err);
        if (err != CL_SUCCESS) {
            e->flag = NULL;
            st = ocl_cl_fail(d, err, "compile: clCreateBuffer(error flag)");
            ocl_executable_free(d, e);
            return st;
        }
    }
    *out_executable = e;
    return BST_OK;
}

/* --- execute --- */

/* After a failure mid-sequence: let what was enqueued finish, so no kernel still runs on buffers
 * the caller may free next. */
static void drain(ocl_device *d) { (void)clFinish(d->queue); }

bst_status ocl_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params)
{
    ocl_device *d = ocl_device_of(device, "execute");
    if (!d)
        return BST_ERR_INVALID_ARG;
    ocl_executable *e = executable;
    bst_run_params run;
    bst_status st = bstc_execute_args(&ocl_plugin, e && e->magic == OCL_MAGIC_EXEC, buffers,
                                      n_buffers, params, &run);
    if (st == BST_OK)
        st = ocl_device_usable(d, "execute");
    if (st != BST_OK)
        return st;
    ocl_run *r = ocl_host->alloc(sizeof *r, 64);
    if (!r) {
        ocl_host->set_error("opencl: execute: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    uint64_t t0 = bstc_now_ns();
    static const void *const no_buffers[1] = {NULL};
    bind_env env = {buffers ? buffers : (void *const *)no_buffers, n_buffers, &run};
    cl_int err = ocl_injected_cl_error("execute");
    if (err != CL_SUCCESS) {
        ocl_host->free(r);
        return ocl_cl_fail(d, err, "execute: clEnqueueNDRangeKernel");
    }
    if (e->flag) {
        /* Non-blocking: the source must outlive this call, hence static. */
        static const cl_int zero = 0;
        err = clEnqueueWriteBuffer(d->queue, e->flag, CL_FALSE, 0, sizeof zero, &zero, 0, NULL,
                                   NULL);
        if (err != CL_SUCCESS) {
            ocl_host->free(r);
            return ocl_cl_fail(d, err, "execute: clearing the error flag");
        }
    }
    uint32_t i = 0;
    for (; i < e->n_nodes && st == BST_OK; i++) {
        ocl_node *n = &e->nodes[i];
        const ocl_op_impl *impl = ocl_op_of(n->op);
        memset(r, 0, sizeof *r);
        r->dev = d;
        r->mode = OCL_MODE_CHECK;
        r->flag = e->flag;
        st = resolve_node(r, &env, n);
        if (st == BST_OK)
            st = impl->check(r);
        if (st == BST_OK && !impl->alias && has_elements(&r->out)) {
            r->mode = OCL_MODE_EXECUTE;
            r->set_shapes = n->symbolic;
            st = impl->launch(r);
        }
        if (st != BST_OK)
            ocl_host->set_error("opencl: execute: node %u (%s): %s", i, impl->name, r->msg);
    }
    ocl_host->free(r);
    if (st != BST_OK) {
        drain(d);
        return st;
    }
    cl_int flag = 0;
    if (e->flag)
        err = clEnqueueReadBuffer(d->queue, e->flag, CL_TRUE, 0, sizeof flag, &flag, 0, NULL,
                                  NULL);
    else
        err = clFinish(d->queue);
    e->last_ns = bstc_now_ns() - t0;
    if (err != CL_SUCCESS)
        return ocl_cl_fail(d, err, "execute: waiting for the kernels");
    if (flag) {
        ocl_host->set_error("opencl: execute: a row id was outside its table (get_rows) or "
                            "destination (set_rows); the rows with valid ids were written");
        return BST_ERR_INVALID_ARG;
    }
    return BST_OK;
}

bst_status ocl_last_execute_ns(void *device, void *executable, uint64_t *out_ns)
{
    (void)device;
    ocl_executable *e = executable;
    if (!e || e->magic != OCL_MAGIC_EXEC || !out_ns) {
        ocl_host->set_error("opencl: last_execute_ns: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_ns = e->last_ns;
    return BST_OK;
}
