/*
 * tests/plugins/tiny.c — the smallest real backend, for the loader's tests: one host-memory
 * device that runs SCALE on contiguous f32 tensors. Built against backend.h alone, as a vendor
 * would build one.
 *
 * The same source also builds the loader's "almost valid" cases through compile definitions:
 *   TINY_NAME          backend name (must match the file name libbst-backend-<name>.so)
 *   TINY_N_DEVICES     0 gives a plugin that loads fine but finds no device
 *   TINY_STRUCT_SIZE   struct_size to report, e.g. that of an older header lacking compile
 *   TINY_NULL_EXECUTE  leaves the required execute function NULL
 *   TINY_EVENTS        speaks ABI version 2 and offers events: execute_async hands the work to a
 *                      worker thread that waits for the wait points, sleeps TINY_EVENTS ms (so a
 *                      host that reads too early reads stale data) and then signals; the fault
 *                      site "execute_async" makes that late work fail. It also fills version 3's
 *                      node_timing / node_times (which fail if called): a version-2 answer's
 *                      must be cleared by the host
 *   TINY_SLOW_VARIANT  offers two kernel variants for SCALE, the first ("scale_slow", what static
 *                      priority takes) correct but sleeping TINY_SLOW_VARIANT ms per execute,
 *                      the second the normal "scale_f32": kernel selection must never keep the
 *                      slow one (tests/test_tune.c)
 *   TINY_COLD_VARIANT  offers "scale_steady", static priority's pick, which sleeps 1 ms per
 *                      execute, and "scale_cold", which sleeps TINY_COLD_VARIANT ms in its
 *                      executable's first execute only: kernel selection must see past a slow
 *                      first call and keep the cold one (tests/test_tune.c)
 * Observable side effects go through the host's log (INFO, prefixed "<name>: "): the test counts
 * device_open/device_close/destroy calls there, since a plugin exports nothing but its entry.
 */
#include <bastion/backend.h>

#include <stdio.h>
#include <string.h>
#ifdef TINY_EVENTS
#include <pthread.h>
#include <time.h>
#endif
#if (defined(TINY_SLOW_VARIANT) || defined(TINY_COLD_VARIANT)) && !defined(TINY_EVENTS)
#include <time.h>
#endif

#ifndef TINY_NAME
#define TINY_NAME "tiny"
#endif
#ifndef TINY_N_DEVICES
#define TINY_N_DEVICES 1
#endif

#define VARIANT_HASH 0x7a1c0ffee5ca1e01ull

typedef struct tiny_ctx {
    const bst_host_api *host;
} tiny_ctx;

typedef struct tiny_device {
    tiny_ctx *ctx;
    uint32_t index;
} tiny_device;

typedef struct tiny_buffer {
    uint64_t size;
    unsigned char *data;
} tiny_buffer;

typedef struct tiny_step {
    uint32_t variant; /* the query's index: which sleeps (TINY_SLOW_VARIANT, TINY_COLD_VARIANT) */
    float scale;
    int64_t count;
    uint32_t in_binding, out_binding;
    uint64_t in_offset, out_offset;
} tiny_step;

typedef struct tiny_exec {
    uint32_t executes; /* so far */
    uint32_t n_steps;
    uint32_t n_bindings;
    tiny_step *steps;
} tiny_exec;

/* A function, not the macro, in comparisons: with 0 devices the compiler would flag them. */
static uint32_t n_devices(void) { return TINY_N_DEVICES; }

static void tiny_destroy(void *ctx)
{
    tiny_ctx *t = ctx;
    t->host->log(BST_LOG_INFO, TINY_NAME ": destroy");
    t->host->free(t);
}

static bst_status tiny_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                 uint32_t capacity, uint32_t *out_count)
{
    (void)ctx;
    *out_count = n_devices();
    for (uint32_t i = 0; i < n_devices() && i < capacity; i++) {
        bst_device_info *info = (bst_device_info *)(void *)((char *)out_infos + (size_t)i * stride);
        /* Write only what the host's struct holds: it may be older than ours. */
        bst_device_info mine;
        memset(&mine, 0, sizeof mine);
        mine.struct_size = sizeof mine;
#ifdef TINY_EVENTS
        mine.kind = BST_DEVICE_ACCEL; /* may run beside the CPU device */
#else
        mine.kind = BST_DEVICE_CPU;
#endif
        strcpy(mine.name, TINY_NAME " test device");
        strcpy(mine.vendor, "bastion-tests");
        strcpy(mine.driver_version, "1.0");
        mine.memory_bytes = 1u << 30;
        mine.max_alloc_bytes = 1u << 30;
        mine.max_binding_bytes = 1u << 30;
        mine.unified_memory = true;
        mine.fingerprint = 0x7141u + i;
        size_t n = info->struct_size < sizeof mine ? info->struct_size : sizeof mine;
        uint32_t host_size = info->struct_size;
        memcpy(info, &mine, n);
        info->struct_size = host_size < sizeof mine ? host_size : (uint32_t)sizeof mine;
    }
    return BST_OK;
}

static bst_status tiny_device_open(void *ctx, uint32_t index, void **out_device)
{
    tiny_ctx *t = ctx;
    if (index >= n_devices()) {
        t->host->set_error(TINY_NAME ": no device %u", index);
        return BST_ERR_INVALID_ARG;
    }
    t->host->log(BST_LOG_INFO, TINY_NAME ": device_open %u", index);
    bst_status fault = t->host->fault("device_open");
    if (fault != BST_OK) {
        t->host->set_error(TINY_NAME ": device %u did not start (injected fault)", index);
        return fault;
    }
    tiny_device *d = t->host->alloc(sizeof *d, sizeof(void *));
    if (!d) {
        t->host->set_error(TINY_NAME ": out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    d->ctx = t;
    d->index = index;
    *out_device = d;
    return BST_OK;
}

static void tiny_device_close(void *device)
{
    tiny_device *d = device;
    d->ctx->host->log(BST_LOG_INFO, TINY_NAME ": device_close %u", d->index);
    d->ctx->host->free(d);
}

static const bst_attr *find_attr(const bst_node_desc *node, uint32_t key)
{
    for (uint32_t i = 0; i < node->n_attrs; i++)
        if (node->attrs[i] && node->attrs[i]->key == key)
            return node->attrs[i];
    return NULL;
}

/* Elements of a contiguous f32 tensor with no symbolic dims, or -1. */
static int64_t contiguous_f32(const bst_tensor_desc *t)
{
    if (!t || t->dtype != BST_DTYPE_F32 || t->rank > BST_MAX_DIMS)
        return -1;
    int64_t expect = 4, count = 1;
    for (uint32_t k = t->rank; k-- > 0;) {
        if (t->sym[k] != BST_SYM_NONE || t->shape[k] < 0 || t->strides[k] != expect)
            return -1;
        if (t->shape[k] != 0 && expect > INT64_MAX / t->shape[k])
            return -1;
        expect *= t->shape[k];
        count *= t->shape[k];
    }
    return count;
}

static bool supported(const bst_node_desc *node, float *out_scale, int64_t *out_count)
{
    if (node->op != BST_OP_SCALE || node->n_inputs != 1 || !node->inputs || !node->output)
        return false;
    const bst_attr *a = find_attr(node, BST_ATTR_SCALE);
    if (!a || a->kind != BST_ATTR_KIND_FLOAT)
        return false;
    int64_t n_in = contiguous_f32(node->inputs[0]), n_out = contiguous_f32(node->output);
    if (n_in < 0 || n_in != n_out)
        return false;
    *out_scale = (float)a->f;
    *out_count = n_in;
    return true;
}

static bst_status tiny_query(void *device, const bst_node_desc *node,
                             bst_kernel_variant *out_variants, size_t stride, uint32_t capacity,
                             uint32_t *out_count)
{
    (void)device;
    float scale;
    int64_t count;
    *out_count = 0;
    if (!supported(node, &scale, &count))
        return BST_OK;
#ifdef TINY_SLOW_VARIANT
    static const char *const names[] = {"scale_slow", "scale_f32"};
#elif defined(TINY_COLD_VARIANT)
    static const char *const names[] = {"scale_steady", "scale_cold"};
#else
    static const char *const names[] = {"scale_f32"};
#endif
    const uint32_t n = (uint32_t)(sizeof names / sizeof names[0]);
    *out_count = n;
    for (uint32_t k = 0; k < n && k < capacity; k++) {
        bst_kernel_variant *v = (bst_kernel_variant *)(void *)((char *)out_variants + k * stride);
        uint32_t host_size = v->struct_size;
        bst_kernel_variant mine;
        memset(&mine, 0, sizeof mine);
        mine.struct_size = sizeof mine;
        strcpy(mine.name, names[k]);
        mine.source_hash = VARIANT_HASH + k;
        memcpy(v, &mine, host_size < sizeof mine ? host_size : sizeof mine);
        v->struct_size = host_size < sizeof mine ? host_size : (uint32_t)sizeof mine;
    }
    return BST_OK;
}

static bst_status tiny_buffer_alloc(void *device, uint64_t size, void **out_buffer)
{
    tiny_device *d = device;
    const bst_host_api *host = d->ctx->host;
    bst_status fault = host->fault("alloc");
    if (fault != BST_OK) {
        host->set_error(TINY_NAME ": buffer of %llu bytes not allocated (injected fault)",
                        (unsigned long long)size);
        return fault;
    }
    if (size > SIZE_MAX - 64) {
        host->set_error(TINY_NAME ": buffer of %llu bytes is too large", (unsigned long long)size);
        return BST_ERR_DEVICE_OOM;
    }
    tiny_buffer *b = host->alloc(sizeof *b, sizeof(void *));
    unsigned char *data = host->alloc((size_t)size, 64);
    if (!b || !data) {
        host->free(b);
        host->free(data);
        host->set_error(TINY_NAME ": out of memory for %llu bytes", (unsigned long long)size);
        return BST_ERR_DEVICE_OOM;
    }
    b->size = size;
    b->data = data;
    *out_buffer = b;
    return BST_OK;
}

static void tiny_buffer_free(void *device, void *buffer)
{
    tiny_device *d = device;
    tiny_buffer *b = buffer;
    if (!b)
        return;
    d->ctx->host->free(b->data);
    d->ctx->host->free(b);
}

static bool in_range(const tiny_buffer *b, uint64_t offset, uint64_t size)
{
    return b && offset <= b->size && size <= b->size - offset;
}

static bst_status tiny_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                                    uint64_t size)
{
    tiny_device *d = device;
    tiny_buffer *b = buffer;
    if (!in_range(b, offset, size)) {
        d->ctx->host->set_error(TINY_NAME ": write outside the buffer");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memcpy(b->data + offset, src, (size_t)size);
    return BST_OK;
}

static bst_status tiny_buffer_read(void *device, void *buffer, uint64_t offset, void *dst,
                                   uint64_t size)
{
    tiny_device *d = device;
    tiny_buffer *b = buffer;
    if (!in_range(b, offset, size)) {
        d->ctx->host->set_error(TINY_NAME ": read outside the buffer");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memcpy(dst, b->data + offset, (size_t)size);
    return BST_OK;
}

static bst_status tiny_compile(void *device, const bst_partition_desc *partition,
                               void **out_executable)
{
    tiny_device *d = device;
    const bst_host_api *host = d->ctx->host;
    bst_status fault = host->fault("compile");
    if (fault != BST_OK) {
        host->set_error(TINY_NAME ": compile failed (injected fault)");
        return fault;
    }
    if (partition->n_nodes == 0) {
        host->set_error(TINY_NAME ": empty partition");
        return BST_ERR_INVALID_ARG;
    }
    tiny_exec *e = host->alloc(sizeof *e, sizeof(void *));
    tiny_step *steps = host->alloc((size_t)partition->n_nodes * sizeof *steps, sizeof(void *));
    if (!e || !steps) {
        host->free(e);
        host->free(steps);
        host->set_error(TINY_NAME ": out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < partition->n_nodes; i++) {
        const bst_node_desc *node = partition->nodes[i];
        tiny_step *s = &steps[i];
#if defined(TINY_SLOW_VARIANT) || defined(TINY_COLD_VARIANT)
        const uint32_t max_variant = 1;
#else
        const uint32_t max_variant = 0;
#endif
        if (!node || node->variant > max_variant || !supported(node, &s->scale, &s->count) ||
            node->inputs[0]->binding >= partition->n_bindings ||
            node->output->binding >= partition->n_bindings) {
            host->free(e);
            host->free(steps);
            host->set_error(TINY_NAME ": node %u is not a supported SCALE", i);
            return BST_ERR_UNSUPPORTED;
        }
        s->variant = node->variant;
        s->in_binding = node->inputs[0]->binding;
        s->in_offset = node->inputs[0]->offset;
        s->out_binding = node->output->binding;
        s->out_offset = node->output->offset;
    }
    e->executes = 0;
    e->n_steps = partition->n_nodes;
    e->n_bindings = partition->n_bindings;
    e->steps = steps;
    *out_executable = e;
    return BST_OK;
}

static void tiny_executable_free(void *device, void *executable)
{
    tiny_device *d = device;
    tiny_exec *e = executable;
    if (!e)
        return;
    d->ctx->host->free(e->steps);
    d->ctx->host->free(e);
}

#ifndef TINY_NULL_EXECUTE
typedef struct scale_job {
    const float *in;
    float *out;
    float scale;
} scale_job;

static void scale_range(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    (void)worker;
    const scale_job *j = arg;
    for (int64_t i = begin; i < end; i++)
        j->out[i] = j->in[i] * j->scale;
}

static bst_status tiny_execute(void *device, void *executable, void *const *buffers,
                               uint32_t n_buffers, const bst_run_params *params)
{
    (void)params;
    tiny_device *d = device;
    const bst_host_api *host = d->ctx->host;
    tiny_exec *e = executable;
#ifdef TINY_EVENTS
    host->log(BST_LOG_INFO, TINY_NAME ": execute (synchronous)");
#endif
    bst_status fault = host->fault("execute");
    if (fault != BST_OK) {
        host->set_error(TINY_NAME ": execute failed (injected fault)");
        return fault;
    }
    if (n_buffers < e->n_bindings) {
        host->set_error(TINY_NAME ": %u buffers bound, %u needed", n_buffers, e->n_bindings);
        return BST_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < e->n_steps; i++) {
        const tiny_step *s = &e->steps[i];
        tiny_buffer *in = buffers[s->in_binding], *out = buffers[s->out_binding];
        uint64_t bytes = (uint64_t)s->count * 4u;
        if (!in_range(in, s->in_offset, bytes) || !in_range(out, s->out_offset, bytes) ||
            s->in_offset % 4 || s->out_offset % 4) {
            host->set_error(TINY_NAME ": step %u reaches outside its buffers", i);
            return BST_ERR_INVALID_ARG;
        }
        scale_job job = {(const float *)(const void *)(in->data + s->in_offset),
                         (float *)(void *)(out->data + s->out_offset), s->scale};
#ifdef TINY_SLOW_VARIANT
        if (s->variant == 0) {
            struct timespec delay = {0, (long)(TINY_SLOW_VARIANT) * 1000000L};
            nanosleep(&delay, NULL);
        }
#endif
#ifdef TINY_COLD_VARIANT
        if (s->variant == 0 || e->executes == 0) {
            long ms = s->variant == 0 ? 1L : (long)(TINY_COLD_VARIANT);
            struct timespec delay = {0, ms * 1000000L};
            nanosleep(&delay, NULL);
        }
#endif
        host->parallel_for(s->count, 1024, scale_range, &job);
    }
    e->executes++;
    return BST_OK;
}
#endif

#ifdef TINY_EVENTS
/* --- events: one worker thread per plugin runs submitted work in order --- */

typedef struct tiny_event {
    uint64_t value;
    bst_status failed; /* a late failure, reported by event_wait */
    char msg[128];
} tiny_event;

typedef struct tiny_job {
    struct tiny_job *next;
    const bst_host_api *host;
    tiny_exec *exec;
    tiny_buffer *buffers[8];
    uint32_t n_waits;
    tiny_event *wait[4];
    uint64_t wait_value[4];
    tiny_event *signal;
    uint64_t signal_value;
} tiny_job;

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_cond = PTHREAD_COND_INITIALIZER;
static tiny_job *queue_head, *queue_tail;
static bool worker_started;

static bool waits_reached(const tiny_job *j)
{
    for (uint32_t i = 0; i < j->n_waits; i++)
        if (j->wait[i]->value < j->wait_value[i])
            return false;
    return true;
}

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ev_lock);
    for (;;) {
        while (!queue_head || !waits_reached(queue_head))
            pthread_cond_wait(&ev_cond, &ev_lock);
        tiny_job *j = queue_head;
        queue_head = j->next;
        if (!queue_head)
            queue_tail = NULL;
        pthread_mutex_unlock(&ev_lock);

        struct timespec delay = {0, (long)(TINY_EVENTS) * 1000000L};
        nanosleep(&delay, NULL);
        bst_status st = j->host->fault("execute_async");
        for (uint32_t i = 0; st == BST_OK && i < j->exec->n_steps; i++) {
            const tiny_step *s = &j->exec->steps[i];
            const float *in = (const float *)(const void *)(j->buffers[s->in_binding]->data +
                                                            s->in_offset);
            float *out = (float *)(void *)(j->buffers[s->out_binding]->data + s->out_offset);
            for (int64_t k = 0; k < s->count; k++)
                out[k] = in[k] * s->scale;
        }

        pthread_mutex_lock(&ev_lock);
        if (j->signal) {
            if (st != BST_OK) {
                j->signal->failed = st;
                snprintf(j->signal->msg, sizeof j->signal->msg,
                         TINY_NAME ": queued work failed (injected fault)");
            }
            j->signal->value = j->signal_value;
        }
        pthread_cond_broadcast(&ev_cond);
        j->host->free(j);
    }
    return NULL;
}

static bst_status tiny_event_create(void *device, void **out_event)
{
    tiny_device *d = device;
    tiny_event *ev = d->ctx->host->alloc(sizeof *ev, sizeof(void *));
    if (!ev) {
        d->ctx->host->set_error(TINY_NAME ": out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(ev, 0, sizeof *ev);
    *out_event = ev;
    d->ctx->host->log(BST_LOG_INFO, TINY_NAME ": event_create");
    return BST_OK;
}

static void tiny_event_destroy(void *device, void *event)
{
    tiny_device *d = device;
    d->ctx->host->free(event);
}

static bst_status tiny_execute_async(void *device, void *executable, void *const *buffers,
                                     uint32_t n_buffers, const bst_run_params *params,
                                     const bst_event_point *waits, size_t waits_stride,
                                     uint32_t n_waits, const bst_event_point *signal)
{
    (void)params;
    tiny_device *d = device;
    const bst_host_api *host = d->ctx->host;
    tiny_exec *e = executable;
    if (n_buffers < e->n_bindings || e->n_bindings > 8 || n_waits > 4) {
        host->set_error(TINY_NAME ": %u buffers for %u bindings, %u waits", n_buffers,
                        e->n_bindings, n_waits);
        return BST_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < e->n_steps; i++) {
        const tiny_step *s = &e->steps[i];
        uint64_t bytes = (uint64_t)s->count * 4u;
        if (!in_range(buffers[s->in_binding], s->in_offset, bytes) ||
            !in_range(buffers[s->out_binding], s->out_offset, bytes)) {
            host->set_error(TINY_NAME ": step %u reaches outside its buffers", i);
            return BST_ERR_INVALID_ARG;
        }
    }
    tiny_job *j = host->alloc(sizeof *j, sizeof(void *));
    if (!j) {
        host->set_error(TINY_NAME ": out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(j, 0, sizeof *j);
    j->host = host;
    j->exec = e;
    for (uint32_t i = 0; i < e->n_bindings; i++)
        j->buffers[i] = buffers[i];
    j->n_waits = n_waits;
    for (uint32_t i = 0; i < n_waits; i++) {
        const bst_event_point *w =
            (const bst_event_point *)(const void *)((const char *)waits + i * waits_stride);
        j->wait[i] = w->event;
        j->wait_value[i] = w->value;
    }
    if (signal) {
        j->signal = signal->event;
        j->signal_value = signal->value;
    }
    host->log(BST_LOG_INFO, TINY_NAME ": execute_async");
    pthread_mutex_lock(&ev_lock);
    if (!worker_started) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, NULL) != 0) {
            pthread_mutex_unlock(&ev_lock);
            host->free(j);
            host->set_error(TINY_NAME ": no worker thread");
            return BST_ERR_BACKEND;
        }
        pthread_detach(t);
        worker_started = true;
    }
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    pthread_cond_broadcast(&ev_cond);
    pthread_mutex_unlock(&ev_lock);
    return BST_OK;
}

static bst_status tiny_event_wait(void *device, void *event, uint64_t value, uint64_t timeout_ns)
{
    tiny_device *d = device;
    tiny_event *ev = event;
    (void)timeout_ns; /* work always finishes within TINY_EVENTS ms */
    d->ctx->host->log(BST_LOG_INFO, TINY_NAME ": event_wait");
    pthread_mutex_lock(&ev_lock);
    while (ev->value < value)
        pthread_cond_wait(&ev_cond, &ev_lock);
    bst_status st = ev->failed;
    char msg[sizeof ev->msg];
    memcpy(msg, ev->msg, sizeof msg);
    ev->failed = BST_OK;
    pthread_mutex_unlock(&ev_lock);
    if (st != BST_OK)
        d->ctx->host->set_error("%s", msg);
    return st;
}
#endif

#ifdef TINY_EVENTS
static bst_status tiny_stale_node_timing(void *device, void *executable, uint32_t enable)
{
    (void)device;
    (void)executable;
    (void)enable;
    return BST_ERR_INTERNAL; /* never called: see the entry */
}

static bst_status tiny_stale_node_times(void *device, void *executable, bst_node_time *out,
                                        uint32_t capacity, uint32_t *out_count)
{
    (void)device;
    (void)executable;
    (void)out;
    (void)capacity;
    (void)out_count;
    return BST_ERR_INTERNAL;
}
#endif

BST_BACKEND_ENTRY
{
    if (host_abi < 1) {
        host->set_error(TINY_NAME ": needs ABI version 1, host offers %u", host_abi);
        return BST_ERR_ABI;
    }
    tiny_ctx *t = host->alloc(sizeof *t, sizeof(void *));
    if (!t) {
        host->set_error(TINY_NAME ": out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    t->host = host;
    bst_backend_api api;
    memset(&api, 0, sizeof api);
    api.struct_size = sizeof api;
#ifdef TINY_EVENTS
    api.abi_version = host_abi < 2 ? host_abi : 2;
    api.event_create = tiny_event_create;
    api.event_destroy = tiny_event_destroy;
    api.execute_async = tiny_execute_async;
    api.event_wait = tiny_event_wait;
    /* Version 3's node times, written by a plugin that answered 2 (as one might that fills the
     * whole table of a newer header): the host must clear them, never call them. */
    api.node_timing = tiny_stale_node_timing;
    api.node_times = tiny_stale_node_times;
#else
    api.struct_size = (uint32_t)BST_BACKEND_API_SIZE_V1; /* built as a version-1 plugin */
    api.abi_version = 1;
#endif
    api.name = TINY_NAME;
    api.version = "1.0-test";
    api.ctx = t;
    api.destroy = tiny_destroy;
    api.enumerate = tiny_enumerate;
    api.device_open = tiny_device_open;
    api.device_close = tiny_device_close;
    api.query = tiny_query;
    api.buffer_alloc = tiny_buffer_alloc;
    api.buffer_free = tiny_buffer_free;
    api.buffer_write = tiny_buffer_write;
    api.buffer_read = tiny_buffer_read;
    api.compile = tiny_compile;
    api.executable_free = tiny_executable_free;
#ifndef TINY_NULL_EXECUTE
    api.execute = tiny_execute;
#endif
#ifdef TINY_EVENTS
    host->log(BST_LOG_INFO, TINY_NAME ": entry, ABI %u", api.abi_version);
#endif
#ifdef TINY_STRUCT_SIZE
    /* Pretend to be built against an older, shorter header. */
    api.struct_size = (uint32_t)(TINY_STRUCT_SIZE);
#endif
    /* Copy no more than the host's struct holds. */
    size_t n = out->struct_size < api.struct_size ? out->struct_size : api.struct_size;
    memcpy(out, &api, n);
    out->struct_size = (uint32_t)n;
    return BST_OK;
}
