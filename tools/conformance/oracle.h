/*
 * tools/conformance/oracle.h — an independent double-precision model of the primitive ops,
 * written from the op semantics in include/bastion/backend.h (not from any backend's kernels).
 * The op conformance harness compares every backend against it.
 *
 * Every function works on logical values: contiguous, row-major arrays of doubles in the op's
 * shape (outermost dim first), already converted from the tensor's storage dtype. The caller
 * (backend_ops_harness.c) does the layout: strides, views, symbolic extents, dtypes.
 * Shapes are given as (rank, dims) pairs; nothing here allocates except where noted.
 *
 * The f16/bf16 helpers are written from IEEE 754 directly so that the rounding a backend applies
 * is checked against something other than graph/quant.c.
 */
#ifndef BASTION_TESTS_ORACLE_H
#define BASTION_TESTS_ORACLE_H

#include <stdbool.h>
#include <stdint.h>

/* Round a double to the nearest binary16 / bfloat16 value (ties to even), with overflow to
 * infinity, subnormals and NaN handled; return the bit pattern. */
uint16_t oracle_round_f16(double x);
uint16_t oracle_round_bf16(double x);
/* Value of a binary16 / bfloat16 bit pattern. */
double oracle_f16_value(uint16_t bits);
double oracle_bf16_value(uint16_t bits);
/* Value after rounding to f32 / f16 / bf16. */
double oracle_as_f32(double x);

/* Product of dims[0..rank). */
int64_t oracle_numel(uint32_t rank, const int64_t *dims);

/* GET_ROWS: out[n, :] = table[ids[n], :] for n < n_ids. */
void oracle_get_rows(const double *table, int64_t n_rows, int64_t n_cols, const int32_t *ids,
                     int64_t n_ids, double *out);

/* ADD / MUL with b broadcast to a's shape (b's dims aligned at the innermost; each equal to a's
 * or 1). */
void oracle_add(const double *a, uint32_t a_rank, const int64_t *a_dims, const double *b,
                uint32_t b_rank, const int64_t *b_dims, double *out);
void oracle_mul(const double *a, uint32_t a_rank, const int64_t *a_dims, const double *b,
                uint32_t b_rank, const int64_t *b_dims, double *out);

void oracle_scale(const double *x, int64_t n, double scale, double *out);

/* MATMUL over the last two dims: a is [ba, m, k], b is [bb, n, k] with ba a multiple of bb;
 * batch i of a uses batch i / (ba / bb) of b. out is [ba, m, n]. */
void oracle_matmul(const double *a, int64_t ba, int64_t m, int64_t k, const double *b,
                   int64_t bb, int64_t n, double *out);

/* Row normalizations over the innermost dim (rows x cols). */
void oracle_rms_norm(const double *x, int64_t rows, int64_t cols, double eps, double *out);
void oracle_layer_norm(const double *x, int64_t rows, int64_t cols, double eps, double *out);

/* ROPE on x[t, h, d]; mode 0 rotates adjacent pairs, mode 2 (neox) rotates (i, i + dims/2). */
void oracle_rope(const double *x, int64_t t, int64_t h, int64_t d, const int32_t *pos,
                 int mode, double theta_base, int64_t dims, double *out);

/* SOFTMAX over the innermost dim of x (x_rank, x_dims) of x*scale + mask, the mask (may be
 * NULL) broadcast like ADD's b. A row whose positions are all -inf gives zeros. */
void oracle_softmax(const double *x, uint32_t x_rank, const int64_t *x_dims, const double *mask,
                    uint32_t m_rank, const int64_t *m_dims, double scale, double *out);

void oracle_silu(const double *x, int64_t n, double *out);
void oracle_gelu(const double *x, int64_t n, double *out); /* tanh approximation */

/* CONCAT of a and b (same rank, equal dims except `axis`). */
void oracle_concat(const double *a, const int64_t *a_dims, const double *b,
                   const int64_t *b_dims, uint32_t rank, uint32_t axis, double *out);

/* ATTENTION (high-level op): q[t, hq, d], k and v [s, hkv, d], out[t, hq, d]. Query head h reads
 * kv head h / (hq / hkv). Query i sits at position s - t + i; with `causal` it sees keys j <= that
 * position, and window > 0 also hides keys j <= position - window. `mask` (may be NULL) is
 * [m_rows, m_cols], each 1 (broadcast) or t / s, added to the scaled scores. A query whose keys
 * are all removed gives zeros. `scratch` holds max(s, 1) doubles (the caller allocates: the
 * oracle never does, so it has no failure of its own). */
void oracle_attention(const double *q, int64_t t, int64_t hq, int64_t d, const double *k,
                      const double *v, int64_t s, int64_t hkv, const double *mask, int64_t m_rows,
                      int64_t m_cols, double scale, bool causal, int64_t window, double *scratch,
                      double *out);

/* ARGMAX over rows of n: first index of the maximum. */
void oracle_argmax(const double *x, int64_t rows, int64_t n, int32_t *out);

#endif /* BASTION_TESTS_ORACLE_H */
