#version 450
/*
 * eltwise.comp — one invocation per output element: add, mul (b broadcasts per dim), scale, silu,
 * gelu, cast/cont conversions, concat. Slots: 0 out (f32/f16/bf16), 1 a, 2 b.
 * OP: 0 add, 1 mul, 2 scale (pc.f.x), 3 silu, 4 gelu, 5 convert, 6 concat (pc.u.x: padded axis).
 */
#include "common.glsl"

float silu(float x) { return x / (1.0 + exp(-x)); }

float gelu(float x)
{
    /* tanh approximation, as ggml; tanh written so that large |z| gives +-1, never inf/inf */
    float z = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    float t = 1.0 - 2.0 / (exp(2.0 * abs(z)) + 1.0);
    return 0.5 * x * (1.0 + sign(z) * t);
}

void main()
{
    Tensor o = tensor(0), a = tensor(1), b = tensor(2);
    FOR_EACH_THREAD_ITEM(i) {
        uint i3 = i % o.ne.w, r = i / o.ne.w;
        uint i2 = r % o.ne.z;
        r /= o.ne.z;
        uint i1 = r % o.ne.y, i0 = r / o.ne.y;
        float v;
        if (OP == 6u) {
            uvec4 idx = uvec4(i0, i1, i2, i3);
            uint ax = pc.u.x;
            if (idx[ax] < a.ne[ax]) {
                v = ld_at(T1, a, idx.x, idx.y, idx.z, idx.w);
            } else {
                idx[ax] -= a.ne[ax];
                v = ld_at(T2, b, idx.x, idx.y, idx.z, idx.w);
            }
        } else {
            v = ld_at(T1, a, i0, i1, i2, i3);
            if (OP <= 1u) {
                float w = ld_at(T2, b, b.ne.x == 1u ? 0u : i0, b.ne.y == 1u ? 0u : i1,
                                b.ne.z == 1u ? 0u : i2, b.ne.w == 1u ? 0u : i3);
                v = OP == 0u ? v + w : v * w;
            } else if (OP == 2u) {
                v = v * pc.f.x;
            } else if (OP == 3u) {
                v = silu(v);
            } else if (OP == 4u) {
                v = gelu(v);
            }
        }
        st_elem(T0, o.base, t_off(o, i0, i1, i2, i3), v);
    }
}
