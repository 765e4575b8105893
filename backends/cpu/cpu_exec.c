/*
 * query, compile and execute for the CPU backend.
 *
 * One set of checks serves all three: query and compile run each kernel's check on the
 * tensors at their bound shapes, execute runs it again on the actual extents (symbols bound from
 * bst_run_params) after resolving every tensor to memory and checking that its whole byte range
 * lies inside its buffer. A kernel therefore never sees a shape, dtype or address that could make
 * it read or write out of bounds. Execute keeps what it resolved and checked, and reuses it only
 * while every value it was derived from is unchanged ("reusing a resolution" below).
 */
#include "cpu_backend.h"
#include "cpu_packed.h"
#include "cpu_fused.h"
#include "cpu_q8dot.h"
#include "cpu_source_hash.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct op_impl {
    const char *name;
    uint8_t min_inputs, max_inputs;
    bst_status (*check)(cpu_run *r);
    bst_status (*run)(cpu_run *r);
} op_impl;

#define K(nm, lo, hi, fn) {nm, lo, hi, cpu_check_##fn, cpu_run_##fn}
static const op_impl impls[BST_OP_COUNT] = {
    [BST_OP_GET_ROWS] = K("get_rows", 2, 2, get_rows),
    [BST_OP_ADD] = K("add", 2, 2, binary),
    [BST_OP_MUL] = K("mul", 2, 2, binary),
    [BST_OP_SCALE] = K("scale", 1, 1, unary),
    [BST_OP_MATMUL] = K("matmul", 2, 2, matmul),
    [BST_OP_RMS_NORM] = K("rms_norm", 1, 1, norm),
    [BST_OP_LAYER_NORM] = K("layer_norm", 1, 1, norm),
    [BST_OP_ROPE] = K("rope", 2, 2, rope),
    [BST_OP_SOFTMAX] = K("softmax", 1, 2, softmax),
    [BST_OP_SILU] = K("silu", 1, 1, unary),
    [BST_OP_GELU] = K("gelu", 1, 1, unary),
    [BST_OP_CAST] = K("cast", 1, 1, convert),
    [BST_OP_QUANTIZE] = K("quantize", 1, 1, convert),
    [BST_OP_CONCAT] = K("concat", 2, 2, concat),
    [BST_OP_CONT] = K("cont", 1, 1, convert),
    [BST_OP_VIEW] = K("view", 1, 1, alias),
    [BST_OP_RESHAPE] = K("reshape", 1, 1, alias),
    [BST_OP_PERMUTE] = K("permute", 1, 1, alias),
    [BST_OP_TRANSPOSE] = K("transpose", 1, 1, alias),
    [BST_OP_ARGMAX] = K("argmax", 1, 1, argmax),
    [BST_OP_SET_ROWS] = K("set_rows", 3, 3, set_rows),
    /* High-level ops: fused variants only (cpu_fused.h), no "ref"; without one they are lowered. */
    [BST_OP_ATTENTION] = {"attention", 3, 4, cpu_fused_check, cpu_fused_unchosen},
    [BST_OP_FFN_SWIGLU] = {"ffn_swiglu", 4, 4, cpu_fused_check, cpu_fused_unchosen},
    [BST_OP_RMS_NORM_MUL] = {"rms_norm_mul", 2, 2, cpu_fused_check, cpu_fused_unchosen},
};
#undef K

/* Primitive ops and the fused high-level ones: sources are never ours to run (NULL), nor are
 * ids this build does not know. */
static const op_impl *impl_of(uint32_t op)
{
    if (op >= BST_OP_COUNT || !impls[op].name)
        return NULL;
    return &impls[op];
}

/* --- descriptors --- */

static bool arity(uint32_t op, bstc_op_arity *out)
{
    const op_impl *impl = impl_of(op);
    if (!impl)
        return false;
    *out = (bstc_op_arity){impl->name, impl->min_inputs, impl->max_inputs};
    return true;
}

static bst_status copy_node(cpu_run *r, const bst_node_desc *src, cpu_node *dst)
{
    memset(dst, 0, sizeof *dst);
    return bstc_copy_node(src, arity, NULL, &dst->base, r->msg, sizeof r->msg);
}

/* --- resolution --- */

typedef struct bind_env {
    void *const *buffers; /* NULL: shapes only, at their bounds */
    uint32_t n_buffers;
    const bst_run_params *params;
} bind_env;

static bst_status resolve(cpu_run *r, const bind_env *env, const bst_tensor_desc *d,
                          cpu_tensor *t, bool writable, const char *what)
{
    memset(t, 0, sizeof *t);
    t->dtype = (bst_dtype)d->dtype;
    t->rank = d->rank;
    bst_status st = bstc_pad_dims(d, env->buffers ? env->params : NULL, t->ne, t->nb, what,
                                  r->msg, sizeof r->msg);
    if (st != BST_OK || !env->buffers)
        return st;

    if (d->binding >= env->n_buffers)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "%s uses binding %u of %u", what, d->binding,
                        env->n_buffers);
    cpu_buffer *b = cpu_buffer_get(env->buffers[d->binding]);
    if (!b)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "%s: binding %u is not a cpu buffer", what,
                        d->binding);
    if (writable && b->read_only)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "%s: binding %u is a read-only weight", what,
                        d->binding);
    if ((st = bstc_check_in_buffer(d, t->ne, t->nb, b->size, what, r->msg, sizeof r->msg)) !=
        BST_OK)
        return st;
    t->data = b->data + d->offset; /* an empty tensor's is never dereferenced */
    const cpu_packed *pk = b->packed;
    if (pk && d->offset == 0 && d->dtype == pk->dtype && t->ne[0] == 1 && t->ne[1] == 1 &&
        t->ne[2] == pk->rows && t->ne[3] == pk->nb * CPU_Q8_QK &&
        t->nb[2] == (int64_t)pk->row_bytes)
        t->packed = pk; /* the tensor is the whole packed matrix */
    return BST_OK;
}

static bst_status resolve_node(cpu_run *r, const bind_env *env, const cpu_node *n)
{
    /* Literal names: formatting one per input on every execute cost ~0.1 us each, and a decode
     * step resolves hundreds of nodes. */
    static const char *const input_names[] = {"input 0", "input 1", "input 2", "input 3",
                                              "input 4", "input 5", "input 6", "input 7"};
    _Static_assert(sizeof input_names / sizeof input_names[0] >= BST_MAX_INPUTS,
                   "a name per input");
    memset(r, 0, sizeof *r);
    atomic_init(&r->async_status, BST_OK);
    r->node = n;
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        bst_status st = resolve(r, env, &n->in[i], &r->in[i], false, input_names[i]);
        if (st != BST_OK)
            return st;
    }
    /* Aliasing ops write nothing; set_rows writes its dst, which the output aliases. */
    bool writes = impl_of(n->op)->check != cpu_check_alias;
    return resolve(r, env, &n->out, &r->out, writes, "output");
}

/* --- query --- */

static uint64_t variant_hash(const cpu_node *n, const char *variant)
{
    uint64_t h = bstc_fnv1a(CPU_SOURCE_HASH ^ BSTC_FNV_SEED, variant, strlen(variant));
    uint32_t key[2 + BST_MAX_INPUTS] = {(uint32_t)n->op, n->out.dtype};
    for (uint32_t i = 0; i < n->n_inputs; i++)
        key[2 + i] = n->in[i].dtype;
    return bstc_fnv1a(h, key, sizeof key);
}

static bst_status check_node(cpu_run *r, const cpu_node *n)
{
    bind_env env = {0};
    bst_status st = resolve_node(r, &env, n);
    if (st != BST_OK)
        return st;
    return impl_of(n->op)->check(r);
}

#define MAX_FAST 8 /* gemm + q8x2dot variants per ISA (cpu_kernels_q8dot.c) */

/* The variants of a checked node (r resolved by check_node), in the order query offers them:
 * the fast ones that apply, best first, then "ref" (out[count - 1] == NULL). Variant indices in
 * compile follow this order. */
static uint32_t node_variants(const cpu_device *dev, const cpu_run *r,
                              const cpu_q8dot_impl **out, const cpu_fused_impl **fused)
{
    uint32_t n = 0;
    if (cpu_fused_op(r->node->op)) { /* fused variants only, and none when told so */
        bool dev_ok = dev && dev->magic == CPU_MAGIC_DEVICE;
        if (!dev_ok || !dev->no_fused)
            n = cpu_fused_variants(r, fused, MAX_FAST);
        for (uint32_t i = 0; i < n; i++)
            out[i] = NULL;
        return n;
    }
    if (!dev || dev->magic != CPU_MAGIC_DEVICE || !dev->ref_only) {
        n = cpu_q8dot_variants(r, out, MAX_FAST);
        /* Fast primitive variants (cpu_fast_prims.c) run through the fused entry. */
        const uint32_t m = cpu_prim_variants(r, fused + n, MAX_FAST - n);
        for (uint32_t i = n; i < n + m; i++)
            out[i] = NULL;
        n += m;
    }
    out[n++] = NULL;
    return n;
}

bst_status cpu_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count)
{
    bst_status st = bstc_query_args(&cpu_plugin, node, out_variants, stride, capacity, out_count);
    if (st != BST_OK)
        return st;
    cpu_run *r = cpu_host->alloc(sizeof *r, 64);
    cpu_node *n = cpu_host->alloc(sizeof *n, 64);
    st = BST_ERR_OUT_OF_MEMORY;
    if (r && n) {
        /* Anything this backend cannot run is "unsupported", which is not an error; only an
         * incompatible descriptor is. */
        st = copy_node(r, node, n);
        if (st == BST_OK)
            st = check_node(r, n);
        if (st == BST_ERR_ABI) {
            cpu_host->set_error("cpu: query: %s", r->msg);
        } else {
            if (st == BST_OK) {
                const cpu_q8dot_impl *fast[MAX_FAST + 1];
                const cpu_fused_impl *fused[MAX_FAST + 1] = {0};
                uint32_t count = node_variants(device, r, fast, fused);
                *out_count = count;
                for (uint32_t i = 0; i < count && i < capacity; i++) {
                    const char *name = fused[i] ? fused[i]->name : fast[i] ? fast[i]->name : "ref";
                    bstc_put_variant(out_variants, stride, i, name, variant_hash(n, name));
                }
            }
            st = BST_OK;
        }
    } else {
        cpu_host->set_error("cpu: query: out of memory");
    }
    cpu_host->free(r);
    cpu_host->free(n);
    return st;
}

/* --- compile --- */

static int64_t max_innermost(const cpu_node *n)
{
    int64_t m = 1;
    for (uint32_t i = 0; i <= n->n_inputs; i++) {
        const bst_tensor_desc *d = i < n->n_inputs ? &n->in[i] : &n->out;
        if (d->rank > 0 && d->shape[d->rank - 1] > m)
            m = d->shape[d->rank - 1];
    }
    return m;
}

void cpu_executable_free(void *device, void *executable)
{
    (void)device;
    cpu_executable *e = executable;
    if (!e || e->magic != CPU_MAGIC_EXEC)
        return;
    e->magic = 0;
    cpu_host->free(e->nodes);
    cpu_host->free(e->scratch);
    cpu_host->free(e->resolved);
    cpu_host->free(e->used);
    cpu_host->free(e->key_handles);
    cpu_host->free(e->keys);
    cpu_host->free(e->runs);
    cpu_host->free(e->node_times);
    cpu_host->free(e);
}

/* The CPU_SYM_* bits of the symbols d's extents depend on (as bstc_pad_dims binds them: any
 * symbol other than n_tokens takes n_kv's value). */
static uint32_t desc_syms(const bst_tensor_desc *d)
{
    uint32_t bits = 0;
    for (uint32_t i = 0; i < d->rank && i < BST_MAX_DIMS; i++)
        if (d->sym[i] != BST_SYM_NONE)
            bits |= d->sym[i] == BST_SYM_N_TOKENS ? CPU_SYM_TOKENS : CPU_SYM_KV;
    return bits;
}

/* The resolution cache's storage for a compiled e (nodes checked, bindings < n_bindings): each
 * node's place in resolved[] and its symbols, and the list of bindings the nodes use. */
static bst_status alloc_cache(cpu_executable *e)
{
    uint64_t tensors = 0;
    for (uint32_t i = 0; i < e->n_nodes; i++) {
        cpu_node *n = &e->nodes[i];
        n->first_tensor = (uint32_t)tensors;
        n->syms = desc_syms(&n->out);
        for (uint32_t k = 0; k < n->n_inputs; k++)
            n->syms |= desc_syms(&n->in[k]);
        e->syms |= n->syms;
        tensors += n->n_inputs + 1u;
    }
    if (tensors > UINT32_MAX / 2) {
        cpu_host->set_error("cpu: compile: %llu tensors are too many",
                            (unsigned long long)tensors);
        return BST_ERR_OVERFLOW;
    }
    e->n_tensors = (uint32_t)tensors;
    size_t nb = e->n_bindings ? e->n_bindings : 1;
    bool *seen = cpu_host->alloc(nb * sizeof *seen, 64);
    e->resolved = cpu_host->alloc((tensors ? (size_t)tensors : 1) * sizeof *e->resolved, 64);
    e->used = cpu_host->alloc(nb * sizeof *e->used, 64);
    e->key_handles = cpu_host->alloc(nb * sizeof *e->key_handles, 64);
    e->keys = cpu_host->alloc(nb * sizeof *e->keys, 64);
    e->runs = cpu_host->alloc(CPU_MAX_SIBLINGS * sizeof *e->runs, 64);
    bst_status st = BST_OK;
    if (!seen || !e->resolved || !e->used || !e->key_handles || !e->keys || !e->runs) {
        cpu_host->set_error("cpu: compile: out of memory");
        st = BST_ERR_OUT_OF_MEMORY;
    } else {
        memset(e->runs, 0, CPU_MAX_SIBLINGS * sizeof *e->runs); /* reuse_resolution reads node */
        memset(seen, 0, nb * sizeof *seen);
        for (uint32_t i = 0; i < e->n_nodes; i++) {
            const cpu_node *n = &e->nodes[i];
            for (uint32_t k = 0; k <= n->n_inputs; k++) {
                uint32_t b = k < n->n_inputs ? n->in[k].binding : n->out.binding;
                if (!seen[b]) { /* b < n_bindings: bstc_check_bindings */
                    seen[b] = true;
                    e->used[e->n_used++] = b;
                }
            }
        }
    }
    cpu_host->free(seen);
    return st;
}

/* cpu_node.mask_kept: an attention node's mask keeps its contents through an execute when no
 * node of the partition writes to its binding (then what one layer found out about the mask
 * holds for the next: cpu_mask_memo). */
static void mark_kept_masks(cpu_node *nodes, uint32_t n_nodes)
{
    for (uint32_t i = 0; i < n_nodes; i++) {
        cpu_node *n = &nodes[i];
        n->mask_kept = n->op == BST_OP_ATTENTION && n->n_inputs == 4;
        for (uint32_t k = 0; k < n_nodes && n->mask_kept; k++)
            n->mask_kept = nodes[k].out.binding != n->in[3].binding;
    }
}

bst_status cpu_compile(void *device, const bst_partition_desc *partition, void **out_executable)
{
    if (!partition || !out_executable) {
        cpu_host->set_error("cpu: compile: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_executable = NULL;
    bst_status st = bstc_check_partition(&cpu_plugin, partition);
    if (st == BST_OK)
        st = cpu_injected_fault("compile");
    if (st != BST_OK)
        return st;

    cpu_executable *e = cpu_host->alloc(sizeof *e, 64);
    cpu_run *r = cpu_host->alloc(sizeof *r, 64);
    size_t nodes_bytes = (size_t)(partition->n_nodes ? partition->n_nodes : 1) * sizeof(cpu_node);
    cpu_node *nodes = e && r ? cpu_host->alloc(nodes_bytes, 64) : NULL;
    if (!e || !r || !nodes) {
        cpu_host->free(e);
        cpu_host->free(r);
        cpu_host->free(nodes);
        cpu_host->set_error("cpu: compile: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(e, 0, sizeof *e);
    e->magic = CPU_MAGIC_EXEC;
    e->nodes = nodes;
    e->n_bindings = partition->n_bindings;
    e->max_row = 1;
    for (uint32_t i = 0; i < partition->n_nodes; i++) {
        cpu_node *n = &nodes[i];
        const bst_node_desc *src = partition->nodes[i];
        st = copy_node(r, src, n);
        if (st == BST_OK)
            st = check_node(r, n);
        if (st == BST_OK) {
            const cpu_q8dot_impl *fast[MAX_FAST + 1];
            const cpu_fused_impl *fused[MAX_FAST + 1] = {0};
            uint32_t count = node_variants(device, r, fast, fused);
            if (src->variant >= count) {
                st = cpu_fail(r, BST_ERR_INVALID_ARG, "variant %u does not exist (%u offered)",
                              src->variant, count);
            } else {
                n->q8dot = fast[src->variant];
                n->fused = fused[src->variant];
            }
        }
        if (st == BST_OK)
            st = bstc_check_bindings(&n->base, partition->n_bindings, r->msg, sizeof r->msg);
        if (st != BST_OK) {
            const op_impl *impl = src ? impl_of(src->op) : NULL;
            cpu_host->set_error("cpu: compile: node %u (%s): %s", i,
                                impl ? impl->name : "unknown op", r->msg);
            e->n_nodes = i;
            cpu_executable_free(NULL, e);
            cpu_host->free(r);
            return st;
        }
        int64_t m = max_innermost(n);
        if (m > e->max_row)
            e->max_row = m;
        e->n_nodes = i + 1;
    }
    cpu_host->free(r);
    cpu_mark_siblings(e->nodes, e->n_nodes);
    mark_kept_masks(e->nodes, e->n_nodes);
    if ((st = alloc_cache(e)) != BST_OK) {
        cpu_executable_free(NULL, e);
        return st;
    }
    *out_executable = e;
    return BST_OK;
}

/* --- reusing a resolution ---
 *
 * Resolving a node (its tensors' extents, addresses and bounds, then its op's check) depends on
 * nothing but its descriptors, fixed at compile; the values of the symbols its tensors use
 * (bst_run_params.n_tokens and n_kv; pos is an input's content, never a shape); and, for each
 * binding, these values of the buffer behind the handle: being a cpu buffer, data, size,
 * read_only and the packed copy (its pointer and the fields resolve compares). Decode runs one
 * executable with the same buffers step after step, so execute keeps every node's resolved
 * tensors (resolved[]) with those values (the key). An execute that presents the same values
 * starts each node from its stored tensors instead of resolving and checking it again; when only
 * symbols changed, just the nodes whose tensors use them are resolved again (n_kv grows by one
 * every decode step: the attention nodes). Values are compared, not just pointers: a buffer freed
 * and another allocated at the same handle address with another size, data or packing is
 * another key, and everything is resolved again. But a buffer's values never change while it
 * lives, so while no buffer has been freed since the key last matched (cpu_buffer_frees), equal
 * handles are enough and no buffer is read: the default model's decode body binds 337 buffers,
 * whose descriptors a token's weight stream has evicted from the caches, and comparing their
 * values took 4.6-9 us an execute (0.3-0.5% of a token); comparing handles takes ~0.7 us.
 *
 * Invariant: cache_valid implies that resolved[] holds, for every node, what resolve_node would
 * produce, checked, for the key's n_tokens, n_kv and buffer values. It is set only at the end of
 * an execute in which every node was resolved or reused, checked and run without error; it is
 * cleared before a full resolution starts and when any node fails (its resolution, check or
 * kernel), so a partly updated resolved[] is never used.
 *
 * A cpu_run's fields, and how long each lives:
 *   per resolution (stored and reused): node, in[0..n_inputs), out;
 *   per execute (set every time): scratch, slot_floats, n_workers, shared, mask_memo:
 *     ensure_scratch reallocates the scratch when the pool grows;
 *   per run of a node (reset every time): aux, async_status, msg; in[n_inputs..) is zeroed, as
 *     resolve_node leaves it.
 */

#define CPU_STALE_ALL 4u /* beside CPU_SYM_*: every node is resolved again */

static void binding_key(const cpu_buffer *b, cpu_binding_key *k)
{
    memset(k, 0, sizeof *k);
    k->data = b->data;
    k->size = b->size;
    k->read_only = b->read_only;
    k->packed = b->packed;
    if (b->packed) {
        k->packed_dtype = b->packed->dtype;
        k->packed_rows = b->packed->rows;
        k->packed_nb = b->packed->nb;
        k->packed_row_bytes = b->packed->row_bytes;
    }
}

/* Whether the buffer behind an unchanged handle still has the key's values (cpu_buffer_get's
 * test, inline). */
static bool key_matches(const cpu_binding_key *k, const void *handle)
{
    const cpu_buffer *b = handle;
    if (!b || b->magic != CPU_MAGIC_BUFFER || b->data != k->data ||
        b->size != k->size ||
        b->read_only != k->read_only || b->packed != k->packed)
        return false;
    const cpu_packed *pk = b->packed;
    return !pk || (pk->dtype == k->packed_dtype && pk->rows == k->packed_rows &&
                   pk->nb == k->packed_nb && pk->row_bytes == k->packed_row_bytes);
}

/* What must be resolved again: CPU_STALE_ALL, or the CPU_SYM_* bits of the symbols some node
 * uses whose values changed (0: every stored resolution applies). */
static uint32_t stale_parts(const cpu_executable *e, void *const *buffers, uint32_t n_buffers,
                            const bst_run_params *run, uint64_t frees)
{
    if (!e->cache_valid || n_buffers != e->key_n_buffers)
        return CPU_STALE_ALL;
    const bool none_freed = frees == e->key_frees;
    for (uint32_t k = 0; k < e->n_used; k++) { /* used[k] < n_buffers: they were resolved */
        const void *handle = buffers[e->used[k]];
        if (handle != e->key_handles[k] || (!none_freed && !key_matches(&e->keys[k], handle)))
            return CPU_STALE_ALL;
    }
    return ((run->n_tokens != e->key_n_tokens ? CPU_SYM_TOKENS : 0u) |
            (run->n_kv != e->key_n_kv ? CPU_SYM_KV : 0u)) &
           e->syms;
}

/* After an execute that resolved or reused every node: the values resolved[] now holds for
 * (the buffers' only when they were resolved again: otherwise they matched), and the free count
 * stale_parts saw. */
static void store_key(cpu_executable *e, uint32_t stale, void *const *buffers,
                      uint32_t n_buffers, const bst_run_params *run, uint64_t frees)
{
    for (uint32_t k = 0; k < e->n_used && (stale & CPU_STALE_ALL); k++) {
        void *handle = buffers[e->used[k]];
        e->key_handles[k] = handle;
        binding_key(cpu_buffer_get(handle), &e->keys[k]);
    }
    e->key_frees = frees;
    e->key_n_buffers = n_buffers;
    e->key_n_tokens = run->n_tokens;
    e->key_n_kv = run->n_kv;
    e->cache_valid = true;
}

static void store_resolution(cpu_executable *e, const cpu_run *r)
{
    const cpu_node *n = r->node;
    cpu_tensor *t = &e->resolved[n->first_tensor];
    for (uint32_t k = 0; k < n->n_inputs; k++)
        t[k] = r->in[k];
    t[n->n_inputs] = r->out;
}

/* r as resolve_node and the op's check left it for node n, from resolved[]. r is one of
 * e->runs, zeroed at compile and since filled by resolve_node (which zeroes it first) or here:
 * only the inputs a previous node left past n's need zeroing. */
static void reuse_resolution(const cpu_executable *e, const cpu_node *n, cpu_run *r)
{
    const cpu_tensor *t = &e->resolved[n->first_tensor];
    const uint32_t left = r->node ? r->node->n_inputs : 0;
    for (uint32_t k = n->n_inputs; k < left; k++)
        memset(&r->in[k], 0, sizeof r->in[k]);
    r->node = n;
    for (uint32_t k = 0; k < n->n_inputs; k++)
        r->in[k] = t[k];
    r->out = t[n->n_inputs];
    r->aux = NULL;
    atomic_store_explicit(&r->async_status, BST_OK, memory_order_relaxed);
    r->msg[0] = '\0';
}

/* --- execute --- */

/* Per-worker row buffers for the current pool size. */
static bst_status ensure_scratch(cpu_executable *e, uint32_t workers)
{
    if (e->scratch && e->scratch_workers >= workers)
        return BST_OK;
    size_t slot = ((size_t)e->max_row + 15) & ~(size_t)15; /* 64-byte multiples */
    size_t floats;
    if (__builtin_mul_overflow(slot, (size_t)CPU_SLOTS * (workers + (size_t)1), &floats) ||
        floats > SIZE_MAX / sizeof(float)) {
        cpu_host->set_error("cpu: execute: scratch size overflows");
        return BST_ERR_OVERFLOW;
    }
    float *s = cpu_host->alloc(floats * sizeof(float), 64);
    if (!s) {
        cpu_host->set_error("cpu: execute: cannot allocate %zu bytes of scratch",
                            floats * sizeof(float));
        return BST_ERR_OUT_OF_MEMORY;
    }
    cpu_host->free(e->scratch);
    e->scratch = s;
    e->slot_floats = slot;
    e->scratch_workers = workers;
    return BST_OK;
}

/* Requests node n's small one-row inputs past the first (up to 16 KiB; a norm's weight is 2.3
 * KiB in the default model) before the node ahead of it runs. A decode step streams megabytes of
 * weights between two uses of such a row, so it comes from memory, one dependent miss after
 * another, while the other threads wait on the node: rms_norm_mul took 0.56-0.75 us a node,
 * 0.31-0.36 with its weight requested one node early. The addresses are the last execute's
 * (only called once there was one; a prefetch of a stale one is harmless); a constant weight's
 * stay the same. */
static void prefetch_small_inputs(const cpu_executable *e, const cpu_node *n)
{
    for (uint32_t k = 1; k < n->n_inputs; k++) {
        const cpu_tensor *x = &e->resolved[n->first_tensor + k];
        if (!x->data || cpu_is_block(x->dtype) || x->ne[0] != 1 || x->ne[1] != 1 ||
            x->ne[2] != 1 || x->nb[3] <= 0 || x->ne[3] > 16384 / x->nb[3])
            continue;
        cpu_prefetch_bytes(x->data, x->ne[3] * x->nb[3]);
    }
}

/* An attention node's K/V rows, requested over the KV_AHEAD_NODES nodes before it (a decode
 * step's two set_rows, which run on the caller alone), a part before each, in address order:
 * up to KV_AHEAD_BYTES of them, a decode step's whole cache until ~80 positions. Like the
 * weights, the cache comes from DRAM after a token's worth of weights has streamed through, and
 * on its own the attention starts with the first block's misses. Default model, tg128 from an
 * empty cache, nodes timed in the run (3 alternating runs): the attention nodes 17.1-18.0 ->
 * 10.5-11.1 ms in all, the set_rows nodes 2.3-2.9 -> 4.6-5.4 ms, all nodes but the matmuls and
 * FFNs 30.0-32.3 -> 24.8-26.9 ms (~40 us a token). Over the 4 nodes before it (the two ropes
 * too) the ropes took ~0.4 us longer each, waiting behind the requests: 27.0-28.4 ms. The
 * addresses are the last execute's, as prefetch_small_inputs' are. */
#define KV_AHEAD_NODES 2
#define KV_AHEAD_BYTES (64 << 10)

static void prefetch_kv_part(const cpu_executable *e, const cpu_node *a, int part)
{
    for (uint32_t x = 1; x <= 2; x++) { /* K, then V */
        const cpu_tensor *t = &e->resolved[a->first_tensor + x];
        const int64_t row = t->ne[3] * t->nb[3], heads = t->ne[2];
        if (!t->data || cpu_is_block(t->dtype) || t->ne[0] != 1 || row <= 0 || heads <= 0)
            continue;
        int64_t S = t->ne[1];
        if (S > KV_AHEAD_BYTES / 2 / (heads * row))
            S = KV_AHEAD_BYTES / 2 / (heads * row);
        const int64_t j1 = S * (part + 1) / KV_AHEAD_NODES;
        for (int64_t j = S * part / KV_AHEAD_NODES; j < j1; j++)
            for (int64_t h = 0; h < heads; h++)
                cpu_prefetch_bytes(t->data + j * t->nb[1] + h * t->nb[2], row);
    }
}

/* Before node i runs: its part of the K/V rows of an attention node at most KV_AHEAD_NODES
 * ahead. */
static void prefetch_kv_ahead(const cpu_executable *e, uint32_t i)
{
    for (uint32_t d = 1; d <= KV_AHEAD_NODES && i + d < e->n_nodes; d++)
        if (e->nodes[i + d].op == BST_OP_ATTENTION) {
            prefetch_kv_part(e, &e->nodes[i + d], KV_AHEAD_NODES - (int)d);
            return;
        }
}

static bool has_output(const cpu_tensor *t)
{
    for (int d = 0; d < 4; d++)
        if (t->ne[d] == 0)
            return false;
    return true;
}

/* With node timing on: nodes [first, end), run as one piece of work that began at `start`, end
 * now; the time goes to the first (bst_node_time). Returns the next piece's start. */
static uint64_t time_nodes(cpu_executable *e, uint32_t first, uint32_t end, uint64_t t0,
                           uint64_t start)
{
    if (!e->node_times)
        return start;
    const uint64_t now = bstc_now_ns();
    for (uint32_t k = first; k < end; k++)
        e->node_times[k] = (bst_node_time){start - t0, k == first ? now - start : 0};
    return now;
}

bst_status cpu_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params)
{
    (void)device;
    cpu_executable *e = executable;
    bst_run_params run;
    bst_status st = bstc_execute_args(&cpu_plugin, e && e->magic == CPU_MAGIC_EXEC, buffers,
                                      n_buffers, params, &run);
    if (st == BST_OK)
        st = cpu_injected_fault("execute");
    if (st != BST_OK)
        return st;
    uint32_t workers = cpu_host->num_workers ? cpu_host->num_workers() : 1;
    if (workers == 0 || !cpu_host->parallel_for)
        workers = 1;
    if ((st = ensure_scratch(e, workers)) != BST_OK)
        return st;
    const uint64_t frees = cpu_buffer_frees();
    const uint32_t stale = stale_parts(e, buffers, n_buffers, &run, frees);
    if (stale == CPU_STALE_ALL)
        e->cache_valid = false;
    const bool warm = e->cache_valid; /* resolved[] was filled by an earlier execute */
    /* Test-only: lets a test see that this execute resolves again (an armed fault fails it). */
    if (stale && (st = cpu_injected_fault("resolve")) != BST_OK)
        return st;
    uint64_t t0 = bstc_now_ns();
    e->mask_memo.valid = false; /* the inputs may have changed since the last execute */
    bind_env env = {buffers, n_buffers, &run};
    static const void *const no_buffers[1] = {NULL};
    if (!buffers)
        env.buffers = (void *const *)no_buffers; /* resolve treats NULL as "shapes only" */
    cpu_run *runs = e->runs;
    uint64_t node_start = t0;
    uint32_t first = 0; /* the nodes [first, i) just run, for time_nodes */
    for (uint32_t i = 0; i < e->n_nodes && st == BST_OK;
         node_start = time_nodes(e, first, i, t0, node_start)) {
        first = i;
        const uint32_t group = e->nodes[i].siblings > 1 ? e->nodes[i].siblings : 1;
        uint32_t ready = 0; /* nodes resolved and checked into runs[] */
        for (; ready < group && st == BST_OK; ready++) {
            cpu_run *r = &runs[ready];
            const cpu_node *n = &e->nodes[i + ready];
            if (stale & (n->syms | CPU_STALE_ALL)) {
                st = resolve_node(r, &env, n);
                if (st == BST_OK)
                    st = impl_of(n->op)->check(r);
                if (st == BST_OK)
                    store_resolution(e, r);
            } else {
                reuse_resolution(e, n, r);
            }
            r->scratch = e->scratch;
            r->slot_floats = e->slot_floats;
            r->n_workers = workers;
            r->shared = cpu_slot(r, workers, 0);
            r->mask_memo = &e->mask_memo;
            if (st != BST_OK)
                cpu_host->set_error("cpu: execute: node %u (%s): %s", i + ready,
                                    impl_of(n->op)->name, r->msg);
        }
        if (st != BST_OK)
            break;
        if (warm && i + group < e->n_nodes) {
            prefetch_small_inputs(e, &e->nodes[i + group]);
            prefetch_kv_ahead(e, i);
        }
        bst_status group_st = BST_OK;
        if (group > 1 && cpu_run_q8dot_group(runs, group, &group_st)) {
            if ((st = group_st) != BST_OK)
                cpu_host->set_error("cpu: execute: node %u (matmul group): %s", i, runs[0].msg);
            i += group;
            continue;
        }
        for (uint32_t k = 0; k < group && st == BST_OK; k++) { /* one at a time */
            cpu_run *r = &runs[k];
            const cpu_node *n = &e->nodes[i + k];
            const op_impl *impl = impl_of(n->op);
            if (has_output(&r->out)) {
                st = n->fused   ? cpu_fused_run(r, n->fused)
                     : n->q8dot ? cpu_run_q8dot(r, n->q8dot)
                                : impl->run(r);
                if (st == BST_OK)
                    st = cpu_async_result(r, impl->name);
            }
            if (st != BST_OK)
                cpu_host->set_error("cpu: execute: node %u (%s): %s", i + k, impl->name, r->msg);
        }
        i += group;
    }
    if (st == BST_OK)
        store_key(e, stale, buffers, n_buffers, &run, frees);
    else
        e->cache_valid = false;
    e->last_ns = bstc_now_ns() - t0;
    return st;
}

bst_status cpu_node_timing(void *device, void *executable, uint32_t enable)
{
    (void)device;
    cpu_executable *e = executable;
    if (!e || e->magic != CPU_MAGIC_EXEC) {
        cpu_host->set_error("cpu: node_timing: bad executable");
        return BST_ERR_INVALID_ARG;
    }
    if (!enable) {
        cpu_host->free(e->node_times);
        e->node_times = NULL;
        return BST_OK;
    }
    if (!e->node_times) {
        e->node_times = bstc_alloc_zero(&cpu_plugin, (size_t)(e->n_nodes ? e->n_nodes : 1) *
                                                         sizeof *e->node_times,
                                        "node_timing");
        if (!e->node_times)
            return BST_ERR_OUT_OF_MEMORY;
    }
    return BST_OK;
}

bst_status cpu_node_times(void *device, void *executable, bst_node_time *out, uint32_t capacity,
                          uint32_t *out_count)
{
    (void)device;
    const cpu_executable *e = executable;
    if (!e || e->magic != CPU_MAGIC_EXEC || !out_count || (capacity && !out)) {
        cpu_host->set_error("cpu: node_times: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    if (!e->node_times) {
        cpu_host->set_error("cpu: node_times: node timing is off for this executable");
        return BST_ERR_INVALID_ARG;
    }
    for (uint32_t k = 0; k < capacity && k < e->n_nodes; k++)
        out[k] = e->node_times[k];
    *out_count = e->n_nodes;
    return BST_OK;
}

bst_status cpu_last_execute_ns(void *device, void *executable, uint64_t *out_ns)
{
    (void)device;
    cpu_executable *e = executable;
    if (!e || e->magic != CPU_MAGIC_EXEC || !out_ns) {
        cpu_host->set_error("cpu: last_execute_ns: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_ns = e->last_ns;
    return BST_OK;
}
