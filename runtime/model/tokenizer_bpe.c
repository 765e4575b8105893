/*
 * runtime/model/tokenizer_bpe.c — byte-level BPE (GGUF tokenizer.ggml.model "gpt2").
 *
 * Text is first cut into pre-tokens by the regexes llama.cpp uses for the file's
 * tokenizer.ggml.pre (applied in sequence: each regex splits every piece the previous one made,
 * keeping the unmatched gaps as pieces of their own, as both llama.cpp and Hugging Face's Split
 * pre-tokenizer do). PCRE2 runs the regexes with Unicode classes (PCRE2_UCP) and tolerates
 * invalid UTF-8 (PCRE2_MATCH_INVALID_UTF: invalid bytes simply never match, so they land in gaps).
 * Each pre-token's bytes then become GPT-2's printable characters, i.e. one token per byte, and
 * merges are applied lowest rank first (leftmost on ties) with a heap, so a long pre-token costs
 * O(n log n), not O(n^2).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime/model/tokenizer_impl.h"

#include "graph/status.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. */

static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

static uint32_t byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (unsigned k = 0; k < b; k++)
        if (!byte_is_printable(k)) n++;
    return 256 + n;
}

size_t bsti_toki_byte_char(uint8_t byte, char out[2])
{
    uint32_t cp = byte_to_cp(byte);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

int bsti_toki_char_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned b = 0; b < 256; b++) {
        if (byte_is_printable(b)) continue;
        if (n-- == 0) return (int)b;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* pre-tokenizers (llama.cpp llama-vocab.cpp, llm_tokenizer_bpe) */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                 \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"    \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"    \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct pre_family {
    const char *names; /* NUL-separated, ends with an empty name */
    const char *regex[TOKI_MAX_REGEX];
    bool ignore_merges;
    bool add_bos;
} pre_family;

static const pre_family pre_families[] = {
    /* SmolLM and the StarCoder family: every digit alone first, then GPT-2's split. */
    {"smollm\0starcoder\0refact\0command-r\0codeshell\0exaone\0minerva-7b\0",
     {"\\p{N}", RE_GPT2},
     false,
     false},
    {"gpt-2\0phi-2\0jina-es\0jina-de\0gigachat\0jina-v2-es\0jina-v2-de\0a.x-4.0\0mellum\0mpt\0olmo\0"
     "jais\0trillion\0granite-docling\0exaone4\0",
     {RE_GPT2},
     false,
     false},
    {"llama3\0llama-v3\0llama-bpe\0falcon3\0falcon-h1\0pixtral\0midm-2.0\0lfm2\0", {RE_LLAMA3}, true, true},
    {"dbrx\0smaug-bpe\0", {RE_LLAMA3}, false, false},
    {"qwen2\0deepseek-r1-qwen\0kormo\0megrez\0stablelm2\0", {RE_QWEN2}, false, false},
    {"default\0", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false},
};

static const pre_family *find_pre(const char *name, size_t len)
{
    for (size_t f = 0; f < sizeof pre_families / sizeof pre_families[0]; f++) {
        for (const char *n = pre_families[f].names; *n; n += strlen(n) + 1)
            if (strlen(n) == len && memcmp(n, name, len) == 0) return &pre_families[f];
    }
    return NULL;
}

static bst_status compile_regex(bsti_tokenizer *tok, const char *pattern)
{
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off,
                                   NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return bsti_fail(BST_ERR_INTERNAL, "tokenizer: pre-tokenizer regex does not compile at %zu: %s",
                         (size_t)err_off, (const char *)msg);
    }
    /* JIT is an optimisation only: without it (unsupported CPU, no executable memory) the
     * interpreter gives the same matches. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    tok->regex[tok->n_regex++] = re;
    return BST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* merges table */

static uint32_t pair_hash(int32_t a, int32_t b)
{
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static const toki_merge *find_merge(const bsti_tokenizer *tok, int32_t a, int32_t b)
{
    if (!tok->merges) return NULL;
    uint32_t slot = pair_hash(a, b) & tok->merge_mask;
    for (;;) {
        const toki_merge *m = &tok->merges[slot];
        if (m->left < 0) return NULL;
        if (m->left == a && m->right == b) return m;
        slot = (slot + 1) & tok->merge_mask;
    }
}

static bst_status load_merges(bsti_tokenizer *tok, const bsti_gguf *file)
{
    const bsti_gguf_kv *kv = bsti_gguf_find(file, "tokenizer.ggml.merges");
    if (!kv) return bsti_fail(BST_ERR_FORMAT, "tokenizer: missing tokenizer.ggml.merges");
    if (kv->type != BSTI_GGUF_ARRAY || kv->v.arr.elem_type != BSTI_GGUF_STRING)
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.ggml.merges is not a string array");
    const bsti_gguf_array *arr = &kv->v.arr;
    /* Real vocabularies have well under a million merges; the limit keeps the table's size
     * computation far from overflow. */
    if (arr->count > ((uint64_t)1 << 26))
        return bsti_fail(BST_ERR_FORMAT, "tokenizer: %llu merges is too many",
                         (unsigned long long)arr->count);
    uint32_t n = (uint32_t)arr->count;
    uint32_t cap = 16;
    while (cap < 2u * n) cap <<= 1;
    tok->merges = malloc((size_t)cap * sizeof *tok->merges);
    if (!tok->merges) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (uint32_t i = 0; i < cap; i++) tok->merges[i].left = -1;
    tok->merge_mask = cap - 1;

    char *joined = NULL;
    size_t joined_cap = 0;
    bst_status st = BST_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        bsti_gguf_str s;
        st = bsti_gguf_array_str(arr, i, &s);
        if (st) {
            st = bsti_fail_context(st, "tokenizer.ggml.merges[%u]", i);
            break;
        }
        int shown = (int)(s.len > 48 ? 48 : s.len);
        /* The separator is the first space after the first byte (a token may start with one). */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp) {
            st = bsti_fail(BST_ERR_FORMAT, "tokenizer: merge %u \"%.*s\" is not two tokens separated by a space",
                           i, shown, s.ptr);
            break;
        }
        size_t la = (size_t)(sp - s.ptr), lb = (size_t)s.len - la - 1;
        int32_t a = bsti_toki_lookup(tok, s.ptr, la);
        int32_t b = bsti_toki_lookup(tok, sp + 1, lb);
        if (a < 0 || b < 0) {
            st = bsti_fail(BST_ERR_FORMAT, "tokenizer: merge %u \"%.*s\" names a token not in the vocabulary",
                           i, shown, s.ptr);
            break;
        }
        if (la + lb > joined_cap) {
            char *p = realloc(joined, la + lb);
            if (!p) {
                st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
                break;
            }
            joined = p;
            joined_cap = la + lb;
        }
        memcpy(joined, s.ptr, la);
        memcpy(joined + la, sp + 1, lb);
        int32_t r = bsti_toki_lookup(tok, joined, la + lb);
        if (r < 0) {
            st = bsti_fail(BST_ERR_FORMAT, "tokenizer: merge %u \"%.*s\" makes a token not in the vocabulary",
                           i, shown, s.ptr);
            break;
        }
        uint32_t slot = pair_hash(a, b) & tok->merge_mask;
        while (tok->merges[slot].left >= 0 &&
               !(tok->merges[slot].left == a && tok->merges[slot].right == b))
            slot = (slot + 1) & tok->merge_mask;
        if (tok->merges[slot].left >= 0) continue; /* duplicate: the first (lowest rank) wins */
        tok->merges[slot] = (toki_merge){a, b, r, i};
        tok->n_merges++;
    }
    free(joined);
    return st;
}

bst_status bsti_toki_bpe_setup(bsti_tokenizer *tok, const bsti_gguf *file)
{
    /* Files from before llama.cpp recorded the pre-tokenizer have none: llama.cpp uses its
     * "default" then, and so do we. A name we do not know is an error, not a guess: splitting
     * text the wrong way gives wrong token ids without any other sign. */
    const char *pre = "default";
    size_t pre_len = strlen(pre);
    const bsti_gguf_kv *kv = bsti_gguf_find(file, "tokenizer.ggml.pre");
    if (kv) {
        if (kv->type != BSTI_GGUF_STRING)
            return bsti_fail(BST_ERR_FORMAT, "tokenizer: tokenizer.ggml.pre is not a string");
        pre = kv->v.str.ptr;
        pre_len = (size_t)kv->v.str.len;
    }
    const pre_family *fam = find_pre(pre, pre_len);
    if (!fam)
        return bsti_fail(BST_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer \"%.*s\" is not supported",
                         (int)(pre_len > 64 ? 64 : pre_len), pre);
    for (uint32_t i = 0; i < TOKI_MAX_REGEX && fam->regex[i]; i++) {
        bst_status st = compile_regex(tok, fam->regex[i]);
        if (st) return st;
    }
    tok->ignore_merges = fam->ignore_merges;
    tok->add_bos = fam->add_bos;

    /* A byte whose character is missing from the vocabulary cannot be encoded; Hugging Face and
     * llama.cpp both drop it. SmolLM2 lacks 21: the 15 that never occur in UTF-8 (0xc0, 0xc1,
     * 0xf5-0xff), 0xf1 and 0xf2 (lead bytes of the unassigned planes 4-11), and six control
     * characters (0x04, 0x06, 0x13, 0x14, 0x16, 0x1d) that are valid UTF-8 but drop all the same
     * (found by tests/fuzz/fuzz_tokenizer.c). */
    for (unsigned b = 0; b < 256; b++) {
        char c[2];
        size_t n = bsti_toki_byte_char((uint8_t)b, c);
        tok->byte_token[b] = bsti_toki_lookup(tok, c, n);
    }
    return load_merges(tok, file);
}

void bsti_toki_bpe_free(bsti_tokenizer *tok)
{
    for (uint32_t i = 0; i < tok->n_regex; i++) pcre2_code_free(tok->regex[i]);
    tok->n_regex = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding */

typedef struct sym {
    int32_t id;
    int32_t prev, next;
} sym;

typedef struct cand {
    uint32_t rank;
    int32_t left, right;
    int32_t left_id, right_id, result;
} cand;

typedef struct bpe_ctx {
    const bsti_tokenizer *tok;
    toki_out *out;
    pcre2_match_data *md;
    sym *syms;
    cand *heap;
    char *word;
    size_t cap; /* symbols; heap holds 3x, word 2x */
    size_t n_heap;
} bpe_ctx;

static bool cand_less(const cand *a, const cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_ctx *c, cand v)
{
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&v, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = v;
}

static cand heap_pop(bpe_ctx *c)
{
    cand top = c->heap[0];
    cand last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_less(&c->heap[l], best)) {
            m = l;
            best = &c->heap[l];
        }
        if (r < n && cand_less(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void try_pair(bpe_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    int32_t a = c->syms[left].id, b = c->syms[right].id;
    if (a < 0 || b < 0) return;
    const toki_merge *m = find_merge(c->tok, a, b);
    if (!m) return;
    heap_push(c, (cand){m->rank, left, right, a, b, m->result});
}

static bst_status reserve(bpe_ctx *c, size_t n)
{
    if (n <= c->cap) return BST_OK;
    if (n > (size_t)INT32_MAX) return bsti_fail(BST_ERR_OVERFLOW, "tokenizer: pre-token of %zu bytes is too long", n);
    size_t cap = c->cap ? c->cap : 64;
    while (cap < n) cap *= 2;
    sym *s = realloc(c->syms, cap * sizeof *s);
    if (s) c->syms = s;
    cand *h = realloc(c->heap, 3 * cap * sizeof *h);
    if (h) c->heap = h;
    char *w = realloc(c->word, 2 * cap);
    if (w) c->word = w;
    if (!s || !h || !w) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    c->cap = cap;
    return BST_OK;
}

static bst_status bpe_word(bpe_ctx *c, const char *s, size_t n)
{
    const bsti_tokenizer *tok = c->tok;
    bst_status st = reserve(c, n);
    if (st) return st;
    if (tok->ignore_merges) {
        size_t wl = 0;
        for (size_t i = 0; i < n; i++) wl += bsti_toki_byte_char((uint8_t)s[i], c->word + wl);
        int32_t id = bsti_toki_lookup(tok, c->word, wl);
        if (id >= 0) {
            toki_emit(c->out, id);
            return BST_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        c->syms[i].id = tok->byte_token[(unsigned char)s[i]];
        c->syms[i].prev = (int32_t)i - 1;
        c->syms[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    c->n_heap = 0;
    for (size_t i = 1; i < n; i++) try_pair(c, (int32_t)i - 1, (int32_t)i);
    while (c->n_heap) {
        cand m = heap_pop(c);
        sym *l = &c->syms[m.left];
        /* Stale when either side has been merged since the pair was queued. */
        if (l->id != m.left_id || l->next != m.right || c->syms[m.right].id != m.right_id) continue;
        sym *r = &c->syms[m.right];
        l->id = m.result;
        l->next = r->next;
        if (r->next >= 0) c->syms[r->next].prev = m.left;
        r->id = -1;
        r->prev = r->next = -1;
        try_pair(c, l->prev, m.left);
        try_pair(c, m.left, l->next);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = c->syms[i].next)
        if (c->syms[i].id >= 0) toki_emit(c->out, c->syms[i].id);
    return BST_OK;
}

static size_t utf8_step(const char *s, size_t n, size_t at)
{
    unsigned char c = (unsigned char)s[at];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    return at + len <= n ? len : n - at;
}

static bst_status split(bpe_ctx *c, uint32_t level, const char *s, size_t n)
{
    if (n == 0) return BST_OK;
    if (level == c->tok->n_regex) return bpe_word(c, s, n);
    const pcre2_code *re = c->tok->regex[level];
    size_t last = 0, off = 0;
    bst_status st = BST_OK;
    while (off < n && !st) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return bsti_fail(BST_ERR_INTERNAL, "tokenizer: pre-tokenizer match failed: %s",
                             (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match splits nothing */
            off = ms + utf8_step(s, n, ms);
            continue;
        }
        if (ms > last) st = split(c, level + 1, s + last, ms - last);
        if (!st) st = split(c, level + 1, s + ms, me - ms);
        last = off = me;
    }
    if (!st && last < n) st = split(c, level + 1, s + last, n - last);
    return st;
}

bst_status bsti_toki_bpe_encode(const bsti_tokenizer *tok, const char *text, size_t len, toki_out *out)
{
    bpe_ctx c = {tok, out, NULL, NULL, NULL, NULL, 0, 0};
    bst_status st = BST_OK;
    if (tok->n_regex) {
        c.md = pcre2_match_data_create(1, NULL);
        if (!c.md) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    st = split(&c, 0, text, len);
    pcre2_match_data_free(c.md);
    free(c.syms);
    free(c.heap);
    free(c.word);
    return st;
}
