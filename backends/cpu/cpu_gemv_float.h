/*
 * backends/cpu/cpu_gemv_float.h — matmul of a few activation rows against an f16 or bf16 weight:
 * the decode step of a model whose weights are not quantized (F16 and BF16 GGUF files).
 *
 * A GEMV reads every weight byte once and does two flops per weight element, so it is bound by
 * the memory. The gemm_* variants' packed GEMM would first copy the weight into f32 panels
 * (three times the traffic); the reference kernel converts each element through the host, one
 * value at a time, which left a 4096 x 14336 f16 GEMV at 0.05 of a same-size read (bf16: 0.13).
 * Here the weight is streamed once, front to back, widened in registers, and each row's products
 * are summed in f32 with 4 x 16 (AVX-512) or 4 x 8 (AVX2) partial sums: the f32 accuracy class,
 * like the reference (whose sums are f32 too, in another order). A few more activation rows (a
 * short prompt) take a pass over the weight per CPU_GEMV_MAX_ROWS, which up to ~32 rows still
 * costs less than the packed GEMM's conversion of the whole weight (cpu_gemm_f32.c,
 * MIN_ROWS_HALF).
 *
 * f32 weights stay with the reference kernel: the same loop streamed a 4096 x 14336 f32 weight
 * in 7.5-8.5 ms against the reference's 6.4-6.9 (one contiguous share per thread or 16-row
 * chunks, with and without software prefetch; 4 KiB pages), and on 2 MiB pages in 4.6-5.5 ms.
 */
#ifndef BASTION_CPU_GEMV_FLOAT_H
#define BASTION_CPU_GEMV_FLOAT_H

#include "cpu_backend.h"

#include <stdint.h>

/* Activation rows a row kernel takes in one pass over the weight; more take several passes. */
#define CPU_GEMV_MAX_ROWS 4

typedef struct cpu_gemv_job {
    const uint8_t *w; /* weight row 0; rows w_stride bytes apart, each K contiguous elements */
    int64_t w_stride;
    uint32_t wtype;   /* the weight's bst_dtype: f16 or bf16 (and f32 for the tile kernels) */
    const float *a;   /* activation row 0 (K contiguous f32), rows lda floats apart */
    int64_t lda;
    int64_t M, K;     /* activation rows (1..CPU_GEMV_MAX_ROWS) and the reduced length */
    float *out;       /* out[m * ldo + n] */
    int64_t ldo;
} cpu_gemv_job;

/* out[m * ldo + n] = sum_k a[m * lda + k] * w[n][k] for weight rows [n0, n1), m < M. */
typedef void (*cpu_gemv_rows_fn)(const cpu_gemv_job *job, int64_t n0, int64_t n1);

/* A row kernel's entry point `entry` (cpu_gemv_rows_fn), from the ISA file's
 * rows(job, n0, n1, bf16, m) (m activation rows, always inlined) and prefetch(p, offset): one
 * instance of rows per dtype and m (constant trip counts keep the sums in registers), after
 * requesting the share's first `bytes`. */
#define CPU_GEMV_ENTRY(entry, rows, prefetch, bytes)                                           \
    static inline __attribute__((always_inline)) void entry##_m(const cpu_gemv_job *job,     \
                                                                int64_t n0, int64_t n1,       \
                                                                bool bf16)                    \
    {                                                                                          \
        switch (job->M) {                                                                      \
        case 1: rows(job, n0, n1, bf16, 1); break;                                             \
        case 2: rows(job, n0, n1, bf16, 2); break;                                             \
        case 3: rows(job, n0, n1, bf16, 3); break;                                             \
        default: rows(job, n0, n1, bf16, 4); break;                                            \
        }                                                                                      \
    }                                                                                          \
    void entry(const cpu_gemv_job *job, int64_t n0, int64_t n1)                                \
    {                                                                                          \
        for (int64_t b = 0; n0 < n1 && b < (bytes); b += 64)                                   \
            prefetch(job->w + n0 * job->w_stride, b);                                          \
        if (job->wtype == BST_DTYPE_BF16)                                                      \
            entry##_m(job, n0, n1, true);                                                      \
        else                                                                                   \
            entry##_m(job, n0, n1, false);                                                     \
    }

#ifdef CPU_HAVE_AVX2_KERNELS
void cpu_gemv_rows_avx2(const cpu_gemv_job *job, int64_t n0, int64_t n1);
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
void cpu_gemv_rows_avx512(const cpu_gemv_job *job, int64_t n0, int64_t n1);
#endif

/* The tile kernels (cpu_gemm_dot_avx512.c, cpu_gemm_dot_avx2.c): the same out[m * ldo + n] for
 * any number of activation rows M, and f32 weights too, by register tiles of activation rows x
 * weight rows with no packing: for a short prompt, where the packed GEMM's copy of the weight
 * into f32 panels costs as much as the arithmetic. */
#ifdef CPU_HAVE_AVX2_KERNELS
void cpu_gemm_dot_avx2(const cpu_gemv_job *job, int64_t n0, int64_t n1); /* 4 x 2 tiles */
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
void cpu_gemm_dot_avx512(const cpu_gemv_job *job, int64_t n0, int64_t n1);
#endif

/* Runs r (a matmul node, resolved) with row kernel `fn`, the weight rows split over the pool in
 * one contiguous share per worker, when it is one the kernels take: an f16 or bf16 weight
 * without batch dims, its rows contiguous inside; f32 activation rows (batch dims flattened)
 * evenly spaced and contiguous inside, fewer than `max_rows`; evenly spaced f32 output rows.
 * False, with nothing run, for any other (or a NULL fn). */
bool cpu_run_gemv_float(cpu_run *r, cpu_gemv_rows_fn fn, int64_t max_rows);
/* Runs r with tile kernel `fn` as above when it has [min_rows, max_rows) activation rows (in one
 * pass) and an f32, f16 or bf16 weight; false, with nothing run, otherwise. */
bool cpu_run_gemm_dot(cpu_run *r, cpu_gemv_rows_fn fn, int64_t min_rows, int64_t max_rows);

#endif
