/*
 * tests/test_gguf.c — the GGUF reader: the valid fixtures read back exactly what
 * tests/make_bad_gguf.py wrote (every value type, nested arrays, every tensor type); every file of
 * the malformed corpus fails with the status and message EXPECTED.txt gives it; every prefix of a
 * valid file and thousands of seeded mutations are rejected or read safely; the default model has
 * the facts DESIGN.md states.
 */
#include "runtime/model/gguf.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- helpers --- */

#define CHECK_OK(call)                                                                    \
    do {                                                                                  \
        bst_status st_ = (call);                                                          \
        if (st_ != BST_OK)                                                                \
            fprintf(stderr, "\n%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,         \
                    bst_status_name(st_), bst_last_error());                              \
        CU_ASSERT_EQUAL_FATAL(st_, BST_OK);                                               \
    } while (0)

static bool str_is(bsti_gguf_str s, const char *want, size_t want_len)
{
    return s.len == want_len && memcmp(s.ptr, want, want_len) == 0;
}
#define STR_IS(s, lit) str_is((s), (lit), sizeof(lit) - 1)

static bool message_has(const char *needle)
{
    const char *msg = bst_last_error();
    if (msg && strstr(msg, needle))
        return true;
    fprintf(stderr, "\nmessage \"%s\" lacks \"%s\"\n", msg ? msg : "(null)", needle);
    return false;
}

static const bsti_gguf_kv *kv_of(const bsti_gguf *f, const char *key, bsti_gguf_type type)
{
    const bsti_gguf_kv *kv = bsti_gguf_find(f, key);
    if (!kv || kv->type != type) {
        fprintf(stderr, "\nkey %s: %s\n", key, kv ? "wrong type" : "missing");
        return NULL;
    }
    return kv;
}

/* Tensor k's bytes in the fixtures: the formula make_bad_gguf.py writes. */
static uint8_t pattern(unsigned k, size_t j)
{
    return (uint8_t)((k * 31u + j * 7u + 1u) & 0xffu);
}

/* --- the valid fixture --- */

typedef struct expected_tensor {
    const char *name;
    bst_dtype dtype;
    uint32_t rank;
    int64_t shape[4]; /* outermost-first */
    uint64_t size;
    uint64_t offset; /* from the data section: make_bad_gguf.py lays data out in reverse order */
} expected_tensor;

static const expected_tensor tiny_tensors[] = {
    {"t.f32", BST_DTYPE_F32, 2, {2, 3}, 24, 416},
    {"t.f16", BST_DTYPE_F16, 1, {4}, 8, 384},
    {"t.bf16", BST_DTYPE_BF16, 2, {2, 2}, 8, 352},
    {"t.q4_0", BST_DTYPE_Q4_0, 2, {2, 32}, 36, 288},
    {"t.q4_1", BST_DTYPE_Q4_1, 1, {64}, 40, 224},
    {"t.q5_0", BST_DTYPE_Q5_0, 1, {32}, 22, 192},
    {"t.q5_1", BST_DTYPE_Q5_1, 1, {32}, 24, 160},
    {"t.q8_0", BST_DTYPE_Q8_0, 3, {2, 1, 32}, 68, 64},
    {"t.i8", BST_DTYPE_I8, 1, {5}, 5, 32},
    {"t.i32", BST_DTYPE_I32, 4, {3, 1, 1, 2}, 24, 0},
};
#define N_TINY_TENSORS (sizeof tiny_tensors / sizeof tiny_tensors[0])

static const char *const tiny_keys[] = {
    "general.architecture", "test.u8", "test.i8", "test.u16", "test.i16", "test.u32",
    "test.i32", "test.f32", "test.bool", "test.bool_false", "test.string", "test.u64",
    "test.i64", "test.f64", "test.string_nul", "test.string_empty", "test.utf8",
    "test.arr_u8", "test.arr_i8", "test.arr_u16", "test.arr_i16", "test.arr_u32",
    "test.arr_i32", "test.arr_f32", "test.arr_bool", "test.arr_str", "test.arr_u64",
    "test.arr_i64", "test.arr_f64", "test.arr_empty", "test.arr_empty_str", "test.nested",
    "test.nested_str", "test.nested3", "test.nested4", "test.last",
};
#define N_TINY_KEYS (sizeof tiny_keys / sizeof tiny_keys[0])

static void check_int_array(const bsti_gguf *f, const char *key, bsti_gguf_type type,
                            const int64_t *want, uint64_t n)
{
    bsti_gguf_array a;
    CHECK_OK(bsti_gguf_get_array(f, key, type, &a));
    CU_ASSERT_EQUAL(a.count, n);
    for (uint64_t i = 0; i < n && i < a.count; i++) {
        int64_t v = 0;
        CHECK_OK(bsti_gguf_array_i64(&a, i, &v));
        CU_ASSERT_EQUAL(v, want[i]);
    }
}

static void check_scalars(const bsti_gguf *f)
{
    const bsti_gguf_kv *kv;
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.u8", BSTI_GGUF_UINT8));
    CU_ASSERT_EQUAL(kv->v.u64, 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.i8", BSTI_GGUF_INT8));
    CU_ASSERT_EQUAL(kv->v.i64, -100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.u16", BSTI_GGUF_UINT16));
    CU_ASSERT_EQUAL(kv->v.u64, 60000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.i16", BSTI_GGUF_INT16));
    CU_ASSERT_EQUAL(kv->v.i64, -30000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.u32", BSTI_GGUF_UINT32));
    CU_ASSERT_EQUAL(kv->v.u64, 4000000000u);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.i32", BSTI_GGUF_INT32));
    CU_ASSERT_EQUAL(kv->v.i64, -2000000000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.f32", BSTI_GGUF_FLOAT32));
    CU_ASSERT_EQUAL(kv->v.f64, 0.15625);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.bool", BSTI_GGUF_BOOL));
    CU_ASSERT_EQUAL(kv->v.u64, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.u64", BSTI_GGUF_UINT64));
    CU_ASSERT_EQUAL(kv->v.u64, UINT64_MAX);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.i64", BSTI_GGUF_INT64));
    CU_ASSERT_EQUAL(kv->v.i64, INT64_MIN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.f64", BSTI_GGUF_FLOAT64));
    CU_ASSERT_EQUAL(kv->v.f64, -1.0e300);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.string", BSTI_GGUF_STRING));
    CU_ASSERT(STR_IS(kv->v.str, "hello, gguf"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.string_nul", BSTI_GGUF_STRING));
    CU_ASSERT(STR_IS(kv->v.str, "a\0b"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.string_empty", BSTI_GGUF_STRING));
    CU_ASSERT_EQUAL(kv->v.str.len, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(kv = kv_of(f, "test.utf8", BSTI_GGUF_STRING));
    CU_ASSERT(STR_IS(kv->v.str, "h\xc3\xa9llo \xe2\x9c\x93"));
}

static void check_getters(const bsti_gguf *f)
{
    uint32_t u = 0;
    float x = 0;
    bool b = false;
    bsti_gguf_str s;
    bsti_gguf_array a;

    CHECK_OK(bsti_gguf_get_u32(f, "test.u8", &u));
    CU_ASSERT_EQUAL(u, 200);
    CHECK_OK(bsti_gguf_get_u32(f, "test.u32", &u));
    CU_ASSERT_EQUAL(u, 4000000000u);
    CHECK_OK(bsti_gguf_get_u32(f, "test.last", &u));
    CU_ASSERT_EQUAL(u, 42);
    CU_ASSERT_EQUAL(bsti_gguf_get_u32(f, "test.i8", &u), BST_ERR_FORMAT); /* -100 */
    CU_ASSERT(message_has("key 'test.i8': value -100 out of range for uint32"));
    CU_ASSERT_EQUAL(bsti_gguf_get_u32(f, "test.u64", &u), BST_ERR_FORMAT);
    CU_ASSERT(message_has("out of range for uint32"));
    CU_ASSERT_EQUAL(bsti_gguf_get_u32(f, "test.string", &u), BST_ERR_FORMAT);
    CU_ASSERT(message_has("key 'test.string' has type string, expected an integer"));
    CU_ASSERT_EQUAL(bsti_gguf_get_u32(f, "test.absent", &u), BST_ERR_NOT_FOUND);
    CU_ASSERT(message_has("test.absent"));

    CHECK_OK(bsti_gguf_get_f32(f, "test.f32", &x));
    CU_ASSERT_EQUAL(x, 0.15625f);
    CU_ASSERT_EQUAL(bsti_gguf_get_f32(f, "test.f64", &x), BST_ERR_FORMAT); /* -1e300 */
    CU_ASSERT(message_has("out of range for float32"));
    CU_ASSERT_EQUAL(bsti_gguf_get_f32(f, "test.u8", &x), BST_ERR_FORMAT);

    CHECK_OK(bsti_gguf_get_bool(f, "test.bool", &b));
    CU_ASSERT_TRUE(b);
    CHECK_OK(bsti_gguf_get_bool(f, "test.bool_false", &b));
    CU_ASSERT_FALSE(b);
    CU_ASSERT_EQUAL(bsti_gguf_get_bool(f, "test.u8", &b), BST_ERR_FORMAT);

    CHECK_OK(bsti_gguf_get_str(f, "general.architecture", &s));
    CU_ASSERT(STR_IS(s, "tiny"));
    CU_ASSERT_EQUAL(bsti_gguf_get_str(f, "test.arr_str", &s), BST_ERR_FORMAT);
    CU_ASSERT(message_has("key 'test.arr_str' has type array of string, expected string"));

    CU_ASSERT_EQUAL(bsti_gguf_get_array(f, "test.arr_u8", BSTI_GGUF_INT8, &a), BST_ERR_FORMAT);
    CU_ASSERT(message_has("expected array of int8"));
    CU_ASSERT_EQUAL(bsti_gguf_get_array(f, "test.u8", BSTI_GGUF_UINT8, &a), BST_ERR_FORMAT);
    CU_ASSERT_EQUAL(bsti_gguf_get_array(f, "test.nope", BSTI_GGUF_UINT8, &a), BST_ERR_NOT_FOUND);
}

static void check_arrays(const bsti_gguf *f)
{
    static const int64_t u8[] = {1, 2, 255}, i8[] = {-128, 0, 127}, u16[] = {0, 65535},
                         i16[] = {-32768, 32767}, u32[] = {7, 4294967295}, i32[] = {-1, 0, 1},
                         bools[] = {1, 0, 1}, i64[] = {INT64_MIN, INT64_MAX};
    check_int_array(f, "test.arr_u8", BSTI_GGUF_UINT8, u8, 3);
    check_int_array(f, "test.arr_i8", BSTI_GGUF_INT8, i8, 3);
    check_int_array(f, "test.arr_u16", BSTI_GGUF_UINT16, u16, 2);
    check_int_array(f, "test.arr_i16", BSTI_GGUF_INT16, i16, 2);
    check_int_array(f, "test.arr_u32", BSTI_GGUF_UINT32, u32, 2);
    check_int_array(f, "test.arr_i32", BSTI_GGUF_INT32, i32, 3);
    check_int_array(f, "test.arr_bool", BSTI_GGUF_BOOL, bools, 3);
    check_int_array(f, "test.arr_i64", BSTI_GGUF_INT64, i64, 2);
    check_int_array(f, "test.arr_empty", BSTI_GGUF_UINT32, NULL, 0);

    bsti_gguf_array a, sub, sub2;
    int64_t v = 0;
    double d = 0;
    bsti_gguf_str s;

    /* uint64 beyond int64 is refused, not wrapped. */
    CHECK_OK(bsti_gguf_get_array(f, "test.arr_u64", BSTI_GGUF_UINT64, &a));
    CU_ASSERT_EQUAL(a.count, 2);
    CHECK_OK(bsti_gguf_array_i64(&a, 0, &v));
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(bsti_gguf_array_i64(&a, 1, &v), BST_ERR_FORMAT);
    CU_ASSERT_EQUAL(bsti_gguf_array_i64(&a, 2, &v), BST_ERR_INVALID_ARG);
    CU_ASSERT(message_has("index 2 out of range"));
    CU_ASSERT_EQUAL(bsti_gguf_array_f64(&a, 0, &d), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_gguf_array_str(&a, 0, &s), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_gguf_array_array(&a, 0, &sub), BST_ERR_INVALID_ARG);

    CHECK_OK(bsti_gguf_get_array(f, "test.arr_f32", BSTI_GGUF_FLOAT32, &a));
    CU_ASSERT_EQUAL_FATAL(a.count, 2);
    CHECK_OK(bsti_gguf_array_f64(&a, 0, &d));
    CU_ASSERT_EQUAL(d, 0.25);
    CHECK_OK(bsti_gguf_array_f64(&a, 1, &d));
    CU_ASSERT_EQUAL(d, -2.0);
    CU_ASSERT_EQUAL(bsti_gguf_array_i64(&a, 0, &v), BST_ERR_INVALID_ARG);
    CHECK_OK(bsti_gguf_get_array(f, "test.arr_f64", BSTI_GGUF_FLOAT64, &a));
    CU_ASSERT_EQUAL_FATAL(a.count, 2);
    CHECK_OK(bsti_gguf_array_f64(&a, 0, &d));
    CU_ASSERT_EQUAL(d, 1.5);
    CHECK_OK(bsti_gguf_array_f64(&a, 1, &d));
    CU_ASSERT(d == 0.0 && signbit(d));

    CHECK_OK(bsti_gguf_get_array(f, "test.arr_str", BSTI_GGUF_STRING, &a));
    CU_ASSERT_EQUAL_FATAL(a.count, 3);
    CHECK_OK(bsti_gguf_array_str(&a, 0, &s));
    CU_ASSERT(STR_IS(s, "a"));
    CHECK_OK(bsti_gguf_array_str(&a, 1, &s));
    CU_ASSERT_EQUAL(s.len, 0);
    CHECK_OK(bsti_gguf_array_str(&a, 2, &s));
    CU_ASSERT(STR_IS(s, "h\xc3\xa9llo"));
    CU_ASSERT_EQUAL(bsti_gguf_array_str(&a, 3, &s), BST_ERR_INVALID_ARG);
    CHECK_OK(bsti_gguf_get_array(f, "test.arr_empty_str", BSTI_GGUF_STRING, &a));
    CU_ASSERT_EQUAL(a.count, 0);
    CU_ASSERT_EQUAL(bsti_gguf_array_str(&a, 0, &s), BST_ERR_INVALID_ARG);

    /* [[1, 2], [3]] of int32 */
    CHECK_OK(bsti_gguf_get_array(f, "test.nested", BSTI_GGUF_ARRAY, &a));
    CU_ASSERT_EQUAL_FATAL(a.count, 2);
    CHECK_OK(bsti_gguf_array_array(&a, 0, &sub));
    CU_ASSERT_EQUAL(sub.elem_type, BSTI_GGUF_INT32);
    CU_ASSERT_EQUAL_FATAL(sub.count, 2);
    CHECK_OK(bsti_gguf_array_i64(&sub, 1, &v));
    CU_ASSERT_EQUAL(v, 2);
    CHECK_OK(bsti_gguf_array_array(&a, 1, &sub));
    CU_ASSERT_EQUAL_FATAL(sub.count, 1);
    CHECK_OK(bsti_gguf_array_i64(&sub, 0, &v));
    CU_ASSERT_EQUAL(v, 3);
    CU_ASSERT_EQUAL(bsti_gguf_array_array(&a, 2, &sub), BST_ERR_INVALID_ARG);

    /* [["x", "yz"], []] */
    CHECK_OK(bsti_gguf_get_array(f, "test.nested_str", BSTI_GGUF_ARRAY, &a));
    CU_ASSERT_EQUAL_FATAL(a.count, 2);
    CHECK_OK(bsti_gguf_array_array(&a, 0, &sub));
    CU_ASSERT_EQUAL(sub.elem_type, BSTI_GGUF_STRING);
    CU_ASSERT_EQUAL_FATAL(sub.count, 2);
    CHECK_OK(bsti_gguf_array_str(&sub, 0, &s));
    CU_ASSERT(STR_IS(s, "x"));
    CHECK_OK(bsti_gguf_array_str(&sub, 1, &s));
    CU_ASSERT(STR_IS(s, "yz"));
    CHECK_OK(bsti_gguf_array_array(&a, 1, &sub));
    CU_ASSERT_EQUAL(sub.elem_type, BSTI_GGUF_STRING);
    CU_ASSERT_EQUAL(sub.count, 0);

    /* [[[7, 8]], [[9], [10, 11]]] of uint16 */
    static const int64_t want3[] = {7, 8, 9, 10, 11};
    size_t k = 0;
    CHECK_OK(bsti_gguf_get_array(f, "test.nested3", BSTI_GGUF_ARRAY, &a));
    CU_ASSERT_EQUAL_FATAL(a.count, 2);
    for (uint64_t i = 0; i < a.count; i++) {
        CHECK_OK(bsti_gguf_array_array(&a, i, &sub));
        CU_ASSERT_EQUAL_FATAL(sub.elem_type, BSTI_GGUF_ARRAY);
        CU_ASSERT_EQUAL(sub.count, i + 1);
        for (uint64_t j = 0; j < sub.count; j++) {
            CHECK_OK(bsti_gguf_array_array(&sub, j, &sub2));
            CU_ASSERT_EQUAL_FATAL(sub2.elem_type, BSTI_GGUF_UINT16);
            for (uint64_t m = 0; m < sub2.count; m++) {
                CHECK_OK(bsti_gguf_array_i64(&sub2, m, &v));
                CU_ASSERT_FATAL(k < 5);
                CU_ASSERT_EQUAL(v, want3[k]);
                k++;
            }
        }
    }
    CU_ASSERT_EQUAL(k, 5);

    /* [[[["deep"]]]]: four levels, the most the reader accepts. */
    CHECK_OK(bsti_gguf_get_array(f, "test.nested4", BSTI_GGUF_ARRAY, &a));
    for (int level = 0; level < 3; level++) {
        CU_ASSERT_EQUAL_FATAL(a.count, 1);
        CHECK_OK(bsti_gguf_array_array(&a, 0, &sub));
        a = sub;
    }
    CU_ASSERT_EQUAL_FATAL(a.elem_type, BSTI_GGUF_STRING);
    CU_ASSERT_EQUAL_FATAL(a.count, 1);
    CHECK_OK(bsti_gguf_array_str(&a, 0, &s));
    CU_ASSERT(STR_IS(s, "deep"));
}

static void check_tensors(const bsti_gguf *f, uint32_t alignment)
{
    CU_ASSERT_EQUAL_FATAL(bsti_gguf_tensor_count(f), N_TINY_TENSORS);
    CU_ASSERT_EQUAL(bsti_gguf_alignment(f), alignment);
    uint64_t data_offset = bsti_gguf_data_offset(f);
    CU_ASSERT_EQUAL(data_offset % alignment, 0);
    /* The data section's end is the end of the file (the generator adds no tail padding). */
    CU_ASSERT_EQUAL(data_offset + 416 + 24, bsti_gguf_file_size(f));
    const uint8_t *section = NULL;
    for (unsigned i = 0; i < N_TINY_TENSORS; i++) {
        const expected_tensor *e = &tiny_tensors[i];
        const bsti_gguf_tensor *t = bsti_gguf_tensor_at(f, i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT(str_is(t->name, e->name, strlen(e->name)));
        CU_ASSERT_PTR_EQUAL(bsti_gguf_tensor_find(f, e->name), t);
        CU_ASSERT_EQUAL(t->dtype, e->dtype);
        CU_ASSERT_EQUAL_FATAL(t->rank, e->rank);
        for (uint32_t d = 0; d < e->rank; d++)
            CU_ASSERT_EQUAL(t->shape[d], e->shape[d]);
        CU_ASSERT_EQUAL_FATAL(t->size, e->size);
        const uint8_t *data = t->data;
        if (!section)
            section = data - e->offset;
        CU_ASSERT_PTR_EQUAL(data, section + e->offset);
        if (e->dtype == BST_DTYPE_F32) {
            for (unsigned j = 0; j < 6; j++) {
                float v;
                memcpy(&v, data + 4 * j, 4);
                CU_ASSERT_EQUAL(v, 0.5f * (float)j);
            }
        } else {
            size_t bad = 0;
            for (size_t j = 0; j < t->size; j++)
                bad += data[j] != pattern(i, j);
            CU_ASSERT_EQUAL(bad, 0);
        }
    }
    CU_ASSERT_PTR_NULL(bsti_gguf_tensor_at(f, N_TINY_TENSORS));
    CU_ASSERT_PTR_NULL(bsti_gguf_tensor_find(f, "t.absent"));
    CU_ASSERT_PTR_NULL(bsti_gguf_tensor_find(f, "t.f3"));
    CU_ASSERT_PTR_NULL(bsti_gguf_tensor_find(f, "t.f32x"));
}

static void check_tiny(const bsti_gguf *f)
{
    CU_ASSERT_EQUAL(bsti_gguf_version(f), 3);
    CU_ASSERT_EQUAL_FATAL(bsti_gguf_kv_count(f), N_TINY_KEYS);
    for (unsigned i = 0; i < N_TINY_KEYS; i++) {
        const bsti_gguf_kv *kv = bsti_gguf_kv_at(f, i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(kv);
        CU_ASSERT(str_is(kv->key, tiny_keys[i], strlen(tiny_keys[i])));
        CU_ASSERT_PTR_EQUAL(bsti_gguf_find(f, tiny_keys[i]), kv);
    }
    CU_ASSERT_PTR_NULL(bsti_gguf_kv_at(f, N_TINY_KEYS));
    CU_ASSERT_PTR_NULL(bsti_gguf_find(f, "test"));
    CU_ASSERT_PTR_NULL(bsti_gguf_find(f, "test.u"));
    CU_ASSERT_PTR_NULL(bsti_gguf_find(f, "zzz"));
    check_scalars(f);
    check_getters(f);
    check_arrays(f);
    check_tensors(f, 32);
}

static void test_tiny_valid_mmap(void)
{
    bsti_gguf *f = NULL;
    CHECK_OK(bsti_gguf_open(bst_test_fixture("gguf/tiny_valid.gguf"), NULL, &f));
    check_tiny(f);
    bsti_gguf_close(f);
}

static void test_tiny_valid_no_mmap(void)
{
    bsti_gguf_options opt = {.no_mmap = true};
    bsti_gguf *f = NULL;
    CHECK_OK(bsti_gguf_open(bst_test_fixture("gguf/tiny_valid.gguf"), &opt, &f));
    check_tiny(f);
    bsti_gguf_close(f);
}

static void test_tiny_valid_memory(void)
{
    size_t size = 0;
    char *buf = bst_test_read_file(bst_test_fixture("gguf/tiny_valid.gguf"), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    /* Tensor data pointers must point into the caller's buffer. */
    bsti_gguf *f = NULL;
    CHECK_OK(bsti_gguf_open_memory(buf, size, &f));
    check_tiny(f);
    const bsti_gguf_tensor *t = bsti_gguf_tensor_find(f, "t.i32");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_PTR_EQUAL(t->data, buf + bsti_gguf_data_offset(f));
    bsti_gguf_close(f);
    free(buf);
}

static void test_tiny_valid_v2(void)
{
    bsti_gguf *f = NULL;
    CHECK_OK(bsti_gguf_open(bst_test_fixture("gguf/tiny_valid_v2.gguf"), NULL, &f));
    CU_ASSERT_EQUAL(bsti_gguf_version(f), 2);
    CU_ASSERT_EQUAL(bsti_gguf_alignment(f), 64);
    CU_ASSERT_EQUAL(bsti_gguf_data_offset(f) % 64, 0);
    CU_ASSERT_EQUAL(bsti_gguf_kv_count(f), 2);
    uint32_t align = 0;
    CHECK_OK(bsti_gguf_get_u32(f, "general.alignment", &align));
    CU_ASSERT_EQUAL(align, 64);
    CU_ASSERT_EQUAL_FATAL(bsti_gguf_tensor_count(f), 2);
    const bsti_gguf_tensor *a = bsti_gguf_tensor_find(f, "a");
    const bsti_gguf_tensor *b = bsti_gguf_tensor_find(f, "b");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(a->dtype, BST_DTYPE_F32);
    CU_ASSERT_EQUAL(a->size, 32);
    CU_ASSERT_EQUAL(b->dtype, BST_DTYPE_Q8_0);
    CU_ASSERT_EQUAL(b->size, 34);
    CU_ASSERT_EQUAL((const uint8_t *)b->data - (const uint8_t *)a->data, 64);
    for (size_t j = 0; j < 34; j++)
        CU_ASSERT_EQUAL(((const uint8_t *)b->data)[j], pattern(1, j));
    CU_ASSERT_EQUAL(bsti_gguf_data_offset(f) + 64 + 34, bsti_gguf_file_size(f));
    bsti_gguf_close(f);
}

/* --- the malformed corpus --- */

static bst_status status_from_name(const char *name)
{
    for (int s = 0; s < BST_STATUS_COUNT; s++)
        if (strcmp(bst_status_name((bst_status)s), name) == 0)
            return (bst_status)s;
    return BST_STATUS_COUNT;
}

typedef struct corpus_entry {
    char file[128];
    bst_status status;
    char substring[256];
    bool seen;
} corpus_entry;

static size_t load_expected(corpus_entry *out, size_t cap)
{
    char *text = bst_test_read_file(bst_test_fixture("gguf/bad/EXPECTED.txt"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char file[128], status[64];
        int used = 0;
        if (sscanf(line, "%127s %63s %n", file, status, &used) != 2 || used == 0) {
            fprintf(stderr, "\nEXPECTED.txt: bad line '%s'\n", line);
            CU_FAIL("malformed EXPECTED.txt line");
            continue;
        }
        CU_ASSERT_FATAL(n < cap);
        corpus_entry *e = &out[n++];
        snprintf(e->file, sizeof e->file, "%s", file);
        e->status = status_from_name(status);
        CU_ASSERT(e->status != BST_STATUS_COUNT && e->status != BST_OK);
        snprintf(e->substring, sizeof e->substring, "%s", line + used);
        CU_ASSERT(strlen(e->substring) > 0);
        e->seen = false;
    }
    free(text);
    return n;
}

static bool check_rejected(const char *how, const char *file, bst_status got,
                           const corpus_entry *e)
{
    const char *msg = bst_last_error();
    if (got == e->status && msg && strstr(msg, e->substring))
        return true;
    fprintf(stderr, "\n%s %s: got %s \"%s\", expected %s \"%s\"\n", how, file,
            bst_status_name(got), msg ? msg : "", bst_status_name(e->status), e->substring);
    return false;
}

static void test_corpus(void)
{
    static corpus_entry entries[256];
    size_t n = load_expected(entries, 256);
    CU_ASSERT(n >= 30);

    char dir_path[4096];
    snprintf(dir_path, sizeof dir_path, "%s", bst_test_fixture("gguf/bad"));
    DIR *dir = opendir(dir_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    size_t files = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        const char *name = de->d_name;
        size_t len = strlen(name);
        if (len < 5 || strcmp(name + len - 5, ".gguf") != 0)
            continue;
        files++;
        corpus_entry *e = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(entries[i].file, name) == 0)
                e = &entries[i];
        if (!e) {
            fprintf(stderr, "\n%s has no entry in EXPECTED.txt\n", name);
            CU_FAIL("corpus file without an expectation");
            continue;
        }
        e->seen = true;
        char path[4200];
        const int path_len = snprintf(path, sizeof path, "%s/%s", dir_path, name);
        if (path_len < 0 || (size_t)path_len >= sizeof path) {
            CU_FAIL("corpus path too long");
            continue;
        }

        bsti_gguf *f = NULL;
        bst_status st = bsti_gguf_open(path, NULL, &f);
        CU_ASSERT(check_rejected("open", name, st, e));
        CU_ASSERT_PTR_NULL(f);
        if (st != BST_OK)
            CU_ASSERT(message_has(name)); /* open's message names the file */
        bsti_gguf_close(f);

        bsti_gguf_options opt = {.no_mmap = true};
        f = NULL;
        st = bsti_gguf_open(path, &opt, &f);
        CU_ASSERT(check_rejected("open(no_mmap)", name, st, e));
        bsti_gguf_close(f);

        size_t size = 0;
        char *buf = bst_test_read_file(path, &size);
        CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
        /* An exact-size copy, so a sanitizer build catches any read past the end. */
        char *exact = malloc(size ? size : 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(exact);
        memcpy(exact, buf, size);
        f = NULL;
        st = bsti_gguf_open_memory(exact, size, &f);
        CU_ASSERT(check_rejected("open_memory", name, st, e));
        bsti_gguf_close(f);
        free(exact);
        free(buf);
    }
    closedir(dir);
    CU_ASSERT(files >= 30);
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].seen) {
            fprintf(stderr, "\nEXPECTED.txt names %s, which is not in bad/\n", entries[i].file);
            CU_FAIL("expectation without a corpus file");
        }
    }
}

/* --- robustness: prefixes and mutations of the valid file --- */

/* Reads everything an opened file exposes, checking that it lies inside the input. */
typedef struct walk {
    const uint8_t *lo, *hi;
    uint64_t bytes; /* sum of bytes touched, so nothing is optimized away */
    bool ok;
} walk;

static void walk_range(walk *w, const void *p, uint64_t len)
{
    const uint8_t *b = p;
    if (len == 0)
        return;
    if (b < w->lo || b > w->hi || len > (uint64_t)(w->hi - b)) {
        w->ok = false;
        return;
    }
    w->bytes += b[0] + b[len - 1];
}

static void walk_array(walk *w, const bsti_gguf_array *a, int depth)
{
    if (depth > 4) {
        w->ok = false;
        return;
    }
    for (uint64_t i = 0; i < a->count && w->ok; i++) {
        bsti_gguf_str s;
        bsti_gguf_array sub;
        int64_t v;
        double d;
        switch (a->elem_type) {
        case BSTI_GGUF_STRING:
            w->ok = bsti_gguf_array_str(a, i, &s) == BST_OK;
            if (w->ok)
                walk_range(w, s.ptr, s.len);
            break;
        case BSTI_GGUF_ARRAY:
            w->ok = bsti_gguf_array_array(a, i, &sub) == BST_OK;
            if (w->ok)
                walk_array(w, &sub, depth + 1);
            break;
        case BSTI_GGUF_FLOAT32:
        case BSTI_GGUF_FLOAT64:
            w->ok = bsti_gguf_array_f64(a, i, &d) == BST_OK;
            break;
        case BSTI_GGUF_UINT64:
            /* Values beyond int64 are refused by design. */
            w->ok = bsti_gguf_array_i64(a, i, &v) != BST_ERR_INVALID_ARG;
            break;
        default:
            w->ok = bsti_gguf_array_i64(a, i, &v) == BST_OK;
            break;
        }
    }
}

static bool walk_file(const bsti_gguf *f, const void *data, size_t size)
{
    walk w = {.lo = data, .hi = (const uint8_t *)data + size, .ok = true};
    for (uint64_t i = 0; i < bsti_gguf_kv_count(f) && w.ok; i++) {
        const bsti_gguf_kv *kv = bsti_gguf_kv_at(f, i);
        walk_range(&w, kv->key.ptr, kv->key.len);
        if (kv->key.len == 0)
            w.ok = false;
        if (kv->type == BSTI_GGUF_STRING)
            walk_range(&w, kv->v.str.ptr, kv->v.str.len);
        else if (kv->type == BSTI_GGUF_ARRAY)
            walk_array(&w, &kv->v.arr, 1);
        else if (kv->type == BSTI_GGUF_BOOL && kv->v.u64 > 1)
            w.ok = false;
    }
    uint64_t data_offset = bsti_gguf_data_offset(f);
    uint32_t alignment = bsti_gguf_alignment(f);
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(f) && w.ok; i++) {
        const bsti_gguf_tensor *t = bsti_gguf_tensor_at(f, i);
        walk_range(&w, t->data, t->size);
        uint64_t off = (uint64_t)((const uint8_t *)t->data - w.lo);
        if (t->size == 0 || t->rank < 1 || t->rank > 4 || off < data_offset ||
            (off - data_offset) % alignment != 0)
            w.ok = false;
        for (uint32_t d = 0; d < t->rank; d++)
            if (t->shape[d] < 1)
                w.ok = false;
    }
    return w.ok;
}

static void test_every_prefix_rejected(void)
{
    size_t size = 0;
    char *buf = bst_test_read_file(bst_test_fixture("gguf/tiny_valid.gguf"), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_FATAL(size > 1000);
    size_t wrong = 0;
    for (size_t len = 0; len < size; len++) {
        char *copy = malloc(len ? len : 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
        memcpy(copy, buf, len);
        bsti_gguf *f = NULL;
        bst_status st = bsti_gguf_open_memory(copy, len, &f);
        if (st != BST_ERR_FORMAT || f != NULL || !bst_last_error()[0]) {
            if (wrong++ < 5)
                fprintf(stderr, "\nprefix %zu: %s %s\n", len, bst_status_name(st),
                        bst_last_error());
        }
        bsti_gguf_close(f);
        free(copy);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    free(buf);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: deterministic across platforms, so a failure reproduces. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static void test_mutations_never_crash(void)
{
    static const char *const files[] = {"gguf/tiny_valid.gguf", "gguf/tiny_valid_v2.gguf"};
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    unsigned accepted = 0, rejected = 0, bad = 0;
    for (unsigned fi = 0; fi < 2; fi++) {
        size_t size = 0;
        char *orig = bst_test_read_file(bst_test_fixture(files[fi]), &size);
        CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
        for (unsigned iter = 0; iter < 3000; iter++) {
            size_t len = size;
            if (rng_next(&seed) % 8 == 0)
                len = (size_t)(rng_next(&seed) % size);
            uint8_t *m = malloc(len ? len : 1);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            memcpy(m, orig, len);
            unsigned flips = 1 + (unsigned)(rng_next(&seed) % 6);
            for (unsigned k = 0; k < flips && len; k++) {
                size_t at = (size_t)(rng_next(&seed) % len);
                uint64_t r = rng_next(&seed);
                switch (r % 4) {
                case 0: /* one random byte */
                    m[at] = (uint8_t)(r >> 8);
                    break;
                case 1: /* one flipped bit */
                    m[at] ^= (uint8_t)(1u << ((r >> 8) % 8));
                    break;
                case 2: /* an extreme byte */
                    m[at] = (r >> 8) & 1 ? 0xff : 0x00;
                    break;
                default: /* a small count/length/offset tweak */
                    m[at] = (uint8_t)(m[at] + (int)((r >> 8) % 5) - 2);
                    break;
                }
            }
            bsti_gguf *f = NULL;
            bst_status st = bsti_gguf_open_memory(m, len, &f);
            if (st == BST_OK) {
                accepted++;
                if (!walk_file(f, m, len) && bad++ < 5)
                    fprintf(stderr, "\n%s iteration %u: accepted file breaks invariants\n",
                            files[fi], iter);
            } else {
                rejected++;
                if ((st != BST_ERR_FORMAT && st != BST_ERR_UNSUPPORTED &&
                     st != BST_ERR_OVERFLOW) ||
                    f != NULL || !bst_last_error()[0]) {
                    if (bad++ < 5)
                        fprintf(stderr, "\n%s iteration %u: %s %s\n", files[fi], iter,
                                bst_status_name(st), bst_last_error());
                }
            }
            bsti_gguf_close(f);
            free(m);
        }
        free(orig);
    }
    fprintf(stderr, "(%u mutants accepted, %u rejected) ", accepted, rejected);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(accepted > 0 && rejected > 0);
}

static void test_io_errors(void)
{
    bsti_gguf *f = (bsti_gguf *)&f; /* must be reset to NULL on failure */
    CU_ASSERT_EQUAL(bsti_gguf_open("/nonexistent/bastion/model.gguf", NULL, &f), BST_ERR_IO);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT(message_has("/nonexistent/bastion/model.gguf"));
    CU_ASSERT(message_has("No such file or directory"));
    CU_ASSERT_EQUAL(bsti_gguf_open(bst_test_fixture("gguf"), NULL, &f), BST_ERR_IO);
    CU_ASSERT(message_has("not a regular file"));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/bastion-test-gguf-fifo.%ld", (long)getpid());
    unlink(fifo);
    if (mkfifo(fifo, 0600) == 0) {
        CU_ASSERT_EQUAL(bsti_gguf_open(fifo, NULL, &f), BST_ERR_IO);
        CU_ASSERT(message_has("not a regular file"));
        unlink(fifo);
    }
    CU_ASSERT_EQUAL(bsti_gguf_open(NULL, NULL, &f), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_gguf_open(bst_test_fixture("gguf/tiny_valid.gguf"), NULL, NULL),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_gguf_open_memory(NULL, 10, &f), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_gguf_open_memory(NULL, 0, &f), BST_ERR_FORMAT);
    CU_ASSERT(message_has("truncated in magic"));
    bsti_gguf_close(NULL);
}

/* --- the default model (DESIGN.md "Main job") --- */

static void expect_u32(const bsti_gguf *f, const char *key, uint32_t want)
{
    uint32_t v = 0;
    bst_status st = bsti_gguf_get_u32(f, key, &v);
    if (st != BST_OK || v != want)
        fprintf(stderr, "\n%s: %s %u (want %u) %s\n", key, bst_status_name(st), v, want,
                st ? bst_last_error() : "");
    CU_ASSERT(st == BST_OK && v == want);
}

static void expect_str(const bsti_gguf *f, const char *key, const char *want)
{
    bsti_gguf_str s = {NULL, 0};
    bst_status st = bsti_gguf_get_str(f, key, &s);
    CU_ASSERT(st == BST_OK && str_is(s, want, strlen(want)));
}

static void expect_tensor(const bsti_gguf *f, const char *name, bst_dtype dtype, int64_t d0,
                          int64_t d1)
{
    const bsti_gguf_tensor *t = bsti_gguf_tensor_find(f, name);
    if (!t) {
        fprintf(stderr, "\ntensor %s missing\n", name);
        CU_FAIL("tensor missing");
        return;
    }
    CU_ASSERT_EQUAL(t->dtype, dtype);
    CU_ASSERT_EQUAL(t->rank, d1 ? 2u : 1u);
    CU_ASSERT_EQUAL(t->shape[0], d0);
    if (d1)
        CU_ASSERT_EQUAL(t->shape[1], d1);
}

static void check_model(const bsti_gguf *f)
{
    expect_str(f, "general.architecture", "llama");
    expect_u32(f, "llama.block_count", 30);
    expect_u32(f, "llama.embedding_length", 576);
    expect_u32(f, "llama.attention.head_count", 9);
    expect_u32(f, "llama.attention.head_count_kv", 3);
    expect_u32(f, "llama.feed_forward_length", 1536);
    expect_u32(f, "llama.vocab_size", 49152);
    expect_u32(f, "llama.rope.dimension_count", 64);
    float theta = 0, eps = 0;
    CHECK_OK(bsti_gguf_get_f32(f, "llama.rope.freq_base", &theta));
    CU_ASSERT_EQUAL(theta, 100000.0f);
    CHECK_OK(bsti_gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps));
    CU_ASSERT(fabsf(eps - 1e-5f) < 1e-9f);
    expect_str(f, "tokenizer.ggml.model", "gpt2");
    expect_str(f, "tokenizer.ggml.pre", "smollm");

    bsti_gguf_array tokens;
    bsti_gguf_str s;
    CHECK_OK(bsti_gguf_get_array(f, "tokenizer.ggml.tokens", BSTI_GGUF_STRING, &tokens));
    CU_ASSERT_EQUAL(tokens.count, 49152);
    CHECK_OK(bsti_gguf_array_str(&tokens, 0, &s));
    CU_ASSERT(STR_IS(s, "<|endoftext|>"));
    CHECK_OK(bsti_gguf_array_str(&tokens, 2, &s));
    CU_ASSERT(STR_IS(s, "<|im_end|>"));
    CHECK_OK(bsti_gguf_array_str(&tokens, tokens.count - 1, &s));
    CU_ASSERT(s.len > 0);

    /* 30 blocks of 9 tensors, token_embd (tied: no output.weight), output_norm. */
    CU_ASSERT_EQUAL(bsti_gguf_tensor_count(f), 30 * 9 + 2);
    CU_ASSERT_PTR_NULL(bsti_gguf_tensor_find(f, "output.weight"));
    expect_tensor(f, "token_embd.weight", BST_DTYPE_Q8_0, 49152, 576);
    expect_tensor(f, "output_norm.weight", BST_DTYPE_F32, 576, 0);
    char name[64];
    for (int l = 0; l < 30; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 576, 576);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 192, 576);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 192, 576);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 576, 576);
        snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 1536, 576);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 1536, 576);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        expect_tensor(f, name, BST_DTYPE_Q4_1, 576, 1536);
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        expect_tensor(f, name, BST_DTYPE_F32, 576, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        expect_tensor(f, name, BST_DTYPE_F32, 576, 0);
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(f); i++) {
        const bsti_gguf_tensor *t = bsti_gguf_tensor_at(f, i);
        CU_ASSERT(t->dtype == BST_DTYPE_F32 || t->dtype == BST_DTYPE_Q4_1 ||
                  t->dtype == BST_DTYPE_Q8_0);
        total += t->size;
    }
    CU_ASSERT(total <= bsti_gguf_file_size(f) - bsti_gguf_data_offset(f));
}

static void test_default_model(void)
{
    const char *path = getenv("BASTION_MODEL");
    struct stat sb;
    if (!path || stat(path, &sb) != 0) {
        fprintf(stderr,
                "\nthe default model is missing (BASTION_MODEL=%s): run tools/fetch-model.sh\n",
                path ? path : "(unset)");
        CU_FAIL_FATAL("default model missing: run tools/fetch-model.sh");
    }
    bsti_gguf *f = NULL;
    CHECK_OK(bsti_gguf_open(path, NULL, &f));
    CU_ASSERT_EQUAL(bsti_gguf_version(f), 3);
    check_model(f);
    bsti_gguf_close(f);

    bsti_gguf_options opt = {.no_mmap = true};
    CHECK_OK(bsti_gguf_open(path, &opt, &f));
    check_model(f);
    bsti_gguf_close(f);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"tiny_valid (mmap)", test_tiny_valid_mmap},
        {"tiny_valid (no_mmap)", test_tiny_valid_no_mmap},
        {"tiny_valid (memory)", test_tiny_valid_memory},
        {"tiny_valid_v2 (alignment 64)", test_tiny_valid_v2},
        {"malformed corpus", test_corpus},
        {"every prefix rejected", test_every_prefix_rejected},
        {"mutations never crash", test_mutations_never_crash},
        {"io errors", test_io_errors},
        {"default model", test_default_model},
        {NULL, NULL},
    };
    return bst_test_run_suite("gguf", cases);
}
