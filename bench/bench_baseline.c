/*
 * bench/bench_baseline.c — the yardsticks measured in the same run as the ops, because absolute
 * times on a shared machine drift from run to run while ratios to a baseline measured minutes
 * apart hold much better:
 *  - memory bandwidth: a STREAM-style read (the weight-bound ops only read weights) over a buffer
 *    of at least 4x the last-level cache, split over a team of threads as big as the pool;
 *  - a same-size read for every variant of a weight-bound case (bench_ops.c measures it just
 *    before the variant, so that drifting bandwidth moves both alike): the same read of just the
 *    weight's bytes, cache-cold (rotated like the case's weight), with one thread or the pool's
 *    count, whichever is faster — the floor of a GEMV of that size, start-up and hand-off
 *    included — and then a streaming read of all its copies, the bandwidth that variant's
 *    "x bandwidth" is against, and the team's hand-off round trip;
 *  - OpenBLAS cblas_sgemm for every f32 matmul shape, its weight rotated exactly as the case's.
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

/* --- bandwidth and same-size reads --------------------------------------------------------- */

/* A team of threads that reads one copy of a buffer per call, each thread a contiguous slice,
 * rotating through `copies` copies so that a copy smaller than the LLC is still read from
 * memory. The hand-off spins (a call number the workers watch, a done counter the caller
 * watches), so a call of a few microseconds pays a few hundred nanoseconds of synchronization
 * at most: the yardstick must not be slowed by a sleep/wake the measured ops do not pay. */
typedef struct read_team {
    const uint64_t *buf; /* copies back to back, stride_words apart */
    size_t stride_words, words_per_thread;
    uint32_t copies, n;
    bench_read_fn read;
    uint64_t calls;        /* calls made (the caller's alone) */
    _Atomic uint64_t go;   /* call number + 1 for the workers to run; UINT64_MAX: quit */
    _Atomic uint32_t done; /* workers finished with the current call */
    uint64_t sink[64];     /* keeps the sums alive so the reads cannot be optimized away */
} read_team;

typedef struct read_worker {
    read_team *team;
    uint32_t index;
} read_worker;

static void read_slice(read_team *t, uint64_t call, uint32_t index)
{
    const uint64_t *p = t->buf + (size_t)(call % t->copies) * t->stride_words +
                        (size_t)index * t->words_per_thread;
    t->sink[index % 64] += t->read(p, t->words_per_thread);
}

static void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *read_thread(void *arg)
{
    read_worker *w = arg;
    read_team *t = w->team;
    uint64_t seen = 0;
    for (;;) {
        uint64_t go;
        while ((go = atomic_load_explicit(&t->go, memory_order_acquire)) == seen)
            spin_pause();
        if (go == UINT64_MAX)
            return NULL;
        seen = go;
        read_slice(t, go - 1, w->index);
        atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
    }
}

static bst_status read_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)e;
    (void)iteration; /* the team counts its own calls: it outlives one bench_measure */
    read_team *t = user;
    const uint64_t call = t->calls++;
    /* The previous call's workers have all counted themselves, so nobody touches `done`, and
     * nobody reads the team's layout, which the caller may change between calls. */
    atomic_store_explicit(&t->done, 0, memory_order_relaxed);
    atomic_store_explicit(&t->go, call + 1, memory_order_release);
    read_slice(t, call, 0);
    while (atomic_load_explicit(&t->done, memory_order_acquire) < t->n - 1)
        spin_pause();
    return BST_OK;
}

/* The read buffer, on 2 MiB pages where the kernel grants them (MADV_HUGEPAGE): the CPU
 * backend keeps its packed weights on such pages (cpu_packed_slab.c), and with 4 KiB pages one
 * thread reads ~20% slower (TLB misses), which would make the yardstick easier to beat than the
 * machine is. *bytes is rounded up to whole 2 MiB. NULL when out of memory. */
static uint64_t *alloc_read_buffer(size_t *bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (*bytes > SIZE_MAX - huge)
        return NULL;
    *bytes = (*bytes + huge - 1) / huge * huge;
    uint64_t *buf = aligned_alloc(huge, *bytes);
#ifdef MADV_HUGEPAGE
    if (buf)
        (void)madvise(buf, *bytes, MADV_HUGEPAGE); /* a hint: refused is fine */
#endif
    return buf;
}

/* A streaming read for time_reads to time after its rotating one, and the team's hand-off. */
typedef struct stream_request {
    const bench_budget *budget;
    double gbs;        /* out: 0 when not measured */
    double handoff_ns; /* out: 0 when not measured (one thread) */
} stream_request;

/* The team re-laid over its whole buffer (`total` bytes, every copy) as one copy: one call
 * streams all of it. */
static bst_status time_stream(read_team *team, uint64_t total, stream_request *stream,
                              bench_error *e)
{
    const uint64_t per = total / team->n / 128 * 128;
    team->copies = 1;
    team->stride_words = (size_t)(total / 8);
    team->words_per_thread = (size_t)(per / 8);
    bench_timing t;
    bst_status st = bench_measure(stream->budget, read_call, team, &t, e);
    if (st == BST_OK && t.stats.median_ns > 0)
        stream->gbs = (double)(per * team->n) / t.stats.median_ns;
    bench_timing_free(&t);
    return st;
}

/* The team's calls with nothing to read (every slice empty): the caller publishes a call, every
 * worker answers; the median is what one call of the read pays in hand-off. It is measured
 * because it is not a constant of the machine: on the 2-vCPU VMs here it was 80-130 ns in one
 * placement of the vCPUs and ~400 ns in another, minutes or seconds apart, and a small GEMV,
 * which hands off more than the read does, is rated very differently in the two. */
static bst_status time_handoff(read_team *team, stream_request *stream, bench_error *e)
{
    if (team->n < 2)
        return BST_OK;
    team->words_per_thread = 0;
    bench_budget b = *stream->budget;
    b.seconds /= 4;
    bench_timing t;
    bst_status st = bench_measure(&b, read_call, team, &t, e);
    if (st == BST_OK)
        stream->handoff_ns = t.stats.median_ns;
    bench_timing_free(&t);
    return st;
}

/* Times reading `bytes` (rounded down to whole 128-byte blocks per thread) per call with
 * `threads` threads, rotating through `copies` copies. With `stream` set, the same team then
 * times reading all copies at once per call (a streaming read of the whole footprint, like the
 * bandwidth baseline's) into stream->gbs, and its empty calls into stream->handoff_ns. A
 * problem of the machine (memory, threads) leaves *bytes_read 0 and says why in `reason`; only
 * bench_measure's own failures are errors. */
static bst_status time_reads(uint64_t bytes, uint32_t copies, uint32_t threads,
                             const bench_budget *budget, bench_timing *timing,
                             uint64_t *bytes_read, char *reason, size_t reason_size,
                             stream_request *stream, bench_error *e)
{
    *bytes_read = 0;
    memset(timing, 0, sizeof *timing);
    if (threads == 0)
        threads = 1;
    if (threads > 64)
        threads = 64;
    if (copies == 0)
        copies = 1;
    uint64_t per = bytes / threads / 128 * 128;
    uint64_t stride = (per * threads + 4095) / 4096 * 4096; /* each copy page-aligned */
    if (per == 0 || stride > SIZE_MAX / copies) {
        snprintf(reason, reason_size, "%llu bytes over %u threads is too small or large",
                 (unsigned long long)bytes, threads);
        return BST_OK;
    }
    size_t total = (size_t)stride * copies;
    uint64_t *buf = alloc_read_buffer(&total);
    if (!buf) {
        snprintf(reason, reason_size, "cannot allocate %zu bytes", total);
        return BST_OK;
    }
    /* Distinct nonzero values, so no page is the shared zero page. */
    for (size_t i = 0; i < total / 8; i++)
        buf[i] = i * 0x9E3779B97F4A7C15ull;

    read_team team;
    memset(&team, 0, sizeof team);
    team.buf = buf;
    team.stride_words = (size_t)(stride / 8);
    team.words_per_thread = (size_t)(per / 8);
    team.copies = copies;
    team.n = threads;
    const char *loads;
    team.read = bench_read_best(&loads);
    atomic_init(&team.go, 0);
    atomic_init(&team.done, 0);
    pthread_t tid[64];
    read_worker workers[64];
    uint32_t started = 1;
    for (uint32_t i = 1; i < threads; i++) {
        workers[i].team = &team;
        workers[i].index = i;
        if (pthread_create(&tid[i], NULL, read_thread, &workers[i]) != 0)
            break;
        started++;
    }
    bst_status st = BST_OK;
    if (started != threads)
        snprintf(reason, reason_size, "could start only %u of %u threads", started, threads);
    else {
        st = bench_measure(budget, read_call, &team, timing, e);
        if (st == BST_OK && timing->stats.median_ns > 0)
            *bytes_read = per * threads;
        if (st == BST_OK && *bytes_read && stream)
            st = time_stream(&team, stride * copies, stream, e);
        if (st == BST_OK && *bytes_read && stream)
            st = time_handoff(&team, stream, e);
    }
    atomic_store_explicit(&team.go, UINT64_MAX, memory_order_release);
    for (uint32_t i = 1; i < started; i++)
        pthread_join(tid[i], NULL);
    free(buf);
    return st;
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
    uint64_t read = 0;
    bst_status st = time_reads(bytes, 1, threads, budget, &out->timing, &read, out->reason,
                               sizeof out->reason, NULL, e);
    if (st == BST_OK && read) {
        const char *loads;
        (void)bench_read_best(&loads);
        snprintf(out->loads, sizeof out->loads, "%s", loads);
        out->measured = true;
        out->bytes = read;
        out->threads = threads;
        out->gbs = (double)read / out->timing.stats.median_ns;
    }
    return st;
}

bst_status bench_read_measure(uint64_t bytes, uint32_t copies, uint32_t threads,
                              const bench_budget *budget, bench_read *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    out->bytes = bytes;
    out->copies = copies ? copies : 1;
    if (threads == 0)
        threads = 1;
    /* One thread and the run's count: the faster is the yardstick, since below some size the
     * second thread's start costs more than its half of the bytes saves. */
    const uint32_t counts[2] = {1, threads};
    /* With the run's count, the streaming read of the whole footprint too, on half the budget:
     * the bandwidth as it is now, which the one measured at the start of a run may not be. */
    bench_budget half = *budget;
    half.seconds /= 2;
    stream_request stream = {&half, 0.0, 0.0};
    for (uint32_t c = 0; c < (threads > 1 ? 2u : 1u); c++) {
        uint32_t n = counts[c];
        bench_timing t;
        uint64_t read = 0;
        char why[256] = "";
        bst_status st = time_reads(bytes, out->copies, n, budget, &t, &read, why, sizeof why,
                                   n == threads ? &stream : NULL, e);
        if (st != BST_OK) {
            bench_timing_free(&t);
            return st;
        }
        double gbs = read ? (double)read / t.stats.median_ns : 0.0;
        if (read && gbs > out->gbs) {
            bench_timing_free(&out->timing);
            out->timing = t;
            out->threads = n;
            out->gbs = gbs;
            out->measured = true;
        } else {
            bench_timing_free(&t);
            if (!out->measured)
                snprintf(out->reason, sizeof out->reason, "%s", why);
        }
    }
    if (out->measured) {
        const char *loads;
        (void)bench_read_best(&loads);
        snprintf(out->loads, sizeof out->loads, "%s", loads);
        out->reason[0] = '\0';
        out->stream_gbs = stream.gbs;
        out->handoff_ns = stream.handoff_ns;
    }
    return BST_OK;
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
