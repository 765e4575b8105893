/*
 * The IR's text form: bst_graph_print and bst_graph_parse.
 *
 *   # comment to end of line
 *   %x = input f32[n_tokens:8,576] "x"          a symbolic dim is written symbol:bound
 *   %blk.0.w = weight q4_1[1536,576] "blk.0.w"  weights from text carry no data
 *   %k = state f16[256,3,64] "cache.k"
 *   %3 = const f32[3] [1, 2, 3]                 f32, i32, i8 consts list their values
 *   %4 = const f16[2] x"003c003c"               other dtypes give their bytes in hex
 *   %5 = matmul %x, %blk.0.w ; f32[n_tokens:8,1536]
 *   %6 = rms_norm %5 eps=1e-05 ; f32[n_tokens:8,1536]
 *   %7 = view %k shape=[n_kv:256,3,64] strides=[384,128,2] offset=0 ; f16[n_kv:256,3,64]
 *   output %6 "h"
 *
 * Naming (how the printer stays stable without a name slot for op values): a source is printed
 * as % plus its name with every character outside [A-Za-z0-9_.] replaced by '_' (and a '_'
 * prefix when it would start with a digit); a const, or a source whose printed name is already
 * taken, is printed as %<id>, as is every op value. Op values are printed in id order, outputs
 * last in id order, attributes in key order, floats in the shortest form that reads back to the
 * same value (integral values in full, else %.17g at most; f32 data %.9g at most). So
 * print(parse(print(g))) == print(g).
 *
 * The parser accepts any value names ([A-Za-z0-9_.]+) and statements in any order: it reads all
 * statements, resolves names, sorts topologically (reporting a cycle with the values on it),
 * then builds the graph through the same inference as the API. The "; type" annotation is
 * optional on input, and when present must equal the inferred type. Every error message starts
 * with "LINE:COL: " (1-based, columns in bytes) at the offending token.
 *
 * Numbers are read and written in the "C" locale whatever the process's locale is.
 */
#include "graph/text.h"
#include "graph/status.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT ((size_t)1 << 30)
#define MAX_STRING 65536

/* --- parsing --- */

typedef struct pos {
    uint32_t line, col;
} pos;

typedef struct ref {
    uint32_t off, len; /* name in the text */
    pos at;
    uint32_t target; /* statement index once resolved */
} ref;

typedef struct pattr {
    bst_attr attr;
    pos at;
} pattr;

typedef struct stmt {
    bst_op op;
    pos at;    /* the %name being defined */
    pos op_at; /* the op keyword */
    uint32_t name_off, name_len;
    bsti_type type; /* sources */
    char *name;     /* sources */
    void *data;     /* const */
    uint64_t data_size;
    uint32_t n_inputs;
    ref inputs[BST_MAX_INPUTS];
    uint32_t attr_first, n_attrs; /* into parser.attrs */
    uint32_t ann_off, ann_len;    /* "; type" annotation, ann_len 0 if none */
    pos ann_at;
} stmt;

typedef struct output_stmt {
    ref value;
    char *name;
    pos at;
} output_stmt;

typedef struct parser {
    const char *s;
    size_t n, i;
    uint32_t line, col;
    stmt *stmts;
    uint32_t n_stmts, cap_stmts;
    pattr *attrs;
    uint32_t n_attrs, cap_attrs;
    output_stmt *outs;
    uint32_t n_outs, cap_outs;
} parser;

static pos here(const parser *p) { return (pos){p->line, p->col}; }

static bst_status perr(bst_status st, pos at, const char *fmt, ...) BST_PRINTF(3, 4);
static bst_status perr(bst_status st, pos at, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bsti_fail(st, "%u:%u: %s", at.line, at.col, msg);
}

static int peek(const parser *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

static void advance(parser *p)
{
    if (p->i >= p->n)
        return;
    if (p->s[p->i] == '\n') {
        p->line++;
        p->col = 1;
    } else {
        p->col++;
    }
    p->i++;
}

/* Skips blanks and a '#' comment, never the newline. */
static void skip_ws(parser *p)
{
    for (;;) {
        int c = peek(p);
        if (c == ' ' || c == '\t' || c == '\r') {
            advance(p);
        } else if (c == '#') {
            while (peek(p) != -1 && peek(p) != '\n')
                advance(p);
        } else {
            return;
        }
    }
}

static bool at_eol(parser *p)
{
    skip_ws(p);
    return peek(p) == -1 || peek(p) == '\n';
}

/* The characters a number token may span: enough to take "1.2.3" or "1e-5x" whole, so the
 * error names the entire bad token. */
static bool number_char(int c) { return bsti_text_ident_char(c) || c == '+' || c == '-'; }

/* "'x'", "'\x00'", "end of line" — what the parser found instead of what it wanted. */
typedef struct found {
    char s[48];
} found;

static found what_is_here(const parser *p)
{
    found f;
    int c = peek(p);
    if (c == -1)
        snprintf(f.s, sizeof f.s, "end of input");
    else if (c == '\n')
        snprintf(f.s, sizeof f.s, "end of line");
    else if (c >= 0x21 && c < 0x7f) {
        size_t len = 0;
        while (p->i + len < p->n && len < 24 && number_char((unsigned char)p->s[p->i + len]))
            len++;
        if (len > 1)
            snprintf(f.s, sizeof f.s, "'%.*s'", (int)len, p->s + p->i);
        else
            snprintf(f.s, sizeof f.s, "'%c'", c);
    } else
        snprintf(f.s, sizeof f.s, "byte 0x%02x", (unsigned)c);
    return f;
}

static bst_status expect(parser *p, char c, const char *context)
{
    skip_ws(p);
    if (peek(p) != (unsigned char)c)
        return perr(BST_ERR_PARSE, here(p), "expected '%c' %s, found %s", c, context,
                    what_is_here(p).s);
    advance(p);
    return BST_OK;
}

/* A bare word [A-Za-z_][A-Za-z0-9_.]*; *out_len 0 when none is here. */
static void word(parser *p, uint32_t *out_off, uint32_t *out_len)
{
    skip_ws(p);
    *out_off = (uint32_t)p->i;
    int c = peek(p);
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')) {
        *out_len = 0;
        return;
    }
    while (bsti_text_ident_char(peek(p)))
        advance(p);
    *out_len = (uint32_t)(p->i - *out_off);
}

static bool word_is(const parser *p, uint32_t off, uint32_t len, const char *w)
{
    return strlen(w) == len && memcmp(p->s + off, w, len) == 0;
}

/* Copies a word into a bounded C string for lookups and messages ("..." when cut). */
typedef struct wordbuf {
    char s[64];
} wordbuf;

static wordbuf word_str(const parser *p, uint32_t off, uint32_t len)
{
    wordbuf w;
    if (len < sizeof w.s) {
        memcpy(w.s, p->s + off, len);
        w.s[len] = '\0';
    } else {
        memcpy(w.s, p->s + off, 56);
        memcpy(w.s + 56, "...", 4);
    }
    return w;
}

static bst_status value_ref(parser *p, ref *out)
{
    skip_ws(p);
    out->at = here(p);
    if (peek(p) != '%')
        return perr(BST_ERR_PARSE, out->at, "expected a value (%%name), found %s",
                    what_is_here(p).s);
    advance(p);
    out->off = (uint32_t)p->i;
    while (bsti_text_ident_char(peek(p)))
        advance(p);
    out->len = (uint32_t)(p->i - out->off);
    if (!out->len)
        return perr(BST_ERR_PARSE, here(p), "expected a value name after '%%', found %s",
                    what_is_here(p).s);
    out->target = UINT32_MAX;
    return BST_OK;
}

static bst_status number_token(parser *p, char *buf, size_t cap, pos *out_at)
{
    skip_ws(p);
    *out_at = here(p);
    size_t start = p->i;
    while (number_char(peek(p)))
        advance(p);
    size_t len = p->i - start;
    if (!len)
        return perr(BST_ERR_PARSE, *out_at, "expected a number, found %s", what_is_here(p).s);
    if (len >= cap)
        return perr(BST_ERR_PARSE, *out_at, "bad number '%.*s...' (too long)", 24, p->s + start);
    memcpy(buf, p->s + start, len);
    buf[len] = '\0';
    return BST_OK;
}

static bst_status parse_int(parser *p, int64_t *out, pos *out_at)
{
    char buf[64];
    bst_status st = number_token(p, buf, sizeof buf, out_at);
    if (st)
        return st;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    bool digits = buf[0] >= '0' && buf[0] <= '9';
    if (!digits && (buf[0] == '-' || buf[0] == '+'))
        digits = buf[1] >= '0' && buf[1] <= '9';
    if (!digits || *end != '\0')
        return perr(BST_ERR_PARSE, *out_at, "bad integer '%s'", buf);
    if (errno == ERANGE)
        return perr(BST_ERR_PARSE, *out_at, "integer '%s' is out of range", buf);
    *out = (int64_t)v;
    return BST_OK;
}

static bst_status parse_real(parser *p, double *out, pos *out_at)
{
    char buf[64];
    bst_status st = number_token(p, buf, sizeof buf, out_at);
    if (st)
        return st;
    /* Decimal only: strtod's hex floats and "infinity" spellings are not part of the format. */
    const char *b = buf + (buf[0] == '-' || buf[0] == '+');
    bool special = strcmp(b, "inf") == 0 || strcmp(b, "nan") == 0;
    bool decimal = (b[0] >= '0' && b[0] <= '9') || (b[0] == '.' && b[1] >= '0' && b[1] <= '9');
    if (!special && (!decimal || strchr(b, 'x') || strchr(b, 'X')))
        return perr(BST_ERR_PARSE, *out_at, "bad number '%s'", buf);
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end != '\0')
        return perr(BST_ERR_PARSE, *out_at, "bad number '%s'", buf);
    if (errno == ERANGE && isinf(v))
        return perr(BST_ERR_PARSE, *out_at, "number '%s' is out of range", buf);
    *out = v;
    return BST_OK;
}

static int hex_val(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A "..." string. With `raw` the bytes are returned undecoded (for x"hex"); else escapes are
 * decoded into a NUL-terminated malloc'd name. */
static bst_status parse_string(parser *p, char **out, size_t *out_len, bool raw)
{
    *out = NULL;
    skip_ws(p);
    pos at = here(p);
    if (peek(p) != '"')
        return perr(BST_ERR_PARSE, at, "expected a quoted string, found %s", what_is_here(p).s);
    advance(p);
    size_t start = p->i;
    while (peek(p) != '"') {
        int c = peek(p);
        if (c == -1 || c == '\n')
            return perr(BST_ERR_PARSE, at, "unterminated string");
        if (c == '\\') {
            advance(p);
            if (peek(p) == -1 || peek(p) == '\n')
                return perr(BST_ERR_PARSE, at, "unterminated string");
        }
        advance(p);
    }
    size_t end = p->i;
    advance(p);
    size_t len = end - start;
    if (len > (raw ? MAX_TEXT : (size_t)MAX_STRING))
        return perr(BST_ERR_PARSE, at, "string of %zu bytes is too long", len);
    char *s = malloc(len + 1);
    if (!s)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory");
    if (raw) {
        memcpy(s, p->s + start, len);
        s[len] = '\0';
        *out = s;
        *out_len = len;
        return BST_OK;
    }
    size_t o = 0;
    for (size_t k = start; k < end; k++) {
        char c = p->s[k];
        pos cat = {at.line, at.col + (uint32_t)(k - start + 1)};
        if (c == '\0') {
            free(s);
            return perr(BST_ERR_PARSE, cat, "NUL byte in string");
        }
        if (c != '\\') {
            s[o++] = c;
            continue;
        }
        char e = p->s[++k];
        if (e == 'n')
            s[o++] = '\n';
        else if (e == 't')
            s[o++] = '\t';
        else if (e == 'r')
            s[o++] = '\r';
        else if (e == '"' || e == '\\')
            s[o++] = e;
        else if (e == 'x' && k + 2 < end && hex_val((unsigned char)p->s[k + 1]) >= 0 &&
                 hex_val((unsigned char)p->s[k + 2]) >= 0) {
            int v = hex_val((unsigned char)p->s[k + 1]) * 16 + hex_val((unsigned char)p->s[k + 2]);
            k += 2;
            if (v == 0) {
                free(s);
                return perr(BST_ERR_PARSE, cat, "NUL byte in string");
            }
            s[o++] = (char)v;
        } else {
            free(s);
            return perr(BST_ERR_PARSE, cat,
                        "bad escape in string (use \\n \\t \\r \\\" \\\\ \\xHH)");
        }
    }
    s[o] = '\0';
    *out = s;
    if (out_len)
        *out_len = o;
    return BST_OK;
}

static bst_dtype dtype_from(const parser *p, uint32_t off, uint32_t len)
{
    for (unsigned t = 1; t < BST_DTYPE_COUNT; t++)
        if (word_is(p, off, len, bst_dtype_name((bst_dtype)t)))
            return (bst_dtype)t;
    return BST_DTYPE_INVALID;
}

static bst_sym sym_from(const parser *p, uint32_t off, uint32_t len)
{
    for (unsigned s = 1; s < BST_SYM_COUNT; s++)
        if (word_is(p, off, len, bsti_sym_name((bst_sym)s)))
            return (bst_sym)s;
    return BST_SYM_NONE;
}

/* One dim: INT or SYMBOL:INT, range-checked. */
static bst_status parse_dim(parser *p, int64_t *out_dim, uint32_t *out_sym)
{
    skip_ws(p);
    pos at = here(p);
    uint32_t off, len;
    *out_sym = BST_SYM_NONE;
    word(p, &off, &len);
    if (len) {
        bst_sym s = sym_from(p, off, len);
        if (s == BST_SYM_NONE)
            return perr(BST_ERR_PARSE, at, "unknown symbol '%s' (known: n_tokens, n_kv)",
                        word_str(p, off, len).s);
        skip_ws(p);
        if (peek(p) != ':')
            return perr(BST_ERR_PARSE, here(p),
                        "expected ':' and a bound after symbol '%s' (e.g. %s:8)",
                        word_str(p, off, len).s, word_str(p, off, len).s);
        advance(p);
        *out_sym = (uint32_t)s;
    }
    bst_status st = parse_int(p, out_dim, &at);
    if (st)
        return st;
    if (*out_dim < 1)
        return perr(BST_ERR_PARSE, at, "dim %" PRId64 " must be at least 1", *out_dim);
    if (*out_dim > BSTI_MAX_DIM)
        return perr(BST_ERR_OVERFLOW, at, "dim %" PRId64 " exceeds the limit 2^40", *out_dim);
    return BST_OK;
}

static bst_status parse_type(parser *p, bsti_type *t)
{
    memset(t, 0, sizeof *t);
    uint32_t off, len;
    skip_ws(p);
    pos at = here(p);
    word(p, &off, &len);
    if (!len)
        return perr(BST_ERR_PARSE, at, "expected a dtype, found %s", what_is_here(p).s);
    t->dtype = dtype_from(p, off, len);
    if (t->dtype == BST_DTYPE_INVALID)
        return perr(BST_ERR_PARSE, at,
                    "unknown dtype '%s' (known: f32 f16 bf16 i32 i8 q4_0 q4_1 q5_0 q5_1 q8_0)",
                    word_str(p, off, len).s);
    bst_status st = expect(p, '[', "after the dtype");
    if (st)
        return st;
    skip_ws(p);
    if (peek(p) == ']') {
        advance(p);
        return BST_OK;
    }
    for (;;) {
        skip_ws(p);
        if (t->rank == BST_MAX_DIMS)
            return perr(BST_ERR_PARSE, here(p), "too many dims (at most %d)", BST_MAX_DIMS);
        if ((st = parse_dim(p, &t->shape[t->rank], &t->sym[t->rank])))
            return st;
        t->rank++;
        skip_ws(p);
        if (peek(p) == ']') {
            advance(p);
            return BST_OK;
        }
        if ((st = expect(p, ',', "or ']' in the shape")))
            return st;
    }
}

static bst_status grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return BST_OK;
    uint32_t c = *cap ? *cap : 64;
    while (c < need)
        c = c > UINT32_MAX / 2 ? need : c * 2;
    void *a = realloc(*arr, (size_t)c * elem);
    if (!a)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing graph");
    *arr = a;
    *cap = c;
    return BST_OK;
}

/* Values of a listed const into a buffer of exactly `bytes`. */
static bst_status parse_const_list(parser *p, stmt *s, uint64_t bytes)
{
    bst_dtype dt = s->type.dtype;
    size_t esize = dt == BST_DTYPE_I8 ? 1 : 4;
    uint64_t count = bytes / esize;
    pos open = here(p);
    advance(p); /* '[' */
    /* Every value takes at least two characters of text, so this bounds the allocation. */
    if (bytes > (p->n - p->i) * 4 + 4)
        return perr(BST_ERR_PARSE, open, "const %s needs %" PRIu64 " values; the text is shorter",
                    bst_dtype_name(dt), count);
    s->data = malloc(bytes ? (size_t)bytes : 1);
    if (!s->data)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing const");
    s->data_size = bytes;
    unsigned char *d = s->data;
    uint64_t k = 0;
    bst_status st;
    skip_ws(p);
    if (peek(p) == ']') {
        advance(p);
    } else {
        for (;;) {
            pos at;
            if (dt == BST_DTYPE_F32) {
                double v;
                if ((st = parse_real(p, &v, &at)))
                    return st;
                if (isfinite(v) && !isfinite((float)v))
                    return perr(BST_ERR_PARSE, at, "value is out of f32 range");
                if (k < count) {
                    float f = (float)v;
                    memcpy(d + k * 4, &f, 4);
                }
            } else {
                int64_t v;
                if ((st = parse_int(p, &v, &at)))
                    return st;
                int64_t lo = dt == BST_DTYPE_I8 ? INT8_MIN : INT32_MIN;
                int64_t hi = dt == BST_DTYPE_I8 ? INT8_MAX : INT32_MAX;
                if (v < lo || v > hi)
                    return perr(BST_ERR_PARSE, at, "value %" PRId64 " is out of %s range", v,
                                bst_dtype_name(dt));
                if (k < count) {
                    if (dt == BST_DTYPE_I8) {
                        d[k] = (unsigned char)(int8_t)v;
                    } else {
                        int32_t w = (int32_t)v;
                        memcpy(d + k * 4, &w, 4);
                    }
                }
            }
            if (++k > count)
                return perr(BST_ERR_SHAPE, at,
                            "const has more than the %" PRIu64 " values of its type", count);
            skip_ws(p);
            if (peek(p) == ']') {
                advance(p);
                break;
            }
            if ((st = expect(p, ',', "or ']' between const values")))
                return st;
        }
    }
    if (k != count)
        return perr(BST_ERR_SHAPE, open, "const needs %" PRIu64 " values, got %" PRIu64, count, k);
    return BST_OK;
}

static bst_status parse_const_hex(parser *p, stmt *s, uint64_t bytes)
{
    pos at = here(p);
    advance(p); /* 'x' */
    if (peek(p) != '"')
        return perr(BST_ERR_PARSE, here(p), "expected '\"' after x for hex const data");
    char *hex;
    size_t len;
    bst_status st = parse_string(p, &hex, &len, true);
    if (st)
        return st;
    if (len != bytes * 2) {
        free(hex);
        return perr(BST_ERR_SHAPE, at,
                    "const %s needs %" PRIu64 " bytes (%" PRIu64 " hex digits), got %zu digits",
                    bst_dtype_name(s->type.dtype), bytes, bytes * 2, len);
    }
    s->data = malloc(bytes ? (size_t)bytes : 1);
    if (!s->data) {
        free(hex);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing const");
    }
    s->data_size = bytes;
    unsigned char *d = s->data;
    for (uint64_t k = 0; k < bytes; k++) {
        int hi = hex_val((unsigned char)hex[2 * k]), lo = hex_val((unsigned char)hex[2 * k + 1]);
        if (hi < 0 || lo < 0) {
            free(hex);
            return perr(BST_ERR_PARSE, (pos){at.line, at.col + 2 + (uint32_t)(2 * k)},
                        "bad hex digit in const data");
        }
        d[k] = (unsigned char)(hi * 16 + lo);
    }
    free(hex);
    return BST_OK;
}

static bst_status parse_source(parser *p, stmt *s)
{
    pos type_at;
    skip_ws(p);
    type_at = here(p);
    bst_status st = parse_type(p, &s->type);
    if (st)
        return st;
    if (s->op != BST_OP_CONST)
        return parse_string(p, &s->name, NULL, false);
    uint64_t bytes;
    if ((st = bsti_type_nbytes(&s->type, &bytes)))
        return perr(st, type_at, "%s", bst_last_error());
    for (uint32_t i = 0; i < s->type.rank; i++)
        if (s->type.sym[i])
            return perr(BST_ERR_SHAPE, type_at, "a const cannot have symbolic dims");
    skip_ws(p);
    bst_dtype dt = s->type.dtype;
    if (peek(p) == '[' && (dt == BST_DTYPE_F32 || dt == BST_DTYPE_I32 || dt == BST_DTYPE_I8))
        return parse_const_list(p, s, bytes);
    if (peek(p) == 'x')
        return parse_const_hex(p, s, bytes);
    return perr(BST_ERR_PARSE, here(p), "expected const data (%s), found %s",
                dt == BST_DTYPE_F32 || dt == BST_DTYPE_I32 || dt == BST_DTYPE_I8
                    ? "[values] or x\"hex\""
                    : "x\"hex\"",
                what_is_here(p).s);
}

static bst_status parse_ints(parser *p, bst_attr *a, bst_attr *sym, bool allow_sym)
{
    bst_status st = expect(p, '[', "to open the list");
    if (st)
        return st;
    skip_ws(p);
    if (peek(p) == ']') {
        advance(p);
        return BST_OK;
    }
    for (;;) {
        skip_ws(p);
        if (a->count == BST_MAX_DIMS)
            return perr(BST_ERR_PARSE, here(p), "too many entries (at most %d)", BST_MAX_DIMS);
        pos at = here(p);
        uint32_t off, len;
        word(p, &off, &len);
        int64_t v;
        if (len) {
            bst_sym s = sym_from(p, off, len);
            if (!allow_sym || s == BST_SYM_NONE)
                return perr(BST_ERR_PARSE, at, "expected an integer, found '%s'",
                            word_str(p, off, len).s);
            if ((st = expect(p, ':', "and a bound after the symbol")))
                return st;
            sym->ints[a->count] = (int64_t)s;
            sym->count = 1; /* marks "some dim is symbolic"; fixed up by the caller */
        }
        if ((st = parse_int(p, &v, &at)))
            return st;
        a->ints[a->count++] = v;
        skip_ws(p);
        if (peek(p) == ']') {
            advance(p);
            return BST_OK;
        }
        if ((st = expect(p, ',', "or ']' in the list")))
            return st;
    }
}

static bst_status add_attr(parser *p, stmt *s, const bst_attr *a, pos at)
{
    if (s->n_attrs >= BST_MAX_ATTRS)
        return perr(BST_ERR_PARSE, at, "too many attributes (at most %d)", BST_MAX_ATTRS);
    bst_status st = grow((void **)&p->attrs, &p->cap_attrs, p->n_attrs + 1, sizeof *p->attrs);
    if (st)
        return st;
    if (s->n_attrs == 0)
        s->attr_first = p->n_attrs;
    p->attrs[p->n_attrs++] = (pattr){*a, at};
    s->n_attrs++;
    return BST_OK;
}

static bst_status parse_attr(parser *p, stmt *s)
{
    pos at = here(p);
    uint32_t off, len;
    word(p, &off, &len);
    if (!len)
        return perr(BST_ERR_PARSE, at, "expected an attribute (name=value), found %s",
                    what_is_here(p).s);
    wordbuf name = word_str(p, off, len);
    bst_attr_key key = len < sizeof name.s ? bsti_attr_from_name(name.s) : BST_ATTR_NONE;
    const char *op = bst_op_name(s->op);
    if (key == BST_ATTR_SYM)
        return perr(
            BST_ERR_PARSE, at,
            "unknown attribute 'sym' (write symbolic dims in shape, e.g. shape=[n_kv:256,64])");
    if (key == BST_ATTR_NONE || !bsti_op_allows_attr(s->op, key)) {
        char allowed[256] = "";
        size_t used = 0;
        for (unsigned k = 1; k < BST_ATTR_COUNT; k++)
            if (k != BST_ATTR_SYM && bsti_op_allows_attr(s->op, (bst_attr_key)k)) {
                int w = snprintf(allowed + used, sizeof allowed - used, "%s%s", used ? ", " : "",
                                 bsti_attr_name((bst_attr_key)k));
                if (w > 0 && (size_t)w < sizeof allowed - used)
                    used += (size_t)w;
            }
        return perr(BST_ERR_PARSE, at, "unknown attribute '%s' for %s (%s%s)", name.s, op,
                    used ? "takes " : "takes none", allowed);
    }
    skip_ws(p);
    if (peek(p) != '=')
        return perr(BST_ERR_PARSE, here(p), "expected '=' after attribute name '%s', found %s",
                    name.s, what_is_here(p).s);
    advance(p);
    bst_attr a = {.struct_size = (uint32_t)sizeof a,
                  .key = (uint32_t)key,
                  .kind = (uint32_t)bsti_attr_kind(key),
                  .count = 1};
    bst_attr sym = {
        .struct_size = (uint32_t)sizeof sym, .key = BST_ATTR_SYM, .kind = BST_ATTR_KIND_INTS};
    bst_status st;
    pos vat;
    skip_ws(p);
    vat = here(p);
    if (key == BST_ATTR_DTYPE) {
        word(p, &off, &len);
        bst_dtype dt = len ? dtype_from(p, off, len) : BST_DTYPE_INVALID;
        if (dt == BST_DTYPE_INVALID)
            return perr(BST_ERR_PARSE, vat, "unknown dtype %s%s%s", len ? "'" : "",
                        len ? word_str(p, off, len).s : what_is_here(p).s, len ? "'" : "");
        a.ints[0] = dt;
    } else if (a.kind == BST_ATTR_KIND_FLOAT) {
        if ((st = parse_real(p, &a.f, &vat)))
            return st;
    } else if (a.kind == BST_ATTR_KIND_INT) {
        if ((st = parse_int(p, &a.ints[0], &vat)))
            return st;
    } else {
        a.count = 0;
        if ((st = parse_ints(p, &a, &sym, key == BST_ATTR_SHAPE)))
            return st;
    }
    for (uint32_t i = 0; i < s->n_attrs; i++)
        if (p->attrs[s->attr_first + i].attr.key == a.key)
            return perr(BST_ERR_PARSE, at, "attribute '%s' given twice", name.s);
    if ((st = add_attr(p, s, &a, at)))
        return st;
    if (sym.count) {
        sym.count = a.count;
        return add_attr(p, s, &sym, at);
    }
    return BST_OK;
}

static bst_status parse_op_rest(parser *p, stmt *s, const bsti_op_info *info)
{
    bst_status st;
    for (;;) {
        if (s->n_inputs == BST_MAX_INPUTS || s->n_inputs == info->max_inputs) {
            skip_ws(p);
            pos at = here(p);
            return perr(BST_ERR_GRAPH, at, "%s takes %s%u operand%s, got more", info->name,
                        info->min_inputs == info->max_inputs ? "" : "at most ", info->max_inputs,
                        info->max_inputs == 1 ? "" : "s");
        }
        if ((st = value_ref(p, &s->inputs[s->n_inputs])))
            return st;
        s->n_inputs++;
        skip_ws(p);
        if (peek(p) != ',')
            break;
        advance(p);
    }
    if (s->n_inputs < info->min_inputs)
        return perr(BST_ERR_GRAPH, s->op_at, "%s takes %s%u operand%s, got %u", info->name,
                    info->min_inputs == info->max_inputs ? "" : "at least ", info->min_inputs,
                    info->min_inputs == 1 ? "" : "s", s->n_inputs);
    while (!at_eol(p) && peek(p) != ';')
        if ((st = parse_attr(p, s)))
            return st;
    return BST_OK;
}

static bst_status parse_def(parser *p)
{
    if (p->n_stmts >= BSTI_MAX_NODES)
        return perr(BST_ERR_OVERFLOW, here(p), "too many statements (limit %u)", BSTI_MAX_NODES);
    bst_status st = grow((void **)&p->stmts, &p->cap_stmts, p->n_stmts + 1, sizeof *p->stmts);
    if (st)
        return st;
    stmt *s = &p->stmts[p->n_stmts++];
    memset(s, 0, sizeof *s);
    ref def;
    if ((st = value_ref(p, &def)))
        return st;
    s->at = def.at;
    s->name_off = def.off;
    s->name_len = def.len;
    if ((st = expect(p, '=', "after the value name")))
        return st;
    skip_ws(p);
    s->op_at = here(p);
    uint32_t off, len;
    word(p, &off, &len);
    if (!len)
        return perr(BST_ERR_PARSE, s->op_at, "expected an op name, found %s", what_is_here(p).s);
    wordbuf opname = word_str(p, off, len);
    s->op = len < sizeof opname.s ? bsti_op_from_name(opname.s) : BST_OP_NONE;
    const bsti_op_info *info = bsti_op_get(s->op);
    if (!info)
        return perr(BST_ERR_PARSE, s->op_at, "unknown op '%s'", opname.s);
    if (info->is_source)
        return parse_source(p, s);
    return parse_op_rest(p, s, info);
}

static bst_status parse_output(parser *p)
{
    bst_status st = grow((void **)&p->outs, &p->cap_outs, p->n_outs + 1, sizeof *p->outs);
    if (st)
        return st;
    output_stmt *o = &p->outs[p->n_outs++];
    memset(o, 0, sizeof *o);
    if ((st = value_ref(p, &o->value)))
        return st;
    o->at = o->value.at;
    return parse_string(p, &o->name, NULL, false);
}

static bst_status parse_annotation(parser *p)
{
    advance(p); /* ';' */
    skip_ws(p);
    pos at = here(p);
    size_t start = p->i;
    while (peek(p) != -1 && peek(p) != '\n' && peek(p) != '#')
        advance(p);
    size_t end = p->i;
    while (end > start && (p->s[end - 1] == ' ' || p->s[end - 1] == '\t' || p->s[end - 1] == '\r'))
        end--;
    if (end - start > 512)
        return perr(BST_ERR_PARSE, at, "type annotation is too long");
    stmt *s = p->n_stmts ? &p->stmts[p->n_stmts - 1] : NULL;
    if (!s)
        return perr(BST_ERR_PARSE, at, "type annotation without a statement");
    for (size_t k = start; k < end; k++)
        if ((unsigned char)p->s[k] < 0x20 || (unsigned char)p->s[k] >= 0x7f)
            return perr(BST_ERR_PARSE, at, "bad byte 0x%02x in type annotation",
                        (unsigned char)p->s[k]);
    s->ann_off = (uint32_t)start;
    s->ann_len = (uint32_t)(end - start);
    s->ann_at = at;
    return BST_OK;
}

static bst_status parse_statements(parser *p)
{
    for (;;) {
        skip_ws(p);
        int c = peek(p);
        if (c == -1)
            return BST_OK;
        if (c == '\n') {
            advance(p);
            continue;
        }
        bst_status st;
        bool is_def = c == '%';
        if (is_def) {
            st = parse_def(p);
        } else {
            pos at = here(p);
            uint32_t off, len;
            word(p, &off, &len);
            if (len && word_is(p, off, len, "output"))
                st = parse_output(p);
            else
                st = perr(BST_ERR_PARSE, at,
                          "expected a statement ('%%name = op ...' or 'output %%name \"name\"'), "
                          "found %s%s%s",
                          len ? "'" : "", len ? word_str(p, off, len).s : what_is_here(p).s,
                          len ? "'" : "");
        }
        if (st)
            return st;
        skip_ws(p);
        if (is_def && peek(p) == ';' && (st = parse_annotation(p)))
            return st;
        if (!at_eol(p))
            return perr(BST_ERR_PARSE, here(p), "unexpected %s at end of statement",
                        what_is_here(p).s);
    }
}

/* Names -> statements: redefinitions, then every reference in text order. */
static bst_status resolve(parser *p, bsti_strmap *defs)
{
    if (!bsti_map_init(defs, p->n_stmts))
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing graph");
    for (uint32_t i = 0; i < p->n_stmts; i++) {
        stmt *s = &p->stmts[i];
        bsti_map_entry *prev = bsti_map_put(defs, p->s + s->name_off, s->name_len, i);
        if (prev)
            return perr(BST_ERR_GRAPH, s->at, "%%%s is already defined at %u:%u",
                        word_str(p, s->name_off, s->name_len).s, p->stmts[prev->value].at.line,
                        p->stmts[prev->value].at.col);
    }
    for (uint32_t i = 0; i < p->n_stmts; i++) {
        stmt *s = &p->stmts[i];
        for (uint32_t k = 0; k < s->n_inputs; k++) {
            ref *r = &s->inputs[k];
            const bsti_map_entry *e = bsti_map_get(defs, p->s + r->off, r->len);
            if (!e)
                return perr(BST_ERR_GRAPH, r->at, "undefined value %%%s",
                            word_str(p, r->off, r->len).s);
            r->target = e->value;
        }
    }
    for (uint32_t i = 0; i < p->n_outs; i++) {
        ref *r = &p->outs[i].value;
        const bsti_map_entry *e = bsti_map_get(defs, p->s + r->off, r->len);
        if (!e)
            return perr(BST_ERR_GRAPH, r->at, "undefined value %%%s",
                        word_str(p, r->off, r->len).s);
        r->target = e->value;
    }
    return BST_OK;
}

/* Depth-first topological order that keeps text order where the text is already ordered.
 * Iterative, so deep chains cannot exhaust the C stack. */
static bst_status topo_order(parser *p, uint32_t *order)
{
    uint32_t n = p->n_stmts, n_done = 0;
    uint8_t *state = calloc(n ? n : 1, 1); /* 0 new, 1 on the stack, 2 done */
    uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
    uint32_t *next = calloc(n ? n : 1, sizeof *next); /* next operand to visit */
    if (!state || !stack || !next) {
        free(state);
        free(stack);
        free(next);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing graph");
    }
    bst_status st = BST_OK;
    for (uint32_t root = 0; root < n && !st; root++) {
        if (state[root])
            continue;
        uint32_t depth = 0;
        stack[depth++] = root;
        state[root] = 1;
        while (depth && !st) {
            uint32_t s = stack[depth - 1];
            stmt *sp = &p->stmts[s];
            if (next[s] < sp->n_inputs) {
                ref *r = &sp->inputs[next[s]++];
                uint32_t t = r->target;
                if (state[t] == 0) {
                    state[t] = 1;
                    stack[depth++] = t;
                } else if (state[t] == 1) {
                    char list[1024];
                    size_t used = 0;
                    uint32_t from = depth;
                    while (from > 0 && stack[from - 1] != t)
                        from--;
                    for (uint32_t k = from ? from - 1 : 0; k < depth; k++) {
                        const stmt *c = &p->stmts[stack[k]];
                        int w = snprintf(
                            list + used, sizeof list - used, "%s%%%.*s", used ? ", " : "",
                            (int)(c->name_len < 64 ? c->name_len : 64), p->s + c->name_off);
                        if (w < 0 || (size_t)w >= sizeof list - used - 8) {
                            snprintf(list + used, sizeof list - used, ", ...");
                            break;
                        }
                        used += (size_t)w;
                    }
                    st = perr(BST_ERR_GRAPH, r->at, "cycle through %s", list);
                }
            } else {
                state[s] = 2;
                order[n_done++] = s;
                depth--;
            }
        }
    }
    free(state);
    free(stack);
    free(next);
    return st;
}

static bst_status build(parser *p, const uint32_t *order, bst_graph *g)
{
    uint32_t *new_id = malloc((p->n_stmts ? p->n_stmts : 1) * sizeof *new_id);
    if (!new_id)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing graph");
    bst_status st = BST_OK;
    for (uint32_t k = 0; k < p->n_stmts && !st; k++) {
        stmt *s = &p->stmts[order[k]];
        bsti_node n;
        memset(&n, 0, sizeof n);
        n.op = s->op;
        n.alias_of = BSTI_NONE;
        n.device = BSTI_NONE;
        n.variant = BSTI_NONE;
        n.line = s->at.line;
        n.col = s->at.col;
        n.type = s->type;
        n.name = s->name;
        n.const_data = s->data;
        n.data_size = s->data_size;
        s->name = NULL;
        s->data = NULL;
        n.n_inputs = s->n_inputs;
        for (uint32_t i = 0; i < s->n_inputs; i++)
            n.inputs[i] = new_id[s->inputs[i].target];
        n.n_attrs = s->n_attrs;
        for (uint32_t i = 0; i < s->n_attrs; i++)
            n.attrs[i] = p->attrs[s->attr_first + i].attr;
        uint32_t id;
        if ((st = bsti_graph_append(g, &n, &id)))
            break;
        new_id[order[k]] = id;
        if ((st = bsti_infer_node(g, id))) {
            st = bsti_fail_context(st, "%u:%u", s->op_at.line, s->op_at.col);
            break;
        }
        if (s->ann_len) {
            char inferred[256];
            bsti_type_format(&g->nodes[id].type, inferred, sizeof inferred);
            if (strlen(inferred) != s->ann_len ||
                memcmp(inferred, p->s + s->ann_off, s->ann_len) != 0)
                st = perr(BST_ERR_SHAPE, s->ann_at,
                          "type annotation '%.*s' does not match the inferred type %s",
                          (int)s->ann_len, p->s + s->ann_off, inferred);
        }
    }
    for (uint32_t i = 0; i < p->n_outs && !st; i++) {
        output_stmt *o = &p->outs[i];
        st = bst_graph_mark_output(g, new_id[o->value.target], o->name);
        if (st)
            st = bsti_fail_context(st, "%u:%u", o->at.line, o->at.col);
    }
    free(new_id);
    return st;
}

static void parser_free(parser *p)
{
    for (uint32_t i = 0; i < p->n_stmts; i++) {
        free(p->stmts[i].name);
        free(p->stmts[i].data);
    }
    for (uint32_t i = 0; i < p->n_outs; i++)
        free(p->outs[i].name);
    free(p->stmts);
    free(p->attrs);
    free(p->outs);
}

BST_API bst_status bst_graph_parse(const char *text, size_t length, bst_graph **out_graph)
{
    if (!out_graph || (!text && length))
        return bsti_fail(BST_ERR_INVALID_ARG, "bst_graph_parse: NULL argument");
    *out_graph = NULL;
    if (length > MAX_TEXT)
        return bsti_fail(BST_ERR_OVERFLOW, "1:1: graph text of %zu bytes exceeds the 1 GiB limit",
                         length);
    parser p = {.s = text ? text : "", .n = length, .line = 1, .col = 1};
    bsti_strmap defs = {0};
    uint32_t *order = NULL;
    bst_graph *g = NULL;
    bsti_c_locale loc;
    bsti_c_locale_enter(&loc);
    bst_status st = parse_statements(&p);
    if (!st)
        st = resolve(&p, &defs);
    if (!st && !(order = malloc((p.n_stmts ? p.n_stmts : 1) * sizeof *order)))
        st = bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory parsing graph");
    if (!st)
        st = topo_order(&p, order);
    if (!st)
        st = bst_graph_create(&g);
    if (!st)
        st = build(&p, order, g);
    bsti_c_locale_leave(&loc);
    free(order);
    free(defs.slots);
    parser_free(&p);
    if (st) {
        bst_graph_destroy(g);
        return st;
    }
    *out_graph = g;
    return BST_OK;
}
