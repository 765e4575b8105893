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
bstc_plugin cpu_plugin = {.name = CPU_BACKEND_NAME};

bst_status cpu_injected_fault(const char *site) { return bstc_injected_fault(&cpu_plugin, site); }

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
    uint64_t h = BSTC_FNV_SEED;
    h = bstc_fnv1a(h, info->name, strlen(info->name));
    h = bstc_fnv1a(h, count, strlen(count));
    /* The features the kernels may use (BASTION_CPU_ISA can leave some out): the tuning database
     * keys its rows by this fingerprint, and times measured without AVX-512 say nothing about
     * the same CPU with it. */
    const uint32_t isa = cpu_isa_mask();
    info->fingerprint = bstc_fnv1a(h, &isa, sizeof isa);
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
    bst_device_info info;
    describe_device(&info);
    return bstc_enumerate_out(&cpu_plugin, out_infos, stride, capacity, out_count, &info,
                              sizeof info, 1);
}

static bst_status cpu_device_open(void *ctx, uint32_t index, void **out_device)
{
    (void)ctx;
    bst_status st = bstc_open_single_device(&cpu_plugin, index, out_device);
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

/* The services this plugin calls beyond the basic ones are the reference (de)quantizers;
 * parallel_for, num_workers and fault may be missing (then it runs serially and nothing is
 * injected). */
BST_BACKEND_ENTRY
{
    uint32_t host_struct_size = 0;
    bst_status st = bstc_entry_begin(&cpu_plugin, host, host_abi, out,
                                     BSTC_NEEDS_DEQUANTIZE | BSTC_NEEDS_QUANTIZE,
                                     &host_struct_size);
    if (st != BST_OK)
        return st;
    if (cpu_host != host) /* as bstc_entry_begin: no write while other contexts read it */
        cpu_host = host;
    cpu_ctx *ctx = bstc_alloc_zero(&cpu_plugin, sizeof *ctx, "entry");
    if (!ctx)
        return BST_ERR_OUT_OF_MEMORY;
    ctx->magic = CPU_MAGIC_CTX;
    const char *cap = secure_getenv("BASTION_CPU_ISA");
    char bad[64];
    uint32_t allowed;
    if (cap && cap[0] && !cpu_isa_parse(cap, &allowed, bad, sizeof bad))
        host->log(BST_LOG_WARN, "cpu: BASTION_CPU_ISA=%s: unknown feature '%s' (known: scalar "
                  "avx2 avxvnni avx512 avx512vnni avx512bf16 amx); using every feature the "
                  "machine has", cap, bad);

    const bst_backend_api api = {
        .name = CPU_BACKEND_NAME,
        .version = CPU_BACKEND_VERSION,
        .ctx = ctx,
        .destroy = cpu_destroy,
        .enumerate = cpu_enumerate,
        .device_open = cpu_device_open,
        .device_close = cpu_device_close,
        .set_num_threads = NULL, /* not self-threaded */
        .query = cpu_query,
        .buffer_alloc = cpu_buffer_alloc,
        .buffer_free = cpu_buffer_free,
        .buffer_write = cpu_buffer_write,
        .buffer_read = cpu_buffer_read,
        .buffer_copy = cpu_buffer_copy,
        .buffer_map = cpu_buffer_map,
        .prepare_weight = cpu_prepare_weight,
        .compile = cpu_compile,
        .executable_free = cpu_executable_free,
        .execute = cpu_execute,
        .last_execute_ns = cpu_last_execute_ns,
        .node_timing = cpu_node_timing,
        .node_times = cpu_node_times,
    };
    bstc_entry_publish(out, host_struct_size, host_abi, &api);
    return BST_OK;
}
