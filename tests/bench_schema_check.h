/*
 * tests/bench_schema_check.h — test_bench's independent validator of bench documents.
 */
#ifndef BASTION_TESTS_BENCH_SCHEMA_CHECK_H
#define BASTION_TESTS_BENCH_SCHEMA_CHECK_H

#include <json-c/json.h>

/* Number of problems in `root` as a `bastion.bench/1` document (0: valid); each is printed. */
int bench_schema_check(json_object *root);

#endif
