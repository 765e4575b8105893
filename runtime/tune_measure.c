/*
 * runtime/tune_measure.c — times one node of a program on one (device, kernel variant), and a
 * copy between two devices, for kernel selection (runtime/tune_place.c).
 *
 * The node is compiled alone as a one-node partition at the plugin ABI (as bench/bench_ops.c
 * does), at the program's bound shapes, with its own device buffers: inputs filled with
 * pseudo-random bytes that decode to finite, normal, small values in every float and block
 * format (every byte in 0x30..0x3B), except i32 inputs (row indices, positions), which are zero
 * so that every index is in range. Wall clock around execute includes launch and
 * synchronization, as the model pays them. A weight input is read cache-cold, as in a decode
 * step: the node rotates through prepared copies of the weight that together hold four times
 * the last-level cache (sysfs), at most MAX_COPIES of them.
 *
 * Budget per candidate: one warm-up call, then calls until MAX_SAMPLES samples or
 * BUDGET_NS of wall time (at least MIN_SAMPLES); the median is kept. A candidate whose warm-up
 * exceeds the caller's cutoff (a multiple of the best time so far) stops there, or after one
 * more call that exceeds it too when the warm-up was short (RETRY_BELOW_NS).
 */
#include "runtime/tune.h"

#include "graph/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A warm-up that exceeds the caller's cutoff but not this gets one timed call before the
 * candidate is dropped: a first call carries one-time costs of up to a few milliseconds (the
 * pool's workers fell asleep during this candidate's set-up, and a VM wakes an idle vCPU
 * slowly; first-touch page faults). The default model's q4_1 576 x 576 decode matmul lost
 * variants that way, at 1.6-6.3 ms warm-ups against 4-6 us calls. A longer warm-up is a slow
 * kernel: no second call. */
#define RETRY_BELOW_NS 20000000ull
#define MIN_SAMPLES 3u
#define MAX_SAMPLES 15u
#define BUDGET_NS 40000000ull
#define MAX_COPIES 16u
#define MAX_ROTATION_BYTES (512ull << 20)
#define MAX_MEASURE_BYTES (1ull << 31)
#define N_BIND (BST_MAX_INPUTS + 1)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bsti_tune_desc_span(const bsti_type *t)
{
    uint64_t whole = 0;
    if (bsti_type_nbytes(t, &whole) != BST_OK)
        return UINT64_MAX;
    if (t->rank == 0)
        return whole;
    bsti_type row = *t;
    row.rank = 1;
    row.shape[0] = t->shape[t->rank - 1];
    row.sym[0] = BST_SYM_NONE;
    bsti_type_set_contiguous(&row);
    uint64_t span = 0;
    if (bsti_type_nbytes(&row, &span) != BST_OK)
        return UINT64_MAX;
    for (uint32_t i = 0; i < t->rank && i < BST_MAX_DIMS; i++) {
        if (t->shape[i] <= 1)
            continue;
        uint64_t st = (uint64_t)(t->strides[i] < 0 ? -t->strides[i] : t->strides[i]);
        uint64_t ext = (uint64_t)(t->shape[i] - 1);
        if (st && ext > (UINT64_MAX / 4) / st)
            return UINT64_MAX;
        span += ext * st;
        if (span > (UINT64_MAX / 4))
            return UINT64_MAX;
    }
    return span > whole ? span : whole;
}

static uint64_t llc_bytes(void)
{
    uint64_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        unsigned long long v = 0;
        char unit = 0;
        if (fscanf(f, "%llu%c", &v, &unit) >= 1) {
            if (unit == 'K')
                v <<= 10;
            else if (unit == 'M')
                v <<= 20;
            if (v > best && v < (1ull << 34))
                best = v;
        }
        fclose(f);
    }
    return best ? best : (32ull << 20); /* unknown: assume a large cache, rotate more */
}

static void fill_random(uint8_t *buf, uint64_t n, bst_dtype dtype, uint64_t seed)
{
    if (dtype == BST_DTYPE_I32) {
        memset(buf, 0, (size_t)n);
        return;
    }
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) { /* eight bytes per step: weights are tens of MB */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t w = (x & 0x0B0B0B0B0B0B0B0Bull) | 0x3030303030303030ull;
        memcpy(buf + i, &w, 8);
    }
    for (; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)(0x30u | (x & 0x0Bu));
    }
}

/* Everything one measurement owns. */
typedef struct bench_state {
    const bst_backend_api *api;
    void *dev;
    void *buf[N_BIND];
    bool owned[N_BIND];
    void **wcopies;
    uint8_t **whost;
    uint32_t n_copies;
    int32_t weight; /* input index of the rotated weight, -1 for none */
    uint64_t weight_cost; /* what prepare_weight said the first copy costs (0: not prepared) */
    void *exe;
} bench_state;

static void release(bench_state *s)
{
    if (s->exe)
        s->api->executable_free(s->dev, s->exe);
    for (uint32_t i = 0; i < N_BIND; i++)
        if (s->buf[i] && s->owned[i])
            s->api->buffer_free(s->dev, s->buf[i]);
    for (uint32_t k = 0; s->wcopies && k < s->n_copies; k++)
        if (s->wcopies[k])
            s->api->buffer_free(s->dev, s->wcopies[k]);
    for (uint32_t k = 0; s->whost && k < s->n_copies; k++)
        free(s->whost[k]);
    free(s->wcopies);
    free(s->whost);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bst_status upload(bench_state *s, uint32_t i, uint64_t size, bst_dtype dtype)
{
    uint8_t *host = malloc(size ? (size_t)size : 1);
    if (!host)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: host memory for an input (%llu bytes)",
                         (unsigned long long)size);
    fill_random(host, size, dtype, i + 1);
    bst_status st = s->api->buffer_alloc(s->dev, size ? size : 1, &s->buf[i]);
    if (st == BST_OK) {
        s->owned[i] = true;
        st = s->api->buffer_write(s->dev, s->buf[i], 0, host, size);
    }
    free(host);
    return st;
}

/* Prepares `copies` copies of weight input w (own host memory each: a unified-memory device may
 * keep using it in place). */
static bst_status upload_weight(bench_state *s, uint32_t w, bst_tensor_desc *desc, uint64_t size,
                                bst_dtype dtype, uint32_t copies)
{
    s->wcopies = calloc(copies, sizeof *s->wcopies);
    s->whost = calloc(copies, sizeof *s->whost);
    if (!s->wcopies || !s->whost)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: out of memory");
    s->n_copies = copies;
    uint32_t layout = BST_LAYOUT_NATIVE;
    for (uint32_t k = 0; k < copies; k++) {
        s->whost[k] = malloc((size_t)size);
        if (!s->whost[k])
            return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: host memory for a weight copy");
        /* Copies need their own memory, not their own values. */
        if (k == 0)
            fill_random(s->whost[k], size, dtype, 100);
        else
            memcpy(s->whost[k], s->whost[0], (size_t)size);
        bst_status st;
        if (s->api->prepare_weight) {
            uint64_t cost = 0;
            uint32_t got = BST_LAYOUT_NATIVE;
            st = s->api->prepare_weight(s->dev, desc, s->whost[k], size, &s->wcopies[k], &cost,
                                        &got);
            if (st == BST_OK && k == 0)
                s->weight_cost = cost;
            if (st == BST_OK && k > 0 && got != layout)
                st = bsti_fail(BST_ERR_BACKEND, "prepare_weight gave two layouts for one weight");
            layout = got;
        } else {
            st = s->api->buffer_alloc(s->dev, size, &s->wcopies[k]);
            if (st == BST_OK)
                st = s->api->buffer_write(s->dev, s->wcopies[k], 0, s->whost[k], size);
        }
        if (st != BST_OK)
            return st;
    }
    desc->layout = layout;
    s->buf[w] = s->wcopies[0];
    return BST_OK;
}

bst_status bsti_tune_measure_node(bst_program *p, uint32_t id, uint32_t d, uint32_t variant,
                                  uint64_t cutoff_ns, uint64_t *out_ns, uint32_t *out_samples)
{
    *out_ns = 0;
    *out_samples = 0;
    const bst_graph *g = p->g;
    const bsti_node *n = &g->nodes[id];
    bench_state s;
    memset(&s, 0, sizeof s);
    s.weight = -1;
    bst_status st = bsti_device_get(p->ctx, d, &s.dev);
    if (st != BST_OK)
        return st;
    s.api = &p->ctx->devices[d].plugin->api;
    bsti_desc_storage ds;
    bsti_prog_fill_desc(g, id, &ds);
    ds.node.variant = variant;
    uint32_t n_in = ds.node.n_inputs;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n_in && st == BST_OK; i++) {
        const bsti_node *in = &g->nodes[n->inputs[i]];
        uint64_t size = bsti_tune_desc_span(&in->type);
        if (size > MAX_MEASURE_BYTES || total + size > MAX_MEASURE_BYTES) {
            st = bsti_fail(BST_ERR_OVERFLOW, "tuning: input %u of %%%u is too large to measure",
                           i, id);
            break;
        }
        total += size;
        ds.in[i].binding = i;
        uint32_t root = p->root[n->inputs[i]];
        if (g->nodes[root].op == BST_OP_WEIGHT && s.weight < 0 && root == n->inputs[i]) {
            uint64_t llc = llc_bytes();
            uint64_t copies = size ? (4 * llc + size - 1) / size : 1;
            if (copies > MAX_COPIES)
                copies = MAX_COPIES;
            while (copies > 1 && copies * size > MAX_ROTATION_BYTES)
                copies--;
            s.weight = (int32_t)i;
            st = upload_weight(&s, i, &ds.in[i], size, in->type.dtype, (uint32_t)copies);
            if (st == BST_OK && s.weight_cost)
                bsti_tune_note_weight_cost(p->ctx, d, (uint32_t)in->type.dtype, size,
                                           s.weight_cost);
        } else {
            st = upload(&s, i, size, in->type.dtype);
        }
    }
    uint64_t out_size = bsti_tune_desc_span(&n->type);
    if (st == BST_OK && out_size > MAX_MEASURE_BYTES)
        st = bsti_fail(BST_ERR_OVERFLOW, "tuning: output of %%%u is too large to measure", id);
    if (st == BST_OK) {
        ds.out.binding = n_in;
        st = s.api->buffer_alloc(s.dev, out_size ? out_size : 1, &s.buf[n_in]);
        s.owned[n_in] = st == BST_OK;
    }
    if (st == BST_OK) {
        const bst_node_desc *nodes[1] = {&ds.node};
        bst_partition_desc part;
        memset(&part, 0, sizeof part);
        part.struct_size = (uint32_t)sizeof part;
        part.n_nodes = 1;
        part.nodes = nodes;
        part.n_bindings = n_in + 1;
        st = s.api->compile(s.dev, &part, &s.exe);
        if (st != BST_OK)
            s.exe = NULL;
    }
    bst_run_params params;
    memset(&params, 0, sizeof params);
    params.struct_size = (uint32_t)sizeof params;
    params.n_tokens = p->sym_bound[BST_SYM_N_TOKENS] > 0 ? p->sym_bound[BST_SYM_N_TOKENS] : 1;
    if (bsti_tune_plan_kind() == BSTI_PLAN_DECODE)
        params.n_tokens = 1; /* the decode plan's shape: kernels honour run-time extents */
    params.n_kv = p->sym_bound[BST_SYM_N_KV] > 0 ? p->sym_bound[BST_SYM_N_KV] : 1;
    params.pos = 0;
    uint64_t samples[MAX_SAMPLES];
    uint32_t count = 0;
    uint64_t start = now_ns();
    if (st == BST_OK)
        st = s.api->execute(s.dev, s.exe, s.buf, n_in + 1, &params); /* warm-up */
    uint64_t warm = now_ns() - start;
    bool lost = st == BST_OK && cutoff_ns && warm > cutoff_ns;
    if (lost && warm < RETRY_BELOW_NS) { /* one timed call decides, not the warm-up */
        if (s.weight >= 0)
            s.buf[s.weight] = s.wcopies[s.n_copies - 1];
        uint64_t t0 = now_ns();
        st = s.api->execute(s.dev, s.exe, s.buf, n_in + 1, &params);
        warm = now_ns() - t0;
        lost = st == BST_OK && warm > cutoff_ns;
    }
    if (lost)
        samples[count++] = warm ? warm : 1;
    start = now_ns();
    for (uint32_t k = 0; st == BST_OK && !lost && count < MAX_SAMPLES; k++) {
        if (s.weight >= 0)
            s.buf[s.weight] = s.wcopies[(k + 1) % s.n_copies];
        uint64_t t0 = now_ns();
        st = s.api->execute(s.dev, s.exe, s.buf, n_in + 1, &params);
        uint64_t t1 = now_ns();
        samples[count++] = t1 > t0 ? t1 - t0 : 1;
        if (count >= MIN_SAMPLES && t1 - start > BUDGET_NS)
            break;
    }
    if (s.weight >= 0)
        s.buf[s.weight] = NULL; /* the copies are freed through wcopies */
    release(&s);
    if (st != BST_OK)
        return bsti_prog_backend_error(p, d, st, "measuring %%%u (%s) with variant %u", id,
                                       bst_op_name(n->op) ? bst_op_name(n->op) : "?", variant);
    qsort(samples, count, sizeof samples[0], cmp_u64);
    *out_ns = samples[count / 2];
    *out_samples = count;
    return BST_OK;
}

bst_status bsti_tune_measure_copy(bst_program *p, uint32_t src, uint32_t dst, uint64_t bytes,
                                  uint64_t *out_ns)
{
    *out_ns = 0;
    if (bytes == 0 || bytes > MAX_MEASURE_BYTES)
        return bsti_fail(BST_ERR_OVERFLOW, "tuning: copy of %llu bytes is out of range",
                         (unsigned long long)bytes);
    void *sdev = NULL, *ddev = NULL;
    bst_status st = bsti_device_get(p->ctx, src, &sdev);
    if (st == BST_OK)
        st = bsti_device_get(p->ctx, dst, &ddev);
    if (st != BST_OK)
        return st;
    const bst_backend_api *sa = &p->ctx->devices[src].plugin->api;
    const bst_backend_api *da = &p->ctx->devices[dst].plugin->api;
    uint8_t *host = malloc((size_t)bytes);
    void *sb = NULL, *db = NULL;
    if (!host)
        return bsti_fail(BST_ERR_OUT_OF_MEMORY, "tuning: host memory for a copy");
    fill_random(host, bytes, BST_DTYPE_F32, 7);
    st = sa->buffer_alloc(sdev, bytes, &sb);
    if (st == BST_OK)
        st = sa->buffer_write(sdev, sb, 0, host, bytes);
    if (st == BST_OK)
        st = da->buffer_alloc(ddev, bytes, &db);
    uint64_t samples[5];
    uint32_t count = 0;
    for (uint32_t k = 0; k < 6 && st == BST_OK; k++) {
        uint64_t t0 = now_ns();
        st = sa->buffer_read(sdev, sb, 0, host, bytes);
        if (st == BST_OK)
            st = da->buffer_write(ddev, db, 0, host, bytes);
        uint64_t t1 = now_ns();
        if (k > 0) /* the first is a warm-up */
            samples[count++] = t1 > t0 ? t1 - t0 : 1;
    }
    if (sb)
        sa->buffer_free(sdev, sb);
    if (db)
        da->buffer_free(ddev, db);
    free(host);
    if (st != BST_OK)
        return bsti_prog_backend_error(p, dst, st, "measuring a copy of %llu bytes",
                                       (unsigned long long)bytes);
    qsort(samples, count, sizeof samples[0], cmp_u64);
    *out_ns = samples[count / 2];
    return BST_OK;
}

uint64_t bsti_tune_isa_mask(void)
{
    /* FNV-1a over the first "flags" line: any ISA difference (avx2, avx512*, amx) changes it. */
    uint64_t h = 0xcbf29ce484222325ull;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return h;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0 && strncmp(line, "Features", 8) != 0)
            continue;
        for (const char *c = line; *c && *c != '\n'; c++) {
            h ^= (uint8_t)*c;
            h *= 0x100000001b3ull;
        }
        break;
    }
    fclose(f);
    return h;
}
