"""tests/reference/reference.py — an independent numpy implementation of the llama forward pass
and the GPT-2 byte-level BPE tokenizer, used as the oracle Bastion is checked against.

Independence is the point: nothing here shares code with Bastion or with llama.cpp's ggml. The
GGUF container is parsed by the `gguf` PyPI package (GGUFReader: metadata and raw tensor bytes
only); the block-quantized weights (q4_1, q8_0) are decoded here from the GGUF block layouts, not
with gguf.quants; the tokenizer is HuggingFace `tokenizers`, configured from the GGUF vocabulary
and merges.

Precision: the oracle computes in float64 throughout (dequantized weights, matmuls, RMSNorm, RoPE,
softmax); Model(..., dtype=np.float32) gives the same pass in float32, used only to show how far an
honest float32 implementation lands from the oracle (make_fixtures.py reports that KL).

Model semantics (llama architecture, as llama.cpp runs a llama-arch GGUF):
  x = token_embd[ids]
  per layer: h = rmsnorm(x) * attn_norm; q,k,v = h Wq^T, h Wk^T, h Wv^T; RoPE "normal" (mode 0):
  adjacent pairs (2i, 2i+1) rotated by pos * base^(-2i/d) (the converter already permuted Q/K from
  HF's half-split layout into this one); causal GQA attention, query head j reading KV head
  j // (n_head / n_head_kv), scores scaled by 1/sqrt(d); x += attn Wo^T;
  h = rmsnorm(x) * ffn_norm; x += (silu(h Wg^T) * (h Wu^T)) Wd^T
  logits = (rmsnorm(x) * output_norm) W_out^T, W_out = output.weight or, when absent, token_embd.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
from gguf import GGUFReader

QK = 32  # elements per block for q4_0/q4_1/q8_0

# GGML type ids (ggml.h enum ggml_type) of the formats this reference decodes.
GGML_F32, GGML_F16, GGML_Q4_1, GGML_Q8_0 = 0, 1, 3, 8

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = os.path.join(REPO_ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Dequantization from the GGUF block layouts (ggml-common.h):
#   q8_0: { f16 d; int8 qs[32]; }                 x[j] = d * qs[j]
#   q4_1: { f16 d; f16 m; uint8 qs[16]; }         x[j] = d * (qs[j] & 15) + m,
#                                                 x[j+16] = d * (qs[j] >> 4) + m
# --------------------------------------------------------------------------------------------


def _blocks(raw: np.ndarray, rows: int, cols: int, block_bytes: int) -> np.ndarray:
    if cols % QK:
        raise ValueError(f"row length {cols} is not a multiple of the block size {QK}")
    nb = cols // QK
    if raw.size != rows * nb * block_bytes:
        raise ValueError(f"tensor holds {raw.size} bytes, expected {rows * nb * block_bytes}")
    return raw.reshape(rows, nb, block_bytes)


def dequant_q8_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    b = _blocks(raw, rows, cols, 2 + QK)
    d = np.ascontiguousarray(b[:, :, 0:2]).view("<f2")[..., 0].astype(np.float64)
    q = np.ascontiguousarray(b[:, :, 2:]).view(np.int8).astype(np.float64)
    return (d[..., None] * q).reshape(rows, cols)


def dequant_q4_1(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    b = _blocks(raw, rows, cols, 4 + QK // 2)
    d = np.ascontiguousarray(b[:, :, 0:2]).view("<f2")[..., 0].astype(np.float64)
    m = np.ascontiguousarray(b[:, :, 2:4]).view("<f2")[..., 0].astype(np.float64)
    qs = b[:, :, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float64)
    return (d[..., None] * q + m[..., None]).reshape(rows, cols)


def tensor_to_f64(t) -> np.ndarray:
    """GGUF tensor -> float64 array, outermost dim first (GGUF's ne is innermost first)."""
    dims = [int(x) for x in t.shape]  # ne0 (innermost) first
    cols = dims[0]
    rows = 1
    for x in dims[1:]:
        rows *= x
    raw = np.frombuffer(np.asarray(t.data).tobytes(), dtype=np.uint8)
    ttype = int(t.tensor_type)
    if ttype == GGML_F32:
        out = raw.view("<f4").astype(np.float64)
    elif ttype == GGML_F16:
        out = raw.view("<f2").astype(np.float64)
    elif ttype == GGML_Q8_0:
        out = dequant_q8_0(raw, rows, cols)
    elif ttype == GGML_Q4_1:
        out = dequant_q4_1(raw, rows, cols)
    else:
        raise NotImplementedError(f"{t.name}: tensor type {t.tensor_type.name} not decoded here")
    if out.size != rows * cols:
        raise ValueError(f"{t.name}: {out.size} values, expected {rows * cols}")
    return out.reshape(list(reversed(dims)))


# --------------------------------------------------------------------------------------------
# GGUF metadata
# --------------------------------------------------------------------------------------------


def _field(reader: GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is None:
            raise KeyError(f"GGUF metadata key {key} missing")
        return default
    return f.contents()


class Model:
    """The weights and hyperparameters of a llama-architecture GGUF, dequantized once."""

    def __init__(self, path: str = DEFAULT_MODEL, dtype=np.float64):
        self.path = path
        self.dtype = dtype
        r = GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise NotImplementedError(f"architecture {arch!r}: only llama is implemented")
        self.n_layer = int(_field(r, "llama.block_count"))
        self.n_embd = int(_field(r, "llama.embedding_length"))
        self.n_ff = int(_field(r, "llama.feed_forward_length"))
        self.n_head = int(_field(r, "llama.attention.head_count"))
        self.n_head_kv = int(_field(r, "llama.attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(_field(r, "llama.rope.dimension_count", self.head_dim))
        self.rope_base = float(_field(r, "llama.rope.freq_base", 10000.0))
        # The file stores eps as float32; use that value exactly (1e-5 as f32 = 9.99999975e-06).
        self.eps = float(np.float32(_field(r, "llama.attention.layer_norm_rms_epsilon")))
        if self.n_rot != self.head_dim:
            raise NotImplementedError("partial RoPE (rope.dimension_count != head_dim)")
        scaling = r.fields.get("llama.rope.scaling.type")
        if scaling is not None and scaling.contents() not in ("none", "linear"):
            raise NotImplementedError(f"rope scaling {scaling.contents()!r}")
        self.rope_scale = 1.0
        if scaling is not None and scaling.contents() == "linear":
            self.rope_scale = 1.0 / float(_field(r, "llama.rope.scaling.factor"))

        tensors = {t.name: t for t in r.tensors}

        def w(name):
            return tensor_to_f64(tensors[name]).astype(dtype)

        self.tok_embd = w("token_embd.weight")
        self.n_vocab = self.tok_embd.shape[0]
        self.output_norm = w("output_norm.weight")
        self.output = w("output.weight") if "output.weight" in tensors else self.tok_embd
        self.layers = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            self.layers.append({k: w(p + k + ".weight") for k in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")})
        self.tokenizer_meta = {
            "model": _field(r, "tokenizer.ggml.model"),
            "pre": _field(r, "tokenizer.ggml.pre", "default"),
            "tokens": _field(r, "tokenizer.ggml.tokens"),
            "merges": _field(r, "tokenizer.ggml.merges"),
            "token_type": [int(x) for x in _field(r, "tokenizer.ggml.token_type")],
            "add_bos": bool(_field(r, "tokenizer.ggml.add_bos_token", False)),
            "bos": int(_field(r, "tokenizer.ggml.bos_token_id", -1)),
            "eos": int(_field(r, "tokenizer.ggml.eos_token_id", -1)),
            "chat_template": _field(r, "tokenizer.chat_template", ""),
        }

    # ----------------------------------------------------------------------------------------

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + self.dtype(self.eps))) * weight

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: [n, heads, d]; mode 0: rotates adjacent pairs (x[2i], x[2i+1])."""
        d = x.shape[-1]
        inv = self.rope_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # [d/2]
        theta = (positions.astype(np.float64) * self.rope_scale)[:, None] * inv[None, :]
        cos = np.cos(theta).astype(self.dtype)[:, None, :]
        sin = np.sin(theta).astype(self.dtype)[:, None, :]
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out


class Session:
    """A KV cache plus position: eval() appends tokens and returns their logits, as a decoder
    session does. `trace`, when a dict, receives per-layer activations for debugging."""

    def __init__(self, model: Model):
        self.m = model
        self.pos = 0
        self.k = [np.zeros((0, model.n_head_kv, model.head_dim), model.dtype)
                  for _ in range(model.n_layer)]
        self.v = [np.zeros((0, model.n_head_kv, model.head_dim), model.dtype)
                  for _ in range(model.n_layer)]

    def eval(self, tokens, trace: dict | None = None) -> np.ndarray:
        m = self.m
        dt = m.dtype
        tokens = np.asarray(tokens, dtype=np.int64)
        n = tokens.shape[0]
        positions = np.arange(self.pos, self.pos + n)
        x = m.tok_embd[tokens].copy()
        group = m.n_head // m.n_head_kv
        scale = dt(1.0 / np.sqrt(m.head_dim))
        if trace is not None:
            trace["embd"] = x.copy()
        for il, L in enumerate(m.layers):
            h = m.rms_norm(x, L["attn_norm"])
            q = (h @ L["attn_q"].T).reshape(n, m.n_head, m.head_dim)
            k = (h @ L["attn_k"].T).reshape(n, m.n_head_kv, m.head_dim)
            v = (h @ L["attn_v"].T).reshape(n, m.n_head_kv, m.head_dim)
            q = m.rope(q, positions)
            k = m.rope(k, positions)
            self.k[il] = np.concatenate([self.k[il], k], axis=0)
            self.v[il] = np.concatenate([self.v[il], v], axis=0)
            K, V = self.k[il], self.v[il]  # [n_kv, hkv, d]
            n_kv = K.shape[0]
            # causal: query at absolute position p sees keys 0..p
            mask = np.arange(n_kv)[None, :] > positions[:, None]  # [n, n_kv]
            attn = np.empty((n, m.n_head, m.head_dim), dt)
            for hq in range(m.n_head):
                hk = hq // group
                s = (q[:, hq, :] @ K[:, hk, :].T) * scale  # [n, n_kv]
                s = np.where(mask, -np.inf, s)
                s = s - s.max(axis=-1, keepdims=True)
                p = np.exp(s)
                p /= p.sum(axis=-1, keepdims=True)
                attn[:, hq, :] = p @ V[:, hk, :]
            o = attn.reshape(n, m.n_embd) @ L["attn_output"].T
            x = x + o
            h = m.rms_norm(x, L["ffn_norm"])
            g = h @ L["ffn_gate"].T
            u = h @ L["ffn_up"].T
            f = (g / (dt(1.0) + np.exp(-g))) * u
            x = x + f @ L["ffn_down"].T
            if trace is not None:
                trace[f"l{il}.attn_out"] = o.copy()
                trace[f"l{il}.out"] = x.copy()
        x = m.rms_norm(x, m.output_norm)
        logits = x @ m.output.T
        if trace is not None:
            trace["result_norm"] = x.copy()
        self.pos += n
        return logits


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    mx = z.max(axis=-1, keepdims=True)
    return z - (mx + np.log(np.exp(z - mx).sum(axis=-1, keepdims=True)))


def greedy(model: Model, prompt_ids, n_new: int):
    """Argmax decoding for exactly n_new tokens (end-of-generation tokens do not stop it).
    Ties go to the lowest id (np.argmax). Returns (ids, margins): margin = top1 - top2 logit
    at each step, so callers can see how decisive each choice was."""
    s = Session(model)
    logits = s.eval(prompt_ids)[-1]
    out, margins = [], []
    for _ in range(n_new):
        order = np.argsort(-logits, kind="stable")
        t = int(order[0])
        out.append(t)
        margins.append(float(logits[order[0]] - logits[order[1]]))
        logits = s.eval([t])[-1]
    return out, margins


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

# llama.cpp (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM and the starcoder family): the text is
# split by each expression in turn, matches and the text between them both kept as pieces.
SMOLLM_REGEXES = [
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
]
GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED = 3, 4


def build_tokenizer(meta: dict, parse_special: bool = True, style: str = "llama.cpp"):
    """A `tokenizers` Tokenizer equivalent to llama.cpp's for a gpt2/smollm GGUF vocabulary.

    style "llama.cpp": Split(r) with behaviour "isolated" for each of llama.cpp's expressions,
    then byte-level mapping. style "hf": HuggingFace's own SmolLM2 tokenizer.json pipeline
    (Digits(individual) then ByteLevel with GPT-2's regex) — built only to cross-check the two.
    parse_special: control/user-defined token texts become their ids (as llama_tokenize with
    parse_special=true); without it they are ordinary text."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    if meta["model"] != "gpt2":
        raise NotImplementedError(f"tokenizer model {meta['model']!r}")
    if meta["pre"] != "smollm":
        raise NotImplementedError(f"pre-tokenizer {meta['pre']!r}")
    tokens = meta["tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate token texts in the vocabulary")
    merges = []
    for mline in meta["merges"]:
        a, b = mline.split(" ")
        merges.append((a, b))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    if style == "llama.cpp":
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(rx), behavior="isolated") for rx in SMOLLM_REGEXES]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif style == "hf":
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        raise ValueError(style)
    tk.decoder = decoders.ByteLevel()
    if parse_special:
        specials = [tokens[i] for i, ty in enumerate(meta["token_type"])
                    if ty in (GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED)]
        tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tk


def tokenize(tk, text: str, add_bos: bool = False, bos: int = -1):
    ids = tk.encode(text, add_special_tokens=False).ids
    return ([bos] if add_bos else []) + list(ids)


def chat_prompt(meta: dict, user: str) -> str:
    """Renders the GGUF's tokenizer.chat_template (jinja2) for one user message + assistant
    prefix, as an application would (the template itself adds the default system message)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(meta["chat_template"]).render(
        messages=[{"role": "user", "content": user}], add_generation_prompt=True)


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description="numpy reference: greedy continuation of a prompt")
    ap.add_argument("prompt")
    ap.add_argument("-m", "--model", default=DEFAULT_MODEL)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    ap.add_argument("--f32", action="store_true", help="compute in float32 instead of float64")
    a = ap.parse_args(argv)
    model = Model(a.model, np.float32 if a.f32 else np.float64)
    tk = build_tokenizer(model.tokenizer_meta)
    text = chat_prompt(model.tokenizer_meta, a.prompt) if a.chat else a.prompt
    ids = tokenize(tk, text, model.tokenizer_meta["add_bos"], model.tokenizer_meta["bos"])
    out, margins = greedy(model, ids, a.n)
    print("prompt ids:", ids)
    print("continuation ids:", out)
    print("min margin: %.4f" % min(margins))
    print("text:", repr(tk.decode(out, skip_special_tokens=False)))


if __name__ == "__main__":
    main(sys.argv[1:])
