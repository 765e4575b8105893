/*
 * Fused attention's key-block loops with AVX2 + FMA + F16C (see cpu_fused.h): 8 lanes per
 * vector; f16 rows are widened with vcvtph2ps, bf16 by a 16-bit shift, so K/V stay in the
 * cache's dtype in memory. Compiled with -mavx2 -mfma -mf16c and called only when cpu_isa_mask()
 * has CPU_ISA_AVX2. Head dims that are not a multiple of 8 finish with a scalar tail.
 */
#include "cpu_fused.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "cpu_att_avx2.h"
#include <math.h>

#define ALWAYS CPU_ATT_ALWAYS

/* Eight (then four) keys at a time share each load of q. */
ALWAYS void dot_any(int kind, const float *q, const uint8_t *k, int64_t ks, int64_t n, int64_t d,
                    float *out)
{
    const int64_t d8 = d & ~(int64_t)7;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const uint8_t *r0 = k + j * ks;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int64_t i = 0; i < d8; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qv, load8(kind, r0, i), a0);
            a1 = _mm256_fmadd_ps(qv, load8(kind, r0 + ks, i), a1);
            a2 = _mm256_fmadd_ps(qv, load8(kind, r0 + 2 * ks, i), a2);
            a3 = _mm256_fmadd_ps(qv, load8(kind, r0 + 3 * ks, i), a3);
            a4 = _mm256_fmadd_ps(qv, load8(kind, r0 + 4 * ks, i), a4);
            a5 = _mm256_fmadd_ps(qv, load8(kind, r0 + 5 * ks, i), a5);
            a6 = _mm256_fmadd_ps(qv, load8(kind, r0 + 6 * ks, i), a6);
            a7 = _mm256_fmadd_ps(qv, load8(kind, r0 + 7 * ks, i), a7);
        }
        _mm256_storeu_ps(out + j, hsum8(a0, a1, a2, a3, a4, a5, a6, a7));
        for (int64_t i = d8; i < d; i++)
            for (int u = 0; u < 8; u++)
                out[j + u] += q[i] * load1(kind, r0 + u * ks, i);
    }
    for (; j + 4 <= n; j += 4) {
        const uint8_t *r0 = k + j * ks, *r1 = r0 + ks, *r2 = r1 + ks, *r3 = r2 + ks;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < d8; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qv, load8(kind, r0, i), a0);
            a1 = _mm256_fmadd_ps(qv, load8(kind, r1, i), a1);
            a2 = _mm256_fmadd_ps(qv, load8(kind, r2, i), a2);
            a3 = _mm256_fmadd_ps(qv, load8(kind, r3, i), a3);
        }
        float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
        for (int64_t i = d8; i < d; i++) {
            s0 += q[i] * load1(kind, r0, i);
            s1 += q[i] * load1(kind, r1, i);
            s2 += q[i] * load1(kind, r2, i);
            s3 += q[i] * load1(kind, r3, i);
        }
        out[j] = s0;
        out[j + 1] = s1;
        out[j + 2] = s2;
        out[j + 3] = s3;
    }
    for (; j < n; j++) {
        const uint8_t *row = k + j * ks;
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < d8; i += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(kind, row, i), a);
        float s = hsum(a);
        for (int64_t i = d8; i < d; i++)
            s += q[i] * load1(kind, row, i);
        out[j] = s;
    }
}

/* The accumulator is walked in chunks of 64 floats held in registers across all n rows: eight
 * named variables, not an array, which GCC kept on the stack (a load, multiply-add and store per
 * 8 floats per row, each waiting on the previous row's store: axpy was 2x dot). */
ALWAYS void axpy_any(int kind, float *acc, const float *p, const uint8_t *v, int64_t vs,
                     int64_t n, int64_t d)
{
    const int64_t d8 = d & ~(int64_t)7;
    int64_t i0 = 0;
    for (; i0 + 64 <= d8; i0 += 64) {
        float *a = acc + i0;
        __m256 c0 = _mm256_loadu_ps(a), c1 = _mm256_loadu_ps(a + 8),
               c2 = _mm256_loadu_ps(a + 16), c3 = _mm256_loadu_ps(a + 24),
               c4 = _mm256_loadu_ps(a + 32), c5 = _mm256_loadu_ps(a + 40),
               c6 = _mm256_loadu_ps(a + 48), c7 = _mm256_loadu_ps(a + 56);
        for (int64_t j = 0; j < n; j++) {
            const __m256 pj = _mm256_set1_ps(p[j]);
            const uint8_t *row = v + j * vs;
            c0 = _mm256_fmadd_ps(pj, load8(kind, row, i0), c0);
            c1 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 8), c1);
            c2 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 16), c2);
            c3 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 24), c3);
            c4 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 32), c4);
            c5 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 40), c5);
            c6 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 48), c6);
            c7 = _mm256_fmadd_ps(pj, load8(kind, row, i0 + 56), c7);
        }
        _mm256_storeu_ps(a, c0);
        _mm256_storeu_ps(a + 8, c1);
        _mm256_storeu_ps(a + 16, c2);
        _mm256_storeu_ps(a + 24, c3);
        _mm256_storeu_ps(a + 32, c4);
        _mm256_storeu_ps(a + 40, c5);
        _mm256_storeu_ps(a + 48, c6);
        _mm256_storeu_ps(a + 56, c7);
    }
    for (; i0 < d8; i0 += 8) {
        __m256 c = _mm256_loadu_ps(acc + i0);
        for (int64_t j = 0; j < n; j++)
            c = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load8(kind, v + j * vs, i0), c);
        _mm256_storeu_ps(acc + i0, c);
    }
    for (int64_t i = d8; i < d; i++) {
        float c = acc[i];
        for (int64_t j = 0; j < n; j++)
            c += p[j] * load1(kind, v + j * vs, i);
        acc[i] = c;
    }
}

static float exp_block(float *s, int64_t n, float m)
{
    const __m256 mv = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, p);
        acc = _mm256_add_ps(acc, p);
    }
    float sum = hsum(acc);
    if (j < n) {
        float tail[8];
        for (int i = 0; i < 8; i++)
            tail[i] = j + i < n ? s[j + i] - m : -INFINITY;
        __m256 p = exp8(_mm256_loadu_ps(tail));
        _mm256_storeu_ps(tail, p);
        for (int64_t i = 0; j + i < n; i++) {
            s[j + i] = tail[i];
            sum += tail[i];
        }
    }
    return sum;
}

#define LOOPS(kind, sfx)                                                                       \
    static void dot_##sfx(const float *q, const uint8_t *k, int64_t ks, int64_t n, int64_t d,  \
                          float *out)                                                          \
    {                                                                                          \
        dot_any(kind, q, k, ks, n, d, out);                                                    \
    }                                                                                          \
    static void axpy_##sfx(float *acc, const float *p, const uint8_t *v, int64_t vs, int64_t n, \
                           int64_t d)                                                          \
    {                                                                                          \
        axpy_any(kind, acc, p, v, vs, n, d);                                                   \
    }
LOOPS(0, f32)
LOOPS(1, f16)
LOOPS(2, bf16)
#undef LOOPS

const cpu_att_loops cpu_att_loops_avx2 = {{dot_f32, dot_f16, dot_bf16},
                                          {axpy_f32, axpy_f16, axpy_bf16}, exp_block, NULL,
                                          cpu_att_few_avx2};
#ifdef CPU_HAVE_FUSED_AVX512
const cpu_att_loops cpu_att_loops_avx512 = {{dot_f32, dot_f16, dot_bf16},
                                            {axpy_f32, axpy_f16, axpy_bf16}, exp_block,
                                            cpu_att_tile_avx512, cpu_att_few_avx512};
#endif
#else
typedef int cpu_fused_attention_avx2_not_built; /* a translation unit may not be empty */
#endif
