/*
 * runtime/model/tokenizer_impl.h — the tokenizer's internal state, shared by tokenizer.c (vocabulary
 * loading, special tokens, pieces), tokenizer_bpe.c (byte-level BPE and its regex pre-tokenizer)
 * and tokenizer_spm.c (SentencePiece). Not a public or cross-module interface.
 */
#ifndef BASTION_MODEL_TOKENIZER_IMPL_H
#define BASTION_MODEL_TOKENIZER_IMPL_H

#include "runtime/model/tokenizer.h"

/* Token types as GGUF stores them (llama.cpp's LLAMA_TOKEN_TYPE_*). */
enum {
    TOKI_UNDEFINED = 0,
    TOKI_NORMAL = 1,
    TOKI_UNKNOWN = 2,
    TOKI_CONTROL = 3,
    TOKI_USER_DEFINED = 4,
    TOKI_UNUSED = 5,
    TOKI_BYTE = 6,
};

typedef enum toki_kind { TOKI_BPE, TOKI_SPM } toki_kind;

#define TOKI_MAX_REGEX 4

/* One BPE merge: (left, right) -> result, lower rank merges first. */
typedef struct toki_merge {
    int32_t left, right, result;
    uint32_t rank;
} toki_merge;

struct bsti_tokenizer {
    toki_kind kind;
    uint32_t n_vocab;

    /* Token texts as stored in the vocabulary, concatenated (not NUL-separated). */
    char *text;
    size_t *text_off;
    uint32_t *text_len;
    uint8_t *type;
    float *score; /* SPM only; NULL otherwise */

    /* What each token decodes to (bytes), precomputed so decoding is a copy. */
    char *piece;
    size_t *piece_off;
    uint32_t *piece_len;

    /* Exact text -> id, open addressing; -1 marks an empty slot. */
    int32_t *map;
    uint32_t map_mask;

    /* BPE merges keyed by (left, right); slots with left == -1 are empty. */
    toki_merge *merges;
    uint32_t merge_mask;
    uint32_t n_merges;

    /* BPE: the token of GPT-2's printable character for each byte.
     * SPM: the <0xXX> byte-fallback token (or the one-byte text token), -1 if none. */
    int32_t byte_token[256];

    /* Special tokens matched in raw text, grouped by first byte and longest first within a
     * group: special[special_start[b] .. special_start[b + 1]) all start with byte b. */
    int32_t *special;
    uint32_t n_special;
    uint32_t special_start[257];

    uint8_t *eog; /* bitset over ids */

    int32_t bos, eos, eot, eom, unk;
    bool add_bos;
    bool add_space_prefix; /* SPM */
    bool ignore_merges;    /* BPE: a whole pre-token found in the vocabulary is used as is */

    void *regex[TOKI_MAX_REGEX]; /* pcre2_code_8 *, applied in sequence */
    uint32_t n_regex;

    char *chat_template;
};

/* Growing list of output ids: counts every id, stores those that fit. */
typedef struct toki_out {
    int32_t *ids;
    uint32_t capacity;
    uint64_t count;
} toki_out;

static inline void toki_emit(toki_out *out, int32_t id)
{
    if (out->count < out->capacity) out->ids[out->count] = id;
    out->count++;
}

int32_t bsti_toki_lookup(const bsti_tokenizer *tok, const char *text, size_t len);

/* tokenizer_bpe.c */
BST_MUST_CHECK bst_status bsti_toki_bpe_setup(bsti_tokenizer *tok, const bsti_gguf *file);
BST_MUST_CHECK bst_status bsti_toki_bpe_encode(const bsti_tokenizer *tok, const char *text,
                                               size_t len, toki_out *out);
/* GPT-2's byte -> printable character mapping; writes 1-2 UTF-8 bytes, returns the count. */
size_t bsti_toki_byte_char(uint8_t byte, char out[2]);
/* Reverse of the above for one code point, or -1 when the code point is not in the mapping. */
int bsti_toki_char_byte(uint32_t cp);
void bsti_toki_bpe_free(bsti_tokenizer *tok);

/* tokenizer_spm.c */
BST_MUST_CHECK bst_status bsti_toki_spm_encode(const bsti_tokenizer *tok, const char *text,
                                               size_t len, bool space_prefix, toki_out *out);

#endif /* BASTION_MODEL_TOKENIZER_IMPL_H */
