/*
 * Portable q8x2dot block loops (see cpu_q8dot.h): plain integer arithmetic, built everywhere, the
 * fallback where no SIMD kernel applies and the readable statement of what the SIMD files do.
 */
#include "cpu_q8dot.h"

enum { Q4_0_BYTES = 18, Q4_1_BYTES = 20, Q8_0_BYTES = 34 };

/* Element k of an activation block in units of its d (at most 127 * 257 in magnitude). */
static inline int32_t act(const cpu_q8_block *b, int k)
{
    return 256 * (int32_t)b->hi[k] + b->lo[k];
}

static void dot_q4_0(const uint8_t *w, const cpu_q8_block *a, int64_t nb, int64_t mc, float *out)
{
    for (int64_t j = 0; j < mc; j++) {
        const cpu_q8_block *ar = a + j * nb;
        float acc = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *b = w + i * Q4_0_BYTES;
            int32_t sum = 0;
            for (int k = 0; k < CPU_Q8_QK / 2; k++) {
                sum += (int32_t)(b[2 + k] & 0x0f) * act(&ar[i], k);
                sum += (int32_t)(b[2 + k] >> 4) * act(&ar[i], k + CPU_Q8_QK / 2);
            }
            /* (q - 8) * qa summed = sum - 8 * sum(qa); s carries d_a * sum(qa). */
            acc += cpu_q8_half(b) * (ar[i].d * (float)sum - 8.0f * ar[i].s);
        }
        out[j] = acc;
    }
}

static void dot_q4_1(const uint8_t *w, const cpu_q8_block *a, int64_t nb, int64_t mc, float *out)
{
    for (int64_t j = 0; j < mc; j++) {
        const cpu_q8_block *ar = a + j * nb;
        float acc = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *b = w + i * Q4_1_BYTES;
            int32_t sum = 0;
            for (int k = 0; k < CPU_Q8_QK / 2; k++) {
                sum += (int32_t)(b[4 + k] & 0x0f) * act(&ar[i], k);
                sum += (int32_t)(b[4 + k] >> 4) * act(&ar[i], k + CPU_Q8_QK / 2);
            }
            acc += cpu_q8_half(b) * ar[i].d * (float)sum + cpu_q8_half(b + 2) * ar[i].s;
        }
        out[j] = acc;
    }
}

static void dot_q8_0(const uint8_t *w, const cpu_q8_block *a, int64_t nb, int64_t mc, float *out)
{
    for (int64_t j = 0; j < mc; j++) {
        const cpu_q8_block *ar = a + j * nb;
        float acc = 0.0f;
        for (int64_t i = 0; i < nb; i++) {
            const uint8_t *b = w + i * Q8_0_BYTES;
            int32_t sum = 0;
            for (int k = 0; k < CPU_Q8_QK; k++)
                sum += (int32_t)(int8_t)b[2 + k] * act(&ar[i], k);
            acc += cpu_q8_half(b) * ar[i].d * (float)sum;
        }
        out[j] = acc;
    }
}

/* round-half-away-from-zero of v (not NaN) as roundf does, without libm, saturated to +-128
 * (the callers clamp to +-127; v may be infinite when d is subnormal): the truncation's remainder
 * is exact in float. */
static inline int32_t round_away(float v)
{
    v = v > 128.0f ? 128.0f : v < -128.0f ? -128.0f : v;
    int32_t t = (int32_t)v;
    const float f = v - (float)t;
    return t + (f >= 0.5f) - (f <= -0.5f);
}

static inline int32_t clamp127(int32_t v)
{
    return v > 127 ? 127 : v < -127 ? -127 : v;
}

void cpu_q8_quantize_scalar(const float *x, cpu_q8_block *q, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += CPU_Q8_QK) {
        float amax = 0.0f;
        for (int j = 0; j < CPU_Q8_QK; j++) {
            const float ax = x[j] < 0.0f ? -x[j] : x[j];
            amax = ax > amax ? ax : amax; /* a NaN does not poison d */
        }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < CPU_Q8_QK; j++) {
            const float v = x[j] * id; /* |v| <= 127 * (1 + 2^-23), or NaN (x NaN or inf) */
            const int32_t hv = v != v ? 0 : clamp127(round_away(v));
            const float res = (v - (float)hv) * 256.0f; /* |res| <= 128 */
            const int32_t lv = res != res ? 0 : clamp127(round_away(res));
            q[i].hi[j] = (int8_t)hv;
            q[i].lo[j] = (int8_t)lv;
            sum += 256 * hv + lv;
        }
        q[i].d = d / 256.0f;
        q[i].s = q[i].d * (float)sum;
    }
}

const cpu_q8dot_impl cpu_q8dot_scalar = {"q8x2dot_scalar", 0, dot_q4_0, dot_q4_1, dot_q8_0,
                                         NULL, NULL, cpu_q8_quantize_scalar, NULL, NULL};
