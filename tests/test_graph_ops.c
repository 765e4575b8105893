/*
 * tests/test_graph_ops.c — the op table and every op's shape/type rule (graph/ops.c), plus the
 * graph core (graph/graph.c, graph/api.c, graph/dtype.c): good cases against hand-computed
 * types, strides and alias fields; bad cases against BST_ERR_SHAPE/GRAPH/OVERFLOW with a message
 * naming the op; symbolic dims; size overflow; clone and compact.
 */
#include "graph/ir.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define SYMS(...) ((const uint32_t[]){__VA_ARGS__})
#define T BST_SYM_N_TOKENS
#define KV BST_SYM_N_KV

static bst_graph *g;

static void fresh(void)
{
    bst_graph_destroy(g);
    g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_create(&g), BST_OK);
}

static bst_value input(bst_dtype dt, uint32_t rank, const int64_t *shape, const uint32_t *sym)
{
    char name[32];
    snprintf(name, sizeof name, "in%u", bst_graph_value_count(g));
    bst_value v = BST_VALUE_NONE;
    bst_status st = bst_graph_add_input(g, name, dt, rank, shape, sym, &v);
    if (st)
        fprintf(stderr, "\ninput failed: %s\n", bst_last_error());
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    return v;
}

static bst_value weight(bst_dtype dt, uint32_t rank, const int64_t *shape)
{
    char name[32];
    snprintf(name, sizeof name, "w%u", bst_graph_value_count(g));
    bst_value v = BST_VALUE_NONE;
    CU_ASSERT_EQUAL_FATAL(bst_graph_add_weight(g, name, dt, rank, shape, NULL, 0, &v), BST_OK);
    return v;
}

static bst_value state(bst_dtype dt, uint32_t rank, const int64_t *shape)
{
    char name[32];
    snprintf(name, sizeof name, "s%u", bst_graph_value_count(g));
    bst_value v = BST_VALUE_NONE;
    CU_ASSERT_EQUAL_FATAL(bst_graph_add_state(g, name, dt, rank, shape, &v), BST_OK);
    return v;
}

static bst_attr af(bst_attr_key key, double f)
{
    return (bst_attr){.struct_size = sizeof(bst_attr),
                      .key = key,
                      .kind = BST_ATTR_KIND_FLOAT,
                      .count = 1,
                      .f = f};
}

static bst_attr ai(bst_attr_key key, int64_t v)
{
    return (bst_attr){.struct_size = sizeof(bst_attr),
                      .key = key,
                      .kind = BST_ATTR_KIND_INT,
                      .count = 1,
                      .ints = {v}};
}

static bst_attr aints(bst_attr_key key, uint32_t n, const int64_t *v)
{
    bst_attr a = {
        .struct_size = sizeof(bst_attr), .key = key, .kind = BST_ATTR_KIND_INTS, .count = n};
    for (uint32_t i = 0; i < n && i < BST_MAX_DIMS; i++)
        a.ints[i] = v[i];
    return a;
}

#define INS(...)                                                                                   \
    ((const bst_value[]){__VA_ARGS__}),                                                            \
        (uint32_t)(sizeof((const bst_value[]){__VA_ARGS__}) / sizeof(bst_value))
#define ATTRS(...)                                                                                 \
    ((const bst_attr[]){__VA_ARGS__}),                                                             \
        (uint32_t)(sizeof((const bst_attr[]){__VA_ARGS__}) / sizeof(bst_attr))
#define NOATTRS NULL, 0u

/* Adds an op that must succeed and have type `want` (bsti_type_format's spelling). */
static bst_value ok(bst_op op, const bst_value *in, uint32_t n_in, const bst_attr *attrs,
                    uint32_t n_attrs, const char *want, int line)
{
    bst_value v = BST_VALUE_NONE;
    bst_status st = bst_graph_add_op(g, op, in, n_in, attrs, n_attrs, &v);
    if (st != BST_OK) {
        fprintf(stderr, "\nline %d: %s failed: %s %s\n", line, bst_op_name(op), bst_status_name(st),
                bst_last_error());
        CU_FAIL("op failed");
        return BST_VALUE_NONE;
    }
    char got[256];
    bsti_type_format(&g->nodes[v].type, got, sizeof got);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "\nline %d: %s gave %s, want %s\n", line, bst_op_name(op), got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
    return v;
}
#define OK(op, ...) ok(op, __VA_ARGS__, __LINE__)

/* Adds an op that must fail with `status` and a message naming the op and containing `needle`;
 * the graph must be unchanged. */
static void bad(bst_op op, const bst_value *in, uint32_t n_in, const bst_attr *attrs,
                uint32_t n_attrs, bst_status status, const char *needle, int line)
{
    uint32_t before = bst_graph_value_count(g);
    bst_value v = 12345;
    bst_status st = bst_graph_add_op(g, op, in, n_in, attrs, n_attrs, &v);
    const char *msg = bst_last_error();
    bool named = strstr(msg, bst_op_name(op)) != NULL;
    bool good =
        st == status && named && strstr(msg, needle) != NULL && bst_graph_value_count(g) == before;
    if (!good)
        fprintf(stderr, "\nline %d: %s gave %s \"%s\", want %s \"...%s...\"\n", line,
                bst_op_name(op), bst_status_name(st), msg, bst_status_name(status), needle);
    CU_ASSERT_TRUE(good);
}
#define BAD(op, ...) bad(op, __VA_ARGS__, __LINE__)

/* --- tables --- */

static void test_dtype_table(void)
{
    static const struct {
        bst_dtype t;
        const char *name;
        uint32_t bs, bb;
    } want[] = {
        {BST_DTYPE_F32, "f32", 1, 4},     {BST_DTYPE_F16, "f16", 1, 2},
        {BST_DTYPE_BF16, "bf16", 1, 2},   {BST_DTYPE_I32, "i32", 1, 4},
        {BST_DTYPE_I8, "i8", 1, 1},       {BST_DTYPE_Q4_0, "q4_0", 32, 18},
        {BST_DTYPE_Q4_1, "q4_1", 32, 20}, {BST_DTYPE_Q5_0, "q5_0", 32, 22},
        {BST_DTYPE_Q5_1, "q5_1", 32, 24}, {BST_DTYPE_Q8_0, "q8_0", 32, 34},
    };
    CU_ASSERT_EQUAL(sizeof want / sizeof want[0], (size_t)BST_DTYPE_COUNT - 1);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CU_ASSERT_STRING_EQUAL(bst_dtype_name(want[i].t), want[i].name);
        CU_ASSERT_EQUAL(bst_dtype_block_size(want[i].t), want[i].bs);
        CU_ASSERT_EQUAL(bst_dtype_block_bytes(want[i].t), want[i].bb);
    }
    CU_ASSERT_PTR_NULL(bst_dtype_name(BST_DTYPE_INVALID));
    CU_ASSERT_PTR_NULL(bst_dtype_name(BST_DTYPE_COUNT));
    CU_ASSERT_PTR_NULL(bst_dtype_name((bst_dtype)-1));
    CU_ASSERT_EQUAL(bst_dtype_block_size(BST_DTYPE_COUNT), 0u);
    CU_ASSERT_EQUAL(bst_dtype_block_bytes((bst_dtype)999), 0u);
}

static void test_op_table(void)
{
    static const char *const names[] = {
        NULL,     "input",    "weight",    "state",      "const",        "get_rows",
        "add",    "mul",      "scale",     "matmul",     "rms_norm",     "layer_norm",
        "rope",   "softmax",  "silu",      "gelu",       "cast",         "quantize",
        "concat", "cont",     "view",      "reshape",    "permute",      "transpose",
        "argmax", "set_rows", "attention", "ffn_swiglu", "rms_norm_mul",
    };
    CU_ASSERT_EQUAL_FATAL(sizeof names / sizeof names[0], (size_t)BST_OP_COUNT);
    for (unsigned op = 1; op < BST_OP_COUNT; op++) {
        CU_ASSERT_STRING_EQUAL(bst_op_name((bst_op)op), names[op]);
        CU_ASSERT_EQUAL(bsti_op_from_name(names[op]), (bst_op)op);
        const bsti_op_info *info = bsti_op_get((bst_op)op);
        CU_ASSERT_PTR_NOT_NULL_FATAL(info);
        CU_ASSERT(info->min_inputs <= info->max_inputs);
        CU_ASSERT(info->max_inputs <= BST_MAX_INPUTS);
        CU_ASSERT_EQUAL(info->is_source, op <= BST_OP_CONST);
        CU_ASSERT_EQUAL(info->is_high_level, op >= BST_OP_ATTENTION);
        CU_ASSERT_EQUAL(info->has_effect, op == BST_OP_SET_ROWS);
        CU_ASSERT_EQUAL(info->is_alias, op >= BST_OP_VIEW && op <= BST_OP_TRANSPOSE);
    }
    CU_ASSERT_PTR_NULL(bst_op_name(BST_OP_NONE));
    CU_ASSERT_PTR_NULL(bst_op_name(BST_OP_COUNT));
    CU_ASSERT_PTR_NULL(bsti_op_get((bst_op)1000));
    CU_ASSERT_EQUAL(bsti_op_from_name("nosuch"), BST_OP_NONE);
    CU_ASSERT_EQUAL(bsti_op_from_name(NULL), BST_OP_NONE);
    CU_ASSERT_EQUAL(bsti_op_get(BST_OP_ATTENTION)->min_inputs, 3);
    CU_ASSERT_EQUAL(bsti_op_get(BST_OP_ATTENTION)->max_inputs, 4);
    CU_ASSERT_EQUAL(bsti_op_get(BST_OP_SOFTMAX)->max_inputs, 2);
    for (unsigned k = 1; k < BST_ATTR_COUNT; k++) {
        const char *n = bsti_attr_name((bst_attr_key)k);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n);
        CU_ASSERT_EQUAL(bsti_attr_from_name(n), (bst_attr_key)k);
    }
    CU_ASSERT_EQUAL(bsti_attr_kind(BST_ATTR_EPS), BST_ATTR_KIND_FLOAT);
    CU_ASSERT_EQUAL(bsti_attr_kind(BST_ATTR_PERM), BST_ATTR_KIND_INTS);
    CU_ASSERT_EQUAL(bsti_attr_kind(BST_ATTR_DTYPE), BST_ATTR_KIND_INT);
    CU_ASSERT_TRUE(bsti_op_allows_attr(BST_OP_ROPE, BST_ATTR_ROPE_THETA));
    CU_ASSERT_FALSE(bsti_op_allows_attr(BST_OP_ROPE, BST_ATTR_EPS));
    CU_ASSERT_FALSE(bsti_op_allows_attr(BST_OP_SILU, BST_ATTR_SCALE));
}

/* --- each op --- */

static void test_get_rows(void)
{
    fresh();
    bst_value table = weight(BST_DTYPE_Q8_0, 2, DIMS(16, 32));
    bst_value ids = input(BST_DTYPE_I32, 2, DIMS(4, 3), SYMS(T, 0));
    bst_value r = OK(BST_OP_GET_ROWS, INS(table, ids), NOATTRS, "f32[n_tokens:4,3,32]");
    bst_tensor_desc d;
    CU_ASSERT_EQUAL_FATAL(bst_graph_value_desc(g, r, &d), BST_OK);
    CU_ASSERT_EQUAL(d.struct_size, sizeof d);
    CU_ASSERT_EQUAL(d.rank, 3u);
    CU_ASSERT_EQUAL(d.strides[0], 384);
    CU_ASSERT_EQUAL(d.strides[1], 128);
    CU_ASSERT_EQUAL(d.strides[2], 4);
    CU_ASSERT_EQUAL(d.sym[0], (uint32_t)T);
    CU_ASSERT_EQUAL(d.sym[1], 0u);
    bst_value ids1 = input(BST_DTYPE_I32, 0, NULL, NULL);
    OK(BST_OP_GET_ROWS, INS(table, ids1), NOATTRS, "f32[32]");
    bst_value fids = input(BST_DTYPE_F32, 1, DIMS(3), NULL);
    BAD(BST_OP_GET_ROWS, INS(table, fids), NOATTRS, BST_ERR_SHAPE, "operand 1 (ids) must be i32");
    bst_value t3 = input(BST_DTYPE_F32, 3, DIMS(2, 2, 2), NULL);
    BAD(BST_OP_GET_ROWS, INS(t3, ids), NOATTRS, BST_ERR_SHAPE,
        "operand 0 (table) must have rank 2");
    bst_value ids4 = input(BST_DTYPE_I32, 4, DIMS(1, 1, 1, 1), NULL);
    BAD(BST_OP_GET_ROWS, INS(table, ids4), NOATTRS, BST_ERR_SHAPE, "rank 0..3");
    BAD(BST_OP_GET_ROWS, INS(table), NOATTRS, BST_ERR_GRAPH, "takes 2 operands, got 1");
}

static void test_add_mul(void)
{
    fresh();
    bst_value a = input(BST_DTYPE_F32, 3, DIMS(2, 3, 4), NULL);
    bst_value b1 = input(BST_DTYPE_F16, 2, DIMS(3, 1), NULL);
    bst_value b2 = input(BST_DTYPE_F32, 1, DIMS(4), NULL);
    bst_value b5 = input(BST_DTYPE_F32, 1, DIMS(5), NULL);
    bst_value big = input(BST_DTYPE_F32, 4, DIMS(1, 2, 3, 4), NULL);
    OK(BST_OP_ADD, INS(a, b1), NOATTRS, "f32[2,3,4]");
    OK(BST_OP_MUL, INS(a, b2), NOATTRS, "f32[2,3,4]");
    OK(BST_OP_ADD, INS(a, a), NOATTRS, "f32[2,3,4]");
    BAD(BST_OP_ADD, INS(a, b5), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (b) dim 0 is 5, which does not broadcast to operand 0 (a) dim 2 (4)");
    BAD(BST_OP_MUL, INS(a, big), NOATTRS, BST_ERR_SHAPE, "has more dims than operand 0");
    BAD(BST_OP_MUL, INS(b1, a), NOATTRS, BST_ERR_SHAPE, "has more dims");
    /* Symbolic dims broadcast only against themselves or a plain 1. */
    bst_value xs = input(BST_DTYPE_F32, 2, DIMS(8, 4), SYMS(T, 0));
    bst_value plain = input(BST_DTYPE_F32, 2, DIMS(8, 4), NULL);
    bst_value one = input(BST_DTYPE_F32, 2, DIMS(1, 4), NULL);
    bst_value kv = input(BST_DTYPE_F32, 2, DIMS(8, 4), SYMS(KV, 0));
    OK(BST_OP_ADD, INS(xs, one), NOATTRS, "f32[n_tokens:8,4]");
    OK(BST_OP_ADD, INS(xs, xs), NOATTRS, "f32[n_tokens:8,4]");
    BAD(BST_OP_ADD, INS(xs, plain), NOATTRS, BST_ERR_SHAPE,
        "dim 0 is 8, which does not broadcast to operand 0 (a) dim 0 (n_tokens:8)");
    BAD(BST_OP_ADD, INS(plain, xs), NOATTRS, BST_ERR_SHAPE, "dim 0 is n_tokens:8");
    BAD(BST_OP_MUL, INS(xs, kv), NOATTRS, BST_ERR_SHAPE, "n_kv:8");
}

static void test_scale_unary(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F16, 2, DIMS(3, 5), NULL);
    bst_value s = input(BST_DTYPE_F32, 0, NULL, NULL);
    OK(BST_OP_SCALE, INS(x), ATTRS(af(BST_ATTR_SCALE, -0.5)), "f32[3,5]");
    OK(BST_OP_SILU, INS(x), NOATTRS, "f32[3,5]");
    OK(BST_OP_GELU, INS(s), NOATTRS, "f32[]");
    BAD(BST_OP_SCALE, INS(x), ATTRS(af(BST_ATTR_SCALE, INFINITY)), BST_ERR_SHAPE,
        "scale=inf must be a finite number");
    BAD(BST_OP_SCALE, INS(x), NOATTRS, BST_ERR_GRAPH, "missing attribute scale");
    BAD(BST_OP_SCALE, INS(x), ATTRS(ai(BST_ATTR_SCALE, 2)), BST_ERR_GRAPH,
        "attribute scale must be a float");
    /* silu and gelu have no shape rule to break: their failures are structural. */
    BAD(BST_OP_SILU, INS(x, x), NOATTRS, BST_ERR_GRAPH, "takes 1 operand, got 2");
    BAD(BST_OP_GELU, NULL, 0, NOATTRS, BST_ERR_GRAPH, "takes 1 operand, got 0");
    BAD(BST_OP_SILU, INS(x), ATTRS(af(BST_ATTR_EPS, 1)), BST_ERR_GRAPH, "takes no attribute eps");
}

static void test_matmul(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(8, 576), SYMS(T, 0));
    bst_value w = weight(BST_DTYPE_Q4_1, 2, DIMS(1536, 576));
    OK(BST_OP_MATMUL, INS(x, w), NOATTRS, "f32[n_tokens:8,1536]");
    /* Grouped batch broadcast: 6 query heads over 2 KV heads. */
    bst_value q = input(BST_DTYPE_F32, 3, DIMS(6, 5, 8), NULL);
    bst_value k = input(BST_DTYPE_F16, 3, DIMS(2, 7, 8), NULL);
    OK(BST_OP_MATMUL, INS(q, k), NOATTRS, "f32[6,5,7]");
    bst_value a4 = input(BST_DTYPE_F32, 4, DIMS(2, 6, 5, 8), NULL);
    bst_value b3 = input(BST_DTYPE_F32, 3, DIMS(3, 7, 8), NULL);
    OK(BST_OP_MATMUL, INS(a4, b3), NOATTRS, "f32[2,6,5,7]");
    OK(BST_OP_MATMUL, INS(a4, k), NOATTRS, "f32[2,6,5,7]");
    /* Symbolic K must match symbol and bound. */
    bst_value p = input(BST_DTYPE_F32, 3, DIMS(4, 2, 16), SYMS(0, T, KV));
    bst_value vt = input(BST_DTYPE_F32, 3, DIMS(2, 8, 16), SYMS(0, 0, KV));
    OK(BST_OP_MATMUL, INS(p, vt), NOATTRS, "f32[4,n_tokens:2,8]");
    bst_value vt_plain = input(BST_DTYPE_F32, 3, DIMS(2, 8, 16), NULL);
    BAD(BST_OP_MATMUL, INS(p, vt_plain), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (b) dim 2 is 16 but operand 0 (a) dim 2 is n_kv:16");
    bst_value w512 = weight(BST_DTYPE_F32, 2, DIMS(1536, 512));
    BAD(BST_OP_MATMUL, INS(x, w512), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (b) dim 1 is 512 but operand 0 (a) dim 1 is 576");
    bst_value k4 = input(BST_DTYPE_F32, 3, DIMS(4, 7, 8), NULL);
    BAD(BST_OP_MATMUL, INS(q, k4), NOATTRS, BST_ERR_SHAPE,
        "batch dim 0 is 4, which does not divide operand 0 (a) batch dim 0 (6)");
    BAD(BST_OP_MATMUL, INS(x, q), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (b) must have rank 2, got f32[6,5,8]");
    bst_value v1 = input(BST_DTYPE_F32, 1, DIMS(8), NULL);
    BAD(BST_OP_MATMUL, INS(v1, w), NOATTRS, BST_ERR_SHAPE, "operand 0 (a) must have rank 2..4");
}

static void test_norms(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(3, 5), SYMS(T, 0));
    OK(BST_OP_RMS_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, 1e-5)), "f32[n_tokens:3,5]");
    OK(BST_OP_LAYER_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, 0)), "f32[n_tokens:3,5]");
    BAD(BST_OP_RMS_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, -1)), BST_ERR_SHAPE,
        "eps=-1 must be a finite non-negative number");
    BAD(BST_OP_LAYER_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, NAN)), BST_ERR_SHAPE, "eps=nan");
    bst_value s = input(BST_DTYPE_F32, 0, NULL, NULL);
    BAD(BST_OP_RMS_NORM, INS(s), ATTRS(af(BST_ATTR_EPS, 1e-5)), BST_ERR_SHAPE,
        "operand 0 (x) must have rank 1..4, got f32[]");
    BAD(BST_OP_LAYER_NORM, INS(x), NOATTRS, BST_ERR_GRAPH, "missing attribute eps");

    bst_value w = weight(BST_DTYPE_F32, 1, DIMS(5));
    OK(BST_OP_RMS_NORM_MUL, INS(x, w), ATTRS(af(BST_ATTR_EPS, 1e-6)), "f32[n_tokens:3,5]");
    bst_value w4 = weight(BST_DTYPE_F32, 1, DIMS(4));
    BAD(BST_OP_RMS_NORM_MUL, INS(x, w4), ATTRS(af(BST_ATTR_EPS, 1e-6)), BST_ERR_SHAPE,
        "operand 1 (w) dim 0 is 4 but operand 0 (x) dim 1 is 5");
    BAD(BST_OP_RMS_NORM_MUL, INS(x, x), ATTRS(af(BST_ATTR_EPS, 1e-6)), BST_ERR_SHAPE,
        "operand 1 (w) must have rank 1");
    BAD(BST_OP_RMS_NORM_MUL, INS(x, w), NOATTRS, BST_ERR_GRAPH, "missing attribute eps");
}

static void test_rope(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 3, DIMS(4, 2, 8), SYMS(T, 0, 0));
    bst_value pos = input(BST_DTYPE_I32, 1, DIMS(4), SYMS(T));
    bst_attr attrs[3] = {ai(BST_ATTR_ROPE_MODE, 2), af(BST_ATTR_ROPE_THETA, 10000),
                         ai(BST_ATTR_ROPE_DIMS, 6)};
    OK(BST_OP_ROPE, INS(x, pos), attrs, 3, "f32[n_tokens:4,2,8]");
    attrs[2] = ai(BST_ATTR_ROPE_DIMS, 3);
    BAD(BST_OP_ROPE, INS(x, pos), attrs, 3, BST_ERR_SHAPE, "rope_dims=3 must be even");
    attrs[2] = ai(BST_ATTR_ROPE_DIMS, 10);
    BAD(BST_OP_ROPE, INS(x, pos), attrs, 3, BST_ERR_SHAPE, "head dim 8");
    attrs[2] = ai(BST_ATTR_ROPE_DIMS, 8);
    attrs[0] = ai(BST_ATTR_ROPE_MODE, 1);
    BAD(BST_OP_ROPE, INS(x, pos), attrs, 3, BST_ERR_SHAPE, "rope_mode=1 must be 0 (normal) or 2");
    attrs[0] = ai(BST_ATTR_ROPE_MODE, 0);
    attrs[1] = af(BST_ATTR_ROPE_THETA, 0);
    BAD(BST_OP_ROPE, INS(x, pos), attrs, 3, BST_ERR_SHAPE,
        "rope_theta=0 must be a finite positive");
    attrs[1] = af(BST_ATTR_ROPE_THETA, 1e4);
    bst_value pos_plain = input(BST_DTYPE_I32, 1, DIMS(4), NULL);
    BAD(BST_OP_ROPE, INS(x, pos_plain), attrs, 3, BST_ERR_SHAPE,
        "operand 1 (pos) dim 0 is 4 but operand 0 (x) dim 0 is n_tokens:4");
    bst_value posf = input(BST_DTYPE_F32, 1, DIMS(4), SYMS(T));
    BAD(BST_OP_ROPE, INS(x, posf), attrs, 3, BST_ERR_SHAPE, "operand 1 (pos) must be i32");
    bst_value x2 = input(BST_DTYPE_F32, 2, DIMS(4, 16), NULL);
    BAD(BST_OP_ROPE, INS(x2, pos_plain), attrs, 3, BST_ERR_SHAPE, "operand 0 (x) must have rank 3");
    BAD(BST_OP_ROPE, INS(x, pos), attrs, 2, BST_ERR_GRAPH, "missing attribute rope_dims");
}

static void test_softmax(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 3, DIMS(4, 2, 16), SYMS(0, T, KV));
    bst_value mask = input(BST_DTYPE_F32, 2, DIMS(2, 16), SYMS(T, KV));
    bst_value v = OK(BST_OP_SOFTMAX, INS(x), NOATTRS, "f32[4,n_tokens:2,n_kv:16]");
    /* The default scale is written into the node. */
    CU_ASSERT_EQUAL(g->nodes[v].n_attrs, 1u);
    CU_ASSERT_EQUAL(bsti_attr_float(&g->nodes[v], BST_ATTR_SCALE, -1), 1.0);
    v = OK(BST_OP_SOFTMAX, INS(x, mask), ATTRS(af(BST_ATTR_SCALE, 0.125)),
           "f32[4,n_tokens:2,n_kv:16]");
    CU_ASSERT_EQUAL(bsti_attr_float(&g->nodes[v], BST_ATTR_SCALE, -1), 0.125);
    bst_value mask16 = input(BST_DTYPE_F16, 2, DIMS(2, 16), SYMS(T, KV));
    BAD(BST_OP_SOFTMAX, INS(x, mask16), NOATTRS, BST_ERR_SHAPE, "operand 1 (mask) must be f32");
    bst_value mask_plain = input(BST_DTYPE_F32, 1, DIMS(16), NULL);
    BAD(BST_OP_SOFTMAX, INS(x, mask_plain), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (mask) dim 0 is 16, which does not broadcast to operand 0 (x) dim 2 (n_kv:16)");
    BAD(BST_OP_SOFTMAX, INS(x, mask, mask), NOATTRS, BST_ERR_GRAPH, "takes 1 to 2 operands, got 3");
}

static void test_cast_quantize(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(2, 64), NULL);
    bst_value c = OK(BST_OP_CAST, INS(x), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_F16)), "f16[2,64]");
    CU_ASSERT_EQUAL(g->nodes[c].type.strides[0], 128);
    CU_ASSERT_EQUAL(g->nodes[c].type.strides[1], 2);
    OK(BST_OP_CAST, INS(c), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_BF16)), "bf16[2,64]");
    BAD(BST_OP_CAST, INS(x), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_Q8_0)), BST_ERR_SHAPE,
        "dtype=q8_0 must be f32, f16 or bf16");
    BAD(BST_OP_CAST, INS(x), ATTRS(ai(BST_ATTR_DTYPE, 77)), BST_ERR_SHAPE, "dtype=invalid");
    bst_value q =
        OK(BST_OP_QUANTIZE, INS(x), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_Q4_1)), "q4_1[2,64]");
    CU_ASSERT_EQUAL(g->nodes[q].type.strides[0], 40);
    CU_ASSERT_EQUAL(g->nodes[q].type.strides[1], 20);
    OK(BST_OP_QUANTIZE, INS(x), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_Q5_0)), "q5_0[2,64]");
    bst_value x48 = input(BST_DTYPE_F32, 2, DIMS(2, 48), NULL);
    BAD(BST_OP_QUANTIZE, INS(x48), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_Q8_0)), BST_ERR_SHAPE,
        "innermost dim 48 must be a fixed multiple of q8_0's block size 32");
    BAD(BST_OP_QUANTIZE, INS(x), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_F16)), BST_ERR_SHAPE,
        "dtype=f16 must be a block-quantized type");
    bst_value xs = input(BST_DTYPE_F32, 1, DIMS(64), SYMS(T));
    BAD(BST_OP_QUANTIZE, INS(xs), ATTRS(ai(BST_ATTR_DTYPE, BST_DTYPE_Q8_0)), BST_ERR_SHAPE,
        "n_tokens:64");
}

static void test_concat(void)
{
    fresh();
    bst_value a = input(BST_DTYPE_F32, 2, DIMS(2, 3), SYMS(0, T));
    bst_value b = input(BST_DTYPE_F16, 2, DIMS(4, 3), SYMS(0, T));
    OK(BST_OP_CONCAT, INS(a, b), ATTRS(ai(BST_ATTR_AXIS, 0)), "f32[6,n_tokens:3]");
    BAD(BST_OP_CONCAT, INS(a, b), ATTRS(ai(BST_ATTR_AXIS, 1)), BST_ERR_SHAPE,
        "operand 1 (b) dim 0 is 4 but operand 0 (a) dim 0 is 2");
    BAD(BST_OP_CONCAT, INS(a, a), ATTRS(ai(BST_ATTR_AXIS, 1)), BST_ERR_SHAPE,
        "cannot concatenate along symbolic dims");
    BAD(BST_OP_CONCAT, INS(a, b), ATTRS(ai(BST_ATTR_AXIS, 2)), BST_ERR_SHAPE,
        "axis=2 is outside 0..1");
    BAD(BST_OP_CONCAT, INS(a, b), ATTRS(ai(BST_ATTR_AXIS, -1)), BST_ERR_SHAPE, "axis=-1");
    bst_value c = input(BST_DTYPE_F32, 1, DIMS(3), NULL);
    BAD(BST_OP_CONCAT, INS(a, c), ATTRS(ai(BST_ATTR_AXIS, 0)), BST_ERR_SHAPE,
        "operand 1 (b) must have rank 2");
    /* The joined dim must stay within the 2^40 limit. */
    bst_value h = input(BST_DTYPE_I8, 1, DIMS(BSTI_MAX_DIM), NULL);
    BAD(BST_OP_CONCAT, INS(h, h), ATTRS(ai(BST_ATTR_AXIS, 0)), BST_ERR_OVERFLOW,
        "dims must be 1..2^40");
}

/* Alias ops: types, strides and alias fields, chains resolved to the root. */
static void test_views(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(4, 8), NULL); /* 128 bytes */
    bst_value t = OK(BST_OP_TRANSPOSE, INS(x), NOATTRS, "f32[8,4] strides=[4,32]");
    CU_ASSERT_EQUAL(g->nodes[t].alias_of, x);
    CU_ASSERT_EQUAL(g->nodes[t].alias_offset, 0u);
    bst_value c = OK(BST_OP_CONT, INS(t), NOATTRS, "f32[8,4]");
    CU_ASSERT_EQUAL(g->nodes[c].alias_of, BSTI_NONE);
    bst_value v =
        OK(BST_OP_VIEW, INS(x),
           ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 8)), ai(BST_ATTR_OFFSET, 64)), "f32[2,8]");
    CU_ASSERT_EQUAL(g->nodes[v].alias_of, x);
    CU_ASSERT_EQUAL(g->nodes[v].alias_offset, 64u);
    /* Default strides are written into the node, attributes sorted by key. */
    const bsti_node *vn = &g->nodes[v];
    CU_ASSERT_EQUAL_FATAL(vn->n_attrs, 3u);
    CU_ASSERT_EQUAL(vn->attrs[0].key, (uint32_t)BST_ATTR_SHAPE);
    CU_ASSERT_EQUAL(vn->attrs[1].key, (uint32_t)BST_ATTR_STRIDES);
    CU_ASSERT_EQUAL(vn->attrs[1].count, 2u);
    CU_ASSERT_EQUAL(vn->attrs[1].ints[0], 32);
    CU_ASSERT_EQUAL(vn->attrs[1].ints[1], 4);
    CU_ASSERT_EQUAL(vn->attrs[2].key, (uint32_t)BST_ATTR_OFFSET);
    /* A view of a view of a transpose: alias_of is the root and offsets add up. */
    bst_value v2 = OK(BST_OP_VIEW, INS(v),
                      ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(4)), aints(BST_ATTR_STRIDES, 1, DIMS(8)),
                            ai(BST_ATTR_OFFSET, 32)),
                      "f32[4] strides=[8]");
    CU_ASSERT_EQUAL(g->nodes[v2].alias_of, x);
    CU_ASSERT_EQUAL(g->nodes[v2].alias_offset, 96u);
    /* The last byte it reaches: 96 + 3*8 + 4 = 124 <= 128; one more stride step is past. */
    BAD(BST_OP_VIEW, INS(v),
        ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(5)), aints(BST_ATTR_STRIDES, 1, DIMS(8)),
              ai(BST_ATTR_OFFSET, 32)),
        BST_ERR_SHAPE,
        "result f32[5] strides=[8] at offset 96 reaches byte 132, past the 128 bytes");
    bst_value tv = OK(BST_OP_VIEW, INS(t),
                      ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 4)),
                            aints(BST_ATTR_STRIDES, 2, DIMS(4, 32)), ai(BST_ATTR_OFFSET, 4)),
                      "f32[2,4] strides=[4,32]");
    CU_ASSERT_EQUAL(g->nodes[tv].alias_of, x);
    CU_ASSERT_EQUAL(g->nodes[tv].alias_offset, 4u);
    BAD(BST_OP_VIEW, INS(x), ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 8)), ai(BST_ATTR_OFFSET, 66)),
        BST_ERR_SHAPE, "offset=66 must be a non-negative multiple of 4");
    BAD(BST_OP_VIEW, INS(x),
        ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 8)), aints(BST_ATTR_STRIDES, 1, DIMS(4))),
        BST_ERR_SHAPE, "strides has 1 entries but shape has 2");
    BAD(BST_OP_VIEW, INS(x),
        ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(2)),
              aints(BST_ATTR_STRIDES, 1, DIMS(INT64_MAX / 4 * 4))),
        BST_ERR_SHAPE, "reaches byte 9223372036854775808, past the 128 bytes");
    BAD(BST_OP_VIEW, INS(x),
        ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(4)),
              aints(BST_ATTR_STRIDES, 1, DIMS(INT64_MAX / 4 * 4))),
        BST_ERR_OVERFLOW, "view extent overflows");
    BAD(BST_OP_VIEW, INS(x), ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(0))), BST_ERR_SHAPE,
        "result shape dim 0 is 0");
    BAD(BST_OP_VIEW, INS(x), ATTRS(ai(BST_ATTR_OFFSET, 0)), BST_ERR_GRAPH,
        "missing attribute shape");

    /* Block types: whole blocks, block-aligned offsets and strides. q4_1[4,64]: 40-byte rows. */
    bst_value w = weight(BST_DTYPE_Q4_1, 2, DIMS(4, 64));
    bst_value wv =
        OK(BST_OP_VIEW, INS(w),
           ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 64)), ai(BST_ATTR_OFFSET, 80)), "q4_1[2,64]");
    CU_ASSERT_EQUAL(g->nodes[wv].type.strides[0], 40);
    CU_ASSERT_EQUAL(g->nodes[wv].type.strides[1], 20);
    BAD(BST_OP_VIEW, INS(w), ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 64)), ai(BST_ATTR_OFFSET, 10)),
        BST_ERR_SHAPE, "offset=10 must be a non-negative multiple of 20");
    BAD(BST_OP_VIEW, INS(w), ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 48))), BST_ERR_SHAPE,
        "block size 32");
    BAD(BST_OP_VIEW, INS(w),
        ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 64)), aints(BST_ATTR_STRIDES, 2, DIMS(40, 40))),
        BST_ERR_SHAPE, "innermost stride must be the block size 20 bytes");
    BAD(BST_OP_TRANSPOSE, INS(w), NOATTRS, BST_ERR_SHAPE, "cannot transpose a q4_1 tensor");
    BAD(BST_OP_PERMUTE, INS(w), ATTRS(aints(BST_ATTR_PERM, 2, DIMS(1, 0))), BST_ERR_SHAPE,
        "innermost dim must stay innermost");

    /* A symbolic view of a state: the KV cache read up to n_kv. */
    bst_value cache = state(BST_DTYPE_F16, 2, DIMS(256, 192));
    bst_value kv = OK(BST_OP_VIEW, INS(cache),
                      ATTRS(aints(BST_ATTR_SHAPE, 3, DIMS(256, 3, 64)),
                            aints(BST_ATTR_STRIDES, 3, DIMS(384, 128, 2)),
                            aints(BST_ATTR_SYM, 3, DIMS(KV, 0, 0))),
                      "f16[n_kv:256,3,64]");
    CU_ASSERT_EQUAL(g->nodes[kv].alias_of, cache);
    BAD(BST_OP_VIEW, INS(cache),
        ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(256, 192)), aints(BST_ATTR_SYM, 1, DIMS(KV))),
        BST_ERR_SHAPE, "sym has 1 entries but shape has 2");
    BAD(BST_OP_VIEW, INS(cache),
        ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(4)), aints(BST_ATTR_SYM, 1, DIMS(9))), BST_ERR_SHAPE,
        "sym[0]=9 is not a known symbol");
}

static void test_reshape_permute(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(8, 576), SYMS(T, 0));
    bst_value r =
        OK(BST_OP_RESHAPE, INS(x),
           ATTRS(aints(BST_ATTR_SHAPE, 3, DIMS(8, 9, 64)), aints(BST_ATTR_SYM, 3, DIMS(T, 0, 0))),
           "f32[n_tokens:8,9,64]");
    CU_ASSERT_EQUAL(g->nodes[r].alias_of, x);
    /* The symbolic prefix must be kept: [8*9, 64] would mix tokens when n_tokens < 8. */
    BAD(BST_OP_RESHAPE, INS(x), ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(72, 64))), BST_ERR_SHAPE,
        "has symbolic dim 0; result f32[72,64] must keep dims 0..0");
    BAD(BST_OP_RESHAPE, INS(x), ATTRS(aints(BST_ATTR_SHAPE, 3, DIMS(8, 9, 64))), BST_ERR_SHAPE,
        "must keep dims 0..0");
    BAD(BST_OP_RESHAPE, INS(x),
        ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(8, 575)), aints(BST_ATTR_SYM, 2, DIMS(T, 0))),
        BST_ERR_SHAPE, "has 4600 elements but operand 0 (x) f32[n_tokens:8,576] has 4608");
    bst_value plain = input(BST_DTYPE_F32, 2, DIMS(6, 4), NULL);
    /* A SYM attribute naming no symbol is dropped: one canonical form per node. */
    bst_value r0 =
        OK(BST_OP_RESHAPE, INS(plain),
           ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(4, 6)), aints(BST_ATTR_SYM, 2, DIMS(0, 0))),
           "f32[4,6]");
    CU_ASSERT_EQUAL(g->nodes[r0].n_attrs, 1u);
    CU_ASSERT_PTR_NULL(bsti_node_attr(&g->nodes[r0], BST_ATTR_SYM));
    BAD(BST_OP_RESHAPE, INS(plain),
        ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(6, 4)), aints(BST_ATTR_SYM, 2, DIMS(T, 0))),
        BST_ERR_SHAPE, "result dim 0 (n_tokens:6) is symbolic but operand 0 (x)");
    bst_value p = OK(BST_OP_PERMUTE, INS(r), ATTRS(aints(BST_ATTR_PERM, 3, DIMS(1, 0, 2))),
                     "f32[9,n_tokens:8,64] strides=[256,2304,4]");
    CU_ASSERT_EQUAL(g->nodes[p].alias_of, x);
    BAD(BST_OP_RESHAPE, INS(p), ATTRS(aints(BST_ATTR_SHAPE, 1, DIMS(4608))), BST_ERR_SHAPE,
        "is not contiguous");
    bst_value y = input(BST_DTYPE_F32, 3, DIMS(2, 3, 4), NULL);
    OK(BST_OP_PERMUTE, INS(y), ATTRS(aints(BST_ATTR_PERM, 3, DIMS(2, 0, 1))),
       "f32[4,2,3] strides=[4,48,16]");
    OK(BST_OP_PERMUTE, INS(y), ATTRS(aints(BST_ATTR_PERM, 3, DIMS(0, 1, 2))), "f32[2,3,4]");
    BAD(BST_OP_PERMUTE, INS(y), ATTRS(aints(BST_ATTR_PERM, 3, DIMS(0, 0, 1))), BST_ERR_SHAPE,
        "perm is not a permutation of 0..2");
    BAD(BST_OP_PERMUTE, INS(y), ATTRS(aints(BST_ATTR_PERM, 2, DIMS(1, 0))), BST_ERR_SHAPE,
        "perm has 2 entries but operand 0 (x) f32[2,3,4] has rank 3");
    BAD(BST_OP_PERMUTE, INS(y), ATTRS(aints(BST_ATTR_PERM, 5, DIMS(0, 1, 2, 3, 4))), BST_ERR_GRAPH,
        "attribute perm has 5 entries");
    /* Size-1 dims do not break contiguity: a reshape after permuting one in is fine. */
    bst_value u = input(BST_DTYPE_F32, 2, DIMS(1, 6), NULL);
    bst_value up =
        OK(BST_OP_PERMUTE, INS(u), ATTRS(aints(BST_ATTR_PERM, 2, DIMS(1, 0))), "f32[6,1]");
    CU_ASSERT_EQUAL(g->nodes[up].type.strides[0], 4);
    CU_ASSERT_EQUAL(g->nodes[up].type.strides[1], 24);
    CU_ASSERT_TRUE(bsti_type_is_contiguous(&g->nodes[up].type));
    OK(BST_OP_RESHAPE, INS(up), ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(2, 3))), "f32[2,3]");
    bst_value s = input(BST_DTYPE_F32, 1, DIMS(5), NULL);
    BAD(BST_OP_TRANSPOSE, INS(s), NOATTRS, BST_ERR_SHAPE, "operand 0 (x) must have rank 2..4");
    OK(BST_OP_TRANSPOSE, INS(y), NOATTRS, "f32[2,4,3] strides=[48,4,16]");
}

static void test_argmax(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(4, 10), SYMS(T, 0));
    bst_value a = OK(BST_OP_ARGMAX, INS(x), NOATTRS, "i32[n_tokens:4]");
    CU_ASSERT_EQUAL(g->nodes[a].type.strides[0], 4);
    bst_value v = input(BST_DTYPE_F16, 1, DIMS(7), NULL);
    OK(BST_OP_ARGMAX, INS(v), NOATTRS, "i32[]");
    bst_value s = input(BST_DTYPE_F32, 0, NULL, NULL);
    BAD(BST_OP_ARGMAX, INS(s), NOATTRS, BST_ERR_SHAPE, "operand 0 (x) must have rank 1..4");
}

static void test_set_rows(void)
{
    fresh();
    bst_value st = state(BST_DTYPE_F16, 2, DIMS(16, 8));
    bst_value src = input(BST_DTYPE_F32, 2, DIMS(4, 8), SYMS(T, 0));
    bst_value ids = input(BST_DTYPE_I32, 1, DIMS(4), SYMS(T));
    bst_value w1 = OK(BST_OP_SET_ROWS, INS(st, src, ids), NOATTRS, "f16[16,8]");
    CU_ASSERT_TRUE(g->nodes[w1].flags & BSTI_NODE_EFFECT);
    CU_ASSERT_EQUAL(g->nodes[w1].alias_of, st);
    bst_value w2 = OK(BST_OP_SET_ROWS, INS(w1, src, ids), NOATTRS, "f16[16,8]");
    CU_ASSERT_EQUAL(g->nodes[w2].alias_of, st);
    bst_value notstate = input(BST_DTYPE_F32, 2, DIMS(16, 8), NULL);
    BAD(BST_OP_SET_ROWS, INS(notstate, src, ids), NOATTRS, BST_ERR_SHAPE,
        "operand 0 (dst) must be a state");
    bst_value src9 = input(BST_DTYPE_F32, 2, DIMS(4, 9), SYMS(T, 0));
    BAD(BST_OP_SET_ROWS, INS(st, src9, ids), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (src) dim 1 is 9 but operand 0 (dst) dim 1 is 8");
    bst_value ids3 = input(BST_DTYPE_I32, 1, DIMS(3), NULL);
    BAD(BST_OP_SET_ROWS, INS(st, src, ids3), NOATTRS, BST_ERR_SHAPE,
        "operand 2 (ids) dim 0 is 3 but operand 1 (src) dim 0 is n_tokens:4");
    bst_value view =
        OK(BST_OP_VIEW, INS(st), ATTRS(aints(BST_ATTR_SHAPE, 2, DIMS(4, 8))), "f16[4,8]");
    BAD(BST_OP_SET_ROWS, INS(view, src, ids), NOATTRS, BST_ERR_SHAPE, "got view");
}

static void test_attention(void)
{
    fresh();
    bst_value q = input(BST_DTYPE_F32, 3, DIMS(4, 6, 8), SYMS(T, 0, 0));
    bst_value k = input(BST_DTYPE_F16, 3, DIMS(32, 2, 8), SYMS(KV, 0, 0));
    bst_value v = input(BST_DTYPE_F16, 3, DIMS(32, 2, 8), SYMS(KV, 0, 0));
    bst_value mask = input(BST_DTYPE_F32, 2, DIMS(4, 32), SYMS(T, KV));
    bst_value a = OK(BST_OP_ATTENTION, INS(q, k, v, mask),
                     ATTRS(ai(BST_ATTR_WINDOW, 16), ai(BST_ATTR_CAUSAL, 1)), "f32[n_tokens:4,6,8]");
    /* Defaults written in (scale = 1/sqrt(D)) and attributes sorted by key. */
    const bsti_node *n = &g->nodes[a];
    CU_ASSERT_EQUAL_FATAL(n->n_attrs, 3u);
    CU_ASSERT_EQUAL(n->attrs[0].key, (uint32_t)BST_ATTR_SCALE);
    CU_ASSERT_DOUBLE_EQUAL(n->attrs[0].f, 0.35355339059327373, 1e-15);
    CU_ASSERT_EQUAL(n->attrs[1].key, (uint32_t)BST_ATTR_CAUSAL);
    CU_ASSERT_EQUAL(n->attrs[1].ints[0], 1);
    CU_ASSERT_EQUAL(n->attrs[2].key, (uint32_t)BST_ATTR_WINDOW);
    CU_ASSERT_EQUAL(n->attrs[2].ints[0], 16);
    OK(BST_OP_ATTENTION, INS(q, k, v), NOATTRS, "f32[n_tokens:4,6,8]");
    bst_value k4 = input(BST_DTYPE_F16, 3, DIMS(32, 4, 8), SYMS(KV, 0, 0));
    BAD(BST_OP_ATTENTION, INS(q, k4, k4), NOATTRS, BST_ERR_SHAPE,
        "operand 0 (q) heads (6) must be a fixed multiple of operand 1 (k) heads (4)");
    BAD(BST_OP_ATTENTION, INS(q, k, k4), NOATTRS, BST_ERR_SHAPE,
        "operand 2 (v) dim 1 is 4 but operand 1 (k) dim 1 is 2");
    bst_value k16 = input(BST_DTYPE_F16, 3, DIMS(32, 2, 16), SYMS(KV, 0, 0));
    BAD(BST_OP_ATTENTION, INS(q, k16, k16), NOATTRS, BST_ERR_SHAPE,
        "operand 1 (k) dim 2 is 16 but operand 0 (q) dim 2 is 8");
    bst_value bad_mask = input(BST_DTYPE_F32, 2, DIMS(4, 32), NULL);
    BAD(BST_OP_ATTENTION, INS(q, k, v, bad_mask), NOATTRS, BST_ERR_SHAPE,
        "operand 3 (mask) dim 0 is 4, which does not broadcast to scores [T,S] dim 0 (n_tokens:4)");
    BAD(BST_OP_ATTENTION, INS(q, k, v), ATTRS(ai(BST_ATTR_CAUSAL, 2)), BST_ERR_SHAPE,
        "causal=2 must be 0 or 1");
    BAD(BST_OP_ATTENTION, INS(q, k, v), ATTRS(ai(BST_ATTR_WINDOW, -1)), BST_ERR_SHAPE,
        "window=-1 must be >= 0");
    BAD(BST_OP_ATTENTION, INS(q, k), NOATTRS, BST_ERR_GRAPH, "takes 3 to 4 operands, got 2");
}

static void test_ffn_swiglu(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(4, 8), SYMS(T, 0));
    bst_value gate = weight(BST_DTYPE_F16, 2, DIMS(16, 8));
    bst_value up = weight(BST_DTYPE_F32, 2, DIMS(16, 8));
    bst_value down = weight(BST_DTYPE_F32, 2, DIMS(8, 16));
    OK(BST_OP_FFN_SWIGLU, INS(x, gate, up, down), NOATTRS, "f32[n_tokens:4,8]");
    BAD(BST_OP_FFN_SWIGLU, INS(x, gate, up, up), NOATTRS, BST_ERR_SHAPE,
        "operand 3 (w_down) dim 0 is 16 but operand 0 (x) dim 1 is 8");
    bst_value up12 = weight(BST_DTYPE_F32, 2, DIMS(12, 8));
    BAD(BST_OP_FFN_SWIGLU, INS(x, gate, up12, down), NOATTRS, BST_ERR_SHAPE,
        "operand 2 (w_up) dim 0 is 12 but operand 1 (w_gate) dim 0 is 16");
}

/* --- generic checks --- */

static void test_attr_checks(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 1, DIMS(4), NULL);
    BAD(BST_OP_RMS_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, 1), af(BST_ATTR_EPS, 2)), BST_ERR_GRAPH,
        "attribute eps given twice");
    bst_attr unknown = af(BST_ATTR_EPS, 1);
    unknown.key = 999;
    BAD(BST_OP_RMS_NORM, INS(x), &unknown, 1, BST_ERR_GRAPH, "unknown attribute key 999");
    BAD(BST_OP_RMS_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, 1), ai(BST_ATTR_AXIS, 0)), BST_ERR_GRAPH,
        "takes no attribute axis");
    /* Unused fields are normalized, so identical nodes compare equal byte for byte. */
    bst_attr messy = af(BST_ATTR_EPS, 1e-5);
    messy.ints[2] = 77;
    messy.count = 0;
    messy.struct_size = 0;
    bst_value v = OK(BST_OP_RMS_NORM, INS(x), &messy, 1, "f32[4]");
    bst_value w = OK(BST_OP_RMS_NORM, INS(x), ATTRS(af(BST_ATTR_EPS, 1e-5)), "f32[4]");
    CU_ASSERT_EQUAL(memcmp(&g->nodes[v].attrs[0], &g->nodes[w].attrs[0], sizeof(bst_attr)), 0);
    /* API argument checks. */
    bst_value out;
    CU_ASSERT_EQUAL(bst_graph_add_op(g, BST_OP_INPUT, NULL, 0, NULL, 0, &out), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_add_op(g, BST_OP_COUNT, &x, 1, NULL, 0, &out), BST_ERR_INVALID_ARG);
    bst_value missing = 999;
    CU_ASSERT_EQUAL(bst_graph_add_op(g, BST_OP_SILU, &missing, 1, NULL, 0, &out),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "does not exist"));
    CU_ASSERT_EQUAL(bst_graph_add_op(g, BST_OP_SILU, &x, 1, NULL, 9, &out), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_add_op(NULL, BST_OP_SILU, &x, 1, NULL, 0, &out), BST_ERR_INVALID_ARG);
}

static void test_sources(void)
{
    fresh();
    bst_value v;
    CU_ASSERT_EQUAL(bst_graph_add_input(g, NULL, BST_DTYPE_F32, 1, DIMS(4), NULL, &v),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 5, DIMS(1, 1, 1, 1, 1), NULL, &v),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_INVALID, 1, DIMS(4), NULL, &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 1, DIMS(0), NULL, &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 1, DIMS(4), SYMS(7), &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_Q4_0, 1, DIMS(33), NULL, &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_Q4_0, 1, DIMS(32), SYMS(T), &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_EQUAL(bst_graph_add_state(g, "s", BST_DTYPE_F32, 1, DIMS(4), &v), BST_OK);
    CU_ASSERT_EQUAL(bst_graph_value_count(g), 1u);
    /* Weights: data (borrowed) must match the type's size exactly, or be absent. */
    static const unsigned char q[2 * 18] = {0};
    CU_ASSERT_EQUAL(bst_graph_add_weight(g, "w", BST_DTYPE_Q4_0, 2, DIMS(2, 32), q, sizeof q, &v),
                    BST_OK);
    CU_ASSERT_PTR_EQUAL(g->nodes[v].weight_data, q);
    CU_ASSERT_EQUAL(g->nodes[v].type.strides[0], 18);
    CU_ASSERT_EQUAL(bst_graph_add_weight(g, "w", BST_DTYPE_Q4_0, 2, DIMS(2, 32), q, 35, &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "needs 36 bytes, got 35"));
    CU_ASSERT_EQUAL(bst_graph_add_weight(g, "w", BST_DTYPE_Q4_0, 2, DIMS(2, 32), NULL, 36, &v),
                    BST_ERR_INVALID_ARG);
    /* Consts are copied. */
    float data[3] = {1, 2, 3};
    CU_ASSERT_EQUAL(bst_graph_add_const(g, BST_DTYPE_F32, 1, DIMS(3), data, sizeof data, &v),
                    BST_OK);
    CU_ASSERT_PTR_NOT_EQUAL(g->nodes[v].const_data, data);
    CU_ASSERT_EQUAL(memcmp(g->nodes[v].const_data, data, sizeof data), 0);
    CU_ASSERT_EQUAL(bst_graph_add_const(g, BST_DTYPE_F32, 1, DIMS(4), data, sizeof data, &v),
                    BST_ERR_SHAPE);
    CU_ASSERT_EQUAL(bst_graph_value_count(g), 3u);
    bst_tensor_desc d;
    CU_ASSERT_EQUAL(bst_graph_value_desc(g, 3, &d), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_value_desc(g, 2, &d), BST_OK);
    CU_ASSERT_EQUAL(d.dtype, (uint32_t)BST_DTYPE_F32);
    CU_ASSERT_EQUAL(d.shape[0], 3);
    CU_ASSERT_EQUAL(d.binding, 0u);
    CU_ASSERT_EQUAL(d.offset, 0u);
}

static void test_outputs(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 1, DIMS(4), NULL);
    bst_value y = OK(BST_OP_SILU, INS(x), NOATTRS, "f32[4]");
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, y, "y"), BST_OK);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, y, "y"), BST_OK);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, y, "z"), BST_ERR_INVALID_ARG);
    CU_ASSERT_STRING_EQUAL(g->nodes[y].name, "y");
    CU_ASSERT_TRUE(g->nodes[y].flags & BSTI_NODE_OUTPUT);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, x, "in0"), BST_OK); /* a source keeps its name */
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, x, "other"), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, 7, "q"), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, y, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, y, ""), BST_ERR_INVALID_ARG);
}

/* Sizes: every product is checked, so a huge shape is an error, never a wrapped size. */
static void test_overflow(void)
{
    fresh();
    bst_value v;
    const int64_t m = BSTI_MAX_DIM;
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_I8, 1, DIMS(m), NULL, &v), BST_OK);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_I8, 1, DIMS(m + 1), NULL, &v),
                    BST_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, DIMS(m, m), NULL, &v),
                    BST_ERR_OVERFLOW);
    /* 2^20 * 2^20 * 2^20 * 2^2 elements of 4 bytes = 2^64 bytes. */
    CU_ASSERT_EQUAL(
        bst_graph_add_input(g, "x", BST_DTYPE_F32, 4, DIMS(1 << 20, 1 << 20, 1 << 20, 4), NULL, &v),
        BST_ERR_OVERFLOW);
    /* Exactly 2^62 bytes is the largest tensor. */
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, DIMS(1 << 30, 1 << 30), NULL, &v),
                    BST_OK);
    CU_ASSERT_EQUAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2,
                                        DIMS((int64_t)1 << 30, ((int64_t)1 << 30) + 1), NULL, &v),
                    BST_ERR_OVERFLOW);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "2^62"));
    /* A matmul whose result would pass 2^62 bytes. */
    bst_value a = input(BST_DTYPE_F32, 2, DIMS((int64_t)1 << 31, 8), NULL);
    bst_value b = weight(BST_DTYPE_F32, 2, DIMS((int64_t)1 << 31, 8));
    BAD(BST_OP_MATMUL, INS(a, b), NOATTRS, BST_ERR_OVERFLOW, "larger than 2^62 bytes");
    /* get_rows: ids [2^20, 2^20] of rows of 2^30 floats. */
    bst_value t = weight(BST_DTYPE_F32, 2, DIMS(2, 1 << 30));
    bst_value ids = input(BST_DTYPE_I32, 2, DIMS(1 << 20, 1 << 20), NULL);
    BAD(BST_OP_GET_ROWS, INS(t, ids), NOATTRS, BST_ERR_OVERFLOW, "get_rows");
}

/* --- graph core --- */

static void test_infer_node_direct(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 1, DIMS(4), NULL);
    /* A node appended by a pass with a forward reference is rejected by inference. */
    bsti_node n;
    memset(&n, 0, sizeof n);
    n.op = BST_OP_SILU;
    n.n_inputs = 1;
    n.inputs[0] = 1; /* itself */
    n.alias_of = BSTI_NONE;
    uint32_t id;
    CU_ASSERT_EQUAL_FATAL(bsti_graph_append(g, &n, &id), BST_OK);
    CU_ASSERT_EQUAL(bsti_infer_node(g, id), BST_ERR_GRAPH);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(bst_last_error(), "silu: operand 0 is %1, not defined before %1"));
    g->nodes[id].inputs[0] = x;
    CU_ASSERT_EQUAL(bsti_infer_node(g, id), BST_OK);
    CU_ASSERT_EQUAL(g->nodes[id].type.shape[0], 4);
    g->nodes[id].op = (bst_op)200;
    CU_ASSERT_EQUAL(bsti_infer_node(g, id), BST_ERR_GRAPH);
    g->nodes[id].op = BST_OP_SILU;
    CU_ASSERT_EQUAL(bsti_infer_node(g, 99), BST_ERR_INVALID_ARG);
}

static void test_type_helpers(void)
{
    bsti_type t = {.dtype = BST_DTYPE_Q8_0, .rank = 3, .shape = {2, 3, 64}};
    bsti_type_set_contiguous(&t);
    CU_ASSERT_EQUAL(t.strides[2], 34);
    CU_ASSERT_EQUAL(t.strides[1], 68);
    CU_ASSERT_EQUAL(t.strides[0], 204);
    CU_ASSERT_TRUE(bsti_type_is_contiguous(&t));
    uint64_t bytes;
    int64_t n;
    CU_ASSERT_EQUAL(bsti_type_nbytes(&t, &bytes), BST_OK);
    CU_ASSERT_EQUAL(bytes, 408u);
    CU_ASSERT_EQUAL(bsti_type_nelements(&t, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 384);
    t.shape[2] = 40;
    CU_ASSERT_EQUAL(bsti_type_nbytes(&t, &bytes), BST_ERR_SHAPE);
    bsti_type s = {.dtype = BST_DTYPE_F32, .rank = 0};
    bsti_type_set_contiguous(&s);
    CU_ASSERT_EQUAL(bsti_type_nbytes(&s, &bytes), BST_OK);
    CU_ASSERT_EQUAL(bytes, 4u);
    char buf[64];
    bsti_type_format(&s, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "f32[]");
    bsti_type f = {.dtype = BST_DTYPE_BF16,
                   .rank = 2,
                   .shape = {5, 3},
                   .strides = {2, 10},
                   .sym = {BST_SYM_N_KV, 0}};
    bsti_type_format(&f, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "bf16[n_kv:5,3] strides=[2,10]");
    bsti_type_format(&f, buf, 8); /* truncated, still terminated */
    CU_ASSERT_STRING_EQUAL(buf, "bf16[n_");
    CU_ASSERT_STRING_EQUAL(bsti_sym_name(BST_SYM_N_TOKENS), "n_tokens");
    CU_ASSERT_PTR_NULL(bsti_sym_name(BST_SYM_NONE));
    bst_tensor_desc d;
    bsti_type_to_desc(&f, &d);
    CU_ASSERT_EQUAL(d.struct_size, sizeof d);
    CU_ASSERT_EQUAL(d.strides[1], 10);
    CU_ASSERT_EQUAL(d.sym[0], (uint32_t)BST_SYM_N_KV);
    CU_ASSERT_EQUAL(d.layout, (uint32_t)BST_LAYOUT_NATIVE);
}

static void test_clone_compact(void)
{
    fresh();
    bst_value x = input(BST_DTYPE_F32, 2, DIMS(2, 4), NULL);
    float data[4] = {1, 2, 3, 4};
    bst_value c;
    CU_ASSERT_EQUAL_FATAL(bst_graph_add_const(g, BST_DTYPE_F32, 1, DIMS(4), data, sizeof data, &c),
                          BST_OK);
    bst_value dead = OK(BST_OP_SILU, INS(x), NOATTRS, "f32[2,4]");
    bst_value t = OK(BST_OP_TRANSPOSE, INS(x), NOATTRS, "f32[4,2] strides=[4,16]");
    bst_value y = OK(BST_OP_ADD, INS(x, c), NOATTRS, "f32[2,4]");
    CU_ASSERT_EQUAL_FATAL(bst_graph_mark_output(g, y, "y"), BST_OK);

    bst_graph *copy = NULL;
    CU_ASSERT_EQUAL_FATAL(bsti_graph_clone(g, &copy), BST_OK);
    CU_ASSERT_EQUAL(copy->n_nodes, g->n_nodes);
    CU_ASSERT_PTR_NOT_EQUAL(copy->nodes[c].const_data, g->nodes[c].const_data);
    CU_ASSERT_EQUAL(memcmp(copy->nodes[c].const_data, data, sizeof data), 0);
    CU_ASSERT_PTR_NOT_EQUAL(copy->nodes[y].name, g->nodes[y].name);
    CU_ASSERT_STRING_EQUAL(copy->nodes[y].name, "y");

    /* Removing a used node fails and changes nothing. */
    bool keep[5] = {false, true, true, true, true};
    CU_ASSERT_EQUAL(bsti_graph_compact(copy, keep, NULL), BST_ERR_GRAPH);
    CU_ASSERT_EQUAL(copy->n_nodes, 5u);
    /* Removing the dead silu renumbers the rest. */
    bool keep2[5] = {true, true, false, true, true};
    uint32_t remap[5];
    CU_ASSERT_EQUAL_FATAL(bsti_graph_compact(copy, keep2, remap), BST_OK);
    CU_ASSERT_EQUAL(copy->n_nodes, 4u);
    CU_ASSERT_EQUAL(remap[dead], BSTI_NONE);
    CU_ASSERT_EQUAL(remap[t], 2u);
    CU_ASSERT_EQUAL(remap[y], 3u);
    CU_ASSERT_EQUAL(copy->nodes[2].op, BST_OP_TRANSPOSE);
    CU_ASSERT_EQUAL(copy->nodes[2].alias_of, 0u);
    CU_ASSERT_EQUAL(copy->nodes[3].inputs[0], 0u);
    CU_ASSERT_EQUAL(copy->nodes[3].inputs[1], 1u);
    CU_ASSERT_STRING_EQUAL(copy->nodes[3].name, "y");
    /* The original is untouched by all of this. */
    CU_ASSERT_EQUAL(g->n_nodes, 5u);
    CU_ASSERT_EQUAL(g->nodes[y].inputs[1], c);
    char *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL(bst_graph_print(g, &a), BST_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "%2 = silu %in0"));
    CU_ASSERT_EQUAL(bst_graph_print(copy, &b), BST_OK);
    CU_ASSERT_PTR_NULL(strstr(b, "silu"));
    bst_free(a);
    bst_free(b);
    bst_graph_destroy(copy);
    bst_graph_destroy(NULL);
}

static void cleanup(void)
{
    bst_graph_destroy(g);
    g = NULL;
}

static void test_zz_cleanup(void) { cleanup(); }

int main(void)
{
    static const bst_test_case cases[] = {
        {"dtype_table", test_dtype_table},
        {"op_table", test_op_table},
        {"get_rows", test_get_rows},
        {"add_mul", test_add_mul},
        {"scale_unary", test_scale_unary},
        {"matmul", test_matmul},
        {"norms", test_norms},
        {"rope", test_rope},
        {"softmax", test_softmax},
        {"cast_quantize", test_cast_quantize},
        {"concat", test_concat},
        {"views", test_views},
        {"reshape_permute", test_reshape_permute},
        {"argmax", test_argmax},
        {"set_rows", test_set_rows},
        {"attention", test_attention},
        {"ffn_swiglu", test_ffn_swiglu},
        {"attr_checks", test_attr_checks},
        {"sources", test_sources},
        {"outputs", test_outputs},
        {"overflow", test_overflow},
        {"infer_node_direct", test_infer_node_direct},
        {"type_helpers", test_type_helpers},
        {"clone_compact", test_clone_compact},
        {"cleanup", test_zz_cleanup},
        {NULL, NULL},
    };
    return bst_test_run_suite("graph_ops", cases);
}
