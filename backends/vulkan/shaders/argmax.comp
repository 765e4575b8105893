#version 450
/*
 * argmax.comp — first index of the maximum of each row (NaNs skipped; a row of NaNs gives 0),
 * one workgroup per row. Slots: 0 out i32 (strides arranged by the host so that row (i0, i1, i2)
 * lands at i0 * nb.x + i1 * nb.y + i2 * nb.z), 1 x.
 */
#include "common.glsl"

const uint NONE = 0xFFFFFFFFu;
shared float red_v[WG];
shared uint red_i[WG];

/* Is (v2, i2) a better candidate than (v1, i1)? Larger value, then smaller index. */
bool better(float v2, uint i2, float v1, uint i1)
{
    if (i2 == NONE)
        return false;
    if (i1 == NONE)
        return true;
    return v2 > v1 || (v2 == v1 && i2 < i1);
}

void main()
{
    Tensor o = tensor(0), x = tensor(1);
    uint tid = gl_LocalInvocationIndex, n = x.ne.w;
    FOR_EACH_GROUP_ITEM(row) {
        uint i2 = row % x.ne.z, r = row / x.ne.z;
        uint i1 = r % x.ne.y, i0 = r / x.ne.y;
        float bv = 0.0;
        uint bi = NONE;
        for (uint j = tid; j < n; j += WG) { /* increasing j: ties keep the first */
            float v = ld_at(T1, x, i0, i1, i2, j);
            if (!isnan(v) && (bi == NONE || v > bv)) {
                bv = v;
                bi = j;
            }
        }
#if SG
        float gmax = subgroupMax(bi == NONE ? -1.0 / 0.0 : bv);
        uint gi = subgroupMin(bi != NONE && bv == gmax ? bi : NONE);
        if (subgroupElect()) {
            red_v[gl_SubgroupID] = gmax;
            red_i[gl_SubgroupID] = gi;
        }
        barrier();
        uint count = gl_NumSubgroups;
#else
        red_v[tid] = bv;
        red_i[tid] = bi;
        barrier();
        for (uint s = WG / 2u; s > 0u; s >>= 1) {
            if (tid < s && better(red_v[tid + s], red_i[tid + s], red_v[tid], red_i[tid])) {
                red_v[tid] = red_v[tid + s];
                red_i[tid] = red_i[tid + s];
            }
            barrier();
        }
        uint count = 1u;
#endif
        if (tid == 0u) {
            float v = red_v[0];
            uint idx = red_i[0];
            for (uint k = 1u; k < count; k++)
                if (better(red_v[k], red_i[k], v, idx)) {
                    v = red_v[k];
                    idx = red_i[k];
                }
            st32(o.base, o.rem + i0 * o.nb.x + i1 * o.nb.y + i2 * o.nb.z, idx == NONE ? 0u : idx);
        }
        barrier();
    }
}
