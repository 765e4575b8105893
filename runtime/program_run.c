/*
 * runtime/program_run.c — the executor: builds each partition's backend descriptors from the
 * memory plan and compiles them, then runs partitions in order (copies first, then execute), and
 * moves inputs in and outputs out by name.
 *
 * Bindings are numbered per partition: the device's scratch arena is one binding, each
 * persistent buffer the partition touches is its own, in order of first use. Descriptors live
 * only for the compile call (the ABI says pointers are valid only during a call); the program
 * keeps just the handle array each execute needs.
 */
#include "runtime/program_internal.h"
#include "runtime/profile.h"

#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct binder {
    bst_program *p;
    bsti_prog_part *pp;
    uint32_t arena_binding;
    uint32_t *of_buffer; /* plan buffer -> binding, BSTI_NONE when unused */
    uint32_t cap;
} binder;

static bst_status bind_tensor(binder *b, uint32_t value, bst_tensor_desc *desc)
{
    bst_program *p = b->p;
    const bsti_value_loc *loc = bsti_memplan_find(&p->plan, value, b->pp->device);
    if (!loc)
        return bsti_fail(BST_ERR_INTERNAL, "program: value %%%u has no memory on device %u",
                         value, b->pp->device);
    uint32_t *slot = loc->kind == BSTI_LOC_ARENA ? &b->arena_binding : &b->of_buffer[loc->buffer];
    if (*slot == BSTI_NONE) {
        if (b->pp->n_bindings >= b->cap)
            return bsti_fail(BST_ERR_INTERNAL, "program: binding table overflow");
        *slot = b->pp->n_bindings;
        b->pp->bindings[b->pp->n_bindings++] = bsti_prog_loc_buffer(p, loc);
    }
    desc->binding = *slot;
    desc->offset = loc->offset;
    if (loc->kind == BSTI_LOC_PERSISTENT && p->plan.buffers[loc->buffer].value == value)
        desc->layout = p->buffer_layout[loc->buffer];
    return BST_OK;
}

static bst_status compile_part(bst_program *p, uint32_t pi)
{
    const bsti_partition *part = &p->parts.parts[pi];
    bsti_prog_part *pp = &p->pparts[pi];
    const bst_graph *g = p->g;
    uint32_t m = 0;
    for (uint32_t k = 0; k < part->n_nodes; k++)
        m += !bsti_prog_is_alias_op(g->nodes[part->nodes[k]].op);
    if (m == 0)
        return BST_OK;

    /* At most one binding per tensor, plus the arena. */
    uint64_t cap = (uint64_t)m * (BST_MAX_INPUTS + 1) + 1;
    if (cap > p->plan.n_buffers + 1u)
        cap = p->plan.n_buffers + 1u;
    binder b = {.p = p, .pp = pp, .arena_binding = BSTI_NONE, .cap = (uint32_t)cap};
    bsti_desc_storage *s = calloc(m, sizeof *s);
    const bst_node_desc **nodes = calloc(m, sizeof *nodes);
    b.of_buffer = malloc((p->plan.n_buffers ? p->plan.n_buffers : 1) * sizeof *b.of_buffer);
    pp->bindings = calloc(cap, sizeof *pp->bindings);
    bst_status st = BST_OK;
    if (!s || !nodes || !b.of_buffer || !pp->bindings)
        st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory compiling partition %u",
                       pi);
    for (uint32_t i = 0; st == BST_OK && i < p->plan.n_buffers; i++)
        b.of_buffer[i] = BSTI_NONE;
    uint32_t j = 0;
    for (uint32_t k = 0; k < part->n_nodes && st == BST_OK; k++) {
        uint32_t id = part->nodes[k];
        const bsti_node *n = &g->nodes[id];
        if (bsti_prog_is_alias_op(n->op))
            continue;
        bsti_prog_fill_desc(g, id, &s[j]);
        for (uint32_t i = 0; i < s[j].node.n_inputs && st == BST_OK; i++)
            st = bind_tensor(&b, n->inputs[i], &s[j].in[i]);
        if (st == BST_OK)
            st = bind_tensor(&b, id, &s[j].out);
        s[j].node.variant = n->variant;
        nodes[j] = &s[j].node;
        j++;
    }
    if (st == BST_OK) {
        bst_partition_desc desc = {.struct_size = (uint32_t)sizeof desc,
                                   .n_nodes = m,
                                   .nodes = nodes,
                                   .n_bindings = pp->n_bindings};
        const bst_backend_api *api = &p->ctx->devices[pp->device].plugin->api;
        bsti_prog_clear_error();
        st = api->compile(p->ctx->devices[pp->device].handle, &desc, &pp->executable);
        if (st != BST_OK || !pp->executable) {
            pp->executable = NULL;
            st = bsti_prog_backend_error(p, pp->device, st ? st : BST_ERR_BACKEND,
                                         "partition %u (%u nodes): compile", pi, m);
        }
    }
    free(s);
    free(nodes);
    free(b.of_buffer);
    return st;
}

bst_status bsti_prog_compile(bst_program *p)
{
    for (uint32_t pi = 0; pi < p->parts.n_parts; pi++) {
        bst_status st = compile_part(p, pi);
        if (st != BST_OK)
            return st;
    }
    return bsti_prog_events_create(p);
}

void bsti_prog_free_executables(bst_program *p)
{
    if (!p->pparts)
        return;
    bsti_prog_profile_free(p);
    bsti_prog_events_destroy(p);
    for (uint32_t pi = 0; pi < p->parts.n_parts; pi++) {
        bsti_prog_part *pp = &p->pparts[pi];
        if (pp->executable) {
            const bsti_device *dev = &p->ctx->devices[pp->device];
            dev->plugin->api.executable_free(dev->handle, pp->executable);
        }
        pp->executable = NULL;
        free(pp->bindings);
        free(pp->transfers);
        pp->bindings = NULL;
        pp->transfers = NULL;
    }
}

/* --- run --- */

static bst_status resolve_params(const bst_program *p, const bst_run_params *in,
                                 bst_run_params *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = (uint32_t)sizeof *out;
    out->n_tokens = p->sym_bound[BST_SYM_N_TOKENS];
    out->n_kv = p->sym_bound[BST_SYM_N_KV];
    out->pos = 0;
    if (!in)
        return BST_OK;
    if (!BST_HAS_FIELD(in, bst_run_params, pos))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_run: params struct_size %u is too "
                         "small (need %zu)",
                         in->struct_size, offsetof(bst_run_params, pos) + sizeof in->pos);
    static const char *const names[BST_SYM_COUNT] = {"", "n_tokens", "n_kv"};
    const int64_t given[BST_SYM_COUNT] = {0, in->n_tokens, in->n_kv};
    for (uint32_t s = BST_SYM_N_TOKENS; s < BST_SYM_COUNT; s++) {
        int64_t bound = p->sym_bound[s];
        if (bound > 0 && (given[s] < 1 || given[s] > bound))
            return bsti_fail(BST_ERR_INVALID_ARG,
                             "bst_program_run: %s = %lld is outside [1, %lld], the bound the "
                             "program was compiled for",
                             names[s], (long long)given[s], (long long)bound);
    }
    if (in->pos < 0)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_run: pos = %lld is negative",
                         (long long)in->pos);
    out->n_tokens = in->n_tokens;
    out->n_kv = in->n_kv;
    out->pos = in->pos;
    return BST_OK;
}

static bst_status run_partitions(bst_program *p, const bst_run_params *params);

bst_status bsti_prog_run_once(bst_program *p, const bst_run_params *params)
{
    bst_status st = run_partitions(p, params);
    /* Nothing is left running when the caller gets control back, failed run or not. */
    bst_status waited = bsti_prog_wait_all(p);
    return st != BST_OK ? st : waited;
}

static bst_status run_partitions(bst_program *p, const bst_run_params *params)
{
    bst_run_params rp;
    bst_status st = resolve_params(p, params, &rp);
    if (st != BST_OK)
        return st;
    const bool prof = bsti_prog_profiling(p);
    if (prof)
        bsti_prog_profile_begin_run(p, &rp);
    for (uint32_t pi = 0; pi < p->parts.n_parts; pi++) {
        bsti_prog_part *pp = &p->pparts[pi];
        for (uint32_t t = 0; t < pp->n_transfers; t++) {
            uint64_t t0 = prof ? bsti_prog_profile_now_ns() : 0;
            const bsti_prog_transfer *x = &pp->transfers[t];
            const bsti_value_loc *src = bsti_memplan_find(&p->plan, x->root, x->src_device);
            const bsti_value_loc *dst = bsti_memplan_find(&p->plan, x->root, pp->device);
            if (!src || !dst)
                return bsti_fail(BST_ERR_INTERNAL, "program: copy of %%%u has no location",
                                 x->root);
            st = bsti_prog_wait_device(p, x->src_device);
            if (st == BST_OK)
                st = bsti_prog_wait_device(p, pp->device);
            if (st == BST_OK)
                st = bsti_prog_copy(p, x->src_device, src, pp->device, dst, src->size);
            if (st != BST_OK)
                return bsti_fail_context(st, "partition %u", pi);
            if (prof)
                bsti_prog_profile_copy(p, pi, x->src_device, src->size, t0);
        }
        if (!pp->executable)
            continue;
        if (prof) {
            st = bsti_prog_profile_execute(p, pi);
            if (st != BST_OK)
                return st;
            continue;
        }
        st = bsti_prog_execute(p, pi, &rp);
        if (st != BST_OK)
            return st;
    }
    return BST_OK;
}

/* --- inputs and outputs --- */

static bst_status check_size(const bst_program *p, uint32_t v, const char *kind,
                             const char *name, uint64_t given)
{
    uint64_t bytes;
    bst_status st = bsti_type_nbytes(&p->g->nodes[v].type, &bytes);
    if (st != BST_OK)
        return st;
    if (bytes != given) {
        char type[160];
        bsti_type_format(&p->g->nodes[v].type, type, sizeof type);
        return bsti_fail(BST_ERR_INVALID_ARG, "%s \"%s\" is %s: expected %llu bytes, given %llu",
                         kind, name, type, (unsigned long long)bytes,
                         (unsigned long long)given);
    }
    return BST_OK;
}

static uint32_t find_input(const bst_program *p, const char *name)
{
    for (uint32_t i = 0; i < p->g->n_nodes; i++) {
        const bsti_node *n = &p->g->nodes[i];
        if (n->op == BST_OP_INPUT && n->name && strcmp(n->name, name) == 0)
            return i;
    }
    return BSTI_NONE;
}

bst_status bsti_prog_write_input(bst_program *p, uint32_t v, const char *name, const void *data,
                                 uint64_t size)
{
    for (uint32_t d = 0; d < p->ctx->n_devices; d++) {
        const bsti_value_loc *loc = bsti_memplan_find(&p->plan, v, d);
        if (!loc)
            continue;
        const bsti_device *dev = &p->ctx->devices[d];
        bsti_prog_clear_error();
        bst_status st = dev->plugin->api.buffer_write(dev->handle, bsti_prog_loc_buffer(p, loc),
                                                      loc->offset, data, size);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, d, st, "writing input \"%s\"", name);
    }
    return BST_OK;
}

bst_status bst_program_set_input(bst_program *program, const char *name, const void *data,
                                 uint64_t size)
{
    if (!program || !name || (!data && size > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_set_input: NULL argument");
    bst_program *p = program;
    uint32_t v = find_input(p, name);
    if (v == BSTI_NONE)
        return bsti_fail(BST_ERR_NOT_FOUND, "bst_program_set_input: the program has no input "
                         "called \"%s\"", name);
    bst_status st = check_size(p, v, "input", name, size);
    if (st != BST_OK)
        return st;
    return bsti_prog_set_input_replacing(p, v, name, data, size);
}

bst_status bsti_program_set_input_prefix(bst_program *program, const char *name,
                                         const void *data, uint64_t size)
{
    if (!program || !name || (!data && size > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_program_set_input_prefix: NULL argument");
    bst_program *p = program;
    uint32_t v = find_input(p, name);
    if (v == BSTI_NONE)
        return bsti_fail(BST_ERR_NOT_FOUND, "the program has no input called \"%s\"", name);
    uint64_t bytes;
    bst_status st = bsti_type_nbytes(&p->g->nodes[v].type, &bytes);
    if (st != BST_OK)
        return st;
    if (size > bytes)
        return bsti_fail(BST_ERR_INVALID_ARG, "input \"%s\" holds %llu bytes; %llu given", name,
                         (unsigned long long)bytes, (unsigned long long)size);
    return size ? bsti_prog_set_input_replacing(p, v, name, data, size) : BST_OK;
}

/* Copies a strided tensor at `src` (its first byte) into contiguous `dst`. */
static void gather(const bsti_type *t, const uint8_t *src, uint8_t *dst)
{
    uint32_t bs = bst_dtype_block_size(t->dtype), bb = bst_dtype_block_bytes(t->dtype);
    uint32_t r = t->rank;
    if (r == 0) {
        memcpy(dst, src, bb);
        return;
    }
    int64_t units[BST_MAX_DIMS], idx[BST_MAX_DIMS] = {0};
    for (uint32_t i = 0; i < r; i++) {
        units[i] = i + 1 == r ? t->shape[i] / bs : t->shape[i];
        if (units[i] <= 0)
            return;
    }
    for (;;) {
        uint64_t base = 0;
        for (uint32_t i = 0; i + 1 < r; i++)
            base += (uint64_t)idx[i] * (uint64_t)t->strides[i];
        for (int64_t k = 0; k < units[r - 1]; k++) {
            memcpy(dst, src + base + (uint64_t)k * (uint64_t)t->strides[r - 1], bb);
            dst += bb;
        }
        uint32_t i = r - 1;
        while (i-- > 0) {
            if (++idx[i] < units[i])
                break;
            idx[i] = 0;
        }
        if (i == UINT32_MAX)
            return;
    }
}

bst_status bst_program_get_output(bst_program *program, const char *name, void *dst,
                                  uint64_t size)
{
    if (!program || !name || (!dst && size > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_get_output: NULL argument");
    bst_program *p = program;
    uint32_t v = BSTI_NONE;
    for (uint32_t i = 0; i < p->g->n_nodes && v == BSTI_NONE; i++) {
        const bsti_node *n = &p->g->nodes[i];
        if ((n->flags & BSTI_NODE_OUTPUT) && n->name && strcmp(n->name, name) == 0)
            v = i;
    }
    if (v == BSTI_NONE)
        return bsti_fail(BST_ERR_NOT_FOUND, "bst_program_get_output: the program has no output "
                         "called \"%s\"", name);
    bst_status st = check_size(p, v, "output", name, size);
    if (st != BST_OK)
        return st;
    uint32_t d = p->holder[p->root[v]];
    const bsti_value_loc *loc = d != BSTI_NONE ? bsti_memplan_find(&p->plan, v, d) : NULL;
    if (!loc)
        return bsti_fail(BST_ERR_INTERNAL, "program: output \"%s\" has no memory", name);
    const bsti_device *dev = &p->ctx->devices[d];
    const bsti_type *t = &p->g->nodes[v].type;
    if (bsti_type_is_contiguous(t)) {
        bsti_prog_clear_error();
        st = dev->plugin->api.buffer_read(dev->handle, bsti_prog_loc_buffer(p, loc), loc->offset,
                                          dst, size);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, d, st, "reading output \"%s\"", name);
        return BST_OK;
    }
    if (loc->size > SIZE_MAX)
        return bsti_fail(BST_ERR_OVERFLOW, "output \"%s\" is too large for this host", name);
    uint8_t *tmp = malloc(loc->size ? (size_t)loc->size : 1);
    if (!tmp)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory reading output \"%s\"", name);
    bsti_prog_clear_error();
    st = dev->plugin->api.buffer_read(dev->handle, bsti_prog_loc_buffer(p, loc), loc->offset, tmp,
                                      loc->size);
    if (st == BST_OK)
        gather(t, tmp, dst);
    else
        st = bsti_prog_backend_error(p, d, st, "reading output \"%s\"", name);
    free(tmp);
    return st;
}

bst_status bsti_program_get_output_range(bst_program *program, const char *name, uint64_t offset,
                                         void *dst, uint64_t size)
{
    if (!program || !name || (!dst && size > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_program_get_output_range: NULL argument");
    bst_program *p = program;
    uint32_t v = BSTI_NONE;
    for (uint32_t i = 0; i < p->g->n_nodes && v == BSTI_NONE; i++) {
        const bsti_node *n = &p->g->nodes[i];
        if ((n->flags & BSTI_NODE_OUTPUT) && n->name && strcmp(n->name, name) == 0)
            v = i;
    }
    if (v == BSTI_NONE)
        return bsti_fail(BST_ERR_NOT_FOUND, "the program has no output called \"%s\"", name);
    const bsti_type *t = &p->g->nodes[v].type;
    uint64_t bytes;
    bst_status st = bsti_type_nbytes(t, &bytes);
    if (st != BST_OK)
        return st;
    if (!bsti_type_is_contiguous(t))
        return bsti_fail(BST_ERR_UNSUPPORTED, "output \"%s\" is not contiguous", name);
    if (offset > bytes || size > bytes - offset)
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "bytes [%llu, +%llu) are outside output \"%s\" (%llu bytes)",
                         (unsigned long long)offset, (unsigned long long)size, name,
                         (unsigned long long)bytes);
    uint32_t d = p->holder[p->root[v]];
    const bsti_value_loc *loc = d != BSTI_NONE ? bsti_memplan_find(&p->plan, v, d) : NULL;
    if (!loc)
        return bsti_fail(BST_ERR_INTERNAL, "program: output \"%s\" has no memory", name);
    if (size == 0)
        return BST_OK;
    const bsti_device *dev = &p->ctx->devices[d];
    bsti_prog_clear_error();
    st = dev->plugin->api.buffer_read(dev->handle, bsti_prog_loc_buffer(p, loc),
                                      loc->offset + offset, dst, size);
    if (st != BST_OK)
        return bsti_prog_backend_error(p, d, st, "reading output \"%s\"", name);
    return BST_OK;
}
