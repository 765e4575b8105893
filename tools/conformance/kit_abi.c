/*
 * tools/conformance/kit_abi.c — the ABI checks of `bastion conformance`, run in a worker:
 *  - exports: the plugin file's dynamic symbol table defines exactly one exported symbol,
 *    bst_backend_entry (read from the ELF file itself, no code run);
 *  - negotiation: the entry called with a host ABI one above ours (BST_ABI_VERSION + 1) and one
 *    below the plugin's own minimum must either answer a version both sides speak or refuse
 *    with BST_ERR_ABI and a message — never answer a version the host did not offer, never
 *    crash;
 *  - struct_size: the entry writes no byte of bst_backend_api past the struct_size the host set
 *    (a version-1 host's smaller table, and a newer host's larger one), and enumerate writes no
 *    byte of a bst_device_info past its struct_size (smaller and larger than the plugin's).
 * The entry is called directly with this file's own host table (the loader's negotiation would
 * hide what the plugin answers), so the plugin also meets a host that is not libbastion.
 */
#define _POSIX_C_SOURCE 200809L /* dlopen flags, strdup */

#include "kit.h"

#include "graph/quant.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 0xA5u
#define EXTRA 64u

/* --- a host table that records what the plugin says ------------------------------------------ */

static _Thread_local char g_msg[1024];

static void host_log(bst_log_level level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}

static void host_set_error(const char *fmt, ...)
{
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
}

static void *host_alloc(size_t size, size_t alignment)
{
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    if ((alignment & (alignment - 1)) != 0 || size > SIZE_MAX - alignment)
        return NULL;
    void *p = NULL;
    return posix_memalign(&p, alignment, size ? size : 1) == 0 ? p : NULL;
}

static void host_free(void *p) { free(p); }

/* One worker: the checks never run kernels, so nothing here needs to be parallel. */
static void host_parallel_for(int64_t n, int64_t grain, bst_range_fn fn, void *arg)
{
    (void)grain;
    if (n > 0)
        fn(arg, 0, n, 0);
}

static uint32_t host_num_workers(void) { return 1; }

static bst_status host_fault(const char *site)
{
    (void)site;
    return BST_OK;
}

/* Plugins may keep the host pointer forever: one static table per ABI version offered. */
static bst_host_api g_hosts[BST_ABI_VERSION + 2];

static const bst_host_api *host_for(uint32_t abi)
{
    bst_host_api *h = &g_hosts[abi < BST_ABI_VERSION + 2 ? abi : BST_ABI_VERSION + 1];
    h->struct_size = sizeof *h;
    h->abi_version = abi;
    h->log = host_log;
    h->set_error = host_set_error;
    h->alloc = host_alloc;
    h->free = host_free;
    h->parallel_for = host_parallel_for;
    h->num_workers = host_num_workers;
    h->dequantize = bsti_dequantize;
    h->quantize = bsti_quantize;
    h->fault = host_fault;
    return h;
}

/* --- checks ---------------------------------------------------------------------------------- */

typedef struct checker {
    FILE *out;
    bst_backend_entry_fn entry;
    int failed;
} checker;

static void check(checker *k, const char *name, bool ok, const char *fmt, ...) BST_PRINTF(4, 5);

static void check(checker *k, const char *name, bool ok, const char *fmt, ...)
{
    char detail[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    kit_send(k->out, "CHECK", 3, name, ok ? "pass" : "fail", detail);
    k->failed += ok ? 0 : 1;
}

/* Calls the entry with a table buffer of `struct_size` bytes inside `EXTRA` guard bytes. Returns
 * the status; *out_overrun is the first written byte past struct_size (or -1). */
typedef struct entry_call {
    bst_status status;
    bst_backend_api api;
    long overrun;
    char msg[1024];
} entry_call;

static void call_entry(checker *k, uint32_t host_abi, uint32_t struct_size, entry_call *r)
{
    size_t cap = sizeof(bst_backend_api) + 2 * EXTRA;
    unsigned char *buf = host_alloc(cap, 16);
    memset(r, 0, sizeof *r);
    r->overrun = -1;
    if (!buf) {
        r->status = BST_ERR_OUT_OF_MEMORY;
        return;
    }
    memset(buf, GUARD, cap);
    bst_backend_api *api = (bst_backend_api *)(void *)buf;
    memset(api, 0, struct_size);
    api->struct_size = struct_size;
    g_msg[0] = '\0';
    r->status = k->entry(host_for(host_abi), host_abi, api);
    snprintf(r->msg, sizeof r->msg, "%s", g_msg);
    for (size_t i = struct_size; i < cap; i++)
        if (buf[i] != GUARD) {
            r->overrun = (long)i;
            break;
        }
    memcpy(&r->api, buf, struct_size < sizeof r->api ? struct_size : sizeof r->api);
    if (struct_size < sizeof r->api)
        memset((char *)&r->api + struct_size, 0, sizeof r->api - struct_size);
    free(buf);
}

static void release(entry_call *r)
{
    if (r->status == BST_OK && r->api.destroy)
        r->api.destroy(r->api.ctx);
    r->api.destroy = NULL;
}

static const char *st(bst_status s)
{
    const char *n = bst_status_name(s);
    return n ? n : "an unknown status";
}

/* A negotiation answer is acceptable when it is a version both sides speak, or a refusal with
 * BST_ERR_ABI and a message. */
static void check_negotiation(checker *k, const char *name, uint32_t host_abi, uint32_t min_ok)
{
    entry_call r;
    call_entry(k, host_abi, (uint32_t)sizeof(bst_backend_api), &r);
    if (r.status == BST_OK) {
        uint32_t v = r.api.abi_version;
        bool ok = v >= min_ok && v <= host_abi && v >= BST_ABI_VERSION_MIN;
        check(k, name, ok, "host ABI %u: accepted, answered version %u%s", host_abi, v,
              ok ? "" : v > host_abi ? " (newer than the host offered)"
                                     : " (below the oldest version a host accepts)");
    } else if (r.status == BST_ERR_ABI) {
        bool ok = r.msg[0] != '\0';
        check(k, name, ok, "host ABI %u: refused with BST_ERR_ABI: %s", host_abi,
              ok ? r.msg : "(no message: the plugin must call host->set_error)");
    } else {
        check(k, name, false, "host ABI %u: returned %s instead of negotiating or BST_ERR_ABI: %s",
              host_abi, st(r.status), r.msg[0] ? r.msg : "(no message)");
    }
    release(&r);
}

static void check_exports(checker *k, const char *path)
{
    char **names = NULL;
    uint32_t n = 0;
    char why[512];
    if (!kit_exported_symbols(path, &names, &n, why, sizeof why)) {
        check(k, "exports", false, "%s", why);
        return;
    }
    bool entry = false;
    char extra[1024] = "";
    size_t used = 0;
    uint32_t n_extra = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(names[i], BST_BACKEND_ENTRY_SYMBOL) == 0) {
            entry = true;
        } else {
            n_extra++;
            if (used + strlen(names[i]) + 3 < sizeof extra)
                used += (size_t)snprintf(extra + used, sizeof extra - used, "%s%s",
                                         used ? ", " : "", names[i]);
        }
        free(names[i]);
    }
    free(names);
    if (!entry)
        check(k, "exports", false, "%s is not exported%s%s", BST_BACKEND_ENTRY_SYMBOL,
              n_extra ? "; exported: " : "", extra);
    else if (n_extra)
        check(k, "exports", false,
              "exports %u symbol(s) besides " BST_BACKEND_ENTRY_SYMBOL
              " (build with -fvisibility=hidden or a version script): %s",
              n_extra, extra);
    else
        check(k, "exports", true, "exactly " BST_BACKEND_ENTRY_SYMBOL);
}

static void check_api_size(checker *k, const char *name, uint32_t host_abi, uint32_t size)
{
    entry_call r;
    call_entry(k, host_abi, size, &r);
    if (r.overrun >= 0)
        check(k, name, false, "host ABI %u, struct_size %u: the entry wrote byte %ld, past the "
              "struct_size the host set", host_abi, size, r.overrun);
    else if (r.status == BST_OK)
        check(k, name, r.api.abi_version <= host_abi && r.api.abi_version >= 1,
              "host ABI %u, struct_size %u: accepted (version %u), nothing written past it",
              host_abi, size, r.api.abi_version);
    else
        check(k, name, r.status == BST_ERR_ABI && r.msg[0],
              "host ABI %u, struct_size %u: refused with %s: %s", host_abi, size, st(r.status),
              r.msg[0] ? r.msg : "(no message)");
    release(&r);
}

/* enumerate with records of `struct_size` bytes at `stride`: nothing past struct_size in any
 * record may change. */
static void check_info_size(checker *k, const char *name, const bst_backend_api *api,
                            uint32_t struct_size)
{
    const uint32_t cap = 4;
    size_t stride = sizeof(bst_device_info) + EXTRA;
    unsigned char *buf = host_alloc(stride * cap, 16);
    if (!buf) {
        check(k, name, false, "out of memory");
        return;
    }
    memset(buf, GUARD, stride * cap);
    for (uint32_t i = 0; i < cap; i++) {
        memset(buf + i * stride, 0, struct_size);
        ((bst_device_info *)(void *)(buf + i * stride))->struct_size = struct_size;
    }
    uint32_t count = 0;
    g_msg[0] = '\0';
    bst_status s = api->enumerate(api->ctx, (bst_device_info *)(void *)buf, stride, cap, &count);
    long bad = -1;
    for (uint32_t i = 0; i < cap && bad < 0; i++)
        for (size_t j = struct_size; j < stride; j++)
            if (buf[i * stride + j] != GUARD) {
                bad = (long)(i * stride + j);
                break;
            }
    if (bad >= 0)
        check(k, name, false, "struct_size %u, stride %zu: enumerate wrote byte %ld of record "
              "%ld, past its struct_size", struct_size, stride, bad % (long)stride,
              bad / (long)stride);
    else if (s != BST_OK) /* refusing a size it cannot fill is fine, with a message */
        check(k, name, g_msg[0] != '\0', "struct_size %u: enumerate refused with %s: %s",
              struct_size, st(s), g_msg[0] ? g_msg : "(no message)");
    else
        check(k, name, true, "struct_size %u, stride %zu: %u device(s), nothing written past "
              "struct_size", struct_size, stride, count);
    free(buf);
}

int kit_abi_worker(const kit_worker_args *a)
{
    /* Where the loader finds the plugin, and what it made of it. */
    bst_context *ctx = NULL;
    if (!kit_open_context(a, false, &ctx))
        return 1;
    const char *path = NULL;
    for (uint32_t i = 0; i < bst_context_plugin_count(ctx); i++) {
        bst_plugin_record r;
        memset(&r, 0, sizeof r);
        r.struct_size = sizeof r;
        if (bst_context_plugin(ctx, i, &r) != BST_OK || strcmp(r.name, a->backend) != 0 ||
            r.state == BST_PLUGIN_DUPLICATE || r.state == BST_PLUGIN_NOT_SELECTED)
            continue;
        char abi[16];
        snprintf(abi, sizeof abi, "%u", r.abi_version);
        const char *state = bst_plugin_state_name((bst_plugin_state)r.state);
        kit_send(a->out, "PLUGIN", 6, r.name, r.path, r.version, abi, state ? state : "?",
                 r.detail);
        path = r.path;
        break;
    }
    if (!path) {
        kit_send(a->out, "FATAL", 1, "no plugin of that name was found in the plugin path");
        bst_context_destroy(ctx);
        return 1;
    }
    checker k = {a->out, NULL, 0};
    check_exports(&k, path);
    /* RTLD_NOW | RTLD_LOCAL as the loader does; the module stays loaded (plugins are never
     * unloaded, and the loader's context has it open anyway). */
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    void *sym = dl ? dlsym(dl, BST_BACKEND_ENTRY_SYMBOL) : NULL;
    if (!sym) {
        const char *e = dlerror();
        check(&k, "entry", false, "%s", e ? e : "no entry symbol");
        kit_send(a->out, "END", 0);
        bst_context_destroy(ctx);
        return 1;
    }
    memcpy(&k.entry, &sym, sizeof k.entry);

    /* The plugin's oldest version: the lowest host ABI it accepts. */
    uint32_t min_ok = 0;
    for (uint32_t v = BST_ABI_VERSION_MIN; v <= BST_ABI_VERSION && !min_ok; v++) {
        entry_call r;
        call_entry(&k, v, (uint32_t)sizeof(bst_backend_api), &r);
        if (r.status == BST_OK && r.api.abi_version >= 1 && r.api.abi_version <= v)
            min_ok = r.api.abi_version;
        release(&r);
    }
    check_negotiation(&k, "abi_newer_host", BST_ABI_VERSION + 1, min_ok ? min_ok : 1);
    uint32_t older = min_ok ? min_ok - 1 : BST_ABI_VERSION;
    check_negotiation(&k, "abi_older_host", older, min_ok ? min_ok : 1);

    check_api_size(&k, "api_struct_v1_size", 1, (uint32_t)BST_BACKEND_API_SIZE_V1);
    check_api_size(&k, "api_struct_larger", BST_ABI_VERSION,
                   (uint32_t)(sizeof(bst_backend_api) + EXTRA / 2));

    entry_call r;
    call_entry(&k, BST_ABI_VERSION, (uint32_t)sizeof(bst_backend_api), &r);
    if (r.status == BST_OK) {
        /* Version 3's node times come as a pair, answered at version 3 or later. */
        const bool timing = r.api.node_timing != NULL, times = r.api.node_times != NULL;
        check(&k, "node_times_pair", timing == times && (!timing || r.api.abi_version >= 3),
              "node_timing %s, node_times %s (answered version %u)", timing ? "set" : "NULL",
              times ? "set" : "NULL", r.api.abi_version);
    }
    if (r.status == BST_OK && r.api.enumerate) {
        check_info_size(&k, "device_info_smaller", &r.api,
                        (uint32_t)offsetof(bst_device_info, fingerprint));
        check_info_size(&k, "device_info_larger", &r.api,
                        (uint32_t)(sizeof(bst_device_info) + EXTRA / 2));
    }
    release(&r);
    kit_send(a->out, "END", 0);
    bst_context_destroy(ctx);
    return k.failed ? 1 : 0;
}
