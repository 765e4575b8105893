/*
 * tests/test_conformance.c — `bastion conformance` end to end: the CPU backend passes every case
 * and every ABI check; the deliberately broken plugin (tests/plugins/broken.c) has each of its
 * faults reported — wrong values, NaN, a write past its output, a crash, a hang — and the run
 * goes on after each; a failure of the harness itself (an injected allocation failure) is an
 * error row, not a crash; the ABI checks catch abi_old / abi_new / no_entry and pass tiny; usage
 * errors exit 2. Runs $BASTION_BIN and reads its --json report (schema bastion.conformance/1).
 */
#define _POSIX_C_SOURCE 200809L /* posix_spawn, mkstemp */

#include "test_util.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char json_path[256];

/* Runs $BASTION_BIN conformance with args (NULL-terminated), output to /dev/null; returns the
 * exit status (-1 when it did not exit normally). */
static int run(const char *const *args)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    const pid_t pid = bst_test_spawn_bastion("conformance", args, &fa);
    posix_spawn_file_actions_destroy(&fa);
    return bst_test_wait_exit(pid);
}

#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

static json_object *load_report(void)
{
    json_object *doc = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL(doc);
    if (!doc)
        return NULL;
    json_object *schema = json_object_object_get(doc, "schema");
    CU_ASSERT_STRING_EQUAL(json_object_get_string(schema), "bastion.conformance/1");
    return doc;
}

static int64_t summary(json_object *doc, const char *key)
{
    json_object *s = json_object_object_get(doc, "summary");
    return json_object_get_int64(json_object_object_get(s, key));
}

static const char *str(json_object *o, const char *key)
{
    const char *s = json_object_get_string(json_object_object_get(o, key));
    return s ? s : "";
}

/* Counts case rows of `op` with `result` whose detail contains `needle` (NULL: any). */
static int count_rows(json_object *doc, const char *op, const char *result, const char *needle)
{
    json_object *cases = json_object_object_get(doc, "cases");
    int n = 0;
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        if (strcmp(str(c, "op"), op) == 0 && strcmp(str(c, "result"), result) == 0 &&
            (!needle || strstr(str(c, "detail"), needle)))
            n++;
    }
    return n;
}

static const char *check_result(json_object *doc, const char *name)
{
    json_object *checks = json_object_object_get(doc, "abi_checks");
    for (size_t i = 0; i < json_object_array_length(checks); i++) {
        json_object *c = json_object_array_get_idx(checks, i);
        if (strcmp(str(c, "name"), name) == 0)
            return str(c, "result");
    }
    return "missing";
}

static const char *plugin_dir(void)
{
    const char *d = getenv("BASTION_TEST_PLUGIN_DIR");
    CU_ASSERT_PTR_NOT_NULL(d);
    return d ? d : ".";
}

static void test_cpu_passes(void)
{
    CU_ASSERT_EQUAL(RUN("--backend", "cpu", "--json", json_path), 0);
    json_object *doc = load_report();
    if (!doc)
        return;
    int64_t selected = summary(doc, "cases_selected");
    printf("\n  cpu: %lld cases, %lld pass", (long long)selected, (long long)summary(doc, "pass"));
    CU_ASSERT(selected > 500);
    CU_ASSERT_EQUAL(summary(doc, "cases_run"), selected);
    CU_ASSERT(summary(doc, "pass") >= selected);
    CU_ASSERT_EQUAL(summary(doc, "fail") + summary(doc, "crash") + summary(doc, "timeout"), 0);
    CU_ASSERT_EQUAL(summary(doc, "abi_fail"), 0);
    CU_ASSERT(json_object_array_length(json_object_object_get(doc, "abi_checks")) >= 7);
    CU_ASSERT(json_object_get_boolean(json_object_object_get(doc, "ok")));
    json_object_put(doc);
}

static void test_broken_plugin_reported(void)
{
    /* Only the ops the plugin claims, and a short timeout for its hanging RMS_NORM. */
    int rc = RUN("--backend", "broken", "--plugin-path", plugin_dir(), "--op",
                 "scale,add,mul,gelu,silu,rms_norm,layer_norm", "--timeout", "3", "--json",
                 json_path);
    CU_ASSERT_EQUAL(rc, 1);
    json_object *doc = load_report();
    if (!doc)
        return;
    int64_t crashes = summary(doc, "crash"), timeouts = summary(doc, "timeout");
    printf("\n  broken: %lld run, %lld pass, %lld fail, %lld crash, %lld timeout, %lld restarts",
           (long long)summary(doc, "cases_run"), (long long)summary(doc, "pass"),
           (long long)summary(doc, "fail"), (long long)crashes, (long long)timeouts,
           (long long)summary(doc, "worker_restarts"));
    /* Every case ran despite the crashes and the hang. */
    CU_ASSERT_EQUAL(summary(doc, "cases_run"), summary(doc, "cases_selected"));
    CU_ASSERT(count_rows(doc, "scale", "pass", NULL) >= 4);
    CU_ASSERT_EQUAL(count_rows(doc, "scale", "fail", NULL), 0);
    CU_ASSERT(count_rows(doc, "add", "fail", "NMSE") >= 3);
    CU_ASSERT(count_rows(doc, "mul", "fail", "guard bytes") >= 3);
    CU_ASSERT(count_rows(doc, "gelu", "fail", "non-finite") >= 3);
    /* killed by SIGSEGV; under ASan, which catches the signal, exited with its status */
    CU_ASSERT(count_rows(doc, "silu", "crash", "signal") +
                  count_rows(doc, "silu", "crash", "exited") >=
              3);
    CU_ASSERT_EQUAL(count_rows(doc, "rms_norm", "timeout", NULL), 1);
    /* The worker's last words (as LLVM writes them before abort) are quoted. */
    CU_ASSERT_EQUAL(count_rows(doc, "layer_norm", "crash", "LLVM ERROR: broken"), 1);
    CU_ASSERT_EQUAL(timeouts, 1);
    CU_ASSERT_EQUAL(summary(doc, "worker_restarts"), crashes + timeouts);
    /* Views and broadcasts it does not claim are unsupported, not failures. */
    CU_ASSERT(count_rows(doc, "add", "unsupported", NULL) > 0);
    /* A plugin built without Bastion's runtime passes the ABI checks it meets. */
    CU_ASSERT_STRING_EQUAL(check_result(doc, "exports"), "pass");
    CU_ASSERT_STRING_EQUAL(check_result(doc, "abi_newer_host"), "pass");
    CU_ASSERT_STRING_EQUAL(check_result(doc, "abi_older_host"), "pass");
    CU_ASSERT_FALSE(json_object_get_boolean(json_object_object_get(doc, "ok")));
    json_object_put(doc);
}

/* The harness itself failing (an allocation, injected in the worker through
 * BASTION_CONFORMANCE_FAIL_ALLOC): that case is an "error" row with the reason, the worker does
 * not crash, every other case still runs, and the run fails. */
static void test_harness_failure_is_an_error(void)
{
    setenv("BASTION_CONFORMANCE_FAIL_ALLOC", "3", 1); /* inside the first get_rows case */
    int rc = RUN("--backend", "cpu", "--op", "get_rows", "--no-abi", "--json", json_path);
    unsetenv("BASTION_CONFORMANCE_FAIL_ALLOC");
    CU_ASSERT_EQUAL(rc, 1);
    json_object *doc = load_report();
    if (!doc)
        return;
    printf("\n  injected allocation failure: %lld run, %lld pass, %lld error, %lld crash",
           (long long)summary(doc, "cases_run"), (long long)summary(doc, "pass"),
           (long long)summary(doc, "error"), (long long)summary(doc, "crash"));
    CU_ASSERT_EQUAL(summary(doc, "error"), 1);
    CU_ASSERT_EQUAL(count_rows(doc, "get_rows", "error", "cannot allocate"), 1);
    CU_ASSERT_EQUAL(summary(doc, "crash") + summary(doc, "timeout") + summary(doc, "fail"), 0);
    CU_ASSERT_EQUAL(summary(doc, "worker_restarts"), 0);
    CU_ASSERT_EQUAL(summary(doc, "cases_run"), summary(doc, "cases_selected"));
    CU_ASSERT(summary(doc, "pass") >= summary(doc, "cases_selected") - 1);
    CU_ASSERT_FALSE(json_object_get_boolean(json_object_object_get(doc, "ok")));
    json_object_put(doc);
}

static void test_plugin_file_argument(void)
{
    char file[4096];
    snprintf(file, sizeof file, "%s/libbst-backend-broken.so", plugin_dir());
    CU_ASSERT_EQUAL(RUN("--plugin-path", file, "--op", "scale", "--json", json_path), 0);
    json_object *doc = load_report();
    if (!doc)
        return;
    CU_ASSERT_STRING_EQUAL(str(doc, "backend"), "broken");
    CU_ASSERT(summary(doc, "pass") >= 4);
    json_object_put(doc);
}

static void test_abi_checks(void)
{
    static const struct {
        const char *plugin;
        const char *newer, *older, *exports;
    } want[] = {
        /* answers version 0 whatever the host offers */
        {"abi_old", "fail", "fail", "pass"},
        /* needs a newer host: refuses ours with BST_ERR_ABI, but answers the newer one with
         * BST_ERR_BACKEND instead of negotiating */
        {"abi_new", "fail", "pass", "pass"},
        {"tiny", "pass", "pass", "pass"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int rc = RUN("--backend", want[i].plugin, "--plugin-path", plugin_dir(), "--op", "scale",
                     "--json", json_path);
        json_object *doc = load_report();
        if (!doc)
            continue;
        printf("\n  %s: exit %d, newer %s, older %s, exports %s", want[i].plugin, rc,
               check_result(doc, "abi_newer_host"), check_result(doc, "abi_older_host"),
               check_result(doc, "exports"));
        CU_ASSERT_STRING_EQUAL(check_result(doc, "abi_newer_host"), want[i].newer);
        CU_ASSERT_STRING_EQUAL(check_result(doc, "abi_older_host"), want[i].older);
        CU_ASSERT_STRING_EQUAL(check_result(doc, "exports"), want[i].exports);
        bool tiny = strcmp(want[i].plugin, "tiny") == 0;
        CU_ASSERT_EQUAL(rc, tiny ? 0 : 1);
        if (tiny) {
            CU_ASSERT_EQUAL(summary(doc, "abi_fail"), 0);
            CU_ASSERT(summary(doc, "pass") > 0);
        } else {
            /* The loader refused it: the suite cannot run, and says why. */
            CU_ASSERT(json_object_get_type(json_object_object_get(doc, "fatal")) ==
                      json_type_string);
        }
        json_object_put(doc);
    }
    /* A file that exports other symbols and no entry. */
    CU_ASSERT_EQUAL(RUN("--backend", "no_entry", "--plugin-path", plugin_dir(), "--json",
                        json_path),
                    1);
    json_object *doc = load_report();
    if (doc) {
        CU_ASSERT_STRING_EQUAL(check_result(doc, "exports"), "fail");
        json_object_put(doc);
    }
}

static void test_usage_and_missing(void)
{
    CU_ASSERT_EQUAL(RUN("--json", json_path), 2);                         /* no backend */
    CU_ASSERT_EQUAL(RUN("--backend", "cpu", "--op", "no_such_op"), 2);    /* unknown op */
    CU_ASSERT_EQUAL(RUN("--backend", "Bad Name"), 2);                     /* not a name */
    CU_ASSERT_EQUAL(RUN("--backend", "cpu", "--timeout", "0"), 2);
    CU_ASSERT_EQUAL(RUN("--plugin-path", "/tmp/not-a-plugin.so"), 2);     /* file name */
    CU_ASSERT_EQUAL(RUN("--backend", "cpu", "extra"), 2);
    /* A plugin that loads but finds no device: nothing passes vacuously. */
    CU_ASSERT_EQUAL(RUN("--backend", "no_device", "--plugin-path", plugin_dir(), "--no-abi",
                        "--json", json_path),
                    1);
    json_object *nd = load_report();
    if (nd) {
        CU_ASSERT_PTR_NOT_NULL(strstr(str(nd, "fatal"), "no device"));
        json_object_put(nd);
    }
    /* A backend that is nowhere: a failed run with the reason in the report. */
    CU_ASSERT_EQUAL(RUN("--backend", "nowhere", "--json", json_path), 1);
    json_object *doc = load_report();
    if (doc) {
        CU_ASSERT_PTR_NOT_NULL(strstr(str(doc, "fatal"), "no plugin"));
        json_object_put(doc);
    }
}

int main(void)
{
    snprintf(json_path, sizeof json_path, "/tmp/bastion-conformance-XXXXXX");
    int fd = mkstemp(json_path);
    if (fd < 0)
        return 1;
    close(fd);
    static const bst_test_case cases[] = {
        {"cpu passes", test_cpu_passes},
        {"broken plugin reported", test_broken_plugin_reported},
        {"plugin file argument", test_plugin_file_argument},
        {"harness failure is an error", test_harness_failure_is_an_error},
        {"abi checks", test_abi_checks},
        {"usage and missing backend", test_usage_and_missing},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("conformance", cases);
    unlink(json_path);
    return rc;
}
