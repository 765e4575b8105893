/*
 * runtime/model/tokenizer_spm.c — SentencePiece BPE (GGUF tokenizer.ggml.model "llama").
 *
 * llama.cpp's algorithm (llm_tokenizer_spm_session): spaces become U+2581 ('▁'), a space is
 * prefixed at the start and after each special token when the model asks for it, the text is
 * cut into UTF-8 characters, and adjacent symbols whose concatenation is a vocabulary token are
 * merged highest score first (leftmost on ties) until no pair is left. A final symbol that is not
 * a token falls back to its bytes (<0xXX> tokens), or the unknown token when the vocabulary has
 * no byte tokens.
 */
#include "runtime/model/tokenizer_impl.h"

#include "graph/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_sym {
    size_t start; /* byte offset into the escaped text */
    size_t n;     /* 0 once merged into its left neighbour */
    int32_t prev, next;
} spm_sym;

typedef struct spm_cand {
    float score;
    int32_t left, right;
    size_t size;
} spm_cand;

typedef struct spm_ctx {
    const bsti_tokenizer *tok;
    const char *text;
    spm_sym *syms;
    spm_cand *heap;
    size_t n_heap;
} spm_ctx;

/* Higher score first, then the leftmost pair. */
static bool cand_before(const spm_cand *a, const spm_cand *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void push(spm_ctx *c, spm_cand v)
{
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&v, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = v;
}

static spm_cand pop(spm_ctx *c)
{
    spm_cand top = c->heap[0];
    spm_cand last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const spm_cand *best = &last;
        if (l < n && cand_before(&c->heap[l], best)) {
            m = l;
            best = &c->heap[l];
        }
        if (r < n && cand_before(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void try_bigram(spm_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return;
    const spm_sym *l = &c->syms[left], *r = &c->syms[right];
    size_t size = l->n + r->n;
    int32_t id = bsti_toki_lookup(c->tok, c->text + l->start, size);
    if (id < 0) return;
    push(c, (spm_cand){c->tok->score[id], left, right, size});
}

static size_t utf8_len(unsigned char c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

static bst_status emit_symbol(const spm_ctx *c, const spm_sym *s, toki_out *out)
{
    const bsti_tokenizer *tok = c->tok;
    int32_t id = bsti_toki_lookup(tok, c->text + s->start, s->n);
    if (id >= 0) {
        toki_emit(out, id);
        return BST_OK;
    }
    for (size_t i = 0; i < s->n; i++) {
        unsigned char b = (unsigned char)c->text[s->start + i];
        int32_t bt = tok->byte_token[b];
        if (bt < 0) bt = tok->unk;
        if (bt < 0)
            return bsti_fail(BST_ERR_UNSUPPORTED,
                             "tokenizer: byte 0x%02x has no token and the vocabulary has no unknown token",
                             b);
        toki_emit(out, bt);
    }
    return BST_OK;
}

bst_status bsti_toki_spm_encode(const bsti_tokenizer *tok, const char *text, size_t len,
                                bool space_prefix, toki_out *out)
{
    /* Escape: ' ' -> U+2581 (3 bytes), so the text grows at most 3x (+3 for the prefix). */
    if (len > (SIZE_MAX - 3) / 3 || len > (size_t)INT32_MAX / 4)
        return bsti_fail(BST_ERR_OVERFLOW, "tokenizer: text of %zu bytes is too long", len);
    size_t cap = 3 * len + 3;
    char *esc = malloc(cap);
    /* One symbol per escaped byte at most (invalid UTF-8 can split an escaped space); the heap
     * holds the first pairs plus two per merge. */
    spm_sym *syms = malloc(cap * sizeof *syms);
    spm_cand *heap = malloc(3 * cap * sizeof *heap);
    bst_status st = BST_OK;
    if (!esc || !syms || !heap) {
        st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        goto done;
    }
    size_t n = 0;
    if (space_prefix) {
        memcpy(esc, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            esc[n++] = text[i];
        }
    }

    spm_ctx c = {tok, esc, syms, heap, 0};
    int32_t count = 0;
    for (size_t off = 0; off < n;) {
        size_t l = utf8_len((unsigned char)esc[off]);
        if (l > n - off) l = n - off;
        syms[count] = (spm_sym){off, l, count - 1, off + l < n ? count + 1 : -1};
        count++;
        off += l;
    }
    for (int32_t i = 1; i < count; i++) try_bigram(&c, i - 1, i);
    while (c.n_heap) {
        spm_cand b = pop(&c);
        spm_sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->next != b.right || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        try_bigram(&c, l->prev, b.left);
        try_bigram(&c, b.left, l->next);
    }
    for (int32_t i = count ? 0 : -1; i >= 0 && !st; i = syms[i].next) st = emit_symbol(&c, &syms[i], out);
done:
    free(esc);
    free(syms);
    free(heap);
    return st;
}
