/*
 * matmul.cl - out[b0,b1,m,n] = sum_k a[b0,b1,m,k] * b[b0/g0, b1/g1, n, k], weights read straight
 * from their GGUF blocks (never written back dequantized). a is f32/f16/bf16 with any strides;
 * each kernel is instantiated per weight dtype so the dequantization inlines into the loop.
 *
 * Two variants, both correct for every shape:
 *  - gemv: for few rows of a (decode). A work-group of GV_LANES x GV_ROWS work-items computes
 *    GV_ROWS outputs n for every m; the lanes split k (whole blocks for block types) and reduce
 *    in local memory. The weight row is read once per group of GV_MC rows of a.
 *  - tiled: for prompts. 32x32 output tiles, 8x8 work-items with 4x4 outputs each; a 32-wide
 *    k slice of a and of b (one block per weight row, half a block per work-item) is staged in
 *    local memory, so each weight element is dequantized once per tile row of a.
 * Sums are f32.
 */

#define GV_LANES 16
#define GV_ROWS 4
#define GV_MC 4
#define TL 32
#define TW 8

/* Dot product of QK elements of a's row (byte address ar, stride as) starting at k, with w. */
inline float dot_block(cbuf a, long ar, long as, int adt, long k, const float *w)
{
    float s = 0.0f;
    if (adt == DT_F32 && as == 4) {
        global const float *ap = (global const float *)(a + ar) + k;
        for (int j = 0; j < QK / 4; j++)
            s += dot(vload4(j, ap), (float4)(w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]));
    } else {
        for (int j = 0; j < QK; j++)
            s += ld_elem(a, ar, k + j, as, adt) * w[j];
    }
    return s;
}

/* Elements 4c..4c+3 of a contiguous f32, f16 or bf16 row. */
inline float4 ld_vec4(cbuf row, long c, int dt)
{
    if (dt == DT_F32)
        return vload4(c, (global const float *)row);
    if (dt == DT_F16)
        return vload_half4(c, (global const half *)row);
    return as_float4(convert_uint4(vload4(c, (global const ushort *)row)) << 16);
}

inline float hsum16(float16 v)
{
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    return (b.x + b.y) + (b.z + b.w);
}

/* The fifth bits of 16 elements (qh bits sh..sh+15) as 0 or 16. */
inline float16 q5_high(uint qh, uint sh)
{
    const uint16 bit = (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return convert_float16((((uint16)(qh >> sh)) >> bit) & (uint16)1) * 16.0f;
}

/* Block b (any block type) unpacked into its 32 integer codes (lo: elements 0..15, hi:
 * 16..31), its scale d and minimum mn (0 for the symmetric types): element j = d * code + mn.
 * Unpacked once per block and reused for every row of a, with 16-wide vector arithmetic. */
inline void unpack_q(cbuf b, float16 *lo, float16 *hi, float *d, float *mn, int dt)
{
    *d = ld_half(b);
    *mn = 0.0f;
    switch (dt) {
    case DT_Q4_0: {
        uchar16 q = vload16(0, b + 2);
        *lo = convert_float16(q & (uchar16)15) - 8.0f;
        *hi = convert_float16(q >> (uchar16)4) - 8.0f;
        break;
    }
    case DT_Q4_1: {
        uchar16 q = vload16(0, b + 4);
        *lo = convert_float16(q & (uchar16)15);
        *hi = convert_float16(q >> (uchar16)4);
        *mn = ld_half(b + 2);
        break;
    }
    case DT_Q5_0: {
        uint qh = ld_u32le(b + 2);
        uchar16 q = vload16(0, b + 6);
        *lo = convert_float16(q & (uchar16)15) + q5_high(qh, 0) - 16.0f;
        *hi = convert_float16(q >> (uchar16)4) + q5_high(qh, 16) - 16.0f;
        break;
    }
    case DT_Q5_1: {
        uint qh = ld_u32le(b + 4);
        uchar16 q = vload16(0, b + 8);
        *lo = convert_float16(q & (uchar16)15) + q5_high(qh, 0);
        *hi = convert_float16(q >> (uchar16)4) + q5_high(qh, 16);
        *mn = ld_half(b + 2);
        break;
    }
    default: /* DT_Q8_0 */
        *lo = convert_float16(as_char16(vload16(0, b + 2)));
        *hi = convert_float16(as_char16(vload16(0, b + 18)));
        break;
    }
}

/* An unpacked block dotted with 32 contiguous f32 values at ap. */
inline float dot_unpacked(global const float *ap, float16 lo, float16 hi, float d, float mn,
                          int dt)
{
    float16 a0 = vload16(0, ap), a1 = vload16(1, ap);
    float s = d * (hsum16(a0 * lo) + hsum16(a1 * hi));
    if (dt == DT_Q4_1 || dt == DT_Q5_1)
        s += mn * hsum16(a0 + a1);
    return s;
}

inline void deq_block(cbuf b, float *y, int dt)
{
    deq_half_block(b, 0, y, dt);
    deq_half_block(b, 1, y + 16, dt);
}

inline void gemv_body(cbuf a, ulong ao, long4 anb, int adt, cbuf b, ulong bo, long4 bnb,
                      wbuf o, ulong oo, long4 onb, long4 ane, long N, long g0, long g1,
                      local float *red, const int DT)
{
    int lane = (int)get_local_id(0), lr = (int)get_local_id(1);
    long n = get_global_id(1);
    long bat = get_global_id(2);
    long i1 = bat % ane.s1, i0 = bat / ane.s1;
    long M = ane.s2, K = ane.s3;
    bool live = n < N;
    long br = (long)bo + (i0 / g0) * bnb.s0 + (i1 / g1) * bnb.s1 + (live ? n : 0) * bnb.s2;
    long ab = (long)ao + i0 * anb.s0 + i1 * anb.s1;
    local float *myred = red + lr * GV_LANES * GV_MC;
    for (long m0 = 0; m0 < M; m0 += GV_MC) {
        float acc[GV_MC];
        for (int mm = 0; mm < GV_MC; mm++)
            acc[mm] = 0.0f;
        if (live) {
            if (dt_is_block(DT) && adt == DT_F32 && anb.s3 == 4) {
                for (long blk = lane; blk < K / QK; blk += GV_LANES) {
                    float16 lo, hi;
                    float d, mn;
                    unpack_q(b + br + blk * bnb.s3, &lo, &hi, &d, &mn, DT);
                    for (int mm = 0; mm < GV_MC; mm++)
                        if (m0 + mm < M)
                            acc[mm] += dot_unpacked((global const float *)(a + ab +
                                                                           (m0 + mm) * anb.s2) +
                                                        blk * QK,
                                                    lo, hi, d, mn, DT);
                }
            } else if (dt_is_block(DT)) {
                for (long blk = lane; blk < K / QK; blk += GV_LANES) {
                    float w[QK];
                    deq_block(b + br + blk * bnb.s3, w, DT);
                    for (int mm = 0; mm < GV_MC; mm++)
                        if (m0 + mm < M)
                            acc[mm] += dot_block(a, ab + (m0 + mm) * anb.s2, anb.s3, adt,
                                                 blk * QK, w);
                }
            } else {
                /* Contiguous rows: four elements per lane and step with vector loads (lanes
                 * read consecutive 16-byte chunks); the remainder, and strided views, one by
                 * one. */
                long kv = 0;
                if (adt == DT_F32 && anb.s3 == 4 && bnb.s3 == (DT == DT_F32 ? 4 : 2)) {
                    kv = K / 4 * 4;
                    for (long c = lane; c < K / 4; c += GV_LANES) {
                        float4 w = ld_vec4(b + br, c, DT);
                        for (int mm = 0; mm < GV_MC; mm++)
                            if (m0 + mm < M)
                                acc[mm] += dot(vload4(c, (global const float *)(a + ab +
                                                                               (m0 + mm) *
                                                                                   anb.s2)),
                                               w);
                    }
                }
                for (long k = kv + lane; k < K; k += GV_LANES) {
                    float w = ld_elem(b, br, k, bnb.s3, DT);
                    for (int mm = 0; mm < GV_MC; mm++)
                        if (m0 + mm < M)
                            acc[mm] += ld_elem(a, ab + (m0 + mm) * anb.s2, k, anb.s3, adt) * w;
                }
            }
        }
        for (int mm = 0; mm < GV_MC; mm++)
            myred[mm * GV_LANES + lane] = acc[mm];
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int w = GV_LANES / 2; w > 0; w >>= 1) {
            if (lane < w)
                for (int mm = 0; mm < GV_MC; mm++)
                    myred[mm * GV_LANES + lane] += myred[mm * GV_LANES + lane + w];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (live && lane < GV_MC && m0 + lane < M)
            *(global float *)(o + (long)oo + i0 * onb.s0 + i1 * onb.s1 + (m0 + lane) * onb.s2 +
                              n * onb.s3) = myred[lane * GV_LANES];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

inline void tiled_body(cbuf a, ulong ao, long4 anb, int adt, cbuf b, ulong bo, long4 bnb,
                       wbuf o, ulong oo, long4 onb, long4 ane, long N, long g0, long g1,
                       local float *As, local float *Bs, const int DT)
{
    int tx = (int)get_local_id(0), ty = (int)get_local_id(1);
    int lid = ty * TW + tx;
    long n0 = get_group_id(0) * TL, m0 = get_group_id(1) * TL;
    long bat = get_global_id(2);
    long i1 = bat % ane.s1, i0 = bat / ane.s1;
    long M = ane.s2, K = ane.s3;
    long bb = (long)bo + (i0 / g0) * bnb.s0 + (i1 / g1) * bnb.s1;
    long ab = (long)ao + i0 * anb.s0 + i1 * anb.s1;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;
    /* Tiles are row-major (As[m][k], Bs[n][k]) with rows padded to TL + 1: the loads store
     * consecutive k contiguously, and in the inner loop As is a broadcast across tx while Bs
     * rows tx + 8j fall in distinct banks (33 is odd). A k-major layout measured 2x slower on
     * PoCL (strided stores in the staging loops). */
    const int col = lid % TL, row0 = lid / TL; /* 64 work-items cover 2 rows per step */
    const bool a_f32 = adt == DT_F32;
    for (long k0 = 0; k0 < K; k0 += TL) {
        long k = k0 + col;
        for (int t = 0; t < TL / 2; t++) {
            int r = row0 + 2 * t;
            long m = m0 + r;
            float v = 0.0f;
            if (m < M && k < K)
                v = a_f32 ? *(global const float *)(a + ab + m * anb.s2 + k * anb.s3)
                          : ld_elem(a, ab + m * anb.s2, k, anb.s3, adt);
            As[r * (TL + 1) + col] = v;
        }
        if (dt_is_block(DT)) {
            int r = lid / 2, h = lid % 2;
            long n = n0 + r;
            float y[16];
            if (n < N) {
                deq_half_block(b + bb + n * bnb.s2 + (k0 / QK) * bnb.s3, h, y, DT);
            } else {
                for (int j = 0; j < 16; j++)
                    y[j] = 0.0f;
            }
            for (int j = 0; j < 16; j++)
                Bs[r * (TL + 1) + h * 16 + j] = y[j];
        } else {
            for (int t = 0; t < TL / 2; t++) {
                int r = row0 + 2 * t;
                long n = n0 + r;
                Bs[r * (TL + 1) + col] =
                    n < N && k < K ? ld_elem(b, bb + n * bnb.s2, k, bnb.s3, DT) : 0.0f;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TL; kk++) {
            float av[4], bv[4];
            for (int i = 0; i < 4; i++)
                av[i] = As[(ty + TW * i) * (TL + 1) + kk];
            for (int j = 0; j < 4; j++)
                bv[j] = Bs[(tx + TW * j) * (TL + 1) + kk];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] += av[i] * bv[j];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < 4; i++) {
        long m = m0 + ty + TW * i;
        if (m >= M)
            continue;
        for (int j = 0; j < 4; j++) {
            long n = n0 + tx + TW * j;
            if (n < N)
                *(global float *)(o + (long)oo + i0 * onb.s0 + i1 * onb.s1 + m * onb.s2 +
                                  n * onb.s3) = acc[i][j];
        }
    }
}

#define MM_KERNELS(SUFFIX, DT)                                                                  \
    kernel void k_gemv_##SUFFIX(cbuf a, ulong ao, long4 anb, int adt, cbuf b, ulong bo,         \
                                long4 bnb, wbuf o, ulong oo, long4 onb, long4 ane, long N,      \
                                long g0, long g1)                                               \
    {                                                                                           \
        local float red[GV_ROWS * GV_LANES * GV_MC];                                            \
        gemv_body(a, ao, anb, adt, b, bo, bnb, o, oo, onb, ane, N, g0, g1, red, DT);            \
    }                                                                                           \
    kernel void k_tiled_##SUFFIX(cbuf a, ulong ao, long4 anb, int adt, cbuf b, ulong bo,        \
                                 long4 bnb, wbuf o, ulong oo, long4 onb, long4 ane, long N,     \
                                 long g0, long g1)                                              \
    {                                                                                           \
        local float As[TL * (TL + 1)];                                                          \
        local float Bs[TL * (TL + 1)];                                                          \
        tiled_body(a, ao, anb, adt, b, bo, bnb, o, oo, onb, ane, N, g0, g1, As, Bs, DT);        \
    }

MM_KERNELS(f32, DT_F32)
MM_KERNELS(f16, DT_F16)
MM_KERNELS(bf16, DT_BF16)
MM_KERNELS(q4_0, DT_Q4_0)
MM_KERNELS(q4_1, DT_Q4_1)
MM_KERNELS(q5_0, DT_Q5_0)
MM_KERNELS(q5_1, DT_Q5_1)
MM_KERNELS(q8_0, DT_Q8_0)
