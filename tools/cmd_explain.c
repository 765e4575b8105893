/*
 * tools/cmd_explain.c — `bastion explain`: compiles a model's session the way `bastion run`
 * does (kernel selection in the chosen tune mode, default cached) and prints, per node, the
 * chosen backend and kernel, its measured time, the runners-up with theirs, the transfer cost
 * charged, and whether the tuning database had the row.
 *
 * The default batch bound is 1: the session's body program is then the decode graph (one token
 * per step), which is where a generation spends its time; -b N explains the prompt graph of a
 * batch of N as `bastion run -b N` compiles it.
 */
#include "cli.h"
#include "cli_model.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CMD "explain"

void cli_usage_explain(FILE *out)
{
    fprintf(out,
            "Usage: bastion explain -m MODEL.gguf [options]\n"
            "\n"
            "Compiles the model's graphs and prints, for every node, the backend and kernel\n"
            "chosen, its measured time, the runners-up and their times, the transfer cost\n"
            "charged for inputs on another device, and whether the tuning database had the row\n"
            "(hit), it was measured now (miss-measured), or frozen mode lacked it. Each\n"
            "program's header gives the whole-graph plan kept (static, tuned-prompt,\n"
            "tuned-decode, tuned-blend, or lowered: every attention, ffn_swiglu and\n"
            "rms_norm_mul lowered to primitives), the decode-step and prompt-chunk times every\n"
            "candidate plan measured end to end, how long that check took, and whether decode\n"
            "and prompt were split over two programs (then listed as body and prompt-body).\n"
            "The header's counts are the kept program's; the plan line adds what tuning all\n"
            "candidate plans took.\n"
            "\n"
            "Options:\n"
            "  -m, --model FILE        GGUF model file (required)\n"
            "      --json              one JSON document instead of text\n"
            "      --tune MODE         off, cached (default: use rows, measure misses), full\n"
            "                          (measure everything again) or frozen (rows only)\n"
            "      --no-cache          keep measurements in memory: nothing read or written\n"
            CLI_HELP_CTX_SIZE
            "  -b, --batch-size N      tokens per step the graph is compiled for (default 1:\n"
            "                          the decode graph)\n"
            "      --backend LIST      backends to use, comma-separated, in priority order\n"
            "      --plugin-path DIRS  ':'-separated directories searched for plugins first\n"
            "  -t, --threads N         CPU threads (default: all)\n"
            "  -h, --help              show this help\n"
            "\n"
            "The graphs are compiled with an f16 KV cache, as `bastion run` uses by default.\n"
            "The database is $BASTION_CACHE_DIR/tuning.db, else\n"
            "$XDG_CACHE_HOME/bastion/tuning.db, else ~/.cache/bastion/tuning.db.\n"
            "Tuning leaves devices that emulate a GPU API on the CPU (PoCL, lavapipe) out of\n"
            "the measured candidates unless BASTION_TUNE_EMULATED=1.\n");
}

int cli_cmd_explain(int argc, char **argv)
{
    enum { OPT_JSON = 256 };
    static const struct option options[] = {
        CLI_MODEL_LONGOPTS,
        {"json", no_argument, NULL, OPT_JSON},
        {"tune", required_argument, NULL, CLI_OPT_TUNE},
        {"no-cache", no_argument, NULL, CLI_OPT_NO_CACHE},
        CLI_SIZE_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.tune_mode = BST_TUNE_CACHED;
    bool json = false;
    uint32_t n_ctx = 0, n_batch = 1;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":m:c:b:t:h", options, NULL)) != -1) {
        switch (c) {
        case OPT_JSON:
            json = true;
            break;
        case 'c':
        case 'b': {
            int rc = cli_size_option(CMD, c, optarg, &n_ctx, &n_batch, "--ctx-size", 1);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        }
        case 'h':
            cli_usage_explain(stdout);
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
    bst_session_options so;
    memset(&so, 0, sizeof so);
    so.struct_size = sizeof so;
    so.n_ctx = n_ctx;
    so.n_batch = n_batch;
    so.kv_type = CLI_DEFAULT_KV_TYPE; /* the graphs `bastion run` compiles */
    double t0 = cli_now_ms();
    bst_session *session = NULL;
    bst_status st = bst_session_create(model, &so, &session);
    double compile_ms = cli_now_ms() - t0;
    char *text = NULL;
    if (st == BST_OK)
        st = bst_session_explain(session, json, &text);
    if (st != BST_OK) {
        rc = cli_lib_error(CMD, st, "explaining the model's graphs");
    } else {
        fputs(text, stdout);
        if (!json)
            printf("# session compiled (placement and tuning included) in %.2f s\n",
                   compile_ms / 1e3);
        rc = CLI_EXIT_OK;
    }
    bst_free(text);
    bst_session_destroy(session);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
    return rc;
}
