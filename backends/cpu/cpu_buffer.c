/*
 * CPU buffers: 64-byte aligned host memory from the host's allocator, and weights imported
 * without a copy (the device reads host memory, and weight data outlives every program).
 */
#include "cpu_backend.h"
#include "cpu_packed.h"

#include <stdatomic.h>
#include <string.h>

#define CPU_ALIGN 64

cpu_buffer *cpu_buffer_get(void *handle)
{
    cpu_buffer *b = handle;
    if (!b || b->magic != CPU_MAGIC_BUFFER)
        return NULL;
    return b;
}

static bst_status range_ok(const char *what, const cpu_buffer *b, uint64_t offset, uint64_t size)
{
    if (offset > b->size || size > b->size - offset) {
        cpu_host->set_error("cpu: %s: range [%llu, +%llu) is outside the %llu-byte buffer", what,
                            (unsigned long long)offset, (unsigned long long)size,
                            (unsigned long long)b->size);
        return BST_ERR_INVALID_ARG;
    }
    return BST_OK;
}

static cpu_buffer *get_or_fail(const char *what, void *handle)
{
    cpu_buffer *b = cpu_buffer_get(handle);
    if (!b)
        cpu_host->set_error("cpu: %s: %p is not a cpu buffer", what, handle);
    return b;
}

bst_status cpu_buffer_alloc(void *device, uint64_t size, void **out_buffer)
{
    (void)device;
    if (!out_buffer) {
        cpu_host->set_error("cpu: buffer_alloc: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    bst_status st = cpu_injected_fault("alloc");
    if (st != BST_OK)
        return st;
    if (size > (uint64_t)SIZE_MAX - CPU_ALIGN) {
        cpu_host->set_error("cpu: buffer_alloc: %llu bytes do not fit in memory",
                            (unsigned long long)size);
        return BST_ERR_DEVICE_OOM;
    }
    cpu_buffer *b = cpu_host->alloc(sizeof *b, CPU_ALIGN);
    if (!b) {
        cpu_host->set_error("cpu: buffer_alloc: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    /* Zeroed, so a state (the KV cache) starts defined and tests never read garbage. */
    size_t bytes = size ? (size_t)size : 1;
    b->data = cpu_host->alloc(bytes, CPU_ALIGN);
    if (!b->data) {
        cpu_host->free(b);
        cpu_host->set_error("cpu: buffer_alloc: cannot allocate %llu bytes",
                            (unsigned long long)size);
        return BST_ERR_DEVICE_OOM;
    }
    memset(b->data, 0, bytes);
    b->magic = CPU_MAGIC_BUFFER;
    b->owned = true;
    b->read_only = false;
    b->size = size;
    b->packed = NULL;
    *out_buffer = b;
    return BST_OK;
}

static _Atomic uint64_t frees;

uint64_t cpu_buffer_frees(void) { return atomic_load_explicit(&frees, memory_order_acquire); }

void cpu_buffer_free(void *device, void *buffer)
{
    (void)device;
    cpu_buffer *b = cpu_buffer_get(buffer);
    if (!b)
        return;
    atomic_fetch_add(&frees, 1); /* before the address can be handed out again */
    b->magic = 0;
    if (b->owned)
        cpu_host->free(b->data);
    cpu_packed_release(b->packed); /* the descriptor lives in b's allocation (weight_buffer) */
    cpu_host->free(b);
}

bst_status cpu_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size)
{
    (void)device;
    cpu_buffer *b = get_or_fail("buffer_write", buffer);
    if (!b)
        return BST_ERR_INVALID_ARG;
    bst_status st = range_ok("buffer_write", b, offset, size);
    if (st != BST_OK)
        return st;
    if (b->read_only) {
        cpu_host->set_error("cpu: buffer_write: buffer holds an imported (read-only) weight");
        return BST_ERR_INVALID_ARG;
    }
    if (size && !src) {
        cpu_host->set_error("cpu: buffer_write: NULL source");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memmove(b->data + offset, src, (size_t)size);
    return BST_OK;
}

bst_status cpu_buffer_read(void *device, void *buffer, uint64_t offset, void *dst, uint64_t size)
{
    (void)device;
    cpu_buffer *b = get_or_fail("buffer_read", buffer);
    if (!b)
        return BST_ERR_INVALID_ARG;
    bst_status st = range_ok("buffer_read", b, offset, size);
    if (st != BST_OK)
        return st;
    /* Lets tests make a device's memory unreadable, as a lost GPU's is. */
    st = cpu_injected_fault("read");
    if (st != BST_OK)
        return st;
    if (size && !dst) {
        cpu_host->set_error("cpu: buffer_read: NULL destination");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memmove(dst, b->data + offset, (size_t)size);
    return BST_OK;
}

bst_status cpu_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size)
{
    (void)device;
    cpu_buffer *d = get_or_fail("buffer_copy", dst), *s = get_or_fail("buffer_copy", src);
    if (!d || !s)
        return BST_ERR_INVALID_ARG;
    bst_status st;
    if ((st = range_ok("buffer_copy", d, dst_offset, size)) != BST_OK ||
        (st = range_ok("buffer_copy", s, src_offset, size)) != BST_OK)
        return st;
    if (d->read_only) {
        cpu_host->set_error("cpu: buffer_copy: destination is an imported (read-only) weight");
        return BST_ERR_INVALID_ARG;
    }
    if (size)
        memmove(d->data + dst_offset, s->data + src_offset, (size_t)size);
    return BST_OK;
}

bst_status cpu_buffer_map(void *device, void *buffer, void **out_ptr)
{
    (void)device;
    if (!out_ptr) {
        cpu_host->set_error("cpu: buffer_map: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    cpu_buffer *b = get_or_fail("buffer_map", buffer);
    if (!b)
        return BST_ERR_INVALID_ARG;
    *out_ptr = b->data;
    return BST_OK;
}

/* An imported weight with a packed copy: the copy's descriptor right behind the buffer, in the
 * same allocation. A decode step binds the same weights every time and never looks at either
 * again, but a caller that binds another weight per call (bench ops rotates cache-cold copies)
 * makes execute check both, and from two allocations that was two dependent cache misses:
 * q4_1 576 x 576 on two threads spent ~0.34 us before its kernel started, ~0.19 us with one. */
typedef struct weight_buffer {
    cpu_buffer buffer;
    cpu_packed packed;
} weight_buffer;

/* Imports the weight in place: the device reads host memory and `data` lives until the process
 * ends. A q4_0 / q4_1 / q8_0 matrix also gets the interleaved copy the int8 kernels read
 * (cpu_packed.h), and then costs that copy's bytes (the native pages stay in the host's file
 * mapping, read only by the reference and f32-GEMM kernels); otherwise it costs its own bytes
 * (the file pages it keeps in use). */
bst_status cpu_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                              uint64_t size, void **out_buffer, uint64_t *out_bytes,
                              uint32_t *out_layout)
{
    const cpu_device *dev = device;
    if (!out_buffer || !out_bytes || !out_layout || !tensor || (size && !data) || !dev) {
        cpu_host->set_error("cpu: prepare_weight: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    if (tensor->struct_size < sizeof(bst_tensor_desc)) {
        cpu_host->set_error("cpu: prepare_weight: tensor descriptor of %u bytes is too small",
                            tensor->struct_size);
        return BST_ERR_ABI;
    }
    if (tensor->layout != BST_LAYOUT_NATIVE) {
        cpu_host->set_error("cpu: prepare_weight: layout %u is not GGUF-native", tensor->layout);
        return BST_ERR_UNSUPPORTED;
    }
    bst_status st = cpu_injected_fault("alloc");
    if (st != BST_OK)
        return st;
    cpu_packed packed;
    bool has_packed = false;
    if (!dev->ref_only && tensor->offset == 0 &&
        cpu_packed_wanted(tensor->dtype, tensor->rank, tensor->shape)) {
        /* Rows as the descriptor strides them, all inside `size`, else left unpacked. */
        uint32_t bs = 0, bb = 0;
        const uint64_t row_bytes = (uint64_t)tensor->strides[0], rows = (uint64_t)tensor->shape[0];
        const uint64_t used = cpu_dtype_geometry(tensor->dtype, &bs, &bb) && bs
                                  ? (uint64_t)tensor->shape[1] / bs * bb
                                  : UINT64_MAX;
        if (tensor->strides[0] > 0 && row_bytes >= used && (uint64_t)tensor->strides[1] == bb &&
            used <= size && (size - used) / row_bytes >= rows - 1) {
            st = cpu_packed_create(tensor->dtype, tensor->shape[0], tensor->shape[1], data,
                                   (size_t)row_bytes, &packed);
            if (st != BST_OK)
                return st;
            has_packed = true;
        }
    }
    cpu_buffer *b = cpu_host->alloc(has_packed ? sizeof(weight_buffer) : sizeof *b, CPU_ALIGN);
    if (!b) {
        if (has_packed)
            cpu_packed_release(&packed);
        cpu_host->set_error("cpu: prepare_weight: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    b->magic = CPU_MAGIC_BUFFER;
    b->owned = false;
    b->read_only = true;
    b->data = (uint8_t *)(uintptr_t)data; /* never written: read_only */
    b->size = size;
    b->packed = NULL;
    if (has_packed) {
        weight_buffer *w = (weight_buffer *)(void *)b;
        w->packed = packed;
        b->packed = &w->packed;
    }
    *out_buffer = b;
    *out_bytes = has_packed ? (uint64_t)packed.groups * packed.group_bytes : size;
    *out_layout = BST_LAYOUT_NATIVE;
    return BST_OK;
}
