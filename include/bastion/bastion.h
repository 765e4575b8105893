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
    /* v2+ (read only when struct_size covers it) */
    uint32_t tune_mode; /* bst_tune_mode: how programs choose kernels; 0 = off */
    bool no_cache;      /* tune in memory only: nothing is read from or written to disk */
    uint8_t reserved_tune[3];
    /* Tuning database file; NULL = $BASTION_CACHE_DIR/tuning.db, else
     * $XDG_CACHE_HOME/bastion/tuning.db, else ~/.cache/bastion/tuning.db. */
    const char *tune_db_path;
} bst_context_options;

/* How bst_program_create chooses each node's device and kernel variant.
 * OFF: static priority (first device whose backend accepts the node, variant 0).
 * CACHED: the fastest candidate by the tuning database, measuring the rows it lacks.
 * FULL: measure every candidate again and overwrite the rows.
 * FROZEN: rows only, never measure; a node with a missing row falls back to static priority and
 * is reported (a WARN log line and bst_program_explain). */
typedef enum bst_tune_mode {
    BST_TUNE_OFF = 0,
    BST_TUNE_CACHED = 1,
    BST_TUNE_FULL = 2,
    BST_TUNE_FROZEN = 3
} bst_tune_mode;

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

#ifdef BST_EXPERIMENTAL_DEVICE_API
/* Experimental, may change between minor versions (define BST_EXPERIMENTAL_DEVICE_API to see
 * it): the plugin function table and the opened handle of device `index`, for tools that run
 * one kernel variant on one device themselves (benchmarks, conformance kits). Opens the device
 * on first use, as programs do; a device that failed to start keeps failing with its first
 * message. Both outputs live as long as the context. The caller follows backend.h's rules for
 * every call it makes, frees what it allocates, and never calls destroy or device_close. */
BST_API BST_MUST_CHECK bst_status bst_context_device_backend(bst_context *context,
                                                             uint32_t index,
                                                             const bst_backend_api **out_api,
                                                             void **out_device);
#endif

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
/* Why each node runs where it does: chosen backend/kernel and its measured time, the runners-up
 * with theirs, the transfer cost charged, and whether the tuning database had the row (hit),
 * measured it (miss) or lacked it in frozen mode. Text, or a JSON document when `json`. Free
 * with bst_free. */
BST_API BST_MUST_CHECK bst_status bst_program_explain(const bst_program *program, bool json,
                                                      char **out_text);

/* Device memory a program holds on one device: the scratch arena the memory planner packed
 * (the peak of intermediates alive at once) and the persistent buffers beside it. Host-side
 * staging and the one-node executables of BST_PROFILE_NODES are not counted. */
typedef struct bst_memory_usage {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t arena_bytes;  /* the scratch arena */
    uint64_t weight_bytes; /* weights and constants as the device holds them (a backend that
                            * uses the mapped file in place reports what it costs it) */
    uint64_t state_bytes;  /* states: the KV cache */
    uint64_t io_bytes;     /* graph inputs and outputs */
    uint64_t total_bytes;  /* the sum: what the program holds on the device, all at once */
} bst_memory_usage;

/* Fills *out_usage (its struct_size set by the caller; fields past it are not written) for
 * device `device` (an index for bst_context_device); a device the program does not use gives
 * zeros. Reflects the program's current placement (after a re-placement, the new one). Same
 * thread rules as the program. */
BST_API BST_MUST_CHECK bst_status bst_program_memory(const bst_program *program, uint32_t device,
                                                     bst_memory_usage *out_usage);

/* ---------------------------------------------------------------------------------------------
 * Models and sessions: load a GGUF model, tokenize, generate.
 *
 * Thread-safety: a bst_model is immutable after loading and may be shared by several sessions
 * used from different threads at the same time (each session from one thread at a time). The
 * model must outlive its sessions; the context must outlive its models.
 * ------------------------------------------------------------------------------------------- */

typedef struct bst_model bst_model;
typedef struct bst_session bst_session;

/* Called during loading with a fraction in [0,1]; return false to cancel (the load then fails
 * with BST_ERR_INVALID_ARG and the message "cancelled"). */
typedef bool (*bst_progress_fn)(void *user, float fraction);

typedef struct bst_model_options {
    uint32_t struct_size;
    bool no_mmap; /* read the file into memory instead of mapping it */
    uint8_t reserved[3];
    bst_progress_fn progress; /* may be NULL */
    void *progress_user;
} bst_model_options;

/* Loads a GGUF model (weights used in place from the mapped file). Every malformed or hostile
 * file gives a specific status and a message naming the field. */
BST_API BST_MUST_CHECK bst_status bst_model_load(bst_context *context, const char *path,
                                                 const bst_model_options *options,
                                                 bst_model **out_model);
BST_API void bst_model_destroy(bst_model *model);

typedef struct bst_model_info {
    uint32_t struct_size;
    uint32_t n_layers;
    const char *architecture; /* "llama"; lives as long as the model */
    const char *name;         /* general.name or "" */
    uint32_t n_embd, n_heads, n_kv_heads, head_dim, n_ff, n_vocab, n_ctx_train;
    uint32_t reserved;
    uint64_t n_params;
    uint64_t file_bytes;
    /* v2+ (written only when struct_size covers it): bytes of weights one token reads: every
     * matrix and norm, and of the token embedding one row, unless it is also the output head
     * (tied embeddings), which reads the whole table. With the memory bandwidth it gives the
     * roofline of generation. */
    uint64_t weight_bytes_per_token;
} bst_model_info;

BST_API BST_MUST_CHECK bst_status bst_model_get_info(const bst_model *model,
                                                     bst_model_info *out_info);

/* Text -> token ids. With parse_special, special-token texts ("<|im_start|>") become their ids.
 * Writes up to `capacity` ids and the total count (call again with a larger buffer when
 * *out_count > capacity). */
BST_API BST_MUST_CHECK bst_status bst_tokenize(const bst_model *model, const char *text,
                                               size_t length, bool parse_special,
                                               int32_t *out_tokens, uint32_t capacity,
                                               uint32_t *out_count);
/* The raw bytes of one token (not NUL-terminated; may be part of a UTF-8 character). */
BST_API BST_MUST_CHECK bst_status bst_token_piece(const bst_model *model, int32_t token,
                                                  char *buf, size_t capacity,
                                                  size_t *out_length);
/* True for end-of-generation tokens (eos, eot, <|im_end|>, ...). */
BST_API bool bst_token_is_eog(const bst_model *model, int32_t token);

typedef struct bst_chat_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} bst_chat_message;

/* Formats messages with the model's chat template (or the named one: "chatml", ...), adding the
 * assistant prefix when add_assistant. Unknown template -> BST_ERR_UNSUPPORTED naming it.
 * Free *out_text with bst_free. */
BST_API BST_MUST_CHECK bst_status bst_chat_format(const bst_model *model, const char *template_name,
                                                  const bst_chat_message *messages,
                                                  uint32_t n_messages, bool add_assistant,
                                                  char **out_text);

typedef struct bst_session_options {
    uint32_t struct_size;
    uint32_t n_ctx;   /* 0 = min(training context, 4096) */
    uint32_t n_batch; /* largest prompt chunk evaluated at once; 0 = 512 */
    uint32_t reserved;
    /* v2+ (read only when struct_size covers it) */
    uint32_t kv_type; /* bst_dtype of the KV cache: 0 = f32; BST_DTYPE_F16 halves its memory
                       * at a small cost in accuracy */
    uint32_t reserved2;
} bst_session_options;

/* A conversation's state: KV cache, position, compiled programs. All buckets the session can
 * meet are compiled here, never mid-generation. */
BST_API BST_MUST_CHECK bst_status bst_session_create(bst_model *model,
                                                     const bst_session_options *options,
                                                     bst_session **out_session);
BST_API void bst_session_destroy(bst_session *session);
/* bst_program_explain for the session's programs (the decode/prompt body, then the output
 * head). JSON: {"programs":[{"name":"body",...},{"name":"head",...}]}. Free with bst_free. */
BST_API BST_MUST_CHECK bst_status bst_session_explain(const bst_session *session, bool json,
                                                      char **out_text);
/* bst_program_memory summed over the session's programs (body, with the KV cache; a prompt
 * body with its own copy of the cache when tuning split one off; head): what the session holds
 * on `device` at once. */
BST_API BST_MUST_CHECK bst_status bst_session_memory(const bst_session *session, uint32_t device,
                                                     bst_memory_usage *out_usage);
/* Forgets all tokens (position back to 0). */
BST_API void bst_session_reset(bst_session *session);
BST_API uint32_t bst_session_position(const bst_session *session);

/* Appends `n_tokens` tokens and evaluates them. out_logits (may be NULL) receives n_vocab floats
 * per token when all_logits, else only for the last token. A full context gives
 * BST_ERR_OVERFLOW and leaves the session unchanged. */
BST_API BST_MUST_CHECK bst_status bst_session_eval(bst_session *session, const int32_t *tokens,
                                                   uint32_t n_tokens, bool all_logits,
                                                   float *out_logits);

typedef struct bst_sampler_params {
    uint32_t struct_size;
    float temperature;    /* <= 0: greedy */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;
    uint32_t reserved;
    uint64_t seed;
} bst_sampler_params;

/* Called for each generated token with its bytes; return false to stop. The bytes are whole
 * UTF-8 characters: a character split across tokens arrives with the token that completes it
 * (so `length` may be 0), and one cut off by the end of generation arrives as U+FFFD in a last
 * call with token -1. */
typedef bool (*bst_token_fn)(void *user, int32_t token, const char *piece, size_t length);

typedef struct bst_generate_stats {
    uint32_t struct_size;
    uint32_t n_prompt;
    uint32_t n_generated;
    uint32_t stop_reason; /* 0 eog token, 1 max tokens, 2 callback, 3 cancel, 4 context full */
    double prompt_seconds;
    double generate_seconds;
} bst_generate_stats;

/* Evaluates `prompt`, then samples up to `max_tokens` tokens, calling `on_token` for each, until
 * an end-of-generation token, the callback says stop, *cancel becomes non-zero (checked between
 * tokens; may be set from another thread), or the context is full (a clean stop, reported in
 * stats). Every token handed to on_token is also evaluated into the session when it fits (the
 * end-of-generation token is neither), so a later call continues the text; n_prompt may be 0
 * to continue from the session's last evaluated token. A prompt that does not fit gives
 * BST_ERR_OVERFLOW and leaves the session unchanged. */
BST_API BST_MUST_CHECK bst_status bst_generate(bst_session *session, const int32_t *prompt,
                                               uint32_t n_prompt, uint32_t max_tokens,
                                               const bst_sampler_params *sampler,
                                               bst_token_fn on_token, void *user,
                                               const volatile int *cancel,
                                               bst_generate_stats *out_stats);

/* ---------------------------------------------------------------------------------------------
 * Profiling: timings of a program's partitions, nodes and cross-device copies, handed to a
 * callback as the program runs.
 *
 * BST_PROFILE_PARTITIONS does not change what runs: each partition's executable is timed with the
 * wall clock around execute, plus the backend's own time (last_execute_ns) when it reports one.
 * Its cost is two clock reads and a callback per partition.
 *
 * BST_PROFILE_NODES gives per-node times. Enabling it compiles every partition a second time as
 * one executable per node (the same kernel variants over the same memory and bindings; memory
 * grows by what the backend keeps per executable). While it is on, runs execute those one-node
 * executables in the partition's order instead of the partition's executable: the results are
 * the same, but every node pays its own execute (launch, synchronization, thread-pool wake-up)
 * and the backend cannot overlap or fuse nodes, so node times add up to more than an
 * unprofiled run of the partition. The partition record then spans its nodes. Turning
 * profiling off frees the one-node executables; unprofiled runs are exactly as before.
 *
 * BST_PROFILE_NODES_IN_RUN gives per-node times of what normally runs: each partition's
 * executable runs whole (its fusion, grouping and overlap intact), and its backend times every
 * node inside the execute with its own clock (bst_backend_api node_times, ABI v3). A NODE
 * record's start_ns is the partition's start plus the node's offset in it, and its wall_ns and
 * device_ns are the node's time by the backend's clock; nodes a backend ran as one piece of work
 * (sibling matmuls sharing an input) have that time on the first and 0 on the others. The cost
 * is a clock read or two per node. Enabling it fails with BST_ERR_UNSUPPORTED, naming the
 * backend, when a partition's backend cannot time nodes (then BST_PROFILE_NODES is the way).
 * ------------------------------------------------------------------------------------------- */

typedef enum bst_profile_level {
    BST_PROFILE_OFF = 0,
    BST_PROFILE_PARTITIONS = 1,
    BST_PROFILE_NODES = 2,
    BST_PROFILE_NODES_IN_RUN = 3
} bst_profile_level;

typedef enum bst_profile_kind {
    BST_PROFILE_PARTITION = 0,
    BST_PROFILE_NODE = 1,
    BST_PROFILE_COPY = 2 /* a value copied to the partition's device before it runs */
} bst_profile_kind;

typedef struct bst_profile_record {
    uint32_t struct_size;
    uint32_t kind;       /* bst_profile_kind */
    uint32_t partition;  /* index of the partition in the program */
    uint32_t node;       /* NODE: the node's id, as bst_program_describe prints it; else
                          * UINT32_MAX */
    uint32_t device;     /* index for bst_context_device (COPY: the destination) */
    uint32_t src_device; /* COPY: the source device; else == device */
    uint32_t op;         /* NODE: bst_op; else 0 */
    uint32_t n_nodes;    /* compute nodes covered: PARTITION its count, NODE 1, COPY 0 */
    const char *name;    /* NODE: op name ("matmul"); "partition"; "copy" */
    const char *backend; /* plugin name of `device` */
    const char *variant; /* NODE: kernel variant name; else "" */
    const char *label;   /* the program's label (bst_program_set_profiling); "" for none */
    uint64_t run;        /* the program's profiled runs, counted from 0 */
    uint64_t start_ns;   /* CLOCK_MONOTONIC when the host began the call */
    uint64_t wall_ns;    /* host wall time of the call (PARTITION at NODES level: from its
                          * first node's start to its last node's end; NODE at NODES_IN_RUN:
                          * the backend's time of the node) */
    uint64_t device_ns;  /* the backend's own time of the execute(s) (last_execute_ns), 0 when
                          * it reports none (NODE at NODES_IN_RUN: the node's, as wall_ns) */
    /* Bytes the work must move at this run's extents: NODE every input read once and the
     * output written once (GET_ROWS reads only the rows it gathers, SET_ROWS writes only the
     * rows it sets and does not read dst); PARTITION the sum over its nodes; COPY the bytes
     * copied. */
    uint64_t bytes;
    int64_t n_tokens, n_kv; /* the run's symbolic-dim values */
} bst_profile_record;

/* Called on the thread running the program, once per record, in execution order (a PARTITION
 * record after its NODE records). The record and its strings are valid only during the call. */
typedef void (*bst_profile_fn)(void *user, const bst_profile_record *record);

/* Sets the program's profiling level and callback; `label` (copied; NULL = "") names the
 * program in its records. BST_PROFILE_OFF (fn may then be NULL) stops profiling. Enabling
 * BST_PROFILE_NODES compiles the one-node executables now; when that fails, the program keeps
 * its previous setting. */
BST_API BST_MUST_CHECK bst_status bst_program_set_profiling(bst_program *program,
                                                            bst_profile_level level,
                                                            const char *label,
                                                            bst_profile_fn fn, void *user);

/* The same for every program of the session (labelled "body" and "head"). */
BST_API BST_MUST_CHECK bst_status bst_session_set_profiling(bst_session *session,
                                                            bst_profile_level level,
                                                            bst_profile_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* BASTION_BASTION_H */
