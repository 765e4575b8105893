/*
 * runtime/threadpool.c — the one thread pool of the process, shared by the core and every plugin
 * (host->parallel_for).
 *
 * A decode step is hundreds of small parallel loops in a few milliseconds, so waking sleeping
 * threads for each would cost more than the work. Workers therefore spin for a short, bounded
 * time after each job, catching the next one with no system call, and only then sleep on a
 * condition variable: the pool never burns a core while the process is idle (two cores are shared
 * with oneDNN, PoCL and llvmpipe).
 *
 * Shape: n-1 persistent worker threads plus the calling thread, created lazily on the first job
 * that needs them and living for the process (blocked on a condvar when idle, so exit never waits
 * on them and no atexit handler is needed). Chunks are handed out dynamically through an atomic
 * counter so uneven chunks balance.
 *
 * Reentrancy: a parallel_for called from inside a callback (on a worker or on the caller while
 * its job runs) runs serially on the calling thread, with that thread's worker index. Calls from
 * different application threads are serialized: one job runs at a time.
 *
 * Job hand-off protocol. A decode step hands out a job every few microseconds, and each
 * cache line that has to travel between the caller's core and a worker's before the worker can
 * start (or before the caller sees it finish) costs 0.1-0.5 us on these machines. So:
 *  - The job is one cache line, published as a seqlock: `seq` is odd while the caller writes the
 *    fields and even once they are complete. A worker copies the fields and re-reads `seq`;
 *    if it changed, it copied a mix of two jobs and starts over. One line transfer gives a
 *    spinning worker everything it needs.
 *  - Chunk 0 is the caller's, claimed as the job is published and run at once (host
 *    parallel_for promises that chunk 0 is taken first). The others are claimed with a
 *    compare-and-swap on `claim`, whose upper half is the job's tag (from `seq`) and lower half
 *    the next chunk. A straggler still holding an older job fails the tag test and never runs
 *    a chunk of the job that replaced it, so the caller never waits for stragglers before it
 *    writes the next job (a reference count would cost two more round trips per job, and a
 *    descheduled straggler would stall the caller).
 *  - `done` counts finished chunks. It shares a line with `claim`: a worker that has just
 *    claimed holds that line, so counting its chunk done costs no transfer, and the caller
 *    reads both with one.
 * A claimed chunk is not done until its worker says so, and the caller returns only when all
 * are done: so `done` and `claim` are never touched for a job after it returned, and the caller
 * may reset them for the next.
 */
#include "runtime/runtime.h"

#include "graph/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256u
/* Spin budgets, in nanoseconds: long enough to bridge the gap between two nodes of a graph,
 * short enough that an idle process is idle. */
#define WORKER_SPIN_NS 50000
#define CALLER_SPIN_NS 50000
/* Chunks per thread, when the grain allows: many small ones, claimed one at a time, so a thread
 * that is preempted (two cores shared by several processes) holds up only the chunk it is in,
 * and the others take over the rest of its share; each claim costs one compare-and-swap. With 4 per
 * thread a preempted worker held a fixed eighth of a GEMV, and medians were 4-6x the fastest
 * call on a loaded machine. */
#define CHUNKS_PER_THREAD 16

/* The published job (one cache line; the fields are atomics because a worker may read them
 * while the caller rewrites them, which the seqlock then detects). */
typedef struct job_line {
    _Alignas(64) _Atomic uint64_t seq; /* even: published; odd: being written */
    _Atomic(bst_range_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t n;
    _Atomic int64_t chunk;
    _Atomic int64_t n_chunks;
    _Atomic uint32_t n_workers; /* workers with an id below this take part (the caller is 0) */
} job_line;

/* A worker's copy of the job it runs. */
typedef struct job {
    bst_range_fn fn;
    void *arg;
    int64_t n;
    int64_t chunk;
    int64_t n_chunks;
    uint32_t n_workers;
    uint32_t tag;
} job;

static struct {
    pthread_mutex_t submit; /* held by the thread running a job: one job at a time */
    pthread_mutex_t lock;   /* guards sleeping workers and the done condition */
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    /* Written under lock, read without it by the other side of the hand-off: a submitter or a
     * finishing worker takes the lock and signals only when someone may be asleep. Both sides
     * use sequentially consistent operations (store flag, then load state / store state, then
     * load flag), so either the sleeper sees the new state before it waits or the signaller
     * sees the flag: no wake-up is lost, and the common spinning case costs no lock. */
    _Atomic uint32_t sleepers;
    _Atomic uint32_t caller_waiting;

    _Atomic uint32_t n_threads;  /* configured count (caller included); 0 = not set yet */
    uint32_t n_started;          /* worker threads running; guarded by submit */
    bool create_failed_logged;   /* guarded by submit */

    job_line current;
    _Alignas(64) _Atomic uint64_t claim; /* job tag << 32 | next chunk */
    _Atomic int64_t done;                 /* chunks finished */
    char pad[64 - sizeof(uint64_t) - sizeof(int64_t)];
} pool = {
    .submit = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

static uint64_t start_seq[MAX_THREADS]; /* written before the thread starts */

/* Worker index of this thread while it runs pool work; -1 outside. */
static _Thread_local int32_t this_worker = -1;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > (long)MAX_THREADS ? MAX_THREADS : (uint32_t)n;
}

void bsti_pool_set_threads(uint32_t n)
{
    if (n == 0)
        n = online_cpus();
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    atomic_store(&pool.n_threads, n);
}

uint32_t bsti_pool_threads(void)
{
    uint32_t n = atomic_load(&pool.n_threads);
    return n ? n : online_cpus();
}

static uint32_t job_tag(uint64_t seq) { return (uint32_t)(seq >> 1); }

/* Claims and runs chunks of job j until none is left or a newer job has replaced it. */
static void run_chunks(const job *j, uint32_t worker)
{
    uint64_t c = atomic_load_explicit(&pool.claim, memory_order_acquire);
    for (;;) {
        const int64_t index = (int64_t)(c & 0xffffffffu);
        if ((uint32_t)(c >> 32) != j->tag || index >= j->n_chunks)
            return;
        if (!atomic_compare_exchange_weak_explicit(&pool.claim, &c, c + 1, memory_order_acquire,
                                                   memory_order_acquire))
            continue; /* c now holds the current value */
        const int64_t begin = index * j->chunk;
        const int64_t end = begin + j->chunk < j->n ? begin + j->chunk : j->n;
        j->fn(j->arg, begin, end, worker);
        if (atomic_fetch_add(&pool.done, 1) + 1 == j->n_chunks &&
            atomic_load(&pool.caller_waiting)) {
            /* Last chunk and the caller may be asleep. Signalling under the lock pairs with the
             * caller's check-then-wait under the same lock, so the wake-up cannot be lost. */
            pthread_mutex_lock(&pool.lock);
            pthread_cond_broadcast(&pool.done_cv);
            pthread_mutex_unlock(&pool.lock);
        }
        if (index + 1 >= j->n_chunks)
            return; /* that was the last one: no need to look again */
        c = atomic_load_explicit(&pool.claim, memory_order_acquire);
    }
}

static bool job_ready(uint64_t seq, uint64_t last) { return (seq & 1u) == 0 && seq != last; }

/* Copies the job published as `seq`; false if the caller has started writing another since. */
static bool read_job(uint64_t seq, job *out)
{
    const job_line *l = &pool.current;
    out->fn = atomic_load_explicit(&l->fn, memory_order_relaxed);
    out->arg = atomic_load_explicit(&l->arg, memory_order_relaxed);
    out->n = atomic_load_explicit(&l->n, memory_order_relaxed);
    out->chunk = atomic_load_explicit(&l->chunk, memory_order_relaxed);
    out->n_chunks = atomic_load_explicit(&l->n_chunks, memory_order_relaxed);
    out->n_workers = atomic_load_explicit(&l->n_workers, memory_order_relaxed);
    out->tag = job_tag(seq);
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&l->seq, memory_order_relaxed) == seq;
}

/* Waits for a job newer than `last`: spins for a while, then sleeps. Returns its seq. */
static uint64_t wait_job(uint64_t last)
{
    uint64_t s = atomic_load_explicit(&pool.current.seq, memory_order_acquire);
    if (job_ready(s, last))
        return s;
    int64_t until = now_ns() + WORKER_SPIN_NS;
    unsigned spins = 0;
    for (;;) {
        cpu_relax();
        s = atomic_load_explicit(&pool.current.seq, memory_order_acquire);
        if (job_ready(s, last))
            return s;
        if ((++spins & 63u) == 0 && now_ns() > until)
            break;
    }
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.sleepers, 1);
    while (!job_ready(s = atomic_load(&pool.current.seq), last))
        pthread_cond_wait(&pool.work_cv, &pool.lock);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.lock);
    return s;
}

static void *worker_main(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    this_worker = (int32_t)id;
    /* The seq of the last finished job when this thread was created: the next one is its
     * first. (Joining an older, finished job would be harmless: its claims are used up.) */
    uint64_t last = start_seq[id];
    for (;;) {
        uint64_t s = wait_job(last);
        job j;
        if (!read_job(s, &j))
            continue; /* rewritten meanwhile: wait for the newer one */
        last = s;
        if (id < j.n_workers)
            run_chunks(&j, id);
    }
    return NULL;
}

/* In a child after fork() only the forking thread exists: forget the workers (they are
 * restarted lazily) and any lock state copied from the parent, so a conformance worker process
 * forked from a program that used the pool can use it too. */
static void after_fork_child(void)
{
    pthread_mutex_init(&pool.submit, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.work_cv, NULL);
    pthread_cond_init(&pool.done_cv, NULL);
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.caller_waiting, 0);
    pool.n_started = 0;
    atomic_store(&pool.current.seq, (atomic_load(&pool.current.seq) | 1u) + 1u); /* even, new */
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

/* Starts workers up to n-1 (called with submit held). Returns how many are running. */
static uint32_t ensure_workers(uint32_t n)
{
    pthread_once(&atfork_once, register_atfork);
    while (pool.n_started + 1 < n) {
        pthread_attr_t attr;
        pthread_t thread;
        int rc = pthread_attr_init(&attr);
        if (rc == 0) {
            start_seq[pool.n_started + 1] = atomic_load(&pool.current.seq);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            rc = pthread_create(&thread, &attr, worker_main,
                                (void *)(uintptr_t)(pool.n_started + 1));
            pthread_attr_destroy(&attr);
        }
        if (rc != 0) {
            if (!pool.create_failed_logged) {
                bsti_log(BST_LOG_WARN, "thread pool: could not start worker %u; running with %u",
                         pool.n_started + 1, pool.n_started + 1);
                pool.create_failed_logged = true;
            }
            break;
        }
        pool.n_started++;
    }
    return pool.n_started + 1 < n ? pool.n_started + 1 : n;
}

static void wake_workers(void)
{
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.work_cv);
    pthread_mutex_unlock(&pool.lock);
}

static void wait_done(int64_t n_chunks)
{
    int64_t until = now_ns() + CALLER_SPIN_NS;
    unsigned spins = 0;
    while (atomic_load(&pool.done) < n_chunks) {
        cpu_relax();
        if ((++spins & 63u) == 0 && now_ns() > until) {
            pthread_mutex_lock(&pool.lock);
            atomic_store(&pool.caller_waiting, 1);
            while (atomic_load(&pool.done) < n_chunks)
                pthread_cond_wait(&pool.done_cv, &pool.lock);
            atomic_store(&pool.caller_waiting, 0);
            pthread_mutex_unlock(&pool.lock);
            return;
        }
    }
}

void bsti_pool_parallel_for(int64_t n, int64_t grain, bst_range_fn fn, void *arg)
{
    bsti_pool_parallel_for_max(n, grain, 0, fn, arg);
}

void bsti_pool_parallel_for_max(int64_t n, int64_t grain, uint32_t max_threads, bst_range_fn fn,
                                void *arg)
{
    if (n <= 0 || !fn)
        return;
    if (grain < 1)
        grain = 1;
    if (this_worker >= 0) {
        /* Nested call from inside a callback: every thread is busy with the outer job. */
        fn(arg, 0, n, (uint32_t)this_worker);
        return;
    }
    uint32_t threads = bsti_pool_threads();
    if (max_threads && threads > max_threads)
        threads = max_threads;
    if (threads <= 1 || n <= grain) {
        this_worker = 0;
        fn(arg, 0, n, 0);
        this_worker = -1;
        return;
    }

    pthread_mutex_lock(&pool.submit);
    threads = ensure_workers(threads);

    /* Chunk size: at least `grain`, and about CHUNKS_PER_THREAD chunks per thread. */
    int64_t target = (int64_t)threads * CHUNKS_PER_THREAD;
    int64_t chunk = n / target + (n % target != 0);
    if (chunk < grain)
        chunk = grain;
    int64_t n_chunks = n / chunk + (n % chunk != 0);

    /* Publish (seqlock writer): odd, fields, fresh claim and done counters, even. */
    job_line *l = &pool.current;
    const uint64_t seq = atomic_load_explicit(&l->seq, memory_order_relaxed) + 2;
    atomic_store_explicit(&l->seq, seq - 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&l->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&l->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&l->n, n, memory_order_relaxed);
    atomic_store_explicit(&l->chunk, chunk, memory_order_relaxed);
    atomic_store_explicit(&l->n_chunks, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&l->n_workers, threads, memory_order_relaxed);
    const job mine = {fn, arg, n, chunk, n_chunks, threads, job_tag(seq)};
    /* Chunk 0 is the caller's: claiming it here, not with a compare-and-swap after the publish,
     * keeps every locked instruction and fence off the caller's path until its first chunk is
     * done. Each would wait for the stores above to leave the store buffer, and those need the
     * job and claim lines back from the worker that read them last (~0.3 us across two CCDs,
     * the time a small GEMV's own hand-off costs). */
    atomic_store_explicit(&pool.claim, (uint64_t)mine.tag << 32 | 1u, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    atomic_store_explicit(&l->seq, seq, memory_order_release);
    if (atomic_load_explicit(&pool.sleepers, memory_order_relaxed))
        wake_workers();

    this_worker = 0;
    fn(arg, 0, chunk < n ? chunk : n, 0);
    atomic_fetch_add(&pool.done, 1);
    /* A worker that went to sleep just as the job was published may have missed it: the fence
     * pairs with its increment of `sleepers` before its last look at `seq` (either it saw the
     * job, or this load sees it asleep). The load above only spared the common case the wait. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&pool.sleepers, memory_order_relaxed))
        wake_workers();
    run_chunks(&mine, 0);
    wait_done(n_chunks);
    this_worker = -1;
    pthread_mutex_unlock(&pool.submit);
}
