/*
 * backends/npu-sim/npu_backend.h — private to the simulated NPU plugin (libbst-backend-npu-sim.so).
 *
 * npu-sim behaves like a typical fixed-function inference NPU, so that the runtime's partitioner,
 * transfers and placement meet a real "other device", and so that a vendor has a complete plugin
 * to copy. No NPU is attached: the device is simulated, but everything the host sees is what a
 * real NPU plugin would do.
 *  - Device memory is its own: buffers are not host-visible (no buffer_map), and every transfer
 *    is an explicit DMA whose bytes and modelled time (latency + bytes / link bandwidth) are
 *    accounted (npu_buffer.c).
 *  - A small op set: integer matmul on weights repacked at prepare_weight into int8 codes tiled
 *    for the matrix unit, with a scale and offset per output channel and group of 32 inputs (the
 *    GGUF block: q4_x/q5_x/q8_0 weights are represented exactly); activations quantized per row
 *    and group to int16 or int8 codes (the description's activation_bits); integer products
 *    accumulated in int32 per group, then scaled to f32. fp16 matmul for activation x activation
 *    products and unprepared weights; f32 vector ops (add, mul, scale, silu, gelu, softmax,
 *    rms_norm, rope), and the fused rms_norm_mul and ffn_swiglu, which compile expands into those
 *    instructions (ffn's intermediates in device buffers the stream owns). Everything else is
 *    "unsupported" and falls to another backend (npu_compile.c: query).
 *  - Whole-partition compile into one command stream with a bucket table for the symbolic dims
 *    (static shapes: one entry per power-of-two bucket of n_tokens and n_kv up to their bounds,
 *    all resolved at compile), serialized to a blob and cached on disk with a compatibility
 *    header (npu_compile.c, npu_cache.c).
 *  - A cost model read from a device description file (npu_desc.c): execute reports the modelled
 *    device time through last_execute_ns (npu_exec.c).
 *
 * Nothing here aborts or exits; every failure is a bst_status with a message through
 * host->set_error. Nothing is exported but bst_backend_entry; cross-file helpers use npu_.
 */
#ifndef BASTION_NPU_BACKEND_H
#define BASTION_NPU_BACKEND_H

#include <bastion/backend.h>

#include "bst_backend_common.h"

#include <stdatomic.h>

#define NPU_BACKEND_NAME "npu-sim"
#define NPU_BACKEND_VERSION "0.1.0"

/* The host's services, set once by bst_backend_entry. */
extern const bst_host_api *npu_host;
extern bstc_plugin npu_plugin; /* name and the same host table, for bst_backend_common.h */

enum {
    NPU_MAGIC_CTX = 0x4e505543u,
    NPU_MAGIC_DEVICE = 0x4e505544u,
    NPU_MAGIC_BUFFER = 0x4e505542u,
    NPU_MAGIC_EXEC = 0x4e505545u,
};

/* The private layout tag of a weight repacked by prepare_weight (npu_buffer.c). */
#define NPU_LAYOUT_I8_TILED ((uint32_t)BST_LAYOUT_BACKEND + 1u)
/* Tile of the int8 weight layout: NPU_TILE_N output channels x NPU_TILE_K inputs, row-major
 * inside the tile, tiles ordered by output-channel block then input block; after the tiles,
 * f32 scales d[n_pad][k_groups] then f32 offsets m[n_pad][k_groups] (w = code * d + m). A K tile
 * is also the quantization group of weights and activations: 32, the GGUF block size. */
#define NPU_TILE_N 16
#define NPU_TILE_K 32

/* --- device description (cost model) --- */

typedef struct npu_desc {
    char model[64];             /* "npu-small" */
    double clock_mhz;           /* core clock */
    double macs_int8;           /* int8 MACs per cycle (matrix unit) */
    double macs_fp16;           /* fp16 MACs per cycle (matrix unit) */
    double vector_lanes;        /* f32 vector operations per cycle */
    uint64_t sram_bytes;        /* on-chip SRAM */
    double dram_gbps;           /* device memory <-> SRAM, GB/s */
    double dma_gbps;            /* host <-> device link, GB/s */
    double dma_latency_ns;      /* per DMA transfer */
    double launch_ns;           /* per command stream submission */
    uint64_t memory_bytes;      /* device memory */
    uint32_t activation_bits;   /* 8 or 16: width of the matrix unit's activation codes */
    uint64_t hash;              /* of the description's canonical values: part of blob keys */
} npu_desc;

/* Parses a description (key = value lines, see devices/README in npu_desc.c's comment) of
 * `len` bytes; `origin` names it in messages. BST_ERR_FORMAT with a message on any problem. */
bst_status npu_desc_parse(const char *text, size_t len, const char *origin, npu_desc *out);
/* Loads `spec`: a shipped name ("npu-small", "npu-large") or a file path. NULL/empty = small. */
bst_status npu_desc_load(const char *spec, npu_desc *out);

/* --- objects handed to the host --- */

typedef struct npu_ctx {
    uint32_t magic;
} npu_ctx;

/* DMA and memory accounting of one device. */
typedef struct npu_device {
    uint32_t magic;
    npu_desc desc;
    bst_device_info info;
    uint64_t mem_used;
    uint64_t dma_bytes_in, dma_bytes_out, dma_transfers;
    double dma_pending_ns; /* DMA since the last execute: charged to the next one */
    double dma_total_ns;
} npu_device;

typedef struct npu_buffer {
    uint32_t magic;
    uint32_t layout; /* BST_LAYOUT_NATIVE, or NPU_LAYOUT_I8_TILED for a prepared weight */
    uint8_t *data;
    uint64_t size;
    /* NPU_LAYOUT_I8_TILED: the weight's shape and where its scales start. */
    int64_t w_n, w_k, w_kt; /* output channels, inputs, K tiles (groups) */
    uint64_t scales_offset;
} npu_buffer;

npu_buffer *npu_buffer_get(void *handle);
/* Device memory reserved for a buffer of `size` bytes, or DEVICE_OOM with a message. */
bst_status npu_mem_reserve(npu_device *dev, uint64_t size);
/* Modelled time of one DMA transfer of `bytes`, and its accounting. */
double npu_dma_ns(const npu_desc *d, uint64_t bytes);
void npu_dma_account(npu_device *dev, uint64_t bytes, bool to_device);

/* --- command stream --- */

typedef enum npu_opcode {
    NPU_OP_MM_I8 = 1,  /* int16/int8 activations x int8 weights -> int32 per group, scaled:
                          b is a prepared weight */
    NPU_OP_MM_F16 = 2, /* fp16 x fp16 -> f32 accumulate */
    NPU_OP_ADD = 3,
    NPU_OP_MUL = 4,
    NPU_OP_SCALE = 5,
    NPU_OP_SILU = 6,
    NPU_OP_GELU = 7,
    NPU_OP_SOFTMAX = 8,
    NPU_OP_RMS_NORM = 9,
    NPU_OP_ROPE = 10,
    NPU_OP_END
} npu_opcode;

/* A tensor operand of an instruction, as the descriptor gave it. */
typedef struct npu_operand {
    uint32_t dtype, layout, rank, binding;
    int64_t shape[BST_MAX_DIMS];
    int64_t strides[BST_MAX_DIMS];
    uint32_t sym[BST_MAX_DIMS];
    uint64_t offset;
} npu_operand;

#define NPU_MAX_IN 3

typedef struct npu_instr {
    uint32_t op; /* npu_opcode */
    uint32_t n_in;
    npu_operand in[NPU_MAX_IN];
    npu_operand out;
    double f0;  /* scale (scale, softmax), eps (rms_norm), theta (rope) */
    int64_t i0; /* rope mode */
    int64_t i1; /* rope dims */
} npu_instr;

/* Modelled cost of the stream at one bucket of the symbolic dims. */
typedef struct npu_bucket {
    int64_t n_tokens, n_kv; /* padded extents (0: the dim does not occur) */
    double compute_ns;      /* sum over instructions of max(matrix/vector time, DRAM time) */
    uint64_t dram_bytes;
} npu_bucket;

#define NPU_MAX_BUCKETS_PER_DIM 32
#define NPU_MAX_SCRATCH 2
/* Instructions one node can expand to (FFN_SWIGLU: 3 matmuls, silu, mul). */
#define NPU_MAX_EXPAND 5

typedef struct npu_executable {
    uint32_t magic;
    uint32_t n_instr;
    npu_instr *instr;
    uint32_t n_bindings;
    int64_t bound_tokens, bound_kv; /* 0 when the dim does not occur */
    uint32_t n_buckets;
    npu_bucket *buckets;
    int64_t max_row; /* longest innermost extent: per-worker scratch rows */
    /* Device buffers the stream owns for the intermediates of fused ops (FFN_SWIGLU's gate and
     * up projections): bindings n_bindings .. n_bindings + n_scratch - 1. */
    uint32_t n_scratch;
    uint64_t *scratch_bytes;
    void **scratch;
    uint64_t last_ns;
    bool from_cache; /* loaded from a cached blob (for tests and logs) */
} npu_executable;

/* Serialized form (npu_compile.c). The blob is what compile produces and what the cache keeps;
 * an executable is always built by npu_blob_load, so a cached blob runs exactly as a fresh one. */
bst_status npu_blob_build(const npu_device *dev, const bst_partition_desc *part, uint8_t **out,
                          size_t *out_size);
bst_status npu_blob_load(npu_device *dev, const uint8_t *blob, size_t size,
                         npu_executable **out);
void npu_exec_destroy(npu_device *dev, npu_executable *e);
/* Cost of instruction `in` with the symbolic dims at the given extents (npu_exec.c). */
void npu_instr_cost(const npu_desc *d, const npu_instr *in, int64_t n_tokens, int64_t n_kv,
                    double *out_ns, uint64_t *out_dram_bytes);
/* Checks an instruction's shapes, dtypes and attributes (compile and blob load). */
bst_status npu_instr_check(const npu_instr *in, uint32_t n_bindings);

/* On-disk blob cache (npu_cache.c). The device model and `key` name the entry; the header
 * records the device model and description hash, plugin version and source hash; a mismatch or
 * corruption is logged and returns NULL. */
uint8_t *npu_cache_load(const npu_device *dev, uint64_t key, size_t *out_size);
void npu_cache_store(const npu_device *dev, uint64_t key, const uint8_t *blob, size_t size);

#define NPU_FNV_SEED UINT64_C(0xcbf29ce484222325)

/* --- api entries --- */
bst_status npu_buffer_alloc(void *device, uint64_t size, void **out_buffer);
void npu_buffer_free(void *device, void *buffer);
bst_status npu_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size);
bst_status npu_buffer_read(void *device, void *buffer, uint64_t offset, void *dst, uint64_t size);
bst_status npu_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size);
bst_status npu_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                              uint64_t size, void **out_buffer, uint64_t *out_bytes,
                              uint32_t *out_layout);
bst_status npu_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count);
bst_status npu_compile(void *device, const bst_partition_desc *partition, void **out_executable);
void npu_executable_free(void *device, void *executable);
bst_status npu_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params);
bst_status npu_last_execute_ns(void *device, void *executable, uint64_t *out_ns);

npu_device *npu_device_get(void *handle);
/* Failure injected by a test through host->fault(site), with a message; BST_OK otherwise. */
bst_status npu_injected_fault(const char *site);
/* f32 -> nearest-even f16 -> f32: what the matrix unit's fp16 inputs hold. */
float npu_round_f16(float x);

#endif /* BASTION_NPU_BACKEND_H */
