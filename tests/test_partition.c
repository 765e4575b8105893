/*
 * tests/test_partition.c — bsti_partition_graph on hand-placed graphs: runs of consecutive
 * compute nodes split exactly where the device changes, sources and aliases of sources belong to
 * no partition, aliases of computed values stay in their run, and unplaced nodes are refused.
 */
#include "graph/ir.h"
#include "test_util.h"

#include <string.h>

static const int64_t shape_4x8[2] = {4, 8};
static const int64_t shape_8x8[2] = {8, 8};
static float w_data[64];

/* x f32[4,8] (input), w f32[8,8] (weight); returns the graph. */
static bst_graph *base_graph(bst_value *x, bst_value *w)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, shape_4x8, NULL, x) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w", BST_DTYPE_F32, 2, shape_8x8, w_data,
                                         sizeof w_data, w) == BST_OK);
    return g;
}

static bst_value op2(bst_graph *g, bst_op op, bst_value a, bst_value b)
{
    bst_value in[2] = {a, b}, out = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_op(g, op, in, 2, NULL, 0, &out) == BST_OK);
    return out;
}

static bst_value op1(bst_graph *g, bst_op op, bst_value a)
{
    bst_value out = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_op(g, op, &a, 1, NULL, 0, &out) == BST_OK);
    return out;
}

static void place(bst_graph *g, bst_value v, uint32_t device) { g->nodes[v].device = device; }

static void test_split_on_device_change(void)
{
    bst_value x, w;
    bst_graph *g = base_graph(&x, &w);
    bst_value a = op2(g, BST_OP_MATMUL, x, w); /* dev 0 */
    bst_value b = op2(g, BST_OP_ADD, a, x);    /* dev 0 */
    bst_value c = op1(g, BST_OP_SILU, b);      /* dev 1 */
    bst_value d = op1(g, BST_OP_GELU, c);      /* dev 1 */
    bst_value e = op2(g, BST_OP_MUL, d, x);    /* dev 0 again: a third partition */
    place(g, a, 0);
    place(g, b, 0);
    place(g, c, 1);
    place(g, d, 1);
    place(g, e, 0);

    bsti_partitioning parts;
    CU_ASSERT_FATAL(bsti_partition_graph(g, &parts) == BST_OK);
    CU_ASSERT_FATAL(parts.n_parts == 3);
    CU_ASSERT(parts.parts[0].device == 0);
    CU_ASSERT_FATAL(parts.parts[0].n_nodes == 2);
    CU_ASSERT(parts.parts[0].nodes[0] == a);
    CU_ASSERT(parts.parts[0].nodes[1] == b);
    CU_ASSERT(parts.parts[1].device == 1);
    CU_ASSERT_FATAL(parts.parts[1].n_nodes == 2);
    CU_ASSERT(parts.parts[1].nodes[0] == c);
    CU_ASSERT(parts.parts[1].nodes[1] == d);
    CU_ASSERT(parts.parts[2].device == 0);
    CU_ASSERT_FATAL(parts.parts[2].n_nodes == 1);
    CU_ASSERT(parts.parts[2].nodes[0] == e);
    bsti_partitioning_free(&parts);
    CU_ASSERT(parts.n_parts == 0 && parts.parts == NULL);
    bst_graph_destroy(g);
}

/* Sources interleaved between compute nodes do not cut a run, and never appear in one. */
static void test_sources_excluded(void)
{
    bst_value x, w;
    bst_graph *g = base_graph(&x, &w);
    bst_value a = op2(g, BST_OP_MATMUL, x, w);
    bst_value w2;
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w2", BST_DTYPE_F32, 2, shape_8x8, w_data,
                                         sizeof w_data, &w2) == BST_OK);
    bst_value state;
    CU_ASSERT_FATAL(bst_graph_add_state(g, "s", BST_DTYPE_F32, 2, shape_4x8, &state) == BST_OK);
    bst_value b = op2(g, BST_OP_MATMUL, a, w2);
    bst_value c = op2(g, BST_OP_ADD, b, state);
    place(g, a, 2);
    place(g, b, 2);
    place(g, c, 2);
    /* Sources carry a device too; the partitioner must still leave them out. */
    place(g, x, 2);
    place(g, w2, 2);

    bsti_partitioning parts;
    CU_ASSERT_FATAL(bsti_partition_graph(g, &parts) == BST_OK);
    CU_ASSERT_FATAL(parts.n_parts == 1);
    CU_ASSERT(parts.parts[0].device == 2);
    CU_ASSERT_FATAL(parts.parts[0].n_nodes == 3);
    CU_ASSERT(parts.parts[0].nodes[0] == a);
    CU_ASSERT(parts.parts[0].nodes[1] == b);
    CU_ASSERT(parts.parts[0].nodes[2] == c);
    bsti_partitioning_free(&parts);
    bst_graph_destroy(g);
}

/* A transpose of a weight is address arithmetic on a source: no partition. A transpose of a
 * computed value runs with its consumer. */
static void test_aliases(void)
{
    bst_value x, w;
    bst_graph *g = base_graph(&x, &w);
    bst_value wt = op1(g, BST_OP_TRANSPOSE, w);
    bst_value a = op2(g, BST_OP_MATMUL, x, wt);
    bst_value at = op1(g, BST_OP_TRANSPOSE, a);
    bst_value b = op1(g, BST_OP_CONT, at);
    CU_ASSERT(g->nodes[wt].alias_of == w);
    CU_ASSERT(g->nodes[at].alias_of == a);
    place(g, wt, 0);
    place(g, a, 0);
    place(g, at, 1);
    place(g, b, 1);

    bsti_partitioning parts;
    CU_ASSERT_FATAL(bsti_partition_graph(g, &parts) == BST_OK);
    CU_ASSERT_FATAL(parts.n_parts == 2);
    CU_ASSERT_FATAL(parts.parts[0].n_nodes == 1);
    CU_ASSERT(parts.parts[0].nodes[0] == a);
    CU_ASSERT_FATAL(parts.parts[1].n_nodes == 2);
    CU_ASSERT(parts.parts[1].nodes[0] == at);
    CU_ASSERT(parts.parts[1].nodes[1] == b);
    bsti_partitioning_free(&parts);
    bst_graph_destroy(g);
}

static void test_unplaced_and_empty(void)
{
    bst_value x, w;
    bst_graph *g = base_graph(&x, &w);
    bsti_partitioning parts;
    /* Only sources: nothing to run. */
    CU_ASSERT_FATAL(bsti_partition_graph(g, &parts) == BST_OK);
    CU_ASSERT(parts.n_parts == 0);
    bsti_partitioning_free(&parts);

    bst_value a = op2(g, BST_OP_MATMUL, x, w);
    CU_ASSERT(g->nodes[a].device == BSTI_NONE);
    CU_ASSERT(bsti_partition_graph(g, &parts) == BST_ERR_INVALID_ARG);
    CU_ASSERT(strstr(bst_last_error(), "matmul") != NULL);
    CU_ASSERT(parts.n_parts == 0);
    CU_ASSERT(bsti_partition_graph(NULL, &parts) == BST_ERR_INVALID_ARG);
    bst_graph_destroy(g);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"split_on_device_change", test_split_on_device_change},
        {"sources_excluded", test_sources_excluded},
        {"aliases", test_aliases},
        {"unplaced_and_empty", test_unplaced_and_empty},
        {NULL, NULL},
    };
    return bst_test_run_suite("partition", cases);
}
