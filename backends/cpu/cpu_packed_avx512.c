/*
 * The decode GEMV on the packed weight copy (cpu_packed.h) with AVX-512 VNNI: one zmm lane per
 * weight row of a 16-row group. Per block and activation row, eight 64-byte weight vectors (the
 * q4 tile's four vectors split into low and high nibbles by and / shift, or q8_0's eight as
 * stored) meet the activation's eight 4-byte groups of each plane, broadcast to all lanes: 16
 * vpdpbusd advance 16 rows by a whole block, with no shuffles and no horizontal sums. The two
 * planes' dots are combined exactly in int32 (256 * hi_dot + lo_dot, as cpu_packed_gemv_scalar
 * does), converted once, and the 16 rows' f16 scales arrive with one vcvtph2ps. The offsets
 * (q4_0's -8, q8_0's -128 of the XOR 0x80 storage, q4_1's min) are summed separately as
 * d_w * s_a (or m * s_a) and applied once per row at the end. Up to CPU_Q8_MAX_ROWS activation
 * rows share each weight unpack; more rows are taken in chunks of that many.
 *
 * With one activation row this runs ~3x faster than the memory delivers weights (warm in L2,
 * one core: ~85 GB/s of q4_0 against ~25-30 of the native-layout loops), so a cache-cold GEMV is
 * bound by how many weight lines are in flight: the stream is prefetched cpu_packed_pf_dist
 * bytes ahead (cpu_packed.h), and a call's first that many bytes are requested at once (see
 * pk_group).
 *
 * Compiled with the AVX-512 VNNI flags (CMakeLists.txt) and called only when cpu_isa_mask() has
 * CPU_ISA_AVX512VNNI (cpu_packed_kernel).
 */
#include "cpu_packed.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__FMA__) && defined(__F16C__)
#include "cpu_packed_avx512.h"
#include <immintrin.h>
#include <string.h>

#define PK_ALWAYS static inline __attribute__((always_inline))

enum { PK_Q4_0, PK_Q4_1, PK_Q8_0 };

/* Per lane: the exact integer dot of the lane's row block with activation block b,
 * 256 * dot(w, hi) + dot(w, lo), with w unsigned (q4: 0..15, q8_0: w + 128 in 0..255) and
 * |hi|, |lo| <= 127: at most 256 * 32 * 255 * 127 + 32 * 255 * 127 < 2^31, no overflow. Two chains
 * per plane, four instructions deep each. */
PK_ALWAYS __m512i pk_dot(const __m512i w[8], const cpu_q8_block *b)
{
    __m512i h0 = _mm512_setzero_si512(), h1 = h0, l0 = h0, l1 = h0;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        h0 = _mm512_dpbusd_epi32(h0, w[i], cpu_pk_bcast(b->hi + 4 * i));
        h1 = _mm512_dpbusd_epi32(h1, w[4 + i], cpu_pk_bcast(b->hi + 16 + 4 * i));
        l0 = _mm512_dpbusd_epi32(l0, w[i], cpu_pk_bcast(b->lo + 4 * i));
        l1 = _mm512_dpbusd_epi32(l1, w[4 + i], cpu_pk_bcast(b->lo + 16 + 4 * i));
    }
    return _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(h0, h1), 8),
                            _mm512_add_epi32(l0, l1));
}

/* Bytes of the weight stream each block consumes on average (its tile plus its d and m entries):
 * the software prefetch advances by this much per block. */
PK_ALWAYS size_t pk_block_stride(int kind)
{
    return kind == PK_Q8_0 ? 512 + 32 : kind == PK_Q4_1 ? 256 + 64 : 256 + 32;
}

/* Group g against activation rows a + j * nb, j < M: out[j * ldo + 16g + r]. acc holds
 * sum d_w * d_a * dot, ex sum d_w * s_a (q4_0, q8_0) or m * s_a (q4_1). A call's groups are one
 * contiguous stream (len bytes from begin) read front to back, each block's scales next to its
 * tile (cpu_packed.h); lines cpu_packed_pf_dist bytes ahead of the block being read are
 * prefetched (the hardware prefetcher alone leaves a single stream well short of the memory's
 * bandwidth). */
PK_ALWAYS void pk_group(int kind, int M, const cpu_packed *p, int64_t g, const cpu_q8_block *a,
                        float *out, int64_t ldo, const uint8_t *begin, size_t len)
{
    const int64_t nb = p->nb;
    const size_t qbytes = kind == PK_Q8_0 ? 512 : 256, step = pk_block_stride(kind);
    const size_t pair = cpu_packed_pair_bytes(qbytes, kind == PK_Q4_1 ? BST_DTYPE_Q4_1
                                                                        : BST_DTYPE_Q4_0);
    const uint8_t *q = cpu_packed_group(p, g);
    size_t pf = (size_t)(q - begin) + cpu_packed_pf_dist(len);
    __m512 acc[CPU_Q8_MAX_ROWS], ex[CPU_Q8_MAX_ROWS];
#pragma GCC unroll 4
    for (int j = 0; j < M; j++) {
        acc[j] = _mm512_setzero_ps();
        ex[j] = _mm512_setzero_ps();
    }
    for (int64_t kb = 0; kb < nb; kb++, pf += step) {
        const uint8_t *tile = q + (size_t)(kb >> 1) * pair + (size_t)(kb & 1) * qbytes;
        const uint16_t *d = (const uint16_t *)(const void *)(q + (size_t)(kb >> 1) * pair +
                                                             2 * qbytes + (size_t)(kb & 1) * 32);
        cpu_packed_prefetch_range(begin, len, pf, step);
        __m512i w[8];
        cpu_pk_unpack(kind == PK_Q8_0, tile, w);
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)d));
        const __m512 dm =
            kind == PK_Q4_1
                ? _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(const void *)(d + 32)))
                : dw;
#pragma GCC unroll 4
        for (int j = 0; j < M; j++) {
            const cpu_q8_block *b = a + j * nb + kb;
            const __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(pk_dot(w, b)), _mm512_set1_ps(b->d));
            acc[j] = _mm512_fmadd_ps(dw, s, acc[j]);
            ex[j] = _mm512_fmadd_ps(dm, _mm512_set1_ps(b->s), ex[j]);
        }
    }
    const int64_t n0 = g * CPU_PACK_ROWS, left = p->rows - n0;
    const __mmask16 keep =
        (__mmask16)(left >= CPU_PACK_ROWS ? 0xffffu : (1u << (uint32_t)left) - 1u);
    const float off = kind == PK_Q4_0 ? -8.0f : kind == PK_Q8_0 ? -128.0f : 1.0f;
#pragma GCC unroll 4
    for (int j = 0; j < M; j++) {
        const __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(off), ex[j], acc[j]);
        _mm512_mask_storeu_ps(out + j * ldo + n0, keep, r);
    }
}

typedef void (*pk_groups_fn)(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                             float *out, int64_t ldo);

/* Groups [g0, g1): the stream's first cpu_packed_pf_dist bytes are requested at once, so that a
 * short call (a small matrix split over the threads) does not wait on one miss after another. */
#define PK_GROUPS(name, kind, M)                                                               \
    static void name(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,     \
                     float *out, int64_t ldo)                                                 \
    {                                                                                         \
        const uint8_t *begin = cpu_packed_group(p, g0);                                       \
        const size_t len = (size_t)(g1 - g0) * p->group_bytes;                                \
        cpu_packed_prefetch_range(begin, len, 0, cpu_packed_pf_dist(len));                    \
        for (int64_t g = g0; g < g1; g++)                                                     \
            pk_group(kind, M, p, g, a, out, ldo, begin, len);                                 \
    }
PK_GROUPS(pk_q4_0_1, PK_Q4_0, 1)
PK_GROUPS(pk_q4_0_2, PK_Q4_0, 2)
PK_GROUPS(pk_q4_0_3, PK_Q4_0, 3)
PK_GROUPS(pk_q4_0_4, PK_Q4_0, 4)
PK_GROUPS(pk_q4_1_1, PK_Q4_1, 1)
PK_GROUPS(pk_q4_1_2, PK_Q4_1, 2)
PK_GROUPS(pk_q4_1_3, PK_Q4_1, 3)
PK_GROUPS(pk_q4_1_4, PK_Q4_1, 4)
PK_GROUPS(pk_q8_0_1, PK_Q8_0, 1)
PK_GROUPS(pk_q8_0_2, PK_Q8_0, 2)
PK_GROUPS(pk_q8_0_3, PK_Q8_0, 3)
PK_GROUPS(pk_q8_0_4, PK_Q8_0, 4)
#undef PK_GROUPS

static const pk_groups_fn pk_table[3][CPU_Q8_MAX_ROWS] = {
    {pk_q4_0_1, pk_q4_0_2, pk_q4_0_3, pk_q4_0_4},
    {pk_q4_1_1, pk_q4_1_2, pk_q4_1_3, pk_q4_1_4},
    {pk_q8_0_1, pk_q8_0_2, pk_q8_0_3, pk_q8_0_4},
};

void cpu_packed_gemv_avx512(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                            int64_t m_count, float *out, int64_t ldo)
{
    /* cpu_packed_create packs only these three dtypes. */
    const int kind = p->dtype == BST_DTYPE_Q4_0 ? PK_Q4_0
                     : p->dtype == BST_DTYPE_Q4_1 ? PK_Q4_1
                                                   : PK_Q8_0;
    for (int64_t j = 0; j < m_count; j += CPU_Q8_MAX_ROWS) {
        const int64_t mc = m_count - j < CPU_Q8_MAX_ROWS ? m_count - j : CPU_Q8_MAX_ROWS;
        pk_table[kind][mc - 1](p, g0, g1, a + j * p->nb, out + j * ldo, ldo);
    }
}
#else
typedef int cpu_packed_avx512_not_built; /* a translation unit may not be empty */
#endif
