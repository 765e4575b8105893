/*
 * runtime/runtime.h — the runtime's internal view of a context: loaded plugins, their devices,
 * the host services handed to plugins, and the thread pool. Shared by the loader
 * (runtime/loader.c, runtime/context.c), the host services (runtime/host.c, runtime/threadpool.c)
 * and the executor (runtime/program.c). Not installed.
 */
#ifndef BASTION_RUNTIME_H
#define BASTION_RUNTIME_H

#include <bastion/bastion.h>

/* One plugin file that was found, loaded or not. */
typedef struct bsti_plugin {
    bst_plugin_state state;
    char *name;    /* backend name */
    char *path;    /* file path */
    char *version; /* "" unless loaded */
    char *detail;  /* reason when skipped, "" when loaded */
    uint32_t abi_version;
    void *handle;        /* dlopen handle, never closed once a device came up (RTLD_NODELETE) */
    bst_backend_api api; /* valid when loaded (or no-device) */
    uint32_t n_devices;
    uint32_t priority; /* position in the selection list; lower runs first */
} bsti_plugin;

/* One device of a loaded plugin. Opened lazily by bsti_device_get. */
typedef struct bsti_device {
    bsti_plugin *plugin;
    uint32_t index_in_plugin;
    bst_device_info info;
    void *handle; /* from api.device_open, NULL until first use */
    bool open_failed;
    bst_status open_status; /* when open_failed: the status every later bsti_device_get returns */
    char *open_error;       /* when open_failed: its message, owned */
    bool replace_warned;    /* work was re-placed away from it and that was logged (once) */
} bsti_device;

struct bst_context {
    uint32_t n_threads;
    bsti_plugin *plugins;
    uint32_t n_plugins;
    bsti_device *devices; /* loaded plugins' devices, in backend priority order */
    uint32_t n_devices;
    /* Kernel selection (runtime/tune_*.c). The database opens on the first tuned program. */
    uint32_t tune_mode;         /* bst_tune_mode */
    bool tune_no_cache;         /* in-memory database only */
    bool tune_db_failed;        /* opening failed once: tune without a database from then on */
    char *tune_db_path;         /* owned; NULL = default */
    struct bsti_tune_db *tune_db; /* owned, NULL until first use */
    uint64_t *tune_fresh;         /* key hashes measured by this context (full mode: once each) */
    uint32_t n_tune_fresh, cap_tune_fresh;
};

/* Closes the context's tuning database (runtime/tune_place.c). */
void bsti_tune_context_release(bst_context *ctx);
/* bst_program_explain of several programs in one document (runtime/tune_explain.c); NULL
 * programs are skipped. Free *out_text with bst_free. */
BST_MUST_CHECK bst_status bsti_tune_explain_programs(const bst_program *const *programs,
                                                     const char *const *names, uint32_t n,
                                                     bool json, char **out_text);

/* The host service table handed to every plugin (lives for the whole process). */
const bst_host_api *bsti_host_api(void);

/* Starts device `index` on first use and returns its handle. Failure is sticky and reported. */
BST_MUST_CHECK bst_status bsti_device_get(bst_context *ctx, uint32_t index, void **out_handle);

/* --- shared thread pool (runtime/threadpool.c) --- */
/* Sets the worker count (0 = online CPUs). Safe to call again; takes effect on the next job. */
void bsti_pool_set_threads(uint32_t n);
uint32_t bsti_pool_threads(void);
void bsti_pool_parallel_for(int64_t n, int64_t grain, bst_range_fn fn, void *arg);
/* The same with at most `max_threads` threads taking part (0: the configured count), so worker
 * ids stay below it however the count changes meanwhile. */
void bsti_pool_parallel_for_max(int64_t n, int64_t grain, uint32_t max_threads, bst_range_fn fn,
                                void *arg);

/* --- executor hooks for runtime/model (runtime/program_run.c) --- */
/* Partial I/O for values whose outermost dim is symbolic: a session evaluates n_tokens tokens
 * through a program compiled for n_batch, and writing or reading the whole bound extent on every
 * decode step would cost far more than the step itself. */
/* Like bst_program_set_input, but writes only the first `size` bytes (at most the input's size
 * at its bound shape): the leading rows of an input whose outermost dim is symbolic. */
BST_MUST_CHECK bst_status bsti_program_set_input_prefix(bst_program *program, const char *name,
                                                        const void *data, uint64_t size);
/* Copies `size` bytes starting at byte `offset` of the contiguous output `name` into `dst`. */
BST_MUST_CHECK bst_status bsti_program_get_output_range(bst_program *program, const char *name,
                                                        uint64_t offset, void *dst,
                                                        uint64_t size);

/* After a bst_program_run that failed because the program was re-placed off a failed device
 * whose memory could not be read back (runtime/program_replace.c): true, once, with
 * *out_state_lost saying whether a state was lost (a KV cache then starts empty) as well as
 * inputs. The program works on its new placement once its inputs are set again. */
bool bsti_program_take_lost(bst_program *program, bool *out_state_lost);

/* --- test-only fault injection (runtime/host.c) --- */
/* Makes the next `countdown`-th call (1 = next) of host->fault(site) return `status`, once; a
 * countdown of 0 makes every call return it until cleared; a status of BST_OK clears it. Only
 * tests call this. Thread-safe. */
void bsti_fault_set(const char *site, bst_status status, uint32_t countdown);

#endif /* BASTION_RUNTIME_H */
