/*
 * tests/test_tune.c — kernel selection: the tuning database (round trip, every key part
 * misses when changed, a corrupt file moved aside and rebuilt with a warning, a locked file
 * waited for, 0700 directory, plan rows validated and version-1 files upgraded) and placement
 * by it (frozen misses fall back and are reported, frozen never measures, rows decide between
 * variants, a cached run measures once and then hits, a deliberately slow variant is never kept,
 * two processes tuning one database at once both succeed, a tuned model run meets the DESIGN.md
 * agreement rule against an untuned one).
 */
#include "front_device.h"
#include "test_util.h"

#include "runtime/runtime.h"
#include "runtime/tune.h"
#include "runtime/tune_db.h"

#include <bastion/bastion.h>
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/bst-tune-XXXXXX");
        CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static bsti_tune_key sample_key(void)
{
    bsti_tune_key k = {
        .op = "matmul#1",
        .dtypes = "f32,q4_1->f32",
        .shape = "[~1,576],[1536,576]->[~1,1536]",
        .device_fingerprint = 0x1234,
        .driver_version = "drv 1",
        .plugin = "cpu",
        .plugin_version = "0.1.0",
        .variant = "q8dot_avx2",
        .source_hash = 0xabcdef,
        .threads = 2,
        .isa_mask = 0x55,
        .bastion_version = "0.1.0",
    };
    return k;
}

static void test_round_trip(void)
{
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(tmp_path("rt.db"), &db) == BST_OK);
    bsti_tune_key k = sample_key();
    bsti_tune_value v = {.median_ns = 12345, .samples = 9, .timestamp = 1700000000};
    CU_ASSERT_FATAL(bsti_tune_db_put(db, &k, &v) == BST_OK);
    bsti_tune_db_close(db);
    /* A new connection sees what the first committed. */
    CU_ASSERT_FATAL(bsti_tune_db_open(tmp_path("rt.db"), &db) == BST_OK);
    bsti_tune_value got;
    bool found = false;
    CU_ASSERT_FATAL(bsti_tune_db_get(db, &k, &got, &found) == BST_OK);
    CU_ASSERT_TRUE(found);
    CU_ASSERT_EQUAL(got.median_ns, 12345);
    CU_ASSERT_EQUAL(got.samples, 9);
    CU_ASSERT_EQUAL(got.timestamp, 1700000000);
    uint64_t rows = 0;
    CU_ASSERT(bsti_tune_db_count(db, &rows) == BST_OK && rows == 1);
    /* Replacing keeps one row. */
    v.median_ns = 777;
    CU_ASSERT_FATAL(bsti_tune_db_put(db, &k, &v) == BST_OK);
    CU_ASSERT(bsti_tune_db_get(db, &k, &got, &found) == BST_OK && found && got.median_ns == 777);
    CU_ASSERT(bsti_tune_db_count(db, &rows) == BST_OK && rows == 1);
    /* Implausible values are refused on the way in. */
    v.median_ns = 0;
    CU_ASSERT_EQUAL(bsti_tune_db_put(db, &k, &v), BST_ERR_INVALID_ARG);
    bsti_tune_db_close(db);
}

static void test_key_parts_miss(void)
{
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(tmp_path("keys.db"), &db) == BST_OK);
    bsti_tune_key base = sample_key();
    bsti_tune_value v = {.median_ns = 1000, .samples = 5, .timestamp = 1};
    CU_ASSERT_FATAL(bsti_tune_db_put(db, &base, &v) == BST_OK);
    for (int part = 0; part < 12; part++) {
        bsti_tune_key k = base;
        switch (part) {
        case 0: k.op = "matmul#2"; break;
        case 1: k.dtypes = "f32,q8_0->f32"; break;
        case 2: k.shape = "[~2,576],[1536,576]->[~2,1536]"; break;
        case 3: k.device_fingerprint++; break;
        case 4: k.driver_version = "drv 2"; break;
        case 5: k.plugin = "onednn"; break;
        case 6: k.plugin_version = "0.1.1"; break;
        case 7: k.variant = "ref"; break;
        case 8: k.source_hash++; break;
        case 9: k.threads = 1; break;
        case 10: k.isa_mask ^= 1; break;
        default: k.bastion_version = "0.2.0"; break;
        }
        bsti_tune_value got;
        bool found = true;
        CU_ASSERT_FATAL(bsti_tune_db_get(db, &k, &got, &found) == BST_OK);
        if (found)
            fprintf(stderr, "key part %d changed but the row still matched\n", part);
        CU_ASSERT_FALSE(found);
    }
    bsti_tune_value got;
    bool found = false;
    CU_ASSERT(bsti_tune_db_get(db, &base, &got, &found) == BST_OK && found);
    bsti_tune_db_close(db);
}

/* Rows written by something else are untrusted: out-of-range values are not believed. */
static void test_invalid_row_ignored(void)
{
    const char *path = tmp_path("invalid.db");
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    bsti_tune_key k = sample_key();
    bsti_tune_value v = {.median_ns = 1000, .samples = 5, .timestamp = 1};
    CU_ASSERT_FATAL(bsti_tune_db_put(db, &k, &v) == BST_OK);
    sqlite3 *raw = NULL;
    CU_ASSERT_FATAL(sqlite3_open(path, &raw) == SQLITE_OK);
    CU_ASSERT(sqlite3_exec(raw, "UPDATE kernel_times SET median_ns=-5", NULL, NULL, NULL) ==
              SQLITE_OK);
    sqlite3_close(raw);
    bsti_tune_value got;
    bool found = true;
    CU_ASSERT(bsti_tune_db_get(db, &k, &got, &found) == BST_OK);
    CU_ASSERT_FALSE(found);
    bsti_tune_db_close(db);
}

static int warnings;
static char last_warning[1024];
static void count_warnings(void *user, bst_log_level level, const char *message)
{
    (void)user;
    if (level >= BST_LOG_WARN) {
        warnings++;
        snprintf(last_warning, sizeof last_warning, "%s", message);
    }
}

static int count_aside(const char *dir, const char *prefix)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".corrupt-"))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_corrupt_rebuilt(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("corrupt.db"));
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    for (int i = 0; i < 8192; i++)
        fputc((i * 37) & 0xff, f);
    fclose(f);
    warnings = 0;
    bst_set_log_callback(count_warnings, NULL, BST_LOG_WARN);
    bsti_tune_db *db = NULL;
    bst_status st = bsti_tune_db_open(path, &db);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    CU_ASSERT_FATAL(st == BST_OK);
    CU_ASSERT_EQUAL(warnings, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_warning, "corrupt-"));
    CU_ASSERT_EQUAL(count_aside(tmpdir, "corrupt.db"), 1);
    /* The rebuilt database works. */
    bsti_tune_key k = sample_key();
    bsti_tune_value v = {.median_ns = 42, .samples = 3, .timestamp = 1};
    CU_ASSERT(bsti_tune_db_put(db, &k, &v) == BST_OK);
    bsti_tune_value got;
    bool found = false;
    CU_ASSERT(bsti_tune_db_get(db, &k, &got, &found) == BST_OK && found && got.median_ns == 42);
    bsti_tune_db_close(db);
}

typedef struct locker {
    sqlite3 *raw;
} locker;

static void *release_later(void *arg)
{
    locker *l = arg;
    usleep(300000);
    sqlite3_exec(l->raw, "COMMIT", NULL, NULL, NULL);
    return NULL;
}

/* Another connection holds the write lock: the write waits for it instead of failing, and
 * BUSY never counts as corruption. */
static void test_busy_waits(void)
{
    const char *p = tmp_path("busy.db");
    char path[512];
    snprintf(path, sizeof path, "%s", p);
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    locker l = {0};
    CU_ASSERT_FATAL(sqlite3_open(path, &l.raw) == SQLITE_OK);
    CU_ASSERT_FATAL(sqlite3_exec(l.raw, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK);
    pthread_t th;
    CU_ASSERT_FATAL(pthread_create(&th, NULL, release_later, &l) == 0);
    bsti_tune_key k = sample_key();
    bsti_tune_value v = {.median_ns = 99, .samples = 3, .timestamp = 1};
    warnings = 0;
    bst_set_log_callback(count_warnings, NULL, BST_LOG_WARN);
    bst_status st = bsti_tune_db_put(db, &k, &v);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    pthread_join(th, NULL);
    sqlite3_close(l.raw);
    CU_ASSERT_EQUAL(st, BST_OK);
    CU_ASSERT_EQUAL(warnings, 0);
    CU_ASSERT_EQUAL(count_aside(tmpdir, "busy.db"), 0);
    bsti_tune_value got;
    bool found = false;
    CU_ASSERT(bsti_tune_db_get(db, &k, &got, &found) == BST_OK && found && got.median_ns == 99);
    bsti_tune_db_close(db);
}

/* Two processes writing the same database at once: every row of both arrives. */
static void test_two_processes(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("two.db"));
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK); /* schema exists before the race */
    bsti_tune_db_close(db);
    pid_t kids[2];
    for (int w = 0; w < 2; w++) {
        kids[w] = fork();
        CU_ASSERT_FATAL(kids[w] >= 0);
        if (kids[w] == 0) {
            bsti_tune_db *mine = NULL;
            if (bsti_tune_db_open(path, &mine) != BST_OK)
                _exit(3);
            for (int i = 0; i < 40; i++) {
                char variant[32];
                snprintf(variant, sizeof variant, "w%d-v%d", w, i);
                bsti_tune_key k = sample_key();
                k.variant = variant;
                bsti_tune_value v = {.median_ns = (uint64_t)(100 + i), .samples = 3,
                                     .timestamp = 1};
                if (bsti_tune_db_put(mine, &k, &v) != BST_OK)
                    _exit(4);
            }
            bsti_tune_db_close(mine);
            _exit(0);
        }
    }
    for (int w = 0; w < 2; w++) {
        int st = -1;
        CU_ASSERT_FATAL(waitpid(kids[w], &st, 0) == kids[w]);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    uint64_t rows = 0;
    CU_ASSERT(bsti_tune_db_count(db, &rows) == BST_OK);
    CU_ASSERT_EQUAL(rows, 80);
    bsti_tune_db_close(db);
    CU_ASSERT_EQUAL(count_aside(tmpdir, "two.db"), 0);
}

static void test_default_path_dir_mode(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s", tmp_path("cache/deeper"));
    setenv("BASTION_CACHE_DIR", root, 1);
    char path[1024];
    CU_ASSERT_FATAL(bsti_tune_db_default_path(path, sizeof path) == BST_OK);
    char want[1100];
    snprintf(want, sizeof want, "%s/tuning.db", root);
    CU_ASSERT_STRING_EQUAL(path, want);
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    bsti_tune_db_close(db);
    struct stat sb;
    CU_ASSERT_FATAL(stat(root, &sb) == 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
    unsetenv("BASTION_CACHE_DIR");
}

/* --- placement --- */

/* y = x . w^T with a q4_1 weight (generated data): the CPU backend offers fast and ref kernels. */
static bst_graph *matmul_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t xs[2] = {4, 256}, ws[2] = {128, 256};
    bst_value vx, vw, out = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &vx) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w", BST_DTYPE_Q4_1, 2, ws, NULL, 0, &vw) == BST_OK);
    bst_value in[2] = {vx, vw};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_MATMUL, in, 2, NULL, 0, &out) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, out, "y") == BST_OK);
    return g;
}

static bst_context *tuned_context(bst_tune_mode mode, const char *db_path)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
    o.tune_mode = mode;
    o.tune_db_path = db_path;
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    return ctx;
}

static char *explain(bst_tune_mode mode, const char *db_path, char **out_describe)
{
    bst_graph *g = matmul_graph();
    bst_context *ctx = tuned_context(mode, db_path);
    bst_program *p = NULL;
    bst_status st = bst_program_create(ctx, g, &p);
    if (st != BST_OK)
        fprintf(stderr, "program_create: %s\n", bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_explain(p, false, &text) == BST_OK);
    if (out_describe)
        CU_ASSERT_FATAL(bst_program_describe(p, out_describe) == BST_OK);
    /* The tuned program still computes. */
    float x[4 * 256];
    for (int i = 0; i < 4 * 256; i++)
        x[i] = (float)((i % 7) - 3) * 0.25f;
    float y[4 * 128];
    CU_ASSERT(bst_program_set_input(p, "x", x, sizeof x) == BST_OK);
    CU_ASSERT(bst_program_run(p, NULL) == BST_OK);
    CU_ASSERT(bst_program_get_output(p, "y", y, sizeof y) == BST_OK);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
    bst_graph_destroy(g);
    return text;
}

static int64_t raw_count_table(const char *path, const char *table)
{
    sqlite3 *raw = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(path, &raw, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(raw);
        return -1;
    }
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(raw, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    return n;
}

static int64_t raw_count(const char *path, const char *where)
{
    sqlite3 *raw = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(path, &raw, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(raw);
        return -1;
    }
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM kernel_times %s", where);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(raw, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    return n;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *raw = NULL;
    CU_ASSERT_FATAL(sqlite3_open(path, &raw) == SQLITE_OK);
    CU_ASSERT(sqlite3_exec(raw, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(raw);
}

static void test_frozen_miss_falls_back(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("frozen.db"));
    char *static_describe = NULL, *frozen_describe = NULL;
    char *off = explain(BST_TUNE_OFF, path, &static_describe);
    free(off);
    warnings = 0;
    bst_set_log_callback(count_warnings, NULL, BST_LOG_WARN);
    char *text = explain(BST_TUNE_FROZEN, path, &frozen_describe);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "frozen-miss-static"));
    CU_ASSERT_EQUAL(warnings, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_warning, "frozen"));
    /* Static priority: the same placement as tuning off; and nothing was measured. */
    CU_ASSERT_STRING_EQUAL(static_describe, frozen_describe);
    CU_ASSERT_EQUAL(raw_count(path, ""), 0);
    bst_free(text);
    bst_free(static_describe);
    bst_free(frozen_describe);
}

/* The number after the first `label` in text (the explain header's counts), -1 if absent. */
static long count_after(const char *text, const char *label)
{
    const char *at = text ? strstr(text, label) : NULL;
    return at ? strtol(at + strlen(label), NULL, 10) : -1;
}

/* The text header: "# tune mode M: H nodes from the database, N measured, ..." */
static long measured_count(const char *text)
{
    const char *at = text ? strstr(text, "nodes from the database, ") : NULL;
    return at ? strtol(at + strlen("nodes from the database, "), NULL, 10) : -1;
}

/* Measured nodes over every candidate plan the whole-graph check built (the header counts only
 * the kept program, which measures nothing itself when the static plan wins). */
static long all_plans_measured(const char *text)
{
    const char *at = text ? strstr(text, "(all candidate plans: ") : NULL;
    return at ? measured_count(at) : -1;
}

static void test_cached_measures_then_hits(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("cached.db"));
    char *first = explain(BST_TUNE_CACHED, path, NULL);
    CU_ASSERT(all_plans_measured(first) >= 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(first, "# whole-graph plan: "));
    int64_t rows = raw_count(path, "");
    CU_ASSERT(rows >= 2); /* at least two variants of the matmul */
    CU_ASSERT_EQUAL(raw_count_table(path, "plan_checks"), 1);
    char *second = explain(BST_TUNE_CACHED, path, NULL);
    CU_ASSERT_PTR_NULL(strstr(second, "miss-measured"));
    CU_ASSERT_EQUAL(measured_count(second), 0);
    /* The plan comes from its row ("# whole-graph plan: K (database)"); per-node hits depend
     * on which plan won (a static plan consults no kernel rows). */
    CU_ASSERT_PTR_NOT_NULL(strstr(second, "(database)"));
    CU_ASSERT_EQUAL(raw_count(path, ""), rows);
    /* Full mode measures again even though every row is there. */
    char *full = explain(BST_TUNE_FULL, path, NULL);
    CU_ASSERT(all_plans_measured(full) >= 1);
    bst_free(first);
    bst_free(second);
    bst_free(full);
}

/* Rows decide: whichever variant the database says is faster is the one placed. */
static void test_rows_pick_faster_variant(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("pick.db"));
    char *first = explain(BST_TUNE_CACHED, path, NULL);
    bst_free(first);
    CU_ASSERT_FATAL(raw_count(path, "WHERE variant='ref'") == 1);
    CU_ASSERT_FATAL(raw_count(path, "WHERE variant<>'ref'") >= 1);

    /* New per-node rows: the recorded whole-graph check was made on others and is dropped
     * (with it, cached mode would check again; frozen uses the rows unchecked). */
    raw_exec(path, "UPDATE kernel_times SET median_ns = CASE WHEN variant='ref' THEN 10 "
                   "ELSE 900000000 END");
    char *describe = NULL;
    char *text = explain(BST_TUNE_FROZEN, path, &describe);
    CU_ASSERT_PTR_NOT_NULL(strstr(describe, "[ref]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "(hit)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "(unchecked)"));
    bst_free(text);
    bst_free(describe);

    raw_exec(path, "UPDATE kernel_times SET median_ns = CASE WHEN variant='ref' THEN 900000000 "
                   "ELSE 10 END");
    text = explain(BST_TUNE_CACHED, path, &describe);
    CU_ASSERT_PTR_NULL(strstr(describe, "[ref]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "(hit)"));
    bst_free(text);
    bst_free(describe);
}


/* --- whole-graph plan rows --- */

static void test_plan_rows(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("plans.db"));
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    bsti_plan_row row;
    memset(&row, 0, sizeof row);
    row.split_decode = row.split_prompt = BSTI_TUNE_PLAN_KINDS; /* no split */
    row.plan = 2;
    row.digest = 0xfeedfacecafebeefull; /* above INT64_MAX: stored as a signed 64-bit value */
    row.decode_ns[0] = 100;
    row.prompt_ns[0] = 1000;
    row.decode_ns[2] = 90;
    row.prompt_ns[2] = 1100;
    row.prompt_tokens = 64;
    row.decode_n_kv = 256;
    CU_ASSERT_FATAL(bsti_tune_db_put_plan(db, 1, 2, "0.1.0", &row) == BST_OK);
    bsti_plan_row got;
    bool found = false;
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "0.1.0", &got, &found) == BST_OK && found);
    CU_ASSERT_EQUAL(got.plan, 2);
    CU_ASSERT_EQUAL(got.digest, row.digest);
    CU_ASSERT_EQUAL(got.decode_ns[2], 90);
    CU_ASSERT_EQUAL(got.prompt_ns[0], 1000);
    CU_ASSERT_EQUAL(got.prompt_tokens, 64);
    /* Every part of the key misses. */
    CU_ASSERT(bsti_tune_db_get_plan(db, 9, 2, "0.1.0", &got, &found) == BST_OK && !found);
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 9, "0.1.0", &got, &found) == BST_OK && !found);
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "0.2.0", &got, &found) == BST_OK && !found);
    /* Refused on the way in: an unknown plan kind, a split naming one plan twice. */
    row.split_decode = row.split_prompt = 2;
    CU_ASSERT_EQUAL(bsti_tune_db_put_plan(db, 1, 3, "0.1.0", &row), BST_ERR_INVALID_ARG);
    row.split_decode = row.split_prompt = BSTI_TUNE_PLAN_KINDS;
    row.plan = 7;
    CU_ASSERT_EQUAL(bsti_tune_db_put_plan(db, 1, 3, "0.1.0", &row), BST_ERR_INVALID_ARG);
    bsti_tune_db_close(db);
    /* Untrusted on the way out: a row naming an unknown plan, or a chosen plan without a
     * measurement of its own, is ignored with a warning. */
    raw_exec(path, "UPDATE plan_checks SET plan = 5");
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    warnings = 0;
    bst_set_log_callback(count_warnings, NULL, BST_LOG_WARN);
    found = true;
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "0.1.0", &got, &found) == BST_OK);
    CU_ASSERT_FALSE(found);
    raw_exec(path, "UPDATE plan_checks SET plan = 1");
    found = true;
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "0.1.0", &got, &found) == BST_OK);
    CU_ASSERT_FALSE(found); /* plan 1 has no times in this row */
    /* A split whose prompt plan was never measured. */
    raw_exec(path, "UPDATE plan_checks SET plan = 2, split_decode = 2, split_prompt = 1");
    found = true;
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "0.1.0", &got, &found) == BST_OK);
    CU_ASSERT_FALSE(found);
    raw_exec(path, "UPDATE plan_checks SET split_decode = 2, split_prompt = 0");
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "0.1.0", &got, &found) == BST_OK && found);
    CU_ASSERT(got.split_decode == 2 && got.split_prompt == 0);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    CU_ASSERT_EQUAL(warnings, 3);
    bsti_tune_db_close(db);
}

/* A version-1 file (before plan_checks) is upgraded in place: its kernel rows stay. (Version 2
 * files, whose plan_checks lacked the split, take the same path: the table is made anew.) */
static void test_schema_v1_upgraded(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("v1.db"));
    bsti_tune_db *db = NULL;
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    bsti_tune_key k = sample_key();
    bsti_tune_value v = {.median_ns = 1234, .samples = 3, .timestamp = 1};
    CU_ASSERT_FATAL(bsti_tune_db_put(db, &k, &v) == BST_OK);
    bsti_tune_db_close(db);
    raw_exec(path, "DROP TABLE plan_checks; UPDATE schema_version SET version = 1");
    CU_ASSERT_FATAL(bsti_tune_db_open(path, &db) == BST_OK);
    bsti_tune_value got;
    bool found = false;
    CU_ASSERT(bsti_tune_db_get(db, &k, &got, &found) == BST_OK && found && got.median_ns == 1234);
    bsti_plan_row row;
    CU_ASSERT(bsti_tune_db_get_plan(db, 1, 2, "x", &row, &found) == BST_OK && !found);
    bsti_tune_db_close(db);
    CU_ASSERT_EQUAL(raw_count_table(path, "schema_version WHERE version = 4"), 1);
    CU_ASSERT_EQUAL(raw_count_table(path, "plan_checks"), 0); /* made anew, and usable */
    /* A newer schema than this build knows is refused, not overwritten. */
    raw_exec(path, "UPDATE schema_version SET version = 99");
    CU_ASSERT_EQUAL(bsti_tune_db_open(path, &db), BST_ERR_FORMAT);
    CU_ASSERT_PTR_NULL(db);
}

/* Frozen mode reads rows and never writes or measures, even where rows are missing. */
static void test_frozen_never_measures(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("frozen2.db"));
    char *first = explain(BST_TUNE_CACHED, path, NULL);
    bst_free(first);
    int64_t rows = raw_count(path, ""), plans = raw_count_table(path, "plan_checks");
    CU_ASSERT_FATAL(rows >= 2 && plans == 1);
    /* Drop half the evidence: frozen must not fill it in. */
    raw_exec(path, "DELETE FROM kernel_times WHERE variant <> 'ref'; DELETE FROM plan_checks");
    char *text = explain(BST_TUNE_FROZEN, path, NULL);
    CU_ASSERT_EQUAL(measured_count(text), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "0.00 s measuring"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "(unchecked)"));
    CU_ASSERT_EQUAL(raw_count(path, ""), 1);
    CU_ASSERT_EQUAL(raw_count_table(path, "plan_checks"), 0);
    bst_free(text);
}

/* y = 3 x through the slow_variant test plugin, whose first (static-priority) SCALE variant
 * sleeps 5 ms per call: neither the per-node choice nor the whole-graph check may keep it. */
static void test_slow_variant_never_chosen(void)
{
    const char *dir = bst_test_plugin_dir();
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("slow.db"));
    static const bst_tune_mode modes[] = {BST_TUNE_OFF, BST_TUNE_CACHED, BST_TUNE_CACHED,
                                          BST_TUNE_FROZEN, BST_TUNE_FULL};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        bst_graph *g = bst_test_scale_graph(16, 256, 3.0);
        bst_context_options o = {.struct_size = sizeof o, .n_threads = 2,
                                 .backends = "slow_variant", .plugin_paths = dir};
        o.tune_mode = modes[m];
        o.tune_db_path = path;
        bst_context *ctx = NULL;
        CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
        bst_program *p = NULL;
        bst_status st = bst_program_create(ctx, g, &p);
        if (st != BST_OK)
            fprintf(stderr, "program_create: %s\n", bst_last_error());
        CU_ASSERT_FATAL(st == BST_OK);
        char *describe = NULL, *text = NULL;
        CU_ASSERT_FATAL(bst_program_describe(p, &describe) == BST_OK);
        CU_ASSERT_FATAL(bst_program_explain(p, false, &text) == BST_OK);
        if (modes[m] == BST_TUNE_OFF) {
            CU_ASSERT_PTR_NOT_NULL(strstr(describe, "[scale_slow]")); /* the baseline is slow */
        } else {
            if (strstr(describe, "[scale_slow]"))
                fprintf(stderr, "mode %d kept the slow variant:\n%s\n", (int)modes[m], text);
            CU_ASSERT_PTR_NULL(strstr(describe, "[scale_slow]"));
            CU_ASSERT_PTR_NOT_NULL(strstr(describe, "[scale_f32]"));
        }
        if (m == 1) /* the first tuned build checked both plans end to end */
            CU_ASSERT_PTR_NOT_NULL(strstr(text, "*tuned-prompt"));
        float in[16 * 256], out[16 * 256];
        for (int i = 0; i < 16 * 256; i++)
            in[i] = (float)(i % 13) - 6.0f;
        CU_ASSERT(bst_program_set_input(p, "x", in, sizeof in) == BST_OK);
        CU_ASSERT(bst_program_run(p, NULL) == BST_OK);
        CU_ASSERT(bst_program_get_output(p, "y", out, sizeof out) == BST_OK);
        int bad = 0;
        for (int i = 0; i < 16 * 256; i++)
            bad += out[i] != 3.0f * in[i];
        CU_ASSERT_EQUAL(bad, 0);
        bst_free(describe);
        bst_free(text);
        bst_program_destroy(p);
        bst_context_destroy(ctx);
        bst_graph_destroy(g);
    }
}

/* y = 3 x through the cold_variant test plugin: its first SCALE variant (static priority's) sleeps
 * 1 ms per call, its second 8 ms in its executable's first call only (as a first call can pay a
 * sleeping worker's wake-up). Measured second, that one's first call is over the cutoff (three
 * times the best so far); tuning must still measure it and keep it. */
static void test_cold_first_call_not_dropped(void)
{
    const char *dir = bst_test_plugin_dir();
    if (!dir)
        return;
    static const bst_tune_mode modes[] = {BST_TUNE_OFF, BST_TUNE_FULL};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        bst_graph *g = bst_test_scale_graph(16, 256, 3.0);
        bst_context_options o = {.struct_size = sizeof o, .n_threads = 2,
                                 .backends = "cold_variant", .plugin_paths = dir};
        o.tune_mode = modes[m];
        o.tune_db_path = tmp_path("cold.db");
        bst_context *ctx = NULL;
        CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
        bst_program *p = NULL;
        CU_ASSERT_FATAL(bst_program_create(ctx, g, &p) == BST_OK);
        char *describe = NULL, *text = NULL;
        CU_ASSERT_FATAL(bst_program_describe(p, &describe) == BST_OK);
        CU_ASSERT_FATAL(bst_program_explain(p, false, &text) == BST_OK);
        const char *want = modes[m] == BST_TUNE_OFF ? "[scale_steady]" : "[scale_cold]";
        if (!strstr(describe, want))
            fprintf(stderr, "mode %d did not keep %s:\n%s\n", (int)modes[m], want, text);
        CU_ASSERT_PTR_NOT_NULL(strstr(describe, want));
        bst_free(describe);
        bst_free(text);
        bst_program_destroy(p);
        bst_context_destroy(ctx);
        bst_graph_destroy(g);
    }
}

/* Two processes tuning the same program against one database at once: both build and run it,
 * and the file is never taken for corrupt. */
static void test_two_processes_tuning(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("race.db"));
    pid_t kids[2];
    for (int w = 0; w < 2; w++) {
        kids[w] = fork();
        CU_ASSERT_FATAL(kids[w] >= 0);
        if (kids[w] == 0) {
            bst_graph *g = NULL;
            if (bst_graph_create(&g) != BST_OK)
                _exit(3);
            int64_t xs[2] = {4, 256}, ws[2] = {128, 256};
            bst_value vx, vw, out = BST_VALUE_NONE;
            if (bst_graph_add_input(g, "x", BST_DTYPE_F32, 2, xs, NULL, &vx) != BST_OK ||
                bst_graph_add_weight(g, "w", BST_DTYPE_Q4_1, 2, ws, NULL, 0, &vw) != BST_OK)
                _exit(4);
            bst_value in[2] = {vx, vw};
            if (bst_graph_add_op(g, BST_OP_MATMUL, in, 2, NULL, 0, &out) != BST_OK ||
                bst_graph_mark_output(g, out, "y") != BST_OK)
                _exit(5);
            bst_context_options o = {.struct_size = sizeof o, .n_threads = 1, .backends = "cpu"};
            o.tune_mode = BST_TUNE_FULL; /* both measure and write everything */
            o.tune_db_path = path;
            bst_context *ctx = NULL;
            bst_program *p = NULL;
            if (bst_context_create(&o, &ctx) != BST_OK)
                _exit(6);
            if (bst_program_create(ctx, g, &p) != BST_OK)
                _exit(7);
            if (bst_program_run(p, NULL) != BST_OK)
                _exit(8);
            bst_program_destroy(p);
            bst_context_destroy(ctx);
            bst_graph_destroy(g);
            _exit(0);
        }
    }
    for (int w = 0; w < 2; w++) {
        int st = -1;
        CU_ASSERT_FATAL(waitpid(kids[w], &st, 0) == kids[w]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fprintf(stderr, "tuning process %d ended with status %d\n", w, st);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CU_ASSERT(raw_count(path, "") >= 2);
    CU_ASSERT_EQUAL(raw_count_table(path, "plan_checks"), 1);
    CU_ASSERT_EQUAL(count_aside(tmpdir, "race.db"), 0);
}

/* Teacher-forced logits of the default model over a fixed token sequence. */
static float *model_logits(const char *model_path, bst_tune_mode mode, const char *db_path,
                           const int32_t *tokens, uint32_t n, uint32_t *out_vocab,
                           char **out_explain)
{
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
    o.tune_mode = mode;
    o.tune_db_path = db_path;
    bst_context *ctx = NULL;
    bst_model *model = NULL;
    bst_session *s = NULL;
    float *logits = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    CU_ASSERT_FATAL(bst_model_load(ctx, model_path, NULL, &model) == BST_OK);
    bst_model_info info = {.struct_size = sizeof info};
    CU_ASSERT_FATAL(bst_model_get_info(model, &info) == BST_OK);
    bst_session_options so;
    memset(&so, 0, sizeof so);
    so.struct_size = sizeof so;
    so.n_ctx = 64;
    so.n_batch = 16;
    bst_status st = bst_session_create(model, &so, &s);
    if (st != BST_OK)
        fprintf(stderr, "session: %s\n", bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    logits = malloc((size_t)n * info.n_vocab * sizeof *logits);
    CU_ASSERT_FATAL(logits != NULL);
    /* A prompt chunk, then decode steps: both shapes the session meets. */
    const uint32_t chunk = n / 2;
    CU_ASSERT_FATAL(bst_session_eval(s, tokens, chunk, true, logits) == BST_OK);
    for (uint32_t t = chunk; t < n; t++)
        CU_ASSERT_FATAL(bst_session_eval(s, tokens + t, 1, false,
                                         logits + (size_t)t * info.n_vocab) == BST_OK);
    *out_vocab = info.n_vocab;
    if (out_explain)
        CU_ASSERT(bst_session_explain(s, false, out_explain) == BST_OK);
    bst_session_destroy(s);
    bst_model_destroy(model);
    bst_context_destroy(ctx);
    return logits;
}

/* DESIGN.md's agreement rule for an f32 backend: top-1 equal wherever the reference's top-1
 * margin exceeds 0.1 logit, mean KL divergence <= 1e-4. */
static void assert_agree(const float *ref, const float *got, uint32_t n, uint32_t vocab,
                         const char *what)
{
    double kl_sum = 0.0;
    int mismatches = 0;
    for (uint32_t t = 0; t < n; t++) {
        const float *a = ref + (size_t)t * vocab, *b = got + (size_t)t * vocab;
        uint32_t top_a = 0, top_b = 0, second = vocab;
        double ma = a[0], mb = b[0];
        for (uint32_t v = 1; v < vocab; v++) {
            if (a[v] > a[top_a])
                top_a = v;
            if (b[v] > b[top_b])
                top_b = v;
            ma = a[v] > ma ? a[v] : ma;
            mb = b[v] > mb ? b[v] : mb;
        }
        for (uint32_t v = 0; v < vocab; v++)
            if (v != top_a && (second == vocab || a[v] > a[second]))
                second = v;
        if (top_a != top_b && a[top_a] - a[second] > 0.1f)
            mismatches++;
        double za = 0.0, zb = 0.0;
        for (uint32_t v = 0; v < vocab; v++) {
            za += exp((double)a[v] - ma);
            zb += exp((double)b[v] - mb);
        }
        double kl = 0.0;
        for (uint32_t v = 0; v < vocab; v++) {
            double la = (double)a[v] - ma - log(za), lb = (double)b[v] - mb - log(zb);
            kl += exp(la) * (la - lb);
        }
        kl_sum += kl;
    }
    double mean_kl = kl_sum / (double)n;
    if (mismatches || !(mean_kl <= 1e-4))
        fprintf(stderr, "%s vs untuned: %d top-1 mismatches, mean KL %.3g\n", what, mismatches,
                mean_kl);
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT(mean_kl <= 1e-4);
}

/* A tuned session (cached, from an empty database) against an untuned one; then a session whose
 * recorded check split decode steps and prompt chunks over two programs, which must carry the
 * KV rows between them (a prompt chunk, then decode steps reading the chunk's rows). Skipped
 * (passes) without the model. */
static void test_tuned_run_agrees(void)
{
    const char *model = getenv("BASTION_MODEL");
    struct stat sb;
    if (!model || stat(model, &sb) != 0) {
        fprintf(stderr, "(model not available; skipped) ");
        return;
    }
    /* Token ids of ordinary text-like ranges; any ids below the vocabulary size are valid. */
    int32_t tokens[24];
    for (int i = 0; i < 24; i++)
        tokens[i] = 1000 + (i * 7919) % 20000;
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("agree.db"));
    uint32_t vocab = 0, vocab2 = 0, vocab3 = 0;
    float *ref = model_logits(model, BST_TUNE_OFF, path, tokens, 24, &vocab, NULL);
    float *tuned = model_logits(model, BST_TUNE_CACHED, path, tokens, 24, &vocab2, NULL);
    CU_ASSERT_FATAL(vocab == vocab2 && vocab > 1);
    assert_agree(ref, tuned, 24, vocab, "tuned");
    /* The body's row (the one with a KV cache: decode_n_kv > 1) now says: static priority for
     * decode steps, the tuned-prompt plan for prompt chunks. */
    CU_ASSERT_FATAL(raw_count_table(path, "plan_checks WHERE decode_n_kv > 1") == 1);
    raw_exec(path, "UPDATE plan_checks SET split_decode = 0, split_prompt = 1 "
                   "WHERE decode_n_kv > 1");
    char *text = NULL;
    float *split = model_logits(model, BST_TUNE_CACHED, path, tokens, 24, &vocab3, &text);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "## program prompt-body") : NULL);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "(this program: prompt)") : NULL);
    assert_agree(ref, split, 24, vocab, "split");
    free(text);
    free(ref);
    free(tuned);
    free(split);
}

/* One weight read by two matmuls of different shapes (whose measurements may favour different
 * devices): the weight is kept once, so both run where the first put it. Uses oneDNN as the
 * second device when its plugin is built; with the CPU backend alone it checks the record. */
static void test_weight_kept_once(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("weights.db"));
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t x1s[2] = {2, 256}, x2s[2] = {96, 256}, ws[2] = {256, 256};
    bst_value x1, x2, w, y1 = BST_VALUE_NONE, y2 = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x1", BST_DTYPE_F32, 2, x1s, NULL, &x1) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "x2", BST_DTYPE_F32, 2, x2s, NULL, &x2) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_weight(g, "w", BST_DTYPE_Q4_1, 2, ws, NULL, 0, &w) == BST_OK);
    bst_value a[2] = {x1, w}, b[2] = {x2, w};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_MATMUL, a, 2, NULL, 0, &y1) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_MATMUL, b, 2, NULL, 0, &y2) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, y1, "y1") == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, y2, "y2") == BST_OK);
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu,onednn"};
    o.tune_mode = BST_TUNE_CACHED;
    o.tune_db_path = path;
    bst_context *ctx = NULL;
    if (bst_context_create(&o, &ctx) != BST_OK) {
        o.backends = "cpu";
        CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    }
    bst_program *p = NULL;
    bst_status st = bst_program_create(ctx, g, &p);
    if (st != BST_OK)
        fprintf(stderr, "program_create: %s\n", bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    char *describe = NULL, *json = NULL;
    CU_ASSERT_FATAL(bst_program_describe(p, &describe) == BST_OK);
    CU_ASSERT_FATAL(bst_program_explain(p, true, &json) == BST_OK);
    /* The two matmul lines name one device. */
    char dev[2][128] = {"", ""};
    int found = 0;
    for (const char *line = describe; line && *line && found < 2;) {
        const char *end = strchr(line, '\n');
        if (strstr(line, " matmul ") && strstr(line, "-> ") && (!end || strstr(line, "-> ") < end)) {
            const char *d = strstr(line, "-> ") + 3;
            const char *sp = strstr(d, " [");
            size_t len = sp && (!end || sp < end) ? (size_t)(sp - d) : 0;
            if (len >= sizeof dev[0])
                len = sizeof dev[0] - 1;
            memcpy(dev[found], d, len);
            dev[found][len] = '\0';
            found++;
        }
        line = end ? end + 1 : NULL;
    }
    CU_ASSERT_EQUAL(found, 2);
    CU_ASSERT_STRING_EQUAL(dev[0], dev[1]);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"weight_second_copies\":0"));
    bst_free(describe);
    bst_free(json);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
    bst_graph_destroy(g);
}

/* Every execute fails while the program is made (injected device loss): nothing can be measured
 * per node or end to end, yet the program is made — per-node static priority, the whole-graph
 * check reported unchecked and not recorded — and runs once the fault is gone. */
static void test_check_survives_failing_runs(void)
{
    const char *dir = bst_test_plugin_dir();
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("failing.db"));
    bst_graph *g = bst_test_scale_graph(4, 64, 2.0);
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "slow_variant",
                             .plugin_paths = dir};
    o.tune_mode = BST_TUNE_CACHED;
    o.tune_db_path = path;
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 0);
    bst_program *p = NULL;
    bst_status st = bst_program_create(ctx, g, &p);
    bsti_fault_set("execute", BST_OK, 0);
    if (st != BST_OK)
        fprintf(stderr, "program_create: %s\n", bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_explain(p, false, &text) == BST_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "(unchecked)"));
    CU_ASSERT_EQUAL(raw_count_table(path, "plan_checks"), 0);
    float in[4 * 64], out[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        in[i] = (float)i;
    CU_ASSERT(bst_program_set_input(p, "x", in, sizeof in) == BST_OK);
    CU_ASSERT(bst_program_run(p, NULL) == BST_OK);
    CU_ASSERT(bst_program_get_output(p, "y", out, sizeof out) == BST_OK);
    CU_ASSERT(out[5] == 10.0f && out[255] == 510.0f);
    bst_free(text);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
    bst_graph_destroy(g);
}

static void test_no_cache_leaves_nothing(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s", tmp_path("nocache"));
    setenv("BASTION_CACHE_DIR", root, 1);
    bst_graph *g = matmul_graph();
    bst_context_options o = {.struct_size = sizeof o, .n_threads = 2, .backends = "cpu"};
    o.tune_mode = BST_TUNE_CACHED;
    o.no_cache = true;
    bst_context *ctx = NULL;
    CU_ASSERT_FATAL(bst_context_create(&o, &ctx) == BST_OK);
    bst_program *p = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &p) == BST_OK);
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_explain(p, true, &text) == BST_OK);
    CU_ASSERT(count_after(text, "\"all_plans_measured\":") >= 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"source\":\"measured\""));
    bst_free(text);
    bst_program_destroy(p);
    bst_context_destroy(ctx);
    bst_graph_destroy(g);
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(root, &sb), 0);
    unsetenv("BASTION_CACHE_DIR");
}

/* Runs `bastion ARGS` through the shell; returns its exit status and stdout (malloc'd). */
static int run_cli(const char *args, char **out_text)
{
    const char *bin = getenv("BASTION_BIN");
    *out_text = NULL;
    if (!bin)
        return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", bin, args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096) {
            char *b2 = realloc(buf, cap * 2);
            if (!b2)
                break;
            buf = b2;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = '\0';
    int st = pclose(f);
    *out_text = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `bastion explain` on the default model: every node listed with its choice and cache state;
 * with --no-cache nothing is written. Skipped (passes) when the model is not fetched. */
static void test_cli_explain(void)
{
    const char *model = getenv("BASTION_MODEL");
    struct stat sb;
    if (!model || stat(model, &sb) != 0 || !getenv("BASTION_BIN")) {
        fprintf(stderr, "(model or CLI not available; skipped) ");
        return;
    }
    char root[512];
    snprintf(root, sizeof root, "%s", tmp_path("cli-cache"));
    setenv("BASTION_CACHE_DIR", root, 1);
    char args[1024], *out = NULL;
    snprintf(args, sizeof args, "explain -m '%s' --backend cpu -c 128 --json --no-cache", model);
    int rc = run_cli(args, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"programs\":[{\"name\":\"body\""));
    /* Measured now: by the candidate plans together (the kept one may be static priority,
     * which measures nothing itself). */
    CU_ASSERT(count_after(out, "\"all_plans_measured\":") >= 1);
    CU_ASSERT(count_after(out, "\"measured\":") <= count_after(out, "\"all_plans_measured\":"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"plan\":{\"chosen\":"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"op\":\"matmul\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"chosen\":true"));
    free(out);
    CU_ASSERT_NOT_EQUAL(stat(root, &sb), 0);
    /* With the cache: the second explain finds every row. */
    snprintf(args, sizeof args, "explain -m '%s' --backend cpu -c 128", model);
    rc = run_cli(args, &out);
    CU_ASSERT_EQUAL(rc, 0);
    free(out);
    rc = run_cli(args, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_PTR_NULL(strstr(out, "(miss-measured)"));
    CU_ASSERT_EQUAL(measured_count(out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(database)"));
    free(out);
    rc = run_cli("run -m x.gguf -p hi --tune=sometimes", &out);
    CU_ASSERT_EQUAL(rc, 2);
    free(out);
    unsetenv("BASTION_CACHE_DIR");
}

/* --- fused vs lowered, emulated devices, weight memory --- */

/* A CPU-only context with a device named `name` in front, declining the ops in `declined`
 * (front_device.h). */
static bst_context *front_device_context(bst_tune_mode mode, const char *db_path,
                                         const char *name, const uint32_t *declined)
{
    bst_context *ctx = tuned_context(mode, db_path);
    bst_test_front_device(ctx, name, declined);
    return ctx;
}

#define ATT_T 4
#define ATT_H 2
#define ATT_D 8

/* y = attention(q, k, v) (causal, 2 heads of 8, 4 tokens) + q: one high-level node. */
static bst_graph *attention_graph(void)
{
    bst_graph *g = NULL;
    CU_ASSERT_FATAL(bst_graph_create(&g) == BST_OK);
    int64_t s[3] = {ATT_T, ATT_H, ATT_D};
    bst_value in[3], a = BST_VALUE_NONE, y = BST_VALUE_NONE;
    CU_ASSERT_FATAL(bst_graph_add_input(g, "q", BST_DTYPE_F32, 3, s, NULL, &in[0]) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "k", BST_DTYPE_F32, 3, s, NULL, &in[1]) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_add_input(g, "v", BST_DTYPE_F32, 3, s, NULL, &in[2]) == BST_OK);
    bst_attr attrs[3] = {bst_attr_float(BST_ATTR_SCALE, 0.35355339),
                         bst_attr_int(BST_ATTR_CAUSAL, 1), bst_attr_int(BST_ATTR_WINDOW, 0)};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_ATTENTION, in, 3, attrs, 3, &a) == BST_OK);
    bst_value b[2] = {a, in[0]};
    CU_ASSERT_FATAL(bst_graph_add_op(g, BST_OP_ADD, b, 2, NULL, 0, &y) == BST_OK);
    CU_ASSERT_FATAL(bst_graph_mark_output(g, y, "y") == BST_OK);
    return g;
}

/* Runs the attention graph on ctx; returns its describe text, fills y. */
static char *run_attention(bst_context *ctx, float y[ATT_T * ATT_H * ATT_D])
{
    enum { N = ATT_T * ATT_H * ATT_D };
    bst_graph *g = attention_graph();
    bst_program *p = NULL;
    bst_status st = bst_program_create(ctx, g, &p);
    if (st != BST_OK)
        fprintf(stderr, "program_create: %s\n", bst_last_error());
    CU_ASSERT_FATAL(st == BST_OK);
    float q[N], k[N], v[N];
    for (int i = 0; i < N; i++) {
        q[i] = (float)((i * 7) % 11 - 5) * 0.125f;
        k[i] = (float)((i * 5) % 13 - 6) * 0.1f;
        v[i] = (float)((i * 3) % 7 - 3) * 0.25f;
    }
    CU_ASSERT(bst_program_set_input(p, "q", q, sizeof q) == BST_OK);
    CU_ASSERT(bst_program_set_input(p, "k", k, sizeof k) == BST_OK);
    CU_ASSERT(bst_program_set_input(p, "v", v, sizeof v) == BST_OK);
    CU_ASSERT(bst_program_run(p, NULL) == BST_OK);
    CU_ASSERT(bst_program_get_output(p, "y", y, N * sizeof *y) == BST_OK);
    char *text = NULL;
    CU_ASSERT_FATAL(bst_program_describe(p, &text) == BST_OK);
    bst_program_destroy(p);
    bst_graph_destroy(g);
    return text;
}

/* How many describe lines run on a device whose label starts with `prefix`. */
static int lines_on(const char *describe, const char *prefix)
{
    int n = 0;
    char pat[128];
    snprintf(pat, sizeof pat, "-> %s", prefix);
    for (const char *at = describe; (at = strstr(at, pat)) != NULL; at += strlen(pat))
        n++;
    return n;
}

/* Static priority (tune off) with a device in front that has no fused attention but runs all
 * of its parts: attention is lowered onto that device, not moved whole to the CPU behind it
 * (which would cost transfers both ways). When the front device also lacks one of the parts,
 * the CPU is the first device that can run it, and it takes the node whole, fused. The results
 * match the CPU's fused kernel. */
static void test_static_lowers_on_first_device(void)
{
    enum { N = ATT_T * ATT_H * ATT_D };
    float want[N], got[N];
    bst_context *ref = tuned_context(BST_TUNE_OFF, NULL);
    char *text = run_attention(ref, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " attention "));
    bst_free(text);
    bst_context_destroy(ref);

    static const uint32_t no_fused[] = {BST_OP_ATTENTION, BST_OP_FFN_SWIGLU,
                                        BST_OP_RMS_NORM_MUL, BST_OP_COUNT};
    bst_context *ctx = front_device_context(BST_TUNE_OFF, NULL, "cpu-nofused", no_fused);
    text = run_attention(ctx, got);
    CU_ASSERT_PTR_NULL(strstr(text, " attention "));   /* lowered */
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " softmax ")); /* into its parts */
    CU_ASSERT(lines_on(text, "cpu-nofused/") > 3);
    CU_ASSERT_EQUAL(lines_on(text, "cpu/"), 0); /* all of them on the front device */
    for (int i = 0; i < N; i++)
        CU_ASSERT_DOUBLE_EQUAL(got[i], want[i], 1e-5);
    bst_free(text);
    bst_context_destroy(ctx);

    static const uint32_t no_softmax[] = {BST_OP_ATTENTION, BST_OP_SOFTMAX, BST_OP_COUNT};
    ctx = front_device_context(BST_TUNE_OFF, NULL, "cpu-nosoftmax", no_softmax);
    text = run_attention(ctx, got);
    const char *att = strstr(text, " attention ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(att);
    CU_ASSERT(strncmp(strstr(att, "-> ") + 3, "cpu/", 4) == 0);
    CU_ASSERT_PTR_NULL(strstr(text, " softmax "));
    for (int i = 0; i < N; i++)
        CU_ASSERT_DOUBLE_EQUAL(got[i], want[i], 1e-5);
    bst_free(text);
    bst_context_destroy(ctx);
}

/* Full tuning checks a "lowered" whole-graph plan next to the fused ones: it is a measured
 * candidate, recorded in plan_checks and shown by explain. The kept program's counts describe
 * it alone (each of its tuned nodes is a hit or measured, as its node lines say), while the
 * plan section sums the effort of every candidate. */
static void test_lowered_plan_checked(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("lowered.db"));
    bst_context *ctx = tuned_context(BST_TUNE_FULL, path);
    bst_graph *g = attention_graph();
    bst_program *p = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &p) == BST_OK);
    char *text = NULL, *json = NULL;
    CU_ASSERT_FATAL(bst_program_explain(p, false, &text) == BST_OK);
    CU_ASSERT_FATAL(bst_program_explain(p, true, &json) == BST_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "{\"plan\":\"lowered\",\"decode_ns\":"));
    CU_ASSERT_PTR_NULL(strstr(json, "{\"plan\":\"lowered\",\"decode_ns\":0,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"plan_check_seconds\":"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " lowered "));
    CU_ASSERT_EQUAL(raw_count_table(path, "plan_checks WHERE lowered_decode_ns > 0"), 1);
    long hits = count_after(json, "\"hits\":"), measured = count_after(json, "\"measured\":");
    long all_hits = count_after(json, "\"all_plans_hits\":");
    long all_measured = count_after(json, "\"all_plans_measured\":");
    long node_hits = 0, node_measured = 0;
    for (const char *at = json; (at = strstr(at, "\"cache\":\"")) != NULL; at += 9) {
        node_hits += strncmp(at + 9, "hit\"", 4) == 0;
        node_measured += strncmp(at + 9, "miss-measured\"", 14) == 0;
    }
    CU_ASSERT_EQUAL(hits, node_hits);
    CU_ASSERT_EQUAL(measured, node_measured);
    /* The fused attention's variants were compared (in the tuned-prompt plan at least; the
     * kept plan may be static priority, which compares nothing). */
    CU_ASSERT(all_hits + all_measured >= 1);
    CU_ASSERT(all_hits >= hits && all_measured >= measured);
    bst_free(text);
    bst_free(json);
    bst_program_destroy(p);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

/* A CPU-kind device of a GPU-API backend (here the CPU plugin's table under the name "vulkan",
 * as lavapipe is) is left out of tuned placement's candidates unless BASTION_TUNE_EMULATED=1.
 * Frozen mode on an empty database: candidates are listed, nothing is measured, and the per-node
 * plan is kept (no whole-graph row), so the node's candidate list is what explain shows. */
static void test_emulated_left_out(void)
{
    static const uint32_t none[] = {BST_OP_COUNT};
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("emulated.db"));
    for (int include = 0; include < 2; include++) {
        if (include)
            setenv("BASTION_TUNE_EMULATED", "1", 1);
        else
            unsetenv("BASTION_TUNE_EMULATED");
        bst_context *ctx = front_device_context(BST_TUNE_FROZEN, path, "vulkan", none);
        bst_graph *g = matmul_graph();
        bst_program *p = NULL;
        CU_ASSERT_FATAL(bst_program_create(ctx, g, &p) == BST_OK);
        char *json = NULL;
        CU_ASSERT_FATAL(bst_program_explain(p, true, &json) == BST_OK);
        /* Candidates list device labels; the chosen device is one of them. */
        const char *cands = strstr(json, "\"candidates\":[{\"device\":");
        CU_ASSERT_PTR_NOT_NULL_FATAL(cands);
        bool lists_vulkan = strstr(cands, "\"vulkan/") != NULL;
        CU_ASSERT_EQUAL(lists_vulkan, include == 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(cands, "\"cpu/"));
        CU_ASSERT_PTR_NOT_NULL(strstr(json, include ? "\"emulated_devices\":\"measured\""
                                                    : "\"emulated_devices\":\"left out\""));
        bst_free(json);
        bst_program_destroy(p);
        bst_graph_destroy(g);
        bst_context_destroy(ctx);
    }
    unsetenv("BASTION_TUNE_EMULATED");
}

/* Placement counts a weight at the size prepare_weight reported for its dtype on the device:
 * a front device whose memory holds the q4_1 weight at its dtype size but not at three times
 * that (a noted repack ratio) does not get the matmul. Frozen mode on an empty database: no
 * measurement, the first device the weight fits. */
static void test_weight_memory_uses_prepared_size(void)
{
    static const uint32_t none[] = {BST_OP_COUNT};
    bst_context *ctx = front_device_context(BST_TUNE_FROZEN, tmp_path("memory.db"), "cpu-small", none);
    const uint64_t native = 128 * 256 / 32 * 20; /* q4_1[128,256]: 20 bytes per 32 */
    CU_ASSERT_EQUAL(bsti_tune_weight_bytes(ctx, 0, BST_DTYPE_Q4_1, native), native);
    bsti_tune_note_weight_cost(ctx, 0, BST_DTYPE_Q4_1, native, 3 * native);
    CU_ASSERT_EQUAL(bsti_tune_weight_bytes(ctx, 0, BST_DTYPE_Q4_1, native), 3 * native);
    CU_ASSERT_EQUAL(bsti_tune_weight_bytes(ctx, 0, BST_DTYPE_Q8_0, 1000), 1000);
    ctx->devices[0].info.memory_bytes = 2 * native;
    bst_graph *g = matmul_graph();
    bst_program *p = NULL;
    CU_ASSERT_FATAL(bst_program_create(ctx, g, &p) == BST_OK);
    char *describe = NULL;
    CU_ASSERT_FATAL(bst_program_describe(p, &describe) == BST_OK);
    const char *mm = strstr(describe, " matmul ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mm);
    CU_ASSERT(strncmp(strstr(mm, "-> ") + 3, "cpu/", 4) == 0);
    bst_free(describe);
    bst_program_destroy(p);
    bst_graph_destroy(g);
    bst_context_destroy(ctx);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"round_trip", test_round_trip},
        {"key_parts_miss", test_key_parts_miss},
        {"invalid_row_ignored", test_invalid_row_ignored},
        {"corrupt_rebuilt", test_corrupt_rebuilt},
        {"busy_waits", test_busy_waits},
        {"two_processes", test_two_processes},
        {"default_path_dir_mode", test_default_path_dir_mode},
        {"frozen_miss_falls_back", test_frozen_miss_falls_back},
        {"cached_measures_then_hits", test_cached_measures_then_hits},
        {"rows_pick_faster_variant", test_rows_pick_faster_variant},
        {"no_cache_leaves_nothing", test_no_cache_leaves_nothing},
        {"plan_rows", test_plan_rows},
        {"schema_v1_upgraded", test_schema_v1_upgraded},
        {"frozen_never_measures", test_frozen_never_measures},
        {"slow_variant_never_chosen", test_slow_variant_never_chosen},
        {"cold_first_call_not_dropped", test_cold_first_call_not_dropped},
        {"two_processes_tuning", test_two_processes_tuning},
        {"tuned_run_agrees", test_tuned_run_agrees},
        {"weight_kept_once", test_weight_kept_once},
        {"check_survives_failing_runs", test_check_survives_failing_runs},
        {"cli_explain", test_cli_explain},
        {"static_lowers_on_first_device", test_static_lowers_on_first_device},
        {"lowered_plan_checked", test_lowered_plan_checked},
        {"emulated_left_out", test_emulated_left_out},
        {"weight_memory_uses_prepared_size", test_weight_memory_uses_prepared_size},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("tune", cases);
    if (tmpdir[0])
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
