/*
 * tools/conformance/backend_ops_harness.h — the op conformance machinery shared by
 * tests/test_backend_ops.c and `bastion conformance` (tools/cmd_conformance.c): builds one-node
 * partitions by hand at the plugin ABI level, runs them on every device of every loaded backend
 * with guard bytes around each tensor, and checks the results (backend_ops_check.c) against
 * oracle.c and against the CPU reference backend.
 *
 * A test case (bo_case) holds its input tensors with their logical values, the output's type,
 * the attributes, the run-time extents of symbolic dims and the expected output (computed by the
 * caller with the oracle on the effective, i.e. run-time, extents). bo_run() then:
 *  - asks each device's `query`; no variant -> NOT_SUPPORTED (counted apart from FAIL);
 *  - for every variant offered: compiles the node, lays the tensors out in device buffers with
 *    BO_GUARD bytes of BO_PATTERN around each region (one binding per tensor, or every third
 *    case all tensors in one binding at offsets), executes, reads every buffer back and checks
 *    that no byte changed except the output elements it had to compute (so writes outside the
 *    output, into inputs, or past a symbolic extent all fail), then compares values;
 *  - compares every non-CPU backend's output with the CPU backend's.
 * Results go into a per (device, op, dtype) summary table and a per-family failure count.
 *
 * Nothing here aborts or exits. When the harness itself fails (one of its own allocations, or a
 * case asking for more than it holds: inputs, attributes, dims, a dtype it cannot lay out), the
 * first failure is kept as the pending error with a message naming what failed; the building
 * calls after it do nothing, and the next bo_run reports the case as an ERROR (BO_ERROR to the
 * result hook on every device, an ERROR column in the summary, a failure of its family) and
 * clears it. An allocation that fails while a case runs on a device is that device's ERROR.
 */
#ifndef BASTION_TESTS_BACKEND_OPS_HARNESS_H
#define BASTION_TESTS_BACKEND_OPS_HARNESS_H

#include <bastion/backend.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BO_GUARD 256u
#define BO_PATTERN 0xA5u

/* --- harness failures --------------------------------------------------------------------- */

/* No pending harness error (cleared by bo_case_init and by the bo_run that reports it). */
bool bo_ok(void);
/* The pending error's message, or NULL. */
const char *bo_error(void);
/* The harness's allocator, also for case builders: `count` zeroed elements of `size` bytes, or
 * NULL with the pending error "cannot allocate <what> (...)". */
void *bo_alloc(size_t count, size_t size, const char *what);
/* Test hook: the nth harness allocation from now fails (1 = the next one); 0 disarms. */
void bo_fail_alloc(uint64_t nth);
/* Harness allocations made so far (tests size their bo_fail_alloc sweeps with it). */
uint64_t bo_alloc_count(void);

/* --- deterministic random numbers ---------------------------------------------------------- */

typedef struct bo_rng {
    uint64_t state;
} bo_rng;

void bo_rng_seed(bo_rng *r, uint64_t seed);
uint64_t bo_rng_next(bo_rng *r);
/* Uniform in [lo, hi), always a value representable as f32. */
double bo_rng_uniform(bo_rng *r, double lo, double hi);
/* Uniform integer in [lo, hi]. */
int32_t bo_rng_int(bo_rng *r, int32_t lo, int32_t hi);

/* --- tensors ------------------------------------------------------------------------------- */

typedef struct bo_tensor {
    bst_dtype dtype;
    uint32_t rank;
    int64_t shape[BST_MAX_DIMS];   /* bound shape, outermost first */
    int64_t strides[BST_MAX_DIMS]; /* bytes; innermost of a block type is the block's bytes */
    uint32_t sym[BST_MAX_DIMS];    /* bst_sym per dim */
    uint64_t span;                 /* bytes of the region, including the padding of views */
    uint8_t *bytes;                /* the region as written to the device */
    double *val;                   /* logical values, row-major in `shape` (float dtypes) */
    int32_t *ids;                  /* logical values (i32) */
} bo_tensor;

/* Lays out a view of `shape`: a contiguous parent whose dims are permuted into the view by
 * `perm` (view dim i is parent dim perm[i]; NULL = identity) and whose rows carry `pad` extra
 * elements (blocks, for block types) at their end. Gaps are filled with 0xFF bytes (NaN for
 * float types) so a kernel that reads them produces NaN. Values start at zero. */
void bo_tensor_view(bo_tensor *t, bst_dtype dtype, uint32_t rank, const int64_t *shape,
                    const uint32_t *perm, int64_t pad);
/* A contiguous tensor. */
void bo_tensor_contig(bo_tensor *t, bst_dtype dtype, uint32_t rank, const int64_t *shape);
void bo_tensor_free(bo_tensor *t);
int64_t bo_tensor_numel(const bo_tensor *t);
/* Stores row-major `values` (numel of them) in the tensor's dtype (block types through
 * bsti_quantize, row by row) and sets the logical values to what the stored bytes mean. */
void bo_tensor_set(bo_tensor *t, const float *values);
/* bo_tensor_set with uniform random values in [lo, hi). */
void bo_tensor_fill(bo_tensor *t, bo_rng *rng, double lo, double hi);
/* Stores i32 values. */
void bo_tensor_set_ids(bo_tensor *t, const int32_t *ids);

/* --- cases --------------------------------------------------------------------------------- */

typedef enum bo_metric {
    BO_NMSE,  /* f32 output: sum((out-ref)^2) / sum(ref^2) <= tol */
    BO_EXACT, /* f32/i32/f16/bf16 output: every value equal */
    BO_ULP,   /* f16/bf16 output: within tol ulps of ref rounded to the type (cpu: cpu_tol) */
    BO_QUANT  /* block output: dequantizes to within the type's quantization error of ref; on
                 the CPU backend also byte-identical to bsti_quantize(ref) */
} bo_metric;

typedef struct bo_case {
    bst_op op;
    char dtype_label[32]; /* summary column, e.g. "q4_1" or "f32->f16" */
    char what[224];       /* shapes and layout, for failure messages */
    uint32_t n_in;
    bo_tensor in[BST_MAX_INPUTS];
    bo_tensor out;
    int alias_in; /* output shares this input's memory (SET_ROWS dst), or -1 */
    uint32_t n_attrs;
    bst_attr attrs[BST_MAX_ATTRS];
    int64_t n_tokens, n_kv; /* run-time extents of the symbolic dims */
    bo_metric metric;
    double tol, cpu_tol;
    double *ref;        /* expected value of each output element (bound shape, row-major) */
    uint8_t *expect;    /* per output element: 1 = computed and compared, 0 = must not change */
    uint8_t *ref_bytes; /* block outputs: expected region bytes (rows with expect set) */
    bool cpu_optional;  /* the CPU reference backend need not support this case */
} bo_case;

/* Starts a case of `op`; label is the summary's dtype column. n_tokens = n_kv = 1 (a backend
 * must ignore them for tensors without symbolic dims). */
void bo_case_init(bo_case *c, bst_op op, const char *label);
/* Appends a description to c->what. */
void bo_case_what(bo_case *c, const char *fmt, ...) BST_PRINTF(2, 3);
bo_tensor *bo_case_input(bo_case *c);
void bo_case_output(bo_case *c, bst_dtype dtype, uint32_t rank, const int64_t *shape);
void bo_case_attr_int(bo_case *c, bst_attr_key key, int64_t v);
void bo_case_attr_float(bo_case *c, bst_attr_key key, double v);
void bo_case_attr_ints(bo_case *c, bst_attr_key key, uint32_t n, const int64_t *v);

/* Run-time extent of dim d of t (its bound unless symbolic). */
int64_t bo_eff_dim(const bo_case *c, const bo_tensor *t, uint32_t d);
/* Logical values of t restricted to its run-time extents (malloc'd, row-major in the effective
 * shape written to eff_shape, which may be NULL). */
double *bo_eff_values(const bo_case *c, const bo_tensor *t, int64_t *eff_shape);
int32_t *bo_eff_ids(const bo_case *c, const bo_tensor *t, int64_t *eff_shape);
/* Sets the expected output from values in the output's effective shape: those elements are
 * compared, the rest of the output region must stay untouched. */
void bo_case_set_ref(bo_case *c, const double *eff_ref);
/* Lower level, for outputs that keep part of their old content (SET_ROWS): allocate ref and
 * expect (all zero), let the caller fill them, then bo_case_finish_ref. */
void bo_case_alloc_ref(bo_case *c);
void bo_case_finish_ref(bo_case *c);

/* Runs the case on every device and frees it. Returns the number of failures (a case the
 * harness could not build or run counts as one). */
int bo_run(bo_case *c);
void bo_case_free(bo_case *c);

/* --- families, summary, devices ------------------------------------------------------------ */

/* The case families of tools/conformance/backend_ops_cases.c, in their fixed order (case
 * numbers depend on it; new families are appended). run() builds and runs every case of the
 * family between bo_family_begin and bo_family_end. */
typedef struct bo_family {
    const char *name;
    void (*run)(void);
} bo_family;
const bo_family *bo_families(size_t *out_n);
/* Runs the family `name`: its failure count (bo_family_end), or -1 when there is none. */
int bo_family_run(const char *name);

/* Where devices come from: `init` runs once, before the first use of a device, and registers
 * devices with bo_device_add; `fini` (may be NULL) runs in bo_shutdown. Without a source the
 * harness has no device: cases are built and numbered but run nowhere. */
void bo_set_device_source(void (*init)(void), void (*fini)(void));
/* Registers a device (handle NULL: it failed to open, counted by bo_device_open_failures).
 * `api` must outlive the harness. Returns its index, or UINT32_MAX when the table is full (then
 * counted as a device that failed to open, with a message on stderr). */
uint32_t bo_device_add(const bst_backend_api *api, void *handle, const char *label, bool is_cpu);
/* The message that goes with a status a plugin returned (default bst_last_error). */
void bo_set_last_error(const char *(*fn)(void));

/* Per-run outcomes, for callers that report more than the summary table (the conformance
 * tool). */
typedef enum bo_outcome {
    BO_PASS,
    BO_FAIL,
    BO_UNSUPPORTED,
    BO_ERROR /* the harness failed (see "harness failures"), not the kernel */
} bo_outcome;

typedef struct bo_result {
    uint64_t case_no;    /* position of the case in the family order */
    uint32_t dev;        /* device index */
    const bo_case *c;    /* valid during the callback only */
    const char *variant; /* kernel variant name, "-" when none ran */
    bo_outcome outcome;
    const char *why;     /* failure or error reason, NULL on PASS / UNSUPPORTED */
    double nmse_ref;     /* output vs the CPU reference backend's output; NAN when not compared */
    double nmse_oracle;  /* output vs the double-precision oracle; NAN when no output */
    uint64_t exec_ns;    /* wall time of the execute call */
} bo_result;

typedef struct bo_hooks {
    /* Called before case `case_no` runs; false skips it (it still takes its number). */
    bool (*select)(void *ud, uint64_t case_no, const bo_case *c);
    /* Called after every (device, variant) run, for every NOT_SUPPORTED answer and for every
     * device of a case the harness could not build (variant "-", BO_ERROR). */
    void (*result)(void *ud, const bo_result *r);
    void *ud;
    bool quiet; /* no FAIL / CPU GAP lines on stdout */
} bo_hooks;
/* Installs hooks (copied); NULL removes them. */
void bo_set_hooks(const bo_hooks *h);

void bo_family_begin(const char *name);
/* Failures since bo_family_begin; also counts a family with no case run at all as a failure. */
int bo_family_end(void);
void bo_print_summary(void);
/* Records a check that runs no kernel (view ops' query, malformed nodes) in the summary and the
 * current family: PASS when `ok`, else FAIL (failed) or NOT_SUPPORTED. */
void bo_record_query(uint32_t dev, bst_op op, const char *label, bool ok, bool failed);
/* Cases the CPU reference backend answered NOT_SUPPORTED without being marked optional. */
int bo_cpu_gaps(void);

uint32_t bo_device_count(void);
/* NULL when the device failed to open. */
void *bo_device_handle(uint32_t i);
const bst_backend_api *bo_device_api(uint32_t i);
const char *bo_device_label(uint32_t i);
bool bo_device_is_cpu(uint32_t i);
/* The first CPU device that opened, or UINT32_MAX. */
uint32_t bo_cpu_device(void);
/* Devices that failed to open. */
uint32_t bo_device_open_failures(void);
void bo_shutdown(void);

/* Descriptors of a case as one node (one binding per tensor). Pointers refer into *n. */
typedef struct bo_node {
    bst_tensor_desc in[BST_MAX_INPUTS];
    const bst_tensor_desc *in_ptr[BST_MAX_INPUTS];
    bst_tensor_desc out;
    const bst_attr *attr_ptr[BST_MAX_ATTRS];
    bst_node_desc node;
} bo_node;
void bo_node_build(const bo_case *c, bo_node *n);

/* Checker self-test: runs `c` on device `dev`, then corrupts the results in ways a broken kernel
 * would (a wrong value, a guard byte, an input byte, a byte past the symbolic extent) and
 * confirms that the checker rejects each. Returns the number of corruptions NOT detected (or
 * -1 when the case did not pass to begin with or the harness failed; the reason is printed).
 * Frees the case. */
int bo_selftest(bo_case *c, uint32_t dev);

/* The fused ATTENTION family (backend_ops_attention.c): runs its cases between
 * bo_family_begin and bo_family_end and returns the latter. */
int bo_attention_family(void);

#endif /* BASTION_TESTS_BACKEND_OPS_HARNESS_H */
