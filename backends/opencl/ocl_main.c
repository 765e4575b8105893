/*
 * The OpenCL backend's entry point: ABI negotiation, the api table, enumeration of every device
 * of every platform the ICD loader knows, device open/close (context and queue are created
 * lazily, at open), and the mapping of OpenCL errors to bst_status.
 */
#include "ocl_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const bst_host_api *ocl_host;
bstc_plugin ocl_plugin = {.name = OCL_BACKEND_NAME};

/* --- errors --- */

const char *ocl_cl_error_name(cl_int err)
{
    switch (err) {
#define E(x) \
    case x:  \
        return #x;
        E(CL_SUCCESS)
        E(CL_DEVICE_NOT_FOUND)
        E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES)
        E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE)
        E(CL_MEM_COPY_OVERLAP)
        E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_MAP_FAILURE)
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_COMPILE_PROGRAM_FAILURE)
        E(CL_LINKER_NOT_AVAILABLE)
        E(CL_LINK_PROGRAM_FAILURE)
        E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE_TYPE)
        E(CL_INVALID_PLATFORM)
        E(CL_INVALID_DEVICE)
        E(CL_INVALID_CONTEXT)
        E(CL_INVALID_QUEUE_PROPERTIES)
        E(CL_INVALID_COMMAND_QUEUE)
        E(CL_INVALID_HOST_PTR)
        E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_BINARY)
        E(CL_INVALID_BUILD_OPTIONS)
        E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE)
        E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL_DEFINITION)
        E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE)
        E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION)
        E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET)
        E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT)
        E(CL_INVALID_OPERATION)
        E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_GLOBAL_WORK_SIZE)
        E(CL_INVALID_PROPERTY)
#undef E
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
        return "unknown OpenCL error";
    }
}

bst_status ocl_status_of(cl_int err)
{
    switch (err) {
    case CL_SUCCESS:
        return BST_OK;
    case CL_OUT_OF_RESOURCES:
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_INVALID_BUFFER_SIZE: /* larger than the device's largest allocation */
        return BST_ERR_DEVICE_OOM;
    case CL_OUT_OF_HOST_MEMORY:
        return BST_ERR_OUT_OF_MEMORY;
    /* A device that stopped answering: drivers report a reset or a removed device this way, and
     * a failed command in a wait list means an earlier one died. */
    case CL_DEVICE_NOT_AVAILABLE:
    case CL_DEVICE_NOT_FOUND:
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST:
        return BST_ERR_DEVICE_LOST;
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_COMPILE_PROGRAM_FAILURE:
    case CL_LINK_PROGRAM_FAILURE:
    case CL_COMPILER_NOT_AVAILABLE:
    case CL_LINKER_NOT_AVAILABLE:
    case CL_INVALID_BUILD_OPTIONS:
    case CL_INVALID_PROGRAM_EXECUTABLE:
    case CL_INVALID_KERNEL_NAME:
    case CL_INVALID_KERNEL_DEFINITION:
        return BST_ERR_COMPILE;
    default:
        return BST_ERR_BACKEND;
    }
}

bst_status ocl_cl_fail(ocl_device *dev, cl_int err, const char *fmt, ...)
{
    char what[OCL_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    bst_status st = ocl_status_of(err);
    if (st == BST_OK)
        st = BST_ERR_INTERNAL; /* called without an error: a bug here */
    if (st == BST_ERR_DEVICE_LOST && dev)
        dev->lost = true;
    ocl_host->set_error("opencl: %s: %s (%d)%s", what, ocl_cl_error_name(err), (int)err,
                        st == BST_ERR_DEVICE_LOST ? "; the device is lost" : "");
    return st;
}

cl_int ocl_injected_cl_error(const char *site)
{
    if (!ocl_host->fault)
        return CL_SUCCESS;
    switch (ocl_host->fault(site)) {
    case BST_OK:
        return CL_SUCCESS;
    case BST_ERR_DEVICE_OOM:
        return strcmp(site, "alloc") == 0 ? CL_MEM_OBJECT_ALLOCATION_FAILURE
                                          : CL_OUT_OF_RESOURCES;
    case BST_ERR_DEVICE_LOST:
        return CL_DEVICE_NOT_AVAILABLE;
    case BST_ERR_COMPILE:
        return CL_BUILD_PROGRAM_FAILURE;
    case BST_ERR_OUT_OF_MEMORY:
        return CL_OUT_OF_HOST_MEMORY;
    default:
        return CL_INVALID_OPERATION;
    }
}

bst_status ocl_device_usable(ocl_device *dev, const char *what)
{
    if (!dev->lost)
        return BST_OK;
    ocl_host->set_error("opencl: %s: the device was lost earlier; it needs to be reopened",
                        what);
    return BST_ERR_DEVICE_LOST;
}

/* --- device description --- */

static void info_string(cl_device_id d, cl_device_info what, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, cap - 1, buf, &got) != CL_SUCCESS)
        buf[0] = '\0';
    buf[cap - 1] = '\0';
}

static cl_int info_value(cl_device_id d, cl_device_info what, void *out, size_t size)
{
    memset(out, 0, size);
    return clGetDeviceInfo(d, what, size, out, NULL);
}

/* "OpenCL C 1.2 ..." -> 120 */
static int cl_c_version(const char *s)
{
    int major = 0, minor = 0;
    if (sscanf(s, "OpenCL C %d.%d", &major, &minor) != 2)
        return 0;
    return major * 100 + minor * 10;
}

/* Reads what the plugin needs of device d; false (with the reason in why) when it cannot serve
 * it. */
static bool describe(cl_platform_id p, cl_device_id d, ocl_dev_entry *e, char *why, size_t cap)
{
    memset(e, 0, sizeof *e);
    e->platform = p;
    e->device = d;
    bst_device_info *info = &e->info;
    info->struct_size = (uint32_t)sizeof *info;
    info_string(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    info_string(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    info_string(d, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    info_string(d, CL_DEVICE_OPENCL_C_VERSION, e->caps.cl_c_version, sizeof e->caps.cl_c_version);
    char pname[sizeof e->caps.platform_name];
    if (clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL) != CL_SUCCESS)
        pname[0] = '\0';
    pname[sizeof pname - 1] = '\0';
    memcpy(e->caps.platform_name, pname, sizeof pname);

    cl_device_type type;
    cl_ulong gmem, lmem, max_alloc;
    cl_uint align_bits, cus, endian_little, available, compiler;
    cl_bool unified;
    size_t max_wg;
    cl_device_fp_config fp;
    if (info_value(d, CL_DEVICE_TYPE, &type, sizeof type) ||
        info_value(d, CL_DEVICE_GLOBAL_MEM_SIZE, &gmem, sizeof gmem) ||
        info_value(d, CL_DEVICE_LOCAL_MEM_SIZE, &lmem, sizeof lmem) ||
        info_value(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, &max_alloc, sizeof max_alloc) ||
        info_value(d, CL_DEVICE_MEM_BASE_ADDR_ALIGN, &align_bits, sizeof align_bits) ||
        info_value(d, CL_DEVICE_MAX_COMPUTE_UNITS, &cus, sizeof cus) ||
        info_value(d, CL_DEVICE_ENDIAN_LITTLE, &endian_little, sizeof endian_little) ||
        info_value(d, CL_DEVICE_AVAILABLE, &available, sizeof available) ||
        info_value(d, CL_DEVICE_COMPILER_AVAILABLE, &compiler, sizeof compiler) ||
        info_value(d, CL_DEVICE_HOST_UNIFIED_MEMORY, &unified, sizeof unified) ||
        info_value(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, &max_wg, sizeof max_wg) ||
        info_value(d, CL_DEVICE_SINGLE_FP_CONFIG, &fp, sizeof fp)) {
        snprintf(why, cap, "clGetDeviceInfo failed");
        return false;
    }
    int clc = cl_c_version(e->caps.cl_c_version);
    if (clc < 120) {
        snprintf(why, cap, "OpenCL C version '%s' is older than 1.2", e->caps.cl_c_version);
        return false;
    }
    if (!endian_little) { /* GGUF blocks and every buffer the host writes are little-endian */
        snprintf(why, cap, "big-endian device");
        return false;
    }
    if (!available || !compiler) {
        snprintf(why, cap, "device %s", !available ? "not available" : "has no compiler");
        return false;
    }
    if (max_wg < 64) { /* every kernel here runs 64-wide work-groups */
        snprintf(why, cap, "max work-group size %zu < 64", max_wg);
        return false;
    }
    if (lmem < 16384) { /* the tiled matmul stages two 32x33 float tiles */
        snprintf(why, cap, "local memory %llu bytes < 16 KiB", (unsigned long long)lmem);
        return false;
    }
    info->kind = (type & CL_DEVICE_TYPE_GPU)   ? BST_DEVICE_GPU
                 : (type & CL_DEVICE_TYPE_CPU) ? BST_DEVICE_CPU
                                               : BST_DEVICE_ACCEL;
    info->memory_bytes = gmem;
    info->max_alloc_bytes = max_alloc;
    info->max_binding_bytes = max_alloc;
    info->unified_memory = unified != CL_FALSE;
    info->self_threaded = (type & CL_DEVICE_TYPE_CPU) != 0; /* a CPU driver runs its own threads */
    uint64_t h = BSTC_FNV_SEED;
    h = bstc_fnv1a(h, pname, strlen(pname) + 1);
    h = bstc_fnv1a(h, info->name, strlen(info->name) + 1);
    h = bstc_fnv1a(h, info->driver_version, strlen(info->driver_version) + 1);
    info->fingerprint = h;

    e->caps.local_mem = lmem;
    e->caps.base_align_bytes = align_bits / 8 ? align_bits / 8 : 1;
    e->caps.compute_units = cus;
    e->caps.max_wg = max_wg;
    e->caps.correct_div = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    size_t ext_len = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS && ext_len) {
        e->caps.extensions = ocl_host->alloc(ext_len + 1, 16);
        if (e->caps.extensions) {
            if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, ext_len, e->caps.extensions, NULL) !=
                CL_SUCCESS)
                ext_len = 0;
            e->caps.extensions[ext_len] = '\0';
        }
    }
    return true;
}

static void ctx_clear(ocl_ctx *c)
{
    for (uint32_t i = 0; i < c->n_devices; i++)
        ocl_host->free(c->devs[i].caps.extensions);
    c->n_devices = 0;
}

/* Lists every usable device of every platform, once. No platform is a normal state: zero
 * devices, with the reason recorded for the loader's "no device" record. */
static bst_status ctx_enumerate(ocl_ctx *c)
{
    if (c->enumerated)
        return BST_OK;
    c->enumerated = true;
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err != CL_SUCCESS || np == 0) {
        ocl_host->log(BST_LOG_INFO, "opencl: no OpenCL device: no platform (%s)",
                      err ? ocl_cl_error_name(err) : "the ICD loader lists none");
        return BST_OK;
    }
    cl_platform_id plats[16];
    if (np > 16)
        np = 16;
    if ((err = clGetPlatformIDs(np, plats, NULL)) != CL_SUCCESS) {
        ocl_host->log(BST_LOG_INFO, "opencl: no OpenCL device: clGetPlatformIDs: %s",
                      ocl_cl_error_name(err));
        return BST_OK;
    }
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[OCL_MAX_DEVICES];
        cl_uint nd = 0;
        err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, OCL_MAX_DEVICES, devs, &nd);
        if (err != CL_SUCCESS) {
            ocl_host->log(BST_LOG_DEBUG, "opencl: platform %u: clGetDeviceIDs: %s", p,
                          ocl_cl_error_name(err));
            continue;
        }
        if (nd > OCL_MAX_DEVICES)
            nd = OCL_MAX_DEVICES;
        for (cl_uint d = 0; d < nd && c->n_devices < OCL_MAX_DEVICES; d++) {
            char why[160];
            ocl_dev_entry *e = &c->devs[c->n_devices];
            if (!describe(plats[p], devs[d], e, why, sizeof why)) {
                ocl_host->log(BST_LOG_INFO, "opencl: skipping device \"%s\": %s", e->info.name,
                              why);
                ocl_host->free(e->caps.extensions);
                continue;
            }
            c->n_devices++;
        }
    }
    if (c->n_devices == 0)
        ocl_host->log(BST_LOG_INFO, "opencl: no OpenCL device: no usable device on %u platform%s",
                      np, np == 1 ? "" : "s");
    return BST_OK;
}

/* --- api table entries --- */

static void ocl_destroy(void *ctx)
{
    ocl_ctx *c = ctx;
    if (!c || c->magic != OCL_MAGIC_CTX)
        return;
    ctx_clear(c);
    c->magic = 0;
    ocl_host->free(c);
}

static bst_status ocl_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                uint32_t capacity, uint32_t *out_count)
{
    ocl_ctx *c = ctx;
    if (!c || c->magic != OCL_MAGIC_CTX) {
        ocl_host->set_error("opencl: enumerate: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    bst_status st = ctx_enumerate(c);
    if (st != BST_OK)
        return st;
    if (c->n_devices == 0) /* Not an error: the loader records "no device", and this says which. */
        ocl_host->set_error("no OpenCL device (no OpenCL platform with a usable device; "
                            "install an ICD such as pocl-opencl-icd or a GPU driver)");
    return bstc_enumerate_out(&ocl_plugin, out_infos, stride, capacity, out_count,
                              &c->devs[0].info, sizeof c->devs[0], c->n_devices);
}

static int broken_family_from_env(void)
{
    const char *v = secure_getenv("BASTION_OPENCL_TEST_BROKEN_KERNEL");
    if (!v || !v[0] || strcmp(v, "0") == 0)
        return -1;
    for (int f = 0; f < OCL_FAM_COUNT; f++)
        if (strcmp(v, ocl_family_name((ocl_family)f)) == 0)
            return f;
    return OCL_FAM_NORM; /* "1" or any other value: the norm family */
}

static void device_release(ocl_device *d)
{
    ocl_programs_release(d);
    if (d->queue)
        (void)clReleaseCommandQueue(d->queue);
    if (d->context)
        (void)clReleaseContext(d->context);
    ocl_host->free(d->caps.extensions);
    d->magic = 0;
    ocl_host->free(d);
}

static bst_status ocl_device_open(void *ctx, uint32_t index, void **out_device)
{
    ocl_ctx *c = ctx;
    if (!c || c->magic != OCL_MAGIC_CTX || !out_device) {
        ocl_host->set_error("opencl: device_open: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    *out_device = NULL;
    bst_status st = ctx_enumerate(c);
    if (st != BST_OK)
        return st;
    if (index >= c->n_devices) {
        ocl_host->set_error("opencl: device_open: no device %u (there are %u)", index,
                            c->n_devices);
        return BST_ERR_NOT_FOUND;
    }
    const ocl_dev_entry *e = &c->devs[index];
    ocl_device *d = ocl_host->alloc(sizeof *d, 64);
    if (!d) {
        ocl_host->set_error("opencl: device_open: out of memory");
        return BST_ERR_OUT_OF_MEMORY;
    }
    memset(d, 0, sizeof *d);
    d->magic = OCL_MAGIC_DEVICE;
    d->id = e->device;
    d->info = e->info;
    d->caps = e->caps;
    d->caps.extensions = NULL;
    if (e->caps.extensions) {
        size_t n = strlen(e->caps.extensions) + 1;
        d->caps.extensions = ocl_host->alloc(n, 16);
        if (d->caps.extensions)
            memcpy(d->caps.extensions, e->caps.extensions, n);
    }
    d->broken_family = broken_family_from_env();
    const char *fused = secure_getenv("BASTION_OPENCL_FUSED");
    d->offer_fused = fused && fused[0] ? strcmp(fused, "0") != 0 : d->info.kind != BST_DEVICE_CPU;
    /* Correctly rounded division makes the quantizers' bytes match the reference's. */
    snprintf(d->build_options, sizeof d->build_options, "-cl-std=CL1.2%s",
             d->caps.correct_div ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");

    cl_int err = ocl_injected_cl_error("device_open");
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)e->platform, 0};
    if (err == CL_SUCCESS)
        d->context = clCreateContext(props, 1, &d->id, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        d->context = NULL;
        st = ocl_cl_fail(NULL, err, "clCreateContext for \"%s\"", d->info.name);
        device_release(d);
        return st;
    }
    d->queue = clCreateCommandQueue(d->context, d->id, 0, &err);
    if (err != CL_SUCCESS) {
        d->queue = NULL;
        st = ocl_cl_fail(NULL, err, "clCreateCommandQueue for \"%s\"", d->info.name);
        device_release(d);
        return st;
    }
    ocl_host->log(BST_LOG_DEBUG,
                  "opencl: opened \"%s\" (%s, platform \"%s\", driver %s, %s; %u compute units, "
                  "%llu MiB global, %llu KiB local, max alloc %llu MiB, base alignment %u "
                  "bytes; extensions: %s)",
                  d->info.name, d->info.vendor, d->caps.platform_name, d->info.driver_version,
                  d->caps.cl_c_version, d->caps.compute_units,
                  (unsigned long long)(d->info.memory_bytes >> 20),
                  (unsigned long long)(d->caps.local_mem >> 10),
                  (unsigned long long)(d->info.max_alloc_bytes >> 20), d->caps.base_align_bytes,
                  d->caps.extensions ? d->caps.extensions : "?");
    if (d->offer_fused != (d->info.kind != BST_DEVICE_CPU))
        ocl_host->log(BST_LOG_INFO, "opencl: fused ops %s on \"%s\" (BASTION_OPENCL_FUSED)",
                      d->offer_fused ? "offered" : "not offered", d->info.name);
    if (d->broken_family >= 0)
        ocl_host->log(BST_LOG_WARN, "opencl: test hook: family '%s' gets a broken kernel",
                      ocl_family_name((ocl_family)d->broken_family));
    *out_device = d;
    return BST_OK;
}

static void ocl_device_close(void *device)
{
    ocl_device *d = device;
    if (!d || d->magic != OCL_MAGIC_DEVICE)
        return;
    if (d->queue)
        (void)clFinish(d->queue);
    device_release(d);
}

BST_BACKEND_ENTRY
{
    uint32_t host_struct_size = 0;
    bst_status st = bstc_entry_begin(&ocl_plugin, host, host_abi, out, 0, &host_struct_size);
    if (st != BST_OK)
        return st;
    ocl_host = host;
    ocl_ctx *ctx = bstc_alloc_zero(&ocl_plugin, sizeof *ctx, "entry");
    if (!ctx)
        return BST_ERR_OUT_OF_MEMORY;
    ctx->magic = OCL_MAGIC_CTX;

    const bst_backend_api api = {
        .name = OCL_BACKEND_NAME,
        .version = OCL_BACKEND_VERSION,
        .ctx = ctx,
        .destroy = ocl_destroy,
        .enumerate = ocl_enumerate,
        .device_open = ocl_device_open,
        .device_close = ocl_device_close,
        .set_num_threads = NULL, /* OpenCL has no portable way to resize a driver's threads */
        .query = ocl_query,
        .buffer_alloc = ocl_buffer_alloc,
        .buffer_free = ocl_buffer_free,
        .buffer_write = ocl_buffer_write,
        .buffer_read = ocl_buffer_read,
        .buffer_copy = ocl_buffer_copy,
        .buffer_map = NULL, /* a CL 1.2 mapping cannot stay valid while kernels run */
        .prepare_weight = ocl_prepare_weight,
        .compile = ocl_compile,
        .executable_free = ocl_executable_free,
        .execute = ocl_execute,
        .last_execute_ns = ocl_last_execute_ns,
    };
    bstc_entry_publish(out, host_struct_size, host_abi, &api);
    return BST_OK;
}
