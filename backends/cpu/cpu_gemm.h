/*
 * backends/cpu/cpu_gemm.h — packed, cache-blocked f32 GEMM for matmuls against a weight
 * ("gemm_*" kernel variants).
 *
 * out[m, n] = sum_k a[m, k] * w[n, k] for activation rows a (any loadable float dtype, batch dims
 * flattened) and one weight w (f32, f16, bf16, q4_0, q4_1 or q8_0, no batch dims). The classic
 * BLIS/GotoBLAS structure: a is packed once per call into MR-row micro-panels (k-major), w into
 * NR-column micro-panels (k-major, dequantized to f32 on the way: a prompt's GEMM then costs the
 * same per weight element as an f32 one, and the arithmetic is f32 like the reference kernel's, so
 * these variants are in the f32 accuracy class). Work is split over the host pool by blocks of
 * weight rows; each worker packs its own weight block, which stays in L2 while every a
 * micro-panel (L1-sized, KC deep) sweeps it. The register-tiled micro-kernel is the only
 * ISA-specific part (cpu_gemm_avx512.c: 14x32, cpu_gemm_avx2.c: 6x16, portable 4x8 in
 * cpu_gemm_f32.c; cpu_gemm_bf16_avx512.c: 14x32 with vdpbf16ps on bf16 pairs, for bf16 weights,
 * activations rounded to bf16).
 *
 * With few activation rows (decode) packing would double the weight traffic, so a gemm variant
 * then runs its small-batch partner instead: the q8x2dot variant of the same ISA for quantized
 * weights, the float GEMV of the same ISA (cpu_gemv_float.h) for float weights.
 */
#ifndef BASTION_CPU_GEMM_H
#define BASTION_CPU_GEMM_H

#include "cpu_backend.h"
#include "cpu_q8dot.h"

#include <stdint.h>

#define CPU_GEMM_MAX_MR 16
#define CPU_GEMM_MAX_NR 32

/* c[i * nr + j] = sum_{k < kc} a[k * mr + i] * b[k * nr + j] for the kernel's mr x nr tile:
 * a is an mr-row micro-panel, b an nr-column one, both k-major and 64-byte aligned; c is
 * overwritten. With kpack 2 each 32-bit element of a and b is a bf16 pair (k = 2d, 2d + 1) and
 * kc counts pairs. */
typedef void (*cpu_gemm_kernel_fn)(int64_t kc, const float *a, const float *b, float *c);

typedef struct cpu_gemm_kernel {
    int mr, nr;
    int kpack; /* 1: f32 elements; 2: bf16 pairs (vdpbf16ps) */
    cpu_gemm_kernel_fn fn;
} cpu_gemm_kernel;

extern const cpu_gemm_kernel cpu_gemm_kernel_scalar;
#ifdef CPU_HAVE_AVX2_KERNELS
extern const cpu_gemm_kernel cpu_gemm_kernel_avx2;
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
extern const cpu_gemm_kernel cpu_gemm_kernel_avx512;
/* Packs weight rows [0, rows) of a q4_0 (kind 0), q4_1 (1) or q8_0 (2) weight (row_stride bytes
 * apart, K a multiple of 32) into one unit's panels for cpu_gemm_kernel_avx512 (nr 32, kpack
 * 1; ncp columns, a multiple of 32, rows past `rows` zero; slices kc_max deep, a multiple of
 * 32): the layout cpu_gemm_f32.c's portable packer writes. */
void cpu_gemm_pack_quant_avx512(float *pb, int64_t ncp, int64_t kc_max, const uint8_t *w,
                                int64_t row_stride, int64_t rows, int64_t K, int kind);
#endif
#ifdef CPU_HAVE_AVX512BF16_KERNELS
extern const cpu_gemm_kernel cpu_gemm_kernel_bf16_avx512;
#endif

/* Runs a gemm_* impl (impl->gemm set) on r's checked matmul; called by cpu_run_q8dot. */
bst_status cpu_run_gemm(cpu_run *r, const cpu_q8dot_impl *impl);
/* For fused kernels: c[m * ldc + n] = sum_k a[m * lda + k] * w[n, k] for m < M, n < w's N rows,
 * K = w's innermost extent (w as the matmul's weight: no batch dims, a dtype the gemm variants
 * read; K must fit r's row scratch). Packs and runs on the host pool itself: call it from the
 * kernel's top level, never inside a parallel section. Uses every worker's scratch slots
 * (CPU_SLOTS of them) and r->aux during the call, and restores r->aux. Few rows are not switched
 * to a GEMV path here: the caller decides (the gemm_* variants do so below 8 rows). */
bst_status cpu_gemm_rows(cpu_run *r, const cpu_gemm_kernel *k, int64_t M, const float *a,
                         int64_t lda, const cpu_tensor *w, float *c, int64_t ldc);
/* Whether the gemm variants take this matmul (weight without batch dims, dtypes they read). */
bool cpu_gemm_accepts(const cpu_run *r);

#endif /* BASTION_CPU_GEMM_H */
