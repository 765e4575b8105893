/*
 * runtime/tune.h — kernel selection by measurement: the per-program record of what placement
 * chose and why (runtime/tune_place.c, printed by bst_program_explain in runtime/tune_explain.c)
 * and the measurement of one node on one (device, variant) at the plugin ABI
 * (runtime/tune_measure.c). Internal to the executor; not installed.
 */
#ifndef BASTION_RUNTIME_TUNE_H
#define BASTION_RUNTIME_TUNE_H

#include "runtime/program_internal.h"
#include "runtime/tune_db.h"

/* How a node's choice was made. */
typedef enum bsti_tune_how {
    BSTI_TUNE_HOW_NONE = 0,       /* not a tuned node (source, alias, effect, mode off) */
    BSTI_TUNE_HOW_ONLY = 1,       /* a single candidate: nothing to compare */
    BSTI_TUNE_HOW_HIT = 2,        /* every candidate's time came from the database */
    BSTI_TUNE_HOW_MEASURED = 3,   /* at least one candidate was measured now */
    BSTI_TUNE_HOW_FROZEN_MISS = 4 /* frozen mode lacked a row: static priority */
} bsti_tune_how;

typedef struct bsti_tune_cand {
    uint32_t device, variant;
    char name[48];
    uint64_t kernel_ns;   /* 0 when unknown */
    uint64_t transfer_ns; /* charged for inputs living on another device */
    bool hit;             /* kernel_ns came from the database */
} bsti_tune_cand;

typedef struct bsti_tune_node {
    uint8_t how; /* bsti_tune_how */
    uint32_t chosen; /* index into cands */
    uint32_t n_cands;
    bsti_tune_cand *cands;
} bsti_tune_node;

typedef struct bsti_tune_report {
    uint32_t mode;
    uint32_t n_nodes;
    bsti_tune_node *nodes;
    uint32_t hits, measured, frozen_misses;
    uint64_t measure_ns; /* wall time spent measuring */
} bsti_tune_report;

void bsti_tune_report_free(bsti_tune_report *r);

/* Places compute node `id` by the context's tune mode. Sets *out_placed when it chose a device
 * and variant (node->device, node->variant, p->variant_names[id]); leaves it false when the
 * caller's static priority rule should decide (mode off, effect ops, frozen misses). */
BST_MUST_CHECK bst_status bsti_tune_place_node(bst_program *p, uint32_t id, bool *out_placed);

/* Median wall-clock ns of one execute of node `id` compiled alone with `variant` on device d,
 * on pseudo-random inputs at the program's bound shapes; a weight input rotates through copies
 * that together exceed the last-level cache. When the warm-up call alone takes longer than
 * `cutoff_ns` (0: no cutoff) the candidate has lost already: its warm-up time is returned as
 * the one sample, which saves the seconds a slow reference kernel would take at prompt shapes. */
BST_MUST_CHECK bst_status bsti_tune_measure_node(bst_program *p, uint32_t id, uint32_t d,
                                                 uint32_t variant, uint64_t cutoff_ns,
                                                 uint64_t *out_ns, uint32_t *out_samples);
/* Wall-clock ns of copying `bytes` from device src to device dst through host memory (the way
 * the executor copies), measured on a buffer of `bytes`. */
BST_MUST_CHECK bst_status bsti_tune_measure_copy(bst_program *p, uint32_t src, uint32_t dst,
                                                 uint64_t bytes, uint64_t *out_ns);

/* Bytes a tensor descriptor's strides can reach (at least its contiguous size). */
uint64_t bsti_tune_desc_span(const bsti_type *t);

/* A hash of the host's ISA features (the /proc/cpuinfo flags line): part of every key. */
uint64_t bsti_tune_isa_mask(void);

#endif /* BASTION_RUNTIME_TUNE_H */
