/*
 * runtime/model/sampler.c — the sampling chain: repetition penalty, top-k, top-p, min-p,
 * temperature, then a seeded draw.
 *
 * The order and each step's rule follow llama.cpp's default chain (common/common.h: penalties,
 * dry, top_n_sigma, top_k, typical_p, top_p, min_p, xtc, temperature, then dist; we implement the
 * steps Bastion exposes), so that the same settings mean the same thing in both. Note what the
 * order implies: top-p and min-p see the untempered distribution; temperature only reshapes what
 * is left. The random stream is splitmix64-seeded xoshiro256**, our own code, so a seed gives
 * the same draws everywhere (probabilities come from expf, which may differ in the last bit
 * between C libraries).
 */
#include "runtime/model/sampler.h"

#include "graph/status.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct bsti_sampler {
    bst_sampler_params p;
    uint32_t n_vocab;
    uint64_t rng[4];
    cand *cands;
    uint32_t *seen; /* stamp per token: penalised in this call when seen[id] == stamp */
    uint32_t stamp;
};

/* The size of the first version of bst_sampler_params: callers built against it pass this. */
#define PARAMS_V1_SIZE (offsetof(bst_sampler_params, seed) + sizeof(uint64_t))

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

bst_status bsti_sampler_create(const bst_sampler_params *p, uint32_t n_vocab, bsti_sampler **out)
{
    if (!out) return bsti_fail(BST_ERR_INVALID_ARG, "bsti_sampler_create: out is NULL");
    *out = NULL;
    if (n_vocab == 0 || n_vocab > (uint32_t)INT32_MAX)
        return bsti_fail(BST_ERR_INVALID_ARG, "sampler: vocabulary size %u is invalid", n_vocab);
    bst_sampler_params q = {sizeof q, 0.0f, 0, 1.0f, 0.0f, 1.0f, 0, 0, 0};
    if (p) {
        if (p->struct_size < PARAMS_V1_SIZE)
            return bsti_fail(BST_ERR_INVALID_ARG, "sampler: struct_size %u is smaller than %zu",
                             p->struct_size, (size_t)PARAMS_V1_SIZE);
        memcpy(&q, p, p->struct_size < sizeof q ? p->struct_size : sizeof q);
        q.struct_size = sizeof q;
    }
    if (!isfinite(q.temperature) || isnan(q.top_p) || isnan(q.min_p) || !isfinite(q.repeat_penalty))
        return bsti_fail(BST_ERR_INVALID_ARG, "sampler: a parameter is NaN or infinite");
    if (q.top_p < 0.0f)
        return bsti_fail(BST_ERR_INVALID_ARG, "sampler: top_p %g is negative", (double)q.top_p);
    if (q.min_p > 1.0f)
        return bsti_fail(BST_ERR_INVALID_ARG, "sampler: min_p %g is greater than 1", (double)q.min_p);
    if (q.repeat_penalty <= 0.0f)
        return bsti_fail(BST_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be positive",
                         (double)q.repeat_penalty);
    if (q.repeat_last_n < -1)
        return bsti_fail(BST_ERR_INVALID_ARG,
                         "sampler: repeat_last_n %d is invalid (-1 = whole history, 0 = off)",
                         q.repeat_last_n);

    bsti_sampler *s = calloc(1, sizeof *s);
    if (!s) return bsti_fail(BST_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->seen = calloc(n_vocab, sizeof *s->seen);
    if (!s->cands || !s->seen) {
        bsti_sampler_destroy(s);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    }
    s->p = q;
    s->n_vocab = n_vocab;
    uint64_t seed = q.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&seed);
    *out = s;
    return BST_OK;
}

void bsti_sampler_destroy(bsti_sampler *s)
{
    if (!s) return;
    free(s->cands);
    free(s->seen);
    free(s);
}

/* Descending logit, then ascending id, so every order is deterministic. */
static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static bool cand_worse(const cand *a, const cand *b) { return cand_cmp(a, b) > 0; }

/* Keeps the k best candidates (sorted): a min-heap of size k over all n, O(n log k). */
static uint32_t top_k(cand *c, uint32_t n, uint32_t k)
{
    if (k >= n) {
        qsort(c, n, sizeof *c, cand_cmp);
        return n;
    }
    /* c[0..k) becomes a heap whose root is the worst kept candidate. */
    for (uint32_t i = 0; i < k; i++) {
        uint32_t j = i;
        cand v = c[i];
        while (j > 0 && cand_worse(&v, &c[(j - 1) / 2])) {
            c[j] = c[(j - 1) / 2];
            j = (j - 1) / 2;
        }
        c[j] = v;
    }
    for (uint32_t i = k; i < n; i++) {
        if (!cand_worse(&c[0], &c[i])) continue; /* not better than the worst kept */
        cand v = c[i];
        uint32_t j = 0;
        for (;;) {
            uint32_t l = 2 * j + 1, r = l + 1, m = j;
            const cand *worst = &v;
            if (l < k && cand_worse(&c[l], worst)) {
                m = l;
                worst = &c[l];
            }
            if (r < k && cand_worse(&c[r], worst)) m = r;
            if (m == j) break;
            c[j] = c[m];
            j = m;
        }
        c[j] = v;
    }
    qsort(c, k, sizeof *c, cand_cmp);
    return k;
}

/* The first logit that is NaN or +inf: an error naming it. */
static bst_status bad_logit(const float *logits, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return bsti_fail(BST_ERR_INVALID_ARG, "sampler: logit of token %u is %s", i,
                             isnan(logits[i]) ? "NaN" : "+inf");
    return bsti_fail(BST_ERR_INTERNAL, "sampler: a logit was NaN or +inf, then was not");
}

#define GREEDY_BLOCK 256u /* logits per block in greedy_pick, a multiple of 8 */

/* Four floats, and four lanes of comparison results (GCC/clang vector extensions: SSE2 or NEON
 * registers, no ISA-specific code). */
typedef float greedy_f4 __attribute__((vector_size(16)));
typedef int32_t greedy_i4 __attribute__((vector_size(16)));

/* Lane-wise x > m ? x : m, and the lanes where x is NaN or +inf ORed into *bad. */
static inline greedy_f4 greedy_step(greedy_f4 m, greedy_f4 x, greedy_i4 *bad)
{
    const greedy_f4 inf = {INFINITY, INFINITY, INFINITY, INFINITY};
    const greedy_i4 gt = x > m;
    *bad |= ~(x < inf);
    return (greedy_f4)((gt & (greedy_i4)x) | (~gt & (greedy_i4)m));
}

/* Plain greedy: the first maximum of logits[0..n), or bad_logit's error when one is NaN or
 * +inf. A decode step spends this on every one of n_vocab logits (49152 for the default model),
 * so it makes one pass without a branch per logit: each block of GREEDY_BLOCK keeps a maximum
 * per lane and flags NaN/+inf, the first block whose maximum is the largest is remembered, and
 * only that block is scanned again for the first index holding that value. Same result as
 * comparing one logit at a time with '>' (ties keep the first; -0 == +0 is a tie). */
static bst_status greedy_pick(const float *logits, uint32_t n, int32_t *out_token)
{
    float best = -INFINITY;
    uint32_t best_block = 0;
    for (uint32_t b = 0; b < n; b += GREEDY_BLOCK) {
        const uint32_t end = n - b < GREEDY_BLOCK ? n : b + GREEDY_BLOCK;
        greedy_f4 m0 = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, m1 = m0;
        greedy_i4 bad = {0, 0, 0, 0};
        uint32_t i = b;
        for (; i + 8 <= end; i += 8) {
            greedy_f4 x0, x1;
            memcpy(&x0, logits + i, sizeof x0);
            memcpy(&x1, logits + i + 4, sizeof x1);
            m0 = greedy_step(m0, x0, &bad);
            m1 = greedy_step(m1, x1, &bad);
        }
        m0 = greedy_step(m0, m1, &bad); /* m1 holds no NaN/+inf that bad has not seen */
        float block_max = m0[0];
        for (int l = 1; l < 4; l++)
            block_max = m0[l] > block_max ? m0[l] : block_max;
        int flagged = bad[0] | bad[1] | bad[2] | bad[3];
        for (; i < end; i++) {
            const float x = logits[i];
            block_max = x > block_max ? x : block_max;
            flagged |= !(x < INFINITY);
        }
        if (flagged)
            return bad_logit(logits, n);
        if (block_max > best) {
            best = block_max;
            best_block = b;
        }
    }
    /* best is a logit of best_block's block, or -inf when all are (then logits[0] is one). */
    for (uint32_t i = best_block; i < n; i++) {
        if (logits[i] == best) {
            *out_token = (int32_t)i;
            return BST_OK;
        }
    }
    return bsti_fail(BST_ERR_INTERNAL, "sampler: the maximum logit was not found again");
}

bst_status bsti_sampler_sample(bsti_sampler *s, const float *logits, const int32_t *history,
                               uint32_t n_history, int32_t *out_token)
{
    if (!s || !logits || !out_token || (!history && n_history))
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_sampler_sample: NULL argument");
    *out_token = -1;
    const bst_sampler_params *p = &s->p;
    uint32_t n = s->n_vocab;
    const bool penalize = p->repeat_penalty != 1.0f && p->repeat_last_n != 0 && n_history;
    if (p->temperature <= 0.0f && !penalize) /* plain greedy: no candidate copy */
        return greedy_pick(logits, n, out_token);
    cand *c = s->cands;
    for (uint32_t i = 0; i < n; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return bad_logit(logits, n); /* none before i is: names token i */
        c[i] = (cand){logits[i], (int32_t)i};
    }

    /* Repetition penalty, once per distinct token in the window (llama.cpp's rule: positive
     * logits are divided, the others multiplied, so the token always becomes less likely). */
    if (penalize) {
        uint32_t window = p->repeat_last_n < 0 || (uint32_t)p->repeat_last_n > n_history
                              ? n_history
                              : (uint32_t)p->repeat_last_n;
        if (++s->stamp == 0) { /* wrapped: clear the stamps once every 2^32 calls */
            memset(s->seen, 0, (size_t)n * sizeof *s->seen);
            s->stamp = 1;
        }
        for (uint32_t i = n_history - window; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || (uint32_t)t >= n)
                return bsti_fail(BST_ERR_INVALID_ARG, "sampler: history token %d is outside the vocabulary", t);
            if (s->seen[t] == s->stamp) continue;
            s->seen[t] = s->stamp;
            if (c[t].logit <= 0.0f) c[t].logit *= p->repeat_penalty;
            else c[t].logit /= p->repeat_penalty;
        }
    }

    if (p->temperature <= 0.0f) { /* greedy: the first maximum */
        uint32_t best = 0;
        for (uint32_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        *out_token = (int32_t)best;
        return BST_OK;
    }

    uint32_t m = n;
    bool sorted = false;
    if (p->top_k > 0) {
        m = top_k(c, m, (uint32_t)p->top_k);
        sorted = true;
    }
    if (p->top_p < 1.0f) {
        if (!sorted) qsort(c, m, sizeof *c, cand_cmp);
        sorted = true;
        if (c[0].logit == -INFINITY) m = 1; /* everything masked: the sums below are 0/0 */
        double sum = 0.0;
        for (uint32_t i = 0; i < m; i++) sum += exp((double)c[i].logit - (double)c[0].logit);
        double cum = 0.0;
        for (uint32_t i = 0; i < m && m > 1; i++) {
            cum += exp((double)c[i].logit - (double)c[0].logit) / sum;
            if (cum >= (double)p->top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p); the best always stays. */
        uint32_t best = 0;
        for (uint32_t i = 1; i < m; i++)
            if (cand_cmp(&c[i], &c[best]) < 0) best = i;
        float max_logit = c[best].logit;
        float min_logit = max_logit + logf(p->min_p);
        uint32_t kept = 0;
        for (uint32_t i = 0; i < m; i++)
            if (c[i].logit >= min_logit || i == best) c[kept++] = c[i];
        m = kept;
    }

    /* Temperature, then softmax and one draw. */
    float max_logit = -INFINITY;
    for (uint32_t i = 0; i < m; i++) {
        c[i].logit /= p->temperature;
        if (c[i].logit > max_logit) max_logit = c[i].logit;
    }
    if (max_logit == -INFINITY || max_logit == INFINITY) {
        /* Every candidate masked, or a temperature so small the best logit overflowed: the
         * distribution is degenerate, so take its (first) best candidate. */
        uint32_t best = 0;
        for (uint32_t i = 1; i < m; i++)
            if (cand_cmp(&c[i], &c[best]) < 0) best = i;
        *out_token = c[best].id;
        return BST_OK;
    }
    double sum = 0.0;
    for (uint32_t i = 0; i < m; i++) sum += exp((double)(c[i].logit - max_logit));
    double target = uniform(s->rng) * sum, cum = 0.0;
    int32_t pick = c[m - 1].id;
    for (uint32_t i = 0; i < m; i++) {
        cum += exp((double)(c[i].logit - max_logit));
        if (target < cum) {
            pick = c[i].id;
            break;
        }
    }
    *out_token = pick;
    return BST_OK;
}
