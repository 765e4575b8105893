/*
 * tests/test_loader.c — plugin discovery, selection and loading (runtime/loader.c,
 * runtime/context.c) and the host services (runtime/host.c).
 *
 * The broken plugins in BASTION_TEST_PLUGIN_DIR (tests/plugins/) each must end in exactly their
 * state with a detail a vendor can act on, while the process keeps working: the good plugin of
 * the same directory and the real backends of BASTION_BACKEND_PATH still load. The tiny plugin
 * reports device_open/close/destroy through the host log, which is how the tests see that
 * devices start lazily and that failures are sticky.
 */
#include "runtime/runtime.h"
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------- log capture ---------- */

#define MAX_LOGS 4096

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *logs[MAX_LOGS];
static bst_log_level log_levels[MAX_LOGS];
static unsigned n_logs;

static void capture(void *user, bst_log_level level, const char *message)
{
    (void)user;
    pthread_mutex_lock(&log_mu);
    if (n_logs < MAX_LOGS) {
        log_levels[n_logs] = level;
        logs[n_logs++] = strdup(message);
    }
    pthread_mutex_unlock(&log_mu);
}

static void logs_clear(void)
{
    pthread_mutex_lock(&log_mu);
    for (unsigned i = 0; i < n_logs; i++)
        free(logs[i]);
    n_logs = 0;
    pthread_mutex_unlock(&log_mu);
}

/* Messages containing `needle` (at `level`, or any level when level < 0). */
static unsigned logs_count(const char *needle, int level)
{
    unsigned n = 0;
    pthread_mutex_lock(&log_mu);
    for (unsigned i = 0; i < n_logs; i++)
        if (logs[i] && strstr(logs[i], needle) && (level < 0 || (int)log_levels[i] == level))
            n++;
    pthread_mutex_unlock(&log_mu);
    return n;
}

/* ---------- environment ---------- */

static char *saved_backend_path;

static char *test_plugin_dir;  /* BASTION_TEST_PLUGIN_DIR, resolved as the loader resolves it */
static char *real_backend_dir; /* BASTION_BACKEND_PATH, resolved */

static const char *plugin_dir(void)
{
    CU_ASSERT_PTR_NOT_NULL(test_plugin_dir);
    return test_plugin_dir ? test_plugin_dir : "/nonexistent";
}

/* Every test starts from the environment ctest gave, minus selection variables a developer may
 * have set in their shell. */
static void env_reset(void)
{
    unsetenv("BASTION_BACKENDS");
    unsetenv("BASTION_BACKENDS_DISABLE");
    if (saved_backend_path)
        setenv("BASTION_BACKEND_PATH", saved_backend_path, 1);
    else
        unsetenv("BASTION_BACKEND_PATH");
    logs_clear();
}

static bst_context *make_context(const char *backends, const char *paths)
{
    bst_context_options o = {0};
    o.struct_size = sizeof o;
    o.backends = backends;
    o.plugin_paths = paths;
    bst_context *ctx = NULL;
    bst_status st = bst_context_create(&o, &ctx);
    CU_ASSERT_EQUAL(st, BST_OK);
    if (st != BST_OK)
        fprintf(stderr, "\n  bst_context_create: %s\n", bst_last_error());
    return ctx;
}

static bool get_record(const bst_context *ctx, uint32_t i, bst_plugin_record *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    return bst_context_plugin(ctx, i, out) == BST_OK;
}

/* True when `path` is a file directly inside `dir` (not in a subdirectory of it). */
static bool in_dir(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && path[n] == '/' && !strchr(path + n + 1, '/');
}

/* The first record named `name` (optionally one directly inside `dir`); -1 if none. */
static long find_plugin(const bst_context *ctx, const char *name, const char *dir,
                        bst_plugin_record *out)
{
    uint32_t n = bst_context_plugin_count(ctx);
    for (uint32_t i = 0; i < n; i++) {
        bst_plugin_record r;
        if (!get_record(ctx, i, &r))
            continue;
        if (strcmp(r.name, name) == 0 && (!dir || in_dir(r.path, dir))) {
            if (out)
                *out = r;
            return (long)i;
        }
    }
    return -1;
}

static unsigned count_named(const bst_context *ctx, const char *name)
{
    unsigned c = 0;
    for (uint32_t i = 0; i < bst_context_plugin_count(ctx); i++) {
        bst_plugin_record r;
        if (get_record(ctx, i, &r) && strcmp(r.name, name) == 0)
            c++;
    }
    return c;
}

/* Asserts that plugin `name` from the test directory ended in `state` with `needle` in its
 * detail. */
static void expect_state(const bst_context *ctx, const char *name, bst_plugin_state state,
                         const char *needle)
{
    bst_plugin_record r;
    long i = find_plugin(ctx, name, plugin_dir(), &r);
    CU_ASSERT_TRUE(i >= 0);
    if (i < 0) {
        fprintf(stderr, "\n  plugin %s not found\n", name);
        return;
    }
    CU_ASSERT_EQUAL(r.state, (uint32_t)state);
    CU_ASSERT_PTR_NOT_NULL(r.detail);
    bool has = r.detail && strstr(r.detail, needle) != NULL;
    CU_ASSERT_TRUE(has);
    if (r.state != (uint32_t)state || !has)
        fprintf(stderr, "\n  %s: state %s, detail '%s' (wanted %s with '%s')\n", name,
                bst_plugin_state_name((bst_plugin_state)r.state), r.detail ? r.detail : "(null)",
                bst_plugin_state_name(state), needle);
    if (state != BST_PLUGIN_LOADED && state != BST_PLUGIN_NO_DEVICE) {
        CU_ASSERT_EQUAL(r.n_devices, 0u);
        CU_ASSERT_STRING_EQUAL(r.version, "");
    }
}

static long device_of(const bst_context *ctx, const char *backend)
{
    for (uint32_t i = 0; i < bst_context_device_count(ctx); i++) {
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        const char *b = NULL;
        if (bst_context_device(ctx, i, &info, &b) == BST_OK && b && strcmp(b, backend) == 0)
            return (long)i;
    }
    return -1;
}

/* ---------- tests ---------- */

static void test_omp_wait_policy_set(void)
{
    env_reset();
    bst_context *ctx = make_context("tiny", plugin_dir());
    const char *v = getenv("OMP_WAIT_POLICY");
    CU_ASSERT_PTR_NOT_NULL(v);
    if (v)
        CU_ASSERT_STRING_EQUAL(v, "PASSIVE");
    bst_context_destroy(ctx);
}

static void test_each_bad_plugin_state(void)
{
    env_reset();
    bst_context *ctx = make_context(NULL, plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);

    expect_state(ctx, "tiny", BST_PLUGIN_LOADED, "");
    expect_state(ctx, "no_device", BST_PLUGIN_NO_DEVICE, "no device");
    expect_state(ctx, "small_struct", BST_PLUGIN_ABI_MISMATCH, "lacks the required function compile");
    expect_state(ctx, "null_fn", BST_PLUGIN_ABI_MISMATCH, "required function execute is NULL");
    expect_state(ctx, "abi_old", BST_PLUGIN_ABI_MISMATCH, "answered ABI version 0");
    char abi_new_needs[64];
    snprintf(abi_new_needs, sizeof abi_new_needs, "abi_new needs ABI version %u",
             BST_ABI_VERSION + 1u);
    expect_state(ctx, "abi_new", BST_PLUGIN_ABI_MISMATCH, abi_new_needs);
    expect_state(ctx, "entry_fails", BST_PLUGIN_ENTRY_FAILED,
                 "driver initialization failed (simulated)");
    expect_state(ctx, "entry_fails", BST_PLUGIN_ENTRY_FAILED, "BST_ERR_BACKEND");
    expect_state(ctx, "no_entry", BST_PLUGIN_NO_ENTRY, "bst_backend_entry");
    expect_state(ctx, "missing_dep", BST_PLUGIN_NOT_LOADABLE, "libbst_missing_dep_helper.so");
    expect_state(ctx, "missing_dep", BST_PLUGIN_NOT_LOADABLE, "cannot open shared object file");
    expect_state(ctx, "not_elf", BST_PLUGIN_NOT_LOADABLE, "ELF");

    bst_plugin_record r;
    CU_ASSERT_TRUE(find_plugin(ctx, "tiny", plugin_dir(), &r) >= 0);
    CU_ASSERT_STRING_EQUAL(r.detail, "");
    CU_ASSERT_STRING_EQUAL(r.version, "1.0-test");
    /* tiny is a version-1 plugin: a newer host still loads it, at version 1. */
    CU_ASSERT_EQUAL(r.abi_version, 1u);
    CU_ASSERT_EQUAL(r.n_devices, 1u);
    CU_ASSERT_TRUE(find_plugin(ctx, "no_device", plugin_dir(), &r) >= 0);
    CU_ASSERT_EQUAL(r.abi_version, 1u);

    /* Plugins that answered but did not fit are released, not leaked. */
    CU_ASSERT_EQUAL(logs_count("small_struct: destroy", -1), 1u);
    CU_ASSERT_EQUAL(logs_count("null_fn: destroy", -1), 1u);
    /* One INFO line per skipped plugin, naming it. */
    CU_ASSERT_EQUAL(logs_count("entry_fails", BST_LOG_INFO), 1u);
    CU_ASSERT_EQUAL(logs_count("missing_dep", BST_LOG_INFO), 1u);
    /* Devices start lazily: none at context creation. */
    CU_ASSERT_EQUAL(logs_count("tiny: device_open", -1), 0u);

    /* The real CPU backend, from BASTION_BACKEND_PATH, loads alongside. */
    CU_ASSERT_TRUE(find_plugin(ctx, "cpu", NULL, &r) >= 0);
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_LOADED);
    CU_ASSERT_TRUE(r.n_devices >= 1);

    /* Devices in priority order: tiny's device is a CPU-kind device of another plugin (like PoCL's
     * or lavapipe's), so without a selection list it ranks after the native CPU backend. */
    long tiny_dev = device_of(ctx, "tiny"), cpu_dev = device_of(ctx, "cpu");
    CU_ASSERT_TRUE(tiny_dev >= 0);
    CU_ASSERT_TRUE(cpu_dev >= 0);
    CU_ASSERT_TRUE(cpu_dev < tiny_dev);
    bst_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    const char *backend = NULL;
    CU_ASSERT_EQUAL(bst_context_device(ctx, (uint32_t)(tiny_dev >= 0 ? tiny_dev : 0), &info,
                                       &backend), BST_OK);
    CU_ASSERT_STRING_EQUAL(info.name, "tiny test device");
    CU_ASSERT_EQUAL(info.struct_size, sizeof info);

    /* Every record has a non-empty name and path; skipped ones a detail. */
    for (uint32_t i = 0; i < bst_context_plugin_count(ctx); i++) {
        CU_ASSERT_TRUE(get_record(ctx, i, &r));
        CU_ASSERT_TRUE(r.name && r.name[0] && r.path && r.path[0] == '/');
        if (r.state != BST_PLUGIN_LOADED)
            CU_ASSERT_TRUE(r.detail && r.detail[0]);
    }
    bst_context_destroy(ctx);
    CU_ASSERT_EQUAL(logs_count("tiny: destroy", -1), 1u);
    CU_ASSERT_EQUAL(logs_count("no_device: destroy", -1), 1u);
}

static void test_selection_by_option(void)
{
    env_reset();
    bst_context *ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    expect_state(ctx, "tiny", BST_PLUGIN_LOADED, "");
    /* Unselected plugins are never opened: their own faults never show. */
    expect_state(ctx, "entry_fails", BST_PLUGIN_NOT_SELECTED, "not in");
    expect_state(ctx, "missing_dep", BST_PLUGIN_NOT_SELECTED, "not in");
    expect_state(ctx, "small_struct", BST_PLUGIN_NOT_SELECTED, "tiny");
    CU_ASSERT_EQUAL(logs_count("small_struct: destroy", -1), 0u);
    bst_plugin_record r;
    CU_ASSERT_TRUE(find_plugin(ctx, "cpu", NULL, &r) >= 0);
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_NOT_SELECTED);
    CU_ASSERT_EQUAL(bst_context_device_count(ctx), 1u);
    /* The selected plugin comes first. */
    CU_ASSERT_TRUE(get_record(ctx, 0, &r));
    CU_ASSERT_STRING_EQUAL(r.name, "tiny");
    bst_context_destroy(ctx);
}

static void test_selection_by_env_in_priority_order(void)
{
    env_reset();
    setenv("BASTION_BACKENDS", " cpu , tiny,,", 1);
    bst_context *ctx = make_context(NULL, plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    bst_plugin_record r;
    CU_ASSERT_TRUE(get_record(ctx, 0, &r));
    CU_ASSERT_STRING_EQUAL(r.name, "cpu");
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_LOADED);
    CU_ASSERT_TRUE(get_record(ctx, 1, &r));
    CU_ASSERT_STRING_EQUAL(r.name, "tiny");
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_LOADED);
    expect_state(ctx, "no_device", BST_PLUGIN_NOT_SELECTED, "BASTION_BACKENDS");
    long tiny_dev = device_of(ctx, "tiny"), cpu_dev = device_of(ctx, "cpu");
    CU_ASSERT_TRUE(cpu_dev >= 0 && tiny_dev > cpu_dev);
    bst_context_destroy(ctx);

    /* The embedder's list wins over the environment. */
    ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_TRUE(find_plugin(ctx, "cpu", NULL, &r) >= 0);
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_NOT_SELECTED);
    expect_state(ctx, "tiny", BST_PLUGIN_LOADED, "");
    bst_context_destroy(ctx);
    env_reset();
}

static void test_disable_list(void)
{
    env_reset();
    setenv("BASTION_BACKENDS_DISABLE", "tiny,entry_fails", 1);
    bst_context *ctx = make_context(NULL, plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    expect_state(ctx, "tiny", BST_PLUGIN_NOT_SELECTED, "BASTION_BACKENDS_DISABLE");
    expect_state(ctx, "entry_fails", BST_PLUGIN_NOT_SELECTED, "BASTION_BACKENDS_DISABLE");
    expect_state(ctx, "no_device", BST_PLUGIN_NO_DEVICE, "no device");
    CU_ASSERT_EQUAL(device_of(ctx, "tiny"), -1);
    bst_context_destroy(ctx);

    /* Disabling filters an explicit list too. */
    ctx = make_context("tiny,no_device", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    expect_state(ctx, "tiny", BST_PLUGIN_NOT_SELECTED, "BASTION_BACKENDS_DISABLE");
    expect_state(ctx, "no_device", BST_PLUGIN_NO_DEVICE, "no device");
    bst_context_destroy(ctx);
    env_reset();
}

static void test_requested_but_missing_warns(void)
{
    env_reset();
    bst_context *ctx = make_context("tiny,nosuchbackend", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    expect_state(ctx, "tiny", BST_PLUGIN_LOADED, "");
    CU_ASSERT_EQUAL(logs_count("nosuchbackend", BST_LOG_WARN), 1u);
    bst_context_destroy(ctx);
}

static void test_duplicate_names(void)
{
    env_reset();
    char paths[8192], dup[4096];
    CU_ASSERT_TRUE_FATAL(strlen(plugin_dir()) < 4000);
    snprintf(dup, sizeof dup, "%.4000s/dup", plugin_dir());
    snprintf(paths, sizeof paths, "%.4000s:%.4000s", plugin_dir(), dup);
    bst_context *ctx = make_context("tiny", paths);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(count_named(ctx, "tiny"), 2u);
    bst_plugin_record r;
    CU_ASSERT_TRUE(find_plugin(ctx, "tiny", dup, &r) >= 0);
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_DUPLICATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.detail, plugin_dir()));
    CU_ASSERT_EQUAL(bst_context_device_count(ctx), 1u);
    bst_context_destroy(ctx);

    /* The first directory in the search order wins. */
    snprintf(paths, sizeof paths, "%.4000s:%.4000s", dup, plugin_dir());
    ctx = make_context("tiny", paths);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_TRUE(find_plugin(ctx, "tiny", dup, &r) >= 0);
    CU_ASSERT_EQUAL(r.state, BST_PLUGIN_LOADED);
    expect_state(ctx, "tiny", BST_PLUGIN_DUPLICATE, dup);
    bst_context_destroy(ctx);

    /* One directory named twice (here with a trailing slash) is searched once. */
    snprintf(paths, sizeof paths, "%.4000s:%.4000s/", plugin_dir(), plugin_dir());
    ctx = make_context("tiny", paths);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(count_named(ctx, "tiny"), 1u);
    bst_context_destroy(ctx);
}

static void test_relative_and_empty_paths_ignored(void)
{
    env_reset();
    char old_cwd[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(old_cwd, sizeof old_cwd));
    /* From the plugin directory's parent, "plugins" would name it; from inside it, an empty
     * entry would mean the current directory (as in $PATH). Neither may be searched. */
    char parent[4200];
    snprintf(parent, sizeof parent, "%.4000s/..", plugin_dir());
    CU_ASSERT_EQUAL_FATAL(chdir(parent), 0);
    setenv("BASTION_BACKEND_PATH", "plugins::./plugins", 1);
    bst_context *ctx = make_context("tiny", NULL);
    CU_ASSERT_PTR_NOT_NULL(ctx);
    CU_ASSERT_EQUAL(count_named(ctx, "tiny"), 0u);
    CU_ASSERT_TRUE(logs_count("relative", BST_LOG_WARN) >= 2);
    bst_context_destroy(ctx);

    CU_ASSERT_EQUAL_FATAL(chdir(plugin_dir()), 0);
    setenv("BASTION_BACKEND_PATH", ":", 1);
    ctx = make_context("tiny", "::");
    CU_ASSERT_PTR_NOT_NULL(ctx);
    CU_ASSERT_EQUAL(count_named(ctx, "tiny"), 0u);
    bst_context_destroy(ctx);
    CU_ASSERT_EQUAL(chdir(old_cwd), 0);
    env_reset();
}

static void test_lazy_device_open(void)
{
    env_reset();
    bst_context *ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL_FATAL(bst_context_device_count(ctx), 1u);
    CU_ASSERT_EQUAL(logs_count("tiny: device_open", -1), 0u);
    void *h1 = NULL, *h2 = NULL;
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 0, &h1), BST_OK);
    CU_ASSERT_PTR_NOT_NULL(h1);
    CU_ASSERT_EQUAL(logs_count("tiny: device_open", -1), 1u);
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 0, &h2), BST_OK);
    CU_ASSERT_PTR_EQUAL(h1, h2);
    CU_ASSERT_EQUAL(logs_count("tiny: device_open", -1), 1u);
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 1, &h2), BST_ERR_INVALID_ARG);
    bst_context_destroy(ctx);
    CU_ASSERT_EQUAL(logs_count("tiny: device_close 0", -1), 1u);
    CU_ASSERT_EQUAL(logs_count("tiny: destroy", -1), 1u);
}

static void test_device_open_failure_is_sticky(void)
{
    env_reset();
    bst_context *ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    bsti_fault_set("device_open", BST_ERR_DEVICE_LOST, 1);
    void *h = NULL;
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 0, &h), BST_ERR_DEVICE_LOST);
    CU_ASSERT_PTR_NULL(h);
    char first[1024];
    snprintf(first, sizeof first, "%s", bst_last_error());
    CU_ASSERT_PTR_NOT_NULL(strstr(first, "injected fault"));
    CU_ASSERT_PTR_NOT_NULL(strstr(first, "tiny"));
    CU_ASSERT_EQUAL(logs_count("tiny: device_open", -1), 1u);
    /* Not retried: same status, same message, no second open. */
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 0, &h), BST_ERR_DEVICE_LOST);
    CU_ASSERT_STRING_EQUAL(bst_last_error(), first);
    CU_ASSERT_EQUAL(logs_count("tiny: device_open", -1), 1u);
    bst_context_destroy(ctx);
    CU_ASSERT_EQUAL(logs_count("tiny: device_close", -1), 0u);

    /* The fault was one-shot: a new context starts the device. */
    ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 0, &h), BST_OK);
    bst_context_destroy(ctx);
}

static void test_fault_hook(void)
{
    const bst_host_api *host = bsti_host_api();
    CU_ASSERT_EQUAL(host->fault("alloc"), BST_OK);
    CU_ASSERT_EQUAL(host->fault(NULL), BST_OK);
    bsti_fault_set("alloc", BST_ERR_DEVICE_OOM, 3);
    CU_ASSERT_EQUAL(host->fault("alloc"), BST_OK);
    CU_ASSERT_EQUAL(host->fault("execute"), BST_OK);
    CU_ASSERT_EQUAL(host->fault("alloc"), BST_OK);
    CU_ASSERT_EQUAL(host->fault("alloc"), BST_ERR_DEVICE_OOM);
    CU_ASSERT_EQUAL(host->fault("alloc"), BST_OK);
    /* Countdown 0: every call until cleared. */
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 0);
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(host->fault("execute"), BST_ERR_DEVICE_LOST);
    CU_ASSERT_EQUAL(host->fault("compile"), BST_OK);
    bsti_fault_set("execute", BST_OK, 0);
    CU_ASSERT_EQUAL(host->fault("execute"), BST_OK);
    /* Re-arming a site replaces its setting. */
    bsti_fault_set("compile", BST_ERR_COMPILE, 5);
    bsti_fault_set("compile", BST_ERR_BACKEND, 1);
    CU_ASSERT_EQUAL(host->fault("compile"), BST_ERR_BACKEND);
    CU_ASSERT_EQUAL(host->fault("compile"), BST_OK);
}

typedef struct fault_race {
    _Atomic uint32_t fired;
} fault_race;

static void *fault_caller(void *arg)
{
    fault_race *r = arg;
    const bst_host_api *host = bsti_host_api();
    for (int i = 0; i < 2000; i++)
        if (host->fault("race") != BST_OK)
            atomic_fetch_add(&r->fired, 1);
    return NULL;
}

static void test_fault_hook_thread_safe(void)
{
    fault_race r = {0};
    bsti_fault_set("race", BST_ERR_DEVICE_LOST, 3000);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, fault_caller, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&r.fired), 1u); /* exactly the 3000th of 8000 calls */
}

typedef struct square_arg {
    int64_t *out;
} square_arg;

static void square(void *arg, int64_t begin, int64_t end, uint32_t worker)
{
    (void)worker;
    square_arg *a = arg;
    for (int64_t i = begin; i < end; i++)
        a->out[i] = i * i;
}

static void test_host_services(void)
{
    env_reset();
    const bst_host_api *host = bsti_host_api();
    CU_ASSERT_EQUAL(host->struct_size, sizeof(bst_host_api));
    CU_ASSERT_EQUAL(host->abi_version, BST_ABI_VERSION);
    CU_ASSERT_TRUE(host->log && host->set_error && host->alloc && host->free &&
                   host->parallel_for && host->num_workers && host->dequantize &&
                   host->quantize && host->fault);

    static const size_t aligns[] = {1, 2, 8, 64, 4096};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        unsigned char *p = host->alloc(100, aligns[i]);
        CU_ASSERT_PTR_NOT_NULL(p);
        CU_ASSERT_EQUAL((uintptr_t)p % aligns[i], 0u);
        if (p)
            memset(p, 0xab, 100);
        host->free(p);
    }
    void *zero = host->alloc(0, 16);
    CU_ASSERT_PTR_NOT_NULL(zero); /* NULL means failure, and a zero-size tensor is not one */
    host->free(zero);
    CU_ASSERT_PTR_NULL(host->alloc(16, 3));
    CU_ASSERT_PTR_NULL(host->alloc(16, 0));
    CU_ASSERT_PTR_NULL(host->alloc(SIZE_MAX, 64));
    CU_ASSERT_PTR_NULL(host->alloc(SIZE_MAX - 10, 4096));
    host->free(NULL);

    host->set_error("plugin says %d", 42);
    CU_ASSERT_STRING_EQUAL(bst_last_error(), "plugin says 42");
    host->log(BST_LOG_WARN, "hello from %s", "a plugin");
    CU_ASSERT_EQUAL(logs_count("hello from a plugin", BST_LOG_WARN), 1u);

    CU_ASSERT_EQUAL(host->num_workers(), bsti_pool_threads());
    int64_t out[1000];
    square_arg a = {out};
    host->parallel_for(1000, 10, square, &a);
    uint32_t wrong = 0;
    for (int64_t i = 0; i < 1000; i++)
        wrong += out[i] != i * i;
    CU_ASSERT_EQUAL(wrong, 0u);

    /* f16 1.0, -2.0 and 0.5 by their IEEE bit patterns. */
    const uint16_t half[4] = {0x3C00, 0xC000, 0x3800, 0x0000};
    float f[4] = {9, 9, 9, 9};
    CU_ASSERT_EQUAL(host->dequantize(BST_DTYPE_F16, half, f, 4), BST_OK);
    CU_ASSERT_EQUAL(f[0], 1.0f);
    CU_ASSERT_EQUAL(f[1], -2.0f);
    CU_ASSERT_EQUAL(f[2], 0.5f);
    CU_ASSERT_EQUAL(f[3], 0.0f);
    uint16_t back[4] = {0};
    CU_ASSERT_EQUAL(host->quantize(BST_DTYPE_F16, f, back, 4), BST_OK);
    CU_ASSERT_EQUAL(memcmp(back, half, sizeof half), 0);
    /* A block type needs whole blocks. */
    CU_ASSERT_NOT_EQUAL(host->dequantize(BST_DTYPE_Q8_0, half, f, 3), BST_OK);
}

/* Runs SCALE through the tiny plugin's own API, as the executor would. */
static void test_tiny_plugin_runs_scale(void)
{
    env_reset();
    bst_context *ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL_FATAL(bst_context_device_count(ctx), 1u);
    void *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(bsti_device_get(ctx, 0, &dev), BST_OK);
    const bst_backend_api *api = &ctx->devices[0].plugin->api;

    enum { N = 5000 };
    bst_tensor_desc in = {0}, out = {0};
    in.struct_size = out.struct_size = sizeof in;
    in.dtype = out.dtype = BST_DTYPE_F32;
    in.rank = out.rank = 2;
    in.shape[0] = out.shape[0] = 50;
    in.shape[1] = out.shape[1] = 100;
    in.strides[1] = out.strides[1] = 4;
    in.strides[0] = out.strides[0] = 400;
    in.binding = 0;
    out.binding = 1;
    out.offset = 16;
    bst_attr scale = {0};
    scale.struct_size = sizeof scale;
    scale.key = BST_ATTR_SCALE;
    scale.kind = BST_ATTR_KIND_FLOAT;
    scale.count = 1;
    scale.f = -0.75;
    const bst_tensor_desc *inputs[1] = {&in};
    const bst_attr *attrs[1] = {&scale};
    bst_node_desc node = {0};
    node.struct_size = sizeof node;
    node.op = BST_OP_SCALE;
    node.n_inputs = 1;
    node.n_attrs = 1;
    node.inputs = inputs;
    node.output = &out;
    node.attrs = attrs;

    bst_kernel_variant variants[2];
    memset(variants, 0, sizeof variants);
    variants[0].struct_size = variants[1].struct_size = sizeof variants[0];
    uint32_t count = 0;
    CU_ASSERT_EQUAL(api->query(dev, &node, variants, sizeof variants[0], 2, &count), BST_OK);
    CU_ASSERT_EQUAL_FATAL(count, 1u);
    CU_ASSERT_STRING_EQUAL(variants[0].name, "scale_f32");
    node.op = BST_OP_ADD;
    CU_ASSERT_EQUAL(api->query(dev, &node, variants, sizeof variants[0], 2, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 0u);
    node.op = BST_OP_SCALE;

    float *src = malloc(N * sizeof *src), *dst = malloc(N * sizeof *dst);
    CU_ASSERT_PTR_NOT_NULL_FATAL(src);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dst);
    for (int i = 0; i < N; i++)
        src[i] = (float)(i % 97) * 0.25f - 3.0f;
    void *bufs[2] = {NULL, NULL};
    CU_ASSERT_EQUAL_FATAL(api->buffer_alloc(dev, N * 4, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api->buffer_alloc(dev, N * 4 + 16, &bufs[1]), BST_OK);
    CU_ASSERT_EQUAL(api->buffer_write(dev, bufs[0], 0, src, N * 4), BST_OK);

    const bst_node_desc *nodes[1] = {&node};
    bst_partition_desc part = {0};
    part.struct_size = sizeof part;
    part.n_nodes = 1;
    part.nodes = nodes;
    part.n_bindings = 2;
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api->compile(dev, &part, &exe), BST_OK);
    CU_ASSERT_EQUAL(api->execute(dev, exe, bufs, 2, NULL), BST_OK);
    CU_ASSERT_EQUAL(api->buffer_read(dev, bufs[1], 16, dst, N * 4), BST_OK);
    uint32_t wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += dst[i] != src[i] * -0.75f;
    CU_ASSERT_EQUAL(wrong, 0u);

    /* An injected device loss surfaces as the plugin's status and message, once. */
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    CU_ASSERT_EQUAL(api->execute(dev, exe, bufs, 2, NULL), BST_ERR_DEVICE_LOST);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "injected"));
    CU_ASSERT_EQUAL(api->execute(dev, exe, bufs, 2, NULL), BST_OK);
    /* Out-of-range access is refused, not performed. */
    CU_ASSERT_EQUAL(api->buffer_read(dev, bufs[1], 20, dst, N * 4), BST_ERR_INVALID_ARG);

    api->executable_free(dev, exe);
    api->buffer_free(dev, bufs[0]);
    api->buffer_free(dev, bufs[1]);
    free(src);
    free(dst);
    bst_context_destroy(ctx);
}

static void test_public_api_arguments(void)
{
    env_reset();
    bst_context *ctx = NULL;
    CU_ASSERT_EQUAL(bst_context_create(NULL, NULL), BST_ERR_INVALID_ARG);
    bst_context_options bad = {0};
    CU_ASSERT_EQUAL(bst_context_create(&bad, &ctx), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "struct_size"));

    /* NULL options: environment only. */
    CU_ASSERT_EQUAL(bst_context_create(NULL, &ctx), BST_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    bst_context_destroy(ctx);

    ctx = make_context("tiny", plugin_dir());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    bst_plugin_record r;
    memset(&r, 0, sizeof r);
    CU_ASSERT_EQUAL(bst_context_plugin(ctx, 0, &r), BST_ERR_INVALID_ARG); /* struct_size 0 */
    r.struct_size = sizeof r;
    CU_ASSERT_EQUAL(bst_context_plugin(ctx, bst_context_plugin_count(ctx), &r),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_context_plugin(NULL, 0, &r), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_context_plugin_count(NULL), 0u);
    CU_ASSERT_EQUAL(bst_context_device_count(NULL), 0u);

    /* A caller built against a newer header (bigger struct) gets our fields and our size. */
    struct {
        bst_device_info info;
        unsigned char newer[32];
    } big;
    memset(&big, 0x5a, sizeof big);
    big.info.struct_size = sizeof big;
    CU_ASSERT_EQUAL(bst_context_device(ctx, 0, &big.info, NULL), BST_OK);
    CU_ASSERT_EQUAL(big.info.struct_size, sizeof(bst_device_info));
    CU_ASSERT_EQUAL(big.newer[0], 0x5a);
    CU_ASSERT_STRING_EQUAL(big.info.name, "tiny test device");
    bst_device_info small;
    memset(&small, 0, sizeof small);
    small.struct_size = 8;
    CU_ASSERT_EQUAL(bst_context_device(ctx, 0, &small, NULL), BST_ERR_INVALID_ARG);
    bst_context_destroy(ctx);
    bst_context_destroy(NULL);
}

static void test_state_names(void)
{
    static const struct {
        bst_plugin_state state;
        const char *name;
    } expected[] = {
        {BST_PLUGIN_LOADED, "loaded"},         {BST_PLUGIN_NOT_LOADABLE, "not-loadable"},
        {BST_PLUGIN_NO_ENTRY, "no-entry"},     {BST_PLUGIN_ABI_MISMATCH, "abi-mismatch"},
        {BST_PLUGIN_ENTRY_FAILED, "entry-failed"}, {BST_PLUGIN_NO_DEVICE, "no-device"},
        {BST_PLUGIN_NOT_SELECTED, "not-selected"}, {BST_PLUGIN_DUPLICATE, "duplicate"},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CU_ASSERT_STRING_EQUAL(bst_plugin_state_name(expected[i].state), expected[i].name);
    CU_ASSERT_STRING_EQUAL(bst_plugin_state_name((bst_plugin_state)99), "unknown");
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every backend this build produced in ONE process and starts every device: driver stacks
 * that cannot coexist (two LLVMs, say) must show up here, not in a user's process. */
static void test_all_real_backends_in_one_process(void)
{
    env_reset();
    const char *dir = real_backend_dir;
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    char *names[64];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        const char *pre = "libbst-backend-";
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, pre, strlen(pre)) == 0 && len > strlen(pre) + 3 &&
            strcmp(e->d_name + len - 3, ".so") == 0)
            names[n++] = strndup(e->d_name + strlen(pre), len - strlen(pre) - 3);
    }
    closedir(d);
    CU_ASSERT_TRUE(n >= 1); /* at least the CPU backend */
    qsort(names, n, sizeof *names, cmp_names);
    char list[4096] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 2);
        strcat(list, ",");
    }
    bst_context *ctx = make_context(list, NULL); /* named: npu-sim included */
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    for (size_t i = 0; i < n; i++) {
        bst_plugin_record r;
        long k = find_plugin(ctx, names[i], dir, &r);
        CU_ASSERT_TRUE(k >= 0);
        bool ok = k >= 0 && (r.state == BST_PLUGIN_LOADED || r.state == BST_PLUGIN_NO_DEVICE);
        CU_ASSERT_TRUE(ok);
        if (!ok)
            fprintf(stderr, "\n  backend %s: %s: %s\n", names[i],
                    k >= 0 ? bst_plugin_state_name((bst_plugin_state)r.state) : "missing",
                    k >= 0 ? r.detail : "");
        free(names[i]);
    }
    for (uint32_t i = 0; i < bst_context_device_count(ctx); i++) {
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        const char *backend = NULL;
        CU_ASSERT_EQUAL(bst_context_device(ctx, i, &info, &backend), BST_OK);
        CU_ASSERT_TRUE(info.name[0] != '\0');
        CU_ASSERT_TRUE(info.kind <= BST_DEVICE_ACCEL);
        void *h = NULL;
        bst_status st = bsti_device_get(ctx, i, &h);
        CU_ASSERT_EQUAL(st, BST_OK);
        if (st != BST_OK)
            fprintf(stderr, "\n  device %u (%s/%s): %s\n", i, backend, info.name, bst_last_error());
    }
    bst_context_destroy(ctx);
}

int main(void)
{
    const char *p = getenv("BASTION_BACKEND_PATH");
    saved_backend_path = p ? strdup(p) : NULL;
    real_backend_dir = p ? realpath(p, NULL) : NULL;
    const char *t = getenv("BASTION_TEST_PLUGIN_DIR");
    test_plugin_dir = t ? realpath(t, NULL) : NULL;
    unsetenv("OMP_WAIT_POLICY");
    bst_set_log_callback(capture, NULL, BST_LOG_DEBUG);
    static const bst_test_case cases[] = {
        {"omp_wait_policy_set", test_omp_wait_policy_set},
        {"each_bad_plugin_state", test_each_bad_plugin_state},
        {"selection_by_option", test_selection_by_option},
        {"selection_by_env_in_priority_order", test_selection_by_env_in_priority_order},
        {"disable_list", test_disable_list},
        {"requested_but_missing_warns", test_requested_but_missing_warns},
        {"duplicate_names", test_duplicate_names},
        {"relative_and_empty_paths_ignored", test_relative_and_empty_paths_ignored},
        {"lazy_device_open", test_lazy_device_open},
        {"device_open_failure_is_sticky", test_device_open_failure_is_sticky},
        {"fault_hook", test_fault_hook},
        {"fault_hook_thread_safe", test_fault_hook_thread_safe},
        {"host_services", test_host_services},
        {"tiny_plugin_runs_scale", test_tiny_plugin_runs_scale},
        {"public_api_arguments", test_public_api_arguments},
        {"state_names", test_state_names},
        {"all_real_backends_in_one_process", test_all_real_backends_in_one_process},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("loader", cases);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    logs_clear();
    free(saved_backend_path);
    free(real_backend_dir);
    free(test_plugin_dir);
    return rc;
}
