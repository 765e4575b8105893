/*
 * Device description files: the cost model of a simulated NPU, so a vendor can estimate a chip
 * before silicon by writing one small file.
 *
 * Format (devices/npu-small.desc is the annotated example): UTF-8/ASCII text, at most
 * NPU_DESC_MAX_BYTES, one `key = value` per line, '#' starts a comment, blank lines ignored.
 * Every key of the table below is required exactly once; an unknown key, a duplicate, a value
 * that is not a finite number inside the key's range, an over-long line or a NUL byte is
 * BST_ERR_FORMAT naming the file, the line and the problem. The file is untrusted input.
 *
 * The two shipped descriptions are embedded into the plugin at build time (npu_devices.h), so
 * `BASTION_NPU_SIM_DEVICE=npu-large` works in an installed tree without any data file; any other
 * value is a path.
 */
#include "npu_backend.h"

#define NPU_WANT_DEVICES
#include "npu_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPU_DESC_MAX_BYTES 16384
#define NPU_DESC_MAX_LINE 256

typedef enum key_id {
    K_MODEL,
    K_CLOCK,
    K_MACS_I8,
    K_MACS_F16,
    K_VECTOR,
    K_SRAM,
    K_DRAM,
    K_DMA,
    K_DMA_LAT,
    K_LAUNCH,
    K_MEMORY,
    K_ACT_BITS,
    K_COUNT
} key_id;

static const struct {
    const char *name;
    double lo, hi; /* accepted range of the number (model: unused) */
} keys[K_COUNT] = {
    [K_MODEL] = {"model", 0, 0},
    [K_CLOCK] = {"clock_mhz", 1, 100000},
    [K_MACS_I8] = {"macs_per_cycle_int8", 1, 1e7},
    [K_MACS_F16] = {"macs_per_cycle_fp16", 1, 1e7},
    [K_VECTOR] = {"vector_lanes", 1, 1e6},
    [K_SRAM] = {"sram_kib", 1, 1048576},
    [K_DRAM] = {"dram_gbps", 0.001, 100000},
    [K_DMA] = {"dma_gbps", 0.001, 100000},
    [K_DMA_LAT] = {"dma_latency_ns", 0, 1e9},
    [K_LAUNCH] = {"launch_overhead_ns", 0, 1e9},
    [K_MEMORY] = {"memory_mib", 1, 1048576},
    [K_ACT_BITS] = {"activation_bits", 8, 16},
};

static bst_status bad(const char *origin, unsigned line, const char *fmt, const char *arg)
{
    char what[256];
    snprintf(what, sizeof what, fmt, arg);
    if (line)
        npu_host->set_error("npu-sim: device description %s:%u: %s", origin, line, what);
    else
        npu_host->set_error("npu-sim: device description %s: %s", origin, what);
    return BST_ERR_FORMAT;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static bool valid_model(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((npu_desc *)0)->model))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

bst_status npu_desc_parse(const char *text, size_t len, const char *origin, npu_desc *out)
{
    memset(out, 0, sizeof *out);
    if (!text)
        return bad(origin, 0, "%s", "no text");
    if (len > NPU_DESC_MAX_BYTES)
        return bad(origin, 0, "%s", "larger than 16 KiB");
    if (memchr(text, '\0', len))
        return bad(origin, 0, "%s", "contains a NUL byte");
    double val[K_COUNT] = {0};
    bool seen[K_COUNT] = {false};
    unsigned line = 0;
    size_t pos = 0;
    while (pos < len) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (n >= NPU_DESC_MAX_LINE)
            return bad(origin, line, "%s", "line longer than 255 bytes");
        char buf[NPU_DESC_MAX_LINE];
        memcpy(buf, text + pos, n);
        buf[n] = '\0';
        pos += n + (nl ? 1 : 0);
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(buf);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return bad(origin, line, "expected 'key = value', got '%s'", s);
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        int k = -1;
        for (int i = 0; i < K_COUNT; i++)
            if (strcmp(key, keys[i].name) == 0)
                k = i;
        if (k < 0)
            return bad(origin, line, "unknown key '%s'", key);
        if (seen[k])
            return bad(origin, line, "key '%s' given twice", key);
        seen[k] = true;
        if (k == K_MODEL) {
            if (!valid_model(value))
                return bad(origin, line,
                           "model '%s' must be 1..63 characters of [A-Za-z0-9._-]", value);
            snprintf(out->model, sizeof out->model, "%s", value);
            continue;
        }
        char *end = NULL;
        errno = 0;
        double v = strtod(value, &end);
        if (!*value || errno != 0 || !end || *end != '\0' || !isfinite(v))
            return bad(origin, line, "value '%s' is not a finite number", value);
        if (v < keys[k].lo || v > keys[k].hi) {
            char what[160];
            snprintf(what, sizeof what, "%s = %g is outside %g..%g", keys[k].name, v,
                     keys[k].lo, keys[k].hi);
            return bad(origin, line, "%s", what);
        }
        if (k == K_ACT_BITS && v != 8 && v != 16)
            return bad(origin, line, "activation_bits must be 8 or 16, not '%s'", value);
        val[k] = v;
    }
    for (int i = 0; i < K_COUNT; i++)
        if (!seen[i])
            return bad(origin, 0, "missing key '%s'", keys[i].name);
    out->clock_mhz = val[K_CLOCK];
    out->macs_int8 = val[K_MACS_I8];
    out->macs_fp16 = val[K_MACS_F16];
    out->vector_lanes = val[K_VECTOR];
    out->sram_bytes = (uint64_t)(val[K_SRAM] * 1024.0);
    out->dram_gbps = val[K_DRAM];
    out->dma_gbps = val[K_DMA];
    out->dma_latency_ns = val[K_DMA_LAT];
    out->launch_ns = val[K_LAUNCH];
    out->memory_bytes = (uint64_t)(val[K_MEMORY] * 1048576.0);
    out->activation_bits = (uint32_t)val[K_ACT_BITS];
    uint64_t h = bstc_fnv1a(NPU_FNV_SEED, out->model, strlen(out->model) + 1);
    out->hash = bstc_fnv1a(h, val, sizeof val);
    return BST_OK;
}

/* Reads a whole description file of at most NPU_DESC_MAX_BYTES (+1, to detect longer ones). */
static bst_status read_file(const char *path, char **out_text, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        npu_host->set_error("npu-sim: cannot open device description %s: %s", path,
                            strerror(errno));
        return BST_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        npu_host->set_error("npu-sim: device description %s is not a regular file", path);
        return BST_ERR_IO;
    }
    char *buf = malloc(NPU_DESC_MAX_BYTES + 1);
    if (!buf) {
        close(fd);
        npu_host->set_error("npu-sim: out of memory reading %s", path);
        return BST_ERR_OUT_OF_MEMORY;
    }
    size_t len = 0;
    while (len < NPU_DESC_MAX_BYTES + 1) {
        ssize_t got = read(fd, buf + len, NPU_DESC_MAX_BYTES + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            free(buf);
            npu_host->set_error("npu-sim: reading device description %s: %s", path,
                                strerror(e));
            return BST_ERR_IO;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    *out_text = buf;
    *out_len = len;
    return BST_OK;
}

bst_status npu_desc_load(const char *spec, npu_desc *out)
{
    if (!spec || !*spec || strcmp(spec, "npu-small") == 0 || strcmp(spec, "small") == 0)
        return npu_desc_parse((const char *)npu_dev_small, sizeof npu_dev_small - 1,
                              "npu-small (built in)", out);
    if (strcmp(spec, "npu-large") == 0 || strcmp(spec, "large") == 0)
        return npu_desc_parse((const char *)npu_dev_large, sizeof npu_dev_large - 1,
                              "npu-large (built in)", out);
    if (!strchr(spec, '/') && !strstr(spec, ".desc")) {
        npu_host->set_error("npu-sim: BASTION_NPU_SIM_DEVICE='%s' is neither a shipped device "
                            "(npu-small, npu-large) nor a path to a description file", spec);
        return BST_ERR_NOT_FOUND;
    }
    char *text = NULL;
    size_t len = 0;
    bst_status st = read_file(spec, &text, &len);
    if (st != BST_OK)
        return st;
    st = npu_desc_parse(text, len, spec, out);
    free(text);
    return st;
}
