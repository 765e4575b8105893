/*
 * runtime/program_events.c — how the executor lets devices run behind its back (ABI v2
 * timeline events) and where it must wait for them.
 *
 * Each device of a program whose backend offers events gets one event. A partition on such a
 * device is submitted with execute_async, waiting on the device's previous submission and
 * signalling the next value, so the host goes on to the next partition at once. The host waits
 * only where it needs a result or must touch memory: before a copy out of or into the device, before
 * running on another CPU-backed device (DESIGN.md "Threads": two CPU-backed devices never run
 * at once), and at the end of a run, so that inputs, outputs and the next run see finished
 * buffers. Backends without events keep the synchronous execute.
 */
#include "runtime/program_internal.h"

#include "graph/status.h"

static const bst_backend_api *api_of(const bst_program *p, uint32_t d)
{
    return &p->ctx->devices[d].plugin->api;
}

static bool offers_events(const bst_backend_api *api)
{
    return api->abi_version >= 2 && api->event_create && api->event_destroy &&
           api->execute_async && api->event_wait;
}

bst_status bsti_prog_events_create(bst_program *p)
{
    for (uint32_t d = 0; d < p->ctx->n_devices; d++) {
        bsti_prog_device *pd = &p->devs[d];
        const bst_backend_api *api = api_of(p, d);
        if (!pd->used || !offers_events(api))
            continue;
        bsti_prog_clear_error();
        void *ev = NULL;
        bst_status st = api->event_create(p->ctx->devices[d].handle, &ev);
        if (st != BST_OK || !ev)
            return bsti_prog_backend_error(p, d, st ? st : BST_ERR_BACKEND, "event_create");
        pd->event = ev;
        pd->submitted = pd->reached = 0;
    }
    return BST_OK;
}

void bsti_prog_events_destroy(bst_program *p)
{
    if (!p->devs)
        return;
    for (uint32_t d = 0; d < p->ctx->n_devices; d++) {
        bsti_prog_device *pd = &p->devs[d];
        if (!pd->event)
            continue;
        /* Nothing may still signal the event when it goes: a failed wait leaves work behind. */
        if (pd->submitted > pd->reached && bsti_prog_wait_device(p, d) != BST_OK)
            bsti_log(BST_LOG_WARN, "%s", bst_last_error());
        api_of(p, d)->event_destroy(p->ctx->devices[d].handle, pd->event);
        pd->event = NULL;
    }
}

bst_status bsti_prog_wait_device(bst_program *p, uint32_t d)
{
    bsti_prog_device *pd = &p->devs[d];
    if (pd->submitted <= pd->reached)
        return BST_OK;
    uint64_t target = pd->submitted;
    bsti_prog_clear_error();
    bst_status st = api_of(p, d)->event_wait(p->ctx->devices[d].handle, pd->event, target,
                                             UINT64_MAX);
    /* Failed or not, the work is over as far as the device can tell us: the status says how. */
    pd->reached = target;
    if (st != BST_OK)
        return bsti_prog_backend_error(p, d, st, "waiting for the device's partitions");
    return BST_OK;
}

bst_status bsti_prog_wait_all(bst_program *p)
{
    bst_status first = BST_OK;
    for (uint32_t d = 0; d < p->ctx->n_devices; d++) {
        bst_status st = bsti_prog_wait_device(p, d);
        if (first == BST_OK)
            first = st;
    }
    return first;
}

/* CPU-backed devices share the cores: before one runs, the others' queued work finishes. */
static bst_status wait_other_cpu_devices(bst_program *p, uint32_t d)
{
    if (p->ctx->devices[d].info.kind != BST_DEVICE_CPU)
        return BST_OK;
    for (uint32_t o = 0; o < p->ctx->n_devices; o++) {
        if (o == d || p->ctx->devices[o].info.kind != BST_DEVICE_CPU)
            continue;
        bst_status st = bsti_prog_wait_device(p, o);
        if (st != BST_OK)
            return st;
    }
    return BST_OK;
}

bst_status bsti_prog_execute(bst_program *p, uint32_t pi, const bst_run_params *rp)
{
    bsti_prog_part *pp = &p->pparts[pi];
    bsti_prog_device *pd = &p->devs[pp->device];
    const bst_backend_api *api = api_of(p, pp->device);
    void *handle = p->ctx->devices[pp->device].handle;
    bst_status st = wait_other_cpu_devices(p, pp->device);
    if (st != BST_OK)
        return st;
    bsti_prog_clear_error();
    if (!pd->event) {
        st = api->execute(handle, pp->executable, pp->bindings, pp->n_bindings, rp);
    } else {
        bst_event_point wait = {.struct_size = (uint32_t)sizeof wait,
                                .event = pd->event,
                                .value = pd->submitted};
        bst_event_point signal = {.struct_size = (uint32_t)sizeof signal,
                                  .event = pd->event,
                                  .value = pd->submitted + 1};
        st = api->execute_async(handle, pp->executable, pp->bindings, pp->n_bindings, rp, &wait,
                                sizeof wait, pd->submitted > 0 ? 1u : 0u, &signal);
        if (st == BST_OK)
            pd->submitted++;
    }
    if (st != BST_OK)
        return bsti_prog_backend_error(p, pp->device, st, "partition %u: execute", pi);
    return BST_OK;
}
