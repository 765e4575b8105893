/*
 * The AVX-512 activation quantizer for the q8x2dot blocks (see cpu_q8dot.h): the same arithmetic
 * as cpu_q8_quantize_scalar, 16 lanes at a time, so the blocks are bit-identical. The scalar loop
 * costs about 20 ns per element (libm roundf), which for a decode GEMV of the default model's
 * 576-wide rows is more than the dot products themselves. Compiled with the AVX-512 flags and
 * -ffp-contract=off (a fused multiply-subtract would round the residual differently), and used
 * only by the q8x2dot_avx512vnni variant.
 */
#include "cpu_q8dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#include <stddef.h>

_Static_assert(offsetof(cpu_q8_block, lo) == offsetof(cpu_q8_block, hi) + CPU_Q8_QK,
               "hi and lo are one 64-byte store");

/* Round half away from zero of v, clamped to +-127, as the scalar code; v holds no NaN (the
 * caller zeroes those lanes first, which is what the scalar code makes of them). Clamping to the
 * integer bounds before rounding gives the same as rounding and then clamping (both monotonic).
 * Truncating v + copysign(0.49999997f, v) then rounds exactly half away from zero: a tie k + 0.5
 * sums to within 2^-25 of k + 1 and rounds up to it, and anything below a tie stays below k + 1
 * (adding 0.5 instead would turn v = 0.49999997f into 1). Checked against the scalar rule for
 * every float of magnitude up to 128, and for infinities. */
static inline __m512i round_clamp(__m512 v)
{
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    /* (v & sign) | 0.49999997f in one vpternlogd: A = v, B = sign mask, C = the constant. */
    const __m512i half = _mm512_ternarylogic_epi32(
        _mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u),
        _mm512_set1_epi32(0x3effffff), 0xea); /* (A & B) | C */
    return _mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_castsi512_ps(half)));
}

/* x * id with NaN lanes as 0 (round_clamp's input). */
static inline __m512 scaled(const float *x, __m512 vid)
{
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x), vid);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
}

/* The reductions of up to 16 blocks at once: v[slot] holds a block's 16 partial maxima (or
 * sums), and lane i of the result is the reduction of v[pk_slot(i)]. Four levels of shuffles
 * halve the vectors and double the blocks per vector; reducing each block on its own (a
 * shuffle tree per block, then two scalar divisions) made one block's quantization a ~150-cycle
 * dependency chain, and 18 blocks (a 576-wide row) took ~0.3 us: more than a small GEMV's
 * weights take to stream on two threads. Max and integer add are exact in any order, so the
 * blocks are bit-identical to the scalar quantizer's. */
static inline int pk_slot(int i)
{
    static const int8_t base[4] = {0, 8, 4, 12}, off[4] = {0, 2, 1, 3};
    return base[i >> 2] + off[i & 3];
}

#define Q8_TREE(name, type, op, shuf128, shufps)                                                  \
    static inline type name(type v[16])                                                           \
    {                                                                                             \
        for (int k = 0; k < 8; k++) /* lanes 0-7: block k, 8-15: block k + 8 */                   \
            v[k] = op(shuf128(v[k], v[k + 8], _MM_SHUFFLE(1, 0, 1, 0)),                           \
                      shuf128(v[k], v[k + 8], _MM_SHUFFLE(3, 2, 3, 2)));                          \
        for (int k = 0; k < 4; k++) /* 128-bit lanes: k, k + 8, k + 4, k + 12 */                  \
            v[k] = op(shuf128(v[k], v[k + 4], _MM_SHUFFLE(2, 0, 2, 0)),                           \
                      shuf128(v[k], v[k + 4], _MM_SHUFFLE(3, 1, 3, 1)));                          \
        for (int k = 0; k < 2; k++) /* per 128-bit lane: two partials of k, two of k + 2 */       \
            v[k] = op(shufps(v[k], v[k + 2], _MM_SHUFFLE(1, 0, 1, 0)),                            \
                      shufps(v[k], v[k + 2], _MM_SHUFFLE(3, 2, 3, 2)));                           \
        return op(shufps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),                                    \
                  shufps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));                                   \
    }
/* _mm512_shuffle_ps on integer vectors (a macro: the selector must stay a constant). */
#define Q8_SHUFPS_EPI32(a, b, imm)                                                                \
    _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), imm))
Q8_TREE(q8_tree_max, __m512, _mm512_max_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps)
Q8_TREE(q8_tree_add, __m512i, _mm512_add_epi32, _mm512_shuffle_i32x4, Q8_SHUFPS_EPI32)
#undef Q8_TREE
#undef Q8_SHUFPS_EPI32

void cpu_q8_quantize_avx512(const float *x, cpu_q8_block *q, int64_t nb)
{
    for (int64_t c = 0; c < nb; c += 16, x += 16 * CPU_Q8_QK, q += 16) {
        const int n = nb - c < 16 ? (int)(nb - c) : 16;
        __m512 part[16];
        __m512i sums[16];
        for (int i = n; i < 16; i++) { /* a last short chunk's unused slots */
            part[pk_slot(i)] = _mm512_setzero_ps();
            sums[pk_slot(i)] = _mm512_setzero_si512();
        }
        for (int i = 0; i < n; i++) {
            /* max_ps returns its second operand when either is NaN: NaN lanes drop out. */
            const __m512 m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i * CPU_Q8_QK)),
                                           _mm512_setzero_ps());
            part[pk_slot(i)] =
                _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i * CPU_Q8_QK + 16)), m);
        }
        /* Lane i: block i's amax, d = amax / 127 and 1 / d (0 for an all-zero block), each the
         * same IEEE operation as the scalar code's. */
        const __m512 d = _mm512_div_ps(q8_tree_max(part), _mm512_set1_ps(127.0f));
        const __mmask16 nz = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
        float ids[16];
        _mm512_storeu_ps(ids, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d));
        const __m512 k256 = _mm512_set1_ps(256.0f);
        const __m512i order =
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        for (int i = 0; i < n; i++) {
            const float *xi = x + i * CPU_Q8_QK;
            const __m512 vid = _mm512_set1_ps(ids[i]);
            const __m512 v0 = scaled(xi, vid), v1 = scaled(xi + 16, vid);
            const __m512i h0 = round_clamp(v0), h1 = round_clamp(v1);
            const __m512i l0 = round_clamp(_mm512_mul_ps(_mm512_sub_ps(v0, _mm512_cvtepi32_ps(h0)), k256));
            const __m512i l1 = round_clamp(_mm512_mul_ps(_mm512_sub_ps(v1, _mm512_cvtepi32_ps(h1)), k256));
            /* hi[0..31] and lo[0..31] are 64 adjacent bytes: two saturating packs (a no-op on
             * +-127) leave 128-bit lane i as h0, h1, l0, l1's elements 4i .. 4i+3, and one
             * dword permutation puts them in order. */
            const __m512i packed = _mm512_packs_epi16(_mm512_packs_epi32(h0, h1),
                                                      _mm512_packs_epi32(l0, l1));
            _mm512_storeu_si512((void *)q[i].hi, _mm512_permutexvar_epi32(order, packed));
            sums[pk_slot(i)] = _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(h0, h1), 8),
                                                _mm512_add_epi32(l0, l1));
        }
        /* q.d = d / 256, q.s = q.d * (float)sum(256 h + l), lane by lane. */
        const __m512 qd = _mm512_div_ps(d, k256);
        float dv[16], sv[16];
        _mm512_storeu_ps(dv, qd);
        _mm512_storeu_ps(sv, _mm512_mul_ps(qd, _mm512_cvtepi32_ps(q8_tree_add(sums))));
        for (int i = 0; i < n; i++) {
            q[i].d = dv[i];
            q[i].s = sv[i];
        }
    }
}
#else
typedef int cpu_q8dot_quant_avx512_not_built; /* a translation unit may not be empty */
#endif
