/*
 * rows.cl - kernels that index rows by id: get_rows (embedding lookup from a table of any dtype,
 * quantized tables dequantized on the fly), set_rows (KV-cache writes, converting to dst's
 * dtype) with its id pre-pass, and argmax. A bad id never touches memory: it raises flag[0],
 * which the host turns into an error after the run.
 */

/* ne: the output's dims (.s3 = columns). ids are addressed with the output's outer coordinates
 * through inb (ids dim d+1 is output dim d). */
kernel void k_get_rows(cbuf t, ulong to, long4 tnb, int tdt, cbuf ids, ulong io, long4 inb,
                       wbuf o, ulong oo, long4 onb, int odt, long4 ne, long total, long rows,
                       global int *flag)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long4 c = unflatten(g, ne);
    int id = *(global const int *)(ids + (long)io + c.s0 * inb.s1 + c.s1 * inb.s2 + c.s2 * inb.s3);
    if (id < 0 || id >= rows) {
        flag[0] = 1;
        return;
    }
    float v = ld_at(t, to, tnb, 0, 0, id, c.s3, tdt);
    st_at(o, oo, onb, c.s0, c.s1, c.s2, c.s3, v, odt);
}

/* skip[n] = 1 when ids[n] is out of range (and flag raised) or a later n writes the same row:
 * the last write wins, as if the rows were written in order. */
kernel void k_set_rows_prep(cbuf ids, ulong io, long inb, long n_ids, long rows,
                            global int *skip, global int *flag)
{
    long n = get_global_id(0);
    if (n >= n_ids)
        return;
    int id = *(global const int *)(ids + (long)io + n * inb);
    int s = 0;
    if (id < 0 || id >= rows) {
        flag[0] = 1;
        s = 1;
    } else {
        for (long m = n + 1; m < n_ids; m++)
            if (*(global const int *)(ids + (long)io + m * inb) == id) {
                s = 1;
                break;
            }
    }
    skip[n] = s;
}

/* Plain dst: one work-item per src element; ne are src's dims, p the padded row dim (0..2). */
kernel void k_set_rows(cbuf s, ulong so, long4 snb, int sdt, cbuf ids, ulong io, long inb,
                       wbuf o, ulong oo, long4 onb, int odt, long4 ne, long total, int p,
                       global const int *skip)
{
    long g = get_global_id(0);
    if (g >= total)
        return;
    long4 c = unflatten(g, ne);
    long idx[3] = {c.s0, c.s1, c.s2};
    long n = idx[p];
    if (skip[n])
        return;
    float v = ld_at(s, so, snb, idx[0], idx[1], idx[2], c.s3, sdt);
    idx[p] = *(global const int *)(ids + (long)io + n * inb);
    st_at(o, oo, onb, idx[0], idx[1], idx[2], c.s3, v, odt);
}

/* One work-group per row of x (ne: x's dims); the first index of the maximum, NaNs skipped (an
 * all-NaN row gives 0). The output's coordinates are x's outer ones, through onb.s1..s3. */
kernel void k_argmax(cbuf x, ulong xo, long4 xnb, int xdt, wbuf o, ulong oo, long4 onb,
                     long4 ne, local float *sv, local int *si)
{
    long row = get_group_id(0);
    int l = (int)get_local_id(0), wg = (int)get_local_size(0);
    long4 rc = unflatten(row, (long4)(1, ne.s0, ne.s1, ne.s2));
    long xr = row_addr(xo, xnb, rc.s1, rc.s2, rc.s3);
    float best = 0.0f;
    int bi = -1;
    for (long i = l; i < ne.s3; i += wg) {
        float v = ld_elem(x, xr, i, xnb.s3, xdt);
        if (!isnan(v) && (bi < 0 || v > best)) {
            best = v;
            bi = (int)i;
        }
    }
    sv[l] = best;
    si[l] = bi;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = wg >> 1; w > 0; w >>= 1) {
        if (l < w) {
            float ov = sv[l + w];
            int oi = si[l + w];
            int mi = si[l];
            if (oi >= 0 && (mi < 0 || ov > sv[l] || (ov == sv[l] && oi < mi))) {
                sv[l] = ov;
                si[l] = oi;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) {
        int r = si[0] < 0 ? 0 : si[0];
        *(global int *)(o + (long)oo + rc.s1 * onb.s1 + rc.s2 * onb.s2 + rc.s3 * onb.s3) = r;
    }
}
