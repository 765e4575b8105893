#version 450
/*
 * rope.comp — rotary position embedding of x[T, H, D] (padded: ne.y = T, ne.z = H, ne.w = D).
 * One invocation per rotated pair (it reads both inputs before writing both outputs, so rope in
 * place is safe) or per passed-through element. OP: 0 normal (adjacent pairs), 2 neox (halves).
 * pc.u.x = rotated dims. Slots: 0 out, 1 x, 2 pos i32[T].
 *
 * Angles: pos * base^(-2i/dims) reaches tens of thousands of radians, where an f32 angle is
 * already wrong by 1e-3 and the platform's sin/cos promise little. So the host stores, per pair,
 * the angle per position as a 64-bit fixed-point fraction of a turn (static data at pc.aux);
 * pos * that, modulo one turn, is exact in integer arithmetic, and sin/cos come from
 * polynomials on a quarter turn.
 */
#include "common.glsl"

vec2 sincos_turns(int pos, uint fh, uint fl)
{
    uint plo = uint(pos), phi = pos < 0 ? 0xFFFFFFFFu : 0u;
    uint hi1, lo1;
    umulExtended(plo, fl, hi1, lo1);
    uint hi = hi1 + plo * fh + phi * fl; /* (pos * F) mod 2^64, top word */
    uint q = (hi + 0x20000000u) >> 30;   /* nearest quarter turn */
    int rr = int(hi - (q << 30));         /* remainder in [-1/8, 1/8) turn, units of 2^-32 */
    float x = (float(rr) + float(lo1) * 2.3283064365386963e-10) * 1.4629180792671596e-09;
    float x2 = x * x;
    float s = x * (1.0 + x2 * (-1.6666666666666666e-01 + x2 * (8.3333333333333333e-03 +
                   x2 * (-1.9841269841269841e-04 + x2 * 2.7557319223985891e-06))));
    float c = 1.0 + x2 * (-0.5 + x2 * (4.1666666666666664e-02 + x2 * (-1.3888888888888889e-03 +
                   x2 * (2.4801587301587302e-05 + x2 * -2.7557319223985888e-07))));
    q &= 3u;
    if (q == 0u)
        return vec2(s, c);
    if (q == 1u)
        return vec2(c, -s);
    if (q == 2u)
        return vec2(-s, -c);
    return vec2(-c, s);
}

void main()
{
    Tensor o = tensor(0), x = tensor(1), pt = tensor(2);
    uint dims = pc.u.x, half_dims = dims / 2u;
    uint per_row = half_dims + (o.ne.w - dims);
    FOR_EACH_THREAD_ITEM(i) {
        uint u = i % per_row, r = i / per_row;
        uint h = r % o.ne.z, t = r / o.ne.z;
        if (u < half_dims) {
            uint ia = OP == 2u ? u : 2u * u, ib = OP == 2u ? u + half_dims : 2u * u + 1u;
            int pos = int(ld32(pt.base, pt.rem + t * pt.nb.w));
            vec2 sc = sincos_turns(pos, prm(pc.aux + 2u * u), prm(pc.aux + 2u * u + 1u));
            float x0 = ld_at(T1, x, 0u, t, h, ia), x1 = ld_at(T1, x, 0u, t, h, ib);
            st_elem(T0, o.base, t_off(o, 0u, t, h, ia), x0 * sc.y - x1 * sc.x);
            st_elem(T0, o.base, t_off(o, 0u, t, h, ib), x0 * sc.x + x1 * sc.y);
        } else {
            uint j = dims + (u - half_dims);
            st_elem(T0, o.base, t_off(o, 0u, t, h, j), ld_at(T1, x, 0u, t, h, j));
        }
    }
}
