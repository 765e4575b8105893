/*
 * backends/cpu/cpu_q8dot_simd.h — the 256-bit q8dot block loops, included by each ISA's file
 * (cpu_q8dot_avx2.c, cpu_q8dot_avx512.c) after it defines Q8_DOT2(u, hi, lo): per int32 lane,
 * 256 * (sum of four adjacent u8 x s8 products of u and hi) + (the same with lo). Only that
 * integer dot differs between ISAs (maddubs + madd on AVX2, vpdpbusd with VNNI); keeping one
 * copy of the loops keeps their block decoding identical. Not a normal header: no include guard, included once per file.
 */
#include <immintrin.h>
#include <string.h>

#define Q8S_ALWAYS static inline __attribute__((always_inline))

Q8S_ALWAYS float q8s_hsum(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

Q8S_ALWAYS float q8s_half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* 16 bytes of packed nibbles -> 32 u8: low nibbles are elements 0..15, high ones 16..31. */
Q8S_ALWAYS __m256i q8s_nibbles(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)(const void *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

Q8S_ALWAYS __m256i q8s_load(const int8_t *qs)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)qs);
}

/* One weight block (at b) against block i of mc activation rows, into accumulator set acc/extra.
 * kind 0: q4_0, 1: q4_1, 2: q8_0. */
Q8S_ALWAYS void q8s_block(int kind, const uint8_t *b, const cpu_q8_block *a, int64_t nb,
                          int64_t i, int mc, __m256 *acc, float *extra)
{
    const float d = q8s_half(b);
    if (kind == 2) {
        __m256i qw = q8s_load((const int8_t *)(const void *)(b + 2));
        __m256i u = _mm256_sign_epi8(qw, qw); /* |w| as u8; the sign moves to a */
        _Pragma("GCC unroll 4") for (int j = 0; j < mc; j++) {
            const cpu_q8_block *ab = a + (int64_t)j * nb + i;
            __m256i p = Q8_DOT2(u, _mm256_sign_epi8(q8s_load(ab->hi), qw),
                                _mm256_sign_epi8(q8s_load(ab->lo), qw));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * ab->d), _mm256_cvtepi32_ps(p), acc[j]);
        }
    } else {
        const float m = kind == 1 ? q8s_half(b + 2) : -8.0f * d;
        __m256i u = q8s_nibbles(b + (kind == 1 ? 4 : 2));
        _Pragma("GCC unroll 4") for (int j = 0; j < mc; j++) {
            const cpu_q8_block *ab = a + (int64_t)j * nb + i;
            __m256i p = Q8_DOT2(u, q8s_load(ab->hi), q8s_load(ab->lo));
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * ab->d), _mm256_cvtepi32_ps(p), acc[j]);
            /* q4_1: + min * d_a * sum(qa); q4_0: the -8 offset, - 8 * d * d_a * sum(qa). */
            extra[j] += m * ab->s;
        }
    }
}

/* mc is a constant at every call site, so the per-row accumulators live in registers. Even and
 * odd blocks go to separate accumulators: with one activation row (decode) a single chain of
 * dependent FMAs would bound the loop by FMA latency rather than by the weight stream. The
 * weight stream is prefetched 4 KiB ahead: cache-cold, a nearer prefetch left the loop waiting
 * on memory (a 4096 x 14336 q4_0 GEMV went from 1.7 to 1.0 ms with the one-row loop of
 * cpu_q8dot_avx512.c when its prefetch moved from 640 bytes to 4 KiB ahead). */
Q8S_ALWAYS void q8s_rows(int kind, const uint8_t *w, const cpu_q8_block *a, int64_t nb, int mc,
                         float *out)
{
    __m256 acc0[CPU_Q8_MAX_ROWS], acc1[CPU_Q8_MAX_ROWS];
    float extra0[CPU_Q8_MAX_ROWS], extra1[CPU_Q8_MAX_ROWS];
    _Pragma("GCC unroll 4") for (int j = 0; j < mc; j++) {
        acc0[j] = acc1[j] = _mm256_setzero_ps();
        extra0[j] = extra1[j] = 0.0f;
    }
    const size_t bytes = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const uint8_t *b = w + (size_t)i * bytes;
        _mm_prefetch((const char *)(b + 4096), _MM_HINT_T0);
        q8s_block(kind, b, a, nb, i, mc, acc0, extra0);
        q8s_block(kind, b + bytes, a, nb, i + 1, mc, acc1, extra1);
    }
    if (i < nb)
        q8s_block(kind, w + (size_t)i * bytes, a, nb, i, mc, acc0, extra0);
    _Pragma("GCC unroll 4") for (int j = 0; j < mc; j++)
        out[j] = q8s_hsum(_mm256_add_ps(acc0[j], acc1[j])) + (extra0[j] + extra1[j]);
}

#define Q8S_ENTRY(fname, kind)                                                             \
    static void fname(const uint8_t *w, const cpu_q8_block *a, int64_t nb, int64_t mc,    \
                      float *out)                                                         \
    {                                                                                     \
        switch (mc) {                                                                     \
        case 1: q8s_rows(kind, w, a, nb, 1, out); break;                                  \
        case 2: q8s_rows(kind, w, a, nb, 2, out); break;                                  \
        case 3: q8s_rows(kind, w, a, nb, 3, out); break;                                  \
        default: q8s_rows(kind, w, a, nb, 4, out); break;                                 \
        }                                                                                 \
    }
Q8S_ENTRY(q8s_dot_q4_0, 0)
Q8S_ENTRY(q8s_dot_q4_1, 1)
Q8S_ENTRY(q8s_dot_q8_0, 2)
#undef Q8S_ENTRY
