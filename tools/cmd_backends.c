/*
 * tools/cmd_backends.c — `bastion backends`: every plugin the loader found, in the state it
 * ended in (loaded, or skipped with the reason), and each loaded plugin's devices. The --json
 * form is a stable document (schema "bastion.backends/1") for scripts and bug reports: fields
 * are only ever added, never renamed or removed.
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define CMD "backends"

void cli_usage_backends(FILE *out)
{
    fprintf(out,
            "Usage: bastion backends [--json] [--backend LIST] [--plugin-path DIRS]\n"
            "\n"
            "Lists every backend plugin found, whether it loaded or why it was skipped, and the\n"
            "devices of each loaded plugin.\n"
            "\n"
            "Options:\n"
            "  --json              print a JSON document (schema \"bastion.backends/1\")\n"
            "  --backend LIST      backends to select, comma-separated, in priority order\n"
            "                      (default: $BASTION_BACKENDS, else all found)\n"
            "  --plugin-path DIRS  ':'-separated directories searched before the default ones\n"
            "  -h, --help          show this help\n");
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case BST_DEVICE_CPU:
        return "cpu";
    case BST_DEVICE_GPU:
        return "gpu";
    case BST_DEVICE_NPU:
        return "npu";
    case BST_DEVICE_ACCEL:
        return "accel";
    default:
        return "unknown";
    }
}

typedef struct device_entry {
    bst_device_info info;
    const char *backend;
} device_entry;

typedef struct inventory {
    uint32_t n_plugins;
    bst_plugin_record *plugins;
    uint32_t n_devices;
    device_entry *devices;
} inventory;

static void inventory_free(inventory *inv)
{
    free(inv->plugins);
    free(inv->devices);
}

static int inventory_read(bst_context *ctx, inventory *inv)
{
    memset(inv, 0, sizeof *inv);
    uint32_t np = bst_context_plugin_count(ctx);
    uint32_t nd = bst_context_device_count(ctx);
    inv->plugins = calloc(np ? np : 1, sizeof *inv->plugins);
    inv->devices = calloc(nd ? nd : 1, sizeof *inv->devices);
    if (!inv->plugins || !inv->devices) {
        cli_error(CMD, "out of memory");
        inventory_free(inv);
        return CLI_EXIT_FAIL;
    }
    for (uint32_t i = 0; i < np; i++) {
        inv->plugins[i].struct_size = sizeof inv->plugins[i];
        bst_status st = bst_context_plugin(ctx, i, &inv->plugins[i]);
        if (st != BST_OK) {
            inventory_free(inv);
            return cli_lib_error(CMD, st, "reading plugin record");
        }
    }
    for (uint32_t i = 0; i < nd; i++) {
        inv->devices[i].info.struct_size = sizeof inv->devices[i].info;
        bst_status st = bst_context_device(ctx, i, &inv->devices[i].info, &inv->devices[i].backend);
        if (st != BST_OK) {
            inventory_free(inv);
            return cli_lib_error(CMD, st, "reading device");
        }
    }
    inv->n_plugins = np;
    inv->n_devices = nd;
    return CLI_EXIT_OK;
}

/* Devices belong to the loaded plugin of the same name: names of loaded plugins are unique
 * (a second plugin with a taken name ends as "duplicate"). */
static bool device_of(const device_entry *d, const bst_plugin_record *p)
{
    return p->state == BST_PLUGIN_LOADED && d->backend && p->name && strcmp(d->backend, p->name) == 0;
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static void print_bytes(const char *label, uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        printf("    %-15s %" PRIu64 " B\n", label, bytes);
    else
        printf("    %-15s %.1f %s (%" PRIu64 " bytes)\n", label, v, units[u], bytes);
}

static void print_text(const inventory *inv)
{
    if (inv->n_plugins == 0)
        printf("no backend plugins found (set BASTION_BACKEND_PATH or use --plugin-path)\n");
    for (uint32_t i = 0; i < inv->n_plugins; i++) {
        const bst_plugin_record *p = &inv->plugins[i];
        printf("plugin %s: %s\n", str_or_empty(p->name),
               bst_plugin_state_name((bst_plugin_state)p->state));
        printf("  path:    %s\n", str_or_empty(p->path));
        if (p->state == BST_PLUGIN_LOADED || p->state == BST_PLUGIN_NO_DEVICE) {
            printf("  version: %s\n", str_or_empty(p->version));
            printf("  abi:     %" PRIu32 "\n", p->abi_version);
        }
        if (p->detail && p->detail[0])
            printf("  reason:  %s\n", p->detail);
        uint32_t index = 0;
        for (uint32_t d = 0; d < inv->n_devices; d++) {
            const device_entry *dev = &inv->devices[d];
            if (!device_of(dev, p))
                continue;
            const bst_device_info *info = &dev->info;
            printf("  device %" PRIu32 ": %s (%s)\n", index++, info->name, kind_name(info->kind));
            printf("    %-15s %s\n", "vendor:", info->vendor);
            printf("    %-15s %s\n", "driver version:", info->driver_version);
            print_bytes("memory:", info->memory_bytes);
            print_bytes("max alloc:", info->max_alloc_bytes);
            print_bytes("max binding:", info->max_binding_bytes);
            printf("    %-15s %s\n", "unified memory:", info->unified_memory ? "yes" : "no");
            printf("    %-15s %s\n", "self-threaded:", info->self_threaded ? "yes" : "no");
            printf("    %-15s 0x%016" PRIx64 "\n", "fingerprint:", info->fingerprint);
        }
    }
}

/* json-c: a successful add takes over the caller's reference; a failed one (out of memory)
 * leaves it with the caller, so `put_add` drops it then. */
static bool put_add(json_object *obj, const char *key, json_object *v)
{
    if (!v)
        return false;
    if (json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

static bool put_append(json_object *array, json_object *v)
{
    if (!v)
        return false;
    if (json_object_array_add(array, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

static bool add_str(json_object *obj, const char *key, const char *value)
{
    return put_add(obj, key, json_object_new_string(str_or_empty(value)));
}

static bool add_u64(json_object *obj, const char *key, uint64_t value)
{
    return put_add(obj, key, json_object_new_uint64(value));
}

static bool add_bool(json_object *obj, const char *key, bool value)
{
    return put_add(obj, key, json_object_new_boolean(value ? 1 : 0));
}

static json_object *device_json(const device_entry *dev, uint32_t context_index)
{
    const bst_device_info *info = &dev->info;
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    char fp[32];
    snprintf(fp, sizeof fp, "0x%016" PRIx64, info->fingerprint);
    bool ok = add_u64(o, "index", context_index) && add_str(o, "kind", kind_name(info->kind)) &&
              add_str(o, "name", info->name) && add_str(o, "vendor", info->vendor) &&
              add_str(o, "driver_version", info->driver_version) &&
              add_u64(o, "memory_bytes", info->memory_bytes) &&
              add_u64(o, "max_alloc_bytes", info->max_alloc_bytes) &&
              add_u64(o, "max_binding_bytes", info->max_binding_bytes) &&
              add_bool(o, "unified_memory", info->unified_memory) &&
              add_bool(o, "self_threaded", info->self_threaded) && add_str(o, "fingerprint", fp);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *plugin_json(const inventory *inv, const bst_plugin_record *p)
{
    json_object *o = json_object_new_object();
    json_object *devices = json_object_new_array();
    if (!o || !devices) {
        json_object_put(o);
        json_object_put(devices);
        return NULL;
    }
    bool ok = add_str(o, "name", p->name) && add_str(o, "path", p->path) &&
              add_str(o, "state", bst_plugin_state_name((bst_plugin_state)p->state)) &&
              add_u64(o, "abi_version", p->abi_version) && add_str(o, "version", p->version) &&
              add_str(o, "detail", p->detail);
    for (uint32_t d = 0; ok && d < inv->n_devices; d++) {
        if (!device_of(&inv->devices[d], p))
            continue;
        ok = put_append(devices, device_json(&inv->devices[d], d));
    }
    if (!ok) {
        json_object_put(devices);
        json_object_put(o);
        return NULL;
    }
    if (!put_add(o, "devices", devices)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static int print_json(const inventory *inv)
{
    json_object *root = json_object_new_object();
    json_object *plugins = json_object_new_array();
    bool ok = root && plugins;
    if (ok)
        ok = add_str(root, "schema", "bastion.backends/1") &&
             add_str(root, "bastion_version", bst_version());
    for (uint32_t i = 0; ok && i < inv->n_plugins; i++)
        ok = put_append(plugins, plugin_json(inv, &inv->plugins[i]));
    if (ok) {
        ok = put_add(root, "plugins", plugins);
        plugins = NULL; /* owned by root now, or already dropped */
    }
    if (ok) {
        const char *text = json_object_to_json_string_ext(
            root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        ok = text != NULL;
        if (ok)
            printf("%s\n", text);
    }
    json_object_put(plugins);
    json_object_put(root);
    if (!ok) {
        cli_error(CMD, "out of memory building the JSON document");
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cli_cmd_backends(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"backend", required_argument, NULL, 'b'},
        {"plugin-path", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    const char *backends = NULL, *plugin_path = NULL;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'b':
            backends = optarg;
            break;
        case 'p':
            plugin_path = optarg;
            break;
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);

    bst_context_options opts = {0};
    opts.struct_size = sizeof opts;
    opts.backends = backends;
    opts.plugin_paths = plugin_path;
    bst_context *ctx = NULL;
    bst_status st = bst_context_create(&opts, &ctx);
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "creating the context");

    inventory inv;
    int rc = inventory_read(ctx, &inv);
    if (rc == CLI_EXIT_OK) {
        if (json)
            rc = print_json(&inv);
        else
            print_text(&inv);
        inventory_free(&inv);
    }
    bst_context_destroy(ctx);
    return rc;
}
