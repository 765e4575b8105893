/*
 * bst_backend_cache — the file plumbing of the plugins' on-disk caches (OpenCL program binaries,
 * the Vulkan pipeline cache, npu-sim command streams), written once.
 *
 * DESIGN.md treats every cache as untrusted input kept in 0700 directories. Each plugin keeps
 * its own file format and checks (what a valid entry is differs), and takes from here: where the
 * cache lives, little-endian header fields, whole reads and writes that survive EINTR, and the
 * write-aside-and-rename that keeps a reader from ever seeing half a file. Compiled into each
 * plugin with hidden visibility, like bst_backend_common.h; never part of what a vendor gets.
 * Thread-safe (no state); nothing here logs, allocates or aborts.
 */
#ifndef BASTION_BACKEND_CACHE_H
#define BASTION_BACKEND_CACHE_H

#include "bst_backend_common.h"

/* The cache directory of one plugin, <base>/<sub>, where base is $BASTION_CACHE_DIR, else
 * $XDG_CACHE_HOME/bastion (absolute only), else $HOME/.cache/bastion (read with secure_getenv).
 * Directories below the user's base that are missing are created with mode 0700; one that
 * exists but belongs to another user is refused, and one with group/other permissions is
 * tightened to 0700. The base itself is only created when missing, never changed. False when
 * there is no usable directory (the caller then runs without a cache). */
BSTC_API bool bstc_cache_dir(const char *sub, char *out, size_t cap);

/* Little-endian header fields. */
BSTC_API void bstc_put_u32(uint8_t *p, uint32_t v);
BSTC_API void bstc_put_u64(uint8_t *p, uint64_t v);
BSTC_API uint32_t bstc_get_u32(const uint8_t *p);
BSTC_API uint64_t bstc_get_u64(const uint8_t *p);

/* Exactly n bytes from / to fd, retrying after EINTR and short transfers; false on an error or
 * an early end of file. */
BSTC_API bool bstc_read_all(int fd, void *buf, size_t n);
BSTC_API bool bstc_write_all(int fd, const void *buf, size_t n);

/* Writes head then body (either may be empty) to a new temporary file next to `path` (mode
 * 0600) and renames it over `path`. False on failure, with errno from the failing call and the
 * temporary file removed. */
BSTC_API bool bstc_write_file_atomic(const char *path, const void *head, size_t head_size,
                                     const void *body, size_t body_size);

#endif /* BASTION_BACKEND_CACHE_H */
