/*
 * runtime/tune_db.c — the tuning database on SQLite (see tune_db.h for what it holds and why).
 *
 * Failure policy: SQLITE_BUSY (another process writing) is waited for through busy_timeout and a
 * short retry loop around BEGIN IMMEDIATE; only SQLITE_CORRUPT and SQLITE_NOTADB mean the file is
 * unusable, and then it is renamed to "<path>.corrupt-<time>" (kept for a bug report, never
 * deleted) and a fresh database is built in its place. Any other error is returned as
 * BST_ERR_IO, and callers carry on without the cache.
 */
#include "runtime/tune_db.h"

#include "graph/status.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* 1: kernel_times, transfer_times. 2: plan_checks (development only). 3: plan_checks with the
 * decode/prompt split. 4: plan_checks with the lowered plan's times. Files of versions 1 to 3
 * are upgraded in place: their kernel and transfer rows stay valid; plan_checks is made anew. */
#define SCHEMA_VERSION 4
#define BUSY_TIMEOUT_MS 10000
#define BUSY_RETRIES 20
#define MAX_TEXT 512

struct bsti_tune_db {
    sqlite3 *db;
    char *path;
    bool memory;
};

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kernel_times("
    " op TEXT NOT NULL, dtypes TEXT NOT NULL, shape TEXT NOT NULL,"
    " device_fp INTEGER NOT NULL, driver TEXT NOT NULL, plugin TEXT NOT NULL,"
    " plugin_version TEXT NOT NULL, variant TEXT NOT NULL, source_hash INTEGER NOT NULL,"
    " threads INTEGER NOT NULL, isa INTEGER NOT NULL, bastion_version TEXT NOT NULL,"
    " median_ns INTEGER NOT NULL, samples INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY(op, dtypes, shape, device_fp, driver, plugin, plugin_version, variant,"
    "             source_hash, threads, isa, bastion_version));"
    "CREATE TABLE IF NOT EXISTS transfer_times("
    " src_fp INTEGER NOT NULL, dst_fp INTEGER NOT NULL, src_plugin TEXT NOT NULL,"
    " dst_plugin TEXT NOT NULL, size_bucket INTEGER NOT NULL, bastion_version TEXT NOT NULL,"
    " ns INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY(src_fp, dst_fp, src_plugin, dst_plugin, size_bucket, bastion_version));"
    "CREATE TABLE IF NOT EXISTS plan_checks("
    " graph_hash INTEGER NOT NULL, env_hash INTEGER NOT NULL, bastion_version TEXT NOT NULL,"
    " plan INTEGER NOT NULL, digest INTEGER NOT NULL,"
    " static_decode_ns INTEGER NOT NULL, static_prompt_ns INTEGER NOT NULL,"
    " prompt_decode_ns INTEGER NOT NULL, prompt_prompt_ns INTEGER NOT NULL,"
    " decode_decode_ns INTEGER NOT NULL, decode_prompt_ns INTEGER NOT NULL,"
    " blend_decode_ns INTEGER NOT NULL, blend_prompt_ns INTEGER NOT NULL,"
    " lowered_decode_ns INTEGER NOT NULL, lowered_prompt_ns INTEGER NOT NULL,"
    " prompt_tokens INTEGER NOT NULL, decode_n_kv INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " split_decode INTEGER NOT NULL, split_prompt INTEGER NOT NULL,"
    " PRIMARY KEY(graph_hash, env_hash, bastion_version));";

static bool is_corrupt(int rc)
{
    int primary = rc & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

static bst_status sql_fail(bsti_tune_db *t, int rc, const char *what)
{
    return bsti_fail(BST_ERR_IO, "tuning database %s: %s: %s", t->path, what,
                     t->db ? sqlite3_errmsg(t->db) : sqlite3_errstr(rc));
}

/* mkdir -p with mode 0700 for every component it creates. */
static bst_status make_dirs(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return bsti_fail(BST_ERR_IO, "tuning database directory path is empty or too long");
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return bsti_fail(BST_ERR_IO, "cannot create the cache directory %s: %s", buf,
                             strerror(errno));
        buf[i] = saved;
    }
    return BST_OK;
}

bst_status bsti_tune_db_default_path(char *buf, size_t cap)
{
    const char *dir = secure_getenv("BASTION_CACHE_DIR");
    int k;
    if (dir && dir[0]) {
        k = snprintf(buf, cap, "%s/tuning.db", dir);
    } else if ((dir = secure_getenv("XDG_CACHE_HOME")) && dir[0] == '/') {
        k = snprintf(buf, cap, "%s/bastion/tuning.db", dir);
    } else if ((dir = secure_getenv("HOME")) && dir[0]) {
        k = snprintf(buf, cap, "%s/.cache/bastion/tuning.db", dir);
    } else {
        return bsti_fail(BST_ERR_NOT_FOUND, "no cache directory: set BASTION_CACHE_DIR, "
                         "XDG_CACHE_HOME or HOME, or use --no-cache");
    }
    if (k < 0 || (size_t)k >= cap)
        return bsti_fail(BST_ERR_OVERFLOW, "tuning database path is too long");
    return BST_OK;
}

/* Creates the tables, or checks the ones that are there. Returns the SQLite code of the first
 * failure (so the caller can tell corruption apart) and sets *out_st. */
static int init_schema(bsti_tune_db *t, bst_status *out_st)
{
    *out_st = BST_OK;
    char *err = NULL;
    int rc = sqlite3_exec(t->db, SCHEMA, NULL, NULL, &err);
    sqlite3_free(err);
    if (rc != SQLITE_OK) {
        *out_st = sql_fail(t, rc, "creating the schema");
        return rc;
    }
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(t->db, "SELECT version FROM schema_version", -1, &st, NULL);
    int64_t version = -1;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            version = sqlite3_column_int64(st, 0);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        *out_st = sql_fail(t, rc, "reading the schema version");
        return rc;
    }
    if (version == SCHEMA_VERSION)
        return SQLITE_OK;
    if (version > SCHEMA_VERSION) {
        *out_st = bsti_fail(BST_ERR_FORMAT, "tuning database %s has schema version %lld, newer "
                            "than this Bastion's %d; use another cache directory or --no-cache",
                            t->path, (long long)version, SCHEMA_VERSION);
        return SQLITE_OK;
    }
    /* Empty (new), version 1 to 3 (kernel rows stay; plan_checks is made anew, the schema
     * text creating it again below), or an unknown older layout: start over; rows are only a
     * cache. */
    bool upgrade = version >= 1 && version <= 3;
    const char *reset = version < 0 ? "BEGIN IMMEDIATE; INSERT INTO schema_version VALUES(4); COMMIT;"
                        : upgrade
                            ? "BEGIN IMMEDIATE; DROP TABLE IF EXISTS plan_checks; UPDATE "
                              "schema_version SET version=4; COMMIT;"
                            : "BEGIN IMMEDIATE; DELETE FROM kernel_times; DELETE FROM "
                              "transfer_times; DELETE FROM plan_checks; DELETE FROM "
                              "schema_version; INSERT INTO schema_version VALUES(4); COMMIT;";
    rc = sqlite3_exec(t->db, reset, NULL, NULL, &err);
    sqlite3_free(err);
    if (rc == SQLITE_OK && upgrade) {
        rc = sqlite3_exec(t->db, SCHEMA, NULL, NULL, &err);
        sqlite3_free(err);
    }
    if (rc != SQLITE_OK) {
        sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
        *out_st = sql_fail(t, rc, "writing the schema version");
    }
    return rc;
}

static int open_handle(bsti_tune_db *t, bst_status *out_st)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(t->path, &t->db, flags, NULL);
    if (rc != SQLITE_OK) {
        *out_st = sql_fail(t, rc, "open");
        return rc;
    }
    sqlite3_busy_timeout(t->db, BUSY_TIMEOUT_MS);
    if (!t->memory) {
        (void)chmod(t->path, 0600);
        /* A cache, not a record: WAL with synchronous=NORMAL commits without an fsync each
         * (hundreds of rows per tuning run), readers never block the writer, and a crash loses
         * at most the last rows, never the file. Failure here (a read-only or damaged file) shows
         * up in init_schema below. */
        sqlite3_exec(t->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL,
                     NULL);
    }
    return init_schema(t, out_st);
}

static void close_handle(bsti_tune_db *t)
{
    if (t->db)
        sqlite3_close_v2(t->db);
    t->db = NULL;
}

/* The file is damaged: move it aside with a warning and build a new one. */
static bst_status rebuild(bsti_tune_db *t, int why)
{
    close_handle(t);
    if (t->memory)
        return bsti_fail(BST_ERR_INTERNAL, "in-memory tuning database reported corruption");
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.corrupt-%lld", t->path, (long long)time(NULL));
    if (rename(t->path, aside) != 0)
        return bsti_fail(BST_ERR_IO, "tuning database %s is damaged (%s) and cannot be moved "
                         "aside: %s", t->path, sqlite3_errstr(why), strerror(errno));
    /* SQLite's side files belong to the damaged database. */
    char side[4200];
    snprintf(side, sizeof side, "%s-journal", t->path);
    (void)unlink(side);
    snprintf(side, sizeof side, "%s-wal", t->path);
    (void)unlink(side);
    snprintf(side, sizeof side, "%s-shm", t->path);
    (void)unlink(side);
    bsti_log(BST_LOG_WARN, "tuning database %s was damaged (%s); moved it to %s and started a "
             "new one", t->path, sqlite3_errstr(why), aside);
    bst_status st = BST_OK;
    int rc = open_handle(t, &st);
    if (rc != SQLITE_OK || st != BST_OK) {
        close_handle(t);
        return st != BST_OK ? st : sql_fail(t, rc, "rebuild");
    }
    return BST_OK;
}

bst_status bsti_tune_db_open(const char *path, bsti_tune_db **out_db)
{
    if (!out_db || !path)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_open: NULL argument");
    *out_db = NULL;
    bsti_tune_db *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning database: out of memory");
    }
    t->memory = strcmp(path, ":memory:") == 0;
    bst_status st = BST_OK;
    if (!t->memory) {
        char *slash = strrchr(t->path, '/');
        if (slash && slash != t->path) {
            *slash = '\0';
            st = make_dirs(t->path);
            *slash = '/';
        }
    }
    if (st == BST_OK) {
        int rc = open_handle(t, &st);
        if (is_corrupt(rc))
            st = rebuild(t, rc);
    }
    if (st != BST_OK) {
        bsti_tune_db_close(t);
        return st;
    }
    *out_db = t;
    return BST_OK;
}

void bsti_tune_db_close(bsti_tune_db *db)
{
    if (!db)
        return;
    close_handle(db);
    free(db->path);
    free(db);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static void bind_key(sqlite3_stmt *s, const bsti_tune_key *k)
{
    bind_text(s, 1, k->op);
    bind_text(s, 2, k->dtypes);
    bind_text(s, 3, k->shape);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)k->device_fingerprint);
    bind_text(s, 5, k->driver_version);
    bind_text(s, 6, k->plugin);
    bind_text(s, 7, k->plugin_version);
    bind_text(s, 8, k->variant);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)k->source_hash);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)k->threads);
    sqlite3_bind_int64(s, 11, (sqlite3_int64)k->isa_mask);
    bind_text(s, 12, k->bastion_version);
}

static void bind_transfer_key(sqlite3_stmt *s, const bsti_transfer_key *k)
{
    sqlite3_bind_int64(s, 1, (sqlite3_int64)k->src_fingerprint);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)k->dst_fingerprint);
    bind_text(s, 3, k->src_plugin);
    bind_text(s, 4, k->dst_plugin);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)k->size_bucket);
    bind_text(s, 6, k->bastion_version);
}

typedef void (*bind_fn)(sqlite3_stmt *s, const void *key);
static void bind_kernel_cb(sqlite3_stmt *s, const void *key) { bind_key(s, key); }
static void bind_transfer_cb(sqlite3_stmt *s, const void *key) { bind_transfer_key(s, key); }

/* Runs one SELECT returning (ns, samples, ts). A damaged file is rebuilt and counts as a miss. */
static bst_status select_row(bsti_tune_db *t, const char *sql, bind_fn bind, const void *key,
                             int64_t out_cols[3], bool *out_found)
{
    *out_found = false;
    if (!t->db)
        return bsti_fail(BST_ERR_IO, "tuning database %s is not open", t->path);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(t->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        bind(s, key);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            for (int i = 0; i < 3; i++)
                out_cols[i] = sqlite3_column_type(s, i) == SQLITE_INTEGER
                                  ? sqlite3_column_int64(s, i)
                                  : -1;
            *out_found = true;
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_OK)
        return BST_OK;
    if (is_corrupt(rc))
        return rebuild(t, rc);
    return sql_fail(t, rc, "lookup");
}

/* Runs one INSERT OR REPLACE inside BEGIN IMMEDIATE ... COMMIT, retrying while another
 * connection holds the write lock. */
static bst_status write_row(bsti_tune_db *t, const char *sql, bind_fn bind, const void *key,
                            const int64_t *vals, int n_vals, int first_val)
{
    if (!t->db)
        return bsti_fail(BST_ERR_IO, "tuning database %s is not open", t->path);
    int rc = SQLITE_BUSY;
    for (int attempt = 0; attempt < BUSY_RETRIES && (rc & 0xff) == SQLITE_BUSY; attempt++) {
        rc = sqlite3_exec(t->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if ((rc & 0xff) == SQLITE_BUSY)
            usleep(10000);
    }
    if (rc == SQLITE_OK) {
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(t->db, sql, -1, &s, NULL);
        if (rc == SQLITE_OK) {
            bind(s, key);
            for (int i = 0; i < n_vals; i++)
                sqlite3_bind_int64(s, first_val + i, (sqlite3_int64)vals[i]);
            rc = sqlite3_step(s);
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        sqlite3_finalize(s);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(t->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        return BST_OK;
    if (is_corrupt(rc))
        return rebuild(t, rc);
    return sql_fail(t, rc, "write");
}

static const char *const KEY_WHERE =
    " WHERE op=?1 AND dtypes=?2 AND shape=?3 AND device_fp=?4 AND driver=?5 AND plugin=?6 AND"
    " plugin_version=?7 AND variant=?8 AND source_hash=?9 AND threads=?10 AND isa=?11 AND"
    " bastion_version=?12";

bst_status bsti_tune_db_get(bsti_tune_db *db, const bsti_tune_key *key,
                            bsti_tune_value *out_value, bool *out_found)
{
    if (!db || !key || !out_value || !out_found)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_get: NULL argument");
    char sql[768];
    snprintf(sql, sizeof sql, "SELECT median_ns, samples, ts FROM kernel_times%s", KEY_WHERE);
    int64_t c[3];
    bst_status st = select_row(db, sql, bind_kernel_cb, key, c, out_found);
    if (st != BST_OK || !*out_found)
        return st;
    /* Untrusted: a row outside sane ranges (or of the wrong type) is ignored, not believed. */
    if (c[0] <= 0 || (uint64_t)c[0] > BSTI_TUNE_MAX_NS || c[1] <= 0 || c[1] > 1000000 ||
        c[2] < 0) {
        bsti_log(BST_LOG_WARN, "tuning database %s: ignoring an invalid row for %s on %s "
                 "(median %lld ns, %lld samples)", db->path, key->op, key->plugin,
                 (long long)c[0], (long long)c[1]);
        *out_found = false;
        return BST_OK;
    }
    out_value->median_ns = (uint64_t)c[0];
    out_value->samples = (uint32_t)c[1];
    out_value->timestamp = c[2];
    return BST_OK;
}

bst_status bsti_tune_db_put(bsti_tune_db *db, const bsti_tune_key *key,
                            const bsti_tune_value *value)
{
    if (!db || !key || !value)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put: NULL argument");
    if (value->median_ns == 0 || value->median_ns > BSTI_TUNE_MAX_NS || value->samples == 0)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put: implausible measurement "
                         "(%llu ns, %u samples)", (unsigned long long)value->median_ns,
                         value->samples);
    int64_t vals[3] = {(int64_t)value->median_ns, (int64_t)value->samples,
                       value->timestamp ? value->timestamp : (int64_t)time(NULL)};
    return write_row(db,
                     "INSERT OR REPLACE INTO kernel_times VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
                     "?11,?12,?13,?14,?15)",
                     bind_kernel_cb, key, vals, 3, 13);
}

bst_status bsti_tune_db_get_transfer(bsti_tune_db *db, const bsti_transfer_key *key,
                                     uint64_t *out_ns, bool *out_found)
{
    if (!db || !key || !out_ns || !out_found)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_get_transfer: NULL argument");
    int64_t c[3];
    bst_status st = select_row(db,
                               "SELECT ns, 1, ts FROM transfer_times WHERE src_fp=?1 AND "
                               "dst_fp=?2 AND src_plugin=?3 AND dst_plugin=?4 AND "
                               "size_bucket=?5 AND bastion_version=?6",
                               bind_transfer_cb, key, c, out_found);
    if (st != BST_OK || !*out_found)
        return st;
    if (c[0] <= 0 || (uint64_t)c[0] > BSTI_TUNE_MAX_NS || c[2] < 0) {
        bsti_log(BST_LOG_WARN, "tuning database %s: ignoring an invalid transfer row (%lld ns)",
                 db->path, (long long)c[0]);
        *out_found = false;
        return BST_OK;
    }
    *out_ns = (uint64_t)c[0];
    return BST_OK;
}

bst_status bsti_tune_db_put_transfer(bsti_tune_db *db, const bsti_transfer_key *key, uint64_t ns)
{
    if (!db || !key)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put_transfer: NULL argument");
    if (ns == 0 || ns > BSTI_TUNE_MAX_NS)
        return bsti_fail(BST_ERR_INVALID_ARG, "implausible transfer time %llu ns",
                         (unsigned long long)ns);
    int64_t vals[2] = {(int64_t)ns, (int64_t)time(NULL)};
    return write_row(db, "INSERT OR REPLACE INTO transfer_times VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
                     bind_transfer_cb, key, vals, 2, 7);
}

bst_status bsti_tune_db_count(bsti_tune_db *db, uint64_t *out_rows)
{
    if (!db || !out_rows)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_count: NULL argument");
    *out_rows = 0;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db->db, "SELECT count(*) FROM kernel_times", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(s, 0);
        *out_rows = n > 0 ? (uint64_t)n : 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_OK)
        return BST_OK;
    if (is_corrupt(rc))
        return rebuild(db, rc);
    return sql_fail(db, rc, "count");
}

/* --- whole-graph plans --- */

typedef struct plan_key {
    uint64_t graph_hash, env_hash;
    const char *version;
} plan_key;

static void bind_plan_cb(sqlite3_stmt *s, const void *key)
{
    const plan_key *k = key;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)k->graph_hash);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)k->env_hash);
    bind_text(s, 3, k->version);
}

static bool ns_ok(int64_t v) { return v >= 0 && (uint64_t)v <= BSTI_TUNE_MAX_NS; }

bst_status bsti_tune_db_get_plan(bsti_tune_db *db, uint64_t graph_hash, uint64_t env_hash,
                                 const char *bastion_version, bsti_plan_row *out_row,
                                 bool *out_found)
{
    if (!db || !out_row || !out_found)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_get_plan: NULL argument");
    *out_found = false;
    memset(out_row, 0, sizeof *out_row);
    if (!db->db)
        return bsti_fail(BST_ERR_IO, "tuning database %s is not open", db->path);
    plan_key k = {graph_hash, env_hash, bastion_version};
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db->db,
                                "SELECT plan, digest, static_decode_ns, static_prompt_ns, "
                                "prompt_decode_ns, prompt_prompt_ns, decode_decode_ns, "
                                "decode_prompt_ns, blend_decode_ns, blend_prompt_ns, lowered_decode_ns, "
                                "lowered_prompt_ns, "
                                "prompt_tokens, decode_n_kv, ts, split_decode, split_prompt FROM "
                                "plan_checks WHERE graph_hash=?1 AND env_hash=?2 AND "
                                "bastion_version=?3",
                                -1, &s, NULL);
    enum {
        NS0 = 2,
        PT = 2 + 2 * BSTI_TUNE_PLAN_KINDS,
        NKV = PT + 1,
        TS = PT + 2,
        SD = PT + 3,
        SP = PT + 4,
        NCOL = PT + 5
    };
    int64_t c[NCOL];
    bool found = false;
    if (rc == SQLITE_OK) {
        bind_plan_cb(s, &k);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            for (int i = 0; i < NCOL; i++)
                c[i] = sqlite3_column_type(s, i) == SQLITE_INTEGER ? sqlite3_column_int64(s, i)
                                                                   : -1;
            found = true;
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK)
        return is_corrupt(rc) ? rebuild(db, rc) : sql_fail(db, rc, "plan lookup");
    if (!found)
        return BST_OK;
    /* Untrusted: the chosen plan must be a known kind with a measurement of its own. */
    bool ok = c[0] >= 0 && c[0] < BSTI_TUNE_PLAN_KINDS && c[PT] >= 1 && c[PT] <= (1 << 20) &&
              c[NKV] >= 1 && c[NKV] <= (1 << 24) && c[TS] >= 0;
    for (int i = NS0; i < PT && ok; i++)
        ok = ns_ok(c[i]);
    if (ok)
        ok = c[NS0 + 2 * c[0]] > 0 || c[NS0 + 1 + 2 * c[0]] > 0;
    /* A split names two different measured plans, or none (both = the kind count). */
    if (ok && !(c[SD] == BSTI_TUNE_PLAN_KINDS && c[SP] == BSTI_TUNE_PLAN_KINDS))
        ok = c[SD] >= 0 && c[SD] < BSTI_TUNE_PLAN_KINDS && c[SP] >= 0 &&
             c[SP] < BSTI_TUNE_PLAN_KINDS && c[SD] != c[SP] && c[NS0 + 2 * c[SD]] > 0 &&
             c[NS0 + 1 + 2 * c[SP]] > 0;
    if (!ok) {
        bsti_log(BST_LOG_WARN, "tuning database %s: ignoring an invalid plan row (plan %lld)",
                 db->path, (long long)c[0]);
        return BST_OK;
    }
    out_row->plan = (uint32_t)c[0];
    out_row->digest = (uint64_t)c[1];
    for (int k2 = 0; k2 < BSTI_TUNE_PLAN_KINDS; k2++) {
        out_row->decode_ns[k2] = (uint64_t)c[NS0 + 2 * k2];
        out_row->prompt_ns[k2] = (uint64_t)c[NS0 + 1 + 2 * k2];
    }
    out_row->prompt_tokens = (uint32_t)c[PT];
    out_row->decode_n_kv = (uint32_t)c[NKV];
    out_row->timestamp = c[TS];
    out_row->split_decode = (uint32_t)c[SD];
    out_row->split_prompt = (uint32_t)c[SP];
    *out_found = true;
    return BST_OK;
}

bst_status bsti_tune_db_put_plan(bsti_tune_db *db, uint64_t graph_hash, uint64_t env_hash,
                                 const char *bastion_version, const bsti_plan_row *row)
{
    if (!db || !row)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put_plan: NULL argument");
    if (row->plan >= BSTI_TUNE_PLAN_KINDS || row->prompt_tokens == 0 || row->decode_n_kv == 0)
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put_plan: invalid row (plan %u)",
                         row->plan);
    enum { NS0 = 2, PT = 2 + 2 * BSTI_TUNE_PLAN_KINDS, NCOL = PT + 5 };
    bool no_split = row->split_decode == BSTI_TUNE_PLAN_KINDS &&
                    row->split_prompt == BSTI_TUNE_PLAN_KINDS;
    if (!no_split && (row->split_decode >= BSTI_TUNE_PLAN_KINDS ||
                      row->split_prompt >= BSTI_TUNE_PLAN_KINDS ||
                      row->split_decode == row->split_prompt))
        return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put_plan: invalid split (%u, %u)",
                         row->split_decode, row->split_prompt);
    int64_t vals[NCOL];
    vals[0] = row->plan;
    vals[1] = (int64_t)row->digest;
    for (int k = 0; k < BSTI_TUNE_PLAN_KINDS; k++) {
        if (row->decode_ns[k] > BSTI_TUNE_MAX_NS || row->prompt_ns[k] > BSTI_TUNE_MAX_NS)
            return bsti_fail(BST_ERR_INVALID_ARG, "bsti_tune_db_put_plan: implausible time");
        vals[NS0 + 2 * k] = (int64_t)row->decode_ns[k];
        vals[NS0 + 1 + 2 * k] = (int64_t)row->prompt_ns[k];
    }
    vals[PT] = row->prompt_tokens;
    vals[PT + 1] = row->decode_n_kv;
    vals[PT + 2] = row->timestamp ? row->timestamp : (int64_t)time(NULL);
    vals[PT + 3] = row->split_decode;
    vals[PT + 4] = row->split_prompt;
    plan_key k = {graph_hash, env_hash, bastion_version};
    return write_row(db, "INSERT OR REPLACE INTO plan_checks VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,"
                         "?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
                     bind_plan_cb, &k, vals, NCOL, 4);
}
