/*
 * Fused attention's many-row tile with AVX-512 (see cpu_fused.h, cpu_att_tile): a prompt's unit
 * of up to 16 query rows runs with one row per vector lane.
 *
 * Why: the per-row loops (cpu_fused_attention_avx2.c) widen every f16 K/V element again for each
 * of a unit's rows and end each key's dot product with a horizontal sum, so a 512-token prefill
 * was bound by loads and shuffles (~25 GFLOP/s). Here each K/V block is widened to f32 once per
 * unit, q is held transposed (Qt[c] = the 16 rows' element c, pre-scaled), so the scores of one
 * key for all rows are sum_c Qt[c] * k[c]: one multiply-add with a broadcast K element per step,
 * no horizontal sums. The online softmax (running maximum m, sum l, rescale by exp(m_old -
 * m_new)) is lane-wise, and the accumulator is held transposed too (Acc[c] = the rows' element
 * c), updated by sum_j p_j * v_j[c] with broadcast V elements. Compiled with the AVX-512 flags and
 * called only when cpu_isa_mask() has CPU_ISA_AVX512.
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

/* S[j] = the rows' scores against key j (Kf row j), for j < n. */
static void scores(const float *Qt, const float *Kf, int64_t n, int64_t D, float *S)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const float *k = Kf + j * D;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int64_t c = 0; c < D; c++) {
            const __m512 q = _mm512_loadu_ps(Qt + c * R);
            a0 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[c]), a0);
            a1 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[D + c]), a1);
            a2 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[2 * D + c]), a2);
            a3 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[3 * D + c]), a3);
            a4 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[4 * D + c]), a4);
            a5 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[5 * D + c]), a5);
            a6 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[6 * D + c]), a6);
            a7 = _mm512_fmadd_ps(q, _mm512_set1_ps(k[7 * D + c]), a7);
        }
        _mm512_storeu_ps(S + (j + 0) * R, a0);
        _mm512_storeu_ps(S + (j + 1) * R, a1);
        _mm512_storeu_ps(S + (j + 2) * R, a2);
        _mm512_storeu_ps(S + (j + 3) * R, a3);
        _mm512_storeu_ps(S + (j + 4) * R, a4);
        _mm512_storeu_ps(S + (j + 5) * R, a5);
        _mm512_storeu_ps(S + (j + 6) * R, a6);
        _mm512_storeu_ps(S + (j + 7) * R, a7);
    }
    for (; j < n; j++) {
        const float *k = Kf + j * D;
        __m512 a = _mm512_setzero_ps();
        for (int64_t c = 0; c < D; c++)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(Qt + c * R), _mm512_set1_ps(k[c]), a);
        _mm512_storeu_ps(S + j * R, a);
    }
}

/* Acc[c] = Acc[c] * alpha + sum_j P[j] * Vf[j][c], 16 columns at a time held in registers. */
static void accumulate(float *Acc, __m512 alpha, const float *P, const float *Vf, int64_t n,
                       int64_t D)
{
    for (int64_t c0 = 0; c0 < D; c0 += 16) {
        __m512 a[16];
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++)
            a[u] = _mm512_mul_ps(_mm512_loadu_ps(Acc + (c0 + u) * R), alpha);
        for (int64_t j = 0; j < n; j++) {
            const __m512 p = _mm512_loadu_ps(P + j * R);
            const float *v = Vf + j * D + c0;
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++)
                a[u] = _mm512_fmadd_ps(p, _mm512_set1_ps(v[u]), a[u]);
        }
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++)
            _mm512_storeu_ps(Acc + (c0 + u) * R, a[u]);
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
 * values are contiguous (a [T, S] mask) go 16 keys at a time through a register transpose: the
 * element-by-element copy took a quarter of a 512-token prefill's attention (default model:
 * 1.54 ms a layer with the mask, 1.16 without). */
static void mask_block(const cpu_att_tile *t, int64_t j0, int64_t n, float *Mt)
{
    const int rows = t->rows;
    if (t->mask_stride != (int64_t)sizeof(float)) {
        for (int i = 0; i < R; i++) {
            const uint8_t *p = t->mask[i < rows ? i : 0] + j0 * t->mask_stride;
            for (int64_t j = 0; j < n; j++)
                memcpy(&Mt[j * R + i], p + j * t->mask_stride, sizeof(float));
        }
        return;
    }
    for (int64_t jb = 0; jb < n; jb += 16) {
        const int64_t keys = n - jb < 16 ? n - jb : 16;
        const __mmask16 lanes = (__mmask16)((1u << keys) - 1u);
        __m512 x[16];
        for (int i = 0; i < 16; i++) {
            const float *row = (const float *)(const void *)t->mask[i < rows ? i : 0];
            x[i] = _mm512_maskz_loadu_ps(lanes, row + j0 + jb);
        }
        transpose16(x);
        for (int64_t j = 0; j < keys; j++)
            _mm512_storeu_ps(Mt + (jb + j) * R, x[j]);
    }
}

void cpu_att_tile_avx512(const cpu_att_tile *t, float *work)
{
    const int64_t D = t->D;
    const int rows = t->rows;
    float *Qt = work, *Acc = Qt + D * R, *Kf = Acc + D * R, *Vf = Kf + KB * D, *S = Vf + KB * D,
          *Mt = S + KB * R;
    const bool masked = t->mask[0] != NULL;
    for (int64_t c = 0; c < D; c++)
        for (int i = 0; i < R; i++)
            Qt[c * R + i] = i < rows ? t->q[i][c] * t->scale : 0.0f;
    memset(Acc, 0, (size_t)(D * R) * sizeof(float));
    int32_t pos[R];
    for (int i = 0; i < R; i++)
        pos[i] = t->pos[i < rows ? i : 0]; /* idle lanes: q = 0, never written out */
    const __m512i posv = _mm512_loadu_si512(pos);
    const __m512i oldest = _mm512_sub_epi32(posv, _mm512_set1_epi32((int32_t)t->window));
    const __m512 ninf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    __m512 m = ninf, l = zero;
    for (int64_t j0 = t->jlo; j0 < t->jhi; j0 += KB) {
        const int64_t n = t->jhi - j0 < KB ? t->jhi - j0 : KB;
        if (masked) {
            mask_block(t, j0, n, Mt);
            /* A block the mask hides from every row (a prompt's future keys) is skipped. */
            __mmask16 seen = 0;
            const __m512 ninf_ = _mm512_set1_ps(-INFINITY);
            for (int64_t j = 0; j < n; j++)
                seen |= _mm512_cmp_ps_mask(_mm512_loadu_ps(Mt + j * R), ninf_, _CMP_NEQ_UQ);
            if (!seen)
                continue;
        }
        widen_block(t->kk, t->k + j0 * t->ks, t->ks, n, D, Kf);
        widen_block(t->vk, t->v + j0 * t->vs, t->vs, n, D, Vf);
        scores(Qt, Kf, n, D, S);
        __m512 bmax = ninf;
        for (int64_t j = 0; j < n; j++) {
            const __m512i key = _mm512_set1_epi32((int32_t)(j0 + j));
            __mmask16 hide = 0;
            if (t->causal)
                hide |= _mm512_cmpgt_epi32_mask(key, posv);
            if (t->window > 0)
                hide |= _mm512_cmple_epi32_mask(key, oldest);
            __m512 sc = _mm512_loadu_ps(S + j * R);
            if (masked)
                sc = _mm512_add_ps(sc, _mm512_loadu_ps(Mt + j * R));
            const __m512 s = _mm512_mask_mov_ps(sc, hide, ninf);
            _mm512_storeu_ps(S + j * R, s);
            bmax = _mm512_max_ps(bmax, s);
        }
        const __m512 mnew = _mm512_max_ps(m, bmax);
        /* Lanes that have seen no key yet keep m = -inf: subtract 0 there (exp(-inf) = 0), not
         * -inf (which would give NaN). */
        const __m512 mref =
            _mm512_mask_mov_ps(mnew, _mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ), zero);
        const __m512 alpha = cpu_exp16(_mm512_sub_ps(m, mref));
        __m512 psum = zero;
        for (int64_t j = 0; j < n; j++) {
            const __m512 p = cpu_exp16(_mm512_sub_ps(_mm512_loadu_ps(S + j * R), mref));
            _mm512_storeu_ps(S + j * R, p);
            psum = _mm512_add_ps(psum, p);
        }
        l = _mm512_fmadd_ps(l, alpha, psum);
        m = mnew;
        accumulate(Acc, alpha, S, Vf, n, D);
    }
    const __m512 inv =
        _mm512_maskz_div_ps(_mm512_cmp_ps_mask(l, zero, _CMP_GT_OQ), _mm512_set1_ps(1.0f), l);
    float col[R];
    for (int64_t c = 0; c < D; c++) {
        _mm512_storeu_ps(col, _mm512_mul_ps(_mm512_loadu_ps(Acc + c * R), inv));
        for (int i = 0; i < rows; i++)
            t->out[i][c] = col[i];
    }
}
#else
typedef int cpu_fused_attention_avx512_not_built; /* a translation unit may not be empty */
#endif
