/*
 * common.cl - prepended to every kernel family: dtype ids (bst_dtype's values), element loads of
 * every dtype from byte addresses, element stores, and GGUF block dequantization.
 *
 * Tensors reach kernels as (byte buffer, byte offset, long4 byte strides), dims outermost first
 * with .s3 innermost, exactly as the host describes them; broadcasting is a zero stride. Byte
 * addressing lets one kernel serve any view (transposed, padded, permuted) and keeps block types
 * (18..34-byte blocks, only 2-byte aligned) readable. Only OpenCL C 1.2 core features are used:
 * half values are read with vload_half and written as bits, so no cl_khr_fp16 is needed.
 */
#define DT_F32 1
#define DT_F16 2
#define DT_BF16 3
#define DT_I32 4
#define DT_I8 5
#define DT_Q4_0 6
#define DT_Q4_1 7
#define DT_Q5_0 8
#define DT_Q5_1 9
#define DT_Q8_0 10
#define QK 32

typedef global const uchar *cbuf;
typedef global uchar *wbuf;

inline bool dt_is_block(int dt) { return dt >= DT_Q4_0; }

inline float ld_half(cbuf p) { return vload_half(0, (global const half *)p); }

inline float ld_bf16(cbuf p) { return as_float(((uint)*(global const ushort *)p) << 16); }

inline uint ld_u32le(cbuf p)
{
    return (uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
}

/* Round to nearest even, as the reference converter (graph/quant.c) does bit for bit, so every
 * device stores the same half whatever its vstore_half rounding. */
inline ushort f32_to_f16_bits(float f)
{
    uint x = as_uint(f);
    ushort sign = (ushort)((x >> 16) & 0x8000u);
    uint ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (ushort)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u)
        return (ushort)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        uint e = ax >> 23;
        if (e < 102u)
            return sign;
        uint m = (ax & 0x7fffffu) | 0x800000u;
        uint shift = 126u - e;
        uint q = m >> shift;
        uint rem = m & ((1u << shift) - 1u);
        uint half_ = 1u << (shift - 1u);
        if (rem > half_ || (rem == half_ && (q & 1u)))
            q++;
        return (ushort)(sign | q);
    }
    uint h = ((((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13));
    uint rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (ushort)(sign | h);
}

inline ushort f32_to_bf16_bits(float f)
{
    uint x = as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (ushort)((x >> 16) | 0x40u);
    return (ushort)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* Element j (0..31) of the block at b. */
inline float deq_elem(cbuf b, int j, int dt)
{
    int lo = j & 15;
    switch (dt) {
    case DT_Q4_0: {
        uchar q = b[2 + lo];
        int v = j < 16 ? (q & 15) : (q >> 4);
        return (float)(v - 8) * ld_half(b);
    }
    case DT_Q4_1: {
        uchar q = b[4 + lo];
        int v = j < 16 ? (q & 15) : (q >> 4);
        return (float)v * ld_half(b) + ld_half(b + 2);
    }
    case DT_Q5_0: {
        uchar q = b[6 + lo];
        int v = (j < 16 ? (q & 15) : (q >> 4)) | (int)(((ld_u32le(b + 2) >> j) & 1u) << 4);
        return (float)(v - 16) * ld_half(b);
    }
    case DT_Q5_1: {
        uchar q = b[8 + lo];
        int v = (j < 16 ? (q & 15) : (q >> 4)) | (int)(((ld_u32le(b + 4) >> j) & 1u) << 4);
        return (float)v * ld_half(b) + ld_half(b + 2);
    }
    default: /* DT_Q8_0 */
        return (float)(char)b[2 + j] * ld_half(b);
    }
}

/* Elements [h*16, h*16+16) of the block at b into y[0..16): half a block, the unit one
 * work-item dequantizes when a tile of weights is staged in local memory. */
inline void deq_half_block(cbuf b, int h, float *y, int dt)
{
    switch (dt) {
    case DT_Q4_0: {
        float d = ld_half(b);
        for (int j = 0; j < 16; j++) {
            uchar q = b[2 + j];
            y[j] = (float)((h ? (q >> 4) : (q & 15)) - 8) * d;
        }
        break;
    }
    case DT_Q4_1: {
        float d = ld_half(b), m = ld_half(b + 2);
        for (int j = 0; j < 16; j++) {
            uchar q = b[4 + j];
            y[j] = (float)(h ? (q >> 4) : (q & 15)) * d + m;
        }
        break;
    }
    case DT_Q5_0: {
        float d = ld_half(b);
        uint qh = ld_u32le(b + 2) >> (h * 16);
        for (int j = 0; j < 16; j++) {
            uchar q = b[6 + j];
            int v = (h ? (q >> 4) : (q & 15)) | (int)(((qh >> j) & 1u) << 4);
            y[j] = (float)(v - 16) * d;
        }
        break;
    }
    case DT_Q5_1: {
        float d = ld_half(b), m = ld_half(b + 2);
        uint qh = ld_u32le(b + 4) >> (h * 16);
        for (int j = 0; j < 16; j++) {
            uchar q = b[8 + j];
            int v = (h ? (q >> 4) : (q & 15)) | (int)(((qh >> j) & 1u) << 4);
            y[j] = (float)v * d + m;
        }
        break;
    }
    default: { /* DT_Q8_0 */
        float d = ld_half(b);
        for (int j = 0; j < 16; j++)
            y[j] = (float)(char)b[2 + h * 16 + j] * d;
        break;
    }
    }
}

/* Element i of the row starting at byte `row` of p, whose innermost stride is nb (block types:
 * nb is the block's bytes). */
inline float ld_elem(cbuf p, long row, long i, long nb, int dt)
{
    switch (dt) {
    case DT_F32:
        return *(global const float *)(p + row + i * nb);
    case DT_F16:
        return ld_half(p + row + i * nb);
    case DT_BF16:
        return ld_bf16(p + row + i * nb);
    case DT_I32:
        return (float)*(global const int *)(p + row + i * nb);
    case DT_I8:
        return (float)*(global const char *)(p + row + i * nb);
    default:
        return deq_elem(p + row + (i >> 5) * nb, (int)(i & 31), dt);
    }
}

inline long row_addr(ulong off, long4 nb, long i0, long i1, long i2)
{
    return (long)off + i0 * nb.s0 + i1 * nb.s1 + i2 * nb.s2;
}

inline float ld_at(cbuf p, ulong off, long4 nb, long i0, long i1, long i2, long i3, int dt)
{
    return ld_elem(p, row_addr(off, nb, i0, i1, i2), i3, nb.s3, dt);
}

/* Stores v at byte address a of p as f32, f16 or bf16. */
inline void st_plain(wbuf p, long a, float v, int dt)
{
    if (dt == DT_F32)
        *(global float *)(p + a) = v;
    else if (dt == DT_F16)
        *(global ushort *)(p + a) = f32_to_f16_bits(v);
    else
        *(global ushort *)(p + a) = f32_to_bf16_bits(v);
}

inline void st_at(wbuf p, ulong off, long4 nb, long i0, long i1, long i2, long i3, float v, int dt)
{
    st_plain(p, row_addr(off, nb, i0, i1, i2) + i3 * nb.s3, v, dt);
}

/* Splits a flat index over dims ne (.s3 innermost) into coordinates. */
inline long4 unflatten(long g, long4 ne)
{
    long4 c;
    c.s3 = g % ne.s3;
    g /= ne.s3;
    c.s2 = g % ne.s2;
    g /= ne.s2;
    c.s1 = g % ne.s1;
    c.s0 = g / ne.s1;
    return c;
}

/* Work-group reductions over a local array of get_local_size(0) floats (a power of two). */
inline float wg_sum(local float *s, float v)
{
    int l = (int)get_local_id(0), n = (int)get_local_size(0);
    s[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = n >> 1; w > 0; w >>= 1) {
        if (l < w)
            s[l] += s[l + w];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = s[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

inline float wg_max(local float *s, float v)
{
    int l = (int)get_local_id(0), n = (int)get_local_size(0);
    s[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = n >> 1; w > 0; w >>= 1) {
        if (l < w)
            s[l] = fmax(s[l], s[l + w]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = s[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}
