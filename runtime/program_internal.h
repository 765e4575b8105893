/*
 * runtime/program_internal.h — the executor's private view of a bst_program, shared by
 * runtime/program.c (create: lowering, placement; destroy; describe), runtime/program_mem.c
 * (device buffers, weight upload, cross-device transfers) and runtime/program_run.c (backend
 * descriptors, compile, run, inputs and outputs). Not installed; nothing outside these files
 * includes it.
 *
 * Ownership: a program owns its clone of the graph, the plans, every device buffer and
 * executable it created, and pseudo-random weight data it generated. It borrows the context
 * (which must outlive it), the devices' handles (the context opens and closes them) and the
 * weight data of the caller's graph.
 */
#ifndef BASTION_RUNTIME_PROGRAM_INTERNAL_H
#define BASTION_RUNTIME_PROGRAM_INTERNAL_H

#include "graph/ir.h"
#include "runtime/runtime.h"

/* A copy of one root value onto a partition's device before the partition runs. */
typedef struct bsti_prog_transfer {
    uint32_t root;
    uint32_t src_device;
} bsti_prog_transfer;

typedef struct bsti_prog_part {
    uint32_t device;
    void *executable;  /* NULL when the partition holds only alias ops: nothing to run */
    void **bindings;   /* buffer handle per binding index */
    uint32_t n_bindings;
    uint32_t n_transfers;
    bsti_prog_transfer *transfers;
} bsti_prog_part;

typedef struct bsti_prog_device {
    bool used;   /* some partition or buffer lives here */
    void *arena; /* scratch arena buffer, NULL when the plan needs none */
    /* program_events.c: the device's timeline event (NULL: its backend has none, execute is
     * synchronous), the last value submitted work signals, and the last one the host saw. */
    void *event;
    uint64_t submitted, reached;
} bsti_prog_device;

struct bst_program {
    bst_context *ctx;
    bst_graph *g; /* lowered, placed clone */
    bsti_partitioning parts;
    bsti_memplan plan;
    bsti_prog_device *devs; /* ctx->n_devices */
    bsti_prog_part *pparts; /* parts.n_parts */
    void **buffers;         /* plan.n_buffers device buffers */
    uint32_t *buffer_layout; /* per buffer: bst_layout (prepare_weight may repack) */
    uint64_t *buffer_bytes;  /* per buffer: bytes it actually costs on its device */
    uint32_t *root;          /* per value: the value owning its memory */
    uint32_t *holder;        /* per root: device holding its newest contents after a run */
    char (*variant_names)[48]; /* per node: chosen kernel variant, "" for non-compute nodes */
    void **generated;          /* per node: pseudo-random data of a WEIGHT without data */
    uint8_t *staging;          /* host bounce buffer for cross-device copies */
    uint64_t staging_size;
    int64_t sym_bound[BST_SYM_COUNT];
    /* runtime/profile.c: NULL unless profiling is set; freed with the executables. */
    struct bsti_prog_profile *profile;
    /* Re-placement (program_replace.c): */
    bst_graph *source;       /* clone of the caller's graph, rebuilt from when a device fails */
    bool *excluded;          /* per device: failed for this program, placement skips it */
    uint32_t failed_device;  /* device of the last backend failure, BSTI_NONE if none */
    bool lost_contents, lost_state; /* last run re-placed, but inputs/states did not come along */
    struct bsti_tune_report *tune; /* kernel selection's choices and why (tune.h); NULL if off */
};

/* Storage for one node's backend descriptor (inputs, output, attributes), binding 0 offset 0. */
typedef struct bsti_desc_storage {
    bst_tensor_desc in[BST_MAX_INPUTS];
    const bst_tensor_desc *in_ptr[BST_MAX_INPUTS];
    bst_tensor_desc out;
    bst_attr attrs[BST_MAX_ATTRS];
    const bst_attr *attr_ptr[BST_MAX_ATTRS];
    bst_node_desc node;
} bsti_desc_storage;

void bsti_prog_fill_desc(const bst_graph *g, uint32_t id, bsti_desc_storage *s);

/* True for VIEW/RESHAPE/PERMUTE/TRANSPOSE: no compute, only a new descriptor of old memory. */
bool bsti_prog_is_alias_op(bst_op op);

/* "cpu/Generic CPU" for messages. */
const char *bsti_prog_device_label(const bst_context *ctx, uint32_t d, char *buf, size_t cap);

/* Turns a backend's failure into a status whose message names the backend, the device and what
 * was being done; a backend that returned an out-of-range status or left no message is covered. */
bst_status bsti_prog_backend_error(bst_program *p, uint32_t d, bst_status st,
                                   const char *fmt, ...) BST_PRINTF(4, 5);
/* (It also records d in p->failed_device, which re-placement reads.) */
/* Clears the thread's message before a backend call, so a failure without a message shows. */
void bsti_prog_clear_error(void);

/* program.c: the whole create pipeline with the devices in `excluded` (per device, may be NULL)
 * skipped by placement. On failure *out_program is NULL and *out_failed_device names the device
 * whose backend call failed (BSTI_NONE when the failure was not a backend's). */
BST_MUST_CHECK bst_status bsti_prog_build(bst_context *ctx, const bst_graph *graph,
                                          const bool *excluded, bst_program **out_program,
                                          uint32_t *out_failed_device);

/* program_mem.c */
BST_MUST_CHECK bst_status bsti_prog_alloc_buffers(bst_program *p);
BST_MUST_CHECK bst_status bsti_prog_plan_transfers(bst_program *p);
void bsti_prog_free_buffers(bst_program *p);
/* Handle of the buffer behind a location on device d. */
void *bsti_prog_loc_buffer(const bst_program *p, const bsti_value_loc *loc);
/* Copies `size` bytes between two devices' buffers through the staging buffer. */
BST_MUST_CHECK bst_status bsti_prog_copy(bst_program *p, uint32_t src_dev,
                                         const bsti_value_loc *src, uint32_t dst_dev,
                                         const bsti_value_loc *dst, uint64_t size);

/* program_run.c */
BST_MUST_CHECK bst_status bsti_prog_compile(bst_program *p);
void bsti_prog_free_executables(bst_program *p);
/* Writes `size` bytes at the start of input v on every device that holds it. */
BST_MUST_CHECK bst_status bsti_prog_write_input(bst_program *p, uint32_t v, const char *name,
                                                const void *data, uint64_t size);
/* program_replace.c: bsti_prog_write_input, re-placing the program when a device failed. */
BST_MUST_CHECK bst_status bsti_prog_set_input_replacing(bst_program *p, uint32_t v,
                                                        const char *name, const void *data,
                                                        uint64_t size);
/* program_events.c: events per device (ABI v2), waits, and running one partition. */
BST_MUST_CHECK bst_status bsti_prog_events_create(bst_program *p);
void bsti_prog_events_destroy(bst_program *p);
/* Waits until device d's submitted partitions are complete (no-op without pending work). */
BST_MUST_CHECK bst_status bsti_prog_wait_device(bst_program *p, uint32_t d);
/* The same for every device; returns the first failure after waiting for all. */
BST_MUST_CHECK bst_status bsti_prog_wait_all(bst_program *p);
/* Runs (or, with events, submits) partition pi. */
BST_MUST_CHECK bst_status bsti_prog_execute(bst_program *p, uint32_t pi,
                                            const bst_run_params *rp);
/* One run, no re-placement (bst_program_run in program_replace.c wraps it). */
BST_MUST_CHECK bst_status bsti_prog_run_once(bst_program *p, const bst_run_params *params);

#endif /* BASTION_RUNTIME_PROGRAM_INTERNAL_H */
