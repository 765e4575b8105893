/*
 * bench/bench_profile.c — `--profile FILE` of `bastion run` and `bastion bench model`: collects
 * the library's profile records (bst_session_set_profiling), writes them as a Chrome trace
 * (Trace Event Format, read by chrome://tracing and Perfetto) and prints a top-N summary.
 *
 * Trace layout: one process ("pid") per profiled setup (the run, or each backend selection of
 * bench model), one thread ("tid") per device, named after it. Every record is a complete
 * ("ph":"X") event: partitions (cat "partition") span their nodes (cat "node", named after the
 * op), copies (cat "copy") precede the partition they feed. Timestamps are microseconds since
 * the first record. The trace keeps at most BENCH_PROFILE_MAX_EVENTS events (a long generation
 * makes hundreds of thousands) and says how many it dropped; the summary counts every record.
 *
 * The trace is streamed with stdio rather than built as a json-c tree: a tree of a few hundred
 * thousand events would take hundreds of megabytes.
 */
#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct prof_event {
    uint8_t kind; /* bst_profile_kind */
    uint32_t pid, device, src_device, partition, node, n_nodes;
    const char *name, *variant, *backend, *label; /* interned */
    uint64_t run, start_ns, wall_ns, device_ns, bytes;
    int64_t n_tokens, n_kv;
} prof_event;

typedef struct prof_key {
    const char *name, *variant, *backend; /* interned: compared by pointer */
    uint64_t calls, wall_ns, device_ns, bytes;
    bool device_all; /* every call had a device time */
} prof_key;

/* A piece of work inside a run (BST_PROFILE_NODES_IN_RUN): a timed node and the nodes right after
 * it that ran as part of it (time 0: a sibling matmul group), by what one piece reads and writes.
 * Unlike the op/kernel rows, these tell a model's matmul shapes apart (a q+k+v group from the
 * o projection), so each one's GB/s can be set against the memory's bandwidth. */
typedef struct prof_work {
    const char *name, *variant, *backend; /* the timed node's; interned */
    uint32_t nodes;
    uint64_t bytes; /* of one piece (0 in a merged row: see merge_varying) */
    int64_t n_tokens;
    uint64_t calls, wall_ns, bytes_all; /* bytes_all: of every piece */
    double read_ns; /* the same-size cold read of `bytes` (bench_profile_rate_reads), or 0 */
    uint64_t *call_ns; /* each piece's time, `calls` of them (work rows only) */
    size_t cap_call_ns;
} prof_work;

typedef struct prof_string {
    const char *src; /* a pointer the library handed us (compared first: strings are stable) */
    char *copy;
    bool owned;
} prof_string;

typedef struct prof_lane {
    char *name;
    uint32_t n_devices;
    char **device_names;
} prof_lane;

struct bench_profile {
    prof_event *ev;
    size_t n_ev, cap_ev;
    uint64_t dropped;
    prof_key *keys;
    size_t n_keys, cap_keys;
    prof_string *strs;
    size_t n_strs, cap_strs;
    prof_lane *lanes;
    uint32_t n_lanes;
    uint64_t n_records, n_nodes, n_parts, n_copies;
    uint64_t node_ns, part_ns, copy_ns, copy_bytes;
    bool in_run; /* node times from inside the partitions' runs (BST_PROFILE_NODES_IN_RUN) */
    bool oom;
    prof_work *work; /* in-run only */
    size_t n_work, cap_work;
    prof_work piece; /* the piece still taking nodes (calls 1), or calls 0 */
};

bst_status bench_profile_create(bench_profile **out, bench_error *e)
{
    *out = calloc(1, sizeof **out);
    return *out ? BST_OK : bench_fail(e, BST_ERR_OUT_OF_MEMORY, "profile: out of memory");
}

void bench_profile_destroy(bench_profile *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_strs; i++)
        if (p->strs[i].owned)
            free(p->strs[i].copy);
    for (uint32_t i = 0; i < p->n_lanes; i++) {
        for (uint32_t d = 0; d < p->lanes[i].n_devices; d++)
            free(p->lanes[i].device_names[d]);
        free(p->lanes[i].device_names);
        free(p->lanes[i].name);
    }
    free(p->lanes);
    free(p->strs);
    free(p->keys);
    for (size_t i = 0; i < p->n_work; i++)
        free(p->work[i].call_ns);
    free(p->work);
    free(p->ev);
    free(p);
}

/* The one copy of string s. `stable`: s is the library's and keeps its address and contents
 * while the program lives, so its address alone finds it again (profile records come by the
 * hundred thousand); a caller's buffer is compared by contents only. */
static const char *intern_ex(bench_profile *p, const char *s, bool stable)
{
    if (!s)
        s = "";
    for (size_t i = 0; stable && i < p->n_strs; i++)
        if (p->strs[i].src == s)
            return p->strs[i].copy;
    char *copy = NULL;
    bool owned = false;
    for (size_t i = 0; i < p->n_strs && !copy; i++)
        if (strcmp(p->strs[i].copy, s) == 0)
            copy = p->strs[i].copy;
    if (!copy) {
        copy = strdup(s);
        owned = true;
    }
    if (!copy || !bench_grow((void **)&p->strs, &p->cap_strs, p->n_strs + 1, sizeof *p->strs)) {
        if (owned)
            free(copy);
        p->oom = true;
        return "";
    }
    p->strs[p->n_strs++] = (prof_string){stable ? s : NULL, copy, owned};
    return copy;
}

static const char *intern(bench_profile *p, const char *s) { return intern_ex(p, s, true); }

bst_status bench_profile_begin(bench_profile *p, const char *name, const bst_context *ctx,
                               bst_profile_level level, bench_error *e)
{
    p->in_run = level == BST_PROFILE_NODES_IN_RUN;
    prof_lane *lanes = realloc(p->lanes, (p->n_lanes + 1) * sizeof *lanes);
    if (!lanes)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "profile: out of memory");
    p->lanes = lanes;
    prof_lane *l = &lanes[p->n_lanes];
    memset(l, 0, sizeof *l);
    l->name = strdup(name ? name : "");
    uint32_t nd = ctx ? bst_context_device_count(ctx) : 0;
    l->device_names = calloc(nd ? nd : 1, sizeof *l->device_names);
    if (!l->name || !l->device_names) {
        free(l->name);
        free(l->device_names);
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "profile: out of memory");
    }
    for (uint32_t d = 0; d < nd; d++) {
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        const char *backend = "";
        char buf[256];
        if (bst_context_device(ctx, d, &info, &backend) == BST_OK)
            snprintf(buf, sizeof buf, "%u %s/%s", d, backend, info.name);
        else
            snprintf(buf, sizeof buf, "device %u", d);
        l->device_names[d] = strdup(buf);
        if (!l->device_names[d]) {
            for (uint32_t k = 0; k < d; k++)
                free(l->device_names[k]);
            free(l->device_names);
            free(l->name);
            return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "profile: out of memory");
        }
    }
    l->n_devices = nd;
    p->n_lanes++;
    return BST_OK;
}

static void aggregate(bench_profile *p, const prof_event *ev)
{
    size_t i = 0;
    while (i < p->n_keys && !(p->keys[i].name == ev->name && p->keys[i].variant == ev->variant &&
                              p->keys[i].backend == ev->backend))
        i++;
    if (i == p->n_keys) {
        if (!bench_grow((void **)&p->keys, &p->cap_keys, p->n_keys + 1, sizeof *p->keys)) {
            p->oom = true;
            return;
        }
        p->keys[p->n_keys++] = (prof_key){ev->name, ev->variant, ev->backend, 0, 0, 0, 0, true};
    }
    prof_key *k = &p->keys[i];
    /* In-run, a node that ran as part of an earlier node's work (time 0: the others of a sibling
     * matmul group) is no call of its own; its bytes go with that work's time. */
    const bool grouped = p->in_run && ev->wall_ns == 0;
    k->calls += !grouped;
    k->wall_ns += ev->wall_ns;
    k->device_ns += ev->device_ns;
    k->bytes += ev->bytes;
    k->device_all = k->device_all && (grouped || ev->device_ns > 0);
}

/* Keeps one more piece's time in row's list (for its median). If memory runs out the row keeps
 * none (its median is then unknown) and the profile says it ran out of memory. */
static void keep_call_time(bench_profile *p, prof_work *row, uint64_t ns)
{
    if (row->calls > 0 && !row->call_ns)
        return; /* lost earlier */
    if (!bench_grow((void **)&row->call_ns, &row->cap_call_ns, row->calls + 1,
                    sizeof *row->call_ns)) {
        free(row->call_ns);
        row->call_ns = NULL;
        row->cap_call_ns = 0;
        p->oom = true;
        return;
    }
    row->call_ns[row->calls] = ns;
}

/* The piece in progress into the work rows. */
static void close_piece(bench_profile *p)
{
    const prof_work *w = &p->piece;
    if (!w->calls)
        return;
    size_t i = 0;
    while (i < p->n_work &&
           !(p->work[i].name == w->name && p->work[i].variant == w->variant &&
             p->work[i].backend == w->backend && p->work[i].nodes == w->nodes &&
             p->work[i].bytes == w->bytes && p->work[i].n_tokens == w->n_tokens))
        i++;
    if (i == p->n_work) {
        if (!bench_grow((void **)&p->work, &p->cap_work, p->n_work + 1, sizeof *p->work)) {
            p->oom = true;
            return;
        }
        p->work[p->n_work++] = (prof_work){w->name, w->variant, w->backend, w->nodes, w->bytes,
                                           w->n_tokens, 0, 0, 0, 0.0, NULL, 0};
    }
    keep_call_time(p, &p->work[i], w->wall_ns);
    p->work[i].calls++;
    p->work[i].wall_ns += w->wall_ns;
    p->work[i].bytes_all += w->bytes;
    p->piece.calls = 0;
}

/* An in-run node record: a timed one starts a piece, one with time 0 joins the piece before it
 * (records come in node order, each partition's after its nodes). */
static void add_to_piece(bench_profile *p, const prof_event *ev)
{
    if (ev->wall_ns == 0 && p->piece.calls) {
        p->piece.nodes++;
        p->piece.bytes += ev->bytes;
        return;
    }
    close_piece(p);
    p->piece = (prof_work){ev->name, ev->variant, ev->backend, 1, ev->bytes, ev->n_tokens,
                           1, ev->wall_ns, 0, 0.0, NULL, 0};
}

void bench_profile_record(void *user, const bst_profile_record *r)
{
    bench_profile *p = user;
    if (!p || !r || !p->n_lanes)
        return;
    prof_event ev = {
        .kind = (uint8_t)r->kind,
        .pid = p->n_lanes,
        .device = r->device,
        .src_device = r->src_device,
        .partition = r->partition,
        .node = r->node,
        .n_nodes = r->n_nodes,
        .name = intern(p, r->name),
        .variant = intern(p, r->variant),
        .backend = intern(p, r->backend),
        .label = intern(p, r->label),
        .run = r->run,
        .start_ns = r->start_ns,
        .wall_ns = r->wall_ns,
        .device_ns = r->device_ns,
        .bytes = r->bytes,
        .n_tokens = r->n_tokens,
        .n_kv = r->n_kv,
    };
    p->n_records++;
    switch (r->kind) {
    case BST_PROFILE_NODE:
        p->n_nodes++;
        p->node_ns += r->wall_ns;
        aggregate(p, &ev);
        if (p->in_run)
            add_to_piece(p, &ev);
        break;
    case BST_PROFILE_PARTITION:
        close_piece(p);
        p->n_parts++;
        p->part_ns += r->wall_ns;
        break;
    default:
        p->n_copies++;
        p->copy_ns += r->wall_ns;
        p->copy_bytes += r->bytes;
        break;
    }
    if (p->n_ev >= BENCH_PROFILE_MAX_EVENTS) {
        p->dropped++;
        return;
    }
    if (!bench_grow((void **)&p->ev, &p->cap_ev, p->n_ev + 1, sizeof *p->ev)) {
        p->oom = true;
        p->dropped++;
        return;
    }
    p->ev[p->n_ev++] = ev;
}

/* Partition records aggregate only when no node record came (BST_PROFILE_PARTITIONS): then the
 * summary ranks partitions, keyed by program label. */
static void aggregate_partitions(bench_profile *p)
{
    if (p->n_nodes > 0 || p->n_keys > 0)
        return;
    for (size_t i = 0; i < p->n_ev; i++)
        if (p->ev[i].kind == BST_PROFILE_PARTITION) {
            prof_event ev = p->ev[i];
            char name[96];
            snprintf(name, sizeof name, "partition %u of %s", ev.partition,
                     ev.label[0] ? ev.label : "program");
            ev.name = intern_ex(p, name, false);
            ev.variant = intern(p, "");
            aggregate(p, &ev);
        }
}

static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

static const char *cat_name(uint8_t kind)
{
    return kind == BST_PROFILE_NODE ? "node" : kind == BST_PROFILE_PARTITION ? "partition"
                                                                             : "copy";
}

bst_status bench_profile_write_trace(const bench_profile *p, const char *path, bench_error *e)
{
    if (p->oom)
        return bench_fail(e, BST_ERR_OUT_OF_MEMORY, "profile: out of memory collecting records");
    FILE *f = fopen(path, "w");
    if (!f)
        return bench_fail(e, BST_ERR_IO, "cannot write the profile '%s'", path);
    uint64_t t0 = UINT64_MAX;
    for (size_t i = 0; i < p->n_ev; i++)
        if (p->ev[i].start_ns < t0)
            t0 = p->ev[i].start_ns;
    fprintf(f, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"tool\":\"bastion\",\"version\":");
    put_json_string(f, bst_version());
    fprintf(f, ",\"records\":%" PRIu64 ",\"dropped_events\":%" PRIu64 "},\n\"traceEvents\":[",
            p->n_records, p->dropped);
    bool first = true;
    for (uint32_t l = 0; l < p->n_lanes; l++) {
        fprintf(f, "%s\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":0,"
                   "\"args\":{\"name\":",
                first ? "" : ",", l + 1);
        put_json_string(f, p->lanes[l].name);
        fprintf(f, "}}");
        first = false;
        for (uint32_t d = 0; d < p->lanes[l].n_devices; d++) {
            fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%u,"
                       "\"args\":{\"name\":",
                    l + 1, d);
            put_json_string(f, p->lanes[l].device_names[d]);
            fprintf(f, "}}");
        }
    }
    for (size_t i = 0; i < p->n_ev; i++) {
        const prof_event *ev = &p->ev[i];
        fprintf(f, "%s\n{\"name\":", first ? "" : ",");
        first = false;
        put_json_string(f, ev->name);
        fprintf(f, ",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%u,\"tid\":%u,"
                   "\"args\":{\"program\":",
                cat_name(ev->kind), (double)(ev->start_ns - t0) / 1e3,
                (double)ev->wall_ns / 1e3, ev->pid, ev->device);
        put_json_string(f, ev->label);
        fprintf(f, ",\"run\":%" PRIu64 ",\"partition\":%u", ev->run, ev->partition);
        if (ev->kind == BST_PROFILE_NODE) {
            fprintf(f, ",\"node\":%u,\"variant\":", ev->node);
            put_json_string(f, ev->variant);
        }
        if (ev->kind == BST_PROFILE_PARTITION)
            fprintf(f, ",\"n_nodes\":%u", ev->n_nodes);
        if (ev->kind == BST_PROFILE_COPY)
            fprintf(f, ",\"src_device\":%u", ev->src_device);
        fprintf(f, ",\"backend\":");
        put_json_string(f, ev->backend);
        fprintf(f, ",\"device\":%u,\"bytes\":%" PRIu64 ",\"n_tokens\":%" PRId64
                   ",\"n_kv\":%" PRId64,
                ev->device, ev->bytes, ev->n_tokens, ev->n_kv);
        if (ev->device_ns > 0)
            fprintf(f, ",\"device_us\":%.3f", (double)ev->device_ns / 1e3);
        fprintf(f, "}}");
    }
    fprintf(f, "\n]}\n");
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    return ok ? BST_OK : bench_fail(e, BST_ERR_IO, "writing the profile '%s' failed", path);
}

static int by_time(const void *a, const void *b)
{
    const prof_key *x = a, *y = b;
    return x->wall_ns < y->wall_ns ? 1 : x->wall_ns > y->wall_ns ? -1 : 0;
}

static int work_by_time(const void *a, const void *b)
{
    const prof_work *x = a, *y = b;
    return x->wall_ns < y->wall_ns ? 1 : x->wall_ns > y->wall_ns ? -1 : 0;
}

static bool same_family(const prof_work *a, const prof_work *b)
{
    return a->name == b->name && a->variant == b->variant && a->backend == b->backend &&
           a->nodes == b->nodes && a->n_tokens == b->n_tokens;
}

/* A family of pieces (same op, kernel, backend, node count and tokens) in more than this many
 * sizes has no fixed shape (attention reads a KV cache that grows every step): it becomes one row
 * whose bytes are 0 ("varies") and whose GB/s is over all its pieces. */
#define WORK_MAX_SIZES 4

/* x's piece times after w's (before w->calls grows by x's); x's list is freed. The merged row
 * keeps none when either had lost its list or memory runs out. */
static void merge_call_times(bench_profile *p, prof_work *w, prof_work *x)
{
    const bool both = w->call_ns && x->call_ns;
    if (both && bench_grow((void **)&w->call_ns, &w->cap_call_ns, w->calls + x->calls,
                           sizeof *w->call_ns)) {
        memcpy(w->call_ns + w->calls, x->call_ns, x->calls * sizeof *x->call_ns);
    } else {
        p->oom = p->oom || both;
        free(w->call_ns);
        w->call_ns = NULL;
        w->cap_call_ns = 0;
    }
    free(x->call_ns);
    x->call_ns = NULL;
}

/* Merges each family of more than WORK_MAX_SIZES sizes into its first row. */
static void merge_varying(bench_profile *p)
{
    for (size_t i = 0; i < p->n_work; i++) {
        size_t sizes = 0;
        for (size_t j = i; j < p->n_work; j++)
            sizes += same_family(&p->work[i], &p->work[j]);
        if (sizes <= WORK_MAX_SIZES)
            continue;
        prof_work *w = &p->work[i];
        size_t kept = i + 1;
        for (size_t j = i + 1; j < p->n_work; j++) {
            if (same_family(w, &p->work[j])) {
                merge_call_times(p, w, &p->work[j]);
                w->calls += p->work[j].calls;
                w->wall_ns += p->work[j].wall_ns;
                w->bytes_all += p->work[j].bytes_all;
            } else {
                p->work[kept++] = p->work[j];
            }
        }
        w->bytes = 0;
        p->n_work = kept;
    }
}

/* The work rows as the summary shows them: the last piece in, varying families merged, by total
 * time. Idempotent. */
static void settle_work(bench_profile *p)
{
    close_piece(p);
    merge_varying(p);
    qsort(p->work, p->n_work, sizeof *p->work, work_by_time);
}

/* A piece is rated against a same-size read when it streams its bytes from memory: a decode
 * step's (a weight-bound matmul reads its weight once per token, and so does a fused FFN) of at
 * least this many bytes. A smaller piece's data was just written by the piece before it and is
 * still in the caches, so a cold read of it is no yardstick. */
#define WORK_READ_MIN_BYTES 65536u
#define WORK_READ_MAX_TOKENS 8

bst_status bench_profile_rate_reads(bench_profile *p, uint64_t llc_bytes, uint32_t threads,
                                    const bench_budget *budget, bench_error *e)
{
    if (!p->in_run)
        return BST_OK;
    settle_work(p);
    for (size_t i = 0; i < p->n_work; i++) {
        prof_work *w = &p->work[i];
        if (w->bytes < WORK_READ_MIN_BYTES || w->n_tokens > WORK_READ_MAX_TOKENS)
            continue;
        const uint32_t copies = llc_bytes ? bench_cold_copies(w->bytes, llc_bytes) : 1;
        bench_read rd;
        bst_status st = bench_read_measure(w->bytes, copies, threads, budget, &rd, e);
        if (st == BST_OK && rd.measured && rd.gbs > 0)
            w->read_ns = (double)w->bytes / rd.gbs;
        bench_timing_free(&rd.timing);
        if (st != BST_OK)
            return st;
    }
    return BST_OK;
}

/* In-run only: the top_n pieces of work (prof_work) by total time. */
static void work_summary(bench_profile *p, FILE *out, uint32_t top_n)
{
    if (!p->in_run)
        return;
    settle_work(p);
    if (!p->n_work)
        return;
    uint64_t total = 0;
    for (size_t i = 0; i < p->n_work; i++)
        total += p->work[i].wall_ns;
    size_t shown = top_n < p->n_work ? top_n : p->n_work;
    fprintf(out, "profile: top %zu of %zu pieces of work by total time (a node with the nodes run "
                 "as part of it, such as a group of matmuls; bytes: one piece's)\n",
            shown, p->n_work);
    fprintf(out, "  %10s %6s %8s %10s %10s %8s %6s %6s %5s %10s  %s\n", "total_ms", "share",
            "calls", "avg_us", "p50_us", "GB/s", "x_read", "tokens", "nodes", "bytes",
            "op/kernel@backend");
    bool rated = false;
    for (size_t i = 0; i < shown; i++) {
        const prof_work *w = &p->work[i];
        char bytes[24], p50[16] = "-", x_read[16] = "-";
        if (w->bytes)
            snprintf(bytes, sizeof bytes, "%" PRIu64, w->bytes);
        else
            snprintf(bytes, sizeof bytes, "%s", w->bytes_all ? "varies" : "0");
        bench_stats st;
        bench_error e;
        const bool known = w->call_ns && w->calls <= UINT32_MAX &&
                           bench_stats_compute(w->call_ns, (uint32_t)w->calls, &st, &e) == BST_OK;
        if (known)
            snprintf(p50, sizeof p50, "%.2f", st.median_ns / 1e3);
        if (known && w->read_ns > 0 && st.median_ns > 0)
            snprintf(x_read, sizeof x_read, "%.2f", w->read_ns / st.median_ns);
        rated = rated || w->read_ns > 0;
        fprintf(out,
                "  %10.3f %5.1f%% %8" PRIu64 " %10.2f %10s %8.2f %6s %6" PRId64
                " %5u %10s  %s%s%s@%s\n",
                (double)w->wall_ns / 1e6, total ? 100.0 * (double)w->wall_ns / (double)total : 0.0,
                w->calls, (double)w->wall_ns / (double)w->calls / 1e3, p50,
                w->wall_ns ? (double)w->bytes_all / (double)w->wall_ns : 0.0, x_read, w->n_tokens,
                w->nodes, bytes, w->name, w->variant[0] ? "/" : "", w->variant, w->backend);
    }
    /* The median, not the average: a call the machine preempts is not the kernel's (a decode
     * step's head took 6.07 and 1.61 ms in two calls of 129, its median 0.59 ms: the average
     * came out 6-9% above it). */
    if (rated)
        fprintf(out, "profile: x_read: a same-size cold read's time for one piece's bytes "
                     "(measured after the run, as bench ops does) over the piece's median "
                     "(p50_us)\n");
}

void bench_profile_summary(bench_profile *p, FILE *out, uint32_t top_n)
{
    aggregate_partitions(p);
    qsort(p->keys, p->n_keys, sizeof *p->keys, by_time);
    uint64_t total = 0;
    for (size_t i = 0; i < p->n_keys; i++)
        total += p->keys[i].wall_ns;
    bool nodes = p->n_nodes > 0;
    size_t shown = top_n < p->n_keys ? top_n : p->n_keys;
    fprintf(out, "profile: top %zu of %zu %s by total time (%s)\n", shown, p->n_keys,
            nodes ? "op/kernel pairs" : "partitions",
            !nodes      ? "wall clock of each partition"
            : p->in_run ? "each node's time inside its partition's run, by the backend's clock"
                        : "wall clock of each node run alone");
    fprintf(out, "  %10s %6s %8s %10s %10s %8s  %s\n", "total_ms", "share", "calls", "avg_us",
            "device_ms", "GB/s", nodes ? "op/kernel@backend" : "partition@backend");
    for (size_t i = 0; i < shown; i++) {
        const prof_key *k = &p->keys[i];
        char dev[32];
        if (k->device_all)
            snprintf(dev, sizeof dev, "%.3f", (double)k->device_ns / 1e6);
        else
            snprintf(dev, sizeof dev, "-");
        double gbs = k->wall_ns ? (double)k->bytes / (double)k->wall_ns : 0.0;
        fprintf(out, "  %10.3f %5.1f%% %8" PRIu64 " %10.2f %10s %8.2f  %s%s%s@%s\n",
                (double)k->wall_ns / 1e6, total ? 100.0 * (double)k->wall_ns / (double)total : 0.0,
                k->calls, k->calls ? (double)k->wall_ns / (double)k->calls / 1e3 : 0.0, dev, gbs,
                k->name, k->variant[0] ? "/" : "", k->variant, k->backend);
    }
    fprintf(out, "profile: %" PRIu64 " partition runs %.3f ms, %" PRIu64 " node runs %.3f ms, %"
                 PRIu64 " copies %.3f ms (%" PRIu64 " bytes); %zu trace events",
            p->n_parts, (double)p->part_ns / 1e6, p->n_nodes, (double)p->node_ns / 1e6,
            p->n_copies, (double)p->copy_ns / 1e6, p->copy_bytes, p->n_ev);
    if (p->dropped)
        fprintf(out, ", %" PRIu64 " dropped past %u", p->dropped, BENCH_PROFILE_MAX_EVENTS);
    fprintf(out, "\n");
    work_summary(p, out, top_n);
}

bool bench_profile_parse_level(const char *text, bst_profile_level *out)
{
    if (strcmp(text, "nodes") == 0)
        *out = BST_PROFILE_NODES;
    else if (strcmp(text, "nodes-in-run") == 0)
        *out = BST_PROFILE_NODES_IN_RUN;
    else if (strcmp(text, "partitions") == 0)
        *out = BST_PROFILE_PARTITIONS;
    else
        return false;
    return true;
}
