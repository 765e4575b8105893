/*
 * Reference matmul: out[..., m, n] = sum_k a[..., m, k] * b[..., n, k].
 *
 * b (usually a weight [out, in], any dtype) is read one row at a time and dequantized once into
 * the worker's scratch, then dotted with every row of a that uses it; the work is split over
 * b's rows. a is used in place when it is contiguous f32, else converted once to a contiguous f32
 * copy. Batch dims broadcast per dim, grouped: a's batch index i uses b's i / (Ba / Bb), so
 * consecutive query heads share a KV head as GQA needs. Sums are f32 with eight partial
 * accumulators (pairwise-like error, and vectorizable).
 */
#include "cpu_backend.h"

#include <string.h>

bst_status cpu_check_matmul(cpu_run *r)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    if (!cpu_is_loadable(a->dtype) || a->dtype == BST_DTYPE_I32 || a->dtype == BST_DTYPE_I8 ||
        !cpu_is_loadable(b->dtype) || b->dtype == BST_DTYPE_I32 || b->dtype == BST_DTYPE_I8)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "matmul of %s and %s",
                        cpu_dtype_name(a->dtype), cpu_dtype_name(b->dtype));
    if (o->dtype != BST_DTYPE_F32)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "matmul writes f32, not %s",
                        cpu_dtype_name(o->dtype));
    if (a->rank < 2 || b->rank < 2 || b->rank > a->rank || o->rank != a->rank)
        return cpu_fail(r, BST_ERR_SHAPE, "matmul ranks a %u, b %u, out %u", a->rank, b->rank,
                        o->rank);
    if (a->ne[3] != b->ne[3])
        return cpu_fail(r, BST_ERR_SHAPE, "inner dims differ: a has %lld, b has %lld",
                        (long long)a->ne[3], (long long)b->ne[3]);
    if (o->ne[2] != a->ne[2] || o->ne[3] != b->ne[2])
        return cpu_fail(r, BST_ERR_SHAPE, "output must be [..., %lld, %lld]",
                        (long long)a->ne[2], (long long)b->ne[2]);
    for (int d = 0; d < 2; d++) {
        if (o->ne[d] != a->ne[d])
            return cpu_fail(r, BST_ERR_SHAPE, "output batch dims differ from a's");
        if (b->ne[d] == 0 ? a->ne[d] != 0 : a->ne[d] % b->ne[d] != 0)
            return cpu_fail(r, BST_ERR_SHAPE, "b batch dim %lld does not divide a's %lld",
                            (long long)b->ne[d], (long long)a->ne[d]);
    }
    return BST_OK;
}

static float dot(const float *x, const float *y, int64_t k)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l] * y[i + l];
    float tail = 0.0f;
    for (; i < k; i++)
        tail += x[i] * y[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) +
           tail;
}

/* A row of a as f32: in place, or from the contiguous copy made by cpu_run_matmul. */
static const float *a_row(cpu_run *r, int64_t i0, int64_t i1, int64_t m)
{
    const cpu_tensor *a = &r->in[0];
    if (r->aux) {
        const float *base = r->aux; /* contiguous f32 [A0, A1, M, K] */
        return base + ((i0 * a->ne[1] + i1) * a->ne[2] + m) * a->ne[3];
    }
    return (const float *)(const void *)cpu_row_ptr(a, i0, i1, m);
}

static void matmul_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    const int64_t N = b->ne[2], M = a->ne[2], K = a->ne[3];
    const int64_t g0 = b->ne[0] ? a->ne[0] / b->ne[0] : 0, g1 = b->ne[1] ? a->ne[1] / b->ne[1] : 0;
    for (int64_t item = begin; item < end; item++) {
        int64_t n = item % N, j1 = (item / N) % b->ne[1], j0 = item / N / b->ne[1];
        const float *brow = cpu_load_row(r, b, j0, j1, n, cpu_slot(r, w, 0), cpu_slot(r, w, 1));
        for (int64_t i0 = j0 * g0; i0 < (j0 + 1) * g0; i0++)
            for (int64_t i1 = j1 * g1; i1 < (j1 + 1) * g1; i1++)
                for (int64_t m = 0; m < M; m++) {
                    float v = dot(a_row(r, i0, i1, m), brow, K);
                    memcpy(o->data + i0 * o->nb[0] + i1 * o->nb[1] + m * o->nb[2] + n * o->nb[3],
                           &v, sizeof v);
                }
    }
}

/* Converts a into a contiguous f32 copy, rows in parallel. */
static void convert_a_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *a = &r->in[0];
    float *base = r->aux;
    for (int64_t row = begin; row < end; row++) {
        int64_t m = row % a->ne[2], i1 = (row / a->ne[2]) % a->ne[1], i0 = row / a->ne[2] / a->ne[1];
        const float *v = cpu_load_row(r, a, i0, i1, m, cpu_slot(r, w, 2), cpu_slot(r, w, 3));
        memcpy(base + row * a->ne[3], v, (size_t)a->ne[3] * sizeof(float));
    }
}

static bool a_in_place(const cpu_tensor *a)
{
    if (a->dtype != BST_DTYPE_F32 || (a->nb[3] != (int64_t)sizeof(float) && a->ne[3] > 1))
        return false;
    for (int d = 0; d < 3; d++)
        if (a->ne[d] > 1 && a->nb[d] % (int64_t)sizeof(float) != 0)
            return false;
    return ((uintptr_t)a->data % _Alignof(float)) == 0;
}

bst_status cpu_run_matmul(cpu_run *r)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1];
    int64_t a_rows = a->ne[0] * a->ne[1] * a->ne[2];
    float *copy = NULL;
    r->aux = NULL;
    if (!a_in_place(a)) {
        size_t bytes;
        if (__builtin_mul_overflow((size_t)a_rows, (size_t)a->ne[3] * sizeof(float), &bytes))
            return cpu_fail(r, BST_ERR_OVERFLOW, "a is too large to convert");
        copy = cpu_host->alloc(bytes ? bytes : 1, 64);
        if (!copy)
            return cpu_fail(r, BST_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to convert a",
                            bytes);
        r->aux = copy;
        cpu_parallel(r, a_rows, cpu_grain(a->ne[3] * 2), convert_a_rows);
    }
    int64_t items = b->ne[0] * b->ne[1] * b->ne[2];
    int64_t per_item = a->ne[3] * (a->ne[0] / (b->ne[0] ? b->ne[0] : 1)) *
                       (a->ne[1] / (b->ne[1] ? b->ne[1] : 1)) * (a->ne[2] + 1);
    if (cpu_async_result(r, "converting a") == BST_OK)
        cpu_parallel(r, items, cpu_grain(per_item), matmul_rows);
    cpu_host->free(copy);
    r->aux = NULL;
    return BST_OK;
}
