/*
 * The packed weight copy (cpu_packed.h): when to make one, the repack and its inverse, and the
 * portable kernel that states what the SIMD ones compute.
 */
#include "cpu_backend.h"
#include "cpu_isa.h"
#include "cpu_packed.h"

#include <string.h>

enum { Q4_0_BYTES = 18, Q4_1_BYTES = 20, Q8_0_BYTES = 34 };

/* Activation rows up to which the maddubs kernel (cpu_packed_avx2.c) beats the f32 GEMM. */
#define PACKED_AVX2_MAX_ROWS 128

/* The AVX-512 VNNI kernels for few and many activation rows. */
#define PACKED_GEMV_AVX512 cpu_packed_gemv_avx512
#define PACKED_GEMM_AVX512 cpu_packed_gemm_avx512

static size_t block_bytes(uint32_t dtype)
{
    return dtype == BST_DTYPE_Q4_0 ? Q4_0_BYTES : dtype == BST_DTYPE_Q4_1 ? Q4_1_BYTES : Q8_0_BYTES;
}

/* Where a block's quant bytes start (after d, and m for q4_1). */
static size_t quant_offset(uint32_t dtype) { return dtype == BST_DTYPE_Q4_1 ? 4 : 2; }

bool cpu_packed_wanted(uint32_t dtype, uint32_t rank, const int64_t *shape)
{
    if (dtype != BST_DTYPE_Q4_0 && dtype != BST_DTYPE_Q4_1 && dtype != BST_DTYPE_Q8_0)
        return false;
    if (rank != 2 || shape[0] < 1 || shape[1] < CPU_Q8_QK || shape[1] % CPU_Q8_QK)
        return false;
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    if (cpu_isa_mask() & CPU_ISA_AVX512VNNI)
        return true;
#endif
#ifdef CPU_HAVE_AVX2_KERNELS
    return (cpu_isa_mask() & CPU_ISA_AVX2) != 0;
#else
    return false;
#endif
}

bst_status cpu_packed_create(uint32_t dtype, int64_t rows, int64_t k, const uint8_t *native,
                             size_t row_bytes, cpu_packed *p)
{
    memset(p, 0, sizeof *p);
    if ((dtype != BST_DTYPE_Q4_0 && dtype != BST_DTYPE_Q4_1 && dtype != BST_DTYPE_Q8_0) ||
        rows < 1 || k < CPU_Q8_QK || k % CPU_Q8_QK) {
        cpu_host->set_error("cpu: cannot pack a %s weight of %lld x %lld", cpu_dtype_name(dtype),
                            (long long)rows, (long long)k);
        return BST_ERR_INVALID_ARG;
    }
    const int64_t nb = k / CPU_Q8_QK, groups = (rows + CPU_PACK_ROWS - 1) / CPU_PACK_ROWS;
    const size_t qbytes = dtype == BST_DTYPE_Q8_0 ? 512 : 256;
    /* A multiple of 64: tiles and lines stay 64-byte aligned. */
    const size_t group_bytes = (size_t)(nb + 1) / 2 * cpu_packed_pair_bytes(qbytes, dtype);
    size_t total;
    if (__builtin_mul_overflow(group_bytes, (size_t)groups, &total)) {
        cpu_host->set_error("cpu: a packed %lld x %lld weight overflows", (long long)rows,
                            (long long)k);
        return BST_ERR_OVERFLOW;
    }
    void *slab = NULL;
    uint8_t *data = cpu_packed_slab_alloc(total, &slab);
    if (!data) {
        cpu_host->set_error("cpu: out of memory packing a %zu-byte weight", total);
        return BST_ERR_OUT_OF_MEMORY;
    }
    /* Fresh slab memory is zero: padding rows keep scale 0. */
    *p = (cpu_packed){dtype, rows, nb, groups, qbytes, group_bytes, data, row_bytes, slab};

    const size_t bb = block_bytes(dtype), qo = quant_offset(dtype), vecs = qbytes / 64;
    const uint32_t flip = dtype == BST_DTYPE_Q8_0 ? 0x80808080u : 0; /* q8_0 stored as w + 128 */
    for (int64_t n = 0; n < rows; n++) {
        const int64_t g = n / CPU_PACK_ROWS, r = n % CPU_PACK_ROWS;
        const uint8_t *src = native + (size_t)n * row_bytes;
        for (int64_t kb = 0; kb < nb; kb++, src += bb) {
            /* The accessors' pointers, into memory this function owns. */
            uint8_t *tile = (uint8_t *)(uintptr_t)cpu_packed_tile(p, g, kb) + (size_t)r * 4;
            uint16_t *d = (uint16_t *)(uintptr_t)cpu_packed_scales(p, g, kb);
            for (size_t v = 0; v < vecs; v++) { /* 4 bytes at a time: one load, one store */
                uint32_t word;
                memcpy(&word, src + qo + 4 * v, 4);
                word ^= flip;
                memcpy(tile + v * 64, &word, 4);
            }
            memcpy(&d[r], src, 2);
            if (dtype == BST_DTYPE_Q4_1)
                memcpy((uint16_t *)(uintptr_t)cpu_packed_mins(p, g, kb) + r, src + 2, 2);
        }
    }
    return BST_OK;
}

void cpu_packed_release(cpu_packed *p)
{
    if (p && p->slab)
        cpu_packed_slab_release(p->slab);
}

void cpu_packed_native_row(const cpu_packed *p, int64_t row, uint8_t *dst)
{
    const int64_t g = row / CPU_PACK_ROWS, r = row % CPU_PACK_ROWS;
    const size_t bb = block_bytes(p->dtype), qo = quant_offset(p->dtype), vecs = p->qbytes / 64;
    for (int64_t kb = 0; kb < p->nb; kb++, dst += bb) {
        const uint8_t *tile = cpu_packed_tile(p, g, kb);
        memcpy(dst, &cpu_packed_scales(p, g, kb)[r], 2);
        if (p->dtype == BST_DTYPE_Q4_1)
            memcpy(dst + 2, &cpu_packed_mins(p, g, kb)[r], 2);
        for (size_t v = 0; v < vecs; v++)
            for (size_t i = 0; i < 4; i++) {
                const uint8_t b = tile[v * 64 + (size_t)r * 4 + i];
                dst[qo + 4 * v + i] = p->dtype == BST_DTYPE_Q8_0 ? b ^ 0x80u : b;
            }
    }
}

/* Element e of activation block b in units of its d. */
static inline int32_t act(const cpu_q8_block *b, int e) { return 256 * (int32_t)b->hi[e] + b->lo[e]; }

void cpu_packed_gemv_scalar(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                            int64_t m_count, float *out, int64_t ldo)
{
    const size_t vecs = p->qbytes / 64;
    for (int64_t g = g0; g < g1; g++) {
        for (int64_t r = 0; r < CPU_PACK_ROWS && g * CPU_PACK_ROWS + r < p->rows; r++) {
            for (int64_t j = 0; j < m_count; j++) {
                const cpu_q8_block *ar = a + j * p->nb;
                float acc = 0.0f;
                for (int64_t kb = 0; kb < p->nb; kb++) {
                    const uint8_t *tile = cpu_packed_tile(p, g, kb);
                    int32_t sum = 0;
                    for (size_t v = 0; v < vecs; v++)
                        for (int i = 0; i < 4; i++) {
                            const uint8_t b = tile[v * 64 + (size_t)r * 4 + (size_t)i];
                            const int e = 4 * (int)v + i;
                            if (p->dtype == BST_DTYPE_Q8_0) {
                                sum += (int32_t)b * act(&ar[kb], e);
                            } else {
                                sum += (int32_t)(b & 0x0f) * act(&ar[kb], e);
                                sum += (int32_t)(b >> 4) * act(&ar[kb], e + CPU_Q8_QK / 2);
                            }
                        }
                    const uint16_t *d = cpu_packed_scales(p, g, kb) + r;
                    const float dw = cpu_q8_half((const uint8_t *)d);
                    /* q4_0: (q - 8); q8_0: (u - 128); q4_1: + m * s_a. */
                    switch (p->dtype) {
                    case BST_DTYPE_Q4_0: acc += dw * (ar[kb].d * (float)sum - 8.0f * ar[kb].s); break;
                    case BST_DTYPE_Q8_0: acc += dw * (ar[kb].d * (float)sum - 128.0f * ar[kb].s); break;
                    default:
                        acc += dw * ar[kb].d * (float)sum +
                               cpu_q8_half((const uint8_t *)(d + 32)) * ar[kb].s; /* m */
                    }
                }
                out[j * ldo + g * CPU_PACK_ROWS + r] = acc;
            }
        }
    }
}

cpu_packed_gemv_fn cpu_packed_kernel(const cpu_q8dot_impl *impl, int64_t m_count)
{
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    if (impl == &cpu_q8dot_avx512vnni)
        return m_count <= CPU_Q8_MAX_ROWS ? PACKED_GEMV_AVX512 : PACKED_GEMM_AVX512;
#endif
#ifdef CPU_HAVE_AVX2_KERNELS
    /* The same integer dots either way, with AVX-VNNI where the machine has it; a prompt's rows
     * go through it 4 at a time, group by group. Against the native loops and gemm_avx2's f32
     * GEMM of the dequantized weight (AVX-512 machine capped by BASTION_CPU_ISA), q4_1 1536 x M
     * x 576: with AVX-VNNI M 8 0.39, 64 0.37, 512 0.71 of the time (4096 x 64 x 4096: 0.36);
     * with maddubs M 8 0.74, 64 0.75, 128 1.02-1.11, 256 1.19-1.27: there the f32 GEMM keeps
     * the longer prompts. */
    if (impl == &cpu_q8dot_avx2) {
#ifdef CPU_HAVE_AVXVNNI_KERNELS
        if (cpu_isa_mask() & CPU_ISA_AVXVNNI)
            return cpu_packed_gemv_avxvnni;
#endif
        return m_count < PACKED_AVX2_MAX_ROWS ? cpu_packed_gemv_avx2 : NULL;
    }
#endif
    (void)impl;
    (void)m_count;
    return NULL;
}

/* What a share needs, in one 64-byte-aligned block on the caller's stack that the workers get as
 * parallel_for's argument, the jobs copied into it: a worker reads each line the caller wrote
 * for this call from the caller's core, one after another when each is found through the last,
 * and the chain it used to follow (the trampoline's record, the node's run record, its aux, the
 * job array) put three such transfers before its first weight request. Lone q4_1 192 x 576 on
 * two threads, vCPUs near (80-130 ns round trip), alternating rounds: medians 2.26-2.28 ->
 * 2.20-2.21 us in four, the same within the noise in eight more; minimums ~1.92 -> ~1.90 us. */
#define PACKED_INLINE_JOBS 3 /* a decode step's q/k/v group */

typedef struct packed_group_job {
    const cpu_packed_job *jobs; /* = inline_jobs when count <= PACKED_INLINE_JOBS */
    uint32_t count;
    uint32_t n_workers; /* the run's, for the share a worker past it must refuse */
    int64_t groups;     /* of all jobs */
    int64_t parts;      /* shares: one per worker */
    int64_t lead;       /* groups share 0 has over the others */
    cpu_once *first;
    cpu_run *r;
    cpu_packed_job inline_jobs[PACKED_INLINE_JOBS];
} packed_group_job;

/* Global groups [begin, end) of the jobs laid end to end. */
static void packed_groups(const packed_group_job *g, int64_t begin, int64_t end)
{
    int64_t first = 0;
    for (uint32_t k = 0; k < g->count && begin < end; k++) {
        const cpu_packed_job *job = &g->jobs[k];
        const int64_t last = first + job->p->groups;
        if (begin < last) {
            const int64_t stop = end < last ? end : last;
            job->fn(job->p, begin - first, stop - first, job->a, job->m_count, job->out,
                    job->ldo);
            begin = stop;
        }
        first = last;
    }
}

/* First group of share i: share 0 is `lead` groups longer than the others, which split the rest
 * evenly (share 0 keeps any remainder). */
static int64_t share_begin(const packed_group_job *g, int64_t i)
{
    if (i <= 0)
        return 0;
    if (i >= g->parts)
        return g->groups;
    return g->lead + ((g->groups - g->lead) * i + g->parts - 1) / g->parts;
}

/* Prefetches the start of global groups [begin, end)'s stream (cpu_packed_prefetch). */
static void prefetch_groups(const packed_group_job *g, int64_t begin, int64_t end)
{
    int64_t first = 0;
    for (uint32_t k = 0; k < g->count; k++) {
        const int64_t last = first + g->jobs[k].p->groups;
        if (begin < last) {
            cpu_packed_prefetch(g->jobs[k].p, begin - first, (end < last ? end : last) - first);
            return;
        }
        first = last;
    }
}

/* A share of the section (bst_host_api.parallel_for's callback, `arg` the caller's
 * packed_group_job). */
static void packed_shares(void *arg, int64_t begin, int64_t end, uint32_t w)
{
    const packed_group_job *g = arg;
    if (w >= g->n_workers) {
        cpu_fail_async(g->r, BST_ERR_INTERNAL);
        return;
    }
    const int64_t g0 = share_begin(g, begin), g1 = share_begin(g, end);
    if (g->first) {
        prefetch_groups(g, g0, g1);
        cpu_once_run(g->first, g->r, begin, w);
    }
    packed_groups(g, g0, g1);
}

void cpu_packed_prefetch(const cpu_packed *p, int64_t g0, int64_t g1)
{
    const uint8_t *begin = cpu_packed_group(p, g0);
    size_t len = (size_t)(g1 - g0) * p->group_bytes;
    len = len < CPU_PACKED_PREFETCH_BYTES ? len : CPU_PACKED_PREFETCH_BYTES;
    for (size_t at = 0; at < len; at += 64)
        __builtin_prefetch(begin + at, 0, 3);
}

/* Weight bytes the caller's share has over each worker's. The caller claims the first share as
 * soon as it has published the job; a worker spinning for it starts ~0.15-0.6 us later (seeing
 * the job and then each pointer of it is a cache-line transfer between cores), and its
 * completion takes another ~0.1-0.4 us to reach the caller, so with even shares the caller sat
 * idle at the end of every small GEMV (traced: q4_1 192 x 576 on two threads, caller done at
 * 1.52 us, worker at 1.83 us, call 1.93 us). ~10 KiB is what one thread streams in ~0.4 us.
 * Rechecked once the activation was quantized inside the section (cpu_once; a quiet machine's
 * worker then starts ~0.08 us after the publish): per 576 x 576 decode node of the default model
 * 4.06-4.41 us with 10 KiB, 4.11-4.54 with 4 KiB, 4.21-4.49 with none. */
#define PACKED_CALLER_LEAD_BYTES 10240

void cpu_packed_run_group(cpu_run *r, const cpu_packed_job *jobs, uint32_t count,
                          cpu_once *first)
{
    int64_t groups = 0;
    uint64_t bytes = 0;
    bool streaming = true; /* GEMVs, bound by the weight stream */
    for (uint32_t k = 0; k < count; k++) {
        groups += jobs[k].p->groups;
        bytes += (uint64_t)jobs[k].p->groups * jobs[k].p->group_bytes;
        streaming = streaming && jobs[k].m_count <= CPU_Q8_MAX_ROWS;
    }
    const int64_t parts = r->n_workers > 1 ? r->n_workers : 1;
    /* Rounded to whole groups of the jobs' mean size; at most what leaves the others nothing.
     * A prompt's GEMM spends far longer per group than the hand-off costs: even shares there. */
    const uint64_t mean = groups > 0 ? bytes / (uint64_t)groups : 1;
    int64_t lead = mean > 0 ? (int64_t)((PACKED_CALLER_LEAD_BYTES + mean / 2) / mean) : 0;
    lead = parts > 1 && streaming ? (lead < groups ? lead : groups) : 0;
    _Alignas(64) packed_group_job g = {jobs, count, r->n_workers, groups, parts, lead, first, r,
                                       {{0}}};
    if (parts <= 1 || share_begin(&g, 1) >= groups) { /* the workers' shares are empty */
        if (first) {
            prefetch_groups(&g, 0, groups);
            cpu_once_run(first, r, 0, 0);
        }
        packed_groups(&g, 0, groups);
        return;
    }
    if (count <= PACKED_INLINE_JOBS) {
        memcpy(g.inline_jobs, jobs, count * sizeof *jobs);
        g.jobs = g.inline_jobs;
    }
    cpu_host->parallel_for(parts, 1, packed_shares, &g); /* parts > 1: the host has a pool */
}

bool cpu_rows_uniform(const cpu_tensor *t, float **base, int64_t *ld)
{
    if (t->dtype != BST_DTYPE_F32 || t->nb[3] != (int64_t)sizeof(float) || t->nb[2] % 4)
        return false;
    /* Flattened rows are evenly spaced when each outer dim steps over the whole inner one
     * (or has extent 1). */
    if ((t->ne[1] > 1 && t->nb[1] != t->ne[2] * t->nb[2]) ||
        (t->ne[0] > 1 && t->nb[0] != t->ne[1] * t->ne[2] * t->nb[2]))
        return false;
    *base = (float *)(void *)t->data;
    *ld = t->nb[2] / (int64_t)sizeof(float);
    return true;
}
