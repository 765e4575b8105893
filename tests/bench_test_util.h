/*
 * tests/bench_test_util.h — what the `bastion bench` suites share: running the command into a
 * file of this run's temporary directory, reading its JSON, the consistency checks every bench
 * ops result gets, and a bench document's report or comparison as a string. The suites:
 * test_bench.c (bench ops and the schema), test_bench_docs.c (reports and comparisons on
 * hand-written documents), test_bench_model.c (bench model on the default model); the harness's
 * parts alone are in test_bench_units.c.
 */
#ifndef BASTION_TESTS_BENCH_TEST_UTIL_H
#define BASTION_TESTS_BENCH_TEST_UTIL_H

#include "bench.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* |a - b| within rel of the larger (plus 1e-12). */
bool near(double a, double b, double rel);

/* A path in this run's temporary directory (made on first use); the caller owns `path`. */
const char *tmp_path(const char *name, char *path, size_t size);
/* Removes this run's temporary directory (a suite's last case). */
void bench_test_cleanup(void);

/* Runs $BASTION_BIN with args (NULL-terminated), stdout into `out_file` (or /dev/null), stderr
 * inherited. Returns the exit status, -1 if it did not exit normally. */
int run_bastion(const char *out_file, const char *const *args);
#define RUN(out, ...) run_bastion(out, (const char *const[]){__VA_ARGS__, NULL})

/* o's member `key` as a number (NaN when absent), or as an object (NULL). */
double jnum(json_object *o, const char *key);
json_object *jget(json_object *o, const char *key);

/* A timing object's stats agree with its samples_ns. */
void check_timing_consistent(json_object *t);
/* The numbers of one ok bench ops result agree with each other and with the baselines. */
void check_consistency(json_object *root, json_object *r, double bw_gbs);

/* d's report in format f, or (b not NULL) the comparison of d with b, as a string to free;
 * NULL when it fails. */
char *doc_text(const bench_doc *d, bench_format f, const bench_doc *b, double threshold,
               bench_compare_summary *sum);

/* Whether this build has the npu-sim plugin (a note when not). */
bool have_npu_sim(void);
/* Runs `bastion` with BASTION_NPU_SIM_DEVICE=chip; restores the variable. */
int run_on_chip(const char *chip, const char *out, const char *const *args);

#endif /* BASTION_TESTS_BENCH_TEST_UTIL_H */
