/*
 * tests/test_chat.c — chat templates.
 *
 * SmolLM2's expected prompts are what its own Jinja template (tokenizer.chat_template, copied
 * below) renders; they were checked with jinja2 (Environment().from_string(t).render(messages=...,
 * add_generation_prompt=...)) — not with this code. The other templates' expected strings are
 * written from each model family's documented prompt format (as llama.cpp's
 * llm_chat_apply_template renders them).
 */
#include "runtime/model/chat.h"
#include "runtime/model/gguf.h"
#include "runtime/model/tokenizer.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char smollm_template[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' "
    "}}{% endif %}";

#define SMOL_SYS "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

static void expect(const char *text, const char *name, const bst_chat_message *m, uint32_t n,
                   bool add_ass, const char *want)
{
    char *out = NULL;
    bst_status st = bsti_chat_format(text, name, m, n, add_ass, &out);
    if (st != BST_OK) fprintf(stderr, "\n  %s\n", bst_last_error());
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    CU_ASSERT_FATAL(out != NULL);
    if (strcmp(out, want) != 0) fprintf(stderr, "\n  got:  \"%s\"\n  want: \"%s\"\n", out, want);
    CU_ASSERT_STRING_EQUAL(out, want);
    free(out);
}

static void test_smollm_template(void)
{
    const bst_chat_message user[] = {{"user", "Hi"}};
    expect(smollm_template, NULL, user, 1, true,
           SMOL_SYS "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    const bst_chat_message sys[] = {{"system", "Be brief."}, {"user", "Hi"}};
    expect(smollm_template, NULL, sys, 2, true,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
           "<|im_start|>assistant\n");
    const bst_chat_message turns[] = {
        {"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me a joke."}};
    expect(smollm_template, NULL, turns, 3, false,
           SMOL_SYS "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I "
                    "help?<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n");
    /* No messages: the loop never runs, so no default system message either. */
    expect(smollm_template, NULL, NULL, 0, true, "<|im_start|>assistant\n");
    expect(smollm_template, NULL, NULL, 0, false, "");
    /* Naming the model's own family keeps its default; plain ChatML (no model text) has none. */
    expect(smollm_template, "chatml", user, 1, false, SMOL_SYS "<|im_start|>user\nHi<|im_end|>\n");
    expect(NULL, "chatml", user, 1, false, "<|im_start|>user\nHi<|im_end|>\n");
    expect(NULL, NULL, user, 1, true, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    /* "smollm" names SmolLM2's template without needing the file's text. */
    expect(NULL, "smollm", user, 1, true,
           SMOL_SYS "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    expect(NULL, "smollm", sys, 2, false,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    /* Another family named over a ChatML model: that family's format, no SmolLM default. */
    expect(smollm_template, "llama3", user, 1, true,
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CU_ASSERT_STRING_EQUAL(bsti_chat_detect(smollm_template), "chatml");
}

/* The same template, read from the real model file. */
static void test_smollm_model_file(void)
{
    char path[4096];
    const char *env = getenv("BASTION_MODEL");
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    else snprintf(path, sizeof path, "%s/../../models/SmolLM2-135M-Instruct.Q4_1.gguf", bst_test_fixture(""));
    bsti_gguf *f = NULL;
    bsti_tokenizer *tok = NULL;
    if (bsti_gguf_open(path, NULL, &f) != BST_OK) {
        fprintf(stderr, "\n  %s: %s (run tools/fetch-model.sh or set BASTION_MODEL)\n", path, bst_last_error());
        CU_FAIL_FATAL("default model missing");
    }
    CU_ASSERT_EQUAL_FATAL(bsti_tokenizer_create(f, &tok), BST_OK);
    const char *t = bsti_tokenizer_chat_template(tok);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT_STRING_EQUAL(t, smollm_template);
    const bst_chat_message user[] = {{"user", "What is 2+2?"}};
    expect(t, NULL, user, 1, true,
           SMOL_SYS "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    bsti_tokenizer_destroy(tok);
    bsti_gguf_close(f);
}

static void test_default_system_forms(void)
{
    /* Qwen2-style: the newline written as a Jinja escape ("\\n" in the text), the default in an
     * else branch after a conversation-supplied system message. */
    const char qwen[] =
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] "
        "+ '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, a helpful "
        "assistant.<|im_end|>\\n' }}{%- endif %}...<|im_start|>assistant";
    const bst_chat_message user[] = {{"user", "Hi"}};
    expect(qwen, NULL, user, 1, false,
           "<|im_start|>system\nYou are Qwen, a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\nHi<|im_end|>\n");
    /* A ChatML template without a literal default adds nothing. */
    const char plain[] = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + "
                         "'<|im_end|>\n'}}{% endfor %}";
    expect(plain, NULL, user, 1, false, "<|im_start|>user\nHi<|im_end|>\n");
}

static const bst_chat_message conv[] = {
    {"system", "You are X"}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Again"}};

static void test_other_templates(void)
{
    expect(NULL, "llama3", conv, 4, true,
           "<|start_header_id|>system<|end_header_id|>\n\nYou are X<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nAgain<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Llama 2 with system support (<<SYS>> inside the first [INST]); no generation prefix. */
    expect(NULL, "llama2-sys", conv, 4, true,
           "[INST] <<SYS>>\nYou are X\n<</SYS>>\n\nHi [/INST]Hello</s>[INST] Again [/INST]");
    /* Plain llama2 has no system role: the text goes first, followed by a newline. */
    expect(NULL, "llama2", conv, 4, true, "[INST] You are X\nHi [/INST]Hello</s>[INST] Again [/INST]");
    expect(NULL, "phi3", conv, 2, true,
           "<|system|>\nYou are X<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
    /* Gemma has no system role: it is merged into the first user turn; assistant is "model". */
    expect(NULL, "gemma", conv, 3, true,
           "<start_of_turn>user\nYou are X\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
           "<start_of_turn>model\n");
    expect(NULL, "zephyr", conv, 2, true,
           "<|system|>\nYou are X<|endoftext|>\n<|user|>\nHi<|endoftext|>\n<|assistant|>\n");
    expect(NULL, "mistral-v7", conv, 4, false,
           "[SYSTEM_PROMPT] You are X[/SYSTEM_PROMPT][INST] Hi[/INST] Hello</s>[INST] Again[/INST]");
    expect(NULL, "phi4", conv, 2, true,
           "<|im_start|>system<|im_sep|>You are X<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>"
           "<|im_start|>assistant<|im_sep|>");
    expect(NULL, "command-r", conv + 1, 1, true,
           "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
    /* Content trimming where the template trims (llama3), and not where it does not (chatml). */
    const bst_chat_message padded[] = {{"user", "  Hi \n"}};
    expect(NULL, "llama3", padded, 1, false, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    expect(NULL, "chatml", padded, 1, false, "<|im_start|>user\n  Hi \n<|im_end|>\n");
}

static void test_detection(void)
{
    struct {
        const char *text, *name;
    } cases[] = {
        {"{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{% endfor %}", "llama3"},
        {"{{ bos_token }}{% for m in messages %}<start_of_turn>{{ role }}{% endfor %}", "gemma"},
        {"{{ '<|user|>\n' }}{{ '<|assistant|>\n' }}{{ '<|end|>' }}", "phi3"},
        {"{{ '<|user|>' + content + '<|endoftext|>' }}", "zephyr"},
        {"{% if m['role'] == 'user' %}{{ '[INST] ' + content + ' [/INST]' }}{% endif %}", "llama2"},
        {"{{ '[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' }}[INST]", "llama2-sys"},
        {"[SYSTEM_PROMPT]{{ system }}[/SYSTEM_PROMPT][INST]", "mistral-v7"},
        {"<|im_start|>{{ role }}<|im_sep|>", "phi4"},
        {"chatml", "chatml"}, /* a name is accepted as the text, as llama.cpp does */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = bsti_chat_detect(cases[i].text);
        CU_ASSERT_PTR_NOT_NULL(got);
        if (got && strcmp(got, cases[i].name) != 0)
            fprintf(stderr, "\n  detect(%s) = %s, want %s\n", cases[i].text, got, cases[i].name);
        if (got) CU_ASSERT_STRING_EQUAL(got, cases[i].name);
    }
    /* Detected from text, rendered by family. */
    const bst_chat_message user[] = {{"user", "Hi"}};
    expect(cases[0].text, NULL, user, 1, true,
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_errors(void)
{
    const bst_chat_message user[] = {{"user", "Hi"}};
    char *out = (char *)1;
    CU_ASSERT_EQUAL(bsti_chat_format("{{ messages | tojson }}", NULL, user, 1, true, &out),
                    BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT(strstr(bst_last_error(), "cannot identify the chat template") != NULL);
    CU_ASSERT_EQUAL(bsti_chat_format(NULL, "no-such-template", user, 1, true, &out),
                    BST_ERR_UNSUPPORTED);
    CU_ASSERT(strstr(bst_last_error(), "no-such-template") != NULL);
    CU_ASSERT_EQUAL(bsti_chat_format(NULL, "gpt-oss", user, 1, true, &out), BST_ERR_UNSUPPORTED);
    CU_ASSERT(strstr(bst_last_error(), "gpt-oss") != NULL);
    CU_ASSERT_PTR_NULL(bsti_chat_detect("{{ messages | tojson }}"));
    const bst_chat_message bad[] = {{"user", NULL}};
    CU_ASSERT_EQUAL(bsti_chat_format(NULL, "chatml", bad, 1, true, &out), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_chat_format(NULL, "chatml", NULL, 2, true, &out), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_chat_format(NULL, "chatml", user, 1, true, NULL), BST_ERR_INVALID_ARG);
}

/* Every name bsti_chat_template_name lists is one bsti_chat_format knows: it renders a
 * conversation, or refuses with a message naming the template (the ones llama.cpp has and we do
 * not render); never "unknown". The names are distinct and the list ends. */
static void test_template_names(void)
{
    const bst_chat_message talk[] = {{"system", "Be brief."}, {"user", "Hi"}};
    uint32_t n = 0, rendered = 0;
    for (const char *name; (name = bsti_chat_template_name(n)) != NULL; n++) {
        for (uint32_t j = 0; j < n; j++)
            CU_ASSERT_STRING_NOT_EQUAL(bsti_chat_template_name(j), name);
        char *out = NULL;
        bst_status st = bsti_chat_format(NULL, name, talk, 2, true, &out);
        if (st == BST_OK) {
            CU_ASSERT(out != NULL && strstr(out, "Hi") != NULL);
            rendered++;
        } else {
            CU_ASSERT_EQUAL(st, BST_ERR_UNSUPPORTED);
            CU_ASSERT_PTR_NULL(out);
            CU_ASSERT(strstr(bst_last_error(), name) != NULL);
            CU_ASSERT(strstr(bst_last_error(), "unknown") == NULL);
        }
        free(out);
    }
    CU_ASSERT(n > rendered && rendered >= 30);
    CU_ASSERT_STRING_EQUAL(bsti_chat_template_name(0), "chatml");
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"smollm_template", test_smollm_template},
        {"smollm_model_file", test_smollm_model_file},
        {"default_system_forms", test_default_system_forms},
        {"other_templates", test_other_templates},
        {"detection", test_detection},
        {"errors", test_errors},
        {"template_names", test_template_names},
        {NULL, NULL},
    };
    return bst_test_run_suite("chat", cases);
}
