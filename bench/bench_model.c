/*
 * bench/bench_model.c — whole-model speed, as llama-bench measures it: prompt processing (one
 * batch of n_prompt tokens from an empty cache, "pp512") and generation (n_gen single-token
 * steps from an empty cache, "tg128"), each repeated with the cache cleared in between, for each
 * backend selection asked. Cold and warm are kept apart: model load, session creation (which
 * compiles every bucket the session can meet) and the first repetition of each test are the
 * cold costs; the medians of the later repetitions are the warm speeds.
 *
 * Depth (-d N, llama-bench's --n-depth): each repetition of either test then starts from a cache
 * holding N tokens ("tg128 @ d4096"), evaluated untimed right before it (the cache cleared
 * first), since long-context generation is bound by attention reading that cache. The timed call
 * then continues from the prefilled position instead of clearing the cache.
 *
 * The roofline: generating a token reads every weight once and the KV cache written so far, so
 * the fastest possible generation is the measured read bandwidth divided by those bytes per
 * token. The library counts the weight bytes when it loads the model
 * (bst_model_info.weight_bytes_per_token: every weight, except an input embedding that has a
 * separate output head, of which a token reads one row). The cache's bytes grow with the
 * position: step i of tg (from a cache holding `depth` tokens) reads depth + i + 1 positions of
 * K and V in every layer, depth + (n_gen + 1) / 2 positions on average. At tg128 from an empty
 * cache that is ~3% of SmolLM2-135M's weight bytes with an f32 cache, at tg1024 ~25%: a roofline
 * of the weights alone would rate long generations too low, and deep ones far too low.
 *
 * Device time: after the measured repetitions, one more pp and one more tg repetition run with
 * partition profiling (BST_PROFILE_PARTITIONS: the same executables, each timed by the wall
 * clock and by the backend's last_execute_ns), and each device's times are summed. One
 * repetition, not `reps`: profiling executes synchronously (no event chaining), so it cannot be
 * the measured run, and a modelled device's time does not vary between runs. With
 * `--profile-level partitions` that repetition is also the one written to the trace. These
 * profiled repetitions start from the same depth; the prefill runs with their records ignored.
 */
#include "bench.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifdef BENCH_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

/* KV cache bytes a generation step reads, averaged over the n_gen steps from a cache holding
 * n_depth tokens: K and V of every layer's kv heads at n_depth + (n_gen + 1) / 2 positions. */
static double kv_bytes_per_token(const bst_model_info *mi, const bench_model_options *o)
{
    const double elem = o->kv_type == BST_DTYPE_F16 ? 2.0 : 4.0; /* --kv-type: f16 or f32 */
    const double per_position = 2.0 * mi->n_layers * mi->n_kv_heads * mi->head_dim * elem;
    return o->n_gen ? per_position * (o->n_depth + (o->n_gen + 1.0) / 2.0) : 0.0;
}

/* The model file's identity: SHA-256 (the hash model hubs publish) when this build has
 * libcrypto, else 64-bit FNV-1a; the prefix says which. Also counts the file's bytes. */
static void file_hash(const char *path, char *out, size_t size, uint64_t *out_bytes)
{
    *out_bytes = 0;
    snprintf(out, size, "unknown");
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    uint64_t total = 0;
    size_t n;
    bool ok = buf != NULL;
#ifdef BENCH_HAVE_LIBCRYPTO
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ok = ok && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    while (ok && (n = fread(buf, 1, CHUNK, f)) > 0) {
        ok = EVP_DigestUpdate(md, buf, n) == 1;
        total += n;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, digest, &dlen) == 1 && dlen == 32;
    EVP_MD_CTX_free(md);
    if (ok && size > 7 + 64) {
        size_t used = (size_t)snprintf(out, size, "sha256:");
        for (unsigned int i = 0; i < dlen; i++)
            used += (size_t)snprintf(out + used, size - used, "%02x", digest[i]);
    }
#else
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    while (ok && (n = fread(buf, 1, CHUNK, f)) > 0) {
        for (size_t i = 0; i < n; i++) {
            h ^= buf[i];
            h *= UINT64_C(0x100000001b3);
        }
        total += n;
    }
    ok = ok && !ferror(f);
    if (ok)
        snprintf(out, size, "fnv1a64:%016llx", (unsigned long long)h);
#endif
    free(buf);
    fclose(f);
    if (ok)
        *out_bytes = total;
}

/* --- the runs ------------------------------------------------------------------------------ */

typedef struct bandwidth_samples bandwidth_samples;
static bst_status sample_bandwidth(bandwidth_samples *s, bench_error *e);

typedef struct model_run {
    bst_session *session;
    const int32_t *tokens; /* the depth prefill's `depth` tokens, then the test's */
    uint32_t depth;
    uint32_t n;
    float *logits;
    bandwidth_samples *bw; /* tg: sampled before every repetition */
    bool *quiet;           /* when set, true while the prefill runs: profiled repetitions skip
                              its records */
} model_run;

/* Before a repetition, untimed: clears the cache and fills it with `depth` tokens, so the timed
 * call continues from there. bst_session_eval cuts them into chunks of the session's n_batch. */
static bst_status prefill_depth(model_run *m, bench_error *e)
{
    if (!m->depth)
        return BST_OK; /* the timed call clears the cache itself, as without depth it always did */
    bst_session_reset(m->session);
    if (m->quiet)
        *m->quiet = true;
    bst_status st = bst_session_eval(m->session, m->tokens, m->depth, false, NULL);
    if (m->quiet)
        *m->quiet = false;
    return st == BST_OK ? BST_OK : bench_lib_fail(e, st, "depth prefill");
}

/* Without depth the timed call clears the cache (a repetition from an empty cache); with depth
 * the prefill just did, and the call must keep what it wrote. */
static void reset_unless_depth(const model_run *m)
{
    if (!m->depth)
        bst_session_reset(m->session);
}

static bst_status pp_between(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    return prefill_depth(user, e);
}

static bst_status pp_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    model_run *m = user;
    reset_unless_depth(m);
    bst_status st = bst_session_eval(m->session, m->tokens + m->depth, m->n, false, m->logits);
    return st == BST_OK ? BST_OK : bench_lib_fail(e, st, "prompt evaluation");
}

/* The prefill first, then the bandwidth sample: the sample is the roofline's bandwidth, so it
 * is taken as close to the timed generation as it can be, and it leaves the caches as cold as
 * they are without depth (the prefill's last weights and cache rows evicted). */
static bst_status tg_between(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    model_run *m = user;
    bst_status st = prefill_depth(m, e);
    if (st == BST_OK && m->bw)
        st = sample_bandwidth(m->bw, e);
    return st;
}

static bst_status tg_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    model_run *m = user;
    reset_unless_depth(m);
    const int32_t *tokens = m->tokens + m->depth;
    for (uint32_t i = 0; i < m->n; i++) {
        bst_status st = bst_session_eval(m->session, &tokens[i], 1, false, m->logits);
        if (st != BST_OK)
            return bench_lib_fail(e, st, "generation step");
    }
    return BST_OK;
}

/* Peak RSS per row: Linux resets the high-water mark (VmHWM) to the current RSS when "5" is
 * written to /proc/self/clear_refs, so each row's peak excludes earlier rows and the bandwidth
 * buffer. Where that is refused, the row's peak is the process's lifetime peak (getrusage). */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static uint64_t peak_rss(bool was_reset)
{
    if (was_reset) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        unsigned long long kb = 0;
        bool found = false;
        while (f && !found && fgets(line, sizeof line, f))
            found = sscanf(line, "VmHWM: %llu kB", &kb) == 1;
        if (f)
            fclose(f);
        if (found)
            return (uint64_t)kb * 1024u;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss < 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024u;
}

static double seconds_since(uint64_t t0) { return (double)(bench_now_ns() - t0) * 1e-9; }

/* The read bandwidth sampled around the tg repetitions (before each, and once after the last)
 * gives the row's roofline. A machine's memory can change speed from one minute to the next
 * (seen on the development VM: 45 and 90 GB/s, flipping within a run), and with one bandwidth
 * measured at the start of the run the same binary's generation rated anywhere from 0.42 to
 * 0.80 of its roofline. Each sample allocates, reads and frees its own buffer, so no buffer is
 * held and no thread spins while the model runs; the high-water mark of resident memory is read
 * before each sample and reset after it, so the row's peak excludes the samples' buffers. */
#define BW_MAX_SAMPLES 64

struct bandwidth_samples {
    uint64_t bytes;
    uint32_t threads;
    double gbs[BW_MAX_SAMPLES];
    uint32_t n;
    bool rss_reset;    /* the high-water mark can be reset (reset_peak_rss) */
    uint64_t rss_peak; /* the row's peak before the samples' buffers */
};

static bst_status sample_bandwidth(bandwidth_samples *s, bench_error *e)
{
    if (s->n >= BW_MAX_SAMPLES)
        return BST_OK;
    if (s->rss_reset) {
        const uint64_t peak = peak_rss(true);
        s->rss_peak = peak > s->rss_peak ? peak : s->rss_peak;
    }
    /* One untimed read (first touch of the buffer's pages), then the median of three. */
    const bench_budget b = {0.0, 3, 3, 0};
    bench_bandwidth bw;
    bst_status st = bench_bandwidth_measure(s->bytes, s->threads, &b, &bw, e);
    if (st == BST_OK && bw.measured)
        s->gbs[s->n++] = bw.gbs;
    bench_timing_free(&bw.timing);
    if (s->rss_reset)
        s->rss_reset = reset_peak_rss();
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median, min and max of the samples into the row (left NaN without samples). */
static void store_bandwidth(bandwidth_samples *s, bench_model_result *r)
{
    if (!s->n)
        return;
    qsort(s->gbs, s->n, sizeof s->gbs[0], cmp_double);
    r->tg_bandwidth_min_gbs = s->gbs[0];
    r->tg_bandwidth_max_gbs = s->gbs[s->n - 1];
    r->tg_bandwidth_gbs =
        s->n % 2 ? s->gbs[s->n / 2] : (s->gbs[s->n / 2 - 1] + s->gbs[s->n / 2]) / 2;
}

const char *bench_tune_mode_name(uint32_t mode)
{
    static const char *const names[] = {"off", "cached", "full", "frozen"};
    return mode < 4 ? names[mode] : "?";
}

static const char *jstr_or(json_object *o, const char *key, const char *fallback)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : fallback;
}

/* Adds one explained node to the row's kernel summary. */
static void count_kernel(bench_model_result *r, json_object *node)
{
    const char *op = jstr_or(node, "op", "?"), *dev = jstr_or(node, "device", "");
    const char *kernel = jstr_or(node, "kernel", ""), *cache = jstr_or(node, "cache", "");
    bench_model_kernel *k = NULL;
    for (uint32_t i = 0; i < r->n_kernels && !k; i++)
        if (strcmp(r->kernels[i].op, op) == 0 && strcmp(r->kernels[i].device, dev) == 0 &&
            strcmp(r->kernels[i].kernel, kernel) == 0)
            k = &r->kernels[i];
    if (!k) {
        if (r->n_kernels == BENCH_MAX_MODEL_KERNELS)
            return;
        k = &r->kernels[r->n_kernels++];
        snprintf(k->op, sizeof k->op, "%s", op);
        snprintf(k->device, sizeof k->device, "%s", dev);
        snprintf(k->kernel, sizeof k->kernel, "%s", kernel);
    }
    k->nodes++;
    k->hits += strcmp(cache, "hit") == 0;
    k->measured += strcmp(cache, "miss-measured") == 0;
}

/* Kernel selection's account of the session, from bst_session_explain's JSON (the library's
 * only report of it): per program the tune mode, nodes whose rows came from the database
 * (hits), nodes measured now (misses) and frozen misses, and the seconds spent measuring
 * ({"programs":[{"name":"body","explain":{"hits":...}}, ...]}), summed over the programs, and
 * the nodes counted per (op, device, kernel). A failure leaves the counts at zero and tune_s
 * NaN: it is not a reason to fail the row. */
static void read_tune_report(const bst_session *session, bench_model_result *r)
{
    r->tune_s = NAN;
    char *text = NULL;
    if (bst_session_explain(session, true, &text) != BST_OK || !text)
        return;
    json_object *root = json_tokener_parse(text);
    bst_free(text);
    json_object *programs = NULL;
    if (!root || !json_object_object_get_ex(root, "programs", &programs) ||
        !json_object_is_type(programs, json_type_array)) {
        json_object_put(root);
        return;
    }
    double seconds = 0, check_seconds = 0;
    /* The whole-graph check's totals cover every candidate plan it built: the tuning work behind
     * the session, which the kept program's own counts miss when static priority won. A split
     * session's two programs carry the same totals, so they are taken once, not summed. */
    int64_t all_hits = -1, all_measured = -1;
    for (size_t i = 0; i < json_object_array_length(programs); i++) {
        json_object *pg = json_object_array_get_idx(programs, i), *v = NULL;
        /* {"name":..., "explain":{"tune_mode":..., "hits":...}} */
        json_object *ex = NULL;
        if (json_object_object_get_ex(pg, "explain", &ex) &&
            json_object_is_type(ex, json_type_object))
            pg = ex;
        json_object *plan = NULL;
        if (json_object_object_get_ex(pg, "plan", &plan) &&
            json_object_is_type(plan, json_type_object)) {
            if (json_object_object_get_ex(plan, "all_plans_hits", &v))
                all_hits = json_object_get_int64(v);
            if (json_object_object_get_ex(plan, "all_plans_measured", &v))
                all_measured = json_object_get_int64(v);
        }
        if (json_object_object_get_ex(pg, "plan_check_seconds", &v) &&
            json_object_get_double(v) > check_seconds)
            check_seconds = json_object_get_double(v);
        if (json_object_object_get_ex(pg, "hits", &v))
            r->tune_hits += (uint32_t)json_object_get_int64(v);
        if (json_object_object_get_ex(pg, "measured", &v))
            r->tune_measured += (uint32_t)json_object_get_int64(v);
        if (json_object_object_get_ex(pg, "frozen_misses", &v))
            r->tune_frozen_misses += (uint32_t)json_object_get_int64(v);
        if (json_object_object_get_ex(pg, "measure_seconds", &v))
            seconds += json_object_get_double(v);
        if (json_object_object_get_ex(pg, "nodes", &v) && json_object_is_type(v, json_type_array))
            for (size_t n = 0; n < json_object_array_length(v); n++)
                count_kernel(r, json_object_array_get_idx(v, n));
    }
    if (all_measured >= 0 && (uint32_t)all_measured > r->tune_measured)
        r->tune_measured = (uint32_t)all_measured;
    if (all_hits >= 0 && (uint32_t)all_hits > r->tune_hits)
        r->tune_hits = (uint32_t)all_hits;
    /* The check's time holds its measuring and the end-to-end runs of the candidate plans. */
    r->tune_s = check_seconds > seconds ? check_seconds : seconds;
    json_object_put(root);
}

/* One word for the row: did the database answer? Only nodes with a choice to make count
 * (a node with a single candidate is neither hit nor miss). */
static void classify_tune(bench_model_result *r)
{
    const char *c;
    if (strcmp(r->tune_mode, "off") == 0)
        c = "off";
    else if (r->tune_frozen_misses)
        c = "frozen-miss";
    else if (r->tune_measured && r->tune_hits)
        c = "partial";
    else if (r->tune_measured)
        c = "miss";
    else
        c = "hit";
    snprintf(r->tune_cache, sizeof r->tune_cache, "%s", c);
}

/* Device memory the session holds, per device of the row's context that holds any, each
 * matched to the document's device list by backend and fingerprint. */
static void read_memory(const bench_model_options *o, const bst_context *ctx,
                        const bst_session *session, bench_model_result *r)
{
    uint32_t n = bst_context_device_count(ctx);
    for (uint32_t d = 0; d < n && r->n_memory < BENCH_MAX_MODEL_DEVICES; d++) {
        bst_memory_usage u;
        memset(&u, 0, sizeof u);
        u.struct_size = sizeof u;
        if (bst_session_memory(session, d, &u) != BST_OK || u.total_bytes == 0)
            continue;
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        const char *backend = NULL;
        if (bst_context_device(ctx, d, &info, &backend) != BST_OK)
            continue;
        bench_model_memory *m = &r->memory[r->n_memory++];
        m->device = -1;
        for (uint32_t i = 0; i < o->n_devices; i++)
            if (o->devices[i].fingerprint == info.fingerprint &&
                strcmp(o->devices[i].backend, backend ? backend : "") == 0)
                m->device = (int32_t)i;
        snprintf(m->backend, sizeof m->backend, "%s", backend ? backend : "");
        snprintf(m->device_name, sizeof m->device_name, "%s", info.name);
        m->arena_bytes = u.arena_bytes;
        m->weight_bytes = u.weight_bytes;
        m->state_bytes = u.state_bytes;
        m->io_bytes = u.io_bytes;
        m->total_bytes = u.total_bytes;
    }
}

/* Device time of a profiled repetition: PARTITION records summed per context device, COPY
 * records' wall time summed. Forwards every record to `forward` when set (--profile). Records
 * that come while `quiet` (the depth prefill before the repetition) count nowhere. */
typedef struct time_acc {
    bench_profile *forward;
    bool quiet;
    struct {
        uint32_t parts, with_device;
        uint64_t device_ns, wall_ns;
    } dev[BENCH_MAX_MODEL_DEVICES];
    uint64_t copy_ns;
    bool lost; /* a record for a device index past BENCH_MAX_MODEL_DEVICES */
} time_acc;

static void time_acc_record(void *user, const bst_profile_record *rec)
{
    time_acc *a = user;
    if (a->quiet)
        return;
    if (a->forward)
        bench_profile_record(a->forward, rec);
    if (rec->kind == BST_PROFILE_COPY) {
        a->copy_ns += rec->wall_ns;
        return;
    }
    if (rec->kind != BST_PROFILE_PARTITION)
        return;
    if (rec->device >= BENCH_MAX_MODEL_DEVICES) {
        a->lost = true;
        return;
    }
    a->dev[rec->device].parts++;
    a->dev[rec->device].with_device += rec->device_ns > 0;
    a->dev[rec->device].device_ns += rec->device_ns;
    a->dev[rec->device].wall_ns += rec->wall_ns;
}

/* The row's entry for context device `d`, added (matched to the document's devices as
 * read_memory does) when new; NULL when the row is full or the device unknown. */
static bench_model_device_time *device_time_entry(const bench_model_options *o,
                                                  const bst_context *ctx, uint32_t d,
                                                  bench_model_result *r, int32_t *slot)
{
    if (slot[d] >= 0)
        return &r->device_times[slot[d]];
    if (r->n_device_times >= BENCH_MAX_MODEL_DEVICES)
        return NULL;
    bst_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    const char *backend = NULL;
    if (bst_context_device(ctx, d, &info, &backend) != BST_OK)
        return NULL;
    slot[d] = (int32_t)r->n_device_times;
    bench_model_device_time *t = &r->device_times[r->n_device_times++];
    memset(t, 0, sizeof *t);
    t->device = -1;
    for (uint32_t i = 0; i < o->n_devices; i++)
        if (o->devices[i].fingerprint == info.fingerprint &&
            strcmp(o->devices[i].backend, backend ? backend : "") == 0)
            t->device = (int32_t)i;
    snprintf(t->backend, sizeof t->backend, "%s", backend ? backend : "");
    snprintf(t->device_name, sizeof t->device_name, "%s", info.name);
    t->pp_device_tps = t->tg_device_tps = NAN;
    return t;
}

/* Folds one test's accumulator into the row: per-device sums and, when every partition on every
 * device reported a device time, the whole test's device-time rate (*out_tps). */
static void store_device_times(const bench_model_options *o, const bst_context *ctx,
                               const time_acc *a, bool pp, uint32_t n_tokens,
                               bench_model_result *r, int32_t *slot, double *out_tps)
{
    bool all = !a->lost;
    uint64_t total = a->copy_ns;
    uint32_t parts = 0;
    for (uint32_t d = 0; d < BENCH_MAX_MODEL_DEVICES; d++) {
        if (!a->dev[d].parts)
            continue;
        bench_model_device_time *t = device_time_entry(o, ctx, d, r, slot);
        bool dev_all = a->dev[d].with_device == a->dev[d].parts;
        all = all && dev_all && t;
        total += a->dev[d].device_ns;
        parts += a->dev[d].parts;
        if (!t)
            continue;
        double tps = dev_all && a->dev[d].device_ns
                         ? n_tokens / ((double)a->dev[d].device_ns * 1e-9)
                         : NAN;
        if (pp) {
            t->pp_partitions = a->dev[d].parts;
            t->pp_all_device = dev_all;
            t->pp_device_ns = a->dev[d].device_ns;
            t->pp_wall_ns = a->dev[d].wall_ns;
            t->pp_device_tps = tps;
        } else {
            t->tg_partitions = a->dev[d].parts;
            t->tg_all_device = dev_all;
            t->tg_device_ns = a->dev[d].device_ns;
            t->tg_wall_ns = a->dev[d].wall_ns;
            t->tg_device_tps = tps;
        }
    }
    *out_tps = all && parts && total ? n_tokens / ((double)total * 1e-9) : NAN;
}

/* One repetition outside bench_measure (the profiled ones): its untimed set-up, then the call. */
static bst_status run_once(model_run *m, bench_call_fn between, bench_call_fn call,
                           bench_error *e)
{
    bst_status st = between(m, 0, e);
    return st == BST_OK ? call(m, 0, e) : st;
}

/* The profiled pp and tg repetitions (see the top of the file). */
static bst_status device_time_reps(const bench_model_options *o, const bst_context *ctx,
                                   bst_session *session, model_run *m, bench_model_result *r,
                                   bench_error *e)
{
    time_acc a;
    int32_t slot[BENCH_MAX_MODEL_DEVICES];
    for (uint32_t i = 0; i < BENCH_MAX_MODEL_DEVICES; i++)
        slot[i] = -1;
    memset(&a, 0, sizeof a);
    bool fwd = o->profile && o->profile_level == BST_PROFILE_PARTITIONS;
    bst_status st = bst_session_set_profiling(session, BST_PROFILE_PARTITIONS, time_acc_record,
                                              &a);
    if (st != BST_OK)
        return bench_lib_fail(e, st, "enabling partition profiling");
    m->quiet = &a.quiet;
    if (o->n_prompt) {
        memset(&a, 0, sizeof a);
        a.forward = fwd ? o->profile : NULL;
        m->n = o->n_prompt;
        st = run_once(m, pp_between, pp_call, e);
        if (st == BST_OK)
            store_device_times(o, ctx, &a, true, o->n_prompt, r, slot, &r->pp_device_tps);
    }
    if (st == BST_OK && o->n_gen) {
        memset(&a, 0, sizeof a);
        a.forward = fwd ? o->profile : NULL;
        m->n = o->n_gen;
        st = run_once(m, tg_between, tg_call, e);
        if (st == BST_OK)
            store_device_times(o, ctx, &a, false, o->n_gen, r, slot, &r->tg_device_tps);
    }
    m->quiet = NULL;
    bst_status off = bst_session_set_profiling(session, BST_PROFILE_OFF, NULL, NULL);
    if (st == BST_OK && off != BST_OK)
        st = bench_lib_fail(e, off, "disabling profiling");
    return st;
}

/* The session's largest chunk: the prompt test's whole prompt, evaluated at once. The depth
 * prefill goes in chunks of it too, and with a short prompt (or none) those would make it a
 * crawl, so with depth it is at least min(depth, 512), llama-bench's micro-batch. */
static uint32_t session_batch(const bench_model_options *o)
{
    uint32_t n = o->n_prompt ? o->n_prompt : 1;
    if (o->n_depth) {
        const uint32_t prefill = o->n_depth < 512 ? o->n_depth : 512;
        n = n > prefill ? n : prefill;
    }
    return n;
}

/* One backend selection; problems become the row's status and reason. */
static void run_selection(const bench_model_options *o, const char *backends, double bw_gbs,
                          uint64_t bw_bytes, bench_model_result *r, bench_model_info *model_info)
{
    bench_info_fn info = o->info;
    void *info_user = o->info_user;
    snprintf(r->backends, sizeof r->backends, "%s", backends ? backends : "");
    snprintf(r->status, sizeof r->status, "failed");
    r->n_prompt = o->n_prompt;
    r->n_gen = o->n_gen;
    r->n_depth = o->n_depth;
    r->reps = o->reps;
    r->threads = o->threads;
    r->load_s = r->session_s = NAN;
    r->weight_bytes_per_token = NAN;
    r->kv_bytes_per_token = NAN;
    r->roofline_tps = NAN;
    r->roofline_fraction = NAN;
    r->tg_bandwidth_gbs = r->tg_bandwidth_min_gbs = r->tg_bandwidth_max_gbs = NAN;
    r->pp_cold_tps = r->tg_cold_tps = r->pp_tps = r->tg_tps = NAN; /* a test not run has none */
    r->pp_device_tps = r->tg_device_tps = NAN;
    r->tune_s = NAN;
    bool rss_reset = reset_peak_rss();
    bandwidth_samples bw = {.bytes = bw_bytes, .threads = o->threads, .rss_reset = rss_reset};
    snprintf(r->engine, sizeof r->engine, "bastion");
    snprintf(r->tune_mode, sizeof r->tune_mode, "%s", bench_tune_mode_name(o->tune_mode));
    snprintf(r->tune_cache, sizeof r->tune_cache, "%s", "");

    bst_context_options co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.n_threads = o->threads;
    co.backends = backends && backends[0] ? backends : NULL;
    co.plugin_paths = o->plugin_paths;
    co.tune_mode = o->tune_mode;
    co.no_cache = o->no_cache;
    bst_context *ctx = NULL;
    bst_model *model = NULL;
    bst_session *session = NULL;
    int32_t *tokens = NULL;
    float *logits = NULL;
    bench_error e;
    memset(&e, 0, sizeof e);
    bst_status st = bst_context_create(&co, &ctx);
    if (st != BST_OK) {
        bench_lib_fail(&e, st, "creating the context");
        goto done;
    }
    if (bst_context_device_count(ctx) == 0) {
        bench_fail(&e, BST_ERR_NO_DEVICE, "no device for backends '%s'",
                   backends && backends[0] ? backends : "(default)");
        goto done;
    }
    if (info)
        info(info_user, "loading the model");
    bst_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.struct_size = sizeof mo;
    uint64_t t0 = bench_now_ns();
    st = bst_model_load(ctx, o->path, &mo, &model);
    if (st != BST_OK) {
        bench_lib_fail(&e, st, "loading the model");
        goto done;
    }
    r->load_s = seconds_since(t0);
    bst_model_info mi;
    memset(&mi, 0, sizeof mi);
    mi.struct_size = sizeof mi;
    st = bst_model_get_info(model, &mi);
    if (st != BST_OK || mi.n_vocab == 0) {
        bench_lib_fail(&e, st != BST_OK ? st : BST_ERR_FORMAT, "model info");
        goto done;
    }
    if (mi.struct_size >= offsetof(bst_model_info, weight_bytes_per_token) +
                              sizeof mi.weight_bytes_per_token &&
        mi.weight_bytes_per_token > 0) {
        r->weight_bytes_per_token = (double)mi.weight_bytes_per_token;
        r->kv_bytes_per_token = kv_bytes_per_token(&mi, o);
        const double bytes = r->weight_bytes_per_token + r->kv_bytes_per_token;
        r->roofline_tps = bw_gbs > 0 ? bw_gbs * 1e9 / bytes : NAN;
    }
    if (!model_info->architecture[0]) {
        snprintf(model_info->name, sizeof model_info->name, "%s", mi.name ? mi.name : "");
        snprintf(model_info->architecture, sizeof model_info->architecture, "%s",
                 mi.architecture ? mi.architecture : "");
        model_info->n_params = mi.n_params;
    }
    bst_session_options so;
    memset(&so, 0, sizeof so);
    so.struct_size = sizeof so;
    uint32_t longest = o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen;
    so.n_ctx = o->n_depth + longest + 1;
    so.n_batch = session_batch(o);
    so.kv_type = o->kv_type;
    const char *kv_name = bst_dtype_name(o->kv_type ? (bst_dtype)o->kv_type : BST_DTYPE_F32);
    snprintf(r->kv_type, sizeof r->kv_type, "%s", kv_name ? kv_name : "?");
    if (info)
        info(info_user, "creating the session (compiling)");
    t0 = bench_now_ns();
    st = bst_session_create(model, &so, &session);
    if (st != BST_OK) {
        bench_lib_fail(&e, st, "creating the session");
        goto done;
    }
    r->session_s = seconds_since(t0);
    read_tune_report(session, r);
    classify_tune(r);
    read_memory(o, ctx, session, r);

    /* Token ids as llama-bench uses them: arbitrary but fixed, so every backend gets the same
     * input; speed does not depend on which tokens they are. The depth prefill takes the first
     * n_depth, the tests the ones after. */
    uint32_t nt = o->n_depth + longest;
    nt = nt ? nt : 1;
    tokens = malloc(nt * sizeof *tokens);
    logits = malloc((size_t)mi.n_vocab * sizeof *logits);
    if (!tokens || !logits) {
        bench_fail(&e, BST_ERR_OUT_OF_MEMORY, "token buffers: out of memory");
        goto done;
    }
    uint64_t s = 12345;
    for (uint32_t i = 0; i < nt; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((s >> 33) % mi.n_vocab);
    }
    /* Exactly `reps` warm repetitions after the cold one, whatever they take. */
    bench_budget b = {0.0, o->reps, o->reps, 1};
    model_run m = {session, tokens, o->n_depth, o->n_prompt, logits, NULL, NULL};
    if (o->n_prompt) {
        if (info)
            info(info_user, "prompt processing");
        st = bench_measure_between(&b, pp_call, pp_between, &m, &r->pp, &e);
        if (st != BST_OK)
            goto done;
        r->pp_cold_tps = o->n_prompt / ((double)r->pp.first_ns * 1e-9);
        r->pp_tps = o->n_prompt / (r->pp.stats.median_ns * 1e-9);
    }
    if (o->n_gen) {
        if (info)
            info(info_user, "generation");
        m.n = o->n_gen;
        m.bw = &bw;
        st = bench_measure_between(&b, tg_call, tg_between, &m, &r->tg, &e);
        if (st == BST_OK)
            st = sample_bandwidth(&bw, &e); /* after the last repetition */
        m.bw = NULL;
        if (st != BST_OK)
            goto done;
        r->tg_cold_tps = o->n_gen / ((double)r->tg.first_ns * 1e-9);
        r->tg_tps = o->n_gen / (r->tg.stats.median_ns * 1e-9);
        store_bandwidth(&bw, r);
        const double bytes = r->weight_bytes_per_token + r->kv_bytes_per_token;
        if (isfinite(r->tg_bandwidth_gbs) && bytes > 0)
            r->roofline_tps = r->tg_bandwidth_gbs * 1e9 / bytes;
        if (isfinite(r->roofline_tps))
            r->roofline_fraction = r->tg_tps / r->roofline_tps;
    }
    char lane[160];
    snprintf(lane, sizeof lane, "bench model --backend %s",
             backends && backends[0] ? backends : "(default)");
    if (info)
        info(info_user, "device time (one profiled repetition)");
    if (o->profile && o->profile_level == BST_PROFILE_PARTITIONS) {
        st = bench_profile_begin(o->profile, lane, ctx, o->profile_level, &e);
        if (st != BST_OK)
            goto done;
    }
    st = device_time_reps(o, ctx, session, &m, r, &e);
    if (st != BST_OK)
        goto done;
    if (o->profile && o->profile_level != BST_PROFILE_PARTITIONS) {
        /* One extra repetition of each test, profiled, after the measured ones: per-node
         * profiling slows the run, and the numbers above must not pay for it. */
        if (info)
            info(info_user, "profiling one repetition");
        /* Only for its forwarding, which the depth prefill keeps quiet; its sums go unused. */
        time_acc gate = {.forward = o->profile};
        m.quiet = &gate.quiet;
        st = bench_profile_begin(o->profile, lane, ctx, o->profile_level, &e);
        if (st == BST_OK) {
            st = bst_session_set_profiling(session, o->profile_level, time_acc_record, &gate);
            if (st != BST_OK)
                bench_lib_fail(&e, st, "enabling profiling");
        }
        if (st == BST_OK && o->n_prompt) {
            m.n = o->n_prompt;
            st = run_once(&m, pp_between, pp_call, &e);
        }
        if (st == BST_OK && o->n_gen) {
            m.n = o->n_gen;
            st = run_once(&m, tg_between, tg_call, &e);
        }
        m.quiet = NULL;
        bst_status off = bst_session_set_profiling(session, BST_PROFILE_OFF, NULL, NULL);
        if (st == BST_OK && off != BST_OK)
            st = bench_lib_fail(&e, off, "disabling profiling");
        if (st != BST_OK)
            goto done;
    }
    snprintf(r->status, sizeof r->status, "ok");
done:
    if (strcmp(r->status, "ok") != 0)
        snprintf(r->reason, sizeof r->reason, "%s", e.msg);
    r->peak_rss_bytes = peak_rss(rss_reset);
    if (bw.rss_peak > r->peak_rss_bytes)
        r->peak_rss_bytes = bw.rss_peak;
    free(tokens);
    free(logits);
    bst_session_destroy(session);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
}

bst_status bench_run_model(const bench_model_options *o, const bench_machine *machine,
                           bench_doc *doc, bench_error *e)
{
    snprintf(doc->model.path, sizeof doc->model.path, "%s", o->path);
    file_hash(o->path, doc->model.file_hash, sizeof doc->model.file_hash,
              &doc->model.file_bytes);
    if (doc->model.file_bytes == 0)
        return bench_fail(e, BST_ERR_IO, "cannot read '%s': %s", o->path, strerror(errno));
    doc->has_model = true;

    if (o->info)
        o->info(o->info_user, "measuring memory bandwidth");
    bench_budget bb = o->quick_bandwidth ? (bench_budget){0.2, 3, 100, 2}
                                         : (bench_budget){1.0, 5, 1000, 10};
    bst_status st = bench_bandwidth_measure(bench_bandwidth_bytes(machine->llc_bytes), o->threads,
                                            &bb, &doc->baselines.bandwidth, e);
    if (st != BST_OK)
        return st;
    doc->baselines.sgemm_available =
        bench_sgemm_available(doc->baselines.sgemm_library, sizeof doc->baselines.sgemm_library);
    double bw = doc->baselines.bandwidth.measured ? doc->baselines.bandwidth.gbs : 0.0;

    uint32_t n = o->n_backend_sets ? o->n_backend_sets : 1;
    doc->model_results = calloc(n, sizeof *doc->model_results);
    if (!doc->model_results)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "model results: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        bench_model_result *r = &doc->model_results[doc->n_model_results++];
        run_selection(o, o->n_backend_sets ? o->backend_sets[i] : NULL, bw,
                      bench_bandwidth_bytes(machine->llc_bytes), r, &doc->model);
        if (!isfinite(r->weight_bytes_per_token) && strcmp(r->status, "ok") == 0)
            snprintf(r->reason, sizeof r->reason, "no roofline: the library reports no weight "
                     "bytes per token");
    }
    if (o->profile && o->profile_level == BST_PROFILE_NODES_IN_RUN) {
        if (o->info)
            o->info(o->info_user, "same-size reads for the profile's pieces of work");
        bench_budget rb = o->quick_bandwidth ? (bench_budget){0.05, 3, 100, 2}
                                             : (bench_budget){0.25, 5, 1000, 10};
        st = bench_profile_rate_reads(o->profile, machine->llc_bytes, o->threads, &rb, e);
    }
    return st;
}
