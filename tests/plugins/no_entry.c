/*
 * tests/plugins/no_entry.c — a shared object named like a plugin that exports no
 * bst_backend_entry (here a misspelled one, a classic vendor mistake).
 */
#include <bastion/backend.h>

BST_PLUGIN_EXPORT bst_status bst_backend_entry_v0(const bst_host_api *host, uint32_t host_abi,
                                                  bst_backend_api *out);

BST_PLUGIN_EXPORT bst_status bst_backend_entry_v0(const bst_host_api *host, uint32_t host_abi,
                                                  bst_backend_api *out)
{
    (void)host;
    (void)host_abi;
    (void)out;
    return BST_ERR_BACKEND;
}
