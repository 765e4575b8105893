/*
 * runtime/loader.h — plugin discovery and loading, shared by runtime/loader.c (which finds,
 * selects and loads plugins) and runtime/context.c (the public context API on top of it).
 * Not installed.
 */
#ifndef BASTION_RUNTIME_LOADER_H
#define BASTION_RUNTIME_LOADER_H

#include "runtime/runtime.h"

/* Fills ctx->plugins (every plugin file found, each in exactly one state, sorted by selection
 * priority, unselected and duplicate ones last) and ctx->devices (devices of loaded plugins, in
 * that order). `backends` is the embedder's comma list or NULL (then BASTION_BACKENDS);
 * `plugin_paths` the embedder's ':'-separated directories or NULL. A plugin that fails to load
 * is a record, not an error: the only failure is running out of memory, after which
 * bsti_loader_release still cleans up whatever was loaded. */
BST_MUST_CHECK bst_status bsti_loader_load(bst_context *ctx, const char *backends,
                                           const char *plugin_paths);

/* Closes opened devices, releases plugin contexts and frees the records. The modules stay mapped
 * (RTLD_NODELETE): driver stacks do not survive being unloaded. */
void bsti_loader_release(bst_context *ctx);

#endif /* BASTION_RUNTIME_LOADER_H */
