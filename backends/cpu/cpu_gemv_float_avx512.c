/*
 * The 16-bit-weight GEMV's row kernel with AVX-512 (cpu_gemv_float.h): each weight row is read
 * once, 64 elements at a time, widened to f32 in registers (f16 by vcvtph2ps, bf16 by a shift)
 * and multiplied into 4 x 16 partial sums per activation row; K's tail goes through masked
 * loads. Compiled with the AVX-512 flags and called only when cpu_isa_mask() has them.
 */
#include "cpu_gemv_float.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__FMA__)
#include "cpu_float_load.h"

#define ALWAYS static inline __attribute__((always_inline))

/* How far ahead the stream is requested, across row ends (rows are usually back to back): one
 * thread's hardware prefetcher alone leaves it well short of the bandwidth. 4096 x 14336 f16 on
 * two threads, against a same-size read: 0.59-0.64 at 2 KiB, 0.82 at 4, 0.89-0.90 at 8, 0.92
 * at 16 (576 x 576: 0.77-0.80 at 2 KiB, 0.79-0.88 at 8). */
#define PREFETCH_BYTES 8192

/* Asks for the line at p + off: maybe past the weight (the share's end), so computed as an
 * address, not a pointer into it. */
ALWAYS void prefetch(const uint8_t *p, int64_t off)
{
    _mm_prefetch((const char *)((uintptr_t)p + (uintptr_t)off), _MM_HINT_T0);
}

/* Rows [n0, n1) for `rows` activation rows (a constant after inlining). */
ALWAYS void gemv_rows(const cpu_gemv_job *job, int64_t n0, int64_t n1, bool bf16, int rows)
{
    const int64_t K = job->K;
    const __mmask16 all = 0xffff;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = job->w + n * job->w_stride;
        __m512 acc[CPU_GEMV_MAX_ROWS][4];
        for (int m = 0; m < rows; m++)
            acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) {
            prefetch(w, 2 * k + PREFETCH_BYTES);
            prefetch(w, 2 * k + 64 + PREFETCH_BYTES);
            __m512 x[4];
            for (int u = 0; u < 4; u++)
                x[u] = cpu_w_load16(bf16 ? CPU_W_BF16 : CPU_W_F16, w, k + 16 * u, all);
            for (int m = 0; m < rows; m++) {
                const float *a = job->a + m * job->lda + k;
                for (int u = 0; u < 4; u++)
                    acc[m][u] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 16 * u), x[u], acc[m][u]);
            }
        }
        for (; k < K; k += 16) { /* the tail, 16 at a time, the last masked */
            const __mmask16 live = (__mmask16)(K - k >= 16 ? 0xffffu : (1u << (K - k)) - 1u);
            const __m512 x = cpu_w_load16(bf16 ? CPU_W_BF16 : CPU_W_F16, w, k, live);
            for (int m = 0; m < rows; m++)
                acc[m][0] = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(live, job->a + m * job->lda + k), x, acc[m][0]);
        }
        for (int m = 0; m < rows; m++)
            job->out[m * job->ldo + n] = _mm512_reduce_add_ps(_mm512_add_ps(
                _mm512_add_ps(acc[m][0], acc[m][1]), _mm512_add_ps(acc[m][2], acc[m][3])));
    }
}

CPU_GEMV_ENTRY(cpu_gemv_rows_avx512, gemv_rows, prefetch, PREFETCH_BYTES)
#else
typedef int cpu_gemv_float_avx512_not_built; /* a translation unit may not be empty */
#endif
