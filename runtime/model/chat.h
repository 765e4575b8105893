/*
 * runtime/model/chat.h — chat templates: turning a conversation into the exact prompt text a
 * model was trained on.
 *
 * GGUF files carry the template as Jinja text (tokenizer.chat_template). Rather than embed a
 * Jinja interpreter, the common templates are recognised by their markers (as llama.cpp's
 * llm_chat_detect_template does) and rendered by hand-written C that reproduces them byte for
 * byte, as llama.cpp's llm_chat_apply_template does. Known names include "chatml", "smollm"
 * (ChatML with SmolLM2's default system message, for files that lack a template), "llama2"
 * (and -sys, -sys-bos, -sys-strip), "llama3", "llama4", "mistral-v1/v3/v3-tekken/v7/v7-tekken",
 * "phi3", "phi4", "gemma", "zephyr", "falcon3", "command-r", "deepseek", "deepseek2/3", "vicuna",
 * "openchat", "granite", "exaone3", "chatglm3/4", "smolvlm".
 *
 * ChatML templates that carry a default system message (SmolLM2's "You are a helpful AI
 * assistant named SmolLM, trained by Hugging Face") emit it, as their Jinja does, when the
 * conversation does not start with a system message and the template used is the model's own.
 *
 * Thread-safety: pure functions.
 */
#ifndef BASTION_MODEL_CHAT_H
#define BASTION_MODEL_CHAT_H

#include <bastion/bastion.h>

/* Formats `n` messages. `template_name` selects a known template; NULL detects it from
 * `template_text` (the GGUF's Jinja text, may be NULL: then "chatml"). An unknown name, or text
 * that matches no known template, gives BST_ERR_UNSUPPORTED naming it. Adds the assistant-turn
 * prefix when add_assistant (templates whose format has none ignore it). *out_text is malloc'd
 * (free with free / bst_free). */
BST_MUST_CHECK bst_status bsti_chat_format(const char *template_text, const char *template_name,
                                           const bst_chat_message *msgs, uint32_t n,
                                           bool add_assistant, char **out_text);

/* The template name that would be used for `template_text` (NULL text -> "chatml"), or NULL when
 * it cannot be identified. The returned string is static. */
const char *bsti_chat_detect(const char *template_text);

/* The i-th name bsti_chat_format knows (the ones it renders, then the ones it recognises only to
 * refuse), or NULL past the last. The returned string is static. */
const char *bsti_chat_template_name(uint32_t i);

#endif /* BASTION_MODEL_CHAT_H */
