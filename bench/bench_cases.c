/*
 * bench/bench_cases.c — what gets measured: the default case set, the command line's op, dtype
 * and shape selections, and each case as a one-node partition (descriptors, attributes, binding
 * sizes) with its own flop and byte counts, plus the random input data it runs on.
 *
 * The default set is the default model's own work (SmolLM2-135M: hidden 576, FFN 1536, 9 query
 * and 3 KV heads of 64, vocab 49152; q4_1 layer matrices and a q8_0 output head), for one token
 * (decode) and 512 tokens (prompt processing), its attention over an f16 KV cache of 512
 * positions (and both after a long context of 4096: a decode step at 4096 positions, a prompt at
 * 4608, as `bench model -d 4096` runs them), plus the standard GEMV/GEMM shapes
 * every CPU kernel paper quotes (m=4096, n=1 and 512, k=14336 and 4096), a short prompt
 * (m=k=4096, n=64) and the 2048^3 f32 GEMM that is compared with OpenBLAS.
 */
#include "bench.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Model facts of the default model (DESIGN.md "Main job"). */
enum { EMBD = 576, FF = 1536, HEADS = 9, KV_HEADS = 3, HEAD_DIM = 64, VOCAB = 49152 };
#define ROPE_THETA 100000.0
#define RMS_EPS 1e-5
#define KV_LEN 512 /* the context the attention-sized cases assume */
#define LONG_KV_LEN 4096 /* a long context, where attention outweighs the matmuls */
#define KV_TYPE BST_DTYPE_F16 /* the KV cache's dtype in `bastion run` and `bench model` */

typedef struct op_info {
    bst_op op;
    const char *form;
    uint32_t min_rank, max_rank;
    double flops_per_elem; /* nominal, per output element (matmul: computed exactly) */
    const char *default_dtypes; /* for user shapes */
} op_info;

static const op_info ops[] = {
    {BST_OP_MATMUL, "MxNxK", 3, 3, 0.0, "f32,q4_0,q4_1,q8_0"},
    {BST_OP_ADD, "R[xC...]", 1, 4, 1.0, "f32"},
    {BST_OP_MUL, "R[xC...]", 1, 4, 1.0, "f32"},
    {BST_OP_RMS_NORM, "R[xC...]", 1, 4, 3.0, "f32"},
    {BST_OP_ROPE, "TxHxD", 3, 3, 3.0, "f32"},
    {BST_OP_SOFTMAX, "R[xC...]", 1, 4, 5.0, "f32"},
    {BST_OP_SILU, "R[xC...]", 1, 4, 4.0, "f32"},
    {BST_OP_GELU, "R[xC...]", 1, 4, 8.0, "f32"},
    {BST_OP_ATTENTION, "TxSxHQxHKVxD", 5, 5, 0.0, "f32,f16"},
    {BST_OP_FFN_SWIGLU, "TxExF", 3, 3, 0.0, "q4_1,q8_0"},
};
#define N_OPS (sizeof ops / sizeof ops[0])

static const op_info *find_op(bst_op op)
{
    for (size_t i = 0; i < N_OPS; i++)
        if (ops[i].op == op)
            return &ops[i];
    return NULL;
}

const char *bench_ops_supported(void)
{
    return "matmul,add,mul,rms_norm,rope,softmax,silu,gelu,attention,ffn_swiglu";
}

const char *bench_op_shape_form(bst_op op)
{
    const op_info *o = find_op(op);
    return o ? o->form : NULL;
}

static bool op_by_name(const char *name, bst_op *out)
{
    for (size_t i = 0; i < N_OPS; i++) {
        const char *n = bst_op_name(ops[i].op);
        if (n && strcmp(n, name) == 0) {
            *out = ops[i].op;
            return true;
        }
    }
    return false;
}

static bool dtype_by_name(const char *name, bst_dtype *out)
{
    for (int t = 1; t < BST_DTYPE_COUNT; t++) {
        const char *n = bst_dtype_name((bst_dtype)t);
        if (n && strcmp(n, name) == 0) {
            *out = (bst_dtype)t;
            return true;
        }
    }
    return false;
}

static bool dtype_ok_for(bst_op op, bst_dtype dt)
{
    if (op == BST_OP_MATMUL || op == BST_OP_FFN_SWIGLU)
        return dt != BST_DTYPE_I32 && dt != BST_DTYPE_I8;
    return dt == BST_DTYPE_F32 || dt == BST_DTYPE_F16 || dt == BST_DTYPE_BF16;
}

bool bench_parse_shape(const char *text, bench_case *c, char *why, size_t why_size)
{
    c->rank = 0;
    const char *p = text;
    for (;;) {
        if (!isdigit((unsigned char)*p)) {
            snprintf(why, why_size, "shape '%s': expected a number at '%s'", text, p);
            return false;
        }
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p - '0');
            if (v > (INT64_C(1) << 31)) {
                snprintf(why, why_size, "shape '%s': dimension too large (max 2^31)", text);
                return false;
            }
            p++;
        }
        if (v == 0) {
            snprintf(why, why_size, "shape '%s': dimensions must be positive", text);
            return false;
        }
        if (c->rank == BENCH_CASE_MAX_DIMS) {
            snprintf(why, why_size, "shape '%s': more than %d dimensions", text,
                     BENCH_CASE_MAX_DIMS);
            return false;
        }
        c->dims[c->rank++] = v;
        if (*p == '\0')
            break;
        if (*p != 'x') {
            snprintf(why, why_size, "shape '%s': expected 'x' between dimensions", text);
            return false;
        }
        p++;
    }
    size_t used = 0;
    c->shape[0] = '\0';
    for (uint32_t i = 0; i < c->rank; i++) {
        int n = snprintf(c->shape + used, sizeof c->shape - used, "%s%lld", i ? "x" : "",
                         (long long)c->dims[i]);
        if (n < 0 || (size_t)n >= sizeof c->shape - used) {
            snprintf(why, why_size, "shape '%s' is too long", text);
            return false;
        }
        used += (size_t)n;
    }
    return true;
}

static bst_status push_case(bench_case_list *l, const bench_case *c, bench_error *e)
{
    if (!bench_grow((void **)&l->items, &l->cap, l->n + 1, sizeof *l->items))
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "case list: out of memory");
    l->items[l->n++] = *c;
    return BST_OK;
}

void bench_case_list_free(bench_case_list *l)
{
    if (!l)
        return;
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* True when `name` is in the comma-separated `list` (NULL: every name is). */
static bool in_list(const char *list, const char *name)
{
    if (!list)
        return true;
    size_t len = strlen(name);
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, name, n) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

/* Every name in `list` must be known: a typo must not silently select nothing. */
static bst_status check_list(const char *list, bool is_op, bench_error *e)
{
    if (!list)
        return BST_OK;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[32];
        if (n == 0 || n >= sizeof name)
            return bench_fail(e, BST_ERR_PARSE, "bad %s list '%s'", is_op ? "op" : "dtype", list);
        memcpy(name, p, n);
        name[n] = '\0';
        bst_op op;
        bst_dtype dt;
        if (is_op && !op_by_name(name, &op))
            return bench_fail(e, BST_ERR_PARSE, "unknown op '%s' (the harness times: %s)", name,
                              bench_ops_supported());
        if (!is_op && !dtype_by_name(name, &dt))
            return bench_fail(e, BST_ERR_PARSE, "unknown dtype '%s'", name);
        if (!end)
            return BST_OK;
        p = end + 1;
    }
}

static void make_case_dims(bench_case *c, bst_op op, bst_dtype dt, const char *label,
                           uint32_t rank, const int64_t *d)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    c->dtype = dt;
    c->rank = rank;
    size_t used = 0;
    for (uint32_t i = 0; i < rank; i++) {
        c->dims[i] = d[i];
        int n = snprintf(c->shape + used, sizeof c->shape - used, "%s%lld", i ? "x" : "",
                         (long long)d[i]);
        if (n > 0)
            used += (size_t)n;
    }
    snprintf(c->label, sizeof c->label, "%s", label);
}

static void make_case(bench_case *c, bst_op op, bst_dtype dt, const char *label, uint32_t rank,
                      int64_t d0, int64_t d1, int64_t d2)
{
    const int64_t d[3] = {d0, d1, d2};
    make_case_dims(c, op, dt, label, rank, d);
}

/* Appends c when it passes the op and dtype filters. */
static bst_status offer(bench_case_list *l, const bench_selection *s, const bench_case *c,
                        bench_error *e)
{
    if (!in_list(s->ops, bst_op_name(c->op)) || !in_list(s->dtypes, bst_dtype_name(c->dtype)))
        return BST_OK;
    return push_case(l, c, e);
}

static bst_status default_set(const bench_selection *s, bench_case_list *l, bench_error *e)
{
    static const struct {
        int64_t m, k;
        const char *what;
    } layers[] = {{FF, EMBD, "ffn_gate/up"},
                  {EMBD, FF, "ffn_down"},
                  {EMBD, EMBD, "attn_q/o"},
                  {KV_HEADS * HEAD_DIM, EMBD, "attn_k/v"}};
    const int64_t tokens[2] = {1, 512};
    const uint32_t n_tok = s->quick ? 1 : 2;
    bench_case c;
    bst_status st = BST_OK;
    char label[48];

    for (uint32_t t = 0; t < n_tok && st == BST_OK; t++) {
        const char *phase = tokens[t] == 1 ? "decode" : "prompt";
        for (size_t i = 0; i < sizeof layers / sizeof layers[0] && st == BST_OK; i++) {
            if (s->quick && i < 2)
                continue; /* quick: the two smallest layer shapes are enough to exercise it */
            snprintf(label, sizeof label, "smollm2 %s %s", layers[i].what, phase);
            make_case(&c, BST_OP_MATMUL, BST_DTYPE_Q4_1, label, 3, layers[i].m, tokens[t],
                      layers[i].k);
            st = offer(l, s, &c, e);
        }
        if (tokens[t] == 1 && !s->quick && st == BST_OK) {
            make_case(&c, BST_OP_MATMUL, BST_DTYPE_Q8_0, "smollm2 output head decode", 3, VOCAB,
                      1, EMBD);
            st = offer(l, s, &c, e);
        }
        if (!s->quick && st == BST_OK) { /* the fused FFN: gate, up and down together */
            snprintf(label, sizeof label, "smollm2 ffn %s", phase);
            make_case(&c, BST_OP_FFN_SWIGLU, BST_DTYPE_Q4_1, label, 3, tokens[t], EMBD, FF);
            st = offer(l, s, &c, e);
        }
        int64_t T = tokens[t];
        struct {
            bst_op op;
            const char *what;
            uint32_t rank;
            int64_t d0, d1, d2;
        } elem[] = {
            {BST_OP_RMS_NORM, "attn/ffn norm", 2, T, EMBD, 0},
            {BST_OP_ROPE, "rope q", 3, T, HEADS, HEAD_DIM},
            {BST_OP_ROPE, "rope k", 3, T, KV_HEADS, HEAD_DIM},
            {BST_OP_SOFTMAX, "attention scores", 3, HEADS, T, KV_LEN},
            {BST_OP_SILU, "ffn gate", 2, T, FF, 0},
            {BST_OP_MUL, "ffn gate*up", 2, T, FF, 0},
            {BST_OP_ADD, "residual", 2, T, EMBD, 0},
        };
        for (size_t i = 0; i < sizeof elem / sizeof elem[0] && st == BST_OK; i++) {
            snprintf(label, sizeof label, "smollm2 %s %s", elem[i].what, phase);
            make_case(&c, elem[i].op, BST_DTYPE_F32, label, elem[i].rank, elem[i].d0,
                      elem[i].d1, elem[i].d2);
            st = offer(l, s, &c, e);
        }
        if (!s->quick && st == BST_OK) { /* a KV cache of KV_LEN positions, as the model keeps */
            const int64_t att[5] = {T, KV_LEN, HEADS, KV_HEADS, HEAD_DIM};
            snprintf(label, sizeof label, "smollm2 attention %s", phase);
            make_case_dims(&c, BST_OP_ATTENTION, KV_TYPE, label, 5, att);
            st = offer(l, s, &c, e);
        }
        if (!s->quick && st == BST_OK) { /* after a long context (bench model's -d) */
            const int64_t att[5] = {T, LONG_KV_LEN + (T > 1 ? T : 0), HEADS, KV_HEADS, HEAD_DIM};
            snprintf(label, sizeof label, "smollm2 attention %s at %d", phase, LONG_KV_LEN);
            make_case_dims(&c, BST_OP_ATTENTION, KV_TYPE, label, 5, att);
            st = offer(l, s, &c, e);
        }
    }
    if (s->quick) {
        if (st == BST_OK) {
            make_case(&c, BST_OP_MATMUL, BST_DTYPE_F32, "quick f32 gemv", 3, EMBD, 1, EMBD);
            st = offer(l, s, &c, e);
        }
        return st;
    }

    static const bst_dtype std_types[] = {BST_DTYPE_F32, BST_DTYPE_F16, BST_DTYPE_Q4_0,
                                          BST_DTYPE_Q4_1, BST_DTYPE_Q8_0};
    static const int64_t std_k[] = {14336, 4096};
    for (uint32_t t = 0; t < 2 && st == BST_OK; t++)
        for (size_t k = 0; k < 2 && st == BST_OK; k++)
            for (size_t d = 0; d < sizeof std_types / sizeof std_types[0] && st == BST_OK; d++) {
                make_case(&c, BST_OP_MATMUL, std_types[d], tokens[t] == 1 ? "std gemv" : "std gemm",
                          3, 4096, tokens[t], std_k[k]);
                st = offer(l, s, &c, e);
            }
    /* A chat turn's prompt: tens of tokens, where packing a weight costs as much as using it. */
    for (size_t d = 0; d < sizeof std_types / sizeof std_types[0] && st == BST_OK; d++) {
        make_case(&c, BST_OP_MATMUL, std_types[d], "std short prompt", 3, 4096, 64, 4096);
        st = offer(l, s, &c, e);
    }
    if (st == BST_OK) {
        make_case(&c, BST_OP_MATMUL, BST_DTYPE_F32, "std gemm 2048^3", 3, 2048, 2048, 2048);
        st = offer(l, s, &c, e);
    }
    return st;
}

static bool attention_shape_ok(const bench_case *c)
{
    return c->rank == 5 && c->dims[0] <= c->dims[1] && c->dims[2] % c->dims[3] == 0;
}

/* Whether op oi in dtype t can take shape c (its rank already fits); why not in `why`. */
static bool shape_fits(const op_info *oi, bst_dtype t, const bench_case *c, char *why,
                       size_t why_size)
{
    const char *dname = bst_dtype_name(t);
    const uint32_t bs = bst_dtype_block_size(t);
    const int64_t inner = c->dims[c->rank - 1];
    if (oi->op == BST_OP_MATMUL && bs > 1 && inner % bs != 0)
        snprintf(why, why_size, "matmul %s %s: K=%lld must be a multiple of the %u-element block",
                 dname, c->shape, (long long)inner, bs);
    else if (oi->op == BST_OP_FFN_SWIGLU && bs > 1 &&
             (c->dims[1] % bs != 0 || c->dims[2] % bs != 0))
        snprintf(why, why_size,
                 "ffn_swiglu %s %s: E and F must be multiples of the %u-element block", dname,
                 c->shape, bs);
    else if (oi->op == BST_OP_ROPE && inner % 2 != 0)
        snprintf(why, why_size, "rope %s: D must be even", c->shape);
    else if (oi->op == BST_OP_ATTENTION && !attention_shape_ok(c))
        snprintf(why, why_size,
                 "attention %s: needs T <= S (queries are the last T of S positions) and HQ a "
                 "multiple of HKV",
                 c->shape);
    else
        return true;
    return false;
}

/* Every shape becomes a case of each selected op and dtype it fits (matmul's MxNxK and
 * ffn_swiglu's TxExF are both three numbers: `--op matmul,ffn_swiglu` takes each shape where it
 * makes sense). A shape that fits none of them is an error saying why. */
static bst_status user_set(const bench_selection *s, bench_case_list *l, bench_error *e)
{
    const char *op_list = s->ops ? s->ops : "matmul";
    for (size_t i = 0; i < s->n_shapes; i++) {
        bench_case shape;
        memset(&shape, 0, sizeof shape);
        char why[160];
        if (!bench_parse_shape(s->shapes[i], &shape, why, sizeof why))
            return bench_fail(e, BST_ERR_PARSE, "%s", why);
        bool rank_fits = false;
        size_t added = 0;
        why[0] = '\0';
        for (size_t o = 0; o < N_OPS; o++) {
            const op_info *oi = &ops[o];
            if (!in_list(op_list, bst_op_name(oi->op)) || shape.rank < oi->min_rank ||
                shape.rank > oi->max_rank)
                continue;
            rank_fits = true;
            const char *dts = s->dtypes ? s->dtypes : oi->default_dtypes;
            for (int t = 1; t < BST_DTYPE_COUNT; t++) {
                const char *dname = bst_dtype_name((bst_dtype)t);
                if (!dname || !in_list(dts, dname) || !dtype_ok_for(oi->op, (bst_dtype)t))
                    continue;
                char not_here[160];
                if (!shape_fits(oi, (bst_dtype)t, &shape, not_here, sizeof not_here)) {
                    if (!why[0])
                        snprintf(why, sizeof why, "%s", not_here);
                    continue;
                }
                bench_case c = shape;
                c.op = oi->op;
                c.dtype = (bst_dtype)t;
                snprintf(c.label, sizeof c.label, "user");
                bst_status st = push_case(l, &c, e);
                if (st != BST_OK)
                    return st;
                added++;
            }
        }
        if (!rank_fits)
            return bench_fail(e, BST_ERR_PARSE,
                              "shape '%s' fits none of the selected ops (%s); matmul takes MxNxK, "
                              "rope TxHxD, attention TxSxHQxHKVxD, ffn_swiglu TxExF, the others "
                              "1 to 4 dims",
                              s->shapes[i], op_list);
        if (added == 0 && why[0])
            return bench_fail(e, BST_ERR_PARSE, "%s", why);
    }
    return BST_OK;
}

bst_status bench_cases_select(const bench_selection *s, bench_case_list *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    bst_status st = check_list(s->ops, true, e);
    if (st == BST_OK)
        st = check_list(s->dtypes, false, e);
    if (st == BST_OK)
        st = s->n_shapes ? user_set(s, out, e) : default_set(s, out, e);
    if (st == BST_OK && out->n == 0)
        st = bench_fail(e, BST_ERR_NOT_FOUND, "no case matches the selection (ops %s, dtypes %s)",
                        s->ops ? s->ops : "all", s->dtypes ? s->dtypes : "default");
    if (st != BST_OK)
        bench_case_list_free(out);
    return st;
}

/* --- geometry ------------------------------------------------------------------------------ */

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* A contiguous tensor descriptor on binding `binding`; its byte size in *out_size. */
static bool make_desc(bst_tensor_desc *d, bst_dtype dt, uint32_t rank, const int64_t *shape,
                      uint32_t binding, uint64_t *out_size)
{
    memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
    d->dtype = dt;
    d->layout = BST_LAYOUT_NATIVE;
    d->rank = rank;
    d->binding = binding;
    uint64_t bs = bst_dtype_block_size(dt), bb = bst_dtype_block_bytes(dt);
    if (!bs || !bb || shape[rank - 1] % (int64_t)bs != 0)
        return false;
    uint64_t stride = bb;
    for (uint32_t i = rank; i-- > 0;) {
        d->shape[i] = shape[i];
        d->strides[i] = (int64_t)stride;
        uint64_t extent = i == rank - 1 ? (uint64_t)shape[i] / bs : (uint64_t)shape[i];
        if (!mul_ok(stride, extent, &stride) || stride > (UINT64_C(1) << 62))
            return false;
    }
    *out_size = stride;
    return true;
}

static void add_attr_int(bench_geometry *g, bst_attr_key key, int64_t v)
{
    bst_attr *a = &g->attrs[g->n_attrs++];
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->key = key;
    a->kind = BST_ATTR_KIND_INT;
    a->count = 1;
    a->ints[0] = v;
}

static void add_attr_float(bench_geometry *g, bst_attr_key key, double v)
{
    bst_attr *a = &g->attrs[g->n_attrs++];
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->key = key;
    a->kind = BST_ATTR_KIND_FLOAT;
    a->count = 1;
    a->f = v;
}

static void type_text(const bst_tensor_desc *d, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "%s[", bst_dtype_name((bst_dtype)d->dtype));
    for (uint32_t i = 0; i < d->rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                                 (long long)d->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

bool bench_weight_bound(const bench_geometry *g)
{
    if (g->weight < 0)
        return false;
    double elems = 0.0;
    for (uint32_t k = 0; k < g->n_weights; k++) {
        const bst_tensor_desc *w = &g->in[(uint32_t)g->weight + k];
        double n = 1.0;
        for (uint32_t i = 0; i < w->rank; i++)
            n *= (double)w->shape[i];
        elems += n;
    }
    return g->flops <= 16.0 * elems;
}

uint64_t bench_weight_bytes(const bench_geometry *g)
{
    uint64_t bytes = 0;
    for (uint32_t k = 0; g->weight >= 0 && k < g->n_weights; k++)
        bytes += g->size[(uint32_t)g->weight + k];
    return bytes;
}

/* Causal attention of the last T of S positions (decode: T = 1), as the model runs it: f32
 * queries and output, K and V of the case's dtype (the KV cache), no mask. Nominal flops: 2 D
 * for the score and 2 D for the weighted value of each visible (query, key) pair and head.
 * A decode step's K and V are rotated cache-cold like weights: in the model, the weights
 * streamed since the previous token have evicted every row of the cache but the one set_rows
 * just wrote (this bench read them warm until 2026-11, and timed the default model's decode
 * attention at S = 128 at half what the model takes). A prompt's are read as they are: its
 * set_rows has just written them. */
static bool attention_geometry(const bench_case *c, bench_geometry *g)
{
    const int64_t T = c->dims[0], S = c->dims[1], HQ = c->dims[2], HKV = c->dims[3],
                  D = c->dims[4];
    if (!attention_shape_ok(c))
        return false;
    const int64_t q_shape[3] = {T, HQ, D}, kv_shape[3] = {S, HKV, D};
    g->n_in = 3;
    bool ok = make_desc(&g->in[0], BST_DTYPE_F32, 3, q_shape, 0, &g->size[0]) &&
              make_desc(&g->in[1], c->dtype, 3, kv_shape, 1, &g->size[1]) &&
              make_desc(&g->in[2], c->dtype, 3, kv_shape, 2, &g->size[2]) &&
              make_desc(&g->out, BST_DTYPE_F32, 3, q_shape, 3, &g->size[3]);
    /* Attributes in key order, each one the op takes (the compiler's defaults included). */
    add_attr_float(g, BST_ATTR_SCALE, 1.0 / sqrt((double)D));
    add_attr_int(g, BST_ATTR_CAUSAL, 1);
    add_attr_int(g, BST_ATTR_WINDOW, 0);
    if (T == 1) {
        g->weight = 1;
        g->n_weights = 2;
    }
    const double visible = (double)T * (double)(S - T) + (double)T * (double)(T + 1) / 2.0;
    g->flops = 4.0 * (double)D * (double)HQ * visible;
    return ok;
}

/* The fused FFN of T tokens, (silu(x.gate^T) * x.up^T) . down^T with x f32[T,E], gate and up
 * [F,E] and down [E,F] in the case's dtype: three weights, all rotated cache-cold. Flops: its
 * three matmuls (silu and the product are nominal). */
static bool ffn_geometry(const bench_case *c, bench_geometry *g)
{
    const int64_t T = c->dims[0], E = c->dims[1], F = c->dims[2];
    const int64_t x_shape[2] = {T, E}, up_shape[2] = {F, E}, down_shape[2] = {E, F};
    g->n_in = 4;
    g->weight = 1;
    g->n_weights = 3;
    g->flops = 6.0 * (double)T * (double)E * (double)F;
    return make_desc(&g->in[0], BST_DTYPE_F32, 2, x_shape, 0, &g->size[0]) &&
           make_desc(&g->in[1], c->dtype, 2, up_shape, 1, &g->size[1]) &&
           make_desc(&g->in[2], c->dtype, 2, up_shape, 2, &g->size[2]) &&
           make_desc(&g->in[3], c->dtype, 2, down_shape, 3, &g->size[3]) &&
           make_desc(&g->out, BST_DTYPE_F32, 2, x_shape, 4, &g->size[4]);
}

bst_status bench_case_geometry(const bench_case *c, bench_geometry *g, bench_error *e)
{
    memset(g, 0, sizeof *g);
    g->weight = -1;
    const op_info *oi = find_op(c->op);
    if (!oi || c->rank < oi->min_rank || c->rank > oi->max_rank)
        return bench_fail(e, BST_ERR_INVALID_ARG, "%s %s: not a case the harness can build",
                          bst_op_name(c->op) ? bst_op_name(c->op) : "?", c->shape);
    bool ok = true;
    uint64_t numel = 1;
    for (uint32_t i = 0; i < c->rank; i++)
        ok = ok && c->dims[i] > 0 && mul_ok(numel, (uint64_t)c->dims[i], &numel);
    if (c->op == BST_OP_MATMUL) {
        int64_t M = c->dims[0], N = c->dims[1], K = c->dims[2];
        int64_t a_shape[2] = {N, K}, b_shape[2] = {M, K}, o_shape[2] = {N, M};
        g->n_in = 2;
        ok = ok && make_desc(&g->in[0], BST_DTYPE_F32, 2, a_shape, 0, &g->size[0]) &&
             make_desc(&g->in[1], c->dtype, 2, b_shape, 1, &g->size[1]) &&
             make_desc(&g->out, BST_DTYPE_F32, 2, o_shape, 2, &g->size[2]);
        g->weight = 1;
        g->n_weights = 1;
        g->flops = 2.0 * (double)M * (double)N * (double)K;
    } else if (c->op == BST_OP_ATTENTION) {
        ok = ok && attention_geometry(c, g);
    } else if (c->op == BST_OP_FFN_SWIGLU) {
        ok = ok && ffn_geometry(c, g);
    } else {
        uint32_t n_in = (c->op == BST_OP_ADD || c->op == BST_OP_MUL) ? 2 : 1;
        g->n_in = n_in;
        for (uint32_t i = 0; i < n_in; i++)
            ok = ok && make_desc(&g->in[i], c->dtype, c->rank, c->dims, i, &g->size[i]);
        if (c->op == BST_OP_ROPE) {
            int64_t pos_shape[1] = {c->dims[0]};
            g->n_in = 2;
            ok = ok && make_desc(&g->in[1], BST_DTYPE_I32, 1, pos_shape, 1, &g->size[1]);
            g->id_bound[1] = KV_LEN;
            add_attr_int(g, BST_ATTR_ROPE_MODE, 0);
            add_attr_float(g, BST_ATTR_ROPE_THETA, ROPE_THETA);
            add_attr_int(g, BST_ATTR_ROPE_DIMS, c->dims[2]);
        } else if (c->op == BST_OP_RMS_NORM) {
            add_attr_float(g, BST_ATTR_EPS, RMS_EPS);
        } else if (c->op == BST_OP_SOFTMAX) {
            add_attr_float(g, BST_ATTR_SCALE, 1.0 / 8.0); /* 1/sqrt(head dim 64) */
        }
        ok = ok && make_desc(&g->out, BST_DTYPE_F32, c->rank, c->dims, g->n_in, &g->size[g->n_in]);
        g->flops = oi->flops_per_elem * (double)numel;
    }
    if (!ok)
        return bench_fail(e, BST_ERR_OVERFLOW, "%s %s %s: sizes overflow or the innermost dim "
                          "is not a whole number of blocks",
                          bst_op_name(c->op), bst_dtype_name(c->dtype), c->shape);
    g->bytes = 0;
    for (uint32_t i = 0; i <= g->n_in; i++)
        g->bytes += (double)g->size[i];
    size_t used = 0;
    for (uint32_t i = 0; i < g->n_in; i++) {
        char t[64];
        type_text(&g->in[i], t, sizeof t);
        used += (size_t)snprintf(g->text + used, sizeof g->text - used, "%s%s", i ? ", " : "", t);
        if (used >= sizeof g->text)
            break;
    }
    char t[64];
    type_text(&g->out, t, sizeof t);
    if (used < sizeof g->text)
        snprintf(g->text + used, sizeof g->text - used, " -> %s", t);
    return BST_OK;
}

/* Cases above these sizes are first estimated from a smaller probe. */
#define PROBE_FLOPS 2.5e8
#define PROBE_BYTES 5e8
#define PROBE_TARGET 6.4e7

static double case_work(const bench_case *c)
{
    bench_geometry g;
    if (bench_case_geometry(c, &g, NULL) != BST_OK)
        return 0.0;
    return g.flops > g.bytes ? g.flops : g.bytes;
}

bool bench_case_probe(const bench_case *c, bench_case *out, double *out_scale)
{
    bench_geometry g;
    if (bench_case_geometry(c, &g, NULL) != BST_OK)
        return false;
    if (g.flops <= PROBE_FLOPS && g.bytes <= PROBE_BYTES)
        return false;
    bench_case p = *c;
    /* Shrink the dims that the work is linear in. For matmul, output rows first: each row
     * costs the same whatever their number, while fewer tokens change the kind of work (a GEMM
     * probed as a GEMV would be estimated at GEMV speed, often many times slower per flop). */
    int first = 0, second = c->op == BST_OP_MATMUL ? 1 : -1;
    int64_t floor1 = c->op == BST_OP_MATMUL ? 16 : 1, floor2 = 1;
    while (case_work(&p) > PROBE_TARGET) {
        if (c->op == BST_OP_ATTENTION) { /* fewer positions: T and S halved, so T <= S */
            if (p.dims[1] == 1)
                break;
            p.dims[0] = (p.dims[0] + 1) / 2;
            p.dims[1] = (p.dims[1] + 1) / 2;
        } else if (c->op == BST_OP_FFN_SWIGLU) { /* a narrower FFN, in whole 32-blocks */
            if (p.dims[2] <= 32)
                break;
            p.dims[2] = (p.dims[2] / 2 + 31) / 32 * 32;
        } else if (p.dims[first] > floor1)
            p.dims[first] = (p.dims[first] + 1) / 2;
        else if (second >= 0 && p.dims[second] > floor2)
            p.dims[second] = (p.dims[second] + 1) / 2;
        else
            break;
    }
    double full = case_work(c), small = case_work(&p);
    if (small <= 0.0 || small >= full)
        return false;
    size_t used = 0;
    p.shape[0] = '\0';
    for (uint32_t i = 0; i < p.rank; i++)
        used += (size_t)snprintf(p.shape + used, sizeof p.shape - used, "%s%lld", i ? "x" : "",
                                 (long long)p.dims[i]);
    *out = p;
    *out_scale = full / small;
    return true;
}

/* --- input data ---------------------------------------------------------------------------- */

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* An f16 bit pattern: random sign and mantissa, exponent field in [lo, hi] (normal values). */
static uint16_t rand_f16(uint64_t *s, unsigned lo, unsigned hi)
{
    uint64_t r = next(s);
    unsigned exp = lo + (unsigned)(r % (hi - lo + 1));
    return (uint16_t)(((r >> 8) & 1u) << 15 | exp << 10 | ((r >> 16) & 0x3FFu));
}

void bench_fill_input(const bench_geometry *g, uint32_t index, void *dst, uint64_t seed)
{
    const bst_tensor_desc *d = &g->in[index];
    uint64_t size = g->size[index];
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + index + 1;
    uint8_t *p = dst;
    switch ((bst_dtype)d->dtype) {
    case BST_DTYPE_F32:
        for (uint64_t i = 0; i + 4 <= size; i += 4) {
            float v = (float)((double)(next(&s) >> 40) / 8388608.0 - 1.0);
            memcpy(p + i, &v, 4);
        }
        return;
    case BST_DTYPE_F16:
        for (uint64_t i = 0; i + 2 <= size; i += 2) {
            uint16_t h = rand_f16(&s, 11, 14); /* |v| in [2^-4, 1) */
            memcpy(p + i, &h, 2);
        }
        return;
    case BST_DTYPE_BF16:
        for (uint64_t i = 0; i + 2 <= size; i += 2) {
            uint64_t r = next(&s);
            uint16_t h = (uint16_t)(((r & 1u) << 15) | ((123u + (unsigned)((r >> 8) % 4)) << 7) |
                                    ((r >> 16) & 0x7Fu));
            memcpy(p + i, &h, 2);
        }
        return;
    case BST_DTYPE_I32: {
        int64_t bound = g->id_bound[index] > 0 ? g->id_bound[index] : 1;
        for (uint64_t i = 0; i + 4 <= size; i += 4) {
            int32_t v = (int32_t)(next(&s) % (uint64_t)bound);
            memcpy(p + i, &v, 4);
        }
        return;
    }
    default:
        break;
    }
    /* Block types: random quants, and normal f16 scale (and min) fields so that every value is
     * finite and of a realistic magnitude. */
    uint32_t bb = bst_dtype_block_bytes((bst_dtype)d->dtype);
    bool has_min = d->dtype == BST_DTYPE_Q4_1 || d->dtype == BST_DTYPE_Q5_1;
    for (uint64_t i = 0; i + 8 <= size; i += 8) {
        uint64_t r = next(&s);
        memcpy(p + i, &r, 8);
    }
    for (uint64_t i = size & ~(uint64_t)7; i < size; i++)
        p[i] = (uint8_t)next(&s);
    for (uint64_t off = 0; bb && off + bb <= size; off += bb) {
        uint16_t dscale = rand_f16(&s, 5, 8) & 0x7FFFu; /* 2^-10 .. 2^-7, positive */
        memcpy(p + off, &dscale, 2);
        if (has_min) {
            uint16_t m = rand_f16(&s, 8, 11);
            memcpy(p + off + 2, &m, 2);
        }
    }
}
