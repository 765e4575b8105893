/*
 * bench/bench_report.c — reports rendered from a bench document (never from a live run, so a
 * report can be made again from the file at any time): a Markdown table, CSV for spreadsheets
 * and scripts (RFC 4180 quoting, raw nanoseconds), and an SVG bar chart per backend and op,
 * written by hand as plain text.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool bench_format_parse(const char *name, bench_format *out)
{
    if (strcmp(name, "md") == 0 || strcmp(name, "markdown") == 0)
        *out = BENCH_FORMAT_MD;
    else if (strcmp(name, "csv") == 0)
        *out = BENCH_FORMAT_CSV;
    else if (strcmp(name, "svg") == 0)
        *out = BENCH_FORMAT_SVG;
    else
        return false;
    return true;
}

void bench_model_test_name(const bench_model_result *m, bool tg, char *out, size_t size)
{
    const int n = snprintf(out, size, "%s%u", tg ? "tg" : "pp", tg ? m->n_gen : m->n_prompt);
    if (m->n_depth && n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, " @ d%u", m->n_depth);
}

static void fmt_time(double ns, char *buf, size_t n)
{
    if (!(ns > 0))
        snprintf(buf, n, "-");
    else if (ns < 1e3)
        snprintf(buf, n, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, n, "%.3g µs", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, n, "%.3g ms", ns / 1e6);
    else
        snprintf(buf, n, "%.3g s", ns / 1e9);
}

static void fmt_num(double v, const char *fmt, char *buf, size_t n)
{
    if (isfinite(v))
        snprintf(buf, n, fmt, v);
    else
        snprintf(buf, n, "-");
}

static void device_label(const bench_doc *d, const bench_result *r, char *buf, size_t n)
{
    if (r->device >= 0 && (uint32_t)r->device < d->n_devices)
        snprintf(buf, n, "%s:%d", d->devices[r->device].backend, r->device);
    else
        snprintf(buf, n, "%s", r->backend);
}

static void bytes_text(uint64_t b, char *buf, size_t n)
{
    if (b >= (UINT64_C(1) << 30))
        snprintf(buf, n, "%.3g GiB", (double)b / (double)(UINT64_C(1) << 30));
    else if (b >= (UINT64_C(1) << 20))
        snprintf(buf, n, "%.3g MiB", (double)b / (double)(UINT64_C(1) << 20));
    else
        snprintf(buf, n, "%.3g KiB", (double)b / 1024.0);
}

/* Markdown cells must not contain '|' or newlines. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else
            fputc(*s == '\n' ? ' ' : *s, out);
    }
}

static void md_header(const bench_doc *d, FILE *out)
{
    char commit[13];
    snprintf(commit, sizeof commit, "%.12s", d->git_commit);
    fprintf(out, "# Bastion benchmark (%s)\n\n", d->kind);
    fprintf(out, "- bastion %s, commit %s, %s\n", d->bastion_version, commit, d->created);
    fprintf(out, "- machine: ");
    md_cell(out, d->machine.cpu_model[0] ? d->machine.cpu_model : "unknown CPU");
    char llc[32], mem[32];
    bytes_text(d->machine.llc_bytes, llc, sizeof llc);
    bytes_text(d->machine.memory_bytes, mem, sizeof mem);
    fprintf(out, ", %u CPUs, LLC %s, memory %s\n", d->machine.logical_cpus, llc, mem);
    if (strcmp(d->kind, "ops") == 0)
        fprintf(out, "- settings: %u threads, budget %.3g s per case%s\n", d->threads,
                d->budget.seconds, d->quick ? ", quick" : "");
    else
        fprintf(out, "- settings: %u threads, %u warm repetitions after a cold one\n",
                d->threads, d->budget.max_reps);
    const bench_bandwidth *bw = &d->baselines.bandwidth;
    if (bw->measured) {
        char sz[32];
        bytes_text(bw->bytes, sz, sizeof sz);
        fprintf(out, "- memory read bandwidth (baseline): %.3g GB/s (%s buffer, %u threads%s%s)\n",
                bw->gbs, sz, bw->threads, bw->loads[0] ? ", " : "", bw->loads);
    } else {
        fprintf(out, "- memory read bandwidth (baseline): not measured (%s)\n", bw->reason);
    }
    fprintf(out, "- sgemm baseline: ");
    md_cell(out, d->baselines.sgemm_library);
    fprintf(out, "\n");
    for (size_t i = 0; i < d->baselines.n_sgemm; i++) {
        const bench_sgemm *s = &d->baselines.sgemm[i];
        char t[32];
        fmt_time(s->timing.stats.median_ns, t, sizeof t);
        fprintf(out, "  - %s %lldx%lldx%lld: %s, %.4g GFLOP/s\n", s->routine, (long long)s->m,
                (long long)s->n, (long long)s->k, t, s->gflops);
    }
    for (size_t i = 0; i < d->baselines.n_reads; i++) {
        const bench_read *r = &d->baselines.reads[i];
        char sz[32], t[32];
        bytes_text(r->bytes, sz, sizeof sz);
        fprintf(out, "- same-size cold read of %s (", sz);
        md_cell(out, r->what);
        if (!r->measured) {
            fprintf(out, "): not measured (%s)\n", r->reason);
            continue;
        }
        fmt_time(r->timing.stats.median_ns, t, sizeof t);
        fprintf(out, "): %s, %.3g GB/s (%u thread%s, %u copies)", t, r->gbs, r->threads,
                r->threads == 1 ? "" : "s", r->copies);
        if (r->stream_gbs > 0)
            fprintf(out, "; streaming all copies: %.3g GB/s", r->stream_gbs);
        if (r->handoff_ns > 0)
            fprintf(out, "; hand-off round trip: %.0f ns", r->handoff_ns);
        fprintf(out, "\n");
    }
    fprintf(out, "\n");
}

/* The model rows' device times: per device, and the whole run's rate in device time. */
/* The bandwidth each row's roofline used, sampled around its tg repetitions: a wide range says
 * the machine's memory changed speed during the run. */
static void md_tg_bandwidth(const bench_doc *d, FILE *out)
{
    bool any = false;
    for (uint32_t i = 0; i < d->n_model_results; i++) {
        const bench_model_result *m = &d->model_results[i];
        if (!isfinite(m->tg_bandwidth_gbs))
            continue;
        fprintf(out, "%s%s: %.1f GB/s (%.1f-%.1f)", any ? "; " : "\nRoofline bandwidth (median "
                "and range of the reads sampled around the tg repetitions): ",
                m->backends[0] ? m->backends : "default", m->tg_bandwidth_gbs,
                m->tg_bandwidth_min_gbs, m->tg_bandwidth_max_gbs);
        any = true;
    }
    if (any)
        fprintf(out, "\n");
}

static void md_model_device_times(const bench_doc *d, FILE *out)
{
    bool any = false;
    for (uint32_t i = 0; i < d->n_model_results; i++)
        any = any || (strcmp(d->model_results[i].status, "ok") == 0 &&
                      d->model_results[i].n_device_times > 0);
    if (!any)
        return;
    fprintf(out, "\n### Device time (one profiled repetition of each test)\n\n");
    fprintf(out, "| backends | device | pp partitions | pp device | pp device tok/s | pp wall in "
                 "execute | tg partitions | tg device per token | tg device tok/s | tg wall in "
                 "execute |\n");
    fprintf(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (uint32_t i = 0; i < d->n_model_results; i++) {
        const bench_model_result *m = &d->model_results[i];
        if (strcmp(m->status, "ok") != 0)
            continue;
        const char *name = m->backends[0] ? m->backends : "default";
        for (uint32_t k = 0; k < m->n_device_times; k++) {
            const bench_model_device_time *t = &m->device_times[k];
            char pd[32] = "-", pt[32], pw[32] = "-", td[32] = "-", tt[32], tw[32] = "-";
            if (t->pp_partitions) {
                if (t->pp_all_device)
                    fmt_time((double)t->pp_device_ns, pd, sizeof pd);
                fmt_time((double)t->pp_wall_ns, pw, sizeof pw);
            }
            if (t->tg_partitions && m->n_gen) {
                if (t->tg_all_device)
                    fmt_time((double)t->tg_device_ns / m->n_gen, td, sizeof td);
                fmt_time((double)t->tg_wall_ns / m->n_gen, tw, sizeof tw);
            }
            fmt_num(t->pp_device_tps, "%.4g", pt, sizeof pt);
            fmt_num(t->tg_device_tps, "%.4g", tt, sizeof tt);
            fprintf(out, "| %s | ", name);
            md_cell(out, t->backend);
            fprintf(out, "/");
            md_cell(out, t->device_name);
            fprintf(out, " | %u | %s | %s | %s | %u | %s | %s | %s |\n", t->pp_partitions, pd, pt,
                    pw, t->tg_partitions, td, tt, tw);
        }
        char a[32], b[32];
        fmt_num(m->pp_device_tps, "%.4g", a, sizeof a);
        fmt_num(m->tg_device_tps, "%.4g", b, sizeof b);
        fprintf(out, "| %s | all devices + copies | | | %s | | | | %s | |\n", name, a, b);
    }
    fprintf(out, "\ndevice: summed last_execute_ns of the device's partition runs (a simulated "
                 "device's modelled time); device tok/s: tokens / that time, as if the device "
                 "were alone; \"all devices + copies\": tokens / (every device's time + the "
                 "copies' wall time), nothing overlapped. wall in execute: host time around "
                 "the same executes.\n");
}

static void md_report(const bench_doc *d, FILE *out)
{
    md_header(d, out);
    bool any = false;
    for (size_t i = 0; i < d->results.n; i++)
        any = any || d->results.items[i].status == BENCH_OK;
    if (any) {
        fprintf(out, "| op | dtype | shape | case | device | variant | median | min | max | "
                     "stddev | GFLOP/s | GB/s | x bandwidth | x read | x sgemm | compile | "
                     "first call | device median | device min | device max |\n");
        fprintf(out, "|---|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
                     "--:|\n");
    }
    for (size_t i = 0; i < d->results.n; i++) {
        const bench_result *r = &d->results.items[i];
        if (r->status != BENCH_OK)
            continue;
        char dev[64], med[32], mn[32], mx[32], sd[32], gf[32], gb[32], bw[32], rd[32], sg[32],
            cp[32], first[32];
        device_label(d, r, dev, sizeof dev);
        fmt_time(r->timing.stats.median_ns, med, sizeof med);
        fmt_time(r->timing.stats.min_ns, mn, sizeof mn);
        fmt_time(r->timing.stats.max_ns, mx, sizeof mx);
        fmt_time(r->timing.stats.stddev_ns, sd, sizeof sd);
        fmt_num(r->gflops, "%.4g", gf, sizeof gf);
        fmt_num(r->gbs, "%.4g", gb, sizeof gb);
        fmt_num(r->bandwidth_fraction, "%.2f", bw, sizeof bw);
        fmt_num(r->read_fraction, "%.2f", rd, sizeof rd);
        fmt_num(r->sgemm_ratio, "%.3g", sg, sizeof sg);
        fmt_time((double)r->compile_ns, cp, sizeof cp);
        fmt_time((double)r->timing.first_ns, first, sizeof first);
        fprintf(out, "| %s | %s | %s | ", r->op, r->dtype, r->shape);
        md_cell(out, r->label);
        fprintf(out, " | %s | ", dev);
        md_cell(out, r->variant);
        char dmed[32] = "-", dmin[32] = "-", dmax[32] = "-";
        if (strcmp(r->time_source, "device") == 0 && r->device_timing.n_samples) {
            fmt_time(r->device_timing.stats.median_ns, dmed, sizeof dmed);
            fmt_time(r->device_timing.stats.min_ns, dmin, sizeof dmin);
            fmt_time(r->device_timing.stats.max_ns, dmax, sizeof dmax);
        }
        fprintf(out, " | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                med, mn, mx, sd, gf, gb, bw, rd, sg, cp, first, dmed, dmin, dmax);
    }
    if (any)
        fprintf(out, "\nmedian/min/max/stddev: host wall time per call (launch and sync "
                     "included); device: the backend's own time per call (last_execute_ns; "
                     "modelled for a simulated device). GFLOP/s, GB/s and the ratios come from "
                     "the device median where there is one, else from the wall median. x "
                     "bandwidth: GB/s over the streaming read bandwidth (the one measured with "
                     "the variant's same-size read, else the baseline); x read: the same-size "
                     "cold read's time for the weight's bytes over this median (1.0: the op "
                     "costs no more than reading its weight).\n");
    bool header = false;
    for (size_t i = 0; i < d->results.n; i++) {
        const bench_result *r = &d->results.items[i];
        if (r->status == BENCH_OK)
            continue;
        if (!header) {
            fprintf(out, "\nNot measured:\n\n");
            header = true;
        }
        char dev[64];
        device_label(d, r, dev, sizeof dev);
        fprintf(out, "- %s %s %s on %s%s%s: %s: ", r->op, r->dtype, r->shape, dev,
                r->variant[0] ? " variant " : "", r->variant, bench_result_status_name(r->status));
        md_cell(out, r->reason);
        fprintf(out, "\n");
    }
    if (d->has_model) {
        fprintf(out, "\n## Model: ");
        md_cell(out, d->model.name[0] ? d->model.name : d->model.path);
        fprintf(out, " (%s)\n\n", d->model.file_hash);
        fprintf(out, "| backends | threads | KV | pp | pp tok/s | tg | tg tok/s | cold pp tok/s | "
                     "cold tg tok/s | roofline tok/s | x roofline | load | compile | peak RSS | "
                     "tuning | device memory |\n");
        fprintf(out, "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n");
        for (uint32_t i = 0; i < d->n_model_results; i++) {
            const bench_model_result *m = &d->model_results[i];
            if (strcmp(m->status, "ok") != 0) {
                fprintf(out, "| %s | %u | %s | %s: ", m->backends[0] ? m->backends : "default",
                        m->threads, m->kv_type[0] ? m->kv_type : "-", m->status);
                md_cell(out, m->reason);
                fprintf(out, " | | | | | | | | | | | | |\n");
                continue;
            }
            char a[32], b[32], c[32], dd[32], f[32], g[32], h[32], rss[32], ld[32];
            fmt_num(m->pp_tps, "%.4g", a, sizeof a);
            fmt_num(m->tg_tps, "%.4g", b, sizeof b);
            fmt_num(m->pp_cold_tps, "%.4g", c, sizeof c);
            fmt_num(m->tg_cold_tps, "%.4g", dd, sizeof dd);
            fmt_num(m->roofline_tps, "%.4g", f, sizeof f);
            fmt_num(m->roofline_fraction, "%.2f", g, sizeof g);
            fmt_num(m->session_s, "%.3g s", h, sizeof h);
            fmt_num(m->load_s, "%.3g s", ld, sizeof ld);
            if (m->peak_rss_bytes)
                bytes_text(m->peak_rss_bytes, rss, sizeof rss);
            else
                snprintf(rss, sizeof rss, "-");
            char pp[32] = "-", tg[32] = "-";
            if (m->n_prompt)
                bench_model_test_name(m, false, pp, sizeof pp);
            if (m->n_gen)
                bench_model_test_name(m, true, tg, sizeof tg);
            fprintf(out, "| %s | %u | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | ",
                    m->backends[0] ? m->backends : "default", m->threads,
                    m->kv_type[0] ? m->kv_type : "-", pp, a, tg, b, c, dd, f, g, ld, h, rss);
            /* tuning: mode and whether the database answered ("cached: hit") */
            bool show_cache = m->tune_cache[0] && strcmp(m->tune_cache, m->tune_mode) != 0;
            if (m->tune_mode[0])
                fprintf(out, "%s%s%s", m->tune_mode, show_cache ? ": " : "",
                        show_cache ? m->tune_cache : "");
            else
                fprintf(out, "-");
            fprintf(out, " | ");
            for (uint32_t k = 0; k < m->n_memory; k++) {
                char tot[32];
                bytes_text(m->memory[k].total_bytes, tot, sizeof tot);
                fprintf(out, "%s", k ? ", " : "");
                md_cell(out, m->memory[k].backend);
                fprintf(out, " %s", tot);
            }
            fprintf(out, "%s |\n", m->n_memory ? "" : "-");
        }
        md_tg_bandwidth(d, out);
        md_model_device_times(d, out);
    }
}

/* --- CSV ----------------------------------------------------------------------------------- */

static void csv_field(FILE *out, const char *s, bool last)
{
    bool quote = strpbrk(s, ",\"\n\r") != NULL;
    if (quote) {
        fputc('"', out);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', out);
            fputc(*s, out);
        }
        fputc('"', out);
    } else {
        fputs(s, out);
    }
    fputc(last ? '\n' : ',', out);
}

static void csv_num(FILE *out, double v, bool last)
{
    char buf[48];
    if (isfinite(v))
        snprintf(buf, sizeof buf, "%.6g", v);
    else
        buf[0] = '\0';
    csv_field(out, buf, last);
}

static void csv_report(const bench_doc *d, FILE *out)
{
    fputs("op,dtype,shape,label,backend,device,device_name,variant,status,reason,n,median_ns,"
          "min_ns,max_ns,mean_ns,stddev_ns,gflops,gbs,bandwidth_fraction,sgemm_ratio,"
          "compile_ns,prepare_ns,first_ns,cache_cold,weight_copies,flops,bytes,time_source,"
          "device_median_ns,device_min_ns,device_max_ns,read_fraction\n",
          out);
    for (size_t i = 0; i < d->results.n; i++) {
        const bench_result *r = &d->results.items[i];
        bool ok = r->status == BENCH_OK;
        char dev[16];
        snprintf(dev, sizeof dev, "%d", r->device);
        csv_field(out, r->op, false);
        csv_field(out, r->dtype, false);
        csv_field(out, r->shape, false);
        csv_field(out, r->label, false);
        csv_field(out, r->backend, false);
        csv_field(out, dev, false);
        csv_field(out, r->device_name, false);
        csv_field(out, r->variant, false);
        csv_field(out, bench_result_status_name(r->status), false);
        csv_field(out, r->reason, false);
        csv_num(out, ok ? (double)r->timing.stats.n : NAN, false);
        csv_num(out, ok ? r->timing.stats.median_ns : NAN, false);
        csv_num(out, ok ? r->timing.stats.min_ns : NAN, false);
        csv_num(out, ok ? r->timing.stats.max_ns : NAN, false);
        csv_num(out, ok ? r->timing.stats.mean_ns : NAN, false);
        csv_num(out, ok ? r->timing.stats.stddev_ns : NAN, false);
        csv_num(out, ok ? r->gflops : NAN, false);
        csv_num(out, ok ? r->gbs : NAN, false);
        csv_num(out, ok ? r->bandwidth_fraction : NAN, false);
        csv_num(out, ok ? r->sgemm_ratio : NAN, false);
        csv_num(out, ok ? (double)r->compile_ns : NAN, false);
        csv_num(out, ok ? (double)r->prepare_ns : NAN, false);
        csv_num(out, ok ? (double)r->timing.first_ns : NAN, false);
        csv_field(out, r->cache_cold ? "1" : "0", false);
        csv_num(out, (double)r->weight_copies, false);
        csv_num(out, r->flops, false);
        csv_num(out, r->bytes, false);
        bool dt = ok && strcmp(r->time_source, "device") == 0 && r->device_timing.n_samples;
        csv_field(out, dt ? "device" : "wall", false);
        csv_num(out, dt ? r->device_timing.stats.median_ns : NAN, false);
        csv_num(out, dt ? r->device_timing.stats.min_ns : NAN, false);
        csv_num(out, dt ? r->device_timing.stats.max_ns : NAN, false);
        csv_num(out, ok ? r->read_fraction : NAN, true);
    }
}

/* Byte counts whole (not rounded to 6 digits); empty when unknown (0). */
static void csv_bytes(FILE *out, uint64_t v, bool last)
{
    char buf[32] = "";
    if (v)
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    csv_field(out, buf, last);
}

/* A model document's rows (its `results` are empty): one line per row, the numbers a
 * spreadsheet compares; device memory is the sum over the row's devices. */
static void csv_model_report(const bench_doc *d, FILE *out)
{
    fputs("engine,backends,status,reason,threads,n_prompt,n_gen,reps,pp_tps,tg_tps,pp_cold_tps,"
          "tg_cold_tps,load_s,session_s,tune_mode,tune_cache,tune_s,roofline_tps,"
          "roofline_fraction,peak_rss_bytes,device_memory_bytes,pp_device_tps,tg_device_tps,"
          "kv_type,n_depth\n",
          out);
    for (uint32_t i = 0; i < d->n_model_results; i++) {
        const bench_model_result *m = &d->model_results[i];
        uint64_t mem = 0;
        for (uint32_t k = 0; k < m->n_memory; k++)
            mem += m->memory[k].total_bytes;
        csv_field(out, m->engine[0] ? m->engine : "bastion", false);
        csv_field(out, m->backends, false);
        csv_field(out, m->status, false);
        csv_field(out, m->reason, false);
        csv_num(out, m->threads, false);
        csv_num(out, m->n_prompt, false);
        csv_num(out, m->n_gen, false);
        csv_num(out, m->reps, false);
        csv_num(out, m->pp_tps, false);
        csv_num(out, m->tg_tps, false);
        csv_num(out, m->pp_cold_tps, false);
        csv_num(out, m->tg_cold_tps, false);
        csv_num(out, m->load_s, false);
        csv_num(out, m->session_s, false);
        csv_field(out, m->tune_mode, false);
        csv_field(out, m->tune_cache, false);
        csv_num(out, m->tune_s, false);
        csv_num(out, m->roofline_tps, false);
        csv_num(out, m->roofline_fraction, false);
        csv_bytes(out, m->peak_rss_bytes, false);
        csv_bytes(out, mem, false);
        csv_num(out, m->pp_device_tps, false);
        csv_num(out, m->tg_device_tps, false);
        csv_field(out, m->kv_type, false);
        csv_num(out, m->n_depth, true);
    }
}

/* --- SVG ----------------------------------------------------------------------------------- */

static void xml_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '&':
            fputs("&amp;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

/* The throughput a chart shows: GFLOP/s for matmul (compute is what it is about), GB/s for the
 * memory-bound rest. */
static double chart_value(const bench_result *r, const char **unit)
{
    bool flops = strcmp(r->op, "matmul") == 0;
    *unit = flops ? "GFLOP/s" : "GB/s";
    return flops ? r->gflops : r->gbs;
}

#define SVG_W 960
#define SVG_LABEL 380
#define SVG_BAR 460
#define SVG_ROW 18
#define SVG_HEAD 34

static void svg_report(const bench_doc *d, FILE *out)
{
    /* Groups: (backend, op) in first-appearance order. */
    size_t n = d->results.n;
    bool *done = calloc(n ? n : 1, sizeof *done);
    size_t rows = 0, groups = 0;
    for (size_t i = 0; i < n; i++) {
        const bench_result *r = &d->results.items[i];
        if (r->status != BENCH_OK)
            continue;
        rows++;
        bool first = true;
        for (size_t j = 0; j < i && first; j++) {
            const bench_result *q = &d->results.items[j];
            first = !(q->status == BENCH_OK && strcmp(q->backend, r->backend) == 0 &&
                      strcmp(q->op, r->op) == 0);
        }
        groups += first;
    }
    int height = 50 + (int)groups * (SVG_HEAD + 10) + (int)rows * SVG_ROW;
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            SVG_W, height);
    fprintf(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(out, "<text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Bastion bench: ");
    xml_text(out, d->machine.cpu_model[0] ? d->machine.cpu_model : "unknown CPU");
    fprintf(out, ", %u threads, %s</text>\n", d->threads, d->created);
    int y = 50;
    for (size_t i = 0; done && i < n; i++) {
        const bench_result *g = &d->results.items[i];
        if (g->status != BENCH_OK || done[i])
            continue;
        const char *unit = "";
        double max = 0.0;
        for (size_t j = i; j < n; j++) {
            const bench_result *r = &d->results.items[j];
            if (r->status == BENCH_OK && strcmp(r->backend, g->backend) == 0 &&
                strcmp(r->op, g->op) == 0) {
                double v = chart_value(r, &unit);
                if (isfinite(v) && v > max)
                    max = v;
            }
        }
        y += 10;
        fprintf(out, "<text x=\"10\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">", y + 16);
        xml_text(out, g->backend);
        fprintf(out, " / ");
        xml_text(out, g->op);
        fprintf(out, " (%s)</text>\n", unit);
        y += SVG_HEAD;
        for (size_t j = i; j < n; j++) {
            const bench_result *r = &d->results.items[j];
            if (r->status != BENCH_OK || strcmp(r->backend, g->backend) != 0 ||
                strcmp(r->op, g->op) != 0)
                continue;
            done[j] = true;
            double v = chart_value(r, &unit);
            double w = max > 0 && isfinite(v) ? v / max * SVG_BAR : 0.0;
            fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", SVG_LABEL - 6,
                    y + SVG_ROW - 5);
            xml_text(out, r->dtype);
            fprintf(out, " ");
            xml_text(out, r->shape);
            fprintf(out, " ");
            xml_text(out, r->variant);
            fprintf(out, " dev%d</text>\n", r->device);
            fprintf(out,
                    "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#4a7fb5\"/>\n",
                    SVG_LABEL, y + 2, w, SVG_ROW - 4);
            fprintf(out, "<text x=\"%.1f\" y=\"%d\">%.4g</text>\n", SVG_LABEL + w + 4,
                    y + SVG_ROW - 5, isfinite(v) ? v : 0.0);
            y += SVG_ROW;
        }
    }
    fprintf(out, "</svg>\n");
    free(done);
}

bst_status bench_report(const bench_doc *d, bench_format f, FILE *out, bench_error *e)
{
    switch (f) {
    case BENCH_FORMAT_MD:
        md_report(d, out);
        break;
    case BENCH_FORMAT_CSV:
        if (d->has_model && d->results.n == 0)
            csv_model_report(d, out);
        else
            csv_report(d, out);
        break;
    case BENCH_FORMAT_SVG:
        svg_report(d, out);
        break;
    default:
        return bench_fail(e, BST_ERR_INVALID_ARG, "unknown report format");
    }
    if (ferror(out))
        return bench_fail(e, BST_ERR_IO, "error writing the report");
    return BST_OK;
}
