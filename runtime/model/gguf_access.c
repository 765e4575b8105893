/*
 * runtime/model/gguf_access.c — reading an opened GGUF file: key and tensor lookup, typed getters
 * that turn a wrong type or an out-of-range value into a message naming the key, and array
 * element accessors. Everything here trusts what gguf.c validated and nothing else.
 */
#include "runtime/model/gguf_internal.h"

#include "graph/status.h"

#include <float.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

int bsti_gguf_str_cmp(bsti_gguf_str a, bsti_gguf_str b)
{
    uint64_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

uint32_t bsti_gguf_fixed_size(bsti_gguf_type type)
{
    switch (type) {
    case BSTI_GGUF_UINT8:
    case BSTI_GGUF_INT8:
    case BSTI_GGUF_BOOL:
        return 1;
    case BSTI_GGUF_UINT16:
    case BSTI_GGUF_INT16:
        return 2;
    case BSTI_GGUF_UINT32:
    case BSTI_GGUF_INT32:
    case BSTI_GGUF_FLOAT32:
        return 4;
    case BSTI_GGUF_UINT64:
    case BSTI_GGUF_INT64:
    case BSTI_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

uint64_t bsti_gguf_load(const uint8_t *p, uint32_t bytes)
{
    uint64_t v = 0;
    for (uint32_t i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

const char *bsti_gguf_type_name(bsti_gguf_type type)
{
    static const char *const names[BSTI_GGUF_TYPE_COUNT] = {
        "uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
        "bool",  "string", "array",  "uint64", "int64", "float64",
    };
    return (unsigned)type < BSTI_GGUF_TYPE_COUNT ? names[type] : "unknown";
}

uint32_t bsti_gguf_version(const bsti_gguf *file)
{
    return file->version;
}

uint64_t bsti_gguf_file_size(const bsti_gguf *file)
{
    return file->size;
}

uint32_t bsti_gguf_alignment(const bsti_gguf *file)
{
    return file->alignment;
}

uint64_t bsti_gguf_data_offset(const bsti_gguf *file)
{
    return file->data_offset;
}

uint64_t bsti_gguf_kv_count(const bsti_gguf *file)
{
    return file->n_kv;
}

const bsti_gguf_kv *bsti_gguf_kv_at(const bsti_gguf *file, uint64_t index)
{
    return index < file->n_kv ? &file->kvs[index] : NULL;
}

const bsti_gguf_kv *bsti_gguf_find(const bsti_gguf *file, const char *key)
{
    if (!key)
        return NULL;
    bsti_gguf_str want = {key, strlen(key)};
    uint64_t lo = 0, hi = file->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = bsti_gguf_str_cmp(file->kv_by_key[mid]->key, want);
        if (c == 0)
            return file->kv_by_key[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t bsti_gguf_tensor_count(const bsti_gguf *file)
{
    return file->n_tensors;
}

const bsti_gguf_tensor *bsti_gguf_tensor_at(const bsti_gguf *file, uint64_t index)
{
    return index < file->n_tensors ? &file->tensors[index] : NULL;
}

const bsti_gguf_tensor *bsti_gguf_tensor_find(const bsti_gguf *file, const char *name)
{
    if (!name)
        return NULL;
    bsti_gguf_str want = {name, strlen(name)};
    uint64_t lo = 0, hi = file->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = bsti_gguf_str_cmp(file->tensor_by_name[mid]->name, want);
        if (c == 0)
            return file->tensor_by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool is_unsigned(bsti_gguf_type t)
{
    return t == BSTI_GGUF_UINT8 || t == BSTI_GGUF_UINT16 || t == BSTI_GGUF_UINT32 ||
           t == BSTI_GGUF_UINT64;
}

static bool is_signed(bsti_gguf_type t)
{
    return t == BSTI_GGUF_INT8 || t == BSTI_GGUF_INT16 || t == BSTI_GGUF_INT32 ||
           t == BSTI_GGUF_INT64;
}

static bst_status lookup(const bsti_gguf *file, const char *key, const bsti_gguf_kv **out_kv)
{
    if (!file || !key)
        return bsti_fail(BST_ERR_INVALID_ARG, "GGUF lookup: file or key is NULL");
    *out_kv = bsti_gguf_find(file, key);
    if (!*out_kv)
        return bsti_fail(BST_ERR_NOT_FOUND, "key '%s' not found in the model file", key);
    return BST_OK;
}

static bst_status wrong_type(const char *key, const bsti_gguf_kv *kv, const char *expected)
{
    if (kv->type == BSTI_GGUF_ARRAY)
        return bsti_fail(BST_ERR_FORMAT, "key '%s' has type array of %s, expected %s", key,
                         bsti_gguf_type_name(kv->v.arr.elem_type), expected);
    return bsti_fail(BST_ERR_FORMAT, "key '%s' has type %s, expected %s", key,
                     bsti_gguf_type_name(kv->type), expected);
}

BST_MUST_CHECK bst_status bsti_gguf_get_u32(const bsti_gguf *file, const char *key,
                                            uint32_t *out_value)
{
    const bsti_gguf_kv *kv;
    bst_status st = lookup(file, key, &kv);
    if (st != BST_OK)
        return st;
    if (is_unsigned(kv->type)) {
        if (kv->v.u64 > UINT32_MAX)
            return bsti_fail(BST_ERR_FORMAT, "key '%s': value %llu out of range for uint32", key,
                             (unsigned long long)kv->v.u64);
        *out_value = (uint32_t)kv->v.u64;
        return BST_OK;
    }
    if (is_signed(kv->type)) {
        if (kv->v.i64 < 0 || kv->v.i64 > (int64_t)UINT32_MAX)
            return bsti_fail(BST_ERR_FORMAT, "key '%s': value %lld out of range for uint32", key,
                             (long long)kv->v.i64);
        *out_value = (uint32_t)kv->v.i64;
        return BST_OK;
    }
    return wrong_type(key, kv, "an integer");
}

BST_MUST_CHECK bst_status bsti_gguf_get_f32(const bsti_gguf *file, const char *key,
                                            float *out_value)
{
    const bsti_gguf_kv *kv;
    bst_status st = lookup(file, key, &kv);
    if (st != BST_OK)
        return st;
    if (kv->type != BSTI_GGUF_FLOAT32 && kv->type != BSTI_GGUF_FLOAT64)
        return wrong_type(key, kv, "a float");
    double v = kv->v.f64;
    if (isfinite(v) && fabs(v) > FLT_MAX)
        return bsti_fail(BST_ERR_FORMAT, "key '%s': value %g out of range for float32", key, v);
    *out_value = (float)v;
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_get_bool(const bsti_gguf *file, const char *key,
                                             bool *out_value)
{
    const bsti_gguf_kv *kv;
    bst_status st = lookup(file, key, &kv);
    if (st != BST_OK)
        return st;
    if (kv->type != BSTI_GGUF_BOOL)
        return wrong_type(key, kv, "bool");
    *out_value = kv->v.u64 != 0;
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_get_str(const bsti_gguf *file, const char *key,
                                            bsti_gguf_str *out_value)
{
    const bsti_gguf_kv *kv;
    bst_status st = lookup(file, key, &kv);
    if (st != BST_OK)
        return st;
    if (kv->type != BSTI_GGUF_STRING)
        return wrong_type(key, kv, "string");
    *out_value = kv->v.str;
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_get_array(const bsti_gguf *file, const char *key,
                                              bsti_gguf_type elem_type,
                                              bsti_gguf_array *out_value)
{
    const bsti_gguf_kv *kv;
    bst_status st = lookup(file, key, &kv);
    if (st != BST_OK)
        return st;
    if (kv->type != BSTI_GGUF_ARRAY || kv->v.arr.elem_type != elem_type) {
        char expected[32];
        snprintf(expected, sizeof expected, "array of %s", bsti_gguf_type_name(elem_type));
        return wrong_type(key, kv, expected);
    }
    *out_value = kv->v.arr;
    return BST_OK;
}

static bst_status check_element(const bsti_gguf_array *array, uint64_t index, const void *out,
                                const char *accessor)
{
    if (!array || !out)
        return bsti_fail(BST_ERR_INVALID_ARG, "%s: array or output is NULL", accessor);
    if (index >= array->count)
        return bsti_fail(BST_ERR_INVALID_ARG, "%s: index %llu out of range (array of %llu)",
                         accessor, (unsigned long long)index,
                         (unsigned long long)array->count);
    return BST_OK;
}

static bst_status element_type_error(const bsti_gguf_array *array, const char *accessor)
{
    return bsti_fail(BST_ERR_INVALID_ARG, "%s: array elements have type %s", accessor,
                     bsti_gguf_type_name(array->elem_type));
}

BST_MUST_CHECK bst_status bsti_gguf_array_str(const bsti_gguf_array *array, uint64_t index,
                                              bsti_gguf_str *out_value)
{
    bst_status st = check_element(array, index, out_value, "bsti_gguf_array_str");
    if (st != BST_OK)
        return st;
    if (array->elem_type != BSTI_GGUF_STRING)
        return element_type_error(array, "bsti_gguf_array_str");
    const uint64_t *offsets = array->impl;
    const uint8_t *p = (const uint8_t *)array->data + offsets[index];
    out_value->len = bsti_gguf_load(p, 8);
    out_value->ptr = (const char *)p + 8;
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_array_i64(const bsti_gguf_array *array, uint64_t index,
                                              int64_t *out_value)
{
    bst_status st = check_element(array, index, out_value, "bsti_gguf_array_i64");
    if (st != BST_OK)
        return st;
    bsti_gguf_type t = array->elem_type;
    if (!is_unsigned(t) && !is_signed(t) && t != BSTI_GGUF_BOOL)
        return element_type_error(array, "bsti_gguf_array_i64");
    uint32_t size = bsti_gguf_fixed_size(t);
    uint64_t raw = bsti_gguf_load((const uint8_t *)array->data + index * size, size);
    switch (t) {
    case BSTI_GGUF_INT8:
        *out_value = (int8_t)(uint8_t)raw;
        break;
    case BSTI_GGUF_INT16:
        *out_value = (int16_t)(uint16_t)raw;
        break;
    case BSTI_GGUF_INT32:
        *out_value = (int32_t)(uint32_t)raw;
        break;
    case BSTI_GGUF_INT64:
        *out_value = (int64_t)raw;
        break;
    default:
        if (raw > (uint64_t)INT64_MAX)
            return bsti_fail(BST_ERR_FORMAT, "array element %llu: value %llu beyond int64",
                             (unsigned long long)index, (unsigned long long)raw);
        *out_value = (int64_t)raw;
        break;
    }
    return BST_OK;
}

BST_MUST_CHECK bst_status bsti_gguf_array_f64(const bsti_gguf_array *array, uint64_t index,
                                              double *out_value)
{
    bst_status st = check_element(array, index, out_value, "bsti_gguf_array_f64");
    if (st != BST_OK)
        return st;
    const uint8_t *base = array->data;
    if (array->elem_type == BSTI_GGUF_FLOAT32) {
        uint32_t bits = (uint32_t)bsti_gguf_load(base + index * 4, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        *out_value = f;
        return BST_OK;
    }
    if (array->elem_type == BSTI_GGUF_FLOAT64) {
        uint64_t bits = bsti_gguf_load(base + index * 8, 8);
        memcpy(out_value, &bits, sizeof *out_value);
        return BST_OK;
    }
    return element_type_error(array, "bsti_gguf_array_f64");
}

BST_MUST_CHECK bst_status bsti_gguf_array_array(const bsti_gguf_array *array, uint64_t index,
                                                bsti_gguf_array *out_value)
{
    bst_status st = check_element(array, index, out_value, "bsti_gguf_array_array");
    if (st != BST_OK)
        return st;
    if (array->elem_type != BSTI_GGUF_ARRAY)
        return element_type_error(array, "bsti_gguf_array_array");
    const uint64_t *idx = array->impl;
    const uint8_t *p = (const uint8_t *)array->data + idx[index];
    const uint64_t *link = &idx[array->count + index];
    out_value->elem_type = (bsti_gguf_type)bsti_gguf_load(p, 4);
    out_value->count = bsti_gguf_load(p + 4, 8);
    out_value->data = p + 12;
    out_value->impl = *link ? link + *link : NULL;
    return BST_OK;
}
