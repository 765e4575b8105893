/*
 * The packed f32 GEMM driver behind the gemm_* variants (see cpu_gemm.h), the portable 4 x 8
 * micro-kernel, and the variants' impl entries.
 *
 * Blocking: K is cut in KC-deep slices so that one a micro-panel (mr x KC floats, at most 14 KiB)
 * stays in L1 while it sweeps a worker's packed weight block (KC x nc floats, at most 512 KiB,
 * L2). a is packed once, by all workers, before the weight blocks are handed out; each worker then
 * packs (dequantizes) only the weight rows it owns, all K at once so a quantized row is decoded
 * exactly once per call. Tiles at the M and N edges are computed whole on zero-padded panels and
 * only their valid part is stored.
 */
#include "cpu_fused.h"
#include "cpu_gemm.h"
#include "cpu_gemv_float.h"
#include "cpu_packed.h"
#include "cpu_isa.h"

#include <string.h>

enum {
    KC = 256,       /* k depth of one slice: a micro-panel of 14 rows is 14 KiB */
    MIN_ROWS = 8,   /* fewer activation rows than this run the small-batch partner */
    /* For quantized weights the int8 partner wins up to here: packing dequantizes the whole
     * weight, a fixed cost the few rows do not amortize (SmolLM2's shapes on AVX-512: 8 rows
     * 0.59 ms by q8x2dot against 2.64 ms packed; the same crossover as cpu_fused_ffn.c's). */
    MIN_ROWS_QUANT = 48,
    /* For f16 / bf16 weights without a tile kernel the float GEMV (a pass over the weight per 4
     * rows) wins up to here: 1536 x M x 576 f16 on AVX-512, GEMV against packed: M 8 153
     * against 376 us, 16 291 / 462, 32 562 / 493, 64 1110 / 708. */
    MIN_ROWS_HALF = 32,
    /* With a tile kernel (cpu_gemm_dot_avx512.c) the GEMV keeps one row, which it streams
     * faster (f16 4096 x 1 x 4096: 0.69 against 1.16 ms); from two rows on the tiles win
     * (1536 x 4 x 576: 54 against 85 us), and against the packed GEMM up to a few hundred rows,
     * where its panels' copy is paid back (1536 x M x 576 f16 / f32 against packed: M 64 0.51 /
     * 0.68, 256 0.83-0.90 / 0.77-0.80, 512 0.97-1.03 / 0.90-0.94, 1024 1.07 / 1.00; 2048 x 512 x
     * 2048 0.97 / 0.93).
     * gemm_bf16dot's packed kernel does two products per lane and instruction: its crossover
     * is lower (bf16 1536 x M x 576: M 128 0.88, 192 0.95, 256 1.19-1.26). So is AVX2's, whose
     * 4 x 2 tiles load more per multiply-add (f16 / f32 1536 x M x 576, AVX2 tiles against
     * what gemm_avx2 ran before, the GEMV's passes or the reference below 32 / 8 rows and the
     * packed GEMM above: M 4 0.48 / 0.58, 8 0.35 / 0.26, 64 0.85 / 0.82, 256 1.10 / 1.12). */
    MIN_ROWS_DOT = 2,
    MAX_ROWS_DOT = 512,
    MAX_ROWS_DOT_BF16 = 192,
    MAX_ROWS_DOT_AVX2 = 128,
    MAX_NC = 512,   /* weight rows per worker block */
    Q4_0_BYTES = 18,
    Q4_1_BYTES = 20,
    Q8_0_BYTES = 34,
};

static void kernel_4x8(int64_t kc, const float *a, const float *b, float *c)
{
    float acc[4][8] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += 4, b += 8)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++)
                acc[i][j] += a[i] * b[j];
    memcpy(c, acc, sizeof acc);
}

const cpu_gemm_kernel cpu_gemm_kernel_scalar = {4, 8, 1, kernel_4x8};

const cpu_q8dot_impl cpu_gemm_scalar = {"gemm_scalar", 0, NULL, NULL, NULL,
                                        &cpu_gemm_kernel_scalar, &cpu_q8dot_scalar, NULL, NULL,
                                        NULL};
#ifdef CPU_HAVE_AVX2_KERNELS
const cpu_q8dot_impl cpu_gemm_avx2 = {"gemm_avx2", CPU_ISA_AVX2, NULL, NULL, NULL,
                                      &cpu_gemm_kernel_avx2, &cpu_q8dot_avx2, NULL,
                                      cpu_gemv_rows_avx2, cpu_gemm_dot_avx2};
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
const cpu_q8dot_impl cpu_gemm_avx512 = {"gemm_avx512",
                                        CPU_ISA_AVX2 | CPU_ISA_AVX512 | CPU_ISA_AVX512VNNI,
                                        NULL, NULL, NULL, &cpu_gemm_kernel_avx512,
                                        &cpu_q8dot_avx512vnni, NULL, cpu_gemv_rows_avx512,
                                        cpu_gemm_dot_avx512};
#endif
#ifdef CPU_HAVE_AVX512BF16_KERNELS
/* bf16 weights only (they lose nothing); activations are rounded to bf16, which puts this
 * variant in the activation-quantizing accuracy class (DESIGN.md: mean KL <= 5e-3). */
const cpu_q8dot_impl cpu_gemm_bf16dot_avx512 = {"gemm_bf16dot_avx512",
                                                CPU_ISA_AVX2 | CPU_ISA_AVX512 |
                                                    CPU_ISA_AVX512BF16,
                                                NULL, NULL, NULL, &cpu_gemm_kernel_bf16_avx512,
                                                NULL, NULL, cpu_gemv_rows_avx512,
                                                cpu_gemm_dot_avx512};
#endif

static bool is_quant(bst_dtype t)
{
    return t == BST_DTYPE_Q4_0 || t == BST_DTYPE_Q4_1 || t == BST_DTYPE_Q8_0;
}

static bool is_float(bst_dtype t)
{
    return t == BST_DTYPE_F32 || t == BST_DTYPE_F16 || t == BST_DTYPE_BF16;
}

bool cpu_gemm_accepts(const cpu_run *r)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    return r->node->op == BST_OP_MATMUL && b->ne[0] == 1 && b->ne[1] == 1 &&
           is_float(a->dtype) && (is_float(b->dtype) || is_quant(b->dtype)) &&
           (o->nb[3] == (int64_t)sizeof(float) || o->ne[3] <= 1);
}

typedef struct gemm_job {
    const cpu_gemm_kernel *k;
    int64_t M, N, K;
    int64_t D;         /* packed depth: K, or K / 2 rounded up for bf16 pairs (kpack 2) */
    int64_t mp;        /* M rounded up to mr */
    int64_t nc;        /* weight rows per unit, a multiple of nr */
    float *pa;         /* packed a: slice s (k0 = s * KC, depth kc) at pa + k0 * mp, then
                          micro-panel p at + p * mr * kc, element (k, i) at + k * mr + i */
    float *pb;         /* per worker, pb_floats each: the same layout for a unit's weight rows */
    size_t pb_floats;
    const cpu_tensor *w; /* the weight [N, K] */
    const float *a;    /* raw rows (cpu_gemm_rows), lda apart; NULL: r->in[0]'s rows */
    int64_t lda;
    float *c;          /* raw output rows, ldc apart; NULL: orow */
    int64_t ldc;
    uint8_t **orow;    /* where output row m starts (node path) */
} gemm_job;

/* Activation row `row` (batch dims flattened) as (i0, i1, m). */
static void split_row(const cpu_tensor *t, int64_t row, int64_t *i0, int64_t *i1, int64_t *m)
{
    *m = row % t->ne[2];
    *i1 = (row / t->ne[2]) % t->ne[1];
    *i0 = row / t->ne[2] / t->ne[1];
}

/* f32 to bf16, rounded to nearest even (NaN stays a quiet NaN). */
static uint32_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* Scatters one row of K floats (or zeros when x is NULL) into column `col` of packed panels of
 * width w whose slices start at base + d0 * stride. With kpack 2 each 32-bit slot holds the
 * bf16 pair (x[2d], x[2d + 1]) (the pair's second half 0 past K), as vdpbf16ps reads it. */
static void scatter_row(float *base, int64_t stride, int w, int64_t panel, int col,
                        const float *x, int64_t K, int kpack)
{
    const int64_t D = kpack == 2 ? (K + 1) / 2 : K;
    for (int64_t d0 = 0; d0 < D; d0 += KC) {
        const int64_t dc = D - d0 < KC ? D - d0 : KC;
        float *dst = base + d0 * stride + panel * w * dc + col;
        if (!x) {
            for (int64_t d = 0; d < dc; d++)
                dst[d * w] = 0.0f;
        } else if (kpack == 1) {
            for (int64_t d = 0; d < dc; d++)
                dst[d * w] = x[d0 + d];
        } else {
            for (int64_t d = 0; d < dc; d++) {
                const int64_t k = 2 * (d0 + d);
                const uint32_t pair = to_bf16(x[k]) | (k + 1 < K ? to_bf16(x[k + 1]) << 16 : 0u);
                memcpy(&dst[d * w], &pair, sizeof pair);
            }
        }
    }
}

static void pack_a(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const gemm_job *job = r->aux;
    const cpu_tensor *a = &r->in[0];
    const int mr = job->k->mr;
    for (int64_t p = begin; p < end; p++)
        for (int i = 0; i < mr; i++) {
            const int64_t row = p * mr + i;
            const float *x = NULL;
            if (row < job->M && job->a) {
                x = job->a + row * job->lda;
            } else if (row < job->M) {
                int64_t i0, i1, m;
                split_row(a, row, &i0, &i1, &m);
                x = cpu_load_row(r, a, i0, i1, m, cpu_slot(r, w, 2), cpu_slot(r, w, 3));
            }
            scatter_row(job->pa, job->mp, mr, p, i, x, job->K, job->k->kpack);
        }
}

/* Weight row n as K floats: quantized blocks decoded here (the reference formulas), contiguous
 * bf16 rows by a shift and f16 ones with F16C (`f16c`: the kernel's ISA has it; both exact, as
 * the host's per-value conversion, which they replace: 1536 x 8 x 576 f16 891 -> 376 us), other
 * float rows through cpu_load_row. A packed weight's row is first put back in its native blocks
 * (in tmp), so the model file's own pages are never touched when the int8 kernels use the packed
 * copy. */
static const float *weight_row(cpu_run *r, const cpu_tensor *b, int64_t n, bool f16c,
                               float *buf, float *tmp)
{
    const uint8_t *src = cpu_row_ptr(b, 0, 0, n);
    if (b->dtype == BST_DTYPE_BF16 && b->nb[3] == 2) { /* bf16 is f32's top half */
        for (int64_t i = 0; i < b->ne[3]; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h);
            const uint32_t bits = (uint32_t)h << 16;
            memcpy(&buf[i], &bits, sizeof bits);
        }
        return buf;
    }
#ifdef CPU_HAVE_AVX2_KERNELS
    if (f16c && b->dtype == BST_DTYPE_F16 && b->nb[3] == 2) {
        cpu_f16_to_f32_f16c(src, buf, b->ne[3]);
        return buf;
    }
#else
    (void)f16c;
#endif
    if (b->packed) {
        cpu_packed_native_row(b->packed, n, (uint8_t *)(void *)tmp);
        src = (const uint8_t *)(const void *)tmp;
    }
    const int64_t nb = b->ne[3] / CPU_Q8_QK;
    switch (b->dtype) {
    case BST_DTYPE_Q4_0:
        for (int64_t i = 0; i < nb; i++, src += Q4_0_BYTES, buf += CPU_Q8_QK) {
            const float d = cpu_q8_half(src);
            for (int j = 0; j < CPU_Q8_QK / 2; j++) {
                buf[j] = (float)((src[2 + j] & 0x0f) - 8) * d;
                buf[j + CPU_Q8_QK / 2] = (float)((src[2 + j] >> 4) - 8) * d;
            }
        }
        return buf - b->ne[3];
    case BST_DTYPE_Q4_1:
        for (int64_t i = 0; i < nb; i++, src += Q4_1_BYTES, buf += CPU_Q8_QK) {
            const float d = cpu_q8_half(src), m = cpu_q8_half(src + 2);
            for (int j = 0; j < CPU_Q8_QK / 2; j++) {
                buf[j] = (float)(src[4 + j] & 0x0f) * d + m;
                buf[j + CPU_Q8_QK / 2] = (float)(src[4 + j] >> 4) * d + m;
            }
        }
        return buf - b->ne[3];
    case BST_DTYPE_Q8_0:
        for (int64_t i = 0; i < nb; i++, src += Q8_0_BYTES, buf += CPU_Q8_QK) {
            const float d = cpu_q8_half(src);
            for (int j = 0; j < CPU_Q8_QK; j++)
                buf[j] = (float)(int8_t)src[2 + j] * d;
        }
        return buf - b->ne[3];
    default:
        return cpu_load_row(r, b, 0, 0, n, buf, tmp);
    }
}

/* Adds (or stores, on the first slice) the valid rows x cols of a tile into the output. */
static void store_tile(const gemm_job *job, const float *tile, int nr, int64_t m0, int rows,
                       int64_t n0, int cols, bool first)
{
    float cur[CPU_GEMM_MAX_NR];
    for (int i = 0; i < rows; i++) {
        uint8_t *dst = job->c ? (uint8_t *)(job->c + (m0 + i) * job->ldc + n0)
                              : job->orow[m0 + i] + n0 * (int64_t)sizeof(float);
        const float *t = tile + i * nr;
        if (first) {
            memcpy(dst, t, (size_t)cols * sizeof(float));
        } else {
            memcpy(cur, dst, (size_t)cols * sizeof(float));
            for (int j = 0; j < cols; j++)
                cur[j] += t[j];
            memcpy(dst, cur, (size_t)cols * sizeof(float));
        }
    }
}

/* Units [begin, end): each is nc weight rows, packed by this worker and swept by all of a. */
static void gemm_units(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const gemm_job *job = r->aux;
    if (w >= r->n_workers) {
        cpu_fail_async(r, BST_ERR_INTERNAL);
        return;
    }
    const int mr = job->k->mr, nr = job->k->nr;
    /* Every kernel but the portable one needs AVX2, which includes F16C. */
    const bool f16c = job->k != &cpu_gemm_kernel_scalar;
    float *pb = job->pb + (size_t)w * job->pb_floats;
    _Alignas(64) float tile[CPU_GEMM_MAX_MR * CPU_GEMM_MAX_NR];
    for (int64_t u = begin; u < end; u++) {
        const int64_t n0 = u * job->nc;
        const int64_t n1 = job->N - n0 < job->nc ? job->N : n0 + job->nc;
        const int64_t ncp = (n1 - n0 + nr - 1) / nr * nr;
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
        const bst_dtype wt = job->w->dtype;
        if (job->k == &cpu_gemm_kernel_avx512 && is_quant(wt) && job->K % CPU_Q8_QK == 0) {
            cpu_gemm_pack_quant_avx512(pb, ncp, KC, cpu_row_ptr(job->w, 0, 0, n0),
                                       job->w->nb[2], n1 - n0, job->K,
                                       wt == BST_DTYPE_Q4_0 ? 0 : wt == BST_DTYPE_Q4_1 ? 1 : 2);
        } else
#endif
        for (int64_t n = n0; n < n0 + ncp; n++) {
            const float *x =
                n < n1 ? weight_row(r, job->w, n, f16c, cpu_slot(r, w, 0), cpu_slot(r, w, 1))
                       : NULL;
            scatter_row(pb, ncp, nr, (n - n0) / nr, (int)((n - n0) % nr), x, job->K,
                        job->k->kpack);
        }
        for (int64_t k0 = 0; k0 < job->D; k0 += KC) {
            const int64_t kc = job->D - k0 < KC ? job->D - k0 : KC;
            for (int64_t m0 = 0; m0 < job->M; m0 += mr) {
                const float *ap = job->pa + k0 * job->mp + m0 * kc;
                const int rows = job->M - m0 < mr ? (int)(job->M - m0) : mr;
                for (int64_t j0 = 0; j0 < n1 - n0; j0 += nr) {
                    const float *bp = pb + k0 * ncp + j0 * kc;
                    job->k->fn(kc, ap, bp, tile);
                    const int cols = n1 - n0 - j0 < nr ? (int)(n1 - n0 - j0) : nr;
                    store_tile(job, tile, nr, m0, rows, n0 + j0, cols, k0 == 0);
                }
            }
        }
    }
}

/* Packs and runs job (M, K, w, and a/c or the node's tensors set) on the pool. */
static bst_status gemm_drive(cpu_run *r, gemm_job *job)
{
    const cpu_tensor *a = &r->in[0], *o = &r->out;
    const int mr = job->k->mr, nr = job->k->nr;
    const uint32_t workers = r->n_workers ? r->n_workers : 1;
    job->N = job->w->ne[2];
    job->D = job->k->kpack == 2 ? (job->K + 1) / 2 : job->K;
    job->mp = (job->M + mr - 1) / mr * mr;
    /* Enough units for the pool to balance (about three per worker), each at most MAX_NC rows
     * and at most 2 Mi floats of packed weight. */
    int64_t nc = (job->N + 3 * (int64_t)workers - 1) / (3 * (int64_t)workers);
    int64_t cap = (int64_t)2 * 1024 * 1024 / job->D;
    if (nc > MAX_NC)
        nc = MAX_NC;
    if (nc > cap)
        nc = cap;
    job->nc = (nc + nr - 1) / nr * nr;
    if (job->nc < nr)
        job->nc = nr;
    const int64_t units = (job->N + job->nc - 1) / job->nc;

    size_t pa_floats, pb_total, rows_bytes = 0;
    if (__builtin_mul_overflow((size_t)job->mp, (size_t)job->D, &pa_floats) ||
        __builtin_mul_overflow((size_t)job->nc, (size_t)job->D, &job->pb_floats) ||
        __builtin_mul_overflow(job->pb_floats, (size_t)workers + 1, &pb_total) ||
        pa_floats > SIZE_MAX / sizeof(float) || pb_total > SIZE_MAX / sizeof(float) ||
        (!job->c && __builtin_mul_overflow((size_t)job->M, sizeof(uint8_t *), &rows_bytes)))
        return cpu_fail(r, BST_ERR_OVERFLOW, "matmul too large to pack");
    job->pa = cpu_host->alloc(pa_floats * sizeof(float), 64);
    job->pb = cpu_host->alloc(pb_total * sizeof(float), 64);
    job->orow = job->c ? NULL : cpu_host->alloc(rows_bytes ? rows_bytes : 1, 64);
    bst_status st = BST_OK;
    if (!job->pa || !job->pb || (!job->c && !job->orow)) {
        st = cpu_fail(r, BST_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of packed panels",
                      (pa_floats + pb_total) * sizeof(float));
    } else {
        for (int64_t row = 0; !job->c && row < job->M; row++) {
            int64_t i0, i1, m;
            split_row(a, row, &i0, &i1, &m);
            job->orow[row] = cpu_row_ptr(o, i0, i1, m);
        }
        void *saved = r->aux;
        r->aux = job;
        cpu_parallel(r, job->mp / mr, cpu_grain(mr * job->K), pack_a);
        st = cpu_async_result(r, "packing a");
        if (st == BST_OK) {
            cpu_parallel(r, units, 1, gemm_units);
            st = cpu_async_result(r, "gemm");
        }
        r->aux = saved;
    }
    cpu_host->free(job->pa);
    cpu_host->free(job->pb);
    cpu_host->free(job->orow);
    return st;
}

bst_status cpu_gemm_rows(cpu_run *r, const cpu_gemm_kernel *k, int64_t M, const float *a,
                         int64_t lda, const cpu_tensor *w, float *c, int64_t ldc)
{
    if (!k || !a || !w || !c || M < 0 || w->ne[0] != 1 || w->ne[1] != 1 ||
        !(is_float(w->dtype) || is_quant(w->dtype)) || lda < w->ne[3] || ldc < w->ne[2])
        return cpu_fail(r, BST_ERR_INVALID_ARG, "cpu_gemm_rows: bad arguments");
    if (w->ne[3] > (int64_t)r->slot_floats)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "cpu_gemm_rows: K %lld exceeds the row scratch",
                        (long long)w->ne[3]);
    if (M == 0 || w->ne[2] == 0)
        return BST_OK;
    if (w->ne[3] == 0) {
        for (int64_t m = 0; m < M; m++)
            memset(c + m * ldc, 0, (size_t)w->ne[2] * sizeof(float));
        return BST_OK;
    }
    gemm_job job = {.k = k, .M = M, .K = w->ne[3], .w = w, .a = a, .lda = lda, .c = c,
                    .ldc = ldc};
    return gemm_drive(r, &job);
}

bst_status cpu_run_gemm(cpu_run *r, const cpu_q8dot_impl *impl)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1];
    if (!impl->gemm || !cpu_gemm_accepts(r))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "%s does not handle this matmul", impl->name);
    gemm_job job = {.k = impl->gemm, .M = a->ne[0] * a->ne[1] * a->ne[2], .K = a->ne[3], .w = b};
    /* A quantized weight with a packed copy goes to the int8 kernels at any row count: on
     * SmolLM2's and 4096x4096 prompt shapes they took 0.23-0.70 of the time of dequantizing into
     * f32 panels (bench ops, one run). */
    float *o;
    int64_t ldo;
    const bool int8_packed = is_quant(b->dtype) && impl->small && b->packed &&
                             cpu_packed_kernel(impl->small, job.M) &&
                             cpu_rows_uniform(&r->out, &o, &ldo);
    const int64_t gemv_rows = impl->dot ? MIN_ROWS_DOT : MIN_ROWS_HALF;
    const int64_t dot_rows = impl->gemm->kpack > 1          ? MAX_ROWS_DOT_BF16
                             : impl->isa & CPU_ISA_AVX512 ? MAX_ROWS_DOT
                                                          : MAX_ROWS_DOT_AVX2;
    if (cpu_run_gemv_float(r, impl->gemv, gemv_rows) ||
        cpu_run_gemm_dot(r, impl->dot, MIN_ROWS_DOT, dot_rows))
        return BST_OK;
    if (job.M < MIN_ROWS || job.K == 0 || int8_packed ||
        (job.M < MIN_ROWS_QUANT && is_quant(b->dtype) && impl->small)) {
        if (is_quant(b->dtype) && job.K > 0)
            return cpu_run_q8dot(r, impl->small);
        return cpu_run_matmul(r);
    }
    return gemm_drive(r, &job);
}
