/*
 * tests/test_util.h — helpers shared by the CUnit suites: running a suite so that `main` fails
 * when any assertion failed (CU_basic_run_tests alone does not), and reading fixtures.
 */
#ifndef BASTION_TEST_UTIL_H
#define BASTION_TEST_UTIL_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stddef.h>

typedef struct bst_test_case {
    const char *name;
    void (*fn)(void);
} bst_test_case;

/* Registers `cases` (terminated by {NULL, NULL}) as one suite, runs it verbosely and returns the
 * process exit code: 0 only when every test ran and passed. With BASTION_TEST_CASES=SUBSTRING
 * set, only the cases whose name contains SUBSTRING are registered (none matching fails). */
int bst_test_run_suite(const char *suite_name, const bst_test_case *cases);

/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL on failure. */
char *bst_test_read_file(const char *path, size_t *out_size);

/* Path of a fixture file (tests/fixtures/NAME) in a static buffer. */
const char *bst_test_fixture(const char *name);

#endif /* BASTION_TEST_UTIL_H */
