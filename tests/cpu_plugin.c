/*
 * tests/cpu_plugin.c — the CPU plugin loaded as the runtime loads it, and one-node partitions run
 * on it (cpu_plugin.h), for the suites that drive the plugin's ABI directly.
 */
#include "cpu_plugin.h"

#include "graph/quant.h"
#include "runtime/runtime.h"
#include "test_util.h"

#include <string.h>

bst_backend_entry_fn cpu_entry;
bst_backend_api cpu_api;
void *cpu_dev;

bool load_plugin(void)
{
    if (cpu_entry)
        return true;
    if (!(cpu_entry = bst_test_plugin_entry("libbst-backend-cpu.so")))
        return false;
    memset(&cpu_api, 0, sizeof cpu_api);
    cpu_api.struct_size = sizeof cpu_api;
    if (cpu_entry(bsti_host_api(), BST_ABI_VERSION, &cpu_api) != BST_OK)
        return false;
    return cpu_api.device_open(cpu_api.ctx, 0, &cpu_dev) == BST_OK;
}

uint32_t elem_bytes(bst_dtype t, uint32_t *out_bs)
{
    uint32_t bs = 1, bb = 0;
    if (t == BST_DTYPE_I32)
        bb = 4;
    else if (t == BST_DTYPE_I8)
        bb = 1;
    else
        bsti_quant_geometry(t, &bs, &bb);
    if (out_bs)
        *out_bs = bs;
    return bb;
}

bst_tensor_desc mk(bst_dtype t, uint32_t rank, const int64_t *shape)
{
    bst_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.dtype = t;
    d.rank = rank;
    uint32_t bs;
    int64_t stride = elem_bytes(t, &bs);
    for (int i = (int)rank - 1; i >= 0; i--) {
        d.shape[i] = shape[i];
        d.strides[i] = stride;
        stride *= i == (int)rank - 1 ? shape[i] / bs : shape[i];
    }
    return d;
}

size_t span(const bst_tensor_desc *d)
{
    uint32_t bs;
    size_t end = elem_bytes(d->dtype, &bs);
    for (uint32_t i = 0; i < d->rank; i++) {
        int64_t n = i == d->rank - 1 ? d->shape[i] / bs : d->shape[i];
        if (n > 1)
            end += (size_t)((n - 1) * d->strides[i]);
    }
    return end;
}


bst_status compile_one(one_node *c, void **out_exe)
{
    const bst_tensor_desc *ins[4];
    const bst_attr *ats[4];
    for (uint32_t i = 0; i < c->n_in; i++) {
        c->in[i].binding = i;
        ins[i] = &c->in[i];
    }
    c->out.binding = c->out_aliases_in0 ? 0 : c->n_in;
    for (uint32_t i = 0; i < c->n_attrs; i++)
        ats[i] = &c->attrs[i];
    bst_node_desc nd = {.struct_size = sizeof nd, .op = c->op, .n_inputs = c->n_in,
                        .n_attrs = c->n_attrs, .inputs = ins, .output = &c->out, .attrs = ats,
                        .variant = c->variant};
    const bst_node_desc *nodes[1] = {&nd};
    bst_partition_desc p = {.struct_size = sizeof p, .n_nodes = 1, .nodes = nodes,
                            .n_bindings = c->n_in + 1};
    return cpu_api.compile(cpu_dev, &p, out_exe);
}

bst_status run_one(one_node *c, void *out)
{
    void *exe = NULL;
    bst_status st = compile_one(c, &exe);
    if (st != BST_OK)
        return st;
    void *bufs[5] = {0};
    size_t out_span = span(&c->out);
    for (uint32_t i = 0; i < c->n_in && st == BST_OK; i++) {
        size_t n = span(&c->in[i]) + (i == 0 && c->out_aliases_in0 ? GUARD : 0);
        st = cpu_api.buffer_alloc(cpu_dev, n, &bufs[i]);
        if (st == BST_OK && c->data[i])
            st = cpu_api.buffer_write(cpu_dev, bufs[i], 0, c->data[i], span(&c->in[i]));
    }
    uint32_t ob = c->out_aliases_in0 ? 0 : c->n_in;
    if (st == BST_OK && !c->out_aliases_in0) {
        st = cpu_api.buffer_alloc(cpu_dev, out_span + GUARD, &bufs[ob]);
        uint8_t guard[GUARD];
        memset(guard, 0xab, sizeof guard);
        if (st == BST_OK)
            st = cpu_api.buffer_write(cpu_dev, bufs[ob], out_span, guard, GUARD);
    }
    if (st == BST_OK && c->out_aliases_in0) {
        uint8_t guard[GUARD];
        memset(guard, 0xab, sizeof guard);
        st = cpu_api.buffer_write(cpu_dev, bufs[0], span(&c->in[0]), guard, GUARD);
    }
    bst_run_params def = {.struct_size = sizeof def, .n_tokens = 1, .n_kv = 1};
    if (st == BST_OK)
        st = cpu_api.execute(cpu_dev, exe, bufs, c->n_in + 1, c->params ? c->params : &def);
    if (st == BST_OK) {
        uint8_t guard[GUARD];
        CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, bufs[ob], 0, out, out_span), BST_OK);
        const size_t end = span(c->out_aliases_in0 ? &c->in[0] : &c->out);
        CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, bufs[ob], end, guard, GUARD), BST_OK);
        for (int i = 0; i < GUARD; i++)
            CU_ASSERT_EQUAL(guard[i], 0xab);
    }
    for (uint32_t i = 0; i <= c->n_in; i++)
        if (bufs[i])
            cpu_api.buffer_free(cpu_dev, bufs[i]);
    cpu_api.executable_free(cpu_dev, exe);
    return st;
}
