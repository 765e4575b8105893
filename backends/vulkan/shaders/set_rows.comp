#version 450
/*
 * set_rows.comp — out[.., ids[n], ..] = src[.., n, ..] along dst's outermost dim (padded index
 * pc.u.x), converting to the output's dtype (plain, or quantized block by block). One workgroup
 * per source row. When an id repeats, the last row wins (the reference's sequential order): a
 * row whose id occurs again later is skipped. Slots: 0 out (dst's next version), 1 dst (its
 * memory, already copied into out when the two differ), 2 src, 3 ids i32[N].
 */
#include "common.glsl"
#include "quant.glsl"

shared uint later_dup;

void main()
{
    Tensor o = tensor(0), src = tensor(2), ids = tensor(3);
    uint p = pc.u.x;
    uint tid = gl_LocalInvocationIndex;
    FOR_EACH_GROUP_ITEM(row) {
        uint i2 = row % src.ne.z, r = row / src.ne.z;
        uint i1 = r % src.ne.y, i0 = r / src.ne.y;
        uvec3 idx = uvec3(i0, i1, i2);
        uint n = idx[p];
        int id = int(ld32(ids.base, ids.rem + n * ids.nb.w));
        if (tid == 0u)
            later_dup = 0u;
        barrier();
        for (uint m = n + 1u + tid; m < ids.ne.w; m += WG)
            if (int(ld32(ids.base, ids.rem + m * ids.nb.w)) == id)
                atomicOr(later_dup, 1u);
        barrier();
        bool skip = later_dup != 0u;
        if (id < 0 || uint(id) >= o.ne[p]) {
            if (tid == 0u)
                report(ST_SET_ROWS_ID);
            skip = true;
        }
        if (!skip) {
            uvec3 d = idx;
            d[p] = uint(id);
            if (T0 >= DT_Q4_0) {
                for (uint blk = tid; blk < o.ne.w / QK; blk += WG) {
                    float v[32];
                    for (uint k = 0u; k < QK; k++)
                        v[k] = ld_at(T2, src, i0, i1, i2, blk * QK + k);
                    st_block(T0, o.base, t_off(o, d.x, d.y, d.z, blk), v);
                }
            } else {
                for (uint j = tid; j < o.ne.w; j += WG)
                    st_elem(T0, o.base, t_off(o, d.x, d.y, d.z, j), ld_at(T2, src, i0, i1, i2, j));
            }
        }
        barrier(); /* later_dup is reset for the next row only after everyone read it */
    }
}
