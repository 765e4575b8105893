/*
 * tests/test_cli.c — the `bastion` command as a user meets it: runs the built binary
 * ($BASTION_BIN) with stdout and stderr captured, and checks exit codes (0 ok, 1 failure,
 * 2 usage), error locations in bad IR files, that printed graphs parse back, that the backends
 * JSON is valid and lists the CPU plugin, and that run-graph is deterministic per seed.
 */
#include "test_util.h"

#include <bastion/bastion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <regex.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct cli_result {
    int status; /* exit code, or -1 when the process did not exit normally */
    char *out;
    char *err;
} cli_result;

static void result_free(cli_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

typedef struct sink {
    char *buf;
    size_t len, cap;
} sink;

static int sink_read(sink *s, int fd)
{
    if (s->cap - s->len < 4097) {
        size_t cap = s->cap ? s->cap * 2 : 16384;
        char *grown = realloc(s->buf, cap);
        if (!grown)
            return -1;
        s->buf = grown;
        s->cap = cap;
    }
    ssize_t n = read(fd, s->buf + s->len, 4096);
    if (n > 0)
        s->len += (size_t)n;
    s->buf[s->len] = '\0';
    return (int)n;
}

/* Runs $BASTION_BIN with argv (NULL-terminated, without argv[0]) and captures both streams,
 * draining them together so neither pipe can fill up and stall the child. */
static cli_result run_cli(const char *const *args)
{
    cli_result r = {.status = -1};
    int out_pipe[2], err_pipe[2];
    if (pipe(out_pipe) != 0)
        return r;
    if (pipe(err_pipe) != 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
        return r;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
    posix_spawn_file_actions_addclose(&fa, err_pipe[0]);
    const pid_t pid = bst_test_spawn_bastion(NULL, args, &fa);
    posix_spawn_file_actions_destroy(&fa);
    close(out_pipe[1]);
    close(err_pipe[1]);
    sink so = {0}, se = {0};
    if (pid >= 0) {
        struct pollfd fds[2] = {{.fd = out_pipe[0], .events = POLLIN},
                                {.fd = err_pipe[0], .events = POLLIN}};
        int open_fds = 2;
        while (open_fds > 0) {
            if (poll(fds, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            for (int i = 0; i < 2; i++) {
                if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                if (sink_read(i == 0 ? &so : &se, fds[i].fd) <= 0) {
                    fds[i].fd = -1;
                    open_fds--;
                }
            }
        }
        r.status = bst_test_wait_exit(pid);
    }
    close(out_pipe[0]);
    close(err_pipe[0]);
    r.out = so.buf ? so.buf : calloc(1, 1);
    r.err = se.buf ? se.buf : calloc(1, 1);
    return r;
}

#define RUN(...) run_cli((const char *const[]){__VA_ARGS__, NULL})

static bool starts_with(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
    size_t n = 0;
    for (const char *line = text; line && *line;) {
        if (starts_with(line, prefix))
            n++;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return n;
}

static char tmp_dir[256];

static const char *tmp_path(const char *name)
{
    static char path[512];
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/bastion-test-cli-XXXXXX");
        if (!mkdtemp(tmp_dir))
            tmp_dir[0] = '\0';
    }
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static bool write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

/* The fixture run-graph is exercised on: the llama block when present, else the small MLP. */
static const char *run_fixture(void)
{
    static char path[4096];
    const char *candidates[] = {"llama_block.bir", "example_mlp.bir"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        snprintf(path, sizeof path, "%s", bst_test_fixture(candidates[i]));
        if (access(path, R_OK) == 0)
            return path;
    }
    return NULL;
}

/* Counts "output %v "name"" statements in a .bir file: an independent count of the outputs. */
static size_t count_outputs_in_file(const char *path)
{
    char *text = bst_test_read_file(path, NULL);
    if (!text)
        return 0;
    size_t n = 0;
    for (const char *line = text; line && *line;) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (starts_with(line, "output ") || starts_with(line, "output\t"))
            n++;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    free(text);
    return n;
}

static void test_version(void)
{
    char expected[64];
    snprintf(expected, sizeof expected, "bastion %d.%d.%d\n", BST_VERSION_MAJOR, BST_VERSION_MINOR,
             BST_VERSION_PATCH);
    cli_result r = RUN("--version");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_STRING_EQUAL(r.out, expected);
    result_free(&r);
}

static void test_help(void)
{
    const char *commands[] = {"backends", "graph", "run-graph"};
    cli_result r = RUN("--help");
    CU_ASSERT_EQUAL(r.status, 0);
    for (size_t i = 0; i < 3; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(r.out, commands[i]));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "BASTION_BACKEND_PATH"));
    result_free(&r);

    r = RUN("help");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "run-graph"));
    result_free(&r);

    r = RUN("help", "graph");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "--dot"));
    result_free(&r);

    for (size_t i = 0; i < 3; i++) {
        r = RUN(commands[i], "--help");
        CU_ASSERT_EQUAL(r.status, 0);
        CU_ASSERT_TRUE(starts_with(r.out, "Usage: bastion "));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.out, commands[i]));
        result_free(&r);
    }

    /* No command at all is a usage error, with the usage on stderr. */
    r = RUN(NULL);
    CU_ASSERT_EQUAL(r.status, 2);
    CU_ASSERT_STRING_EQUAL(r.out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "Usage:"));
    result_free(&r);
}

static void expect_usage_error(cli_result r, const char *needle)
{
    CU_ASSERT_EQUAL(r.status, 2);
    CU_ASSERT_STRING_EQUAL(r.out, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, needle));
    if (r.status != 2 || !strstr(r.err, needle))
        fprintf(stderr, "expected usage error '%s', got %d: %s\n", needle, r.status, r.err);
    result_free(&r);
}

static void test_usage_errors(void)
{
    const char *fixture = run_fixture();
    const char *file = fixture ? fixture : "x.bir";
    expect_usage_error(RUN("frobnicate"), "unknown command 'frobnicate'");
    expect_usage_error(RUN("--frobnicate"), "unknown option '--frobnicate'");
    expect_usage_error(RUN("help", "frobnicate"), "unknown command 'frobnicate'");
    expect_usage_error(RUN("graph"), "missing FILE.bir");
    expect_usage_error(RUN("graph", file, "--frob"), "unknown option '--frob'");
    expect_usage_error(RUN("graph", file, "--passes"), "needs an argument");
    expect_usage_error(RUN("graph", file, file), "unexpected argument");
    expect_usage_error(RUN("graph", file, "--passes", "verify,frob"), "unknown pass");
    expect_usage_error(RUN("backends", "--json", "extra"), "unexpected argument 'extra'");
    expect_usage_error(RUN("backends", "--backend"), "needs an argument");
    expect_usage_error(RUN("run-graph"), "missing FILE.bir");
    expect_usage_error(RUN("run-graph", file, "--seed", "abc"), "--seed");
    expect_usage_error(RUN("run-graph", file, "--seed", "-3"), "--seed");
    expect_usage_error(RUN("run-graph", file, "--bind", "n_frobs=3"), "unknown name 'n_frobs'");
    expect_usage_error(RUN("run-graph", file, "--bind", "n_tokens"), "expected K=V");
    expect_usage_error(RUN("run-graph", file, "--input", "novalue"), "NAME=FILE");
    expect_usage_error(RUN("run-graph", file, "--print", "--checksum"), "exclude");
}

static void test_missing_file(void)
{
    const char *path = "/nonexistent/bastion/missing.bir";
    const char *cmds[] = {"graph", "run-graph"};
    for (size_t i = 0; i < 2; i++) {
        cli_result r = RUN(cmds[i], path);
        CU_ASSERT_EQUAL(r.status, 1);
        CU_ASSERT_STRING_EQUAL(r.out, "");
        CU_ASSERT_PTR_NOT_NULL(strstr(r.err, path));
        CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "No such file"));
        result_free(&r);
    }
}

static bool has_bir_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".bir") == 0;
}

/* Every file in fixtures/bad/ fails with "FILE:LINE:COL: message" on stderr and exit 1, in both
 * commands that read IR files. */
static void test_bad_fixtures(void)
{
    char dir_path[4096];
    snprintf(dir_path, sizeof dir_path, "%s", bst_test_fixture("bad"));
    DIR *dir = opendir(dir_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    regex_t loc;
    CU_ASSERT_EQUAL_FATAL(regcomp(&loc, "^[1-9][0-9]*:[1-9][0-9]*: [^ ]", REG_EXTENDED | REG_NOSUB), 0);
    size_t n_files = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (!has_bir_suffix(e->d_name))
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        n_files++;
        const char *cmds[] = {"graph", "run-graph"};
        for (size_t c = 0; c < 2; c++) {
            cli_result r = RUN(cmds[c], path);
            bool ok = r.status == 1 && starts_with(r.err, path) && r.err[strlen(path)] == ':' &&
                      regexec(&loc, r.err + strlen(path) + 1, 0, NULL, 0) == 0 && r.out[0] == '\0';
            if (!ok)
                fprintf(stderr, "%s %s: exit %d, stderr: %s\n", cmds[c], e->d_name, r.status,
                        r.err);
            CU_ASSERT_TRUE(ok);
            result_free(&r);
        }
    }
    closedir(dir);
    regfree(&loc);
    CU_ASSERT_TRUE(n_files > 0);
}

/* `graph` on every good fixture prints text that parses back and prints identically. */
static void test_graph_roundtrip(void)
{
    DIR *dir = opendir(bst_test_fixture(""));
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    size_t n_files = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (!has_bir_suffix(e->d_name))
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s", bst_test_fixture(e->d_name));
        n_files++;
        cli_result r = RUN("graph", path);
        CU_ASSERT_EQUAL(r.status, 0);
        bst_graph *g = NULL;
        bst_status st = bst_graph_parse(r.out, strlen(r.out), &g);
        if (st != BST_OK)
            fprintf(stderr, "%s: printed form does not parse: %s\n", e->d_name, bst_last_error());
        CU_ASSERT_EQUAL(st, BST_OK);
        if (st == BST_OK) {
            char *again = NULL;
            CU_ASSERT_EQUAL(bst_graph_print(g, &again), BST_OK);
            if (again)
                CU_ASSERT_STRING_EQUAL(again, r.out);
            bst_free(again);
        }
        bst_graph_destroy(g);
        result_free(&r);

        r = RUN("graph", path, "--passes", "verify,infer");
        CU_ASSERT_EQUAL(r.status, 0);
        g = NULL;
        CU_ASSERT_EQUAL(bst_graph_parse(r.out, strlen(r.out), &g), BST_OK);
        bst_graph_destroy(g);
        result_free(&r);
    }
    closedir(dir);
    CU_ASSERT_TRUE(n_files > 0);
}

static void test_graph_dot(void)
{
    const char *fixture = run_fixture();
    CU_ASSERT_PTR_NOT_NULL_FATAL(fixture);
    cli_result r = RUN("graph", "--dot", fixture);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_TRUE(starts_with(r.out, "digraph"));
    CU_ASSERT_PTR_NOT_NULL(strrchr(r.out, '}'));
    result_free(&r);
}

static void test_backends_text(void)
{
    cli_result r = RUN("backends");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "plugin cpu: loaded"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "device 0:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "fingerprint:"));
    result_free(&r);
}

/* The CPU device's fingerprint as `bastion backends --backend cpu` prints it, into fp. */
static void cpu_fingerprint(char *fp, size_t cap)
{
    cli_result r = RUN("backends", "--backend", "cpu");
    CU_ASSERT_EQUAL(r.status, 0);
    const char *at = r.out ? strstr(r.out, "fingerprint:") : NULL;
    CU_ASSERT_PTR_NOT_NULL(at);
    snprintf(fp, cap, "%.18s", at ? at + strspn(at + 12, " ") + 12 : "");
    result_free(&r);
}

/* The fingerprint (a key of the tuning database) covers the ISA features the plugin uses: with
 * BASTION_CPU_ISA=scalar it differs wherever the machine has AVX2, so rows measured on the
 * capped kernels never answer for the full set, and a second run with the same cap gets the
 * same key. An unknown feature name leaves every feature on, with a warning. */
static void test_cpu_fingerprint_isa(void)
{
    char full[32], capped[32], again[32], bogus[32];
    cpu_fingerprint(full, sizeof full);
    CU_ASSERT_EQUAL_FATAL(setenv("BASTION_CPU_ISA", "scalar", 1), 0);
    cpu_fingerprint(capped, sizeof capped);
    cpu_fingerprint(again, sizeof again);
    CU_ASSERT_EQUAL_FATAL(setenv("BASTION_CPU_ISA", "avx2,no-such-isa", 1), 0);
    cpu_fingerprint(bogus, sizeof bogus);
    cli_result r = RUN("backends", "--backend", "cpu");
    CU_ASSERT_PTR_NOT_NULL(r.err ? strstr(r.err, "unknown feature 'no-such-isa'") : NULL);
    result_free(&r);
    unsetenv("BASTION_CPU_ISA");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192] = "";
    while (f && fgets(line, sizeof line, f) && strncmp(line, "flags", 5) != 0) {
    }
    if (f)
        fclose(f);
    const bool avx2 = strncmp(line, "flags", 5) == 0 && strstr(line, " avx2") != NULL;
    CU_ASSERT_EQUAL(strcmp(full, capped) != 0, avx2);
    CU_ASSERT_STRING_EQUAL(capped, again);
    CU_ASSERT_STRING_EQUAL(full, bogus);
}

static const char *json_str(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Returns the plugin called `name` in `state` from a backends document. The same file can be
 * listed twice (found through BASTION_BACKEND_PATH and the library's own directory: the second
 * is a duplicate), so the state is part of the match. */
static json_object *find_plugin(json_object *root, const char *name, const char *state)
{
    json_object *plugins = NULL;
    if (!json_object_object_get_ex(root, "plugins", &plugins) ||
        !json_object_is_type(plugins, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(plugins); i++) {
        json_object *p = json_object_array_get_idx(plugins, i);
        const char *pname = json_str(p, "name");
        const char *pstate = json_str(p, "state");
        if (pname && pstate && strcmp(pname, name) == 0 && strcmp(pstate, state) == 0)
            return p;
    }
    return NULL;
}

static void test_backends_json(void)
{
    cli_result r = RUN("backends", "--json");
    CU_ASSERT_EQUAL(r.status, 0);
    json_object *root = json_tokener_parse(r.out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_STRING_EQUAL(json_str(root, "schema") ? json_str(root, "schema") : "",
                           "bastion.backends/1");
    CU_ASSERT_STRING_EQUAL(json_str(root, "bastion_version") ? json_str(root, "bastion_version")
                                                             : "",
                           bst_version());
    json_object *cpu = find_plugin(root, "cpu", "loaded");
    CU_ASSERT_PTR_NOT_NULL(cpu);
    if (cpu) {
        CU_ASSERT_PTR_NOT_NULL(json_str(cpu, "path"));
        json_object *abi = NULL;
        CU_ASSERT_TRUE(json_object_object_get_ex(cpu, "abi_version", &abi) &&
                       json_object_get_int64(abi) >= 1);
        json_object *devices = NULL;
        CU_ASSERT_TRUE(json_object_object_get_ex(cpu, "devices", &devices) &&
                       json_object_is_type(devices, json_type_array) &&
                       json_object_array_length(devices) >= 1);
        if (devices && json_object_array_length(devices) >= 1) {
            json_object *d = json_object_array_get_idx(devices, 0);
            const char *kind = json_str(d, "kind");
            CU_ASSERT_STRING_EQUAL(kind ? kind : "", "cpu");
            CU_ASSERT_TRUE(starts_with(json_str(d, "fingerprint"), "0x"));
            json_object *mem = NULL;
            CU_ASSERT_TRUE(json_object_object_get_ex(d, "memory_bytes", &mem) &&
                           json_object_is_type(mem, json_type_int));
            json_object *flag = NULL;
            CU_ASSERT_TRUE(json_object_object_get_ex(d, "unified_memory", &flag) &&
                           json_object_is_type(flag, json_type_boolean));
        }
    }
    json_object_put(root);
    result_free(&r);

    /* A plugin left out by --backend is still listed, as not selected, without devices. */
    r = RUN("backends", "--json", "--backend", "no-such-backend");
    CU_ASSERT_EQUAL(r.status, 0);
    root = json_tokener_parse(r.out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_PTR_NULL(find_plugin(root, "cpu", "loaded"));
    cpu = find_plugin(root, "cpu", "not-selected");
    CU_ASSERT_PTR_NOT_NULL(cpu);
    if (cpu) {
        json_object *devices = NULL;
        CU_ASSERT_TRUE(json_object_object_get_ex(cpu, "devices", &devices) &&
                       json_object_array_length(devices) == 0);
    }
    json_object_put(root);
    result_free(&r);
}

/* With the loader's test plugins on the path, every skipped plugin is listed with its reason,
 * in both forms, and skipped plugins have no devices. */
static void test_backends_skipped(void)
{
    const char *dir = getenv("BASTION_TEST_PLUGIN_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    cli_result r = RUN("backends", "--json", "--plugin-path", dir);
    CU_ASSERT_EQUAL(r.status, 0);
    json_object *root = json_tokener_parse(r.out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    json_object *plugins = NULL;
    CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(root, "plugins", &plugins));
    size_t n_skipped = 0;
    for (size_t i = 0; i < json_object_array_length(plugins); i++) {
        json_object *p = json_object_array_get_idx(plugins, i);
        const char *state = json_str(p, "state");
        const char *detail = json_str(p, "detail");
        json_object *devices = NULL;
        CU_ASSERT_PTR_NOT_NULL(state);
        CU_ASSERT_PTR_NOT_NULL(detail);
        CU_ASSERT_TRUE(json_object_object_get_ex(p, "devices", &devices));
        if (!state || !detail || strcmp(state, "loaded") == 0)
            continue;
        n_skipped++;
        CU_ASSERT_TRUE(detail[0] != '\0');
        CU_ASSERT_EQUAL(json_object_array_length(devices), 0);
    }
    CU_ASSERT_TRUE(n_skipped > 0);
    json_object_put(root);
    result_free(&r);

    r = RUN("backends", "--plugin-path", dir);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_EQUAL(count_lines_starting(r.out, "  reason:  "), n_skipped);
    result_free(&r);
}

static void test_run_graph_checksums(void)
{
    const char *fixture = run_fixture();
    CU_ASSERT_PTR_NOT_NULL_FATAL(fixture);
    size_t n_outputs = count_outputs_in_file(fixture);
    CU_ASSERT_TRUE(n_outputs > 0);

    cli_result a = RUN("run-graph", fixture, "--seed", "7");
    cli_result b = RUN("run-graph", fixture, "--seed", "7");
    cli_result c = RUN("run-graph", fixture, "--seed", "8");
    if (a.status != 0)
        fprintf(stderr, "run-graph failed: %s\n", a.err);
    CU_ASSERT_EQUAL(a.status, 0);
    CU_ASSERT_EQUAL(b.status, 0);
    CU_ASSERT_EQUAL(c.status, 0);
    CU_ASSERT_EQUAL(count_lines_starting(a.out, "output "), n_outputs);
    CU_ASSERT_EQUAL(count_lines_starting(a.out, ""), n_outputs); /* nothing else on stdout */
    CU_ASSERT_PTR_NOT_NULL(strstr(a.out, " sum="));
    CU_ASSERT_PTR_NOT_NULL(strstr(a.out, " sumsq="));
    CU_ASSERT_PTR_NULL(strstr(a.out, "nan"));
    CU_ASSERT_STRING_EQUAL(a.out, b.out);
    CU_ASSERT_STRING_NOT_EQUAL(a.out, c.out);
    result_free(&a);
    result_free(&b);
    result_free(&c);

    /* --print lists values; --describe adds the placement, naming the CPU backend. */
    cli_result p = RUN("run-graph", fixture, "--print", "--limit", "5", "--describe",
                       "--backend", "cpu");
    CU_ASSERT_EQUAL(p.status, 0);
    CU_ASSERT_EQUAL(count_lines_starting(p.out, "output "), n_outputs);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.out, "cpu"));
    result_free(&p);
}

/* A tiny graph whose outputs the test computes itself: checks the checksum line's arithmetic,
 * --input files, and the binding of a symbolic dim. */
static void test_run_graph_known_values(void)
{
    const char *fixture = bst_test_fixture("cli_scale.bir");
    float x[4 * 3];
    for (int i = 0; i < 12; i++)
        x[i] = (float)(i + 1) * 0.5f;
    const char *xfile = tmp_path("x.bin");
    CU_ASSERT_TRUE_FATAL(write_file(xfile, x, sizeof x));
    char input_arg[600];
    snprintf(input_arg, sizeof input_arg, "x=%s", xfile);

    /* y = x * 2 over all 4 rows (n_tokens at its bound 4). */
    double sum = 0, sumsq = 0;
    for (int i = 0; i < 12; i++) {
        double y = 2.0 * x[i];
        sum += y;
        sumsq += y * y;
    }
    char expected[256];
    snprintf(expected, sizeof expected,
             "output y f32[n_tokens=4,3] n=12 sum=%.9g sumsq=%.9g first=[1, 2, 3, 4]\n", sum,
             sumsq);
    cli_result r = RUN("run-graph", fixture, "--input", input_arg);
    if (r.status != 0)
        fprintf(stderr, "run-graph cli_scale: %s\n", r.err);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_STRING_EQUAL(r.out, expected);
    result_free(&r);

    /* Bound to 2 tokens: only the first two rows are valid and summed. */
    sum = sumsq = 0;
    for (int i = 0; i < 6; i++) {
        double y = 2.0 * x[i];
        sum += y;
        sumsq += y * y;
    }
    snprintf(expected, sizeof expected,
             "output y f32[n_tokens=2,3] n=6 sum=%.9g sumsq=%.9g first=[1, 2, 3, 4]\n", sum,
             sumsq);
    r = RUN("run-graph", fixture, "--input", input_arg, "--bind", "n_tokens=2");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_STRING_EQUAL(r.out, expected);
    result_free(&r);

    r = RUN("run-graph", fixture, "--input", input_arg, "--print");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_STRING_EQUAL(r.out, "output y f32[n_tokens=4,3]\n"
                                  "  [0] 1 2 3\n"
                                  "  [1] 4 5 6\n"
                                  "  [2] 7 8 9\n"
                                  "  [3] 10 11 12\n");
    result_free(&r);

    /* Failures that are not usage errors: exit 1 with a message naming the problem. */
    r = RUN("run-graph", fixture, "--input", input_arg, "--bind", "n_tokens=5");
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "bound 4"));
    result_free(&r);
    r = RUN("run-graph", fixture, "--input", input_arg, "--bind", "n_kv=2");
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "no n_kv"));
    result_free(&r);

    const char *short_file = tmp_path("short.bin");
    CU_ASSERT_TRUE_FATAL(write_file(short_file, x, sizeof x - 4));
    char short_arg[600];
    snprintf(short_arg, sizeof short_arg, "x=%s", short_file);
    r = RUN("run-graph", fixture, "--input", short_arg);
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "takes 48 bytes"));
    result_free(&r);
    unlink(short_file);

    snprintf(short_arg, sizeof short_arg, "nosuch=%s", xfile);
    r = RUN("run-graph", fixture, "--input", short_arg);
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "no input of that name"));
    result_free(&r);
    unlink(xfile);

    r = RUN("run-graph", fixture, "--backend", "no-such-backend");
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT_STRING_EQUAL(r.out, "");
    result_free(&r);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"version", test_version},
        {"help", test_help},
        {"usage_errors", test_usage_errors},
        {"missing_file", test_missing_file},
        {"bad_fixtures", test_bad_fixtures},
        {"graph_roundtrip", test_graph_roundtrip},
        {"graph_dot", test_graph_dot},
        {"backends_text", test_backends_text},
        {"backends_json", test_backends_json},
        {"cpu_fingerprint_isa", test_cpu_fingerprint_isa},
        {"backends_skipped", test_backends_skipped},
        {"run_graph_checksums", test_run_graph_checksums},
        {"run_graph_known_values", test_run_graph_known_values},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("cli", cases);
    if (tmp_dir[0])
        rmdir(tmp_dir);
    return rc;
}
