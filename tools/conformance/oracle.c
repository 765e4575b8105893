/*
 * tools/conformance/oracle.c — double-precision reference semantics of the primitive ops, from
 * the op comments in include/bastion/backend.h. Deliberately naive (straight loops, double
 * accumulation, libm in double): its job is to be obviously right, not fast.
 */
#include "oracle.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

/* --- small IEEE formats ------------------------------------------------------------------ */

typedef struct small_format {
    int mbits;  /* stored mantissa bits */
    int ebits;  /* exponent field bits */
    int ebias;  /* exponent bias */
    uint16_t qnan;
} small_format;

static const small_format F16 = {10, 5, 15, 0x7E00};
static const small_format BF16 = {7, 8, 127, 0x7FC0};

static uint16_t round_small(double x, const small_format *f)
{
    if (isnan(x))
        return f->qnan;
    uint16_t sign = signbit(x) ? (uint16_t)0x8000 : (uint16_t)0;
    double a = fabs(x);
    int emax = (1 << (f->ebits - 1)) - 1; /* largest unbiased exponent of a finite value */
    int emin = 1 - f->ebias;              /* smallest normal exponent */
    uint32_t inf_bits = ((1u << f->ebits) - 1u) << f->mbits;
    /* Halfway between the largest finite value and 2^(emax+1): it and above round to infinity
     * (the largest finite value has an odd mantissa, so the tie goes up). */
    double overflow = ldexp(2.0 - ldexp(1.0, -(f->mbits + 1)), emax);
    if (a >= overflow)
        return (uint16_t)(sign | inf_bits);
    uint32_t bits;
    if (a < ldexp(1.0, emin)) {
        /* Subnormal: a multiple of 2^(emin - mbits). nearbyint rounds ties to even. */
        bits = (uint32_t)nearbyint(ldexp(a, f->mbits - emin));
    } else {
        int e2;
        (void)frexp(a, &e2); /* a = m * 2^e2, m in [0.5, 1) */
        int e = e2 - 1;
        double q = nearbyint(ldexp(a, f->mbits - e)); /* in [2^mbits, 2^(mbits+1)] */
        /* q == 2^(mbits+1) carries into the exponent field, which is what rounding up does. */
        bits = ((uint32_t)(e + f->ebias) << f->mbits) + (uint32_t)q - (1u << f->mbits);
    }
    return (uint16_t)(sign | bits);
}

static double value_small(uint16_t bits, const small_format *f)
{
    uint32_t mmask = (1u << f->mbits) - 1u;
    uint32_t emask = (1u << f->ebits) - 1u;
    uint32_t mant = bits & mmask;
    uint32_t ef = ((uint32_t)bits >> f->mbits) & emask;
    double sign = (bits & 0x8000u) ? -1.0 : 1.0;
    if (ef == emask)
        return mant ? NAN : sign * INFINITY;
    if (ef == 0)
        return sign * ldexp((double)mant, 1 - f->ebias - f->mbits);
    return sign * ldexp((double)(mant | (1u << f->mbits)), (int)ef - f->ebias - f->mbits);
}

uint16_t oracle_round_f16(double x) { return round_small(x, &F16); }
uint16_t oracle_round_bf16(double x) { return round_small(x, &BF16); }
double oracle_f16_value(uint16_t bits) { return value_small(bits, &F16); }
double oracle_bf16_value(uint16_t bits) { return value_small(bits, &BF16); }
double oracle_as_f32(double x) { return (double)(float)x; }

int64_t oracle_numel(uint32_t rank, const int64_t *dims)
{
    int64_t n = 1;
    for (uint32_t i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

/* --- ops --------------------------------------------------------------------------------- */

void oracle_get_rows(const double *table, int64_t n_rows, int64_t n_cols, const int32_t *ids,
                     int64_t n_ids, double *out)
{
    (void)n_rows;
    for (int64_t i = 0; i < n_ids; i++)
        for (int64_t c = 0; c < n_cols; c++)
            out[i * n_cols + c] = table[(int64_t)ids[i] * n_cols + c];
}

/* Index into b (dims aligned at the innermost, size-1 dims broadcast) of element `i` of a. */
static int64_t broadcast_index(int64_t i, uint32_t a_rank, const int64_t *a_dims,
                               uint32_t b_rank, const int64_t *b_dims)
{
    int64_t bi = 0, bstride = 1;
    for (uint32_t k = 0; k < a_rank; k++) {
        uint32_t ad = a_rank - 1 - k; /* innermost first */
        int64_t coord = i % a_dims[ad];
        i /= a_dims[ad];
        if (k < b_rank) {
            int64_t bd = b_dims[b_rank - 1 - k];
            bi += (bd == 1 ? 0 : coord) * bstride;
            bstride *= bd;
        }
    }
    return bi;
}

static void binary(bool mul, const double *a, uint32_t a_rank, const int64_t *a_dims,
                   const double *b, uint32_t b_rank, const int64_t *b_dims, double *out)
{
    int64_t n = oracle_numel(a_rank, a_dims);
    for (int64_t i = 0; i < n; i++) {
        double bv = b[broadcast_index(i, a_rank, a_dims, b_rank, b_dims)];
        out[i] = mul ? a[i] * bv : a[i] + bv;
    }
}

void oracle_add(const double *a, uint32_t a_rank, const int64_t *a_dims, const double *b,
                uint32_t b_rank, const int64_t *b_dims, double *out)
{
    binary(false, a, a_rank, a_dims, b, b_rank, b_dims, out);
}

void oracle_mul(const double *a, uint32_t a_rank, const int64_t *a_dims, const double *b,
                uint32_t b_rank, const int64_t *b_dims, double *out)
{
    binary(true, a, a_rank, a_dims, b, b_rank, b_dims, out);
}

void oracle_scale(const double *x, int64_t n, double scale, double *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale;
}

void oracle_matmul(const double *a, int64_t ba, int64_t m, int64_t k, const double *b,
                   int64_t bb, int64_t n, double *out)
{
    int64_t group = ba / bb;
    for (int64_t bi = 0; bi < ba; bi++) {
        const double *ab = a + bi * m * k;
        const double *bm = b + (bi / group) * n * k;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0.0;
                for (int64_t q = 0; q < k; q++)
                    s += ab[i * k + q] * bm[j * k + q];
                out[(bi * m + i) * n + j] = s;
            }
    }
}

void oracle_rms_norm(const double *x, int64_t rows, int64_t cols, double eps, double *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        double ss = 0.0;
        for (int64_t c = 0; c < cols; c++)
            ss += xr[c] * xr[c];
        double inv = 1.0 / sqrt(ss / (double)cols + eps);
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = xr[c] * inv;
    }
}

void oracle_layer_norm(const double *x, int64_t rows, int64_t cols, double eps, double *out)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * cols;
        double mean = 0.0;
        for (int64_t c = 0; c < cols; c++)
            mean += xr[c];
        mean /= (double)cols;
        double var = 0.0;
        for (int64_t c = 0; c < cols; c++)
            var += (xr[c] - mean) * (xr[c] - mean);
        var /= (double)cols;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = (xr[c] - mean) * inv;
    }
}

void oracle_rope(const double *x, int64_t t, int64_t h, int64_t d, const int32_t *pos,
                 int mode, double theta_base, int64_t dims, double *out)
{
    int64_t half = dims / 2;
    for (int64_t ti = 0; ti < t; ti++)
        for (int64_t hi = 0; hi < h; hi++) {
            const double *xr = x + (ti * h + hi) * d;
            double *o = out + (ti * h + hi) * d;
            for (int64_t c = dims; c < d; c++)
                o[c] = xr[c];
            for (int64_t i = 0; i < half; i++) {
                /* theta_i = pos * base^(-2i/dims) */
                double theta = (double)pos[ti] * pow(theta_base, -2.0 * (double)i / (double)dims);
                double cs = cos(theta), sn = sin(theta);
                int64_t i0 = mode == 2 ? i : 2 * i;
                int64_t i1 = mode == 2 ? i + half : 2 * i + 1;
                double x0 = xr[i0], x1 = xr[i1];
                o[i0] = x0 * cs - x1 * sn;
                o[i1] = x0 * sn + x1 * cs;
            }
        }
}

void oracle_softmax(const double *x, uint32_t x_rank, const int64_t *x_dims, const double *mask,
                    uint32_t m_rank, const int64_t *m_dims, double scale, double *out)
{
    int64_t k = x_dims[x_rank - 1];
    int64_t rows = oracle_numel(x_rank, x_dims) / k;
    for (int64_t r = 0; r < rows; r++) {
        double *o = out + r * k;
        double mx = -INFINITY;
        for (int64_t c = 0; c < k; c++) {
            int64_t i = r * k + c;
            double v = x[i] * scale;
            if (mask)
                v += mask[broadcast_index(i, x_rank, x_dims, m_rank, m_dims)];
            o[c] = v;
            if (v > mx)
                mx = v;
        }
        if (mx == -INFINITY) { /* every position removed */
            for (int64_t c = 0; c < k; c++)
                o[c] = 0.0;
            continue;
        }
        double sum = 0.0;
        for (int64_t c = 0; c < k; c++) {
            o[c] = o[c] == -INFINITY ? 0.0 : exp(o[c] - mx);
            sum += o[c];
        }
        for (int64_t c = 0; c < k; c++)
            o[c] /= sum;
    }
}

void oracle_silu(const double *x, int64_t n, double *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] / (1.0 + exp(-x[i]));
}

void oracle_gelu(const double *x, int64_t n, double *out)
{
    const double sqrt_2_over_pi = 0.79788456080286535587989211986876;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        out[i] = 0.5 * v * (1.0 + tanh(sqrt_2_over_pi * (v + 0.044715 * v * v * v)));
    }
}

void oracle_concat(const double *a, const int64_t *a_dims, const double *b,
                   const int64_t *b_dims, uint32_t rank, uint32_t axis, double *out)
{
    /* View both as [outer, axis, inner]: the output interleaves a's and b's axis slabs. */
    int64_t outer = 1, inner = 1;
    for (uint32_t i = 0; i < axis; i++)
        outer *= a_dims[i];
    for (uint32_t i = axis + 1; i < rank; i++)
        inner *= a_dims[i];
    int64_t na = a_dims[axis] * inner, nb = b_dims[axis] * inner;
    for (int64_t o = 0; o < outer; o++) {
        double *dst = out + o * (na + nb);
        for (int64_t i = 0; i < na; i++)
            dst[i] = a[o * na + i];
        for (int64_t i = 0; i < nb; i++)
            dst[na + i] = b[o * nb + i];
    }
}

void oracle_attention(const double *q, int64_t t, int64_t hq, int64_t d, const double *k,
                      const double *v, int64_t s, int64_t hkv, const double *mask, int64_t m_rows,
                      int64_t m_cols, double scale, bool causal, int64_t window, double *scratch,
                      double *out)
{
    int64_t group = hkv ? hq / hkv : 1;
    double *w = scratch;
    for (int64_t i = 0; i < t; i++) {
        int64_t pos = s - t + i;
        for (int64_t h = 0; h < hq; h++) {
            const double *qr = q + (i * hq + h) * d;
            int64_t kh = h / group;
            double mx = -INFINITY;
            for (int64_t j = 0; j < s; j++) {
                bool hidden = (causal && j > pos) || (window > 0 && j <= pos - window);
                double sc = -INFINITY;
                if (!hidden) {
                    const double *kr = k + (j * hkv + kh) * d;
                    double dot = 0.0;
                    for (int64_t c = 0; c < d; c++)
                        dot += qr[c] * kr[c];
                    sc = dot * scale;
                    if (mask)
                        sc += mask[(m_rows == 1 ? 0 : i) * m_cols + (m_cols == 1 ? 0 : j)];
                }
                w[j] = sc;
                if (sc > mx)
                    mx = sc;
            }
            double *o = out + (i * hq + h) * d;
            for (int64_t c = 0; c < d; c++)
                o[c] = 0.0;
            if (mx == -INFINITY) /* every key removed */
                continue;
            double sum = 0.0;
            for (int64_t j = 0; j < s; j++) {
                w[j] = w[j] == -INFINITY ? 0.0 : exp(w[j] - mx);
                sum += w[j];
            }
            for (int64_t j = 0; j < s; j++) {
                if (w[j] == 0.0)
                    continue;
                const double *vr = v + (j * hkv + kh) * d;
                for (int64_t c = 0; c < d; c++)
                    o[c] += w[j] / sum * vr[c];
            }
        }
    }
}

void oracle_argmax(const double *x, int64_t rows, int64_t n, int32_t *out)
{
    for (int64_t r = 0; r < rows; r++) {
        int64_t best = 0;
        for (int64_t c = 1; c < n; c++)
            if (x[r * n + c] > x[r * n + best])
                best = c;
        out[r] = (int32_t)best;
    }
}
