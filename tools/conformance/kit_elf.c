/*
 * tools/conformance/kit_elf.c — the exported symbols of a plugin file, read from its ELF
 * dynamic symbol table (.dynsym) without loading it. Every offset and size read from the file
 * is checked against the file's size: the file is untrusted input.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include "kit.h"

#include <elf.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (512ull << 20)

typedef struct names {
    char **v;
    uint32_t n, cap;
} names;

static bool add_name(names *s, const char *name)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 16;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = strdup(name);
    return s->v[s->n++] != NULL;
}

/* Exported: defined here, global/weak binding, default or protected visibility. */
static bool exported(unsigned bind, unsigned vis, unsigned shndx)
{
    bool global = bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE;
    bool visible = vis == STV_DEFAULT || vis == STV_PROTECTED;
    return global && visible && shndx != SHN_UNDEF;
}

/* One body for ELF32 and ELF64. Returns NULL on success, else what is wrong with the file. The
 * headers are copied out of the buffer before they are read: the file's offsets need not be
 * aligned for the structs (fuzz_plugin_elf found section tables at odd offsets). */
#define DEFINE_DYNSYM(BITS)                                                                       \
    static const char *dynsym##BITS(const unsigned char *buf, uint64_t size, names *out)          \
    {                                                                                             \
        Elf##BITS##_Ehdr eh;                                                                      \
        if (size < sizeof eh)                                                                     \
            return "truncated or malformed ELF header";                                           \
        memcpy(&eh, buf, sizeof eh);                                                              \
        if (eh.e_shentsize != sizeof(Elf##BITS##_Shdr))                                           \
            return "truncated or malformed ELF header";                                           \
        uint64_t shoff = eh.e_shoff, shnum = eh.e_shnum;                                          \
        if (shoff > size || shnum > (size - shoff) / sizeof(Elf##BITS##_Shdr))                    \
            return "section table outside the file";                                              \
        for (uint64_t i = 0; i < shnum; i++) {                                                    \
            Elf##BITS##_Shdr sh, str;                                                             \
            memcpy(&sh, buf + shoff + i * sizeof sh, sizeof sh);                                  \
            if (sh.sh_type != SHT_DYNSYM)                                                         \
                continue;                                                                         \
            if (sh.sh_link >= shnum || sh.sh_entsize != sizeof(Elf##BITS##_Sym))                  \
                return "malformed .dynsym section";                                               \
            memcpy(&str, buf + shoff + (uint64_t)sh.sh_link * sizeof str, sizeof str);            \
            uint64_t so = sh.sh_offset, ss = sh.sh_size;                                          \
            uint64_t to = str.sh_offset, ts = str.sh_size;                                        \
            if (so > size || ss > size - so || to > size || ts > size - to || ts == 0 ||          \
                buf[to + ts - 1] != '\0')                                                         \
                return ".dynsym or its string table outside the file";                            \
            for (uint64_t k = 1; k < ss / sizeof(Elf##BITS##_Sym); k++) {                         \
                Elf##BITS##_Sym sym;                                                              \
                memcpy(&sym, buf + so + k * sizeof sym, sizeof sym);                              \
                unsigned bind = ELF##BITS##_ST_BIND(sym.st_info);                                 \
                unsigned vis = ELF##BITS##_ST_VISIBILITY(sym.st_other);                           \
                if (!exported(bind, vis, sym.st_shndx))                                           \
                    continue;                                                                     \
                if (sym.st_name >= ts)                                                            \
                    return "symbol name outside the string table";                                \
                if (!add_name(out, (const char *)buf + to + sym.st_name))                         \
                    return "out of memory";                                                       \
            }                                                                                     \
            return NULL;                                                                          \
        }                                                                                         \
        return "no .dynsym section (not a shared object?)";                                       \
    }

DEFINE_DYNSYM(32)
DEFINE_DYNSYM(64)

bool kit_exported_symbols(const char *path, char ***out_names, uint32_t *out_n, char *why,
                          size_t n)
{
    *out_names = NULL;
    *out_n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, n, "cannot open %s", path);
        return false;
    }
    unsigned char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || (unsigned long long)size > MAX_FILE || fseek(f, 0, SEEK_SET) != 0 ||
        !(buf = malloc((size_t)size + 1)) || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        snprintf(why, n, "cannot read %s", path);
        free(buf);
        fclose(f);
        return false;
    }
    fclose(f);
    names s = {NULL, 0, 0};
    const char *err = "not an ELF file";
    if ((size_t)size >= EI_NIDENT && memcmp(buf, ELFMAG, SELFMAG) == 0) {
        if (buf[EI_CLASS] == ELFCLASS64)
            err = dynsym64(buf, (uint64_t)size, &s);
        else if (buf[EI_CLASS] == ELFCLASS32)
            err = dynsym32(buf, (uint64_t)size, &s);
    }
    free(buf);
    if (err) {
        snprintf(why, n, "%s: %s", path, err);
        for (uint32_t i = 0; i < s.n; i++)
            free(s.v[i]);
        free(s.v);
        return false;
    }
    *out_names = s.v;
    *out_n = s.n;
    return true;
}
