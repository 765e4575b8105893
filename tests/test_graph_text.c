/*
 * tests/test_graph_text.c — the IR text form: golden round trips over the fixtures (.bir),
 * every fixture in fixtures/bad failing with its expected status, position and message,
 * value naming and float round trips, robustness against truncated and mutated input, and DOT.
 */
#include "graph/ir.h"
#include "test_util.h"

#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- helpers --- */

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The fixture without its full-line comments and blank lines: what the printer reproduces. */
static char *strip_comment_lines(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1);
    size_t o = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        const char *p = line;
        while (p < line + len && (*p == ' ' || *p == '\t'))
            p++;
        bool skip = p == line + len || *p == '#' || *p == '\n';
        if (!skip) {
            memcpy(out + o, line, len);
            o += len;
        }
        line += len;
    }
    out[o] = '\0';
    return out;
}

static char *print_text(const char *text, size_t len)
{
    bst_graph *g = NULL;
    bst_status st = bst_graph_parse(text, len, &g);
    if (st != BST_OK) {
        fprintf(stderr, "parse failed: %s: %s\n", bst_status_name(st), bst_last_error());
        return NULL;
    }
    char *out = NULL;
    st = bst_graph_print(g, &out);
    bst_graph_destroy(g);
    return st == BST_OK ? out : NULL;
}

/* --- golden round trips --- */

static void test_golden_fixtures(void)
{
    DIR *dir = opendir(bst_test_fixture(""));
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    unsigned n_files = 0, n_golden = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (!has_suffix(e->d_name, ".bir"))
            continue;
        char name[512];
        snprintf(name, sizeof name, "%s", e->d_name);
        size_t size;
        char *text = bst_test_read_file(bst_test_fixture(name), &size);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        n_files++;
        /* Expected output: NAME.golden when the fixture is deliberately non-canonical, else the
         * fixture itself minus its comment lines. */
        char golden_name[600];
        snprintf(golden_name, sizeof golden_name, "%.*s.golden", (int)(strlen(name) - 4), name);
        char *expected = bst_test_read_file(bst_test_fixture(golden_name), NULL);
        if (expected)
            n_golden++;
        else
            expected = strip_comment_lines(text);
        char *printed = print_text(text, size);
        if (!printed || strcmp(printed, expected) != 0)
            fprintf(stderr,
                    "\n%s: printed form differs from expected:\n--- expected\n%s--- got\n%s", name,
                    expected, printed ? printed : "(parse failed)\n");
        CU_ASSERT_PTR_NOT_NULL(printed);
        if (printed) {
            CU_ASSERT_STRING_EQUAL(printed, expected);
            /* Idempotence: the printed form parses back and prints identically. */
            char *again = print_text(printed, strlen(printed));
            CU_ASSERT_PTR_NOT_NULL(again);
            if (again)
                CU_ASSERT_STRING_EQUAL(again, printed);
            free(again);
        }
        free(printed);
        free(expected);
        free(text);
    }
    closedir(dir);
    CU_ASSERT(n_files >= 4);
    CU_ASSERT(n_golden >= 1);
}

/* The llama block fixture builds the graph a model would: spot-check the parsed structure. */
static void test_parse_structure(void)
{
    size_t size;
    char *text = bst_test_read_file(bst_test_fixture("llama_block.bir"), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_parse(text, size, &g), BST_OK);
    free(text);
    CU_ASSERT_EQUAL(bst_graph_value_count(g), 34u);
    const bsti_node *w = &g->nodes[4];
    CU_ASSERT_EQUAL(w->op, BST_OP_WEIGHT);
    CU_ASSERT_STRING_EQUAL(w->name, "blk.0.attn_q.weight");
    CU_ASSERT_PTR_NULL(w->weight_data);
    CU_ASSERT_EQUAL(w->data_size, 0u);
    CU_ASSERT_EQUAL(w->type.dtype, BST_DTYPE_Q4_1);
    CU_ASSERT_EQUAL(w->type.strides[1], 20);      /* one q4_1 block */
    CU_ASSERT_EQUAL(w->type.strides[0], 18 * 20); /* 576 / 32 blocks per row */
    const bsti_node *x = &g->nodes[0];
    CU_ASSERT_EQUAL(x->type.sym[0], BST_SYM_N_TOKENS);
    CU_ASSERT_EQUAL(x->type.shape[0], 8);
    const bsti_node *set = &g->nodes[23];
    CU_ASSERT_EQUAL(set->op, BST_OP_SET_ROWS);
    CU_ASSERT_TRUE(set->flags & BSTI_NODE_EFFECT);
    CU_ASSERT_EQUAL(set->alias_of, 12u); /* cache.k.0 */
    const bsti_node *kview = &g->nodes[25];
    CU_ASSERT_EQUAL(kview->alias_of, 12u); /* through the set_rows, to the state */
    CU_ASSERT_EQUAL(kview->type.sym[0], BST_SYM_N_KV);
    CU_ASSERT_EQUAL(kview->line, 29u);
    CU_ASSERT_EQUAL(kview->col, 1u);
    CU_ASSERT_TRUE(g->nodes[33].flags & BSTI_NODE_OUTPUT);
    CU_ASSERT_STRING_EQUAL(g->nodes[33].name, "out");
    bst_graph_destroy(g);
}

/* --- bad fixtures --- */

typedef struct bad_case {
    const char *file;
    bst_status status;
    const char *where;  /* "LINE:COL" */
    const char *needle; /* substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"annotation_mismatch.bir", BST_ERR_SHAPE, "2:16", "does not match the inferred type f32[3]"},
    {"arity_few.bir", BST_ERR_GRAPH, "2:6", "matmul takes 2 operands, got 1"},
    {"arity_many.bir", BST_ERR_GRAPH, "2:15", "silu takes 1 operand"},
    {"attr_not_for_op.bir", BST_ERR_PARSE, "2:14", "unknown attribute 'eps' for silu"},
    {"bad_number.bir", BST_ERR_PARSE, "2:22", "bad number '1.2.3'"},
    {"const_count.bir", BST_ERR_SHAPE, "1:19", "needs 3 values, got 2"},
    {"cycle.bir", BST_ERR_GRAPH, "4:11", "cycle through %a, %b"},
    {"float_overflow.bir", BST_ERR_PARSE, "2:21", "'1e999' is out of range"},
    {"garbage.bir", BST_ERR_PARSE, "2:1", "expected a statement"},
    {"get_rows_ids.bir", BST_ERR_SHAPE, "3:6", "get_rows: operand 1 (ids) must be i32"},
    {"huge_dim.bir", BST_ERR_OVERFLOW, "1:18", "exceeds the limit 2^40"},
    {"missing_attr.bir", BST_ERR_GRAPH, "2:6", "rms_norm: missing attribute eps"},
    {"missing_equals.bir", BST_ERR_PARSE, "2:22", "expected '=' after attribute name 'eps'"},
    {"nul_byte.bir", BST_ERR_PARSE, "2:10", "byte 0x00"},
    {"number_overflow.bir", BST_ERR_PARSE, "1:16", "'99999999999999999999' is out of range"},
    {"output_undefined.bir", BST_ERR_GRAPH, "2:8", "undefined value %y"},
    {"quantize_block.bir", BST_ERR_SHAPE, "2:6", "quantize: operand 0 (x) innermost dim 40"},
    {"redefinition.bir", BST_ERR_GRAPH, "2:1", "%x is already defined at 1:1"},
    {"self_cycle.bir", BST_ERR_GRAPH, "1:11", "cycle through %a"},
    {"set_rows_dst.bir", BST_ERR_SHAPE, "4:6", "set_rows: operand 0 (dst) must be a state"},
    {"shape_mismatch.bir", BST_ERR_SHAPE, "3:6",
     "matmul: operand 1 (b) dim 1 is 512 but operand 0 (a) dim 1 is 576"},
    {"too_many_dims.bir", BST_ERR_PARSE, "1:24", "too many dims"},
    {"trailing.bir", BST_ERR_PARSE, "1:23", "unexpected 'extra'"},
    {"undefined.bir", BST_ERR_GRAPH, "3:14", "undefined value %nothere"},
    {"unknown_attr.bir", BST_ERR_PARSE, "2:18", "unknown attribute 'epsilon' for rms_norm"},
    {"unknown_dtype.bir", BST_ERR_PARSE, "1:12", "unknown dtype 'f64'"},
    {"unknown_op.bir", BST_ERR_PARSE, "2:6", "unknown op 'frobnicate'"},
    {"unknown_symbol.bir", BST_ERR_PARSE, "1:16", "unknown symbol 'n_foo'"},
    {"unterminated_string.bir", BST_ERR_PARSE, "1:19", "unterminated string"},
    {"view_bounds.bir", BST_ERR_SHAPE, "2:6",
     "view: result f32[2,8] at offset 96 reaches byte 160"},
    {"zero_dim.bir", BST_ERR_PARSE, "1:16", "dim 0 must be at least 1"},
};

static void test_bad_fixtures(void)
{
    size_t n_cases = sizeof bad_cases / sizeof bad_cases[0];
    for (size_t i = 0; i < n_cases; i++) {
        const bad_case *c = &bad_cases[i];
        char rel[256];
        snprintf(rel, sizeof rel, "bad/%s", c->file);
        size_t size;
        char *text = bst_test_read_file(bst_test_fixture(rel), &size);
        CU_ASSERT_PTR_NOT_NULL(text);
        if (!text) {
            fprintf(stderr, "missing fixture %s\n", rel);
            continue;
        }
        bst_graph *g = (bst_graph *)&g; /* must be reset to NULL on failure */
        bst_status st = bst_graph_parse(text, size, &g);
        const char *msg = bst_last_error();
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s: ", c->where);
        bool ok = st == c->status && strncmp(msg, prefix, strlen(prefix)) == 0 &&
                  strstr(msg, c->needle) != NULL && g == NULL;
        if (!ok)
            fprintf(stderr, "\n%s: got %s \"%s\", want %s \"%s...%s\"\n", c->file,
                    bst_status_name(st), msg, bst_status_name(c->status), prefix, c->needle);
        CU_ASSERT_TRUE(ok);
        free(text);
    }
    /* Every file in bad/ is in the table, so none goes unchecked. */
    char dir_path[4096];
    snprintf(dir_path, sizeof dir_path, "%s", bst_test_fixture("bad"));
    DIR *dir = opendir(dir_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (!has_suffix(e->d_name, ".bir"))
            continue;
        bool listed = false;
        for (size_t i = 0; i < n_cases; i++)
            listed = listed || strcmp(bad_cases[i].file, e->d_name) == 0;
        if (!listed)
            fprintf(stderr, "\nbad/%s has no entry in the test table\n", e->d_name);
        CU_ASSERT_TRUE(listed);
    }
    closedir(dir);
}

/* Inline cases for positions the fixtures do not cover. */
static void expect_error(const char *text, bst_status status, const char *prefix,
                         const char *needle)
{
    bst_graph *g = NULL;
    bst_status st = bst_graph_parse(text, strlen(text), &g);
    const char *msg = bst_last_error();
    bool ok =
        st == status && strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, needle) != NULL;
    if (!ok)
        fprintf(stderr, "\ninput %s\n got %s \"%s\", want %s \"%s...%s\"\n", text,
                bst_status_name(st), msg, bst_status_name(status), prefix, needle);
    CU_ASSERT_TRUE(ok);
    bst_graph_destroy(g);
}

static void test_error_positions(void)
{
    /* Columns count bytes, tabs included; comment lines count as lines. */
    expect_error("# c\n\n\t%x = input f32[3] \"x\"\n\t%y = silu %z\n", BST_ERR_GRAPH,
                 "4:12: ", "undefined value %z");
    expect_error("%x = input f32[3] \"x\"\n%y = scale %x scale=0x10\n", BST_ERR_PARSE,
                 "2:21: ", "bad number '0x10'");
    expect_error("%x = input f32[3] \"x\"\n%y = scale %x scale=--1\n", BST_ERR_PARSE,
                 "2:21: ", "bad number");
    expect_error("%x = input f32[3] \"x\"\n%y = scale %x scale=\n", BST_ERR_PARSE,
                 "2:21: ", "expected a number, found end of line");
    expect_error("%x = input f32[3] \"x\"\n%y = permute %x perm=[0,1,2,3,4]\n", BST_ERR_PARSE,
                 "2:31: ", "too many entries");
    expect_error("%x = input f32[3] \"x\"\n%y = permute %x perm=[[0]]\n", BST_ERR_PARSE,
                 "2:23: ", "expected a number, found '['");
    expect_error("%x = input f32[3] \"x\"\n%y = rms_norm %x eps=1 eps=2\n", BST_ERR_PARSE,
                 "2:24: ", "attribute 'eps' given twice");
    expect_error("%x = input f32[3] \"x\"\n%y = reshape %x shape=[3] sym=[1]\n", BST_ERR_PARSE,
                 "2:27: ", "unknown attribute 'sym'");
    expect_error("%x = input f32[3] \"a\\qb\"\n", BST_ERR_PARSE, "1:21: ", "bad escape");
    expect_error("%x = input f32[3] \"a\\x00b\"\n", BST_ERR_PARSE, "1:21: ", "NUL byte in string");
    expect_error("%x = input f32[3] \"x\"\noutput %x \"y\"\n", BST_ERR_INVALID_ARG,
                 "2:8: ", "already named \"x\"");
    expect_error("%x = input f32[n_tokens 8] \"x\"\n", BST_ERR_PARSE, "1:25: ", "expected ':'");
    expect_error("%c = const f32[2] [1, 2, 3]\n", BST_ERR_SHAPE,
                 "1:26: ", "more than the 2 values");
    expect_error("%c = const i8[2] [1, 200]\n", BST_ERR_PARSE,
                 "1:22: ", "value 200 is out of i8 range");
    expect_error("%c = const f16[2] [1, 2]\n", BST_ERR_PARSE, "1:19: ", "x\"hex\"");
    expect_error("%c = const f16[2] x\"003c00\"\n", BST_ERR_SHAPE, "1:19: ", "needs 4 bytes");
    expect_error("%c = const f16[2] x\"003c00zz\"\n", BST_ERR_PARSE, "1:27: ", "bad hex digit");
    expect_error("%c = const f32[3] [1, 2, 3e40]\n", BST_ERR_PARSE, "1:26: ", "out of f32 range");
    expect_error(
        "%x = input f32[3] \"x\"\n%y = silu %x ; f32[3]\n%z = silu %y ; f32[3] strides=[8]\n",
        BST_ERR_SHAPE, "3:16: ", "does not match");
    expect_error("%x = input q4_0[3,16] \"x\"\n", BST_ERR_SHAPE, "1:6: ", "block size 32");
    expect_error("%w = weight f32[n_tokens:4] \"w\"\n", BST_ERR_SHAPE,
                 "1:6: ", "only inputs may have symbolic dims");
    expect_error("%x = input f32[3] \"x\"\n%y = silu %", BST_ERR_PARSE,
                 "2:12: ", "expected a value name after '%', found end of input");
    expect_error("%x = input f32[3] \"x\"\n%y = matmul %x %x\n", BST_ERR_GRAPH,
                 "2:6: ", "matmul takes 2 operands, got 1");
    expect_error("%x = input f32[3] \"x\"\n%y = silu %x %x\n", BST_ERR_PARSE,
                 "2:14: ", "expected an attribute (name=value), found '%'");
    expect_error("%x input f32[3] \"x\"\n", BST_ERR_PARSE, "1:4: ", "expected '='");
    expect_error("%x = input f32[1099511627777] \"x\"\n", BST_ERR_OVERFLOW, "1:16: ", "2^40");
    expect_error("%x = input f32[1099511627776,1099511627776] \"x\"\n", BST_ERR_OVERFLOW,
                 "1:6: ", "2^62");
    /* The cycle is listed in DFS order from the value it returns to; the position is the operand
     * that closes it. */
    expect_error("%a = silu %c\n%b = silu %a\n%c = silu %b\n", BST_ERR_GRAPH,
                 "2:11: ", "cycle through %a, %c, %b");
    /* A cycle that does not start at the first statement, with a valid prefix. */
    expect_error("%x = input f32[3] \"x\"\n%y = add %x, %z\n%z = silu %y\n", BST_ERR_GRAPH,
                 "3:11: ", "cycle through %y, %z");
}

/* Empty input and comment-only input give an empty graph that prints as "". */
static void test_empty(void)
{
    const char *inputs[] = {"", "\n\n", "# only a comment\n   # another\n", "\t \r\n"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        bst_graph *g = NULL;
        CU_ASSERT_EQUAL_FATAL(bst_graph_parse(inputs[i], strlen(inputs[i]), &g), BST_OK);
        CU_ASSERT_EQUAL(bst_graph_value_count(g), 0u);
        char *t = NULL;
        CU_ASSERT_EQUAL(bst_graph_print(g, &t), BST_OK);
        CU_ASSERT_STRING_EQUAL(t, "");
        bst_free(t);
        bst_graph_destroy(g);
    }
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL(bst_graph_parse(NULL, 0, &g), BST_OK);
    bst_graph_destroy(g);
    CU_ASSERT_EQUAL(bst_graph_parse(NULL, 3, &g), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_graph_parse("", 0, NULL), BST_ERR_INVALID_ARG);
}

/* --- naming and values --- */

static void test_names_round_trip(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_create(&g), BST_OK);
    const char *names[] = {"a b",       "a_b", "9lives", "quote\"back\\slash",
                           "tab\tnl\n", "ünï", "_9lives"};
    size_t n = sizeof names / sizeof names[0];
    int64_t shape[1] = {2};
    bst_value v[8];
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL_FATAL(
            bst_graph_add_input(g, names[i], BST_DTYPE_F32, 1, shape, NULL, &v[i]), BST_OK);
    CU_ASSERT_EQUAL(bst_graph_mark_output(g, v[0], "a b"), BST_OK);
    char *t = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_print(g, &t), BST_OK);
    /* Hand-derived: sanitized names, collisions ("a_b", "_9lives") fall back to %<id>. */
    const char *expected = "%a_b = input f32[2] \"a b\"\n"
                           "%1 = input f32[2] \"a_b\"\n"
                           "%_9lives = input f32[2] \"9lives\"\n"
                           "%quote_back_slash = input f32[2] \"quote\\\"back\\\\slash\"\n"
                           "%tab_nl_ = input f32[2] \"tab\\tnl\\n\"\n"
                           "%__n__ = input f32[2] \"ünï\"\n"
                           "%6 = input f32[2] \"_9lives\"\n"
                           "output %a_b \"a b\"\n";
    CU_ASSERT_STRING_EQUAL(t, expected);
    bst_graph *back = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_parse(t, strlen(t), &back), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bst_graph_value_count(back), (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_STRING_EQUAL(back->nodes[i].name, names[i]);
    char *t2 = NULL;
    CU_ASSERT_EQUAL(bst_graph_print(back, &t2), BST_OK);
    CU_ASSERT_STRING_EQUAL(t2, t);
    bst_free(t);
    bst_free(t2);
    bst_graph_destroy(back);
    bst_graph_destroy(g);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Const data and float attributes survive print -> parse bit for bit (NaN as a NaN). */
static void test_float_round_trip(void)
{
    float vals[] = {0.1f,          1.0f / 3.0f,      -0.0f,       0.0f,      1e-45f /* denormal */,
                    3.4028235e38f, -1.17549435e-38f, 16777217.0f, 100000.0f, 1e15f,
                    1e16f,         INFINITY,         -INFINITY,   NAN,       123456.789f,
                    -2.5f};
    size_t n = sizeof vals / sizeof vals[0];
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_create(&g), BST_OK);
    int64_t shape[1] = {(int64_t)n};
    bst_value c, x, s;
    CU_ASSERT_EQUAL_FATAL(bst_graph_add_const(g, BST_DTYPE_F32, 1, shape, vals, sizeof vals, &c),
                          BST_OK);
    CU_ASSERT_EQUAL_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 1, shape, NULL, &x), BST_OK);
    double scales[] = {0.1, 1.0 / 3.0, 1e-300, 5e-324, -1.7976931348623157e308, 0.125, 1e-5};
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        bst_attr a = {.struct_size = sizeof a,
                      .key = BST_ATTR_SCALE,
                      .kind = BST_ATTR_KIND_FLOAT,
                      .count = 1,
                      .f = scales[i]};
        CU_ASSERT_EQUAL_FATAL(bst_graph_add_op(g, BST_OP_SCALE, &x, 1, &a, 1, &s), BST_OK);
    }
    char *t = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_print(g, &t), BST_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "scale=0.1 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "scale=1e-05 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "100000, "));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "inf, -inf, nan"));
    bst_graph *back = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_parse(t, strlen(t), &back), BST_OK);
    const float *got = back->nodes[0].const_data;
    for (size_t i = 0; i < n; i++) {
        if (isnan(vals[i])) {
            CU_ASSERT_TRUE(isnan(got[i]));
        } else {
            CU_ASSERT_EQUAL(f32_bits(got[i]), f32_bits(vals[i]));
        }
    }
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++)
        CU_ASSERT_EQUAL(back->nodes[2 + i].attrs[0].f, scales[i]);
    char *t2 = NULL;
    CU_ASSERT_EQUAL(bst_graph_print(back, &t2), BST_OK);
    CU_ASSERT_STRING_EQUAL(t2, t);
    bst_free(t);
    bst_free(t2);
    bst_graph_destroy(back);
    bst_graph_destroy(g);
}

/* A process locale with a decimal comma must not change the format. */
static void test_locale_independent(void)
{
    const char *locales[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "C.UTF-8"};
    const char *set = NULL;
    for (size_t i = 0; i < sizeof locales / sizeof locales[0] && !set; i++)
        set = setlocale(LC_NUMERIC, locales[i]);
    const char *text = "%x = input f32[2] \"x\"\n%1 = scale %x scale=0.5 ; f32[2]\n"
                       "%2 = const f32[2] [1.5, -0.25]\n";
    char *t = print_text(text, strlen(text));
    CU_ASSERT_PTR_NOT_NULL(t);
    if (t)
        CU_ASSERT_STRING_EQUAL(t, text);
    free(t);
    setlocale(LC_NUMERIC, "C");
}

static void test_const_forms(void)
{
    const char *text = "%0 = const i32[2,2] [1, -2, 2147483647, -2147483648]\n"
                       "%1 = const i8[3] [-128, 0, 127]\n"
                       "%2 = const bf16[2] x\"803fc0bf\"\n"
                       "%3 = const q4_0[32] x\"003c"
                       "00112233445566778899aabbccddeeff\"\n"
                       "%4 = const f32[] [7]\n";
    char *t = print_text(text, strlen(text));
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(t, text);
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_parse(t, strlen(t), &g), BST_OK);
    const unsigned char *bf = g->nodes[2].const_data;
    CU_ASSERT_EQUAL(bf[0], 0x80);
    CU_ASSERT_EQUAL(bf[1], 0x3f);
    CU_ASSERT_EQUAL(g->nodes[3].data_size, 18u);
    CU_ASSERT_EQUAL(g->nodes[4].type.rank, 0u);
    CU_ASSERT_EQUAL(((const float *)g->nodes[4].const_data)[0], 7.0f);
    bst_graph_destroy(g);
    free(t);
    /* Hex is accepted for listed dtypes too; the printer then lists the values. */
    const char *hex = "%0 = const f32[1] x\"0000c03f\"\n";
    t = print_text(hex, strlen(hex));
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(t, "%0 = const f32[1] [1.5]\n");
    free(t);
}

/* --- robustness --- */

/* Each error message must carry a LINE:COL prefix; a success must print and re-parse. */
static bool check_outcome(const char *text, size_t len)
{
    bst_graph *g = NULL;
    bst_status st = bst_graph_parse(text, len, &g);
    if (st != BST_OK) {
        unsigned line, col;
        char colon;
        const char *msg = bst_last_error();
        bool ok = g == NULL && sscanf(msg, "%u:%u%c", &line, &col, &colon) == 3 && colon == ':' &&
                  line >= 1 && col >= 1;
        if (!ok)
            fprintf(stderr, "\nmessage without position for %s: \"%s\"\n", bst_status_name(st),
                    msg);
        return ok;
    }
    char *t = NULL;
    bool ok = bst_graph_print(g, &t) == BST_OK;
    bst_graph_destroy(g);
    if (ok) {
        char *again = print_text(t, strlen(t));
        ok = again && strcmp(again, t) == 0;
        free(again);
    }
    bst_free(t);
    return ok;
}

static void test_truncations(void)
{
    const char *files[] = {"all_ops.bir", "reordered.bir", "symbolic.bir"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t size;
        char *text = bst_test_read_file(bst_test_fixture(files[f]), &size);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        unsigned bad = 0;
        for (size_t cut = 0; cut <= size; cut++) {
            /* A private copy of exactly `cut` bytes, so reading past the end is caught. */
            char *copy = malloc(cut ? cut : 1);
            memcpy(copy, text, cut);
            bad += !check_outcome(copy, cut);
            free(copy);
        }
        CU_ASSERT_EQUAL(bad, 0u);
        free(text);
    }
}

/* Deterministic mutation fuzzing: byte flips, insertions of syntax characters, deletions. */
static void test_mutations(void)
{
    size_t size;
    char *text = bst_test_read_file(bst_test_fixture("all_ops.bir"), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    static const char alphabet[] = "%=,[]:;\"#\\x.-+e0123456789 \n\t\0\x80\xff";
    unsigned bad = 0;
    char *buf = malloc(size + 8);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, text, size);
        size_t len = size;
        int n_mut = 1 + iter % 4;
        for (int m = 0; m < n_mut; m++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            size_t at = (size_t)(rng % (len ? len : 1));
            char ch = alphabet[(rng >> 32) % (sizeof alphabet - 1)];
            switch ((rng >> 40) % 3) {
            case 0:
                if (len)
                    buf[at] = ch;
                break;
            case 1:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = ch;
                len++;
                break;
            default:
                if (len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
            }
            if (len > size + 4)
                break;
        }
        char *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        bad += !check_outcome(copy, len);
        free(copy);
    }
    free(buf);
    free(text);
    CU_ASSERT_EQUAL(bad, 0u);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * times + tl + 1);
    memcpy(s, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + ul * times, tail, tl + 1);
    return s;
}

static void test_pathological(void)
{
    /* A very long line: the column is still exact. */
    char *s = repeat("", " ", 1000000, "?\n");
    expect_error(s, BST_ERR_PARSE, "1:1000001: ", "expected a statement");
    free(s);
    /* Deep bracket nesting is just a syntax error, never recursion. */
    s = repeat("%x = input f32", "[", 100000, "\n");
    expect_error(s, BST_ERR_PARSE, "1:16: ", "expected a number");
    free(s);
    /* Huge names are rejected cleanly, huge value names work. */
    s = repeat("%x = input f32[1] \"", "n", 70000, "\"\n");
    expect_error(s, BST_ERR_PARSE, "1:19: ", "too long");
    free(s);
    s = repeat("%", "v", 5000, " = input f32[1] \"x\"\n");
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL(bst_graph_parse(s, strlen(s), &g), BST_OK);
    bst_graph_destroy(g);
    free(s);
    /* A long chain (deep DFS) in reverse order: sorted without recursion. */
    size_t n = 200000;
    char *chain = malloc(n * 40 + 64);
    size_t o = 0;
    for (size_t i = n; i-- > 1;)
        o += (size_t)sprintf(chain + o, "%%v%zu = silu %%v%zu\n", i, i - 1);
    o += (size_t)sprintf(chain + o, "%%v0 = input f32[2] \"x\"\noutput %%v%zu \"y\"\n", n - 1);
    g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_parse(chain, o, &g), BST_OK);
    CU_ASSERT_EQUAL(bst_graph_value_count(g), (uint32_t)n);
    CU_ASSERT_EQUAL(g->nodes[0].op, BST_OP_INPUT);
    CU_ASSERT_TRUE(g->nodes[n - 1].flags & BSTI_NODE_OUTPUT);
    bst_graph_destroy(g);
    free(chain);
    /* A const claiming 2^40 elements with a short list fails before allocating for it. */
    expect_error("%c = const f32[1099511627776] [1]\n", BST_ERR_PARSE, "1:31: ", "text is shorter");
}

/* --- DOT --- */

static void test_dot(void)
{
    size_t size;
    char *text = bst_test_read_file(bst_test_fixture("llama_block.bir"), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    bst_graph *g = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_parse(text, size, &g), BST_OK);
    free(text);
    char *dot = NULL;
    CU_ASSERT_EQUAL_FATAL(bst_graph_to_dot(g, &dot), BST_OK);
    CU_ASSERT_EQUAL(strncmp(dot, "digraph bastion {\n", 18), 0);
    CU_ASSERT_EQUAL(strcmp(dot + strlen(dot) - 2, "}\n"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "n15 [label=\"%15 = matmul\\nf32[n_tokens:8,576]\"];"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(dot, "n0 [label=\"%0 = input \\\"x\\\"\\nf32[n_tokens:8,576]\", shape=ellipse];"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "peripheries=2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "n14 -> n15 [label=\"0\"];"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dot, "n4 -> n15 [label=\"1\"];"));
    /* One edge line per operand (plus dotted alias edges, marked as such). */
    unsigned edges = 0, alias_edges = 0, expected = 0;
    for (const char *p = dot; (p = strstr(p, " -> ")) != NULL; p++) {
        const char *eol = strchr(p, '\n');
        const char *dotted = strstr(p, "dotted");
        if (dotted && dotted < eol)
            alias_edges++;
        else
            edges++;
    }
    for (uint32_t i = 0; i < g->n_nodes; i++)
        expected += g->nodes[i].n_inputs;
    CU_ASSERT_EQUAL(edges, expected);
    CU_ASSERT_EQUAL(alias_edges, 2u); /* the two KV views point past their set_rows to the state */
    bst_free(dot);
    bst_graph_destroy(g);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"golden_fixtures", test_golden_fixtures},
        {"parse_structure", test_parse_structure},
        {"bad_fixtures", test_bad_fixtures},
        {"error_positions", test_error_positions},
        {"empty", test_empty},
        {"names_round_trip", test_names_round_trip},
        {"float_round_trip", test_float_round_trip},
        {"locale_independent", test_locale_independent},
        {"const_forms", test_const_forms},
        {"truncations", test_truncations},
        {"mutations", test_mutations},
        {"pathological", test_pathological},
        {"dot", test_dot},
        {NULL, NULL},
    };
    return bst_test_run_suite("graph_text", cases);
}
