/*
 * graph/quant.h — reference conversions between f32 and the storage dtypes: IEEE half (f16),
 * bfloat16, and GGUF's block-quantized types (q4_0, q4_1, q5_0, q5_1, q8_0).
 *
 * Block layouts and quantizers are bit-compatible with llama.cpp/ggml (its *_ref quantizers), so
 * GGUF weights dequantize to exactly what llama.cpp computes, and a tensor quantized here is
 * byte-identical to one llama.cpp's reference quantizer writes. These are the one copy of the
 * formulas: plugins reach them through the host service table (host->dequantize/quantize).
 *
 * Thread-safety: all functions are pure and may be called concurrently. Source and destination
 * may be unaligned (blocks are read and written byte-wise). On failure the thread's error
 * message is set (bsti_fail) and nothing is guaranteed about dst.
 */
#ifndef BASTION_GRAPH_QUANT_H
#define BASTION_GRAPH_QUANT_H

#include <bastion/backend.h>

/* Converts `n` elements of one row of `type` at `src` into f32 at `dst`.
 * type: f32, f16, bf16 or a block type; n >= 0 and a multiple of the block size
 * (BST_ERR_INVALID_ARG otherwise). i32/i8: BST_ERR_UNSUPPORTED. */
BST_MUST_CHECK bst_status bsti_dequantize(bst_dtype type, const void *src, float *dst, int64_t n);

/* Converts `n` f32 values into `type` at `dst` (the reverse of bsti_dequantize), with ggml's
 * reference quantizers for block types and round-to-nearest-even for f16/bf16. */
BST_MUST_CHECK bst_status bsti_quantize(bst_dtype type, const float *src, void *dst, int64_t n);

/* IEEE 754 binary16 <-> binary32: round to nearest even, infinities, NaNs (sign and the top
 * payload bits kept, made quiet) and subnormals handled exactly. */
float bsti_f16_to_f32(uint16_t h);
uint16_t bsti_f32_to_f16(float f);

/* bfloat16 <-> binary32: round to nearest even; a NaN stays a (quiet) NaN. */
float bsti_bf16_to_f32(uint16_t h);
uint16_t bsti_f32_to_bf16(float f);

/* Geometry of the dtypes handled here: elements and bytes per block (1 and the element size for
 * f32/f16/bf16). Returns false for any other dtype. */
bool bsti_quant_geometry(bst_dtype type, uint32_t *out_block_size, uint32_t *out_block_bytes);

#endif /* BASTION_GRAPH_QUANT_H */
