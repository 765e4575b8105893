/*
 * backends/cpu/cpu_packed_avx512.h — the steps both AVX-512 VNNI kernels on the packed weights
 * (cpu_packed_avx512.c: few activation rows; cpu_packed_gemm_avx512.c: many) share: a 4-byte
 * group of an activation plane on every lane (folded into vpdpbusd's broadcast operand), and one
 * block's quant tile (cpu_packed.h) as eight u8 vectors. Include only inside those files'
 * __AVX512VNNI__ guard.
 */
#ifndef BASTION_CPU_PACKED_AVX512_H
#define BASTION_CPU_PACKED_AVX512_H

#include "cpu_packed.h"

#include <immintrin.h>
#include <string.h>

#define CPU_PK_ALWAYS static inline __attribute__((always_inline))

/* Activation bytes p[0..3] on all 16 lanes. */
CPU_PK_ALWAYS __m512i cpu_pk_bcast(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* The tile as u[e], e < 8, whose lane r holds row r's weights for activation elements
 * 4e .. 4e + 3: q8_0's eight vectors as stored (w + 128), or a q4 tile's four vectors split into
 * their low nibbles (elements 4v ..) and high nibbles (elements 16 + 4v ..). */
CPU_PK_ALWAYS void cpu_pk_unpack(bool q8, const uint8_t *tile, __m512i u[8])
{
    if (q8) {
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++)
            u[v] = _mm512_load_si512((const void *)(tile + 64 * v));
        return;
    }
    const __m512i low = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        const __m512i w = _mm512_load_si512((const void *)(tile + 64 * v));
        u[v] = _mm512_and_si512(w, low);
        u[v + 4] = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
    }
}

#endif /* BASTION_CPU_PACKED_AVX512_H */
