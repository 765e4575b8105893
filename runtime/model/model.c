/*
 * runtime/model/model.c — bst_model: loading a GGUF file as a llama model, checking every
 * hyper-parameter and tensor the graph builder will rely on, and the tokenizer / chat-template
 * entry points of the public API.
 *
 * Checks are strict on purpose. A value out of range, a missing key or tensor, or a tensor of
 * the wrong shape is BST_ERR_FORMAT naming it; a feature this implementation would silently
 * compute wrong (RoPE scaling, experts, tensors it does not know such as biases or rope_freqs)
 * is BST_ERR_UNSUPPORTED naming it. A model that loads therefore builds a valid graph.
 */
#include "runtime/model/model_internal.h"

#include "graph/status.h"
#include "runtime/model/chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits well past any real llama model, small enough that no product overflows. */
#define MAX_LAYERS 4096u
#define MAX_EMBD 65536u
#define MAX_FF (1u << 20)
#define MAX_HEAD_DIM 1024u
#define MAX_CTX (1u << 24)

static char *dup_str(bsti_gguf_str s)
{
    char *p = malloc((size_t)s.len + 1);
    if (p) {
        memcpy(p, s.ptr, (size_t)s.len);
        p[s.len] = '\0';
    }
    return p;
}

static bool str_is(bsti_gguf_str s, const char *text)
{
    return s.len == strlen(text) && memcmp(s.ptr, text, (size_t)s.len) == 0;
}

/* --- hyper-parameters --- */

/* Reads `key` (present: in [lo, hi]; absent: required -> FORMAT, else `fallback`). */
static bst_status get_u32(const bsti_gguf *f, const char *key, bool required, uint32_t fallback,
                          uint32_t lo, uint32_t hi, uint32_t *out)
{
    bst_status st = bsti_gguf_get_u32(f, key, out);
    if (st == BST_ERR_NOT_FOUND) {
        if (required)
            return bsti_fail(BST_ERR_FORMAT, "model: required key %s is missing", key);
        *out = fallback;
        return BST_OK;
    }
    if (st != BST_OK)
        return bsti_fail_context(st, "model");
    if (*out < lo || *out > hi)
        return bsti_fail(BST_ERR_FORMAT, "model: %s = %u is outside %u..%u", key, *out, lo, hi);
    return BST_OK;
}

static bst_status get_f32(const bsti_gguf *f, const char *key, bool required, float fallback,
                          double lo, double hi, float *out)
{
    bst_status st = bsti_gguf_get_f32(f, key, out);
    if (st == BST_ERR_NOT_FOUND) {
        if (required)
            return bsti_fail(BST_ERR_FORMAT, "model: required key %s is missing", key);
        *out = fallback;
        return BST_OK;
    }
    if (st != BST_OK)
        return bsti_fail_context(st, "model");
    if (!isfinite(*out) || (double)*out <= lo || (double)*out > hi)
        return bsti_fail(BST_ERR_FORMAT, "model: %s = %g is outside (%g, %g]", key,
                         (double)*out, lo, hi);
    return BST_OK;
}

/* Features that change the math of a llama model and that this implementation lacks. */
static bst_status check_unsupported_keys(const bsti_gguf *f)
{
    bsti_gguf_str s;
    bst_status st = bsti_gguf_get_str(f, "llama.rope.scaling.type", &s);
    if (st == BST_OK && !str_is(s, "none"))
        return bsti_fail(BST_ERR_UNSUPPORTED, "model: llama.rope.scaling.type \"%.*s\" is not "
                         "supported", (int)(s.len > 64 ? 64 : s.len), s.ptr);
    if (st != BST_OK && st != BST_ERR_NOT_FOUND)
        return bsti_fail_context(st, "model");
    float factor;
    st = bsti_gguf_get_f32(f, "llama.rope.scaling.factor", &factor);
    if (st == BST_OK && factor != 0.0f && factor != 1.0f)
        return bsti_fail(BST_ERR_UNSUPPORTED, "model: llama.rope.scaling.factor = %g is not "
                         "supported", (double)factor);
    uint32_t experts = 0;
    st = bsti_gguf_get_u32(f, "llama.expert_count", &experts);
    if (st == BST_OK && experts > 0)
        return bsti_fail(BST_ERR_UNSUPPORTED, "model: llama.expert_count = %u (mixture of "
                         "experts) is not supported", experts);
    return BST_OK;
}

static bst_status load_hparams(const bsti_gguf *f, uint32_t n_vocab, bsti_llama_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    bst_status st = check_unsupported_keys(f);
    if (st == BST_OK)
        st = get_u32(f, "llama.block_count", true, 0, 1, MAX_LAYERS, &hp->n_layers);
    if (st == BST_OK)
        st = get_u32(f, "llama.embedding_length", true, 0, 1, MAX_EMBD, &hp->n_embd);
    if (st == BST_OK)
        st = get_u32(f, "llama.feed_forward_length", true, 0, 1, MAX_FF, &hp->n_ff);
    if (st == BST_OK)
        st = get_u32(f, "llama.attention.head_count", true, 0, 1, MAX_EMBD, &hp->n_heads);
    if (st == BST_OK)
        st = get_u32(f, "llama.attention.head_count_kv", false, hp->n_heads, 1, MAX_EMBD,
                     &hp->n_kv_heads);
    if (st == BST_OK)
        st = get_u32(f, "llama.context_length", true, 0, 1, MAX_CTX, &hp->n_ctx_train);
    if (st == BST_OK)
        st = get_f32(f, "llama.attention.layer_norm_rms_epsilon", true, 0.0f, 0.0, 1.0,
                     &hp->rms_eps);
    if (st == BST_OK)
        st = get_f32(f, "llama.rope.freq_base", false, 10000.0f, 0.0, 1e12, &hp->rope_theta);
    if (st != BST_OK)
        return st;
    if (hp->n_kv_heads > hp->n_heads || hp->n_heads % hp->n_kv_heads != 0)
        return bsti_fail(BST_ERR_FORMAT,
                         "model: llama.attention.head_count = %u is not a multiple of "
                         "llama.attention.head_count_kv = %u",
                         hp->n_heads, hp->n_kv_heads);
    /* Head size: key_length when the file gives it, else n_embd / n_heads. */
    uint32_t key_len = 0, value_len = 0;
    st = get_u32(f, "llama.attention.key_length", false, 0, 1, MAX_HEAD_DIM, &key_len);
    if (st == BST_OK)
        st = get_u32(f, "llama.attention.value_length", false, key_len, 1, MAX_HEAD_DIM,
                     &value_len);
    if (st != BST_OK)
        return st;
    if (key_len == 0) {
        if (hp->n_embd % hp->n_heads != 0)
            return bsti_fail(BST_ERR_FORMAT,
                             "model: llama.embedding_length = %u is not a multiple of "
                             "llama.attention.head_count = %u",
                             hp->n_embd, hp->n_heads);
        key_len = value_len = hp->n_embd / hp->n_heads;
    }
    if (value_len != key_len)
        return bsti_fail(BST_ERR_UNSUPPORTED, "model: llama.attention.value_length = %u differs "
                         "from key_length = %u", value_len, key_len);
    if (key_len > MAX_HEAD_DIM || key_len % 2 != 0)
        return bsti_fail(BST_ERR_FORMAT, "model: head size %u must be even and at most %u",
                         key_len, MAX_HEAD_DIM);
    hp->head_dim = key_len;
    st = get_u32(f, "llama.rope.dimension_count", false, hp->head_dim, 2, hp->head_dim,
                 &hp->rope_dims);
    if (st != BST_OK)
        return st;
    if (hp->rope_dims % 2 != 0)
        return bsti_fail(BST_ERR_FORMAT, "model: llama.rope.dimension_count = %u must be even",
                         hp->rope_dims);
    hp->n_vocab = n_vocab;
    uint32_t file_vocab = 0;
    st = get_u32(f, "llama.vocab_size", false, n_vocab, 1, UINT32_MAX, &file_vocab);
    if (st != BST_OK)
        return st;
    if (file_vocab != n_vocab)
        return bsti_fail(BST_ERR_FORMAT, "model: llama.vocab_size = %u but the tokenizer has %u "
                         "tokens", file_vocab, n_vocab);
    return BST_OK;
}

/* --- tensors --- */

typedef struct tensor_check {
    const bsti_gguf *f;
    bool *used; /* per file tensor: claimed by the model */
} tensor_check;

static void format_shape(const int64_t *shape, uint32_t rank, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < rank && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "",
                                (long long)shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

static bst_status claim(tensor_check *c, const char *name, uint32_t rank, int64_t d0, int64_t d1,
                        bool matrix, bool required, const bsti_gguf_tensor **out)
{
    *out = bsti_gguf_tensor_find(c->f, name);
    if (!*out) {
        if (!required)
            return BST_OK;
        return bsti_fail(BST_ERR_FORMAT, "model: tensor %s is missing", name);
    }
    const bsti_gguf_tensor *t = *out;
    int64_t want[2] = {d0, d1};
    bool ok = t->rank == rank;
    for (uint32_t i = 0; ok && i < rank; i++)
        ok = t->shape[i] == want[i];
    if (!ok) {
        char got[96], need[96];
        format_shape(t->shape, t->rank, got, sizeof got);
        format_shape(want, rank, need, sizeof need);
        return bsti_fail(BST_ERR_FORMAT, "model: tensor %s has shape %s; the hyper-parameters "
                         "need %s", name, got, need);
    }
    /* Norm weights are multiplied elementwise: plain floats. Matrices may be quantized. */
    bool is_float = t->dtype == BST_DTYPE_F32 || t->dtype == BST_DTYPE_F16 ||
                    t->dtype == BST_DTYPE_BF16;
    bool is_block = bst_dtype_block_size(t->dtype) > 1;
    if (!is_float && !(matrix && is_block)) {
        const char *dn = bst_dtype_name(t->dtype);
        return bsti_fail(BST_ERR_UNSUPPORTED, "model: tensor %s has dtype %s, not usable as a "
                         "%s", name, dn ? dn : "?", matrix ? "weight matrix" : "norm weight");
    }
    uint64_t n = bsti_gguf_tensor_count(c->f);
    for (uint64_t i = 0; i < n; i++)
        if (bsti_gguf_tensor_at(c->f, i) == t)
            c->used[i] = true;
    return BST_OK;
}

static bst_status bind_tensors(bst_model *m)
{
    const bsti_llama_hparams *hp = &m->hp;
    uint64_t n_tensors = bsti_gguf_tensor_count(m->file);
    tensor_check c = {m->file, calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(bool))};
    m->layers = calloc(hp->n_layers, sizeof *m->layers);
    if (!c.used || !m->layers) {
        free(c.used);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "model: out of memory");
    }
    const int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    const int64_t Q = (int64_t)hp->n_heads * hp->head_dim;
    const int64_t KV = (int64_t)hp->n_kv_heads * hp->head_dim;
    bst_status st = claim(&c, "token_embd.weight", 2, V, E, true, true, &m->tok_embd);
    if (st == BST_OK)
        st = claim(&c, "output_norm.weight", 1, E, 0, false, true, &m->output_norm);
    if (st == BST_OK)
        st = claim(&c, "output.weight", 2, V, E, true, false, &m->output);
    if (st == BST_OK && !m->output)
        m->output = m->tok_embd; /* tied embeddings */
    char name[96];
#define CLAIM(field, suffix, rank, d0, d1, matrix)                                      \
    if (st == BST_OK) {                                                                 \
        snprintf(name, sizeof name, "blk.%u.%s.weight", il, suffix);                    \
        st = claim(&c, name, rank, d0, d1, matrix, true, &L->field);                    \
    }
    for (uint32_t il = 0; il < hp->n_layers && st == BST_OK; il++) {
        bsti_llama_layer *L = &m->layers[il];
        CLAIM(attn_norm, "attn_norm", 1, E, 0, false)
        CLAIM(wq, "attn_q", 2, Q, E, true)
        CLAIM(wk, "attn_k", 2, KV, E, true)
        CLAIM(wv, "attn_v", 2, KV, E, true)
        CLAIM(wo, "attn_output", 2, E, Q, true)
        CLAIM(ffn_norm, "ffn_norm", 1, E, 0, false)
        CLAIM(ffn_gate, "ffn_gate", 2, F, E, true)
        CLAIM(ffn_up, "ffn_up", 2, F, E, true)
        CLAIM(ffn_down, "ffn_down", 2, E, F, true)
    }
#undef CLAIM
    /* A tensor nobody uses is a part of the model this implementation would leave out (biases,
     * rope_freqs, ...): refuse rather than compute something else. */
    for (uint64_t i = 0; i < n_tensors && st == BST_OK; i++) {
        if (c.used[i])
            continue;
        const bsti_gguf_tensor *t = bsti_gguf_tensor_at(m->file, i);
        st = bsti_fail(BST_ERR_UNSUPPORTED, "model: tensor %.*s is not part of the llama "
                       "architecture as implemented", (int)(t->name.len > 96 ? 96 : t->name.len),
                       t->name.ptr);
    }
    free(c.used);
    return st;
}

/* Bytes of weights one token reads, from the bound tensors: a token gathers one row of the
 * embedding table, but when the table is also the output head the head reads all of it. The
 * reader bounds every tensor's size by the file size, so the sum cannot overflow. */
static uint64_t weight_bytes_per_token(const bst_model *m)
{
    uint64_t total = m->output_norm->size + m->output->size;
    if (m->output != m->tok_embd)
        total += m->tok_embd->size / (uint64_t)m->tok_embd->shape[0];
    for (uint32_t il = 0; il < m->hp.n_layers; il++) {
        const bsti_llama_layer *L = &m->layers[il];
        const bsti_gguf_tensor *ts[] = {L->attn_norm, L->wq,       L->wk,     L->wv,      L->wo,
                                        L->ffn_norm,  L->ffn_gate, L->ffn_up, L->ffn_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            total += ts[i]->size;
    }
    return total;
}

/* --- load --- */

static bool report(const bst_model_options *o, float fraction)
{
    return !o || !o->progress || o->progress(o->progress_user, fraction);
}

static bst_status load(bst_model *m, const char *path, const bst_model_options *o)
{
    if (!report(o, 0.0f))
        return bsti_fail(BST_ERR_INVALID_ARG, "cancelled");
    bsti_gguf_options go = {.no_mmap = o ? o->no_mmap : false};
    bst_status st = bsti_gguf_open(path, &go, &m->file);
    if (st != BST_OK)
        return st;
    if (!report(o, 0.4f))
        return bsti_fail(BST_ERR_INVALID_ARG, "cancelled");
    bsti_gguf_str arch;
    st = bsti_gguf_get_str(m->file, "general.architecture", &arch);
    if (st == BST_ERR_NOT_FOUND)
        return bsti_fail(BST_ERR_FORMAT, "model: required key general.architecture is missing");
    if (st != BST_OK)
        return bsti_fail_context(st, "model");
    if (!str_is(arch, "llama"))
        return bsti_fail(BST_ERR_UNSUPPORTED, "model: architecture \"%.*s\" is not supported "
                         "(supported: llama)", (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    bsti_gguf_str name = {"", 0};
    st = bsti_gguf_get_str(m->file, "general.name", &name);
    if (st != BST_OK && st != BST_ERR_NOT_FOUND)
        return bsti_fail_context(st, "model");
    m->arch = dup_str(arch);
    m->name = dup_str(name);
    if (!m->arch || !m->name)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "model: out of memory");
    st = bsti_tokenizer_create(m->file, &m->tok);
    if (st != BST_OK)
        return bsti_fail_context(st, "model: tokenizer");
    if (!report(o, 0.7f))
        return bsti_fail(BST_ERR_INVALID_ARG, "cancelled");
    st = load_hparams(m->file, bsti_tokenizer_n_vocab(m->tok), &m->hp);
    if (st == BST_OK)
        st = bind_tensors(m);
    if (st != BST_OK)
        return st;
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(m->file); i++) {
        const bsti_gguf_tensor *t = bsti_gguf_tensor_at(m->file, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->rank; d++)
            n *= (uint64_t)t->shape[d]; /* the reader bounds each tensor by the file size */
        m->n_params += n;
    }
    m->weight_bytes_per_token = weight_bytes_per_token(m);
    if (!report(o, 1.0f))
        return bsti_fail(BST_ERR_INVALID_ARG, "cancelled");
    return BST_OK;
}

void bst_model_destroy(bst_model *model)
{
    if (!model)
        return;
    bsti_tokenizer_destroy(model->tok);
    bsti_gguf_close(model->file);
    free(model->layers);
    free(model->arch);
    free(model->name);
    pthread_mutex_destroy(&model->lock);
    free(model);
}

bst_status bst_model_load(bst_context *context, const char *path,
                          const bst_model_options *options, bst_model **out_model)
{
    if (out_model)
        *out_model = NULL;
    if (!context || !path || !out_model)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_model_load: NULL argument");
    bst_model_options o;
    memset(&o, 0, sizeof o);
    if (options) {
        if (options->struct_size < sizeof(uint32_t) + sizeof(bool))
            return bsti_fail(BST_ERR_INVALID_ARG, "bst_model_load: options struct_size %u is too "
                             "small", options->struct_size);
        size_t n = options->struct_size < sizeof o ? options->struct_size : sizeof o;
        memcpy(&o, options, n);
    }
    bst_model *m = calloc(1, sizeof *m);
    if (!m)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_model_load: out of memory");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return bsti_fail(BST_ERR_INTERNAL, "bst_model_load: cannot create a mutex");
    }
    m->ctx = context;
    bst_status st = load(m, path, options ? &o : NULL);
    if (st != BST_OK) {
        /* The reader's own messages already name the file. */
        if (m->file)
            st = bsti_fail_context(st, "%s", path);
        bst_model_destroy(m);
        return st;
    }
    *out_model = m;
    return BST_OK;
}

bst_status bst_model_get_info(const bst_model *model, bst_model_info *out_info)
{
    if (!model || !out_info)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_model_get_info: NULL argument");
    if (out_info->struct_size < offsetof(bst_model_info, n_layers) + sizeof(uint32_t))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_model_get_info: struct_size %u is too small",
                         out_info->struct_size);
    const bsti_llama_hparams *hp = &model->hp;
    bst_model_info info = {
        .struct_size = out_info->struct_size < sizeof info ? out_info->struct_size
                                                           : (uint32_t)sizeof info,
        .n_layers = hp->n_layers,
        .architecture = model->arch,
        .name = model->name,
        .n_embd = hp->n_embd,
        .n_heads = hp->n_heads,
        .n_kv_heads = hp->n_kv_heads,
        .head_dim = hp->head_dim,
        .n_ff = hp->n_ff,
        .n_vocab = hp->n_vocab,
        .n_ctx_train = hp->n_ctx_train,
        .n_params = model->n_params,
        .file_bytes = bsti_gguf_file_size(model->file),
        .weight_bytes_per_token = model->weight_bytes_per_token,
    };
    memcpy(out_info, &info, info.struct_size);
    return BST_OK;
}

bst_status bst_tokenize(const bst_model *model, const char *text, size_t length,
                        bool parse_special, int32_t *out_tokens, uint32_t capacity,
                        uint32_t *out_count)
{
    if (out_count)
        *out_count = 0;
    if (!model || (!text && length > 0) || !out_count || (!out_tokens && capacity > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_tokenize: NULL argument");
    return bsti_tokenizer_encode(model->tok, text ? text : "", length, parse_special,
                                 out_tokens, capacity, out_count);
}

bst_status bst_token_piece(const bst_model *model, int32_t token, char *buf, size_t capacity,
                           size_t *out_length)
{
    if (out_length)
        *out_length = 0;
    if (!model || !out_length || (!buf && capacity > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_token_piece: NULL argument");
    return bsti_tokenizer_piece(model->tok, token, buf, capacity, out_length);
}

bool bst_token_is_eog(const bst_model *model, int32_t token)
{
    return model && bsti_tokenizer_is_eog(model->tok, token);
}

bst_status bst_chat_format(const bst_model *model, const char *template_name,
                           const bst_chat_message *messages, uint32_t n_messages,
                           bool add_assistant, char **out_text)
{
    if (out_text)
        *out_text = NULL;
    if (!model || !out_text || (!messages && n_messages > 0))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_chat_format: NULL argument");
    return bsti_chat_format(bsti_tokenizer_chat_template(model->tok), template_name, messages,
                            n_messages, add_assistant, out_text);
}
