/*
 * tools/cmd_graph.c — `bastion graph FILE.bir`: parses an IR text file, optionally runs passes
 * on it, and prints the result as text (which parses back identically) or Graphviz DOT. Errors
 * point into the file as "FILE:LINE:COL: message", the form editors and CI logs link to.
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>

#define CMD "graph"

void cli_usage_graph(FILE *out)
{
    fprintf(out,
            "Usage: bastion graph FILE.bir [--passes LIST] [--dot]\n"
            "\n"
            "Parses the IR text file FILE.bir, runs the passes named in LIST (none by default) and\n"
            "prints the graph in text form, or as Graphviz DOT with --dot.\n"
            "\n"
            "Options:\n"
            "  --passes LIST  comma-separated passes, run in order: verify, infer, dce, cse, fold,\n"
            "                 lower\n"
            "  --dot          print Graphviz DOT instead of the text form\n"
            "  -h, --help     show this help\n"
            "\n"
            "Errors in the file are reported as FILE:LINE:COL: message; the exit code is 1.\n");
}

/* A misspelt pass is a command-line mistake, not a problem of the file: the library is the
 * authority on pass names, so ask it with an empty graph, before reading the file. */
static int check_pass_names(const char *passes)
{
    bst_graph *empty = NULL;
    bst_status st = bst_graph_create(&empty);
    if (st != BST_OK)
        return cli_lib_error(CMD, st, "creating a graph");
    st = bst_graph_run_passes(empty, passes);
    bst_graph_destroy(empty);
    if (st == BST_ERR_INVALID_ARG)
        return cli_usage_error(CMD, "--passes: %s", bst_last_error());
    return CLI_EXIT_OK;
}

int cli_cmd_graph(int argc, char **argv)
{
    static const struct option options[] = {
        {"passes", required_argument, NULL, 'p'},
        {"dot", no_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    const char *passes = NULL;
    bool dot = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'p':
            passes = optarg;
            break;
        case 'd':
            dot = true;
            break;
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (optind >= argc)
        return cli_usage_error(CMD, "missing FILE.bir");
    if (argc - optind > 1)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];
    if (passes && passes[0]) {
        int rc = check_pass_names(passes);
        if (rc != CLI_EXIT_OK)
            return rc;
    }

    size_t size = 0;
    char *text = cli_read_file(CMD, path, &size);
    if (!text)
        return CLI_EXIT_FAIL;
    bst_graph *graph = NULL;
    bst_status st = bst_graph_parse(text, size, &graph);
    free(text);
    if (st != BST_OK)
        return cli_file_error(path, st);

    int rc = CLI_EXIT_OK;
    if (passes && passes[0]) {
        st = bst_graph_run_passes(graph, passes);
        if (st != BST_OK)
            rc = cli_file_error(path, st);
    }
    if (rc == CLI_EXIT_OK) {
        char *out = NULL;
        st = dot ? bst_graph_to_dot(graph, &out) : bst_graph_print(graph, &out);
        if (st != BST_OK) {
            rc = cli_lib_error(CMD, st, dot ? "writing DOT" : "printing the graph");
        } else {
            fputs(out, stdout);
            bst_free(out);
        }
    }
    bst_graph_destroy(graph);
    return rc;
}
