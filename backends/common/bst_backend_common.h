/*
 * bst_backend_common — the ABI plumbing every in-tree plugin needs, written once.
 *
 * Each in-tree backend (cpu, opencl, vulkan, ...) must do the same things at the ABI boundary:
 * negotiate the version in bst_backend_entry and fill only the part of the host's table that the
 * host's struct_size covers, write strided device infos and kernel variants, deep-copy the
 * host's node, tensor and attribute descriptors (they live only during a call) while refusing
 * hostile ones (small struct_size, NULL arrays, too many inputs or attributes, unknown dtypes,
 * ranks, symbols, broken block layouts), look attributes up, and check partitions and run
 * params. This module does those checks the same way for all of them.
 *
 * It is compiled into each plugin module (an OBJECT library with hidden visibility, see
 * bastion_add_backend in the top-level CMakeLists.txt), so its bstc_ names never leave a plugin
 * and each plugin has its own copy. It is NOT part of what a vendor gets: an out-of-tree plugin
 * (examples/vendor-backend) builds against include/bastion/backend.h alone.
 *
 * Errors: functions that run at an API entry report through the plugin's host->set_error with
 * the plugin's name as prefix ("<name>: <call>: what failed"); functions that check pieces of a
 * descriptor write the reason (without prefix) into a caller-supplied buffer, so the plugin can
 * add which node and which call it was about. No function here aborts, allocates or keeps a
 * pointer it was given. All are thread-safe (no state besides what is passed in).
 */
#ifndef BASTION_BACKEND_COMMON_H
#define BASTION_BACKEND_COMMON_H

#include <bastion/backend.h>

#if defined(__GNUC__) || defined(__clang__)
#define BSTC_API __attribute__((visibility("hidden")))
#else
#define BSTC_API
#endif

/* Who is talking: the message prefix and the host table (set by bstc_entry_begin). One per
 * plugin, usually a global; read-only after entry. */
typedef struct bstc_plugin {
    const char *name;
    const bst_host_api *host;
} bstc_plugin;

/* host->set_error("<p->name>: <formatted>") and returns st. */
BSTC_API bst_status bstc_fail(const bstc_plugin *p, bst_status st, const char *fmt, ...)
    BST_PRINTF(3, 4);
/* Formats into msg[cap] (always terminated when cap > 0) and returns st. */
BSTC_API bst_status bstc_msg(char *msg, size_t cap, bst_status st, const char *fmt, ...)
    BST_PRINTF(4, 5);

/* The host's test fault at `site` (host->fault; BST_OK outside tests and without the service),
 * with "<name>: injected fault at '<site>'" set when it fires. */
BSTC_API bst_status bstc_injected_fault(const bstc_plugin *p, const char *site);

/* device_open's checks for a plugin with exactly one device: out_device non-NULL (then set to
 * NULL), index 0 (else NOT_FOUND), then the "device_open" test fault. */
BSTC_API BST_MUST_CHECK bst_status bstc_open_single_device(const bstc_plugin *p, uint32_t index,
                                                           void **out_device);

/* --- entry --------------------------------------------------------------------------------- */

/* Host services a plugin cannot do without, beyond log, set_error, alloc and free. */
#define BSTC_NEEDS_DEQUANTIZE 1u
#define BSTC_NEEDS_QUANTIZE 2u

/* First half of bst_backend_entry, before the plugin allocates anything: checks the host table
 * (size, required services), the host's ABI against BST_ABI_VERSION_MIN, and that `out` is at
 * least a version-1 table. On success sets p->host and *out_host_size (the size of the host's
 * table, which bstc_entry_publish needs: `out->struct_size` is rewritten there). */
BSTC_API BST_MUST_CHECK bst_status bstc_entry_begin(bstc_plugin *p, const bst_host_api *host,
                                                    uint32_t host_abi, bst_backend_api *out,
                                                    uint32_t needs, uint32_t *out_host_size);

/* Second half: copies the plugin's full table `ours` into `out`, writing only the bytes the
 * host's table has (host_size), the negotiated version min(host_abi, BST_ABI_VERSION) and the
 * struct_size min(host_size, sizeof ours). Version-2 fields (the four events) are written only
 * when the negotiated version is >= 2 and the host's table holds all four (NULL otherwise, where
 * the host's table has room). */
BSTC_API void bstc_entry_publish(bst_backend_api *out, uint32_t host_size, uint32_t host_abi,
                                 const bst_backend_api *ours);

/* host->alloc(size, 64), zeroed; NULL after "<name>: <what>: out of memory" (the caller returns
 * BST_ERR_OUT_OF_MEMORY). Needs p->host (after bstc_entry_begin). */
BSTC_API void *bstc_alloc_zero(const bstc_plugin *p, size_t size, const char *what);

/* --- enumerate and query outputs ----------------------------------------------------------- */

/* The output side of enumerate: checks out_count and out_infos (NULL outputs are
 * INVALID_ARG), sets *out_count = n, then writes up to `capacity` of the n infos (`src`, each
 * `src_stride` bytes after the previous one) into the host's slots `stride` apart. A slot (or
 * stride) smaller than a version-1 bst_device_info is BST_ERR_ABI; no byte past a slot's
 * struct_size is written, and the slot's struct_size says how much was. */
BSTC_API BST_MUST_CHECK bst_status bstc_enumerate_out(const bstc_plugin *p,
                                                      bst_device_info *out_infos, size_t stride,
                                                      uint32_t capacity, uint32_t *out_count,
                                                      const bst_device_info *src,
                                                      size_t src_stride, uint32_t n);

/* query's argument checks: NULL node or outputs (INVALID_ARG), a stride smaller than
 * bst_kernel_variant (ABI). Sets *out_count = 0 when out_count is not NULL. */
BSTC_API BST_MUST_CHECK bst_status bstc_query_args(const bstc_plugin *p,
                                                   const bst_node_desc *node,
                                                   const bst_kernel_variant *out_variants,
                                                   size_t stride, uint32_t capacity,
                                                   uint32_t *out_count);

/* Writes variant `index` (name truncated to fit, hash) into the host's array; the caller has
 * checked the stride with bstc_query_args and index < capacity. */
BSTC_API void bstc_put_variant(bst_kernel_variant *out_variants, size_t stride, uint32_t index,
                               const char *name, uint64_t source_hash);

/* --- descriptors --------------------------------------------------------------------------- */

/* A deep copy of a host node: every field the plugins read, all version 1. A plugin that keeps
 * more per node puts this first in its own node, either as a member or (to keep direct field
 * access) as `union { bstc_node base; struct { BSTC_NODE_FIELDS }; };`. */
#define BSTC_NODE_FIELDS                                                                      \
    bst_op op;                                                                               \
    uint32_t n_inputs;                                                                       \
    uint32_t n_attrs;                                                                        \
    uint32_t variant; /* compile: index into the variants query offered */                  \
    bst_tensor_desc in[BST_MAX_INPUTS];                                                      \
    bst_tensor_desc out;                                                                     \
    bst_attr attrs[BST_MAX_ATTRS];

typedef struct bstc_node {
    BSTC_NODE_FIELDS
} bstc_node;

/* How many inputs an op takes in this plugin, and its name for messages. */
typedef struct bstc_op_arity {
    const char *name;
    uint32_t min_inputs, max_inputs;
} bstc_op_arity;

/* The plugin's op table: false for an op it does not run (ids it does not know included). */
typedef bool (*bstc_arity_fn)(uint32_t op, bstc_op_arity *out);

/* Optional: whether an input may have `layout` (a plugin's own repacked weights, tags
 * >= BST_LAYOUT_BACKEND); NULL accepts BST_LAYOUT_NATIVE only. Outputs are always native. */
typedef bool (*bstc_layout_fn)(uint32_t dtype, uint32_t layout);

/* Largest extent and stride accepted in a descriptor: far above any real tensor, low enough
 * that products of a few of them cannot overflow int64. */
#define BSTC_MAX_EXTENT (INT64_C(1) << 40)
#define BSTC_MAX_STRIDE (INT64_C(1) << 48)

/* Copies one tensor descriptor and checks it: struct_size (ABI), known dtype and a layout that
 * is native or accepted by layout_ok (UNSUPPORTED), rank <= BST_MAX_DIMS, extents in
 * 0..BSTC_MAX_EXTENT, strides within +-BSTC_MAX_STRIDE, known symbols, whole contiguous blocks
 * for block types (SHAPE). `what` names the tensor in the message ("input 1"). */
BSTC_API BST_MUST_CHECK bst_status bstc_copy_tensor(const bst_tensor_desc *src,
                                                    bst_tensor_desc *dst, bstc_layout_fn layout_ok,
                                                    const char *what, char *msg, size_t cap);

/* Copies a node and everything it points to into dst (zeroed first): struct_size (ABI), an op
 * this plugin runs (UNSUPPORTED otherwise), the input count within its arity and at most
 * BST_MAX_ATTRS attributes (INVALID_ARG), non-NULL arrays, each tensor as bstc_copy_tensor, each
 * attribute non-NULL and full-size (ABI), with a known key (UNSUPPORTED: an unknown attribute
 * could change the op's meaning) and a valid kind and count (INVALID_ARG). */
BSTC_API BST_MUST_CHECK bst_status bstc_copy_node(const bst_node_desc *src, bstc_arity_fn arity,
                                                  bstc_layout_fn layout_ok, bstc_node *dst,
                                                  char *msg, size_t cap);

/* True when some tensor of n has a symbolic dim (its extent is bound at execute). */
BSTC_API bool bstc_node_symbolic(const bstc_node *n);

/* Every tensor of n uses a binding below n_bindings (INVALID_ARG otherwise). */
BSTC_API BST_MUST_CHECK bst_status bstc_check_bindings(const bstc_node *n, uint32_t n_bindings,
                                                       char *msg, size_t cap);

/* Attribute `key` of n, or NULL. */
BSTC_API const bst_attr *bstc_attr(const bstc_node *n, bst_attr_key key);
/* Its value as a double (ints converted), or fallback when absent. */
BSTC_API double bstc_attr_float(const bstc_node *n, bst_attr_key key, double fallback);
/* Its value as an integer, or fallback when absent or a float. */
BSTC_API int64_t bstc_attr_int(const bstc_node *n, bst_attr_key key, int64_t fallback);

/* compile's partition checks (partition not NULL): struct_size (ABI), NULL node array
 * (INVALID_ARG); messages "<name>: compile: ...". */
BSTC_API BST_MUST_CHECK bst_status bstc_check_partition(const bstc_plugin *p,
                                                        const bst_partition_desc *partition);

/* execute's run params: copies *params into *out after checking its struct_size (ABI,
 * "<name>: execute: ..."); NULL params give n_tokens = n_kv = -1 (refused later only if a
 * symbolic dim needs a value) and pos 0. */
BSTC_API BST_MUST_CHECK bst_status bstc_run_params(const bstc_plugin *p,
                                                   const bst_run_params *params,
                                                   bst_run_params *out);
/* execute's argument checks shared by the plugins: `executable_ok` (the plugin's own test of the
 * handle), a buffer array when n_buffers > 0, then bstc_run_params into *out_run. */
BSTC_API BST_MUST_CHECK bst_status bstc_execute_args(const bstc_plugin *p, bool executable_ok,
                                                     void *const *buffers, uint32_t n_buffers,
                                                     const bst_run_params *params,
                                                     bst_run_params *out_run);

/* --- dtypes, shapes, hashing --------------------------------------------------------------- */

/* Elements per block (1 for plain types) and bytes per block; false for an unknown dtype. */
BSTC_API bool bstc_dtype_geometry(uint32_t dtype, uint32_t *out_block_size,
                                  uint32_t *out_block_bytes);
BSTC_API const char *bstc_dtype_name(uint32_t dtype); /* "invalid" when unknown */
BSTC_API bool bstc_dtype_is_block(uint32_t dtype);
/* The natural alignment of what a kernel loads: the element, or 2 for a block's f16 fields; 0
 * for an unknown dtype. */
BSTC_API uint32_t bstc_dtype_align(uint32_t dtype);

/* A checked descriptor's dims padded at the front to four (ne[3] innermost; missing dims have
 * extent 1 and stride 0). With params, symbolic dims take their bound values (INVALID_ARG when a
 * value is outside 0..its bound); without, they keep their bound. The innermost extent must be
 * whole blocks (SHAPE). */
BSTC_API BST_MUST_CHECK bst_status bstc_pad_dims(const bst_tensor_desc *d,
                                                 const bst_run_params *params, int64_t ne[4],
                                                 int64_t nb[4], const char *what, char *msg,
                                                 size_t cap);

/* Byte range [lo, hi) that a tensor of `dtype` with padded dims ne/nb touches, relative to its
 * first element (lo < 0 with negative strides); false on overflow or an unknown dtype. Only
 * meaningful for a tensor with at least one element. */
BSTC_API bool bstc_byte_span(uint32_t dtype, const int64_t ne[4], const int64_t nb[4],
                             int64_t *out_lo, int64_t *out_hi);

/* True when a tensor at byte `offset` of a `size`-byte buffer, with padded dims ne/nb, lies
 * wholly inside it (an empty tensor only needs offset <= size). */
BSTC_API bool bstc_fits_buffer(uint32_t dtype, const int64_t ne[4], const int64_t nb[4],
                               uint64_t offset, uint64_t size);

/* The whole byte range of tensor `d` (padded dims ne/nb from bstc_pad_dims) lies inside a
 * buffer of `buffer_size` bytes: INVALID_ARG naming `what`, the offset and the binding when its
 * offset is past the end or its shape and strides reach outside (or overflow). */
BSTC_API BST_MUST_CHECK bst_status bstc_check_in_buffer(const bst_tensor_desc *d,
                                                        const int64_t ne[4], const int64_t nb[4],
                                                        uint64_t buffer_size, const char *what,
                                                        char *msg, size_t cap);

/* CLOCK_MONOTONIC in nanoseconds, for last_execute_ns's wall-clock fallback. */
BSTC_API uint64_t bstc_now_ns(void);

/* FNV-1a, for source hashes and fingerprints. */
#define BSTC_FNV_SEED UINT64_C(0xcbf29ce484222325)
BSTC_API uint64_t bstc_fnv1a(uint64_t h, const void *data, size_t n);

#endif /* BASTION_BACKEND_COMMON_H */
