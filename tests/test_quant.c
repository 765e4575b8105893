/*
 * Tests for graph/quant.c: f16/bf16 conversions (special values, exhaustive round trips),
 * hand-built quantized blocks with hand-computed values, byte-exact agreement with an
 * independent implementation of ggml's reference quantizers (the numpy one in the `gguf` Python
 * package, whose output is pasted below), error bounds and the quantize fixed point.
 */
#include "graph/quant.h"

#include <bastion/bastion.h>

#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* --- f16 --- */

static void test_f16_known_values(void)
{
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0.0f), 0x0000);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(-0.0f), 0x8000);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1.0f), 0x3c00);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0.5f), 0x3800);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(65504.0f), 0x7bff);   /* largest finite */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(65519.99f), 0x7bff);  /* just under the tie */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(65520.0f), 0x7c00);   /* tie rounds to even = inf */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1e10f), 0x7c00);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(-1e10f), 0xfc00);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(INFINITY), 0x7c00);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(-INFINITY), 0xfc00);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0x1p-14f), 0x0400);        /* smallest normal */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0x1p-24f), 0x0001);        /* smallest subnormal */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1023.0f * 0x1p-24f), 0x03ff); /* largest subnormal */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0x1p-25f), 0x0000);        /* tie to even: 0 */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0x1.8p-24f), 0x0002);      /* 1.5 units: tie to even 2 */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0x1.0p-25f * 1.0001f), 0x0001); /* above the tie */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(-0x1p-24f), 0x8001);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(0x1p-30f), 0x0000);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(-0x1p-30f), 0x8000);
    /* 1 + 2^-11 is halfway between 1 and the next half: even (1.0) wins; 1 + 3*2^-11 goes up. */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    /* Rounding up carries into the exponent: 2 - 2^-12 -> 2.0. */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(2.0f - 0x1p-12f), 0x4000);
    /* 1023.75 units of 2^-24 rounds up to the smallest normal. */
    CU_ASSERT_EQUAL(bsti_f32_to_f16(1023.75f * 0x1p-24f), 0x0400);

    uint16_t qnan = bsti_f32_to_f16(NAN);
    CU_ASSERT_EQUAL(qnan & 0x7c00, 0x7c00);
    CU_ASSERT_NOT_EQUAL(qnan & 0x03ff, 0);
    /* A signalling NaN whose payload sits only in the low bits must not become infinity. */
    uint16_t snan = bsti_f32_to_f16(bitsf(0xff800001u));
    CU_ASSERT_EQUAL(snan & 0x7c00, 0x7c00);
    CU_ASSERT_NOT_EQUAL(snan & 0x03ff, 0);
    CU_ASSERT_EQUAL(snan & 0x8000, 0x8000);

    CU_ASSERT_EQUAL(bsti_f16_to_f32(0x3c00), 1.0f);
    CU_ASSERT_EQUAL(bsti_f16_to_f32(0xc000), -2.0f);
    CU_ASSERT_EQUAL(bsti_f16_to_f32(0x7bff), 65504.0f);
    CU_ASSERT_EQUAL(bsti_f16_to_f32(0x0001), 0x1p-24f);
    CU_ASSERT_EQUAL(bsti_f16_to_f32(0x03ff), 1023.0f * 0x1p-24f);
    CU_ASSERT_EQUAL(bsti_f16_to_f32(0x0400), 0x1p-14f);
    CU_ASSERT_EQUAL(bsti_f16_to_f32(0x3555), 0x1.554p-2f);
    CU_ASSERT_EQUAL(fbits(bsti_f16_to_f32(0x8000)), 0x80000000u);
    CU_ASSERT_TRUE(isinf(bsti_f16_to_f32(0x7c00)) && bsti_f16_to_f32(0x7c00) > 0);
    CU_ASSERT_TRUE(isinf(bsti_f16_to_f32(0xfc00)) && bsti_f16_to_f32(0xfc00) < 0);
    CU_ASSERT_TRUE(isnan(bsti_f16_to_f32(0x7e00)));
    CU_ASSERT_TRUE(isnan(bsti_f16_to_f32(0x7c01)));
}

/* Every half converts to f32 exactly and back to itself (NaNs stay NaNs with their sign); every
 * value halfway between neighbouring halves rounds to the one with the even mantissa. */
static void test_f16_exhaustive(void)
{
    unsigned bad_roundtrip = 0, bad_tie = 0, bad_order = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = bsti_f16_to_f32((uint16_t)h);
        uint16_t back = bsti_f32_to_f16(f);
        bool is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
        if (is_nan) {
            if (!isnan(f) || (back & 0x7c00u) != 0x7c00u || (back & 0x3ffu) == 0 ||
                (back & 0x8000u) != (h & 0x8000u))
                bad_roundtrip++;
            continue;
        }
        if (back != h)
            bad_roundtrip++;
        /* Tie with the next half of the same sign (finite, below the largest). */
        uint32_t mag = h & 0x7fffu;
        if (mag < 0x7bffu) {
            float next = bsti_f16_to_f32((uint16_t)(h + 1));
            double mid = ((double)f + (double)next) / 2.0;
            uint16_t expect = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
            if (bsti_f32_to_f16((float)mid) != expect)
                bad_tie++;
            if (fabsf(next) <= fabsf(f))
                bad_order++;
        }
    }
    CU_ASSERT_EQUAL(bad_roundtrip, 0);
    CU_ASSERT_EQUAL(bad_tie, 0);
    CU_ASSERT_EQUAL(bad_order, 0);
}

/* Against the nearest-by-double definition for many f32 values across the range. */
static void test_f16_nearest(void)
{
    unsigned bad = 0;
    uint32_t seed = 12345;
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1664525u + 1013904223u;
        /* exponents from about 2^-27 to 2^17 */
        uint32_t e = 100u + (seed >> 8) % 44u;
        uint32_t u = (seed & 0x80000000u) | (e << 23) | ((seed * 2654435761u) & 0x7fffffu);
        float f = bitsf(u);
        uint16_t h = bsti_f32_to_f16(f);
        double got = bsti_f16_to_f32(h);
        if (isinf(got)) {
            if (fabs((double)f) < 65520.0)
                bad++;
            continue;
        }
        /* no other half may be strictly closer */
        uint16_t neighbours[2] = {(uint16_t)(h + 1), (uint16_t)(h - 1)};
        for (int k = 0; k < 2; k++) {
            uint16_t n = neighbours[k];
            if ((n & 0x7c00u) == 0x7c00u || ((h & 0x7fffu) == 0 && k == 1))
                continue;
            double other = bsti_f16_to_f32(n);
            if (fabs(other - (double)f) < fabs(got - (double)f))
                bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* --- bf16 --- */

static void test_bf16_values(void)
{
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(0.0f), 0x0000);
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(-0.0f), 0x8000);
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x3f808000u)), 0x3f80); /* tie, even stays */
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x3f818000u)), 0x3f82); /* tie, odd goes up */
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x3f808001u)), 0x3f81); /* above tie */
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x3f807fffu)), 0x3f80); /* below tie */
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(INFINITY), 0x7f80);
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(-INFINITY), 0xff80);
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to inf */
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x00000001u)), 0x0000); /* subnormal kept as value */
    CU_ASSERT_EQUAL(bsti_f32_to_bf16(bitsf(0x00018000u)), 0x0002);
    /* NaN with payload only in the dropped bits must stay NaN. */
    uint16_t n = bsti_f32_to_bf16(bitsf(0x7f800001u));
    CU_ASSERT_EQUAL(n & 0x7f80, 0x7f80);
    CU_ASSERT_NOT_EQUAL(n & 0x007f, 0);
    CU_ASSERT_TRUE(isnan(bsti_bf16_to_f32(n)));
    CU_ASSERT_TRUE(isnan(bsti_bf16_to_f32(bsti_f32_to_bf16(-NAN))));

    CU_ASSERT_EQUAL(bsti_bf16_to_f32(0x3f80), 1.0f);
    CU_ASSERT_EQUAL(bsti_bf16_to_f32(0x4049), 3.140625f);
    unsigned bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = bsti_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        if (bsti_f32_to_bf16(f) != h)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* --- hand-built blocks --- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

static void test_q4_0_block(void)
{
    /* d = 0.5 (0x3800); element j<16 has nibble j, element 16+j has nibble 15-j. */
    uint8_t b[18];
    put16(b, 0x3800);
    for (int j = 0; j < 16; j++)
        b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q4_0, b, y, 32), BST_OK);
    CU_ASSERT_EQUAL(y[0], -4.0f);
    CU_ASSERT_EQUAL(y[8], 0.0f);
    CU_ASSERT_EQUAL(y[15], 3.5f);
    CU_ASSERT_EQUAL(y[16], 3.5f);
    CU_ASSERT_EQUAL(y[31], -4.0f);
    for (int j = 0; j < 16; j++) {
        CU_ASSERT_EQUAL(y[j], (float)(j - 8) * 0.5f);
        CU_ASSERT_EQUAL(y[16 + j], (float)(7 - j) * 0.5f);
    }
}

static void test_q4_1_block(void)
{
    /* d = 0.25 (0x3400), m = -1 (0xbc00); low nibble 15-j, high nibble j. */
    uint8_t b[20];
    put16(b, 0x3400);
    put16(b + 2, 0xbc00);
    for (int j = 0; j < 16; j++)
        b[4 + j] = (uint8_t)((15 - j) | (j << 4));
    float y[32];
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q4_1, b, y, 32), BST_OK);
    CU_ASSERT_EQUAL(y[0], 2.75f);  /* 15 * 0.25 - 1 */
    CU_ASSERT_EQUAL(y[15], -1.0f);
    CU_ASSERT_EQUAL(y[16], -1.0f);
    CU_ASSERT_EQUAL(y[31], 2.75f);
    for (int j = 0; j < 16; j++) {
        CU_ASSERT_EQUAL(y[j], (float)(15 - j) * 0.25f - 1.0f);
        CU_ASSERT_EQUAL(y[16 + j], (float)j * 0.25f - 1.0f);
    }
}

static void test_q5_0_block(void)
{
    /* d = 2 (0x4000); qh = 0xAAAA5555: fifth bit set for even j < 16 and odd j >= 16. */
    uint8_t b[22];
    put16(b, 0x4000);
    b[2] = 0x55, b[3] = 0x55, b[4] = 0xaa, b[5] = 0xaa; /* little-endian 0xAAAA5555 */
    for (int j = 0; j < 16; j++)
        b[6 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q5_0, b, y, 32), BST_OK);
    CU_ASSERT_EQUAL(y[0], 0.0f);    /* (0 | 16) - 16 */
    CU_ASSERT_EQUAL(y[1], -30.0f);  /* 1 - 16 = -15, * 2 */
    CU_ASSERT_EQUAL(y[16], -2.0f);  /* nibble 15, bit 16 of qh clear: 15 - 16 */
    CU_ASSERT_EQUAL(y[17], 28.0f);  /* nibble 14 | 16 = 30, -16 = 14, * 2 */
    for (int j = 0; j < 16; j++) {
        int hi0 = (j % 2 == 0) ? 16 : 0;
        int hi1 = (j % 2 == 1) ? 16 : 0;
        CU_ASSERT_EQUAL(y[j], (float)((j | hi0) - 16) * 2.0f);
        CU_ASSERT_EQUAL(y[16 + j], (float)(((15 - j) | hi1) - 16) * 2.0f);
    }
}

static void test_q5_1_block(void)
{
    /* d = 0.125 (0x3000), m = 1 (0x3c00); qh = 0xFFFF0000: only elements 16..31 have bit 5. */
    uint8_t b[24];
    put16(b, 0x3000);
    put16(b + 2, 0x3c00);
    b[4] = 0x00, b[5] = 0x00, b[6] = 0xff, b[7] = 0xff;
    for (int j = 0; j < 16; j++)
        b[8 + j] = (uint8_t)(j | (j << 4));
    float y[32];
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q5_1, b, y, 32), BST_OK);
    CU_ASSERT_EQUAL(y[0], 1.0f);
    CU_ASSERT_EQUAL(y[15], 2.875f);  /* 15/8 + 1 */
    CU_ASSERT_EQUAL(y[16], 3.0f);    /* 16/8 + 1 */
    CU_ASSERT_EQUAL(y[31], 4.875f);  /* 31/8 + 1 */
    for (int j = 0; j < 16; j++) {
        CU_ASSERT_EQUAL(y[j], (float)j * 0.125f + 1.0f);
        CU_ASSERT_EQUAL(y[16 + j], (float)(j + 16) * 0.125f + 1.0f);
    }
}

static void test_q8_0_block(void)
{
    /* d = 0.0625 (0x2c00); qs[j] = 4*j - 64 as int8. */
    uint8_t b[34];
    put16(b, 0x2c00);
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)(int8_t)(4 * j - 64);
    b[2 + 31] = 0x80; /* -128 */
    float y[32];
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q8_0, b, y, 32), BST_OK);
    CU_ASSERT_EQUAL(y[0], -4.0f);
    CU_ASSERT_EQUAL(y[16], 0.0f);
    CU_ASSERT_EQUAL(y[30], 3.5f);
    CU_ASSERT_EQUAL(y[31], -8.0f);
    for (int j = 0; j < 31; j++)
        CU_ASSERT_EQUAL(y[j], (float)(4 * j - 64) * 0.0625f);
}

/* Dequantizing a row walks consecutive blocks, and src/dst alignment does not matter. */
static void test_multi_block_unaligned(void)
{
    uint8_t raw[1 + 2 * 34];
    uint8_t *b = raw + 1; /* odd address */
    put16(b, 0x3c00);      /* d = 1 */
    put16(b + 34, 0x4000); /* d = 2 */
    for (int j = 0; j < 32; j++) {
        b[2 + j] = (uint8_t)(int8_t)(j - 16);
        b[36 + j] = (uint8_t)(int8_t)(16 - j);
    }
    float y[64];
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q8_0, b, y, 64), BST_OK);
    for (int j = 0; j < 32; j++) {
        CU_ASSERT_EQUAL(y[j], (float)(j - 16));
        CU_ASSERT_EQUAL(y[32 + j], (float)(16 - j) * 2.0f);
    }
    /* f16 and bf16 rows at odd addresses */
    put16(b, 0x3c00);
    put16(b + 2, 0xc000);
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_F16, b, y, 2), BST_OK);
    CU_ASSERT_EQUAL(y[0], 1.0f);
    CU_ASSERT_EQUAL(y[1], -2.0f);
    put16(b, 0x3f80);
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_BF16, b, y, 1), BST_OK);
    CU_ASSERT_EQUAL(y[0], 1.0f);
}

/* --- quantizers --- */

static void test_q4_0_quantize_known(void)
{
    /* x[j] = (j - 8) * 0.5 for j < 16: max |x| is 4 at j = 0, signed -4, so d = 0.5 and
     * element j maps to nibble j. The upper half is x = 0.25 * (j - 8): half-steps, which
     * truncation of (x/d + 8.5) rounds up: nibble = 8 + floor((j - 8)/2 + 0.5). */
    float x[32];
    for (int j = 0; j < 16; j++) {
        x[j] = (float)(j - 8) * 0.5f;
        x[16 + j] = (float)(j - 8) * 0.25f;
    }
    uint8_t b[18];
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_0, x, b, 32), BST_OK);
    CU_ASSERT_EQUAL(b[0] | (b[1] << 8), 0x3800);
    for (int j = 0; j < 16; j++) {
        int lo = j;
        int hi = 8 + (int)floor((j - 8) / 2.0 + 0.5);
        CU_ASSERT_EQUAL(b[2 + j], (uint8_t)(lo | (hi << 4)));
    }

    /* Positive dominant value: d is negative (-0.5) and the maximum maps to code 0; the most
     * negative value would be +8 and is clamped to 15. */
    for (int j = 0; j < 32; j++)
        x[j] = 0.0f;
    x[3] = 4.0f;
    x[20] = -4.0f + 0.5f; /* -3.5 -> 7 + 8.5 = 15.5 -> 15 */
    x[21] = -3.9f;        /* 7.8 + 8.5 = 16.3 -> clamped 15 */
    x[5] = 1.0f;          /* -2 + 8.5 -> 6 */
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_0, x, b, 32), BST_OK);
    CU_ASSERT_EQUAL(b[0] | (b[1] << 8), 0xb800); /* -0.5 */
    CU_ASSERT_EQUAL(b[2 + 3] & 0x0f, 0);
    CU_ASSERT_EQUAL(b[2 + 5] & 0x0f, 6);
    CU_ASSERT_EQUAL(b[2 + 4] >> 4, 15);
    CU_ASSERT_EQUAL(b[2 + 5] >> 4, 15);
    CU_ASSERT_EQUAL(b[2 + 0] & 0x0f, 8);
}

static void test_q8_0_quantize_known(void)
{
    /* amax 16 -> d = 16/127; q = roundf(x * 127/16), halves away from zero. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    uint8_t b[34];
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q8_0, x, b, 32), BST_OK);
    CU_ASSERT_EQUAL(b[0] | (b[1] << 8), bsti_f32_to_f16(16.0f / 127.0f));
    CU_ASSERT_EQUAL((int8_t)b[2], -127);
    CU_ASSERT_EQUAL((int8_t)b[2 + 16], 0);
    CU_ASSERT_EQUAL((int8_t)b[2 + 17], 8);   /* 7.9375 */
    CU_ASSERT_EQUAL((int8_t)b[2 + 31], 119); /* 15 * 7.9375 = 119.06 */
    CU_ASSERT_EQUAL((int8_t)b[2 + 8], -64);  /* -8 * 7.9375 = -63.5 -> -64 (away from 0) */

    /* all zero: d = 0, codes 0 */
    memset(x, 0, sizeof x);
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q8_0, x, b, 32), BST_OK);
    for (int j = 0; j < 34; j++)
        CU_ASSERT_EQUAL(b[j], 0);
}

/* Test data shared with the pasted expectations below: integers over powers of two, exact in
 * f32 for both implementations. */
static void fixture_data(float *x)
{
    for (int j = 0; j < 32; j++) {
        x[j] = (float)((j * 37 + 5) % 64 - 31) / 16.0f;
        x[32 + j] = (float)(31 - (j * 13) % 61) / 64.0f;
        x[64 + j] = 0.0f;
        x[96 + j] = (float)((j * j * 7 + 3) % 201 - 100) / 1024.0f;
    }
}

/* Bytes written by gguf-py 0.19 (gguf.quants.quantize, numpy ports of ggml's *_ref) for
 * fixture_data(): an implementation independent of ours. */
static const struct {
    bst_dtype type;
    const char *hex;
} expected_bytes[] = {
    {BST_DTYPE_Q4_0,
     "c0b3bf158cf35ac037ae047be259cf269df4c0ab60a3d71a4d71b4e82b5e92c5f93c6fa30080888888888888"
     "888888888888888888881022f0115295f96ee47c14de9864505f6e8e"},
    {BST_DTYPE_Q4_1,
     "2234c0bf51ea841da63fc862fb842db740d9730c002c40b79f6c29e5b28e5b18d4a17d4a07c3906c00000000"
     "000000000000000000000000000000003c2210aef0115295f96ee47b14cd9863505e6d8d"},
    {BST_DTYPE_Q5_0,
     "c0af955aadd45d2a08e5b3906e4c19e7c4927f4c2af7c0a71873c69cd047ad248bf269cf46ad148be268cf36"
     "0080ffffffff00000000000000000000000000000000101eb0e65986e021953af2cdc8e7289b20d7a0adbb0c"},
    {BST_DTYPE_Q5_1,
     "0030c0bf6aa5562bb3d5082a5d7fa2c4f7194c6e91b3e608be2740b7e78c39632fb852db740d9630b952eb74"
     "1d9730c9000000000000000000000000000000000000000000000000081e10aeb0e65986f021953af3cdd8e8"
     "28ab20d7a0aebc0c"},
    {BST_DTYPE_Q8_0,
     "d023952dbe56e77f10a239cb62f4851dae46d76f009129ba52e37b0c9e35c75ef081d01b7f4a14dfaa6f3904"
     "cf9a5e29f4be894e19e3ae733d08d39e622df8c38d521de70000000000000000000000000000000000000000"
     "00000000000000000000000000001c12818aa6d31466c43bbd5900b9856a5a5d7292cc1876df62f0914b10e7"
     "d1cddbfc"},
};

static size_t parse_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (; hex[0] && hex[1] && n < cap; hex += 2) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1)
            return 0;
        out[n++] = (uint8_t)v;
    }
    return n;
}

static void test_matches_gguf_py(void)
{
    float x[128];
    fixture_data(x);
    for (size_t t = 0; t < sizeof expected_bytes / sizeof expected_bytes[0]; t++) {
        uint8_t want[256], got[256];
        size_t n = parse_hex(expected_bytes[t].hex, want, sizeof want);
        uint32_t bs = 0, bb = 0;
        CU_ASSERT_TRUE_FATAL(bsti_quant_geometry(expected_bytes[t].type, &bs, &bb));
        CU_ASSERT_EQUAL_FATAL(n, (size_t)(128 / bs * bb));
        memset(got, 0xee, sizeof got);
        CU_ASSERT_EQUAL_FATAL(bsti_quantize(expected_bytes[t].type, x, got, 128), BST_OK);
        CU_ASSERT_EQUAL(memcmp(got, want, n), 0);
        CU_ASSERT_EQUAL(got[n], 0xee); /* wrote nothing past the row */
        if (memcmp(got, want, n) != 0) {
            for (size_t i = 0; i < n; i++)
                if (got[i] != want[i]) {
                    fprintf(stderr, "dtype %d: first difference at byte %zu: %02x vs %02x\n",
                            (int)expected_bytes[t].type, i, got[i], want[i]);
                    break;
                }
        }
    }
}

static const bst_dtype block_types[] = {BST_DTYPE_Q4_0, BST_DTYPE_Q4_1, BST_DTYPE_Q5_0,
                                        BST_DTYPE_Q5_1, BST_DTYPE_Q8_0};

static float rand_uniform(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return (float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* Per-block error bounds derived from each format: half a step for rounding, a full step on the
 * side that the symmetric formats clamp (q4_0/q5_0 put -8/-16 on the max side only), plus the
 * scale's (and min's) own f16 rounding, at most 2^-11 relative, times the largest code. */
static void test_roundtrip_error_bounds(void)
{
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint8_t *q = malloc(N * 2);
    CU_ASSERT_FATAL(x && y && q);
    uint32_t seed = 7;
    for (int i = 0; i < N; i++) {
        float scale = (float)(1 + (i / 32) % 7) * 0.37f; /* different ranges per block */
        x[i] = rand_uniform(&seed) * scale + ((i / 32) % 3 == 0 ? 0.5f * scale : 0.0f);
    }
    for (size_t t = 0; t < sizeof block_types / sizeof block_types[0]; t++) {
        bst_dtype type = block_types[t];
        CU_ASSERT_EQUAL_FATAL(bsti_quantize(type, x, q, N), BST_OK);
        CU_ASSERT_EQUAL_FATAL(bsti_dequantize(type, q, y, N), BST_OK);
        unsigned bad = 0;
        double sq = 0, sx = 0;
        for (int b = 0; b < N / 32; b++) {
            float amax = 0, mn = x[b * 32], mx = x[b * 32];
            for (int j = 0; j < 32; j++) {
                float v = x[b * 32 + j];
                amax = fmaxf(amax, fabsf(v));
                mn = fminf(mn, v);
                mx = fmaxf(mx, v);
            }
            double bound;
            switch (type) {
            case BST_DTYPE_Q4_0: bound = amax / 8.0 * (1.0 + 8 * 0x1p-11); break;
            case BST_DTYPE_Q5_0: bound = amax / 16.0 * (1.0 + 16 * 0x1p-11); break;
            case BST_DTYPE_Q4_1:
                bound = (mx - mn) / 15.0 * (0.5 + 15 * 0x1p-11) + fabs(mn) * 0x1p-11;
                break;
            case BST_DTYPE_Q5_1:
                bound = (mx - mn) / 31.0 * (0.5 + 31 * 0x1p-11) + fabs(mn) * 0x1p-11;
                break;
            default: bound = amax / 127.0 * (0.5 + 127 * 0x1p-11); break;
            }
            for (int j = 0; j < 32; j++) {
                double e = fabs((double)y[b * 32 + j] - x[b * 32 + j]);
                sq += e * e;
                sx += (double)x[b * 32 + j] * x[b * 32 + j];
                if (e > bound + 1e-7)
                    bad++;
            }
        }
        CU_ASSERT_EQUAL(bad, 0);
        /* Relative RMS error, a loose sanity bound per bit width. */
        double rel = sqrt(sq / sx);
        double limit = type == BST_DTYPE_Q8_0 ? 0.01 : (type == BST_DTYPE_Q5_0 || type == BST_DTYPE_Q5_1) ? 0.05 : 0.1;
        CU_ASSERT_TRUE(rel < limit);
        if (bad || rel >= limit)
            fprintf(stderr, "dtype %d: %u elements over bound, relative rms %g\n", (int)type,
                    bad, rel);
    }
    /* f16/bf16 rows: relative error within half an ulp. */
    uint16_t *h = (uint16_t *)q;
    CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_F16, x, h, N), BST_OK);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_F16, h, y, N), BST_OK);
    unsigned bad16 = 0, badbf = 0;
    for (int i = 0; i < N; i++)
        if (fabsf(y[i] - x[i]) > fabsf(x[i]) * 0x1p-11f + 0x1p-25f)
            bad16++;
    CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_BF16, x, h, N), BST_OK);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_BF16, h, y, N), BST_OK);
    for (int i = 0; i < N; i++)
        if (fabsf(y[i] - x[i]) > fabsf(x[i]) * 0x1p-8f)
            badbf++;
    CU_ASSERT_EQUAL(bad16, 0);
    CU_ASSERT_EQUAL(badbf, 0);
    free(x);
    free(y);
    free(q);
}

/* quantize(dequantize(quantize(x))) == quantize(x): dequantized values sit exactly on the grid,
 * so quantizing them again must reproduce the same scale and codes. */
static void test_fixed_point(void)
{
    enum { N = 32 * 32 };
    float x[N], y[N];
    uint8_t q1[N * 2], q2[N * 2];
    uint32_t seed = 99;
    for (int i = 0; i < N; i++)
        x[i] = rand_uniform(&seed) * (float)(1 + i / 32);
    for (size_t t = 0; t < sizeof block_types / sizeof block_types[0]; t++) {
        bst_dtype type = block_types[t];
        uint32_t bs, bb;
        CU_ASSERT_TRUE_FATAL(bsti_quant_geometry(type, &bs, &bb));
        size_t bytes = (size_t)(N / bs * bb);
        CU_ASSERT_EQUAL_FATAL(bsti_quantize(type, x, q1, N), BST_OK);
        CU_ASSERT_EQUAL_FATAL(bsti_dequantize(type, q1, y, N), BST_OK);
        CU_ASSERT_EQUAL_FATAL(bsti_quantize(type, y, q2, N), BST_OK);
        CU_ASSERT_EQUAL(memcmp(q1, q2, bytes), 0);
        if (memcmp(q1, q2, bytes) != 0)
            fprintf(stderr, "dtype %d is not a fixed point\n", (int)type);
    }
}

static void test_invalid_arguments(void)
{
    float x[64] = {0};
    uint8_t q[128];
    CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_Q4_0, x, q, 31), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_Q8_0, q, x, 33), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_Q5_1, q, x, -32), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_F16, NULL, x, 4), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_Q4_1, x, NULL, 32), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_I32, q, x, 4), BST_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_I8, x, q, 4), BST_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_INVALID, q, x, 4), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_dequantize((bst_dtype)999, q, x, 4), BST_ERR_INVALID_ARG);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "dtype") != NULL);
    /* empty rows are fine, even with NULL pointers */
    CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_Q4_0, NULL, NULL, 0), BST_OK);
    CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_F32, NULL, NULL, 0), BST_OK);

    uint32_t bs = 0, bb = 0;
    CU_ASSERT_TRUE(bsti_quant_geometry(BST_DTYPE_Q5_1, &bs, &bb));
    CU_ASSERT_EQUAL(bs, 32);
    CU_ASSERT_EQUAL(bb, 24);
    CU_ASSERT_TRUE(bsti_quant_geometry(BST_DTYPE_BF16, &bs, &bb));
    CU_ASSERT_EQUAL(bs, 1);
    CU_ASSERT_EQUAL(bb, 2);
    CU_ASSERT_FALSE(bsti_quant_geometry(BST_DTYPE_I32, &bs, &bb));
}

/* Non-finite input never crashes and never corrupts neighbouring nibbles. */
static void test_nonfinite_input(void)
{
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)j;
    x[4] = NAN;
    x[9] = INFINITY;
    for (size_t t = 0; t < sizeof block_types / sizeof block_types[0]; t++) {
        uint8_t q[40];
        float y[32];
        CU_ASSERT_EQUAL(bsti_quantize(block_types[t], x, q, 32), BST_OK);
        CU_ASSERT_EQUAL(bsti_dequantize(block_types[t], q, y, 32), BST_OK);
    }
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"f16 known values", test_f16_known_values},
        {"f16 exhaustive round trip and ties", test_f16_exhaustive},
        {"f16 nearest", test_f16_nearest},
        {"bf16 values", test_bf16_values},
        {"q4_0 hand-built block", test_q4_0_block},
        {"q4_1 hand-built block", test_q4_1_block},
        {"q5_0 hand-built block", test_q5_0_block},
        {"q5_1 hand-built block", test_q5_1_block},
        {"q8_0 hand-built block", test_q8_0_block},
        {"multi-block unaligned rows", test_multi_block_unaligned},
        {"q4_0 quantize known", test_q4_0_quantize_known},
        {"q8_0 quantize known", test_q8_0_quantize_known},
        {"bytes match gguf-py", test_matches_gguf_py},
        {"round trip error bounds", test_roundtrip_error_bounds},
        {"quantize fixed point", test_fixed_point},
        {"invalid arguments", test_invalid_arguments},
        {"non-finite input", test_nonfinite_input},
        {NULL, NULL},
    };
    return bst_test_run_suite("quant", cases);
}
