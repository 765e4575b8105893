/*
 * tests/test_conformance_harness.c — the op conformance harness's own failures
 * (tools/conformance/backend_ops_harness.h, "harness failures"): nothing in it aborts. Every
 * allocation it makes can fail, in turn, and the case comes back as an ERROR naming what could
 * not be allocated (from building the case, or from running it on a device), nothing leaks
 * (ASan), the pending error is cleared and the next case runs; every case builder of every family
 * (tools/conformance/backend_ops_cases.c, backend_ops_attention.c) survives a failing
 * allocation; a case that asks for more inputs or attributes than the harness holds, or has no
 * expected output, is an ERROR too; the checker self-test reports a harness failure as -1.
 * Runs on the CPU device only (BASTION_BACKENDS=cpu): what is tested is the harness.
 * `bastion conformance` reporting such a case as "error" is in test_conformance.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */

#include "backend_ops_devices.h"
#include "backend_ops_harness.h"
#include "test_util.h"

#include <bastion/bastion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bo_rng rng;

/* What the result hook saw: ERROR results (with the last reason) and the others. */
static struct {
    int errors, others;
    char why[256];
} g_seen;

static void seen_result(void *ud, const bo_result *r)
{
    (void)ud;
    if (r->outcome == BO_ERROR) {
        g_seen.errors++;
        snprintf(g_seen.why, sizeof g_seen.why, "%s", r->why ? r->why : "(no reason)");
    } else {
        g_seen.others++;
    }
}

/* Runs only a case the harness failed to build: the rest of a family is built, not run. */
static bool select_failed(void *ud, uint64_t case_no, const bo_case *c)
{
    (void)ud;
    (void)case_no;
    (void)c;
    return !bo_ok();
}

static bool select_none(void *ud, uint64_t case_no, const bo_case *c)
{
    (void)ud;
    (void)case_no;
    (void)c;
    return false;
}

static void watch(bool (*select)(void *, uint64_t, const bo_case *))
{
    bo_hooks h = {select, seen_result, NULL, true};
    bo_set_hooks(&h);
    memset(&g_seen, 0, sizeof g_seen);
}

/* A QUANTIZE case with a symbolic dim: its input, expected values and bytes, and output all
 * allocate, and so does every run (buffers, read-back, the block decoder). */
static void build_quantize(bo_case *c)
{
    const int64_t shape[] = {3, 64};
    bo_case_init(c, BST_OP_QUANTIZE, "harness test");
    c->n_tokens = 2;
    bo_tensor *x = bo_case_input(c);
    bo_tensor_contig(x, BST_DTYPE_F32, 2, shape);
    bo_tensor_fill(x, &rng, -1.0, 1.0);
    x->sym[0] = BST_SYM_N_TOKENS;
    bo_case_attr_int(c, BST_ATTR_DTYPE, BST_DTYPE_Q8_0);
    bo_case_output(c, BST_DTYPE_Q8_0, 2, shape);
    c->out.sym[0] = BST_SYM_N_TOKENS;
    double *ref = bo_eff_values(c, x, NULL);
    bo_case_set_ref(c, ref);
    free(ref);
}

static int run_quantize(void)
{
    bo_case c;
    build_quantize(&c);
    return bo_run(&c);
}

static bool names_allocation(const char *why)
{
    bool ok = strstr(why, "cannot allocate") && strstr(why, "injected by bo_fail_alloc");
    if (!ok)
        printf("\n  unexpected reason: %s", why);
    return ok;
}

static void test_each_allocation_fails(void)
{
    watch(NULL);
    bo_family_begin("alloc_failure");
    bo_rng_seed(&rng, 7);
    uint64_t before = bo_alloc_count();
    CU_ASSERT_EQUAL_FATAL(run_quantize(), 0);
    uint64_t per_run = bo_alloc_count() - before;
    printf("\n  one run of the case: %llu harness allocations", (unsigned long long)per_run);
    CU_ASSERT(per_run >= 10);
    int not_reported = 0;
    for (uint64_t k = 1; k <= per_run; k++) {
        memset(&g_seen, 0, sizeof g_seen);
        bo_fail_alloc(k);
        int fails = run_quantize();
        if (fails != 1 || g_seen.errors != 1 || !names_allocation(g_seen.why)) {
            printf("\n  allocation %llu: %d failure(s), %d error result(s)",
                   (unsigned long long)k, fails, g_seen.errors);
            not_reported++;
        }
        if (k == 1)
            printf("\n  allocation 1: %s", g_seen.why);
        CU_ASSERT_TRUE(bo_ok()); /* reported, so cleared */
    }
    CU_ASSERT_EQUAL(not_reported, 0);
    /* Armed past the case: nothing fails. Disarmed: the next case passes. */
    bo_fail_alloc(per_run + 1);
    CU_ASSERT_EQUAL(run_quantize(), 0);
    bo_fail_alloc(0);
    memset(&g_seen, 0, sizeof g_seen);
    CU_ASSERT_EQUAL(run_quantize(), 0);
    CU_ASSERT_EQUAL(g_seen.errors, 0);
    CU_ASSERT(g_seen.others > 0);
    CU_ASSERT(bo_family_end() > 0); /* the injected ones counted as failures */
    bo_set_hooks(NULL);
}

/* The first allocations of every family's first case: each builder goes on without the memory
 * and its case is reported. Then, with nothing injected, every case of every family builds. */
static void test_every_family_builder(void)
{
    size_t nf = 0;
    const bo_family *f = bo_families(&nf);
    CU_ASSERT(nf >= 16);
    for (size_t i = 0; i < nf; i++)
        for (uint64_t k = 1; k <= 5; k++) {
            watch(select_failed);
            bo_fail_alloc(k);
            int rc = bo_family_run(f[i].name);
            bool reported = rc == 1 && g_seen.errors == 1 && g_seen.others == 0 &&
                            names_allocation(g_seen.why);
            if (!reported)
                printf("\n  family %s, allocation %llu: %d failure(s), %d error result(s)",
                       f[i].name, (unsigned long long)k, rc, g_seen.errors);
            CU_ASSERT_TRUE(reported);
            CU_ASSERT_TRUE(bo_ok());
        }
    bo_fail_alloc(0);
    watch(select_none);
    for (size_t i = 0; i < nf; i++)
        CU_ASSERT_EQUAL(bo_family_run(f[i].name), 0);
    CU_ASSERT_EQUAL(g_seen.errors + g_seen.others, 0);
    CU_ASSERT_TRUE(bo_ok());
    bo_set_hooks(NULL);
}

/* Cases asking for more than the harness holds, or with no expected output: ERRORs that say
 * so, where the harness used to abort. */
static void test_malformed_cases(void)
{
    watch(NULL);
    bo_family_begin("malformed");
    bo_rng_seed(&rng, 8);
    bo_case c;
    build_quantize(&c);
    for (int i = 0; i < BST_MAX_INPUTS; i++) {
        const int64_t s[] = {4};
        bo_tensor_contig(bo_case_input(&c), BST_DTYPE_F32, 1, s);
    }
    CU_ASSERT_EQUAL(bo_run(&c), 1);
    CU_ASSERT_EQUAL(g_seen.errors, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_seen.why, "inputs"));
    printf("\n  too many inputs: %s", g_seen.why);

    memset(&g_seen, 0, sizeof g_seen);
    build_quantize(&c);
    for (int i = 0; i < BST_MAX_ATTRS; i++)
        bo_case_attr_float(&c, BST_ATTR_SCALE, 1.0);
    CU_ASSERT_EQUAL(bo_run(&c), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_seen.why, "attributes"));

    memset(&g_seen, 0, sizeof g_seen);
    bo_case_init(&c, BST_OP_SCALE, "harness test");
    const int64_t s[] = {4, 4};
    bo_tensor_contig(bo_case_input(&c), BST_DTYPE_F32, 2, s);
    bo_case_output(&c, BST_DTYPE_F32, 2, s);
    CU_ASSERT_EQUAL(bo_run(&c), 1); /* no bo_case_set_ref */
    CU_ASSERT_PTR_NOT_NULL(strstr(g_seen.why, "expected output"));

    /* A q8_0 tensor whose rows are not whole blocks. */
    memset(&g_seen, 0, sizeof g_seen);
    bo_case_init(&c, BST_OP_QUANTIZE, "harness test");
    const int64_t odd[] = {2, 48};
    bo_tensor_contig(bo_case_input(&c), BST_DTYPE_Q8_0, 2, odd);
    CU_ASSERT_EQUAL(bo_run(&c), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_seen.why, "partial block"));
    CU_ASSERT_TRUE(bo_ok());
    CU_ASSERT_EQUAL(bo_family_end(), 4);
    bo_set_hooks(NULL);
}

/* bo_selftest with a failing allocation: -1 and the reason printed, never a crash. */
static void test_selftest_alloc_failure(void)
{
    uint32_t dev = bo_cpu_device();
    CU_ASSERT_NOT_EQUAL_FATAL(dev, UINT32_MAX);
    bo_rng_seed(&rng, 9);
    bo_case c;
    build_quantize(&c);
    uint64_t before = bo_alloc_count();
    CU_ASSERT_EQUAL(bo_selftest(&c, dev), 0);
    uint64_t per_test = bo_alloc_count() - before;
    int wrong = 0;
    for (uint64_t k = 1; k <= per_test; k++) {
        build_quantize(&c);
        bo_fail_alloc(k);
        wrong += bo_selftest(&c, dev) != -1;
        CU_ASSERT_TRUE(bo_ok());
    }
    bo_fail_alloc(0);
    printf("\n  selftest: %llu allocations, each failing in turn: %d not reported",
           (unsigned long long)per_test, wrong);
    CU_ASSERT(per_test >= 5);
    CU_ASSERT_EQUAL(wrong, 0);
}

static void test_shutdown(void) { bo_shutdown(); }

int main(void)
{
    setenv("BASTION_BACKENDS", "cpu", 1);
    bo_use_context_devices();
    static const bst_test_case cases[] = {
        {"each allocation of a case fails in turn", test_each_allocation_fails},
        {"every family's builder survives a failed allocation", test_every_family_builder},
        {"malformed cases are errors", test_malformed_cases},
        {"selftest under a failed allocation", test_selftest_alloc_failure},
        {"shutdown", test_shutdown},
        {NULL, NULL},
    };
    return bst_test_run_suite("conformance_harness", cases);
}
