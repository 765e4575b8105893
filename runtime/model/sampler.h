/*
 * runtime/model/sampler.h — picking the next token from logits.
 *
 * The chain follows llama.cpp's default order: repetition penalty -> top-k -> top-p -> min-p ->
 * temperature -> a seeded random draw. temperature <= 0 is greedy (argmax, first maximum, after
 * the repetition penalty). The random generator is our own (splitmix64-seeded xoshiro256**) so a
 * seed gives the same tokens on every platform and libc.
 *
 * Thread-safety: a sampler holds RNG state and scratch; use one per session/thread.
 */
#ifndef BASTION_MODEL_SAMPLER_H
#define BASTION_MODEL_SAMPLER_H

#include <bastion/bastion.h>

typedef struct bsti_sampler bsti_sampler;

/* Copies `p` (struct_size checked; NULL = greedy defaults). Invalid parameters (NaN, top_p <= 0,
 * repeat_penalty <= 0, n_vocab 0) give BST_ERR_INVALID_ARG. */
BST_MUST_CHECK bst_status bsti_sampler_create(const bst_sampler_params *p, uint32_t n_vocab,
                                              bsti_sampler **out);
void bsti_sampler_destroy(bsti_sampler *s);

/* Samples one token from n_vocab `logits` (not modified). `history` holds the tokens so far
 * (prompt and generated, oldest first); the last repeat_last_n of them are penalised. */
BST_MUST_CHECK bst_status bsti_sampler_sample(bsti_sampler *s, const float *logits,
                                              const int32_t *history, uint32_t n_history,
                                              int32_t *out_token);

#endif /* BASTION_MODEL_SAMPLER_H */
