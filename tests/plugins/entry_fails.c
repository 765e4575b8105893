/*
 * tests/plugins/entry_fails.c — a plugin whose driver does not initialize: the entry reports the
 * failure through host->set_error and returns BST_ERR_BACKEND. The loader must keep the message.
 */
#include <bastion/backend.h>

BST_BACKEND_ENTRY
{
    (void)host_abi;
    (void)out;
    host->set_error("entry_fails: driver initialization failed (simulated)");
    return BST_ERR_BACKEND;
}
