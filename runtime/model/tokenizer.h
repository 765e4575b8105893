/*
 * runtime/model/tokenizer.h — text <-> token ids for GGUF models.
 *
 * Built from a GGUF file's tokenizer.ggml.* metadata. Two families are supported:
 *   - "gpt2": byte-level BPE (bytes mapped to GPT-2's printable alphabet, merges by rank), with
 *     a pre-tokenizer chosen by tokenizer.ggml.pre ("smollm", "default", "gpt2", "llama3", ...);
 *     an unknown pre-tokenizer is an error, because splitting the text the wrong way would give
 *     silently wrong token ids.
 *   - "llama": SentencePiece (bigram merges by score, byte fallback through <0xXX> tokens).
 * Special tokens (control and user-defined types) are matched in the raw text first when the
 * caller asks for it, longest match first.
 *
 * Ownership: the tokenizer copies everything it needs out of the file; the file may be closed
 * after bsti_tokenizer_create returns. Thread-safety: immutable after creation; any number of
 * threads may encode/decode at once.
 */
#ifndef BASTION_MODEL_TOKENIZER_H
#define BASTION_MODEL_TOKENIZER_H

#include "runtime/model/gguf.h"

typedef struct bsti_tokenizer bsti_tokenizer;

/* Builds the tokenizer from tokenizer.ggml.* metadata. Bad vocabulary data gives BST_ERR_FORMAT
 * naming the problem; an unknown model or pre-tokenizer gives BST_ERR_UNSUPPORTED naming it. */
BST_MUST_CHECK bst_status bsti_tokenizer_create(const bsti_gguf *file, bsti_tokenizer **out);
void bsti_tokenizer_destroy(bsti_tokenizer *tok);

uint32_t bsti_tokenizer_n_vocab(const bsti_tokenizer *tok);

/* Encodes `len` bytes of `text` (need not be NUL-terminated; invalid UTF-8 is encoded byte by
 * byte where the vocabulary allows). Writes up to `capacity` ids to out_tokens (may be NULL when
 * capacity is 0) and the total count to *out_count even when it exceeds capacity. Adds BOS when
 * the model asks for it (bsti_tokenizer_add_bos). */
BST_MUST_CHECK bst_status bsti_tokenizer_encode(const bsti_tokenizer *tok, const char *text,
                                                size_t len, bool parse_special,
                                                int32_t *out_tokens, uint32_t capacity,
                                                uint32_t *out_count);

/* The raw bytes of one token: byte-level BPE decoded back to bytes; SentencePiece '\xe2\x96\x81'
 * (U+2581) becomes ' ' and <0xXX> its byte. Control tokens give their text. Writes up to `cap`
 * bytes; *out_len is the full length (BST_ERR_OVERFLOW when it does not fit). */
BST_MUST_CHECK bst_status bsti_tokenizer_piece(const bsti_tokenizer *tok, int32_t token,
                                               char *buf, size_t cap, size_t *out_len);

/* End-of-generation: eos, eot, eom, and control tokens such as <|im_end|>, <|endoftext|>,
 * <|eot_id|>, <end_of_turn>, <|end|>. */
bool bsti_tokenizer_is_eog(const bsti_tokenizer *tok, int32_t token);

int32_t bsti_tokenizer_bos(const bsti_tokenizer *tok); /* -1 when the model has none */
int32_t bsti_tokenizer_eos(const bsti_tokenizer *tok); /* -1 when the model has none */
bool bsti_tokenizer_add_bos(const bsti_tokenizer *tok);

/* Exact token text (as stored in the vocabulary) -> id, or -1. */
int32_t bsti_tokenizer_find(const bsti_tokenizer *tok, const char *text);

/* tokenizer.chat_template (a NUL-terminated copy owned by the tokenizer) or NULL. */
const char *bsti_tokenizer_chat_template(const bsti_tokenizer *tok);

/* UTF-8 streaming: generated tokens may end in the middle of a character; the stream holds the
 * incomplete tail back until the next token completes it. Zero-initialise before first use. */
typedef struct bsti_utf8_stream {
    unsigned char pending[4];
    uint32_t n_pending;
} bsti_utf8_stream;

/* Appends `n` bytes; writes only complete characters to `out` and returns the bytes written.
 * Invalid sequences become U+FFFD (one per maximal ill-formed subpart, as Unicode recommends).
 * With cap >= BSTI_UTF8_STREAM_OUT_MAX(n) nothing is ever lost; with less, characters that do
 * not fit are dropped (never split). */
#define BSTI_UTF8_STREAM_OUT_MAX(n) (3 * ((size_t)(n) + 4))
size_t bsti_utf8_stream_push(bsti_utf8_stream *s, const char *bytes, size_t n, char *out,
                             size_t cap);
/* Ends the stream: a held-back incomplete character becomes U+FFFD. Needs cap >= 3. */
size_t bsti_utf8_stream_flush(bsti_utf8_stream *s, char *out, size_t cap);

#endif /* BASTION_MODEL_TOKENIZER_H */
