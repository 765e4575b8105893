/*
 * tests/bench_test_util.c — what the `bastion bench` suites share (bench_test_util.h).
 */
#include "bench_test_util.h"
#include "test_util.h"

#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool near(double a, double b, double rel)
{
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-12;
}

/* --- running the command ------------------------------------------------------------------- */

static char tmp_dir[128];

/* A path in this run's temporary directory; the caller owns `path`. */
const char *tmp_path(const char *name, char *path, size_t size)
{
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/bastion-test-bench-XXXXXX");
        if (!mkdtemp(tmp_dir))
            tmp_dir[0] = '\0';
    }
    snprintf(path, size, "%s/%s", tmp_dir, name);
    return path;
}

/* Runs $BASTION_BIN with args (NULL-terminated), stdout into `out_file` (or /dev/null), stderr
 * inherited. Returns the exit status, -1 if it did not exit normally. */
int run_bastion(const char *out_file, const char *const *args)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_file ? out_file : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const pid_t pid = bst_test_spawn_bastion(NULL, args, &fa);
    posix_spawn_file_actions_destroy(&fa);
    return bst_test_wait_exit(pid);
}

double jnum(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : NAN;
}

json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* stats agree with samples_ns. */
void check_timing_consistent(json_object *t)
{
    json_object *st = jget(t, "stats"), *s = jget(t, "samples_ns");
    size_t n = json_object_array_length(s);
    CU_ASSERT_EQUAL(n, (size_t)jnum(st, "n"));
    CU_ASSERT_TRUE_FATAL(n >= 1);
    int64_t *v = malloc(n * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = json_object_get_int64(json_object_array_get_idx(s, i));
        sum += (double)v[i];
    }
    qsort(v, n, sizeof *v, cmp_i64);
    double median = n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
    CU_ASSERT_TRUE(near(jnum(st, "median_ns"), median, 1e-9));
    CU_ASSERT_TRUE(near(jnum(st, "min_ns"), (double)v[0], 1e-9));
    CU_ASSERT_TRUE(near(jnum(st, "max_ns"), (double)v[n - 1], 1e-9));
    CU_ASSERT_TRUE(near(jnum(st, "mean_ns"), sum / (double)n, 1e-9));
    CU_ASSERT_TRUE(jnum(t, "warmup") >= 1);
    free(v);
}

/* The numbers of one ok result agree with each other and with the baselines. */
void check_consistency(json_object *root, json_object *r, double bw_gbs)
{
    json_object *t = jget(r, "timing");
    check_timing_consistent(t);
    double median = jnum(jget(t, "stats"), "median_ns");
    /* With device time: one device sample per wall sample, ordered stats, and the rates from
     * the device median (bench/SCHEMA.md). No order between wall and device time: a modelled
     * device's time may be above or below the host's. */
    const char *source = json_object_get_string(jget(r, "time_source"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(source);
    CU_ASSERT_TRUE(strcmp(source, "device") == 0 || strcmp(source, "wall") == 0);
    json_object *dt = jget(r, "device_timing");
    CU_ASSERT_EQUAL(strcmp(source, "device") == 0, dt != NULL);
    if (dt) {
        check_timing_consistent(dt);
        CU_ASSERT_EQUAL(json_object_array_length(jget(dt, "samples_ns")),
                        json_object_array_length(jget(t, "samples_ns")));
        CU_ASSERT_EQUAL(jnum(dt, "warmup"), jnum(t, "warmup"));
        json_object *st = jget(dt, "stats");
        CU_ASSERT_TRUE(jnum(st, "min_ns") > 0);
        CU_ASSERT_TRUE(jnum(st, "min_ns") <= jnum(st, "median_ns"));
        CU_ASSERT_TRUE(jnum(st, "median_ns") <= jnum(st, "max_ns"));
        CU_ASSERT_TRUE(jnum(dt, "first_ns") > 0);
        median = jnum(st, "median_ns");
    }
    CU_ASSERT_TRUE(near(jnum(r, "gflops"), jnum(r, "flops") / median, 1e-9));
    CU_ASSERT_TRUE(near(jnum(r, "gbs"), jnum(r, "bytes") / median, 1e-9));
    json_object *b = jget(r, "baseline");
    double frac = jnum(b, "bandwidth_fraction");
    if (!isnan(frac)) {
        /* Against the streaming read measured with the variant's own read, where it has one. */
        json_object *rd = isnan(jnum(b, "read"))
                              ? NULL
                              : json_object_array_get_idx(jget(jget(root, "baselines"), "reads"),
                                                          (size_t)jnum(b, "read"));
        const double stream = rd ? jnum(rd, "stream_gbs") : NAN;
        CU_ASSERT_TRUE(near(frac, jnum(r, "gbs") / (stream > 0 ? stream : bw_gbs), 1e-9));
    }
    /* A cache-cold GEMV has the fraction; ops without a weight never do. */
    bool cold = json_object_get_boolean(jget(r, "cache_cold"));
    bool wb = json_object_get_boolean(jget(r, "weight_bound"));
    CU_ASSERT_EQUAL(!isnan(frac), cold && wb);
    const char *op = json_object_get_string(jget(r, "op"));
    if (strcmp(op, "matmul") != 0)
        CU_ASSERT_FALSE(cold || wb);
    /* The same-size read's time for the weight's bytes over this median: one of the reads
     * gives exactly the fraction. */
    double rf = jnum(b, "read_fraction");
    CU_ASSERT_EQUAL(!isnan(rf), cold && wb);
    if (!isnan(rf)) {
        json_object *reads = jget(jget(root, "baselines"), "reads");
        json_object *rd = json_object_array_get_idx(reads, (size_t)jnum(b, "read"));
        CU_ASSERT_PTR_NOT_NULL_FATAL(rd);
        CU_ASSERT_TRUE(near(rf, jnum(rd, "bytes") / jnum(rd, "gbs") / median, 1e-9));
        CU_ASSERT_EQUAL(jnum(rd, "copies"), jnum(r, "weight_copies"));
    }
    double ratio = jnum(b, "sgemm_ratio");
    if (!isnan(ratio)) {
        /* The sgemm case of the same shape, and the ratio of the medians. */
        json_object *cases = jget(jget(jget(root, "baselines"), "sgemm"), "cases");
        const char *shape = json_object_get_string(jget(r, "shape"));
        bool found = false;
        for (size_t i = 0; i < json_object_array_length(cases); i++) {
            json_object *c = json_object_array_get_idx(cases, i);
            char cs[64];
            snprintf(cs, sizeof cs, "%lldx%lldx%lld", (long long)jnum(c, "m"),
                     (long long)jnum(c, "n"), (long long)jnum(c, "k"));
            if (strcmp(cs, shape) != 0)
                continue;
            found = true;
            double sm = jnum(jget(jget(c, "timing"), "stats"), "median_ns");
            CU_ASSERT_TRUE(near(ratio, sm / median, 1e-9));
        }
        CU_ASSERT_TRUE(found);
        CU_ASSERT_STRING_EQUAL(json_object_get_string(jget(r, "dtype")), "f32");
    }
}


/* d's report in format f, or (b not NULL) the comparison of d with b, as a string to free;
 * NULL when it fails. */
char *doc_text(const bench_doc *d, bench_format f, const bench_doc *b, double threshold,
               bench_compare_summary *sum)
{
    bench_error e;
    memset(&e, 0, sizeof e);
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (!out)
        return NULL;
    bst_status st = b ? bench_compare(d, b, threshold, out, sum, &e) : bench_report(d, f, out, &e);
    fclose(out);
    if (st != BST_OK) {
        fprintf(stderr, "%s: %s\n", b ? "compare" : "report", e.msg);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Whether this build has the npu-sim plugin (a note when not). */
bool have_npu_sim(void)
{
    const char *dir = getenv("BASTION_BACKEND_PATH");
    char path[512];
    snprintf(path, sizeof path, "%s/libbst-backend-npu-sim.so", dir ? dir : "");
    struct stat sb;
    if (dir && stat(path, &sb) == 0)
        return true;
    fprintf(stderr, "\n  npu-sim plugin not built: device time of a modelled device not "
                    "exercised\n");
    return false;
}

/* Runs `bastion` with BASTION_NPU_SIM_DEVICE=chip; restores the variable. */
int run_on_chip(const char *chip, const char *out, const char *const *args)
{
    const char *saved_env = getenv("BASTION_NPU_SIM_DEVICE");
    char *saved = saved_env ? strdup(saved_env) : NULL;
    if (setenv("BASTION_NPU_SIM_DEVICE", chip, 1) != 0) {
        free(saved);
        return -1;
    }
    int rc = run_bastion(out, args);
    int restored = saved ? setenv("BASTION_NPU_SIM_DEVICE", saved, 1)
                         : unsetenv("BASTION_NPU_SIM_DEVICE");
    free(saved);
    return restored == 0 ? rc : -1;
}

void bench_test_cleanup(void)
{
    if (tmp_dir[0]) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
        CU_ASSERT_EQUAL(system(cmd), 0);
    }
}
