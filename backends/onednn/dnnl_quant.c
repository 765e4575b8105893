/*
 * Quantization for the oneDNN int8 matmul.
 *
 * oneDNN 2.6 has neither 4-bit weights nor per-block scales, so q4_0/q4_1/q8_0 weights are
 * dequantized (with the host's reference dequantizer, bit-exact with the CPU backend) and
 * requantized to s8 with one symmetric scale per output row: w ~= q * scale, q in [-127, 127].
 * Activations are quantized per row (per token) at every call the same way; per-row activation
 * scales cannot be expressed as 2.6 output scales (those are per output column at most), so the
 * matmul writes int32 and the plugin applies both scales in its epilogue (dnnl_ops.c).
 * The default mode instead dequantizes the weights once to bf16 rows.
 */
#include "dnnl_backend.h"

#include <math.h>
#include <string.h>

static int8_t q8(float v, float inv)
{
    float q = nearbyintf(v * inv);
    if (q > 127.0f)
        q = 127.0f;
    if (q < -127.0f)
        q = -127.0f;
    return (int8_t)q;
}

bst_status dnnl_requant_rows(uint32_t dtype, const uint8_t *src, int64_t row_stride, int64_t rows,
                             int64_t cols, int8_t *dst_q, float *dst_scale)
{
    float *row = dnnl_host->alloc((size_t)cols * sizeof(float), 64);
    if (!row) {
        dnnl_host->set_error("onednn: requantizing a weight: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    for (int64_t r = 0; r < rows; r++) {
        bst_status st = dnnl_host->dequantize((bst_dtype)dtype, src + r * row_stride, row, cols);
        if (st != BST_OK) {
            dnnl_host->free(row);
            return st;
        }
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            float a = fabsf(row[c]);
            amax = a > amax ? a : amax;
        }
        float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int8_t *q = dst_q + r * cols;
        for (int64_t c = 0; c < cols; c++)
            q[c] = q8(row[c], inv);
        dst_scale[r] = scale;
    }
    dnnl_host->free(row);
    return BST_OK;
}

void dnnl_quant_act_rows(const uint8_t *src, int64_t row_stride, int64_t elem_stride, int64_t rows,
                         int64_t cols, int8_t *dst_q, float *dst_scale)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *p = src + r * row_stride;
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) {
            float v;
            memcpy(&v, p + c * elem_stride, sizeof v);
            float a = fabsf(v);
            amax = a > amax ? a : amax;
        }
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int8_t *q = dst_q + r * cols;
        if (elem_stride == (int64_t)sizeof(float)) {
            const float *f = (const float *)(const void *)p;
            for (int64_t c = 0; c < cols; c++)
                q[c] = q8(f[c], inv);
        } else {
            for (int64_t c = 0; c < cols; c++) {
                float v;
                memcpy(&v, p + c * elem_stride, sizeof v);
                q[c] = q8(v, inv);
            }
        }
        dst_scale[r] = amax / 127.0f;
    }
}

static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

bst_status dnnl_dequant_bf16_rows(uint32_t dtype, const uint8_t *src, int64_t row_stride,
                                  int64_t rows, int64_t cols, uint16_t *dst)
{
    float *row = dnnl_host->alloc((size_t)cols * sizeof(float), 64);
    if (!row) {
        dnnl_host->set_error("onednn: converting a weight to bf16: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    for (int64_t r = 0; r < rows; r++) {
        bst_status st = dnnl_host->dequantize((bst_dtype)dtype, src + r * row_stride, row, cols);
        if (st != BST_OK) {
            dnnl_host->free(row);
            return st;
        }
        dnnl_to_bf16_rows((const uint8_t *)row, 0, sizeof(float), 1, cols, dst + r * cols);
    }
    dnnl_host->free(row);
    return BST_OK;
}

void dnnl_to_bf16_rows(const uint8_t *src, int64_t row_stride, int64_t elem_stride, int64_t rows,
                       int64_t cols, uint16_t *dst)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *p = src + r * row_stride;
        for (int64_t c = 0; c < cols; c++) {
            float v;
            memcpy(&v, p + c * elem_stride, sizeof v);
            dst[r * cols + c] = bf16_of(v);
        }
    }
}
