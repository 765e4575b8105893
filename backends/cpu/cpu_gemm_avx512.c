/*
 * The AVX-512 GEMM micro-kernel (see cpu_gemm.h): a 14 x 32 tile of c in 28 zmm accumulators,
 * two zmm loads of the weight panel and 14 broadcasts of the activation panel per k step, which
 * leaves 2 of the 32 registers for the b vectors. Compiled with the AVX-512 flags and used only
 * by the gemm_avx512 variant, which query offers only when cpu_isa_mask() has them.
 */
#include "cpu_gemm.h"

#if defined(__AVX512F__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <string.h>

enum { MR = 14, NR = 32 };

static void kernel_14x32(int64_t kc, const float *a, const float *b, float *c)
{
    __m512 c0[MR], c1[MR];
    _Pragma("GCC unroll 14") for (int i = 0; i < MR; i++) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _Pragma("GCC unroll 14") for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    _Pragma("GCC unroll 14") for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * NR, c0[i]);
        _mm512_storeu_ps(c + i * NR + 16, c1[i]);
    }
}

const cpu_gemm_kernel cpu_gemm_kernel_avx512 = {MR, NR, 1, kernel_14x32};

/* --- packing quantized weights for this kernel ---
 * The portable packer decodes a weight row and stores it one float per 128-byte panel row (a
 * transposing scatter); with a prompt of 64 rows that packing took more time than the
 * multiply-adds (SmolLM2's FFN). Here 16 weight rows are decoded a block (32 k) at a time into
 * registers and transposed 16 x 16 in registers, so each store writes 16 consecutive panel
 * floats. Same values as the portable decoder (the reference formulas). */

/* r[i] (row i, 16 k) -> r[k] (16 rows at k): unpack, shuffle within 128-bit lanes, then across. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

static inline float half_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* Block `src` (kind 0 q4_0, 1 q4_1, 2 q8_0) as elements 0..15 (*lo) and 16..31 (*hi). */
static inline void decode_block(int kind, const uint8_t *src, __m512 *lo, __m512 *hi)
{
    const __m512 d = _mm512_set1_ps(half_at(src));
    if (kind == 2) {
        *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                _mm_loadu_si128((const __m128i *)(const void *)(src + 2)))), d);
        *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                _mm_loadu_si128((const __m128i *)(const void *)(src + 18)))), d);
        return;
    }
    const __m512i q = _mm512_cvtepu8_epi32(
        _mm_loadu_si128((const __m128i *)(const void *)(src + (kind == 1 ? 4 : 2))));
    const __m512i m4 = _mm512_set1_epi32(0x0f);
    __m512i ql = _mm512_and_si512(q, m4), qh = _mm512_srli_epi32(q, 4);
    if (kind == 0) {
        ql = _mm512_sub_epi32(ql, _mm512_set1_epi32(8));
        qh = _mm512_sub_epi32(qh, _mm512_set1_epi32(8));
        *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(ql), d);
        *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(qh), d);
    } else {
        const __m512 m = _mm512_set1_ps(half_at(src + 2));
        *lo = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ql), d), m);
        *hi = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(qh), d), m);
    }
}

void cpu_gemm_pack_quant_avx512(float *pb, int64_t ncp, int64_t kc_max, const uint8_t *w,
                                int64_t row_stride, int64_t rows, int64_t K, int kind)
{
    const int64_t block_bytes = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    for (int64_t j0 = 0; j0 < ncp; j0 += 16) {
        const int64_t panel = j0 / NR, col = j0 % NR;
        for (int64_t k0 = 0; k0 < K; k0 += 32) {
            const int64_t d0 = k0 / kc_max * kc_max, dc = K - d0 < kc_max ? K - d0 : kc_max;
            float *dst = pb + d0 * ncp + panel * NR * dc + col + (k0 - d0) * NR;
            __m512 lo[16], hi[16];
            for (int i = 0; i < 16; i++) {
                if (j0 + i < rows) {
                    decode_block(kind, w + (j0 + i) * row_stride + k0 / 32 * block_bytes,
                                 &lo[i], &hi[i]);
                } else {
                    lo[i] = hi[i] = _mm512_setzero_ps();
                }
            }
            transpose16(lo);
            transpose16(hi);
            for (int k = 0; k < 16; k++) {
                _mm512_storeu_ps(dst + k * NR, lo[k]);
                _mm512_storeu_ps(dst + (16 + k) * NR, hi[k]);
            }
        }
    }
}
#else
typedef int cpu_gemm_avx512_not_built; /* a translation unit may not be empty */
#endif
