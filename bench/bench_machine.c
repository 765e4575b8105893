/*
 * bench/bench_machine.c — what the machine says about itself, recorded with every run so that a
 * result can be traced to the hardware it came from: CPU model, the ISA flags that decide which
 * kernels run, cache sizes (the last-level cache sizes the cache-cold rotation and the bandwidth
 * buffer), memory, OS. Read from /proc/cpuinfo, /proc/meminfo and sysfs; a fact that cannot be
 * read stays unknown rather than failing the run.
 */
#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static char *read_text(const char *path, size_t limit)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = malloc(limit + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, limit, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t lead = 0;
    while (isspace((unsigned char)s[lead]))
        lead++;
    if (lead)
        memmove(s, s + lead, n - lead + 1);
}

bool bench_parse_size(const char *text, uint64_t *out)
{
    if (!text)
        return false;
    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text))
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return false;
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024u;
    else if (*end == 'M' || *end == 'm')
        mult = 1024u * 1024u;
    else if (*end == 'G' || *end == 'g')
        mult = 1024u * 1024u * 1024u;
    if (mult != 1)
        end++;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0' || (uint64_t)v > UINT64_MAX / mult)
        return false;
    *out = (uint64_t)v * mult;
    return true;
}

/* Flags that decide which kernels can run (x86 and Arm spellings); the rest of the flag list
 * (virtualization, errata, power management) says nothing about kernel speed. */
static bool isa_relevant(const char *flag)
{
    static const char *const prefixes[] = {"sse", "ssse", "avx", "amx", "fma", "f16c", "bmi",
                                           "popcnt", "asimd", "sve", "neon", "i8mm", "bf16",
                                           "fphp", "dotprod", "sme", "vnni"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(flag, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

static void add_isa_flags(const char *list, bench_machine *m)
{
    const char *p = list;
    while (*p && m->n_isa < BENCH_MAX_ISA) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0 || len >= sizeof m->isa[0])
            continue;
        char flag[sizeof m->isa[0]];
        memcpy(flag, start, len);
        flag[len] = '\0';
        if (!isa_relevant(flag))
            continue;
        bool dup = false;
        for (uint32_t i = 0; i < m->n_isa && !dup; i++)
            dup = strcmp(m->isa[i], flag) == 0;
        if (!dup)
            memcpy(m->isa[m->n_isa++], flag, len + 1);
    }
}

void bench_machine_parse_cpuinfo(const char *text, bench_machine *m)
{
    /* Distinct (physical id, core id) pairs count physical cores; hyperthreads share one. */
    enum { MAX_CORES = 1024 };
    long pairs[MAX_CORES][2];
    uint32_t n_pairs = 0;
    long phys = 0, core = -1;
    bool flags_done = false;
    const char *line = text;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[8192];
        if (len >= sizeof buf)
            len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = nl ? nl + 1 : NULL;

        char *colon = strchr(buf, ':');
        if (!colon) {
            /* A blank line ends one processor's block. */
            if (core >= 0 && n_pairs < MAX_CORES) {
                bool seen = false;
                for (uint32_t i = 0; i < n_pairs && !seen; i++)
                    seen = pairs[i][0] == phys && pairs[i][1] == core;
                if (!seen) {
                    pairs[n_pairs][0] = phys;
                    pairs[n_pairs][1] = core;
                    n_pairs++;
                }
            }
            phys = 0;
            core = -1;
            continue;
        }
        *colon = '\0';
        char *key = buf, *value = colon + 1;
        trim(key);
        trim(value);
        if (!m->cpu_model[0] && (strcmp(key, "model name") == 0 || strcmp(key, "Model") == 0))
            snprintf(m->cpu_model, sizeof m->cpu_model, "%s", value);
        else if (!m->cpu_vendor[0] &&
                 (strcmp(key, "vendor_id") == 0 || strcmp(key, "CPU implementer") == 0))
            snprintf(m->cpu_vendor, sizeof m->cpu_vendor, "%s", value);
        else if (!flags_done && (strcmp(key, "flags") == 0 || strcmp(key, "Features") == 0)) {
            add_isa_flags(value, m);
            flags_done = true; /* every processor repeats the same list */
        } else if (strcmp(key, "physical id") == 0)
            phys = strtol(value, NULL, 10);
        else if (strcmp(key, "core id") == 0)
            core = strtol(value, NULL, 10);
    }
    if (core >= 0 && n_pairs < MAX_CORES) {
        bool seen = false;
        for (uint32_t i = 0; i < n_pairs && !seen; i++)
            seen = pairs[i][0] == phys && pairs[i][1] == core;
        if (!seen)
            n_pairs++;
    }
    m->physical_cores = n_pairs;
}

static int cmp_cache(const void *a, const void *b)
{
    const bench_cache *x = a, *y = b;
    if (x->level != y->level)
        return x->level < y->level ? -1 : 1;
    return strcmp(x->type, y->type);
}

void bench_machine_read_caches(const char *dir, bench_machine *m)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL && m->n_caches < BENCH_MAX_CACHES) {
        if (strncmp(ent->d_name, "index", 5) != 0)
            continue;
        char path[1024];
        bench_cache c;
        memset(&c, 0, sizeof c);
        char *t;
        snprintf(path, sizeof path, "%s/%s/level", dir, ent->d_name);
        if ((t = read_text(path, 64)) != NULL) {
            c.level = (uint32_t)strtoul(t, NULL, 10);
            free(t);
        }
        snprintf(path, sizeof path, "%s/%s/type", dir, ent->d_name);
        if ((t = read_text(path, 64)) != NULL) {
            trim(t);
            snprintf(c.type, sizeof c.type, "%s", t);
            free(t);
        }
        snprintf(path, sizeof path, "%s/%s/size", dir, ent->d_name);
        if ((t = read_text(path, 64)) != NULL) {
            trim(t);
            if (!bench_parse_size(t, &c.size_bytes))
                c.size_bytes = 0;
            free(t);
        }
        snprintf(path, sizeof path, "%s/%s/shared_cpu_list", dir, ent->d_name);
        if ((t = read_text(path, 256)) != NULL) {
            trim(t);
            snprintf(c.shared_cpus, sizeof c.shared_cpus, "%s", t);
            free(t);
        }
        if (c.level == 0 || c.size_bytes == 0)
            continue;
        m->caches[m->n_caches++] = c;
    }
    closedir(d);
    qsort(m->caches, m->n_caches, sizeof m->caches[0], cmp_cache);
    /* The last-level cache: the largest data-holding cache at the highest level. */
    uint32_t top = 0;
    for (uint32_t i = 0; i < m->n_caches; i++)
        if (strcmp(m->caches[i].type, "Instruction") != 0 && m->caches[i].level > top)
            top = m->caches[i].level;
    m->llc_bytes = 0;
    for (uint32_t i = 0; i < m->n_caches; i++)
        if (m->caches[i].level == top && strcmp(m->caches[i].type, "Instruction") != 0 &&
            m->caches[i].size_bytes > m->llc_bytes)
            m->llc_bytes = m->caches[i].size_bytes;
}

static uint64_t mem_total(void)
{
    char *t = read_text("/proc/meminfo", 16384);
    if (!t)
        return 0;
    uint64_t bytes = 0;
    const char *p = strstr(t, "MemTotal:");
    if (p) {
        unsigned long long kb = strtoull(p + 9, NULL, 10);
        if (kb <= UINT64_MAX / 1024u)
            bytes = (uint64_t)kb * 1024u;
    }
    free(t);
    return bytes;
}

void bench_machine_probe(bench_machine *out)
{
    memset(out, 0, sizeof *out);
    char *info = read_text("/proc/cpuinfo", 4u << 20);
    if (info) {
        bench_machine_parse_cpuinfo(info, out);
        free(info);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    out->logical_cpus = online > 0 ? (uint32_t)online : 0;
    bench_machine_read_caches("/sys/devices/system/cpu/cpu0/cache", out);
    out->memory_bytes = mem_total();
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(out->os, sizeof out->os, "%.40s %.60s %.20s", u.sysname, u.release, u.machine);
}
