/*
 * elem.cl - elementwise kernels: scale/silu/gelu/convert (k_unary), add/mul (k_binary), a
 * same-dtype unit copy (k_copy: cont of any dtype, bit-exact) and concat. One work-item per
 * output element (per block for k_copy of block types), the flat index split into the output's
 * dims; inputs are read through their own strides, so views need no copy first.
 */

#define UN_SCALE 0
#define UN_SILU 1
#define UN_GELU 2
#define UN_COPY 3

kernel void k_unary(cbuf x, ulong xo, long4 xnb, int xdt, wbuf o, ulong oo, long4 onb, int odt,
                    long4 ne, long total, int op, float scale)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long4 c = unflatten(g, ne);
    float v = ld_at(x, xo, xnb, c.s0, c.s1, c.s2, c.s3, xdt);
    float z;
    if (op == UN_SCALE) {
        z = v * scale;
    } else if (op == UN_SILU) {
        z = v / (1.0f + exp(-v));
    } else if (op == UN_GELU) {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        z = 0.5f * v * (1.0f + tanh(k * (v + 0.044715f * v * v * v)));
    } else {
        z = v;
    }
    st_at(o, oo, onb, c.s0, c.s1, c.s2, c.s3, z, odt);
}

kernel void k_binary(cbuf a, ulong ao, long4 anb, int adt, cbuf b, ulong bo, long4 bnb, int bdt,
                     wbuf o, ulong oo, long4 onb, int odt, long4 ne, long total, int mul)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long4 c = unflatten(g, ne);
    float x = ld_at(a, ao, anb, c.s0, c.s1, c.s2, c.s3, adt);
    float y = ld_at(b, bo, bnb, c.s0, c.s1, c.s2, c.s3, bdt); /* broadcast dims have stride 0 */
    st_at(o, oo, onb, c.s0, c.s1, c.s2, c.s3, mul ? x * y : x + y, odt);
}

/* Copies `unit` bytes per unit; ne counts units (elements, or blocks of a block type). */
kernel void k_copy(cbuf x, ulong xo, long4 xnb, wbuf o, ulong oo, long4 onb, long4 ne,
                   long total, int unit)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long4 c = unflatten(g, ne);
    cbuf s = x + row_addr(xo, xnb, c.s0, c.s1, c.s2) + c.s3 * xnb.s3;
    wbuf d = o + row_addr(oo, onb, c.s0, c.s1, c.s2) + c.s3 * onb.s3;
    if (unit == 4) {
        *(global uint *)d = *(global const uint *)s;
    } else if (unit == 2) {
        *(global ushort *)d = *(global const ushort *)s;
    } else {
        for (int i = 0; i < unit; i++)
            d[i] = s[i];
    }
}

/* out = a and b joined along padded dim `axis`; `na` is a's extent along it. */
kernel void k_concat(cbuf a, ulong ao, long4 anb, int adt, cbuf b, ulong bo, long4 bnb, int bdt,
                     wbuf o, ulong oo, long4 onb, int odt, long4 ne, long total, int axis,
                     long na)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long4 c = unflatten(g, ne);
    long idx[4] = {c.s0, c.s1, c.s2, c.s3};
    float v;
    if (idx[axis] < na) {
        v = ld_at(a, ao, anb, idx[0], idx[1], idx[2], idx[3], adt);
    } else {
        idx[axis] -= na;
        v = ld_at(b, bo, bnb, idx[0], idx[1], idx[2], idx[3], bdt);
    }
    st_at(o, oo, onb, c.s0, c.s1, c.s2, c.s3, v, odt);
}

/* Fast paths for contiguous f32 tensors (the common case: residual adds, norm weights, the
 * FFN's silu and gate product): a flat index, no dims to split. b repeats every nb elements
 * (nb == total: same shape; a trailing-dims weight otherwise). */
kernel void k_binary_flat(global const float *a, ulong ao, global const float *b, ulong bo,
                          long nb, global float *o, ulong oo, long total, int mul)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    /* same shape: no modulo; else a 32-bit one when it fits (64-bit division is slow) */
    long bi = nb == total ? g : total <= 0xffffffffL ? (long)((uint)g % (uint)nb) : g % nb;
    float x = a[ao + g], y = b[bo + bi];
    o[oo + g] = mul ? x * y : x + y;
}

kernel void k_unary_flat(global const float *x, ulong xo, global float *o, ulong oo, long total,
                         int op, float scale)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    float v = x[xo + g], z;
    if (op == UN_SCALE) {
        z = v * scale;
    } else if (op == UN_SILU) {
        z = v / (1.0f + exp(-v));
    } else if (op == UN_GELU) {
        const float k = 0.7978845608028654f;
        z = 0.5f * v * (1.0f + tanh(k * (v + 0.044715f * v * v * v)));
    } else {
        z = v;
    }
    o[oo + g] = z;
}
