/*
 * q8x2dot block loops for AVX2 + FMA + F16C (maddubs + madd). Compiled with -mavx2 -mfma -mf16c
 * (backends/cpu/CMakeLists.txt) and called only when cpu_isa_mask() has CPU_ISA_AVX2.
 */
#include "cpu_isa.h"
#include "cpu_q8dot.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
/* maddubs cannot overflow: |u| <= 128 (q8_0's |w|) and |s| <= 127, so pairs stay <= 32512. */
#define Q8_DOT1(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define Q8_DOT2(u, hi, lo) \
    _mm256_add_epi32(_mm256_slli_epi32(Q8_DOT1(u, hi), 8), Q8_DOT1(u, lo))
#include "cpu_q8dot_simd.h"

const cpu_q8dot_impl cpu_q8dot_avx2 = {"q8x2dot_avx2", CPU_ISA_AVX2, q8s_dot_q4_0, q8s_dot_q4_1,
                                       q8s_dot_q8_0, NULL, NULL,
                                       cpu_q8_quantize_avx2, NULL, NULL};
#else
typedef int cpu_q8dot_avx2_not_built; /* a translation unit may not be empty */
#endif
