/*
 * Opening and closing a Vulkan device: queue families (a compute queue, and a dedicated transfer
 * queue where the device has one), the features the shaders need, command pools, the timeline
 * semaphore that orders every submission, memory pools and pipelines. Also the one submit-and-
 * wait path every operation goes through, so device loss and timeouts are handled in one place.
 *
 * BASTION_VULKAN_FORCE (comma-separated, read when a device opens) makes a capable device take
 * its fallback paths, so tests can cover them on any machine: "no-s16" (packed 32-bit words
 * instead of 16/8-bit storage), "no-subgroup" (shared-memory reductions), "staging" (never map
 * device memory: uploads and downloads through staging buffers and copy commands).
 * BASTION_VULKAN_FUSED=1 / 0 offers fused attention on a CPU-type device (lavapipe) / hides it
 * on a GPU.
 */
#include "vk_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A submission that has not finished after this long is treated as a lost device: a plugin must
 * never block its caller forever. */
#define SUBMIT_TIMEOUT_NS (UINT64_C(120) * 1000000000u)

bst_status vkb_alive(vkb_device *d, const char *what)
{
    if (!d->lost)
        return BST_OK;
    vkb_host->set_error("vulkan: %s: device \"%s\" was lost earlier; its work must be re-placed",
                        what, d->phys->info.name);
    return BST_ERR_DEVICE_LOST;
}

static bool forced(const char *list, const char *word)
{
    if (!list)
        return false;
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

static void pick_queues(vkb_device *d, uint32_t *out_timestamp_bits)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(d->pd, &n, NULL);
    VkQueueFamilyProperties qf[64];
    if (n > 64)
        n = 64;
    vkGetPhysicalDeviceQueueFamilyProperties(d->pd, &n, qf);
    uint32_t compute = UINT32_MAX, transfer = UINT32_MAX;
    /* A compute family without graphics is the GPU's asynchronous compute engine: prefer it. */
    for (uint32_t i = 0; i < n && compute == UINT32_MAX; i++)
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && !(qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT))
            compute = i;
    for (uint32_t i = 0; i < n && compute == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            compute = i;
    /* A transfer-only family is a DMA engine: uploads there overlap nothing else here (every
     * call waits), but they keep the compute queue free of copy work. */
    for (uint32_t i = 0; i < n && transfer == UINT32_MAX; i++)
        if ((qf[i].queueFlags & VK_QUEUE_TRANSFER_BIT) &&
            !(qf[i].queueFlags & (VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT)))
            transfer = i;
    d->qf_compute = compute;
    d->qf_transfer = transfer == UINT32_MAX ? compute : transfer;
    *out_timestamp_bits = qf[compute].timestampValidBits;
}

static bst_status create_logical(vkb_device *d, bool s16)
{
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci[2] = {
        {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = d->qf_compute,
         .queueCount = 1, .pQueuePriorities = &prio},
        {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = d->qf_transfer,
         .queueCount = 1, .pQueuePriorities = &prio},
    };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .storageBuffer16BitAccess = s16,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .pNext = &f11,
        .bufferDeviceAddress = VK_TRUE,
        .timelineSemaphore = VK_TRUE,
        .storageBuffer8BitAccess = s16,
    };
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                    .pNext = &f12};
    VkDeviceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = d->qf_transfer != d->qf_compute ? 2u : 1u,
        .pQueueCreateInfos = qci,
    };
    VkResult r = vkb_fault("device_open");
    if (r == VK_SUCCESS)
        r = vkCreateDevice(d->pd, &ci, NULL, &d->device);
    if (r != VK_SUCCESS) {
        d->device = VK_NULL_HANDLE;
        return vkb_result(d, r, "vkCreateDevice");
    }
    vkGetDeviceQueue(d->device, d->qf_compute, 0, &d->q_compute);
    vkGetDeviceQueue(d->device, d->qf_transfer, 0, &d->q_transfer);
    return BST_OK;
}

static bst_status create_sync(vkb_device *d)
{
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = d->qf_compute,
    };
    VkResult r = vkCreateCommandPool(d->device, &pci, NULL, &d->cp_compute);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkCreateCommandPool");
    pci.queueFamilyIndex = d->qf_transfer;
    r = vkCreateCommandPool(d->device, &pci, NULL, &d->cp_transfer);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = d->cp_transfer,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    r = vkAllocateCommandBuffers(d->device, &ai, &d->cb_transfer);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkAllocateCommandBuffers");
    VkSemaphoreTypeCreateInfo tci = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
        .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
        .initialValue = 0,
    };
    VkSemaphoreCreateInfo sci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &tci};
    r = vkCreateSemaphore(d->device, &sci, NULL, &d->timeline);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkCreateSemaphore");
    d->timeline_value = 0;
    VkPushConstantRange range = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .offset = 0,
        .size = (uint32_t)sizeof(vkb_push),
    };
    VkPipelineLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &range,
    };
    r = vkCreatePipelineLayout(d->device, &lci, NULL, &d->layout);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkCreatePipelineLayout");
    return BST_OK;
}

void vkb_device_close(void *device)
{
    vkb_device *d = device;
    if (!d || d->magic != VKB_MAGIC_DEVICE)
        return;
    d->magic = 0;
    if (d->device) {
        (void)vkDeviceWaitIdle(d->device); /* a lost device still gets torn down */
        vkb_events_close(d);
        vkb_pipelines_destroy(d);
        vkb_memory_destroy(d);
        if (d->layout)
            vkDestroyPipelineLayout(d->device, d->layout, NULL);
        if (d->timeline)
            vkDestroySemaphore(d->device, d->timeline, NULL);
        if (d->cp_transfer)
            vkDestroyCommandPool(d->device, d->cp_transfer, NULL);
        if (d->cp_compute)
            vkDestroyCommandPool(d->device, d->cp_compute, NULL);
        vkDestroyDevice(d->device, NULL);
    }
    vkb_host->free(d);
}

bst_status vkb_device_open(void *ctx, uint32_t index, void **out_device)
{
    vkb_ctx *c = ctx;
    if (!out_device || !c || c->magic != VKB_MAGIC_CTX) {
        vkb_host->set_error("vulkan: device_open: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_device = NULL;
    if (index >= c->n_phys) {
        vkb_host->set_error("vulkan: device_open: no device %u (there are %u)", index, c->n_phys);
        return BST_ERR_NOT_FOUND;
    }
    vkb_device *d = vkb_host->alloc(sizeof *d, 64);
    if (!d) {
        vkb_host->set_error("vulkan: device_open: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(d, 0, sizeof *d);
    d->magic = VKB_MAGIC_DEVICE;
    d->ctx = c;
    d->phys = &c->phys[index];
    d->pd = d->phys->handle;
    vkGetPhysicalDeviceProperties(d->pd, &d->props);
    vkGetPhysicalDeviceMemoryProperties(d->pd, &d->mem_props);

    const char *force = secure_getenv("BASTION_VULKAN_FORCE");
    d->variant = d->phys->variants;
    if (forced(force, "no-s16"))
        d->variant &= ~(uint32_t)VKB_VAR_S16;
    if (forced(force, "no-subgroup"))
        d->variant &= ~(uint32_t)VKB_VAR_SG;
    const char *fused = secure_getenv("BASTION_VULKAN_FUSED");
    d->offer_fused = fused && fused[0] ? strcmp(fused, "0") != 0
                                       : d->phys->info.kind != BST_DEVICE_CPU;
    uint32_t groups = d->props.limits.maxComputeWorkGroupCount[0];
    d->max_groups = groups < 65535u ? groups : 65535u;
    d->max_tensor_bytes = d->phys->info.max_binding_bytes;

    uint32_t ts_bits = 0;
    pick_queues(d, &ts_bits);
    d->timestamps = ts_bits > 0 && d->props.limits.timestampPeriod > 0.0f;
    d->timestamp_mask = ts_bits >= 64 ? UINT64_MAX : (UINT64_C(1) << ts_bits) - 1;
    bst_status st = create_logical(d, (d->variant & VKB_VAR_S16) != 0);
    if (st == BST_OK)
        st = create_sync(d);
    if (st == BST_OK)
        st = vkb_memory_init(d);
    if (st == BST_OK && forced(force, "staging"))
        d->pools[VKB_POOL_DEVICE].mapped = false;
    if (st == BST_OK)
        st = vkb_pipelines_init(d);
    if (st != BST_OK) {
        vkb_device_close(d);
        return st;
    }
    vkb_host->log(BST_LOG_INFO,
                  "vulkan: opened \"%s\" (%s; queues: compute family %u, transfer family %u; "
                  "subgroup %u; shaders: %s storage, %s reductions; %s memory)",
                  d->phys->info.name, d->phys->info.driver_version, d->qf_compute, d->qf_transfer,
                  d->phys->subgroup_size, (d->variant & VKB_VAR_S16) ? "16/8-bit" : "32-bit word",
                  (d->variant & VKB_VAR_SG) ? "subgroup" : "shared-memory",
                  d->pools[VKB_POOL_DEVICE].mapped ? "mapped device" : "staged device");
    if (d->offer_fused != (d->phys->info.kind != BST_DEVICE_CPU))
        vkb_host->log(BST_LOG_INFO, "vulkan: fused ops %s on \"%s\" (BASTION_VULKAN_FUSED)",
                      d->offer_fused ? "offered" : "not offered", d->phys->info.name);
    *out_device = d;
    return BST_OK;
}

bst_status vkb_submit(vkb_device *d, bool transfer, VkCommandBuffer cb, const vkb_sync *extra,
                      const char *fault_site, const char *what)
{
    bst_status st = vkb_alive(d, what);
    if (st != BST_OK)
        return st;
    /* Every submission waits on the previous one, whichever queue ran it: a full memory
     * dependency, so what a transfer wrote is visible to the next dispatch and the other way
     * round. `extra` adds the caller's own wait and signal points. */
    VkSemaphore waits[1 + VKB_MAX_WAITS], signals[2];
    uint64_t wait_values[1 + VKB_MAX_WAITS], signal_values[2];
    VkPipelineStageFlags stages[1 + VKB_MAX_WAITS];
    uint32_t n_waits = 1, n_signals = 1;
    waits[0] = d->timeline;
    wait_values[0] = d->timeline_value;
    signals[0] = d->timeline;
    signal_values[0] = d->timeline_value + 1;
    if (extra) {
        for (uint32_t i = 0; i < extra->n_wait; i++) {
            waits[n_waits] = extra->wait[i];
            wait_values[n_waits++] = extra->wait_value[i];
        }
        if (extra->signal) {
            signals[n_signals] = extra->signal;
            signal_values[n_signals++] = extra->signal_value;
        }
    }
    for (uint32_t i = 0; i < n_waits; i++)
        stages[i] = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkTimelineSemaphoreSubmitInfo tl = {
        .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
        .waitSemaphoreValueCount = n_waits,
        .pWaitSemaphoreValues = wait_values,
        .signalSemaphoreValueCount = n_signals,
        .pSignalSemaphoreValues = signal_values,
    };
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .pNext = &tl,
        .waitSemaphoreCount = n_waits,
        .pWaitSemaphores = waits,
        .pWaitDstStageMask = stages,
        .commandBufferCount = cb ? 1u : 0u,
        .pCommandBuffers = cb ? &cb : NULL,
        .signalSemaphoreCount = n_signals,
        .pSignalSemaphores = signals,
    };
    VkResult r = fault_site ? vkb_fault(fault_site) : VK_SUCCESS;
    if (r == VK_SUCCESS)
        r = vkQueueSubmit(transfer ? d->q_transfer : d->q_compute, 1, &si, VK_NULL_HANDLE);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, what);
    d->timeline_value = signal_values[0];
    return BST_OK;
}

bst_status vkb_wait_semaphore(vkb_device *d, VkSemaphore sem, uint64_t value, uint64_t timeout_ns,
                              const char *what)
{
    VkSemaphoreWaitInfo wi = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
        .semaphoreCount = 1,
        .pSemaphores = &sem,
        .pValues = &value,
    };
    bool forever = timeout_ns == UINT64_MAX;
    VkResult r = vkWaitSemaphores(d->device, &wi, forever ? SUBMIT_TIMEOUT_NS : timeout_ns);
    if (r == VK_TIMEOUT && !forever) {
        vkb_host->set_error("vulkan: %s: not finished after %llu ns", what,
                            (unsigned long long)timeout_ns);
        return BST_ERR_TIMEOUT;
    }
    if (r == VK_TIMEOUT) {
        d->lost = true;
        vkb_host->set_error("vulkan: %s did not finish within %llu s; device \"%s\" is treated "
                            "as lost",
                            what, (unsigned long long)(SUBMIT_TIMEOUT_NS / 1000000000u),
                            d->phys->info.name);
        return BST_ERR_DEVICE_LOST;
    }
    return vkb_result(d, r, what);
}

bst_status vkb_submit_wait(vkb_device *d, bool transfer, VkCommandBuffer cb,
                           const char *fault_site, const char *what)
{
    bst_status st = vkb_submit(d, transfer, cb, NULL, fault_site, what);
    if (st != BST_OK)
        return st;
    return vkb_wait_semaphore(d, d->timeline, d->timeline_value, UINT64_MAX, what);
}

bst_status vkb_oneshot_begin(vkb_device *d, VkCommandBuffer *out_cb)
{
    bst_status st = vkb_alive(d, "transfer");
    if (st != BST_OK)
        return st;
    VkResult r = vkResetCommandBuffer(d->cb_transfer, 0);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    r = vkBeginCommandBuffer(d->cb_transfer, &bi);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkBeginCommandBuffer");
    *out_cb = d->cb_transfer;
    return BST_OK;
}

bst_status vkb_oneshot_submit(vkb_device *d, const char *what)
{
    /* The host reads what a transfer wrote into mapped staging memory right after the wait. */
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
    };
    vkCmdPipelineBarrier(d->cb_transfer, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
    VkResult r = vkEndCommandBuffer(d->cb_transfer);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkEndCommandBuffer");
    return vkb_submit_wait(d, true, d->cb_transfer, NULL, what);
}
