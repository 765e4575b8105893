/*
 * The AVX2 + FMA GEMM micro-kernel (see cpu_gemm.h): a 6 x 16 tile of c in 12 ymm accumulators,
 * two ymm loads of the weight panel and 6 broadcasts per k step (15 of the 16 registers). Compiled
 * with the AVX2 flags and used only by the gemm_avx2 variant, offered when cpu_isa_mask() has
 * CPU_ISA_AVX2.
 */
#include "cpu_gemm.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

enum { MR = 6, NR = 16 };

static void kernel_6x16(int64_t kc, const float *a, const float *b, float *c)
{
    __m256 c0[MR], c1[MR];
    _Pragma("GCC unroll 6") for (int i = 0; i < MR; i++) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        _Pragma("GCC unroll 6") for (int i = 0; i < MR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    _Pragma("GCC unroll 6") for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(c + i * NR, c0[i]);
        _mm256_storeu_ps(c + i * NR + 8, c1[i]);
    }
}

const cpu_gemm_kernel cpu_gemm_kernel_avx2 = {MR, NR, 1, kernel_6x16};
#else
typedef int cpu_gemm_avx2_not_built; /* a translation unit may not be empty */
#endif
