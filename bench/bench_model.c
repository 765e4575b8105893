/*
 * bench/bench_model.c — whole-model speed, as llama-bench measures it: prompt processing (one
 * batch of n_prompt tokens from an empty cache, "pp512") and generation (n_gen single-token
 * steps from an empty cache, "tg128"), each repeated with the cache cleared in between, for each
 * backend selection asked. Cold and warm are kept apart: model load, session creation (which
 * compiles every bucket the session can meet) and the first repetition of each test are the
 * cold costs; the medians of the later repetitions are the warm speeds.
 *
 * The roofline: generating a token reads every weight once (the KV cache aside), so the fastest
 * possible generation is the measured read bandwidth divided by the weight bytes per token.
 * The library counts those bytes when it loads the model (bst_model_info.weight_bytes_per_token:
 * every weight, except an input embedding that has a separate output head, of which a token
 * reads one row).
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifdef BENCH_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

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

typedef struct model_run {
    bst_session *session;
    const int32_t *tokens;
    uint32_t n;
    float *logits;
} model_run;

static bst_status pp_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    model_run *m = user;
    bst_session_reset(m->session);
    bst_status st = bst_session_eval(m->session, m->tokens, m->n, false, m->logits);
    return st == BST_OK ? BST_OK : bench_lib_fail(e, st, "prompt evaluation");
}

static bst_status tg_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    model_run *m = user;
    bst_session_reset(m->session);
    for (uint32_t i = 0; i < m->n; i++) {
        bst_status st = bst_session_eval(m->session, &m->tokens[i], 1, false, m->logits);
        if (st != BST_OK)
            return bench_lib_fail(e, st, "generation step");
    }
    return BST_OK;
}

static uint64_t peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss < 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024u;
}

static double seconds_since(uint64_t t0) { return (double)(bench_now_ns() - t0) * 1e-9; }

/* One backend selection; problems become the row's status and reason. */
static void run_selection(const bench_model_options *o, const char *backends, double bw_gbs,
                          bench_model_result *r, bench_model_info *model_info)
{
    bench_info_fn info = o->info;
    void *info_user = o->info_user;
    snprintf(r->backends, sizeof r->backends, "%s", backends ? backends : "");
    snprintf(r->status, sizeof r->status, "failed");
    r->n_prompt = o->n_prompt;
    r->n_gen = o->n_gen;
    r->reps = o->reps;
    r->threads = o->threads;
    r->load_s = r->session_s = NAN;
    r->weight_bytes_per_token = NAN;
    r->roofline_tps = NAN;
    r->roofline_fraction = NAN;
    r->pp_cold_tps = r->tg_cold_tps = r->pp_tps = r->tg_tps = NAN; /* a test not run has none */

    bst_context_options co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.n_threads = o->threads;
    co.backends = backends && backends[0] ? backends : NULL;
    co.plugin_paths = o->plugin_paths;
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
        double wbytes = (double)mi.weight_bytes_per_token;
        r->weight_bytes_per_token = wbytes;
        r->roofline_tps = bw_gbs > 0 ? bw_gbs * 1e9 / wbytes : NAN;
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
    so.n_ctx = longest + 1;
    so.n_batch = o->n_prompt ? o->n_prompt : 1;
    if (info)
        info(info_user, "creating the session (compiling)");
    t0 = bench_now_ns();
    st = bst_session_create(model, &so, &session);
    if (st != BST_OK) {
        bench_lib_fail(&e, st, "creating the session");
        goto done;
    }
    r->session_s = seconds_since(t0);

    /* Token ids as llama-bench uses them: arbitrary but fixed, so every backend gets the same
     * input; speed does not depend on which tokens they are. */
    uint32_t nt = longest ? longest : 1;
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
    model_run m = {session, tokens, o->n_prompt, logits};
    if (o->n_prompt) {
        if (info)
            info(info_user, "prompt processing");
        st = bench_measure(&b, pp_call, &m, &r->pp, &e);
        if (st != BST_OK)
            goto done;
        r->pp_cold_tps = o->n_prompt / ((double)r->pp.first_ns * 1e-9);
        r->pp_tps = o->n_prompt / (r->pp.stats.median_ns * 1e-9);
    }
    if (o->n_gen) {
        if (info)
            info(info_user, "generation");
        m.n = o->n_gen;
        st = bench_measure(&b, tg_call, &m, &r->tg, &e);
        if (st != BST_OK)
            goto done;
        r->tg_cold_tps = o->n_gen / ((double)r->tg.first_ns * 1e-9);
        r->tg_tps = o->n_gen / (r->tg.stats.median_ns * 1e-9);
        if (isfinite(r->roofline_tps))
            r->roofline_fraction = r->tg_tps / r->roofline_tps;
    }
    if (o->profile) {
        /* One extra repetition of each test, profiled, after the measured ones: per-node
         * profiling slows the run, and the numbers above must not pay for it. */
        char lane[160];
        snprintf(lane, sizeof lane, "bench model --backend %s",
                 backends && backends[0] ? backends : "(default)");
        if (info)
            info(info_user, "profiling one repetition");
        st = bench_profile_begin(o->profile, lane, ctx, &e);
        if (st == BST_OK) {
            st = bst_session_set_profiling(session, o->profile_level, bench_profile_record,
                                           o->profile);
            if (st != BST_OK)
                bench_lib_fail(&e, st, "enabling profiling");
        }
        if (st == BST_OK && o->n_prompt) {
            m.n = o->n_prompt;
            st = pp_call(&m, 0, &e);
        }
        if (st == BST_OK && o->n_gen) {
            m.n = o->n_gen;
            st = tg_call(&m, 0, &e);
        }
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
    r->peak_rss_bytes = peak_rss();
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
    bench_budget bb = {1.0, 5, 1000, 10};
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
        run_selection(o, o->n_backend_sets ? o->backend_sets[i] : NULL, bw, r, &doc->model);
        if (!isfinite(r->weight_bytes_per_token) && strcmp(r->status, "ok") == 0)
            snprintf(r->reason, sizeof r->reason, "no roofline: the library reports no weight "
                     "bytes per token");
    }

    return BST_OK;
}
