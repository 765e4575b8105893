/*
 * runtime/loader.c — finds backend plugins, decides which to load, loads them and records why
 * each one that did not load was skipped.
 *
 * Every file found ends in exactly one bst_plugin_state with a detail a person can act on (the
 * dlerror() text, the missing function, the versions that did not overlap): vendors debug their
 * plugin from `bastion backends`, not from log text. Loading is defensive because a plugin is
 * foreign code: its answers are checked (struct sizes, versions, required functions, device
 * counts, unterminated strings) before the host relies on them.
 *
 * Search order: the embedder's directories, then BASTION_BACKEND_PATH (secure_getenv, so a
 * setuid program ignores it), then <directory of the object holding this code>/bastion/backends
 * — libbastion.so's own directory, found with dladdr, which is the same relative layout in the
 * build tree and in an install, so no path is baked in. Only absolute directories are searched:
 * never the current directory.
 */
#include "runtime/loader.h"

#include "graph/status.h"

#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef BST_BACKEND_RELDIR
#define BST_BACKEND_RELDIR "bastion/backends"
#endif

#define FILE_PREFIX "libbst-backend-"
#define FILE_SUFFIX ".so"
#define NAME_MAX_LEN 64
#define MAX_DEVICES_PER_PLUGIN 256u
#define MAX_PLUGINS 4096u

/* Any object in this library: dladdr on it names the file this code was loaded from. */
static const char self_anchor;

/* ---------- small owned-string helpers ---------- */

typedef struct strlist {
    char **items;
    size_t n, cap;
} strlist;

static bool strlist_push(strlist *l, char *owned)
{
    if (!owned)
        return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            free(owned);
            return false;
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = owned;
    return true;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    *l = (strlist){0};
}

/* Position of `s` in the list, or -1. */
static long strlist_find(const strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], s) == 0)
            return (long)i;
    return -1;
}

static char *vdup_printf(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *dup_printf(const char *fmt, ...) BST_PRINTF(1, 2);
static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vdup_printf(fmt, ap);
    va_end(ap);
    return s;
}

static bst_status oom(void) { return bsti_fail(BST_ERR_OUT_OF_MEMORY, "out of memory loading plugins"); }

/* ---------- search directories ---------- */

/* Appends the absolute directories of a ':'-separated list, resolved, without repeats. */
static bst_status add_dirs(strlist *dirs, const char *list, const char *origin)
{
    if (!list)
        return BST_OK;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ":");
        if (len > 0) {
            char *entry = strndup(p, len);
            if (!entry)
                return oom();
            if (entry[0] != '/') {
                /* A relative entry would search wherever the process happens to run. */
                bsti_log(BST_LOG_WARN, "ignoring relative plugin directory '%s' in %s: only "
                         "absolute paths are searched", entry, origin);
            } else {
                char *real = realpath(entry, NULL);
                if (!real) {
                    bsti_log(BST_LOG_DEBUG, "plugin directory '%s' (%s) is not usable", entry,
                             origin);
                } else if (strlist_find(dirs, real) >= 0) {
                    free(real);
                } else if (!strlist_push(dirs, real)) {
                    free(entry);
                    return oom();
                }
            }
            free(entry);
        }
        p += len;
        if (*p == ':')
            p++;
    }
    return BST_OK;
}

/* <dir of the object holding this code>/bastion/backends, or NULL when that is unknown. */
static bst_status default_dir(char **out_dir)
{
    *out_dir = NULL;
    Dl_info info;
    if (!dladdr(&self_anchor, &info) || !info.dli_fname || info.dli_fname[0] != '/') {
        /* Statically linked into a program started by a relative name: no reliable directory,
         * and guessing would mean the current directory. */
        bsti_log(BST_LOG_DEBUG, "no default plugin directory: cannot locate the Bastion library");
        return BST_OK;
    }
    char *real = realpath(info.dli_fname, NULL);
    if (!real)
        return BST_OK;
    char *slash = strrchr(real, '/');
    if (slash)
        *slash = '\0';
    *out_dir = dup_printf("%s/%s", real, BST_BACKEND_RELDIR);
    free(real);
    return *out_dir ? BST_OK : oom();
}

/* ---------- candidates ---------- */

typedef struct candidate {
    bsti_plugin rec;
    bst_device_info *infos; /* rec.n_devices of them once loaded */
    size_t found;           /* discovery order */
    uint32_t rank;          /* sort key; UINT32_MAX for plugins that will not be loaded */
    bool selected;
} candidate;

typedef struct candlist {
    candidate *items;
    size_t n, cap;
} candlist;

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Backend name from a file name `libbst-backend-<name>.so`, or NULL if it is not one. */
static char *name_from_file(const char *file)
{
    size_t len = strlen(file), pre = strlen(FILE_PREFIX), suf = strlen(FILE_SUFFIX);
    if (len <= pre + suf || strncmp(file, FILE_PREFIX, pre) != 0 ||
        strcmp(file + len - suf, FILE_SUFFIX) != 0)
        return NULL;
    if (!valid_name(file + pre, len - pre - suf)) {
        bsti_log(BST_LOG_DEBUG, "ignoring '%s': backend names use letters, digits, '_' and '-'",
                 file);
        return NULL;
    }
    return strndup(file + pre, len - pre - suf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bst_status add_candidate(candlist *l, char *name, char *path)
{
    if (l->n >= MAX_PLUGINS) {
        free(name);
        free(path);
        return BST_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        candidate *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            free(name);
            free(path);
            return oom();
        }
        l->items = grown;
        l->cap = cap;
    }
    candidate *c = &l->items[l->n];
    *c = (candidate){0};
    c->rec.name = name;
    c->rec.path = path;
    c->rec.version = strdup("");
    c->rec.detail = strdup("");
    c->rec.priority = UINT32_MAX;
    c->found = l->n;
    c->rank = UINT32_MAX;
    l->n++;
    if (!c->rec.version || !c->rec.detail)
        return oom();
    return BST_OK;
}

/* Adds every libbst-backend-*.so regular file of `dir`, in name order (readdir's order is
 * arbitrary, and priority ties must not depend on it). */
static bst_status scan_dir(const char *dir, candlist *out)
{
    DIR *d = opendir(dir);
    if (!d) {
        bsti_log(BST_LOG_DEBUG, "cannot open plugin directory '%s'", dir);
        return BST_OK;
    }
    strlist files = {0};
    bst_status st = BST_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > strlen(FILE_PREFIX) && strncmp(e->d_name, FILE_PREFIX, strlen(FILE_PREFIX)) == 0 &&
            !strlist_push(&files, strdup(e->d_name))) {
            st = oom();
            break;
        }
    }
    closedir(d);
    if (files.n > 1)
        qsort(files.items, files.n, sizeof *files.items, cmp_str);
    for (size_t i = 0; i < files.n && st == BST_OK; i++) {
        char *name = name_from_file(files.items[i]);
        if (!name)
            continue;
        char *path = dup_printf("%s/%s", dir, files.items[i]);
        if (!path) {
            free(name);
            st = oom();
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            bsti_log(BST_LOG_DEBUG, "ignoring '%s': not a regular file", path);
            free(name);
            free(path);
            continue;
        }
        st = add_candidate(out, name, path);
    }
    strlist_free(&files);
    return st;
}

/* Comma-separated names, trimmed, empty entries and repeats dropped. */
static bst_status parse_names(const char *text, strlist *out)
{
    const char *p = text;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        const char *s = p, *end = p + len;
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > s) {
            char *name = strndup(s, (size_t)(end - s));
            if (!name)
                return oom();
            if (strlist_find(out, name) >= 0)
                free(name);
            else if (!strlist_push(out, name))
                return oom();
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return BST_OK;
}

/* Priority without a selection list: GPUs and accelerator libraries first, vendor plugins
 * (unknown names) next, and the CPU reference backend last, as the fallback. */
static uint32_t default_rank(const char *name)
{
    if (strcmp(name, "vulkan") == 0)
        return 0;
    if (strcmp(name, "opencl") == 0)
        return 1;
    if (strcmp(name, "onednn") == 0)
        return 2;
    if (strcmp(name, "cpu") == 0)
        return 4;
    return 3;
}

static bool by_list; /* qsort has no user pointer; set by sort_candidates (loader runs locked) */

static int cmp_candidate(const void *pa, const void *pb)
{
    const candidate *a = pa, *b = pb;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->rank != UINT32_MAX && !by_list) {
        int c = strcmp(a->rec.name, b->rec.name);
        if (c)
            return c;
    }
    return a->found < b->found ? -1 : a->found > b->found;
}

static bst_status set_state(candidate *c, bst_plugin_state state, const char *fmt, ...)
    BST_PRINTF(3, 4);
static bst_status set_state(candidate *c, bst_plugin_state state, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *detail = vdup_printf(fmt, ap);
    va_end(ap);
    c->rec.state = state;
    if (!detail)
        return oom();
    free(c->rec.detail);
    c->rec.detail = detail;
    return BST_OK;
}

/* Decides, before anything is opened, which plugins will be loaded: duplicates, the disable
 * list, the selection list (or the default rule) — so unselected plugins are never dlopen'ed. */
static bst_status select_candidates(candlist *cands, const strlist *wanted, const char *wanted_src,
                                    const strlist *disabled)
{
    for (size_t i = 0; i < cands->n; i++) {
        candidate *c = &cands->items[i];
        bst_status st = BST_OK;
        size_t first = i;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cands->items[j].rec.name, c->rec.name) == 0) {
                first = j;
                break;
            }
        long pos = strlist_find(wanted, c->rec.name);
        if (first != i) {
            st = set_state(c, BST_PLUGIN_DUPLICATE, "backend '%s' was already found at %s",
                           c->rec.name, cands->items[first].rec.path);
        } else if (strlist_find(disabled, c->rec.name) >= 0) {
            st = set_state(c, BST_PLUGIN_NOT_SELECTED, "disabled by BASTION_BACKENDS_DISABLE");
        } else if (wanted->n > 0 && pos < 0) {
            st = set_state(c, BST_PLUGIN_NOT_SELECTED, "not in %s", wanted_src);
        } else if (wanted->n == 0 && strcmp(c->rec.name, "npu-sim") == 0) {
            st = set_state(c, BST_PLUGIN_NOT_SELECTED,
                           "npu-sim loads only when named in the backend list");
        } else {
            c->selected = true;
            c->rank = wanted->n > 0 ? (uint32_t)pos : default_rank(c->rec.name);
        }
        if (st != BST_OK)
            return st;
    }
    for (size_t k = 0; k < wanted->n; k++) {
        bool found = false;
        for (size_t i = 0; i < cands->n && !found; i++)
            found = strcmp(cands->items[i].rec.name, wanted->items[k]) == 0;
        if (!found)
            bsti_log(BST_LOG_WARN, "backend '%s' was requested but no " FILE_PREFIX "%s" FILE_SUFFIX
                     " was found in the plugin path", wanted->items[k], wanted->items[k]);
    }
    return BST_OK;
}

/* ---------- loading one plugin ---------- */

typedef struct api_field {
    size_t offset;
    const char *name;
} api_field;

#define REQUIRED(f) {offsetof(bst_backend_api, f), #f}
static const api_field required_fields[] = {
    REQUIRED(enumerate),    REQUIRED(device_open),     REQUIRED(query),
    REQUIRED(buffer_alloc), REQUIRED(buffer_free),     REQUIRED(buffer_write),
    REQUIRED(buffer_read),  REQUIRED(compile),         REQUIRED(executable_free),
    REQUIRED(execute),
};
#undef REQUIRED

/* Smallest bst_backend_api a plugin may report: through the last required function. Fields past
 * it (later optional ones, and everything a v2+ header appends) read as NULL when absent. */
static size_t required_api_size(void)
{
    size_t end = 0;
    for (size_t i = 0; i < sizeof required_fields / sizeof required_fields[0]; i++) {
        size_t e = required_fields[i].offset + sizeof(void (*)(void));
        if (e > end)
            end = e;
    }
    return end;
}

static bool field_is_null(const bst_backend_api *api, size_t offset)
{
    void (*fn)(void);
    memcpy(&fn, (const char *)api + offset, sizeof fn);
    return fn == NULL;
}

static const char *status_text(bst_status st)
{
    return (unsigned)st < BST_STATUS_COUNT ? bst_status_name(st) : "an unknown status";
}

/* The plugin's own message for the status it just returned, or a placeholder. */
static const char *plugin_message(void)
{
    const char *m = bst_last_error();
    return m[0] ? m : "(the plugin gave no message)";
}

static void release_api(candidate *c)
{
    if (c->rec.api.destroy)
        c->rec.api.destroy(c->rec.api.ctx);
    memset(&c->rec.api, 0, sizeof c->rec.api);
}

static void unload(candidate *c)
{
    if (c->rec.handle)
        dlclose(c->rec.handle);
    c->rec.handle = NULL;
}

/* Calls the entry and checks what it answered. On any mismatch the plugin's context is released
 * and the module closed; the state says why. */
static bst_status negotiate(candidate *c, bst_backend_entry_fn entry)
{
    bst_backend_api *api = &c->rec.api;
    memset(api, 0, sizeof *api);
    api->struct_size = sizeof *api;
    bsti_fail(BST_OK, "%s", ""); /* so a message read afterwards is the plugin's */
    bst_status st = entry(bsti_host_api(), BST_ABI_VERSION, api);
    if (st == BST_ERR_ABI) {
        memset(api, 0, sizeof *api); /* the plugin allocated nothing: nothing to destroy */
        return set_state(c, BST_PLUGIN_ABI_MISMATCH,
                         "the plugin supports no ABI version this host speaks (%u..%u): %s",
                         BST_ABI_VERSION_MIN, BST_ABI_VERSION, plugin_message());
    }
    if (st != BST_OK) {
        memset(api, 0, sizeof *api);
        return set_state(c, BST_PLUGIN_ENTRY_FAILED, "entry returned %s: %s", status_text(st),
                         plugin_message());
    }

    /* Fields the plugin did not know about are NULL, whatever is in the memory. */
    size_t reported = api->struct_size;
    size_t known = reported < sizeof *api ? reported : sizeof *api;
    if (known < offsetof(bst_backend_api, destroy) + sizeof api->destroy) {
        /* Too small to even name its destroy function: nothing can be released safely. */
        memset(api, 0, sizeof *api);
        return set_state(c, BST_PLUGIN_ABI_MISMATCH,
                         "its bst_backend_api struct_size is %zu bytes; version 1 needs %zu",
                         reported, required_api_size());
    }
    memset((char *)api + known, 0, sizeof *api - known);

    bst_status rc = BST_OK;
    bool mismatch = true;
    if (api->abi_version < BST_ABI_VERSION_MIN || api->abi_version > BST_ABI_VERSION) {
        rc = set_state(c, BST_PLUGIN_ABI_MISMATCH,
                       "the plugin answered ABI version %u; this host supports %u..%u",
                       api->abi_version, BST_ABI_VERSION_MIN, BST_ABI_VERSION);
    } else if (known < required_api_size()) {
        const char *missing = "?";
        for (size_t i = 0; i < sizeof required_fields / sizeof required_fields[0]; i++)
            if (required_fields[i].offset + sizeof(void (*)(void)) > known) {
                missing = required_fields[i].name;
                break;
            }
        rc = set_state(c, BST_PLUGIN_ABI_MISMATCH,
                       "its bst_backend_api struct_size is %zu bytes, smaller than version 1's "
                       "%zu: it lacks the required function %s",
                       reported, required_api_size(), missing);
    } else {
        mismatch = false;
        for (size_t i = 0; i < sizeof required_fields / sizeof required_fields[0]; i++)
            if (field_is_null(api, required_fields[i].offset)) {
                rc = set_state(c, BST_PLUGIN_ABI_MISMATCH, "required function %s is NULL",
                               required_fields[i].name);
                mismatch = true;
                break;
            }
    }
    if (mismatch) {
        release_api(c);
        return rc;
    }
    /* A plugin that answered version 1 knows nothing of version 2's fields, whatever size it
     * reported, ...*/
    if (api->abi_version < 2)
        memset((char *)api + offsetof(bst_backend_api, event_create), 0,
               sizeof *api - offsetof(bst_backend_api, event_create));
    else if (api->abi_version < 3) /* nor one that answered 2 of version 3's */
        memset((char *)api + offsetof(bst_backend_api, node_timing), 0,
               sizeof *api - offsetof(bst_backend_api, node_timing));
    c->rec.abi_version = api->abi_version;
    if (!api->name || strcmp(api->name, c->rec.name) != 0)
        bsti_log(BST_LOG_WARN, "plugin %s calls itself '%s'; it is known as '%s' (its file name)",
                 c->rec.path, api->name ? api->name : "(null)", c->rec.name);
    char *version = strdup(api->version ? api->version : "");
    if (!version) {
        release_api(c);
        return oom();
    }
    free(c->rec.version);
    c->rec.version = version;
    c->rec.state = BST_PLUGIN_LOADED; /* provisional: enumerate decides */
    return BST_OK;
}

static void prepare_infos(bst_device_info *infos, uint32_t n)
{
    memset(infos, 0, (size_t)n * sizeof *infos);
    for (uint32_t i = 0; i < n; i++)
        infos[i].struct_size = sizeof *infos;
}

/* Makes an info written by the plugin safe to read: fields past the size it wrote are zero and
 * its strings are terminated. */
static void sanitize_info(bst_device_info *info)
{
    size_t written = info->struct_size;
    if (written >= offsetof(bst_device_info, name) && written < sizeof *info)
        memset((char *)info + written, 0, sizeof *info - written);
    info->struct_size = sizeof *info;
    info->name[sizeof info->name - 1] = '\0';
    info->vendor[sizeof info->vendor - 1] = '\0';
    info->driver_version[sizeof info->driver_version - 1] = '\0';
}

static bst_status enumerate(candidate *c)
{
    bst_backend_api *api = &c->rec.api;
    uint32_t cap = 8, count = 0;
    bst_device_info *infos = NULL;
    /* The count may change between calls (hot-plug); a few rounds settle it. */
    for (int round = 0; round < 4; round++) {
        bst_device_info *grown = realloc(infos, (size_t)cap * sizeof *infos);
        if (!grown) {
            free(infos);
            return oom();
        }
        infos = grown;
        prepare_infos(infos, cap);
        count = 0;
        bsti_fail(BST_OK, "%s", "");
        bst_status st = api->enumerate(api->ctx, infos, sizeof *infos, cap, &count);
        if (st != BST_OK) {
            free(infos);
            return set_state(c, BST_PLUGIN_ENTRY_FAILED, "enumerate returned %s: %s",
                             status_text(st), plugin_message());
        }
        if (count <= cap)
            break;
        if (count > MAX_DEVICES_PER_PLUGIN) {
            bsti_log(BST_LOG_WARN, "plugin %s reports %u devices; using the first %u",
                     c->rec.path, count, MAX_DEVICES_PER_PLUGIN);
            count = MAX_DEVICES_PER_PLUGIN;
        }
        if (count <= cap)
            break;
        cap = count;
    }
    if (count > cap)
        count = cap;
    if (count == 0) {
        free(infos);
        /* A plugin may say why (e.g. "no OpenCL device (no platform ...)"): keep it. */
        const char *why = bst_last_error();
        return set_state(c, BST_PLUGIN_NO_DEVICE, "no device%s%s", why[0] ? ": " : "", why);
    }
    for (uint32_t i = 0; i < count; i++)
        sanitize_info(&infos[i]);
    c->infos = infos;
    c->rec.n_devices = count;
    return BST_OK;
}

static bst_status load_one(candidate *c)
{
    dlerror();
    c->rec.handle = dlopen(c->rec.path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!c->rec.handle) {
        const char *err = dlerror();
        return set_state(c, BST_PLUGIN_NOT_LOADABLE, "%s", err ? err : "dlopen failed");
    }
    dlerror();
    void *sym = dlsym(c->rec.handle, BST_BACKEND_ENTRY_SYMBOL);
    if (!sym) {
        const char *err = dlerror();
        /* Formatted before dlclose, which frees dlerror()'s text. */
        bst_status st = set_state(c, BST_PLUGIN_NO_ENTRY, "no exported symbol "
                                  BST_BACKEND_ENTRY_SYMBOL " (%s)", err ? err : "symbol is NULL");
        unload(c);
        return st;
    }
    bst_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* POSIX guarantees object and function pointers match */

    bst_status st = negotiate(c, entry);
    if (st != BST_OK || c->rec.state != BST_PLUGIN_LOADED) {
        unload(c);
        return st;
    }
    st = enumerate(c);
    if (st != BST_OK || c->rec.state == BST_PLUGIN_ENTRY_FAILED) {
        release_api(c);
        unload(c);
    }
    /* NO_DEVICE keeps its context until the context ends: it is a normal state, and releasing
     * a driver stack early buys nothing once its code is mapped for good. */
    return st;
}

/* Releases what a candidate holds (an un-moved record). */
static void candidate_free(candidate *c)
{
    if (c->rec.state == BST_PLUGIN_LOADED || c->rec.state == BST_PLUGIN_NO_DEVICE)
        release_api(c);
    unload(c);
    free(c->rec.name);
    free(c->rec.path);
    free(c->rec.version);
    free(c->rec.detail);
    free(c->infos);
}

static void log_outcome(const bsti_plugin *p)
{
    if (p->state == BST_PLUGIN_LOADED) {
        bsti_log(BST_LOG_DEBUG, "loaded backend %s %s (ABI %u, %u device%s) from %s", p->name,
                 p->version, p->abi_version, p->n_devices, p->n_devices == 1 ? "" : "s", p->path);
        return;
    }
    bst_log_level level = p->state == BST_PLUGIN_NO_DEVICE || p->state == BST_PLUGIN_NOT_SELECTED
                              ? BST_LOG_DEBUG
                              : BST_LOG_INFO;
    bsti_log(level, "skipped backend %s (%s): %s: %s", p->name, p->path,
             bst_plugin_state_name(p->state), p->detail);
}

/* Moves the sorted candidates into the context and lists the devices of the loaded ones. */
/* Without a selection list, real accelerators come first, then the CPU backend, then devices
 * that other plugins emulate on the CPU (PoCL's CPU device, Mesa's lavapipe): before anything is
 * measured, an emulated GPU is no reason to leave the native CPU kernels. */
static int device_class(const bsti_device *d)
{
    if (d->info.kind != BST_DEVICE_CPU)
        return 0;
    return strcmp(d->plugin->name, "cpu") == 0 ? 1 : 2;
}

static void order_devices(bsti_device *devices, size_t n)
{
    for (size_t i = 1; i < n; i++) { /* insertion sort: stable, n is tiny */
        bsti_device d = devices[i];
        size_t j = i;
        for (; j > 0 && device_class(&devices[j - 1]) > device_class(&d); j--)
            devices[j] = devices[j - 1];
        devices[j] = d;
    }
}

static bst_status publish(bst_context *ctx, candlist *cands)
{
    size_t n_dev = 0;
    for (size_t i = 0; i < cands->n; i++)
        if (cands->items[i].rec.state == BST_PLUGIN_LOADED)
            n_dev += cands->items[i].rec.n_devices;
    bsti_plugin *plugins = cands->n ? calloc(cands->n, sizeof *plugins) : NULL;
    bsti_device *devices = n_dev ? calloc(n_dev, sizeof *devices) : NULL;
    if ((cands->n && !plugins) || (n_dev && !devices)) {
        free(plugins);
        free(devices);
        return oom();
    }
    size_t d = 0;
    uint32_t priority = 0;
    for (size_t i = 0; i < cands->n; i++) {
        candidate *c = &cands->items[i];
        plugins[i] = c->rec;
        plugins[i].priority = c->selected ? priority++ : UINT32_MAX;
        if (c->rec.state == BST_PLUGIN_LOADED)
            for (uint32_t k = 0; k < c->rec.n_devices; k++) {
                devices[d] = (bsti_device){.plugin = &plugins[i], .index_in_plugin = k,
                                           .info = c->infos[k]};
                d++;
            }
        free(c->infos);
        c->infos = NULL;
        memset(&c->rec, 0, sizeof c->rec);
        log_outcome(&plugins[i]);
    }
    if (!by_list)
        order_devices(devices, n_dev);
    ctx->plugins = plugins;
    ctx->n_plugins = (uint32_t)cands->n;
    ctx->devices = devices;
    ctx->n_devices = (uint32_t)n_dev;
    cands->n = 0;
    return BST_OK;
}

static bst_status discover(candlist *cands, const char *plugin_paths)
{
    strlist dirs = {0};
    char *fallback = NULL;
    bst_status st = add_dirs(&dirs, plugin_paths, "the plugin path option");
    if (st == BST_OK)
        st = add_dirs(&dirs, secure_getenv("BASTION_BACKEND_PATH"), "BASTION_BACKEND_PATH");
    if (st == BST_OK)
        st = default_dir(&fallback);
    if (st == BST_OK && fallback)
        st = add_dirs(&dirs, fallback, "the library's directory");
    for (size_t i = 0; i < dirs.n && st == BST_OK; i++)
        st = scan_dir(dirs.items[i], cands);
    free(fallback);
    strlist_free(&dirs);
    return st;
}

static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;

bst_status bsti_loader_load(bst_context *ctx, const char *backends, const char *plugin_paths)
{
    candlist cands = {0};
    strlist wanted = {0}, disabled = {0};
    const char *wanted_src = "the requested backends";
    if (!backends || !backends[0]) {
        backends = secure_getenv("BASTION_BACKENDS");
        wanted_src = "BASTION_BACKENDS";
    }
    /* Serialized: the sort flag is static, and two contexts loading at once gain nothing. */
    pthread_mutex_lock(&loader_lock);
    bst_status st = parse_names(backends, &wanted);
    if (st == BST_OK)
        st = parse_names(secure_getenv("BASTION_BACKENDS_DISABLE"), &disabled);
    if (st == BST_OK)
        st = discover(&cands, plugin_paths);
    char *src = NULL;
    if (st == BST_OK && wanted.n > 0) {
        src = dup_printf("%s (%s)", wanted_src, backends);
        if (!src)
            st = oom();
    }
    if (st == BST_OK)
        st = select_candidates(&cands, &wanted, src ? src : wanted_src, &disabled);
    if (st == BST_OK) {
        by_list = wanted.n > 0;
        if (cands.n > 1)
            qsort(cands.items, cands.n, sizeof *cands.items, cmp_candidate);
        for (size_t i = 0; i < cands.n && st == BST_OK; i++)
            if (cands.items[i].selected)
                st = load_one(&cands.items[i]);
    }
    if (st == BST_OK)
        st = publish(ctx, &cands);
    pthread_mutex_unlock(&loader_lock);
    for (size_t i = 0; i < cands.n; i++)
        candidate_free(&cands.items[i]);
    free(cands.items);
    free(src);
    strlist_free(&wanted);
    strlist_free(&disabled);
    return st;
}

void bsti_loader_release(bst_context *ctx)
{
    for (uint32_t i = 0; i < ctx->n_devices; i++) {
        bsti_device *d = &ctx->devices[i];
        if (d->handle && d->plugin->api.device_close)
            d->plugin->api.device_close(d->handle);
        d->handle = NULL;
        free(d->open_error);
        d->open_error = NULL;
    }
    for (uint32_t i = 0; i < ctx->n_plugins; i++) {
        bsti_plugin *p = &ctx->plugins[i];
        if ((p->state == BST_PLUGIN_LOADED || p->state == BST_PLUGIN_NO_DEVICE) &&
            p->api.destroy)
            p->api.destroy(p->api.ctx);
        if (p->handle)
            dlclose(p->handle);
        free(p->name);
        free(p->path);
        free(p->version);
        free(p->detail);
    }
    free(ctx->devices);
    free(ctx->plugins);
    ctx->devices = NULL;
    ctx->plugins = NULL;
    ctx->n_devices = 0;
    ctx->n_plugins = 0;
}
