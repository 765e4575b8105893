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

/* --- one activation row (decode, a large GEMV): two blocks per 512-bit vector ---
 * With a single row nothing amortizes a block's decoding, and the 256-bit loop above spends
 * more instructions per weight byte than the memory delivers bytes (a 4096 x 14336 q4_0 GEMV
 * ran at ~0.4x the bandwidth, not limited by it). Here blocks i and i + 1 share every vector
 * instruction: one nibble unpack, two vpdpbusd, one conversion and one multiply-add per pair,
 * with lanes 0..7 holding block i's partial dots and 8..15 block i + 1's. The integer dots are
 * the same as the 256-bit loop's; only the order of the float sums differs. */

#define Q8Z_ALWAYS static inline __attribute__((always_inline))

Q8Z_ALWAYS __m512i q8z_dot2(__m512i u, __m512i hi, __m512i lo)
{
    return _mm512_dpbusd_epi32(
        _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, hi), 8), u, lo);
}

/* Two 32-byte planes (at p and p + stride) as one vector. */
Q8Z_ALWAYS __m512i q8z_pair(const void *p0, const void *p1)
{
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
        _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* [da0, sa0, da1, sa1]: the scales and sums of activation blocks a[0], a[1] (adjacent floats in
 * each block), in one register. */
Q8Z_ALWAYS __m128 q8z_act2(const cpu_q8_block *a)
{
    uint64_t x0, x1;
    memcpy(&x0, &a[0].d, sizeof x0);
    memcpy(&x1, &a[1].d, sizeof x1);
    return _mm_castsi128_ps(_mm_set_epi64x((long long)x1, (long long)x0));
}

/* The first two halves of weight blocks b0, b1 as [h0(b0), h1(b0), h0(b1), h1(b1)]: d and, in
 * q4_1, m (in q4_0 / q8_0 the second half is a weight byte pair, ignored). One conversion for
 * both blocks instead of two to four scalar ones. */
Q8Z_ALWAYS __m128 q8z_wscales(const uint8_t *b0, const uint8_t *b1)
{
    uint32_t x0, x1;
    memcpy(&x0, b0, sizeof x0);
    memcpy(&x1, b1, sizeof x1);
    return _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)x0), (int)x1, 1));
}

/* The nibbles of two q4 blocks (16 bytes each at q0, q1) as [lo0 hi0 lo1 hi1] (16 u8 each):
 * the element order of the activation blocks. */
Q8Z_ALWAYS __m512i q8z_nibbles2(const uint8_t *q0, const uint8_t *q1)
{
    const __m256i t = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)q0)),
        _mm_loadu_si128((const __m128i *)(const void *)q1), 1);
    const __m256i m = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(t, m), hi = _mm256_and_si256(_mm256_srli_epi16(t, 4), m);
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); /* lo0 lo1 hi0 hi1 */
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}

/* Blocks b0, b1 (kind 0 q4_0, 1 q4_1, 2 q8_0) against activation blocks a[0], a[1] whose planes
 * are H, L and whose [d, s] pairs are A (q8z_act2). The scales [d_w * d_a] go lane-wise onto the
 * integer dots; q4_1's min * s_a and q4_0's d_w * s_a (times -8 at the end) are summed in
 * lanes 1 and 3 of *ex. */
Q8Z_ALWAYS __m512 q8z_pair_block(int kind, const uint8_t *b0, const uint8_t *b1, __m512i H,
                                 __m512i L, __m128 A, __m512 acc, __m128 *ex)
{
    const __m512i idx = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    __m128 ws = q8z_wscales(b0, b1);
    if (kind != 1)
        ws = _mm_moveldup_ps(ws); /* [d0, d0, d1, d1] */
    const __m128 prod = _mm_mul_ps(ws, A);
    if (kind != 2)
        *ex = _mm_add_ps(*ex, prod);
    __m512i p;
    if (kind == 2) {
        const __m512i w = q8z_pair(b0 + 2, b1 + 2);
        const __mmask64 neg = _mm512_movepi8_mask(w);
        const __m512i u = _mm512_abs_epi8(w), zero = _mm512_setzero_si512();
        p = q8z_dot2(u, _mm512_mask_sub_epi8(H, neg, zero, H), /* the sign moves to a */
                     _mm512_mask_sub_epi8(L, neg, zero, L));
    } else {
        const int off = kind == 1 ? 4 : 2;
        p = q8z_dot2(q8z_nibbles2(b0 + off, b1 + off), H, L);
    }
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                           _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(prod)), acc);
}

/* The per-row extra term from the lanes q8z_pair_block summed. */
Q8Z_ALWAYS float q8z_extra(int kind, __m128 ex)
{
    if (kind == 2)
        return 0.0f;
    const float e = _mm_cvtss_f32(_mm_shuffle_ps(ex, ex, 1)) + _mm_cvtss_f32(_mm_shuffle_ps(ex, ex, 3));
    return kind == 0 ? -8.0f * e : e;
}

Q8Z_ALWAYS float q8z_row(int kind, const uint8_t *w, const cpu_q8_block *a, int64_t nb)
{
    const size_t bytes = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    __m128 ex = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) { /* two independent chains hide the multiply-add latency */
        const uint8_t *b = w + (size_t)i * bytes;
        _mm_prefetch((const char *)(b + 4096), _MM_HINT_T0); /* see cpu_q8dot_simd.h */
        acc0 = q8z_pair_block(kind, b, b + bytes, q8z_pair(a[i].hi, a[i + 1].hi),
                              q8z_pair(a[i].lo, a[i + 1].lo), q8z_act2(a + i), acc0, &ex);
        acc1 = q8z_pair_block(kind, b + 2 * bytes, b + 3 * bytes,
                              q8z_pair(a[i + 2].hi, a[i + 3].hi), q8z_pair(a[i + 2].lo, a[i + 3].lo),
                              q8z_act2(a + i + 2), acc1, &ex);
    }
    for (; i + 2 <= nb; i += 2) {
        const uint8_t *b = w + (size_t)i * bytes;
        acc0 = q8z_pair_block(kind, b, b + bytes, q8z_pair(a[i].hi, a[i + 1].hi),
                              q8z_pair(a[i].lo, a[i + 1].lo), q8z_act2(a + i), acc0, &ex);
    }
    float out = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + q8z_extra(kind, ex);
    if (i < nb) { /* an odd last block: the 256-bit loop's block step */
        __m256 acc = _mm256_setzero_ps();
        float extra = 0.0f;
        q8s_block(kind, w + (size_t)i * bytes, a, nb, i, 1, &acc, &extra);
        out += q8s_hsum(acc) + extra;
    }
    return out;
}

/* Four consecutive weight rows against one activation row: the activation planes of each block
 * pair are loaded once for the four (rows of SmolLM2's matrices are only 18 or 48 blocks, so
 * per-row work weighs too). */
Q8Z_ALWAYS void q8z_rows4(int kind, const uint8_t *w, int64_t ws, const cpu_q8_block *a,
                          int64_t nb, float *out)
{
    const size_t bytes = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    __m512 acc[4];
    __m128 ex[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        acc[r] = _mm512_setzero_ps();
        ex[r] = _mm_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m512i H = q8z_pair(a[i].hi, a[i + 1].hi), L = q8z_pair(a[i].lo, a[i + 1].lo);
        const __m128 A = q8z_act2(a + i);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *b0 = w + r * ws + (size_t)i * bytes;
            _mm_prefetch((const char *)(b0 + 4096), _MM_HINT_T0); /* see cpu_q8dot_simd.h */
            acc[r] = q8z_pair_block(kind, b0, b0 + bytes, H, L, A, acc[r], &ex[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        out[r] = _mm512_reduce_add_ps(acc[r]) + q8z_extra(kind, ex[r]);
        if (i < nb) { /* an odd last block */
            __m256 t = _mm256_setzero_ps();
            float e = 0.0f;
            q8s_block(kind, w + r * ws + (size_t)i * bytes, a, nb, i, 1, &t, &e);
            out[r] += q8s_hsum(t) + e;
        }
    }
}

/* Long rows gain nothing from sharing the activation loads (they stay in L1 anyway) and four
 * weight streams at once measured slower than one (4096 x 14336 q4_0: 1.4 against 1.0 ms). */
#define Q8Z_ROWS4_MAX_NB 64

#define Q8Z_MULTI(fname, kind)                                                               \
    void fname(const uint8_t *w, int64_t ws, int64_t n, const cpu_q8_block *a, int64_t nb,  \
               float *out)                                                                  \
    {                                                                                       \
        int64_t r = 0;                                                                      \
        for (; nb <= Q8Z_ROWS4_MAX_NB && r + 4 <= n; r += 4)                                \
            q8z_rows4(kind, w + r * ws, ws, a, nb, out + r);                                \
        for (; r < n; r++)                                                                  \
            out[r] = q8z_row(kind, w + r * ws, a, nb);                                      \
    }
Q8Z_MULTI(cpu_q8z_multi_q4_0, 0)
Q8Z_MULTI(cpu_q8z_multi_q4_1, 1)
#undef Q8Z_MULTI

/* q8_0 stays on the 256-bit block loop (VNNI on 256-bit registers here): with two blocks per
 * 512-bit vector its weights need the sign moved onto both activation planes, two masked
 * subtractions per block pair, and that measured slower on every GEMV shape (bench ops, one
 * run: 4096x14336 20.6 against 43.3 GB/s, 49152x576 43.7 against 53.2 GB/s). */
void cpu_q8z_multi_q8_0(const uint8_t *w, int64_t ws, int64_t n, const cpu_q8_block *a,
                        int64_t nb, float *out)
{
    for (int64_t r = 0; r < n; r++)
        q8s_dot_q8_0(w + r * ws, a, nb, 1, out + r);
}

#define Q8Z_ENTRY(fname, kind, wide)                                                      \
    static void fname(const uint8_t *w, const cpu_q8_block *a, int64_t nb, int64_t mc,    \
                      float *out)                                                         \
    {                                                                                     \
        if (mc == 1)                                                                      \
            out[0] = q8z_row(kind, w, a, nb);                                             \
        else                                                                              \
            wide(w, a, nb, mc, out);                                                      \
    }
Q8Z_ENTRY(q8z_dot_q4_0, 0, q8s_dot_q4_0)
Q8Z_ENTRY(q8z_dot_q4_1, 1, q8s_dot_q4_1)
#undef Q8Z_ENTRY

const cpu_q8dot_impl cpu_q8dot_avx512vnni = {"q8x2dot_avx512vnni",
                                             CPU_ISA_AVX2 | CPU_ISA_AVX512 | CPU_ISA_AVX512VNNI,
                                             q8z_dot_q4_0, q8z_dot_q4_1, q8s_dot_q8_0, NULL, NULL,
                                             cpu_q8_quantize_avx512, NULL, NULL};
#else
typedef int cpu_q8dot_avx512_not_built; /* a translation unit may not be empty */
#endif
