/*
 * bench/bench_baseline.c — the yardsticks measured in the same run as the ops, because absolute
 * times on a shared machine drift from run to run while ratios to a baseline measured minutes
 * apart hold much better:
 *  - memory bandwidth: a STREAM-style read (the weight-bound ops only read weights) over a buffer
 *    of at least 4x the last-level cache, split over a team of threads as big as the pool;
 *  - OpenBLAS cblas_sgemm for every f32 matmul shape, its weight rotated exactly as the case's.
 */
#include "bench.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* --- bandwidth ----------------------------------------------------------------------------- */

typedef struct bw_team {
    const uint64_t *buf;
    size_t words_per_thread;
    uint32_t n;
    pthread_barrier_t start, done;
    /* The gate a new thread waits at until the whole team exists: 0 wait, 1 go, 2 abort. A
     * partial team (a failed pthread_create) must never reach a barrier sized for all. */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int gate;
    bool quit;
    uint64_t sink[64]; /* keeps the sums alive so the reads cannot be optimized away */
} bw_team;

typedef struct bw_worker {
    bw_team *team;
    uint32_t index;
} bw_worker;

/* Four independent 32-byte sums (GCC/clang vector extension: native AVX where the build has
 * it, pairs of SSE2 adds otherwise): enough loads in flight that a core is limited by memory,
 * not by the add latency. Integer adds, so no fast-math is needed to keep them independent. */
typedef uint64_t u64x4 __attribute__((vector_size(32), aligned(32)));

static uint64_t read_words(const uint64_t *p, size_t n)
{
    const u64x4 *q = (const u64x4 *)(const void *)p;
    u64x4 a = {0, 0, 0, 0}, b = a, c = a, d = a;
    size_t blocks = n / 16; /* 16 words = 4 vectors */
    for (size_t i = 0; i < blocks; i++) {
        a += q[4 * i];
        b += q[4 * i + 1];
        c += q[4 * i + 2];
        d += q[4 * i + 3];
    }
    a += b + c + d;
    return a[0] ^ a[1] ^ a[2] ^ a[3];
}

static void read_slice(bw_team *t, uint32_t index)
{
    const uint64_t *p = t->buf + (size_t)index * t->words_per_thread;
    t->sink[index % 64] += read_words(p, t->words_per_thread);
}

static void *bw_thread(void *arg)
{
    bw_worker *w = arg;
    bw_team *t = w->team;
    pthread_mutex_lock(&t->lock);
    while (t->gate == 0)
        pthread_cond_wait(&t->cv, &t->lock);
    int gate = t->gate;
    pthread_mutex_unlock(&t->lock);
    if (gate != 1)
        return NULL;
    for (;;) {
        pthread_barrier_wait(&t->start);
        if (__atomic_load_n(&t->quit, __ATOMIC_ACQUIRE))
            break;
        read_slice(t, w->index);
        pthread_barrier_wait(&t->done);
    }
    return NULL;
}

static bst_status bw_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)iteration;
    (void)e;
    bw_team *t = user;
    pthread_barrier_wait(&t->start);
    read_slice(t, 0);
    pthread_barrier_wait(&t->done);
    return BST_OK;
}

uint64_t bench_bandwidth_bytes(uint64_t llc_bytes)
{
    /* At least 4x the LLC so that no level of cache holds a meaningful part of it. */
    uint64_t bytes = llc_bytes ? 4 * llc_bytes : (UINT64_C(256) << 20);
    return bytes < (UINT64_C(64) << 20) ? UINT64_C(64) << 20 : bytes;
}

bst_status bench_bandwidth_measure(uint64_t bytes, uint32_t threads, const bench_budget *budget,
                                   bench_bandwidth *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    if (threads == 0)
        threads = 1;
    if (threads > 64)
        threads = 64;
    uint64_t per = bytes / threads / 128 * 128; /* whole 128-byte blocks per thread */
    if (per == 0 || per > SIZE_MAX / threads) {
        snprintf(out->reason, sizeof out->reason, "buffer of %llu bytes is too small or large",
                 (unsigned long long)bytes);
        return BST_OK;
    }
    size_t total = (size_t)(per * threads);
    uint64_t *buf = aligned_alloc(64, total);
    if (!buf) {
        snprintf(out->reason, sizeof out->reason, "cannot allocate %zu bytes", total);
        return BST_OK;
    }
    /* Distinct nonzero values, so no page is the shared zero page. */
    for (size_t i = 0; i < total / 8; i++)
        buf[i] = i * 0x9E3779B97F4A7C15ull;

    bw_team team;
    memset(&team, 0, sizeof team);
    team.buf = buf;
    team.words_per_thread = (size_t)(per / 8);
    team.n = threads;
    pthread_barrier_init(&team.start, NULL, threads);
    pthread_barrier_init(&team.done, NULL, threads);
    pthread_mutex_init(&team.lock, NULL);
    pthread_cond_init(&team.cv, NULL);
    pthread_t tid[64];
    bw_worker workers[64];
    uint32_t started = 1;
    for (uint32_t i = 1; i < threads; i++) {
        workers[i].team = &team;
        workers[i].index = i;
        if (pthread_create(&tid[i], NULL, bw_thread, &workers[i]) != 0)
            break;
        started++;
    }
    bool full = started == threads;
    pthread_mutex_lock(&team.lock);
    team.gate = full ? 1 : 2;
    pthread_cond_broadcast(&team.cv);
    pthread_mutex_unlock(&team.lock);

    bst_status st = BST_OK;
    if (!full) {
        snprintf(out->reason, sizeof out->reason, "could start only %u of %u threads", started,
                 threads);
    } else {
        st = bench_measure(budget, bw_call, &team, &out->timing, e);
        if (st == BST_OK && out->timing.stats.median_ns > 0) {
            out->measured = true;
            out->bytes = (uint64_t)total;
            out->threads = threads;
            out->gbs = (double)total / out->timing.stats.median_ns;
        }
        /* The workers wait at the start barrier: one more round with quit set releases them. */
        __atomic_store_n(&team.quit, true, __ATOMIC_RELEASE);
        pthread_barrier_wait(&team.start);
    }
    for (uint32_t i = 1; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&team.start);
    pthread_barrier_destroy(&team.done);
    pthread_mutex_destroy(&team.lock);
    pthread_cond_destroy(&team.cv);
    free(buf);
    return st;
}

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
    memset(b, 0, sizeof *b);
}

static bst_status add_sgemm(bench_baselines *b, const bench_sgemm *s, bench_error *e)
{
    if (b->n_sgemm == b->cap_sgemm) {
        size_t grown = b->cap_sgemm ? b->cap_sgemm * 2 : 8;
        bench_sgemm *p = realloc(b->sgemm, grown * sizeof *p);
        if (!p)
            return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "baselines: out of memory");
        b->sgemm = p;
        b->cap_sgemm = grown;
    }
    b->sgemm[b->n_sgemm++] = *s;
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
