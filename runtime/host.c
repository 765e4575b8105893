/*
 * runtime/host.c — the service table (bst_host_api) every plugin receives from its entry call,
 * and the test-only fault-injection switchboard behind host->fault.
 *
 * The table is one static object for the whole process: plugins may keep the pointer forever
 * (modules are never unloaded), and every service is thread-safe because plugins call them from
 * pool workers and from their own threads.
 */
#include "runtime/runtime.h"

#include "graph/quant.h"
#include "graph/status.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void host_log(bst_log_level level, const char *fmt, ...)
{
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    bsti_log_v(level, fmt, ap);
    va_end(ap);
}

static void host_set_error(const char *fmt, ...)
{
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    bsti_set_error_v(fmt, ap);
    va_end(ap);
}

/* NULL only on failure: a zero-byte request still gets a distinct pointer, so a plugin never
 * mistakes an empty tensor for out-of-memory. */
static void *host_alloc(size_t size, size_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return NULL;
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    if (size == 0)
        size = 1;
    /* posix_memalign does not need size to be a multiple of alignment (aligned_alloc does, and
     * rounding up could overflow), and it reports huge sizes as ENOMEM. */
    if (size > SIZE_MAX - alignment)
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0)
        return NULL;
    return p;
}

static void host_free(void *ptr) { free(ptr); }

/* A plugin sizes per-worker storage with num_workers, then calls parallel_for; the pool's count
 * is shared by every context and another thread's bst_context_create may raise it in between.
 * So a thread's jobs never use more threads than num_workers last told it (0: never asked):
 * a raise applies from that thread's next num_workers call. */
static _Thread_local uint32_t workers_told;

static void host_parallel_for(int64_t n, int64_t grain, bst_range_fn fn, void *arg)
{
    bsti_pool_parallel_for_max(n, grain, workers_told, fn, arg);
}

static uint32_t host_num_workers(void) { return workers_told = bsti_pool_threads(); }

static bst_status host_dequantize(bst_dtype type, const void *src, float *dst, int64_t n)
{
    return bsti_dequantize(type, src, dst, n);
}

static bst_status host_quantize(bst_dtype type, const float *src, void *dst, int64_t n)
{
    return bsti_quantize(type, src, dst, n);
}

/* --- fault injection --- */

#define FAULT_SLOTS 16
#define FAULT_SITE_MAX 48

typedef struct fault_slot {
    char site[FAULT_SITE_MAX];
    bst_status status;
    uint32_t countdown; /* calls left before it fires; 0 = fires on every call until cleared */
} fault_slot;

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static fault_slot faults[FAULT_SLOTS];
/* Number of armed slots: lets host->fault, which plugins call on hot paths, skip the lock
 * entirely in every run that is not a fault-injection test. */
static _Atomic uint32_t faults_armed;

static fault_slot *fault_find(const char *site)
{
    for (unsigned i = 0; i < FAULT_SLOTS; i++)
        if (faults[i].status != BST_OK && strcmp(faults[i].site, site) == 0)
            return &faults[i];
    return NULL;
}

void bsti_fault_set(const char *site, bst_status status, uint32_t countdown)
{
    if (!site || strlen(site) >= FAULT_SITE_MAX) {
        bsti_log(BST_LOG_WARN, "fault injection: site name missing or longer than %d bytes",
                 FAULT_SITE_MAX - 1);
        return;
    }
    pthread_mutex_lock(&fault_lock);
    fault_slot *slot = fault_find(site);
    if (status == BST_OK) {
        if (slot) {
            slot->status = BST_OK;
            atomic_fetch_sub(&faults_armed, 1);
        }
    } else {
        if (!slot) {
            for (unsigned i = 0; i < FAULT_SLOTS && !slot; i++)
                if (faults[i].status == BST_OK)
                    slot = &faults[i];
            if (slot) {
                strcpy(slot->site, site);
                atomic_fetch_add(&faults_armed, 1);
            }
        }
        if (slot) {
            slot->status = status;
            slot->countdown = countdown;
        } else {
            bsti_log(BST_LOG_WARN, "fault injection: all %d slots in use; '%s' not armed",
                     FAULT_SLOTS, site);
        }
    }
    pthread_mutex_unlock(&fault_lock);
}

static bst_status host_fault(const char *site)
{
    if (!site || atomic_load(&faults_armed) == 0)
        return BST_OK;
    bst_status result = BST_OK;
    pthread_mutex_lock(&fault_lock);
    fault_slot *slot = fault_find(site);
    if (slot) {
        if (slot->countdown == 0) {
            result = slot->status;
        } else if (--slot->countdown == 0) {
            result = slot->status;
            slot->status = BST_OK; /* one-shot: fired */
            atomic_fetch_sub(&faults_armed, 1);
        }
    }
    pthread_mutex_unlock(&fault_lock);
    return result;
}

static const bst_host_api host_api = {
    .struct_size = sizeof(bst_host_api),
    .abi_version = BST_ABI_VERSION,
    .log = host_log,
    .set_error = host_set_error,
    .alloc = host_alloc,
    .free = host_free,
    .parallel_for = host_parallel_for,
    .num_workers = host_num_workers,
    .dequantize = host_dequantize,
    .quantize = host_quantize,
    .fault = host_fault,
};

const bst_host_api *bsti_host_api(void) { return &host_api; }
