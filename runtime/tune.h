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

/* The whole-graph plans the check compares (runtime/tune_plan.c). Per-op times do not add up
 * exactly (caches shared between neighbours, launch overlap, transfers the per-node model
 * prices only roughly), so each distinct plan is run end to end before one is kept. */
typedef enum bsti_plan_kind {
    BSTI_PLAN_STATIC = 0, /* static priority: first accepting device, variant 0 */
    BSTI_PLAN_PROMPT = 1, /* per-node optimum measured at the bound shapes (n_tokens = bound) */
    BSTI_PLAN_DECODE = 2, /* per-node optimum measured with n_tokens = 1 (a decode step) */
    BSTI_PLAN_BLEND = 3,  /* per-node optimum of decode_ns + prompt_ns / bound: both shapes */
    BSTI_PLAN_LOWERED = 4, /* every high-level op lowered to primitives, then as BLEND: prices
                            * "fused" against "lowered parts plus transfers" (DESIGN.md, IR) */
    BSTI_PLAN_COUNT = 5
} bsti_plan_kind;

const char *bsti_plan_kind_name(uint32_t kind);

/* What the whole-graph check decided for a program, and on what evidence. */
typedef struct bsti_plan_check {
    uint8_t source;  /* 0 none (off, re-placement), 1 measured now, 2 database, 3 unchecked */
    uint32_t chosen; /* bsti_plan_kind */
    /* Per kind: 0 when not a candidate; same_as[k] != k when k placed every node as that kind
     * did (it was then not measured twice). */
    bool candidate[BSTI_PLAN_COUNT];
    uint32_t same_as[BSTI_PLAN_COUNT];
    uint64_t decode_ns[BSTI_PLAN_COUNT]; /* one decode step: n_tokens 1 at n_kv decode_n_kv */
    uint64_t prompt_ns[BSTI_PLAN_COUNT]; /* one prompt chunk of prompt_tokens at pos 0 */
    uint32_t prompt_tokens, decode_n_kv;
    uint64_t check_ns; /* wall time building and measuring the alternatives */
    /* Per-node tuning done for all candidate plans together, the discarded ones included
     * (the report's own hits/measured/measure_ns describe the kept program only). */
    uint32_t all_hits, all_measured;
    uint64_t all_measure_ns;
    uint64_t tuned_digest; /* placement of the tuned-prompt plan the check was made on */
    /* A session's two programs (tune_plan.c, bsti_tune_build_split): the plan best at decode
     * steps and the one best at prompt chunks, when running both beats `chosen` by more than
     * SPLIT_GAIN; BSTI_PLAN_COUNT for both when there is no split. `role` says which of the two
     * this program is (0 single, 1 decode, 2 prompt). */
    uint32_t split_decode, split_prompt;
    uint8_t role;
} bsti_plan_check;

typedef struct bsti_tune_report {
    uint32_t mode;
    uint32_t n_nodes;
    bsti_tune_node *nodes;
    uint32_t hits, measured, frozen_misses;
    uint64_t measure_ns; /* wall time spent measuring */
    /* Memory placement counts (tune_place.c): the device each weight lives on (per node id,
     * BSTI_NONE when not placed yet) and the bytes of weights placed per device. */
    uint32_t *weight_home;
    uint64_t *weight_bytes;
    uint32_t second_copies; /* weights that had to be kept on two devices (logged) */
    bsti_plan_check plan;
} bsti_tune_report;

void bsti_tune_report_free(bsti_tune_report *r);

/* The plan kind bst_program_create builds on this thread (tune_plan.c sets it around each
 * build; BSTI_PLAN_PROMPT otherwise). STATIC makes bsti_tune_place_node leave every node to
 * the static rule; DECODE measures and keys symbolic n_tokens dims at 1. */
void bsti_tune_set_plan_kind(uint32_t kind);
uint32_t bsti_tune_plan_kind(void);

/* The context's tuning database, opened on first use (in memory when the file cannot be used);
 * NULL only when not even that works. */
struct bsti_tune_db *bsti_tune_context_db(bst_context *ctx);

/* bsti_prog_build with the whole-graph check (tune_plan.c): in cached/full mode it builds the
 * distinct candidate plans, runs each end to end at a decode step and a prompt chunk, keeps the
 * fastest and records it (and both measurements) in the database; cached and frozen reuse that
 * row. Tune mode off, or a re-placement after a device failure (`excluded` non-empty), builds
 * once as bsti_prog_build does: a running session is never measured. */
BST_MUST_CHECK bst_status bsti_tune_build(bst_context *ctx, const bst_graph *graph,
                                          const bool *excluded, bst_program **out_program,
                                          uint32_t *out_failed_device);

/* For a session (runtime/model/session.c): bsti_tune_build, but when the check finds that a
 * decode-step plan and a prompt-chunk plan differ and running each for its shape beats the best
 * single plan clearly, both are built: *out_program is the decode plan and *out_prompt the
 * prompt plan, which the session runs for chunks of more than one token, copying KV cache rows
 * between them (bsti_tune_sync_states). Otherwise *out_prompt is NULL. Tune mode off gives one
 * program, as bst_program_create does. */
BST_MUST_CHECK bst_status bsti_tune_build_split(bst_context *ctx, const bst_graph *graph,
                                                bst_program **out_program,
                                                bst_program **out_prompt);

/* Copies rows [first, first + count) of every state of `src` into the state of the same name,
 * type and shape in `dst` (rows = the outermost dim: a KV cache's positions). For a session
 * whose decode and prompt programs share one conversation. */
BST_MUST_CHECK bst_status bsti_tune_sync_states(bst_program *dst, bst_program *src,
                                                uint64_t first, uint64_t count);

/* Devices that emulate a GPU API on the host CPU (PoCL's CPU device, Mesa's lavapipe: CPU-kind
 * devices of the opencl and vulkan backends). Tuned placement leaves them out of its candidates
 * whenever another device accepts the node, unless BASTION_TUNE_EMULATED=1: measuring them took
 * most of a full tune on a CPU-only machine and they won no node (the native CPU backends run
 * the same cores). tune=off and the static plan still use them by priority. */
bool bsti_tune_device_emulated(const bst_context *ctx, uint32_t d);
bool bsti_tune_include_emulated(void);

/* What prepare_weight reported a weight costs on device d (out_bytes) against its native bytes,
 * remembered per (device fingerprint, plugin, dtype) on this thread: placement then counts a
 * weight's memory at the repacked size (oneDNN's s8 requantization, a plugin that pads rows)
 * instead of the dtype size. Fed by every prepare_weight the runtime sees: measurement's weight
 * copies (tune_measure.c) and the weights of each program built (bsti_tune_note_program). */
void bsti_tune_note_weight_cost(const bst_context *ctx, uint32_t d, uint32_t dtype,
                                uint64_t native_bytes, uint64_t out_bytes);
void bsti_tune_note_program(const bst_program *p);
/* native_bytes scaled by the largest ratio noted for (d, dtype); native_bytes when none. */
uint64_t bsti_tune_weight_bytes(const bst_context *ctx, uint32_t d, uint32_t dtype,
                                uint64_t native_bytes);

/* Places compute node `id` by the context's tune mode. Sets *out_placed when it chose a device
 * and variant (node->device, node->variant, p->variant_names[id]); leaves it false when the
 * caller's static priority rule should decide (mode off, effect ops, frozen misses). */
BST_MUST_CHECK bst_status bsti_tune_place_node(bst_program *p, uint32_t id, bool *out_placed);

/* Median wall-clock ns of one execute of node `id` compiled alone with `variant` on device d,
 * on pseudo-random inputs at the program's bound shapes; a weight input rotates through copies
 * that together exceed the last-level cache. When the warm-up call takes longer than
 * `cutoff_ns` (0: no cutoff) and, if it was short, one more call does too, the candidate has
 * lost already: that time is returned as the one sample, which saves the seconds a slow
 * reference kernel would take at prompt shapes. */
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
