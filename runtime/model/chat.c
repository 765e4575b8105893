/*
 * runtime/model/chat.c — chat templates rendered in C.
 *
 * A GGUF file's template is Jinja; instead of interpreting Jinja we recognise the common
 * templates by markers, in the same order and with the same markers as llama.cpp's
 * llm_chat_detect_template (llama-chat.cpp), and render each exactly as llama.cpp's
 * llm_chat_apply_template does, so prompts match what llama.cpp feeds the same model.
 *
 * One thing llama.cpp's hand-written ChatML lacks and the models' own Jinja has: a default system
 * message emitted when the conversation does not start with one (SmolLM2: "You are a helpful AI
 * assistant named SmolLM, trained by Hugging Face"; Qwen2 has its own). When the model's template
 * text is ChatML and holds such a literal "<|im_start|>system\n...<|im_end|>" message, we take it
 * from the text and emit it as the Jinja would: before the first message, when that message is
 * not a system message.
 */
#include "runtime/model/chat.h"

#include "graph/status.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef enum tmpl_id {
    T_UNKNOWN = 0,
    T_CHATML,
    T_SMOLLM, /* ChatML with SmolLM2's default system message, for files without a template */
    T_LLAMA2,
    T_LLAMA2_SYS,
    T_LLAMA2_SYS_BOS,
    T_LLAMA2_SYS_STRIP,
    T_MISTRAL_V1,
    T_MISTRAL_V3,
    T_MISTRAL_V3_TEKKEN,
    T_MISTRAL_V7,
    T_MISTRAL_V7_TEKKEN,
    T_PHI3,
    T_PHI4,
    T_FALCON3,
    T_ZEPHYR,
    T_MONARCH,
    T_GEMMA,
    T_ORION,
    T_OPENCHAT,
    T_VICUNA,
    T_VICUNA_ORCA,
    T_DEEPSEEK,
    T_DEEPSEEK2,
    T_DEEPSEEK3,
    T_COMMAND_R,
    T_LLAMA3,
    T_CHATGLM3,
    T_CHATGLM4,
    T_GLMEDGE,
    T_MINICPM,
    T_EXAONE3,
    T_GRANITE,
    T_MEGREZ,
    T_LLAMA4,
    T_SMOLVLM,
    /* Recognised (so the error can name them) but not rendered. */
    T_NOT_IMPLEMENTED,
} tmpl_id;

typedef struct tmpl_name {
    const char *name;
    tmpl_id id;
} tmpl_name;

static const tmpl_name names[] = {
    {"chatml", T_CHATML},
    {"smollm", T_SMOLLM},
    {"llama2", T_LLAMA2},
    {"llama2-sys", T_LLAMA2_SYS},
    {"llama2-sys-bos", T_LLAMA2_SYS_BOS},
    {"llama2-sys-strip", T_LLAMA2_SYS_STRIP},
    {"mistral-v1", T_MISTRAL_V1},
    {"mistral-v3", T_MISTRAL_V3},
    {"mistral-v3-tekken", T_MISTRAL_V3_TEKKEN},
    {"mistral-v7", T_MISTRAL_V7},
    {"mistral-v7-tekken", T_MISTRAL_V7_TEKKEN},
    {"phi3", T_PHI3},
    {"phi4", T_PHI4},
    {"falcon3", T_FALCON3},
    {"zephyr", T_ZEPHYR},
    {"monarch", T_MONARCH},
    {"gemma", T_GEMMA},
    {"orion", T_ORION},
    {"openchat", T_OPENCHAT},
    {"vicuna", T_VICUNA},
    {"vicuna-orca", T_VICUNA_ORCA},
    {"deepseek", T_DEEPSEEK},
    {"deepseek2", T_DEEPSEEK2},
    {"deepseek3", T_DEEPSEEK3},
    {"command-r", T_COMMAND_R},
    {"llama3", T_LLAMA3},
    {"chatglm3", T_CHATGLM3},
    {"chatglm4", T_CHATGLM4},
    {"glmedge", T_GLMEDGE},
    {"minicpm", T_MINICPM},
    {"exaone3", T_EXAONE3},
    {"granite", T_GRANITE},
    {"megrez", T_MEGREZ},
    {"llama4", T_LLAMA4},
    {"smolvlm", T_SMOLVLM},
    /* llama.cpp knows these; we recognise them to say so, not to render them. */
    {"exaone4", T_NOT_IMPLEMENTED},
    {"rwkv-world", T_NOT_IMPLEMENTED},
    {"gigachat", T_NOT_IMPLEMENTED},
    {"yandex", T_NOT_IMPLEMENTED},
    {"bailing", T_NOT_IMPLEMENTED},
    {"dots1", T_NOT_IMPLEMENTED},
    {"hunyuan-moe", T_NOT_IMPLEMENTED},
    {"gpt-oss", T_NOT_IMPLEMENTED},
    {"hunyuan-dense", T_NOT_IMPLEMENTED},
    {"kimi-k2", T_NOT_IMPLEMENTED},
    {"seed_oss", T_NOT_IMPLEMENTED},
};

const char *bsti_chat_template_name(uint32_t i)
{
    return i < sizeof names / sizeof names[0] ? names[i].name : NULL;
}

static const tmpl_name *by_name(const char *name)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return &names[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* detection (llama.cpp llm_chat_detect_template, same order) */

static const char *detect_name(const char *t)
{
    const tmpl_name *n = by_name(t);
    if (n) return n->name;
#define HAS(s) (strstr(t, (s)) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>")) return "phi4";
        if (HAS("<end_of_utterance>")) return "smolvlm"; /* <|im_start|> as BOS, not ChatML */
        return "chatml";
    }
    if (strncmp(t, "mistral", 7) == 0 || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return "mistral-v7";
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return "mistral-v1";
            if (HAS("\"[INST]\"")) return "mistral-v3-tekken";
            return "mistral-v3";
        }
        if (HAS("content.strip()")) return "llama2-sys-strip";
        if (HAS("bos_token + '[INST]")) return "llama2-sys-bos";
        if (HAS("<<SYS>>")) return "llama2-sys";
        return "llama2";
    }
    if (HAS("<|assistant|>") && HAS("<|end|>")) return "phi3";
    if (HAS("[gMASK]<sop>")) return "chatglm4";
    if (HAS("<|assistant|>") && HAS("<|user|>")) return HAS("</s>") ? "falcon3" : "glmedge";
    if (HAS("<|{{ item['role'] }}|>") && HAS("<|begin_of_image|>")) return "glmedge";
    if (HAS("<|user|>") && HAS("<|endoftext|>")) return "zephyr";
    if (HAS("bos_token + message['role']")) return "monarch";
    if (HAS("<start_of_turn>")) return "gemma";
    if (HAS("'\\n\\nAssistant: ' + eos_token")) return "orion";
    if (HAS("GPT4 Correct ")) return "openchat";
    if (HAS("USER: ") && HAS("ASSISTANT: ")) return HAS("SYSTEM: ") ? "vicuna-orca" : "vicuna";
    if (HAS("### Instruction:") && HAS("<|EOT|>")) return "deepseek";
    if (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")) return "command-r";
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return "llama3";
    if (HAS("[gMASK]sop")) return "chatglm3";
    if (HAS("<\xe7\x94\xa8\xe6\x88\xb7>")) return "minicpm"; /* <用户> */
    if (HAS("'Assistant: ' + message['content'] + eos_token")) return "deepseek2";
    if (HAS("<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && HAS("<\xef\xbd\x9c" "User\xef\xbd\x9c>") &&
        HAS("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"))
        return "deepseek3";
    if (HAS("[|system|]") && HAS("[|assistant|]") && HAS("[|endofturn|]"))
        return HAS("[|tool|]") ? "exaone4" : "exaone3";
    if (HAS("rwkv-world") || HAS("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}")) return "rwkv-world";
    if (HAS("<|start_of_role|>")) return "granite";
    if (HAS("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]"))
        return "gigachat";
    if (HAS("<|role_start|>")) return "megrez";
    if (HAS(" \xd0\x90\xd1\x81\xd1\x81\xd0\xb8\xd1\x81\xd1\x82\xd0\xb5\xd0\xbd\xd1\x82:")) return "yandex";
    if (HAS("<role>ASSISTANT</role>") && HAS("'HUMAN'")) return "bailing";
    if (HAS("<|header_start|>") && HAS("<|header_end|>")) return "llama4";
    if (HAS("<|endofuserprompt|>")) return "dots1";
    if (HAS("<|extra_0|>") && HAS("<|extra_4|>")) return "hunyuan-moe";
    if (HAS("<|start|>") && HAS("<|channel|>")) return "gpt-oss";
    if (HAS("<\xef\xbd\x9chy_Assistant\xef\xbd\x9c>")) return "hunyuan-dense";
    if (HAS("<|im_assistant|>assistant<|im_middle|>")) return "kimi-k2";
    if (HAS("<seed:bos>")) return "seed_oss";
#undef HAS
    return NULL;
}

const char *bsti_chat_detect(const char *template_text)
{
    if (!template_text) return "chatml";
    return detect_name(template_text);
}

/* ------------------------------------------------------------------------------------------ */
/* output buffer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool failed;
} sbuf;

static void put(sbuf *b, const char *s, size_t len)
{
    if (b->failed) return;
    if (len > SIZE_MAX - b->n - 1) {
        b->failed = true;
        return;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap = cap > SIZE_MAX / 2 ? b->n + len + 1 : cap * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* llama.cpp's trim(): ASCII whitespace at both ends. */
static void put_trim(sbuf *b, const char *s)
{
    size_t start = 0, end = strlen(s);
    while (start < end && isspace((unsigned char)s[start])) start++;
    while (end > start && isspace((unsigned char)s[end - 1])) end--;
    put(b, s + start, end - start);
}

static bool is(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* ------------------------------------------------------------------------------------------ */
/* the ChatML default system message */

/* Returns a malloc'd copy of the literal message, or NULL when the template has none. */
static char *chatml_default_system(const char *t)
{
    static const char open[] = "<|im_start|>system";
    for (const char *p = t ? strstr(t, open) : NULL; p; p = strstr(p + 1, open)) {
        const char *s = p + sizeof open - 1;
        if (*s == '\n') s += 1;
        else if (s[0] == '\\' && s[1] == 'n') s += 2;
        else continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e || e <= s || (size_t)(e - s) > ((size_t)1 << 20)) continue;
        /* Only a plain literal counts: anything that ends the string or starts Jinja code means
         * the message comes from the conversation (e.g. "...system\n' + message['content']"). */
        bool literal = true;
        for (const char *q = s; q < e && literal; q++) {
            if (*q == '\'' || *q == '"') literal = false;
            if ((q[0] == '{' && (q[1] == '{' || q[1] == '%')) || (q[0] == '%' && q[1] == '}'))
                literal = false;
            if (*q == '\\') q++; /* skip the escaped character */
        }
        if (!literal) continue;
        size_t len = (size_t)(e - s);
        char *msg = malloc(len + 1);
        if (!msg) return NULL;
        size_t n = 0;
        for (const char *q = s; q < e; q++) {
            if (*q == '\\' && q + 1 < e) {
                q++;
                msg[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                msg[n++] = *q;
            }
        }
        msg[n] = '\0';
        return msg;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* rendering (llama.cpp llm_chat_apply_template) */

static void render(tmpl_id id, const bst_chat_message *m, uint32_t n, bool add_ass,
                   const char *default_system, sbuf *b)
{
    switch (id) {
    case T_SMOLLM:
    case T_CHATML:
        if (default_system && n > 0 && !is(m[0].role, "system")) {
            puts_(b, "<|im_start|>system\n");
            puts_(b, default_system);
            puts_(b, "<|im_end|>\n");
        }
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, "<|im_start|>");
            puts_(b, m[i].role);
            puts_(b, "\n");
            puts_(b, m[i].content);
            puts_(b, "<|im_end|>\n");
        }
        if (add_ass) puts_(b, "<|im_start|>assistant\n");
        break;
    case T_MISTRAL_V7:
    case T_MISTRAL_V7_TEKKEN: {
        const char *sp = id == T_MISTRAL_V7 ? " " : "";
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, "[SYSTEM_PROMPT]");
                puts_(b, sp);
                puts_(b, m[i].content);
                puts_(b, "[/SYSTEM_PROMPT]");
            } else if (is(m[i].role, "user")) {
                puts_(b, "[INST]");
                puts_(b, sp);
                puts_(b, m[i].content);
                puts_(b, "[/INST]");
            } else {
                puts_(b, sp);
                puts_(b, m[i].content);
                puts_(b, "</s>");
            }
        }
        break;
    }
    case T_MISTRAL_V1:
    case T_MISTRAL_V3:
    case T_MISTRAL_V3_TEKKEN: {
        const char *lead = id == T_MISTRAL_V1 ? " " : "";
        const char *trail = id == T_MISTRAL_V3_TEKKEN ? "" : " ";
        bool inside = false;
        for (uint32_t i = 0; i < n; i++) {
            if (!inside) {
                puts_(b, lead);
                puts_(b, "[INST]");
                puts_(b, trail);
                inside = true;
            }
            if (is(m[i].role, "system")) {
                puts_(b, m[i].content);
                puts_(b, "\n\n");
            } else if (is(m[i].role, "user")) {
                puts_(b, m[i].content);
                puts_(b, lead);
                puts_(b, "[/INST]");
            } else {
                puts_(b, trail);
                if (id == T_MISTRAL_V3) put_trim(b, m[i].content);
                else puts_(b, m[i].content);
                puts_(b, "</s>");
                inside = false;
            }
        }
        break;
    }
    case T_LLAMA2:
    case T_LLAMA2_SYS:
    case T_LLAMA2_SYS_BOS:
    case T_LLAMA2_SYS_STRIP: {
        bool sys = id != T_LLAMA2, bos_inside = id == T_LLAMA2_SYS_BOS;
        bool strip = id == T_LLAMA2_SYS_STRIP;
        bool inside = true; /* the tokenizer adds the first BOS */
        puts_(b, "[INST] ");
        for (uint32_t i = 0; i < n; i++) {
            if (!inside) {
                inside = true;
                puts_(b, bos_inside ? "<s>[INST] " : "[INST] ");
            }
            sbuf c = {0};
            if (strip) put_trim(&c, m[i].content);
            const char *content = strip ? (c.p ? c.p : "") : m[i].content;
            if (c.failed) b->failed = true;
            if (is(m[i].role, "system")) {
                if (sys) {
                    puts_(b, "<<SYS>>\n");
                    puts_(b, content);
                    puts_(b, "\n<</SYS>>\n\n");
                } else {
                    puts_(b, content);
                    puts_(b, "\n");
                }
            } else if (is(m[i].role, "user")) {
                puts_(b, content);
                puts_(b, " [/INST]");
            } else {
                puts_(b, content);
                puts_(b, "</s>");
                inside = false;
            }
            free(c.p);
        }
        break;
    }
    case T_PHI3:
    case T_FALCON3:
    case T_ZEPHYR: {
        const char *end = id == T_PHI3 ? "<|end|>\n" : id == T_FALCON3 ? "\n" : "<|endoftext|>\n";
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, "<|");
            puts_(b, m[i].role);
            puts_(b, "|>\n");
            puts_(b, m[i].content);
            puts_(b, end);
        }
        if (add_ass) puts_(b, "<|assistant|>\n");
        break;
    }
    case T_PHI4:
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, "<|im_start|>");
            puts_(b, m[i].role);
            puts_(b, "<|im_sep|>");
            puts_(b, m[i].content);
            puts_(b, "<|im_end|>");
        }
        if (add_ass) puts_(b, "<|im_start|>assistant<|im_sep|>");
        break;
    case T_MONARCH:
        for (uint32_t i = 0; i < n; i++) {
            if (i > 0) puts_(b, "<s>");
            puts_(b, m[i].role);
            puts_(b, "\n");
            puts_(b, m[i].content);
            puts_(b, "</s>\n");
        }
        if (add_ass) puts_(b, "<s>assistant\n");
        break;
    case T_GEMMA: {
        /* Gemma has no system role: the system text joins the next user turn. */
        sbuf sys = {0};
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                put_trim(&sys, m[i].content);
                continue;
            }
            const char *role = is(m[i].role, "assistant") ? "model" : m[i].role;
            puts_(b, "<start_of_turn>");
            puts_(b, role);
            puts_(b, "\n");
            if (sys.n > 0 && !is(role, "model")) {
                put(b, sys.p, sys.n);
                puts_(b, "\n\n");
                sys.n = 0;
            }
            put_trim(b, m[i].content);
            puts_(b, "<end_of_turn>\n");
        }
        if (sys.failed) b->failed = true;
        free(sys.p);
        if (add_ass) puts_(b, "<start_of_turn>model\n");
        break;
    }
    case T_ORION: {
        sbuf sys = {0};
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(&sys, m[i].content);
            } else if (is(m[i].role, "user")) {
                puts_(b, "Human: ");
                if (sys.n > 0) {
                    put(b, sys.p, sys.n);
                    puts_(b, "\n\n");
                    sys.n = 0;
                }
                puts_(b, m[i].content);
                puts_(b, "\n\nAssistant: </s>");
            } else {
                puts_(b, m[i].content);
                puts_(b, "</s>");
            }
        }
        if (sys.failed) b->failed = true;
        free(sys.p);
        break;
    }
    case T_OPENCHAT:
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, m[i].content);
            } else {
                puts_(b, "GPT4 Correct ");
                char first = (char)toupper((unsigned char)m[i].role[0]);
                if (m[i].role[0]) {
                    put(b, &first, 1);
                    puts_(b, m[i].role + 1);
                }
                puts_(b, ": ");
                puts_(b, m[i].content);
            }
            puts_(b, "<|end_of_turn|>");
        }
        if (add_ass) puts_(b, "GPT4 Correct Assistant:");
        break;
    case T_VICUNA:
    case T_VICUNA_ORCA:
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                if (id == T_VICUNA_ORCA) {
                    puts_(b, "SYSTEM: ");
                    puts_(b, m[i].content);
                    puts_(b, "\n");
                } else {
                    puts_(b, m[i].content);
                    puts_(b, "\n\n");
                }
            } else if (is(m[i].role, "user")) {
                puts_(b, "USER: ");
                puts_(b, m[i].content);
                puts_(b, "\n");
            } else if (is(m[i].role, "assistant")) {
                puts_(b, "ASSISTANT: ");
                puts_(b, m[i].content);
                puts_(b, "</s>\n");
            }
        }
        if (add_ass) puts_(b, "ASSISTANT:");
        break;
    case T_DEEPSEEK:
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, m[i].content);
            } else if (is(m[i].role, "user")) {
                puts_(b, "### Instruction:\n");
                puts_(b, m[i].content);
                puts_(b, "\n");
            } else if (is(m[i].role, "assistant")) {
                puts_(b, "### Response:\n");
                puts_(b, m[i].content);
                puts_(b, "\n<|EOT|>\n");
            }
        }
        if (add_ass) puts_(b, "### Response:\n");
        break;
    case T_DEEPSEEK2:
    case T_DEEPSEEK3: {
        static const char eos[] = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
        static const char user3[] = "<\xef\xbd\x9c" "User\xef\xbd\x9c>";
        static const char ass3[] = "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>";
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, m[i].content);
                puts_(b, "\n\n");
            } else if (is(m[i].role, "user")) {
                if (id == T_DEEPSEEK2) {
                    puts_(b, "User: ");
                    puts_(b, m[i].content);
                    puts_(b, "\n\n");
                } else {
                    puts_(b, user3);
                    puts_(b, m[i].content);
                }
            } else if (is(m[i].role, "assistant")) {
                puts_(b, id == T_DEEPSEEK2 ? "Assistant: " : ass3);
                puts_(b, m[i].content);
                puts_(b, eos);
            }
        }
        if (add_ass) puts_(b, id == T_DEEPSEEK2 ? "Assistant:" : ass3);
        break;
    }
    case T_COMMAND_R:
        for (uint32_t i = 0; i < n; i++) {
            const char *tag = is(m[i].role, "system")    ? "<|SYSTEM_TOKEN|>"
                              : is(m[i].role, "user")      ? "<|USER_TOKEN|>"
                              : is(m[i].role, "assistant") ? "<|CHATBOT_TOKEN|>"
                                                           : NULL;
            if (!tag) continue;
            puts_(b, "<|START_OF_TURN_TOKEN|>");
            puts_(b, tag);
            put_trim(b, m[i].content);
            puts_(b, "<|END_OF_TURN_TOKEN|>");
        }
        if (add_ass) puts_(b, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
        break;
    case T_LLAMA3:
    case T_LLAMA4: {
        bool v3 = id == T_LLAMA3;
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, v3 ? "<|start_header_id|>" : "<|header_start|>");
            puts_(b, m[i].role);
            puts_(b, v3 ? "<|end_header_id|>\n\n" : "<|header_end|>\n\n");
            put_trim(b, m[i].content);
            puts_(b, v3 ? "<|eot_id|>" : "<|eot|>");
        }
        if (add_ass)
            puts_(b, v3 ? "<|start_header_id|>assistant<|end_header_id|>\n\n"
                        : "<|header_start|>assistant<|header_end|>\n\n");
        break;
    }
    case T_CHATGLM3:
    case T_CHATGLM4:
    case T_GLMEDGE:
        if (id == T_CHATGLM3) puts_(b, "[gMASK]sop");
        if (id == T_CHATGLM4) puts_(b, "[gMASK]<sop>");
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, "<|");
            puts_(b, m[i].role);
            puts_(b, id == T_CHATGLM3 ? "|>\n " : "|>\n");
            puts_(b, m[i].content);
        }
        if (add_ass) puts_(b, id == T_CHATGLM4 ? "<|assistant|>\n" : "<|assistant|>");
        break;
    case T_MINICPM:
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "user")) {
                puts_(b, "<\xe7\x94\xa8\xe6\x88\xb7>");
                put_trim(b, m[i].content);
                puts_(b, "<AI>");
            } else {
                put_trim(b, m[i].content);
            }
        }
        break;
    case T_EXAONE3:
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, "[|system|]");
                put_trim(b, m[i].content);
                puts_(b, "[|endofturn|]\n");
            } else if (is(m[i].role, "user")) {
                puts_(b, "[|user|]");
                put_trim(b, m[i].content);
                puts_(b, "\n");
            } else if (is(m[i].role, "assistant")) {
                puts_(b, "[|assistant|]");
                put_trim(b, m[i].content);
                puts_(b, "[|endofturn|]\n");
            }
        }
        if (add_ass) puts_(b, "[|assistant|]");
        break;
    case T_GRANITE:
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, "<|start_of_role|>");
            puts_(b, m[i].role);
            puts_(b, "<|end_of_role|>");
            if (is(m[i].role, "assistant_tool_call")) puts_(b, "<|tool_call|>");
            puts_(b, m[i].content);
            puts_(b, "<|end_of_text|>\n");
        }
        if (add_ass) puts_(b, "<|start_of_role|>assistant<|end_of_role|>\n");
        break;
    case T_MEGREZ:
        for (uint32_t i = 0; i < n; i++) {
            puts_(b, "<|role_start|>");
            puts_(b, m[i].role);
            puts_(b, "<|role_end|>");
            puts_(b, m[i].content);
            puts_(b, "<|turn_end|>");
        }
        if (add_ass) puts_(b, "<|role_start|>assistant<|role_end|>");
        break;
    case T_SMOLVLM:
        puts_(b, "<|im_start|>");
        for (uint32_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, m[i].content);
                puts_(b, "\n\n");
            } else if (is(m[i].role, "user")) {
                puts_(b, "User: ");
                puts_(b, m[i].content);
                puts_(b, "<end_of_utterance>\n");
            } else {
                puts_(b, "Assistant: ");
                puts_(b, m[i].content);
                puts_(b, "<end_of_utterance>\n");
            }
        }
        if (add_ass) puts_(b, "Assistant:");
        break;
    case T_UNKNOWN:
    case T_NOT_IMPLEMENTED:
        break;
    }
}

bst_status bsti_chat_format(const char *template_text, const char *template_name,
                            const bst_chat_message *msgs, uint32_t n, bool add_assistant,
                            char **out_text)
{
    if (!out_text) return bsti_fail(BST_ERR_INVALID_ARG, "chat: out_text is NULL");
    *out_text = NULL;
    if (n && !msgs) return bsti_fail(BST_ERR_INVALID_ARG, "chat: messages is NULL");
    for (uint32_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return bsti_fail(BST_ERR_INVALID_ARG, "chat: message %u has a NULL role or content", i);

    const char *name;
    if (template_name) {
        name = template_name;
    } else if (template_text) {
        name = detect_name(template_text);
        if (!name)
            return bsti_fail(BST_ERR_UNSUPPORTED,
                             "chat: cannot identify the chat template (name one, e.g. \"chatml\")");
    } else {
        name = "chatml"; /* llama.cpp's choice for a model without a template */
    }
    const tmpl_name *t = by_name(name);
    if (!t) return bsti_fail(BST_ERR_UNSUPPORTED, "chat: unknown chat template \"%.64s\"", name);
    if (t->id == T_NOT_IMPLEMENTED)
        return bsti_fail(BST_ERR_UNSUPPORTED, "chat: chat template \"%s\" is not supported", t->name);

    /* The model's own default system message applies when its template is the one used. */
    char *default_system = NULL;
    if (t->id == T_CHATML && template_text) {
        const char *detected = detect_name(template_text);
        if (detected && is(detected, "chatml")) default_system = chatml_default_system(template_text);
    } else if (t->id == T_SMOLLM) {
        static const char smollm_system[] =
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
        default_system = malloc(sizeof smollm_system);
        if (!default_system) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "chat: out of memory");
        memcpy(default_system, smollm_system, sizeof smollm_system);
    }
    sbuf b = {0};
    put(&b, "", 0); /* an empty conversation still yields a (empty) string */
    render(t->id, msgs, n, add_assistant, default_system, &b);
    free(default_system);
    if (b.failed) {
        free(b.p);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "chat: out of memory");
    }
    *out_text = b.p;
    return BST_OK;
}
