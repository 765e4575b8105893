/*
 * backends/opencl/ocl_backend.h — private to the OpenCL backend plugin (libbst-backend-opencl.so).
 *
 * The plugin runs every primitive op on any OpenCL 1.2+ device found through the ICD loader.
 * Structure:
 *  - ocl_main.c     entry, platform/device enumeration, device open/close, OpenCL error mapping
 *                   and the fault-injection bridge;
 *  - ocl_program.c  kernel families (one OpenCL program each, built lazily per device, so one
 *                   broken family never takes the others down) and the on-disk program cache;
 *  - ocl_buffer.c   device buffers and weights;
 *  - ocl_graph.c    node descriptors, tensor resolution, query/compile/execute;
 *  - ocl_ops_*.c    per-op checks (the CPU reference's rules) and launches (kernel arguments and
 *                   NDRanges).
 * Kernel sources (the .cl files under kernels/) are embedded at build time.
 *
 * Every cl* call goes through ocl_cl_fail so its status becomes a bst_status with a message;
 * nothing here aborts or exits. Nothing is exported but bst_backend_entry; cross-file helpers
 * use the ocl_ prefix.
 */
#ifndef BASTION_OCL_BACKEND_H
#define BASTION_OCL_BACKEND_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <bastion/backend.h>

#include "bst_backend_common.h"

#define OCL_BACKEND_NAME "opencl"
#define OCL_BACKEND_VERSION "0.1.0"
#define OCL_MAX_DEVICES 16
#define OCL_MSG_MAX 2048

/* The host's services, set once by bst_backend_entry; ocl_plugin.host is the same table. */
extern const bst_host_api *ocl_host;
extern bstc_plugin ocl_plugin;

enum {
    OCL_MAGIC_CTX = 0x4f434c43u,    /* "CLCO" */
    OCL_MAGIC_DEVICE = 0x4f434c44u, /* "DLCO" */
    OCL_MAGIC_BUFFER = 0x4f434c42u, /* "BLCO" */
    OCL_MAGIC_EXEC = 0x4f434c45u,   /* "ELCO" */
};

/* --- kernel families: one OpenCL program each --- */
typedef enum ocl_family {
    OCL_FAM_ELEM = 0, /* unary, binary, convert, copy, concat */
    OCL_FAM_QUANT,    /* quantize, set_rows into block types */
    OCL_FAM_ROWS,     /* get_rows, set_rows, argmax */
    OCL_FAM_NORM,     /* rms_norm, layer_norm, softmax, rope */
    OCL_FAM_MATMUL,   /* gemv and tiled matmul, one kernel per weight dtype */
    OCL_FAM_ATTN,     /* fused attention */
    OCL_FAM_COUNT
} ocl_family;

const char *ocl_family_name(ocl_family f);

/* What the device can do, read once at enumeration. */
typedef struct ocl_caps {
    char cl_c_version[64];
    char platform_name[128];
    char *extensions; /* host->alloc'd, owned by the context entry */
    uint64_t local_mem;
    uint32_t base_align_bytes; /* CL_DEVICE_MEM_BASE_ADDR_ALIGN, converted from bits */
    uint32_t compute_units;
    size_t max_wg;
    bool correct_div; /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT for floats */
} ocl_caps;

typedef struct ocl_dev_entry {
    cl_platform_id platform;
    cl_device_id device;
    bst_device_info info;
    ocl_caps caps;
} ocl_dev_entry;

typedef struct ocl_ctx {
    uint32_t magic;
    bool enumerated;
    uint32_t n_devices;
    ocl_dev_entry devs[OCL_MAX_DEVICES];
} ocl_ctx;

typedef struct ocl_program_state {
    bool tried;
    cl_program program; /* NULL when the build failed */
    bst_status status;  /* of the build */
    char *message;      /* host->alloc'd failure message (with the build log) */
    uint64_t source_hash;
} ocl_program_state;

typedef struct ocl_device {
    uint32_t magic;
    bool lost; /* a DEVICE_LOST was seen: every later call fails fast */
    cl_device_id id;
    cl_context context;
    cl_command_queue queue;
    bst_device_info info;
    ocl_caps caps;
    char build_options[160];
    int broken_family; /* test hook: the family whose source gets a syntax error, or -1 */
    /* Offer fused (high-level) ops. The runtime keeps such an op whole whenever any device
     * fuses it and places it there even ahead of higher-priority backends, so a device that
     * only emulates a CPU (PoCL) does not offer them unless BASTION_OPENCL_FUSED=1: otherwise
     * default runs would move attention off the native CPU backend, a transfer per layer. */
    bool offer_fused;
    ocl_program_state prog[OCL_FAM_COUNT];
} ocl_device;

typedef struct ocl_buffer {
    uint32_t magic;
    bool read_only; /* an imported weight */
    cl_mem mem;
    uint64_t size;
} ocl_buffer;

/* --- errors --- */

const char *ocl_cl_error_name(cl_int err);
/* The bst_status an OpenCL error stands for (out of resources -> DEVICE_OOM, a device that
 * stopped answering -> DEVICE_LOST, build failures -> COMPILE, ...). */
bst_status ocl_status_of(cl_int err);
/* Reports a failed cl* call through host->set_error and returns its status. Marks the device
 * lost when it is (dev may be NULL). */
bst_status ocl_cl_fail(ocl_device *dev, cl_int err, const char *fmt, ...) BST_PRINTF(3, 4);
/* Test-only fault injection at `site` ("alloc", "execute", "compile"): CL_SUCCESS, or the
 * OpenCL error that stands for the status a test asked for, so the real error path runs. */
cl_int ocl_injected_cl_error(const char *site);
/* BST_OK, or DEVICE_LOST with a message when the device was lost earlier. */
bst_status ocl_device_usable(ocl_device *dev, const char *what);

/* --- programs (ocl_program.c) --- */

/* Builds family `f` on dev unless it was tried already (a failure is remembered with its log).
 * Returns the build status; on failure host->set_error carries the message. */
bst_status ocl_program_get(ocl_device *dev, ocl_family f, cl_program *out_program);
/* Source hash of family f as built for dev (kernel text + build options + host code). */
uint64_t ocl_program_hash(ocl_device *dev, ocl_family f);
void ocl_programs_release(ocl_device *dev);

/* --- buffers (ocl_buffer.c) --- */
/* The device behind a handle the host passed, or NULL after "opencl: <what>: not an opencl
 * device". */
ocl_device *ocl_device_of(void *device, const char *what);
ocl_buffer *ocl_buffer_get(void *handle);
bst_status ocl_buffer_alloc(void *device, uint64_t size, void **out_buffer);
void ocl_buffer_free(void *device, void *buffer);
bst_status ocl_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size);
bst_status ocl_buffer_read(void *device, void *buffer, uint64_t offset, void *dst, uint64_t size);
bst_status ocl_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size);
bst_status ocl_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                              uint64_t size, void **out_buffer, uint64_t *out_bytes,
                              uint32_t *out_layout);

/* --- nodes, runs (ocl_graph.c) --- */

#define OCL_NODE_KERNELS 3

/* One node of a compiled partition: a deep copy of the descriptors plus its kernels. */
typedef struct ocl_node {
    union { /* the descriptors (bst_backend_common.h), fields reachable directly */
        bstc_node base;
        struct {
            BSTC_NODE_FIELDS
        };
    };
    bool symbolic; /* some extent is bound at execute: shape arguments are set then */
    cl_kernel k[OCL_NODE_KERNELS];
    cl_mem aux; /* per-node device table (rope frequencies, set_rows skip list) */
} ocl_node;

/* A tensor resolved for one run: dims padded at the front to 4 (ne[3] innermost), actual
 * extents. For a block type ne[3] counts elements and nb[3] is the block's bytes. */
typedef struct ocl_tensor {
    uint32_t dtype;
    uint32_t rank;
    int64_t ne[4];
    int64_t nb[4];
    uint64_t offset;
    cl_mem mem; /* NULL outside execute */
} ocl_tensor;

typedef enum ocl_mode {
    OCL_MODE_CHECK,   /* query: shapes only */
    OCL_MODE_PRESET,  /* compile: set the arguments that do not depend on buffers */
    OCL_MODE_EXECUTE, /* execute: set what is left and enqueue */
} ocl_mode;

typedef struct ocl_run {
    ocl_device *dev;
    ocl_node *node;
    ocl_mode mode;
    bool set_shapes; /* EXECUTE: shape arguments must be (re)set too (symbolic node) */
    ocl_tensor in[BST_MAX_INPUTS];
    ocl_tensor out;
    cl_mem flag; /* execute: the executable's error-flag buffer */
    char msg[OCL_MSG_MAX];
} ocl_run;

bst_status ocl_fail(ocl_run *r, bst_status status, const char *fmt, ...) BST_PRINTF(3, 4);

bst_status ocl_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count);
bst_status ocl_compile(void *device, const bst_partition_desc *partition, void **out_executable);
void ocl_executable_free(void *device, void *executable);
bst_status ocl_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params);
bst_status ocl_last_execute_ns(void *device, void *executable, uint64_t *out_ns);

/* --- dtypes and shapes (ocl_graph.c; geometry, names, attributes: bst_backend_common.h) --- */
bool ocl_is_float_in(uint32_t dtype); /* f32, f16, bf16 or a block type */
bool ocl_is_plain_out(uint32_t dtype); /* f32, f16, bf16 */
bool ocl_same_shape(const ocl_tensor *a, const ocl_tensor *b);
int64_t ocl_rows(const ocl_tensor *t); /* ne[0] * ne[1] * ne[2] */
int64_t ocl_numel(const ocl_tensor *t);

/* --- op implementations (ocl_ops_*.c) --- */

/* An op: its checks, the kernel variants query offers, how compile creates its kernels and how a
 * run sets arguments and enqueues. */
typedef struct ocl_op_impl {
    const char *name;
    uint8_t min_inputs, max_inputs;
    bool alias; /* view ops: no kernel */
    bst_status (*check)(ocl_run *r);
    /* Variant names for this node, best first; returns the count (>= 1). */
    uint32_t (*variants)(const ocl_run *r, const char **out_names, uint32_t cap);
    /* Families the node's kernels come from (bit mask of 1 << ocl_family). */
    uint32_t (*families)(const ocl_run *r);
    /* compile: creates r->node->k[] (and aux tables) for r->node->variant. */
    bst_status (*prepare)(ocl_run *r);
    /* PRESET or EXECUTE: sets arguments; EXECUTE also enqueues. */
    bst_status (*launch)(ocl_run *r);
} ocl_op_impl;

const ocl_op_impl *ocl_op_of(uint32_t op);

/* Creates kernel `name` from family f's program into *out. */
bst_status ocl_kernel_create(ocl_run *r, ocl_family f, const char *name, cl_kernel *out);

/* Argument writer: walks a kernel's whole argument list in order, setting buffer arguments only
 * at execute and shape/scalar arguments whenever the run's mode asks for them. The first failure
 * is kept. */
typedef struct ocl_args {
    ocl_run *r;
    cl_kernel k;
    cl_uint next;
    cl_int err;
    cl_uint err_index;
} ocl_args;

void ocl_args_begin(ocl_args *a, ocl_run *r, cl_kernel k);
void ocl_arg_mem(ocl_args *a, cl_mem m);
void ocl_arg_i32(ocl_args *a, int32_t v);
void ocl_arg_i64(ocl_args *a, int64_t v);
void ocl_arg_f32(ocl_args *a, float v);
void ocl_arg_long4(ocl_args *a, const int64_t v[4]);
void ocl_arg_local(ocl_args *a, size_t bytes);
/* A tensor as (buffer, byte offset, long4 byte strides, dtype). `nb` overrides the strides
 * (broadcasting passes zeros); NULL uses t->nb. */
void ocl_arg_tensor(ocl_args *a, const ocl_tensor *t, const int64_t *nb, bool with_dtype);
bst_status ocl_args_end(ocl_args *a, const char *kernel_name);

/* EXECUTE only: enqueues k over `dims` dimensions (global sizes rounded up to the local ones). */
bst_status ocl_enqueue(ocl_run *r, cl_kernel k, const char *name, cl_uint dims,
                       const size_t *global, const size_t *local);
/* Global size for `items` work-items in groups of `local`, or 0 (with a message) on overflow. */
size_t ocl_round_up(ocl_run *r, int64_t items, size_t local);

/* Shared shape checks. */
bst_status ocl_need_float_in(ocl_run *r, const ocl_tensor *t, const char *what);
bst_status ocl_need_plain_out(ocl_run *r);
bst_status ocl_need_same_shape(ocl_run *r, const ocl_tensor *a, const char *what);

/* Element-aligned memory: kernels read elements through typed pointers. */
bst_status ocl_check_aligned(ocl_run *r, const ocl_tensor *t, const char *what);

/* Copies x into o unit by unit (elements, or whole blocks of a block type). */
bst_status ocl_launch_copy(ocl_run *r, cl_kernel k, const ocl_tensor *x, const ocl_tensor *o);

uint32_t ocl_one_variant(const ocl_run *r, const char **out_names, uint32_t cap);

#endif /* BASTION_OCL_BACKEND_H */
