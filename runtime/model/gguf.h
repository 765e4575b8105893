/*
 * runtime/model/gguf.h — a hardened reader for GGUF files (versions 2 and 3).
 *
 * The file is mapped (or read, with no_mmap) once; metadata values and tensor data are used in
 * place, never copied. Every count, length, offset and size is checked against the file size
 * before use, so a truncated or hostile file gives a status and a message naming the field, and
 * the reader never allocates more than a small multiple of the file size.
 *
 * Shapes are converted to Bastion's order (outermost-first): GGUF's ne = [576, 1536] becomes
 * shape [1536, 576].
 *
 * Thread-safety: an opened file is immutable; any number of threads may read it at once.
 */
#ifndef BASTION_MODEL_GGUF_H
#define BASTION_MODEL_GGUF_H

#include "graph/ir.h"

/* GGUF metadata value types (the file's numbering). */
typedef enum bsti_gguf_type {
    BSTI_GGUF_UINT8 = 0,
    BSTI_GGUF_INT8 = 1,
    BSTI_GGUF_UINT16 = 2,
    BSTI_GGUF_INT16 = 3,
    BSTI_GGUF_UINT32 = 4,
    BSTI_GGUF_INT32 = 5,
    BSTI_GGUF_FLOAT32 = 6,
    BSTI_GGUF_BOOL = 7,
    BSTI_GGUF_STRING = 8,
    BSTI_GGUF_ARRAY = 9,
    BSTI_GGUF_UINT64 = 10,
    BSTI_GGUF_INT64 = 11,
    BSTI_GGUF_FLOAT64 = 12,
    BSTI_GGUF_TYPE_COUNT
} bsti_gguf_type;

/* A string inside the file: not NUL-terminated. */
typedef struct bsti_gguf_str {
    const char *ptr;
    uint64_t len;
} bsti_gguf_str;

/* An array value. Elements of fixed-size types sit contiguously at `data` (little-endian, maybe
 * unaligned: read them with the accessors); strings and nested arrays through the accessors. */
typedef struct bsti_gguf_array {
    bsti_gguf_type elem_type;
    uint64_t count;
    const void *data; /* first element's bytes */
    const void *impl; /* reader-private index for string / nested-array elements */
} bsti_gguf_array;

typedef struct bsti_gguf_kv {
    bsti_gguf_str key;
    bsti_gguf_type type;
    union {
        uint64_t u64; /* all unsigned ints and bool */
        int64_t i64;  /* all signed ints */
        double f64;   /* both float types */
        bsti_gguf_str str;
        bsti_gguf_array arr;
    } v;
} bsti_gguf_kv;

typedef struct bsti_gguf_tensor {
    bsti_gguf_str name;
    bst_dtype dtype;
    uint32_t rank;
    int64_t shape[BST_MAX_DIMS]; /* outermost-first */
    const void *data;            /* in the mapped file, aligned to the file's alignment */
    uint64_t size;               /* bytes */
} bsti_gguf_tensor;

typedef struct bsti_gguf bsti_gguf;

typedef struct bsti_gguf_options {
    bool no_mmap;
} bsti_gguf_options;

/* Opens and validates a whole file; `options` may be NULL. */
BST_MUST_CHECK bst_status bsti_gguf_open(const char *path, const bsti_gguf_options *options,
                                         bsti_gguf **out_file);
/* The same over bytes in memory (borrowed; used by the fuzzer and tests). */
BST_MUST_CHECK bst_status bsti_gguf_open_memory(const void *data, size_t size,
                                                bsti_gguf **out_file);
void bsti_gguf_close(bsti_gguf *file);
/* True when the file's bytes are a read-only private mapping of the file (not read into memory
 * or borrowed from a caller's buffer). */
bool bsti_gguf_is_mapped(const bsti_gguf *file);

uint32_t bsti_gguf_version(const bsti_gguf *file);
uint64_t bsti_gguf_file_size(const bsti_gguf *file);
uint64_t bsti_gguf_kv_count(const bsti_gguf *file);
const bsti_gguf_kv *bsti_gguf_kv_at(const bsti_gguf *file, uint64_t index);
const bsti_gguf_kv *bsti_gguf_find(const bsti_gguf *file, const char *key); /* NULL if absent */

/* Typed getters for well-known keys: BST_ERR_NOT_FOUND when absent, BST_ERR_FORMAT naming the key
 * when the type is wrong or the value out of range for the destination. Integer getters accept
 * any integer type whose value fits. */
BST_MUST_CHECK bst_status bsti_gguf_get_u32(const bsti_gguf *file, const char *key,
                                            uint32_t *out_value);
BST_MUST_CHECK bst_status bsti_gguf_get_f32(const bsti_gguf *file, const char *key,
                                            float *out_value);
BST_MUST_CHECK bst_status bsti_gguf_get_bool(const bsti_gguf *file, const char *key,
                                             bool *out_value);
BST_MUST_CHECK bst_status bsti_gguf_get_str(const bsti_gguf *file, const char *key,
                                            bsti_gguf_str *out_value);
BST_MUST_CHECK bst_status bsti_gguf_get_array(const bsti_gguf *file, const char *key,
                                              bsti_gguf_type elem_type,
                                              bsti_gguf_array *out_value);

/* Array element accessors; index must be < count and the type must match (else an error). */
BST_MUST_CHECK bst_status bsti_gguf_array_str(const bsti_gguf_array *array, uint64_t index,
                                              bsti_gguf_str *out_value);
BST_MUST_CHECK bst_status bsti_gguf_array_i64(const bsti_gguf_array *array, uint64_t index,
                                              int64_t *out_value); /* any integer type */
BST_MUST_CHECK bst_status bsti_gguf_array_f64(const bsti_gguf_array *array, uint64_t index,
                                              double *out_value); /* either float type */
BST_MUST_CHECK bst_status bsti_gguf_array_array(const bsti_gguf_array *array, uint64_t index,
                                                bsti_gguf_array *out_value);

uint64_t bsti_gguf_tensor_count(const bsti_gguf *file);
const bsti_gguf_tensor *bsti_gguf_tensor_at(const bsti_gguf *file, uint64_t index);
const bsti_gguf_tensor *bsti_gguf_tensor_find(const bsti_gguf *file, const char *name);

/* --- appended by the reader's implementation --- */

/* "uint8", "string", "array", ...; "unknown" for an out-of-range value. */
const char *bsti_gguf_type_name(bsti_gguf_type type);
/* general.alignment (32 when absent) and the file offset where the tensor data section starts.
 * Tensor data sits at these offsets in the file; in memory it is aligned as far as the mapping
 * (page-aligned; the caller's buffer for bsti_gguf_open_memory) allows. */
uint32_t bsti_gguf_alignment(const bsti_gguf *file);
uint64_t bsti_gguf_data_offset(const bsti_gguf *file);

/* Notes on what open accepts, so callers know what they may rely on:
 *  - keys and tensor names are non-empty, unique, and hold no NUL or other control byte (so a
 *    C-string lookup finds every one); string values may hold any bytes, NUL included;
 *  - bool values (also in arrays) are 0 or 1; bsti_gguf_array_i64 reads bool elements as 0/1;
 *  - general.alignment, when present, is a uint32 power of two <= 1 MiB; general.architecture,
 *    when present, is a string;
 *  - every tensor has rank 1..4, dims >= 1, a supported dtype, an innermost dim that is a whole
 *    number of blocks, aligned data inside the file, and overlaps no other tensor;
 *  - arrays nest at most 4 levels (deeper: BST_ERR_UNSUPPORTED).
 * Status codes: BST_ERR_FORMAT malformed data, BST_ERR_UNSUPPORTED valid but not supported
 * (version 1 or > 3, big-endian files, unsupported tensor types), BST_ERR_IO open/map/read
 * failures, BST_ERR_OVERFLOW sizes that overflow. Messages from bsti_gguf_open start with the
 * path. Array accessors return BST_ERR_INVALID_ARG for a bad index or element type. */

#endif /* BASTION_MODEL_GGUF_H */
