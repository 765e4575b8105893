/*
 * q8x2dot block loops with AVX-512 VNNI (vpdpbusd on 256-bit vectors, which needs VNNI + VL):
 * one instruction per 32-byte plane where AVX2 needs two and an extra register. Compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512vnni (plus the AVX2 set) and called only when
 * cpu_isa_mask() has CPU_ISA_AVX512VNNI.
 */
#include "cpu_isa.h"
#include "cpu_q8dot.h"

#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__FMA__) && defined(__F16C__)
#define Q8_DOT2(u, hi, lo) \
    _mm256_dpbusd_epi32(_mm256_slli_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (hi)), 8), \
                        (u), (lo))
#include "cpu_q8dot_simd.h"

const cpu_q8dot_impl cpu_q8dot_avx512vnni = {"q8x2dot_avx512vnni",
                                             CPU_ISA_AVX2 | CPU_ISA_AVX512 | CPU_ISA_AVX512VNNI,
                                             q8s_dot_q4_0, q8s_dot_q4_1, q8s_dot_q8_0};
#else
typedef int cpu_q8dot_avx512_not_built; /* a translation unit may not be empty */
#endif
