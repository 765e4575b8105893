/*
 * common.glsl — what every Bastion Vulkan shader shares: the dispatch interface, raw memory
 * access, dtype conversions and workgroup reductions.
 *
 * Interface (mirrored by vk_backend.h): no descriptors at all. Push constants carry the device
 * address of the executable's parameter buffer, the word index of this dispatch's record in it,
 * byte strides of up to four tensors ("slots": 0 is the output, 1..3 the inputs) and a few op
 * attributes. The record, rewritten by the host whenever buffers or symbolic extents change,
 * holds the indirect dispatch size, the number of work items, and each slot's base address
 * (16-byte aligned), byte remainder and extents. So a command buffer recorded once at compile
 * time serves every later execute, whatever buffers and n_tokens / n_kv it runs with.
 *
 * Tensors are always seen as four dims, outermost first (ne.x outermost, ne.w innermost); for a
 * block type ne.w counts elements and nb.w is the byte size of one block.
 *
 * Variants, chosen at build time (see CMakeLists.txt):
 *   S16: 16/8-bit storage types; otherwise packed 32-bit words are read and sub-word values
 *        are written with atomics, so neighbouring bytes another invocation (or nobody) owns
 *        are never overwritten.
 *   SG:  subgroup arithmetic for reductions, correct at any subgroup size (results go through
 *        one shared slot per subgroup); otherwise a shared-memory tree.
 */
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
#extension GL_EXT_control_flow_attributes : enable
#if S16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_8bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#endif
#if SG
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64; /* workgroup size (a power of two) */
layout(constant_id = 1) const uint T0 = 1;  /* dtype of slot 0 (the output) */
layout(constant_id = 2) const uint T1 = 1;
layout(constant_id = 3) const uint T2 = 1;
layout(constant_id = 4) const uint T3 = 1;
layout(constant_id = 5) const uint OP = 0;  /* op variant within a shader */

layout(push_constant, std430) uniform PushConstants {
    uvec2 params; /* device address of the parameter buffer */
    uint rec;     /* word index of this dispatch's record */
    uint aux;     /* word index of this dispatch's static data (rope tables) */
    uvec4 nb[4];  /* byte strides of slots 0..3 */
    uvec4 u;      /* op integers */
    vec4 f;       /* op floats */
} pc;

layout(buffer_reference, std430, buffer_reference_align = 4) buffer BU32 { uint v[]; };
#if S16
layout(buffer_reference, std430, buffer_reference_align = 2) buffer BU16 { uint16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 1) buffer BU8 { uint8_t v[]; };
#endif

/* bst_dtype values */
const uint DT_F32 = 1u, DT_F16 = 2u, DT_BF16 = 3u, DT_I32 = 4u, DT_I8 = 5u;
const uint DT_Q4_0 = 6u, DT_Q4_1 = 7u, DT_Q5_0 = 8u, DT_Q5_1 = 9u, DT_Q8_0 = 10u;
const uint QK = 32u;

/* Status flags the host turns into an error after the run (word 0 of the parameter buffer). */
const uint ST_GET_ROWS_ID = 1u, ST_SET_ROWS_ID = 2u;

uint dt_bs(uint dt) { return dt >= DT_Q4_0 ? QK : 1u; }

/* --- parameters -------------------------------------------------------------------------- */

uint prm(uint i) { return BU32(pc.params).v[i]; }

struct Tensor {
    uvec2 base; /* 16-byte aligned device address */
    uint rem;   /* bytes from base to the tensor's first element */
    uvec4 ne;   /* run-time extents */
    uvec4 nb;   /* byte strides */
};

Tensor tensor(uint s)
{
    uint r = pc.rec + 4u + 8u * s;
    Tensor t;
    t.base = uvec2(prm(r), prm(r + 1u));
    t.rem = prm(r + 2u);
    t.ne = uvec4(prm(r + 4u), prm(r + 5u), prm(r + 6u), prm(r + 7u));
    t.nb = pc.nb[s];
    return t;
}

uint items() { return prm(pc.rec + 3u); }

/* Byte offset (from t.base) of unit u (an element, or a block) of row (i0, i1, i2). */
uint t_off(Tensor t, uint i0, uint i1, uint i2, uint u)
{
    return t.rem + i0 * t.nb.x + i1 * t.nb.y + i2 * t.nb.z + u * t.nb.w;
}

void report(uint flag)
{
    atomicOr(BU32(pc.params).v[0], flag);
    atomicMax(BU32(pc.params).v[1], pc.rec);
}

/* --- raw memory ---------------------------------------------------------------------------- */

uint ld32(uvec2 b, uint off) { return BU32(b).v[off >> 2]; } /* off % 4 == 0 */
void st32(uvec2 b, uint off, uint v) { BU32(b).v[off >> 2] = v; }

#if S16
uint ld16(uvec2 b, uint off) { return uint(BU16(b).v[off >> 1]); } /* off % 2 == 0 */
uint ld8(uvec2 b, uint off) { return uint(BU8(b).v[off]); }
void st16(uvec2 b, uint off, uint v) { BU16(b).v[off >> 1] = uint16_t(v); }
void st8(uvec2 b, uint off, uint v) { BU8(b).v[off] = uint8_t(v); }
#else
uint ld16(uvec2 b, uint off) { return (BU32(b).v[off >> 2] >> ((off & 2u) * 8u)) & 0xFFFFu; }
uint ld8(uvec2 b, uint off) { return (BU32(b).v[off >> 2] >> ((off & 3u) * 8u)) & 0xFFu; }
void st_masked(uvec2 b, uint off, uint v, uint mask)
{
    uint sh = (off & 3u) * 8u;
    atomicAnd(BU32(b).v[off >> 2], ~(mask << sh));
    atomicOr(BU32(b).v[off >> 2], (v & mask) << sh);
}
void st16(uvec2 b, uint off, uint v) { st_masked(b, off, v, 0xFFFFu); }
void st8(uvec2 b, uint off, uint v) { st_masked(b, off, v, 0xFFu); }
#endif

/* A 32-bit little-endian value at a 2-byte aligned offset (q5 blocks' qh). */
uint ld32_a2(uvec2 b, uint off) { return ld16(b, off) | (ld16(b, off + 2u) << 16); }

/* --- conversions (bit-exact, never through float arithmetic, so subnormals survive) -------- */

float f16_to_f32(uint h)
{
    uint s = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1Fu;
    uint m = h & 0x3FFu;
    if (e == 0x1Fu)
        return uintBitsToFloat(s | 0x7F800000u | (m << 13));
    if (e == 0u) {
        if (m == 0u)
            return uintBitsToFloat(s);
        int top = findMSB(m); /* value = m * 2^-24 = 1.f * 2^(top - 24) */
        uint mant = (m << uint(23 - top)) & 0x7FFFFFu;
        return uintBitsToFloat(s | (uint(top + 103) << 23) | mant);
    }
    return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));
}

/* Round to nearest even, as graph/quant.c's bsti_f32_to_f16. */
uint f32_to_f16(float f)
{
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u)
        return sign | 0x7E00u | ((ax >> 13) & 0x3FFu);
    if (ax >= 0x477FF000u)
        return sign | 0x7C00u;
    if (ax < 0x38800000u) {
        uint e = ax >> 23;
        if (e < 102u)
            return sign;
        uint m = (ax & 0x7FFFFFu) | 0x800000u;
        uint shift = 126u - e;
        uint q = m >> shift;
        uint rem = m & ((1u << shift) - 1u);
        uint halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (q & 1u) != 0u))
            q++;
        return sign | q;
    }
    uint h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7FFFFFu) >> 13);
    uint rem = ax & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u))
        h++;
    return sign | h;
}

float bf16_to_f32(uint h) { return uintBitsToFloat(h << 16); }

uint f32_to_bf16(float f)
{
    uint x = floatBitsToUint(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u)
        return (x >> 16) | 0x40u;
    return (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
}

/* --- element access ------------------------------------------------------------------------ */

/* Element k of the unit at byte `off`: the element itself for plain dtypes (k == 0), element k
 * of the block for block types (GGUF layouts; low nibbles are elements 0..15). */
float ld_elem(uint dt, uvec2 b, uint off, uint k)
{
    if (dt == DT_F32)
        return uintBitsToFloat(ld32(b, off));
    if (dt == DT_F16)
        return f16_to_f32(ld16(b, off));
    if (dt == DT_BF16)
        return bf16_to_f32(ld16(b, off));
    if (dt == DT_I32)
        return float(int(ld32(b, off)));
    if (dt == DT_I8)
        return float(int(ld8(b, off) << 24) >> 24);
    float d = f16_to_f32(ld16(b, off));
    if (dt == DT_Q8_0)
        return float(int(ld8(b, off + 2u + k) << 24) >> 24) * d;
    uint j = k & 15u, hi = k >> 4;
    uint qs = dt == DT_Q4_0 ? 2u : dt == DT_Q4_1 ? 4u : dt == DT_Q5_0 ? 6u : 8u;
    uint q = (ld8(b, off + qs + j) >> (hi * 4u)) & 15u;
    if (dt == DT_Q5_0 || dt == DT_Q5_1) {
        uint qh = ld32_a2(b, off + (dt == DT_Q5_0 ? 2u : 4u));
        q |= ((qh >> k) & 1u) << 4;
    }
    if (dt == DT_Q4_0)
        return float(int(q) - 8) * d;
    if (dt == DT_Q5_0)
        return float(int(q) - 16) * d;
    float m = f16_to_f32(ld16(b, off + 2u));
    float t = float(q) * d;
    return t + m;
}

/* Element j of row (i0, i1, i2) of t, whatever its dtype. */
float ld_at(uint dt, Tensor t, uint i0, uint i1, uint i2, uint j)
{
    uint bs = dt_bs(dt);
    return ld_elem(dt, t.base, t_off(t, i0, i1, i2, j / bs), j % bs);
}

/* Stores one element of a plain dtype (f32, f16, bf16, i32). */
void st_elem(uint dt, uvec2 b, uint off, float v)
{
    if (dt == DT_F32)
        st32(b, off, floatBitsToUint(v));
    else if (dt == DT_F16)
        st16(b, off, f32_to_f16(v));
    else if (dt == DT_BF16)
        st16(b, off, f32_to_bf16(v));
    else if (dt == DT_I32)
        st32(b, off, uint(int(v)));
}

/* --- workgroup reductions (call from uniform control flow, every invocation) --------------- */
#ifdef NEED_REDUCE
shared float red_f[WG];

float wg_reduce(float v, bool is_max)
{
    uint tid = gl_LocalInvocationIndex;
#if SG
    v = is_max ? subgroupMax(v) : subgroupAdd(v);
    if (subgroupElect())
        red_f[gl_SubgroupID] = v;
    barrier();
    float r = red_f[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++)
        r = is_max ? max(r, red_f[i]) : r + red_f[i];
    barrier();
    return r;
#else
    red_f[tid] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s)
            red_f[tid] = is_max ? max(red_f[tid], red_f[tid + s]) : red_f[tid] + red_f[tid + s];
        barrier();
    }
    float r = red_f[0];
    barrier();
    return r;
#endif
}
float wg_sum(float v) { return wg_reduce(v, false); }
float wg_max(float v) { return wg_reduce(v, true); }
#endif

/* Grid-stride loops: the host caps the number of workgroups, the shaders cover every item. */
#define FOR_EACH_THREAD_ITEM(i)                                                               \
    for (uint i = gl_GlobalInvocationID.x, n_items_ = items(); i < n_items_;                    \
         i += gl_NumWorkGroups.x * WG)
#define FOR_EACH_GROUP_ITEM(i)                                                                \
    for (uint i = gl_WorkGroupID.x, n_items_ = items(); i < n_items_; i += gl_NumWorkGroups.x)
