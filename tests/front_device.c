/*
 * tests/front_device.c — see front_device.h.
 */
#include "front_device.h"

#include <CUnit/CUnit.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef bst_status (*query_fn)(void *, const bst_node_desc *, bst_kernel_variant *, size_t,
                               uint32_t, uint32_t *);
static query_fn cpu_query;
static const uint32_t *declined_ops;

static bst_status query_declining(void *device, const bst_node_desc *node,
                                  bst_kernel_variant *out_variants, size_t stride,
                                  uint32_t capacity, uint32_t *out_count)
{
    for (const uint32_t *op = declined_ops; op && *op != BST_OP_COUNT; op++)
        if (node->op == *op) {
            *out_count = 0;
            return BST_OK;
        }
    return cpu_query(device, node, out_variants, stride, capacity, out_count);
}

void bst_test_front_device(bst_context *ctx, const char *name, const uint32_t *declined)
{
    uint32_t np = ctx->n_plugins, nd = ctx->n_devices;
    /* Devices point into the plugin array, which moves when it grows. */
    ptrdiff_t owner[8];
    CU_ASSERT_FATAL(nd <= 8);
    for (uint32_t d = 0; d < nd; d++)
        owner[d] = ctx->devices[d].plugin - ctx->plugins;
    bsti_plugin *plugins = realloc(ctx->plugins, (np + 1) * sizeof *plugins);
    CU_ASSERT_FATAL(plugins != NULL);
    for (uint32_t d = 0; d < nd; d++)
        ctx->devices[d].plugin = plugins + owner[d];
    ctx->plugins = plugins;
    bsti_plugin *cpu = ctx->devices[0].plugin;
    CU_ASSERT_FATAL(strcmp(cpu->name, "cpu") == 0);
    bsti_plugin *fake = &plugins[np];
    *fake = *cpu;
    fake->state = BST_PLUGIN_NOT_SELECTED;
    fake->handle = NULL;
    fake->name = strdup(name);
    fake->path = strdup("");
    fake->version = strdup("");
    fake->detail = strdup("");
    cpu_query = cpu->api.query;
    declined_ops = declined;
    fake->api.query = query_declining;
    ctx->n_plugins = np + 1;

    bsti_device *devices = calloc(nd + 1, sizeof *devices);
    CU_ASSERT_FATAL(devices != NULL);
    devices[0] = ctx->devices[0];
    devices[0].plugin = fake;
    devices[0].handle = NULL;
    devices[0].open_failed = false;
    devices[0].open_error = NULL;
    memcpy(devices + 1, ctx->devices, nd * sizeof *devices);
    free(ctx->devices);
    ctx->devices = devices;
    ctx->n_devices = nd + 1;
}
