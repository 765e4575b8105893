/*
 * matmul: two kernel variants per weight dtype (kernels/matmul.cl), both offered by query for
 * every node so kernel selection can measure them: "gemv" first when a has few rows (decode),
 * "tiled" first otherwise (prompts, attention scores) except on CPU-type devices. Weights of any dtype are read from their
 * GGUF blocks in place. Also the op table.
 */
#include "ocl_backend.h"

#include <stdio.h>

#define GEMV_M_MAX 8 /* up to this many rows of a, gemv comes first */
#define GV_LANES 16  /* kernels/matmul.cl */
#define GV_ROWS 4
#define TL 32
#define TW 8

static bst_status check_matmul(ocl_run *r)
{
    const ocl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    if (!ocl_is_float_in(a->dtype) || !ocl_is_float_in(b->dtype))
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "matmul of %s and %s", bstc_dtype_name(a->dtype),
                        bstc_dtype_name(b->dtype));
    if (o->dtype != BST_DTYPE_F32)
        return ocl_fail(r, BST_ERR_UNSUPPORTED, "matmul writes f32, not %s",
                        bstc_dtype_name(o->dtype));
    if (a->rank < 2 || b->rank < 2 || b->rank > a->rank || o->rank != a->rank)
        return ocl_fail(r, BST_ERR_SHAPE, "matmul ranks a %u, b %u, out %u", a->rank, b->rank,
                        o->rank);
    if (a->ne[3] != b->ne[3])
        return ocl_fail(r, BST_ERR_SHAPE, "inner dims differ: a has %lld, b has %lld",
                        (long long)a->ne[3], (long long)b->ne[3]);
    if (o->ne[2] != a->ne[2] || o->ne[3] != b->ne[2])
        return ocl_fail(r, BST_ERR_SHAPE, "output must be [..., %lld, %lld]",
                        (long long)a->ne[2], (long long)b->ne[2]);
    for (int d = 0; d < 2; d++) {
        if (o->ne[d] != a->ne[d])
            return ocl_fail(r, BST_ERR_SHAPE, "output batch dims differ from a's");
        if (b->ne[d] == 0 ? a->ne[d] != 0 : a->ne[d] % b->ne[d] != 0)
            return ocl_fail(r, BST_ERR_SHAPE, "b batch dim %lld does not divide a's %lld",
                            (long long)b->ne[d], (long long)a->ne[d]);
    }
    bst_status st;
    if ((st = ocl_check_aligned(r, a, "a")) || (st = ocl_check_aligned(r, b, "b")) ||
        (st = ocl_check_aligned(r, o, "output")))
        return st;
    return BST_OK;
}

static uint32_t variants_matmul(const ocl_run *r, const char **out_names, uint32_t cap)
{
    /* Rows of a at their bound, from the descriptor: the order must not change between query,
     * compile and execute, where a symbolic M takes its run-time value. */
    const bst_tensor_desc *a = &r->node->in[0];
    bool gemv_first = a->rank >= 2 && a->shape[a->rank - 2] <= GEMV_M_MAX;
    /* On a device that runs work-groups on CPU cores (PoCL) the local-memory tiles only cost
     * barriers: gemv measured as fast or faster there at every M (e.g. 114 vs 124 ms for
     * 512x1536x576 q4_1 on PoCL 3.1, 2 cores), so it comes first. */
    if (r->dev->info.kind == BST_DEVICE_CPU)
        gemv_first = true;
    if (cap > 0)
        out_names[0] = gemv_first ? "gemv" : "tiled";
    if (cap > 1)
        out_names[1] = gemv_first ? "tiled" : "gemv";
    return 2;
}

static bool variant_is_gemv(const ocl_run *r)
{
    const char *names[2];
    variants_matmul(r, names, 2);
    return names[r->node->variant < 2 ? r->node->variant : 0][0] == 'g';
}

static uint32_t fam_matmul(const ocl_run *r)
{
    (void)r;
    return 1u << OCL_FAM_MATMUL;
}

/* k[0] is the variant's kernel; the tiled variant also gets gemv's as k[1]: a symbolic M (the
 * prompt graph decoding one token) can make a 32-row tile mostly padding at run time. */
static bst_status prepare_matmul(ocl_run *r)
{
    char name[32];
    const char *dt = bstc_dtype_name(r->in[1].dtype);
    bool gemv = variant_is_gemv(r);
    snprintf(name, sizeof name, "k_%s_%s", gemv ? "gemv" : "tiled", dt);
    bst_status st = ocl_kernel_create(r, OCL_FAM_MATMUL, name, &r->node->k[0]);
    if (st == BST_OK && !gemv) {
        snprintf(name, sizeof name, "k_gemv_%s", dt);
        st = ocl_kernel_create(r, OCL_FAM_MATMUL, name, &r->node->k[1]);
    }
    return st;
}

static bst_status launch_matmul(ocl_run *r)
{
    const ocl_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    /* The tiled variant runs gemv's kernel when the rows of a at run time fit gemv's regime
     * (compile presets the tiled kernel; a symbolic node sets its arguments at every run). */
    bool gemv = variant_is_gemv(r) || (r->node->symbolic && a->ne[2] <= GEMV_M_MAX);
    cl_kernel k = variant_is_gemv(r) || !gemv ? r->node->k[0] : r->node->k[1];
    const char *name = gemv ? "k_gemv" : "k_tiled";
    int64_t N = b->ne[2], M = a->ne[2], batch = a->ne[0] * a->ne[1];
    int64_t g0 = b->ne[0] ? a->ne[0] / b->ne[0] : 1, g1 = b->ne[1] ? a->ne[1] / b->ne[1] : 1;
    ocl_args g;
    ocl_args_begin(&g, r, k);
    ocl_arg_tensor(&g, a, NULL, true);
    ocl_arg_tensor(&g, b, NULL, false);
    ocl_arg_tensor(&g, o, NULL, false);
    ocl_arg_long4(&g, a->ne);
    ocl_arg_i64(&g, N);
    ocl_arg_i64(&g, g0 ? g0 : 1);
    ocl_arg_i64(&g, g1 ? g1 : 1);
    bst_status st = ocl_args_end(&g, name);
    if (st != BST_OK)
        return st;
    size_t global[3], local[3];
    if (gemv) {
        local[0] = GV_LANES;
        local[1] = GV_ROWS;
        local[2] = 1;
        global[0] = GV_LANES;
        global[1] = ocl_round_up(r, N, GV_ROWS);
    } else {
        local[0] = TW;
        local[1] = TW;
        local[2] = 1;
        global[0] = ocl_round_up(r, (N + TL - 1) / TL * TW, TW);
        global[1] = ocl_round_up(r, (M + TL - 1) / TL * TW, TW);
    }
    global[2] = batch > 0 ? (size_t)batch : 0;
    return ocl_enqueue(r, k, name, 3, global, local);
}

static const ocl_op_impl op_matmul = {"matmul", 2, 2, false, check_matmul, variants_matmul,
                                      fam_matmul, prepare_matmul, launch_matmul};

/* --- the op table --- */

extern const ocl_op_impl ocl_op_add, ocl_op_mul, ocl_op_scale, ocl_op_silu, ocl_op_gelu,
    ocl_op_cast, ocl_op_quantize, ocl_op_cont, ocl_op_concat, ocl_op_view, ocl_op_reshape,
    ocl_op_permute, ocl_op_transpose, ocl_op_get_rows, ocl_op_set_rows, ocl_op_argmax,
    ocl_op_rms_norm, ocl_op_layer_norm, ocl_op_softmax, ocl_op_rope, ocl_op_attention;

const ocl_op_impl *ocl_op_of(uint32_t op)
{
    switch (op) {
    case BST_OP_GET_ROWS: return &ocl_op_get_rows;
    case BST_OP_ADD: return &ocl_op_add;
    case BST_OP_MUL: return &ocl_op_mul;
    case BST_OP_SCALE: return &ocl_op_scale;
    case BST_OP_MATMUL: return &op_matmul;
    case BST_OP_RMS_NORM: return &ocl_op_rms_norm;
    case BST_OP_LAYER_NORM: return &ocl_op_layer_norm;
    case BST_OP_ROPE: return &ocl_op_rope;
    case BST_OP_SOFTMAX: return &ocl_op_softmax;
    case BST_OP_SILU: return &ocl_op_silu;
    case BST_OP_GELU: return &ocl_op_gelu;
    case BST_OP_CAST: return &ocl_op_cast;
    case BST_OP_QUANTIZE: return &ocl_op_quantize;
    case BST_OP_CONCAT: return &ocl_op_concat;
    case BST_OP_CONT: return &ocl_op_cont;
    case BST_OP_VIEW: return &ocl_op_view;
    case BST_OP_RESHAPE: return &ocl_op_reshape;
    case BST_OP_PERMUTE: return &ocl_op_permute;
    case BST_OP_TRANSPOSE: return &ocl_op_transpose;
    case BST_OP_ARGMAX: return &ocl_op_argmax;
    case BST_OP_SET_ROWS: return &ocl_op_set_rows;
    case BST_OP_ATTENTION: return &ocl_op_attention;
    default: return NULL; /* sources, other high-level ops and ids this build does not know */
    }
}
