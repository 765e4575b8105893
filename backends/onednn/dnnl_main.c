/*
 * The oneDNN backend's entry point: ABI negotiation, the api table, the one "onednn" device
 * (a oneDNN CPU engine), host-memory buffers, oneDNN status mapping and thread control.
 */
#include "dnnl_backend.h"
#include "dnnl_source_hash.h"

#include <dnnl_debug.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const bst_host_api *dnnl_host;
bstc_plugin dnnl_plugin = {.name = DNNL_BACKEND_NAME};

/* Debian builds oneDNN with OpenMP (DNNL_CPU_THREADING_RUNTIME == OMP) and the plugin links the
 * same libgomp; declared here so no omp.h (which clang may not ship) is needed. */
void omp_set_num_threads(int n);
int omp_get_max_threads(void);

typedef struct dnnl_ctx {
    uint32_t magic;
} dnnl_ctx;

const char *dnnl_status_name(dnnl_status_t s) { return dnnl_status2str(s); }

bst_status dnnl_fail_status(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success:
        return BST_OK;
    case dnnl_out_of_memory:
        return BST_ERR_OUT_OF_MEMORY;
    case dnnl_invalid_arguments:
        return BST_ERR_INVALID_ARG;
    case dnnl_unimplemented:
        return BST_ERR_UNSUPPORTED;
    default:
        return BST_ERR_BACKEND;
    }
}

bst_status dnnl_injected_fault(const char *site) { return bstc_injected_fault(&dnnl_plugin, site); }

void dnnl_apply_threads(const dnnl_dev *d)
{
    if (d->n_threads > 0 && omp_get_max_threads() != (int)d->n_threads)
        omp_set_num_threads((int)d->n_threads);
}

/* --- device description --- */

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_all: return "all";
    default: return "unknown";
    }
}

static void describe_device(bst_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = (uint32_t)sizeof *info;
    info->kind = BST_DEVICE_CPU;
    const dnnl_version_t *v = dnnl_version();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    snprintf(info->name, sizeof info->name, "oneDNN CPU (%s)", isa_name(isa));
    snprintf(info->vendor, sizeof info->vendor, "oneDNN");
    snprintf(info->driver_version, sizeof info->driver_version, "oneDNN %d.%d.%d (%s)", v->major,
             v->minor, v->patch, v->hash ? v->hash : "?");
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t mem = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    info->memory_bytes = mem;
    info->max_alloc_bytes = mem;
    info->max_binding_bytes = mem;
    info->unified_memory = true;
    info->self_threaded = true; /* OpenMP threads of its own */
    /* Stable for one machine and one oneDNN build: the ISA oneDNN dispatches to, its version
     * and the logical CPU count (its thread team). */
    char extra[64];
    snprintf(extra, sizeof extra, "/%ld/%u", sysconf(_SC_NPROCESSORS_CONF), (unsigned)isa);
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    h = bstc_fnv1a(h, info->driver_version, strlen(info->driver_version));
    h = bstc_fnv1a(h, info->name, strlen(info->name));
    h = bstc_fnv1a(h, extra, strlen(extra));
    info->fingerprint = h;
}

/* --- buffers: host memory --- */

dnnl_buf *dnnl_buf_get(void *handle)
{
    dnnl_buf *b = handle;
    return b && b->magic == DNNL_MAGIC_BUFFER ? b : NULL;
}

static dnnl_buf *buf_new(uint64_t size)
{
    if (size > (uint64_t)SIZE_MAX - 64)
        return NULL;
    dnnl_buf *b = dnnl_host->alloc(sizeof *b, 64);
    if (!b)
        return NULL;
    memset(b, 0, sizeof *b);
    b->data = dnnl_host->alloc(size ? (size_t)size : 1, 64);
    if (!b->data) {
        dnnl_host->free(b);
        return NULL;
    }
    b->magic = DNNL_MAGIC_BUFFER;
    b->size = size;
    return b;
}

bst_status dnnl_buffer_alloc(void *device, uint64_t size, void **out_buffer)
{
    const dnnl_dev *d = device;
    if (!out_buffer || !d || d->magic != DNNL_MAGIC_DEVICE) {
        dnnl_host->set_error("onednn: buffer_alloc: NULL output or not an onednn device");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    bst_status st = dnnl_injected_fault("alloc");
    if (st != BST_OK)
        return st;
    if (d->info.max_alloc_bytes && size > d->info.max_alloc_bytes) {
        dnnl_host->set_error("onednn: buffer_alloc: %llu bytes is more than the device's largest "
                             "allocation (%llu)", (unsigned long long)size,
                             (unsigned long long)d->info.max_alloc_bytes);
        return BST_ERR_DEVICE_OOM;
    }
    dnnl_buf *b = buf_new(size);
    if (!b) {
        dnnl_host->set_error("onednn: buffer_alloc: out of memory (%llu bytes)",
                             (unsigned long long)size);
        return BST_ERR_DEVICE_OOM;
    }
    *out_buffer = b;
    return BST_OK;
}

void dnnl_buffer_free(void *device, void *buffer)
{
    (void)device;
    dnnl_buf *b = dnnl_buf_get(buffer);
    if (!b)
        return;
    b->magic = 0;
    dnnl_host->free(b->data);
    dnnl_host->free(b);
}

static bst_status range_ok(dnnl_buf *b, uint64_t offset, uint64_t size, const char *what)
{
    if (!b) {
        dnnl_host->set_error("onednn: %s: not an onednn buffer", what);
        return BST_ERR_INVALID_ARG;
    }
    if (offset > b->size || size > b->size - offset) {
        dnnl_host->set_error("onednn: %s: range %llu+%llu is outside the %llu-byte buffer", what,
                             (unsigned long long)offset, (unsigned long long)size,
                             (unsigned long long)b->size);
        return BST_ERR_INVALID_ARG;
    }
    if (b->repacked) {
        dnnl_host->set_error("onednn: %s: the buffer holds a requantized weight", what);
        return BST_ERR_INVALID_ARG;
    }
    return BST_OK;
}

static bst_status dnnl_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                                    uint64_t size)
{
    (void)device;
    dnnl_buf *b = dnnl_buf_get(buffer);
    bst_status st = range_ok(b, offset, size, "buffer_write");
    if (st != BST_OK)
        return st;
    if (size && !src) {
        dnnl_host->set_error("onednn: buffer_write: NULL source");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memcpy(b->data + offset, src, (size_t)size);
    return BST_OK;
}

static bst_status dnnl_buffer_read(void *device, void *buffer, uint64_t offset, void *dst,
                                   uint64_t size)
{
    (void)device;
    dnnl_buf *b = dnnl_buf_get(buffer);
    bst_status st = range_ok(b, offset, size, "buffer_read");
    if (st != BST_OK)
        return st;
    if (size && !dst) {
        dnnl_host->set_error("onednn: buffer_read: NULL destination");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memcpy(dst, b->data + offset, (size_t)size);
    return BST_OK;
}

static bst_status dnnl_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                                   uint64_t src_offset, uint64_t size)
{
    (void)device;
    dnnl_buf *d = dnnl_buf_get(dst), *s = dnnl_buf_get(src);
    bst_status st = range_ok(d, dst_offset, size, "buffer_copy (destination)");
    if (st == BST_OK)
        st = range_ok(s, src_offset, size, "buffer_copy (source)");
    if (st != BST_OK)
        return st;
    if (size)
        memmove(d->data + dst_offset, s->data + src_offset, (size_t)size);
    return BST_OK;
}

static bst_status dnnl_buffer_map(void *device, void *buffer, void **out_ptr)
{
    (void)device;
    dnnl_buf *b = dnnl_buf_get(buffer);
    if (!out_ptr) {
        dnnl_host->set_error("onednn: buffer_map: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    bst_status st = range_ok(b, 0, 0, "buffer_map");
    if (st != BST_OK)
        return st;
    *out_ptr = b->data;
    return BST_OK;
}

bst_status dnnl_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                               uint64_t size, void **out_buffer, uint64_t *out_bytes,
                               uint32_t *out_layout)
{
    dnnl_dev *dev = device;
    if (!dev || dev->magic != DNNL_MAGIC_DEVICE) {
        dnnl_host->set_error("onednn: prepare_weight: not an onednn device");
        return BST_ERR_INVALID_ARG;
    }
    if (!out_buffer || !out_bytes || !out_layout || !tensor || (size && !data)) {
        dnnl_host->set_error("onednn: prepare_weight: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    if (tensor->struct_size < sizeof(bst_tensor_desc)) {
        dnnl_host->set_error("onednn: prepare_weight: descriptor of %u bytes is too small",
                             tensor->struct_size);
        return BST_ERR_ABI;
    }
    if (tensor->layout != BST_LAYOUT_NATIVE) {
        dnnl_host->set_error("onednn: prepare_weight: layout %u is not GGUF-native",
                             tensor->layout);
        return BST_ERR_UNSUPPORTED;
    }
    bst_status st = dnnl_injected_fault("alloc");
    if (st != BST_OK)
        return st;
    /* q4_0/q4_1/q8_0 weights whose rows are packed (the file's layout) become what the matmul
     * variant of this device takes: s8 rows with one scale per row (oneDNN 2.6's int8 matmul
     * has no 4-bit weights and no per-block scales), or bf16 rows. */
    uint32_t bs = 0, bb = 0;
    bool packed = tensor->rank >= 1 && tensor->rank <= BST_MAX_DIMS &&
                  dnnl_is_qweight(tensor->dtype) &&
                  dnnl_dtype_geometry(tensor->dtype, &bs, &bb);
    int64_t cols = packed ? tensor->shape[tensor->rank - 1] : 0, rows = 1;
    if (packed) {
        int64_t expect = (int64_t)bb;
        packed = cols > 0 && cols % bs == 0;
        for (uint32_t i = tensor->rank; packed && i-- > 0;) {
            if (tensor->strides[i] != expect || tensor->shape[i] <= 0)
                packed = false;
            int64_t units = i == tensor->rank - 1 ? tensor->shape[i] / bs : tensor->shape[i];
            expect *= units;
            if (i + 1 < tensor->rank)
                rows *= tensor->shape[i];
        }
        packed = packed && (uint64_t)expect == size && rows < (INT64_C(1) << 31) &&
                 cols < (INT64_C(1) << 31);
    }
    if (!packed) {
        dnnl_buf *b = buf_new(size);
        if (!b) {
            dnnl_host->set_error("onednn: prepare_weight: out of memory (%llu bytes)",
                                 (unsigned long long)size);
            return BST_ERR_DEVICE_OOM;
        }
        if (size)
            memcpy(b->data, data, (size_t)size);
        *out_buffer = b;
        *out_bytes = size;
        *out_layout = BST_LAYOUT_NATIVE;
        return BST_OK;
    }
    uint64_t elems = (uint64_t)rows * (uint64_t)cols;
    uint64_t scale_off = dev->int8 ? (elems + 63) & ~UINT64_C(63) : 0;
    uint64_t total = dev->int8 ? scale_off + (uint64_t)rows * sizeof(float) : elems * 2u;
    dnnl_buf *b = buf_new(total);
    if (!b) {
        dnnl_host->set_error("onednn: prepare_weight: out of memory (%llu bytes)",
                             (unsigned long long)total);
        return BST_ERR_DEVICE_OOM;
    }
    int64_t row_bytes = (int64_t)bb * (cols / bs);
    if (dev->int8)
        st = dnnl_requant_rows(tensor->dtype, data, row_bytes, rows, cols, (int8_t *)b->data,
                               (float *)(void *)(b->data + scale_off));
    else
        st = dnnl_dequant_bf16_rows(tensor->dtype, data, row_bytes, rows, cols,
                                    (uint16_t *)(void *)b->data);
    if (st != BST_OK) {
        dnnl_buffer_free(device, b);
        return st;
    }
    b->repacked = dev->int8 ? DNNL_LAYOUT_S8ROWS : DNNL_LAYOUT_BF16ROWS;
    b->rows = rows;
    b->cols = cols;
    b->scale_offset = scale_off;
    if (tensor->rank == 2 && (st = dnnl_block_prepared(dev, b)) != BST_OK) {
        dnnl_buffer_free(device, b);
        return st;
    }
    *out_buffer = b;
    *out_bytes = b->blocked ? b->size
                 : dev->int8 ? elems + (uint64_t)rows * sizeof(float)
                             : elems * 2u;
    *out_layout = b->repacked;
    return BST_OK;
}

/* --- api table entries --- */

static void dnnl_destroy(void *ctx)
{
    dnnl_ctx *c = ctx;
    if (!c || c->magic != DNNL_MAGIC_CTX)
        return;
    c->magic = 0;
    dnnl_host->free(c);
}

static bst_status dnnl_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                 uint32_t capacity, uint32_t *out_count)
{
    (void)ctx;
    bst_device_info info;
    describe_device(&info);
    return bstc_enumerate_out(&dnnl_plugin, out_infos, stride, capacity, out_count, &info,
                              sizeof info, 1);
}

static bst_status dnnl_device_open(void *ctx, uint32_t index, void **out_device)
{
    (void)ctx;
    bst_status st = bstc_open_single_device(&dnnl_plugin, index, out_device);
    if (st != BST_OK)
        return st;
    dnnl_dev *d = dnnl_host->alloc(sizeof *d, 64);
    if (!d) {
        dnnl_host->set_error("onednn: device_open: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(d, 0, sizeof *d);
    dnnl_status_t s = dnnl_engine_create(&d->engine, dnnl_cpu, 0);
    if (s == dnnl_success)
        s = dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        if (d->engine)
            (void)dnnl_engine_destroy(d->engine);
        dnnl_host->free(d);
        dnnl_host->set_error("onednn: device_open: dnnl_engine_create/dnnl_stream_create: %s",
                             dnnl_status_name(s));
        return BST_ERR_NO_DEVICE;
    }
    d->magic = DNNL_MAGIC_DEVICE;
    describe_device(&d->info);
    /* Quantized weights: bf16 by default; s8 (8-bit activations, the 5e-3 agreement class) on
     * request. Fixed for the device's life: prepared weights carry the matching layout. */
    const char *qm = secure_getenv("BASTION_ONEDNN_QMATMUL");
    d->int8 = qm && strcmp(qm, "s8") == 0;
    if (qm && *qm && !d->int8 && strcmp(qm, "bf16") != 0)
        dnnl_host->log(BST_LOG_WARN, "onednn: BASTION_ONEDNN_QMATMUL=%s is not 's8' or 'bf16'; "
                       "using bf16", qm);
    dnnl_host->log(BST_LOG_DEBUG, "onednn: opened \"%s\", %s", d->info.name,
                   d->info.driver_version);
    *out_device = d;
    return BST_OK;
}

static void dnnl_device_close(void *device)
{
    dnnl_dev *d = device;
    if (!d || d->magic != DNNL_MAGIC_DEVICE)
        return;
    d->magic = 0;
    (void)dnnl_stream_destroy(d->stream);
    (void)dnnl_engine_destroy(d->engine);
    dnnl_host->free(d);
}

static bst_status dnnl_set_num_threads(void *device, uint32_t n)
{
    dnnl_dev *d = device;
    if (!d || d->magic != DNNL_MAGIC_DEVICE) {
        dnnl_host->set_error("onednn: set_num_threads: not an onednn device");
        return BST_ERR_INVALID_ARG;
    }
    if (n > 4096) {
        dnnl_host->set_error("onednn: set_num_threads: %u threads is too many", n);
        return BST_ERR_INVALID_ARG;
    }
    /* OpenMP's thread count is per calling thread: applied again at every execute. */
    d->n_threads = n;
    dnnl_apply_threads(d);
    return BST_OK;
}

BST_BACKEND_ENTRY
{
    uint32_t host_struct_size = 0;
    bst_status st = bstc_entry_begin(&dnnl_plugin, host, host_abi, out, BSTC_NEEDS_DEQUANTIZE,
                                     &host_struct_size);
    if (st != BST_OK)
        return st;
    dnnl_host = host;
    dnnl_ctx *ctx = bstc_alloc_zero(&dnnl_plugin, sizeof *ctx, "entry");
    if (!ctx)
        return BST_ERR_OUT_OF_MEMORY;
    ctx->magic = DNNL_MAGIC_CTX;
    const bst_backend_api api = {
        .name = DNNL_BACKEND_NAME,
        .version = DNNL_BACKEND_VERSION,
        .ctx = ctx,
        .destroy = dnnl_destroy,
        .enumerate = dnnl_enumerate,
        .device_open = dnnl_device_open,
        .device_close = dnnl_device_close,
        .set_num_threads = dnnl_set_num_threads,
        .query = dnnl_query,
        .buffer_alloc = dnnl_buffer_alloc,
        .buffer_free = dnnl_buffer_free,
        .buffer_write = dnnl_buffer_write,
        .buffer_read = dnnl_buffer_read,
        .buffer_copy = dnnl_buffer_copy,
        .buffer_map = dnnl_buffer_map,
        .prepare_weight = dnnl_prepare_weight,
        .compile = dnnl_compile,
        .executable_free = dnnl_executable_free,
        .execute = dnnl_execute,
        .last_execute_ns = dnnl_last_execute_ns,
    };
    bstc_entry_publish(out, host_struct_size, host_abi, &api);
    return BST_OK;
}
