/*
 * runtime/program_memory.c — bst_program_memory: what a program holds on one device, so a
 * benchmark or an embedder can report peak device memory without parsing bst_program_describe.
 * The numbers come from the memory plan (the arena's size is the liveness planner's peak) and,
 * for weights, from what prepare_weight said each one costs on its device.
 */
#include "runtime/program_internal.h"

#include "graph/status.h"

#include <string.h>

/* The v1 struct: every field up to total_bytes. */
#define MEMORY_USAGE_V1_SIZE (offsetof(bst_memory_usage, total_bytes) + sizeof(uint64_t))

bst_status bst_program_memory(const bst_program *program, uint32_t device,
                              bst_memory_usage *out_usage)
{
    if (!program || !out_usage)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_memory: NULL argument");
    if (out_usage->struct_size < MEMORY_USAGE_V1_SIZE)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_memory: struct_size %u is too small "
                         "(at least %zu)", out_usage->struct_size, (size_t)MEMORY_USAGE_V1_SIZE);
    const bst_program *p = program;
    if (device >= p->ctx->n_devices)
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_program_memory: device %u out of range (the "
                         "context has %u)", device, p->ctx->n_devices);
    bst_memory_usage u;
    memset(&u, 0, sizeof u);
    u.arena_bytes = p->devs && p->devs[device].used && p->plan.arena_bytes &&
                            device < p->plan.n_devices
                        ? p->plan.arena_bytes[device]
                        : 0;
    for (uint32_t i = 0; i < p->plan.n_buffers; i++) {
        const bsti_persistent_buffer *b = &p->plan.buffers[i];
        if (b->device != device)
            continue;
        uint64_t bytes = p->buffer_bytes ? p->buffer_bytes[i] : b->size;
        switch (p->g->nodes[b->value].op) {
        case BST_OP_WEIGHT:
        case BST_OP_CONST:
            u.weight_bytes += bytes;
            break;
        case BST_OP_STATE:
            u.state_bytes += bytes;
            break;
        default: /* inputs, and the outputs of compute nodes */
            u.io_bytes += bytes;
            break;
        }
    }
    u.total_bytes = u.arena_bytes + u.weight_bytes + u.state_bytes + u.io_bytes;
    size_t n = out_usage->struct_size < sizeof u ? out_usage->struct_size : sizeof u;
    u.struct_size = out_usage->struct_size;
    memcpy(out_usage, &u, n);
    return BST_OK;
}
