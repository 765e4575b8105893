#version 450
/*
 * get_rows.comp — out[i0, i1, i2, :] = table[ids[i0, i1, i2], :], dequantized from any table
 * dtype. One invocation per output element. A bad id is reported (the host fails the run with
 * BST_ERR_INVALID_ARG) and nothing is read through it. Slots: 0 out, 1 table [R, C], 2 ids.
 */
#include "common.glsl"

void main()
{
    Tensor o = tensor(0), t = tensor(1), ids = tensor(2);
    FOR_EACH_THREAD_ITEM(i) {
        uint j = i % o.ne.w, r = i / o.ne.w;
        uint i2 = r % o.ne.z;
        r /= o.ne.z;
        uint i1 = r % o.ne.y, i0 = r / o.ne.y;
        int id = int(ld32(ids.base, ids.rem + i0 * ids.nb.y + i1 * ids.nb.z + i2 * ids.nb.w));
        if (id < 0 || uint(id) >= t.ne.z) {
            report(ST_GET_ROWS_ID);
            continue;
        }
        st_elem(T0, o.base, t_off(o, i0, i1, i2, j), ld_at(T1, t, 0u, 0u, uint(id), j));
    }
}
