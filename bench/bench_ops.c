/*
 * bench/bench_ops.c — times every case on every device and kernel variant, at the plugin ABI:
 * one node compiled as one partition, its tensors in device buffers, execute timed by wall clock
 * (launch and synchronization included, as the model pays them), and by the backend's own clock
 * (last_execute_ns) when it keeps one: a device's timestamps, or a simulated device's modelled
 * time, which has nothing to do with the host time the simulation takes.
 *
 * Why the ABI and not bst_program: a program places each node on one backend and one kernel
 * variant; a benchmark must run the same node on every device and every variant side by side.
 *
 * As the model will run: a weight is read cache-cold, by rotating through copies that together
 * hold four times the last-level cache (each copy in its own host memory too, because a device
 * with unified memory may use the host data in place). Each case is held to a time budget; a case
 * that would take longer than the budget for a single call — estimated first from a smaller
 * probe of the same op, dtype, device and variant — is skipped with the estimate as the reason,
 * as is a case the device cannot hold (over max_alloc, max_binding or half its memory).
 */
#define BST_EXPERIMENTAL_DEVICE_API 1
#include "bench.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARIANTS 16
#define N_BIND (BST_MAX_INPUTS + 1)

typedef struct device_ref {
    uint32_t index;
    const char *backend;
    bst_device_info info;
    const bst_backend_api *api; /* NULL when the device did not start */
    void *dev;
    char open_error[256];
} device_ref;

/* Everything one timed variant owns; freed by release(). */
typedef struct run_state {
    const device_ref *d;
    const bench_geometry *g;
    bst_node_desc node;
    bst_tensor_desc in[BST_MAX_INPUTS];
    const bst_tensor_desc *in_ptr[BST_MAX_INPUTS];
    const bst_attr *attr_ptr[BST_MAX_ATTRS];
    void *exe;
    void *buf[N_BIND];
    uint32_t copies;
    void **wbuf;        /* weight copies on the device: copy k of weight j at k * n_weights + j */
    uint8_t **whost;    /* their host data, kept while the device may point at it */
    bst_run_params params;
    /* The variant's same-size read, timed in blocks between its calls (interleave_read), or
     * NULL: a block every block_calls of the variant's calls or block_ns of wall time, whichever
     * comes first; calls_since counts the calls since the last. */
    bench_reader *reader;
    uint64_t block_ns, last_block;
    uint32_t block_calls, calls_since;
    /* last_execute_ns after every call, warm-up included; dev_ok drops at the first call
     * without one (no entry, an error, or 0). */
    uint64_t *dev_ns;
    size_t n_dev, cap_dev;
    bool dev_ok;
} run_state;

static void build_node(run_state *s, const bench_geometry *g)
{
    memset(&s->node, 0, sizeof s->node);
    s->node.struct_size = sizeof s->node;
    s->node.op = 0;
    for (uint32_t i = 0; i < g->n_in; i++) {
        s->in[i] = g->in[i];
        s->in_ptr[i] = &s->in[i];
    }
    for (uint32_t i = 0; i < g->n_attrs; i++)
        s->attr_ptr[i] = &g->attrs[i];
    s->node.n_inputs = g->n_in;
    s->node.inputs = s->in_ptr;
    s->node.output = &g->out;
    s->node.n_attrs = g->n_attrs;
    s->node.attrs = s->attr_ptr;
}

static bool is_weight(const bench_geometry *g, uint32_t input)
{
    return g->weight >= 0 && input >= (uint32_t)g->weight &&
           input < (uint32_t)g->weight + g->n_weights;
}

static void release(run_state *s)
{
    const bst_backend_api *api = s->d->api;
    if (s->exe)
        api->executable_free(s->d->dev, s->exe);
    const uint32_t held = s->copies * s->g->n_weights;
    for (uint32_t i = 0; i < N_BIND; i++)
        if (s->buf[i] && !is_weight(s->g, i))
            api->buffer_free(s->d->dev, s->buf[i]);
    for (uint32_t i = 0; s->wbuf && i < held; i++)
        if (s->wbuf[i])
            api->buffer_free(s->d->dev, s->wbuf[i]);
    for (uint32_t i = 0; s->whost && i < held; i++)
        free(s->whost[i]);
    free(s->wbuf);
    free(s->whost);
    free(s->dev_ns);
    s->dev_ns = NULL;
    s->n_dev = s->cap_dev = 0;
    memset(s->buf, 0, sizeof s->buf);
    s->exe = NULL;
    s->wbuf = NULL;
    s->whost = NULL;
}

static const char *status_str(bst_status st)
{
    const char *n = bst_status_name(st);
    return n ? n : "error";
}

/* A plugin call failed: the reason names the call and carries the plugin's message. */
static bool plugin_fail(char *why, size_t n, const char *call, bst_status st)
{
    snprintf(why, n, "%s failed: %s: %s", call, status_str(st), bst_last_error());
    return false;
}

/* Uploads every copy of weight j (input g->weight + j): prepare_weight where the backend has
 * it, so each copy is what the model would run on; adds copy 0's time to *prepare_ns. */
static bool upload_weight(run_state *s, uint32_t j, uint32_t copies, uint64_t *prepare_ns,
                          char *why, size_t n)
{
    const bst_backend_api *api = s->d->api;
    void *dev = s->d->dev;
    const bench_geometry *g = s->g;
    const uint32_t w = (uint32_t)g->weight + j, nw = g->n_weights;
    const size_t bytes = g->size[w] ? (size_t)g->size[w] : 1;
    uint32_t layout = BST_LAYOUT_NATIVE;
    /* The host data of copy 0; prepare_weight copies get their own host memory, because a
     * unified-memory device may keep using it in place (the CPU backend does). */
    uint8_t **host0 = &s->whost[j];
    if (!(*host0 = malloc(bytes))) {
        snprintf(why, n, "host memory for weight %u (%llu bytes)", w,
                 (unsigned long long)g->size[w]);
        return false;
    }
    bench_fill_input(g, w, *host0, 11);
    for (uint32_t k = 0; k < copies; k++) {
        void **dst = &s->wbuf[(size_t)k * nw + j];
        uint64_t t0 = bench_now_ns();
        bst_status st;
        if (api->prepare_weight) {
            uint8_t **host = &s->whost[(size_t)k * nw + j];
            if (k > 0) {
                if (!(*host = malloc(bytes))) {
                    snprintf(why, n, "host memory for copy %u of weight %u (%llu bytes)", k, w,
                             (unsigned long long)g->size[w]);
                    return false;
                }
                memcpy(*host, *host0, bytes);
                t0 = bench_now_ns();
            }
            uint64_t cost = 0;
            uint32_t got = BST_LAYOUT_NATIVE;
            st = api->prepare_weight(dev, &g->in[w], *host, g->size[w], dst, &cost, &got);
            if (st != BST_OK)
                return plugin_fail(why, n, "prepare_weight", st);
            if (k > 0 && got != layout) {
                snprintf(why, n, "prepare_weight gave layout %u for one copy and %u for "
                         "another", layout, got);
                return false;
            }
            layout = got;
        } else {
            st = api->buffer_alloc(dev, g->size[w], dst);
            if (st == BST_OK)
                st = api->buffer_write(dev, *dst, 0, *host0, g->size[w]);
            if (st != BST_OK)
                return plugin_fail(why, n, "uploading a weight", st);
        }
        if (k == 0)
            *prepare_ns += bench_now_ns() - t0;
    }
    s->in[w].layout = layout;
    s->buf[w] = s->wbuf[j];
    return true;
}

/* Uploads inputs and weight copies and compiles. False with `why` on any failure. */
static bool setup(run_state *s, const bench_case *c, uint32_t variant, uint32_t copies,
                  bench_result *r, char *why, size_t n)
{
    const bst_backend_api *api = s->d->api;
    void *dev = s->d->dev;
    const bench_geometry *g = s->g;
    bst_status st;
    build_node(s, g);
    s->node.op = (uint32_t)c->op;
    s->copies = g->weight >= 0 ? copies : 0;

    for (uint32_t i = 0; i < g->n_in; i++) {
        if (is_weight(g, i))
            continue;
        uint8_t *host = malloc(g->size[i] ? (size_t)g->size[i] : 1);
        if (!host) {
            snprintf(why, n, "host memory for input %u (%llu bytes)", i,
                     (unsigned long long)g->size[i]);
            return false;
        }
        bench_fill_input(g, i, host, 7);
        st = api->buffer_alloc(dev, g->size[i], &s->buf[i]);
        if (st == BST_OK)
            st = api->buffer_write(dev, s->buf[i], 0, host, g->size[i]);
        free(host);
        if (st != BST_OK)
            return plugin_fail(why, n, "uploading an input", st);
    }
    st = api->buffer_alloc(dev, g->size[g->n_in], &s->buf[g->n_in]);
    if (st != BST_OK)
        return plugin_fail(why, n, "buffer_alloc (output)", st);

    if (g->weight >= 0) {
        s->wbuf = calloc((size_t)copies * g->n_weights, sizeof *s->wbuf);
        s->whost = calloc((size_t)copies * g->n_weights, sizeof *s->whost);
        if (!s->wbuf || !s->whost) {
            snprintf(why, n, "host memory for %u weight copies", copies);
            return false;
        }
        uint64_t prepare_ns = 0;
        for (uint32_t j = 0; j < g->n_weights; j++)
            if (!upload_weight(s, j, copies, &prepare_ns, why, n))
                return false;
        r->prepare_ns = prepare_ns;
    }

    s->node.variant = variant;
    const bst_node_desc *nodes[1] = {&s->node};
    bst_partition_desc part;
    memset(&part, 0, sizeof part);
    part.struct_size = sizeof part;
    part.n_nodes = 1;
    part.nodes = nodes;
    part.n_bindings = g->n_in + 1;
    uint64_t t0 = bench_now_ns();
    st = api->compile(dev, &part, &s->exe);
    r->compile_ns = bench_now_ns() - t0;
    if (st != BST_OK) {
        s->exe = NULL;
        return plugin_fail(why, n, "compile", st);
    }
    memset(&s->params, 0, sizeof s->params);
    s->params.struct_size = sizeof s->params;
    s->params.n_tokens = 1;
    s->params.n_kv = 1;
    return true;
}

/* Executes the node once with the weight copies `iteration` picks. */
static bst_status execute_copy(run_state *s, uint64_t iteration, bench_error *e)
{
    const uint32_t nw = s->g->n_weights;
    for (uint32_t j = 0; s->g->weight >= 0 && j < nw; j++)
        s->buf[(uint32_t)s->g->weight + j] = s->wbuf[(size_t)(iteration % s->copies) * nw + j];
    bst_status st = s->d->api->execute(s->d->dev, s->exe, s->buf, s->g->n_in + 1, &s->params);
    if (st != BST_OK)
        return bench_fail(e, st, "execute failed: %s: %s", status_str(st), bst_last_error());
    return BST_OK;
}

static bst_status exec_call(void *user, uint64_t iteration, bench_error *e)
{
    run_state *s = user;
    const bst_backend_api *api = s->d->api;
    bst_status st = execute_copy(s, iteration, e);
    if (st != BST_OK)
        return st;
    if (!s->dev_ok)
        return BST_OK;
    uint64_t ns = 0;
    if (!api->last_execute_ns || api->last_execute_ns(s->d->dev, s->exe, &ns) != BST_OK ||
        ns == 0) {
        s->dev_ok = false; /* no device time: the wall clock is the measure */
        return BST_OK;
    }
    if (!bench_grow((void **)&s->dev_ns, &s->cap_dev, s->n_dev + 1, sizeof *s->dev_ns))
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "device times: out of memory");
    s->dev_ns[s->n_dev++] = ns;
    return BST_OK;
}

/* A block of the same-size read, as many calls at each thread count as half the variant's calls
 * since the last block, so that both get about the same time; with `settle`, then one untimed
 * call of the variant on a copy far from the next one's, which wakes the pool the read may have
 * let fall asleep. */
static bst_status read_block(run_state *s, uint64_t iteration, bool settle, bench_error *e)
{
    const uint32_t n = s->calls_since / 2 > 3 ? s->calls_since / 2 : 3;
    const bench_budget b = {0.0, n, n, 1};
    bst_status st = bench_reader_block(s->reader, &b, e);
    if (st == BST_OK && settle)
        st = execute_copy(s, iteration + s->copies / 2, e);
    s->last_block = bench_now_ns();
    s->calls_since = 0;
    return st;
}

/* Before each call of a variant with a same-size read: a read block when one is due. */
static bst_status interleave_read(void *user, uint64_t iteration, bench_error *e)
{
    run_state *s = user;
    if (s->calls_since < s->block_calls && bench_now_ns() - s->last_block < s->block_ns) {
        s->calls_since++;
        return BST_OK;
    }
    return read_block(s, iteration, true, e);
}

/* The device times of the timed calls (those after the warm-up) into r->device_timing, and
 * r->time_source; "wall" when some call had none.
 * Only NPU-kind devices are rated by their own time: what a user waits for on a real CPU or GPU
 * is the device's time plus launch and sync (DESIGN.md, "Kernel selection"), which is the wall
 * time, and it keeps ratios against OpenBLAS (timed by wall clock) fair. The one NPU here is
 * simulated, and its host time only says how fast the simulator is. */
static bool device_timing(run_state *s, bench_result *r, char *why, size_t n)
{
    const bench_timing *t = &r->timing;
    snprintf(r->time_source, sizeof r->time_source, "wall");
    if (s->d->info.kind != BST_DEVICE_NPU)
        return true;
    if (!s->dev_ok || s->n_dev != (size_t)t->warmup + t->n_samples || t->warmup == 0)
        return true;
    bench_timing *d = &r->device_timing;
    memset(d, 0, sizeof *d);
    d->first_ns = s->dev_ns[0];
    d->warmup = t->warmup;
    d->samples_ns = malloc((t->n_samples ? t->n_samples : 1) * sizeof *d->samples_ns);
    if (!d->samples_ns) {
        snprintf(why, n, "device times: out of memory");
        return false;
    }
    memcpy(d->samples_ns, s->dev_ns + t->warmup, t->n_samples * sizeof *d->samples_ns);
    d->n_samples = t->n_samples;
    bench_error e;
    memset(&e, 0, sizeof e);
    if (bench_stats_compute(d->samples_ns, d->n_samples, &d->stats, &e) != BST_OK) {
        snprintf(why, n, "%s", e.msg);
        return false;
    }
    snprintf(r->time_source, sizeof r->time_source, "device");
    return true;
}

/* The variants `d` offers for the case's node; false with `why` when query itself failed. */
static bool query_variants(const device_ref *d, const bench_case *c, const bench_geometry *g,
                           bst_kernel_variant *v, uint32_t *count, char *why, size_t n)
{
    run_state s;
    memset(&s, 0, sizeof s);
    build_node(&s, g);
    s.node.op = (uint32_t)c->op;
    for (uint32_t i = 0; i < MAX_VARIANTS; i++) {
        memset(&v[i], 0, sizeof v[i]);
        v[i].struct_size = sizeof v[i];
    }
    *count = 0;
    bst_status st = d->api->query(d->dev, &s.node, v, sizeof *v, MAX_VARIANTS, count);
    if (st != BST_OK)
        return plugin_fail(why, n, "query", st);
    if (*count > MAX_VARIANTS)
        *count = MAX_VARIANTS;
    for (uint32_t i = 0; i < *count; i++)
        v[i].name[sizeof v[i].name - 1] = '\0';
    return true;
}

/* Blocks of the same-size read per variant (by the budget's time or its count of calls): enough
 * that a memory state lasting a fraction of the variant's calls shows on both sides. */
#define READ_BLOCKS 8

/* Times `variant` of c on d into r's timing/compile/prepare, and with a `reader`, blocks of that
 * read between its calls and one after them. False with `why` on failure. */
static bool time_variant(const device_ref *d, const bench_case *c, const bench_geometry *g,
                         uint32_t variant, uint32_t copies, const bench_budget *b,
                         bench_reader *reader, bench_result *r, char *why, size_t n)
{
    run_state s;
    memset(&s, 0, sizeof s);
    s.d = d;
    s.g = g;
    s.dev_ok = d->api->last_execute_ns != NULL;
    bool ok = setup(&s, c, variant, copies, r, why, n);
    if (ok) {
        bench_error e;
        memset(&e, 0, sizeof e);
        s.reader = reader;
        s.block_ns = (uint64_t)(b->seconds * 1e9 / READ_BLOCKS);
        s.block_calls = b->max_reps / READ_BLOCKS > 1 ? b->max_reps / READ_BLOCKS : 1;
        s.last_block = bench_now_ns();
        bst_status st =
            reader ? bench_measure_between(b, exec_call, interleave_read, &s, &r->timing, &e)
                   : bench_measure(b, exec_call, &s, &r->timing, &e);
        if (st == BST_OK && reader)
            st = read_block(&s, 0, false, &e); /* the read brackets the variant */
        if (st != BST_OK) {
            snprintf(why, n, "%s", e.msg);
            ok = false;
        }
    }
    if (ok)
        ok = device_timing(&s, r, why, n);
    release(&s);
    return ok;
}

/* Estimated seconds per call of `variant` (named `name`) from a smaller probe case, or a
 * negative value when there is no probe or it could not run (then the case simply runs). */
static double estimate(const device_ref *d, const bench_case *c, const char *name,
                       const bench_budget *b, char *probe_shape, size_t shape_size)
{
    bench_case p;
    double scale = 1.0;
    if (!bench_case_probe(c, &p, &scale))
        return -1.0;
    bench_geometry pg;
    if (bench_case_geometry(&p, &pg, NULL) != BST_OK)
        return -1.0;
    bst_kernel_variant v[MAX_VARIANTS];
    uint32_t count = 0;
    char why[256];
    if (!query_variants(d, &p, &pg, v, &count, why, sizeof why))
        return -1.0;
    uint32_t vi = 0;
    while (vi < count && strcmp(v[vi].name, name) != 0)
        vi++;
    if (vi == count)
        return -1.0;
    bench_budget pb = {b->seconds / 10.0, 2, 5, 1};
    bench_result tmp;
    memset(&tmp, 0, sizeof tmp);
    bool ok = time_variant(d, &p, &pg, vi, 1, &pb, NULL, &tmp, why, sizeof why);
    /* Wall time: the budget is the host's time, whatever the device reports. */
    double est = ok ? tmp.timing.stats.median_ns * scale * 1e-9 : -1.0;
    bench_timing_free(&tmp.timing);
    bench_timing_free(&tmp.device_timing);
    snprintf(probe_shape, shape_size, "%s", p.shape);
    return est;
}

static void fill_common(bench_result *r, const bench_case *c, const bench_geometry *g,
                        const device_ref *d)
{
    snprintf(r->op, sizeof r->op, "%s", bst_op_name(c->op));
    snprintf(r->dtype, sizeof r->dtype, "%s", bst_dtype_name(c->dtype));
    snprintf(r->shape, sizeof r->shape, "%s", c->shape);
    snprintf(r->label, sizeof r->label, "%s", c->label);
    snprintf(r->tensors, sizeof r->tensors, "%s", g->text);
    snprintf(r->backend, sizeof r->backend, "%s", d->backend);
    snprintf(r->device_name, sizeof r->device_name, "%s", d->info.name);
    r->device = (int32_t)d->index;
    r->flops = g->flops;
    r->bytes = g->bytes;
}

/* Why the device cannot hold the case, or "" when it can; also settles the copy count. */
static void check_limits(const device_ref *d, const bench_geometry *g, uint64_t llc,
                         uint32_t *copies, bool *cold, char *why, size_t n)
{
    why[0] = '\0';
    const bst_device_info *info = &d->info;
    uint64_t total = 0;
    for (uint32_t i = 0; i <= g->n_in; i++) {
        const char *what = i == g->n_in ? "the output" : "an input";
        if (info->max_alloc_bytes && g->size[i] > info->max_alloc_bytes) {
            snprintf(why, n, "%s needs %llu bytes, over the device's max allocation of %llu",
                     what, (unsigned long long)g->size[i],
                     (unsigned long long)info->max_alloc_bytes);
            return;
        }
        if (info->max_binding_bytes && g->size[i] > info->max_binding_bytes) {
            snprintf(why, n, "%s needs %llu bytes, over the device's max binding of %llu", what,
                     (unsigned long long)g->size[i],
                     (unsigned long long)info->max_binding_bytes);
            return;
        }
        total += g->size[i];
    }
    *copies = 1;
    *cold = false;
    if (g->weight < 0)
        return;
    uint64_t wb = bench_weight_bytes(g);
    uint32_t want = llc ? bench_cold_copies(wb, llc) : 1;
    /* Never take more than half the device's memory: the rest belongs to everyone else. */
    uint64_t cap = info->memory_bytes ? info->memory_bytes / 2 : UINT64_MAX;
    if (total > cap) {
        snprintf(why, n, "needs %llu bytes, over half the device's %llu bytes of memory",
                 (unsigned long long)total, (unsigned long long)info->memory_bytes);
        return;
    }
    uint64_t fit = wb ? 1 + (cap - total) / wb : want; /* copies beyond the first that fit */
    *copies = fit < want ? (uint32_t)fit : want;
    *cold = llc != 0 && (uint64_t)*copies * wb >= 4 * llc;
}

static void derive(bench_result *r, const bench_case *c, const bench_geometry *g,
                   const bench_baselines *bl, int32_t read_index)
{
    /* The device's own time when it keeps one: that is what the device is worth (a modelled
     * device's host time only says how fast the simulator is). */
    bool dev = strcmp(r->time_source, "device") == 0 && r->device_timing.n_samples > 0;
    double med = dev ? r->device_timing.stats.median_ns : r->timing.stats.median_ns;
    if (med <= 0.0)
        return;
    r->gflops = r->flops / med;
    r->gbs = r->bytes / med;
    const bench_read *rd = bl && read_index >= 0 ? &bl->reads[read_index] : NULL;
    /* Against the streaming bandwidth measured with the variant's same-size read where there is
     * one: the start of the run may have seen another memory state. */
    const double stream = rd && rd->measured && rd->stream_gbs > 0 ? rd->stream_gbs
                          : bl && bl->bandwidth.measured ? bl->bandwidth.gbs
                                                          : 0.0;
    if (r->cache_cold && r->weight_bound && stream > 0)
        r->bandwidth_fraction = r->gbs / stream;
    if (rd && rd->measured && rd->gbs > 0) {
        r->read_fraction = (double)bench_weight_bytes(g) / rd->gbs / med;
        r->read_index = read_index;
    }
    if (c->op == BST_OP_MATMUL && c->dtype == BST_DTYPE_F32 && bl) {
        const bench_sgemm *s = bench_baselines_find_sgemm(bl, c->dims[0], c->dims[1], c->dims[2]);
        if (s && s->timing.stats.median_ns > 0)
            r->sgemm_ratio = s->timing.stats.median_ns / med;
    }
}

/* The same-size read of a cache-cold weight-bound case's variant, opened to be timed in blocks
 * between the variant's calls (time_variant): this machine's memory flips between states ~1.5x
 * apart, sometimes within a second, and a ratio means most when both sides saw the same states.
 * Timed just before the variant instead, the read rated one 576 x 576 q4_1 kernel at 0.65 to
 * 0.94 within an hour. NULL for other cases. */
static bst_status open_read(const bench_geometry *g, uint32_t copies, bool cold,
                            const bench_ops_options *o, const bench_baselines *bl,
                            bench_reader **out, bench_error *e)
{
    *out = NULL;
    if (!cold || !bench_weight_bound(g) || bl->n_reads >= INT32_MAX)
        return BST_OK;
    return bench_reader_open(bench_weight_bytes(g), copies, o->threads, out, e);
}

/* Finishes a variant's read into bl->reads; *index is its place there (-1 without a read). */
static bst_status finish_read(bench_reader *reader, const device_ref *d, const bench_case *c,
                              const char *variant, const bench_ops_options *o,
                              bench_baselines *bl, int32_t *index, bench_error *e)
{
    *index = -1;
    if (!reader)
        return BST_OK;
    /* The streaming read and the hand-off after it get a quarter of the case's budget. */
    bench_budget b = o->budget;
    b.seconds /= 4;
    bench_read rd;
    bst_status st = bench_reader_finish(reader, &b, &rd, e);
    snprintf(rd.what, sizeof rd.what, "%s %s %s on %s:%u %s", bst_op_name(c->op),
             bst_dtype_name(c->dtype), c->shape, d->backend, d->index, variant);
    if (st == BST_OK)
        st = bench_baselines_add_read(bl, &rd, e);
    if (st != BST_OK) {
        bench_timing_free(&rd.timing);
        return st;
    }
    *index = (int32_t)(bl->n_reads - 1);
    return BST_OK;
}

static bst_status run_case_on_device(const device_ref *d, const bench_case *c,
                                     const bench_ops_options *o, bench_baselines *bl,
                                     bench_result_list *out, size_t *done, size_t total,
                                     bench_error *e)
{
    bench_geometry g;
    bench_error ge;
    memset(&ge, 0, sizeof ge);
    bool geom_ok = bench_case_geometry(c, &g, &ge) == BST_OK;
    bst_kernel_variant v[MAX_VARIANTS];
    uint32_t count = 0;
    char why[512] = "";
    bench_result_status st = BENCH_OK;
    if (!geom_ok) {
        st = BENCH_SKIPPED;
        snprintf(why, sizeof why, "%s", ge.msg);
        memset(&g, 0, sizeof g);
    } else if (!d->api) {
        st = BENCH_SKIPPED;
        snprintf(why, sizeof why, "device did not start: %s", d->open_error);
    } else if (!query_variants(d, c, &g, v, &count, why, sizeof why)) {
        st = BENCH_FAILED;
    } else if (count == 0) {
        st = BENCH_UNSUPPORTED;
        snprintf(why, sizeof why, "no kernel variant on this device");
    }
    uint32_t copies = 1;
    bool cold = false;
    if (st == BENCH_OK) {
        check_limits(d, &g, o->llc_bytes, &copies, &cold, why, sizeof why);
        if (why[0])
            st = BENCH_SKIPPED;
    }
    if (st != BENCH_OK) {
        bench_result *r = bench_result_list_add(out);
        if (!r)
            return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "results: out of memory");
        fill_common(r, c, &g, d);
        r->status = st;
        snprintf(r->reason, sizeof r->reason, "%s", why);
        if (o->progress)
            o->progress(o->progress_user, (*done)++, total, r);
        return BST_OK;
    }
    for (uint32_t vi = 0; vi < count; vi++) {
        char probe_shape[64] = "";
        double est = estimate(d, c, v[vi].name, &o->budget, probe_shape, sizeof probe_shape);
        bench_reader *reader = NULL;
        bst_status rs = BST_OK;
        if (est <= o->budget.seconds)
            rs = open_read(&g, copies, cold, o, bl, &reader, e);
        bench_result *r = rs == BST_OK ? bench_result_list_add(out) : NULL;
        if (rs == BST_OK && !r)
            rs = bench_fail(e, BST_ERR_OUT_OF_MEMORY, "results: out of memory");
        if (rs != BST_OK) {
            bench_reader_close(reader);
            return rs;
        }
        fill_common(r, c, &g, d);
        snprintf(r->variant, sizeof r->variant, "%s", v[vi].name);
        r->variant_hash = v[vi].source_hash;
        r->weight_copies = g.weight >= 0 ? copies : 0;
        r->cache_cold = cold;
        r->weight_bound = bench_weight_bound(&g);
        if (est > o->budget.seconds) {
            r->status = BENCH_SKIPPED;
            snprintf(r->reason, sizeof r->reason,
                     "estimated %.3g s per call (from a %s probe) is over the %.3g s budget",
                     est, probe_shape, o->budget.seconds);
        } else if (!time_variant(d, c, &g, vi, copies, &o->budget, reader, r, why,
                                 sizeof why)) {
            r->status = BENCH_FAILED;
            snprintf(r->reason, sizeof r->reason, "%s", why);
            bench_timing_free(&r->timing);
            bench_timing_free(&r->device_timing);
            snprintf(r->time_source, sizeof r->time_source, "wall");
        } else {
            int32_t read_index = -1;
            rs = finish_read(reader, d, c, v[vi].name, o, bl, &read_index, e);
            r->status = BENCH_OK;
            derive(r, c, &g, bl, read_index);
        }
        bench_reader_close(reader);
        if (rs != BST_OK)
            return rs;
        if (o->progress)
            o->progress(o->progress_user, (*done)++, total, r);
    }
    return BST_OK;
}

bst_status bench_run_ops(bst_context *ctx, const bench_case_list *cases,
                         const bench_ops_options *o, bench_baselines *bl,
                         bench_result_list *out, bench_error *e)
{
    uint32_t n_dev = bst_context_device_count(ctx);
    device_ref *devs = calloc(n_dev ? n_dev : 1, sizeof *devs);
    if (!devs)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "devices: out of memory");
    for (uint32_t i = 0; i < n_dev; i++) {
        device_ref *d = &devs[i];
        d->index = i;
        d->info.struct_size = sizeof d->info;
        if (bst_context_device(ctx, i, &d->info, &d->backend) != BST_OK) {
            d->backend = "?";
            snprintf(d->open_error, sizeof d->open_error, "%s", bst_last_error());
            continue;
        }
        if (bst_context_device_backend(ctx, i, &d->api, &d->dev) != BST_OK) {
            d->api = NULL;
            snprintf(d->open_error, sizeof d->open_error, "%s", bst_last_error());
        }
    }
    /* The progress total counts one row per case and device; variants beyond the first add to
     * it as they are found, so it is an estimate. */
    size_t total = cases->n * n_dev, done = 0;
    bst_status st = BST_OK;
    for (size_t i = 0; i < cases->n && st == BST_OK; i++)
        for (uint32_t k = 0; k < n_dev && st == BST_OK; k++)
            st = run_case_on_device(&devs[k], &cases->items[i], o, bl, out, &done, total, e);
    free(devs);
    return st;
}
