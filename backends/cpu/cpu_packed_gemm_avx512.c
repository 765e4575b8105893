/*
 * The int8 GEMM on the packed weight copy (cpu_packed.h) with AVX-512 VNNI: many activation rows
 * (a prompt) against 16 interleaved weight rows at a time.
 *
 * For one weight group (16 rows, one per 32-bit lane) and one block, the quant tile is unpacked
 * once into eight u8 vectors (q4: the low and high nibbles of its four vectors; q8_0: its eight
 * vectors as stored, w + 128), each holding the same 4 elements of the 16 rows. Those eight
 * vectors then serve a tile of PG_T activation rows: per row, eight vpdpbusd against broadcast
 * 4-byte groups of the hi plane, a shift by 8, eight more for the lo plane (the exact int32
 * 256 * hi_dot + lo_dot of cpu_packed_gemv_scalar), one conversion and two multiply-adds: the
 * scale d_w * d_a and the offset term (q4_0: -8 d_w s_a, q8_0: -128 d_w s_a, q4_1: m s_a). The
 * block loop runs inside, so the PG_T x 16 float sums stay in registers for the whole row.
 *
 * Per row and block that is 16 vpdpbusd and about 5 other vector operations, plus 1.5 for the
 * unpack shared by the tile: one core measured ~85% of its peak vpdpbusd rate (a loop of
 * independent vpdpbusd) on SmolLM2's q4_1 / q8_0 shapes, from 13 rows up; 6-row tiles were 6%
 * slower, 10 and 12 rows within 3% (and at the register limit).
 *
 * Cache blocking: the activation rows are taken PG_MBLOCK_BYTES of quantized blocks at a time
 * (they stay in L2) and every group of the call sweeps that slice, tile after tile, while the
 * group's own quant panel (nb tiles: 13.5 KiB for q4_1 at K = 1536, 68 KiB for q8_0 at K = 4096)
 * stays in L1 / L2. The pool hands each call only a few groups, so the slice mostly matters for
 * large K. Cutting K into slices of 32 blocks as well (sums kept in the output between slices)
 * measured no faster at K = 4096 and is not done.
 *
 * Compiled with the AVX-512 VNNI flags (backends/cpu/CMakeLists.txt) and reached only through
 * cpu_packed_kernel() when cpu_isa_mask() has CPU_ISA_AVX512VNNI.
 */
#include "cpu_packed.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__F16C__)
#include "cpu_packed_avx512.h"
#include <immintrin.h>
#include <string.h>

#define PG_ALWAYS static inline __attribute__((always_inline))

enum {
    PG_T = 8,                     /* activation rows per register tile */
    PG_MBLOCK_BYTES = 256 * 1024, /* quantized activation bytes swept by all groups of a call */
};

/* Block kb (its tile and its d, and q4_1's m, line at d) of rows (<= PG_T, a constant after
 * inlining) activation rows from a (row t at a + t * nb) into acc[t]. */
PG_ALWAYS void pg_block(int kind, int rows, const uint8_t *tile, const uint16_t *d,
                        const cpu_q8_block *a, int64_t nb, int64_t kb, __m512 acc[PG_T])
{
    const __m512 offset = _mm512_set1_ps(kind == 0 ? -8.0f : -128.0f);
    __m512i u[8];
    cpu_pk_unpack(kind == 2, tile, u);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)d));
    /* What multiplies s_a: q4_1's minimum, else the offset of the unsigned weights. */
    const __m512 dc = kind == 1 ? _mm512_cvtph_ps(_mm256_loadu_si256(
                                      (const __m256i *)(const void *)(d + 32))) /* m */
                                : _mm512_mul_ps(dw, offset);
    /* The rows' integer dots advance together, one vpdpbusd per row in turn: written row
     * after row, each row's chain of 16 dependent vpdpbusd filled the scheduler before the
     * next row's could start, and one core ran 27% slower (1536 x 480 x 576 q4_1). */
    __m512i s[PG_T];
#pragma GCC unroll 8
    for (int t = 0; t < rows; t++)
        s[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int e = 0; e < 8; e++)
#pragma GCC unroll 8
        for (int t = 0; t < rows; t++)
            s[t] = _mm512_dpbusd_epi32(s[t], u[e], cpu_pk_bcast(a[t * nb + kb].hi + 4 * e));
#pragma GCC unroll 8
    for (int t = 0; t < rows; t++)
        s[t] = _mm512_slli_epi32(s[t], 8);
#pragma GCC unroll 8
    for (int e = 0; e < 8; e++)
#pragma GCC unroll 8
        for (int t = 0; t < rows; t++)
            s[t] = _mm512_dpbusd_epi32(s[t], u[e], cpu_pk_bcast(a[t * nb + kb].lo + 4 * e));
#pragma GCC unroll 8
    for (int t = 0; t < rows; t++) {
        const cpu_q8_block *b = a + t * nb + kb;
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]),
                                 _mm512_mul_ps(dw, _mm512_set1_ps(b->d)), acc[t]);
        acc[t] = _mm512_fmadd_ps(dc, _mm512_set1_ps(b->s), acc[t]);
    }
}

/* rows (<= PG_T, a constant after inlining) activation rows from a (row t at a + t * nb) against
 * group g: out[t * ldo + r] for the lanes r in keep. The group's blocks come in pairs
 * (cpu_packed.h): two tiles, then their d (and m) line, at offsets constant for the dtype. */
PG_ALWAYS void pg_tile(int kind, int rows, const cpu_packed *p, int64_t g, const cpu_q8_block *a,
                       float *out, int64_t ldo, __mmask16 keep)
{
    const int64_t nb = p->nb;
    const size_t qbytes = kind == 2 ? 512 : 256, pair = 2 * qbytes + (kind == 1 ? 128 : 64);
    const uint8_t *pr = cpu_packed_group(p, g);
    __m512 acc[PG_T];
#pragma GCC unroll 8
    for (int t = 0; t < rows; t++)
        acc[t] = _mm512_setzero_ps();
    int64_t kb = 0;
    for (; kb + 2 <= nb; kb += 2, pr += pair) {
        const uint16_t *d = (const uint16_t *)(const void *)(pr + 2 * qbytes);
        pg_block(kind, rows, pr, d, a, nb, kb, acc);
        pg_block(kind, rows, pr + qbytes, d + 16, a, nb, kb + 1, acc);
    }
    if (kb < nb) /* odd nb: the last pair's first block */
        pg_block(kind, rows, pr, (const uint16_t *)(const void *)(pr + 2 * qbytes), a, nb, kb,
                 acc);
#pragma GCC unroll 8
    for (int t = 0; t < rows; t++)
        _mm512_mask_storeu_ps(out + t * ldo, keep, acc[t]);
}

/* Activation rows [j0, j1) against groups [g0, g1), PG_T rows at a time (then the rest). */
PG_ALWAYS void pg_sweep(int kind, const cpu_packed *p, int64_t g0, int64_t g1,
                        const cpu_q8_block *a, int64_t j0, int64_t j1, float *out, int64_t ldo)
{
    const int64_t nb = p->nb;
    for (int64_t g = g0; g < g1; g++) {
        /* The next group's stream, requested while this one computes: with few rows a group's
         * dots take about as long as its bytes take to arrive, and cold weights otherwise wait
         * on the hardware prefetcher one miss after another. */
        if (g + 1 < g1) {
            const char *next = (const char *)cpu_packed_group(p, g + 1);
            for (size_t at = 0; at < p->group_bytes; at += 64)
                _mm_prefetch(next + at, _MM_HINT_T0);
        }
        const int64_t live = p->rows - g * CPU_PACK_ROWS;
        const __mmask16 keep = (__mmask16)(live >= CPU_PACK_ROWS ? 0xffffu : (1u << live) - 1u);
        float *o = out + g * CPU_PACK_ROWS;
        int64_t j = j0;
        for (; j + PG_T <= j1; j += PG_T)
            pg_tile(kind, PG_T, p, g, a + j * nb, o + j * ldo, ldo, keep);
        const cpu_q8_block *aj = a + j * nb;
        float *oj = o + j * ldo;
        switch (j1 - j) { /* one tile of the rows left, its size a constant */
        case 1: pg_tile(kind, 1, p, g, aj, oj, ldo, keep); break;
        case 2: pg_tile(kind, 2, p, g, aj, oj, ldo, keep); break;
        case 3: pg_tile(kind, 3, p, g, aj, oj, ldo, keep); break;
        case 4: pg_tile(kind, 4, p, g, aj, oj, ldo, keep); break;
        case 5: pg_tile(kind, 5, p, g, aj, oj, ldo, keep); break;
        case 6: pg_tile(kind, 6, p, g, aj, oj, ldo, keep); break;
        case 7: pg_tile(kind, 7, p, g, aj, oj, ldo, keep); break;
        default: break;
        }
    }
}

_Static_assert(PG_T == 8, "pg_sweep's remainder cases assume 8-row tiles");

static void pg_gemm_q4_0(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                         int64_t j0, int64_t j1, float *out, int64_t ldo)
{
    pg_sweep(0, p, g0, g1, a, j0, j1, out, ldo);
}
static void pg_gemm_q4_1(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                         int64_t j0, int64_t j1, float *out, int64_t ldo)
{
    pg_sweep(1, p, g0, g1, a, j0, j1, out, ldo);
}
static void pg_gemm_q8_0(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                         int64_t j0, int64_t j1, float *out, int64_t ldo)
{
    pg_sweep(2, p, g0, g1, a, j0, j1, out, ldo);
}

void cpu_packed_gemm_avx512(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                            int64_t m_count, float *out, int64_t ldo)
{
    void (*sweep)(const cpu_packed *, int64_t, int64_t, const cpu_q8_block *, int64_t, int64_t,
                  float *, int64_t) = p->dtype == BST_DTYPE_Q4_0   ? pg_gemm_q4_0
                                      : p->dtype == BST_DTYPE_Q4_1 ? pg_gemm_q4_1
                                                                   : pg_gemm_q8_0;
    /* A slice of activation rows that stays in L2 while every group of the call sweeps it. */
    int64_t mblock = PG_MBLOCK_BYTES / (p->nb * (int64_t)sizeof(cpu_q8_block)) / PG_T * PG_T;
    if (mblock < PG_T)
        mblock = PG_T;
    for (int64_t j0 = 0; j0 < m_count; j0 += mblock)
        sweep(p, g0, g1, a, j0, m_count - j0 < mblock ? m_count : j0 + mblock, out, ldo);
}
#else
typedef int cpu_packed_gemm_avx512_not_built; /* a translation unit may not be empty */
#endif
