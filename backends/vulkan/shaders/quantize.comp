#version 450
/*
 * quantize.comp — rows of x (any dtype) into GGUF blocks; one invocation per output block.
 * Slots: 0 out (T0 a block type), 1 x.
 */
#include "common.glsl"
#include "quant.glsl"

void main()
{
    Tensor o = tensor(0), x = tensor(1);
    uint blocks = o.ne.w / QK;
    FOR_EACH_THREAD_ITEM(i) {
        uint blk = i % blocks, r = i / blocks;
        uint i2 = r % o.ne.z;
        r /= o.ne.z;
        uint i1 = r % o.ne.y, i0 = r / o.ne.y;
        float v[32];
        for (uint k = 0u; k < QK; k++)
            v[k] = ld_at(T1, x, i0, i1, i2, blk * QK + k);
        st_block(T0, o.base, t_off(o, i0, i1, i2, blk), v);
    }
}
