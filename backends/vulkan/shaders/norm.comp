#version 450
/*
 * norm.comp — rms_norm (OP 0) and layer_norm (OP 1) over the innermost dim; one workgroup per
 * row, two passes for layer_norm (mean, then squared deviations) so rows far from zero mean do
 * not cancel. pc.f.x = eps. Slots: 0 out, 1 x.
 */
#define NEED_REDUCE
#include "common.glsl"

void main()
{
    Tensor o = tensor(0), x = tensor(1);
    uint tid = gl_LocalInvocationIndex, n = o.ne.w;
    FOR_EACH_GROUP_ITEM(row) {
        uint i2 = row % o.ne.z, r = row / o.ne.z;
        uint i1 = r % o.ne.y, i0 = r / o.ne.y;
        float mean = 0.0;
        if (OP == 1u) {
            float s = 0.0;
            for (uint j = tid; j < n; j += WG)
                s += ld_at(T1, x, i0, i1, i2, j);
            mean = wg_sum(s) / float(n);
        }
        float sq = 0.0;
        for (uint j = tid; j < n; j += WG) {
            float d = ld_at(T1, x, i0, i1, i2, j) - mean;
            sq += d * d;
        }
        float inv = 1.0 / sqrt(wg_sum(sq) / float(n) + pc.f.x);
        for (uint j = tid; j < n; j += WG)
            st_elem(T0, o.base, t_off(o, i0, i1, i2, j), (ld_at(T1, x, i0, i1, i2, j) - mean) * inv);
    }
}
