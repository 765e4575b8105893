/*
 * tools/conformance/backend_ops_check.h — what backend_ops_harness.c (builds, lays out and runs
 * the cases) and backend_ops_check.c (judges each run) share. Internal to the conformance kit:
 * the harness's interface is backend_ops_harness.h.
 */
#ifndef BASTION_TOOLS_CONFORMANCE_BACKEND_OPS_CHECK_H
#define BASTION_TOOLS_CONFORMANCE_BACKEND_OPS_CHECK_H

#include "backend_ops_harness.h"

#include <bastion/backend.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define N_TENSORS (BST_MAX_INPUTS + 1) /* inputs, then the output */

/* Where a case's tensors lie in the device buffers of one run (make_layout). */
typedef struct layout {
    uint32_t n_bindings;
    uint64_t size[N_TENSORS];
    uint32_t binding[N_TENSORS]; /* tensor t: input t, or the output at index n_in */
    uint64_t offset[N_TENSORS];
} layout;

/* --- the checker (backend_ops_check.c) ----------------------------------------------------- */

/* Judges one run from the buffers before (`init`) and after (`after`) execute: false with the
 * reason in `why` on a FAIL, or with the pending harness error set (bo_ok() false) when the
 * harness itself failed. Writes decoded output values to `got`. */
bool check_run(const bo_case *c, const layout *L, uint8_t *const *init, uint8_t *const *after,
               bool is_cpu, double *got, char *why, size_t n);
/* Compares decoded output values `got` with `want` on the elements with expect set, by the
 * case's metric. vs_cpu: `want` is the CPU backend's output, not the oracle's. */
bool compare_values(const bo_case *c, const double *got, const double *want, double tol,
                    bool vs_cpu, char *why, size_t n);
/* NMSE of `got` against `want` over the compared output elements (NAN without both). */
double nmse_of(const bo_case *c, const double *got, const double *want);

/* --- from backend_ops_harness.c ------------------------------------------------------------ */

/* Sets the pending harness error (the first one since it was last cleared). */
void harness_fail(const char *fmt, ...) BST_PRINTF(1, 2);
/* Elements per block (1 for plain dtypes) and bytes per block (per element). */
uint32_t dt_block(bst_dtype t);
uint32_t dt_bytes(bst_dtype t);
/* Row-major index i -> coordinates in `shape`. */
void unravel(int64_t i, uint32_t rank, const int64_t *shape, int64_t *coord);
/* One value of a plain dtype to bytes (returns the value the bytes mean), and back. */
double encode_plain(bst_dtype dt, double v, uint8_t *dst);
double decode_plain(bst_dtype dt, const uint8_t *src);
/* Tensor t of the case: input t, or the output at index n_in. */
const bo_tensor *tensor_at(const bo_case *c, uint32_t t);
/* Units (elements, or blocks for block types) of t, and unit u's byte offset in its region
 * (*out_elem = the unit's first element). */
int64_t unit_count(const bo_tensor *t);
uint64_t unit_offset(const bo_tensor *t, int64_t u, int64_t *out_elem);

#endif /* BASTION_TOOLS_CONFORMANCE_BACKEND_OPS_CHECK_H */
