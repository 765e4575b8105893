/*
 * tests/fuzz/fuzz_gguf.c — libFuzzer harness for the GGUF reader (bsti_gguf_open_memory).
 *
 * Every input must either be rejected with a status and a message, or open into a file whose
 * every key, string, array element (nested ones too) and tensor lies inside the input and keeps
 * the reader's documented promises; anything else traps, so the fuzzer reports it as a crash.
 * Seeds: tests/fixtures/gguf (valid files) and tests/fixtures/gguf/bad (the malformed corpus).
 */
#include "runtime/model/gguf.h"
#include "fuzz_require.h"

#include <stdlib.h>
#include <string.h>

typedef struct bounds {
    const uint8_t *lo, *hi;
    volatile uint64_t sink;
} bounds;

static void touch(bounds *b, const void *p, uint64_t len)
{
    const uint8_t *q = p;
    if (len == 0)
        return;
    require(q >= b->lo && q <= b->hi && len <= (uint64_t)(b->hi - q));
    b->sink += q[0] + q[len - 1];
}

static void walk_array(bounds *b, const bsti_gguf_array *a, unsigned depth)
{
    require(depth <= 4);
    for (uint64_t i = 0; i < a->count; i++) {
        bsti_gguf_str s;
        bsti_gguf_array sub;
        int64_t v;
        double d;
        switch (a->elem_type) {
        case BSTI_GGUF_STRING:
            require(bsti_gguf_array_str(a, i, &s) == BST_OK);
            touch(b, s.ptr, s.len);
            break;
        case BSTI_GGUF_ARRAY:
            require(bsti_gguf_array_array(a, i, &sub) == BST_OK);
            walk_array(b, &sub, depth + 1);
            break;
        case BSTI_GGUF_FLOAT32:
        case BSTI_GGUF_FLOAT64:
            require(bsti_gguf_array_f64(a, i, &d) == BST_OK);
            break;
        case BSTI_GGUF_UINT64: /* values beyond int64 are refused, with a message */
            require(bsti_gguf_array_i64(a, i, &v) != BST_ERR_INVALID_ARG);
            break;
        default:
            require(bsti_gguf_array_i64(a, i, &v) == BST_OK);
            if (a->elem_type == BSTI_GGUF_BOOL)
                require(v == 0 || v == 1);
            break;
        }
    }
    /* One past the end is refused, never read. */
    int64_t v;
    bsti_gguf_str s;
    require(bsti_gguf_array_i64(a, a->count, &v) == BST_ERR_INVALID_ARG);
    require(bsti_gguf_array_str(a, a->count, &s) == BST_ERR_INVALID_ARG);
}

/* Keys and names hold no NUL, so a C-string lookup must find each one. */
static char *c_string(bsti_gguf_str s)
{
    char *c = malloc((size_t)s.len + 1);
    require(c != NULL);
    memcpy(c, s.ptr, (size_t)s.len);
    c[s.len] = '\0';
    require(strlen(c) == s.len && s.len > 0);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bsti_gguf *f = NULL;
    bst_status st = bsti_gguf_open_memory(data, size, &f);
    if (st != BST_OK) {
        require(f == NULL);
        require(st == BST_ERR_FORMAT || st == BST_ERR_UNSUPPORTED || st == BST_ERR_OVERFLOW);
        require(bst_last_error()[0] != '\0');
        return 0;
    }
    bounds b = {.lo = data, .hi = data + size};
    for (uint64_t i = 0; i < bsti_gguf_kv_count(f); i++) {
        const bsti_gguf_kv *kv = bsti_gguf_kv_at(f, i);
        touch(&b, kv->key.ptr, kv->key.len);
        char *key = c_string(kv->key);
        require(bsti_gguf_find(f, key) == kv);
        uint32_t u;
        float x;
        bool flag;
        bsti_gguf_str s;
        bsti_gguf_array arr;
        /* Typed getters never crash, and agree with the stored type. */
        st = bsti_gguf_get_u32(f, key, &u);
        require(st == BST_OK || st == BST_ERR_FORMAT);
        st = bsti_gguf_get_f32(f, key, &x);
        require(st == BST_OK ? kv->type == BSTI_GGUF_FLOAT32 || kv->type == BSTI_GGUF_FLOAT64
                             : st == BST_ERR_FORMAT && kv->type != BSTI_GGUF_FLOAT32);
        st = bsti_gguf_get_bool(f, key, &flag);
        require((st == BST_OK) == (kv->type == BSTI_GGUF_BOOL));
        st = bsti_gguf_get_str(f, key, &s);
        require((st == BST_OK) == (kv->type == BSTI_GGUF_STRING));
        if (kv->type == BSTI_GGUF_STRING)
            touch(&b, kv->v.str.ptr, kv->v.str.len);
        if (kv->type == BSTI_GGUF_ARRAY) {
            require(bsti_gguf_get_array(f, key, kv->v.arr.elem_type, &arr) == BST_OK);
            walk_array(&b, &kv->v.arr, 1);
        }
        free(key);
    }
    require(bsti_gguf_kv_at(f, bsti_gguf_kv_count(f)) == NULL);

    uint32_t alignment = bsti_gguf_alignment(f);
    uint64_t data_offset = bsti_gguf_data_offset(f);
    require(alignment && (alignment & (alignment - 1)) == 0);
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(f); i++) {
        const bsti_gguf_tensor *t = bsti_gguf_tensor_at(f, i);
        touch(&b, t->name.ptr, t->name.len);
        char *name = c_string(t->name);
        require(bsti_gguf_tensor_find(f, name) == t);
        free(name);
        require(t->rank >= 1 && t->rank <= 4 && t->size > 0);
        require(t->dtype > BST_DTYPE_INVALID && t->dtype < BST_DTYPE_COUNT);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->rank; d++) {
            require(t->shape[d] >= 1);
            n *= (uint64_t)t->shape[d];
        }
        uint32_t bs = bst_dtype_block_size(t->dtype), bb = bst_dtype_block_bytes(t->dtype);
        require((uint64_t)t->shape[t->rank - 1] % bs == 0 && n / bs * bb == t->size);
        touch(&b, t->data, t->size);
        uint64_t off = (uint64_t)((const uint8_t *)t->data - data);
        require(off >= data_offset && (off - data_offset) % alignment == 0);
    }
    require(bsti_gguf_tensor_at(f, bsti_gguf_tensor_count(f)) == NULL);
    bsti_gguf_close(f);
    return 0;
}
