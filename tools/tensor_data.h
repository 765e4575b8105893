/*
 * tools/tensor_data.h — host-side handling of tensor contents for run-graph: seeded random
 * inputs, the region of a tensor that is valid when symbolic dims are bound below their bound,
 * and the checksum / value listings printed for outputs. Tensors here are contiguous at their
 * bound shape, as bst_program_set_input and bst_program_get_output exchange them.
 */
#ifndef BASTION_TOOLS_TENSOR_DATA_H
#define BASTION_TOOLS_TENSOR_DATA_H

#include <bastion/bastion.h>
#include <stdio.h>

/* Bytes of `desc` at its bound shape (contiguous); false on overflow or a bad shape. */
bool td_bound_bytes(const bst_tensor_desc *desc, uint64_t *out_bytes);

/* Fills `size` bytes of `dst` (a tensor of `desc`) with values from a stream keyed by `seed`
 * and `name`, so one input's data does not depend on the others: f32/f16/bf16 uniform in
 * [-1, 1), i32 uniform in [0, 8), i8 uniform in [-128, 127]. Returns false for dtypes without a
 * random generator (block-quantized). */
bool td_fill_random(const bst_tensor_desc *desc, uint64_t seed, const char *name, void *dst,
                    uint64_t size);

/* The extent of each dim once symbolic dims take the run's values (`n_tokens`, `n_kv`). */
void td_extent(const bst_tensor_desc *desc, int64_t n_tokens, int64_t n_kv, int64_t *out_extent);

/* One line: "output NAME TYPE n=COUNT sum=S sumsq=Q first=[v0, v1, v2, v3]" over the valid
 * region (`extent`). Integer types print exact sums; block-quantized types print their byte count
 * and an FNV-1a hash of the valid rows. */
void td_print_checksum(FILE *out, const char *name, const bst_tensor_desc *desc,
                       const int64_t *extent, const void *data);

/* "output NAME TYPE" then one line per innermost row of the valid region, "[i,j]: v v ...",
 * stopping after `limit` values. */
void td_print_values(FILE *out, const char *name, const bst_tensor_desc *desc,
                     const int64_t *extent, const void *data, uint64_t limit);

#endif /* BASTION_TOOLS_TENSOR_DATA_H */
