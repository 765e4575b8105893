/*
 * tests/test_util.h — helpers shared by the CUnit suites: running a suite so that `main` fails
 * when any assertion failed (CU_basic_run_tests alone does not), reading fixtures, loading a
 * backend plugin directly, starting the `bastion` command, and test data for quantized kernels.
 */
#ifndef BASTION_TEST_UTIL_H
#define BASTION_TEST_UTIL_H

#include <bastion/backend.h>
#include <bastion/bastion.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Asserts (fatally) that `call` returned BST_OK; when it did not, prints the call and
 * bst_last_error() first. */
#define BST_TEST_OK(call)                                                                        \
    do {                                                                                         \
        bst_status st_ = (call);                                                                 \
        if (st_ != BST_OK)                                                                       \
            fprintf(stderr, "\n  %s: %s\n", #call, bst_last_error());                            \
        CU_ASSERT_EQUAL_FATAL(st_, BST_OK);                                                      \
    } while (0)

typedef struct bst_test_case {
    const char *name;
    void (*fn)(void);
} bst_test_case;

/* Starts $BASTION_BIN (default "bastion") with `sub` first unless it is NULL, then args
 * (NULL-terminated, at most 46 in all), its standard streams as `fa` sets them up (NULL:
 * inherited). Returns the child's pid, or -1 with the reason on stderr. */
pid_t bst_test_spawn_bastion(const char *sub, const char *const *args,
                             const posix_spawn_file_actions_t *fa);
/* Waits for child `pid`: its exit status, or -1 when it did not exit normally (or pid is -1). */
int bst_test_wait_exit(pid_t pid);

/* Registers `cases` (terminated by {NULL, NULL}) as one suite, runs it verbosely and returns the
 * process exit code: 0 only when every test ran and passed. With BASTION_TEST_CASES=SUBSTRING
 * set, only the cases whose name contains SUBSTRING are registered (none matching fails). */
int bst_test_run_suite(const char *suite_name, const bst_test_case *cases);

/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL on failure. */
char *bst_test_read_file(const char *path, size_t *out_size);

/* Path of a fixture file (tests/fixtures/NAME) in a static buffer. */
const char *bst_test_fixture(const char *name);

/* The entry point of plugin FILE (e.g. "libbst-backend-cpu.so") in $BASTION_BACKEND_PATH (else
 * the current directory), for suites that drive a plugin through its ABI without the runtime's
 * loader; NULL (with the reason on stderr) when it cannot be loaded. */
bst_backend_entry_fn bst_test_plugin_entry(const char *file);

/* $BASTION_TEST_PLUGIN_DIR, where the test plugins (tiny, tiny_async, slow_variant, ...) are
 * built; NULL, after saying on stderr that the caller's test is skipped, when it is not set. */
const char *bst_test_plugin_dir(void);

/* The graph y = factor * x (one SCALE node) over an f32 input "x" of rows x cols, with output
 * "y"; any failure is a fatal CUnit assertion. */
bst_graph *bst_test_scale_graph(int64_t rows, int64_t cols, double factor);

/* A uniform double in [0, 1) from the LCG state *s. */
double bst_test_urand(uint64_t *s);
/* rows x k values over several decades: per row a magnitude 10^[-1, 1], per block of 32 another,
 * and one element in 8 ten times larger (an outlier the block scale must cover). */
void bst_test_fill_wide(uint64_t *s, float *x, int64_t rows, int64_t k);

/* One weight of a matmul test graph: [n, k] stored as `bytes` at q (quantized, f16, ...), its
 * values as floats (the oracle's), and its names in the graph. */
typedef struct bst_test_wmat {
    int64_t n, k;
    size_t bytes;
    uint8_t *q;
    float *deq;
    char wname[32], yname[32];
} bst_test_wmat;

/* The graph for m activation rows: one f32 input x<K> [m, K] per K of ks, and one matmul per
 * weight (its K among ks) with output yname; weights of dtype wt, constant or fed as inputs. */
bst_graph *bst_test_matmul_graph(bst_dtype wt, const int64_t *ks, int n_ks,
                                 const bst_test_wmat *w, int nw, int64_t m, bool constant);
/* Runs such a graph on the CPU backend with `threads` threads, the inputs x<K> from xs (one
 * array per K of ks, [m, K]) and the weights' bytes when they are inputs; out[i] receives
 * weight i's output [m, n]. */
void bst_test_matmul_run(const bst_graph *g, const int64_t *ks, int n_ks, const bst_test_wmat *w,
                         int nw, bool constant, float *const *xs, int64_t m, float **out,
                         uint32_t threads);

/* backend.h's FFN_SWIGLU in double precision: out[r] = down . (silu(gate . x[r]) * (up . x[r]))
 * for rows rows of x [rows, E], with gate and up [F, E] and down [E, F] as floats. */
void bst_test_ffn_swiglu(const float *x, int64_t rows, int64_t E, int64_t F, const float *gate,
                         const float *up, const float *down, double *out);

#endif /* BASTION_TEST_UTIL_H */
