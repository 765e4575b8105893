/*
 * tools/conformance/backend_ops_check.c — the checker of the op conformance harness: judges one
 * run of a case on a device from its buffers before and after execute. No byte may change but
 * the output elements the kernel had to compute (guards, inputs, elements past a symbolic extent
 * and SET_ROWS' other rows stay as they were), none of those may be left unwritten, and their
 * values must meet the case's metric (NMSE, exact, ulps, a block's quantization bound) against
 * the oracle and, on other backends, against the CPU reference backend's output.
 *
 * Why a file of its own: what counts as a pass is decided here and nowhere else, apart from
 * building, laying out and running the cases (backend_ops_harness.c), which hands each run's
 * buffers to check_run. The interface between the two is backend_ops_check.h.
 */
#include "backend_ops_check.h"

#include "graph/quant.h"
#include "oracle.h"

#include <bastion/bastion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void describe_elem(const bo_tensor *t, int64_t i, char *buf, size_t n)
{
    int64_t coord[BST_MAX_DIMS];
    unravel(i, t->rank, t->shape, coord);
    size_t len = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->rank && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)coord[d]);
    if (len < n)
        snprintf(buf + len, n - len, "]");
}

/* Which tensor region (or guard) byte `pos` of binding `b` belongs to, for messages. */
static void classify_byte(const bo_case *c, const layout *L, uint32_t b, uint64_t pos,
                          char *buf, size_t n)
{
    for (uint32_t t = 0; t <= c->n_in; t++) {
        const bo_tensor *ten = tensor_at(c, t);
        if (L->binding[t] != b || pos < L->offset[t] || pos >= L->offset[t] + ten->span)
            continue;
        if (t == c->n_in || (int)t == c->alias_in)
            snprintf(buf, n, "an output element it must leave untouched (byte %llu of the "
                             "output region: past a symbolic extent, or a row not in ids)",
                     (unsigned long long)(pos - L->offset[t]));
        else
            snprintf(buf, n, "input %u (byte %llu of its region)", t,
                     (unsigned long long)(pos - L->offset[t]));
        return;
    }
    if (L->binding[c->n_in] != b) {
        snprintf(buf, n, "guard bytes: wrote outside its output (binding %u byte %llu, a buffer "
                         "holding only inputs)",
                 b, (unsigned long long)pos);
        return;
    }
    int64_t rel = (int64_t)pos - (int64_t)L->offset[c->n_in];
    if (rel >= 0)
        rel -= (int64_t)c->out.span - 1;
    snprintf(buf, n, "guard bytes: wrote outside its output (binding %u byte %llu, %+lld from "
                     "the output region)",
             b, (unsigned long long)pos, (long long)rel);
}

static int64_t ulp_key(uint16_t bits)
{
    return (bits & 0x8000u) ? -(int64_t)(bits & 0x7FFFu) : (int64_t)(bits & 0x7FFFu);
}

static uint16_t round_to(bst_dtype dt, double v)
{
    return dt == BST_DTYPE_F16 ? oracle_round_f16(v) : oracle_round_bf16(v);
}

/* Largest error one block of targets `x` (bs values) may have after quantizing to `dt`. The
 * step follows from the layouts in backend.h: symmetric types (q4_0, q5_0, q8_0) scale by the
 * largest magnitude, asymmetric ones (q4_1, q5_1) span min..max. The clamp of the symmetric
 * 4/5-bit types can cost a whole step at the end opposite the largest magnitude; d and m are
 * stored as f16, which costs up to qmax * d * 2^-11 + |m| * 2^-11. */
static double quant_bound(bst_dtype dt, const double *x, uint32_t bs)
{
    double amax = 0.0, mn = x[0], mx = x[0];
    for (uint32_t i = 0; i < bs; i++) {
        if (fabs(x[i]) > amax)
            amax = fabs(x[i]);
        if (x[i] < mn)
            mn = x[i];
        if (x[i] > mx)
            mx = x[i];
    }
    double d, qmax, frac;
    switch (dt) {
    case BST_DTYPE_Q4_0: d = amax / 8.0, qmax = 8.0, frac = 1.0; break;
    case BST_DTYPE_Q5_0: d = amax / 16.0, qmax = 16.0, frac = 1.0; break;
    case BST_DTYPE_Q8_0: d = amax / 127.0, qmax = 127.0, frac = 0.5; break;
    case BST_DTYPE_Q4_1: d = (mx - mn) / 15.0, qmax = 15.0, frac = 0.5; break;
    case BST_DTYPE_Q5_1: d = (mx - mn) / 31.0, qmax = 31.0, frac = 0.5; break;
    default: harness_fail("no quantization bound for %s", bst_dtype_name(dt)); return 0.0;
    }
    return d * (frac + qmax / 1024.0) + fabs(mn) / 1024.0 + 1e-6 * amax + 1e-30;
}

/* Compares decoded output values `got` with `want` on the elements with expect set.
 * vs_cpu: `want` is the CPU backend's output, not the oracle's. */
bool compare_values(const bo_case *c, const double *got, const double *want, double tol,
                    bool vs_cpu, char *why, size_t n)
{
    const bo_tensor *o = &c->out;
    int64_t count = bo_tensor_numel(o);
    char where[96];
    switch (c->metric) {
    case BO_NMSE: {
        double num = 0.0, den = 0.0, worst = -1.0;
        int64_t worst_i = -1;
        for (int64_t i = 0; i < count; i++) {
            if (!c->expect[i])
                continue;
            if (!isfinite(got[i]) && isfinite(want[i])) {
                describe_elem(o, i, where, sizeof where);
                snprintf(why, n, "non-finite output %g at %s (expected %.9g)", got[i], where,
                         want[i]);
                return false;
            }
            double e = got[i] - want[i];
            num += e * e;
            den += want[i] * want[i];
            if (fabs(e) > worst) {
                worst = fabs(e);
                worst_i = i;
            }
        }
        double nmse = den > 0.0 ? num / den : num;
        if (!(nmse <= tol)) {
            describe_elem(o, worst_i, where, sizeof where);
            snprintf(why, n, "NMSE %.3g > %.3g%s (worst at %s: got %.9g, expected %.9g)", nmse,
                     tol, vs_cpu ? " vs the CPU backend" : "", where, got[worst_i],
                     want[worst_i]);
            return false;
        }
        return true;
    }
    case BO_EXACT:
        for (int64_t i = 0; i < count; i++)
            if (c->expect[i] && !(got[i] == want[i])) {
                describe_elem(o, i, where, sizeof where);
                snprintf(why, n, "mismatch at %s: got %.9g, expected %.9g%s", where, got[i],
                         want[i], vs_cpu ? " (CPU backend)" : "");
                return false;
            }
        return true;
    case BO_ULP:
        for (int64_t i = 0; i < count; i++) {
            if (!c->expect[i])
                continue;
            uint16_t g = round_to(o->dtype, got[i]), w = round_to(o->dtype, want[i]);
            double dist = (double)llabs(ulp_key(g) - ulp_key(w));
            if (isnan(got[i]) != isnan(want[i]) || dist > tol) {
                describe_elem(o, i, where, sizeof where);
                snprintf(why, n, "%s at %s: got %.9g (0x%04x), expected %.9g (0x%04x): %.0f ulp > "
                                 "%.0f%s",
                         bst_dtype_name(o->dtype), where, got[i], g, want[i], w, dist, tol,
                         vs_cpu ? " vs the CPU backend" : "");
                return false;
            }
        }
        return true;
    case BO_QUANT: {
        if (vs_cpu)
            return true; /* each backend is held to the quantization bound of the input */
        uint32_t bs = dt_block(o->dtype);
        for (int64_t i = 0; i < count; i += bs) {
            if (!c->expect[i])
                continue;
            double bound = quant_bound(o->dtype, want + i, bs);
            for (uint32_t j = 0; j < bs; j++)
                if (!(fabs(got[i + j] - want[i + j]) <= bound)) {
                    describe_elem(o, i + j, where, sizeof where);
                    snprintf(why, n, "%s element %s dequantizes to %.9g, input %.9g: error above "
                                     "the block's quantization bound %.3g",
                             bst_dtype_name(o->dtype), where, got[i + j], want[i + j], bound);
                    return false;
                }
        }
        return true;
    }
    }
    return false;
}

/* Judges one run from the buffers before and after. Writes decoded output values to `got`. */
bool check_run(const bo_case *c, const layout *L, uint8_t *const *init,
               uint8_t *const *after, bool is_cpu, double *got, char *why, size_t n)
{
    const bo_tensor *o = &c->out;
    uint32_t ob = L->binding[c->n_in];
    uint64_t ooff = L->offset[c->n_in];
    uint32_t bb = dt_bytes(o->dtype), bs = dt_block(o->dtype);

    /* 1. No byte may change except the output units the kernel had to compute. */
    uint8_t *writable = bo_alloc((size_t)L->size[ob], 1, "the writable-byte map");
    if (!writable)
        return false;
    int64_t first;
    for (int64_t u = 0; u < unit_count(o); u++) {
        uint64_t off = unit_offset(o, u, &first);
        if (c->expect[first])
            memset(writable + ooff + off, 1, bb);
    }
    for (uint32_t b = 0; b < L->n_bindings; b++)
        for (uint64_t j = 0; j < L->size[b]; j++) {
            if (after[b][j] == init[b][j] || (b == ob && writable[j]))
                continue;
            char where[256];
            classify_byte(c, L, b, j, where, sizeof where);
            snprintf(why, n, "changed %s", where);
            free(writable);
            return false;
        }
    free(writable);

    /* 2. Decode, and catch computed units the kernel left as they were. */
    const uint8_t *region = after[ob] + ooff;
    int64_t count = bo_tensor_numel(o);
    for (int64_t i = 0; i < count; i++)
        got[i] = NAN;
    float *tmp = bo_alloc(bs, sizeof *tmp, "a decoded output block");
    if (!tmp)
        return false;
    for (int64_t u = 0; u < unit_count(o); u++) {
        uint64_t off = unit_offset(o, u, &first);
        if (!c->expect[first])
            continue;
        if (c->alias_in < 0 && !memcmp(region + off, init[ob] + ooff + off, bb)) {
            uint8_t want[16];
            if (bs > 1)
                memcpy(want, c->ref_bytes + off, bb < sizeof want ? bb : sizeof want);
            else
                (void)encode_plain(o->dtype, c->ref[first], want);
            if (memcmp(want, region + off, bb < sizeof want ? bb : sizeof want)) {
                char where[96];
                describe_elem(o, first, where, sizeof where);
                snprintf(why, n, "left output element %s unwritten", where);
                free(tmp);
                return false;
            }
        }
        if (bs == 1) {
            got[first] = decode_plain(o->dtype, region + off);
        } else {
            if (bsti_dequantize(o->dtype, region + off, tmp, bs) != BST_OK) {
                harness_fail("bsti_dequantize refused a %s block", bst_dtype_name(o->dtype));
                free(tmp);
                return false;
            }
            for (uint32_t j = 0; j < bs; j++)
                got[first + j] = (double)tmp[j];
        }
    }
    free(tmp);

    /* 3. Values. */
    if (!compare_values(c, got, c->ref, is_cpu ? c->cpu_tol : c->tol, false, why, n))
        return false;
    if (c->metric == BO_QUANT && is_cpu) {
        /* The CPU reference quantizes with the reference quantizer: same bytes. */
        for (int64_t u = 0; u < unit_count(o); u++) {
            uint64_t off = unit_offset(o, u, &first);
            if (c->expect[first] && memcmp(region + off, c->ref_bytes + off, bb)) {
                char where[96];
                describe_elem(o, first, where, sizeof where);
                snprintf(why, n, "block at %s differs from bsti_quantize's bytes", where);
                return false;
            }
        }
    }
    return true;
}

/* NMSE of `got` against `want` over the compared output elements (NAN without both). */
double nmse_of(const bo_case *c, const double *got, const double *want)
{
    if (!got || !want)
        return NAN;
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < bo_tensor_numel(&c->out); i++) {
        if (!c->expect[i])
            continue;
        double e = got[i] - want[i];
        num += e * e;
        den += want[i] * want[i];
    }
    return den > 0.0 ? num / den : num;
}
