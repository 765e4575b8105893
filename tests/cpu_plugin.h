/*
 * tests/cpu_plugin.h — the CPU plugin for the suites that drive its ABI directly (test_cpu_backend,
 * test_cpu_hosts): loaded once as the runtime loads it (dlopen of
 * $BASTION_BACKEND_PATH/libbst-backend-cpu.so, entry called with the real host service table),
 * contiguous descriptors, and one-node partitions compiled and run on its device.
 */
#ifndef BASTION_TESTS_CPU_PLUGIN_H
#define BASTION_TESTS_CPU_PLUGIN_H

#include <bastion/backend.h>

#include <CUnit/CUnit.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>

extern bst_backend_entry_fn cpu_entry; /* the plugin's entry point, once loaded */
extern bst_backend_api cpu_api;
extern void *cpu_dev; /* its device 0 */

/* Loads the plugin and opens its device 0 (once); false if either fails. */
bool load_plugin(void);
#define NEED_PLUGIN() CU_ASSERT_TRUE_FATAL(load_plugin())

/* Bytes per block of dtype t (i32 and i8 included); *out_bs, if given, gets its block size. */
uint32_t elem_bytes(bst_dtype t, uint32_t *out_bs);
/* A contiguous row-major descriptor of dtype t (binding 0, offset 0). */
bst_tensor_desc mk(bst_dtype t, uint32_t rank, const int64_t *shape);
/* Bytes from a descriptor's first byte to the end of its last element. */
size_t span(const bst_tensor_desc *d);

#define GUARD 64

/* One node; input i in binding i, output in binding n_in (with GUARD bytes of 0xAB after it,
 * checked). `out` receives span(output) bytes; it also seeds the output buffer (set_rows). */
typedef struct one_node {
    bst_op op;
    uint32_t n_in;
    bst_tensor_desc in[4];
    const void *data[4];
    bst_tensor_desc out;
    uint32_t n_attrs;
    bst_attr attrs[4];
    const bst_run_params *params;
    bool out_aliases_in0; /* set_rows / views: output lives in input 0's buffer */
    uint32_t variant;     /* index into the node's query list (0: the first offered) */
} one_node;

/* Compiles c as a one-node partition (bindings set as above). */
bst_status compile_one(one_node *c, void **out_exe);
/* Compiles and runs c on fresh buffers, reads its output into out and checks the guard. */
bst_status run_one(one_node *c, void *out);

#define ASSERT_NEAR(a, b, tol) CU_ASSERT_TRUE(fabs((double)(a) - (double)(b)) <= (tol))

#endif /* BASTION_TESTS_CPU_PLUGIN_H */
