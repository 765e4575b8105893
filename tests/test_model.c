/*
 * tests/test_model.c — loading llama models: the real default model's facts (BASTION_MODEL), and
 * tiny synthetic llama GGUFs written here byte by byte, which give
 *   - an independent check of the forward pass: the logits bst_session_eval returns are
 *     compared with a plain double-precision forward pass written in this file from the same
 *     weights (tied and untied output, full and partial RoPE, GQA, chunked prompts, the KV
 *     cache carried across calls);
 *   - the model-level validation: each corrupted hyper-parameter or tensor must fail with the
 *     stated status and a message naming what is wrong.
 */
#include "test_util.h"

#include <bastion/bastion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- a minimal GGUF writer --- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        CU_ASSERT_FATAL(b->p != NULL);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

enum { T_U32 = 4, T_I32 = 5, T_F32 = 6, T_STR = 8, T_ARR = 9 };

static void kv_u32(buf *b, const char *k, uint32_t v)
{
    put_str(b, k);
    put_u32(b, T_U32);
    put_u32(b, v);
}

static void kv_f32(buf *b, const char *k, float v)
{
    put_str(b, k);
    put_u32(b, T_F32);
    put(b, &v, 4);
}

static void kv_str(buf *b, const char *k, const char *v)
{
    put_str(b, k);
    put_u32(b, T_STR);
    put_str(b, v);
}

static void kv_strs(buf *b, const char *k, char **v, uint32_t n)
{
    put_str(b, k);
    put_u32(b, T_ARR);
    put_u32(b, T_STR);
    put_u64(b, n);
    for (uint32_t i = 0; i < n; i++)
        put_str(b, v[i]);
}

static void kv_i32s(buf *b, const char *k, const int32_t *v, uint32_t n)
{
    put_str(b, k);
    put_u32(b, T_ARR);
    put_u32(b, T_I32);
    put_u64(b, n);
    put(b, v, (size_t)n * 4);
}

/* --- the synthetic model --- */

#define MAX_TENSORS 64

typedef struct tensor {
    char name[64];
    uint32_t rank;
    int64_t shape[2]; /* outermost-first */
    float *data;
} tensor;

typedef struct synth {
    /* hyper-parameters */
    uint32_t n_layers, n_embd, n_heads, n_kv_heads, n_ff, n_ctx_train;
    uint32_t rope_dims;  /* 0: key absent (= head dim) */
    uint32_t key_length; /* 0: key absent */
    float rope_base, eps;
    bool tied;
    const char *arch;
    /* corruptions */
    const char *drop_key;
    const char *drop_tensor;
    const char *bad_shape_tensor; /* written with one more row */
    const char *extra_tensor;
    const char *rope_scaling;
    /* built */
    uint32_t n_vocab;
    tensor t[MAX_TENSORS];
    uint32_t n_t;
} synth;

static synth synth_default(void)
{
    synth s;
    memset(&s, 0, sizeof s);
    s.n_layers = 2;
    s.n_embd = 64;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.n_ff = 96;
    s.n_ctx_train = 128;
    s.rope_base = 10000.0f;
    s.eps = 1e-5f;
    s.tied = true;
    s.arch = "llama";
    return s;
}

static uint32_t head_dim(const synth *s)
{
    return s->key_length ? s->key_length : s->n_embd / s->n_heads;
}

static uint64_t rng_state;
static float rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static tensor *add_tensor(synth *s, const char *name, uint32_t rank, int64_t d0, int64_t d1,
                          float scale, float offset)
{
    CU_ASSERT_FATAL(s->n_t < MAX_TENSORS);
    tensor *t = &s->t[s->n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rank = rank;
    t->shape[0] = d0;
    t->shape[1] = rank > 1 ? d1 : 1;
    size_t n = (size_t)d0 * (size_t)t->shape[1];
    t->data = malloc(n * sizeof(float));
    CU_ASSERT_FATAL(t->data != NULL);
    for (size_t i = 0; i < n; i++)
        t->data[i] = offset + scale * rnd();
    return t;
}

static void make_weights(synth *s)
{
    rng_state = 12345;
    const int64_t E = s->n_embd, V = s->n_vocab, F = s->n_ff;
    const int64_t Q = (int64_t)s->n_heads * head_dim(s), KV = (int64_t)s->n_kv_heads * head_dim(s);
    add_tensor(s, "token_embd.weight", 2, V, E, 1.0f, 0.0f);
    add_tensor(s, "output_norm.weight", 1, E, 0, 0.2f, 1.0f);
    if (!s->tied)
        add_tensor(s, "output.weight", 2, V, E, 0.3f, 0.0f);
    char n[64];
    for (uint32_t l = 0; l < s->n_layers; l++) {
        float ws = 0.25f;
#define ADD(suffix, rank, d0, d1, sc, off)                          \
    snprintf(n, sizeof n, "blk.%u.%s.weight", l, suffix);          \
    add_tensor(s, n, rank, d0, d1, sc, off);
        ADD("attn_norm", 1, E, 0, 0.2f, 1.0f)
        ADD("attn_q", 2, Q, E, ws, 0.0f)
        ADD("attn_k", 2, KV, E, ws, 0.0f)
        ADD("attn_v", 2, KV, E, ws, 0.0f)
        ADD("attn_output", 2, E, Q, ws, 0.0f)
        ADD("ffn_norm", 1, E, 0, 0.2f, 1.0f)
        ADD("ffn_gate", 2, F, E, ws, 0.0f)
        ADD("ffn_up", 2, F, E, ws, 0.0f)
        ADD("ffn_down", 2, E, F, ws, 0.0f)
#undef ADD
    }
}

static const tensor *find(const synth *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_t; i++)
        if (strcmp(s->t[i].name, name) == 0)
            return &s->t[i];
    return NULL;
}

static void synth_free(synth *s)
{
    for (uint32_t i = 0; i < s->n_t; i++)
        free(s->t[i].data);
    s->n_t = 0;
}

/* GPT-2's byte-to-character mapping, as UTF-8. */
static char *byte_token(unsigned b)
{
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        unsigned n = 0;
        for (unsigned c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)))
                n++;
        cp = 256 + n;
    }
    char *s = calloc(4, 1);
    if (cp < 0x80) {
        s[0] = (char)cp;
    } else {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
    }
    return s;
}

static const char *const merges[][3] = {
    {"h", "e", "he"}, {"l", "l", "ll"}, {"he", "ll", "hell"}, {"o", "r", "or"}, {"t", "h", "th"}};
static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
#define N_MERGES 5u
#define N_SPECIALS 3u

static bool keep_key(const synth *s, const char *k)
{
    return !s->drop_key || strcmp(s->drop_key, k) != 0;
}

/* Writes the model as a GGUF v3 file at `path`. */
static void write_gguf(synth *s, const char *path)
{
    s->n_vocab = 256 + N_MERGES + N_SPECIALS;
    if (s->n_t == 0)
        make_weights(s);
    char *tokens[256 + N_MERGES + N_SPECIALS];
    int32_t types[256 + N_MERGES + N_SPECIALS];
    for (unsigned b = 0; b < 256; b++) {
        tokens[b] = byte_token(b);
        types[b] = 1;
    }
    char *merge_text[N_MERGES];
    for (unsigned i = 0; i < N_MERGES; i++) {
        tokens[256 + i] = strdup(merges[i][2]);
        types[256 + i] = 1;
        merge_text[i] = malloc(32);
        snprintf(merge_text[i], 32, "%s %s", merges[i][0], merges[i][1]);
    }
    for (unsigned i = 0; i < N_SPECIALS; i++) {
        tokens[256 + N_MERGES + i] = strdup(specials[i]);
        types[256 + N_MERGES + i] = 3;
    }

    buf kv = {0};
    uint64_t n_kv = 0;
#define KV(call, key, ...)                \
    if (keep_key(s, key)) {               \
        call(&kv, key, __VA_ARGS__);      \
        n_kv++;                           \
    }
    KV(kv_str, "general.architecture", s->arch)
    KV(kv_str, "general.name", "synthetic")
    KV(kv_u32, "llama.block_count", s->n_layers)
    KV(kv_u32, "llama.embedding_length", s->n_embd)
    KV(kv_u32, "llama.feed_forward_length", s->n_ff)
    KV(kv_u32, "llama.attention.head_count", s->n_heads)
    KV(kv_u32, "llama.attention.head_count_kv", s->n_kv_heads)
    KV(kv_u32, "llama.context_length", s->n_ctx_train)
    KV(kv_f32, "llama.rope.freq_base", s->rope_base)
    KV(kv_f32, "llama.attention.layer_norm_rms_epsilon", s->eps)
    if (s->rope_dims)
        KV(kv_u32, "llama.rope.dimension_count", s->rope_dims)
    if (s->key_length) {
        KV(kv_u32, "llama.attention.key_length", s->key_length)
        KV(kv_u32, "llama.attention.value_length", s->key_length)
    }
    if (s->rope_scaling)
        KV(kv_str, "llama.rope.scaling.type", s->rope_scaling)
    KV(kv_str, "tokenizer.ggml.model", "gpt2")
    KV(kv_strs, "tokenizer.ggml.tokens", tokens, s->n_vocab)
    KV(kv_i32s, "tokenizer.ggml.token_type", types, s->n_vocab)
    KV(kv_strs, "tokenizer.ggml.merges", merge_text, N_MERGES)
    KV(kv_u32, "tokenizer.ggml.eos_token_id", 256 + N_MERGES)
#undef KV

    /* Tensor infos and data (f32, 32-byte aligned). */
    tensor extra = {0};
    if (s->extra_tensor) {
        snprintf(extra.name, sizeof extra.name, "%s", s->extra_tensor);
        extra.rank = 1;
        extra.shape[0] = s->n_embd;
        extra.shape[1] = 1;
        extra.data = calloc(s->n_embd, sizeof(float));
    }
    buf info = {0}, data = {0};
    uint64_t n_tensors = 0;
    for (uint32_t i = 0; i <= s->n_t; i++) {
        tensor *t = i < s->n_t ? &s->t[i] : (s->extra_tensor ? &extra : NULL);
        if (!t || (s->drop_tensor && strcmp(t->name, s->drop_tensor) == 0))
            continue;
        int64_t rows = t->rank == 2 ? t->shape[0] : 1;
        int64_t cols = t->rank == 2 ? t->shape[1] : t->shape[0];
        bool bad = s->bad_shape_tensor && strcmp(t->name, s->bad_shape_tensor) == 0;
        int64_t wrows = bad ? rows + 1 : rows;
        put_str(&info, t->name);
        put_u32(&info, t->rank);
        put_u64(&info, (uint64_t)cols); /* ne[0]: innermost */
        if (t->rank == 2)
            put_u64(&info, (uint64_t)wrows);
        put_u32(&info, 0); /* f32 */
        put_u64(&info, data.len);
        put(&data, t->data, (size_t)(rows * cols) * sizeof(float));
        if (bad) {
            float zero[4096] = {0};
            put(&data, zero, (size_t)cols * sizeof(float));
        }
        while (data.len % 32)
            put(&data, "", 1);
        n_tensors++;
    }
    free(extra.data);

    buf out = {0};
    put(&out, "GGUF", 4);
    put_u32(&out, 3);
    put_u64(&out, n_tensors);
    put_u64(&out, n_kv);
    put(&out, kv.p, kv.len);
    put(&out, info.p, info.len);
    while (out.len % 32)
        put(&out, "", 1);
    put(&out, data.p, data.len);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fwrite(out.p, 1, out.len, f) == out.len);
    CU_ASSERT_FATAL(fclose(f) == 0);
    free(kv.p);
    free(info.p);
    free(data.p);
    free(out.p);
    for (uint32_t i = 0; i < s->n_vocab; i++)
        free(tokens[i]);
    for (unsigned i = 0; i < N_MERGES; i++)
        free(merge_text[i]);
}

/* --- reference forward pass (double precision, straight from the llama definition) --- */

static void rms_norm(const double *x, const float *w, uint32_t n, double eps, double *out)
{
    double ss = 0.0;
    for (uint32_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (uint32_t i = 0; i < n; i++)
        out[i] = x[i] * r * w[i];
}

/* out[r] = sum_c W[r][c] x[c], W rows x cols */
static void matvec(const tensor *w, const double *x, double *out)
{
    for (int64_t r = 0; r < w->shape[0]; r++) {
        double acc = 0.0;
        for (int64_t c = 0; c < w->shape[1]; c++)
            acc += (double)w->data[r * w->shape[1] + c] * x[c];
        out[r] = acc;
    }
}

static void rope_head(double *v, uint32_t dims, double base, uint32_t pos)
{
    for (uint32_t i = 0; i < dims; i += 2) {
        double theta = pos * pow(base, -(double)i / dims);
        double c = cos(theta), sn = sin(theta), a = v[i], b = v[i + 1];
        v[i] = a * c - b * sn;
        v[i + 1] = a * sn + b * c;
    }
}

/* Logits [n][n_vocab] for tokens[0..n) evaluated from position 0. */
static double *reference_forward(const synth *s, const int32_t *tokens, uint32_t n)
{
    const uint32_t E = s->n_embd, D = head_dim(s), Hq = s->n_heads, Hkv = s->n_kv_heads;
    const uint32_t F = s->n_ff, V = s->n_vocab, rd = s->rope_dims ? s->rope_dims : D;
    double *x = calloc((size_t)n * E, sizeof *x);
    double *kc = calloc((size_t)n * Hkv * D, sizeof *kc);
    double *vc = calloc((size_t)n * Hkv * D, sizeof *vc);
    double *logits = calloc((size_t)n * V, sizeof *logits);
    double h[256], q[256], att[256], o[256], g[256], u[256], tmp[256], sc[64];
    CU_ASSERT_FATAL(E <= 256 && Hq * D <= 256 && F <= 256 && n <= 64);
    const tensor *emb = find(s, "token_embd.weight");
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < E; i++)
            x[t * E + i] = emb->data[(size_t)tokens[t] * E + i];
    char name[64];
#define W(suffix) (snprintf(name, sizeof name, "blk.%u.%s.weight", l, suffix), find(s, name))
    for (uint32_t l = 0; l < s->n_layers; l++) {
        for (uint32_t t = 0; t < n; t++) {
            double *xt = x + (size_t)t * E;
            rms_norm(xt, W("attn_norm")->data, E, s->eps, h);
            matvec(W("attn_q"), h, q);
            matvec(W("attn_k"), h, kc + (size_t)t * Hkv * D);
            matvec(W("attn_v"), h, vc + (size_t)t * Hkv * D);
            for (uint32_t hh = 0; hh < Hq; hh++)
                rope_head(q + hh * D, rd, s->rope_base, t);
            for (uint32_t hh = 0; hh < Hkv; hh++)
                rope_head(kc + (size_t)t * Hkv * D + hh * D, rd, s->rope_base, t);
            for (uint32_t hh = 0; hh < Hq; hh++) {
                uint32_t kvh = hh / (Hq / Hkv);
                double mx = -INFINITY, sum = 0.0;
                for (uint32_t j = 0; j <= t; j++) {
                    double d = 0.0;
                    for (uint32_t i = 0; i < D; i++)
                        d += q[hh * D + i] * kc[(size_t)j * Hkv * D + kvh * D + i];
                    sc[j] = d / sqrt((double)D);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (uint32_t j = 0; j <= t; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (uint32_t i = 0; i < D; i++) {
                    double a = 0.0;
                    for (uint32_t j = 0; j <= t; j++)
                        a += sc[j] / sum * vc[(size_t)j * Hkv * D + kvh * D + i];
                    att[hh * D + i] = a;
                }
            }
            matvec(W("attn_output"), att, o);
            for (uint32_t i = 0; i < E; i++)
                xt[i] += o[i];
            rms_norm(xt, W("ffn_norm")->data, E, s->eps, h);
            matvec(W("ffn_gate"), h, g);
            matvec(W("ffn_up"), h, u);
            for (uint32_t i = 0; i < F; i++)
                g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            matvec(W("ffn_down"), g, tmp);
            for (uint32_t i = 0; i < E; i++)
                xt[i] += tmp[i];
        }
    }
#undef W
    const tensor *head = s->tied ? emb : find(s, "output.weight");
    for (uint32_t t = 0; t < n; t++) {
        rms_norm(x + (size_t)t * E, find(s, "output_norm.weight")->data, E, s->eps, h);
        matvec(head, h, logits + (size_t)t * V);
    }
    free(x);
    free(kc);
    free(vc);
    return logits;
}

/* --- helpers --- */

static bst_context *cpu_context(void)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    return ctx;
}

static char tmp_path[256];

static const char *synth_path(void)
{
    if (!tmp_path[0])
        snprintf(tmp_path, sizeof tmp_path, "/tmp/bastion_test_model_%d.gguf", (int)getpid());
    return tmp_path;
}

/* Writes `s`, loads it and expects `want` with `needle` in the message. */
static void expect_load_error(synth *s, bst_status want, const char *needle)
{
    write_gguf(s, synth_path());
    bst_context *ctx = cpu_context();
    bst_model *m = NULL;
    bst_status st = bst_model_load(ctx, synth_path(), NULL, &m);
    if (st != want || !strstr(bst_last_error(), needle))
        fprintf(stderr, "\n  expected %s naming '%s', got %s: %s\n", bst_status_name(want),
                needle, bst_status_name(st), bst_last_error());
    CU_ASSERT_EQUAL(st, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), needle));
    CU_ASSERT_PTR_NULL(m);
    bst_model_destroy(m);
    bst_context_destroy(ctx);
    synth_free(s);
    remove(synth_path());
}

/* Max |got - want| over n values, relative to the largest |want|. */
static double rel_err(const float *got, const double *want, size_t n)
{
    double err = 0.0, mag = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        err = d > err ? d : err;
        mag = fabs(want[i]) > mag ? fabs(want[i]) : mag;
    }
    return err / mag;
}

/* --- forward pass against the reference --- */

static void check_forward(synth *s, uint32_t n_batch, bool no_mmap)
{
    write_gguf(s, synth_path());
    bst_context *ctx = cpu_context();
    bst_model *m = NULL;
    bst_model_options mo = {.struct_size = sizeof mo, .no_mmap = no_mmap};
    CU_ASSERT_FATAL(bst_model_load(ctx, synth_path(), &mo, &m) == BST_OK);
    bst_model_info info = {.struct_size = sizeof info};
    CU_ASSERT_FATAL(bst_model_get_info(m, &info) == BST_OK);
    CU_ASSERT_EQUAL(info.n_vocab, s->n_vocab);
    CU_ASSERT_EQUAL(info.head_dim, head_dim(s));
    CU_ASSERT_STRING_EQUAL(info.name, "synthetic");

    static const int32_t toks[10] = {104, 261, 12, 200, 33, 257, 7, 99, 260, 1};
    const uint32_t n_prompt = 7, n = 10, V = s->n_vocab;
    double *want = reference_forward(s, toks, n);
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = 16, .n_batch = n_batch};
    bst_session *ss = NULL;
    CU_ASSERT_FATAL(bst_session_create(m, &so, &ss) == BST_OK);
    float *got = calloc((size_t)n * V, sizeof *got);
    /* Prompt with every row's logits, then one token at a time (last logits only). */
    CU_ASSERT_FATAL(bst_session_eval(ss, toks, n_prompt, true, got) == BST_OK);
    for (uint32_t t = n_prompt; t < n; t++)
        CU_ASSERT_FATAL(bst_session_eval(ss, toks + t, 1, false, got + (size_t)t * V) == BST_OK);
    CU_ASSERT_EQUAL(bst_session_position(ss), n);
    for (uint32_t t = 0; t < n; t++) {
        double e = rel_err(got + (size_t)t * V, want + (size_t)t * V, V);
        if (e > 1e-4)
            fprintf(stderr, "\n  token %u: relative error %g\n", t, e);
        CU_ASSERT(e <= 1e-4);
    }
    /* After a reset the same prompt gives the same logits: old cache rows are masked. */
    bst_session_reset(ss);
    CU_ASSERT_EQUAL(bst_session_position(ss), 0);
    float *again = calloc(V, sizeof *again);
    CU_ASSERT_FATAL(bst_session_eval(ss, toks, 3, false, again) == BST_OK);
    CU_ASSERT(rel_err(again, want + 2 * (size_t)V, V) <= 1e-4);
    free(again);
    free(got);
    free(want);
    bst_session_destroy(ss);
    bst_model_destroy(m);
    bst_context_destroy(ctx);
    synth_free(s);
    remove(synth_path());
}

static void test_forward_tied(void)
{
    synth s = synth_default();
    check_forward(&s, 4, false); /* 7 prompt tokens in chunks of 4 and 3 */
}

static void test_forward_untied_partial_rope(void)
{
    synth s = synth_default();
    s.tied = false;
    s.rope_dims = 8; /* of 16 */
    s.rope_base = 500.0f;
    s.n_kv_heads = 1;
    check_forward(&s, 16, true);
}

static void test_forward_key_length(void)
{
    synth s = synth_default();
    s.key_length = 32; /* heads wider than n_embd / n_heads */
    s.n_heads = 4;
    s.n_kv_heads = 4;
    check_forward(&s, 2, false);
}

/* --- validation --- */

static void test_missing_key(void)
{
    synth s = synth_default();
    s.drop_key = "llama.block_count";
    expect_load_error(&s, BST_ERR_FORMAT, "llama.block_count");
}

static void test_zero_layers(void)
{
    synth s = synth_default();
    s.n_layers = 0;
    expect_load_error(&s, BST_ERR_FORMAT, "llama.block_count");
}

/* Weights built for the default shapes, so a hyper-parameter can then be set to a value the
 * weights do not match: its own check must fire before any tensor is looked at. */
static synth prebuilt(void)
{
    synth s = synth_default();
    s.n_vocab = 256 + N_MERGES + N_SPECIALS;
    make_weights(&s);
    return s;
}

static void test_absurd_layers(void)
{
    synth s = prebuilt();
    s.n_layers = 1000000;
    expect_load_error(&s, BST_ERR_FORMAT, "llama.block_count");
}

static void test_heads_not_multiple(void)
{
    synth s = synth_default();
    s.n_kv_heads = 3; /* 4 % 3 */
    expect_load_error(&s, BST_ERR_FORMAT, "head_count_kv");
}

static void test_embd_not_multiple_of_heads(void)
{
    synth s = prebuilt();
    s.n_heads = 5; /* 64 % 5 */
    s.n_kv_heads = 5;
    expect_load_error(&s, BST_ERR_FORMAT, "llama.embedding_length");
}

static void test_bad_eps(void)
{
    synth s = synth_default();
    s.eps = NAN;
    expect_load_error(&s, BST_ERR_FORMAT, "layer_norm_rms_epsilon");
    s = synth_default();
    s.eps = 0.0f;
    expect_load_error(&s, BST_ERR_FORMAT, "layer_norm_rms_epsilon");
}

static void test_bad_rope_dims(void)
{
    synth s = synth_default();
    s.rope_dims = 7;
    expect_load_error(&s, BST_ERR_FORMAT, "llama.rope.dimension_count");
    s = synth_default();
    s.rope_dims = 64; /* > head dim 16 */
    expect_load_error(&s, BST_ERR_FORMAT, "llama.rope.dimension_count");
}

static void test_bad_tensor_shape(void)
{
    synth s = synth_default();
    s.bad_shape_tensor = "blk.1.attn_k.weight";
    expect_load_error(&s, BST_ERR_FORMAT, "blk.1.attn_k.weight");
    s = synth_default();
    s.bad_shape_tensor = "token_embd.weight";
    expect_load_error(&s, BST_ERR_FORMAT, "token_embd.weight");
}

static void test_missing_tensor(void)
{
    synth s = synth_default();
    s.drop_tensor = "blk.0.ffn_up.weight";
    expect_load_error(&s, BST_ERR_FORMAT, "blk.0.ffn_up.weight");
    s = synth_default();
    s.drop_tensor = "output_norm.weight";
    expect_load_error(&s, BST_ERR_FORMAT, "output_norm.weight");
}

static void test_unknown_tensor(void)
{
    synth s = synth_default();
    s.extra_tensor = "blk.0.attn_q.bias";
    expect_load_error(&s, BST_ERR_UNSUPPORTED, "blk.0.attn_q.bias");
}

static void test_other_architecture(void)
{
    synth s = synth_default();
    s.arch = "gpt2";
    expect_load_error(&s, BST_ERR_UNSUPPORTED, "gpt2");
}

static void test_rope_scaling(void)
{
    synth s = synth_default();
    s.rope_scaling = "yarn";
    expect_load_error(&s, BST_ERR_UNSUPPORTED, "yarn");
}

static void test_missing_file(void)
{
    bst_context *ctx = cpu_context();
    bst_model *m = NULL;
    bst_status st = bst_model_load(ctx, "/nonexistent/model.gguf", NULL, &m);
    CU_ASSERT_EQUAL(st, BST_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "/nonexistent/model.gguf"));
    CU_ASSERT_PTR_NULL(m);
    bst_context_destroy(ctx);
}

static int progress_calls;
static bool cancel_at_second(void *user, float fraction)
{
    (void)user;
    CU_ASSERT(fraction >= 0.0f && fraction <= 1.0f);
    return ++progress_calls < 2;
}

static void test_progress_cancel(void)
{
    synth s = synth_default();
    write_gguf(&s, synth_path());
    bst_context *ctx = cpu_context();
    bst_model *m = NULL;
    bst_model_options mo = {.struct_size = sizeof mo, .progress = cancel_at_second};
    progress_calls = 0;
    CU_ASSERT_EQUAL(bst_model_load(ctx, synth_path(), &mo, &m), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "cancelled"));
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT_EQUAL(progress_calls, 2);
    bst_context_destroy(ctx);
    synth_free(&s);
    remove(synth_path());
}

static void test_eval_errors(void)
{
    synth s = synth_default();
    write_gguf(&s, synth_path());
    bst_context *ctx = cpu_context();
    bst_model *m = NULL;
    CU_ASSERT_FATAL(bst_model_load(ctx, synth_path(), NULL, &m) == BST_OK);
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = 8};
    bst_session *ss = NULL;
    CU_ASSERT_FATAL(bst_session_create(m, &so, &ss) == BST_OK);
    int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    int32_t bad = (int32_t)s.n_vocab;
    CU_ASSERT_EQUAL(bst_session_eval(ss, &bad, 1, false, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_session_eval(ss, toks, 0, false, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_session_eval(ss, toks, 9, false, NULL), BST_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(bst_session_position(ss), 0);
    CU_ASSERT_EQUAL(bst_session_eval(ss, toks, 6, false, NULL), BST_OK);
    CU_ASSERT_EQUAL(bst_session_eval(ss, toks, 3, false, NULL), BST_ERR_OVERFLOW);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "context full"));
    CU_ASSERT_EQUAL(bst_session_position(ss), 6);
    CU_ASSERT_EQUAL(bst_session_eval(ss, toks, 2, false, NULL), BST_OK);
    CU_ASSERT_EQUAL(bst_session_position(ss), 8);
    bst_session_destroy(ss);
    bst_model_destroy(m);
    bst_context_destroy(ctx);
    synth_free(&s);
    remove(synth_path());
}

/* --- the real default model --- */

static const char *real_model(void)
{
    const char *p = getenv("BASTION_MODEL");
    if (!p || !*p)
        fprintf(stderr, "\n  BASTION_MODEL is not set (run tools/fetch-model.sh)\n");
    return p;
}

static void test_real_model_info(void)
{
    const char *path = real_model();
    CU_ASSERT_FATAL(path != NULL && *path);
    bst_context *ctx = cpu_context();
    bst_model *m = NULL;
    bst_status st = bst_model_load(ctx, path, NULL, &m);
    if (st != BST_OK)
        fprintf(stderr, "\n  %s: %s\n", path, bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    bst_model_info info = {.struct_size = sizeof info};
    CU_ASSERT_FATAL(bst_model_get_info(m, &info) == BST_OK);
    /* DESIGN.md "Main job": SmolLM2-135M's configuration. */
    CU_ASSERT_STRING_EQUAL(info.architecture, "llama");
    CU_ASSERT_EQUAL(info.n_layers, 30);
    CU_ASSERT_EQUAL(info.n_embd, 576);
    CU_ASSERT_EQUAL(info.n_heads, 9);
    CU_ASSERT_EQUAL(info.n_kv_heads, 3);
    CU_ASSERT_EQUAL(info.head_dim, 64);
    CU_ASSERT_EQUAL(info.n_ff, 1536);
    CU_ASSERT_EQUAL(info.n_vocab, 49152);
    CU_ASSERT(info.n_ctx_train >= 2048);
    /* 134.5M parameters with tied embeddings (token_embd counted once). */
    CU_ASSERT(info.n_params > 130000000u && info.n_params < 140000000u);
    struct stat sb;
    CU_ASSERT_FATAL(stat(path, &sb) == 0);
    CU_ASSERT_EQUAL(info.file_bytes, (uint64_t)sb.st_size);
    /* An older, smaller info struct gets only the fields it has. */
    bst_model_info small;
    memset(&small, 0xAB, sizeof small);
    small.struct_size = (uint32_t)offsetof(bst_model_info, name);
    CU_ASSERT_FATAL(bst_model_get_info(m, &small) == BST_OK);
    CU_ASSERT_EQUAL(small.n_layers, 30);
    CU_ASSERT_EQUAL(small.n_embd, 0xABABABABu);
    /* The chat template: ChatML with SmolLM's default system message. */
    bst_chat_message msg = {"user", "Hi"};
    char *text = NULL;
    CU_ASSERT_FATAL(bst_chat_format(m, NULL, &msg, 1, true, &text) == BST_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    bst_free(text);
    CU_ASSERT_EQUAL(bst_chat_format(m, "no-such-template", &msg, 1, true, &text),
                    BST_ERR_UNSUPPORTED);
    /* End-of-generation tokens. */
    int32_t ids[4];
    uint32_t n = 0;
    CU_ASSERT_FATAL(bst_tokenize(m, "<|im_end|>", 10, true, ids, 4, &n) == BST_OK);
    CU_ASSERT_FATAL(n == 1);
    CU_ASSERT(bst_token_is_eog(m, ids[0]));
    CU_ASSERT_FATAL(bst_tokenize(m, " Paris", 6, false, ids, 4, &n) == BST_OK);
    CU_ASSERT(n >= 1 && !bst_token_is_eog(m, ids[0]));
    bst_model_destroy(m);
    bst_context_destroy(ctx);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"forward matches reference (tied output)", test_forward_tied},
        {"forward matches reference (untied, partial rope, MQA)", test_forward_untied_partial_rope},
        {"forward matches reference (key_length)", test_forward_key_length},
        {"missing hyper-parameter", test_missing_key},
        {"zero layers", test_zero_layers},
        {"absurd layer count", test_absurd_layers},
        {"heads not a multiple of kv heads", test_heads_not_multiple},
        {"embedding not a multiple of heads", test_embd_not_multiple_of_heads},
        {"bad rms epsilon", test_bad_eps},
        {"bad rope dimension count", test_bad_rope_dims},
        {"tensor of the wrong shape", test_bad_tensor_shape},
        {"missing tensor", test_missing_tensor},
        {"unknown tensor", test_unknown_tensor},
        {"other architecture", test_other_architecture},
        {"rope scaling", test_rope_scaling},
        {"missing file", test_missing_file},
        {"progress cancels loading", test_progress_cancel},
        {"eval errors and context full", test_eval_errors},
        {"real model info", test_real_model_info},
        {NULL, NULL},
    };
    return bst_test_run_suite("model", cases);
}
