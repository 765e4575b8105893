/*
 * Tests for the OpenCL backend plugin beyond op results (those are test_backend_ops, which runs
 * every op on every device, OpenCL's included): the devices it reports, the on-disk program
 * cache (entries written with a valid header; a corrupt or truncated entry is ignored and
 * rebuilt), a deliberately broken kernel family (BST_ERR_COMPILE with the build log while the
 * other families keep working), OpenCL failures reached through the host's fault injection and
 * mapped to statuses (out of device memory, device lost, build failure), a multi-node partition
 * whose symbolic extents change between runs, and the "no OpenCL device" record when the ICD
 * loader finds no platform (in a child process, since ocl-icd reads its vendor list once).
 *
 * The plugin is loaded as the runtime loads it (dlopen of $BASTION_BACKEND_PATH/
 * libbst-backend-opencl.so, entry called with the real host table). When the build has no
 * OpenCL backend (BASTION_OPENCL_BUILT undefined) or the machine has no OpenCL device, the tests
 * say so and pass; with the backend built, a plugin that does not load is a failure.
 */
#include "graph/quant.h"
#include "runtime/runtime.h"

#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static bst_backend_api api;
static bool plugin_ok; /* the plugin loaded and its entry succeeded */
static bool loaded, load_tried; /* ... and it has a device */
static uint32_t n_devices;
static char cache_dir[256];

static bool load_plugin(void)
{
    if (load_tried)
        return loaded;
    load_tried = true;
    bst_backend_entry_fn entry = bst_test_plugin_entry("libbst-backend-opencl.so");
    if (!entry) {
#ifdef BASTION_OPENCL_BUILT
        CU_FAIL("the OpenCL backend was built but does not load");
#else
        printf("\n  OpenCL backend not built: skipped");
#endif
        return false;
    }
    memset(&api, 0, sizeof api);
    api.struct_size = sizeof api;
    CU_ASSERT_EQUAL_FATAL(entry(bsti_host_api(), BST_ABI_VERSION, &api), BST_OK);
    CU_ASSERT_STRING_EQUAL(api.name, "opencl");
    plugin_ok = true;
    CU_ASSERT_EQUAL_FATAL(api.enumerate(api.ctx, NULL, sizeof(bst_device_info), 0, &n_devices),
                          BST_OK);
    if (n_devices == 0)
        printf("\n  no OpenCL device on this machine (%s): skipped", bst_last_error());
    loaded = n_devices > 0;
    return loaded;
}

#define NEED_DEVICE()         \
    do {                      \
        if (!load_plugin())   \
            return;           \
    } while (0)

static void *open_device(void)
{
    void *dev = NULL;
    bst_status st = api.device_open(api.ctx, 0, &dev);
    if (st != BST_OK)
        fprintf(stderr, "\n  device_open: %s\n", bst_last_error());
    CU_ASSERT_EQUAL(st, BST_OK);
    return dev;
}

/* --- log capture --- */

static char logbuf[65536];
static size_t loglen;

static void capture(void *user, bst_log_level level, const char *message)
{
    (void)user;
    (void)level;
    size_t n = strlen(message);
    if (loglen + n + 2 < sizeof logbuf) {
        memcpy(logbuf + loglen, message, n);
        loglen += n;
        logbuf[loglen++] = '\n';
        logbuf[loglen] = '\0';
    }
}

static void log_start(void)
{
    loglen = 0;
    logbuf[0] = '\0';
    bst_set_log_callback(capture, NULL, BST_LOG_DEBUG);
}

static void log_stop(void) { bst_set_log_callback(NULL, NULL, BST_LOG_WARN); }

/* --- one-node and small partitions --- */

static bst_tensor_desc f32_desc(uint32_t rank, const int64_t *shape, uint32_t binding)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.dtype = BST_DTYPE_F32;
    d.rank = rank;
    int64_t stride = 4;
    for (int i = (int)rank - 1; i >= 0; i--) {
        d.shape[i] = shape[i];
        d.strides[i] = stride;
        stride *= shape[i];
    }
    d.binding = binding;
    return d;
}

typedef struct node_store {
    bst_tensor_desc in[4];
    const bst_tensor_desc *in_ptr[4];
    bst_tensor_desc out;
    bst_attr attr[2];
    const bst_attr *attr_ptr[2];
    bst_node_desc node;
} node_store;

static void node_init(node_store *s, bst_op op, uint32_t n_in, uint32_t n_attrs)
{
    for (uint32_t i = 0; i < n_in; i++)
        s->in_ptr[i] = &s->in[i];
    for (uint32_t i = 0; i < n_attrs; i++)
        s->attr_ptr[i] = &s->attr[i];
    memset(&s->node, 0, sizeof s->node);
    s->node.struct_size = sizeof s->node;
    s->node.op = op;
    s->node.n_inputs = n_in;
    s->node.inputs = s->in_ptr;
    s->node.output = &s->out;
    s->node.n_attrs = n_attrs;
    s->node.attrs = s->attr_ptr;
}

/* scale(x f32[rows, 64]) in binding 0 -> binding 1 */
static void scale_node(node_store *s, int64_t rows, double scale)
{
    const int64_t shape[2] = {rows, 64};
    node_init(s, BST_OP_SCALE, 1, 1);
    s->in[0] = f32_desc(2, shape, 0);
    s->out = f32_desc(2, shape, 1);
    s->attr[0] = bst_attr_float(BST_ATTR_SCALE, scale);
}

static void rms_norm_node(node_store *s)
{
    const int64_t shape[2] = {2, 64};
    node_init(s, BST_OP_RMS_NORM, 1, 1);
    s->in[0] = f32_desc(2, shape, 0);
    s->out = f32_desc(2, shape, 1);
    s->attr[0] = bst_attr_float(BST_ATTR_EPS, 1e-5);
}

static bst_status query(void *dev, const bst_node_desc *node, bst_kernel_variant *vars,
                        uint32_t cap, uint32_t *count)
{
    for (uint32_t i = 0; i < cap; i++) {
        memset(&vars[i], 0, sizeof vars[i]);
        vars[i].struct_size = sizeof vars[i];
    }
    *count = 0;
    return api.query(dev, node, vars, sizeof vars[0], cap, count);
}

static bst_status compile1(void *dev, const bst_node_desc *node, uint32_t n_bindings,
                           void **exe)
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

/* Runs scale(x) with x[i] = i * 0.25 - 3 on dev and checks the result; returns the status. */
static bst_status run_scale(void *dev, double scale)
{
    enum { ROWS = 3, N = ROWS * 64 };
    node_store s;
    scale_node(&s, ROWS, scale);
    void *exe = NULL, *bufs[2] = {NULL, NULL};
    bst_status st = compile1(dev, &s.node, 2, &exe);
    float x[N], y[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)i * 0.25f - 3.0f;
    if (st == BST_OK)
        st = api.buffer_alloc(dev, sizeof x, &bufs[0]);
    if (st == BST_OK)
        st = api.buffer_alloc(dev, sizeof y, &bufs[1]);
    if (st == BST_OK)
        st = api.buffer_write(dev, bufs[0], 0, x, sizeof x);
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = 1, .n_kv = 1};
    if (st == BST_OK)
        st = api.execute(dev, exe, bufs, 2, &rp);
    if (st == BST_OK)
        st = api.buffer_read(dev, bufs[1], 0, y, sizeof y);
    if (st == BST_OK)
        for (int i = 0; i < N; i++)
            CU_ASSERT_EQUAL(y[i], x[i] * (float)scale);
    for (int i = 0; i < 2; i++)
        if (bufs[i])
            api.buffer_free(dev, bufs[i]);
    if (exe)
        api.executable_free(dev, exe);
    return st;
}

/* --- devices --- */

static void test_devices(void)
{
    NEED_DEVICE();
    bst_device_info infos[8], again[8];
    for (int i = 0; i < 8; i++) {
        memset(&infos[i], 0, sizeof infos[i]);
        infos[i].struct_size = sizeof infos[i];
        again[i] = infos[i];
    }
    uint32_t n = 0, n2 = 0;
    CU_ASSERT_EQUAL_FATAL(api.enumerate(api.ctx, infos, sizeof infos[0], 8, &n), BST_OK);
    CU_ASSERT_EQUAL(n, n_devices);
    CU_ASSERT_EQUAL_FATAL(api.enumerate(api.ctx, again, sizeof again[0], 8, &n2), BST_OK);
    for (uint32_t i = 0; i < n && i < 8; i++) {
        printf("\n  device %u: \"%s\" (%s, driver %s), kind %u, %llu MiB, max alloc %llu MiB, "
               "unified %d, fingerprint %016llx",
               i, infos[i].name, infos[i].vendor, infos[i].driver_version, infos[i].kind,
               (unsigned long long)(infos[i].memory_bytes >> 20),
               (unsigned long long)(infos[i].max_alloc_bytes >> 20), infos[i].unified_memory,
               (unsigned long long)infos[i].fingerprint);
        CU_ASSERT(infos[i].name[0] != '\0');
        CU_ASSERT(infos[i].driver_version[0] != '\0');
        CU_ASSERT(infos[i].kind <= BST_DEVICE_ACCEL);
        CU_ASSERT(infos[i].memory_bytes > 0);
        CU_ASSERT(infos[i].max_alloc_bytes > 0 &&
                  infos[i].max_alloc_bytes <= infos[i].memory_bytes);
        CU_ASSERT(infos[i].fingerprint != 0);
        CU_ASSERT_EQUAL(infos[i].fingerprint, again[i].fingerprint); /* stable */
        /* PoCL's device runs on the CPU and must say so: the loader ranks it after the native
         * CPU backend. */
        if (strstr(infos[i].name, "pthread") || strstr(infos[i].name, "cpu-"))
            CU_ASSERT_EQUAL(infos[i].kind, BST_DEVICE_CPU);
        if (infos[i].kind == BST_DEVICE_CPU)
            CU_ASSERT_TRUE(infos[i].self_threaded);
    }
    /* An index past the end is refused with a status, not a crash. */
    void *dev = NULL;
    CU_ASSERT_EQUAL(api.device_open(api.ctx, n_devices, &dev), BST_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NULL(dev);
}

/* --- variants --- */

static void test_matmul_variants(void)
{
    NEED_DEVICE();
    void *dev = open_device();
    if (!dev)
        return;
    const int64_t a1[2] = {1, 64}, a64[2] = {64, 64}, w[2] = {32, 64}, o1[2] = {1, 32},
                  o64[2] = {64, 32};
    node_store s;
    node_init(&s, BST_OP_MATMUL, 2, 0);
    s.in[1] = f32_desc(2, w, 1);
    bst_kernel_variant v1[4], v64[4];
    uint32_t c1 = 0, c64 = 0;
    s.in[0] = f32_desc(2, a1, 0);
    s.out = f32_desc(2, o1, 2);
    CU_ASSERT_EQUAL(query(dev, &s.node, v1, 4, &c1), BST_OK);
    s.in[0] = f32_desc(2, a64, 0);
    s.out = f32_desc(2, o64, 2);
    CU_ASSERT_EQUAL(query(dev, &s.node, v64, 4, &c64), BST_OK);
    CU_ASSERT_EQUAL(c1, 2);
    CU_ASSERT_EQUAL(c64, 2);
    if (c1 == 2 && c64 == 2) {
        printf("\n  M=1: %s, %s; M=64: %s, %s", v1[0].name, v1[1].name, v64[0].name, v64[1].name);
        CU_ASSERT_STRING_EQUAL(v1[0].name, "gemv"); /* decode: gemv first */
        CU_ASSERT_STRING_EQUAL(v1[1].name, "tiled");
        /* prompt: tiled first, except on a CPU-type device (where gemv measured faster) */
        bst_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        uint32_t n = 0;
        CU_ASSERT_EQUAL(api.enumerate(api.ctx, &info, sizeof info, 1, &n), BST_OK);
        bool cpu = info.kind == BST_DEVICE_CPU;
        CU_ASSERT_STRING_EQUAL(v64[0].name, cpu ? "gemv" : "tiled");
        CU_ASSERT_STRING_EQUAL(v64[1].name, cpu ? "tiled" : "gemv");
        CU_ASSERT_NOT_EQUAL(v1[0].source_hash, v1[1].source_hash);
        CU_ASSERT_EQUAL(v1[0].source_hash, strcmp(v64[0].name, "gemv") == 0 ? v64[0].source_hash
                                                                            : v64[1].source_hash);
    }
    /* A variant index past the list is refused at compile. */
    s.node.variant = 2;
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile1(dev, &s.node, 3, &exe), BST_ERR_INVALID_ARG);
    api.device_close(dev);
}

/* --- program cache --- */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Path of the cache entry of family `fam` (the only one: each test dir starts empty). */
static bool find_entry(const char *fam, char *out, size_t cap)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/opencl", cache_dir);
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    size_t fl = strlen(fam);
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, fam, fl) == 0 && e->d_name[fl] == '-' && n > 4 &&
            strcmp(e->d_name + n - 4, ".bin") == 0) {
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            found = true;
        }
    }
    closedir(d);
    return found;
}

/* Checks the entry's header against its content, as the format in ocl_program.c says. */
static bool entry_valid(const char *path)
{
    size_t size = 0;
    char *data = bst_test_read_file(path, &size);
    if (!data)
        return false;
    const uint8_t *p = (const uint8_t *)data;
    bool ok = size >= 40 && memcmp(p, "BSTOCLP", 8) == 0 && p[8] == 1 && p[12] == 40 &&
              le64(p + 24) == size - 40 && le64(p + 32) == fnv1a(p + 40, size - 40);
    free(data);
    return ok;
}

static void test_program_cache(void)
{
    NEED_DEVICE();
    node_store s;
    scale_node(&s, 3, 2.0);
    bst_kernel_variant v[2];
    uint32_t count = 0;

    /* 1. A fresh build writes an entry with a valid header, in a 0700 directory. */
    void *dev = open_device();
    if (!dev)
        return;
    CU_ASSERT_EQUAL(query(dev, &s.node, v, 2, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    api.device_close(dev);
    char path[1024];
    CU_ASSERT_TRUE_FATAL(find_entry("elem", path, sizeof path));
    CU_ASSERT_TRUE(entry_valid(path));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/opencl", cache_dir);
    struct stat sb;
    CU_ASSERT_EQUAL(stat(dir, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);

    /* 2. A corrupted binary: the checksum catches it, the program is rebuilt and works, and the
     * entry is rewritten valid. */
    size_t size = 0;
    char *data = bst_test_read_file(path, &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    data[40 + (size - 40) / 2] ^= 0x5a;
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, size, f), size);
    fclose(f);
    CU_ASSERT_FALSE(entry_valid(path));
    log_start();
    dev = open_device();
    if (dev) {
        CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_OK);
        api.device_close(dev);
    }
    log_stop();
    printf("\n  log after corrupting the entry:\n%s", logbuf);
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "checksum mismatch"));
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "rebuilding"));
    CU_ASSERT_TRUE(entry_valid(path));

    /* 3. A truncated entry (half a header). */
    f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, 20, f), 20);
    fclose(f);
    log_start();
    dev = open_device();
    if (dev) {
        CU_ASSERT_EQUAL(run_scale(dev, -0.5), BST_OK);
        api.device_close(dev);
    }
    log_stop();
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "shorter than its header"));
    CU_ASSERT_TRUE(entry_valid(path));

    /* 4. A header claiming more bytes than the file holds. */
    size_t good = 0;
    char *valid = bst_test_read_file(path, &good);
    CU_ASSERT_PTR_NOT_NULL_FATAL(valid);
    valid[24] = (char)(valid[24] + 1);
    f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(valid, 1, good, f), good);
    fclose(f);
    log_start();
    dev = open_device();
    if (dev) {
        CU_ASSERT_EQUAL(run_scale(dev, 3.0), BST_OK);
        api.device_close(dev);
    }
    log_stop();
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "binary size disagrees"));
    CU_ASSERT_TRUE(entry_valid(path));

    /* 5. A valid entry is used as is: nothing is logged about it. */
    log_start();
    dev = open_device();
    if (dev) {
        CU_ASSERT_EQUAL(run_scale(dev, 1.5), BST_OK);
        api.device_close(dev);
    }
    log_stop();
    CU_ASSERT_PTR_NULL(strstr(logbuf, "ignored"));
    free(valid);
    free(data);
}

/* --- broken kernel family --- */

static void test_broken_kernel(void)
{
    NEED_DEVICE();
    setenv("BASTION_OPENCL_TEST_BROKEN_KERNEL", "norm", 1);
    void *dev = open_device();
    unsetenv("BASTION_OPENCL_TEST_BROKEN_KERNEL");
    if (!dev)
        return;
    node_store s;
    rms_norm_node(&s);
    bst_kernel_variant v[2];
    uint32_t count = 99;
    bst_status st = query(dev, &s.node, v, 2, &count);
    const char *msg = bst_last_error();
    printf("\n  query(rms_norm) with a broken norm family: %s: %.600s", bst_status_name(st), msg);
    CU_ASSERT_EQUAL(st, BST_ERR_COMPILE);
    CU_ASSERT_EQUAL(count, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "norm"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "build log"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "error")); /* the compiler's diagnostics */
    /* The failure is remembered (no rebuild), and compile reports it the same way. */
    CU_ASSERT_EQUAL(query(dev, &s.node, v, 2, &count), BST_ERR_COMPILE);
    void *exe = NULL;
    st = compile1(dev, &s.node, 2, &exe);
    CU_ASSERT_EQUAL(st, BST_ERR_COMPILE);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "build log"));
    CU_ASSERT_PTR_NULL(exe);
    /* Other families are unaffected. */
    CU_ASSERT_EQUAL(run_scale(dev, 4.0), BST_OK);
    api.device_close(dev);

    /* Without the hook the same op builds. */
    dev = open_device();
    if (!dev)
        return;
    CU_ASSERT_EQUAL(query(dev, &s.node, v, 2, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    api.device_close(dev);
}

/* --- injected faults --- */

static void test_faults(void)
{
    NEED_DEVICE();
    void *dev = open_device();
    if (!dev)
        return;
    void *buf = NULL;

    /* Out of device memory at allocation: CL_MEM_OBJECT_ALLOCATION_FAILURE -> DEVICE_OOM. */
    bsti_fault_set("alloc", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 1024, &buf), BST_ERR_DEVICE_OOM);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "CL_MEM_OBJECT_ALLOCATION_FAILURE"));
    CU_ASSERT_PTR_NULL(buf);
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 1024, &buf), BST_OK); /* not sticky */
    api.buffer_free(dev, buf);
    buf = NULL;
    /* ... and for a weight. */
    static const float w[16] = {1.0f};
    bst_tensor_desc wd = f32_desc(1, (const int64_t[]){16}, 0);
    uint64_t bytes = 0;
    uint32_t layout = 0;
    bsti_fault_set("alloc", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(api.prepare_weight(dev, &wd, w, sizeof w, &buf, &bytes, &layout),
                    BST_ERR_DEVICE_OOM);
    CU_ASSERT_EQUAL(api.prepare_weight(dev, &wd, w, sizeof w, &buf, &bytes, &layout), BST_OK);
    CU_ASSERT_EQUAL(bytes, sizeof w);
    if (buf) {
        CU_ASSERT_EQUAL(api.buffer_write(dev, buf, 0, w, sizeof w), BST_ERR_INVALID_ARG);
        api.buffer_free(dev, buf);
    }
    /* A real failure of the same kind: larger than the device's largest allocation. */
    buf = NULL;
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, UINT64_C(1) << 62, &buf), BST_ERR_DEVICE_OOM);

    /* Out of resources at launch: CL_OUT_OF_RESOURCES -> DEVICE_OOM, not sticky. */
    bsti_fault_set("execute", BST_ERR_DEVICE_OOM, 1);
    CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_ERR_DEVICE_OOM);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "CL_OUT_OF_RESOURCES"));
    CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_OK);

    /* A failed build: BST_ERR_COMPILE from compile, and the next compile works. */
    bsti_fault_set("compile", BST_ERR_COMPILE, 1);
    CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_ERR_COMPILE);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "CL_BUILD_PROGRAM_FAILURE"));
    CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_OK);

    /* A build failure of a family that was never built, through query. */
    setenv("BASTION_OPENCL_TEST_BROKEN_KERNEL", "0", 1); /* "0": hook off */
    void *dev2 = open_device();
    unsetenv("BASTION_OPENCL_TEST_BROKEN_KERNEL");
    if (dev2) {
        node_store s;
        rms_norm_node(&s);
        bst_kernel_variant v[2];
        uint32_t count = 0;
        bsti_fault_set("compile", BST_ERR_COMPILE, 1);
        CU_ASSERT_EQUAL(query(dev2, &s.node, v, 2, &count), BST_ERR_COMPILE);
        CU_ASSERT_EQUAL(query(dev2, &s.node, v, 2, &count), BST_OK); /* a fault is not kept */
        CU_ASSERT_EQUAL(count, 1);
        api.device_close(dev2);
    }

    /* A lost device: CL_DEVICE_NOT_AVAILABLE -> DEVICE_LOST, and it stays lost. */
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_ERR_DEVICE_LOST);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "CL_DEVICE_NOT_AVAILABLE"));
    CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_ERR_DEVICE_LOST);
    buf = NULL;
    CU_ASSERT_EQUAL(api.buffer_alloc(dev, 64, &buf), BST_ERR_DEVICE_LOST);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "lost"));
    api.device_close(dev);
    /* A new handle starts over. */
    dev = open_device();
    if (dev) {
        CU_ASSERT_EQUAL(run_scale(dev, 2.0), BST_OK);
        api.device_close(dev);
    }
    bsti_fault_set("alloc", BST_OK, 0);
    bsti_fault_set("execute", BST_OK, 0);
    bsti_fault_set("compile", BST_OK, 0);
}

/* --- a partition of several nodes with symbolic extents --- */

/* y = scale(x[n_tokens, 64], 0.5) + b[64]; z = rms_norm(y) — compiled once, run with
 * different n_tokens: shape arguments are set per run, buffers per run. */
static void test_symbolic_partition(void)
{
    NEED_DEVICE();
    void *dev = open_device();
    if (!dev)
        return;
    enum { T = 6, E = 64 };
    const int64_t sx[2] = {T, E}, sb[1] = {E};
    node_store n0, n1, n2;
    scale_node(&n0, T, 0.5);
    n0.in[0].sym[0] = BST_SYM_N_TOKENS;
    n0.out = f32_desc(2, sx, 2);
    n0.out.sym[0] = BST_SYM_N_TOKENS;
    node_init(&n1, BST_OP_ADD, 2, 0);
    n1.in[0] = n0.out;
    n1.in[1] = f32_desc(1, sb, 1);
    n1.out = f32_desc(2, sx, 3);
    n1.out.sym[0] = BST_SYM_N_TOKENS;
    rms_norm_node(&n2);
    n2.in[0] = n1.out;
    n2.out = f32_desc(2, sx, 2); /* reuses y's buffer, as a planner would */
    n2.out.sym[0] = BST_SYM_N_TOKENS;
    const bst_node_desc *nodes[3] = {&n0.node, &n1.node, &n2.node};
    bst_partition_desc p = {.struct_size = sizeof p, .n_nodes = 3, .nodes = nodes,
                            .n_bindings = 4};
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(api.compile(dev, &p, &exe), BST_OK);
    float x[T * E], b[E], z[T * E];
    for (int i = 0; i < T * E; i++)
        x[i] = sinf((float)i * 0.37f) * 2.0f;
    for (int i = 0; i < E; i++)
        b[i] = (float)i / 64.0f - 0.5f;
    void *bufs[4] = {NULL};
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof x, &bufs[i]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, x, sizeof x), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, b, sizeof b), BST_OK);
    static const int64_t runs[] = {3, 6, 1, 0, 5};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        int64_t nt = runs[r];
        const float sentinel = -1234.5f;
        float fill[T * E];
        for (int i = 0; i < T * E; i++)
            fill[i] = sentinel;
        CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[2], 0, fill, sizeof fill), BST_OK);
        bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = nt, .n_kv = 1};
        CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &rp), BST_OK);
        CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, z, sizeof z), BST_OK);
        double worst = 0.0;
        for (int64_t t = 0; t < T; t++) {
            double y[E], ss = 0.0;
            for (int i = 0; i < E; i++) {
                y[i] = (double)(x[t * E + i] * 0.5f) + (double)b[i];
                ss += y[i] * y[i];
            }
            double inv = 1.0 / sqrt(ss / E + 1e-5);
            for (int i = 0; i < E; i++) {
                float got = z[t * E + i];
                if (t < nt)
                    worst = fmax(worst, fabs((double)got - y[i] * inv));
                else
                    CU_ASSERT_EQUAL(got, sentinel); /* rows past n_tokens stay untouched */
            }
        }
        printf("\n  n_tokens %lld: worst error %.3g", (long long)nt, worst);
        CU_ASSERT(worst < 1e-5);
    }
    /* n_tokens above the bound is refused. */
    bst_run_params bad = {.struct_size = sizeof bad, .n_tokens = T + 1, .n_kv = 1};
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &bad), BST_ERR_INVALID_ARG);
    for (int i = 0; i < 4; i++)
        api.buffer_free(dev, bufs[i]);
    api.executable_free(dev, exe);
    api.device_close(dev);
}

/* --- matmul with a symbolic number of rows --- */

/* a f32[n_tokens:64, 128] x w q4_1[96, 128] with both variants, n_tokens on both sides of
 * gemv's regime: the variant compiled for the bound must keep working whatever the run-time
 * rows are (the order of variants once followed the run-time M and launched the tiled kernel
 * with gemv's work sizes). */
static void test_matmul_symbolic_rows(void)
{
    NEED_DEVICE();
    void *dev = open_device();
    if (!dev)
        return;
    enum { MB = 64, N = 96, K = 128, BLK = 20 };
    const int64_t sa[2] = {MB, K}, so[2] = {MB, N};
    node_store s;
    node_init(&s, BST_OP_MATMUL, 2, 0);
    s.in[0] = f32_desc(2, sa, 0);
    s.in[0].sym[0] = BST_SYM_N_TOKENS;
    memset(&s.in[1], 0, sizeof s.in[1]);
    s.in[1].struct_size = sizeof s.in[1];
    s.in[1].dtype = BST_DTYPE_Q4_1;
    s.in[1].rank = 2;
    s.in[1].shape[0] = N;
    s.in[1].shape[1] = K;
    s.in[1].strides[0] = (K / 32) * BLK;
    s.in[1].strides[1] = BLK;
    s.in[1].binding = 1;
    s.out = f32_desc(2, so, 2);
    s.out.sym[0] = BST_SYM_N_TOKENS;

    static float a[MB * K], wf[N * K], wq[N * K], out[MB * N];
    static uint8_t w[N * (K / 32) * BLK];
    for (int i = 0; i < MB * K; i++)
        a[i] = sinf((float)i * 0.71f);
    for (int i = 0; i < N * K; i++)
        wf[i] = cosf((float)i * 0.13f) * 0.5f;
    for (int r = 0; r < N; r++) {
        CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_1, wf + r * K, w + r * (K / 32) * BLK, K),
                              BST_OK);
        CU_ASSERT_EQUAL_FATAL(
            bsti_dequantize(BST_DTYPE_Q4_1, w + r * (K / 32) * BLK, wq + r * K, K), BST_OK);
    }
    bst_kernel_variant v[4];
    uint32_t count = 0;
    CU_ASSERT_EQUAL_FATAL(query(dev, &s.node, v, 4, &count), BST_OK);
    CU_ASSERT_EQUAL_FATAL(count, 2);
    void *bufs[3] = {NULL, NULL, NULL};
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof a, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof w, &bufs[1]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, sizeof out, &bufs[2]), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, a, sizeof a), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, w, sizeof w), BST_OK);
    static const int64_t rows[] = {1, 5, 8, 9, 40, 64, 3};
    for (uint32_t var = 0; var < count; var++) {
        s.node.variant = var;
        void *exe = NULL;
        CU_ASSERT_EQUAL_FATAL(compile1(dev, &s.node, 3, &exe), BST_OK);
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            int64_t m_eff = rows[ri];
            bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = m_eff, .n_kv = 1};
            CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
            CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[2], 0, out, sizeof out), BST_OK);
            double num = 0.0, den = 0.0;
            for (int64_t m = 0; m < m_eff; m++)
                for (int n = 0; n < N; n++) {
                    double ref = 0.0;
                    for (int k = 0; k < K; k++)
                        ref += (double)a[m * K + k] * (double)wq[n * K + k];
                    double e = (double)out[m * N + n] - ref;
                    num += e * e;
                    den += ref * ref;
                }
            double nmse = den > 0 ? num / den : num;
            if (!(nmse < 1e-10))
                printf("\n  variant %s, n_tokens %lld: NMSE %.3g", v[var].name, (long long)m_eff,
                       nmse);
            CU_ASSERT(nmse < 1e-10);
        }
        api.executable_free(dev, exe);
    }
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
    api.device_close(dev);
}

/* --- fused attention --- */

typedef struct att_case {
    int64_t T, S, Hq, Hkv, D; /* bounds */
    int64_t t_eff, s_eff;     /* run-time extents (symbolic when below the bound) */
    bst_dtype kv;             /* f32 or f16 */
    bool mask, causal;
    int64_t window;
} att_case;

static bst_tensor_desc plain_desc(bst_dtype dt, const int64_t shape[3], uint32_t binding)
{
    bst_tensor_desc d = f32_desc(3, shape, binding);
    if (dt == BST_DTYPE_F16) {
        d.dtype = BST_DTYPE_F16;
        for (int i = 0; i < 3; i++)
            d.strides[i] /= 2;
    }
    return d;
}

/* backend.h's ATTENTION, in double, on the run-time extents. */
static void attention_ref(const att_case *c, const float *q, const float *k, const float *v,
                          const float *mask, double scale, double *out)
{
    int64_t T = c->t_eff, S = c->s_eff, group = c->Hq / c->Hkv;
    double *p = malloc((size_t)(S ? S : 1) * sizeof *p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < c->Hq; h++) {
            int64_t pos = S - T + t, hk = h / group;
            double mx = -INFINITY;
            for (int64_t j = 0; j < S; j++) {
                bool hidden = (c->causal && j > pos) || (c->window > 0 && j <= pos - c->window);
                double d = 0.0;
                for (int64_t e = 0; e < c->D; e++)
                    d += (double)q[(t * c->Hq + h) * c->D + e] * k[(j * c->Hkv + hk) * c->D + e];
                p[j] = hidden ? -INFINITY : d * scale + (mask ? mask[t * c->S + j] : 0.0);
                mx = fmax(mx, p[j]);
            }
            double sum = 0.0;
            for (int64_t j = 0; j < S; j++) {
                p[j] = mx == -INFINITY || p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
                sum += p[j];
            }
            for (int64_t e = 0; e < c->D; e++) {
                double o = 0.0;
                for (int64_t j = 0; j < S; j++)
                    o += p[j] * v[(j * c->Hkv + hk) * c->D + e];
                out[(t * c->Hq + h) * c->D + e] = sum > 0.0 ? o / sum : 0.0;
            }
        }
    free(p);
}

static void run_attention_case(void *dev, const att_case *c, unsigned seed)
{
    const int64_t sq[3] = {c->T, c->Hq, c->D}, skv[3] = {c->S, c->Hkv, c->D},
                  sm[2] = {c->T, c->S};
    node_store s;
    node_init(&s, BST_OP_ATTENTION, c->mask ? 4 : 3, 2);
    s.in[0] = plain_desc(BST_DTYPE_F32, sq, 0);
    s.in[1] = plain_desc(c->kv, skv, 1);
    s.in[2] = plain_desc(c->kv, skv, 2);
    s.out = plain_desc(BST_DTYPE_F32, sq, 4);
    if (c->mask)
        s.in[3] = f32_desc(2, sm, 3);
    bool sym_t = c->t_eff < c->T, sym_s = c->s_eff < c->S;
    if (sym_t) {
        s.in[0].sym[0] = s.out.sym[0] = BST_SYM_N_TOKENS;
        s.in[3].sym[0] = BST_SYM_N_TOKENS;
    }
    if (sym_s) {
        s.in[1].sym[0] = s.in[2].sym[0] = BST_SYM_N_KV;
        s.in[3].sym[1] = BST_SYM_N_KV;
    }
    double scale = 1.0 / sqrt((double)c->D);
    s.attr[0] = bst_attr_float(BST_ATTR_SCALE, scale);
    memset(&s.attr[1], 0, sizeof s.attr[1]);
    s.attr[1].struct_size = sizeof s.attr[1];
    s.attr[1].key = BST_ATTR_CAUSAL;
    s.attr[1].kind = BST_ATTR_KIND_INT;
    s.attr[1].count = 1;
    s.attr[1].ints[0] = c->causal;
    if (c->window > 0) { /* a third attribute */
        static bst_attr win;
        static const bst_attr *ptrs[3];
        win = s.attr[1];
        win.key = BST_ATTR_WINDOW;
        win.ints[0] = c->window;
        ptrs[0] = &s.attr[0];
        ptrs[1] = &s.attr[1];
        ptrs[2] = &win;
        s.node.attrs = ptrs;
        s.node.n_attrs = 3;
    }
    size_t nq = (size_t)(c->T * c->Hq * c->D), nkv = (size_t)(c->S * c->Hkv * c->D);
    size_t nm = (size_t)(c->T * c->S);
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *mask = malloc(nm * sizeof *mask), *got = malloc(nq * sizeof *got);
    uint16_t *k16 = malloc(nkv * 2), *v16 = malloc(nkv * 2);
    double *ref = malloc(nq * sizeof *ref);
    CU_ASSERT_FATAL(q && k && v && mask && got && k16 && v16 && ref);
    srand(seed);
    for (size_t i = 0; i < nq; i++)
        q[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    for (size_t i = 0; i < nkv; i++) {
        k[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
        v[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
        if (c->kv == BST_DTYPE_F16) { /* the reference sees what the device reads */
            k16[i] = bsti_f32_to_f16(k[i]);
            v16[i] = bsti_f32_to_f16(v[i]);
            k[i] = bsti_f16_to_f32(k16[i]);
            v[i] = bsti_f16_to_f32(v16[i]);
        }
    }
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t j = 0; j < c->S; j++) /* -inf on a quarter of the keys; row 1 fully */
            mask[t * c->S + j] = (rand() % 4 == 0 || t == 1) ? -INFINITY
                                                             : (float)(rand() % 100) / 50.0f - 1.0f;
    attention_ref(c, q, k, v, c->mask ? mask : NULL, scale, ref);

    bst_kernel_variant var[2];
    uint32_t count = 0;
    CU_ASSERT_EQUAL(query(dev, &s.node, var, 2, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    void *exe = NULL, *bufs[5] = {NULL};
    size_t kvb = nkv * (c->kv == BST_DTYPE_F16 ? 2 : 4);
    bst_status st = compile1(dev, &s.node, 5, &exe);
    CU_ASSERT_EQUAL(st, BST_OK);
    if (st != BST_OK)
        printf("\n  compile: %s", bst_last_error());
    size_t sizes[5] = {nq * 4, kvb, kvb, nm * 4, nq * 4};
    const void *src[4] = {q, c->kv == BST_DTYPE_F16 ? (const void *)k16 : k,
                          c->kv == BST_DTYPE_F16 ? (const void *)v16 : v, mask};
    for (int i = 0; i < 5 && st == BST_OK; i++) {
        st = api.buffer_alloc(dev, sizes[i], &bufs[i]);
        if (st == BST_OK && i < 4)
            st = api.buffer_write(dev, bufs[i], 0, src[i], sizes[i]);
    }
    bst_run_params rp = {.struct_size = sizeof rp, .n_tokens = c->t_eff, .n_kv = c->s_eff};
    if (st == BST_OK)
        st = api.execute(dev, exe, bufs, 5, &rp);
    if (st == BST_OK)
        st = api.buffer_read(dev, bufs[4], 0, got, nq * 4);
    CU_ASSERT_EQUAL(st, BST_OK);
    if (st == BST_OK) {
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < (size_t)(c->t_eff * c->Hq * c->D); i++) {
            double e = (double)got[i] - ref[i];
            num += e * e;
            den += ref[i] * ref[i];
        }
        double nmse = den > 0 ? num / den : num;
        printf("\n  attention T=%lld/%lld S=%lld/%lld H=%lld/%lld D=%lld %s%s%s window %lld: "
               "NMSE %.3g",
               (long long)c->t_eff, (long long)c->T, (long long)c->s_eff, (long long)c->S,
               (long long)c->Hq, (long long)c->Hkv, (long long)c->D,
               c->kv == BST_DTYPE_F16 ? "f16 kv" : "f32 kv", c->mask ? ", mask" : "",
               c->causal ? ", causal" : "", (long long)c->window, nmse);
        CU_ASSERT(nmse <= 5e-4 * 1e-3); /* far inside the attention bound: an f32 kernel */
        /* row 1 is fully masked: zeros */
        if (c->mask && c->t_eff > 1)
            for (int64_t e = 0; e < c->Hq * c->D; e++)
                CU_ASSERT_EQUAL(got[c->Hq * c->D + e], 0.0f);
    }
    for (int i = 0; i < 5; i++)
        if (bufs[i])
            api.buffer_free(dev, bufs[i]);
    if (exe)
        api.executable_free(dev, exe);
    free(q);
    free(k);
    free(v);
    free(mask);
    free(got);
    free(k16);
    free(v16);
    free(ref);
}

static void test_attention(void)
{
    NEED_DEVICE();
    /* Not offered on a CPU-type device by default (the native CPU backend keeps it). */
    setenv("BASTION_OPENCL_FUSED", "0", 1);
    void *dev = open_device();
    unsetenv("BASTION_OPENCL_FUSED");
    if (!dev)
        return;
    att_case c0 = {3, 7, 4, 2, 16, 3, 7, BST_DTYPE_F32, false, true, 0};
    {
        const int64_t sq[3] = {3, 4, 16}, skv[3] = {7, 2, 16};
        node_store s;
        node_init(&s, BST_OP_ATTENTION, 3, 0);
        s.in[0] = plain_desc(BST_DTYPE_F32, sq, 0);
        s.in[1] = plain_desc(BST_DTYPE_F32, skv, 1);
        s.in[2] = plain_desc(BST_DTYPE_F32, skv, 2);
        s.out = plain_desc(BST_DTYPE_F32, sq, 3);
        bst_kernel_variant var[2];
        uint32_t count = 9;
        CU_ASSERT_EQUAL(query(dev, &s.node, var, 2, &count), BST_OK);
        CU_ASSERT_EQUAL(count, 0);
    }
    api.device_close(dev);

    setenv("BASTION_OPENCL_FUSED", "1", 1);
    dev = open_device();
    unsetenv("BASTION_OPENCL_FUSED");
    if (!dev)
        return;
    const att_case cases[] = {
        c0,
        {3, 7, 4, 2, 16, 3, 7, BST_DTYPE_F16, true, true, 0},
        {4, 9, 3, 3, 8, 4, 9, BST_DTYPE_F32, true, false, 0},
        {5, 12, 2, 1, 16, 5, 12, BST_DTYPE_F32, false, true, 3}, /* sliding window */
        {8, 16, 6, 2, 32, 2, 9, BST_DTYPE_F16, true, true, 0},   /* symbolic T and S */
        {2, 150, 2, 1, 80, 2, 150, BST_DTYPE_F32, false, true, 0}, /* 3 key chunks, D > 64 */
        {1, 256, 9, 3, 64, 1, 70, BST_DTYPE_F16, true, true, 0}, /* a decode step */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_attention_case(dev, &cases[i], 1000u + (unsigned)i);
    api.device_close(dev);
}

/* --- no platform --- */

/* Child: with an empty ICD vendor directory the plugin loads, finds no platform and is recorded
 * as "no device" with its reason. Exit status 0 when that holds. */
static int no_platform_child(void)
{
    bst_context_options opt = {.struct_size = sizeof opt, .backends = "opencl"};
    bst_context *ctx = NULL;
    if (bst_context_create(&opt, &ctx) != BST_OK) {
        fprintf(stderr, "context: %s\n", bst_last_error());
        return 2;
    }
    int rc = 3;
    for (uint32_t i = 0; i < bst_context_plugin_count(ctx); i++) {
        bst_plugin_record r;
        memset(&r, 0, sizeof r);
        r.struct_size = sizeof r;
        if (bst_context_plugin(ctx, i, &r) != BST_OK || strcmp(r.name, "opencl") != 0)
            continue;
        printf("opencl plugin: state %s, detail '%s'\n",
               bst_plugin_state_name((bst_plugin_state)r.state), r.detail);
        rc = r.state == BST_PLUGIN_NO_DEVICE && strstr(r.detail, "no device") &&
                     strstr(r.detail, "no OpenCL device")
                 ? 0
                 : 4;
    }
    if (bst_context_device_count(ctx) != 0)
        rc = 5;
    bst_context_destroy(ctx);
    return rc;
}

static void test_no_platform(void)
{
    (void)load_plugin();
    if (!plugin_ok)
        return; /* not built (skipped), or a load failure already reported */
    char vendors[300];
    snprintf(vendors, sizeof vendors, "%s/no-vendors", cache_dir);
    CU_ASSERT_TRUE_FATAL(mkdir(vendors, 0700) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CU_ASSERT_TRUE_FATAL(pid >= 0);
    if (pid == 0) {
        setenv("OCL_ICD_VENDORS", vendors, 1);
        execl("/proc/self/exe", "test_opencl", "--no-platform-child", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status));
    printf("\n  child exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    CU_ASSERT_EQUAL(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
    rmdir(vendors);
}

/* --- cleanup --- */

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void test_cleanup(void)
{
    if (api.destroy && api.ctx)
        api.destroy(api.ctx);
    memset(&api, 0, sizeof api);
    remove_tree(cache_dir);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--no-platform-child") == 0)
        return no_platform_child();
    /* Each run gets an empty program cache: the cache tests count on it, and nothing leaks into
     * the user's. */
    snprintf(cache_dir, sizeof cache_dir, "%s/bastion-test-opencl-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(cache_dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("BASTION_CACHE_DIR", cache_dir, 1);
    static const bst_test_case cases[] = {
        {"no OpenCL platform: no device, with the reason", test_no_platform},
        {"devices", test_devices},
        {"matmul variants", test_matmul_variants},
        {"program cache: written, corrupt entries rebuilt", test_program_cache},
        {"broken kernel family", test_broken_kernel},
        {"injected faults map to statuses", test_faults},
        {"partition with symbolic extents", test_symbolic_partition},
        {"matmul variants with symbolic rows", test_matmul_symbolic_rows},
        {"fused attention", test_attention},
        {"cleanup", test_cleanup},
        {NULL, NULL},
    };
    return bst_test_run_suite("opencl", cases);
}
