/*
 * tests/test_profile.c — profiling (bst_program_set_profiling, bst_session_set_profiling), the
 * Chrome trace and top-N summary of `--profile` (bench/bench_profile.c, `bastion run`), and the
 * model's weight bytes per token.
 *
 * Records are checked against sources independent of the profiler: node ids, ops and kernel
 * variants against bst_program_describe; the partition count of each run against the number of
 * node records it covers; a profiled run's output against an unprofiled run's (node-by-node
 * execution must compute the same thing); the trace file against the JSON grammar (json-c) and
 * the op names of bst_op_name; weight bytes against the GGUF tensor table read with the
 * internal reader.
 */
#include "bench.h"
#include "runtime/model/gguf.h"
#include "test_util.h"

#include <bastion/bastion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- collecting records --- */

typedef struct rec {
    bst_profile_record r;
    char name[32], variant[48], backend[32], label[16];
} rec;

typedef struct recs {
    rec *v;
    size_t n, cap;
} recs;

static void collect(void *user, const bst_profile_record *r)
{
    recs *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        rec *v = realloc(c->v, cap * sizeof *v);
        if (!v)
            return;
        c->v = v;
        c->cap = cap;
    }
    rec *x = &c->v[c->n++];
    x->r = *r;
    snprintf(x->name, sizeof x->name, "%s", r->name ? r->name : "(null)");
    snprintf(x->variant, sizeof x->variant, "%s", r->variant ? r->variant : "(null)");
    snprintf(x->backend, sizeof x->backend, "%s", r->backend ? r->backend : "(null)");
    snprintf(x->label, sizeof x->label, "%s", r->label ? r->label : "(null)");
}

static bool is_op_name(const char *name)
{
    for (int op = 1; op < BST_OP_COUNT; op++)
        if (bst_op_name((bst_op)op) && strcmp(bst_op_name((bst_op)op), name) == 0)
            return true;
    return false;
}

/* Every node record lies inside the partition record that follows it, for the same run,
 * program and partition, and their count is the partition's n_nodes. */
static void check_nesting(const recs *c, bool nodes_level)
{
    size_t pending = 0, first = 0;
    for (size_t i = 0; i < c->n; i++) {
        const bst_profile_record *r = &c->v[i].r;
        CU_ASSERT_EQUAL(r->struct_size, sizeof *r);
        if (r->kind == BST_PROFILE_NODE) {
            CU_ASSERT_TRUE(nodes_level);
            if (pending == 0)
                first = i;
            pending++;
            CU_ASSERT_TRUE(is_op_name(c->v[i].name));
            CU_ASSERT_STRING_EQUAL(c->v[i].name, bst_op_name((bst_op)r->op));
            CU_ASSERT_TRUE(c->v[i].variant[0] != '\0');
            CU_ASSERT_EQUAL(r->n_nodes, 1);
            CU_ASSERT_NOT_EQUAL(r->node, UINT32_MAX);
            continue;
        }
        if (r->kind == BST_PROFILE_PARTITION) {
            CU_ASSERT_STRING_EQUAL(c->v[i].name, "partition");
            CU_ASSERT_EQUAL(r->node, UINT32_MAX);
            CU_ASSERT_TRUE(r->n_nodes > 0);
            if (nodes_level) {
                CU_ASSERT_EQUAL(pending, r->n_nodes);
                uint64_t bytes = 0;
                for (size_t k = first; k < first + pending && k < i; k++) {
                    const bst_profile_record *nr = &c->v[k].r;
                    CU_ASSERT_EQUAL(nr->partition, r->partition);
                    CU_ASSERT_EQUAL(nr->run, r->run);
                    CU_ASSERT_STRING_EQUAL(c->v[k].label, c->v[i].label);
                    CU_ASSERT_EQUAL(nr->device, r->device);
                    CU_ASSERT_TRUE(nr->start_ns >= r->start_ns);
                    CU_ASSERT_TRUE(nr->start_ns + nr->wall_ns <= r->start_ns + r->wall_ns);
                    bytes += nr->bytes;
                }
                CU_ASSERT_EQUAL(bytes, r->bytes);
            } else {
                CU_ASSERT_EQUAL(pending, 0);
            }
            pending = 0;
        }
    }
    CU_ASSERT_EQUAL(pending, 0);
}

/* --- a program from a fixture --- */

static bst_context *make_context(void)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    return ctx;
}

static bst_program *fixture_program(bst_context *ctx, const char *name)
{
    size_t size = 0;
    char *text = bst_test_read_file(bst_test_fixture(name), &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_parse(text, size, &g) == BST_OK);
    free(text);
    bst_program *p = NULL;
    bst_status st = bst_program_create(ctx, g, &p);
    if (st != BST_OK)
        fprintf(stderr, "program: %s\n", bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    bst_graph_destroy(g);
    return p;
}

static void fill(float *v, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

/* llama_block.bir at n_tokens = 3, n_kv = 3: inputs, run, output. */
static void run_block(bst_program *p, float *out)
{
    enum { T = 3, E = 576, T_MAX = 8, KV_MAX = 256 };
    static float x[T_MAX * E], mask[T_MAX * KV_MAX];
    int32_t pos[T_MAX] = {0, 1, 2};
    fill(x, T_MAX * E, 7);
    for (int t = 0; t < T_MAX; t++)
        for (int j = 0; j < KV_MAX; j++)
            mask[t * KV_MAX + j] = j <= t ? 0.0f : -INFINITY;
    CU_ASSERT_EQUAL(bst_program_set_input(p, "x", x, sizeof x), BST_OK);
    CU_ASSERT_EQUAL(bst_program_set_input(p, "pos", pos, sizeof pos), BST_OK);
    CU_ASSERT_EQUAL(bst_program_set_input(p, "mask", mask, sizeof mask), BST_OK);
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = T, .n_kv = T, .pos = 0};
    CU_ASSERT_EQUAL(bst_program_run(p, &rp), BST_OK);
    CU_ASSERT_EQUAL(bst_program_get_output(p, "out", out, (uint64_t)T_MAX * E * sizeof *out),
                    BST_OK);
}

/* The line of bst_program_describe for node `id`: "%id op type -> label [variant]". */
static bool described_as(const char *text, uint32_t id, const char *op, const char *variant)
{
    char head[32];
    snprintf(head, sizeof head, "%%%u ", id);
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, head, strlen(head)) == 0) {
            char buf[512];
            snprintf(buf, sizeof buf, "%.*s", (int)(len < 511 ? len : 511), line);
            const char *o = buf + strlen(head);
            char want_v[64];
            snprintf(want_v, sizeof want_v, "[%s]", variant);
            size_t bl = strlen(buf), vl = strlen(want_v);
            return strncmp(o, op, strlen(op)) == 0 && o[strlen(op)] == ' ' && bl >= vl &&
                   strcmp(buf + bl - vl, want_v) == 0;
        }
        line = end ? end + 1 : NULL;
    }
    return false;
}

/* Counts the compute nodes bst_program_describe lists: lines ending "[variant]", not "[alias]". */
static size_t described_nodes(bst_program *p)
{
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_describe(p, &text) == BST_OK);
    size_t described = 0;
    for (const char *l = text; *l;) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (l[0] == '%' && len > 2 && l[len - 1] == ']' &&
            !(len >= 7 && strncmp(l + len - 7, "[alias]", 7) == 0))
            described++;
        l += len + (end ? 1 : 0);
    }
    bst_free(text);
    return described;
}

/* llama_block.bir's program, its unprofiled output in *plain and room for a profiled one. */
enum { BLOCK_OUT = 8 * 576 };
static bst_program *block_program(bst_context *ctx, float **plain, float **profiled)
{
    bst_program *p = fixture_program(ctx, "llama_block.bir");
    *plain = calloc(BLOCK_OUT, sizeof **plain);
    *profiled = calloc(BLOCK_OUT, sizeof **profiled);
    CU_ASSERT_FATAL(*plain && *profiled);
    run_block(p, *plain);
    return p;
}

static void test_program_nodes(void)
{
    bst_context *ctx = make_context();
    enum { N = BLOCK_OUT };
    float *plain, *profiled;
    bst_program *p = block_program(ctx, &plain, &profiled);

    recs c = {0};
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_NODES, "block", collect, &c),
                    BST_OK);
    run_block(p, profiled);
    /* Node by node over the same memory computes exactly what the partition computes. */
    CU_ASSERT_EQUAL(memcmp(plain, profiled, N * sizeof *plain), 0);
    CU_ASSERT_TRUE(c.n > 0);
    check_nesting(&c, true);

    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_describe(p, &text) == BST_OK);
    size_t n_nodes = 0, n_parts = 0;
    for (size_t i = 0; i < c.n; i++) {
        const rec *x = &c.v[i];
        CU_ASSERT_STRING_EQUAL(x->label, "block");
        CU_ASSERT_EQUAL(x->r.run, 0);
        CU_ASSERT_EQUAL(x->r.n_tokens, 3);
        CU_ASSERT_EQUAL(x->r.n_kv, 3);
        CU_ASSERT_STRING_EQUAL(x->backend, "cpu");
        if (x->r.kind == BST_PROFILE_NODE) {
            n_nodes++;
            CU_ASSERT_TRUE(x->r.bytes > 0);
            if (!described_as(text, x->r.node, x->name, x->variant))
                CU_FAIL("a node record does not match bst_program_describe");
        }
        n_parts += x->r.kind == BST_PROFILE_PARTITION;
    }
    /* Every compute node the program describes runs once. */
    const size_t described = described_nodes(p);
    CU_ASSERT_EQUAL(n_nodes, described);
    CU_ASSERT_TRUE(n_parts >= 1);
    bst_free(text);

    /* Partitions level: what normally runs, one record per partition, the same output. */
    recs c2 = {0};
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_PARTITIONS, NULL, collect, &c2),
                    BST_OK);
    run_block(p, profiled);
    CU_ASSERT_EQUAL(memcmp(plain, profiled, N * sizeof *plain), 0);
    check_nesting(&c2, false);
    size_t covered = 0;
    for (size_t i = 0; i < c2.n; i++) {
        CU_ASSERT_STRING_EQUAL(c2.v[i].label, "");
        CU_ASSERT_EQUAL(c2.v[i].r.run, 1); /* the program's second profiled run */
        if (c2.v[i].r.kind == BST_PROFILE_PARTITION) {
            covered += c2.v[i].r.n_nodes;
            /* The CPU backend reports its own time: at most the wall time around it. */
            CU_ASSERT_TRUE(c2.v[i].r.device_ns <= c2.v[i].r.wall_ns);
        }
    }
    CU_ASSERT_EQUAL(covered, described);

    /* Off: no more records. */
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_OFF, NULL, NULL, NULL), BST_OK);
    size_t before = c2.n;
    run_block(p, profiled);
    CU_ASSERT_EQUAL(c2.n, before);
    CU_ASSERT_EQUAL(memcmp(plain, profiled, N * sizeof *plain), 0);

    /* Misuse is refused with a message. */
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_NODES, NULL, NULL, NULL),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, (bst_profile_level)7, NULL, collect, &c),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_program_set_profiling(NULL, BST_PROFILE_NODES, NULL, collect, &c),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_TRUE(strlen(bst_last_error()) > 0);

    free(c.v);
    free(c2.v);
    free(plain);
    free(profiled);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
}

/* NODES_IN_RUN: the partitions' own executables run, and the CPU backend times their nodes
 * inside: node records one after another without overlap inside their partition's execute, every
 * node covered, the output that of an unprofiled run. */
static void test_program_nodes_in_run(void)
{
    bst_context *ctx = make_context();
    enum { N = BLOCK_OUT };
    float *plain, *profiled;
    bst_program *p = block_program(ctx, &plain, &profiled);

    recs c = {0};
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_NODES_IN_RUN, "in-run", collect,
                                              &c),
                    BST_OK);
    run_block(p, profiled);
    CU_ASSERT_EQUAL(memcmp(plain, profiled, N * sizeof *plain), 0);
    check_nesting(&c, true);
    size_t n_nodes = 0;
    uint64_t prev_end = 0, group_start = 0, sum = 0;
    bool timed = false;
    for (size_t i = 0; i < c.n; i++) {
        const bst_profile_record *r = &c.v[i].r;
        if (r->kind == BST_PROFILE_PARTITION) {
            /* The backend's clock: its nodes add up to at most its time for the execute. */
            CU_ASSERT_TRUE(sum <= r->device_ns);
            prev_end = sum = 0;
            continue;
        }
        n_nodes++;
        CU_ASSERT_EQUAL(r->wall_ns, r->device_ns);
        if (r->wall_ns == 0) { /* run with the node before it: the same start */
            CU_ASSERT_EQUAL(r->start_ns, group_start);
            continue;
        }
        timed = true;
        CU_ASSERT_TRUE(prev_end == 0 || r->start_ns >= prev_end);
        group_start = r->start_ns;
        prev_end = r->start_ns + r->wall_ns;
        sum += r->wall_ns;
    }
    CU_ASSERT_TRUE(timed);
    CU_ASSERT_EQUAL(n_nodes, described_nodes(p));

    /* Set again (another label): the timing stays on; then to partitions: no node records. */
    recs c2 = {0};
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_NODES_IN_RUN, "again", collect,
                                              &c2),
                    BST_OK);
    run_block(p, profiled);
    CU_ASSERT_EQUAL(c2.n, c.n);
    recs c3 = {0};
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_PARTITIONS, NULL, collect, &c3),
                    BST_OK);
    run_block(p, profiled);
    check_nesting(&c3, false);
    CU_ASSERT_EQUAL(memcmp(plain, profiled, N * sizeof *plain), 0);
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_OFF, NULL, NULL, NULL), BST_OK);

    free(c.v);
    free(c2.v);
    free(c3.v);
    free(plain);
    free(profiled);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
}

/* y = 3 x on test plugin `backend` (which lacks node times): NODES_IN_RUN is refused naming it,
 * and the program keeps profiling as it did. */
static void nodes_in_run_refused(const char *dir, const char *backend)
{
    bst_graph *g = bst_test_scale_graph(4, 32, 3.0);
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 1, .backends = backend,
                             .plugin_paths = dir};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    bst_program *p = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &p) == BST_OK);
    bst_graph_destroy(g);

    recs c = {0};
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_PARTITIONS, NULL, collect, &c),
                    BST_OK);
    CU_ASSERT_EQUAL(bst_program_set_profiling(p, BST_PROFILE_NODES_IN_RUN, NULL, collect, &c),
                    BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), backend));
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "cannot time nodes"));
    float in[4 * 32] = {1.0f}, out[4 * 32];
    CU_ASSERT_EQUAL(bst_program_set_input(p, "x", in, sizeof in), BST_OK);
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 1, .n_kv = 1};
    CU_ASSERT_EQUAL(bst_program_run(p, &rp), BST_OK);
    CU_ASSERT_EQUAL(bst_program_get_output(p, "y", out, sizeof out), BST_OK);
    CU_ASSERT_EQUAL(out[0], 3.0f);
    CU_ASSERT_EQUAL(c.n, 1); /* still partitions: one record */
    if (c.n == 1)
        CU_ASSERT_EQUAL(c.v[0].r.kind, BST_PROFILE_PARTITION);
    free(c.v);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
}

/* tiny answers ABI version 1; tiny_async answers 2 but fills version 3's node_timing and
 * node_times, which the loader must clear (they would fail the profiling if called). */
static void test_nodes_in_run_unsupported(void)
{
    const char *dir = bst_test_plugin_dir();
    if (!dir)
        return;
    nodes_in_run_refused(dir, "tiny");
    nodes_in_run_refused(dir, "tiny_async");
}

/* --- the default model --- */

static const char *model_path(void)
{
    const char *path = getenv("BASTION_MODEL");
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "BASTION_MODEL is not set or unreadable (run tools/fetch-model.sh)\n");
        return NULL;
    }
    fclose(f);
    return path;
}

static bool no_token(void *user, int32_t token, const char *piece, size_t length)
{
    (void)user;
    (void)token;
    (void)piece;
    (void)length;
    return true;
}

/* Validates a trace file: the Trace Event Format's fields on every event; node events named
 * after ops, nested in their partition's event; returns the number of node events. */
static size_t check_trace(const char *path, size_t *out_partitions)
{
    json_object *root = json_object_from_file(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    json_object *events = NULL;
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "traceEvents", &events));
    CU_ASSERT_FATAL(json_object_is_type(events, json_type_array));
    size_t n = json_object_array_length(events), n_nodes = 0, n_parts = 0, covered = 0;
    double part_start = -1, part_end = -1;
    size_t nodes_since = 0;
    double node_min = 1e300, node_max = -1;
    for (size_t i = 0; i < n; i++) {
        json_object *ev = json_object_array_get_idx(events, i), *v = NULL;
        CU_ASSERT_FATAL(json_object_is_type(ev, json_type_object));
        CU_ASSERT_FATAL(json_object_object_get_ex(ev, "ph", &v));
        const char *ph = json_object_get_string(v);
        CU_ASSERT_TRUE(json_object_object_get_ex(ev, "pid", &v) &&
                       json_object_is_type(v, json_type_int));
        CU_ASSERT_TRUE(json_object_object_get_ex(ev, "tid", &v) &&
                       json_object_is_type(v, json_type_int));
        CU_ASSERT_TRUE(json_object_object_get_ex(ev, "name", &v) &&
                       json_object_is_type(v, json_type_string));
        const char *name = json_object_get_string(v);
        if (strcmp(ph, "M") == 0)
            continue;
        CU_ASSERT_STRING_EQUAL(ph, "X");
        json_object *cat = NULL, *ts = NULL, *dur = NULL, *args = NULL;
        CU_ASSERT_FATAL(json_object_object_get_ex(ev, "cat", &cat));
        CU_ASSERT_FATAL(json_object_object_get_ex(ev, "ts", &ts));
        CU_ASSERT_FATAL(json_object_object_get_ex(ev, "dur", &dur));
        CU_ASSERT_FATAL(json_object_object_get_ex(ev, "args", &args));
        double t = json_object_get_double(ts), d = json_object_get_double(dur);
        CU_ASSERT_TRUE(t >= 0.0);
        CU_ASSERT_TRUE(d >= 0.0);
        json_object *bytes = NULL;
        CU_ASSERT_TRUE(json_object_object_get_ex(args, "bytes", &bytes));
        const char *c = json_object_get_string(cat);
        if (strcmp(c, "node") == 0) {
            CU_ASSERT_TRUE(is_op_name(name));
            json_object *variant = NULL;
            CU_ASSERT_TRUE(json_object_object_get_ex(args, "variant", &variant) &&
                           json_object_get_string_len(variant) > 0);
            n_nodes++;
            nodes_since++;
            node_min = t < node_min ? t : node_min;
            node_max = t + d > node_max ? t + d : node_max;
        } else if (strcmp(c, "partition") == 0) {
            CU_ASSERT_STRING_EQUAL(name, "partition");
            json_object *nn = NULL;
            CU_ASSERT_FATAL(json_object_object_get_ex(args, "n_nodes", &nn));
            CU_ASSERT_EQUAL((size_t)json_object_get_int64(nn), nodes_since);
            /* Microsecond rounding of ts and dur: 2 ns of slack. */
            if (nodes_since) {
                CU_ASSERT_TRUE(node_min >= t - 0.002);
                CU_ASSERT_TRUE(node_max <= t + d + 0.002);
            }
            covered += nodes_since;
            nodes_since = 0;
            node_min = 1e300;
            node_max = -1;
            n_parts++;
            part_start = t;
            part_end = t + d;
        } else {
            CU_ASSERT_STRING_EQUAL(c, "copy");
        }
    }
    (void)part_start;
    (void)part_end;
    CU_ASSERT_EQUAL(covered, n_nodes);
    json_object_put(root);
    *out_partitions = n_parts;
    return n_nodes;
}

/* Whether the trace has a node of time 0: one run as part of an earlier node's work. */
static bool trace_has_grouped_node(const char *path)
{
    json_object *root = json_object_from_file(path), *events = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_FATAL(json_object_object_get_ex(root, "traceEvents", &events));
    bool grouped = false;
    for (size_t i = 0; i < json_object_array_length(events) && !grouped; i++) {
        json_object *ev = json_object_array_get_idx(events, i), *cat = NULL, *dur = NULL;
        grouped = json_object_object_get_ex(ev, "cat", &cat) &&
                  strcmp(json_object_get_string(cat), "node") == 0 &&
                  json_object_object_get_ex(ev, "dur", &dur) && json_object_get_double(dur) == 0;
    }
    json_object_put(root);
    return grouped;
}

/* Parses the summary; checks its shape, its order and its totals against the trace. */
static void check_summary(const char *text, uint32_t top, size_t trace_nodes, size_t trace_parts)
{
    const char *l = text;
    size_t shown = 0, pairs = 0;
    CU_ASSERT_FATAL(sscanf(l, "profile: top %zu of %zu op/kernel pairs by total time", &shown,
                           &pairs) == 2);
    CU_ASSERT_TRUE(shown <= top && shown <= pairs && shown > 0);
    l = strchr(l, '\n');
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    l++;
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "total_ms"));
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "op/kernel@backend"));
    l = strchr(l, '\n') + 1;
    double prev = INFINITY, share_sum = 0;
    for (size_t i = 0; i < shown; i++) {
        double ms, share, avg, gbs;
        unsigned long long calls;
        char dev[32], key[160];
        CU_ASSERT_FATAL(sscanf(l, " %lf %lf%% %llu %lf %31s %lf %159s", &ms, &share, &calls,
                               &avg, dev, &gbs, key) == 7);
        CU_ASSERT_TRUE(ms <= prev);
        prev = ms;
        share_sum += share;
        CU_ASSERT_TRUE(calls > 0);
        /* avg_us x calls = total_ms, to the printed precision */
        CU_ASSERT_TRUE(fabs(avg * (double)calls / 1e3 - ms) <= 0.01 * ms + 0.01);
        char *at = strchr(key, '@');
        CU_ASSERT_PTR_NOT_NULL_FATAL(at);
        *at = '\0';
        char *slash = strchr(key, '/');
        if (slash)
            *slash = '\0';
        CU_ASSERT_TRUE(is_op_name(key));
        CU_ASSERT_STRING_EQUAL(at + 1, "cpu");
        l = strchr(l, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(l);
        l++;
    }
    CU_ASSERT_TRUE(share_sum <= 100.0 + 0.1 * (double)shown);
    unsigned long long parts = 0, nodes = 0, copies = 0, bytes = 0, events = 0;
    double pms, nms, cms;
    CU_ASSERT_FATAL(sscanf(l, "profile: %llu partition runs %lf ms, %llu node runs %lf ms, %llu "
                              "copies %lf ms (%llu bytes); %llu trace events",
                           &parts, &pms, &nodes, &nms, &copies, &cms, &bytes, &events) == 8);
    CU_ASSERT_EQUAL(nodes, trace_nodes);
    CU_ASSERT_EQUAL(parts, trace_parts);
    CU_ASSERT_TRUE(nms <= pms + 0.01);
}

/* The pieces-of-work table that follows the totals at nodes-in-run, all its rows shown (top at
 * least their count): its shape and order, each row's arithmetic, and its totals against the
 * trace's nodes and their time; when some node ran as part of another (a matmul group), a row
 * has more than one node. `rated`: bench_profile_rate_reads ran, so the pieces it rates (a
 * decode step's of 64 KiB or more) have an x_read, the others "-", and a line says what it is;
 * else every x_read is "-". */
static void check_work_summary(const char *text, uint32_t top, size_t trace_nodes,
                               bool trace_grouped, bool rated)
{
    const char *l = strstr(text, "profile: top ");
    l = l ? strstr(l + 1, "profile: top ") : NULL; /* the op/kernel table's is the first */
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    size_t shown = 0, rows = 0;
    CU_ASSERT_FATAL(sscanf(l, "profile: top %zu of %zu pieces of work by total time", &shown,
                           &rows) == 2);
    CU_ASSERT_EQUAL_FATAL(shown, rows);
    CU_ASSERT_TRUE(shown <= top && shown > 0);
    l = strchr(l, '\n') + 1;
    CU_ASSERT_PTR_NOT_NULL(strstr(l, "tokens"));
    l = strchr(l, '\n') + 1;
    double prev = INFINITY, total_ms = 0;
    unsigned long long nodes_in_rows = 0;
    bool multi = false;
    for (size_t i = 0; i < shown; i++) {
        double ms, share, avg, p50, gbs;
        unsigned long long calls;
        long long tokens;
        unsigned nodes;
        char x_read[16], bytes[32], key[160];
        CU_ASSERT_FATAL(sscanf(l, " %lf %lf%% %llu %lf %lf %lf %15s %lld %u %31s %159s", &ms,
                               &share, &calls, &avg, &p50, &gbs, x_read, &tokens, &nodes, bytes,
                               key) == 11);
        /* p50_us, the median piece (a number: every piece's time was kept): one piece's time
         * when there is one; never more than all of them (total_ms is printed to 0.5 us); and at
         * least half the pieces take it, so the average is at least half of it (both printed to
         * 0.005 us). */
        CU_ASSERT_TRUE(p50 >= 0);
        if (calls == 1)
            CU_ASSERT_TRUE(fabs(p50 - avg) <= 0.011);
        CU_ASSERT_TRUE(p50 <= ms * 1e3 + 0.51);
        CU_ASSERT_TRUE(avg >= p50 / 2 - 0.011);
        const bool streams = strcmp(bytes, "varies") != 0 && atof(bytes) >= 65536 && tokens <= 8;
        if (rated && streams) {
            CU_ASSERT_TRUE(atof(x_read) > 0);
        } else {
            CU_ASSERT_STRING_EQUAL(x_read, "-");
        }
        CU_ASSERT_TRUE(ms <= prev);
        prev = ms;
        total_ms += ms;
        CU_ASSERT_TRUE(calls > 0 && nodes > 0 && tokens > 0);
        CU_ASSERT_TRUE(fabs(avg * (double)calls / 1e3 - ms) <= 0.01 * ms + 0.01);
        /* GB/s = one piece's bytes / its average time, to the printed precision (avg_us is
         * rounded to 0.005 us) */
        if (strcmp(bytes, "varies") != 0 && avg > 0.01)
            CU_ASSERT_TRUE(fabs(atof(bytes) / (avg * 1e3) - gbs) <=
                           gbs * (0.0051 / avg + 0.001) + 0.006);
        nodes_in_rows += calls * nodes;
        multi = multi || nodes > 1;
        *strchr(key, '@') = '\0';
        if (strchr(key, '/'))
            *strchr(key, '/') = '\0';
        CU_ASSERT_TRUE(is_op_name(key));
        l = strchr(l, '\n') + 1;
    }
    CU_ASSERT_EQUAL(nodes_in_rows, trace_nodes);
    CU_ASSERT_EQUAL(multi, trace_grouped);
    CU_ASSERT_EQUAL(strstr(l, "profile: x_read: ") == l, rated);
    double parts_ms, nodes_ms;
    unsigned long long parts, nodes;
    const char *totals = strstr(text, " partition runs ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(totals);
    while (totals > text && totals[-1] != '\n')
        totals--;
    CU_ASSERT_FATAL(sscanf(totals, "profile: %llu partition runs %lf ms, %llu node runs %lf ms",
                           &parts, &parts_ms, &nodes, &nodes_ms) == 4);
    CU_ASSERT_TRUE(fabs(total_ms - nodes_ms) <= 0.001 * (double)shown + 0.001);
}

static void test_session_trace(void)
{
    const char *path = model_path();
    CU_ASSERT_PTR_NOT_NULL_FATAL(path);
    bst_context *ctx = make_context();
    bst_model *model = NULL;
    CU_ASSERT_FATAL(bst_model_load(ctx, path, NULL, &model) == BST_OK);
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = 64, .n_batch = 16};
    bst_session *s = NULL;
    CU_ASSERT_FATAL(bst_session_create(model, &so, &s) == BST_OK);

    bench_profile *prof = NULL;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_FATAL(bench_profile_create(&prof, &e) == BST_OK);
    CU_ASSERT_FATAL(bench_profile_begin(prof, "test", ctx, BST_PROFILE_NODES, &e) == BST_OK);
    CU_ASSERT_FATAL(bst_session_set_profiling(s, BST_PROFILE_NODES, bench_profile_record,
                                              prof) == BST_OK);
    int32_t prompt[4] = {1, 2, 3, 4};
    bst_sampler_params sp = {.struct_size = sizeof sp, .temperature = 0.0f, .top_p = 1.0f,
                             .repeat_penalty = 1.0f};
    bst_generate_stats stats = {.struct_size = sizeof stats};
    CU_ASSERT_EQUAL(bst_generate(s, prompt, 4, 3, &sp, no_token, NULL, NULL, &stats), BST_OK);
    CU_ASSERT_EQUAL(bst_session_set_profiling(s, BST_PROFILE_OFF, NULL, NULL), BST_OK);

    char trace[] = "/tmp/bastion-profile-XXXXXX";
    int fd = mkstemp(trace);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(bench_profile_write_trace(prof, trace, &e), BST_OK);
    size_t parts = 0;
    size_t nodes = check_trace(trace, &parts);
    CU_ASSERT_TRUE(nodes > 100); /* 30 layers */
    /* A body and a head run per evaluation: the prompt, then a step per token but the last
     * (unless it ended at an end-of-generation token). */
    CU_ASSERT_TRUE(parts >= 2 * (1 + (size_t)stats.n_generated - 1));

    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    CU_ASSERT_FATAL(mem != NULL);
    bench_profile_summary(prof, mem, 5);
    fclose(mem);
    check_summary(buf, 5, nodes, parts);
    free(buf);
    unlink(trace);
    close(fd);

    bench_profile_destroy(prof);
    bst_session_destroy(s);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
}

/* `bastion run --profile FILE` writes the same trace and summary; so does `bastion bench model`,
 * whose table of pieces of work also rates them against same-size reads. */
static void test_cli_profile(void)
{
    const char *path = model_path(), *bin = getenv("BASTION_BIN");
    CU_ASSERT_PTR_NOT_NULL_FATAL(path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bin);
    char trace[] = "/tmp/bastion-profile-XXXXXX", err[] = "/tmp/bastion-profile-err-XXXXXX";
    int fd1 = mkstemp(trace), fd2 = mkstemp(err);
    CU_ASSERT_FATAL(fd1 >= 0 && fd2 >= 0);
    char cmd[2048];
    /* Each node alone (the default), then inside the partitions' runs: the same nodes. */
    static const char *const levels[2] = {"nodes", "nodes-in-run"};
    size_t nodes_of[2] = {0, 0};
    for (int l = 0; l < 2; l++) {
        snprintf(cmd, sizeof cmd,
                 "'%s' run -m '%s' -p 'Hello' -n 3 -c 64 -b 16 --backend cpu -t 2 --profile '%s' "
                 "--profile-level %s --profile-top %u > /dev/null 2> '%s'",
                 bin, path, trace, levels[l], l ? 64u : 4u, err);
        CU_ASSERT_EQUAL(system(cmd), 0);
        size_t parts = 0;
        nodes_of[l] = check_trace(trace, &parts);
        CU_ASSERT_TRUE(nodes_of[l] > 100);
        char *text = bst_test_read_file(err, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        const char *summary = strstr(text, "profile: top ");
        CU_ASSERT_PTR_NOT_NULL_FATAL(summary);
        check_summary(summary, l ? 64 : 4, nodes_of[l], parts);
        CU_ASSERT_PTR_NOT_NULL(strstr(summary, l ? "inside its partition's run" : "run alone"));
        if (l) /* every piece of work shown */
            check_work_summary(summary, 64, nodes_of[l], trace_has_grouped_node(trace), false);
        else
            CU_ASSERT_PTR_NULL(strstr(summary, "pieces of work"));
        free(text);
    }
    CU_ASSERT_EQUAL(nodes_of[0], nodes_of[1]);
    /* bench model at nodes-in-run: the pieces of work a decode step streams from memory are rated
     * against a same-size read (x_read), no other piece is. */
    snprintf(cmd, sizeof cmd,
             "'%s' bench model -m '%s' --quick -p 4 -n 4 -r 1 --backend cpu --threads 2 "
             "--profile '%s' --profile-level nodes-in-run --profile-top 64 > /dev/null 2> '%s'",
             bin, path, trace, err);
    CU_ASSERT_EQUAL(system(cmd), 0);
    size_t parts = 0;
    const size_t nodes = check_trace(trace, &parts);
    char *text = bst_test_read_file(err, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    check_work_summary(text, 64, nodes, trace_has_grouped_node(trace), true);
    free(text);
    /* A bad level is a usage error. */
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p x --profile '%s' --profile-level bogus "
             "> /dev/null 2>&1", bin, path, trace);
    int rc = system(cmd);
    CU_ASSERT_TRUE(rc != 0);
    unlink(trace);
    unlink(err);
    close(fd1);
    close(fd2);
}

/* bst_model_info.weight_bytes_per_token against the file's tensor table. */
static void test_weight_bytes(void)
{
    const char *path = model_path();
    CU_ASSERT_PTR_NOT_NULL_FATAL(path);
    bsti_gguf *g = NULL;
    CU_ASSERT_FATAL(bsti_gguf_open(path, NULL, &g) == BST_OK);
    uint64_t expected = 0;
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(g); i++)
        expected += bsti_gguf_tensor_at(g, i)->size;
    const bsti_gguf_tensor *embd = bsti_gguf_tensor_find(g, "token_embd.weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(embd);
    /* Tied (no output.weight): the head reads the whole table, already counted. Else one row. */
    if (bsti_gguf_tensor_find(g, "output.weight"))
        expected = expected - embd->size + embd->size / (uint64_t)embd->shape[0];
    bsti_gguf_close(g);

    bst_context *ctx = make_context();
    bst_model *model = NULL;
    CU_ASSERT_FATAL(bst_model_load(ctx, path, NULL, &model) == BST_OK);
    bst_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CU_ASSERT_EQUAL(bst_model_get_info(model, &info), BST_OK);
    CU_ASSERT_EQUAL(info.weight_bytes_per_token, expected);
    CU_ASSERT_TRUE(info.weight_bytes_per_token < info.file_bytes);
    /* A reader of the first version gets no more than it asked for. */
    memset(&info, 0xab, sizeof info);
    info.struct_size = (uint32_t)offsetof(bst_model_info, weight_bytes_per_token);
    CU_ASSERT_EQUAL(bst_model_get_info(model, &info), BST_OK);
    uint64_t untouched;
    memset(&untouched, 0xab, sizeof untouched);
    CU_ASSERT_EQUAL(info.weight_bytes_per_token, untouched);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"program profiling, nodes and partitions", test_program_nodes},
        {"program profiling, nodes inside the run", test_program_nodes_in_run},
        {"nodes inside the run on a backend without node times", test_nodes_in_run_unsupported},
        {"session trace and summary", test_session_trace},
        {"bastion run and bench model --profile", test_cli_profile},
        {"weight bytes per token", test_weight_bytes},
        {NULL, NULL},
    };
    return bst_test_run_suite("profile", cases);
}
