/*
 * Fast variants of primitive ops other than matmul (see cpu_fused.h, "primitive variants"):
 * offered before "ref" wherever they apply, so the static priority picks them.
 *
 * rope_cached: the reference kernel evaluates cos and sin for every (token, head, pair); a
 * token's angles are the same for all of its heads, so this variant computes them once per token
 * (in double, by the same expression) and rotates every head with them. The arithmetic per
 * element is the reference's, so the result is bit-identical and only the H-fold redundant
 * trigonometry is gone (rope was ~6% of a SmolLM2 prompt on the reference kernel).
 * Every rope of a step (q and k of every layer) uses the same positions with the same theta, so
 * each thread keeps the angles of the positions it has met (and the base^(-2i/dims) table),
 * keyed by theta, dims and position: a decode step's 60 ropes evaluate them once (the pow, cos
 * and sin of a 64-dim rope were ~0.5 us of its ~0.8 us), and a prompt's once per position and
 * thread instead of once per rope (the trigonometry was ~2/3 of a 512-token rope). Same values,
 * computed the same way: still bit-identical.
 *
 * set_rows_f16 writes f32 rows (a step's K and V) into an f16 state (the KV cache) with F16C,
 * bit-identical to the reference's conversion (cpu_f16c.c).
 *
 * silu_f32 evaluates silu on 16 lanes (cpu_swiglu_avx512.c's exp) instead of the reference's
 * double exp per element: f32 accuracy, not bit-identical.
 */
#include "cpu_fused.h"
#include "cpu_isa.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define ROPE_MAX_HALF 256 /* rotated pairs held on the stack; wider ropes keep "ref" */
/* Bytes of angles a thread keeps: 512 positions of a 64-dim rope. */
#define ROPE_CACHE_BYTES ((size_t)512 * 1024)

/* One thread's rope tables: inv_freq for (theta, dims), and the angles of up to `cap` positions,
 * direct-mapped by position (row pos mod cap; tag[row] is the position it holds). `theta` is
 * compared bit for bit (as the tables are). Without memory for the rows, `one` holds the last
 * position's angles. The rows are freed when the thread ends (rows_key's destructor): an
 * application thread that runs a model and exits leaves nothing behind. */
typedef struct rope_tables {
    bool have_freq;
    uint64_t theta_bits;
    int64_t dims;
    double inv_freq[ROPE_MAX_HALF]; /* base^(-2i/dims) */
    int64_t cap;                    /* rows of angles (0: none allocated) */
    int64_t *tag;                   /* per row: the position, or INT64_MIN when empty */
    double *angles;                 /* per row: cos[half] then sin[half] */
    int64_t one_tag;
    double one[2 * ROPE_MAX_HALF];
} rope_tables;

static _Thread_local rope_tables rope_tls;

static pthread_key_t rows_key;
static pthread_once_t rows_key_once = PTHREAD_ONCE_INIT;
static bool rows_key_ok;

static void free_rows(void *tables)
{
    rope_tables *t = tables;
    cpu_host->free(t->tag);
    cpu_host->free(t->angles);
    t->tag = NULL;
    t->angles = NULL;
    t->cap = 0;
}

static void make_rows_key(void) { rows_key_ok = pthread_key_create(&rows_key, free_rows) == 0; }

static uint64_t double_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* The calling thread's tables for (theta, dims), inv_freq filled in; the angles are kept only
 * while theta and dims stay the same. The rows live as long as the thread (pool threads live as
 * long as the process). */
static rope_tables *rope_tables_for(double theta, int64_t dims)
{
    rope_tables *t = &rope_tls;
    const uint64_t bits = double_bits(theta);
    if (!t->have_freq || t->theta_bits != bits || t->dims != dims) {
        for (int64_t i = 0; i < dims / 2; i++) /* as the reference kernel */
            t->inv_freq[i] = pow(theta, -2.0 * (double)i / (double)dims);
        t->theta_bits = bits;
        t->dims = dims;
        t->have_freq = true;
        t->one_tag = INT64_MIN;
        const int64_t row = dims > 1 ? dims : 2; /* cos and sin of dims / 2 pairs */
        const int64_t cap = (int64_t)(ROPE_CACHE_BYTES / ((size_t)row * sizeof(double)));
        if (t->cap != cap) {
            free_rows(t);
            pthread_once(&rows_key_once, make_rows_key);
            /* Without a key to free them at thread exit, no rows: the angles are then evaluated
             * per rope, as before this cache. */
            if (rows_key_ok && pthread_setspecific(rows_key, t) == 0) {
                t->tag = cpu_host->alloc((size_t)cap * sizeof *t->tag, 64);
                t->angles = cpu_host->alloc((size_t)cap * (size_t)row * sizeof(double), 64);
                t->cap = t->tag && t->angles ? cap : 0;
            }
        }
        for (int64_t k = 0; k < t->cap; k++)
            t->tag[k] = INT64_MIN;
    }
    return t;
}

/* cos (the first half) and sin (the second) of position p's angles, computed as the reference
 * kernel computes them unless the thread already has them. */
static const double *rope_angles(rope_tables *t, int32_t p)
{
    const int64_t half = t->dims / 2;
    int64_t *tag = &t->one_tag;
    double *a = t->one;
    if (t->cap > 0) {
        const int64_t k = ((int64_t)p % t->cap + t->cap) % t->cap;
        tag = &t->tag[k];
        a = t->angles + k * 2 * half;
    }
    if (*tag != p) {
        for (int64_t i = 0; i < half; i++) {
            const double ang = (double)p * t->inv_freq[i];
            a[i] = cos(ang);
            a[half + i] = sin(ang);
        }
        *tag = p;
    }
    return a;
}

static bool rope_cached_applies(const cpu_run *r)
{
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0);
    return dims / 2 <= ROPE_MAX_HALF;
}

/* Tokens [begin, end): rows (0, t, h) for every head h. */
static void rope_tokens(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *pos = &r->in[1], *o = &r->out;
    const bool neox = cpu_attr_int(r->node, BST_ATTR_ROPE_MODE, 0) == 2;
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0), half = dims / 2;
    const int64_t n = o->ne[3];
    const double theta = cpu_attr_float(r->node, BST_ATTR_ROPE_THETA, 10000.0);
    rope_tables *tab = rope_tables_for(theta, dims);
    for (int64_t t = begin; t < end; t++) {
        int32_t p;
        memcpy(&p, pos->data + t * pos->nb[3], sizeof p);
        const double *cs = rope_angles(tab, p), *sn = cs + half;
        for (int64_t i0 = 0; i0 < o->ne[0]; i0++) {
            for (int64_t h = 0; h < o->ne[2]; h++) {
                const float *v =
                    cpu_load_row(r, x, i0, t, h, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
                float *z = cpu_out_row(o, i0, t, h, cpu_slot(r, w, 2));
                if (neox) {
                    for (int64_t i = 0; i < half; i++) {
                        const double x0 = v[i], x1 = v[i + half];
                        z[i] = (float)(x0 * cs[i] - x1 * sn[i]);
                        z[i + half] = (float)(x0 * sn[i] + x1 * cs[i]);
                    }
                } else {
                    for (int64_t i = 0; i < half; i++) {
                        const double x0 = v[2 * i], x1 = v[2 * i + 1];
                        z[2 * i] = (float)(x0 * cs[i] - x1 * sn[i]);
                        z[2 * i + 1] = (float)(x0 * sn[i] + x1 * cs[i]);
                    }
                }
                for (int64_t i = dims; i < n; i++)
                    z[i] = v[i];
                cpu_commit_row(r, o, i0, t, h, z, cpu_slot(r, w, 3));
            }
        }
    }
}

static bst_status rope_cached_run(cpu_run *r)
{
    const cpu_tensor *o = &r->out;
    const int64_t dims = cpu_attr_int(r->node, BST_ATTR_ROPE_DIMS, 0);
    if (dims / 2 > ROPE_MAX_HALF)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "rope_cached handles at most %d rotated dims",
                        2 * ROPE_MAX_HALF);
    cpu_parallel(r, o->ne[1], cpu_grain(o->ne[0] * o->ne[2] * o->ne[3] * 2), rope_tokens);
    return BST_OK;
}

/* --- contiguous f32 rows: add_f32, mul_f32 and fused_rms_norm_mul_f32 ---
 *
 * The reference kernels go through cpu_load_row / cpu_out_row per row and a per-element loop the
 * compiler leaves scalar (a branch on broadcast and on add/mul per element; one chain of double
 * adds for the sum of squares). A decode step runs ~60 of each on one 576-float row, where that
 * was ~0.30 us a node for add and ~0.55 us for rms_norm_mul (now ~0.13 and ~0.21, most of it
 * the executor's per-node work). These variants take f32 rows with unit element stride through
 * 4-float vectors (GCC/clang vector extensions: SSE2 on any x86-64, with the same IEEE
 * operation per element as the reference, so add / mul and the product of rms_norm_mul are
 * bit-identical; the sum of squares is taken in double over 8 interleaved partial sums, which
 * moves it by rounding only). Anything else (other dtypes, strided rows, partly overlapping
 * in / out) runs the reference code. */

/* 4 floats: the SSE width every x86-64 has (a wider vector type would change the ABI of these
 * helpers without AVX). */
typedef float f32x4 __attribute__((vector_size(16)));

static inline f32x4 load4(const float *p)
{
    f32x4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, f32x4 v) { memcpy(p, &v, sizeof v); }

static bool f32_rows(const cpu_tensor *t) { return t->dtype == BST_DTYPE_F32 && t->nb[3] == 4; }

/* Row `row` of t (all dims but the innermost, flattened) as its three indices. */
static void row_index(const cpu_tensor *t, int64_t row, int64_t *i0, int64_t *i1, int64_t *i2)
{
    *i2 = row % t->ne[2];
    *i1 = (row / t->ne[2]) % t->ne[1];
    *i0 = row / t->ne[2] / t->ne[1];
}

/* Row `row` of x (f32) and of o, of the same shape. */
static void row_pair(const cpu_tensor *x, const cpu_tensor *o, int64_t row, const float **v,
                     float **z)
{
    int64_t i0, i1, i2;
    row_index(o, row, &i0, &i1, &i2);
    *v = (const float *)(const void *)cpu_row_ptr(x, i0, i1, i2);
    *z = (float *)(void *)cpu_row_ptr(o, i0, i1, i2);
}

/* z may be x itself (in place) or apart from it; any other overlap keeps the element order. */
static bool same_or_apart(const float *z, const float *x, int64_t n)
{
    return z == x || z + n <= x || x + n <= z;
}

static bool binary_f32_fits(const cpu_run *r)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    return f32_rows(a) && f32_rows(o) && b->dtype == BST_DTYPE_F32 &&
           (b->ne[3] == 1 || b->nb[3] == 4);
}

static void binary_f32_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    const bool mul = r->node->op == BST_OP_MUL;
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        int64_t i0, i1, i2;
        row_index(o, row, &i0, &i1, &i2);
        const float *x = (const float *)(const void *)cpu_row_ptr(a, i0, i1, i2);
        const float *y = (const float *)(const void *)cpu_row_ptr(
            b, b->ne[0] == 1 ? 0 : i0, b->ne[1] == 1 ? 0 : i1, b->ne[2] == 1 ? 0 : i2);
        float *z = (float *)(void *)cpu_row_ptr(o, i0, i1, i2);
        const bool bcast = b->ne[3] == 1;
        int64_t i = 0;
        if (same_or_apart(z, x, n) && (bcast || same_or_apart(z, y, n))) {
            /* one loop per case: tests inside the loop cost as much as the arithmetic */
            const f32x4 yb = {y[0], y[0], y[0], y[0]};
            if (bcast && mul)
                for (; i + 4 <= n; i += 4)
                    store4(z + i, load4(x + i) * yb);
            else if (bcast)
                for (; i + 4 <= n; i += 4)
                    store4(z + i, load4(x + i) + yb);
            else if (mul)
                for (; i + 4 <= n; i += 4)
                    store4(z + i, load4(x + i) * load4(y + i));
            else
                for (; i + 4 <= n; i += 4)
                    store4(z + i, load4(x + i) + load4(y + i));
        }
        for (; i < n; i++) {
            const float yi = bcast ? y[0] : y[i];
            z[i] = mul ? x[i] * yi : x[i] + yi;
        }
    }
}

static bst_status binary_f32_run(cpu_run *r)
{
    if (!binary_f32_fits(r))
        return cpu_run_binary(r);
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3]), binary_f32_rows);
    return BST_OK;
}

static bool rms_norm_mul_f32_fits(const cpu_run *r)
{
    return f32_rows(&r->in[0]) && f32_rows(&r->in[1]) && f32_rows(&r->out);
}

static void rms_norm_mul_f32_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const float *wt = (const float *)(const void *)r->in[1].data;
    const double eps = cpu_attr_float(r->node, BST_ATTR_EPS, 0.0);
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        const float *v;
        float *z;
        row_pair(x, o, row, &v, &z);
        /* Named partial sums: an array of them stayed on the stack, each add waiting on the
         * store before it. */
        double p0 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0, p5 = 0, p6 = 0, p7 = 0;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            p0 += (double)v[i] * (double)v[i];
            p1 += (double)v[i + 1] * (double)v[i + 1];
            p2 += (double)v[i + 2] * (double)v[i + 2];
            p3 += (double)v[i + 3] * (double)v[i + 3];
            p4 += (double)v[i + 4] * (double)v[i + 4];
            p5 += (double)v[i + 5] * (double)v[i + 5];
            p6 += (double)v[i + 6] * (double)v[i + 6];
            p7 += (double)v[i + 7] * (double)v[i + 7];
        }
        for (; i < n; i++)
            p0 += (double)v[i] * (double)v[i];
        const double sq = ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7));
        const float inv = (float)(1.0 / sqrt(sq / (double)n + eps));
        i = 0;
        if (same_or_apart(z, v, n) && same_or_apart(z, wt, n)) {
            const f32x4 iv = {inv, inv, inv, inv};
            for (; i + 4 <= n; i += 4)
                store4(z + i, load4(v + i) * iv * load4(wt + i));
        }
        for (; i < n; i++)
            z[i] = v[i] * inv * wt[i];
    }
}

bst_status cpu_fast_rms_norm_mul(cpu_run *r)
{
    if (!rms_norm_mul_f32_fits(r))
        return cpu_fused_run_rms_norm_mul(r);
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 2),
                 rms_norm_mul_f32_rows);
    return BST_OK;
}

/* --- silu_f32: contiguous f32 rows with AVX-512 (cpu_swiglu_avx512.c) --- */

#ifdef CPU_HAVE_AVX512VNNI_KERNELS
static bool silu_f32_fits(const cpu_run *r)
{
    return f32_rows(&r->in[0]) && f32_rows(&r->out);
}

static void silu_f32_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    const int64_t n = o->ne[3];
    for (int64_t row = begin; row < end; row++) {
        const float *v;
        float *z;
        row_pair(x, o, row, &v, &z);
        if (same_or_apart(z, v, n))
            cpu_silu_avx512(v, z, n);
        else /* a partial overlap: element by element, in order */
            for (int64_t i = 0; i < n; i++)
                cpu_silu_avx512(v + i, z + i, 1);
    }
}

static bst_status silu_f32_run(cpu_run *r)
{
    if (!silu_f32_fits(r))
        return cpu_run_unary(r);
    const cpu_tensor *o = &r->out;
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 8), silu_f32_rows);
    return BST_OK;
}
#endif

/* --- set_rows_f16: f32 rows into an f16 state (the KV cache) with F16C ---
 *
 * Contiguous f32 source rows and contiguous f16 destination rows (the output aliasing dst, as
 * the planner makes it) are converted 8 values per instruction (cpu_f16c.c), bit-identical to the
 * reference's per-value conversion through the host. */

#ifdef CPU_HAVE_AVX2_KERNELS
static bool set_rows_f16_fits(const cpu_run *r)
{
    const cpu_tensor *src = &r->in[1], *o = &r->out;
    return src->dtype == BST_DTYPE_F32 && src->nb[3] == 4 && o->dtype == BST_DTYPE_F16 &&
           o->nb[3] == 2;
}

static void set_rows_f16_items(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const cpu_tensor *src = &r->in[1], *o = &r->out;
    const int64_t rows = r->in[2].ne[3];
    for (int64_t item = begin; item < end; item++)
        for (int64_t n = 0; n < rows; n++) {
            int64_t s[3], d[3];
            cpu_set_rows_item(r, item, n, s, d);
            cpu_f32_to_f16_f16c((const float *)(const void *)cpu_row_ptr(src, s[0], s[1], s[2]),
                                cpu_row_ptr(o, d[0], d[1], d[2]), o->ne[3]);
        }
}

static bst_status set_rows_f16_run(cpu_run *r)
{
    if (!set_rows_f16_fits(r))
        return cpu_run_set_rows(r);
    int64_t items;
    const bst_status st = cpu_set_rows_prepare(r, &items);
    if (st != BST_OK)
        return st;
    cpu_parallel(r, items, cpu_grain(r->in[2].ne[3] * r->out.ne[3]), set_rows_f16_items);
    return BST_OK;
}
#endif

static const cpu_fused_impl prim_impls[] = {
    {"rope_cached", BST_OP_ROPE, 0, NULL, NULL, NULL, rope_cached_run},
    {"add_f32", BST_OP_ADD, 0, NULL, NULL, NULL, binary_f32_run},
    {"mul_f32", BST_OP_MUL, 0, NULL, NULL, NULL, binary_f32_run},
#ifdef CPU_HAVE_AVX2_KERNELS
    {"set_rows_f16", BST_OP_SET_ROWS, CPU_ISA_AVX2, NULL, NULL, NULL, set_rows_f16_run},
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    {"silu_f32", BST_OP_SILU, CPU_ISA_AVX512, NULL, NULL, NULL, silu_f32_run},
#endif
};

uint32_t cpu_prim_variants(const cpu_run *r, const cpu_fused_impl **out, uint32_t cap)
{
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof prim_impls / sizeof prim_impls[0] && n < cap; i++) {
        const cpu_fused_impl *impl = &prim_impls[i];
        if (impl->op != r->node->op || (cpu_isa_mask() & impl->isa) != impl->isa)
            continue;
#ifdef CPU_HAVE_AVX2_KERNELS
        if (impl->op == BST_OP_SET_ROWS && !set_rows_f16_fits(r))
            continue;
#endif
        if (impl->op == BST_OP_ROPE && !rope_cached_applies(r))
            continue;
        if ((impl->op == BST_OP_ADD || impl->op == BST_OP_MUL) && !binary_f32_fits(r))
            continue;
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
        if (impl->op == BST_OP_SILU && !silu_f32_fits(r))
            continue;
#endif
        out[n++] = impl;
    }
    return n;
}
