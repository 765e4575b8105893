/*
 * Runtime ISA detection for the CPU backend (see cpu_isa.h). A feature counts only when the core
 * implements it (cpuid) AND the OS has enabled its register state in XCR0 (xgetbv): a kernel
 * running AVX-512 code under an OS that does not save ZMM registers would corrupt other threads.
 */
#include "cpu_isa.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    /* Encoded as bytes so no -mxsave is needed for this file. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
               f16c = (c >> 29) & 1;
    if (!osxsave || !avx)
        return 0;
    const uint64_t xcr0 = read_xcr0();
    const bool ymm_os = (xcr0 & 0x6) == 0x6;               /* SSE + AVX state */
    const bool zmm_os = ymm_os && (xcr0 & 0xe0) == 0xe0;   /* opmask, ZMM_Hi256, Hi16_ZMM */
    const bool tile_os = (xcr0 & 0x60000) == 0x60000;      /* XTILECFG, XTILEDATA */
    if (!ymm_os)
        return 0;
    unsigned max_leaf = (unsigned)__get_cpuid_max(0, NULL); /* int in clang's cpuid.h */
    if (max_leaf < 7)
        return 0;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0, tmp;
    __cpuid_count(7, 0, tmp, b7, c7, d7);
    if (tmp >= 1)
        __cpuid_count(7, 1, a71, tmp, tmp, tmp);
    uint32_t m = 0;
    const bool avx2 = (b7 >> 5) & 1;
    if (avx2 && fma && f16c)
        m |= CPU_ISA_AVX2;
    const bool f = (b7 >> 16) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    if ((m & CPU_ISA_AVX2) && zmm_os && f && bw && vl) {
        m |= CPU_ISA_AVX512;
        if ((c7 >> 11) & 1)
            m |= CPU_ISA_AVX512VNNI;
        if ((a71 >> 5) & 1)
            m |= CPU_ISA_AVX512BF16;
    }
    if ((m & CPU_ISA_AVX2) && ((a71 >> 4) & 1))
        m |= CPU_ISA_AVXVNNI;
    if (tile_os && ((d7 >> 24) & 1) && ((d7 >> 25) & 1))
        m |= CPU_ISA_AMX;
    return m;
}
#else
static uint32_t detect(void)
{
    return 0;
}
#endif

/* Each feature's name (as cpu_isa_string prints it) and the features it needs: the kernels that
 * use one assume those (an AVX-512 kernel also runs AVX2 code). */
static const struct {
    uint32_t bit;
    const char *name;
    uint32_t needs;
} features[] = {
    {CPU_ISA_AVX2, "avx2", 0},
    {CPU_ISA_AVX512, "avx512", CPU_ISA_AVX2},
    {CPU_ISA_AVX512VNNI, "avx512vnni", CPU_ISA_AVX2 | CPU_ISA_AVX512},
    {CPU_ISA_AVXVNNI, "avxvnni", CPU_ISA_AVX2},
    {CPU_ISA_AVX512BF16, "avx512bf16", CPU_ISA_AVX2 | CPU_ISA_AVX512},
    {CPU_ISA_AMX, "amx", 0},
};

bool cpu_isa_parse(const char *list, uint32_t *mask, char *bad, unsigned cap)
{
    *mask = 0;
    for (const char *p = list; *p;) {
        const size_t len = strcspn(p, ", ");
        bool known = len == 0 || (len == 6 && strncmp(p, "scalar", 6) == 0);
        for (size_t i = 0; i < sizeof features / sizeof features[0] && !known; i++)
            if (strlen(features[i].name) == len && strncmp(p, features[i].name, len) == 0) {
                *mask |= features[i].bit | features[i].needs;
                known = true;
            }
        if (!known) {
            if (cap)
                snprintf(bad, cap, "%.*s", (int)len, p);
            return false;
        }
        p += len + (p[len] != '\0');
    }
    return true;
}

uint32_t cpu_isa_mask(void)
{
    /* Racing first calls compute the same value; the top bit marks "computed". */
    static _Atomic uint32_t cached = 0;
    uint32_t v = atomic_load_explicit(&cached, memory_order_acquire);
    if (!(v & 0x80000000u)) {
        v = detect();
        const char *cap = secure_getenv("BASTION_CPU_ISA");
        uint32_t allowed;
        if (cap && cap[0] && cpu_isa_parse(cap, &allowed, NULL, 0))
            v &= allowed;
        v |= 0x80000000u;
        atomic_store_explicit(&cached, v, memory_order_release);
    }
    return v & ~0x80000000u;
}

bool cpu_isa_amx_permitted(void)
{
    /* 0: not asked yet, 1: granted, 2: refused or absent. */
    static _Atomic int state = 0;
    int v = atomic_load_explicit(&state, memory_order_acquire);
    if (v == 0) {
        bool ok = (cpu_isa_mask() & CPU_ISA_AMX) != 0;
#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__)) && defined(SYS_arch_prctl)
        /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18), Linux 5.16+; older kernels
         * fail the call, and AMX then stays unused (its state is not saved for us). */
        if (ok)
            ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#elif !defined(_WIN32)
        ok = false; /* no known way to ask this OS: do not use AMX */
#endif
        v = ok ? 1 : 2;
        atomic_store_explicit(&state, v, memory_order_release);
    }
    return v == 1;
}

const char *cpu_isa_string(uint32_t mask, char *buf, unsigned cap)
{
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++) {
        if (!(mask & features[i].bit))
            continue;
        int w = snprintf(buf + len, cap - len, "%s%s", len ? " " : "", features[i].name);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
    if (len == 0)
        snprintf(buf, cap, "scalar");
    return buf;
}
