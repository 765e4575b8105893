/*
 * tools/conformance/backend_ops_harness.c — runs hand-built one-node partitions on every
 * registered device with guard bytes around every tensor, and has the checker
 * (backend_ops_check.c) judge the results. See backend_ops_harness.h.
 *
 * Why the ABI level and not bst_program: the program layer would hide what a kernel does to
 * the bytes around its output (its buffers are planned and packed), and would place each node on
 * one backend only. Here every device gets the same node, and every byte of every buffer is
 * checked after the run.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "backend_ops_harness.h"

#include "backend_ops_check.h"
#include "graph/quant.h"
#include "oracle.h"

#include <bastion/bastion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEVICES 64
#define MAX_VARIANTS 16
#define MAX_SUMMARY 2048

/* --- harness failures ---------------------------------------------------------------------- */

/* The pending harness error (see the header): the first failure since it was last cleared. */
static struct {
    bool set;
    char msg[256];
} g_err;
static uint64_t g_allocs, g_fail_at; /* allocations made; the one that fails (0: none) */

void harness_fail(const char *fmt, ...)
{
    if (g_err.set)
        return;
    g_err.set = true;
    int len = snprintf(g_err.msg, sizeof g_err.msg, "backend_ops harness: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err.msg + len, sizeof g_err.msg - (size_t)len, fmt, ap);
    va_end(ap);
}

/* Moves the pending error into buf (n bytes) and clears it. */
static void take_error(char *buf, size_t n)
{
    snprintf(buf, n, "%s", g_err.set ? g_err.msg : "backend_ops harness: unknown failure");
    g_err.set = false;
}

bool bo_ok(void) { return !g_err.set; }

const char *bo_error(void) { return g_err.set ? g_err.msg : NULL; }

void bo_fail_alloc(uint64_t nth) { g_fail_at = nth ? g_allocs + nth : 0; }

uint64_t bo_alloc_count(void) { return g_allocs; }

void *bo_alloc(size_t count, size_t size, const char *what)
{
    bool injected = ++g_allocs == g_fail_at;
    void *p = NULL;
    if (!injected && (size == 0 || count <= SIZE_MAX / size))
        p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        harness_fail("cannot allocate %s (%zu x %zu bytes)%s", what, count, size,
                     injected ? " [injected by bo_fail_alloc]" : "");
    return p;
}

/* --- rng ----------------------------------------------------------------------------------- */

void bo_rng_seed(bo_rng *r, uint64_t seed) { r->state = seed * 0x9E3779B97F4A7C15ull + 1u; }

uint64_t bo_rng_next(bo_rng *r)
{
    /* splitmix64 */
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double bo_rng_uniform(bo_rng *r, double lo, double hi)
{
    double u = (double)(bo_rng_next(r) >> 40) * (1.0 / 16777216.0);
    return (double)(float)(lo + (hi - lo) * u);
}

int32_t bo_rng_int(bo_rng *r, int32_t lo, int32_t hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - (int64_t)lo + 1);
    return (int32_t)((int64_t)lo + (int64_t)(bo_rng_next(r) % span));
}

/* --- dtype geometry ------------------------------------------------------------------------ */

uint32_t dt_block(bst_dtype t)
{
    uint32_t bs = bst_dtype_block_size(t);
    if (!bs) {
        harness_fail("dtype %d has no element geometry", (int)t);
        return 1;
    }
    return bs;
}

uint32_t dt_bytes(bst_dtype t) { return bst_dtype_block_bytes(t); }

static bool dt_is_block(bst_dtype t) { return dt_block(t) > 1; }

/* --- tensors ------------------------------------------------------------------------------- */

void unravel(int64_t i, uint32_t rank, const int64_t *shape, int64_t *coord)
{
    for (uint32_t k = rank; k-- > 0;) {
        coord[k] = i % shape[k];
        i /= shape[k];
    }
}

static int64_t ravel(uint32_t rank, const int64_t *shape, const int64_t *coord)
{
    int64_t i = 0;
    for (uint32_t k = 0; k < rank; k++)
        i = i * shape[k] + coord[k];
    return i;
}

int64_t bo_tensor_numel(const bo_tensor *t) { return oracle_numel(t->rank, t->shape); }

/* Byte offset (within the region) of the element at `coord`; for block types, of its block. */
static uint64_t elem_offset(const bo_tensor *t, const int64_t *coord)
{
    int64_t off = 0;
    for (uint32_t d = 0; d < t->rank; d++) {
        int64_t c = coord[d];
        if (d == t->rank - 1)
            c /= dt_block(t->dtype);
        off += c * t->strides[d];
    }
    return (uint64_t)off;
}

void bo_tensor_view(bo_tensor *t, bst_dtype dtype, uint32_t rank, const int64_t *shape,
                    const uint32_t *perm, int64_t pad)
{
    memset(t, 0, sizeof *t);
    t->dtype = dtype; /* what a failure message describes, even when nothing is allocated */
    if (rank > BST_MAX_DIMS) {
        harness_fail("a tensor of rank %u (at most %d)", rank, BST_MAX_DIMS);
        return;
    }
    t->rank = rank;
    for (uint32_t i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    if (!bo_ok())
        return;
    uint32_t bs = dt_block(dtype), bb = dt_bytes(dtype);
    int64_t pshape[BST_MAX_DIMS] = {0}, pstr[BST_MAX_DIMS] = {0};
    for (uint32_t i = 0; i < rank; i++)
        pshape[perm ? perm[i] : i] = shape[i];
    if (bs > 1 && rank > 0 && ((perm && perm[rank - 1] != rank - 1) || shape[rank - 1] % bs)) {
        harness_fail("a %s tensor whose innermost dim is permuted or holds a partial block",
                     bst_dtype_name(dtype));
        return;
    }
    int64_t total = bb;
    if (rank > 0) {
        total = (pshape[rank - 1] / bs + pad) * bb;
        pstr[rank - 1] = bb;
        for (uint32_t d = rank - 1; d-- > 0;) {
            pstr[d] = total;
            total *= pshape[d];
        }
    }
    for (uint32_t i = 0; i < rank; i++)
        t->strides[i] = pstr[perm ? perm[i] : i];
    t->span = (uint64_t)total;
    t->bytes = bo_alloc((size_t)t->span, 1, "a tensor's bytes");
    if (!t->bytes)
        return;
    memset(t->bytes, 0xFF, (size_t)t->span);
    size_t n = (size_t)bo_tensor_numel(t);
    if (dtype == BST_DTYPE_I32)
        t->ids = bo_alloc(n, sizeof *t->ids, "a tensor's ids");
    else
        t->val = bo_alloc(n, sizeof *t->val, "a tensor's values");
}

void bo_tensor_contig(bo_tensor *t, bst_dtype dtype, uint32_t rank, const int64_t *shape)
{
    bo_tensor_view(t, dtype, rank, shape, NULL, 0);
}

void bo_tensor_free(bo_tensor *t)
{
    free(t->bytes);
    free(t->val);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* Encodes one value of a plain float dtype; returns the value the bytes mean. */
double encode_plain(bst_dtype dt, double v, uint8_t *dst)
{
    switch (dt) {
    case BST_DTYPE_F32: {
        float f = (float)v;
        memcpy(dst, &f, 4);
        return (double)f;
    }
    case BST_DTYPE_F16: {
        uint16_t h = oracle_round_f16(v);
        memcpy(dst, &h, 2);
        return oracle_f16_value(h);
    }
    case BST_DTYPE_BF16: {
        uint16_t h = oracle_round_bf16(v);
        memcpy(dst, &h, 2);
        return oracle_bf16_value(h);
    }
    case BST_DTYPE_I32: {
        int32_t i = (int32_t)v;
        memcpy(dst, &i, 4);
        return (double)i;
    }
    default:
        harness_fail("cannot encode %s elements one by one", bst_dtype_name(dt));
        return 0.0;
    }
}

double decode_plain(bst_dtype dt, const uint8_t *src)
{
    switch (dt) {
    case BST_DTYPE_F32: {
        float f;
        memcpy(&f, src, 4);
        return (double)f;
    }
    case BST_DTYPE_F16: {
        uint16_t h;
        memcpy(&h, src, 2);
        return oracle_f16_value(h);
    }
    case BST_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, src, 2);
        return oracle_bf16_value(h);
    }
    case BST_DTYPE_I32: {
        int32_t i;
        memcpy(&i, src, 4);
        return (double)i;
    }
    default:
        harness_fail("cannot decode %s elements one by one", bst_dtype_name(dt));
        return 0.0;
    }
}

void bo_tensor_set(bo_tensor *t, const float *values)
{
    if (!bo_ok() || !t->bytes)
        return;
    int64_t n = bo_tensor_numel(t);
    int64_t coord[BST_MAX_DIMS];
    if (!dt_is_block(t->dtype)) {
        for (int64_t i = 0; i < n; i++) {
            unravel(i, t->rank, t->shape, coord);
            t->val[i] = encode_plain(t->dtype, (double)values[i], t->bytes + elem_offset(t, coord));
        }
        return;
    }
    int64_t k = t->shape[t->rank - 1];
    float *tmp = bo_alloc((size_t)k, sizeof *tmp, "a dequantized row");
    for (int64_t r = 0; tmp && r < n / k; r++) {
        unravel(r * k, t->rank, t->shape, coord);
        uint8_t *row = t->bytes + elem_offset(t, coord);
        if (bsti_quantize(t->dtype, values + r * k, row, k) != BST_OK ||
            bsti_dequantize(t->dtype, row, tmp, k) != BST_OK) {
            harness_fail("bsti_quantize/bsti_dequantize refused a %s row of %lld",
                         bst_dtype_name(t->dtype), (long long)k);
            break;
        }
        for (int64_t j = 0; j < k; j++)
            t->val[r * k + j] = (double)tmp[j];
    }
    free(tmp);
}

void bo_tensor_fill(bo_tensor *t, bo_rng *rng, double lo, double hi)
{
    if (!bo_ok() || !t->bytes)
        return;
    int64_t n = bo_tensor_numel(t);
    float *v = bo_alloc((size_t)n, sizeof *v, "a tensor's random values");
    if (!v)
        return;
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)bo_rng_uniform(rng, lo, hi);
    bo_tensor_set(t, v);
    free(v);
}

void bo_tensor_set_ids(bo_tensor *t, const int32_t *ids)
{
    if (t->dtype != BST_DTYPE_I32 && bo_ok())
        harness_fail("ids set on a %s tensor", bst_dtype_name(t->dtype));
    if (!bo_ok() || !t->bytes)
        return;
    int64_t n = bo_tensor_numel(t);
    int64_t coord[BST_MAX_DIMS];
    for (int64_t i = 0; i < n; i++) {
        unravel(i, t->rank, t->shape, coord);
        memcpy(t->bytes + elem_offset(t, coord), &ids[i], 4);
        t->ids[i] = ids[i];
    }
}

/* --- cases --------------------------------------------------------------------------------- */

void bo_case_init(bo_case *c, bst_op op, const char *label)
{
    g_err.set = false; /* a new case starts clean */
    memset(c, 0, sizeof *c);
    c->op = op;
    snprintf(c->dtype_label, sizeof c->dtype_label, "%s", label);
    c->alias_in = -1;
    c->n_tokens = 1;
    c->n_kv = 1;
    c->metric = BO_NMSE;
    c->tol = c->cpu_tol = 1e-7;
}

void bo_case_what(bo_case *c, const char *fmt, ...)
{
    size_t len = strlen(c->what);
    if (len + 1 >= sizeof c->what)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->what + len, sizeof c->what - len, fmt, ap);
    va_end(ap);
}

bo_tensor *bo_case_input(bo_case *c)
{
    /* Past the limit: a tensor that holds nothing (building calls do nothing once the error is
     * pending), so the caller can go on to bo_run, which reports it. */
    static bo_tensor sink;
    if (c->n_in >= BST_MAX_INPUTS) {
        harness_fail("more than %d inputs", BST_MAX_INPUTS);
        memset(&sink, 0, sizeof sink);
        return &sink;
    }
    return &c->in[c->n_in++];
}

void bo_case_output(bo_case *c, bst_dtype dtype, uint32_t rank, const int64_t *shape)
{
    bo_tensor_contig(&c->out, dtype, rank, shape);
    if (c->out.bytes)
        memset(c->out.bytes, (int)BO_PATTERN, (size_t)c->out.span);
    if (dt_is_block(dtype)) {
        c->metric = BO_QUANT;
    } else if (dtype == BST_DTYPE_F16 || dtype == BST_DTYPE_BF16) {
        c->metric = BO_ULP;
        c->tol = 1.0;
        c->cpu_tol = 0.0;
    } else if (dtype == BST_DTYPE_I32) {
        c->metric = BO_EXACT;
    }
}

static bst_attr *new_attr(bo_case *c, bst_attr_key key, bst_attr_kind kind)
{
    static bst_attr sink; /* past the limit, as bo_case_input's sink */
    bst_attr *a = &sink;
    if (c->n_attrs >= BST_MAX_ATTRS)
        harness_fail("more than %d attributes", BST_MAX_ATTRS);
    else
        a = &c->attrs[c->n_attrs++];
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->key = key;
    a->kind = kind;
    a->count = 1;
    return a;
}

void bo_case_attr_int(bo_case *c, bst_attr_key key, int64_t v)
{
    new_attr(c, key, BST_ATTR_KIND_INT)->ints[0] = v;
}

void bo_case_attr_float(bo_case *c, bst_attr_key key, double v)
{
    new_attr(c, key, BST_ATTR_KIND_FLOAT)->f = v;
}

void bo_case_attr_ints(bo_case *c, bst_attr_key key, uint32_t n, const int64_t *v)
{
    bst_attr *a = new_attr(c, key, BST_ATTR_KIND_INTS);
    if (n > BST_MAX_DIMS) {
        harness_fail("an attribute of %u ints (at most %d)", n, BST_MAX_DIMS);
        return;
    }
    a->count = n;
    for (uint32_t i = 0; i < n; i++)
        a->ints[i] = v[i];
}

int64_t bo_eff_dim(const bo_case *c, const bo_tensor *t, uint32_t d)
{
    if (t->sym[d] == BST_SYM_N_TOKENS)
        return c->n_tokens;
    if (t->sym[d] == BST_SYM_N_KV)
        return c->n_kv;
    return t->shape[d];
}

static int64_t eff_shape_of(const bo_case *c, const bo_tensor *t, int64_t *eff)
{
    int64_t n = 1;
    for (uint32_t d = 0; d < t->rank; d++) {
        eff[d] = bo_eff_dim(c, t, d);
        n *= eff[d];
    }
    return n;
}

static bool is_effective(const bo_case *c, const bo_tensor *t, const int64_t *coord)
{
    for (uint32_t d = 0; d < t->rank; d++)
        if (coord[d] >= bo_eff_dim(c, t, d))
            return false;
    return true;
}

double *bo_eff_values(const bo_case *c, const bo_tensor *t, int64_t *eff_shape)
{
    if (!bo_ok() || !t->val)
        return NULL;
    int64_t eff[BST_MAX_DIMS], coord[BST_MAX_DIMS];
    int64_t n = eff_shape_of(c, t, eff);
    double *v = bo_alloc((size_t)n, sizeof *v, "a tensor's effective values");
    if (!v)
        return NULL;
    for (int64_t k = 0; k < n; k++) {
        unravel(k, t->rank, eff, coord);
        v[k] = t->val[ravel(t->rank, t->shape, coord)];
    }
    if (eff_shape)
        memcpy(eff_shape, eff, sizeof(int64_t) * t->rank);
    return v;
}

int32_t *bo_eff_ids(const bo_case *c, const bo_tensor *t, int64_t *eff_shape)
{
    if (!bo_ok() || !t->ids)
        return NULL;
    int64_t eff[BST_MAX_DIMS], coord[BST_MAX_DIMS];
    int64_t n = eff_shape_of(c, t, eff);
    int32_t *v = bo_alloc((size_t)n, sizeof *v, "a tensor's effective ids");
    if (!v)
        return NULL;
    for (int64_t k = 0; k < n; k++) {
        unravel(k, t->rank, eff, coord);
        v[k] = t->ids[ravel(t->rank, t->shape, coord)];
    }
    if (eff_shape)
        memcpy(eff_shape, eff, sizeof(int64_t) * t->rank);
    return v;
}

void bo_case_alloc_ref(bo_case *c)
{
    size_t n = (size_t)bo_tensor_numel(&c->out);
    free(c->ref);
    free(c->expect);
    c->ref = NULL;
    c->expect = NULL;
    if (!bo_ok())
        return;
    c->ref = bo_alloc(n, sizeof *c->ref, "the expected output");
    c->expect = bo_alloc(n, 1, "the expected-element flags");
}

void bo_case_finish_ref(bo_case *c)
{
    bo_tensor *o = &c->out;
    if (!bo_ok() || !c->ref || !c->expect || !dt_is_block(o->dtype))
        return;
    int64_t k = o->shape[o->rank - 1], n = bo_tensor_numel(o);
    int64_t coord[BST_MAX_DIMS];
    free(c->ref_bytes);
    c->ref_bytes = bo_alloc((size_t)o->span, 1, "the expected output bytes");
    float *row = bo_alloc((size_t)k, sizeof *row, "an expected output row");
    if (!c->ref_bytes || !row) {
        free(row);
        return;
    }
    memset(c->ref_bytes, (int)BO_PATTERN, (size_t)o->span);
    for (int64_t r = 0; r < n / k; r++) {
        if (!c->expect[r * k])
            continue;
        for (int64_t j = 0; j < k; j++)
            row[j] = (float)c->ref[r * k + j];
        unravel(r * k, o->rank, o->shape, coord);
        if (bsti_quantize(o->dtype, row, c->ref_bytes + elem_offset(o, coord), k) != BST_OK) {
            harness_fail("bsti_quantize refused an expected %s row", bst_dtype_name(o->dtype));
            break;
        }
    }
    free(row);
}

void bo_case_set_ref(bo_case *c, const double *eff_ref)
{
    bo_case_alloc_ref(c);
    if (!bo_ok() || !eff_ref)
        return;
    int64_t eff[BST_MAX_DIMS], coord[BST_MAX_DIMS];
    int64_t n = eff_shape_of(c, &c->out, eff);
    for (int64_t k = 0; k < n; k++) {
        unravel(k, c->out.rank, eff, coord);
        int64_t i = ravel(c->out.rank, c->out.shape, coord);
        c->ref[i] = eff_ref[k];
        c->expect[i] = 1;
    }
    bo_case_finish_ref(c);
}

void bo_case_free(bo_case *c)
{
    for (uint32_t i = 0; i < c->n_in; i++)
        bo_tensor_free(&c->in[i]);
    bo_tensor_free(&c->out);
    free(c->ref);
    free(c->expect);
    free(c->ref_bytes);
    c->ref = NULL;
    c->expect = NULL;
    c->ref_bytes = NULL;
    c->n_in = 0;
}

/* --- devices ------------------------------------------------------------------------------- */

/* The harness knows devices only through what its caller registers (bo_device_add): the tests
 * register every device of a runtime context, `bastion conformance` the devices of the plugins
 * it loaded itself. So this file needs no runtime internals. */
static struct {
    bool init_done;
    void (*init)(void);
    void (*fini)(void);
    const char *(*last_error)(void);
    uint32_t n;
    void *handle[MAX_DEVICES];
    const bst_backend_api *api[MAX_DEVICES];
    char label[MAX_DEVICES][64];
    bool is_cpu[MAX_DEVICES];
    uint32_t open_failures;
} g_dev;

static void devices_init(void)
{
    if (g_dev.init_done)
        return;
    g_dev.init_done = true;
    if (g_dev.init)
        g_dev.init();
}

void bo_set_device_source(void (*init)(void), void (*fini)(void))
{
    g_dev.init = init;
    g_dev.fini = fini;
}

void bo_set_last_error(const char *(*fn)(void)) { g_dev.last_error = fn; }

static const char *last_error(void)
{
    const char *m = g_dev.last_error ? g_dev.last_error() : bst_last_error();
    return m ? m : "";
}

uint32_t bo_device_add(const bst_backend_api *api, void *handle, const char *label, bool is_cpu)
{
    if (g_dev.n == MAX_DEVICES) {
        fprintf(stderr, "backend_ops: device %s not registered: the harness holds %d devices\n",
                label, MAX_DEVICES);
        g_dev.open_failures++;
        return UINT32_MAX;
    }
    uint32_t i = g_dev.n++;
    g_dev.api[i] = api;
    g_dev.handle[i] = handle;
    g_dev.is_cpu[i] = is_cpu;
    snprintf(g_dev.label[i], sizeof g_dev.label[i], "%s", label);
    if (!handle)
        g_dev.open_failures++;
    return i;
}

uint32_t bo_device_count(void)
{
    devices_init();
    return g_dev.n;
}

void *bo_device_handle(uint32_t i)
{
    devices_init();
    return i < g_dev.n ? g_dev.handle[i] : NULL;
}

const bst_backend_api *bo_device_api(uint32_t i)
{
    devices_init();
    return i < g_dev.n ? g_dev.api[i] : NULL;
}

const char *bo_device_label(uint32_t i)
{
    devices_init();
    return i < g_dev.n ? g_dev.label[i] : "?";
}

bool bo_device_is_cpu(uint32_t i)
{
    devices_init();
    return i < g_dev.n && g_dev.is_cpu[i];
}

uint32_t bo_cpu_device(void)
{
    devices_init();
    for (uint32_t d = 0; d < g_dev.n; d++)
        if (g_dev.handle[d] && g_dev.is_cpu[d])
            return d;
    return UINT32_MAX;
}

uint32_t bo_device_open_failures(void)
{
    devices_init();
    return g_dev.open_failures;
}

void bo_shutdown(void)
{
    void (*fini)(void) = g_dev.init_done ? g_dev.fini : NULL;
    memset(&g_dev, 0, sizeof g_dev);
    g_dev.init_done = true; /* never re-create after shutdown */
    if (fini)
        fini();
}

/* --- hooks --------------------------------------------------------------------------------- */

static bo_hooks g_hooks;

void bo_set_hooks(const bo_hooks *h)
{
    if (h)
        g_hooks = *h;
    else
        memset(&g_hooks, 0, sizeof g_hooks);
}

/* --- summary ------------------------------------------------------------------------------- */

typedef enum result { R_PASS, R_FAIL, R_UNSUPPORTED, R_ERROR, R_COUNT } result;

typedef struct summary_row {
    uint32_t dev;
    bst_op op;
    char label[32];
    uint32_t n[R_COUNT];
} summary_row;

static summary_row g_rows[MAX_SUMMARY];
static uint32_t g_n_rows;
static int g_family_fails, g_family_cases, g_cpu_gaps;
static uint32_t g_rows_dropped; /* results the full summary table could not hold */
static const char *g_family;
static uint64_t g_case_no;

static void record(uint32_t dev, const bo_case *c, result r)
{
    for (uint32_t i = 0; i < g_n_rows; i++) {
        summary_row *row = &g_rows[i];
        if (row->dev == dev && row->op == c->op && strcmp(row->label, c->dtype_label) == 0) {
            row->n[r]++;
            return;
        }
    }
    if (g_n_rows == MAX_SUMMARY) {
        g_rows_dropped++;
        return;
    }
    summary_row *row = &g_rows[g_n_rows++];
    memset(row, 0, sizeof *row);
    row->dev = dev;
    row->op = c->op;
    snprintf(row->label, sizeof row->label, "%s", c->dtype_label);
    row->n[r] = 1;
}

static const char *op_name(bst_op op)
{
    const char *n = bst_op_name(op);
    return n ? n : "?";
}

void bo_family_begin(const char *name)
{
    g_family = name;
    g_family_fails = 0;
    g_family_cases = 0;
    devices_init();
}

int bo_family_end(void)
{
    if (g_family_cases == 0) {
        fprintf(stderr, "backend_ops: family %s ran no case\n", g_family ? g_family : "?");
        return 1;
    }
    return g_family_fails;
}

int bo_cpu_gaps(void) { return g_cpu_gaps; }

void bo_record_query(uint32_t dev, bst_op op, const char *label, bool ok, bool failed)
{
    bo_case c;
    memset(&c, 0, sizeof c);
    c.op = op;
    snprintf(c.dtype_label, sizeof c.dtype_label, "%s", label);
    record(dev, &c, failed ? R_FAIL : ok ? R_PASS : R_UNSUPPORTED);
    g_family_cases++;
    g_family_fails += failed ? 1 : 0;
}

void bo_print_summary(void)
{
    devices_init();
    printf("\n\nbackend_ops summary (cases x kernel variants):\n");
    printf("  %-12s %-12s %-14s %6s %6s %6s %14s\n", "device", "op", "dtype", "PASS", "FAIL",
           "ERROR", "NOT_SUPPORTED");
    uint32_t tot[R_COUNT] = {0};
    for (uint32_t d = 0; d < g_dev.n; d++)
        for (uint32_t i = 0; i < g_n_rows; i++) {
            const summary_row *r = &g_rows[i];
            if (r->dev != d)
                continue;
            printf("  %-12s %-12s %-14s %6u %6u %6u %14u%s\n", g_dev.label[d], op_name(r->op),
                   r->label, r->n[R_PASS], r->n[R_FAIL], r->n[R_ERROR], r->n[R_UNSUPPORTED],
                   r->n[R_FAIL] ? "  <-- FAIL" : r->n[R_ERROR] ? "  <-- ERROR" : "");
            for (int k = 0; k < R_COUNT; k++)
                tot[k] += r->n[k];
        }
    printf("  total: %u PASS, %u FAIL, %u ERROR, %u NOT_SUPPORTED\n", tot[R_PASS], tot[R_FAIL],
           tot[R_ERROR], tot[R_UNSUPPORTED]);
    if (g_rows_dropped)
        printf("  (%u results not in this table: it holds %d rows)\n", g_rows_dropped,
               MAX_SUMMARY);
}

/* --- layout -------------------------------------------------------------------------------- */

const bo_tensor *tensor_at(const bo_case *c, uint32_t t)
{
    return t < c->n_in ? &c->in[t] : &c->out;
}

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static void make_layout(const bo_case *c, bool shared, layout *L)
{
    memset(L, 0, sizeof *L);
    uint32_t nt = c->n_in + 1;
    uint64_t off = BO_GUARD;
    for (uint32_t t = 0; t < nt; t++) {
        if (t == c->n_in && c->alias_in >= 0) {
            L->binding[t] = L->binding[c->alias_in];
            L->offset[t] = L->offset[c->alias_in];
            continue;
        }
        uint64_t span = tensor_at(c, t)->span;
        if (shared) {
            L->binding[t] = 0;
            L->offset[t] = off;
            off = round_up(off + span + BO_GUARD, 256);
            L->size[0] = off;
            L->n_bindings = 1;
        } else {
            uint32_t b = L->n_bindings++;
            L->binding[t] = b;
            L->offset[t] = BO_GUARD;
            L->size[b] = BO_GUARD + span + BO_GUARD;
        }
    }
}

static void tensor_desc(const bo_tensor *t, uint32_t binding, uint64_t offset,
                        bst_tensor_desc *d)
{
    memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
    d->dtype = t->dtype;
    d->layout = BST_LAYOUT_NATIVE;
    d->rank = t->rank;
    for (uint32_t i = 0; i < t->rank; i++) {
        d->shape[i] = t->shape[i];
        d->strides[i] = t->strides[i];
        d->sym[i] = t->sym[i];
    }
    d->binding = binding;
    d->offset = offset;
}

static void node_build(const bo_case *c, const layout *L, bo_node *n)
{
    memset(n, 0, sizeof *n);
    for (uint32_t i = 0; i < c->n_in; i++) {
        tensor_desc(&c->in[i], L->binding[i], L->offset[i], &n->in[i]);
        n->in_ptr[i] = &n->in[i];
    }
    tensor_desc(&c->out, L->binding[c->n_in], L->offset[c->n_in], &n->out);
    for (uint32_t i = 0; i < c->n_attrs; i++)
        n->attr_ptr[i] = &c->attrs[i];
    n->node.struct_size = sizeof n->node;
    n->node.op = c->op;
    n->node.n_inputs = c->n_in;
    n->node.n_attrs = c->n_attrs;
    n->node.inputs = n->in_ptr;
    n->node.output = &n->out;
    n->node.attrs = n->attr_ptr;
    n->node.variant = 0;
}

void bo_node_build(const bo_case *c, bo_node *n)
{
    layout L;
    make_layout(c, false, &L);
    node_build(c, &L, n);
}

/* Unit = element for plain dtypes, block for block types: the granule a kernel writes. */
int64_t unit_count(const bo_tensor *t) { return bo_tensor_numel(t) / dt_block(t->dtype); }

/* Byte offset of unit u within the region; *out_elem = its first element's index. */
uint64_t unit_offset(const bo_tensor *t, int64_t u, int64_t *out_elem)
{
    int64_t us[BST_MAX_DIMS], coord[BST_MAX_DIMS];
    uint32_t bs = dt_block(t->dtype);
    memcpy(us, t->shape, sizeof us);
    if (t->rank)
        us[t->rank - 1] /= bs;
    unravel(u, t->rank, us, coord);
    if (t->rank)
        coord[t->rank - 1] *= bs;
    *out_elem = ravel(t->rank, t->shape, coord);
    return elem_offset(t, coord);
}

static void free_buffers(uint8_t **b, uint32_t n)
{
    if (!b)
        return;
    for (uint32_t i = 0; i < n; i++)
        free(b[i]);
    free(b);
}

/* The buffers as written before execute: pattern everywhere, each input's region, and inputs'
 * elements beyond their symbolic extents poisoned (0xFF: NaN), since no computed element may
 * depend on them. */
static uint8_t **initial_buffers(const bo_case *c, const layout *L)
{
    uint8_t **b = bo_alloc(L->n_bindings, sizeof *b, "the initial buffer list");
    for (uint32_t i = 0; b && i < L->n_bindings; i++) {
        b[i] = bo_alloc((size_t)L->size[i], 1, "a binding's initial bytes");
        if (!b[i]) {
            free_buffers(b, L->n_bindings);
            return NULL;
        }
        memset(b[i], (int)BO_PATTERN, (size_t)L->size[i]);
    }
    if (!b)
        return NULL;
    for (uint32_t t = 0; t <= c->n_in; t++) {
        if (t == c->n_in && c->alias_in >= 0)
            continue;
        const bo_tensor *ten = tensor_at(c, t);
        uint8_t *base = b[L->binding[t]] + L->offset[t];
        memcpy(base, ten->bytes, (size_t)ten->span);
        if (t == c->n_in || ten->dtype == BST_DTYPE_I32)
            continue; /* ids beyond the extent stay valid: reading one must not crash */
        int64_t coord[BST_MAX_DIMS], first;
        for (int64_t u = 0; u < unit_count(ten); u++) {
            uint64_t off = unit_offset(ten, u, &first);
            unravel(first, ten->rank, ten->shape, coord);
            if (!is_effective(c, ten, coord))
                memset(base + off, 0xFF, dt_bytes(ten->dtype));
        }
    }
    return b;
}

/* --- running ------------------------------------------------------------------------------- */

static const char *status_str(bst_status s)
{
    const char *n = bst_status_name(s);
    return n ? n : "?";
}

/* Whether tensor t of the case is uploaded as the runtime uploads a model weight: through
 * prepare_weight, where the backend may keep a repacked copy that no other path reaches. That is
 * a block-quantized matmul b or ffn_swiglu matrix, contiguous (a view is never a model weight),
 * alone in its binding. */
static bool is_prepared_weight(const bo_case *c, const layout *L, uint32_t t)
{
    if (t == 0 || t >= c->n_in || !dt_is_block(c->in[t].dtype))
        return false;
    if (!(c->op == BST_OP_MATMUL && t == 1) && c->op != BST_OP_FFN_SWIGLU)
        return false;
    const bo_tensor *w = &c->in[t];
    int64_t stride = dt_bytes(w->dtype);
    for (uint32_t i = w->rank; i-- > 0;) {
        if (w->strides[i] != stride || w->sym[i] != BST_SYM_NONE)
            return false;
        stride *= i + 1 == w->rank ? w->shape[i] / dt_block(w->dtype) : w->shape[i];
    }
    for (uint32_t u = 0; u <= c->n_in; u++)
        if (u != t && L->binding[u] == L->binding[t])
            return false;
    return (uint64_t)stride == w->span;
}

/* Compiles variant `variant` of the case on device `dev`, runs it and reads every buffer back
 * into *out_after (caller frees with free_buffers). Returns false with `why` on an API error.
 * Prepared weights (is_prepared_weight) are handed over without their guard bytes, at offset 0,
 * and read back as their initial bytes: weights are read-only. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool execute_case(const bo_case *c, uint32_t dev, uint32_t variant, const layout *L,
                         uint8_t *const *init, uint8_t ***out_after, uint64_t *out_exec_ns,
                         char *why, size_t n)
{
    const bst_backend_api *api = g_dev.api[dev];
    void *h = g_dev.handle[dev];
    bool prepared[N_TENSORS] = {false}; /* per binding */
    layout Lw = *L;
    for (uint32_t t = 1; api->prepare_weight && t < c->n_in; t++)
        if (is_prepared_weight(c, L, t)) {
            prepared[L->binding[t]] = true;
            Lw.offset[t] = 0;
        }
    bo_node nd;
    node_build(c, &Lw, &nd);
    nd.node.variant = variant;
    const bst_node_desc *nodes[1] = {&nd.node};
    bst_partition_desc part;
    memset(&part, 0, sizeof part);
    part.struct_size = sizeof part;
    part.n_nodes = 1;
    part.nodes = nodes;
    part.n_bindings = L->n_bindings;

    void *exe = NULL;
    void *bufs[N_TENSORS] = {NULL};
    uint8_t **after = NULL;
    bool ok = false;
    bst_status s = BST_OK;
    for (uint32_t t = 1; t < c->n_in; t++) {
        const uint32_t b = L->binding[t];
        if (!prepared[b] || bufs[b])
            continue;
        uint64_t cost = 0;
        uint32_t lay = BST_LAYOUT_NATIVE;
        s = api->prepare_weight(h, &nd.in[t], init[b] + L->offset[t], c->in[t].span, &bufs[b],
                                &cost, &lay);
        if (s != BST_OK || !bufs[b]) {
            snprintf(why, n, "prepare_weight of input %u failed: %s: %s", t, status_str(s),
                     last_error());
            goto done;
        }
        nd.in[t].layout = lay; /* compiled for the layout the backend chose */
    }
    s = api->compile(h, &part, &exe);
    if (s != BST_OK) {
        snprintf(why, n, "compile failed: %s: %s", status_str(s), last_error());
        goto done;
    }
    for (uint32_t b = 0; b < L->n_bindings; b++) {
        if (prepared[b])
            continue;
        s = api->buffer_alloc(h, L->size[b], &bufs[b]);
        if (s != BST_OK) {
            snprintf(why, n, "buffer_alloc(%llu) failed: %s: %s",
                     (unsigned long long)L->size[b], status_str(s), last_error());
            goto done;
        }
        s = api->buffer_write(h, bufs[b], 0, init[b], L->size[b]);
        if (s != BST_OK) {
            snprintf(why, n, "buffer_write failed: %s: %s", status_str(s), last_error());
            goto done;
        }
    }
    bst_run_params params;
    memset(&params, 0, sizeof params);
    params.struct_size = sizeof params;
    params.n_tokens = c->n_tokens;
    params.n_kv = c->n_kv;
    params.pos = 0;
    uint64_t t0 = now_ns();
    s = api->execute(h, exe, bufs, L->n_bindings, &params);
    if (out_exec_ns)
        *out_exec_ns = now_ns() - t0;
    if (s != BST_OK) {
        snprintf(why, n, "execute failed: %s: %s", status_str(s), last_error());
        goto done;
    }
    after = bo_alloc(L->n_bindings, sizeof *after, "the read-back buffer list");
    for (uint32_t b = 0; after && b < L->n_bindings; b++) {
        after[b] = bo_alloc((size_t)L->size[b], 1, "a binding's read-back bytes");
        if (!after[b])
            goto done; /* a harness failure: the caller reports bo_error() */
        if (prepared[b]) {
            memcpy(after[b], init[b], (size_t)L->size[b]);
            continue;
        }
        s = api->buffer_read(h, bufs[b], 0, after[b], L->size[b]);
        if (s != BST_OK) {
            snprintf(why, n, "buffer_read failed: %s: %s", status_str(s), last_error());
            goto done;
        }
    }
    ok = after != NULL;
done:
    for (uint32_t b = 0; b < L->n_bindings; b++)
        if (bufs[b])
            api->buffer_free(h, bufs[b]);
    if (exe)
        api->executable_free(h, exe);
    if (!ok) {
        free_buffers(after, L->n_bindings);
        after = NULL;
    }
    *out_after = after;
    return ok;
}

/* Hands one (device, variant) outcome to the result hook. `got` is the decoded output (NULL
 * when the run failed before producing one), `cpu_ref` the CPU reference backend's output. */
static void emit(const bo_case *c, uint32_t dev, const char *variant, bo_outcome outcome,
                 const char *why, const double *got, const double *cpu_ref, uint64_t exec_ns)
{
    if (!g_hooks.result)
        return;
    bo_result r;
    memset(&r, 0, sizeof r);
    r.case_no = g_case_no - 1;
    r.dev = dev;
    r.c = c;
    r.variant = variant;
    r.outcome = outcome;
    r.why = why;
    r.nmse_ref = nmse_of(c, got, cpu_ref);
    r.nmse_oracle = nmse_of(c, got, c->ref);
    r.exec_ns = exec_ns;
    g_hooks.result(g_hooks.ud, &r);
}

static void report_fail(const bo_case *c, uint32_t dev, const char *variant, const char *why)
{
    if (g_hooks.quiet)
        return;
    printf("\n  FAIL %s %s %s [%s] variant %s: %s", g_dev.label[dev], op_name(c->op),
           c->dtype_label, c->what, variant, why);
}

/* Reports the pending harness error (which it clears) as device `dev`'s ERROR for the case. */
static int report_error(const bo_case *c, uint32_t dev, const char *variant)
{
    char why[sizeof g_err.msg];
    take_error(why, sizeof why);
    if (!g_hooks.quiet)
        printf("\n  ERROR %s %s %s [%s] variant %s: %s", g_dev.label[dev], op_name(c->op),
               c->dtype_label, c->what, variant, why);
    record(dev, c, R_ERROR);
    emit(c, dev, variant, BO_ERROR, why, NULL, NULL, 0);
    return 1;
}

static int run_on_device(bo_case *c, uint32_t dev, bool shared, double **cpu_got)
{
    const bst_backend_api *api = g_dev.api[dev];
    bool is_cpu = g_dev.is_cpu[dev];
    char why[512];
    bo_node nd;
    bo_node_build(c, &nd);
    bst_kernel_variant vars[MAX_VARIANTS];
    memset(vars, 0, sizeof vars);
    for (uint32_t i = 0; i < MAX_VARIANTS; i++)
        vars[i].struct_size = sizeof vars[i];
    uint32_t count = 0;
    bst_status s = api->query(g_dev.handle[dev], &nd.node, vars, sizeof vars[0], MAX_VARIANTS,
                              &count);
    if (s != BST_OK) {
        snprintf(why, sizeof why, "query failed on a valid node: %s: %s", status_str(s),
                 last_error());
        report_fail(c, dev, "-", why);
        record(dev, c, R_FAIL);
        emit(c, dev, "-", BO_FAIL, why, NULL, NULL, 0);
        return 1;
    }
    if (count == 0) {
        record(dev, c, R_UNSUPPORTED);
        emit(c, dev, "-", BO_UNSUPPORTED, NULL, NULL, NULL, 0);
        if (is_cpu && !c->cpu_optional) {
            g_cpu_gaps++;
            if (!g_hooks.quiet)
                printf("\n  CPU GAP %s %s %s [%s]: the reference backend does not support it",
                   g_dev.label[dev], op_name(c->op), c->dtype_label, c->what);
        }
        return 0;
    }
    if (count > MAX_VARIANTS)
        count = MAX_VARIANTS;
    int fails = 0;
    layout L;
    make_layout(c, shared, &L);
    size_t n_out = (size_t)bo_tensor_numel(&c->out);
    uint8_t **init = initial_buffers(c, &L);
    double *got = init ? bo_alloc(n_out, sizeof *got, "the decoded output") : NULL;
    if (!got) {
        free_buffers(init, L.n_bindings);
        return report_error(c, dev, "-");
    }
    for (uint32_t v = 0; v < count; v++) {
        char vname[sizeof vars[v].name + 1];
        memcpy(vname, vars[v].name, sizeof vars[v].name);
        vname[sizeof vars[v].name] = '\0';
        uint8_t **after = NULL;
        uint64_t exec_ns = 0;
        bool ran = execute_case(c, dev, v, &L, init, &after, &exec_ns, why, sizeof why);
        bool ok = ran && check_run(c, &L, init, after, is_cpu, got, why, sizeof why);
        if (!ok && !bo_ok()) { /* the harness failed, not the kernel */
            free_buffers(after, L.n_bindings);
            fails += report_error(c, dev, vname);
            continue;
        }
        const double *got_ok = ran ? got : NULL;
        bool was_cpu_ref = false;
        if (ok && !is_cpu && *cpu_got)
            ok = compare_values(c, got, *cpu_got, c->metric == BO_ULP ? 1.0 : c->tol, true, why,
                                sizeof why);
        /* Other devices are compared with the CPU reference kernel ("ref", offered last), not
         * with a faster CPU variant that quantizes activations. */
        if (ok && is_cpu && !*cpu_got && (strcmp(vname, "ref") == 0 || v + 1 == count)) {
            *cpu_got = got;
            was_cpu_ref = true;
        }
        if (g_hooks.result)
            emit(c, dev, vname, ok ? BO_PASS : BO_FAIL, ok ? NULL : why, got_ok,
                 was_cpu_ref ? NULL : *cpu_got, exec_ns);
        free_buffers(after, L.n_bindings);
        record(dev, c, ok ? R_PASS : R_FAIL);
        if (!ok) {
            report_fail(c, dev, vname, why);
            fails++;
        }
        if (was_cpu_ref) {
            got = NULL; /* it is *cpu_got now; the variants left need another */
            if (v + 1 < count && !(got = bo_alloc(n_out, sizeof *got, "the decoded output"))) {
                fails += report_error(c, dev, "-"); /* one ERROR for the variants left */
                break;
            }
        }
    }
    free(got);
    free_buffers(init, L.n_bindings);
    return fails;
}

int bo_run(bo_case *c)
{
    devices_init();
    if (bo_ok() && (!c->ref || !c->expect))
        harness_fail("%s %s case without an expected output (bo_case_set_ref)", op_name(c->op),
                     c->dtype_label);
    uint64_t case_no = g_case_no++;
    bool shared = (case_no % 3) == 2;
    if (shared)
        bo_case_what(c, "; one binding");
    if (g_hooks.select && !g_hooks.select(g_hooks.ud, case_no, c)) {
        g_err.set = false;
        g_family_cases++;
        bo_case_free(c);
        return 0;
    }
    if (g_dev.n == 0) {
        /* A suite that forgot bo_set_device_source would otherwise pass without running
         * anything. */
        fprintf(stderr, "backend_ops: no device registered (bo_set_device_source)\n");
        g_err.set = false;
        g_family_cases++;
        g_family_fails++;
        bo_case_free(c);
        return 1;
    }
    if (!bo_ok()) {
        /* The case could not be built: an ERROR on every device, one failure of the family. */
        char why[sizeof g_err.msg];
        take_error(why, sizeof why);
        if (!g_hooks.quiet)
            printf("\n  ERROR %s %s [%s]: %s", op_name(c->op), c->dtype_label, c->what, why);
        for (uint32_t d = 0; d < g_dev.n; d++)
            if (g_dev.handle[d]) {
                record(d, c, R_ERROR);
                emit(c, d, "-", BO_ERROR, why, NULL, NULL, 0);
            }
        g_family_cases++;
        g_family_fails++;
        bo_case_free(c);
        return 1;
    }
    double *cpu_got = NULL;
    int fails = 0;
    /* CPU devices first: their output is what the others are compared with. */
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t d = 0; d < g_dev.n; d++)
            if (g_dev.handle[d] && g_dev.is_cpu[d] == (pass == 0))
                fails += run_on_device(c, d, shared, &cpu_got);
    free(cpu_got);
    g_family_cases++;
    g_family_fails += fails;
    bo_case_free(c);
    return fails;
}

/* --- checker self-test --------------------------------------------------------------------- */

/* Returns 1 when the checker accepts the (corrupted) buffers. */
static int still_passes(const bo_case *c, const layout *L, uint8_t *const *init,
                        uint8_t *const *after, bool is_cpu, const char *what)
{
    char why[512];
    double *got = bo_alloc((size_t)bo_tensor_numel(&c->out), sizeof *got, "the decoded output");
    bool ok = got && check_run(c, L, init, after, is_cpu, got, why, sizeof why);
    free(got);
    if (!bo_ok())
        return 1; /* not checked: bo_selftest reports the harness error */
    if (ok)
        printf("\n  selftest: corruption '%s' was NOT detected", what);
    else
        printf("\n  selftest: corruption '%s' detected: %s", what, why);
    return ok ? 1 : 0;
}

int bo_selftest(bo_case *c, uint32_t dev)
{
    devices_init();
    if (bo_ok() && (!c->ref || !c->expect))
        harness_fail("selftest case without an expected output (bo_case_set_ref)");
    if (dev >= g_dev.n || !g_dev.handle[dev] || !bo_ok()) {
        if (!bo_ok())
            printf("\n  selftest: %s", bo_error());
        g_err.set = false;
        bo_case_free(c);
        return -1;
    }
    layout L;
    make_layout(c, false, &L);
    uint8_t **init = initial_buffers(c, &L), **after = NULL;
    char why[512];
    int missed = -1;
    double *got = init ? bo_alloc((size_t)bo_tensor_numel(&c->out), sizeof *got,
                                  "the decoded output")
                       : NULL;
    bool is_cpu = g_dev.is_cpu[dev];
    if (!got)
        goto done;
    if (!execute_case(c, dev, 0, &L, init, &after, NULL, why, sizeof why) ||
        !check_run(c, &L, init, after, is_cpu, got, why, sizeof why)) {
        if (bo_ok())
            printf("\n  selftest: the uncorrupted case failed: %s", why);
        goto done;
    }
    missed = 0;
    uint32_t ob = L.binding[c->n_in], ib = L.binding[0];
    uint64_t ooff = L.offset[c->n_in];
    int64_t first = -1, keep = -1, e;
    for (int64_t u = 0; u < unit_count(&c->out); u++) {
        uint64_t off = unit_offset(&c->out, u, &e);
        if (c->expect[e] && first < 0)
            first = (int64_t)off;
        if (!c->expect[e] && keep < 0)
            keep = (int64_t)off;
    }
    uint32_t ub = dt_bytes(c->out.dtype);
    /* a wrong value: bump the exponent field of the first computed unit's last byte */
    after[ob][ooff + (uint64_t)first + ub - 1] ^= 0x10;
    missed += still_passes(c, &L, init, after, is_cpu, "wrong value");
    after[ob][ooff + (uint64_t)first + ub - 1] ^= 0x10;
    /* the same unit left as it was before the run */
    uint8_t saved[64];
    memcpy(saved, after[ob] + ooff + first, ub);
    memcpy(after[ob] + ooff + first, init[ob] + ooff + first, ub);
    missed += still_passes(c, &L, init, after, is_cpu, "unwritten element");
    memcpy(after[ob] + ooff + first, saved, ub);
    /* one byte before and one past the output region */
    after[ob][ooff - 1] ^= 0x01;
    missed += still_passes(c, &L, init, after, is_cpu, "byte before the output");
    after[ob][ooff - 1] ^= 0x01;
    after[ob][ooff + c->out.span] ^= 0x01;
    missed += still_passes(c, &L, init, after, is_cpu, "byte past the output");
    after[ob][ooff + c->out.span] ^= 0x01;
    /* an input byte */
    after[ib][L.offset[0]] ^= 0x01;
    missed += still_passes(c, &L, init, after, is_cpu, "input modified");
    after[ib][L.offset[0]] ^= 0x01;
    /* an element beyond the symbolic extent */
    if (keep >= 0) {
        after[ob][ooff + (uint64_t)keep] ^= 0x01;
        missed += still_passes(c, &L, init, after, is_cpu, "write past the symbolic extent");
        after[ob][ooff + (uint64_t)keep] ^= 0x01;
    }
    if (!check_run(c, &L, init, after, is_cpu, got, why, sizeof why)) {
        if (bo_ok())
            printf("\n  selftest: the restored buffers no longer pass: %s", why);
        missed++;
    }
    /* The comparison with the CPU backend's output (used for every other backend): equal
     * outputs pass, a perturbed one fails (block outputs are judged against their input only). */
    if (c->metric != BO_QUANT) {
        int64_t count = bo_tensor_numel(&c->out);
        double *other = bo_alloc((size_t)count, sizeof *other, "the CPU backend's output");
        if (!other)
            goto done;
        memcpy(other, got, (size_t)count * sizeof *other);
        if (!compare_values(c, got, other, c->tol, true, why, sizeof why)) {
            printf("\n  selftest: identical outputs differ from the CPU's: %s", why);
            missed++;
        }
        for (int64_t i = 0; i < count; i++)
            if (c->expect[i]) {
                other[i] += 1.0 + fabs(other[i]);
                break;
            }
        if (compare_values(c, got, other, c->tol, true, why, sizeof why)) {
            printf("\n  selftest: corruption 'differs from the CPU backend' was NOT detected");
            missed++;
        } else {
            printf("\n  selftest: corruption 'differs from the CPU backend' detected: %s", why);
        }
        free(other);
    }
done:
    if (!bo_ok()) {
        printf("\n  selftest: %s", bo_error());
        g_err.set = false;
        missed = -1;
    }
    free(got);
    free_buffers(init, L.n_bindings);
    free_buffers(after, L.n_bindings);
    bo_case_free(c);
    return missed;
}
