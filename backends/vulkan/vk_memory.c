/*
 * Device memory: a sub-allocator over a few large VkDeviceMemory blocks per pool (drivers limit
 * the number of allocations, and each costs a kernel call), each block carrying one VkBuffer
 * over all of it so a sub-allocation is just (block, offset) with a device address. Requests of
 * half a block or more get a dedicated block.
 *
 * Two pools: tensors live in device-local memory, which on unified-memory devices (integrated
 * GPUs, lavapipe) is also host-visible and stays mapped, so writes and reads are memcpy; on
 * discrete GPUs they go through a staging buffer from the host pool and copy commands on the
 * transfer queue. The host pool also holds executables' parameter uploads.
 *
 * New buffers are zeroed (a state such as the KV cache starts defined, as on the CPU backend).
 */
#include "vk_backend.h"

#include <string.h>

#define ALIGN 256u
#define STAGING_BYTES (UINT64_C(16) << 20)

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static VkBufferUsageFlags usage_flags(void)
{
    return VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
           VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT |
           VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
}

static VkResult create_buffer(vkb_device *d, uint64_t size, VkBuffer *out)
{
    uint32_t families[2] = {d->qf_compute, d->qf_transfer};
    bool shared = d->qf_compute != d->qf_transfer;
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage_flags(),
        /* Both queues touch every buffer; concurrent sharing spares ownership transfers. */
        .sharingMode = shared ? VK_SHARING_MODE_CONCURRENT : VK_SHARING_MODE_EXCLUSIVE,
        .queueFamilyIndexCount = shared ? 2u : 0u,
        .pQueueFamilyIndices = shared ? families : NULL,
    };
    return vkCreateBuffer(d->device, &bci, NULL, out);
}

/* The memory type with all of `want` among `bits`, or UINT32_MAX. */
static uint32_t find_type(const vkb_device *d, uint32_t bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < d->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (d->mem_props.memoryTypes[i].propertyFlags & want) == want)
            return i;
    return UINT32_MAX;
}

static uint64_t heap_size(const vkb_device *d, uint32_t type)
{
    return d->mem_props.memoryHeaps[d->mem_props.memoryTypes[type].heapIndex].size;
}

bst_status vkb_memory_init(vkb_device *d)
{
    /* Which memory types a buffer of ours may live in. */
    VkBuffer probe;
    VkResult r = create_buffer(d, ALIGN, &probe);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkCreateBuffer");
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d->device, probe, &req);
    vkDestroyBuffer(d->device, probe, NULL);

    const VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    const VkMemoryPropertyFlags HVC =
        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    uint32_t dev_type = UINT32_MAX;
    if (d->phys->info.unified_memory)
        dev_type = find_type(d, req.memoryTypeBits, DL | HVC);
    if (dev_type == UINT32_MAX)
        dev_type = find_type(d, req.memoryTypeBits, DL);
    if (dev_type == UINT32_MAX)
        dev_type = find_type(d, req.memoryTypeBits, HVC);
    uint32_t host_type = find_type(d, req.memoryTypeBits, HVC | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (host_type == UINT32_MAX)
        host_type = find_type(d, req.memoryTypeBits, HVC);
    if (dev_type == UINT32_MAX || host_type == UINT32_MAX) {
        vkb_host->set_error("vulkan: \"%s\" offers no memory type for storage buffers",
                            d->phys->info.name);
        return BST_ERR_BACKEND;
    }
    uint64_t max_alloc = d->phys->info.max_alloc_bytes;
    vkb_pool *dp = &d->pools[VKB_POOL_DEVICE], *hp = &d->pools[VKB_POOL_HOST];
    dp->type_index = dev_type;
    dp->mapped = (d->mem_props.memoryTypes[dev_type].propertyFlags & HVC) == HVC;
    dp->block_size = UINT64_C(64) << 20;
    if (dp->block_size > heap_size(d, dev_type) / 8)
        dp->block_size = round_up(heap_size(d, dev_type) / 8 + 1, ALIGN);
    hp->type_index = host_type;
    hp->mapped = true;
    hp->block_size = UINT64_C(16) << 20;
    for (int i = 0; i < VKB_POOL_COUNT; i++)
        if (d->pools[i].block_size > max_alloc)
            d->pools[i].block_size = max_alloc / ALIGN * ALIGN;
    return BST_OK;
}

static void block_destroy(vkb_device *d, vkb_block *b)
{
    if (!b)
        return;
    if (b->buffer)
        vkDestroyBuffer(d->device, b->buffer, NULL);
    if (b->memory) {
        if (b->map)
            vkUnmapMemory(d->device, b->memory);
        vkFreeMemory(d->device, b->memory, NULL);
    }
    vkb_host->free(b->free);
    vkb_host->free(b);
}

void vkb_memory_destroy(vkb_device *d)
{
    if (d->staging)
        vkb_free(d->staging);
    d->staging = NULL;
    for (int i = 0; i < VKB_POOL_COUNT; i++) {
        vkb_pool *p = &d->pools[i];
        for (uint32_t k = 0; k < p->n_blocks; k++)
            block_destroy(d, p->blocks[k]);
        vkb_host->free(p->blocks);
        p->blocks = NULL;
        p->n_blocks = p->cap_blocks = 0;
    }
}

static bst_status block_create(vkb_device *d, vkb_pool *p, uint64_t size, bool dedicated,
                               vkb_block **out)
{
    vkb_block *b = vkb_host->alloc(sizeof *b, 16);
    if (!b) {
        vkb_host->set_error("vulkan: out of host memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(b, 0, sizeof *b);
    b->size = size;
    b->dedicated = dedicated;
    VkResult r = create_buffer(d, size, &b->buffer);
    const char *what = "vkCreateBuffer";
    if (r == VK_SUCCESS) {
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(d->device, b->buffer, &req);
        VkMemoryAllocateFlagsInfo flags = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
            .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT,
        };
        VkMemoryAllocateInfo ai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .pNext = &flags,
            .allocationSize = req.size,
            .memoryTypeIndex = p->type_index,
        };
        what = "vkAllocateMemory";
        if (!(req.memoryTypeBits & (1u << p->type_index)))
            r = VK_ERROR_FEATURE_NOT_PRESENT;
        else
            r = vkAllocateMemory(d->device, &ai, NULL, &b->memory);
    }
    if (r == VK_SUCCESS) {
        what = "vkBindBufferMemory";
        r = vkBindBufferMemory(d->device, b->buffer, b->memory, 0);
    }
    /* The device pool's memory may be host-visible while we stage anyway (forced for tests):
     * then it is simply not mapped. */
    if (r == VK_SUCCESS && p->mapped) {
        void *ptr = NULL;
        what = "vkMapMemory";
        r = vkMapMemory(d->device, b->memory, 0, VK_WHOLE_SIZE, 0, &ptr);
        b->map = ptr;
    }
    if (r != VK_SUCCESS) {
        block_destroy(d, b);
        return vkb_result(d, r, what);
    }
    VkBufferDeviceAddressInfo ai = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO,
                                    .buffer = b->buffer};
    b->address = vkGetBufferDeviceAddress(d->device, &ai);
    b->free = vkb_host->alloc(8 * sizeof *b->free, 16);
    if (!b->free) {
        block_destroy(d, b);
        vkb_host->set_error("vulkan: out of host memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    b->cap_free = 8;
    b->n_free = 1;
    b->free[0] = (vkb_range){0, size};
    if (p->n_blocks == p->cap_blocks) {
        uint32_t cap = p->cap_blocks ? p->cap_blocks * 2 : 8;
        vkb_block **nb = vkb_host->alloc(cap * sizeof *nb, 16);
        if (!nb) {
            block_destroy(d, b);
            vkb_host->set_error("vulkan: out of host memory");
            return BST_ERR_OUT_OF_MEMORY;
        }
        if (p->n_blocks)
            memcpy(nb, p->blocks, p->n_blocks * sizeof *nb);
        vkb_host->free(p->blocks);
        p->blocks = nb;
        p->cap_blocks = cap;
    }
    p->blocks[p->n_blocks++] = b;
    *out = b;
    return BST_OK;
}

/* First fit; false when no range is large enough. */
static bool range_take(vkb_block *b, uint64_t size, uint64_t *out_offset)
{
    for (uint32_t i = 0; i < b->n_free; i++) {
        if (b->free[i].size < size)
            continue;
        *out_offset = b->free[i].offset;
        b->free[i].offset += size;
        b->free[i].size -= size;
        if (b->free[i].size == 0) {
            memmove(&b->free[i], &b->free[i + 1], (b->n_free - i - 1) * sizeof *b->free);
            b->n_free--;
        }
        return true;
    }
    return false;
}

/* Returns [offset, offset + size) to the block, merging neighbours. False only when the range
 * list cannot grow (host OOM): the range is then leaked, never handed out twice. */
static bool range_give(vkb_block *b, uint64_t offset, uint64_t size)
{
    uint32_t i = 0;
    while (i < b->n_free && b->free[i].offset < offset)
        i++;
    bool merge_prev = i > 0 && b->free[i - 1].offset + b->free[i - 1].size == offset;
    bool merge_next = i < b->n_free && offset + size == b->free[i].offset;
    if (merge_prev && merge_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (b->n_free - i - 1) * sizeof *b->free);
        b->n_free--;
        return true;
    }
    if (merge_prev) {
        b->free[i - 1].size += size;
        return true;
    }
    if (merge_next) {
        b->free[i].offset = offset;
        b->free[i].size += size;
        return true;
    }
    if (b->n_free == b->cap_free) {
        uint32_t cap = b->cap_free * 2;
        vkb_range *nr = vkb_host->alloc(cap * sizeof *nr, 16);
        if (!nr)
            return false;
        memcpy(nr, b->free, b->n_free * sizeof *nr);
        vkb_host->free(b->free);
        b->free = nr;
        b->cap_free = cap;
    }
    memmove(&b->free[i + 1], &b->free[i], (b->n_free - i) * sizeof *b->free);
    b->free[i] = (vkb_range){offset, size};
    b->n_free++;
    return true;
}

static bst_status zero_fill(vkb_device *d, vkb_buffer *b)
{
    uint64_t bytes = round_up(b->size ? b->size : 1, 4);
    uint8_t *map = vkb_map(b);
    if (map) {
        memset(map, 0, (size_t)bytes);
        return BST_OK;
    }
    VkCommandBuffer cb;
    bst_status st = vkb_oneshot_begin(d, &cb);
    if (st != BST_OK)
        return st;
    vkCmdFillBuffer(cb, b->block->buffer, b->offset, bytes, 0);
    return vkb_oneshot_submit(d, "zeroing a new buffer");
}

bst_status vkb_alloc(vkb_device *d, vkb_pool_id pool, uint64_t size, vkb_buffer **out)
{
    *out = NULL;
    vkb_pool *p = &d->pools[pool];
    if (size > d->phys->info.max_alloc_bytes || size > UINT64_MAX - ALIGN) {
        vkb_host->set_error("vulkan: a %llu-byte buffer exceeds the device's largest allocation "
                            "(%llu bytes)",
                            (unsigned long long)size,
                            (unsigned long long)d->phys->info.max_alloc_bytes);
        return BST_ERR_DEVICE_OOM;
    }
    uint64_t need = round_up(size ? size : 1, ALIGN);
    vkb_buffer *buf = vkb_host->alloc(sizeof *buf, 16);
    if (!buf) {
        vkb_host->set_error("vulkan: out of host memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(buf, 0, sizeof *buf);
    vkb_block *blk = NULL;
    uint64_t offset = 0;
    bst_status st = BST_OK;
    if (need >= p->block_size / 2) {
        st = block_create(d, p, need, true, &blk);
        if (st == BST_OK)
            (void)range_take(blk, need, &offset);
    } else {
        for (uint32_t i = 0; i < p->n_blocks && !blk; i++)
            if (!p->blocks[i]->dedicated && range_take(p->blocks[i], need, &offset))
                blk = p->blocks[i];
        if (!blk) {
            st = block_create(d, p, p->block_size, false, &blk);
            if (st == BST_OK)
                (void)range_take(blk, need, &offset);
        }
    }
    if (st != BST_OK) {
        vkb_host->free(buf);
        return st;
    }
    buf->magic = VKB_MAGIC_BUFFER;
    buf->dev = d;
    buf->block = blk;
    buf->offset = offset;
    buf->size = size;
    buf->serial = ++d->next_serial;
    if (pool == VKB_POOL_DEVICE && (st = zero_fill(d, buf)) != BST_OK) {
        vkb_free(buf);
        return st;
    }
    *out = buf;
    return BST_OK;
}

static void pool_remove_block(vkb_device *d, vkb_pool *p, vkb_block *b)
{
    for (uint32_t i = 0; i < p->n_blocks; i++)
        if (p->blocks[i] == b) {
            p->blocks[i] = p->blocks[--p->n_blocks];
            break;
        }
    block_destroy(d, b);
}

static bool block_empty(const vkb_block *b)
{
    return b->n_free == 1 && b->free[0].offset == 0 && b->free[0].size == b->size;
}

void vkb_free(vkb_buffer *buf)
{
    if (!buf || buf->magic != VKB_MAGIC_BUFFER)
        return;
    vkb_device *d = buf->dev;
    vkb_block *b = buf->block;
    uint64_t offset = buf->offset, need = round_up(buf->size ? buf->size : 1, ALIGN);
    buf->magic = 0;
    vkb_host->free(buf);
    vkb_pool *p = NULL;
    for (int i = 0; i < VKB_POOL_COUNT && !p; i++)
        for (uint32_t k = 0; k < d->pools[i].n_blocks && !p; k++)
            if (d->pools[i].blocks[k] == b)
                p = &d->pools[i];
    if (!p)
        return;
    if (b->dedicated) {
        pool_remove_block(d, p, b);
        return;
    }
    if (!range_give(b, offset, need))
        vkb_host->log(BST_LOG_WARN, "vulkan: out of host memory; %llu device bytes stay unused",
                      (unsigned long long)need);
    /* Keep one empty block per pool for the next allocation; give back the others. */
    if (block_empty(b)) {
        for (uint32_t k = 0; k < p->n_blocks; k++)
            if (p->blocks[k] != b && !p->blocks[k]->dedicated && block_empty(p->blocks[k])) {
                pool_remove_block(d, p, b);
                return;
            }
    }
}

vkb_buffer *vkb_buffer_get(vkb_device *d, void *handle)
{
    vkb_buffer *b = handle;
    if (!b || b->magic != VKB_MAGIC_BUFFER || b->dev != d)
        return NULL;
    return b;
}

/* --- the buffer entries of the api table --------------------------------------------------- */

static vkb_device *device_of(void *device, const char *what)
{
    vkb_device *d = device;
    if (!d || d->magic != VKB_MAGIC_DEVICE) {
        vkb_host->set_error("vulkan: %s: not a vulkan device", what);
        return NULL;
    }
    return d;
}

static bst_status get_range(vkb_device *d, void *handle, uint64_t offset, uint64_t size,
                            const char *what, vkb_buffer **out)
{
    vkb_buffer *b = vkb_buffer_get(d, handle);
    if (!b) {
        vkb_host->set_error("vulkan: %s: %p is not a buffer of this device", what, handle);
        return BST_ERR_INVALID_ARG;
    }
    if (offset > b->size || size > b->size - offset) {
        vkb_host->set_error("vulkan: %s: range [%llu, +%llu) is outside the %llu-byte buffer",
                            what, (unsigned long long)offset, (unsigned long long)size,
                            (unsigned long long)b->size);
        return BST_ERR_INVALID_ARG;
    }
    *out = b;
    return BST_OK;
}

bst_status vkb_buffer_alloc(void *device, uint64_t size, void **out_buffer)
{
    vkb_device *d = device_of(device, "buffer_alloc");
    if (!d || !out_buffer) {
        if (d)
            vkb_host->set_error("vulkan: buffer_alloc: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    bst_status st = vkb_alive(d, "buffer_alloc");
    if (st != BST_OK)
        return st;
    /* An injected failure takes the path of a failed vkAllocateMemory. */
    VkResult r = vkb_fault("alloc");
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkAllocateMemory");
    vkb_buffer *b;
    st = vkb_alloc(d, VKB_POOL_DEVICE, size, &b);
    if (st == BST_OK)
        *out_buffer = b;
    return st;
}

void vkb_buffer_free(void *device, void *buffer)
{
    vkb_device *d = device;
    if (!d || d->magic != VKB_MAGIC_DEVICE)
        return;
    vkb_buffer *b = vkb_buffer_get(d, buffer);
    if (b)
        vkb_free(b);
}

static bst_status ensure_staging(vkb_device *d)
{
    if (d->staging)
        return BST_OK;
    return vkb_alloc(d, VKB_POOL_HOST, STAGING_BYTES, &d->staging);
}

/* Copies between a device buffer and host memory through the staging buffer, chunk by chunk. */
static bst_status staged(vkb_device *d, vkb_buffer *b, uint64_t offset, void *host, uint64_t size,
                         bool upload)
{
    bst_status st = ensure_staging(d);
    if (st != BST_OK)
        return st;
    uint8_t *stage = vkb_map(d->staging);
    for (uint64_t done = 0; done < size && st == BST_OK;) {
        uint64_t n = size - done < STAGING_BYTES ? size - done : STAGING_BYTES;
        if (upload)
            memcpy(stage, (uint8_t *)host + done, (size_t)n);
        VkCommandBuffer cb;
        st = vkb_oneshot_begin(d, &cb);
        if (st != BST_OK)
            break;
        VkBufferCopy region = {
            .srcOffset = upload ? d->staging->offset : b->offset + offset + done,
            .dstOffset = upload ? b->offset + offset + done : d->staging->offset,
            .size = n,
        };
        vkCmdCopyBuffer(cb, upload ? d->staging->block->buffer : b->block->buffer,
                        upload ? b->block->buffer : d->staging->block->buffer, 1, &region);
        st = vkb_oneshot_submit(d, upload ? "uploading through staging" : "downloading through staging");
        if (st == BST_OK && !upload)
            memcpy((uint8_t *)host + done, stage, (size_t)n);
        done += n;
    }
    return st;
}

bst_status vkb_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size)
{
    vkb_device *d = device_of(device, "buffer_write");
    if (!d)
        return BST_ERR_INVALID_ARG;
    vkb_buffer *b;
    bst_status st = get_range(d, buffer, offset, size, "buffer_write", &b);
    if (st == BST_OK)
        st = vkb_alive(d, "buffer_write");
    if (st != BST_OK || size == 0)
        return st;
    if (!src) {
        vkb_host->set_error("vulkan: buffer_write: NULL source");
        return BST_ERR_INVALID_ARG;
    }
    uint8_t *map = vkb_map(b);
    if (map) { /* every submission has been waited for: nothing reads it now */
        memmove(map + offset, src, (size_t)size);
        return BST_OK;
    }
    return staged(d, b, offset, (void *)(uintptr_t)src, size, true);
}

bst_status vkb_buffer_read(void *device, void *buffer, uint64_t offset, void *dst, uint64_t size)
{
    vkb_device *d = device_of(device, "buffer_read");
    if (!d)
        return BST_ERR_INVALID_ARG;
    vkb_buffer *b;
    bst_status st = get_range(d, buffer, offset, size, "buffer_read", &b);
    if (st == BST_OK)
        st = vkb_alive(d, "buffer_read");
    if (st != BST_OK || size == 0)
        return st;
    if (!dst) {
        vkb_host->set_error("vulkan: buffer_read: NULL destination");
        return BST_ERR_INVALID_ARG;
    }
    uint8_t *map = vkb_map(b);
    if (map) {
        memmove(dst, map + offset, (size_t)size);
        return BST_OK;
    }
    return staged(d, b, offset, dst, size, false);
}

bst_status vkb_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size)
{
    vkb_device *d = device_of(device, "buffer_copy");
    if (!d)
        return BST_ERR_INVALID_ARG;
    vkb_buffer *db, *sb;
    bst_status st = get_range(d, dst, dst_offset, size, "buffer_copy", &db);
    if (st == BST_OK)
        st = get_range(d, src, src_offset, size, "buffer_copy", &sb);
    if (st == BST_OK)
        st = vkb_alive(d, "buffer_copy");
    if (st != BST_OK || size == 0)
        return st;
    uint8_t *dm = vkb_map(db), *sm = vkb_map(sb);
    if (dm && sm) {
        memmove(dm + dst_offset, sm + src_offset, (size_t)size);
        return BST_OK;
    }
    uint64_t s0 = sb->offset + src_offset, d0 = db->offset + dst_offset;
    if (db->block == sb->block && s0 < d0 + size && d0 < s0 + size) {
        /* vkCmdCopyBuffer forbids overlapping regions: go through host memory. */
        uint8_t *tmp = vkb_host->alloc((size_t)size, 64);
        if (!tmp) {
            vkb_host->set_error("vulkan: buffer_copy: out of host memory");
            return BST_ERR_OUT_OF_MEMORY;
        }
        st = vkb_buffer_read(d, src, src_offset, tmp, size);
        if (st == BST_OK)
            st = vkb_buffer_write(d, dst, dst_offset, tmp, size);
        vkb_host->free(tmp);
        return st;
    }
    VkCommandBuffer cb;
    st = vkb_oneshot_begin(d, &cb);
    if (st != BST_OK)
        return st;
    VkBufferCopy region = {.srcOffset = s0, .dstOffset = d0, .size = size};
    vkCmdCopyBuffer(cb, sb->block->buffer, db->block->buffer, 1, &region);
    return vkb_oneshot_submit(d, "buffer_copy");
}

bst_status vkb_buffer_map(void *device, void *buffer, void **out_ptr)
{
    vkb_device *d = device_of(device, "buffer_map");
    if (!d || !out_ptr) {
        if (d)
            vkb_host->set_error("vulkan: buffer_map: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    *out_ptr = NULL;
    vkb_buffer *b = vkb_buffer_get(d, buffer);
    if (!b) {
        vkb_host->set_error("vulkan: buffer_map: %p is not a buffer of this device", buffer);
        return BST_ERR_INVALID_ARG;
    }
    uint8_t *map = vkb_map(b);
    if (!map) {
        vkb_host->set_error("vulkan: buffer_map: device memory of \"%s\" is not host-visible",
                            d->phys->info.name);
        return BST_ERR_UNSUPPORTED;
    }
    *out_ptr = map;
    return BST_OK;
}
