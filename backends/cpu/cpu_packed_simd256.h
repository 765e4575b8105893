/*
 * backends/cpu/cpu_packed_simd256.h — the GEMV on the packed weight copy (cpu_packed.h) with
 * 256-bit vectors, for decode and, 4 rows at a time, a prompt's rows; included by
 * cpu_packed_avx2.c (plain AVX2: maddubs + madd) and cpu_packed_avxvnni.c (AVX-VNNI: vpdpbusd)
 * after each defines PK2_VNNI (0 or 1) and PK2_ENTRY (the entry point's name). Not a normal
 * header: no include guard, included once per file.
 *
 * As the AVX-512 kernel (cpu_packed_avx512.c), but a 64-byte line of a tile holds 16 rows and a
 * ymm 8, so each block is taken in two halves of 8 rows: per half and activation row, eight
 * weight vectors (a q4 tile's four split into low and high nibbles, or q8_0's eight) meet the
 * activation's eight 4-byte groups of each plane broadcast to all lanes, with no shuffles and no
 * horizontal sums; the two planes' dots are combined exactly in int32 (256 * hi + lo). The
 * native-layout loops (cpu_q8dot_simd.h) decode one row's block at a time and end every row with
 * a horizontal sum: q4_0 4096 x 14336 on two threads streamed at 0.53 of a same-size read.
 *
 * Integer dots, per lane (8-bit products of weight u and activation a, |a| <= 127):
 *  - AVX-VNNI: vpdpbusd sums four u8 x s8 products into int32 exactly; q8_0's weights are the
 *    stored w + 128, and the -128 * s_a is applied with the block's scale, as AVX-512 does.
 *  - AVX2, q4: maddubs makes int16 sums of two products, at most 2 * 15 * 127 = 3810, so the
 *    eight groups of a block add up in int16 (at most 30480) before one madd widens them.
 *  - AVX2, q8_0: w + 128 times a could reach 2 * 255 * 127 and saturate maddubs, so the weight is
 *    made signed again (w = stored ^ 0x80) and maddubs gets |w| and a carrying w's sign: at most
 *    2 * 128 * 127 = 32512 per pair; the dot is then of w itself and needs no offset.
 * Each block's contribution d_w * (d_a * dot + offset * s_a) (q4_1: + m * s_a) goes into one f32
 * accumulator per half and activation row.
 */
#include <immintrin.h>
#include <string.h>

#define PK2_ALWAYS static inline __attribute__((always_inline))

enum { PK2_Q4_0, PK2_Q4_1, PK2_Q8_0 };

/* Activation bytes p[0..3] on all 8 lanes. */
PK2_ALWAYS __m256i pk2_bcast(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* Rows 8h..8h+7's u8 weights for activation elements 4e..4e+3 of the block's tile. */
PK2_ALWAYS __m256i pk2_weights(int kind, const uint8_t *tile, int e, int h)
{
    if (kind == PK2_Q8_0)
        return _mm256_load_si256((const __m256i *)(const void *)(tile + 64 * e + 32 * h));
    const __m256i w =
        _mm256_load_si256((const __m256i *)(const void *)(tile + 64 * (e & 3) + 32 * h));
    const __m256i low = _mm256_set1_epi8(0x0f);
    return e < 4 ? _mm256_and_si256(w, low) : _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
}

/* Per lane (row 8h + lane): 256 * dot(w, hi) + dot(w, lo) over the block (see the top). */
PK2_ALWAYS __m256i pk2_dot(int kind, const uint8_t *tile, int h, const cpu_q8_block *b)
{
    __m256i ih = _mm256_setzero_si256(), il = ih;
#if PK2_VNNI
    __m256i ih2 = ih, il2 = ih; /* two chains per plane */
#pragma GCC unroll 8
    for (int e = 0; e < 8; e += 2) {
        const __m256i u0 = pk2_weights(kind, tile, e, h), u1 = pk2_weights(kind, tile, e + 1, h);
        ih = _mm256_dpbusd_avx_epi32(ih, u0, pk2_bcast(b->hi + 4 * e));
        il = _mm256_dpbusd_avx_epi32(il, u0, pk2_bcast(b->lo + 4 * e));
        ih2 = _mm256_dpbusd_avx_epi32(ih2, u1, pk2_bcast(b->hi + 4 * e + 4));
        il2 = _mm256_dpbusd_avx_epi32(il2, u1, pk2_bcast(b->lo + 4 * e + 4));
    }
    ih = _mm256_add_epi32(ih, ih2);
    il = _mm256_add_epi32(il, il2);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    if (kind == PK2_Q8_0) {
#pragma GCC unroll 8
        for (int e = 0; e < 8; e++) {
            const __m256i w = _mm256_xor_si256(pk2_weights(kind, tile, e, h),
                                               _mm256_set1_epi8((char)0x80));
            const __m256i u = _mm256_abs_epi8(w);
            ih = _mm256_add_epi32(ih, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                          u, _mm256_sign_epi8(pk2_bcast(b->hi + 4 * e), w)),
                                                        ones));
            il = _mm256_add_epi32(il, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                          u, _mm256_sign_epi8(pk2_bcast(b->lo + 4 * e), w)),
                                                        ones));
        }
    } else {
        __m256i th = _mm256_setzero_si256(), tl = th;
#pragma GCC unroll 8
        for (int e = 0; e < 8; e++) {
            const __m256i u = pk2_weights(kind, tile, e, h);
            th = _mm256_add_epi16(th, _mm256_maddubs_epi16(u, pk2_bcast(b->hi + 4 * e)));
            tl = _mm256_add_epi16(tl, _mm256_maddubs_epi16(u, pk2_bcast(b->lo + 4 * e)));
        }
        ih = _mm256_madd_epi16(th, ones);
        il = _mm256_madd_epi16(tl, ones);
    }
#endif
    return _mm256_add_epi32(_mm256_slli_epi32(ih, 8), il);
}

/* Group g against activation rows a + j * nb, j < M: out[j * ldo + 16g + r]. The call's groups
 * are one stream (len bytes from begin), prefetched cpu_packed_pf_dist bytes ahead of the block
 * read. */
PK2_ALWAYS void pk2_group(int kind, int M, const cpu_packed *p, int64_t g, const cpu_q8_block *a,
                          float *out, int64_t ldo, const uint8_t *begin, size_t len)
{
    const int64_t nb = p->nb;
    const size_t qbytes = kind == PK2_Q8_0 ? 512 : 256;
    const size_t step = qbytes + (kind == PK2_Q4_1 ? 64 : 32); /* stream bytes per block */
    const size_t pair = cpu_packed_pair_bytes(qbytes, kind == PK2_Q4_1 ? BST_DTYPE_Q4_1
                                                                        : BST_DTYPE_Q4_0);
    const float off = kind == PK2_Q4_0 ? -8.0f : kind == PK2_Q8_0 && PK2_VNNI ? -128.0f : 0.0f;
    const uint8_t *q = cpu_packed_group(p, g);
    size_t pf = (size_t)(q - begin) + cpu_packed_pf_dist(len);
    __m256 acc[CPU_Q8_MAX_ROWS][2];
#pragma GCC unroll 4
    for (int j = 0; j < M; j++)
        acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int64_t kb = 0; kb < nb; kb++, pf += step) {
        const uint8_t *tile = q + (size_t)(kb >> 1) * pair + (size_t)(kb & 1) * qbytes;
        const uint8_t *d = q + (size_t)(kb >> 1) * pair + 2 * qbytes + (size_t)(kb & 1) * 32;
        cpu_packed_prefetch_range(begin, len, pf, step);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 dw =
                _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(d + 16 * h)));
#pragma GCC unroll 4
            for (int j = 0; j < M; j++) {
                const cpu_q8_block *b = a + j * nb + kb;
                const __m256 t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pk2_dot(kind, tile, h, b)),
                                                 _mm256_set1_ps(b->d), _mm256_set1_ps(off * b->s));
                acc[j][h] = _mm256_fmadd_ps(dw, t, acc[j][h]);
                if (kind == PK2_Q4_1) {
                    const __m256 m = _mm256_cvtph_ps(
                        _mm_load_si128((const __m128i *)(const void *)(d + 64 + 16 * h)));
                    acc[j][h] = _mm256_fmadd_ps(m, _mm256_set1_ps(b->s), acc[j][h]);
                }
            }
        }
    }
    const int64_t n0 = g * CPU_PACK_ROWS, left = p->rows - n0;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const int64_t here = left - 8 * h < 8 ? left - 8 * h : 8;
        const __m256i keep =
            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(here > 0 ? here : 0)), lane);
#pragma GCC unroll 4
        for (int j = 0; j < M; j++)
            _mm256_maskstore_ps(out + j * ldo + n0 + 8 * h, keep, acc[j][h]);
    }
}

/* One group for M activation rows, an instance per dtype and M. */
#define PK2_GROUP(name, kind, M)                                                               \
    static void name(const cpu_packed *p, int64_t g, const cpu_q8_block *a, float *out,       \
                     int64_t ldo, const uint8_t *begin, size_t len)                           \
    {                                                                                         \
        pk2_group(kind, M, p, g, a, out, ldo, begin, len);                                    \
    }
#define PK2_KIND(kind, pre)                                                                    \
    PK2_GROUP(pre##_1, kind, 1) PK2_GROUP(pre##_2, kind, 2) PK2_GROUP(pre##_3, kind, 3)        \
        PK2_GROUP(pre##_4, kind, 4)
PK2_KIND(PK2_Q4_0, pk2_q4_0)
PK2_KIND(PK2_Q4_1, pk2_q4_1)
PK2_KIND(PK2_Q8_0, pk2_q8_0)
#undef PK2_KIND
#undef PK2_GROUP

typedef void (*pk2_group_fn)(const cpu_packed *p, int64_t g, const cpu_q8_block *a, float *out,
                             int64_t ldo, const uint8_t *begin, size_t len);
static const pk2_group_fn pk2_table[3][CPU_Q8_MAX_ROWS] = {
    {pk2_q4_0_1, pk2_q4_0_2, pk2_q4_0_3, pk2_q4_0_4},
    {pk2_q4_1_1, pk2_q4_1_2, pk2_q4_1_3, pk2_q4_1_4},
    {pk2_q8_0_1, pk2_q8_0_2, pk2_q8_0_3, pk2_q8_0_4},
};

/* Groups [g0, g1), each against all m_count activation rows, CPU_Q8_MAX_ROWS at a time, while
 * the group's weights (16 rows) stay in L1 / L2: a prompt's rows then read the weights from
 * memory once. The stream's first cpu_packed_pf_dist bytes are requested at once, so that a
 * short call does not wait on one miss after another. */
void PK2_ENTRY(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
               int64_t m_count, float *out, int64_t ldo)
{
    const int kind = p->dtype == BST_DTYPE_Q4_0 ? PK2_Q4_0
                     : p->dtype == BST_DTYPE_Q4_1 ? PK2_Q4_1
                                                   : PK2_Q8_0;
    const uint8_t *begin = cpu_packed_group(p, g0);
    const size_t len = (size_t)(g1 - g0) * p->group_bytes;
    cpu_packed_prefetch_range(begin, len, 0, cpu_packed_pf_dist(len));
    for (int64_t g = g0; g < g1; g++)
        for (int64_t j = 0; j < m_count; j += CPU_Q8_MAX_ROWS) {
            const int64_t mc = m_count - j < CPU_Q8_MAX_ROWS ? m_count - j : CPU_Q8_MAX_ROWS;
            pk2_table[kind][mc - 1](p, g, a + j * p->nb, out + j * ldo, ldo, begin, len);
        }
}
