/*
 * runtime/profile.c — program profiling (bst_program_set_profiling): timing each partition,
 * node and cross-device copy of a run and handing the records to the caller's callback.
 *
 * Why per-node executables: a backend compiles a partition as a whole and reports at most one
 * time for it (last_execute_ns), so the only honest way to time a node on its device is to run
 * it alone. At BST_PROFILE_NODES each node of each partition is compiled once more as a one-node
 * partition that uses the partition's own binding table (same buffers, offsets and layouts), so
 * executing them in order computes exactly what the partition executable computes. The costs
 * this adds (one execute per node, no fusion or overlap across nodes) are stated in bastion.h
 * and bench/SCHEMA.md; the default path of bst_program_run is untouched when profiling is off.
 *
 * BST_PROFILE_NODES_IN_RUN asks each partition's backend instead (node_timing / node_times,
 * ABI v3) to time its nodes inside the normal execute: no extra executables, and the times are
 * those of the run as it normally goes, fused and overlapped.
 */
#include "runtime/profile.h"

#include "graph/status.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct profile_part {
    uint32_t n;     /* compute nodes */
    uint32_t *ids;  /* node ids, execution order (the order compile gave the backend) */
    void **exes;    /* one-node executables (NODES level only) */
    bst_node_time *times; /* the last execute's node times (NODES_IN_RUN level only) */
} profile_part;

typedef struct bsti_prog_profile {
    bst_profile_level level;
    bst_profile_fn fn;
    void *user;
    char *label;
    uint64_t runs; /* profiled runs begun */
    profile_part *parts; /* parts.n_parts, NULL unless NODES */
    bst_run_params rp;   /* of the current run */
} bsti_prog_profile;

uint64_t bsti_prog_profile_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void free_parts(bst_program *p, bsti_prog_profile *pr)
{
    if (!pr->parts)
        return;
    for (uint32_t pi = 0; pi < p->parts.n_parts; pi++) {
        profile_part *q = &pr->parts[pi];
        const bsti_device *dev = &p->ctx->devices[p->pparts[pi].device];
        for (uint32_t k = 0; q->exes && k < q->n; k++)
            if (q->exes[k])
                dev->plugin->api.executable_free(dev->handle, q->exes[k]);
        free(q->exes);
        free(q->ids);
        free(q->times);
    }
    free(pr->parts);
    pr->parts = NULL;
}

static const bst_backend_api *part_api(const bst_program *p, uint32_t pi)
{
    return &p->ctx->devices[p->pparts[pi].device].plugin->api;
}

static void *part_device(const bst_program *p, uint32_t pi)
{
    return p->ctx->devices[p->pparts[pi].device].handle;
}

/* Turns node timing off in partitions [0, count)'s executables (NODES_IN_RUN). */
static void stop_node_timing(bst_program *p, uint32_t count)
{
    for (uint32_t pi = 0; pi < count; pi++) {
        const bst_backend_api *api = part_api(p, pi);
        if (p->pparts[pi].executable && api->node_timing &&
            api->node_timing(part_device(p, pi), p->pparts[pi].executable, 0) != BST_OK)
            bsti_log(BST_LOG_WARN, "profiling: backend %s could not turn node timing off in "
                     "partition %u", api->name, pi); /* it only costs the backend time */
    }
    bsti_prog_clear_error();
}

/* Turns node timing on in every partition's executable, or leaves it off everywhere and says
 * which backend cannot (NODES_IN_RUN). */
static bst_status start_node_timing(bst_program *p)
{
    for (uint32_t pi = 0; pi < p->parts.n_parts; pi++) {
        if (!p->pparts[pi].executable)
            continue; /* alias-only: nothing runs */
        const bst_backend_api *api = part_api(p, pi);
        bst_status st = BST_ERR_UNSUPPORTED;
        if (api->node_timing && api->node_times) {
            bsti_prog_clear_error();
            st = api->node_timing(part_device(p, pi), p->pparts[pi].executable, 1);
        }
        if (st != BST_OK) {
            stop_node_timing(p, pi);
            if (!api->node_timing || !api->node_times)
                return bsti_fail(BST_ERR_UNSUPPORTED,
                                 "profiling: backend %s (partition %u) cannot time nodes inside "
                                 "an execute; BST_PROFILE_NODES times them one by one",
                                 api->name, pi);
            return bsti_prog_backend_error(p, p->pparts[pi].device, st,
                                           "profiling: partition %u: node_timing", pi);
        }
    }
    return BST_OK;
}

void bsti_prog_profile_free(bst_program *p)
{
    if (!p->profile)
        return;
    if (p->profile->level == BST_PROFILE_NODES_IN_RUN)
        stop_node_timing(p, p->parts.n_parts);
    free_parts(p, p->profile);
    free(p->profile->label);
    free(p->profile);
    p->profile = NULL;
}

/* The binding the partition gave the buffer behind `value` (the executor numbers bindings per
 * partition; every buffer handle appears once in the table). */
static bst_status find_binding(const bst_program *p, uint32_t pi, uint32_t value,
                               bst_tensor_desc *desc)
{
    const bsti_prog_part *pp = &p->pparts[pi];
    const bsti_value_loc *loc = bsti_memplan_find(&p->plan, value, pp->device);
    if (!loc)
        return bsti_fail(BST_ERR_INTERNAL, "profile: value %%%u has no memory on device %u",
                         value, pp->device);
    void *buf = bsti_prog_loc_buffer(p, loc);
    for (uint32_t b = 0; b < pp->n_bindings; b++) {
        if (pp->bindings[b] != buf)
            continue;
        desc->binding = b;
        desc->offset = loc->offset;
        if (loc->kind == BSTI_LOC_PERSISTENT && p->plan.buffers[loc->buffer].value == value)
            desc->layout = p->buffer_layout[loc->buffer];
        return BST_OK;
    }
    return bsti_fail(BST_ERR_INTERNAL, "profile: value %%%u is not bound in partition %u", value,
                     pi);
}

static bst_status compile_node(bst_program *p, uint32_t pi, uint32_t id, void **out_exe)
{
    const bsti_node *n = &p->g->nodes[id];
    const bsti_prog_part *pp = &p->pparts[pi];
    bsti_desc_storage s;
    bsti_prog_fill_desc(p->g, id, &s);
    bst_status st = BST_OK;
    for (uint32_t i = 0; i < s.node.n_inputs && st == BST_OK; i++)
        st = find_binding(p, pi, n->inputs[i], &s.in[i]);
    if (st == BST_OK)
        st = find_binding(p, pi, id, &s.out);
    if (st != BST_OK)
        return st;
    s.node.variant = n->variant;
    const bst_node_desc *nodes[1] = {&s.node};
    bst_partition_desc desc = {.struct_size = (uint32_t)sizeof desc,
                               .n_nodes = 1,
                               .nodes = nodes,
                               .n_bindings = pp->n_bindings};
    const bsti_device *dev = &p->ctx->devices[pp->device];
    bsti_prog_clear_error();
    st = dev->plugin->api.compile(dev->handle, &desc, out_exe);
    if (st != BST_OK || !*out_exe) {
        *out_exe = NULL;
        return bsti_prog_backend_error(p, pp->device, st ? st : BST_ERR_BACKEND,
                                       "profiling: compile of node %%%u (%s) alone", id,
                                       bst_op_name(n->op));
    }
    return BST_OK;
}

/* The compute nodes of every partition and, for NODES, their one-node executables (for
 * NODES_IN_RUN, room for their times). */
static bst_status build_parts(bst_program *p, bst_profile_level level, profile_part **out)
{
    const bool compile = level == BST_PROFILE_NODES, times = level == BST_PROFILE_NODES_IN_RUN;
    uint32_t np = p->parts.n_parts;
    profile_part *parts = calloc(np ? np : 1, sizeof *parts);
    if (!parts)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "profile: out of memory");
    bsti_prog_profile tmp = {.parts = parts};
    bst_status st = BST_OK;
    for (uint32_t pi = 0; pi < np && st == BST_OK; pi++) {
        const bsti_partition *part = &p->parts.parts[pi];
        profile_part *q = &parts[pi];
        if (!p->pparts[pi].executable)
            continue; /* alias-only: nothing runs */
        q->ids = calloc(part->n_nodes ? part->n_nodes : 1, sizeof *q->ids);
        q->exes = compile ? calloc(part->n_nodes ? part->n_nodes : 1, sizeof *q->exes) : NULL;
        q->times = times ? calloc(part->n_nodes ? part->n_nodes : 1, sizeof *q->times) : NULL;
        if (!q->ids || (compile && !q->exes) || (times && !q->times)) {
            st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "profile: out of memory");
            break;
        }
        for (uint32_t k = 0; k < part->n_nodes && st == BST_OK; k++) {
            uint32_t id = part->nodes[k];
            if (bsti_prog_is_alias_op(p->g->nodes[id].op))
                continue;
            if (compile)
                st = compile_node(p, pi, id, &q->exes[q->n]);
            q->ids[q->n++] = id;
        }
    }
    if (st != BST_OK) {
        free_parts(p, &tmp);
        return st;
    }
    *out = parts;
    return BST_OK;
}

bst_status bst_program_set_profiling(bst_program *program, bst_profile_level level,
                                     const char *label, bst_profile_fn fn, void *user)
{
    if (!program)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_set_profiling: NULL program");
    bst_program *p = program;
    if (level == BST_PROFILE_OFF) {
        bsti_prog_profile_free(p);
        return BST_OK;
    }
    if (level != BST_PROFILE_PARTITIONS && level != BST_PROFILE_NODES &&
        level != BST_PROFILE_NODES_IN_RUN)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_set_profiling: unknown level %d",
                         (int)level);
    if (!fn)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_set_profiling: NULL callback");
    bsti_prog_profile *pr = calloc(1, sizeof *pr);
    char *lab = strdup(label ? label : "");
    bst_status st = pr && lab ? BST_OK
                              : bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_program_set_profiling: "
                                          "out of memory");
    bool reuse = p->profile && p->profile->parts && p->profile->level == BST_PROFILE_NODES &&
                 level == BST_PROFILE_NODES;
    if (st == BST_OK && reuse) {
        pr->parts = p->profile->parts; /* keep the one-node executables already compiled */
        p->profile->parts = NULL;
    } else if (st == BST_OK) {
        st = build_parts(p, level, &pr->parts);
    }
    /* Node timing already on from an earlier NODES_IN_RUN setting stays on: the old setting,
     * freed below, must then not turn it off. */
    const bool timing_on = p->profile && p->profile->level == BST_PROFILE_NODES_IN_RUN;
    if (st == BST_OK && level == BST_PROFILE_NODES_IN_RUN && !timing_on)
        st = start_node_timing(p);
    if (st != BST_OK) {
        if (pr)
            free_parts(p, pr);
        free(pr);
        free(lab);
        return st;
    }
    if (timing_on && level == BST_PROFILE_NODES_IN_RUN)
        p->profile->level = BST_PROFILE_PARTITIONS; /* hands the timing over to pr */
    pr->level = level;
    pr->fn = fn;
    pr->user = user;
    pr->label = lab;
    pr->runs = p->profile ? p->profile->runs : 0;
    bsti_prog_profile_free(p);
    p->profile = pr;
    return BST_OK;
}

/* --- records --- */

/* Bytes of a tensor of type t at the run's extents of its symbolic dims. */
static uint64_t extent_bytes(const bsti_type *t, const bst_run_params *rp)
{
    uint64_t elems = 1;
    for (uint32_t i = 0; i < t->rank; i++) {
        int64_t e = t->shape[i];
        if (t->sym[i] == BST_SYM_N_TOKENS && rp->n_tokens < e)
            e = rp->n_tokens;
        else if (t->sym[i] == BST_SYM_N_KV && rp->n_kv < e)
            e = rp->n_kv;
        elems *= (uint64_t)(e > 0 ? e : 0); /* graphs bound every size by 2^62 */
    }
    uint32_t bs = bst_dtype_block_size(t->dtype), bb = bst_dtype_block_bytes(t->dtype);
    return bs ? elems / bs * bb : 0;
}

static uint64_t node_bytes(const bst_graph *g, uint32_t id, const bst_run_params *rp)
{
    const bsti_node *n = &g->nodes[id];
    if (n->op == BST_OP_SET_ROWS && n->n_inputs == 3) {
        /* Reads src and ids; writes their rows of dst in dst's dtype. */
        const bsti_type *src = &g->nodes[n->inputs[1]].type;
        uint64_t read = extent_bytes(src, rp) + extent_bytes(&g->nodes[n->inputs[2]].type, rp);
        uint64_t rows = 1;
        for (uint32_t i = 0; i + 1 < src->rank; i++) {
            int64_t e = src->shape[i];
            if (src->sym[i] == BST_SYM_N_TOKENS && rp->n_tokens < e)
                e = rp->n_tokens;
            rows *= (uint64_t)(e > 0 ? e : 0);
        }
        const bsti_type *dst = &g->nodes[n->inputs[0]].type;
        uint64_t cols = src->rank ? (uint64_t)src->shape[src->rank - 1] : 1;
        uint32_t bs = bst_dtype_block_size(dst->dtype), bb = bst_dtype_block_bytes(dst->dtype);
        return read + (bs ? rows * (cols / bs) * bb : 0);
    }
    uint64_t total = extent_bytes(&n->type, rp);
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        const bsti_type *t = &g->nodes[n->inputs[i]].type;
        if (n->op == BST_OP_GET_ROWS && i == 0)
            continue; /* the gathered rows: the output's size in the table's dtype, below */
        total += extent_bytes(t, rp);
    }
    if (n->op == BST_OP_GET_ROWS && n->n_inputs >= 1) {
        const bsti_type *table = &g->nodes[n->inputs[0]].type;
        uint64_t rows = extent_bytes(&g->nodes[n->inputs[1]].type, rp) / 4u; /* i32 ids */
        if (table->rank >= 1 && table->shape[0] > 0)
            total += rows * (extent_bytes(table, rp) / (uint64_t)table->shape[0]);
    }
    return total;
}

static void init_record(const bst_program *p, uint32_t pi, bst_profile_record *r)
{
    const bsti_prog_profile *pr = p->profile;
    uint32_t d = p->pparts[pi].device;
    memset(r, 0, sizeof *r);
    r->struct_size = (uint32_t)sizeof *r;
    r->partition = pi;
    r->node = UINT32_MAX;
    r->device = r->src_device = d;
    r->backend = p->ctx->devices[d].plugin->name;
    r->variant = "";
    r->label = pr->label;
    r->run = pr->runs - 1;
    r->n_tokens = pr->rp.n_tokens;
    r->n_kv = pr->rp.n_kv;
}

void bsti_prog_profile_begin_run(bst_program *p, const bst_run_params *rp)
{
    p->profile->rp = *rp;
    p->profile->runs++;
}

void bsti_prog_profile_copy(bst_program *p, uint32_t pi, uint32_t src_device, uint64_t bytes,
                            uint64_t start_ns)
{
    uint64_t end = bsti_prog_profile_now_ns();
    bst_profile_record r;
    init_record(p, pi, &r);
    r.kind = BST_PROFILE_COPY;
    r.src_device = src_device;
    r.name = "copy";
    r.start_ns = start_ns;
    r.wall_ns = end - start_ns;
    r.bytes = bytes;
    p->profile->fn(p->profile->user, &r);
}

/* Executes one executable, timed; device_ns 0 when the backend reports no time. */
static bst_status timed_execute(bst_program *p, uint32_t pi, void *exe, uint64_t *out_start,
                                uint64_t *out_wall, uint64_t *out_device)
{
    const bsti_prog_part *pp = &p->pparts[pi];
    const bsti_device *dev = &p->ctx->devices[pp->device];
    const bst_backend_api *api = &dev->plugin->api;
    bsti_prog_clear_error();
    uint64_t t0 = bsti_prog_profile_now_ns();
    bst_status st = api->execute(dev->handle, exe, pp->bindings, pp->n_bindings,
                                 &p->profile->rp);
    uint64_t t1 = bsti_prog_profile_now_ns();
    *out_start = t0;
    *out_wall = t1 - t0;
    *out_device = 0;
    if (st == BST_OK && api->last_execute_ns) {
        uint64_t ns = 0;
        if (api->last_execute_ns(dev->handle, exe, &ns) == BST_OK)
            *out_device = ns;
        bsti_prog_clear_error(); /* a missing device time is not a failure of the run */
    }
    return st;
}

/* A NODE record for node k of partition pi, its times still to fill in. */
static void node_record(const bst_program *p, uint32_t pi, uint32_t k, bst_profile_record *r)
{
    const uint32_t id = p->profile->parts[pi].ids[k];
    const bsti_node *n = &p->g->nodes[id];
    init_record(p, pi, r);
    r->kind = BST_PROFILE_NODE;
    r->node = id;
    r->op = (uint32_t)n->op;
    r->n_nodes = 1;
    r->name = bst_op_name(n->op);
    r->variant = p->variant_names[id];
    r->bytes = node_bytes(p->g, id, &p->profile->rp);
}

/* NODES_IN_RUN: the NODE records of partition pi's execute that has just run (`part`). */
static bst_status report_node_times(bst_program *p, uint32_t pi, const bst_profile_record *part)
{
    const bsti_prog_profile *pr = p->profile;
    const profile_part *q = &pr->parts[pi];
    uint32_t count = 0;
    bsti_prog_clear_error();
    bst_status st = part_api(p, pi)->node_times(part_device(p, pi), p->pparts[pi].executable,
                                                q->times, q->n, &count);
    if (st != BST_OK)
        return bsti_prog_backend_error(p, p->pparts[pi].device, st,
                                       "partition %u: node_times", pi);
    if (count != q->n)
        return bsti_prog_backend_error(p, p->pparts[pi].device, BST_ERR_BACKEND,
                                       "partition %u: node_times reported %u nodes of %u", pi,
                                       count, q->n);
    for (uint32_t k = 0; k < q->n; k++) {
        bst_profile_record r;
        node_record(p, pi, k, &r);
        r.start_ns = part->start_ns + q->times[k].start_ns;
        r.wall_ns = r.device_ns = q->times[k].ns;
        pr->fn(pr->user, &r);
    }
    return BST_OK;
}

bst_status bsti_prog_profile_execute(bst_program *p, uint32_t pi)
{
    bsti_prog_profile *pr = p->profile;
    const profile_part *q = &pr->parts[pi];
    bst_profile_record part;
    init_record(p, pi, &part);
    part.kind = BST_PROFILE_PARTITION;
    part.name = "partition";
    part.n_nodes = q->n;
    for (uint32_t k = 0; k < q->n; k++)
        part.bytes += node_bytes(p->g, q->ids[k], &pr->rp);
    if (pr->level != BST_PROFILE_NODES || !q->exes) {
        bst_status st = timed_execute(p, pi, p->pparts[pi].executable, &part.start_ns,
                                      &part.wall_ns, &part.device_ns);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, p->pparts[pi].device, st,
                                           "partition %u: execute", pi);
        if (pr->level == BST_PROFILE_NODES_IN_RUN && q->times &&
            (st = report_node_times(p, pi, &part)) != BST_OK)
            return st;
        pr->fn(pr->user, &part);
        return BST_OK;
    }
    bool all_device = true;
    for (uint32_t k = 0; k < q->n; k++) {
        bst_profile_record r;
        node_record(p, pi, k, &r);
        bst_status st = timed_execute(p, pi, q->exes[k], &r.start_ns, &r.wall_ns, &r.device_ns);
        if (st != BST_OK)
            return bsti_prog_backend_error(p, p->pparts[pi].device, st,
                                           "partition %u: execute of node %%%u (%s, profiled "
                                           "alone)", pi, r.node, r.name);
        if (k == 0)
            part.start_ns = r.start_ns;
        part.wall_ns = r.start_ns + r.wall_ns - part.start_ns;
        part.device_ns += r.device_ns;
        all_device = all_device && r.device_ns > 0;
        pr->fn(pr->user, &r);
    }
    if (!all_device)
        part.device_ns = 0;
    pr->fn(pr->user, &part);
    return BST_OK;
}

bool bsti_prog_profiling(const bst_program *p)
{
    return p->profile && p->profile->level != BST_PROFILE_OFF;
}
