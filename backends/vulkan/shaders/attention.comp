#version 450
/*
 * attention.comp — fused attention: softmax(q . k^T * scale + mask [+ causal/window]) . v in one
 * pass over the keys with an online softmax (running maximum and sum, the accumulator rescaled
 * when the maximum grows), so the T x S score matrix never reaches memory.
 *
 * One workgroup per (query row t, query head h): the scaled query sits in shared memory; each
 * chunk of WG keys is scored one key per invocation, the chunk's maximum and sum are workgroup
 * reductions (common.glsl: subgroup arithmetic correct at any subgroup size, or a shared tree),
 * then the invocations split the head dim to accumulate p . v, DPI elements each. Query head h
 * reads kv head h / (Hq / Hkv) (GQA). With causal, query t sits at position S - T + t and sees
 * keys j <= that position; a window > 0 also hides keys j <= position - window. A row whose keys
 * are all removed gives zeros, as softmax does. T and S are the run's extents (q's and k's dim
 * 1 in the record); k and v may be strided views of the KV cache, in any plain float dtype.
 *
 * Slots: 0 out [T,Hq,D], 1 q, 2 k, 3 v, 4 mask (strides in pc.u.zw: its row and column; a dim of
 * extent 1 broadcasts). pc.u.x = causal, pc.u.y = window, pc.f.x = scale.
 */
#define NEED_REDUCE
#include "common.glsl"
layout(constant_id = 6) const uint HAS_MASK = 0;
layout(constant_id = 7) const uint TM = 1;  /* mask dtype */
layout(constant_id = 8) const uint D = 64;  /* head dim */
layout(constant_id = 9) const uint DPI = 1; /* head-dim elements per invocation: ceil(D / WG) */

shared float qs[D];
shared float ps[WG];

const float NEG_INF = -1.0 / 0.0;

/* Slot 4 has no push-constant strides: the mask's come in pc.u.zw. */
Tensor mask_tensor()
{
    uint r = pc.rec + 4u + 8u * 4u;
    Tensor t;
    t.base = uvec2(prm(r), prm(r + 1u));
    t.rem = prm(r + 2u);
    t.ne = uvec4(prm(r + 4u), prm(r + 5u), prm(r + 6u), prm(r + 7u));
    t.nb = uvec4(0u, 0u, t.ne.z == 1u ? 0u : pc.u.z, t.ne.w == 1u ? 0u : pc.u.w);
    return t;
}

void main()
{
    Tensor o = tensor(0), q = tensor(1), k = tensor(2), v = tensor(3);
    Tensor m = mask_tensor();
    uint l = gl_LocalInvocationIndex;
    uint T = q.ne.y, Hq = q.ne.z, S = k.ne.y, Hkv = k.ne.z;
    uint group = Hkv == 0u ? 1u : Hq / Hkv;
    float scale = pc.f.x;
    bool causal = pc.u.x != 0u;
    int window = int(pc.u.y);
    FOR_EACH_GROUP_ITEM(row) {
        uint h = row % Hq, t = row / Hq, hk = h / group;
        for (uint d = l; d < D; d += WG)
            qs[d] = ld_at(T1, q, 0u, t, h, d) * scale;
        barrier();

        int p = int(S) - int(T) + int(t), lo = 0, hi = int(S);
        if (causal)
            hi = min(hi, p + 1);
        if (window > 0)
            lo = max(lo, p - window + 1);
        uint mr = m.rem + t * m.nb.z;

        float run_max = NEG_INF, run_sum = 0.0;
        float acc[DPI];
        [[unroll]] for (uint i = 0u; i < DPI; i++)
            acc[i] = 0.0;
        for (int j0 = lo; j0 < hi; j0 += int(WG)) { /* uniform: lo and hi depend on t only */
            int j = j0 + int(l);
            float s = NEG_INF;
            if (j < hi) {
                uint kr = t_off(k, 0u, uint(j), hk, 0u);
                float dt = 0.0;
                for (uint d = 0u; d < D; d++)
                    dt += qs[d] * ld_elem(T2, k.base, kr + d * k.nb.w, 0u);
                if (HAS_MASK != 0u)
                    dt += ld_elem(TM, m.base, mr + uint(j) * m.nb.w, 0u);
                s = dt;
            }
            float new_max = max(run_max, wg_max(s)); /* the same in every invocation */
            if (new_max == NEG_INF)
                continue; /* every key so far removed: nothing to add (uniform branch) */
            float pj = s == NEG_INF ? 0.0 : exp(s - new_max);
            ps[l] = pj;
            float alpha = run_max == NEG_INF ? 0.0 : exp(run_max - new_max);
            run_sum = run_sum * alpha + wg_sum(pj); /* its barriers also publish ps */
            uint n = uint(min(hi - j0, int(WG)));
            [[unroll]] for (uint i = 0u; i < DPI; i++) {
                uint d = l + i * WG;
                if (d < D) {
                    float a = acc[i] * alpha;
                    uint vo = t_off(v, 0u, uint(j0), hk, d);
                    for (uint jj = 0u; jj < n; jj++)
                        a += ps[jj] * ld_elem(T3, v.base, vo + jj * v.nb.y, 0u);
                    acc[i] = a;
                }
            }
            run_max = new_max;
            barrier(); /* ps is rewritten by the next chunk */
        }
        float inv = run_sum > 0.0 ? 1.0 / run_sum : 0.0;
        [[unroll]] for (uint i = 0u; i < DPI; i++) {
            uint d = l + i * WG;
            if (d < D)
                st_elem(T0, o.base, t_off(o, 0u, t, h, d), acc[i] * inv);
        }
        barrier(); /* qs is rewritten by the next row */
    }
}
