/*
 * runtime/model/model_internal.h — what a loaded model is inside, shared by the loader and its
 * checks (model.c), the graph builder of the llama architecture (llama.c) and sessions
 * (session.c). Not installed.
 *
 * A bst_model owns the opened GGUF file (whose mapped bytes every program built from the model
 * borrows as weight data), the tokenizer, and the validated hyper-parameters and tensor table.
 * After loading it is immutable except for `lock`, which serializes device work: programs of all
 * sessions of a model run on the context's devices, and the plugin ABI allows one thread at a
 * time per device (backend.h: "calls on one device come from one thread at a time").
 */
#ifndef BASTION_MODEL_INTERNAL_H
#define BASTION_MODEL_INTERNAL_H

#include "runtime/model/gguf.h"
#include "runtime/model/tokenizer.h"

#include <pthread.h>

typedef struct bsti_llama_hparams {
    uint32_t n_layers;
    uint32_t n_embd;
    uint32_t n_heads;
    uint32_t n_kv_heads;
    uint32_t head_dim;
    uint32_t n_ff;
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t rope_dims; /* rotated dims per head (llama.rope.dimension_count) */
    float rope_theta;   /* llama.rope.freq_base */
    float rms_eps;      /* llama.attention.layer_norm_rms_epsilon */
} bsti_llama_hparams;

typedef struct bsti_llama_layer {
    const bsti_gguf_tensor *attn_norm, *wq, *wk, *wv, *wo;
    const bsti_gguf_tensor *ffn_norm, *ffn_gate, *ffn_up, *ffn_down;
} bsti_llama_layer;

struct bst_model {
    bst_context *ctx; /* borrowed: must outlive the model */
    bsti_gguf *file;
    bsti_tokenizer *tok;
    bsti_llama_hparams hp;
    const bsti_gguf_tensor *tok_embd;
    const bsti_gguf_tensor *output_norm;
    const bsti_gguf_tensor *output; /* == tok_embd when the file ties the embeddings */
    bsti_llama_layer *layers;       /* hp.n_layers */
    char *arch;                     /* "llama" */
    char *name;                     /* general.name or "" */
    uint64_t n_params;
    uint64_t weight_bytes_per_token; /* see bst_model_info */
    pthread_mutex_t lock;
};

/* Names of the programs' inputs and outputs (llama.c builds them, session.c binds them). */
#define BSTI_LLAMA_TOKENS "tokens" /* i32[n_tokens]: token ids */
#define BSTI_LLAMA_POS "pos"       /* i32[n_tokens]: positions, also the KV cache rows written */
#define BSTI_LLAMA_MASK "mask"     /* f32[n_tokens, n_kv]: 0 where visible, -inf where not */
#define BSTI_LLAMA_HIDDEN "hidden" /* f32[n_tokens, n_embd]: final-normed hidden state */
#define BSTI_LLAMA_LOGITS "logits" /* f32[n_tokens, n_vocab] */

/* The transformer body: token ids at positions -> final-normed hidden states, writing each
 * layer's K and V into a KV cache state of n_ctx rows of dtype `kv_type` (f32 or f16).
 * n_tokens (bound n_batch) and n_kv (bound n_ctx) are symbolic, so one program serves prompt
 * chunks and single-token decoding at every cache length with compute proportional to the actual
 * extents. Weights are borrowed from the model's mapped file. */
BST_MUST_CHECK bst_status bsti_llama_build_body(const bst_model *model, uint32_t n_ctx,
                                                uint32_t n_batch, bst_dtype kv_type,
                                                bst_graph **out_graph);

/* The output head: hidden states [n_tokens (bound n_rows), n_embd] -> logits
 * [n_tokens, n_vocab]. Kept apart from the body so a decode step or the last token of a prompt
 * costs one row of the (large) head, while perplexity can still ask for every row. */
BST_MUST_CHECK bst_status bsti_llama_build_head(const bst_model *model, uint32_t n_rows,
                                                bst_graph **out_graph);

#endif /* BASTION_MODEL_INTERNAL_H */
