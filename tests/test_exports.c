/*
 * tests/test_exports.c — the exported symbol sets: every backend module in BASTION_BACKEND_PATH
 * exports exactly bst_backend_entry, and libbastion.so exports only bst_* names (never the
 * internal bsti_* ones). Reads the ELF dynamic symbol table directly (<elf.h>), so the check does
 * not depend on binutils being installed or on its output format.
 */
#include "test_util.h"

#include <dirent.h>
#include <elf.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SYMS 4096

typedef struct symset {
    char *names[MAX_SYMS];
    unsigned n;
    bool truncated;
} symset;

static void symset_free(symset *s)
{
    for (unsigned i = 0; i < s->n; i++)
        free(s->names[i]);
    s->n = 0;
}

static bool exported_kind(unsigned bind, unsigned type)
{
    bool global = bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE;
    bool kind = type == STT_FUNC || type == STT_OBJECT || type == STT_TLS ||
                type == STT_GNU_IFUNC || type == STT_COMMON || type == STT_NOTYPE;
    return global && kind;
}

/* Reads the defined, globally visible entries of .dynsym. One body for ELF32 and ELF64. */
#define DEFINE_READER(BITS)                                                                      \
    static bool read_dynsym##BITS(const unsigned char *buf, size_t size, symset *out)            \
    {                                                                                            \
        const Elf##BITS##_Ehdr *eh = (const void *)buf;                                          \
        if (size < sizeof *eh || eh->e_shentsize != sizeof(Elf##BITS##_Shdr))                    \
            return false;                                                                        \
        uint64_t shoff = eh->e_shoff, shnum = eh->e_shnum;                                       \
        if (shoff > size || shnum > (size - shoff) / sizeof(Elf##BITS##_Shdr))                   \
            return false;                                                                        \
        const Elf##BITS##_Shdr *sh = (const void *)(buf + shoff);                                \
        bool found = false;                                                                      \
        for (uint64_t i = 0; i < shnum; i++) {                                                   \
            if (sh[i].sh_type != SHT_DYNSYM)                                                     \
                continue;                                                                        \
            if (sh[i].sh_link >= shnum || sh[i].sh_entsize != sizeof(Elf##BITS##_Sym))           \
                return false;                                                                    \
            const Elf##BITS##_Shdr *str = &sh[sh[i].sh_link];                                    \
            uint64_t so = sh[i].sh_offset, ss = sh[i].sh_size;                                   \
            uint64_t to = str->sh_offset, ts = str->sh_size;                                     \
            if (so > size || ss > size - so || to > size || ts > size - to || ts == 0 ||         \
                buf[to + ts - 1] != '\0')                                                        \
                return false;                                                                    \
            const Elf##BITS##_Sym *sym = (const void *)(buf + so);                               \
            uint64_t count = ss / sizeof *sym;                                                   \
            for (uint64_t k = 1; k < count; k++) {                                               \
                unsigned bind = ELF##BITS##_ST_BIND(sym[k].st_info);                             \
                unsigned type = ELF##BITS##_ST_TYPE(sym[k].st_info);                             \
                if (sym[k].st_shndx == SHN_UNDEF || !exported_kind(bind, type))                  \
                    continue;                                                                    \
                if (sym[k].st_name >= ts)                                                        \
                    return false;                                                                \
                if (out->n == MAX_SYMS) {                                                        \
                    out->truncated = true;                                                       \
                    continue;                                                                    \
                }                                                                                \
                out->names[out->n++] = strdup((const char *)buf + to + sym[k].st_name);          \
            }                                                                                    \
            found = true;                                                                        \
        }                                                                                        \
        return found;                                                                            \
    }

DEFINE_READER(32)
DEFINE_READER(64)

static bool read_exports(const char *path, symset *out)
{
    memset(out, 0, sizeof *out);
    size_t size = 0;
    unsigned char *buf = (unsigned char *)bst_test_read_file(path, &size);
    if (!buf)
        return false;
    bool ok = false;
    if (size >= EI_NIDENT && memcmp(buf, ELFMAG, SELFMAG) == 0) {
        if (buf[EI_CLASS] == ELFCLASS64)
            ok = read_dynsym64(buf, size, out);
        else if (buf[EI_CLASS] == ELFCLASS32)
            ok = read_dynsym32(buf, size, out);
    }
    free(buf);
    return ok && !out->truncated;
}

static bool has(const symset *s, const char *name)
{
    for (unsigned i = 0; i < s->n; i++)
        if (s->names[i] && strcmp(s->names[i], name) == 0)
            return true;
    return false;
}

static void print_set(const char *path, const symset *s)
{
    fprintf(stderr, "\n  %s exports %u symbol(s):", path, s->n);
    for (unsigned i = 0; i < s->n && i < 20; i++)
        fprintf(stderr, " %s", s->names[i] ? s->names[i] : "(null)");
    fprintf(stderr, "\n");
}

/* True when the module exports bst_backend_entry and nothing else. */
static bool exports_only_entry(const char *path)
{
    symset s;
    bool ok = read_exports(path, &s);
    CU_ASSERT_TRUE(ok);
    ok = ok && s.n == 1 && has(&s, "bst_backend_entry");
    if (!ok)
        print_set(path, &s);
    symset_free(&s);
    return ok;
}

#define PATH_CAP 4400

static unsigned modules_in(const char *dir, char names[][PATH_CAP], unsigned cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "libbst-backend-", 15) == 0 && len > 18 &&
            strcmp(e->d_name + len - 3, ".so") == 0)
            snprintf(names[n++], PATH_CAP, "%.4000s/%.256s", dir, e->d_name);
    }
    closedir(d);
    return n;
}

static void test_backends_export_only_entry(void)
{
    const char *dir = getenv("BASTION_BACKEND_PATH");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    static char paths[64][PATH_CAP];
    unsigned n = modules_in(dir, paths, 64);
    CU_ASSERT_TRUE(n >= 1); /* at least the CPU backend */
    for (unsigned i = 0; i < n; i++)
        CU_ASSERT_TRUE(exports_only_entry(paths[i]));
}

/* The checker itself must be able to fail: the test plugin with a misspelled entry exports
 * another name, and the tiny plugin (built like a real one) passes. */
static void test_checker_sees_violations(void)
{
    const char *dir = getenv("BASTION_TEST_PLUGIN_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%.4000s/libbst-backend-tiny.so", dir);
    CU_ASSERT_TRUE(exports_only_entry(path));

    snprintf(path, sizeof path, "%.4000s/libbst-backend-no_entry.so", dir);
    symset s;
    CU_ASSERT_TRUE(read_exports(path, &s));
    CU_ASSERT_TRUE(has(&s, "bst_backend_entry_v0"));
    CU_ASSERT_FALSE(has(&s, "bst_backend_entry"));
    symset_free(&s);

    snprintf(path, sizeof path, "%.4000s/libbst-backend-not_elf.so", dir);
    CU_ASSERT_FALSE(read_exports(path, &s));
    symset_free(&s);
}

static void test_libbastion_exports_only_public_api(void)
{
    const char *dir = getenv("BASTION_BACKEND_PATH");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%.4000s/../../libbastion.so", dir);
    symset s;
    bool ok = read_exports(path, &s);
    CU_ASSERT_TRUE_FATAL(ok);
    unsigned bad = 0;
    for (unsigned i = 0; i < s.n; i++) {
        const char *name = s.names[i];
        if (!name || strncmp(name, "bst_", 4) != 0) {
            bad++;
            fprintf(stderr, "\n  libbastion.so exports non-public symbol %s\n",
                    name ? name : "(null)");
        }
    }
    CU_ASSERT_EQUAL(bad, 0u);
    /* The public entry points are really there (the filter did not hide everything). */
    CU_ASSERT_TRUE(has(&s, "bst_context_create"));
    CU_ASSERT_TRUE(has(&s, "bst_context_destroy"));
    CU_ASSERT_TRUE(has(&s, "bst_last_error"));
    CU_ASSERT_TRUE(has(&s, "bst_plugin_state_name"));
    CU_ASSERT_FALSE(has(&s, "bsti_host_api"));
    CU_ASSERT_FALSE(has(&s, "bsti_pool_parallel_for"));
    symset_free(&s);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"backends_export_only_entry", test_backends_export_only_entry},
        {"checker_sees_violations", test_checker_sees_violations},
        {"libbastion_exports_only_public_api", test_libbastion_exports_only_public_api},
        {NULL, NULL},
    };
    return bst_test_run_suite("exports", cases);
}
