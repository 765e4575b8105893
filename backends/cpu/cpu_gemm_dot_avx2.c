/*
 * The float-weight tile kernel with AVX2 (cpu_gemv_float.h, as cpu_gemm_dot_avx512.c): a short
 * prompt's matmul against an f32, f16 or bf16 weight, both operands read K-contiguous as stored,
 * no packing. With 16 ymm registers the tile is 4 activation rows x 2 weight rows: 8 vectors of
 * partial dots, each step loading 8 elements of the 2 weight rows (widened in registers) and of
 * the 4 activation rows for 8 multiply-adds. A K block's 8 sums are reduced by two rounds of
 * hadd; K's last elements past a multiple of 8 are summed one by one. Loop order and the
 * request for the next weight rows as in the AVX-512 kernel. Compiled with the AVX2 flags and
 * called only when cpu_isa_mask() has CPU_ISA_AVX2.
 */
#include "cpu_gemv_float.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include "cpu_float_load.h"

#define ALWAYS static inline __attribute__((always_inline))
#define TILE_KC 1024 /* K elements per block */

/* acc[i][j] += dot(a[i][k0..k8), w[j][k0..k8)) over the block's whole vectors, k8 = k0 + a
 * multiple of 8; with pf set, also asks for the same lines of weight rows pf[0..1]. */
ALWAYS void tile_dots(int kind, const float *const a[4], const uint8_t *const w[2],
                      const uint8_t *const *pf, int64_t k0, int64_t k8, __m256 acc[4][2])
{
    const int64_t esz = kind == CPU_W_F32 ? 4 : 2;
    for (int64_t k = k0; k < k8; k += 8) {
        if (pf && ((k * esz) & 63) == 0) {
            _mm_prefetch((const char *)(pf[0] + k * esz), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf[1] + k * esz), _MM_HINT_T0);
        }
        __m256 x0 = cpu_w_load8(kind, w[0], k), x1 = cpu_w_load8(kind, w[1], k);
        __asm__("" : "+x"(x0), "+x"(x1)); /* in registers, as in the AVX-512 kernel */
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m256 y = _mm256_loadu_ps(a[i] + k);
            acc[i][0] = _mm256_fmadd_ps(y, x0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(y, x1, acc[i][1]);
        }
    }
}

/* The sums of acc[r][0], acc[r][1], acc[r + 1][0], acc[r + 1][1], in that order. */
ALWAYS __m128 sums4(__m256 acc[4][2], int r)
{
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[r][0], acc[r][1]),
                                    _mm256_hadd_ps(acc[r + 1][0], acc[r + 1][1]));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Weight rows [n0, n1) against every activation row, K block [k0, k1): the block's sums are
 * stored (first block) or added to the output. */
ALWAYS void tile_block(int kind, const cpu_gemv_job *job, int64_t n0, int64_t n1, int64_t k0,
                       int64_t k1, bool first)
{
    const int64_t M = job->M, k8 = k0 + (k1 - k0) / 8 * 8;
    for (int64_t n = n0; n < n1; n += 2) {
        const int nv = n1 - n < 2 ? 1 : 2;
        const uint8_t *w[2] = {job->w + n * job->w_stride,
                               job->w + (n + nv - 1) * job->w_stride};
        const uint8_t *next[2] = {job->w + (n + 2 < n1 ? n + 2 : n1 - 1) * job->w_stride,
                                  job->w + (n + 3 < n1 ? n + 3 : n1 - 1) * job->w_stride};
        for (int64_t m = 0; m < M; m += 4) {
            const int mv = M - m < 4 ? (int)(M - m) : 4;
            const float *a[4];
            for (int i = 0; i < 4; i++)
                a[i] = job->a + (m + (i < mv ? i : mv - 1)) * job->lda;
            __m256 acc[4][2];
            for (int i = 0; i < 4; i++)
                acc[i][0] = acc[i][1] = _mm256_setzero_ps();
            if (m == 0 && n + 2 < n1) /* two instances: no test in the other's loop */
                tile_dots(kind, a, w, next, k0, k8, acc);
            else
                tile_dots(kind, a, w, NULL, k0, k8, acc);
            float s[8];
            _mm_storeu_ps(s, sums4(acc, 0));
            _mm_storeu_ps(s + 4, sums4(acc, 2));
            for (int i = 0; i < mv; i++)
                for (int j = 0; j < nv; j++) {
                    float v = s[2 * i + j];
                    for (int64_t k = k8; k < k1; k++)
                        v += a[i][k] * cpu_w_load1(kind, w[j], k);
                    float *o = job->out + (m + i) * job->ldo + n + j;
                    *o = first ? v : *o + v;
                }
        }
    }
}

ALWAYS void tiles(int kind, const cpu_gemv_job *job, int64_t n0, int64_t n1)
{
    for (int64_t k0 = 0; k0 < job->K; k0 += TILE_KC)
        tile_block(kind, job, n0, n1, k0, job->K - k0 < TILE_KC ? job->K : k0 + TILE_KC,
                   k0 == 0);
}

void cpu_gemm_dot_avx2(const cpu_gemv_job *job, int64_t n0, int64_t n1)
{
    switch (job->wtype) {
    case BST_DTYPE_F32: tiles(CPU_W_F32, job, n0, n1); break;
    case BST_DTYPE_F16: tiles(CPU_W_F16, job, n0, n1); break;
    default: tiles(CPU_W_BF16, job, n0, n1); break;
    }
}
#else
typedef int cpu_gemm_dot_avx2_not_built; /* a translation unit may not be empty */
#endif
