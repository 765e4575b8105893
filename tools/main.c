/*
 * tools/main.c — the `bastion` command: global flags (--version, --help) and dispatch to one
 * subcommand per file. Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include "cli.h"

#include <string.h>

static const cli_command commands[] = {
    {"backends", "list backend plugins (loaded or skipped, and why) and their devices",
     cli_cmd_backends, cli_usage_backends},
    {"graph", "parse an IR text file, run passes, print it as text or DOT", cli_cmd_graph,
     cli_usage_graph},
    {"run", "generate text with a GGUF model", cli_cmd_run, cli_usage_run},
    {"perplexity", "perplexity of a model over a text file; KL divergence against saved logits",
     cli_cmd_perplexity, cli_usage_perplexity},
    {"explain", "why each node of a model's graph runs on its backend and kernel (tuning)",
     cli_cmd_explain, cli_usage_explain},
    {"tune", "measure a model's kernels on every backend into the tuning database",
     cli_cmd_tune, cli_usage_tune},
    {"run-graph", "run an IR text file on the backends and print its outputs", cli_cmd_run_graph,
     cli_usage_run_graph},
    {"bench", "benchmark ops per backend and kernel; reports and comparisons from JSON",
     cli_cmd_bench, cli_usage_bench},
    {"conformance", "run the op conformance suite and ABI checks against one backend plugin",
     cli_cmd_conformance, cli_usage_conformance},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: bastion <command> [options]\n"
            "       bastion --version | --help | help [<command>]\n"
            "\n"
            "Bastion runs transformer models locally on the backends this machine has.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "Run 'bastion <command> --help' for a command's options.\n"
            "\n"
            "Environment:\n"
            "  BASTION_BACKEND_PATH      ':'-separated directories searched for backend plugins\n"
            "  BASTION_BACKENDS          backends to use, in priority order (e.g. cpu,opencl)\n"
            "  BASTION_BACKENDS_DISABLE  backends never to use\n");
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "bastion: unknown command '%s'\nTry 'bastion --help'.\n", name);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *first = argv[1];
    if (strcmp(first, "--version") == 0 || strcmp(first, "-V") == 0) {
        if (argc > 2) {
            fprintf(stderr, "bastion: --version takes no arguments\n");
            return CLI_EXIT_USAGE;
        }
        printf("bastion %s\n", bst_version());
        return CLI_EXIT_OK;
    }
    if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0 || strcmp(first, "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (argc > 3) {
            fprintf(stderr, "bastion: help takes at most one command name\n");
            return CLI_EXIT_USAGE;
        }
        const cli_command *cmd = find_command(argv[2]);
        if (!cmd)
            return unknown_command(argv[2]);
        cmd->usage(stdout);
        return CLI_EXIT_OK;
    }
    if (first[0] == '-') {
        fprintf(stderr, "bastion: unknown option '%s'\nTry 'bastion --help'.\n", first);
        return CLI_EXIT_USAGE;
    }
    const cli_command *cmd = find_command(first);
    if (!cmd)
        return unknown_command(first);
    /* `bastion <cmd> --help` anywhere on the line wins over other errors, as users expect. */
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cmd->usage(stdout);
            return CLI_EXIT_OK;
        }
    }
    int rc = cmd->run(argc - 1, argv + 1);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "bastion %s: error writing output\n", cmd->name);
        return CLI_EXIT_FAIL;
    }
    return rc;
}
