/*
 * backends/onednn/dnnl_backend.h — private to the oneDNN backend plugin (libbst-backend-onednn.so).
 *
 * The plugin runs a subset of the primitive ops with oneDNN's C API (Debian's libdnnl, 2.6):
 * matmul (f32 and bf16 weights directly; q4_0/q4_1/q8_0 weights requantized to s8 rows with one
 * f32 scale per row, activations quantized per row to s8 at each call, int32 accumulation),
 * silu, gelu (tanh), add/mul with broadcast, softmax with scale and mask, and layer_norm.
 * oneDNN is self-threaded (OpenMP in Debian's build): the device says so and takes
 * set_num_threads. Memory is host memory (unified).
 *
 * Structure:
 *  - dnnl_main.c   entry, the one device, buffers, error mapping, threads;
 *  - dnnl_node.c   descriptors, tensor resolution, query/compile/execute, the per-node
 *                  primitive cache (keyed by the actual extents of symbolic dims);
 *  - dnnl_ops.c    per-op checks and the oneDNN primitives each op becomes;
 *  - dnnl_quant.c  weight requantization (prepare_weight) and activation quantization.
 * Every dnnl_* call's status goes through dnnl_fail so it becomes a bst_status with a message
 * naming the primitive; nothing here aborts. Only bst_backend_entry is exported.
 */
#ifndef BASTION_DNNL_BACKEND_H
#define BASTION_DNNL_BACKEND_H

#include <dnnl.h>

#include <bastion/backend.h>

#include "bst_backend_common.h"

#define DNNL_BACKEND_NAME "onednn"
#define DNNL_BACKEND_VERSION "0.1.0"
#define DNNL_MSG_MAX 1024
/* Layout tags of a q4_0/q4_1/q8_0 weight repacked by prepare_weight: s8 rows + one f32 scale
 * per row (int8 mode), or bf16 rows (bf16 mode, the default; see dnnl_ops.c). */
#define DNNL_LAYOUT_S8ROWS (BST_LAYOUT_BACKEND + 1u)
#define DNNL_LAYOUT_BF16ROWS (BST_LAYOUT_BACKEND + 2u)
#define DNNL_MAX_STEPS 2

extern const bst_host_api *dnnl_host;
extern bstc_plugin dnnl_plugin; /* name and the same host table, for bst_backend_common.h */

enum {
    DNNL_MAGIC_CTX = 0x444e4e43u,
    DNNL_MAGIC_DEVICE = 0x444e4e44u,
    DNNL_MAGIC_BUFFER = 0x444e4e42u,
    DNNL_MAGIC_EXEC = 0x444e4e45u,
};

typedef struct dnnl_dev {
    uint32_t magic;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    bst_device_info info;
    uint32_t n_threads; /* 0: OpenMP's default */
    bool int8;          /* q weights as s8 (BASTION_ONEDNN_QMATMUL=s8), else bf16 */
} dnnl_dev;

/* A buffer of host memory. A repacked weight (repacked = its layout tag) keeps rows x cols
 * values (s8 or bf16), and for s8 then rows f32 scales at scale_offset. The values are plain
 * rows until reordered, once and in place, into the blocked layout oneDNN's matmul asks for
 * (blocked, wmd): by prepare_weight for 2-D weights, else by the first matmul that uses them. */
typedef struct dnnl_buf {
    uint32_t magic;
    uint32_t repacked; /* 0, DNNL_LAYOUT_S8ROWS or DNNL_LAYOUT_BF16ROWS */
    uint8_t *data;
    uint64_t size;
    int64_t rows, cols;
    uint64_t scale_offset;
    bool blocked;
    dnnl_memory_desc_t wmd; /* layout of the values when blocked */
} dnnl_buf;

/* --- main --- */
bst_status dnnl_fail_status(dnnl_status_t s);
const char *dnnl_status_name(dnnl_status_t s);
bst_status dnnl_injected_fault(const char *site);
dnnl_buf *dnnl_buf_get(void *handle);
bst_status dnnl_buffer_alloc(void *device, uint64_t size, void **out_buffer);
void dnnl_buffer_free(void *device, void *buffer);
bst_status dnnl_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                               uint64_t size, void **out_buffer, uint64_t *out_bytes,
                               uint32_t *out_layout);
/* Sets oneDNN's OpenMP thread count for the calling thread (the device's setting). */
void dnnl_apply_threads(const dnnl_dev *d);

/* --- dtypes --- */
bool dnnl_dtype_geometry(uint32_t dtype, uint32_t *out_block_size, uint32_t *out_block_bytes);
const char *dnnl_dtype_str(uint32_t dtype);
bool dnnl_is_qweight(uint32_t dtype); /* q4_0, q4_1, q8_0 */

/* --- nodes (dnnl_node.c) --- */

/* A tensor resolved for one run: dims padded at the front to 4 (ne[3] innermost), actual
 * extents, strides in bytes. */
typedef struct dnnl_tensor {
    uint32_t dtype;
    uint32_t layout;
    uint32_t rank;
    int64_t ne[4];
    int64_t nb[4];
    uint8_t *ptr; /* first element; NULL outside execute */
    dnnl_buf *buf;
} dnnl_tensor;

/* A primitive a node runs, with the memory descriptors of its arguments. */
typedef struct dnnl_step {
    dnnl_primitive_t prim;
    int kind;   /* step kind (dnnl_ops.c) */
    int src_in; /* input index the step reads first */
    dnnl_memory_desc_t md[3]; /* kind-specific: src/src0, wei/src1, dst */
    dnnl_memory_desc_t wplain; /* matmul on repacked weights: their plain layout (md[1] is the
                                  layout the primitive chose) */
    float scale;
} dnnl_step;

typedef struct dnnl_node {
    union { /* the descriptors (bst_backend_common.h), fields reachable directly */
        bstc_node base;
        struct {
            BSTC_NODE_FIELDS
        };
    };
    bool symbolic;
    /* The cached plan: built for the extents in key[] (n_tokens, n_kv; -1 when unbound). */
    bool planned;
    int64_t key[2];
    uint32_t n_steps;
    dnnl_step steps[DNNL_MAX_STEPS];
    /* matmul geometry of the plan */
    int64_t mm_ba, mm_bb, mm_m, mm_n, mm_k;
} dnnl_node;

typedef struct dnnl_run {
    dnnl_dev *dev;
    dnnl_node *node;
    bool executing;
    dnnl_tensor in[BST_MAX_INPUTS];
    dnnl_tensor out;
    /* execute: scratch memory of the executable (grown on demand) */
    uint8_t **scratch;
    uint64_t *scratch_size;
    char msg[DNNL_MSG_MAX];
} dnnl_run;

bst_status dnnl_rfail(dnnl_run *r, bst_status st, const char *fmt, ...) BST_PRINTF(3, 4);
/* Reports a failed dnnl call naming `what` (primitive and call). */
bst_status dnnl_rcheck(dnnl_run *r, dnnl_status_t s, const char *what);
double dnnl_attr_float(const dnnl_node *n, bst_attr_key key, double fallback);
/* Scratch of at least `size` bytes, 64-byte aligned (execute only). */
bst_status dnnl_scratch(dnnl_run *r, uint64_t size, uint8_t **out);

bst_status dnnl_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                      size_t stride, uint32_t capacity, uint32_t *out_count);
bst_status dnnl_compile(void *device, const bst_partition_desc *partition, void **out_executable);
void dnnl_executable_free(void *device, void *executable);
bst_status dnnl_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                        const bst_run_params *params);
bst_status dnnl_last_execute_ns(void *device, void *executable, uint64_t *out_ns);

/* --- ops (dnnl_ops.c) --- */

/* Checks the node's tensors (r->in, r->out at the extents being planned). */
bst_status dnnl_op_check(dnnl_run *r);
/* Variant names for the node; returns the count (>= 1 when check passed). */
uint32_t dnnl_op_variants(const dnnl_run *r, const char **out_names, uint32_t cap);
/* Creates the node's primitives for the resolved extents into r->node->steps. */
bst_status dnnl_op_plan(dnnl_run *r);
/* Runs the planned steps on the bound tensors. */
bst_status dnnl_op_exec(dnnl_run *r);
void dnnl_node_release(dnnl_node *n);
const char *dnnl_op_name(uint32_t op);

/* Reorders a freshly repacked 2-D weight (plain rows) into the layout oneDNN's matmul picks
 * for it (queried with one row of activations; prefill shapes pick the same), so that neither
 * the first call nor a benchmark's rotation of weight copies pays for it. */
bst_status dnnl_block_prepared(dnnl_dev *dev, dnnl_buf *b);

/* --- quantization (dnnl_quant.c) --- */

/* Requantizes `rows` rows of `cols` values of a q4_0/q4_1/q8_0 tensor (row i at src + i *
 * row_stride) to s8 (dst_q, row-major) with one scale per row (dst_scale). */
bst_status dnnl_requant_rows(uint32_t dtype, const uint8_t *src, int64_t row_stride, int64_t rows,
                             int64_t cols, int8_t *dst_q, float *dst_scale);
/* Quantizes f32 rows (row i at src + i*row_stride bytes, elements elem_stride bytes apart) to
 * s8 with one symmetric scale per row. */
void dnnl_quant_act_rows(const uint8_t *src, int64_t row_stride, int64_t elem_stride, int64_t rows,
                         int64_t cols, int8_t *dst_q, float *dst_scale);
/* f32 -> bf16, round to nearest even (strided rows into a contiguous dst). */
/* Dequantizes rows of a q4_0/q4_1/q8_0 tensor to bf16 (row-major dst). */
bst_status dnnl_dequant_bf16_rows(uint32_t dtype, const uint8_t *src, int64_t row_stride,
                                  int64_t rows, int64_t cols, uint16_t *dst);
void dnnl_to_bf16_rows(const uint8_t *src, int64_t row_stride, int64_t elem_stride, int64_t rows,
                       int64_t cols, uint16_t *dst);

#endif /* BASTION_DNNL_BACKEND_H */
