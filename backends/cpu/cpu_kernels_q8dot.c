/*
 * The q8x2dot matmul variants (see cpu_q8dot.h): out[..., m, n] = sum_k a[..., m, k] * b[n, k] for
 * a block-quantized weight b (q4_0, q4_1, q8_0) without batch dims.
 *
 * Per call: every row of a is quantized once to q8 blocks (rows in parallel); then the weight's
 * rows are split over the host pool, and each weight row, unpacked one block at a time, is dotted
 * with up to CPU_Q8_MAX_ROWS activation rows at once, so a prompt's rows share each weight load.
 * Activations are rounded to ~16 bits per block (two int8 planes), so results are close to but
 * not bit-identical with the f32 reference kernel; "ref" stays the oracle.
 *
 * This file also keeps the list of all fast matmul variants query offers, including the packed
 * "gemm_*" ones (cpu_gemm.h), and cpu_run_q8dot, the one entry that runs any of them.
 */
#include "cpu_backend.h"
#include "cpu_gemm.h"
#include "cpu_isa.h"
#include "cpu_packed.h"
#include "cpu_q8dot.h"

#include <string.h>

/* Best first: the order query offers them in (a gemm variant runs its q8x2dot partner for few
 * activation rows, so it is at least as good as that partner everywhere). */
static const cpu_q8dot_impl *const all_impls[] = {
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    &cpu_gemm_avx512,
    &cpu_q8dot_avx512vnni,
#endif
#ifdef CPU_HAVE_AVX512BF16_KERNELS
    &cpu_gemm_bf16dot_avx512, /* after the f32-exact gemm: it rounds activations to bf16 */
#endif
#ifdef CPU_HAVE_AVX2_KERNELS
    &cpu_gemm_avx2,
    &cpu_q8dot_avx2,
#endif
    &cpu_gemm_scalar,
    &cpu_q8dot_scalar,
};

static cpu_q8dot_fn fn_for(const cpu_q8dot_impl *impl, bst_dtype t)
{
    switch (t) {
    case BST_DTYPE_Q4_0: return impl->q4_0;
    case BST_DTYPE_Q4_1: return impl->q4_1;
    case BST_DTYPE_Q8_0: return impl->q8_0;
    default: return NULL;
    }
}

uint32_t cpu_q8dot_variants(const cpu_run *r, const cpu_q8dot_impl **out, uint32_t cap)
{
    if (r->node->op != BST_OP_MATMUL)
        return 0;
    const cpu_tensor *a = &r->in[0], *b = &r->in[1];
    const bool gemm = cpu_gemm_accepts(r);
    const bool q8 = b->ne[0] == 1 && b->ne[1] == 1 && fn_for(&cpu_q8dot_scalar, b->dtype) &&
                    (a->dtype == BST_DTYPE_F32 || a->dtype == BST_DTYPE_F16 ||
                     a->dtype == BST_DTYPE_BF16);
    const uint32_t isa = cpu_isa_mask();
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof all_impls / sizeof all_impls[0] && n < cap; i++) {
        const cpu_q8dot_impl *impl = all_impls[i];
        const bool applies = impl->gemm ? gemm && (impl->gemm->kpack == 1 ||
                                                    b->dtype == BST_DTYPE_BF16)
                                        : q8 && fn_for(impl, b->dtype);
        if (applies && (impl->isa & isa) == impl->isa)
            out[n++] = impl;
    }
    return n;
}

cpu_q8dot_multi_fn cpu_q8dot_multi(const cpu_q8dot_impl *impl, uint32_t t)
{
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    if (impl == &cpu_q8dot_avx512vnni) {
        switch (t) {
        case BST_DTYPE_Q4_0: return cpu_q8z_multi_q4_0;
        case BST_DTYPE_Q4_1: return cpu_q8z_multi_q4_1;
        case BST_DTYPE_Q8_0: return cpu_q8z_multi_q8_0;
        default: return NULL;
        }
    }
#endif
    (void)impl;
    (void)t;
    return NULL;
}

typedef struct q8_job {
    const cpu_q8dot_impl *impl;
    cpu_q8dot_fn fn;
    cpu_q8dot_multi_fn multi; /* one activation row: several weight rows per call */
    cpu_q8_block *qa; /* rows x nb blocks */
    int64_t rows, nb;
} q8_job;

/* Row `row` of a (all batch dims flattened, outermost first) as its (i0, i1, m). */
static void split_row(const cpu_tensor *t, int64_t row, int64_t *i0, int64_t *i1, int64_t *m)
{
    *m = row % t->ne[2];
    *i1 = (row / t->ne[2]) % t->ne[1];
    *i0 = row / t->ne[2] / t->ne[1];
}

/* Each activation row is quantized by the impl's quantizer (cpu_q8dot.h: all produce the same
 * blocks), the portable one where the impl has none. */
static void quantize_job_rows(cpu_run *r, const q8_job *job, int64_t begin, int64_t end,
                              uint32_t w)
{
    const cpu_tensor *a = &r->in[0];
    const cpu_q8_quant_fn quant = job->impl->quant ? job->impl->quant : cpu_q8_quantize_scalar;
    for (int64_t row = begin; row < end; row++) {
        int64_t i0, i1, m;
        split_row(a, row, &i0, &i1, &m);
        const float *x = cpu_load_row(r, a, i0, i1, m, cpu_slot(r, w, 2), cpu_slot(r, w, 3));
        quant(x, job->qa + row * job->nb, job->nb);
    }
}

static void quantize_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    quantize_job_rows(r, r->aux, begin, end, w);
}

static void quantize_all(cpu_run *r, void *job, uint32_t w)
{
    quantize_job_rows(r, job, 0, ((const q8_job *)job)->rows, w);
}

/* Weight rows [begin, end) against every activation row, in tiles: a tile of weight rows (at most
 * ~64 KiB, so it stays in L2) is swept by groups of CPU_Q8_MAX_ROWS activation rows, each group
 * reused across the whole tile. Untiled, a prompt's activations (hundreds of KiB to MiB) would be
 * streamed again for every weight row. */
static void dot_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const q8_job *job = r->aux;
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    const int64_t row_bytes = b->nb[2] > 0 ? b->nb[2] : 1;
    int64_t tile = (int64_t)65536 / row_bytes;
    tile = tile < 1 ? 1 : tile > 64 ? 64 : tile;
    float res[CPU_Q8_MAX_ROWS];
    if (job->multi && job->rows == 1) {
        float one[64];
        int64_t i0, i1, m;
        split_row(a, 0, &i0, &i1, &m);
        uint8_t *dst = o->data + i0 * o->nb[0] + i1 * o->nb[1] + m * o->nb[2];
        for (int64_t n0 = begin; n0 < end; n0 += tile) {
            const int64_t n1 = end - n0 < tile ? end : n0 + tile;
            job->multi(cpu_row_ptr(b, 0, 0, n0), b->nb[2], n1 - n0, job->qa, job->nb, one);
            for (int64_t n = n0; n < n1; n++)
                memcpy(dst + n * o->nb[3], &one[n - n0], sizeof(float));
        }
        return;
    }
    for (int64_t n0 = begin; n0 < end; n0 += tile) {
        const int64_t n1 = end - n0 < tile ? end : n0 + tile;
        for (int64_t row = 0; row < job->rows; row += CPU_Q8_MAX_ROWS) {
            int64_t mc = job->rows - row < CPU_Q8_MAX_ROWS ? job->rows - row : CPU_Q8_MAX_ROWS;
            uint8_t *dst[CPU_Q8_MAX_ROWS];
            for (int64_t j = 0; j < mc; j++) {
                int64_t i0, i1, m;
                split_row(a, row + j, &i0, &i1, &m);
                dst[j] = o->data + i0 * o->nb[0] + i1 * o->nb[1] + m * o->nb[2];
            }
            for (int64_t n = n0; n < n1; n++) {
                job->fn(cpu_row_ptr(b, 0, 0, n), job->qa + row * job->nb, job->nb, mc, res);
                for (int64_t j = 0; j < mc; j++)
                    memcpy(dst[j] + n * o->nb[3], &res[j], sizeof(float));
            }
        }
    }
}

/* job->qa: room for every row of a (r->in[0]) quantized; cpu_work_release frees it. */
static bst_status alloc_qa(cpu_run *r, q8_job *job)
{
    size_t bytes;
    if (__builtin_mul_overflow((size_t)job->rows, (size_t)job->nb * sizeof(cpu_q8_block), &bytes))
        return cpu_fail(r, BST_ERR_OVERFLOW, "a is too large to quantize");
    job->qa = cpu_work_area(r, bytes);
    if (!job->qa)
        return cpu_fail(r, BST_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes to quantize a",
                        bytes);
    return BST_OK;
}

/* Quantizes every row of a into job->qa, rows in parallel. */
static bst_status quantize_a(cpu_run *r, q8_job *job)
{
    void *saved = r->aux;
    r->aux = job;
    cpu_parallel(r, job->rows, cpu_grain(r->in[0].ne[3] * 4), quantize_rows);
    r->aux = saved;
    return cpu_async_result(r, "quantizing a");
}

/* jobs (their `a` set to job->qa) as one section. A decode step's few rows are quantized inside
 * it (cpu_once: the workers wake meanwhile); a prompt's many rows in parallel before it. */
static bst_status run_packed(cpu_run *r, q8_job *job, const cpu_packed_job *jobs, uint32_t count)
{
    if (job->rows > CPU_Q8_MAX_ROWS) {
        const bst_status st = quantize_a(r, job);
        if (st == BST_OK)
            cpu_packed_run_group(r, jobs, count, NULL);
        return st;
    }
    cpu_once quantize = {quantize_all, job, 0};
    cpu_packed_run_group(r, jobs, count, &quantize);
    return cpu_async_result(r, "quantizing a");
}

bst_status cpu_run_q8dot(cpu_run *r, const cpu_q8dot_impl *impl)
{
    if (impl->gemm)
        return cpu_run_gemm(r, impl);
    const cpu_tensor *a = &r->in[0], *b = &r->in[1];
    q8_job job = {impl, fn_for(impl, b->dtype), cpu_q8dot_multi(impl, b->dtype), NULL,
                  a->ne[0] * a->ne[1] * a->ne[2], a->ne[3] / CPU_Q8_QK};
    if (!job.fn || b->ne[0] != 1 || b->ne[1] != 1)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "%s does not handle this matmul", impl->name);
    bst_status st = alloc_qa(r, &job);
    if (st != BST_OK)
        return st;
    const cpu_packed_gemv_fn packed = b->packed ? cpu_packed_kernel(impl, job.rows) : NULL;
    cpu_packed_job pj = {b->packed, packed, job.qa, job.rows, NULL, 0};
    if (packed && cpu_rows_uniform(&r->out, &pj.out, &pj.ldo)) {
        st = run_packed(r, &job, &pj, 1);
    } else if ((st = quantize_a(r, &job)) == BST_OK) {
        r->aux = &job;
        cpu_parallel(r, b->ne[2], cpu_grain(a->ne[3] / 4 * (job.rows + 1)), dot_rows);
        r->aux = NULL;
    }
    cpu_work_release(r, job.qa);
    return st;
}

/* --- sibling matmuls (cpu_backend.h) --- */

/* Byte range [*lo, *hi) a descriptor can reach at its bound shape; false if a stride is
 * negative or the geometry unknown (then it is not grouped). */
static bool desc_range(const bst_tensor_desc *d, uint64_t *lo, uint64_t *hi)
{
    uint32_t bs = 1, bb = 0;
    if (!cpu_dtype_geometry(d->dtype, &bs, &bb) || bs == 0 || d->rank == 0)
        return false;
    uint64_t end = d->offset;
    for (uint32_t i = 0; i < d->rank; i++) {
        const int64_t n = i + 1 == d->rank ? d->shape[i] / bs : d->shape[i];
        if (n < 1 || d->strides[i] < 0)
            return false;
        end += (uint64_t)(n - 1) * (uint64_t)d->strides[i];
    }
    *lo = d->offset;
    *hi = end + bb;
    return true;
}

static bool same_desc(const bst_tensor_desc *a, const bst_tensor_desc *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank || a->binding != b->binding ||
        a->offset != b->offset || a->layout != b->layout)
        return false;
    for (uint32_t i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i] || a->sym[i] != b->sym[i])
            return false;
    return true;
}

/* Node n can join a group reading activation `a`: a fast matmul of a block-quantized matrix
 * whose output cannot overwrite the activation. */
static bool joins(const cpu_node *n, const bst_tensor_desc *a)
{
    if (n->op != BST_OP_MATMUL || !n->q8dot || n->n_inputs != 2 || n->in[1].rank != 2 ||
        !cpu_is_block(n->in[1].dtype) || !same_desc(&n->in[0], a))
        return false;
    uint64_t alo, ahi, olo, ohi;
    if (!desc_range(a, &alo, &ahi) || !desc_range(&n->out, &olo, &ohi))
        return false;
    return n->out.binding != a->binding || ohi <= alo || olo >= ahi;
}

void cpu_mark_siblings(cpu_node *nodes, uint32_t n_nodes)
{
    for (uint32_t i = 0; i < n_nodes;) {
        uint32_t count = 0;
        while (count < CPU_MAX_SIBLINGS && i + count < n_nodes &&
               joins(&nodes[i + count], &nodes[i].in[0]))
            count++;
        nodes[i].siblings = count > 1 ? count : 0;
        i += count > 1 ? count : 1;
    }
}

bool cpu_run_q8dot_group(cpu_run *runs, uint32_t count, bst_status *out_status)
{
    cpu_run *r = &runs[0];
    const cpu_tensor *a = &r->in[0];
    const int64_t rows = a->ne[0] * a->ne[1] * a->ne[2];
    cpu_packed_job jobs[CPU_MAX_SIBLINGS];
    const cpu_q8dot_impl *first = NULL;
    if (count < 1 || count > CPU_MAX_SIBLINGS)
        return false;
    for (uint32_t k = 0; k < count; k++) {
        const cpu_q8dot_impl *impl = runs[k].node->q8dot;
        if (impl && impl->gemm)
            impl = impl->small; /* what cpu_run_gemm runs for a packed weight */
        const cpu_tensor *b = &runs[k].in[1];
        const cpu_packed_gemv_fn fn = impl && b->packed ? cpu_packed_kernel(impl, rows) : NULL;
        jobs[k] = (cpu_packed_job){b->packed, fn, NULL, rows, NULL, 0};
        if (!fn || !cpu_rows_uniform(&runs[k].out, &jobs[k].out, &jobs[k].ldo))
            return false;
        first = first ? first : impl;
    }
    q8_job job = {first, NULL, NULL, NULL, rows, a->ne[3] / CPU_Q8_QK};
    bst_status st = alloc_qa(r, &job);
    if (st == BST_OK) {
        for (uint32_t k = 0; k < count; k++)
            jobs[k].a = job.qa;
        st = run_packed(r, &job, jobs, count);
    }
    cpu_work_release(r, job.qa);
    *out_status = st;
    return true;
}
