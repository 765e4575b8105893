/*
 * runtime/profile.h — the executor's profiling hooks (runtime/profile.c), called from the run
 * loop of runtime/program_run.c only while bst_program_set_profiling has a level set. Not
 * installed.
 */
#ifndef BASTION_RUNTIME_PROFILE_H
#define BASTION_RUNTIME_PROFILE_H

#include "runtime/program_internal.h"

uint64_t bsti_prog_profile_now_ns(void); /* CLOCK_MONOTONIC */
/* True when the program has a profiling level other than OFF. */
bool bsti_prog_profiling(const bst_program *p);
/* Starts a profiled run with the resolved run parameters. */
void bsti_prog_profile_begin_run(bst_program *p, const bst_run_params *rp);
/* Reports a cross-device copy into partition pi that began at start_ns and has just ended. */
void bsti_prog_profile_copy(bst_program *p, uint32_t pi, uint32_t src_device, uint64_t bytes,
                            uint64_t start_ns);
/* Executes partition pi (whole, or node by node at BST_PROFILE_NODES), reporting its records.
 * On failure the message names the backend, device, partition and node. */
BST_MUST_CHECK bst_status bsti_prog_profile_execute(bst_program *p, uint32_t pi);
/* Frees the profiling state and its one-node executables (called with the executables). */
void bsti_prog_profile_free(bst_program *p);

#endif /* BASTION_RUNTIME_PROFILE_H */
