/*
 * The few-row attention kernel's driver (cpu_att_few.h): the parts that are the same on every
 * ISA, around the ISA's scores, softmax and values pieces.
 *
 * Memory: decode finds the K/V cache evicted by the weights read since the previous token, so
 * every row comes from DRAM, and the unit's keys are read group by group (the scores' lanes), every
 * head's rows of a group one after the other: in address order, as the cache keeps a position's
 * kv heads side by side. The hardware prefetchers alone leave the kernel at a third of its speed,
 * so it asks for each line a block ahead (KB keys, ~0.5 us of work), evenly over the block's
 * time: each group's scores ask for the K rows of the same group in the next block, and the
 * values loop for the next block's V rows. The first block's rows are asked for here. Asking for
 * a group's K and V rows together one group ahead (the kernel until 2026-11) requested all of a
 * block's lines during its scores, half its time, and none during its values: AVX-512, one
 * thread, S 4096, cache-cold, 150 -> 112-117 us a call (the same-size read: 74 us).
 */
#include "cpu_att_few.h"

#include <math.h>
#include <string.h>

#define KB CPU_ATT_FEW_KB
#define RB CPU_ATT_FEW_RB

/* A row's running sum from its CPU_ATT_FEW_LSUMS (16) partial sums, as a tree: a chain of 16
 * dependent adds per row cost a short decode unit ~0.1 us. */
static float row_sum(const float *L)
{
    typedef float f32x4 __attribute__((vector_size(16)));
    f32x4 v[4];
    memcpy(v, L, sizeof v);
    const f32x4 s = (v[0] + v[1]) + (v[2] + v[3]);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

void cpu_att_few_run(const cpu_att_tile *t, float *work, const cpu_att_few_kernels *k)
{
    const int64_t D = t->D;
    const int rows = t->rows;
    /* Rows come in runs of head_rows, one run per kv head (cpu_att_tile.head_rows). */
    const int head_rows = t->head_rows > 0 ? t->head_rows : rows, heads = rows / head_rows;
    float *Q = work, *Acc = Q + (int64_t)rows * D, *P = Acc + (int64_t)rows * D;
    cpu_att_few_state st;
    _Alignas(64) float scratch[RB * 64]; /* the scores' (AVX2: partial sums of 8 keys) */
    for (int i = 0; i < rows; i++)
        cpu_att_scale_row(Q + i * D, t->q[i], D, t->scale);
    memset(Acc, 0, (size_t)(rows * D) * sizeof(float));
    for (int i = 0; i < CPU_ATT_FEW_ROWS; i++)
        st.m[i] = -INFINITY;
    memset(st.L, 0, (size_t)rows * CPU_ATT_FEW_LSUMS * sizeof(float));
    const int64_t kbytes = D * (t->kk ? 2 : 4), vbytes = D * (t->vk ? 2 : 4);
    const int64_t first_block = t->jhi - t->jlo < KB ? t->jhi - t->jlo : KB;
    /* The first block's K rows, then its V rows, each in address order (position by position,
     * its heads side by side): asked for head by head instead, a decode step at 64 positions
     * (cache-cold, two threads, one block each) took 4.6-4.7 us a call, 3.6-3.8 in this order. */
    for (int64_t j = t->jlo; j < t->jlo + first_block; j++)
        for (int h = 0; h < heads; h++)
            cpu_prefetch_bytes(t->k + h * t->kh_stride + j * t->ks, kbytes);
    for (int64_t j = t->jlo; j < t->jlo + first_block; j++)
        for (int h = 0; h < heads; h++)
            cpu_prefetch_bytes(t->v + h * t->vh_stride + j * t->vs, vbytes);
    /* Row groups of at most RB rows within each head's run, as even as possible (6 rows: 3 + 3,
     * not 4 + 2). */
    const int groups = (head_rows + RB - 1) / RB, per = (head_rows + groups - 1) / groups;
    const cpu_att_few_scores_fn *sf = k->scores[t->kk][D == 64 ? 0 : D == 128 ? 1 : 2];
    const cpu_att_few_values_fn *vf = k->values[t->vk];
    const int64_t lanes = k->lanes;
    for (int64_t j0 = t->jlo; j0 < t->jhi; j0 += KB) {
        const int64_t n = t->jhi - j0 < KB ? t->jhi - j0 : KB;
        for (int64_t jb = 0; jb < n; jb += lanes) {
            /* Keys past the share repeat its last key; the softmax hides their lanes. */
            const int64_t nk = n - jb < lanes ? n - jb : lanes, key = j0 + jb;
            /* Keys of the same group in the next block that exist. */
            const int64_t ahead = t->jhi - key - KB < lanes ? t->jhi - key - KB : lanes;
            for (int h = 0; h < heads; h++) {
                const uint8_t *kh = t->k + h * t->kh_stride + key * t->ks;
                for (int r0 = h * head_rows; r0 < (h + 1) * head_rows; r0 += per) {
                    const int rb = (h + 1) * head_rows - r0 < per ? (h + 1) * head_rows - r0 : per;
                    const bool first = r0 == h * head_rows;
                    sf[rb - 1](Q + r0 * D, D, kh, t->ks, nk, P + r0 * KB + jb, KB * t->ks,
                               first && ahead > 0 ? ahead : 0, scratch);
                }
            }
        }
        k->softmax(t, P, j0, n, &st);
        /* The next block's keys, whose V rows the values loop asks for. */
        const int64_t next = t->jhi - j0 - n < KB ? t->jhi - j0 - n : KB;
        for (int h = 0; h < heads; h++) {
            const uint8_t *vh = t->v + h * t->vh_stride + j0 * t->vs;
            for (int r0 = h * head_rows; r0 < (h + 1) * head_rows; r0 += per) {
                const int rb = (h + 1) * head_rows - r0 < per ? (h + 1) * head_rows - r0 : per;
                vf[rb - 1](Acc + r0 * D, st.alpha + r0, P + r0 * KB, vh, t->vs, n, D, KB * t->vs,
                           r0 == h * head_rows ? next : 0);
            }
        }
    }
    for (int i = 0; i < rows; i++) {
        const float *a = Acc + i * D;
        const float l = row_sum(st.L + i * CPU_ATT_FEW_LSUMS);
        if (t->part) { /* a share of split keys: the driver merges the shares */
            float *pr = t->part + (int64_t)i * (D + 2);
            pr[0] = st.m[i];
            pr[1] = l;
            memcpy(pr + 2, a, (size_t)D * sizeof(float));
            continue;
        }
        cpu_att_scale_row(t->out[i], a, D, l > 0.0f ? 1.0f / l : 0.0f);
    }
}
