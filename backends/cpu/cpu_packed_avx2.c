/*
 * The decode GEMV on the packed weight copy with plain AVX2 (maddubs + madd): the loops of
 * cpu_packed_simd256.h. Compiled with the AVX2 flags and called only when cpu_isa_mask() has
 * CPU_ISA_AVX2 and not CPU_ISA_AVXVNNI (cpu_packed_kernel).
 */
#include "cpu_packed.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PK2_VNNI 0
#define PK2_ENTRY cpu_packed_gemv_avx2
#include "cpu_packed_simd256.h"
#else
typedef int cpu_packed_avx2_not_built; /* a translation unit may not be empty */
#endif
