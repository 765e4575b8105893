/*
 * tests/test_tokenizer.c — the tokenizer against an independent one, on the real default model,
 * plus SentencePiece and byte-level BPE on small vocabularies written here as in-memory GGUF files,
 * bad vocabulary data, and the UTF-8 stream.
 *
 * Expected ids for SmolLM2 were produced by Hugging Face `tokenizers` 0.23 (not by this code):
 * a models.BPE built from the GGUF's tokenizer.ggml.tokens and tokenizer.ggml.merges, with the
 * pre-tokenizer SmolLM2's tokenizer.json uses — Sequence[Digits(individual_digits=True),
 * ByteLevel(add_prefix_space=False, use_regex=True)] — and the 17 control tokens added as special
 * tokens; encode(s, add_special_tokens=False).ids. (Script: a venv with `pip install tokenizers
 * gguf numpy`, gguf.GGUFReader for the arrays.)
 *
 * Environment: BASTION_MODEL (default <repo>/models/SmolLM2-135M-Instruct.Q4_1.gguf; fetch it
 * with tools/fetch-model.sh).
 */
#include "runtime/model/gguf.h"
#include "runtime/model/tokenizer.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------ */
/* the real model                                                                               */

static bsti_gguf *g_file;
static bsti_tokenizer *g_tok;
static int g_state; /* 0 untried, 1 loaded, -1 failed */

static const char *model_path(void)
{
    static char path[4096];
    const char *env = getenv("BASTION_MODEL");
    if (env && *env) return env;
    snprintf(path, sizeof path, "%s/../../models/SmolLM2-135M-Instruct.Q4_1.gguf",
             bst_test_fixture(""));
    return path;
}

static bsti_tokenizer *smollm(void)
{
    if (g_state == 0) {
        g_state = -1;
        struct stat st;
        const char *path = model_path();
        if (stat(path, &st) != 0) {
            fprintf(stderr, "\n  model %s not found: run tools/fetch-model.sh (or set BASTION_MODEL)\n",
                    path);
        } else if (bsti_gguf_open(path, NULL, &g_file) != BST_OK) {
            fprintf(stderr, "\n  %s: %s\n", path, bst_last_error());
        } else if (bsti_tokenizer_create(g_file, &g_tok) != BST_OK) {
            fprintf(stderr, "\n  tokenizer: %s\n", bst_last_error());
        } else {
            g_state = 1;
        }
    }
    return g_state == 1 ? g_tok : NULL;
}

/* Encodes and compares with `expected`; prints both on a mismatch. */
static void check_ids(bsti_tokenizer *tok, const char *text, size_t len, bool special,
                      const int32_t *expected, uint32_t n_expected)
{
    int32_t ids[256];
    uint32_t n = 0;
    bst_status st = bsti_tokenizer_encode(tok, text, len, special, ids, 256, &n);
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    bool same = n == n_expected;
    for (uint32_t i = 0; same && i < n; i++) same = ids[i] == expected[i];
    if (!same) {
        fprintf(stderr, "\n  \"%.*s\": got", (int)len, text);
        for (uint32_t i = 0; i < n && i < 256; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  expected");
        for (uint32_t i = 0; i < n_expected; i++) fprintf(stderr, " %d", expected[i]);
        fprintf(stderr, "\n");
    }
    CU_ASSERT(same);
}

#define CHECK(text, special, ...)                                                                  \
    do {                                                                                           \
        static const int32_t exp_[] = {__VA_ARGS__};                                               \
        check_ids(tok, text, sizeof(text) - 1, special, exp_, sizeof exp_ / sizeof exp_[0]);       \
    } while (0)

static void test_smollm_metadata(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    CU_ASSERT_EQUAL(bsti_tokenizer_n_vocab(tok), 49152);
    CU_ASSERT_FALSE(bsti_tokenizer_add_bos(tok));
    CU_ASSERT_EQUAL(bsti_tokenizer_bos(tok), 1);
    CU_ASSERT_EQUAL(bsti_tokenizer_find(tok, "<|im_start|>"), 1);
    CU_ASSERT_EQUAL(bsti_tokenizer_find(tok, "<|im_end|>"), 2);
    CU_ASSERT_EQUAL(bsti_tokenizer_find(tok, "<|endoftext|>"), 0);
    CU_ASSERT_EQUAL(bsti_tokenizer_find(tok, "no such token here"), -1);
    CU_ASSERT_TRUE(bsti_tokenizer_is_eog(tok, 2));  /* <|im_end|> */
    CU_ASSERT_TRUE(bsti_tokenizer_is_eog(tok, 0));  /* <|endoftext|> */
    CU_ASSERT_FALSE(bsti_tokenizer_is_eog(tok, 1)); /* <|im_start|> */
    CU_ASSERT_FALSE(bsti_tokenizer_is_eog(tok, 19556));
    CU_ASSERT_FALSE(bsti_tokenizer_is_eog(tok, -1));
    CU_ASSERT_FALSE(bsti_tokenizer_is_eog(tok, 49152));
    const char *tmpl = bsti_tokenizer_chat_template(tok);
    CU_ASSERT_FATAL(tmpl != NULL);
    CU_ASSERT(strstr(tmpl, "You are a helpful AI assistant named SmolLM") != NULL);
}

static void test_smollm_ids(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    CHECK("Hello, world! This is a test.", true, 19556, 28, 905, 17, 669, 314, 253, 1028, 30);
    /* Every digit is its own pre-token. */
    CHECK("12345", true, 33, 34, 35, 36, 37);
    /* Whitespace before a digit stays whole: the digit split comes first ("\t\t" then "3"), so
     * GPT-2's regex alone (" ?\p{N}+", "\s+(?!\S)") would cut these differently. */
    CHECK("\t\t3", true, 1656, 35);
    CHECK("  3", true, 256, 35);
    CHECK("\n\n1", true, 1116, 33);
    CHECK("x = 3.14159 + 2e10; y=-7", true, 104, 446, 216, 35, 30, 33, 36, 33, 37, 41, 1232, 216,
          34, 85, 33, 32, 43, 329, 15196, 39);
    CHECK("over 9000!!! ... ???", true, 1400, 216, 41, 32, 32, 32, 29646, 4563, 9148, 16693);
    CHECK("I'm sure they've said we'll go, it's what he'd do", true, 57, 5248, 2090, 502, 3543,
          1137, 392, 3060, 685, 28, 357, 506, 732, 384, 6737, 536);
    /* Non-ASCII: accents, CJK, emoji (byte-level pieces). */
    CHECK("caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9", true, 83, 1939, 2756, 15486, 46494, 412,
          2756, 5422, 2756);
    CHECK("\xe4\xb8\xad\xe6\x96\x87\xe6\xb5\x8b\xe8\xaf\x95", true, 28589, 29184, 43222, 229, 16313,
          239);
    CHECK("emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d ok", true, 391, 33777, 40303, 218, 10813, 235,
          231, 10907);
    CHECK("\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 \xc3\x9f \xef\xac\x81 \xce\xa9 \xe2\x89\x88 "
          "\xe2\x88\x91",
          true, 142, 246, 94, 25972, 83, 7466, 84, 2756, 5549, 249, 40367, 5664, 119, 21004, 226,
          19995, 235);
    /* Code with indentation, whitespace runs, tabs and CRLF. */
    CHECK("def f(x):\n    return x  # comment\n\tpass\n", true, 1604, 275, 24, 104, 727, 472, 1003,
          1792, 216, 907, 5189, 198, 197, 5467, 198);
    CHECK("a   b\n\n  c", true, 81, 256, 278, 8866, 265);
    CHECK("tab\there\r\nwindows\r\n", true, 15999, 197, 1531, 201, 198, 37066, 2738);
    CHECK(" leading space", true, 2899, 1898);
    CHECK("trailing   ", true, 4861, 4966, 333);
    /* Bytes 0x04 has no token in SmolLM2's vocabulary: dropped, as Hugging Face does. */
    CHECK("\x04" "ab\x04", true, 369);
    /* Special tokens. */
    CHECK("<|im_start|>user\nHi<|im_end|>\n", true, 1, 4093, 198, 26843, 2, 198);
}

static void test_smollm_special_off_and_empty(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    /* With parse_special false, control-token texts are plain text. Expected: the reference
     * tokenizer without the special tokens added. */
    CHECK("<|im_end|>", false, 44, 108, 306, 79, 486, 108, 46);
    CHECK("<|im_start|>user\nHi<|im_end|>\n", false, 44, 108, 306, 79, 3738, 108, 46, 4093, 198,
          26843, 44, 108, 306, 79, 486, 108, 46, 198);

    int32_t ids[64];
    uint32_t n = 0;
    /* Empty text: nothing (SmolLM2 adds no BOS). */
    n = 99;
    CU_ASSERT_EQUAL(bsti_tokenizer_encode(tok, "", 0, true, ids, 64, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(bsti_tokenizer_encode(tok, NULL, 0, true, NULL, 0, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 0);
}

static void test_smollm_capacity(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    const char *text = "Hello, world! This is a test.";
    int32_t full[32], part[4] = {-7, -7, -7, -7};
    uint32_t n_full = 0, n = 0;
    CU_ASSERT_EQUAL_FATAL(bsti_tokenizer_encode(tok, text, strlen(text), true, full, 32, &n_full), BST_OK);
    CU_ASSERT_EQUAL(n_full, 9);
    CU_ASSERT_EQUAL(bsti_tokenizer_encode(tok, text, strlen(text), true, part, 3, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 9); /* the total, though only 3 fit */
    CU_ASSERT_EQUAL(part[0], full[0]);
    CU_ASSERT_EQUAL(part[2], full[2]);
    CU_ASSERT_EQUAL(part[3], -7); /* untouched past capacity */
    CU_ASSERT_EQUAL(bsti_tokenizer_encode(tok, text, strlen(text), true, NULL, 0, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 9);
    CU_ASSERT_EQUAL(bsti_tokenizer_encode(tok, text, 5, true, NULL, 4, &n), BST_ERR_INVALID_ARG);
}

static char *decode_all(bsti_tokenizer *tok, const int32_t *ids, uint32_t n, size_t *out_len)
{
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    for (uint32_t i = 0; s && i < n; i++) {
        size_t pl = 0;
        bst_status st = bsti_tokenizer_piece(tok, ids[i], NULL, 0, &pl); /* asks for the size */
        if (st != BST_OK && st != BST_ERR_OVERFLOW) {
            free(s);
            return NULL;
        }
        while (len + pl + 1 > cap) {
            cap *= 2;
            char *g = realloc(s, cap);
            if (!g) {
                free(s);
                return NULL;
            }
            s = g;
        }
        size_t got = 0;
        if (bsti_tokenizer_piece(tok, ids[i], s + len, cap - len, &got) != BST_OK) {
            free(s);
            return NULL;
        }
        len += got;
    }
    if (s) s[len] = '\0';
    *out_len = len;
    return s;
}

static void test_smollm_round_trip(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    static const char *const texts[] = {
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog. 0123456789",
        "  indented\n\t\ttabs\r\n\r\n   trailing   ",
        ("caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d \xd8\xa7\xd9\x84\xd8\xb9"
         "\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\x82\xe0\xa4\xa6\xe0\xa5\x80"),
        "int main(void) {\n    return printf(\"%d\\n\", 42) > 0 ? 0 : 1;\n}\n",
        "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
        "a<|endoftext|>b<repo_name>c<empty_output>",
        "!!!???...,,,;;;:::'''\"\"\"```~~~",
        "\xe2\x96\x81 \xc4\xa0 <0x41> <unk> <s>",
        "x",
        " ",
        "\n",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        for (int special = 0; special < 2; special++) {
            const char *s = texts[t];
            int32_t ids[512];
            uint32_t n = 0;
            CU_ASSERT_EQUAL_FATAL(bsti_tokenizer_encode(tok, s, strlen(s), special, ids, 512, &n), BST_OK);
            CU_ASSERT_FATAL(n <= 512);
            size_t len = 0;
            char *back = decode_all(tok, ids, n, &len);
            CU_ASSERT_FATAL(back != NULL);
            CU_ASSERT_EQUAL(len, strlen(s));
            CU_ASSERT(memcmp(back, s, len < strlen(s) ? len : strlen(s)) == 0);
            if (len != strlen(s) || memcmp(back, s, len) != 0)
                fprintf(stderr, "\n  round trip of \"%s\" gave \"%s\"\n", s, back);
            free(back);
        }
    }
}

/* Bytes without a token in SmolLM2's vocabulary are dropped, as Hugging Face and llama.cpp drop
 * them: the 15 that never occur in UTF-8, 0xf1 / 0xf2, and six control characters that do (the
 * tokenizer fuzz harness found those). Every other byte alone is one token. */
static void test_smollm_dropped_bytes(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    static const unsigned char dropped[] = {0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0,
                                            0xc1, 0xf1, 0xf2, 0xf5, 0xf6, 0xf7, 0xf8,
                                            0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff};
    for (unsigned b = 0; b < 256; b++) {
        const char c = (char)b;
        uint32_t n = 99;
        CU_ASSERT_EQUAL(bsti_tokenizer_encode(tok, &c, 1, false, NULL, 0, &n), BST_OK);
        CU_ASSERT_EQUAL(n, memchr(dropped, (int)b, sizeof dropped) ? 0u : 1u);
    }
    /* Inside text: the pieces give back the text without it. */
    int32_t ids[16];
    uint32_t n = 0;
    CU_ASSERT_EQUAL_FATAL(bsti_tokenizer_encode(tok, "You \x06re", 7, false, ids, 16, &n), BST_OK);
    CU_ASSERT_FATAL(n <= 16);
    size_t len = 0;
    char *back = decode_all(tok, ids, n, &len);
    CU_ASSERT_FATAL(back != NULL);
    CU_ASSERT(len == 6 && memcmp(back, "You re", 6) == 0);
    free(back);
}

static void test_smollm_piece(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    char buf[64];
    size_t n = 0;
    /* 19556 is "Hello"; 905 is " world" (Ġworld). */
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, 905, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT(memcmp(buf, " world", 6) == 0);
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, 2, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 10);
    CU_ASSERT(memcmp(buf, "<|im_end|>", 10) == 0);
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, 905, buf, 3, &n), BST_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, 49152, buf, sizeof buf, &n), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, -1, buf, sizeof buf, &n), BST_ERR_INVALID_ARG);
    /* 198 is "\n" (Ċ): a byte-level character decoded back to its byte. */
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, 198, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT(n == 1 && buf[0] == '\n');
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 stream                                                                                 */

static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80) return false;
        i += len;
    }
    return true;
}

static void test_utf8_stream_tokens(void)
{
    bsti_tokenizer *tok = smollm();
    CU_ASSERT_FATAL(tok != NULL);
    /* A 4-byte emoji is split across byte-level tokens; the stream must hold back the partial
     * character and print it whole. */
    const char *text = "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d ok \xe4\xb8\xad\xe6\x96\x87";
    int32_t ids[64];
    uint32_t n = 0;
    CU_ASSERT_EQUAL_FATAL(bsti_tokenizer_encode(tok, text, strlen(text), false, ids, 64, &n), BST_OK);
    bsti_utf8_stream s = {{0}, 0};
    char all[256];
    size_t all_len = 0;
    bool some_piece_partial = false;
    for (uint32_t i = 0; i < n; i++) {
        char piece[64], out[BSTI_UTF8_STREAM_OUT_MAX(64)];
        size_t pl = 0;
        CU_ASSERT_EQUAL_FATAL(bsti_tokenizer_piece(tok, ids[i], piece, sizeof piece, &pl), BST_OK);
        if (!valid_utf8(piece, pl)) some_piece_partial = true;
        size_t w = bsti_utf8_stream_push(&s, piece, pl, out, sizeof out);
        CU_ASSERT(valid_utf8(out, w));
        CU_ASSERT_FATAL(all_len + w < sizeof all);
        memcpy(all + all_len, out, w);
        all_len += w;
    }
    CU_ASSERT_EQUAL(bsti_utf8_stream_flush(&s, all + all_len, sizeof all - all_len), 0);
    CU_ASSERT(some_piece_partial); /* otherwise this test tests nothing */
    CU_ASSERT_EQUAL(all_len, strlen(text));
    CU_ASSERT(memcmp(all, text, strlen(text)) == 0);
}

static void test_utf8_stream_bytes(void)
{
    bsti_utf8_stream s = {{0}, 0};
    char out[64];
    /* 😀 = F0 9F 98 80, one byte at a time. */
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xf0", 1, out, sizeof out), 0);
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\x9f\x98", 2, out, sizeof out), 0);
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\x80" "a", 2, out, sizeof out), 5);
    CU_ASSERT(memcmp(out, "\xf0\x9f\x98\x80" "a", 5) == 0);
    /* Invalid bytes become U+FFFD (EF BF BD), one per maximal ill-formed subpart. */
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xff", 1, out, sizeof out), 3);
    CU_ASSERT(memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xe2\x28", 2, out, sizeof out), 4);
    CU_ASSERT(memcmp(out, "\xef\xbf\xbd(", 4) == 0);
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xe2\x82", 2, out, sizeof out), 0); /* pending */
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "x", 1, out, sizeof out), 4);
    CU_ASSERT(memcmp(out, "\xef\xbf\xbdx", 4) == 0);
    /* Overlong (C0 80) and surrogate (ED A0 80) encodings are invalid. */
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xc0\x80", 2, out, sizeof out), 6);
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xed\xa0\x80", 3, out, sizeof out), 9);
    /* A trailing partial character is flushed as one U+FFFD. */
    CU_ASSERT_EQUAL(bsti_utf8_stream_push(&s, "\xf0\x9f", 2, out, sizeof out), 0);
    CU_ASSERT_EQUAL(bsti_utf8_stream_flush(&s, out, sizeof out), 3);
    CU_ASSERT(memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CU_ASSERT_EQUAL(s.n_pending, 0);
    CU_ASSERT_EQUAL(bsti_utf8_stream_flush(&s, out, sizeof out), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* a tiny GGUF writer for synthetic vocabularies                                               */

typedef struct gw {
    unsigned char *p;
    size_t n, cap;
    uint64_t n_kv;
} gw;

static void gw_bytes(gw *w, const void *d, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->p = realloc(w->p, w->cap);
        CU_ASSERT_FATAL(w->p != NULL);
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}
static void gw_u32(gw *w, uint32_t v) { gw_bytes(w, &v, 4); } /* little-endian hosts only */
static void gw_u64(gw *w, uint64_t v) { gw_bytes(w, &v, 8); }
static void gw_str(gw *w, const char *s)
{
    gw_u64(w, strlen(s));
    gw_bytes(w, s, strlen(s));
}
static void gw_begin(gw *w)
{
    memset(w, 0, sizeof *w);
    gw_bytes(w, "GGUF", 4);
    gw_u32(w, 3);
    gw_u64(w, 0); /* tensors */
    gw_u64(w, 0); /* kv count, patched in gw_end */
}
static void kv_str(gw *w, const char *k, const char *v)
{
    gw_str(w, k);
    gw_u32(w, 8);
    gw_str(w, v);
    w->n_kv++;
}
static void kv_u32(gw *w, const char *k, uint32_t v)
{
    gw_str(w, k);
    gw_u32(w, 4);
    gw_u32(w, v);
    w->n_kv++;
}
static void kv_bool(gw *w, const char *k, bool v)
{
    gw_str(w, k);
    gw_u32(w, 7);
    unsigned char b = v;
    gw_bytes(w, &b, 1);
    w->n_kv++;
}
static void kv_strs(gw *w, const char *k, const char *const *v, uint32_t n)
{
    gw_str(w, k);
    gw_u32(w, 9);
    gw_u32(w, 8);
    gw_u64(w, n);
    for (uint32_t i = 0; i < n; i++) gw_str(w, v[i]);
    w->n_kv++;
}
static void kv_i32s(gw *w, const char *k, const int32_t *v, uint32_t n)
{
    gw_str(w, k);
    gw_u32(w, 9);
    gw_u32(w, 5);
    gw_u64(w, n);
    gw_bytes(w, v, 4u * n);
    w->n_kv++;
}
static void kv_f32s(gw *w, const char *k, const float *v, uint32_t n)
{
    gw_str(w, k);
    gw_u32(w, 9);
    gw_u32(w, 6);
    gw_u64(w, n);
    gw_bytes(w, v, 4u * n);
    w->n_kv++;
}
static void gw_end(gw *w)
{
    memcpy(w->p + 16, &w->n_kv, 8);
    while (w->n % 32) gw_bytes(w, "", 1);
}

/* Opens the written bytes and builds a tokenizer; returns its status. */
static bst_status make_tok(gw *w, bsti_gguf **out_file, bsti_tokenizer **out_tok)
{
    gw_end(w);
    *out_tok = NULL;
    bst_status st = bsti_gguf_open_memory(w->p, w->n, out_file);
    if (st != BST_OK) {
        fprintf(stderr, "\n  gguf: %s\n", bst_last_error());
        return st;
    }
    return bsti_tokenizer_create(*out_file, out_tok);
}

/* ------------------------------------------------------------------------------------------ */
/* SentencePiece                                                                                */

enum { SPM_BYTE0 = 3, SPM_NORMAL0 = 3 + 256 };
static const char *const spm_words[] = {
    "\xe2\x96\x81", "h", "e", "l", "o", "he", "ll", "llo", "hello", "\xe2\x96\x81hello", "lo",
};
static const float spm_scores[] = {-5, -6, -6, -6, -6, -3, -2, -1, -0.5f, -0.1f, -4};
#define SPM_N_WORDS (sizeof spm_words / sizeof spm_words[0])
enum { W_SP, W_H, W_E, W_L, W_O, W_HE, W_LL, W_LLO, W_HELLO, W_SPHELLO, W_LO };

/* <unk> <s> </s>, 256 byte tokens, then spm_words. */
static void spm_vocab(gw *w, bool bad_byte, bool add_space_prefix)
{
    static char bytes[256][8];
    const char *toks[3 + 256 + SPM_N_WORDS];
    int32_t types[3 + 256 + SPM_N_WORDS];
    float scores[3 + 256 + SPM_N_WORDS];
    uint32_t n = 0;
    toks[n] = "<unk>", types[n] = 2, scores[n++] = 0;
    toks[n] = "<s>", types[n] = 3, scores[n++] = 0;
    toks[n] = "</s>", types[n] = 3, scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[n] = bytes[b], types[n] = 6, scores[n++] = 0;
    }
    if (bad_byte) toks[3 + 0x41] = "<0xZZ>";
    for (size_t i = 0; i < SPM_N_WORDS; i++) toks[n] = spm_words[i], types[n] = 1, scores[n++] = spm_scores[i];
    gw_begin(w);
    kv_str(w, "tokenizer.ggml.model", "llama");
    kv_strs(w, "tokenizer.ggml.tokens", toks, n);
    kv_f32s(w, "tokenizer.ggml.scores", scores, n);
    kv_i32s(w, "tokenizer.ggml.token_type", types, n);
    kv_u32(w, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(w, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!add_space_prefix) kv_bool(w, "tokenizer.ggml.add_space_prefix", false);
}

static void test_spm(void)
{
    gw w;
    bsti_gguf *f = NULL;
    bsti_tokenizer *tok = NULL;
    spm_vocab(&w, false, true);
    CU_ASSERT_EQUAL_FATAL(make_tok(&w, &f, &tok), BST_OK);
    CU_ASSERT_TRUE(bsti_tokenizer_add_bos(tok));
    CU_ASSERT_EQUAL(bsti_tokenizer_bos(tok), 1);
    CU_ASSERT_TRUE(bsti_tokenizer_is_eog(tok, 2));
    const int N = SPM_NORMAL0;
    /* Hand-derived with llama.cpp's algorithm (highest score first, leftmost on ties):
     * "▁hello": ll(-2) -> llo(-1) -> he(-3) -> hello(-0.5) -> ▁hello(-0.1). */
    CHECK("hello", false, 1, N + W_SPHELLO);
    CHECK("hello hello", false, 1, N + W_SPHELLO, N + W_SPHELLO);
    /* "▁hellx": ll, then he; "x" is no token -> byte fallback <0x78>. */
    CHECK("hellx", false, 1, N + W_SP, N + W_HE, N + W_LL, SPM_BYTE0 + 0x78);
    /* Equal scores: the leftmost pair merges first. */
    CHECK("lll", false, 1, N + W_SP, N + W_LL, N + W_L);
    /* A character outside the vocabulary falls back to its UTF-8 bytes. */
    CHECK("\xc3\xa9", false, 1, N + W_SP, SPM_BYTE0 + 0xc3, SPM_BYTE0 + 0xa9);
    /* Special tokens: matched only with parse_special; a space prefix follows each one. */
    CHECK("<s>hello", true, 1, 1, N + W_SPHELLO);
    CHECK("<s>hello", false, 1, N + W_SP, SPM_BYTE0 + '<', SPM_BYTE0 + 's', SPM_BYTE0 + '>',
          N + W_HELLO);
    CHECK("", false, 1);

    char buf[32];
    size_t n = 0;
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, N + W_SPHELLO, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT(n == 6 && memcmp(buf, " hello", 6) == 0);
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, SPM_BYTE0 + 0x78, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT(n == 1 && buf[0] == 'x');
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, SPM_BYTE0 + 0xc3, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT(n == 1 && (unsigned char)buf[0] == 0xc3);
    CU_ASSERT_EQUAL(bsti_tokenizer_piece(tok, 1, buf, sizeof buf, &n), BST_OK);
    CU_ASSERT(n == 3 && memcmp(buf, "<s>", 3) == 0);
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
    free(w.p);

    /* Without the space prefix: "hello" -> he, llo -> hello. */
    spm_vocab(&w, false, false);
    CU_ASSERT_EQUAL_FATAL(make_tok(&w, &f, &tok), BST_OK);
    CHECK("hello", false, 1, N + W_HELLO);
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
    free(w.p);
}

/* ------------------------------------------------------------------------------------------ */
/* small byte-level BPE vocabularies                                                            */

/* Tokens: the byte characters for a, b, c, Ġ (space), then "bc", "ab", "abc"; merges given. */
static void bpe_vocab(gw *w, const char *pre, const char *const *merges, uint32_t n_merges)
{
    static const char *const toks[] = {"<|endoftext|>", "a", "b", "c", "\xc4\xa0", "bc", "ab", "abc"};
    static const int32_t types[] = {3, 1, 1, 1, 1, 1, 1, 1};
    gw_begin(w);
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre) kv_str(w, "tokenizer.ggml.pre", pre);
    kv_strs(w, "tokenizer.ggml.tokens", toks, 8);
    kv_i32s(w, "tokenizer.ggml.token_type", types, 8);
    kv_strs(w, "tokenizer.ggml.merges", merges, n_merges);
    kv_u32(w, "tokenizer.ggml.eos_token_id", 0);
}

static void test_bpe_ranks(void)
{
    gw w;
    bsti_gguf *f = NULL;
    bsti_tokenizer *tok = NULL;
    /* "b c" outranks "a b": abc -> a + bc, and "a bc" is no merge. */
    static const char *const m1[] = {"b c", "a b", "ab c"};
    bpe_vocab(&w, "gpt-2", m1, 3);
    CU_ASSERT_EQUAL_FATAL(make_tok(&w, &f, &tok), BST_OK);
    CHECK("abc", false, 1, 5);
    CHECK("ab c", false, 6, 4, 3); /* "ab", "Ġ" can't merge with "c" (no "Ġc" token) */
    CHECK("cab", false, 3, 6);
    CU_ASSERT_TRUE(bsti_tokenizer_is_eog(tok, 0));
    CU_ASSERT_FALSE(bsti_tokenizer_add_bos(tok));
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
    free(w.p);

    /* "a b" first: ab, then "ab c" -> abc. */
    static const char *const m2[] = {"a b", "b c", "ab c"};
    bpe_vocab(&w, "gpt-2", m2, 3);
    CU_ASSERT_EQUAL_FATAL(make_tok(&w, &f, &tok), BST_OK);
    CHECK("abc", false, 7);
    CHECK("abcabc", false, 7, 7);
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
    free(w.p);

    /* llama3's pre-tokenizer ignores merges for a pre-token that is itself a token. */
    bpe_vocab(&w, "llama3", m1, 3);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 0);
    CU_ASSERT_EQUAL_FATAL(make_tok(&w, &f, &tok), BST_OK);
    CU_ASSERT_TRUE(bsti_tokenizer_add_bos(tok));
    CHECK("abc", false, 0, 7);
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
    free(w.p);
}

/* ------------------------------------------------------------------------------------------ */
/* bad vocabulary data                                                                          */

static void expect_fail(gw *w, bst_status want, const char *needle)
{
    bsti_gguf *f = NULL;
    bsti_tokenizer *tok = NULL;
    bst_status st = make_tok(w, &f, &tok);
    CU_ASSERT_EQUAL(st, want);
    CU_ASSERT(tok == NULL);
    if (st != BST_OK && needle && !strstr(bst_last_error(), needle)) {
        fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", bst_last_error(), needle);
        CU_FAIL("error message does not name the problem");
    }
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
    free(w->p);
}

static void test_bad_vocab(void)
{
    gw w;
    static const char *const ok_merges[] = {"b c"};
    static const char *const toks[] = {"a", "b"};
    static const int32_t types1[] = {1};

    /* Empty vocabulary. */
    gw_begin(&w);
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, 0);
    kv_strs(&w, "tokenizer.ggml.merges", ok_merges, 0);
    expect_fail(&w, BST_ERR_FORMAT, "empty");

    /* Types array of the wrong length. */
    gw_begin(&w);
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, 2);
    kv_i32s(&w, "tokenizer.ggml.token_type", types1, 1);
    kv_strs(&w, "tokenizer.ggml.merges", ok_merges, 0);
    expect_fail(&w, BST_ERR_FORMAT, "token_type");

    /* BOS id outside the vocabulary. */
    static const char *const m_ok[] = {"b c"};
    bpe_vocab(&w, "gpt-2", m_ok, 1);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", 8);
    expect_fail(&w, BST_ERR_FORMAT, "bos_token_id");

    /* Merges: no separator, an unknown side, a result that is no token. */
    static const char *const m_nosep[] = {"bc"};
    bpe_vocab(&w, "gpt-2", m_nosep, 1);
    expect_fail(&w, BST_ERR_FORMAT, "merge 0");
    static const char *const m_unknown[] = {"b c", "a zz"};
    bpe_vocab(&w, "gpt-2", m_unknown, 2);
    expect_fail(&w, BST_ERR_FORMAT, "merge 1");
    static const char *const m_result[] = {"c a"};
    bpe_vocab(&w, "gpt-2", m_result, 1);
    expect_fail(&w, BST_ERR_FORMAT, "merge 0");

    /* Missing merges for a BPE model. */
    gw_begin(&w);
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, 2);
    expect_fail(&w, BST_ERR_FORMAT, "merges");

    /* Unknown pre-tokenizer and model: named. */
    bpe_vocab(&w, "frobnicate-v9", m_ok, 1);
    expect_fail(&w, BST_ERR_UNSUPPORTED, "frobnicate-v9");
    gw_begin(&w);
    kv_str(&w, "tokenizer.ggml.model", "wordpiece-x");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, 2);
    expect_fail(&w, BST_ERR_UNSUPPORTED, "wordpiece-x");

    /* A SentencePiece byte token that is not <0xXX>. */
    spm_vocab(&w, true, true);
    expect_fail(&w, BST_ERR_FORMAT, "<0xZZ>");

    /* Unknown token type. */
    static const int32_t types_bad[] = {1, 9};
    gw_begin(&w);
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", toks, 2);
    kv_i32s(&w, "tokenizer.ggml.token_type", types_bad, 2);
    expect_fail(&w, BST_ERR_FORMAT, "type 9");

    /* Tokens not a string array. */
    gw_begin(&w);
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_i32s(&w, "tokenizer.ggml.tokens", types_bad, 2);
    expect_fail(&w, BST_ERR_FORMAT, "tokenizer.ggml.tokens");

    /* No tokenizer at all. */
    gw_begin(&w);
    kv_str(&w, "general.architecture", "llama");
    expect_fail(&w, BST_ERR_FORMAT, "tokenizer.ggml.model");

    CU_ASSERT_EQUAL(bsti_tokenizer_create(NULL, NULL), BST_ERR_INVALID_ARG);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"smollm_metadata", test_smollm_metadata},
        {"smollm_ids", test_smollm_ids},
        {"smollm_special_off_and_empty", test_smollm_special_off_and_empty},
        {"smollm_capacity", test_smollm_capacity},
        {"smollm_round_trip", test_smollm_round_trip},
        {"smollm_dropped_bytes", test_smollm_dropped_bytes},
        {"smollm_piece", test_smollm_piece},
        {"utf8_stream_tokens", test_utf8_stream_tokens},
        {"utf8_stream_bytes", test_utf8_stream_bytes},
        {"spm", test_spm},
        {"bpe_ranks", test_bpe_ranks},
        {"bad_vocab", test_bad_vocab},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("tokenizer", cases);
    bsti_tokenizer_destroy(g_tok);
    bsti_gguf_close(g_file);
    return rc;
}
