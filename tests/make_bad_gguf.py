#!/usr/bin/env python3
"""tests/make_bad_gguf.py — writes the GGUF reader's test corpus (python3 standard library only).

  tests/fixtures/gguf/tiny_valid.gguf      v3, default alignment: a key of every value type (nested
                                           arrays included) and one tiny tensor of every supported
                                           tensor type, data laid out in reverse info order
  tests/fixtures/gguf/tiny_valid_v2.gguf   v2 with general.alignment = 64
  tests/fixtures/gguf/bad/*.gguf           malformed files, one defect each
  tests/fixtures/gguf/bad/EXPECTED.txt     "<file> <BST_ERR_...> <substring of the message>"

The files are committed; run this again only to change the corpus:  python3 tests/make_bad_gguf.py
The GGUF layout is written here from the spec (ggml/docs/gguf.md), independently of the C reader;
tests/test_gguf.c checks the reader against the values below.
"""
import os
import struct
import sys

# Metadata value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
              BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor type ids and (elements per block, bytes per block).
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1 = 0, 1, 2, 3
GGML_Q5_0, GGML_Q5_1, GGML_Q8_0 = 6, 7, 8
GGML_I8, GGML_I32, GGML_BF16 = 24, 26, 30
BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_I8: (1, 1),
         GGML_I32: (1, 4), GGML_Q4_0: (32, 18), GGML_Q4_1: (32, 20), GGML_Q5_0: (32, 22),
         GGML_Q5_1: (32, 24), GGML_Q8_0: (32, 34)}


def gstr(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def enc(t, v):
    """Encodes a value of type t; an array value is (elem_type, [items])."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def kv(key, t, v):
    return gstr(key) + struct.pack("<I", t) + enc(t, v)


def nbytes(ggml_type, ne):
    n = 1
    for d in ne:
        n *= d
    bs, bb = BLOCK[ggml_type]
    return n // bs * bb


def pattern(k, n):
    """Tensor k's bytes: a fixed formula the C test recomputes."""
    return bytes(((k * 31 + j * 7 + 1) & 0xFF) for j in range(n))


def align(x, a):
    return (x + a - 1) // a * a


class Gguf:
    def __init__(self, version=3, alignment=32):
        self.magic = b"GGUF"
        self.version = version
        self.alignment = alignment  # layout only; add the key yourself
        self.kvs = []               # encoded key/values (or raw bytes)
        self.tensors = []           # dicts: name, ne, type, data, offset (None = auto), info
        self.n_kv = None            # header overrides
        self.n_tensors = None
        self.data_order = None      # order in which auto offsets are assigned

    def kv(self, key, t, v):
        self.kvs.append(kv(key, t, v))
        return self

    def tensor(self, name, ne, ggml_type, data=None, offset=None, info=None):
        if data is None:
            data = pattern(len(self.tensors), nbytes(ggml_type, ne))
        self.tensors.append(dict(name=name, ne=ne, type=ggml_type, data=data, offset=offset,
                                 info=info))
        return self

    def build(self):
        order = self.data_order or list(range(len(self.tensors)))
        cur = 0
        for i in order:
            t = self.tensors[i]
            if t["offset"] is None:
                t["offset"] = align(cur, self.alignment)
                cur = t["offset"] + len(t["data"])
        infos = b""
        for t in self.tensors:
            if t["info"] is not None:
                infos += t["info"]
                continue
            infos += gstr(t["name"]) + struct.pack("<I", len(t["ne"]))
            infos += b"".join(struct.pack("<Q", d) for d in t["ne"])
            infos += struct.pack("<IQ", t["type"], t["offset"])
        head = self.magic + struct.pack("<IQQ", self.version,
                                        len(self.tensors) if self.n_tensors is None else self.n_tensors,
                                        len(self.kvs) if self.n_kv is None else self.n_kv)
        meta = head + b"".join(self.kvs) + infos
        data = bytearray()
        for t in self.tensors:
            end = t["offset"] + len(t["data"])
            if not t["data"] or t["offset"] > 1 << 20:
                continue  # deliberately outside the file
            if end > len(data):
                data.extend(b"\0" * (end - len(data)))
            data[t["offset"]:end] = t["data"]
        if not self.tensors:
            return meta
        return meta + b"\0" * (align(len(meta), self.alignment) - len(meta)) + bytes(data)


def tiny_valid():
    g = Gguf(version=3)
    g.kv("general.architecture", STR, "tiny")
    g.kv("test.u8", U8, 200)
    g.kv("test.i8", I8, -100)
    g.kv("test.u16", U16, 60000)
    g.kv("test.i16", I16, -30000)
    g.kv("test.u32", U32, 4000000000)
    g.kv("test.i32", I32, -2000000000)
    g.kv("test.f32", F32, 0.15625)
    g.kv("test.bool", BOOL, 1)
    g.kv("test.bool_false", BOOL, 0)
    g.kv("test.string", STR, "hello, gguf")
    g.kv("test.u64", U64, 2**64 - 1)
    g.kv("test.i64", I64, -2**63)
    g.kv("test.f64", F64, -1.0e300)
    g.kv("test.string_nul", STR, b"a\0b")
    g.kv("test.string_empty", STR, "")
    g.kv("test.utf8", STR, "h\u00e9llo \u2713")
    g.kv("test.arr_u8", ARR, (U8, [1, 2, 255]))
    g.kv("test.arr_i8", ARR, (I8, [-128, 0, 127]))
    g.kv("test.arr_u16", ARR, (U16, [0, 65535]))
    g.kv("test.arr_i16", ARR, (I16, [-32768, 32767]))
    g.kv("test.arr_u32", ARR, (U32, [7, 4294967295]))
    g.kv("test.arr_i32", ARR, (I32, [-1, 0, 1]))
    g.kv("test.arr_f32", ARR, (F32, [0.25, -2.0]))
    g.kv("test.arr_bool", ARR, (BOOL, [1, 0, 1]))
    g.kv("test.arr_str", ARR, (STR, ["a", "", "h\u00e9llo"]))
    g.kv("test.arr_u64", ARR, (U64, [0, 2**64 - 1]))
    g.kv("test.arr_i64", ARR, (I64, [-2**63, 2**63 - 1]))
    g.kv("test.arr_f64", ARR, (F64, [1.5, -0.0]))
    g.kv("test.arr_empty", ARR, (U32, []))
    g.kv("test.arr_empty_str", ARR, (STR, []))
    g.kv("test.nested", ARR, (ARR, [(I32, [1, 2]), (I32, [3])]))
    g.kv("test.nested_str", ARR, (ARR, [(STR, ["x", "yz"]), (STR, [])]))
    g.kv("test.nested3", ARR, (ARR, [(ARR, [(U16, [7, 8])]),
                                     (ARR, [(U16, [9]), (U16, [10, 11])])]))
    g.kv("test.nested4", ARR, (ARR, [(ARR, [(ARR, [(STR, ["deep"])])])]))
    g.kv("test.last", U32, 42)
    g.tensor("t.f32", [3, 2], GGML_F32, data=struct.pack("<6f", *[0.5 * i for i in range(6)]))
    g.tensor("t.f16", [4], GGML_F16)
    g.tensor("t.bf16", [2, 2], GGML_BF16)
    g.tensor("t.q4_0", [32, 2], GGML_Q4_0)
    g.tensor("t.q4_1", [64], GGML_Q4_1)
    g.tensor("t.q5_0", [32], GGML_Q5_0)
    g.tensor("t.q5_1", [32], GGML_Q5_1)
    g.tensor("t.q8_0", [32, 1, 2], GGML_Q8_0)
    g.tensor("t.i8", [5], GGML_I8)
    g.tensor("t.i32", [2, 1, 1, 3], GGML_I32)
    g.data_order = list(reversed(range(len(g.tensors))))
    return g.build()


def tiny_valid_v2():
    g = Gguf(version=2, alignment=64)
    g.kv("general.architecture", STR, "tiny")
    g.kv("general.alignment", U32, 64)
    g.tensor("a", [8], GGML_F32)
    g.tensor("b", [32], GGML_Q8_0)
    return g.build()


def base(**kw):
    """The smallest sensible file: two keys and one f32 tensor; defects are applied to it."""
    g = Gguf(**kw)
    g.kv("general.architecture", STR, "tiny")
    g.kv("general.name", STR, "corpus base")
    g.tensor("w", [4], GGML_F32)
    return g


def info(name, ne, ggml_type, offset, n_dims=None):
    b = gstr(name) + struct.pack("<I", len(ne) if n_dims is None else n_dims)
    return b + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", ggml_type, offset)


def cases():
    """Yields (file name, bytes, status, message substring)."""
    F, U, O = "BST_ERR_FORMAT", "BST_ERR_UNSUPPORTED", "BST_ERR_OVERFLOW"
    good = base().build()

    def with_magic(m):
        g = base()
        g.magic = m
        return g.build()

    def with_version(v):
        return base(version=v).build()

    yield "bad_magic.gguf", with_magic(b"GGUX"), F, "bad magic 47 47 55 58"
    yield "ggjt_magic.gguf", with_magic(b"tjgg"), F, "old GGML/GGMF/GGJT file"
    yield "big_endian_magic.gguf", with_magic(b"FUGG"), U, "big-endian GGUF file"
    yield "version_0.gguf", with_version(0), F, "GGUF version 0 is invalid"
    yield "version_1.gguf", with_version(1), U, "GGUF version 1 is not supported"
    yield "version_4.gguf", with_version(4), U, "GGUF version 4 is not supported"
    be = b"GGUF" + struct.pack(">IQQ", 3, 1, 2) + good[24:]
    yield "big_endian.gguf", be, U, "big-endian GGUF file (version 3 byte-swapped)"
    yield "empty.gguf", b"", F, "file truncated in magic"
    yield "truncated_header.gguf", good[:14], F, "header: file truncated in n_tensors"

    # Truncations inside the metadata, at positions found by building the pieces; without a
    # tensor, so the header's count check (which needs room for every tensor info) passes.
    g = base()
    g.tensors = []
    meta_only = g.build()
    head = 24
    kv0 = kv("general.architecture", STR, "tiny")
    yield ("truncated_in_key.gguf", meta_only[:head + len(kv0) + 8 + 5], F,
           "kv 1: file truncated in key: string length 12")
    yield ("truncated_in_value_type.gguf", meta_only[:head + len(kv0) + 8 + 12 + 2], F,
           "key 'general.name': file truncated in value type")
    yield ("truncated_in_string_value.gguf", meta_only[:head + len(kv0) + 8 + 12 + 4 + 8 + 3], F,
           "key 'general.name': file truncated in string value")
    kvs_end = head + len(kv0) + len(kv("general.name", STR, "corpus base"))
    yield ("truncated_in_tensor_info.gguf", good[:kvs_end + 8 + 1 + 4 + 3], F,
           "tensor 'w': file truncated in dims")
    yield "truncated_tensor_data.gguf", good[:-3], F, "data offset 0 + size 16 beyond file size"

    g = base()
    g.n_tensors = 2**40
    yield "absurd_n_tensors.gguf", g.build(), F, "n_tensors 1099511627776 cannot fit"
    g = base()
    g.n_kv = 2**63
    yield "absurd_n_kv.gguf", g.build(), F, "n_kv 9223372036854775808 cannot fit"
    g = base()
    g.n_tensors = 3
    g.tensors = []
    yield "counts_exceed_file.gguf", g.build(), F, "n_tensors 3 cannot fit"

    g = base()
    g.kvs[1] = gstr("general.name") + struct.pack("<IQ", STR, 2**60) + b"abc"
    yield ("absurd_string_length.gguf", g.build(), F,
           "key 'general.name': file truncated in string value: string length 1152921504606846976")
    g = base()
    g.kvs.append(gstr("test.arr") + struct.pack("<IIQ", ARR, U32, 2**62) + b"\1\0\0\0")
    yield "absurd_array_count.gguf", g.build(), F, "array count 4611686018427387904 of uint32"
    g = base()
    g.kvs.append(gstr("test.arr") + struct.pack("<IIQ", ARR, STR, 2) + gstr("ok") +
                 struct.pack("<Q", 2**63) + b"x")
    yield ("absurd_string_in_array.gguf", g.build(), F,
           "key 'test.arr': file truncated in string array element")
    g = Gguf()
    g.kvs.append(gstr("test.arr") + struct.pack("<IIQ", ARR, U32, 10) + struct.pack("<3I", 1, 2, 3))
    yield "array_count_truncated.gguf", g.build(), F, "array count 10 of uint32 cannot fit"

    deep = (U8, [1])
    for _ in range(4):
        deep = (ARR, [deep])
    g = base()
    g.kv("test.deep", ARR, deep)  # 5 levels of arrays
    yield "nested_too_deep.gguf", g.build(), U, "arrays nested deeper than 4 levels"

    g = base()
    g.kvs.append(gstr("test.odd") + struct.pack("<IB", 13, 0))
    yield "unknown_kv_type.gguf", g.build(), F, "key 'test.odd': unknown value type 13"
    g = base()
    g.kvs.append(gstr("test.arr") + struct.pack("<IIQ", ARR, 99, 1) + b"\0" * 8)
    yield "unknown_array_elem_type.gguf", g.build(), F, "unknown array element type 99"
    g = base()
    g.kv("general.name", STR, "again")
    yield "duplicate_key.gguf", g.build(), F, "duplicate key 'general.name'"
    g = base()
    g.tensor("w", [4], GGML_F32)
    yield "duplicate_tensor.gguf", g.build(), F, "duplicate tensor name 'w'"

    def tensor_case(name, ne, ggml_type, offset=0, n_dims=None):
        g = base()
        g.tensors = []
        g.tensor(name, ne, ggml_type, data=b"\0" * 64 if offset < 4096 else b"",
                 offset=offset, info=info(name, ne, ggml_type, offset, n_dims))
        return g.build()

    yield "zero_dim.gguf", tensor_case("w", [4, 0], GGML_F32), F, "tensor 'w': dim 1 is 0"
    yield ("n_dims_0.gguf", tensor_case("w", [], GGML_F32), F,
           "tensor 'w': n_dims 0 out of range 1..4")
    yield ("n_dims_5.gguf", tensor_case("w", [1, 1, 1, 1, 4], GGML_F32), F,
           "tensor 'w': n_dims 5 out of range 1..4")
    yield ("negative_dim.gguf", tensor_case("w", [2**63], GGML_F32), F,
           "tensor 'w': dim 0 is 9223372036854775808, beyond int64")
    yield ("dim_product_overflow.gguf", tensor_case("w", [2**32, 2**32], GGML_F32), O,
           "tensor 'w': element count overflows int64")
    yield ("byte_size_overflow.gguf", tensor_case("w", [2**62], GGML_F32), O,
           "tensor 'w': byte size overflows")
    yield ("unknown_tensor_type.gguf", tensor_case("w", [4], 99), U,
           "tensor 'w': unknown ggml type id 99")
    yield ("kquant_tensor_type.gguf", tensor_case("w", [256], 12), U,
           "tensor 'w': ggml type id 12 (q4_K) is not supported")
    yield ("block_size_mismatch.gguf", tensor_case("w", [48], GGML_Q4_0), F,
           "innermost dim 48 is not a multiple of the q4_0 block size 32")
    yield ("misaligned_offset.gguf", tensor_case("w", [4], GGML_F32, offset=16), F,
           "tensor 'w': data offset 16 is not aligned to 32")
    yield ("data_past_eof.gguf", tensor_case("w", [4], GGML_F32, offset=4096), F,
           "tensor 'w': data offset 4096 + size 16 beyond file size")
    yield ("offset_overflow.gguf", tensor_case("w", [4], GGML_F32, offset=2**64 - 32), F,
           "data offset 18446744073709551584 + size 16 beyond file size")
    yield ("tensor_name_empty.gguf", tensor_case("", [4], GGML_F32), F,
           "tensor 0: empty tensor name")
    yield ("tensor_name_nul.gguf", tensor_case("w\0x", [4], GGML_F32), F,
           "tensor name 'w' contains control byte 0x00")

    g = base()
    g.tensor("v", [16], GGML_F32, offset=32)
    g.tensors[0]["offset"] = 64  # w [64, 80) lies inside v [32, 96)
    yield ("overlapping_tensors.gguf", g.build(), F,
           "tensor 'v' (offset 32, size 64) overlaps tensor 'w' (offset 64)")

    def keyed(key, t, v, **kw):
        g = base(**kw)
        g.kv(key, t, v)
        return g.build()

    yield ("alignment_not_pow2.gguf", keyed("general.alignment", U32, 48), F,
           "'general.alignment': 48 is not a power of two")
    yield ("alignment_zero.gguf", keyed("general.alignment", U32, 0), F,
           "'general.alignment': 0 is not a power of two")
    yield ("alignment_too_large.gguf", keyed("general.alignment", U32, 1 << 24), U,
           "'general.alignment': 16777216 is larger than the supported")
    yield ("alignment_wrong_type.gguf", keyed("general.alignment", STR, "32"), F,
           "key 'general.alignment' has type string, expected uint32")
    yield ("alignment_u64.gguf", keyed("general.alignment", U64, 32), F,
           "key 'general.alignment' has type uint64, expected uint32")
    g = Gguf()
    g.kv("general.architecture", U32, 1)
    yield ("architecture_wrong_type.gguf", g.build(), F,
           "key 'general.architecture' has type uint32, expected string")
    yield "bool_value_2.gguf", keyed("test.flag", BOOL, 2), F, "key 'test.flag': bool value is 2"
    yield ("bool_array_element.gguf", keyed("test.flags", ARR, (BOOL, [1, 7])), F,
           "key 'test.flags': bool array element 1 is 7")
    g = base()
    g.kvs.append(kv(b"gen\0eral.x", U8, 1))
    yield "key_embedded_nul.gguf", g.build(), F, "kv 2: key 'gen' contains control byte 0x00"
    g = base()
    g.kvs.append(kv(b"", U8, 1))
    yield "key_empty.gguf", g.build(), F, "kv 2: empty key"
    g = base()
    g.kvs.append(kv(b"test.\nline", U8, 1))
    yield "key_newline.gguf", g.build(), F, "contains control byte 0x0a"


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gguf")
    bad = os.path.join(root, "bad")
    os.makedirs(bad, exist_ok=True)
    for name in os.listdir(bad):
        if name.endswith(".gguf"):
            os.remove(os.path.join(bad, name))
    with open(os.path.join(root, "tiny_valid.gguf"), "wb") as f:
        f.write(tiny_valid())
    with open(os.path.join(root, "tiny_valid_v2.gguf"), "wb") as f:
        f.write(tiny_valid_v2())
    lines = ["# Written by tests/make_bad_gguf.py: <file> <status> <substring of the message>"]
    seen = set()
    for name, data, status, substring in cases():
        assert name not in seen, name
        seen.add(name)
        with open(os.path.join(bad, name), "wb") as f:
            f.write(data)
        lines.append("%s %s %s" % (name, status, substring))
    with open(os.path.join(bad, "EXPECTED.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d malformed files and 2 valid files under %s" % (len(seen), root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
