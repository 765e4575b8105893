/*
 * tests/backend_ops_devices.c — registers every device of a runtime context with the op
 * conformance harness (tools/conformance/backend_ops_harness.h). Test-only: it reaches the
 * context's device table through runtime internals, which the harness itself does not use (so
 * that `bastion conformance` can run it on plugins it loads itself).
 */
#include "backend_ops_devices.h"

#include "backend_ops_harness.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <string.h>

static bst_context *g_ctx;

static void context_devices_init(void)
{
    bst_context_options opt;
    memset(&opt, 0, sizeof opt);
    opt.struct_size = sizeof opt;
    if (bst_context_create(&opt, &g_ctx) != BST_OK) {
        fprintf(stderr, "backend_ops: bst_context_create failed: %s\n", bst_last_error());
        g_ctx = NULL;
        return;
    }
    for (uint32_t i = 0; i < g_ctx->n_devices; i++) {
        bsti_device *d = &g_ctx->devices[i];
        char label[64];
        snprintf(label, sizeof label, "%s:%u", d->plugin->name, d->index_in_plugin);
        void *h = NULL;
        if (bsti_device_get(g_ctx, i, &h) != BST_OK || !h) {
            fprintf(stderr, "backend_ops: device %s (%s) failed to open: %s\n", label,
                    d->info.name, bst_last_error());
            h = NULL;
        }
        (void)bo_device_add(&d->plugin->api, h, label, strcmp(d->plugin->name, "cpu") == 0);
    }
    printf("\nbackend_ops: %u device(s):", g_ctx->n_devices);
    for (uint32_t i = 0; i < g_ctx->n_devices; i++)
        printf(" %s (%s)", bo_device_label(i), g_ctx->devices[i].info.name);
    printf("\n");
}

static void context_devices_fini(void)
{
    if (g_ctx)
        bst_context_destroy(g_ctx);
    g_ctx = NULL;
}

void bo_use_context_devices(void)
{
    bo_set_device_source(context_devices_init, context_devices_fini);
}
