/*
 * The plugins' cache-file plumbing (see bst_backend_cache.h).
 */
#include "bst_backend_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p of path[from..], mode 0700. Components past `from` (ours) must belong to this user
 * and lose group/other permissions; the components up to `from` (the user's base) are only
 * created when missing. */
static bool make_dirs(char *path, size_t from)
{
    for (size_t i = from;; i++) {
        char c = path[i];
        if ((c != '/' && c != '\0') || i == 0)
            continue;
        path[i] = '\0';
        bool ok = mkdir(path, 0700) == 0 || errno == EEXIST;
        struct stat sb;
        if (ok)
            ok = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
        if (ok && i > from && sb.st_uid != geteuid())
            ok = false;
        if (ok && i > from && (sb.st_mode & 077) != 0)
            ok = chmod(path, 0700) == 0;
        path[i] = c;
        if (!ok || c == '\0')
            return ok;
    }
}

bool bstc_cache_dir(const char *sub, char *out, size_t cap)
{
    const char *own = secure_getenv("BASTION_CACHE_DIR");
    const char *xdg = secure_getenv("XDG_CACHE_HOME"), *home = secure_getenv("HOME");
    int n;
    size_t from;
    if (own && own[0]) {
        n = snprintf(out, cap, "%s/%s", own, sub);
        from = strlen(own);
    } else if (xdg && xdg[0] == '/') {
        n = snprintf(out, cap, "%s/bastion/%s", xdg, sub);
        from = strlen(xdg);
    } else if (home && home[0] == '/') {
        n = snprintf(out, cap, "%s/.cache/bastion/%s", home, sub);
        from = strlen(home) + strlen("/.cache");
    } else {
        return false;
    }
    if (n < 0 || (size_t)n >= cap)
        return false;
    return make_dirs(out, from);
}

void bstc_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void bstc_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t bstc_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t bstc_get_u64(const uint8_t *p)
{
    return bstc_get_u32(p) | (uint64_t)bstc_get_u32(p + 4) << 32;
}

bool bstc_read_all(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        p += got;
        n -= (size_t)got;
    }
    return true;
}

bool bstc_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return false;
        p += put;
        n -= (size_t)put;
    }
    return true;
}

bool bstc_write_file_atomic(const char *path, const void *head, size_t head_size,
                            const void *body, size_t body_size)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return false;
    }
    int fd = mkstemp(tmp); /* mode 0600, a name nobody else holds */
    if (fd < 0)
        return false;
    bool ok = bstc_write_all(fd, head, head_size) && bstc_write_all(fd, body, body_size);
    int err = ok ? 0 : errno;
    if (close(fd) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        (void)unlink(tmp);
        errno = err;
    }
    return ok;
}
