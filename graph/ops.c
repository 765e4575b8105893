/*
 * The op table — arity, attributes and flags of every op, declared once — and each op's
 * shape/type rule (bsti_infer_node). The rules implement the contract written in
 * include/bastion/backend.h; a backend may rely on every node it is shown having passed them.
 *
 * Conventions the rules share:
 *  - dims are 1..BSTI_MAX_DIM; a symbolic dim (sym != NONE) carries its bound in shape[];
 *    two dims "match" when bound and symbol are both equal, so a runtime extent can never
 *    disagree; broadcasting accepts a plain 1 against anything;
 *  - outputs are contiguous f32 unless the rule says otherwise;
 *  - alias ops (VIEW, RESHAPE, PERMUTE, TRANSPOSE) keep the input's dtype, derive strides from
 *    the input's, and point alias_of at the root of the alias chain; SET_ROWS also sets alias_of
 *    (its dst state) but is not flagged is_alias, because it computes (an effect);
 *  - optional attributes are filled in with their defaults and attributes are sorted by key,
 *    so backends and CSE see one canonical form.
 */
#include "graph/ir.h"
#include "graph/status.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* --- the table --- */

typedef struct ictx ictx;
typedef bst_status (*infer_fn)(ictx *c);

typedef struct attr_spec {
    bst_attr_key key;
    bool required;
} attr_spec;

typedef struct op_def {
    bsti_op_info info;
    const char *operands[BST_MAX_INPUTS]; /* operand names used in messages */
    attr_spec attrs[4];
    infer_fn infer;
} op_def;

static bst_status infer_source(ictx *c);
static bst_status infer_get_rows(ictx *c);
static bst_status infer_binary(ictx *c);
static bst_status infer_unary(ictx *c);
static bst_status infer_matmul(ictx *c);
static bst_status infer_norm(ictx *c);
static bst_status infer_rope(ictx *c);
static bst_status infer_softmax(ictx *c);
static bst_status infer_cast(ictx *c);
static bst_status infer_quantize(ictx *c);
static bst_status infer_concat(ictx *c);
static bst_status infer_view(ictx *c);
static bst_status infer_reshape(ictx *c);
static bst_status infer_permute(ictx *c);
static bst_status infer_transpose(ictx *c);
static bst_status infer_argmax(ictx *c);
static bst_status infer_set_rows(ictx *c);
static bst_status infer_attention(ictx *c);
static bst_status infer_ffn_swiglu(ictx *c);
static bst_status infer_rms_norm_mul(ictx *c);

/* clang-format off */
#define SRC(n) {n, 0, 0, true, false, false, false}
#define OP(n, lo, hi) {n, lo, hi, false, false, false, false}
#define ALIAS(n) {n, 1, 1, false, true, false, false}
#define HIGH(n, lo, hi) {n, lo, hi, false, false, true, false}
#define REQ(k) {k, true}
#define OPT(k) {k, false}
/* clang-format on */

/* Indexed by bst_op; no explicit size, so the static_assert below catches a missing entry. */
static const op_def defs[] = {
    [BST_OP_NONE] = {{NULL, 0, 0, false, false, false, false}, {NULL}, {{0}}, NULL},
    [BST_OP_INPUT] = {SRC("input"), {NULL}, {{0}}, infer_source},
    [BST_OP_WEIGHT] = {SRC("weight"), {NULL}, {{0}}, infer_source},
    [BST_OP_STATE] = {SRC("state"), {NULL}, {{0}}, infer_source},
    [BST_OP_CONST] = {SRC("const"), {NULL}, {{0}}, infer_source},
    [BST_OP_GET_ROWS] = {OP("get_rows", 2, 2), {"table", "ids"}, {{0}}, infer_get_rows},
    [BST_OP_ADD] = {OP("add", 2, 2), {"a", "b"}, {{0}}, infer_binary},
    [BST_OP_MUL] = {OP("mul", 2, 2), {"a", "b"}, {{0}}, infer_binary},
    [BST_OP_SCALE] = {OP("scale", 1, 1), {"x"}, {REQ(BST_ATTR_SCALE)}, infer_unary},
    [BST_OP_MATMUL] = {OP("matmul", 2, 2), {"a", "b"}, {{0}}, infer_matmul},
    [BST_OP_RMS_NORM] = {OP("rms_norm", 1, 1), {"x"}, {REQ(BST_ATTR_EPS)}, infer_norm},
    [BST_OP_LAYER_NORM] = {OP("layer_norm", 1, 1), {"x"}, {REQ(BST_ATTR_EPS)}, infer_norm},
    [BST_OP_ROPE] = {OP("rope", 2, 2),
                     {"x", "pos"},
                     {REQ(BST_ATTR_ROPE_MODE), REQ(BST_ATTR_ROPE_THETA), REQ(BST_ATTR_ROPE_DIMS)},
                     infer_rope},
    [BST_OP_SOFTMAX] = {OP("softmax", 1, 2), {"x", "mask"}, {OPT(BST_ATTR_SCALE)}, infer_softmax},
    [BST_OP_SILU] = {OP("silu", 1, 1), {"x"}, {{0}}, infer_unary},
    [BST_OP_GELU] = {OP("gelu", 1, 1), {"x"}, {{0}}, infer_unary},
    [BST_OP_CAST] = {OP("cast", 1, 1), {"x"}, {REQ(BST_ATTR_DTYPE)}, infer_cast},
    [BST_OP_QUANTIZE] = {OP("quantize", 1, 1), {"x"}, {REQ(BST_ATTR_DTYPE)}, infer_quantize},
    [BST_OP_CONCAT] = {OP("concat", 2, 2), {"a", "b"}, {REQ(BST_ATTR_AXIS)}, infer_concat},
    [BST_OP_CONT] = {OP("cont", 1, 1), {"x"}, {{0}}, infer_unary},
    [BST_OP_VIEW] = {ALIAS("view"),
                     {"x"},
                     {REQ(BST_ATTR_SHAPE), OPT(BST_ATTR_STRIDES), OPT(BST_ATTR_OFFSET),
                      OPT(BST_ATTR_SYM)},
                     infer_view},
    [BST_OP_RESHAPE] = {ALIAS("reshape"),
                        {"x"},
                        {REQ(BST_ATTR_SHAPE), OPT(BST_ATTR_SYM)},
                        infer_reshape},
    [BST_OP_PERMUTE] = {ALIAS("permute"), {"x"}, {REQ(BST_ATTR_PERM)}, infer_permute},
    [BST_OP_TRANSPOSE] = {ALIAS("transpose"), {"x"}, {{0}}, infer_transpose},
    [BST_OP_ARGMAX] = {OP("argmax", 1, 1), {"x"}, {{0}}, infer_argmax},
    [BST_OP_SET_ROWS] = {{"set_rows", 3, 3, false, false, false, true},
                         {"dst", "src", "ids"},
                         {{0}},
                         infer_set_rows},
    [BST_OP_ATTENTION] = {HIGH("attention", 3, 4),
                          {"q", "k", "v", "mask"},
                          {OPT(BST_ATTR_SCALE), OPT(BST_ATTR_CAUSAL), OPT(BST_ATTR_WINDOW)},
                          infer_attention},
    [BST_OP_FFN_SWIGLU] = {HIGH("ffn_swiglu", 4, 4),
                           {"x", "w_gate", "w_up", "w_down"},
                           {{0}},
                           infer_ffn_swiglu},
    [BST_OP_RMS_NORM_MUL] = {HIGH("rms_norm_mul", 2, 2),
                             {"x", "w"},
                             {REQ(BST_ATTR_EPS)},
                             infer_rms_norm_mul},
};
_Static_assert(sizeof defs / sizeof defs[0] == BST_OP_COUNT, "one op table entry per bst_op");

typedef struct attr_def {
    const char *name;
    bst_attr_kind kind;
} attr_def;

static const attr_def attr_defs[] = {
    [BST_ATTR_NONE] = {NULL, BST_ATTR_KIND_INT},
    [BST_ATTR_EPS] = {"eps", BST_ATTR_KIND_FLOAT},
    [BST_ATTR_SCALE] = {"scale", BST_ATTR_KIND_FLOAT},
    [BST_ATTR_AXIS] = {"axis", BST_ATTR_KIND_INT},
    [BST_ATTR_PERM] = {"perm", BST_ATTR_KIND_INTS},
    [BST_ATTR_SHAPE] = {"shape", BST_ATTR_KIND_INTS},
    [BST_ATTR_STRIDES] = {"strides", BST_ATTR_KIND_INTS},
    [BST_ATTR_OFFSET] = {"offset", BST_ATTR_KIND_INT},
    [BST_ATTR_ROPE_MODE] = {"rope_mode", BST_ATTR_KIND_INT},
    [BST_ATTR_ROPE_THETA] = {"rope_theta", BST_ATTR_KIND_FLOAT},
    [BST_ATTR_ROPE_DIMS] = {"rope_dims", BST_ATTR_KIND_INT},
    [BST_ATTR_CAUSAL] = {"causal", BST_ATTR_KIND_INT},
    [BST_ATTR_WINDOW] = {"window", BST_ATTR_KIND_INT},
    [BST_ATTR_DTYPE] = {"dtype", BST_ATTR_KIND_INT},
    [BST_ATTR_SYM] = {"sym", BST_ATTR_KIND_INTS},
};
_Static_assert(sizeof attr_defs / sizeof attr_defs[0] == BST_ATTR_COUNT,
               "one attribute table entry per bst_attr_key");

const bsti_op_info *bsti_op_get(bst_op op)
{
    if ((unsigned)op >= BST_OP_COUNT || op == BST_OP_NONE)
        return NULL;
    return &defs[op].info;
}

bst_op bsti_op_from_name(const char *name)
{
    if (!name)
        return BST_OP_NONE;
    for (unsigned i = 1; i < BST_OP_COUNT; i++)
        if (strcmp(defs[i].info.name, name) == 0)
            return (bst_op)i;
    return BST_OP_NONE;
}

const char *bsti_attr_name(bst_attr_key key)
{
    if ((unsigned)key >= BST_ATTR_COUNT)
        return NULL;
    return attr_defs[key].name;
}

bst_attr_key bsti_attr_from_name(const char *name)
{
    if (!name)
        return BST_ATTR_NONE;
    for (unsigned i = 1; i < BST_ATTR_COUNT; i++)
        if (strcmp(attr_defs[i].name, name) == 0)
            return (bst_attr_key)i;
    return BST_ATTR_NONE;
}

bst_attr_kind bsti_attr_kind(bst_attr_key key)
{
    if ((unsigned)key >= BST_ATTR_COUNT)
        return BST_ATTR_KIND_INT;
    return attr_defs[key].kind;
}

static const attr_spec *find_spec(bst_op op, uint32_t key)
{
    if ((unsigned)op >= BST_OP_COUNT || key == BST_ATTR_NONE)
        return NULL;
    for (unsigned i = 0; i < 4 && defs[op].attrs[i].key != BST_ATTR_NONE; i++)
        if ((uint32_t)defs[op].attrs[i].key == key)
            return &defs[op].attrs[i];
    return NULL;
}

bool bsti_op_allows_attr(bst_op op, bst_attr_key key) { return find_spec(op, key) != NULL; }

/* --- inference context and message helpers --- */

struct ictx {
    bst_graph *g;
    uint32_t id;
    bsti_node *n;
    const char *op;
    const op_def *def;
    const bsti_type *in[BST_MAX_INPUTS];
    bsti_type *out;
};

static bst_status fail(const ictx *c, bst_status st, const char *fmt, ...) BST_PRINTF(3, 4);
static bst_status fail(const ictx *c, bst_status st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bsti_fail(st, "%s: %s", c->op, msg);
}

typedef struct dimbuf {
    char s[48];
} dimbuf;

static dimbuf dimstr(const bsti_type *t, uint32_t i)
{
    dimbuf b;
    const char *sn = bsti_sym_name((bst_sym)t->sym[i]);
    if (sn)
        snprintf(b.s, sizeof b.s, "%s:%" PRId64, sn, t->shape[i]);
    else
        snprintf(b.s, sizeof b.s, "%" PRId64, t->shape[i]);
    return b;
}

typedef struct typebuf {
    char s[160];
} typebuf;

static typebuf typestr(const bsti_type *t)
{
    typebuf b;
    bsti_type_format(t, b.s, sizeof b.s);
    return b;
}

/* "operand 1 (b)" */
typedef struct opnd {
    char s[48];
} opnd;

static opnd operand(const ictx *c, uint32_t i)
{
    opnd o;
    const char *nm = i < BST_MAX_INPUTS ? c->def->operands[i] : NULL;
    snprintf(o.s, sizeof o.s, "operand %u (%s)", i, nm ? nm : "?");
    return o;
}

static bool dim_eq(const bsti_type *a, uint32_t i, const bsti_type *b, uint32_t j)
{
    return a->shape[i] == b->shape[j] && a->sym[i] == b->sym[j];
}

static bool is_block(bst_dtype t) { return bst_dtype_block_size(t) > 1; }

static bst_status need_rank(const ictx *c, uint32_t i, uint32_t lo, uint32_t hi)
{
    const bsti_type *t = c->in[i];
    if (t->rank >= lo && t->rank <= hi)
        return BST_OK;
    if (lo == hi)
        return fail(c, BST_ERR_SHAPE, "%s must have rank %u, got %s", operand(c, i).s, lo,
                    typestr(t).s);
    return fail(c, BST_ERR_SHAPE, "%s must have rank %u..%u, got %s", operand(c, i).s, lo, hi,
                typestr(t).s);
}

static bst_status need_dtype(const ictx *c, uint32_t i, bst_dtype want)
{
    if (c->in[i]->dtype == want)
        return BST_OK;
    return fail(c, BST_ERR_SHAPE, "%s must be %s, got %s", operand(c, i).s, bst_dtype_name(want),
                typestr(c->in[i]).s);
}

/* Operand `ib` dim `jb` must match operand `ia` dim `ja`. */
static bst_status need_match(const ictx *c, uint32_t ia, uint32_t ja, uint32_t ib, uint32_t jb)
{
    if (dim_eq(c->in[ia], ja, c->in[ib], jb))
        return BST_OK;
    return fail(c, BST_ERR_SHAPE, "%s dim %u is %s but %s dim %u is %s", operand(c, ib).s, jb,
                dimstr(c->in[ib], jb).s, operand(c, ia).s, ja, dimstr(c->in[ia], ja).s);
}

/* Operand `ib` broadcasts to `target` (numpy rules restricted to: equal, or a plain 1). */
static bst_status need_broadcast(const ictx *c, const bsti_type *target, const char *target_name,
                                 uint32_t ib)
{
    const bsti_type *b = c->in[ib];
    if (b->rank > target->rank)
        return fail(c, BST_ERR_SHAPE, "%s %s has more dims than %s %s", operand(c, ib).s,
                    typestr(b).s, target_name, typestr(target).s);
    for (uint32_t j = 0; j < b->rank; j++) {
        uint32_t i = target->rank - b->rank + j;
        if ((b->shape[j] == 1 && b->sym[j] == BST_SYM_NONE) || dim_eq(target, i, b, j))
            continue;
        return fail(c, BST_ERR_SHAPE, "%s dim %u is %s, which does not broadcast to %s dim %u (%s)",
                    operand(c, ib).s, j, dimstr(b, j).s, target_name, i, dimstr(target, i).s);
    }
    return BST_OK;
}

/* Every dim in range, symbols known, block types whole blocks along a plain innermost dim. */
static bst_status check_type(const ictx *c, const bsti_type *t, const char *what)
{
    if (!bst_dtype_name(t->dtype))
        return fail(c, BST_ERR_SHAPE, "%s has invalid dtype %d", what, (int)t->dtype);
    if (t->rank > BST_MAX_DIMS)
        return fail(c, BST_ERR_SHAPE, "%s has rank %u, more than %d", what, t->rank, BST_MAX_DIMS);
    for (uint32_t i = 0; i < t->rank; i++) {
        if (t->shape[i] < 1 || t->shape[i] > BSTI_MAX_DIM)
            return fail(c, t->shape[i] > BSTI_MAX_DIM ? BST_ERR_OVERFLOW : BST_ERR_SHAPE,
                        "%s dim %u is %" PRId64 " (dims must be 1..2^40)", what, i, t->shape[i]);
        if (t->sym[i] >= BST_SYM_COUNT)
            return fail(c, BST_ERR_SHAPE, "%s dim %u has unknown symbol %u", what, i, t->sym[i]);
    }
    uint32_t bs = bst_dtype_block_size(t->dtype);
    if (bs > 1) {
        if (t->rank == 0)
            return fail(c, BST_ERR_SHAPE, "%s: a %s tensor cannot be a scalar", what,
                        bst_dtype_name(t->dtype));
        uint32_t last = t->rank - 1;
        if (t->shape[last] % bs != 0 || t->sym[last] != BST_SYM_NONE)
            return fail(c, BST_ERR_SHAPE,
                        "%s is %s: its innermost dim (%s) must be a fixed multiple of the "
                        "block size %u",
                        what, typestr(t).s, dimstr(t, last).s, bs);
    }
    uint64_t bytes;
    bst_status st = bsti_type_nbytes(t, &bytes);
    if (st)
        return fail(c, st, "%s %s: %s", what, typestr(t).s, bst_last_error());
    return BST_OK;
}

/* Output f32 (or `dtype`) contiguous, with the shape of `like`. */
static void out_like(ictx *c, const bsti_type *like, bst_dtype dtype)
{
    bsti_type *o = c->out;
    o->dtype = dtype;
    o->rank = like->rank;
    for (uint32_t i = 0; i < like->rank; i++) {
        o->shape[i] = like->shape[i];
        o->sym[i] = like->sym[i];
    }
    bsti_type_set_contiguous(o);
}

static void add_default(bsti_node *n, bst_attr_key key, int64_t i, double f)
{
    if (bsti_node_attr(n, key) || n->n_attrs >= BST_MAX_ATTRS)
        return;
    bst_attr *a = &n->attrs[n->n_attrs++];
    memset(a, 0, sizeof *a);
    a->struct_size = (uint32_t)sizeof *a;
    a->key = (uint32_t)key;
    a->kind = (uint32_t)bsti_attr_kind(key);
    a->count = 1;
    if (a->kind == BST_ATTR_KIND_FLOAT)
        a->f = f;
    else
        a->ints[0] = i;
}

static bst_status need_finite(const ictx *c, bst_attr_key key, bool positive, bool nonneg)
{
    double v = bsti_attr_float(c->n, key, 0.0);
    if (!isfinite(v) || (positive && !(v > 0.0)) || (nonneg && v < 0.0))
        return fail(c, BST_ERR_SHAPE, "attribute %s=%g must be a finite%s number",
                    bsti_attr_name(key), v,
                    positive ? " positive"
                    : nonneg ? " non-negative"
                             : "");
    return BST_OK;
}

/* --- rules --- */

static bst_status infer_source(ictx *c)
{
    bsti_node *n = c->n;
    *c->out = n->type;
    bst_status st = check_type(c, c->out, "type");
    if (st)
        return st;
    for (uint32_t i = 0; i < c->out->rank; i++)
        if (c->out->sym[i] != BST_SYM_NONE && n->op != BST_OP_INPUT)
            return fail(c, BST_ERR_SHAPE, "dim %u is symbolic; only inputs may have symbolic dims",
                        i);
    for (uint32_t i = c->out->rank; i < BST_MAX_DIMS; i++) {
        c->out->shape[i] = 0;
        c->out->sym[i] = BST_SYM_NONE;
    }
    bsti_type_set_contiguous(c->out);
    uint64_t bytes = 0;
    if ((st = bsti_type_nbytes(c->out, &bytes)))
        return st;
    if (n->op != BST_OP_CONST && n->op != BST_OP_WEIGHT && (n->const_data || n->weight_data))
        return fail(c, BST_ERR_GRAPH, "%s values carry no data", c->op);
    if (n->op != BST_OP_CONST && (!n->name || !n->name[0]))
        return fail(c, BST_ERR_GRAPH, "a %s needs a name", c->op);
    if (n->op == BST_OP_CONST && (!n->const_data || n->data_size != bytes))
        return fail(c, BST_ERR_SHAPE, "const %s needs %" PRIu64 " bytes of data, got %" PRIu64,
                    typestr(c->out).s, bytes, n->const_data ? n->data_size : 0);
    if (n->op == BST_OP_WEIGHT && n->weight_data && n->data_size != bytes)
        return fail(c, BST_ERR_SHAPE, "weight \"%s\" %s needs %" PRIu64 " bytes, got %" PRIu64,
                    n->name, typestr(c->out).s, bytes, n->data_size);
    if (n->op == BST_OP_WEIGHT && !n->weight_data && n->data_size)
        return fail(c, BST_ERR_SHAPE, "weight \"%s\" has a size but no data", n->name);
    return BST_OK;
}

static bst_status infer_get_rows(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 2, 2)) || (st = need_rank(c, 1, 0, BST_MAX_DIMS - 1)) ||
        (st = need_dtype(c, 1, BST_DTYPE_I32)))
        return st;
    const bsti_type *ids = c->in[1];
    bsti_type *o = c->out;
    o->dtype = BST_DTYPE_F32;
    o->rank = ids->rank + 1;
    for (uint32_t i = 0; i < ids->rank; i++) {
        o->shape[i] = ids->shape[i];
        o->sym[i] = ids->sym[i];
    }
    o->shape[ids->rank] = c->in[0]->shape[1];
    o->sym[ids->rank] = c->in[0]->sym[1];
    bsti_type_set_contiguous(o);
    return BST_OK;
}

static bst_status infer_binary(ictx *c)
{
    bst_status st = need_broadcast(c, c->in[0], "operand 0 (a)", 1);
    if (st)
        return st;
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_unary(ictx *c)
{
    if (c->n->op == BST_OP_SCALE) {
        bst_status st = need_finite(c, BST_ATTR_SCALE, false, false);
        if (st)
            return st;
    }
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_norm(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 1, BST_MAX_DIMS)) || (st = need_finite(c, BST_ATTR_EPS, false, true)))
        return st;
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_matmul(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 2, BST_MAX_DIMS)) || (st = need_rank(c, 1, 2, c->in[0]->rank)))
        return st;
    const bsti_type *a = c->in[0], *b = c->in[1];
    uint32_t ra = a->rank, rb = b->rank;
    if ((st = need_match(c, 0, ra - 1, 1, rb - 1)))
        return st;
    /* Batch dims: b's broadcast to a's, grouped (a's index i uses b's i / (Ba / Bb)). */
    for (uint32_t j = 0; j + 2 < rb; j++) {
        uint32_t i = ra - rb + j;
        if (dim_eq(a, i, b, j))
            continue;
        if (b->sym[j] == BST_SYM_NONE && a->sym[i] == BST_SYM_NONE &&
            a->shape[i] % b->shape[j] == 0)
            continue;
        if (b->shape[j] == 1 && b->sym[j] == BST_SYM_NONE)
            continue;
        return fail(c, BST_ERR_SHAPE,
                    "operand 1 (b) batch dim %u is %s, which does not divide operand 0 (a) batch "
                    "dim %u (%s)",
                    j, dimstr(b, j).s, i, dimstr(a, i).s);
    }
    bsti_type *o = c->out;
    o->dtype = BST_DTYPE_F32;
    o->rank = ra;
    for (uint32_t i = 0; i + 1 < ra; i++) {
        o->shape[i] = a->shape[i];
        o->sym[i] = a->sym[i];
    }
    o->shape[ra - 1] = b->shape[rb - 2];
    o->sym[ra - 1] = b->sym[rb - 2];
    bsti_type_set_contiguous(o);
    return BST_OK;
}

static bst_status infer_rope(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 3, 3)) || (st = need_rank(c, 1, 1, 1)) ||
        (st = need_dtype(c, 1, BST_DTYPE_I32)) || (st = need_match(c, 0, 0, 1, 0)) ||
        (st = need_finite(c, BST_ATTR_ROPE_THETA, true, false)))
        return st;
    int64_t mode = bsti_attr_int(c->n, BST_ATTR_ROPE_MODE, -1);
    if (mode != 0 && mode != 2)
        return fail(c, BST_ERR_SHAPE, "rope_mode=%" PRId64 " must be 0 (normal) or 2 (neox)", mode);
    int64_t dims = bsti_attr_int(c->n, BST_ATTR_ROPE_DIMS, 0);
    int64_t d = c->in[0]->shape[2];
    if (dims < 2 || dims % 2 != 0 || dims > d || c->in[0]->sym[2] != BST_SYM_NONE)
        return fail(c, BST_ERR_SHAPE,
                    "rope_dims=%" PRId64 " must be even, >= 2 and <= operand 0 (x) head dim %s",
                    dims, dimstr(c->in[0], 2).s);
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_softmax(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 1, BST_MAX_DIMS)))
        return st;
    add_default(c->n, BST_ATTR_SCALE, 0, 1.0);
    if ((st = need_finite(c, BST_ATTR_SCALE, false, false)))
        return st;
    if (c->n->n_inputs == 2 && ((st = need_dtype(c, 1, BST_DTYPE_F32)) ||
                                (st = need_broadcast(c, c->in[0], "operand 0 (x)", 1))))
        return st;
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_cast(ictx *c)
{
    int64_t t = bsti_attr_int(c->n, BST_ATTR_DTYPE, 0);
    if (t != BST_DTYPE_F32 && t != BST_DTYPE_F16 && t != BST_DTYPE_BF16)
        return fail(c, BST_ERR_SHAPE, "dtype=%s must be f32, f16 or bf16",
                    bst_dtype_name((bst_dtype)t) ? bst_dtype_name((bst_dtype)t) : "invalid");
    out_like(c, c->in[0], (bst_dtype)t);
    return BST_OK;
}

static bst_status infer_quantize(ictx *c)
{
    int64_t t = bsti_attr_int(c->n, BST_ATTR_DTYPE, 0);
    if (t <= 0 || t >= BST_DTYPE_COUNT || !is_block((bst_dtype)t))
        return fail(c, BST_ERR_SHAPE, "dtype=%s must be a block-quantized type",
                    bst_dtype_name((bst_dtype)t) ? bst_dtype_name((bst_dtype)t) : "invalid");
    bst_status st = need_rank(c, 0, 1, BST_MAX_DIMS);
    if (st)
        return st;
    const bsti_type *x = c->in[0];
    uint32_t last = x->rank - 1;
    uint32_t bs = bst_dtype_block_size((bst_dtype)t);
    if (x->shape[last] % bs != 0 || x->sym[last] != BST_SYM_NONE)
        return fail(c, BST_ERR_SHAPE,
                    "operand 0 (x) innermost dim %s must be a fixed multiple of %s's block size %u",
                    dimstr(x, last).s, bst_dtype_name((bst_dtype)t), bs);
    out_like(c, x, (bst_dtype)t);
    return BST_OK;
}

static bst_status infer_concat(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 1, BST_MAX_DIMS)) ||
        (st = need_rank(c, 1, c->in[0]->rank, c->in[0]->rank)))
        return st;
    const bsti_type *a = c->in[0], *b = c->in[1];
    int64_t axis = bsti_attr_int(c->n, BST_ATTR_AXIS, -1);
    if (axis < 0 || axis >= (int64_t)a->rank)
        return fail(c, BST_ERR_SHAPE, "axis=%" PRId64 " is outside 0..%u", axis, a->rank - 1);
    uint32_t ax = (uint32_t)axis;
    for (uint32_t i = 0; i < a->rank; i++)
        if (i != ax && (st = need_match(c, 0, i, 1, i)))
            return st;
    if (a->sym[ax] != BST_SYM_NONE || b->sym[ax] != BST_SYM_NONE)
        return fail(c, BST_ERR_SHAPE, "cannot concatenate along symbolic dims (%s and %s)",
                    dimstr(a, ax).s, dimstr(b, ax).s);
    out_like(c, a, BST_DTYPE_F32);
    c->out->shape[ax] = a->shape[ax] + b->shape[ax]; /* both <= 2^40: no overflow */
    bsti_type_set_contiguous(c->out);
    return BST_OK;
}

/* Root of x's alias chain and x's byte offset into it. */
static void alias_root(const ictx *c, uint32_t *out_root, uint64_t *out_offset)
{
    const bsti_node *x = &c->g->nodes[c->n->inputs[0]];
    if (x->alias_of != BSTI_NONE) {
        *out_root = x->alias_of;
        *out_offset = x->alias_offset;
    } else {
        *out_root = c->n->inputs[0];
        *out_offset = 0;
    }
}

static void set_alias(ictx *c, uint64_t extra)
{
    uint32_t root;
    uint64_t off;
    alias_root(c, &root, &off);
    c->n->alias_of = root;
    c->n->alias_offset = off + extra;
}

/* Shape (and symbols) from the SHAPE/SYM attributes into the output type. */
static bst_status shape_from_attrs(ictx *c)
{
    const bst_attr *shape = bsti_node_attr(c->n, BST_ATTR_SHAPE);
    const bst_attr *sym = bsti_node_attr(c->n, BST_ATTR_SYM);
    if (sym && sym->count != shape->count)
        return fail(c, BST_ERR_SHAPE, "sym has %u entries but shape has %u", sym->count,
                    shape->count);
    bool any_sym = false;
    for (uint32_t i = 0; sym && i < sym->count; i++)
        any_sym = any_sym || sym->ints[i] != BST_SYM_NONE;
    if (sym && !any_sym) {
        /* All-plain symbols say nothing: drop them so equal nodes look equal. */
        bsti_node *n = c->n;
        uint32_t at = (uint32_t)(sym - n->attrs);
        memmove(&n->attrs[at], &n->attrs[at + 1], (n->n_attrs - at - 1) * sizeof n->attrs[0]);
        n->n_attrs--;
        shape = bsti_node_attr(n, BST_ATTR_SHAPE);
        sym = NULL;
    }
    bsti_type *o = c->out;
    o->dtype = c->in[0]->dtype;
    o->rank = shape->count;
    for (uint32_t i = 0; i < o->rank; i++) {
        o->shape[i] = shape->ints[i];
        int64_t s = sym ? sym->ints[i] : 0;
        if (s < 0 || s >= BST_SYM_COUNT)
            return fail(c, BST_ERR_SHAPE, "sym[%u]=%" PRId64 " is not a known symbol", i, s);
        o->sym[i] = (uint32_t)s;
    }
    return check_type(c, o, "result shape");
}

static bst_status infer_view(ictx *c)
{
    bst_status st = shape_from_attrs(c);
    if (st)
        return st;
    bsti_type *o = c->out;
    bst_dtype dt = o->dtype;
    uint32_t bs = bst_dtype_block_size(dt), bb = bst_dtype_block_bytes(dt);
    if (!bsti_node_attr(c->n, BST_ATTR_STRIDES)) {
        bsti_type_set_contiguous(o);
        bst_attr a = {.struct_size = (uint32_t)sizeof(bst_attr),
                      .key = BST_ATTR_STRIDES,
                      .kind = BST_ATTR_KIND_INTS,
                      .count = o->rank};
        for (uint32_t i = 0; i < o->rank; i++)
            a.ints[i] = o->strides[i];
        c->n->attrs[c->n->n_attrs++] = a;
    }
    add_default(c->n, BST_ATTR_OFFSET, 0, 0);
    const bst_attr *strides = bsti_node_attr(c->n, BST_ATTR_STRIDES);
    if (strides->count != o->rank)
        return fail(c, BST_ERR_SHAPE, "strides has %u entries but shape has %u", strides->count,
                    o->rank);
    int64_t offset = bsti_attr_int(c->n, BST_ATTR_OFFSET, 0);
    if (offset < 0 || offset % bb != 0)
        return fail(c, BST_ERR_SHAPE, "offset=%" PRId64 " must be a non-negative multiple of %u",
                    offset, bb);
    /* span: bytes from the view's start to the end of its last element (or block). */
    uint64_t span = bb;
    for (uint32_t i = 0; i < o->rank; i++) {
        int64_t s = strides->ints[i];
        o->strides[i] = s;
        uint64_t steps = (uint64_t)o->shape[i] - 1;
        if (i == o->rank - 1 && bs > 1) {
            steps = (uint64_t)o->shape[i] / bs - 1;
            if (s != (int64_t)bb)
                return fail(
                    c, BST_ERR_SHAPE,
                    "%s view's innermost stride must be the block size %u bytes, got %" PRId64,
                    bst_dtype_name(dt), bb, s);
        }
        if (s < 0 || s % bb != 0)
            return fail(c, BST_ERR_SHAPE,
                        "stride %u (%" PRId64 ") must be a non-negative multiple of %u bytes", i, s,
                        bb);
        uint64_t step_bytes;
        if (__builtin_mul_overflow(steps, (uint64_t)s, &step_bytes) ||
            __builtin_add_overflow(span, step_bytes, &span))
            return fail(c, BST_ERR_OVERFLOW, "view extent overflows");
    }
    uint32_t root;
    uint64_t base;
    alias_root(c, &root, &base);
    uint64_t root_bytes, end;
    if ((st = bsti_type_nbytes(&c->g->nodes[root].type, &root_bytes)))
        return st;
    if (__builtin_add_overflow(base, (uint64_t)offset, &end) ||
        __builtin_add_overflow(end, span, &end) || end > root_bytes)
        return fail(c, BST_ERR_SHAPE,
                    "result %s at offset %" PRIu64 " reaches byte %" PRIu64 ", past the %" PRIu64
                    " bytes of its base %%%u",
                    typestr(o).s, base + (uint64_t)offset, end, root_bytes, root);
    set_alias(c, (uint64_t)offset);
    return BST_OK;
}

static bst_status infer_reshape(ictx *c)
{
    bst_status st = shape_from_attrs(c);
    if (st)
        return st;
    const bsti_type *x = c->in[0];
    bsti_type *o = c->out;
    bsti_type_set_contiguous(o);
    if (!bsti_type_is_contiguous(x))
        return fail(c, BST_ERR_SHAPE, "operand 0 (x) %s is not contiguous (use cont first)",
                    typestr(x).s);
    int64_t nx, no;
    if ((st = bsti_type_nelements(x, &nx)) || (st = bsti_type_nelements(o, &no)))
        return st;
    if (nx != no)
        return fail(c, BST_ERR_SHAPE,
                    "shape %s has %" PRId64 " elements but operand 0 (x) %s has %" PRId64,
                    typestr(o).s, no, typestr(x).s, nx);
    /* A symbolic extent changes at run time; the dims up to the innermost symbolic one must be
     * carried over unchanged so that the contiguous layout stays valid for every extent. */
    int last_sym = -1;
    for (uint32_t i = 0; i < x->rank; i++)
        if (x->sym[i] != BST_SYM_NONE)
            last_sym = (int)i;
    for (uint32_t i = 0; i < o->rank; i++)
        if (o->sym[i] != BST_SYM_NONE && (int)i > last_sym)
            return fail(c, BST_ERR_SHAPE,
                        "result dim %u (%s) is symbolic but operand 0 (x) %s "
                        "has no symbolic dim there",
                        i, dimstr(o, i).s, typestr(x).s);
    for (int i = 0; i <= last_sym; i++)
        if ((uint32_t)i >= o->rank || !dim_eq(x, (uint32_t)i, o, (uint32_t)i))
            return fail(c, BST_ERR_SHAPE,
                        "operand 0 (x) %s has symbolic dim %d; result %s must keep dims 0..%d",
                        typestr(x).s, last_sym, typestr(o).s, last_sym);
    bsti_type_set_contiguous(o);
    set_alias(c, 0);
    return BST_OK;
}

static bst_status infer_permute(ictx *c)
{
    const bsti_type *x = c->in[0];
    const bst_attr *perm = bsti_node_attr(c->n, BST_ATTR_PERM);
    if (perm->count != x->rank)
        return fail(c, BST_ERR_SHAPE, "perm has %u entries but operand 0 (x) %s has rank %u",
                    perm->count, typestr(x).s, x->rank);
    bool seen[BST_MAX_DIMS] = {false};
    for (uint32_t i = 0; i < perm->count; i++) {
        int64_t p = perm->ints[i];
        if (p < 0 || p >= (int64_t)x->rank || seen[p])
            return fail(c, BST_ERR_SHAPE, "perm is not a permutation of 0..%u", x->rank - 1);
        seen[p] = true;
    }
    if (is_block(x->dtype) && perm->ints[x->rank - 1] != (int64_t)x->rank - 1)
        return fail(c, BST_ERR_SHAPE, "a %s tensor's innermost dim must stay innermost",
                    bst_dtype_name(x->dtype));
    bsti_type *o = c->out;
    o->dtype = x->dtype;
    o->rank = x->rank;
    for (uint32_t i = 0; i < x->rank; i++) {
        uint32_t p = (uint32_t)perm->ints[i];
        o->shape[i] = x->shape[p];
        o->strides[i] = x->strides[p];
        o->sym[i] = x->sym[p];
    }
    set_alias(c, 0);
    return BST_OK;
}

static bst_status infer_transpose(ictx *c)
{
    bst_status st = need_rank(c, 0, 2, BST_MAX_DIMS);
    if (st)
        return st;
    const bsti_type *x = c->in[0];
    if (is_block(x->dtype))
        return fail(c, BST_ERR_SHAPE, "cannot transpose a %s tensor (blocks run along rows)",
                    bst_dtype_name(x->dtype));
    *c->out = *x;
    uint32_t r = x->rank;
    c->out->shape[r - 1] = x->shape[r - 2];
    c->out->shape[r - 2] = x->shape[r - 1];
    c->out->strides[r - 1] = x->strides[r - 2];
    c->out->strides[r - 2] = x->strides[r - 1];
    c->out->sym[r - 1] = x->sym[r - 2];
    c->out->sym[r - 2] = x->sym[r - 1];
    set_alias(c, 0);
    return BST_OK;
}

static bst_status infer_argmax(ictx *c)
{
    bst_status st = need_rank(c, 0, 1, BST_MAX_DIMS);
    if (st)
        return st;
    out_like(c, c->in[0], BST_DTYPE_I32);
    c->out->rank--;
    c->out->shape[c->out->rank] = 0;
    c->out->sym[c->out->rank] = BST_SYM_NONE;
    bsti_type_set_contiguous(c->out);
    return BST_OK;
}

static bst_status infer_set_rows(ictx *c)
{
    bst_status st;
    const bsti_node *dst = &c->g->nodes[c->n->inputs[0]];
    if (dst->op != BST_OP_STATE && dst->op != BST_OP_SET_ROWS)
        return fail(c, BST_ERR_SHAPE,
                    "operand 0 (dst) must be a state (or a set_rows of one), "
                    "got %s",
                    bst_op_name(dst->op) ? bst_op_name(dst->op) : "?");
    if ((st = need_rank(c, 0, 2, 2)) || (st = need_rank(c, 1, 2, 2)) ||
        (st = need_rank(c, 2, 1, 1)) || (st = need_dtype(c, 2, BST_DTYPE_I32)) ||
        (st = need_match(c, 1, 0, 2, 0)) || (st = need_match(c, 0, 1, 1, 1)))
        return st;
    *c->out = *c->in[0];
    uint32_t root = dst->alias_of != BSTI_NONE ? dst->alias_of : c->n->inputs[0];
    c->n->alias_of = root;
    c->n->alias_offset = dst->alias_of != BSTI_NONE ? dst->alias_offset : 0;
    return BST_OK;
}

static bst_status infer_attention(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 3, 3)) || (st = need_rank(c, 1, 3, 3)) ||
        (st = need_rank(c, 2, 3, 3)))
        return st;
    const bsti_type *q = c->in[0], *k = c->in[1];
    for (uint32_t i = 0; i < 3; i++)
        if ((st = need_match(c, 1, i, 2, i)))
            return st;
    if ((st = need_match(c, 0, 2, 1, 2)))
        return st;
    if (q->sym[1] != BST_SYM_NONE || k->sym[1] != BST_SYM_NONE || q->shape[1] % k->shape[1] != 0)
        return fail(c, BST_ERR_SHAPE,
                    "operand 0 (q) heads (%s) must be a fixed multiple of operand 1 (k) heads (%s)",
                    dimstr(q, 1).s, dimstr(k, 1).s);
    if (c->n->n_inputs == 4) {
        bsti_type scores = {.dtype = BST_DTYPE_F32, .rank = 2};
        scores.shape[0] = q->shape[0];
        scores.sym[0] = q->sym[0];
        scores.shape[1] = k->shape[0];
        scores.sym[1] = k->sym[0];
        if ((st = need_dtype(c, 3, BST_DTYPE_F32)) ||
            (st = need_broadcast(c, &scores, "scores [T,S]", 3)))
            return st;
    }
    add_default(c->n, BST_ATTR_SCALE, 0, 1.0 / sqrt((double)q->shape[2]));
    add_default(c->n, BST_ATTR_CAUSAL, 0, 0);
    add_default(c->n, BST_ATTR_WINDOW, 0, 0);
    if ((st = need_finite(c, BST_ATTR_SCALE, false, false)))
        return st;
    int64_t causal = bsti_attr_int(c->n, BST_ATTR_CAUSAL, 0);
    int64_t window = bsti_attr_int(c->n, BST_ATTR_WINDOW, 0);
    if (causal != 0 && causal != 1)
        return fail(c, BST_ERR_SHAPE, "causal=%" PRId64 " must be 0 or 1", causal);
    if (window < 0)
        return fail(c, BST_ERR_SHAPE, "window=%" PRId64 " must be >= 0", window);
    out_like(c, q, BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_ffn_swiglu(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 1, BST_MAX_DIMS)) || (st = need_rank(c, 1, 2, 2)) ||
        (st = need_rank(c, 2, 2, 2)) || (st = need_rank(c, 3, 2, 2)))
        return st;
    uint32_t e = c->in[0]->rank - 1;
    if ((st = need_match(c, 0, e, 1, 1)) || (st = need_match(c, 1, 0, 2, 0)) ||
        (st = need_match(c, 1, 1, 2, 1)) || (st = need_match(c, 0, e, 3, 0)) ||
        (st = need_match(c, 1, 0, 3, 1)))
        return st;
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

static bst_status infer_rms_norm_mul(ictx *c)
{
    bst_status st;
    if ((st = need_rank(c, 0, 1, BST_MAX_DIMS)) || (st = need_rank(c, 1, 1, 1)) ||
        (st = need_match(c, 0, c->in[0]->rank - 1, 1, 0)) ||
        (st = need_finite(c, BST_ATTR_EPS, false, true)))
        return st;
    out_like(c, c->in[0], BST_DTYPE_F32);
    return BST_OK;
}

/* --- driver --- */

/* Attribute checks common to all ops: known, allowed here, right kind, no duplicates,
 * required ones present. Normalizes each into canonical form (unused fields zero). */
static bst_status check_attrs(ictx *c)
{
    bsti_node *n = c->n;
    if (n->n_attrs > BST_MAX_ATTRS)
        return fail(c, BST_ERR_GRAPH, "%u attributes (at most %d)", n->n_attrs, BST_MAX_ATTRS);
    for (uint32_t i = 0; i < n->n_attrs; i++) {
        bst_attr *a = &n->attrs[i];
        const char *an = bsti_attr_name((bst_attr_key)a->key);
        if (!an)
            return fail(c, BST_ERR_GRAPH, "unknown attribute key %u", a->key);
        if (!find_spec(n->op, a->key))
            return fail(c, BST_ERR_GRAPH, "takes no attribute %s", an);
        bst_attr_kind kind = bsti_attr_kind((bst_attr_key)a->key);
        if (a->kind != (uint32_t)kind)
            return fail(c, BST_ERR_GRAPH, "attribute %s must be %s", an,
                        kind == BST_ATTR_KIND_FLOAT ? "a float"
                        : kind == BST_ATTR_KIND_INT ? "an int"
                                                    : "a list of ints");
        if (kind == BST_ATTR_KIND_INTS) {
            if (a->count > BST_MAX_DIMS)
                return fail(c, BST_ERR_GRAPH, "attribute %s has %u entries (at most %d)", an,
                            a->count, BST_MAX_DIMS);
            for (uint32_t k = a->count; k < BST_MAX_DIMS; k++)
                a->ints[k] = 0;
            a->f = 0;
        } else if (kind == BST_ATTR_KIND_INT) {
            a->count = 1;
            for (uint32_t k = 1; k < BST_MAX_DIMS; k++)
                a->ints[k] = 0;
            a->f = 0;
        } else {
            a->count = 1;
            memset(a->ints, 0, sizeof a->ints);
        }
        a->struct_size = (uint32_t)sizeof *a;
        for (uint32_t j = 0; j < i; j++)
            if (n->attrs[j].key == a->key)
                return fail(c, BST_ERR_GRAPH, "attribute %s given twice", an);
    }
    for (unsigned i = 0; i < 4 && c->def->attrs[i].key != BST_ATTR_NONE; i++)
        if (c->def->attrs[i].required && !bsti_node_attr(n, c->def->attrs[i].key))
            return fail(c, BST_ERR_GRAPH, "missing attribute %s",
                        bsti_attr_name(c->def->attrs[i].key));
    return BST_OK;
}

static void sort_attrs(bsti_node *n)
{
    for (uint32_t i = 1; i < n->n_attrs; i++) {
        bst_attr a = n->attrs[i];
        uint32_t j = i;
        for (; j > 0 && n->attrs[j - 1].key > a.key; j--)
            n->attrs[j] = n->attrs[j - 1];
        n->attrs[j] = a;
    }
}

bst_status bsti_infer_node(bst_graph *g, uint32_t id)
{
    if (!g || id >= g->n_nodes)
        return bsti_fail(BST_ERR_INVALID_ARG, "infer: node %u does not exist", id);
    bsti_node *n = &g->nodes[id];
    const bsti_op_info *info = bsti_op_get(n->op);
    if (!info)
        return bsti_fail(BST_ERR_GRAPH, "node %%%u has unknown op id %d", id, (int)n->op);
    ictx c = {.g = g, .id = id, .n = n, .op = info->name, .def = &defs[n->op]};
    if (n->n_inputs < info->min_inputs || n->n_inputs > info->max_inputs) {
        if (info->min_inputs == info->max_inputs)
            return fail(&c, BST_ERR_GRAPH, "takes %u operand%s, got %u", info->min_inputs,
                        info->min_inputs == 1 ? "" : "s", n->n_inputs);
        return fail(&c, BST_ERR_GRAPH, "takes %u to %u operands, got %u", info->min_inputs,
                    info->max_inputs, n->n_inputs);
    }
    for (uint32_t i = 0; i < n->n_inputs; i++) {
        if (n->inputs[i] >= id)
            return fail(&c, BST_ERR_GRAPH, "operand %u is %%%u, not defined before %%%u", i,
                        n->inputs[i], id);
        c.in[i] = &g->nodes[n->inputs[i]].type;
        if (c.in[i]->rank > BST_MAX_DIMS || !bst_dtype_name(c.in[i]->dtype))
            return fail(&c, BST_ERR_GRAPH, "operand %u (%%%u) has no valid type", i, n->inputs[i]);
    }
    bst_status st = check_attrs(&c);
    if (st)
        return st;
    bsti_type out;
    memset(&out, 0, sizeof out);
    c.out = &out;
    n->alias_of = BSTI_NONE;
    n->alias_offset = 0;
    if ((st = c.def->infer(&c)))
        return st;
    /* Inputs' types are valid, but rules that add dims (concat) or take them from attributes
     * can leave the limits; checking the result here covers every rule. */
    if (!info->is_source && (st = check_type(&c, &out, "result")))
        return st;
    sort_attrs(n);
    n->type = out;
    if (info->has_effect)
        n->flags |= BSTI_NODE_EFFECT;
    else
        n->flags &= ~(uint32_t)BSTI_NODE_EFFECT;
    return BST_OK;
}
