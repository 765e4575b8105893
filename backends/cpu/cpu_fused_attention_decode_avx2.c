/*
 * Fused attention's few-row kernel with AVX2 (see cpu_fused.h, CPU_ATT_FEW_KB): a decode step's
 * unit, the G query heads of one or more kv heads at one or a few positions, over one share of
 * the keys. The AVX-512 kernel (cpu_fused_attention_decode_avx512.c) on 8 lanes and 16
 * registers, for the machines without AVX-512 (most desktops and laptops), where decode ran the
 * per-row loops (cpu_fused_attention_avx2.c): each K/V row read once per query row, each score a
 * horizontal sum, the softmax and rescaling row by row in scalar code.
 *  - scores: 2 keys x up to 4 rows of partial-sum vectors at a time (each K chunk loaded and
 *    widened once for all rows of its kv head; 8 accumulators, 2 K chunks and a query chunk fit
 *    the 16 registers), kept on the stack until a group of 8 keys is done, when one hadd tree
 *    per row turns them into a vector of 8 scores;
 *  - softmax: causal / window become a lane mask per 8 keys; block maximum, exp and sum run on
 *    whole vectors, and the running maxima and rescale factors of all rows on two;
 *  - values: 2 chunks (16 columns) of up to 4 rows' accumulators stay in registers over the
 *    block's keys; the block's V rows are in L1 after the first 16 columns;
 *  - memory: as the AVX-512 kernel, each line of the K/V cache is asked for a block ahead
 *    (cpu_fused_attention_few.c, the portable driver that runs these pieces).
 * Compiled with -mavx2 -mfma -mf16c and called only when cpu_isa_mask() has CPU_ISA_AVX2.
 */
#include "cpu_att_few.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "cpu_att_avx2.h"
#include <math.h>

#define ALWAYS CPU_ATT_ALWAYS
#define KB CPU_ATT_FEW_KB
#define RB CPU_ATT_FEW_RB

/* Asks for the cache line at p + off (maybe past the tensor: computed as an address, not a
 * pointer into it). */
ALWAYS void prefetch(const uint8_t *p, uintptr_t off)
{
    _mm_prefetch((const char *)(uintptr_t)((uintptr_t)p + off), _MM_HINT_T0);
}

/* Asks for every cache line of the `bytes` bytes at row + off. */
ALWAYS void prefetch_row(const uint8_t *row, uintptr_t off, int64_t bytes)
{
    const uintptr_t begin = (uintptr_t)row + off, end = begin + (uintptr_t)bytes;
    for (uintptr_t a = begin & ~(uintptr_t)63; a < end; a += 64)
        _mm_prefetch((const char *)a, _MM_HINT_T0);
}

/* The scores of cpu_att_few.h for 8 keys; a key without a request asks for its own row's line
 * instead (no branch in the loop). part: RB x 8 x 8 floats of scratch, 32-byte aligned. DC: D
 * when known at compile time (the chunk loop is then unrolled), else 0. */
ALWAYS void scores8(int kind, int rb, int64_t DC, const float *Q, int64_t D, const uint8_t *kb,
                    int64_t ks, int64_t nk, float *out, int64_t pf, int64_t npf, float *part)
{
    const int64_t esz = kind ? 2 : 4, d = DC ? DC : D;
#pragma GCC unroll 4
    for (int u = 0; u < 8; u += 2) {
        const uint8_t *k0 = kb + (u < nk ? u : nk - 1) * ks;
        const uint8_t *k1 = kb + (u + 1 < nk ? u + 1 : nk - 1) * ks;
        const uint8_t *p0 = k0 + (u < npf ? pf : 0), *p1 = k1 + (u + 1 < npf ? pf : 0);
        __m256 a[RB][2];
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++)
            a[r][0] = a[r][1] = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int64_t c = 0; c < d; c += 8) {
            __m256 v0 = load8(kind, k0, c), v1 = load8(kind, k1, c);
            /* In registers: the compiler would otherwise fold each f32 load into every row's
             * multiply-add, reading K rb times. */
            __asm__("" : "+x"(v0), "+x"(v1));
            if ((c * esz) % 64 == 0) {
                prefetch(p0, (uintptr_t)(c * esz));
                prefetch(p1, (uintptr_t)(c * esz));
            }
#pragma GCC unroll 4
            for (int r = 0; r < rb; r++) {
                const __m256 qv = _mm256_load_ps(Q + r * d + c);
                a[r][0] = _mm256_fmadd_ps(qv, v0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(qv, v1, a[r][1]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++) {
            _mm256_store_ps(part + (r * 8 + u) * 8, a[r][0]);
            _mm256_store_ps(part + (r * 8 + u + 1) * 8, a[r][1]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < rb; r++) {
        const float *x = part + r * 64;
        _mm256_store_ps(out + r * KB,
                        hsum8(_mm256_load_ps(x), _mm256_load_ps(x + 8), _mm256_load_ps(x + 16),
                              _mm256_load_ps(x + 24), _mm256_load_ps(x + 32),
                              _mm256_load_ps(x + 40), _mm256_load_ps(x + 48),
                              _mm256_load_ps(x + 56)));
    }
}

/* The values of cpu_att_few.h, 16 columns at a time; the first 16 columns' pass asks for the next
 * block's V rows. */
ALWAYS void values(int kind, int rb, float *Acc, const float *alpha, const float *P,
                   const uint8_t *v, int64_t vs, int64_t n, int64_t D, int64_t pf, int64_t npf)
{
    const int64_t esz = kind ? 2 : 4;
    for (int64_t c0 = 0; c0 < D; c0 += 16) {
        __m256 a[RB][2];
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++) {
            const __m256 s = _mm256_set1_ps(alpha[r]);
            a[r][0] = _mm256_mul_ps(_mm256_load_ps(Acc + r * D + c0), s);
            a[r][1] = _mm256_mul_ps(_mm256_load_ps(Acc + r * D + c0 + 8), s);
        }
        for (int64_t j = 0; j < n; j++) {
            const uint8_t *row = v + j * vs;
            const __m256 x0 = load8(kind, row, c0), x1 = load8(kind, row, c0 + 8);
            if (c0 == 0 && j < npf)
                prefetch_row(row, (uintptr_t)pf, D * esz);
#pragma GCC unroll 4
            for (int r = 0; r < rb; r++) {
                const __m256 p = _mm256_broadcast_ss(P + r * KB + j);
                a[r][0] = _mm256_fmadd_ps(p, x0, a[r][0]);
                a[r][1] = _mm256_fmadd_ps(p, x1, a[r][1]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < rb; r++) {
            _mm256_store_ps(Acc + r * D + c0, a[r][0]);
            _mm256_store_ps(Acc + r * D + c0 + 8, a[r][1]);
        }
    }
}

/* Lanes [a, b) of 8 (clamped) as an all-ones / zero lane mask. */
static __m256 lane_range(int64_t a, int64_t b)
{
    a = a < 0 ? 0 : a > 8 ? 8 : a;
    b = b < a ? a : b > 8 ? 8 : b;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i ge_a = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32((int)a - 1));
    const __m256i lt_b = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)b), lane);
    return _mm256_castsi256_ps(_mm256_and_si256(ge_a, lt_b));
}

ALWAYS float hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* Row i's mask values for keys [key, key + 8) where `vis` is set, 0 elsewhere. */
static __m256 mask8(const cpu_att_tile *t, int i, int64_t key, __m256 vis)
{
    if (t->mask_stride == (int64_t)sizeof(float))
        return _mm256_maskload_ps((const float *)(const void *)(t->mask[i] + key * 4),
                                  _mm256_castps_si256(vis));
    if (t->mask_stride == 0) {
        float f;
        memcpy(&f, t->mask[i], sizeof f);
        return _mm256_and_ps(vis, _mm256_set1_ps(f));
    }
    _Alignas(32) float lanes[8], mv[8] = {0};
    _mm256_store_ps(lanes, vis);
    for (int u = 0; u < 8; u++)
        if (lanes[u] != 0.0f) /* all-ones is a NaN: != 0 */
            memcpy(&mv[u], t->mask[i] + (key + u) * t->mask_stride, sizeof(float));
    return _mm256_load_ps(mv);
}

/* The softmax of cpu_att_few.h: each row's masked scores and block maximum, then the running
 * maxima, the rescale factors and the exponent offsets of all rows at once (two vectors), then
 * each row's probabilities and running sum (8 partial sums a row). */
static void softmax(const cpu_att_tile *t, float *P, int64_t j0, int64_t n, cpu_att_few_state *st)
{
    const int rows = t->rows;
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    _Alignas(32) float bm[CPU_ATT_FEW_ROWS], mref[CPU_ATT_FEW_ROWS];
    _mm256_store_ps(bm, ninf);
    _mm256_store_ps(bm + 8, ninf);
    for (int i = 0; i < rows; i++) {
        float *p = P + i * KB;
        const int64_t pos = t->pos[i];
        /* Keys [vlo, vhi) are the ones causal / window leave visible to this row. */
        const int64_t vhi = t->causal ? pos + 1 : t->jhi;
        const int64_t vlo = t->window > 0 ? pos - t->window + 1 : t->jlo;
        __m256 bmax = ninf;
        for (int64_t jb = 0; jb < n; jb += 8) {
            const int64_t key = j0 + jb, end = n - jb < 8 ? key + n - jb : key + 8;
            const __m256 vis = lane_range(vlo - key, (vhi < end ? vhi : end) - key);
            __m256 s = _mm256_load_ps(p + jb);
            if (t->mask[i])
                s = _mm256_add_ps(s, mask8(t, i, key, vis));
            s = _mm256_blendv_ps(ninf, s, vis);
            _mm256_store_ps(p + jb, s);
            bmax = _mm256_max_ps(bmax, s);
        }
        bm[i] = hmax(bmax);
    }
    for (int i = 0; i < rows; i += 8) {
        const __m256 mold = _mm256_load_ps(st->m + i);
        const __m256 mnew = _mm256_max_ps(mold, _mm256_load_ps(bm + i));
        /* A row that has seen no key yet keeps m = -inf and subtracts 0 (exp(-inf) = 0, where
         * -inf - -inf would be NaN); its accumulator is still 0. */
        const __m256 seen = _mm256_cmp_ps(mold, ninf, _CMP_NEQ_UQ);
        const __m256 any = _mm256_cmp_ps(mnew, ninf, _CMP_NEQ_UQ);
        _mm256_store_ps(st->alpha + i, _mm256_and_ps(seen, exp8(_mm256_sub_ps(mold, mnew))));
        _mm256_store_ps(mref + i, _mm256_and_ps(any, mnew));
        _mm256_store_ps(st->m + i, mnew);
    }
    for (int i = 0; i < rows; i++) {
        float *p = P + i * KB, *L = st->L + i * CPU_ATT_FEW_LSUMS;
        const __m256 mr = _mm256_set1_ps(mref[i]);
        __m256 lv = _mm256_mul_ps(_mm256_load_ps(L), _mm256_set1_ps(st->alpha[i]));
        for (int64_t jb = 0; jb < n; jb += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_load_ps(p + jb), mr));
            _mm256_store_ps(p + jb, e);
            lv = _mm256_add_ps(lv, e);
        }
        _mm256_store_ps(L, lv);
    }
}

CPU_ATT_FEW_KERNELS(kernels, 8, scores8, values, softmax)

void cpu_att_few_avx2(const cpu_att_tile *t, float *work) { cpu_att_few_run(t, work, &kernels); }
#else
typedef int cpu_fused_attention_decode_avx2_not_built; /* a translation unit may not be empty */
#endif
