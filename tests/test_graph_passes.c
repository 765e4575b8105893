/*
 * tests/test_graph_passes.c — each graph pass alone on small graphs built with the public API:
 * verify (one rejected structural error per case), infer, DCE (dead nodes go, effects stay in
 * order), CSE (duplicates merge, never across a SET_ROWS on state), fold (values checked against
 * numbers computed here in double), lower (only primitives remain, shapes and masks right), and
 * bst_graph_run_passes by name.
 */
#include "graph/ir.h"
#include "graph/passes.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- helpers --- */

#define OK(call) CU_ASSERT_EQUAL_FATAL((call), BST_OK)

static bst_graph *new_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_create(&g), BST_OK);
    return g;
}

static bst_value input(bst_graph *g, const char *name, uint32_t rank, const int64_t *shape)
{
    bst_value v = BST_VALUE_NONE;
    OK(bst_graph_add_input(g, name, BST_DTYPE_F32, rank, shape, NULL, &v));
    return v;
}

static bst_value op1(bst_graph *g, bst_op op, bst_value a, const bst_attr *attrs, uint32_t n)
{
    bst_value v = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, op, &a, 1, attrs, n, &v));
    return v;
}

static bst_value op2(bst_graph *g, bst_op op, bst_value a, bst_value b, const bst_attr *attrs,
                     uint32_t n)
{
    bst_value in[2] = {a, b};
    bst_value v = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, op, in, 2, attrs, n, &v));
    return v;
}

static bst_value const_f32(bst_graph *g, uint32_t rank, const int64_t *shape, const float *data,
                           size_t count)
{
    bst_value v = BST_VALUE_NONE;
    OK(bst_graph_add_const(g, BST_DTYPE_F32, rank, shape, data, count * sizeof(float), &v));
    return v;
}

static uint32_t count_op(const bst_graph *g, bst_op op)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        n += g->nodes[i].op == op;
    return n;
}

/* Id of the output called `name`, or BSTI_NONE. */
static uint32_t find_output(const bst_graph *g, const char *name)
{
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if ((g->nodes[i].flags & BSTI_NODE_OUTPUT) && g->nodes[i].name &&
            strcmp(g->nodes[i].name, name) == 0)
            return i;
    return BSTI_NONE;
}

static bool message_has(const char *needle)
{
    const char *m = bst_last_error();
    if (!strstr(m, needle)) {
        fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", m, needle);
        return false;
    }
    return true;
}

/* --- run_passes --- */

static void test_run_passes_unknown_name(void)
{
    bst_graph *g = new_graph();
    int64_t s[1] = {4};
    bst_value x = input(g, "x", 1, s);
    op2(g, BST_OP_ADD, x, x, NULL, 0); /* dead */
    bst_value y = op2(g, BST_OP_MUL, x, x, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    uint32_t before = g->n_nodes;
    CU_ASSERT_EQUAL(bst_graph_run_passes(g, "dce,frobnicate"), BST_ERR_INVALID_ARG);
    CU_ASSERT(message_has("frobnicate"));
    CU_ASSERT_EQUAL(g->n_nodes, before); /* nothing ran: names are checked first */
    CU_ASSERT_EQUAL(bst_graph_run_passes(g, "verify,,dce"), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_run_passes(g, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_run_passes(NULL, "dce"), BST_ERR_INVALID_ARG);
    OK(bst_graph_run_passes(g, " verify , infer,dce,cse,fold,lower,verify"));
    CU_ASSERT_EQUAL(g->n_nodes, before - 1);
    bst_graph_destroy(g);
}

/* --- infer --- */

static void test_infer_refreshes_types(void)
{
    bst_graph *g = new_graph();
    int64_t s[2] = {3, 5};
    bst_value x = input(g, "x", 2, s);
    bst_value y = op1(g, BST_OP_SILU, x, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    bsti_type good = g->nodes[y].type;
    g->nodes[y].type.shape[1] = 99; /* a stale edit */
    CU_ASSERT_NOT_EQUAL(bsti_pass_verify(g), BST_OK);
    OK(bsti_pass_infer_shapes(g));
    CU_ASSERT_EQUAL(g->nodes[y].type.shape[1], good.shape[1]);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_infer_names_failing_node(void)
{
    bst_graph *g = new_graph();
    int64_t sa[2] = {3, 5}, sb[2] = {4, 5};
    bst_value a = input(g, "a", 2, sa);
    bst_value b = input(g, "b", 2, sb);
    bst_value y = op2(g, BST_OP_MATMUL, a, b, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    g->nodes[b].type.shape[1] = 6; /* K no longer matches */
    g->nodes[y].line = 7;
    g->nodes[y].col = 3;
    CU_ASSERT_NOT_EQUAL(bsti_pass_infer_shapes(g), BST_OK);
    CU_ASSERT(message_has("%2 (matmul) at 7:3"));
    bst_graph_destroy(g);
}

/* --- DCE --- */

static void test_dce_removes_dead_nodes(void)
{
    bst_graph *g = new_graph();
    int64_t s[2] = {2, 4};
    bst_value x = input(g, "x", 2, s);
    bst_value unused_in = input(g, "unused", 2, s);
    float cdata[8] = {0};
    bst_value c = const_f32(g, 2, s, cdata, 8);
    bst_value dead1 = op2(g, BST_OP_ADD, x, c, NULL, 0);
    bst_value dead2 = op1(g, BST_OP_SILU, dead1, NULL, 0);
    bst_value y = op2(g, BST_OP_MUL, x, x, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    (void)unused_in;
    (void)dead2;
    OK(bsti_pass_dce(g));
    /* x, unused (an input: the graph's interface) and y remain. */
    CU_ASSERT_EQUAL(g->n_nodes, 3);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_INPUT), 2);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_CONST), 0);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_ADD), 0);
    uint32_t out = find_output(g, "y");
    CU_ASSERT_FATAL(out != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[out].op, BST_OP_MUL);
    CU_ASSERT(g->nodes[out].inputs[0] < out);
    CU_ASSERT_EQUAL(g->nodes[g->nodes[out].inputs[0]].op, BST_OP_INPUT);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

/* KV-cache shaped graph: two writes into one state, neither used by an output. */
static void build_two_writes(bst_graph *g, bst_value *out_state, bst_value *out_w1,
                             bst_value *out_w2)
{
    int64_t ss[2] = {8, 4}, rs[2] = {2, 4}, is[1] = {2};
    bst_value st = BST_VALUE_NONE, ids = BST_VALUE_NONE;
    OK(bst_graph_add_state(g, "cache", BST_DTYPE_F32, 2, ss, &st));
    bst_value src = input(g, "src", 2, rs);
    OK(bst_graph_add_input(g, "ids", BST_DTYPE_I32, 1, is, NULL, &ids));
    bst_value in1[3] = {st, src, ids};
    OK(bst_graph_add_op(g, BST_OP_SET_ROWS, in1, 3, NULL, 0, out_w1));
    bst_value twice =
        op1(g, BST_OP_SCALE, src, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 2.0)}, 1);
    bst_value in2[3] = {*out_w1, twice, ids};
    OK(bst_graph_add_op(g, BST_OP_SET_ROWS, in2, 3, NULL, 0, out_w2));
    *out_state = st;
}

static void test_dce_keeps_effects_in_order(void)
{
    bst_graph *g = new_graph();
    bst_value st, w1, w2;
    build_two_writes(g, &st, &w1, &w2);
    int64_t s[1] = {3};
    bst_value x = input(g, "x", 1, s);
    op2(g, BST_OP_ADD, x, x, NULL, 0); /* dead */
    bst_value y = op1(g, BST_OP_SILU, x, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    uint32_t before = g->n_nodes;
    OK(bsti_pass_dce(g));
    CU_ASSERT_EQUAL(g->n_nodes, before - 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SET_ROWS), 2);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SCALE), 1); /* feeds an effect */
    uint32_t first = BSTI_NONE, second = BSTI_NONE;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].op != BST_OP_SET_ROWS)
            continue;
        if (first == BSTI_NONE)
            first = i;
        else
            second = i;
    }
    CU_ASSERT_FATAL(first != BSTI_NONE && second != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[second].inputs[0], first); /* order and chaining kept */
    CU_ASSERT_EQUAL(g->nodes[g->nodes[first].inputs[0]].op, BST_OP_STATE);
    CU_ASSERT(g->nodes[first].flags & BSTI_NODE_EFFECT);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

/* --- CSE --- */

static void test_cse_merges_duplicates(void)
{
    bst_graph *g = new_graph();
    int64_t s[2] = {4, 6};
    bst_value x = input(g, "x", 2, s);
    bst_value a1 = op2(g, BST_OP_ADD, x, x, NULL, 0);
    bst_value a2 = op2(g, BST_OP_ADD, x, x, NULL, 0);
    bst_value s1 = op1(g, BST_OP_SCALE, a1, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 0.5)}, 1);
    bst_value s2 = op1(g, BST_OP_SCALE, a2, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 0.5)}, 1);
    bst_value s3 = op1(g, BST_OP_SCALE, a2, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 0.25)}, 1);
    /* Views whose attributes come in a different order are the same view. */
    int64_t shape[2] = {2, 6}, strides[2] = {24, 4};
    bst_attr va[3] = {bst_attr_ints(BST_ATTR_SHAPE, shape, 2),
                      bst_attr_ints(BST_ATTR_STRIDES, strides, 2),
                      bst_attr_int(BST_ATTR_OFFSET, 48)};
    bst_attr vb[3] = {va[2], va[0], va[1]};
    bst_value v1 = op1(g, BST_OP_VIEW, x, va, 3);
    bst_value v2 = op1(g, BST_OP_VIEW, x, vb, 3);
    bst_value m1 = op2(g, BST_OP_MUL, s1, s2, NULL, 0);
    bst_value m2 = op2(g, BST_OP_MUL, v1, v2, NULL, 0);
    bst_value m3 = op2(g, BST_OP_MUL, s1, s3, NULL, 0);
    OK(bst_graph_mark_output(g, m1, "m1"));
    OK(bst_graph_mark_output(g, m2, "m2"));
    OK(bst_graph_mark_output(g, m3, "m3"));
    OK(bsti_pass_cse(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_ADD), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SCALE), 2); /* 0.5 merged, 0.25 kept */
    CU_ASSERT_EQUAL(count_op(g, BST_OP_VIEW), 1);
    uint32_t o1 = find_output(g, "m1"), o2 = find_output(g, "m2"), o3 = find_output(g, "m3");
    CU_ASSERT_FATAL(o1 != BSTI_NONE && o2 != BSTI_NONE && o3 != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[o1].inputs[0], g->nodes[o1].inputs[1]);
    CU_ASSERT_EQUAL(g->nodes[o2].inputs[0], g->nodes[o2].inputs[1]);
    CU_ASSERT_NOT_EQUAL(g->nodes[o3].inputs[0], g->nodes[o3].inputs[1]);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_cse_moves_output_name(void)
{
    bst_graph *g = new_graph();
    int64_t s[1] = {5};
    bst_value x = input(g, "x", 1, s);
    bst_value a = op1(g, BST_OP_SILU, x, NULL, 0);
    bst_value b = op1(g, BST_OP_SILU, x, NULL, 0);
    bst_value c = op1(g, BST_OP_GELU, x, NULL, 0);
    bst_value d = op1(g, BST_OP_GELU, x, NULL, 0);
    bst_value e = op2(g, BST_OP_ADD, a, a, NULL, 0);
    OK(bst_graph_mark_output(g, b, "b"));
    OK(bst_graph_mark_output(g, c, "c"));
    OK(bst_graph_mark_output(g, d, "d"));
    OK(bst_graph_mark_output(g, e, "e"));
    OK(bsti_pass_cse(g));
    /* b merged into a, which takes the name; c and d are both named outputs and both stay. */
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SILU), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_GELU), 2);
    uint32_t ob = find_output(g, "b"), oe = find_output(g, "e");
    CU_ASSERT_FATAL(ob != BSTI_NONE && oe != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[ob].op, BST_OP_SILU);
    CU_ASSERT_EQUAL(g->nodes[oe].inputs[0], ob);
    CU_ASSERT(find_output(g, "c") != BSTI_NONE && find_output(g, "d") != BSTI_NONE);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_cse_not_across_set_rows(void)
{
    bst_graph *g = new_graph();
    int64_t ss[2] = {8, 4}, rs[2] = {2, 4}, is[1] = {2};
    bst_value st = BST_VALUE_NONE, ids = BST_VALUE_NONE;
    OK(bst_graph_add_state(g, "cache", BST_DTYPE_F32, 2, ss, &st));
    bst_value src = input(g, "src", 2, rs);
    OK(bst_graph_add_input(g, "ids", BST_DTYPE_I32, 1, is, NULL, &ids));
    int64_t shape[2] = {4, 4}, strides[2] = {16, 4};
    bst_attr va[3] = {bst_attr_ints(BST_ATTR_SHAPE, shape, 2),
                      bst_attr_ints(BST_ATTR_STRIDES, strides, 2),
                      bst_attr_int(BST_ATTR_OFFSET, 0)};
    /* Two reads before the write (mergeable), one after it (must stay apart). */
    bst_value v0 = op1(g, BST_OP_VIEW, st, va, 3);
    bst_value c0 = op1(g, BST_OP_CONT, v0, NULL, 0);
    bst_value v1 = op1(g, BST_OP_VIEW, st, va, 3);
    bst_value c1 = op1(g, BST_OP_CONT, v1, NULL, 0);
    bst_value in[3] = {st, src, ids};
    bst_value w = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_SET_ROWS, in, 3, NULL, 0, &w));
    bst_value v2 = op1(g, BST_OP_VIEW, st, va, 3);
    bst_value c2 = op1(g, BST_OP_CONT, v2, NULL, 0);
    /* Pure values not derived from state still merge across the write. */
    bst_value p0 = op1(g, BST_OP_SILU, src, NULL, 0);
    bst_value r0 = op2(g, BST_OP_ADD, c0, c1, NULL, 0);
    bst_value p1 = op1(g, BST_OP_SILU, src, NULL, 0);
    bst_value r1 = op2(g, BST_OP_ADD, c2, c2, NULL, 0);
    bst_value q = op2(g, BST_OP_ADD, p0, p1, NULL, 0);
    (void)v1;
    (void)c1;
    OK(bst_graph_mark_output(g, r0, "before"));
    OK(bst_graph_mark_output(g, r1, "after"));
    OK(bst_graph_mark_output(g, q, "pure"));
    OK(bsti_pass_cse(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_VIEW), 2);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_CONT), 2);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SILU), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SET_ROWS), 1);
    uint32_t ob = find_output(g, "before"), oa = find_output(g, "after");
    CU_ASSERT_FATAL(ob != BSTI_NONE && oa != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[ob].inputs[0], g->nodes[ob].inputs[1]);
    uint32_t set = BSTI_NONE;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == BST_OP_SET_ROWS)
            set = i;
    CU_ASSERT_FATAL(set != BSTI_NONE);
    CU_ASSERT(g->nodes[ob].inputs[0] < set);      /* read before the write */
    CU_ASSERT(g->nodes[oa].inputs[0] > set);      /* read after the write, its own node */
    CU_ASSERT(g->nodes[g->nodes[oa].inputs[0]].inputs[0] > set);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_cse_merges_equal_consts(void)
{
    bst_graph *g = new_graph();
    int64_t s[1] = {3};
    float d1[3] = {1, 2, 3}, d2[3] = {1, 2, 4};
    bst_value c1 = const_f32(g, 1, s, d1, 3);
    bst_value c2 = const_f32(g, 1, s, d1, 3);
    bst_value c3 = const_f32(g, 1, s, d2, 3);
    bst_value x = input(g, "x", 1, s);
    bst_value a = op2(g, BST_OP_ADD, x, c1, NULL, 0);
    bst_value b = op2(g, BST_OP_ADD, a, c2, NULL, 0);
    bst_value c = op2(g, BST_OP_ADD, b, c3, NULL, 0);
    OK(bst_graph_mark_output(g, c, "y"));
    OK(bsti_pass_cse(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_CONST), 2);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

/* --- fold --- */

/* Folds `g` and returns the data of the CONST the output "y" became (NULL if it did not). */
static const float *folded_output(bst_graph *g, uint32_t expect_count)
{
    bst_status st = bsti_pass_fold(g);
    if (st != BST_OK)
        fprintf(stderr, "\n  fold: %s\n", bst_last_error());
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    uint32_t y = find_output(g, "y");
    CU_ASSERT_FATAL(y != BSTI_NONE);
    CU_ASSERT_EQUAL_FATAL(g->nodes[y].op, BST_OP_CONST);
    CU_ASSERT_EQUAL_FATAL(g->nodes[y].data_size, expect_count * sizeof(float));
    CU_ASSERT_EQUAL(bsti_pass_verify(g), BST_OK);
    return g->nodes[y].const_data;
}

static bool close_to(double got, double want)
{
    return fabs(got - want) <= 1e-6 * (1.0 + fabs(want));
}

static void test_fold_elementwise(void)
{
    bst_graph *g = new_graph();
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    float a[6] = {-2.5f, -1.0f, 0.0f, 0.5f, 1.5f, 3.0f};
    float b[3] = {0.25f, -4.0f, 2.0f};
    bst_value ca = const_f32(g, 2, sa, a, 6);
    bst_value cb = const_f32(g, 1, sb, b, 3);
    bst_value add = op2(g, BST_OP_ADD, ca, cb, NULL, 0);
    bst_value mul = op2(g, BST_OP_MUL, add, cb, NULL, 0);
    bst_value sc = op1(g, BST_OP_SCALE, mul, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 0.3)}, 1);
    bst_value si = op1(g, BST_OP_SILU, sc, NULL, 0);
    bst_value ge = op1(g, BST_OP_GELU, si, NULL, 0);
    OK(bst_graph_mark_output(g, ge, "y"));
    const float *y = folded_output(g, 6);
    CU_ASSERT_EQUAL(g->n_nodes, 1); /* every intermediate and input const is gone */
    for (int i = 0; i < 6; i++) {
        double v = ((double)a[i] + b[i % 3]) * b[i % 3] * 0.3;
        v = v / (1.0 + exp(-v));
        v = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        CU_ASSERT(close_to(y[i], v));
    }
    bst_graph_destroy(g);
}

static void test_fold_broadcast_mul_and_cast(void)
{
    bst_graph *g = new_graph();
    int64_t sa[3] = {2, 2, 3}, sb[3] = {2, 1, 3};
    float a[12], b[6];
    for (int i = 0; i < 12; i++)
        a[i] = (float)i - 5.0f;
    for (int i = 0; i < 6; i++)
        b[i] = 0.5f * (float)(i + 1);
    bst_value ca = const_f32(g, 3, sa, a, 12);
    bst_value cb = const_f32(g, 3, sb, b, 6);
    bst_value mul = op2(g, BST_OP_MUL, ca, cb, NULL, 0);
    bst_value cast =
        op1(g, BST_OP_CAST, mul, (bst_attr[]){bst_attr_int(BST_ATTR_DTYPE, BST_DTYPE_F32)}, 1);
    bst_value y = op2(g, BST_OP_ADD, cast, cast, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    const float *out = folded_output(g, 12);
    for (int i0 = 0; i0 < 2; i0++)
        for (int i1 = 0; i1 < 2; i1++)
            for (int i2 = 0; i2 < 3; i2++) {
                int ia = (i0 * 2 + i1) * 3 + i2, ib = i0 * 3 + i2;
                CU_ASSERT(close_to(out[ia], 2.0 * a[ia] * b[ib]));
            }
    bst_graph_destroy(g);
}

static void test_fold_int_const_cast(void)
{
    bst_graph *g = new_graph();
    int64_t s[1] = {4};
    int32_t d[4] = {-3, 0, 7, 100000};
    bst_value c = BST_VALUE_NONE;
    OK(bst_graph_add_const(g, BST_DTYPE_I32, 1, s, d, sizeof d, &c));
    bst_value y =
        op1(g, BST_OP_CAST, c, (bst_attr[]){bst_attr_int(BST_ATTR_DTYPE, BST_DTYPE_F32)}, 1);
    OK(bst_graph_mark_output(g, y, "y"));
    const float *out = folded_output(g, 4);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(out[i], (float)d[i]);
    bst_graph_destroy(g);
}

static void test_fold_layout_ops(void)
{
    bst_graph *g = new_graph();
    int64_t s[3] = {2, 3, 4};
    float d[24];
    for (int i = 0; i < 24; i++)
        d[i] = (float)(i * i) * 0.5f;
    bst_value c = const_f32(g, 3, s, d, 24);
    int64_t perm[3] = {2, 0, 1};
    bst_value p = op1(g, BST_OP_PERMUTE, c, (bst_attr[]){bst_attr_ints(BST_ATTR_PERM, perm, 3)}, 1);
    bst_value pc = op1(g, BST_OP_CONT, p, NULL, 0);          /* [4,2,3] */
    int64_t rs[2] = {8, 3};
    bst_value r = op1(g, BST_OP_RESHAPE, pc, (bst_attr[]){bst_attr_ints(BST_ATTR_SHAPE, rs, 2)}, 1);
    bst_value t = op1(g, BST_OP_TRANSPOSE, r, NULL, 0);     /* [3,8] view */
    /* A view: rows 1..2 of the transposed matrix, columns 2..6 (offset in bytes into r). */
    int64_t vs[2] = {2, 5}, vstr[2] = {4, 12};
    bst_attr va[3] = {bst_attr_ints(BST_ATTR_SHAPE, vs, 2),
                      bst_attr_ints(BST_ATTR_STRIDES, vstr, 2),
                      bst_attr_int(BST_ATTR_OFFSET, 4 + 2 * 12)};
    bst_value v = op1(g, BST_OP_VIEW, t, va, 3);
    bst_value y = op1(g, BST_OP_CONT, v, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    const float *out = folded_output(g, 10);
    /* Reference: P[a][b][c] = D[b][c][a]; R[i][j] = flat P; T[i][j] = R[j][i];
     * V[i][j] = T[1+i][2+j]. */
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 5; j++) {
            int ti = 1 + i, tj = 2 + j;         /* T index */
            int ri = tj, rj = ti;               /* R index */
            int flat = ri * 3 + rj;             /* index into P [4,2,3] */
            int pa = flat / 6, pb = (flat / 3) % 2, pcc = flat % 3;
            float want = d[(pb * 3 + pcc) * 4 + pa];
            CU_ASSERT_EQUAL(out[i * 5 + j], want);
        }
    }
    bst_graph_destroy(g);
}

/* A VIEW addresses bytes of the memory under it: viewing a transpose of a const reads the
 * const's own byte order, which folding the transpose into a dense CONST would change. */
static void test_fold_view_reads_root_bytes(void)
{
    bst_graph *g = new_graph();
    int64_t s[2] = {2, 3};
    float d[6] = {1, 2, 3, 4, 5, 6};
    bst_value c = const_f32(g, 2, s, d, 6);
    bst_value t = op1(g, BST_OP_TRANSPOSE, c, NULL, 0);
    int64_t vs[1] = {6}, vst[1] = {4};
    bst_attr va[3] = {bst_attr_ints(BST_ATTR_SHAPE, vs, 1), bst_attr_ints(BST_ATTR_STRIDES, vst, 1),
                      bst_attr_int(BST_ATTR_OFFSET, 0)};
    bst_value v = op1(g, BST_OP_VIEW, t, va, 3);
    bst_value y = op1(g, BST_OP_CONT, v, NULL, 0);
    bst_value tc = op1(g, BST_OP_CONT, t, NULL, 0);
    OK(bst_graph_mark_output(g, tc, "t"));
    OK(bst_graph_mark_output(g, y, "y"));
    const float *out = folded_output(g, 6);
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(out[i], d[i]);
    uint32_t to = find_output(g, "t");
    CU_ASSERT_FATAL(to != BSTI_NONE);
    CU_ASSERT_EQUAL_FATAL(g->nodes[to].op, BST_OP_CONST);
    const float *tr = g->nodes[to].const_data;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            CU_ASSERT_EQUAL(tr[i * 2 + j], d[j * 3 + i]);
    bst_graph_destroy(g);
}

static void test_fold_scale_chain_and_identities(void)
{
    bst_graph *g = new_graph();
    int64_t s[2] = {3, 4};
    bst_value x = input(g, "x", 2, s);
    bst_value s1 = op1(g, BST_OP_SCALE, x, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 2.0)}, 1);
    bst_value s2 = op1(g, BST_OP_SCALE, s1, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 3.0)}, 1);
    bst_value s3 = op1(g, BST_OP_SCALE, s2, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, -0.25)}, 1);
    bst_value one = op1(g, BST_OP_SCALE, x, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 1.0)}, 1);
    bst_value r = op1(g, BST_OP_RESHAPE, one, (bst_attr[]){bst_attr_ints(BST_ATTR_SHAPE, s, 2)}, 1);
    bst_value y = op2(g, BST_OP_ADD, s3, r, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    OK(bsti_pass_fold(g));
    /* x, one scale by -1.5, add. */
    CU_ASSERT_EQUAL(g->n_nodes, 3);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SCALE), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_RESHAPE), 0);
    uint32_t out = find_output(g, "y");
    CU_ASSERT_FATAL(out != BSTI_NONE);
    const bsti_node *add = &g->nodes[out];
    const bsti_node *scale = &g->nodes[add->inputs[0]];
    CU_ASSERT_EQUAL(scale->op, BST_OP_SCALE);
    CU_ASSERT(close_to(bsti_attr_float(scale, BST_ATTR_SCALE, 0.0), 2.0 * 3.0 * -0.25));
    CU_ASSERT_EQUAL(g->nodes[scale->inputs[0]].op, BST_OP_INPUT);
    CU_ASSERT_EQUAL(g->nodes[add->inputs[1]].op, BST_OP_INPUT);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_fold_keeps_state_reads_ordered(void)
{
    bst_graph *g = new_graph();
    int64_t ss[2] = {8, 4}, rs[2] = {2, 4}, is[1] = {2};
    bst_value st = BST_VALUE_NONE, ids = BST_VALUE_NONE;
    OK(bst_graph_add_state(g, "cache", BST_DTYPE_F32, 2, ss, &st));
    bst_value src = input(g, "src", 2, rs);
    OK(bst_graph_add_input(g, "ids", BST_DTYPE_I32, 1, is, NULL, &ids));
    /* scale(view(state)) before a write, scaled again after it: collapsing the chain would read
     * the state after the write. A scale by 1 of the state read must stay a copy too. */
    bst_value s1 = op1(g, BST_OP_SCALE, st, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 2.0)}, 1);
    bst_value id = op1(g, BST_OP_SCALE, st, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 1.0)}, 1);
    bst_value in[3] = {st, src, ids};
    bst_value w = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_SET_ROWS, in, 3, NULL, 0, &w));
    bst_value s2 = op1(g, BST_OP_SCALE, s1, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 3.0)}, 1);
    bst_value y = op2(g, BST_OP_ADD, s2, id, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    uint32_t before = g->n_nodes;
    OK(bsti_pass_fold(g));
    CU_ASSERT_EQUAL(g->n_nodes, before);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SCALE), 3);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_fold_leaves_big_and_nonconst(void)
{
    bst_graph *g = new_graph();
    int64_t s[1] = {(int64_t)1 << 21};
    float *big = calloc((size_t)s[0], sizeof *big);
    CU_ASSERT_FATAL(big != NULL);
    bst_value c = const_f32(g, 1, s, big, (size_t)s[0]);
    free(big);
    bst_value y = op1(g, BST_OP_SILU, c, NULL, 0);
    int64_t xs[1] = {4};
    bst_value x = input(g, "x", 1, xs);
    bst_value z = op1(g, BST_OP_SILU, x, NULL, 0);
    OK(bst_graph_mark_output(g, y, "y"));
    OK(bst_graph_mark_output(g, z, "z"));
    OK(bsti_pass_fold(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SILU), 2);
    bst_graph_destroy(g);
}

/* --- lower --- */

static bool only_primitives(const bst_graph *g)
{
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_op_info *info = bsti_op_get(g->nodes[i].op);
        if (!info || info->is_high_level)
            return false;
    }
    return true;
}

static bst_value attention(bst_graph *g, bst_value q, bst_value k, bst_value v, bst_value mask,
                           bool causal, int64_t window)
{
    bst_attr attrs[3] = {bst_attr_float(BST_ATTR_SCALE, 0.125),
                         bst_attr_int(BST_ATTR_CAUSAL, causal),
                         bst_attr_int(BST_ATTR_WINDOW, window)};
    bst_value in[4] = {q, k, v, mask};
    bst_value out = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_ATTENTION, in, mask == BST_VALUE_NONE ? 3 : 4, attrs, 3, &out));
    return out;
}

static void qkv(bst_graph *g, int64_t T, int64_t S, const uint32_t *tsym, const uint32_t *ssym,
                bst_value *q, bst_value *k, bst_value *v)
{
    int64_t qs[3] = {T, 4, 8}, ks[3] = {S, 2, 8};
    OK(bst_graph_add_input(g, "q", BST_DTYPE_F32, 3, qs, tsym, q));
    OK(bst_graph_add_input(g, "k", BST_DTYPE_F32, 3, ks, ssym, k));
    OK(bst_graph_add_input(g, "v", BST_DTYPE_F32, 3, ks, ssym, v));
}

static void test_lower_attention_causal(void)
{
    bst_graph *g = new_graph();
    bst_value q, k, v;
    qkv(g, 3, 7, NULL, NULL, &q, &k, &v);
    bst_value a = attention(g, q, k, v, BST_VALUE_NONE, true, 0);
    bst_value y = op1(g, BST_OP_SCALE, a, (bst_attr[]){bst_attr_float(BST_ATTR_SCALE, 2.0)}, 1);
    OK(bst_graph_mark_output(g, a, "attn"));
    OK(bst_graph_mark_output(g, y, "y"));
    OK(bsti_pass_lower(g, NULL, NULL));
    CU_ASSERT(only_primitives(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_MATMUL), 2);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SOFTMAX), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_PERMUTE), 4);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_CONT), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_CONST), 1);
    uint32_t out = find_output(g, "attn");
    CU_ASSERT_FATAL(out != BSTI_NONE);
    const bsti_type *t = &g->nodes[out].type;
    CU_ASSERT_EQUAL(g->nodes[out].op, BST_OP_CONT);
    CU_ASSERT_EQUAL(t->dtype, BST_DTYPE_F32);
    CU_ASSERT_EQUAL(t->rank, 3);
    CU_ASSERT(t->shape[0] == 3 && t->shape[1] == 4 && t->shape[2] == 8);
    uint32_t yo = find_output(g, "y");
    CU_ASSERT_FATAL(yo != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[yo].inputs[0], out); /* uses follow the lowered value */
    /* The softmax carries the scale and the causal mask: key j hidden when j > 4 + t. */
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *n = &g->nodes[i];
        if (n->op == BST_OP_SOFTMAX) {
            CU_ASSERT(close_to(bsti_attr_float(n, BST_ATTR_SCALE, 0.0), 0.125));
            CU_ASSERT_EQUAL_FATAL(n->n_inputs, 2);
            const bsti_node *m = &g->nodes[n->inputs[1]];
            CU_ASSERT_EQUAL_FATAL(m->op, BST_OP_CONST);
            CU_ASSERT_EQUAL_FATAL(m->data_size, 3 * 7 * sizeof(float));
            const float *md = m->const_data;
            for (int tq = 0; tq < 3; tq++)
                for (int j = 0; j < 7; j++) {
                    float want = j > 4 + tq ? -INFINITY : 0.0f;
                    CU_ASSERT_EQUAL(md[tq * 7 + j], want);
                }
            const bsti_type *st = &g->nodes[n->inputs[0]].type;
            CU_ASSERT(st->rank == 3 && st->shape[0] == 4 && st->shape[1] == 3 &&
                      st->shape[2] == 7);
        }
    }
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_lower_attention_window_and_mask(void)
{
    bst_graph *g = new_graph();
    bst_value q, k, v, mask = BST_VALUE_NONE;
    qkv(g, 2, 6, NULL, NULL, &q, &k, &v);
    int64_t ms[2] = {2, 6};
    OK(bst_graph_add_input(g, "mask", BST_DTYPE_F32, 2, ms, NULL, &mask));
    bst_value a = attention(g, q, k, v, mask, true, 3);
    OK(bst_graph_mark_output(g, a, "attn"));
    OK(bsti_pass_lower(g, NULL, NULL));
    CU_ASSERT(only_primitives(g));
    /* Static dims: the attribute mask is built and added to the given one. */
    bool seen = false;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const bsti_node *n = &g->nodes[i];
        if (n->op != BST_OP_CONST)
            continue;
        seen = true;
        const float *md = n->const_data;
        for (int t = 0; t < 2; t++)
            for (int j = 0; j < 6; j++) {
                int p = 6 - 2 + t;
                bool hidden = j > p || j <= p - 3;
                CU_ASSERT_EQUAL(md[t * 6 + j], hidden ? -INFINITY : 0.0f);
            }
    }
    CU_ASSERT(seen);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_ADD), 1);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_lower_attention_symbolic(void)
{
    uint32_t tsym[3] = {BST_SYM_N_TOKENS, 0, 0}, ssym[3] = {BST_SYM_N_KV, 0, 0};
    /* Without a mask there is no way to express causality for unknown T and S. */
    bst_graph *g = new_graph();
    bst_value q, k, v;
    qkv(g, 16, 64, tsym, ssym, &q, &k, &v);
    bst_value a = attention(g, q, k, v, BST_VALUE_NONE, true, 0);
    OK(bst_graph_mark_output(g, a, "attn"));
    uint32_t before = g->n_nodes;
    CU_ASSERT_EQUAL(bsti_pass_lower(g, NULL, NULL), BST_ERR_UNSUPPORTED);
    CU_ASSERT(message_has("explicit mask"));
    CU_ASSERT_EQUAL(g->n_nodes, before); /* untouched on failure */
    CU_ASSERT_EQUAL(g->nodes[a].op, BST_OP_ATTENTION);
    bst_graph_destroy(g);

    /* With a mask input it lowers, the mask going straight to the softmax. */
    g = new_graph();
    qkv(g, 16, 64, tsym, ssym, &q, &k, &v);
    int64_t ms[2] = {16, 64};
    uint32_t msym[2] = {BST_SYM_N_TOKENS, BST_SYM_N_KV};
    bst_value mask = BST_VALUE_NONE;
    OK(bst_graph_add_input(g, "mask", BST_DTYPE_F32, 2, ms, msym, &mask));
    a = attention(g, q, k, v, mask, true, 0);
    OK(bst_graph_mark_output(g, a, "attn"));
    OK(bsti_pass_lower(g, NULL, NULL));
    CU_ASSERT(only_primitives(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_CONST), 0);
    uint32_t out = find_output(g, "attn");
    CU_ASSERT_FATAL(out != BSTI_NONE);
    CU_ASSERT_EQUAL(g->nodes[out].type.sym[0], BST_SYM_N_TOKENS);
    CU_ASSERT_EQUAL(g->nodes[out].type.shape[0], 16);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static void test_lower_ffn_and_rms_norm_mul(void)
{
    bst_graph *g = new_graph();
    int64_t xs[2] = {5, 16}, gs[2] = {24, 16}, ds[2] = {16, 24}, ws[1] = {16};
    bst_value x = input(g, "x", 2, xs);
    static float wg[24 * 16], wu[24 * 16], wd[16 * 24], wn[16];
    bst_value gate, up, down, norm_w;
    OK(bst_graph_add_weight(g, "gate", BST_DTYPE_F32, 2, gs, wg, sizeof wg, &gate));
    OK(bst_graph_add_weight(g, "up", BST_DTYPE_F32, 2, gs, wu, sizeof wu, &up));
    OK(bst_graph_add_weight(g, "down", BST_DTYPE_F32, 2, ds, wd, sizeof wd, &down));
    OK(bst_graph_add_weight(g, "norm", BST_DTYPE_F32, 1, ws, wn, sizeof wn, &norm_w));
    bst_value n = op2(g, BST_OP_RMS_NORM_MUL, x, norm_w,
                      (bst_attr[]){bst_attr_float(BST_ATTR_EPS, 1e-5)}, 1);
    bst_value in[4] = {n, gate, up, down};
    bst_value f = BST_VALUE_NONE;
    OK(bst_graph_add_op(g, BST_OP_FFN_SWIGLU, in, 4, NULL, 0, &f));
    OK(bst_graph_mark_output(g, f, "out"));
    OK(bsti_pass_lower(g, NULL, NULL));
    CU_ASSERT(only_primitives(g));
    CU_ASSERT_EQUAL(count_op(g, BST_OP_RMS_NORM), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_MATMUL), 3);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SILU), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_MUL), 2);
    uint32_t out = find_output(g, "out");
    CU_ASSERT_FATAL(out != BSTI_NONE);
    const bsti_node *down_mm = &g->nodes[out];
    CU_ASSERT_EQUAL(down_mm->op, BST_OP_MATMUL);
    CU_ASSERT(down_mm->type.shape[0] == 5 && down_mm->type.shape[1] == 16);
    CU_ASSERT_EQUAL(g->nodes[down_mm->inputs[1]].op, BST_OP_WEIGHT);
    CU_ASSERT_STRING_EQUAL(g->nodes[down_mm->inputs[1]].name, "down");
    const bsti_node *prod = &g->nodes[down_mm->inputs[0]];
    CU_ASSERT_EQUAL(prod->op, BST_OP_MUL);
    CU_ASSERT_EQUAL(g->nodes[prod->inputs[0]].op, BST_OP_SILU);
    const bsti_node *gmm = &g->nodes[g->nodes[prod->inputs[0]].inputs[0]];
    CU_ASSERT_STRING_EQUAL(g->nodes[gmm->inputs[1]].name, "gate");
    CU_ASSERT_STRING_EQUAL(g->nodes[g->nodes[prod->inputs[1]].inputs[1]].name, "up");
    const bsti_node *nm = &g->nodes[gmm->inputs[0]];
    CU_ASSERT_EQUAL(nm->op, BST_OP_MUL);
    const bsti_node *rn = &g->nodes[nm->inputs[0]];
    CU_ASSERT_EQUAL(rn->op, BST_OP_RMS_NORM);
    CU_ASSERT(close_to(bsti_attr_float(rn, BST_ATTR_EPS, 0.0), 1e-5));
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

static bool keep_attention(void *user, const bst_graph *g, uint32_t id)
{
    (*(int *)user)++;
    return g->nodes[id].op == BST_OP_ATTENTION;
}

static void test_lower_keep_callback(void)
{
    bst_graph *g = new_graph();
    bst_value q, k, v;
    qkv(g, 3, 7, NULL, NULL, &q, &k, &v);
    bst_value a = attention(g, q, k, v, BST_VALUE_NONE, true, 0);
    int64_t ws[1] = {8};
    static float wn[8];
    bst_value w = BST_VALUE_NONE;
    OK(bst_graph_add_weight(g, "norm", BST_DTYPE_F32, 1, ws, wn, sizeof wn, &w));
    bst_value n =
        op2(g, BST_OP_RMS_NORM_MUL, a, w, (bst_attr[]){bst_attr_float(BST_ATTR_EPS, 1e-6)}, 1);
    OK(bst_graph_mark_output(g, n, "y"));
    int calls = 0;
    OK(bsti_pass_lower(g, keep_attention, &calls));
    CU_ASSERT_EQUAL(calls, 2);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_ATTENTION), 1);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_RMS_NORM_MUL), 0);
    CU_ASSERT_EQUAL(count_op(g, BST_OP_RMS_NORM), 1);
    OK(bsti_pass_verify(g));
    bst_graph_destroy(g);
}

/* --- verify --- */

/* A small valid graph with every kind of node verify looks at:
 * %0 cache (state), %1 src, %2 ids, %3 x, %4 w (weight), %5 view of cache, %6 set_rows,
 * %7 add, %8 matmul (output "y"). */
typedef struct vgraph {
    bst_graph *g;
    bst_value state, src, ids, x, w, view, set, add, mm;
} vgraph;

static float vweight[4 * 4];

static vgraph build_valid(void)
{
    vgraph r;
    r.g = new_graph();
    int64_t ss[2] = {8, 4}, rs[2] = {2, 4}, is[1] = {2}, ws[2] = {4, 4};
    OK(bst_graph_add_state(r.g, "cache", BST_DTYPE_F32, 2, ss, &r.state));
    r.src = input(r.g, "src", 2, rs);
    OK(bst_graph_add_input(r.g, "ids", BST_DTYPE_I32, 1, is, NULL, &r.ids));
    r.x = input(r.g, "x", 2, rs);
    OK(bst_graph_add_weight(r.g, "w", BST_DTYPE_F32, 2, ws, vweight, sizeof vweight, &r.w));
    int64_t vs[2] = {2, 4}, vst[2] = {16, 4};
    bst_attr va[3] = {bst_attr_ints(BST_ATTR_SHAPE, vs, 2), bst_attr_ints(BST_ATTR_STRIDES, vst, 2),
                      bst_attr_int(BST_ATTR_OFFSET, 32)};
    r.view = op1(r.g, BST_OP_VIEW, r.state, va, 3);
    bst_value in[3] = {r.state, r.src, r.ids};
    OK(bst_graph_add_op(r.g, BST_OP_SET_ROWS, in, 3, NULL, 0, &r.set));
    r.add = op2(r.g, BST_OP_ADD, r.x, r.view, NULL, 0);
    r.mm = op2(r.g, BST_OP_MATMUL, r.add, r.w, NULL, 0);
    OK(bst_graph_mark_output(r.g, r.mm, "y"));
    return r;
}

static void expect_reject(vgraph *r, const char *needle)
{
    CU_ASSERT_NOT_EQUAL(bsti_pass_verify(r->g), BST_OK);
    if (getenv("BST_TEST_VERBOSE"))
        fprintf(stderr, "\n    %s", bst_last_error());
    CU_ASSERT(message_has(needle));
    bst_graph_destroy(r->g);
}

static void test_verify_accepts_valid(void)
{
    vgraph r = build_valid();
    OK(bsti_pass_verify(r.g));
    OK(bst_graph_run_passes(r.g, "verify"));
    bst_graph_destroy(r.g);
}

static void test_verify_topological_order(void)
{
    vgraph r = build_valid();
    r.g->nodes[r.add].inputs[1] = r.mm;
    expect_reject(&r, "%7 (add)");
    r = build_valid();
    r.g->nodes[r.add].inputs[0] = r.add; /* self-use */
    r.g->nodes[r.add].line = 12;
    r.g->nodes[r.add].col = 5;
    expect_reject(&r, "%7 (add) at 12:5");
}

static void test_verify_arity(void)
{
    vgraph r = build_valid();
    r.g->nodes[r.add].n_inputs = 1;
    expect_reject(&r, "inputs");
    r = build_valid();
    r.g->nodes[r.x].n_inputs = 1; /* a source with an input */
    r.g->nodes[r.x].inputs[0] = 0;
    expect_reject(&r, "%3 (input)");
}

static void test_verify_attrs(void)
{
    vgraph r = build_valid();
    r.g->nodes[r.view].attrs[2].kind = BST_ATTR_KIND_FLOAT; /* OFFSET is an int */
    expect_reject(&r, "%5 (view)");
    r = build_valid();
    bsti_node *n = &r.g->nodes[r.add];
    n->attrs[n->n_attrs++] = bst_attr_float(BST_ATTR_EPS, 1e-5); /* add takes no eps */
    expect_reject(&r, "eps");
    r = build_valid();
    n = &r.g->nodes[r.view];
    n->attrs[n->n_attrs++] = bst_attr_int(BST_ATTR_OFFSET, 32); /* twice */
    expect_reject(&r, "twice");
    r = build_valid();
    r.g->nodes[r.add].attrs[0] = bst_attr_int((bst_attr_key)200, 1);
    r.g->nodes[r.add].n_attrs = 1;
    expect_reject(&r, "unknown key");
}

static void test_verify_names(void)
{
    vgraph r = build_valid();
    free(r.g->nodes[r.x].name);
    r.g->nodes[r.x].name = NULL;
    expect_reject(&r, "no name");
    r = build_valid();
    free(r.g->nodes[r.mm].name);
    r.g->nodes[r.mm].name = NULL; /* an output nobody can fetch */
    expect_reject(&r, "output");
    r = build_valid();
    free(r.g->nodes[r.x].name);
    r.g->nodes[r.x].name = strdup("src");
    expect_reject(&r, "\"src\"");
    r = build_valid();
    r.g->nodes[r.mm].flags &= ~(uint32_t)BSTI_NODE_OUTPUT;
    r.g->nodes[r.set].flags &= ~(uint32_t)BSTI_NODE_EFFECT;
    expect_reject(&r, "effect"); /* the unflagged write is reported first */
    r = build_valid();
    r.g->nodes[r.mm].flags &= ~(uint32_t)BSTI_NODE_OUTPUT;
    r.g->nodes[r.set].op = BST_OP_ADD; /* no effect, no output left */
    r.g->nodes[r.set].flags = 0;
    r.g->nodes[r.set].n_inputs = 2;
    r.g->nodes[r.set].inputs[1] = r.state;
    r.g->nodes[r.set].alias_of = BSTI_NONE;
    r.g->nodes[r.set].alias_offset = 0;
    r.g->nodes[r.set].type.strides[0] = 16;
    r.g->nodes[r.set].type.strides[1] = 4;
    expect_reject(&r, "no output");
}

static void test_verify_alias_fields(void)
{
    vgraph r = build_valid();
    r.g->nodes[r.view].alias_of = BSTI_NONE;
    expect_reject(&r, "alias");
    r = build_valid();
    r.g->nodes[r.view].alias_offset = 0;
    expect_reject(&r, "alias_offset");
    r = build_valid();
    r.g->nodes[r.add].alias_of = r.x; /* add owns its memory */
    expect_reject(&r, "%7 (add)");
    r = build_valid();
    r.g->nodes[r.view].attrs[2].ints[0] = 24; /* 24 + 2 rows of 16 bytes > 32 bytes... */
    r.g->nodes[r.view].alias_offset = 24;
    r.g->nodes[r.view].attrs[0].ints[0] = 8; /* 8 rows from byte 24 pass the 128-byte end */
    r.g->nodes[r.view].type.shape[0] = 8;
    expect_reject(&r, "%5 (view)");
}

static void test_verify_effect_targets_state(void)
{
    vgraph r = build_valid();
    /* Turn the state into an input: the write no longer targets state. */
    r.g->nodes[r.state].op = BST_OP_INPUT;
    expect_reject(&r, "not a state");
    r = build_valid();
    r.g->nodes[r.add].flags |= BSTI_NODE_EFFECT;
    expect_reject(&r, "effect");
}

static void test_verify_types(void)
{
    vgraph r = build_valid();
    r.g->nodes[r.x].type.shape[1] = 0;
    expect_reject(&r, "positive");
    r = build_valid();
    r.g->nodes[r.x].type.rank = 5;
    expect_reject(&r, "rank");
    r = build_valid();
    r.g->nodes[r.x].type.dtype = (bst_dtype)99;
    expect_reject(&r, "dtype");
    r = build_valid();
    r.g->nodes[r.add].type.strides[0] = 20; /* owns memory, but strided */
    expect_reject(&r, "contiguous");
    r = build_valid();
    r.g->nodes[r.view].type.strides[1] = 3; /* not a multiple of 4 bytes */
    expect_reject(&r, "stride");
    r = build_valid();
    r.g->nodes[r.add].type.shape[1] = 5; /* disagrees with the op rule */
    r.g->nodes[r.add].type.strides[0] = 20;
    expect_reject(&r, "op's rule");
    r = build_valid();
    r.g->nodes[r.w].data_size = 12; /* weight bytes do not match its type */
    expect_reject(&r, "bytes");
    r = build_valid();
    r.g->nodes[r.state].type.sym[0] = BST_SYM_N_KV; /* state memory has a fixed size */
    expect_reject(&r, "symbolic");
}

static void test_verify_unknown_op(void)
{
    vgraph r = build_valid();
    r.g->nodes[r.add].op = (bst_op)250;
    expect_reject(&r, "unknown op");
}

/* --- whole pipeline on the text fixtures --- */

static bst_graph *parse_fixture(const char *name)
{
    size_t size = 0;
    char *text = bst_test_read_file(bst_test_fixture(name), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    bst_graph *g = NULL;
    bst_status st = bst_graph_parse(text, size, &g);
    free(text);
    if (st != BST_OK)
        fprintf(stderr, "\n  %s: %s\n", name, bst_last_error());
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    return g;
}

/* Every pass in order, then: only primitives, every output still there by name, every effect
 * kept, and the result prints and parses back into a graph that verifies. */
static void run_pipeline(const char *fixture)
{
    bst_graph *g = parse_fixture(fixture);
    char *names[64];
    uint32_t n_names = 0, effects = 0;
    for (uint32_t i = 0; i < g->n_nodes && n_names < 64; i++) {
        if (g->nodes[i].flags & BSTI_NODE_OUTPUT)
            names[n_names++] = strdup(g->nodes[i].name);
        effects += g->nodes[i].op == BST_OP_SET_ROWS;
    }
    bst_status st = bst_graph_run_passes(g, "verify,infer,dce,cse,fold,lower,verify");
    if (st != BST_OK)
        fprintf(stderr, "\n  %s: %s\n", fixture, bst_last_error());
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    CU_ASSERT(only_primitives(g));
    for (uint32_t i = 0; i < n_names; i++) {
        CU_ASSERT(find_output(g, names[i]) != BSTI_NONE);
        free(names[i]);
    }
    CU_ASSERT_EQUAL(count_op(g, BST_OP_SET_ROWS), effects);
    char *text = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_print(g, &text), BST_OK);
    bst_graph *back = NULL;
    st = bst_graph_parse(text, strlen(text), &back);
    if (st != BST_OK)
        fprintf(stderr, "\n  %s reparse: %s\n%s\n", fixture, bst_last_error(), text);
    CU_ASSERT_EQUAL(st, BST_OK);
    if (back) {
        CU_ASSERT_EQUAL(back->n_nodes, g->n_nodes);
        CU_ASSERT_EQUAL(bsti_pass_verify(back), BST_OK);
        bst_graph_destroy(back);
    }
    bst_free(text);
    bst_graph_destroy(g);
}

static void test_pipeline_all_ops(void) { run_pipeline("all_ops.bir"); }
static void test_pipeline_llama_block(void) { run_pipeline("llama_block.bir"); }
static void test_pipeline_reordered(void) { run_pipeline("reordered.bir"); }
static void test_pipeline_symbolic(void) { run_pipeline("symbolic.bir"); }

static void test_verify_names_text_position(void)
{
    const char *text = "%x = input f32[2,3] \"x\"\n"
                       "%y = silu %x\n"
                       "   %z = gelu %y\n"
                       "output %z \"z\"\n";
    bst_graph *g = NULL;
    OK(bst_graph_parse(text, strlen(text), &g));
    OK(bsti_pass_verify(g));
    CU_ASSERT_EQUAL_FATAL(g->n_nodes, 3);
    CU_ASSERT_EQUAL(g->nodes[2].line, 3);
    g->nodes[2].type.shape[0] = 7;
    CU_ASSERT_EQUAL(bsti_pass_verify(g), BST_ERR_SHAPE);
    char want[64];
    snprintf(want, sizeof want, "%%2 (gelu) at 3:%u", g->nodes[2].col);
    CU_ASSERT(message_has(want));
    bst_graph_destroy(g);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"run_passes_unknown_name", test_run_passes_unknown_name},
        {"infer_refreshes_types", test_infer_refreshes_types},
        {"infer_names_failing_node", test_infer_names_failing_node},
        {"dce_removes_dead_nodes", test_dce_removes_dead_nodes},
        {"dce_keeps_effects_in_order", test_dce_keeps_effects_in_order},
        {"cse_merges_duplicates", test_cse_merges_duplicates},
        {"cse_moves_output_name", test_cse_moves_output_name},
        {"cse_not_across_set_rows", test_cse_not_across_set_rows},
        {"cse_merges_equal_consts", test_cse_merges_equal_consts},
        {"fold_elementwise", test_fold_elementwise},
        {"fold_broadcast_mul_and_cast", test_fold_broadcast_mul_and_cast},
        {"fold_int_const_cast", test_fold_int_const_cast},
        {"fold_layout_ops", test_fold_layout_ops},
        {"fold_view_reads_root_bytes", test_fold_view_reads_root_bytes},
        {"fold_scale_chain_and_identities", test_fold_scale_chain_and_identities},
        {"fold_keeps_state_reads_ordered", test_fold_keeps_state_reads_ordered},
        {"fold_leaves_big_and_nonconst", test_fold_leaves_big_and_nonconst},
        {"lower_attention_causal", test_lower_attention_causal},
        {"lower_attention_window_and_mask", test_lower_attention_window_and_mask},
        {"lower_attention_symbolic", test_lower_attention_symbolic},
        {"lower_ffn_and_rms_norm_mul", test_lower_ffn_and_rms_norm_mul},
        {"lower_keep_callback", test_lower_keep_callback},
        {"verify_accepts_valid", test_verify_accepts_valid},
        {"verify_topological_order", test_verify_topological_order},
        {"verify_arity", test_verify_arity},
        {"verify_attrs", test_verify_attrs},
        {"verify_names", test_verify_names},
        {"verify_alias_fields", test_verify_alias_fields},
        {"verify_effect_targets_state", test_verify_effect_targets_state},
        {"verify_types", test_verify_types},
        {"verify_unknown_op", test_verify_unknown_op},
        {"verify_names_text_position", test_verify_names_text_position},
        {"pipeline_all_ops", test_pipeline_all_ops},
        {"pipeline_llama_block", test_pipeline_llama_block},
        {"pipeline_reordered", test_pipeline_reordered},
        {"pipeline_symbolic", test_pipeline_symbolic},
        {NULL, NULL},
    };
    return bst_test_run_suite("graph_passes", cases);
}
