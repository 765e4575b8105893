/*
 * Tests for the CPU backend plugin, loaded as the runtime loads it (cpu_plugin.h). Covers ABI
 * negotiation, the device, buffers, query, compile/execute error paths (bad ids, out-of-bounds
 * descriptors, symbolic dims, injected faults), and every primitive op on small inputs whose
 * results are computed by hand here. The plugin under other hosts is test_cpu_hosts; the
 * all-ops/all-dtypes comparison across backends is test_backend_ops.
 */
#include "cpu_plugin.h"
#include "graph/quant.h"
#include "runtime/runtime.h"

#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- entry, device, buffers --- */

static void test_abi_negotiation(void)
{
    NEED_PLUGIN();
    bst_backend_api a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    CU_ASSERT_EQUAL(cpu_entry(bsti_host_api(), 0, &a), BST_ERR_ABI);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "ABI") != NULL);
    /* A newer host gets the plugin's newest version. */
    CU_ASSERT_EQUAL_FATAL(cpu_entry(bsti_host_api(), BST_ABI_VERSION + 7, &a), BST_OK);
    CU_ASSERT_EQUAL(a.abi_version, BST_ABI_VERSION);
    CU_ASSERT_STRING_EQUAL(a.name, "cpu");
    CU_ASSERT_PTR_NOT_NULL(a.execute);
    CU_ASSERT_PTR_NULL(a.set_num_threads);
    a.destroy(a.ctx);
    /* A table smaller than what the plugin fills is refused. */
    memset(&a, 0, sizeof a);
    a.struct_size = offsetof(bst_backend_api, compile);
    CU_ASSERT_EQUAL(cpu_entry(bsti_host_api(), BST_ABI_VERSION, &a), BST_ERR_ABI);
    CU_ASSERT_PTR_NULL(a.ctx);
    /* So is a host table too small to be a version-1 table. */
    bst_host_api small = *bsti_host_api();
    small.struct_size = offsetof(bst_host_api, quantize);
    a.struct_size = sizeof a;
    CU_ASSERT_EQUAL(cpu_entry(&small, BST_ABI_VERSION, &a), BST_ERR_ABI);
}

static void test_device(void)
{
    NEED_PLUGIN();
    uint32_t count = 0;
    CU_ASSERT_EQUAL_FATAL(cpu_api.enumerate(cpu_api.ctx, NULL, 0, 0, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    bst_device_info info[2];
    memset(info, 0, sizeof info);
    info[0].struct_size = info[1].struct_size = sizeof info[0];
    CU_ASSERT_EQUAL_FATAL(cpu_api.enumerate(cpu_api.ctx, info, sizeof info[0], 2, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    CU_ASSERT_EQUAL(info[0].kind, BST_DEVICE_CPU);
    CU_ASSERT_TRUE(strlen(info[0].name) > 0);
    CU_ASSERT_TRUE(info[0].memory_bytes > 0);
    CU_ASSERT_TRUE(info[0].unified_memory);
    CU_ASSERT_FALSE(info[0].self_threaded);
    CU_ASSERT_NOT_EQUAL(info[0].fingerprint, 0);
    bst_device_info again;
    memset(&again, 0, sizeof again);
    again.struct_size = sizeof again;
    CU_ASSERT_EQUAL(cpu_api.enumerate(cpu_api.ctx, &again, sizeof again, 1, &count), BST_OK);
    CU_ASSERT_EQUAL(again.fingerprint, info[0].fingerprint);
    CU_ASSERT_EQUAL(cpu_api.enumerate(cpu_api.ctx, info, 8, 1, &count), BST_ERR_ABI);
    void *d2 = NULL;
    CU_ASSERT_EQUAL(cpu_api.device_open(cpu_api.ctx, 1, &d2), BST_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NULL(d2);
}

static void test_buffers(void)
{
    NEED_PLUGIN();
    void *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, 100, &a), BST_OK);
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, 100, &b), BST_OK);
    void *p = NULL;
    CU_ASSERT_EQUAL(cpu_api.buffer_map(cpu_dev, a, &p), BST_OK);
    CU_ASSERT_EQUAL((uintptr_t)p % 64, 0);
    uint8_t src[100], dst[100];
    for (int i = 0; i < 100; i++)
        src[i] = (uint8_t)(i * 7);
    CU_ASSERT_EQUAL(cpu_api.buffer_write(cpu_dev, a, 0, src, 100), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.buffer_copy(cpu_dev, b, 10, a, 20, 50), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, b, 10, dst, 50), BST_OK);
    CU_ASSERT_EQUAL(memcmp(dst, src + 20, 50), 0);
    CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, a, 0, dst, 100), BST_OK);
    CU_ASSERT_EQUAL(memcmp(dst, src, 100), 0);
    CU_ASSERT_EQUAL(cpu_api.buffer_write(cpu_dev, a, 60, src, 41), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, a, UINT64_MAX, dst, 2), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(cpu_api.buffer_copy(cpu_dev, b, 90, a, 0, 20), BST_ERR_INVALID_ARG);
    int not_a_buffer = 5;
    CU_ASSERT_EQUAL(cpu_api.buffer_read(cpu_dev, &not_a_buffer, 0, dst, 1), BST_ERR_INVALID_ARG);
    cpu_api.buffer_free(cpu_dev, a);
    cpu_api.buffer_free(cpu_dev, b);

    /* Injected allocation failure comes back with its status and a message. */
    bsti_fault_set("alloc", BST_ERR_DEVICE_OOM, 1);
    void *c = NULL;
    CU_ASSERT_EQUAL(cpu_api.buffer_alloc(cpu_dev, 16, &c), BST_ERR_DEVICE_OOM);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "alloc") != NULL);
    CU_ASSERT_EQUAL(cpu_api.buffer_alloc(cpu_dev, 16, &c), BST_OK); /* one-shot */
    cpu_api.buffer_free(cpu_dev, c);

    /* Imported weights: no copy, read-only. */
    static const float w[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    bst_tensor_desc d = mk(BST_DTYPE_F32, 1, shape);
    uint64_t bytes = 0;
    uint32_t layout = 99;
    CU_ASSERT_EQUAL_FATAL(cpu_api.prepare_weight(cpu_dev, &d, w, sizeof w, &c, &bytes, &layout),
                          BST_OK);
    CU_ASSERT_EQUAL(bytes, sizeof w);
    CU_ASSERT_EQUAL(layout, BST_LAYOUT_NATIVE);
    CU_ASSERT_EQUAL(cpu_api.buffer_map(cpu_dev, c, &p), BST_OK);
    CU_ASSERT_PTR_EQUAL(p, w);
    CU_ASSERT_EQUAL(cpu_api.buffer_write(cpu_dev, c, 0, src, 4), BST_ERR_INVALID_ARG);
    cpu_api.buffer_free(cpu_dev, c);
}

/* A quantized matrix gets an interleaved copy (backends/cpu/cpu_packed.h) on machines whose
 * kernels read one, and then costs that copy's bytes; a descriptor whose rows do not fit the
 * given bytes is imported as it is, without reading past them (ASan checks the "past"). */
static void test_prepare_weight_packing(void)
{
    NEED_PLUGIN();
    enum { ROWS = 17, K = 64, NATIVE = ROWS * (K / 32) * 20 }; /* q4_1: 20-byte blocks */
    static uint8_t w[NATIVE];
    for (size_t i = 0; i < sizeof w; i++)
        w[i] = (uint8_t)(i * 13 + 1);
    int64_t shape[2] = {ROWS, K};
    bst_tensor_desc d = mk(BST_DTYPE_Q4_1, 2, shape);
    void *c = NULL;
    uint64_t bytes = 0;
    uint32_t layout = 99;
    CU_ASSERT_EQUAL_FATAL(cpu_api.prepare_weight(cpu_dev, &d, w, sizeof w, &c, &bytes, &layout),
                          BST_OK);
    /* two 16-row groups of two tiles (256 quant bytes + 16 scales + 16 minimums each) */
    CU_ASSERT_TRUE(bytes == NATIVE || bytes == 2 * 2 * (256 + 64));
    printf(" [%s: %llu bytes] ", bytes == NATIVE ? "not packed" : "packed",
           (unsigned long long)bytes);
    CU_ASSERT_EQUAL(layout, BST_LAYOUT_NATIVE);
    void *p = NULL;
    CU_ASSERT_EQUAL(cpu_api.buffer_map(cpu_dev, c, &p), BST_OK);
    CU_ASSERT_PTR_EQUAL(p, w); /* the native bytes stay the buffer's contents */
    cpu_api.buffer_free(cpu_dev, c);

    c = NULL;
    CU_ASSERT_EQUAL_FATAL(cpu_api.prepare_weight(cpu_dev, &d, w, sizeof w - 1, &c, &bytes, &layout),
                          BST_OK);
    CU_ASSERT_EQUAL(bytes, sizeof w - 1);
    cpu_api.buffer_free(cpu_dev, c);

    /* Packed copies share 32 MiB slabs (cpu_packed_slab.c); one larger than a slab gets its own
     * mapping. Weights freed out of order and slabs reused: ASan sees any access to memory a
     * freed slab no longer maps. */
    enum { BIG_ROWS = 36864, BIG_K = 1024 }; /* q8_0: 40 MB */
    const size_t big_bytes = (size_t)BIG_ROWS * (BIG_K / 32) * 34;
    uint8_t *big = calloc(big_bytes, 1);
    CU_ASSERT_FATAL(big != NULL);
    int64_t big_shape[2] = {BIG_ROWS, BIG_K};
    bst_tensor_desc bd = mk(BST_DTYPE_Q8_0, 2, big_shape);
    void *bufs[6] = {NULL};
    for (int i = 0; i < 6; i++) {
        const bool is_big = i == 2;
        CU_ASSERT_EQUAL_FATAL(cpu_api.prepare_weight(cpu_dev, is_big ? &bd : &d,
                                                     is_big ? (void *)big : w,
                                                     is_big ? big_bytes : sizeof w, &bufs[i],
                                                     &bytes, &layout),
                              BST_OK);
    }
    cpu_api.buffer_free(cpu_dev, bufs[2]);
    cpu_api.buffer_free(cpu_dev, bufs[0]);
    cpu_api.buffer_free(cpu_dev, bufs[4]);
    CU_ASSERT_EQUAL_FATAL(cpu_api.prepare_weight(cpu_dev, &bd, big, big_bytes, &bufs[0], &bytes,
                                                 &layout),
                          BST_OK);
    for (int i = 0; i < 6; i++)
        if (i != 2 && i != 4)
            cpu_api.buffer_free(cpu_dev, bufs[i]);
    free(big);
}

/* --- query --- */

static bst_status query_one(bst_op op, bst_dtype a, bst_dtype b, uint32_t *out_count,
                            bst_kernel_variant *v)
{
    int64_t s2[2] = {2, 32};
    bst_tensor_desc ta = mk(a, 2, s2), tb = mk(b, 2, s2), to = mk(BST_DTYPE_F32, 2, s2);
    const bst_tensor_desc *ins[2] = {&ta, &tb};
    bst_node_desc nd = {.struct_size = sizeof nd, .op = op, .n_inputs = 2, .inputs = ins,
                        .output = &to};
    memset(v, 0, sizeof *v);
    v->struct_size = sizeof *v;
    return cpu_api.query(cpu_dev, &nd, v, sizeof *v, 1, out_count);
}

static void test_query(void)
{
    NEED_PLUGIN();
    uint32_t n = 9;
    bst_kernel_variant v1, v2, v3;
    CU_ASSERT_EQUAL(query_one(BST_OP_ADD, BST_DTYPE_F32, BST_DTYPE_F32, &n, &v1), BST_OK);
    CU_ASSERT_EQUAL(n, 2); /* add_f32 (cpu_fast_prims.c), then ref */
    CU_ASSERT_STRING_EQUAL(v1.name, "add_f32");
    CU_ASSERT_NOT_EQUAL(v1.source_hash, 0);
    CU_ASSERT_EQUAL(query_one(BST_OP_ADD, BST_DTYPE_F32, BST_DTYPE_F32, &n, &v2), BST_OK);
    CU_ASSERT_EQUAL(v1.source_hash, v2.source_hash); /* stable */
    CU_ASSERT_EQUAL(query_one(BST_OP_ADD, BST_DTYPE_F32, BST_DTYPE_Q8_0, &n, &v3), BST_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_NOT_EQUAL(v1.source_hash, v3.source_hash); /* per dtype combination */
    /* Not ours to run: high-level and source ops, unknown ids; not an error. */
    static const uint32_t not_run[] = {BST_OP_ATTENTION, BST_OP_FFN_SWIGLU, BST_OP_RMS_NORM_MUL,
                                       BST_OP_INPUT, BST_OP_WEIGHT, BST_OP_NONE, 999};
    for (size_t i = 0; i < sizeof not_run / sizeof not_run[0]; i++) {
        n = 9;
        CU_ASSERT_EQUAL(query_one((bst_op)not_run[i], BST_DTYPE_F32, BST_DTYPE_F32, &n, &v1),
                        BST_OK);
        CU_ASSERT_EQUAL(n, 0);
    }
    /* Shapes that do not fit: unsupported, not an error. */
    n = 9;
    CU_ASSERT_EQUAL(query_one(BST_OP_MATMUL, BST_DTYPE_F32, BST_DTYPE_I32, &n, &v1), BST_OK);
    CU_ASSERT_EQUAL(n, 0);
}

/* Whether BASTION_CPU_ISA, when set, lets the plugin use its feature `name` (as the plugin's ISA
 * string spells it): listed, or needed by a listed one (avx512vnni needs avx512 and avx2). */
static bool cap_allows(const char *name)
{
    const char *cap = getenv("BASTION_CPU_ISA");
    if (!cap || !cap[0])
        return true;
    static const struct {
        const char *name, *by;
    } needed[] = {{"avx2", "avx2 avx512 avx512vnni avxvnni avx512bf16"},
                  {"avx512", "avx512 avx512vnni avx512bf16"}};
    char list[256];
    snprintf(list, sizeof list, " %s ", cap);
    for (char *c = list; *c; c++)
        *c = *c == ',' ? ' ' : *c;
    char by[96] = "";
    snprintf(by, sizeof by, "%s", name);
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++)
        if (strcmp(needed[i].name, name) == 0)
            snprintf(by, sizeof by, "%s", needed[i].by);
    for (char *tok = strtok(by, " "); tok; tok = strtok(NULL, " ")) {
        char pat[32];
        snprintf(pat, sizeof pat, " %s ", tok);
        if (strstr(list, pat))
            return true;
    }
    return false;
}

/* Whether /proc/cpuinfo's flags line (the kernel's view, which already drops features whose
 * register state the OS does not enable) lists every flag in `want`. */
static bool cpuinfo_has(const char *const *want, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    static char line[8192];
    bool found = false, all = false;
    while (!found && fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0)
            found = true;
    fclose(f);
    if (!found)
        return false;
    all = true;
    for (size_t i = 0; i < n && all; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, " %s", want[i]);
        const char *p = line;
        bool hit = false;
        while ((p = strstr(p, pat)) != NULL && !hit) {
            char end = p[strlen(pat)];
            hit = end == ' ' || end == '\n' || end == '\0';
            p++;
        }
        all = hit;
    }
    return all;
}

static uint32_t matmul_variants(void *device, bst_dtype wt, bst_kernel_variant *v, uint32_t cap)
{
    int64_t sa[2] = {3, 64}, sw[2] = {5, 64}, so[2] = {3, 5};
    bst_tensor_desc ta = mk(BST_DTYPE_F32, 2, sa), tw = mk(wt, 2, sw), to = mk(BST_DTYPE_F32, 2, so);
    const bst_tensor_desc *ins[2] = {&ta, &tw};
    bst_node_desc nd = {.struct_size = sizeof nd, .op = BST_OP_MATMUL, .n_inputs = 2,
                        .inputs = ins, .output = &to};
    memset(v, 0, sizeof *v * cap);
    for (uint32_t i = 0; i < cap; i++)
        v[i].struct_size = sizeof v[i];
    uint32_t n = 0;
    CU_ASSERT_EQUAL(cpu_api.query(device, &nd, v, sizeof *v, cap, &n), BST_OK);
    return n;
}

static bool offers(const bst_kernel_variant *v, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return true;
    return false;
}

/* The ISA the plugin detects (its debug line on device open) agrees with /proc/cpuinfo for the
 * extensions kernels are chosen by, including AVX-512 BF16, AVX-VNNI and AMX (the OS enabling
 * the state is the plugin's extra condition, so a flag the plugin reports must be in cpuinfo). */
static char isa_line[512];
static void capture_isa(void *user, bst_log_level level, const char *message)
{
    (void)user;
    (void)level;
    const char *p = strstr(message, "(ISA: ");
    if (p)
        snprintf(isa_line, sizeof isa_line, " %s ", p + 6);
}

static bool isa_has(const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s ", name);
    return strstr(isa_line, pat) != NULL;
}

static void test_isa_detection(void)
{
    NEED_PLUGIN();
    isa_line[0] = '\0';
    bst_set_log_callback(capture_isa, NULL, BST_LOG_DEBUG);
    void *d2 = NULL;
    CU_ASSERT_EQUAL_FATAL(cpu_api.device_open(cpu_api.ctx, 0, &d2), BST_OK);
    bst_set_log_callback(NULL, NULL, BST_LOG_WARN);
    cpu_api.device_close(d2);
    char *paren = strchr(isa_line, ';');
    if (!paren)
        paren = strchr(isa_line, ')');
    CU_ASSERT_PTR_NOT_NULL_FATAL(paren);
    *paren = ' ';
    paren[1] = '\0';
    static const char *const avx2[] = {"avx2", "fma", "f16c"};
    static const char *const bf16[] = {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"};
    static const char *const avxvnni[] = {"avx2", "fma", "f16c", "avx_vnni"};
    static const char *const amx[] = {"amx_tile", "amx_int8"};
    static const char *const avx512[] = {"avx2", "fma", "f16c", "avx512f", "avx512bw",
                                         "avx512vl"};
    /* cpuinfo lists what both the CPU and the kernel support, as the plugin's checks do. */
    CU_ASSERT_EQUAL(isa_has("avx512"), cpuinfo_has(avx512, 6) && cap_allows("avx512"));
    CU_ASSERT_EQUAL(isa_has("avx512bf16"), cpuinfo_has(bf16, 4) && cap_allows("avx512bf16"));
    CU_ASSERT_EQUAL(isa_has("avxvnni"), cpuinfo_has(avxvnni, 4) && cap_allows("avxvnni"));
    CU_ASSERT_EQUAL(isa_has("avx2"), cpuinfo_has(avx2, 3) && cap_allows("avx2"));
    if (isa_has("amx"))
        CU_ASSERT_TRUE(cpuinfo_has(amx, 2));
}

/* Quantized matmuls get the fast variants this machine can run (checked against /proc/cpuinfo,
 * independently of the plugin's cpuid code), best first, "ref" last: per ISA a packed "gemm_*"
 * variant and a "q8x2dot_*" one; float weights get the gemm variants; other weights only "ref";
 * BASTION_CPU_KERNELS=ref restricts a device opened under it to "ref". */
static void test_kernel_variants(void)
{
    NEED_PLUGIN();
    bst_kernel_variant v[8];
    static const char *const avx2[] = {"avx2", "fma", "f16c"};
    static const char *const vnni[] = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                       "avx512_vnni"};
    const bool has_avx2 = cpuinfo_has(avx2, 3) && cap_allows("avx2"),
               has_vnni = cpuinfo_has(vnni, 7) && cap_allows("avx512vnni");
    const uint32_t per_kind = 1u + has_avx2 + has_vnni; /* gemm (or q8x2dot) variants */
    static const bst_dtype quant[] = {BST_DTYPE_Q4_0, BST_DTYPE_Q4_1, BST_DTYPE_Q8_0};
    for (size_t q = 0; q < 3; q++) {
        uint32_t n = matmul_variants(cpu_dev, quant[q], v, 8);
        CU_ASSERT_EQUAL_FATAL(n, 2 * per_kind + 1);
        CU_ASSERT_STRING_EQUAL(v[n - 1].name, "ref");
        CU_ASSERT_STRING_EQUAL(v[n - 2].name, "q8x2dot_scalar");
        CU_ASSERT_STRING_EQUAL(v[n - 3].name, "gemm_scalar");
        CU_ASSERT_EQUAL(offers(v, n, "q8x2dot_avx2"), has_avx2);
        CU_ASSERT_EQUAL(offers(v, n, "gemm_avx2"), has_avx2);
        CU_ASSERT_EQUAL(offers(v, n, "q8x2dot_avx512vnni"), has_vnni);
        CU_ASSERT_EQUAL(offers(v, n, "gemm_avx512"), has_vnni);
        if (has_vnni)
            CU_ASSERT_STRING_EQUAL(v[0].name, "gemm_avx512");
        for (uint32_t i = 0; i + 1 < n; i++)
            CU_ASSERT_NOT_EQUAL(v[i].source_hash, v[i + 1].source_hash);
    }
    /* bf16 weights also get the vdpbf16ps variant where the CPU has AVX-512 BF16. */
    static const char *const bf16[] = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                       "avx512_bf16"};
    const bool has_bf16 = cpuinfo_has(bf16, 7) && cap_allows("avx512bf16");
    static const bst_dtype plain[] = {BST_DTYPE_F32, BST_DTYPE_F16, BST_DTYPE_BF16};
    for (size_t p = 0; p < 3; p++) {
        const bool is_bf16 = plain[p] == BST_DTYPE_BF16;
        uint32_t n = matmul_variants(cpu_dev, plain[p], v, 8);
        CU_ASSERT_EQUAL_FATAL(n, per_kind + 1 + (is_bf16 && has_bf16));
        CU_ASSERT_STRING_EQUAL(v[n - 2].name, "gemm_scalar");
        CU_ASSERT_FALSE(offers(v, n, "q8x2dot_scalar"));
        CU_ASSERT_EQUAL(offers(v, n, "gemm_bf16dot_avx512"), is_bf16 && has_bf16);
    }
    CU_ASSERT_EQUAL(matmul_variants(cpu_dev, BST_DTYPE_Q5_0, v, 8), 1);
    /* A capacity smaller than the list: the count is still the whole list. */
    CU_ASSERT_EQUAL(matmul_variants(cpu_dev, BST_DTYPE_Q4_1, v, 1), 2 * per_kind + 1);

    CU_ASSERT_EQUAL_FATAL(setenv("BASTION_CPU_KERNELS", "ref", 1), 0);
    void *ref_dev = NULL;
    CU_ASSERT_EQUAL_FATAL(cpu_api.device_open(cpu_api.ctx, 0, &ref_dev), BST_OK);
    unsetenv("BASTION_CPU_KERNELS");
    CU_ASSERT_EQUAL(matmul_variants(ref_dev, BST_DTYPE_Q4_1, v, 8), 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "ref");
    cpu_api.device_close(ref_dev);
}

/* Primitive-op fast variants (cpu_fast_prims.c): offered before "ref" where they apply, never
 * with BASTION_CPU_KERNELS=ref, and a variant index past the list is refused at compile. */
static uint32_t rope_variants(void *device, int64_t D, bst_kernel_variant *v, uint32_t cap)
{
    int64_t sx[3] = {4, 2, D}, sp[1] = {4};
    bst_tensor_desc tx = mk(BST_DTYPE_F32, 3, sx), tp = mk(BST_DTYPE_I32, 1, sp),
                    to = mk(BST_DTYPE_F32, 3, sx);
    bst_attr a0 = bst_attr_int(BST_ATTR_ROPE_MODE, 0),
             a1 = bst_attr_float(BST_ATTR_ROPE_THETA, 10000.0),
             a2 = bst_attr_int(BST_ATTR_ROPE_DIMS, D);
    const bst_attr *ats[3] = {&a0, &a1, &a2};
    const bst_tensor_desc *ins[2] = {&tx, &tp};
    bst_node_desc nd = {.struct_size = sizeof nd, .op = BST_OP_ROPE, .n_inputs = 2,
                        .n_attrs = 3, .inputs = ins, .output = &to, .attrs = ats};
    memset(v, 0, sizeof *v * cap);
    for (uint32_t i = 0; i < cap; i++)
        v[i].struct_size = sizeof v[i];
    uint32_t n = 0;
    CU_ASSERT_EQUAL(cpu_api.query(device, &nd, v, sizeof *v, cap, &n), BST_OK);
    return n;
}

static void test_prim_variants(void)
{
    NEED_PLUGIN();
    bst_kernel_variant v[4];
    CU_ASSERT_EQUAL_FATAL(rope_variants(cpu_dev, 64, v, 4), 2);
    CU_ASSERT_STRING_EQUAL(v[0].name, "rope_cached");
    CU_ASSERT_STRING_EQUAL(v[1].name, "ref");
    CU_ASSERT_NOT_EQUAL(v[0].source_hash, v[1].source_hash);
    /* More rotated pairs than rope_cached keeps on its stack: the reference only. */
    CU_ASSERT_EQUAL(rope_variants(cpu_dev, 1024, v, 4), 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "ref");
    /* add / mul of f32 rows: add_f32 / mul_f32 first; another dtype: the reference only. */
    uint32_t count = 0;
    CU_ASSERT_EQUAL(query_one(BST_OP_MUL, BST_DTYPE_F32, BST_DTYPE_F32, &count, &v[0]), BST_OK);
    CU_ASSERT_EQUAL(count, 2);
    CU_ASSERT_STRING_EQUAL(v[0].name, "mul_f32");
    CU_ASSERT_EQUAL(query_one(BST_OP_ADD, BST_DTYPE_F32, BST_DTYPE_F16, &count, &v[0]), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "ref");

    int64_t sx[3] = {2, 1, 6}, sp[1] = {2};
    one_node n = {.op = BST_OP_ROPE, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 3, sx), mk(BST_DTYPE_I32, 1, sp)},
                  .out = mk(BST_DTYPE_F32, 3, sx), .n_attrs = 3,
                  .attrs = {bst_attr_int(BST_ATTR_ROPE_MODE, 0),
                            bst_attr_float(BST_ATTR_ROPE_THETA, 10000.0),
                            bst_attr_int(BST_ATTR_ROPE_DIMS, 4)}};
    const bst_tensor_desc *ins[2] = {&n.in[0], &n.in[1]};
    const bst_attr *ats[3] = {&n.attrs[0], &n.attrs[1], &n.attrs[2]};
    n.in[1].binding = 1;
    n.out.binding = 2;
    bst_node_desc nd = {.struct_size = sizeof nd, .op = BST_OP_ROPE, .n_inputs = 2,
                        .n_attrs = 3, .inputs = ins, .output = &n.out, .attrs = ats,
                        .variant = 2};
    const bst_node_desc *nodes[1] = {&nd};
    bst_partition_desc p = {.struct_size = sizeof p, .n_nodes = 1, .nodes = nodes,
                            .n_bindings = 3};
    void *exe = NULL;
    CU_ASSERT_EQUAL(cpu_api.compile(cpu_dev, &p, &exe), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(exe);

    CU_ASSERT_EQUAL_FATAL(setenv("BASTION_CPU_KERNELS", "ref", 1), 0);
    void *ref_dev = NULL;
    CU_ASSERT_EQUAL_FATAL(cpu_api.device_open(cpu_api.ctx, 0, &ref_dev), BST_OK);
    unsetenv("BASTION_CPU_KERNELS");
    CU_ASSERT_EQUAL(rope_variants(ref_dev, 64, v, 4), 1);
    CU_ASSERT_STRING_EQUAL(v[0].name, "ref");
    cpu_api.device_close(ref_dev);
}

/* --- ops --- */

static void test_add_mul_broadcast(void)
{
    NEED_PLUGIN();
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[2] = {2, 1};
    float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30}, c[2] = {2, -1}, out[6];
    one_node n = {.op = BST_OP_ADD, .n_in = 2, .in = {mk(BST_DTYPE_F32, 2, sa), mk(BST_DTYPE_F32, 1, sb)},
                  .data = {a, b}, .out = mk(BST_DTYPE_F32, 2, sa)};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    float want_add[6] = {11, 22, 33, 14, 25, 36};
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(out[i], want_add[i]);
    n.op = BST_OP_MUL;
    n.in[1] = mk(BST_DTYPE_F32, 2, sc);
    n.data[1] = c;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    float want_mul[6] = {2, 4, 6, -4, -5, -6};
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(out[i], want_mul[i]);
    /* b in f16: 1.5 and -0.25 are exact */
    uint16_t h[2] = {bsti_f32_to_f16(1.5f), bsti_f32_to_f16(-0.25f)};
    n.in[1] = mk(BST_DTYPE_F16, 2, sc);
    n.data[1] = h;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    CU_ASSERT_EQUAL(out[0], 1.5f);
    CU_ASSERT_EQUAL(out[5], -1.5f);
    /* a dim of b that neither matches nor is 1 */
    int64_t bad[1] = {2};
    n.in[1] = mk(BST_DTYPE_F32, 1, bad);
    n.data[1] = c;
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_SHAPE);
    CU_ASSERT_PTR_NULL(exe);
}

/* rms_norm_mul's two variants: fused_rms_norm_mul_f32 (contiguous f32 rows; anything else falls
 * back to the generic kernel inside it) and fused_rms_norm_mul, each against a double-precision
 * norm: rows of 37 (a 4-float vector tail), padded rows, an f16 weight. */
static void test_rms_norm_mul_variants(void)
{
    NEED_PLUGIN();
    enum { R = 3, E = 37, PAD = 40 };
    static float x[R * PAD], w[E], out[R * PAD];
    static uint16_t wh[E];
    for (int i = 0; i < R * PAD; i++)
        x[i] = (float)sin(0.7 * i) * (float)(1 + i % 5);
    for (int i = 0; i < E; i++) {
        w[i] = (float)(0.5 + 0.25 * cos(0.3 * i));
        wh[i] = bsti_f32_to_f16(w[i]);
        w[i] = bsti_f16_to_f32(wh[i]); /* the same weight in both dtypes */
    }
    const double eps = 1e-5;
    int64_t sx[2] = {R, E}, sw[1] = {E};
    for (int layout = 0; layout < 3; layout++) { /* contiguous, padded rows, f16 weight */
        for (uint32_t variant = 0; variant < 2; variant++) {
            one_node n = {.op = BST_OP_RMS_NORM_MUL, .n_in = 2,
                          .in = {mk(BST_DTYPE_F32, 2, sx),
                                 mk(layout == 2 ? BST_DTYPE_F16 : BST_DTYPE_F32, 1, sw)},
                          .data = {x, layout == 2 ? (const void *)wh : (const void *)w},
                          .out = mk(BST_DTYPE_F32, 2, sx), .n_attrs = 1,
                          .attrs = {bst_attr_float(BST_ATTR_EPS, eps)}, .variant = variant};
            const int64_t row = layout == 1 ? PAD : E;
            if (layout == 1)
                n.in[0].strides[0] = PAD * (int64_t)sizeof(float);
            CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
            for (int r = 0; r < R; r++) {
                double sq = 0.0;
                for (int i = 0; i < E; i++)
                    sq += (double)x[r * row + i] * x[r * row + i];
                const double inv = 1.0 / sqrt(sq / E + eps);
                for (int i = 0; i < E; i++) {
                    const double want = x[r * row + i] * inv * w[i];
                    ASSERT_NEAR(out[r * E + i], want, 1e-6 * (fabs(want) + 1e-3));
                }
            }
        }
    }
    /* The list query offers, and an index past it. */
    one_node n = {.op = BST_OP_RMS_NORM_MUL, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 2, sx), mk(BST_DTYPE_F32, 1, sw)},
                  .out = mk(BST_DTYPE_F32, 2, sx), .n_attrs = 1,
                  .attrs = {bst_attr_float(BST_ATTR_EPS, eps)}, .variant = 2};
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(exe);
}

static void test_unary(void)
{
    NEED_PLUGIN();
    int64_t s[1] = {4};
    float x[4] = {1.0f, -1.0f, 0.0f, 2.0f}, out[4];
    one_node n = {.op = BST_OP_SCALE, .n_in = 1, .in = {mk(BST_DTYPE_F32, 1, s)}, .data = {x},
                  .out = mk(BST_DTYPE_F32, 1, s), .n_attrs = 1,
                  .attrs = {bst_attr_float(BST_ATTR_SCALE, -0.5)}};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    CU_ASSERT_EQUAL(out[0], -0.5f);
    CU_ASSERT_EQUAL(out[3], -1.0f);
    n.op = BST_OP_SILU;
    n.n_attrs = 0;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    ASSERT_NEAR(out[0], 0.7310585786, 1e-6);  /* 1 / (1 + e^-1) */
    ASSERT_NEAR(out[1], -0.2689414214, 1e-6);
    CU_ASSERT_EQUAL(out[2], 0.0f);
    ASSERT_NEAR(out[3], 1.7615941560, 1e-6);
    n.op = BST_OP_GELU;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    ASSERT_NEAR(out[0], 0.8411919906, 1e-6); /* tanh approximation at 1 */
    ASSERT_NEAR(out[1], -0.1588080094, 1e-6);
    CU_ASSERT_EQUAL(out[2], 0.0f);
    ASSERT_NEAR(out[3], 1.9545976400, 1e-6);
}

static void test_matmul(void)
{
    NEED_PLUGIN();
    int64_t sa[2] = {2, 3}, sb[2] = {2, 3}, so[2] = {2, 2};
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, -1, 2, 1, 0}, out[4];
    one_node n = {.op = BST_OP_MATMUL, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 2, sa), mk(BST_DTYPE_F32, 2, sb)}, .data = {a, b},
                  .out = mk(BST_DTYPE_F32, 2, so)};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    CU_ASSERT_EQUAL(out[0], -2.0f); /* 1 - 3 */
    CU_ASSERT_EQUAL(out[1], 4.0f);  /* 2 + 2 */
    CU_ASSERT_EQUAL(out[2], -2.0f); /* 4 - 6 */
    CU_ASSERT_EQUAL(out[3], 13.0f); /* 8 + 5 */

    /* a transposed through strides: a^T of [3,2] data, i.e. a[m][k] = at[k][m]. */
    float at[6] = {1, 4, 2, 5, 3, 6};
    n.in[0].strides[0] = 4;
    n.in[0].strides[1] = 8;
    n.data[0] = at;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    CU_ASSERT_EQUAL(out[0], -2.0f);
    CU_ASSERT_EQUAL(out[3], 13.0f);
}

/* b in q8_0, hand-built: row 0 has d = 0.5, q = j - 16; row 1 has d = 2, q = 1. */
static void test_matmul_quantized_grouped(void)
{
    NEED_PLUGIN();
    uint8_t q[2][34];
    uint16_t d0 = bsti_f32_to_f16(0.5f), d1 = bsti_f32_to_f16(2.0f);
    memcpy(q[0], &d0, 2);
    memcpy(q[1], &d1, 2);
    for (int j = 0; j < 32; j++) {
        q[0][2 + j] = (uint8_t)(int8_t)(j - 16);
        q[1][2 + j] = 1;
    }
    /* a: 4 "heads" of one row each, [4,1,32]; b: 2 heads [2,1,32] -> head h uses b h/2. */
    float a[4][32];
    for (int h = 0; h < 4; h++)
        for (int j = 0; j < 32; j++)
            a[h][j] = (float)(h + 1);
    int64_t sa[3] = {4, 1, 32}, sb[3] = {2, 1, 32}, so[3] = {4, 1, 1};
    float out[4];
    one_node n = {.op = BST_OP_MATMUL, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 3, sa), mk(BST_DTYPE_Q8_0, 3, sb)}, .data = {a, q},
                  .out = mk(BST_DTYPE_F32, 3, so)};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    /* sum_j (j - 16) * 0.5 = -8; sum_j 2 = 64 */
    CU_ASSERT_EQUAL(out[0], 1 * -8.0f);
    CU_ASSERT_EQUAL(out[1], 2 * -8.0f);
    CU_ASSERT_EQUAL(out[2], 3 * 64.0f);
    CU_ASSERT_EQUAL(out[3], 4 * 64.0f);
    /* 3 heads over 2: not a multiple */
    sa[0] = 3;
    so[0] = 3;
    n.in[0] = mk(BST_DTYPE_F32, 3, sa);
    n.out = mk(BST_DTYPE_F32, 3, so);
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_SHAPE);
}

/* A matmul big enough to be split over the pool, against a double-precision loop. */
static void test_matmul_parallel(void)
{
    NEED_PLUGIN();
    enum { M = 7, N = 96, K = 160 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K);
    float *out = malloc(sizeof(float) * M * N);
    uint16_t *bh = malloc(2 * N * K);
    CU_ASSERT_FATAL(a && b && out && bh);
    for (int i = 0; i < M * K; i++)
        a[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    for (int i = 0; i < N * K; i++) {
        b[i] = (float)((i * 53) % 97 - 48) / 64.0f;
        bh[i] = bsti_f32_to_bf16(b[i]); /* exact: multiples of 1/64 below 1 */
    }
    bsti_pool_set_threads(2);
    int64_t sa[2] = {M, K}, sb[2] = {N, K}, so[2] = {M, N};
    one_node n = {.op = BST_OP_MATMUL, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 2, sa), mk(BST_DTYPE_BF16, 2, sb)}, .data = {a, bh},
                  .out = mk(BST_DTYPE_F32, 2, so)};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    unsigned bad = 0;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)a[m * K + k] * b[j * K + k];
            if (fabs(out[m * N + j] - s) > 1e-4)
                bad++;
        }
    CU_ASSERT_EQUAL(bad, 0);
    free(a);
    free(b);
    free(out);
    free(bh);
}

static void test_norms(void)
{
    NEED_PLUGIN();
    int64_t s[2] = {2, 4};
    float x[8] = {1, 2, 3, 4, 0, 0, 0, 0}, out[8];
    one_node n = {.op = BST_OP_RMS_NORM, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)}, .data = {x},
                  .out = mk(BST_DTYPE_F32, 2, s), .n_attrs = 1,
                  .attrs = {bst_attr_float(BST_ATTR_EPS, 1e-5)}};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    double inv = 1.0 / sqrt(7.5 + 1e-5); /* mean of 1, 4, 9, 16 */
    for (int i = 0; i < 4; i++)
        ASSERT_NEAR(out[i], (i + 1) * inv, 1e-6);
    for (int i = 4; i < 8; i++)
        CU_ASSERT_EQUAL(out[i], 0.0f);
    n.op = BST_OP_LAYER_NORM;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    inv = 1.0 / sqrt(1.25 + 1e-5); /* mean 2.5, variance 1.25 */
    for (int i = 0; i < 4; i++)
        ASSERT_NEAR(out[i], (i + 1 - 2.5) * inv, 1e-6);
    n.n_attrs = 0; /* eps is required */
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_INVALID_ARG);
}

static void test_rope(void)
{
    NEED_PLUGIN();
    /* T=2 tokens at positions 1 and 0, H=1, D=6, dims=4, theta 10000:
     * theta_0 = pos, theta_1 = pos * 10000^(-1/2) = pos / 100. */
    int64_t sx[3] = {2, 1, 6}, sp[1] = {2};
    float x[12] = {1, 0, 1, 0, 5, 6, 1, 2, 3, 4, 5, 6}, out[12];
    int32_t pos[2] = {1, 0};
    one_node n = {.op = BST_OP_ROPE, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 3, sx), mk(BST_DTYPE_I32, 1, sp)}, .data = {x, pos},
                  .out = mk(BST_DTYPE_F32, 3, sx), .n_attrs = 3,
                  .attrs = {bst_attr_int(BST_ATTR_ROPE_MODE, 0),
                            bst_attr_float(BST_ATTR_ROPE_THETA, 10000.0),
                            bst_attr_int(BST_ATTR_ROPE_DIMS, 4)}};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    ASSERT_NEAR(out[0], cos(1.0), 1e-6);
    ASSERT_NEAR(out[1], sin(1.0), 1e-6);
    ASSERT_NEAR(out[2], cos(0.01), 1e-6);
    ASSERT_NEAR(out[3], sin(0.01), 1e-6);
    CU_ASSERT_EQUAL(out[4], 5.0f); /* beyond rope_dims: passed through */
    CU_ASSERT_EQUAL(out[5], 6.0f);
    for (int i = 0; i < 6; i++) /* position 0: identity */
        ASSERT_NEAR(out[6 + i], x[6 + i], 1e-7);

    /* neox pairs (i, i + dims/2): x = [1, 1, 0, 0] rotates (x0,x2) by 1 rad, (x1,x3) by 0.01. */
    float y[12] = {1, 1, 0, 0, 5, 6, 0, 0, 0, 0, 0, 0};
    n.data[0] = y;
    n.attrs[0] = bst_attr_int(BST_ATTR_ROPE_MODE, 2);
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    ASSERT_NEAR(out[0], cos(1.0), 1e-6);
    ASSERT_NEAR(out[2], sin(1.0), 1e-6);
    ASSERT_NEAR(out[1], cos(0.01), 1e-6);
    ASSERT_NEAR(out[3], sin(0.01), 1e-6);
    CU_ASSERT_EQUAL(out[5], 6.0f);
    n.attrs[0] = bst_attr_int(BST_ATTR_ROPE_MODE, 1);
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_UNSUPPORTED);
}

/* rope_cached keeps each thread's angles by position, in rows shared by positions equal modulo
 * its capacity (1024 for 64 dims): positions that share a row, a negative one and repeats, run
 * twice (the second time from the kept angles), give exactly the reference's bits. */
static void test_rope_cached_positions(void)
{
    NEED_PLUGIN();
    enum { T = 8, H = 3, D = 64 };
    int64_t sx[3] = {T, H, D}, sp[1] = {T};
    static float x[T * H * D], want[T * H * D], got[T * H * D];
    for (int i = 0; i < T * H * D; i++)
        x[i] = (float)sin(0.37 * i) * 3.0f;
    int32_t pos[T] = {5, 1029, 2053, -3, 1021, 5, 0, 1029};
    one_node n = {.op = BST_OP_ROPE, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 3, sx), mk(BST_DTYPE_I32, 1, sp)}, .data = {x, pos},
                  .out = mk(BST_DTYPE_F32, 3, sx), .n_attrs = 3,
                  .attrs = {bst_attr_int(BST_ATTR_ROPE_MODE, 0),
                            bst_attr_float(BST_ATTR_ROPE_THETA, 10000.0),
                            bst_attr_int(BST_ATTR_ROPE_DIMS, D)}};
    n.variant = 1; /* "ref" */
    CU_ASSERT_EQUAL_FATAL(run_one(&n, want), BST_OK);
    n.variant = 0; /* "rope_cached" */
    for (int rep = 0; rep < 2; rep++) {
        memset(got, 0, sizeof got);
        CU_ASSERT_EQUAL_FATAL(run_one(&n, got), BST_OK);
        CU_ASSERT_EQUAL(memcmp(got, want, sizeof want), 0);
    }
    /* Another theta evaluates the angles again. */
    n.attrs[1] = bst_attr_float(BST_ATTR_ROPE_THETA, 500000.0);
    n.variant = 1;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, want), BST_OK);
    n.variant = 0;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, got), BST_OK);
    CU_ASSERT_EQUAL(memcmp(got, want, sizeof want), 0);
}

static void test_softmax(void)
{
    NEED_PLUGIN();
    int64_t s[2] = {3, 3};
    float x[9] = {1, 2, 3, 1, 2, 3, 1, 2, 3}, out[9];
    float mask[9] = {0, 0, 0, 0, -INFINITY, 0, -INFINITY, -INFINITY, -INFINITY};
    one_node n = {.op = BST_OP_SOFTMAX, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 2, s), mk(BST_DTYPE_F32, 2, s)}, .data = {x, mask},
                  .out = mk(BST_DTYPE_F32, 2, s), .n_attrs = 1,
                  .attrs = {bst_attr_float(BST_ATTR_SCALE, 2.0)}};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    double z = exp(2) + exp(4) + exp(6);
    ASSERT_NEAR(out[0], exp(2) / z, 1e-7);
    ASSERT_NEAR(out[1], exp(4) / z, 1e-7);
    ASSERT_NEAR(out[2], exp(6) / z, 1e-7);
    ASSERT_NEAR(out[3], exp(2) / (exp(2) + exp(6)), 1e-7);
    CU_ASSERT_EQUAL(out[4], 0.0f);
    ASSERT_NEAR(out[5], exp(6) / (exp(2) + exp(6)), 1e-7);
    for (int i = 6; i < 9; i++) /* every position removed: zeros, not NaN */
        CU_ASSERT_EQUAL(out[i], 0.0f);
    /* No mask, default scale 1. */
    n.n_in = 1;
    n.n_attrs = 0;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    z = exp(1) + exp(2) + exp(3);
    ASSERT_NEAR(out[8], exp(3) / z, 1e-7);
}

static void test_cast_quantize_cont(void)
{
    NEED_PLUGIN();
    int64_t s[2] = {2, 32};
    float x[64], back[64];
    for (int i = 0; i < 64; i++)
        x[i] = (float)(i - 30) * 0.3f;
    uint16_t h[64];
    one_node n = {.op = BST_OP_CAST, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)}, .data = {x},
                  .out = mk(BST_DTYPE_F16, 2, s), .n_attrs = 1,
                  .attrs = {bst_attr_int(BST_ATTR_DTYPE, BST_DTYPE_F16)}};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, h), BST_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(h[i], bsti_f32_to_f16(x[i]));
    /* and back */
    n.in[0] = mk(BST_DTYPE_F16, 2, s);
    n.data[0] = h;
    n.out = mk(BST_DTYPE_F32, 2, s);
    n.attrs[0] = bst_attr_int(BST_ATTR_DTYPE, BST_DTYPE_F32);
    CU_ASSERT_EQUAL_FATAL(run_one(&n, back), BST_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(back[i], bsti_f16_to_f32(h[i]));

    /* quantize rows to q4_1: bytes equal to the reference quantizer's */
    uint8_t q[2 * 20], want[2 * 20];
    n.op = BST_OP_QUANTIZE;
    n.in[0] = mk(BST_DTYPE_F32, 2, s);
    n.data[0] = x;
    n.out = mk(BST_DTYPE_Q4_1, 2, s);
    n.attrs[0] = bst_attr_int(BST_ATTR_DTYPE, BST_DTYPE_Q4_1);
    CU_ASSERT_EQUAL_FATAL(run_one(&n, q), BST_OK);
    CU_ASSERT_EQUAL_FATAL(bsti_quantize(BST_DTYPE_Q4_1, x, want, 64), BST_OK);
    CU_ASSERT_EQUAL(memcmp(q, want, sizeof q), 0);

    /* cont of a transposed view [32,2] of x: out[i][j] = x[j][i] */
    int64_t st[2] = {32, 2};
    float t[64];
    n.op = BST_OP_CONT;
    n.n_attrs = 0;
    n.in[0] = mk(BST_DTYPE_F32, 2, st);
    n.in[0].strides[0] = 4;
    n.in[0].strides[1] = 128;
    n.out = mk(BST_DTYPE_F32, 2, st);
    CU_ASSERT_EQUAL_FATAL(run_one(&n, t), BST_OK);
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 2; j++)
            CU_ASSERT_EQUAL(t[i * 2 + j], x[j * 32 + i]);
}

static void test_get_rows(void)
{
    NEED_PLUGIN();
    /* q8_0 table of 3 rows of 32: row r has d = r + 1, q = j. */
    uint8_t table[3][34];
    for (int r = 0; r < 3; r++) {
        uint16_t d = bsti_f32_to_f16((float)(r + 1));
        memcpy(table[r], &d, 2);
        for (int j = 0; j < 32; j++)
            table[r][2 + j] = (uint8_t)j;
    }
    int32_t ids[2] = {2, 0};
    int64_t st[2] = {3, 32}, si[1] = {2}, so[2] = {2, 32};
    float out[64];
    one_node n = {.op = BST_OP_GET_ROWS, .n_in = 2,
                  .in = {mk(BST_DTYPE_Q8_0, 2, st), mk(BST_DTYPE_I32, 1, si)},
                  .data = {table, ids}, .out = mk(BST_DTYPE_F32, 2, so)};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    for (int j = 0; j < 32; j++) {
        CU_ASSERT_EQUAL(out[j], 3.0f * (float)j);
        CU_ASSERT_EQUAL(out[32 + j], (float)j);
    }
    int32_t bad[2] = {1, 3};
    n.data[1] = bad;
    CU_ASSERT_EQUAL(run_one(&n, out), BST_ERR_INVALID_ARG);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "outside") != NULL);
    bad[1] = -1;
    CU_ASSERT_EQUAL(run_one(&n, out), BST_ERR_INVALID_ARG);
}

static void test_set_rows(void)
{
    NEED_PLUGIN();
    /* dst f16 state [4,2] with known content; rows 0 and 1 of src go to 3 and 1. */
    int64_t sd[2] = {4, 2}, ss[2] = {2, 2}, si[1] = {2};
    uint16_t dst[8];
    for (int i = 0; i < 8; i++)
        dst[i] = bsti_f32_to_f16((float)(100 + i));
    float src[4] = {1.5f, -2.0f, 0.25f, 8.0f};
    int32_t ids[2] = {3, 1};
    uint16_t out[8];
    one_node n = {.op = BST_OP_SET_ROWS, .n_in = 3,
                  .in = {mk(BST_DTYPE_F16, 2, sd), mk(BST_DTYPE_F32, 2, ss), mk(BST_DTYPE_I32, 1, si)},
                  .data = {dst, src, ids}, .out = mk(BST_DTYPE_F16, 2, sd),
                  .out_aliases_in0 = true};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    float want[8] = {100, 101, 0.25f, 8.0f, 104, 105, 1.5f, -2.0f};
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(bsti_f16_to_f32(out[i]), want[i]);
    /* Output in its own buffer: dst is copied, then rows replaced. */
    n.out_aliases_in0 = false;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(bsti_f16_to_f32(out[i]), want[i]);
    int32_t bad[2] = {4, 0};
    n.data[2] = bad;
    CU_ASSERT_EQUAL(run_one(&n, out), BST_ERR_INVALID_ARG);
}

/* set_rows of f32 rows into an f16 state (a KV cache): "set_rows_f16" (F16C) is offered before
 * "ref" where the CPU has AVX2 (checked against /proc/cpuinfo) and writes exactly the reference's
 * bits: random bit patterns (NaNs with payloads, infinities, f32 subnormals, every exponent),
 * the midpoints between neighbouring halves (ties to even, normal and subnormal, and 65520's
 * overflow), +-0; 67 elements a row (an 8-wide tail); a repeated id ends with its last row. */
static void test_set_rows_f16_bits(void)
{
    NEED_PLUGIN();
    enum { S = 5, T = 16, H = 3, D = 67 };
    static const char *const avx2[] = {"avx2", "fma", "f16c"};
    const bool has_avx2 = cpuinfo_has(avx2, 3) && cap_allows("avx2");
    int64_t sd[3] = {S, H, D}, ss[3] = {T, H, D}, si[1] = {T};
    static uint16_t dst[S * H * D], want[S * H * D], got[S * H * D];
    static float src[T * H * D];
    int32_t ids[T];
    uint32_t x = 0x9e3779b9u;
    for (int i = 0; i < T * H * D; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        uint32_t bits = x;
        if (i % 3 == 1) { /* midway between half h and the next one up */
            const uint16_t h = (uint16_t)(x & 0x7bffu); /* finite, below the largest */
            const float lo = bsti_f16_to_f32(h), hi = bsti_f16_to_f32((uint16_t)(h + 1));
            const float mid = lo + (hi - lo) * 0.5f; /* exact: one more bit than a half has */
            memcpy(&bits, &mid, sizeof bits);
            bits |= x & 0x80000000u;
        }
        memcpy(&src[i], &bits, sizeof bits);
    }
    src[0] = 65520.0f, src[1] = -65519.996f, src[2] = 0.0f, src[3] = -0.0f;
    for (int i = 0; i < S * H * D; i++)
        dst[i] = (uint16_t)(0x3c00u + (unsigned)i % 512u);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)((t * 3) % S); /* every row, most of them more than once */
    one_node n = {.op = BST_OP_SET_ROWS, .n_in = 3,
                  .in = {mk(BST_DTYPE_F16, 3, sd), mk(BST_DTYPE_F32, 3, ss),
                         mk(BST_DTYPE_I32, 1, si)},
                  .data = {dst, src, ids}, .out = mk(BST_DTYPE_F16, 3, sd),
                  .out_aliases_in0 = true};
    const bst_tensor_desc *ins[3] = {&n.in[0], &n.in[1], &n.in[2]};
    bst_node_desc nd = {.struct_size = sizeof nd, .op = BST_OP_SET_ROWS, .n_inputs = 3,
                        .inputs = ins, .output = &n.out};
    bst_kernel_variant v[3];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 3; i++)
        v[i].struct_size = sizeof v[i];
    uint32_t count = 0;
    CU_ASSERT_EQUAL_FATAL(cpu_api.query(cpu_dev, &nd, v, sizeof v[0], 3, &count), BST_OK);
    CU_ASSERT_EQUAL_FATAL(count, has_avx2 ? 2u : 1u);
    if (has_avx2)
        CU_ASSERT_STRING_EQUAL(v[0].name, "set_rows_f16");
    CU_ASSERT_STRING_EQUAL(v[count - 1].name, "ref");
    n.variant = count - 1;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, want), BST_OK);
    n.variant = 0;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, got), BST_OK);
    CU_ASSERT_EQUAL(memcmp(got, want, sizeof want), 0);
    /* The reference is the host's own conversion, row by row: spot-check it too. */
    const int last = (T - 1) * H * D; /* ids[T - 1]'s row, head 0 */
    for (int c = 0; c < D; c++)
        CU_ASSERT_EQUAL(got[ids[T - 1] * H * D + c], bsti_f32_to_f16(src[last + c]));
    /* An f32 state, or a source with gaps between its elements: the reference only. */
    bst_tensor_desc f32_state = mk(BST_DTYPE_F32, 3, sd), strided = mk(BST_DTYPE_F32, 3, ss);
    strided.strides[2] = 8;
    strided.strides[1] = 8 * D;
    strided.strides[0] = 8 * D * H;
    for (int k = 0; k < 2; k++) {
        ins[0] = k == 0 ? &f32_state : &n.in[0];
        ins[1] = k == 0 ? &n.in[1] : &strided;
        nd.output = k == 0 ? &f32_state : &n.out;
        CU_ASSERT_EQUAL(cpu_api.query(cpu_dev, &nd, v, sizeof v[0], 3, &count), BST_OK);
        CU_ASSERT_EQUAL(count, 1u);
        CU_ASSERT_STRING_EQUAL(v[0].name, "ref");
    }
}

static void test_concat_argmax(void)
{
    NEED_PLUGIN();
    int64_t sa[2] = {2, 2}, sb[2] = {1, 2}, so[2] = {3, 2};
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, out[6];
    one_node n = {.op = BST_OP_CONCAT, .n_in = 2,
                  .in = {mk(BST_DTYPE_F32, 2, sa), mk(BST_DTYPE_F32, 2, sb)}, .data = {a, b},
                  .out = mk(BST_DTYPE_F32, 2, so), .n_attrs = 1,
                  .attrs = {bst_attr_int(BST_ATTR_AXIS, 0)}};
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(out[i], (float)(i + 1));
    int64_t sb1[2] = {2, 1}, so1[2] = {2, 3};
    float c[2] = {9, 10};
    n.in[1] = mk(BST_DTYPE_F32, 2, sb1);
    n.data[1] = c;
    n.out = mk(BST_DTYPE_F32, 2, so1);
    n.attrs[0] = bst_attr_int(BST_ATTR_AXIS, 1);
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    float want[6] = {1, 2, 9, 3, 4, 10};
    for (int i = 0; i < 6; i++)
        CU_ASSERT_EQUAL(out[i], want[i]);

    int64_t sx[2] = {3, 4}, sr[1] = {3};
    float x[12] = {1, 7, 7, 2, -1, -3, -2, -1, 0, NAN, 5, 5};
    int32_t idx[3];
    one_node m = {.op = BST_OP_ARGMAX, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, sx)}, .data = {x},
                  .out = mk(BST_DTYPE_I32, 1, sr)};
    CU_ASSERT_EQUAL_FATAL(run_one(&m, idx), BST_OK);
    CU_ASSERT_EQUAL(idx[0], 1); /* first of the tied maxima */
    CU_ASSERT_EQUAL(idx[1], 0);
    CU_ASSERT_EQUAL(idx[2], 2); /* NaN skipped */
}

static void test_views_and_compile_errors(void)
{
    NEED_PLUGIN();
    int64_t s[2] = {2, 3};
    one_node n = {.op = BST_OP_TRANSPOSE, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)},
                  .out = mk(BST_DTYPE_F32, 2, s), .out_aliases_in0 = true};
    float out[6], x[6] = {1, 2, 3, 4, 5, 6};
    n.data[0] = x;
    CU_ASSERT_EQUAL(run_one(&n, out), BST_OK); /* aliased: nothing to do */
    n.out.offset = 4; /* not where the input is */
    void *exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_INVALID_ARG);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "alias") != NULL);
    n.op = BST_OP_VIEW;
    n.n_attrs = 1;
    n.attrs[0] = bst_attr_int(BST_ATTR_OFFSET, 4);
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_OK);
    cpu_api.executable_free(cpu_dev, exe);

    /* A source op is never the backend's to run; attention (run fused) with one input is
     * malformed. */
    one_node u = {.op = BST_OP_CONST, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)},
                  .out = mk(BST_DTYPE_F32, 2, s)};
    exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&u, &exe), BST_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(exe);
    u.op = BST_OP_ATTENTION;
    CU_ASSERT_EQUAL(compile_one(&u, &exe), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(exe);
    u.op = (bst_op)4242;
    CU_ASSERT_EQUAL(compile_one(&u, &exe), BST_ERR_UNSUPPORTED);
    u.op = BST_OP_SILU;
    u.in[0].dtype = 77;
    CU_ASSERT_EQUAL(compile_one(&u, &exe), BST_ERR_UNSUPPORTED);
}

/* Descriptors that would reach outside their buffer are refused at execute, never run. */
static void test_out_of_bounds_descriptor(void)
{
    NEED_PLUGIN();
    int64_t s[2] = {4, 4};
    one_node n = {.op = BST_OP_SILU, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)},
                  .out = mk(BST_DTYPE_F32, 2, s)};
    void *exe = NULL;
    CU_ASSERT_EQUAL_FATAL(compile_one(&n, &exe), BST_OK);
    void *small = NULL, *big = NULL;
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, 60, &small), BST_OK); /* needs 64 */
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, 64, &big), BST_OK);
    bst_run_params p = {.struct_size = sizeof p, .n_tokens = 1, .n_kv = 1};
    void *bufs[2] = {small, big};
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_ERR_INVALID_ARG);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "outside") != NULL);
    bufs[0] = big;
    bufs[1] = small;
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_ERR_INVALID_ARG);
    /* binding 1 */
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 1, &p), BST_ERR_INVALID_ARG);
    bufs[0] = bufs[1] = big;
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_OK); /* in place is fine */
    uint64_t ns = 0;
    CU_ASSERT_EQUAL(cpu_api.last_execute_ns(cpu_dev, exe, &ns), BST_OK);

    /* Injected execute failure: the injected status, with a message. */
    bsti_fault_set("execute", BST_ERR_DEVICE_LOST, 1);
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_ERR_DEVICE_LOST);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "execute") != NULL);
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_OK);
    cpu_api.executable_free(cpu_dev, exe);

    bsti_fault_set("compile", BST_ERR_COMPILE, 1);
    exe = NULL;
    CU_ASSERT_EQUAL(compile_one(&n, &exe), BST_ERR_COMPILE);
    CU_ASSERT_PTR_NULL(exe);
    cpu_api.buffer_free(cpu_dev, small);
    cpu_api.buffer_free(cpu_dev, big);
}

/* node_timing / node_times (ABI v3): off until asked for, then each execute's node times; a
 * bad handle or a query while off is refused with a message. */
static void test_node_timing(void)
{
    NEED_PLUGIN();
    CU_ASSERT_PTR_NOT_NULL_FATAL(cpu_api.node_timing);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cpu_api.node_times);
    int64_t s[2] = {64, 256};
    one_node n = {.op = BST_OP_SILU, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)},
                  .out = mk(BST_DTYPE_F32, 2, s)};
    void *exe = NULL, *buf = NULL;
    CU_ASSERT_EQUAL_FATAL(compile_one(&n, &exe), BST_OK);
    CU_ASSERT_EQUAL_FATAL(cpu_api.buffer_alloc(cpu_dev, span(&n.in[0]), &buf), BST_OK);
    bst_run_params p = {.struct_size = sizeof p, .n_tokens = 1, .n_kv = 1};
    void *bufs[2] = {buf, buf};
    bst_node_time t[2];
    uint32_t count = 7;
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, exe, t, 2, &count), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "off"));
    CU_ASSERT_EQUAL(count, 7);

    CU_ASSERT_EQUAL(cpu_api.node_timing(cpu_dev, exe, 1), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.node_timing(cpu_dev, exe, 1), BST_OK); /* twice is once */
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_OK);
    memset(t, 0xff, sizeof t);
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, exe, t, 2, &count), BST_OK);
    CU_ASSERT_EQUAL(count, 1);
    uint64_t exe_ns = 0;
    CU_ASSERT_EQUAL(cpu_api.last_execute_ns(cpu_dev, exe, &exe_ns), BST_OK);
    /* 16384 SiLUs take well over the clock's resolution, and lie inside the execute. */
    CU_ASSERT_TRUE(t[0].ns > 0);
    CU_ASSERT_TRUE(t[0].start_ns + t[0].ns <= exe_ns);
    CU_ASSERT_EQUAL(t[1].ns, UINT64_MAX); /* past the count: untouched */
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, exe, NULL, 0, &count), BST_OK); /* just the count */
    CU_ASSERT_EQUAL(count, 1);
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, exe, NULL, 1, &count), BST_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, exe, t, 1, NULL), BST_ERR_INVALID_ARG);

    CU_ASSERT_EQUAL(cpu_api.node_timing(cpu_dev, exe, 0), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.execute(cpu_dev, exe, bufs, 2, &p), BST_OK);
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, exe, t, 1, &count), BST_ERR_INVALID_ARG);
    /* not an executable */
    CU_ASSERT_EQUAL(cpu_api.node_timing(cpu_dev, buf, 1), BST_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(bst_last_error(), "node_timing"));
    CU_ASSERT_EQUAL(cpu_api.node_times(cpu_dev, NULL, t, 1, &count), BST_ERR_INVALID_ARG);
    cpu_api.buffer_free(cpu_dev, buf);
    cpu_api.executable_free(cpu_dev, exe);
}

/* A symbolic dim computes only its actual extent; rows past it stay untouched. */
static void test_symbolic_dims(void)
{
    NEED_PLUGIN();
    int64_t s[2] = {4, 2};
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    one_node n = {.op = BST_OP_SCALE, .n_in = 1, .in = {mk(BST_DTYPE_F32, 2, s)}, .data = {x},
                  .out = mk(BST_DTYPE_F32, 2, s), .n_attrs = 1,
                  .attrs = {bst_attr_float(BST_ATTR_SCALE, 10.0)}};
    n.in[0].sym[0] = BST_SYM_N_TOKENS;
    n.out.sym[0] = BST_SYM_N_TOKENS;
    bst_run_params p = {.struct_size = sizeof p, .n_tokens = 2, .n_kv = 1};
    n.params = &p;
    CU_ASSERT_EQUAL_FATAL(run_one(&n, out), BST_OK);
    CU_ASSERT_EQUAL(out[0], 10.0f);
    CU_ASSERT_EQUAL(out[3], 40.0f);
    for (int i = 4; i < 8; i++) /* fresh buffers are zeroed */
        CU_ASSERT_EQUAL(out[i], 0.0f);
    p.n_tokens = 5; /* past the bound */
    CU_ASSERT_EQUAL(run_one(&n, out), BST_ERR_INVALID_ARG);
    CU_ASSERT_TRUE(strstr(bst_last_error(), "n_tokens") != NULL);
    p.n_tokens = 0; /* empty: nothing to do */
    CU_ASSERT_EQUAL(run_one(&n, out), BST_OK);
}

int main(void)
{
    static const bst_test_case cases[] = {
        {"ABI negotiation", test_abi_negotiation},
        {"device", test_device},
        {"buffers", test_buffers},
        {"prepare_weight packing", test_prepare_weight_packing},
        {"query", test_query},
        {"kernel variants", test_kernel_variants},
        {"isa detection", test_isa_detection},
        {"primitive variants", test_prim_variants},
        {"add/mul broadcast", test_add_mul_broadcast},
        {"rms_norm_mul variants", test_rms_norm_mul_variants},
        {"scale/silu/gelu", test_unary},
        {"matmul", test_matmul},
        {"matmul q8_0 grouped", test_matmul_quantized_grouped},
        {"matmul parallel", test_matmul_parallel},
        {"rms_norm/layer_norm", test_norms},
        {"rope", test_rope},
        {"rope_cached_positions", test_rope_cached_positions},
        {"softmax", test_softmax},
        {"cast/quantize/cont", test_cast_quantize_cont},
        {"get_rows", test_get_rows},
        {"set_rows", test_set_rows},
        {"set_rows_f16_bits", test_set_rows_f16_bits},
        {"concat/argmax", test_concat_argmax},
        {"views and compile errors", test_views_and_compile_errors},
        {"out-of-bounds descriptors and faults", test_out_of_bounds_descriptor},
        {"node timing", test_node_timing},
        {"symbolic dims", test_symbolic_dims},
        {NULL, NULL},
    };
    return bst_test_run_suite("cpu_backend", cases);
}
