/*
 * backends/cpu/cpu_fold_avx512.h — 16 dot products' partial-sum vectors summed into one vector of
 * 16 results, by a transpose-add tree instead of 16 horizontal sums: the decode attention's
 * scores (cpu_fused_attention_decode_avx512.c, 16 keys) and the float tile kernel's 4 x 4 tile
 * (cpu_gemm_dot_avx512.c). Include only from files compiled with the AVX-512 flags, inside their
 * __AVX512F__ guard.
 */
#ifndef BASTION_CPU_FOLD_AVX512_H
#define BASTION_CPU_FOLD_AVX512_H

#include <immintrin.h>

/* Four partial-sum vectors a, b, c, d into one whose 128-bit block i holds block i's partial
 * sums of (a, b, c, d): shuffles within 128-bit blocks only, which are cheaper than the ones
 * across blocks that cpu_fold16 needs. */
static inline __attribute__((always_inline)) __m512 cpu_fold4(__m512 a, __m512 b, __m512 c,
                                                              __m512 d)
{
    const __m512d pa = _mm512_castps_pd(a), pb = _mm512_castps_pd(b), pc = _mm512_castps_pd(c),
                  pd = _mm512_castps_pd(d);
    const __m512 ab = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(pa, pb)),
                                    _mm512_castpd_ps(_mm512_unpackhi_pd(pa, pb)));
    const __m512 cd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(pc, pd)),
                                    _mm512_castpd_ps(_mm512_unpackhi_pd(pc, pd)));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Four cpu_fold4 results x0..x3 into the 16 sums: lane 4i + j is the total of x_i's j-th input
 * (the 4 x 4 blocks transposed and summed). */
static inline __attribute__((always_inline)) __m512 cpu_fold16(__m512 x0, __m512 x1, __m512 x2,
                                                               __m512 x3)
{
    const __m512 z01 = _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, 0x44),
                                     _mm512_shuffle_f32x4(x0, x1, 0xee));
    const __m512 z23 = _mm512_add_ps(_mm512_shuffle_f32x4(x2, x3, 0x44),
                                     _mm512_shuffle_f32x4(x2, x3, 0xee));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z01, z23, 0x88),
                         _mm512_shuffle_f32x4(z01, z23, 0xdd));
}

#endif /* BASTION_CPU_FOLD_AVX512_H */
