/*
 * quant.glsl — quantizing 32 floats into one GGUF block, following graph/quant.c (ggml's
 * quantize_row_*_ref: the same formulas, scale inverted before it is rounded to f16, clamped
 * float->int conversions). GPU division may round differently from the host's, so a block can
 * differ from the reference bytes by one code step; it always stays within the block's
 * quantization error.
 *
 * Every field of every block type is 2-byte aligned, so a block is written as 16-bit halves:
 * never a byte outside the block.
 */

uint trunc_clamp(float v, uint hi)
{
    if (!(v > 0.0))
        return 0u;
    if (v >= float(hi))
        return hi;
    return uint(v);
}

/* roundf: half away from zero; NaN -> 0; clamped to int8. */
int round_q8(float v)
{
    if (isnan(v))
        return 0;
    float t = trunc(v);
    if (abs(v - t) >= 0.5)
        t += sign(v);
    return int(clamp(t, -128.0, 127.0));
}

uint block_bytes(uint dt)
{
    return dt == DT_Q4_0 ? 18u : dt == DT_Q4_1 ? 20u : dt == DT_Q5_0 ? 22u : dt == DT_Q5_1 ? 24u : 34u;
}

/* Writes the block of x (32 values) at byte `off` of b. */
void st_block(uint dt, uvec2 b, uint off, float x[32])
{
    uint h[17]; /* the block as little-endian 16-bit halves */
    if (dt == DT_Q8_0) {
        float amax = 0.0;
        for (uint j = 0u; j < QK; j++)
            if (abs(x[j]) > amax) /* a NaN does not poison d */
                amax = abs(x[j]);
        float d = amax / 127.0;
        float id = d != 0.0 ? 1.0 / d : 0.0;
        h[0] = f32_to_f16(d);
        for (uint j = 0u; j < QK; j += 2u) {
            uint q0 = uint(round_q8(x[j] * id)) & 0xFFu;
            uint q1 = uint(round_q8(x[j + 1u] * id)) & 0xFFu;
            h[1u + j / 2u] = q0 | (q1 << 8);
        }
    } else if (dt == DT_Q4_0 || dt == DT_Q5_0) {
        float amax = 0.0, mx = 0.0; /* largest magnitude, sign kept, first wins */
        for (uint j = 0u; j < QK; j++)
            if (amax < abs(x[j])) {
                amax = abs(x[j]);
                mx = x[j];
            }
        bool five = dt == DT_Q5_0;
        float d = mx / (five ? -16.0 : -8.0);
        float id = d != 0.0 ? 1.0 / d : 0.0;
        float bias = five ? 16.5 : 8.5;
        uint top = five ? 31u : 15u;
        h[0] = f32_to_f16(d);
        uint qh = 0u;
        uint qs_half = five ? 3u : 1u; /* first half holding qs */
        for (uint j = 0u; j < QK / 2u; j += 2u) {
            uint a0 = trunc_clamp(x[j] * id + bias, top), b0 = trunc_clamp(x[j + 16u] * id + bias, top);
            uint a1 = trunc_clamp(x[j + 1u] * id + bias, top);
            uint b1 = trunc_clamp(x[j + 17u] * id + bias, top);
            qh |= ((a0 >> 4) & 1u) << j | ((a1 >> 4) & 1u) << (j + 1u);
            qh |= ((b0 >> 4) & 1u) << (j + 16u) | ((b1 >> 4) & 1u) << (j + 17u);
            uint byte0 = (a0 & 15u) | ((b0 & 15u) << 4), byte1 = (a1 & 15u) | ((b1 & 15u) << 4);
            h[qs_half + j / 2u] = byte0 | (byte1 << 8);
        }
        if (five) {
            h[1] = qh & 0xFFFFu;
            h[2] = qh >> 16;
        }
    } else { /* q4_1, q5_1 */
        float mn = 3.402823466e38, mx = -3.402823466e38;
        for (uint j = 0u; j < QK; j++) {
            if (x[j] < mn)
                mn = x[j];
            if (x[j] > mx)
                mx = x[j];
        }
        bool five = dt == DT_Q5_1;
        float d = (mx - mn) / (five ? 31.0 : 15.0);
        float id = d != 0.0 ? 1.0 / d : 0.0;
        uint top = five ? 31u : 15u;
        h[0] = f32_to_f16(d);
        h[1] = f32_to_f16(mn);
        uint qh = 0u;
        uint qs_half = five ? 4u : 2u;
        for (uint j = 0u; j < QK / 2u; j += 2u) {
            uint a0 = trunc_clamp((x[j] - mn) * id + 0.5, top);
            uint a1 = trunc_clamp((x[j + 1u] - mn) * id + 0.5, top);
            uint b0 = trunc_clamp((x[j + 16u] - mn) * id + 0.5, top);
            uint b1 = trunc_clamp((x[j + 17u] - mn) * id + 0.5, top);
            qh |= ((a0 >> 4) & 1u) << j | ((a1 >> 4) & 1u) << (j + 1u);
            qh |= ((b0 >> 4) & 1u) << (j + 16u) | ((b1 >> 4) & 1u) << (j + 17u);
            uint byte0 = (a0 & 15u) | ((b0 & 15u) << 4), byte1 = (a1 & 15u) | ((b1 & 15u) << 4);
            h[qs_half + j / 2u] = byte0 | (byte1 << 8);
        }
        if (five) {
            h[2] = qh & 0xFFFFu;
            h[3] = qh >> 16;
        }
    }
    uint n = block_bytes(dt) / 2u;
#if S16
    for (uint i = 0u; i < n; i++)
        st16(b, off + 2u * i, h[i]);
#else
    /* Whole words inside the block are stored plainly; only a half-word at either end (the
     * block may start or end mid-word) needs the atomic masked store. */
    uint i = 0u;
    if ((off & 2u) != 0u) {
        st16(b, off, h[0]);
        i = 1u;
    }
    for (; i + 1u < n; i += 2u)
        st32(b, off + 2u * i, h[i] | (h[i + 1u] << 16));
    if (i < n)
        st16(b, off + 2u * i, h[i]);
#endif
}
