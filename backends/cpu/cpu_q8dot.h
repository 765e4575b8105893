/*
 * backends/cpu/cpu_q8dot.h — quantized matmul by int8 dot products ("q8x2dot" variants).
 *
 * For weights in q4_0, q4_1 or q8_0 the activation rows are quantized once per call to blocks of
 * 32 values held as two int8 planes with one f32 scale: x ~= d * (256 * hi + lo), |hi|, |lo| <=
 * 127 (hi the usual 8-bit code for amax / 127 steps, lo the rounded residual in steps 256 times
 * finer), plus the scaled sum of the block, which q4_0's offset and q4_1's min need (as ggml's
 * q8_1 carries it). Each output is a sum over blocks of integer dot products (two per block,
 * combined exactly in int32 as 256 * hi_dot + lo_dot) times the two scales. A single 8-bit plane
 * (ggml's q8_1) gives NMSE around 1e-5 over a whole GEMV but fails test_backend_ops' 5e-4 bound
 * on small dots with cancellation; the second plane brings the activation error to ~1e-5 of the
 * block maximum, close to f32, for one more integer multiply-add per block: decode is bound by
 * the weight bytes, which stay the same. Weights are read in their GGUF layout and never
 * dequantized to memory, so a GEMV streams exactly the weight bytes once.
 *
 * The block loops exist once per ISA, each in its own file compiled with that ISA's flags
 * (cpu_q8dot_avx2.c, cpu_q8dot_avx512.c) and called only when cpu_isa_mask() says the machine
 * and OS support it; cpu_q8dot_scalar.c is the portable one.
 *
 * The same impl table also describes the packed-GEMM variants (cpu_gemm.h): an impl with `gemm`
 * set is a "gemm_*" variant. The entry by which the executor (and fused kernels) run any fast
 * matmul variant stays cpu_run_q8dot(r, impl) (cpu_backend.h), whatever the impl's kind.
 * Note for fused kernels (cpu_fused_ffn.c): the block loops' signature (cpu_q8dot_fn) and
 * cpu_q8_block are unchanged; with a prompt's worth of rows (>= 8), cpu_gemm_rows (cpu_gemm.h)
 * multiplies raw f32 rows by a weight with the packed GEMM, several times faster than the block
 * loops there; cpu_q8_quantize_* (below) are the activation quantizers, bit-identical to each
 * other and to the one cpu_kernels_q8dot.c used before.
 */
#ifndef BASTION_CPU_Q8DOT_H
#define BASTION_CPU_Q8DOT_H

#include <stddef.h>
#include <stdint.h>

#define CPU_Q8_QK 32
#define CPU_Q8_MAX_ROWS 4 /* activation rows one call processes against one weight row */

/* One quantized activation block: x[j] ~= d * (256 * hi[j] + lo[j]), |hi|, |lo| <= 127;
 * s = d * sum(256 * hi + lo). */
typedef struct cpu_q8_block {
    float d;
    float s;
    int8_t hi[CPU_Q8_QK];
    int8_t lo[CPU_Q8_QK];
} cpu_q8_block;

/* out[j] = dot(weight row w of nb blocks, activation row a + j*nb) for j < m_count
 * (m_count <= CPU_Q8_MAX_ROWS): the weight row is unpacked once per block for all rows. */
typedef void (*cpu_q8dot_fn)(const uint8_t *w, const cpu_q8_block *a, int64_t nb,
                             int64_t m_count, float *out);

/* Quantizes nb blocks of 32 floats x to q into the blocks above: hi as ggml's quantize_row_q8_1
 * (amax / 127 steps, rounded half away from zero, NaN to 0, clamped to +-127), lo the residual
 * (x * id - hi) * 256 rounded the same way, d = amax / 127 / 256, s = d * sum(256 * hi + lo).
 * Every implementation gives bit-identical blocks. */
typedef void (*cpu_q8_quant_fn)(const float *x, cpu_q8_block *q, int64_t nb);
void cpu_q8_quantize_scalar(const float *x, cpu_q8_block *q, int64_t nb);
#ifdef CPU_HAVE_AVX2_KERNELS
void cpu_q8_quantize_avx2(const float *x, cpu_q8_block *q, int64_t nb);
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
void cpu_q8_quantize_avx512(const float *x, cpu_q8_block *q, int64_t nb);
#endif

struct cpu_gemv_job; /* cpu_gemv_float.h */

typedef struct cpu_q8dot_impl {
    const char *name; /* the kernel variant's name */
    uint32_t isa;     /* CPU_ISA_* bits it needs */
    cpu_q8dot_fn q4_0, q4_1, q8_0;
    /* gemm_* variants only (NULL in q8x2dot ones): the packed GEMM micro-kernel, and the q8x2dot
     * impl run instead when a quantized weight meets few activation rows. */
    const struct cpu_gemm_kernel *gemm;
    const struct cpu_q8dot_impl *small;
    cpu_q8_quant_fn quant; /* the activation quantizer it uses (NULL: cpu_q8_quantize_scalar) */
    /* gemm_* variants: the row kernel run when a float weight meets few activation rows
     * (cpu_gemv_float.h), or NULL (then the reference kernel runs). */
    void (*gemv)(const struct cpu_gemv_job *job, int64_t n0, int64_t n1);
    /* gemm_* variants: the tile kernel run when a float weight (f32 too) meets a short prompt's
     * rows (cpu_gemv_float.h), or NULL (then the packed GEMM runs). */
    void (*dot)(const struct cpu_gemv_job *job, int64_t n0, int64_t n1);
} cpu_q8dot_impl;

/* out[r] = dot(weight row w + r * w_stride (nb blocks), ONE activation row a) for r < n_rows:
 * the decode case, where consecutive weight rows share each load of the activation blocks. */
typedef void (*cpu_q8dot_multi_fn)(const uint8_t *w, int64_t w_stride, int64_t n_rows,
                                   const cpu_q8_block *a, int64_t nb, float *out);
/* impl's multi-row loop for weight dtype t (bst_dtype), or NULL (then call its cpu_q8dot_fn per
 * row). Only the AVX-512 VNNI impl has them. */
cpu_q8dot_multi_fn cpu_q8dot_multi(const struct cpu_q8dot_impl *impl, uint32_t t);
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
void cpu_q8z_multi_q4_0(const uint8_t *w, int64_t ws, int64_t n, const cpu_q8_block *a,
                        int64_t nb, float *out);
void cpu_q8z_multi_q4_1(const uint8_t *w, int64_t ws, int64_t n, const cpu_q8_block *a,
                        int64_t nb, float *out);
void cpu_q8z_multi_q8_0(const uint8_t *w, int64_t ws, int64_t n, const cpu_q8_block *a,
                        int64_t nb, float *out);
#endif

extern const cpu_q8dot_impl cpu_q8dot_scalar;
#ifdef CPU_HAVE_AVX2_KERNELS
extern const cpu_q8dot_impl cpu_q8dot_avx2;
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
extern const cpu_q8dot_impl cpu_q8dot_avx512vnni;
#endif

/* The gemm_* variants (cpu_gemm_f32.c), best first. */
extern const cpu_q8dot_impl cpu_gemm_scalar;
#ifdef CPU_HAVE_AVX2_KERNELS
extern const cpu_q8dot_impl cpu_gemm_avx2;
#endif
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
extern const cpu_q8dot_impl cpu_gemm_avx512;
#endif
#ifdef CPU_HAVE_AVX512BF16_KERNELS
extern const cpu_q8dot_impl cpu_gemm_bf16dot_avx512;
#endif

/* IEEE half to float, for the portable code (the SIMD files use F16C). */
static inline float cpu_q8_half(const uint8_t *p)
{
    uint32_t h = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union {
        uint32_t u;
        float f;
    } v = {bits};
    return v.f;
}

#endif /* BASTION_CPU_Q8DOT_H */
