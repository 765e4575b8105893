/*
 * tests/test_cpu_exec_cache.c — the CPU backend's reuse of one execute's resolution in the next
 * (backends/cpu/cpu_exec.c, "reusing a resolution"). The plugin is loaded with the real host
 * services except its allocator, which can hand a freed block straight back (LIFO, by 64-byte
 * size class), so a buffer freed and another allocated "at the same address" happens on demand,
 * under ASan too. Whether an execute resolved its nodes again is seen through the test-only fault
 * site "resolve", which execute consults only when it does.
 *
 * Covered: unchanged bindings are reused, also after an unrelated buffer was freed (the values
 * are compared then, not just the handles); a binding swapped for a smaller buffer at a new or at
 * the reused handle address (and data address) fails the bounds check with the message a
 * never-run executable gives; read-only and missing bindings; changed symbol values re-resolve
 * (only when a node uses the symbol), past the bound fail as before; a kernel's failure leaves
 * nothing to reuse; and a decode-like
 * partition (grouped packed q4_1 matmuls, softmax over n_kv) gives bit-identical results to a
 * freshly compiled executable over many executes with changing inputs, symbol values and worker
 * counts.
 */
#include "runtime/runtime.h"

#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- a host whose allocator can recycle a freed block at once --- */

#define LIVE_MAX 8192
#define SPARE_MAX 16

typedef struct block {
    void *p;
    size_t cls, align;
} block;

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static block live[LIVE_MAX];
static uint32_t n_live;
static block spare[SPARE_MAX]; /* freed while recycling, newest last */
static uint32_t n_spare;
static bool recycling;
static bst_host_api host; /* the real host's table with alloc/free below */

static size_t size_class(size_t size) { return size ? (size + 63) & ~(size_t)63 : 64; }

static void *recycling_alloc(size_t size, size_t align)
{
    pthread_mutex_lock(&alloc_lock);
    const size_t cls = size_class(size);
    void *p = NULL;
    for (uint32_t i = n_spare; recycling && !p && i-- > 0;) {
        if (spare[i].cls == cls && spare[i].align == align) {
            p = spare[i].p;
            memmove(&spare[i], &spare[i + 1], (n_spare - i - 1) * sizeof *spare);
            n_spare--;
        }
    }
    if (!p)
        p = bsti_host_api()->alloc(cls, align);
    if (p && n_live < LIVE_MAX)
        live[n_live++] = (block){p, cls, align};
    pthread_mutex_unlock(&alloc_lock);
    return p;
}

static void recycling_free(void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&alloc_lock);
    block b = {NULL, 0, 0};
    for (uint32_t i = n_live; i-- > 0;) {
        if (live[i].p == p) {
            b = live[i];
            live[i] = live[--n_live];
            break;
        }
    }
    if (b.p && recycling && n_spare < SPARE_MAX)
        spare[n_spare++] = b;
    else
        bsti_host_api()->free(p);
    pthread_mutex_unlock(&alloc_lock);
}

/* Stops recycling and really frees what was kept. */
static void stop_recycling(void)
{
    pthread_mutex_lock(&alloc_lock);
    recycling = false;
    for (uint32_t i = 0; i < n_spare; i++)
        bsti_host_api()->free(spare[i].p);
    n_spare = 0;
    pthread_mutex_unlock(&alloc_lock);
}

static bst_backend_api api;
static void *dev;

static bool load_plugin(void)
{
    if (dev)
        return true;
    bst_backend_entry_fn entry = bst_test_plugin_entry("libbst-backend-cpu.so");
    if (!entry)
        return false;
    host = *bsti_host_api();
    host.alloc = recycling_alloc;
    host.free = recycling_free;
    memset(&api, 0, sizeof api);
    api.struct_size = sizeof api;
    if (entry(&host, BST_ABI_VERSION, &api) != BST_OK)
        return false;
    return api.device_open(api.ctx, 0, &dev) == BST_OK;
}

#define NEED_PLUGIN() CU_ASSERT_TRUE_FATAL(load_plugin())

/* --- descriptors --- */

/* Contiguous f32/i32 (4 bytes) or q4_1 (20-byte blocks of 32) at its bound shape. */
static bst_tensor_desc mk(bst_dtype t, uint32_t rank, const int64_t *shape, uint32_t binding,
                          uint64_t offset)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.dtype = t;
    d.rank = rank;
    d.binding = binding;
    d.offset = offset;
    const bool q = t == BST_DTYPE_Q4_1;
    int64_t stride = q ? 20 : 4;
    for (int i = (int)rank - 1; i >= 0; i--) {
        d.shape[i] = shape[i];
        d.strides[i] = stride;
        stride *= i == (int)rank - 1 && q ? shape[i] / 32 : shape[i];
    }
    return d;
}

#define MAX_NODES 8

/* A partition under construction: node i reads in[i][0..n_in[i]) and writes out[i]. */
typedef struct part {
    uint32_t n_nodes, n_bindings;
    bst_op op[MAX_NODES];
    uint32_t n_in[MAX_NODES];
    bst_tensor_desc in[MAX_NODES][4], out[MAX_NODES];
    uint32_t n_attrs[MAX_NODES];
    bst_attr attrs[MAX_NODES][2];
} part;

static void add_node(part *p, bst_op op, uint32_t n_in, const bst_tensor_desc *in,
                     bst_tensor_desc out)
{
    CU_ASSERT_FATAL(p->n_nodes < MAX_NODES);
    uint32_t i = p->n_nodes++;
    p->op[i] = op;
    p->n_in[i] = n_in;
    for (uint32_t k = 0; k < n_in; k++)
        p->in[i][k] = in[k];
    p->out[i] = out;
}

static bst_status compile_part(part *p, void **out_exe)
{
    bst_node_desc nd[MAX_NODES];
    const bst_node_desc *nodes[MAX_NODES];
    const bst_tensor_desc *ins[MAX_NODES][4];
    const bst_attr *ats[MAX_NODES][2];
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        for (uint32_t k = 0; k < p->n_in[i]; k++)
            ins[i][k] = &p->in[i][k];
        for (uint32_t k = 0; k < p->n_attrs[i]; k++)
            ats[i][k] = &p->attrs[i][k];
        nd[i] = (bst_node_desc){.struct_size = sizeof nd[i], .op = p->op[i],
                                .n_inputs = p->n_in[i], .n_attrs = p->n_attrs[i],
                                .inputs = ins[i], .output = &p->out[i], .attrs = ats[i]};
        nodes[i] = &nd[i];
    }
    bst_partition_desc desc = {.struct_size = sizeof desc, .n_nodes = p->n_nodes,
                               .nodes = nodes, .n_bindings = p->n_bindings};
    return api.compile(dev, &desc, out_exe);
}

static bst_run_params params(int64_t n_tokens, int64_t n_kv)
{
    bst_run_params r = {.struct_size = sizeof r, .n_tokens = n_tokens, .n_kv = n_kv};
    return r;
}

/* What a never-run executable of `p` says about these buffers: its status and message. */
static bst_status fresh_execute(part *p, void *const *bufs, uint32_t n_bufs,
                                const bst_run_params *rp, char *msg, size_t cap)
{
    void *exe = NULL;
    bst_status st = compile_part(p, &exe);
    CU_ASSERT_EQUAL_FATAL(st, BST_OK);
    st = api.execute(dev, exe, bufs, n_bufs, rp);
    snprintf(msg, cap, "%s", st == BST_OK ? "" : bst_last_error());
    api.executable_free(dev, exe);
    return st;
}

/* Executes `exe` and expects the failure (status and exact message) a fresh executable gives. */
static void expect_same_failure(part *p, void *exe, void *const *bufs, uint32_t n_bufs,
                                const bst_run_params *rp, const char *needle)
{
    char want[512], got[512];
    bst_status want_st = fresh_execute(p, bufs, n_bufs, rp, want, sizeof want);
    CU_ASSERT_NOT_EQUAL(want_st, BST_OK);
    bst_status st = api.execute(dev, exe, bufs, n_bufs, rp);
    snprintf(got, sizeof got, "%s", bst_last_error());
    CU_ASSERT_EQUAL(st, want_st);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(got, needle));
    if (strcmp(got, want) != 0 || !strstr(got, needle))
        fprintf(stderr, "\n  got  \"%s\"\n  want \"%s\" (with \"%s\")\n", got, want, needle);
}

/* Executes with the "resolve" fault armed: BST_OK means the stored resolution was used. */
static bst_status execute_without_resolving(void *exe, void *const *bufs, uint32_t n_bufs,
                                            const bst_run_params *rp)
{
    bsti_fault_set("resolve", BST_ERR_DEVICE_LOST, 0);
    bst_status st = api.execute(dev, exe, bufs, n_bufs, rp);
    bsti_fault_set("resolve", BST_OK, 0);
    return st;
}

/* --- bindings --- */

static void test_swapped_buffers(void)
{
    NEED_PLUGIN();
    const int64_t s[2] = {4, 4}; /* 64 bytes */
    part p = {.n_bindings = 2};
    bst_tensor_desc x = mk(BST_DTYPE_F32, 2, s, 0, 0);
    add_node(&p, BST_OP_SILU, 1, &x, mk(BST_DTYPE_F32, 2, s, 1, 0));
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile_part(&p, &exe), BST_OK);
    void *in = NULL, *out = NULL, *small = NULL;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 64, &in), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 64, &out), BST_OK);
    const bst_run_params rp = params(1, 1);
    void *bufs[2] = {in, out};
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &rp), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 2, &rp), BST_OK); /* reused */
    /* Another buffer freed: the values are compared again, still match, and stay reused. */
    void *other = NULL;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 64, &other), BST_OK);
    api.buffer_free(dev, other);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 2, &rp), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 2, &rp), BST_OK);

    /* A smaller buffer at a new address, then the right one again. */
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 60, &small), BST_OK);
    bufs[0] = small;
    expect_same_failure(&p, exe, bufs, 2, &rp, "60-byte buffer");
    bufs[0] = in;
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 2, &rp), BST_ERR_DEVICE_LOST);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &rp), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 2, &rp), BST_OK);

    /* `in` freed and a 60-byte buffer allocated at its handle and data addresses: only its size
     * tells them apart. */
    void *old_data = NULL;
    CU_ASSERT_EQUAL(api.buffer_map(dev, in, &old_data), BST_OK);
    void *old_handle = in;
    recycling = true;
    api.buffer_free(dev, in);
    void *again = NULL;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 60, &again), BST_OK);
    stop_recycling();
    void *new_data = NULL;
    CU_ASSERT_EQUAL(api.buffer_map(dev, again, &new_data), BST_OK);
    CU_ASSERT_PTR_EQUAL(again, old_handle);
    CU_ASSERT_PTR_EQUAL(new_data, old_data);
    bufs[0] = again;
    expect_same_failure(&p, exe, bufs, 2, &rp, "60-byte buffer");
    expect_same_failure(&p, exe, bufs, 2, &rp, "60-byte buffer"); /* and again */

    /* The output bound to a read-only imported weight of the right size. */
    float w[16] = {0};
    void *weight = NULL;
    uint64_t bytes = 0;
    uint32_t layout = 0;
    CU_ASSERT_EQUAL_FATAL(api.prepare_weight(dev, &x, w, sizeof w, &weight, &bytes, &layout),
                          BST_OK);
    void *big = NULL;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 64, &big), BST_OK);
    bufs[0] = big;
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &rp), BST_OK);
    bufs[1] = weight;
    expect_same_failure(&p, exe, bufs, 2, &rp, "read-only");
    bufs[1] = out;
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &rp), BST_OK);
    /* Fewer buffers than bindings. */
    expect_same_failure(&p, exe, bufs, 1, &rp, "binding 1 of 1");
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 2, &rp), BST_OK);

    api.executable_free(dev, exe);
    api.buffer_free(dev, weight);
    api.buffer_free(dev, again);
    api.buffer_free(dev, small);
    api.buffer_free(dev, big);
    api.buffer_free(dev, out);
}

/* --- symbols --- */

static void test_symbol_changes(void)
{
    NEED_PLUGIN();
    /* Node 0 scales K [n_kv <= 8, 4]; node 1 (silu on [2, 4]) uses no symbol. */
    const int64_t sk[2] = {8, 4}, sx[2] = {2, 4};
    part p = {.n_bindings = 4};
    bst_tensor_desc k = mk(BST_DTYPE_F32, 2, sk, 0, 0), o = mk(BST_DTYPE_F32, 2, sk, 1, 0);
    k.sym[0] = o.sym[0] = BST_SYM_N_KV;
    add_node(&p, BST_OP_SCALE, 1, &k, o);
    p.attrs[0][0] = bst_attr_float(BST_ATTR_SCALE, 2.0);
    p.n_attrs[0] = 1;
    bst_tensor_desc x = mk(BST_DTYPE_F32, 2, sx, 2, 0);
    add_node(&p, BST_OP_SILU, 1, &x, mk(BST_DTYPE_F32, 2, sx, 3, 0));
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile_part(&p, &exe), BST_OK);
    void *bufs[4] = {NULL};
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, i < 2 ? 128 : 32, &bufs[i]), BST_OK);
    float kv[32], got[32];
    for (int i = 0; i < 32; i++)
        kv[i] = (float)(i + 1);
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[0], 0, kv, sizeof kv), BST_OK);

    bst_run_params rp = params(1, 3);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &rp), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 4, &rp), BST_OK);
    rp.n_tokens = 2; /* no node uses n_tokens: still reused */
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 4, &rp), BST_OK);
    rp.n_kv = 5; /* node 0 uses n_kv */
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 4, &rp), BST_ERR_DEVICE_LOST);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "resolve"));
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &rp), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[1], 0, got, sizeof got), BST_OK);
    for (int i = 0; i < 32; i++) /* rows 0..4 scaled, the rest untouched (zero) */
        CU_ASSERT_EQUAL(got[i], i < 5 * 4 ? 2.0f * kv[i] : 0.0f);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 4, &rp), BST_OK);

    rp.n_kv = 9; /* past the bound: the same failure as ever */
    expect_same_failure(&p, exe, bufs, 4, &rp, "n_kv = 9 is outside 0..8");
    rp.n_kv = 5; /* the failure left nothing stale behind */
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 4, &rp), BST_ERR_DEVICE_LOST);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &rp), BST_OK);
    rp.n_kv = 8;
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &rp), BST_OK);
    CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[1], 0, got, sizeof got), BST_OK);
    for (int i = 0; i < 32; i++)
        CU_ASSERT_EQUAL(got[i], 2.0f * kv[i]);
    /* Without params the symbols are unbound: an error, then fine again. */
    expect_same_failure(&p, exe, bufs, 4, NULL, "n_kv = -1");
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 4, &rp), BST_OK);

    api.executable_free(dev, exe);
    for (int i = 0; i < 4; i++)
        api.buffer_free(dev, bufs[i]);
}

/* --- a kernel's failure --- */

/* A node that fails while running (an id outside the table) leaves no resolution to reuse: the
 * next execute resolves everything again, and then reuses it. */
static void test_kernel_failure(void)
{
    NEED_PLUGIN();
    const int64_t st[2] = {4, 8}, si[1] = {2}, so[2] = {2, 8};
    part p = {.n_bindings = 3};
    bst_tensor_desc in[2] = {mk(BST_DTYPE_F32, 2, st, 0, 0), mk(BST_DTYPE_I32, 1, si, 1, 0)};
    add_node(&p, BST_OP_GET_ROWS, 2, in, mk(BST_DTYPE_F32, 2, so, 2, 0));
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile_part(&p, &exe), BST_OK);
    void *bufs[3] = {NULL};
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 128, &bufs[0]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 8, &bufs[1]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, 64, &bufs[2]), BST_OK);
    const bst_run_params rp = params(1, 1);
    int32_t ids[2] = {3, 1};
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, ids, sizeof ids), BST_OK);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 3, &rp), BST_OK);
    ids[1] = 4;
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, ids, sizeof ids), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 3, &rp), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "outside the table"));
    ids[1] = 0;
    CU_ASSERT_EQUAL(api.buffer_write(dev, bufs[1], 0, ids, sizeof ids), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 3, &rp), BST_ERR_DEVICE_LOST);
    CU_ASSERT_EQUAL(api.execute(dev, exe, bufs, 3, &rp), BST_OK);
    CU_ASSERT_EQUAL(execute_without_resolving(exe, bufs, 3, &rp), BST_OK);
    api.executable_free(dev, exe);
    for (int i = 0; i < 3; i++)
        api.buffer_free(dev, bufs[i]);
}

/* --- a decode-like partition, with and without reuse --- */

enum {
    T_MAX = 4,  /* n_tokens bound */
    S_MAX = 8,  /* n_kv bound */
    E = 64,     /* activation width */
    F = 32,     /* matmul outputs */
    W_BYTES = F * (E / 32) * 20,
    ARENA = 4 * T_MAX * F * 4 + T_MAX * S_MAX * 4,
};

static uint64_t rng = 0x1234567;

static float urand(void) { return (float)(bst_test_urand(&rng) * 2.0 - 1.0); }

static void fill(void *buf, size_t floats, float scale)
{
    float v[T_MAX * S_MAX > T_MAX * E ? T_MAX * S_MAX : T_MAX * E];
    for (size_t i = 0; i < floats; i++)
        v[i] = scale * urand();
    CU_ASSERT_EQUAL(api.buffer_write(dev, buf, 0, v, floats * sizeof(float)), BST_OK);
}

static void test_decode_like(void)
{
    NEED_PLUGIN();
    /* Bindings: 0 x [T, E]; 1, 2 q4_1 weights [F, E] (packed when the CPU has AVX-512 VNNI);
     * 3 arena; 4 k [T, S]; 5 mask [T, S]. Nodes: two matmuls of x (a sibling group), add,
     * silu, softmax of k with the mask over n_kv. */
    const int64_t sx[2] = {T_MAX, E}, sw[2] = {F, E}, sh[2] = {T_MAX, F}, sk[2] = {T_MAX, S_MAX};
    part p = {.n_bindings = 6};
    bst_tensor_desc x = mk(BST_DTYPE_F32, 2, sx, 0, 0);
    x.sym[0] = BST_SYM_N_TOKENS;
    bst_tensor_desc h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = mk(BST_DTYPE_F32, 2, sh, 3, (uint64_t)i * T_MAX * F * 4);
        h[i].sym[0] = BST_SYM_N_TOKENS;
    }
    bst_tensor_desc in[2] = {x, mk(BST_DTYPE_Q4_1, 2, sw, 1, 0)};
    add_node(&p, BST_OP_MATMUL, 2, in, h[0]);
    in[1] = mk(BST_DTYPE_Q4_1, 2, sw, 2, 0);
    add_node(&p, BST_OP_MATMUL, 2, in, h[1]);
    in[0] = h[0];
    in[1] = h[1];
    add_node(&p, BST_OP_ADD, 2, in, h[2]);
    add_node(&p, BST_OP_SILU, 1, &h[2], h[3]);
    bst_tensor_desc k = mk(BST_DTYPE_F32, 2, sk, 4, 0), m = mk(BST_DTYPE_F32, 2, sk, 5, 0),
                    pr = mk(BST_DTYPE_F32, 2, sk, 3, 4 * T_MAX * F * 4);
    k.sym[0] = m.sym[0] = pr.sym[0] = BST_SYM_N_TOKENS;
    k.sym[1] = m.sym[1] = pr.sym[1] = BST_SYM_N_KV;
    in[0] = k;
    in[1] = m;
    add_node(&p, BST_OP_SOFTMAX, 2, in, pr);
    p.attrs[4][0] = bst_attr_float(BST_ATTR_SCALE, 0.5);
    p.n_attrs[4] = 1;

    static uint8_t wq[2][W_BYTES];
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < W_BYTES; i++)
            wq[j][i] = (uint8_t)((i * 37 + j * 11 + 5) & 0xff);
    for (int j = 0; j < 2; j++)
        for (int b = 0; b < F * E / 32; b++) { /* tame f16 scales and minimums: 1/64, -1/32 */
            wq[j][b * 20 + 0] = 0x00;
            wq[j][b * 20 + 1] = 0x24;
            wq[j][b * 20 + 2] = 0x00;
            wq[j][b * 20 + 3] = 0xa8;
        }
    void *bufs[6] = {NULL};
    uint64_t bytes = 0;
    uint32_t layout = 0;
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, T_MAX * E * 4, &bufs[0]), BST_OK);
    for (int j = 0; j < 2; j++)
        CU_ASSERT_EQUAL_FATAL(api.prepare_weight(dev, &p.in[j][1], wq[j], W_BYTES, &bufs[1 + j],
                                                 &bytes, &layout),
                              BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, ARENA, &bufs[3]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, T_MAX * S_MAX * 4, &bufs[4]), BST_OK);
    CU_ASSERT_EQUAL_FATAL(api.buffer_alloc(dev, T_MAX * S_MAX * 4, &bufs[5]), BST_OK);

    void *exe = NULL, *fresh = NULL;
    CU_ASSERT_EQUAL_FATAL(compile_part(&p, &exe), BST_OK);
    static const int64_t steps[][2] = {{1, 3}, {1, 3}, {1, 4}, {1, 5}, {1, 5}, {2, 6},
                                       {2, 6}, {1, 7}, {4, 8}, {4, 8}, {1, 8}, {3, 2}};
    static uint8_t reused[ARENA], ref[ARENA];
    uint32_t checked = 0, hits = 0;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        const bst_run_params rp = params(steps[s][0], steps[s][1]);
        /* Every third step serially (no pool), the first included: execute sizes the scratch for
         * one worker, then grows it for the pool while the resolution is reused. */
        const bool serial = s % 3 == 0;
        host.parallel_for = serial ? NULL : bsti_host_api()->parallel_for;
        host.num_workers = serial ? NULL : bsti_host_api()->num_workers;
        fill(bufs[0], T_MAX * E, 1.0f);
        fill(bufs[4], T_MAX * S_MAX, 3.0f);
        fill(bufs[5], T_MAX * S_MAX, 1.0f);
        const bool same = s > 0 && steps[s][0] == steps[s - 1][0] && steps[s][1] == steps[s - 1][1];
        bst_status st = same ? execute_without_resolving(exe, bufs, 6, &rp)
                             : api.execute(dev, exe, bufs, 6, &rp);
        CU_ASSERT_EQUAL(st, BST_OK);
        hits += same && st == BST_OK;
        CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[3], 0, reused, ARENA), BST_OK);
        CU_ASSERT_EQUAL_FATAL(compile_part(&p, &fresh), BST_OK);
        CU_ASSERT_EQUAL(api.execute(dev, fresh, bufs, 6, &rp), BST_OK);
        api.executable_free(dev, fresh);
        CU_ASSERT_EQUAL(api.buffer_read(dev, bufs[3], 0, ref, ARENA), BST_OK);
        CU_ASSERT_EQUAL(memcmp(reused, ref, ARENA), 0);
        /* Not trivially equal: the softmax rows sum to one and the matmuls are not all zero. */
        const float *probs = (const float *)(ref + 4 * T_MAX * F * 4);
        for (int64_t t = 0; t < steps[s][0]; t++) {
            double sum = 0;
            for (int64_t j = 0; j < steps[s][1]; j++)
                sum += probs[t * S_MAX + j];
            CU_ASSERT(fabs(sum - 1.0) <= 1e-5);
        }
        const float *silu = (const float *)(ref + 3 * T_MAX * F * 4);
        double mag = 0;
        for (int i = 0; i < F; i++)
            mag += fabs(silu[i]);
        CU_ASSERT(mag > 1e-3);
        checked++;
    }
    host.parallel_for = bsti_host_api()->parallel_for;
    host.num_workers = bsti_host_api()->num_workers;
    CU_ASSERT_EQUAL(checked, sizeof steps / sizeof steps[0]);
    CU_ASSERT_EQUAL(hits, 4);
    api.executable_free(dev, exe);
    for (int i = 0; i < 6; i++)
        api.buffer_free(dev, bufs[i]);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"swapped buffers", test_swapped_buffers},
        {"symbol changes", test_symbol_changes},
        {"kernel failure", test_kernel_failure},
        {"decode-like partition", test_decode_like},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_exec_cache", cases);
}
