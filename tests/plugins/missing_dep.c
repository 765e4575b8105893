/*
 * tests/plugins/missing_dep.c — a plugin linked against a library the dynamic loader cannot find
 * (as a Vulkan backend on a machine without libvulkan.so.1): dlopen itself fails, and the loader
 * must report dlerror()'s text naming the missing library.
 */
#include <bastion/backend.h>

int bst_missing_dep_helper(void);

BST_BACKEND_ENTRY
{
    (void)host_abi;
    (void)out;
    /* Referencing the helper keeps the DT_NEEDED entry even with --as-needed. */
    host->set_error("missing_dep: loaded although its dependency is missing (%d)",
                    bst_missing_dep_helper());
    return BST_ERR_BACKEND;
}
