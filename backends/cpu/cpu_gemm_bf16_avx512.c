/*
 * The AVX-512 BF16 GEMM micro-kernel (see cpu_gemm.h): a 14 x 32 tile of c in 28 zmm
 * accumulators, each vdpbf16ps adding two k steps (a bf16 pair of the activation, broadcast,
 * times the pairs of 16 weight rows) in f32. Used by the gemm_bf16dot_avx512 variant for bf16
 * weights, which query offers only when cpu_isa_mask() has CPU_ISA_AVX512BF16; compiled with the
 * AVX-512 flags plus -mavx512bf16.
 */
#include "cpu_gemm.h"

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#include <string.h>

enum { MR = 14, NR = 32 };

static void kernel_bf16_14x32(int64_t kc, const float *a, const float *b, float *c)
{
    __m512 c0[MR], c1[MR];
    _Pragma("GCC unroll 14") for (int i = 0; i < MR; i++) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b);
        const __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        _Pragma("GCC unroll 14") for (int i = 0; i < MR; i++) {
            int32_t pair;
            memcpy(&pair, a + i, sizeof pair);
            const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
    }
    _Pragma("GCC unroll 14") for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * NR, c0[i]);
        _mm512_storeu_ps(c + i * NR + 16, c1[i]);
    }
}

const cpu_gemm_kernel cpu_gemm_kernel_bf16_avx512 = {MR, NR, 2, kernel_bf16_14x32};
#else
typedef int cpu_gemm_bf16_avx512_not_built; /* a translation unit may not be empty */
#endif
