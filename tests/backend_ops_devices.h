/*
 * tests/backend_ops_devices.h — the op conformance harness's device source for tests: every
 * device of a runtime context created with default options (BASTION_BACKEND_PATH and
 * BASTION_BACKENDS apply). Call before the first harness use.
 */
#ifndef BASTION_TESTS_BACKEND_OPS_DEVICES_H
#define BASTION_TESTS_BACKEND_OPS_DEVICES_H

void bo_use_context_devices(void);

#endif /* BASTION_TESTS_BACKEND_OPS_DEVICES_H */
