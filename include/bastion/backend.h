/*
 * bastion/backend.h — the plugin ABI.
 *
 * This is the one header a hardware vendor compiles a Bastion backend against. A backend is a
 * shared module `libbst-backend-<name>.so` that exports exactly one symbol, `bst_backend_entry`
 * (see BST_BACKEND_ENTRY below). Through it the host hands the plugin a table of services
 * (bst_host_api) and receives a table of the plugin's functions (bst_backend_api).
 *
 * Stability rules, the same for every struct that crosses the boundary:
 *  - it starts with `uint32_t struct_size`, the size the writer knew;
 *  - it grows only by appending fields under a `v2+`-style comment, and a reader checks
 *    struct_size before touching a field newer than version 1 (BST_HAS_FIELD);
 *  - arrays of such structs are passed with an explicit byte stride, or as arrays of pointers;
 *  - enums here are append-only: a value a plugin does not know means "unsupported".
 * Version negotiation works as the Vulkan loader's does: the host passes the newest ABI version
 * it speaks; the plugin writes the newest version both support into out->abi_version, or returns
 * BST_ERR_ABI before allocating anything. The host enforces its own minimum.
 *
 * This header includes only <stdint.h>, <stddef.h> and <stdbool.h>, so it builds in any C or
 * C++ project with no other Bastion file.
 */
#ifndef BASTION_BACKEND_H
#define BASTION_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version this header describes; BST_ABI_VERSION_MIN is the oldest a host accepts. */
#define BST_ABI_VERSION 3u
#define BST_ABI_VERSION_MIN 1u

/* True when a struct written with size `s->struct_size` contains `field`. */
#define BST_HAS_FIELD(s, type, field) \
    ((s)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

#if defined(__GNUC__) || defined(__clang__)
#define BST_MUST_CHECK __attribute__((warn_unused_result))
#define BST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BST_MUST_CHECK
#define BST_PRINTF(f, a)
#endif

/* Status of every fallible call. Stable values; OK is 0. The message that goes with a failure is
 * read with bst_last_error() (host side) after the call that returned it. */
typedef enum bst_status {
    BST_OK = 0,
    BST_ERR_INVALID_ARG = 1,   /* a caller passed something impossible (NULL, bad index, ...) */
    BST_ERR_OUT_OF_MEMORY = 2, /* host memory */
    BST_ERR_IO = 3,            /* file system or OS call failed */
    BST_ERR_FORMAT = 4,        /* malformed input data (a file, a cache, a model) */
    BST_ERR_PARSE = 5,         /* malformed text (IR text, command line) */
    BST_ERR_UNSUPPORTED = 6,   /* valid, but not supported here (op, dtype, shape) */
    BST_ERR_ABI = 7,           /* plugin/host ABI versions do not overlap */
    BST_ERR_NOT_FOUND = 8,     /* named thing does not exist */
    BST_ERR_NO_DEVICE = 9,     /* backend has no usable device here: a normal state */
    BST_ERR_DEVICE_LOST = 10,  /* device stopped working; its work must be re-placed */
    BST_ERR_DEVICE_OOM = 11,   /* device memory exhausted */
    BST_ERR_COMPILE = 12,      /* kernel or program build failed (message carries the log) */
    BST_ERR_BACKEND = 13,      /* any other failure reported by a backend */
    BST_ERR_OVERFLOW = 14,     /* a size computation overflowed or exceeded a limit */
    BST_ERR_SHAPE = 15,        /* shapes or dtypes do not satisfy an op's rule */
    BST_ERR_GRAPH = 16,        /* graph structure is invalid (cycle, undefined value, ...) */
    BST_ERR_INTERNAL = 17,     /* a bug in Bastion: please report */
    BST_ERR_TIMEOUT = 18,      /* a wait ended before its event was reached (v2+) */
    BST_STATUS_COUNT
} bst_status;

/* Element types. Block-quantized types use llama.cpp's GGUF block layouts bit for bit. */
typedef enum bst_dtype {
    BST_DTYPE_INVALID = 0,
    BST_DTYPE_F32 = 1,
    BST_DTYPE_F16 = 2,
    BST_DTYPE_BF16 = 3,
    BST_DTYPE_I32 = 4,
    BST_DTYPE_I8 = 5,
    BST_DTYPE_Q4_0 = 6, /* 32 elems: f16 d; u8 qs[16]      -> (q - 8) * d          */
    BST_DTYPE_Q4_1 = 7, /* 32 elems: f16 d, m; u8 qs[16]   -> q * d + m            */
    BST_DTYPE_Q5_0 = 8, /* 32 elems: f16 d; u8 qh[4]; qs[16] -> (q - 16) * d       */
    BST_DTYPE_Q5_1 = 9, /* 32 elems: f16 d, m; u8 qh[4]; qs[16] -> q * d + m       */
    BST_DTYPE_Q8_0 = 10, /* 32 elems: f16 d; i8 qs[32]     -> q * d                */
    BST_DTYPE_COUNT
} bst_dtype;

/* How a tensor's bytes are arranged. GGUF-native is the file's layout; a backend that repacks a
 * weight reports its own tag (values >= BST_LAYOUT_BACKEND are backend-private). */
typedef enum bst_layout {
    BST_LAYOUT_NATIVE = 0,
    BST_LAYOUT_BACKEND = 1024
} bst_layout;

/* Operations. Append-only ids. Shapes are written outermost-first (numpy order); "rows" are the
 * innermost dimension. Unless said otherwise an op computes in f32 and writes f32, reading inputs
 * of any dtype by converting (dequantizing) them first.
 *
 * Value sources (graph-level only; never sent to a backend's query or compile):
 *   INPUT, WEIGHT, STATE (persistent, mutable: the KV cache), CONST.
 * Primitive ops (every backend's contract, reference kernels in backends/cpu):
 *   GET_ROWS(table[R,C], ids i32[...N]) -> f32[...N,C]
 *   ADD(a, b), MUL(a, b) -> shape of a; b broadcasts (each dim of b equals a's or is 1; b may have
 *       fewer dims, aligned at the innermost)
 *   SCALE(x) attr SCALE -> x * scale
 *   MATMUL(a[...,M,K], b[...,N,K]) -> [...,M,N] = a . b^T over the last two dims. b is usually a
 *       weight [out,in] in any dtype. Batch dims of b broadcast to a's: batch index i of a uses
 *       index i / (Ba / Bb) of b (grouped, as GQA needs); Ba must be a multiple of Bb.
 *   RMS_NORM(x) attr EPS: x / sqrt(mean(x^2) + eps) over the innermost dim
 *   LAYER_NORM(x) attr EPS: (x - mean) / sqrt(var + eps) over the innermost dim
 *   ROPE(x[T,H,D], pos i32[T]) attrs ROPE_MODE (0 normal: adjacent pairs; 2 neox: halves),
 *       ROPE_THETA (base), ROPE_DIMS (rotated dims, even, <= D; the rest pass through):
 *       theta_i = pos * base^(-2i/dims)
 *   SOFTMAX(x[...,K] [, mask f32[...,K]]) attr SCALE (default 1): softmax(x*scale + mask) over
 *       the innermost dim; mask broadcasts like ADD's b. -INFINITY in the mask removes a position; a row
 *       whose positions are all removed gives zeros.
 *   SILU(x), GELU(x) (tanh approximation, as ggml)
 *   CAST(x) attr DTYPE in {f32, f16, bf16}: convert (round to nearest even)
 *   QUANTIZE(x) attr DTYPE a block type: quantize rows (innermost dim a multiple of the block size)
 *   CONCAT(a, b) attr AXIS
 *   CONT(x): contiguous copy of a (possibly strided) view
 *   VIEW(x) attrs SHAPE, STRIDES (bytes, default contiguous), OFFSET (bytes, default 0), SYM
 *       (symbolic dims of SHAPE): alias of x's memory, staying inside it; block types whole blocks
 *   RESHAPE(x) attrs SHAPE, SYM: alias, x must be contiguous; dims up to x's innermost
 *       symbolic dim are kept unchanged
 *   PERMUTE(x) attr PERM: out dim i is x dim perm[i]; alias with permuted strides
 *   TRANSPOSE(x): swap the two innermost dims; alias
 *   ARGMAX(x[...,N]) -> i32[...]: first index of the maximum
 *   SET_ROWS(dst[R,C], src[N,C], ids i32[N]) -> dst: writes src row n into dst row ids[n],
 *       converting to dst's dtype. dst is a STATE; the result is dst's next version (an effect:
 *       ordered, never dropped).
 * Optional attributes are filled in with their defaults by the graph compiler, and every node's
 * attributes are sorted by key, so a backend always sees each attribute its op takes.
 * High-level ops (built by model code, kept whole until placement, lowered otherwise):
 *   ATTENTION(q[T,Hq,D], k[S,Hkv,D], v[S,Hkv,D] [, mask f32[T,S]]) attrs SCALE (default
 *       1/sqrt(D)), CAUSAL (default 0), WINDOW (default 0)
 *       -> f32[T,Hq,D]. Query head h uses kv head h / (Hq/Hkv). With CAUSAL, query t sits at
 *       position S - T + t and sees keys j <= that position; WINDOW > 0 also hides keys older
 *       than WINDOW positions. k and v are usually views of the KV cache.
 *   FFN_SWIGLU(x[...,E], w_gate[F,E], w_up[F,E], w_down[E,F]) -> (silu(x.g^T) * x.u^T) . d^T
 *   RMS_NORM_MUL(x[...,E], w[E]) attr EPS -> rms_norm(x) * w
 */
typedef enum bst_op {
    BST_OP_NONE = 0,
    BST_OP_INPUT = 1,
    BST_OP_WEIGHT = 2,
    BST_OP_STATE = 3,
    BST_OP_CONST = 4,
    BST_OP_GET_ROWS = 5,
    BST_OP_ADD = 6,
    BST_OP_MUL = 7,
    BST_OP_SCALE = 8,
    BST_OP_MATMUL = 9,
    BST_OP_RMS_NORM = 10,
    BST_OP_LAYER_NORM = 11,
    BST_OP_ROPE = 12,
    BST_OP_SOFTMAX = 13,
    BST_OP_SILU = 14,
    BST_OP_GELU = 15,
    BST_OP_CAST = 16,
    BST_OP_QUANTIZE = 17,
    BST_OP_CONCAT = 18,
    BST_OP_CONT = 19,
    BST_OP_VIEW = 20,
    BST_OP_RESHAPE = 21,
    BST_OP_PERMUTE = 22,
    BST_OP_TRANSPOSE = 23,
    BST_OP_ARGMAX = 24,
    BST_OP_SET_ROWS = 25,
    BST_OP_ATTENTION = 26,
    BST_OP_FFN_SWIGLU = 27,
    BST_OP_RMS_NORM_MUL = 28,
    BST_OP_COUNT
} bst_op;

/* Attribute keys. Each key has one kind (see bst_attr). */
typedef enum bst_attr_key {
    BST_ATTR_NONE = 0,
    BST_ATTR_EPS = 1,        /* float */
    BST_ATTR_SCALE = 2,      /* float */
    BST_ATTR_AXIS = 3,       /* int */
    BST_ATTR_PERM = 4,       /* ints */
    BST_ATTR_SHAPE = 5,      /* ints */
    BST_ATTR_STRIDES = 6,    /* ints (bytes) */
    BST_ATTR_OFFSET = 7,     /* int (bytes) */
    BST_ATTR_ROPE_MODE = 8,  /* int: 0 normal, 2 neox */
    BST_ATTR_ROPE_THETA = 9, /* float */
    BST_ATTR_ROPE_DIMS = 10, /* int */
    BST_ATTR_CAUSAL = 11,    /* int: 0 or 1 */
    BST_ATTR_WINDOW = 12,    /* int: 0 = none */
    BST_ATTR_DTYPE = 13,     /* int: a bst_dtype */
    BST_ATTR_SYM = 14,       /* ints: bst_sym per SHAPE dim (VIEW, RESHAPE); absent = none */
    BST_ATTR_COUNT
} bst_attr_key;

typedef enum bst_attr_kind {
    BST_ATTR_KIND_INT = 0,
    BST_ATTR_KIND_FLOAT = 1,
    BST_ATTR_KIND_INTS = 2
} bst_attr_kind;

#define BST_MAX_DIMS 4
#define BST_MAX_INPUTS 6
#define BST_MAX_ATTRS 8

/* One tagged attribute. INT uses ints[0]; INTS uses ints[0..count); FLOAT uses f. */
typedef struct bst_attr {
    uint32_t struct_size;
    uint32_t key;   /* bst_attr_key */
    uint32_t kind;  /* bst_attr_kind */
    uint32_t count; /* number of ints for INTS, else 1 */
    int64_t ints[BST_MAX_DIMS];
    double f;
} bst_attr;

/* Attribute values (for bst_graph_add_op, or a node descriptor): a float, an int, or `count`
 * ints (the first BST_MAX_DIMS are kept; a larger count is refused where the attribute is
 * checked). */
static inline bst_attr bst_attr_of_kind_(bst_attr_key key, bst_attr_kind kind, uint32_t count)
{
    bst_attr a; /* every field set: C++ -Wextra refuses a partial initializer */
    a.struct_size = (uint32_t)sizeof a;
    a.key = (uint32_t)key;
    a.kind = (uint32_t)kind;
    a.count = count;
    for (uint32_t i = 0; i < BST_MAX_DIMS; i++)
        a.ints[i] = 0;
    a.f = 0.0;
    return a;
}
static inline bst_attr bst_attr_float(bst_attr_key key, double f)
{
    bst_attr a = bst_attr_of_kind_(key, BST_ATTR_KIND_FLOAT, 1);
    a.f = f;
    return a;
}
static inline bst_attr bst_attr_int(bst_attr_key key, int64_t v)
{
    bst_attr a = bst_attr_of_kind_(key, BST_ATTR_KIND_INT, 1);
    a.ints[0] = v;
    return a;
}
static inline bst_attr bst_attr_ints(bst_attr_key key, const int64_t *v, uint32_t count)
{
    bst_attr a = bst_attr_of_kind_(key, BST_ATTR_KIND_INTS, count);
    for (uint32_t i = 0; i < count && i < BST_MAX_DIMS; i++)
        a.ints[i] = v[i];
    return a;
}

/* Symbolic dimensions, bound at execute time through bst_run_params. */
typedef enum bst_sym {
    BST_SYM_NONE = 0,
    BST_SYM_N_TOKENS = 1,
    BST_SYM_N_KV = 2,
    BST_SYM_COUNT
} bst_sym;

/* A tensor as a backend sees it. Dims are outermost-first; strides are in bytes. For a block
 * type the innermost dim is a multiple of the block size, its blocks are contiguous and
 * strides[rank-1] is the size of one block. A symbolic dim (sym[i] != NONE) holds its compile-time
 * upper bound in shape[i]; memory is laid out for that bound and the actual extent comes in
 * bst_run_params. Data lives in binding `binding` (index into execute's buffer array) at byte
 * offset `offset`. */
typedef struct bst_tensor_desc {
    uint32_t struct_size;
    uint32_t dtype;  /* bst_dtype */
    uint32_t layout; /* bst_layout */
    uint32_t rank;   /* 0..BST_MAX_DIMS; rank 0 is a scalar */
    int64_t shape[BST_MAX_DIMS];
    int64_t strides[BST_MAX_DIMS];
    uint32_t sym[BST_MAX_DIMS]; /* bst_sym per dim */
    uint32_t binding;
    uint32_t reserved;
    uint64_t offset;
} bst_tensor_desc;

/* A node as a backend sees it. Arrays of pointers, so the structs can grow. */
typedef struct bst_node_desc {
    uint32_t struct_size;
    uint32_t op; /* bst_op */
    uint32_t n_inputs;
    uint32_t n_attrs;
    const bst_tensor_desc *const *inputs;
    const bst_tensor_desc *output;
    const bst_attr *const *attrs;
    uint32_t variant; /* in compile: index into the variants query returned for this node */
    uint32_t reserved;
} bst_node_desc;

/* One kernel a backend offers for a node. */
typedef struct bst_kernel_variant {
    uint32_t struct_size;
    uint32_t reserved;
    char name[48];        /* e.g. "ref", "gemv_q4_1_avx2" */
    uint64_t source_hash; /* changes whenever the kernel's code or build options change */
} bst_kernel_variant;

typedef enum bst_device_kind {
    BST_DEVICE_CPU = 0,
    BST_DEVICE_GPU = 1,
    BST_DEVICE_NPU = 2,
    BST_DEVICE_ACCEL = 3
} bst_device_kind;

typedef struct bst_device_info {
    uint32_t struct_size;
    uint32_t kind; /* bst_device_kind */
    char name[128];
    char vendor[64];
    char driver_version[64];
    uint64_t memory_bytes;      /* total memory the device can use */
    uint64_t max_alloc_bytes;   /* largest single buffer */
    uint64_t max_binding_bytes; /* largest range one kernel argument may address */
    bool unified_memory;        /* device reads host memory directly */
    bool self_threaded;         /* runs its own threads (takes set_num_threads) */
    uint8_t reserved[6];
    uint64_t fingerprint; /* stable across runs for the same device + driver */
} bst_device_info;

/* Values bound at execute time. */
typedef struct bst_run_params {
    uint32_t struct_size;
    uint32_t reserved;
    int64_t n_tokens; /* value of BST_SYM_N_TOKENS */
    int64_t n_kv;     /* value of BST_SYM_N_KV */
    int64_t pos;      /* position of the first token */
} bst_run_params;

/* A point on an event's timeline (v2+). An event is a 64-bit counter that only grows, as a Vulkan
 * timeline semaphore or an IREE semaphore: it is "reached" once its value is >= `value`. */
typedef struct bst_event_point {
    uint32_t struct_size;
    uint32_t reserved;
    void *event; /* from event_create of the same backend */
    uint64_t value;
} bst_event_point;

/* One node's time inside an execute (v3+, node_times): when it started, counted from the start
 * of the execute, and how long it ran, by the backend's own clock. */
typedef struct bst_node_time {
    uint64_t start_ns;
    uint64_t ns; /* 0 for a node run as part of an earlier node's work (its time is there) */
} bst_node_time;

/* A run of nodes on one device, compiled as a whole. Nodes are in execution order. Tensors that
 * the partition reads or writes refer to buffers through bst_tensor_desc.binding. */
typedef struct bst_partition_desc {
    uint32_t struct_size;
    uint32_t n_nodes;
    const bst_node_desc *const *nodes;
    uint32_t n_bindings;
    uint32_t reserved;
} bst_partition_desc;

typedef enum bst_log_level {
    BST_LOG_DEBUG = 0,
    BST_LOG_INFO = 1,
    BST_LOG_WARN = 2,
    BST_LOG_ERROR = 3
} bst_log_level;

/* Work callback for parallel_for: process items [begin, end). `worker` is in [0, n_workers). */
typedef void (*bst_range_fn)(void *arg, int64_t begin, int64_t end, uint32_t worker);

/* Services the host gives a plugin. Valid from entry until the process ends; thread-safe. */
typedef struct bst_host_api {
    uint32_t struct_size;
    uint32_t abi_version; /* the host's newest */
    void (*log)(bst_log_level level, const char *fmt, ...) BST_PRINTF(2, 3);
    /* Records the message that goes with the status the current call is about to return. */
    void (*set_error)(const char *fmt, ...) BST_PRINTF(1, 2);
    void *(*alloc)(size_t size, size_t alignment); /* NULL on failure; alignment a power of 2 */
    void (*free)(void *ptr);
    /* Runs fn over [0, n) split in chunks of at least `grain` on the shared pool; returns when
     * all are done. The chunk that begins at 0 is taken before any other by a thread that runs
     * it at once (every host since ABI 1 does so; the runtime's pool gives it to the calling
     * thread), so a callback may wait for something that chunk does. Other chunks run on any
     * thread in any order, possibly only once the calling thread is free to take them. Never
     * call it from inside a callback. */
    void (*parallel_for)(int64_t n, int64_t grain, bst_range_fn fn, void *arg);
    uint32_t (*num_workers)(void);
    /* Reference conversions of `n` elements of one row (n a multiple of the block size). */
    bst_status (*dequantize)(bst_dtype type, const void *src, float *dst, int64_t n);
    bst_status (*quantize)(bst_dtype type, const float *src, void *dst, int64_t n);
    /* Test-only fault injection: returns the status a test asked `site` (e.g. "alloc",
     * "execute", "compile") to fail with, or BST_OK. Always BST_OK outside tests. */
    bst_status (*fault)(const char *site);
} bst_host_api;

/* A backend. Every function takes the backend's ctx (from entry) or a handle it returned.
 * Optional entries may be NULL; the host falls back as noted. Unless noted, calls on one device
 * come from one thread at a time. Pointers passed in are valid only during the call. */
typedef struct bst_backend_api {
    uint32_t struct_size;
    uint32_t abi_version; /* negotiated: written by the plugin */
    const char *name;     /* static string, e.g. "cpu" */
    const char *version;  /* static string, the plugin's own version */
    void *ctx;

    /* Releases ctx. Called at most once; the module itself is never unloaded. */
    void (*destroy)(void *ctx);

    /* Device enumeration: cheap, starts nothing. Writes up to `capacity` infos with byte stride
     * `stride` (>= the struct_size the host set in each) and the total count. Zero devices is not
     * an error. */
    BST_MUST_CHECK bst_status (*enumerate)(void *ctx, bst_device_info *out_infos, size_t stride,
                                           uint32_t capacity, uint32_t *out_count);
    /* Starts device `index` (lazily, on first use by the host). */
    BST_MUST_CHECK bst_status (*device_open)(void *ctx, uint32_t index, void **out_device);
    void (*device_close)(void *device);
    /* Optional: thread count for self-threaded devices. */
    BST_MUST_CHECK bst_status (*set_num_threads)(void *device, uint32_t n);

    /* Kernel variants that can run `node`; *out_count = 0 means unsupported (not an error). */
    BST_MUST_CHECK bst_status (*query)(void *device, const bst_node_desc *node,
                                       bst_kernel_variant *out_variants, size_t stride,
                                       uint32_t capacity, uint32_t *out_count);

    /* Buffers of device memory. */
    BST_MUST_CHECK bst_status (*buffer_alloc)(void *device, uint64_t size, void **out_buffer);
    void (*buffer_free)(void *device, void *buffer);
    BST_MUST_CHECK bst_status (*buffer_write)(void *device, void *buffer, uint64_t offset,
                                              const void *src, uint64_t size);
    BST_MUST_CHECK bst_status (*buffer_read)(void *device, void *buffer, uint64_t offset,
                                             void *dst, uint64_t size);
    /* Optional: device-side copy (fallback: read + write through host memory). */
    BST_MUST_CHECK bst_status (*buffer_copy)(void *device, void *dst, uint64_t dst_offset,
                                             void *src, uint64_t src_offset, uint64_t size);
    /* Optional: host pointer to a host-visible buffer, valid until buffer_free. */
    BST_MUST_CHECK bst_status (*buffer_map)(void *device, void *buffer, void **out_ptr);

    /* Optional: makes a device copy of a weight, possibly repacked (fallback: buffer_alloc +
     * buffer_write in native layout). `data` stays valid at least until the buffer returned here
     * is freed (usually the mmap'd model file), so unified-memory devices may keep pointing at it
     * instead of copying. Reports the bytes it costs and the layout. */
    BST_MUST_CHECK bst_status (*prepare_weight)(void *device, const bst_tensor_desc *tensor,
                                                const void *data, uint64_t size,
                                                void **out_buffer, uint64_t *out_bytes,
                                                uint32_t *out_layout);

    /* Compiles a partition; node->variant names the chosen kernel of each node. */
    BST_MUST_CHECK bst_status (*compile)(void *device, const bst_partition_desc *partition,
                                         void **out_executable);
    void (*executable_free)(void *device, void *executable);
    /* Runs a compiled partition on `buffers[0..n_buffers)`. Returns when the results are
     * complete, unless the backend offers events (a later ABI version). */
    BST_MUST_CHECK bst_status (*execute)(void *device, void *executable, void *const *buffers,
                                         uint32_t n_buffers, const bst_run_params *params);
    /* Optional: device time of the last execute of `executable`, in ns (fallback: wall clock). */
    BST_MUST_CHECK bst_status (*last_execute_ns)(void *device, void *executable,
                                                 uint64_t *out_ns);

    /* v2+: timeline events, all optional. A backend that offers them sets all four, and the host
     * then lets work on its devices run behind the host's back: consecutive partitions on one
     * device are chained on the device, and the host waits only where it needs a result (a
     * transfer to another device, a read, the end of a run). Without them the host calls
     * execute, which returns when the work is complete.
     *
     * event_create: a new event on `device` with value 0. event_destroy: the host calls it only
     * when no submitted work still waits on or signals the event. */
    BST_MUST_CHECK bst_status (*event_create)(void *device, void **out_event);
    void (*event_destroy)(void *device, void *event);
    /* Submits a compiled partition to start once every wait point is reached (`waits` holds
     * `n_waits` points of this backend's events on this device, with byte stride
     * `waits_stride`), and to set `signal->event` to `signal->value` when its results are
     * complete. May return before the work runs. Until the signal is reached the host leaves the
     * bound buffers alone (no read, write, copy or free); `buffers` and `params` themselves are
     * only read during the call. A failure found later (device lost, out of memory) is returned
     * by the event_wait that waits for the signal, with its message. Signal values of one event
     * only grow. */
    BST_MUST_CHECK bst_status (*execute_async)(void *device, void *executable,
                                               void *const *buffers, uint32_t n_buffers,
                                               const bst_run_params *params,
                                               const bst_event_point *waits, size_t waits_stride,
                                               uint32_t n_waits, const bst_event_point *signal);
    /* Blocks the calling thread until `event` reaches `value` or `timeout_ns` passes
     * (BST_ERR_TIMEOUT; UINT64_MAX waits forever). Thread-safe. */
    BST_MUST_CHECK bst_status (*event_wait)(void *device, void *event, uint64_t value,
                                            uint64_t timeout_ns);

    /* v3+: each node's time inside an execute of the whole partition (BST_PROFILE_NODES_IN_RUN),
     * both optional; a backend offers both or neither. node_timing turns the timing on (enable
     * 1) or off (0) for the executable's later executes: while on, each execute may cost the
     * backend a clock read or two per node, and while off nothing. node_times then reports the
     * last execute that ran with timing on: *out_count = the partition's node count, and
     * out[k], k < capacity, the time of node k in the order compile received them. A backend
     * that runs several nodes as one piece of work (sibling matmuls sharing an input) reports
     * that work's time on the first of them and ns 0 on the others. */
    BST_MUST_CHECK bst_status (*node_timing)(void *device, void *executable, uint32_t enable);
    BST_MUST_CHECK bst_status (*node_times)(void *device, void *executable, bst_node_time *out,
                                            uint32_t capacity, uint32_t *out_count);
} bst_backend_api;

/* Size of a version-1 bst_backend_api: a plugin fills the fields that fit in the host's
 * struct_size (at least this much) and writes back the smaller of the host's size and its own. */
#define BST_BACKEND_API_SIZE_V1 offsetof(bst_backend_api, event_create)

/* The plugin's one exported symbol. `host` lives until the process ends. The plugin fills `out`
 * (whose struct_size the host set) or returns an error (BST_ERR_ABI when no version overlaps)
 * after calling host->set_error. */
typedef bst_status (*bst_backend_entry_fn)(const bst_host_api *host, uint32_t host_abi,
                                           bst_backend_api *out);
#define BST_BACKEND_ENTRY_SYMBOL "bst_backend_entry"

#if defined(__GNUC__) || defined(__clang__)
#define BST_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define BST_PLUGIN_EXPORT
#endif

#define BST_BACKEND_ENTRY                                                                  \
    BST_PLUGIN_EXPORT bst_status bst_backend_entry(const bst_host_api *host, uint32_t host_abi, \
                                                   bst_backend_api *out)

#ifdef __cplusplus
}
#endif
#endif /* BASTION_BACKEND_H */
