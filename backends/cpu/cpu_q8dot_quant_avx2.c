/*
 * The AVX2 activation quantizer for the q8x2dot blocks (see cpu_q8dot.h): the arithmetic of
 * cpu_q8_quantize_scalar, 8 lanes at a time, bit-identical blocks (see
 * cpu_q8dot_quant_avx512.c for why it matters for decode). Compiled with the AVX2 flags and
 * -ffp-contract=off, used only by the q8x2dot_avx2 variant.
 */
#include "cpu_q8dot.h"

#if defined(__AVX2__)
#include <immintrin.h>

/* Round half away from zero of v (NaN lanes give 0), clamped to +-127, as the scalar code. */
static inline __m256i round_clamp(__m256 v)
{
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-128.0f)), _mm256_set1_ps(128.0f));
    __m256i t = _mm256_cvttps_epi32(v);
    const __m256 f = _mm256_sub_ps(v, _mm256_cvtepi32_ps(t));
    /* compare masks are all ones (-1) where true */
    t = _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
    t = _mm256_add_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ)));
    t = _mm256_min_epi32(_mm256_max_epi32(t, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
    return _mm256_andnot_si256(_mm256_castps_si256(nan), t);
}

/* 32 int32 values (each within +-127) as 32 int8 in order. */
static inline void store_i8(int8_t *dst, const __m256i *v)
{
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]),
                                         _mm256_packs_epi32(v[2], v[3]));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256((__m256i *)(void *)dst, _mm256_permutevar8x32_epi32(p, order));
}

void cpu_q8_quantize_avx2(const float *x, cpu_q8_block *q, int64_t nb)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < nb; i++, x += CPU_Q8_QK) {
        __m256 xv[4], m = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            xv[j] = _mm256_loadu_ps(x + 8 * j);
            /* max_ps returns its second operand when either is NaN: NaN lanes drop out. */
            m = _mm256_max_ps(_mm256_andnot_ps(sign, xv[j]), m);
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id), k256 = _mm256_set1_ps(256.0f);
        __m256i hv[4], lv[4], s = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256 v = _mm256_mul_ps(xv[j], vid);
            hv[j] = round_clamp(v);
            lv[j] = round_clamp(_mm256_mul_ps(_mm256_sub_ps(v, _mm256_cvtepi32_ps(hv[j])), k256));
            s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_slli_epi32(hv[j], 8), lv[j]));
        }
        store_i8(q[i].hi, hv);
        store_i8(q[i].lo, lv);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        q[i].d = d / 256.0f;
        q[i].s = q[i].d * (float)_mm_cvtsi128_si32(s4);
    }
}
#else
typedef int cpu_q8dot_quant_avx2_not_built; /* a translation unit may not be empty */
#endif
