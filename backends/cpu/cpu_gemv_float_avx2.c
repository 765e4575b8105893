/*
 * The 16-bit-weight GEMV's row kernel with AVX2, FMA and F16C (cpu_gemv_float.h): as the AVX-512
 * one (cpu_gemv_float_avx512.c), 32 elements at a time into 4 x 8 partial sums per activation
 * row, then 8 at a time, and K's last few one by one.
 * Compiled with the AVX2 flags and called only when cpu_isa_mask() has them.
 */
#include "cpu_gemv_float.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "cpu_float_load.h"

#define ALWAYS static inline __attribute__((always_inline))
#define PREFETCH_BYTES 8192 /* as the AVX-512 kernel's */

/* Asks for the line at p + off: maybe past the weight (the share's end), so computed as an
 * address, not a pointer into it. */
ALWAYS void prefetch(const uint8_t *p, int64_t off)
{
    _mm_prefetch((const char *)((uintptr_t)p + (uintptr_t)off), _MM_HINT_T0);
}

ALWAYS float hsum(__m256 v)
{
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/* Rows [n0, n1) for `rows` activation rows (a constant after inlining). */
ALWAYS void gemv_rows(const cpu_gemv_job *job, int64_t n0, int64_t n1, bool bf16, int rows)
{
    const int64_t K = job->K;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = job->w + n * job->w_stride;
        __m256 acc[CPU_GEMV_MAX_ROWS][4];
        for (int m = 0; m < rows; m++)
            acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            prefetch(w, 2 * k + PREFETCH_BYTES);
            __m256 x[4];
            for (int u = 0; u < 4; u++)
                x[u] = cpu_w_load8(bf16 ? CPU_W_BF16 : CPU_W_F16, w, k + 8 * u);
            for (int m = 0; m < rows; m++) {
                const float *a = job->a + m * job->lda + k;
                for (int u = 0; u < 4; u++)
                    acc[m][u] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * u), x[u], acc[m][u]);
            }
        }
        for (; k + 8 <= K; k += 8) {
            const __m256 x = cpu_w_load8(bf16 ? CPU_W_BF16 : CPU_W_F16, w, k);
            for (int m = 0; m < rows; m++)
                acc[m][0] = _mm256_fmadd_ps(_mm256_loadu_ps(job->a + m * job->lda + k), x,
                                            acc[m][0]);
        }
        for (int m = 0; m < rows; m++) {
            const float *a = job->a + m * job->lda;
            float tail = 0.0f;
            for (int64_t j = k; j < K; j++)
                tail += a[j] * cpu_w_load1(bf16 ? CPU_W_BF16 : CPU_W_F16, w, j);
            job->out[m * job->ldo + n] = hsum(_mm256_add_ps(_mm256_add_ps(acc[m][0], acc[m][1]),
                                                            _mm256_add_ps(acc[m][2], acc[m][3]))) +
                                         tail;
        }
    }
}

CPU_GEMV_ENTRY(cpu_gemv_rows_avx2, gemv_rows, prefetch, PREFETCH_BYTES)
#else
typedef int cpu_gemv_float_avx2_not_built; /* a translation unit may not be empty */
#endif
