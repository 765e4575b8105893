/*
 * tools/tensor_data.c — random inputs, valid regions and output summaries for run-graph.
 *
 * Random data comes from splitmix64 so runs are reproducible from a seed on every platform (the C
 * library's rand() is not). The f16/bf16 conversions are here because the CLI sees only the
 * public API, which has no conversion entry; they round to nearest even, as CAST does.
 * Checksums cover only the valid region: with symbolic dims bound below their bound, the rest
 * of the buffer is padding whose content no backend promises.
 */
#include "tensor_data.h"

#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_OFFSET 0xcbf29ce484222325ull

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xffu)
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is the correct rounding, up to infinity */
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13))
                              : (sign | ((exp + 112u) << 23) | (mant << 13));
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* keep NaN a (quiet) NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static bool is_block_type(uint32_t dtype)
{
    return bst_dtype_block_size((bst_dtype)dtype) > 1;
}

/* Bytes of `n` elements along the innermost dim; 0 when not whole blocks. */
static uint64_t row_bytes(uint32_t dtype, int64_t n)
{
    uint32_t block = bst_dtype_block_size((bst_dtype)dtype);
    uint32_t bytes = bst_dtype_block_bytes((bst_dtype)dtype);
    if (block == 0 || n < 0 || (uint64_t)n % block != 0)
        return 0;
    uint64_t blocks = (uint64_t)n / block;
    return blocks > UINT64_MAX / bytes ? 0 : blocks * bytes;
}

bool td_bound_bytes(const bst_tensor_desc *desc, uint64_t *out_bytes)
{
    if (desc->rank > BST_MAX_DIMS || bst_dtype_block_size((bst_dtype)desc->dtype) == 0)
        return false;
    if (desc->rank == 0) {
        *out_bytes = row_bytes(desc->dtype, 1);
        return *out_bytes != 0;
    }
    int64_t inner = desc->shape[desc->rank - 1];
    uint64_t total = row_bytes(desc->dtype, inner);
    if (total == 0 && inner != 0)
        return false;
    for (uint32_t i = 0; i + 1 < desc->rank; i++) {
        if (desc->shape[i] < 0)
            return false;
        uint64_t d = (uint64_t)desc->shape[i];
        if (d != 0 && total > UINT64_MAX / d)
            return false;
        total *= d;
    }
    *out_bytes = total;
    return true;
}

bool td_fill_random(const bst_tensor_desc *desc, uint64_t seed, const char *name, void *dst,
                    uint64_t size)
{
    uint64_t state = seed ^ fnv1a(FNV_OFFSET, name, strlen(name));
    unsigned char *p = dst;
    switch (desc->dtype) {
    case BST_DTYPE_F32:
        for (uint64_t i = 0; i + 4 <= size; i += 4) {
            /* 24 random bits give every float in [-1, 1) on a grid of 2^-23: exact in f32. */
            float v = (float)(splitmix64(&state) >> 40) * (1.0f / 8388608.0f) - 1.0f;
            memcpy(p + i, &v, 4);
        }
        return true;
    case BST_DTYPE_F16:
    case BST_DTYPE_BF16:
        for (uint64_t i = 0; i + 2 <= size; i += 2) {
            float v = (float)(splitmix64(&state) >> 40) * (1.0f / 8388608.0f) - 1.0f;
            uint16_t h = desc->dtype == BST_DTYPE_F16 ? f32_to_f16(v) : f32_to_bf16(v);
            memcpy(p + i, &h, 2);
        }
        return true;
    case BST_DTYPE_I32:
        for (uint64_t i = 0; i + 4 <= size; i += 4) {
            int32_t v = (int32_t)(splitmix64(&state) >> 61);
            memcpy(p + i, &v, 4);
        }
        return true;
    case BST_DTYPE_I8:
        for (uint64_t i = 0; i < size; i++) {
            int8_t v = (int8_t)((int32_t)(splitmix64(&state) >> 56) - 128);
            p[i] = (unsigned char)v;
        }
        return true;
    default:
        return false;
    }
}

void td_extent(const bst_tensor_desc *desc, int64_t n_tokens, int64_t n_kv, int64_t *out_extent)
{
    for (uint32_t i = 0; i < BST_MAX_DIMS; i++) {
        int64_t e = i < desc->rank ? desc->shape[i] : 1;
        if (i < desc->rank && desc->sym[i] == BST_SYM_N_TOKENS)
            e = n_tokens;
        else if (i < desc->rank && desc->sym[i] == BST_SYM_N_KV)
            e = n_kv;
        out_extent[i] = e;
    }
}

/* Called for each innermost row of the valid region, in order; returns false to stop. */
typedef bool (*row_fn)(void *state, const int64_t *outer, uint32_t n_outer,
                       const unsigned char *row, int64_t n);

static void for_each_row(const bst_tensor_desc *desc, const int64_t *extent, const void *data,
                         row_fn fn, void *state)
{
    uint32_t rank = desc->rank;
    if (rank == 0) {
        fn(state, NULL, 0, data, 1);
        return;
    }
    uint32_t n_outer = rank - 1;
    uint64_t stride[BST_MAX_DIMS];
    stride[n_outer] = 0;
    uint64_t s = row_bytes(desc->dtype, desc->shape[n_outer]);
    for (uint32_t i = n_outer; i-- > 0;) {
        stride[i] = s;
        s *= (uint64_t)desc->shape[i];
    }
    for (uint32_t i = 0; i < rank; i++)
        if (extent[i] <= 0)
            return;
    int64_t idx[BST_MAX_DIMS] = {0};
    for (;;) {
        uint64_t off = 0;
        for (uint32_t i = 0; i < n_outer; i++)
            off += (uint64_t)idx[i] * stride[i];
        if (!fn(state, idx, n_outer, (const unsigned char *)data + off, extent[n_outer]))
            return;
        uint32_t d = n_outer;
        while (d > 0) {
            d--;
            if (++idx[d] < extent[d])
                break;
            idx[d] = 0;
            if (d == 0)
                return;
        }
        if (n_outer == 0)
            return;
    }
}

static bool is_float_type(uint32_t dtype)
{
    return dtype == BST_DTYPE_F32 || dtype == BST_DTYPE_F16 || dtype == BST_DTYPE_BF16;
}

static double element(uint32_t dtype, const unsigned char *row, int64_t i)
{
    switch (dtype) {
    case BST_DTYPE_F32: {
        float v;
        memcpy(&v, row + 4 * i, 4);
        return v;
    }
    case BST_DTYPE_F16:
    case BST_DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, row + 2 * i, 2);
        return dtype == BST_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    case BST_DTYPE_I32: {
        int32_t v;
        memcpy(&v, row + 4 * i, 4);
        return v;
    }
    case BST_DTYPE_I8:
        return (int8_t)row[i];
    default:
        return 0.0;
    }
}

/* Floats print with 9 significant digits: enough to tell any two f32 values apart. Integer
 * types print exactly (sums in double are exact below 2^53). */
static void print_number(FILE *out, uint32_t dtype, double v)
{
    if (is_float_type(dtype))
        fprintf(out, "%.9g", v);
    else
        fprintf(out, "%.17g", v);
}

#define N_FIRST 4

typedef struct summary {
    uint32_t dtype;
    uint64_t count;
    double sum, sumsq;
    double first[N_FIRST];
    uint32_t n_first;
    uint64_t hash;
} summary;

static bool summarize_row(void *state, const int64_t *outer, uint32_t n_outer,
                          const unsigned char *row, int64_t n)
{
    (void)outer;
    (void)n_outer;
    summary *s = state;
    if (is_block_type(s->dtype)) {
        s->hash = fnv1a(s->hash, row, row_bytes(s->dtype, n));
        s->count += (uint64_t)n;
        return true;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = element(s->dtype, row, i);
        s->sum += v;
        s->sumsq += v * v;
        if (s->n_first < N_FIRST)
            s->first[s->n_first++] = v;
    }
    s->count += (uint64_t)n;
    return true;
}

void td_print_checksum(FILE *out, const char *name, const bst_tensor_desc *desc,
                       const int64_t *extent, const void *data)
{
    char type[128];
    cli_format_type(desc, extent, type, sizeof type);
    summary s = {.dtype = desc->dtype, .hash = FNV_OFFSET};
    for_each_row(desc, extent, data, summarize_row, &s);
    fprintf(out, "output %s %s n=%" PRIu64, name, type, s.count);
    if (is_block_type(desc->dtype)) {
        fprintf(out, " fnv1a=0x%016" PRIx64 "\n", s.hash);
        return;
    }
    fprintf(out, " sum=");
    print_number(out, desc->dtype, s.sum);
    fprintf(out, " sumsq=");
    print_number(out, desc->dtype, s.sumsq);
    fprintf(out, " first=[");
    for (uint32_t i = 0; i < s.n_first; i++) {
        if (i)
            fprintf(out, ", ");
        print_number(out, desc->dtype, s.first[i]);
    }
    fprintf(out, "]\n");
}

typedef struct lister {
    FILE *out;
    uint32_t dtype;
    uint64_t limit, printed, skipped;
} lister;

static bool list_row(void *state, const int64_t *outer, uint32_t n_outer,
                     const unsigned char *row, int64_t n)
{
    lister *l = state;
    if (l->printed >= l->limit) {
        l->skipped += (uint64_t)n;
        return true; /* keep counting what is left out */
    }
    fprintf(l->out, "  [");
    for (uint32_t i = 0; i < n_outer; i++)
        fprintf(l->out, "%s%" PRId64, i ? "," : "", outer[i]);
    fprintf(l->out, "]");
    int64_t i = 0;
    for (; i < n && l->printed < l->limit; i++, l->printed++) {
        fputc(' ', l->out);
        print_number(l->out, l->dtype, element(l->dtype, row, i));
    }
    if (i < n) {
        fprintf(l->out, " ...");
        l->skipped += (uint64_t)(n - i);
    }
    fputc('\n', l->out);
    return true;
}

void td_print_values(FILE *out, const char *name, const bst_tensor_desc *desc,
                     const int64_t *extent, const void *data, uint64_t limit)
{
    char type[128];
    cli_format_type(desc, extent, type, sizeof type);
    fprintf(out, "output %s %s\n", name, type);
    if (is_block_type(desc->dtype)) {
        summary s = {.dtype = desc->dtype, .hash = FNV_OFFSET};
        for_each_row(desc, extent, data, summarize_row, &s);
        fprintf(out, "  (%s data, %" PRIu64 " elements, fnv1a=0x%016" PRIx64 ")\n",
                bst_dtype_name((bst_dtype)desc->dtype), s.count, s.hash);
        return;
    }
    lister l = {.out = out, .dtype = desc->dtype, .limit = limit};
    for_each_row(desc, extent, data, list_row, &l);
    if (l.skipped)
        fprintf(out, "  ... (%" PRIu64 " more values; raise --limit to see them)\n", l.skipped);
}
