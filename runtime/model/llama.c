/*
 * runtime/model/llama.c — the llama architecture as an IR graph, built from a validated model
 * (model.c checked every hyper-parameter and tensor shape used here).
 *
 * Per layer, with T = n_tokens and S = n_kv symbolic:
 *   h = rms_norm_mul(x, attn_norm)
 *   q = rope(reshape(h . wq^T, [T,Hq,D]), pos)    normal (adjacent-pair) RoPE: llama GGUFs store
 *   k = rope(reshape(h . wk^T, [T,Hkv,D]), pos)   Q and K rows permuted for exactly that
 *   v = h . wv^T
 *   cache_k = set_rows(cache_k, k, pos) ; cache_v likewise   (state [n_ctx, Hkv*D])
 *   a = attention(q, view(cache_k, [S,Hkv,D]), view(cache_v, [S,Hkv,D]), mask)
 *   x = x + reshape(a, [T,Hq*D]) . wo^T
 *   x = x + ffn_swiglu(rms_norm_mul(x, ffn_norm), gate, up, down)
 * and finally hidden = rms_norm_mul(x, output_norm). The mask is an input: with symbolic T and S
 * the compiler cannot build the causal mask (graph/pass_lower.c), so the session writes it on
 * the host. The views read the set_rows results, which orders every attention after the cache
 * write of its layer.
 */
#include "runtime/model/model_internal.h"

#include "graph/status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Graph under construction; the first failure sticks and later calls do nothing, so the
 * builder reads as straight-line code with one check at the end. */
typedef struct builder {
    bst_graph *g;
    bst_status st;
    bool file_mapped; /* weights borrow a read-only mapping of the model file */
    char where[64]; /* what was being built when st failed */
} builder;

static bst_value op(builder *b, bst_op o, const bst_value *in, uint32_t n_in,
                    const bst_attr *attrs, uint32_t n_attrs)
{
    bst_value out = BST_VALUE_NONE;
    if (b->st == BST_OK)
        b->st = bst_graph_add_op(b->g, o, in, n_in, attrs, n_attrs, &out);
    return out;
}

static bst_value op2(builder *b, bst_op o, bst_value x, bst_value y)
{
    bst_value in[2] = {x, y};
    return op(b, o, in, 2, NULL, 0);
}

static bst_value weight(builder *b, const bsti_gguf_tensor *t)
{
    bst_value v = BST_VALUE_NONE;
    if (b->st != BST_OK)
        return v;
    char name[128];
    size_t len = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
    memcpy(name, t->name.ptr, len);
    name[len] = '\0';
    b->st = bst_graph_add_weight(b->g, name, t->dtype, t->rank, t->shape, t->data, t->size, &v);
    if (b->st == BST_OK && b->file_mapped)
        b->g->nodes[v].flags |= BSTI_NODE_FILE_MAPPED;
    return v;
}

static bst_value input(builder *b, const char *name, bst_dtype dt, uint32_t rank,
                       const int64_t *shape, const uint32_t *sym)
{
    bst_value v = BST_VALUE_NONE;
    if (b->st == BST_OK)
        b->st = bst_graph_add_input(b->g, name, dt, rank, shape, sym, &v);
    return v;
}

static bst_value rms_norm_mul(builder *b, const bsti_llama_hparams *hp, bst_value x,
                              bst_value w)
{
    bst_attr eps = bst_attr_float(BST_ATTR_EPS, (double)hp->rms_eps);
    bst_value in[2] = {x, w};
    return op(b, BST_OP_RMS_NORM_MUL, in, 2, &eps, 1);
}

/* Reshape to `rank` dims whose outermost is n_tokens (bound `bound`). */
static bst_value reshape_tokens(builder *b, bst_value x, int64_t bound, uint32_t rank,
                                int64_t d1, int64_t d2)
{
    int64_t shape[3] = {bound, d1, d2};
    int64_t sym[3] = {BST_SYM_N_TOKENS, BST_SYM_NONE, BST_SYM_NONE};
    bst_attr a[2] = {bst_attr_ints(BST_ATTR_SHAPE, shape, rank),
                     bst_attr_ints(BST_ATTR_SYM, sym, rank)};
    return op(b, BST_OP_RESHAPE, &x, 1, a, 2);
}

static bst_value rope(builder *b, const bsti_llama_hparams *hp, bst_value x, bst_value pos)
{
    bst_attr a[3] = {bst_attr_int(BST_ATTR_ROPE_MODE, 0),
                     bst_attr_float(BST_ATTR_ROPE_THETA, (double)hp->rope_theta),
                     bst_attr_int(BST_ATTR_ROPE_DIMS, hp->rope_dims)};
    bst_value in[2] = {x, pos};
    return op(b, BST_OP_ROPE, in, 2, a, 3);
}

/* The first n_kv rows of a cache state, as [n_kv, Hkv, D]. */
static bst_value cache_view(builder *b, bst_value cache, int64_t n_ctx, int64_t n_kv_heads,
                            int64_t head_dim)
{
    int64_t shape[3] = {n_ctx, n_kv_heads, head_dim};
    int64_t sym[3] = {BST_SYM_N_KV, BST_SYM_NONE, BST_SYM_NONE};
    bst_attr a[2] = {bst_attr_ints(BST_ATTR_SHAPE, shape, 3), bst_attr_ints(BST_ATTR_SYM, sym, 3)};
    return op(b, BST_OP_VIEW, &cache, 1, a, 2);
}

static void build_layer(builder *b, const bst_model *m, uint32_t il, bst_value *x, bst_value pos,
                        bst_value mask, int64_t n_ctx, int64_t n_batch, bst_dtype kv_type)
{
    const bsti_llama_hparams *hp = &m->hp;
    const bsti_llama_layer *L = &m->layers[il];
    const int64_t hq = hp->n_heads, hkv = hp->n_kv_heads, d = hp->head_dim;

    bst_value h = rms_norm_mul(b, hp, *x, weight(b, L->attn_norm));
    bst_value q = op2(b, BST_OP_MATMUL, h, weight(b, L->wq));
    bst_value k = op2(b, BST_OP_MATMUL, h, weight(b, L->wk));
    bst_value v = op2(b, BST_OP_MATMUL, h, weight(b, L->wv));
    q = rope(b, hp, reshape_tokens(b, q, n_batch, 3, hq, d), pos);
    k = rope(b, hp, reshape_tokens(b, k, n_batch, 3, hkv, d), pos);
    k = reshape_tokens(b, k, n_batch, 2, hkv * d, 0);

    char name[32];
    int64_t cshape[2] = {n_ctx, hkv * d};
    bst_value kc = BST_VALUE_NONE, vc = BST_VALUE_NONE;
    snprintf(name, sizeof name, "cache.k.%u", il);
    if (b->st == BST_OK)
        b->st = bst_graph_add_state(b->g, name, kv_type, 2, cshape, &kc);
    snprintf(name, sizeof name, "cache.v.%u", il);
    if (b->st == BST_OK)
        b->st = bst_graph_add_state(b->g, name, kv_type, 2, cshape, &vc);
    bst_value kin[3] = {kc, k, pos}, vin[3] = {vc, v, pos};
    kc = op(b, BST_OP_SET_ROWS, kin, 3, NULL, 0);
    vc = op(b, BST_OP_SET_ROWS, vin, 3, NULL, 0);

    bst_attr att[2] = {bst_attr_float(BST_ATTR_SCALE, 1.0 / sqrt((double)d)),
                       bst_attr_int(BST_ATTR_CAUSAL, 1)};
    bst_value ain[4] = {q, cache_view(b, kc, n_ctx, hkv, d), cache_view(b, vc, n_ctx, hkv, d),
                        mask};
    bst_value a = op(b, BST_OP_ATTENTION, ain, 4, att, 2);
    a = reshape_tokens(b, a, n_batch, 2, hq * d, 0);
    *x = op2(b, BST_OP_ADD, *x, op2(b, BST_OP_MATMUL, a, weight(b, L->wo)));

    bst_value h2 = rms_norm_mul(b, hp, *x, weight(b, L->ffn_norm));
    bst_value fin[4] = {h2, weight(b, L->ffn_gate), weight(b, L->ffn_up),
                        weight(b, L->ffn_down)};
    *x = op2(b, BST_OP_ADD, *x, op(b, BST_OP_FFN_SWIGLU, fin, 4, NULL, 0));
    if (b->st != BST_OK && !b->where[0])
        snprintf(b->where, sizeof b->where, "layer %u", il);
}

static bst_status finish(builder *b, const char *what, bst_graph **out_graph)
{
    if (b->st != BST_OK) {
        bst_status st = bsti_fail_context(b->st, "building the llama %s graph%s%s", what,
                                          b->where[0] ? ", " : "", b->where);
        bst_graph_destroy(b->g);
        return st;
    }
    *out_graph = b->g;
    return BST_OK;
}

bst_status bsti_llama_build_body(const bst_model *model, uint32_t n_ctx, uint32_t n_batch,
                                 bst_dtype kv_type, bst_graph **out_graph)
{
    if (out_graph)
        *out_graph = NULL;
    if (!model || !out_graph || n_ctx == 0 || n_batch == 0)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_llama_build_body: bad argument");
    if (kv_type != BST_DTYPE_F32 && kv_type != BST_DTYPE_F16)
        return bsti_fail(BST_ERR_INVALID_ARG, "KV cache dtype must be f32 or f16");
    builder b = {.file_mapped = bsti_gguf_is_mapped(model->file)};
    b.st = bst_graph_create(&b.g);
    if (b.st != BST_OK)
        return b.st;
    int64_t tok_shape[1] = {n_batch}, mask_shape[2] = {n_batch, n_ctx};
    uint32_t tok_sym[1] = {BST_SYM_N_TOKENS}, mask_sym[2] = {BST_SYM_N_TOKENS, BST_SYM_N_KV};
    bst_value tokens = input(&b, BSTI_LLAMA_TOKENS, BST_DTYPE_I32, 1, tok_shape, tok_sym);
    bst_value pos = input(&b, BSTI_LLAMA_POS, BST_DTYPE_I32, 1, tok_shape, tok_sym);
    bst_value mask = input(&b, BSTI_LLAMA_MASK, BST_DTYPE_F32, 2, mask_shape, mask_sym);
    bst_value x = op2(&b, BST_OP_GET_ROWS, weight(&b, model->tok_embd), tokens);
    for (uint32_t il = 0; il < model->hp.n_layers && b.st == BST_OK; il++)
        build_layer(&b, model, il, &x, pos, mask, n_ctx, n_batch, kv_type);
    bst_value hidden = rms_norm_mul(&b, &model->hp, x, weight(&b, model->output_norm));
    if (b.st == BST_OK)
        b.st = bst_graph_mark_output(b.g, hidden, BSTI_LLAMA_HIDDEN);
    return finish(&b, "body", out_graph);
}

bst_status bsti_llama_build_head(const bst_model *model, uint32_t n_rows, bst_graph **out_graph)
{
    if (out_graph)
        *out_graph = NULL;
    if (!model || !out_graph || n_rows == 0)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_llama_build_head: bad argument");
    builder b = {.file_mapped = bsti_gguf_is_mapped(model->file)};
    b.st = bst_graph_create(&b.g);
    if (b.st != BST_OK)
        return b.st;
    int64_t shape[2] = {n_rows, model->hp.n_embd};
    uint32_t sym[2] = {BST_SYM_N_TOKENS, BST_SYM_NONE};
    bst_value h = input(&b, BSTI_LLAMA_HIDDEN, BST_DTYPE_F32, 2, shape, sym);
    bst_value logits = op2(&b, BST_OP_MATMUL, h, weight(&b, model->output));
    if (b.st == BST_OK)
        b.st = bst_graph_mark_output(b.g, logits, BSTI_LLAMA_LOGITS);
    return finish(&b, "output head", out_graph);
}
