/*
 * Entry, device enumeration and device lifetime of the simulated NPU.
 *
 * One device per plugin: its cost model comes from BASTION_NPU_SIM_DEVICE (a shipped name,
 * npu-small by default or npu-large, or a path to a description file). Exposing both shipped
 * chips as two devices at once was rejected: static placement would put everything on the
 * first, and a vendor estimating one chip wants exactly one device in `bastion explain`.
 */
#include "npu_backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const bst_host_api *npu_host;
bstc_plugin npu_plugin = {.name = NPU_BACKEND_NAME};

float npu_round_f16(float x)
{
    /* Round to the nearest f16 (ties to even), including subnormals, and back. */
    if (!(x == x) || x == 0.0f)
        return x;
    float a = x < 0 ? -x : x;
    if (a >= 65520.0f) /* rounds to infinity in f16 */
        return x < 0 ? -(float)INFINITY : (float)INFINITY;
    int e;
    (void)frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int exp_unit = e - 11; /* 11 significant bits: ulp = 2^(e-11) */
    if (exp_unit < -24)
        exp_unit = -24; /* subnormal spacing of f16 */
    float q = ldexpf(nearbyintf(ldexpf(a, -exp_unit)), exp_unit);
    return x < 0 ? -q : q;
}

bst_status npu_injected_fault(const char *site) { return bstc_injected_fault(&npu_plugin, site); }

static npu_ctx g_ctx = {.magic = NPU_MAGIC_CTX};

static void ctx_destroy(void *ctx)
{
    (void)ctx;
}

static bst_status fill_info(const npu_desc *d, bst_device_info *info)
{
    uint32_t size = info->struct_size;
    memset(info, 0, sizeof *info);
    info->struct_size = size;
    info->kind = BST_DEVICE_NPU;
    snprintf(info->name, sizeof info->name, "Simulated NPU %s", d->model);
    snprintf(info->vendor, sizeof info->vendor, "Bastion (simulated)");
    snprintf(info->driver_version, sizeof info->driver_version, "npu-sim %s",
             NPU_BACKEND_VERSION);
    info->memory_bytes = d->memory_bytes;
    info->max_alloc_bytes = d->memory_bytes;
    info->max_binding_bytes = d->memory_bytes;
    info->unified_memory = false;
    info->self_threaded = false;
    uint64_t h = bstc_fnv1a(d->hash, NPU_BACKEND_VERSION, sizeof NPU_BACKEND_VERSION);
    info->fingerprint = h ? h : 1;
    return BST_OK;
}

static bst_status npu_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                uint32_t capacity, uint32_t *out_count)
{
    if (ctx != &g_ctx) {
        npu_host->set_error("npu-sim: enumerate: bad arguments");
        return BST_ERR_INVALID_ARG;
    }
    npu_desc d;
    bst_status st = npu_desc_load(secure_getenv("BASTION_NPU_SIM_DEVICE"), &d);
    if (st != BST_OK)
        return st;
    bst_device_info full;
    full.struct_size = (uint32_t)sizeof full;
    fill_info(&d, &full);
    return bstc_enumerate_out(&npu_plugin, out_infos, stride, capacity, out_count, &full,
                              sizeof full, 1);
}

npu_device *npu_device_get(void *handle)
{
    npu_device *d = handle;
    if (!d || d->magic != NPU_MAGIC_DEVICE) {
        npu_host->set_error("npu-sim: not a device handle");
        return NULL;
    }
    return d;
}

static bst_status npu_device_open(void *ctx, uint32_t index, void **out_device)
{
    if (ctx != &g_ctx || index != 0 || !out_device) {
        npu_host->set_error("npu-sim: device_open: bad arguments (index %u)", index);
        return BST_ERR_INVALID_ARG;
    }
    *out_device = NULL;
    bst_status st = npu_injected_fault("device_open");
    if (st != BST_OK)
        return st;
    npu_device *d = npu_host->alloc(sizeof *d, 64);
    if (!d) {
        npu_host->set_error("npu-sim: out of memory opening the device");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(d, 0, sizeof *d);
    st = npu_desc_load(secure_getenv("BASTION_NPU_SIM_DEVICE"), &d->desc);
    if (st != BST_OK) {
        npu_host->free(d);
        return st;
    }
    d->magic = NPU_MAGIC_DEVICE;
    d->info.struct_size = (uint32_t)sizeof d->info;
    fill_info(&d->desc, &d->info);
    npu_host->log(BST_LOG_DEBUG, "npu-sim: device %s opened (%.0f MHz, %.0f int8 MACs/cycle)",
                  d->desc.model, d->desc.clock_mhz, d->desc.macs_int8);
    *out_device = d;
    return BST_OK;
}

static void npu_device_close(void *device)
{
    npu_device *d = npu_device_get(device);
    if (!d)
        return;
    npu_host->log(BST_LOG_DEBUG,
                  "npu-sim: device %s closed: %llu DMA transfers, %llu bytes in, %llu bytes out, "
                  "%.3f ms modelled DMA time",
                  d->desc.model, (unsigned long long)d->dma_transfers,
                  (unsigned long long)d->dma_bytes_in, (unsigned long long)d->dma_bytes_out,
                  d->dma_total_ns / 1e6);
    d->magic = 0;
    npu_host->free(d);
}

BST_BACKEND_ENTRY
{
    uint32_t size = 0;
    bst_status st = bstc_entry_begin(&npu_plugin, host, host_abi, out, BSTC_NEEDS_DEQUANTIZE,
                                     &size);
    if (st != BST_OK)
        return st;
    npu_host = host;
    bst_backend_api api;
    memset(&api, 0, sizeof api);
    /* Events (v2) are not offered: the host synchronizes around execute. */
    api.name = NPU_BACKEND_NAME;
    api.version = NPU_BACKEND_VERSION;
    api.ctx = &g_ctx;
    api.destroy = ctx_destroy;
    api.enumerate = npu_enumerate;
    api.device_open = npu_device_open;
    api.device_close = npu_device_close;
    api.query = npu_query;
    api.buffer_alloc = npu_buffer_alloc;
    api.buffer_free = npu_buffer_free;
    api.buffer_write = npu_buffer_write;
    api.buffer_read = npu_buffer_read;
    api.buffer_copy = npu_buffer_copy;
    api.buffer_map = NULL; /* device memory is not host-visible */
    api.prepare_weight = npu_prepare_weight;
    api.compile = npu_compile;
    api.executable_free = npu_executable_free;
    api.execute = npu_execute;
    api.last_execute_ns = npu_last_execute_ns;
    bstc_entry_publish(out, size, host_abi, &api);
    return BST_OK;
}
