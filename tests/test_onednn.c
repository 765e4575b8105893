/*
 * Tests for the oneDNN backend plugin beyond op results (those are test_backend_ops, which runs
 * every op on every device, oneDNN's included): the device it reports (self-threaded, oneDNN's
 * version as driver version, a stable fingerprint), what query claims and declines, weights
 * repacked by prepare_weight (bf16 rows by default, s8 rows with per-row scales with
 * BASTION_ONEDNN_QMATMUL=s8) and matmuls on them — the path test_backend_ops does not take, since
 * it uploads weights in their native layout —, primitives recreated when symbolic extents
 * change, thread control, and the error paths: bad bindings and extents, a oneDNN failure named
 * with its primitive and status, injected faults.
 *
 * The plugin is loaded as the runtime loads it (dlopen of $BASTION_BACKEND_PATH/
 * libbst-backend-onednn.so, entry called with the real host table). When the build has no
 * oneDNN backend (BASTION_ONEDNN_BUILT undefined) the tests say so and pass; with the backend
 * built, a plugin that does not load is a failure.
 */
#include "graph/quant.h"
#include "runtime/runtime.h"

#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYOUT_S8ROWS (BST_LAYOUT_BACKEND + 1u)
#define LAYOUT_BF16ROWS (BST_LAYOUT_BACKEND + 2u)

static bst_backend_api api;
static bool loaded, load_tried;

static bool load_plugin(void)
{
    if (load_tried)
        return loaded;
    load_tried = true;
    bst_backend_entry_fn entry = bst_test_plugin_entry("libbst-backend-onednn.so");
    if (!entry) {
#ifdef BASTION_ONEDNN_BUILT
        CU_FAIL("the oneDNN backend was built but does not load");
#else
        printf("\n  oneDNN backend not built: skipped");
#endif
        return false;
    }
    memset(&api, 0, sizeof api);
    api.struct_size = sizeof api;
    CU_ASSERT_EQUAL_FATAL(entry(bsti_host_api(), BST_ABI_VERSION, &api), BST_OK);
    CU_ASSERT_STRING_EQUAL(api.name, "onednn");
    loaded = true;
    return true;
}

#define NEED_PLUGIN()       \
    do {                    \
        if (!load_plugin()) \
            return;         \
    } while (0)

/* Opens a device with BASTION_ONEDNN_QMATMUL set to `qmode` (NULL: unset) while it opens. */
static void *open_device(const char *qmode)
{
    if (qmode)
        setenv("BASTION_ONEDNN_QMATMUL", qmode, 1);
    void *dev = NULL;
    bst_status st = api.device_open(api.ctx, 0, &dev);
    unsetenv("BASTION_ONEDNN_QMATMUL");
    if (st != BST_OK)
        fprintf(stderr, "\n  device_open: %s\n", bst_last_error());
    CU_ASSERT_EQUAL(st, BST_OK);
    return dev;
}

/* --- descriptors --- */

static bst_tensor_desc desc(bst_dtype dt, uint32_t rank, const int64_t *shape, uint32_t binding)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.dtype = dt;
    d.rank = rank;
    uint32_t bs = 1, bb = 4;
    CU_ASSERT(bsti_quant_geometry(dt, &bs, &bb) || dt == BST_DTYPE_F32);
    int64_t stride = bb;
    for (int i = (int)rank - 1; i >= 0; i--) {
        d.shape[i] = shape[i];
        d.strides[i] = stride;
        stride *= i == (int)rank - 1 ? shape[i] / bs : shape[i];
    }
    d.binding = binding;
    return d;
}

typedef struct node_store {
    bst_tensor_desc in[2];
    const bst_tensor_desc *in_ptr[2];
    bst_tensor_desc out;
    bst_attr attr[1];
    const bst_attr *attr_ptr[1];
    bst_node_desc node;
} node_store;

static void node_init(node_store *s, bst_op op, uint32_t n_in, uint32_t n_attrs)
{
    for (uint32_t i = 0; i < 2; i++)
        s->in_ptr[i] = &s->in[i];
    s->attr_ptr[0] = &s->attr[0];
    memset(&s->node, 0, sizeof s->node);
    s->node.struct_size = sizeof s->node;
    s->node.op = op;
    s->node.n_inputs = n_in;
    s->node.inputs = s->in_ptr;
    s->node.output = &s->out;
    s->node.n_attrs = n_attrs;
    s->node.attrs = s->attr_ptr;
}

static void float_attr(node_store *s, bst_attr_key key, double v)
{
    memset(&s->attr[0], 0, sizeof s->attr[0]);
    s->attr[0].struct_size = sizeof s->attr[0];
    s->attr[0].key = key;
    s->attr[0].kind = BST_ATTR_KIND_FLOAT;
    s->attr[0].count = 1;
    s->attr[0].f = v;
}

/* matmul a f32[M,K] (binding 0) x b dt[N,K] (binding 1) -> f32[M,N] (binding 2) */
static void matmul_node(node_store *s, bst_dtype bdt, int64_t M, int64_t N, int64_t K)
{
    node_init(s, BST_OP_MATMUL, 2, 0);
    s->in[0] = desc(BST_DTYPE_F32, 2, (const int64_t[]){M, K}, 0);
    s->in[1] = desc(bdt, 2, (const int64_t[]){N, K}, 1);
    s->out = desc(BST_DTYPE_F32, 2, (const int64_t[]){M, N}, 2);
}

static uint32_t query(void *dev, const bst_node_desc *node, bst_kernel_variant *vars)
{
    memset(vars, 0, 4 * sizeof *vars);
    for (int i = 0; i < 4; i++)
        vars[i].struct_size = sizeof vars[i];
    uint32_t count = 99;
    CU_ASSERT_EQUAL(api.query(dev, node, vars, sizeof vars[0], 4, &count), BST_OK);
    return count;
}

static bst_status compile1(void *dev, const bst_node_desc *node, uint32_t n_bindings, void **exe)
{
    const bst_node_desc *nodes[1] = {node};
    bst_partition_desc p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_nodes = 1;
    p.nodes = nodes;
    p.n_bindings = n_bindings;
    *exe = NULL;
    return api.compile(dev, &p, exe);
}

static void *buffer(void *dev, const void *data, uint64_t size)
{
    void *b = NULL;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, size, &b), BST_OK);
    if (data)
        CU_ASSERT_EQUAL(api.buffer_write(dev, b, 0, data, size), BST_OK);
    return b;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void fill(float *v, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)lcg(&seed) / (float)(1u << 24) * 2.0f - 1.0f;
}

static double nmse(const float *got, const double *want, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return den > 0.0 ? num / den : num;
}

/* --- tests --- */

static void test_device(void)
{
    NEED_PLUGIN();
    bst_device_info a, b;
    uint32_t n = 0;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    b = a;
    CU_ASSERT_EQUAL(api.enumerate(api.ctx, &a, sizeof a, 1, &n), BST_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(api.enumerate(api.ctx, &b, sizeof b, 1, &n), BST_OK);
    CU_ASSERT(a.self_threaded);
    CU_ASSERT(a.unified_memory);
    CU_ASSERT_EQUAL(a.kind, BST_DEVICE_CPU);
    CU_ASSERT_EQUAL(strncmp(a.driver_version, "oneDNN 2.", 9), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.name, "oneDNN CPU ("));
    CU_ASSERT_NOT_EQUAL(a.fingerprint, 0);
    CU_ASSERT_EQUAL(a.fingerprint, b.fingerprint);
    CU_ASSERT_PTR_NOT_NULL(api.set_num_threads);
    void *dev = NULL;
    CU_ASSERT_EQUAL(api.device_open(api.ctx, 1, &dev), BST_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(api.enumerate(api.ctx, &a, 8, 1, &n), BST_ERR_ABI); /* stride too small */
}

static void test_query(void)
{
    NEED_PLUGIN();
    void *dev = open_device(NULL);
    if (!dev)
        return;
    bst_kernel_variant v[4];
    node_store s;
    matmul_node(&s, BST_DTYPE_F32, 3, 16, 64);
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "dnnl_matmul_f32");
    uint64_t h_f32 = v[0].source_hash;
    matmul_node(&s, BST_DTYPE_Q4_1, 3, 16, 64);
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "dnnl_matmul_bf16");
    CU_ASSERT_NOT_EQUAL(v[0].source_hash, h_f32);
    matmul_node(&s, BST_DTYPE_Q5_0, 3, 16, 64); /* no q5 path */
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 0);
    matmul_node(&s, BST_DTYPE_F16, 3, 16, 64); /* no f16 matmul on this CPU in oneDNN 2.6 */
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 0);
    /* RMS norm: not expressible in oneDNN 2.6, never claimed. */
    node_init(&s, BST_OP_RMS_NORM, 1, 1);
    s.in[0] = desc(BST_DTYPE_F32, 2, (const int64_t[]){2, 64}, 0);
    s.out = desc(BST_DTYPE_F32, 2, (const int64_t[]){2, 64}, 1);
    float_attr(&s, BST_ATTR_EPS, 1e-5);
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 0);
    s.node.op = BST_OP_LAYER_NORM;
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "dnnl_layer_norm");
    /* An op id this plugin has never heard of: unsupported, not an error. */
    s.node.op = 1000;
    CU_ASSERT_EQUAL(query(dev, &s.node, v), 0);
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile1(dev, &s.node, 2, &exe), BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(exe);
    /* The s8 device names its variant so. */
    void *dev8 = open_device("s8");
    if (dev8) {
        matmul_node(&s, BST_DTYPE_Q8_0, 3, 16, 64);
        CU_ASSERT_EQUAL(query(dev8, &s.node, v), 1);
        CU_ASSERT_STRING_EQUAL(v[0].name, "dnnl_matmul_s8");
        api.device_close(dev8);
    }
    api.device_close(dev);
}

/* y = a . w^T with w (q4_1 or q8_0) repacked by prepare_weight (into oneDNN's blocked layout),
 * against the dequantized f64 reference; run twice. */
static void check_prepared_matmul(const char *qmode, bst_dtype wdt, uint32_t want_layout,
                                  double bound)
{
    void *dev = open_device(qmode);
    if (!dev)
        return;
    enum { M = 5, N = 96, K = 128 };
    float a[M * K], wf[N * K], wdq[N * K], y[M * N];
    double ref[M * N];
    fill(a, M * K, 1);
    fill(wf, N * K, 2);
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_FATAL(bsti_quant_geometry(wdt, &bs, &bb));
    size_t wbytes = (size_t)N * (K / bs) * bb;
    uint8_t *wq = malloc(wbytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(wq);
    CU_ASSERT_EQUAL(bsti_quantize(wdt, wf, wq, N * K), BST_OK);
    CU_ASSERT_EQUAL(bsti_dequantize(wdt, wq, wdq, N * K), BST_OK);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)a[m * K + k] * wdq[n * K + k];
            ref[m * N + n] = acc;
        }
    node_store s;
    matmul_node(&s, wdt, M, N, K);
    void *wbuf = NULL;
    uint64_t bytes = 0;
    uint32_t layout = 0;
    CU_ASSERT_EQUAL_FATAL(api.prepare_weight(dev, &s.in[1], wq, wbytes, &wbuf, &bytes, &layout),
                          BST_OK);
    CU_ASSERT_EQUAL(layout, want_layout);
    /* The values (1 or 2 bytes each) plus, for s8, one f32 scale per row — in the layout
     * oneDNN's matmul picked, which pads to whole column blocks and, for s8, appends its
     * compensation terms: never less than the plain size, at most twice it. */
    uint64_t esz = want_layout == LAYOUT_S8ROWS ? 1u : 2u;
    uint64_t plain = (uint64_t)N * K * esz + (want_layout == LAYOUT_S8ROWS ? N * 4u : 0u);
    if (!(bytes >= plain && bytes <= 2 * plain))
        fprintf(stderr, "\n  prepared %s: %llu bytes, expected %llu..%llu\n", bst_dtype_name(wdt),
                (unsigned long long)bytes, (unsigned long long)plain,
                (unsigned long long)(2 * plain));
    CU_ASSERT(bytes >= plain && bytes <= 2 * plain);
    /* A repacked weight is not host-readable bytes. */
    CU_ASSERT_EQUAL(api.buffer_read(dev, wbuf, 0, y, 16), BST_ERR_INVALID_ARG);
    s.in[1].layout = layout;
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(dev, &s.node, 3, &exe), BST_OK);
    void *bufs[3] = {buffer(dev, a, sizeof a), wbuf, buffer(dev, NULL, sizeof y)};
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 1, .n_kv = 1};
    for (int run = 0; run < 2; run++) {
        memset(y, 0, sizeof y);
        CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
        CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, y, sizeof y), BST_OK);
        double e = nmse(y, ref, M * N);
        if (!(e <= bound))
            fprintf(stderr, "\n  %s %s run %d: NMSE %.3g > %.3g\n", qmode ? qmode : "default",
                    bst_dtype_name(wdt), run, e, bound);
        CU_ASSERT(e <= bound);
    }
    /* The native layout where the device's repacked one is named: refused with a message. */
    bst_tensor_desc native = s.in[1];
    native.layout = BST_LAYOUT_NATIVE;
    s.in[1] = native;
    void *exe2 = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(dev, &s.node, 3, &exe2), BST_OK);
    CU_ASSERT_EQUAL(api.execute(dev, exe2, bufs, 3, &rp), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "repacked weight"));
    api.executable_free(dev, exe2);
    api.executable_free(dev, exe);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    free(wq);
    api.device_close(dev);
}

static void test_prepared_weights(void)
{
    NEED_PLUGIN();
    /* bf16 rows: the weight and the activations rounded to bf16 (8-bit mantissas). */
    check_prepared_matmul(NULL, BST_DTYPE_Q4_1, LAYOUT_BF16ROWS, 5e-4);
    check_prepared_matmul(NULL, BST_DTYPE_Q8_0, LAYOUT_BF16ROWS, 5e-4);
    /* s8 rows and s8 activations, both with per-row scales: the bound of 8-bit quantization
     * of both operands (measured ~3e-5 on these uniform values). */
    check_prepared_matmul("s8", BST_DTYPE_Q4_1, LAYOUT_S8ROWS, 5e-4);
    check_prepared_matmul("s8", BST_DTYPE_Q8_0, LAYOUT_S8ROWS, 5e-4);
}

/* a[n_tokens<=8, 64] x w f32[16, 64]: the primitive is recreated when n_tokens changes, and
 * rows past n_tokens are left alone. Also thread control. */
static void test_symbolic_and_threads(void)
{
    NEED_PLUGIN();
    void *dev = open_device(NULL);
    if (!dev)
        return;
    enum { MB = 8, N = 16, K = 64 };
    float a[MB * K], w[N * K], y[MB * N];
    fill(a, MB * K, 3);
    fill(w, N * K, 4);
    node_store s;
    matmul_node(&s, BST_DTYPE_F32, MB, N, K);
    s.in[0].sym[0] = BST_SYM_N_TOKENS;
    s.out.sym[0] = BST_SYM_N_TOKENS;
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile1(dev, &s.node, 3, &exe), BST_OK);
    void *bufs[3] = {buffer(dev, a, sizeof a), buffer(dev, w, sizeof w),
                     buffer(dev, NULL, sizeof y)};
    static const int64_t runs[] = {3, 5, 3, 8, 1};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (r == 3)
            CU_ASSERT_EQUAL(api.set_num_threads(dev, 1), BST_OK);
        float sentinel = -12345.0f;
        for (int i = 0; i < MB * N; i++)
            y[i] = sentinel;
        CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[2], 0, y, sizeof y), BST_OK);
        bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = runs[r], .n_kv = 1};
        CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
        CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, y, sizeof y), BST_OK);
        double worst = 0.0;
        for (int m = 0; m < MB; m++)
            for (int n = 0; n < N; n++) {
                if (m >= runs[r]) {
                    CU_ASSERT_EQUAL(y[m * N + n], sentinel);
                    continue;
                }
                double acc = 0.0;
                for (int k = 0; k < K; k++)
                    acc += (double)a[m * K + k] * w[n * K + k];
                double d = fabs(acc - y[m * N + n]);
                worst = d > worst ? d : worst;
            }
        CU_ASSERT(worst < 1e-4);
    }
    CU_ASSERT_EQUAL(api.set_num_threads(dev, 5000), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(api.set_num_threads(dev, 0), BST_OK); /* back to OpenMP's default */
    /* n_tokens past its bound: refused, named. */
    bst_run_params bad = {.struct_size = sizeof bad, .n_tokens = MB + 1, .n_kv = 1};
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &bad), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "n_tokens"));
    /* Too few bindings, and a buffer too small for its tensor. */
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 2, .n_kv = 1};
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &rp), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "binding 2 of 2"));
    void *small = buffer(dev, NULL, 64);
    void *bufs2[3] = {bufs[0], small, bufs[2]};
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs2, 3, &rp), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "outside"));
    api.buffer_free(dev, small);
    api.executable_free(dev, exe);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    api.device_close(dev);
}

/* A node oneDNN itself declines at compile (softmax whose mask is f16: oneDNN 2.6 has no such
 * binary kernel on CPU): the status is UNSUPPORTED and the message names the primitive, the
 * call and oneDNN's status. Query declined it too. */
static void test_dnnl_error(void)
{
    NEED_PLUGIN();
    void *dev = open_device(NULL);
    if (!dev)
        return;
    node_store s;
    node_init(&s, BST_OP_SOFTMAX, 2, 1);
    s.in[0] = desc(BST_DTYPE_F32, 2, (const int64_t[]){4, 32}, 0);
    s.in[1] = desc(BST_DTYPE_F16, 2, (const int64_t[]){4, 32}, 1);
    s.in[1].strides[1] = 2;
    s.in[1].strides[0] = 64;
    s.out = desc(BST_DTYPE_F32, 2, (const int64_t[]){4, 32}, 2);
    float_attr(&s, BST_ATTR_SCALE, 0.5);
    bst_kernel_variant v[4];
    uint32_t claimed = query(dev, &s.node, v);
    void *exe = NULL;
    bst_status st = compile1(dev, &s.node, 3, &exe);
    if (claimed == 0) {
        CU_ASSERT_EQUAL(st, BST_ERR_UNSUPPORTED);
        CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "binary: dnnl_primitive_desc_create"));
        CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "unimplemented"));
    } else {
        CU_ASSERT_EQUAL(st, BST_OK); /* a oneDNN build that has the kernel */
    }
    if (exe)
        api.executable_free(dev, exe);
    api.device_close(dev);
}

/* Softmax with a mask: a row whose positions are all removed gives zeros, not NaN. */
static void test_softmax_all_masked(void)
{
    NEED_PLUGIN();
    void *dev = open_device(NULL);
    if (!dev)
        return;
    enum { R = 3, C = 17 };
    float x[R * C], mask[R * C], y[R * C];
    fill(x, R * C, 5);
    for (int i = 0; i < R * C; i++)
        mask[i] = (i / C == 1 || i % 3 == 0) ? -INFINITY : 0.0f;
    node_store s;
    node_init(&s, BST_OP_SOFTMAX, 2, 1);
    s.in[0] = desc(BST_DTYPE_F32, 2, (const int64_t[]){R, C}, 0);
    s.in[1] = desc(BST_DTYPE_F32, 2, (const int64_t[]){R, C}, 1);
    s.out = desc(BST_DTYPE_F32, 2, (const int64_t[]){R, C}, 2);
    float_attr(&s, BST_ATTR_SCALE, 0.75);
    void *exe = NULL;
    bst_status cst = compile1(dev, &s.node, 3, &exe);
    if (cst != BST_OK)
        fprintf(stderr, "\n  compile: %s\n", bst_last_error());
    CU_ASSERT_EQUAL_FATAL(cst, BST_OK);
    void *bufs[3] = {buffer(dev, x, sizeof x), buffer(dev, mask, sizeof mask),
                     buffer(dev, NULL, sizeof y)};
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 1, .n_kv = 1};
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, y, sizeof y), BST_OK);
    for (int r = 0; r < R; r++) {
        double sum = 0.0, mx = -INFINITY;
        for (int c = 0; c < C; c++)
            if (mask[r * C + c] == 0.0f && x[r * C + c] * 0.75 > mx)
                mx = x[r * C + c] * 0.75;
        for (int c = 0; c < C; c++)
            if (mask[r * C + c] == 0.0f)
                sum += exp(x[r * C + c] * 0.75 - mx);
        for (int c = 0; c < C; c++) {
            double want = r == 1 || mask[r * C + c] != 0.0f
                              ? 0.0
                              : exp(x[r * C + c] * 0.75 - mx) / sum;
            CU_ASSERT(fabs(y[r * C + c] - want) < 1e-6);
        }
    }
    api.executable_free(dev, exe);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    api.device_close(dev);
}

static void test_faults(void)
{
    NEED_PLUGIN();
    void *dev = open_device(NULL);
    if (!dev)
        return;
    void *buf = NULL;
    bsti_fault_set("alloc", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 1024, &buf), BST_ERR_DEVICE_OOM);
    CU_ASSERT_PTR_NULL(buf);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 1024, &buf), BST_OK);
    api.buffer_free(dev, buf);
    /* A real failure of the same kind. */
    buf = NULL;
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, UINT64_C(1) << 62, &buf), BST_ERR_DEVICE_OOM);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "largest allocation"));
    node_store s;
    matmul_node(&s, BST_DTYPE_F32, 2, 8, 32);
    void *exe = NULL;
    bsti_fault_set("compile", BST_ERR_COMPILE, 1);
    CU_ASSERT_EQUAL(compile1(dev, &s.node, 3, &exe), BST_ERR_COMPILE);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "compile"));
    CU_ASSERT_EQUAL_FATAL(compile1(dev, &s.node, 3, &exe), BST_OK);
    float zeros[2 * 32 + 8 * 32] = {0};
    void *bufs[3] = {buffer(dev, zeros, 2 * 32 * 4), buffer(dev, zeros, 8 * 32 * 4),
                     buffer(dev, NULL, 2 * 8 * 4)};
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 1, .n_kv = 1};
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_ERR_DEVICE_LOST);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
    api.executable_free(dev, exe);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    bsti_fault_set("alloc", BST_OK, 0);
    bsti_fault_set("execute", BST_OK, 0);
    bsti_fault_set("compile", BST_OK, 0);
    api.device_close(dev);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"device: self-threaded, oneDNN version, stable fingerprint", test_device},
        {"query: claimed and declined nodes", test_query},
        {"prepared weights: bf16 and s8 rows, blocked layout", test_prepared_weights},
        {"symbolic extents, thread control, bad bindings", test_symbolic_and_threads},
        {"a oneDNN failure names primitive and status", test_dnnl_error},
        {"softmax: all-masked rows are zeros", test_softmax_all_masked},
        {"injected faults", test_faults},
        {NULL, NULL},
    };
    return bst_test_run_suite("onednn", cases);
}
