/*
 * OpenCL buffers: device memory created zeroed (a state such as the KV cache starts defined),
 * blocking reads and writes, device-side copies, and weights. On a device that shares host
 * memory (CL_DEVICE_HOST_UNIFIED_MEMORY, e.g. PoCL's CPU device) a weight wraps the mmap'd file
 * with CL_MEM_USE_HOST_PTR instead of copying it; elsewhere it is copied once.
 */
#include "ocl_backend.h"

#include <string.h>

ocl_buffer *ocl_buffer_get(void *handle)
{
    ocl_buffer *b = handle;
    if (!b || b->magic != OCL_MAGIC_BUFFER)
        return NULL;
    return b;
}

ocl_device *ocl_device_of(void *device, const char *what)
{
    ocl_device *d = device;
    if (!d || d->magic != OCL_MAGIC_DEVICE) {
        ocl_host->set_error("opencl: %s: not an opencl device", what);
        return NULL;
    }
    return d;
}

static ocl_buffer *buffer_of(void *handle, const char *what)
{
    ocl_buffer *b = ocl_buffer_get(handle);
    if (!b)
        ocl_host->set_error("opencl: %s: %p is not an opencl buffer", what, handle);
    return b;
}

static bst_status range_ok(const char *what, const ocl_buffer *b, uint64_t offset, uint64_t size)
{
    if (offset > b->size || size > b->size - offset) {
        ocl_host->set_error("opencl: %s: range [%llu, +%llu) is outside the %llu-byte buffer",
                            what, (unsigned long long)offset, (unsigned long long)size,
                            (unsigned long long)b->size);
        return BST_ERR_INVALID_ARG;
    }
    return BST_OK;
}

static bst_status new_buffer(ocl_device *d, cl_mem_flags flags, uint64_t size, void *host_ptr,
                             const char *what, ocl_buffer **out)
{
    *out = NULL;
    if (size > d->info.max_alloc_bytes || size > (uint64_t)SIZE_MAX) {
        ocl_host->set_error("opencl: %s: %llu bytes exceed the device's largest allocation "
                            "(%llu)",
                            what, (unsigned long long)size,
                            (unsigned long long)d->info.max_alloc_bytes);
        return BST_ERR_DEVICE_OOM;
    }
    ocl_buffer *b = ocl_host->alloc(sizeof *b, 64);
    if (!b) {
        ocl_host->set_error("opencl: %s: out of memory", what);
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(b, 0, sizeof *b);
    cl_int err = ocl_injected_cl_error("alloc");
    if (err == CL_SUCCESS)
        b->mem = clCreateBuffer(d->context, flags, size ? (size_t)size : 1, host_ptr, &err);
    if (err != CL_SUCCESS) {
        ocl_host->free(b);
        return ocl_cl_fail(d, err, "%s: clCreateBuffer(%llu bytes)", what,
                           (unsigned long long)size);
    }
    b->magic = OCL_MAGIC_BUFFER;
    b->size = size;
    *out = b;
    return BST_OK;
}

bst_status ocl_buffer_alloc(void *device, uint64_t size, void **out_buffer)
{
    ocl_device *d = ocl_device_of(device, "buffer_alloc");
    if (!d || !out_buffer) {
        if (d)
            ocl_host->set_error("opencl: buffer_alloc: NULL output");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    bst_status st = ocl_device_usable(d, "buffer_alloc");
    if (st != BST_OK)
        return st;
    ocl_buffer *b;
    if ((st = new_buffer(d, CL_MEM_READ_WRITE, size, NULL, "buffer_alloc", &b)) != BST_OK)
        return st;
    const cl_uchar zero = 0;
    cl_int err = clEnqueueFillBuffer(d->queue, b->mem, &zero, 1, 0, size ? (size_t)size : 1, 0,
                                     NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(d->queue);
    if (err != CL_SUCCESS) {
        st = ocl_cl_fail(d, err, "buffer_alloc: clEnqueueFillBuffer");
        ocl_buffer_free(d, b);
        return st;
    }
    *out_buffer = b;
    return BST_OK;
}

void ocl_buffer_free(void *device, void *buffer)
{
    (void)device;
    ocl_buffer *b = ocl_buffer_get(buffer);
    if (!b)
        return;
    b->magic = 0;
    if (b->mem)
        (void)clReleaseMemObject(b->mem);
    ocl_host->free(b);
}

bst_status ocl_buffer_write(void *device, void *buffer, uint64_t offset, const void *src,
                            uint64_t size)
{
    ocl_device *d = ocl_device_of(device, "buffer_write");
    ocl_buffer *b = d ? buffer_of(buffer, "buffer_write") : NULL;
    if (!b)
        return BST_ERR_INVALID_ARG;
    bst_status st = range_ok("buffer_write", b, offset, size);
    if (st == BST_OK)
        st = ocl_device_usable(d, "buffer_write");
    if (st != BST_OK)
        return st;
    if (b->read_only) {
        ocl_host->set_error("opencl: buffer_write: buffer holds an imported (read-only) weight");
        return BST_ERR_INVALID_ARG;
    }
    if (size && !src) {
        ocl_host->set_error("opencl: buffer_write: NULL source");
        return BST_ERR_INVALID_ARG;
    }
    if (!size)
        return BST_OK;
    cl_int err = clEnqueueWriteBuffer(d->queue, b->mem, CL_TRUE, (size_t)offset, (size_t)size,
                                      src, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ocl_cl_fail(d, err, "buffer_write: clEnqueueWriteBuffer(%llu bytes)",
                           (unsigned long long)size);
    return BST_OK;
}

bst_status ocl_buffer_read(void *device, void *buffer, uint64_t offset, void *dst, uint64_t size)
{
    ocl_device *d = ocl_device_of(device, "buffer_read");
    ocl_buffer *b = d ? buffer_of(buffer, "buffer_read") : NULL;
    if (!b)
        return BST_ERR_INVALID_ARG;
    bst_status st = range_ok("buffer_read", b, offset, size);
    if (st == BST_OK)
        st = ocl_device_usable(d, "buffer_read");
    if (st != BST_OK)
        return st;
    if (size && !dst) {
        ocl_host->set_error("opencl: buffer_read: NULL destination");
        return BST_ERR_INVALID_ARG;
    }
    if (!size)
        return BST_OK;
    cl_int err = clEnqueueReadBuffer(d->queue, b->mem, CL_TRUE, (size_t)offset, (size_t)size, dst,
                                     0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ocl_cl_fail(d, err, "buffer_read: clEnqueueReadBuffer(%llu bytes)",
                           (unsigned long long)size);
    return BST_OK;
}

bst_status ocl_buffer_copy(void *device, void *dst, uint64_t dst_offset, void *src,
                           uint64_t src_offset, uint64_t size)
{
    ocl_device *d = ocl_device_of(device, "buffer_copy");
    ocl_buffer *db = d ? buffer_of(dst, "buffer_copy") : NULL;
    ocl_buffer *sb = db ? buffer_of(src, "buffer_copy") : NULL;
    if (!sb)
        return BST_ERR_INVALID_ARG;
    bst_status st;
    if ((st = range_ok("buffer_copy", db, dst_offset, size)) != BST_OK ||
        (st = range_ok("buffer_copy", sb, src_offset, size)) != BST_OK ||
        (st = ocl_device_usable(d, "buffer_copy")) != BST_OK)
        return st;
    if (db->read_only) {
        ocl_host->set_error("opencl: buffer_copy: destination is an imported (read-only) weight");
        return BST_ERR_INVALID_ARG;
    }
    if (!size || (db == sb && dst_offset == src_offset))
        return BST_OK;
    /* OpenCL refuses overlapping copies within one buffer; they go through host memory. */
    if (db == sb && (dst_offset < src_offset + size && src_offset < dst_offset + size)) {
        if (size > (uint64_t)SIZE_MAX) {
            ocl_host->set_error("opencl: buffer_copy: %llu bytes do not fit in host memory",
                                (unsigned long long)size);
            return BST_ERR_OVERFLOW;
        }
        void *tmp = ocl_host->alloc((size_t)size, 64);
        if (!tmp) {
            ocl_host->set_error("opencl: buffer_copy: out of memory");
            return BST_ERR_OUT_OF_MEMORY;
        }
        st = ocl_buffer_read(d, sb, src_offset, tmp, size);
        if (st == BST_OK)
            st = ocl_buffer_write(d, db, dst_offset, tmp, size);
        ocl_host->free(tmp);
        return st;
    }
    cl_int err = clEnqueueCopyBuffer(d->queue, sb->mem, db->mem, (size_t)src_offset,
                                     (size_t)dst_offset, (size_t)size, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(d->queue);
    if (err != CL_SUCCESS)
        return ocl_cl_fail(d, err, "buffer_copy: clEnqueueCopyBuffer(%llu bytes)",
                           (unsigned long long)size);
    return BST_OK;
}

bst_status ocl_prepare_weight(void *device, const bst_tensor_desc *tensor, const void *data,
                              uint64_t size, void **out_buffer, uint64_t *out_bytes,
                              uint32_t *out_layout)
{
    ocl_device *d = ocl_device_of(device, "prepare_weight");
    if (!d)
        return BST_ERR_INVALID_ARG;
    if (!out_buffer || !out_bytes || !out_layout || !tensor || (size && !data)) {
        ocl_host->set_error("opencl: prepare_weight: NULL argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_buffer = NULL;
    if (tensor->struct_size < sizeof(bst_tensor_desc)) {
        ocl_host->set_error("opencl: prepare_weight: tensor descriptor of %u bytes is too small",
                            tensor->struct_size);
        return BST_ERR_ABI;
    }
    if (tensor->layout != BST_LAYOUT_NATIVE) {
        ocl_host->set_error("opencl: prepare_weight: layout %u is not GGUF-native",
                            tensor->layout);
        return BST_ERR_UNSUPPORTED;
    }
    bst_status st = ocl_device_usable(d, "prepare_weight");
    if (st != BST_OK)
        return st;
    ocl_buffer *b;
    if (d->info.unified_memory && size > 0) {
        /* The driver reads the file's pages in place; `data` outlives every program and the
         * buffer is read-only, so nothing writes through the mapping. */
        st = new_buffer(d, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR, size, (void *)(uintptr_t)data,
                        "prepare_weight", &b);
        if (st != BST_OK)
            return st;
        b->read_only = true;
    } else {
        st = new_buffer(d, CL_MEM_READ_ONLY | (size ? CL_MEM_COPY_HOST_PTR : 0), size,
                        size ? (void *)(uintptr_t)data : NULL, "prepare_weight", &b);
        if (st != BST_OK)
            return st;
        b->read_only = true;
    }
    *out_buffer = b;
    *out_bytes = size;
    *out_layout = BST_LAYOUT_NATIVE;
    return BST_OK;
}
