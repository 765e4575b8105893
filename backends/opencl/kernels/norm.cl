/*
 * norm.cl - row kernels: rms_norm / layer_norm and softmax (one work-group per row, reductions
 * in local memory, two passes for layer_norm's variance so rows far from zero mean keep their
 * precision), and rope.
 *
 * RoPE angles reach 32767 * 1 radians and more; an f32 product would be off by ~4e-3 there. So
 * the host passes each frequency as a float pair (hi + lo, from a double), the kernel forms
 * pos * freq as a float pair with an FMA, and reduces it by 2*pi in Cody-Waite steps whose first
 * step is exact; sin/cos then see |r| <= pi with an error near 1e-7.
 */

/* ne: x's dims; one group per row. Writes may alias x (in place): each element is read by the
 * work-item that writes it, before it does. */
kernel void k_norm(cbuf x, ulong xo, long4 xnb, int xdt, wbuf o, ulong oo, long4 onb, int odt,
                   long4 ne, int layer, float eps, local float *red)
{
    long row = get_group_id(0);
    int l = (int)get_local_id(0), wg = (int)get_local_size(0);
    long4 rc = unflatten(row, (long4)(1, ne.s0, ne.s1, ne.s2));
    long xr = row_addr(xo, xnb, rc.s1, rc.s2, rc.s3);
    long n = ne.s3;
    float mean = 0.0f;
    if (layer) {
        float s = 0.0f;
        for (long i = l; i < n; i += wg)
            s += ld_elem(x, xr, i, xnb.s3, xdt);
        mean = wg_sum(red, s) / (float)n;
    }
    float sq = 0.0f;
    for (long i = l; i < n; i += wg) {
        float d = ld_elem(x, xr, i, xnb.s3, xdt) - mean;
        sq += d * d;
    }
    float inv = 1.0f / sqrt(wg_sum(red, sq) / (float)n + eps);
    long orow = row_addr(oo, onb, rc.s1, rc.s2, rc.s3);
    for (long i = l; i < n; i += wg)
        st_plain(o, orow + i * onb.s3, (ld_elem(x, xr, i, xnb.s3, xdt) - mean) * inv, odt);
}

/* softmax(x * scale + mask) over rows; mask strides are zero along broadcast dims. A row whose
 * positions are all removed (-inf) gives zeros. */
kernel void k_softmax(cbuf x, ulong xo, long4 xnb, int xdt, cbuf m, ulong mo, long4 mnb, int mdt,
                      int has_mask, wbuf o, ulong oo, long4 onb, int odt, long4 ne, float scale,
                      local float *red)
{
    long row = get_group_id(0);
    int l = (int)get_local_id(0), wg = (int)get_local_size(0);
    long4 rc = unflatten(row, (long4)(1, ne.s0, ne.s1, ne.s2));
    long xr = row_addr(xo, xnb, rc.s1, rc.s2, rc.s3);
    long mr = has_mask ? row_addr(mo, mnb, rc.s1, rc.s2, rc.s3) : 0;
    long n = ne.s3;
#define LOGIT(i) (ld_elem(x, xr, (i), xnb.s3, xdt) * scale + \
                  (has_mask ? ld_elem(m, mr, (i), mnb.s3, mdt) : 0.0f))
    float mx = -INFINITY;
    for (long i = l; i < n; i += wg)
        mx = fmax(mx, LOGIT(i));
    mx = wg_max(red, mx);
    long orow = row_addr(oo, onb, rc.s1, rc.s2, rc.s3);
    if (mx == -INFINITY) {
        for (long i = l; i < n; i += wg)
            st_plain(o, orow + i * onb.s3, 0.0f, odt);
        return;
    }
    float s = 0.0f;
    for (long i = l; i < n; i += wg)
        s += exp(LOGIT(i) - mx);
    float inv = 1.0f / wg_sum(red, s);
    for (long i = l; i < n; i += wg)
        st_plain(o, orow + i * onb.s3, exp(LOGIT(i) - mx) * inv, odt);
#undef LOGIT
}

/* sin/cos of pos * (fh + fl). */
inline float2 rope_sincos(int pos, float fh, float fl)
{
    const float C1 = 6.28318548202514648f;      /* float(2 pi) */
    const float C2 = -1.7484556000744883e-07f; /* 2 pi - C1 */
    float p = (float)pos;
    float hi = p * fh;
    float lo = fma(p, fh, -hi) + p * fl;
    float k = rint(hi * 0.15915494309189535f);
    float r = fma(-k, C1, hi); /* exact: hi and k*C1 share their low bits' grid */
    r = fma(-k, C2, r) + lo;
    float c;
    float s = sincos(r, &c);
    return (float2)(s, c);
}

/* x: [T, H, D] padded (1, T, H, D); one work-item per pair of a row: pairs below dims/2 rotate
 * (normal: adjacent elements; neox: i and i + dims/2), the rest copy two pass-through elements. */
kernel void k_rope(cbuf x, ulong xo, long4 xnb, int xdt, cbuf pos, ulong po, long pnb, wbuf o,
                   ulong oo, long4 onb, int odt, long4 ne, long total, global const float2 *freq,
                   int dims, int neox)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long pairs = (ne.s3 + 1) / 2;
    long pi = g % pairs, row = g / pairs;
    long h = row % ne.s2, t = row / ne.s2;
    long xr = row_addr(xo, xnb, 0, t, h), orow = row_addr(oo, onb, 0, t, h);
    int half_dims = dims / 2;
    if (pi < half_dims) {
        long a = neox ? pi : 2 * pi, b = neox ? pi + half_dims : 2 * pi + 1;
        int ps = *(global const int *)(pos + (long)po + t * pnb);
        float2 sc = rope_sincos(ps, freq[pi].x, freq[pi].y);
        float x0 = ld_elem(x, xr, a, xnb.s3, xdt), x1 = ld_elem(x, xr, b, xnb.s3, xdt);
        st_plain(o, orow + a * onb.s3, x0 * sc.y - x1 * sc.x, odt);
        st_plain(o, orow + b * onb.s3, x0 * sc.x + x1 * sc.y, odt);
    } else {
        long e = dims + 2 * (pi - half_dims);
        for (long i = e; i < e + 2 && i < ne.s3; i++)
            st_plain(o, orow + i * onb.s3, ld_elem(x, xr, i, xnb.s3, xdt), odt);
    }
}
