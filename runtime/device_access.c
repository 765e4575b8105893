/*
 * runtime/device_access.c — the experimental direct-device entry point (bastion.h,
 * BST_EXPERIMENTAL_DEVICE_API): a device's plugin table and opened handle, for tools that must
 * run one kernel variant on one device at a time — `bastion bench ops` and conformance kits —
 * which the program API deliberately hides (it places nodes itself and plans the buffers).
 * The device is opened through the context, so its start-up failure stays sticky and its thread
 * count is set exactly as for programs.
 */
#include "runtime/runtime.h"

#include "graph/status.h"

BST_API bst_status bst_context_device_backend(bst_context *context, uint32_t index,
                                              const bst_backend_api **out_api,
                                              void **out_device)
{
    if (out_api)
        *out_api = NULL;
    if (out_device)
        *out_device = NULL;
    if (!context || !out_api || !out_device)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_device_backend: NULL argument");
    if (index >= context->n_devices)
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "bst_context_device_backend: index %u out of range (%u devices)", index,
                         context->n_devices);
    void *handle = NULL;
    bst_status st = bsti_device_get(context, index, &handle);
    if (st != BST_OK)
        return st;
    *out_api = &context->devices[index].plugin->api;
    *out_device = handle;
    return BST_OK;
}
