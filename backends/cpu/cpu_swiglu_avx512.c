/*
 * SwiGLU's elementwise step, g = silu(g) * u, on 16 lanes (cpu_fused.h, cpu_swiglu_fn): with the
 * int8 kernels the fused FFN's matmuls got fast enough that a libm expf per hidden element became
 * a large part of a prompt's FFN. silu(g) = g / (1 + exp(-g)); a NaN g stays NaN through the
 * product with g. silu alone too, for an FFN the fused kernels do not take (f16 / bf16 weights),
 * which the runtime lowers to silu and mul: the reference's double exp cost 6 us a 1536-wide
 * decode row. Compiled with the AVX-512 flags, called only when cpu_isa_mask() has
 * CPU_ISA_AVX512.
 */
#include "cpu_fused.h"

#if defined(__AVX512F__)
#include "cpu_exp_avx512.h"

void cpu_swiglu_avx512(float *g, const float *u, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = cpu_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        const __m512 x = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 e = cpu_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        const __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

/* silu of 16 lanes. */
static inline __m512 silu16(__m512 x)
{
    const __m512 e = cpu_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

void cpu_silu_avx512(const float *x, float *z, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(z + i, silu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(z + i, k, silu16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}
#else
typedef int cpu_swiglu_avx512_not_built; /* a translation unit may not be empty */
#endif
