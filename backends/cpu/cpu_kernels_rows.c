/*
 * Reference kernels that index rows: get_rows (embedding lookup from a table of any dtype),
 * set_rows (writing rows into a state such as the KV cache, converting to its dtype) and argmax.
 * Every id is checked against the table before any row moves: a bad id is an error, never an
 * out-of-bounds access.
 */
#include "cpu_backend.h"

#include <math.h>
#include <string.h>

static int32_t load_i32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* --- get_rows --- */

bst_status cpu_check_get_rows(cpu_run *r)
{
    const cpu_tensor *t = &r->in[0], *ids = &r->in[1], *o = &r->out;
    if (!cpu_is_loadable(t->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "table dtype %s", cpu_dtype_name(t->dtype));
    if (!cpu_is_storable(o->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "output dtype %s", cpu_dtype_name(o->dtype));
    if (t->rank != 2)
        return cpu_fail(r, BST_ERR_SHAPE, "table must be [R, C], got rank %u", t->rank);
    if (ids->dtype != BST_DTYPE_I32 || ids->rank > 3)
        return cpu_fail(r, BST_ERR_SHAPE, "ids must be i32 of rank 0..3");
    if (o->rank != ids->rank + 1 || o->ne[3] != t->ne[3])
        return cpu_fail(r, BST_ERR_SHAPE, "output must be [ids..., %lld]", (long long)t->ne[3]);
    for (int d = 0; d < 3; d++)
        if (o->ne[d] != ids->ne[d + 1])
            return cpu_fail(r, BST_ERR_SHAPE, "output dims differ from ids' dims");
    return BST_OK;
}

static int32_t get_rows_id(const cpu_run *r, int64_t i0, int64_t i1, int64_t i2)
{
    const cpu_tensor *ids = &r->in[1];
    return load_i32(ids->data + i0 * ids->nb[1] + i1 * ids->nb[2] + i2 * ids->nb[3]);
}

static void get_rows_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *t = &r->in[0], *o = &r->out;
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1], i0 = row / o->ne[2] / o->ne[1];
        int32_t id = get_rows_id(r, i0, i1, i2);
        const float *v = cpu_load_row(r, t, 0, 0, id, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        cpu_commit_row(r, o, i0, i1, i2, v, cpu_slot(r, w, 3));
    }
}

bst_status cpu_run_get_rows(cpu_run *r)
{
    const cpu_tensor *t = &r->in[0], *o = &r->out;
    for (int64_t i0 = 0; i0 < o->ne[0]; i0++)
        for (int64_t i1 = 0; i1 < o->ne[1]; i1++)
            for (int64_t i2 = 0; i2 < o->ne[2]; i2++) {
                int32_t id = get_rows_id(r, i0, i1, i2);
                if (id < 0 || id >= t->ne[2])
                    return cpu_fail(r, BST_ERR_INVALID_ARG,
                                    "id %d at [%lld, %lld, %lld] is outside the table's %lld rows",
                                    id, (long long)i0, (long long)i1, (long long)i2,
                                    (long long)t->ne[2]);
            }
    cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3] * 2), get_rows_rows);
    return BST_OK;
}

/* --- set_rows --- */

/* Padded index of dst's (and src's) row dim. */
static int row_dim(const cpu_run *r) { return BST_MAX_DIMS - (int)r->in[0].rank; }

bst_status cpu_check_set_rows(cpu_run *r)
{
    const cpu_tensor *dst = &r->in[0], *src = &r->in[1], *ids = &r->in[2], *o = &r->out;
    if (!cpu_is_storable(dst->dtype) || !cpu_is_loadable(src->dtype))
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "set_rows of %s into %s",
                        cpu_dtype_name(src->dtype), cpu_dtype_name(dst->dtype));
    if (dst->rank < 2 || src->rank != dst->rank)
        return cpu_fail(r, BST_ERR_SHAPE, "dst (rank %u) and src (rank %u) must have the same "
                        "rank >= 2", dst->rank, src->rank);
    if (ids->dtype != BST_DTYPE_I32 || ids->rank != 1)
        return cpu_fail(r, BST_ERR_SHAPE, "ids must be i32[N]");
    int p = row_dim(r);
    if (src->ne[p] != ids->ne[3])
        return cpu_fail(r, BST_ERR_SHAPE, "src has %lld rows but ids has %lld",
                        (long long)src->ne[p], (long long)ids->ne[3]);
    for (int d = 0; d < 4; d++)
        if (d != p && src->ne[d] != dst->ne[d])
            return cpu_fail(r, BST_ERR_SHAPE, "src and dst differ outside the row dim");
    if (o->dtype != dst->dtype || o->rank != dst->rank || !cpu_same_shape(o, dst))
        return cpu_fail(r, BST_ERR_SHAPE, "output must have dst's type");
    return BST_OK;
}

/* The planner normally makes the output alias dst; when it did not, dst is copied first so the
 * result is still "dst with these rows replaced". */
static bool out_is_dst(const cpu_run *r)
{
    const cpu_tensor *dst = &r->in[0], *o = &r->out;
    if (o->data != dst->data)
        return false;
    for (int d = 0; d < 4; d++)
        if (o->ne[d] > 1 && o->nb[d] != dst->nb[d])
            return false;
    return true;
}

static void copy_dst_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const cpu_tensor *dst = &r->in[0], *o = &r->out;
    uint32_t bs = 1, bb = 1;
    cpu_dtype_geometry(o->dtype, &bs, &bb);
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % o->ne[2], i1 = (row / o->ne[2]) % o->ne[1], i0 = row / o->ne[2] / o->ne[1];
        const uint8_t *s = cpu_row_ptr(dst, i0, i1, i2);
        uint8_t *d = cpu_row_ptr(o, i0, i1, i2);
        for (int64_t i = 0; i < o->ne[3] / bs; i++)
            memmove(d + i * o->nb[3], s + i * dst->nb[3], bb);
    }
}

void cpu_set_rows_item(const cpu_run *r, int64_t item, int64_t n, int64_t *s, int64_t *d)
{
    const cpu_tensor *src = &r->in[1], *ids = &r->in[2];
    const int p = row_dim(r);
    int q1 = -1, q2 = -1;
    for (int k = 0; k < 3; k++)
        if (k != p) {
            if (q1 < 0)
                q1 = k;
            else
                q2 = k;
        }
    s[q1] = d[q1] = item / src->ne[q2];
    s[q2] = d[q2] = item % src->ne[q2];
    s[p] = n;
    d[p] = load_i32(ids->data + n * ids->nb[3]);
}

/* One item per position in the two outer dims other than the row dim; each item walks the ids
 * in order, so a repeated id ends with the last row written (sequential semantics) and no two
 * workers ever write the same row. */
static void set_rows_items(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *src = &r->in[1], *o = &r->out;
    const int64_t rows = src->ne[row_dim(r)];
    for (int64_t item = begin; item < end; item++)
        for (int64_t n = 0; n < rows; n++) {
            int64_t s[3], d[3];
            cpu_set_rows_item(r, item, n, s, d);
            const float *v =
                cpu_load_row(r, src, s[0], s[1], s[2], cpu_slot(r, w, 0), cpu_slot(r, w, 3));
            cpu_commit_row(r, o, d[0], d[1], d[2], v, cpu_slot(r, w, 3));
        }
}

bst_status cpu_set_rows_prepare(cpu_run *r, int64_t *items)
{
    const cpu_tensor *dst = &r->in[0], *src = &r->in[1], *ids = &r->in[2], *o = &r->out;
    const int p = row_dim(r);
    for (int64_t n = 0; n < ids->ne[3]; n++) {
        int32_t id = load_i32(ids->data + n * ids->nb[3]);
        if (id < 0 || id >= dst->ne[p])
            return cpu_fail(r, BST_ERR_INVALID_ARG, "id %d at %lld is outside dst's %lld rows",
                            id, (long long)n, (long long)dst->ne[p]);
    }
    if (!out_is_dst(r))
        cpu_parallel(r, o->ne[0] * o->ne[1] * o->ne[2], cpu_grain(o->ne[3]), copy_dst_rows);
    *items = 1;
    for (int d = 0; d < 3; d++)
        if (d != p)
            *items *= src->ne[d];
    return BST_OK;
}

bst_status cpu_run_set_rows(cpu_run *r)
{
    int64_t items = 0;
    const bst_status st = cpu_set_rows_prepare(r, &items);
    if (st != BST_OK)
        return st;
    const cpu_tensor *src = &r->in[1];
    cpu_parallel(r, items, cpu_grain(src->ne[row_dim(r)] * src->ne[3] * 2), set_rows_items);
    return BST_OK;
}

/* --- argmax --- */

bst_status cpu_check_argmax(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    if (!cpu_is_loadable(x->dtype) || x->dtype == BST_DTYPE_I32 || x->dtype == BST_DTYPE_I8)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "argmax of %s", cpu_dtype_name(x->dtype));
    if (o->dtype != BST_DTYPE_I32)
        return cpu_fail(r, BST_ERR_UNSUPPORTED, "argmax writes i32, not %s",
                        cpu_dtype_name(o->dtype));
    if (x->rank < 1 || o->rank != x->rank - 1)
        return cpu_fail(r, BST_ERR_SHAPE, "output rank must be x's rank - 1");
    for (int d = 0; d < 3; d++)
        if (o->ne[d + 1] != x->ne[d])
            return cpu_fail(r, BST_ERR_SHAPE, "output dims must be x's outer dims");
    if (x->ne[3] == 0)
        return cpu_fail(r, BST_ERR_SHAPE, "argmax over an empty dim");
    if (x->ne[3] > INT32_MAX)
        return cpu_fail(r, BST_ERR_OVERFLOW, "argmax index does not fit i32");
    return BST_OK;
}

static void argmax_rows(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    const cpu_tensor *x = &r->in[0], *o = &r->out;
    for (int64_t row = begin; row < end; row++) {
        int64_t i2 = row % x->ne[2], i1 = (row / x->ne[2]) % x->ne[1], i0 = row / x->ne[2] / x->ne[1];
        const float *v = cpu_load_row(r, x, i0, i1, i2, cpu_slot(r, w, 0), cpu_slot(r, w, 3));
        /* First index of the maximum; NaNs are skipped (an all-NaN row gives 0). */
        int64_t best = -1;
        for (int64_t i = 0; i < x->ne[3]; i++)
            if (!isnan(v[i]) && (best < 0 || v[i] > v[best]))
                best = i;
        int32_t out = best < 0 ? 0 : (int32_t)best;
        memcpy(o->data + i0 * o->nb[1] + i1 * o->nb[2] + i2 * o->nb[3], &out, sizeof out);
    }
}

bst_status cpu_run_argmax(cpu_run *r)
{
    const cpu_tensor *x = &r->in[0];
    cpu_parallel(r, x->ne[0] * x->ne[1] * x->ne[2], cpu_grain(x->ne[3]), argmax_rows);
    return BST_OK;
}
