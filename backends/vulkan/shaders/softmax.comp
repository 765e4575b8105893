#version 450
/*
 * softmax.comp — softmax(x * scale + mask) over the innermost dim, one workgroup per row. The
 * mask broadcasts per dim like add's b; -inf removes a position, and a row with every position
 * removed gives zeros. pc.f.x = scale; HAS_MASK selects slot 2. Slots: 0 out, 1 x, 2 mask.
 */
#define NEED_REDUCE
#include "common.glsl"
layout(constant_id = 6) const uint HAS_MASK = 0;

void main()
{
    Tensor o = tensor(0), x = tensor(1), m = tensor(2);
    uint tid = gl_LocalInvocationIndex, n = o.ne.w;
    float scale = pc.f.x;
    FOR_EACH_GROUP_ITEM(row) {
        uint i2 = row % o.ne.z, r = row / o.ne.z;
        uint i1 = r % o.ne.y, i0 = r / o.ne.y;
        uint m0 = m.ne.x == 1u ? 0u : i0, m1 = m.ne.y == 1u ? 0u : i1, m2 = m.ne.z == 1u ? 0u : i2;
        bool mb = m.ne.w == 1u;
#define LOGIT(j) (ld_at(T1, x, i0, i1, i2, j) * scale + \
                  (HAS_MASK != 0u ? ld_at(T2, m, m0, m1, m2, mb ? 0u : (j)) : 0.0))
        float mx = -1.0 / 0.0;
        for (uint j = tid; j < n; j += WG)
            mx = max(mx, LOGIT(j));
        mx = wg_max(mx);
        if (isinf(mx) && mx < 0.0) {
            for (uint j = tid; j < n; j += WG)
                st_elem(T0, o.base, t_off(o, i0, i1, i2, j), 0.0);
            continue; /* uniform: every invocation saw the same mx */
        }
        float s = 0.0;
        for (uint j = tid; j < n; j += WG)
            s += exp(LOGIT(j) - mx);
        float inv = 1.0 / wg_sum(s);
        for (uint j = tid; j < n; j += WG)
            st_elem(T0, o.base, t_off(o, i0, i1, i2, j), exp(LOGIT(j) - mx) * inv);
#undef LOGIT
    }
}
