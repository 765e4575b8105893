/*
 * bench/bench_util.c — what every part of the harness shares: error records, the clock, sample
 * statistics, the measurement loop (warm-up, then repetitions to a budget), and result lists.
 */
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bst_status bench_fail(bench_error *e, bst_status st, const char *fmt, ...)
{
    if (!e)
        return st;
    e->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return st;
}

bst_status bench_lib_fail(bench_error *e, bst_status st, const char *what)
{
    const char *name = bst_status_name(st);
    const char *msg = bst_last_error();
    return bench_fail(e, st, "%s: %s%s%s", what, name ? name : "error", msg[0] ? ": " : "", msg);
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

bst_status bench_stats_compute(const uint64_t *samples, uint32_t n, bench_stats *out,
                               bench_error *e)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0)
        return BST_OK;
    uint64_t *s = malloc((size_t)n * sizeof *s);
    if (!s)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "statistics of %u samples: out of memory", n);
    memcpy(s, samples, (size_t)n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_u64);
    out->min_ns = (double)s[0];
    out->max_ns = (double)s[n - 1];
    out->median_ns = n % 2 ? (double)s[n / 2] : ((double)s[n / 2 - 1] + (double)s[n / 2]) / 2.0;
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++)
        sum += (double)s[i];
    out->mean_ns = sum / n;
    if (n > 1) {
        double sq = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            double d = (double)s[i] - out->mean_ns;
            sq += d * d;
        }
        out->stddev_ns = sqrt(sq / (n - 1));
    }
    free(s);
    return BST_OK;
}

void bench_timing_free(bench_timing *t)
{
    if (!t)
        return;
    free(t->samples_ns);
    memset(t, 0, sizeof *t);
}

static bst_status push_sample(bench_timing *t, uint32_t *cap, uint64_t ns, bench_error *e)
{
    if (t->n_samples == *cap) {
        uint32_t grown = *cap ? *cap * 2 : 64;
        uint64_t *p = realloc(t->samples_ns, (size_t)grown * sizeof *p);
        if (!p)
            return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "sample buffer: out of memory");
        t->samples_ns = p;
        *cap = grown;
    }
    t->samples_ns[t->n_samples++] = ns;
    return BST_OK;
}

bst_status bench_measure(const bench_budget *b, bench_call_fn fn, void *user, bench_timing *out,
                         bench_error *e)
{
    return bench_measure_between(b, fn, NULL, user, out, e);
}

/* Calls `between` (when given) before a call, outside its timing. */
static bst_status call_timed(bench_call_fn fn, bench_call_fn between, void *user, uint64_t it,
                             uint64_t *ns, bench_error *e)
{
    if (between) {
        bst_status st = between(user, it, e);
        if (st != BST_OK)
            return st;
    }
    const uint64_t t0 = bench_now_ns();
    bst_status st = fn(user, it, e);
    *ns = bench_now_ns() - t0;
    return st;
}

bst_status bench_measure_between(const bench_budget *b, bench_call_fn fn, bench_call_fn between,
                                 void *user, bench_timing *out, bench_error *e)
{
    memset(out, 0, sizeof *out);
    const uint64_t budget_ns = b->seconds > 0 ? (uint64_t)(b->seconds * 1e9) : 0;
    const uint32_t max_reps = b->max_reps ? b->max_reps : 1;
    const uint32_t min_reps = b->min_reps < max_reps ? b->min_reps : max_reps;
    uint64_t it = 0;

    /* Warm-up: the first call pays for first touch and lazy set-up, and is kept apart; more
     * calls while they are cheap let caches, branch predictors and clocks settle. */
    uint64_t ns = 0;
    bst_status st = call_timed(fn, between, user, it++, &ns, e);
    if (st != BST_OK)
        return st;
    out->first_ns = ns;
    out->warmup = 1;
    uint64_t warm_spent = out->first_ns;
    while (out->warmup < b->max_warmup && warm_spent < budget_ns / 20) {
        st = call_timed(fn, between, user, it++, &ns, e);
        if (st != BST_OK)
            return st;
        warm_spent += ns;
        out->warmup++;
    }

    /* min_reps holds past the budget, but not past twice the budget: a case whose single call
     * takes about the whole budget (its estimate was low) gets one or two samples, not a
     * minute of them. A zero budget means "exactly min_reps" (bench model). */
    uint32_t cap = 0;
    uint64_t spent = 0, last = 0;
    while (out->n_samples < max_reps) {
        if (spent >= budget_ns) {
            if (out->n_samples >= min_reps)
                break;
            if (budget_ns > 0 && out->n_samples > 0 && spent + last > 2 * budget_ns)
                break;
        }
        st = call_timed(fn, between, user, it++, &ns, e);
        if (st != BST_OK)
            return st;
        st = push_sample(out, &cap, ns, e);
        if (st != BST_OK)
            return st;
        last = ns;
        spent += last;
    }
    return bench_stats_compute(out->samples_ns, out->n_samples, &out->stats, e);
}

uint32_t bench_cold_copies(uint64_t weight_bytes, uint64_t llc_bytes)
{
    if (weight_bytes == 0 || llc_bytes == 0)
        return 1;
    /* The same footprint as the bandwidth baseline's buffer: 4x the LLC. Twice is not enough
     * where the LLC is not strictly LRU (AMD's victim L3): a cyclic sweep over 2x its size
     * still hits in it now and then, and a GEMV would then beat the bandwidth it is measured
     * against. */
    uint64_t want = 4 * llc_bytes;
    uint64_t copies = (want + weight_bytes - 1) / weight_bytes;
    if (copies < 1)
        copies = 1;
    if (copies > 4096)
        copies = 4096;
    return (uint32_t)copies;
}

static const char *const status_names[] = {"ok", "skipped", "unsupported", "failed"};

const char *bench_result_status_name(bench_result_status s)
{
    return (unsigned)s < sizeof status_names / sizeof status_names[0] ? status_names[s] : "?";
}

bool bench_result_status_parse(const char *name, bench_result_status *out)
{
    for (unsigned i = 0; i < sizeof status_names / sizeof status_names[0]; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (bench_result_status)i;
            return true;
        }
    }
    return false;
}

void bench_result_list_free(bench_result_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
    {
        bench_timing_free(&l->items[i].timing);
        bench_timing_free(&l->items[i].device_timing);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

bool bench_grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    void *q = c <= SIZE_MAX / elem ? realloc(*buf, c * elem) : NULL;
    if (!q)
        return false;
    *buf = q;
    *cap = c;
    return true;
}

bench_result *bench_result_list_add(bench_result_list *l)
{
    if (!bench_grow((void **)&l->items, &l->cap, l->n + 1, sizeof *l->items))
        return NULL;
    bench_result *r = &l->items[l->n++];
    memset(r, 0, sizeof *r);
    r->device = -1;
    r->read_index = -1;
    r->bandwidth_fraction = NAN;
    r->sgemm_ratio = NAN;
    r->read_fraction = NAN;
    snprintf(r->time_source, sizeof r->time_source, "wall");
    return r;
}
