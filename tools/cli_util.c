/*
 * tools/cli_util.c — helpers shared by the subcommands: uniform error messages (so scripts and
 * editors can parse "FILE:LINE:COL: message"), strict number parsing, file reading and type
 * formatting.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bastion %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bastion %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fprintf(stderr, "Try 'bastion %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

int cli_lib_error(const char *cmd, bst_status status, const char *what)
{
    const char *name = bst_status_name(status);
    const char *msg = bst_last_error();
    fprintf(stderr, "bastion %s: %s: %s%s%s\n", cmd, what, name ? name : "error",
            msg[0] ? ": " : "", msg);
    return CLI_EXIT_FAIL;
}

/* True when `msg` starts with "LINE:COL: " (decimal numbers). */
static bool has_location(const char *msg)
{
    const char *p = msg;
    for (int part = 0; part < 2; part++) {
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
        if (*p != ':')
            return false;
        p++;
    }
    return *p == ' ';
}

int cli_file_error(const char *path, bst_status status)
{
    const char *msg = bst_last_error();
    if (has_location(msg))
        fprintf(stderr, "%s:%s\n", path, msg);
    else if (msg[0])
        fprintf(stderr, "%s: %s\n", path, msg);
    else
        fprintf(stderr, "%s: %s\n", path, bst_status_name(status) ? bst_status_name(status) : "error");
    return CLI_EXIT_FAIL;
}

int cli_getopt_error(const char *cmd, int ret, char **argv)
{
    /* getopt_long has already stepped past the offending word. */
    const char *word = optind > 0 ? argv[optind - 1] : "";
    if (ret == ':')
        return cli_usage_error(cmd, "option '%s' needs an argument", word);
    if (optopt && optopt != '?' && isprint(optopt) && strncmp(word, "--", 2) != 0)
        return cli_usage_error(cmd, "unknown option '-%c'", optopt);
    return cli_usage_error(cmd, "unknown option '%s'", word);
}

char *cli_read_file(const char *cmd, const char *path, size_t *out_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error(cmd, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (cap - size < 4096 + 1) {
            size_t grown_cap = cap ? cap * 2 : 8192;
            if (grown_cap < cap) {
                cli_error(cmd, "cannot read '%s': file too large", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            char *grown = realloc(buf, grown_cap);
            if (!grown) {
                cli_error(cmd, "cannot read '%s': out of memory", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
            cap = grown_cap;
        }
        size_t n = fread(buf + size, 1, 4096, f);
        size += n;
        if (n < 4096) {
            if (ferror(f)) {
                cli_error(cmd, "cannot read '%s': %s", path, strerror(errno));
                free(buf);
                fclose(f);
                return NULL;
            }
            break;
        }
    }
    fclose(f);
    buf[size] = '\0';
    if (out_size)
        *out_size = size;
    return buf;
}

bool cli_parse_u64(const char *text, uint64_t *out_value)
{
    if (!text || !isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end != '\0')
        return false;
    *out_value = (uint64_t)v;
    return true;
}

bool cli_parse_i64(const char *text, int64_t *out_value)
{
    if (!text)
        return false;
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (!isdigit((unsigned char)digits[0]))
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno || *end != '\0')
        return false;
    *out_value = (int64_t)v;
    return true;
}

const char *cli_sym_name(uint32_t sym)
{
    switch (sym) {
    case BST_SYM_N_TOKENS:
        return "n_tokens";
    case BST_SYM_N_KV:
        return "n_kv";
    default:
        return NULL;
    }
}

void cli_format_type(const bst_tensor_desc *desc, const int64_t *extent, char *buf, size_t size)
{
    if (size == 0)
        return;
    const char *dname = bst_dtype_name((bst_dtype)desc->dtype);
    size_t used = 0;
    int n = snprintf(buf, size, "%s[", dname ? dname : "?");
    for (uint32_t i = 0; n >= 0 && i < desc->rank && i < BST_MAX_DIMS; i++) {
        used += (size_t)n;
        if (used >= size)
            return;
        const char *sym = cli_sym_name(desc->sym[i]);
        int64_t dim = extent ? extent[i] : desc->shape[i];
        if (sym)
            n = snprintf(buf + used, size - used, "%s%s=%" PRId64, i ? "," : "", sym, dim);
        else
            n = snprintf(buf + used, size - used, "%s%" PRId64, i ? "," : "", dim);
    }
    if (n < 0)
        return;
    used += (size_t)n;
    if (used < size)
        snprintf(buf + used, size - used, "]");
}
