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

const cpu_q8dot_impl cpu_q8dot_scalar = {"q8x2dot_scalar", 0, dot_q4_0, dot_q4_1, dot_q8_0};
