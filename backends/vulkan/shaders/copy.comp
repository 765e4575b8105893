#version 450
/*
 * copy.comp — same-dtype copy of a (strided) view, unit by unit: elements, or whole blocks for
 * block types. Bytes move unchanged (NaN payloads included). Slots: 0 out, 1 x; T1 is the dtype,
 * UB its unit size in bytes.
 */
#include "common.glsl"
layout(constant_id = 6) const uint UB = 4;

void main()
{
    Tensor o = tensor(0), x = tensor(1);
    uint units = o.ne.w / dt_bs(T1);
    FOR_EACH_THREAD_ITEM(i) {
        uint i3 = i % units, r = i / units;
        uint i2 = r % o.ne.z;
        r /= o.ne.z;
        uint i1 = r % o.ne.y, i0 = r / o.ne.y;
        uint so = t_off(x, i0, i1, i2, i3), dof = t_off(o, i0, i1, i2, i3);
        if (UB == 4u) {
            st32(o.base, dof, ld32(x.base, so));
        } else if (UB == 1u) {
            st8(o.base, dof, ld8(x.base, so));
        } else {
            for (uint k = 0u; k < UB; k += 2u)
                st16(o.base, dof + k, ld16(x.base, so + k));
        }
    }
}
