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
 * Job hand-off protocol (why `gen` is odd while a job is being written): workers take a
 * reference (`refs`) and then re-check `gen` before touching the job. The submitter first makes
 * `gen` odd, waits for `refs` to drop to zero — only stragglers of the previous, finished job
 * can hold one — then writes the job and makes `gen` even again. So a worker never reads a
 * half-written job and never runs a chunk of a job that already returned.
 */
#include "runtime/runtime.h"

#include "graph/status.h"

#include <pthread.h>
#include <sched.h>
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
 * and the others take over the rest of its share; each claim costs one atomic add. With 4 per
 * thread a preempted worker held a fixed eighth of a GEMV, and medians were 4-6x the fastest
 * call on a loaded machine. */
#define CHUNKS_PER_THREAD 16

typedef struct job {
    bst_range_fn fn;
    void *arg;
    int64_t n;
    int64_t chunk;
    int64_t n_chunks;
    uint32_t n_workers; /* workers with an id below this take part (the caller is 0) */
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

    _Atomic uint64_t gen; /* even: job published; odd: job being written */
    _Atomic uint32_t refs;
    job current;
    _Atomic int64_t next_chunk;
    _Atomic int64_t done_chunks;
} pool = {
    .submit = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

static uint64_t start_gen[MAX_THREADS]; /* written before the thread starts */

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

/* Claims and runs chunks of the current job until none is left. */
static void run_chunks(uint32_t worker)
{
    const job *j = &pool.current;
    for (;;) {
        int64_t c = atomic_fetch_add(&pool.next_chunk, 1);
        if (c >= j->n_chunks)
            return;
        int64_t begin = c * j->chunk;
        int64_t end = begin + j->chunk < j->n ? begin + j->chunk : j->n;
        j->fn(j->arg, begin, end, worker);
        if (atomic_fetch_add(&pool.done_chunks, 1) + 1 == j->n_chunks &&
            atomic_load(&pool.caller_waiting)) {
            /* Last chunk and the caller may be asleep. Signalling under the lock pairs with the
             * caller's check-then-wait under the same lock, so the wake-up cannot be lost. */
            pthread_mutex_lock(&pool.lock);
            pthread_cond_broadcast(&pool.done_cv);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static bool job_ready(uint64_t g, uint64_t last) { return (g & 1u) == 0 && g != last; }

static void *worker_main(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    this_worker = (int32_t)id;
    /* The generation of the last finished job when this thread was created: the next one is
     * its first. (Joining an older, finished job would be harmless, just pointless.) */
    uint64_t last = start_gen[id];
    for (;;) {
        uint64_t g = atomic_load(&pool.gen);
        if (!job_ready(g, last)) {
            int64_t until = now_ns() + WORKER_SPIN_NS;
            unsigned spins = 0;
            for (;;) {
                cpu_relax();
                g = atomic_load(&pool.gen);
                if (job_ready(g, last))
                    break;
                if ((++spins & 63u) == 0 && now_ns() > until)
                    break;
            }
            if (!job_ready(g, last)) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while (!job_ready(g = atomic_load(&pool.gen), last))
                    pthread_cond_wait(&pool.work_cv, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        atomic_fetch_add(&pool.refs, 1);
        if (atomic_load(&pool.gen) == g) {
            last = g;
            if (id < pool.current.n_workers)
                run_chunks(id);
        }
        atomic_fetch_sub(&pool.refs, 1);
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
    atomic_store(&pool.refs, 0);
    atomic_store(&pool.gen, (atomic_load(&pool.gen) | 1u) + 1u); /* even, and new */
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
            start_gen[pool.n_started + 1] = atomic_load(&pool.gen);
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

static void wait_done(int64_t n_chunks)
{
    int64_t until = now_ns() + CALLER_SPIN_NS;
    unsigned spins = 0;
    while (atomic_load(&pool.done_chunks) < n_chunks) {
        cpu_relax();
        if ((++spins & 63u) == 0 && now_ns() > until) {
            pthread_mutex_lock(&pool.lock);
            atomic_store(&pool.caller_waiting, 1);
            while (atomic_load(&pool.done_chunks) < n_chunks)
                pthread_cond_wait(&pool.done_cv, &pool.lock);
            atomic_store(&pool.caller_waiting, 0);
            pthread_mutex_unlock(&pool.lock);
            return;
        }
    }
}

void bsti_pool_parallel_for(int64_t n, int64_t grain, bst_range_fn fn, void *arg)
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

    atomic_fetch_add(&pool.gen, 1); /* odd: the job is being written */
    while (atomic_load(&pool.refs) != 0)
        sched_yield();
    pool.current = (job){.fn = fn, .arg = arg, .n = n, .chunk = chunk, .n_chunks = n_chunks,
                         .n_workers = threads};
    atomic_store(&pool.next_chunk, 0);
    atomic_store(&pool.done_chunks, 0);
    atomic_fetch_add(&pool.gen, 1); /* even: published */

    if (atomic_load(&pool.sleepers)) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.work_cv);
        pthread_mutex_unlock(&pool.lock);
    }

    this_worker = 0;
    run_chunks(0);
    wait_done(n_chunks);
    this_worker = -1;
    pthread_mutex_unlock(&pool.submit);
}
