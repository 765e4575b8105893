/*
 * The decode GEMV on the packed weight copy with AVX-VNNI (256-bit vpdpbusd, as on CPUs with
 * AVX2 and VNNI but no AVX-512): the loops of cpu_packed_simd256.h. Compiled with the AVX2 and
 * AVX-VNNI flags and called only when cpu_isa_mask() has CPU_ISA_AVXVNNI (cpu_packed_kernel).
 */
#include "cpu_packed.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PK2_VNNI 1
#define PK2_ENTRY cpu_packed_gemv_avxvnni
#include "cpu_packed_simd256.h"
#else
typedef int cpu_packed_avxvnni_not_built; /* a translation unit may not be empty */
#endif
