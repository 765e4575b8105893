/*
 * The ABI plumbing shared by the in-tree plugins (backends/common), called directly with
 * hostile input: host tables that are too small or lack services, old and new host ABIs,
 * backend tables of version-1 size, device-info slots and strides that are too small,
 * descriptors with small struct_size, NULL arrays, too many inputs or attributes, bad dtypes,
 * ranks, symbols, extents and strides, and run params and partitions of the wrong size. Each
 * case checks the status, the message, and that nothing is written where it must not be.
 */
#include "bst_backend_cache.h"
#include "bst_backend_common.h"
#include "test_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- a host table that records the last message -------------------------------------------- */

static char last_msg[512];

static void host_log(bst_log_level level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}

static void host_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
}

static void *host_alloc(size_t size, size_t alignment)
{
    (void)alignment;
    return malloc(size);
}

static bst_status host_dequantize(bst_dtype t, const void *src, float *dst, int64_t n)
{
    (void)t, (void)src, (void)dst, (void)n;
    return BST_OK;
}

static bst_status host_quantize(bst_dtype t, const float *src, void *dst, int64_t n)
{
    (void)t, (void)src, (void)dst, (void)n;
    return BST_OK;
}

static bst_host_api make_host(void)
{
    bst_host_api h;
    memset(&h, 0, sizeof h);
    h.struct_size = (uint32_t)sizeof h;
    h.abi_version = BST_ABI_VERSION;
    h.log = host_log;
    h.set_error = host_set_error;
    h.alloc = host_alloc;
    h.free = free;
    h.dequantize = host_dequantize;
    h.quantize = host_quantize;
    return h;
}

static bool has(const char *needle) { return strstr(last_msg, needle) != NULL; }

/* --- entry --------------------------------------------------------------------------------- */

static void test_entry_refuses(void)
{
    bstc_plugin p = {"tp", NULL};
    bst_host_api h = make_host();
    bst_backend_api out;
    memset(&out, 0, sizeof out);
    out.struct_size = (uint32_t)sizeof out;
    uint32_t size = 0;

    CU_ASSERT_EQUAL(bstc_entry_begin(&p, NULL, BST_ABI_VERSION, &out, 0, &size), BST_ERR_ABI);
    bst_host_api small = h;
    small.struct_size = (uint32_t)offsetof(bst_host_api, fault);
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &small, BST_ABI_VERSION, &out, 0, &size), BST_ERR_ABI);

    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &h, BST_ABI_VERSION_MIN - 1, &out, 0, &size),
                    BST_ERR_ABI);
    CU_ASSERT(has("tp: host ABI 0 is older"));

    bst_host_api no_quant = h;
    no_quant.quantize = NULL;
    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &no_quant, BST_ABI_VERSION, &out,
                                     BSTC_NEEDS_DEQUANTIZE | BSTC_NEEDS_QUANTIZE, &size),
                    BST_ERR_ABI);
    CU_ASSERT(has("tp: host service table lacks"));
    /* Without the need, the same table is fine. */
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &no_quant, BST_ABI_VERSION, &out, BSTC_NEEDS_DEQUANTIZE,
                                     &size),
                    BST_OK);
    bst_host_api no_dequant = h;
    no_dequant.dequantize = NULL;
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &no_dequant, BST_ABI_VERSION, &out,
                                     BSTC_NEEDS_DEQUANTIZE, &size),
                    BST_ERR_ABI);

    bst_host_api no_alloc = h;
    no_alloc.alloc = NULL;
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &no_alloc, BST_ABI_VERSION, &out, 0, &size),
                    BST_ERR_ABI);

    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &h, BST_ABI_VERSION, NULL, 0, &size),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT(has("tp: entry: NULL output table"));

    out.struct_size = (uint32_t)BST_BACKEND_API_SIZE_V1 - 1;
    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_entry_begin(&p, &h, BST_ABI_VERSION, &out, 0, &size), BST_ERR_ABI);
    CU_ASSERT(has("smaller than version 1"));
}

static bst_status fake_enumerate(void *ctx, bst_device_info *i, size_t s, uint32_t c,
                                 uint32_t *n)
{
    (void)ctx, (void)i, (void)s, (void)c, (void)n;
    return BST_OK;
}

static bst_status fake_event_create(void *device, void **out_event)
{
    (void)device, (void)out_event;
    return BST_OK;
}

static bst_status fake_event_wait(void *device, void *event, uint64_t value, uint64_t timeout)
{
    (void)device, (void)event, (void)value, (void)timeout;
    return BST_OK;
}

static bst_backend_api ours_table(void)
{
    bst_backend_api t;
    memset(&t, 0, sizeof t);
    t.name = "tp";
    t.enumerate = fake_enumerate;
    t.event_create = fake_event_create;
    t.event_wait = fake_event_wait;
    return t;
}

/* A version-1 host's table ends where the events begin: nothing may be written past it. */
static void test_entry_v1_host(void)
{
    bstc_plugin p = {"tp", NULL};
    bst_host_api h = make_host();
    unsigned char raw[sizeof(bst_backend_api) + 16];
    memset(raw, 0xA5, sizeof raw);
    bst_backend_api *out = (bst_backend_api *)(void *)raw;
    out->struct_size = (uint32_t)BST_BACKEND_API_SIZE_V1;
    uint32_t size = 0;
    CU_ASSERT_EQUAL_FATAL(bstc_entry_begin(&p, &h, 1, out, 0, &size), BST_OK);
    CU_ASSERT_PTR_EQUAL(p.host, &h);
    CU_ASSERT_EQUAL(size, BST_BACKEND_API_SIZE_V1);
    bst_backend_api ours = ours_table();
    bstc_entry_publish(out, size, 1, &ours);
    CU_ASSERT_EQUAL(out->abi_version, 1);
    CU_ASSERT_EQUAL(out->struct_size, BST_BACKEND_API_SIZE_V1);
    CU_ASSERT_PTR_EQUAL(out->enumerate, fake_enumerate);
    for (size_t i = BST_BACKEND_API_SIZE_V1; i < sizeof raw; i++)
        CU_ASSERT_EQUAL(raw[i], 0xA5);
}

/* A v1 host with a full-size table: the event slots are within its size, but it speaks v1, so
 * they must say "none". */
static void test_entry_v1_abi_full_table(void)
{
    bstc_plugin p = {"tp", NULL};
    bst_host_api h = make_host();
    bst_backend_api out;
    memset(&out, 0xA5, sizeof out);
    out.struct_size = (uint32_t)sizeof out;
    uint32_t size = 0;
    CU_ASSERT_EQUAL_FATAL(bstc_entry_begin(&p, &h, 1, &out, 0, &size), BST_OK);
    bst_backend_api ours = ours_table();
    bstc_entry_publish(&out, size, 1, &ours);
    CU_ASSERT_EQUAL(out.abi_version, 1);
    CU_ASSERT_PTR_NULL(out.event_create);
    CU_ASSERT_PTR_NULL(out.event_wait);
}

/* A newer host with a larger table: the plugin answers its own version and size, and writes
 * nothing past its own struct. */
static void test_entry_newer_larger_host(void)
{
    bstc_plugin p = {"tp", NULL};
    bst_host_api h = make_host();
    unsigned char raw[sizeof(bst_backend_api) + 32];
    memset(raw, 0xA5, sizeof raw);
    bst_backend_api *out = (bst_backend_api *)(void *)raw;
    out->struct_size = (uint32_t)sizeof raw;
    uint32_t size = 0;
    CU_ASSERT_EQUAL_FATAL(bstc_entry_begin(&p, &h, BST_ABI_VERSION + 1, out, 0, &size), BST_OK);
    bst_backend_api ours = ours_table();
    bstc_entry_publish(out, size, BST_ABI_VERSION + 1, &ours);
    CU_ASSERT_EQUAL(out->abi_version, BST_ABI_VERSION);
    CU_ASSERT_EQUAL(out->struct_size, sizeof(bst_backend_api));
    CU_ASSERT_PTR_EQUAL(out->event_create, fake_event_create);
    for (size_t i = sizeof(bst_backend_api); i < sizeof raw; i++)
        CU_ASSERT_EQUAL(raw[i], 0xA5);
}

static void *failing_alloc(size_t size, size_t alignment)
{
    (void)size, (void)alignment;
    return NULL;
}

static void test_alloc_zero(void)
{
    bst_host_api h = make_host();
    bstc_plugin p = {"tp", &h};
    unsigned char *m = bstc_alloc_zero(&p, 100, "query");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(m[i], 0);
    free(m);
    h.alloc = failing_alloc;
    last_msg[0] = '\0';
    CU_ASSERT_PTR_NULL(bstc_alloc_zero(&p, 100, "query"));
    CU_ASSERT(has("tp: query: out of memory"));
}

/* The shared plugin-call checks: execute's arguments, single-device open, test faults. */
static bst_status fault_at_execute(const char *site)
{
    return strcmp(site, "execute") == 0 ? BST_ERR_DEVICE_LOST : BST_OK;
}

static void test_call_checks(void)
{
    bst_host_api h = make_host();
    bstc_plugin p = {"tp", &h};
    bst_run_params params = {.struct_size = sizeof params, .n_tokens = 3, .n_kv = 5}, run;
    void *bufs[1] = {NULL};
    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_execute_args(&p, false, bufs, 1, &params, &run), BST_ERR_INVALID_ARG);
    CU_ASSERT(has("tp: execute: not an executable of the tp backend"));
    CU_ASSERT_EQUAL(bstc_execute_args(&p, true, NULL, 1, &params, &run), BST_ERR_INVALID_ARG);
    CU_ASSERT(has("tp: execute: NULL buffer array"));
    CU_ASSERT_EQUAL(bstc_execute_args(&p, true, NULL, 0, &params, &run), BST_OK);
    CU_ASSERT_EQUAL(run.n_tokens, 3);
    CU_ASSERT_EQUAL(run.n_kv, 5);

    void *dev = &p;
    CU_ASSERT_EQUAL(bstc_open_single_device(&p, 0, NULL), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bstc_open_single_device(&p, 1, &dev), BST_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NULL(dev);
    CU_ASSERT(has("tp: device_open: no device 1 (there is one)"));
    CU_ASSERT_EQUAL(bstc_open_single_device(&p, 0, &dev), BST_OK);
    CU_ASSERT_EQUAL(bstc_injected_fault(&p, "execute"), BST_OK); /* no fault service */
    h.fault = fault_at_execute;
    CU_ASSERT_EQUAL(bstc_injected_fault(&p, "device_open"), BST_OK);
    CU_ASSERT_EQUAL(bstc_injected_fault(&p, "execute"), BST_ERR_DEVICE_LOST);
    CU_ASSERT(has("tp: injected fault at 'execute'"));
}

/* --- enumerate and query outputs ----------------------------------------------------------- */

typedef struct dev_entry {
    int other;
    bst_device_info info;
} dev_entry;

static void make_devs(dev_entry devs[2])
{
    memset(devs, 0, 2 * sizeof *devs);
    for (int i = 0; i < 2; i++) {
        devs[i].info.struct_size = (uint32_t)sizeof devs[i].info;
        snprintf(devs[i].info.name, sizeof devs[i].info.name, "dev%d", i);
        devs[i].info.fingerprint = (uint64_t)i + 7;
    }
}

static void test_enumerate_strided(void)
{
    bst_host_api h = make_host();
    bstc_plugin p = {"tp", &h};
    dev_entry devs[2];
    make_devs(devs);
    /* Host slots larger than ours (a newer host), at a stride larger still. */
    enum { SLOT = sizeof(bst_device_info) + 8, STRIDE = SLOT + 24 };
    unsigned char raw[3 * STRIDE];
    memset(raw, 0xA5, sizeof raw);
    for (int i = 0; i < 3; i++)
        ((bst_device_info *)(void *)(raw + i * STRIDE))->struct_size = SLOT;
    uint32_t count = 0;
    CU_ASSERT_EQUAL_FATAL(bstc_enumerate_out(&p, (bst_device_info *)(void *)raw, STRIDE, 3, &count,
                                             &devs[0].info, sizeof devs[0], 2),
                          BST_OK);
    CU_ASSERT_EQUAL(count, 2);
    for (int i = 0; i < 2; i++) {
        const bst_device_info *s = (const bst_device_info *)(const void *)(raw + i * STRIDE);
        char want[8];
        snprintf(want, sizeof want, "dev%d", i);
        CU_ASSERT_STRING_EQUAL(s->name, want);
        CU_ASSERT_EQUAL(s->fingerprint, (uint64_t)i + 7);
        CU_ASSERT_EQUAL(s->struct_size, sizeof(bst_device_info));
        for (size_t k = sizeof(bst_device_info); k < STRIDE; k++)
            CU_ASSERT_EQUAL(raw[i * STRIDE + k], 0xA5);
    }
    /* The third slot is past the device count: untouched. */
    CU_ASSERT_EQUAL(((bst_device_info *)(void *)(raw + 2 * STRIDE))->struct_size, SLOT);
    CU_ASSERT_EQUAL(raw[2 * STRIDE + 8], 0xA5);

    /* Capacity 1 of 2: one written, count says 2. */
    memset(raw, 0, sizeof raw);
    ((bst_device_info *)(void *)raw)->struct_size = (uint32_t)sizeof(bst_device_info);
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, (bst_device_info *)(void *)raw,
                                       sizeof(bst_device_info), 1, &count, &devs[0].info,
                                       sizeof devs[0], 2),
                    BST_OK);
    CU_ASSERT_EQUAL(count, 2);
    CU_ASSERT_STRING_EQUAL(((bst_device_info *)(void *)raw)->name, "dev0");
    CU_ASSERT_EQUAL(raw[sizeof(bst_device_info)], 0);
}

static void test_enumerate_hostile(void)
{
    bst_host_api h = make_host();
    bstc_plugin p = {"tp", &h};
    dev_entry devs[2];
    make_devs(devs);
    bst_device_info slots[2];
    uint32_t count = 99;

    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, slots, sizeof slots[0], 2, NULL, &devs[0].info,
                                       sizeof devs[0], 2),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT(has("tp: enumerate: NULL output"));
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, NULL, sizeof slots[0], 2, &count, &devs[0].info,
                                       sizeof devs[0], 2),
                    BST_ERR_INVALID_ARG);
    /* Capacity 0 only asks for the count. */
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, NULL, 0, 0, &count, &devs[0].info, sizeof devs[0], 2),
                    BST_OK);
    CU_ASSERT_EQUAL(count, 2);

    /* A slot smaller than version 1: refused, nothing written into it. */
    memset(slots, 0x5A, sizeof slots);
    slots[0].struct_size = (uint32_t)offsetof(bst_device_info, fingerprint);
    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, slots, sizeof slots[0], 2, &count, &devs[0].info,
                                       sizeof devs[0], 2),
                    BST_ERR_ABI);
    CU_ASSERT(has("tp: enumerate:"));
    CU_ASSERT_EQUAL((unsigned char)slots[0].name[0], 0x5A);

    /* A stride smaller than the struct. */
    memset(slots, 0, sizeof slots);
    slots[0].struct_size = (uint32_t)sizeof slots[0];
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, slots, sizeof slots[0] - 8, 2, &count, &devs[0].info,
                                       sizeof devs[0], 2),
                    BST_ERR_ABI);
    /* No device: no slot is looked at. */
    CU_ASSERT_EQUAL(bstc_enumerate_out(&p, slots, 1, 2, &count, NULL, 0, 0), BST_OK);
    CU_ASSERT_EQUAL(count, 0);
}

static void test_query_args_and_variants(void)
{
    bst_host_api h = make_host();
    bstc_plugin p = {"tp", &h};
    bst_node_desc node;
    memset(&node, 0, sizeof node);
    bst_kernel_variant vars[3];
    memset(vars, 0, sizeof vars);
    uint32_t count = 5;

    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_query_args(&p, NULL, vars, sizeof vars[0], 3, &count),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(count, 0);
    CU_ASSERT(has("tp: query: NULL argument"));
    CU_ASSERT_EQUAL(bstc_query_args(&p, &node, NULL, sizeof vars[0], 3, &count),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bstc_query_args(&p, &node, vars, sizeof vars[0], 3, NULL),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(bstc_query_args(&p, &node, vars, sizeof vars[0] - 1, 3, &count), BST_ERR_ABI);
    CU_ASSERT_EQUAL(bstc_query_args(&p, &node, NULL, 0, 0, &count), BST_OK);
    CU_ASSERT_EQUAL(bstc_query_args(&p, &node, vars, sizeof vars[0], 3, &count), BST_OK);

    /* Strided writes; a name longer than the field is cut, terminated. */
    enum { STRIDE = sizeof(bst_kernel_variant) + 16 };
    unsigned char raw[2 * STRIDE];
    memset(raw, 0xA5, sizeof raw);
    char long_name[100];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    bstc_put_variant((bst_kernel_variant *)(void *)raw, STRIDE, 0, "ref", 11);
    bstc_put_variant((bst_kernel_variant *)(void *)raw, STRIDE, 1, long_name, 12);
    const bst_kernel_variant *v0 = (const void *)raw, *v1 = (const void *)(raw + STRIDE);
    CU_ASSERT_STRING_EQUAL(v0->name, "ref");
    CU_ASSERT_EQUAL(v0->source_hash, 11);
    CU_ASSERT_EQUAL(v0->struct_size, sizeof(bst_kernel_variant));
    CU_ASSERT_EQUAL(strlen(v1->name), sizeof v1->name - 1);
    CU_ASSERT_EQUAL(v1->source_hash, 12);
    for (size_t k = sizeof(bst_kernel_variant); k < STRIDE; k++) {
        CU_ASSERT_EQUAL(raw[k], 0xA5);
        CU_ASSERT_EQUAL(raw[STRIDE + k], 0xA5);
    }
}

/* --- descriptors --------------------------------------------------------------------------- */

static bool test_arity(uint32_t op, bstc_op_arity *out)
{
    switch (op) {
    case BST_OP_ADD: *out = (bstc_op_arity){"add", 2, 2}; return true;
    case BST_OP_SOFTMAX: *out = (bstc_op_arity){"softmax", 1, 2}; return true;
    case BST_OP_SILU: *out = (bstc_op_arity){"silu", 1, 1}; return true;
    default: return false;
    }
}

static bst_tensor_desc f32_2d(int64_t rows, int64_t cols)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = (uint32_t)sizeof d;
    d.dtype = BST_DTYPE_F32;
    d.rank = 2;
    d.shape[0] = rows;
    d.shape[1] = cols;
    d.strides[0] = cols * 4;
    d.strides[1] = 4;
    return d;
}

typedef struct node_fixture {
    bst_tensor_desc in[BST_MAX_INPUTS + 1], out;
    const bst_tensor_desc *in_ptrs[BST_MAX_INPUTS + 1];
    bst_attr attrs[BST_MAX_ATTRS + 1];
    const bst_attr *attr_ptrs[BST_MAX_ATTRS + 1];
    bst_node_desc node;
} node_fixture;

/* add(x[4,8], y[4,8]) with one float attribute. */
static void make_node(node_fixture *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i <= BST_MAX_INPUTS; i++) {
        f->in[i] = f32_2d(4, 8);
        f->in[i].binding = (uint32_t)i;
        f->in_ptrs[i] = &f->in[i];
    }
    f->out = f32_2d(4, 8);
    f->out.binding = 3;
    for (int i = 0; i <= BST_MAX_ATTRS; i++) {
        f->attrs[i].struct_size = (uint32_t)sizeof f->attrs[i];
        f->attrs[i].key = BST_ATTR_SCALE;
        f->attrs[i].kind = BST_ATTR_KIND_FLOAT;
        f->attrs[i].count = 1;
        f->attrs[i].f = 0.5;
        f->attr_ptrs[i] = &f->attrs[i];
    }
    f->node.struct_size = (uint32_t)sizeof f->node;
    f->node.op = BST_OP_ADD;
    f->node.n_inputs = 2;
    f->node.inputs = f->in_ptrs;
    f->node.output = &f->out;
    f->node.n_attrs = 1;
    f->node.attrs = f->attr_ptrs;
    f->node.variant = 2;
}

static char msg[256];

static bst_status copy(const node_fixture *f, bstc_node *n)
{
    msg[0] = '\0';
    return bstc_copy_node(&f->node, test_arity, NULL, n, msg, sizeof msg);
}

static void test_copy_node_ok(void)
{
    node_fixture f;
    make_node(&f);
    bstc_node n;
    CU_ASSERT_EQUAL_FATAL(copy(&f, &n), BST_OK);
    CU_ASSERT_EQUAL(n.op, BST_OP_ADD);
    CU_ASSERT_EQUAL(n.n_inputs, 2);
    CU_ASSERT_EQUAL(n.variant, 2);
    CU_ASSERT_EQUAL(n.in[1].binding, 1);
    CU_ASSERT_EQUAL(n.out.binding, 3);
    CU_ASSERT_EQUAL(n.in[0].shape[1], 8);
    /* A deep copy: changing the host's descriptors afterwards changes nothing. */
    f.in[0].shape[1] = 99;
    f.attrs[0].f = 9.0;
    CU_ASSERT_EQUAL(n.in[0].shape[1], 8);
    CU_ASSERT_DOUBLE_EQUAL(bstc_attr_float(&n, BST_ATTR_SCALE, 1.0), 0.5, 0.0);
    CU_ASSERT_PTR_NULL(bstc_attr(&n, BST_ATTR_EPS));
    CU_ASSERT_DOUBLE_EQUAL(bstc_attr_float(&n, BST_ATTR_EPS, 3.0), 3.0, 0.0);
    /* A float attribute is not an int. */
    CU_ASSERT_EQUAL(bstc_attr_int(&n, BST_ATTR_SCALE, -4), -4);
    CU_ASSERT_FALSE(bstc_node_symbolic(&n));
    CU_ASSERT_EQUAL(bstc_check_bindings(&n, 4, msg, sizeof msg), BST_OK);
    CU_ASSERT_EQUAL(bstc_check_bindings(&n, 3, msg, sizeof msg), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "binding 3 of 3"));
}

static void test_copy_node_hostile(void)
{
    node_fixture f;
    bstc_node n;

    CU_ASSERT_EQUAL(bstc_copy_node(NULL, test_arity, NULL, &n, msg, sizeof msg),
                    BST_ERR_INVALID_ARG);

    make_node(&f);
    f.node.struct_size = (uint32_t)offsetof(bst_node_desc, variant);
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_ABI);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "struct_size"));

    make_node(&f);
    f.node.op = BST_OP_MATMUL; /* not in this plugin's table */
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_UNSUPPORTED);
    f.node.op = 0xFFFFu; /* an id from a newer host */
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_UNSUPPORTED);

    make_node(&f);
    f.node.n_inputs = 1;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "add takes 2..2 inputs, got 1"));
    f.node.n_inputs = 0xFFFFFFFFu;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);

    make_node(&f);
    f.node.n_attrs = BST_MAX_ATTRS + 1;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "attributes"));

    make_node(&f);
    f.node.inputs = NULL;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);
    make_node(&f);
    f.node.attrs = NULL;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "NULL input or attribute array"));
    make_node(&f);
    f.in_ptrs[1] = NULL;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "input 1 descriptor is NULL"));
    make_node(&f);
    f.node.output = NULL;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);

    make_node(&f);
    f.in[0].struct_size = 8;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_ABI);

    make_node(&f);
    f.attr_ptrs[0] = NULL;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_ABI);
    make_node(&f);
    f.attrs[0].struct_size = 4;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_ABI);
    make_node(&f);
    f.attrs[0].key = BST_ATTR_COUNT;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_UNSUPPORTED);
    make_node(&f);
    f.attrs[0].key = BST_ATTR_NONE;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_UNSUPPORTED);
    make_node(&f);
    f.attrs[0].kind = 7;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);
    make_node(&f);
    f.attrs[0].kind = BST_ATTR_KIND_INTS;
    f.attrs[0].count = BST_MAX_DIMS + 1;
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_INVALID_ARG);

    /* A zero-size message buffer is allowed and left alone. */
    make_node(&f);
    f.node.op = BST_OP_MATMUL;
    CU_ASSERT_EQUAL(bstc_copy_node(&f.node, test_arity, NULL, &n, NULL, 0), BST_ERR_UNSUPPORTED);
}

static bst_status copy_t(const bst_tensor_desc *d)
{
    bst_tensor_desc out;
    msg[0] = '\0';
    return bstc_copy_tensor(d, &out, NULL, "x", msg, sizeof msg);
}

/* A plugin's own repacked layout, for q8_0 only. */
static bool q8_rows_layout(uint32_t dtype, uint32_t layout)
{
    return dtype == BST_DTYPE_Q8_0 && layout == BST_LAYOUT_BACKEND + 1;
}

static void test_copy_node_layouts(void)
{
    node_fixture f;
    bstc_node n;
    make_node(&f);
    f.in[1].dtype = BST_DTYPE_Q8_0;
    f.in[1].shape[1] = 32;
    f.in[1].strides[0] = 34;
    f.in[1].strides[1] = 34;
    f.in[1].layout = BST_LAYOUT_BACKEND + 1;
    /* Without a layout rule only native passes. */
    CU_ASSERT_EQUAL(copy(&f, &n), BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "input 1 has layout 1025"));
    CU_ASSERT_EQUAL(bstc_copy_node(&f.node, test_arity, q8_rows_layout, &n, msg, sizeof msg),
                    BST_OK);
    CU_ASSERT_EQUAL(n.in[1].layout, BST_LAYOUT_BACKEND + 1);
    f.in[1].layout = BST_LAYOUT_BACKEND + 2; /* a tag the rule does not know */
    CU_ASSERT_EQUAL(bstc_copy_node(&f.node, test_arity, q8_rows_layout, &n, msg, sizeof msg),
                    BST_ERR_UNSUPPORTED);
    /* An output is always native, whatever the rule says. */
    make_node(&f);
    f.out.dtype = BST_DTYPE_Q8_0;
    f.out.shape[1] = 32;
    f.out.strides[0] = 34;
    f.out.strides[1] = 34;
    f.out.layout = BST_LAYOUT_BACKEND + 1;
    CU_ASSERT_EQUAL(bstc_copy_node(&f.node, test_arity, q8_rows_layout, &n, msg, sizeof msg),
                    BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "output has layout"));
}

static void test_copy_tensor_hostile(void)
{
    bst_tensor_desc d = f32_2d(4, 8);
    CU_ASSERT_EQUAL(copy_t(&d), BST_OK);

    d.dtype = BST_DTYPE_COUNT;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "x has unknown dtype"));
    d = f32_2d(4, 8);
    d.dtype = BST_DTYPE_INVALID;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_UNSUPPORTED);
    d = f32_2d(4, 8);
    d.layout = BST_LAYOUT_BACKEND;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_UNSUPPORTED);
    d = f32_2d(4, 8);
    d.rank = BST_MAX_DIMS + 1;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_SHAPE);
    d = f32_2d(4, 8);
    d.shape[0] = -1;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_SHAPE);
    d = f32_2d(4, 8);
    d.shape[0] = BSTC_MAX_EXTENT + 1;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_SHAPE);
    d = f32_2d(4, 8);
    d.strides[0] = INT64_MIN;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "stride 0"));
    d = f32_2d(4, 8);
    d.strides[1] = BSTC_MAX_STRIDE + 1;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_SHAPE);
    d = f32_2d(4, 8);
    d.sym[0] = BST_SYM_COUNT;
    CU_ASSERT_EQUAL(copy_t(&d), BST_ERR_UNSUPPORTED);
    /* Dims past the rank are not looked at. */
    d = f32_2d(4, 8);
    d.shape[3] = -5;
    d.sym[3] = 77;
    CU_ASSERT_EQUAL(copy_t(&d), BST_OK);

    /* Block types: whole, contiguous blocks along the innermost dim. */
    bst_tensor_desc q;
    memset(&q, 0, sizeof q);
    q.struct_size = (uint32_t)sizeof q;
    q.dtype = BST_DTYPE_Q4_1;
    q.rank = 2;
    q.shape[0] = 3;
    q.shape[1] = 64;
    q.strides[0] = 40;
    q.strides[1] = 20;
    CU_ASSERT_EQUAL(copy_t(&q), BST_OK);
    q.shape[1] = 48;
    CU_ASSERT_EQUAL(copy_t(&q), BST_ERR_SHAPE);
    q.shape[1] = 64;
    q.strides[1] = 4;
    CU_ASSERT_EQUAL(copy_t(&q), BST_ERR_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "q4_1"));
    q.strides[1] = 20;
    q.rank = 0;
    CU_ASSERT_EQUAL(copy_t(&q), BST_ERR_SHAPE);
}

/* --- partitions and run params ------------------------------------------------------------- */

static void test_partition_and_params(void)
{
    bst_host_api h = make_host();
    bstc_plugin p = {"tp", &h};
    bst_partition_desc part;
    memset(&part, 0, sizeof part);
    part.struct_size = (uint32_t)sizeof part;
    CU_ASSERT_EQUAL(bstc_check_partition(&p, &part), BST_OK);
    part.n_nodes = 2;
    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_check_partition(&p, &part), BST_ERR_INVALID_ARG);
    CU_ASSERT(has("tp: compile: NULL node array"));
    part.struct_size = 8;
    CU_ASSERT_EQUAL(bstc_check_partition(&p, &part), BST_ERR_ABI);
    CU_ASSERT(has("tp: compile: partition descriptor of 8 bytes"));

    bst_run_params rp;
    CU_ASSERT_EQUAL(bstc_run_params(&p, NULL, &rp), BST_OK);
    CU_ASSERT_EQUAL(rp.n_tokens, -1);
    CU_ASSERT_EQUAL(rp.n_kv, -1);
    CU_ASSERT_EQUAL(rp.pos, 0);
    bst_run_params in = {.struct_size = (uint32_t)sizeof in, .n_tokens = 3, .n_kv = 9, .pos = 6};
    CU_ASSERT_EQUAL(bstc_run_params(&p, &in, &rp), BST_OK);
    CU_ASSERT_EQUAL(rp.n_tokens, 3);
    CU_ASSERT_EQUAL(rp.n_kv, 9);
    CU_ASSERT_EQUAL(rp.pos, 6);
    in.struct_size = (uint32_t)offsetof(bst_run_params, pos);
    last_msg[0] = '\0';
    CU_ASSERT_EQUAL(bstc_run_params(&p, &in, &rp), BST_ERR_ABI);
    CU_ASSERT(has("tp: execute: run params of"));
}

/* --- dtypes, shapes ------------------------------------------------------------------------ */

static void test_dtypes(void)
{
    uint32_t bs = 0, bb = 0;
    CU_ASSERT_TRUE(bstc_dtype_geometry(BST_DTYPE_Q8_0, &bs, &bb));
    CU_ASSERT_EQUAL(bs, 32);
    CU_ASSERT_EQUAL(bb, 34);
    CU_ASSERT_FALSE(bstc_dtype_geometry(BST_DTYPE_INVALID, &bs, &bb));
    CU_ASSERT_FALSE(bstc_dtype_geometry(BST_DTYPE_COUNT, &bs, &bb));
    CU_ASSERT_STRING_EQUAL(bstc_dtype_name(BST_DTYPE_BF16), "bf16");
    CU_ASSERT_STRING_EQUAL(bstc_dtype_name(1000), "invalid");
    CU_ASSERT_TRUE(bstc_dtype_is_block(BST_DTYPE_Q4_0));
    CU_ASSERT_FALSE(bstc_dtype_is_block(BST_DTYPE_I8));
    CU_ASSERT_FALSE(bstc_dtype_is_block(1000));
    CU_ASSERT_EQUAL(bstc_dtype_align(BST_DTYPE_F32), 4);
    CU_ASSERT_EQUAL(bstc_dtype_align(BST_DTYPE_Q5_1), 2);
    CU_ASSERT_EQUAL(bstc_dtype_align(1000), 0);
    /* FNV-1a of "a" (published test vector). */
    CU_ASSERT_EQUAL(bstc_fnv1a(BSTC_FNV_SEED, "a", 1), UINT64_C(0xaf63dc4c8601ec8c));
}

static void test_pad_dims_and_span(void)
{
    bst_tensor_desc d = f32_2d(6, 8);
    d.sym[0] = BST_SYM_N_TOKENS;
    int64_t ne[4], nb[4];
    CU_ASSERT_EQUAL(bstc_pad_dims(&d, NULL, ne, nb, "x", msg, sizeof msg), BST_OK);
    CU_ASSERT_EQUAL(ne[0], 1);
    CU_ASSERT_EQUAL(ne[2], 6);
    CU_ASSERT_EQUAL(ne[3], 8);
    CU_ASSERT_EQUAL(nb[2], 32);
    CU_ASSERT_EQUAL(nb[0], 0);
    bst_run_params rp = {.struct_size = (uint32_t)sizeof rp, .n_tokens = 2, .n_kv = -1};
    CU_ASSERT_EQUAL(bstc_pad_dims(&d, &rp, ne, nb, "x", msg, sizeof msg), BST_OK);
    CU_ASSERT_EQUAL(ne[2], 2);
    rp.n_tokens = 7; /* past its bound */
    CU_ASSERT_EQUAL(bstc_pad_dims(&d, &rp, ne, nb, "x", msg, sizeof msg), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "n_tokens = 7 is outside 0..6"));
    rp.n_tokens = -1;
    CU_ASSERT_EQUAL(bstc_pad_dims(&d, &rp, ne, nb, "x", msg, sizeof msg), BST_ERR_INVALID_ARG);

    int64_t lo, hi;
    d = f32_2d(6, 8);
    CU_ASSERT_EQUAL(bstc_pad_dims(&d, NULL, ne, nb, "x", msg, sizeof msg), BST_OK);
    CU_ASSERT_TRUE(bstc_byte_span(BST_DTYPE_F32, ne, nb, &lo, &hi));
    CU_ASSERT_EQUAL(lo, 0);
    CU_ASSERT_EQUAL(hi, 6 * 32);
    CU_ASSERT_TRUE(bstc_fits_buffer(BST_DTYPE_F32, ne, nb, 8, 200));
    CU_ASSERT_FALSE(bstc_fits_buffer(BST_DTYPE_F32, ne, nb, 9, 200));
    CU_ASSERT_FALSE(bstc_fits_buffer(BST_DTYPE_F32, ne, nb, 300, 200));
    /* Negative stride: the rows lie before the first element. */
    nb[2] = -32;
    CU_ASSERT_TRUE(bstc_byte_span(BST_DTYPE_F32, ne, nb, &lo, &hi));
    CU_ASSERT_EQUAL(lo, -160);
    CU_ASSERT_EQUAL(hi, 32);
    CU_ASSERT_FALSE(bstc_fits_buffer(BST_DTYPE_F32, ne, nb, 100, 1000));
    CU_ASSERT_TRUE(bstc_fits_buffer(BST_DTYPE_F32, ne, nb, 160, 192));
    /* Overflowing extents are refused, not wrapped. */
    int64_t big_ne[4] = {1, 1, INT64_C(1) << 40, 8};
    int64_t big_nb[4] = {0, 0, INT64_C(1) << 48, 4};
    CU_ASSERT_FALSE(bstc_byte_span(BST_DTYPE_F32, big_ne, big_nb, &lo, &hi));
    CU_ASSERT_FALSE(bstc_fits_buffer(BST_DTYPE_F32, big_ne, big_nb, 0, UINT64_MAX));
    /* Empty: fits anywhere inside. */
    int64_t empty_ne[4] = {1, 1, 0, 8};
    CU_ASSERT_TRUE(bstc_fits_buffer(BST_DTYPE_F32, empty_ne, big_nb, 10, 10));
    CU_ASSERT_FALSE(bstc_fits_buffer(BST_DTYPE_F32, empty_ne, big_nb, 11, 10));

    /* Block type: the innermost extent must be whole blocks once bound. */
    bst_tensor_desc q;
    memset(&q, 0, sizeof q);
    q.struct_size = (uint32_t)sizeof q;
    q.dtype = BST_DTYPE_Q8_0;
    q.rank = 1;
    q.shape[0] = 64;
    q.strides[0] = 34;
    q.sym[0] = BST_SYM_N_KV;
    rp.n_kv = 40;
    CU_ASSERT_EQUAL(bstc_pad_dims(&q, &rp, ne, nb, "k", msg, sizeof msg), BST_ERR_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "k innermost extent 40 is not whole q8_0 blocks"));
    rp.n_kv = 32;
    CU_ASSERT_EQUAL(bstc_pad_dims(&q, &rp, ne, nb, "k", msg, sizeof msg), BST_OK);
    CU_ASSERT_TRUE(bstc_byte_span(BST_DTYPE_Q8_0, ne, nb, &lo, &hi));
    CU_ASSERT_EQUAL(hi, 34);
}

static void test_check_in_buffer(void)
{
    bst_tensor_desc d = f32_2d(6, 8);
    d.binding = 2;
    d.offset = 8;
    int64_t ne[4], nb[4];
    CU_ASSERT_EQUAL_FATAL(bstc_pad_dims(&d, NULL, ne, nb, "x", msg, sizeof msg), BST_OK);
    CU_ASSERT_EQUAL(bstc_check_in_buffer(&d, ne, nb, 200, "x", msg, sizeof msg), BST_OK);
    CU_ASSERT_EQUAL(bstc_check_in_buffer(&d, ne, nb, 199, "x", msg, sizeof msg),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "x at offset 8 with its shape and strides reaches "
                                       "outside its 199-byte buffer (binding 2)"));
    d.offset = 500;
    CU_ASSERT_EQUAL(bstc_check_in_buffer(&d, ne, nb, 200, "x", msg, sizeof msg),
                    BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "offset 500 is past the 200-byte buffer"));
    /* A huge offset plus a span that would wrap around uint64. */
    d.offset = UINT64_MAX - 4;
    CU_ASSERT_EQUAL(bstc_check_in_buffer(&d, ne, nb, UINT64_MAX, "x", msg, sizeof msg),
                    BST_ERR_INVALID_ARG);

    uint64_t t0 = bstc_now_ns(), t1 = bstc_now_ns();
    CU_ASSERT(t0 > 0 && t1 >= t0);
}

/* --- cache files --------------------------------------------------------------------------- */

static void test_cache_files(void)
{
    char root[] = "/tmp/bst-test-common-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
    char *saved = getenv("BASTION_CACHE_DIR") ? strdup(getenv("BASTION_CACHE_DIR")) : NULL;
    setenv("BASTION_CACHE_DIR", root, 1);

    /* Our directory is created 0700; a loose one is tightened. */
    char dir[512];
    CU_ASSERT_TRUE_FATAL(bstc_cache_dir("plug/sub", dir, sizeof dir));
    char want[512];
    snprintf(want, sizeof want, "%s/plug/sub", root);
    CU_ASSERT_STRING_EQUAL(dir, want);
    struct stat sb;
    CU_ASSERT_EQUAL_FATAL(stat(dir, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
    CU_ASSERT_EQUAL(chmod(dir, 0755), 0);
    CU_ASSERT_TRUE(bstc_cache_dir("plug/sub", dir, sizeof dir));
    CU_ASSERT_EQUAL(stat(dir, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
    /* Too small a buffer, and a path component that is a file: no directory. */
    char tiny[8];
    CU_ASSERT_FALSE(bstc_cache_dir("plug", tiny, sizeof tiny));
    char file[600];
    snprintf(file, sizeof file, "%s/afile", root);
    FILE *f = fopen(file, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    CU_ASSERT_FALSE(bstc_cache_dir("afile/sub", dir, sizeof dir));

    /* Little-endian fields. */
    uint8_t b[8];
    bstc_put_u32(b, 0x11223344u);
    CU_ASSERT_EQUAL(b[0], 0x44);
    CU_ASSERT_EQUAL(bstc_get_u32(b), 0x11223344u);
    bstc_put_u64(b, UINT64_C(0x0102030405060708));
    CU_ASSERT_EQUAL(b[0], 0x08);
    CU_ASSERT_EQUAL(b[7], 0x01);
    CU_ASSERT_EQUAL(bstc_get_u64(b), UINT64_C(0x0102030405060708));

    /* Atomic write, replace, read back; a short file is an early end. */
    char path[600];
    snprintf(path, sizeof path, "%s/plug/entry.bin", root);
    CU_ASSERT_TRUE(bstc_write_file_atomic(path, "head", 4, "body", 4));
    CU_ASSERT_TRUE(bstc_write_file_atomic(path, "HEAD", 4, NULL, 0));
    int fd = open(path, O_RDONLY);
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    char got[8] = {0};
    CU_ASSERT_FALSE(bstc_read_all(fd, got, 8));
    CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_SET), 0);
    CU_ASSERT_TRUE(bstc_read_all(fd, got, 4));
    CU_ASSERT_EQUAL(memcmp(got, "HEAD", 4), 0);
    CU_ASSERT_EQUAL(fstat(fd, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
    close(fd);
    snprintf(path, sizeof path, "%s/missing/entry.bin", root);
    CU_ASSERT_FALSE(bstc_write_file_atomic(path, "x", 1, NULL, 0));
    CU_ASSERT_EQUAL(errno, ENOENT);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CU_ASSERT_EQUAL(system(cmd), 0);
    if (saved) {
        setenv("BASTION_CACHE_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("BASTION_CACHE_DIR");
    }
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"entry_refuses", test_entry_refuses},
        {"entry_v1_host", test_entry_v1_host},
        {"entry_v1_abi_full_table", test_entry_v1_abi_full_table},
        {"entry_newer_larger_host", test_entry_newer_larger_host},
        {"alloc_zero", test_alloc_zero},
        {"call checks", test_call_checks},
        {"enumerate_strided", test_enumerate_strided},
        {"enumerate_hostile", test_enumerate_hostile},
        {"query_args_and_variants", test_query_args_and_variants},
        {"copy_node_ok", test_copy_node_ok},
        {"copy_node_hostile", test_copy_node_hostile},
        {"copy_node_layouts", test_copy_node_layouts},
        {"copy_tensor_hostile", test_copy_tensor_hostile},
        {"partition_and_params", test_partition_and_params},
        {"dtypes", test_dtypes},
        {"pad_dims_and_span", test_pad_dims_and_span},
        {"check_in_buffer", test_check_in_buffer},
        {"cache_files", test_cache_files},
        {NULL, NULL},
    };
    return bst_test_run_suite("backend_common", cases);
}
