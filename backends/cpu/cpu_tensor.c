/*
 * Row access shared by every CPU kernel: reading a row of any dtype and byte strides as f32,
 * writing an f32 row into any storable dtype, which dtypes those are, errors, and the bridge to
 * the host's thread pool (dtype geometry and attributes: bst_backend_common.h).
 *
 * All element access goes through memcpy: strides are arbitrary bytes and weights come from a
 * file mapping, so no element is assumed to be aligned for its type.
 */
#include "cpu_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* --- errors --- */

bst_status cpu_fail(cpu_run *r, bst_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    return status;
}

void cpu_fail_async(cpu_run *r, bst_status status)
{
    int expected = BST_OK;
    atomic_compare_exchange_strong(&r->async_status, &expected, (int)status);
}

bst_status cpu_async_result(cpu_run *r, const char *what)
{
    int st = atomic_load(&r->async_status);
    if (st == BST_OK)
        return BST_OK;
    return cpu_fail(r, (bst_status)st, "%s failed inside a worker (status %d)", what, st);
}

/* --- dtypes --- */

bool cpu_is_loadable(uint32_t dtype)
{
    uint32_t bs, bb;
    return bstc_dtype_geometry(dtype, &bs, &bb); /* every dtype there is */
}

bool cpu_is_storable(uint32_t dtype)
{
    return cpu_is_loadable(dtype) && dtype != BST_DTYPE_I32 && dtype != BST_DTYPE_I8;
}

/* --- rows --- */

static bool f32_direct(const cpu_tensor *t, const uint8_t *p)
{
    return t->dtype == BST_DTYPE_F32 && t->nb[3] == (int64_t)sizeof(float) &&
           ((uintptr_t)p % _Alignof(float)) == 0;
}

const float *cpu_load_row(cpu_run *r, const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                          float *buf, float *tmp)
{
    const uint8_t *p = cpu_row_ptr(t, i0, i1, i2);
    const int64_t n = t->ne[3], s = t->nb[3];
    if (n == 0)
        return buf;
    switch (t->dtype) {
    case BST_DTYPE_F32:
        if (f32_direct(t, p))
            return (const float *)(const void *)p;
        for (int64_t i = 0; i < n; i++)
            memcpy(&buf[i], p + i * s, sizeof(float));
        return buf;
    case BST_DTYPE_F16:
    case BST_DTYPE_BF16: {
        const void *src = p;
        if (s != 2) { /* gather the halves, then convert them as one row */
            uint8_t *g = (uint8_t *)tmp;
            for (int64_t i = 0; i < n; i++)
                memcpy(g + 2 * i, p + i * s, 2);
            src = g;
        }
        bst_status st = cpu_host->dequantize((bst_dtype)t->dtype, src, buf, n);
        if (st != BST_OK)
            cpu_fail_async(r, st);
        return buf;
    }
    case BST_DTYPE_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + i * s, sizeof v);
            buf[i] = (float)v;
        }
        return buf;
    case BST_DTYPE_I8:
        for (int64_t i = 0; i < n; i++)
            buf[i] = (float)(int8_t)p[i * s];
        return buf;
    default: { /* block types: blocks are contiguous (checked when the tensor was resolved) */
        bst_status st = cpu_host->dequantize((bst_dtype)t->dtype, p, buf, n);
        if (st != BST_OK)
            cpu_fail_async(r, st);
        return buf;
    }
    }
}

float *cpu_out_row(const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2, float *buf)
{
    uint8_t *p = cpu_row_ptr(t, i0, i1, i2);
    if (f32_direct(t, p))
        return (float *)(void *)p;
    return buf;
}

void cpu_commit_row(cpu_run *r, const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                    const float *row, float *tmp)
{
    uint8_t *p = cpu_row_ptr(t, i0, i1, i2);
    const int64_t n = t->ne[3], s = t->nb[3];
    if (n == 0 || (const uint8_t *)row == p)
        return;
    switch (t->dtype) {
    case BST_DTYPE_F32:
        for (int64_t i = 0; i < n; i++)
            memcpy(p + i * s, &row[i], sizeof(float));
        return;
    case BST_DTYPE_F16:
    case BST_DTYPE_BF16: {
        uint8_t *dst = s == 2 ? p : (uint8_t *)tmp;
        bst_status st = cpu_host->quantize((bst_dtype)t->dtype, row, dst, n);
        if (st != BST_OK) {
            cpu_fail_async(r, st);
            return;
        }
        if (dst != p)
            for (int64_t i = 0; i < n; i++)
                memcpy(p + i * s, dst + 2 * i, 2);
        return;
    }
    default: {
        if (!cpu_is_block(t->dtype)) { /* not storable: refused by every check */
            cpu_fail_async(r, BST_ERR_INTERNAL);
            return;
        }
        bst_status st = cpu_host->quantize((bst_dtype)t->dtype, row, p, n);
        if (st != BST_OK)
            cpu_fail_async(r, st);
        return;
    }
    }
}

/* --- shape helpers --- */

bool cpu_same_shape(const cpu_tensor *a, const cpu_tensor *b)
{
    for (int d = 0; d < 4; d++)
        if (a->ne[d] != b->ne[d])
            return false;
    return true;
}

/* A block-type row must be whole, contiguous blocks; resolution already checks it for every
 * tensor, this only names the operand in the message. */
bst_status cpu_check_rows_contiguous(cpu_run *r, const cpu_tensor *t, const char *what)
{
    uint32_t bs, bb;
    if (!cpu_dtype_geometry(t->dtype, &bs, &bb))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "%s has invalid dtype %u", what, t->dtype);
    if (bs > 1 && (t->ne[3] % bs != 0 || t->nb[3] != (int64_t)bb))
        return cpu_fail(r, BST_ERR_SHAPE,
                        "%s (%s) rows must be whole contiguous blocks (innermost %lld, stride %lld)",
                        what, cpu_dtype_name(t->dtype), (long long)t->ne[3], (long long)t->nb[3]);
    return BST_OK;
}

/* --- threads --- */

typedef struct par_job {
    cpu_run *run;
    cpu_rows_fn fn;
} par_job;

static void par_trampoline(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    par_job *job = arg;
    /* The scratch was sized for the worker count read before the job; a pool resized in
     * between must not make a worker write past it. */
    if (worker >= job->run->n_workers) {
        cpu_fail_async(job->run, BST_ERR_INTERNAL);
        return;
    }
    job->fn(job->run, begin, end, worker);
}

int64_t cpu_grain(int64_t work_per_row)
{
    const int64_t chunk_work = 32768;
    if (work_per_row < 1)
        work_per_row = 1;
    int64_t g = chunk_work / work_per_row;
    return g < 1 ? 1 : g;
}

void cpu_parallel(cpu_run *r, int64_t n, int64_t grain, cpu_rows_fn fn)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (!cpu_host->parallel_for || r->n_workers <= 1 || n <= grain) {
        fn(r, 0, n, 0);
        return;
    }
    par_job job = {r, fn};
    cpu_host->parallel_for(n, grain, par_trampoline, &job);
}

void cpu_once_run(cpu_once *once, cpu_run *r, int64_t begin, uint32_t worker)
{
    if (begin == 0) {
        once->fn(r, once->arg, worker);
        atomic_store_explicit(&once->done, 1, memory_order_release);
        return;
    }
    while (!atomic_load_explicit(&once->done, memory_order_acquire))
        cpu_pause();
}

void *cpu_work_area(cpu_run *r, size_t bytes)
{
    if (r->shared && bytes <= (size_t)CPU_SLOTS * r->slot_floats * sizeof(float))
        return r->shared;
    return cpu_host->alloc(bytes ? bytes : 1, 64);
}

void cpu_work_release(cpu_run *r, void *area)
{
    if (area != (void *)r->shared)
        cpu_host->free(area);
}
