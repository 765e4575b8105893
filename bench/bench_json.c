/*
 * bench/bench_json.c — the run as a document, schema "bastion.bench/1" (bench/SCHEMA.md): the
 * writer, and the reader that reports and comparisons start from. Fields are only ever added to
 * a /1 document; a change that removes or retypes one makes it /2. The reader checks every
 * required field and names the first one that is missing or mistyped
 * ("results[3].timing.stats.median_ns: expected a number").
 *
 * Numbers that do not fit a double exactly (fingerprints, source hashes) are written as hex
 * strings; a ratio that does not apply is null, never NaN (which is not JSON).
 */
#include "bench.h"
#include "bench_build_info.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- document life cycle ------------------------------------------------------------------- */

void bench_doc_init(bench_doc *d, const char *kind, int argc, char **argv)
{
    memset(d, 0, sizeof *d);
    snprintf(d->schema, sizeof d->schema, "%s", BENCH_SCHEMA_ID);
    snprintf(d->kind, sizeof d->kind, "%s", kind);
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(d->created, sizeof d->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(d->bastion_version, sizeof d->bastion_version, "%s", bst_version());
    snprintf(d->git_commit, sizeof d->git_commit, "%s", BENCH_GIT_COMMIT);
    /* argv is the subcommand's: argv[0] is "bench". */
    size_t used = (size_t)snprintf(d->command, sizeof d->command, "bastion");
    for (int i = 0; i < argc && used + 1 < sizeof d->command; i++) {
        int n = snprintf(d->command + used, sizeof d->command - used, " %s", argv[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case BST_DEVICE_CPU:
        return "cpu";
    case BST_DEVICE_GPU:
        return "gpu";
    case BST_DEVICE_NPU:
        return "npu";
    case BST_DEVICE_ACCEL:
        return "accel";
    default:
        return "unknown";
    }
}

bst_status bench_doc_add_context(bench_doc *d, const bst_context *ctx, bench_error *e)
{
    /* Called once per context a run uses (bench model: the default one, then each --backend
     * set, since npu-sim loads only when named): records already listed are merged — a plugin
     * by path (a later "loaded" record replaces an earlier one), a device by backend and
     * fingerprint. */
    uint32_t np = bst_context_plugin_count(ctx), nd = bst_context_device_count(ctx);
    bench_plugin *plugins = realloc(d->plugins, (d->n_plugins + np + 1) * sizeof *plugins);
    if (plugins)
        d->plugins = plugins;
    bench_device *devices = realloc(d->devices, (d->n_devices + nd + 1) * sizeof *devices);
    if (devices)
        d->devices = devices;
    if (!plugins || !devices)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "device list: out of memory");
    for (uint32_t i = 0; i < np; i++) {
        bst_plugin_record rec;
        memset(&rec, 0, sizeof rec);
        rec.struct_size = sizeof rec;
        if (bst_context_plugin(ctx, i, &rec) != BST_OK)
            return bench_lib_fail(e, BST_ERR_INTERNAL, "plugin record");
        bench_plugin *p = NULL;
        for (uint32_t k = 0; k < d->n_plugins && !p; k++)
            if (strcmp(d->plugins[k].path, rec.path ? rec.path : "") == 0)
                p = &d->plugins[k];
        if (p && rec.state != BST_PLUGIN_LOADED)
            continue;
        if (!p)
            p = &d->plugins[d->n_plugins++];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", rec.name ? rec.name : "");
        snprintf(p->state, sizeof p->state, "%s",
                 bst_plugin_state_name((bst_plugin_state)rec.state));
        snprintf(p->version, sizeof p->version, "%s", rec.version ? rec.version : "");
        snprintf(p->path, sizeof p->path, "%s", rec.path ? rec.path : "");
        snprintf(p->detail, sizeof p->detail, "%s", rec.detail ? rec.detail : "");
        p->abi_version = rec.abi_version;
    }
    for (uint32_t i = 0; i < nd; i++) {
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        const char *backend = NULL;
        if (bst_context_device(ctx, i, &info, &backend) != BST_OK)
            return bench_lib_fail(e, BST_ERR_INTERNAL, "device info");
        bool known = false;
        for (uint32_t k = 0; k < d->n_devices && !known; k++)
            known = d->devices[k].fingerprint == info.fingerprint &&
                    strcmp(d->devices[k].backend, backend ? backend : "") == 0;
        if (known)
            continue;
        bench_device *v = &d->devices[d->n_devices++];
        snprintf(v->backend, sizeof v->backend, "%s", backend ? backend : "");
        snprintf(v->name, sizeof v->name, "%s", info.name);
        snprintf(v->vendor, sizeof v->vendor, "%s", info.vendor);
        snprintf(v->kind, sizeof v->kind, "%s", kind_name(info.kind));
        snprintf(v->driver_version, sizeof v->driver_version, "%s", info.driver_version);
        v->fingerprint = info.fingerprint;
        v->memory_bytes = info.memory_bytes;
        v->max_alloc_bytes = info.max_alloc_bytes;
        v->max_binding_bytes = info.max_binding_bytes;
        v->unified_memory = info.unified_memory;
        v->self_threaded = info.self_threaded;
    }
    return BST_OK;
}

void bench_doc_free(bench_doc *d)
{
    if (!d)
        return;
    free(d->plugins);
    free(d->devices);
    bench_baselines_free(&d->baselines);
    bench_result_list_free(&d->results);
    for (uint32_t i = 0; i < d->n_model_results; i++) {
        bench_timing_free(&d->model_results[i].pp);
        bench_timing_free(&d->model_results[i].tg);
    }
    free(d->model_results);
    memset(d, 0, sizeof *d);
}

/* --- writing ------------------------------------------------------------------------------- */

static json_object *jstr(const char *s) { return json_object_new_string(s ? s : ""); }
static json_object *jint(int64_t v) { return json_object_new_int64(v); }
static json_object *jnum(double v) { return isfinite(v) ? json_object_new_double(v) : NULL; }
static json_object *jhex(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "0x%016llx", (unsigned long long)v);
    return json_object_new_string(buf);
}
static void put(json_object *o, const char *key, json_object *v)
{
    json_object_object_add(o, key, v);
}

static json_object *timing_json(const bench_timing *t)
{
    json_object *o = json_object_new_object();
    put(o, "first_ns", jint((int64_t)t->first_ns));
    put(o, "warmup", jint(t->warmup));
    json_object *s = json_object_new_array();
    for (uint32_t i = 0; i < t->n_samples; i++)
        json_object_array_add(s, jint((int64_t)t->samples_ns[i]));
    put(o, "samples_ns", s);
    json_object *st = json_object_new_object();
    put(st, "n", jint(t->stats.n));
    put(st, "median_ns", json_object_new_double(t->stats.median_ns));
    put(st, "min_ns", json_object_new_double(t->stats.min_ns));
    put(st, "max_ns", json_object_new_double(t->stats.max_ns));
    put(st, "mean_ns", json_object_new_double(t->stats.mean_ns));
    put(st, "stddev_ns", json_object_new_double(t->stats.stddev_ns));
    put(o, "stats", st);
    return o;
}

static json_object *machine_json(const bench_machine *m)
{
    json_object *o = json_object_new_object();
    put(o, "cpu_model", jstr(m->cpu_model));
    put(o, "cpu_vendor", jstr(m->cpu_vendor));
    put(o, "os", jstr(m->os));
    put(o, "logical_cpus", jint(m->logical_cpus));
    put(o, "physical_cores", jint(m->physical_cores));
    json_object *isa = json_object_new_array();
    for (uint32_t i = 0; i < m->n_isa; i++)
        json_object_array_add(isa, jstr(m->isa[i]));
    put(o, "isa", isa);
    json_object *caches = json_object_new_array();
    for (uint32_t i = 0; i < m->n_caches; i++) {
        json_object *c = json_object_new_object();
        put(c, "level", jint(m->caches[i].level));
        put(c, "type", jstr(m->caches[i].type));
        put(c, "size_bytes", jint((int64_t)m->caches[i].size_bytes));
        put(c, "shared_cpus", jstr(m->caches[i].shared_cpus));
        json_object_array_add(caches, c);
    }
    put(o, "caches", caches);
    put(o, "llc_bytes", jint((int64_t)m->llc_bytes));
    put(o, "memory_bytes", jint((int64_t)m->memory_bytes));
    return o;
}

static json_object *baselines_json(const bench_baselines *b)
{
    json_object *o = json_object_new_object();
    json_object *bw = json_object_new_object();
    put(bw, "measured", json_object_new_boolean(b->bandwidth.measured));
    put(bw, "reason", jstr(b->bandwidth.reason));
    put(bw, "loads", jstr(b->bandwidth.loads));
    put(bw, "bytes", jint((int64_t)b->bandwidth.bytes));
    put(bw, "threads", jint(b->bandwidth.threads));
    put(bw, "gbs", b->bandwidth.measured ? jnum(b->bandwidth.gbs) : NULL);
    put(bw, "timing", b->bandwidth.measured ? timing_json(&b->bandwidth.timing) : NULL);
    put(o, "bandwidth", bw);
    json_object *sg = json_object_new_object();
    put(sg, "available", json_object_new_boolean(b->sgemm_available));
    put(sg, "library", jstr(b->sgemm_library));
    json_object *cases = json_object_new_array();
    for (size_t i = 0; i < b->n_sgemm; i++) {
        const bench_sgemm *s = &b->sgemm[i];
        json_object *c = json_object_new_object();
        put(c, "routine", jstr(s->routine));
        put(c, "m", jint(s->m));
        put(c, "n", jint(s->n));
        put(c, "k", jint(s->k));
        put(c, "copies", jint(s->copies));
        put(c, "gflops", jnum(s->gflops));
        put(c, "timing", timing_json(&s->timing));
        json_object_array_add(cases, c);
    }
    put(sg, "cases", cases);
    put(o, "sgemm", sg);
    json_object *reads = json_object_new_array();
    for (size_t i = 0; i < b->n_reads; i++) {
        const bench_read *r = &b->reads[i];
        json_object *c = json_object_new_object();
        put(c, "case", jstr(r->what));
        put(c, "bytes", jint((int64_t)r->bytes));
        put(c, "copies", jint(r->copies));
        put(c, "measured", json_object_new_boolean(r->measured));
        put(c, "reason", jstr(r->reason));
        put(c, "loads", jstr(r->loads));
        put(c, "threads", jint(r->threads));
        put(c, "gbs", r->measured ? jnum(r->gbs) : NULL);
        put(c, "stream_gbs", r->stream_gbs > 0 ? jnum(r->stream_gbs) : NULL);
        put(c, "handoff_ns", r->handoff_ns > 0 ? jnum(r->handoff_ns) : NULL);
        put(c, "timing", r->measured ? timing_json(&r->timing) : NULL);
        json_object_array_add(reads, c);
    }
    put(o, "reads", reads);
    return o;
}

static json_object *result_json(const bench_result *r)
{
    json_object *o = json_object_new_object();
    put(o, "op", jstr(r->op));
    put(o, "dtype", jstr(r->dtype));
    put(o, "shape", jstr(r->shape));
    put(o, "label", jstr(r->label));
    put(o, "tensors", jstr(r->tensors));
    put(o, "backend", jstr(r->backend));
    put(o, "device", jint(r->device));
    put(o, "device_name", jstr(r->device_name));
    put(o, "variant", jstr(r->variant));
    put(o, "variant_hash", jhex(r->variant_hash));
    put(o, "status", jstr(bench_result_status_name(r->status)));
    put(o, "reason", jstr(r->reason));
    put(o, "cache_cold", json_object_new_boolean(r->cache_cold));
    put(o, "weight_bound", json_object_new_boolean(r->weight_bound));
    put(o, "weight_copies", jint(r->weight_copies));
    put(o, "flops", json_object_new_double(r->flops));
    put(o, "bytes", json_object_new_double(r->bytes));
    bool ok = r->status == BENCH_OK;
    put(o, "compile_ns", jint((int64_t)r->compile_ns));
    put(o, "prepare_ns", jint((int64_t)r->prepare_ns));
    put(o, "timing", ok ? timing_json(&r->timing) : NULL);
    put(o, "gflops", ok ? jnum(r->gflops) : NULL);
    put(o, "gbs", ok ? jnum(r->gbs) : NULL);
    json_object *b = json_object_new_object();
    put(b, "bandwidth_fraction", ok ? jnum(r->bandwidth_fraction) : NULL);
    put(b, "sgemm_ratio", ok ? jnum(r->sgemm_ratio) : NULL);
    put(b, "read_fraction", ok ? jnum(r->read_fraction) : NULL);
    put(b, "read", ok && r->read_index >= 0 ? jint(r->read_index) : NULL);
    put(o, "baseline", b);
    bool dev = ok && strcmp(r->time_source, "device") == 0;
    put(o, "time_source", jstr(dev ? "device" : "wall"));
    put(o, "device_timing", dev ? timing_json(&r->device_timing) : NULL);
    return o;
}

static json_object *model_result_json(const bench_model_result *r)
{
    json_object *o = json_object_new_object();
    bool ok = strcmp(r->status, "ok") == 0;
    put(o, "backends", jstr(r->backends));
    put(o, "status", jstr(r->status));
    put(o, "reason", jstr(r->reason));
    put(o, "n_prompt", jint(r->n_prompt));
    put(o, "n_gen", jint(r->n_gen));
    put(o, "reps", jint(r->reps));
    put(o, "threads", jint(r->threads));
    put(o, "load_s", jnum(r->load_s));
    put(o, "session_s", jnum(r->session_s));
    bool pp = ok && isfinite(r->pp_tps), tg = ok && isfinite(r->tg_tps);
    put(o, "pp_cold_tps", pp ? jnum(r->pp_cold_tps) : NULL);
    put(o, "tg_cold_tps", tg ? jnum(r->tg_cold_tps) : NULL);
    put(o, "pp_timing", pp ? timing_json(&r->pp) : NULL);
    put(o, "tg_timing", tg ? timing_json(&r->tg) : NULL);
    put(o, "pp_tps", pp ? jnum(r->pp_tps) : NULL);
    put(o, "tg_tps", tg ? jnum(r->tg_tps) : NULL);
    put(o, "weight_bytes_per_token", jnum(r->weight_bytes_per_token));
    put(o, "roofline_tps", jnum(r->roofline_tps));
    put(o, "roofline_fraction", ok ? jnum(r->roofline_fraction) : NULL);
    put(o, "peak_rss_bytes", jint((int64_t)r->peak_rss_bytes));
    put(o, "engine", jstr(r->engine[0] ? r->engine : "bastion"));
    put(o, "kv_type", r->kv_type[0] ? jstr(r->kv_type) : NULL);
    put(o, "n_depth", jint(r->n_depth));
    put(o, "kv_bytes_per_token", jnum(r->kv_bytes_per_token));
    put(o, "tg_bandwidth_gbs", jnum(r->tg_bandwidth_gbs));
    put(o, "tg_bandwidth_min_gbs", jnum(r->tg_bandwidth_min_gbs));
    put(o, "tg_bandwidth_max_gbs", jnum(r->tg_bandwidth_max_gbs));
    put(o, "tune_mode", r->tune_mode[0] ? jstr(r->tune_mode) : NULL);
    put(o, "tune_cache", r->tune_cache[0] ? jstr(r->tune_cache) : NULL);
    put(o, "tune_hits", jint(r->tune_hits));
    put(o, "tune_measured", jint(r->tune_measured));
    put(o, "tune_frozen_misses", jint(r->tune_frozen_misses));
    put(o, "tune_s", jnum(r->tune_s));
    json_object *mem = json_object_new_array();
    for (uint32_t i = 0; i < r->n_memory; i++) {
        const bench_model_memory *m = &r->memory[i];
        json_object *j = json_object_new_object();
        put(j, "device", jint(m->device));
        put(j, "backend", jstr(m->backend));
        put(j, "device_name", jstr(m->device_name));
        put(j, "arena_bytes", jint((int64_t)m->arena_bytes));
        put(j, "weight_bytes", jint((int64_t)m->weight_bytes));
        put(j, "state_bytes", jint((int64_t)m->state_bytes));
        put(j, "io_bytes", jint((int64_t)m->io_bytes));
        put(j, "total_bytes", jint((int64_t)m->total_bytes));
        json_object_array_add(mem, j);
    }
    put(o, "device_memory", mem);
    json_object *ks = json_object_new_array();
    for (uint32_t i = 0; i < r->n_kernels; i++) {
        const bench_model_kernel *k = &r->kernels[i];
        json_object *j = json_object_new_object();
        put(j, "op", jstr(k->op));
        put(j, "device", jstr(k->device));
        put(j, "kernel", jstr(k->kernel));
        put(j, "nodes", jint(k->nodes));
        put(j, "hits", jint(k->hits));
        put(j, "measured", jint(k->measured));
        json_object_array_add(ks, j);
    }
    put(o, "kernels", ks);
    json_object *dts = json_object_new_array();
    for (uint32_t i = 0; i < r->n_device_times; i++) {
        const bench_model_device_time *t = &r->device_times[i];
        json_object *j = json_object_new_object();
        put(j, "device", jint(t->device));
        put(j, "backend", jstr(t->backend));
        put(j, "device_name", jstr(t->device_name));
        put(j, "pp_partitions", jint(t->pp_partitions));
        put(j, "tg_partitions", jint(t->tg_partitions));
        put(j, "pp_all_device", json_object_new_boolean(t->pp_all_device));
        put(j, "tg_all_device", json_object_new_boolean(t->tg_all_device));
        put(j, "pp_device_ns", jint((int64_t)t->pp_device_ns));
        put(j, "tg_device_ns", jint((int64_t)t->tg_device_ns));
        put(j, "pp_wall_ns", jint((int64_t)t->pp_wall_ns));
        put(j, "tg_wall_ns", jint((int64_t)t->tg_wall_ns));
        put(j, "pp_device_tps", jnum(t->pp_device_tps));
        put(j, "tg_device_tps", jnum(t->tg_device_tps));
        json_object_array_add(dts, j);
    }
    put(o, "device_times", dts);
    put(o, "pp_device_tps", ok ? jnum(r->pp_device_tps) : NULL);
    put(o, "tg_device_tps", ok ? jnum(r->tg_device_tps) : NULL);
    return o;
}

static json_object *doc_json(const bench_doc *d)
{
    json_object *o = json_object_new_object();
    put(o, "schema", jstr(d->schema));
    put(o, "kind", jstr(d->kind));
    put(o, "created", jstr(d->created));
    json_object *b = json_object_new_object();
    put(b, "version", jstr(d->bastion_version));
    put(b, "git_commit", jstr(d->git_commit));
    put(o, "bastion", b);
    put(o, "command", jstr(d->command));
    json_object *s = json_object_new_object();
    put(s, "threads", jint(d->threads));
    put(s, "budget_s", json_object_new_double(d->budget.seconds));
    put(s, "min_reps", jint(d->budget.min_reps));
    put(s, "max_reps", jint(d->budget.max_reps));
    put(s, "max_warmup", jint(d->budget.max_warmup));
    put(s, "quick", json_object_new_boolean(d->quick));
    put(s, "tune_mode", d->tune_mode[0] ? jstr(d->tune_mode) : NULL);
    put(s, "tune_no_cache", json_object_new_boolean(d->tune_no_cache));
    put(o, "settings", s);
    put(o, "machine", machine_json(&d->machine));
    json_object *plugins = json_object_new_array();
    for (uint32_t i = 0; i < d->n_plugins; i++) {
        const bench_plugin *p = &d->plugins[i];
        json_object *j = json_object_new_object();
        put(j, "name", jstr(p->name));
        put(j, "state", jstr(p->state));
        put(j, "version", jstr(p->version));
        put(j, "path", jstr(p->path));
        put(j, "detail", jstr(p->detail));
        put(j, "abi_version", jint(p->abi_version));
        json_object_array_add(plugins, j);
    }
    put(o, "plugins", plugins);
    json_object *devices = json_object_new_array();
    for (uint32_t i = 0; i < d->n_devices; i++) {
        const bench_device *v = &d->devices[i];
        json_object *j = json_object_new_object();
        put(j, "index", jint(i));
        put(j, "backend", jstr(v->backend));
        put(j, "name", jstr(v->name));
        put(j, "vendor", jstr(v->vendor));
        put(j, "kind", jstr(v->kind));
        put(j, "driver_version", jstr(v->driver_version));
        put(j, "fingerprint", jhex(v->fingerprint));
        put(j, "memory_bytes", jint((int64_t)v->memory_bytes));
        put(j, "max_alloc_bytes", jint((int64_t)v->max_alloc_bytes));
        put(j, "max_binding_bytes", jint((int64_t)v->max_binding_bytes));
        put(j, "unified_memory", json_object_new_boolean(v->unified_memory));
        put(j, "self_threaded", json_object_new_boolean(v->self_threaded));
        json_object_array_add(devices, j);
    }
    put(o, "devices", devices);
    put(o, "baselines", baselines_json(&d->baselines));
    json_object *results = json_object_new_array();
    for (size_t i = 0; i < d->results.n; i++)
        json_object_array_add(results, result_json(&d->results.items[i]));
    put(o, "results", results);
    if (d->has_model) {
        json_object *m = json_object_new_object();
        put(m, "path", jstr(d->model.path));
        put(m, "name", jstr(d->model.name));
        put(m, "architecture", jstr(d->model.architecture));
        put(m, "file_bytes", jint((int64_t)d->model.file_bytes));
        put(m, "n_params", jint((int64_t)d->model.n_params));
        put(m, "file_hash", jstr(d->model.file_hash));
        put(o, "model", m);
        json_object *mr = json_object_new_array();
        for (uint32_t i = 0; i < d->n_model_results; i++)
            json_object_array_add(mr, model_result_json(&d->model_results[i]));
        put(o, "model_results", mr);
    }
    return o;
}

bst_status bench_doc_to_string(const bench_doc *d, char **out_text, bench_error *e)
{
    *out_text = NULL;
    json_object *o = doc_json(d);
    if (!o)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "JSON document: out of memory");
    const char *text = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = text ? strdup(text) : NULL;
    json_object_put(o);
    if (!copy)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "JSON document: out of memory");
    *out_text = copy;
    return BST_OK;
}

bst_status bench_doc_write(const bench_doc *d, const char *path, bench_error *e)
{
    char *text = NULL;
    bst_status st = bench_doc_to_string(d, &text, e);
    if (st != BST_OK)
        return st;
    bool to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        st = bench_fail(e, BST_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        free(text);
        return st;
    }
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (to_stdout)
        ok = fflush(f) == 0 && ok;
    else
        ok = fclose(f) == 0 && ok;
    free(text);
    if (!ok)
        return bench_fail(e, BST_ERR_IO, "error writing '%s'", path);
    return BST_OK;
}

/* --- reading ------------------------------------------------------------------------------- */

typedef struct reader {
    bench_error *e;
    bst_status st;
} reader;

static void rfail(reader *r, const char *path, const char *key, const char *what)
{
    if (r->st != BST_OK)
        return;
    r->st = bench_fail(r->e, BST_ERR_FORMAT, "%s%s%s: %s", path, path[0] ? "." : "", key, what);
}

/* Field `key` of object o; NULL (after recording the error unless `nullable`) when missing, of
 * the wrong type, or null. Numbers accept ints and doubles. */
static json_object *field(reader *r, json_object *o, const char *path, const char *key,
                          json_type want, bool nullable)
{
    if (r->st != BST_OK)
        return NULL;
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v)) {
        rfail(r, path, key, "missing");
        return NULL;
    }
    if (!v) {
        if (!nullable)
            rfail(r, path, key, "is null");
        return NULL;
    }
    json_type t = json_object_get_type(v);
    bool ok = t == want || (want == json_type_double && t == json_type_int);
    if (!ok) {
        static const char *const names[] = {"null",   "a boolean", "a number", "an integer",
                                            "an object", "an array", "a string"};
        char msg[48];
        snprintf(msg, sizeof msg, "expected %s", (unsigned)want < 7 ? names[want] : "?");
        rfail(r, path, key, msg);
        return NULL;
    }
    return v;
}

static void get_str(reader *r, json_object *o, const char *path, const char *key, char *dst,
                    size_t size)
{
    json_object *v = field(r, o, path, key, json_type_string, false);
    if (v)
        snprintf(dst, size, "%s", json_object_get_string(v));
}

static int64_t get_int(reader *r, json_object *o, const char *path, const char *key)
{
    json_object *v = field(r, o, path, key, json_type_int, false);
    return v ? json_object_get_int64(v) : 0;
}

static uint64_t get_uint(reader *r, json_object *o, const char *path, const char *key)
{
    int64_t v = get_int(r, o, path, key);
    if (v < 0)
        rfail(r, path, key, "must not be negative");
    return v < 0 ? 0 : (uint64_t)v;
}

static double get_num(reader *r, json_object *o, const char *path, const char *key, bool nullable)
{
    json_object *v = field(r, o, path, key, json_type_double, nullable);
    return v ? json_object_get_double(v) : NAN;
}

static bool get_bool(reader *r, json_object *o, const char *path, const char *key)
{
    json_object *v = field(r, o, path, key, json_type_boolean, false);
    return v ? json_object_get_boolean(v) : false;
}

static uint64_t get_hex(reader *r, json_object *o, const char *path, const char *key)
{
    char buf[32] = "";
    get_str(r, o, path, key, buf, sizeof buf);
    if (r->st != BST_OK)
        return 0;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 16);
    if (errno || strncmp(buf, "0x", 2) != 0 || *end != '\0') {
        rfail(r, path, key, "expected a hex string \"0x...\"");
        return 0;
    }
    return (uint64_t)v;
}

static void get_timing(reader *r, json_object *o, const char *path, bench_timing *t)
{
    memset(t, 0, sizeof *t);
    t->first_ns = get_uint(r, o, path, "first_ns");
    t->warmup = (uint32_t)get_uint(r, o, path, "warmup");
    json_object *s = field(r, o, path, "samples_ns", json_type_array, false);
    if (s) {
        size_t n = json_object_array_length(s);
        if (n > UINT32_MAX) {
            rfail(r, path, "samples_ns", "too many samples");
            return;
        }
        t->samples_ns = malloc((n ? n : 1) * sizeof *t->samples_ns);
        if (!t->samples_ns) {
            r->st = bench_fail(r->e, BST_ERR_OUT_OF_MEMORY, "%s.samples_ns: out of memory", path);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *v = json_object_array_get_idx(s, i);
            if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
                rfail(r, path, "samples_ns", "expected non-negative integers");
                return;
            }
            t->samples_ns[i] = (uint64_t)json_object_get_int64(v);
        }
        t->n_samples = (uint32_t)n;
    }
    char sp[160];
    snprintf(sp, sizeof sp, "%s.stats", path);
    json_object *st = field(r, o, path, "stats", json_type_object, false);
    if (!st)
        return;
    t->stats.n = (uint32_t)get_uint(r, st, sp, "n");
    t->stats.median_ns = get_num(r, st, sp, "median_ns", false);
    t->stats.min_ns = get_num(r, st, sp, "min_ns", false);
    t->stats.max_ns = get_num(r, st, sp, "max_ns", false);
    t->stats.mean_ns = get_num(r, st, sp, "mean_ns", false);
    t->stats.stddev_ns = get_num(r, st, sp, "stddev_ns", false);
    if (r->st == BST_OK && t->stats.n != t->n_samples)
        rfail(r, sp, "n", "differs from the number of samples");
}

static void read_machine(reader *r, json_object *o, bench_machine *m)
{
    const char *p = "machine";
    get_str(r, o, p, "cpu_model", m->cpu_model, sizeof m->cpu_model);
    get_str(r, o, p, "cpu_vendor", m->cpu_vendor, sizeof m->cpu_vendor);
    get_str(r, o, p, "os", m->os, sizeof m->os);
    m->logical_cpus = (uint32_t)get_uint(r, o, p, "logical_cpus");
    m->physical_cores = (uint32_t)get_uint(r, o, p, "physical_cores");
    json_object *isa = field(r, o, p, "isa", json_type_array, false);
    for (size_t i = 0; isa && i < json_object_array_length(isa) && m->n_isa < BENCH_MAX_ISA; i++) {
        json_object *v = json_object_array_get_idx(isa, i);
        if (!json_object_is_type(v, json_type_string)) {
            rfail(r, p, "isa", "expected strings");
            return;
        }
        snprintf(m->isa[m->n_isa++], sizeof m->isa[0], "%s", json_object_get_string(v));
    }
    json_object *caches = field(r, o, p, "caches", json_type_array, false);
    for (size_t i = 0; caches && i < json_object_array_length(caches) &&
                       m->n_caches < BENCH_MAX_CACHES;
         i++) {
        json_object *c = json_object_array_get_idx(caches, i);
        char cp[48];
        snprintf(cp, sizeof cp, "machine.caches[%zu]", i);
        if (!json_object_is_type(c, json_type_object)) {
            rfail(r, p, "caches", "expected objects");
            return;
        }
        bench_cache *k = &m->caches[m->n_caches++];
        k->level = (uint32_t)get_uint(r, c, cp, "level");
        get_str(r, c, cp, "type", k->type, sizeof k->type);
        k->size_bytes = get_uint(r, c, cp, "size_bytes");
        get_str(r, c, cp, "shared_cpus", k->shared_cpus, sizeof k->shared_cpus);
    }
    m->llc_bytes = get_uint(r, o, p, "llc_bytes");
    m->memory_bytes = get_uint(r, o, p, "memory_bytes");
}

static void read_devices(reader *r, json_object *arr, bench_doc *d)
{
    size_t n = json_object_array_length(arr);
    d->devices = calloc(n ? n : 1, sizeof *d->devices);
    if (!d->devices) {
        r->st = bench_fail(r->e, BST_ERR_OUT_OF_MEMORY, "devices: out of memory");
        return;
    }
    for (size_t i = 0; i < n && r->st == BST_OK; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        char p[32];
        snprintf(p, sizeof p, "devices[%zu]", i);
        if (!json_object_is_type(o, json_type_object)) {
            rfail(r, "", p, "expected an object");
            return;
        }
        bench_device *v = &d->devices[d->n_devices++];
        get_str(r, o, p, "backend", v->backend, sizeof v->backend);
        get_str(r, o, p, "name", v->name, sizeof v->name);
        get_str(r, o, p, "vendor", v->vendor, sizeof v->vendor);
        get_str(r, o, p, "kind", v->kind, sizeof v->kind);
        get_str(r, o, p, "driver_version", v->driver_version, sizeof v->driver_version);
        v->fingerprint = get_hex(r, o, p, "fingerprint");
        v->memory_bytes = get_uint(r, o, p, "memory_bytes");
        v->max_alloc_bytes = get_uint(r, o, p, "max_alloc_bytes");
        v->max_binding_bytes = get_uint(r, o, p, "max_binding_bytes");
        v->unified_memory = get_bool(r, o, p, "unified_memory");
        v->self_threaded = get_bool(r, o, p, "self_threaded");
        if (get_int(r, o, p, "index") != (int64_t)i)
            rfail(r, p, "index", "must equal the position in the array");
    }
}

static void read_plugins(reader *r, json_object *arr, bench_doc *d)
{
    size_t n = json_object_array_length(arr);
    d->plugins = calloc(n ? n : 1, sizeof *d->plugins);
    if (!d->plugins) {
        r->st = bench_fail(r->e, BST_ERR_OUT_OF_MEMORY, "plugins: out of memory");
        return;
    }
    for (size_t i = 0; i < n && r->st == BST_OK; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        char p[32];
        snprintf(p, sizeof p, "plugins[%zu]", i);
        if (!json_object_is_type(o, json_type_object)) {
            rfail(r, "", p, "expected an object");
            return;
        }
        bench_plugin *v = &d->plugins[d->n_plugins++];
        get_str(r, o, p, "name", v->name, sizeof v->name);
        get_str(r, o, p, "state", v->state, sizeof v->state);
        get_str(r, o, p, "version", v->version, sizeof v->version);
        get_str(r, o, p, "path", v->path, sizeof v->path);
        get_str(r, o, p, "detail", v->detail, sizeof v->detail);
        v->abi_version = (uint32_t)get_uint(r, o, p, "abi_version");
    }
}

/* baselines.reads, added within /1: absent in older documents. */
static void read_reads(reader *r, json_object *o, bench_baselines *b)
{
    json_object *reads = NULL;
    if (!json_object_object_get_ex(o, "reads", &reads))
        return;
    reads = field(r, o, "baselines", "reads", json_type_array, false);
    size_t n = reads ? json_object_array_length(reads) : 0;
    if (n) {
        b->reads = calloc(n, sizeof *b->reads);
        if (!b->reads) {
            r->st = bench_fail(r->e, BST_ERR_OUT_OF_MEMORY, "reads: out of memory");
            return;
        }
        b->cap_reads = n;
    }
    for (size_t i = 0; i < n && r->st == BST_OK; i++) {
        json_object *c = json_object_array_get_idx(reads, i);
        char p[48];
        snprintf(p, sizeof p, "baselines.reads[%zu]", i);
        if (!json_object_is_type(c, json_type_object)) {
            rfail(r, "", p, "expected an object");
            return;
        }
        bench_read *x = &b->reads[b->n_reads++];
        get_str(r, c, p, "case", x->what, sizeof x->what);
        x->bytes = get_uint(r, c, p, "bytes");
        x->copies = (uint32_t)get_uint(r, c, p, "copies");
        x->measured = get_bool(r, c, p, "measured");
        get_str(r, c, p, "reason", x->reason, sizeof x->reason);
        get_str(r, c, p, "loads", x->loads, sizeof x->loads);
        x->threads = (uint32_t)get_uint(r, c, p, "threads");
        x->gbs = get_num(r, c, p, "gbs", !x->measured);
        if (json_object_object_get_ex(c, "stream_gbs", NULL)) { /* added within /1 */
            const double v = get_num(r, c, p, "stream_gbs", true);
            x->stream_gbs = v > 0 ? v : 0.0;
        }
        if (json_object_object_get_ex(c, "handoff_ns", NULL)) { /* added within /1 */
            const double v = get_num(r, c, p, "handoff_ns", true);
            x->handoff_ns = v > 0 ? v : 0.0;
        }
        json_object *t = field(r, c, p, "timing", json_type_object, !x->measured);
        if (t) {
            char tp[64];
            snprintf(tp, sizeof tp, "%s.timing", p);
            get_timing(r, t, tp, &x->timing);
        }
    }
}

static void read_baselines(reader *r, json_object *o, bench_baselines *b)
{
    read_reads(r, o, b);
    json_object *bw = field(r, o, "baselines", "bandwidth", json_type_object, false);
    if (bw) {
        const char *p = "baselines.bandwidth";
        b->bandwidth.measured = get_bool(r, bw, p, "measured");
        get_str(r, bw, p, "reason", b->bandwidth.reason, sizeof b->bandwidth.reason);
        if (json_object_object_get_ex(bw, "loads", NULL)) /* added within /1 */
            get_str(r, bw, p, "loads", b->bandwidth.loads, sizeof b->bandwidth.loads);
        b->bandwidth.bytes = get_uint(r, bw, p, "bytes");
        b->bandwidth.threads = (uint32_t)get_uint(r, bw, p, "threads");
        b->bandwidth.gbs = get_num(r, bw, p, "gbs", !b->bandwidth.measured);
        json_object *t = field(r, bw, p, "timing", json_type_object, !b->bandwidth.measured);
        if (t)
            get_timing(r, t, "baselines.bandwidth.timing", &b->bandwidth.timing);
    }
    json_object *sg = field(r, o, "baselines", "sgemm", json_type_object, false);
    if (!sg)
        return;
    b->sgemm_available = get_bool(r, sg, "baselines.sgemm", "available");
    get_str(r, sg, "baselines.sgemm", "library", b->sgemm_library, sizeof b->sgemm_library);
    json_object *cases = field(r, sg, "baselines.sgemm", "cases", json_type_array, false);
    size_t n = cases ? json_object_array_length(cases) : 0;
    if (n) {
        b->sgemm = calloc(n, sizeof *b->sgemm);
        if (!b->sgemm) {
            r->st = bench_fail(r->e, BST_ERR_OUT_OF_MEMORY, "sgemm: out of memory");
            return;
        }
        b->cap_sgemm = n;
    }
    for (size_t i = 0; i < n && r->st == BST_OK; i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        char p[48];
        snprintf(p, sizeof p, "baselines.sgemm.cases[%zu]", i);
        if (!json_object_is_type(c, json_type_object)) {
            rfail(r, "", p, "expected an object");
            return;
        }
        bench_sgemm *s = &b->sgemm[b->n_sgemm++];
        get_str(r, c, p, "routine", s->routine, sizeof s->routine);
        s->m = get_int(r, c, p, "m");
        s->n = get_int(r, c, p, "n");
        s->k = get_int(r, c, p, "k");
        s->copies = (uint32_t)get_uint(r, c, p, "copies");
        s->gflops = get_num(r, c, p, "gflops", true);
        json_object *t = field(r, c, p, "timing", json_type_object, false);
        if (t) {
            char tp[64];
            snprintf(tp, sizeof tp, "%s.timing", p);
            get_timing(r, t, tp, &s->timing);
        }
    }
}

static void read_result(reader *r, json_object *o, const char *p, bench_result *x)
{
    get_str(r, o, p, "op", x->op, sizeof x->op);
    get_str(r, o, p, "dtype", x->dtype, sizeof x->dtype);
    get_str(r, o, p, "shape", x->shape, sizeof x->shape);
    get_str(r, o, p, "label", x->label, sizeof x->label);
    get_str(r, o, p, "tensors", x->tensors, sizeof x->tensors);
    get_str(r, o, p, "backend", x->backend, sizeof x->backend);
    x->device = (int32_t)get_int(r, o, p, "device");
    get_str(r, o, p, "device_name", x->device_name, sizeof x->device_name);
    get_str(r, o, p, "variant", x->variant, sizeof x->variant);
    x->variant_hash = get_hex(r, o, p, "variant_hash");
    char status[24] = "";
    get_str(r, o, p, "status", status, sizeof status);
    if (r->st == BST_OK && !bench_result_status_parse(status, &x->status))
        rfail(r, p, "status", "expected ok, skipped, unsupported or failed");
    get_str(r, o, p, "reason", x->reason, sizeof x->reason);
    x->cache_cold = get_bool(r, o, p, "cache_cold");
    x->weight_bound = get_bool(r, o, p, "weight_bound");
    x->weight_copies = (uint32_t)get_uint(r, o, p, "weight_copies");
    x->flops = get_num(r, o, p, "flops", false);
    x->bytes = get_num(r, o, p, "bytes", false);
    x->compile_ns = get_uint(r, o, p, "compile_ns");
    x->prepare_ns = get_uint(r, o, p, "prepare_ns");
    bool ok = x->status == BENCH_OK;
    json_object *t = field(r, o, p, "timing", json_type_object, !ok);
    if (t) {
        char tp[64];
        snprintf(tp, sizeof tp, "%s.timing", p);
        get_timing(r, t, tp, &x->timing);
    }
    x->gflops = get_num(r, o, p, "gflops", !ok);
    x->gbs = get_num(r, o, p, "gbs", !ok);
    json_object *b = field(r, o, p, "baseline", json_type_object, false);
    if (b) {
        char bp[64];
        snprintf(bp, sizeof bp, "%s.baseline", p);
        x->bandwidth_fraction = get_num(r, b, bp, "bandwidth_fraction", true);
        x->sgemm_ratio = get_num(r, b, bp, "sgemm_ratio", true);
        /* Added within /1: absent in older documents. */
        json_object *rf = NULL;
        if (json_object_object_get_ex(b, "read_fraction", &rf)) {
            x->read_fraction = get_num(r, b, bp, "read_fraction", true);
            json_object *ri = field(r, b, bp, "read", json_type_int, true);
            x->read_index = ri ? (int32_t)json_object_get_int64(ri) : -1;
        }
    }
    /* Added within /1: absent in older documents, which timed by wall clock only. */
    snprintf(x->time_source, sizeof x->time_source, "wall");
    json_object *ts = NULL;
    if (json_object_object_get_ex(o, "time_source", &ts) && ts) {
        get_str(r, o, p, "time_source", x->time_source, sizeof x->time_source);
        if (r->st == BST_OK && strcmp(x->time_source, "device") != 0 &&
            strcmp(x->time_source, "wall") != 0)
            rfail(r, p, "time_source", "expected \"device\" or \"wall\"");
    }
    bool dev = r->st == BST_OK && strcmp(x->time_source, "device") == 0;
    if (dev && !ok)
        rfail(r, p, "time_source", "is \"device\" on a result that was not measured");
    json_object *dt = NULL;
    if (json_object_object_get_ex(o, "device_timing", &dt) && dt && !dev)
        rfail(r, p, "device_timing", "present although time_source is not \"device\"");
    dt = dev ? field(r, o, p, "device_timing", json_type_object, false) : NULL;
    if (dt) {
        char tp[64];
        snprintf(tp, sizeof tp, "%s.device_timing", p);
        get_timing(r, dt, tp, &x->device_timing);
        if (r->st == BST_OK && x->device_timing.n_samples != x->timing.n_samples)
            rfail(r, tp, "samples_ns", "differs in count from timing.samples_ns");
    }
}

/* True when `key` is present and not null: fields added within /1 are optional to readers. */
static bool present(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) && v != NULL;
}

/* The model-row fields added within /1 (engine, depth, tuning, device memory); absent ones keep
 * their "unknown" values. */
static void read_model_additions(reader *r, json_object *o, const char *p, bench_model_result *x)
{
    x->tune_s = NAN;
    x->kv_bytes_per_token = NAN;
    x->tg_bandwidth_gbs = x->tg_bandwidth_min_gbs = x->tg_bandwidth_max_gbs = NAN;
    snprintf(x->engine, sizeof x->engine, "bastion");
    if (present(o, "engine"))
        get_str(r, o, p, "engine", x->engine, sizeof x->engine);
    if (present(o, "kv_type"))
        get_str(r, o, p, "kv_type", x->kv_type, sizeof x->kv_type);
    if (present(o, "n_depth")) /* absent: from an empty cache, as every run before -d */
        x->n_depth = (uint32_t)get_uint(r, o, p, "n_depth");
    if (present(o, "kv_bytes_per_token"))
        x->kv_bytes_per_token = get_num(r, o, p, "kv_bytes_per_token", true);
    if (present(o, "tg_bandwidth_gbs")) {
        x->tg_bandwidth_gbs = get_num(r, o, p, "tg_bandwidth_gbs", true);
        x->tg_bandwidth_min_gbs = get_num(r, o, p, "tg_bandwidth_min_gbs", true);
        x->tg_bandwidth_max_gbs = get_num(r, o, p, "tg_bandwidth_max_gbs", true);
    }
    if (present(o, "tune_mode"))
        get_str(r, o, p, "tune_mode", x->tune_mode, sizeof x->tune_mode);
    if (present(o, "tune_cache"))
        get_str(r, o, p, "tune_cache", x->tune_cache, sizeof x->tune_cache);
    if (present(o, "tune_hits"))
        x->tune_hits = (uint32_t)get_uint(r, o, p, "tune_hits");
    if (present(o, "tune_measured"))
        x->tune_measured = (uint32_t)get_uint(r, o, p, "tune_measured");
    if (present(o, "tune_frozen_misses"))
        x->tune_frozen_misses = (uint32_t)get_uint(r, o, p, "tune_frozen_misses");
    if (present(o, "tune_s"))
        x->tune_s = get_num(r, o, p, "tune_s", false);
    json_object *mem = present(o, "device_memory")
                           ? field(r, o, p, "device_memory", json_type_array, false)
                           : NULL;
    size_t n = mem ? json_object_array_length(mem) : 0;
    for (size_t i = 0; i < n && i < BENCH_MAX_MODEL_DEVICES && r->st == BST_OK; i++) {
        json_object *j = json_object_array_get_idx(mem, i);
        char mp[80];
        snprintf(mp, sizeof mp, "%s.device_memory[%zu]", p, i);
        if (!json_object_is_type(j, json_type_object)) {
            rfail(r, "", mp, "expected an object");
            return;
        }
        bench_model_memory *m = &x->memory[x->n_memory++];
        int64_t dev = get_int(r, j, mp, "device");
        m->device = dev < -1 || dev > INT32_MAX ? -1 : (int32_t)dev;
        get_str(r, j, mp, "backend", m->backend, sizeof m->backend);
        get_str(r, j, mp, "device_name", m->device_name, sizeof m->device_name);
        m->arena_bytes = get_uint(r, j, mp, "arena_bytes");
        m->weight_bytes = get_uint(r, j, mp, "weight_bytes");
        m->state_bytes = get_uint(r, j, mp, "state_bytes");
        m->io_bytes = get_uint(r, j, mp, "io_bytes");
        m->total_bytes = get_uint(r, j, mp, "total_bytes");
    }
    json_object *ks = present(o, "kernels") ? field(r, o, p, "kernels", json_type_array, false)
                                            : NULL;
    n = ks ? json_object_array_length(ks) : 0;
    for (size_t i = 0; i < n && i < BENCH_MAX_MODEL_KERNELS && r->st == BST_OK; i++) {
        json_object *j = json_object_array_get_idx(ks, i);
        char kp[80];
        snprintf(kp, sizeof kp, "%s.kernels[%zu]", p, i);
        if (!json_object_is_type(j, json_type_object)) {
            rfail(r, "", kp, "expected an object");
            return;
        }
        bench_model_kernel *k = &x->kernels[x->n_kernels++];
        get_str(r, j, kp, "op", k->op, sizeof k->op);
        get_str(r, j, kp, "device", k->device, sizeof k->device);
        get_str(r, j, kp, "kernel", k->kernel, sizeof k->kernel);
        k->nodes = (uint32_t)get_uint(r, j, kp, "nodes");
        k->hits = (uint32_t)get_uint(r, j, kp, "hits");
        k->measured = (uint32_t)get_uint(r, j, kp, "measured");
    }
    x->pp_device_tps = x->tg_device_tps = NAN;
    if (present(o, "pp_device_tps"))
        x->pp_device_tps = get_num(r, o, p, "pp_device_tps", false);
    if (present(o, "tg_device_tps"))
        x->tg_device_tps = get_num(r, o, p, "tg_device_tps", false);
    json_object *dts = present(o, "device_times")
                           ? field(r, o, p, "device_times", json_type_array, false)
                           : NULL;
    n = dts ? json_object_array_length(dts) : 0;
    for (size_t i = 0; i < n && i < BENCH_MAX_MODEL_DEVICES && r->st == BST_OK; i++) {
        json_object *j = json_object_array_get_idx(dts, i);
        char dp[80];
        snprintf(dp, sizeof dp, "%s.device_times[%zu]", p, i);
        if (!json_object_is_type(j, json_type_object)) {
            rfail(r, "", dp, "expected an object");
            return;
        }
        bench_model_device_time *t = &x->device_times[x->n_device_times++];
        int64_t dev = get_int(r, j, dp, "device");
        t->device = dev < -1 || dev > INT32_MAX ? -1 : (int32_t)dev;
        get_str(r, j, dp, "backend", t->backend, sizeof t->backend);
        get_str(r, j, dp, "device_name", t->device_name, sizeof t->device_name);
        t->pp_partitions = (uint32_t)get_uint(r, j, dp, "pp_partitions");
        t->tg_partitions = (uint32_t)get_uint(r, j, dp, "tg_partitions");
        t->pp_all_device = get_bool(r, j, dp, "pp_all_device");
        t->tg_all_device = get_bool(r, j, dp, "tg_all_device");
        t->pp_device_ns = get_uint(r, j, dp, "pp_device_ns");
        t->tg_device_ns = get_uint(r, j, dp, "tg_device_ns");
        t->pp_wall_ns = get_uint(r, j, dp, "pp_wall_ns");
        t->tg_wall_ns = get_uint(r, j, dp, "tg_wall_ns");
        t->pp_device_tps = get_num(r, j, dp, "pp_device_tps", true);
        t->tg_device_tps = get_num(r, j, dp, "tg_device_tps", true);
    }
}

static void read_model(reader *r, json_object *root, bench_doc *d)
{
    json_object *m = NULL;
    if (!json_object_object_get_ex(root, "model", &m) || !m)
        return;
    if (!json_object_is_type(m, json_type_object)) {
        rfail(r, "", "model", "expected an object");
        return;
    }
    d->has_model = true;
    get_str(r, m, "model", "path", d->model.path, sizeof d->model.path);
    get_str(r, m, "model", "name", d->model.name, sizeof d->model.name);
    get_str(r, m, "model", "architecture", d->model.architecture, sizeof d->model.architecture);
    d->model.file_bytes = get_uint(r, m, "model", "file_bytes");
    d->model.n_params = get_uint(r, m, "model", "n_params");
    get_str(r, m, "model", "file_hash", d->model.file_hash, sizeof d->model.file_hash);
    json_object *arr = field(r, root, "", "model_results", json_type_array, false);
    size_t n = arr ? json_object_array_length(arr) : 0;
    if (n == 0)
        return;
    d->model_results = calloc(n, sizeof *d->model_results);
    if (!d->model_results) {
        r->st = bench_fail(r->e, BST_ERR_OUT_OF_MEMORY, "model results: out of memory");
        return;
    }
    for (size_t i = 0; i < n && r->st == BST_OK; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        char p[40];
        snprintf(p, sizeof p, "model_results[%zu]", i);
        if (!json_object_is_type(o, json_type_object)) {
            rfail(r, "", p, "expected an object");
            return;
        }
        bench_model_result *x = &d->model_results[d->n_model_results++];
        get_str(r, o, p, "backends", x->backends, sizeof x->backends);
        get_str(r, o, p, "status", x->status, sizeof x->status);
        get_str(r, o, p, "reason", x->reason, sizeof x->reason);
        x->n_prompt = (uint32_t)get_uint(r, o, p, "n_prompt");
        x->n_gen = (uint32_t)get_uint(r, o, p, "n_gen");
        x->reps = (uint32_t)get_uint(r, o, p, "reps");
        x->threads = (uint32_t)get_uint(r, o, p, "threads");
        /* Either test may be skipped (-p 0, -n 0), so each of its numbers may be null. */
        x->load_s = get_num(r, o, p, "load_s", true);
        x->session_s = get_num(r, o, p, "session_s", true);
        x->pp_cold_tps = get_num(r, o, p, "pp_cold_tps", true);
        x->tg_cold_tps = get_num(r, o, p, "tg_cold_tps", true);
        char tp[64];
        json_object *t = field(r, o, p, "pp_timing", json_type_object, true);
        snprintf(tp, sizeof tp, "%s.pp_timing", p);
        if (t)
            get_timing(r, t, tp, &x->pp);
        t = field(r, o, p, "tg_timing", json_type_object, true);
        snprintf(tp, sizeof tp, "%s.tg_timing", p);
        if (t)
            get_timing(r, t, tp, &x->tg);
        x->pp_tps = get_num(r, o, p, "pp_tps", true);
        x->tg_tps = get_num(r, o, p, "tg_tps", true);
        x->weight_bytes_per_token = get_num(r, o, p, "weight_bytes_per_token", true);
        x->roofline_tps = get_num(r, o, p, "roofline_tps", true);
        x->roofline_fraction = get_num(r, o, p, "roofline_fraction", true);
        x->peak_rss_bytes = get_uint(r, o, p, "peak_rss_bytes");
        read_model_additions(r, o, p, x);
    }
}

bst_status bench_doc_parse(const char *text, bench_doc *d, bench_error *e)
{
    memset(d, 0, sizeof *d);
    enum json_tokener_error jerr = json_tokener_success;
    json_object *root = json_tokener_parse_verbose(text, &jerr);
    if (!root)
        return bench_fail(e, BST_ERR_FORMAT, "not JSON: %s", json_tokener_error_desc(jerr));
    reader r = {e, BST_OK};
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return bench_fail(e, BST_ERR_FORMAT, "the document is not a JSON object");
    }
    get_str(&r, root, "", "schema", d->schema, sizeof d->schema);
    if (r.st == BST_OK && strcmp(d->schema, BENCH_SCHEMA_ID) != 0)
        r.st = bench_fail(e, BST_ERR_FORMAT, "schema is \"%s\", this bastion reads \"%s\"",
                          d->schema, BENCH_SCHEMA_ID);
    get_str(&r, root, "", "kind", d->kind, sizeof d->kind);
    get_str(&r, root, "", "created", d->created, sizeof d->created);
    json_object *b = field(&r, root, "", "bastion", json_type_object, false);
    if (b) {
        get_str(&r, b, "bastion", "version", d->bastion_version, sizeof d->bastion_version);
        get_str(&r, b, "bastion", "git_commit", d->git_commit, sizeof d->git_commit);
    }
    get_str(&r, root, "", "command", d->command, sizeof d->command);
    json_object *s = field(&r, root, "", "settings", json_type_object, false);
    if (s) {
        d->threads = (uint32_t)get_uint(&r, s, "settings", "threads");
        d->budget.seconds = get_num(&r, s, "settings", "budget_s", false);
        d->budget.min_reps = (uint32_t)get_uint(&r, s, "settings", "min_reps");
        d->budget.max_reps = (uint32_t)get_uint(&r, s, "settings", "max_reps");
        d->budget.max_warmup = (uint32_t)get_uint(&r, s, "settings", "max_warmup");
        d->quick = get_bool(&r, s, "settings", "quick");
        if (present(s, "tune_mode"))
            get_str(&r, s, "settings", "tune_mode", d->tune_mode, sizeof d->tune_mode);
        if (present(s, "tune_no_cache"))
            d->tune_no_cache = get_bool(&r, s, "settings", "tune_no_cache");
    }
    json_object *m = field(&r, root, "", "machine", json_type_object, false);
    if (m)
        read_machine(&r, m, &d->machine);
    json_object *plugins = field(&r, root, "", "plugins", json_type_array, false);
    if (plugins)
        read_plugins(&r, plugins, d);
    json_object *devices = field(&r, root, "", "devices", json_type_array, false);
    if (devices)
        read_devices(&r, devices, d);
    json_object *bl = field(&r, root, "", "baselines", json_type_object, false);
    if (bl)
        read_baselines(&r, bl, &d->baselines);
    json_object *results = field(&r, root, "", "results", json_type_array, false);
    size_t n = results ? json_object_array_length(results) : 0;
    for (size_t i = 0; i < n && r.st == BST_OK; i++) {
        json_object *o = json_object_array_get_idx(results, i);
        char p[32];
        snprintf(p, sizeof p, "results[%zu]", i);
        if (!json_object_is_type(o, json_type_object)) {
            rfail(&r, "", p, "expected an object");
            break;
        }
        bench_result *x = bench_result_list_add(&d->results);
        if (!x) {
            r.st = bench_fail(e, BST_ERR_OUT_OF_MEMORY, "results: out of memory");
            break;
        }
        read_result(&r, o, p, x);
        if (r.st == BST_OK && (x->device < -1 || x->device >= (int32_t)d->n_devices))
            rfail(&r, p, "device", "is not an index into devices");
        if (r.st == BST_OK && (x->read_index < -1 || x->read_index >= (int32_t)d->baselines.n_reads))
            rfail(&r, p, "baseline.read", "is not an index into baselines.reads");
    }
    if (r.st == BST_OK)
        read_model(&r, root, d);
    json_object_put(root);
    if (r.st != BST_OK)
        bench_doc_free(d);
    return r.st;
}

bst_status bench_doc_load(const char *path, bench_doc *d, bench_error *e)
{
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f)
        return bench_fail(e, BST_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    char *buf = NULL;
    size_t size = 0, cap = 0;
    bst_status st = BST_OK;
    for (;;) {
        if (cap - size < 65536) {
            size_t grown = cap ? cap * 2 : 131072;
            char *p = grown > cap ? realloc(buf, grown + 1) : NULL;
            if (!p) {
                st = bench_fail(e, BST_ERR_OUT_OF_MEMORY, "'%s': out of memory", path);
                break;
            }
            buf = p;
            cap = grown;
        }
        size_t got = fread(buf + size, 1, cap - size, f);
        size += got;
        if (got == 0) {
            if (ferror(f))
                st = bench_fail(e, BST_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st == BST_OK) {
        buf[size] = '\0';
        st = bench_doc_parse(buf, d, e);
        if (st != BST_OK && e) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            bench_fail(e, st, "%s: %s", path, msg);
        }
    }
    free(buf);
    return st;
}
