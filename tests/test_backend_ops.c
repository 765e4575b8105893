/*
 * tests/test_backend_ops.c — every primitive op x dtype x shape on every device of every loaded
 * backend, at the plugin ABI level, against an independent double-precision oracle
 * (tools/conformance/oracle.c, written from the op semantics in include/bastion/backend.h) and
 * against the CPU reference backend. The cases and the machinery (guard bytes, layouts, symbolic
 * extents, the summary table) live in tools/conformance/, shared with `bastion conformance`, which
 * runs the same cases against one plugin in a crash-isolated worker.
 *
 * Error bounds (NMSE = sum((out-ref)^2) / sum(ref^2); sum(ref^2) == 0 uses sum((out-ref)^2)):
 *
 *   op / output                                        bound
 *   -------------------------------------------------  ----------------------------------------
 *   add, mul, scale, rms_norm, layer_norm, softmax,    NMSE <= 1e-7 (f32 output)
 *   rope, silu, gelu, get_rows (any table dtype,
 *   quantized tables against their dequantized rows),
 *   cont (from f32/f16/bf16 views; output f32),
 *   concat, set_rows into f32
 *   matmul (a f32; b f32/f16/bf16/q*; batched)          NMSE <= 5e-4 (DESIGN.md's bound for f32
 *                                                      matmul and attention; a backend may
 *                                                      round a to b's type or to q8 blocks)
 *   attention (fused; k/v f32/f16/bf16; not on the     NMSE <= 5e-4
 *   CPU reference backend, which lowers it)
 *   f16/bf16 outputs: cast, set_rows                   the oracle rounded to the type (ties to
 *                                                      even): exact on the CPU reference
 *                                                      backend, <= 1 ulp on other backends
 *   cast to f32 (from f16/bf16: exactly representable) exact
 *   quantize (f32 -> q4_0/q4_1/q5_0/q5_1/q8_0),        every element dequantizes to within its
 *   set_rows into q8_0                                 block's quantization error of the input
 *                                                      (quant_bound in backend_ops_check.c);
 *                                                      on the CPU backend also byte-identical
 *                                                      to bsti_quantize (the reference
 *                                                      quantizer)
 *   argmax                                             exact (ties: first index)
 *   non-CPU backend vs CPU backend output              the same bound (f16/bf16: <= 1 ulp)
 *
 * Besides values, every run must leave every byte it was not asked to write unchanged: BO_GUARD
 * bytes of BO_PATTERN around every tensor, the inputs, the output elements past a symbolic
 * extent (the run-time n_tokens / n_kv is smaller than the bound), and SET_ROWS' rows not in ids.
 * A backend answering query with no variant is NOT_SUPPORTED (kept apart from FAIL); the CPU
 * reference backend must support every case not marked optional.
 */
#include "backend_ops_devices.h"
#include "backend_ops_harness.h"
#include "oracle.h"
#include "test_util.h"

#include <bastion/bastion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bo_rng rng;

static void sym(bo_tensor *t, uint32_t d, bst_sym s) { t->sym[d] = s; }

/* One CUnit test per case family of tools/conformance/backend_ops_cases.c. */
static void family(const char *name) { CU_ASSERT_EQUAL(bo_family_run(name), 0); }
static void test_get_rows(void) { family("get_rows"); }
static void test_add_mul(void) { family("add_mul"); }
static void test_scale(void) { family("scale"); }
static void test_matmul(void) { family("matmul"); }
static void test_rms_norm(void) { family("rms_norm"); }
static void test_layer_norm(void) { family("layer_norm"); }
static void test_rope(void) { family("rope"); }
static void test_softmax(void) { family("softmax"); }
static void test_silu_gelu(void) { family("silu_gelu"); }
static void test_cast(void) { family("cast"); }
static void test_quantize(void) { family("quantize"); }
static void test_concat(void) { family("concat"); }
static void test_cont(void) { family("cont"); }
static void test_argmax(void) { family("argmax"); }
static void test_set_rows(void) { family("set_rows"); }
static void test_attention(void) { family("attention"); }


/* ---- view ops: no kernel, but query must answer ------------------------------------------- */

static void test_view_ops(void)
{
    bo_family_begin("view_ops");
    const int64_t sx[] = {4, 6};
    bo_case c;
    bo_case_init(&c, BST_OP_VIEW, "f32");
    bo_tensor *x = bo_case_input(&c);
    bo_tensor_contig(x, BST_DTYPE_F32, 2, sx);
    for (int op = BST_OP_VIEW; op <= BST_OP_TRANSPOSE; op++) {
        bo_tensor_free(&c.out);
        c.op = (bst_op)op;
        c.n_attrs = 0;
        c.alias_in = 0;
        if (op == BST_OP_VIEW) { /* rows 1..2, columns 2..5 */
            const int64_t s[] = {2, 4}, st[] = {24, 4};
            bo_case_attr_ints(&c, BST_ATTR_SHAPE, 2, s);
            bo_case_attr_ints(&c, BST_ATTR_STRIDES, 2, st);
            bo_case_attr_int(&c, BST_ATTR_OFFSET, 24 + 8);
            bo_tensor_contig(&c.out, BST_DTYPE_F32, 2, s);
            c.out.strides[0] = 24;
        } else if (op == BST_OP_RESHAPE) {
            const int64_t s[] = {3, 8};
            bo_case_attr_ints(&c, BST_ATTR_SHAPE, 2, s);
            bo_tensor_contig(&c.out, BST_DTYPE_F32, 2, s);
        } else {
            const int64_t s[] = {6, 4}, perm[] = {1, 0};
            if (op == BST_OP_PERMUTE)
                bo_case_attr_ints(&c, BST_ATTR_PERM, 2, perm);
            bo_tensor_contig(&c.out, BST_DTYPE_F32, 2, s);
            c.out.strides[0] = 4;
            c.out.strides[1] = 24;
        }
        bo_node nd;
        bo_node_build(&c, &nd);
        if (op == BST_OP_VIEW)
            nd.out.offset += 24 + 8;
        for (uint32_t d = 0; d < bo_device_count(); d++) {
            if (!bo_device_handle(d))
                continue;
            bst_kernel_variant vars[8];
            memset(vars, 0, sizeof vars);
            for (int i = 0; i < 8; i++)
                vars[i].struct_size = sizeof vars[i];
            uint32_t count = 0;
            bst_status s = bo_device_api(d)->query(bo_device_handle(d), &nd.node, vars,
                                                   sizeof vars[0], 8, &count);
            printf("\n  %s query(%s) -> %s, %u variant(s)", bo_device_label(d),
                   bst_op_name((bst_op)op), bst_status_name(s), count);
            bo_record_query(d, (bst_op)op, "f32", s == BST_OK && count > 0, false);
        }
    }
    bo_case_free(&c);
    CU_ASSERT_EQUAL(bo_family_end(), 0);
}

/* ---- malformed nodes ----------------------------------------------------------------------- */

static void test_invalid_nodes(void)
{
    bo_family_begin("invalid_nodes");
    const int64_t s[] = {3, 17};
    bo_case c;
    bo_case_init(&c, BST_OP_ADD, "f32");
    for (int i = 0; i < 3; i++) {
        bo_tensor *t = bo_case_input(&c);
        bo_tensor_contig(t, BST_DTYPE_F32, 2, s);
    }
    bo_case_output(&c, BST_DTYPE_F32, 2, s);
    c.n_in = 2;
    bo_node nd;
    bo_node_build(&c, &nd);
    /* a third input descriptor, for the too-many-inputs node */
    nd.in[2] = nd.in[1];
    nd.in[2].binding = 3;
    nd.in_ptr[2] = &nd.in[2];
    struct {
        bst_op op;
        uint32_t n_inputs;
    } bad[] = {{BST_OP_ADD, 1},      {BST_OP_ADD, 3},      {BST_OP_MATMUL, 1},
               {BST_OP_RMS_NORM, 0}, {BST_OP_GET_ROWS, 1}, {BST_OP_SET_ROWS, 2},
               {BST_OP_SILU, 2}};
    for (uint32_t d = 0; d < bo_device_count(); d++) {
        void *h = bo_device_handle(d);
        const bst_backend_api *api = bo_device_api(d);
        if (!h)
            continue;
        bst_kernel_variant vars[8];
        memset(vars, 0, sizeof vars);
        for (int i = 0; i < 8; i++)
            vars[i].struct_size = sizeof vars[i];
        /* An op id from a newer host: unsupported, never a crash. */
        uint32_t count = 99;
        nd.node.op = BST_OP_COUNT + 5;
        bst_status st = api->query(h, &nd.node, vars, sizeof vars[0], 8, &count);
        bool ok = st != BST_OK || count == 0;
        printf("\n  %s query(op %d) -> %s, count %u%s", bo_device_label(d), BST_OP_COUNT + 5,
               bst_status_name(st), count, ok ? "" : "  <-- FAIL: accepted an unknown op");
        bo_record_query(d, (bst_op)(BST_OP_COUNT + 5), "unknown op", ok, !ok);
        /* Wrong input counts: compile must refuse with a status. */
        for (size_t b = 0; b < COUNT(bad); b++) {
            nd.node.op = bad[b].op;
            nd.node.n_inputs = bad[b].n_inputs;
            nd.node.variant = 0;
            count = 0;
            st = api->query(h, &nd.node, vars, sizeof vars[0], 8, &count);
            const bst_node_desc *nodes[1] = {&nd.node};
            bst_partition_desc part;
            memset(&part, 0, sizeof part);
            part.struct_size = sizeof part;
            part.n_nodes = 1;
            part.nodes = nodes;
            part.n_bindings = 4;
            void *exe = NULL;
            bst_status cs = api->compile(h, &part, &exe);
            bool rejected = cs != BST_OK;
            printf("\n  %s %s with %u input(s): query %s count %u, compile %s%s%s",
                   bo_device_label(d), bst_op_name(bad[b].op), bad[b].n_inputs,
                   bst_status_name(st), count, bst_status_name(cs),
                   rejected ? ": " : "  <-- FAIL: compiled a node with a wrong input count",
                   rejected ? bst_last_error() : "");
            if (cs == BST_OK && exe)
                api->executable_free(h, exe);
            bo_record_query(d, bad[b].op, "bad arity", rejected, !rejected);
        }
        nd.node.op = BST_OP_ADD;
        nd.node.n_inputs = 2;
    }
    c.n_in = 3;
    bo_case_free(&c);
    CU_ASSERT_EQUAL(bo_family_end(), 0);
}

/* ---- harness self-test --------------------------------------------------------------------- */

/* The checker must catch what broken kernels do. Run a passing case on the CPU device and
 * corrupt its buffers: a wrong value, a byte before/after the output, an input byte, an element
 * past the symbolic extent, an element left unwritten. */
static void test_harness_selftest(void)
{
    uint32_t dev = bo_cpu_device();
    CU_ASSERT_NOT_EQUAL_FATAL(dev, UINT32_MAX);
    bo_rng_seed(&rng, 99);
    static const bst_op ops[] = {BST_OP_SCALE, BST_OP_QUANTIZE};
    for (size_t o = 0; o < COUNT(ops); o++) {
        bo_case c;
        const int64_t shape[] = {6, 64};
        bo_case_init(&c, ops[o], "selftest");
        c.n_tokens = 4;
        bo_tensor *x = bo_case_input(&c);
        bo_tensor_contig(x, BST_DTYPE_F32, 2, shape);
        bo_tensor_fill(x, &rng, -1.0, 1.0);
        sym(x, 0, BST_SYM_N_TOKENS);
        if (ops[o] == BST_OP_SCALE) {
            bo_case_attr_float(&c, BST_ATTR_SCALE, 2.0);
            bo_case_output(&c, BST_DTYPE_F32, 2, shape);
        } else {
            bo_case_attr_int(&c, BST_ATTR_DTYPE, BST_DTYPE_Q8_0);
            bo_case_output(&c, BST_DTYPE_Q8_0, 2, shape);
        }
        sym(&c.out, 0, BST_SYM_N_TOKENS);
        double *ref = bo_eff_values(&c, x, NULL);
        if (ops[o] == BST_OP_SCALE)
            oracle_scale(ref, 4 * 64, 2.0, ref);
        bo_case_set_ref(&c, ref);
        free(ref);
        int missed = bo_selftest(&c, dev);
        printf("\n  selftest %s: %d corruption(s) missed", bst_op_name(ops[o]), missed);
        CU_ASSERT_EQUAL(missed, 0);
    }
}


/* ---- devices, coverage, summary ------------------------------------------------------------ */

static void test_devices(void)
{
    uint32_t n = bo_device_count(), cpus = 0;
    for (uint32_t d = 0; d < n; d++)
        cpus += bo_device_is_cpu(d) && bo_device_handle(d) ? 1u : 0u;
    CU_ASSERT(n > 0);
    CU_ASSERT(cpus > 0); /* the reference backend is always built */
    CU_ASSERT_EQUAL(bo_device_open_failures(), 0);
}

static void test_cpu_coverage(void)
{
    /* The CPU backend is the reference: it implements every primitive op case. */
    CU_ASSERT_EQUAL(bo_cpu_gaps(), 0);
}

static void test_summary(void)
{
    bo_print_summary();
    bo_shutdown();
}

int main(void)
{
    /* The GPU-style backends offer fused attention on CPU-type devices (PoCL, lavapipe) only on
     * request; ask before the harness creates its context, unless the caller said otherwise. */
    setenv("BASTION_OPENCL_FUSED", "1", 0);
    setenv("BASTION_VULKAN_FUSED", "1", 0);
    bo_use_context_devices();
    static const bst_test_case cases[] = {
        {"devices", test_devices},
        {"harness_selftest", test_harness_selftest},
        {"get_rows", test_get_rows},
        {"add_mul", test_add_mul},
        {"scale", test_scale},
        {"matmul", test_matmul},
        {"rms_norm", test_rms_norm},
        {"layer_norm", test_layer_norm},
        {"rope", test_rope},
        {"softmax", test_softmax},
        {"silu_gelu", test_silu_gelu},
        {"cast", test_cast},
        {"quantize", test_quantize},
        {"concat", test_concat},
        {"cont", test_cont},
        {"argmax", test_argmax},
        {"set_rows", test_set_rows},
        {"attention", test_attention},
        {"view_ops", test_view_ops},
        {"invalid_nodes", test_invalid_nodes},
        {"cpu_coverage", test_cpu_coverage},
        {"summary", test_summary},
        {NULL, NULL},
    };
    return bst_test_run_suite("backend_ops", cases);
}
