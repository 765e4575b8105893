/*
 * tests/plugins/abi_old.c — a plugin from before version 1: it accepts the call but answers ABI
 * version 0, which is below the host's minimum. The host must refuse it (ABI_MISMATCH) on its
 * own, since the plugin did not.
 */
#include <bastion/backend.h>

BST_BACKEND_ENTRY
{
    (void)host;
    (void)host_abi;
    out->abi_version = 0;
    out->name = "abi_old";
    out->version = "0.9";
    return BST_OK;
}
