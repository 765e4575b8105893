/*
 * tests/test_replace.c — re-placement: a device that fails a program at compile, allocation or
 * execute time is dropped from that program, the work goes to the next device, the results stay
 * right (checked against values computed here in double precision), the failure is logged as
 * exactly one warning per device and context, and state (a KV cache) is carried over when the
 * failed device can still read it, or reported lost when it cannot.
 *
 * Devices: as in test_program, a second device entry backed by the real CPU plugin ("cpu-nosilu",
 * whose query declines SILU) is put in front of the CPU device, so graphs split across two
 * devices; and the real test plugin `tiny` (runs SCALE) in front of cpu. Faults come from the
 * host's injection hook, which every plugin consults (cpu: compile, alloc, execute, read).
 */
#include "graph/ir.h"
#include "runtime/runtime.h"
#include "front_device.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- captured log --- */

static struct {
    int warns;     /* WARN lines */
    int replaced;  /* lines of any level saying work moved */
    char text[4096];
} logs;

static void capture(void *user, bst_log_level level, const char *message)
{
    (void)user;
    if (strstr(message, "its work now runs on"))
        logs.replaced++;
    if (level != BST_LOG_WARN)
        return;
    logs.warns++;
    size_t len = strlen(logs.text);
    snprintf(logs.text + len, sizeof logs.text - len, "%s\n", message);
}

static void capture_start(void)
{
    memset(&logs, 0, sizeof logs);
    bst_set_log_callback(capture, NULL, BST_LOG_INFO);
}

static void capture_stop(void) { bst_set_log_callback(NULL, NULL, BST_LOG_WARN); }

static void clear_faults(void)
{
    bsti_fault_set("compile", BST_OK, 0);
    bsti_fault_set("alloc", BST_OK, 0);
    bsti_fault_set("execute", BST_OK, 0);
    bsti_fault_set("read", BST_OK, 0);
}

static bool close_to(double got, double want)
{
    return fabs(got - want) <= 1e-5 * (1.0 + fabs(want));
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

static bst_value op(bst_graph *g, bst_op o, bst_value a, bst_value b, const bst_attr *attr)
{
    bst_value in[2] = {a, b}, out = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_op(g, o, in, b == BST_VALUE_NONE ? 1 : 2, attr, attr ? 1 : 0,
                                     &out) == BST_OK);
    return out;
}

/* --- contexts --- */

static bst_context *context_for(const char *backends, const char *plugin_paths)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = backends,
                             .plugin_paths = plugin_paths};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    CU_ASSERT_FATAL(bst_context_device_count(ctx) >= 1);
    return ctx;
}

/* The CPU device with a device named "cpu-nosilu" in front of it (front_device.h). */
static bst_context *split_context(void)
{
    static const uint32_t no_silu[] = {BST_OP_SILU, BST_OP_COUNT};
    bst_context *ctx = context_for("cpu", NULL);
    bst_test_front_device(ctx, "cpu-nosilu", no_silu);
    return ctx;
}

/* The device a node (found by op name in describe's text) runs on: "cpu-nosilu" or "cpu". */
static bool placed_on(bst_program *prog, const char *opname, const char *plugin)
{
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_describe(prog, &text) == BST_OK);
    char want[64];
    snprintf(want, sizeof want, "-> %s/", plugin);
    bool ok = false;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, opname) && strstr(line, want))
            ok = true;
    bst_free(text);
    return ok;
}

static bool uses_plugin(bst_program *prog, const char *plugin)
{
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_describe(prog, &text) == BST_OK);
    char want[64];
    snprintf(want, sizeof want, "-> %s/", plugin);
    bool found = strstr(text, want) != NULL;
    bst_free(text);
    return found;
}

/* --- a = x . w^T; y = silu(a) + a: matmul and add on cpu-nosilu, silu on cpu --- */

static const float W[3][4] = {{0.5f, -1, 0.25f, 1}, {1, 1, 1, 1}, {-0.5f, 0.75f, 2, 0}};

static bst_graph *split_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t xs[2] = {2, 4}, ws[2] = {3, 4};
    bst_value vx, vw;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &vx) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w", BST_DTYPE_F32, 2, ws, W, sizeof W, &vw) ==
                    BST_OK);
    bst_value a = op(g, BST_OP_MATMUL, vx, vw, NULL);
    bst_value s = op(g, BST_OP_SILU, a, BST_VALUE_NONE, NULL);
    bst_value y = op(g, BST_OP_ADD, s, a, NULL);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, y, "y") == BST_OK);
    return g;
}

/* Runs the split graph with input x (negated when `flip`) and checks y; false on a failed run. */
static bool run_split(bst_program *prog, bool flip)
{
    static const float x[2][4] = {{1, 2, -1, 0.5f}, {-2, 0.5f, 1, 3}};
    float xin[2][4], out[2][3];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++)
            xin[i][k] = flip ? -x[i][k] : x[i][k];
    CU_ASSERT_FATAL(bst_program_set_input(prog, "x", xin, sizeof xin) == BST_OK);
    if (bst_program_run(prog, NULL) != BST_OK)
        return false;
    CU_ASSERT_FATAL(bst_program_get_output(prog, "y", out, sizeof out) == BST_OK);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            double av = 0;
            for (int k = 0; k < 4; k++)
                av += (double)xin[i][k] * W[j][k];
            CU_ASSERT(close_to(out[i][j], silu(av) + av));
        }
    return true;
}

/* One fault at create on the first device: the program is built on the CPU device alone. */
static void create_fault_case(const char *site, bst_status status)
{
    bst_context *ctx = split_context();
    bst_graph *g = split_graph();
    bst_program *prog = NULL;
    capture_start();
    bsti_fault_set(site, status, 1);
    bst_status st = bst_program_create(ctx, g, &prog);
    clear_faults();
    capture_stop();
    CU_ASSERT_FATAL(st == BST_OK);
    CU_ASSERT(logs.warns == 1);
    CU_ASSERT(strncmp(logs.text, "cpu-nosilu/", 11) == 0);
    CU_ASSERT(strstr(logs.text, bst_status_name(status)) != NULL);
    CU_ASSERT(strstr(logs.text, "injected") != NULL);
    CU_ASSERT(strstr(logs.text, "now runs on cpu/") != NULL);
    CU_ASSERT(!uses_plugin(prog, "cpu-nosilu"));
    CU_ASSERT(placed_on(prog, "matmul", "cpu"));
    CU_ASSERT(run_split(prog, false));
    CU_ASSERT(run_split(prog, true));
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

static void test_create_compile_fault(void) { create_fault_case("compile", BST_ERR_COMPILE); }
static void test_create_compile_lost(void) { create_fault_case("compile", BST_ERR_DEVICE_LOST); }
static void test_create_alloc_oom(void) { create_fault_case("alloc", BST_ERR_DEVICE_OOM); }

/* Every device fails: creation fails with the first failure's status, the message lists each
 * failure, and nothing is said to have moved. */
static void test_create_all_fail(void)
{
    bst_context *ctx = split_context();
    bst_graph *g = split_graph();
    bst_program *prog = (bst_program *)1;
    capture_start();
    bsti_fault_set("compile", BST_ERR_COMPILE, 0);
    bst_status st = bst_program_create(ctx, g, &prog);
    clear_faults();
    capture_stop();
    CU_ASSERT(st == BST_ERR_COMPILE);
    CU_ASSERT(prog == NULL);
    const char *msg = bst_last_error();
    const char *first = strstr(msg, "cpu-nosilu/"), *then = strstr(msg, "; then cpu/");
    CU_ASSERT(first == msg);
    CU_ASSERT(then != NULL);
    CU_ASSERT(strstr(msg, "no other device could take the work") != NULL);
    CU_ASSERT(logs.warns == 0);
    CU_ASSERT(logs.replaced == 0);
    /* Nothing stuck: without the fault the split placement comes back. */
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    CU_ASSERT(placed_on(prog, "matmul", "cpu-nosilu"));
    CU_ASSERT(placed_on(prog, "silu", "cpu"));
    CU_ASSERT(run_split(prog, false));
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* The last device of a run fails and no other can take its work (cpu-nosilu cannot run silu):
 * the run fails with the device's status and message, the placement stays, the next run works. */
static void test_run_no_alternative(void)
{
    bst_context *ctx = split_context();
    bst_graph *g = split_graph();
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    capture_start();
    /* Execute calls run matmul (cpu-nosilu), then silu (cpu). */
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 2);
    bool ok = run_split(prog, false);
    clear_faults();
    capture_stop();
    CU_ASSERT(!ok);
    CU_ASSERT(strncmp(bst_last_error(), "cpu/", 4) == 0);
    CU_ASSERT(strstr(bst_last_error(), "execute") != NULL);
    CU_ASSERT(strstr(bst_last_error(), "no other device could take the work") != NULL);
    CU_ASSERT(logs.warns == 0);
    CU_ASSERT(placed_on(prog, "silu", "cpu"));
    CU_ASSERT(placed_on(prog, "matmul", "cpu-nosilu"));
    CU_ASSERT(run_split(prog, true));
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* --- state: cache f32[4,3] updated by set_rows on cpu-nosilu, y = silu(cache) on cpu --- */

static bst_graph *state_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t cs[2] = {4, 3}, rs[2] = {1, 3}, is[1] = {1};
    bst_value cache, row, ids;
    CU_ASSERT_FATAL(bst_graph_add_state(g, "cache", BST_DTYPE_F32, 2, cs, &cache) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "row", BST_DTYPE_F32, 2, rs, NULL, &row) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "ids", BST_DTYPE_I32, 1, is, NULL, &ids) == BST_OK);
    bst_value in[3] = {cache, row, ids}, sr;
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_SET_ROWS, in, 3, NULL, 0, &sr) == BST_OK);
    bst_value y = op(g, BST_OP_SILU, sr, BST_VALUE_NONE, NULL);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, sr, "cache_out") == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, y, "y") == BST_OK);
    return g;
}

/* Writes row `r` of the model cache `want` with values base+j, then runs and checks cache and y
 * against `want`. Returns the run's status (checks only on success). */
static bst_status state_step(bst_program *prog, float want[4][3], int32_t r, float base)
{
    float row[3] = {base, base + 1, base + 2};
    CU_ASSERT_FATAL(bst_program_set_input(prog, "row", row, sizeof row) == BST_OK);
    CU_ASSERT_FATAL(bst_program_set_input(prog, "ids", &r, sizeof r) == BST_OK);
    bst_status st = bst_program_run(prog, NULL);
    if (st != BST_OK)
        return st;
    memcpy(want[r], row, sizeof row);
    float got[4][3], y[4][3];
    CU_ASSERT_FATAL(bst_program_get_output(prog, "cache_out", got, sizeof got) == BST_OK);
    CU_ASSERT_FATAL(bst_program_get_output(prog, "y", y, sizeof y) == BST_OK);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) {
            CU_ASSERT(got[i][j] == want[i][j]);
            CU_ASSERT(close_to(y[i][j], silu(want[i][j])));
        }
    return BST_OK;
}

/* The state's device is lost mid-run but its memory still reads: the program moves to cpu, the
 * cache comes along, the run is repeated and its result is right; the warning comes once per
 * device, also when a second program of the context leaves the same device later. */
static void test_run_lost_state_carried(void)
{
    bst_context *ctx = split_context();
    bst_graph *g = state_graph();
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    CU_ASSERT_FATAL(placed_on(prog, "set_rows", "cpu-nosilu"));
    CU_ASSERT_FATAL(placed_on(prog, "silu", "cpu"));
    float want[4][3] = {{0}};
    CU_ASSERT_FATAL(state_step(prog, want, 1, 1.0f) == BST_OK);

    capture_start();
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    bst_status st = state_step(prog, want, 3, -4.0f);
    clear_faults();
    CU_ASSERT(st == BST_OK);
    CU_ASSERT(logs.warns == 1);
    CU_ASSERT(strncmp(logs.text, "cpu-nosilu/", 11) == 0);
    CU_ASSERT(strstr(logs.text, "DEVICE_LOST") != NULL);
    CU_ASSERT(strstr(logs.text, "running") != NULL);
    CU_ASSERT(strstr(logs.text, "now runs on cpu/") != NULL);
    CU_ASSERT(!uses_plugin(prog, "cpu-nosilu"));
    CU_ASSERT(state_step(prog, want, 0, 0.5f) == BST_OK);

    /* A second program leaving the same device: said at INFO, not warned again. */
    bst_graph *g2 = split_graph();
    bst_program *other = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g2, &other) == BST_OK);
    bsti_fault_set("execute", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT(run_split(other, false));
    clear_faults();
    capture_stop();
    CU_ASSERT(logs.warns == 1);
    CU_ASSERT(logs.replaced == 2);
    CU_ASSERT(!uses_plugin(other, "cpu-nosilu"));
    bst_program_destroy(other);
    bst_graph_destroy(g2);
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* The lost device cannot even read its memory: the run fails saying the state was lost, and the
 * next run works on cpu, from an empty cache. */
static void test_run_state_unreadable(void)
{
    bst_context *ctx = split_context();
    bst_graph *g = state_graph();
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    float want[4][3] = {{0}};
    CU_ASSERT_FATAL(state_step(prog, want, 1, 1.0f) == BST_OK);
    capture_start();
    /* The first read after the failed execute is the cache, from its holder (cpu-nosilu). */
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    bsti_fault_set("read", BST_ERR_DEVICE_LOST, 1);
    bst_status st = state_step(prog, want, 2, 7.0f);
    clear_faults();
    capture_stop();
    CU_ASSERT(st == BST_ERR_DEVICE_LOST);
    CU_ASSERT(strstr(bst_last_error(), "state \"cache\"") != NULL);
    CU_ASSERT(strstr(bst_last_error(), "lost") != NULL);
    CU_ASSERT(strstr(bst_last_error(), "reset") != NULL);
    CU_ASSERT(logs.warns == 1);
    CU_ASSERT(!uses_plugin(prog, "cpu-nosilu"));
    memset(want, 0, sizeof want);
    CU_ASSERT(state_step(prog, want, 2, 7.0f) == BST_OK);
    CU_ASSERT(state_step(prog, want, 0, -1.0f) == BST_OK);
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* --- a real second plugin: tiny (SCALE) in front of cpu --- */

static void test_tiny_plugin(void)
{
    const char *dir = bst_test_plugin_dir();
    if (!dir)
        return;
    bst_context *ctx = context_for("tiny,cpu", dir);
    CU_ASSERT_FATAL(bst_context_device_count(ctx) == 2);
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t xs[2] = {2, 5};
    bst_value vx;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &vx) == BST_OK);
    bst_attr a = {.struct_size = sizeof a, .key = BST_ATTR_SCALE, .kind = BST_ATTR_KIND_FLOAT,
                  .count = 1};
    a.f = 2.5;
    bst_value y = op(g, BST_OP_SCALE, vx, BST_VALUE_NONE, &a);
    bst_value z = op(g, BST_OP_SILU, y, BST_VALUE_NONE, NULL);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, z, "z") == BST_OK);

    for (int at_create = 1; at_create >= 0; at_create--) {
        bst_program *prog = NULL;
        capture_start();
        if (at_create)
            bsti_fault_set("compile", BST_ERR_COMPILE, 1);
        CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
        clear_faults();
        if (!at_create) {
            CU_ASSERT(placed_on(prog, "scale", "tiny"));
            bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
        }
        float x[2][5], out[2][5];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 5; j++)
                x[i][j] = (float)(i * 5 + j) * 0.5f - 2.0f;
        CU_ASSERT_FATAL(bst_program_set_input(prog, "x", x, sizeof x) == BST_OK);
        CU_ASSERT_FATAL(bst_program_run(prog, NULL) == BST_OK);
        clear_faults();
        capture_stop();
        CU_ASSERT_FATAL(bst_program_get_output(prog, "z", out, sizeof out) == BST_OK);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 5; j++)
                CU_ASSERT(close_to(out[i][j], silu(2.5 * x[i][j])));
        CU_ASSERT(placed_on(prog, "scale", "cpu"));
        CU_ASSERT(!uses_plugin(prog, "tiny"));
        /* The first case warns; the second leaves the same device of the same context. */
        CU_ASSERT(logs.warns == at_create);
        CU_ASSERT(logs.replaced == 1);
        if (at_create)
            CU_ASSERT(strncmp(logs.text, "tiny/", 5) == 0 && strstr(logs.text, "COMPILE"));
        bst_program_destroy(prog);
    }
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* --- a model session on opencl,cpu (when this build has an OpenCL device and the model) --- */

enum { GEN = 6 };

static uint32_t argmax(const float *v, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* Greedy tokens after the prompt on a session of `ctx`, with `fault` armed on execute before the
 * first decode step. Returns false when this machine has no OpenCL device. */
static bool generate_on(bst_context *ctx, const char *path, const int32_t *prompt, uint32_t n,
                        bst_status fault, int32_t out[GEN])
{
    bst_model *model = NULL;
    CU_ASSERT_FATAL(bst_model_load(ctx, path, NULL, &model) == BST_OK);
    bst_model_info info = {.struct_size = sizeof info};
    CU_ASSERT_FATAL(bst_model_get_info(model, &info) == BST_OK);
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = 64, .n_batch = 16};
    bst_session *s = NULL;
    CU_ASSERT_FATAL(bst_session_create(model, &so, &s) == BST_OK);
    float *logits = malloc(info.n_vocab * sizeof *logits);
    CU_ASSERT_FATAL(logits != NULL);
    CU_ASSERT_FATAL(bst_session_eval(s, prompt, n, false, logits) == BST_OK);
    for (int i = 0; i < GEN; i++) {
        out[i] = (int32_t)argmax(logits, info.n_vocab);
        if (i == 0 && fault != BST_OK)
            bsti_fault_set("execute", fault, 1);
        bst_status st = bst_session_eval(s, &out[i], 1, false, logits);
        clear_faults();
        if (st != BST_OK)
            fprintf(stderr, "\n  eval: %s\n", bst_last_error());
        CU_ASSERT_FATAL(st == BST_OK);
    }
    CU_ASSERT(bst_session_position(s) == n + GEN);
    free(logits);
    bst_session_destroy(s);
    bst_model_destroy(model);
    return true;
}

/* Every token the faulted session generated is the CPU reference's top-1 (or within 0.1 logit of
 * it), teacher-forced over the same tokens on a session of its own. */
static void check_against_cpu(const char *path, const int32_t *prompt, uint32_t n,
                              const int32_t gen[GEN])
{
    bst_context *ctx = context_for("cpu", NULL);
    bst_model *model = NULL;
    CU_ASSERT_FATAL(bst_model_load(ctx, path, NULL, &model) == BST_OK);
    bst_model_info info = {.struct_size = sizeof info};
    CU_ASSERT_FATAL(bst_model_get_info(model, &info) == BST_OK);
    bst_session_options so = {.struct_size = sizeof so, .n_ctx = 64, .n_batch = 16};
    bst_session *s = NULL;
    CU_ASSERT_FATAL(bst_session_create(model, &so, &s) == BST_OK);
    int32_t all[64];
    CU_ASSERT_FATAL(n + GEN <= 64);
    memcpy(all, prompt, n * sizeof *all);
    memcpy(all + n, gen, GEN * sizeof *all);
    float *logits = malloc((size_t)(n + GEN) * info.n_vocab * sizeof *logits);
    CU_ASSERT_FATAL(logits != NULL);
    CU_ASSERT_FATAL(bst_session_eval(s, all, n + GEN, true, logits) == BST_OK);
    for (uint32_t i = 0; i < GEN; i++) {
        const float *row = logits + (size_t)(n - 1 + i) * info.n_vocab;
        uint32_t top = argmax(row, info.n_vocab);
        CU_ASSERT(row[gen[i]] >= row[top] - 0.1f);
    }
    free(logits);
    bst_session_destroy(s);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
}

static void session_fault_case(bst_status fault)
{
    const char *path = getenv("BASTION_MODEL");
    FILE *f = path && *path ? fopen(path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "BASTION_MODEL not readable; skipped ");
        return;
    }
    fclose(f);
    capture_start(); /* a build without OpenCL warns that the named backend is missing */
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "opencl,cpu"};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    capture_stop();
    if (bst_context_device_count(ctx) < 2 || strcmp(ctx->devices[0].plugin->name, "opencl")) {
        fprintf(stderr, "no OpenCL device; skipped ");
        bst_context_destroy(ctx);
        return;
    }
    bst_model *tok_model = NULL;
    CU_ASSERT_FATAL(bst_model_load(ctx, path, NULL, &tok_model) == BST_OK);
    static const char text[] = "The capital of France is";
    int32_t prompt[32];
    uint32_t n = 0;
    CU_ASSERT_FATAL(bst_tokenize(tok_model, text, strlen(text), false, prompt, 32, &n) ==
                    BST_OK);
    bst_model_destroy(tok_model);
    CU_ASSERT_FATAL(n > 0 && n <= 32);

    int32_t gen[GEN];
    capture_start();
    generate_on(ctx, path, prompt, n, fault, gen);
    capture_stop();
    /* One warning for the device (the head program leaving it later says so at INFO), plus,
     * when the cache could not be read back, the session's own. */
    int device_warns = 0;
    for (const char *p = logs.text; (p = strstr(p, "opencl/")) != NULL; p++)
        device_warns += p == logs.text || p[-1] == '\n';
    CU_ASSERT(device_warns == 1);
    CU_ASSERT(strstr(logs.text, "now runs on cpu/") != NULL);
    CU_ASSERT(logs.warns == (fault == BST_ERR_DEVICE_LOST ? 2 : 1));
    if (fault == BST_ERR_DEVICE_LOST)
        CU_ASSERT(strstr(logs.text, "KV cache was lost") != NULL);
    bst_context_destroy(ctx);
    check_against_cpu(path, prompt, n, gen);
}

/* Out of resources on OpenCL: the cache reads back, generation goes on on cpu. */
static void test_session_opencl_oom(void) { session_fault_case(BST_ERR_DEVICE_OOM); }
/* OpenCL's device is lost for good (its memory too): the session evaluates its history again
 * on cpu and goes on. */
static void test_session_opencl_lost(void) { session_fault_case(BST_ERR_DEVICE_LOST); }

int main(void)
{
    static const bst_test_case cases[] = {
        {"create_compile_fault", test_create_compile_fault},
        {"create_compile_lost", test_create_compile_lost},
        {"create_alloc_oom", test_create_alloc_oom},
        {"create_all_fail", test_create_all_fail},
        {"run_no_alternative", test_run_no_alternative},
        {"run_lost_state_carried", test_run_lost_state_carried},
        {"run_state_unreadable", test_run_state_unreadable},
        {"tiny_plugin", test_tiny_plugin},
        {"session_opencl_oom", test_session_opencl_oom},
        {"session_opencl_lost", test_session_opencl_lost},
        {NULL, NULL},
    };
    return bst_test_run_suite("replace", cases);
}
