/*
 * runtime/tune_db.h — the tuning database: measured kernel times and transfer costs, kept in
 * SQLite so a second run (or a second process) does not measure again.
 *
 * Every part of the key that could change a kernel's speed is a column (op, dtypes, shape
 * bucket, device fingerprint, driver version, plugin name + version, variant + source hash,
 * thread count, ISA mask, Bastion version); a lookup matches all of them, so any change misses.
 * The file is untrusted input: every row read is range-checked, and a file SQLite calls corrupt
 * or not a database is moved aside (".corrupt-<time>") with a warning and rebuilt. Lock
 * contention from another process (SQLITE_BUSY) is waited for, never treated as corruption.
 *
 * Ownership and threads: a bsti_tune_db is owned by whoever opened it (the context) and used
 * from one thread at a time. Strings in keys are borrowed for the call.
 */
#ifndef BASTION_RUNTIME_TUNE_DB_H
#define BASTION_RUNTIME_TUNE_DB_H

#include <bastion/bastion.h>

#include <stddef.h>
#include <stdint.h>

typedef struct bsti_tune_db bsti_tune_db;

/* One kernel measurement's key. */
typedef struct bsti_tune_key {
    const char *op;     /* op name plus an attribute digest: "matmul#1a2b" */
    const char *dtypes; /* "f32,q4_1->f32" */
    const char *shape;  /* bucketed dims: "[512,576],[1536,576]->[512,1536]" */
    uint64_t device_fingerprint;
    const char *driver_version;
    const char *plugin;
    const char *plugin_version;
    const char *variant;
    uint64_t source_hash;
    uint32_t threads;
    uint64_t isa_mask;
    const char *bastion_version;
} bsti_tune_key;

typedef struct bsti_tune_value {
    uint64_t median_ns;
    uint32_t samples;
    int64_t timestamp; /* seconds since the epoch */
} bsti_tune_value;

/* Key of one measured copy between two devices; size is a power-of-two bucket. */
typedef struct bsti_transfer_key {
    uint64_t src_fingerprint, dst_fingerprint;
    const char *src_plugin, *dst_plugin;
    uint64_t size_bucket;
    const char *bastion_version;
} bsti_transfer_key;

/* Path of the default database: $BASTION_CACHE_DIR/tuning.db, else
 * $XDG_CACHE_HOME/bastion/tuning.db, else ~/.cache/bastion/tuning.db. Writes into buf. */
BST_MUST_CHECK bst_status bsti_tune_db_default_path(char *buf, size_t cap);

/* Opens (creating the file, and its directory with mode 0700, as needed) the database at
 * `path`; ":memory:" keeps everything in memory (--no-cache). A corrupt file is moved aside and
 * rebuilt with a warning; a newer schema than this build knows is refused (BST_ERR_FORMAT). */
BST_MUST_CHECK bst_status bsti_tune_db_open(const char *path, bsti_tune_db **out_db);
void bsti_tune_db_close(bsti_tune_db *db);

/* Looks up a key: *out_found false on a miss (or an invalid row, which is logged and ignored). */
BST_MUST_CHECK bst_status bsti_tune_db_get(bsti_tune_db *db, const bsti_tune_key *key,
                                           bsti_tune_value *out_value, bool *out_found);
/* Inserts or replaces a row, in one transaction. */
BST_MUST_CHECK bst_status bsti_tune_db_put(bsti_tune_db *db, const bsti_tune_key *key,
                                           const bsti_tune_value *value);

BST_MUST_CHECK bst_status bsti_tune_db_get_transfer(bsti_tune_db *db, const bsti_transfer_key *key,
                                                    uint64_t *out_ns, bool *out_found);
BST_MUST_CHECK bst_status bsti_tune_db_put_transfer(bsti_tune_db *db, const bsti_transfer_key *key,
                                                    uint64_t ns);

/* The whole-graph plan a program should use (runtime/tune_plan.c), keyed by the graph's
 * digest, a digest of everything about the machine that tuning keys (devices, drivers,
 * plugins, threads, ISA) and the Bastion version; `digest` identifies the per-node placement
 * the plan produced, so a row whose plan no longer places the same way is measured again.
 * Times are per plan kind (0 = not measured). */
#define BSTI_TUNE_PLAN_KINDS 5
typedef struct bsti_plan_row {
    uint32_t plan;   /* bsti_plan_kind */
    uint64_t digest; /* of the chosen plan's placement */
    uint64_t decode_ns[BSTI_TUNE_PLAN_KINDS], prompt_ns[BSTI_TUNE_PLAN_KINDS];
    uint32_t prompt_tokens, decode_n_kv;
    int64_t timestamp;
    /* A session may run two programs sharing its KV cache rows: the plan best at decode steps
     * and the one best at prompt chunks, when that split beats `plan` clearly. Both
     * BSTI_TUNE_PLAN_KINDS when there is no split. */
    uint32_t split_decode, split_prompt;
} bsti_plan_row;

BST_MUST_CHECK bst_status bsti_tune_db_get_plan(bsti_tune_db *db, uint64_t graph_hash,
                                                uint64_t env_hash, const char *bastion_version,
                                                bsti_plan_row *out_row, bool *out_found);
BST_MUST_CHECK bst_status bsti_tune_db_put_plan(bsti_tune_db *db, uint64_t graph_hash,
                                                uint64_t env_hash, const char *bastion_version,
                                                const bsti_plan_row *row);

/* Rows in the kernel table (tests and `bastion tune` report it). */
BST_MUST_CHECK bst_status bsti_tune_db_count(bsti_tune_db *db, uint64_t *out_rows);

/* Upper bound accepted for a stored time: an hour. Anything above is treated as corrupt. */
#define BSTI_TUNE_MAX_NS (3600ull * 1000000000ull)

#endif /* BASTION_RUNTIME_TUNE_DB_H */
