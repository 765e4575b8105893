/*
 * Memory for the packed weight copies (cpu_packed.h): 2 MiB-aligned slabs that the kernel may
 * back with transparent huge pages (madvise MADV_HUGEPAGE), shared by consecutive weights.
 *
 * Why: a decode step streams every weight once, ~100 MB for SmolLM2, in 4 KiB pages that is
 * ~24,000 TLB misses a token, each a page walk whose page-table lines are as cold as the weights;
 * a small matrix pays them at the start of its stream. One slab holds many weights (a model's
 * matrices are 70 KiB to 30 MiB), so huge pages fit them without wasting most of a page each.
 * Where huge pages are off (or not on Linux) the slabs are plain pages and nothing else changes.
 *
 * A slab is freed when the last copy in it is freed. Allocation takes a lock: prepare_weight may
 * run on several threads (two sessions loading at once).
 */
#include "cpu_backend.h"
#include "cpu_packed.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#define SLAB_ALIGN ((size_t)2 << 20)
#define SLAB_BYTES ((size_t)32 << 20)

typedef struct slab {
    uint8_t *base;
    size_t bytes, used;
    uint32_t live; /* copies allocated here and not yet freed */
} slab;

static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static void slab_free(slab *s);
static slab *current; /* where the next copy goes, while it has room */

/* A new mapping of `bytes` (a multiple of SLAB_ALIGN) starting on a SLAB_ALIGN boundary. */
static uint8_t *map_aligned(size_t bytes)
{
    const size_t over = bytes + SLAB_ALIGN;
    uint8_t *p = mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    const size_t lead = (SLAB_ALIGN - (uintptr_t)p % SLAB_ALIGN) % SLAB_ALIGN;
    if (lead)
        munmap(p, lead);
    if (over - lead > bytes)
        munmap(p + lead + bytes, over - lead - bytes);
#ifdef MADV_HUGEPAGE
    (void)madvise(p + lead, bytes, MADV_HUGEPAGE); /* a hint: refused is fine */
#endif
    return p + lead;
}

void *cpu_packed_slab_alloc(size_t bytes, void **out_slab)
{
    bytes = (bytes + 63) & ~(size_t)63;
    pthread_mutex_lock(&slab_lock);
    slab *s = current;
    if (!s || s->bytes - s->used < bytes) {
        slab *fresh = cpu_host->alloc(sizeof *fresh, 64);
        const size_t size = bytes > SLAB_BYTES ? (bytes + SLAB_ALIGN - 1) / SLAB_ALIGN * SLAB_ALIGN
                                               : SLAB_BYTES;
        uint8_t *base = fresh ? map_aligned(size) : NULL;
        if (!base) {
            pthread_mutex_unlock(&slab_lock);
            cpu_host->free(fresh);
            return NULL;
        }
        *fresh = (slab){base, size, 0, 0};
        if (current && current->live == 0) /* left empty: nothing will free it later */
            slab_free(current), current = NULL;
        /* A copy larger than a slab gets its own mapping and leaves `current` in place. */
        s = fresh;
        if (size == SLAB_BYTES)
            current = fresh;
    }
    void *p = s->base + s->used;
    s->used += bytes;
    s->live++;
    pthread_mutex_unlock(&slab_lock);
    *out_slab = s;
    return p;
}

void cpu_packed_slab_release(void *slab_handle)
{
    slab *s = slab_handle;
    pthread_mutex_lock(&slab_lock);
    const bool last = --s->live == 0 && s != current;
    pthread_mutex_unlock(&slab_lock);
    if (last)
        slab_free(s);
}

static void slab_free(slab *s)
{
    munmap(s->base, s->bytes);
    cpu_host->free(s);
}
