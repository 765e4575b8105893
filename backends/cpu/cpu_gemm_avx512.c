/*
 * The AVX-512 GEMM micro-kernel (see cpu_gemm.h): a 14 x 32 tile of c in 28 zmm accumulators,
 * two zmm loads of the weight panel and 14 broadcasts of the activation panel per k step, which
 * leaves 2 of the 32 registers for the b vectors. Compiled with the AVX-512 flags and used only
 * by the gemm_avx512 variant, which query offers only when cpu_isa_mask() has them.
 */
#include "cpu_gemm.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

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
#else
typedef int cpu_gemm_avx512_not_built; /* a translation unit may not be empty */
#endif
