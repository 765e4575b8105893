/*
 * graph/ir.h — the IR's internal representation, shared by the graph compiler (graph/) and the
 * runtime (runtime/). Not installed.
 *
 * A graph is an array of nodes in topological order; node i produces value i (SSA). Passes that
 * delete or insert nodes rebuild the array and renumber values (bsti_graph_compact). Internal
 * functions shared between files use the `bsti_` prefix and are never exported from
 * libbastion.so.
 */
#ifndef BASTION_GRAPH_IR_H
#define BASTION_GRAPH_IR_H

#include <bastion/bastion.h>

#define BSTI_NONE UINT32_MAX

typedef struct bsti_type {
    bst_dtype dtype;
    uint32_t rank;
    int64_t shape[BST_MAX_DIMS];   /* outermost-first; a symbolic dim holds its bound */
    int64_t strides[BST_MAX_DIMS]; /* bytes; see bst_tensor_desc for block types */
    uint32_t sym[BST_MAX_DIMS];    /* bst_sym */
} bsti_type;

enum {
    BSTI_NODE_OUTPUT = 1u << 0, /* graph output: kept by DCE */
    BSTI_NODE_EFFECT = 1u << 1, /* writes state (SET_ROWS): kept and ordered */
    /* WEIGHT whose data lies in a read-only private file mapping: once the weight is on its
     * device, the runtime may unmap those pages (a later read maps them again). */
    BSTI_NODE_FILE_MAPPED = 1u << 2,
};

typedef struct bsti_node {
    bst_op op;
    uint32_t n_inputs;
    uint32_t inputs[BST_MAX_INPUTS]; /* value ids, all < this node's id */
    uint32_t n_attrs;
    bst_attr attrs[BST_MAX_ATTRS];
    bsti_type type; /* output type */
    /* Memory aliasing: for VIEW/RESHAPE/PERMUTE/TRANSPOSE, the value whose memory this one
     * reuses and the byte offset into it; SET_ROWS aliases its dst state. BSTI_NONE otherwise.
     * Chains are resolved: alias_of never names another alias. */
    uint32_t alias_of;
    uint64_t alias_offset;
    char *name;              /* INPUT/WEIGHT/STATE/output name, owned; NULL otherwise */
    const void *weight_data; /* WEIGHT: borrowed */
    void *const_data;        /* CONST: owned */
    uint64_t data_size;      /* bytes of weight_data or const_data */
    uint32_t flags;          /* BSTI_NODE_* */
    uint32_t device;         /* placement: runtime device index, BSTI_NONE before placement */
    uint32_t variant;        /* chosen kernel variant on that device */
    uint32_t line, col;      /* where the text form defined it (0 if built by API) */
} bsti_node;

struct bst_graph {
    bsti_node *nodes;
    uint32_t n_nodes;
    uint32_t cap_nodes;
};

/* --- graph core (graph/graph.c) --- */

/* Hard limits on what a graph may hold (BST_ERR_OVERFLOW past them). */
#define BSTI_MAX_NODES 1000000u
#define BSTI_MAX_DIM ((int64_t)1 << 40)

/* Appends a node (copied; takes ownership of name and const_data, even on failure) and returns
 * its id. */
BST_MUST_CHECK bst_status bsti_graph_append(bst_graph *g, const bsti_node *node,
                                            uint32_t *out_id);
/* Deep copy (weights stay borrowed). */
BST_MUST_CHECK bst_status bsti_graph_clone(const bst_graph *g, bst_graph **out_graph);
/* Removes nodes with keep[i] == false and renumbers values; remap (may be NULL, n_nodes long)
 * receives old id -> new id or BSTI_NONE. Fails if a kept node uses a removed one. */
BST_MUST_CHECK bst_status bsti_graph_compact(bst_graph *g, const bool *keep, uint32_t *remap);

/* Contiguous strides for a type's shape and dtype (block types: see bst_tensor_desc). */
void bsti_type_set_contiguous(bsti_type *t);
bool bsti_type_is_contiguous(const bsti_type *t);
/* Element count and byte size at the bound shape; BST_ERR_OVERFLOW past 2^62. */
BST_MUST_CHECK bst_status bsti_type_nelements(const bsti_type *t, int64_t *out_n);
BST_MUST_CHECK bst_status bsti_type_nbytes(const bsti_type *t, uint64_t *out_bytes);
void bsti_type_to_desc(const bsti_type *t, bst_tensor_desc *out_desc);
/* "f32[n_tokens:8,576]", plus " strides=[...]" when not contiguous; truncated to `size`. */
void bsti_type_format(const bsti_type *t, char *buf, size_t size);
const char *bsti_sym_name(bst_sym sym); /* "n_tokens", "n_kv"; NULL for NONE/unknown */

/* Attribute lookup: returns NULL when the node has no such attribute. */
const bst_attr *bsti_node_attr(const bsti_node *n, bst_attr_key key);
int64_t bsti_attr_int(const bsti_node *n, bst_attr_key key, int64_t fallback);
double bsti_attr_float(const bsti_node *n, bst_attr_key key, double fallback);

/* --- op table (graph/ops.c) --- */

typedef struct bsti_op_info {
    const char *name;
    uint8_t min_inputs, max_inputs;
    bool is_source;     /* INPUT/WEIGHT/STATE/CONST */
    bool is_alias;      /* output aliases input 0's memory */
    bool is_high_level; /* ATTENTION, FFN_SWIGLU, RMS_NORM_MUL: has a lowering */
    bool has_effect;    /* SET_ROWS */
} bsti_op_info;

const bsti_op_info *bsti_op_get(bst_op op); /* NULL for an unknown id */
bst_op bsti_op_from_name(const char *name);  /* BST_OP_NONE if unknown */
const char *bsti_attr_name(bst_attr_key key);
bst_attr_key bsti_attr_from_name(const char *name);
bst_attr_kind bsti_attr_kind(bst_attr_key key);
bool bsti_op_allows_attr(bst_op op, bst_attr_key key); /* key is one of op's attributes */

/* Checks arity, attributes and the op's shape/type rule for node `id` given its inputs' types,
 * and writes the output type (and alias fields) into the node. Message names op and operand. */
BST_MUST_CHECK bst_status bsti_infer_node(bst_graph *g, uint32_t id);

/* --- passes (graph/pass_*.c), each usable alone --- */
BST_MUST_CHECK bst_status bsti_pass_verify(bst_graph *g);
BST_MUST_CHECK bst_status bsti_pass_infer_shapes(bst_graph *g);
BST_MUST_CHECK bst_status bsti_pass_dce(bst_graph *g);
BST_MUST_CHECK bst_status bsti_pass_cse(bst_graph *g);
BST_MUST_CHECK bst_status bsti_pass_fold(bst_graph *g);
/* Lowers high-level nodes to primitives. `keep(user, g, id)` returning true keeps node id whole
 * (the runtime passes "a backend has a fused kernel for it"); NULL lowers all. */
typedef bool (*bsti_keep_fn)(void *user, const bst_graph *g, uint32_t id);
BST_MUST_CHECK bst_status bsti_pass_lower(bst_graph *g, bsti_keep_fn keep, void *user);

/* --- partitioning and memory planning (graph/partition.c, graph/memplan.c) --- */

/* A partition: a run of consecutive compute nodes placed on one device. Source nodes and pure
 * aliases of sources belong to no partition. */
typedef struct bsti_partition {
    uint32_t device;
    uint32_t n_nodes;
    uint32_t *nodes; /* node ids in execution order */
} bsti_partition;

typedef struct bsti_partitioning {
    uint32_t n_parts;
    bsti_partition *parts;
} bsti_partitioning;

BST_MUST_CHECK bst_status bsti_partition_graph(const bst_graph *g, bsti_partitioning *out);
void bsti_partitioning_free(bsti_partitioning *p);

/* Where a value lives on one device. */
typedef enum bsti_loc_kind {
    BSTI_LOC_ARENA = 0,      /* in the device's scratch arena at `offset` */
    BSTI_LOC_PERSISTENT = 1, /* its own buffer (weights, state, inputs, outputs) */
} bsti_loc_kind;

typedef struct bsti_value_loc {
    uint32_t value;
    uint32_t device;
    bsti_loc_kind kind;
    uint32_t buffer;  /* PERSISTENT: index into the plan's persistent buffers */
    uint64_t offset;  /* bytes from the start of the arena or buffer */
    uint64_t size;    /* bytes at the bound shape */
} bsti_value_loc;

typedef struct bsti_persistent_buffer {
    uint32_t value; /* the source value it holds (WEIGHT/STATE/INPUT) or output value */
    uint32_t device;
    uint64_t size;
} bsti_persistent_buffer;

typedef struct bsti_memplan {
    uint32_t n_devices;
    uint64_t *arena_bytes;  /* per device: size of its arena (peak scratch bytes) */
    uint64_t *persistent_bytes; /* per device */
    uint32_t n_locs;
    bsti_value_loc *locs; /* one per (value, device) that needs memory; aliases resolved */
    uint32_t n_buffers;
    bsti_persistent_buffer *buffers;
} bsti_memplan;

/* Plans memory for `n_devices` devices: every value each partition reads or writes gets a
 * location on that partition's device (values crossing devices get one location on each; the
 * executor copies between them). Scratch values share an arena by liveness; sources, state and
 * outputs get persistent buffers outside the liveness planner. `max_alloc[d]` bounds one
 * allocation on device d (0 = no limit). */
BST_MUST_CHECK bst_status bsti_plan_memory(const bst_graph *g, const bsti_partitioning *parts,
                                           uint32_t n_devices, const uint64_t *max_alloc,
                                           bsti_memplan *out);
void bsti_memplan_free(bsti_memplan *plan);
/* Location of `value` on `device`, or NULL. */
const bsti_value_loc *bsti_memplan_find(const bsti_memplan *plan, uint32_t value,
                                        uint32_t device);

#endif /* BASTION_GRAPH_IR_H */
