/*
 * quant.cl - block quantizers (quantize, cont/cast into a block type, set_rows into a quantized
 * state). One work-item per output block. The formulas follow graph/quant.c (ggml's *_ref)
 * operation by operation, with contraction off so no product and sum fuse into an FMA that
 * would round differently: on a device with correctly rounded division the bytes match the
 * reference quantizer's.
 */
#pragma OPENCL FP_CONTRACT OFF

inline void st_half(wbuf p, float v) { *(global ushort *)p = f32_to_f16_bits(v); }

inline void st_u32le(wbuf p, uint v)
{
    p[0] = (uchar)v;
    p[1] = (uchar)(v >> 8);
    p[2] = (uchar)(v >> 16);
    p[3] = (uchar)(v >> 24);
}

inline int trunc_clamp(float v, int hi)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

inline float signed_absmax(const float *x)
{
    float amax = 0.0f, mx = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabs(x[j])) {
            amax = fabs(x[j]);
            mx = x[j];
        }
    }
    return mx;
}

inline void quant_block(const float *x, wbuf b, int dt)
{
    if (dt == DT_Q4_0 || dt == DT_Q5_0) {
        const bool five = dt == DT_Q5_0;
        const float d = signed_absmax(x) / (five ? -16.0f : -8.0f);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(b, d);
        uint qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[j + QK / 2] * id;
            if (five) {
                const int q0 = trunc_clamp(x0 + 16.5f, 31), q1 = trunc_clamp(x1 + 16.5f, 31);
                b[6 + j] = (uchar)((q0 & 15) | ((q1 & 15) << 4));
                qh |= ((uint)(q0 >> 4) & 1u) << j;
                qh |= ((uint)(q1 >> 4) & 1u) << (j + QK / 2);
            } else {
                const int q0 = trunc_clamp(x0 + 8.5f, 15), q1 = trunc_clamp(x1 + 8.5f, 15);
                b[2 + j] = (uchar)(q0 | (q1 << 4));
            }
        }
        if (five)
            st_u32le(b + 2, qh);
    } else if (dt == DT_Q4_1 || dt == DT_Q5_1) {
        const bool five = dt == DT_Q5_1;
        float mn = FLT_MAX, mx = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < mn)
                mn = x[j];
            if (x[j] > mx)
                mx = x[j];
        }
        const float d = (mx - mn) / (five ? 31.0f : 15.0f);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(b, d);
        st_half(b + 2, mn);
        uint qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = (x[j] - mn) * id, x1 = (x[j + QK / 2] - mn) * id;
            const int hi = five ? 31 : 15;
            const int q0 = trunc_clamp(x0 + 0.5f, hi), q1 = trunc_clamp(x1 + 0.5f, hi);
            b[(five ? 8 : 4) + j] = (uchar)((q0 & 15) | ((q1 & 15) << 4));
            qh |= ((uint)(q0 >> 4) & 1u) << j;
            qh |= ((uint)(q1 >> 4) & 1u) << (j + QK / 2);
        }
        if (five)
            st_u32le(b + 4, qh);
    } else { /* DT_Q8_0 */
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            amax = fmax(amax, fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_half(b, d);
        for (int j = 0; j < QK; j++) {
            float r = round(x[j] * id);
            int q = r != r ? 0 : r > 127.0f ? 127 : r < -128.0f ? -128 : (int)r;
            b[2 + j] = (uchar)(char)q;
        }
    }
}

/* ne: the output's dims in elements (.s3 a multiple of 32); one work-item per block. */
kernel void k_quantize(cbuf x, ulong xo, long4 xnb, int xdt, wbuf o, ulong oo, long4 onb, int odt,
                       long4 ne, long total)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long nblk = ne.s3 / QK;
    long blk = g % nblk;
    long4 rc = unflatten(g / nblk, (long4)(1, ne.s0, ne.s1, ne.s2));
    long xrow = row_addr(xo, xnb, rc.s1, rc.s2, rc.s3);
    float v[QK];
    for (int j = 0; j < QK; j++)
        v[j] = ld_elem(x, xrow, blk * QK + j, xnb.s3, xdt);
    quant_block(v, o + row_addr(oo, onb, rc.s1, rc.s2, rc.s3) + blk * onb.s3, odt);
}

/* set_rows into a block-type dst: ne are src's dims (.s3 in elements), p the padded row dim,
 * skip[n] set for rows a later id overwrites (or a bad id). */
kernel void k_set_rows_q(cbuf s, ulong so, long4 snb, int sdt, cbuf ids, ulong io, long inb,
                         wbuf o, ulong oo, long4 onb, int odt, long4 ne, long total, int p,
                         global const int *skip)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long nblk = ne.s3 / QK;
    long blk = g % nblk;
    long4 rc = unflatten(g / nblk, (long4)(1, ne.s0, ne.s1, ne.s2));
    long idx[3] = {rc.s1, rc.s2, rc.s3};
    long n = idx[p];
    if (skip[n])
        return;
    long srow = row_addr(so, snb, idx[0], idx[1], idx[2]);
    float v[QK];
    for (int j = 0; j < QK; j++)
        v[j] = ld_elem(s, srow, blk * QK + j, snb.s3, sdt);
    idx[p] = *(global const int *)(ids + io + n * inb);
    quant_block(v, o + row_addr(oo, onb, idx[0], idx[1], idx[2]) + blk * onb.s3, odt);
}
