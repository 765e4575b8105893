/*
 * mm_chunk.glsl — loading matmul operands eight elements at a time. K is walked in chunks of 8
 * elements; for a block-type b a chunk is a quarter of a GGUF block chosen so that its quants
 * are 4 consecutive bytes (elements 4q..4q+3 in their low nibbles and 16+4q..16+4q+3 in their
 * high nibbles; for q8_0 two runs of 4 bytes), so a chunk costs one scale load and two 16-bit
 * loads instead of eight generic element loads. a is read in the same element order as b.
 * Requires T1 (a) and T2 (b) from common.glsl.
 */

/* Row-relative element index of slot k (0..7) of chunk c, in b's chunk order. */
uint chunk_elem(uint c, uint k)
{
    if (T2 >= DT_Q4_0)
        return (c >> 2) * QK + (k < 4u ? 4u * (c & 3u) + k : 12u + 4u * (c & 3u) + k);
    return c * 8u + k;
}

/* Chunk c of a row of a (any dtype) starting at byte rowoff; elements past K read as 0. */
void a_chunk(Tensor a, uint rowoff, uint c, uint K, out float v[8])
{
    uint bs = dt_bs(T1);
    [[unroll]] for (uint k = 0u; k < 8u; k++) {
        uint e = chunk_elem(c, k);
        v[k] = e < K ? ld_elem(T1, a.base, rowoff + (e / bs) * a.nb.w, e % bs) : 0.0;
    }
}

/* Chunk c of a row of b starting at byte rowoff. */
void b_chunk(Tensor b, uint rowoff, uint c, uint K, out float v[8])
{
    if (T2 < DT_Q4_0) {
        [[unroll]] for (uint k = 0u; k < 8u; k++) {
            uint e = c * 8u + k;
            v[k] = e < K ? ld_elem(T2, b.base, rowoff + e * b.nb.w, 0u) : 0.0;
        }
        return;
    }
    uint q = c & 3u;
    uint off = rowoff + (c >> 2) * b.nb.w; /* the block */
    float d = f16_to_f32(ld16(b.base, off));
    if (T2 == DT_Q8_0) {
        uint lo = ld32_a2(b.base, off + 2u + 4u * q), hi = ld32_a2(b.base, off + 18u + 4u * q);
        [[unroll]] for (uint k = 0u; k < 4u; k++) {
            v[k] = float(int(lo << (24u - 8u * k)) >> 24) * d;
            v[k + 4u] = float(int(hi << (24u - 8u * k)) >> 24) * d;
        }
        return;
    }
    uint qs = T2 == DT_Q4_0 ? 2u : T2 == DT_Q4_1 ? 4u : T2 == DT_Q5_0 ? 6u : 8u;
    uint w = ld32_a2(b.base, off + qs + 4u * q);
    uint qh = 0u;
    if (T2 == DT_Q5_0 || T2 == DT_Q5_1)
        qh = ld32_a2(b.base, off + (T2 == DT_Q5_0 ? 2u : 4u));
    float m = (T2 == DT_Q4_1 || T2 == DT_Q5_1) ? f16_to_f32(ld16(b.base, off + 2u)) : 0.0;
    [[unroll]] for (uint k = 0u; k < 4u; k++) {
        uint lo = (w >> (8u * k)) & 15u, hi = (w >> (8u * k + 4u)) & 15u;
        if (T2 == DT_Q5_0 || T2 == DT_Q5_1) {
            lo |= ((qh >> (4u * q + k)) & 1u) << 4;
            hi |= ((qh >> (16u + 4u * q + k)) & 1u) << 4;
        }
        if (T2 == DT_Q4_0) {
            v[k] = float(int(lo) - 8) * d;
            v[k + 4u] = float(int(hi) - 8) * d;
        } else if (T2 == DT_Q5_0) {
            v[k] = float(int(lo) - 16) * d;
            v[k + 4u] = float(int(hi) - 16) * d;
        } else {
            v[k] = float(lo) * d + m;
            v[k + 4u] = float(hi) * d + m;
        }
    }
}
