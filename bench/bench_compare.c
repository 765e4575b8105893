/*
 * bench/bench_compare.c — two bench documents side by side: for every case measured in both,
 * the ratio of median times B / A, flagged as a regression when B is slower by more than the
 * noise threshold and as an improvement when faster by as much (1 / (1 + t), symmetric in the
 * log). Cases match on op, dtype, shape, backend, device name and kernel variant — not on the
 * device index or fingerprint, so a run after a driver update still lines up with the one
 * before it. Failing that, a case matches the one case of the same op, dtype, shape, backend
 * and variant on a differently named device, when each document holds exactly one such case:
 * the same plugin on another chip (npu-sim's npu-small against npu-large), printed with both
 * device names. Times are device times (last_execute_ns) when both cases have them, else wall
 * times; the "time" column says which. Model results match on their backend list and compare
 * tokens per second, and device-time tokens per second where both rows have them.
 */
#include "bench.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static bool same_case(const bench_result *a, const bench_result *b)
{
    return strcmp(a->op, b->op) == 0 && strcmp(a->dtype, b->dtype) == 0 &&
           strcmp(a->shape, b->shape) == 0 && strcmp(a->backend, b->backend) == 0 &&
           strcmp(a->device_name, b->device_name) == 0 && strcmp(a->variant, b->variant) == 0;
}

static bool same_case_any_device(const bench_result *a, const bench_result *b)
{
    return strcmp(a->op, b->op) == 0 && strcmp(a->dtype, b->dtype) == 0 &&
           strcmp(a->shape, b->shape) == 0 && strcmp(a->backend, b->backend) == 0 &&
           strcmp(a->variant, b->variant) == 0;
}

/* Measured cases of d like key on any device; *out_last the last of them. */
static uint32_t count_any_device(const bench_doc *d, const bench_result *key,
                                 const bench_result **out_last)
{
    uint32_t n = 0;
    for (size_t i = 0; i < d->results.n; i++)
        if (d->results.items[i].status == BENCH_OK &&
            same_case_any_device(&d->results.items[i], key)) {
            n++;
            *out_last = &d->results.items[i];
        }
    return n;
}

/* key's case in d (key belongs to `own`): exact, else the unique one on another device. */
static const bench_result *find(const bench_doc *d, const bench_doc *own, const bench_result *key)
{
    for (size_t i = 0; i < d->results.n; i++)
        if (d->results.items[i].status == BENCH_OK && same_case(&d->results.items[i], key))
            return &d->results.items[i];
    const bench_result *other = NULL, *self = NULL;
    if (count_any_device(d, key, &other) == 1 && count_any_device(own, key, &self) == 1)
        return other;
    return NULL;
}

static bool has_device_time(const bench_result *r)
{
    return strcmp(r->time_source, "device") == 0 && r->device_timing.n_samples > 0;
}

static const bench_timing *compared_timing(const bench_result *r, bool device)
{
    return device ? &r->device_timing : &r->timing;
}

static double spread(const bench_timing *t)
{
    double m = t->stats.median_ns;
    return m > 0 ? t->stats.stddev_ns / m : 0.0;
}

static void fmt_time(double ns, char *buf, size_t n)
{
    if (ns < 1e3)
        snprintf(buf, n, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, n, "%.3f us", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, n, "%.3f ms", ns / 1e6);
    else
        snprintf(buf, n, "%.3f s", ns / 1e9);
}

static void describe(const bench_doc *d, const char *name, FILE *out)
{
    char commit[13];
    snprintf(commit, sizeof commit, "%.12s", d->git_commit);
    fprintf(out, "%s: bastion %s, commit %s, %s, %s, %u threads\n", name, d->bastion_version,
            commit, d->created, d->machine.cpu_model[0] ? d->machine.cpu_model : "unknown CPU",
            d->threads);
}

bst_status bench_compare(const bench_doc *a, const bench_doc *b, double threshold_pct, FILE *out,
                         bench_compare_summary *sum, bench_error *e)
{
    bench_compare_summary s;
    memset(&s, 0, sizeof s);
    if (!(threshold_pct >= 0.0) || threshold_pct > 1000.0)
        return bench_fail(e, BST_ERR_INVALID_ARG, "threshold %g%% is out of range (0..1000)",
                          threshold_pct);
    const double t = threshold_pct / 100.0;
    const double slow = 1.0 + t, fast = 1.0 / (1.0 + t);

    describe(a, "A", out);
    describe(b, "B", out);
    fprintf(out,
            "Noise threshold %.3g%%: a case is a REGRESSION when its median time in B is more "
            "than %.3g%% above A's (B/A > %.4f), an improvement when B/A < %.4f. Medians of "
            "the same case move by a few percent between runs on a shared machine (frequency, "
            "other tenants, memory placement), so smaller changes are reported but not "
            "flagged. \"noisy\" marks a case whose own spread (stddev/median) in either run "
            "exceeds the threshold: its flag is less certain.\n",
            threshold_pct, threshold_pct, slow, fast);
    const bench_bandwidth *ba = &a->baselines.bandwidth, *bb = &b->baselines.bandwidth;
    if (ba->measured && bb->measured && ba->gbs > 0)
        fprintf(out,
                "Baseline memory bandwidth: A %.3g GB/s, B %.3g GB/s (B/A %.3f): when the "
                "machine itself moved, every ratio moves with it.\n",
                ba->gbs, bb->gbs, bb->gbs / ba->gbs);
    fprintf(out, "\n%-8s %-6s %-14s %-10s %-16s %-6s %12s %12s %7s  %s\n", "op", "dtype",
            "shape", "backend", "variant", "time", "A median", "B median", "B/A", "verdict");

    for (size_t i = 0; i < a->results.n; i++) {
        const bench_result *ra = &a->results.items[i];
        if (ra->status != BENCH_OK)
            continue;
        const bench_result *rb = find(b, a, ra);
        if (!rb)
            continue;
        s.matched++;
        bool dev = has_device_time(ra) && has_device_time(rb);
        const bench_timing *xa = compared_timing(ra, dev), *xb = compared_timing(rb, dev);
        double ratio = xb->stats.median_ns / xa->stats.median_ns;
        bool noisy = spread(xa) > t || spread(xb) > t;
        s.noisy += noisy;
        const char *verdict = "";
        if (ratio > slow) {
            verdict = "REGRESSION";
            s.regressions++;
        } else if (ratio < fast) {
            verdict = "improvement";
            s.improvements++;
        }
        char ta[32], tb[32];
        fmt_time(xa->stats.median_ns, ta, sizeof ta);
        fmt_time(xb->stats.median_ns, tb, sizeof tb);
        fprintf(out, "%-8s %-6s %-14s %-10s %-16s %-6s %12s %12s %7.3f  %s%s%s\n", ra->op,
                ra->dtype, ra->shape, ra->backend, ra->variant, dev ? "device" : "wall", ta, tb,
                ratio, verdict, noisy && verdict[0] ? " " : "", noisy ? "(noisy)" : "");
        if (strcmp(ra->device_name, rb->device_name) != 0)
            fprintf(out, "         (device: A %s, B %s)\n", ra->device_name, rb->device_name);
    }
    for (int side = 0; side < 2; side++) {
        const bench_doc *x = side ? b : a, *y = side ? a : b;
        bool header = false;
        for (size_t i = 0; i < x->results.n; i++) {
            const bench_result *r = &x->results.items[i];
            if (r->status != BENCH_OK || find(y, x, r))
                continue;
            if (!header) {
                fprintf(out, "\nMeasured only in %s:\n", side ? "B" : "A");
                header = true;
            }
            fprintf(out, "  %s %s %s %s %s\n", r->op, r->dtype, r->shape, r->backend, r->variant);
            if (side)
                s.only_b++;
            else
                s.only_a++;
        }
    }

    /* Whole-model rows: tokens per second, higher is better, so the ratio is A/B in time. A row
     * matches one of the same backends, lengths and depth: the same test from a deeper cache is
     * another test. */
    bool mheader = false;
    for (uint32_t i = 0; i < a->n_model_results; i++) {
        const bench_model_result *ma = &a->model_results[i];
        if (strcmp(ma->status, "ok") != 0)
            continue;
        for (uint32_t j = 0; j < b->n_model_results; j++) {
            const bench_model_result *mb = &b->model_results[j];
            if (strcmp(mb->status, "ok") != 0 || strcmp(ma->backends, mb->backends) != 0 ||
                ma->n_prompt != mb->n_prompt || ma->n_gen != mb->n_gen ||
                ma->n_depth != mb->n_depth)
                continue;
            if (!mheader) {
                fprintf(out, "\n%-16s %-20s %12s %12s %7s  %s\n", "model backends", "test",
                        "A tok/s", "B tok/s", "B/A", "verdict");
                mheader = true;
            }
            /* k = 2, 3: the rows' device-time rates (bench_model.c), where both have them. */
            const double va[4] = {ma->pp_tps, ma->tg_tps, ma->pp_device_tps, ma->tg_device_tps},
                         vb[4] = {mb->pp_tps, mb->tg_tps, mb->pp_device_tps, mb->tg_device_tps};
            for (int k = 0; k < 4; k++) {
                if (!(va[k] > 0) || !(vb[k] > 0))
                    continue;
                s.matched++;
                double time_ratio = va[k] / vb[k];
                const char *verdict = "";
                if (time_ratio > slow) {
                    verdict = "REGRESSION";
                    s.regressions++;
                } else if (time_ratio < fast) {
                    verdict = "improvement";
                    s.improvements++;
                }
                char name[32], test[40];
                bench_model_test_name(ma, k % 2 == 1, name, sizeof name);
                snprintf(test, sizeof test, "%s%s", name, k >= 2 ? " device" : "");
                fprintf(out, "%-16s %-20s %12.2f %12.2f %7.3f  %s\n",
                        ma->backends[0] ? ma->backends : "default", test, va[k], vb[k],
                        vb[k] / va[k], verdict);
            }
        }
    }

    fprintf(out, "\n%u matched, %u regression%s, %u improvement%s, %u noisy, %u only in A, %u only "
                 "in B\n",
            s.matched, s.regressions, s.regressions == 1 ? "" : "s", s.improvements,
            s.improvements == 1 ? "" : "s", s.noisy, s.only_a, s.only_b);
    if (sum)
        *sum = s;
    if (ferror(out))
        return bench_fail(e, BST_ERR_IO, "error writing the comparison");
    return BST_OK;
}
