/*
 * tools/cmd_tune.c — `bastion tune`: fills the tuning database for a model's shapes ahead of
 * time, so the first `bastion run` does not measure. It compiles the graphs `bastion run` and
 * `bastion explain` compile — the decode graph (batch 1) and the prompt graph (batch
 * --batch-size, default 512) — in cached mode (rows already there are kept) or full mode
 * (--full: measured again).
 *
 * Each graph's programs also get the whole-graph check (runtime/tune_plan.c): the candidate plans
 * are run end to end and the kept plan is stored, so later runs only rebuild it; its line of
 * `bastion explain` is printed per program.
 *
 * The budget is checked between graphs: a graph whose measurement has started is finished, so
 * the run may exceed --budget by the time of one graph (a few seconds on two cores for the
 * default model).
 */
#include "cli.h"
#include "cli_model.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CMD "tune"

void cli_usage_tune(FILE *out)
{
    fprintf(out,
            "Usage: bastion tune -m MODEL.gguf [options]\n"
            "\n"
            "Measures every kernel candidate of the model's decode and prompt graphs on every\n"
            "backend and stores the times in the tuning database, so later runs start without\n"
            "measuring ('bastion run --tune=cached' and '--tune=frozen' read them).\n"
            "\n"
            "Options:\n"
            "  -m, --model FILE        GGUF model file (required)\n"
            "      --budget SECONDS    stop starting new graphs after this long (default 60)\n"
            "      --full              measure again even where rows exist\n"
            CLI_HELP_CTX_SIZE
            "  -b, --batch-size N      prompt batch the prompt graph is compiled for (default 512)\n"
            "      --backend LIST      backends to use, comma-separated, in priority order\n"
            "      --plugin-path DIRS  ':'-separated directories searched for plugins first\n"
            "  -t, --threads N         CPU threads (default: all)\n"
            "  -h, --help              show this help\n"
            "\n"
            "The graphs are compiled with an f16 KV cache, as `bastion run` uses by default.\n"
            "Devices that emulate a GPU API on the CPU (PoCL's CPU device, lavapipe) are\n"
            "measured only where no other device runs the op, unless BASTION_TUNE_EMULATED=1.\n");
}

int cli_cmd_tune(int argc, char **argv)
{
    enum { OPT_BUDGET = 256, OPT_FULL };
    static const struct option options[] = {
        CLI_MODEL_LONGOPTS,
        {"budget", required_argument, NULL, OPT_BUDGET},
        {"full", no_argument, NULL, OPT_FULL},
        CLI_SIZE_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.tune_mode = BST_TUNE_CACHED;
    uint32_t n_ctx = 0, n_batch = 512, budget_s = 60;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:c:b:t:h", options, NULL)) != -1) {
        switch (c) {
        case OPT_BUDGET:
            if (!cli_parse_u32(optarg, &budget_s) || budget_s == 0)
                return cli_usage_error(CMD, "--budget needs a positive number of seconds, not "
                                       "'%s'", optarg);
            break;
        case OPT_FULL:
            mo.tune_mode = BST_TUNE_FULL;
            break;
        case 'c':
        case 'b': {
            int rc = cli_size_option(CMD, c, optarg, &n_ctx, &n_batch, "--ctx-size", 1);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        case 'h':
            cli_usage_tune(stdout);
            return CLI_EXIT_OK;
        default: {
            int rc = cli_model_option(CMD, c, optarg, &mo, argv);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        }
    }
    int rc = cli_model_args_done(CMD, argc, argv, &mo);
    if (rc != CLI_EXIT_OK)
        return rc;

    bst_context *ctx = NULL;
    bst_model *model = NULL;
    double load_ms = 0.0;
    rc = cli_model_open(CMD, &mo, &ctx, &model, &load_ms);
    if (rc != CLI_EXIT_OK)
        return rc;
    double t0 = cli_now_ms();
    const uint32_t batches[2] = {1, n_batch};
    const char *const names[2] = {"decode graph", "prompt graph"};
    rc = CLI_EXIT_OK;
    for (uint32_t i = 0; i < 2 && rc == CLI_EXIT_OK; i++) {
        if (i == 1 && n_batch == 1)
            break;
        double elapsed = (cli_now_ms() - t0) / 1e3;
        if (elapsed >= (double)budget_s) {
            fprintf(stderr, "bastion tune: budget of %u s used up; %s not tuned\n", budget_s,
                    names[i]);
            break;
        }
        bst_session_options so;
        memset(&so, 0, sizeof so);
        so.struct_size = sizeof so;
        so.n_ctx = n_ctx;
        so.n_batch = batches[i];
        so.kv_type = CLI_DEFAULT_KV_TYPE; /* the graphs `bastion run` compiles */
        double g0 = cli_now_ms();
        bst_session *session = NULL;
        bst_status st = bst_session_create(model, &so, &session);
        if (st != BST_OK) {
            rc = cli_lib_error(CMD, st, "tuning the model's graphs");
            break;
        }
        printf("tuned %s (batch %u) in %.2f s\n", names[i], batches[i], (cli_now_ms() - g0) / 1e3);
        /* The whole-graph plan each program kept, from the session's explanation. */
        char *text = NULL;
        if (bst_session_explain(session, false, &text) == BST_OK && text) {
            for (const char *line = text; line && *line;) {
                const char *end = strchr(line, '\n');
                int len = end ? (int)(end - line) : (int)strlen(line);
                if (strncmp(line, "## program ", 11) == 0 || strncmp(line, "# whole-graph", 13) == 0)
                    printf("  %.*s\n", len, line);
                line = end ? end + 1 : NULL;
            }
        }
        bst_free(text);
        fflush(stdout);
        bst_session_destroy(session);
    }
    if (rc == CLI_EXIT_OK)
        printf("total %.2f s\n", (cli_now_ms() - t0) / 1e3);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
    return rc;
}
