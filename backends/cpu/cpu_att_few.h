/*
 * backends/cpu/cpu_att_few.h — the few-row attention kernel (a decode step's unit, see
 * cpu_fused.h, CPU_ATT_FEW_KB) split into its portable driver (cpu_fused_attention_few.c: the
 * block loop, row groups, prefetch of the first block, the output) and the vector pieces each ISA
 * gives it (cpu_fused_attention_decode_avx512.c on 16 lanes, _avx2.c on 8):
 *  - scores: rows [r0, r0 + rb) of one kv head against `lanes` keys, key l's row at
 *    kb + min(l, nk - 1) * ks (keys past the share repeat its last one), into out[r * KB + l];
 *    asks for the rows pf bytes past those of keys l < npf (the same keys of the next block);
 *  - softmax: a block's scores of every row turned into its probabilities in place, with the
 *    running maxima, rescale factors and sums (cpu_att_few_state) brought up to date;
 *  - values: Acc[r] = Acc[r] * alpha[r] + sum_j P[r][j] * V_j for rows [0, rb), asking for the V
 *    rows pf bytes past those of keys j < npf (the next block's).
 */
#ifndef BASTION_CPU_ATT_FEW_H
#define BASTION_CPU_ATT_FEW_H

#include "cpu_fused.h"

#define CPU_ATT_FEW_RB 4 /* rows per register group */

/* The rows' online-softmax state (row i: lane i). L holds each row's running sum as partial
 * sums, CPU_ATT_FEW_LSUMS a row, added up at the end. */
#define CPU_ATT_FEW_LSUMS 16
typedef struct cpu_att_few_state {
    _Alignas(64) float m[CPU_ATT_FEW_ROWS];     /* running maximum (-inf: no key seen yet) */
    _Alignas(64) float alpha[CPU_ATT_FEW_ROWS]; /* this block's rescale of the accumulator */
    _Alignas(64) float L[CPU_ATT_FEW_ROWS * CPU_ATT_FEW_LSUMS];
} cpu_att_few_state;

typedef void (*cpu_att_few_scores_fn)(const float *Q, int64_t D, const uint8_t *kb, int64_t ks,
                                      int64_t nk, float *out, int64_t pf, int64_t npf,
                                      float *scratch);
typedef void (*cpu_att_few_values_fn)(float *Acc, const float *alpha, const float *P,
                                      const uint8_t *v, int64_t vs, int64_t n, int64_t D,
                                      int64_t pf, int64_t npf);
/* Block [j0, j0 + n)'s scores at P (row i at P + i * KB). */
typedef void (*cpu_att_few_softmax_fn)(const cpu_att_tile *t, float *P, int64_t j0, int64_t n,
                                       cpu_att_few_state *st);

typedef struct cpu_att_few_kernels {
    int lanes; /* keys per scores call (a divisor of CPU_ATT_FEW_KB) */
    /* scores by K dtype kind (0 f32, 1 f16, 2 bf16), D (64, 128, other) and rows - 1; values by V
     * dtype kind and rows - 1. */
    cpu_att_few_scores_fn scores[3][3][CPU_ATT_FEW_RB];
    cpu_att_few_values_fn values[3][CPU_ATT_FEW_RB];
    cpu_att_few_softmax_fn softmax;
} cpu_att_few_kernels;

/* Defines `static const cpu_att_few_kernels name` from an ISA's always-inline pieces
 *   sf(kind, rb, DC, Q, D, kb, ks, nk, out, pf, npf, scratch)   (DC: D when fixed, else 0),
 *   vf(kind, rb, Acc, alpha, P, v, vs, n, D, pf, npf)           and the softmax function:
 * one instance per dtype kind, row count and (scores) D of 64, 128 or other, so that their loops
 * have constant trip counts and keep their vectors in registers. */
#define CPU_ATT_FEW_KERNELS(name, lanes, sf, vf, softmax)                                      \
    CPU_ATT_FEW_KIND_(sf, vf, 0)                                                               \
    CPU_ATT_FEW_KIND_(sf, vf, 1)                                                               \
    CPU_ATT_FEW_KIND_(sf, vf, 2)                                                               \
    static const cpu_att_few_kernels name = {                                                  \
        lanes,                                                                                 \
        {CPU_ATT_FEW_BY_D_(sf, 0), CPU_ATT_FEW_BY_D_(sf, 1), CPU_ATT_FEW_BY_D_(sf, 2)},        \
        {CPU_ATT_FEW_BY_RB_(vf, 0), CPU_ATT_FEW_BY_RB_(vf, 1), CPU_ATT_FEW_BY_RB_(vf, 2)},     \
        softmax,                                                                               \
    };
#define CPU_ATT_FEW_SCORES_(sf, kind, rb, dc)                                                  \
    static void sf##_##kind##_##rb##_##dc(const float *Q, int64_t D, const uint8_t *kb,        \
                                          int64_t ks, int64_t nk, float *out, int64_t pf,      \
                                          int64_t npf, float *scratch)                         \
    {                                                                                          \
        sf(kind, rb, dc, Q, D, kb, ks, nk, out, pf, npf, scratch);                             \
    }
#define CPU_ATT_FEW_VALUES_(vf, kind, rb)                                                      \
    static void vf##_##kind##_##rb(float *Acc, const float *alpha, const float *P,             \
                                   const uint8_t *v, int64_t vs, int64_t n, int64_t D,         \
                                   int64_t pf, int64_t npf)                                    \
    {                                                                                          \
        vf(kind, rb, Acc, alpha, P, v, vs, n, D, pf, npf);                                     \
    }
#define CPU_ATT_FEW_GROUP_(sf, vf, kind, rb)                                                   \
    CPU_ATT_FEW_SCORES_(sf, kind, rb, 64)                                                      \
    CPU_ATT_FEW_SCORES_(sf, kind, rb, 128)                                                     \
    CPU_ATT_FEW_SCORES_(sf, kind, rb, 0)                                                       \
    CPU_ATT_FEW_VALUES_(vf, kind, rb)
#define CPU_ATT_FEW_KIND_(sf, vf, kind)                                                        \
    CPU_ATT_FEW_GROUP_(sf, vf, kind, 1)                                                        \
    CPU_ATT_FEW_GROUP_(sf, vf, kind, 2)                                                        \
    CPU_ATT_FEW_GROUP_(sf, vf, kind, 3)                                                        \
    CPU_ATT_FEW_GROUP_(sf, vf, kind, 4)
#define CPU_ATT_FEW_BY_RB_(pre, kind, ...)                                                     \
    {pre##_##kind##_1##__VA_ARGS__, pre##_##kind##_2##__VA_ARGS__,                             \
     pre##_##kind##_3##__VA_ARGS__, pre##_##kind##_4##__VA_ARGS__}
#define CPU_ATT_FEW_BY_D_(sf, kind)                                                            \
    {CPU_ATT_FEW_BY_RB_(sf, kind, _64), CPU_ATT_FEW_BY_RB_(sf, kind, _128),                    \
     CPU_ATT_FEW_BY_RB_(sf, kind, _0)}

/* Runs unit t with the ISA's pieces k; work: CPU_ATT_FEW_WORK floats, 64-byte aligned. */
void cpu_att_few_run(const cpu_att_tile *t, float *work, const cpu_att_few_kernels *k);

#endif /* BASTION_CPU_ATT_FEW_H */
