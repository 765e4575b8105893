/*
 * runtime/model/session.c — bst_session (a KV cache, a position and the compiled programs of
 * one conversation), bst_session_eval and bst_generate.
 *
 * Programs. A session compiles two programs when it is created and never again:
 *   body: tokens -> final-normed hidden states, n_tokens symbolic up to n_batch and n_kv
 *         symbolic up to n_ctx, holding the KV cache as its state;
 *   head: hidden rows -> logits, n_tokens symbolic up to n_batch.
 * DESIGN.md's "one decode graph per n_kv bucket" exists so fixed-shape kernels do not pay for the
 * whole context on every step. Here every kernel honours the run-time extents of symbolic dims
 * (bst_run_params), so a single body program already computes in proportion to the actual
 * n_tokens and n_kv, and every "bucket" the session can meet is resolved when it is created. It
 * also keeps the KV cache in one place: a program's state is its own, and separate bucket
 * programs would each need their own copy of the cache (the executor has no shared states).
 *
 * With tuning on, the body may come as two programs (runtime/tune_plan.c): when the whole-graph
 * check measured that decode steps and prompt chunks want different plans and running each for
 * its shape is clearly faster, prompt_body runs chunks of more than one token and body the
 * decode steps; the KV rows one wrote are copied into the other before it next runs. Both are
 * resolved at creation, never mid-generation.
 *
 * Each step writes only the rows it uses of the inputs and reads only the rows it needs of the
 * outputs (bsti_program_set_input_prefix / bsti_program_get_output_range): a decode step moves
 * one token, the n_kv entries of one mask row and one row of logits, not n_batch of them.
 *
 * A device that fails mid-conversation: the executor re-places the program on another device,
 * carrying the KV cache over when the failed device can still read it. When it cannot, the
 * session evaluates its history again on the new placement (recover_lost) and goes on.
 *
 * Thread-safety: one thread at a time per session. Program runs of all sessions of a model are
 * serialized by the model's lock (the plugin ABI allows one thread at a time per device).
 */
#include "runtime/model/model_internal.h"

#include "graph/status.h"
#include "runtime/model/sampler.h"
#include "runtime/runtime.h"
#include "runtime/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_CTX 4096u
#define DEFAULT_BATCH 512u
#define MAX_SESSION_CTX (1u << 20)
/* Rows of logits the head computes per run: enough to amortize reading the (large) output
 * matrix over several rows, while its logits buffer stays small (32 x 49152 floats = 6 MiB for
 * the default model, where n_batch rows would take 96 MiB). */
#define HEAD_ROWS 32u

struct bst_session {
    bst_model *model;
    uint32_t n_ctx, n_batch;
    uint32_t head_rows; /* bound of the head program's rows */
    bst_dtype kv_type;
    uint32_t pos;
    bst_program *body, *head;
    /* Tuning may find that prompt chunks want another plan than decode steps (runtime/
     * tune_plan.c): prompt_body then runs chunks of more than one token, body the rest, and
     * each is brought up to date with the KV rows the other wrote before it runs: rows_in[i]
     * rows (from position 0) are current in body (0) and prompt_body (1). NULL otherwise. */
    bst_program *prompt_body;
    uint32_t rows_in[2];
    int32_t *ids;       /* n_batch */
    int32_t *positions; /* n_batch */
    float *mask;        /* n_batch rows of n_ctx */
    float *hidden;      /* n_batch rows of n_embd */
    int32_t *history;   /* n_ctx: the tokens in the cache, oldest first */
    float *last_logits; /* n_vocab: logits after the last evaluated token */
    bool have_logits;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bst_session_destroy(bst_session *session)
{
    if (!session)
        return;
    bst_session *s = session;
    if (s->body || s->head) {
        pthread_mutex_lock(&s->model->lock);
        bst_program_destroy(s->prompt_body);
        bst_program_destroy(s->body);
        bst_program_destroy(s->head);
        pthread_mutex_unlock(&s->model->lock);
    }
    free(s->ids);
    free(s->positions);
    free(s->mask);
    free(s->hidden);
    free(s->history);
    free(s->last_logits);
    free(s);
}

static void *alloc_array(size_t count, size_t size, bool *failed)
{
    void *p = count && size <= SIZE_MAX / count ? calloc(count, size) : NULL;
    if (!p)
        *failed = true;
    return p;
}

static bst_status compile(bst_session *s)
{
    bst_model *m = s->model;
    bst_graph *body = NULL, *head = NULL;
    bst_status st = bsti_llama_build_body(m, s->n_ctx, s->n_batch, s->kv_type, &body);
    if (st == BST_OK)
        st = bsti_llama_build_head(m, s->head_rows, &head);
    if (st == BST_OK) {
        pthread_mutex_lock(&m->lock);
        st = bsti_tune_build_split(m->ctx, body, &s->body, &s->prompt_body);
        if (st == BST_OK)
            st = bst_program_create(m->ctx, head, &s->head);
        pthread_mutex_unlock(&m->lock);
    }
    bst_graph_destroy(body);
    bst_graph_destroy(head);
    return st;
}

bst_status bst_session_create(bst_model *model, const bst_session_options *options,
                              bst_session **out_session)
{
    if (out_session)
        *out_session = NULL;
    if (!model || !out_session)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_create: NULL argument");
    bst_session_options o;
    memset(&o, 0, sizeof o);
    if (options) {
        if (!BST_HAS_FIELD(options, bst_session_options, n_batch))
            return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_create: options struct_size %u "
                             "is too small", options->struct_size);
        memcpy(&o, options, options->struct_size < sizeof o ? options->struct_size : sizeof o);
    }
    const bsti_llama_hparams *hp = &model->hp;
    uint32_t n_ctx = o.n_ctx;
    if (n_ctx == 0)
        n_ctx = hp->n_ctx_train < DEFAULT_MAX_CTX ? hp->n_ctx_train : DEFAULT_MAX_CTX;
    if (n_ctx > MAX_SESSION_CTX)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_create: n_ctx %u exceeds the limit "
                         "%u", n_ctx, MAX_SESSION_CTX);
    if (n_ctx > hp->n_ctx_train)
        bsti_log(BST_LOG_WARN, "session: n_ctx %u exceeds the model's training context %u; "
                 "output past position %u may degrade", n_ctx, hp->n_ctx_train, hp->n_ctx_train);
    bst_dtype kv_type = BST_DTYPE_F32;
    if (BST_HAS_FIELD(&o, bst_session_options, kv_type) && o.kv_type != 0) {
        if (o.kv_type != BST_DTYPE_F32 && o.kv_type != BST_DTYPE_F16)
            return bsti_fail(BST_ERR_UNSUPPORTED, "bst_session_create: KV cache dtype %u is not "
                             "supported (f32 or f16)", o.kv_type);
        kv_type = (bst_dtype)o.kv_type;
    }
    uint32_t n_batch = o.n_batch ? o.n_batch : DEFAULT_BATCH;
    if (n_batch > n_ctx)
        n_batch = n_ctx;

    bst_session *s = calloc(1, sizeof *s);
    if (!s)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_session_create: out of memory");
    s->model = model;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->kv_type = kv_type;
    s->head_rows = n_batch < HEAD_ROWS ? n_batch : HEAD_ROWS;
    bool failed = false;
    s->ids = alloc_array(n_batch, sizeof *s->ids, &failed);
    s->positions = alloc_array(n_batch, sizeof *s->positions, &failed);
    s->mask = alloc_array((size_t)n_batch * n_ctx, sizeof *s->mask, &failed);
    s->hidden = alloc_array((size_t)n_batch * hp->n_embd, sizeof *s->hidden, &failed);
    s->history = alloc_array(n_ctx, sizeof *s->history, &failed);
    s->last_logits = alloc_array(hp->n_vocab, sizeof *s->last_logits, &failed);
    bst_status st = failed ? bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_session_create: out of memory "
                                       "for n_ctx %u, n_batch %u", n_ctx, n_batch)
                           : compile(s);
    if (st != BST_OK) {
        bst_session_destroy(s);
        return bsti_fail_context(st, "bst_session_create (n_ctx %u, n_batch %u)", n_ctx,
                                 n_batch);
    }
    *out_session = s;
    return BST_OK;
}

void bst_session_reset(bst_session *session)
{
    if (!session)
        return;
    /* The cache keeps its old rows: they sit past the position, so the mask hides them until
     * new tokens overwrite them. */
    session->pos = 0;
    session->have_logits = false;
}

uint32_t bst_session_position(const bst_session *session) { return session ? session->pos : 0; }

/* Evaluates tokens[0..n) at s->pos (n <= n_batch) and writes logits: every row into `all` when
 * non-NULL, and the last row into s->last_logits when `last`. Caller holds no lock. */
static bst_status eval_chunk(bst_session *s, const int32_t *tokens, uint32_t n, float *all,
                             bool last)
{
    const bsti_llama_hparams *hp = &s->model->hp;
    const uint32_t pos = s->pos, n_kv = pos + n;
    for (uint32_t t = 0; t < n; t++) {
        s->ids[t] = tokens[t];
        s->positions[t] = (int32_t)(pos + t);
        /* Row t sees positions 0..pos + t: zeros (all-zero bits), then -inf up to n_kv. */
        float *row = s->mask + (size_t)t * s->n_ctx;
        const uint32_t visible = pos + t + 1;
        memset(row, 0, (size_t)visible * sizeof *row);
        for (uint32_t j = visible; j < n_kv; j++)
            row[j] = -INFINITY;
    }
    const uint64_t E = hp->n_embd, V = hp->n_vocab;
    bst_run_params rp = {.struct_size = (uint32_t)sizeof rp, .n_tokens = n, .n_kv = n_kv,
                         .pos = pos};
    pthread_mutex_lock(&s->model->lock);
    const uint32_t which = s->prompt_body && n > 1 ? 1 : 0;
    bst_program *body = which ? s->prompt_body : s->body;
    bst_status st = BST_OK;
    if (s->prompt_body) { /* rows past pos are stale (a reset, a re-evaluation) */
        for (uint32_t i = 0; i < 2; i++)
            s->rows_in[i] = s->rows_in[i] < pos ? s->rows_in[i] : pos;
        st = bsti_tune_sync_states(body, which ? s->body : s->prompt_body, s->rows_in[which],
                                   pos - s->rows_in[which]);
    }
    if (st == BST_OK)
        st = bsti_program_set_input_prefix(body, BSTI_LLAMA_TOKENS, s->ids,
                                           (uint64_t)n * sizeof *s->ids);
    if (st == BST_OK)
        st = bsti_program_set_input_prefix(body, BSTI_LLAMA_POS, s->positions,
                                           (uint64_t)n * sizeof *s->positions);
    /* The mask is [n_tokens, n_kv] of rows n_ctx apart: nothing reads past row n - 1's n_kv
     * entries, so a decode step copies n_kv floats, not a whole n_ctx row. */
    if (st == BST_OK)
        st = bsti_program_set_input_prefix(body, BSTI_LLAMA_MASK, s->mask,
                                           ((uint64_t)(n - 1) * s->n_ctx + n_kv) *
                                               sizeof *s->mask);
    if (st == BST_OK)
        st = bst_program_run(body, &rp);
    if (st == BST_OK && s->prompt_body)
        s->rows_in[which] = pos + n;
    /* Only the rows whose logits are wanted go through the head, HEAD_ROWS at a time. */
    const uint32_t first = all ? 0 : last ? n - 1 : n;
    if (st == BST_OK && first < n)
        st = bsti_program_get_output_range(body, BSTI_LLAMA_HIDDEN,
                                           (uint64_t)first * E * sizeof(float), s->hidden,
                                           (uint64_t)(n - first) * E * sizeof(float));
    for (uint32_t r = first; r < n && st == BST_OK;) {
        uint32_t m = n - r < s->head_rows ? n - r : s->head_rows;
        st = bsti_program_set_input_prefix(s->head, BSTI_LLAMA_HIDDEN,
                                           s->hidden + (size_t)(r - first) * E,
                                           (uint64_t)m * E * sizeof(float));
        rp.n_tokens = m;
        if (st == BST_OK)
            st = bst_program_run(s->head, &rp);
        if (st == BST_OK)
            st = bsti_program_get_output_range(s->head, BSTI_LLAMA_LOGITS, 0,
                                               all ? all + (size_t)r * V : s->last_logits,
                                               (uint64_t)m * V * sizeof(float));
        r += m;
    }
    pthread_mutex_unlock(&s->model->lock);
    if (st == BST_OK && all && last)
        memcpy(s->last_logits, all + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    return st;
}

/* The body's device failed and the executor moved the programs to another device, but the KV
 * cache could not be read back: evaluates the history again on the new placement, so the
 * conversation goes on where it was. False when nothing was lost (st is then the failure). */
static bool recover_lost(bst_session *s, bst_status *st)
{
    bool body_state = false, head_state = false;
    bool body = bsti_program_take_lost(s->body, &body_state);
    bool head = bsti_program_take_lost(s->head, &head_state);
    bool prompt_state = false;
    if (s->prompt_body && bsti_program_take_lost(s->prompt_body, &prompt_state)) {
        body = true;
        body_state = body_state || prompt_state;
    }
    if (!body && !head)
        return false;
    if (!body_state && !head_state) {
        *st = BST_OK; /* only inputs were lost: the retried chunk sets them again */
        return true;
    }
    const uint32_t n_hist = s->pos;
    bsti_log(BST_LOG_WARN, "session: the KV cache was lost with its device; evaluating the %u "
             "tokens of the history again", n_hist);
    s->pos = 0;
    *st = BST_OK;
    while (s->pos < n_hist && *st == BST_OK) {
        uint32_t n = n_hist - s->pos < s->n_batch ? n_hist - s->pos : s->n_batch;
        *st = eval_chunk(s, s->history + s->pos, n, NULL, false);
        if (*st == BST_OK)
            s->pos += n;
    }
    if (*st != BST_OK) {
        /* The cache holds only part of the history: start the conversation over. */
        s->pos = 0;
        s->have_logits = false;
        *st = bsti_fail_context(*st, "re-evaluating the history after the KV cache was lost "
                                "(the session was reset)");
    }
    return true;
}

bst_status bst_session_eval(bst_session *session, const int32_t *tokens, uint32_t n_tokens,
                            bool all_logits, float *out_logits)
{
    if (!session || (!tokens && n_tokens > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_eval: NULL argument");
    bst_session *s = session;
    if (n_tokens == 0)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_eval: no tokens to evaluate");
    const uint32_t n_vocab = s->model->hp.n_vocab;
    for (uint32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= n_vocab)
            return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_eval: token %u is %d, outside the "
                             "vocabulary 0..%u", i, tokens[i], n_vocab - 1);
    if (n_tokens > s->n_ctx - s->pos)
        return bsti_fail(BST_ERR_OVERFLOW, "context full: %u tokens at position %u exceed the "
                         "session's n_ctx %u", n_tokens, s->pos, s->n_ctx);
    const uint32_t start = s->pos;
    const bool had_logits = s->have_logits;
    bst_status st = BST_OK;
    bool recovered = false;
    for (uint32_t done = 0; done < n_tokens && st == BST_OK;) {
        uint32_t n = n_tokens - done < s->n_batch ? n_tokens - done : s->n_batch;
        float *all = out_logits && all_logits ? out_logits + (size_t)done * n_vocab : NULL;
        st = eval_chunk(s, tokens + done, n, all, done + n == n_tokens);
        /* A device failed and its contents were lost: once per call, restore and retry. */
        if (st != BST_OK && !recovered && recover_lost(s, &st)) {
            recovered = true;
            if (st == BST_OK)
                st = eval_chunk(s, tokens + done, n, all, done + n == n_tokens);
            else
                return st;
        }
        if (st == BST_OK) {
            memcpy(s->history + s->pos, tokens + done, (size_t)n * sizeof *tokens);
            s->pos += n;
            done += n;
        }
    }
    if (st != BST_OK) {
        /* Rows written past `start` are hidden by the mask until overwritten. */
        s->pos = start;
        s->have_logits = had_logits;
        return st;
    }
    s->have_logits = true;
    if (out_logits && !all_logits)
        memcpy(out_logits, s->last_logits, (size_t)n_vocab * sizeof(float));
    return BST_OK;
}

/* --- generation --- */

typedef struct emitter {
    const bst_model *model;
    bst_token_fn fn;
    void *user;
    bsti_utf8_stream utf8;
    char *piece; /* raw token bytes */
    size_t piece_cap;
    char *text; /* complete UTF-8 characters handed to fn */
    size_t text_cap;
} emitter;

static bst_status grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return BST_OK;
    char *p = realloc(*buf, need);
    if (!p)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_generate: out of memory");
    *buf = p;
    *cap = need;
    return BST_OK;
}

/* Hands token `id` to the callback as complete UTF-8 characters; *out_go false = stop. */
static bst_status emit(emitter *e, int32_t id, bool *out_go)
{
    *out_go = true;
    size_t len = 0;
    bst_status st = bsti_tokenizer_piece(e->model->tok, id, e->piece, e->piece_cap, &len);
    if (st == BST_ERR_OVERFLOW || (st == BST_OK && len > e->piece_cap)) {
        st = grow(&e->piece, &e->piece_cap, len);
        if (st == BST_OK)
            st = bsti_tokenizer_piece(e->model->tok, id, e->piece, e->piece_cap, &len);
    }
    if (st == BST_OK)
        st = grow(&e->text, &e->text_cap, BSTI_UTF8_STREAM_OUT_MAX(len));
    if (st != BST_OK)
        return st;
    size_t n = bsti_utf8_stream_push(&e->utf8, e->piece, len, e->text, e->text_cap);
    if (e->fn)
        *out_go = e->fn(e->user, id, e->text, n);
    return BST_OK;
}

/* A character cut off by the end of generation reaches the callback as U+FFFD, with token -1. */
static void emit_flush(emitter *e)
{
    char tail[8];
    size_t n = bsti_utf8_stream_flush(&e->utf8, tail, sizeof tail);
    if (n > 0 && e->fn)
        (void)e->fn(e->user, -1, tail, n);
}

bst_status bst_generate(bst_session *session, const int32_t *prompt, uint32_t n_prompt,
                        uint32_t max_tokens, const bst_sampler_params *sampler,
                        bst_token_fn on_token, void *user, const volatile int *cancel,
                        bst_generate_stats *out_stats)
{
    if (!session || (!prompt && n_prompt > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_generate: NULL argument");
    if (out_stats && !BST_HAS_FIELD(out_stats, bst_generate_stats, generate_seconds))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_generate: stats struct_size %u is too small",
                         out_stats->struct_size);
    bst_session *s = session;
    if (n_prompt == 0 && !s->have_logits)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_generate: no prompt, and the session has "
                         "evaluated nothing to continue from");
    bsti_sampler *smp = NULL;
    bst_status st = bsti_sampler_create(sampler, s->model->hp.n_vocab, &smp);
    if (st != BST_OK)
        return bsti_fail_context(st, "bst_generate");
    bst_generate_stats stats = {.struct_size = (uint32_t)sizeof stats, .n_prompt = n_prompt};
    double t0 = now_seconds();
    if (n_prompt > 0)
        st = bst_session_eval(s, prompt, n_prompt, false, NULL);
    double t1 = now_seconds();
    stats.prompt_seconds = t1 - t0;

    emitter e = {.model = s->model, .fn = on_token, .user = user};
    if (st == BST_OK)
        st = grow(&e.piece, &e.piece_cap, 256);
    uint32_t reason = 1;
    while (st == BST_OK) {
        if (cancel && *cancel) {
            reason = 3;
            break;
        }
        if (stats.n_generated >= max_tokens) {
            reason = 1;
            break;
        }
        int32_t id = -1;
        st = bsti_sampler_sample(smp, s->last_logits, s->history, s->pos, &id);
        if (st != BST_OK)
            break;
        if (bsti_tokenizer_is_eog(s->model->tok, id)) {
            reason = 0;
            break;
        }
        bool go = true;
        st = emit(&e, id, &go);
        if (st != BST_OK)
            break;
        stats.n_generated++;
        /* Every delivered token joins the session, so a later call continues after it. */
        if (s->pos >= s->n_ctx) {
            reason = 4;
            break;
        }
        st = bst_session_eval(s, &id, 1, false, NULL);
        if (st == BST_OK && !go) {
            reason = 2;
            break;
        }
    }
    if (st == BST_OK)
        emit_flush(&e);
    stats.generate_seconds = now_seconds() - t1;
    stats.stop_reason = reason;
    free(e.piece);
    free(e.text);
    bsti_sampler_destroy(smp);
    if (out_stats) {
        uint32_t size = out_stats->struct_size < sizeof stats ? out_stats->struct_size
                                                              : (uint32_t)sizeof stats;
        stats.struct_size = size;
        memcpy(out_stats, &stats, size);
    }
    return st;
}

/* --- profiling --- */

bst_status bst_session_set_profiling(bst_session *session, bst_profile_level level,
                                     bst_profile_fn fn, void *user)
{
    if (!session)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_set_profiling: NULL session");
    bst_session *s = session;
    /* Enabling NODES compiles on the model's devices: serialized like every program call. */
    pthread_mutex_lock(&s->model->lock);
    bst_status st = bst_program_set_profiling(s->body, level, "body", fn, user);
    if (st == BST_OK) {
        st = bst_program_set_profiling(s->head, level, "head", fn, user);
        if (st == BST_OK && s->prompt_body) { /* tuning's prompt-chunk program (tune_plan.c) */
            st = bst_program_set_profiling(s->prompt_body, level, "prompt-body", fn, user);
            if (st != BST_OK) {
                bst_status off = bst_program_set_profiling(s->head, BST_PROFILE_OFF, NULL, NULL,
                                                           NULL);
                (void)off;
            }
        }
        if (st != BST_OK) {
            /* Turning profiling off cannot fail: it only frees. */
            bst_status off = bst_program_set_profiling(s->body, BST_PROFILE_OFF, NULL, NULL, NULL);
            (void)off;
            if (s->prompt_body)
                off = bst_program_set_profiling(s->prompt_body, BST_PROFILE_OFF, NULL, NULL, NULL);
            (void)off;
        }
    }
    pthread_mutex_unlock(&s->model->lock);
    return st == BST_OK ? BST_OK : bsti_fail_context(st, "bst_session_set_profiling");
}

bst_status bst_session_explain(const bst_session *session, bool json, char **out_text)
{
    if (out_text)
        *out_text = NULL;
    if (!session || !out_text)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_explain: NULL argument");
    const bst_program *programs[3] = {session->body, session->prompt_body, session->head};
    const char *const names[3] = {"body", "prompt-body", "head"};
    return bsti_tune_explain_programs(programs, names, 3, json, out_text);
}

bst_status bst_session_memory(const bst_session *session, uint32_t device,
                              bst_memory_usage *out_usage)
{
    if (!session || !out_usage)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_memory: NULL argument");
    if (out_usage->struct_size < sizeof(bst_memory_usage))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_session_memory: struct_size %u is too small "
                         "(at least %zu)", out_usage->struct_size, sizeof(bst_memory_usage));
    /* Every program the session holds at once: body (with the KV cache), the prompt body when
     * tuning split one off (with its own copy of the cache), and the head. */
    const bst_program *programs[3] = {session->body, session->prompt_body, session->head};
    bst_memory_usage u;
    memset(&u, 0, sizeof u);
    for (int i = 0; i < 3; i++) {
        if (!programs[i])
            continue;
        bst_memory_usage part;
        memset(&part, 0, sizeof part);
        part.struct_size = (uint32_t)sizeof part;
        bst_status st = bst_program_memory(programs[i], device, &part);
        if (st != BST_OK)
            return bsti_fail_context(st, "bst_session_memory");
        u.arena_bytes += part.arena_bytes;
        u.weight_bytes += part.weight_bytes;
        u.state_bytes += part.state_bytes;
        u.io_bytes += part.io_bytes;
        u.total_bytes += part.total_bytes;
    }
    u.struct_size = out_usage->struct_size;
    memcpy(out_usage, &u, sizeof u);
    return BST_OK;
}
