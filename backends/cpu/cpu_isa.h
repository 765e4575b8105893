/*
 * backends/cpu/cpu_isa.h — which instruction-set extensions this CPU and its OS let us use.
 *
 * Detected once at runtime (cpuid for what the core implements, xgetbv for whether the OS saves
 * the AVX / AVX-512 / AMX register state across context switches), so one build runs everywhere
 * and the ISA-specific kernels (compiled in their own files with their own -m flags) are only
 * called when both say yes. AMX is reported only: using it on Linux also needs a per-process
 * permission request (arch_prctl ARCH_REQ_XCOMP_PERM, cpu_isa_amx_permitted), and no kernel uses
 * it yet (the development machine has no AMX, so no AMX kernel could be tested).
 */
#ifndef BASTION_CPU_ISA_H
#define BASTION_CPU_ISA_H

#include <stdbool.h>
#include <stdint.h>

enum {
    CPU_ISA_AVX2 = 1u << 0,       /* AVX2 + FMA + F16C, OS saves YMM state */
    CPU_ISA_AVX512 = 1u << 1,     /* AVX-512 F + BW + VL, OS saves ZMM/opmask state */
    CPU_ISA_AVX512VNNI = 1u << 2, /* AVX-512 VNNI (vpdpbusd), with CPU_ISA_AVX512 */
    CPU_ISA_AVXVNNI = 1u << 3,    /* VEX-encoded AVX-VNNI, with CPU_ISA_AVX2 */
    CPU_ISA_AVX512BF16 = 1u << 4, /* with CPU_ISA_AVX512 */
    CPU_ISA_AMX = 1u << 5,        /* AMX tile + int8 implemented and XTILE state enabled by the OS */
};

/* The CPU_ISA_* bits of this machine (computed once, thread-safe), less those the environment
 * variable BASTION_CPU_ISA leaves out when it is set to a valid list (cpu_isa_parse): so that a
 * machine can run, time and test the kernels of an older ISA, as a machine without the newer
 * ones would. */
uint32_t cpu_isa_mask(void);
/* The features named in `list` (cpu_isa_string's names, "scalar" for none, separated by commas
 * or spaces), each with the ones it needs (avx512vnni: avx512 and avx2), into *mask. False when a
 * name is unknown: then `bad` (cap bytes) gets it. */
bool cpu_isa_parse(const char *list, uint32_t *mask, char *bad, unsigned cap);
/* Whether AMX tiles may be used by this process: CPU_ISA_AMX is in the mask AND (on Linux) the
 * kernel granted the XTILEDATA state permission, requested once on the first call (the request
 * enlarges this process's signal frames, so it is made only by code about to use AMX). Thread-safe;
 * false everywhere AMX is absent. */
bool cpu_isa_amx_permitted(void);
/* A readable list such as "avx2 avx512 avx512vnni", or "scalar". */
const char *cpu_isa_string(uint32_t mask, char *buf, unsigned cap);

#endif /* BASTION_CPU_ISA_H */
