/*
 * tools/cli_model.c — helpers shared by the model subcommands (run, perplexity, explain, tune).
 */
#include "cli_model.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int cli_model_open(const char *cmd, const cli_model_options *o, bst_context **out_ctx,
                   bst_model **out_model, double *out_load_ms)
{
    *out_ctx = NULL;
    *out_model = NULL;
    double t0 = cli_now_ms();
    bst_context_options co = {0};
    co.struct_size = sizeof co;
    co.n_threads = o->n_threads;
    co.backends = o->backends;
    co.plugin_paths = o->plugin_path;
    co.tune_mode = o->tune_mode;
    co.no_cache = o->no_cache;
    bst_context *ctx = NULL;
    bst_status st = bst_context_create(&co, &ctx);
    if (st != BST_OK)
        return cli_lib_error(cmd, st, "creating the context");
    if (bst_context_device_count(ctx) == 0) {
        cli_error(cmd, "no backend device is available (see 'bastion backends')");
        bst_context_destroy(ctx);
        return CLI_EXIT_FAIL;
    }
    bst_model_options mo = {0};
    mo.struct_size = sizeof mo;
    mo.no_mmap = o->no_mmap;
    bst_model *model = NULL;
    st = bst_model_load(ctx, o->path, &mo, &model);
    if (st != BST_OK) {
        int rc = cli_lib_error(cmd, st, "loading the model");
        bst_context_destroy(ctx);
        return rc;
    }
    *out_ctx = ctx;
    *out_model = model;
    *out_load_ms = cli_now_ms() - t0;
    return CLI_EXIT_OK;
}

bool cli_parse_float(const char *text, float *out_value)
{
    if (!text || !*text)
        return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || fabs(v) > 1e30)
        return false;
    *out_value = (float)v;
    return true;
}

bool cli_parse_u32(const char *text, uint32_t *out_value)
{
    uint64_t v;
    if (!cli_parse_u64(text, &v) || v > UINT32_MAX)
        return false;
    *out_value = (uint32_t)v;
    return true;
}

double cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

uint64_t cli_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss < 0)
        return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

int cli_model_option(const char *cmd, int c, const char *arg, cli_model_options *o, char **argv)
{
    switch (c) {
    case 'm':
        o->path = arg;
        return CLI_EXIT_OK;
    case 't':
        if (!cli_parse_u32(arg, &o->n_threads) || o->n_threads == 0)
            return cli_usage_error(cmd, "--threads needs a positive count, not '%s'", arg);
        return CLI_EXIT_OK;
    case CLI_OPT_BACKEND:
        o->backends = arg;
        return CLI_EXIT_OK;
    case CLI_OPT_PLUGIN_PATH:
        o->plugin_path = arg;
        return CLI_EXIT_OK;
    case CLI_OPT_NO_MMAP:
        o->no_mmap = true;
        return CLI_EXIT_OK;
    case CLI_OPT_TUNE:
        if (!cli_parse_tune(arg, &o->tune_mode))
            return cli_usage_error(cmd, "--tune is off, cached, full or frozen, not '%s'", arg);
        return CLI_EXIT_OK;
    case CLI_OPT_NO_CACHE:
        o->no_cache = true;
        return CLI_EXIT_OK;
    default:
        return cli_getopt_error(cmd, c, argv);
    }
}

int cli_model_args_done(const char *cmd, int argc, char **argv, const cli_model_options *o)
{
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o->path)
        return cli_usage_error(cmd, "a model is required (-m MODEL.gguf)");
    return CLI_EXIT_OK;
}

int cli_size_option(const char *cmd, int c, const char *arg, uint32_t *n_ctx, uint32_t *n_batch,
                    const char *ctx_name, uint32_t ctx_min)
{
    uint32_t v;
    if (c == 'c') {
        if (!cli_parse_u32(arg, &v) || v == 0 || v < ctx_min) {
            if (ctx_min <= 1)
                return cli_usage_error(cmd, "%s needs a positive count, not '%s'", ctx_name, arg);
            return cli_usage_error(cmd, "%s needs a count of at least %u, not '%s'", ctx_name,
                                   ctx_min, arg);
        }
        *n_ctx = v;
        return CLI_EXIT_OK;
    }
    if (c == 'b') {
        if (!cli_parse_u32(arg, &v) || v == 0)
            return cli_usage_error(cmd, "--batch-size needs a positive count, not '%s'", arg);
        *n_batch = v;
        return CLI_EXIT_OK;
    }
    return -1;
}

bool cli_parse_kv_type(const char *text, uint32_t *out_dtype)
{
    if (strcmp(text, "f32") == 0)
        *out_dtype = BST_DTYPE_F32;
    else if (strcmp(text, "f16") == 0)
        *out_dtype = BST_DTYPE_F16;
    else
        return false;
    return true;
}

bool cli_parse_tune(const char *text, uint32_t *out_mode)
{
    static const char *const names[] = {"off", "cached", "full", "frozen"};
    for (uint32_t i = 0; text && i < 4; i++)
        if (strcmp(text, names[i]) == 0) {
            *out_mode = i;
            return true;
        }
    return false;
}
