/*
 * The ABI's timeline events (v2) on Vulkan timeline semaphores: an event is one semaphore, and
 * execute_async is a submission that waits on the host's wait points and signals the host's
 * signal point besides the device's own timeline (which keeps every submission in order, so a
 * later transfer or execute never overtakes it).
 *
 * What execute checks after its wait — device time from the timestamp queries, and the shaders'
 * out-of-range flag in the parameter memory — can only be read once the work is done. Each
 * executable submitted asynchronously is therefore kept in the device's in-flight list until a
 * wait shows it complete; event_wait then makes those checks and returns the first failure, as
 * the ABI says a failure found later must be returned.
 */
#include "vk_backend.h"

#include <string.h>

typedef struct vkb_event {
    uint32_t magic;
    vkb_device *dev;
    VkSemaphore sem;
} vkb_event;

static vkb_event *event_get(vkb_device *d, void *handle)
{
    vkb_event *ev = handle;
    return ev && ev->magic == VKB_MAGIC_EVENT && ev->dev == d ? ev : NULL;
}

bst_status vkb_event_create(void *device, void **out_event)
{
    vkb_device *d = device;
    if (!d || d->magic != VKB_MAGIC_DEVICE || !out_event) {
        vkb_host->set_error("vulkan: event_create: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_event = NULL;
    vkb_event *ev = vkb_host->alloc(sizeof *ev, 16);
    if (!ev) {
        vkb_host->set_error("vulkan: event_create: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    VkSemaphoreTypeCreateInfo tci = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
        .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
        .initialValue = 0,
    };
    VkSemaphoreCreateInfo sci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &tci};
    VkResult r = vkb_fault("event");
    if (r == VK_SUCCESS)
        r = vkCreateSemaphore(d->device, &sci, NULL, &ev->sem);
    if (r != VK_SUCCESS) {
        vkb_host->free(ev);
        return vkb_result(d, r, "event_create: vkCreateSemaphore");
    }
    ev->magic = VKB_MAGIC_EVENT;
    ev->dev = d;
    *out_event = ev;
    return BST_OK;
}

void vkb_event_destroy(void *device, void *event)
{
    vkb_device *d = device;
    vkb_event *ev = event_get(d, event);
    if (!ev)
        return;
    ev->magic = 0;
    vkDestroySemaphore(d->device, ev->sem, NULL);
    vkb_host->free(ev);
}

static bst_status track(vkb_device *d, vkb_exec *e)
{
    if (d->n_inflight == d->cap_inflight) {
        uint32_t cap = d->cap_inflight ? 2 * d->cap_inflight : 8;
        vkb_exec **grown = vkb_host->alloc(cap * sizeof *grown, 16);
        if (!grown) {
            vkb_host->set_error("vulkan: execute_async: out of memory");
            return BST_ERR_OUT_OF_MEMORY;
        }
        if (d->n_inflight)
            memcpy(grown, d->inflight, d->n_inflight * sizeof *grown);
        vkb_host->free(d->inflight);
        d->inflight = grown;
        d->cap_inflight = cap;
    }
    d->inflight[d->n_inflight++] = e;
    return BST_OK;
}

/* Finish checks of in-flight executables whose timeline value is <= `reached`. */
static bst_status finish_upto(vkb_device *d, uint64_t reached)
{
    bst_status first = BST_OK;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < d->n_inflight; i++) {
        vkb_exec *e = d->inflight[i];
        if (e->inflight_value > reached) {
            d->inflight[kept++] = e;
            continue;
        }
        e->inflight_value = 0;
        bst_status st = vkb_exec_finish(d, e, 0);
        if (first == BST_OK)
            first = st;
    }
    d->n_inflight = kept;
    return first;
}

bst_status vkb_settle_completed(vkb_device *d)
{
    uint64_t reached = 0;
    VkResult r = vkGetSemaphoreCounterValue(d->device, d->timeline, &reached);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkGetSemaphoreCounterValue");
    return finish_upto(d, reached);
}

bst_status vkb_exec_settle(vkb_device *d, vkb_exec *e)
{
    if (!e->inflight_value)
        return BST_OK;
    bst_status st = vkb_wait_semaphore(d, d->timeline, e->inflight_value, UINT64_MAX, "execute");
    if (st != BST_OK)
        return st;
    return finish_upto(d, e->inflight_value);
}

bst_status vkb_execute_async(void *device, void *executable, void *const *buffers,
                             uint32_t n_buffers, const bst_run_params *params,
                             const bst_event_point *waits, size_t waits_stride, uint32_t n_waits,
                             const bst_event_point *signal)
{
    vkb_device *d = device;
    vkb_exec *e = executable;
    if (!vkb_exec_valid(d, e)) {
        vkb_host->set_error("vulkan: execute_async: not a vulkan executable of this device");
        return BST_ERR_INVALID_ARG;
    }
    if (n_waits > VKB_MAX_WAITS || (n_waits && (!waits || waits_stride < sizeof *waits))) {
        vkb_host->set_error("vulkan: execute_async: %u wait points (stride %zu); at most %u of "
                            "at least %zu bytes each",
                            n_waits, waits_stride, VKB_MAX_WAITS, sizeof *waits);
        return BST_ERR_INVALID_ARG;
    }
    vkb_sync sync = {.n_wait = n_waits};
    for (uint32_t i = 0; i < n_waits; i++) {
        const bst_event_point *w =
            (const bst_event_point *)(const void *)((const char *)waits + i * waits_stride);
        vkb_event *ev = event_get(d, w->event);
        if (!ev) {
            vkb_host->set_error("vulkan: execute_async: wait point %u is not an event of this "
                                "device",
                                i);
            return BST_ERR_INVALID_ARG;
        }
        sync.wait[i] = ev->sem;
        sync.wait_value[i] = w->value;
    }
    if (signal) {
        vkb_event *ev = event_get(d, signal->event);
        if (!ev) {
            vkb_host->set_error("vulkan: execute_async: the signal point is not an event of this "
                                "device");
            return BST_ERR_INVALID_ARG;
        }
        sync.signal = ev->sem;
        sync.signal_value = signal->value;
    }
    bst_status st = vkb_exec_prepare(d, e, buffers, n_buffers, params);
    if (st == BST_OK)
        st = track(d, e);
    if (st != BST_OK)
        return st;
    /* A partition without dispatches still signals, so the host's timeline holds. */
    st = vkb_submit(d, false, e->n_dispatch ? e->cb : VK_NULL_HANDLE, &sync, "execute",
                    "execute_async");
    if (st != BST_OK) {
        d->n_inflight--;
        return st;
    }
    e->inflight_value = d->timeline_value;
    return BST_OK;
}

bst_status vkb_event_wait(void *device, void *event, uint64_t value, uint64_t timeout_ns)
{
    vkb_device *d = device;
    if (!d || d->magic != VKB_MAGIC_DEVICE) {
        vkb_host->set_error("vulkan: event_wait: not a vulkan device");
        return BST_ERR_INVALID_ARG;
    }
    vkb_event *ev = event_get(d, event);
    if (!ev) {
        vkb_host->set_error("vulkan: event_wait: not an event of this device");
        return BST_ERR_INVALID_ARG;
    }
    bst_status st = vkb_wait_semaphore(d, ev->sem, value, timeout_ns, "event_wait");
    if (st != BST_OK)
        return st;
    return vkb_settle_completed(d);
}

void vkb_events_close(vkb_device *d)
{
    /* The device is idle when this runs (vkDeviceWaitIdle). */
    d->n_inflight = 0;
    vkb_host->free(d->inflight);
    d->inflight = NULL;
}
