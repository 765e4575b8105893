/*
 * bastion/bastion.h — the embedding API.
 *
 * An application creates a bst_context, which finds and loads backend plugins (each ending
 * loaded or skipped, with a record saying why), lists their devices, and compiles graphs
 * (graph.h) into programs that run across those devices. Every fallible call returns a
 * bst_status; the message for the last failure on the calling thread is bst_last_error().
 * Bastion never prints to stdout, never aborts or exits on bad input: logging goes through
 * bst_set_log_callback.
 *
 * Thread-safety: bst_last_error, bst_version and bst_set_log_callback are thread-safe. A context
 * and the programs made from it are used from one thread at a time.
 */
#ifndef BASTION_BASTION_H
#define BASTION_BASTION_H

#include <bastion/graph.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BST_VERSION_MAJOR 0
#define BST_VERSION_MINOR 1
#define BST_VERSION_PATCH 0

BST_API const char *bst_version(void); /* "0.1.0" */

/* Message of the last failure on this thread (never NULL; "" if none). Valid until the next
 * failing Bastion call on this thread. */
BST_API const char *bst_last_error(void);

/* Log sink. `fn` may be called from any thread; NULL restores the default (stderr, WARN and up).
 */
typedef void (*bst_log_fn)(void *user, bst_log_level level, const char *message);
BST_API void bst_set_log_callback(bst_log_fn fn, void *user, bst_log_level min_level);

typedef struct bst_context bst_context;

typedef struct bst_context_options {
    uint32_t struct_size;
    uint32_t n_threads; /* 0 = number of online CPUs */
    /* Comma-separated backend names in priority order ("cpu,opencl"); NULL = environment
     * BASTION_BACKENDS, else every plugin found (npu-sim only when named). */
    const char *backends;
    /* Extra directories searched first, ':'-separated; NULL for none. */
    const char *plugin_paths;
} bst_context_options;

/* Creates a context: discovers plugins (explicit paths, then BASTION_BACKEND_PATH, then
 * <libdir>/bastion/backends, then the build tree when uninstalled), negotiates their ABI and
 * enumerates their devices. Finding no backend at all is not an error here. */
BST_API BST_MUST_CHECK bst_status bst_context_create(const bst_context_options *options,
                                                     bst_context **out_context);
BST_API void bst_context_destroy(bst_context *context);

typedef enum bst_plugin_state {
    BST_PLUGIN_LOADED = 0,
    BST_PLUGIN_NOT_LOADABLE = 1, /* dlopen failed: detail is dlerror() */
    BST_PLUGIN_NO_ENTRY = 2,     /* no bst_backend_entry symbol */
    BST_PLUGIN_ABI_MISMATCH = 3, /* versions do not overlap, or its struct is too small */
    BST_PLUGIN_ENTRY_FAILED = 4, /* entry returned an error */
    BST_PLUGIN_NO_DEVICE = 5,    /* loaded fine, but no device here */
    BST_PLUGIN_NOT_SELECTED = 6, /* filtered out by BASTION_BACKENDS / --backend */
    BST_PLUGIN_DUPLICATE = 7     /* a plugin with the same name was found earlier in the path */
} bst_plugin_state;

BST_API const char *bst_plugin_state_name(bst_plugin_state state); /* "loaded", "no-device" */

typedef struct bst_plugin_record {
    uint32_t struct_size;
    uint32_t state;       /* bst_plugin_state */
    const char *name;     /* backend name ("cpu"), from the file name if it never loaded */
    const char *path;     /* file that was tried */
    const char *version;  /* plugin's version string, "" if not loaded */
    const char *detail;   /* why it was skipped, "" if loaded */
    uint32_t abi_version; /* negotiated ABI version, 0 if none */
    uint32_t n_devices;
} bst_plugin_record;

/* Records live as long as the context. */
BST_API uint32_t bst_context_plugin_count(const bst_context *context);
BST_API BST_MUST_CHECK bst_status bst_context_plugin(const bst_context *context, uint32_t index,
                                                     bst_plugin_record *out_record);

/* Devices of all loaded plugins, in backend priority order. */
BST_API uint32_t bst_context_device_count(const bst_context *context);
BST_API BST_MUST_CHECK bst_status bst_context_device(const bst_context *context, uint32_t index,
                                                     bst_device_info *out_info,
                                                     const char **out_backend_name);

/* A graph compiled for this context's devices. */
typedef struct bst_program bst_program;

/* Compiles `graph` (which is not modified and may be destroyed afterwards; weight data it
 * borrows must outlive the program): lowers high-level ops the chosen backend cannot run whole,
 * places each node on the first backend (in priority order) that accepts it, partitions, plans
 * memory per device and compiles each partition. */
BST_API BST_MUST_CHECK bst_status bst_program_create(bst_context *context, const bst_graph *graph,
                                                     bst_program **out_program);
BST_API void bst_program_destroy(bst_program *program);

/* Copies `size` bytes into the graph input called `name` (contiguous, at its bound shape). */
BST_API BST_MUST_CHECK bst_status bst_program_set_input(bst_program *program, const char *name,
                                                        const void *data, uint64_t size);
/* Runs the program once with the given symbolic-dim values (NULL: every dim at its bound). */
BST_API BST_MUST_CHECK bst_status bst_program_run(bst_program *program,
                                                  const bst_run_params *params);
/* Copies the output called `name` (contiguous) into `dst`, which holds `size` bytes. */
BST_API BST_MUST_CHECK bst_status bst_program_get_output(bst_program *program, const char *name,
                                                         void *dst, uint64_t size);
/* Human-readable placement: one line per node, "%id op -> backend/device kernel". Free with
 * bst_free. */
BST_API BST_MUST_CHECK bst_status bst_program_describe(const bst_program *program,
                                                       char **out_text);

#ifdef __cplusplus
}
#endif
#endif /* BASTION_BASTION_H */
