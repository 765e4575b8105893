#version 450
/*
 * matmul_vec.comp — variant "vec": out[.., m, n] = a[.., m, :] . b[.., n, :], built for few rows
 * of a (decode steps). A workgroup takes MR rows of a and NR rows of b (usually a weight, read
 * in its GGUF blocks directly); its invocations split K into chunks of 8 elements (a quarter
 * block), accumulate in f32 and reduce over the workgroup at the end. Batch dims broadcast
 * grouped: a's batch i uses b's i / (Ba / Bb). Slots: 0 out f32, 1 a, 2 b.
 */
#include "common.glsl"
#include "mm_chunk.glsl"
layout(constant_id = 6) const uint NR = 2;
layout(constant_id = 7) const uint MR = 4;

shared float red[MR * NR * WG];

void main()
{
    Tensor o = tensor(0), a = tensor(1), b = tensor(2);
    uint tid = gl_LocalInvocationIndex;
    uint M = a.ne.z, N = b.ne.z, K = a.ne.w;
    uint MT = (M + MR - 1u) / MR, NT = (N + NR - 1u) / NR;
    uint chunks = (K + 7u) / 8u;
    FOR_EACH_GROUP_ITEM(it) {
        uint nt = it % NT, r = it / NT;
        uint mt = r % MT;
        r /= MT;
        uint i1 = r % a.ne.y, i0 = r / a.ne.y;
        uint j0 = i0 / (a.ne.x / b.ne.x), j1 = i1 / (a.ne.y / b.ne.y);
        float acc[MR * NR];
        [[unroll]] for (uint q = 0u; q < MR * NR; q++)
            acc[q] = 0.0;
        uint arow[MR], brow[NR];
        [[unroll]] for (uint m = 0u; m < MR; m++)
            arow[m] = t_off(a, i0, i1, min(mt * MR + m, M - 1u), 0u);
        [[unroll]] for (uint rr = 0u; rr < NR; rr++)
            brow[rr] = t_off(b, j0, j1, min(nt * NR + rr, N - 1u), 0u);
        for (uint c = tid; c < chunks; c += WG) {
            float av[MR * 8u];
            [[unroll]] for (uint m = 0u; m < MR; m++) {
                float t[8];
                a_chunk(a, arow[m], c, K, t);
                [[unroll]] for (uint k = 0u; k < 8u; k++)
                    av[m * 8u + k] = t[k];
            }
            [[unroll]] for (uint rr = 0u; rr < NR; rr++) {
                float bv[8];
                b_chunk(b, brow[rr], c, K, bv);
                [[unroll]] for (uint m = 0u; m < MR; m++) {
                    float s = 0.0;
                    [[unroll]] for (uint k = 0u; k < 8u; k++)
                        s += av[m * 8u + k] * bv[k];
                    acc[m * NR + rr] += s;
                }
            }
        }
#if SG
        [[unroll]] for (uint q = 0u; q < MR * NR; q++) {
            float v = subgroupAdd(acc[q]);
            if (subgroupElect())
                red[q * WG + gl_SubgroupID] = v;
        }
        barrier();
        uint count = gl_NumSubgroups;
#else
        [[unroll]] for (uint q = 0u; q < MR * NR; q++)
            red[q * WG + tid] = acc[q];
        barrier();
        for (uint s = WG / 2u; s > 0u; s >>= 1) {
            if (tid < s)
                [[unroll]] for (uint q = 0u; q < MR * NR; q++)
                    red[q * WG + tid] += red[q * WG + tid + s];
            barrier();
        }
        uint count = 1u;
#endif
        if (tid < MR * NR) {
            uint gm = mt * MR + tid / NR, gn = nt * NR + tid % NR;
            if (gm < M && gn < N) {
                float s = 0.0;
                for (uint k = 0u; k < count; k++)
                    s += red[tid * WG + k];
                st32(o.base, t_off(o, i0, i1, gm, gn), floatBitsToUint(s));
            }
        }
        barrier();
    }
}
