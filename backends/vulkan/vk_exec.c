/*
 * query, compile and execute for the Vulkan backend.
 *
 * compile plans every node (vk_plan.c), creates the pipelines, lays out the executable's
 * parameter buffer (a status header, static data such as rope tables, one record per dispatch)
 * and records the command buffer once: per dispatch a pipeline bind, push constants and an
 * indirect dispatch whose size comes from its record, with a barrier between dispatches.
 * execute checks every tensor against its actual buffer and extents, rewrites the records only
 * when the buffers or n_tokens / n_kv differ from the previous run, submits the same command
 * buffer and waits. Shaders report bad row ids through the status header, which becomes
 * BST_ERR_INVALID_ARG after the run.
 */
#include "vk_backend.h"

#include <stdio.h>
#include <string.h>

/* --- query --------------------------------------------------------------------------------- */

bst_status vkb_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count)
{
    vkb_device *d = device;
    bst_status st = bstc_query_args(&vkb_plugin, node, out_variants, stride, capacity, out_count);
    if (st != BST_OK)
        return st;
    if (!d || d->magic != VKB_MAGIC_DEVICE) {
        vkb_host->set_error("vulkan: query: not a vulkan device");
        return BST_ERR_INVALID_ARG;
    }
    vkb_node *n = vkb_host->alloc(sizeof *n, 64);
    vkb_shapes *s = vkb_host->alloc(sizeof *s, 64);
    st = BST_ERR_OUT_OF_MEMORY;
    if (!n || !s) {
        vkb_host->set_error("vulkan: query: out of memory");
        goto done;
    }
    s->msg[0] = '\0';
    st = bstc_copy_node(node, vkb_arity, NULL, n, s->msg, sizeof s->msg);
    if (st == BST_OK)
        st = vkb_shapes_resolve(s, n, false, 0, 0);
    if (st == BST_OK)
        st = vkb_check(d, s);
    if (st == BST_ERR_ABI) { /* an incompatible descriptor is an error; the rest "unsupported" */
        vkb_host->set_error("vulkan: query: %s", s->msg);
        goto done;
    }
    if (st == BST_OK) {
        uint32_t count = vkb_variant_count(n->op);
        for (uint32_t v = 0; v < count && v < capacity; v++) {
            vkb_plan plan;
            char msg[128];
            if (vkb_plan_node(d, s, v, &plan, msg, sizeof msg) != BST_OK)
                continue;
            uint64_t h = bstc_fnv1a(BSTC_FNV_SEED, VKB_VERSION, sizeof VKB_VERSION);
            for (uint32_t k = 0; k < plan.n; k++) {
                uint64_t ph = vkb_pipeline_hash(d, &plan.key[k]);
                h = bstc_fnv1a(h, &ph, sizeof ph);
            }
            bstc_put_variant(out_variants, stride, v, vkb_variant_name(d, s, v), h);
        }
        *out_count = count;
    }
    st = BST_OK;
done:
    vkb_host->free(n);
    vkb_host->free(s);
    return st;
}

/* --- compile ------------------------------------------------------------------------------- */

void vkb_executable_free(void *device, void *executable)
{
    vkb_device *d = device;
    vkb_exec *e = executable;
    if (!e || e->magic != VKB_MAGIC_EXEC || !d || e->dev != d)
        return;
    /* The host frees only what no submitted work uses; this covers a caller that did not wait. */
    if (vkb_exec_settle(d, e) != BST_OK)
        vkb_host->log(BST_LOG_WARN, "vulkan: an executable's last run failed unnoticed");
    e->magic = 0;
    if (e->cb)
        vkFreeCommandBuffers(d->device, d->cp_compute, 1, &e->cb);
    if (e->queries)
        vkDestroyQueryPool(d->device, e->queries, NULL);
    if (e->params_dev && e->params_dev != e->params_host)
        vkb_free(e->params_dev);
    if (e->params_host)
        vkb_free(e->params_host);
    vkb_host->free(e->nodes);
    vkb_host->free(e->dispatch);
    vkb_host->free(e->rec_serials);
    vkb_host->free(e);
}

static uint32_t *params_words(const vkb_exec *e) { return (uint32_t *)(void *)vkb_map(e->params_host); }

static void barrier(VkCommandBuffer cb, VkPipelineStageFlags src_stage, VkAccessFlags src,
                    VkPipelineStageFlags dst_stage, VkAccessFlags dst)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = src,
                          .dstAccessMask = dst};
    vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

static bst_status record(vkb_device *d, vkb_exec *e)
{
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = d->cp_compute,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkResult r = vkAllocateCommandBuffers(d->device, &ai, &e->cb);
    if (r != VK_SUCCESS) {
        e->cb = VK_NULL_HANDLE;
        return vkb_result(d, r, "vkAllocateCommandBuffers");
    }
    if (d->timestamps) {
        VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                    .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                    .queryCount = 2};
        if (vkCreateQueryPool(d->device, &qi, NULL, &e->queries) != VK_SUCCESS)
            e->queries = VK_NULL_HANDLE; /* falls back to the wall clock */
    }
    /* Re-submitted on every execute: no ONE_TIME_SUBMIT, and never pending twice (execute
     * waits for it). */
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    r = vkBeginCommandBuffer(e->cb, &bi);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkBeginCommandBuffer");
    const bool staged = e->params_dev != e->params_host;
    const VkDeviceSize bytes = (VkDeviceSize)e->params_words * 4u;
    if (e->queries) {
        vkCmdResetQueryPool(e->cb, e->queries, 0, 2);
        vkCmdWriteTimestamp(e->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, e->queries, 0);
    }
    if (staged) { /* the host's records go up to the device copy the shaders read */
        VkBufferCopy c = {.srcOffset = e->params_host->offset,
                          .dstOffset = e->params_dev->offset,
                          .size = bytes};
        vkCmdCopyBuffer(e->cb, e->params_host->block->buffer, e->params_dev->block->buffer, 1, &c);
        barrier(e->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                VK_PIPELINE_STAGE_DRAW_INDIRECT_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                VK_ACCESS_INDIRECT_COMMAND_READ_BIT | VK_ACCESS_SHADER_READ_BIT |
                    VK_ACCESS_SHADER_WRITE_BIT);
    }
    VkPipeline bound = VK_NULL_HANDLE;
    for (uint32_t i = 0; i < e->n_dispatch; i++) {
        const vkb_dispatch *dp = &e->dispatch[i];
        if (i > 0) /* each dispatch may read what the previous ones wrote */
            barrier(e->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
        VkPipeline pipe = d->pipes[dp->pipe].pipeline;
        if (pipe != bound) {
            vkCmdBindPipeline(e->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
            bound = pipe;
        }
        vkCmdPushConstants(e->cb, d->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof dp->push,
                           &dp->push);
        vkCmdDispatchIndirect(e->cb, e->params_dev->block->buffer,
                              e->params_dev->offset + (VkDeviceSize)dp->rec * 4u);
    }
    if (staged) { /* the status words come back down */
        barrier(e->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
        VkBufferCopy c = {.srcOffset = e->params_dev->offset,
                          .dstOffset = e->params_host->offset,
                          .size = 8};
        vkCmdCopyBuffer(e->cb, e->params_dev->block->buffer, e->params_host->block->buffer, 1, &c);
    }
    /* Results (and the status words) are read by the host right after the wait. */
    barrier(e->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
            VK_ACCESS_HOST_READ_BIT);
    if (e->queries)
        vkCmdWriteTimestamp(e->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, e->queries, 1);
    r = vkEndCommandBuffer(e->cb);
    if (r != VK_SUCCESS)
        return vkb_result(d, r, "vkEndCommandBuffer");
    return BST_OK;
}

/* Plans every node; fills e->dispatch (without records) and returns the static data words. */
static bst_status plan_all(vkb_device *d, vkb_exec *e, const bst_partition_desc *part,
                           vkb_shapes *s, vkb_plan *plans, uint32_t *out_aux)
{
    uint32_t n_dispatch = 0, aux = 0;
    for (uint32_t i = 0; i < part->n_nodes; i++) {
        vkb_node *n = &e->nodes[i];
        const bst_node_desc *src = part->nodes[i];
        bst_status st = bstc_copy_node(src, vkb_arity, NULL, n, s->msg, sizeof s->msg);
        if (st == BST_OK)
            st = vkb_shapes_resolve(s, n, false, 0, 0);
        if (st == BST_OK)
            st = vkb_check(d, s);
        if (st == BST_OK)
            st = bstc_check_bindings(n, part->n_bindings, s->msg, sizeof s->msg);
        if (st == BST_OK)
            st = vkb_plan_node(d, s, n->variant, &plans[i], s->msg, sizeof s->msg);
        if (st != BST_OK) {
            vkb_host->set_error("vulkan: compile: node %u (%s): %s", i,
                                src ? vkb_op_name(src->op) : "NULL", s->msg);
            return st;
        }
        n_dispatch += plans[i].n;
        aux += plans[i].aux_words;
    }
    e->dispatch = vkb_host->alloc((n_dispatch ? n_dispatch : 1) * sizeof *e->dispatch, 64);
    if (!e->dispatch) {
        vkb_host->set_error("vulkan: compile: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < part->n_nodes; i++)
        for (uint32_t k = 0; k < plans[i].n; k++) {
            vkb_dispatch *dp = &e->dispatch[e->n_dispatch++];
            *dp = plans[i].d[k];
            dp->node = i;
            bst_status st = vkb_pipeline_get(d, &plans[i].key[k], &dp->pipe);
            if (st != BST_OK)
                return st;
        }
    *out_aux = aux;
    return BST_OK;
}

bst_status vkb_compile(void *device, const bst_partition_desc *part, void **out_executable)
{
    vkb_device *d = device;
    if (!d || d->magic != VKB_MAGIC_DEVICE || !part || !out_executable) {
        vkb_host->set_error("vulkan: compile: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_executable = NULL;
    bst_status st = bstc_check_partition(&vkb_plugin, part);
    if (st == BST_OK)
        st = vkb_alive(d, "compile");
    if (st != BST_OK)
        return st;
    /* An injected failure takes the path of a failed vkCreateComputePipelines. */
    VkResult r = vkb_fault("compile");
    if (r != VK_SUCCESS) {
        st = vkb_result(d, r, "vkCreateComputePipelines");
        return st == BST_ERR_BACKEND ? BST_ERR_COMPILE : st;
    }
    vkb_exec *e = vkb_host->alloc(sizeof *e, 64);
    vkb_shapes *s = vkb_host->alloc(sizeof *s, 64);
    size_t n_nodes = part->n_nodes ? part->n_nodes : 1;
    vkb_plan *plans = vkb_host->alloc(n_nodes * sizeof *plans, 64);
    if (e)
        memset(e, 0, sizeof *e);
    if (e) {
        e->magic = VKB_MAGIC_EXEC;
        e->dev = d;
        e->nodes = vkb_host->alloc(n_nodes * sizeof *e->nodes, 64);
        e->rec_serials = vkb_host->alloc((part->n_bindings ? part->n_bindings : 1) * sizeof(uint64_t), 64);
    }
    if (!e || !s || !plans || !e->nodes || !e->rec_serials) {
        vkb_host->set_error("vulkan: compile: out of memory");
        st = BST_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    e->n_nodes = part->n_nodes;
    e->n_bindings = part->n_bindings;
    uint32_t aux = 0;
    st = plan_all(d, e, part, s, plans, &aux);
    if (st != BST_OK)
        goto fail;

    /* Parameter buffer: header, static data, records. */
    uint64_t words = (uint64_t)VKB_PARAM_HEADER_WORDS + aux + (uint64_t)e->n_dispatch * VKB_REC_WORDS;
    if (words > UINT32_MAX / 4) {
        vkb_host->set_error("vulkan: compile: %u dispatches are too many", e->n_dispatch);
        st = BST_ERR_OVERFLOW;
        goto fail;
    }
    e->params_words = (uint32_t)words;
    if (d->pools[VKB_POOL_DEVICE].mapped) {
        st = vkb_alloc(d, VKB_POOL_DEVICE, words * 4u, &e->params_host);
        e->params_dev = e->params_host;
    } else {
        st = vkb_alloc(d, VKB_POOL_HOST, words * 4u, &e->params_host);
        if (st == BST_OK)
            st = vkb_alloc(d, VKB_POOL_DEVICE, words * 4u, &e->params_dev);
    }
    if (st != BST_OK)
        goto fail;
    uint32_t *pw = params_words(e);
    memset(pw, 0, (size_t)words * 4u);
    VkDeviceAddress pa = vkb_address(e->params_dev, 0);
    uint32_t aux_at = VKB_PARAM_HEADER_WORDS, rec_at = VKB_PARAM_HEADER_WORDS + aux;
    for (uint32_t i = 0, k = 0; i < e->n_nodes; i++) {
        vkb_plan_aux(&e->nodes[i], &plans[i], pw + aux_at);
        for (uint32_t j = 0; j < plans[i].n; j++, k++) {
            vkb_dispatch *dp = &e->dispatch[k];
            dp->push.params[0] = (uint32_t)pa;
            dp->push.params[1] = (uint32_t)(pa >> 32);
            dp->push.aux = aux_at;
            dp->push.rec = rec_at;
            dp->rec = rec_at;
            rec_at += VKB_REC_WORDS;
        }
        aux_at += plans[i].aux_words;
    }
    if (e->n_dispatch > 0 && (st = record(d, e)) != BST_OK)
        goto fail;
    vkb_host->free(s);
    vkb_host->free(plans);
    *out_executable = e;
    return BST_OK;
fail:
    if (e && e->magic == VKB_MAGIC_EXEC)
        vkb_executable_free(d, e);
    else if (e)
        vkb_host->free(e);
    vkb_host->free(s);
    vkb_host->free(plans);
    return st;
}

/* --- execute ------------------------------------------------------------------------------- */

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static uint64_t rows(const vkb_tensor *t) { return (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2]); }

/* Work items of a dispatch at the run's extents (see vkb_items). */
static uint64_t count_items(const vkb_dispatch *dp, const vkb_tensor *slot[VKB_REC_SLOTS])
{
    const vkb_tensor *o = slot[0];
    switch (dp->items) {
    case VKB_ITEMS_ELEMS: return rows(o) * (uint64_t)o->ne[3];
    case VKB_ITEMS_UNITS: {
        uint32_t bs = 1, bb = 1;
        bstc_dtype_geometry(o->dtype, &bs, &bb);
        return rows(o) * (uint64_t)(o->ne[3] / bs);
    }
    case VKB_ITEMS_BLOCKS: return rows(o) * (uint64_t)(o->ne[3] / 32);
    case VKB_ITEMS_ROPE: {
        uint64_t dims = dp->push.u[0];
        return rows(o) * (dims / 2 + (uint64_t)o->ne[3] - dims);
    }
    case VKB_ITEMS_ROWS0: return rows(o);
    case VKB_ITEMS_ROWS1: return rows(slot[1]);
    case VKB_ITEMS_ROWS2: return rows(slot[2]);
    case VKB_ITEMS_MM_PATCH:
    case VKB_ITEMS_MM: {
        const vkb_tensor *a = slot[1], *b = slot[2];
        return (uint64_t)(a->ne[0] * a->ne[1]) * ceil_div((uint64_t)a->ne[2], dp->mm_tile[0]) *
               ceil_div((uint64_t)b->ne[2], dp->mm_tile[1]);
    }
    }
    return 0;
}

/* Checks every tensor of every node against its buffer and the run's extents, and writes the
 * dispatch records. */
static bst_status write_records(vkb_device *d, vkb_exec *e, void *const *buffers, int64_t n_tokens,
                                int64_t n_kv)
{
    vkb_shapes *s = vkb_host->alloc(sizeof *s, 64);
    if (!s) {
        vkb_host->set_error("vulkan: execute: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    uint32_t *pw = params_words(e);
    bst_status st = BST_OK;
    uint32_t k = 0;
    for (uint32_t i = 0; i < e->n_nodes && st == BST_OK; i++) {
        const vkb_node *n = &e->nodes[i];
        st = vkb_shapes_resolve(s, n, true, n_tokens, n_kv);
        if (st == BST_OK)
            st = vkb_check(d, s);
        VkDeviceAddress addr[BST_MAX_INPUTS + 1] = {0};
        for (uint32_t t = 0; st == BST_OK && t <= n->n_inputs; t++) {
            const bst_tensor_desc *desc = t < n->n_inputs ? &n->in[t] : &n->out;
            const vkb_tensor *ten = t < n->n_inputs ? &s->in[t] : &s->out;
            vkb_buffer *b = vkb_buffer_get(d, buffers[desc->binding]);
            char what[32] = "output";
            if (t < n->n_inputs)
                snprintf(what, sizeof what, "input %u", t);
            if (!b)
                st = bstc_msg(s->msg, sizeof s->msg, BST_ERR_INVALID_ARG,
                              "binding %u is not a buffer of this device", desc->binding);
            else
                st = bstc_check_in_buffer(desc, ten->ne, ten->nb, b->size, what, s->msg,
                                          sizeof s->msg);
            if (st == BST_OK)
                addr[t] = vkb_address(b, desc->offset);
        }
        for (; st == BST_OK && k < e->n_dispatch && e->dispatch[k].node == i; k++) {
            const vkb_dispatch *dp = &e->dispatch[k];
            uint32_t *rec = pw + dp->rec;
            const vkb_tensor *slot[VKB_REC_SLOTS] = {NULL, NULL, NULL, NULL, NULL};
            memset(rec, 0, VKB_REC_WORDS * sizeof *rec);
            for (int j = 0; j < VKB_REC_SLOTS; j++) {
                uint8_t src = dp->src[j];
                if (src == VKB_SRC_NONE)
                    continue;
                uint32_t t = src == VKB_SRC_OUT ? n->n_inputs : (uint32_t)(src - VKB_SRC_IN0);
                slot[j] = t < n->n_inputs ? &s->in[t] : &s->out;
                uint32_t *w = rec + VKB_REC_SLOT0 + j * VKB_REC_SLOT_WORDS;
                VkDeviceAddress base = addr[t] & ~(VkDeviceAddress)15;
                w[0] = (uint32_t)base;
                w[1] = (uint32_t)(base >> 32);
                w[2] = (uint32_t)(addr[t] & 15);
                for (int q = 0; q < 4; q++)
                    w[4 + q] = (uint32_t)slot[j]->ne[q];
            }
            uint64_t items = count_items(dp, slot);
            if (items > UINT32_MAX / 2) {
                st = BST_ERR_OVERFLOW;
                snprintf(s->msg, sizeof s->msg, "%llu work items are too many for one dispatch",
                         (unsigned long long)items);
                break;
            }
            bool per_group = dp->items >= VKB_ITEMS_ROWS0; /* see vkb_items */
            uint64_t groups = per_group ? items : ceil_div(items, dp->wg);
            if (groups > d->max_groups)
                groups = d->max_groups;
            rec[VKB_REC_GROUPS] = (uint32_t)groups;
            rec[VKB_REC_GROUPS + 1] = 1;
            rec[VKB_REC_GROUPS + 2] = 1;
            rec[VKB_REC_ITEMS] = (uint32_t)items;
        }
        if (st != BST_OK)
            vkb_host->set_error("vulkan: execute: node %u (%s): %s", i, vkb_op_name(n->op), s->msg);
    }
    vkb_host->free(s);
    return st;
}

bst_status vkb_exec_prepare(vkb_device *d, vkb_exec *e, void *const *buffers, uint32_t n_buffers,
                            const bst_run_params *params)
{
    if (n_buffers < e->n_bindings || (n_buffers && !buffers)) {
        vkb_host->set_error("vulkan: execute: %u buffers for %u bindings", n_buffers,
                            e->n_bindings);
        return BST_ERR_INVALID_ARG;
    }
    bst_run_params run;
    bst_status st = bstc_run_params(&vkb_plugin, params, &run);
    if (st == BST_OK)
        st = vkb_alive(d, "execute");
    if (st != BST_OK)
        return st;
    const int64_t n_tokens = run.n_tokens, n_kv = run.n_kv;
    /* The parameter memory is rewritten below: an earlier run of e must be over. */
    st = vkb_exec_settle(d, e);
    if (st != BST_OK)
        return st;
    /* Bindings no node uses may hold anything (serial 0 stands for "not ours"). */
    bool same = e->records_valid && e->rec_n_tokens == n_tokens && e->rec_n_kv == n_kv;
    for (uint32_t i = 0; i < e->n_bindings && same; i++) {
        vkb_buffer *b = vkb_buffer_get(d, buffers[i]);
        same = (b ? b->serial : 0) == e->rec_serials[i];
    }
    if (!same) {
        e->records_valid = false;
        st = write_records(d, e, buffers, n_tokens, n_kv);
        if (st != BST_OK)
            return st;
        for (uint32_t i = 0; i < e->n_bindings; i++) {
            vkb_buffer *b = vkb_buffer_get(d, buffers[i]);
            e->rec_serials[i] = b ? b->serial : 0;
        }
        e->rec_n_tokens = n_tokens;
        e->rec_n_kv = n_kv;
        e->records_valid = true;
    }
    uint32_t *pw = params_words(e);
    pw[0] = pw[1] = 0;
    return BST_OK;
}

bst_status vkb_exec_finish(vkb_device *d, vkb_exec *e, uint64_t wall_ns)
{
    e->last_ns = wall_ns;
    if (e->queries) {
        uint64_t ts[2];
        if (vkGetQueryPoolResults(d->device, e->queries, 0, 2, sizeof ts, ts, sizeof ts[0],
                                  VK_QUERY_RESULT_64_BIT) == VK_SUCCESS) {
            uint64_t ticks = (ts[1] - ts[0]) & d->timestamp_mask; /* wraps within valid bits */
            e->last_ns = (uint64_t)((double)ticks * (double)d->props.limits.timestampPeriod);
        }
    }
    uint32_t *pw = params_words(e);
    if (pw[0] != 0) {
        uint32_t rec = pw[1], node = 0;
        for (uint32_t k = 0; k < e->n_dispatch; k++)
            if (e->dispatch[k].rec == rec)
                node = e->dispatch[k].node;
        vkb_host->set_error("vulkan: execute: node %u (%s): an id is outside the %s's rows", node,
                            vkb_op_name(e->nodes[node].op),
                            (pw[0] & 1u) ? "table" : "destination");
        return BST_ERR_INVALID_ARG;
    }
    return BST_OK;
}

bool vkb_exec_valid(const vkb_device *d, const vkb_exec *e)
{
    return d && d->magic == VKB_MAGIC_DEVICE && e && e->magic == VKB_MAGIC_EXEC && e->dev == d;
}

bst_status vkb_execute(void *device, void *executable, void *const *buffers, uint32_t n_buffers,
                       const bst_run_params *params)
{
    vkb_device *d = device;
    vkb_exec *e = executable;
    if (!vkb_exec_valid(d, e)) {
        vkb_host->set_error("vulkan: execute: not a vulkan executable of this device");
        return BST_ERR_INVALID_ARG;
    }
    bst_status st = vkb_exec_prepare(d, e, buffers, n_buffers, params);
    if (st != BST_OK)
        return st;
    uint64_t t0 = bstc_now_ns();
    if (e->n_dispatch > 0) {
        st = vkb_submit_wait(d, false, e->cb, "execute", "execute");
        if (st != BST_OK)
            return st;
    } else {
        VkResult r = vkb_fault("execute");
        if (r != VK_SUCCESS)
            return vkb_result(d, r, "execute");
    }
    return vkb_exec_finish(d, e, bstc_now_ns() - t0);
}

bst_status vkb_last_execute_ns(void *device, void *executable, uint64_t *out_ns)
{
    vkb_exec *e = executable;
    if (!e || e->magic != VKB_MAGIC_EXEC || e->dev != device || !out_ns) {
        vkb_host->set_error("vulkan: last_execute_ns: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_ns = e->last_ns;
    return BST_OK;
}
