/*
 * Fused attention's many-row tile with AVX-512 (see cpu_fused.h, cpu_att_tile): a prompt's unit
 * of up to 32 query rows runs with one row per vector lane, in one or two vectors of 16 lanes.
 *
 * Why: the per-row loops (cpu_fused_attention_avx2.c) widen every f16 K/V element again for each
 * of a unit's rows and end each key's dot product with a horizontal sum, so a 512-token prefill
 * was bound by loads and shuffles (~25 GFLOP/s). Here each K/V block is widened to f32 once per
 * unit, q is held transposed (Qt[c] = the 16 rows' element c, pre-scaled), so the scores of one
 * key for all rows are sum_c Qt[c] * k[c]: one multiply-add with a broadcast K element per step,
 * no horizontal sums. The online softmax (running maximum m, sum l, rescale by exp(m_old -
 * m_new)) is lane-wise, and the accumulator is held transposed too (Acc[c] = the rows' element
 * c), updated by sum_j p_j * v_j[c] with broadcast V elements.
 *
 * Why two vectors: each broadcast K or V element then feeds two multiply-adds instead of one, and
 * each block's widening serves twice the rows. With 16 rows the widening took a fifth of the
 * tile's time (one thread, S 4608); 32 rows made a 512-token prefill's attention 8-10% faster
 * (512 x 4608 x 9 x 3 x 64, f16: 18.1-19.2 against 16.6-17.0 ms; 512 x 512: 1.20-1.35 against
 * 1.10-1.13 ms, `bench ops`, alternating). Units of 16 rows or fewer (short prompts, a prompt's
 * last positions) keep the one-vector instance.
 *
 * Compiled with the AVX-512 flags and called only when cpu_isa_mask() has CPU_ISA_AVX512.
 */
#include "cpu_fused.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)
#include "cpu_exp_avx512.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define R CPU_ATT_TILE_ROWS
#define KB CPU_ATT_TILE_KB

/* n rows of D elements (D % 16 == 0) from src (row stride in bytes) into dst as f32. */
static void widen_block(int kind, const uint8_t *src, int64_t stride, int64_t n, int64_t D,
                        float *dst)
{
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *row = src + j * stride;
        float *d = dst + j * D;
        if (kind == 0) {
            memcpy(d, row, (size_t)D * sizeof(float));
        } else if (kind == 1) {
            for (int64_t c = 0; c < D; c += 16)
                _mm512_storeu_ps(d + c, _mm512_cvtph_ps(_mm256_loadu_si256(
                                            (const __m256i *)(const void *)(row + c * 2))));
        } else {
            for (int64_t c = 0; c < D; c += 16)
                _mm512_storeu_ps(d + c, _mm512_castsi512_ps(_mm512_slli_epi32(
                                            _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                                (const __m256i *)(const void *)(row + c * 2))),
                                            16)));
        }
    }
}

#define ALWAYS static inline __attribute__((always_inline))

/* The tile works on H = 1 or 2 vectors of 16 lanes (16 * H rows); every loop over h below has H
 * iterations, a constant in each instance (cpu_att_tile_avx512). */

/* S[j * R + i] = row i's score against key j (Kf row j), for j < n: eight keys at a time, each
 * broadcast K element multiplied into the H row vectors. bmax[h] = the running maximum of
 * vector h's scores, key by key, as the softmax's pass would take it. */
ALWAYS void scores(const int H, const float *Qt, const float *Kf, int64_t n, int64_t D, float *S,
                   __m512 bmax[2])
{
    const int lanes = 16 * H;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const float *k = Kf + j * D;
        __m512 a[8][2];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++)
            for (int h = 0; h < H; h++)
                a[u][h] = _mm512_setzero_ps();
        for (int64_t c = 0; c < D; c++) {
            __m512 q[2];
            for (int h = 0; h < H; h++)
                q[h] = _mm512_loadu_ps(Qt + c * lanes + 16 * h);
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) {
                const __m512 b = _mm512_set1_ps(k[u * D + c]);
                for (int h = 0; h < H; h++)
                    a[u][h] = _mm512_fmadd_ps(q[h], b, a[u][h]);
            }
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++)
            for (int h = 0; h < H; h++) {
                _mm512_storeu_ps(S + (j + u) * lanes + 16 * h, a[u][h]);
                bmax[h] = _mm512_max_ps(bmax[h], a[u][h]);
            }
    }
    for (; j < n; j++) {
        const float *k = Kf + j * D;
        __m512 a[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t c = 0; c < D; c++) {
            const __m512 b = _mm512_set1_ps(k[c]);
            for (int h = 0; h < H; h++)
                a[h] = _mm512_fmadd_ps(_mm512_loadu_ps(Qt + c * lanes + 16 * h), b, a[h]);
        }
        for (int h = 0; h < H; h++) {
            _mm512_storeu_ps(S + j * lanes + 16 * h, a[h]);
            bmax[h] = _mm512_max_ps(bmax[h], a[h]);
        }
    }
}

/* Acc[c] = Acc[c] * alpha + sum_j P[j] * Vf[j][c]: 16 / H columns of the H row vectors at a time
 * held in registers. */
ALWAYS void accumulate(const int H, float *Acc, const __m512 alpha[2], const float *P,
                       const float *Vf, int64_t n, int64_t D)
{
    const int lanes = 16 * H, W = 16 / H;
    for (int64_t c0 = 0; c0 < D; c0 += W) {
        __m512 a[16][2];
#pragma GCC unroll 16
        for (int u = 0; u < W; u++)
            for (int h = 0; h < H; h++)
                a[u][h] = _mm512_mul_ps(_mm512_loadu_ps(Acc + (c0 + u) * lanes + 16 * h), alpha[h]);
        for (int64_t j = 0; j < n; j++) {
            __m512 p[2];
            for (int h = 0; h < H; h++)
                p[h] = _mm512_loadu_ps(P + j * lanes + 16 * h);
            const float *v = Vf + j * D + c0;
#pragma GCC unroll 16
            for (int u = 0; u < W; u++) {
                const __m512 b = _mm512_set1_ps(v[u]);
                for (int h = 0; h < H; h++)
                    a[u][h] = _mm512_fmadd_ps(p[h], b, a[u][h]);
            }
        }
#pragma GCC unroll 16
        for (int u = 0; u < W; u++)
            for (int h = 0; h < H; h++)
                _mm512_storeu_ps(Acc + (c0 + u) * lanes + 16 * h, a[u][h]);
    }
}

/* r[k] = (r[0][k], ..., r[15][k]): a 16 x 16 transpose in four rounds of shuffles, within
 * 128-bit blocks first, then of whole blocks. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { /* per block: pairs of rows' elements interleaved */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* per block b: u[i + c] = rows i..i+3 of element 4b + c */
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]),
                      c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int c = 0; c < 4; c++) { /* blocks: a 4 x 4 transpose of rows' quarters */
        const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44),
                     v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xee),
                     v2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44),
                     v3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xee);
        t[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* Mt[j * R + i] = row i's mask value for key j0 + j, j < n (idle lanes copy row 0). Rows whose
 * values are contiguous (a [T, S] mask) go 16 keys at a time through a register transpose per
 * 16 rows: the element-by-element copy took a quarter of a 512-token prefill's attention
 * (default model: 1.54 ms a layer with the mask, 1.16 without). */
ALWAYS void mask_block(const int H, const cpu_att_tile *t, int64_t j0, int64_t n, float *Mt)
{
    const int rows = t->rows, lanes = 16 * H;
    if (t->mask_stride != (int64_t)sizeof(float)) {
        for (int i = 0; i < lanes; i++) {
            const uint8_t *p = t->mask[i < rows ? i : 0] + j0 * t->mask_stride;
            for (int64_t j = 0; j < n; j++)
                memcpy(&Mt[j * lanes + i], p + j * t->mask_stride, sizeof(float));
        }
        return;
    }
    for (int64_t jb = 0; jb < n; jb += 16) {
        const int64_t keys = n - jb < 16 ? n - jb : 16;
        const __mmask16 live = (__mmask16)((1u << keys) - 1u);
        for (int h = 0; h < H; h++) {
            __m512 x[16];
            for (int i = 0; i < 16; i++) {
                const int row = 16 * h + i;
                const float *src = (const float *)(const void *)t->mask[row < rows ? row : 0];
                x[i] = _mm512_maskz_loadu_ps(live, src + j0 + jb);
            }
            transpose16(x);
            for (int64_t j = 0; j < keys; j++)
                _mm512_storeu_ps(Mt + (jb + j) * lanes + 16 * h, x[j]);
        }
    }
}

ALWAYS void tile(const int H, const cpu_att_tile *t, float *work)
{
    const int64_t D = t->D;
    const int rows = t->rows, lanes = 16 * H;
    float *Qt = work, *Acc = Qt + D * lanes, *Kf = Acc + D * lanes, *Vf = Kf + KB * D,
          *S = Vf + KB * D, *Mt = S + KB * lanes;
    const bool masked = t->mask[0] != NULL;
    for (int64_t c = 0; c < D; c++)
        for (int i = 0; i < lanes; i++)
            Qt[c * lanes + i] = i < rows ? t->q[i][c] * t->scale : 0.0f;
    memset(Acc, 0, (size_t)(D * lanes) * sizeof(float));
    int32_t pos[R], first = INT32_MAX, last = INT32_MIN;
    for (int i = 0; i < lanes; i++) {
        pos[i] = t->pos[i < rows ? i : 0]; /* idle lanes: q = 0, never written out */
        first = pos[i] < first ? pos[i] : first;
        last = pos[i] > last ? pos[i] : last;
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    __m512i posv[2], oldest[2];
    __m512 m[2], l[2];
    for (int h = 0; h < H; h++) {
        posv[h] = _mm512_loadu_si512(pos + 16 * h);
        oldest[h] = _mm512_sub_epi32(posv[h], _mm512_set1_epi32((int32_t)t->window));
        m[h] = ninf;
        l[h] = zero;
    }
    for (int64_t j0 = t->jlo; j0 < t->jhi; j0 += KB) {
        const int64_t n = t->jhi - j0 < KB ? t->jhi - j0 : KB;
        if (masked) {
            mask_block(H, t, j0, n, Mt);
            /* A block the mask hides from every row (a prompt's future keys) is skipped. */
            __mmask16 seen = 0;
            for (int64_t j = 0; j < n * H; j++)
                seen |= _mm512_cmp_ps_mask(_mm512_loadu_ps(Mt + j * 16), ninf, _CMP_NEQ_UQ);
            if (!seen)
                continue;
        }
        widen_block(t->kk, t->k + j0 * t->ks, t->ks, n, D, Kf);
        widen_block(t->vk, t->v + j0 * t->vs, t->vs, n, D, Vf);
        __m512 bmax[2] = {ninf, ninf};
        scores(H, Qt, Kf, n, D, S, bmax);
        /* A block every row sees whole (at depth, all but the last few) needs no pass to hide
         * keys: scores() took its maximum. */
        const bool whole = !masked && (!t->causal || j0 + n - 1 <= first) &&
                           (t->window <= 0 || j0 > last - t->window);
        for (int h = 0; h < H && !whole; h++)
            bmax[h] = ninf;
        for (int64_t j = 0; j < n && !whole; j++) {
            const __m512i key = _mm512_set1_epi32((int32_t)(j0 + j));
            for (int h = 0; h < H; h++) {
                __mmask16 hide = 0;
                if (t->causal)
                    hide |= _mm512_cmpgt_epi32_mask(key, posv[h]);
                if (t->window > 0)
                    hide |= _mm512_cmple_epi32_mask(key, oldest[h]);
                float *sj = S + j * lanes + 16 * h;
                __m512 sc = _mm512_loadu_ps(sj);
                if (masked)
                    sc = _mm512_add_ps(sc, _mm512_loadu_ps(Mt + j * lanes + 16 * h));
                const __m512 s = _mm512_mask_mov_ps(sc, hide, ninf);
                _mm512_storeu_ps(sj, s);
                bmax[h] = _mm512_max_ps(bmax[h], s);
            }
        }
        __m512 alpha[2], mref[2], psum[2];
        for (int h = 0; h < H; h++) {
            const __m512 mnew = _mm512_max_ps(m[h], bmax[h]);
            /* Lanes that have seen no key yet keep m = -inf: subtract 0 there (exp(-inf) = 0),
             * not -inf (which would give NaN). */
            mref[h] = _mm512_mask_mov_ps(mnew, _mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ), zero);
            alpha[h] = cpu_exp16(_mm512_sub_ps(m[h], mref[h]));
            m[h] = mnew;
            psum[h] = zero;
        }
        for (int64_t j = 0; j < n; j++)
            for (int h = 0; h < H; h++) {
                float *sj = S + j * lanes + 16 * h;
                const __m512 p = cpu_exp16(_mm512_sub_ps(_mm512_loadu_ps(sj), mref[h]));
                _mm512_storeu_ps(sj, p);
                psum[h] = _mm512_add_ps(psum[h], p);
            }
        for (int h = 0; h < H; h++)
            l[h] = _mm512_fmadd_ps(l[h], alpha[h], psum[h]);
        accumulate(H, Acc, alpha, S, Vf, n, D);
    }
    float inv[R];
    for (int h = 0; h < H; h++)
        _mm512_storeu_ps(inv + 16 * h,
                         _mm512_maskz_div_ps(_mm512_cmp_ps_mask(l[h], zero, _CMP_GT_OQ),
                                             _mm512_set1_ps(1.0f), l[h]));
    for (int64_t c = 0; c < D; c++)
        for (int i = 0; i < rows; i++)
            t->out[i][c] = Acc[c * lanes + i] * inv[i];
}

void cpu_att_tile_avx512(const cpu_att_tile *t, float *work)
{
    if (t->rows > 16)
        tile(2, t, work);
    else
        tile(1, t, work);
}
#else
typedef int cpu_fused_attention_avx512_not_built; /* a translation unit may not be empty */
#endif
