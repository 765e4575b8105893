/*
 * The AVX-512 activation quantizer for the q8x2dot blocks (see cpu_q8dot.h): the same arithmetic
 * as cpu_q8_quantize_scalar, 16 lanes at a time, so the blocks are bit-identical. The scalar loop
 * costs about 20 ns per element (libm roundf), which for a decode GEMV of the default model's
 * 576-wide rows is more than the dot products themselves. Compiled with the AVX-512 flags and
 * -ffp-contract=off (a fused multiply-subtract would round the residual differently), and used
 * only by the q8x2dot_avx512vnni variant.
 */
#include "cpu_q8dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

/* Round half away from zero of v (NaN lanes give 0), clamped to +-127, as the scalar code. */
static inline __m512i round_clamp(__m512 v)
{
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(128.0f));
    __m512i t = _mm512_cvttps_epi32(v);
    const __m512 f = _mm512_sub_ps(v, _mm512_cvtepi32_ps(t));
    const __mmask16 up = _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __mmask16 down = _mm512_cmp_ps_mask(f, _mm512_set1_ps(-0.5f), _CMP_LE_OQ);
    const __m512i one = _mm512_set1_epi32(1);
    t = _mm512_mask_add_epi32(t, up, t, one);
    t = _mm512_mask_sub_epi32(t, down, t, one);
    t = _mm512_min_epi32(_mm512_max_epi32(t, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
    return _mm512_maskz_mov_epi32((__mmask16)~nan, t);
}

void cpu_q8_quantize_avx512(const float *x, cpu_q8_block *q, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += CPU_Q8_QK) {
        const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        /* max_ps returns its second operand when either is NaN: NaN lanes drop out. */
        __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(x1), m);
        const float amax = _mm512_reduce_max_ps(m);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id), k256 = _mm512_set1_ps(256.0f);
        const __m512 v0 = _mm512_mul_ps(x0, vid), v1 = _mm512_mul_ps(x1, vid);
        const __m512i h0 = round_clamp(v0), h1 = round_clamp(v1);
        const __m512i l0 = round_clamp(_mm512_mul_ps(_mm512_sub_ps(v0, _mm512_cvtepi32_ps(h0)), k256));
        const __m512i l1 = round_clamp(_mm512_mul_ps(_mm512_sub_ps(v1, _mm512_cvtepi32_ps(h1)), k256));
        _mm_storeu_si128((__m128i *)(void *)q[i].hi, _mm512_cvtepi32_epi8(h0));
        _mm_storeu_si128((__m128i *)(void *)(q[i].hi + 16), _mm512_cvtepi32_epi8(h1));
        _mm_storeu_si128((__m128i *)(void *)q[i].lo, _mm512_cvtepi32_epi8(l0));
        _mm_storeu_si128((__m128i *)(void *)(q[i].lo + 16), _mm512_cvtepi32_epi8(l1));
        const __m512i s = _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(h0, h1), 8),
                                           _mm512_add_epi32(l0, l1));
        q[i].d = d / 256.0f;
        q[i].s = q[i].d * (float)_mm512_reduce_add_epi32(s);
    }
}
#else
typedef int cpu_q8dot_quant_avx512_not_built; /* a translation unit may not be empty */
#endif
