/*
 * runtime/program.c — turns a graph into a program for a context's devices: clone, verify,
 * infer shapes, lower what no backend runs whole, place every node, partition, plan memory,
 * allocate and fill device buffers, compile each partition (program_mem.c and program_run.c do
 * the last three). Also destroy and describe. bst_program_create itself is in program_replace.c:
 * it calls bsti_prog_build again without a device that failed (placement skips p->excluded).
 *
 * Placement is the static priority rule, used before any tuning data exists: a compute node goes
 * to the first device, in the context's priority order, whose backend's query offers at least
 * one kernel variant, and takes variant 0. Alias ops (view, reshape, permute, transpose) compute
 * nothing; they take the device of their first consumer so they never split a run, or their
 * base's device when nothing consumes them. Backends never see them: their effect is folded
 * into the descriptors of the nodes that read them.
 */
#include "runtime/program_internal.h"
#include "runtime/tune.h"

#include "graph/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARIANTS 16

bool bsti_prog_is_alias_op(bst_op op)
{
    const bsti_op_info *info = bsti_op_get(op);
    return info && info->is_alias;
}

static bool is_source_op(bst_op op)
{
    const bsti_op_info *info = bsti_op_get(op);
    return info && info->is_source;
}

static const char *op_name(bst_op op)
{
    const char *s = bst_op_name(op);
    return s ? s : "?";
}

const char *bsti_prog_device_label(const bst_context *ctx, uint32_t d, char *buf, size_t cap)
{
    if (!ctx || d >= ctx->n_devices) {
        snprintf(buf, cap, "device %u", d);
        return buf;
    }
    const bsti_device *dev = &ctx->devices[d];
    snprintf(buf, cap, "%s/%s", dev->plugin && dev->plugin->name ? dev->plugin->name : "?",
             dev->info.name);
    return buf;
}

/* Called before every backend call (several per decode step): formatting an empty message
 * costs ~1000 instructions, so an already empty one is left alone. */
void bsti_prog_clear_error(void)
{
    if (bst_last_error()[0] != '\0')
        (void)bsti_fail(BST_OK, "%s", "");
}

bst_status bsti_prog_backend_error(bst_program *p, uint32_t d, bst_status st,
                                   const char *fmt, ...)
{
    p->failed_device = d;
    if (st <= BST_OK || st >= BST_STATUS_COUNT) {
        (void)bsti_fail(BST_ERR_BACKEND, "backend returned invalid status %d", (int)st);
        st = BST_ERR_BACKEND;
    } else if (bst_last_error()[0] == '\0') {
        (void)bsti_fail(st, "%s (the backend gave no message)", bst_status_name(st));
    }
    char what[256], label[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return bsti_fail_context(st, "%s: %s", bsti_prog_device_label(p->ctx, d, label, sizeof label),
                             what);
}

void bsti_prog_fill_desc(const bst_graph *g, uint32_t id, bsti_desc_storage *s)
{
    const bsti_node *n = &g->nodes[id];
    memset(s, 0, sizeof *s);
    uint32_t n_in = n->n_inputs <= BST_MAX_INPUTS ? n->n_inputs : BST_MAX_INPUTS;
    for (uint32_t i = 0; i < n_in; i++) {
        bsti_type_to_desc(&g->nodes[n->inputs[i]].type, &s->in[i]);
        s->in[i].struct_size = (uint32_t)sizeof s->in[i];
        s->in[i].layout = BST_LAYOUT_NATIVE;
        s->in[i].binding = 0;
        s->in[i].offset = 0;
        s->in_ptr[i] = &s->in[i];
    }
    bsti_type_to_desc(&n->type, &s->out);
    s->out.struct_size = (uint32_t)sizeof s->out;
    s->out.layout = BST_LAYOUT_NATIVE;
    s->out.binding = 0;
    s->out.offset = 0;
    uint32_t n_attrs = n->n_attrs <= BST_MAX_ATTRS ? n->n_attrs : BST_MAX_ATTRS;
    for (uint32_t i = 0; i < n_attrs; i++) {
        s->attrs[i] = n->attrs[i];
        s->attrs[i].struct_size = (uint32_t)sizeof s->attrs[i];
        s->attr_ptr[i] = &s->attrs[i];
    }
    s->node.struct_size = (uint32_t)sizeof s->node;
    s->node.op = (uint32_t)n->op;
    s->node.n_inputs = n_in;
    s->node.n_attrs = n_attrs;
    s->node.inputs = s->in_ptr;
    s->node.output = &s->out;
    s->node.attrs = s->attr_ptr;
    s->node.variant = 0;
}

/* Asks device d's backend for kernels of node `id`. Returns the variant count (0: unsupported)
 * and the first variant's name; a failing device or query counts as unsupported, with `why`. */
static uint32_t query_device(bst_context *ctx, const bst_graph *g, uint32_t id, uint32_t d,
                             char out_name[48], const char **why)
{
    void *handle = NULL;
    *why = "not supported";
    if (bsti_device_get(ctx, d, &handle) != BST_OK || !handle) {
        *why = "device did not start";
        return 0;
    }
    const bst_backend_api *api = &ctx->devices[d].plugin->api;
    if (!api->query) {
        *why = "backend has no query";
        return 0;
    }
    bsti_desc_storage s;
    bsti_prog_fill_desc(g, id, &s);
    bst_kernel_variant vars[MAX_VARIANTS];
    memset(vars, 0, sizeof vars);
    for (uint32_t i = 0; i < MAX_VARIANTS; i++)
        vars[i].struct_size = (uint32_t)sizeof vars[i];
    uint32_t count = 0;
    bst_status st = api->query(handle, &s.node, vars, sizeof vars[0], MAX_VARIANTS, &count);
    if (st != BST_OK) {
        bsti_log(BST_LOG_DEBUG, "query of %%%u (%s) on %s failed: %s", id, op_name(g->nodes[id].op),
                 ctx->devices[d].info.name, bst_last_error());
        *why = "query failed";
        return 0;
    }
    if (count > 0 && out_name) {
        memcpy(out_name, vars[0].name, 48);
        out_name[47] = '\0';
    }
    return count;
}

static bool is_excluded(const bst_program *p, uint32_t d)
{
    return p->excluded && p->excluded[d];
}

/* Keeps every node but *user (lowering one node alone). */
static bool keep_all_but(void *user, const bst_graph *g, uint32_t id)
{
    (void)g;
    return id != *(const uint32_t *)user;
}

/* Lowering node `id` alone, on a copy: true when device d accepts every compute node its
 * lowering makes. The lowered parts sit at ids [id, id + added] of the copy (lowering rebuilds
 * the graph in order, one node for each kept one). */
static bool accepts_lowered(bst_context *ctx, const bst_graph *g, uint32_t id, uint32_t d,
                            bst_graph **lowered)
{
    if (!*lowered) {
        bst_graph *copy = NULL;
        uint32_t target = id;
        if (bsti_graph_clone(g, &copy) != BST_OK)
            return false;
        if (bsti_pass_lower(copy, keep_all_but, &target) != BST_OK) {
            bst_graph_destroy(copy);
            return false;
        }
        *lowered = copy;
    }
    const bst_graph *lg = *lowered;
    if (lg->n_nodes < g->n_nodes)
        return false;
    uint32_t last = id + (lg->n_nodes - g->n_nodes);
    for (uint32_t part = id; part <= last; part++) {
        const char *why;
        bst_op op = lg->nodes[part].op;
        if (is_source_op(op) || bsti_prog_is_alias_op(op))
            continue;
        if (query_device(ctx, lg, part, d, NULL, &why) == 0)
            return false;
    }
    return true;
}

/* Lowering's keep callback. Tuned plans keep a high-level node whole when some device has a
 * fused kernel for it: per-node tuning then chooses among the fused candidates, and the
 * whole-graph check's "lowered" plan (every high-level node lowered) prices the alternative.
 * The lowered plan keeps nothing. The static rule (tune off, or the static plan) keeps it whole
 * only when the device static priority would choose for it fuses it: the first device, in
 * priority order, that accepts the fused node or every one of its lowered parts. A device in
 * front without a fused kernel thus runs the parts itself, rather than the node moving to a
 * later device with transfers both ways. */
static bool keep_if_fused(void *user, const bst_graph *g, uint32_t id)
{
    const bst_program *p = user;
    bst_context *ctx = p->ctx;
    uint32_t kind = bsti_tune_plan_kind();
    if (ctx->tune_mode != BST_TUNE_OFF && kind == BSTI_PLAN_LOWERED)
        return false;
    bool static_rule = ctx->tune_mode == BST_TUNE_OFF || kind == BSTI_PLAN_STATIC;
    bst_graph *lowered = NULL;
    bool keep = false;
    for (uint32_t d = 0; d < ctx->n_devices; d++) {
        const char *why;
        if (is_excluded(p, d))
            continue;
        /* Tuned placement does not consider emulated devices (tune.h): their fused kernels
         * are no reason to keep a node whole. */
        if (!static_rule && bsti_tune_device_emulated(ctx, d) && !bsti_tune_include_emulated())
            continue;
        if (query_device(ctx, g, id, d, NULL, &why) > 0) {
            keep = true;
            break;
        }
        if (static_rule && accepts_lowered(ctx, g, id, d, &lowered))
            break; /* lowered here */
    }
    bst_graph_destroy(lowered);
    return keep;
}

static bst_status fail_unsupported(bst_program *p, uint32_t id, const char *const *why)
{
    const bsti_node *n = &p->g->nodes[id];
    char type[160], tried[1024], label[200];
    size_t len = 0;
    tried[0] = '\0';
    for (uint32_t d = 0; d < p->ctx->n_devices && len < sizeof tried; d++) {
        int k = snprintf(tried + len, sizeof tried - len, "%s%s: %s", d ? "; " : "",
                         bsti_prog_device_label(p->ctx, d, label, sizeof label), why[d]);
        len += k > 0 ? (size_t)k : 0;
    }
    bsti_type_format(&n->type, type, sizeof type);
    if (p->ctx->n_devices == 0)
        return bsti_fail(BST_ERR_UNSUPPORTED,
                         "no backend can run %%%u %s %s: no backend is loaded (check "
                         "BASTION_BACKENDS / the backends option and `bastion backends`)",
                         id, op_name(n->op), type);
    return bsti_fail(BST_ERR_UNSUPPORTED, "no backend can run %%%u %s %s (tried %s)", id,
                     op_name(n->op), type, tried);
}

static bst_status place_nodes(bst_program *p)
{
    bst_graph *g = p->g;
    bst_context *ctx = p->ctx;
    const char **why = calloc(ctx->n_devices ? ctx->n_devices : 1, sizeof *why);
    uint32_t *first_consumer = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *first_consumer);
    if (!why || !first_consumer) {
        free(why);
        free(first_consumer);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "placement: out of memory");
    }
    bst_status st = BST_OK;
    for (uint32_t id = 0; id < g->n_nodes; id++)
        first_consumer[id] = BSTI_NONE;
    for (uint32_t id = 0; id < g->n_nodes && st == BST_OK; id++) {
        bsti_node *n = &g->nodes[id];
        for (uint32_t i = 0; i < n->n_inputs; i++)
            if (n->inputs[i] < id && first_consumer[n->inputs[i]] == BSTI_NONE)
                first_consumer[n->inputs[i]] = id;
        n->device = BSTI_NONE;
        n->variant = 0;
        if (is_source_op(n->op) || bsti_prog_is_alias_op(n->op))
            continue;
        bool tuned = false;
        if (ctx->tune_mode != BST_TUNE_OFF && (st = bsti_tune_place_node(p, id, &tuned)) != BST_OK)
            break;
        /* A device that failed this program is never chosen again, measured fastest or not. */
        if (tuned && n->device < ctx->n_devices && !is_excluded(p, n->device))
            continue;
        n->device = BSTI_NONE;
        n->variant = 0;
        for (uint32_t d = 0; d < ctx->n_devices; d++) {
            if (is_excluded(p, d)) {
                why[d] = "failed earlier, excluded";
                continue;
            }
            if (query_device(ctx, g, id, d, p->variant_names[id], &why[d]) > 0) {
                n->device = d;
                break;
            }
        }
        if (n->device == BSTI_NONE)
            st = fail_unsupported(p, id, why);
    }
    /* Aliases last, consumers before producers, so a chain of aliases inherits its end's device. */
    for (uint32_t id = g->n_nodes; id-- > 0 && st == BST_OK;) {
        bsti_node *n = &g->nodes[id];
        if (!bsti_prog_is_alias_op(n->op))
            continue;
        uint32_t c = first_consumer[id];
        if (c != BSTI_NONE)
            n->device = g->nodes[c].device;
        if (n->device == BSTI_NONE && p->root[id] != id)
            n->device = g->nodes[p->root[id]].device;
    }
    free(why);
    free(first_consumer);
    return st;
}

static bst_status compute_roots(bst_program *p)
{
    const bst_graph *g = p->g;
    for (uint32_t v = 0; v < g->n_nodes; v++) {
        const bsti_node *n = &g->nodes[v];
        uint32_t r = v;
        if (n->alias_of != BSTI_NONE && n->alias_of < v)
            r = p->root[n->alias_of];
        else if (n->alias_of != BSTI_NONE)
            return bsti_fail(BST_ERR_GRAPH, "value %%%u aliases %%%u, defined after it", v,
                             n->alias_of);
        else if (bsti_prog_is_alias_op(n->op) && n->n_inputs > 0 && n->inputs[0] < v)
            r = p->root[n->inputs[0]];
        p->root[v] = r;
        p->holder[v] = BSTI_NONE;
        for (uint32_t i = 0; i < n->type.rank && i < BST_MAX_DIMS; i++) {
            uint32_t s = n->type.sym[i];
            if (s > BST_SYM_NONE && s < BST_SYM_COUNT && n->type.shape[i] > p->sym_bound[s])
                p->sym_bound[s] = n->type.shape[i];
        }
    }
    return BST_OK;
}

static bst_status alloc_node_arrays(bst_program *p)
{
    size_t n = p->g->n_nodes ? p->g->n_nodes : 1;
    p->variant_names = calloc(n, sizeof *p->variant_names);
    p->generated = calloc(n, sizeof *p->generated);
    p->root = calloc(n, sizeof *p->root);
    p->holder = calloc(n, sizeof *p->holder);
    p->devs = calloc(p->ctx->n_devices ? p->ctx->n_devices : 1, sizeof *p->devs);
    if (!p->variant_names || !p->generated || !p->root || !p->holder || !p->devs)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory for %u nodes",
                         p->g->n_nodes);
    return BST_OK;
}

static bst_status plan(bst_program *p)
{
    bst_status st = bsti_partition_graph(p->g, &p->parts);
    if (st != BST_OK)
        return st;
    uint32_t nd = p->ctx->n_devices;
    uint64_t *max_alloc = calloc(nd ? nd : 1, sizeof *max_alloc);
    if (!max_alloc)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory");
    for (uint32_t d = 0; d < nd; d++)
        max_alloc[d] = p->ctx->devices[d].info.max_alloc_bytes;
    st = bsti_plan_memory(p->g, &p->parts, nd, max_alloc, &p->plan);
    free(max_alloc);
    if (st != BST_OK) {
        /* The planner knows devices by index; say which device each index is. */
        char names[512], label[200];
        size_t len = 0;
        names[0] = '\0';
        for (uint32_t d = 0; d < nd && len < sizeof names; d++) {
            int k = snprintf(names + len, sizeof names - len, "%s%u = %s", d ? ", " : "", d,
                             bsti_prog_device_label(p->ctx, d, label, sizeof label));
            len += k > 0 ? (size_t)k : 0;
        }
        return bsti_fail_context(st, "devices %s", names);
    }
    p->pparts = calloc(p->parts.n_parts ? p->parts.n_parts : 1, sizeof *p->pparts);
    if (!p->pparts)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "program: out of memory");
    for (uint32_t i = 0; i < p->parts.n_parts; i++)
        p->pparts[i].device = p->parts.parts[i].device;
    return BST_OK;
}

bst_status bsti_prog_build(bst_context *context, const bst_graph *graph, const bool *excluded,
                           bst_program **out_program, uint32_t *out_failed_device)
{
    *out_program = NULL;
    *out_failed_device = BSTI_NONE;
    bst_program *p = calloc(1, sizeof *p);
    if (!p)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_program_create: out of memory");
    p->ctx = context;
    p->failed_device = BSTI_NONE;
    p->excluded = calloc(context->n_devices ? context->n_devices : 1, sizeof *p->excluded);
    if (!p->excluded) {
        free(p);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_program_create: out of memory");
    }
    if (excluded)
        memcpy(p->excluded, excluded, context->n_devices * sizeof *p->excluded);
    bst_status st = bsti_graph_clone(graph, &p->source);
    if (st == BST_OK)
        st = bsti_graph_clone(graph, &p->g);
    if (st == BST_OK)
        st = bsti_pass_verify(p->g);
    if (st == BST_OK)
        st = bsti_pass_infer_shapes(p->g);
    if (st == BST_OK)
        st = bsti_pass_lower(p->g, keep_if_fused, p);
    /* Lowering repeats work (ffn_swiglu and attention both start with matmuls of one input);
     * CSE merges it, DCE drops what that leaves unused. */
    if (st == BST_OK)
        st = bsti_pass_cse(p->g);
    if (st == BST_OK)
        st = bsti_pass_dce(p->g);
    if (st == BST_OK)
        st = bsti_pass_verify(p->g);
    if (st == BST_OK)
        st = alloc_node_arrays(p);
    if (st == BST_OK)
        st = compute_roots(p);
    if (st == BST_OK)
        st = place_nodes(p);
    if (st == BST_OK)
        st = plan(p);
    if (st == BST_OK)
        st = bsti_prog_plan_transfers(p);
    if (st == BST_OK)
        st = bsti_prog_alloc_buffers(p);
    if (st == BST_OK)
        st = bsti_prog_compile(p);
    if (st != BST_OK) {
        *out_failed_device = p->failed_device;
        bst_program_destroy(p);
        return st;
    }
    *out_program = p;
    return BST_OK;
}

void bst_program_destroy(bst_program *program)
{
    if (!program)
        return;
    bst_program *p = program;
    bsti_prog_free_executables(p);
    bsti_prog_free_buffers(p);
    if (p->generated && p->g)
        for (uint32_t i = 0; i < p->g->n_nodes; i++)
            free(p->generated[i]);
    free(p->generated);
    free(p->pparts);
    bsti_memplan_free(&p->plan);
    bsti_partitioning_free(&p->parts);
    bsti_tune_report_free(p->tune);
    free(p->variant_names);
    free(p->root);
    free(p->holder);
    free(p->devs);
    free(p->staging);
    free(p->excluded);
    bst_graph_destroy(p->source);
    bst_graph_destroy(p->g);
    free(p);
}

/* A growable string for describe. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
    bool failed;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) BST_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->len + (size_t)n)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

bst_status bst_program_describe(const bst_program *program, char **out_text)
{
    if (out_text)
        *out_text = NULL;
    if (!program || !out_text)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_describe: NULL argument");
    const bst_program *p = program;
    strbuf b = {0};
    char type[160], label[200];
    for (uint32_t id = 0; id < p->g->n_nodes; id++) {
        const bsti_node *n = &p->g->nodes[id];
        if (is_source_op(n->op))
            continue;
        bsti_type_format(&n->type, type, sizeof type);
        if (n->device == BSTI_NONE) {
            sb_printf(&b, "%%%u %s %s -> (alias of a source, no device)\n", id, op_name(n->op),
                      type);
            continue;
        }
        bsti_prog_device_label(p->ctx, n->device, label, sizeof label);
        if (bsti_prog_is_alias_op(n->op))
            sb_printf(&b, "%%%u %s %s -> %s [alias]\n", id, op_name(n->op), type, label);
        else
            sb_printf(&b, "%%%u %s %s -> %s [%s]\n", id, op_name(n->op), type, label,
                      p->variant_names[id]);
    }
    for (uint32_t d = 0; d < p->ctx->n_devices; d++) {
        if (!p->devs[d].used)
            continue;
        uint64_t persistent = 0;
        for (uint32_t i = 0; i < p->plan.n_buffers; i++)
            if (p->plan.buffers[i].device == d)
                persistent += p->buffer_bytes ? p->buffer_bytes[i] : p->plan.buffers[i].size;
        sb_printf(&b, "device %s: arena %llu bytes, persistent %llu bytes\n",
                  bsti_prog_device_label(p->ctx, d, label, sizeof label),
                  (unsigned long long)p->plan.arena_bytes[d], (unsigned long long)persistent);
    }
    if (!b.s)
        sb_printf(&b, "%s", "");
    if (b.failed) {
        free(b.s);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_program_describe: out of memory");
    }
    *out_text = b.s;
    return BST_OK;
}
