/*
 * runtime/tune_plan.c — the whole-graph check of kernel selection: per-node choices are
 * measured one node at a time, but a program runs as a whole (caches shared between
 * neighbouring nodes, launch overlap, transfers the per-node model prices only roughly), so
 * before a plan is committed the distinct candidate plans are run end to end and the fastest
 * is kept. DESIGN.md: "check the top plans as whole graphs (tokens/s) before committing".
 *
 * Candidates (tune.h, bsti_plan_kind):
 *   static        static priority (what --tune=off runs): the baseline a tuned plan must beat;
 *   tuned-prompt  per-node optimum measured at the program's bound shapes (n_tokens = n_batch);
 *   tuned-decode  per-node optimum measured at n_tokens = 1 (only when n_tokens is symbolic
 *                 with a bound above 1): a decode step may want other kernels than a prompt;
 *   tuned-blend   per-node optimum of the per-token cost of both shapes (decode_ns +
 *                 prompt_ns / bound), from the rows the two above measured: the best one
 *                 program can do for both, since a session runs one program for both;
 *   lowered       every high-level op (attention, ffn_swiglu, rms_norm_mul) lowered to its
 *                 primitives, which are then placed as tuned-blend places nodes (as tuned-prompt
 *                 when n_tokens is not symbolic). The other tuned plans keep a high-level op
 *                 whole when some device fuses it, so this candidate is what prices "fused"
 *                 against "lowered parts plus transfers" (DESIGN.md, "The IR").
 * Plans that place every node identically are measured once.
 *
 * Each is timed on the real program with representative inputs (i32 inputs zero, so every token
 * id and position is in range; float inputs small finite values): a decode step (n_tokens 1 at
 * n_kv = min(bound, DECODE_N_KV)) and a prompt chunk (n_tokens = min(bound, PROMPT_TOKENS) at
 * pos 0). All distinct candidates are alive at once and timed in interleaved rounds (one
 * warm-up each, then MIN_ROUNDS..ROUNDS rounds within CHECK_BUDGET_NS; medians kept): on a
 * shared machine the load drifts, and timing one plan after another would charge the drift to
 * whichever ran last. The score is the time per token of each, added: decode_ns + prompt_ns /
 * prompt_tokens. Candidates are ranked in the order above (static last) and a later one must
 * beat the kept one by more than NOISE, so a tuned plan is never replaced on noise, and static
 * priority wins only when it is measurably faster. The session then uses that one program for
 * both shapes (see runtime/model/session.c on why one program: its KV cache is the program's
 * state).
 *
 * Record: a plan_checks row (tune_db.h) keyed by a digest of the graph and of the machine
 * (devices, drivers, plugins, threads, ISA). Cached mode rebuilds only the recorded plan and
 * keeps it when it places every node as it did then (its placement digest matches); otherwise
 * the check runs again. Frozen mode uses the row, or without one the per-node rows unchecked
 * (reported). Full mode always checks. After the check the winner's inputs and states are
 * zeroed again, as a new program's are.
 */
#include "runtime/tune.h"

#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DECODE_N_KV 256
#define PROMPT_TOKENS 64
#define ROUNDS 7u
#define MIN_ROUNDS 3u
#define NOISE 0.05
/* Two programs (decode and prompt) cost a second copy of the weights that differ between them
 * and KV rows copied at each switch: worth it only when they save this share of the time per
 * token against the best single plan. */
#define SPLIT_GAIN 0.15
#define CHECK_BUDGET_NS 6000000000ull
/* Bump when the candidates, the inputs or the score change: old rows then miss. */
#define CHECK_VERSION 2u

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1); }

static uint64_t hash_type(uint64_t h, const bsti_type *t)
{
    uint32_t rank = t->rank <= BST_MAX_DIMS ? t->rank : BST_MAX_DIMS;
    h = fnv(h, &t->dtype, sizeof t->dtype);
    h = fnv(h, &rank, sizeof rank);
    h = fnv(h, t->shape, rank * sizeof t->shape[0]);
    h = fnv(h, t->sym, rank * sizeof t->sym[0]);
    return h;
}

/* The caller's graph: ops, types, wiring, attributes and names (not weight data: a plan
 * depends on shapes, not values). */
static uint64_t graph_hash(const bst_graph *g)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint32_t v = CHECK_VERSION;
    h = fnv(h, &v, sizeof v);
    for (uint32_t id = 0; id < g->n_nodes; id++) {
        const bsti_node *n = &g->nodes[id];
        h = fnv(h, &n->op, sizeof n->op);
        h = hash_type(h, &n->type);
        h = fnv(h, n->inputs, n->n_inputs * sizeof n->inputs[0]);
        for (uint32_t i = 0; i < n->n_attrs && i < BST_MAX_ATTRS; i++) {
            const bst_attr *a = &n->attrs[i];
            uint32_t count = a->count <= BST_MAX_DIMS ? a->count : BST_MAX_DIMS;
            h = fnv(h, &a->key, sizeof a->key);
            h = fnv(h, a->ints, count * sizeof a->ints[0]);
            h = fnv(h, &a->f, sizeof a->f);
        }
        h = fnv_str(h, n->name);
    }
    return h;
}

/* Everything about the machine the kernel key holds, for the devices this build may use. */
static uint64_t env_hash(const bst_context *ctx)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, &ctx->n_threads, sizeof ctx->n_threads);
    uint64_t isa = bsti_tune_isa_mask();
    h = fnv(h, &isa, sizeof isa);
    for (uint32_t d = 0; d < ctx->n_devices; d++) {
        const bsti_device *dev = &ctx->devices[d];
        h = fnv(h, &dev->info.fingerprint, sizeof dev->info.fingerprint);
        h = fnv_str(h, dev->info.driver_version);
        h = fnv_str(h, dev->plugin->name);
        h = fnv_str(h, dev->plugin->version);
    }
    return h;
}

/* The placement a built program ended with: device and kernel of every compute node. */
static uint64_t placement_digest(const bst_program *p)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t id = 0; id < p->g->n_nodes; id++) {
        const bsti_node *n = &p->g->nodes[id];
        if (n->device == BSTI_NONE || n->device >= p->ctx->n_devices ||
            bsti_prog_is_alias_op(n->op))
            continue;
        h = fnv(h, &id, sizeof id);
        h = fnv(h, &p->ctx->devices[n->device].info.fingerprint, sizeof(uint64_t));
        h = fnv_str(h, p->ctx->devices[n->device].plugin->name);
        h = fnv_str(h, p->variant_names[id]);
    }
    return h;
}

/* What building the candidates cost, summed over all of them (explain's plan section reports
 * it next to the kept program's own counts). */
typedef struct effort {
    uint32_t hits, measured, frozen_misses;
    uint64_t measure_ns;
} effort;

static bst_status build_kind(bst_context *ctx, const bst_graph *graph, uint32_t kind,
                             bst_program **out_program, uint32_t *out_failed_device, effort *e)
{
    uint32_t saved = bsti_tune_plan_kind();
    bsti_tune_set_plan_kind(kind);
    bst_status st = bsti_prog_build(ctx, graph, NULL, out_program, out_failed_device);
    bsti_tune_set_plan_kind(saved);
    if (st == BST_OK) /* its weights' prepared sizes price memory in the builds that follow */
        bsti_tune_note_program(*out_program);
    if (st == BST_OK && (*out_program)->tune) {
        const bsti_tune_report *r = (*out_program)->tune;
        e->hits += r->hits;
        e->measured += r->measured;
        e->frozen_misses += r->frozen_misses;
        e->measure_ns += r->measure_ns;
    }
    return st;
}

/* Writes `fill` into every input (and, zeroing, every state) of p. */
static bst_status fill_values(bst_program *p, bool random)
{
    bst_status st = BST_OK;
    for (uint32_t v = 0; v < p->g->n_nodes && st == BST_OK; v++) {
        const bsti_node *n = &p->g->nodes[v];
        bool is_state = n->op == BST_OP_STATE;
        if (n->op != BST_OP_INPUT && !is_state)
            continue;
        if (p->root[v] != v)
            continue;
        uint64_t bytes = 0;
        if (bsti_type_nbytes(&n->type, &bytes) != BST_OK || bytes == 0)
            continue;
        uint8_t *buf = calloc(1, (size_t)bytes);
        if (!buf)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "plan check: out of memory");
        if (random && !is_state && n->type.dtype != BST_DTYPE_I32) {
            uint64_t x = 0x9E3779B97F4A7C15ull ^ v;
            for (uint64_t i = 0; i < bytes; i++) { /* 0x30..0x3B: small finite in any format */
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[i] = (uint8_t)(0x30u | (x & 0x0Bu));
            }
        }
        st = bsti_prog_write_input(p, v, n->name ? n->name : "?", buf, bytes);
        free(buf);
    }
    return st;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct shapes {
    int64_t prompt_tokens, decode_n_kv, bound_kv, bound_tokens;
} shapes;

static shapes shapes_of(const bst_program *p)
{
    shapes s;
    int64_t bt = p->sym_bound[BST_SYM_N_TOKENS], bk = p->sym_bound[BST_SYM_N_KV];
    s.prompt_tokens = bt > 0 ? (bt < PROMPT_TOKENS ? bt : PROMPT_TOKENS) : 1;
    s.decode_n_kv = bk > 0 ? (bk < DECODE_N_KV ? bk : DECODE_N_KV) : 1;
    s.bound_kv = bk;
    s.bound_tokens = bt;
    return s;
}

/* Wall time of one run of p: a decode step (prompt false) or a prompt chunk. */
static bst_status run_once_timed(bst_program *p, const shapes *s, bool prompt, uint64_t *out_ns)
{
    bst_run_params rp;
    memset(&rp, 0, sizeof rp);
    rp.struct_size = (uint32_t)sizeof rp;
    if (prompt) { /* at pos 0; n_kv covers the chunk's own rows */
        rp.n_tokens = s->bound_tokens > 0 ? s->prompt_tokens : 1;
        rp.n_kv = s->bound_kv > 0 ? s->prompt_tokens : 1;
        rp.pos = 0;
    } else { /* the last row of a decode_n_kv-long context */
        rp.n_tokens = 1;
        rp.n_kv = s->decode_n_kv;
        rp.pos = s->bound_kv > 0 ? s->decode_n_kv - 1 : 0;
    }
    uint64_t t0 = now_ns();
    bst_status st = bsti_prog_run_once(p, &rp);
    uint64_t t1 = now_ns();
    *out_ns = t1 > t0 ? t1 - t0 : 1;
    return st;
}

static uint64_t median(uint64_t *v, uint32_t n)
{
    qsort(v, n, sizeof v[0], cmp_u64);
    return n ? v[n / 2] : 0;
}

/* Times the distinct candidate programs (progs[k] non-NULL) in interleaved rounds — every
 * candidate once per round, decode step then prompt chunk — so that load from other processes
 * drifting during the check falls on all candidates alike rather than on whichever ran last.
 * A candidate that fails to run is no longer a candidate (its program stays in progs). */
static void measure_plans(bst_program **progs, const shapes *s, bsti_plan_check *c)
{
    uint64_t dec[BSTI_PLAN_COUNT][ROUNDS], pro[BSTI_PLAN_COUNT][ROUNDS];
    bool single_shape = s->bound_tokens <= 1; /* the "prompt" would be the same decode step */
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
        if (!progs[k])
            continue;
        uint64_t ns = 0;
        bst_status st = fill_values(progs[k], true);
        if (st == BST_OK) /* warm-up: first runs pay lazy compiles and page faults */
            st = run_once_timed(progs[k], s, false, &ns);
        if (st == BST_OK && !single_shape)
            st = run_once_timed(progs[k], s, true, &ns);
        if (st != BST_OK) {
            bsti_log(BST_LOG_DEBUG, "plan check: the %s plan did not run: %s",
                     bsti_plan_kind_name(k), bst_last_error());
            c->candidate[k] = false;
        }
    }
    uint32_t rounds = 0;
    uint64_t start = now_ns();
    while (rounds < ROUNDS && (rounds < MIN_ROUNDS || now_ns() - start < CHECK_BUDGET_NS)) {
        for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
            if (!progs[k] || !c->candidate[k])
                continue;
            bst_status st = run_once_timed(progs[k], s, false, &dec[k][rounds]);
            if (st == BST_OK && !single_shape)
                st = run_once_timed(progs[k], s, true, &pro[k][rounds]);
            else
                pro[k][rounds] = dec[k][rounds];
            if (st != BST_OK) {
                bsti_log(BST_LOG_DEBUG, "plan check: the %s plan did not run: %s",
                         bsti_plan_kind_name(k), bst_last_error());
                c->candidate[k] = false;
            }
        }
        rounds++;
    }
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
        if (!progs[k])
            continue;
        if (c->candidate[k]) {
            c->decode_ns[k] = median(dec[k], rounds);
            c->prompt_ns[k] = median(pro[k], rounds);
        }
        /* Inputs and states zeroed again, as a new program's are. */
        if (fill_values(progs[k], false) != BST_OK) {
            bsti_log(BST_LOG_DEBUG, "plan check: resetting the %s plan failed: %s",
                     bsti_plan_kind_name(k), bst_last_error());
            c->candidate[k] = false;
        }
    }
}

static double score(uint64_t decode_ns, uint64_t prompt_ns, uint32_t prompt_tokens)
{
    return (double)decode_ns + (double)prompt_ns / (double)(prompt_tokens ? prompt_tokens : 1);
}

/* Gives p a report (the static plan has none) and records the check. The report's own counts
 * (hits, measured, frozen misses, measure time) stay those of p's build: they describe the kept
 * program. What building every candidate cost, the discarded ones included, goes into the
 * check's all_* fields. */
static bst_status attach(bst_program *p, const bsti_plan_check *check, const effort *e)
{
    if (!p->tune) {
        p->tune = calloc(1, sizeof *p->tune);
        if (!p->tune)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "plan check: out of memory");
        p->tune->mode = p->ctx->tune_mode;
    }
    p->tune->plan = *check;
    p->tune->plan.all_hits = e->hits;
    p->tune->plan.all_measured = e->measured;
    p->tune->plan.all_measure_ns = e->measure_ns;
    return BST_OK;
}

static void row_to_check(const bsti_plan_row *row, bsti_plan_check *c)
{
    memset(c, 0, sizeof *c);
    c->source = 2;
    c->chosen = row->plan;
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
        c->decode_ns[k] = row->decode_ns[k];
        c->prompt_ns[k] = row->prompt_ns[k];
        c->candidate[k] = row->decode_ns[k] || row->prompt_ns[k];
        c->same_as[k] = k;
    }
    c->prompt_tokens = row->prompt_tokens;
    c->decode_n_kv = row->decode_n_kv;
    c->tuned_digest = row->digest;
    c->split_decode = row->split_decode;
    c->split_prompt = row->split_prompt;
}

static void log_choice(const bst_program *p, const bsti_plan_check *c)
{
    char line[512];
    size_t len = 0;
    line[0] = '\0';
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT && len < sizeof line; k++) {
        if (!c->candidate[k])
            continue;
        int w = snprintf(line + len, sizeof line - len, "%s%s %.2f ms/%.2f ms", len ? ", " : "",
                         bsti_plan_kind_name(k), (double)c->decode_ns[k] / 1e6,
                         (double)c->prompt_ns[k] / 1e6);
        len += w > 0 ? (size_t)w : 0;
    }
    bsti_log(BST_LOG_INFO, "plan check (%u nodes): kept %s; decode step/prompt chunk of %u: %s; "
             "%.2f s", p->g->n_nodes, bsti_plan_kind_name(c->chosen), c->prompt_tokens, line,
             (double)c->check_ns / 1e9);
}

/* Builds the distinct candidates, measures them together and keeps the best. `tuned` is the
 * tuned-prompt plan, built by the caller; this takes ownership of it. */
static bst_status full_check(bst_context *ctx, const bst_graph *graph, bst_program *tuned,
                             bool want_split, bst_program **out_program,
                             bst_program **out_prompt, bsti_plan_check *c, effort *e)
{
    uint64_t t0 = now_ns();
    memset(c, 0, sizeof *c);
    c->source = 1;
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++)
        c->same_as[k] = k;
    shapes s = shapes_of(tuned);
    c->prompt_tokens = (uint32_t)s.prompt_tokens;
    c->decode_n_kv = (uint32_t)s.decode_n_kv;
    bst_program *progs[BSTI_PLAN_COUNT] = {NULL};
    uint64_t digest[BSTI_PLAN_COUNT] = {0};
    progs[BSTI_PLAN_PROMPT] = tuned;
    digest[BSTI_PLAN_PROMPT] = placement_digest(tuned);
    c->tuned_digest = digest[BSTI_PLAN_PROMPT];
    c->candidate[BSTI_PLAN_PROMPT] = true;
    /* The order the per-node measurement ranks them in; a later candidate must beat an
     * earlier one by more than NOISE (static priority is last: a tuned plan is kept unless
     * static priority is measurably faster). */
    const uint32_t order[BSTI_PLAN_COUNT] = {BSTI_PLAN_PROMPT, BSTI_PLAN_BLEND, BSTI_PLAN_DECODE,
                                             BSTI_PLAN_LOWERED, BSTI_PLAN_STATIC};
    for (uint32_t i = 1; i < BSTI_PLAN_COUNT; i++) {
        uint32_t k = order[i];
        if (k != BSTI_PLAN_STATIC && k != BSTI_PLAN_LOWERED && s.bound_tokens <= 1)
            continue; /* no decode shape apart from the bound */
        bst_program *alt = NULL;
        uint32_t fd = BSTI_NONE;
        if (build_kind(ctx, graph, k, &alt, &fd, e) != BST_OK) {
            bsti_log(BST_LOG_DEBUG, "plan check: the %s plan did not build: %s",
                     bsti_plan_kind_name(k), bst_last_error());
            continue;
        }
        digest[k] = placement_digest(alt);
        c->candidate[k] = true;
        for (uint32_t j = 0; j < i; j++) {
            uint32_t o = order[j];
            if (c->candidate[o] && c->same_as[o] == o && digest[o] == digest[k]) {
                c->same_as[k] = o;
                break;
            }
        }
        if (c->same_as[k] != k)
            bst_program_destroy(alt); /* places every node as an earlier one: not run twice */
        else
            progs[k] = alt;
    }
    measure_plans(progs, &s, c);
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++)
        if (c->candidate[k] && c->same_as[k] != k) {
            uint32_t o = c->same_as[k];
            c->candidate[k] = c->candidate[o];
            c->decode_ns[k] = c->decode_ns[o];
            c->prompt_ns[k] = c->prompt_ns[o];
        }
    uint32_t chosen = BSTI_PLAN_COUNT;
    for (uint32_t i = 0; i < BSTI_PLAN_COUNT; i++) {
        uint32_t k = order[i];
        if (!progs[k] || !c->candidate[k])
            continue;
        if (chosen == BSTI_PLAN_COUNT) {
            chosen = k;
            continue;
        }
        double sk = score(c->decode_ns[k], c->prompt_ns[k], c->prompt_tokens);
        double sc = score(c->decode_ns[chosen], c->prompt_ns[chosen], c->prompt_tokens);
        if (sk < sc * (1.0 - NOISE))
            chosen = k;
    }
    /* The best at each shape alone, by the same rule (order, noise). */
    uint32_t bd = BSTI_PLAN_COUNT, bp = BSTI_PLAN_COUNT;
    for (uint32_t i = 0; i < BSTI_PLAN_COUNT; i++) {
        uint32_t k = order[i];
        if (!progs[k] || !c->candidate[k])
            continue;
        if (bd == BSTI_PLAN_COUNT ||
            (double)c->decode_ns[k] < (double)c->decode_ns[bd] * (1.0 - NOISE))
            bd = k;
        if (bp == BSTI_PLAN_COUNT ||
            (double)c->prompt_ns[k] < (double)c->prompt_ns[bp] * (1.0 - NOISE))
            bp = k;
    }
    c->split_decode = c->split_prompt = BSTI_PLAN_COUNT;
    if (chosen != BSTI_PLAN_COUNT && bd != bp && s.bound_tokens > 1) {
        double both = score(c->decode_ns[bd], c->prompt_ns[bp], c->prompt_tokens);
        if (both < score(c->decode_ns[chosen], c->prompt_ns[chosen], c->prompt_tokens) *
                       (1.0 - SPLIT_GAIN)) {
            c->split_decode = bd;
            c->split_prompt = bp;
        }
    }
    if (chosen == BSTI_PLAN_COUNT) {
        /* Nothing ran on made-up inputs (a graph whose inputs must hold particular values):
         * the per-node plan, unchecked, as frozen mode without a plan row. */
        bsti_log(BST_LOG_INFO, "plan check: no candidate plan ran end to end (%s); keeping the "
                 "per-node plan unchecked", bst_last_error());
        chosen = BSTI_PLAN_PROMPT;
        c->source = 3;
        c->split_decode = c->split_prompt = BSTI_PLAN_COUNT;
    }
    bool split = want_split && c->split_decode != BSTI_PLAN_COUNT;
    for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++)
        if (split ? (k != bd && k != bp) : k != chosen)
            bst_program_destroy(progs[k]);
    c->chosen = chosen;
    c->check_ns = now_ns() - t0;
    *out_program = progs[split ? bd : chosen];
    *out_prompt = split ? progs[bp] : NULL;
    return BST_OK;
}

/* Gives each kept program the check's record, with its role. On failure both are destroyed. */
static bst_status finish(bst_program *p, bst_program *prompt, bsti_plan_check *check,
                         const effort *e, bst_program **out_program, bst_program **out_prompt)
{
    check->role = prompt ? 1 : 0;
    bst_status st = attach(p, check, e);
    if (st == BST_OK && prompt) {
        check->role = 2;
        st = attach(prompt, check, e);
    }
    if (st != BST_OK) {
        bst_program_destroy(p);
        bst_program_destroy(prompt);
        return st;
    }
    *out_program = p;
    *out_prompt = prompt;
    return BST_OK;
}

/* Builds kind k, or hands over `tuned` when k is the tuned-prompt plan (each at most once). */
static bst_status take_kind(bst_context *ctx, const bst_graph *graph, uint32_t k,
                            bst_program **tuned, bst_program **out, uint32_t *out_failed,
                            effort *e)
{
    if (k == BSTI_PLAN_PROMPT && *tuned) {
        *out = *tuned;
        *tuned = NULL;
        return BST_OK;
    }
    return build_kind(ctx, graph, k, out, out_failed, e);
}

static bst_status build_checked(bst_context *ctx, const bst_graph *graph, bool want_split,
                                bst_program **out_program, bst_program **out_prompt,
                                uint32_t *out_failed_device)
{
    *out_program = NULL;
    *out_prompt = NULL;
    *out_failed_device = BSTI_NONE;
    bsti_tune_db *db = bsti_tune_context_db(ctx);
    const uint64_t gh = graph_hash(graph), eh = env_hash(ctx);
    bsti_plan_row row;
    bool found = false;
    if (db && ctx->tune_mode != BST_TUNE_FULL &&
        bsti_tune_db_get_plan(db, gh, eh, bst_version(), &row, &found) != BST_OK) {
        bsti_log(BST_LOG_DEBUG, "plan check: lookup failed: %s", bst_last_error());
        found = false;
    }
    effort e = {0};
    bsti_plan_check check;
    memset(&check, 0, sizeof check);
    check.split_decode = check.split_prompt = BSTI_PLAN_COUNT;
    /* The tuned-prompt plan is built first in every mode: the recorded check is only valid
     * while it places every node as it did then (same per-node rows, same kernels). */
    bst_program *tuned = NULL;
    bst_status st = build_kind(ctx, graph, BSTI_PLAN_PROMPT, &tuned, out_failed_device, &e);
    if (st != BST_OK)
        return st;
    bool stale = false;
    if (found && placement_digest(tuned) == row.digest) {
        row_to_check(&row, &check);
        bool split = want_split && row.split_decode < BSTI_PLAN_COUNT;
        bst_program *p = NULL, *q = NULL;
        st = take_kind(ctx, graph, split ? row.split_decode : row.plan, &tuned, &p,
                       out_failed_device, &e);
        if (st == BST_OK && split)
            st = take_kind(ctx, graph, row.split_prompt, &tuned, &q, out_failed_device, &e);
        bst_program_destroy(tuned);
        if (st != BST_OK) {
            bst_program_destroy(p);
            return st;
        }
        return finish(p, q, &check, &e, out_program, out_prompt);
    }
    stale = found;
    if (ctx->tune_mode == BST_TUNE_FROZEN) {
        /* Frozen never measures: the per-node rows, unchecked, and said so. */
        check.source = 3;
        check.chosen = BSTI_PLAN_PROMPT;
        bsti_log(BST_LOG_INFO, "frozen tuning: %s whole-graph plan row for this program; using "
                 "the per-node rows unchecked", stale ? "a stale" : "no");
        return finish(tuned, NULL, &check, &e, out_program, out_prompt);
    }
    if (stale)
        bsti_log(BST_LOG_DEBUG, "plan check: the recorded plan was made on other per-node "
                 "choices; checking again");
    bst_program *p = NULL, *q = NULL;
    st = full_check(ctx, graph, tuned, want_split, &p, &q, &check, &e);
    if (st != BST_OK)
        return st;
    log_choice(p, &check);
    if (db && check.source == 1) { /* an unchecked fallback is not recorded */
        memset(&row, 0, sizeof row);
        row.plan = check.chosen;
        row.digest = check.tuned_digest;
        for (uint32_t k = 0; k < BSTI_PLAN_COUNT; k++) {
            row.decode_ns[k] = check.candidate[k] ? check.decode_ns[k] : 0;
            row.prompt_ns[k] = check.candidate[k] ? check.prompt_ns[k] : 0;
        }
        row.prompt_tokens = check.prompt_tokens ? check.prompt_tokens : 1;
        row.decode_n_kv = check.decode_n_kv ? check.decode_n_kv : 1;
        row.timestamp = (int64_t)time(NULL);
        row.split_decode = check.split_decode;
        row.split_prompt = check.split_prompt;
        if (bsti_tune_db_put_plan(db, gh, eh, bst_version(), &row) != BST_OK)
            bsti_log(BST_LOG_DEBUG, "plan check: storing the plan failed: %s", bst_last_error());
    }
    return finish(p, q, &check, &e, out_program, out_prompt);
}

bst_status bsti_tune_build(bst_context *ctx, const bst_graph *graph, const bool *excluded,
                           bst_program **out_program, uint32_t *out_failed_device)
{
    bool any_excluded = false;
    for (uint32_t d = 0; excluded && d < ctx->n_devices; d++)
        any_excluded = any_excluded || excluded[d];
    if (ctx->tune_mode == BST_TUNE_OFF || any_excluded)
        return bsti_prog_build(ctx, graph, excluded, out_program, out_failed_device);
    bst_program *none = NULL;
    return build_checked(ctx, graph, false, out_program, &none, out_failed_device);
}

bst_status bsti_tune_build_split(bst_context *ctx, const bst_graph *graph,
                                 bst_program **out_program, bst_program **out_prompt)
{
    if (out_program)
        *out_program = NULL;
    if (out_prompt)
        *out_prompt = NULL;
    if (!ctx || !graph || !out_program || !out_prompt)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_build_split: NULL argument");
    if (ctx->tune_mode == BST_TUNE_OFF)
        return bst_program_create(ctx, graph, out_program);
    uint32_t failed = BSTI_NONE;
    bst_status st = build_checked(ctx, graph, true, out_program, out_prompt, &failed);
    if (st != BST_OK && failed != BSTI_NONE) {
        /* A device failed while building: bst_program_create re-places without it (one
         * program, unchecked), as it would for any program. */
        bsti_log(BST_LOG_DEBUG, "plan check: %s; building without the failed device",
                 bst_last_error());
        return bst_program_create(ctx, graph, out_program);
    }
    return st;
}

/* --- a session's two programs share its KV cache rows --- */

static uint32_t find_state(const bst_program *p, const char *name)
{
    for (uint32_t v = 0; v < p->g->n_nodes; v++) {
        const bsti_node *n = &p->g->nodes[v];
        if (n->op == BST_OP_STATE && n->name && strcmp(n->name, name) == 0 && p->root[v] == v)
            return v;
    }
    return BSTI_NONE;
}

/* A location of v holding its newest contents: its holder's, else any. */
static uint32_t newest_device(const bst_program *p, uint32_t v)
{
    uint32_t h = p->holder[v];
    if (h < p->ctx->n_devices && bsti_memplan_find(&p->plan, v, h))
        return h;
    for (uint32_t d = 0; d < p->ctx->n_devices; d++)
        if (bsti_memplan_find(&p->plan, v, d))
            return d;
    return BSTI_NONE;
}

bst_status bsti_tune_sync_states(bst_program *dst, bst_program *src, uint64_t first,
                                 uint64_t count)
{
    if (!dst || !src)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_sync_states: NULL argument");
    if (count == 0)
        return BST_OK;
    bst_status st = BST_OK;
    for (uint32_t v = 0; v < src->g->n_nodes && st == BST_OK; v++) {
        const bsti_node *n = &src->g->nodes[v];
        if (n->op != BST_OP_STATE || !n->name || src->root[v] != v)
            continue;
        uint32_t w = find_state(dst, n->name);
        if (w == BSTI_NONE)
            return bsti_fail(BST_ERR_INTERNAL, "state \"%s\" is missing from the other program",
                             n->name);
        const bsti_type *t = &n->type, *u = &dst->g->nodes[w].type;
        uint64_t bytes = 0;
        if (t->rank == 0 || t->dtype != u->dtype || t->rank != u->rank ||
            memcmp(t->shape, u->shape, t->rank * sizeof t->shape[0]) != 0 ||
            bsti_type_nbytes(t, &bytes) != BST_OK || t->shape[0] <= 0)
            return bsti_fail(BST_ERR_INTERNAL, "state \"%s\" differs between the programs",
                             n->name);
        uint64_t rows = (uint64_t)t->shape[0], row_bytes = bytes / rows;
        if (first > rows || count > rows - first)
            return bsti_fail(BST_ERR_INVALID_ARG, "state \"%s\": rows %llu..%llu outside %llu",
                             n->name, (unsigned long long)first,
                             (unsigned long long)(first + count), (unsigned long long)rows);
        uint64_t off = first * row_bytes, size = count * row_bytes;
        uint32_t sd = newest_device(src, v);
        const bsti_value_loc *sl = sd != BSTI_NONE ? bsti_memplan_find(&src->plan, v, sd) : NULL;
        if (!sl)
            return bsti_fail(BST_ERR_INTERNAL, "state \"%s\" has no location", n->name);
        uint8_t *buf = malloc((size_t)size);
        if (!buf)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "copying KV rows: out of memory");
        const bsti_device *sdev = &src->ctx->devices[sd];
        bsti_prog_clear_error();
        st = sdev->plugin->api.buffer_read(sdev->handle, bsti_prog_loc_buffer(src, sl),
                                           sl->offset + off, buf, size);
        if (st != BST_OK)
            st = bsti_prog_backend_error(src, sd, st, "reading state \"%s\"", n->name);
        for (uint32_t d = 0; d < dst->ctx->n_devices && st == BST_OK; d++) {
            const bsti_value_loc *dl = bsti_memplan_find(&dst->plan, w, d);
            if (!dl)
                continue;
            const bsti_device *ddev = &dst->ctx->devices[d];
            bsti_prog_clear_error();
            st = ddev->plugin->api.buffer_write(ddev->handle, bsti_prog_loc_buffer(dst, dl),
                                                dl->offset + off, buf, size);
            if (st != BST_OK)
                st = bsti_prog_backend_error(dst, d, st, "writing state \"%s\"", n->name);
        }
        free(buf);
    }
    return st;
}
