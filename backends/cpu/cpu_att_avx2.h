/*
 * backends/cpu/cpu_att_avx2.h — the AVX2 vector pieces fused attention's loops share
 * (cpu_fused_attention_avx2.c: per-row key-block loops; cpu_fused_attention_decode_avx2.c: the
 * few-row decode kernel): K/V element loads that widen f16 / bf16 to f32, horizontal sums, and
 * exp on 8 lanes. Include only from files compiled with -mavx2 -mfma -mf16c.
 */
#ifndef BASTION_CPU_ATT_AVX2_H
#define BASTION_CPU_ATT_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define CPU_ATT_ALWAYS static inline __attribute__((always_inline))

CPU_ATT_ALWAYS __m256 load8(int kind, const uint8_t *row, int64_t i)
{
    if (kind == 0)
        return _mm256_loadu_ps((const float *)(const void *)(row + i * 4));
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(row + i * 2));
    if (kind == 1)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

CPU_ATT_ALWAYS float load1(int kind, const uint8_t *row, int64_t i)
{
    if (kind == 0) {
        float f;
        memcpy(&f, row + i * 4, sizeof f);
        return f;
    }
    uint16_t h;
    memcpy(&h, row + i * 2, sizeof h);
    if (kind == 1)
        return _cvtsh_ss(h);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

CPU_ATT_ALWAYS float hsum(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Sums of a0..a7 as one vector (lane i = sum of ai's lanes): a transposing hadd tree, cheaper
 * than eight horizontal sums. */
CPU_ATT_ALWAYS __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                            __m256 a6, __m256 a7)
{
    __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20),
                         _mm256_permute2f128_ps(t0, t1, 0x31));
}

/* exp on 8 lanes: Cephes' expf (range reduction by ln 2 in two parts, degree-5 polynomial,
 * 2^n through the exponent bits), relative error ~1e-7. Inputs are <= 0 here (scores minus
 * their running maximum); below -87 the result is 0, as it is for -INFINITY. */
CPU_ATT_ALWAYS __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 dead = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), lo);
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
                                                _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)),
                                  23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(dead, y);
}

#endif /* BASTION_CPU_ATT_AVX2_H */
