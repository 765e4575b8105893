/*
 * backends/cpu/cpu_float_load.h — a float weight's elements widened to f32 in registers, shared
 * by the float-weight kernels: the GEMVs (cpu_gemv_float_avx2.c, cpu_gemv_float_avx512.c) and the
 * tile kernels (cpu_gemm_dot_avx2.c, cpu_gemm_dot_avx512.c). `kind` is a CPU_W_* value, a
 * constant after inlining: f16 by vcvtph2ps, bf16 by a 16-bit shift. Include only from files
 * compiled with the AVX2 flags (the AVX-512 part also needs the AVX-512 ones).
 */
#ifndef BASTION_CPU_FLOAT_LOAD_H
#define BASTION_CPU_FLOAT_LOAD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define CPU_W_ALWAYS static inline __attribute__((always_inline))

enum { CPU_W_F32, CPU_W_F16, CPU_W_BF16 };

/* Elements [k, k + 8) of weight row p as f32. */
CPU_W_ALWAYS __m256 cpu_w_load8(int kind, const uint8_t *p, int64_t k)
{
    if (kind == CPU_W_F32)
        return _mm256_loadu_ps((const float *)(const void *)(p + 4 * k));
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * k));
    if (kind == CPU_W_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* Element k of weight row p as f32. */
CPU_W_ALWAYS float cpu_w_load1(int kind, const uint8_t *p, int64_t k)
{
    float f;
    if (kind == CPU_W_F32) {
        memcpy(&f, p + 4 * k, sizeof f);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * k, sizeof h);
    if (kind == CPU_W_F16)
        return _cvtsh_ss(h);
    const uint32_t bits = (uint32_t)h << 16;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
/* Elements [k, k + 16) of weight row p as f32, those past `live` (a lane mask) 0. */
CPU_W_ALWAYS __m512 cpu_w_load16(int kind, const uint8_t *p, int64_t k, __mmask16 live)
{
    if (kind == CPU_W_F32)
        return _mm512_maskz_loadu_ps(live, p + 4 * k);
    const __m256i h = _mm256_maskz_loadu_epi16(live, p + 2 * k);
    if (kind == CPU_W_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}
#endif

#endif /* BASTION_CPU_FLOAT_LOAD_H */
