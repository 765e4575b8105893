/*
 * runtime/model/gguf.c — opening a GGUF file: mapping (or reading) it and validating every byte
 * of the header, the metadata and the tensor infos before anything else may look at them.
 *
 * The file is untrusted. Every count is checked against the bytes left in the file before
 * anything is allocated for it (a count of N elements needs at least N times the smallest
 * element's encoding), every length against the bytes left, every size computation for
 * overflow; the only recursion (nested arrays) is bounded by BSTI_GGUF_MAX_DEPTH. Errors name the
 * field that is wrong, and the key or tensor it belongs to.
 */
#include "runtime/model/gguf_internal.h"

#include "graph/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NO_INDEX UINT64_MAX
/* Smallest encodings: a key/value is a key (8-byte length + at least 1 byte) + type + a 1-byte
 * value; a tensor info is a name (8 + 1) + n_dims + one dim + type + offset. */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 33u
#define MIN_STRING_BYTES 8u
#define MIN_ARRAY_BYTES 12u
#define HEADER_BYTES 24u

typedef struct parser {
    bsti_gguf *f;
    uint64_t pos;
    /* What is being read, for messages: "kv 3", "key 'general.name'", "tensor 'blk.0.x'". */
    char where[BSTI_GGUF_QUOTE + 32];
} parser;

/* ggml's tensor type ids (ggml.h enum ggml_type); names only serve messages. */
typedef struct ggml_type_info {
    const char *name;
    bst_dtype dtype; /* BST_DTYPE_INVALID: known to ggml, not supported here */
} ggml_type_info;

static const ggml_type_info ggml_types[] = {
    [0] = {"f32", BST_DTYPE_F32},      [1] = {"f16", BST_DTYPE_F16},
    [2] = {"q4_0", BST_DTYPE_Q4_0},    [3] = {"q4_1", BST_DTYPE_Q4_1},
    [4] = {"q4_2 (removed)", 0},       [5] = {"q4_3 (removed)", 0},
    [6] = {"q5_0", BST_DTYPE_Q5_0},    [7] = {"q5_1", BST_DTYPE_Q5_1},
    [8] = {"q8_0", BST_DTYPE_Q8_0},    [9] = {"q8_1", 0},
    [10] = {"q2_K", 0},                [11] = {"q3_K", 0},
    [12] = {"q4_K", 0},                [13] = {"q5_K", 0},
    [14] = {"q6_K", 0},                [15] = {"q8_K", 0},
    [16] = {"iq2_xxs", 0},             [17] = {"iq2_xs", 0},
    [18] = {"iq3_xxs", 0},             [19] = {"iq1_s", 0},
    [20] = {"iq4_nl", 0},              [21] = {"iq3_s", 0},
    [22] = {"iq2_s", 0},               [23] = {"iq4_xs", 0},
    [24] = {"i8", BST_DTYPE_I8},       [25] = {"i16", 0},
    [26] = {"i32", BST_DTYPE_I32},     [27] = {"i64", 0},
    [28] = {"f64", 0},                 [29] = {"iq1_m", 0},
    [30] = {"bf16", BST_DTYPE_BF16},   [31] = {"q4_0_4_4 (removed)", 0},
    [32] = {"q4_0_4_8 (removed)", 0},  [33] = {"q4_0_8_8 (removed)", 0},
    [34] = {"tq1_0", 0},               [35] = {"tq2_0", 0},
    [36] = {"iq4_nl_4_4 (removed)", 0}, [37] = {"iq4_nl_4_8 (removed)", 0},
    [38] = {"iq4_nl_8_8 (removed)", 0}, [39] = {"mxfp4", 0},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

static uint64_t left(const parser *p)
{
    return p->f->size - p->pos;
}

static const uint8_t *here(const parser *p)
{
    return p->f->base + p->pos;
}

/* Fails unless `n` more bytes are in the file. */
static bst_status need(parser *p, uint64_t n, const char *field)
{
    if (n <= left(p))
        return BST_OK;
    return bsti_fail(BST_ERR_FORMAT,
                     "%s: file truncated in %s: needs %llu bytes at offset %llu, only %llu left",
                     p->where, field, (unsigned long long)n, (unsigned long long)p->pos,
                     (unsigned long long)left(p));
}

static bst_status read_u32(parser *p, const char *field, uint32_t *out_value)
{
    bst_status st = need(p, 4, field);
    if (st != BST_OK)
        return st;
    *out_value = (uint32_t)bsti_gguf_load(here(p), 4);
    p->pos += 4;
    return BST_OK;
}

static bst_status read_u64(parser *p, const char *field, uint64_t *out_value)
{
    bst_status st = need(p, 8, field);
    if (st != BST_OK)
        return st;
    *out_value = bsti_gguf_load(here(p), 8);
    p->pos += 8;
    return BST_OK;
}

static bst_status read_str(parser *p, const char *field, bsti_gguf_str *out_value)
{
    uint64_t len;
    bst_status st = need(p, 8, field);
    if (st != BST_OK)
        return st;
    len = bsti_gguf_load(here(p), 8);
    if (len > left(p) - 8)
        return bsti_fail(BST_ERR_FORMAT,
                         "%s: file truncated in %s: string length %llu at offset %llu exceeds "
                         "the %llu bytes left",
                         p->where, field, (unsigned long long)len, (unsigned long long)p->pos,
                         (unsigned long long)(left(p) - 8));
    p->pos += 8;
    out_value->ptr = (const char *)here(p);
    out_value->len = len;
    p->pos += len;
    return BST_OK;
}

/* Keys and tensor names are looked up by C string and quoted in messages, so they must be
 * non-empty and free of NUL and other control bytes. UTF-8 beyond ASCII is let through. */
static bst_status check_name(parser *p, bsti_gguf_str s, const char *what)
{
    if (s.len == 0)
        return bsti_fail(BST_ERR_FORMAT, "%s: empty %s", p->where, what);
    for (uint64_t i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)s.ptr[i];
        if (c < 0x20 || c == 0x7f)
            return bsti_fail(BST_ERR_FORMAT, "%s: %s '%.*s' contains control byte 0x%02x at %llu",
                             p->where, what, (int)(i < BSTI_GGUF_QUOTE ? i : BSTI_GGUF_QUOTE),
                             s.ptr, c, (unsigned long long)i);
    }
    return BST_OK;
}

static void set_where(parser *p, const char *kind, bsti_gguf_str name)
{
    int len = name.len > BSTI_GGUF_QUOTE ? BSTI_GGUF_QUOTE : (int)name.len;
    snprintf(p->where, sizeof p->where, "%s '%.*s%s'", kind, len, name.ptr,
             name.len > BSTI_GGUF_QUOTE ? "..." : "");
}

static const char *type_name(uint32_t type)
{
    return type < BSTI_GGUF_TYPE_COUNT ? bsti_gguf_type_name((bsti_gguf_type)type) : "unknown";
}

/* Appends `n` entries to the element index; *out_index is the first. */
static bst_status pool_reserve(bsti_gguf *f, uint64_t n, uint64_t *out_index)
{
    if (n > UINT64_MAX / 2 - f->pool_len)
        return bsti_fail(BST_ERR_OVERFLOW, "GGUF array index overflows");
    uint64_t want = f->pool_len + n;
    if (want > f->pool_cap) {
        uint64_t cap = f->pool_cap ? f->pool_cap : 256;
        while (cap < want)
            cap *= 2;
        if (cap > SIZE_MAX / sizeof(uint64_t))
            return bsti_fail(BST_ERR_OVERFLOW, "GGUF array index of %llu entries is too large",
                             (unsigned long long)cap);
        uint64_t *grown = realloc(f->pool, (size_t)cap * sizeof(uint64_t));
        if (!grown)
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "GGUF array index of %llu entries",
                             (unsigned long long)cap);
        f->pool = grown;
        f->pool_cap = cap;
    }
    *out_index = f->pool_len;
    f->pool_len = want;
    return BST_OK;
}

/* Reads an array's header and elements at depth `depth` (1 for a key's own value); its element
 * index, if it needs one, is returned as a pool position in *out_index (NO_INDEX otherwise). */
static bst_status parse_array(parser *p, uint32_t depth, bsti_gguf_array *out,
                              uint64_t *out_index)
{
    uint32_t elem_type;
    uint64_t count;
    bst_status st;

    *out_index = NO_INDEX;
    if (depth > BSTI_GGUF_MAX_DEPTH)
        return bsti_fail(BST_ERR_UNSUPPORTED, "%s: arrays nested deeper than %u levels",
                         p->where, BSTI_GGUF_MAX_DEPTH);
    if ((st = read_u32(p, "array element type", &elem_type)) != BST_OK ||
        (st = read_u64(p, "array count", &count)) != BST_OK)
        return st;
    if (elem_type >= BSTI_GGUF_TYPE_COUNT)
        return bsti_fail(BST_ERR_FORMAT, "%s: unknown array element type %u", p->where,
                         elem_type);
    uint32_t fixed = bsti_gguf_fixed_size((bsti_gguf_type)elem_type);
    uint32_t min_bytes = fixed ? fixed
                               : (elem_type == BSTI_GGUF_STRING ? MIN_STRING_BYTES
                                                                : MIN_ARRAY_BYTES);
    if (count > left(p) / min_bytes)
        return bsti_fail(BST_ERR_FORMAT,
                         "%s: array count %llu of %s cannot fit: each element needs at least %u "
                         "bytes and %llu bytes are left",
                         p->where, (unsigned long long)count, type_name(elem_type), min_bytes,
                         (unsigned long long)left(p));

    uint64_t start = p->pos;
    out->elem_type = (bsti_gguf_type)elem_type;
    out->count = count;
    out->data = here(p);
    out->impl = NULL;

    if (fixed) {
        if (elem_type == BSTI_GGUF_BOOL) {
            for (uint64_t i = 0; i < count; i++) {
                uint8_t b = here(p)[i];
                if (b > 1)
                    return bsti_fail(BST_ERR_FORMAT,
                                     "%s: bool array element %llu is %u (must be 0 or 1)",
                                     p->where, (unsigned long long)i, b);
            }
        }
        p->pos += count * fixed;
        return BST_OK;
    }
    if (count == 0)
        return BST_OK;

    uint64_t index;
    if (elem_type == BSTI_GGUF_STRING) {
        if ((st = pool_reserve(p->f, count, &index)) != BST_OK)
            return st;
        for (uint64_t i = 0; i < count; i++) {
            bsti_gguf_str s;
            uint64_t at = p->pos - start;
            if ((st = read_str(p, "string array element", &s)) != BST_OK)
                return st;
            p->f->pool[index + i] = at;
        }
        *out_index = index;
        return BST_OK;
    }

    /* Arrays of arrays: [i] element offsets, [count + i] links to each element's own index. */
    if ((st = pool_reserve(p->f, 2 * count, &index)) != BST_OK)
        return st;
    for (uint64_t i = 0; i < count; i++) {
        bsti_gguf_array sub;
        uint64_t sub_index;
        uint64_t at = p->pos - start;
        if ((st = parse_array(p, depth + 1, &sub, &sub_index)) != BST_OK)
            return st;
        /* The pool may have moved: index it again after the recursive call. */
        p->f->pool[index + i] = at;
        p->f->pool[index + count + i] =
            sub_index == NO_INDEX ? 0 : sub_index - (index + count + i);
    }
    *out_index = index;
    return BST_OK;
}

static bst_status parse_kv(parser *p, uint64_t i, bsti_gguf_kv *kv, uint64_t *out_index)
{
    uint32_t type;
    bst_status st;

    *out_index = NO_INDEX;
    snprintf(p->where, sizeof p->where, "kv %llu", (unsigned long long)i);
    if ((st = read_str(p, "key", &kv->key)) != BST_OK ||
        (st = check_name(p, kv->key, "key")) != BST_OK)
        return st;
    set_where(p, "key", kv->key);
    if ((st = read_u32(p, "value type", &type)) != BST_OK)
        return st;
    if (type >= BSTI_GGUF_TYPE_COUNT)
        return bsti_fail(BST_ERR_FORMAT, "%s: unknown value type %u", p->where, type);
    kv->type = (bsti_gguf_type)type;

    uint32_t fixed = bsti_gguf_fixed_size(kv->type);
    if (fixed) {
        if ((st = need(p, fixed, "value")) != BST_OK)
            return st;
        uint64_t raw = bsti_gguf_load(here(p), fixed);
        p->pos += fixed;
        switch (kv->type) {
        case BSTI_GGUF_INT8:
            kv->v.i64 = (int8_t)(uint8_t)raw;
            break;
        case BSTI_GGUF_INT16:
            kv->v.i64 = (int16_t)(uint16_t)raw;
            break;
        case BSTI_GGUF_INT32:
            kv->v.i64 = (int32_t)(uint32_t)raw;
            break;
        case BSTI_GGUF_INT64:
            kv->v.i64 = (int64_t)raw;
            break;
        case BSTI_GGUF_FLOAT32: {
            uint32_t bits = (uint32_t)raw;
            float f32;
            memcpy(&f32, &bits, sizeof f32);
            kv->v.f64 = f32;
            break;
        }
        case BSTI_GGUF_FLOAT64:
            memcpy(&kv->v.f64, &raw, sizeof kv->v.f64);
            break;
        case BSTI_GGUF_BOOL:
            if (raw > 1)
                return bsti_fail(BST_ERR_FORMAT, "%s: bool value is %llu (must be 0 or 1)",
                                 p->where, (unsigned long long)raw);
            kv->v.u64 = raw;
            break;
        default: /* unsigned integers */
            kv->v.u64 = raw;
            break;
        }
        return BST_OK;
    }
    if (kv->type == BSTI_GGUF_STRING)
        return read_str(p, "string value", &kv->v.str);
    return parse_array(p, 1, &kv->v.arr, out_index);
}

static int cmp_kv_ptr(const void *a, const void *b)
{
    const bsti_gguf_kv *x = *(const bsti_gguf_kv *const *)a;
    const bsti_gguf_kv *y = *(const bsti_gguf_kv *const *)b;
    return bsti_gguf_str_cmp(x->key, y->key);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const bsti_gguf_tensor *x = *(const bsti_gguf_tensor *const *)a;
    const bsti_gguf_tensor *y = *(const bsti_gguf_tensor *const *)b;
    return bsti_gguf_str_cmp(x->name, y->name);
}

static int cmp_tensor_data(const void *a, const void *b)
{
    const bsti_gguf_tensor *x = *(const bsti_gguf_tensor *const *)a;
    const bsti_gguf_tensor *y = *(const bsti_gguf_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

static int quote_len(bsti_gguf_str s)
{
    return s.len > BSTI_GGUF_QUOTE ? BSTI_GGUF_QUOTE : (int)s.len;
}

static bst_status parse_kvs(parser *p)
{
    bsti_gguf *f = p->f;
    bst_status st = BST_OK;
    uint64_t *indices = NULL;

    if (f->n_kv == 0)
        return BST_OK;
    /* The counts were checked against the file size, so these are bounded by a small multiple
     * of it; still, they must fit in size_t on a 32-bit host. */
    if (f->n_kv > SIZE_MAX / sizeof(bsti_gguf_kv))
        return bsti_fail(BST_ERR_OVERFLOW, "n_kv %llu too large for this host",
                         (unsigned long long)f->n_kv);
    f->kvs = calloc((size_t)f->n_kv, sizeof *f->kvs);
    f->kv_by_key = calloc((size_t)f->n_kv, sizeof *f->kv_by_key);
    indices = calloc((size_t)f->n_kv, sizeof *indices);
    if (!f->kvs || !f->kv_by_key || !indices) {
        st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "GGUF metadata index for %llu keys",
                       (unsigned long long)f->n_kv);
        goto done;
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if ((st = parse_kv(p, i, &f->kvs[i], &indices[i])) != BST_OK)
            goto done;
        f->kv_by_key[i] = &f->kvs[i];
    }
    /* The pool is final now: turn element-index positions into pointers. */
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (indices[i] != NO_INDEX)
            f->kvs[i].v.arr.impl = f->pool + indices[i];

    qsort(f->kv_by_key, (size_t)f->n_kv, sizeof *f->kv_by_key, cmp_kv_ptr);
    for (uint64_t i = 1; i < f->n_kv; i++) {
        bsti_gguf_str k = f->kv_by_key[i]->key;
        if (bsti_gguf_str_cmp(f->kv_by_key[i - 1]->key, k) == 0) {
            st = bsti_fail(BST_ERR_FORMAT, "duplicate key '%.*s'", quote_len(k), k.ptr);
            goto done;
        }
    }
done:
    free(indices);
    return st;
}

/* Keys whose type the reader itself depends on, or that every consumer reads first. */
static bst_status check_general_keys(bsti_gguf *f)
{
    const bsti_gguf_kv *kv = bsti_gguf_find(f, "general.alignment");
    f->alignment = BSTI_GGUF_DEFAULT_ALIGNMENT;
    if (kv) {
        if (kv->type != BSTI_GGUF_UINT32)
            return bsti_fail(BST_ERR_FORMAT, "key 'general.alignment' has type %s, expected uint32",
                             bsti_gguf_type_name(kv->type));
        uint64_t a = kv->v.u64;
        if (a == 0 || (a & (a - 1)) != 0)
            return bsti_fail(BST_ERR_FORMAT, "key 'general.alignment': %llu is not a power of two",
                             (unsigned long long)a);
        if (a > BSTI_GGUF_MAX_ALIGNMENT)
            return bsti_fail(BST_ERR_UNSUPPORTED,
                             "key 'general.alignment': %llu is larger than the supported %u",
                             (unsigned long long)a, BSTI_GGUF_MAX_ALIGNMENT);
        f->alignment = (uint32_t)a;
    }
    kv = bsti_gguf_find(f, "general.architecture");
    if (kv && kv->type != BSTI_GGUF_STRING)
        return bsti_fail(BST_ERR_FORMAT, "key 'general.architecture' has type %s, expected string",
                         bsti_gguf_type_name(kv->type));
    return BST_OK;
}

/* Reads one tensor info; the data pointer is filled in once the data section is known, and
 * meanwhile `data` holds nothing and *out_offset the offset relative to that section. */
static bst_status parse_tensor_info(parser *p, uint64_t i, bsti_gguf_tensor *t,
                                    uint64_t *out_offset)
{
    uint32_t n_dims, ggml_type;
    uint64_t ne[BST_MAX_DIMS];
    bst_status st;

    snprintf(p->where, sizeof p->where, "tensor %llu", (unsigned long long)i);
    if ((st = read_str(p, "name", &t->name)) != BST_OK ||
        (st = check_name(p, t->name, "tensor name")) != BST_OK)
        return st;
    set_where(p, "tensor", t->name);
    if ((st = read_u32(p, "n_dims", &n_dims)) != BST_OK)
        return st;
    if (n_dims < 1 || n_dims > BST_MAX_DIMS)
        return bsti_fail(BST_ERR_FORMAT, "%s: n_dims %u out of range 1..%d", p->where, n_dims,
                         BST_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if ((st = read_u64(p, "dims", &ne[d])) != BST_OK)
            return st;
        if (ne[d] == 0)
            return bsti_fail(BST_ERR_FORMAT, "%s: dim %u is 0", p->where, d);
        if (ne[d] > (uint64_t)INT64_MAX)
            return bsti_fail(BST_ERR_FORMAT, "%s: dim %u is %llu, beyond int64", p->where, d,
                             (unsigned long long)ne[d]);
        if (n > (uint64_t)INT64_MAX / ne[d])
            return bsti_fail(BST_ERR_OVERFLOW, "%s: element count overflows int64 at dim %u",
                             p->where, d);
        n *= ne[d];
    }
    if ((st = read_u32(p, "type", &ggml_type)) != BST_OK ||
        (st = read_u64(p, "data offset", out_offset)) != BST_OK)
        return st;
    if (ggml_type >= N_GGML_TYPES)
        return bsti_fail(BST_ERR_UNSUPPORTED, "%s: unknown ggml type id %u", p->where, ggml_type);
    if (ggml_types[ggml_type].dtype == BST_DTYPE_INVALID)
        return bsti_fail(BST_ERR_UNSUPPORTED, "%s: ggml type id %u (%s) is not supported",
                         p->where, ggml_type, ggml_types[ggml_type].name);
    t->dtype = ggml_types[ggml_type].dtype;
    uint32_t block = bst_dtype_block_size(t->dtype);
    uint32_t block_bytes = bst_dtype_block_bytes(t->dtype);
    if (ne[0] % block != 0)
        return bsti_fail(BST_ERR_FORMAT,
                         "%s: innermost dim %llu is not a multiple of the %s block size %u",
                         p->where, (unsigned long long)ne[0], ggml_types[ggml_type].name, block);
    uint64_t blocks = n / block;
    if (blocks > (uint64_t)INT64_MAX / block_bytes)
        return bsti_fail(BST_ERR_OVERFLOW, "%s: byte size overflows (%llu blocks of %u bytes)",
                         p->where, (unsigned long long)blocks, block_bytes);
    t->size = blocks * block_bytes;
    t->rank = n_dims;
    for (uint32_t d = 0; d < n_dims; d++)
        t->shape[d] = (int64_t)ne[n_dims - 1 - d];
    return BST_OK;
}

static bst_status parse_tensors(parser *p)
{
    bsti_gguf *f = p->f;
    uint64_t *offsets = NULL;
    const bsti_gguf_tensor **by_data = NULL;
    bst_status st = BST_OK;

    if (f->n_tensors > SIZE_MAX / sizeof(bsti_gguf_tensor))
        return bsti_fail(BST_ERR_OVERFLOW, "n_tensors %llu too large for this host",
                         (unsigned long long)f->n_tensors);
    if (f->n_tensors) {
        f->tensors = calloc((size_t)f->n_tensors, sizeof *f->tensors);
        f->tensor_by_name = calloc((size_t)f->n_tensors, sizeof *f->tensor_by_name);
        offsets = calloc((size_t)f->n_tensors, sizeof *offsets);
        by_data = calloc((size_t)f->n_tensors, sizeof *by_data);
        if (!f->tensors || !f->tensor_by_name || !offsets || !by_data) {
            st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "GGUF tensor index for %llu tensors",
                           (unsigned long long)f->n_tensors);
            goto done;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        if ((st = parse_tensor_info(p, i, &f->tensors[i], &offsets[i])) != BST_OK)
            goto done;
        f->tensor_by_name[i] = &f->tensors[i];
        by_data[i] = &f->tensors[i];
    }
    if (f->n_tensors) {
        qsort(f->tensor_by_name, (size_t)f->n_tensors, sizeof *f->tensor_by_name,
              cmp_tensor_name);
        for (uint64_t i = 1; i < f->n_tensors; i++) {
            bsti_gguf_str nm = f->tensor_by_name[i]->name;
            if (bsti_gguf_str_cmp(f->tensor_by_name[i - 1]->name, nm) == 0) {
                st = bsti_fail(BST_ERR_FORMAT, "duplicate tensor name '%.*s'", quote_len(nm),
                               nm.ptr);
                goto done;
            }
        }
    }

    /* The data section starts at the first aligned offset after the infos. alignment <= 1 MiB
     * and pos <= size, so this cannot overflow. */
    f->data_offset = (p->pos + f->alignment - 1) / f->alignment * f->alignment;
    uint64_t room = f->data_offset <= f->size ? f->size - f->data_offset : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        bsti_gguf_tensor *t = &f->tensors[i];
        int nl = quote_len(t->name);
        if (offsets[i] % f->alignment != 0) {
            st = bsti_fail(BST_ERR_FORMAT,
                           "tensor '%.*s': data offset %llu is not aligned to %u", nl,
                           t->name.ptr, (unsigned long long)offsets[i], f->alignment);
            goto done;
        }
        if (f->data_offset > f->size || offsets[i] > room || t->size > room - offsets[i]) {
            st = bsti_fail(BST_ERR_FORMAT,
                           "tensor '%.*s': data offset %llu + size %llu beyond file size %llu "
                           "(data section starts at %llu)",
                           nl, t->name.ptr, (unsigned long long)offsets[i],
                           (unsigned long long)t->size, (unsigned long long)f->size,
                           (unsigned long long)f->data_offset);
            goto done;
        }
        t->data = f->base + f->data_offset + offsets[i];
    }
    if (f->n_tensors) {
        qsort(by_data, (size_t)f->n_tensors, sizeof *by_data, cmp_tensor_data);
        for (uint64_t i = 1; i < f->n_tensors; i++) {
            const bsti_gguf_tensor *a = by_data[i - 1], *b = by_data[i];
            uint64_t a_off = (uint64_t)((const uint8_t *)a->data - f->base) - f->data_offset;
            uint64_t b_off = (uint64_t)((const uint8_t *)b->data - f->base) - f->data_offset;
            if (a_off + a->size > b_off) {
                st = bsti_fail(BST_ERR_FORMAT,
                               "tensor '%.*s' (offset %llu, size %llu) overlaps tensor '%.*s' "
                               "(offset %llu)",
                               quote_len(a->name), a->name.ptr, (unsigned long long)a_off,
                               (unsigned long long)a->size, quote_len(b->name), b->name.ptr,
                               (unsigned long long)b_off);
                goto done;
            }
        }
    }
done:
    free(offsets);
    free(by_data);
    return st;
}

static bst_status parse_header(parser *p)
{
    bsti_gguf *f = p->f;
    const uint8_t *b = f->base;
    bst_status st;

    snprintf(p->where, sizeof p->where, "header");
    if ((st = need(p, 4, "magic")) != BST_OK)
        return st;
    if (memcmp(b, "GGUF", 4) != 0) {
        /* A writer that stored the magic as a native uint32 on a big-endian host. */
        if (memcmp(b, "FUGG", 4) == 0)
            return bsti_fail(BST_ERR_UNSUPPORTED,
                             "big-endian GGUF file (byte-swapped magic) is not supported");
        if (memcmp(b, "lmgg", 4) == 0 || memcmp(b, "fmgg", 4) == 0 || memcmp(b, "tjgg", 4) == 0)
            return bsti_fail(BST_ERR_FORMAT,
                             "bad magic: an old GGML/GGMF/GGJT file, not GGUF (convert it with "
                             "llama.cpp's tools)");
        return bsti_fail(BST_ERR_FORMAT,
                         "bad magic %02x %02x %02x %02x: not a GGUF file (expected 'GGUF')", b[0],
                         b[1], b[2], b[3]);
    }
    p->pos = 4;
    if ((st = read_u32(p, "version", &f->version)) != BST_OK)
        return st;
    uint32_t v = f->version;
    uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
    if (v == 1)
        return bsti_fail(BST_ERR_UNSUPPORTED,
                         "GGUF version 1 is not supported (only versions 2 and 3)");
    if (v > 0xffffu && swapped >= 1 && swapped <= 3)
        return bsti_fail(BST_ERR_UNSUPPORTED,
                         "big-endian GGUF file (version %u byte-swapped) is not supported",
                         swapped);
    if (v == 0)
        return bsti_fail(BST_ERR_FORMAT, "GGUF version 0 is invalid");
    if (v > 3)
        return bsti_fail(BST_ERR_UNSUPPORTED,
                         "GGUF version %u is not supported (only versions 2 and 3)", v);
    if ((st = read_u64(p, "n_tensors", &f->n_tensors)) != BST_OK ||
        (st = read_u64(p, "n_kv", &f->n_kv)) != BST_OK)
        return st;

    /* Refuse absurd counts before allocating anything for them. */
    uint64_t rest = left(p);
    if (f->n_kv > rest / MIN_KV_BYTES)
        return bsti_fail(BST_ERR_FORMAT,
                         "header: n_kv %llu cannot fit: each key/value needs at least %u bytes "
                         "and the file has %llu left",
                         (unsigned long long)f->n_kv, MIN_KV_BYTES, (unsigned long long)rest);
    rest -= f->n_kv * MIN_KV_BYTES;
    if (f->n_tensors > rest / MIN_TENSOR_INFO_BYTES)
        return bsti_fail(BST_ERR_FORMAT,
                         "header: n_tensors %llu cannot fit: each tensor info needs at least %u "
                         "bytes and the file has %llu left after the metadata",
                         (unsigned long long)f->n_tensors, MIN_TENSOR_INFO_BYTES,
                         (unsigned long long)rest);
    return BST_OK;
}

static bst_status parse_file(bsti_gguf *f)
{
    parser p = {.f = f, .pos = 0};
    bst_status st;
    if ((st = parse_header(&p)) != BST_OK || (st = parse_kvs(&p)) != BST_OK ||
        (st = check_general_keys(f)) != BST_OK || (st = parse_tensors(&p)) != BST_OK)
        return st;
    return BST_OK;
}

void bsti_gguf_close(bsti_gguf *file)
{
    if (!file)
        return;
    if (file->map)
        munmap(file->map, file->map_size);
    free(file->owned);
    free(file->kvs);
    free(file->kv_by_key);
    free(file->tensors);
    free(file->tensor_by_name);
    free(file->pool);
    free(file);
}

bool bsti_gguf_is_mapped(const bsti_gguf *file) { return file && file->map; }

static bst_status new_file(bsti_gguf **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "GGUF reader state");
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_open_memory(const void *data, size_t size,
                                                bsti_gguf **out_file)
{
    static const uint8_t empty[1];
    bsti_gguf *f;
    bst_status st;

    if (!out_file)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_gguf_open_memory: out_file is NULL");
    *out_file = NULL;
    if (!data && size)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_gguf_open_memory: data is NULL");
    if ((st = new_file(&f)) != BST_OK)
        return st;
    f->base = data ? data : empty;
    f->size = size;
    if ((st = parse_file(f)) != BST_OK) {
        bsti_gguf_close(f);
        return st;
    }
    *out_file = f;
    return BST_OK;
}

/* Reads the whole file into an allocation aligned to a page, so tensor data keeps the file's
 * alignment in memory as it does when mapped. */
static bst_status read_whole(int fd, const char *path, uint64_t size, bsti_gguf *f)
{
    void *buf = NULL;
    long page = sysconf(_SC_PAGESIZE);
    size_t align = page > 0 ? (size_t)page : 4096;
    int err = posix_memalign(&buf, align, size ? (size_t)size : 1);
    if (err != 0)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "%s: cannot allocate %llu bytes to read it",
                         path, (unsigned long long)size);
    f->owned = buf;
    uint64_t done = 0;
    while (done < size) {
        size_t chunk = size - done > (1u << 30) ? (1u << 30) : (size_t)(size - done);
        ssize_t n = read(fd, (uint8_t *)buf + done, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return bsti_fail(BST_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (n == 0)
            return bsti_fail(BST_ERR_IO, "%s: file shrank while being read (%llu of %llu bytes)",
                             path, (unsigned long long)done, (unsigned long long)size);
        done += (uint64_t)n;
    }
    f->base = buf;
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_open(const char *path, const bsti_gguf_options *options,
                                         bsti_gguf **out_file)
{
    static const uint8_t empty[1];
    bsti_gguf *f = NULL;
    struct stat sb;
    bst_status st;
    int fd;

    if (!out_file)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_gguf_open: out_file is NULL");
    *out_file = NULL;
    if (!path)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_gguf_open: path is NULL");
    /* O_NONBLOCK: a FIFO given as the model path must fail below, not hang here. It does not
     * change reads of a regular file. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return bsti_fail(BST_ERR_IO, "cannot open model file '%s': %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = bsti_fail(BST_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = bsti_fail(BST_ERR_IO, "'%s' is not a regular file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = bsti_fail(BST_ERR_OVERFLOW, "'%s' (%llu bytes) is too large to map on this host",
                       path, (unsigned long long)sb.st_size);
        goto fail;
    }
    if ((st = new_file(&f)) != BST_OK)
        goto fail;
    f->size = (uint64_t)sb.st_size;
    if (f->size == 0) {
        f->base = empty;
    } else if (options && options->no_mmap) {
        if ((st = read_whole(fd, path, f->size, f)) != BST_OK)
            goto fail;
    } else {
        void *map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            st = bsti_fail(BST_ERR_IO, "cannot map '%s' (%llu bytes): %s", path,
                           (unsigned long long)f->size, strerror(errno));
            goto fail;
        }
        f->map = map;
        f->map_size = (size_t)f->size;
        f->base = map;
    }
    close(fd);
    fd = -1;
    if ((st = parse_file(f)) != BST_OK) {
        st = bsti_fail_context(st, "%s", path);
        goto fail;
    }
    *out_file = f;
    return BST_OK;
fail:
    if (fd >= 0)
        close(fd);
    bsti_gguf_close(f);
    return st;
}
