/*
 * The CPU backend's fused variants (see cpu_fused.h): which ones exist, which apply to a node on
 * this machine (best first, the order query offers them in), and running the chosen one.
 */
#include "cpu_fused.h"
#include "cpu_gemm.h"
#include "cpu_isa.h"
#include "cpu_q8dot.h"

static const cpu_fused_impl all_fused[] = {
#ifdef CPU_HAVE_FUSED_AVX512
    {"fused_attention_avx512", BST_OP_ATTENTION, CPU_ISA_AVX2 | CPU_ISA_AVX512,
     &cpu_att_loops_avx512, NULL, NULL, NULL},
#endif
#ifdef CPU_HAVE_FUSED_AVX2
    {"fused_attention_avx2", BST_OP_ATTENTION, CPU_ISA_AVX2, &cpu_att_loops_avx2, NULL, NULL, NULL},
#endif
    {"fused_attention", BST_OP_ATTENTION, 0, &cpu_att_loops_scalar, NULL, NULL, NULL},
    /* contiguous f32 rows (cpu_fast_prims.c); other layouts fall back to fused_rms_norm_mul */
    {"fused_rms_norm_mul_f32", BST_OP_RMS_NORM_MUL, 0, NULL, NULL, NULL, cpu_fast_rms_norm_mul},
    {"fused_rms_norm_mul", BST_OP_RMS_NORM_MUL, 0, NULL, NULL, NULL, NULL},
    /* ffn_swiglu: int8 dots for decode, packed GEMM for prompts (cpu_fused_ffn.c). */
#ifdef CPU_HAVE_AVX512VNNI_KERNELS
    {"fused_ffn_avx512", BST_OP_FFN_SWIGLU, CPU_ISA_AVX2 | CPU_ISA_AVX512 | CPU_ISA_AVX512VNNI,
     NULL, &cpu_q8dot_avx512vnni, &cpu_gemm_kernel_avx512, NULL},
#endif
#ifdef CPU_HAVE_AVX2_KERNELS
    {"fused_ffn_avx2", BST_OP_FFN_SWIGLU, CPU_ISA_AVX2, NULL, &cpu_q8dot_avx2,
     &cpu_gemm_kernel_avx2, NULL},
#endif
    {"fused_ffn_scalar", BST_OP_FFN_SWIGLU, 0, NULL, &cpu_q8dot_scalar, &cpu_gemm_kernel_scalar, NULL},
};

bool cpu_fused_op(uint32_t op)
{
    return op == BST_OP_ATTENTION || op == BST_OP_RMS_NORM_MUL || op == BST_OP_FFN_SWIGLU;
}

bst_status cpu_fused_check(cpu_run *r)
{
    switch (r->node->op) {
    case BST_OP_ATTENTION: return cpu_fused_check_attention(r);
    case BST_OP_RMS_NORM_MUL: return cpu_fused_check_rms_norm_mul(r);
    case BST_OP_FFN_SWIGLU: return cpu_fused_check_ffn_swiglu(r);
    default: return cpu_fail(r, BST_ERR_UNSUPPORTED, "op %u has no fused kernel", r->node->op);
    }
}

uint32_t cpu_fused_variants(const cpu_run *r, const cpu_fused_impl **out, uint32_t cap)
{
    const uint32_t isa = cpu_isa_mask();
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof all_fused / sizeof all_fused[0] && n < cap; i++)
        if (all_fused[i].op == r->node->op && (all_fused[i].isa & isa) == all_fused[i].isa)
            out[n++] = &all_fused[i];
    return n;
}

bst_status cpu_fused_run(cpu_run *r, const cpu_fused_impl *impl)
{
    if (!impl || impl->op != r->node->op)
        return cpu_fail(r, BST_ERR_INVALID_ARG, "fused variant does not match the node");
    if (impl->prim)
        return impl->prim(r);
    switch (impl->op) {
    case BST_OP_ATTENTION: return cpu_fused_run_attention(r, impl->att);
    case BST_OP_RMS_NORM_MUL: return cpu_fused_run_rms_norm_mul(r);
    case BST_OP_FFN_SWIGLU: return cpu_fused_run_ffn_swiglu(r, impl->q8, impl->gemm);
    default: return cpu_fail(r, BST_ERR_UNSUPPORTED, "op %u has no fused kernel", impl->op);
    }
}

bst_status cpu_fused_unchosen(cpu_run *r)
{
    return cpu_fail(r, BST_ERR_UNSUPPORTED, "no fused variant was chosen for this node");
}
