/*
 * tests/test_events.c — the executor with backends that offer ABI v2 events.
 *
 * The test plugin tiny_async (tests/plugins/tiny.c built with TINY_EVENTS) runs SCALE on a worker
 * thread 20 ms after it was submitted, so an executor that reads, copies or returns before
 * waiting gets stale numbers, and the checks below fail. Its twin `tiny` is a version-1 plugin
 * with only the synchronous execute: the same graph must give the same numbers through it.
 * Graph: a = 2x (tiny*), b = a + y (cpu), c = 3b (tiny*), d = c + x (cpu): two partitions on
 * each device, with copies both ways.
 */
#include "runtime/runtime.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 4096

static struct {
    unsigned async_submits, sync_executes, waits, events;
    char warn[1024];
} logs;

static void capture(void *user, bst_log_level level, const char *message)
{
    (void)user;
    if (strstr(message, "tiny_async: execute_async"))
        logs.async_submits++;
    if (strstr(message, "tiny_async: execute (synchronous)"))
        logs.sync_executes++;
    if (strstr(message, "tiny_async: event_wait"))
        logs.waits++;
    if (strstr(message, "tiny_async: event_create"))
        logs.events++;
    if (level == BST_LOG_WARN && !logs.warn[0])
        snprintf(logs.warn, sizeof logs.warn, "%s", message);
}

static void capture_start(void)
{
    memset(&logs, 0, sizeof logs);
    bst_set_log_callback(capture, NULL, BST_LOG_INFO);
}

static void capture_stop(void) { bst_set_log_callback(NULL, NULL, BST_LOG_WARN); }

static bst_value op(bst_graph *g, bst_op o, bst_value a, bst_value b, double scale)
{
    bst_attr attr = {.struct_size = sizeof attr, .key = BST_ATTR_SCALE,
                     .kind = BST_ATTR_KIND_FLOAT, .count = 1, .f = scale};
    bst_value in[2] = {a, b}, out = BST_VALUE_NONE;
    bool unary = b == BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_op(g, o, in, unary ? 1 : 2, unary ? &attr : NULL, unary ? 1 : 0,
                                     &out) == BST_OK);
    return out;
}

static bst_graph *build_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t shape[1] = {N};
    bst_value x, y;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 1, shape, NULL, &x) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "y", BST_DTYPE_F32, 1, shape, NULL, &y) == BST_OK);
    bst_value a = op(g, BST_OP_SCALE, x, BST_VALUE_NONE, 2.0);
    bst_value b = op(g, BST_OP_ADD, a, y, 0);
    bst_value c = op(g, BST_OP_SCALE, b, BST_VALUE_NONE, 3.0);
    bst_value d = op(g, BST_OP_ADD, c, x, 0);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, d, "d") == BST_OK);
    return g;
}

static bst_context *context_for(const char *backends)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = backends,
                             .plugin_paths = getenv("BASTION_TEST_PLUGIN_DIR")};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    CU_ASSERT_FATAL(bst_context_device_count(ctx) == 2);
    return ctx;
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

/* Runs the program `runs` times with fresh inputs; returns the number of wrong elements. */
static unsigned run_and_check(bst_program *prog, int runs)
{
    static float x[N], y[N], d[N];
    unsigned wrong = 0;
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < N; i++) {
            x[i] = (float)((i * 7 + r * 13) % 101) * 0.25f - 12.0f;
            y[i] = (float)((i * 3 + r * 5) % 37) * 0.5f - 9.0f;
        }
        CU_ASSERT_FATAL(bst_program_set_input(prog, "x", x, sizeof x) == BST_OK);
        CU_ASSERT_FATAL(bst_program_set_input(prog, "y", y, sizeof y) == BST_OK);
        bst_status st = bst_program_run(prog, NULL);
        CU_ASSERT_EQUAL(st, BST_OK);
        if (st != BST_OK) {
            fprintf(stderr, "\n  run %d: %s\n", r, bst_last_error());
            return N;
        }
        CU_ASSERT_FATAL(bst_program_get_output(prog, "d", d, sizeof d) == BST_OK);
        for (int i = 0; i < N; i++) {
            /* Every intermediate is exact in f32 (quarter steps, small magnitudes). */
            float want = 3.0f * (2.0f * x[i] + y[i]) + x[i];
            wrong += d[i] != want;
        }
    }
    return wrong;
}

/* Work queued with events: right results, no synchronous execute, one submit per partition. */
static void test_async_results(void)
{
    if (!bst_test_plugin_dir())
        return;
    bst_context *ctx = context_for("tiny_async,cpu");
    bst_graph *g = build_graph();
    bst_program *prog = NULL;
    capture_start();
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    CU_ASSERT(uses_plugin(prog, "tiny_async"));
    CU_ASSERT_EQUAL(run_and_check(prog, 4), 0u);
    capture_stop();
    CU_ASSERT_EQUAL(logs.events, 1u);
    CU_ASSERT_EQUAL(logs.sync_executes, 0u);
    CU_ASSERT_EQUAL(logs.async_submits, 8u); /* two partitions, four runs */
    /* The host waits before each copy out of the device, never more than once per submit. */
    CU_ASSERT(logs.waits >= 8u && logs.waits <= 8u * 2);
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* A version-1 plugin gets the synchronous path and the same numbers. */
static void test_version1_fallback(void)
{
    if (!bst_test_plugin_dir())
        return;
    bst_context *ctx = context_for("tiny,cpu");
    bst_graph *g = build_graph();
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    CU_ASSERT(uses_plugin(prog, "tiny"));
    CU_ASSERT_EQUAL(run_and_check(prog, 2), 0u);
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* Queued work that fails after execute_async returned: the failure comes back through
 * event_wait, the program is re-placed on the CPU, and the run still gives the right numbers. */
static void test_late_failure(void)
{
    if (!bst_test_plugin_dir())
        return;
    bst_context *ctx = context_for("tiny_async,cpu");
    bst_graph *g = build_graph();
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    capture_start();
    bsti_fault_set("execute_async", BST_ERR_DEVICE_LOST, 1);
    CU_ASSERT_EQUAL(run_and_check(prog, 2), 0u);
    bsti_fault_set("execute_async", BST_OK, 0);
    capture_stop();
    CU_ASSERT(!uses_plugin(prog, "tiny_async"));
    CU_ASSERT(strstr(logs.warn, "injected fault") != NULL);
    if (!strstr(logs.warn, "injected fault"))
        fprintf(stderr, "\n  warning was: '%s'\n", logs.warn);
    bst_program_destroy(prog);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"async_results", test_async_results},
        {"version1_fallback", test_version1_fallback},
        {"late_failure", test_late_failure},
        {NULL, NULL},
    };
    return bst_test_run_suite("events", cases);
}
