/*
 * tests/front_device.h — a second device on the CPU for placement tests: a device put in front of
 * a context's CPU device that runs everything the CPU runs except the ops it declines, so a
 * test can see work split across two devices (and copies between them) on a machine with one.
 */
#ifndef BASTION_TESTS_FRONT_DEVICE_H
#define BASTION_TESTS_FRONT_DEVICE_H

#include "runtime/runtime.h"

/* Puts a device named `name` in front of ctx's first device, which must be the CPU's: a plugin
 * record sharing the CPU plugin's table (so the context releases it as a plugin that was never
 * loaded) except query, which offers no variant for the ops of `declined` (ended by
 * BST_OP_COUNT; NULL declines none) and asks the CPU's query for the rest. The query keeps
 * `declined` and the CPU's query in statics: one front device per process at a time. */
void bst_test_front_device(bst_context *ctx, const char *name, const uint32_t *declined);

#endif /* BASTION_TESTS_FRONT_DEVICE_H */
