/*
 * bastion/graph.h — the intermediate representation, as the embedding API exposes it.
 *
 * A bst_graph is a list of SSA values in topological order: each value is produced by one node
 * (an op with inputs and attributes) and has a type (dtype, shape outermost-first, byte strides,
 * symbolic dims). Model code builds graphs with high-level ops; the compiler passes verify,
 * infer shapes, simplify and lower them; the runtime places and runs them (bastion.h).
 * Graphs also have a text form that prints and parses back identically:
 *
 *   %x = input f32[n_tokens:8,576] "x"        (a symbolic dim is written symbol:bound)
 *   %blk.0.ffn_up.weight = weight q4_1[1536,576] "blk.0.ffn_up.weight"
 *   %2 = matmul %x, %blk.0.ffn_up.weight ; f32[n_tokens:8,1536]
 *   output %2 "h"
 * (graph/text.c describes the whole format and how the printer names values.)
 *
 * Thread-safety: a graph is not internally synchronized; use one graph from one thread at a time.
 * Different graphs are independent.
 */
#ifndef BASTION_GRAPH_H
#define BASTION_GRAPH_H

#include <bastion/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BST_API __attribute__((visibility("default")))
#else
#define BST_API
#endif

typedef struct bst_graph bst_graph;
typedef uint32_t bst_value;
#define BST_VALUE_NONE UINT32_MAX

/* Static facts of a dtype. Block size is 1 for plain types. */
BST_API const char *bst_dtype_name(bst_dtype type);        /* "f32", "q4_1"; NULL if invalid */
BST_API uint32_t bst_dtype_block_size(bst_dtype type);    /* elements per block; 0 if invalid */
BST_API uint32_t bst_dtype_block_bytes(bst_dtype type);   /* bytes per block; 0 if invalid */
BST_API const char *bst_op_name(bst_op op);               /* "matmul"; NULL if unknown */
BST_API const char *bst_status_name(bst_status status);   /* "BST_ERR_PARSE" */

/* Creates an empty graph; destroy with bst_graph_destroy. */
BST_API BST_MUST_CHECK bst_status bst_graph_create(bst_graph **out_graph);
BST_API void bst_graph_destroy(bst_graph *graph); /* NULL is allowed */

/* Value sources. `name` is copied. `shape` has `rank` dims; `sym` (may be NULL) tags symbolic
 * dims whose shape entry is then their upper bound. Weight `data` is borrowed: it must outlive
 * every program built from the graph (typically an mmap'd model file). Const `data` is copied. */
BST_API BST_MUST_CHECK bst_status bst_graph_add_input(bst_graph *graph, const char *name,
                                                      bst_dtype dtype, uint32_t rank,
                                                      const int64_t *shape, const uint32_t *sym,
                                                      bst_value *out_value);
BST_API BST_MUST_CHECK bst_status bst_graph_add_weight(bst_graph *graph, const char *name,
                                                       bst_dtype dtype, uint32_t rank,
                                                       const int64_t *shape, const void *data,
                                                       uint64_t size, bst_value *out_value);
BST_API BST_MUST_CHECK bst_status bst_graph_add_state(bst_graph *graph, const char *name,
                                                      bst_dtype dtype, uint32_t rank,
                                                      const int64_t *shape, bst_value *out_value);
BST_API BST_MUST_CHECK bst_status bst_graph_add_const(bst_graph *graph, bst_dtype dtype,
                                                      uint32_t rank, const int64_t *shape,
                                                      const void *data, uint64_t size,
                                                      bst_value *out_value);
/* Adds an op node; its output type is inferred now, and a shape-rule violation returns
 * BST_ERR_SHAPE with a message naming the op and the operand. */
BST_API BST_MUST_CHECK bst_status bst_graph_add_op(bst_graph *graph, bst_op op,
                                                   const bst_value *inputs, uint32_t n_inputs,
                                                   const bst_attr *attrs, uint32_t n_attrs,
                                                   bst_value *out_value);
/* Marks `value` as a graph output called `name` (copied). */
BST_API BST_MUST_CHECK bst_status bst_graph_mark_output(bst_graph *graph, bst_value value,
                                                        const char *name);

BST_API uint32_t bst_graph_value_count(const bst_graph *graph);
/* The type of `value` as a descriptor (binding and offset zero). */
BST_API BST_MUST_CHECK bst_status bst_graph_value_desc(const bst_graph *graph, bst_value value,
                                                       bst_tensor_desc *out_desc);

/* Parses the text form. Errors are BST_ERR_PARSE (or BST_ERR_SHAPE / BST_ERR_GRAPH) with a
 * message starting "LINE:COL: ". */
BST_API BST_MUST_CHECK bst_status bst_graph_parse(const char *text, size_t length,
                                                  bst_graph **out_graph);
/* Prints the text form / Graphviz DOT into a new NUL-terminated string; free with bst_free. */
BST_API BST_MUST_CHECK bst_status bst_graph_print(const bst_graph *graph, char **out_text);
BST_API BST_MUST_CHECK bst_status bst_graph_to_dot(const bst_graph *graph, char **out_text);

/* Runs passes by name, comma-separated, in order: verify, infer, dce, cse, fold, lower. */
BST_API BST_MUST_CHECK bst_status bst_graph_run_passes(bst_graph *graph, const char *passes);

BST_API void bst_free(void *ptr);

/* Read-only queries on one value (no ownership changes; the returned name lives until the graph
 * is modified or destroyed). An out-of-range value gives BST_OP_NONE / NULL / false. */
BST_API bst_op bst_graph_value_op(const bst_graph *graph, bst_value value);
/* Name of an INPUT, WEIGHT or STATE value, or the output name of a marked output; else NULL. */
BST_API const char *bst_graph_value_name(const bst_graph *graph, bst_value value);
BST_API bool bst_graph_value_is_output(const bst_graph *graph, bst_value value);

#ifdef __cplusplus
}
#endif
#endif /* BASTION_GRAPH_H */
