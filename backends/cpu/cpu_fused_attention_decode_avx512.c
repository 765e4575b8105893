/*
 * Fused attention's few-row kernel with AVX-512 (see cpu_fused.h, CPU_ATT_FEW_KB): a decode step's
 * unit, the G query heads of one kv head at one or a few positions, over one share of the keys.
 * The vector pieces the portable driver runs (cpu_att_few.h, cpu_fused_attention_few.c).
 *
 * Why: the per-row loops (cpu_fused_attention_avx2.c) read every K/V block once per query row,
 * end each (row, key) dot product with a horizontal sum, and run the softmax and the rescaling
 * row by row in scalar code; a decode unit has only ~3 rows, too few for the lane-per-row tile
 * (cpu_fused_attention_avx512.c). Here:
 *  - scores: 4 keys x up to 4 rows of partial-sum vectors are accumulated at once (each K chunk
 *    is loaded and widened once for all rows), then a transpose-add tree turns the 16 keys'
 *    partial sums of a row into one vector of 16 scores: 45 shuffles / adds per row and 16 keys
 *    instead of 16 horizontal sums;
 *  - softmax: causal / window become one lane mask per 16 keys, the additive mask one vector
 *    add; block maximum, exp and sum run on whole vectors, and the running maxima and rescale
 *    factors of all rows on one;
 *  - values: the accumulator of up to 4 rows x 64 columns stays in registers over the block, each
 *    V chunk is loaded and widened once for all rows and multiplied by the rows' broadcast
 *    probabilities;
 *  - memory: decode reads K/V from DRAM, so the scores and values loops also ask for the next
 *    block's K/V lines (cpu_fused_attention_few.c).
 * Compiled with the AVX-512 flags and called only when cpu_isa_mask() has CPU_ISA_AVX512.
 */
#include "cpu_att_few.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)
#include "cpu_exp_avx512.h"
#include "cpu_fold_avx512.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define ALWAYS static inline __attribute__((always_inline))
#define KB CPU_ATT_FEW_KB
#define RB CPU_ATT_FEW_RB /* 4 x 4 accumulators + 4 K/V chunks fit in 32 zmm */

/* Sixteen elements c.. of a K/V row of dtype kind (0 f32, 1 f16, 2 bf16) as f32. */
ALWAYS __m512 load16(int kind, const uint8_t *row, int64_t c)
{
    if (kind == 0)
        return _mm512_loadu_ps(row + c * 4);
    const __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(row + c * 2));
    if (kind == 1)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Asks for the cache line at p + off (maybe past the tensor: computed as an address, not a
 * pointer into it). */
ALWAYS void prefetch(const uint8_t *p, uintptr_t off)
{
    _mm_prefetch((const char *)(uintptr_t)((uintptr_t)p + off), _MM_HINT_T0);
}

/* The scores of cpu_att_few.h for 16 keys. The requests go one line per chunk of 64 bytes,
 * spread over the multiply-adds, whose loop leaves load slots free; a key without a request asks
 * for its own row's line instead, which is already there or on its way: no branch in the loop.
 * DC: D when known at compile time (the chunk loop is then unrolled: -5% a call, in L2), else
 * 0. */
ALWAYS void scores16(int kind, int rb, int64_t DC, const float *Q, int64_t D,
                     const uint8_t *kb, int64_t ks, int64_t nk, float *out, int64_t pf,
                     int64_t npf, float *scratch)
{
    (void)scratch; /* the 16 keys' partial sums stay in registers */
    const int64_t esz = kind ? 2 : 4, d = DC ? DC : D;
    __m512 x[RB][4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const uint8_t *k[4], *pk[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const int64_t u = 4 * g + i;
            k[i] = kb + (u < nk ? u : nk - 1) * ks;
            pk[i] = k[i] + (u < npf ? pf : 0);
        }
        __m512 a[RB][4];
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++)
            a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int64_t c = 0; c < d; c += 16) {
            __m512 v0 = load16(kind, k[0], c), v1 = load16(kind, k[1], c),
                   v2 = load16(kind, k[2], c), v3 = load16(kind, k[3], c);
            /* In registers: the compiler would otherwise fold each f32 load into every row's
             * multiply-add, reading K rb times (then the loop is bound by loads, not FMAs). */
            __asm__("" : "+v"(v0), "+v"(v1), "+v"(v2), "+v"(v3));
            if ((c * esz) % 64 == 0) {
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++)
                    prefetch(pk[i], (uintptr_t)(c * esz));
            }
#pragma GCC unroll 4
            for (int r = 0; r < rb; r++) {
                const __m512 qv = _mm512_load_ps(Q + r * d + c);
                a[r][0] = _mm512_fmadd_ps(qv, v0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(qv, v1, a[r][1]);
                a[r][2] = _mm512_fmadd_ps(qv, v2, a[r][2]);
                a[r][3] = _mm512_fmadd_ps(qv, v3, a[r][3]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++)
            x[r][g] = cpu_fold4(a[r][0], a[r][1], a[r][2], a[r][3]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < rb; r++)
        _mm512_store_ps(out + r * KB, cpu_fold16(x[r][0], x[r][1], x[r][2], x[r][3]));
}

/* The values of cpu_att_few.h for columns [c0, c0 + 16 w). */
ALWAYS void values_cols(int kind, int rb, int w, float *Acc, const float *alpha, const float *P,
                        const uint8_t *v, int64_t vs, int64_t n, int64_t D, int64_t c0,
                        int64_t pf, int64_t npf)
{
    const int64_t esz = kind ? 2 : 4;
    __m512 a[RB][4];
#pragma GCC unroll 4
    for (int r = 0; r < rb; r++) {
#pragma GCC unroll 4
        for (int u = 0; u < w; u++)
            a[r][u] = _mm512_mul_ps(_mm512_load_ps(Acc + r * D + c0 + 16 * u),
                                    _mm512_set1_ps(alpha[r]));
    }
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *row = v + j * vs;
        __m512 x[4];
#pragma GCC unroll 4
        for (int u = 0; u < w; u++)
            x[u] = load16(kind, row, c0 + 16 * u);
        if (j < npf) {
#pragma GCC unroll 4
            for (int u = 0; u < w; u++)
                if ((c0 + 16 * u) * esz % 64 == 0)
                    prefetch(row, (uintptr_t)(pf + (c0 + 16 * u) * esz));
        }
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++) {
            const __m512 p = _mm512_set1_ps(P[r * KB + j]);
#pragma GCC unroll 4
            for (int u = 0; u < w; u++)
                a[r][u] = _mm512_fmadd_ps(p, x[u], a[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rb; r++) {
#pragma GCC unroll 4
        for (int u = 0; u < w; u++)
            _mm512_store_ps(Acc + r * D + c0 + 16 * u, a[r][u]);
    }
}

ALWAYS void values(int kind, int rb, float *Acc, const float *alpha, const float *P,
                   const uint8_t *v, int64_t vs, int64_t n, int64_t D, int64_t pf, int64_t npf)
{
    int64_t c0 = 0;
    for (; c0 + 64 <= D; c0 += 64)
        values_cols(kind, rb, 4, Acc, alpha, P, v, vs, n, D, c0, pf, npf);
    for (; c0 < D; c0 += 16)
        values_cols(kind, rb, 1, Acc, alpha, P, v, vs, n, D, c0, pf, npf);
}

/* Lanes [a, b) of 16 (clamped) as a mask. */
static __mmask16 lane_range(int64_t a, int64_t b)
{
    a = a < 0 ? 0 : a > 16 ? 16 : a;
    b = b < a ? a : b > 16 ? 16 : b;
    const uint32_t hi = (1u << b) - 1u, lo = (1u << a) - 1u;
    return (__mmask16)(hi & ~lo);
}

/* The softmax of cpu_att_few.h: each row's masked scores and block maximum, then the running
 * maxima, the rescale factors and the exponent offsets of all rows at once (one vector exp
 * instead of a libm call a row), then each row's probabilities and running sum. */
static void softmax(const cpu_att_tile *t, float *P, int64_t j0, int64_t n, cpu_att_few_state *st)
{
    const int rows = t->rows;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    _Alignas(64) float bm[CPU_ATT_FEW_ROWS], mref[CPU_ATT_FEW_ROWS];
    _mm512_store_ps(bm, ninf);
    for (int i = 0; i < rows; i++) {
        float *p = P + i * KB;
        const int64_t pos = t->pos[i];
        /* Keys [vlo, vhi) are the ones causal / window leave visible to this row. */
        const int64_t vhi = t->causal ? pos + 1 : t->jhi;
        const int64_t vlo = t->window > 0 ? pos - t->window + 1 : t->jlo;
        __m512 bmax = ninf;
        for (int64_t jb = 0; jb < n; jb += 16) {
            const int64_t key = j0 + jb, end = n - jb < 16 ? key + n - jb : key + 16;
            const __mmask16 vis = lane_range(vlo - key, (vhi < end ? vhi : end) - key);
            __m512 s = _mm512_load_ps(p + jb);
            if (t->mask[i] && vis) {
                if (t->mask_stride == (int64_t)sizeof(float)) {
                    s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(vis, t->mask[i] + key * 4));
                } else if (t->mask_stride == 0) {
                    float f;
                    memcpy(&f, t->mask[i], sizeof f);
                    s = _mm512_add_ps(s, _mm512_set1_ps(f));
                } else {
                    float mv[16] = {0};
                    for (int u = 0; u < 16; u++)
                        if (vis >> u & 1)
                            memcpy(&mv[u], t->mask[i] + (key + u) * t->mask_stride,
                                   sizeof(float));
                    s = _mm512_add_ps(s, _mm512_loadu_ps(mv));
                }
            }
            s = _mm512_mask_mov_ps(ninf, vis, s);
            _mm512_store_ps(p + jb, s);
            bmax = _mm512_max_ps(bmax, s);
        }
        bm[i] = _mm512_reduce_max_ps(bmax);
    }
    const __m512 mold = _mm512_load_ps(st->m);
    const __m512 mnew = _mm512_max_ps(mold, _mm512_load_ps(bm));
    /* A row that has seen no key yet keeps m = -inf and subtracts 0 (exp(-inf) = 0, where
     * -inf - -inf would be NaN); its accumulator is still 0. */
    const __mmask16 seen = _mm512_cmp_ps_mask(mold, ninf, _CMP_NEQ_UQ);
    const __mmask16 any = _mm512_cmp_ps_mask(mnew, ninf, _CMP_NEQ_UQ);
    const __m512 rescale = cpu_exp16(_mm512_sub_ps(mold, mnew));
    _mm512_store_ps(st->alpha, _mm512_maskz_mov_ps(seen, rescale));
    _mm512_store_ps(mref, _mm512_maskz_mov_ps(any, mnew));
    _mm512_store_ps(st->m, mnew);
    for (int i = 0; i < rows; i++) {
        float *p = P + i * KB, *L = st->L + i * CPU_ATT_FEW_LSUMS;
        const __m512 mr = _mm512_set1_ps(mref[i]);
        __m512 lv = _mm512_mul_ps(_mm512_load_ps(L), _mm512_set1_ps(st->alpha[i]));
        for (int64_t jb = 0; jb < n; jb += 16) {
            const __m512 e = cpu_exp16(_mm512_sub_ps(_mm512_load_ps(p + jb), mr));
            _mm512_store_ps(p + jb, e);
            lv = _mm512_add_ps(lv, e);
        }
        _mm512_store_ps(L, lv);
    }
}

CPU_ATT_FEW_KERNELS(kernels, 16, scores16, values, softmax)

void cpu_att_few_avx512(const cpu_att_tile *t, float *work) { cpu_att_few_run(t, work, &kernels); }
#else
typedef int cpu_fused_attention_decode_avx512_not_built; /* a translation unit may not be empty */
#endif
