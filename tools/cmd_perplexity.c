/*
 * tools/cmd_perplexity.c — `bastion perplexity -m model.gguf -f text.txt`: perplexity over
 * consecutive windows of the text, computed as llama-perplexity does (each window evaluated
 * from an empty cache; only its second half is scored, so every scored token sees at least
 * n_ctx/2 tokens of context), and the comparison of two runs — two backends, two
 * quantizations — through saved logits: mean KL divergence and top-1 agreement.
 *
 * Logits file (--save-logits / --kl-base), little-endian:
 *   char magic[8] = "BSTLOGIT"; u32 version = 1; u32 n_vocab; u32 n_ctx; u32 n_chunks;
 *   u64 n_rows; u64 tokens_hash (FNV-1a over the evaluated token ids);
 *   then n_rows rows of n_vocab f32 logits, one per scored position, in order.
 * A baseline whose header does not describe the same run (other text, window, vocabulary) is
 * refused with the field that differs: comparing logits of different tokens means nothing.
 */
#include "cli_model.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CMD "perplexity"
#define DEFAULT_CTX 512u
#define MIN_CTX 4u /* a window scores its second half: it needs a few tokens of each */
#define ROWS_PER_EVAL 64u /* scored positions evaluated at once: bounds the logits buffer */
#define LOGITS_MAGIC "BSTLOGIT"
#define LOGITS_VERSION 1u
#define HEADER_BYTES 40u

void cli_usage_perplexity(FILE *out)
{
    fprintf(out,
            "Usage: bastion perplexity -m MODEL.gguf -f TEXT [options]\n"
            "\n"
            "Splits the tokenized TEXT into windows of --ctx tokens, evaluates each from an\n"
            "empty context and scores the second half of every window (as llama-perplexity\n"
            "does). Prints the running estimate per window on stderr and the final\n"
            "perplexity on stdout.\n"
            "\n"
            "Options:\n"
            "  -m, --model FILE        GGUF model file (required)\n"
            "  -f, --file TEXT         text file to score (required)\n"
            "  -c, --ctx N             window size in tokens (default %u)\n"
            "  -b, --batch-size N      tokens evaluated at once (default 512)\n"
            "      --chunks N          score at most N windows (default: all)\n"
            "      --save-logits FILE  save the scored logits (a baseline for --kl-base)\n"
            "      --kl-base FILE      compare with a saved baseline: mean KL divergence\n"
            "                          KL(base || this) and top-1 agreement\n"
            "      --kv-type T         KV cache dtype: f16 (default: half the memory and cache\n"
            "                          reads) or f32\n"
            "      --tune MODE         kernel selection: off (default), cached, full or frozen\n"
            "                          (compare a tuned placement with --kl-base)\n"
            "      --no-cache          tune in memory only: read and write no database file\n"
            "      --backend LIST      backends to use, comma-separated, in priority order\n"
            "      --plugin-path DIRS  ':'-separated directories searched for plugins first\n"
            "  -t, --threads N         CPU threads (default: all)\n"
            "      --no-mmap           read the model into memory instead of mapping it\n"
            "      --json              print one JSON object with the results\n"
            "  -h, --help              show this help\n",
            DEFAULT_CTX);
}

typedef struct ppl_opts {
    cli_model_options model;
    const char *text_path;
    const char *save_path;
    const char *base_path;
    uint32_t n_ctx, n_batch, max_chunks, kv_type;
    bool json;
} ppl_opts;

typedef struct logits_header {
    uint32_t n_vocab, n_ctx, n_chunks;
    uint64_t n_rows, tokens_hash;
} logits_header;

typedef struct ppl_stats {
    double nll, nll2; /* sums of -log p(next) and its square */
    uint64_t count;
    double kl, kl2;
    uint64_t top1_same;
} ppl_stats;

static uint64_t hash_tokens(const int32_t *t, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[i];
        for (int b = 0; b < 4; b++) {
            h ^= (v >> (8 * b)) & 0xffu;
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool write_header(FILE *f, const logits_header *h)
{
    uint8_t b[HEADER_BYTES];
    memcpy(b, LOGITS_MAGIC, 8);
    put_u32(b + 8, LOGITS_VERSION);
    put_u32(b + 12, h->n_vocab);
    put_u32(b + 16, h->n_ctx);
    put_u32(b + 20, h->n_chunks);
    put_u64(b + 24, h->n_rows);
    put_u64(b + 32, h->tokens_hash);
    return fwrite(b, 1, sizeof b, f) == sizeof b;
}

/* Opens a baseline and checks that it describes exactly this run. */
static FILE *open_base(const char *path, const logits_header *want)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error(CMD, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    uint8_t b[HEADER_BYTES];
    const char *bad = NULL;
    char why[160] = "";
    if (fread(b, 1, sizeof b, f) != sizeof b || memcmp(b, LOGITS_MAGIC, 8) != 0) {
        bad = "not a bastion logits file (bad magic or too short)";
    } else if (get_u32(b + 8) != LOGITS_VERSION) {
        snprintf(why, sizeof why, "version %u is not supported (expected %u)", get_u32(b + 8),
                 LOGITS_VERSION);
    } else if (get_u32(b + 12) != want->n_vocab) {
        snprintf(why, sizeof why, "n_vocab %u differs from this model's %u", get_u32(b + 12),
                 want->n_vocab);
    } else if (get_u32(b + 16) != want->n_ctx) {
        snprintf(why, sizeof why, "window (n_ctx) %u differs from this run's %u",
                 get_u32(b + 16), want->n_ctx);
    } else if (get_u32(b + 20) != want->n_chunks || get_u64(b + 24) != want->n_rows) {
        snprintf(why, sizeof why, "%u windows (%llu rows) differ from this run's %u (%llu rows)",
                 get_u32(b + 20), (unsigned long long)get_u64(b + 24), want->n_chunks,
                 (unsigned long long)want->n_rows);
    } else if (get_u64(b + 32) != want->tokens_hash) {
        bad = "its tokens differ from this run's (another text or tokenizer)";
    }
    if (!bad && !why[0]) {
        /* The rows must all be there: a truncated baseline would fail halfway otherwise. */
        uint64_t need = (uint64_t)HEADER_BYTES + want->n_rows * want->n_vocab * sizeof(float);
        if (fseek(f, 0, SEEK_END) != 0 || ftell(f) < 0 || (uint64_t)ftell(f) != need ||
            fseek(f, HEADER_BYTES, SEEK_SET) != 0)
            snprintf(why, sizeof why, "its size is not the %llu bytes its header implies",
                     (unsigned long long)need);
    }
    if (bad || why[0]) {
        cli_error(CMD, "baseline '%s': %s", path, bad ? bad : why);
        fclose(f);
        return NULL;
    }
    return f;
}

/* log-softmax of `x` (n values) into `out`; returns the argmax. */
static uint32_t log_softmax(const float *x, uint32_t n, double *out)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    double mx = x[best], sum = 0.0;
    for (uint32_t i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (uint32_t i = 0; i < n; i++)
        out[i] = (double)x[i] - lse;
    return best;
}

typedef struct scorer {
    uint32_t n_vocab;
    double *lp, *lp_base;
    float *base_row;
    FILE *base, *save;
    const char *base_path, *save_path;
    ppl_stats s;
} scorer;

static int score_row(scorer *sc, const float *logits, int32_t next)
{
    uint32_t top = log_softmax(logits, sc->n_vocab, sc->lp);
    double nll = -sc->lp[next];
    sc->s.nll += nll;
    sc->s.nll2 += nll * nll;
    sc->s.count++;
    if (sc->save && fwrite(logits, sizeof(float), sc->n_vocab, sc->save) != sc->n_vocab) {
        cli_error(CMD, "cannot write '%s': %s", sc->save_path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    if (sc->base) {
        if (fread(sc->base_row, sizeof(float), sc->n_vocab, sc->base) != sc->n_vocab) {
            cli_error(CMD, "cannot read '%s': unexpected end of file", sc->base_path);
            return CLI_EXIT_FAIL;
        }
        uint32_t base_top = log_softmax(sc->base_row, sc->n_vocab, sc->lp_base);
        double kl = 0.0;
        for (uint32_t i = 0; i < sc->n_vocab; i++)
            kl += exp(sc->lp_base[i]) * (sc->lp_base[i] - sc->lp[i]);
        sc->s.kl += kl;
        sc->s.kl2 += kl * kl;
        sc->s.top1_same += base_top == top;
    }
    return CLI_EXIT_OK;
}

/* Mean of a sum and its standard error. */
static void mean_err(double sum, double sum2, uint64_t n, double *mean, double *err)
{
    *mean = n ? sum / (double)n : 0.0;
    double var = n ? sum2 / (double)n - *mean * *mean : 0.0;
    *err = n > 1 && var > 0.0 ? sqrt(var / (double)(n - 1)) : 0.0;
}

static int tokenize_text(const bst_model *model, const char *text, size_t len, int32_t **out,
                         uint32_t *out_n)
{
    uint32_t n = 0;
    bst_status st = bst_tokenize(model, text, len, false, NULL, 0, &n);
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "tokenizing the text");
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        cli_error(CMD, "out of memory for %u tokens", n);
        return CLI_EXIT_FAIL;
    }
    uint32_t n2 = 0;
    st = bst_tokenize(model, text, len, false, ids, n, &n2);
    if (st != BST_OK || n2 != n) {
        free(ids);
        return cli_lib_error(CMD, st != BST_OK ? st : BST_ERR_INTERNAL, "tokenizing the text");
    }
    *out = ids;
    *out_n = n;
    return CLI_EXIT_OK;
}

static int report(const ppl_opts *o, const scorer *sc, uint32_t n_chunks, uint32_t n_tokens)
{
    double mean_nll, nll_err, kl, kl_err;
    mean_err(sc->s.nll, sc->s.nll2, sc->s.count, &mean_nll, &nll_err);
    mean_err(sc->s.kl, sc->s.kl2, sc->s.count, &kl, &kl_err);
    double ppl = exp(mean_nll), ppl_err = ppl * nll_err;
    double top1 = sc->s.count ? (double)sc->s.top1_same / (double)sc->s.count : 0.0;
    if (!o->json) {
        printf("PPL = %.4f +/- %.4f (%u windows of %u tokens, %llu tokens scored)\n", ppl,
               ppl_err, n_chunks, o->n_ctx, (unsigned long long)sc->s.count);
        if (sc->base)
            printf("KL divergence = %.6f +/- %.6f, top-1 agreement = %.2f%%\n", kl, kl_err,
                   100.0 * top1);
        return CLI_EXIT_OK;
    }
    json_object *root = json_object_new_object();
    if (!root) {
        cli_error(CMD, "out of memory building the JSON document");
        return CLI_EXIT_FAIL;
    }
    json_object_object_add(root, "schema", json_object_new_string("bastion.perplexity/1"));
    json_object_object_add(root, "model", json_object_new_string(o->model.path));
    json_object_object_add(root, "text", json_object_new_string(o->text_path));
    json_object_object_add(root, "n_ctx", json_object_new_int64(o->n_ctx));
    json_object_object_add(root, "n_text_tokens", json_object_new_int64(n_tokens));
    json_object_object_add(root, "n_chunks", json_object_new_int64(n_chunks));
    json_object_object_add(root, "n_scored", json_object_new_uint64(sc->s.count));
    json_object_object_add(root, "ppl", json_object_new_double(ppl));
    json_object_object_add(root, "ppl_err", json_object_new_double(ppl_err));
    json_object_object_add(root, "mean_nll", json_object_new_double(mean_nll));
    if (sc->base) {
        json_object_object_add(root, "mean_kl", json_object_new_double(kl));
        json_object_object_add(root, "mean_kl_err", json_object_new_double(kl_err));
        json_object_object_add(root, "top1_agreement", json_object_new_double(top1));
    }
    json_object_object_add(root, "peak_rss_bytes", json_object_new_uint64(cli_peak_rss_bytes()));
    const char *text = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (text)
        printf("%s\n", text);
    json_object_put(root);
    return text ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* Scores window `c` of `chunk` (n_ctx tokens): first half evaluated for context only, then the
 * scored half in pieces of ROWS_PER_EVAL rows with every row's logits. */
static int score_chunk(const ppl_opts *o, bst_session *session, scorer *sc, const int32_t *chunk,
                       float *logits)
{
    const uint32_t n = o->n_ctx, first = n / 2;
    bst_session_reset(session);
    bst_status st = first > 0 ? bst_session_eval(session, chunk, first, false, NULL) : BST_OK;
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "evaluating");
    /* Row j predicts token j + 1: rows first .. n-2. */
    for (uint32_t j = first; j + 1 < n;) {
        uint32_t m = n - 1 - j < ROWS_PER_EVAL ? n - 1 - j : ROWS_PER_EVAL;
        st = bst_session_eval(session, chunk + j, m, true, logits);
        if (st != BST_OK)
            return cli_lib_error(CMD, st, "evaluating");
        for (uint32_t r = 0; r < m; r++) {
            int rc = score_row(sc, logits + (size_t)r * sc->n_vocab, chunk[j + r + 1]);
            if (rc != CLI_EXIT_OK)
                return rc;
        }
        j += m;
    }
    return CLI_EXIT_OK;
}

static int run(const ppl_opts *o, bst_model *model)
{
    bst_model_info info = {0};
    info.struct_size = sizeof info;
    bst_status st = bst_model_get_info(model, &info);
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "reading the model");
    size_t text_len = 0;
    char *text = cli_read_file(CMD, o->text_path, &text_len);
    if (!text)
        return CLI_EXIT_FAIL;
    int32_t *tokens = NULL;
    uint32_t n_tokens = 0;
    int rc = tokenize_text(model, text, text_len, &tokens, &n_tokens);
    free(text);
    if (rc != CLI_EXIT_OK)
        return rc;
    /* A model that starts every text with BOS starts every window with it. */
    int32_t bos[2];
    uint32_t n_bos = 0;
    if (bst_tokenize(model, "", 0, false, bos, 2, &n_bos) != BST_OK)
        n_bos = 0;
    uint32_t n_chunks = n_tokens / o->n_ctx;
    if (o->max_chunks && n_chunks > o->max_chunks)
        n_chunks = o->max_chunks;
    if (n_chunks == 0 || o->n_ctx < 2) {
        cli_error(CMD, "'%s' has %u tokens: at least one window of %u is needed (use a smaller "
                  "--ctx or a longer text)", o->text_path, n_tokens, o->n_ctx);
        free(tokens);
        return CLI_EXIT_FAIL;
    }
    for (uint32_t c = 0; n_bos == 1 && c < n_chunks; c++)
        tokens[(size_t)c * o->n_ctx] = bos[0];
    const uint32_t first = o->n_ctx / 2;
    logits_header hdr = {.n_vocab = info.n_vocab, .n_ctx = o->n_ctx, .n_chunks = n_chunks,
                         .n_rows = (uint64_t)n_chunks * (o->n_ctx - 1 - first),
                         .tokens_hash = hash_tokens(tokens, (size_t)n_chunks * o->n_ctx)};

    scorer sc = {.n_vocab = info.n_vocab, .base_path = o->base_path, .save_path = o->save_path};
    sc.lp = malloc(info.n_vocab * sizeof *sc.lp);
    sc.lp_base = malloc(info.n_vocab * sizeof *sc.lp_base);
    sc.base_row = malloc(info.n_vocab * sizeof *sc.base_row);
    float *logits = malloc((size_t)ROWS_PER_EVAL * info.n_vocab * sizeof *logits);
    bst_session *session = NULL;
    if (!sc.lp || !sc.lp_base || !sc.base_row || !logits) {
        cli_error(CMD, "out of memory");
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK && o->base_path && !(sc.base = open_base(o->base_path, &hdr)))
        rc = CLI_EXIT_FAIL;
    if (rc == CLI_EXIT_OK && o->save_path) {
        sc.save = fopen(o->save_path, "wb");
        if (!sc.save || !write_header(sc.save, &hdr)) {
            cli_error(CMD, "cannot write '%s': %s", o->save_path, strerror(errno));
            rc = CLI_EXIT_FAIL;
        }
    }
    if (rc == CLI_EXIT_OK) {
        bst_session_options so = {0};
        so.struct_size = sizeof so;
        so.n_ctx = o->n_ctx;
        so.n_batch = o->n_batch;
        so.kv_type = o->kv_type;
        st = bst_session_create(model, &so, &session);
        if (st != BST_OK)
            rc = cli_lib_error(CMD, st, "creating the session");
    }
    double t0 = cli_now_ms();
    for (uint32_t c = 0; rc == CLI_EXIT_OK && c < n_chunks; c++) {
        rc = score_chunk(o, session, &sc, tokens + (size_t)c * o->n_ctx, logits);
        if (rc == CLI_EXIT_OK) {
            double m = sc.s.nll / (double)sc.s.count;
            fprintf(stderr, "[%u/%u] ppl %.4f (%.1f s)\n", c + 1, n_chunks, exp(m),
                    (cli_now_ms() - t0) / 1e3);
        }
    }
    if (rc == CLI_EXIT_OK && sc.save && fclose(sc.save) != 0) {
        cli_error(CMD, "cannot write '%s': %s", o->save_path, strerror(errno));
        rc = CLI_EXIT_FAIL;
    } else if (sc.save && rc != CLI_EXIT_OK) {
        fclose(sc.save);
        remove(o->save_path); /* a partial baseline would only fail later */
    }
    sc.save = NULL;
    if (rc == CLI_EXIT_OK)
        rc = report(o, &sc, n_chunks, n_tokens);
    if (sc.base)
        fclose(sc.base);
    bst_session_destroy(session);
    free(sc.lp);
    free(sc.lp_base);
    free(sc.base_row);
    free(logits);
    free(tokens);
    return rc;
}

int cli_cmd_perplexity(int argc, char **argv)
{
    enum {
        OPT_CHUNKS = 256,
        OPT_SAVE,
        OPT_BASE,
        OPT_KV_TYPE,
        OPT_JSON
    };
    static const struct option options[] = {
        CLI_MODEL_LONGOPTS,
        {"file", required_argument, NULL, 'f'},
        {"ctx", required_argument, NULL, 'c'},
        CLI_SIZE_LONGOPTS,
        {"chunks", required_argument, NULL, OPT_CHUNKS},
        {"save-logits", required_argument, NULL, OPT_SAVE},
        {"kl-base", required_argument, NULL, OPT_BASE},
        {"kv-type", required_argument, NULL, OPT_KV_TYPE},
        {"no-mmap", no_argument, NULL, CLI_OPT_NO_MMAP},
        {"tune", required_argument, NULL, CLI_OPT_TUNE},
        {"no-cache", no_argument, NULL, CLI_OPT_NO_CACHE},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    ppl_opts o;
    memset(&o, 0, sizeof o);
    o.n_ctx = DEFAULT_CTX;
    o.kv_type = CLI_DEFAULT_KV_TYPE;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:f:c:b:t:", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.text_path = optarg;
            break;
        case 'c':
        case 'b': {
            int rc = cli_size_option(CMD, c, optarg, &o.n_ctx, &o.n_batch, "--ctx", MIN_CTX);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        case OPT_CHUNKS:
            if (!cli_parse_u32(optarg, &o.max_chunks) || o.max_chunks == 0)
                return cli_usage_error(CMD, "--chunks needs a positive count, not '%s'", optarg);
            break;
        case OPT_SAVE:
            o.save_path = optarg;
            break;
        case OPT_BASE:
            o.base_path = optarg;
            break;
        case OPT_KV_TYPE:
            if (!cli_parse_kv_type(optarg, &o.kv_type))
                return cli_usage_error(CMD, "--kv-type is f32 or f16, not '%s'", optarg);
            break;
        case OPT_JSON:
            o.json = true;
            break;
        default: {
            int rc = cli_model_option(CMD, c, optarg, &o.model, argv);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        }
    }
    int rc = cli_model_args_done(CMD, argc, argv, &o.model);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!o.text_path)
        return cli_usage_error(CMD, "a text file is required (-f TEXT)");
    if (o.save_path && o.base_path && strcmp(o.save_path, o.base_path) == 0)
        return cli_usage_error(CMD, "--save-logits and --kl-base name the same file");

    bst_context *ctx = NULL;
    bst_model *model = NULL;
    double load_ms = 0.0;
    rc = cli_model_open(CMD, &o.model, &ctx, &model, &load_ms);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = run(&o, model);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
    return rc;
}
