/*
 * Fused RMS_NORM_MUL and FFN_SWIGLU for the CPU backend (see cpu_fused.h).
 *
 * rms_norm_mul: one pass per row computes the mean square (in double, as the reference norm
 * does), a second multiplies by the inverse root and the weight while the row is in L1; the
 * lowered graph writes the normed row to memory and reads it back for a separate MUL node.
 *
 * ffn_swiglu: the lowered graph runs three matmuls (each quantizing its activation rows), a SILU
 * and a MUL, each a parallel section with its own hand-off and its own trip through memory. Here
 * x is quantized once for both gate and up, every weight row pair (gate_n, up_n) is dotted with
 * the same activation blocks and silu(g) * u is formed right away; then h is quantized and the
 * down projection runs. The block dots are cpu_q8dot.h's kernels (owned by the matmul code; only
 * their entry points are used, with the impl's own activation quantizer), so fused and lowered
 * agree to the rounding of h.
 * With many rows (a prompt) the packed f32 GEMM (cpu_gemm.h, cpu_gemm_rows) beats the int8 dots,
 * as it does for the lowered matmuls, so the prompt path runs gate and up through it, forms
 * silu(g) * u in place, and runs down the same way: the fused node then costs what the lowered
 * graph's gemm_* matmuls cost minus the separate SILU / MUL passes and their hand-offs.
 */
#include "cpu_fused.h"
#include "cpu_gemm.h"
#include "cpu_isa.h"
#include "cpu_packed.h"
#include "cpu_q8dot.h"

#include <math.h>
#include <string.h>

/* --- rms_norm_mul --- */

static bool is_float_dtype(bst_dtype t)
{
    return t == BST_DTYPE_F32 || t == BST_DTYPE_F16 || t == BST_DTYPE_BF16;
}

bst_status cpu_fused_check_rms_norm_mul(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0], *w = &r->in[1], *o = &r->out;
    if (r->node->n_inputs != 2)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "rms_norm_mul takes 2 inputs");
    if (!is_float_dtype(x->dtype) || !is_float_dtype(w->dtype) || !cpu_is_storable(o->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "rms_norm_mul needs f32/f16/bf16 x and w");
    if (x->rank == 0 || o->rank != x->rank || !cpu_same_shape(x, o))
        return cpu_fail(r, BST_ERR_SHAPE, "output shape differs from x's");
    if (w->ne[0] != 1 || w->ne[1] != 1 || w->ne[2] != 1 || w->ne[3] != x->ne[3])
        return cpu_fail(r, BST_ERR_SHAPE, "w must be [E] with x's innermost extent");
    if (!cpu_attr(r->node, BST_ATTR_EPS))
        return cpu_fail(r, BST_ERR_INVALID_ARG, "missing attribute eps");
    double e = cpu_attr_float(r->node, BST_ATTR_EPS, 0.0);
    if (!isfinite(e) || e < 0)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "eps %g must be finite and >= 0", e);
    return BST_OK;
}

static void rmsmul_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const float *wt = r->aux;
    const double eps = cpu_attr_float(r->node, BST_ATTR_EPS, 0.0);
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        const int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1],
                      i0 = row / o->ne[2] / o->ne[1];
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        float *z = cpu_out_row(o, i0, i1, i2, cpu_slot(r, w, 2));
        double sq = 0.0;
        for (int64_t i = 0; i < n; i++)
            sq += (double)v[i] * (double)v[i];
        const float inv = (float)(1.0 / sqrt(sq / (double)n + eps));
        for (int64_t i = 0; i < n; i++)
            z[i] = v[i] * inv * wt[i];
        cpu_commit_row(r, o, i0, i1, i2, z, cpu_slot(r, w, 3));
    }
}

bst_status cpu_fused_run_rms_norm_mul(cpu_run *r)
{
    /* The weight row is converted once, into the shared slots, before the parallel section. */
    const float *wt = cpu_load_row(r, &r->in[1], 0, 0, 0, r->shared, r->shared + r->slot_floats);
    bst_status st = cpu_async_result(r, "loading w");
    if (st != BST_OK)
        return st;
    r->aux = (void *)(uintptr_t)wt;
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 2), rmsmul_rows);
    r->aux = NULL;
    return BST_OK;
}

/* --- ffn_swiglu --- */

static cpu_q8dot_fn q8_fn(const cpu_q8dot_impl *impl, bst_dtype t)
{
    switch (t) {
    case BST_DTYPE_Q4_0: return impl->q4_0;
    case BST_DTYPE_Q4_1: return impl->q4_1;
    case BST_DTYPE_Q8_0: return impl->q8_0;
    default: return NULL;
    }
}

static bool is_matrix(const cpu_tensor *t) { return t->rank == 2; }

bst_status cpu_fused_check_ffn_swiglu(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0], *g = &r->in[1], *u = &r->in[2], *d = &r->in[3],
                     *o = &r->out;
    if (r->node->n_inputs != 4)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "ffn_swiglu takes 4 inputs");
    if (!is_float_dtype(x->dtype) || o->dtype != BST_DTYPE_F32)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "fused ffn_swiglu needs float x and f32 output");
    if (!q8_fn(&cpu_q8dot_scalar, g->dtype) || !q8_fn(&cpu_q8dot_scalar, u->dtype) ||
        !q8_fn(&cpu_q8dot_scalar, d->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED,
                        "fused ffn_swiglu needs q4_0/q4_1/q8_0 weights (got %s, %s, %s)",
                        cpu_dtype_name(g->dtype), cpu_dtype_name(u->dtype),
                        cpu_dtype_name(d->dtype));
    if (!is_matrix(g) || !is_matrix(u) || !is_matrix(d) || x->rank == 0)
        return cpu_fail(r, BST_ERR_SHAPE, "weights must be matrices and x at least a row");
    const int64_t E = x->ne[3], F = g->ne[2];
    if (g->ne[3] != E || u->ne[2] != F || u->ne[3] != E || d->ne[2] != E || d->ne[3] != F)
        return cpu_fail(r, BST_ERR_SHAPE, "expected gate/up [F,E] and down [E,F]");
    if (o->rank != x->rank || !cpu_same_shape(x, o))
        return cpu_fail(r, BST_ERR_SHAPE, "output shape differs from x's");
    if (E % CPU_Q8_QK != 0 || F % CPU_Q8_QK != 0)
        return cpu_fail(r, BST_ERR_SHAPE, "E and F must be multiples of %d", CPU_Q8_QK);
    return BST_OK;
}

typedef struct ffn_job {
    const cpu_q8dot_impl *q8;
    cpu_q8dot_fn fg, fu, fd;
    cpu_q8dot_multi_fn mg, mu, md; /* one row (decode): several weight rows per call, or NULL */
    int64_t rows, E, F;
    cpu_q8_block *qx; /* rows x E/32 */
    float *h;         /* rows x F */
    cpu_q8_block *qh; /* rows x F/32 */
    int phase;        /* which rows quantize_rows reads: 0 x, 1 h */
    cpu_packed_gemv_fn packed; /* all three weights packed (cpu_packed.h): its kernel, else NULL */
    float *hu;                 /* packed path: up's results, rows x F */
    float *out;                /* packed path: where down writes row j (out + j * ldo) */
    int64_t ldo;
    cpu_once quantize_x;       /* packed path, few rows: x is quantized inside gate/up */
    struct ffn_part *parts;    /* packed path: one per section part (ffn_parts) */
    int64_t n_parts;
} ffn_job;

static void split_row(const cpu_tensor *t, int64_t row, int64_t *i0, int64_t *i1, int64_t *m)
{
    *m = row % t->ne[2];
    *i1 = (row / t->ne[2]) % t->ne[1];
    *i0 = row / t->ne[2] / t->ne[1];
}

static cpu_q8_quant_fn quantizer(const ffn_job *job)
{
    return job->q8->quant ? job->q8->quant : cpu_q8_quantize_scalar;
}

static void quantize_x_rows(cpu_run *r, const ffn_job *job, int64_t begin, int64_t end,
                            uint32_t w)
{
    const cpu_tensor *x = &r->in[0];
    for (int64_t row = begin; row < end; row++) {
        int64_t i0, i1, m;
        split_row(x, row, &i0, &i1, &m);
        const float *v = cpu_load_row(r, x, i0, i1, m, cpu_slot(r, w, 2), cpu_slot(r, w, 3));
        quantizer(job)(v, job->qx + row * (job->E / CPU_Q8_QK), job->E / CPU_Q8_QK);
    }
}

static void quantize_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const ffn_job *job = r->aux;
    if (job->phase == 0) {
        quantize_x_rows(r, job, begin, end, w);
        return;
    }
    for (int64_t row = begin; row < end; row++)
        quantizer(job)(job->h + row * job->F, job->qh + row * (job->F / CPU_Q8_QK),
                       job->F / CPU_Q8_QK);
}

/* The packed path with few rows (decode) quantizes x inside gate/up (cpu_once). */
static bool x_inside(const ffn_job *job) { return job->packed && job->rows <= CPU_Q8_MAX_ROWS; }

static void quantize_x_once(cpu_run *r, void *job, uint32_t w)
{
    quantize_x_rows(r, job, 0, ((const ffn_job *)job)->rows, w);
}

/* Tiles of weight rows (about 64 KiB of gate + up, so they stay in L2) swept by groups of
 * CPU_Q8_MAX_ROWS activation rows, as cpu_kernels_q8dot.c's dot_rows does. */
static int64_t tile_rows(int64_t row_bytes)
{
    int64_t tile = (int64_t)65536 / (row_bytes > 0 ? row_bytes : 1);
    return tile < 1 ? 1 : tile > 64 ? 64 : tile;
}

static void gate_up_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const ffn_job *job = r->aux;
    const cpu_tensor *g = &r->in[1], *u = &r->in[2];
    const int64_t nb = job->E / CPU_Q8_QK;
    const int64_t tile = tile_rows(g->nb[2] + u->nb[2]);
    float rg[CPU_Q8_MAX_ROWS], ru[CPU_Q8_MAX_ROWS];
    if (job->rows == 1 && job->mg && job->mu) {
        float g1[64], u1[64]; /* tile <= 64 */
        for (int64_t n0 = begin; n0 < end; n0 += tile) {
            const int64_t n1 = end - n0 < tile ? end : n0 + tile;
            job->mg(cpu_row_ptr(g, 0, 0, n0), g->nb[2], n1 - n0, job->qx, nb, g1);
            job->mu(cpu_row_ptr(u, 0, 0, n0), u->nb[2], n1 - n0, job->qx, nb, u1);
            for (int64_t n = n0; n < n1; n++)
                job->h[n] = g1[n - n0] / (1.0f + expf(-g1[n - n0])) * u1[n - n0];
        }
        return;
    }
    for (int64_t n0 = begin; n0 < end; n0 += tile) {
        const int64_t n1 = end - n0 < tile ? end : n0 + tile;
        for (int64_t row = 0; row < job->rows; row += CPU_Q8_MAX_ROWS) {
            const int64_t mc =
                job->rows - row < CPU_Q8_MAX_ROWS ? job->rows - row : CPU_Q8_MAX_ROWS;
            const cpu_q8_block *qa = job->qx + row * nb;
            for (int64_t n = n0; n < n1; n++) {
                job->fg(cpu_row_ptr(g, 0, 0, n), qa, nb, mc, rg);
                job->fu(cpu_row_ptr(u, 0, 0, n), qa, nb, mc, ru);
                for (int64_t j = 0; j < mc; j++)
                    job->h[(row + j) * job->F + n] = rg[j] / (1.0f + expf(-rg[j])) * ru[j];
            }
        }
    }
}

static void down_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const ffn_job *job = r->aux;
    const cpu_tensor *d = &r->in[3], *o = &r->out;
    const int64_t nb = job->F / CPU_Q8_QK;
    const int64_t tile = tile_rows(d->nb[2]);
    float res[CPU_Q8_MAX_ROWS];
    if (job->rows == 1 && job->md) {
        float d1[64]; /* tile <= 64 */
        int64_t i0, i1, m;
        split_row(o, 0, &i0, &i1, &m);
        uint8_t *dst = cpu_row_ptr(o, i0, i1, m);
        for (int64_t n0 = begin; n0 < end; n0 += tile) {
            const int64_t n1 = end - n0 < tile ? end : n0 + tile;
            job->md(cpu_row_ptr(d, 0, 0, n0), d->nb[2], n1 - n0, job->qh, nb, d1);
            for (int64_t n = n0; n < n1; n++)
                memcpy(dst + n * o->nb[3], &d1[n - n0], sizeof(float));
        }
        return;
    }
    for (int64_t n0 = begin; n0 < end; n0 += tile) {
        const int64_t n1 = end - n0 < tile ? end : n0 + tile;
        for (int64_t row = 0; row < job->rows; row += CPU_Q8_MAX_ROWS) {
            const int64_t mc =
                job->rows - row < CPU_Q8_MAX_ROWS ? job->rows - row : CPU_Q8_MAX_ROWS;
            uint8_t *dst[CPU_Q8_MAX_ROWS];
            for (int64_t j = 0; j < mc; j++) {
                int64_t i0, i1, m;
                split_row(o, row + j, &i0, &i1, &m);
                dst[j] = cpu_row_ptr(o, i0, i1, m);
            }
            for (int64_t n = n0; n < n1; n++) {
                job->fd(cpu_row_ptr(d, 0, 0, n), job->qh + row * nb, nb, mc, res);
                for (int64_t j = 0; j < mc; j++)
                    memcpy(dst[j] + n * o->nb[3], &res[j], sizeof(float));
            }
        }
    }
}

/* --- SwiGLU's elementwise step --- */

void cpu_swiglu_scalar(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

cpu_swiglu_fn cpu_swiglu(void)
{
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    if (cpu_isa_mask() & CPU_ISA_AVX512)
        return cpu_swiglu_avx512;
#endif
    return cpu_swiglu_scalar;
}

/* --- packed weights (cpu_packed.h): one parallel section, gate/up then down --- */

_Static_assert(CPU_Q8_QK == 2 * CPU_PACK_ROWS, "a pair of packed groups is one block of h");

/* The packed path runs as one section of job->n_parts parts, one contiguous share per worker:
 * the kernels stream the weights once, and every chunk boundary restarts the stream (and its
 * prefetch) cold (with the pool's usual many small chunks a decode step's FFN ran slower on two
 * threads than on one). Part p computes gate and up for its share of 32-row pairs, then, once
 * every part's h blocks are quantized, down for its share of row groups. Between the two a
 * thread waits for the other parts' flags, not for the end of one section and the publish of the
 * next. q4_1 1 x 576 x 1536 on two threads, p50 cycles of execute (traced, 5-8 runs each): on
 * two CCDs 58578 against 61386 and 58545 against 60196; with the vCPUs near the same within the
 * noise (80461 against 81809, 87048 against 86580).
 * Part 0 is started before the others (bst_host_api.parallel_for), so its gate/up always
 * happen. A later part's are claimed with a compare-and-swap, and a thread that finds one
 * unclaimed when it needs it runs it itself: a late or missing worker slows the FFN down but
 * never stalls it. */
enum { GU_FREE, GU_TAKEN, GU_DONE };
typedef struct ffn_part {
    _Alignas(64) _Atomic int gu; /* its own line: each part's owner writes it */
} ffn_part;

/* First pair (q = 0) or down row group (q = 1) of part p. */
static int64_t part_begin(const ffn_job *job, int64_t p, int q)
{
    const int64_t n = q == 0 ? job->F / CPU_Q8_QK : (job->E + CPU_PACK_ROWS - 1) / CPU_PACK_ROWS;
    return n * p / job->n_parts;
}

/* Gate and up rows of part p's pairs: each pair covers a whole block of h, so the thread that
 * computed it quantizes it for down (a decode step's 1536-wide h took ~0.5 us to quantize on one
 * thread). With few rows x is quantized here too (cpu_once), while the weights' first lines are
 * on their way. */
static void gate_up_part(cpu_run *r, ffn_job *job, int64_t p, uint32_t w)
{
    const cpu_packed *gate = r->in[1].packed, *up = r->in[2].packed;
    const int64_t begin = part_begin(job, p, 0), end = part_begin(job, p + 1, 0);
    const int64_t g0 = 2 * begin, g1 = 2 * end < gate->groups ? 2 * end : gate->groups;
    if (x_inside(job))
        cpu_once_run(&job->quantize_x, r, p, w);
    job->packed(gate, g0, g1, job->qx, job->rows, job->h, job->F);
    job->packed(up, g0, g1, job->qx, job->rows, job->hu, job->F);
    const int64_t n0 = begin * CPU_Q8_QK, n1 = end * CPU_Q8_QK < job->F ? end * CPU_Q8_QK : job->F;
    const cpu_swiglu_fn swiglu = cpu_swiglu();
    const int64_t nbh = job->F / CPU_Q8_QK;
    for (int64_t j = 0; j < job->rows; j++) {
        float *h = job->h + j * job->F;
        swiglu(h + n0, job->hu + j * job->F + n0, n1 - n0);
        quantizer(job)(h + n0, job->qh + j * nbh + begin, (n1 - n0) / CPU_Q8_QK);
    }
    atomic_store_explicit(&job->parts[p].gu, GU_DONE, memory_order_release);
}

/* Whether this thread gets to run part p's gate/up (part 0's belong to whoever runs part 0). */
static bool claim_gate_up(ffn_job *job, int64_t p)
{
    int expected = GU_FREE;
    return p == 0 || atomic_compare_exchange_strong_explicit(&job->parts[p].gu, &expected,
                                                             GU_TAKEN, memory_order_acquire,
                                                             memory_order_relaxed);
}

static void ffn_parts(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    ffn_job *job = r->aux;
    const cpu_packed *gate = r->in[1].packed, *down = r->in[3].packed;
    for (int64_t p = begin; p < end; p++) {
        if (x_inside(job)) /* the weights stream in while x is quantized or awaited */
            cpu_packed_prefetch(gate, 2 * part_begin(job, p, 0), 2 * part_begin(job, p + 1, 0));
        if (claim_gate_up(job, p))
            gate_up_part(r, job, p, w);
    }
    const int64_t d0 = part_begin(job, begin, 1), d1 = part_begin(job, end, 1);
    cpu_packed_prefetch(down, d0, d1);
    for (int64_t p = 0; p < job->n_parts; p++) {
        if (atomic_load_explicit(&job->parts[p].gu, memory_order_acquire) == GU_DONE)
            continue;
        if (p > 0 && claim_gate_up(job, p)) {
            gate_up_part(r, job, p, w);
            continue;
        }
        while (atomic_load_explicit(&job->parts[p].gu, memory_order_acquire) != GU_DONE)
            cpu_pause();
    }
    job->packed(down, d0, d1, job->qh, job->rows, job->out, job->ldo);
}

/* --- the prompt path: packed GEMM --- */

/* Below this many rows the int8 dots win: the GEMM dequantizes and packs every weight (a fixed
 * ~2.5 ms for SmolLM2's three q4_1 FFN matrices on one core) while the dots' cost grows with the
 * rows. Measured crossover for E=576, F=1536 on AVX-512: between 32 (dots 2.4 ms, GEMM 3.5 ms)
 * and 64 rows (4.7 ms vs 4.5 ms). */
#define FFN_GEMM_MIN_ROWS 48

typedef struct ffn_gemm_job {
    int64_t E, F;
    float *x, *g, *u, *c; /* x rows [M,E], gate / up results [M,F], down result [M,E] */
} ffn_gemm_job;

static void load_x_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const ffn_gemm_job *job = r->aux;
    const cpu_tensor *x = &r->in[0];
    for (int64_t row = begin; row < end; row++) {
        int64_t i0, i1, m;
        split_row(x, row, &i0, &i1, &m);
        const float *v = cpu_load_row(r, x, i0, i1, m, cpu_slot(r, w, 2), cpu_slot(r, w, 3));
        memcpy(job->x + row * job->E, v, (size_t)job->E * sizeof(float));
    }
}

static void swiglu_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const ffn_gemm_job *job = r->aux;
    cpu_swiglu()(job->g + begin * job->F, job->u + begin * job->F, (end - begin) * job->F);
}

static void store_out_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const ffn_gemm_job *job = r->aux;
    const cpu_tensor *o = &r->out;
    for (int64_t row = begin; row < end; row++) {
        int64_t i0, i1, m;
        split_row(o, row, &i0, &i1, &m);
        uint8_t *dst = cpu_row_ptr(o, i0, i1, m);
        const float *src = job->c + row * job->E;
        if (o->nb[3] == (int64_t)sizeof(float)) {
            memcpy(dst, src, (size_t)job->E * sizeof(float));
        } else {
            for (int64_t n = 0; n < job->E; n++)
                memcpy(dst + n * o->nb[3], &src[n], sizeof(float));
        }
    }
}

static bst_status ffn_gemm(cpu_run *r, const cpu_gemm_kernel *k, int64_t M, int64_t E, int64_t F)
{
    size_t floats, xe, mf;
    if (__builtin_mul_overflow((size_t)M, (size_t)E, &xe) ||
        __builtin_mul_overflow((size_t)M, (size_t)F, &mf) || xe > SIZE_MAX / 8 ||
        mf > SIZE_MAX / 8 || (floats = 2 * xe + 2 * mf + 64) > SIZE_MAX / sizeof(float))
        return cpu_fail(r, BST_ERR_OVERFLOW, "ffn_swiglu work area size overflows");
    float *mem = cpu_host->alloc(floats * sizeof(float), 64);
    if (!mem)
        return cpu_fail(r, BST_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for ffn_swiglu",
                        floats * sizeof(float));
    /* Parts start on 64-byte boundaries (16 floats). */
    const size_t axe = (xe + 15) & ~(size_t)15, amf = (mf + 15) & ~(size_t)15;
    ffn_gemm_job job = {E, F, mem, mem + axe, mem + axe + amf, mem + axe + 2 * amf};
    void *saved = r->aux;
    r->aux = &job;
    cpu_parallel(r, M, cpu_grain(E * 2), load_x_rows);
    bst_status st = cpu_async_result(r, "loading x");
    r->aux = saved;
    if (st == BST_OK)
        st = cpu_gemm_rows(r, k, M, job.x, E, &r->in[1], job.g, F);
    if (st == BST_OK)
        st = cpu_gemm_rows(r, k, M, job.x, E, &r->in[2], job.u, F);
    if (st == BST_OK) {
        r->aux = &job;
        cpu_parallel(r, M, cpu_grain(F * 8), swiglu_rows);
        r->aux = saved;
        st = cpu_gemm_rows(r, k, M, job.g, F, &r->in[3], job.c, E);
    }
    if (st == BST_OK) {
        r->aux = &job;
        cpu_parallel(r, M, cpu_grain(E * 2), store_out_rows);
        r->aux = saved;
    }
    cpu_host->free(mem);
    return st;
}

bst_status cpu_fused_run_ffn_swiglu(cpu_run *r, const cpu_q8dot_impl *q8,
                                    const cpu_gemm_kernel *gemm)
{
    {
        const cpu_tensor *x0 = &r->in[0];
        const int64_t M = x0->ne[0] * x0->ne[1] * x0->ne[2];
        /* With packed weights the int8 kernels win at every row count (cpu_run_gemm). */
        const bool packed = r->in[1].packed && r->in[2].packed && r->in[3].packed &&
                            cpu_packed_kernel(q8, M);
        if (gemm && !packed && M >= FFN_GEMM_MIN_ROWS &&
            r->in[3].ne[3] <= (int64_t)r->slot_floats && x0->ne[3] <= (int64_t)r->slot_floats)
            return ffn_gemm(r, gemm, M, x0->ne[3], r->in[1].ne[2]);
    }
    const cpu_tensor *x = &r->in[0];
    ffn_job job;
    memset(&job, 0, sizeof job);
    job.q8 = q8;
    job.fg = q8_fn(q8, r->in[1].dtype);
    job.fu = q8_fn(q8, r->in[2].dtype);
    job.fd = q8_fn(q8, r->in[3].dtype);
    job.mg = cpu_q8dot_multi(q8, r->in[1].dtype);
    job.mu = cpu_q8dot_multi(q8, r->in[2].dtype);
    job.md = cpu_q8dot_multi(q8, r->in[3].dtype);
    if (!job.fg || !job.fu || !job.fd)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "%s does not handle these weights", q8->name);
    job.rows = x->ne[0] * x->ne[1] * x->ne[2];
    job.E = x->ne[3];
    job.F = r->in[1].ne[2];
    if (r->in[1].packed && r->in[2].packed && r->in[3].packed &&
        cpu_rows_uniform(&r->out, &job.out, &job.ldo))
        job.packed = cpu_packed_kernel(q8, job.rows);
    size_t bx, bh, bq;
    if (__builtin_mul_overflow((size_t)job.rows, (size_t)(job.E / CPU_Q8_QK) * sizeof(cpu_q8_block),
                               &bx) ||
        __builtin_mul_overflow((size_t)job.rows, (size_t)job.F * sizeof(float), &bh) ||
        __builtin_mul_overflow((size_t)job.rows, (size_t)(job.F / CPU_Q8_QK) * sizeof(cpu_q8_block),
                               &bq) ||
        bx > SIZE_MAX / 4 - bh || bx + 2 * bh > SIZE_MAX / 2 - bq)
        return cpu_fail(r, BST_ERR_OVERFLOW, "ffn_swiglu work area size overflows");
    /* One allocation: x's blocks, h (64-byte aligned: block sizes are multiples of 4 bytes, so
     * round each part up), h's blocks, and for the packed path up's results and the parts. */
    const size_t ax = (bx + 63) & ~(size_t)63, ah = (bh + 63) & ~(size_t)63;
    const size_t aq = (bq + 63) & ~(size_t)63;
    job.n_parts = r->n_workers > 1 ? r->n_workers : 1;
    const size_t parts = (size_t)job.n_parts * sizeof(ffn_part);
    const size_t total = ax + ah + aq + (job.packed ? ah + parts : 0);
    uint8_t *mem = cpu_work_area(r, total + 64);
    if (!mem)
        return cpu_fail(r, BST_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for ffn_swiglu",
                        total);
    job.qx = (cpu_q8_block *)(void *)mem;
    job.h = (float *)(void *)(mem + ax);
    job.qh = (cpu_q8_block *)(void *)(mem + ax + ah);
    job.hu = (float *)(void *)(mem + ax + ah + aq);
    job.parts = (ffn_part *)(void *)(mem + ax + 2 * ah + aq);
    job.quantize_x = (cpu_once){quantize_x_once, &job, 0};
    r->aux = &job;
    const int64_t E = job.E, F = job.F;
    if (!x_inside(&job))
        cpu_parallel(r, job.rows, cpu_grain(E * 4), quantize_rows);
    bst_status st = cpu_async_result(r, "quantizing x");
    if (st == BST_OK && job.packed) {
        for (int64_t p = 0; p < job.n_parts; p++)
            atomic_init(&job.parts[p].gu, GU_FREE);
        cpu_parallel(r, job.n_parts, 1, ffn_parts);
        st = cpu_async_result(r, "quantizing x");
    } else if (st == BST_OK) {
        cpu_parallel(r, F, cpu_grain(E / 2 * (job.rows + 1)), gate_up_rows);
        job.phase = 1;
        cpu_parallel(r, job.rows, cpu_grain(F * 4), quantize_rows);
        cpu_parallel(r, E, cpu_grain(F / 4 * (job.rows + 1)), down_rows);
    }
    r->aux = NULL;
    cpu_work_release(r, mem);
    return st;
}
