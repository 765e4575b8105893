/*
 * runtime/model/tokenizer.c — building the tokenizer from GGUF metadata, special-token splitting,
 * decoding to pieces, end-of-generation ids, and the UTF-8 stream used when printing tokens.
 *
 * The model-specific halves live in tokenizer_bpe.c (byte-level BPE) and tokenizer_spm.c
 * (SentencePiece). Behaviour follows llama.cpp's llama-vocab.cpp where the GGUF format leaves a
 * choice (which token types are "special", which token texts end generation), because GGUF files
 * are written for it; special-token matching is leftmost-longest, as Hugging Face tokenizers do.
 */
#include "runtime/model/tokenizer_impl.h"

#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* text -> id map                                                                              */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

int32_t bsti_toki_lookup(const bsti_tokenizer *tok, const char *text, size_t len)
{
    if (len == 0 || len > UINT32_MAX) return -1;
    uint32_t slot = hash_bytes(text, len) & tok->map_mask;
    for (;;) {
        int32_t id = tok->map[slot];
        if (id < 0) return -1;
        if (tok->text_len[id] == len && memcmp(tok->text + tok->text_off[id], text, len) == 0)
            return id;
        slot = (slot + 1) & tok->map_mask;
    }
}

static bst_status build_map(bsti_tokenizer *tok)
{
    uint32_t cap = 16;
    while (cap < 2u * tok->n_vocab) {
        if (cap > (UINT32_MAX >> 2)) return bsti_fail(BST_ERR_OVERFLOW, "vocabulary too large");
        cap <<= 1;
    }
    tok->map = malloc((size_t)cap * sizeof *tok->map);
    if (!tok->map) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    memset(tok->map, 0xff, (size_t)cap * sizeof *tok->map);
    tok->map_mask = cap - 1;
    for (uint32_t id = 0; id < tok->n_vocab; id++) {
        uint32_t len = tok->text_len[id];
        if (len == 0) continue; /* an empty token can never be produced from text */
        const char *s = tok->text + tok->text_off[id];
        uint32_t slot = hash_bytes(s, len) & tok->map_mask;
        for (;;) {
            int32_t other = tok->map[slot];
            if (other < 0) {
                tok->map[slot] = (int32_t)id;
                break;
            }
            if (tok->text_len[other] == len && memcmp(tok->text + tok->text_off[other], s, len) == 0) {
                /* Duplicate text: the later id wins, as in llama.cpp's token_to_id map. */
                tok->map[slot] = (int32_t)id;
                break;
            }
            slot = (slot + 1) & tok->map_mask;
        }
    }
    return BST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* metadata helpers                                                                             */

static bst_status get_array(const bsti_gguf *file, const char *key, bool required,
                            const bsti_gguf_array **out_arr)
{
    *out_arr = NULL;
    const bsti_gguf_kv *kv = bsti_gguf_find(file, key);
    if (!kv) {
        if (required) return bsti_fail(BST_ERR_FORMAT, "tokenizer: missing %s", key);
        return BST_OK;
    }
    if (kv->type != BSTI_GGUF_ARRAY)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: %s is not an array", key);
    *out_arr = &kv->v.arr;
    return BST_OK;
}

static bool is_int_type(bsti_gguf_type t)
{
    return t == BSTI_GGUF_UINT8 || t == BSTI_GGUF_INT8 || t == BSTI_GGUF_UINT16 ||
           t == BSTI_GGUF_INT16 || t == BSTI_GGUF_UINT32 || t == BSTI_GGUF_INT32 ||
           t == BSTI_GGUF_UINT64 || t == BSTI_GGUF_INT64;
}

/* An optional token id: -1 when absent (or `fallback` if that is a valid id), an error when
 * present but not a valid id. */
static bst_status get_token_id(const bsti_tokenizer *tok, const bsti_gguf *file, const char *key,
                               int32_t fallback, int32_t *out_id)
{
    const bsti_gguf_kv *kv = bsti_gguf_find(file, key);
    if (!kv) {
        *out_id = (fallback >= 0 && (uint32_t)fallback < tok->n_vocab) ? fallback : -1;
        return BST_OK;
    }
    int64_t v;
    if (kv->type == BSTI_GGUF_UINT8 || kv->type == BSTI_GGUF_UINT16 ||
        kv->type == BSTI_GGUF_UINT32 || kv->type == BSTI_GGUF_UINT64) {
        v = kv->v.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->v.u64;
    } else if (is_int_type(kv->type)) {
        v = kv->v.i64;
    } else {
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: %s is not an integer", key);
    }
    if (v < 0 || v >= (int64_t)tok->n_vocab)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: %s = %lld is outside the vocabulary (%u tokens)",
                         key, (long long)v, tok->n_vocab);
    *out_id = (int32_t)v;
    return BST_OK;
}

static bst_status get_opt_bool(const bsti_gguf *file, const char *key, bool *inout)
{
    const bsti_gguf_kv *kv = bsti_gguf_find(file, key);
    if (!kv) return BST_OK;
    if (kv->type != BSTI_GGUF_BOOL) return bsti_fail(BST_ERR_FORMAT, "tokenizer: %s is not a bool", key);
    *inout = kv->v.u64 != 0;
    return BST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* loading                                                                                      */

static bst_status load_tokens(bsti_tokenizer *tok, const bsti_gguf *file)
{
    const bsti_gguf_array *arr;
    bst_status st = get_array(file, "tokenizer.ggml.tokens", true, &arr);
    if (st) return st;
    if (arr->elem_type != BSTI_GGUF_STRING)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.ggml.tokens is not a string array");
    if (arr->count == 0) return bsti_fail(BST_ERR_FORMAT, "tokenizer: the vocabulary is empty");
    if (arr->count > (uint64_t)INT32_MAX)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: vocabulary of %llu tokens is too large",
                         (unsigned long long)arr->count);
    tok->n_vocab = (uint32_t)arr->count;
    uint32_t n = tok->n_vocab;

    tok->text_off = malloc((size_t)n * sizeof *tok->text_off);
    tok->text_len = malloc((size_t)n * sizeof *tok->text_len);
    tok->type = malloc(n);
    if (!tok->text_off || !tok->text_len || !tok->type)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");

    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        bsti_gguf_str s;
        st = bsti_gguf_array_str(arr, i, &s);
        if (st) return bsti_fail_context(st, "tokenizer.ggml.tokens[%u]", i);
        if (s.len > UINT32_MAX || s.len > SIZE_MAX - total)
            return bsti_fail(BST_ERR_FORMAT, "tokenizer: token %u is too long", i);
        tok->text_off[i] = total;
        tok->text_len[i] = (uint32_t)s.len;
        total += (size_t)s.len;
    }
    tok->text = malloc(total ? total : 1);
    if (!tok->text) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        bsti_gguf_str s;
        st = bsti_gguf_array_str(arr, i, &s);
        if (st) return st;
        if (s.len) memcpy(tok->text + tok->text_off[i], s.ptr, (size_t)s.len);
    }

    /* Token types: optional (older files), every token normal then. */
    memset(tok->type, TOKI_NORMAL, n);
    st = get_array(file, "tokenizer.ggml.token_type", false, &arr);
    if (st) return st;
    if (arr) {
        if (!is_int_type(arr->elem_type))
            return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type is not an integer array");
        if (arr->count != n)
            return bsti_fail(BST_ERR_FORMAT,
                             "tokenizer: tokenizer.ggml.token_type has %llu entries for %u tokens",
                             (unsigned long long)arr->count, n);
        for (uint32_t i = 0; i < n; i++) {
            int64_t t;
            st = bsti_gguf_array_i64(arr, i, &t);
            if (st) return bsti_fail_context(st, "tokenizer.ggml.token_type[%u]", i);
            if (t < TOKI_UNDEFINED || t > TOKI_BYTE)
                return bsti_fail(BST_ERR_FORMAT, "tokenizer: token %u has unknown type %lld", i,
                                 (long long)t);
            tok->type[i] = (uint8_t)t;
        }
    }

    st = get_array(file, "tokenizer.ggml.scores", false, &arr);
    if (st) return st;
    if (arr && tok->kind == TOKI_SPM) {
        if (arr->elem_type != BSTI_GGUF_FLOAT32 && arr->elem_type != BSTI_GGUF_FLOAT64)
            return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not a float array");
        if (arr->count != n)
            return bsti_fail(BST_ERR_FORMAT,
                             "tokenizer: tokenizer.ggml.scores has %llu entries for %u tokens",
                             (unsigned long long)arr->count, n);
        tok->score = malloc((size_t)n * sizeof *tok->score);
        if (!tok->score) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        for (uint32_t i = 0; i < n; i++) {
            double v;
            st = bsti_gguf_array_f64(arr, i, &v);
            if (st) return bsti_fail_context(st, "tokenizer.ggml.scores[%u]", i);
            tok->score[i] = (float)v;
        }
    } else if (tok->kind == TOKI_SPM) {
        tok->score = calloc(n, sizeof *tok->score);
        if (!tok->score) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    return BST_OK;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" -> byte, or -1. */
static int parse_byte_token(const char *s, size_t len)
{
    if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hex_value(s[3]), lo = hex_value(s[4]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

static bst_status spm_setup(bsti_tokenizer *tok)
{
    for (uint32_t id = 0; id < tok->n_vocab; id++) {
        if (tok->type[id] != TOKI_BYTE) continue;
        const char *s = tok->text + tok->text_off[id];
        if (parse_byte_token(s, tok->text_len[id]) < 0)
            return bsti_fail(BST_ERR_FORMAT, "tokenizer: byte token %u is \"%.*s\", not <0xXX>", id,
                             (int)(tok->text_len[id] > 32 ? 32 : tok->text_len[id]), s);
    }
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = bsti_toki_lookup(tok, buf, 6);
        if (id < 0) {
            char c = (char)b;
            id = bsti_toki_lookup(tok, &c, 1);
        }
        tok->byte_token[b] = id;
    }
    return BST_OK;
}

/* The bytes a token stands for. */
static bst_status build_pieces(bsti_tokenizer *tok)
{
    uint32_t n = tok->n_vocab;
    tok->piece_off = malloc((size_t)n * sizeof *tok->piece_off);
    tok->piece_len = malloc((size_t)n * sizeof *tok->piece_len);
    /* A piece is never longer than its text: byte-level decoding maps 1-2 bytes to 1, '▁' (3
     * bytes) becomes 1 and <0xXX> (6) becomes 1. */
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += tok->text_len[i];
    tok->piece = malloc(total ? total : 1);
    if (!tok->piece_off || !tok->piece_len || !tok->piece)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");

    size_t pos = 0;
    for (uint32_t id = 0; id < n; id++) {
        const char *s = tok->text + tok->text_off[id];
        size_t len = tok->text_len[id];
        char *dst = tok->piece + pos;
        size_t out = 0;
        uint8_t type = tok->type[id];
        if (type == TOKI_CONTROL || type == TOKI_UNKNOWN || type == TOKI_USER_DEFINED) {
            memcpy(dst, s, len);
            out = len;
        } else if (type == TOKI_UNUSED || type == TOKI_UNDEFINED) {
            out = 0; /* llama.cpp renders these as nothing */
        } else if (tok->kind == TOKI_SPM && type == TOKI_BYTE) {
            dst[0] = (char)parse_byte_token(s, len); /* validated in spm_setup */
            out = 1;
        } else if (tok->kind == TOKI_SPM) {
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    dst[out++] = ' ';
                    i += 3;
                } else {
                    dst[out++] = s[i++];
                }
            }
        } else {
            /* Byte-level BPE: every character maps back to one byte. A token holding a character
             * outside the mapping keeps its raw text (as Hugging Face's ByteLevel decoder does). */
            bool ok = true;
            for (size_t i = 0; i < len && ok;) {
                unsigned char c = (unsigned char)s[i];
                uint32_t cp;
                if (c < 0x80) {
                    cp = c;
                    i += 1;
                } else if ((c & 0xe0) == 0xc0 && i + 1 < len) {
                    cp = ((uint32_t)(c & 0x1f) << 6) | ((unsigned char)s[i + 1] & 0x3fu);
                    i += 2;
                } else {
                    ok = false;
                    break;
                }
                int b = bsti_toki_char_byte(cp);
                if (b < 0) ok = false;
                else dst[out++] = (char)b;
            }
            if (!ok) {
                memcpy(dst, s, len);
                out = len;
            }
        }
        tok->piece_off[id] = pos;
        tok->piece_len[id] = (uint32_t)out;
        pos += out;
    }
    return BST_OK;
}

static int cmp_special(const void *pa, const void *pb, void *ctx)
{
    const bsti_tokenizer *tok = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    unsigned char fa = (unsigned char)tok->text[tok->text_off[a]];
    unsigned char fb = (unsigned char)tok->text[tok->text_off[b]];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (tok->text_len[a] != tok->text_len[b]) return tok->text_len[a] > tok->text_len[b] ? -1 : 1;
    return a < b ? -1 : (a > b);
}

/* Merge sort (qsort has no context argument in C11; some vocabularies have thousands of
 * user-defined tokens, so no quadratic sort). */
static bst_status sort_special(bsti_tokenizer *tok)
{
    uint32_t n = tok->n_special;
    if (n < 2) return BST_OK;
    int32_t *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    int32_t *src = tok->special, *dst = tmp;
    for (uint32_t width = 1; width < n; width = width > n / 2 ? n : width * 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = mid + width < n ? mid + width : n;
            uint32_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                dst[k++] = cmp_special(&src[b], &src[a], tok) < 0 ? src[b++] : src[a++];
            while (a < mid) dst[k++] = src[a++];
            while (b < hi) dst[k++] = src[b++];
        }
        int32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != tok->special) memcpy(tok->special, src, (size_t)n * sizeof *src);
    free(tmp);
    return BST_OK;
}

static bst_status build_special(bsti_tokenizer *tok)
{
    uint32_t count = 0;
    for (uint32_t id = 0; id < tok->n_vocab; id++) {
        uint8_t t = tok->type[id];
        if ((t == TOKI_CONTROL || t == TOKI_USER_DEFINED || t == TOKI_UNKNOWN) && tok->text_len[id] > 0)
            count++;
    }
    tok->special = malloc((count ? count : 1) * sizeof *tok->special);
    if (!tok->special) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (uint32_t id = 0; id < tok->n_vocab; id++) {
        uint8_t t = tok->type[id];
        if ((t == TOKI_CONTROL || t == TOKI_USER_DEFINED || t == TOKI_UNKNOWN) && tok->text_len[id] > 0)
            tok->special[tok->n_special++] = (int32_t)id;
    }
    bst_status st = sort_special(tok);
    if (st) return st;
    uint32_t i = 0;
    for (uint32_t b = 0; b < 256; b++) {
        tok->special_start[b] = i;
        while (i < tok->n_special &&
               (unsigned char)tok->text[tok->text_off[tok->special[i]]] == b)
            i++;
    }
    tok->special_start[256] = i;
    return BST_OK;
}

static void eog_set(bsti_tokenizer *tok, int32_t id)
{
    if (id >= 0 && (uint32_t)id < tok->n_vocab) tok->eog[(uint32_t)id >> 3] |= (uint8_t)(1u << (id & 7));
}

static bst_status build_eog(bsti_tokenizer *tok)
{
    tok->eog = calloc(((size_t)tok->n_vocab + 7) / 8, 1);
    if (!tok->eog) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    eog_set(tok, tok->eos);
    eog_set(tok, tok->eot);
    eog_set(tok, tok->eom);
    /* Token texts llama.cpp treats as end of generation (llama-vocab.cpp), plus its FIM
     * pad/repo/separator tokens: a model that emits them has left the conversation. */
    static const char *const names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
        "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>",
        "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        eog_set(tok, bsti_toki_lookup(tok, names[i], strlen(names[i])));
    return BST_OK;
}

static bst_status copy_chat_template(bsti_tokenizer *tok, const bsti_gguf *file)
{
    const bsti_gguf_kv *kv = bsti_gguf_find(file, "tokenizer.chat_template");
    if (!kv) return BST_OK;
    if (kv->type != BSTI_GGUF_STRING)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.chat_template is not a string");
    if (kv->v.str.len >= SIZE_MAX)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.chat_template is too long");
    size_t len = (size_t)kv->v.str.len;
    tok->chat_template = malloc(len + 1);
    if (!tok->chat_template) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    if (len) memcpy(tok->chat_template, kv->v.str.ptr, len);
    tok->chat_template[len] = '\0';
    return BST_OK;
}

static bst_status create(bsti_tokenizer *tok, const bsti_gguf *file)
{
    bsti_gguf_str model;
    const bsti_gguf_kv *kv = bsti_gguf_find(file, "tokenizer.ggml.model");
    if (!kv) return bsti_fail(BST_ERR_FORMAT, "tokenizer: missing tokenizer.ggml.model");
    if (kv->type != BSTI_GGUF_STRING)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.ggml.model is not a string");
    model = kv->v.str;
    if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) {
        tok->kind = TOKI_BPE;
    } else if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) {
        tok->kind = TOKI_SPM;
    } else {
        return bsti_fail(BST_ERR_UNSUPPORTED,
                         "tokenizer: tokenizer.ggml.model \"%.*s\" is not supported (gpt2 and llama are)",
                         (int)(model.len > 64 ? 64 : model.len), model.ptr);
    }

    bst_status st = load_tokens(tok, file);
    if (!st) st = build_map(tok);
    if (st) return st;

    /* llama.cpp's defaults for SentencePiece vocabularies; BPE files name their ids. */
    bool spm = tok->kind == TOKI_SPM;
    if (!st) st = get_token_id(tok, file, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &tok->bos);
    if (!st) st = get_token_id(tok, file, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &tok->eos);
    if (!st) st = get_token_id(tok, file, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &tok->unk);
    if (!st) st = get_token_id(tok, file, "tokenizer.ggml.eot_token_id", -1, &tok->eot);
    if (!st) st = get_token_id(tok, file, "tokenizer.ggml.eom_token_id", -1, &tok->eom);
    int32_t unused;
    if (!st) st = get_token_id(tok, file, "tokenizer.ggml.padding_token_id", -1, &unused);
    if (st) return st;

    tok->add_bos = spm;
    tok->add_space_prefix = spm;
    if (spm) {
        st = spm_setup(tok);
    } else {
        st = bsti_toki_bpe_setup(tok, file); /* may set add_bos for llama3-style pre-tokenizers */
    }
    if (!st) st = get_opt_bool(file, "tokenizer.ggml.add_bos_token", &tok->add_bos);
    if (!st) st = get_opt_bool(file, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix);
    if (st) return st;
    if (tok->add_bos && tok->bos < 0)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: the model adds a BOS token but names none");

    st = build_pieces(tok);
    if (!st) st = build_special(tok);
    if (!st) st = build_eog(tok);
    if (!st) st = copy_chat_template(tok, file);
    return st;
}

bst_status bsti_tokenizer_create(const bsti_gguf *file, bsti_tokenizer **out)
{
    if (!out) return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tokenizer_create: out is NULL");
    *out = NULL;
    if (!file) return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tokenizer_create: file is NULL");
    bsti_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    tok->bos = tok->eos = tok->eot = tok->eom = tok->unk = -1;
    for (int b = 0; b < 256; b++) tok->byte_token[b] = -1;
    bst_status st = create(tok, file);
    if (st) {
        bsti_tokenizer_destroy(tok);
        return st;
    }
    *out = tok;
    return BST_OK;
}

void bsti_tokenizer_destroy(bsti_tokenizer *tok)
{
    if (!tok) return;
    bsti_toki_bpe_free(tok);
    free(tok->text);
    free(tok->text_off);
    free(tok->text_len);
    free(tok->type);
    free(tok->score);
    free(tok->piece);
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->map);
    free(tok->merges);
    free(tok->special);
    free(tok->eog);
    free(tok->chat_template);
    free(tok);
}

/* ------------------------------------------------------------------------------------------ */
/* queries                                                                                      */

uint32_t bsti_tokenizer_n_vocab(const bsti_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
int32_t bsti_tokenizer_bos(const bsti_tokenizer *tok) { return tok ? tok->bos : -1; }
int32_t bsti_tokenizer_eos(const bsti_tokenizer *tok) { return tok ? tok->eos : -1; }
bool bsti_tokenizer_add_bos(const bsti_tokenizer *tok) { return tok && tok->add_bos; }
const char *bsti_tokenizer_chat_template(const bsti_tokenizer *tok)
{
    return tok ? tok->chat_template : NULL;
}

bool bsti_tokenizer_is_eog(const bsti_tokenizer *tok, int32_t token)
{
    if (!tok || token < 0 || (uint32_t)token >= tok->n_vocab) return false;
    return (tok->eog[(uint32_t)token >> 3] >> (token & 7)) & 1u;
}

int32_t bsti_tokenizer_find(const bsti_tokenizer *tok, const char *text)
{
    if (!tok || !text) return -1;
    return bsti_toki_lookup(tok, text, strlen(text));
}

bst_status bsti_tokenizer_piece(const bsti_tokenizer *tok, int32_t token, char *buf, size_t cap,
                                size_t *out_len)
{
    if (!tok || !out_len || (!buf && cap))
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tokenizer_piece: NULL argument");
    *out_len = 0;
    if (token < 0 || (uint32_t)token >= tok->n_vocab)
        return bsti_fail(BST_ERR_INVALID_ARG, "token %d is outside the vocabulary (%u tokens)", token,
                         tok->n_vocab);
    size_t len = tok->piece_len[token];
    *out_len = len;
    if (len > cap)
        return bsti_fail(BST_ERR_OVERFLOW, "token %d's piece needs %zu bytes, the buffer holds %zu",
                         token, len, cap);
    if (len) memcpy(buf, tok->piece + tok->piece_off[token], len);
    return BST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding                                                                                     */

static bst_status encode_fragment(const bsti_tokenizer *tok, const char *text, size_t len,
                                  bool after_special, toki_out *out)
{
    if (len == 0) return BST_OK;
    if (tok->kind == TOKI_BPE) return bsti_toki_bpe_encode(tok, text, len, out);
    return bsti_toki_spm_encode(tok, text, len, tok->add_space_prefix && after_special, out);
}

bst_status bsti_tokenizer_encode(const bsti_tokenizer *tok, const char *text, size_t len,
                                 bool parse_special, int32_t *out_tokens, uint32_t capacity,
                                 uint32_t *out_count)
{
    if (!tok || !out_count || (!text && len) || (!out_tokens && capacity))
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tokenizer_encode: NULL argument");
    *out_count = 0;
    toki_out out = {out_tokens, capacity, 0};
    if (tok->add_bos) toki_emit(&out, tok->bos);

    /* Leftmost-longest special-token matching. Control and unknown tokens only when the caller
     * asks for it; user-defined tokens always, as llama.cpp and Hugging Face do. */
    size_t frag = 0;
    bool after_special = true; /* SentencePiece adds its space prefix at the start */
    bst_status st = BST_OK;
    for (size_t i = 0; i < len && !st; i++) {
        unsigned char c = (unsigned char)text[i];
        uint32_t a = tok->special_start[c], b = tok->special_start[c + 1];
        int32_t match = -1;
        for (uint32_t k = a; k < b; k++) {
            int32_t id = tok->special[k];
            uint8_t t = tok->type[id];
            if (!parse_special && t != TOKI_USER_DEFINED) continue;
            size_t n = tok->text_len[id];
            if (n <= len - i && memcmp(text + i, tok->text + tok->text_off[id], n) == 0) {
                match = id;
                break; /* longest first within the group */
            }
        }
        if (match < 0) continue;
        st = encode_fragment(tok, text + frag, i - frag, after_special, &out);
        toki_emit(&out, match);
        after_special = true;
        i += tok->text_len[match] - 1;
        frag = i + 1;
    }
    if (!st) st = encode_fragment(tok, text + frag, len - frag, after_special, &out);
    if (st) return st;
    if (out.count > UINT32_MAX)
        return bsti_fail(BST_ERR_OVERFLOW, "tokenizer: text gives more than 2^32 tokens");
    *out_count = (uint32_t)out.count;
    return BST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 stream                                                                                 */

static size_t put_bytes(char *out, size_t cap, size_t pos, const unsigned char *b, size_t n)
{
    if (pos + n > cap) return pos; /* does not fit: dropped (callers size per the header) */
    memcpy(out + pos, b, n);
    return pos + n;
}

static const unsigned char replacement[3] = {0xef, 0xbf, 0xbd};

/* Length a lead byte announces (0 if it cannot start a character), and the valid range of the
 * second byte (Unicode table 3-7: rules out overlongs, surrogates and code points past 10FFFF). */
static unsigned utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xbf;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0) *lo = 0xa0;
        if (c == 0xed) *hi = 0x9f;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0) *lo = 0x90;
        if (c == 0xf4) *hi = 0x8f;
        return 4;
    }
    return 0;
}

size_t bsti_utf8_stream_push(bsti_utf8_stream *s, const char *bytes, size_t n, char *out, size_t cap)
{
    if (!s || (!bytes && n) || (!out && cap)) return 0;
    size_t pos = 0;
    /* Work through pending bytes first, then the new ones, as one sequence. */
    unsigned char buf[8];
    size_t i = 0; /* index into the virtual sequence pending ++ bytes */
    size_t total = s->n_pending + n;
    uint32_t np = s->n_pending;
#define AT(k) ((k) < np ? s->pending[k] : (unsigned char)bytes[(k) - np])
    while (i < total) {
        unsigned char c = AT(i);
        unsigned char lo, hi;
        unsigned len = utf8_lead(c, &lo, &hi);
        if (len == 0) {
            pos = put_bytes(out, cap, pos, replacement, 3);
            i++;
            continue;
        }
        if (len == 1) {
            pos = put_bytes(out, cap, pos, &c, 1);
            i++;
            continue;
        }
        unsigned got = 1;
        bool bad = false;
        buf[0] = c;
        while (got < len && i + got < total) {
            unsigned char d = AT(i + got);
            unsigned char l = got == 1 ? lo : 0x80, h = got == 1 ? hi : 0xbf;
            if (d < l || d > h) {
                bad = true;
                break;
            }
            buf[got++] = d;
        }
        if (bad) {
            /* Maximal subpart of an ill-formed sequence -> one U+FFFD; resume at the bad byte. */
            pos = put_bytes(out, cap, pos, replacement, 3);
            i += got;
            continue;
        }
        if (got < len) {
            /* Incomplete at the end: hold it back for the next push. */
            for (unsigned k = 0; k < got; k++) s->pending[k] = buf[k];
            s->n_pending = got;
#undef AT
            return pos;
        }
        pos = put_bytes(out, cap, pos, buf, len);
        i += len;
    }
    s->n_pending = 0;
    return pos;
}

size_t bsti_utf8_stream_flush(bsti_utf8_stream *s, char *out, size_t cap)
{
    if (!s) return 0;
    size_t pos = 0;
    if (s->n_pending && out) pos = put_bytes(out, cap, 0, replacement, 3);
    s->n_pending = 0;
    return pos;
}
