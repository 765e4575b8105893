/*
 * tests/test_sampler.c — the sampling chain: greedy, repetition penalty arithmetic, top-k/top-p/
 * min-p candidate sets computed by hand, the chain's order (filters before temperature), seeded
 * determinism, and the draw's distribution (chi-square against the softmax probabilities).
 */
#include "runtime/model/sampler.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bst_sampler_params params(float temp)
{
    bst_sampler_params p = {sizeof p, temp, 0, 1.0f, 0.0f, 1.0f, 0, 0, 1234};
    return p;
}

static int32_t sample1(const bst_sampler_params *p, const float *logits, uint32_t n,
                       const int32_t *hist, uint32_t n_hist)
{
    bsti_sampler *s = NULL;
    CU_ASSERT_EQUAL_FATAL(bsti_sampler_create(p, n, &s), BST_OK);
    int32_t t = -1;
    CU_ASSERT_EQUAL(bsti_sampler_sample(s, logits, hist, n_hist, &t), BST_OK);
    bsti_sampler_destroy(s);
    return t;
}

/* Counts of `draws` samples. */
static void histogram(const bst_sampler_params *p, const float *logits, uint32_t n, uint32_t draws,
                      uint32_t *counts)
{
    bsti_sampler *s = NULL;
    CU_ASSERT_EQUAL_FATAL(bsti_sampler_create(p, n, &s), BST_OK);
    memset(counts, 0, n * sizeof *counts);
    for (uint32_t i = 0; i < draws; i++) {
        int32_t t = -1;
        if (bsti_sampler_sample(s, logits, NULL, 0, &t) != BST_OK || t < 0 || (uint32_t)t >= n) {
            CU_FAIL("sample failed or gave a token outside the vocabulary");
            break;
        }
        counts[t]++;
    }
    bsti_sampler_destroy(s);
}

/* Pearson's chi-square of counts against expected probabilities (tokens with p == 0 must have
 * count 0). Compared with the 0.999 quantile for the degrees of freedom, so a correct sampler
 * fails about once in a thousand seeds — and the seed is fixed. */
static void check_distribution(const uint32_t *counts, const double *prob, uint32_t n, uint32_t draws)
{
    static const double crit999[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
    double chi2 = 0.0;
    uint32_t dof = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (prob[i] == 0.0) {
            CU_ASSERT_EQUAL(counts[i], 0);
            continue;
        }
        double e = prob[i] * draws;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
        dof++;
    }
    dof = dof ? dof - 1 : 0;
    CU_ASSERT_FATAL(dof < sizeof crit999 / sizeof crit999[0]);
    if (dof && chi2 > crit999[dof]) {
        fprintf(stderr, "\n  chi2 %.2f > %.2f (dof %u); counts:", chi2, crit999[dof], dof);
        for (uint32_t i = 0; i < n; i++) fprintf(stderr, " %u(%.0f)", counts[i], prob[i] * draws);
        fprintf(stderr, "\n");
    }
    if (dof) CU_ASSERT(chi2 <= crit999[dof]);
}

/* Logits whose softmax is exactly `p` (natural log; zero probability -> -inf). */
static void logits_of(const double *p, float *l, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) l[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

static void test_greedy(void)
{
    const float l[] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
    bst_sampler_params p = params(0.0f);
    CU_ASSERT_EQUAL(sample1(&p, l, 5, NULL, 0), 1); /* first of the two maxima */
    p.temperature = -1.0f;
    CU_ASSERT_EQUAL(sample1(&p, l, 5, NULL, 0), 1);
    CU_ASSERT_EQUAL(sample1(NULL, l, 5, NULL, 0), 1); /* NULL params: greedy */
    /* top_k = 1 at any temperature is the argmax too, on pseudo-random logits. */
    uint64_t x = 99;
    for (int round = 0; round < 50; round++) {
        float r[64];
        uint32_t best = 0;
        for (uint32_t i = 0; i < 64; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            r[i] = (float)((x >> 40) % 10000) / 100.0f - 50.0f;
            if (r[i] > r[best]) best = i;
        }
        bst_sampler_params k1 = params(1.5f);
        k1.top_k = 1;
        k1.seed = (uint64_t)round;
        CU_ASSERT_EQUAL(sample1(&k1, r, 64, NULL, 0), (int32_t)best);
        bst_sampler_params g = params(0.0f);
        CU_ASSERT_EQUAL(sample1(&g, r, 64, NULL, 0), (int32_t)best);
    }
}

/* The reference greedy rule, one logit at a time: the first maximum. */
static int32_t first_max(const float *l, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return (int32_t)best;
}

/* Plain greedy scans blocks of logits at once: lengths around its block and lane sizes, ties
 * within and across blocks, -0 against +0, all -inf, and the first NaN/+inf named in the error. */
static void test_greedy_blocks(void)
{
    static const uint32_t lengths[] = {1, 3, 7, 8, 9, 255, 256, 257, 263, 1000, 49157};
    float *l = malloc(49157 * sizeof *l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    uint64_t x = 7;
    bst_sampler_params g = params(0.0f);
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        const uint32_t n = lengths[k];
        for (int round = 0; round < 6; round++) {
            for (uint32_t i = 0; i < n; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                /* Few distinct values, so maxima repeat (within and across blocks). */
                l[i] = (float)((x >> 40) % (round < 3 ? 13u : 100000u)) - 20.0f;
            }
            if (round == 1) /* the maximum only at the very end */
                l[n - 1] = 1e30f;
            if (round == 2 && n > 1) { /* -0 before +0, everything else negative */
                for (uint32_t i = 0; i < n; i++) l[i] = -1.0f - (float)(i % 5);
                l[n / 2] = -0.0f;
                l[n - 1] = 0.0f;
            }
            CU_ASSERT_EQUAL(sample1(&g, l, n, NULL, 0), first_max(l, n));
        }
        for (uint32_t i = 0; i < n; i++) l[i] = -INFINITY;
        CU_ASSERT_EQUAL(sample1(&g, l, n, NULL, 0), 0);
        /* NaN and +inf: the first one is named, wherever it falls, by greedy picking and by
         * sampling (bad = 2, 3) alike. */
        const bst_sampler_params sampled = params(0.8f);
        for (int bad = 0; bad < 4; bad++) {
            for (uint32_t i = 0; i < n; i++) l[i] = (float)(i % 17);
            const uint32_t at = n > 2 ? n - 2 : 0;
            l[at] = bad % 2 ? INFINITY : NAN;
            if (at + 1 < n) l[at + 1] = NAN;
            bsti_sampler *s = NULL;
            CU_ASSERT_EQUAL_FATAL(bsti_sampler_create(bad < 2 ? &g : &sampled, n, &s), BST_OK);
            int32_t t = 0;
            CU_ASSERT_EQUAL(bsti_sampler_sample(s, l, NULL, 0, &t), BST_ERR_INVALID_ARG);
            char want[96];
            snprintf(want, sizeof want, "sampler: logit of token %u is %s", at,
                     bad % 2 ? "+inf" : "NaN");
            CU_ASSERT_STRING_EQUAL(bst_last_error(), want);
            bsti_sampler_destroy(s);
        }
    }
    free(l);
}

static void test_repetition_penalty(void)
{
    bst_sampler_params p = params(0.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 64;
    /* Positive logits are divided: 2.0 -> 1.0, below token 3's 1.9. */
    const float l1[] = {2.0f, -1.0f, 0.5f, 1.9f};
    const int32_t h1[] = {0, 1};
    CU_ASSERT_EQUAL(sample1(&p, l1, 4, h1, 2), 3);
    CU_ASSERT_EQUAL(sample1(&p, l1, 4, NULL, 0), 0);
    /* Negative logits are multiplied: -1.0 -> -2.0, below token 1's -1.5 (dividing would give
     * -0.5 and keep token 0 on top). */
    const float l2[] = {-1.0f, -1.5f};
    const int32_t h2[] = {0};
    CU_ASSERT_EQUAL(sample1(&p, l2, 2, h2, 1), 1);
    /* Once per distinct token, however often it occurs: 2.0 / 2 = 1.0 > 0.9 (2.0 / 4 would not). */
    const float l3[] = {2.0f, 0.9f};
    const int32_t h3[] = {0, 0, 0};
    CU_ASSERT_EQUAL(sample1(&p, l3, 2, h3, 3), 0);
    /* Only the last repeat_last_n tokens count. */
    p.repeat_last_n = 1;
    const int32_t h4[] = {0, 1};
    CU_ASSERT_EQUAL(sample1(&p, l1, 4, h4, 2), 0);
    p.repeat_last_n = 2;
    CU_ASSERT_EQUAL(sample1(&p, l1, 4, h4, 2), 3);
    p.repeat_last_n = -1; /* whole history */
    CU_ASSERT_EQUAL(sample1(&p, l1, 4, h4, 2), 3);
    p.repeat_last_n = 0; /* off */
    CU_ASSERT_EQUAL(sample1(&p, l1, 4, h4, 2), 0);
    /* History tokens must be in the vocabulary. */
    p.repeat_last_n = 8;
    const int32_t bad[] = {7};
    bsti_sampler *s = NULL;
    CU_ASSERT_EQUAL_FATAL(bsti_sampler_create(&p, 4, &s), BST_OK);
    int32_t t;
    CU_ASSERT_EQUAL(bsti_sampler_sample(s, l1, bad, 1, &t), BST_ERR_INVALID_ARG);
    bsti_sampler_destroy(s);
}

static void test_determinism(void)
{
    const double prob[] = {0.3, 0.25, 0.2, 0.15, 0.1};
    float l[5];
    logits_of(prob, l, 5);
    int32_t a[300], b[300], c[300];
    for (int run = 0; run < 3; run++) {
        bst_sampler_params p = params(1.0f);
        p.seed = run == 2 ? 43 : 42;
        bsti_sampler *s = NULL;
        CU_ASSERT_EQUAL_FATAL(bsti_sampler_create(&p, 5, &s), BST_OK);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 300; i++) CU_ASSERT_EQUAL(bsti_sampler_sample(s, l, NULL, 0, &out[i]), BST_OK);
        bsti_sampler_destroy(s);
    }
    CU_ASSERT(memcmp(a, b, sizeof a) == 0);
    CU_ASSERT(memcmp(a, c, sizeof a) != 0);
}

static void test_distribution(void)
{
    enum { N = 5, DRAWS = 40000 };
    const double prob[N] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float l[N];
    logits_of(prob, l, N);
    uint32_t counts[N];
    bst_sampler_params p = params(1.0f);
    histogram(&p, l, N, DRAWS, counts);
    check_distribution(counts, prob, N, DRAWS);

    /* Temperature 0.5 squares the probabilities (then renormalises). */
    double sq[N], sum = 0;
    for (int i = 0; i < N; i++) sum += sq[i] = prob[i] * prob[i];
    for (int i = 0; i < N; i++) sq[i] /= sum;
    p.temperature = 0.5f;
    p.seed = 7;
    histogram(&p, l, N, DRAWS, counts);
    check_distribution(counts, sq, N, DRAWS);

    /* A masked token (-inf) is never drawn. */
    const double with_zero[N] = {0.5, 0.0, 0.25, 0.25, 0.0};
    logits_of(with_zero, l, N);
    p.temperature = 1.0f;
    histogram(&p, l, N, DRAWS, counts);
    check_distribution(counts, with_zero, N, DRAWS);
}

static void test_filters(void)
{
    enum { N = 4, DRAWS = 20000 };
    const double prob[N] = {0.5, 0.25, 0.15, 0.1};
    float l[N];
    logits_of(prob, l, N);
    uint32_t counts[N];

    /* top-k 2: {0, 1}, renormalised. */
    bst_sampler_params p = params(1.0f);
    p.top_k = 2;
    histogram(&p, l, N, DRAWS, counts);
    const double k2[N] = {0.5 / 0.75, 0.25 / 0.75, 0, 0};
    check_distribution(counts, k2, N, DRAWS);

    /* top-p 0.7: cumulative 0.5, 0.75 >= 0.7 -> {0, 1}. */
    p = params(1.0f);
    p.top_p = 0.7f;
    histogram(&p, l, N, DRAWS, counts);
    check_distribution(counts, k2, N, DRAWS);
    /* top-p 0.8: 0.5, 0.75, 0.9 -> {0, 1, 2}. */
    p.top_p = 0.8f;
    histogram(&p, l, N, DRAWS, counts);
    const double p3[N] = {0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0};
    check_distribution(counts, p3, N, DRAWS);

    /* min-p 0.25: keep p >= 0.25 * 0.5 = 0.125 -> {0, 1, 2}. */
    p = params(1.0f);
    p.min_p = 0.25f;
    histogram(&p, l, N, DRAWS, counts);
    check_distribution(counts, p3, N, DRAWS);
    /* min-p 0.6: threshold 0.3 -> {0} only. */
    p.min_p = 0.6f;
    histogram(&p, l, N, DRAWS, counts);
    const double only0[N] = {1, 0, 0, 0};
    check_distribution(counts, only0, N, DRAWS);

    /* Order: top-p sees the untempered distribution. At temperature 10 the tempered
     * distribution is nearly flat (top-p 0.7 of it would keep three tokens), but the chain
     * filters first, so only {0, 1} remain, then flattened between themselves. */
    p = params(10.0f);
    p.top_p = 0.7f;
    histogram(&p, l, N, DRAWS, counts);
    double a = pow(0.5, 0.1), b = pow(0.25, 0.1);
    const double hot[N] = {a / (a + b), b / (a + b), 0, 0};
    check_distribution(counts, hot, N, DRAWS);

    /* Combined: top-k 3, then top-p 0.7 over those three (0.5/0.9, 0.25/0.9 -> 0.83 >= 0.7)
     * keeps {0, 1}. */
    p = params(1.0f);
    p.top_k = 3;
    p.top_p = 0.7f;
    histogram(&p, l, N, DRAWS, counts);
    check_distribution(counts, k2, N, DRAWS);
}

static void test_invalid(void)
{
    bsti_sampler *s = (bsti_sampler *)1;
    bst_sampler_params p = params(1.0f);
    p.temperature = NAN;
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, &s), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(s);
    p = params(1.0f);
    p.top_p = -0.1f;
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, &s), BST_ERR_INVALID_ARG);
    p = params(1.0f);
    p.repeat_penalty = 0.0f;
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, &s), BST_ERR_INVALID_ARG);
    p = params(1.0f);
    p.min_p = 1.5f;
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, &s), BST_ERR_INVALID_ARG);
    p = params(1.0f);
    p.repeat_last_n = -2;
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, &s), BST_ERR_INVALID_ARG);
    p = params(1.0f);
    p.struct_size = 8;
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, &s), BST_ERR_INVALID_ARG);
    p = params(1.0f);
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 0, &s), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_sampler_create(&p, 4, NULL), BST_ERR_INVALID_ARG);

    CU_ASSERT_EQUAL_FATAL(bsti_sampler_create(&p, 3, &s), BST_OK);
    const float nan_logits[] = {0.0f, NAN, 1.0f};
    int32_t t = 0;
    CU_ASSERT_EQUAL(bsti_sampler_sample(s, nan_logits, NULL, 0, &t), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bsti_sampler_sample(s, NULL, NULL, 0, &t), BST_ERR_INVALID_ARG);
    /* All masked: still a valid token, never a crash. */
    const float masked[] = {-INFINITY, -INFINITY, -INFINITY};
    CU_ASSERT_EQUAL(bsti_sampler_sample(s, masked, NULL, 0, &t), BST_OK);
    CU_ASSERT(t >= 0 && t < 3);
    bsti_sampler_destroy(s);
    bsti_sampler_destroy(NULL);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"greedy", test_greedy},
        {"greedy_blocks", test_greedy_blocks},
        {"repetition_penalty", test_repetition_penalty},
        {"determinism", test_determinism},
        {"distribution", test_distribution},
        {"filters", test_filters},
        {"invalid", test_invalid},
        {NULL, NULL},
    };
    return bst_test_run_suite("sampler", cases);
}
