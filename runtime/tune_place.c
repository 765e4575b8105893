/*
 * runtime/tune_place.c — placement by measurement: for each compute node, every (device,
 * variant) whose backend's query accepts it is a candidate; its cost is its kernel time (from the
 * tuning database, or measured now and stored) plus the time to bring inputs produced on another
 * device over to it; the cheapest wins, ties going to the earlier device in priority order.
 *
 * Transfer model (simple, documented): an input computed on device A, read by a candidate on
 * device B != A, costs one host-staged copy of its bytes, as measured for the pair (A, B) on a
 * buffer of the size rounded up to a power of two (>= 4 KiB), once per pair and bucket. Graph
 * inputs, state and weights are not charged: inputs and state are written once per run by the
 * caller wherever they live, and weights are uploaded once, at program creation. Nodes are
 * placed in topological order, so producers' devices are known when a consumer is costed.
 *
 * Memory: a weight lives on the device of its first consumer; a later consumer's candidates on
 * other devices are not measured (they would need a second copy), unless no device holding it
 * has a kernel for that consumer, and then the copy is logged and counted (explain's
 * weight_second_copies). A candidate whose device's memory (weights placed there so far plus
 * this node's new ones, at the size prepare_weight reported for that dtype on that device when
 * it has been seen, else at their dtype size) or largest allocation would be exceeded is
 * dropped too. Within those limits the measurement decides; with no measurement (frozen miss)
 * the first allowed candidate in priority order is taken.
 *
 * Plan kinds (tune.h): STATIC leaves every node to the static rule; DECODE measures and keys at
 * n_tokens = 1; BLEND costs each candidate decode_ns + prompt_ns / bound from both rows; LOWERED
 * (every high-level op lowered by program.c's keep callback) costs its primitives as BLEND.
 *
 * Emulated devices (PoCL's and lavapipe's CPU devices) are candidates only when no other device
 * accepts the node, unless BASTION_TUNE_EMULATED=1 (tune.h, bsti_tune_device_emulated).
 *
 * Not tuned (static priority): ops with effects (set_rows), whose output aliases state and whose
 * timing alone would be misleading. Measurement failures drop that candidate with a debug log.
 */
#include "runtime/tune.h"

#include "graph/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_VARIANTS 16
#define MIN_TRANSFER_BUCKET 4096ull
#define MAX_TRANSFER_BUCKET (64ull << 20)

void bsti_tune_report_free(bsti_tune_report *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; r->nodes && i < r->n_nodes; i++)
        free(r->nodes[i].cands);
    free(r->nodes);
    free(r->weight_home);
    free(r->weight_bytes);
    free(r);
}

void bsti_tune_context_release(bst_context *ctx)
{
    if (!ctx)
        return;
    bsti_tune_db_close(ctx->tune_db);
    ctx->tune_db = NULL;
    free(ctx->tune_db_path);
    ctx->tune_db_path = NULL;
    free(ctx->tune_fresh);
    ctx->tune_fresh = NULL;
    ctx->n_tune_fresh = ctx->cap_tune_fresh = 0;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n);

static _Thread_local uint32_t plan_kind = BSTI_PLAN_PROMPT;

void bsti_tune_set_plan_kind(uint32_t kind)
{
    plan_kind = kind < BSTI_PLAN_COUNT ? kind : BSTI_PLAN_PROMPT;
}

uint32_t bsti_tune_plan_kind(void) { return plan_kind; }

const char *bsti_plan_kind_name(uint32_t kind)
{
    static const char *const names[BSTI_PLAN_COUNT] = {"static", "tuned-prompt", "tuned-decode",
                                                       "tuned-blend", "lowered"};
    return kind < BSTI_PLAN_COUNT ? names[kind] : "?";
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
    h = fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
    return h;
}

static uint64_t key_hash(const bsti_tune_key *k)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv_str(h, k->op);
    h = fnv_str(h, k->dtypes);
    h = fnv_str(h, k->shape);
    h = fnv(h, &k->device_fingerprint, sizeof k->device_fingerprint);
    h = fnv_str(h, k->driver_version);
    h = fnv_str(h, k->plugin);
    h = fnv_str(h, k->plugin_version);
    h = fnv_str(h, k->variant);
    h = fnv(h, &k->source_hash, sizeof k->source_hash);
    h = fnv(h, &k->threads, sizeof k->threads);
    h = fnv(h, &k->isa_mask, sizeof k->isa_mask);
    return fnv_str(h, k->bastion_version);
}

/* Full mode re-measures each key once per context, not once per node: a model repeats the
 * same shapes in every layer. */
static bool fresh_in_context(const bst_context *ctx, uint64_t h)
{
    for (uint32_t i = 0; i < ctx->n_tune_fresh; i++)
        if (ctx->tune_fresh[i] == h)
            return true;
    return false;
}

static void remember_fresh(bst_context *ctx, uint64_t h)
{
    if (ctx->n_tune_fresh == ctx->cap_tune_fresh) {
        uint32_t cap = ctx->cap_tune_fresh ? ctx->cap_tune_fresh * 2 : 64;
        uint64_t *a = realloc(ctx->tune_fresh, cap * sizeof *a);
        if (!a)
            return; /* only costs a repeated measurement */
        ctx->tune_fresh = a;
        ctx->cap_tune_fresh = cap;
    }
    ctx->tune_fresh[ctx->n_tune_fresh++] = h;
}

/* The context's database, opened on first use. A file that cannot be used (unwritable
 * directory, newer schema) is reported once; tuning then keeps its rows in memory. */
bsti_tune_db *bsti_tune_context_db(bst_context *ctx)
{
    if (ctx->tune_db)
        return ctx->tune_db;
    bst_status st = BST_OK;
    if (!ctx->tune_no_cache && !ctx->tune_db_failed) {
        char path[4096];
        if (ctx->tune_db_path)
            snprintf(path, sizeof path, "%s", ctx->tune_db_path);
        else
            st = bsti_tune_db_default_path(path, sizeof path);
        if (st == BST_OK)
            st = bsti_tune_db_open(path, &ctx->tune_db);
        if (st == BST_OK)
            return ctx->tune_db;
        bsti_log(BST_LOG_WARN, "tuning without a database file: %s", bst_last_error());
        ctx->tune_db_failed = true;
    }
    if (bsti_tune_db_open(":memory:", &ctx->tune_db) != BST_OK) {
        bsti_log(BST_LOG_WARN, "tuning: no in-memory database either: %s", bst_last_error());
        ctx->tune_db = NULL;
    }
    return ctx->tune_db;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int64_t bucket_dim(int64_t v)
{
    int64_t b = 1;
    while (b < v && b < ((int64_t)1 << 62))
        b <<= 1;
    return b;
}

static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...) BST_PRINTF(4, 5);
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    *len += k > 0 ? (size_t)k : 0;
    if (*len >= cap)
        *len = cap - 1;
}

static void append_shape(char *buf, size_t cap, size_t *len, const bsti_type *t)
{
    append(buf, cap, len, "[");
    for (uint32_t i = 0; i < t->rank && i < BST_MAX_DIMS; i++) {
        /* Symbolic dims are keyed by bucket (never padded); fixed dims exactly. A decode plan
         * measures at n_tokens = 1, and keys it so. */
        if (t->sym[i] == BST_SYM_N_TOKENS && plan_kind == BSTI_PLAN_DECODE)
            append(buf, cap, len, "%s~1", i ? "," : "");
        else if (t->sym[i] != BST_SYM_NONE)
            append(buf, cap, len, "%s~%lld", i ? "," : "", (long long)bucket_dim(t->shape[i]));
        else
            append(buf, cap, len, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    }
    append(buf, cap, len, "]");
}

typedef struct node_key_text {
    char op[96], dtypes[160], shape[512];
} node_key_text;

static void node_key(const bst_graph *g, uint32_t id, node_key_text *k)
{
    const bsti_node *n = &g->nodes[id];
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t i = 0; i < n->n_attrs && i < BST_MAX_ATTRS; i++) {
        const bst_attr *a = &n->attrs[i];
        uint32_t count = a->count <= BST_MAX_DIMS ? a->count : BST_MAX_DIMS;
        h = fnv(h, &a->key, sizeof a->key);
        h = fnv(h, &a->kind, sizeof a->kind);
        h = fnv(h, &count, sizeof count);
        h = fnv(h, a->ints, count * sizeof a->ints[0]);
        h = fnv(h, &a->f, sizeof a->f);
    }
    /* Strides change the kernel's access pattern (a transposed view reads differently). */
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        const bsti_type *t = &g->nodes[n->inputs[i]].type;
        h = fnv(h, t->strides, t->rank * sizeof t->strides[0]);
    }
    snprintf(k->op, sizeof k->op, "%s#%016llx", bst_op_name(n->op) ? bst_op_name(n->op) : "?",
             (unsigned long long)h);
    size_t dl = 0, sl = 0;
    k->dtypes[0] = k->shape[0] = '\0';
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        const bsti_type *t = &g->nodes[n->inputs[i]].type;
        const char *dn = bst_dtype_name(t->dtype);
        append(k->dtypes, sizeof k->dtypes, &dl, "%s%s", i ? "," : "", dn ? dn : "?");
        if (i)
            append(k->shape, sizeof k->shape, &sl, ",");
        append_shape(k->shape, sizeof k->shape, &sl, t);
    }
    const char *on = bst_dtype_name(n->type.dtype);
    append(k->dtypes, sizeof k->dtypes, &dl, "->%s", on ? on : "?");
    append(k->shape, sizeof k->shape, &sl, "->");
    append_shape(k->shape, sizeof k->shape, &sl, &n->type);
}

static void fill_key(const bst_context *ctx, const node_key_text *t, uint32_t d,
                     const bst_kernel_variant *v, uint64_t isa, bsti_tune_key *k)
{
    const bsti_device *dev = &ctx->devices[d];
    memset(k, 0, sizeof *k);
    k->op = t->op;
    k->dtypes = t->dtypes;
    k->shape = t->shape;
    k->device_fingerprint = dev->info.fingerprint;
    k->driver_version = dev->info.driver_version;
    k->plugin = dev->plugin->name;
    k->plugin_version = dev->plugin->version;
    k->variant = v->name;
    k->source_hash = v->source_hash;
    k->threads = ctx->n_threads;
    k->isa_mask = isa;
    k->bastion_version = bst_version();
}

bool bsti_tune_device_emulated(const bst_context *ctx, uint32_t d)
{
    if (!ctx || d >= ctx->n_devices || ctx->devices[d].info.kind != BST_DEVICE_CPU)
        return false;
    const char *name = ctx->devices[d].plugin ? ctx->devices[d].plugin->name : NULL;
    return name && (strcmp(name, "opencl") == 0 || strcmp(name, "vulkan") == 0);
}

bool bsti_tune_include_emulated(void)
{
    const char *v = getenv("BASTION_TUNE_EMULATED");
    return v && v[0] && strcmp(v, "0") != 0;
}

/* The variants device d offers for node id (0 when it does not start or declines). */
static uint32_t query_all(bst_program *p, uint32_t id, uint32_t d, bst_kernel_variant *vars)
{
    void *handle = NULL;
    if (p->excluded && p->excluded[d])
        return 0;
    if (bsti_device_get(p->ctx, d, &handle) != BST_OK || !handle)
        return 0;
    const bst_backend_api *api = &p->ctx->devices[d].plugin->api;
    if (!api->query)
        return 0;
    bsti_desc_storage s;
    bsti_prog_fill_desc(p->g, id, &s);
    memset(vars, 0, MAX_VARIANTS * sizeof *vars);
    for (uint32_t i = 0; i < MAX_VARIANTS; i++)
        vars[i].struct_size = (uint32_t)sizeof vars[i];
    uint32_t count = 0;
    if (api->query(handle, &s.node, vars, sizeof vars[0], MAX_VARIANTS, &count) != BST_OK)
        return 0;
    if (count > MAX_VARIANTS)
        count = MAX_VARIANTS;
    for (uint32_t i = 0; i < count; i++)
        vars[i].name[sizeof vars[i].name - 1] = '\0';
    return count;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Cost of moving `bytes` from src to dst: a row, or a measurement stored as a row. 0 with
 * *out_known false when frozen mode lacks the row or the copy cannot be measured. */
static uint64_t transfer_cost(bst_program *p, bsti_tune_db *db, uint32_t src, uint32_t dst,
                              uint64_t bytes, bool *out_known)
{
    const bst_context *ctx = p->ctx;
    uint64_t bucket = MIN_TRANSFER_BUCKET;
    while (bucket < bytes && bucket < MAX_TRANSFER_BUCKET)
        bucket <<= 1;
    bsti_transfer_key k = {
        .src_fingerprint = ctx->devices[src].info.fingerprint,
        .dst_fingerprint = ctx->devices[dst].info.fingerprint,
        .src_plugin = ctx->devices[src].plugin->name,
        .dst_plugin = ctx->devices[dst].plugin->name,
        .size_bucket = bucket,
        .bastion_version = bst_version(),
    };
    uint64_t ns = 0;
    bool found = false;
    *out_known = true;
    if (db && ctx->tune_mode != BST_TUNE_FULL &&
        bsti_tune_db_get_transfer(db, &k, &ns, &found) == BST_OK && found)
        return ns;
    if (ctx->tune_mode == BST_TUNE_FROZEN) {
        *out_known = false;
        return 0;
    }
    if (bsti_tune_measure_copy(p, src, dst, bucket, &ns) != BST_OK) {
        bsti_log(BST_LOG_DEBUG, "tuning: copy measurement failed: %s", bst_last_error());
        *out_known = false;
        return 0;
    }
    if (db && bsti_tune_db_put_transfer(db, &k, ns) != BST_OK)
        bsti_log(BST_LOG_DEBUG, "tuning: storing a transfer time failed: %s", bst_last_error());
    /* Larger than the biggest bucket: scale linearly (bandwidth-bound). */
    if (bytes > bucket)
        ns = (uint64_t)((double)ns * ((double)bytes / (double)bucket));
    return ns;
}

static uint64_t transfers_for(bst_program *p, bsti_tune_db *db, uint32_t id, uint32_t d)
{
    const bst_graph *g = p->g;
    const bsti_node *n = &g->nodes[id];
    uint64_t total = 0;
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        uint32_t root = p->root[n->inputs[i]];
        const bsti_node *r = &g->nodes[root];
        if (r->device == BSTI_NONE || r->device == d || r->device >= p->ctx->n_devices)
            continue; /* sources (inputs, state, weights) or same device */
        uint64_t bytes = 0;
        if (bsti_type_nbytes(&g->nodes[n->inputs[i]].type, &bytes) != BST_OK || bytes == 0)
            continue;
        bool known = false;
        total += transfer_cost(p, db, r->device, d, bytes, &known);
    }
    return total;
}

static bst_status ensure_report(bst_program *p)
{
    if (p->tune)
        return BST_OK;
    p->tune = calloc(1, sizeof *p->tune);
    if (p->tune)
        p->tune->nodes = calloc(p->g->n_nodes ? p->g->n_nodes : 1, sizeof *p->tune->nodes);
    if (!p->tune || !p->tune->nodes) {
        bsti_tune_report_free(p->tune);
        p->tune = NULL;
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: out of memory");
    }
    p->tune->n_nodes = p->g->n_nodes;
    p->tune->mode = p->ctx->tune_mode;
    p->tune->weight_home = malloc((p->g->n_nodes ? p->g->n_nodes : 1) * sizeof(uint32_t));
    p->tune->weight_bytes = calloc(p->ctx->n_devices ? p->ctx->n_devices : 1, sizeof(uint64_t));
    if (!p->tune->weight_home || !p->tune->weight_bytes) {
        bsti_tune_report_free(p->tune);
        p->tune = NULL;
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: out of memory");
    }
    for (uint32_t i = 0; i < p->g->n_nodes; i++)
        p->tune->weight_home[i] = BSTI_NONE;
    return BST_OK;
}

/* --- memory: ops follow their weights, one copy of each weight --- */

/* Why a candidate device may not take a node. */
enum { FIT_OK = 0, FIT_SECOND_COPY = 1, FIT_NO_MEMORY = 2 };

/* --- what weights cost on each device, as prepare_weight reported --- */

#define MAX_WEIGHT_RATIOS 64

typedef struct weight_ratio {
    uint64_t fingerprint, plugin_hash;
    uint32_t dtype;
    double ratio; /* out_bytes / native bytes, the largest seen */
} weight_ratio;

/* Per thread, as plan_kind: a program is built on one thread, and the ratio is a property of
 * the backend, not of a context. */
static _Thread_local weight_ratio ratios[MAX_WEIGHT_RATIOS];
static _Thread_local uint32_t n_ratios;

static weight_ratio *find_ratio(const bst_context *ctx, uint32_t d, uint32_t dtype, bool add)
{
    if (!ctx || d >= ctx->n_devices)
        return NULL;
    const bsti_device *dev = &ctx->devices[d];
    uint64_t fp = dev->info.fingerprint;
    uint64_t ph = fnv_str(0xcbf29ce484222325ull, dev->plugin ? dev->plugin->name : NULL);
    for (uint32_t i = 0; i < n_ratios; i++)
        if (ratios[i].fingerprint == fp && ratios[i].plugin_hash == ph && ratios[i].dtype == dtype)
            return &ratios[i];
    if (!add || n_ratios == MAX_WEIGHT_RATIOS)
        return NULL;
    weight_ratio *r = &ratios[n_ratios++];
    *r = (weight_ratio){.fingerprint = fp, .plugin_hash = ph, .dtype = dtype, .ratio = 0};
    return r;
}

void bsti_tune_note_weight_cost(const bst_context *ctx, uint32_t d, uint32_t dtype,
                                uint64_t native_bytes, uint64_t out_bytes)
{
    if (native_bytes == 0 || out_bytes == 0)
        return;
    weight_ratio *r = find_ratio(ctx, d, dtype, true);
    double ratio = (double)out_bytes / (double)native_bytes;
    if (r && ratio > r->ratio)
        r->ratio = ratio;
}

void bsti_tune_note_program(const bst_program *p)
{
    if (!p || !p->buffer_bytes)
        return;
    for (uint32_t i = 0; i < p->plan.n_buffers; i++) {
        const bsti_persistent_buffer *b = &p->plan.buffers[i];
        const bsti_node *n = &p->g->nodes[b->value];
        uint64_t native = 0;
        if (n->op != BST_OP_WEIGHT || bsti_type_nbytes(&n->type, &native) != BST_OK ||
            p->buffer_bytes[i] <= native)
            continue; /* only what costs more than its dtype says is worth remembering */
        bsti_tune_note_weight_cost(p->ctx, b->device, (uint32_t)n->type.dtype, native,
                                   p->buffer_bytes[i]);
    }
}

uint64_t bsti_tune_weight_bytes(const bst_context *ctx, uint32_t d, uint32_t dtype,
                                uint64_t native_bytes)
{
    const weight_ratio *r = find_ratio(ctx, d, dtype, false);
    if (!r || r->ratio <= 0)
        return native_bytes;
    double v = (double)native_bytes * r->ratio;
    return v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
}

/* Bytes weight root w costs on device d: what prepare_weight reported for its dtype there
 * (bsti_tune_weight_bytes), else its size in its dtype; the memory planner and the backend's
 * own allocation catch what neither knew. */
static uint64_t weight_cost(const bst_program *p, uint32_t w, uint32_t d)
{
    uint64_t bytes = 0;
    if (bsti_type_nbytes(&p->g->nodes[w].type, &bytes) != BST_OK)
        return UINT64_MAX;
    return bsti_tune_weight_bytes(p->ctx, d, (uint32_t)p->g->nodes[w].type.dtype, bytes);
}

/* Whether node id's weights can live on device d: none of them already lives on another
 * device (that would be a second copy), and the ones new to d fit its memory and its largest
 * allocation. */
static int weights_fit(const bst_program *p, uint32_t id, uint32_t d)
{
    const bsti_tune_report *r = p->tune;
    const bsti_node *n = &p->g->nodes[id];
    const bst_device_info *info = &p->ctx->devices[d].info;
    uint64_t extra = 0;
    int why = FIT_OK;
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        uint32_t w = p->root[n->inputs[i]];
        if (p->g->nodes[w].op != BST_OP_WEIGHT)
            continue;
        if (r->weight_home[w] == d)
            continue;
        if (r->weight_home[w] != BSTI_NONE)
            why = FIT_SECOND_COPY;
        uint64_t c = weight_cost(p, w, d);
        if (c == UINT64_MAX || (info->max_alloc_bytes && c > info->max_alloc_bytes))
            return FIT_NO_MEMORY;
        extra += c;
    }
    if (info->memory_bytes && r->weight_bytes[d] + extra > info->memory_bytes)
        return FIT_NO_MEMORY;
    return why;
}

/* Records that node id (placed on d) reads its weights there. */
static void home_weights(bst_program *p, uint32_t id, uint32_t d)
{
    bsti_tune_report *r = p->tune;
    const bsti_node *n = &p->g->nodes[id];
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        uint32_t w = p->root[n->inputs[i]];
        if (p->g->nodes[w].op != BST_OP_WEIGHT || r->weight_home[w] == d)
            continue;
        if (r->weight_home[w] != BSTI_NONE) {
            char a[200], b[200];
            r->second_copies++;
            bsti_log(BST_LOG_INFO, "placement: weight \"%s\" is kept on %s as well as on %s: "
                     "node %%%u (%s) has no kernel on the weight's device",
                     p->g->nodes[w].name ? p->g->nodes[w].name : "?",
                     bsti_prog_device_label(p->ctx, d, a, sizeof a),
                     bsti_prog_device_label(p->ctx, r->weight_home[w], b, sizeof b), id,
                     bst_op_name(n->op) ? bst_op_name(n->op) : "?");
            continue; /* the weight's home stays where it was first placed */
        }
        r->weight_home[w] = d;
        uint64_t c = weight_cost(p, w, d);
        r->weight_bytes[d] += c == UINT64_MAX ? 0 : c;
    }
}

/* What timing the candidates of one node found. */
typedef struct timing {
    bool frozen_miss, measured;
    uint32_t usable;
} timing;

/* Fills kernel_ns (0: unknown) and hit of every fitting candidate of node id from the database,
 * or measures it, at the shapes of the current plan kind. */
static bst_status time_cands(bst_program *p, uint32_t id, bsti_tune_cand *cands, uint32_t nc,
                             uint32_t n_fit, const uint8_t *fit, const bst_kernel_variant *vars,
                             bsti_tune_db *db, node_key_text *out_kt, timing *out)
{
    bst_context *ctx = p->ctx;
    bst_status st = BST_OK;
    node_key_text kt;
    node_key(p->g, id, &kt);
    *out_kt = kt;
    uint64_t isa = bsti_tune_isa_mask();
    bool frozen_miss = false, measured = false;
    uint32_t usable = 0;
    uint64_t best_known = 0;
    for (uint32_t c = 0; c < nc && n_fit > 1; c++) {
        bsti_tune_cand *cd = &cands[c];
        cd->kernel_ns = 0;
        cd->hit = false;
        if (fit[c] != FIT_OK)
            continue;
        bsti_tune_key key;
        fill_key(ctx, &kt, cd->device, &vars[(size_t)cd->device * MAX_VARIANTS + cd->variant], isa,
                 &key);
        bsti_tune_value val;
        bool found = false;
        uint64_t kh = key_hash(&key);
        bool use_rows = ctx->tune_mode != BST_TUNE_FULL || fresh_in_context(ctx, kh);
        if (db && use_rows && bsti_tune_db_get(db, &key, &val, &found) == BST_OK && found) {
            cd->kernel_ns = val.median_ns;
            cd->hit = true;
        } else if (ctx->tune_mode == BST_TUNE_FROZEN) {
            frozen_miss = true;
            break;
        } else {
            uint64_t t0 = now_ns(), ns = 0;
            uint32_t samples = 0;
            /* Variants come fastest-guess first; one three times slower than the best so
             * far on its first call is not worth a full measurement. */
            uint64_t cutoff = best_known ? 3 * best_known : 0;
            st = bsti_tune_measure_node(p, id, cd->device, cd->variant, cutoff, &ns, &samples);
            p->tune->measure_ns += now_ns() - t0;
            measured = true;
            if (st != BST_OK) {
                bsti_log(BST_LOG_DEBUG, "tuning: %s variant %s not measured: %s", kt.op, cd->name,
                         bst_last_error());
                continue;
            }
            cd->kernel_ns = ns;
            val.median_ns = ns;
            val.samples = samples;
            val.timestamp = (int64_t)time(NULL);
            if (db && bsti_tune_db_put(db, &key, &val) != BST_OK)
                bsti_log(BST_LOG_DEBUG, "tuning: storing a row failed: %s", bst_last_error());
            else if (db)
                remember_fresh(ctx, kh);
        }
        if (cd->kernel_ns) {
            usable++;
            if (!best_known || cd->kernel_ns < best_known)
                best_known = cd->kernel_ns;
        }
    }
    out->frozen_miss = frozen_miss;
    out->measured = measured;
    out->usable = usable;
    (void)st;
    return BST_OK;
}

bst_status bsti_tune_place_node(bst_program *p, uint32_t id, bool *out_placed)
{
    *out_placed = false;
    bst_context *ctx = p->ctx;
    bsti_node *n = &p->g->nodes[id];
    const bsti_op_info *info = bsti_op_get(n->op);
    if (ctx->tune_mode == BST_TUNE_OFF || plan_kind == BSTI_PLAN_STATIC || !info ||
        info->has_effect || (n->flags & BSTI_NODE_EFFECT))
        return BST_OK;
    bst_status st = ensure_report(p);
    if (st != BST_OK)
        return st;
    bsti_tune_node *rn = &p->tune->nodes[id];

    /* Candidates: every variant of every device that accepts the node. */
    uint32_t cap = ctx->n_devices * MAX_VARIANTS;
    bsti_tune_cand *cands = calloc(cap ? cap : 1, sizeof *cands);
    bst_kernel_variant *vars = calloc((size_t)(ctx->n_devices ? ctx->n_devices : 1) * MAX_VARIANTS,
                                      sizeof *vars);
    if (!cands || !vars) {
        free(cands);
        free(vars);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: out of memory");
    }
    uint32_t nc = 0;
    for (uint32_t d = 0; d < ctx->n_devices; d++) {
        bst_kernel_variant *dv = &vars[(size_t)d * MAX_VARIANTS];
        uint32_t count = query_all(p, id, d, dv);
        for (uint32_t v = 0; v < count; v++) {
            cands[nc].device = d;
            cands[nc].variant = v;
            memcpy(cands[nc].name, dv[v].name, sizeof cands[nc].name);
            nc++;
        }
    }
    /* Emulated devices only when nothing else takes the node (or asked for). */
    if (!bsti_tune_include_emulated()) {
        uint32_t kept = 0;
        for (uint32_t c = 0; c < nc; c++)
            kept += !bsti_tune_device_emulated(ctx, cands[c].device);
        if (kept > 0 && kept < nc) {
            uint32_t w = 0;
            for (uint32_t c = 0; c < nc; c++)
                if (!bsti_tune_device_emulated(ctx, cands[c].device))
                    cands[w++] = cands[c];
            nc = w;
        }
    }
    rn->cands = cands;
    rn->n_cands = nc;
    if (nc == 0) { /* the static rule reports what every device said */
        free(vars);
        return BST_OK;
    }
    /* Ops follow their weights: a candidate that would need a second copy of a weight, or more
     * memory than its device has, is not measured. When every candidate needs a second copy
     * (no kernel on the weight's device), the copy is allowed and logged. */
    uint8_t *fit = calloc(nc, 1);
    if (!fit) {
        free(vars);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: out of memory");
    }
    bool any_ok = false, any_copy = false;
    for (uint32_t c = 0; c < nc; c++) {
        fit[c] = (uint8_t)weights_fit(p, id, cands[c].device);
        any_ok = any_ok || fit[c] == FIT_OK;
        any_copy = any_copy || fit[c] == FIT_SECOND_COPY;
    }
    if (!any_ok && any_copy)
        for (uint32_t c = 0; c < nc; c++)
            if (fit[c] == FIT_SECOND_COPY)
                fit[c] = FIT_OK;
    uint32_t n_fit = 0, first_fit = nc;
    for (uint32_t c = 0; c < nc; c++)
        if (fit[c] == FIT_OK) {
            n_fit++;
            first_fit = first_fit < nc ? first_fit : c;
        }
    if (n_fit == 0) { /* nothing fits: the static rule places it, memory planning reports it */
        free(fit);
        free(vars);
        return BST_OK;
    }

    bsti_tune_db *db = bsti_tune_context_db(ctx);
    node_key_text kt;
    timing tm = {0};
    const int64_t bound_tokens = p->sym_bound[BST_SYM_N_TOKENS];
    const uint32_t kind = plan_kind;
    if (n_fit > 1 && (kind == BSTI_PLAN_BLEND || (kind == BSTI_PLAN_LOWERED && bound_tokens > 1))) {
        /* The per-token cost of both shapes the program runs: a decode step (n_tokens 1) plus
         * a bound-sized prompt chunk divided by its tokens. */
        uint64_t *decode = calloc(nc, sizeof *decode);
        bool *dhit = calloc(nc, sizeof *dhit);
        if (!decode || !dhit) {
            free(decode);
            free(dhit);
            free(fit);
            free(vars);
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: out of memory");
        }
        timing td = {0};
        plan_kind = BSTI_PLAN_DECODE;
        st = time_cands(p, id, cands, nc, n_fit, fit, vars, db, &kt, &td);
        for (uint32_t c = 0; c < nc; c++) {
            decode[c] = cands[c].kernel_ns;
            dhit[c] = cands[c].hit;
        }
        plan_kind = BSTI_PLAN_PROMPT;
        if (st == BST_OK && !td.frozen_miss)
            st = time_cands(p, id, cands, nc, n_fit, fit, vars, db, &kt, &tm);
        plan_kind = kind;
        int64_t bound = bound_tokens > 1 ? bound_tokens : 1;
        tm.frozen_miss = tm.frozen_miss || td.frozen_miss;
        tm.measured = tm.measured || td.measured;
        tm.usable = 0;
        for (uint32_t c = 0; c < nc; c++) {
            bsti_tune_cand *cd = &cands[c];
            cd->kernel_ns = decode[c] && cd->kernel_ns ? decode[c] + cd->kernel_ns / (uint64_t)bound
                                                       : 0;
            cd->hit = cd->hit && dhit[c];
            tm.usable += cd->kernel_ns != 0;
        }
        free(decode);
        free(dhit);
    } else if (n_fit > 1) {
        st = time_cands(p, id, cands, nc, n_fit, fit, vars, db, &kt, &tm);
    } else {
        node_key(p->g, id, &kt);
    }
    if (st != BST_OK) {
        free(fit);
        free(vars);
        return st;
    }
    const bool frozen_miss = tm.frozen_miss, measured = tm.measured;
    const uint32_t usable = tm.usable;
    free(vars);
    if (n_fit > 1 && (frozen_miss || usable == 0)) {
        rn->how = BSTI_TUNE_HOW_FROZEN_MISS;
        if (frozen_miss && p->tune->frozen_misses++ == 0)
            bsti_log(BST_LOG_WARN, "frozen tuning: no row for %%%u %s %s %s; static priority "
                     "used for it (bst_program_explain lists every such node)",
                     id, kt.op, kt.dtypes, kt.shape);
        /* Static priority among the devices the node's weights allow: the first one, its
         * first variant (candidates come in priority order). */
        uint32_t c0 = first_fit;
        free(fit);
        n->device = cands[c0].device;
        n->variant = cands[c0].variant;
        memcpy(p->variant_names[id], cands[c0].name, sizeof p->variant_names[id]);
        p->variant_names[id][sizeof p->variant_names[id] - 1] = '\0';
        home_weights(p, id, n->device);
        *out_placed = true;
        return BST_OK;
    }
    uint32_t best = first_fit;
    uint64_t best_cost = UINT64_MAX;
    for (uint32_t c = 0; c < nc; c++) {
        if (fit[c] != FIT_OK || (n_fit > 1 && cands[c].kernel_ns == 0))
            continue;
        cands[c].transfer_ns = transfers_for(p, db, id, cands[c].device);
        uint64_t cost = cands[c].kernel_ns + cands[c].transfer_ns;
        if (cost < best_cost) {
            best_cost = cost;
            best = c;
        }
    }
    free(fit);
    rn->chosen = best;
    rn->how = n_fit == 1 ? BSTI_TUNE_HOW_ONLY
                      : (measured ? BSTI_TUNE_HOW_MEASURED : BSTI_TUNE_HOW_HIT);
    if (rn->how == BSTI_TUNE_HOW_HIT)
        p->tune->hits++;
    else if (rn->how == BSTI_TUNE_HOW_MEASURED)
        p->tune->measured++;
    n->device = cands[best].device;
    n->variant = cands[best].variant;
    memcpy(p->variant_names[id], cands[best].name, sizeof p->variant_names[id]);
    p->variant_names[id][sizeof p->variant_names[id] - 1] = '\0';
    home_weights(p, id, n->device);
    *out_placed = true;
    return BST_OK;
}
