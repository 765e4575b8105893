/*
 * tools/cmd_run_graph.c — `bastion run-graph FILE.bir`: compiles an IR text file for this
 * machine's backends, feeds every input (seeded random data or a raw file), runs it once and
 * prints each output as a checksum line (default) or as values. This is how a graph is checked
 * end to end on a backend before a model loader exists, and how two backends are compared:
 * same file, same seed, compare the lines.
 */
#include "cli.h"
#include "tensor_data.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CMD "run-graph"
#define DEFAULT_LIMIT 64

void cli_usage_run_graph(FILE *out)
{
    fprintf(out,
            "Usage: bastion run-graph FILE.bir [options]\n"
            "\n"
            "Compiles the IR text file FILE.bir for the available backends, fills its inputs,\n"
            "runs it once and prints each output (one checksum line per output by default).\n"
            "\n"
            "Options:\n"
            "  --backend LIST        backends to use, comma-separated, in priority order\n"
            "  --plugin-path DIRS    ':'-separated directories searched for plugins first\n"
            "  --seed N              seed of the random inputs (default 0)\n"
            "  --input NAME=FILE     read input NAME from FILE: raw little-endian data,\n"
            "                        contiguous, exactly the input's size at its bound shape;\n"
            "                        may be repeated\n"
            "  --bind K=V[,K=V...]   run-time values: n_tokens, n_kv (symbolic dims, each at\n"
            "                        most its bound; default: the bound) and pos (default 0)\n"
            "  --checksum            print per output: name, type, element count, sum, sum of\n"
            "                        squares and the first values (the default)\n"
            "  --print               print the output values instead\n"
            "  --limit N             values printed per output with --print (default %d)\n"
            "  --describe            print where each node runs before the outputs\n"
            "  -h, --help            show this help\n"
            "\n"
            "Inputs without --input get seeded random data: f32/f16/bf16 uniform in [-1, 1),\n"
            "i32 uniform in [0, 8), i8 uniform in [-128, 127]; block-quantized inputs need\n"
            "--input. Only the valid region of an output (symbolic dims at their bound value)\n"
            "is printed or summed. The same file, seed and binds give the same lines on any\n"
            "backend that computes exactly the same values.\n",
            DEFAULT_LIMIT);
}

typedef struct io_value {
    bst_value value;
    const char *name;
    bst_tensor_desc desc;
    uint64_t bytes;        /* at the bound shape */
    const char *file;      /* --input FILE, or NULL for random data */
} io_value;

typedef struct run_options {
    const char *path;
    const char *backends;
    const char *plugin_path;
    uint64_t seed;
    bool print_values;
    bool describe;
    uint64_t limit;
    bool bound; /* --bind given */
    bool have_n_tokens, have_n_kv;
    int64_t n_tokens, n_kv, pos;
    uint32_t n_inputs_given;
    char **inputs_given; /* "NAME=FILE" strings from argv */
} run_options;

/* Parses "n_tokens=4,n_kv=16,pos=3". */
static int parse_bind(const char *text, run_options *o)
{
    const char *p = text;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return cli_usage_error(CMD, "bad --bind item in '%s' (expected K=V[,K=V...])", text);
        memcpy(item, p, len);
        item[len] = '\0';
        char *eq = strchr(item, '=');
        if (!eq)
            return cli_usage_error(CMD, "bad --bind item '%s' (expected K=V)", item);
        *eq = '\0';
        int64_t v = 0;
        if (!cli_parse_i64(eq + 1, &v) || v < 0)
            return cli_usage_error(CMD, "--bind %s: '%s' is not a non-negative integer", item,
                                   eq + 1);
        if (strcmp(item, "n_tokens") == 0) {
            o->n_tokens = v;
            o->have_n_tokens = true;
        } else if (strcmp(item, "n_kv") == 0) {
            o->n_kv = v;
            o->have_n_kv = true;
        } else if (strcmp(item, "pos") == 0) {
            o->pos = v;
        } else {
            return cli_usage_error(CMD, "--bind: unknown name '%s' (known: n_tokens, n_kv, pos)",
                                   item);
        }
        p += len;
        if (*p == ',')
            p++;
    }
    o->bound = true;
    return CLI_EXIT_OK;
}

static int parse_args(int argc, char **argv, run_options *o)
{
    static const struct option options[] = {
        {"backend", required_argument, NULL, 'b'},
        {"plugin-path", required_argument, NULL, 'P'},
        {"seed", required_argument, NULL, 's'},
        {"input", required_argument, NULL, 'i'},
        {"bind", required_argument, NULL, 'B'},
        {"print", no_argument, NULL, 'p'},
        {"checksum", no_argument, NULL, 'c'},
        {"limit", required_argument, NULL, 'l'},
        {"describe", no_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    bool want_print = false, want_checksum = false;
    int rc;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->backends = optarg;
            break;
        case 'P':
            o->plugin_path = optarg;
            break;
        case 's':
            if (!cli_parse_u64(optarg, &o->seed))
                return cli_usage_error(CMD, "--seed: '%s' is not a non-negative integer", optarg);
            break;
        case 'i':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cli_usage_error(CMD, "--input: expected NAME=FILE, got '%s'", optarg);
            o->inputs_given[o->n_inputs_given++] = optarg;
            break;
        case 'B':
            rc = parse_bind(optarg, o);
            if (rc != CLI_EXIT_OK)
                return rc;
            break;
        case 'p':
            want_print = true;
            break;
        case 'c':
            want_checksum = true;
            break;
        case 'l':
            if (!cli_parse_u64(optarg, &o->limit))
                return cli_usage_error(CMD, "--limit: '%s' is not a non-negative integer", optarg);
            break;
        case 'd':
            o->describe = true;
            break;
        default:
            return cli_getopt_error(CMD, c, argv);
        }
    }
    if (want_print && want_checksum)
        return cli_usage_error(CMD, "--print and --checksum exclude each other");
    o->print_values = want_print;
    if (optind >= argc)
        return cli_usage_error(CMD, "missing FILE.bir");
    if (argc - optind > 1)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    o->path = argv[optind];
    return CLI_EXIT_OK;
}

/* The graph's inputs and outputs, in value order. */
typedef struct io_list {
    uint32_t n_inputs, n_outputs;
    io_value *inputs, *outputs;
    int64_t sym_bound[BST_SYM_COUNT]; /* 0 when the graph has no dim of that symbol */
} io_list;

static void io_list_free(io_list *io)
{
    free(io->inputs);
    free(io->outputs);
}

static int collect_io(const bst_graph *g, io_list *io)
{
    memset(io, 0, sizeof *io);
    uint32_t n = bst_graph_value_count(g);
    io->inputs = calloc(n ? n : 1, sizeof *io->inputs);
    io->outputs = calloc(n ? n : 1, sizeof *io->outputs);
    if (!io->inputs || !io->outputs) {
        cli_error(CMD, "out of memory");
        return CLI_EXIT_FAIL;
    }
    for (bst_value v = 0; v < n; v++) {
        bst_tensor_desc desc = {.struct_size = sizeof desc};
        bst_status st = bst_graph_value_desc(g, v, &desc);
        if (st != BST_OK)
            return cli_lib_error(CMD, st, "reading the graph's types");
        for (uint32_t d = 0; d < desc.rank && d < BST_MAX_DIMS; d++)
            if (desc.sym[d] > BST_SYM_NONE && desc.sym[d] < BST_SYM_COUNT &&
                desc.shape[d] > io->sym_bound[desc.sym[d]])
                io->sym_bound[desc.sym[d]] = desc.shape[d];
        bool is_input = bst_graph_value_op(g, v) == BST_OP_INPUT;
        bool is_output = bst_graph_value_is_output(g, v);
        if (!is_input && !is_output)
            continue;
        io_value item = {.value = v, .name = bst_graph_value_name(g, v), .desc = desc};
        if (!item.name)
            item.name = "";
        if (!td_bound_bytes(&desc, &item.bytes)) {
            cli_error(CMD, "value '%s' is too large to hold in memory", item.name);
            return CLI_EXIT_FAIL;
        }
        if (is_input)
            io->inputs[io->n_inputs++] = item;
        if (is_output)
            io->outputs[io->n_outputs++] = item;
    }
    return CLI_EXIT_OK;
}

/* Matches each --input NAME=FILE to a graph input. */
static int match_input_files(const run_options *o, io_list *io)
{
    for (uint32_t i = 0; i < o->n_inputs_given; i++) {
        const char *arg = o->inputs_given[i];
        const char *eq = strchr(arg, '=');
        size_t name_len = (size_t)(eq - arg);
        io_value *found = NULL;
        for (uint32_t k = 0; k < io->n_inputs; k++)
            if (strlen(io->inputs[k].name) == name_len &&
                memcmp(io->inputs[k].name, arg, name_len) == 0)
                found = &io->inputs[k];
        if (!found) {
            cli_error(CMD, "%s: --input %.*s: the graph has no input of that name", o->path,
                      (int)name_len, arg);
            return CLI_EXIT_FAIL;
        }
        found->file = eq + 1;
    }
    return CLI_EXIT_OK;
}

/* Resolves the run-time values of the symbolic dims: a bind must lie in [1, bound]. */
static int resolve_binds(run_options *o, const io_list *io)
{
    static const char *names[BST_SYM_COUNT] = {NULL, "n_tokens", "n_kv"};
    int64_t *value[BST_SYM_COUNT] = {NULL, &o->n_tokens, &o->n_kv};
    bool given[BST_SYM_COUNT] = {false, o->have_n_tokens, o->have_n_kv};
    for (uint32_t s = BST_SYM_N_TOKENS; s < BST_SYM_COUNT; s++) {
        int64_t bound = io->sym_bound[s];
        if (!given[s]) {
            *value[s] = bound;
            continue;
        }
        if (bound == 0) {
            cli_error(CMD, "%s: --bind %s: the graph has no %s dimension", o->path, names[s],
                      names[s]);
            return CLI_EXIT_FAIL;
        }
        if (*value[s] < 1 || *value[s] > bound) {
            cli_error(CMD, "%s: --bind %s=%" PRId64 ": must be between 1 and its bound %" PRId64,
                      o->path, names[s], *value[s], bound);
            return CLI_EXIT_FAIL;
        }
    }
    return CLI_EXIT_OK;
}

static int feed_input(bst_program *program, const run_options *o, const io_value *in)
{
    char type[128];
    cli_format_type(&in->desc, NULL, type, sizeof type);
    void *data = NULL;
    if (in->file) {
        size_t size = 0;
        data = cli_read_file(CMD, in->file, &size);
        if (!data)
            return CLI_EXIT_FAIL;
        if ((uint64_t)size != in->bytes) {
            cli_error(CMD, "input '%s' (%s) takes %" PRIu64 " bytes, '%s' has %zu", in->name,
                      type, in->bytes, in->file, size);
            free(data);
            return CLI_EXIT_FAIL;
        }
    } else {
        if (in->bytes > SIZE_MAX || !(data = malloc(in->bytes ? (size_t)in->bytes : 1))) {
            cli_error(CMD, "input '%s' (%s): out of memory", in->name, type);
            return CLI_EXIT_FAIL;
        }
        if (!td_fill_random(&in->desc, o->seed, in->name, data, in->bytes)) {
            cli_error(CMD, "input '%s' has type %s: random data is made only for f32, f16, bf16, "
                      "i32 and i8; give it with --input %s=FILE", in->name, type, in->name);
            free(data);
            return CLI_EXIT_FAIL;
        }
    }
    bst_status st = bst_program_set_input(program, in->name, data, in->bytes);
    free(data);
    if (st != BST_OK) {
        char what[256];
        snprintf(what, sizeof what, "setting input '%s'", in->name);
        return cli_lib_error(CMD, st, what);
    }
    return CLI_EXIT_OK;
}

static int show_output(bst_program *program, const run_options *o, const io_value *out)
{
    void *data = NULL;
    if (out->bytes > SIZE_MAX || !(data = malloc(out->bytes ? (size_t)out->bytes : 1))) {
        cli_error(CMD, "output '%s': out of memory", out->name);
        return CLI_EXIT_FAIL;
    }
    bst_status st = bst_program_get_output(program, out->name, data, out->bytes);
    if (st != BST_OK) {
        free(data);
        char what[256];
        snprintf(what, sizeof what, "reading output '%s'", out->name);
        return cli_lib_error(CMD, st, what);
    }
    int64_t extent[BST_MAX_DIMS];
    td_extent(&out->desc, o->n_tokens, o->n_kv, extent);
    if (o->print_values)
        td_print_values(stdout, out->name, &out->desc, extent, data, o->limit);
    else
        td_print_checksum(stdout, out->name, &out->desc, extent, data);
    free(data);
    return CLI_EXIT_OK;
}

static int run_program(bst_context *ctx, const bst_graph *graph, const run_options *o,
                       const io_list *io)
{
    bst_program *program = NULL;
    bst_status st = bst_program_create(ctx, graph, &program);
    if (st != BST_OK) {
        char what[4096 + 32];
        snprintf(what, sizeof what, "%s: compiling", o->path);
        return cli_lib_error(CMD, st, what);
    }
    int rc = CLI_EXIT_OK;
    if (o->describe) {
        char *text = NULL;
        st = bst_program_describe(program, &text);
        if (st != BST_OK) {
            rc = cli_lib_error(CMD, st, "describing the placement");
        } else {
            fputs(text, stdout);
            if (text[0] && text[strlen(text) - 1] != '\n')
                fputc('\n', stdout);
            bst_free(text);
        }
    }
    for (uint32_t i = 0; rc == CLI_EXIT_OK && i < io->n_inputs; i++)
        rc = feed_input(program, o, &io->inputs[i]);
    if (rc == CLI_EXIT_OK) {
        bst_run_params params = {.struct_size = sizeof params};
        params.n_tokens = o->n_tokens;
        params.n_kv = o->n_kv;
        params.pos = o->pos;
        st = bst_program_run(program, o->bound ? &params : NULL);
        if (st != BST_OK) {
            char what[4096 + 32];
            snprintf(what, sizeof what, "%s: running", o->path);
            rc = cli_lib_error(CMD, st, what);
        }
    }
    for (uint32_t i = 0; rc == CLI_EXIT_OK && i < io->n_outputs; i++)
        rc = show_output(program, o, &io->outputs[i]);
    bst_program_destroy(program);
    return rc;
}

int cli_cmd_run_graph(int argc, char **argv)
{
    run_options o = {.limit = DEFAULT_LIMIT};
    o.inputs_given = calloc((size_t)argc, sizeof *o.inputs_given);
    if (!o.inputs_given) {
        cli_error(CMD, "out of memory");
        return CLI_EXIT_FAIL;
    }
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_EXIT_OK) {
        free(o.inputs_given);
        return rc;
    }

    size_t size = 0;
    char *text = cli_read_file(CMD, o.path, &size);
    if (!text) {
        free(o.inputs_given);
        return CLI_EXIT_FAIL;
    }
    bst_graph *graph = NULL;
    bst_status st = bst_graph_parse(text, size, &graph);
    free(text);
    if (st != BST_OK) {
        free(o.inputs_given);
        return cli_file_error(o.path, st);
    }

    io_list io;
    rc = collect_io(graph, &io);
    if (rc == CLI_EXIT_OK && io.n_outputs == 0) {
        cli_error(CMD, "%s: the graph marks no output, so there is nothing to run", o.path);
        rc = CLI_EXIT_FAIL;
    }
    if (rc == CLI_EXIT_OK)
        rc = match_input_files(&o, &io);
    if (rc == CLI_EXIT_OK)
        rc = resolve_binds(&o, &io);
    if (rc == CLI_EXIT_OK) {
        bst_context_options opts = {.struct_size = sizeof opts};
        opts.backends = o.backends;
        opts.plugin_paths = o.plugin_path;
        bst_context *ctx = NULL;
        st = bst_context_create(&opts, &ctx);
        if (st != BST_OK) {
            rc = cli_lib_error(CMD, st, "creating the context");
        } else {
            if (bst_context_device_count(ctx) == 0) {
                cli_error(CMD, "no device available (see 'bastion backends')");
                rc = CLI_EXIT_FAIL;
            } else {
                rc = run_program(ctx, graph, &o, &io);
            }
            bst_context_destroy(ctx);
        }
    }
    io_list_free(&io);
    bst_graph_destroy(graph);
    free(o.inputs_given);
    return rc;
}
