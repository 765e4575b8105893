/*
 * tests/plugins/abi_new.c — a plugin that needs a newer host: it speaks only ABI version
 * BST_ABI_VERSION + 1 and, as the negotiation rules ask, refuses with BST_ERR_ABI before
 * allocating anything.
 */
#include <bastion/backend.h>

#define NEEDED (BST_ABI_VERSION + 1u)

BST_BACKEND_ENTRY
{
    (void)out;
    if (host_abi < NEEDED) {
        host->set_error("abi_new needs ABI version %u; the host offers %u", NEEDED, host_abi);
        return BST_ERR_ABI;
    }
    host->set_error("abi_new: unexpected host ABI %u", host_abi);
    return BST_ERR_BACKEND;
}
