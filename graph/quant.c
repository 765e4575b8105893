/*
 * Reference (de)quantization and half-precision conversions, bit-compatible with ggml.
 *
 * Blocks are handled as byte arrays with explicit little-endian fields rather than C structs:
 * GGUF data is little-endian whatever the host, and weights come straight from an mmap'd file
 * with no alignment promise beyond the block's own size. Quantizers follow ggml's
 * quantize_row_*_ref formulas step by step (same float operations in the same order, scale
 * inverted before it is rounded to f16) so the bytes match llama.cpp's; the only departure is
 * that float->int conversions are clamped first, so a NaN or an infinity in the input gives a
 * defined result instead of undefined behaviour. Products and sums sit in separate statements
 * (as in ggml) so no compiler fuses them into an FMA, which would change the rounding.
 */
#include "graph/quant.h"

#include "graph/status.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define QK 32 /* elements per block for every block type here */

enum {
    Q4_0_BYTES = 2 + QK / 2,         /* d, qs */
    Q4_1_BYTES = 2 + 2 + QK / 2,     /* d, m, qs */
    Q5_0_BYTES = 2 + 4 + QK / 2,     /* d, qh, qs */
    Q5_1_BYTES = 2 + 2 + 4 + QK / 2, /* d, m, qh, qs */
    Q8_0_BYTES = 2 + QK,             /* d, qs */
};

/* --- scalar conversions --- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float bsti_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf, or NaN with its payload */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(sign | f32_bits(v));
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t bsti_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    /* 65520 is halfway between 65504 (max half, odd mantissa) and 2^16: ties go to even, which
     * is the overflow to infinity. */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        /* Below 2^-14: the result is a half subnormal, a count of 2^-24 units. The f32 value is
         * m * 2^(e-150) with the implicit bit in m, i.e. m >> (126 - e) units. */
        uint32_t e = ax >> 23;
        if (e < 102) /* < 2^-25 (also f32 zero/subnormal): rounds to zero */
            return sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++; /* may become 0x400, the smallest normal: the right encoding */
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13));
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is the correct rounding */
    return (uint16_t)(sign | h);
}

float bsti_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t bsti_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet so it stays a NaN */
        return (uint16_t)((x >> 16) | 0x40u);
    /* ggml's rounding: add 0x7fff plus the lowest kept bit, then truncate (RNE). Overflow of a
     * finite value correctly rounds to infinity. */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* --- little-endian field access --- */

static float load_half(const uint8_t *p) { return bsti_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void store_half(uint8_t *p, float v)
{
    uint16_t h = bsti_f32_to_f16(v);
    p[0] = (uint8_t)(h & 0xffu);
    p[1] = (uint8_t)(h >> 8);
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void store_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ggml converts with a C cast ((int8_t)(x + 8.5f) and friends), which truncates toward zero.
 * For every finite block the value already lies in [0, hi + 1); clamping first keeps that
 * result and makes NaN (-> 0) and out-of-range values defined. */
static int trunc_clamp(float v, int hi)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

/* --- block dequantizers: the element order is ggml's (low nibbles are elements 0..15, high
 * nibbles 16..31; qh bit j is the fifth bit of element j) --- */

static void dequant_q4_0(const uint8_t *b, float *y)
{
    const float d = load_half(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        const int x0 = (qs[j] & 0x0f) - 8;
        const int x1 = (qs[j] >> 4) - 8;
        y[j] = (float)x0 * d;
        y[j + QK / 2] = (float)x1 * d;
    }
}

static void dequant_q4_1(const uint8_t *b, float *y)
{
    const float d = load_half(b);
    const float m = load_half(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        const float t0 = (float)(qs[j] & 0x0f) * d;
        const float t1 = (float)(qs[j] >> 4) * d;
        y[j] = t0 + m;
        y[j + QK / 2] = t1 + m;
    }
}

static void dequant_q5_0(const uint8_t *b, float *y)
{
    const float d = load_half(b);
    const uint32_t qh = load_u32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        const int h0 = (int)((qh >> j) & 1u) << 4;
        const int h1 = (int)((qh >> (j + QK / 2)) & 1u) << 4;
        y[j] = (float)(((qs[j] & 0x0f) | h0) - 16) * d;
        y[j + QK / 2] = (float)(((qs[j] >> 4) | h1) - 16) * d;
    }
}

static void dequant_q5_1(const uint8_t *b, float *y)
{
    const float d = load_half(b);
    const float m = load_half(b + 2);
    const uint32_t qh = load_u32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        const int h0 = (int)((qh >> j) & 1u) << 4;
        const int h1 = (int)((qh >> (j + QK / 2)) & 1u) << 4;
        const float t0 = (float)((qs[j] & 0x0f) | h0) * d;
        const float t1 = (float)((qs[j] >> 4) | h1) * d;
        y[j] = t0 + m;
        y[j + QK / 2] = t1 + m;
    }
}

static void dequant_q8_0(const uint8_t *b, float *y)
{
    const float d = load_half(b);
    for (int j = 0; j < QK; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* --- block quantizers (ggml's *_ref) --- */

/* The value with the largest magnitude, keeping its sign; the first one wins ties, as in ggml.
 * The sign matters: d = max / -8 maps that value exactly to the code 0. */
static float signed_absmax(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, float *out_min, float *out_max)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    *out_min = min;
    *out_max = max;
}

static void quant_q4_0(const float *x, uint8_t *b)
{
    const float d = signed_absmax(x) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_half(b, d);
    for (int j = 0; j < QK / 2; j++) {
        const float x0 = x[j] * id, x1 = x[j + QK / 2] * id;
        const int q0 = trunc_clamp(x0 + 8.5f, 15);
        const int q1 = trunc_clamp(x1 + 8.5f, 15);
        b[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void quant_q4_1(const float *x, uint8_t *b)
{
    float min, max;
    min_max(x, &min, &max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_half(b, d);
    store_half(b + 2, min);
    for (int j = 0; j < QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + QK / 2] - min) * id;
        const int q0 = trunc_clamp(x0 + 0.5f, 15);
        const int q1 = trunc_clamp(x1 + 0.5f, 15);
        b[4 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void quant_q5_0(const float *x, uint8_t *b)
{
    const float d = signed_absmax(x) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_half(b, d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        const float x0 = x[j] * id, x1 = x[j + QK / 2] * id;
        const int q0 = trunc_clamp(x0 + 16.5f, 31);
        const int q1 = trunc_clamp(x1 + 16.5f, 31);
        b[6 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        qh |= ((uint32_t)(q0 >> 4) & 1u) << j;
        qh |= ((uint32_t)(q1 >> 4) & 1u) << (j + QK / 2);
    }
    store_u32(b + 2, qh);
}

static void quant_q5_1(const float *x, uint8_t *b)
{
    float min, max;
    min_max(x, &min, &max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_half(b, d);
    store_half(b + 2, min);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + QK / 2] - min) * id;
        const int q0 = trunc_clamp(x0 + 0.5f, 31);
        const int q1 = trunc_clamp(x1 + 0.5f, 31);
        b[8 + j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
        qh |= ((uint32_t)(q0 >> 4) & 1u) << j;
        qh |= ((uint32_t)(q1 >> 4) & 1u) << (j + QK / 2);
    }
    store_u32(b + 4, qh);
}

static void quant_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int j = 0; j < QK; j++)
        amax = fmaxf(amax, fabsf(x[j])); /* unlike ggml's MAX, a NaN does not poison d */
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_half(b, d);
    for (int j = 0; j < QK; j++) {
        float r = roundf(x[j] * id); /* half away from zero, as ggml */
        int q = r != r ? 0 : r > 127.0f ? 127 : r < -128.0f ? -128 : (int)r;
        b[2 + j] = (uint8_t)(int8_t)q;
    }
}

/* --- row entry points --- */

typedef struct quant_kind {
    uint32_t block_size;
    uint32_t block_bytes;
    void (*dequant)(const uint8_t *block, float *y);
    void (*quant)(const float *x, uint8_t *block);
} quant_kind;

static const quant_kind *kind_of(bst_dtype type)
{
    static const quant_kind kinds[BST_DTYPE_COUNT] = {
        [BST_DTYPE_F32] = {1, 4, NULL, NULL},
        [BST_DTYPE_F16] = {1, 2, NULL, NULL},
        [BST_DTYPE_BF16] = {1, 2, NULL, NULL},
        [BST_DTYPE_Q4_0] = {QK, Q4_0_BYTES, dequant_q4_0, quant_q4_0},
        [BST_DTYPE_Q4_1] = {QK, Q4_1_BYTES, dequant_q4_1, quant_q4_1},
        [BST_DTYPE_Q5_0] = {QK, Q5_0_BYTES, dequant_q5_0, quant_q5_0},
        [BST_DTYPE_Q5_1] = {QK, Q5_1_BYTES, dequant_q5_1, quant_q5_1},
        [BST_DTYPE_Q8_0] = {QK, Q8_0_BYTES, dequant_q8_0, quant_q8_0},
    };
    if ((unsigned)type >= BST_DTYPE_COUNT || kinds[type].block_size == 0)
        return NULL;
    return &kinds[type];
}

bool bsti_quant_geometry(bst_dtype type, uint32_t *out_block_size, uint32_t *out_block_bytes)
{
    const quant_kind *k = kind_of(type);
    if (!k)
        return false;
    if (out_block_size)
        *out_block_size = k->block_size;
    if (out_block_bytes)
        *out_block_bytes = k->block_bytes;
    return true;
}

static bst_status check_args(const char *what, bst_dtype type, const void *src, const void *dst,
                             int64_t n, const quant_kind **out_kind)
{
    if ((unsigned)type >= BST_DTYPE_COUNT || type == BST_DTYPE_INVALID)
        return bsti_fail(BST_ERR_INVALID_ARG, "%s: invalid dtype %d", what, (int)type);
    const quant_kind *k = kind_of(type);
    if (!k)
        return bsti_fail(BST_ERR_UNSUPPORTED, "%s: dtype %d is not a float or block type", what,
                         (int)type);
    if (n < 0 || n % k->block_size != 0)
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "%s: element count %lld is not a non-negative multiple of the block "
                         "size %u",
                         what, (long long)n, k->block_size);
    if (n > INT64_MAX / 8)
        return bsti_fail(BST_ERR_OVERFLOW, "%s: element count %lld too large", what, (long long)n);
    if (n > 0 && (!src || !dst))
        return bsti_fail(BST_ERR_INVALID_ARG, "%s: NULL buffer", what);
    *out_kind = k;
    return BST_OK;
}

bst_status bsti_dequantize(bst_dtype type, const void *src, float *dst, int64_t n)
{
    const quant_kind *k = NULL;
    bst_status st = check_args("dequantize", type, src, dst, n, &k);
    if (st != BST_OK)
        return st;
    const uint8_t *s = src;
    switch (type) {
    case BST_DTYPE_F32:
        if (n > 0)
            memmove(dst, src, (size_t)n * sizeof(float));
        return BST_OK;
    case BST_DTYPE_F16:
    case BST_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(s[2 * i] | (s[2 * i + 1] << 8));
            dst[i] = type == BST_DTYPE_F16 ? bsti_f16_to_f32(h) : bsti_bf16_to_f32(h);
        }
        return BST_OK;
    default:
        for (int64_t i = 0; i < n / QK; i++)
            k->dequant(s + (size_t)i * k->block_bytes, dst + i * QK);
        return BST_OK;
    }
}

bst_status bsti_quantize(bst_dtype type, const float *src, void *dst, int64_t n)
{
    const quant_kind *k = NULL;
    bst_status st = check_args("quantize", type, src, dst, n, &k);
    if (st != BST_OK)
        return st;
    uint8_t *d = dst;
    switch (type) {
    case BST_DTYPE_F32:
        if (n > 0)
            memmove(dst, src, (size_t)n * sizeof(float));
        return BST_OK;
    case BST_DTYPE_F16:
    case BST_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = type == BST_DTYPE_F16 ? bsti_f32_to_f16(src[i]) : bsti_f32_to_bf16(src[i]);
            d[2 * i] = (uint8_t)(h & 0xffu);
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return BST_OK;
    default:
        for (int64_t i = 0; i < n / QK; i++)
            k->quant(src + i * QK, d + (size_t)i * k->block_bytes);
        return BST_OK;
    }
}
