/*
 * tests/test_vulkan.c — the Vulkan backend beyond op results (those are test_backend_ops, which
 * runs every op on every device, and once more with the backend's fallback variants forced):
 * the devices it reports and where the loader ranks an emulated one; one compiled partition
 * re-run with other buffers and other symbolic extents (its command buffer is recorded once);
 * bad row ids reported by shaders; the persistent pipeline cache (written under a 0700
 * directory; a corrupt, truncated or foreign file is discarded and rebuilt); Vulkan failures
 * reached through the host's fault injection and mapped to statuses (out of device memory,
 * device lost and sticky, pipeline creation failure); the forced fallback paths (32-bit word
 * access, shared-memory reductions, staged memory); and every run in this process under the
 * Khronos validation layer, whose errors reach the log and must number zero after a set of
 * test_backend_ops-like cases and the fused attention family.
 *
 * Without a Vulkan device (or without the backend: BASTION_VULKAN_BUILT undefined) the tests
 * say so and pass; with the backend built, a plugin that does not load is a failure.
 */
#include "backend_ops_devices.h"
#include "backend_ops_harness.h"
#include "graph/quant.h"
#include "oracle.h"
#include "runtime/runtime.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* --- log capture ----------------------------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 17];
static size_t log_len;
static uint32_t validation_errors;
static bool validation_seen;

static void on_log(void *user, bst_log_level level, const char *message)
{
    (void)user;
    pthread_mutex_lock(&log_lock);
    if (strstr(message, "vulkan validation error")) {
        validation_errors++;
        printf("\n  %s", message);
    }
    if (strstr(message, "vulkan: validation layer enabled")) {
        if (!validation_seen)
            printf("\n  %s", message);
        validation_seen = true;
    }
    if (level >= BST_LOG_WARN && !strstr(message, "vulkan validation"))
        printf("\n  log: %s", message);
    size_t n = strlen(message);
    if (log_len + n + 2 >= sizeof log_text)
        log_len = 0; /* keep the newest messages */
    memcpy(log_text + log_len, message, n);
    log_len += n;
    log_text[log_len++] = '\n';
    log_text[log_len] = '\0';
    pthread_mutex_unlock(&log_lock);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_len = 0;
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *what)
{
    pthread_mutex_lock(&log_lock);
    bool found = strstr(log_text, what) != NULL;
    pthread_mutex_unlock(&log_lock);
    return found;
}

/* --- a context with the Vulkan backend only ------------------------------------------------- */

typedef struct vt {
    bst_context *ctx;
    const bst_backend_api *api;
    void *dev;
    bst_device_info info;
} vt;

static bool warned_absent;

/* Opens device 0 of the vulkan plugin; false (having said why) when there is none here. */
static bool vt_open(vt *v)
{
    memset(v, 0, sizeof *v);
    bst_context_options opt = {.struct_size = sizeof opt, .backends = "vulkan"};
    CU_ASSERT_EQUAL_FATAL(bst_context_create(&opt, &v->ctx), BST_OK);
    bst_plugin_record rec = {.struct_size = sizeof rec};
    bool loaded = false, found = false;
    for (uint32_t i = 0; i < bst_context_plugin_count(v->ctx); i++) {
        CU_ASSERT_EQUAL(bst_context_plugin(v->ctx, i, &rec), BST_OK);
        if (strcmp(rec.name, "vulkan") != 0)
            continue;
        found = true;
        loaded = rec.state == BST_PLUGIN_LOADED;
        if (!loaded && !warned_absent) {
            printf("\n  vulkan plugin: %s: %s", bst_plugin_state_name(rec.state), rec.detail);
            warned_absent = true;
        }
#ifdef BASTION_VULKAN_BUILT
        /* Built: it must load; "no device" is the only acceptable way not to run. */
        CU_ASSERT(loaded || rec.state == BST_PLUGIN_NO_DEVICE);
#endif
    }
    if (!found || !loaded || v->ctx->n_devices == 0) {
#ifdef BASTION_VULKAN_BUILT
        CU_ASSERT(found);
#endif
        if (!warned_absent)
            printf("\n  no Vulkan device here: skipped");
        warned_absent = true;
        bst_context_destroy(v->ctx);
        v->ctx = NULL;
        return false;
    }
    const char *backend = NULL;
    v->info.struct_size = sizeof v->info;
    CU_ASSERT_EQUAL_FATAL(bst_context_device(v->ctx, 0, &v->info, &backend), BST_OK);
    CU_ASSERT_STRING_EQUAL(backend, "vulkan");
    v->api = &v->ctx->devices[0].plugin->api;
    bst_status st = bsti_device_get(v->ctx, 0, &v->dev);
    if (st != BST_OK) {
        printf("\n  device_open: %s: %s", bst_status_name(st), bst_last_error());
        CU_FAIL("the Vulkan device did not open");
        bst_context_destroy(v->ctx);
        v->ctx = NULL;
        return false;
    }
    return true;
}

static void vt_close(vt *v)
{
    if (v->ctx)
        bst_context_destroy(v->ctx);
    memset(v, 0, sizeof *v);
}

/* --- hand-built one-node partitions ---------------------------------------------------------- */

typedef struct vt_node {
    bst_tensor_desc in[4];
    const bst_tensor_desc *in_ptr[4];
    bst_tensor_desc out;
    bst_attr attrs[4];
    const bst_attr *attr_ptr[4];
    bst_node_desc node;
} vt_node;

static bst_tensor_desc tdesc(bst_dtype dt, uint32_t rank, const int64_t *shape, uint32_t binding)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.dtype = dt;
    d.rank = rank;
    int64_t stride = bst_dtype_block_bytes(dt);
    for (uint32_t i = rank; i-- > 0;) {
        d.shape[i] = shape[i];
        d.strides[i] = stride;
        stride *= i == rank - 1 ? shape[i] / (int64_t)bst_dtype_block_size(dt) : shape[i];
    }
    d.binding = binding;
    return d;
}

static void node_init(vt_node *n, bst_op op, uint32_t n_in)
{
    memset(n, 0, sizeof *n);
    for (int i = 0; i < 4; i++) {
        n->in_ptr[i] = &n->in[i];
        n->attr_ptr[i] = &n->attrs[i];
    }
    n->node.struct_size = sizeof n->node;
    n->node.op = op;
    n->node.n_inputs = n_in;
    n->node.inputs = n->in_ptr;
    n->node.output = &n->out;
    n->node.attrs = n->attr_ptr;
}

static bst_attr *node_attr(vt_node *n, bst_attr_key key, bst_attr_kind kind)
{
    bst_attr *a = &n->attrs[n->node.n_attrs++];
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->key = key;
    a->kind = kind;
    a->count = 1;
    return a;
}

static bst_status compile1(vt *v, vt_node *n, uint32_t n_bindings, uint32_t variant, void **exe)
{
    const bst_node_desc *nodes[1] = {&n->node};
    n->node.variant = variant;
    bst_partition_desc part = {.struct_size = sizeof part, .n_nodes = 1, .nodes = nodes,
                               .n_bindings = n_bindings};
    *exe = NULL;
    return v->api->compile(v->dev, &part, exe);
}

static void *alloc_write(vt *v, const void *data, uint64_t size)
{
    void *b = NULL;
    CU_ASSERT_EQUAL_FATAL(v->api->buffer_alloc(v->dev, size, &b), BST_OK);
    if (data)
        CU_ASSERT_EQUAL(v->api->buffer_write(v->dev, b, 0, data, size), BST_OK);
    return b;
}

static bst_status run(vt *v, void *exe, void **bufs, uint32_t n, int64_t n_tokens)
{
    bst_run_params p = {.struct_size = sizeof p, .n_tokens = n_tokens, .n_kv = n_tokens};
    return v->api->execute(v->dev, exe, bufs, n, &p);
}

/* A scale node: x f32[8, 64] -> out, outer dim n_tokens. */
static void scale_node(vt_node *n, float scale)
{
    const int64_t s[2] = {8, 64};
    node_init(n, BST_OP_SCALE, 1);
    n->in[0] = tdesc(BST_DTYPE_F32, 2, s, 0);
    n->out = tdesc(BST_DTYPE_F32, 2, s, 1);
    n->in[0].sym[0] = n->out.sym[0] = BST_SYM_N_TOKENS;
    node_attr(n, BST_ATTR_SCALE, BST_ATTR_KIND_FLOAT)->f = scale;
}

static void fill(float *x, size_t n, float seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = sinf(seed + (float)i * 0.37f) * 3.0f;
}

/* Checks out (8 x 64) against scale * x for rows < n_tokens and `rest` elsewhere. */
static bool check_scaled(vt *v, void *out_buf, const float *x, float scale, int64_t n_tokens,
                         float rest)
{
    float out[8 * 64];
    CU_ASSERT_EQUAL_FATAL(v->api->buffer_read(v->dev, out_buf, 0, out, sizeof out), BST_OK);
    for (int64_t i = 0; i < 8 * 64; i++) {
        float want = i < n_tokens * 64 ? x[i] * scale : rest;
        if (out[i] != want) {
            printf("\n  element %lld: got %g, expected %g", (long long)i, out[i], want);
            return false;
        }
    }
    return true;
}

/* --- devices --------------------------------------------------------------------------------- */

static void test_devices(void)
{
    vt v;
    if (!vt_open(&v))
        return;
    printf("\n  %s (%s), driver %s, %llu MiB, max binding %llu MiB, kind %u", v.info.name,
           v.info.vendor, v.info.driver_version,
           (unsigned long long)(v.info.memory_bytes >> 20),
           (unsigned long long)(v.info.max_binding_bytes >> 20), v.info.kind);
    CU_ASSERT(v.info.name[0] != '\0');
    CU_ASSERT(v.info.vendor[0] != '\0');
    CU_ASSERT(v.info.driver_version[0] != '\0');
    CU_ASSERT(v.info.memory_bytes > 0);
    CU_ASSERT(v.info.max_alloc_bytes > 0);
    CU_ASSERT(v.info.max_binding_bytes > 0 && v.info.max_binding_bytes <= v.info.max_alloc_bytes);
    CU_ASSERT(v.info.fingerprint != 0);
    if (strstr(v.info.name, "llvmpipe")) { /* Mesa's lavapipe is VK_PHYSICAL_DEVICE_TYPE_CPU */
        CU_ASSERT_EQUAL(v.info.kind, BST_DEVICE_CPU);
        CU_ASSERT(v.info.unified_memory);
    }
    bst_kernel_variant vars[4];
    memset(vars, 0, sizeof vars);
    for (int i = 0; i < 4; i++)
        vars[i].struct_size = sizeof vars[i];
    /* Matmul offers three kernels (vec, tiled, rows), with distinct names and source hashes. */
    const int64_t sa[2] = {3, 64}, sb[2] = {5, 64}, so[2] = {3, 5};
    vt_node n;
    node_init(&n, BST_OP_MATMUL, 2);
    n.in[0] = tdesc(BST_DTYPE_F32, 2, sa, 0);
    n.in[1] = tdesc(BST_DTYPE_Q4_1, 2, sb, 1);
    n.out = tdesc(BST_DTYPE_F32, 2, so, 2);
    uint32_t count = 0;
    CU_ASSERT_EQUAL(v.api->query(v.dev, &n.node, vars, sizeof vars[0], 4, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 3);
    for (uint32_t i = 0; i < count && i < 4; i++) {
        printf("\n  matmul variant %u: %s %016llx", i, vars[i].name,
               (unsigned long long)vars[i].source_hash);
        for (uint32_t j = 0; j < i; j++) {
            CU_ASSERT(strcmp(vars[i].name, vars[j].name) != 0);
            CU_ASSERT(vars[i].source_hash != vars[j].source_hash);
        }
    }
    /* A tensor whose offset breaks f32 alignment is declined, not mis-run. */
    n.in[0].offset = 2;
    CU_ASSERT_EQUAL(v.api->query(v.dev, &n.node, vars, sizeof vars[0], 4, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 0);
    bool emulated = v.info.kind == BST_DEVICE_CPU;
    vt_close(&v);

    /* Without a selection list, a Vulkan device emulated on the CPU ranks after the native CPU
     * backend (runtime/loader.c). */
    char *saved = getenv("BASTION_BACKENDS") ? strdup(getenv("BASTION_BACKENDS")) : NULL;
    unsetenv("BASTION_BACKENDS");
    bst_context *ctx = NULL;
    bst_context_options opt = {.struct_size = sizeof opt};
    CU_ASSERT_EQUAL_FATAL(bst_context_create(&opt, &ctx), BST_OK);
    int cpu_at = -1, vk_at = -1;
    for (uint32_t i = 0; i < bst_context_device_count(ctx); i++) {
        bst_device_info info = {.struct_size = sizeof info};
        const char *name = NULL;
        CU_ASSERT_EQUAL(bst_context_device(ctx, i, &info, &name), BST_OK);
        if (strcmp(name, "cpu") == 0 && cpu_at < 0)
            cpu_at = (int)i;
        if (strcmp(name, "vulkan") == 0 && vk_at < 0)
            vk_at = (int)i;
    }
    printf("\n  default order: cpu device at %d, vulkan device at %d", cpu_at, vk_at);
    if (emulated && cpu_at >= 0 && vk_at >= 0)
        CU_ASSERT(cpu_at < vk_at);
    bst_context_destroy(ctx);
    if (saved) {
        setenv("BASTION_BACKENDS", saved, 1);
        free(saved);
    }
}

/* --- one executable, many runs --------------------------------------------------------------- */

static void test_rerun(void)
{
    vt v;
    if (!vt_open(&v))
        return;
    vt_node n;
    scale_node(&n, 2.5f);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);
    float xa[8 * 64], xb[8 * 64];
    fill(xa, COUNT(xa), 0.5f);
    fill(xb, COUNT(xb), 1.7f);
    void *a[2] = {alloc_write(&v, xa, sizeof xa), alloc_write(&v, NULL, sizeof xa)};
    void *b[2] = {alloc_write(&v, xb, sizeof xb), alloc_write(&v, NULL, sizeof xb)};
    /* New buffers start zeroed; rows past n_tokens are never written. */
    CU_ASSERT_EQUAL(run(&v, exe, a, 2, 3), BST_OK);
    CU_ASSERT(check_scaled(&v, a[1], xa, 2.5f, 3, 0.0f));
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 8), BST_OK);
    CU_ASSERT(check_scaled(&v, b[1], xb, 2.5f, 8, 0.0f));
    CU_ASSERT_EQUAL(run(&v, exe, a, 2, 5), BST_OK);
    CU_ASSERT(check_scaled(&v, a[1], xa, 2.5f, 5, 0.0f));
    CU_ASSERT_EQUAL(run(&v, exe, a, 2, 5), BST_OK); /* unchanged: records are reused */
    CU_ASSERT(check_scaled(&v, a[1], xa, 2.5f, 5, 0.0f));
    uint64_t ns = 0;
    CU_ASSERT_EQUAL(v.api->last_execute_ns(v.dev, exe, &ns), BST_OK);
    CU_ASSERT(ns > 0);
    /* Extents outside the bound, or no value for a symbol, are refused before anything runs. */
    CU_ASSERT_EQUAL(run(&v, exe, a, 2, 9), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(v.api->execute(v.dev, exe, a, 2, NULL), BST_ERR_INVALID_ARG);
    /* A buffer too small for the tensor is refused too. */
    void *small[2] = {a[0], alloc_write(&v, NULL, 64)};
    CU_ASSERT_EQUAL(run(&v, exe, small, 2, 8), BST_ERR_INVALID_ARG);
    v.api->buffer_free(v.dev, small[1]);
    void *c[2] = {a[0], alloc_write(&v, NULL, sizeof xa)}; /* and the executable still works */
    CU_ASSERT_EQUAL(run(&v, exe, c, 2, 2), BST_OK);
    CU_ASSERT(check_scaled(&v, c[1], xa, 2.5f, 2, 0.0f));
    v.api->buffer_free(v.dev, c[1]);
    v.api->executable_free(v.dev, exe);

    /* Matmul with a symbolic number of rows, both kernels, a q8_0 weight. */
    const int64_t sa[2] = {8, 64}, sb[2] = {16, 64}, so[2] = {8, 16};
    float w[16 * 64], wq_vals[16 * 64];
    fill(w, COUNT(w), 2.2f);
    uint8_t wq[16 * 2 * 34];
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q8_0, w, wq, 16 * 64), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_dequantize(BST_DTYPE_Q8_0, wq, wq_vals, 16 * 64), BST_OK);
    void *wbuf = alloc_write(&v, wq, sizeof wq), *obuf = alloc_write(&v, NULL, 8 * 16 * 4);
    for (uint32_t variant = 0; variant < 2; variant++) {
        vt_node m;
        node_init(&m, BST_OP_MATMUL, 2);
        m.in[0] = tdesc(BST_DTYPE_F32, 2, sa, 0);
        m.in[1] = tdesc(BST_DTYPE_Q8_0, 2, sb, 1);
        m.out = tdesc(BST_DTYPE_F32, 2, so, 2);
        m.in[0].sym[0] = m.out.sym[0] = BST_SYM_N_TOKENS;
        CU_ASSERT_EQUAL_FATAL(compile1(&v, &m, 3, variant, &exe), BST_OK);
        static const int64_t steps[] = {1, 7, 8, 2};
        for (size_t k = 0; k < COUNT(steps); k++) {
            void *bufs[3] = {a[0], wbuf, obuf};
            CU_ASSERT_EQUAL(run(&v, exe, bufs, 3, steps[k]), BST_OK);
            float out[8 * 16];
            CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, obuf, 0, out, sizeof out), BST_OK);
            double err = 0, ref2 = 0;
            for (int64_t i = 0; i < steps[k]; i++)
                for (int64_t j = 0; j < 16; j++) {
                    double s = 0;
                    for (int64_t q = 0; q < 64; q++)
                        s += (double)xa[i * 64 + q] * wq_vals[j * 64 + q];
                    err += (out[i * 16 + j] - s) * (out[i * 16 + j] - s);
                    ref2 += s * s;
                }
            CU_ASSERT(err <= 1e-9 * ref2);
        }
        v.api->executable_free(v.dev, exe);
    }
    v.api->buffer_free(v.dev, wbuf);
    v.api->buffer_free(v.dev, obuf);
    for (int i = 0; i < 2; i++) {
        v.api->buffer_free(v.dev, a[i]);
        v.api->buffer_free(v.dev, b[i]);
    }
    vt_close(&v);
}

/* --- ids that shaders reject ----------------------------------------------------------------- */

static void test_bad_ids(void)
{
    vt v;
    if (!vt_open(&v))
        return;
    const int64_t st[2] = {4, 8}, si[1] = {3}, so[2] = {3, 8};
    vt_node n;
    node_init(&n, BST_OP_GET_ROWS, 2);
    n.in[0] = tdesc(BST_DTYPE_F32, 2, st, 0);
    n.in[1] = tdesc(BST_DTYPE_I32, 1, si, 1);
    n.out = tdesc(BST_DTYPE_F32, 2, so, 2);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 3, 0, &exe), BST_OK);
    float table[32];
    fill(table, 32, 0.1f);
    int32_t bad[3] = {0, 7, 1}, good[3] = {3, 0, 3};
    void *bufs[3] = {alloc_write(&v, table, sizeof table), alloc_write(&v, bad, sizeof bad),
                     alloc_write(&v, NULL, 3 * 8 * 4)};
    bst_status s = run(&v, exe, bufs, 3, 1);
    printf("\n  get_rows with id 7 of 4 rows: %s: %s", bst_status_name(s), bst_last_error());
    CU_ASSERT_EQUAL(s, BST_ERR_INVALID_ARG);
    CU_ASSERT(strstr(bst_last_error(), "outside") != NULL);
    CU_ASSERT_EQUAL(v.api->buffer_write(v.dev, bufs[1], 0, good, sizeof good), BST_OK);
    CU_ASSERT_EQUAL(run(&v, exe, bufs, 3, 1), BST_OK); /* the status word was reset */
    float out[24];
    CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, bufs[2], 0, out, sizeof out), BST_OK);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 8; c++)
            CU_ASSERT_EQUAL(out[r * 8 + c], table[good[r] * 8 + c]);
    v.api->executable_free(v.dev, exe);

    /* set_rows into an f16 state with a negative id */
    const int64_t sd[2] = {4, 8}, ss[2] = {2, 8}, sn[1] = {2};
    node_init(&n, BST_OP_SET_ROWS, 3);
    n.in[0] = tdesc(BST_DTYPE_F16, 2, sd, 0);
    n.in[1] = tdesc(BST_DTYPE_F32, 2, ss, 1);
    n.in[2] = tdesc(BST_DTYPE_I32, 1, sn, 2);
    n.out = n.in[0];
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 3, 0, &exe), BST_OK);
    int32_t neg[2] = {1, -1};
    void *b2[3] = {alloc_write(&v, NULL, 4 * 8 * 2), alloc_write(&v, table, 2 * 8 * 4),
                   alloc_write(&v, neg, sizeof neg)};
    CU_ASSERT_EQUAL(run(&v, exe, b2, 3, 1), BST_ERR_INVALID_ARG);
    v.api->executable_free(v.dev, exe);
    for (int i = 0; i < 3; i++) {
        v.api->buffer_free(v.dev, bufs[i]);
        v.api->buffer_free(v.dev, b2[i]);
    }
    vt_close(&v);
}

/* --- events (ABI v2) ----------------------------------------------------------------------- */

/* Two executables chained on the device through one event, a failure found only when the work
 * is done (an id outside the table) returned by event_wait, and a wait that times out. */
static void test_events(void)
{
    vt v;
    if (!vt_open(&v))
        return;
    CU_ASSERT_FATAL(v.api->event_create && v.api->event_destroy && v.api->execute_async &&
                    v.api->event_wait);
    void *ev = NULL;
    CU_ASSERT_EQUAL_FATAL(v.api->event_create(v.dev, &ev), BST_OK);
    vt_node n1, n2;
    scale_node(&n1, 2.0f);
    scale_node(&n2, -0.5f);
    void *e1 = NULL, *e2 = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n1, 2, 0, &e1), BST_OK);
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n2, 2, 0, &e2), BST_OK);
    float x[8 * 64];
    fill(x, 8 * 64, 0.3f);
    void *bx = alloc_write(&v, x, sizeof x), *by = alloc_write(&v, NULL, sizeof x),
         *bz = alloc_write(&v, NULL, sizeof x);
    void *b1[2] = {bx, by}, *b2[2] = {by, bz};
    bst_run_params p = {.struct_size = sizeof p, .n_tokens = 8, .n_kv = 8};
    bst_event_point sig1 = {.struct_size = sizeof sig1, .event = ev, .value = 1};
    bst_event_point sig2 = {.struct_size = sizeof sig2, .event = ev, .value = 2};
    CU_ASSERT_EQUAL(v.api->execute_async(v.dev, e1, b1, 2, &p, NULL, 0, 0, &sig1), BST_OK);
    CU_ASSERT_EQUAL(v.api->execute_async(v.dev, e2, b2, 2, &p, &sig1, sizeof sig1, 1, &sig2),
                    BST_OK);
    CU_ASSERT_EQUAL(v.api->event_wait(v.dev, ev, 2, UINT64_MAX), BST_OK);
    CU_ASSERT(check_scaled(&v, bz, x, -1.0f, 8, 0.0f));
    /* Nothing will ever signal 3. */
    CU_ASSERT_EQUAL(v.api->event_wait(v.dev, ev, 3, 1000000), BST_ERR_TIMEOUT);

    const int64_t st[2] = {4, 8}, si[1] = {3}, so[2] = {3, 8};
    vt_node g;
    node_init(&g, BST_OP_GET_ROWS, 2);
    g.in[0] = tdesc(BST_DTYPE_F32, 2, st, 0);
    g.in[1] = tdesc(BST_DTYPE_I32, 1, si, 1);
    g.out = tdesc(BST_DTYPE_F32, 2, so, 2);
    void *e3 = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &g, 3, 0, &e3), BST_OK);
    int32_t bad[3] = {0, 9, 1};
    void *b3[3] = {alloc_write(&v, x, 32 * 4), alloc_write(&v, bad, sizeof bad),
                   alloc_write(&v, NULL, 3 * 8 * 4)};
    bst_event_point sig4 = {.struct_size = sizeof sig4, .event = ev, .value = 4};
    CU_ASSERT_EQUAL(v.api->execute_async(v.dev, e3, b3, 3, &p, NULL, 0, 0, &sig4), BST_OK);
    bst_status s = v.api->event_wait(v.dev, ev, 4, UINT64_MAX);
    printf("\n  late failure through event_wait: %s: %s", bst_status_name(s), bst_last_error());
    CU_ASSERT_EQUAL(s, BST_ERR_INVALID_ARG);
    CU_ASSERT(strstr(bst_last_error(), "outside") != NULL);
    /* An event of no device, and a foreign pointer, are refused. */
    bst_event_point foreign = {.struct_size = sizeof foreign, .event = bx, .value = 1};
    CU_ASSERT_EQUAL(v.api->execute_async(v.dev, e1, b1, 2, &p, &foreign, sizeof foreign, 1, NULL),
                    BST_ERR_INVALID_ARG);

    v.api->executable_free(v.dev, e1);
    v.api->executable_free(v.dev, e2);
    v.api->executable_free(v.dev, e3);
    void *all[6] = {bx, by, bz, b3[0], b3[1], b3[2]};
    for (int i = 0; i < 6; i++)
        v.api->buffer_free(v.dev, all[i]);
    v.api->event_destroy(v.dev, ev);
    vt_close(&v);
}

/* --- i8 / i32 inputs (not in test_backend_ops) ------------------------------------------------ */

static void test_integer_inputs(void)
{
    vt v;
    if (!vt_open(&v))
        return;
    /* cast i8 -> f32, cast i32 -> f16, cont i8 -> i8 of a transposed view */
    const int64_t s[2] = {5, 7};
    int8_t x8[35];
    int32_t x32[35];
    for (int i = 0; i < 35; i++) {
        x8[i] = (int8_t)(i * 7 - 120);
        x32[i] = i * 1001 - 9000;
    }
    vt_node n;
    node_init(&n, BST_OP_CAST, 1);
    n.in[0] = tdesc(BST_DTYPE_I8, 2, s, 0);
    n.out = tdesc(BST_DTYPE_F32, 2, s, 1);
    node_attr(&n, BST_ATTR_DTYPE, BST_ATTR_KIND_INT)->ints[0] = BST_DTYPE_F32;
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);
    void *b[2] = {alloc_write(&v, x8, sizeof x8), alloc_write(&v, NULL, 35 * 4)};
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 1), BST_OK);
    float f[35];
    CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, b[1], 0, f, sizeof f), BST_OK);
    for (int i = 0; i < 35; i++)
        CU_ASSERT_EQUAL(f[i], (float)x8[i]);
    v.api->executable_free(v.dev, exe);
    v.api->buffer_free(v.dev, b[0]);
    v.api->buffer_free(v.dev, b[1]);

    node_init(&n, BST_OP_CAST, 1);
    n.in[0] = tdesc(BST_DTYPE_I32, 2, s, 0);
    n.out = tdesc(BST_DTYPE_F16, 2, s, 1);
    node_attr(&n, BST_ATTR_DTYPE, BST_ATTR_KIND_INT)->ints[0] = BST_DTYPE_F16;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);
    b[0] = alloc_write(&v, x32, sizeof x32);
    b[1] = alloc_write(&v, NULL, 35 * 2);
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 1), BST_OK);
    uint16_t h[35];
    CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, b[1], 0, h, sizeof h), BST_OK);
    for (int i = 0; i < 35; i++)
        CU_ASSERT_EQUAL(h[i], bsti_f32_to_f16((float)x32[i]));
    v.api->executable_free(v.dev, exe);
    v.api->buffer_free(v.dev, b[0]);
    v.api->buffer_free(v.dev, b[1]);

    /* cont of the transposed i8 view [7, 5] of x8: bytes move, neighbours untouched */
    const int64_t st[2] = {7, 5};
    node_init(&n, BST_OP_CONT, 1);
    n.in[0] = tdesc(BST_DTYPE_I8, 2, st, 0);
    n.in[0].strides[0] = 1;
    n.in[0].strides[1] = 7;
    n.out = tdesc(BST_DTYPE_I8, 2, st, 1);
    n.out.offset = 3; /* an odd byte offset: i8 needs no alignment */
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);
    uint8_t guard[41];
    memset(guard, 0xA5, sizeof guard);
    b[0] = alloc_write(&v, x8, sizeof x8);
    b[1] = alloc_write(&v, guard, sizeof guard);
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 1), BST_OK);
    uint8_t got[41];
    CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, b[1], 0, got, sizeof got), BST_OK);
    for (int i = 0; i < 41; i++) {
        int k = i - 3;
        uint8_t want = k >= 0 && k < 35 ? (uint8_t)x8[(k % 5) * 7 + k / 5] : 0xA5;
        CU_ASSERT_EQUAL(got[i], want);
    }
    v.api->executable_free(v.dev, exe);
    v.api->buffer_free(v.dev, b[0]);
    v.api->buffer_free(v.dev, b[1]);
    vt_close(&v);
}

/* --- pipeline cache -------------------------------------------------------------------------- */

static char cache_root[128];

/* Path of the one pipeline cache file under cache_root/vulkan, or "" if none. */
static void cache_file(char *out, size_t cap)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/vulkan", cache_root);
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "pipelines-", 10) == 0 && strstr(e->d_name, ".bin") &&
            !strstr(e->d_name, ".bin."))
            snprintf(out, cap, "%s/%s", dir, e->d_name);
    closedir(d);
}

/* Opens the device, runs a scale node (compiling its pipeline), closes (saving the cache). */
static void scale_session(float scale)
{
    vt v;
    if (!vt_open(&v))
        return;
    vt_node n;
    scale_node(&n, scale);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);
    float x[8 * 64];
    fill(x, COUNT(x), scale);
    void *b[2] = {alloc_write(&v, x, sizeof x), alloc_write(&v, NULL, sizeof x)};
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 8), BST_OK);
    CU_ASSERT(check_scaled(&v, b[1], x, scale, 8, 0.0f));
    v.api->executable_free(v.dev, exe);
    v.api->buffer_free(v.dev, b[0]);
    v.api->buffer_free(v.dev, b[1]);
    vt_close(&v);
}

static uint8_t *read_all(const char *path, size_t *out_size)
{
    return (uint8_t *)bst_test_read_file(path, out_size);
}

static void write_all(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, size, f), size);
    fclose(f);
}

/* Corrupts the cache with `mutate`, reopens, expects `why` in the log and a rebuilt file. */
static void corrupt_and_check(const char *label, void (*mutate)(uint8_t *, size_t *), const char *why)
{
    char path[512];
    cache_file(path, sizeof path);
    size_t size = 0;
    uint8_t *data = read_all(path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    mutate(data, &size);
    write_all(path, data, size);
    free(data);
    log_clear();
    scale_session(1.25f); /* still computes correctly */
    bool seen = log_has(why);
    printf("\n  %s: %s", label, seen ? "discarded as expected" : "NOT discarded");
    CU_ASSERT(seen);
    CU_ASSERT(log_has("discarded"));
    /* The rebuilt file is valid again: the next open loads it. */
    log_clear();
    scale_session(1.5f);
    CU_ASSERT(log_has("loaded"));
    CU_ASSERT(!log_has("discarded"));
}

static void flip_data(uint8_t *d, size_t *n) { d[64 + (*n - 64) / 2] ^= 0x5A; }
static void other_device(uint8_t *d, size_t *n) { (void)n; d[16] ^= 0x01; }
static void truncate_file(uint8_t *d, size_t *n) { (void)d; *n = 100; }
static void not_ours(uint8_t *d, size_t *n) { memcpy(d, "GARBAGE!", 8); (void)n; }
static void driver_header(uint8_t *d, size_t *n)
{
    /* Our header intact, the driver's header inside altered (and our hash fixed to match):
     * the second check must catch it. */
    d[64 + 8] ^= 0x01;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 64; i < *n; i++) {
        h ^= d[i];
        h *= UINT64_C(0x100000001b3);
    }
    for (int i = 0; i < 8; i++)
        d[48 + i] = (uint8_t)(h >> (8 * i));
}

static void test_pipeline_cache(void)
{
    {
        vt probe;
        if (!vt_open(&probe))
            return;
        vt_close(&probe);
    }
    snprintf(cache_root, sizeof cache_root, "/tmp/bastion-vk-cache-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(cache_root));
    char *saved = getenv("BASTION_CACHE_DIR") ? strdup(getenv("BASTION_CACHE_DIR")) : NULL;
    setenv("BASTION_CACHE_DIR", cache_root, 1);

    scale_session(2.0f);
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "%s/vulkan", cache_root);
    struct stat s;
    CU_ASSERT_EQUAL_FATAL(stat(dir, &s), 0);
    CU_ASSERT(S_ISDIR(s.st_mode));
    CU_ASSERT_EQUAL(s.st_mode & 0777, 0700);
    cache_file(path, sizeof path);
    printf("\n  cache file: %s", path);
    CU_ASSERT_FATAL(path[0] != '\0');
    size_t size = 0;
    uint8_t *data = read_all(path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    CU_ASSERT(size >= 64 + 32); /* our header, then at least the driver's */
    CU_ASSERT_EQUAL(memcmp(data, "BSTVKPC1", 8), 0);
    free(data);

    log_clear();
    scale_session(3.0f);
    CU_ASSERT(log_has("loaded"));

    corrupt_and_check("flipped data byte", flip_data, "hash mismatch");
    corrupt_and_check("other device id", other_device, "another device");
    corrupt_and_check("truncated file", truncate_file, "truncated");
    corrupt_and_check("foreign file", not_ours, "not a Bastion pipeline cache");
    corrupt_and_check("driver header", driver_header, "driver cache header");

    if (saved) {
        setenv("BASTION_CACHE_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("BASTION_CACHE_DIR");
    }
    cache_file(path, sizeof path);
    if (path[0])
        unlink(path);
    rmdir(dir);
    rmdir(cache_root);
}

/* --- faults ---------------------------------------------------------------------------------- */

static void test_faults(void)
{
    vt v;
    if (!vt_open(&v))
        return;
    vt_node n;
    scale_node(&n, -1.0f);
    float x[8 * 64];
    fill(x, COUNT(x), 4.0f);
    void *b[2] = {alloc_write(&v, x, sizeof x), alloc_write(&v, NULL, sizeof x)};

    void *buf = NULL;
    bsti_fault_set("alloc", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(v.api->buffer_alloc(v.dev, 4096, &buf), BST_ERR_DEVICE_OOM);
    printf("\n  alloc: %s", bst_last_error());
    CU_ASSERT(strstr(bst_last_error(), "VK_ERROR_OUT_OF_DEVICE_MEMORY") != NULL);
    CU_ASSERT_PTR_NULL(buf);
    CU_ASSERT_EQUAL(v.api->buffer_alloc(v.dev, 4096, &buf), BST_OK);
    v.api->buffer_free(v.dev, buf);

    void *exe = NULL;
    bsti_fault_set("compile", BST_ERR_COMPILE, 1);
    CU_ASSERT_EQUAL(compile1(&v, &n, 2, 0, &exe), BST_ERR_COMPILE);
    printf("\n  compile: %s", bst_last_error());
    CU_ASSERT_PTR_NULL(exe);
    bsti_fault_set("compile", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(compile1(&v, &n, 2, 0, &exe), BST_ERR_DEVICE_OOM);
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);

    bsti_fault_set("execute", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 8), BST_ERR_DEVICE_OOM);
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 8), BST_OK); /* out of memory is not sticky */
    CU_ASSERT(check_scaled(&v, b[1], x, -1.0f, 8, 0.0f));

    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 8), BST_ERR_DEVICE_LOST);
    printf("\n  execute: %s", bst_last_error());
    /* A lost device stays lost: everything fails the same way, nothing crashes. */
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 8), BST_ERR_DEVICE_LOST);
    printf("\n  execute again: %s", bst_last_error());
    CU_ASSERT(strstr(bst_last_error(), "lost") != NULL);
    CU_ASSERT_EQUAL(v.api->buffer_alloc(v.dev, 4096, &buf), BST_ERR_DEVICE_LOST);
    void *exe2 = NULL;
    CU_ASSERT_EQUAL(compile1(&v, &n, 2, 0, &exe2), BST_ERR_DEVICE_LOST);
    float tmp[4];
    CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, b[1], 0, tmp, sizeof tmp), BST_ERR_DEVICE_LOST);
    v.api->executable_free(v.dev, exe);
    v.api->buffer_free(v.dev, b[0]);
    v.api->buffer_free(v.dev, b[1]);
    vt_close(&v);

    /* A device that fails to start reports why; the next context starts it fine. */
    bsti_fault_set("device_open", BST_ERR_DEVICE_LOST, 1);
    bst_context *ctx = NULL;
    bst_context_options opt = {.struct_size = sizeof opt, .backends = "vulkan"};
    CU_ASSERT_EQUAL_FATAL(bst_context_create(&opt, &ctx), BST_OK);
    void *h = NULL;
    CU_ASSERT_EQUAL(bsti_device_get(ctx, 0, &h), BST_ERR_DEVICE_LOST);
    bst_context_destroy(ctx);
    bsti_fault_set("device_open", BST_OK, 0);
    scale_session(0.75f);

    bsti_fault_set("alloc", BST_OK, 0);
    bsti_fault_set("compile", BST_OK, 0);
    bsti_fault_set("execute", BST_OK, 0);
}

/* --- forced fallbacks ------------------------------------------------------------------------ */

static void test_forced_fallbacks(void)
{
    setenv("BASTION_VULKAN_FORCE", "no-s16,no-subgroup,staging", 1);
    log_clear();
    vt v;
    if (!vt_open(&v)) {
        unsetenv("BASTION_VULKAN_FORCE");
        return;
    }
    CU_ASSERT(log_has("32-bit word storage, shared-memory reductions; staged device memory"));
    vt_node n;
    scale_node(&n, 0.5f);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(&v, &n, 2, 0, &exe), BST_OK);
    float x[8 * 64];
    fill(x, COUNT(x), 9.0f);
    void *b[2] = {alloc_write(&v, x, sizeof x), alloc_write(&v, NULL, sizeof x)};
    CU_ASSERT_EQUAL(run(&v, exe, b, 2, 6), BST_OK);
    CU_ASSERT(check_scaled(&v, b[1], x, 0.5f, 6, 0.0f));
    void *ptr = NULL;
    CU_ASSERT_EQUAL(v.api->buffer_map(v.dev, b[0], &ptr), BST_ERR_UNSUPPORTED);
    /* device-side copy and partial reads and writes through staging */
    CU_ASSERT_EQUAL(v.api->buffer_copy(v.dev, b[1], 64, b[0], 128, 256), BST_OK);
    float got[64];
    CU_ASSERT_EQUAL(v.api->buffer_read(v.dev, b[1], 64, got, 256), BST_OK);
    CU_ASSERT_EQUAL(memcmp(got, x + 32, 256), 0);
    CU_ASSERT_EQUAL(v.api->buffer_copy(v.dev, b[1], 8, b[1], 0, 1024), BST_OK); /* overlapping */
    v.api->executable_free(v.dev, exe);
    v.api->buffer_free(v.dev, b[0]);
    v.api->buffer_free(v.dev, b[1]);
    vt_close(&v);
    unsetenv("BASTION_VULKAN_FORCE");
}

/* --- op cases under the validation layer ----------------------------------------------------- */

static bo_rng rng;

static bo_tensor *in_tensor(bo_case *c, bst_dtype dt, uint32_t rank, const int64_t *shape,
                            const uint32_t *perm, int64_t pad, double lo, double hi)
{
    bo_tensor *t = bo_case_input(c);
    bo_tensor_view(t, dt, rank, shape, perm, pad);
    bo_tensor_fill(t, &rng, lo, hi);
    return t;
}

static double *out_values(const bo_case *c)
{
    int64_t n = 1;
    for (uint32_t d = 0; d < c->out.rank; d++)
        n *= bo_eff_dim(c, &c->out, d);
    double *o = calloc((size_t)n, sizeof *o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    return o;
}

static void finish(bo_case *c, double *ref)
{
    bo_case_set_ref(c, ref);
    free(ref);
    CU_ASSERT_EQUAL(bo_run(c), 0);
}

static void case_matmul(bst_dtype db, int64_t ba, int64_t bb, int64_t m, int64_t nn, int64_t k,
                        int64_t n_tokens)
{
    bo_case c;
    bo_case_init(&c, BST_OP_MATMUL, bst_dtype_name(db));
    c.tol = c.cpu_tol = 5e-4;
    int64_t sa[3] = {ba, m, k}, sb[3] = {bb, nn, k}, so[3] = {ba, m, nn};
    bo_tensor *a = in_tensor(&c, BST_DTYPE_F32, 3, sa, NULL, 0, -1, 1);
    bo_tensor *b = in_tensor(&c, db, 3, sb, NULL, 0, -1, 1);
    bo_case_output(&c, BST_DTYPE_F32, 3, so);
    if (n_tokens) {
        c.n_tokens = n_tokens;
        a->sym[1] = c.out.sym[1] = BST_SYM_N_TOKENS;
    }
    int64_t ea[3], eb[3];
    double *av = bo_eff_values(&c, a, ea), *bv = bo_eff_values(&c, b, eb);
    double *out = out_values(&c);
    oracle_matmul(av, ba, ea[1], k, bv, bb, eb[1], out);
    free(av);
    free(bv);
    finish(&c, out);
}

static void case_softmax(void)
{
    bo_case c;
    bo_case_init(&c, BST_OP_SOFTMAX, "f32+mask");
    const int64_t sx[3] = {2, 5, 16}, sm[2] = {5, 16};
    c.n_tokens = 3;
    c.n_kv = 9;
    bo_tensor *x = in_tensor(&c, BST_DTYPE_F32, 3, sx, NULL, 0, -5, 5);
    bo_tensor *m = bo_case_input(&c);
    bo_tensor_contig(m, BST_DTYPE_F32, 2, sm);
    float mv[80];
    for (int r = 0; r < 5; r++)
        for (int j = 0; j < 16; j++)
            mv[r * 16 + j] = r == 1 ? -INFINITY : j > r + 6 ? -INFINITY : 0.0f;
    bo_tensor_set(m, mv);
    bo_case_attr_float(&c, BST_ATTR_SCALE, 0.125);
    bo_case_output(&c, BST_DTYPE_F32, 3, sx);
    x->sym[1] = c.out.sym[1] = m->sym[0] = BST_SYM_N_TOKENS;
    x->sym[2] = c.out.sym[2] = m->sym[1] = BST_SYM_N_KV;
    int64_t ex[3], em[2];
    double *xv = bo_eff_values(&c, x, ex), *mvv = bo_eff_values(&c, m, em);
    double *out = out_values(&c);
    oracle_softmax(xv, 3, ex, mvv, 2, em, 0.125, out);
    free(xv);
    free(mvv);
    finish(&c, out);
}

static void case_rope(int mode)
{
    bo_case c;
    bo_case_init(&c, BST_OP_ROPE, "f32");
    const int64_t sx[3] = {4, 3, 64}, sp[1] = {4};
    bo_tensor *x = in_tensor(&c, BST_DTYPE_F32, 3, sx, NULL, 0, -1, 1);
    bo_tensor *p = bo_case_input(&c);
    bo_tensor_contig(p, BST_DTYPE_I32, 1, sp);
    int32_t pos[4] = {4000, 17, 3, 0};
    bo_tensor_set_ids(p, pos);
    bo_case_attr_int(&c, BST_ATTR_ROPE_MODE, mode);
    bo_case_attr_float(&c, BST_ATTR_ROPE_THETA, 100000.0);
    bo_case_attr_int(&c, BST_ATTR_ROPE_DIMS, 48);
    bo_case_output(&c, BST_DTYPE_F32, 3, sx);
    double *xv = bo_eff_values(&c, x, NULL);
    double *out = out_values(&c);
    oracle_rope(xv, 4, 3, 64, pos, mode, 100000.0, 48, out);
    free(xv);
    finish(&c, out);
}

static void case_get_rows(bst_dtype dt)
{
    bo_case c;
    bo_case_init(&c, BST_OP_GET_ROWS, bst_dtype_name(dt));
    const int64_t st[2] = {9, 64}, si[1] = {5}, so[2] = {5, 64};
    bo_tensor *t = in_tensor(&c, dt, 2, st, NULL, 0, -2, 2);
    int32_t ids[5] = {8, 0, 3, 3, 1};
    bo_tensor *it = bo_case_input(&c);
    bo_tensor_contig(it, BST_DTYPE_I32, 1, si);
    bo_tensor_set_ids(it, ids);
    bo_case_output(&c, BST_DTYPE_F32, 2, so);
    double *out = out_values(&c);
    oracle_get_rows(t->val, 9, 64, ids, 5, out);
    finish(&c, out);
}

static void case_set_rows(bst_dtype ddt)
{
    bo_case c;
    bo_case_init(&c, BST_OP_SET_ROWS, bst_dtype_name(ddt));
    const int64_t sd[2] = {9, 64}, ss[2] = {5, 64}, si[1] = {5};
    (void)in_tensor(&c, ddt, 2, sd, NULL, 0, -2, 2);
    bo_tensor *src = in_tensor(&c, BST_DTYPE_F32, 2, ss, NULL, 0, -2, 2);
    int32_t ids[5] = {7, 2, 0, 5, 8};
    bo_tensor *it = bo_case_input(&c);
    bo_tensor_contig(it, BST_DTYPE_I32, 1, si);
    bo_tensor_set_ids(it, ids);
    bo_case_output(&c, ddt, 2, sd);
    c.alias_in = 0;
    c.cpu_optional = bst_dtype_block_size(ddt) > 1;
    c.n_tokens = 3;
    src->sym[0] = it->sym[0] = BST_SYM_N_TOKENS;
    bo_case_alloc_ref(&c);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 64; j++) {
            c.ref[ids[i] * 64 + j] = src->val[i * 64 + j];
            c.expect[ids[i] * 64 + j] = 1;
        }
    bo_case_finish_ref(&c);
    CU_ASSERT_EQUAL(bo_run(&c), 0);
}

static void case_simple(bst_op op, bst_dtype in_dt, bst_dtype out_dt)
{
    bo_case c;
    char label[32];
    snprintf(label, sizeof label, "%s->%s", bst_dtype_name(in_dt), bst_dtype_name(out_dt));
    bo_case_init(&c, op, label);
    const int64_t s[2] = {6, 64};
    static const uint32_t tr[2] = {1, 0};
    bool block_out = bst_dtype_block_size(out_dt) > 1;
    bo_tensor *x = in_tensor(&c, in_dt, 2, s, block_out || op == BST_OP_RMS_NORM ? NULL : tr,
                             op == BST_OP_RMS_NORM ? 1 : 0, -3, 3);
    if (op == BST_OP_CAST || op == BST_OP_QUANTIZE)
        bo_case_attr_int(&c, BST_ATTR_DTYPE, out_dt);
    if (op == BST_OP_RMS_NORM)
        bo_case_attr_float(&c, BST_ATTR_EPS, 1e-5);
    bo_case_output(&c, out_dt, 2, s);
    double *xv = bo_eff_values(&c, x, NULL);
    if (op == BST_OP_RMS_NORM) {
        double *out = out_values(&c);
        oracle_rms_norm(xv, 6, 64, 1e-5, out);
        free(xv);
        xv = out;
    } else if (op == BST_OP_GELU) {
        double *out = out_values(&c);
        oracle_gelu(xv, 6 * 64, out);
        free(xv);
        xv = out;
    }
    finish(&c, xv);
}

static void case_argmax(void)
{
    bo_case c;
    bo_case_init(&c, BST_OP_ARGMAX, "f32");
    const int64_t s[2] = {4, 1000};
    bo_tensor *x = in_tensor(&c, BST_DTYPE_F32, 2, s, NULL, 0, -5, 5);
    bo_case_output(&c, BST_DTYPE_I32, 1, s);
    int32_t idx[4];
    oracle_argmax(x->val, 4, 1000, idx);
    double *out = out_values(&c);
    for (int i = 0; i < 4; i++)
        out[i] = idx[i];
    finish(&c, out);
}

static void case_add_concat(void)
{
    bo_case c;
    bo_case_init(&c, BST_OP_ADD, "f32");
    const int64_t sa[3] = {4, 5, 33}, sb[2] = {5, 1};
    bo_tensor *a = in_tensor(&c, BST_DTYPE_F32, 3, sa, NULL, 1, -2, 2);
    bo_tensor *b = in_tensor(&c, BST_DTYPE_F16, 2, sb, NULL, 0, -2, 2);
    bo_case_output(&c, BST_DTYPE_F32, 3, sa);
    double *out = out_values(&c);
    oracle_add(a->val, 3, sa, b->val, 2, sb, out);
    finish(&c, out);

    bo_case_init(&c, BST_OP_CONCAT, "f32");
    const int64_t s1[2] = {3, 17}, s2[2] = {3, 5}, so[2] = {3, 22};
    bo_tensor *p = in_tensor(&c, BST_DTYPE_F32, 2, s1, NULL, 0, -2, 2);
    bo_tensor *q = in_tensor(&c, BST_DTYPE_BF16, 2, s2, NULL, 0, -2, 2);
    bo_case_attr_int(&c, BST_ATTR_AXIS, 1);
    bo_case_output(&c, BST_DTYPE_F32, 2, so);
    out = out_values(&c);
    oracle_concat(p->val, s1, q->val, s2, 2, 1, out);
    finish(&c, out);
}

static void test_validation(void)
{
    {
        vt probe;
        if (!vt_open(&probe))
            return;
        vt_close(&probe);
    }
    CU_ASSERT(validation_seen); /* .ci/run installs vulkan-validationlayers */
    if (!validation_seen)
        printf("\n  the Khronos validation layer is not enabled (install vulkan-validationlayers)");
    bo_rng_seed(&rng, 7);
    bo_family_begin("validation");
    uint32_t vk = UINT32_MAX;
    for (uint32_t d = 0; d < bo_device_count(); d++)
        if (strncmp(bo_device_label(d), "vulkan", 6) == 0 && bo_device_handle(d))
            vk = d;
    CU_ASSERT_NOT_EQUAL_FATAL(vk, UINT32_MAX);
    static const bst_dtype mm[] = {BST_DTYPE_F32, BST_DTYPE_F16, BST_DTYPE_BF16, BST_DTYPE_Q4_0,
                                   BST_DTYPE_Q4_1, BST_DTYPE_Q5_0, BST_DTYPE_Q5_1, BST_DTYPE_Q8_0};
    for (size_t i = 0; i < COUNT(mm); i++)
        case_matmul(mm[i], 2, 1, 5, 17, 64, 0);
    case_matmul(BST_DTYPE_F16, 6, 2, 8, 9, 32, 3);
    case_matmul(BST_DTYPE_Q4_1, 1, 1, 40, 70, 96, 0);
    case_softmax();
    case_rope(0);
    case_rope(2);
    case_get_rows(BST_DTYPE_Q8_0);
    case_get_rows(BST_DTYPE_Q5_1);
    case_set_rows(BST_DTYPE_F16);
    case_set_rows(BST_DTYPE_Q8_0);
    case_simple(BST_OP_CAST, BST_DTYPE_F32, BST_DTYPE_BF16);
    case_simple(BST_OP_CONT, BST_DTYPE_F16, BST_DTYPE_F32);
    case_simple(BST_OP_QUANTIZE, BST_DTYPE_F32, BST_DTYPE_Q5_0);
    case_simple(BST_OP_RMS_NORM, BST_DTYPE_F32, BST_DTYPE_F32);
    case_simple(BST_OP_GELU, BST_DTYPE_F32, BST_DTYPE_F32);
    case_argmax();
    case_add_concat();
    CU_ASSERT_EQUAL(bo_family_end(), 0);
    /* Fused attention (offered on lavapipe because main sets BASTION_VULKAN_FUSED): its record
     * has the fifth slot (the mask) no other shader uses. */
    CU_ASSERT_EQUAL(bo_attention_family(), 0);
    bo_print_summary();
    bo_shutdown();
    printf("\n  validation errors so far: %u", validation_errors);
    CU_ASSERT_EQUAL(validation_errors, 0);
}

static void test_no_validation_errors(void)
{
    /* Everything above ran with the validation layer on. (Without a device the loader's own
     * "no drivers" message counts as one: nothing to check then.) */
    vt probe;
    if (!vt_open(&probe))
        return;
    vt_close(&probe);
    printf("\n  validation errors in this process: %u", validation_errors);
    CU_ASSERT_EQUAL(validation_errors, 0);
}

int main(void)
{
    /* Every context this process creates runs under the Khronos validation layer. */
    setenv("BASTION_VULKAN_VALIDATION", "1", 1);
    setenv("BASTION_BACKENDS", "cpu,vulkan", 1); /* the harness' context in test_validation */
    setenv("BASTION_VULKAN_FUSED", "1", 1);      /* attention is offered on CPU-type devices */
    bst_set_log_callback(on_log, NULL, BST_LOG_DEBUG);
    bo_use_context_devices();
    static const bst_test_case cases[] = {
        {"devices", test_devices},
        {"rerun with other buffers and extents", test_rerun},
        {"bad ids", test_bad_ids},
        {"events", test_events},
        {"integer inputs", test_integer_inputs},
        {"pipeline cache", test_pipeline_cache},
        {"faults", test_faults},
        {"forced fallbacks", test_forced_fallbacks},
        {"ops under validation", test_validation},
        {"no validation errors", test_no_validation_errors},
        {NULL, NULL},
    };
    int rc = bst_test_run_suite("vulkan", cases);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    return rc;
}
