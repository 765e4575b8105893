/*
 * Kernel families and the on-disk program cache.
 *
 * Each family is its own OpenCL program (common.cl + the family's file), built lazily on first
 * use per device, so a family that fails to build (a driver bug, or the test hook that appends
 * a syntax error) reports BST_ERR_COMPILE with its build log and leaves every other family
 * working. The outcome is remembered: a failed family is not rebuilt on every query.
 *
 * PoCL and GPU drivers compile from source slowly (LLVM in-process), so a built program's binary
 * is kept in ($BASTION_CACHE_DIR | ($XDG_CACHE_HOME | ~/.cache)/bastion)/opencl/, directories
 * mode 0700. A cache file is untrusted input:
 *
 *   offset  size  field
 *   0       8     magic "BSTOCLP\0"
 *   8       4     format version (1), little-endian
 *   12      4     header size (40)
 *   16      8     key hash: FNV-1a 64 of platform, device name, driver version, build options
 *                 and the family's source hash
 *   24      8     binary size
 *   32      8     FNV-1a 64 of the binary
 *   40      ...   the binary (CL_PROGRAM_BINARIES)
 *
 * Any mismatch (short file, wrong magic/version/key, size or checksum, or a binary the driver
 * refuses) is logged and ignored; the program is rebuilt from source and the entry rewritten
 * (to a temporary file, then renamed, so a reader never sees half an entry).
 */
#include "ocl_backend.h"
#include "ocl_kernels.h"

#include "bst_backend_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "BSTOCLP"
#define CACHE_VERSION 1u
#define CACHE_HEADER 40u
#define CACHE_MAX_BINARY (UINT64_C(256) << 20)

/* Appended to a family's source by the test hook BASTION_OPENCL_TEST_BROKEN_KERNEL: a kernel
 * with a syntax error, so that family's build fails like a driver's would. */
static const char broken_source[] =
    "\n/* test hook: BASTION_OPENCL_TEST_BROKEN_KERNEL */\n"
    "kernel void k_broken(global float *x) { x[0] = ; }\n";

typedef struct family_def {
    const char *name;
    const char *source;
} family_def;

static const family_def families[OCL_FAM_COUNT] = {
    [OCL_FAM_ELEM] = {"elem", ocl_src_elem},
    [OCL_FAM_QUANT] = {"quant", ocl_src_quant},
    [OCL_FAM_ROWS] = {"rows", ocl_src_rows},
    [OCL_FAM_NORM] = {"norm", ocl_src_norm},
    [OCL_FAM_MATMUL] = {"matmul", ocl_src_matmul},
    [OCL_FAM_ATTN] = {"attention", ocl_src_attention},
};

const char *ocl_family_name(ocl_family f)
{
    return (unsigned)f < OCL_FAM_COUNT ? families[f].name : "?";
}

/* The strings that make up family f's program on dev. */
static uint32_t family_sources(const ocl_device *dev, ocl_family f, const char **out)
{
    uint32_t n = 0;
    out[n++] = ocl_src_common;
    out[n++] = families[f].source;
    if (dev->broken_family == (int)f)
        out[n++] = broken_source;
    return n;
}

uint64_t ocl_program_hash(ocl_device *dev, ocl_family f)
{
    /* Every query asks; the sources never change while the device is open. */
    if (dev->prog[f].source_hash)
        return dev->prog[f].source_hash;
    const char *src[3];
    uint32_t n = family_sources(dev, f, src);
    uint64_t h = bstc_fnv1a(BSTC_FNV_SEED, dev->build_options, strlen(dev->build_options) + 1);
    uint64_t host = OCL_HOST_HASH; /* the host code that sets the kernels' arguments */
    h = bstc_fnv1a(h, &host, sizeof host);
    for (uint32_t i = 0; i < n; i++)
        h = bstc_fnv1a(h, src[i], strlen(src[i]) + 1);
    dev->prog[f].source_hash = h ? h : 1;
    return dev->prog[f].source_hash;
}

/* --- cache location --- */

static bool cache_path(ocl_device *dev, ocl_family f, uint64_t key, char *buf, size_t cap)
{
    (void)dev;
    char dir[3072];
    if (!bstc_cache_dir("opencl", dir, sizeof dir))
        return false;
    int n = snprintf(buf, cap, "%s/%s-%016llx.bin", dir, families[f].name,
                     (unsigned long long)key);
    return n > 0 && (size_t)n < cap;
}

static uint64_t cache_key(ocl_device *dev, ocl_family f)
{
    uint64_t h = BSTC_FNV_SEED;
    h = bstc_fnv1a(h, dev->caps.platform_name, strlen(dev->caps.platform_name) + 1);
    h = bstc_fnv1a(h, dev->info.name, strlen(dev->info.name) + 1);
    h = bstc_fnv1a(h, dev->info.driver_version, strlen(dev->info.driver_version) + 1);
    h = bstc_fnv1a(h, dev->build_options, strlen(dev->build_options) + 1);
    uint64_t src = ocl_program_hash(dev, f);
    return bstc_fnv1a(h, &src, sizeof src);
}

/* The validated binary of a cache entry (host->alloc'd), or NULL with the reason logged. */
static uint8_t *cache_load(const char *path, uint64_t key, size_t *out_size)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL; /* no entry yet: nothing to say */
    const char *why = NULL;
    uint8_t hdr[CACHE_HEADER];
    uint8_t *bin = NULL;
    struct stat sb;
    uint64_t size = 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        why = "not a regular file";
    } else if ((uint64_t)sb.st_size < CACHE_HEADER || !bstc_read_all(fd, hdr, sizeof hdr)) {
        why = "shorter than its header";
    } else if (memcmp(hdr, CACHE_MAGIC, 8) != 0) {
        why = "bad magic";
    } else if (bstc_get_u32(hdr + 8) != CACHE_VERSION || bstc_get_u32(hdr + 12) != CACHE_HEADER) {
        why = "unknown format version";
    } else if (bstc_get_u64(hdr + 16) != key) {
        why = "key mismatch";
    } else if ((size = bstc_get_u64(hdr + 24)) == 0 || size > CACHE_MAX_BINARY ||
               (uint64_t)sb.st_size != CACHE_HEADER + size) {
        why = "binary size disagrees with the file";
    } else if (!(bin = ocl_host->alloc((size_t)size, 16))) {
        why = "out of memory";
    } else if (!bstc_read_all(fd, bin, (size_t)size)) {
        why = "read failed";
    } else if (bstc_fnv1a(BSTC_FNV_SEED, bin, (size_t)size) != bstc_get_u64(hdr + 32)) {
        why = "checksum mismatch";
    }
    close(fd);
    if (why) {
        ocl_host->log(BST_LOG_WARN, "opencl: program cache entry %s ignored (%s); rebuilding",
                      path, why);
        ocl_host->free(bin);
        return NULL;
    }
    *out_size = (size_t)size;
    return bin;
}

static void cache_store(const char *path, uint64_t key, const uint8_t *bin, size_t size)
{
    uint8_t hdr[CACHE_HEADER];
    memcpy(hdr, CACHE_MAGIC, 8);
    bstc_put_u32(hdr + 8, CACHE_VERSION);
    bstc_put_u32(hdr + 12, CACHE_HEADER);
    bstc_put_u64(hdr + 16, key);
    bstc_put_u64(hdr + 24, size);
    bstc_put_u64(hdr + 32, bstc_fnv1a(BSTC_FNV_SEED, bin, size));
    if (!bstc_write_file_atomic(path, hdr, sizeof hdr, bin, size))
        ocl_host->log(BST_LOG_DEBUG, "opencl: cannot write program cache %s: %s", path,
                      strerror(errno));
}

/* --- building --- */

static char *build_log(ocl_device *dev, cl_program p)
{
    size_t n = 0;
    if (clGetProgramBuildInfo(p, dev->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) != CL_SUCCESS)
        return NULL;
    char *log = ocl_host->alloc(n + 1, 16);
    if (!log)
        return NULL;
    if (clGetProgramBuildInfo(p, dev->id, CL_PROGRAM_BUILD_LOG, n, log, NULL) != CL_SUCCESS)
        n = 0;
    log[n] = '\0';
    /* trailing whitespace only lengthens the message */
    while (n > 0 && (log[n - 1] == '\n' || log[n - 1] == ' ' || log[n - 1] == '\0'))
        log[--n] = '\0';
    return log;
}

/* Builds from a cached binary; NULL when there is none or the driver refuses it. */
static cl_program from_cache(ocl_device *dev, ocl_family f, const char *path, uint64_t key)
{
    size_t size = 0;
    uint8_t *bin = cache_load(path, key, &size);
    if (!bin)
        return NULL;
    const unsigned char *bins[1] = {bin};
    cl_int bin_status = CL_SUCCESS, err = CL_SUCCESS;
    cl_program p = clCreateProgramWithBinary(dev->context, 1, &dev->id, &size, bins, &bin_status,
                                             &err);
    ocl_host->free(bin);
    if (err == CL_SUCCESS && bin_status == CL_SUCCESS)
        err = clBuildProgram(p, 1, &dev->id, dev->build_options, NULL, NULL);
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        ocl_host->log(BST_LOG_WARN,
                      "opencl: cached program %s for family %s refused by the driver (%s); "
                      "rebuilding",
                      path, families[f].name,
                      ocl_cl_error_name(err != CL_SUCCESS ? err : bin_status));
        if (p)
            (void)clReleaseProgram(p);
        return NULL;
    }
    return p;
}

static void to_cache(ocl_device *dev, cl_program p, const char *path, uint64_t key)
{
    size_t size = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0 || size > CACHE_MAX_BINARY)
        return;
    uint8_t *bin = ocl_host->alloc(size, 16);
    if (!bin)
        return;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS)
        cache_store(path, key, bin, size);
    ocl_host->free(bin);
    (void)dev;
}

/* Records family f's failure (kept for later queries: a broken family is not rebuilt on every
 * query) and reports it. */
static bst_status build_failed(ocl_device *dev, ocl_family f, bst_status st, const char *what,
                               const char *log)
{
    ocl_program_state *s = &dev->prog[f];
    size_t n = strlen(what) + (log ? strlen(log) : 0) + 160;
    s->message = ocl_host->alloc(n, 16);
    if (s->message)
        snprintf(s->message, n, "opencl: building kernel family '%s' for \"%s\" failed: %s%s%s",
                 families[f].name, dev->info.name, what, log && log[0] ? "; build log:\n" : "",
                 log ? log : "");
    ocl_host->set_error("%s", s->message ? s->message : what);
    s->status = st;
    return st;
}

static bst_status build(ocl_device *dev, ocl_family f)
{
    ocl_program_state *s = &dev->prog[f];
    uint64_t key = cache_key(dev, f);
    char path[4096];
    bool cached = cache_path(dev, f, key, path, sizeof path);
    if (!cached)
        ocl_host->log(BST_LOG_DEBUG, "opencl: no program cache directory; building uncached");
    cl_program p = cached ? from_cache(dev, f, path, key) : NULL;
    if (p) {
        s->program = p;
        s->status = BST_OK;
        return BST_OK;
    }
    const char *src[3];
    cl_uint n = family_sources(dev, f, src);
    cl_int err = CL_SUCCESS;
    p = clCreateProgramWithSource(dev->context, n, src, NULL, &err);
    if (err != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "clCreateProgramWithSource: %s (%d)", ocl_cl_error_name(err),
                 (int)err);
        return build_failed(dev, f, ocl_status_of(err) == BST_ERR_OUT_OF_MEMORY
                                        ? BST_ERR_OUT_OF_MEMORY
                                        : BST_ERR_COMPILE,
                            what, NULL);
    }
    err = clBuildProgram(p, 1, &dev->id, dev->build_options, NULL, NULL);
    if (err != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "clBuildProgram: %s (%d)", ocl_cl_error_name(err), (int)err);
        char *log = build_log(dev, p);
        (void)clReleaseProgram(p);
        bst_status st = ocl_status_of(err);
        bst_status r = build_failed(dev, f, st == BST_ERR_COMPILE ? st : BST_ERR_COMPILE, what, log);
        ocl_host->free(log);
        return r;
    }
    if (cached)
        to_cache(dev, p, path, key);
    s->program = p;
    s->status = BST_OK;
    return BST_OK;
}

bst_status ocl_program_get(ocl_device *dev, ocl_family f, cl_program *out_program)
{
    if ((unsigned)f >= OCL_FAM_COUNT) {
        ocl_host->set_error("opencl: no kernel family %d", (int)f);
        return BST_ERR_INTERNAL;
    }
    ocl_program_state *s = &dev->prog[f];
    if (!s->tried) {
        s->tried = true;
        cl_int inj = ocl_injected_cl_error("compile");
        bst_status st;
        if (inj != CL_SUCCESS) {
            /* A test's fault: taken down the same path as a failed clBuildProgram, but not
             * remembered, so the next call builds for real. */
            s->tried = false;
            return ocl_cl_fail(dev, inj, "clBuildProgram (family '%s')", families[f].name);
        }
        st = build(dev, f);
        if (st != BST_OK)
            return st;
    }
    if (!s->program) {
        ocl_host->set_error("%s", s->message ? s->message : "opencl: kernel family failed to build");
        return s->status != BST_OK ? s->status : BST_ERR_COMPILE;
    }
    if (out_program)
        *out_program = s->program;
    return BST_OK;
}

void ocl_programs_release(ocl_device *dev)
{
    for (int f = 0; f < OCL_FAM_COUNT; f++) {
        ocl_program_state *s = &dev->prog[f];
        if (s->program)
            (void)clReleaseProgram(s->program);
        ocl_host->free(s->message);
        memset(s, 0, sizeof *s);
    }
}
