/*
 * tools/cli_model.h — what the model subcommands (run, perplexity, explain, tune) share: their
 * options, opening a context and a model from them, number parsing for floats and 32-bit counts,
 * timing and peak memory.
 */
#ifndef BASTION_TOOLS_CLI_MODEL_H
#define BASTION_TOOLS_CLI_MODEL_H

#include "cli.h"

typedef struct cli_model_options {
    const char *path;        /* -m */
    const char *backends;    /* --backend, NULL = default selection */
    const char *plugin_path; /* --plugin-path */
    uint32_t n_threads;      /* --threads, 0 = all CPUs */
    bool no_mmap;            /* --no-mmap */
    bool no_cache;           /* --no-cache: tune in memory, nothing on disk */
    uint32_t tune_mode;      /* --tune: bst_tune_mode (0 = off) */
} cli_model_options;

/* getopt_long ids of the options the model subcommands share: above every short option
 * character and below each command's own ids (which start at 256). */
enum {
    CLI_OPT_BACKEND = 200,
    CLI_OPT_PLUGIN_PATH,
    CLI_OPT_NO_MMAP,
    CLI_OPT_TUNE,
    CLI_OPT_NO_CACHE,
};

/* The option entries every model subcommand takes: the model, where it runs, and how many threads.
 * --no-mmap, --tune and --no-cache are listed by the commands that take them. */
#define CLI_MODEL_LONGOPTS                                                                        \
    {"model", required_argument, NULL, 'm'},                                                      \
        {"backend", required_argument, NULL, CLI_OPT_BACKEND},                                    \
        {"plugin-path", required_argument, NULL, CLI_OPT_PLUGIN_PATH},                            \
        {"threads", required_argument, NULL, 't'}

/* Applies one shared option (-m, -t and the CLI_OPT_* ids) to `o`: a command's getopt loop hands
 * it every option it does not handle itself. Returns CLI_EXIT_OK when it was applied, else the
 * usage-error exit code (for an unknown option or a missing argument too: cli_getopt_error). */
int cli_model_option(const char *cmd, int c, const char *arg, cli_model_options *o, char **argv);

/* After a model subcommand's getopt loop: a usage error for a word left over or no -m, else
 * CLI_EXIT_OK. */
int cli_model_args_done(const char *cmd, int argc, char **argv, const cli_model_options *o);

/* -c and -b, as every model subcommand (run, perplexity, explain, tune) takes them. Each command
 * keeps its own defaults and its own -b help line (what the batch means differs); the option
 * entries and the -c help line of a context size are these. */
#define CLI_SIZE_LONGOPTS                                                                         \
    {"ctx-size", required_argument, NULL, 'c'}, {"batch-size", required_argument, NULL, 'b'}
#define CLI_HELP_CTX_SIZE                                                                         \
    "  -c, --ctx-size N        context size in tokens (default: min(training, 4096))\n"

/* Applies -c (c == 'c') to *n_ctx, a count of at least ctx_min that messages call ctx_name
 * ("--ctx-size"; perplexity's window is "--ctx", at least 4), or -b (c == 'b') to *n_batch, a
 * positive count. Returns -1 when `c` is neither, CLI_EXIT_OK when applied, or the usage-error
 * exit code. */
int cli_size_option(const char *cmd, int c, const char *arg, uint32_t *n_ctx, uint32_t *n_batch,
                    const char *ctx_name, uint32_t ctx_min);

/* "f32" / "f16" -> the KV cache dtype (--kv-type). */
bool cli_parse_kv_type(const char *text, uint32_t *out_dtype);

/* The KV cache dtype of every command's sessions unless --kv-type says otherwise (the library's
 * own default, bst_session_options.kv_type = 0, stays f32). f16, as llama.cpp's tools: half the
 * cache's memory and reads; with the fast CPU kernels, same run, SmolLM2-135M on two cores:
 * tg1024 +13% (400.7 vs 354.5 tok/s), pp512 +1.7%, tg128 alike; mean KL against f32 < 5e-3
 * (test_cli_model). The reference kernels' exact-arithmetic checks ask for f32 explicitly. */
#define CLI_DEFAULT_KV_TYPE BST_DTYPE_F16

/* "off", "cached", "full", "frozen" -> bst_tune_mode. */
bool cli_parse_tune(const char *text, uint32_t *out_mode);

/* Creates the context and loads the model; on failure reports it and returns CLI_EXIT_FAIL with
 * nothing to free. *out_load_ms is the wall time of both. */
int cli_model_open(const char *cmd, const cli_model_options *o, bst_context **out_ctx,
                   bst_model **out_model, double *out_load_ms);

bool cli_parse_float(const char *text, float *out_value); /* finite decimal */
bool cli_parse_u32(const char *text, uint32_t *out_value);

double cli_now_ms(void);          /* monotonic clock */
uint64_t cli_peak_rss_bytes(void); /* getrusage(RUSAGE_SELF).ru_maxrss */

#endif /* BASTION_TOOLS_CLI_MODEL_H */
