/* Shared CUnit driver and fixture helpers. */
#include "test_util.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int bst_test_run_suite(const char *suite_name, const bst_test_case *cases)
{
    /* BASTION_TEST_CASES=SUBSTRING runs only the cases whose name contains it (ctest entries
     * that re-run one case of a suite in another configuration); matching none is a failure. */
    const char *only = getenv("BASTION_TEST_CASES");
    if (only && !*only)
        only = NULL;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (!suite) {
        CU_cleanup_registry();
        return 2;
    }
    unsigned registered = 0;
    for (const bst_test_case *c = cases; c->name; c++) {
        if (only && !strstr(c->name, only))
            continue;
        if (!CU_add_test(suite, c->name, c->fn)) {
            CU_cleanup_registry();
            return 2;
        }
        registered++;
    }
    if (only && registered == 0) {
        fprintf(stderr, "%s: no test case matches BASTION_TEST_CASES=%s\n", suite_name, only);
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (ran != registered) {
        fprintf(stderr, "%s: only %u of %u tests ran\n", suite_name, ran, registered);
        return 1;
    }
    return failed ? 1 : 0;
}

char *bst_test_read_file(const char *path, size_t *out_size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (size + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + size, 1, 4096, f);
        size += n;
        if (n < 4096)
            break;
    }
    fclose(f);
    buf[size] = '\0';
    if (out_size)
        *out_size = size;
    return buf;
}

const char *bst_test_fixture(const char *name)
{
    static char path[4096];
    const char *dir = getenv("BASTION_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", name);
    return path;
}

bst_backend_entry_fn bst_test_plugin_entry(const char *file)
{
    const char *dir = getenv("BASTION_BACKEND_PATH");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", file);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return NULL;
    }
    void *sym = dlsym(h, BST_BACKEND_ENTRY_SYMBOL);
    if (!sym) {
        fprintf(stderr, "%s: no %s\n", path, BST_BACKEND_ENTRY_SYMBOL);
        return NULL;
    }
    bst_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    return entry;
}

const char *bst_test_plugin_dir(void)
{
    const char *dir = getenv("BASTION_TEST_PLUGIN_DIR");
    if (dir && *dir)
        return dir;
    fprintf(stderr, "(BASTION_TEST_PLUGIN_DIR not set; skipped) ");
    return NULL;
}

bst_graph *bst_test_scale_graph(int64_t rows, int64_t cols, double factor)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t shape[2] = {rows, cols};
    bst_value x, y = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, shape, NULL, &x) == BST_OK);
    bst_attr attr = {.struct_size = sizeof attr, .key = BST_ATTR_SCALE,
                     .kind = BST_ATTR_KIND_FLOAT, .count = 1, .f = factor};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_SCALE, &x, 1, &attr, 1, &y) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, y, "y") == BST_OK);
    return g;
}

double bst_test_urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / (double)(1ull << 53);
}

void bst_test_fill_wide(uint64_t *s, float *x, int64_t rows, int64_t k)
{
    for (int64_t r = 0; r < rows; r++) {
        const double row_amp = pow(10.0, 2.0 * bst_test_urand(s) - 1.0);
        for (int64_t b = 0; b < k; b += 32) {
            const double amp = row_amp * pow(10.0, 2.0 * bst_test_urand(s) - 1.0);
            for (int64_t i = b; i < b + 32 && i < k; i++) {
                double v = amp * (2.0 * bst_test_urand(s) - 1.0);
                if (bst_test_urand(s) < 0.125)
                    v *= 10.0;
                x[r * k + i] = (float)v;
            }
        }
    }
}

bst_graph *bst_test_matmul_graph(bst_dtype wt, const int64_t *ks, int n_ks,
                                 const bst_test_wmat *w, int nw, int64_t m, bool constant)
{
    bst_graph *g = NULL;
    BST_TEST_OK(bst_graph_create(&g));
    bst_value x[16];
    CU_ASSERT_FATAL(n_ks <= 16);
    for (int i = 0; i < n_ks; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%lld", (long long)ks[i]);
        const int64_t shape[2] = {m, ks[i]};
        BST_TEST_OK(bst_graph_add_input(g, name, BST_DTYPE_F32, 2, shape, NULL, &x[i]));
    }
    for (int i = 0; i < nw; i++) {
        const int64_t shape[2] = {w[i].n, w[i].k};
        bst_value in[2], y;
        int xi = 0;
        while (ks[xi] != w[i].k)
            xi++;
        in[0] = x[xi];
        if (constant)
            BST_TEST_OK(
                bst_graph_add_weight(g, w[i].wname, wt, 2, shape, w[i].q, w[i].bytes, &in[1]));
        else
            BST_TEST_OK(bst_graph_add_input(g, w[i].wname, wt, 2, shape, NULL, &in[1]));
        BST_TEST_OK(bst_graph_add_op(g, BST_OP_MATMUL, in, 2, NULL, 0, &y));
        BST_TEST_OK(bst_graph_mark_output(g, y, w[i].yname));
    }
    return g;
}

void bst_test_matmul_run(const bst_graph *g, const int64_t *ks, int n_ks, const bst_test_wmat *w,
                         int nw, bool constant, float *const *xs, int64_t m, float **out,
                         uint32_t threads)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = threads, .backends = "cpu"};
    bst_context *ctx = NULL;
    BST_TEST_OK(bst_context_create(&o, &ctx));
    bst_program *p = NULL;
    BST_TEST_OK(bst_program_create(ctx, g, &p));
    for (int i = 0; i < n_ks; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%lld", (long long)ks[i]);
        BST_TEST_OK(bst_program_set_input(p, name, xs[i], (size_t)(m * ks[i]) * sizeof(float)));
    }
    if (!constant)
        for (int i = 0; i < nw; i++)
            BST_TEST_OK(bst_program_set_input(p, w[i].wname, w[i].q, w[i].bytes));
    BST_TEST_OK(bst_program_run(p, NULL));
    for (int i = 0; i < nw; i++)
        BST_TEST_OK(
            bst_program_get_output(p, w[i].yname, out[i], (size_t)(m * w[i].n) * sizeof(float)));
    bst_program_destroy(p);
    bst_context_destroy(ctx);
}

void bst_test_ffn_swiglu(const float *x, int64_t rows, int64_t E, int64_t F, const float *gate,
                         const float *up, const float *down, double *out)
{
    double *h = malloc((size_t)F * sizeof *h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t n = 0; n < F; n++) {
            double sg = 0.0, su = 0.0;
            for (int64_t i = 0; i < E; i++) {
                sg += (double)x[r * E + i] * gate[n * E + i];
                su += (double)x[r * E + i] * up[n * E + i];
            }
            h[n] = sg / (1.0 + exp(-sg)) * su;
        }
        for (int64_t n = 0; n < E; n++) {
            double s = 0.0;
            for (int64_t i = 0; i < F; i++)
                s += h[i] * down[n * F + i];
            out[r * E + n] = s;
        }
    }
    free(h);
}

extern char **environ;

pid_t bst_test_spawn_bastion(const char *sub, const char *const *args,
                             const posix_spawn_file_actions_t *fa)
{
    const char *bin = getenv("BASTION_BIN");
    if (!bin)
        bin = "bastion";
    const char *argv[48];
    size_t n = 0;
    argv[n++] = bin;
    if (sub)
        argv[n++] = sub;
    for (size_t i = 0; args[i] && n + 1 < sizeof argv / sizeof argv[0]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, bin, fa, NULL, (char *const *)argv, environ);
    if (rc != 0) {
        fprintf(stderr, "cannot spawn %s: %s\n", bin, strerror(rc));
        return -1;
    }
    return pid;
}

int bst_test_wait_exit(pid_t pid)
{
    if (pid < 0)
        return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
