/*
 * tests/bench_schema_check.c — the bench suites' own validator of the `bastion.bench/1` document,
 * written from bench/SCHEMA.md rather than from the writer's code (bench/bench_json.c), so a
 * writer bug cannot hide behind a matching reader. Each problem found is printed with its JSON
 * path.
 */
#include "bench_schema_check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum jt { T_STR, T_INT, T_NUM, T_BOOL, T_OBJ, T_ARR, T_HEX } jt;

typedef struct checker {
    int errors;
} checker;

static void bad(checker *k, const char *path, const char *key, const char *what)
{
    if (k->errors++ < 5)
        fprintf(stderr, "  schema: %s.%s: %s\n", path, key, what);
}

static bool is_hex16(const char *s)
{
    if (strncmp(s, "0x", 2) != 0 || strlen(s) != 18)
        return false;
    for (const char *p = s + 2; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The value of `key` if present with type t (or null when nullable); NULL otherwise. */
static json_object *need(checker *k, json_object *o, const char *path, const char *key, jt t,
                         bool nullable)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v)) {
        bad(k, path, key, "missing");
        return NULL;
    }
    if (!v) {
        if (!nullable)
            bad(k, path, key, "null");
        return NULL;
    }
    json_type jt_ = json_object_get_type(v);
    bool ok = false;
    switch (t) {
    case T_STR:
        ok = jt_ == json_type_string;
        break;
    case T_HEX:
        ok = jt_ == json_type_string && is_hex16(json_object_get_string(v));
        break;
    case T_INT:
        ok = jt_ == json_type_int;
        break;
    case T_NUM:
        ok = jt_ == json_type_int || jt_ == json_type_double;
        break;
    case T_BOOL:
        ok = jt_ == json_type_boolean;
        break;
    case T_OBJ:
        ok = jt_ == json_type_object;
        break;
    case T_ARR:
        ok = jt_ == json_type_array;
        break;
    }
    if (!ok) {
        bad(k, path, key, "wrong type");
        return NULL;
    }
    return v;
}

static void check_fields(checker *k, json_object *o, const char *path, const char *const *keys,
                         jt t)
{
    for (size_t i = 0; keys[i]; i++)
        need(k, o, path, keys[i], t, false);
}

/* A field added within /1 after its first version: optional to readers, so checked only when
 * present (the writer of this build always writes them; test_model_bench checks that). */
static json_object *opt(checker *k, json_object *o, const char *path, const char *key, jt t,
                        bool nullable)
{
    if (!json_object_object_get_ex(o, key, NULL))
        return NULL;
    return need(k, o, path, key, t, nullable);
}

static const char *const tune_modes[] = {"off", "cached", "full", "frozen", NULL};
static const char *const tune_caches[] = {"off", "hit", "miss", "partial", "frozen-miss", NULL};

static bool one_of(const char *s, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

/* model_results[].device_memory: one object per device, totals adding up. */
static void check_device_memory(checker *k, json_object *arr, size_t n_dev)
{
    const char *mp = "model_results[].device_memory[]";
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *m = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(m, json_type_object)) {
            bad(k, mp, "", "not an object");
            continue;
        }
        static const char *const strs[] = {"backend", "device_name", NULL};
        static const char *const ints[] = {"device",      "arena_bytes", "weight_bytes",
                                           "state_bytes", "io_bytes",    "total_bytes", NULL};
        check_fields(k, m, mp, strs, T_STR);
        check_fields(k, m, mp, ints, T_INT);
        int64_t d = json_object_get_int64(json_object_object_get(m, "device"));
        if (d < -1 || d >= (int64_t)n_dev)
            bad(k, mp, "device", "not an index into devices");
        int64_t sum = 0;
        for (size_t f = 1; f < 5; f++)
            sum += json_object_get_int64(json_object_object_get(m, ints[f]));
        if (sum != json_object_get_int64(json_object_object_get(m, "total_bytes")))
            bad(k, mp, "total_bytes", "not arena + weight + state + io");
    }
}

static void check_timing(checker *k, json_object *o, const char *path)
{
    need(k, o, path, "first_ns", T_INT, false);
    need(k, o, path, "warmup", T_INT, false);
    json_object *s = need(k, o, path, "samples_ns", T_ARR, false);
    for (size_t i = 0; s && i < json_object_array_length(s); i++)
        if (!json_object_is_type(json_object_array_get_idx(s, i), json_type_int))
            bad(k, path, "samples_ns", "not all integers");
    json_object *st = need(k, o, path, "stats", T_OBJ, false);
    if (st) {
        need(k, st, path, "n", T_INT, false);
        static const char *const nums[] = {"median_ns", "min_ns", "max_ns", "mean_ns",
                                           "stddev_ns", NULL};
        check_fields(k, st, path, nums, T_NUM);
    }
}

static void check_result(checker *k, json_object *r, const char *p)
{
    static const char *const strs[] = {"op",     "dtype",   "shape",  "label", "tensors",
                                       "backend", "device_name", "variant", "status", "reason",
                                       NULL};
    check_fields(k, r, p, strs, T_STR);
    need(k, r, p, "device", T_INT, false);
    need(k, r, p, "variant_hash", T_HEX, false);
    need(k, r, p, "cache_cold", T_BOOL, false);
    need(k, r, p, "weight_bound", T_BOOL, false);
    need(k, r, p, "weight_copies", T_INT, false);
    need(k, r, p, "flops", T_NUM, false);
    need(k, r, p, "bytes", T_NUM, false);
    need(k, r, p, "compile_ns", T_INT, false);
    need(k, r, p, "prepare_ns", T_INT, false);
    json_object *st = need(k, r, p, "status", T_STR, false);
    const char *status = st ? json_object_get_string(st) : "";
    static const char *const statuses[] = {"ok", "skipped", "unsupported", "failed", NULL};
    bool known = false;
    for (size_t i = 0; statuses[i]; i++)
        known = known || strcmp(status, statuses[i]) == 0;
    if (!known)
        bad(k, p, "status", "not one of ok, skipped, unsupported, failed");
    bool ok = strcmp(status, "ok") == 0;
    json_object *t = need(k, r, p, "timing", T_OBJ, !ok);
    if (t)
        check_timing(k, t, p);
    need(k, r, p, "gflops", T_NUM, !ok);
    need(k, r, p, "gbs", T_NUM, !ok);
    json_object *b = need(k, r, p, "baseline", T_OBJ, false);
    if (b) {
        need(k, b, p, "bandwidth_fraction", T_NUM, true);
        need(k, b, p, "sgemm_ratio", T_NUM, true);
        opt(k, b, p, "read_fraction", T_NUM, true); /* (added) */
        opt(k, b, p, "read", T_INT, true);
    }
    /* (added) time_source and device_timing: device_timing exactly when "device", which only
     * a measured result can be. */
    json_object *ts = opt(k, r, p, "time_source", T_STR, false);
    bool dev = ts && strcmp(json_object_get_string(ts), "device") == 0;
    if (ts && !dev && strcmp(json_object_get_string(ts), "wall") != 0)
        bad(k, p, "time_source", "not device or wall");
    if (dev && !ok)
        bad(k, p, "time_source", "device on a result that was not measured");
    json_object *dt = opt(k, r, p, "device_timing", T_OBJ, !dev);
    if (dt && !dev)
        bad(k, p, "device_timing", "present without time_source device");
    if (dev && !json_object_object_get_ex(r, "device_timing", NULL))
        bad(k, p, "device_timing", "missing");
    if (dt)
        check_timing(k, dt, p);
}

/* Every field bench/SCHEMA.md lists as required for an ops document. Returns the error count. */
int bench_schema_check(json_object *root)
{
    checker k = {0};
    const char *p = "$";
    json_object *schema = need(&k, root, p, "schema", T_STR, false);
    if (schema && strcmp(json_object_get_string(schema), "bastion.bench/1") != 0)
        bad(&k, p, "schema", "not bastion.bench/1");
    need(&k, root, p, "kind", T_STR, false);
    need(&k, root, p, "created", T_STR, false);
    need(&k, root, p, "command", T_STR, false);
    json_object *b = need(&k, root, p, "bastion", T_OBJ, false);
    if (b) {
        need(&k, b, "bastion", "version", T_STR, false);
        need(&k, b, "bastion", "git_commit", T_STR, false);
    }
    json_object *s = need(&k, root, p, "settings", T_OBJ, false);
    if (s) {
        static const char *const ints[] = {"threads", "min_reps", "max_reps", "max_warmup", NULL};
        check_fields(&k, s, "settings", ints, T_INT);
        need(&k, s, "settings", "budget_s", T_NUM, false);
        need(&k, s, "settings", "quick", T_BOOL, false);
        json_object *tm = opt(&k, s, "settings", "tune_mode", T_STR, true);
        if (tm && !one_of(json_object_get_string(tm), tune_modes))
            bad(&k, "settings", "tune_mode", "not off, cached, full or frozen");
        opt(&k, s, "settings", "tune_no_cache", T_BOOL, false);
    }
    json_object *m = need(&k, root, p, "machine", T_OBJ, false);
    if (m) {
        static const char *const strs[] = {"cpu_model", "cpu_vendor", "os", NULL};
        static const char *const ints[] = {"logical_cpus", "physical_cores", "llc_bytes",
                                           "memory_bytes", NULL};
        check_fields(&k, m, "machine", strs, T_STR);
        check_fields(&k, m, "machine", ints, T_INT);
        json_object *isa = need(&k, m, "machine", "isa", T_ARR, false);
        for (size_t i = 0; isa && i < json_object_array_length(isa); i++)
            if (!json_object_is_type(json_object_array_get_idx(isa, i), json_type_string))
                bad(&k, "machine", "isa", "not all strings");
        json_object *caches = need(&k, m, "machine", "caches", T_ARR, false);
        for (size_t i = 0; caches && i < json_object_array_length(caches); i++) {
            json_object *c = json_object_array_get_idx(caches, i);
            need(&k, c, "machine.caches[]", "level", T_INT, false);
            need(&k, c, "machine.caches[]", "type", T_STR, false);
            need(&k, c, "machine.caches[]", "size_bytes", T_INT, false);
            need(&k, c, "machine.caches[]", "shared_cpus", T_STR, false);
        }
    }
    json_object *plugins = need(&k, root, p, "plugins", T_ARR, false);
    for (size_t i = 0; plugins && i < json_object_array_length(plugins); i++) {
        json_object *pl = json_object_array_get_idx(plugins, i);
        static const char *const strs[] = {"name", "state", "version", "path", "detail", NULL};
        check_fields(&k, pl, "plugins[]", strs, T_STR);
        need(&k, pl, "plugins[]", "abi_version", T_INT, false);
    }
    json_object *devices = need(&k, root, p, "devices", T_ARR, false);
    size_t n_dev = devices ? json_object_array_length(devices) : 0;
    for (size_t i = 0; i < n_dev; i++) {
        json_object *d = json_object_array_get_idx(devices, i);
        static const char *const strs[] = {"backend", "name", "vendor", "kind",
                                           "driver_version", NULL};
        static const char *const ints[] = {"index", "memory_bytes", "max_alloc_bytes",
                                           "max_binding_bytes", NULL};
        static const char *const bools[] = {"unified_memory", "self_threaded", NULL};
        check_fields(&k, d, "devices[]", strs, T_STR);
        check_fields(&k, d, "devices[]", ints, T_INT);
        check_fields(&k, d, "devices[]", bools, T_BOOL);
        need(&k, d, "devices[]", "fingerprint", T_HEX, false);
    }
    json_object *bl = need(&k, root, p, "baselines", T_OBJ, false);
    if (bl) {
        json_object *bw = need(&k, bl, "baselines", "bandwidth", T_OBJ, false);
        if (bw) {
            const char *bp = "baselines.bandwidth";
            json_object *measured = need(&k, bw, bp, "measured", T_BOOL, false);
            bool mz = measured && json_object_get_boolean(measured);
            need(&k, bw, bp, "reason", T_STR, false);
            opt(&k, bw, bp, "loads", T_STR, false); /* (added) */
            need(&k, bw, bp, "bytes", T_INT, false);
            need(&k, bw, bp, "threads", T_INT, false);
            need(&k, bw, bp, "gbs", T_NUM, !mz);
            json_object *t = need(&k, bw, bp, "timing", T_OBJ, !mz);
            if (t)
                check_timing(&k, t, bp);
        }
        json_object *sg = need(&k, bl, "baselines", "sgemm", T_OBJ, false);
        if (sg) {
            const char *sp = "baselines.sgemm";
            need(&k, sg, sp, "available", T_BOOL, false);
            need(&k, sg, sp, "library", T_STR, false);
            json_object *cases = need(&k, sg, sp, "cases", T_ARR, false);
            for (size_t i = 0; cases && i < json_object_array_length(cases); i++) {
                json_object *c = json_object_array_get_idx(cases, i);
                static const char *const ints[] = {"m", "n", "k", "copies", NULL};
                check_fields(&k, c, "sgemm.cases[]", ints, T_INT);
                need(&k, c, "sgemm.cases[]", "routine", T_STR, false);
                need(&k, c, "sgemm.cases[]", "gflops", T_NUM, true);
                json_object *t = need(&k, c, "sgemm.cases[]", "timing", T_OBJ, false);
                if (t)
                    check_timing(&k, t, "sgemm.cases[].timing");
            }
        }
        /* (added) the same-size reads */
        json_object *reads = opt(&k, bl, "baselines", "reads", T_ARR, false);
        for (size_t i = 0; reads && i < json_object_array_length(reads); i++) {
            json_object *c = json_object_array_get_idx(reads, i);
            const char *rp = "baselines.reads[]";
            static const char *const ints[] = {"bytes", "copies", "threads", NULL};
            check_fields(&k, c, rp, ints, T_INT);
            json_object *measured = need(&k, c, rp, "measured", T_BOOL, false);
            bool mz = measured && json_object_get_boolean(measured);
            need(&k, c, rp, "reason", T_STR, false);
            need(&k, c, rp, "case", T_STR, false);
            need(&k, c, rp, "loads", T_STR, false);
            need(&k, c, rp, "gbs", T_NUM, !mz);
            opt(&k, c, rp, "stream_gbs", T_NUM, true); /* (added) */
            opt(&k, c, rp, "handoff_ns", T_NUM, true); /* (added) */
            json_object *t = need(&k, c, rp, "timing", T_OBJ, !mz);
            if (t)
                check_timing(&k, t, rp);
        }
    }
    json_object *model = NULL;
    if (json_object_object_get_ex(root, "model", &model)) {
        need(&k, root, p, "model", T_OBJ, false);
        static const char *const strs[] = {"path", "name", "architecture", "file_hash", NULL};
        static const char *const ints[] = {"file_bytes", "n_params", NULL};
        if (model) {
            check_fields(&k, model, "model", strs, T_STR);
            check_fields(&k, model, "model", ints, T_INT);
        }
        json_object *rows = need(&k, root, p, "model_results", T_ARR, false);
        for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
            json_object *r = json_object_array_get_idx(rows, i);
            const char *mp = "model_results[]";
            static const char *const mstrs[] = {"backends", "status", "reason", NULL};
            static const char *const mints[] = {"n_prompt", "n_gen", "reps", "threads",
                                                "peak_rss_bytes", NULL};
            static const char *const mnums[] = {"load_s", "session_s", "pp_cold_tps",
                                                "tg_cold_tps", "pp_tps", "tg_tps",
                                                "weight_bytes_per_token", "roofline_tps",
                                                "roofline_fraction", NULL};
            check_fields(&k, r, mp, mstrs, T_STR);
            check_fields(&k, r, mp, mints, T_INT);
            for (size_t f = 0; mnums[f]; f++)
                need(&k, r, mp, mnums[f], T_NUM, true);
            json_object *t = need(&k, r, mp, "pp_timing", T_OBJ, true);
            if (t)
                check_timing(&k, t, "model_results[].pp_timing");
            t = need(&k, r, mp, "tg_timing", T_OBJ, true);
            if (t)
                check_timing(&k, t, "model_results[].tg_timing");
            opt(&k, r, mp, "engine", T_STR, false);
            opt(&k, r, mp, "kv_bytes_per_token", T_NUM, true);
            json_object *depth = opt(&k, r, mp, "n_depth", T_INT, false);
            if (depth && json_object_get_int64(depth) < 0)
                bad(&k, mp, "n_depth", "negative");
            if (opt(&k, r, mp, "tg_bandwidth_gbs", T_NUM, true)) {
                need(&k, r, mp, "tg_bandwidth_min_gbs", T_NUM, true);
                need(&k, r, mp, "tg_bandwidth_max_gbs", T_NUM, true);
            }
            static const char *const kv_types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", NULL};
            json_object *kv = opt(&k, r, mp, "kv_type", T_STR, true);
            if (kv && !one_of(json_object_get_string(kv), kv_types))
                bad(&k, mp, "kv_type", "not a KV cache dtype");
            json_object *tm = opt(&k, r, mp, "tune_mode", T_STR, true);
            if (tm && !one_of(json_object_get_string(tm), tune_modes))
                bad(&k, mp, "tune_mode", "not off, cached, full or frozen");
            json_object *tc = opt(&k, r, mp, "tune_cache", T_STR, true);
            if (tc && !one_of(json_object_get_string(tc), tune_caches))
                bad(&k, mp, "tune_cache", "not off, hit, miss, partial or frozen-miss");
            static const char *const tints[] = {"tune_hits", "tune_measured",
                                                "tune_frozen_misses", NULL};
            for (size_t f = 0; tints[f]; f++)
                opt(&k, r, mp, tints[f], T_INT, false);
            opt(&k, r, mp, "tune_s", T_NUM, true);
            json_object *dm = opt(&k, r, mp, "device_memory", T_ARR, false);
            if (dm)
                check_device_memory(&k, dm, n_dev);
            json_object *ks = opt(&k, r, mp, "kernels", T_ARR, false);
            for (size_t j = 0; ks && j < json_object_array_length(ks); j++) {
                json_object *kn = json_object_array_get_idx(ks, j);
                static const char *const kstrs[] = {"op", "device", "kernel", NULL};
                static const char *const kints[] = {"nodes", "hits", "measured", NULL};
                check_fields(&k, kn, "model_results[].kernels[]", kstrs, T_STR);
                check_fields(&k, kn, "model_results[].kernels[]", kints, T_INT);
            }
            opt(&k, r, mp, "pp_device_tps", T_NUM, true);
            opt(&k, r, mp, "tg_device_tps", T_NUM, true);
            json_object *dts = opt(&k, r, mp, "device_times", T_ARR, false);
            for (size_t j = 0; dts && j < json_object_array_length(dts); j++) {
                json_object *dt = json_object_array_get_idx(dts, j);
                const char *dp = "model_results[].device_times[]";
                static const char *const dstrs[] = {"backend", "device_name", NULL};
                static const char *const dints[] = {"device",        "pp_partitions",
                                                    "tg_partitions", "pp_device_ns",
                                                    "tg_device_ns",  "pp_wall_ns",
                                                    "tg_wall_ns",    NULL};
                static const char *const dbools[] = {"pp_all_device", "tg_all_device", NULL};
                check_fields(&k, dt, dp, dstrs, T_STR);
                check_fields(&k, dt, dp, dints, T_INT);
                check_fields(&k, dt, dp, dbools, T_BOOL);
                need(&k, dt, dp, "pp_device_tps", T_NUM, true);
                need(&k, dt, dp, "tg_device_tps", T_NUM, true);
                int64_t d = json_object_get_int64(json_object_object_get(dt, "device"));
                if (d < -1 || d >= (int64_t)n_dev)
                    bad(&k, dp, "device", "not an index into devices");
            }
        }
    }
    json_object *results = need(&k, root, p, "results", T_ARR, false);
    for (size_t i = 0; results && i < json_object_array_length(results); i++) {
        json_object *r = json_object_array_get_idx(results, i);
        char rp[32];
        snprintf(rp, sizeof rp, "results[%zu]", i);
        if (!json_object_is_type(r, json_type_object)) {
            bad(&k, rp, "", "not an object");
            continue;
        }
        check_result(&k, r, rp);
        json_object *dev = NULL;
        if (json_object_object_get_ex(r, "device", &dev) && dev) {
            int64_t d = json_object_get_int64(dev);
            if (d < -1 || d >= (int64_t)n_dev)
                bad(&k, rp, "device", "not an index into devices");
        }
    }
    return k.errors;
}

