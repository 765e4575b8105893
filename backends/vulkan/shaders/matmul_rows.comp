#version 450
/*
 * matmul_rows.comp — variant "rows": out[.., m, n] = a[.., m, :] . b[.., n, :] with one invocation
 * per output element walking all of K alone: no shared memory and no barriers. Consecutive
 * invocations take consecutive rows of b for the same row of a, so a's chunk is shared through
 * the cache. Devices that run workgroups in software (lavapipe) pay dearly for every barrier; GPUs
 * do well with it when N is large and M small. Slots: 0 out f32, 1 a, 2 b.
 */
#include "common.glsl"
#include "mm_chunk.glsl"

void main()
{
    Tensor o = tensor(0), a = tensor(1), b = tensor(2);
    uint M = a.ne.z, N = b.ne.z, K = a.ne.w;
    uint chunks = (K + 7u) / 8u;
    FOR_EACH_THREAD_ITEM(i) {
        uint n = i % N, r = i / N;
        uint m = r % M;
        r /= M;
        uint i1 = r % a.ne.y, i0 = r / a.ne.y;
        uint j0 = i0 / (a.ne.x / b.ne.x), j1 = i1 / (a.ne.y / b.ne.y);
        uint arow = t_off(a, i0, i1, m, 0u), brow = t_off(b, j0, j1, n, 0u);
        float acc = 0.0;
        for (uint c = 0u; c < chunks; c++) {
            float av[8], bv[8];
            a_chunk(a, arow, c, K, av);
            b_chunk(b, brow, c, K, bv);
            float s = 0.0;
            [[unroll]] for (uint k = 0u; k < 8u; k++)
                s += av[k] * bv[k];
            acc += s;
        }
        st32(o.base, t_off(o, i0, i1, m, n), floatBitsToUint(acc));
    }
}
