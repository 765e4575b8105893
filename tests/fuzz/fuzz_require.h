/*
 * tests/fuzz/fuzz_require.h — what every harness's checks end in: a broken promise traps, which
 * libFuzzer reports as a crash and keeps the input that caused it.
 */
#ifndef BASTION_FUZZ_REQUIRE_H
#define BASTION_FUZZ_REQUIRE_H

static inline void require(int cond)
{
    if (!cond)
        __builtin_trap();
}

#endif /* BASTION_FUZZ_REQUIRE_H */
