/*
 * tests/test_memplan.c — bsti_plan_memory on hand-placed graphs. Expected sizes and liveness are
 * worked out here from the graphs' shapes and the execution order, never read back from the
 * planner: scratch values reuse memory by liveness (peak below the sum), values live at the same
 * time never overlap, aliases point into their base, values crossing devices get a location on
 * each device, sources/state/outputs are persistent, and device limits are enforced.
 */
#include "graph/ir.h"
#include "test_util.h"

#include <string.h>

#define F32_ROW(n) ((uint64_t)(n) * 4u)

typedef struct built {
    bst_graph *g;
    bsti_partitioning parts;
    bsti_memplan plan;
} built;

static bst_value add_op(bst_graph *g, bst_op op, bst_value a, bst_value b)
{
    bst_value in[2] = {a, b}, out = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_op(g, op, in, b == BST_VALUE_NONE ? 1 : 2, NULL, 0, &out) ==
                    BST_OK);
    return out;
}

static bst_graph *new_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    return g;
}

static bst_value add_input(bst_graph *g, const char *name, int64_t rows, int64_t cols)
{
    int64_t shape[2] = {rows, cols};
    bst_value v = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_input(g, name, BST_DTYPE_F32, 2, shape, NULL, &v) == BST_OK);
    return v;
}

static bool ranges_overlap(const bsti_value_loc *a, const bsti_value_loc *b)
{
    return a->offset < b->offset + b->size && b->offset < a->offset + a->size;
}

static void free_built(built *b)
{
    bsti_memplan_free(&b->plan);
    bsti_partitioning_free(&b->parts);
    bst_graph_destroy(b->g);
}

/* x -> a -> b -> c -> d (output), all on device 0: a, b, c are scratch of 64x64 f32 each. a and
 * b are live together (b reads a), b and c too, but a is dead when c is written. */
static void test_chain_reuse(void)
{
    built b = {.g = new_graph()};
    bst_value x = add_input(b.g, "x", 64, 64);
    bst_value a = add_op(b.g, BST_OP_SILU, x, BST_VALUE_NONE);
    bst_value v2 = add_op(b.g, BST_OP_GELU, a, BST_VALUE_NONE);
    bst_value c = add_op(b.g, BST_OP_SILU, v2, BST_VALUE_NONE);
    bst_value d = add_op(b.g, BST_OP_GELU, c, BST_VALUE_NONE);
    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, d, "d") == BST_OK);
    for (bst_value v = a; v <= d; v++)
        b.g->nodes[v].device = 0;
    CU_ASSERT_FATAL(bsti_partition_graph(b.g, &b.parts) == BST_OK);
    CU_ASSERT_FATAL(bsti_plan_memory(b.g, &b.parts, 1, NULL, &b.plan) == BST_OK);

    const uint64_t size = 64 * F32_ROW(64);
    const bsti_value_loc *la = bsti_memplan_find(&b.plan, a, 0);
    const bsti_value_loc *lb = bsti_memplan_find(&b.plan, v2, 0);
    const bsti_value_loc *lc = bsti_memplan_find(&b.plan, c, 0);
    CU_ASSERT_FATAL(la && lb && lc);
    CU_ASSERT(la->kind == BSTI_LOC_ARENA && lb->kind == BSTI_LOC_ARENA &&
              lc->kind == BSTI_LOC_ARENA);
    CU_ASSERT(la->size == size && lb->size == size && lc->size == size);
    CU_ASSERT(!ranges_overlap(la, lb));
    CU_ASSERT(!ranges_overlap(lb, lc));
    CU_ASSERT(la->offset % 64 == 0 && lb->offset % 64 == 0 && lc->offset % 64 == 0);
    /* At most two of the three are live at once, so two slots suffice. */
    CU_ASSERT(b.plan.arena_bytes[0] < 3 * size);
    CU_ASSERT(b.plan.arena_bytes[0] >= 2 * size);
    CU_ASSERT(la->offset + la->size <= b.plan.arena_bytes[0]);
    CU_ASSERT(lc->offset + lc->size <= b.plan.arena_bytes[0]);

    /* Input and output are persistent, outside the arena. */
    const bsti_value_loc *lx = bsti_memplan_find(&b.plan, x, 0);
    const bsti_value_loc *ld = bsti_memplan_find(&b.plan, d, 0);
    CU_ASSERT_FATAL(lx && ld);
    CU_ASSERT(lx->kind == BSTI_LOC_PERSISTENT && ld->kind == BSTI_LOC_PERSISTENT);
    CU_ASSERT(lx->buffer != ld->buffer);
    CU_ASSERT(lx->offset == 0 && ld->offset == 0);
    CU_ASSERT(b.plan.persistent_bytes[0] == 2 * size);
    CU_ASSERT_FATAL(b.plan.n_buffers == 2);
    CU_ASSERT(b.plan.buffers[lx->buffer].value == x && b.plan.buffers[lx->buffer].size == size);
    CU_ASSERT(b.plan.buffers[ld->buffer].value == d && b.plan.buffers[ld->buffer].device == 0);
    CU_ASSERT(bsti_memplan_find(&b.plan, x, 1) == NULL);
    free_built(&b);
}

/* A value read twice stays live until its last reader: x -> a; b = silu(a); c = gelu(b);
 * e = add(c, a). a overlaps b, c and their ranges. */
static void test_liveness_extends_to_last_use(void)
{
    built b = {.g = new_graph()};
    bst_value x = add_input(b.g, "x", 16, 16);
    bst_value a = add_op(b.g, BST_OP_SILU, x, BST_VALUE_NONE);
    bst_value v2 = add_op(b.g, BST_OP_SILU, a, BST_VALUE_NONE);
    bst_value c = add_op(b.g, BST_OP_GELU, v2, BST_VALUE_NONE);
    bst_value e = add_op(b.g, BST_OP_ADD, c, a);
    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, e, "e") == BST_OK);
    for (bst_value v = a; v <= e; v++)
        b.g->nodes[v].device = 0;
    CU_ASSERT_FATAL(bsti_partition_graph(b.g, &b.parts) == BST_OK);
    CU_ASSERT_FATAL(bsti_plan_memory(b.g, &b.parts, 1, NULL, &b.plan) == BST_OK);
    const bsti_value_loc *la = bsti_memplan_find(&b.plan, a, 0);
    const bsti_value_loc *lb = bsti_memplan_find(&b.plan, v2, 0);
    const bsti_value_loc *lc = bsti_memplan_find(&b.plan, c, 0);
    CU_ASSERT_FATAL(la && lb && lc);
    CU_ASSERT(!ranges_overlap(la, lb));
    CU_ASSERT(!ranges_overlap(la, lc));
    CU_ASSERT(!ranges_overlap(lb, lc));
    CU_ASSERT(b.plan.arena_bytes[0] == 3 * 16 * F32_ROW(16));
    free_built(&b);
}

/* Aliases own no memory: a transpose is its base's location, a view is base + its offset, and
 * set_rows' result is its state's buffer. */
static void test_aliases_share_base(void)
{
    built b = {.g = new_graph()};
    bst_value x = add_input(b.g, "x", 4, 8);
    bst_value a = add_op(b.g, BST_OP_SILU, x, BST_VALUE_NONE);
    bst_value t = add_op(b.g, BST_OP_TRANSPOSE, a, BST_VALUE_NONE);
    bst_value tc = add_op(b.g, BST_OP_CONT, t, BST_VALUE_NONE);
    bst_attr attrs[2] = {
        {.struct_size = sizeof(bst_attr), .key = BST_ATTR_SHAPE, .kind = BST_ATTR_KIND_INTS,
         .count = 2, .ints = {2, 8}},
        {.struct_size = sizeof(bst_attr), .key = BST_ATTR_OFFSET, .kind = BST_ATTR_KIND_INT,
         .count = 1, .ints = {2 * 8 * 4}},
    };
    bst_value view = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_op(b.g, BST_OP_VIEW, &a, 1, attrs, 2, &view) == BST_OK);
    bst_value vs = add_op(b.g, BST_OP_SILU, view, BST_VALUE_NONE);

    int64_t sshape[2] = {4, 8}, one[1] = {1};
    bst_value st, ids, sr;
    CU_ASSERT_FATAL(bst_graph_add_state(b.g, "cache", BST_DTYPE_F32, 2, sshape, &st) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(b.g, "ids", BST_DTYPE_I32, 1, one, NULL, &ids) == BST_OK);
    bst_value row = add_input(b.g, "row", 1, 8);
    bst_value sin[3] = {st, row, ids};
    CU_ASSERT_FATAL(bst_graph_add_op(b.g, BST_OP_SET_ROWS, sin, 3, NULL, 0, &sr) == BST_OK);
    bst_value srv = add_op(b.g, BST_OP_SILU, sr, BST_VALUE_NONE);

    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, tc, "tc") == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, vs, "vs") == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, srv, "srv") == BST_OK);
    for (uint32_t v = 0; v < b.g->n_nodes; v++)
        b.g->nodes[v].device = 0;
    CU_ASSERT_FATAL(bsti_partition_graph(b.g, &b.parts) == BST_OK);
    CU_ASSERT_FATAL(bsti_plan_memory(b.g, &b.parts, 1, NULL, &b.plan) == BST_OK);

    const bsti_value_loc *la = bsti_memplan_find(&b.plan, a, 0);
    const bsti_value_loc *lt = bsti_memplan_find(&b.plan, t, 0);
    const bsti_value_loc *lv = bsti_memplan_find(&b.plan, view, 0);
    CU_ASSERT_FATAL(la && lt && lv);
    CU_ASSERT(la->kind == BSTI_LOC_ARENA);
    CU_ASSERT(lt->kind == la->kind && lt->offset == la->offset && lt->size == 4 * F32_ROW(8));
    CU_ASSERT(lv->kind == la->kind && lv->offset == la->offset + 2 * F32_ROW(8));
    CU_ASSERT(lv->size == 2 * F32_ROW(8));
    /* a stays live until the view's reader, so it must not share memory with tc (written while
     * a is still needed by the view's consumer). */
    const bsti_value_loc *ltc = bsti_memplan_find(&b.plan, tc, 0);
    CU_ASSERT_FATAL(ltc != NULL);
    CU_ASSERT(ltc->kind == BSTI_LOC_PERSISTENT);

    const bsti_value_loc *ls = bsti_memplan_find(&b.plan, st, 0);
    const bsti_value_loc *lsr = bsti_memplan_find(&b.plan, sr, 0);
    CU_ASSERT_FATAL(ls && lsr);
    CU_ASSERT(ls->kind == BSTI_LOC_PERSISTENT && lsr->kind == BSTI_LOC_PERSISTENT);
    CU_ASSERT(ls->buffer == lsr->buffer && ls->offset == lsr->offset && lsr->size == ls->size);
    CU_ASSERT(b.plan.buffers[ls->buffer].value == st);
    CU_ASSERT(b.plan.buffers[ls->buffer].size == 4 * F32_ROW(8));
    /* Persistent: x, cache, ids, row and the three outputs. */
    uint64_t expect = 4 * F32_ROW(8) /* x */ + 4 * F32_ROW(8) /* cache */ + 4 /* ids */ +
                      F32_ROW(8) /* row */ + 4 * F32_ROW(8) /* tc */ + 2 * F32_ROW(8) /* vs */ +
                      4 * F32_ROW(8) /* srv */;
    CU_ASSERT(b.plan.persistent_bytes[0] == expect);
    CU_ASSERT(b.plan.n_buffers == 7);
    free_built(&b);
}

/* a on device 0 is read by b on device 1 (and by e, back on device 0); x is read on both. */
static void test_cross_device(void)
{
    built b = {.g = new_graph()};
    bst_value x = add_input(b.g, "x", 8, 8);
    bst_value a = add_op(b.g, BST_OP_SILU, x, BST_VALUE_NONE);  /* dev 0 */
    bst_value v2 = add_op(b.g, BST_OP_GELU, a, BST_VALUE_NONE); /* dev 1 */
    bst_value c = add_op(b.g, BST_OP_ADD, v2, x);               /* dev 1 */
    bst_value d = add_op(b.g, BST_OP_ADD, c, a);                /* dev 1 */
    bst_value e = add_op(b.g, BST_OP_MUL, d, a);                /* dev 0 */
    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, e, "e") == BST_OK);
    b.g->nodes[a].device = 0;
    b.g->nodes[v2].device = 1;
    b.g->nodes[c].device = 1;
    b.g->nodes[d].device = 1;
    b.g->nodes[e].device = 0;
    CU_ASSERT_FATAL(bsti_partition_graph(b.g, &b.parts) == BST_OK);
    CU_ASSERT_FATAL(b.parts.n_parts == 3);
    CU_ASSERT_FATAL(bsti_plan_memory(b.g, &b.parts, 2, NULL, &b.plan) == BST_OK);

    const uint64_t size = 8 * F32_ROW(8);
    const bsti_value_loc *a0 = bsti_memplan_find(&b.plan, a, 0);
    const bsti_value_loc *a1 = bsti_memplan_find(&b.plan, a, 1);
    CU_ASSERT_FATAL(a0 && a1);
    CU_ASSERT(a0->kind == BSTI_LOC_ARENA && a1->kind == BSTI_LOC_ARENA);
    CU_ASSERT(a0->device == 0 && a1->device == 1 && a1->size == size);
    /* On device 1 the copy of a is live with b, c and d: no overlap with any of them. */
    const bsti_value_loc *b1 = bsti_memplan_find(&b.plan, v2, 1);
    const bsti_value_loc *c1 = bsti_memplan_find(&b.plan, c, 1);
    const bsti_value_loc *d1 = bsti_memplan_find(&b.plan, d, 1);
    CU_ASSERT_FATAL(b1 && c1 && d1);
    CU_ASSERT(!ranges_overlap(a1, b1) && !ranges_overlap(a1, c1) && !ranges_overlap(a1, d1));
    CU_ASSERT(bsti_memplan_find(&b.plan, v2, 0) == NULL);
    /* d is computed on 1 and read on 0. */
    const bsti_value_loc *d0 = bsti_memplan_find(&b.plan, d, 0);
    CU_ASSERT_FATAL(d0 != NULL);
    CU_ASSERT(!ranges_overlap(d0, a0));
    /* x is read on both devices: one persistent buffer on each. */
    const bsti_value_loc *x0 = bsti_memplan_find(&b.plan, x, 0);
    const bsti_value_loc *x1 = bsti_memplan_find(&b.plan, x, 1);
    CU_ASSERT_FATAL(x0 && x1);
    CU_ASSERT(x0->kind == BSTI_LOC_PERSISTENT && x1->kind == BSTI_LOC_PERSISTENT);
    CU_ASSERT(x0->buffer != x1->buffer);
    CU_ASSERT(b.plan.buffers[x1->buffer].device == 1);
    CU_ASSERT(b.plan.persistent_bytes[0] == 2 * size); /* x, e */
    CU_ASSERT(b.plan.persistent_bytes[1] == size);     /* x */
    /* Device 1 holds a's copy, b, c, d; at most three are live at once (a, c, d at d). */
    CU_ASSERT(b.plan.arena_bytes[1] >= 3 * size && b.plan.arena_bytes[1] < 4 * size);
    free_built(&b);
}

static void test_device_limits(void)
{
    built b = {.g = new_graph()};
    bst_value x = add_input(b.g, "big_input", 4, 32); /* 512 bytes */
    bst_value a = add_op(b.g, BST_OP_SILU, x, BST_VALUE_NONE);
    bst_value v2 = add_op(b.g, BST_OP_SILU, a, BST_VALUE_NONE);
    bst_value c = add_op(b.g, BST_OP_ADD, v2, a);
    CU_ASSERT_FATAL(bst_graph_mark_output(b.g, c, "c") == BST_OK);
    for (bst_value v = a; v <= c; v++)
        b.g->nodes[v].device = 0;
    CU_ASSERT_FATAL(bsti_partition_graph(b.g, &b.parts) == BST_OK);

    /* One buffer larger than the device allows. */
    uint64_t limit = 256;
    CU_ASSERT(bsti_plan_memory(b.g, &b.parts, 1, &limit, &b.plan) == BST_ERR_DEVICE_OOM);
    CU_ASSERT(strstr(bst_last_error(), "big_input") != NULL);
    CU_ASSERT(strstr(bst_last_error(), "device 0") != NULL);
    CU_ASSERT(b.plan.locs == NULL && b.plan.n_locs == 0);

    /* Every value fits alone, but a and b are live together: the 1024-byte arena does not. */
    limit = 1000;
    CU_ASSERT(bsti_plan_memory(b.g, &b.parts, 1, &limit, &b.plan) == BST_ERR_DEVICE_OOM);
    CU_ASSERT(strstr(bst_last_error(), "arena") != NULL);
    CU_ASSERT(strstr(bst_last_error(), "device 0") != NULL);

    limit = 1024;
    CU_ASSERT_FATAL(bsti_plan_memory(b.g, &b.parts, 1, &limit, &b.plan) == BST_OK);
    CU_ASSERT(b.plan.arena_bytes[0] == 1024);
    bsti_memplan_free(&b.plan);

    /* A partition on a device the plan does not have. */
    CU_ASSERT(bsti_plan_memory(b.g, &b.parts, 0, NULL, &b.plan) == BST_ERR_INVALID_ARG);
    free_built(&b);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"chain_reuse", test_chain_reuse},
        {"liveness_extends_to_last_use", test_liveness_extends_to_last_use},
        {"aliases_share_base", test_aliases_share_base},
        {"cross_device", test_cross_device},
        {"device_limits", test_device_limits},
        {NULL, NULL},
    };
    return bst_test_run_suite("memplan", cases);
}
