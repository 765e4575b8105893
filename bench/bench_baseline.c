/*
 * bench/bench_baseline.c — the yardsticks measured in the same run as the ops, because absolute
 * times on a shared machine drift from run to run while ratios to a baseline measured minutes
 * apart hold much better: the reads (memory bandwidth and same-size reads) are in
 * bench_read_team.c; here OpenBLAS cblas_sgemm for every f32 matmul shape, its weight rotated
 * exactly as the case's, and the list of baselines.
 */
#include "bench.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifdef BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* --- sgemm --------------------------------------------------------------------------------- */

bool bench_sgemm_available(char *library, size_t size)
{
#ifdef BENCH_HAVE_OPENBLAS
    const char *cfg = openblas_get_config();
    const char *core = openblas_get_corename();
    snprintf(library, size, "%s (core %s)", cfg ? cfg : "OpenBLAS", core ? core : "?");
    return true;
#else
    snprintf(library, size, "OpenBLAS was not found when this bastion was built");
    return false;
#endif
}

#ifdef BENCH_HAVE_OPENBLAS
typedef struct sgemm_ctx {
    int m, n, k;
    const float *a;
    float **b;
    uint32_t copies;
    float *c;
} sgemm_ctx;

static bst_status sgemm_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)e;
    sgemm_ctx *s = user;
    const float *b = s->b[iteration % s->copies];
    if (s->n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, s->m, s->k, 1.0f, b, s->k, s->a, 1, 0.0f, s->c,
                    1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->n, s->m, s->k, 1.0f, s->a, s->k,
                    b, s->k, 0.0f, s->c, s->m);
    return BST_OK;
}

static float *alloc_floats(uint64_t count, uint64_t seed)
{
    if (count > SIZE_MAX / sizeof(float))
        return NULL;
    float *p = aligned_alloc(64, ((size_t)count * sizeof(float) + 63) / 64 * 64);
    if (!p)
        return NULL;
    uint64_t s = seed;
    for (uint64_t i = 0; i < count; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(s >> 40) / 8388608.0 - 1.0);
    }
    return p;
}
#endif

bst_status bench_sgemm_measure(int64_t m, int64_t n, int64_t k, uint32_t copies, uint32_t threads,
                               const bench_budget *budget, bench_sgemm *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    out->m = m;
    out->n = n;
    out->k = k;
    out->copies = copies ? copies : 1;
    snprintf(out->routine, sizeof out->routine, "%s", n == 1 ? "sgemv" : "sgemm");
#ifdef BENCH_HAVE_OPENBLAS
    if (m <= 0 || n <= 0 || k <= 0 || m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return bench_fail(e, BST_ERR_INVALID_ARG, "sgemm %lldx%lldx%lld: dims out of range",
                          (long long)m, (long long)n, (long long)k);
    openblas_set_num_threads(threads ? (int)threads : 1);
    sgemm_ctx s;
    memset(&s, 0, sizeof s);
    s.m = (int)m;
    s.n = (int)n;
    s.k = (int)k;
    s.copies = out->copies;
    bst_status st = BST_OK;
    s.b = calloc(s.copies, sizeof *s.b);
    s.a = alloc_floats((uint64_t)n * (uint64_t)k, 1);
    s.c = alloc_floats((uint64_t)n * (uint64_t)m, 2);
    bool ok = s.b && s.a && s.c;
    for (uint32_t i = 0; ok && i < s.copies; i++)
        ok = (s.b[i] = alloc_floats((uint64_t)m * (uint64_t)k, 3 + i)) != NULL;
    if (!ok)
        st = bench_fail(e, BST_ERR_OUT_OF_MEMORY, "sgemm %lldx%lldx%lld: out of memory",
                        (long long)m, (long long)n, (long long)k);
    else
        st = bench_measure(budget, sgemm_call, &s, &out->timing, e);
    if (st == BST_OK && out->timing.stats.median_ns > 0)
        out->gflops = 2.0 * (double)m * (double)n * (double)k / out->timing.stats.median_ns;
    for (uint32_t i = 0; s.b && i < s.copies; i++)
        free(s.b[i]);
    free(s.b);
    free((void *)s.a);
    free(s.c);
    return st;
#else
    (void)threads;
    (void)budget;
    return bench_fail(e, BST_ERR_UNSUPPORTED, "sgemm baseline: OpenBLAS not built in");
#endif
}

const bench_sgemm *bench_baselines_find_sgemm(const bench_baselines *b, int64_t m, int64_t n,
                                              int64_t k)
{
    for (size_t i = 0; i < b->n_sgemm; i++)
        if (b->sgemm[i].m == m && b->sgemm[i].n == n && b->sgemm[i].k == k)
            return &b->sgemm[i];
    return NULL;
}

void bench_baselines_free(bench_baselines *b)
{
    if (!b)
        return;
    bench_timing_free(&b->bandwidth.timing);
    for (size_t i = 0; i < b->n_sgemm; i++)
        bench_timing_free(&b->sgemm[i].timing);
    free(b->sgemm);
    for (size_t i = 0; i < b->n_reads; i++)
        bench_timing_free(&b->reads[i].timing);
    free(b->reads);
    memset(b, 0, sizeof *b);
}

static bst_status add_sgemm(bench_baselines *b, const bench_sgemm *s, bench_error *e)
{
    if (!bench_grow((void **)&b->sgemm, &b->cap_sgemm, b->n_sgemm + 1, sizeof *b->sgemm))
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "baselines: out of memory");
    b->sgemm[b->n_sgemm++] = *s;
    return BST_OK;
}

bst_status bench_baselines_add_read(bench_baselines *b, const bench_read *r, bench_error *e)
{
    if (!bench_grow((void **)&b->reads, &b->cap_reads, b->n_reads + 1, sizeof *b->reads))
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "baselines: out of memory");
    b->reads[b->n_reads++] = *r;
    return BST_OK;
}

bst_status bench_run_baselines(const bench_case_list *cases, const bench_ops_options *o,
                               const bench_machine *m, bench_baselines *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    bench_budget bb = o->budget;
    if (bb.min_reps < 5)
        bb.min_reps = 5;
    bst_status st = bench_bandwidth_measure(bench_bandwidth_bytes(m->llc_bytes), o->threads, &bb,
                                            &out->bandwidth, e);
    if (st != BST_OK)
        return st;

    out->sgemm_available = bench_sgemm_available(out->sgemm_library, sizeof out->sgemm_library);
    if (!out->sgemm_available)
        return BST_OK;
    bool ran = false;
    for (size_t i = 0; i < cases->n; i++) {
        const bench_case *c = &cases->items[i];
        if (c->op != BST_OP_MATMUL || c->dtype != BST_DTYPE_F32)
            continue;
        if (bench_baselines_find_sgemm(out, c->dims[0], c->dims[1], c->dims[2]))
            continue;
        uint64_t wbytes = (uint64_t)c->dims[0] * (uint64_t)c->dims[2] * 4u;
        bench_sgemm s;
        st = bench_sgemm_measure(c->dims[0], c->dims[1], c->dims[2],
                                 bench_cold_copies(wbytes, o->llc_bytes), o->threads, &o->budget,
                                 &s, e);
        if (st != BST_OK) {
            bench_timing_free(&s.timing);
            return st;
        }
        st = add_sgemm(out, &s, e);
        if (st != BST_OK) {
            bench_timing_free(&s.timing);
            return st;
        }
        ran = true;
    }
    if (ran) {
        /* OpenBLAS's idle threads keep polling for a while after a call; let them go to sleep
         * before the ops run on the same cores. */
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return BST_OK;
}
