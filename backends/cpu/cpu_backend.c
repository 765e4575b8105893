/*
 * The CPU backend's entry point: ABI negotiation, the api table, and the one "cpu" device
 * (described from /proc/cpuinfo and sysconf).
 */
#include "cpu_backend.h"
#include "cpu_isa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

const bst_host_api *cpu_host;

bst_status cpu_injected_fault(const char *site)
{
    if (!cpu_host->fault)
        return BST_OK;
    bst_status st = cpu_host->fault(site);
    if (st != BST_OK)
        cpu_host->set_error("cpu: injected fault at '%s'", site);
    return st;
}

/* --- device description --- */

/* Value of the first "key : value" line of /proc/cpuinfo whose key is `key`. */
static bool cpuinfo_value(const char *key, char *out, size_t cap)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    size_t klen = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0)
            continue;
        const char *p = line + klen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ':')
            continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue;
        if (n >= cap)
            n = cap - 1;
        memcpy(out, p, n);
        out[n] = '\0';
        found = true;
    }
    fclose(f);
    return found;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static void describe_device(bst_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = (uint32_t)sizeof *info;
    info->kind = BST_DEVICE_CPU;
    if (!cpuinfo_value("model name", info->name, sizeof info->name) &&
        !cpuinfo_value("Model", info->name, sizeof info->name)) {
        struct utsname u;
        snprintf(info->name, sizeof info->name, "CPU (%s)", uname(&u) == 0 ? u.machine : "?");
    }
    if (!cpuinfo_value("vendor_id", info->vendor, sizeof info->vendor) &&
        !cpuinfo_value("CPU implementer", info->vendor, sizeof info->vendor))
        snprintf(info->vendor, sizeof info->vendor, "unknown");
    snprintf(info->driver_version, sizeof info->driver_version, "%s", CPU_BACKEND_VERSION);

    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t mem = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    info->memory_bytes = mem;
    info->max_alloc_bytes = mem;
    info->max_binding_bytes = mem;
    info->unified_memory = true;
    info->self_threaded = false; /* runs on the host's pool */

    long cores = sysconf(_SC_NPROCESSORS_CONF);
    char count[32];
    snprintf(count, sizeof count, "/%ld", cores);
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    h = fnv1a(h, info->name, strlen(info->name));
    h = fnv1a(h, count, strlen(count));
    info->fingerprint = h;
}

/* --- api table entries --- */

static void cpu_destroy(void *ctx)
{
    cpu_ctx *c = ctx;
    if (!c || c->magic != CPU_MAGIC_CTX)
        return;
    c->magic = 0;
    cpu_host->free(c);
}

static bst_status cpu_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                uint32_t capacity, uint32_t *out_count)
{
    (void)ctx;
    if (!out_count || (capacity > 0 && !out_infos)) {
        cpu_host->set_error("cpu: enumerate: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    *out_count = 1;
    if (capacity == 0)
        return BST_OK;
    /* Every field is in version 1, so a slot must hold all of it. */
    if (stride < sizeof(bst_device_info) || out_infos->struct_size < sizeof(bst_device_info)) {
        cpu_host->set_error("cpu: enumerate: stride %zu / struct_size %u smaller than the %zu "
                            "bytes of bst_device_info",
                            stride, out_infos->struct_size, sizeof(bst_device_info));
        return BST_ERR_ABI;
    }
    bst_device_info info;
    describe_device(&info);
    memcpy(out_infos, &info, sizeof info);
    return BST_OK;
}

static bst_status cpu_device_open(void *ctx, uint32_t index, void **out_device)
{
    (void)ctx;
    if (!out_device) {
        cpu_host->set_error("cpu: device_open: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    *out_device = NULL;
    if (index != 0) {
        cpu_host->set_error("cpu: device_open: no device %u (there is one)", index);
        return BST_ERR_NOT_FOUND;
    }
    bst_status st = cpu_injected_fault("device_open");
    if (st != BST_OK)
        return st;
    cpu_device *d = cpu_host->alloc(sizeof *d, 64);
    if (!d) {
        cpu_host->set_error("cpu: device_open: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    d->magic = CPU_MAGIC_DEVICE;
    describe_device(&d->info);
    /* Tests that need the oracle's exact numbers (greedy equality with the numpy reference)
     * ask for the reference kernels only; every other value keeps all variants. */
    const char *kernels = secure_getenv("BASTION_CPU_KERNELS");
    d->ref_only = kernels && strcmp(kernels, "ref") == 0;
    d->no_fused = d->ref_only || (kernels && strcmp(kernels, "lowered") == 0);
    if (kernels && !d->no_fused && strcmp(kernels, "all") != 0 && kernels[0])
        cpu_host->log(BST_LOG_WARN, "cpu: BASTION_CPU_KERNELS=%s is not 'ref', 'lowered' or "
                      "'all'; offering all kernels", kernels);
    char isa[96];
    cpu_host->log(BST_LOG_DEBUG, "cpu: opened device \"%s\" (ISA: %s%s)", d->info.name,
                  cpu_isa_string(cpu_isa_mask(), isa, sizeof isa),
                  d->ref_only ? "; reference kernels only" : "");
    *out_device = d;
    return BST_OK;
}

static void cpu_device_close(void *device)
{
    cpu_device *d = device;
    if (!d || d->magic != CPU_MAGIC_DEVICE)
        return;
    d->magic = 0;
    cpu_host->free(d);
}

/* The services this plugin calls; parallel_for, num_workers and fault may be missing (then it
 * runs serially and nothing is injected). */
static bool host_usable(const bst_host_api *host)
{
    return host->log && host->set_error && host->alloc && host->free && host->dequantize &&
           host->quantize;
}

BST_BACKEND_ENTRY
{
    if (!host || host->struct_size < sizeof(bst_host_api))
        return BST_ERR_ABI; /* too old or too small to even carry set_error */
    if (host_abi < BST_ABI_VERSION_MIN) {
        if (host->set_error)
            host->set_error("cpu: host ABI %u is older than the oldest this plugin speaks (%u)",
                            host_abi, BST_ABI_VERSION_MIN);
        return BST_ERR_ABI;
    }
    if (!host_usable(host)) {
        if (host->set_error)
            host->set_error("cpu: host service table lacks a required service");
        return BST_ERR_ABI;
    }
    if (!out) {
        host->set_error("cpu: entry: NULL output table");
        return BST_ERR_INVALID_ARG;
    }
    if (out->struct_size < BST_BACKEND_API_SIZE_V1) {
        host->set_error("cpu: backend table of %u bytes is smaller than version 1's %zu",
                        out->struct_size, (size_t)BST_BACKEND_API_SIZE_V1);
        return BST_ERR_ABI;
    }
    /* An older host's table is smaller: only the fields it has are written. */
    const uint32_t host_struct_size = out->struct_size;
    cpu_host = host;
    cpu_ctx *ctx = host->alloc(sizeof *ctx, 64);
    if (!ctx) {
        host->set_error("cpu: entry: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    ctx->magic = CPU_MAGIC_CTX;

    out->struct_size = host_struct_size < sizeof(bst_backend_api)
                           ? host_struct_size
                           : (uint32_t)sizeof(bst_backend_api);
    out->abi_version = host_abi < BST_ABI_VERSION ? host_abi : BST_ABI_VERSION;
    out->name = CPU_BACKEND_NAME;
    out->version = CPU_BACKEND_VERSION;
    out->ctx = ctx;
    out->destroy = cpu_destroy;
    out->enumerate = cpu_enumerate;
    out->device_open = cpu_device_open;
    out->device_close = cpu_device_close;
    out->set_num_threads = NULL; /* not self-threaded */
    out->query = cpu_query;
    out->buffer_alloc = cpu_buffer_alloc;
    out->buffer_free = cpu_buffer_free;
    out->buffer_write = cpu_buffer_write;
    out->buffer_read = cpu_buffer_read;
    out->buffer_copy = cpu_buffer_copy;
    out->buffer_map = cpu_buffer_map;
    out->prepare_weight = cpu_prepare_weight;
    out->compile = cpu_compile;
    out->executable_free = cpu_executable_free;
    out->execute = cpu_execute;
    out->last_execute_ns = cpu_last_execute_ns;
    return BST_OK;
}
