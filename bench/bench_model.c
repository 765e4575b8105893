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
 * Those bytes are counted from the GGUF tensor table, read here with a small bounded walker of
 * the file header (the library's own reader is internal to libbastion, which this tool links as
 * a shared library): every tensor counts fully, except an input embedding that has a separate
 * output head, of which a token reads one row.
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

/* --- GGUF tensor table --------------------------------------------------------------------- */

typedef struct gg {
    FILE *f;
    char why[256];
} gg;

static bool gg_read(gg *g, void *dst, size_t n)
{
    if (fread(dst, 1, n, g->f) != n) {
        snprintf(g->why, sizeof g->why, "the GGUF header is truncated");
        return false;
    }
    return true;
}

static bool gg_u32(gg *g, uint32_t *v) { return gg_read(g, v, 4); }
static bool gg_u64(gg *g, uint64_t *v) { return gg_read(g, v, 8); }

static bool gg_skip(gg *g, uint64_t n)
{
    if (n > (UINT64_C(1) << 40) || fseeko(g->f, (off_t)n, SEEK_CUR) != 0) {
        snprintf(g->why, sizeof g->why, "the GGUF header has an impossible length");
        return false;
    }
    return true;
}

/* A string into buf (truncated to size - 1), the rest skipped. */
static bool gg_str(gg *g, char *buf, size_t size)
{
    uint64_t len;
    if (!gg_u64(g, &len))
        return false;
    if (len > (UINT64_C(1) << 30)) {
        snprintf(g->why, sizeof g->why, "a GGUF string of %llu bytes", (unsigned long long)len);
        return false;
    }
    size_t keep = len < size - 1 ? (size_t)len : size - 1;
    if (!gg_read(g, buf, keep))
        return false;
    buf[keep] = '\0';
    return gg_skip(g, len - keep);
}

/* Bytes of a scalar GGUF value type; 0 for string/array/unknown. */
static uint64_t scalar_size(uint32_t type)
{
    static const uint8_t sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < 13 ? sizes[type] : 0;
}

static bool gg_skip_value(gg *g, uint32_t type, int depth)
{
    if (type == 8) { /* string */
        uint64_t len;
        return gg_u64(g, &len) && gg_skip(g, len);
    }
    if (type == 9) { /* array */
        uint32_t et;
        uint64_t n;
        if (!gg_u32(g, &et) || !gg_u64(g, &n))
            return false;
        if (depth > 2 || n > (UINT64_C(1) << 32)) {
            snprintf(g->why, sizeof g->why, "a GGUF array is too deep or too long");
            return false;
        }
        uint64_t es = scalar_size(et);
        if (es)
            return n <= (UINT64_C(1) << 40) / es && gg_skip(g, n * es);
        for (uint64_t i = 0; i < n; i++)
            if (!gg_skip_value(g, et, depth + 1))
                return false;
        return true;
    }
    uint64_t s = scalar_size(type);
    if (!s) {
        snprintf(g->why, sizeof g->why, "unknown GGUF value type %u", type);
        return false;
    }
    return gg_skip(g, s);
}

/* ggml tensor types: elements per block and bytes per block; {0, 0} when unknown. */
static void ggml_type_geometry(uint32_t type, uint64_t *bs, uint64_t *bb)
{
    static const struct {
        uint32_t id, bs, bb;
    } table[] = {{0, 1, 4},      {1, 1, 2},      {2, 32, 18},    {3, 32, 20},   {6, 32, 22},
                 {7, 32, 24},    {8, 32, 34},    {9, 32, 36},    {10, 256, 84}, {11, 256, 110},
                 {12, 256, 144}, {13, 256, 176}, {14, 256, 210}, {15, 256, 292}, {24, 1, 1},
                 {25, 1, 2},     {26, 1, 4},     {27, 1, 8},     {28, 1, 8},    {30, 1, 2}};
    *bs = *bb = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].id == type) {
            *bs = table[i].bs;
            *bb = table[i].bb;
        }
}

/* Bytes of weights one generated token reads. False with `why` when the file cannot tell. */
static bool weight_bytes_per_token(const char *path, double *out, char *why, size_t why_size)
{
    gg g = {fopen(path, "rb"), ""};
    if (!g.f) {
        snprintf(why, why_size, "cannot read '%s': %s", path, strerror(errno));
        return false;
    }
    bool ok = false;
    char magic[4];
    uint32_t version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    double total = 0.0, embd_bytes = 0.0, embd_row = 0.0;
    bool has_output = false, has_embd = false;
    if (!gg_read(&g, magic, 4) || memcmp(magic, "GGUF", 4) != 0) {
        snprintf(g.why, sizeof g.why, "not a GGUF file");
        goto done;
    }
    if (!gg_u32(&g, &version) || version < 2 || version > 3) {
        snprintf(g.why, sizeof g.why, "GGUF version %u is not 2 or 3", version);
        goto done;
    }
    if (!gg_u64(&g, &n_tensors) || !gg_u64(&g, &n_kv))
        goto done;
    if (n_tensors > 1000000 || n_kv > 1000000) {
        snprintf(g.why, sizeof g.why, "implausible tensor or key count");
        goto done;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        char key[8];
        uint32_t type;
        if (!gg_str(&g, key, sizeof key) || !gg_u32(&g, &type) || !gg_skip_value(&g, type, 0))
            goto done;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        char name[128];
        uint32_t n_dims, type;
        uint64_t dims[8], offset;
        if (!gg_str(&g, name, sizeof name) || !gg_u32(&g, &n_dims))
            goto done;
        if (n_dims == 0 || n_dims > 8) {
            snprintf(g.why, sizeof g.why, "tensor '%s' has %u dims", name, n_dims);
            goto done;
        }
        double elems = 1.0;
        for (uint32_t d = 0; d < n_dims; d++) {
            if (!gg_u64(&g, &dims[d]))
                goto done;
            elems *= (double)dims[d];
        }
        if (!gg_u32(&g, &type) || !gg_u64(&g, &offset))
            goto done;
        uint64_t bs, bb;
        ggml_type_geometry(type, &bs, &bb);
        if (!bs) {
            snprintf(g.why, sizeof g.why, "tensor '%s' has ggml type %u, unknown here", name,
                     type);
            goto done;
        }
        double bytes = elems / (double)bs * (double)bb;
        total += bytes;
        if (strcmp(name, "output.weight") == 0)
            has_output = true;
        if (strcmp(name, "token_embd.weight") == 0) {
            has_embd = true;
            embd_bytes = bytes;
            embd_row = (double)dims[0] / (double)bs * (double)bb; /* ne[0]: one row */
        }
    }
    /* With a separate output head a token reads one embedding row; tied, the head reads the
     * whole table. */
    if (has_embd && has_output)
        total += embd_row - embd_bytes;
    *out = total;
    ok = true;
done:
    if (!ok)
        snprintf(why, why_size, "%s", g.why);
    fclose(g.f);
    return ok;
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
                          double wbytes, bench_model_result *r, bench_model_info *model_info)
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
    r->weight_bytes_per_token = wbytes;
    r->roofline_tps = wbytes > 0 && bw_gbs > 0 ? bw_gbs * 1e9 / wbytes : NAN;
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
    double wbytes = NAN;
    char why[256] = "";
    if (!weight_bytes_per_token(o->path, &wbytes, why, sizeof why))
        wbytes = NAN;

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
        run_selection(o, o->n_backend_sets ? o->backend_sets[i] : NULL, bw, wbytes, r,
                      &doc->model);
        if (!isfinite(wbytes) && strcmp(r->status, "ok") == 0)
            snprintf(r->reason, sizeof r->reason, "no roofline: %.200s", why);
    }

    return BST_OK;
}
