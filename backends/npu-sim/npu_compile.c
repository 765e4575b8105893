/*
 * query and compile: which nodes the NPU takes, and how a partition becomes a command stream.
 *
 * compile translates the partition's nodes into device instructions (one per node: the NPU runs
 * the whole partition as one submission), then builds the bucket table: for each power-of-two
 * bucket of n_tokens (1, 2, 4, ... up to its bound, the bound itself last) crossed with each
 * bucket of n_kv, the modelled time of the stream at the padded extents. Every bucket is
 * resolved here, when the session's program is built, never during generation. The count is
 * bounded by construction: at most NPU_MAX_BUCKETS_PER_DIM (32) per dim, since bounds are below
 * 2^31, so at most 1024 entries (for the default model's n_batch 512 x n_ctx 2048: 10 x 12).
 *
 * The stream is serialized into a blob (little-endian, fixed-size fields) and cached on disk
 * (npu_cache.c) under a key that hashes the instruction section, so an identical partition on an
 * identical device and plugin loads instead of recompiling. The executable is always made by
 * npu_blob_load, which validates everything as untrusted input, so a cached blob runs exactly
 * as a fresh one.
 */
#include "npu_backend.h"

#include "npu_devices.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOB_MAGIC 0x4255504eu /* "NPUB" */
#define BLOB_VERSION 1u
#define MAX_INSTR 65536u

/* --- descriptor -> instruction --- */

static const bst_attr *find_attr(const bst_node_desc *n, bst_attr_key key)
{
    for (uint32_t i = 0; i < n->n_attrs; i++)
        if (n->attrs && n->attrs[i] && n->attrs[i]->key == (uint32_t)key)
            return n->attrs[i];
    return NULL;
}

static double attr_f(const bst_node_desc *n, bst_attr_key key, double fallback)
{
    const bst_attr *a = find_attr(n, key);
    if (!a)
        return fallback;
    return a->kind == BST_ATTR_KIND_FLOAT ? a->f : (double)a->ints[0];
}

static int64_t attr_i(const bst_node_desc *n, bst_attr_key key, int64_t fallback)
{
    const bst_attr *a = find_attr(n, key);
    if (!a)
        return fallback;
    return a->kind == BST_ATTR_KIND_FLOAT ? (int64_t)a->f : a->ints[0];
}

static bst_status operand(const bst_tensor_desc *t, npu_operand *o)
{
    memset(o, 0, sizeof *o);
    if (!t || t->struct_size < offsetof(bst_tensor_desc, offset) + sizeof t->offset ||
        t->rank > BST_MAX_DIMS) {
        npu_host->set_error("npu-sim: malformed tensor descriptor");
        return BST_ERR_INVALID_ARG;
    }
    o->dtype = t->dtype;
    o->layout = t->layout;
    o->rank = t->rank;
    o->binding = t->binding;
    o->offset = t->offset;
    for (uint32_t d = 0; d < t->rank; d++) {
        o->shape[d] = t->shape[d];
        o->strides[d] = t->strides[d];
        o->sym[d] = t->sym[d];
    }
    return BST_OK;
}

/* A contiguous f32 intermediate shaped like `like` with innermost extent `cols`, in scratch
 * binding `binding`; its byte size goes to *out_bytes. */
static void scratch_operand(const npu_operand *like, int64_t cols, uint32_t binding,
                            npu_operand *o, uint64_t *out_bytes)
{
    *o = *like;
    o->dtype = BST_DTYPE_F32;
    o->layout = BST_LAYOUT_NATIVE;
    o->binding = binding;
    o->offset = 0;
    uint64_t stride = 4;
    for (uint32_t d = o->rank; d-- > 0;) {
        if (d == o->rank - 1)
            o->shape[d] = cols;
        o->strides[d] = (int64_t)stride;
        stride *= (uint64_t)(o->shape[d] > 0 ? o->shape[d] : 1);
    }
    *out_bytes = stride;
}

static bst_status translate(const bst_node_desc *n, npu_instr *out);

/* The instructions of one node: one for a primitive, several for a fused op. Scratch buffers a
 * fused op needs get bindings from *io_scratch on (sizes into scratch_bytes). */
static bst_status expand(const bst_node_desc *n, uint32_t n_bindings, npu_instr *out,
                         uint32_t *out_count, uint32_t *io_scratch, uint64_t *scratch_bytes)
{
    *out_count = 0;
    if (!n || n->struct_size < offsetof(bst_node_desc, variant) + sizeof n->variant ||
        !n->output || (n->n_inputs && !n->inputs)) {
        npu_host->set_error("npu-sim: malformed node descriptor");
        return BST_ERR_INVALID_ARG;
    }
    if (n->op != BST_OP_RMS_NORM_MUL && n->op != BST_OP_FFN_SWIGLU) {
        bst_status st = translate(n, &out[0]);
        if (st == BST_OK)
            *out_count = 1;
        return st;
    }
    uint32_t want = n->op == BST_OP_FFN_SWIGLU ? 4 : 2;
    if (n->n_inputs != want) {
        npu_host->set_error("npu-sim: fused op %u with %u inputs", n->op, n->n_inputs);
        return BST_ERR_UNSUPPORTED;
    }
    npu_operand x, o, w[3];
    bst_status st = operand(n->output, &o);
    if (st == BST_OK)
        st = operand(n->inputs[0], &x);
    for (uint32_t i = 1; i < want && st == BST_OK; i++)
        st = operand(n->inputs[i], &w[i - 1]);
    if (st != BST_OK)
        return st;
    memset(out, 0, sizeof *out * (n->op == BST_OP_FFN_SWIGLU ? 5u : 2u));
    if (n->op == BST_OP_RMS_NORM_MUL) {
        /* rms_norm(x) -> out; out * w -> out (in place, row by row). */
        if (!find_attr(n, BST_ATTR_EPS)) {
            npu_host->set_error("npu-sim: rms_norm_mul without eps");
            return BST_ERR_INVALID_ARG;
        }
        out[0].op = NPU_OP_RMS_NORM;
        out[0].n_in = 1;
        out[0].in[0] = x;
        out[0].out = o;
        out[0].f0 = attr_f(n, BST_ATTR_EPS, 0.0);
        out[1].op = NPU_OP_MUL;
        out[1].n_in = 2;
        out[1].in[0] = o;
        out[1].in[1] = w[0];
        out[1].out = o;
        *out_count = 2;
        return BST_OK;
    }
    /* ffn_swiglu: g = x.wg^T, u = x.wu^T (scratch 0, 1), g = silu(g), g = g * u, out = g.wd^T.
     * The intermediates die with the node, so every ffn of a stream shares the two buffers. */
    if (x.rank < 1 || w[0].rank != 2) {
        npu_host->set_error("npu-sim: ffn_swiglu shapes or scratch");
        return BST_ERR_UNSUPPORTED;
    }
    int64_t F = w[0].shape[0];
    npu_operand g, u;
    uint64_t gb = 0, ub = 0;
    scratch_operand(&x, F, n_bindings, &g, &gb);
    scratch_operand(&x, F, n_bindings + 1, &u, &ub);
    for (uint32_t i = 0; i < 3; i++)
        if (w[i].layout == NPU_LAYOUT_I8_TILED || w[i].layout == BST_LAYOUT_NATIVE)
            continue;
        else
            return BST_ERR_UNSUPPORTED;
#define MM(k, A, B, O)                                                                     \
    do {                                                                                   \
        out[k].op = (B).layout == NPU_LAYOUT_I8_TILED ? NPU_OP_MM_I8 : NPU_OP_MM_F16;     \
        out[k].n_in = 2;                                                                   \
        out[k].in[0] = (A);                                                                \
        out[k].in[1] = (B);                                                                \
        out[k].out = (O);                                                                  \
    } while (0)
    MM(0, x, w[0], g);
    MM(1, x, w[1], u);
    out[2].op = NPU_OP_SILU;
    out[2].n_in = 1;
    out[2].in[0] = g;
    out[2].out = g;
    out[3].op = NPU_OP_MUL;
    out[3].n_in = 2;
    out[3].in[0] = g;
    out[3].in[1] = u;
    out[3].out = g;
    MM(4, g, w[2], o);
#undef MM
    if (scratch_bytes) {
        scratch_bytes[0] = gb > scratch_bytes[0] ? gb : scratch_bytes[0];
        scratch_bytes[1] = ub > scratch_bytes[1] ? ub : scratch_bytes[1];
    }
    *io_scratch = NPU_MAX_SCRATCH;
    *out_count = 5;
    return BST_OK;
}

/* BST_ERR_UNSUPPORTED for anything the NPU does not run (query turns it into "no variant"). */
static bst_status translate(const bst_node_desc *n, npu_instr *out)
{
    memset(out, 0, sizeof *out);
    if (!n || n->struct_size < offsetof(bst_node_desc, variant) + sizeof n->variant ||
        !n->output || (n->n_inputs && !n->inputs)) {
        npu_host->set_error("npu-sim: malformed node descriptor");
        return BST_ERR_INVALID_ARG;
    }
    uint32_t op;
    uint32_t want_in = 1;
    switch (n->op) {
    case BST_OP_MATMUL: op = NPU_OP_MM_F16; want_in = 2; break;
    case BST_OP_ADD: op = NPU_OP_ADD; want_in = 2; break;
    case BST_OP_MUL: op = NPU_OP_MUL; want_in = 2; break;
    case BST_OP_SCALE: op = NPU_OP_SCALE; break;
    case BST_OP_SILU: op = NPU_OP_SILU; break;
    case BST_OP_GELU: op = NPU_OP_GELU; break;
    case BST_OP_SOFTMAX: op = NPU_OP_SOFTMAX; want_in = n->n_inputs == 2 ? 2 : 1; break;
    case BST_OP_RMS_NORM: op = NPU_OP_RMS_NORM; break;
    case BST_OP_ROPE: op = NPU_OP_ROPE; want_in = 2; break;
    default:
        npu_host->set_error("npu-sim: op %u is not in the NPU's op set", n->op);
        return BST_ERR_UNSUPPORTED;
    }
    if (n->n_inputs != want_in) {
        npu_host->set_error("npu-sim: op %u with %u inputs", n->op, n->n_inputs);
        return BST_ERR_UNSUPPORTED;
    }
    out->op = op;
    out->n_in = want_in;
    bst_status st = operand(n->output, &out->out);
    for (uint32_t i = 0; i < want_in && st == BST_OK; i++)
        st = operand(n->inputs[i], &out->in[i]);
    if (st != BST_OK)
        return st;
    if (op == NPU_OP_MM_F16 && out->in[1].layout == NPU_LAYOUT_I8_TILED)
        out->op = NPU_OP_MM_I8;
    switch (out->op) {
    case NPU_OP_SCALE:
        if (!find_attr(n, BST_ATTR_SCALE)) {
            npu_host->set_error("npu-sim: scale without its attribute");
            return BST_ERR_INVALID_ARG;
        }
        out->f0 = attr_f(n, BST_ATTR_SCALE, 1.0);
        break;
    case NPU_OP_SOFTMAX: out->f0 = attr_f(n, BST_ATTR_SCALE, 1.0); break;
    case NPU_OP_RMS_NORM:
        if (!find_attr(n, BST_ATTR_EPS)) {
            npu_host->set_error("npu-sim: rms_norm without eps");
            return BST_ERR_INVALID_ARG;
        }
        out->f0 = attr_f(n, BST_ATTR_EPS, 0.0);
        break;
    case NPU_OP_ROPE:
        if (!find_attr(n, BST_ATTR_ROPE_MODE) || !find_attr(n, BST_ATTR_ROPE_THETA) ||
            !find_attr(n, BST_ATTR_ROPE_DIMS)) {
            npu_host->set_error("npu-sim: rope needs rope_mode, rope_theta and rope_dims");
            return BST_ERR_INVALID_ARG;
        }
        out->f0 = attr_f(n, BST_ATTR_ROPE_THETA, 0.0);
        out->i0 = attr_i(n, BST_ATTR_ROPE_MODE, -1);
        out->i1 = attr_i(n, BST_ATTR_ROPE_DIMS, 0);
        break;
    default: break;
    }
    return BST_OK;
}

bst_status npu_query(void *device, const bst_node_desc *node, bst_kernel_variant *out_variants,
                     size_t stride, uint32_t capacity, uint32_t *out_count)
{
    if (!npu_device_get(device) || !node || !out_count || (capacity && !out_variants)) {
        npu_host->set_error("npu-sim: query: bad arguments");
        return BST_ERR_INVALID_ARG;
    }
    *out_count = 0;
    npu_instr in[NPU_MAX_EXPAND];
    uint32_t n_in = 0, n_scratch = 0;
    bst_status st = expand(node, UINT32_MAX - 8, in, &n_in, &n_scratch, NULL);
    for (uint32_t i = 0; i < n_in && st == BST_OK; i++)
        st = npu_instr_check(&in[i], UINT32_MAX);
    if (st == BST_ERR_INVALID_ARG)
        return st; /* a malformed descriptor */
    if (st != BST_OK)
        return BST_OK; /* a node the NPU cannot run as given is simply not offered */
    *out_count = 1;
    if (capacity == 0)
        return BST_OK;
    bst_kernel_variant *v = out_variants;
    (void)stride;
    uint32_t size = v->struct_size;
    if (size < offsetof(bst_kernel_variant, source_hash) + sizeof v->source_hash) {
        npu_host->set_error("npu-sim: query: variant struct too small");
        return BST_ERR_INVALID_ARG;
    }
    memset(v->name, 0, sizeof v->name);
    /* Weights repacked at prepare_weight run on the int8 path; query sees the native layout. */
    snprintf(v->name, sizeof v->name, "%s",
             node->op == BST_OP_MATMUL       ? "npu_mm_i8_or_f16"
             : node->op == BST_OP_FFN_SWIGLU ? "npu_fused_ffn"
             : node->op == BST_OP_RMS_NORM_MUL ? "npu_fused_rms_norm_mul"
                                               : "npu_vector");
    v->source_hash = NPU_SOURCE_HASH;
    return BST_OK;
}

/* --- blob: writer and reader --- */

typedef struct writer {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} writer;

static void put(writer *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) {
            w->oom = true;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_u32(writer *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}

static void put_u64(writer *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

static void put_f64(writer *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_u64(w, u);
}

typedef struct reader {
    const uint8_t *p;
    size_t len, at;
    bool short_read;
} reader;

static uint64_t get_n(reader *r, int n)
{
    if (r->short_read || r->len - r->at < (size_t)n) {
        r->short_read = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | r->p[r->at + (size_t)i];
    r->at += (size_t)n;
    return v;
}

static uint32_t get_u32(reader *r)
{
    return (uint32_t)get_n(r, 4);
}

static uint64_t get_u64(reader *r)
{
    return get_n(r, 8);
}

static double get_f64(reader *r)
{
    uint64_t u = get_n(r, 8);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void put_operand(writer *w, const npu_operand *o)
{
    put_u32(w, o->dtype);
    put_u32(w, o->layout);
    put_u32(w, o->rank);
    put_u32(w, o->binding);
    for (int d = 0; d < BST_MAX_DIMS; d++) {
        put_u64(w, (uint64_t)o->shape[d]);
        put_u64(w, (uint64_t)o->strides[d]);
        put_u32(w, o->sym[d]);
    }
    put_u64(w, o->offset);
}

static void get_operand(reader *r, npu_operand *o)
{
    o->dtype = get_u32(r);
    o->layout = get_u32(r);
    o->rank = get_u32(r);
    o->binding = get_u32(r);
    for (int d = 0; d < BST_MAX_DIMS; d++) {
        o->shape[d] = (int64_t)get_u64(r);
        o->strides[d] = (int64_t)get_u64(r);
        o->sym[d] = get_u32(r);
    }
    o->offset = get_u64(r);
}

static void put_instrs(writer *w, const npu_instr *in, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        put_u32(w, in[i].op);
        put_u32(w, in[i].n_in);
        for (int k = 0; k < NPU_MAX_IN; k++)
            put_operand(w, &in[i].in[k]);
        put_operand(w, &in[i].out);
        put_f64(w, in[i].f0);
        put_u64(w, (uint64_t)in[i].i0);
        put_u64(w, (uint64_t)in[i].i1);
    }
}

/* Symbolic bounds of a stream: the largest extent any operand gives each symbol. */
static void bounds(const npu_instr *in, uint32_t n, int64_t *out_t, int64_t *out_kv)
{
    *out_t = *out_kv = 0;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t k = 0; k <= in[i].n_in && k <= NPU_MAX_IN; k++) {
            const npu_operand *o = k == in[i].n_in ? &in[i].out : &in[i].in[k];
            for (uint32_t d = 0; d < o->rank && d < BST_MAX_DIMS; d++) {
                if (o->sym[d] == BST_SYM_N_TOKENS && o->shape[d] > *out_t)
                    *out_t = o->shape[d];
                if (o->sym[d] == BST_SYM_N_KV && o->shape[d] > *out_kv)
                    *out_kv = o->shape[d];
            }
        }
}

/* Bucket values of one dim: 1, 2, 4, ... below the bound, then the bound; {0} when absent. */
static uint32_t dim_buckets(int64_t bound, int64_t out[NPU_MAX_BUCKETS_PER_DIM])
{
    if (bound <= 0) {
        out[0] = 0;
        return 1;
    }
    uint32_t n = 0;
    for (int64_t v = 1; v < bound && n + 1 < NPU_MAX_BUCKETS_PER_DIM; v *= 2)
        out[n++] = v;
    out[n++] = bound;
    return n;
}

bst_status npu_blob_build(const npu_device *dev, const bst_partition_desc *part, uint8_t **out,
                          size_t *out_size)
{
    (void)dev;
    *out = NULL;
    *out_size = 0;
    if (!part || part->struct_size < offsetof(bst_partition_desc, n_bindings) +
                                         sizeof part->n_bindings ||
        part->n_nodes == 0 || part->n_nodes > MAX_INSTR || !part->nodes) {
        npu_host->set_error("npu-sim: compile: malformed or empty partition");
        return BST_ERR_INVALID_ARG;
    }
    if (part->n_bindings > UINT32_MAX - NPU_MAX_SCRATCH) {
        npu_host->set_error("npu-sim: compile: too many bindings");
        return BST_ERR_INVALID_ARG;
    }
    npu_instr *in = calloc((size_t)part->n_nodes * NPU_MAX_EXPAND, sizeof *in);
    if (!in) {
        npu_host->set_error("npu-sim: compile: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    bst_status st = BST_OK;
    uint32_t n_instr = 0, n_scratch = 0;
    uint64_t scratch_bytes[NPU_MAX_SCRATCH] = {0};
    for (uint32_t i = 0; i < part->n_nodes && st == BST_OK; i++) {
        uint32_t count = 0;
        st = expand(part->nodes[i], part->n_bindings, in + n_instr, &count, &n_scratch,
                    scratch_bytes);
        for (uint32_t k = 0; k < count && st == BST_OK; k++)
            st = npu_instr_check(&in[n_instr + k], part->n_bindings + NPU_MAX_SCRATCH);
        n_instr += count;
        if (st != BST_OK)
            npu_host->set_error("npu-sim: compile: node %u (op %u) cannot run on the NPU", i,
                                part->nodes[i] ? part->nodes[i]->op : 0u);
    }
    if (st != BST_OK) {
        free(in);
        return st == BST_ERR_INVALID_ARG ? st : BST_ERR_COMPILE;
    }
    int64_t bt, bkv;
    bounds(in, n_instr, &bt, &bkv);
    int64_t tv[NPU_MAX_BUCKETS_PER_DIM], kv[NPU_MAX_BUCKETS_PER_DIM];
    uint32_t nt = dim_buckets(bt, tv), nk = dim_buckets(bkv, kv);
    writer w = {0};
    put_u32(&w, BLOB_MAGIC);
    put_u32(&w, BLOB_VERSION);
    put_u32(&w, n_instr);
    put_u32(&w, part->n_bindings);
    put_u64(&w, (uint64_t)bt);
    put_u64(&w, (uint64_t)bkv);
    put_u32(&w, n_scratch);
    for (uint32_t i = 0; i < n_scratch; i++)
        put_u64(&w, scratch_bytes[i]);
    put_instrs(&w, in, n_instr);
    put_u32(&w, nt * nk);
    for (uint32_t a = 0; a < nt; a++)
        for (uint32_t b = 0; b < nk; b++) {
            double ns = 0;
            uint64_t bytes = 0;
            for (uint32_t i = 0; i < n_instr; i++) {
                double ins;
                uint64_t ib;
                npu_instr_cost(&dev->desc, &in[i], tv[a], kv[b], &ins, &ib);
                ns += ins;
                bytes += ib;
            }
            put_u64(&w, (uint64_t)tv[a]);
            put_u64(&w, (uint64_t)kv[b]);
            put_f64(&w, ns);
            put_u64(&w, bytes);
        }
    free(in);
    if (w.oom) {
        free(w.p);
        npu_host->set_error("npu-sim: compile: out of memory writing the command stream");
        return BST_ERR_OUT_OF_MEMORY;
    }
    *out = w.p;
    *out_size = w.len;
    return BST_OK;
}

/* Size of the blob's leading part that identifies the stream (header + instructions). */
static size_t instr_section(const uint8_t *blob, size_t size)
{
    reader r = {.p = blob, .len = size};
    (void)get_u32(&r);
    (void)get_u32(&r);
    uint32_t n = get_u32(&r);
    (void)get_u32(&r);
    (void)get_u64(&r);
    (void)get_u64(&r);
    uint32_t ns = get_u32(&r);
    const size_t per = 8 + (NPU_MAX_IN + 1) * (16 + BST_MAX_DIMS * 20 + 8) + 24;
    size_t head = 36 + 8 * (size_t)(ns <= NPU_MAX_SCRATCH ? ns : 0);
    if (r.short_read || n > MAX_INSTR || ns > NPU_MAX_SCRATCH || head + (size_t)n * per > size)
        return size;
    return head + (size_t)n * per;
}

void npu_exec_destroy(npu_device *dev, npu_executable *e)
{
    if (!e)
        return;
    e->magic = 0;
    for (uint32_t i = 0; e->scratch && i < e->n_scratch; i++)
        if (e->scratch[i])
            npu_buffer_free(dev, e->scratch[i]);
    free(e->scratch);
    free(e->scratch_bytes);
    free(e->instr);
    free(e->buckets);
    free(e);
}

static bst_status corrupt(const char *why)
{
    npu_host->set_error("npu-sim: command stream blob rejected: %s", why);
    return BST_ERR_FORMAT;
}

bst_status npu_blob_load(npu_device *dev, const uint8_t *blob, size_t size,
                         npu_executable **out)
{
    *out = NULL;
    reader r = {.p = blob, .len = size};
    if (get_u32(&r) != BLOB_MAGIC || get_u32(&r) != BLOB_VERSION)
        return corrupt("bad magic or version");
    uint32_t n = get_u32(&r), n_bindings = get_u32(&r);
    int64_t bt = (int64_t)get_u64(&r), bkv = (int64_t)get_u64(&r);
    if (r.short_read || n == 0 || n > MAX_INSTR || bt < 0 || bkv < 0 ||
        bt > (INT64_C(1) << 31) || bkv > (INT64_C(1) << 31))
        return corrupt("header out of range");
    npu_executable *e = calloc(1, sizeof *e);
    if (!e || !(e->instr = calloc(n, sizeof *e->instr))) {
        free(e);
        npu_host->set_error("npu-sim: out of memory loading a command stream");
        return BST_ERR_OUT_OF_MEMORY;
    }
    e->magic = NPU_MAGIC_EXEC;
    e->n_instr = n;
    e->n_bindings = n_bindings;
    e->bound_tokens = bt;
    e->bound_kv = bkv;
    e->max_row = 1;
    bst_status st = BST_OK;
    uint32_t ns = get_u32(&r);
    if (r.short_read || ns > NPU_MAX_SCRATCH || n_bindings > UINT32_MAX - NPU_MAX_SCRATCH) {
        npu_exec_destroy(dev, e);
        return corrupt("scratch table");
    }
    e->n_scratch = ns;
    e->scratch = calloc(ns + 1, sizeof *e->scratch);
    e->scratch_bytes = calloc(ns + 1, sizeof *e->scratch_bytes);
    if (!e->scratch || !e->scratch_bytes) {
        npu_exec_destroy(dev, e);
        npu_host->set_error("npu-sim: out of memory loading a command stream");
        return BST_ERR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < ns; i++) {
        e->scratch_bytes[i] = get_u64(&r);
        if (r.short_read || e->scratch_bytes[i] == 0 || e->scratch_bytes[i] > dev->desc.memory_bytes)
            st = corrupt("scratch size");
    }
    for (uint32_t i = 0; i < ns && st == BST_OK; i++)
        st = npu_buffer_alloc(dev, e->scratch_bytes[i], &e->scratch[i]);
    for (uint32_t i = 0; i < n && st == BST_OK; i++) {
        npu_instr *in = &e->instr[i];
        in->op = get_u32(&r);
        in->n_in = get_u32(&r);
        for (int k = 0; k < NPU_MAX_IN; k++)
            get_operand(&r, &in->in[k]);
        get_operand(&r, &in->out);
        in->f0 = get_f64(&r);
        in->i0 = (int64_t)get_u64(&r);
        in->i1 = (int64_t)get_u64(&r);
        if (r.short_read) {
            st = corrupt("truncated instruction");
            break;
        }
        st = npu_instr_check(in, n_bindings + ns);
        for (uint32_t k = 0; k <= in->n_in && st == BST_OK && k <= NPU_MAX_IN; k++) {
            const npu_operand *o = k == in->n_in ? &in->out : &in->in[k];
            if (o->rank && o->shape[o->rank - 1] > e->max_row)
                e->max_row = o->shape[o->rank - 1];
            for (uint32_t d = 0; d < o->rank; d++)
                if ((o->sym[d] == BST_SYM_N_TOKENS && o->shape[d] > bt) ||
                    (o->sym[d] == BST_SYM_N_KV && o->shape[d] > bkv))
                    st = corrupt("an operand's symbolic bound exceeds the stream's");
        }
    }
    uint32_t nb = st == BST_OK ? get_u32(&r) : 0;
    if (st == BST_OK && (r.short_read || nb == 0 ||
                         nb > NPU_MAX_BUCKETS_PER_DIM * NPU_MAX_BUCKETS_PER_DIM))
        st = corrupt("bucket table size");
    if (st == BST_OK && !(e->buckets = calloc(nb, sizeof *e->buckets))) {
        npu_host->set_error("npu-sim: out of memory loading a command stream");
        st = BST_ERR_OUT_OF_MEMORY;
    }
    bool has_top = false;
    for (uint32_t i = 0; i < nb && st == BST_OK; i++) {
        npu_bucket *b = &e->buckets[i];
        b->n_tokens = (int64_t)get_u64(&r);
        b->n_kv = (int64_t)get_u64(&r);
        b->compute_ns = get_f64(&r);
        b->dram_bytes = get_u64(&r);
        if (r.short_read || b->n_tokens < 0 || b->n_tokens > bt || b->n_kv < 0 ||
            b->n_kv > bkv || !isfinite(b->compute_ns) || b->compute_ns < 0)
            st = corrupt("bucket entry out of range");
        has_top = has_top || (b->n_tokens == bt && b->n_kv == bkv);
    }
    e->n_buckets = nb;
    if (st == BST_OK && !has_top)
        st = corrupt("no bucket covers the bounds");
    if (st == BST_OK && r.at != size)
        st = corrupt("trailing bytes");
    if (st != BST_OK) {
        npu_exec_destroy(dev, e);
        return st;
    }
    *out = e;
    return BST_OK;
}

bst_status npu_compile(void *device, const bst_partition_desc *partition, void **out_executable)
{
    npu_device *dev = npu_device_get(device);
    if (!dev || !partition || !out_executable) {
        npu_host->set_error("npu-sim: compile: bad arguments");
        return BST_ERR_INVALID_ARG;
    }
    *out_executable = NULL;
    bst_status st = npu_injected_fault("compile");
    if (st != BST_OK)
        return st;
    uint8_t *blob = NULL;
    size_t size = 0;
    if ((st = npu_blob_build(dev, partition, &blob, &size)) != BST_OK)
        return st;
    /* The key and the device model (the file name) cover what the stream computes and for
     * which chip, so each chip keeps its own entry; the cache header records the device model
     * and its description, the plugin version and the source hash, so an entry from an edited
     * description or another plugin build is found and rejected. */
    uint64_t key = bstc_fnv1a(NPU_FNV_SEED, blob, instr_section(blob, size));
    size_t csize = 0;
    uint8_t *cached = npu_cache_load(dev, key, &csize);
    npu_executable *e = NULL;
    if (cached) {
        st = npu_blob_load(dev, cached, csize, &e);
        if (st != BST_OK)
            npu_host->log(BST_LOG_WARN, "npu-sim: cached command stream rejected (%s); "
                          "recompiling", "invalid content");
        else {
            e->from_cache = true;
            npu_host->log(BST_LOG_DEBUG, "npu-sim: command stream %016llx loaded from the cache",
                          (unsigned long long)key);
        }
        npu_host->free(cached);
    }
    if (!e) {
        st = npu_blob_load(dev, blob, size, &e);
        if (st == BST_OK)
            npu_cache_store(dev, key, blob, size);
    }
    free(blob);
    if (st != BST_OK)
        return st;
    *out_executable = e;
    return BST_OK;
}

void npu_executable_free(void *device, void *executable)
{
    npu_device *dev = npu_device_get(device);
    npu_executable *e = executable;
    if (dev && e && e->magic == NPU_MAGIC_EXEC)
        npu_exec_destroy(dev, e);
}
