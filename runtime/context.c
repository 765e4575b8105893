/*
 * runtime/context.c — the public context API (bastion.h): creating and destroying a context,
 * the plugin records and device list it exposes, and lazy device start-up.
 *
 * Devices start on first use (bsti_device_get), never at context creation: starting a GPU driver
 * costs time and memory, and an LLVM-based driver stack may even end the process, so only the
 * devices a program actually runs on are ever opened. A device that failed to start stays failed
 * for the context's life with its original message, so the runtime re-places work once instead
 * of retrying a broken driver on every call.
 */
#include "runtime/loader.h"

#include "graph/status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* End of a struct's version-1 fields: the least a caller may declare in struct_size. */
#define V1_END(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))

static pthread_once_t omp_once = PTHREAD_ONCE_INIT;

/* OpenMP runtimes (oneDNN's, PoCL's) spin-wait by default; on a machine shared with our own
 * pool that steals the cores we need. Set before any plugin can start an OpenMP runtime, and
 * never over a value the user chose. */
static void set_omp_policy(void) { setenv("OMP_WAIT_POLICY", "PASSIVE", 0); }

BST_API bst_status bst_context_create(const bst_context_options *options,
                                      bst_context **out_context)
{
    if (!out_context)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_create: out_context is NULL");
    *out_context = NULL;
    uint32_t n_threads = 0;
    const char *backends = NULL, *plugin_paths = NULL, *tune_db_path = NULL;
    uint32_t tune_mode = BST_TUNE_OFF;
    bool no_cache = false;
    if (options) {
        if (options->struct_size < V1_END(bst_context_options, n_threads))
            return bsti_fail(BST_ERR_INVALID_ARG,
                             "bst_context_create: options->struct_size is %u; set it to "
                             "sizeof(bst_context_options)",
                             options->struct_size);
        n_threads = options->n_threads;
        if (BST_HAS_FIELD(options, bst_context_options, backends))
            backends = options->backends;
        if (BST_HAS_FIELD(options, bst_context_options, plugin_paths))
            plugin_paths = options->plugin_paths;
        if (BST_HAS_FIELD(options, bst_context_options, tune_mode)) {
            tune_mode = options->tune_mode;
            if (tune_mode > BST_TUNE_FROZEN)
                return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_create: unknown tune_mode %u",
                                 tune_mode);
        }
        if (BST_HAS_FIELD(options, bst_context_options, no_cache))
            no_cache = options->no_cache;
        if (BST_HAS_FIELD(options, bst_context_options, tune_db_path))
            tune_db_path = options->tune_db_path;
    }
    pthread_once(&omp_once, set_omp_policy);

    bst_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_context_create: out of memory");
    ctx->tune_mode = tune_mode;
    ctx->tune_no_cache = no_cache;
    if (tune_db_path && !(ctx->tune_db_path = strdup(tune_db_path))) {
        free(ctx);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "bst_context_create: out of memory");
    }
    /* The pool is shared by the process: the newest context's setting applies to later jobs. */
    bsti_pool_set_threads(n_threads);
    ctx->n_threads = bsti_pool_threads();
    bst_status st = bsti_loader_load(ctx, backends, plugin_paths);
    if (st != BST_OK) {
        bsti_loader_release(ctx);
        free(ctx->tune_db_path);
        free(ctx);
        return st;
    }
    *out_context = ctx;
    return BST_OK;
}

BST_API void bst_context_destroy(bst_context *context)
{
    if (!context)
        return;
    bsti_tune_context_release(context);
    bsti_loader_release(context);
    free(context);
}

BST_API const char *bst_plugin_state_name(bst_plugin_state state)
{
    static const char *const names[] = {
        [BST_PLUGIN_LOADED] = "loaded",
        [BST_PLUGIN_NOT_LOADABLE] = "not-loadable",
        [BST_PLUGIN_NO_ENTRY] = "no-entry",
        [BST_PLUGIN_ABI_MISMATCH] = "abi-mismatch",
        [BST_PLUGIN_ENTRY_FAILED] = "entry-failed",
        [BST_PLUGIN_NO_DEVICE] = "no-device",
        [BST_PLUGIN_NOT_SELECTED] = "not-selected",
        [BST_PLUGIN_DUPLICATE] = "duplicate",
    };
    if ((unsigned)state >= sizeof names / sizeof names[0] || !names[state])
        return "unknown";
    return names[state];
}

BST_API uint32_t bst_context_plugin_count(const bst_context *context)
{
    return context ? context->n_plugins : 0;
}

BST_API bst_status bst_context_plugin(const bst_context *context, uint32_t index,
                                      bst_plugin_record *out_record)
{
    if (!context || !out_record)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_plugin: NULL argument");
    if (index >= context->n_plugins)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_plugin: index %u out of range (%u plugins)",
                         index, context->n_plugins);
    size_t size = out_record->struct_size;
    if (size < V1_END(bst_plugin_record, n_devices))
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "bst_context_plugin: out_record->struct_size is %zu; set it to "
                         "sizeof(bst_plugin_record)",
                         size);
    const bsti_plugin *p = &context->plugins[index];
    bst_plugin_record rec = {
        .struct_size = (uint32_t)(size < sizeof rec ? size : sizeof rec),
        .state = (uint32_t)p->state,
        .name = p->name,
        .path = p->path,
        .version = p->version,
        .detail = p->detail,
        .abi_version = p->abi_version,
        .n_devices = p->n_devices,
    };
    memcpy(out_record, &rec, rec.struct_size);
    return BST_OK;
}

BST_API uint32_t bst_context_device_count(const bst_context *context)
{
    return context ? context->n_devices : 0;
}

BST_API bst_status bst_context_device(const bst_context *context, uint32_t index,
                                      bst_device_info *out_info, const char **out_backend_name)
{
    if (!context || !out_info)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_device: NULL argument");
    if (index >= context->n_devices)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_context_device: index %u out of range (%u devices)",
                         index, context->n_devices);
    size_t size = out_info->struct_size;
    if (size < V1_END(bst_device_info, fingerprint))
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "bst_context_device: out_info->struct_size is %zu; set it to "
                         "sizeof(bst_device_info)",
                         size);
    const bsti_device *d = &context->devices[index];
    size_t n = size < sizeof d->info ? size : sizeof d->info;
    memcpy(out_info, &d->info, n);
    out_info->struct_size = (uint32_t)n;
    if (out_backend_name)
        *out_backend_name = d->plugin->name;
    return BST_OK;
}

bst_status bsti_device_get(bst_context *ctx, uint32_t index, void **out_handle)
{
    if (!ctx || !out_handle)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_device_get: NULL argument");
    *out_handle = NULL;
    if (index >= ctx->n_devices)
        return bsti_fail(BST_ERR_INVALID_ARG, "device index %u out of range (%u devices)", index,
                         ctx->n_devices);
    bsti_device *d = &ctx->devices[index];
    if (d->handle) {
        *out_handle = d->handle;
        return BST_OK;
    }
    if (d->open_failed)
        return bsti_fail(d->open_status, "%s", d->open_error ? d->open_error : "device failed to start");

    const bst_backend_api *api = &d->plugin->api;
    void *handle = NULL;
    bsti_fail(BST_OK, "%s", "");
    bst_status st = api->device_open(api->ctx, d->index_in_plugin, &handle);
    /* Copied: the message buffer is about to be rewritten with it inside. */
    char why_buf[1024];
    snprintf(why_buf, sizeof why_buf, "%s", bst_last_error());
    const char *why = why_buf;
    if (st == BST_OK && !handle) {
        /* NULL means "not open" here; a plugin must hand back a real handle. */
        st = BST_ERR_BACKEND;
        why = "device_open succeeded but returned no device handle";
    } else if ((unsigned)st >= BST_STATUS_COUNT) {
        st = BST_ERR_BACKEND;
    }
    if (st != BST_OK) {
        d->open_failed = true;
        d->open_status = st;
        /* Ownership of the message: formatted into the device so later calls repeat it exactly. */
        bsti_fail(st, "%s device %u (%s) failed to start: %s: %s", d->plugin->name,
                  d->index_in_plugin, d->info.name, bst_status_name(st),
                  why[0] ? why : "(the plugin gave no message)");
        d->open_error = strdup(bst_last_error());
        bsti_log(BST_LOG_WARN, "%s", bst_last_error());
        return st;
    }
    d->handle = handle;
    if (d->info.self_threaded && api->set_num_threads) {
        bst_status ts = api->set_num_threads(handle, ctx->n_threads);
        if (ts != BST_OK)
            bsti_log(BST_LOG_WARN, "%s device %u: set_num_threads(%u) failed: %s",
                     d->plugin->name, d->index_in_plugin, ctx->n_threads, bst_last_error());
    }
    *out_handle = handle;
    return BST_OK;
}
