/*
 * tests/test_bench_model.c — `bastion bench model` on the default model: its rows (speeds, cold
 * costs, roofline, model identity, memory), depth, device times (the CPU backend's and a modelled
 * NPU's), tuning modes, and the memory API its device_memory comes from. As for bench ops, no
 * timing is asserted, only that the numbers agree with each other.
 */
#include "bench.h"
#include "bench_schema_check.h"
#include "bench_test_util.h"
#include "runtime/model/gguf.h"
#include "test_util.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef BENCH_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

/* model_results[].device_times against each other and the row (bench/SCHEMA.md): per device,
 * the rates follow from the sums; the row's rate counts every device's time plus copies, so it
 * is at most any one device's rate when every device reported. */
static void check_model_device_times(json_object *root, json_object *r, uint32_t n_prompt,
                                     uint32_t n_gen)
{
    json_object *dts = jget(r, "device_times");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dts);
    size_t n = json_object_array_length(dts), n_dev = json_object_array_length(jget(root,
                                                                                    "devices"));
    CU_ASSERT_TRUE(n >= 1);
    bool all_pp = true, all_tg = true;
    double sum_pp = 0, sum_tg = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(dts, i);
        int64_t d = (int64_t)jnum(t, "device");
        CU_ASSERT_TRUE(d >= 0 && (size_t)d < n_dev);
        static const char *const tests[2] = {"pp", "tg"};
        const uint32_t tokens[2] = {n_prompt, n_gen};
        for (int k = 0; k < 2; k++) {
            char key[32];
            snprintf(key, sizeof key, "%s_partitions", tests[k]);
            double parts = jnum(t, key);
            snprintf(key, sizeof key, "%s_all_device", tests[k]);
            bool all = json_object_get_boolean(jget(t, key));
            snprintf(key, sizeof key, "%s_device_ns", tests[k]);
            double dev_ns = jnum(t, key);
            snprintf(key, sizeof key, "%s_wall_ns", tests[k]);
            double wall_ns = jnum(t, key);
            snprintf(key, sizeof key, "%s_device_tps", tests[k]);
            double tps = jnum(t, key);
            CU_ASSERT_TRUE(parts >= 0 && dev_ns >= 0 && wall_ns >= 0);
            if (parts > 0)
                CU_ASSERT_TRUE(wall_ns > 0);
            if (all && parts > 0 && dev_ns > 0)
                CU_ASSERT_TRUE(near(tps, tokens[k] / (dev_ns * 1e-9), 1e-9));
            if (!all)
                CU_ASSERT_TRUE(isnan(tps));
            if (parts > 0) {
                if (k == 0) {
                    all_pp = all_pp && all;
                    sum_pp += dev_ns;
                } else {
                    all_tg = all_tg && all;
                    sum_tg += dev_ns;
                }
            }
        }
    }
    double pp = jnum(r, "pp_device_tps"), tg = jnum(r, "tg_device_tps");
    CU_ASSERT_EQUAL(isnan(pp), !all_pp);
    CU_ASSERT_EQUAL(isnan(tg), !all_tg);
    if (all_pp && sum_pp > 0)
        CU_ASSERT_TRUE(pp <= n_prompt / (sum_pp * 1e-9) * (1 + 1e-9));
    if (all_tg && sum_tg > 0)
        CU_ASSERT_TRUE(tg <= n_gen / (sum_tg * 1e-9) * (1 + 1e-9));
}

/* --- bench model on the default model ------------------------------------------------------ */

/* Weight bytes one token reads, counted with the library's own GGUF reader: every tensor, but
 * one row of an input embedding that has a separate output head. */
static double expected_weight_bytes(const char *path)
{
    bsti_gguf *g = NULL;
    if (bsti_gguf_open(path, NULL, &g) != BST_OK)
        return NAN;
    double total = 0.0;
    for (uint64_t i = 0; i < bsti_gguf_tensor_count(g); i++)
        total += (double)bsti_gguf_tensor_at(g, i)->size;
    const bsti_gguf_tensor *embd = bsti_gguf_tensor_find(g, "token_embd.weight");
    if (embd && bsti_gguf_tensor_find(g, "output.weight"))
        total += (double)embd->size / (double)embd->shape[0] - (double)embd->size;
    bsti_gguf_close(g);
    return total;
}

/* Bytes of an f32 KV cache of n_ctx rows: K and V of every layer, n_kv_heads x head_dim wide. */
static double expected_kv_bytes(const char *path, uint32_t n_ctx)
{
    bsti_gguf *g = NULL;
    if (bsti_gguf_open(path, NULL, &g) != BST_OK)
        return NAN;
    uint32_t layers = 0, embd = 0, heads = 0, kv_heads = 0;
    bool ok = bsti_gguf_get_u32(g, "llama.block_count", &layers) == BST_OK &&
              bsti_gguf_get_u32(g, "llama.embedding_length", &embd) == BST_OK &&
              bsti_gguf_get_u32(g, "llama.attention.head_count", &heads) == BST_OK &&
              bsti_gguf_get_u32(g, "llama.attention.head_count_kv", &kv_heads) == BST_OK &&
              heads > 0;
    bsti_gguf_close(g);
    return ok ? 2.0 * layers * n_ctx * (double)kv_heads * (embd / heads) * 4.0 : NAN;
}

/* The fields added within /1 to a model row, for a run with --tune `mode` on one backend. */
static void check_model_additions(json_object *root, json_object *r, const char *mode,
                                  const char *backend)
{
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(jget(root, "settings"), "tune_mode")),
                           mode);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "engine")), "bastion");
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "tune_mode")), mode);
    const char *cache = json_object_get_string(jget(r, "tune_cache"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cache);
    double hits = jnum(r, "tune_hits"), measured = jnum(r, "tune_measured");
    double frozen = jnum(r, "tune_frozen_misses"), tune_s = jnum(r, "tune_s");
    /* The one-word summary follows from the counts (bench/SCHEMA.md). */
    if (strcmp(mode, "off") == 0) {
        CU_ASSERT_STRING_EQUAL(cache, "off");
        CU_ASSERT_TRUE(hits == 0 && measured == 0 && frozen == 0 && tune_s == 0);
    } else if (frozen > 0) {
        CU_ASSERT_STRING_EQUAL(cache, "frozen-miss");
    } else if (measured > 0) {
        CU_ASSERT_STRING_EQUAL(cache, hits > 0 ? "partial" : "miss");
    } else {
        CU_ASSERT_STRING_EQUAL(cache, "hit");
    }
    if (strcmp(mode, "frozen") == 0)
        CU_ASSERT_EQUAL(measured, 0); /* frozen never measures */
    /* Measuring is part of creating the session. */
    CU_ASSERT_TRUE(tune_s >= 0 && tune_s <= jnum(r, "session_s") + 1e-3);
    json_object *mem = jget(r, "device_memory");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mem);
    CU_ASSERT_TRUE_FATAL(json_object_array_length(mem) >= 1);
    json_object *devices = jget(root, "devices");
    double state = 0, weights = 0;
    for (size_t i = 0; i < json_object_array_length(mem); i++) {
        json_object *m = json_object_array_get_idx(mem, i);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(m, "backend")), backend);
        int64_t d = (int64_t)jnum(m, "device");
        CU_ASSERT_TRUE_FATAL(d >= 0 && (size_t)d < json_object_array_length(devices));
        json_object *dev = json_object_array_get_idx(devices, (size_t)d);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(dev, "backend")), backend);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(dev, "name")),
                               json_object_get_string(jget(m, "device_name")));
        CU_ASSERT_TRUE(jnum(m, "total_bytes") > 0);
        state += jnum(m, "state_bytes");
        weights += jnum(m, "weight_bytes");
    }
    /* The kernel summary: every entry on this backend. */
    json_object *ks = jget(r, "kernels");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ks);
    CU_ASSERT_TRUE(json_object_array_length(ks) >= 1);
    double khits = 0, kmeasured = 0;
    bool has_matmul = false;
    for (size_t i = 0; i < json_object_array_length(ks); i++) {
        json_object *kn = json_object_array_get_idx(ks, i);
        const char *dev = json_object_get_string(jget(kn, "device"));
        CU_ASSERT_TRUE(strncmp(dev, backend, strlen(backend)) == 0 && dev[strlen(backend)] == '/');
        CU_ASSERT_TRUE(jnum(kn, "nodes") >= 1);
        CU_ASSERT_TRUE(jnum(kn, "hits") + jnum(kn, "measured") <= jnum(kn, "nodes"));
        khits += jnum(kn, "hits");
        kmeasured += jnum(kn, "measured");
        has_matmul |= strcmp(json_object_get_string(jget(kn, "op")), "matmul") == 0;
    }
    CU_ASSERT_TRUE(has_matmul);
    /* The row's counts also cover the alternative plans the whole-graph check built and threw
     * away; the summary covers the program that ran. */
    CU_ASSERT_TRUE(khits <= hits);
    CU_ASSERT_TRUE(kmeasured <= measured);
    /* The KV cache is the only state: n_ctx = the depth + the longer test + 1 rows of the row's
     * kv_type (f32 or half that for f16); twice when tuning split a prompt body (with its own
     * copy of the cache) from the decode body. */
    const char *model = getenv("BASTION_MODEL");
    uint32_t longest = (uint32_t)fmax(jnum(r, "n_prompt"), jnum(r, "n_gen"));
    const uint32_t depth = (uint32_t)jnum(r, "n_depth");
    const bool f16 = strcmp(json_object_get_string(jget(r, "kv_type")), "f16") == 0;
    double kv = expected_kv_bytes(model, depth + longest + 1) / (f16 ? 2 : 1);
    if (strcmp(mode, "off") == 0)
        CU_ASSERT_TRUE(near(state, kv, 1e-12));
    CU_ASSERT_TRUE(near(state, kv, 1e-12) || near(state, 2 * kv, 1e-12));
    CU_ASSERT_TRUE(weights > 0);
}

static void expected_hash(const char *path, char *out, size_t size)
{
    snprintf(out, size, "?");
#ifdef BENCH_HAVE_LIBCRYPTO
    size_t n = 0;
    char *data = bst_test_read_file(path, &n);
    unsigned char d[32];
    unsigned int dl = 0;
    if (data && EVP_Digest(data, n, d, &dl, EVP_sha256(), NULL) == 1 && dl == 32) {
        size_t used = (size_t)snprintf(out, size, "sha256:");
        for (unsigned i = 0; i < 32; i++)
            used += (size_t)snprintf(out + used, size - used, "%02x", d[i]);
    }
    free(data);
#endif
}

static void test_model_bench(void)
{
    const char *model = getenv("BASTION_MODEL");
    if (!model || !*model) {
        fprintf(stderr, "\n  BASTION_MODEL is not set: bench model not exercised\n");
        return;
    }
    struct stat sb;
    if (stat(model, &sb) != 0)
        fprintf(stderr, "\n  %s is missing: run tools/fetch-model.sh\n", model);
    CU_ASSERT_EQUAL_FATAL(stat(model, &sb), 0);
    char json_buf[256];
    const char *json_path = tmp_path("model.json", json_buf, sizeof json_buf);
    int rc = RUN(NULL, "bench", "model", "-m", model, "-p", "8", "-n", "4", "-r", "2", "--backend",
                 "cpu", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(root, "kind")), "model");
    json_object *m = jget(root, "model");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(m, "architecture")), "llama");
    CU_ASSERT_EQUAL((int64_t)jnum(m, "file_bytes"), (int64_t)sb.st_size);
#ifdef BENCH_HAVE_LIBCRYPTO
    char hash[80];
    expected_hash(model, hash, sizeof hash);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(m, "file_hash")), hash);
#endif
    json_object *rows = jget(root, "model_results");
    CU_ASSERT_EQUAL_FATAL(json_object_array_length(rows), 1);
    json_object *r = json_object_array_get_idx(rows, 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "status")), "ok");
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "backends")), "cpu");
    CU_ASSERT_EQUAL((int)jnum(r, "n_prompt"), 8);
    CU_ASSERT_EQUAL((int)jnum(r, "n_gen"), 4);
    CU_ASSERT_EQUAL(jnum(r, "n_depth"), 0); /* from an empty cache unless -d */
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "kv_type")), "f16"); /* the default */
    json_object *pp = jget(r, "pp_timing"), *tg = jget(r, "tg_timing");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pp);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tg);
    CU_ASSERT_EQUAL(json_object_array_length(jget(pp, "samples_ns")), 2); /* -r 2 */
    check_timing_consistent(pp);
    check_timing_consistent(tg);
    double pp_med = jnum(jget(pp, "stats"), "median_ns"), tg_med = jnum(jget(tg, "stats"),
                                                                        "median_ns");
    CU_ASSERT_TRUE(near(jnum(r, "pp_tps"), 8 / (pp_med * 1e-9), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "tg_tps"), 4 / (tg_med * 1e-9), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "pp_cold_tps"), 8 / (jnum(pp, "first_ns") * 1e-9), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "tg_cold_tps"), 4 / (jnum(tg, "first_ns") * 1e-9), 1e-9));
    /* The roofline: measured bandwidth over the bytes a token reads: the weights, and the f16
     * KV cache (half an f32 one's bytes) at (4 + 1) / 2 positions on average over the 4 steps
     * from an empty cache. */
    double wbytes = jnum(r, "weight_bytes_per_token"), kvbytes = jnum(r, "kv_bytes_per_token");
    CU_ASSERT_TRUE(near(wbytes, expected_weight_bytes(model), 1e-12));
    CU_ASSERT_TRUE(near(kvbytes, expected_kv_bytes(model, 1) / 2 * 2.5, 1e-12));
    /* ... at the bandwidth sampled around the tg repetitions: before each of the 1 + 2 and after
     * the last, a median of the samples within their range. */
    double bw = jnum(r, "tg_bandwidth_gbs"), lo = jnum(r, "tg_bandwidth_min_gbs"),
           hi = jnum(r, "tg_bandwidth_max_gbs");
    CU_ASSERT_TRUE(lo > 0 && lo <= bw && bw <= hi);
    CU_ASSERT_TRUE(near(jnum(r, "roofline_tps"), bw * 1e9 / (wbytes + kvbytes), 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "roofline_fraction"), jnum(r, "tg_tps") / jnum(r, "roofline_tps"),
                        1e-9));
    CU_ASSERT_TRUE(jnum(r, "peak_rss_bytes") > 0);
    CU_ASSERT_TRUE(jnum(r, "session_s") >= 0 && jnum(r, "load_s") >= 0);
    check_model_additions(root, r, "off", "cpu");
    check_model_device_times(root, r, 8, 4);
    /* The CPU backend reports its own time: one device, every partition timed. */
    json_object *dts = jget(r, "device_times");
    CU_ASSERT_EQUAL_FATAL(json_object_array_length(dts), 1);
    json_object *dt0 = json_object_array_get_idx(dts, 0);
    CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(dt0, "backend")), "cpu");
    CU_ASSERT_TRUE(json_object_get_boolean(jget(dt0, "pp_all_device")));
    CU_ASSERT_TRUE(json_object_get_boolean(jget(dt0, "tg_all_device")));
    CU_ASSERT_TRUE(jnum(r, "pp_device_tps") > 0 && jnum(r, "tg_device_tps") > 0);
    json_object_put(root);

    /* The reader takes it back, and its Markdown has the model row. */
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL(d.n_model_results, 1);
    char *buf = doc_text(&d, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| cpu | "));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| pp8 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| off | cpu "));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "### Device time"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| cpu | all devices + copies |"));
    CU_ASSERT_EQUAL(d.model_results[0].n_memory, 1);
    CU_ASSERT_STRING_EQUAL(d.model_results[0].tune_cache, "off");
    CU_ASSERT_STRING_EQUAL(d.tune_mode, "off");
    free(buf);
    /* CSV of a model document: its rows, with the device memory summed. */
    buf = doc_text(&d, BENCH_FORMAT_CSV, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_TRUE(strncmp(buf, "engine,backends,status,", 23) == 0);
    char mem_col[48];
    snprintf(mem_col, sizeof mem_col, ",%llu,",
             (unsigned long long)d.model_results[0].memory[0].total_bytes);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\nbastion,cpu,ok,,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, mem_col));
    free(buf);
    bench_doc_free(&d);

    /* --kv-type f32: the session's cache is f32, and the row says so. */
    rc = RUN(NULL, "bench", "model", "-m", model, "--quick", "-p", "4", "-n", "2", "-r", "1",
             "--backend", "cpu", "--kv-type", "f32", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(d.n_model_results, 1);
    CU_ASSERT_STRING_EQUAL(d.model_results[0].status, "ok");
    CU_ASSERT_STRING_EQUAL(d.model_results[0].kv_type, "f32");
    CU_ASSERT_TRUE(d.model_results[0].tg_tps > 0);
    /* The f32 cache's bytes at (2 + 1) / 2 positions. */
    CU_ASSERT_TRUE(near(d.model_results[0].kv_bytes_per_token,
                        expected_kv_bytes(model, 1) * 1.5, 1e-12));
    bench_doc_free(&d);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "--kv-type", "q3"), 2);

    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-p", "0", "-n", "0"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", "/nonexistent.gguf", "-p", "1", "-n", "1"),
                    1);
}

/* The trace of a -p 4 -n 4 -d 8 run at --profile-level partitions (the device-time
 * repetitions): every record's n_kv is the cache's length when it ran, so the tg steps ran at
 * 9..12 positions and the prompt at 12 (8 of depth, then its own 4), and the untimed prefill (8
 * tokens at once: n_batch is min(depth, 512) when that is above -p) left no record. */
static void check_depth_trace(const char *trace_path)
{
    json_object *trace = json_object_from_file(trace_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trace);
    json_object *events = jget(trace, "traceEvents");
    CU_ASSERT_PTR_NOT_NULL_FATAL(events);
    uint32_t tg_seen = 0, pp_runs = 0, other = 0; /* tg_seen: bit k for n_kv 9 + k */
    for (size_t i = 0; i < json_object_array_length(events); i++) {
        json_object *ev = json_object_array_get_idx(events, i), *args = jget(ev, "args");
        if (strcmp(json_object_get_string(jget(ev, "ph")), "X") != 0)
            continue;
        const double n_tokens = jnum(args, "n_tokens"), n_kv = jnum(args, "n_kv");
        const bool body = strcmp(json_object_get_string(jget(args, "program")), "body") == 0;
        if (n_tokens == 1 && n_kv >= 9 && n_kv <= 12)
            tg_seen |= body ? 1u << (uint32_t)(n_kv - 9) : 0;
        else if (n_tokens == 4 && n_kv == 12)
            pp_runs += body;
        else
            other++;
    }
    CU_ASSERT_EQUAL(tg_seen, 0xfu);
    CU_ASSERT_EQUAL(pp_runs, 1);
    CU_ASSERT_EQUAL(other, 0);
    json_object_put(trace);
}

/* -d: every pp and tg repetition starts from a cache holding n_depth tokens. */
static void test_model_depth(void)
{
    const char *model = getenv("BASTION_MODEL");
    struct stat sb;
    if (!model || !*model || stat(model, &sb) != 0) {
        fprintf(stderr, "\n  BASTION_MODEL is not set or missing: bench model -d not exercised\n");
        return;
    }
    char json_buf[256], trace_buf[256];
    const char *json_path = tmp_path("model-depth.json", json_buf, sizeof json_buf);
    const char *trace_path = tmp_path("model-depth-trace.json", trace_buf, sizeof trace_buf);
    int rc = RUN(NULL, "bench", "model", "-m", model, "--quick", "-p", "4", "-n", "4", "-d", "8",
                 "-r", "1", "--backend", "cpu", "--profile", trace_path, "--profile-level",
                 "partitions", "--json", json_path);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    json_object *r = json_object_array_get_idx(jget(root, "model_results"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_STRING_EQUAL_FATAL(json_object_get_string(jget(r, "status")), "ok");
    CU_ASSERT_EQUAL(jnum(r, "n_depth"), 8);
    /* The f16 cache's bytes at 8 + (4 + 1) / 2 positions per step. */
    const double kvbytes = jnum(r, "kv_bytes_per_token");
    CU_ASSERT_TRUE(near(kvbytes, expected_kv_bytes(model, 1) / 2 * 10.5, 1e-12));
    CU_ASSERT_TRUE(near(jnum(r, "roofline_tps"),
                        jnum(r, "tg_bandwidth_gbs") * 1e9 /
                            (jnum(r, "weight_bytes_per_token") + kvbytes),
                        1e-9));
    check_model_additions(root, r, "off", "cpu"); /* the cache holds 8 + 4 + 1 positions */
    check_model_device_times(root, r, 4, 4);
    json_object_put(root);
    check_depth_trace(trace_path);

    /* The reader takes n_depth back, and the reports name the tests as llama-bench does. */
    bench_doc d;
    bench_error e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL_FATAL(bench_doc_load(json_path, &d, &e), BST_OK);
    CU_ASSERT_EQUAL_FATAL(d.n_model_results, 1);
    CU_ASSERT_EQUAL(d.model_results[0].n_depth, 8);
    char *buf = doc_text(&d, BENCH_FORMAT_MD, NULL, 0.0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| pp4 @ d8 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| tg4 @ d8 |"));
    free(buf);
    bench_doc_free(&d);

    /* Token counts, as -p and -n. */
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-d", "65537"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "--n-depth", "deep"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-d", "-1"), 2);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "-d"), 2);
}

/* bench model with npu-sim,cpu: both devices in device_times, the NPU's time modelled. */
static void test_model_npu_sim_device_time(void)
{
    const char *model = getenv("BASTION_MODEL");
    if (!model || !*model || !have_npu_sim())
        return;
    char json_buf[256], trace_buf[256];
    const char *json_path = tmp_path("model-npu.json", json_buf, sizeof json_buf);
    const char *trace_path = tmp_path("model-npu-trace.json", trace_buf, sizeof trace_buf);
    /* --profile-level partitions: the device-time repetition is also the traced one. */
    int rc = run_on_chip("npu-large", NULL,
                         (const char *const[]){"bench", "model", "-m", model, "--quick", "-p",
                                               "4", "-n", "2", "-r", "1", "--backend",
                                               "npu-sim,cpu", "--profile", trace_path,
                                               "--profile-level", "partitions", "--json",
                                               json_path, NULL});
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    json_object *trace = json_object_from_file(trace_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trace);
    size_t size = 0;
    char *trace_text = bst_test_read_file(trace_path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(trace_text);
    CU_ASSERT_PTR_NOT_NULL(strstr(trace_text, "\"device_us\""));
    free(trace_text);
    json_object_put(trace);
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    json_object *r = json_object_array_get_idx(jget(root, "model_results"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_STRING_EQUAL_FATAL(json_object_get_string(jget(r, "status")), "ok");
    check_model_device_times(root, r, 4, 2);
    json_object *dts = jget(r, "device_times");
    bool npu = false;
    for (size_t i = 0; i < json_object_array_length(dts); i++) {
        json_object *t = json_object_array_get_idx(dts, i);
        if (strcmp(json_object_get_string(jget(t, "backend")), "npu-sim") != 0)
            continue;
        npu = true;
        CU_ASSERT_TRUE(jnum(t, "pp_partitions") > 0 && jnum(t, "tg_partitions") > 0);
        CU_ASSERT_TRUE(json_object_get_boolean(jget(t, "pp_all_device")));
        CU_ASSERT_TRUE(jnum(t, "tg_device_ns") > 0);
        /* The row's devices now include the plugin that loads only when named. */
        int64_t d = (int64_t)jnum(t, "device");
        CU_ASSERT_TRUE_FATAL(d >= 0);
        CU_ASSERT_STRING_EQUAL(
            json_object_get_string(jget(json_object_array_get_idx(jget(root, "devices"),
                                                                   (size_t)d),
                                        "backend")),
            "npu-sim");
    }
    CU_ASSERT_TRUE(npu);
    json_object_put(root);
}

/* --- bst_program_memory / bst_session_memory (what bench model's device_memory reports) ----- */

/* z = silu(x . w^T + b): x f32[2,3] input, w f32[4,3] weight, b f32[4] constant, z output; the
 * matmul and the add are scratch values in the arena. */
static void test_memory_api(void)
{
    static const float w[4][3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {1, 0, 1}};
    static const float bias[4] = {1, 2, 3, 4};
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t xs[2] = {2, 3}, ws[2] = {4, 3}, bs[1] = {4};
    bst_value vx, vw, vb, mm, y, z;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &vx) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w", BST_DTYPE_F32, 2, ws, w, sizeof w, &vw) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_const(g, BST_DTYPE_F32, 1, bs, bias, sizeof bias, &vb) == BST_OK);
    bst_value in[2] = {vx, vw};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_MATMUL, in, 2, NULL, 0, &mm) == BST_OK);
    in[0] = mm;
    in[1] = vb;
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_ADD, in, 2, NULL, 0, &y) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_SILU, &y, 1, NULL, 0, &z) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, z, "z") == BST_OK);
    /* cpu first: everything lands there; a second backend's device, when there is one, holds
     * nothing. */
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 1, .backends = "cpu,opencl"};
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    CU_ASSERT_FATAL(bst_context_device_count(ctx) >= 1);
    bst_program *prog = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &prog) == BST_OK);
    bst_graph_destroy(g);

    bst_memory_usage u;
    memset(&u, 0, sizeof u);
    u.struct_size = sizeof u;
    CU_ASSERT_EQUAL_FATAL(bst_program_memory(prog, 0, &u), BST_OK);
    CU_ASSERT_EQUAL(u.struct_size, sizeof u);
    CU_ASSERT_EQUAL(u.io_bytes, 2 * 3 * 4 + 2 * 4 * 4); /* x and z */
    CU_ASSERT_EQUAL(u.state_bytes, 0);
    CU_ASSERT_TRUE(u.weight_bytes > 0);                  /* w and b, as the backend holds them */
    CU_ASSERT_TRUE(u.arena_bytes >= 2 * 4 * 4);          /* at least one [2,4] scratch value */
    CU_ASSERT_EQUAL(u.total_bytes, u.arena_bytes + u.weight_bytes + u.state_bytes + u.io_bytes);
    for (uint32_t d = 1; d < bst_context_device_count(ctx); d++) {
        bst_memory_usage other = {.struct_size = sizeof other};
        CU_ASSERT_EQUAL(bst_program_memory(prog, d, &other), BST_OK);
        CU_ASSERT_EQUAL(other.total_bytes, 0);
    }

    /* Errors name the problem and write nothing. */
    uint32_t n_dev = bst_context_device_count(ctx);
    bst_memory_usage e = {.struct_size = sizeof e, .arena_bytes = 7};
    CU_ASSERT_EQUAL(bst_program_memory(prog, n_dev, &e), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "out of range"));
    CU_ASSERT_EQUAL(e.arena_bytes, 7);
    e.struct_size = 8;
    CU_ASSERT_EQUAL(bst_program_memory(prog, 0, &e), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "struct_size"));
    CU_ASSERT_EQUAL(e.arena_bytes, 7);
    CU_ASSERT_EQUAL(bst_program_memory(NULL, 0, &u), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_program_memory(prog, 0, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bst_session_memory(NULL, 0, &u), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "bst_session_memory"));
    bst_program_destroy(prog);
    bst_context_destroy(ctx);
}

/* Runs bench model --quick with --tune `mode` against the tuning database in `cache_dir`; the
 * row's JSON object (to json_object_put *out_root), or NULL. */
static json_object *tuned_row(const char *model, const char *mode, json_object **out_root)
{
    char json_buf[256], name[64];
    snprintf(name, sizeof name, "tune-%s.json", mode);
    const char *json_path = tmp_path(name, json_buf, sizeof json_buf);
    *out_root = NULL;
    int rc = RUN(NULL, "bench", "model", "-m", model, "--quick", "-p", "4", "-n", "2", "-r", "1",
                 "--backend", "cpu", "--tune", mode, "--json", json_path);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0)
        return NULL;
    json_object *root = json_object_from_file(json_path);
    CU_ASSERT_PTR_NOT_NULL(root);
    if (!root)
        return NULL;
    CU_ASSERT_EQUAL(bench_schema_check(root), 0);
    CU_ASSERT_TRUE(json_object_get_boolean(jget(jget(root, "settings"), "quick")));
    *out_root = root;
    return json_object_array_get_idx(jget(root, "model_results"), 0);
}

/* --tune: frozen on an empty database misses and measures nothing; cached then measures; a
 * second cached run finds every row (hit). Each row's counts agree with its summary word. */
static void test_model_tune(void)
{
    const char *model = getenv("BASTION_MODEL");
    struct stat sb;
    if (!model || !*model || stat(model, &sb) != 0) {
        fprintf(stderr, "\n  BASTION_MODEL is not set or missing: bench model --tune not exercised\n");
        return;
    }
    char dir_buf[256];
    const char *dir = tmp_path("tune-cache", dir_buf, sizeof dir_buf);
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    /* The spawned command inherits it: its own database, not the suite's or the user's. */
    char *saved = getenv("BASTION_CACHE_DIR") ? strdup(getenv("BASTION_CACHE_DIR")) : NULL;
    CU_ASSERT_EQUAL_FATAL(setenv("BASTION_CACHE_DIR", dir, 1), 0);

    json_object *root = NULL, *r = tuned_row(model, "frozen", &root);
    if (r) {
        check_model_additions(root, r, "frozen", "cpu");
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "tune_cache")), "frozen-miss");
    }
    json_object_put(root);
    r = tuned_row(model, "cached", &root);
    if (r) {
        check_model_additions(root, r, "cached", "cpu");
        CU_ASSERT_TRUE(jnum(r, "tune_measured") > 0);
    }
    json_object_put(root);
    r = tuned_row(model, "cached", &root);
    if (r) {
        check_model_additions(root, r, "cached", "cpu");
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "tune_cache")), "hit");
        /* Nothing measured again; whether nodes count as hits depends on the plan kept (a
         * static plan consults no kernel rows). */
        CU_ASSERT_EQUAL(jnum(r, "tune_measured"), 0);
    }
    json_object_put(root);
    CU_ASSERT_EQUAL(RUN(NULL, "bench", "model", "-m", model, "--tune", "sometimes"), 2);

    int restored = saved ? setenv("BASTION_CACHE_DIR", saved, 1) : unsetenv("BASTION_CACHE_DIR");
    CU_ASSERT_EQUAL(restored, 0);
    free(saved);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"model_bench", test_model_bench},
        {"model_depth", test_model_depth},
        {"model_npu_sim_device_time", test_model_npu_sim_device_time},
        {"model_tune", test_model_tune},
        {"memory_api", test_memory_api},
        {"cleanup", bench_test_cleanup},
        {NULL, NULL},
    };
    return bst_test_run_suite("bench_model", cases);
}
