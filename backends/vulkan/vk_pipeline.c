/*
 * Shader modules, compute pipelines and the persistent pipeline cache.
 *
 * Pipelines are keyed by shader and specialization constants (dtypes, op variant, tile sizes)
 * and created once per device. Creating one compiles its SPIR-V in the driver (LLVM for
 * lavapipe: tens of milliseconds), so the driver's VkPipelineCache is saved when the device
 * closes, to $BASTION_CACHE_DIR/vulkan/ (else ($XDG_CACHE_HOME or ~/.cache)/bastion/vulkan/;
 * directories mode 0700), and loaded when it opens. The file is untrusted input: our header (magic, sizes,
 * vendor and device id, driver version, pipelineCacheUUID, a hash of the data) and the driver's
 * own cache header are both checked, and a file that fails any check is deleted with a warning
 * and the run continues with an empty cache.
 */
#include "vk_backend.h"

#include "bst_backend_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "BSTVKPC1"
#define CACHE_HEADER_BYTES 64u
#define CACHE_MAX_BYTES (UINT64_C(256) << 20)

/* --- cache file ---------------------------------------------------------------------------- */

/* Header: magic[8], header bytes, vendor id, device id, driver version, uuid[16], data bytes,
 * data hash, 8 reserved bytes; all little-endian. */
static void make_header(const vkb_device *d, uint64_t data_bytes, uint64_t hash, uint8_t *h)
{
    memset(h, 0, CACHE_HEADER_BYTES);
    memcpy(h, CACHE_MAGIC, 8);
    bstc_put_u32(h + 8, CACHE_HEADER_BYTES);
    bstc_put_u32(h + 12, d->props.vendorID);
    bstc_put_u32(h + 16, d->props.deviceID);
    bstc_put_u32(h + 20, d->props.driverVersion);
    memcpy(h + 24, d->props.pipelineCacheUUID, VK_UUID_SIZE);
    bstc_put_u64(h + 40, data_bytes);
    bstc_put_u64(h + 48, hash);
}

/* Why `file` (size bytes) is not a valid cache for this device, or NULL when it is. */
static const char *cache_problem(const vkb_device *d, const uint8_t *file, uint64_t size)
{
    if (size < CACHE_HEADER_BYTES || memcmp(file, CACHE_MAGIC, 8) != 0)
        return "not a Bastion pipeline cache";
    if (bstc_get_u32(file + 8) != CACHE_HEADER_BYTES)
        return "unknown header version";
    if (bstc_get_u32(file + 12) != d->props.vendorID || bstc_get_u32(file + 16) != d->props.deviceID)
        return "made for another device";
    if (bstc_get_u32(file + 20) != d->props.driverVersion)
        return "made by another driver version";
    if (memcmp(file + 24, d->props.pipelineCacheUUID, VK_UUID_SIZE) != 0)
        return "pipelineCacheUUID differs";
    uint64_t data = bstc_get_u64(file + 40);
    if (data != size - CACHE_HEADER_BYTES)
        return "truncated or oversized";
    const uint8_t *vk = file + CACHE_HEADER_BYTES;
    if (bstc_fnv1a(BSTC_FNV_SEED, vk, (size_t)data) != bstc_get_u64(file + 48))
        return "data corrupt (hash mismatch)";
    /* The driver's own header: VkPipelineCacheHeaderVersionOne. */
    if (data < 32 || bstc_get_u32(vk) < 32 || bstc_get_u32(vk + 4) != VK_PIPELINE_CACHE_HEADER_VERSION_ONE ||
        bstc_get_u32(vk + 8) != d->props.vendorID || bstc_get_u32(vk + 12) != d->props.deviceID ||
        memcmp(vk + 16, d->props.pipelineCacheUUID, VK_UUID_SIZE) != 0)
        return "driver cache header does not match this device";
    return NULL;
}

static void discard(const char *path, const char *why)
{
    vkb_host->log(BST_LOG_WARN, "vulkan: pipeline cache %s discarded: %s", path, why);
    if (unlink(path) != 0 && errno != ENOENT)
        vkb_host->log(BST_LOG_WARN, "vulkan: cannot delete %s: %s", path, strerror(errno));
}

/* Reads and checks the cache file; *out_data (host-allocated) is NULL when there is none. */
static void load_cache_file(const vkb_device *d, uint8_t **out_data, size_t *out_size)
{
    *out_data = NULL;
    *out_size = 0;
    int fd = open(d->cache_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            vkb_host->log(BST_LOG_WARN, "vulkan: cannot open %s: %s", d->cache_path,
                          strerror(errno));
        return;
    }
    struct stat s;
    const char *why = NULL;
    uint8_t *buf = NULL;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode))
        why = "not a regular file";
    else if ((uint64_t)s.st_size > CACHE_MAX_BYTES + CACHE_HEADER_BYTES)
        why = "too large";
    else if (!(buf = vkb_host->alloc((size_t)s.st_size + 1, 64)))
        why = "out of host memory";
    size_t got = why ? 0 : (size_t)s.st_size;
    if (!why && !bstc_read_all(fd, buf, got))
        why = "read error";
    close(fd);
    if (!why)
        why = cache_problem(d, buf, got);
    if (why) {
        vkb_host->free(buf);
        discard(d->cache_path, why);
        return;
    }
    memmove(buf, buf + CACHE_HEADER_BYTES, got - CACHE_HEADER_BYTES);
    *out_data = buf;
    *out_size = got - CACHE_HEADER_BYTES;
}

static void save_cache_file(vkb_device *d)
{
    size_t size = 0;
    if (!d->cache || !d->cache_path[0] || !d->cache_dirty ||
        vkGetPipelineCacheData(d->device, d->cache, &size, NULL) != VK_SUCCESS || size == 0 ||
        size > CACHE_MAX_BYTES)
        return;
    uint8_t *buf = vkb_host->alloc(size + CACHE_HEADER_BYTES, 64);
    if (!buf)
        return;
    VkResult r = vkGetPipelineCacheData(d->device, d->cache, &size, buf + CACHE_HEADER_BYTES);
    if (r == VK_SUCCESS) {
        make_header(d, size, bstc_fnv1a(BSTC_FNV_SEED, buf + CACHE_HEADER_BYTES, size), buf);
        /* Written aside and renamed, so a reader never sees half a file. */
        size_t total = size + CACHE_HEADER_BYTES;
        if (!bstc_write_file_atomic(d->cache_path, buf, total, NULL, 0)) {
            vkb_host->log(BST_LOG_WARN, "vulkan: cannot save the pipeline cache %s: %s",
                          d->cache_path, strerror(errno));
        } else {
            vkb_host->log(BST_LOG_DEBUG, "vulkan: saved %zu bytes of pipeline cache to %s", total,
                          d->cache_path);
        }
    }
    vkb_host->free(buf);
}

bst_status vkb_pipelines_init(vkb_device *d)
{
    char dir[sizeof d->cache_path - 64];
    d->cache_path[0] = '\0';
    if (bstc_cache_dir("vulkan", dir, sizeof dir)) {
        char uuid[2 * VK_UUID_SIZE + 1];
        for (unsigned i = 0; i < VK_UUID_SIZE; i++)
            snprintf(uuid + 2 * i, 3, "%02x", d->props.pipelineCacheUUID[i]);
        snprintf(d->cache_path, sizeof d->cache_path, "%s/pipelines-%04x-%04x-%s.bin", dir,
                 d->props.vendorID, d->props.deviceID, uuid);
    }
    uint8_t *data = NULL;
    size_t size = 0;
    if (d->cache_path[0])
        load_cache_file(d, &data, &size);
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = size,
        .pInitialData = data,
    };
    VkResult r = vkCreatePipelineCache(d->device, &ci, NULL, &d->cache);
    if (r != VK_SUCCESS && data) { /* the driver rejected the data after all: start empty */
        discard(d->cache_path, "the driver refused its data");
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        r = vkCreatePipelineCache(d->device, &ci, NULL, &d->cache);
    }
    if (data)
        vkb_host->log(BST_LOG_DEBUG, "vulkan: loaded %zu bytes of pipeline cache from %s", size,
                      d->cache_path);
    vkb_host->free(data);
    if (r != VK_SUCCESS) {
        d->cache = VK_NULL_HANDLE;
        return vkb_result(d, r, "vkCreatePipelineCache");
    }
    return BST_OK;
}

void vkb_pipelines_destroy(vkb_device *d)
{
    if (!d->lost)
        save_cache_file(d);
    for (uint32_t i = 0; i < d->n_pipes; i++)
        vkDestroyPipeline(d->device, d->pipes[i].pipeline, NULL);
    vkb_host->free(d->pipes);
    d->pipes = NULL;
    d->n_pipes = d->cap_pipes = 0;
    for (int s = 0; s < VKS_COUNT; s++)
        for (int v = 0; v < 4; v++)
            if (d->modules[s][v]) {
                vkDestroyShaderModule(d->device, d->modules[s][v], NULL);
                d->modules[s][v] = VK_NULL_HANDLE;
            }
    if (d->cache)
        vkDestroyPipelineCache(d->device, d->cache, NULL);
    d->cache = VK_NULL_HANDLE;
}

/* --- pipelines ----------------------------------------------------------------------------- */

/* The variant of `shader` this device runs: the richest one whose features it has. */
static uint32_t variant_of(const vkb_device *d, uint32_t shader)
{
    static const uint32_t order[4] = {3, 1, 2, 0};
    for (int i = 0; i < 4; i++) {
        uint32_t v = order[i];
        if ((v & ~d->variant) == 0 && vks_table[shader][v].code)
            return v;
    }
    return 0;
}

uint64_t vkb_pipeline_hash(const vkb_device *d, const vkb_pipe_key *key)
{
    const vks_blob *b = &vks_table[key->shader][variant_of(d, key->shader)];
    uint64_t h = bstc_fnv1a(BSTC_FNV_SEED, b->code, b->size);
    return bstc_fnv1a(h, key, sizeof *key);
}

bst_status vkb_pipeline_get(vkb_device *d, const vkb_pipe_key *key, uint32_t *out_index)
{
    for (uint32_t i = 0; i < d->n_pipes; i++)
        if (memcmp(&d->pipes[i].key, key, sizeof *key) == 0) {
            *out_index = i;
            return BST_OK;
        }
    if (key->shader >= VKS_COUNT) {
        vkb_host->set_error("vulkan: no shader %u", key->shader);
        return BST_ERR_INTERNAL;
    }
    uint32_t v = variant_of(d, key->shader);
    const vks_blob *blob = &vks_table[key->shader][v];
    VkResult r = VK_SUCCESS;
    if (!d->modules[key->shader][v]) {
        VkShaderModuleCreateInfo mci = {
            .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            .codeSize = blob->size,
            .pCode = blob->code,
        };
        r = vkCreateShaderModule(d->device, &mci, NULL, &d->modules[key->shader][v]);
        if (r != VK_SUCCESS) {
            d->modules[key->shader][v] = VK_NULL_HANDLE;
            bst_status st = vkb_result(d, r, "vkCreateShaderModule");
            return st == BST_ERR_BACKEND ? BST_ERR_COMPILE : st;
        }
    }
    if (d->n_pipes == d->cap_pipes) {
        uint32_t cap = d->cap_pipes ? d->cap_pipes * 2 : 32;
        vkb_pipe *np = vkb_host->alloc(cap * sizeof *np, 16);
        if (!np) {
            vkb_host->set_error("vulkan: out of host memory");
            return BST_ERR_OUT_OF_MEMORY;
        }
        if (d->n_pipes)
            memcpy(np, d->pipes, d->n_pipes * sizeof *np);
        vkb_host->free(d->pipes);
        d->pipes = np;
        d->cap_pipes = cap;
    }
    VkSpecializationMapEntry entries[VKB_SPEC_MAX];
    for (uint32_t i = 0; i < VKB_SPEC_MAX; i++)
        entries[i] = (VkSpecializationMapEntry){.constantID = i,
                                                .offset = i * (uint32_t)sizeof(uint32_t),
                                                .size = sizeof(uint32_t)};
    VkSpecializationInfo spec = {
        .mapEntryCount = VKB_SPEC_MAX,
        .pMapEntries = entries,
        .dataSize = sizeof key->spec,
        .pData = key->spec,
    };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = d->modules[key->shader][v],
                  .pName = "main",
                  .pSpecializationInfo = &spec},
        .layout = d->layout,
    };
    VkPipeline pipe = VK_NULL_HANDLE;
    r = vkCreateComputePipelines(d->device, d->cache, 1, &ci, NULL, &pipe);
    if (r != VK_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "vkCreateComputePipelines (%s)", vks_names[key->shader]);
        bst_status st = vkb_result(d, r, what);
        return st == BST_ERR_BACKEND ? BST_ERR_COMPILE : st;
    }
    d->pipes[d->n_pipes].key = *key;
    d->pipes[d->n_pipes].pipeline = pipe;
    d->cache_dirty = true;
    *out_index = d->n_pipes++;
    return BST_OK;
}
