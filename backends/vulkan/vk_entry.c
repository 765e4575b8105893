/*
 * The Vulkan backend's entry point: ABI negotiation, the Vulkan instance (with the Khronos
 * validation layer and a debug messenger when BASTION_VULKAN_VALIDATION=1), the list of usable
 * physical devices and their descriptions, and the mapping of VkResult codes and injected
 * faults to statuses.
 *
 * No usable device (no ICD, only Vulkan 1.0/1.1 drivers, no buffer device address) is not an
 * error: entry succeeds and enumerate reports zero devices, which the loader records as "no
 * device".
 */
#include "vk_backend.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const bst_host_api *vkb_host;
bstc_plugin vkb_plugin = {.name = VKB_NAME};

/* --- results ------------------------------------------------------------------------------- */

const char *vkb_result_name(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_EXTERNAL_HANDLE: return "VK_ERROR_INVALID_EXTERNAL_HANDLE";
    case VK_ERROR_FRAGMENTATION: return "VK_ERROR_FRAGMENTATION";
    case VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS: return "VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS";
    case VK_PIPELINE_COMPILE_REQUIRED: return "VK_PIPELINE_COMPILE_REQUIRED";
    case VK_ERROR_UNKNOWN: return "VK_ERROR_UNKNOWN";
    default: return "VkResult";
    }
}

bst_status vkb_result(vkb_device *dev, VkResult r, const char *what)
{
    bst_status st;
    switch (r) {
    case VK_SUCCESS:
        return BST_OK;
    case VK_ERROR_DEVICE_LOST:
        if (dev)
            dev->lost = true;
        st = BST_ERR_DEVICE_LOST;
        break;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_FRAGMENTATION:
    case VK_ERROR_TOO_MANY_OBJECTS:
        st = BST_ERR_DEVICE_OOM;
        break;
    default:
        st = BST_ERR_BACKEND;
        break;
    }
    vkb_host->set_error("vulkan: %s failed: %s (%d)%s", what, vkb_result_name(r), (int)r,
                        st == BST_ERR_DEVICE_LOST ? "; the device is lost" : "");
    return st;
}

VkResult vkb_fault(const char *site)
{
    if (!vkb_host->fault)
        return VK_SUCCESS;
    bst_status st = vkb_host->fault(site);
    if (st == BST_OK)
        return VK_SUCCESS;
    /* The status a test asked for becomes the driver error that would cause it, so the real
     * handling of that error runs. */
    VkResult r = st == BST_ERR_DEVICE_LOST       ? VK_ERROR_DEVICE_LOST
                 : st == BST_ERR_DEVICE_OOM      ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                 : st == BST_ERR_OUT_OF_MEMORY   ? VK_ERROR_OUT_OF_HOST_MEMORY
                                                 : VK_ERROR_UNKNOWN;
    vkb_host->log(BST_LOG_DEBUG, "vulkan: injected fault at '%s': %s", site, vkb_result_name(r));
    return r;
}

/* --- validation ---------------------------------------------------------------------------- */

static VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)types;
    vkb_ctx *c = user;
    const char *text = data && data->pMessage ? data->pMessage : "(no message)";
    if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        if (c)
            atomic_fetch_add(&c->validation_errors, 1);
        vkb_host->log(BST_LOG_ERROR, "vulkan validation error: %s", text);
    } else if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        vkb_host->log(BST_LOG_WARN, "vulkan validation warning: %s", text);
    }
    return VK_FALSE; /* never abort the call */
}

static bool has_layer(const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkLayerProperties *p = vkb_host->alloc(n * sizeof *p, 16);
    if (!p)
        return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(p[i].layerName, name) == 0;
    vkb_host->free(p);
    return found;
}

static bool has_instance_extension(const char *layer, const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || n == 0)
        return false;
    VkExtensionProperties *p = vkb_host->alloc(n * sizeof *p, 16);
    if (!p)
        return false;
    bool found = false;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(p[i].extensionName, name) == 0;
    vkb_host->free(p);
    return found;
}

static const char VALIDATION_LAYER[] = "VK_LAYER_KHRONOS_validation";

static VkResult create_instance(vkb_ctx *c)
{
    uint32_t loader_version = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS)
        loader_version = VK_API_VERSION_1_0;
    if (loader_version < VK_API_VERSION_1_2) {
        vkb_host->log(BST_LOG_INFO, "vulkan: the Vulkan loader speaks %u.%u; 1.2 is needed",
                      VK_API_VERSION_MAJOR(loader_version), VK_API_VERSION_MINOR(loader_version));
        return VK_ERROR_INCOMPATIBLE_DRIVER;
    }
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "bastion",
        .applicationVersion = 1,
        .pEngineName = "bastion",
        .engineVersion = 1,
        .apiVersion = loader_version >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : VK_API_VERSION_1_2,
    };
    const char *layers[1], *exts[2];
    uint32_t n_layers = 0, n_exts = 0;
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_debug_message,
        .pUserData = c,
    };
    const char *want = secure_getenv("BASTION_VULKAN_VALIDATION");
    bool validation = want && strcmp(want, "1") == 0, debug_utils = false, sync = false;
    if (validation) {
        if (!has_layer(VALIDATION_LAYER)) {
            vkb_host->log(BST_LOG_WARN, "vulkan: BASTION_VULKAN_VALIDATION=1 but %s is not "
                                        "installed (Debian: vulkan-validationlayers)",
                          VALIDATION_LAYER);
            validation = false;
        } else {
            layers[n_layers++] = VALIDATION_LAYER;
            debug_utils =
                has_instance_extension(VALIDATION_LAYER, VK_EXT_DEBUG_UTILS_EXTENSION_NAME) ||
                has_instance_extension(NULL, VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
            if (debug_utils)
                exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
            sync = has_instance_extension(VALIDATION_LAYER,
                                          VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
            if (sync)
                exts[n_exts++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
        }
    }
    /* Synchronization validation too: it checks the copies, fills and indirect reads around
     * the dispatches (shader accesses through device addresses are beyond what it tracks). */
    VkValidationFeatureEnableEXT enables[1] = {
        VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
    VkValidationFeaturesEXT features = {
        .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
        .pNext = debug_utils ? &dbg : NULL,
        .enabledValidationFeatureCount = 1,
        .pEnabledValidationFeatures = enables,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = sync ? (const void *)&features : debug_utils ? (const void *)&dbg : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = n_layers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = n_exts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &c->instance);
    if (r != VK_SUCCESS) {
        c->instance = VK_NULL_HANDLE;
        return r;
    }
    if (debug_utils) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(c->instance, "vkCreateDebugUtilsMessengerEXT");
        if (!create || create(c->instance, &dbg, NULL, &c->messenger) != VK_SUCCESS)
            c->messenger = VK_NULL_HANDLE;
    }
    if (validation)
        vkb_host->log(BST_LOG_INFO, "vulkan: validation layer enabled (%s%s)%s", VALIDATION_LAYER,
                      sync ? ", synchronization validation" : "",
                      c->messenger ? ", errors reported through the log" : ", no messenger");
    return VK_SUCCESS;
}

/* --- driver libraries --------------------------------------------------------------------- */

/* The Vulkan loader dlopens the drivers (ICDs) and layers when an instance is created and
 * dlcloses them when it is destroyed. Driver stacks do not survive being unloaded and loaded
 * again (LLVM, Mesa's globals), and what they keep for the process' lifetime becomes an
 * unreachable "leak" once their code is unmapped. So, as the host never unloads a plugin whose
 * device came up, the plugin never lets the loader unload the libraries it brought in: every
 * object that appeared while the instance was created is pinned with RTLD_NODELETE. */
typedef struct lib_list {
    char **names;
    size_t n, cap;
    bool failed;
} lib_list;

static int collect_lib(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    lib_list *l = arg;
    if (!info->dlpi_name || !info->dlpi_name[0] || l->failed)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **nn = vkb_host->alloc(cap * sizeof *nn, 16);
        if (!nn) {
            l->failed = true;
            return 0;
        }
        if (l->n)
            memcpy(nn, l->names, l->n * sizeof *nn);
        vkb_host->free(l->names);
        l->names = nn;
        l->cap = cap;
    }
    size_t len = strlen(info->dlpi_name) + 1;
    char *copy = vkb_host->alloc(len, 1);
    if (!copy) {
        l->failed = true;
        return 0;
    }
    memcpy(copy, info->dlpi_name, len);
    l->names[l->n++] = copy;
    return 0;
}

static void lib_list_free(lib_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        vkb_host->free(l->names[i]);
    vkb_host->free(l->names);
    memset(l, 0, sizeof *l);
}

static bool lib_listed(const lib_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

static void pin_new_libraries(const lib_list *before)
{
    lib_list now = {0};
    dl_iterate_phdr(collect_lib, &now);
    for (size_t i = 0; i < now.n; i++) {
        if (lib_listed(before, now.names[i]))
            continue;
        /* NOLOAD: only raises the flags of what is already there; the handle is never closed. */
        if (dlopen(now.names[i], RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE))
            vkb_host->log(BST_LOG_DEBUG, "vulkan: keeping %s loaded", now.names[i]);
    }
    lib_list_free(&now);
}

/* --- physical devices ---------------------------------------------------------------------- */

static const char *vendor_name(uint32_t id)
{
    switch (id) {
    case 0x1002: return "AMD";
    case 0x1010: return "ImgTec";
    case 0x10DE: return "NVIDIA";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x8086: return "Intel";
    case 0x106B: return "Apple";
    case 0x1AE0: return "Google";
    case 0x10005: return "Mesa";
    default: return NULL;
    }
}

/* Appends src to the string in dst[cap], truncating. */
static void append(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(dst);
    if (len + 1 >= cap)
        return;
    size_t n = strnlen(src, cap - len - 1);
    memcpy(dst + len, src, n);
    dst[len + n] = '\0';
}

/* Describes pd when it meets the backend's requirements; false (with a debug log) otherwise. */
static bool describe(VkPhysicalDevice pd, vkb_phys *out)
{
    VkPhysicalDeviceProperties p0;
    vkGetPhysicalDeviceProperties(pd, &p0);
    if (p0.apiVersion < VK_API_VERSION_1_2) {
        vkb_host->log(BST_LOG_INFO, "vulkan: skipping %s: Vulkan %u.%u (1.2 needed)",
                      p0.deviceName, VK_API_VERSION_MAJOR(p0.apiVersion),
                      VK_API_VERSION_MINOR(p0.apiVersion));
        return false;
    }
    VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceVulkan11Properties p11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_PROPERTIES,
                                              .pNext = &drv};
    VkPhysicalDeviceMaintenance4Properties m4 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES,
                                                 .pNext = &p11};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = p0.apiVersion >= VK_API_VERSION_1_3 ? (void *)&m4 : (void *)&p11};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceProperties *p = &p2.properties;

    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = &f11};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f12};
    vkGetPhysicalDeviceFeatures2(pd, &f2);
    if (!f12.bufferDeviceAddress || !f12.timelineSemaphore) {
        vkb_host->log(BST_LOG_INFO, "vulkan: skipping %s: it lacks %s", p->deviceName,
                      !f12.bufferDeviceAddress ? "bufferDeviceAddress" : "timelineSemaphore");
        return false;
    }
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties qf[64];
    if (nq > 64)
        nq = 64;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    bool compute = false;
    for (uint32_t i = 0; i < nq; i++)
        compute = compute || (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT);
    if (!compute) {
        vkb_host->log(BST_LOG_INFO, "vulkan: skipping %s: no compute queue", p->deviceName);
        return false;
    }
    if (p->limits.maxPushConstantsSize < sizeof(vkb_push) ||
        p->limits.maxComputeWorkGroupInvocations < 128 ||
        p->limits.maxComputeSharedMemorySize < 16384) {
        vkb_host->log(BST_LOG_INFO, "vulkan: skipping %s: compute limits below the minimum",
                      p->deviceName);
        return false;
    }

    memset(out, 0, sizeof *out);
    out->handle = pd;
    out->api_version = p->apiVersion;
    out->subgroup_size = p11.subgroupSize;
    if (f11.storageBuffer16BitAccess && f12.storageBuffer8BitAccess)
        out->variants |= VKB_VAR_S16;
    if ((p11.subgroupSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
        (p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
        (p11.subgroupSupportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT))
        out->variants |= VKB_VAR_SG;

    bst_device_info *info = &out->info;
    info->struct_size = (uint32_t)sizeof *info;
    switch (p->deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU: info->kind = BST_DEVICE_CPU; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: info->kind = BST_DEVICE_GPU; break;
    default: info->kind = BST_DEVICE_ACCEL; break;
    }
    info->name[0] = '\0';
    append(info->name, sizeof info->name, p->deviceName);
    const char *vn = vendor_name(p->vendorID);
    if (vn)
        snprintf(info->vendor, sizeof info->vendor, "%s", vn);
    else
        snprintf(info->vendor, sizeof info->vendor, "0x%04x", p->vendorID);
    /* Driver name and info ("llvmpipe", "Mesa 22.3.6 (LLVM 15.0.6)"), then the raw number
     * decoded the way its vendor packs it. */
    char ver[32];
    uint32_t dv = p->driverVersion;
    if (p->vendorID == 0x10DE)
        snprintf(ver, sizeof ver, "%u.%u.%u.%u", dv >> 22, (dv >> 14) & 0xFFu, (dv >> 6) & 0xFFu,
                 dv & 0x3Fu);
    else
        snprintf(ver, sizeof ver, "%u.%u.%u", VK_API_VERSION_MAJOR(dv), VK_API_VERSION_MINOR(dv),
                 VK_API_VERSION_PATCH(dv));
    info->driver_version[0] = '\0';
    if (drv.driverInfo[0]) {
        append(info->driver_version, sizeof info->driver_version, drv.driverInfo);
        append(info->driver_version, sizeof info->driver_version, " ");
    }
    append(info->driver_version, sizeof info->driver_version, "v");
    append(info->driver_version, sizeof info->driver_version, ver);

    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    uint64_t local = 0, any = 0;
    for (uint32_t i = 0; i < mp.memoryHeapCount; i++) {
        any += mp.memoryHeaps[i].size;
        if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            local += mp.memoryHeaps[i].size;
    }
    info->memory_bytes = local ? local : any;
    uint64_t max_alloc = p11.maxMemoryAllocationSize;
    if (p->apiVersion >= VK_API_VERSION_1_3 && m4.maxBufferSize && m4.maxBufferSize < max_alloc)
        max_alloc = m4.maxBufferSize;
    info->max_alloc_bytes = max_alloc;
    /* Shaders address inside one tensor with 32-bit byte offsets. */
    uint64_t tensor_max = UINT64_C(0xFFFFFFF0);
    info->max_binding_bytes = max_alloc < tensor_max ? max_alloc : tensor_max;
    info->unified_memory = p->deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ||
                           p->deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
    /* lavapipe and friends run their own thread pool sized at start-up. */
    info->self_threaded = p->deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;

    uint64_t h = BSTC_FNV_SEED;
    h = bstc_fnv1a(h, p->pipelineCacheUUID, VK_UUID_SIZE);
    h = bstc_fnv1a(h, &p->driverVersion, sizeof p->driverVersion);
    h = bstc_fnv1a(h, &p->deviceID, sizeof p->deviceID);
    h = bstc_fnv1a(h, &p->vendorID, sizeof p->vendorID);
    info->fingerprint = h;
    return true;
}

static void enumerate_physical(vkb_ctx *c)
{
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(c->instance, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        if (r != VK_SUCCESS)
            vkb_host->log(BST_LOG_INFO, "vulkan: vkEnumeratePhysicalDevices: %s",
                          vkb_result_name(r));
        return;
    }
    VkPhysicalDevice *pds = vkb_host->alloc(n * sizeof *pds, 16);
    c->phys = vkb_host->alloc(n * sizeof *c->phys, 16);
    if (!pds || !c->phys) {
        vkb_host->free(pds);
        vkb_host->free(c->phys);
        c->phys = NULL;
        return;
    }
    r = vkEnumeratePhysicalDevices(c->instance, &n, pds);
    if (r == VK_SUCCESS || r == VK_INCOMPLETE)
        for (uint32_t i = 0; i < n; i++)
            if (describe(pds[i], &c->phys[c->n_phys]))
                c->n_phys++;
    vkb_host->free(pds);
}

/* --- api table entries --------------------------------------------------------------------- */

static void vkb_destroy(void *ctx)
{
    vkb_ctx *c = ctx;
    if (!c || c->magic != VKB_MAGIC_CTX)
        return;
    c->magic = 0;
    if (c->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(c->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy)
            destroy(c->instance, c->messenger, NULL);
    }
    uint32_t errors = atomic_load(&c->validation_errors);
    if (errors)
        vkb_host->log(BST_LOG_ERROR, "vulkan: %u validation error(s) in this instance's life",
                      errors);
    if (c->instance)
        vkDestroyInstance(c->instance, NULL);
    vkb_host->free(c->phys);
    vkb_host->free(c);
}

static bst_status vkb_enumerate(void *ctx, bst_device_info *out_infos, size_t stride,
                                uint32_t capacity, uint32_t *out_count)
{
    vkb_ctx *c = ctx;
    if (!c || c->magic != VKB_MAGIC_CTX) {
        vkb_host->set_error("vulkan: enumerate: bad argument");
        return BST_ERR_INVALID_ARG;
    }
    return bstc_enumerate_out(&vkb_plugin, out_infos, stride, capacity, out_count,
                              c->n_phys ? &c->phys[0].info : NULL, sizeof c->phys[0], c->n_phys);
}

BST_BACKEND_ENTRY
{
    uint32_t host_struct_size = 0;
    bst_status st = bstc_entry_begin(&vkb_plugin, host, host_abi, out, 0, &host_struct_size);
    if (st != BST_OK)
        return st;
    vkb_host = host;
    vkb_ctx *c = bstc_alloc_zero(&vkb_plugin, sizeof *c, "entry");
    if (!c)
        return BST_ERR_OUT_OF_MEMORY;
    c->magic = VKB_MAGIC_CTX;
    atomic_init(&c->validation_errors, 0);
    lib_list before = {0};
    dl_iterate_phdr(collect_lib, &before);
    VkResult r = create_instance(c);
    if (r == VK_SUCCESS)
        enumerate_physical(c);
    else
        host->log(BST_LOG_INFO, "vulkan: no instance (%s): no devices", vkb_result_name(r));
    if (!before.failed)
        pin_new_libraries(&before);
    lib_list_free(&before);

    const bst_backend_api api = {
        .name = VKB_NAME,
        .version = VKB_VERSION,
        .ctx = c,
        .destroy = vkb_destroy,
        .enumerate = vkb_enumerate,
        .device_open = vkb_device_open,
        .device_close = vkb_device_close,
        .set_num_threads = NULL, /* lavapipe sizes its pool from LP_NUM_THREADS at start-up */
        .query = vkb_query,
        .buffer_alloc = vkb_buffer_alloc,
        .buffer_free = vkb_buffer_free,
        .buffer_write = vkb_buffer_write,
        .buffer_read = vkb_buffer_read,
        .buffer_copy = vkb_buffer_copy,
        .buffer_map = vkb_buffer_map,
        .prepare_weight = NULL, /* the host's buffer_alloc + buffer_write is what we would do */
        .compile = vkb_compile,
        .executable_free = vkb_executable_free,
        .execute = vkb_execute,
        .last_execute_ns = vkb_last_execute_ns,
        /* Version 2's events: written only when the host speaks it and has room for them. */
        .event_create = vkb_event_create,
        .event_destroy = vkb_event_destroy,
        .execute_async = vkb_execute_async,
        .event_wait = vkb_event_wait,
    };
    bstc_entry_publish(out, host_struct_size, host_abi, &api);
    return BST_OK;
}
