/*
 * The float-weight tile kernel with AVX-512 (cpu_gemv_float.h): a short prompt's matmul against
 * an f32, f16 or bf16 weight, with no packing at all.
 *
 * Both operands already have K contiguous (activation rows and weight rows), so a register tile
 * of 4 activation rows x 4 weight rows keeps 16 vectors of partial dot products: each step loads
 * 16 elements of the 4 weight rows (widened in registers) and of the 4 activation rows, and does
 * 16 multiply-adds. The 16 sums are reduced once per K block by a transpose-add tree
 * (cpu_fold_avx512.h). The packed GEMM instead copies the whole weight into f32 panels on every
 * call, which for a prompt of tens of rows costs as much as the multiply-adds themselves
 * (64 x 1536 x 576: 660-770 us, against ~300 us of arithmetic on two cores).
 * Loop order per worker share: K blocks of TILE_KC, then slices of the activation rows, so that
 * the slice's block (TILE_A_BYTES) stays in L2 (1536 x 512 x 576 against the packed GEMM: f16 1.07
 * of its time without slices, 0.97-1.03 with them; f32 0.93, then 0.90-0.94); then 4 weight rows
 * at a time, whose block (at most 16 KiB) stays in L1 while every group of 4 activation rows
 * sweeps it. The first group's loop also asks for the next 4 weight rows' lines, in step with its
 * own loads (asking for them all at once stalled the loads behind the misses in flight). Edges are
 * computed on repeated rows and only the valid sums stored. Compiled with the AVX-512 flags and
 * called only when cpu_isa_mask() has them.
 */
#include "cpu_gemv_float.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)
#include "cpu_float_load.h"
#include "cpu_fold_avx512.h"

#define ALWAYS static inline __attribute__((always_inline))
#define TILE_KC 1024 /* K elements per block: 4 f32 weight rows' block is 16 KiB */
#define TILE_A_BYTES (256 * 1024) /* activation rows' block swept by every weight tile (L2) */

/* acc[i][j] += dot(a[i][k0..k1), w[j][k0..k1)); with pf set, also asks for the same lines of
 * weight rows pf[0..3] (the next tile's), in step with the loads. */
ALWAYS void tile_dots(int kind, const float *const a[4], const uint8_t *const w[4],
                      const uint8_t *const *pf, int64_t k0, int64_t k1, __m512 acc[4][4])
{
    const int64_t esz = kind == CPU_W_F32 ? 4 : 2;
    for (int64_t k = k0; k < k1; k += 16) {
        const __mmask16 live = (__mmask16)(k1 - k >= 16 ? 0xffffu : (1u << (k1 - k)) - 1u);
        if (pf && ((k * esz) & 63) == 0)
            for (int j = 0; j < 4; j++)
                _mm_prefetch((const char *)(pf[j] + k * esz), _MM_HINT_T0);
        __m512 x0 = cpu_w_load16(kind, w[0], k, live), x1 = cpu_w_load16(kind, w[1], k, live),
               x2 = cpu_w_load16(kind, w[2], k, live), x3 = cpu_w_load16(kind, w[3], k, live);
        /* In registers: the compiler would otherwise fold each f32 weight load into all four
         * rows' multiply-adds, reading the weight four times. */
        __asm__("" : "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m512 y = _mm512_maskz_loadu_ps(live, a[i] + k);
            acc[i][0] = _mm512_fmadd_ps(y, x0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(y, x1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(y, x2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(y, x3, acc[i][3]);
        }
    }
}

/* Weight rows [n0, n1) against activation rows [m0, M), K block [k0, k1): the block's sums are
 * stored (first block) or added to the output. */
ALWAYS void tile_block(int kind, const cpu_gemv_job *job, int64_t n0, int64_t n1, int64_t m0,
                       int64_t M, int64_t k0, int64_t k1, bool first)
{
    for (int64_t n = n0; n < n1; n += 4) {
        const int nv = n1 - n < 4 ? (int)(n1 - n) : 4;
        const uint8_t *w[4], *next[4];
        for (int j = 0; j < 4; j++) {
            w[j] = job->w + (n + (j < nv ? j : nv - 1)) * job->w_stride;
            next[j] = job->w + (n + 4 + j < n1 ? n + 4 + j : n1 - 1) * job->w_stride;
        }
        for (int64_t m = m0; m < M; m += 4) {
            const int mv = M - m < 4 ? (int)(M - m) : 4;
            const float *a[4];
            for (int i = 0; i < 4; i++)
                a[i] = job->a + (m + (i < mv ? i : mv - 1)) * job->lda;
            __m512 acc[4][4];
            for (int i = 0; i < 4; i++)
                acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = _mm512_setzero_ps();
            if (m == m0 && n + 4 < n1) /* two instances: no test in the other's loop */
                tile_dots(kind, a, w, next, k0, k1, acc);
            else
                tile_dots(kind, a, w, NULL, k0, k1, acc);
            const __m512 s = cpu_fold16(cpu_fold4(acc[0][0], acc[0][1], acc[0][2], acc[0][3]),
                                        cpu_fold4(acc[1][0], acc[1][1], acc[1][2], acc[1][3]),
                                        cpu_fold4(acc[2][0], acc[2][1], acc[2][2], acc[2][3]),
                                        cpu_fold4(acc[3][0], acc[3][1], acc[3][2], acc[3][3]));
            const __mmask8 cols = (__mmask8)((1u << nv) - 1u);
            for (int i = 0; i < mv; i++) {
                float *o = job->out + (m + i) * job->ldo + n;
                __m128 v = i == 0   ? _mm512_castps512_ps128(s)
                           : i == 1 ? _mm512_extractf32x4_ps(s, 1)
                           : i == 2 ? _mm512_extractf32x4_ps(s, 2)
                                    : _mm512_extractf32x4_ps(s, 3);
                if (!first)
                    v = _mm_add_ps(v, _mm_maskz_loadu_ps(cols, o));
                _mm_mask_storeu_ps(o, cols, v);
            }
        }
    }
}

ALWAYS void tiles(int kind, const cpu_gemv_job *job, int64_t n0, int64_t n1)
{
    for (int64_t k0 = 0; k0 < job->K; k0 += TILE_KC) {
        const int64_t k1 = job->K - k0 < TILE_KC ? job->K : k0 + TILE_KC;
        /* Activation rows in slices of about TILE_A_BYTES, multiples of 4 rows. */
        int64_t mb = TILE_A_BYTES / ((k1 - k0) * (int64_t)sizeof(float)) / 4 * 4;
        mb = mb < 4 ? 4 : mb;
        for (int64_t m0 = 0; m0 < job->M; m0 += mb)
            tile_block(kind, job, n0, n1, m0, job->M - m0 < mb ? job->M : m0 + mb, k0, k1,
                       k0 == 0);
    }
}

void cpu_gemm_dot_avx512(const cpu_gemv_job *job, int64_t n0, int64_t n1)
{
    switch (job->wtype) {
    case BST_DTYPE_F32: tiles(CPU_W_F32, job, n0, n1); break;
    case BST_DTYPE_F16: tiles(CPU_W_F16, job, n0, n1); break;
    default: tiles(CPU_W_BF16, job, n0, n1); break;
    }
}
#else
typedef int cpu_gemm_dot_avx512_not_built; /* a translation unit may not be empty */
#endif
