/*
 * attention.cl - fused attention: softmax(q . k^T * scale + mask [+ causal/window]) . v in one
 * pass over the keys with an online softmax (running maximum and sum, the accumulator rescaled
 * when the maximum grows), so the T x S score matrix never reaches memory.
 *
 * One work-group per (query row t, query head h): the scaled query sits in local memory; each
 * chunk of get_local_size(0) keys is scored one key per work-item, then the work-items split
 * the head dim to accumulate p . v (consecutive work-items read consecutive v elements). Query
 * head h reads kv head h / group (GQA). With causal, query t sits at position S - T + t and sees
 * keys j <= that position; a window > 0 also hides keys j <= position - window. A row whose keys
 * are all removed gives zeros, as softmax does.
 */

#define ATT_MAX_D_PER_ITEM 4

kernel void k_attention(cbuf q, ulong qo, long4 qnb, int qdt, cbuf k, ulong ko, long4 knb, int kdt,
                        cbuf v, ulong vo, long4 vnb, int vdt, cbuf m, ulong mo, long4 mnb, int mdt,
                        int has_mask, wbuf o, ulong oo, long4 onb, int odt, long T, long Hq,
                        long D, long S, long group, float scale, int causal, long window,
                        local float *qs, local float *ps, local float *red)
{
    long row = get_group_id(0);
    int l = (int)get_local_id(0), wg = (int)get_local_size(0);
    long h = row % Hq, t = row / Hq, hk = h / group;
    long qr = row_addr(qo, qnb, 0, t, h);
    for (long d = l; d < D; d += wg)
        qs[d] = ld_elem(q, qr, d, qnb.s3, qdt) * scale;
    barrier(CLK_LOCAL_MEM_FENCE);

    long p = S - T + t, lo = 0, hi = S;
    if (causal && p + 1 < hi)
        hi = p + 1;
    if (window > 0 && p - window + 1 > lo)
        lo = p - window + 1;
    long mr = has_mask ? row_addr(mo, mnb, 0, 0, t) : 0;

    float run_max = -INFINITY, run_sum = 0.0f;
    float acc[ATT_MAX_D_PER_ITEM];
    for (int i = 0; i < ATT_MAX_D_PER_ITEM; i++)
        acc[i] = 0.0f;
    for (long j0 = lo; j0 < hi; j0 += wg) {
        long j = j0 + l;
        float s = -INFINITY;
        if (j < hi) {
            long kr = row_addr(ko, knb, 0, j, hk);
            float dt = 0.0f;
            for (long d = 0; d < D; d++)
                dt += qs[d] * ld_elem(k, kr, d, knb.s3, kdt);
            s = dt + (has_mask ? ld_elem(m, mr, j, mnb.s3, mdt) : 0.0f);
        }
        float new_max = fmax(run_max, wg_max(red, s)); /* the same in every work-item */
        if (new_max == -INFINITY)
            continue; /* every key so far removed: nothing to add (uniform branch) */
        float pj = s == -INFINITY ? 0.0f : exp(s - new_max);
        ps[l] = pj;
        float alpha = run_max == -INFINITY ? 0.0f : exp(run_max - new_max);
        run_sum = run_sum * alpha + wg_sum(red, pj); /* its barriers also publish ps */
        long n = hi - j0 < wg ? hi - j0 : wg;
        for (int i = 0; i < ATT_MAX_D_PER_ITEM; i++) {
            long d = l + (long)i * wg;
            if (d >= D)
                break;
            float a = acc[i] * alpha;
            for (long jj = 0; jj < n; jj++)
                a += ps[jj] * ld_elem(v, row_addr(vo, vnb, 0, j0 + jj, hk), d, vnb.s3, vdt);
            acc[i] = a;
        }
        run_max = new_max;
        barrier(CLK_LOCAL_MEM_FENCE); /* ps is rewritten by the next chunk */
    }
    long orow = row_addr(oo, onb, 0, t, h);
    for (int i = 0; i < ATT_MAX_D_PER_ITEM; i++) {
        long d = l + (long)i * wg;
        if (d >= D)
            break;
        st_plain(o, orow + d * onb.s3, run_sum > 0.0f ? acc[i] / run_sum : 0.0f, odt);
    }
}
