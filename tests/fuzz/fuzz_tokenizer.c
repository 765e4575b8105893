/*
 * tests/fuzz/fuzz_tokenizer.c — libFuzzer harness for the tokenizer: a prompt is untrusted text,
 * and encoding it runs PCRE2 (the pre-tokenizer's pattern) and the BPE merges over whatever bytes
 * it holds. The vocabulary is the default model's (byte-level BPE, the "smollm" pre-tokenizer):
 * $BASTION_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf in the source tree (CI fetches it
 * before this runs); without it the harness stops at start-up, naming the file.
 *
 * For every input, encoded with special tokens parsed and without, anything but these traps:
 *  - encoding succeeds (byte-level BPE has a token for every byte), and asking with too little
 *    room gives the same count and the same first ids;
 *  - every id is in the vocabulary, and the ids' pieces put together give back the input byte for
 *    byte (a special token's piece is its text), less the bytes the vocabulary has no token for,
 *    which the tokenizer drops as Hugging Face's and llama.cpp's do (tokenizer_bpe.c); a byte is
 *    one of those when it alone encodes to nothing;
 *  - those pieces streamed through bsti_utf8_stream come out as well-formed UTF-8 within
 *    BSTI_UTF8_STREAM_OUT_MAX, and exactly as put together whenever that is well-formed.
 */
#include "runtime/model/tokenizer.h"
#include "fuzz_require.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BASTION_FUZZ_DEFAULT_MODEL
#define BASTION_FUZZ_DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif

static bsti_tokenizer *g_tok;
static bool g_dropped[256]; /* bytes the vocabulary cannot encode */

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 when it is ill-formed:
 * the shortest form, no surrogates, nothing past U+10FFFF (Unicode's table 3-7). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    const unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    const size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                       : c >= 0xe0 && c <= 0xef ? 3
                       : c >= 0xf0 && c <= 0xf4 ? 4
                                                : 0;
    if (len == 0 || len > n)
        return 0;
    unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static int well_formed(const unsigned char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if ((k = utf8_char(s + i, n - i)) == 0)
            return 0;
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *env = getenv("BASTION_MODEL");
    const char *path = env && *env ? env : BASTION_FUZZ_DEFAULT_MODEL;
    bsti_gguf *file = NULL;
    if (bsti_gguf_open(path, NULL, &file) != BST_OK ||
        bsti_tokenizer_create(file, &g_tok) != BST_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot build the tokenizer of %s: %s (run "
                        "tools/fetch-model.sh, or set BASTION_MODEL)\n",
                path, bst_last_error());
        __builtin_trap();
    }
    bsti_gguf_close(file);
    for (unsigned b = 0; b < 256; b++) {
        const char c = (char)b;
        uint32_t n = 0;
        require(bsti_tokenizer_encode(g_tok, &c, 1, false, NULL, 0, &n) == BST_OK);
        g_dropped[b] = n == (bsti_tokenizer_add_bos(g_tok) ? 1u : 0u);
    }
    return 0;
}

static void check_encoding(const uint8_t *data, size_t size, bool special)
{
    const char *text = (const char *)data;
    uint32_t count = 0;
    require(bsti_tokenizer_encode(g_tok, text, size, special, NULL, 0, &count) == BST_OK);
    require(count <= size + 1); /* at most a token a byte, and BOS */
    int32_t *ids = malloc(((size_t)count + 1) * sizeof *ids);
    require(ids != NULL);
    uint32_t again = 0;
    require(bsti_tokenizer_encode(g_tok, text, size, special, ids, count, &again) == BST_OK);
    require(again == count);
    if (count > 1) { /* too little room: the same count, and the ids that fit */
        int32_t first = -1;
        require(bsti_tokenizer_encode(g_tok, text, size, special, &first, 1, &again) == BST_OK);
        require(again == count && first == ids[0]);
    }

    const uint32_t n_vocab = bsti_tokenizer_n_vocab(g_tok);
    const size_t cap = size + 64;
    const size_t stream_cap = BSTI_UTF8_STREAM_OUT_MAX(size) + 3;
    char *joined = malloc(cap), piece[4096];
    char *streamed = malloc(stream_cap);
    require(joined && streamed);
    size_t at = 0, out = 0;
    bsti_utf8_stream stream = {0};
    uint32_t i = 0;
    if (bsti_tokenizer_add_bos(g_tok)) /* not the default model's, but not part of the text */
        require(count > 0 && ids[i++] == bsti_tokenizer_bos(g_tok));
    for (; i < count; i++) {
        require(ids[i] >= 0 && (uint32_t)ids[i] < n_vocab);
        size_t len = 0;
        require(bsti_tokenizer_piece(g_tok, ids[i], piece, sizeof piece, &len) == BST_OK);
        require(len > 0 && at + len <= size);
        memcpy(joined + at, piece, len);
        at += len;
        out += bsti_utf8_stream_push(&stream, piece, len, streamed + out, stream_cap - 3 - out);
    }
    out += bsti_utf8_stream_flush(&stream, streamed + out, stream_cap - out);
    size_t kept = 0; /* the input less the bytes the vocabulary cannot encode */
    for (size_t k = 0; k < size; k++)
        if (!g_dropped[data[k]])
            require(kept < at && joined[kept++] == (char)data[k]);
    require(kept == at);
    require(out <= BSTI_UTF8_STREAM_OUT_MAX(size) && well_formed((unsigned char *)streamed, out));
    if (well_formed((unsigned char *)joined, at))
        require(out == at && memcmp(streamed, joined, at) == 0);
    free(streamed);
    free(joined);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_encoding(data, size, false);
    check_encoding(data, size, true);
    return 0;
}
