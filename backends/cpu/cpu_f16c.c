/*
 * f32 <-> f16 with the F16C instructions, 8 values at a time. f32 -> f16 (vcvtps2ph): the
 * set_rows_f16 variant (cpu_fast_prims.c) writes a prompt's K and V rows into an f16 cache
 * through it. f16 -> f32 (vcvtph2ps, exact): the packed GEMM (cpu_gemm_f32.c) widens an f16
 * weight's rows into its panels with it. The
 * reference path converts one value at a time through the host (bsti_f32_to_f16), which took a
 * 512-token prompt's set_rows from 3 ms (f32 cache) to 36 ms (f16 cache), 12% of the prompt.
 *
 * Bit-identical to bsti_f32_to_f16: both round to nearest even, overflow to infinity, produce
 * half subnormals, and turn a NaN into a quiet NaN with the payload's top bits (F16C sets the
 * quiet bit and keeps mantissa bits 22..13, which is the reference's 0x7e00 | (bits >> 13)).
 * The rounding mode is given in the instruction, not taken from MXCSR; an f32 subnormal becomes
 * a half zero of its sign whether or not MXCSR's DAZ flag is set, and FTZ does not apply to
 * vcvtps2ph (its tiny results are half subnormals).
 *
 * Compiled with the AVX2 flags (CMakeLists.txt); called only when cpu_isa_mask() has
 * CPU_ISA_AVX2, which includes F16C.
 */
#include "cpu_fused.h"

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#include <string.h>

/* A macro, not a variable: the instruction's rounding mode must be a constant expression (clang
 * insists). */
#define F16C_ROUND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

void cpu_f32_to_f16_f16c(const float *src, uint8_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), F16C_ROUND));
    if (i < n) { /* the tail through a zero-padded vector */
        float tail[8] = {0};
        uint8_t out[16];
        memcpy(tail, src + i, (size_t)(n - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)(void *)out, _mm256_cvtps_ph(_mm256_loadu_ps(tail), F16C_ROUND));
        memcpy(dst + 2 * i, out, (size_t)(n - i) * 2);
    }
}

void cpu_f16_to_f32_f16c(const uint8_t *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                      (const __m128i *)(const void *)(src + 2 * i))));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        dst[i] = _cvtsh_ss(h);
    }
}
#else
typedef int cpu_f16c_not_built; /* a translation unit may not be empty */
#endif
