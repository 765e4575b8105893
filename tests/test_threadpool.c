/*
 * tests/test_threadpool.c — the shared thread pool (runtime/threadpool.c): every index of
 * [0, n) is handed out exactly once with chunks of at least `grain`, worker ids stay in range,
 * nested calls run serially instead of deadlocking, back-to-back jobs and concurrent callers
 * work, an idle pool does not burn CPU, and a plugin (through the host API) never sees a
 * worker id past what num_workers last told its thread, even when another context raises the
 * count meanwhile.
 */
#include "runtime/runtime.h"
#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct coverage {
    _Atomic uint32_t *hits;
    int64_t n;
    int64_t grain;
    uint32_t n_workers;
    _Atomic uint32_t bad_range;  /* a chunk outside [0, n) or empty */
    _Atomic uint32_t bad_worker; /* a worker id >= n_workers */
    _Atomic uint32_t small_chunks; /* chunks shorter than grain that are not the last one */
    _Atomic uint32_t calls;
} coverage;

static void cover(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    coverage *c = arg;
    atomic_fetch_add(&c->calls, 1);
    if (begin < 0 || end > c->n || begin >= end) {
        atomic_fetch_add(&c->bad_range, 1);
        return;
    }
    if (worker >= c->n_workers)
        atomic_fetch_add(&c->bad_worker, 1);
    if (end - begin < c->grain && end != c->n)
        atomic_fetch_add(&c->small_chunks, 1);
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

/* Runs one job and checks it; returns false (after CUnit assertions) on any defect. */
static bool run_coverage(int64_t n, int64_t grain)
{
    coverage c;
    memset(&c, 0, sizeof c);
    size_t count = n > 0 ? (size_t)n : 1;
    c.hits = calloc(count, sizeof *c.hits);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.hits);
    c.n = n;
    c.grain = grain < 1 ? 1 : grain;
    c.n_workers = bsti_pool_threads();
    bsti_pool_parallel_for(n, grain, cover, &c);
    bool ok = true;
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&c.hits[i]) != 1) {
            ok = false;
            break;
        }
    ok = ok && atomic_load(&c.bad_range) == 0 && atomic_load(&c.bad_worker) == 0 &&
         atomic_load(&c.small_chunks) == 0;
    if (n <= 0)
        ok = ok && atomic_load(&c.calls) == 0;
    if (!ok)
        fprintf(stderr, "\n  coverage failed: n=%lld grain=%lld threads=%u\n", (long long)n,
                (long long)grain, c.n_workers);
    free(c.hits);
    return ok;
}

static void test_every_index_once(void)
{
    static const uint32_t threads[] = {1, 2, 3, 4, 7};
    static const int64_t sizes[] = {0, 1, 2, 3, 5, 7, 16, 63, 64, 65, 100, 1000, 4097, 100003};
    static const int64_t grains[] = {-5, 0, 1, 2, 3, 7, 64, 1000, 1000000};
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        bsti_pool_set_threads(threads[t]);
        CU_ASSERT_EQUAL(bsti_pool_threads(), threads[t]);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++)
                CU_ASSERT_TRUE(run_coverage(sizes[s], grains[g]));
    }
    bsti_pool_set_threads(0);
}

static void test_negative_n_is_empty(void)
{
    bsti_pool_set_threads(2);
    CU_ASSERT_TRUE(run_coverage(-1, 1));
    CU_ASSERT_TRUE(run_coverage(INT64_MIN, 1));
    bsti_pool_set_threads(0);
}

/* Several workers must really take part in a large job (when more than one is configured). */
typedef struct seen_workers {
    _Atomic uint32_t mask;
    int hold_ms; /* how long a chunk waits for the third thread at most (0: 10 s) */
} seen_workers;

static void note_worker(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    seen_workers *s = arg;
    (void)begin;
    (void)end;
    if (worker < 32)
        atomic_fetch_or(&s->mask, 1u << worker);
    /* Every chunk is held until all three threads (the caller and two workers) have taken one,
     * or hold_ms pass: while two threads wait, only the third can take the next chunk, so the
     * test does not depend on how a loaded machine schedules threads — it fails only when a
     * thread never takes part. */
    const int hold = s->hold_ms ? s->hold_ms : 10000;
    for (int i = 0; i < hold && (atomic_load(&s->mask) & 7u) != 7u; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void test_workers_participate(void)
{
    bsti_pool_set_threads(3);
    seen_workers s = {0};
    bsti_pool_parallel_for(64, 1, note_worker, &s);
    uint32_t mask = atomic_load(&s.mask);
    CU_ASSERT_EQUAL(mask, 7u); /* the caller (worker 0) and both pool workers, nothing else */
    bsti_pool_set_threads(0);
}

typedef struct nested {
    _Atomic uint32_t *hits; /* outer x inner */
    int64_t outer, inner;
    _Atomic uint32_t worker_mismatch;
} nested;

typedef struct inner_arg {
    nested *nest;
    int64_t row;
    uint32_t outer_worker;
} inner_arg;

static void inner_fn(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    inner_arg *a = arg;
    /* Serial inside a callback: the same thread, so the same worker id. */
    if (worker != a->outer_worker)
        atomic_fetch_add(&a->nest->worker_mismatch, 1);
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&a->nest->hits[a->row * a->nest->inner + i], 1);
}

static void outer_fn(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    nested *n = arg;
    for (int64_t r = begin; r < end; r++) {
        inner_arg a = {n, r, worker};
        bsti_pool_parallel_for(n->inner, 1, inner_fn, &a);
    }
}

static void test_nested_runs_serially(void)
{
    bsti_pool_set_threads(4);
    nested n = {0};
    n.outer = 37;
    n.inner = 53;
    n.hits = calloc((size_t)(n.outer * n.inner), sizeof *n.hits);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n.hits);
    bsti_pool_parallel_for(n.outer, 1, outer_fn, &n);
    uint32_t wrong = 0;
    for (int64_t i = 0; i < n.outer * n.inner; i++)
        wrong += atomic_load(&n.hits[i]) != 1;
    CU_ASSERT_EQUAL(wrong, 0u);
    CU_ASSERT_EQUAL(atomic_load(&n.worker_mismatch), 0u);
    free(n.hits);
    bsti_pool_set_threads(0);
}

typedef struct sum_arg {
    const int64_t *values;
    _Atomic int64_t sum;
} sum_arg;

static void sum_fn(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    (void)worker;
    sum_arg *s = arg;
    int64_t local = 0;
    for (int64_t i = begin; i < end; i++)
        local += s->values[i];
    atomic_fetch_add(&s->sum, local);
}

/* Many small jobs in a row, as a decode step issues them: each must see its own arguments (a
 * stale worker running a chunk of the previous job would corrupt the sums). */
static void test_back_to_back_small_jobs(void)
{
    bsti_pool_set_threads(4);
    enum { N = 97, JOBS = 20000 };
    int64_t values[N];
    for (int i = 0; i < N; i++)
        values[i] = i + 1;
    uint32_t wrong = 0;
    for (int j = 0; j < JOBS; j++) {
        int64_t n = 2 + j % (N - 1);
        sum_arg s = {values, 0};
        bsti_pool_parallel_for(n, 1 + j % 5, sum_fn, &s);
        wrong += atomic_load(&s.sum) != n * (n + 1) / 2;
    }
    CU_ASSERT_EQUAL(wrong, 0u);
    bsti_pool_set_threads(0);
}

static void *caller_thread(void *arg)
{
    _Atomic uint32_t *failures = arg;
    for (int j = 0; j < 500; j++)
        if (!run_coverage(1000 + j, 3))
            atomic_fetch_add(failures, 1);
    return NULL;
}

/* Two application threads (two contexts, say) submitting at once: jobs are serialized, never
 * mixed. */
static void test_concurrent_callers(void)
{
    bsti_pool_set_threads(3);
    _Atomic uint32_t failures = 0;
    pthread_t a, b;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&a, NULL, caller_thread, &failures), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&b, NULL, caller_thread, &failures), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CU_ASSERT_EQUAL(atomic_load(&failures), 0u);
    bsti_pool_set_threads(0);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* After a job, workers may spin a few tens of microseconds, then must sleep: 300 ms of idleness
 * must cost far less than 300 ms of CPU per worker. */
static void test_idle_pool_sleeps(void)
{
    bsti_pool_set_threads(4);
    CU_ASSERT_TRUE(run_coverage(100000, 10));
    double before = cpu_seconds();
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    double used = cpu_seconds() - before;
    CU_ASSERT_TRUE(used < 0.03);
    if (used >= 0.03)
        fprintf(stderr, "\n  idle pool used %.3f s of CPU in 0.3 s\n", used);
    bsti_pool_set_threads(0);
}

/* The decode pattern: thousands of tiny jobs back to back (workers spinning between them), then
 * the process goes idle between requests. The workers' spin must end and they must sleep:
 * measured as the CPU time the whole process uses over 200 ms while this thread sleeps (this
 * thread's own CPU time is subtracted). A behavioural check, not a timing target: a pool that
 * busy-waits while idle uses ~0.2 s per worker here. */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_idle_after_burst_sleeps(void)
{
    bsti_pool_set_threads(2);
    for (int i = 0; i < 3000; i++)
        CU_ASSERT_TRUE_FATAL(run_coverage(8, 1));
    double before = cpu_seconds() - thread_cpu_seconds();
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    double used = cpu_seconds() - thread_cpu_seconds() - before;
    CU_ASSERT_TRUE(used < 0.02);
    if (used >= 0.02)
        fprintf(stderr, "\n  idle pool workers used %.3f s of CPU in 0.2 s\n", used);
    /* And the sleeping workers wake up for the next job and share it. */
    CU_ASSERT_TRUE(run_coverage(100000, 10));
    bsti_pool_set_threads(0);
}

/* bst_host_api.parallel_for's promise, which the CPU plugin's decode kernels rely on (they
 * quantize the activation in chunk 0 while the other chunks wait for it): chunk 0 is taken
 * first, by the calling thread as worker 0, which runs it at once. So a chunk that waits for
 * chunk 0 to have begun never waits in vain (bounded here by 2 s, so a broken pool fails the test
 * instead of hanging it). */
/* Spins until *flag is set (true) or about 2 s have passed (false). */
static bool await_flag(_Atomic uint32_t *flag)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        if (atomic_load(flag))
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < 2);
    return false;
}

typedef struct first_chunk {
    pthread_t caller;
    _Atomic uint32_t started;    /* chunk 0 has begun */
    _Atomic uint32_t in_vain;    /* another chunk gave up waiting for it */
    _Atomic uint32_t not_caller; /* chunk 0 ran elsewhere, or not as worker 0 */
} first_chunk;

static void note_first(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    (void)end;
    first_chunk *f = arg;
    if (begin == 0) {
        atomic_store(&f->started, 1);
        if (!pthread_equal(pthread_self(), f->caller) || worker != 0)
            atomic_fetch_add(&f->not_caller, 1);
        return;
    }
    if (!await_flag(&f->started))
        atomic_fetch_add(&f->in_vain, 1);
}

static void test_chunk_zero_first_on_caller(void)
{
    bsti_pool_set_threads(3);
    uint32_t in_vain = 0, not_caller = 0;
    for (int i = 0; i < 3000; i++) {
        first_chunk f = {.caller = pthread_self()};
        bsti_pool_parallel_for(2 + i % 7, 1, note_first, &f);
        in_vain += atomic_load(&f.in_vain);
        not_caller += atomic_load(&f.not_caller);
    }
    CU_ASSERT_EQUAL(in_vain, 0);
    CU_ASSERT_EQUAL(not_caller, 0);
    bsti_pool_set_threads(0);
}

/* A job published while the workers sleep wakes them at once, not only after the caller's own
 * chunk: here chunk 0 waits (up to 2 s) for chunk 1 to be taken by another thread. */
typedef struct handshake {
    _Atomic uint32_t other_ran;
    _Atomic uint32_t waited_in_vain;
} handshake;

static void wait_for_other(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    (void)end;
    handshake *h = arg;
    if (begin != 0) {
        if (worker != 0)
            atomic_store(&h->other_ran, 1);
        return;
    }
    if (!await_flag(&h->other_ran))
        atomic_store(&h->waited_in_vain, 1);
}

static void test_sleeping_workers_wake_at_publish(void)
{
    bsti_pool_set_threads(2);
    CU_ASSERT_TRUE(run_coverage(1000, 1)); /* the worker exists */
    struct timespec ts = {0, 200000000};  /* ... and has gone to sleep (spin budget 50 us) */
    nanosleep(&ts, NULL);
    handshake h = {0};
    bsti_pool_parallel_for(2, 1, wait_for_other, &h);
    CU_ASSERT_EQUAL(atomic_load(&h.waited_in_vain), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.other_ran), 1);
    bsti_pool_set_threads(0);
}

static void test_thread_count_setting(void)
{
    bsti_pool_set_threads(5);
    CU_ASSERT_EQUAL(bsti_pool_threads(), 5u);
    bsti_pool_set_threads(100000);
    CU_ASSERT_TRUE(bsti_pool_threads() >= 1 && bsti_pool_threads() <= 256);
    bsti_pool_set_threads(0);
    CU_ASSERT_TRUE(bsti_pool_threads() >= 1);
    /* Shrinking after more workers were started: ids must stay below the new count. */
    bsti_pool_set_threads(6);
    CU_ASSERT_TRUE(run_coverage(5000, 1));
    bsti_pool_set_threads(2);
    CU_ASSERT_TRUE(run_coverage(5000, 1));
    bsti_pool_set_threads(0);
}

/* A plugin sizes its per-worker storage with host->num_workers() at the start of an execute,
 * and another context created on another thread meanwhile raises the pool's count
 * (bst_context_create: "the newest context's setting applies"). The plugin's later
 * parallel_for calls must still hand out only worker ids below what num_workers told that
 * thread (the CPU backend failed the node with BST_ERR_INTERNAL; npu-sim wrote past its
 * scratch); the raise applies from the thread's next num_workers call. */
static void test_raise_waits_for_next_num_workers(void)
{
    const bst_host_api *host = bsti_host_api();
    bsti_pool_set_threads(2);
    const uint32_t sized = host->num_workers();
    CU_ASSERT_EQUAL_FATAL(sized, 2u);
    bsti_pool_set_threads(3); /* another thread's bst_context_create */
    seen_workers s = {0, 125}; /* 8 chunks over 2 threads: about 0.5 s held */
    host->parallel_for(8, 1, note_worker, &s);
    CU_ASSERT_EQUAL(atomic_load(&s.mask) & ~3u, 0u); /* ids 0 and 1 only */
    /* Asked again, the thread gets the raised count and all three threads take part. */
    CU_ASSERT_EQUAL(host->num_workers(), 3u);
    seen_workers all = {0};
    host->parallel_for(64, 1, note_worker, &all);
    CU_ASSERT_EQUAL(atomic_load(&all.mask), 7u);
    bsti_pool_set_threads(0);
    (void)host->num_workers(); /* leave this thread's host count at the default */
}

/* A child forked after the pool started (a conformance worker, say) has no worker threads;
 * the pool must notice and start its own instead of waiting for the parent's. */
static void test_pool_after_fork(void)
{
    bsti_pool_set_threads(3);
    CU_ASSERT_TRUE(run_coverage(10000, 7));
    pid_t pid = fork();
    CU_ASSERT_TRUE_FATAL(pid >= 0);
    if (pid == 0) {
        alarm(20); /* a hang ends the child with SIGALRM instead of hanging the test */
        bool ok = true;
        for (int i = 0; i < 200 && ok; i++)
            ok = run_coverage(5000 + i, 3);
        /* And the work is really shared again, not silently serial. */
        seen_workers s = {0};
        bsti_pool_parallel_for(64, 1, note_worker, &s);
        ok = ok && __builtin_popcount(atomic_load(&s.mask)) >= 2;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_TRUE(run_coverage(10000, 7));
    bsti_pool_set_threads(0);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"every_index_once", test_every_index_once},
        {"negative_n_is_empty", test_negative_n_is_empty},
        {"workers_participate", test_workers_participate},
        {"nested_runs_serially", test_nested_runs_serially},
        {"back_to_back_small_jobs", test_back_to_back_small_jobs},
        {"concurrent_callers", test_concurrent_callers},
        {"idle_pool_sleeps", test_idle_pool_sleeps},
        {"idle_after_burst_sleeps", test_idle_after_burst_sleeps},
        {"chunk_zero_first_on_caller", test_chunk_zero_first_on_caller},
        {"sleeping_workers_wake_at_publish", test_sleeping_workers_wake_at_publish},
        {"thread_count_setting", test_thread_count_setting},
        {"raise_waits_for_next_num_workers", test_raise_waits_for_next_num_workers},
        {"pool_after_fork", test_pool_after_fork},
        {NULL, NULL},
    };
    return bst_test_run_suite("threadpool", cases);
}
