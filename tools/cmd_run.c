/*
 * tools/cmd_run.c — `bastion run -m model.gguf -p "prompt"`: loads a model, evaluates the prompt
 * (or, with --chat, the prompt formatted as a user turn with the model's chat template), streams
 * generated text to stdout and ends with a timing line on stderr, as llama.cpp's tools do:
 *   load 123 ms, prompt 45.6 tok/s (12 tokens), generation 12.3 tok/s (64 tokens)
 * --json prints one machine-readable object instead (schema "bastion.run/1"). Ctrl-C stops
 * generation cleanly (the stop reason says "cancelled").
 */
#include "bench.h"
#include "cli_model.h"

#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMD "run"
#define DEFAULT_N_PREDICT 256u

void cli_usage_run(FILE *out)
{
    fprintf(out,
            "Usage: bastion run -m MODEL.gguf -p PROMPT [options]\n"
            "\n"
            "Generates text from PROMPT with a GGUF model and streams it to stdout; a timing\n"
            "line (load, prompt tok/s, generation tok/s) follows on stderr.\n"
            "\n"
            "Options:\n"
            "  -m, --model FILE        GGUF model file (required)\n"
            "  -p, --prompt TEXT       prompt (required)\n"
            "  -n, --n-predict N       tokens to generate at most (default %u)\n"
            "      --chat              format PROMPT as a user message with the chat template\n"
            "      --system TEXT       system message for --chat (default: the template's)\n"
            "      --chat-template NAME  use a named template (chatml, smollm, llama3, ...)\n"
            "                          instead of the model's\n"
            CLI_HELP_CTX_SIZE
            "  -b, --batch-size N      prompt tokens evaluated at once (default 512)\n"
            "      --temp T            sampling temperature (default 0: greedy, the same text\n"
            "                          on every run; llama.cpp samples at 0.8)\n"
            "      --top-k K           keep the K most likely tokens; 0 = off (default 40)\n"
            "      --top-p P           nucleus sampling; 1 = off (default 0.95)\n"
            "      --min-p P           drop tokens below P x the top probability (default 0.05)\n"
            "      --repeat-penalty R  penalty for recent tokens; 1 = off (default 1)\n"
            "      --repeat-last-n N   tokens the penalty looks back at (default 64)\n"
            "  -s, --seed S            sampling seed for --temp > 0 (default: from the clock;\n"
            "                          printed with --json)\n"
            "      --kv-type T         KV cache dtype: f16 (default: half the memory and cache\n"
            "                          reads) or f32\n"
            "      --backend LIST      backends to use, comma-separated, in priority order\n"
            "      --plugin-path DIRS  ':'-separated directories searched for plugins first\n"
            "  -t, --threads N         CPU threads (default: all)\n"
            "      --no-mmap           read the model into memory instead of mapping it\n"
            "      --tune MODE         kernel selection: off (default: static backend priority,\n"
            "                          each backend's first kernel), cached (measured times from\n"
            "                          the tuning database, measuring what it lacks), full\n"
            "                          (measure all again), frozen (database only); see\n"
            "                          'bastion explain' and 'bastion tune'\n"
            "      --no-cache          tune in memory only: read and write no database file\n"
            "      --json              print one JSON object (text, tokens, timings, peak RSS)\n"
            "                          instead of streaming\n"
            "      --profile FILE      write per-node timings (device, kernel, time, bytes) as\n"
            "                          a Chrome trace (chrome://tracing, Perfetto) to FILE and\n"
            "                          a top-N summary to stderr. Each node then runs alone, so\n"
            "                          the run is slower than without --profile\n"
            "      --profile-level L   nodes (default), partitions (what normally runs, timed\n"
            "                          per partition: no slowdown, coarser) or nodes-in-run\n"
            "                          (what normally runs, each node timed inside it by its\n"
            "                          backend; cpu only)\n"
            "      --profile-top N     rows of the summary (default 10)\n"
            "  -h, --help              show this help\n",
            DEFAULT_N_PREDICT);
}

typedef struct run_opts {
    cli_model_options model;
    const char *prompt;
    const char *system;
    const char *chat_template;
    bool chat, json;
    uint32_t n_predict, n_ctx, n_batch, kv_type;
    bst_sampler_params sp;
    bool seed_given;
    const char *profile;
    bst_profile_level profile_level;
    uint32_t profile_top;
} run_opts;

/* Collected output: the streamed text and the token ids. */
typedef struct run_out {
    bool stream;
    char *text;
    size_t len, cap;
    int32_t *tokens;
    uint32_t n_tokens, cap_tokens;
    bool oom;
    bool ends_newline;
} run_out;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool on_token(void *user, int32_t token, const char *piece, size_t length)
{
    run_out *o = user;
    if (o->stream && length > 0) {
        fwrite(piece, 1, length, stdout);
        fflush(stdout);
        o->ends_newline = piece[length - 1] == '\n';
    }
    if (o->len + length + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        while (cap < o->len + length + 1)
            cap *= 2;
        char *t = realloc(o->text, cap);
        if (!t) {
            o->oom = true;
            return false;
        }
        o->text = t;
        o->cap = cap;
    }
    memcpy(o->text + o->len, piece, length);
    o->len += length;
    o->text[o->len] = '\0';
    if (token >= 0) {
        if (o->n_tokens == o->cap_tokens) {
            uint32_t cap = o->cap_tokens ? o->cap_tokens * 2 : 256;
            int32_t *t = realloc(o->tokens, cap * sizeof *t);
            if (!t) {
                o->oom = true;
                return false;
            }
            o->tokens = t;
            o->cap_tokens = cap;
        }
        o->tokens[o->n_tokens++] = token;
    }
    return true;
}

static const char *stop_name(uint32_t reason)
{
    static const char *const names[] = {"eog", "max-tokens", "callback", "cancelled",
                                        "context-full"};
    return reason < sizeof names / sizeof names[0] ? names[reason] : "unknown";
}

static double per_second(uint32_t n, double seconds)
{
    return seconds > 0.0 ? (double)n / seconds : 0.0;
}

/* The prompt text to tokenize: PROMPT, or the chat-formatted conversation. */
static int build_prompt(const run_opts *o, const bst_model *model, char **out_text)
{
    *out_text = NULL;
    if (!o->chat) {
        *out_text = strdup(o->prompt);
        if (!*out_text) {
            cli_error(CMD, "out of memory");
            return CLI_EXIT_FAIL;
        }
        return CLI_EXIT_OK;
    }
    bst_chat_message msgs[2];
    uint32_t n = 0;
    if (o->system)
        msgs[n++] = (bst_chat_message){"system", o->system};
    msgs[n++] = (bst_chat_message){"user", o->prompt};
    char *text = NULL;
    bst_status st = bst_chat_format(model, o->chat_template, msgs, n, true, &text);
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "formatting the chat prompt");
    *out_text = text;
    return CLI_EXIT_OK;
}

static int tokenize(const bst_model *model, const char *text, bool special, int32_t **out,
                    uint32_t *out_n)
{
    size_t len = strlen(text);
    uint32_t n = 0;
    bst_status st = bst_tokenize(model, text, len, special, NULL, 0, &n);
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "tokenizing the prompt");
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        cli_error(CMD, "out of memory");
        return CLI_EXIT_FAIL;
    }
    uint32_t n2 = 0;
    st = bst_tokenize(model, text, len, special, ids, n, &n2);
    if (st != BST_OK || n2 != n) {
        free(ids);
        return cli_lib_error(CMD, st != BST_OK ? st : BST_ERR_INTERNAL, "tokenizing the prompt");
    }
    *out = ids;
    *out_n = n;
    return CLI_EXIT_OK;
}

static bool put(json_object *obj, const char *key, json_object *val)
{
    if (!val)
        return false;
    json_object_object_add(obj, key, val);
    return true;
}

static int print_json(const run_opts *o, const run_out *out, const bst_generate_stats *stats,
                      double load_ms, const bst_session_options *so, const char *model_name)
{
    json_object *root = json_object_new_object();
    json_object *timings = json_object_new_object();
    json_object *tokens = json_object_new_array();
    bool ok = root && timings && tokens;
    for (uint32_t i = 0; ok && i < out->n_tokens; i++)
        ok = json_object_array_add(tokens, json_object_new_int(out->tokens[i])) == 0;
    ok = ok && put(timings, "load_ms", json_object_new_double(load_ms)) &&
         put(timings, "prompt_ms", json_object_new_double(stats->prompt_seconds * 1e3)) &&
         put(timings, "prompt_tokens_per_s",
             json_object_new_double(per_second(stats->n_prompt, stats->prompt_seconds))) &&
         put(timings, "generation_ms", json_object_new_double(stats->generate_seconds * 1e3)) &&
         put(timings, "generation_tokens_per_s",
             json_object_new_double(per_second(stats->n_generated, stats->generate_seconds)));
    ok = ok && put(root, "schema", json_object_new_string("bastion.run/1")) &&
         put(root, "bastion_version", json_object_new_string(bst_version())) &&
         put(root, "model", json_object_new_string(o->model.path)) &&
         put(root, "model_name", json_object_new_string(model_name)) &&
         put(root, "text", json_object_new_string_len(out->text ? out->text : "",
                                                      (int)out->len)) &&
         put(root, "n_prompt", json_object_new_int64(stats->n_prompt)) &&
         put(root, "n_generated", json_object_new_int64(stats->n_generated)) &&
         put(root, "stop_reason", json_object_new_string(stop_name(stats->stop_reason))) &&
         put(root, "n_ctx", json_object_new_int64(so->n_ctx)) &&
         put(root, "seed", json_object_new_uint64(o->sp.seed)) &&
         put(root, "peak_rss_bytes", json_object_new_uint64(cli_peak_rss_bytes()));
    if (ok) {
        json_object_object_add(root, "tokens", tokens);
        tokens = NULL;
        json_object_object_add(root, "timings", timings);
        timings = NULL;
        const char *text = json_object_to_json_string_ext(
            root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                      JSON_C_TO_STRING_NOSLASHESCAPE);
        ok = text != NULL;
        if (ok)
            printf("%s\n", text);
    }
    json_object_put(tokens);
    json_object_put(timings);
    json_object_put(root);
    if (!ok) {
        cli_error(CMD, "out of memory building the JSON document");
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static int generate(const run_opts *o, bst_context *ctx, bst_model *model, double load_ms)
{
    char *prompt = NULL;
    int32_t *ids = NULL;
    uint32_t n_ids = 0;
    int rc = build_prompt(o, model, &prompt);
    if (rc == CLI_EXIT_OK)
        rc = tokenize(model, prompt, o->chat, &ids, &n_ids);
    free(prompt);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (n_ids == 0) {
        free(ids);
        cli_error(CMD, "the prompt gives no tokens");
        return CLI_EXIT_FAIL;
    }
    bst_session_options so = {0};
    so.struct_size = sizeof so;
    so.n_ctx = o->n_ctx;
    so.n_batch = o->n_batch;
    so.kv_type = o->kv_type;
    bst_session *session = NULL;
    double t0 = cli_now_ms();
    bst_status st = bst_session_create(model, &so, &session);
    load_ms += cli_now_ms() - t0; /* compiling the programs is part of getting ready */
    if (st != BST_OK) {
        free(ids);
        return cli_lib_error(CMD, st, "creating the session");
    }
    bst_model_info info = {0};
    info.struct_size = sizeof info;
    if (bst_model_get_info(model, &info) != BST_OK)
        info.name = "";
    if (so.n_ctx == 0)
        so.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;

    bench_profile *prof = NULL;
    if (o->profile) {
        bench_error e;
        memset(&e, 0, sizeof e);
        bst_status pst = bench_profile_create(&prof, &e);
        if (pst == BST_OK)
            pst = bench_profile_begin(prof, "bastion run", ctx, o->profile_level, &e);
        if (pst == BST_OK) {
            pst = bst_session_set_profiling(session, o->profile_level, bench_profile_record,
                                            prof);
            if (pst != BST_OK)
                bench_lib_fail(&e, pst, "enabling profiling");
        }
        if (pst != BST_OK) {
            cli_error(CMD, "%s", e.msg);
            bench_profile_destroy(prof);
            bst_session_destroy(session);
            free(ids);
            return CLI_EXIT_FAIL;
        }
    }

    run_out out = {.stream = !o->json};
    bst_generate_stats stats = {0};
    stats.struct_size = sizeof stats;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    bool handler = sigaction(SIGINT, &sa, &old_sa) == 0;
    st = bst_generate(session, ids, n_ids, o->n_predict, &o->sp, on_token, &out,
                      (const volatile int *)&interrupted, &stats);
    if (handler)
        sigaction(SIGINT, &old_sa, NULL);
    if (st != BST_OK) {
        rc = cli_lib_error(CMD, st, "generating");
    } else if (out.oom) {
        cli_error(CMD, "out of memory collecting the output");
        rc = CLI_EXIT_FAIL;
    } else if (o->json) {
        rc = print_json(o, &out, &stats, load_ms, &so, info.name ? info.name : "");
    } else {
        if (out.len > 0 && !out.ends_newline)
            fputc('\n', stdout);
        fflush(stdout);
        fprintf(stderr,
                "load %.0f ms, prompt %.1f tok/s (%u tokens), generation %.1f tok/s (%u "
                "tokens), stop: %s\n",
                load_ms, per_second(stats.n_prompt, stats.prompt_seconds), stats.n_prompt,
                per_second(stats.n_generated, stats.generate_seconds), stats.n_generated,
                stop_name(stats.stop_reason));
    }
    if (prof && rc == CLI_EXIT_OK) {
        bench_error e;
        memset(&e, 0, sizeof e);
        if (bench_profile_write_trace(prof, o->profile, &e) != BST_OK) {
            cli_error(CMD, "%s", e.msg);
            rc = CLI_EXIT_FAIL;
        } else {
            bench_profile_summary(prof, stderr, o->profile_top);
        }
    }
    bench_profile_destroy(prof);
    bst_session_destroy(session);
    free(ids);
    free(out.text);
    free(out.tokens);
    return rc;
}

int cli_cmd_run(int argc, char **argv)
{
    enum {
        OPT_CHAT = 256,
        OPT_SYSTEM,
        OPT_TEMPLATE,
        OPT_TEMP,
        OPT_TOP_K,
        OPT_TOP_P,
        OPT_MIN_P,
        OPT_REPEAT,
        OPT_REPEAT_N,
        OPT_KV_TYPE,
        OPT_JSON,
        OPT_PROFILE,
        OPT_PROFILE_LEVEL,
        OPT_PROFILE_TOP
    };
    static const struct option options[] = {
        CLI_MODEL_LONGOPTS,
        {"prompt", required_argument, NULL, 'p'},
        {"n-predict", required_argument, NULL, 'n'},
        {"chat", no_argument, NULL, OPT_CHAT},
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"chat-template", required_argument, NULL, OPT_TEMPLATE},
        CLI_SIZE_LONGOPTS,
        {"temp", required_argument, NULL, OPT_TEMP},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"min-p", required_argument, NULL, OPT_MIN_P},
        {"repeat-penalty", required_argument, NULL, OPT_REPEAT},
        {"repeat-last-n", required_argument, NULL, OPT_REPEAT_N},
        {"seed", required_argument, NULL, 's'},
        {"kv-type", required_argument, NULL, OPT_KV_TYPE},
        {"no-mmap", no_argument, NULL, CLI_OPT_NO_MMAP},
        {"tune", required_argument, NULL, CLI_OPT_TUNE},
        {"no-cache", no_argument, NULL, CLI_OPT_NO_CACHE},
        {"json", no_argument, NULL, OPT_JSON},
        {"profile", required_argument, NULL, OPT_PROFILE},
        {"profile-level", required_argument, NULL, OPT_PROFILE_LEVEL},
        {"profile-top", required_argument, NULL, OPT_PROFILE_TOP},
        {NULL, 0, NULL, 0},
    };
    run_opts o;
    memset(&o, 0, sizeof o);
    o.n_predict = DEFAULT_N_PREDICT;
    o.kv_type = CLI_DEFAULT_KV_TYPE;
    o.profile_level = BST_PROFILE_NODES;
    /* Static priority until measured placement compares whole-graph plans: per-node choices
     * can move single ops to an emulated device and pay more in copies than they save, and a
     * first run measures for tens of seconds. `--tune=cached` opts in. */
    o.model.tune_mode = BST_TUNE_OFF;
    o.profile_top = 10;
    o.sp.struct_size = sizeof o.sp;
    /* Greedy by default: the answer a user first sees (and a script depends on) is the same on
     * every run and every machine; small models also answer best that way. The other defaults
     * are llama.cpp's and apply once --temp is given. */
    o.sp.temperature = 0.0f;
    o.sp.top_k = 40;
    o.sp.top_p = 0.95f;
    o.sp.min_p = 0.05f;
    o.sp.repeat_penalty = 1.0f;
    o.sp.repeat_last_n = 64;
    opterr = 0;
    int c;
    uint32_t u;
    uint64_t u64;
    while ((c = getopt_long(argc, argv, ":m:p:n:c:b:s:t:", options, NULL)) != -1) {
        switch (c) {
        case 'p':
            o.prompt = optarg;
            break;
        case 'n':
            if (!cli_parse_u32(optarg, &o.n_predict))
                return cli_usage_error(CMD, "-n needs a token count, not '%s'", optarg);
            break;
        case OPT_CHAT:
            o.chat = true;
            break;
        case OPT_SYSTEM:
            o.system = optarg;
            break;
        case OPT_TEMPLATE:
            o.chat_template = optarg;
            break;
        case 'c':
        case 'b': {
            int rc = cli_size_option(CMD, c, optarg, &o.n_ctx, &o.n_batch, "--ctx-size", 1);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        case OPT_TEMP:
            if (!cli_parse_float(optarg, &o.sp.temperature))
                return cli_usage_error(CMD, "--temp needs a number, not '%s'", optarg);
            break;
        case OPT_TOP_K:
            if (!cli_parse_u32(optarg, &u) || u > INT32_MAX)
                return cli_usage_error(CMD, "--top-k needs a count, not '%s'", optarg);
            o.sp.top_k = (int32_t)u;
            break;
        case OPT_TOP_P:
            if (!cli_parse_float(optarg, &o.sp.top_p) || o.sp.top_p <= 0.0f)
                return cli_usage_error(CMD, "--top-p needs a number in (0, 1], not '%s'",
                                       optarg);
            break;
        case OPT_MIN_P:
            if (!cli_parse_float(optarg, &o.sp.min_p))
                return cli_usage_error(CMD, "--min-p needs a number, not '%s'", optarg);
            break;
        case OPT_REPEAT:
            if (!cli_parse_float(optarg, &o.sp.repeat_penalty) || o.sp.repeat_penalty <= 0.0f)
                return cli_usage_error(CMD, "--repeat-penalty needs a positive number, not '%s'",
                                       optarg);
            break;
        case OPT_REPEAT_N:
            if (!cli_parse_u32(optarg, &u) || u > INT32_MAX)
                return cli_usage_error(CMD, "--repeat-last-n needs a count, not '%s'", optarg);
            o.sp.repeat_last_n = (int32_t)u;
            break;
        case 's':
            if (!cli_parse_u64(optarg, &u64))
                return cli_usage_error(CMD, "--seed needs a non-negative integer, not '%s'",
                                       optarg);
            o.sp.seed = u64;
            o.seed_given = true;
            break;
        case OPT_KV_TYPE:
            if (!cli_parse_kv_type(optarg, &o.kv_type))
                return cli_usage_error(CMD, "--kv-type is f32 or f16, not '%s'", optarg);
            break;
        case OPT_JSON:
            o.json = true;
            break;
        case OPT_PROFILE:
            o.profile = optarg;
            break;
        case OPT_PROFILE_LEVEL:
            if (!bench_profile_parse_level(optarg, &o.profile_level))
                return cli_usage_error(CMD, "--profile-level is nodes, partitions or "
                                            "nodes-in-run, not '%s'", optarg);
            break;
        case OPT_PROFILE_TOP:
            if (!cli_parse_u32(optarg, &o.profile_top) || o.profile_top == 0)
                return cli_usage_error(CMD, "--profile-top needs a positive count, not '%s'",
                                       optarg);
            break;
        default: {
            int rc = cli_model_option(CMD, c, optarg, &o.model, argv);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        }
    }
    int rc = cli_model_args_done(CMD, argc, argv, &o.model);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!o.prompt)
        return cli_usage_error(CMD, "a prompt is required (-p TEXT)");
    if ((o.system || o.chat_template) && !o.chat)
        return cli_usage_error(CMD, "--system and --chat-template need --chat");
    if (!o.seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o.sp.seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
    }

    bst_context *ctx = NULL;
    bst_model *model = NULL;
    double load_ms = 0.0;
    rc = cli_model_open(CMD, &o.model, &ctx, &model, &load_ms);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = generate(&o, ctx, model, load_ms);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
    return rc;
}
