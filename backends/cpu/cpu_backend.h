/*
 * backends/cpu/cpu_backend.h — private to the CPU backend plugin (libbst-backend-cpu.so).
 *
 * The CPU backend is the reference every other backend is compared with, so it is written to be
 * obviously correct before fast: every kernel works row by row on f32, reading inputs of any
 * supported dtype and any byte strides through cpu_load_row and writing through
 * cpu_out_row/cpu_commit_row. All conversions go through the host's reference (de)quantizers;
 * threads come from the host's pool (host->parallel_for), never from the plugin.
 *
 * Nothing here is exported: the module's only symbol is bst_backend_entry. Cross-file helpers
 * use the cpu_ prefix.
 */
#ifndef BASTION_CPU_BACKEND_H
#define BASTION_CPU_BACKEND_H

#include <bastion/backend.h>

#include "bst_backend_common.h"

#include <stdatomic.h>

#define CPU_BACKEND_NAME "cpu"
#define CPU_BACKEND_VERSION "0.1.0"

/* The host's services, set once by bst_backend_entry (the table lives until the process ends). */
extern const bst_host_api *cpu_host;
extern bstc_plugin cpu_plugin; /* name and the same host table, for bst_backend_common.h */

/* --- objects handed to the host --- */

enum {
    CPU_MAGIC_CTX = 0x43505543u,    /* "CUPC" */
    CPU_MAGIC_DEVICE = 0x43505544u, /* "DUPC" */
    CPU_MAGIC_BUFFER = 0x43505542u, /* "BUPC" */
    CPU_MAGIC_EXEC = 0x43505545u,   /* "EUPC" */
};

typedef struct cpu_ctx {
    uint32_t magic;
} cpu_ctx;

typedef struct cpu_device {
    uint32_t magic;
    bool ref_only; /* BASTION_CPU_KERNELS=ref: offer only the reference kernels */
    bool no_fused; /* BASTION_CPU_KERNELS=lowered: fast primitives, no fused high-level ops
                      (cpu_fused.h), so the runtime lowers them: for comparisons */
    bst_device_info info;
} cpu_device;

struct cpu_q8dot_impl; /* cpu_q8dot.h */
struct cpu_packed;     /* cpu_packed.h */

typedef struct cpu_buffer {
    uint32_t magic;
    bool owned;     /* data came from host->alloc (else it is an imported weight) */
    bool read_only; /* imported weights: the mapping may be read-only */
    uint8_t *data;
    uint64_t size;
    struct cpu_packed *packed; /* imported quantized matrices: the interleaved copy the int8
                                  kernels read (cpu_packed.h), or NULL */
} cpu_buffer;

/* One node of a compiled partition: a deep copy of the descriptors (the host's pointers are
 * valid only during compile). */
typedef struct cpu_node {
    union { /* the descriptors (bst_backend_common.h), fields reachable directly */
        bstc_node base;
        struct {
            BSTC_NODE_FIELDS
        };
    };
    const struct cpu_q8dot_impl *q8dot; /* the chosen variant when it is a q8dot one, else NULL
                                           (the reference kernel) */
    const struct cpu_fused_impl *fused; /* high-level ops: the chosen fused variant */
    uint32_t siblings; /* > 1: this node starts a run of that many matmuls of one activation
                          (cpu_mark_siblings), tried as one group at execute */
    uint32_t first_tensor; /* its in[0..n_inputs) and out in cpu_executable.resolved */
    uint32_t syms;         /* CPU_SYM_* bits: the symbols its tensors' extents depend on */
    bool mask_kept; /* attention: no node of the partition writes its mask's binding */
} cpu_node;

/* cpu_node.syms: which bst_run_params values a node's resolution depends on. */
#define CPU_SYM_TOKENS 1u
#define CPU_SYM_KV 2u

/* What a cached resolution read from one binding's buffer (cpu_exec.c): while every binding an
 * executable uses still has these values, resolving its tensors again gives the same result. */
typedef struct cpu_binding_key {
    const uint8_t *data;
    uint64_t size;
    const struct cpu_packed *packed;
    int64_t packed_rows, packed_nb; /* the packed copy's fields resolve tests (0 without one) */
    size_t packed_row_bytes;
    uint32_t packed_dtype;
    bool read_only;
} cpu_binding_key;

/* What one execute learned about its inputs once, for all its nodes (cpu_execute clears it):
 * whether an attention mask adds exactly zero to every score CAUSAL / WINDOW leave visible
 * (cpu_fused_attention.c), for the mask and geometry in `key`. */
typedef struct cpu_mask_memo {
    bool valid, zero;
    const uint8_t *data;
    int64_t key[7]; /* the mask's ne[2], ne[3], nb[2], nb[3]; T, S; causal + 2 * window */
} cpu_mask_memo;

typedef struct cpu_executable {
    uint32_t magic;
    uint32_t n_nodes;
    cpu_node *nodes;
    uint32_t n_bindings;
    int64_t max_row;      /* longest innermost extent of any tensor (at its bound) */
    float *scratch;       /* per-worker row buffers, CPU_SLOTS of slot_floats each, plus one
                             more set (cpu_run.shared) */
    size_t slot_floats;
    uint32_t scratch_workers;
    uint64_t last_ns;
    /* Resolution cache (cpu_exec.c, "reusing a resolution"): every node's tensors as the last
     * execute resolved and checked them, valid for the key below. */
    struct cpu_tensor *resolved; /* n_tensors: per node in[0..n_inputs) then out */
    uint32_t n_tensors;
    uint32_t *used;           /* the distinct bindings the nodes use, n_used of them */
    const void **key_handles; /* per used binding: its handle at the last resolution */
    cpu_binding_key *keys;    /* per used binding: its buffer's values at the last resolution */
    uint64_t key_frees;       /* cpu_buffer_frees() when the key last matched */
    uint32_t n_used;
    uint32_t syms; /* CPU_SYM_* bits of all nodes */
    uint32_t key_n_buffers;
    int64_t key_n_tokens, key_n_kv;
    bool cache_valid; /* resolved[] and the key describe one complete, checked resolution */
    struct cpu_run *runs; /* CPU_MAX_SIBLINGS run records, reused by every execute */
    bst_node_time *node_times; /* n_nodes, while node timing is on (cpu_node_timing); else NULL */
    cpu_mask_memo mask_memo;
} cpu_executable;

/* --- tensors resolved for one run --- */

/* A tensor with its dims padded at the front to 4 (outermost-first, ne[3] innermost) and its
 * actual extents (symbols bound). For a block type ne[3] counts elements and nb[3] is the block
 * size in bytes. data is NULL when only shapes are being checked (query, compile). */
typedef struct cpu_tensor {
    bst_dtype dtype;
    uint32_t rank; /* the descriptor's rank */
    int64_t ne[4];
    int64_t nb[4];
    uint8_t *data;
    const struct cpu_packed *packed; /* the whole bound weight, repacked (cpu_packed.h), or NULL */
} cpu_tensor;

#define CPU_SLOTS 4 /* row buffers per worker: enough for the widest kernel */
#define CPU_MSG_MAX 384

typedef struct cpu_run {
    const cpu_node *node;
    cpu_tensor in[BST_MAX_INPUTS];
    cpu_tensor out;
    float *scratch;
    size_t slot_floats;
    uint32_t n_workers;
    float *shared; /* CPU_SLOTS rows past the workers': the running node's own, for tables
                      every thread reads or as its work area (cpu_work_area) */
    cpu_mask_memo *mask_memo; /* the execute's (NULL outside one) */
    void *aux;     /* a kernel's own pointer for the duration of one node */
    _Atomic int async_status; /* first failure inside a worker (bst_status) */
    char msg[CPU_MSG_MAX];    /* why a check or kernel failed */
} cpu_run;

/* Records `status` with a message in r->msg; returns status. */
bst_status cpu_fail(cpu_run *r, bst_status status, const char *fmt, ...) BST_PRINTF(3, 4);
/* From a worker: keeps the first failure; the kernel reports it after the parallel section. */
void cpu_fail_async(cpu_run *r, bst_status status);
/* After a parallel section: the recorded failure, as a status with a message. */
bst_status cpu_async_result(cpu_run *r, const char *what);

/* --- dtypes (geometry and names: bst_backend_common.h) --- */
static inline bool cpu_dtype_geometry(uint32_t dtype, uint32_t *out_block_size,
                                      uint32_t *out_block_bytes)
{
    return bstc_dtype_geometry(dtype, out_block_size, out_block_bytes);
}
static inline const char *cpu_dtype_name(uint32_t dtype) { return bstc_dtype_name(dtype); }
static inline bool cpu_is_block(uint32_t dtype) { return bstc_dtype_is_block(dtype); }
bool cpu_is_loadable(uint32_t dtype); /* cpu_load_row reads it */
bool cpu_is_storable(uint32_t dtype); /* cpu_commit_row writes it */

/* Asks for every cache line of the `bytes` bytes at p (into L1). */
static inline void cpu_prefetch_bytes(const void *p, int64_t bytes)
{
    const uintptr_t end = (uintptr_t)p + (uintptr_t)bytes;
    for (uintptr_t a = (uintptr_t)p & ~(uintptr_t)63; a < end; a += 64)
        __builtin_prefetch((const void *)a, 0, 3);
}

/* --- attributes (bst_backend_common.h) --- */
static inline const bst_attr *cpu_attr(const cpu_node *n, bst_attr_key key)
{
    return bstc_attr(&n->base, key);
}
static inline double cpu_attr_float(const cpu_node *n, bst_attr_key key, double fallback)
{
    return bstc_attr_float(&n->base, key, fallback);
}
static inline int64_t cpu_attr_int(const cpu_node *n, bst_attr_key key, int64_t fallback)
{
    return bstc_attr_int(&n->base, key, fallback);
}

/* --- rows --- */

static inline uint8_t *cpu_row_ptr(const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2)
{
    return t->data + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2];
}

static inline float *cpu_slot(cpu_run *r, uint32_t worker, unsigned slot)
{
    return r->scratch + ((size_t)worker * CPU_SLOTS + slot) * r->slot_floats;
}

/* Row (i0, i1, i2) of t as ne[3] floats: a pointer into t itself when it is f32, contiguous and
 * aligned, else converted into `buf` (with `tmp` for gathering strided halves). Conversion
 * failures are recorded with cpu_fail_async. */
const float *cpu_load_row(cpu_run *r, const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                          float *buf, float *tmp);
/* Where a kernel writes row (i0, i1, i2) of t: the row itself when it is f32, contiguous and
 * aligned, else `buf`. cpu_commit_row then stores `row` into t unless it already is t's row. */
float *cpu_out_row(const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2, float *buf);
void cpu_commit_row(cpu_run *r, const cpu_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                    const float *row, float *tmp);

/* Runs fn over rows [0, n) on the host pool (serially when there is none or n is small). */
typedef void (*cpu_rows_fn)(cpu_run *r, int64_t begin, int64_t end, uint32_t worker);
void cpu_parallel(cpu_run *r, int64_t n, int64_t grain, cpu_rows_fn fn);
/* Rows per chunk so that each chunk does roughly a fixed amount of work. */
int64_t cpu_grain(int64_t work_per_row);

/* One step of a spin-wait for another thread of the section. */
static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Work every chunk of a parallel section needs before it starts. The chunk that begins at row 0
 * does it (the host takes that chunk first: bst_host_api.parallel_for) while the others wait. A
 * decode GEMV publishes its job first and quantizes the activation this way, so a worker's
 * wake-up (0.15-0.6 us) overlaps the quantization instead of following it. Nothing is claimed
 * with a compare-and-swap: a locked instruction on the caller's path would wait until the
 * publish's stores reached the worker's core (~0.3 us across two CCDs). */
typedef struct cpu_once {
    void (*fn)(cpu_run *r, void *arg, uint32_t worker);
    void *arg;
    _Atomic int done;
} cpu_once;
void cpu_once_run(cpu_once *once, cpu_run *r, int64_t begin, uint32_t worker);

/* A node's work area of `bytes`, 64-byte aligned: the run's shared scratch when it fits (a decode
 * step's nodes then allocate nothing: an allocation and its free cost ~0.2 us, 4% of a small
 * GEMV), else a fresh allocation; NULL when out of memory. The node must not use r->shared for
 * anything else meanwhile. cpu_work_release frees the area if it was allocated. */
void *cpu_work_area(cpu_run *r, size_t bytes);
void cpu_work_release(cpu_run *r, void *area);

/* Shared shape checks (message into r->msg). */
bool cpu_same_shape(const cpu_tensor *a, const cpu_tensor *b);
bst_status cpu_check_rows_contiguous(cpu_run *r, const cpu_tensor *t, const char *what);

/* --- kernels: check validates dtypes, shapes and attributes of resolved tensors (also run at
 * compile time on the bound shapes); run computes. Defined in cpu_kernels_*.c. --- */
#define CPU_KERNEL(name)                   \
    bst_status cpu_check_##name(cpu_run *r); \
    bst_status cpu_run_##name(cpu_run *r)
CPU_KERNEL(get_rows);
CPU_KERNEL(binary); /* add, mul */
CPU_KERNEL(unary);  /* scale, silu, gelu */
CPU_KERNEL(matmul);
CPU_KERNEL(norm); /* rms_norm, layer_norm */
CPU_KERNEL(rope);
CPU_KERNEL(softmax);
CPU_KERNEL(convert); /* cast, quantize, cont */
CPU_KERNEL(concat);
CPU_KERNEL(argmax);
CPU_KERNEL(set_rows);
/* set_rows' pieces, shared with its fast variant (cpu_fast_prims.c): prepare checks every id
 * (message names the first outside dst), copies dst to the output when the planner did not alias
 * them, and gives the item count (positions in the two dims other than the row dim); item
 * gives item's row n of src (s) and the row it replaces (d), as [i0, i1, i2]. */
bst_status cpu_set_rows_prepare(cpu_run *r, int64_t *items);
void cpu_set_rows_item(const cpu_run *r, int64_t item, int64_t n, int64_t *s, int64_t *d);
CPU_KERNEL(alias); /* view, reshape, permute, transpose: memory is aliased by the planner */
#undef CPU_KERNEL

/* --- fast variants (cpu_kernels_q8dot.c) --- */
/* The q8dot variants that apply to r's node (checked, shapes bound), best first; at most cap. */
uint32_t cpu_q8dot_variants(const cpu_run *r, const struct cpu_q8dot_impl **out, uint32_t cap);
bst_status cpu_run_q8dot(cpu_run *r, const struct cpu_q8dot_impl *impl);

/* Matmuls that read the same activation one after another (a decode step's q, k and v) with
 * packed weights: the activation is quantized once and all their weight row groups are split
 * over the pool in one parallel section (each small matrix alone paid its own hand-off and a
 * cold start of its weight stream). cpu_mark_siblings sets cpu_node.siblings at compile;
 * cpu_run_q8dot_group runs resolved and checked nodes runs[0..count) as one group and returns
 * true, or returns false having done nothing (then run them one by one). */
#define CPU_MAX_SIBLINGS 4
void cpu_mark_siblings(cpu_node *nodes, uint32_t n_nodes);
bool cpu_run_q8dot_group(cpu_run *runs, uint32_t count, bst_status *out_status);

/* --- entry points used by the api table (cpu_buffer.c, cpu_exec.c) --- */
bst_status cpu_buffer_alloc(void *device, uint64_t size, void **out_buffer);
void cpu_buffer_free(void *device, void *buffer);
bst_status cpu_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size);
bst_status cpu_buffer_read(void *device, void *buffer, uint64_t offset, void *dst, uint64_t size);
bst_status cpu_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size);
bst_status cpu_buffer_map(void *device, void *buffer, void **out_ptr);
bst_status cpu_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                              uint64_t size, void **out_buffer, uint64_t *out_bytes,
                              uint32_t *out_layout);
/* The buffer behind a handle, or NULL (with a message) when it is not one of ours. */
cpu_buffer *cpu_buffer_get(void *handle);
/* How many buffers the process has freed so far. A buffer's values (data, size, packed copy)
 * never change while it lives, so a handle seen before, with no buffer freed since, is still
 * that buffer with those values (a freed one's address may come back as another buffer). */
uint64_t cpu_buffer_frees(void);

bst_status cpu_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count);
bst_status cpu_compile(void *device, const bst_partition_desc *partition,
                       void **out_executable);
void cpu_executable_free(void *device, void *executable);
bst_status cpu_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params);
bst_status cpu_last_execute_ns(void *device, void *executable, uint64_t *out_ns);
bst_status cpu_node_timing(void *device, void *executable, uint32_t enable);
bst_status cpu_node_times(void *device, void *executable, bst_node_time *out, uint32_t capacity,
                          uint32_t *out_count);

/* Failure injected by a test through host->fault(site), reported with a message; BST_OK
 * otherwise. */
bst_status cpu_injected_fault(const char *site);

#endif /* BASTION_CPU_BACKEND_H */
