/*
 * On-disk cache of compiled command streams: ($BASTION_CACHE_DIR | ($XDG_CACHE_HOME |
 * ~/.cache)/bastion)/npu-sim/<device model>-<key>.npub, directories mode 0700 (created when
 * missing; one that belongs to someone else is not used), files 0600, written to a temporary name
 * and renamed. The device model is part of the name so that each chip keeps its own entry: one
 * process alternating npu-small and npu-large would otherwise rewrite one file, each compile
 * rejecting the other chip's stream. (The model is 1..63 characters of [A-Za-z0-9._-], checked
 * by npu_desc.c, so it is safe in a file name.)
 *
 * A cache file is untrusted input. Its header is checked field by field, and each mismatch is
 * logged with its reason before the stream is recompiled and the entry rewritten:
 *   0  "BSTNPUC\0"            8 bytes
 *   8  format version u32, header size u32
 *  16  key u64 (must equal the file name's)
 *  24  device model, 64 bytes NUL-padded; 88 device description hash u64
 *  96  plugin version, 16 bytes NUL-padded; 112 plugin source hash u64
 * 120  payload size u64; 128 payload FNV-1a u64; 136 payload (the blob, npu_compile.c)
 * The payload itself is validated again by npu_blob_load.
 */
#include "npu_backend.h"

#include "npu_devices.h"

#include "bst_backend_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "BSTNPUC"
#define CACHE_VERSION 1u
#define CACHE_HEADER 136u
#define CACHE_MAX_PAYLOAD (UINT64_C(256) << 20)

static bool cache_path(const npu_device *dev, uint64_t key, char *buf, size_t cap)
{
    char dir[3072];
    if (!bstc_cache_dir("npu-sim", dir, sizeof dir))
        return false;
    int n = snprintf(buf, cap, "%s/%s-%016llx.npub", dir, dev->desc.model,
                     (unsigned long long)key);
    return n > 0 && (size_t)n < cap;
}

static void fill_header(const npu_device *dev, uint64_t key, const uint8_t *blob, size_t size,
                        uint8_t *h)
{
    memset(h, 0, CACHE_HEADER);
    memcpy(h, CACHE_MAGIC, 8);
    bstc_put_u32(h + 8, CACHE_VERSION);
    bstc_put_u32(h + 12, CACHE_HEADER);
    bstc_put_u64(h + 16, key);
    memcpy(h + 24, dev->desc.model, strnlen(dev->desc.model, 63));
    bstc_put_u64(h + 88, dev->desc.hash);
    memcpy(h + 96, NPU_BACKEND_VERSION, strnlen(NPU_BACKEND_VERSION, 15));
    bstc_put_u64(h + 112, NPU_SOURCE_HASH);
    bstc_put_u64(h + 120, size);
    bstc_put_u64(h + 128, bstc_fnv1a(NPU_FNV_SEED, blob, size));
}

uint8_t *npu_cache_load(const npu_device *dev, uint64_t key, size_t *out_size)
{
    char path[4096];
    if (!cache_path(dev, key, path, sizeof path)) {
        npu_host->log(BST_LOG_DEBUG, "npu-sim: no usable cache directory; compiling uncached");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL; /* no entry yet */
    char why[256] = "";
    uint8_t h[CACHE_HEADER];
    uint8_t *blob = NULL;
    struct stat sb;
    uint64_t size = 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, sizeof why, "not a regular file");
    } else if ((uint64_t)sb.st_size < CACHE_HEADER || !bstc_read_all(fd, h, sizeof h)) {
        snprintf(why, sizeof why, "shorter than its header");
    } else if (memcmp(h, CACHE_MAGIC, 8) != 0) {
        snprintf(why, sizeof why, "bad magic");
    } else if (bstc_get_u32(h + 8) != CACHE_VERSION || bstc_get_u32(h + 12) != CACHE_HEADER) {
        snprintf(why, sizeof why, "unknown format version %u", bstc_get_u32(h + 8));
    } else if (bstc_get_u64(h + 16) != key) {
        snprintf(why, sizeof why, "key mismatch");
    } else if (memchr(h + 24, '\0', 64) == NULL ||
               strcmp((const char *)(h + 24), dev->desc.model) != 0) {
        snprintf(why, sizeof why, "compiled for device model '%.63s', this device is '%s'",
                 memchr(h + 24, '\0', 64) ? (const char *)(h + 24) : "?", dev->desc.model);
    } else if (bstc_get_u64(h + 88) != dev->desc.hash) {
        snprintf(why, sizeof why, "device description of %s changed", dev->desc.model);
    } else if (memchr(h + 96, '\0', 16) == NULL ||
               strcmp((const char *)(h + 96), NPU_BACKEND_VERSION) != 0) {
        snprintf(why, sizeof why, "compiled by plugin version '%.15s', this is %s",
                 memchr(h + 96, '\0', 16) ? (const char *)(h + 96) : "?", NPU_BACKEND_VERSION);
    } else if (bstc_get_u64(h + 112) != NPU_SOURCE_HASH) {
        snprintf(why, sizeof why, "plugin source hash differs");
    } else if ((size = bstc_get_u64(h + 120)) == 0 || size > CACHE_MAX_PAYLOAD ||
               (uint64_t)sb.st_size != CACHE_HEADER + size) {
        snprintf(why, sizeof why, "payload size disagrees with the file (corrupt)");
    } else if (!(blob = npu_host->alloc((size_t)size, 16))) {
        snprintf(why, sizeof why, "out of memory");
    } else if (!bstc_read_all(fd, blob, (size_t)size)) {
        snprintf(why, sizeof why, "read failed");
    } else if (bstc_fnv1a(NPU_FNV_SEED, blob, (size_t)size) != bstc_get_u64(h + 128)) {
        snprintf(why, sizeof why, "checksum mismatch (corrupt)");
    }
    close(fd);
    if (why[0]) {
        npu_host->log(BST_LOG_WARN, "npu-sim: cached command stream %s rejected: %s; recompiling",
                      path, why);
        npu_host->free(blob);
        return NULL;
    }
    *out_size = (size_t)size;
    return blob;
}

void npu_cache_store(const npu_device *dev, uint64_t key, const uint8_t *blob, size_t size)
{
    char path[4096];
    if (!cache_path(dev, key, path, sizeof path))
        return;
    uint8_t h[CACHE_HEADER];
    fill_header(dev, key, blob, size, h);
    if (!bstc_write_file_atomic(path, h, sizeof h, blob, size))
        npu_host->log(BST_LOG_DEBUG, "npu-sim: cannot write cache %s: %s", path, strerror(errno));
}
