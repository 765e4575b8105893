/*
 * backends/cpu/cpu_fused.h — the CPU backend's fused kernels for the high-level ops ATTENTION,
 * RMS_NORM_MUL and FFN_SWIGLU (semantics in include/bastion/backend.h).
 *
 * The reference backend has no "ref" kernel for these ops: the runtime lowers them into
 * primitives when no device offers them whole. These kernels exist for speed, so they are offered
 * only where they beat the lowered graph and only when the device may use fast kernels
 * (BASTION_CPU_KERNELS=ref or =lowered hides them; cpu_backend.c):
 *  - attention (cpu_fused_attention.c): one pass over the keys per (kv head, query block) with an
 *    online softmax (running maximum and sum, accumulator rescaled when the maximum grows), so
 *    the T x S scores never reach memory and f16/bf16 K/V are read in place; keys outside the
 *    causal / window range are skipped, not masked. The key-block loops exist once per ISA
 *    (cpu_fused_attention_avx2.c compiled with AVX2 flags; scalar loops in the portable file);
 *    with AVX-512, a prompt's units of 8..16 query rows run as one lane-per-row tile
 *    (cpu_att_tile below, cpu_fused_attention_avx512.c), ~3x the per-row loops at 512 tokens,
 *    and the other units (decode: the G heads of one kv head at 1..few positions, over one
 *    share of the keys) run the few-row kernel (CPU_ATT_FEW_KB below, cpu_att_few.h), which
 *    also prefetches the cold K/V cache; with AVX2 alone, so do the decode units.
 *  - rms_norm_mul, ffn_swiglu (cpu_fused_ffn.c): the norm in one pass; for few rows (decode) the
 *    FFN quantizes x once for both gate and up (cpu_q8dot.h's q8x2 blocks and block loops),
 *    applies silu(g) * u while the results are in cache, then runs the down projection with the
 *    same kernels; for many rows (a prompt) it runs the packed GEMM (cpu_gemm.h).
 *
 * A variant is one of the cpu_fused_impl entries below; cpu_exec.c lists the applicable ones in
 * query (best first) and runs the chosen one.
 */
#ifndef BASTION_CPU_FUSED_H
#define BASTION_CPU_FUSED_H

#include "cpu_backend.h"

#include <stdint.h>

/* Key-block loops of fused attention, per K/V dtype (f32, f16, bf16; NULL when not provided).
 * dot: out[j] = q . k_j for n keys at k + j * k_stride (d elements each, contiguous).
 * axpy: acc += sum_j p[j] * v_j for n values rows at v + j * v_stride. */
typedef void (*cpu_att_dot_fn)(const float *q, const uint8_t *k, int64_t k_stride, int64_t n,
                               int64_t d, float *out);
typedef void (*cpu_att_axpy_fn)(float *acc, const float *p, const uint8_t *v, int64_t v_stride,
                                int64_t n, int64_t d);

/* s[j] = exp(s[j] - m) for j < n (exactly 0 where s[j] is -INFINITY); returns the sum. */
typedef float (*cpu_att_exp_fn)(float *s, int64_t n, float m);

/* dst[c] = src[c] * f for c < n (dst may be src), 4 lanes at a time: the same product per
 * element as the plain loop, which the compiler leaves scalar (q's scaling, the accumulator's
 * rescaling and the output were ~30% of a short decode unit). */
void cpu_att_scale_row(float *dst, const float *src, int64_t n, float f);

/* A prompt's unit of up to CPU_ATT_TILE_ROWS query rows processed with the rows in vector lanes
 * (cpu_fused_attention_avx512.c): each K/V block is converted to f32 once for all rows, the
 * scores of one key for every row are one or two vectors (q^T held transposed: one broadcast K
 * element per multiply-add of each, no horizontal sums), and the online softmax runs lane-wise.
 * Keys [jlo, jhi) of one kv head (no key split); D a multiple of 16, at most CPU_ATT_TILE_MAX_D.
 * The few-row kernel below takes the same description with at most CPU_ATT_FEW_ROWS rows. */
#define CPU_ATT_TILE_ROWS 32
#define CPU_ATT_FEW_ROWS 16
#define CPU_ATT_TILE_KB 64
#define CPU_ATT_TILE_MAX_D 256
typedef struct cpu_att_tile {
    int rows;                               /* 1..CPU_ATT_TILE_ROWS */
    int64_t D;
    float scale;
    const float *q[CPU_ATT_TILE_ROWS];      /* f32 query rows (unscaled) */
    float *out[CPU_ATT_TILE_ROWS];          /* f32 output rows */
    int32_t pos[CPU_ATT_TILE_ROWS];         /* each row's position (causal / window) */
    const uint8_t *k, *v;                   /* key / value row 0 of the (first) kv head */
    int64_t ks, vs;                         /* their row strides in bytes */
    /* Few-row kernel only: the rows are `rows / head_rows` runs of head_rows rows, run h for kv
     * head h counted from k / v, whose rows lie kh_stride / vh_stride bytes further per head
     * (head_rows 0: all rows are one kv head's). The tile takes one kv head. */
    int head_rows;
    int64_t kh_stride, vh_stride;
    int kk, vk;                             /* dtype kinds: 0 f32, 1 f16, 2 bf16 */
    int64_t jlo, jhi;
    bool causal;
    int64_t window;
    /* The additive f32 mask, or NULL: row i's value for key j is at mask[i] + j * mask_stride
     * (stride 0: broadcast over keys). Key blocks the mask hides from every row are skipped. */
    const uint8_t *mask[CPU_ATT_TILE_ROWS];
    int64_t mask_stride;
    /* NULL: row i's normalized output goes to out[i]. Otherwise (a share of split keys, few-row
     * kernel only) row i's running maximum, sum and unnormalized accumulator go to
     * part + i * (D + 2) as {m, l, acc[D]}, for the driver to merge. */
    float *part;
} cpu_att_tile;
/* Floats of work area a tile needs (64-byte aligned, per worker). */
#define CPU_ATT_TILE_WORK(D) ((size_t)(D) * (2 * CPU_ATT_TILE_ROWS + 2 * CPU_ATT_TILE_KB) + \
                              (size_t)2 * CPU_ATT_TILE_KB * CPU_ATT_TILE_ROWS + 64)
typedef void (*cpu_att_tile_fn)(const cpu_att_tile *t, float *work);

/* A decode step's unit of few rows (the G query heads of one or more kv heads at one or a few
 * positions, 1..CPU_ATT_FEW_ROWS rows) with the same cpu_att_tile description, keys [jlo, jhi)
 * possibly a share of a split (part), D a multiple of 16 (cpu_att_few.h: a portable driver and
 * each ISA's vector pieces, cpu_fused_attention_decode_avx512.c and _avx2.c): each K/V chunk is
 * widened once for all rows of its head, 16 (8) keys' scores come out of one transpose-add tree,
 * the softmax and the accumulator work on whole vectors, and the K/V cache, which decode reads
 * from DRAM, is read and prefetched in address order. Work:
 * CPU_ATT_FEW_WORK floats, 64-byte aligned. Keys go in blocks of CPU_ATT_FEW_KB: a block's
 * values wait for all its scores, and a thread's memory idles meanwhile unless more keys follow;
 * blocks of 32 keys against 64: -4..-5% a node with the vCPUs near, -13% split (default model,
 * decode, S 96..160, one run, blocks alternating node by node); 16 and 48: slower than 32. */
#define CPU_ATT_FEW_KB 32
#define CPU_ATT_FEW_WORK(rows, D) ((size_t)(rows) * (size_t)(2 * (D) + CPU_ATT_FEW_KB))

typedef struct cpu_att_loops {
    cpu_att_dot_fn dot[3];   /* by kv kind: 0 f32, 1 f16, 2 bf16 */
    cpu_att_axpy_fn axpy[3];
    cpu_att_exp_fn exp;
    cpu_att_tile_fn tile;    /* optional (NULL): many-row units, see cpu_att_tile */
    cpu_att_tile_fn few;     /* optional (NULL): few-row units (decode), see CPU_ATT_FEW_KB */
} cpu_att_loops;

extern const cpu_att_loops cpu_att_loops_scalar;
#ifdef CPU_HAVE_FUSED_AVX2
/* The per-row loops plus the few-row kernel (decode) on 8 lanes. */
extern const cpu_att_loops cpu_att_loops_avx2;
void cpu_att_few_avx2(const cpu_att_tile *t, float *work);
#endif
#ifdef CPU_HAVE_FUSED_AVX512
/* The AVX2 loops (units the AVX-512 kernels decline) plus the AVX-512 tile (prompts) and
 * few-row kernel (decode). */
extern const cpu_att_loops cpu_att_loops_avx512;
void cpu_att_tile_avx512(const cpu_att_tile *t, float *work);
void cpu_att_few_avx512(const cpu_att_tile *t, float *work);
#endif

struct cpu_q8dot_impl;
struct cpu_gemm_kernel;

/* One fused kernel variant. */
typedef struct cpu_fused_impl {
    const char *name;
    bst_op op;
    uint32_t isa;                           /* CPU_ISA_* bits it needs */
    const cpu_att_loops *att;               /* attention: its key-block loops */
    const struct cpu_q8dot_impl *q8;        /* ffn_swiglu: the matmul block loops (few rows) */
    const struct cpu_gemm_kernel *gemm;     /* ffn_swiglu: the packed GEMM (many rows) */
    bst_status (*prim)(cpu_run *r);         /* primitive-op variants: the whole kernel */
} cpu_fused_impl;

/* True for the ops this module may run whole. */
bool cpu_fused_op(uint32_t op);
/* Checks a resolved node of a fused op (shapes at their bounds in query/compile, bound in
 * execute); the message goes to r->msg. BST_ERR_UNSUPPORTED means "not offered". */
bst_status cpu_fused_check(cpu_run *r);
/* The fused variants for r's (checked) node that this machine can run, best first; at most cap.
 * Zero when the node's dtypes or layout are ones no fused kernel handles (it is then lowered). */
uint32_t cpu_fused_variants(const cpu_run *r, const cpu_fused_impl **out, uint32_t cap);
bst_status cpu_fused_run(cpu_run *r, const cpu_fused_impl *impl);
/* Fast variants of primitive ops (cpu_fast_prims.c) share this impl type: `prim` runs the node
 * (after the op's own check), and cpu_fused_run dispatches to it. The ones that apply to r's
 * checked node, best first; at most cap. Offered before "ref" unless only the reference kernels
 * are wanted. */
uint32_t cpu_prim_variants(const cpu_run *r, const cpu_fused_impl **out, uint32_t cap);
#ifdef CPU_HAVE_AVX2_KERNELS
/* n f32 values as n little-endian f16 at dst, bit-identical to the host's f16 quantize
 * (cpu_f16c.c; needs CPU_ISA_AVX2). */
void cpu_f32_to_f16_f16c(const float *src, uint8_t *dst, int64_t n);
/* n little-endian f16 at src as f32 (exact, as the host's dequantize) (cpu_f16c.c; needs
 * CPU_ISA_AVX2). */
void cpu_f16_to_f32_f16c(const uint8_t *src, float *dst, int64_t n);
#endif
/* rms_norm_mul on contiguous f32 rows (cpu_fast_prims.c; other layouts run the generic kernel):
 * the "fused_rms_norm_mul_f32" variant. */
bst_status cpu_fast_rms_norm_mul(cpu_run *r);
/* The op table's run entry for fused ops: reached only if no variant was chosen. */
bst_status cpu_fused_unchosen(cpu_run *r);

/* Per-op parts (cpu_fused_attention.c, cpu_fused_ffn.c). */
bst_status cpu_fused_check_attention(cpu_run *r);
bst_status cpu_fused_run_attention(cpu_run *r, const cpu_att_loops *loops);
bst_status cpu_fused_check_rms_norm_mul(cpu_run *r);
bst_status cpu_fused_run_rms_norm_mul(cpu_run *r);
bst_status cpu_fused_check_ffn_swiglu(cpu_run *r);
/* SwiGLU's elementwise step, g[i] = silu(g[i]) * u[i] for i < n: the portable loop, the
 * AVX-512 one (cpu_swiglu_avx512.c) and the best this machine runs. */
typedef void (*cpu_swiglu_fn)(float *g, const float *u, int64_t n);
void cpu_swiglu_scalar(float *g, const float *u, int64_t n);
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
void cpu_swiglu_avx512(float *g, const float *u, int64_t n);
/* z = silu(x) for n floats (z == x, or apart), as cpu_swiglu_avx512 forms it: the silu_f32
 * variant of a lowered FFN's silu (cpu_fast_prims.c). */
void cpu_silu_avx512(const float *x, float *z, int64_t n);
#endif
cpu_swiglu_fn cpu_swiglu(void);

bst_status cpu_fused_run_ffn_swiglu(cpu_run *r, const struct cpu_q8dot_impl *q8,
                                    const struct cpu_gemm_kernel *gemm);

#endif /* BASTION_CPU_FUSED_H */
