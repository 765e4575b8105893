/*
 * tools/conformance/backend_ops_cases.c — the op conformance cases: every primitive op x dtype x
 * shape x layout, each with its expected output from the double-precision oracle (oracle.c).
 * Shared by tests/test_backend_ops.c (one CUnit test per family) and `bastion conformance` (one
 * worker process running the same cases against one plugin). The bounds each case is held to
 * are listed in tests/test_backend_ops.c's header comment.
 *
 * Determinism matters: a family re-seeds its generator at its start and the harness numbers
 * cases in the order they are built, so two processes building the same families get the same
 * case numbers (the conformance worker relies on it to resume after a crash).
 */
#include "backend_ops_harness.h"
#include "oracle.h"

#include <bastion/graph.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bo_rng rng;

static const bst_dtype PLAIN[] = {BST_DTYPE_F32, BST_DTYPE_F16, BST_DTYPE_BF16};
static const bst_dtype QUANT[] = {BST_DTYPE_Q4_0, BST_DTYPE_Q4_1, BST_DTYPE_Q5_0,
                                  BST_DTYPE_Q5_1, BST_DTYPE_Q8_0};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Input layouts: how a view's strides differ from a contiguous tensor. */
typedef enum lay {
    L_CONTIG,
    L_TRANSPOSED, /* the two innermost dims swapped (element stride != element size) */
    L_PADDED,     /* rows padded: row stride larger than the row */
    L_PERMUTED    /* the two dims outside the innermost swapped, rows padded too */
} lay;

static const char *lay_name(lay l)
{
    switch (l) {
    case L_TRANSPOSED: return "transposed view";
    case L_PADDED: return "padded rows";
    case L_PERMUTED: return "permuted view";
    default: return NULL;
    }
}

static void begin(const char *family, uint64_t seed)
{
    bo_family_begin(family);
    bo_rng_seed(&rng, seed);
}

static int g_result;
static void end(void) { g_result = bo_family_end(); }

static void describe(bo_case *c, const char *name, const bo_tensor *t, const char *extra)
{
    bo_case_what(c, "%s=%s[", name, bst_dtype_name(t->dtype));
    for (uint32_t d = 0; d < t->rank; d++) {
        bo_case_what(c, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        if (t->sym[d])
            bo_case_what(c, "(%s=%lld)", t->sym[d] == BST_SYM_N_TOKENS ? "n_tokens" : "n_kv",
                         (long long)bo_eff_dim(c, t, d));
    }
    bo_case_what(c, "]%s%s ", extra ? " " : "", extra ? extra : "");
}

static void view(bo_tensor *t, bst_dtype dt, uint32_t rank, const int64_t *shape, lay l)
{
    static const uint32_t tr2[] = {1, 0}, tr3[] = {0, 2, 1}, tr4[] = {0, 1, 3, 2};
    static const uint32_t pm3[] = {1, 0, 2}, pm4[] = {0, 2, 1, 3};
    bool block = bst_dtype_block_size(dt) > 1;
    const uint32_t *perm = NULL;
    int64_t pad = 0;
    if (l == L_TRANSPOSED && rank >= 2 && !block)
        perm = rank == 2 ? tr2 : rank == 3 ? tr3 : tr4;
    if (l == L_PERMUTED && rank >= 3)
        perm = rank == 3 ? pm3 : pm4;
    if (l == L_PADDED || l == L_PERMUTED)
        pad = block ? 1 : 3;
    bo_tensor_view(t, dt, rank, shape, perm, pad);
}

/* Adds an input view filled with uniform values in [lo, hi). */
static bo_tensor *input(bo_case *c, const char *name, bst_dtype dt, uint32_t rank,
                        const int64_t *shape, lay l, double lo, double hi)
{
    bo_tensor *t = bo_case_input(c);
    view(t, dt, rank, shape, l);
    bo_tensor_fill(t, &rng, lo, hi);
    describe(c, name, t, lay_name(l));
    return t;
}

static bo_tensor *ids_input(bo_case *c, const char *name, uint32_t rank, const int64_t *shape,
                            const int32_t *ids)
{
    bo_tensor *t = bo_case_input(c);
    bo_tensor_contig(t, BST_DTYPE_I32, rank, shape);
    bo_tensor_set_ids(t, ids);
    describe(c, name, t, NULL);
    return t;
}

/* Marks dim `d` of t symbolic (its shape entry stays the bound). */
static void sym(bo_tensor *t, uint32_t d, bst_sym s) { t->sym[d] = s; }

/* Runs a case built with all inputs; `eff_ref` is the oracle's output in the effective shape. */
static void run(bo_case *c, double *eff_ref)
{
    describe(c, "out", &c->out, NULL);
    bo_case_set_ref(c, eff_ref);
    free(eff_ref);
    (void)bo_run(c);
}

/* The oracle's output in the output's effective shape; NULL (with the harness's pending error)
 * when it cannot be allocated or the case already failed to build. Each builder calls the
 * oracle only while bo_ok(): then every value array it reads exists. */
static double *alloc_out(const bo_case *c)
{
    if (!bo_ok())
        return NULL;
    int64_t n = 1;
    for (uint32_t d = 0; d < c->out.rank; d++)
        n *= bo_eff_dim(c, &c->out, d);
    return bo_alloc((size_t)n, sizeof(double), "the oracle's output");
}

/* Input values built here before they are stored (bo_tensor_set). */
static float *alloc_values(int64_t n)
{
    return bo_ok() ? bo_alloc((size_t)n, sizeof(float), "a tensor's values") : NULL;
}

/* ---- GET_ROWS ------------------------------------------------------------------------------ */

static void case_get_rows(bst_dtype dt, int64_t R, int64_t C, uint32_t ids_rank,
                          const int64_t *ids_shape, lay l, int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_GET_ROWS, bst_dtype_name(dt));
    int64_t tshape[2] = {R, C};
    bo_tensor *table = input(&c, "table", dt, 2, tshape, l, -2.0, 2.0);
    int64_t n = oracle_numel(ids_rank, ids_shape);
    int32_t ids[64];
    for (int64_t i = 0; i < n; i++)
        ids[i] = bo_rng_int(&rng, 0, (int32_t)R - 1);
    ids[0] = (int32_t)R - 1; /* both ends of the table */
    if (n > 2)
        ids[n - 1] = 0;
    if (n > 3)
        ids[1] = ids[2]; /* a repeated id */
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *it = bo_case_input(&c);
    bo_tensor_contig(it, BST_DTYPE_I32, ids_rank, ids_shape);
    bo_tensor_set_ids(it, ids);
    int64_t oshape[BST_MAX_DIMS];
    memcpy(oshape, ids_shape, ids_rank * sizeof(int64_t));
    oshape[ids_rank] = C;
    bo_case_output(&c, BST_DTYPE_F32, ids_rank + 1, oshape);
    if (n_tokens) {
        sym(it, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    describe(&c, "ids", it, NULL);
    int64_t eff[BST_MAX_DIMS];
    int32_t *eids = bo_eff_ids(&c, it, eff);
    double *out = alloc_out(&c);
    if (bo_ok())
        oracle_get_rows(table->val, R, C, eids, oracle_numel(ids_rank, eff), out);
    free(eids);
    run(&c, out);
}

static void fam_get_rows(void)
{
    begin("get_rows", 1);
    const int64_t n1[] = {1}, n5[] = {5}, n17[] = {17}, n34[] = {3, 4}, n8[] = {8};
    static const int64_t plain_cols[] = {1, 3, 17, 65};
    for (size_t d = 0; d < COUNT(PLAIN); d++) {
        for (size_t k = 0; k < COUNT(plain_cols); k++)
            case_get_rows(PLAIN[d], 7, plain_cols[k], 1, n5, L_CONTIG, 0);
        case_get_rows(PLAIN[d], 33, 17, 1, n17, L_CONTIG, 0);
        case_get_rows(PLAIN[d], 1, 3, 1, n1, L_CONTIG, 0);
        case_get_rows(PLAIN[d], 7, 17, 2, n34, L_CONTIG, 0);
        case_get_rows(PLAIN[d], 7, 33, 1, n5, L_PADDED, 0);
        case_get_rows(PLAIN[d], 7, 17, 1, n8, L_CONTIG, 3); /* ids[n_tokens] */
    }
    static const int64_t quant_cols[] = {32, 64, 96};
    for (size_t d = 0; d < COUNT(QUANT); d++) {
        for (size_t k = 0; k < COUNT(quant_cols); k++)
            case_get_rows(QUANT[d], 9, quant_cols[k], 1, n5, L_CONTIG, 0);
        case_get_rows(QUANT[d], 9, 64, 2, n34, L_CONTIG, 0);
        case_get_rows(QUANT[d], 9, 64, 1, n5, L_PADDED, 0);
        case_get_rows(QUANT[d], 9, 32, 1, n8, L_CONTIG, 2);
    }
    const int64_t n7[] = {7}; /* an embedding table of the default model's width */
    case_get_rows(BST_DTYPE_Q8_0, 1000, 576, 1, n7, L_CONTIG, 0);
    case_get_rows(BST_DTYPE_F32, 1000, 576, 1, n7, L_CONTIG, 0);
    end();
}

/* ---- ADD / MUL ----------------------------------------------------------------------------- */

static void case_binary(bst_op op, bst_dtype da, bst_dtype db, uint32_t ra, const int64_t *sa,
                        uint32_t rb, const int64_t *sb, lay la, lay lb, int64_t n_tokens)
{
    char label[32];
    if (da == db)
        snprintf(label, sizeof label, "%s", bst_dtype_name(da));
    else
        snprintf(label, sizeof label, "%s,%s", bst_dtype_name(da), bst_dtype_name(db));
    bo_case c;
    bo_case_init(&c, op, label);
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *a = input(&c, "a", da, ra, sa, la, -2.0, 2.0);
    bo_tensor *b = input(&c, "b", db, rb, sb, lb, -2.0, 2.0);
    bo_case_output(&c, BST_DTYPE_F32, ra, sa);
    if (n_tokens) {
        sym(a, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
        if (rb == ra && sb[0] == sa[0])
            sym(b, 0, BST_SYM_N_TOKENS);
    }
    int64_t ea[BST_MAX_DIMS], eb[BST_MAX_DIMS];
    double *av = bo_eff_values(&c, a, ea), *bv = bo_eff_values(&c, b, eb);
    double *out = alloc_out(&c);
    if (bo_ok() && op == BST_OP_ADD)
        oracle_add(av, ra, ea, bv, rb, eb, out);
    else if (bo_ok())
        oracle_mul(av, ra, ea, bv, rb, eb, out);
    free(av);
    free(bv);
    run(&c, out);
}

static void fam_add_mul(void)
{
    begin("add_mul", 2);
    static const bst_op ops[] = {BST_OP_ADD, BST_OP_MUL};
    const bst_dtype F32 = BST_DTYPE_F32;
    for (size_t o = 0; o < COUNT(ops); o++) {
        bst_op op = ops[o];
        const int64_t s1[] = {1}, s3[] = {3}, s17x33[] = {17, 33}, s33[] = {33};
        const int64_t s1x33[] = {1, 33}, s17x1[] = {17, 1}, s4x5x65[] = {4, 5, 65};
        const int64_t s65[] = {65}, s4x1x65[] = {4, 1, 65}, s5x1[] = {5, 1}, s111[] = {1, 1, 1};
        const int64_t s4d[] = {2, 3, 4, 17}, s4b1[] = {3, 1, 17}, s4b2[] = {2, 1, 4, 1};
        const int64_t s8x33[] = {8, 33}, s5x65[] = {5, 65};
        case_binary(op, F32, F32, 1, s1, 1, s1, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 1, s3, 1, s3, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 1, s3, 1, s1, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 2, s17x33, 2, s17x33, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 2, s17x33, 1, s33, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 2, s17x33, 2, s1x33, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 2, s17x33, 2, s17x1, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 3, s4x5x65, 3, s4x5x65, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 3, s4x5x65, 1, s65, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 3, s4x5x65, 3, s4x1x65, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 3, s4x5x65, 2, s5x1, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 3, s4x5x65, 3, s111, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 4, s4d, 4, s4d, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 4, s4d, 3, s4b1, L_CONTIG, L_CONTIG, 0);
        case_binary(op, F32, F32, 4, s4d, 4, s4b2, L_CONTIG, L_CONTIG, 0);
        /* non-contiguous operands */
        case_binary(op, F32, F32, 2, s17x33, 1, s33, L_TRANSPOSED, L_CONTIG, 0);
        case_binary(op, F32, F32, 2, s17x33, 2, s17x33, L_PADDED, L_TRANSPOSED, 0);
        case_binary(op, F32, F32, 3, s4x5x65, 3, s4x5x65, L_PERMUTED, L_PADDED, 0);
        case_binary(op, F32, F32, 4, s4d, 4, s4d, L_TRANSPOSED, L_PERMUTED, 0);
        /* f16 / bf16 inputs (output f32) */
        for (size_t d = 1; d < COUNT(PLAIN); d++) {
            case_binary(op, PLAIN[d], PLAIN[d], 2, s17x33, 2, s17x33, L_CONTIG, L_CONTIG, 0);
            case_binary(op, PLAIN[d], PLAIN[d], 2, s17x33, 1, s33, L_CONTIG, L_CONTIG, 0);
            case_binary(op, PLAIN[d], PLAIN[d], 2, s17x33, 2, s17x1, L_TRANSPOSED, L_CONTIG, 0);
            case_binary(op, F32, PLAIN[d], 2, s5x65, 1, s65, L_CONTIG, L_CONTIG, 0);
            case_binary(op, PLAIN[d], F32, 2, s5x65, 2, s5x65, L_PADDED, L_CONTIG, 0);
        }
        /* a[n_tokens, 33] */
        case_binary(op, F32, F32, 2, s8x33, 1, s33, L_CONTIG, L_CONTIG, 3);
        case_binary(op, F32, F32, 2, s8x33, 2, s8x33, L_PADDED, L_CONTIG, 5);
    }
    end();
}

/* ---- SCALE --------------------------------------------------------------------------------- */

static void case_scale(bst_dtype dt, uint32_t rank, const int64_t *shape, double scale, lay l,
                       int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_SCALE, bst_dtype_name(dt));
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = input(&c, "x", dt, rank, shape, l, -3.0, 3.0);
    bo_case_attr_float(&c, BST_ATTR_SCALE, scale);
    bo_case_what(&c, "scale=%g ", scale);
    bo_case_output(&c, BST_DTYPE_F32, rank, shape);
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    int64_t e[BST_MAX_DIMS];
    double *xv = bo_eff_values(&c, x, e);
    double *out = alloc_out(&c);
    if (bo_ok())
        oracle_scale(xv, oracle_numel(rank, e), scale, out);
    free(xv);
    run(&c, out);
}

static void fam_scale(void)
{
    begin("scale", 3);
    const int64_t s1[] = {1}, s17[] = {17}, s5x33[] = {5, 33}, s3d[] = {3, 4, 65};
    const int64_t s17x33[] = {17, 33}, s5x65[] = {5, 65}, s6x17[] = {6, 17};
    const bst_dtype F32 = BST_DTYPE_F32;
    case_scale(F32, 1, s1, 0.5, L_CONTIG, 0);
    case_scale(F32, 1, s17, -1.25, L_CONTIG, 0);
    case_scale(F32, 2, s5x33, 3.0, L_CONTIG, 0);
    case_scale(F32, 3, s3d, 0.125, L_CONTIG, 0);
    case_scale(F32, 2, s5x33, 0.0, L_CONTIG, 0);
    case_scale(F32, 2, s17x33, 0.7, L_TRANSPOSED, 0);
    case_scale(F32, 2, s5x65, -2.0, L_PADDED, 0);
    case_scale(F32, 3, s3d, 1.5, L_PERMUTED, 0);
    case_scale(BST_DTYPE_F16, 2, s5x33, 0.25, L_CONTIG, 0);
    case_scale(BST_DTYPE_BF16, 2, s5x33, 4.0, L_CONTIG, 0);
    case_scale(F32, 2, s6x17, 0.9, L_CONTIG, 4);
    end();
}

/* ---- MATMUL -------------------------------------------------------------------------------- */

typedef enum mm_sym { MM_NONE, MM_TOKENS, MM_ATTENTION } mm_sym;

/* a f32 [ba?, M, K] x b [bb?, N, K]; ba/bb == 0 means no batch dim. */
static void case_matmul(bst_dtype db, int64_t ba, int64_t bb, int64_t M, int64_t N, int64_t K,
                        lay la, lay lb, mm_sym sm, int64_t eff_m, int64_t eff_n)
{
    bo_case c;
    bo_case_init(&c, BST_OP_MATMUL, bst_dtype_name(db));
    c.tol = c.cpu_tol = 5e-4;
    int64_t sa[3], sb[3], so[3];
    uint32_t ra = 0, rb = 0;
    if (ba)
        sa[ra++] = ba;
    sa[ra++] = M;
    sa[ra++] = K;
    if (bb)
        sb[rb++] = bb;
    sb[rb++] = N;
    sb[rb++] = K;
    memcpy(so, sa, sizeof so);
    so[ra - 1] = N;
    if (sm != MM_NONE)
        c.n_tokens = eff_m;
    if (sm == MM_ATTENTION)
        c.n_kv = eff_n;
    bo_tensor *a = input(&c, "a", BST_DTYPE_F32, ra, sa, la, -1.0, 1.0);
    bo_tensor *b = input(&c, "b", db, rb, sb, lb, -1.0, 1.0);
    bo_case_output(&c, BST_DTYPE_F32, ra, so);
    if (sm != MM_NONE) {
        sym(a, ra - 2, BST_SYM_N_TOKENS);
        sym(&c.out, ra - 2, BST_SYM_N_TOKENS);
    }
    if (sm == MM_ATTENTION) {
        sym(b, rb - 2, BST_SYM_N_KV);
        sym(&c.out, ra - 1, BST_SYM_N_KV);
    }
    int64_t ea[3], eb[3];
    double *av = bo_eff_values(&c, a, ea), *bv = bo_eff_values(&c, b, eb);
    double *out = alloc_out(&c);
    if (bo_ok())
        oracle_matmul(av, ba ? ba : 1, ea[ra - 2], K, bv, bb ? bb : 1, eb[rb - 2], out);
    free(av);
    free(bv);
    run(&c, out);
}

static void fam_matmul(void)
{
    begin("matmul", 4);
    static const int64_t Ms[] = {1, 3, 17};
    static const int64_t plain_kn[][2] = {{1, 1}, {17, 3}, {64, 33}, {65, 17}};
    static const int64_t quant_kn[][2] = {{32, 1}, {64, 17}, {96, 33}, {256, 5}};
    for (size_t d = 0; d < COUNT(PLAIN); d++)
        for (size_t m = 0; m < COUNT(Ms); m++)
            for (size_t k = 0; k < COUNT(plain_kn); k++)
                case_matmul(PLAIN[d], 0, 0, Ms[m], plain_kn[k][1], plain_kn[k][0], L_CONTIG,
                            L_CONTIG, MM_NONE, 0, 0);
    for (size_t d = 0; d < COUNT(QUANT); d++)
        for (size_t m = 0; m < COUNT(Ms); m++)
            for (size_t k = 0; k < COUNT(quant_kn); k++)
                case_matmul(QUANT[d], 0, 0, Ms[m], quant_kn[k][1], quant_kn[k][0], L_CONTIG,
                            L_CONTIG, MM_NONE, 0, 0);
    /* batched: grouped broadcast (6 over 2, as GQA) and equal batches; a weight shared by all */
    bst_dtype all[COUNT(PLAIN) + COUNT(QUANT)];
    memcpy(all, PLAIN, sizeof PLAIN);
    memcpy(all + COUNT(PLAIN), QUANT, sizeof QUANT);
    for (size_t d = 0; d < COUNT(all); d++) {
        case_matmul(all[d], 6, 2, 3, 5, 64, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
        case_matmul(all[d], 6, 6, 1, 5, 64, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
        case_matmul(all[d], 2, 0, 3, 17, 64, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    }
    /* non-contiguous a and b */
    const bst_dtype F32 = BST_DTYPE_F32, F16 = BST_DTYPE_F16;
    case_matmul(F32, 0, 0, 3, 17, 64, L_TRANSPOSED, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(F32, 0, 0, 17, 5, 33, L_PADDED, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 17, 33, 64, L_PADDED, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q8_0, 0, 0, 3, 33, 64, L_TRANSPOSED, L_PADDED, MM_NONE, 0, 0);
    case_matmul(F16, 6, 2, 3, 9, 32, L_PERMUTED, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(F16, 6, 2, 3, 9, 32, L_PERMUTED, L_PERMUTED, MM_NONE, 0, 0); /* k cache view */
    case_matmul(F32, 6, 2, 3, 9, 32, L_CONTIG, L_TRANSPOSED, MM_NONE, 0, 0); /* v^T view */
    case_matmul(F16, 4, 4, 5, 16, 33, L_CONTIG, L_TRANSPOSED, MM_NONE, 0, 0);
    /* the default model's shapes: attention and FFN projections, a decode step and a prompt */
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 1, 1536, 576, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 7, 576, 1536, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q8_0, 0, 0, 3, 1000, 576, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(F32, 0, 0, 5, 192, 576, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    /* 16-bit weights at a decode step (the CPU's float GEMV): whole 64-element steps, and a
     * K with every tail, for 1 and for 5 activation rows (two passes over the weight) */
    case_matmul(F16, 0, 0, 1, 100, 576, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_BF16, 0, 0, 5, 40, 100, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(F16, 0, 0, 7, 33, 100, L_CONTIG, L_PADDED, MM_NONE, 0, 0);
    /* ... and at a prompt's worth of rows (the CPU's packed GEMM widens their rows) */
    case_matmul(F16, 0, 0, 40, 33, 100, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_BF16, 0, 0, 33, 17, 65, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(F32, 9, 3, 5, 37, 64, L_PERMUTED, L_PERMUTED, MM_NONE, 0, 0);
    /* symbolic: a[n_tokens, K] x weight; scores[H, n_tokens, n_kv] = q . k^T */
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 8, 17, 64, L_CONTIG, L_CONTIG, MM_TOKENS, 3, 0);
    case_matmul(F32, 0, 0, 8, 17, 33, L_PADDED, L_CONTIG, MM_TOKENS, 5, 0);
    case_matmul(F32, 4, 2, 6, 16, 32, L_CONTIG, L_CONTIG, MM_ATTENTION, 2, 9);
    case_matmul(F16, 4, 2, 6, 16, 32, L_PERMUTED, L_PERMUTED, MM_ATTENTION, 3, 11);
    /* packed GEMM tiling edges (CPU gemm_* variants: 14x32, 6x16 and 4x8 tiles, KC = 256 deep
     * slices, a 8-row switch to the GEMV path): M, N, K off every tile size, every M from 1 to
     * 17, K over several slices with a partial last one */
    for (int64_t m = 1; m <= 17; m++)
        case_matmul(m % 2 ? F32 : BST_DTYPE_Q4_0, 0, 0, m, 33, 64, L_CONTIG, L_CONTIG, MM_NONE,
                    0, 0);
    case_matmul(F32, 0, 0, 29, 71, 600, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_BF16, 0, 0, 15, 47, 513, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(F16, 0, 0, 9, 33, 257, L_PADDED, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 43, 97, 800, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q8_0, 0, 0, 30, 65, 1024, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_0, 2, 0, 7, 40, 288, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 64, 100, 64, L_CONTIG, L_CONTIG, MM_TOKENS, 23, 0);
    /* quantized weights take the packed path only from 48 rows (below, the int8 GEMV) */
    case_matmul(BST_DTYPE_Q4_0, 0, 0, 48, 33, 64, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 51, 97, 800, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q8_0, 0, 0, 62, 65, 1024, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    /* one activation row (the AVX-512 loops take weight rows four at a time and blocks in
     * pairs): odd block counts, row counts off the group of four */
    case_matmul(BST_DTYPE_Q4_1, 0, 0, 1, 37, 800, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q8_0, 0, 0, 1, 10, 96, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    case_matmul(BST_DTYPE_Q4_0, 0, 0, 1, 6, 160, L_CONTIG, L_CONTIG, MM_NONE, 0, 0);
    end();
}

/* ---- RMS_NORM / LAYER_NORM ----------------------------------------------------------------- */

static void case_norm(bst_op op, bst_dtype dt, uint32_t rank, const int64_t *shape, double eps,
                      lay l, int64_t n_tokens, double offset)
{
    bo_case c;
    bo_case_init(&c, op, bst_dtype_name(dt));
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = input(&c, "x", dt, rank, shape, l, offset - 2.0, offset + 2.0);
    bo_case_attr_float(&c, BST_ATTR_EPS, eps);
    bo_case_what(&c, "eps=%g ", eps);
    bo_case_output(&c, BST_DTYPE_F32, rank, shape);
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    int64_t e[BST_MAX_DIMS];
    double *xv = bo_eff_values(&c, x, e);
    double *out = alloc_out(&c);
    if (bo_ok()) {
        int64_t cols = e[rank - 1], rows = oracle_numel(rank, e) / cols;
        if (op == BST_OP_RMS_NORM)
            oracle_rms_norm(xv, rows, cols, eps, out);
        else
            oracle_layer_norm(xv, rows, cols, eps, out);
    }
    free(xv);
    run(&c, out);
}

static void norm_cases(bst_op op)
{
    const int64_t s1[] = {1}, s17[] = {17}, s3x33[] = {3, 33}, s3d[] = {2, 5, 65};
    const int64_t s576[] = {4, 576}, s33x17[] = {33, 17}, s5x65[] = {5, 65}, s8x33[] = {8, 33};
    const int64_t s4x64[] = {4, 64};
    const bst_dtype F32 = BST_DTYPE_F32;
    case_norm(op, F32, 1, s1, 1e-5, L_CONTIG, 0, 0.0);
    case_norm(op, F32, 1, s17, 1e-5, L_CONTIG, 0, 0.0);
    case_norm(op, F32, 2, s3x33, 1e-6, L_CONTIG, 0, 0.0);
    case_norm(op, F32, 3, s3d, 1e-5, L_CONTIG, 0, 0.0);
    case_norm(op, F32, 2, s576, 1e-5, L_CONTIG, 0, 0.0);
    case_norm(op, F32, 2, s3x33, 0.5, L_CONTIG, 0, 0.0); /* eps large enough to matter */
    case_norm(op, F32, 2, s4x64, 1e-5, L_CONTIG, 0, 100.0); /* rows far from zero mean */
    case_norm(op, F32, 2, s33x17, 1e-5, L_TRANSPOSED, 0, 0.0);
    case_norm(op, F32, 2, s5x65, 1e-5, L_PADDED, 0, 0.0);
    case_norm(op, F32, 3, s3d, 1e-6, L_PERMUTED, 0, 0.0);
    case_norm(op, BST_DTYPE_F16, 2, s3x33, 1e-5, L_CONTIG, 0, 0.0);
    case_norm(op, BST_DTYPE_BF16, 2, s3x33, 1e-5, L_CONTIG, 0, 0.0);
    case_norm(op, F32, 2, s8x33, 1e-5, L_CONTIG, 5, 0.0);
}

static void fam_rms_norm(void)
{
    begin("rms_norm", 5);
    norm_cases(BST_OP_RMS_NORM);
    end();
}

static void fam_layer_norm(void)
{
    begin("layer_norm", 6);
    norm_cases(BST_OP_LAYER_NORM);
    end();
}

/* ---- ROPE ---------------------------------------------------------------------------------- */

static void case_rope(int mode, int64_t T, int64_t H, int64_t D, int64_t dims, double theta,
                      int32_t max_pos, lay l, int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_ROPE, "f32");
    if (n_tokens)
        c.n_tokens = n_tokens;
    int64_t sx[3] = {T, H, D};
    bo_tensor *x = input(&c, "x", BST_DTYPE_F32, 3, sx, l, -1.0, 1.0);
    int32_t pos[64];
    for (int64_t t = 0; t < T; t++)
        pos[t] = bo_rng_int(&rng, 0, max_pos);
    pos[0] = max_pos; /* the largest position is always there */
    if (T > 1)
        pos[T - 1] = 0;
    int64_t sp[1] = {T};
    bo_tensor *p = bo_case_input(&c);
    bo_tensor_contig(p, BST_DTYPE_I32, 1, sp);
    bo_tensor_set_ids(p, pos);
    bo_case_attr_int(&c, BST_ATTR_ROPE_MODE, mode);
    bo_case_attr_float(&c, BST_ATTR_ROPE_THETA, theta);
    bo_case_attr_int(&c, BST_ATTR_ROPE_DIMS, dims);
    bo_case_what(&c, "mode=%d theta=%g dims=%lld max_pos=%d ", mode, theta, (long long)dims,
                 (int)max_pos);
    bo_case_output(&c, BST_DTYPE_F32, 3, sx);
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(p, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    describe(&c, "pos", p, NULL);
    int64_t e[3], ep[1];
    double *xv = bo_eff_values(&c, x, e);
    int32_t *pv = bo_eff_ids(&c, p, ep);
    double *out = alloc_out(&c);
    if (bo_ok())
        oracle_rope(xv, e[0], H, D, pv, mode, theta, dims, out);
    free(xv);
    free(pv);
    run(&c, out);
}

static void fam_rope(void)
{
    begin("rope", 7);
    static const int modes[] = {0, 2};
    static const double thetas[] = {10000.0, 100000.0};
    /* T, H, D, dims */
    static const int64_t shapes[][4] = {
        {1, 1, 2, 2}, {3, 2, 64, 64}, {5, 3, 64, 32}, {2, 9, 128, 128}, {4, 1, 10, 6}};
    static const int32_t max_pos[] = {7, 4000};
    for (size_t m = 0; m < COUNT(modes); m++)
        for (size_t t = 0; t < COUNT(thetas); t++)
            for (size_t s = 0; s < COUNT(shapes); s++)
                for (size_t p = 0; p < COUNT(max_pos); p++)
                    case_rope(modes[m], shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
                              thetas[t], max_pos[p], L_CONTIG, 0);
    for (size_t m = 0; m < COUNT(modes); m++) {
        case_rope(modes[m], 5, 3, 64, 64, 10000.0, 100, L_PERMUTED, 0);
        case_rope(modes[m], 3, 2, 64, 48, 100000.0, 4000, L_PADDED, 0);
        case_rope(modes[m], 6, 2, 64, 64, 100000.0, 4000, L_CONTIG, 2);
        case_rope(modes[m], 2, 3, 64, 64, 10000.0, 32767, L_CONTIG, 0);
    }
    end();
}

/* ---- SOFTMAX ------------------------------------------------------------------------------- */

typedef enum mask_kind { M_NONE, M_RANDOM, M_CAUSAL } mask_kind;

/* mask values: M_RANDOM gives finite values with ~25% -inf and its row `dead` fully removed;
 * M_CAUSAL removes positions j > i + (cols - rows) (the newest row sees everything). */
static void mask_values(float *v, int64_t rows, int64_t cols, mask_kind mk, int64_t dead)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            float x;
            if (mk == M_CAUSAL)
                x = j > r + (cols - rows) ? -INFINITY : 0.0f;
            else
                x = bo_rng_int(&rng, 0, 3) == 0 ? -INFINITY
                                                : (float)bo_rng_uniform(&rng, -2.0, 0.5);
            if (r == dead)
                x = -INFINITY;
            v[r * cols + j] = x;
        }
}

static void case_softmax(uint32_t rank, const int64_t *sx, mask_kind mk, uint32_t mrank,
                         const int64_t *sm, double scale, lay l, double range, int64_t dead,
                         int64_t n_tokens, int64_t n_kv)
{
    bo_case c;
    bo_case_init(&c, BST_OP_SOFTMAX, mk == M_NONE ? "f32" : "f32+mask");
    if (n_tokens)
        c.n_tokens = n_tokens;
    if (n_kv)
        c.n_kv = n_kv;
    bo_tensor *x = input(&c, "x", BST_DTYPE_F32, rank, sx, l, -range, range);
    bo_tensor *m = NULL;
    if (mk != M_NONE) {
        m = bo_case_input(&c);
        bo_tensor_contig(m, BST_DTYPE_F32, mrank, sm);
        int64_t cols = sm[mrank - 1], rows = oracle_numel(mrank, sm) / cols;
        float *mv = alloc_values(rows * cols);
        if (mv) {
            mask_values(mv, rows, cols, mk, dead);
            bo_tensor_set(m, mv);
        }
        free(mv);
    }
    bo_case_attr_float(&c, BST_ATTR_SCALE, scale);
    bo_case_what(&c, "scale=%g range=%g dead_row=%lld ", scale, range, (long long)dead);
    bo_case_output(&c, BST_DTYPE_F32, rank, sx);
    if (n_tokens) { /* x[..., n_tokens, n_kv?], mask[n_tokens, n_kv?] */
        sym(x, rank - 2, BST_SYM_N_TOKENS);
        sym(&c.out, rank - 2, BST_SYM_N_TOKENS);
        if (m)
            sym(m, mrank - 2, BST_SYM_N_TOKENS);
    }
    if (n_kv) {
        sym(x, rank - 1, BST_SYM_N_KV);
        sym(&c.out, rank - 1, BST_SYM_N_KV);
        if (m)
            sym(m, mrank - 1, BST_SYM_N_KV);
    }
    if (m)
        describe(&c, mk == M_CAUSAL ? "causal mask" : "mask", m, NULL);
    int64_t ex[BST_MAX_DIMS] = {0}, em[BST_MAX_DIMS] = {0};
    double *xv = bo_eff_values(&c, x, ex);
    double *mv = m ? bo_eff_values(&c, m, em) : NULL;
    double *out = alloc_out(&c);
    if (bo_ok())
        oracle_softmax(xv, rank, ex, mv, mrank, em, scale, out);
    free(xv);
    free(mv);
    run(&c, out);
}

static void fam_softmax(void)
{
    begin("softmax", 8);
    const int64_t s11[] = {1, 1}, s3x17[] = {3, 17}, s5x65[] = {5, 65}, s2x256[] = {2, 256};
    const int64_t s4x33[] = {4, 33}, s3d[] = {3, 5, 17}, s5x17[] = {5, 17}, s1x17[] = {1, 17};
    const int64_t s4x17[] = {4, 17}, s17x9[] = {17, 9}, s6x17[] = {6, 17};
    const int64_t satt[] = {2, 5, 16}, smatt[] = {5, 16}, s1[] = {1}, s3[] = {3};
    /* without mask */
    case_softmax(2, s11, M_NONE, 0, NULL, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(1, s1, M_NONE, 0, NULL, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(1, s3, M_NONE, 0, NULL, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(2, s3x17, M_NONE, 0, NULL, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(2, s5x65, M_NONE, 0, NULL, 0.125, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(2, s2x256, M_NONE, 0, NULL, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(2, s3x17, M_NONE, 0, NULL, 1.0, L_CONTIG, 100.0, -1, 0, 0); /* exp overflow */
    case_softmax(3, s3d, M_NONE, 0, NULL, 2.0, L_PERMUTED, 5.0, -1, 0, 0);
    case_softmax(2, s17x9, M_NONE, 0, NULL, 1.0, L_TRANSPOSED, 5.0, -1, 0, 0);
    /* with mask: same shape with a fully masked row, broadcast over heads, broadcast row */
    case_softmax(2, s4x33, M_RANDOM, 2, s4x33, 0.5, L_CONTIG, 5.0, 2, 0, 0);
    case_softmax(2, s4x33, M_RANDOM, 2, s4x33, 1.0, L_CONTIG, 100.0, -1, 0, 0);
    case_softmax(3, s3d, M_CAUSAL, 2, s5x17, 0.125, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(3, s3d, M_RANDOM, 2, s5x17, 1.0, L_CONTIG, 5.0, 4, 0, 0);
    case_softmax(2, s4x17, M_RANDOM, 2, s1x17, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(2, s4x17, M_RANDOM, 1, s1x17 + 1, 1.0, L_CONTIG, 5.0, -1, 0, 0);
    case_softmax(2, s5x65, M_RANDOM, 2, s5x65, 0.25, L_PADDED, 5.0, 0, 0, 0);
    case_softmax(3, s3d, M_CAUSAL, 2, s5x17, 1.0, L_TRANSPOSED, 5.0, -1, 0, 0);
    /* symbolic: x[n_tokens, 17]; scores[H, n_tokens, n_kv] with mask[n_tokens, n_kv] */
    case_softmax(2, s6x17, M_NONE, 0, NULL, 1.0, L_CONTIG, 5.0, -1, 4, 0);
    case_softmax(3, satt, M_CAUSAL, 2, smatt, 0.125, L_CONTIG, 5.0, -1, 2, 9);
    case_softmax(3, satt, M_RANDOM, 2, smatt, 1.0, L_PADDED, 5.0, 1, 3, 5);
    end();
}

/* ---- SILU / GELU --------------------------------------------------------------------------- */

static void case_unary(bst_op op, bst_dtype dt, uint32_t rank, const int64_t *shape, lay l,
                       int64_t n_tokens, double range)
{
    bo_case c;
    bo_case_init(&c, op, bst_dtype_name(dt));
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = input(&c, "x", dt, rank, shape, l, -range, range);
    bo_case_output(&c, BST_DTYPE_F32, rank, shape);
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    int64_t e[BST_MAX_DIMS];
    double *xv = bo_eff_values(&c, x, e);
    double *out = alloc_out(&c);
    if (bo_ok() && op == BST_OP_SILU)
        oracle_silu(xv, oracle_numel(rank, e), out);
    else if (bo_ok())
        oracle_gelu(xv, oracle_numel(rank, e), out);
    free(xv);
    run(&c, out);
}

static void fam_silu_gelu(void)
{
    begin("silu_gelu", 9);
    static const bst_op ops[] = {BST_OP_SILU, BST_OP_GELU};
    const int64_t s1[] = {1}, s17[] = {17}, s5x65[] = {5, 65}, s3d[] = {2, 3, 33};
    const int64_t s17x33[] = {17, 33}, s8x65[] = {8, 65}, s1536[] = {3, 1536};
    /* Mostly |x| <= 4, where the curve bends (outside it silu/gelu approach x or 0 and a wrong
     * formula hides under the NMSE of the large values); one wide case for the tails. */
    for (size_t o = 0; o < COUNT(ops); o++) {
        case_unary(ops[o], BST_DTYPE_F32, 1, s1, L_CONTIG, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 1, s17, L_CONTIG, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 2, s5x65, L_CONTIG, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 3, s3d, L_CONTIG, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 2, s1536, L_CONTIG, 0, 20.0);
        case_unary(ops[o], BST_DTYPE_F32, 2, s17x33, L_TRANSPOSED, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 2, s5x65, L_PADDED, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 3, s3d, L_PERMUTED, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F16, 2, s5x65, L_CONTIG, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_BF16, 2, s5x65, L_CONTIG, 0, 4.0);
        case_unary(ops[o], BST_DTYPE_F32, 2, s8x65, L_CONTIG, 3, 4.0);
    }
    end();
}

/* ---- CAST ---------------------------------------------------------------------------------- */

/* Values where rounding to f16/bf16 is delicate: overflow, ties, subnormals, signed zero. */
static const float cast_specials[] = {
    65504.0f, 65519.99f, 65520.0f, -65536.0f, 6.1035156e-05f, 6.0e-05f, 5.9604645e-08f,
    2.9802322e-08f, 4.4703484e-08f, 1e-7f, -0.0f, 0.0f,
    1.00048828125f,  /* 1 + 2^-11: f16 tie, to even (1.0) */
    1.00146484375f,  /* 1 + 3*2^-11: f16 tie, to even (up) */
    1.00390625f,     /* 1 + 2^-8: bf16 tie, to even (1.0) */
    1.01171875f,     /* 1 + 3*2^-8: bf16 tie, to even (up) */
    3.4e38f, -3.39e38f, 1e-39f, 1.17549435e-38f, 3.0e-45f, 123456.789f, -7.5e-3f};

static void case_cast(bst_dtype from, bst_dtype to, uint32_t rank, const int64_t *shape, lay l,
                      int64_t n_tokens, bool specials)
{
    char label[32];
    snprintf(label, sizeof label, "%s->%s", bst_dtype_name(from), bst_dtype_name(to));
    bo_case c;
    bo_case_init(&c, BST_OP_CAST, label);
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = bo_case_input(&c);
    view(x, from, rank, shape, l);
    int64_t n = oracle_numel(rank, shape);
    float *v = alloc_values(n);
    for (int64_t i = 0; v && i < n; i++)
        v[i] = (float)bo_rng_uniform(&rng, -4.0, 4.0);
    if (v && specials)
        for (size_t i = 0; i < COUNT(cast_specials) && (int64_t)i < n; i++)
            v[i] = cast_specials[i];
    bo_tensor_set(x, v);
    free(v);
    describe(&c, "x", x, lay_name(l));
    bo_case_attr_int(&c, BST_ATTR_DTYPE, to);
    bo_case_output(&c, to, rank, shape);
    if (to == BST_DTYPE_F32)
        c.metric = BO_EXACT; /* f16/bf16 values are exact in f32 */
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    /* The reference is the exact input value: the ULP metric rounds it to the output type. */
    run(&c, bo_eff_values(&c, x, NULL));
}

static void fam_cast(void)
{
    begin("cast", 10);
    static const bst_dtype pairs[][2] = {
        {BST_DTYPE_F32, BST_DTYPE_F16},  {BST_DTYPE_F32, BST_DTYPE_BF16},
        {BST_DTYPE_F16, BST_DTYPE_F32},  {BST_DTYPE_BF16, BST_DTYPE_F32},
        {BST_DTYPE_F16, BST_DTYPE_BF16}, {BST_DTYPE_BF16, BST_DTYPE_F16},
        {BST_DTYPE_F32, BST_DTYPE_F32}};
    const int64_t s1[] = {1}, s17[] = {17}, s5x65[] = {5, 65}, s3d[] = {3, 4, 33};
    const int64_t s17x33[] = {17, 33}, s8x17[] = {8, 17}, s1x33[] = {1, 33};
    for (size_t p = 0; p < COUNT(pairs); p++) {
        bst_dtype f = pairs[p][0], t = pairs[p][1];
        case_cast(f, t, 1, s1, L_CONTIG, 0, false);
        case_cast(f, t, 1, s17, L_CONTIG, 0, false);
        case_cast(f, t, 2, s1x33, L_CONTIG, 0, true);
        case_cast(f, t, 2, s5x65, L_CONTIG, 0, true);
        case_cast(f, t, 3, s3d, L_CONTIG, 0, false);
        case_cast(f, t, 2, s17x33, L_TRANSPOSED, 0, true);
        case_cast(f, t, 2, s5x65, L_PADDED, 0, false);
        case_cast(f, t, 3, s3d, L_PERMUTED, 0, false);
        case_cast(f, t, 2, s8x17, L_CONTIG, 5, true);
    }
    end();
}

/* ---- QUANTIZE ------------------------------------------------------------------------------ */

typedef enum qdata { Q_UNIFORM, Q_ZERO_ROW, Q_OUTLIER, Q_SIGNED } qdata;

static void case_quantize(bst_dtype to, uint32_t rank, const int64_t *shape, lay l, qdata qd,
                          int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_QUANTIZE, bst_dtype_name(to));
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = bo_case_input(&c);
    view(x, BST_DTYPE_F32, rank, shape, l);
    int64_t n = oracle_numel(rank, shape), k = shape[rank - 1];
    float *v = alloc_values(n);
    if (v) {
        for (int64_t i = 0; i < n; i++)
            v[i] = (float)bo_rng_uniform(&rng, -3.0, 3.0);
        if (qd == Q_ZERO_ROW)
            for (int64_t i = 0; i < k; i++)
                v[i] = 0.0f;
        if (qd == Q_OUTLIER)
            v[k / 3] = 50.0f, v[n - 1] = -40.0f;
        if (qd == Q_SIGNED) /* one block all positive, one all negative */
            for (int64_t i = 0; i < 32; i++)
                v[i] = fabsf(v[i]), v[n - 1 - i] = -fabsf(v[n - 1 - i]);
    }
    bo_tensor_set(x, v);
    free(v);
    describe(&c, "x", x, lay_name(l));
    bo_case_what(&c, "data=%d ", (int)qd);
    bo_case_attr_int(&c, BST_ATTR_DTYPE, to);
    bo_case_output(&c, to, rank, shape);
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    run(&c, bo_eff_values(&c, x, NULL));
}

static void fam_quantize(void)
{
    begin("quantize", 11);
    const int64_t s1x32[] = {1, 32}, s3x64[] = {3, 64}, s5x256[] = {5, 256}, s3d[] = {2, 3, 32};
    const int64_t s6x64[] = {6, 64}, s32[] = {32}, s4x96[] = {4, 96};
    for (size_t d = 0; d < COUNT(QUANT); d++) {
        bst_dtype q = QUANT[d];
        case_quantize(q, 1, s32, L_CONTIG, Q_UNIFORM, 0);
        case_quantize(q, 2, s1x32, L_CONTIG, Q_UNIFORM, 0);
        case_quantize(q, 2, s3x64, L_CONTIG, Q_ZERO_ROW, 0);
        case_quantize(q, 2, s5x256, L_CONTIG, Q_OUTLIER, 0);
        case_quantize(q, 2, s4x96, L_CONTIG, Q_SIGNED, 0);
        case_quantize(q, 3, s3d, L_CONTIG, Q_UNIFORM, 0);
        case_quantize(q, 2, s3x64, L_PADDED, Q_UNIFORM, 0);
        case_quantize(q, 2, s3x64, L_TRANSPOSED, Q_UNIFORM, 0);
        case_quantize(q, 3, s3d, L_PERMUTED, Q_UNIFORM, 0);
        case_quantize(q, 2, s6x64, L_CONTIG, Q_UNIFORM, 2);
    }
    end();
}

/* ---- CONCAT -------------------------------------------------------------------------------- */

static void case_concat(uint32_t rank, const int64_t *sa, uint32_t axis, int64_t bdim, lay la,
                        lay lb, int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_CONCAT, "f32");
    char label[32];
    snprintf(label, sizeof label, "f32 axis %u", axis);
    snprintf(c.dtype_label, sizeof c.dtype_label, "%s", label);
    if (n_tokens)
        c.n_tokens = n_tokens;
    int64_t sb[BST_MAX_DIMS], so[BST_MAX_DIMS];
    memcpy(sb, sa, rank * sizeof(int64_t));
    sb[axis] = bdim;
    memcpy(so, sa, rank * sizeof(int64_t));
    so[axis] += bdim;
    bo_tensor *a = input(&c, "a", BST_DTYPE_F32, rank, sa, la, -2.0, 2.0);
    bo_tensor *b = input(&c, "b", BST_DTYPE_F32, rank, sb, lb, -2.0, 2.0);
    bo_case_attr_int(&c, BST_ATTR_AXIS, axis);
    bo_case_output(&c, BST_DTYPE_F32, rank, so);
    if (n_tokens) {
        sym(a, 0, BST_SYM_N_TOKENS);
        sym(b, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    int64_t ea[BST_MAX_DIMS], eb[BST_MAX_DIMS];
    double *av = bo_eff_values(&c, a, ea), *bv = bo_eff_values(&c, b, eb);
    double *out = alloc_out(&c);
    if (bo_ok())
        oracle_concat(av, ea, bv, eb, rank, axis, out);
    free(av);
    free(bv);
    run(&c, out);
}

static void fam_concat(void)
{
    begin("concat", 12);
    const int64_t s3d[] = {2, 3, 5}, s17[] = {17}, s3x17[] = {3, 17}, s4d[] = {2, 3, 4, 5};
    const int64_t s8x17[] = {8, 17}, s4x5x7[] = {4, 5, 7};
    case_concat(3, s3d, 0, 3, L_CONTIG, L_CONTIG, 0);
    case_concat(3, s3d, 1, 4, L_CONTIG, L_CONTIG, 0);
    case_concat(3, s3d, 2, 7, L_CONTIG, L_CONTIG, 0);
    case_concat(3, s3d, 2, 1, L_CONTIG, L_CONTIG, 0);
    case_concat(1, s17, 0, 33, L_CONTIG, L_CONTIG, 0);
    case_concat(2, s3x17, 0, 1, L_CONTIG, L_CONTIG, 0);
    case_concat(2, s3x17, 1, 5, L_CONTIG, L_CONTIG, 0);
    case_concat(4, s4d, 2, 1, L_CONTIG, L_CONTIG, 0);
    case_concat(4, s4d, 3, 3, L_CONTIG, L_CONTIG, 0);
    case_concat(3, s4x5x7, 0, 2, L_PERMUTED, L_TRANSPOSED, 0);
    case_concat(3, s4x5x7, 1, 3, L_TRANSPOSED, L_PADDED, 0);
    case_concat(3, s4x5x7, 2, 9, L_PADDED, L_PERMUTED, 0);
    case_concat(2, s8x17, 1, 5, L_CONTIG, L_CONTIG, 3);
    end();
}

/* ---- CONT ---------------------------------------------------------------------------------- */

static void case_cont(bst_dtype dt, uint32_t rank, const int64_t *shape, const uint32_t *perm,
                      int64_t pad, int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_CONT, bst_dtype_name(dt));
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = bo_case_input(&c);
    bo_tensor_view(x, dt, rank, shape, perm, pad);
    bo_tensor_fill(x, &rng, -3.0, 3.0);
    char lay_desc[64] = "";
    if (perm) {
        size_t len = (size_t)snprintf(lay_desc, sizeof lay_desc, "perm(");
        for (uint32_t i = 0; i < rank; i++)
            len += (size_t)snprintf(lay_desc + len, sizeof lay_desc - len, "%s%u", i ? "," : "",
                                    perm[i]);
        snprintf(lay_desc + len, sizeof lay_desc - len, ")");
    }
    if (pad)
        snprintf(lay_desc + strlen(lay_desc), sizeof lay_desc - strlen(lay_desc), " pad %lld",
                 (long long)pad);
    describe(&c, "x", x, lay_desc);
    bo_case_output(&c, BST_DTYPE_F32, rank, shape); /* like every op without a dtype rule */
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    run(&c, bo_eff_values(&c, x, NULL));
}

static void fam_cont(void)
{
    begin("cont", 13);
    const int64_t s3d[] = {3, 4, 5}, s17x33[] = {17, 33}, s5x65[] = {5, 65}, s4d[] = {2, 3, 4, 5};
    const int64_t s7x9[] = {7, 9}, s6x33[] = {6, 33}, s1[] = {1};
    static const uint32_t p201[] = {2, 0, 1}, p10[] = {1, 0}, p0213[] = {0, 2, 1, 3};
    static const uint32_t p3210[] = {3, 2, 1, 0}, p120[] = {1, 2, 0};
    for (size_t d = 0; d < COUNT(PLAIN); d++) {
        bst_dtype dt = PLAIN[d];
        case_cont(dt, 3, s3d, p201, 0, 0);
        case_cont(dt, 3, s3d, p120, 2, 0);
        case_cont(dt, 2, s17x33, p10, 0, 0);
        case_cont(dt, 2, s5x65, NULL, 7, 0);
        case_cont(dt, 4, s4d, p0213, 0, 0);
        case_cont(dt, 4, s4d, p3210, 1, 0);
        case_cont(dt, 2, s7x9, NULL, 0, 0);
        case_cont(dt, 1, s1, NULL, 0, 0);
        case_cont(dt, 2, s6x33, NULL, 5, 4);
    }
    end();
}

/* ---- ARGMAX -------------------------------------------------------------------------------- */

typedef enum adata { A_UNIFORM, A_TIES, A_EDGES } adata;

static void case_argmax(bst_dtype dt, uint32_t rank, const int64_t *shape, lay l, adata ad,
                        int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_ARGMAX, bst_dtype_name(dt));
    if (n_tokens)
        c.n_tokens = n_tokens;
    bo_tensor *x = bo_case_input(&c);
    view(x, dt, rank, shape, l);
    int64_t n = oracle_numel(rank, shape), k = shape[rank - 1], rows = n / k;
    float *v = alloc_values(n);
    for (int64_t i = 0; v && i < n; i++)
        v[i] = ad == A_TIES ? (float)bo_rng_int(&rng, -2, 1) : (float)bo_rng_uniform(&rng, -5, 5);
    if (v && ad == A_EDGES)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < k; j++) {
                float *e = &v[r * k + j];
                switch (r % 4) {
                case 0: *e = 1.5f; break;                           /* all equal: index 0 */
                case 1: *e = j == k - 1 ? 9.0f : (float)j; break;   /* maximum last */
                case 2: *e = -1000.0f - (float)j; break;            /* all negative: index 0 */
                default: *e = j == k / 2 || j == k - 1 ? 3.0f : -3.0f; /* tie, first wins */
                }
            }
    bo_tensor_set(x, v);
    free(v);
    describe(&c, "x", x, lay_name(l));
    bo_case_what(&c, "data=%d ", (int)ad);
    bo_case_output(&c, BST_DTYPE_I32, rank - 1, shape);
    if (n_tokens) {
        sym(x, 0, BST_SYM_N_TOKENS);
        sym(&c.out, 0, BST_SYM_N_TOKENS);
    }
    int64_t e[BST_MAX_DIMS];
    double *xv = bo_eff_values(&c, x, e);
    int64_t erows = bo_ok() ? oracle_numel(rank, e) / k : 0;
    int32_t *idx = bo_ok() ? bo_alloc((size_t)erows, sizeof *idx, "the oracle's indices") : NULL;
    double *out = alloc_out(&c);
    if (bo_ok()) {
        oracle_argmax(xv, erows, k, idx);
        for (int64_t r = 0; r < erows; r++)
            out[r] = (double)idx[r];
    }
    free(idx);
    free(xv);
    run(&c, out);
}

static void fam_argmax(void)
{
    begin("argmax", 14);
    static const int64_t ns[] = {1, 3, 17, 65, 1000};
    for (size_t i = 0; i < COUNT(ns); i++) {
        const int64_t s[] = {4, ns[i]};
        case_argmax(BST_DTYPE_F32, 2, s, L_CONTIG, A_UNIFORM, 0);
        case_argmax(BST_DTYPE_F32, 2, s, L_CONTIG, A_TIES, 0);
        case_argmax(BST_DTYPE_F32, 2, s, L_CONTIG, A_EDGES, 0);
    }
    const int64_t s3d[] = {2, 3, 17}, s5x33[] = {5, 33}, s6x17[] = {6, 17}, s49k[] = {1, 49152};
    const int64_t s17[] = {17};
    case_argmax(BST_DTYPE_F32, 1, s17, L_CONTIG, A_TIES, 0);
    case_argmax(BST_DTYPE_F32, 3, s3d, L_CONTIG, A_TIES, 0);
    case_argmax(BST_DTYPE_F32, 2, s49k, L_CONTIG, A_UNIFORM, 0); /* a vocabulary's logits */
    case_argmax(BST_DTYPE_F32, 2, s5x33, L_TRANSPOSED, A_TIES, 0);
    case_argmax(BST_DTYPE_F32, 2, s5x33, L_PADDED, A_EDGES, 0);
    case_argmax(BST_DTYPE_F32, 3, s3d, L_PERMUTED, A_TIES, 0);
    case_argmax(BST_DTYPE_F16, 2, s5x33, L_CONTIG, A_TIES, 0);
    case_argmax(BST_DTYPE_BF16, 2, s5x33, L_CONTIG, A_UNIFORM, 0);
    case_argmax(BST_DTYPE_F32, 2, s6x17, L_CONTIG, A_TIES, 2);
    end();
}

/* ---- SET_ROWS ------------------------------------------------------------------------------ */

static void case_set_rows(bst_dtype ddt, bst_dtype sdt, int64_t R, int64_t C, int64_t N, lay ls,
                          int64_t n_tokens)
{
    char label[32];
    snprintf(label, sizeof label, "%s->%s", bst_dtype_name(sdt), bst_dtype_name(ddt));
    bo_case c;
    bo_case_init(&c, BST_OP_SET_ROWS, label);
    c.cpu_optional = bst_dtype_block_size(ddt) > 1;
    if (n_tokens)
        c.n_tokens = n_tokens;
    int64_t sd[2] = {R, C}, ss[2] = {N, C}, si[1] = {N};
    (void)input(&c, "dst", ddt, 2, sd, L_CONTIG, -2.0, 2.0);
    bo_tensor *src = input(&c, "src", sdt, 2, ss, ls, -2.0, 2.0);
    /* distinct destination rows: a prefix of a random permutation */
    int32_t perm[64];
    for (int32_t i = 0; i < (int32_t)R; i++)
        perm[i] = i;
    for (int32_t i = (int32_t)R - 1; i > 0; i--) {
        int32_t j = bo_rng_int(&rng, 0, i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    bo_tensor *ids = ids_input(&c, "ids", 1, si, perm);
    bo_case_output(&c, ddt, 2, sd);
    c.alias_in = 0; /* the result is dst's next version, in dst's memory */
    if (n_tokens) {
        sym(src, 0, BST_SYM_N_TOKENS);
        sym(ids, 0, BST_SYM_N_TOKENS);
    }
    describe(&c, "out=dst", &c.out, NULL);
    /* Rows in ids[0..n) take src's rows; every other row must keep its bytes. */
    bo_case_alloc_ref(&c);
    int64_t n_eff = bo_ok() ? bo_eff_dim(&c, src, 0) : 0;
    for (int64_t i = 0; i < n_eff; i++)
        for (int64_t j = 0; j < C; j++) {
            c.ref[(int64_t)perm[i] * C + j] = src->val[i * C + j];
            c.expect[(int64_t)perm[i] * C + j] = 1;
        }
    bo_case_finish_ref(&c);
    (void)bo_run(&c);
}

static void fam_set_rows(void)
{
    begin("set_rows", 15);
    static const int64_t cols[] = {1, 17, 64};
    static const int64_t ns[] = {1, 4, 9};
    const bst_dtype F32 = BST_DTYPE_F32;
    for (size_t d = 0; d < COUNT(PLAIN); d++) {
        for (size_t k = 0; k < COUNT(cols); k++)
            for (size_t n = 0; n < COUNT(ns); n++)
                case_set_rows(PLAIN[d], F32, 9, cols[k], ns[n], L_CONTIG, 0);
        case_set_rows(PLAIN[d], F32, 9, 33, 4, L_PADDED, 0);
        case_set_rows(PLAIN[d], F32, 9, 33, 4, L_TRANSPOSED, 0);
        case_set_rows(PLAIN[d], BST_DTYPE_F16, 9, 17, 3, L_CONTIG, 0);
        case_set_rows(PLAIN[d], F32, 12, 64, 5, L_CONTIG, 2); /* src[n_tokens, C] */
    }
    case_set_rows(BST_DTYPE_Q8_0, F32, 9, 64, 4, L_CONTIG, 0);
    case_set_rows(BST_DTYPE_Q8_0, F32, 9, 32, 9, L_CONTIG, 0);
    case_set_rows(BST_DTYPE_Q4_0, F32, 9, 64, 3, L_CONTIG, 0);
    end();
}

/* ---- the family table ---------------------------------------------------------------------- */

static void fam_attention(void) { g_result = bo_attention_family(); }

/* Order is part of the case numbering: append new families at the end. */
static const bo_family families[] = {
    {"get_rows", fam_get_rows},     {"add_mul", fam_add_mul},   {"scale", fam_scale},
    {"matmul", fam_matmul},         {"rms_norm", fam_rms_norm}, {"layer_norm", fam_layer_norm},
    {"rope", fam_rope},             {"softmax", fam_softmax},   {"silu_gelu", fam_silu_gelu},
    {"cast", fam_cast},             {"quantize", fam_quantize}, {"concat", fam_concat},
    {"cont", fam_cont},             {"argmax", fam_argmax},     {"set_rows", fam_set_rows},
    {"attention", fam_attention},
};

const bo_family *bo_families(size_t *out_n)
{
    *out_n = sizeof families / sizeof families[0];
    return families;
}

int bo_family_run(const char *name)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strcmp(families[i].name, name) == 0) {
            g_result = 1;
            families[i].run();
            return g_result;
        }
    return -1;
}
