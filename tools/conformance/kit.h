/*
 * tools/conformance/kit.h — the worker side of `bastion conformance` (tools/cmd_conformance.c).
 *
 * The command runs a plugin it does not trust, so everything that calls into the plugin happens
 * in a worker: the `bastion` binary re-executed as `bastion conformance --worker ops|abi ...`.
 * The parent sends requests on the worker's stdin; the worker writes records to a pipe on fd 3
 * (one line each, tab-separated fields; tabs and newlines inside a field are written as spaces)
 * and the parent turns them into the report. A crash, an LLVM fatal error or a hang ends only
 * the worker: the parent records it against the case that was running and starts a new worker,
 * asking it for the next case.
 *
 * Requests (parent -> ops worker), one per case, each after the previous case's DONE:
 *   RUN n     run the first case numbered >= n that the op filter selects (END if none is left)
 *   STOP      (or end of file) run nothing more: the worker answers END
 *
 * Records (worker -> parent):
 *   PLUGIN  name path version abi_version state detail      what the loader made of the plugin
 *   DEVICE  label device-name                               a device under test
 *   FATAL   message                                         the worker cannot start
 *   START   case_no op dtype what                           a case is about to run
 *   RESULT  case_no device variant outcome nmse_ref nmse_oracle exec_ns why
 *   DONE    case_no
 *   CHECK   name pass|fail detail                           one ABI check
 *   END                                                     nothing more to do
 * outcome is pass, fail, unsupported or error (the harness itself failed: out of memory); nmse
 * fields are "nan" when not computed.
 *
 * Test hook: BASTION_CONFORMANCE_FAIL_ALLOC=n makes the ops worker's nth harness allocation fail
 * (bo_fail_alloc), which must come back as an error of the case being built, never a crash.
 */
#ifndef BASTION_TOOLS_CONFORMANCE_KIT_H
#define BASTION_TOOLS_CONFORMANCE_KIT_H

#include <bastion/bastion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define KIT_SCHEMA "bastion.conformance/1"
#define KIT_MAX_FIELDS 10

typedef struct kit_worker_args {
    const char *backend;      /* plugin (backend) name under test */
    const char *plugin_dir;   /* extra plugin directory, or NULL */
    const bool *op_selected;  /* BST_OP_COUNT flags, or NULL for every op */
    FILE *in;                 /* requests (ops worker) */
    FILE *out;                /* the record pipe */
} kit_worker_args;

/* Runs the op cases the parent requests on every device of the plugin (the CPU backend's
 * reference kernels alongside, as the reference). Returns a process exit code. */
int kit_ops_worker(const kit_worker_args *a);
/* Runs the ABI checks on the plugin file. Returns a process exit code. */
int kit_abi_worker(const kit_worker_args *a);

/* Creates a context that loads the plugin under test (and the CPU backend when with_cpu);
 * sends FATAL and returns false when that fails. */
bool kit_open_context(const kit_worker_args *a, bool with_cpu, bst_context **out_ctx);

/* Number of cases the filter selects (built but run on no device). Call in a process that runs
 * no other case: it advances the harness's case numbering. */
uint64_t kit_count_cases(const bool *op_selected);

/* Parses "matmul,rms_norm" into flags; false with a message naming the unknown op. */
bool kit_parse_ops(const char *list, bool *op_selected, char *why, size_t n);

/* Writes one record (tag, then n fields) and flushes. */
void kit_send(FILE *out, const char *tag, int n, ...);
/* Splits a record line in place; returns the field count (tag included), at most max. */
int kit_split(char *line, char **fields, int max);

/* Checks done on the plugin file itself, no code run: every dynamic symbol it defines and
 * exports. Writes a message on failure to read the file. */
bool kit_exported_symbols(const char *path, char ***out_names, uint32_t *out_n, char *why,
                          size_t n);

#endif /* BASTION_TOOLS_CONFORMANCE_KIT_H */
