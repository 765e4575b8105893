/*
 * Fused ATTENTION for the CPU backend (see cpu_fused.h): flash-attention style, one pass over
 * the keys with an online softmax.
 *
 * Work is split over (query head, block of up to ATT_TB query rows) units on the host pool. A
 * unit walks its keys in blocks of ATT_KB: every query row of the unit scores the block (the
 * block's K rows stay in L1 across the rows), then folds it into its running maximum m, sum l and
 * accumulator acc: when the block raises the maximum, acc and l are rescaled by exp(m_old -
 * m_new) first. Keys that CAUSAL / WINDOW hide from every row of the unit are never read; the
 * rest of the hiding (and the optional additive mask) is applied per score. A row that sees no
 * key at all gives zeros, as the lowered softmax does. K and V are read in their cache dtype
 * (f32, f16, bf16) through the ISA's key-block loops; q is pre-multiplied by SCALE. With
 * AVX-512 a unit is handed whole to the lane-per-row tile (prompts: 8..32 rows, no key split)
 * or to the few-row kernel (the rest up to 16 rows, decode included; D a multiple of 16); the
 * loops here run the units those decline and everything on other ISAs.
 */
#include "cpu_fused.h"

#include <math.h>
#include <string.h>

#define ATT_TB 16   /* query rows per unit (positions x the heads of one kv head); the tile's
                       units take up to CPU_ATT_TILE_ROWS */
#define ATT_KB 64   /* keys per block */
#define ATT_SPLIT_MIN 64 /* fewest keys per share when a unit's keys are split */
#define ATT_SHARE_ALIGN 16 /* shares are whole groups of keys the dot loops take at once */
#define ATT_MAX_D 1024
#define ATT_MAX_SPLIT 64 /* most shares per unit (att_merge's weights) */

static int kv_kind(bst_dtype t)
{
    return t == BST_DTYPE_F32 ? 0 : t == BST_DTYPE_F16 ? 1 : t == BST_DTYPE_BF16 ? 2 : -1;
}

static int64_t kind_bytes(int kind) { return kind == 0 ? 4 : 2; }

bst_status cpu_fused_check_attention(cpu_run *r)
{
    const cpu_node *n = r->node;
    const cpu_tensor *q = &r->in[0], *k = &r->in[1], *v = &r->in[2], *o = &r->out;
    if (n->n_inputs < 3 || n->n_inputs > 4)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "attention takes 3 or 4 inputs");
    if (q->rank != 3 || k->rank != 3 || v->rank != 3 || o->rank != 3)
        return cpu_fail(r, BST_ERR_SHAPE, "q, k, v and the output must have rank 3");
    if (q->dtype != BST_DTYPE_F32 || o->dtype != BST_DTYPE_F32)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "fused attention needs f32 q and output");
    int kk = kv_kind(k->dtype), vk = kv_kind(v->dtype);
    if (kk < 0 || vk < 0)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "fused attention reads f32/f16/bf16 k and v");
    if (q->nb[3] != 4 || o->nb[3] != 4 || k->nb[3] != kind_bytes(kk) ||
        v->nb[3] != kind_bytes(vk))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "fused attention needs contiguous head rows");
    const int64_t T = q->ne[1], Hq = q->ne[2], D = q->ne[3], S = k->ne[1], Hkv = k->ne[2];
    if (k->ne[3] != D || v->ne[3] != D || v->ne[1] != S || v->ne[2] != Hkv)
        return cpu_fail(r, BST_ERR_SHAPE, "k and v must both be [S,Hkv,D] with q's D");
    if (Hkv == 0 || Hq % Hkv != 0)
        return cpu_fail(r, BST_ERR_SHAPE, "Hq (%lld) must be a multiple of Hkv (%lld)",
                        (long long)Hq, (long long)Hkv);
    if (o->ne[1] != T || o->ne[2] != Hq || o->ne[3] != D)
        return cpu_fail(r, BST_ERR_SHAPE, "output must be [T,Hq,D]");
    if (D > ATT_MAX_D)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "head dim %lld > %d", (long long)D, ATT_MAX_D);
    if (n->n_inputs == 4) {
        const cpu_tensor *m = &r->in[3];
        if (m->dtype != BST_DTYPE_F32 || m->rank > 2)
            return cpu_fail(r, BST_ERR_UNSUPPORTED, "the mask must be f32 [T,S]");
        if ((m->ne[2] != 1 && m->ne[2] != T) || (m->ne[3] != 1 && m->ne[3] != S))
            return cpu_fail(r, BST_ERR_SHAPE, "mask [%lld,%lld] does not broadcast to [T,S]",
                            (long long)m->ne[2], (long long)m->ne[3]);
    }
    double scale = cpu_attr_float(n, BST_ATTR_SCALE, 1.0 / sqrt((double)(D ? D : 1)));
    if (!isfinite(scale))
        return cpu_fail(r, BST_ERR_INVALID_ARG, "scale %g is not finite", scale);
    if (cpu_attr_int(n, BST_ATTR_WINDOW, 0) < 0)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "window must be >= 0");
    return BST_OK;
}

/* --- portable key-block loops --- */

static inline float half_to_float(const uint8_t *p)
{
    uint32_t h = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float elem(int kind, const uint8_t *row, int64_t i)
{
    if (kind == 0) {
        float f;
        memcpy(&f, row + i * 4, sizeof f);
        return f;
    }
    if (kind == 1)
        return half_to_float(row + i * 2);
    uint32_t bits = ((uint32_t)row[i * 2] | ((uint32_t)row[i * 2 + 1] << 8)) << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#define SCALAR_LOOPS(kind, sfx)                                                               \
    static void dot_##sfx(const float *q, const uint8_t *k, int64_t ks, int64_t n, int64_t d, \
                          float *out)                                                         \
    {                                                                                         \
        for (int64_t j = 0; j < n; j++) {                                                     \
            const uint8_t *row = k + j * ks;                                                  \
            float s = 0.0f;                                                                   \
            for (int64_t i = 0; i < d; i++)                                                   \
                s += q[i] * elem(kind, row, i);                                               \
            out[j] = s;                                                                       \
        }                                                                                     \
    }                                                                                         \
    static void axpy_##sfx(float *acc, const float *p, const uint8_t *v, int64_t vs,          \
                           int64_t n, int64_t d)                                              \
    {                                                                                         \
        for (int64_t j = 0; j < n; j++) {                                                     \
            if (p[j] == 0.0f)                                                                 \
                continue;                                                                     \
            const uint8_t *row = v + j * vs;                                                  \
            for (int64_t i = 0; i < d; i++)                                                   \
                acc[i] += p[j] * elem(kind, row, i);                                          \
        }                                                                                     \
    }
SCALAR_LOOPS(0, f32)
SCALAR_LOOPS(1, f16)
SCALAR_LOOPS(2, bf16)
#undef SCALAR_LOOPS

static float exp_block(float *s, int64_t n, float m)
{
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - m);
        sum += s[j];
    }
    return sum;
}

const cpu_att_loops cpu_att_loops_scalar = {{dot_f32, dot_f16, dot_bf16},
                                            {axpy_f32, axpy_f16, axpy_bf16},
                                            exp_block, NULL, NULL};

/* --- the driver --- */

typedef struct att_job {
    const cpu_att_loops *loops;
    int kk, vk;
    int64_t T, S, Hq, Hkv, D, window, G;
    bool causal;
    float scale;
    const cpu_tensor *mask; /* NULL: none */
    int64_t tb;             /* query positions per unit (each with its G heads) */
    int64_t hpu;            /* kv heads per unit (more than 1 only for the few-row kernel) */
    int64_t rows;           /* rows per unit, at most: hpu * G * tb */
    int64_t n_qblocks, n_hblocks, n_split;
    float *work; /* per worker: qs[rows*D], acc[rows*D], sc[rows*KB], m[rows], l[rows] */
    size_t work_floats;
    float *part; /* n_split > 1: per unit and row, m, l and acc[D] of its share of the keys */
    bool tile;   /* units of >= ATT_TILE_MIN rows go to loops->tile (cpu_att_tile) */
    bool few;    /* the other units go to loops->few (CPU_ATT_FEW_KB in cpu_fused.h) */
} att_job;

#define ATT_TILE_MIN 8 /* fewer rows would leave most of the tile's lanes idle */

typedef float att_f32x4 __attribute__((vector_size(16)));
void cpu_att_scale_row(float *dst, const float *src, int64_t n, float f)
{
    const att_f32x4 fv = {f, f, f, f};
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        att_f32x4 v;
        memcpy(&v, src + c, sizeof v);
        v *= fv;
        memcpy(dst + c, &v, sizeof v);
    }
    for (; c < n; c++)
        dst[c] = src[c] * f;
}

/* max(s[0..n)), -INFINITY when n is 0: eight running maxima, since one is a chain of
 * dependent compares (a decode row's 64 scores cost as much as their dot products). */
static float block_max(const float *s, int64_t n)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++)
            m[u] = s[j + u] > m[u] ? s[j + u] : m[u];
    for (; j < n; j++)
        m[0] = s[j] > m[0] ? s[j] : m[0];
    for (int u = 1; u < 8; u++)
        m[0] = m[u] > m[0] ? m[u] : m[0];
    return m[0];
}

/* The keys any query position in [t0, t1) may see (positions are S - T + t). */
static void key_range(const att_job *job, int64_t t0, int64_t t1, int64_t *out_lo,
                      int64_t *out_hi)
{
    int64_t jlo = 0, jhi = job->S;
    const int64_t pos_first = job->S - job->T + t0, pos_last = job->S - job->T + t1 - 1;
    if (job->causal && pos_last + 1 < jhi)
        jhi = pos_last + 1 < 0 ? 0 : pos_last + 1;
    if (job->window > 0 && pos_first - job->window + 1 > jlo)
        jlo = pos_first - job->window + 1;
    *out_lo = jlo;
    *out_hi = jhi > jlo ? jhi : jlo;
}

/* The keys of a unit's share: [jlo, jhi) of the unit's whole range cut into n_split shares of
 * whole groups of ATT_SHARE_ALIGN keys. */
static void share_range(const att_job *job, int64_t split, int64_t *jlo, int64_t *jhi)
{
    if (job->n_split <= 1)
        return;
    int64_t share = (*jhi - *jlo + job->n_split - 1) / job->n_split;
    share = (share + ATT_SHARE_ALIGN - 1) / ATT_SHARE_ALIGN * ATT_SHARE_ALIGN;
    const int64_t lo = *jlo + split * share;
    *jhi = lo + share < *jhi ? lo + share : *jhi;
    *jlo = lo;
}

/* A block of query rows: hpu kv heads (fewer in the last) from kh, positions [t0, t1). Its rows
 * are, kv head by kv head, every query head of the kv head's group at every position. */
typedef struct att_block {
    int64_t kh, heads, t0, t1;
    int64_t head_rows; /* (t1 - t0) * G */
} att_block;

static att_block block_of(const att_job *job, int64_t b)
{
    att_block blk;
    const int64_t qb = b % job->n_qblocks;
    blk.kh = b / job->n_qblocks * job->hpu;
    blk.heads = job->Hkv - blk.kh < job->hpu ? job->Hkv - blk.kh : job->hpu;
    blk.t0 = qb * job->tb;
    blk.t1 = blk.t0 + job->tb < job->T ? blk.t0 + job->tb : job->T;
    blk.head_rows = (blk.t1 - blk.t0) * job->G;
    return blk;
}

/* Row i of a block: its position t and query head h. */
static void block_row(const att_job *job, const att_block *blk, int64_t i, int64_t *t, int64_t *h)
{
    const int64_t rest = i % blk->head_rows;
    *t = blk->t0 + rest / job->G;
    *h = (blk->kh + i / blk->head_rows) * job->G + rest % job->G;
}

/* Unit = (block of query rows, share of the keys), numbered share-major: every block's first
 * share, then every block's second, ... With the shares' units handed out in runs (att_units),
 * a decode step's thread reads one run of positions of the K/V cache. Each K/V row is read once
 * for all the rows of its kv head while it is in L1. The block's shares' {m, l, acc} rows are
 * adjacent in job->part (att_merge). */
static void att_unit(cpu_run *r, const att_job *job, int64_t unit, float *work)
{
    const cpu_tensor *q = &r->in[0], *k = &r->in[1], *v = &r->in[2], *o = &r->out;
    const int64_t D = job->D, S = job->S, T = job->T;
    const int64_t blocks = job->n_hblocks * job->n_qblocks;
    const int64_t split = unit / blocks, b = unit % blocks;
    const att_block blk = block_of(job, b);
    const int64_t kh = blk.kh, t0 = blk.t0, t1 = blk.t1, rows = blk.heads * blk.head_rows;
    float *part = job->part ? job->part + (size_t)(b * job->n_split + split) * (size_t)job->rows *
                                              (size_t)(D + 2)
                            : NULL;
    const bool tile = job->tile && rows >= ATT_TILE_MIN;
    const bool few = !tile && job->few && rows <= CPU_ATT_FEW_ROWS;
    if (tile || few) {
        cpu_att_tile tl;
        memset(&tl, 0, sizeof tl);
        tl.rows = (int)rows;
        tl.D = D;
        tl.scale = job->scale;
        for (int64_t i = 0; i < rows; i++) {
            int64_t t, h;
            block_row(job, &blk, i, &t, &h);
            tl.q[i] = (const float *)(const void *)cpu_row_ptr(q, 0, t, h);
            tl.out[i] = (float *)(void *)cpu_row_ptr(o, 0, t, h);
            tl.pos[i] = (int32_t)(S - T + t);
            if (job->mask)
                tl.mask[i] = job->mask->data + (job->mask->ne[2] == 1 ? 0 : t * job->mask->nb[2]);
        }
        if (job->mask)
            tl.mask_stride = job->mask->ne[3] == 1 ? 0 : job->mask->nb[3];
        tl.k = cpu_row_ptr(k, 0, 0, kh);
        tl.v = cpu_row_ptr(v, 0, 0, kh);
        tl.ks = k->nb[1];
        tl.vs = v->nb[1];
        tl.head_rows = (int)blk.head_rows;
        tl.kh_stride = k->nb[2];
        tl.vh_stride = v->nb[2];
        tl.kk = job->kk;
        tl.vk = job->vk;
        key_range(job, t0, t1, &tl.jlo, &tl.jhi);
        tl.causal = job->causal;
        tl.window = job->window;
        if (tile) {
            job->loops->tile(&tl, work);
            return;
        }
        share_range(job, split, &tl.jlo, &tl.jhi);
        tl.part = part;
        job->loops->few(&tl, work);
        return;
    }
    float *qs = work, *acc = qs + job->rows * D, *sc = acc + job->rows * D,
          *mx = sc + job->rows * ATT_KB, *sum = mx + job->rows;
    for (int64_t i = 0; i < rows; i++) {
        int64_t t, h;
        block_row(job, &blk, i, &t, &h);
        const float *src = (const float *)(const void *)cpu_row_ptr(q, 0, t, h);
        cpu_att_scale_row(qs + i * D, src, D, job->scale);
        memset(acc + i * D, 0, (size_t)D * sizeof(float));
        mx[i] = -INFINITY;
        sum[i] = 0.0f;
    }
    int64_t jlo, jhi;
    key_range(job, t0, t1, &jlo, &jhi);
    share_range(job, split, &jlo, &jhi);
    const uint8_t *kbase = cpu_row_ptr(k, 0, 0, kh), *vbase = cpu_row_ptr(v, 0, 0, kh);
    const int64_t ks = k->nb[1], vs = v->nb[1];
    for (int64_t j0 = jlo; j0 < jhi; j0 += ATT_KB) {
        const int64_t n = jhi - j0 < ATT_KB ? jhi - j0 : ATT_KB;
        for (int64_t i = 0; i < rows; i++) {
            int64_t t, h;
            block_row(job, &blk, i, &t, &h);
            const int64_t pos = S - T + t;
            float *s = sc + i * ATT_KB;
            job->loops->dot[job->kk](qs + i * D, kbase + j0 * ks, ks, n, D, s);
            /* Keys [vlo, vhi) of the block are the ones causal / window leave visible: hide
             * the rest, add the mask to those, without a test per key. */
            int64_t vlo = 0, vhi = n;
            if (job->causal && pos + 1 - j0 < vhi)
                vhi = pos + 1 - j0 > 0 ? pos + 1 - j0 : 0;
            if (job->window > 0 && pos - job->window + 1 - j0 > vlo)
                vlo = pos - job->window + 1 - j0 < vhi ? pos - job->window + 1 - j0 : vhi;
            for (int64_t j = 0; j < vlo; j++)
                s[j] = -INFINITY;
            for (int64_t j = vhi; j < n; j++)
                s[j] = -INFINITY;
            if (job->mask) {
                const cpu_tensor *m = job->mask;
                const uint8_t *mrow = m->data + (m->ne[2] == 1 ? 0 : t * m->nb[2]);
                const int64_t mstride = m->ne[3] == 1 ? 0 : m->nb[3];
                if (mstride == (int64_t)sizeof(float)) { /* a row of keys: a plain loop */
                    const float *mf = (const float *)(const void *)mrow + j0;
                    for (int64_t j = vlo; j < vhi; j++)
                        s[j] += mf[j];
                } else {
                    for (int64_t j = vlo; j < vhi; j++) {
                        float f;
                        memcpy(&f, mrow + (j0 + j) * mstride, sizeof f);
                        s[j] += f;
                    }
                }
            }
            const float bmax = block_max(s + vlo, vhi - vlo);
            if (bmax == -INFINITY)
                continue; /* nothing visible to this row in this block */
            const float mnew = bmax > mx[i] ? bmax : mx[i];
            const float alpha = mx[i] == -INFINITY ? 0.0f : expf(mx[i] - mnew);
            const float bsum = job->loops->exp(s, n, mnew);
            if (alpha != 1.0f && mx[i] != -INFINITY) /* before the first block acc is 0 */
                cpu_att_scale_row(acc + i * D, acc + i * D, D, alpha);
            sum[i] = sum[i] * alpha + bsum;
            mx[i] = mnew;
            job->loops->axpy[job->vk](acc + i * D, s, vbase + j0 * vs, vs, n, D);
        }
    }
    for (int64_t i = 0; i < rows; i++) {
        if (part) {
            float *pr = part + (size_t)i * (size_t)(D + 2);
            pr[0] = mx[i];
            pr[1] = sum[i];
            memcpy(pr + 2, acc + i * D, (size_t)D * sizeof(float));
            continue;
        }
        int64_t t, h;
        block_row(job, &blk, i, &t, &h);
        float *dst = (float *)(void *)cpu_row_ptr(o, 0, t, h);
        const float inv = sum[i] > 0.0f ? 1.0f / sum[i] : 0.0f;
        cpu_att_scale_row(dst, acc + i * D, D, inv);
    }
}

static void att_units(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const att_job *job = r->aux;
    float *work = job->work + (size_t)w * job->work_floats;
    for (int64_t u = begin; u < end; u++)
        att_unit(r, job, u, work);
}

/* Key-split units: each output row combines its shares, rescaled to their common maximum:
 * out = sum_sp acc_sp * w_sp with w_sp = exp(m_sp - m) / l, 4 lanes at a time (the plain loops,
 * left scalar by the compiler, took 13.7k instructions for a decode step's 9 rows x 2 shares,
 * a quarter of what its 6 units took with the AVX2 loops; now 5.7k). */
static void att_merge(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const att_job *job = r->aux;
    const cpu_tensor *o = &r->out;
    const int64_t D = job->D, ns = job->n_split;
    for (int64_t b = begin; b < end; b++) {
        const att_block blk = block_of(job, b);
        for (int64_t i = 0; i < blk.heads * blk.head_rows; i++) {
            int64_t t, h;
            block_row(job, &blk, i, &t, &h);
            float *dst = (float *)(void *)cpu_row_ptr(o, 0, t, h);
            const float *pr0 = job->part + ((size_t)(b * ns) * (size_t)job->rows + (size_t)i) *
                                               (size_t)(D + 2);
            const size_t pstride = (size_t)job->rows * (size_t)(D + 2); /* next share's row */
            float m = -INFINITY, l = 0.0f;
            for (int64_t sp = 0; sp < ns; sp++)
                m = pr0[(size_t)sp * pstride] > m ? pr0[(size_t)sp * pstride] : m;
            if (m == -INFINITY) { /* no key visible at all: zeros */
                memset(dst, 0, (size_t)D * sizeof(float));
                continue;
            }
            float wt[ATT_MAX_SPLIT];
            for (int64_t sp = 0; sp < ns; sp++) {
                const float *pr = pr0 + (size_t)sp * pstride;
                wt[sp] = pr[0] == -INFINITY ? 0.0f : expf(pr[0] - m);
                l += pr[1] * wt[sp];
            }
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            for (int64_t sp = 0; sp < ns; sp++)
                wt[sp] *= inv;
            int64_t c = 0;
            for (; c + 4 <= D; c += 4) {
                att_f32x4 acc = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int64_t sp = 0; sp < ns; sp++) {
                    att_f32x4 x;
                    memcpy(&x, pr0 + (size_t)sp * pstride + 2 + c, sizeof x);
                    const att_f32x4 wv = {wt[sp], wt[sp], wt[sp], wt[sp]};
                    acc += x * wv;
                }
                memcpy(dst + c, &acc, sizeof acc);
            }
            for (; c < D; c++) {
                float acc = 0.0f;
                for (int64_t sp = 0; sp < ns; sp++)
                    acc += pr0[(size_t)sp * pstride + 2 + (size_t)c] * wt[sp];
                dst[c] = acc;
            }
        }
    }
}

/* Shares to split each block's keys into. A worker's load is about ceil(units / workers) shares
 * of S / n_split keys: pick the n_split (shares of at least min_share keys) that makes that
 * smallest, the fewest shares on a tie, since each share costs a merge. Decode with 3 kv heads
 * in 3 blocks on 2 workers: 3 whole units leave one worker with two (2 S keys of work against
 * 1.5 S with 2 shares each); in one block, 2 shares. */
static int64_t att_split(int64_t blocks, int64_t S, int64_t min_share, uint32_t workers)
{
    if (workers <= 1 || blocks >= 4 * (int64_t)workers)
        return 1;
    int64_t most = S / min_share, want = (4 * (int64_t)workers + blocks - 1) / blocks;
    most = most < want ? most : want;
    most = most < ATT_MAX_SPLIT ? most : ATT_MAX_SPLIT;
    int64_t best = 1, best_num = (blocks + workers - 1) / workers, best_den = 1;
    for (int64_t n = 2; n <= most; n++) {
        const int64_t num = (blocks * n + workers - 1) / workers; /* load: num / n of S */
        if (num * best_den < best_num * n) {
            best = n;
            best_num = num;
            best_den = n;
        }
    }
    return best;
}

/* Whether the mask adds exactly zero (+0 or -0) to every score CAUSAL and WINDOW leave visible:
 * then leaving it out changes no bit of the result (s + 0 is s for every s, infinities and NaN
 * included), and the kernels skip it. The default model's session writes such a mask (zeros up
 * to each position, -inf past it) for the lowered graph, whose softmax needs it; applying it cost
 * a quarter of a 512-token prefill's attention (3.77M against 3.0M cycles a layer). Looking
 * costs too (a row at a time from memory: ~234k cycles for that prefill's mask), and every
 * layer reads the same mask, so when no node of the partition can write the mask's buffer
 * (cpu_node.mask_kept) the answer is kept for the rest of the execute (cpu_mask_memo). */
static bool mask_adds_nothing(cpu_run *r, const att_job *job)
{
    const cpu_tensor *m = job->mask;
    const int64_t key[7] = {m->ne[2], m->ne[3], m->nb[2], m->nb[3], job->T, job->S,
                            (int64_t)job->causal + 2 * job->window};
    cpu_mask_memo *memo = r->node->mask_kept ? r->mask_memo : NULL;
    if (memo && memo->valid && memo->data == m->data && !memcmp(memo->key, key, sizeof key))
        return memo->zero;
    uint32_t bits = 0; /* of every visible entry, sign cleared */
    for (int64_t t = 0; t < job->T && !bits; t++) {
        int64_t jlo, jhi;
        key_range(job, t, t + 1, &jlo, &jhi);
        const uint8_t *row = m->data + (m->ne[2] == 1 ? 0 : t * m->nb[2]);
        const int64_t stride = m->ne[3] == 1 ? 0 : m->nb[3];
        for (int64_t j = jlo; j < jhi; j++) {
            uint32_t u;
            memcpy(&u, row + j * stride, sizeof u);
            bits |= u & 0x7fffffffu;
        }
    }
    if (memo) {
        memo->valid = true;
        memo->zero = bits == 0;
        memo->data = m->data;
        memcpy(memo->key, key, sizeof key);
    }
    return bits == 0;
}

bst_status cpu_fused_run_attention(cpu_run *r, const cpu_att_loops *loops)
{
    const cpu_tensor *q = &r->in[0], *k = &r->in[1];
    att_job job;
    memset(&job, 0, sizeof job);
    job.loops = loops;
    job.kk = kv_kind(k->dtype);
    job.vk = kv_kind(r->in[2].dtype);
    if (job.kk < 0 || job.vk < 0 || !loops->dot[job.kk] || !loops->axpy[job.vk] || !loops->exp)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "no attention loops for these k/v dtypes");
    job.T = q->ne[1];
    job.Hq = q->ne[2];
    job.D = q->ne[3];
    job.S = k->ne[1];
    job.Hkv = k->ne[2];
    job.G = job.Hq / job.Hkv;
    job.causal = cpu_attr_int(r->node, BST_ATTR_CAUSAL, 0) != 0;
    job.window = cpu_attr_int(r->node, BST_ATTR_WINDOW, 0);
    job.scale = (float)cpu_attr_float(r->node, BST_ATTR_SCALE, 1.0 / sqrt((double)job.D));
    job.mask = r->node->n_inputs == 4 ? &r->in[3] : NULL;
    if (job.mask && mask_adds_nothing(r, &job))
        job.mask = NULL;
    /* The tile needs D in whole vectors, positions that fit its int32 lanes, and (below) one kv
     * head's rows in its lanes with whole keys (no split). */
    const bool tile_fits = loops->tile && job.D % 16 == 0 && job.D <= CPU_ATT_TILE_MAX_D &&
                           job.S < INT32_MAX / 2 && job.window < INT32_MAX / 2;
    const int64_t unit_most = tile_fits ? CPU_ATT_TILE_ROWS : ATT_TB;
    job.tb = unit_most / job.G > 1 ? unit_most / job.G : 1;
    job.n_qblocks = (job.T + job.tb - 1) / job.tb;
    /* The few-row kernel takes the units of up to CPU_ATT_FEW_ROWS rows the tile does not (a
     * decode step's; a prompt's last few positions), D in whole vectors. A decode step's kv
     * heads then share a unit while their rows fit (the default model: 3 kv heads of 3 query
     * heads), so that a thread reads a run of positions of the K/V cache with all their heads, in
     * address order (cpu_att_few_avx512). */
    const int64_t head_rows = (job.T < job.tb ? job.T : job.tb) * job.G;
    job.few = loops->few && job.D % 16 == 0 && job.S < INT32_MAX / 2 && job.T < INT32_MAX / 2;
    job.hpu = job.few && 2 * head_rows <= CPU_ATT_FEW_ROWS ? CPU_ATT_FEW_ROWS / head_rows : 1;
    job.hpu = job.hpu < job.Hkv ? job.hpu : job.Hkv;
    job.rows = job.hpu > 1 ? job.hpu * head_rows : job.G * job.tb;
    job.n_hblocks = (job.Hkv + job.hpu - 1) / job.hpu;
    const uint32_t workers = r->n_workers ? r->n_workers : 1;
    /* Few units (decode: one per kv head, or one for all) would leave threads idle: split the
     * keys too (att_split), in shares worth at least ATT_SPLIT_MIN keys of one kv head (a unit of
     * hpu kv heads: ATT_SPLIT_MIN / hpu keys, in whole groups of ATT_SHARE_ALIGN). */
    const int64_t blocks = job.n_hblocks * job.n_qblocks;
    int64_t min_share = (ATT_SPLIT_MIN / job.hpu + ATT_SHARE_ALIGN - 1) / ATT_SHARE_ALIGN;
    min_share = (min_share > 0 ? min_share : 1) * ATT_SHARE_ALIGN;
    job.n_split = att_split(blocks, job.S, min_share, workers);
    const int64_t units = blocks * job.n_split;
    job.tile = tile_fits && job.hpu == 1 && job.n_split == 1 && job.rows <= CPU_ATT_TILE_ROWS;
    /* 16 floats of padding keep each worker's area on its own cache lines (and 64-byte
     * aligned). */
    job.work_floats = (size_t)(job.rows * (2 * job.D + ATT_KB + 2) + 16);
    if (job.tile && job.work_floats < CPU_ATT_TILE_WORK(job.D))
        job.work_floats = CPU_ATT_TILE_WORK(job.D);
    if (job.few && job.work_floats < CPU_ATT_FEW_WORK(job.rows, job.D))
        job.work_floats = CPU_ATT_FEW_WORK(job.rows, job.D);
    job.work_floats = (job.work_floats + 15) & ~(size_t)15;
    size_t part_floats = job.n_split > 1 ? (size_t)units * (size_t)job.rows * (size_t)(job.D + 2)
                                         : 0;
    job.work = cpu_work_area(r, (job.work_floats * workers + part_floats) * sizeof(float));
    if (!job.work)
        return cpu_fail(r, BST_ERR_OUT_OF_MEMORY, "cannot allocate attention work areas");
    job.part = job.n_split > 1 ? job.work + job.work_floats * workers : NULL;
    r->aux = &job;
    /* A unit is 2 * D multiply-adds per key and row: usually worth a thread of its own, so
     * a prompt's are handed out one by one; but a decode step's first few keys are less work
     * than waking the other threads (S = 1, 9 heads: 0.77 us a node in parallel, 0.63 us
     * serially). A decode step's units go out in one run per thread: consecutive units are
     * consecutive positions (att_unit), and a run streams them from the cache in order. */
    const int64_t unit_rows = job.hpu * head_rows;
    int64_t grain = cpu_grain(unit_rows * (job.S / job.n_split + 1) * job.D * 2);
    if (job.few && !job.tile && grain < (units + workers - 1) / workers)
        grain = (units + workers - 1) / workers;
    cpu_parallel(r, units, grain, att_units);
    if (job.n_split > 1) /* decode's merge is a few hundred multiply-adds: serial then */
        cpu_parallel(r, blocks, cpu_grain(job.rows * job.n_split * (job.D + 2)), att_merge);
    r->aux = NULL;
    cpu_work_release(r, job.work);
    return BST_OK;
}
