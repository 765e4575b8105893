/*
 * bench/bench_read_team.c — the read yardsticks (bench_baseline.c has the others):
 *  - memory bandwidth: a STREAM-style read (the weight-bound ops only read weights) over a buffer
 *    of at least 4x the last-level cache, split over a team of threads as big as the pool;
 *  - a same-size read for every variant of a weight-bound case: the same read of just the
 *    weight's bytes, cache-cold (rotated like the case's weight), with one thread or the pool's
 *    count, whichever is faster — the floor of a GEMV of that size, start-up and hand-off
 *    included — and then a streaming read of all its copies, the bandwidth that variant's
 *    "x bandwidth" is against, and the team's hand-off round trip. bench_ops.c keeps the read
 *    open while it times the variant and alternates blocks of the two (bench_reader), because
 *    this machine's memory flips between states ~1.5x apart, sometimes within a second: a read
 *    timed before the variant rated it against a state its own calls may never have seen.
 */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_TEAM 64

/* Which part of the buffer one call reads: each of `threads` threads a contiguous slice of
 * words_per_thread words of copy (call % copies), copies stride_words apart. One thread reads
 * alone, with no hand-off. */
typedef struct read_layout {
    size_t stride_words, words_per_thread;
    uint32_t copies, threads;
} read_layout;

/* A team of threads that reads one copy of a buffer per call, rotating through the copies so that
 * a copy smaller than the LLC is still read from memory. The hand-off spins (a call number the
 * workers watch, a done counter the caller watches), so a call of a few microseconds pays a few
 * hundred nanoseconds of synchronization at most: the yardstick must not be slowed by a
 * sleep/wake the measured ops do not pay. Between blocks of calls the workers are parked
 * (asleep on a condition variable), so that they take no core from an op timed meanwhile. */
typedef struct read_team {
    uint64_t *buf;
    size_t buf_words;
    read_layout at; /* what the next call reads; the caller changes it only between calls */
    uint32_t n;     /* threads, the caller included */
    bench_read_fn read;
    uint64_t calls;        /* calls made (the caller's alone): the rotation */
    _Atomic uint64_t go;   /* call number + 1 for the workers to run; UINT64_MAX: quit */
    _Atomic uint32_t done; /* workers finished with the current call */
    _Atomic bool parked;
    pthread_mutex_t lock; /* with `wake`: parked workers sleep on it */
    pthread_cond_t wake;
    pthread_t tid[MAX_TEAM];
    struct read_worker {
        struct read_team *team;
        uint32_t index;
    } workers[MAX_TEAM];
    uint32_t started; /* threads running, the caller included */
    uint64_t sink[MAX_TEAM]; /* keeps the sums alive so the reads cannot be optimized away */
} read_team;

static void read_slice(read_team *t, uint64_t call, uint32_t index)
{
    const uint64_t *p = t->buf + (size_t)(call % t->at.copies) * t->at.stride_words +
                        (size_t)index * t->at.words_per_thread;
    t->sink[index] += t->read(p, t->at.words_per_thread);
}

static void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits for the next call number after `seen`, asleep while the team is parked. */
static uint64_t next_call(read_team *t, uint64_t seen)
{
    uint64_t go;
    while ((go = atomic_load_explicit(&t->go, memory_order_acquire)) == seen) {
        if (!atomic_load_explicit(&t->parked, memory_order_acquire)) {
            spin_pause();
            continue;
        }
        pthread_mutex_lock(&t->lock);
        while (atomic_load_explicit(&t->parked, memory_order_acquire) &&
               atomic_load_explicit(&t->go, memory_order_acquire) == seen)
            pthread_cond_wait(&t->wake, &t->lock);
        pthread_mutex_unlock(&t->lock);
    }
    return go;
}

static void *read_thread(void *arg)
{
    struct read_worker *w = arg;
    read_team *t = w->team;
    uint64_t seen = 0;
    for (;;) {
        uint64_t go = next_call(t, seen);
        if (go == UINT64_MAX)
            return NULL;
        seen = go;
        read_slice(t, go - 1, w->index);
        atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
    }
}

static void set_parked(read_team *t, bool parked)
{
    pthread_mutex_lock(&t->lock);
    atomic_store_explicit(&t->parked, parked, memory_order_release);
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
}

/* One call of the current layout (the team unparked when it has more than one thread). */
static bst_status read_call(void *user, uint64_t iteration, bench_error *e)
{
    (void)e;
    (void)iteration; /* the team counts its own calls: it outlives one bench_measure */
    read_team *t = user;
    const uint64_t call = t->calls++;
    if (t->at.threads <= 1) {
        read_slice(t, call, 0);
        return BST_OK;
    }
    /* The previous call's workers have all counted themselves, so nobody touches `done`, and
     * nobody reads the layout, which the caller may change between calls. */
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

/* The layout reading `bytes` (rounded down to whole 128-byte blocks per thread) per call with
 * `threads` threads, copies page-aligned; false when that is no block per thread or too big. */
static bool layout_for(uint64_t bytes, uint32_t copies, uint32_t threads, read_layout *out)
{
    const uint64_t per = bytes / threads / 128 * 128;
    const uint64_t stride = (per * threads + 4095) / 4096 * 4096;
    if (per == 0 || stride > SIZE_MAX / copies)
        return false;
    *out = (read_layout){(size_t)(stride / 8), (size_t)(per / 8), copies, threads};
    return true;
}

static uint64_t layout_bytes(const read_layout *l)
{
    return (uint64_t)l->words_per_thread * 8 * l->threads;
}

static void team_close(read_team *t)
{
    if (!t->buf)
        return;
    atomic_store_explicit(&t->go, UINT64_MAX, memory_order_release);
    set_parked(t, false);
    for (uint32_t i = 1; i < t->started; i++)
        pthread_join(t->tid[i], NULL);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    free(t->buf);
    t->buf = NULL;
}

/* A team of `threads` over a buffer of `bytes`, its workers parked; false with `reason` when the
 * machine cannot give the memory or the threads (t is then closed). */
static bool team_open(read_team *t, size_t bytes, uint32_t threads, char *reason, size_t n)
{
    memset(t, 0, sizeof *t);
    t->buf = alloc_read_buffer(&bytes);
    if (!t->buf) {
        snprintf(reason, n, "cannot allocate %zu bytes", bytes);
        return false;
    }
    t->buf_words = bytes / 8;
    /* Distinct nonzero values, so no page is the shared zero page. */
    for (size_t i = 0; i < t->buf_words; i++)
        t->buf[i] = i * 0x9E3779B97F4A7C15ull;
    const char *loads;
    t->read = bench_read_best(&loads);
    t->n = threads;
    atomic_init(&t->go, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->parked, true);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    t->started = 1;
    for (uint32_t i = 1; i < threads; i++) {
        t->workers[i] = (struct read_worker){t, i};
        if (pthread_create(&t->tid[i], NULL, read_thread, &t->workers[i]) != 0)
            break;
        t->started++;
    }
    if (t->started == threads)
        return true;
    snprintf(reason, n, "could start only %u of %u threads", t->started, threads);
    team_close(t);
    return false;
}

/* Times calls of layout l as `budget` says into *timing, the workers awake meanwhile. */
static bst_status team_measure(read_team *t, const read_layout *l, const bench_budget *budget,
                               bench_timing *timing, bench_error *e)
{
    t->at = *l;
    if (l->threads > 1)
        set_parked(t, false);
    bst_status st = bench_measure(budget, read_call, t, timing, e);
    if (l->threads > 1)
        set_parked(t, true);
    return st;
}

static uint32_t clamp_threads(uint32_t threads)
{
    return threads == 0 ? 1 : threads > MAX_TEAM ? MAX_TEAM : threads;
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
    threads = clamp_threads(threads);
    read_layout l;
    if (!layout_for(bytes, 1, threads, &l)) {
        snprintf(out->reason, sizeof out->reason,
                 "%llu bytes over %u threads is too small or large", (unsigned long long)bytes,
                 threads);
        return BST_OK;
    }
    read_team team;
    if (!team_open(&team, l.stride_words * 8, threads, out->reason, sizeof out->reason))
        return BST_OK;
    bst_status st = team_measure(&team, &l, budget, &out->timing, e);
    team_close(&team);
    if (st == BST_OK && out->timing.stats.median_ns > 0) {
        const char *loads;
        (void)bench_read_best(&loads);
        snprintf(out->loads, sizeof out->loads, "%s", loads);
        out->measured = true;
        out->bytes = layout_bytes(&l);
        out->threads = threads;
        out->gbs = (double)out->bytes / out->timing.stats.median_ns;
    }
    return st;
}

/* --- same-size reads, kept open beside the case they rate ---------------------------------- */

/* Layouts: one thread, and the run's count. */
enum { ALONE, TEAM, N_LAYOUTS };

struct bench_reader {
    read_team team;
    bool open;             /* the team is running */
    char reason[256];      /* why nothing can be read, when !open */
    uint64_t bytes;        /* the weight's */
    uint32_t copies, threads;
    read_layout at[N_LAYOUTS];
    bool usable[N_LAYOUTS];
    bench_timing timing[N_LAYOUTS]; /* every block's samples */
    size_t cap[N_LAYOUTS];
};

bst_status bench_reader_open(uint64_t bytes, uint32_t copies, uint32_t threads,
                             bench_reader **out, bench_error *e)
{
    bench_reader *r = calloc(1, sizeof *r);
    *out = r;
    if (!r)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "same-size read: out of memory");
    r->bytes = bytes;
    r->copies = copies ? copies : 1;
    r->threads = clamp_threads(threads);
    r->usable[ALONE] = layout_for(bytes, r->copies, 1, &r->at[ALONE]);
    r->usable[TEAM] = r->threads > 1 && layout_for(bytes, r->copies, r->threads, &r->at[TEAM]);
    if (!r->usable[ALONE] && !r->usable[TEAM]) {
        snprintf(r->reason, sizeof r->reason, "%llu bytes over %u threads is too small or large",
                 (unsigned long long)bytes, r->threads);
        return BST_OK;
    }
    /* One thread's copies are the widest apart. */
    const read_layout *wide = &r->at[r->usable[ALONE] ? ALONE : TEAM];
    r->open = team_open(&r->team, wide->stride_words * 8 * r->copies, r->threads, r->reason,
                        sizeof r->reason);
    return BST_OK;
}

bst_status bench_reader_block(bench_reader *r, const bench_budget *budget, bench_error *e)
{
    for (int c = 0; r->open && c < N_LAYOUTS; c++) {
        if (!r->usable[c])
            continue;
        bench_timing t;
        bst_status st = team_measure(&r->team, &r->at[c], budget, &t, e);
        bench_timing *all = &r->timing[c];
        if (st == BST_OK && !bench_grow((void **)&all->samples_ns, &r->cap[c],
                                        (size_t)all->n_samples + t.n_samples, sizeof(uint64_t)))
            st = bench_fail(e, BST_ERR_OUT_OF_MEMORY, "same-size read: out of memory");
        if (st == BST_OK) {
            memcpy(all->samples_ns + all->n_samples, t.samples_ns,
                   t.n_samples * sizeof(uint64_t));
            all->n_samples += t.n_samples;
            if (all->warmup == 0)
                all->first_ns = t.first_ns;
            all->warmup += t.warmup;
        }
        bench_timing_free(&t);
        if (st != BST_OK)
            return st;
    }
    return BST_OK;
}

/* The streaming read of all the copies at the run's count into out->stream_gbs, and that team's
 * empty call into out->handoff_ns (two threads or more). */
static bst_status time_stream(bench_reader *r, const bench_budget *budget, bench_read *out,
                              bench_error *e)
{
    const int c = r->threads > 1 ? TEAM : ALONE;
    if (!r->usable[c])
        return BST_OK;
    const uint64_t total = (uint64_t)r->at[c].stride_words * 8 * r->copies;
    read_layout whole = {(size_t)(total / 8), (size_t)(total / r->threads / 128 * 128 / 8), 1,
                         r->threads};
    bench_budget half = *budget;
    half.seconds /= 2;
    bench_timing t;
    bst_status st = team_measure(&r->team, &whole, &half, &t, e);
    if (st == BST_OK && t.stats.median_ns > 0)
        out->stream_gbs = (double)layout_bytes(&whole) / t.stats.median_ns;
    bench_timing_free(&t);
    if (st != BST_OK || r->threads < 2)
        return st;
    /* Its hand-off is measured because it is not a constant of the machine: on the 2-vCPU VMs
     * here it was 80-130 ns in one placement of the vCPUs and ~400 ns in another, minutes or
     * seconds apart, and a small GEMV, which hands off more than the read does, is rated very
     * differently in the two. */
    read_layout empty = whole;
    empty.words_per_thread = 0;
    bench_budget quarter = *budget;
    quarter.seconds /= 4;
    st = team_measure(&r->team, &empty, &quarter, &t, e);
    if (st == BST_OK)
        out->handoff_ns = t.stats.median_ns;
    bench_timing_free(&t);
    return st;
}

bst_status bench_reader_finish(bench_reader *r, const bench_budget *budget, bench_read *out,
                               bench_error *e)
{
    memset(out, 0, sizeof *out);
    out->bytes = r->bytes;
    out->copies = r->copies;
    if (!r->open) {
        snprintf(out->reason, sizeof out->reason, "%s", r->reason);
        return BST_OK;
    }
    /* One thread and the run's count: the faster is the yardstick, since below some size the
     * second thread's start costs more than its half of the bytes saves. */
    int best = -1;
    for (int c = 0; c < N_LAYOUTS; c++) {
        bench_timing *t = &r->timing[c];
        if (t->n_samples == 0)
            continue;
        bst_status st = bench_stats_compute(t->samples_ns, t->n_samples, &t->stats, e);
        if (st != BST_OK)
            return st;
        const double gbs = t->stats.median_ns > 0
                               ? (double)layout_bytes(&r->at[c]) / t->stats.median_ns
                               : 0.0;
        if (gbs > out->gbs) {
            out->gbs = gbs;
            best = c;
        }
    }
    if (best < 0) {
        snprintf(out->reason, sizeof out->reason, "no read was timed");
        return BST_OK;
    }
    out->timing = r->timing[best];
    memset(&r->timing[best], 0, sizeof r->timing[best]); /* now out's */
    out->threads = r->at[best].threads;
    out->measured = true;
    const char *loads;
    (void)bench_read_best(&loads);
    snprintf(out->loads, sizeof out->loads, "%s", loads);
    return time_stream(r, budget, out, e);
}

void bench_reader_close(bench_reader *r)
{
    if (!r)
        return;
    if (r->open)
        team_close(&r->team);
    for (int c = 0; c < N_LAYOUTS; c++)
        bench_timing_free(&r->timing[c]);
    free(r);
}

bst_status bench_read_measure(uint64_t bytes, uint32_t copies, uint32_t threads,
                              const bench_budget *budget, bench_read *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    bench_reader *r;
    bst_status st = bench_reader_open(bytes, copies, threads, &r, e);
    if (st == BST_OK)
        st = bench_reader_block(r, budget, e);
    if (st == BST_OK)
        st = bench_reader_finish(r, budget, out, e);
    bench_reader_close(r);
    return st;
}
