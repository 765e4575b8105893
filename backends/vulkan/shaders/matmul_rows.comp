#version 450
/*
 * matmul_rows.comp — variant "rows": out[.., m, n] = a[.., m, :] . b[.., n, :] with each
 * invocation walking all of K alone for an RM x RN patch of the output (rows of a x rows of b,
 * kept in registers so each loaded chunk is used RN or RM times): no shared memory and no
 * barriers. Devices that run workgroups in software (lavapipe) pay dearly for every barrier;
 * GPUs do well with it when N is large and M small. Slots: 0 out f32, 1 a, 2 b.
 */
#include "common.glsl"
#include "mm_chunk.glsl"
layout(constant_id = 6) const uint RM = 1;
layout(constant_id = 7) const uint RN = 4;

void main()
{
    Tensor o = tensor(0), a = tensor(1), b = tensor(2);
    uint M = a.ne.z, N = b.ne.z, K = a.ne.w;
    uint MT = (M + RM - 1u) / RM, NT = (N + RN - 1u) / RN;
    uint chunks = (K + 7u) / 8u;
    FOR_EACH_THREAD_ITEM(i) {
        uint nt = i % NT, r = i / NT;
        uint mt = r % MT;
        r /= MT;
        uint i1 = r % a.ne.y, i0 = r / a.ne.y;
        uint j0 = i0 / (a.ne.x / b.ne.x), j1 = i1 / (a.ne.y / b.ne.y);
        uint arow[RM], brow[RN];
        /* Rows past the end repeat the last one: computed, never stored. */
        [[unroll]] for (uint m = 0u; m < RM; m++)
            arow[m] = t_off(a, i0, i1, min(mt * RM + m, M - 1u), 0u);
        [[unroll]] for (uint n = 0u; n < RN; n++)
            brow[n] = t_off(b, j0, j1, min(nt * RN + n, N - 1u), 0u);
        float acc[RM * RN];
        [[unroll]] for (uint q = 0u; q < RM * RN; q++)
            acc[q] = 0.0;
        for (uint c = 0u; c < chunks; c++) {
            float av[RM * 8u];
            [[unroll]] for (uint m = 0u; m < RM; m++) {
                float t[8];
                a_chunk(a, arow[m], c, K, t);
                [[unroll]] for (uint k = 0u; k < 8u; k++)
                    av[m * 8u + k] = t[k];
            }
            [[unroll]] for (uint n = 0u; n < RN; n++) {
                float bv[8];
                b_chunk(b, brow[n], c, K, bv);
                [[unroll]] for (uint m = 0u; m < RM; m++) {
                    float s = 0.0;
                    [[unroll]] for (uint k = 0u; k < 8u; k++)
                        s += av[m * 8u + k] * bv[k];
                    acc[m * RN + n] += s;
                }
            }
        }
        [[unroll]] for (uint m = 0u; m < RM; m++)
            [[unroll]] for (uint n = 0u; n < RN; n++) {
                uint gm = mt * RM + m, gn = nt * RN + n;
                if (gm < M && gn < N)
                    st32(o.base, t_off(o, i0, i1, gm, gn), floatBitsToUint(acc[m * RN + n]));
            }
    }
}
