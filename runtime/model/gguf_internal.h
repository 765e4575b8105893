/*
 * runtime/model/gguf_internal.h — the GGUF reader's private state, shared by gguf.c (opening and
 * validating) and gguf_access.c (lookups and typed accessors). Not part of any API.
 *
 * String and nested-array elements have variable sizes, so random access to them goes through an
 * index built once at open time: one uint64_t pool shared by all arrays. The `impl` of an array of
 * N strings points at N entries, entry i = byte offset of element i from the array's `data`.
 * The `impl` of an array of N arrays points at 2N entries: [i] = byte offset of element i's
 * header from `data`, [N + i] = distance in pool entries from entry N + i to element i's own index
 * (0 when its elements have a fixed size). Entries hold offsets rather than pointers so the pool
 * can grow while the file is parsed.
 */
#ifndef BASTION_MODEL_GGUF_INTERNAL_H
#define BASTION_MODEL_GGUF_INTERNAL_H

#include "runtime/model/gguf.h"

/* Arrays nested deeper than this are refused (BST_ERR_UNSUPPORTED): a bound on the recursion,
 * and far beyond anything llama.cpp itself reads (it reads no nested arrays at all). */
#define BSTI_GGUF_MAX_DEPTH 4u
/* Largest general.alignment accepted; a power of two above it is BST_ERR_UNSUPPORTED. */
#define BSTI_GGUF_MAX_ALIGNMENT (1u << 20)
#define BSTI_GGUF_DEFAULT_ALIGNMENT 32u
/* Bytes of a key or name quoted in an error message. */
#define BSTI_GGUF_QUOTE 96

struct bsti_gguf {
    const uint8_t *base; /* the file's bytes */
    uint64_t size;
    void *map;      /* mmap'd region (munmap on close), or NULL */
    size_t map_size;
    void *owned;    /* malloc'd copy (no_mmap), or NULL */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset; /* start of the tensor data section */

    uint64_t n_kv;
    bsti_gguf_kv *kvs;
    const bsti_gguf_kv **kv_by_key; /* sorted by key, for lookup */

    uint64_t n_tensors;
    bsti_gguf_tensor *tensors;
    const bsti_gguf_tensor **tensor_by_name; /* sorted by name */

    uint64_t *pool; /* element index of string / nested arrays (see above) */
    uint64_t pool_len, pool_cap;
};

/* Orders two file strings (bytewise, shorter first on a common prefix). */
int bsti_gguf_str_cmp(bsti_gguf_str a, bsti_gguf_str b);
/* Size in bytes of one element of a fixed-size type; 0 for string, array and unknown types. */
uint32_t bsti_gguf_fixed_size(bsti_gguf_type type);
/* Little-endian loads from possibly unaligned bytes. */
uint64_t bsti_gguf_load(const uint8_t *p, uint32_t bytes);

#endif /* BASTION_MODEL_GGUF_INTERNAL_H */
