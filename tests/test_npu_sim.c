/*
 * Tests for the simulated NPU plugin (backends/npu-sim), loaded as the runtime loads it: dlopen
 * of $BASTION_BACKEND_PATH/libbst-backend-npu-sim.so, entry called with the real host service
 * table (its log function wrapped so the plugin's messages can be checked).
 * Covers: device description files (both shipped ones, a good file, and malformed or hostile
 * ones, each an error status with a message), device memory and its limit, DMA accounting in
 * the modelled device time, the power-of-two buckets of a symbolic dim (cost of the padded
 * bucket, exact results for the real rows, nothing written past them, out-of-bound extents
 * refused), the on-disk command stream cache (accept, reject on corruption, truncation and a
 * header of another device model, each with a logged reason, then recompiled; one entry per
 * device model, so alternating chips hit), and the matrix unit's
 * integer matmul on prepared weights against a float64 reference with its stated bound, and the
 * fused ffn_swiglu / rms_norm_mul that compile expands into the stream.
 * The op-by-op comparison with the CPU reference is test_backend_ops_npu_sim; the whole model is
 * test_reference_npu_sim.
 */
#include "graph/quant.h"
#include "graph/status.h"
#include "runtime/runtime.h"

#include "test_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

/* The plugin's private layout tag for prepared weights (npu_backend.h: BST_LAYOUT_BACKEND + 1). */
#define NPU_LAYOUT_I8_TILED ((uint32_t)BST_LAYOUT_BACKEND + 1u)

static bst_backend_entry_fn entry;
static bst_backend_api api;
static bst_host_api host;
static char g_log[65536];
static size_t g_log_len;
static char g_tmp[256];

static void capture_log(bst_log_level level, const char *fmt, ...) BST_PRINTF(2, 3);
static void capture_log(bst_log_level level, const char *fmt, ...)
{
    (void)level;
    if (g_log_len + 2 >= sizeof g_log)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_log + g_log_len, sizeof g_log - g_log_len - 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        g_log_len += (size_t)n < sizeof g_log - g_log_len - 2 ? (size_t)n
                                                               : sizeof g_log - g_log_len - 2;
    g_log[g_log_len++] = '\n';
    g_log[g_log_len] = '\0';
}

static void clear_log(void)
{
    g_log_len = 0;
    g_log[0] = '\0';
}

static bool load_plugin(void)
{
    if (entry)
        return true;
    if (!(entry = bst_test_plugin_entry("libbst-backend-npu-sim.so")))
        return false;
    host = *bsti_host_api();
    host.log = capture_log;
    memset(&api, 0, sizeof api);
    api.struct_size = sizeof api;
    if (entry(&host, BST_ABI_VERSION, &api) != BST_OK)
        return false;
    /* Each test gets its own cache directory, never the user's. */
    snprintf(g_tmp, sizeof g_tmp, "/tmp/bst-npu-test-XXXXXX");
    if (!mkdtemp(g_tmp))
        return false;
    setenv("BASTION_CACHE_DIR", g_tmp, 1);
    return true;
}

#define NEED_PLUGIN() CU_ASSERT_TRUE_FATAL(load_plugin())

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* A description with round numbers, so modelled times can be computed here exactly:
 * 1 GHz, one vector lane (1 ns per vector op), 1 byte/ns link with 1000 ns latency. */
static const char *k_test_desc = "model = npu-test\n"
                                 "clock_mhz = 1000\n"
                                 "macs_per_cycle_int8 = 64\n"
                                 "macs_per_cycle_fp16 = 16\n"
                                 "vector_lanes = 1\n"
                                 "sram_kib = 65536\n"
                                 "dram_gbps = 10\n"
                                 "dma_gbps = 1\n"
                                 "dma_latency_ns = 1000\n"
                                 "launch_overhead_ns = 5000\n"
                                 "memory_mib = 1\n"
                                 "activation_bits = 16\n";

/* Opens the device with BASTION_NPU_SIM_DEVICE = spec; returns the status. */
static bst_status open_with(const char *spec, void **out_dev)
{
    *out_dev = NULL;
    if (spec)
        setenv("BASTION_NPU_SIM_DEVICE", spec, 1);
    else
        unsetenv("BASTION_NPU_SIM_DEVICE");
    (void)bsti_fail(BST_OK, "%s", "");
    return api.device_open(api.ctx, 0, out_dev);
}

static void *open_test_device(const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/test.desc", g_tmp);
    write_text(path, text, strlen(text));
    void *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(open_with(path, &dev), BST_OK);
    return dev;
}

/* --- descriptors --- */

static void tensor(bst_tensor_desc *t, bst_dtype dt, uint32_t rank, const int64_t *shape,
                   uint32_t binding)
{
    memset(t, 0, sizeof *t);
    t->struct_size = sizeof *t;
    t->dtype = dt;
    t->rank = rank;
    t->binding = binding;
    uint32_t bs = 1, bb = 4;
    if (dt != BST_DTYPE_F32 && dt != BST_DTYPE_I32)
        CU_ASSERT_TRUE(bsti_quant_geometry(dt, &bs, &bb));
    int64_t stride = bb;
    for (uint32_t d = rank; d-- > 0;) {
        t->shape[d] = shape[d];
        t->strides[d] = stride;
        stride *= d == rank - 1 ? shape[d] / bs : shape[d];
    }
}

typedef struct one_node {
    bst_tensor_desc in[2], out;
    const bst_tensor_desc *in_ptr[2];
    bst_attr attr;
    const bst_attr *attr_ptr[1];
    bst_node_desc node;
    const bst_node_desc *nodes[1];
    bst_partition_desc part;
} one_node;

static void node_init(one_node *n, bst_op op, uint32_t n_in, uint32_t n_bindings)
{
    memset(&n->node, 0, sizeof n->node);
    n->node.struct_size = sizeof n->node;
    n->node.op = op;
    n->node.n_inputs = n_in;
    for (uint32_t i = 0; i < n_in; i++)
        n->in_ptr[i] = &n->in[i];
    n->node.inputs = n->in_ptr;
    n->node.output = &n->out;
    n->node.attrs = n->attr_ptr;
    n->nodes[0] = &n->node;
    memset(&n->part, 0, sizeof n->part);
    n->part.struct_size = sizeof n->part;
    n->part.n_nodes = 1;
    n->part.nodes = n->nodes;
    n->part.n_bindings = n_bindings;
}

static void node_attr_float(one_node *n, bst_attr_key key, double v)
{
    memset(&n->attr, 0, sizeof n->attr);
    n->attr.struct_size = sizeof n->attr;
    n->attr.key = key;
    n->attr.kind = BST_ATTR_KIND_FLOAT;
    n->attr.count = 1;
    n->attr.f = v;
    n->attr_ptr[0] = &n->attr;
    n->node.n_attrs = 1;
}

static bst_run_params params(int64_t n_tokens, int64_t n_kv)
{
    bst_run_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_tokens = n_tokens;
    p.n_kv = n_kv;
    return p;
}

/* --- device descriptions --- */

static void test_desc_shipped_and_good(void)
{
    NEED_PLUGIN();
    const char *specs[] = {NULL, "npu-small", "npu-large"};
    const char *models[] = {"npu-small", "npu-small", "npu-large"};
    uint64_t mem[3] = {0};
    for (int i = 0; i < 3; i++) {
        void *dev = NULL;
        CU_ASSERT_EQUAL_FATAL(open_with(specs[i], &dev), BST_OK);
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        uint32_t count = 0;
        CU_ASSERT_EQUAL(api.enumerate(api.ctx, &info, sizeof info, 1, &count), BST_OK);
        CU_ASSERT_EQUAL(count, 1u);
        CU_ASSERT_EQUAL(info.kind, (uint32_t)BST_DEVICE_NPU);
        CU_ASSERT_PTR_NOT_NULL(strstr(info.name, models[i]));
        CU_ASSERT_FALSE(info.unified_memory);
        mem[i] = info.memory_bytes;
        api.device_close(dev);
    }
    CU_ASSERT_EQUAL(mem[0], UINT64_C(2048) << 20);
    CU_ASSERT_EQUAL(mem[2], UINT64_C(8192) << 20);
    /* A file written by a vendor, with comments and blank lines. */
    void *dev = open_test_device("# my chip\n\n  model=npu-test # trailing comment\n" "clock_mhz = 1000\n"
                                 "macs_per_cycle_int8 = 64\nmacs_per_cycle_fp16 = 16\n"
                                 "vector_lanes = 1\nsram_kib = 64\ndram_gbps = 1.5e1\n"
                                 "dma_gbps = 1\ndma_latency_ns = 0\nlaunch_overhead_ns = 0\n"
                                 "memory_mib = 1\r\nactivation_bits = 8\n");
    api.device_close(dev);
    /* Device memory is not host-visible: no buffer_map. */
    CU_ASSERT_PTR_NULL(api.buffer_map);
}

static void test_desc_malformed(void)
{
    NEED_PLUGIN();
    char good[1024];
    snprintf(good, sizeof good, "%s", k_test_desc);
    static const struct {
        const char *what, *from, *to; /* replace `from` in the good text by `to` */
    } edits[] = {
        {"missing key", "vector_lanes = 1\n", ""},
        {"unknown key", "vector_lanes = 1\n", "vector_lanes = 1\nlanes = 4\n"},
        {"duplicate key", "vector_lanes = 1\n", "vector_lanes = 1\nvector_lanes = 2\n"},
        {"not a number", "clock_mhz = 1000", "clock_mhz = fast"},
        {"trailing junk", "clock_mhz = 1000", "clock_mhz = 1000MHz"},
        {"empty value", "clock_mhz = 1000", "clock_mhz ="},
        {"negative", "dma_gbps = 1", "dma_gbps = -1"},
        {"zero bandwidth", "dram_gbps = 10", "dram_gbps = 0"},
        {"nan", "dram_gbps = 10", "dram_gbps = nan"},
        {"infinity", "dram_gbps = 10", "dram_gbps = inf"},
        {"huge", "memory_mib = 1", "memory_mib = 1e300"},
        {"no equals sign", "memory_mib = 1", "memory_mib 1"},
        {"bad model name", "model = npu-test", "model = ../../etc"},
        {"empty model", "model = npu-test", "model = "},
        {"activation bits", "activation_bits = 16", "activation_bits = 12"},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/bad.desc", g_tmp);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char text[2048];
        const char *at = strstr(good, edits[i].from);
        CU_ASSERT_PTR_NOT_NULL_FATAL(at);
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - good), good, edits[i].to,
                 at + strlen(edits[i].from));
        write_text(path, text, strlen(text));
        void *dev = NULL;
        bst_status st = open_with(path, &dev);
        if (st != BST_ERR_FORMAT || dev || !strstr(bst_last_error(), "bad.desc"))
            fprintf(stderr, "\n%s: status %d, message '%s'\n", edits[i].what, (int)st,
                    bst_last_error());
        CU_ASSERT_EQUAL(st, BST_ERR_FORMAT);
        CU_ASSERT_PTR_NULL(dev);
        CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "bad.desc"));
        /* enumerate reports the same problem instead of a device */
        uint32_t count = 7;
        CU_ASSERT_EQUAL(api.enumerate(api.ctx, NULL, 0, 0, &count), BST_ERR_FORMAT);
    }
    /* Binary garbage with a NUL byte, an over-long line, a file over 16 KiB, an empty file. */
    static const char nul[] = "model = npu-test\0clock_mhz = 1\n";
    write_text(path, nul, sizeof nul - 1);
    void *dev = NULL;
    CU_ASSERT_EQUAL(open_with(path, &dev), BST_ERR_FORMAT);
    char *big = malloc(20000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'x', 20000);
    write_text(path, big, 400);
    CU_ASSERT_EQUAL(open_with(path, &dev), BST_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "line"));
    for (size_t i = 0; i < 20000; i += 20)
        big[i] = '\n';
    write_text(path, big, 20000);
    CU_ASSERT_EQUAL(open_with(path, &dev), BST_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "16 KiB"));
    free(big);
    write_text(path, "", 0);
    CU_ASSERT_EQUAL(open_with(path, &dev), BST_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "missing key"));
    /* Not there, a directory, an unknown shipped name. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.desc", g_tmp);
    CU_ASSERT_EQUAL(open_with(missing, &dev), BST_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "nope.desc"));
    CU_ASSERT_EQUAL(open_with(g_tmp, &dev), BST_ERR_IO);
    CU_ASSERT_EQUAL(open_with("npu-medium", &dev), BST_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "npu-medium"));
    CU_ASSERT_PTR_NULL(dev);
    unsetenv("BASTION_NPU_SIM_DEVICE");
}

/* --- memory, DMA and modelled time --- */

static void test_memory_and_dma(void)
{
    NEED_PLUGIN();
    void *dev = open_test_device(k_test_desc);
    /* memory_mib = 1: a 2 MiB buffer does not fit; two 512 KiB ones do, a third does not. */
    void *b[3] = {NULL, NULL, NULL};
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 2u << 20, &b[0]), BST_ERR_DEVICE_OOM);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "exhausted"));
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 512u << 10, &b[0]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 512u << 10, &b[1]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 16, &b[2]), BST_ERR_DEVICE_OOM);
    api.buffer_free(dev, b[1]);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 16, &b[1]), BST_OK);
    api.buffer_free(dev, b[0]);
    api.buffer_free(dev, b[1]);

    /* out[4] = x[4] + y[4]: 4 vector ops at 1 ns each. */
    one_node n;
    const int64_t s4[] = {4};
    tensor(&n.in[0], BST_DTYPE_F32, 1, s4, 0);
    tensor(&n.in[1], BST_DTYPE_F32, 1, s4, 1);
    tensor(&n.out, BST_DTYPE_F32, 1, s4, 2);
    node_init(&n, BST_OP_ADD, 2, 3);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &n.part, &exe), BST_OK);
    void *bufs[3];
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 16, &bufs[i]), BST_OK);
    const float x[4] = {1, 2, 3, 4}, y[4] = {10, 20, 30, 40};
    /* Two 16-byte transfers in: 2 x (1000 ns latency + 16 ns). */
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, x, 16), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, y, 16), BST_OK);
    bst_run_params p = params(1, 1);
    CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 3, &p), BST_OK);
    uint64_t ns = 0;
    CU_ASSERT_EQUAL(api.last_execute_ns(dev, exe, &ns), BST_OK);
    CU_ASSERT_EQUAL(ns, 5000u + 4u + 2u * 1016u);
    /* Nothing transferred since: launch + compute only. */
    CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 3, &p), BST_OK);
    CU_ASSERT_EQUAL(api.last_execute_ns(dev, exe, &ns), BST_OK);
    CU_ASSERT_EQUAL(ns, 5004u);
    /* Reading the result back is one more transfer, charged to the next run. */
    float out[4];
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, out, 16), BST_OK);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(out[i], x[i] + y[i]);
    CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 3, &p), BST_OK);
    CU_ASSERT_EQUAL(api.last_execute_ns(dev, exe, &ns), BST_OK);
    CU_ASSERT_EQUAL(ns, 5004u + 1016u);
    /* A transfer outside a buffer is refused. */
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 8, x, 16), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[0], 17, out, 0), BST_ERR_INVALID_ARG);
    api.executable_free(dev, exe);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    api.device_close(dev);
}

/* --- buckets of a symbolic dim --- */

static void test_buckets(void)
{
    NEED_PLUGIN();
    void *dev = open_test_device(k_test_desc);
    /* out[n_tokens:100, 64] = 0.5 * x: at bucket B, B * 64 vector ops of 1 ns. */
    enum { BOUND = 100, COLS = 64 };
    one_node n;
    const int64_t s[] = {BOUND, COLS};
    tensor(&n.in[0], BST_DTYPE_F32, 2, s, 0);
    tensor(&n.out, BST_DTYPE_F32, 2, s, 1);
    n.in[0].sym[0] = n.out.sym[0] = BST_SYM_N_TOKENS;
    node_init(&n, BST_OP_SCALE, 1, 2);
    node_attr_float(&n, BST_ATTR_SCALE, 0.5);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &n.part, &exe), BST_OK);
    const size_t bytes = (size_t)BOUND * COLS * sizeof(float);
    float *x = malloc(bytes), *out = malloc(bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    for (int i = 0; i < BOUND * COLS; i++)
        x[i] = (float)i * 0.25f - 7.0f;
    void *bufs[2];
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, bytes, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, bytes, &bufs[1]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, x, bytes), BST_OK);
    static const struct {
        int64_t t, bucket;
    } cases[] = {{1, 1}, {2, 2}, {3, 4}, {5, 8}, {33, 64}, {64, 64}, {65, 100}, {100, 100}};
    const float sentinel = -12345.0f;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < BOUND * COLS; i++)
            out[i] = sentinel;
        CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, out, bytes), BST_OK);
        uint64_t ns;
        /* Let the transfers be charged to a throwaway run first. */
        bst_run_params p = params(1, 1);
        CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_OK);
        CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, out, bytes), BST_OK);
        CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_OK);
        p = params(cases[c].t, 1);
        CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 2, &p), BST_OK);
        CU_ASSERT_EQUAL(api.last_execute_ns(dev, exe, &ns), BST_OK);
        CU_ASSERT_EQUAL(ns, 5000u + (uint64_t)(cases[c].bucket * COLS));
        CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[1], 0, out, bytes), BST_OK);
        bool exact = true, untouched = true;
        for (int64_t i = 0; i < BOUND * COLS; i++) {
            if (i < cases[c].t * COLS)
                exact = exact && out[i] == x[i] * 0.5f;
            else
                untouched = untouched && out[i] == sentinel;
        }
        CU_ASSERT_TRUE(exact);     /* real rows: exactly the unpadded result */
        CU_ASSERT_TRUE(untouched); /* padded rows never reach memory */
    }
    bst_run_params p = params(BOUND + 1, 1);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_ERR_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "bound"));
    p = params(-1, 1);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_ERR_SHAPE);
    /* Too few buffers for the stream's bindings. */
    p = params(1, 1);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 1, &p), BST_ERR_INVALID_ARG);
    api.executable_free(dev, exe);
    api.buffer_free(dev, bufs[0]);
    api.buffer_free(dev, bufs[1]);
    free(x);
    free(out);
    api.device_close(dev);
}

/* Both symbols in one stream: softmax over x[n_tokens:8, n_kv:16] costs 6 vector ops per element
 * of the (n_tokens bucket) x (n_kv bucket) padded tile; the table holds their cross product. */
static void test_buckets_two_dims(void)
{
    NEED_PLUGIN();
    void *dev = open_test_device(k_test_desc);
    one_node n;
    const int64_t s[] = {8, 16};
    tensor(&n.in[0], BST_DTYPE_F32, 2, s, 0);
    tensor(&n.out, BST_DTYPE_F32, 2, s, 1);
    n.in[0].sym[0] = n.out.sym[0] = BST_SYM_N_TOKENS;
    n.in[0].sym[1] = n.out.sym[1] = BST_SYM_N_KV;
    node_init(&n, BST_OP_SOFTMAX, 1, 2);
    node_attr_float(&n, BST_ATTR_SCALE, 1.0);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &n.part, &exe), BST_OK);
    void *bufs[2];
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 8 * 16 * 4, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 8 * 16 * 4, &bufs[1]), BST_OK);
    float x[8 * 16];
    for (int i = 0; i < 8 * 16; i++)
        x[i] = (float)(i % 7) * 0.5f;
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, x, sizeof x), BST_OK);
    bst_run_params p = params(1, 1);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_OK); /* absorbs the DMA time */
    static const int64_t cases[][4] = {/* T, KV, bucket T, bucket KV */
                                       {1, 1, 1, 1},  {3, 5, 4, 8},  {8, 9, 8, 16},
                                       {2, 16, 2, 16}, {5, 2, 8, 2}, {8, 16, 8, 16}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        p = params(cases[c][0], cases[c][1]);
        CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 2, &p), BST_OK);
        uint64_t ns = 0;
        CU_ASSERT_EQUAL(api.last_execute_ns(dev, exe, &ns), BST_OK);
        CU_ASSERT_EQUAL(ns, 5000u + 6u * (uint64_t)(cases[c][2] * cases[c][3]));
    }
    p = params(8, 17);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_ERR_SHAPE);
    api.executable_free(dev, exe);
    api.buffer_free(dev, bufs[0]);
    api.buffer_free(dev, bufs[1]);
    api.device_close(dev);
}

/* --- command stream cache --- */

/* The cache entry of device model `model` (its file name starts with the model). */
static bool find_blob(const char *model, char *path, size_t cap)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/blobs/npu-sim", g_tmp);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    bool found = false;
    size_t ml = strlen(model);
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, model, ml) == 0 && e->d_name[ml] == '-' &&
            strstr(e->d_name, ".npub") && !strstr(e->d_name, ".tmp")) {
            snprintf(path, cap, "%s/%s", dir, e->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

static void compile_rmsnorm(void *dev, one_node *n, bool expect_cached)
{
    const int64_t s[] = {8, 64};
    tensor(&n->in[0], BST_DTYPE_F32, 2, s, 0);
    tensor(&n->out, BST_DTYPE_F32, 2, s, 1);
    node_init(n, BST_OP_RMS_NORM, 1, 2);
    node_attr_float(n, BST_ATTR_EPS, 1e-5);
    clear_log();
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &n->part, &exe), BST_OK);
    bool cached = strstr(g_log, "loaded from the cache") != NULL;
    if (cached != expect_cached)
        fprintf(stderr, "\nexpected %s; log:\n%s", expect_cached ? "a cache hit" : "a miss", g_log);
    CU_ASSERT_EQUAL(cached, expect_cached);
    /* Whatever its origin, the stream computes the right thing. */
    void *bufs[2];
    float x[8 * 64], out[8 * 64];
    for (int i = 0; i < 8 * 64; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof x, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof x, &bufs[1]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, x, sizeof x), BST_OK);
    bst_run_params p = params(1, 1);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &p), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[1], 0, out, sizeof out), BST_OK);
    for (int r = 0; r < 8; r++) {
        double sq = 0;
        for (int i = 0; i < 64; i++)
            sq += (double)x[r * 64 + i] * x[r * 64 + i];
        double inv = 1.0 / sqrt(sq / 64 + 1e-5);
        for (int i = 0; i < 64; i++)
            CU_ASSERT_DOUBLE_EQUAL(out[r * 64 + i], x[r * 64 + i] * inv, 1e-6);
    }
    api.buffer_free(dev, bufs[0]);
    api.buffer_free(dev, bufs[1]);
    api.executable_free(dev, exe);
}

static void test_blob_cache(void)
{
    NEED_PLUGIN();
    /* A cache directory of its own, so the only entry is this test's partition. */
    char base[600];
    snprintf(base, sizeof base, "%s/blobs", g_tmp);
    setenv("BASTION_CACHE_DIR", base, 1);
    void *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(open_with("npu-small", &dev), BST_OK);
    one_node n;
    compile_rmsnorm(dev, &n, false); /* first time: compiled, stored */
    char path[1024];
    CU_ASSERT_TRUE_FATAL(find_blob("npu-small", path, sizeof path));
    struct stat sb, sd;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/npu-sim", base);
    CU_ASSERT_EQUAL(stat(path, &sb), 0);
    CU_ASSERT_EQUAL(stat(dir, &sd), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
    CU_ASSERT_EQUAL(sd.st_mode & 0777, 0700);
    compile_rmsnorm(dev, &n, true); /* accepted */

    /* A flipped payload byte: checksum mismatch, logged, recompiled and rewritten. */
    size_t size = 0;
    char *blob = bst_test_read_file(path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blob);
    blob[size - 3] ^= 0x40;
    write_text(path, blob, size);
    compile_rmsnorm(dev, &n, false);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_log, "checksum mismatch"));
    compile_rmsnorm(dev, &n, true); /* the rewritten entry is good */
    /* Truncated. */
    write_text(path, blob, size / 2);
    compile_rmsnorm(dev, &n, false);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_log, "rejected"));
    /* Shorter than the header; garbage. */
    write_text(path, "BSTNPUC", 7);
    compile_rmsnorm(dev, &n, false);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_log, "shorter than its header"));
    /* A valid header and checksum over a hostile payload (a stream claiming zero bindings, so
     * every operand's binding is out of range): the header passes, the blob loader refuses. */
    compile_rmsnorm(dev, &n, true);
    free(blob);
    blob = bst_test_read_file(path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blob);
    CU_ASSERT_FATAL(size > 160);
    memset(blob + 136 + 12, 0, 4); /* payload: magic, version, n_instr, n_bindings */
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 136; i < size; i++) {
        h ^= (uint8_t)blob[i];
        h *= UINT64_C(0x100000001b3);
    }
    for (int i = 0; i < 8; i++)
        blob[128 + i] = (char)(uint8_t)(h >> (8 * i));
    write_text(path, blob, size);
    compile_rmsnorm(dev, &n, false);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_log, "cached command stream rejected"));
    compile_rmsnorm(dev, &n, true);
    api.device_close(dev);

    /* The same partition on another device model: an entry of its own (a miss, no rejection),
     * and the first chip's entry is still there: small, large, small again hits. */
    CU_ASSERT_EQUAL_FATAL(open_with("npu-large", &dev), BST_OK);
    compile_rmsnorm(dev, &n, false);
    CU_ASSERT_PTR_NULL(strstr(g_log, "rejected"));
    compile_rmsnorm(dev, &n, true);
    api.device_close(dev);
    CU_ASSERT_EQUAL_FATAL(open_with("npu-small", &dev), BST_OK);
    compile_rmsnorm(dev, &n, true);
    api.device_close(dev);
    /* An entry whose header names another chip (copied over npu-large's name) is rejected. */
    char large[1024];
    CU_ASSERT_TRUE_FATAL(find_blob("npu-large", large, sizeof large));
    free(blob);
    blob = bst_test_read_file(path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blob);
    write_text(large, blob, size);
    CU_ASSERT_EQUAL_FATAL(open_with("npu-large", &dev), BST_OK);
    compile_rmsnorm(dev, &n, false);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_log, "compiled for device model 'npu-small'"));
    compile_rmsnorm(dev, &n, true);
    api.device_close(dev);
    free(blob);
    unsetenv("BASTION_NPU_SIM_DEVICE");
    setenv("BASTION_CACHE_DIR", g_tmp, 1);
}

/* --- matrix unit on prepared weights --- */

/* NMSE of the matrix unit against float64 on the dequantized weights must stay within 3x the
 * error that rounding alone explains: each activation in a group of 32 is rounded to a step of
 * s = max|a_group| / qmax (qmax 127 or 32767), an error of variance s^2/12, and so is each weight
 * of a float (requantized) weight (s = max|w_group| / 127); GGUF block weights are exact. */
static void check_int_matmul(void *dev, bst_dtype wt, int64_t M, int64_t N, int64_t K,
                             int act_bits, const char *label)
{
    float *w = malloc(sizeof *w * (size_t)(N * K)), *wq = malloc(sizeof *wq * (size_t)(N * K));
    float *a = malloc(sizeof *a * (size_t)(M * K)), *out = malloc(sizeof *out * (size_t)(M * N));
    uint32_t bs = 1, bb = 4;
    if (wt != BST_DTYPE_F32)
        CU_ASSERT_TRUE(bsti_quant_geometry(wt, &bs, &bb));
    size_t wbytes = (size_t)(N * (K / bs) * bb);
    uint8_t *wdata = malloc(wbytes);
    CU_ASSERT_FATAL(w && wq && a && out && wdata);
    uint64_t rng = 12345;
    for (int64_t i = 0; i < N * K; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    for (int64_t i = 0; i < M * K; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        a[i] = (float)(i % 97 == 0 ? 20.0 * u : u); /* a few outliers, as real activations */
    }
    for (int64_t r = 0; r < N; r++) {
        CU_ASSERT_EQUAL(bsti_quantize(wt, w + r * K, wdata + (size_t)r * (wbytes / (size_t)N), K),
                        BST_OK);
        CU_ASSERT_EQUAL(bsti_dequantize(wt, wdata + (size_t)r * (wbytes / (size_t)N), wq + r * K,
                                        K), BST_OK);
    }
    one_node n;
    const int64_t sa[] = {M, K}, sw[] = {N, K}, so[] = {M, N};
    tensor(&n.in[0], BST_DTYPE_F32, 2, sa, 0);
    tensor(&n.in[1], wt, 2, sw, 1);
    tensor(&n.out, BST_DTYPE_F32, 2, so, 2);
    void *wbuf = NULL;
    uint64_t cost = 0;
    uint32_t layout = 0;
    CU_ASSERT_EQUAL_FATAL(api.prepare_weight(dev, &n.in[1], wdata, wbytes, &wbuf, &cost, &layout),
                          BST_OK);
    CU_ASSERT_EQUAL(layout, NPU_LAYOUT_I8_TILED);
    CU_ASSERT_TRUE(cost >= (uint64_t)(N * K));
    n.in[1].layout = layout;
    node_init(&n, BST_OP_MATMUL, 2, 3);
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &n.part, &exe), BST_OK);
    void *bufs[3] = {NULL, wbuf, NULL};
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, (uint64_t)(M * K) * 4, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, (uint64_t)(M * N) * 4, &bufs[2]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, a, (uint64_t)(M * K) * 4), BST_OK);
    bst_run_params p = params(1, 1);
    CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 3, &p), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, out, (uint64_t)(M * N) * 4), BST_OK);
    double err = 0, ref2 = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)a[m * K + k] * wq[j * K + k];
            err += (out[m * N + j] - s) * (out[m * N + j] - s);
            ref2 += s * s;
        }
    const double qmax = act_bits == 16 ? 32767.0 : 127.0;
    double expect = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t k0 = 0; k0 < K; k0 += 32) {
            double mx = 0;
            for (int64_t k = k0; k < k0 + 32 && k < K; k++)
                mx = fmax(mx, fabs((double)a[m * K + k]));
            double var = (mx / qmax) * (mx / qmax) / 12.0;
            for (int64_t j = 0; j < N; j++)
                for (int64_t k = k0; k < k0 + 32 && k < K; k++)
                    expect += var * (double)wq[j * K + k] * wq[j * K + k];
        }
    if (wt == BST_DTYPE_F32)
        for (int64_t j = 0; j < N; j++)
            for (int64_t k0 = 0; k0 < K; k0 += 32) {
                double mx = 0;
                for (int64_t k = k0; k < k0 + 32 && k < K; k++)
                    mx = fmax(mx, fabs((double)wq[j * K + k]));
                double var = (mx / 127.0) * (mx / 127.0) / 12.0;
                for (int64_t m = 0; m < M; m++)
                    for (int64_t k = k0; k < k0 + 32 && k < K; k++)
                        expect += var * (double)a[m * K + k] * a[m * K + k];
            }
    double nmse = err / ref2, bound = 3.0 * expect / ref2;
    if (!(nmse <= bound))
        fprintf(stderr, "\n%s: NMSE %.3e above %.3e (3x the rounding estimate)\n", label, nmse,
                bound);
    CU_ASSERT_TRUE(nmse <= bound);
    /* A weight buffer that is not the prepared one the stream was compiled for is refused. */
    void *wrong[3] = {bufs[0], bufs[0], bufs[2]};
    CU_ASSERT_EQUAL(api.execute(dev, exe, wrong, 3, &p), BST_ERR_INVALID_ARG);
    api.executable_free(dev, exe);
    api.buffer_free(dev, bufs[0]);
    api.buffer_free(dev, bufs[2]);
    api.buffer_free(dev, wbuf);
    free(w);
    free(wq);
    free(a);
    free(out);
    free(wdata);
}

static void test_int_matmul(void)
{
    NEED_PLUGIN();
    void *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(open_with("npu-small", &dev), BST_OK);
    check_int_matmul(dev, BST_DTYPE_Q4_1, 3, 40, 96, 16, "A16 q4_1");
    check_int_matmul(dev, BST_DTYPE_Q8_0, 5, 17, 64, 16, "A16 q8_0");
    check_int_matmul(dev, BST_DTYPE_Q4_0, 1, 33, 32, 16, "A16 q4_0");
    check_int_matmul(dev, BST_DTYPE_F32, 2, 9, 64, 16, "A16 f32");
    api.device_close(dev);
    char a8[2048];
    snprintf(a8, sizeof a8, "%s", k_test_desc);
    char *at = strstr(a8, "activation_bits = 16");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    memcpy(at, "activation_bits = 8 ", 20);
    char big_mem[2100];
    snprintf(big_mem, sizeof big_mem, "%s", a8);
    at = strstr(big_mem, "memory_mib = 1\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    memcpy(at, "memory_mib = 9\n", 15);
    dev = open_test_device(big_mem);
    check_int_matmul(dev, BST_DTYPE_Q4_1, 3, 40, 96, 8, "A8 q4_1");
    check_int_matmul(dev, BST_DTYPE_Q8_0, 4, 16, 128, 8, "A8 q8_0");
    api.device_close(dev);
    unsetenv("BASTION_NPU_SIM_DEVICE");
}

/* --- fused ops, expanded into the stream --- */

static void fill(float *v, int64_t n, uint64_t seed, double scale)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)(((double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0) * scale);
    }
}

/* A q8_0 weight [rows, cols], prepared on the device; its dequantized values into `deq`. */
static void *prepared_q8(void *dev, int64_t rows, int64_t cols, uint64_t seed, float *deq,
                         bst_tensor_desc *t, uint32_t binding)
{
    const int64_t shape[] = {rows, cols};
    tensor(t, BST_DTYPE_Q8_0, 2, shape, binding);
    size_t row_bytes = (size_t)(cols / 32) * 34;
    uint8_t *q = malloc(row_bytes * (size_t)rows);
    float *w = malloc(sizeof *w * (size_t)(rows * cols));
    CU_ASSERT_FATAL(q && w);
    fill(w, rows * cols, seed, 0.5);
    for (int64_t r = 0; r < rows; r++) {
        CU_ASSERT_EQUAL(bsti_quantize(BST_DTYPE_Q8_0, w + r * cols, q + (size_t)r * row_bytes, cols),
                        BST_OK);
        CU_ASSERT_EQUAL(bsti_dequantize(BST_DTYPE_Q8_0, q + (size_t)r * row_bytes, deq + r * cols,
                                        cols), BST_OK);
    }
    void *buf = NULL;
    uint64_t cost = 0;
    uint32_t layout = 0;
    CU_ASSERT_EQUAL_FATAL(api.prepare_weight(dev, t, q, row_bytes * (size_t)rows, &buf, &cost,
                                             &layout), BST_OK);
    CU_ASSERT_EQUAL(layout, NPU_LAYOUT_I8_TILED);
    t->layout = layout;
    free(q);
    free(w);
    return buf;
}

static void test_fused(void)
{
    NEED_PLUGIN();
    void *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(open_with("npu-small", &dev), BST_OK);
    enum { T = 3, E = 64, F = 96 };
    float x[T * E], wg[F * E], wu[F * E], wd[E * F], out[T * E], nw[E];
    fill(x, T * E, 1, 2.0);
    fill(nw, E, 2, 1.0);
    /* ffn_swiglu(x, wg, wu, wd): two scratch intermediates owned by the stream. */
    bst_tensor_desc d[5];
    const bst_tensor_desc *dp[4] = {&d[0], &d[1], &d[2], &d[3]};
    const int64_t sx[] = {T, E};
    tensor(&d[0], BST_DTYPE_F32, 2, sx, 0);
    void *bw[3];
    bw[0] = prepared_q8(dev, F, E, 3, wg, &d[1], 1);
    bw[1] = prepared_q8(dev, F, E, 4, wu, &d[2], 2);
    bw[2] = prepared_q8(dev, E, F, 5, wd, &d[3], 3);
    tensor(&d[4], BST_DTYPE_F32, 2, sx, 4);
    bst_node_desc node;
    memset(&node, 0, sizeof node);
    node.struct_size = sizeof node;
    node.op = BST_OP_FFN_SWIGLU;
    node.n_inputs = 4;
    node.inputs = dp;
    node.output = &d[4];
    bst_kernel_variant v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    uint32_t count = 0;
    CU_ASSERT_EQUAL(api.query(dev, &node, &v, sizeof v, 1, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1u);
    const bst_node_desc *nodes[1] = {&node};
    bst_partition_desc part = {.struct_size = sizeof part, .n_nodes = 1, .nodes = nodes,
                               .n_bindings = 5};
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &part, &exe), BST_OK);
    void *bufs[5] = {NULL, bw[0], bw[1], bw[2], NULL};
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof x, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof out, &bufs[4]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, x, sizeof x), BST_OK);
    bst_run_params p = params(1, 1);
    CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, bufs, 5, &p), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[4], 0, out, sizeof out), BST_OK);
    double want[T * E], err = 0, ref2 = 0;
    bst_test_ffn_swiglu(x, T, E, F, wg, wu, wd, want);
    for (int i = 0; i < T * E; i++) {
        err += (out[i] - want[i]) * (out[i] - want[i]);
        ref2 += want[i] * want[i];
    }
    /* int16 activation codes (twice: x, then the silu product) and exact weights: rounding
     * error ~1e-9 relative; 1e-6 leaves margin and still fails any real fault. */
    CU_ASSERT_TRUE(err / ref2 <= 1e-6);
    api.executable_free(dev, exe);

    /* rms_norm_mul(x, w) -> out */
    const int64_t sw[] = {E};
    tensor(&d[1], BST_DTYPE_F32, 1, sw, 1);
    tensor(&d[2], BST_DTYPE_F32, 2, sx, 2);
    node.op = BST_OP_RMS_NORM_MUL;
    node.n_inputs = 2;
    node.output = &d[2];
    bst_attr eps = {.struct_size = sizeof eps, .key = BST_ATTR_EPS, .kind = BST_ATTR_KIND_FLOAT,
                    .count = 1, .f = 1e-5};
    const bst_attr *ap[1] = {&eps};
    node.attrs = ap;
    node.n_attrs = 1;
    part.n_bindings = 3;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &part, &exe), BST_OK);
    void *nb = NULL;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof nw, &nb), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, nb, 0, nw, sizeof nw), BST_OK);
    void *b2[3] = {bufs[0], nb, bufs[4]};
    CU_ASSERT_EQUAL_FATAL(api.execute(dev, exe, b2, 3, &p), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[4], 0, out, sizeof out), BST_OK);
    for (int t = 0; t < T; t++) {
        double sq = 0;
        for (int e = 0; e < E; e++)
            sq += (double)x[t * E + e] * x[t * E + e];
        double inv = 1.0 / sqrt(sq / E + 1e-5);
        for (int e = 0; e < E; e++)
            CU_ASSERT_DOUBLE_EQUAL(out[t * E + e], x[t * E + e] * inv * nw[e], 1e-5);
    }
    api.executable_free(dev, exe);
    api.buffer_free(dev, nb);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bw[i]);
    api.buffer_free(dev, bufs[0]);
    api.buffer_free(dev, bufs[4]);
    api.device_close(dev);
}

/* --- op set --- */

static void test_query(void)
{
    NEED_PLUGIN();
    void *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(open_with(NULL, &dev), BST_OK);
    one_node n;
    const int64_t s[] = {4, 32}, sid[] = {4};
    bst_kernel_variant v[4];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 4; i++)
        v[i].struct_size = sizeof v[i];
    uint32_t count = 9;
    /* get_rows is not in the NPU's op set: offered nowhere, so it falls to another backend. */
    tensor(&n.in[0], BST_DTYPE_F32, 2, s, 0);
    tensor(&n.in[1], BST_DTYPE_I32, 1, sid, 1);
    tensor(&n.out, BST_DTYPE_F32, 2, s, 2);
    node_init(&n, BST_OP_GET_ROWS, 2, 3);
    CU_ASSERT_EQUAL(api.query(dev, &n.node, v, sizeof v[0], 4, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 0u);
    /* and compile refuses it with a message */
    void *exe = NULL;
    CU_ASSERT_EQUAL(api.compile(dev, &n.part, &exe), BST_ERR_COMPILE);
    CU_ASSERT_PTR_NULL(exe);
    /* an op id from the future */
    node_init(&n, (bst_op)(BST_OP_COUNT + 5), 1, 3);
    CU_ASSERT_EQUAL(api.query(dev, &n.node, v, sizeof v[0], 4, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 0u);
    /* silu is */
    tensor(&n.out, BST_DTYPE_F32, 2, s, 1);
    node_init(&n, BST_OP_SILU, 1, 2);
    CU_ASSERT_EQUAL(api.query(dev, &n.node, v, sizeof v[0], 4, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1u);
    /* but not with an f16 output (the NPU writes f32 only) */
    n.out.dtype = BST_DTYPE_F16;
    CU_ASSERT_EQUAL(api.query(dev, &n.node, v, sizeof v[0], 4, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 0u);
    api.device_close(dev);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"device descriptions: shipped and good", test_desc_shipped_and_good},
        {"device descriptions: malformed", test_desc_malformed},
        {"device memory and DMA accounting", test_memory_and_dma},
        {"buckets", test_buckets},
        {"buckets of two symbols", test_buckets_two_dims},
        {"blob cache", test_blob_cache},
        {"integer matmul", test_int_matmul},
        {"fused ffn_swiglu and rms_norm_mul", test_fused},
        {"query", test_query},
        {NULL, NULL},
    };
    return bst_test_run_suite("npu_sim", cases);
}
