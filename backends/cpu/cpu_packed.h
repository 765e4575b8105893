/*
 * backends/cpu/cpu_packed.h — quantized weights repacked for the int8 dot kernels.
 *
 * Read in their GGUF layout, a q4 block's scale, nibbles and (q4_1) minimum are decoded one
 * 18- or 20-byte block at a time, per row: on a decode GEMV that costs more instructions per
 * weight byte than the memory delivers bytes, so the kernels stall well below the bandwidth.
 * prepare_weight therefore also keeps a copy of every q4_0 / q4_1 / q8_0 matrix with its rows
 * interleaved in groups of CPU_PACK_ROWS = 16: one 64-byte vector then holds the same 4 quant
 * bytes of 16 rows, one vpdpbusd against a broadcast 4-byte group of the activation block
 * advances 16 rows at once, and the 16 rows' scales of a block arrive as one 32-byte load. The
 * copy has exactly the native byte count (plus padding of the last group, and of the last block
 * pair when K / 32 is odd); the native bytes stay where they are (the reference kernels and every
 * other path keep reading them).
 *
 * Group g (rows 16g .. 16g+15) at data + g * group_bytes, for nb = K / 32 blocks, is one stream
 * in the order the kernels read it: ceil(nb / 2) pairs of blocks, pair i = blocks 2i and 2i+1:
 *   tiles:  two tiles of qbytes (q4_0 / q4_1: 256, q8_0: 512), block 2i's then block 2i+1's.
 *           Tile kb is qbytes / 64 vectors; in vector v, lane r (bytes v*64 + 4r .. v*64 + 4r + 3)
 *           holds row 16g + r's block-kb quant bytes qs[4v .. 4v + 3]. For q4 those bytes' low
 *           nibbles are elements 4v .. 4v+3 of the block and the high nibbles elements
 *           16 + 4v .. 16 + 4v + 3 (GGUF's own nibble order). For q8_0 each byte is stored
 *           XOR 0x80 (w + 128, unsigned, as vpdpbusd wants; the kernel takes back 128 * sum(a)).
 *   d:      one 64-byte line: the 16 rows' f16 scales of block 2i, then of block 2i+1.
 *   m:      (q4_1 only) one line: the 16 rows' f16 minimums, same order.
 * Every block thus brings its scales along: a GEMV reads each group front to back, one linear
 * stream a single prefetch distance covers whatever K is. (With all tiles first and the tables
 * after them, a group whose tiles span more than the prefetch distance needed the tables as a
 * second stream 12 KiB away: q4_1 576 x 1536 ran 40% slower per byte than 1536 x 576.) With odd
 * nb the last pair's second tile is zero padding.
 * Rows past the last real row are zero bytes (scale 0, so they contribute nothing).
 */
#ifndef BASTION_CPU_PACKED_H
#define BASTION_CPU_PACKED_H

#include "cpu_backend.h"
#include "cpu_q8dot.h"

#include <bastion/backend.h>
#include <stddef.h>
#include <stdint.h>

#define CPU_PACK_ROWS 16

typedef struct cpu_packed {
    uint32_t dtype;     /* BST_DTYPE_Q4_0, _Q4_1 or _Q8_0 */
    int64_t rows;       /* N: the weight's rows (matmul outputs) */
    int64_t nb;         /* K / 32: blocks per row */
    int64_t groups;     /* ceil(rows / 16) */
    size_t qbytes;      /* quant bytes per tile: 256 (q4_*) or 512 (q8_0) */
    size_t group_bytes; /* stride between groups, a multiple of 64 */
    uint8_t *data;      /* 64-byte aligned, groups * group_bytes (cpu_packed_slab_alloc) */
    size_t row_bytes;   /* the native matrix's row stride it was packed from */
    void *slab;         /* the slab `data` lives in (cpu_packed_slab_alloc) */
} cpu_packed;

/* Memory for packed copies (cpu_packed_slab.c): `bytes` from a 2 MiB-aligned slab the kernel
 * may back with huge pages, 64-byte aligned and zeroed; *out_slab is what cpu_packed_slab_release
 * takes back. NULL when the memory cannot be mapped. */
void *cpu_packed_slab_alloc(size_t bytes, void **out_slab);
void cpu_packed_slab_release(void *slab);

/* Bytes of one block pair (cpu_packed.h's layout): two tiles, the d line, and q4_1's m line. */
static inline size_t cpu_packed_pair_bytes(size_t qbytes, uint32_t dtype)
{
    return 2 * qbytes + (dtype == BST_DTYPE_Q4_1 ? 128 : 64);
}

/* Group g's stream. */
static inline const uint8_t *cpu_packed_group(const cpu_packed *p, int64_t g)
{
    return p->data + (size_t)g * p->group_bytes;
}
/* Block kb's tile, its 16 scales and (q4_1) its 16 minimums, in group g. */
static inline const uint8_t *cpu_packed_tile(const cpu_packed *p, int64_t g, int64_t kb)
{
    return cpu_packed_group(p, g) + (size_t)(kb >> 1) * cpu_packed_pair_bytes(p->qbytes, p->dtype) +
           (size_t)(kb & 1) * p->qbytes;
}
static inline const uint16_t *cpu_packed_scales(const cpu_packed *p, int64_t g, int64_t kb)
{
    return (const uint16_t *)(const void *)(cpu_packed_group(p, g) +
                                            (size_t)(kb >> 1) *
                                                cpu_packed_pair_bytes(p->qbytes, p->dtype) +
                                            2 * p->qbytes + (size_t)(kb & 1) * 32);
}
static inline const uint16_t *cpu_packed_mins(const cpu_packed *p, int64_t g, int64_t kb)
{
    return cpu_packed_scales(p, g, kb) + 32; /* the next line; q4_1 only */
}

/* Whether prepare_weight packs a weight of this dtype, rank and shape ([N, K]), given the kernels
 * this machine runs (the AVX-512 VNNI and the AVX2 / AVX-VNNI kernels read the packed copy). */
bool cpu_packed_wanted(uint32_t dtype, uint32_t rank, const int64_t *shape);

/* Repacks the [rows, K] native (GGUF) matrix at `native` (row stride `row_bytes`) into slab
 * memory described by *out (the caller's storage: cpu_buffer.c keeps it next to the buffer).
 * Returns BST_OK, or BST_ERR_OUT_OF_MEMORY / BST_ERR_INVALID_ARG / BST_ERR_OVERFLOW with
 * cpu_host->set_error called and nothing to release. */
bst_status cpu_packed_create(uint32_t dtype, int64_t rows, int64_t k, const uint8_t *native,
                             size_t row_bytes, cpu_packed *out);
/* Gives back the memory of a copy cpu_packed_create made (not the descriptor itself). */
void cpu_packed_release(cpu_packed *p);

/* Row `row` of the packed matrix back in its native block bytes (nb blocks into `dst`): the
 * inverse of the repack, for tests and for paths that want native rows. */
void cpu_packed_native_row(const cpu_packed *p, int64_t row, uint8_t *dst);

/* Integer-dot GEMV/GEMM on the packed copy: for every row n in groups [g0, g1) that exists
 * (n < p->rows) and every activation row j < m_count,
 *     out[j * ldo + n] = dot(weight row n, activation row j),
 * the activation rows quantized (cpu_q8dot.h) to p->nb blocks each, row j at a + j * p->nb.
 * The integer dots are exactly those of the native q8x2dot kernels; only the order of the
 * float sums differs. */
typedef void (*cpu_packed_gemv_fn)(const cpu_packed *p, int64_t g0, int64_t g1,
                                   const cpu_q8_block *a, int64_t m_count, float *out,
                                   int64_t ldo);
void cpu_packed_gemv_scalar(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                            int64_t m_count, float *out, int64_t ldo);
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
/* Few activation rows (decode; m_count <= CPU_Q8_MAX_ROWS is its fast case). */
void cpu_packed_gemv_avx512(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                            int64_t m_count, float *out, int64_t ldo);
/* Many activation rows (a prompt): the int8 GEMM, tiles of weight groups x activation rows. */
void cpu_packed_gemm_avx512(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                            int64_t m_count, float *out, int64_t ldo);
#endif

#ifdef CPU_HAVE_AVX2_KERNELS
/* With 256-bit vectors (cpu_packed_simd256.h): plain AVX2, and AVX-VNNI; any number of
 * activation rows, 4 at a time against each 16-row group. */
void cpu_packed_gemv_avx2(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                          int64_t m_count, float *out, int64_t ldo);
#endif
#ifdef CPU_HAVE_AVXVNNI_KERNELS
void cpu_packed_gemv_avxvnni(const cpu_packed *p, int64_t g0, int64_t g1, const cpu_q8_block *a,
                             int64_t m_count, float *out, int64_t ldo);
#endif

/* The packed kernel variant `impl` runs for m_count activation rows, or NULL when impl reads the
 * native rows instead. */
cpu_packed_gemv_fn cpu_packed_kernel(const cpu_q8dot_impl *impl, int64_t m_count);

/* The activation rows of a matmul-like node quantized and multiplied by a packed weight:
 * `a` holds m_count rows of p->nb blocks; the output goes to out[j * ldo + n]. */
typedef struct cpu_packed_job {
    const cpu_packed *p;
    cpu_packed_gemv_fn fn;
    const cpu_q8_block *a;
    int64_t m_count;
    float *out;
    int64_t ldo;
} cpu_packed_job;
/* jobs[0..count) as one parallel section over all their row groups (one job: a matmul; several:
 * cpu_run_q8dot_group's siblings). With `first` set, every share runs it (cpu_once) before
 * reading `a`: a decode step's activation is quantized inside the section, after each thread has
 * requested the start of its weight share (cpu_packed_prefetch), so that the weights stream in
 * meanwhile. */
void cpu_packed_run_group(cpu_run *r, const cpu_packed_job *jobs, uint32_t count,
                          cpu_once *first);

/* Requests the first CPU_PACKED_PREFETCH_BYTES of groups [g0, g1)'s weight stream into L1.
 * A thread that must quantize (or wait for) its activation before its GEMV share calls this
 * first: the weights are the bottleneck, and a cold stream's first lines otherwise arrive only
 * after the quantization, one miss after another (576 x 576 q4_1 on two threads: 5.75-5.93 us
 * without, 5.38-5.50 with 8 KiB; 16 KiB measured the same as 8). */
#define CPU_PACKED_PREFETCH_BYTES 8192
void cpu_packed_prefetch(const cpu_packed *p, int64_t g0, int64_t g1);

/* How far ahead of the block being read the GEMV kernels (AVX-512 and 256-bit) request a call's
 * weight stream, for a call of call_bytes. One core, cache-cold (rotated copies), 4096 x 14336
 * q4_0: none 1.33 ms, 512 B 1.36, 4 KiB 0.98, 8 KiB 0.93-1.0, 16 KiB 1.06 (min of 40);
 * bounding it by the call's own range and the up-front burst took 576 x 576 q4_1 from 9.4 to
 * 8.0 us (median). Into L2 (T1) instead of L1 measured the same.
 * On a later machine (Zen 5, 48 KiB L1) a call of 256 KiB or more streams faster 12 KiB ahead:
 * the 4096 x 14336 GEMV's x read 4-6% higher on one thread and 5-12% on two (ABBA, 3 rounds
 * each); the 1 x 576 x 1536 FFN (277 KiB per thread and matrix) 4-5% faster with the vCPUs on two
 * CCDs (traced p50 of 4 runs) and 14% in the model (19.8 against 23.1 us, 4-6 runs); with the
 * vCPUs near, one traced set measured the same and a later one 5% slower (91260 against 87048
 * cycles, 5-6 runs). A short call pays for the larger up-front burst before its first block
 * arrives: 576 x 576 (~100 KiB per thread) took 4-9% longer with 12 KiB (traced p50 of 3-5 runs
 * per placement). */
static inline size_t cpu_packed_pf_dist(size_t call_bytes)
{
    return call_bytes >= 256 * 1024 ? 12288 : 8192;
}

/* Requests the 64-byte lines holding bytes [at, at + bytes) of a call's stream (len bytes from
 * the 64-byte aligned begin), as far as the stream goes. */
static inline void cpu_packed_prefetch_range(const uint8_t *begin, size_t len, size_t at,
                                             size_t bytes)
{
    for (size_t line = at & ~(size_t)63; line < at + bytes && line < len; line += 64)
        __builtin_prefetch(begin + line, 0, 3);
}

/* Whether t's rows (all dims but the innermost, flattened) are f32, contiguous inside and evenly
 * spaced: then row i is at *base + i * *ld floats. */
bool cpu_rows_uniform(const cpu_tensor *t, float **base, int64_t *ld);

#endif /* BASTION_CPU_PACKED_H */
