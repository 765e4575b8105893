/*
 * On-disk cache of compiled command streams: ($BASTION_CACHE_DIR | ($XDG_CACHE_HOME |
 * ~/.cache)/bastion)/npu-sim/<key>.npub, directories mode 0700 (created when missing; one that
 * belongs to someone else is not used), files 0600, written to a temporary name and renamed.
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

static bool make_dirs(char *path, size_t from)
{
    for (size_t i = from;; i++) {
        char c = path[i];
        if (c != '/' && c != '\0')
            continue;
        if (i == 0)
            continue;
        path[i] = '\0';
        bool ok = mkdir(path, 0700) == 0 || errno == EEXIST;
        struct stat sb;
        if (ok)
            ok = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
        if (ok && i > from && sb.st_uid != geteuid())
            ok = false;
        if (ok && i > from && (sb.st_mode & 077) != 0)
            ok = chmod(path, 0700) == 0;
        path[i] = c;
        if (!ok)
            return false;
        if (c == '\0')
            return true;
    }
}

static bool cache_dir(char *buf, size_t cap)
{
    const char *own = secure_getenv("BASTION_CACHE_DIR");
    int n;
    size_t from;
    if (own && own[0]) {
        n = snprintf(buf, cap, "%s/npu-sim", own);
        from = strlen(own);
    } else {
        const char *xdg = secure_getenv("XDG_CACHE_HOME");
        const char *home = secure_getenv("HOME");
        if (xdg && xdg[0] == '/') {
            n = snprintf(buf, cap, "%s/bastion/npu-sim", xdg);
            from = strlen(xdg);
        } else if (home && home[0] == '/') {
            n = snprintf(buf, cap, "%s/.cache/bastion/npu-sim", home);
            from = strlen(home) + strlen("/.cache");
        } else {
            return false;
        }
    }
    if (n < 0 || (size_t)n >= cap)
        return false;
    return make_dirs(buf, from);
}

static bool cache_path(uint64_t key, char *buf, size_t cap)
{
    char dir[3072];
    if (!cache_dir(dir, sizeof dir))
        return false;
    int n = snprintf(buf, cap, "%s/%016llx.npub", dir, (unsigned long long)key);
    return n > 0 && (size_t)n < cap;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool read_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        n -= (size_t)got;
    }
    return true;
}

static bool write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return false;
        p += put;
        n -= (size_t)put;
    }
    return true;
}

static void fill_header(const npu_device *dev, uint64_t key, const uint8_t *blob, size_t size,
                        uint8_t *h)
{
    memset(h, 0, CACHE_HEADER);
    memcpy(h, CACHE_MAGIC, 8);
    put_u32(h + 8, CACHE_VERSION);
    put_u32(h + 12, CACHE_HEADER);
    put_u64(h + 16, key);
    memcpy(h + 24, dev->desc.model, strnlen(dev->desc.model, 63));
    put_u64(h + 88, dev->desc.hash);
    memcpy(h + 96, NPU_BACKEND_VERSION, strnlen(NPU_BACKEND_VERSION, 15));
    put_u64(h + 112, NPU_SOURCE_HASH);
    put_u64(h + 120, size);
    put_u64(h + 128, npu_fnv(NPU_FNV_SEED, blob, size));
}

uint8_t *npu_cache_load(const npu_device *dev, uint64_t key, size_t *out_size)
{
    char path[4096];
    if (!cache_path(key, path, sizeof path)) {
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
    } else if ((uint64_t)sb.st_size < CACHE_HEADER || !read_all(fd, h, sizeof h)) {
        snprintf(why, sizeof why, "shorter than its header");
    } else if (memcmp(h, CACHE_MAGIC, 8) != 0) {
        snprintf(why, sizeof why, "bad magic");
    } else if (get_u32(h + 8) != CACHE_VERSION || get_u32(h + 12) != CACHE_HEADER) {
        snprintf(why, sizeof why, "unknown format version %u", get_u32(h + 8));
    } else if (get_u64(h + 16) != key) {
        snprintf(why, sizeof why, "key mismatch");
    } else if (memchr(h + 24, '\0', 64) == NULL ||
               strcmp((const char *)(h + 24), dev->desc.model) != 0) {
        snprintf(why, sizeof why, "compiled for device model '%.63s', this device is '%s'",
                 memchr(h + 24, '\0', 64) ? (const char *)(h + 24) : "?", dev->desc.model);
    } else if (get_u64(h + 88) != dev->desc.hash) {
        snprintf(why, sizeof why, "device description of %s changed", dev->desc.model);
    } else if (memchr(h + 96, '\0', 16) == NULL ||
               strcmp((const char *)(h + 96), NPU_BACKEND_VERSION) != 0) {
        snprintf(why, sizeof why, "compiled by plugin version '%.15s', this is %s",
                 memchr(h + 96, '\0', 16) ? (const char *)(h + 96) : "?", NPU_BACKEND_VERSION);
    } else if (get_u64(h + 112) != NPU_SOURCE_HASH) {
        snprintf(why, sizeof why, "plugin source hash differs");
    } else if ((size = get_u64(h + 120)) == 0 || size > CACHE_MAX_PAYLOAD ||
               (uint64_t)sb.st_size != CACHE_HEADER + size) {
        snprintf(why, sizeof why, "payload size disagrees with the file (corrupt)");
    } else if (!(blob = npu_host->alloc((size_t)size, 16))) {
        snprintf(why, sizeof why, "out of memory");
    } else if (!read_all(fd, blob, (size_t)size)) {
        snprintf(why, sizeof why, "read failed");
    } else if (npu_fnv(NPU_FNV_SEED, blob, (size_t)size) != get_u64(h + 128)) {
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
    char path[4096], tmp[4200];
    if (!cache_path(key, path, sizeof path))
        return;
    int n = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        npu_host->log(BST_LOG_DEBUG, "npu-sim: cannot write cache %s: %s", tmp, strerror(errno));
        return;
    }
    uint8_t h[CACHE_HEADER];
    fill_header(dev, key, blob, size, h);
    bool ok = write_all(fd, h, sizeof h) && write_all(fd, blob, size);
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        npu_host->log(BST_LOG_DEBUG, "npu-sim: cannot write cache %s", path);
        unlink(tmp);
    }
}
