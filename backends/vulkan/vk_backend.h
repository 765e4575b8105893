/*
 * backends/vulkan/vk_backend.h — private to the Vulkan backend plugin (libbst-backend-vulkan.so).
 *
 * How it works, in one paragraph: every kernel is a compute shader (shaders/NAME.comp) that reaches
 * tensors through buffer device addresses, so no descriptor ever names a buffer. A compiled
 * partition owns a small parameter buffer and a command buffer recorded once at compile: per
 * node a few indirect dispatches whose push constants hold the static part (the parameter
 * buffer's address, strides, attributes) and whose record in the parameter buffer holds what
 * changes between runs (each tensor's address and run-time extents, the dispatch size). execute
 * rewrites the records only when buffers or n_tokens / n_kv changed, then re-submits the same
 * command buffer and waits on a timeline semaphore. Memory comes from a sub-allocator of a few
 * large VkDeviceMemory blocks; device-local memory that is also host-visible (integrated GPUs,
 * lavapipe) is mapped and written directly, other memory goes through a staging buffer and the
 * transfer queue where the device has one.
 *
 * Requirements a device must meet to be listed: Vulkan 1.2, bufferDeviceAddress,
 * timelineSemaphore, a compute queue. Optional features select shader variants: 16/8-bit storage
 * (S16) and subgroup arithmetic (SG).
 *
 * Threading: the host calls one device from one thread at a time (backend.h), so device state
 * has no locks; the instance-level state is read-only after entry.
 *
 * Nothing here is exported: the module's only symbol is bst_backend_entry. Cross-file helpers
 * use the vkb_ prefix.
 */
#ifndef BASTION_VK_BACKEND_H
#define BASTION_VK_BACKEND_H

#include <bastion/backend.h>

#include "bst_backend_common.h"

#include <vulkan/vulkan.h>

#include <stdatomic.h>

#include "vk_spirv.h"

#define VKB_NAME "vulkan"
#define VKB_VERSION "0.1.0"

/* The host's services, set once by bst_backend_entry; vkb_plugin.host is the same table. */
extern const bst_host_api *vkb_host;
extern bstc_plugin vkb_plugin;

enum {
    VKB_MAGIC_CTX = 0x564b4243u,    /* "CBKV" */
    VKB_MAGIC_DEVICE = 0x564b4244u, /* "DBKV" */
    VKB_MAGIC_BUFFER = 0x564b4242u, /* "BBKV" */
    VKB_MAGIC_EXEC = 0x564b4245u,   /* "EBKV" */
    VKB_MAGIC_EVENT = 0x564b4256u,  /* "VBKV" */
};

/* Shader variant bits (index into vks_table's second dimension). */
enum { VKB_VAR_S16 = 1u, VKB_VAR_SG = 2u };

/* --- instance ------------------------------------------------------------------------------ */

/* What enumerate found about one usable physical device. */
typedef struct vkb_phys {
    VkPhysicalDevice handle;
    bst_device_info info;
    uint32_t api_version;
    uint32_t variants; /* VKB_VAR_* bits the device supports */
    uint32_t subgroup_size;
} vkb_phys;

typedef struct vkb_ctx {
    uint32_t magic;
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger; /* only with BASTION_VULKAN_VALIDATION=1 */
    _Atomic uint32_t validation_errors;
    uint32_t n_phys;
    vkb_phys *phys;
} vkb_ctx;

/* --- memory -------------------------------------------------------------------------------- */

typedef struct vkb_range {
    uint64_t offset, size;
} vkb_range;

/* One VkDeviceMemory with one VkBuffer over all of it; sub-allocated by first fit. */
typedef struct vkb_block {
    VkDeviceMemory memory;
    VkBuffer buffer;
    VkDeviceAddress address;
    uint8_t *map; /* persistent mapping, NULL when not host-visible */
    uint64_t size;
    bool dedicated; /* holds exactly one large allocation; freed with it */
    vkb_range *free;
    uint32_t n_free, cap_free;
} vkb_block;

typedef enum vkb_pool_id {
    VKB_POOL_DEVICE = 0, /* tensors: device-local, mapped only on unified memory */
    VKB_POOL_HOST = 1,   /* staging and parameter uploads: host-visible, coherent */
    VKB_POOL_COUNT
} vkb_pool_id;

typedef struct vkb_pool {
    uint32_t type_index;
    bool mapped; /* blocks are host-visible, coherent and mapped */
    uint64_t block_size;
    vkb_block **blocks;
    uint32_t n_blocks, cap_blocks;
} vkb_pool;

typedef struct vkb_buffer {
    uint32_t magic;
    struct vkb_device *dev;
    vkb_block *block;
    uint64_t offset; /* in the block */
    uint64_t size;   /* as requested */
    uint64_t serial; /* unique per allocation: executables cache addresses by it */
} vkb_buffer;

/* --- pipelines ----------------------------------------------------------------------------- */

#define VKB_SPEC_MAX 10

typedef struct vkb_pipe_key {
    uint32_t shader;             /* VKS_* */
    uint32_t spec[VKB_SPEC_MAX]; /* specialization constants 0..9 (see shaders/common.glsl) */
} vkb_pipe_key;

typedef struct vkb_pipe {
    vkb_pipe_key key;
    VkPipeline pipeline;
} vkb_pipe;

/* Push constants, as shaders/common.glsl declares them (std430). */
typedef struct vkb_push {
    uint32_t params[2]; /* device address of the parameter buffer */
    uint32_t rec;       /* word index of the dispatch's record */
    uint32_t aux;       /* word index of the dispatch's static data */
    uint32_t nb[4][4];  /* byte strides per slot */
    uint32_t u[4];
    float f[4];
} vkb_push;

/* Record layout in the parameter buffer (uint32 words). */
enum {
    VKB_REC_GROUPS = 0, /* x, y, z: VkDispatchIndirectCommand */
    VKB_REC_ITEMS = 3,
    VKB_REC_SLOT0 = 4, /* per slot: base lo, base hi, rem, 0, ne[4] */
    VKB_REC_SLOT_WORDS = 8,
    VKB_REC_SLOTS = 5, /* slot 4 (attention's mask) has no push-constant strides */
    VKB_REC_WORDS = 4 + VKB_REC_SLOTS * 8,
    VKB_PARAM_HEADER_WORDS = 16 /* word 0 status flags, word 1 failing record, rest reserved */
};

/* --- device -------------------------------------------------------------------------------- */

typedef struct vkb_device {
    uint32_t magic;
    vkb_ctx *ctx;
    const vkb_phys *phys;
    VkPhysicalDevice pd;
    VkDevice device;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    uint32_t variant; /* VKB_VAR_* bits used for shaders */
    uint32_t max_groups;
    uint64_t max_tensor_bytes; /* largest byte span one tensor may have (32-bit offsets) */

    uint32_t qf_compute, qf_transfer;
    VkQueue q_compute, q_transfer; /* the same queue when there is no transfer family */
    VkCommandPool cp_compute, cp_transfer;
    VkCommandBuffer cb_transfer; /* one-shot copies and fills */
    VkSemaphore timeline;        /* orders every submission, on both queues */
    uint64_t timeline_value;     /* last value signalled */
    bool timestamps;
    uint64_t timestamp_mask; /* timestampValidBits of the compute family */

    vkb_pool pools[VKB_POOL_COUNT];
    vkb_buffer *staging; /* host pool, grown on demand */
    uint64_t next_serial;

    VkPipelineLayout layout;
    VkPipelineCache cache;
    char cache_path[512]; /* "" when there is no persistent cache */
    bool cache_dirty;
    VkShaderModule modules[VKS_COUNT][4];
    vkb_pipe *pipes;
    uint32_t n_pipes, cap_pipes;

    bool lost; /* VK_ERROR_DEVICE_LOST seen: every later call fails the same way */
    /* Fused ops (attention) are offered: by default on GPUs, on CPU-type devices (lavapipe) only
     * with BASTION_VULKAN_FUSED=1, since the runtime keeps a high-level op whole when any device
     * accepts it, which would take attention away from the native CPU backend. */
    bool offer_fused;
    /* vk_events.c: executables submitted by execute_async whose finish checks are still due. */
    struct vkb_exec **inflight;
    uint32_t n_inflight, cap_inflight;
} vkb_device;

/* --- nodes and tensors --------------------------------------------------------------------- */

/* One node of a partition, deep-copied (the host's pointers live only during the call). */
typedef bstc_node vkb_node;

/* A tensor padded to four dims (outermost first), with its extents for one run. */
typedef struct vkb_tensor {
    uint32_t dtype;
    uint32_t rank;
    int64_t ne[4];
    int64_t nb[4];
} vkb_tensor;

/* Shapes of a node's tensors for one check: extents at their bounds (query, compile) or bound
 * from the run's n_tokens / n_kv (execute). */
typedef struct vkb_shapes {
    const vkb_node *node;
    vkb_tensor in[BST_MAX_INPUTS];
    vkb_tensor out;
    char msg[320]; /* why a check failed */
} vkb_shapes;

/* Which tensor of the node feeds a shader slot. */
enum { VKB_SRC_NONE = 0, VKB_SRC_OUT = 1, VKB_SRC_IN0 = 2 /* + input index */ };

/* How a dispatch counts its work items from the run-time extents. */
typedef enum vkb_items {
    /* counted in invocations: */
    VKB_ITEMS_ELEMS,    /* elements of slot 0 */
    VKB_ITEMS_UNITS,    /* elements or blocks of slot 0 */
    VKB_ITEMS_BLOCKS,   /* blocks of slot 0 */
    VKB_ITEMS_ROPE,     /* pairs and passed-through elements of slot 0 */
    VKB_ITEMS_MM_PATCH, /* output patches of a matmul (patch in mm_tile) */
    /* counted in workgroups: */
    VKB_ITEMS_ROWS0, /* rows of slot 0 */
    VKB_ITEMS_ROWS1, /* rows of slot 1 */
    VKB_ITEMS_ROWS2, /* rows of slot 2 */
    VKB_ITEMS_MM     /* output tiles of a matmul (tile in mm_tile) */
} vkb_items;

typedef struct vkb_dispatch {
    uint32_t node;
    uint32_t pipe; /* index into the device's pipes */
    vkb_items items;
    uint32_t wg;
    uint32_t mm_tile[2]; /* rows of a, rows of b per workgroup or invocation (VKB_ITEMS_MM*) */
    uint8_t src[VKB_REC_SLOTS]; /* VKB_SRC_* per slot */
    bool shift_out;      /* slot 0 is argmax's output: its dims sit one to the right */
    vkb_push push;
    uint32_t rec; /* word index of the record */
} vkb_dispatch;

/* Largest attention head dim: one workgroup holds the query in shared memory and each
 * invocation ceil(D / workgroup size) accumulators. */
#define VKB_ATT_MAX_D 256

/* Planning one node (vk_plan.c): the dispatches it needs and the static data they read. */
#define VKB_MAX_NODE_DISPATCH 2
typedef struct vkb_plan {
    uint32_t n;
    vkb_dispatch d[VKB_MAX_NODE_DISPATCH];
    vkb_pipe_key key[VKB_MAX_NODE_DISPATCH];
    uint32_t aux_words; /* static data words the node needs */
} vkb_plan;

typedef struct vkb_exec {
    uint32_t magic;
    vkb_device *dev;
    uint32_t n_nodes;
    vkb_node *nodes;
    uint32_t n_bindings;
    uint32_t n_dispatch;
    vkb_dispatch *dispatch;
    vkb_buffer *params_host; /* host-visible parameters (what the host writes) */
    vkb_buffer *params_dev;  /* what shaders read; == params_host on unified memory */
    uint32_t params_words;
    VkCommandBuffer cb;
    VkQueryPool queries; /* two timestamps, or VK_NULL_HANDLE */
    /* What the records were last written for: rewritten when any of it changes. */
    bool records_valid;
    int64_t rec_n_tokens, rec_n_kv;
    uint64_t *rec_serials; /* per binding */
    uint64_t last_ns;
    /* vk_events.c: the d->timeline value its execute_async submission signals, 0 when no run is
     * in flight (its finish checks have not been made yet). */
    uint64_t inflight_value;
} vkb_exec;

/* --- vk_exec.c ----------------------------------------------------------------------------- */
bool vkb_exec_valid(const vkb_device *d, const vkb_exec *e);
/* Checks a run's arguments and writes its dispatch records (waiting for e's previous run). */
bst_status vkb_exec_prepare(vkb_device *d, vkb_exec *e, void *const *buffers, uint32_t n_buffers,
                            const bst_run_params *params);
/* After e's submission completed: device time (wall_ns without timestamps) and the shaders'
 * out-of-range flag. */
bst_status vkb_exec_finish(vkb_device *d, vkb_exec *e, uint64_t wall_ns);

/* --- vk_events.c --------------------------------------------------------------------------- */
bst_status vkb_event_create(void *device, void **out_event);
void vkb_event_destroy(void *device, void *event);
bst_status vkb_execute_async(void *device, void *executable, void *const *buffers,
                             uint32_t n_buffers, const bst_run_params *params,
                             const bst_event_point *waits, size_t waits_stride, uint32_t n_waits,
                             const bst_event_point *signal);
bst_status vkb_event_wait(void *device, void *event, uint64_t value, uint64_t timeout_ns);
/* Waits for e's run in flight, if any, and makes its finish checks. */
bst_status vkb_exec_settle(vkb_device *d, vkb_exec *e);
/* Makes the finish checks of every run in flight that has completed; the first failure. */
bst_status vkb_settle_completed(vkb_device *d);
void vkb_events_close(vkb_device *d);

/* --- vk_entry.c ---------------------------------------------------------------------------- */
/* Maps a VkResult to a status with a message naming `what`; marks the device lost on
 * VK_ERROR_DEVICE_LOST (dev may be NULL). VK_SUCCESS gives BST_OK. */
bst_status vkb_result(vkb_device *dev, VkResult r, const char *what);
/* The VkResult a test asked `site` to fail with (host->fault), or VK_SUCCESS. */
VkResult vkb_fault(const char *site);
const char *vkb_result_name(VkResult r);

/* --- vk_device.c --------------------------------------------------------------------------- */
bst_status vkb_device_open(void *ctx, uint32_t index, void **out_device);
void vkb_device_close(void *device);
/* Fails with BST_ERR_DEVICE_LOST (and a message) once the device was lost. */
bst_status vkb_alive(vkb_device *d, const char *what);
/* Extra semaphore points of one submission (ABI events). */
#define VKB_MAX_WAITS 16
typedef struct vkb_sync {
    uint32_t n_wait;
    VkSemaphore wait[VKB_MAX_WAITS];
    uint64_t wait_value[VKB_MAX_WAITS];
    VkSemaphore signal; /* VK_NULL_HANDLE: none */
    uint64_t signal_value;
} vkb_sync;
/* Submits `cb` (may be VK_NULL_HANDLE: only semaphore operations) on the compute or transfer
 * queue after every earlier submission, plus `extra`'s points (may be NULL), and returns; it
 * signals d->timeline at the new d->timeline_value. Fault site `fault_site` may be NULL. */
bst_status vkb_submit(vkb_device *d, bool transfer, VkCommandBuffer cb, const vkb_sync *extra,
                      const char *fault_site, const char *what);
/* Waits for `sem` to reach `value`. UINT64_MAX waits up to the submit timeout, after which the
 * device counts as lost; a finite timeout that passes gives BST_ERR_TIMEOUT. */
bst_status vkb_wait_semaphore(vkb_device *d, VkSemaphore sem, uint64_t value, uint64_t timeout_ns,
                              const char *what);
/* vkb_submit without extra points, then waits for it. */
bst_status vkb_submit_wait(vkb_device *d, bool transfer, VkCommandBuffer cb,
                           const char *fault_site, const char *what);
/* Begins / ends the device's one-shot transfer command buffer. */
bst_status vkb_oneshot_begin(vkb_device *d, VkCommandBuffer *out_cb);
bst_status vkb_oneshot_submit(vkb_device *d, const char *what);

/* --- vk_memory.c --------------------------------------------------------------------------- */
bst_status vkb_memory_init(vkb_device *d);
void vkb_memory_destroy(vkb_device *d);
/* Allocates from a pool; device-pool buffers are zeroed. */
bst_status vkb_alloc(vkb_device *d, vkb_pool_id pool, uint64_t size, vkb_buffer **out);
void vkb_free(vkb_buffer *b);
/* Device address of byte `offset` of b. */
static inline VkDeviceAddress vkb_address(const vkb_buffer *b, uint64_t offset)
{
    return b->block->address + b->offset + offset;
}
static inline uint8_t *vkb_map(const vkb_buffer *b)
{
    return b->block->map ? b->block->map + b->offset : NULL;
}
vkb_buffer *vkb_buffer_get(vkb_device *d, void *handle);

bst_status vkb_buffer_alloc(void *device, uint64_t size, void **out_buffer);
void vkb_buffer_free(void *device, void *buffer);
bst_status vkb_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size);
bst_status vkb_buffer_read(void *device, void *buffer, uint64_t offset, void *dst,
                           uint64_t size);
bst_status vkb_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size);
bst_status vkb_buffer_map(void *device, void *buffer, void **out_ptr);

/* --- vk_pipeline.c ------------------------------------------------------------------------- */
bst_status vkb_pipelines_init(vkb_device *d);
void vkb_pipelines_destroy(vkb_device *d);
/* Index of the pipeline for `key` in d->pipes, created (through the pipeline cache) when new. */
bst_status vkb_pipeline_get(vkb_device *d, const vkb_pipe_key *key, uint32_t *out_index);
/* Hash of the SPIR-V a key would run plus its constants: the kernel variant's source hash. */
uint64_t vkb_pipeline_hash(const vkb_device *d, const vkb_pipe_key *key);

/* --- vk_check.c ---------------------------------------------------------------------------- */
/* The ops this backend runs and their input counts (for bstc_copy_node). */
bool vkb_arity(uint32_t op, bstc_op_arity *out);
/* Fills s from n's descriptors: symbolic dims at their bounds, or (bind) at n_tokens / n_kv,
 * which must lie within the bounds. */
bst_status vkb_shapes_resolve(vkb_shapes *s, const vkb_node *n, bool bind, int64_t n_tokens,
                              int64_t n_kv);
/* Whether this backend runs the node at these shapes, with the op's own rules checked too. */
bst_status vkb_check(const vkb_device *d, vkb_shapes *s);
bool vkb_is_alias_op(uint32_t op);
const char *vkb_op_name(uint32_t op);

/* --- vk_plan.c ----------------------------------------------------------------------------- */
/* The dispatches running node `n` (checked at bound shapes) with matmul variant `variant`. */
bst_status vkb_plan_node(const vkb_device *d, const vkb_shapes *s, uint32_t variant,
                         vkb_plan *out, char *msg, size_t cap);
/* Writes the node's static data (aux_words words) for plan `p`. */
void vkb_plan_aux(const vkb_node *n, const vkb_plan *p, uint32_t *out_words);
/* The kernel variants offered for an op (matmul has three), and their names for a node. */
uint32_t vkb_variant_count(uint32_t op);
const char *vkb_variant_name(const vkb_device *d, const vkb_shapes *s, uint32_t variant);

/* --- vk_exec.c ----------------------------------------------------------------------------- */
bst_status vkb_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count);
bst_status vkb_compile(void *device, const bst_partition_desc *partition, void **out_executable);
void vkb_executable_free(void *device, void *executable);
bst_status vkb_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params);
bst_status vkb_last_execute_ns(void *device, void *executable, uint64_t *out_ns);

#endif /* BASTION_VK_BACKEND_H */
