/*
 * tools/cli.h — what the `bastion` subcommands share: exit codes, the subcommand signature,
 * error reporting on stderr, file reading and number parsing. Every subcommand lives in its own
 * tools/cmd_*.c and uses only the public API (bastion/bastion.h) plus json-c.
 */
#ifndef BASTION_TOOLS_CLI_H
#define BASTION_TOOLS_CLI_H

#include <bastion/bastion.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Process exit codes, stable for scripts. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,  /* the command ran and failed: bad file, backend error, ... */
    CLI_EXIT_USAGE = 2  /* the command line itself is wrong */
};

/* A subcommand: argv[0] is the subcommand's name; returns a CLI_EXIT_* code. */
typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for `bastion --help` */
    cli_command_fn run;
    void (*usage)(FILE *out); /* full help of the subcommand */
} cli_command;

int cli_cmd_backends(int argc, char **argv);
void cli_usage_backends(FILE *out);
int cli_cmd_graph(int argc, char **argv);
void cli_usage_graph(FILE *out);
int cli_cmd_run_graph(int argc, char **argv);
void cli_usage_run_graph(FILE *out);
int cli_cmd_bench(int argc, char **argv);
void cli_usage_bench(FILE *out);
int cli_cmd_run(int argc, char **argv);
void cli_usage_run(FILE *out);
int cli_cmd_perplexity(int argc, char **argv);
void cli_usage_perplexity(FILE *out);
int cli_cmd_explain(int argc, char **argv);
void cli_usage_explain(FILE *out);
int cli_cmd_tune(int argc, char **argv);
void cli_usage_tune(FILE *out);
int cli_cmd_conformance(int argc, char **argv);
void cli_usage_conformance(FILE *out);

/* "bastion <cmd>: message" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) BST_PRINTF(2, 3);
/* Reports a usage error ("bastion <cmd>: message" plus a hint to --help) and returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) BST_PRINTF(2, 3);
/* Reports the library's last error after `status`: "bastion <cmd>: what: BST_ERR_X: message";
 * returns CLI_EXIT_FAIL. */
int cli_lib_error(const char *cmd, bst_status status, const char *what);
/* Reports an error from parsing or checking the graph file `path`: the library message starts
 * with "LINE:COL: " when it points into the file, giving "path:LINE:COL: message" as compilers
 * do; otherwise "path: message". Returns CLI_EXIT_FAIL. */
int cli_file_error(const char *path, bst_status status);

/* Parses the getopt_long error at optind after getopt returned '?' or ':' and reports it as a
 * usage error. `ret` is getopt's return value. */
int cli_getopt_error(const char *cmd, int ret, char **argv);

/* Reads a whole file into a NUL-terminated malloc'd buffer; on failure reports "cannot read"
 * with errno's text and returns NULL. */
char *cli_read_file(const char *cmd, const char *path, size_t *out_size);

/* Strict decimal parsing of a whole string; false on junk, sign where not allowed, overflow. */
bool cli_parse_u64(const char *text, uint64_t *out_value);
bool cli_parse_i64(const char *text, int64_t *out_value);

/* "f32[4,576]" into buf (always NUL-terminated). `extent` gives the dims to print (NULL: the
 * descriptor's shape); symbolic dims are written "n_tokens=4". */
void cli_format_type(const bst_tensor_desc *desc, const int64_t *extent, char *buf, size_t size);

const char *cli_sym_name(uint32_t sym); /* "n_tokens", "n_kv", NULL otherwise */

#endif /* BASTION_TOOLS_CLI_H */
