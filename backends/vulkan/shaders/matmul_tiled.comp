#version 450
/*
 * matmul_tiled.comp — variant "tiled": out[.., m, n] = a[.., m, :] . b[.., n, :] for prompt-sized
 * a. A workgroup computes a BM x BN tile of out, stepping through K in slices of 32 (one GGUF
 * block, so a block type's slice is always one whole block per row) staged in shared memory, and
 * each invocation keeps a TM x TN patch of accumulators (f32). Tile sizes are specialization
 * constants; the host sets WG = (BM / TM) * (BN / TN). Slots: 0 out f32, 1 a, 2 b.
 */
#include "common.glsl"
#include "mm_chunk.glsl"
layout(constant_id = 6) const uint BM = 32;
layout(constant_id = 7) const uint BN = 32;
layout(constant_id = 8) const uint TM = 4;
layout(constant_id = 9) const uint TN = 2;
const uint BK = 32u;

shared float As[BK * BM]; /* [k][m] */
shared float Bs[BK * BN]; /* [k][n] */

void main()
{
    Tensor o = tensor(0), a = tensor(1), b = tensor(2);
    uint tid = gl_LocalInvocationIndex;
    uint M = a.ne.z, N = b.ne.z, K = a.ne.w;
    uint MT = (M + BM - 1u) / BM, NT = (N + BN - 1u) / BN;
    uint tm = tid / (BN / TN), tn = tid % (BN / TN);
    FOR_EACH_GROUP_ITEM(it) {
        uint nt = it % NT, r = it / NT;
        uint mt = r % MT;
        r /= MT;
        uint i1 = r % a.ne.y, i0 = r / a.ne.y;
        uint j0 = i0 / (a.ne.x / b.ne.x), j1 = i1 / (a.ne.y / b.ne.y);
        float acc[TM * TN];
        [[unroll]] for (uint q = 0u; q < TM * TN; q++)
            acc[q] = 0.0;
        for (uint k0 = 0u; k0 < K; k0 += BK) {
            /* Each invocation stages whole 8-element chunks (4 per row of the slice). */
            for (uint e = tid; e < BM * 4u; e += WG) {
                uint m = e / 4u, c = k0 / 8u + e % 4u, gm = mt * BM + m;
                float v[8];
                if (gm < M)
                    a_chunk(a, t_off(a, i0, i1, gm, 0u), c, K, v);
                [[unroll]] for (uint k = 0u; k < 8u; k++)
                    As[(chunk_elem(c, k) - k0) * BM + m] = gm < M ? v[k] : 0.0;
            }
            for (uint e = tid; e < BN * 4u; e += WG) {
                uint n = e / 4u, c = k0 / 8u + e % 4u, gn = nt * BN + n;
                float v[8];
                if (gn < N)
                    b_chunk(b, t_off(b, j0, j1, gn, 0u), c, K, v);
                [[unroll]] for (uint k = 0u; k < 8u; k++)
                    Bs[(chunk_elem(c, k) - k0) * BN + n] = gn < N ? v[k] : 0.0;
            }
            barrier();
            for (uint k = 0u; k < BK; k++) {
                float ar[TM], br[TN];
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    ar[i] = As[k * BM + tm * TM + i];
                [[unroll]] for (uint j = 0u; j < TN; j++)
                    br[j] = Bs[k * BN + tn * TN + j];
                [[unroll]] for (uint i = 0u; i < TM; i++)
                    [[unroll]] for (uint j = 0u; j < TN; j++)
                        acc[i * TN + j] += ar[i] * br[j];
            }
            barrier();
        }
        [[unroll]] for (uint i = 0u; i < TM; i++)
            [[unroll]] for (uint j = 0u; j < TN; j++) {
                uint gm = mt * BM + tm * TM + i, gn = nt * BN + tn * TN + j;
                if (gm < M && gn < N)
                    st32(o.base, t_off(o, i0, i1, gm, gn), floatBitsToUint(acc[i * TN + j]));
            }
    }
}
