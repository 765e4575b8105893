/*
 * bench/bench_read.c — the read loop behind the bandwidth yardsticks (bench_baseline.c): it must
 * read memory as fast as this machine can, or a kernel is rated against a number below what the
 * machine gives and looks better than it is. Two things decide that here, measured on an AMD
 * EPYC (Zen 4) with 2 threads over 128 MiB:
 *  - load width: 16-byte loads (what a portable x86-64 build makes of the loop) read ~63 GB/s,
 *    32-byte AVX2 loads 77-90, 64-byte AVX-512 loads 99-104;
 *  - software prefetch 4 KiB ahead: +5-10% on top (106-111 GB/s with AVX-512).
 * So the widest loads the CPU has are picked at run time (the bench is built for any x86-64),
 * and every line is prefetched 4 KiB ahead, never past the end of the slice being read: past it
 * lies the next copy of a rotation or another thread's slice, which the yardstick must not warm.
 */
#include "bench.h"

#include <stddef.h>
#include <stdint.h>

#define PREFETCH_BYTES 4096

/* Four independent sums of `vec`-byte integer vectors (GCC/clang vector extensions): enough
 * loads in flight that a core waits on memory, not on add latency; integer adds, so no
 * fast-math is needed to keep them independent. n is a multiple of 16 words (128 bytes). */
#define READ_LOOP(name, vec, attr)                                                              \
    attr static uint64_t name(const uint64_t *p, size_t n)                                      \
    {                                                                                          \
        typedef uint64_t v __attribute__((vector_size(vec), aligned(vec)));                    \
        const char *bytes = (const char *)p, *end = bytes + n * 8;                              \
        v a = {0}, b = a, c = a, d = a;                                                        \
        const size_t step = 4 * (vec); /* bytes per iteration */                               \
        size_t i = 0;                                                                          \
        for (; i + step <= n * 8; i += step) {                                                 \
            for (size_t l = 0; l < step; l += 64)                                              \
                if (bytes + i + l + PREFETCH_BYTES < end)                                      \
                    __builtin_prefetch(bytes + i + l + PREFETCH_BYTES, 0, 3);                  \
            const v *q = (const v *)(const void *)(bytes + i);                                 \
            a += q[0];                                                                         \
            b += q[1];                                                                         \
            c += q[2];                                                                         \
            d += q[3];                                                                         \
        }                                                                                      \
        for (; i < n * 8; i += (vec)) /* the tail: 128-byte blocks of a 256-byte step */       \
            a += *(const v *)(const void *)(bytes + i);                                        \
        a += b + c + d;                                                                        \
        uint64_t s = 0;                                                                        \
        for (size_t k = 0; k < (vec) / 8; k++)                                                 \
            s ^= a[k];                                                                         \
        return s;                                                                              \
    }

READ_LOOP(read_portable, 16, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
READ_LOOP(read_avx2, 32, __attribute__((target("avx2"))))
READ_LOOP(read_avx512, 64, __attribute__((target("avx512f"))))
#endif

bench_read_fn bench_read_best(const char **name)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *name = "avx512 loads, prefetch 4 KiB";
        return read_avx512;
    }
    if (__builtin_cpu_supports("avx2")) {
        *name = "avx2 loads, prefetch 4 KiB";
        return read_avx2;
    }
#endif
    *name = "16-byte loads, prefetch 4 KiB";
    return read_portable;
}
