/*
 * The 16-bit-weight GEMV's driver (cpu_gemv_float.h): which matmuls it takes, and the split of the
 * weight rows over the pool. The row kernels are per ISA (cpu_gemv_float_avx512.c,
 * cpu_gemv_float_avx2.c).
 */
#include "cpu_gemv_float.h"
#include "cpu_packed.h"

/* Weight rows per share unit: shares start on 64-byte lines of the output. */
#define ROWS_PER_UNIT 16

/* The job for r, or false when r is not one the kernels take: activation rows in
 * [min_rows, max_rows), f16 or bf16 weights (f32 too with f32_ok). */
static bool make_job(const cpu_run *r, int64_t min_rows, int64_t max_rows, bool f32_ok,
                     cpu_gemv_job *job)
{
    const cpu_tensor *a = &r->in[0], *b = &r->in[1], *o = &r->out;
    float *abase, *obase;
    int64_t lda, ldo;
    const bool half = b->dtype == BST_DTYPE_F16 || b->dtype == BST_DTYPE_BF16;
    const bool f32 = f32_ok && b->dtype == BST_DTYPE_F32;
    if (r->node->op != BST_OP_MATMUL || !(half || f32) || b->ne[0] != 1 || b->ne[1] != 1 ||
        b->nb[3] != (half ? 2 : 4) || !cpu_rows_uniform(a, &abase, &lda) ||
        !cpu_rows_uniform(o, &obase, &ldo))
        return false;
    const int64_t M = a->ne[0] * a->ne[1] * a->ne[2];
    if (M < min_rows || M >= max_rows || a->ne[3] < 1 || a->ne[3] != b->ne[3] ||
        o->ne[3] != b->ne[2])
        return false;
    *job = (cpu_gemv_job){b->data, b->nb[2], b->dtype, abase, lda, M, a->ne[3], obase, ldo};
    return true;
}

typedef struct gemv_task {
    const cpu_gemv_job *job;
    cpu_gemv_rows_fn fn;
    int64_t pass_rows; /* activation rows fn takes per pass over the weight */
} gemv_task;

static void gemv_units(cpu_run *r, int64_t begin, int64_t end, uint32_t w)
{
    (void)w;
    const gemv_task *t = r->aux;
    const int64_t N = r->in[1].ne[2];
    const int64_t n1 = end * ROWS_PER_UNIT < N ? end * ROWS_PER_UNIT : N;
    /* Activation rows in passes of at most pass_rows, each streaming the share. */
    for (int64_t m0 = 0; m0 < t->job->M; m0 += t->pass_rows) {
        cpu_gemv_job pass = *t->job;
        pass.a += m0 * pass.lda;
        pass.out += m0 * pass.ldo;
        pass.M = pass.M - m0 < t->pass_rows ? pass.M - m0 : t->pass_rows;
        t->fn(&pass, begin * ROWS_PER_UNIT, n1);
    }
}

/* The weight rows of job split over the pool, one contiguous run of rows per worker, so that
 * each streams its share front to back: with the pool's usual chunks of 16 rows, 1536 x 576 f16
 * took 49-51 us against 38-41 (4096 x 14336: 2.2-2.9 ms against 2.2-2.7). A small weight stays
 * on one thread when waking another costs more than its share would take. */
static void run_shares(cpu_run *r, const cpu_gemv_job *job, cpu_gemv_rows_fn fn,
                       int64_t pass_rows)
{
    const int64_t N = r->in[1].ne[2];
    const int64_t units = (N + ROWS_PER_UNIT - 1) / ROWS_PER_UNIT;
    const int64_t workers = r->n_workers ? r->n_workers : 1;
    int64_t grain = (units + workers - 1) / workers;
    const int64_t min_grain = cpu_grain(ROWS_PER_UNIT * job->K * job->M);
    grain = grain > min_grain ? grain : min_grain;
    gemv_task task = {job, fn, pass_rows};
    void *saved = r->aux;
    r->aux = &task;
    cpu_parallel(r, units, grain, gemv_units);
    r->aux = saved;
}

bool cpu_run_gemv_float(cpu_run *r, cpu_gemv_rows_fn fn, int64_t max_rows)
{
    cpu_gemv_job job;
    if (!fn || !make_job(r, 1, max_rows, false, &job))
        return false;
    run_shares(r, &job, fn, CPU_GEMV_MAX_ROWS);
    return true;
}

bool cpu_run_gemm_dot(cpu_run *r, cpu_gemv_rows_fn fn, int64_t min_rows, int64_t max_rows)
{
    cpu_gemv_job job;
    if (!fn || !make_job(r, min_rows, max_rows, true, &job))
        return false;
    run_shares(r, &job, fn, job.M);
    return true;
}
