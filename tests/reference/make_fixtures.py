"""tests/reference/make_fixtures.py — writes tests/fixtures/model/*.txt from the numpy reference.

The fixtures are plain text so the C test needs no parser library: one record per line, words
separated by single spaces, prompt texts as hex of their UTF-8 bytes (no escaping questions).

  tokens.txt     tokenization of a set of prompts (ids must match exactly)
  sequences.txt  per sequence: prompt ids, the reference's greedy continuation, and for every
                 position of prompt+continuation (teacher-forced) the reference distribution:
                 top-1 id and margin, log-sum-exp of the logits, top-K ids with log-probs and
                 the probability mass outside the top K (computed directly, not as 1 - sum).

Why top-K and not full logits: 49152 floats per position would be ~200 KB each. The test's KL is
taken over the K reference-top tokens plus one bucket for everything else. Merging outcomes can
only lose information, so (log-sum inequality) this KL is a lower bound of the exact KL; the gap
is P_tail * KL(p_tail || q_tail) (both normalised over the tail), negligible when the tail holds
little mass. This script prints both the exact and the bucketed KL of a float32 run of the same
model against the float64 oracle, so the size of that gap is on record.

Usage: python make_fixtures.py [--model PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

TOP_K = 64
N_GENERATE = 32

# (name, parse_special, text). Texts cover: plain ASCII with punctuation and contractions,
# non-ASCII (accents, CJK, emoji: multi-byte and byte-level fallback), code with indentation,
# whitespace runs (spaces, tabs, newlines, trailing), digits (split one by one by the smollm
# pre-tokenizer), special tokens parsed and not parsed, the empty string.
PROMPTS = [
    ("ascii", 1, "Hello world! It's a sunny day, isn't it? The quick brown fox jumps over the "
                 "lazy dog."),
    ("non_ascii", 1, "Café 中文 🙂"),
    ("unicode_mix", 1, "naïve résumé — Ελληνικά, русский, العربية, हिन्दी, 日本語の文章。 👍🏽"),
    ("code", 1, "def fib(n):\n    if n < 2:\n        return n\n\treturn fib(n - 1) + fib(n - 2)\n"),
    ("whitespace", 1, "a   b\t\tc \n\n d  \n\n\n   x  \r\n "),
    ("digits", 1, "I'll pay $1,234.56 by 2025-01-01; they're sure we've 42 of 'em."),
    ("special", 1, "<|im_start|>user\nHi<|im_end|>\n"),
    ("special_as_text", 0, "<|im_start|>user\nHi<|im_end|>\n"),
    ("empty", 1, ""),
]

PLAIN_PROMPT = "The capital of France is"
CHAT_USER = "What is the capital of France?"


def hexs(text: str) -> str:
    return text.encode("utf-8").hex() or "-"


def ids_line(tag: str, ids) -> str:
    return " ".join([tag, str(len(ids))] + [str(int(i)) for i in ids])


def position_record(logits: np.ndarray, k: int):
    """Reference distribution summary at one position (float64)."""
    z = logits.astype(np.float64)
    mx = z.max()
    lse = float(mx + np.log(np.exp(z - mx).sum()))
    logp = z - lse
    order = np.argsort(-z, kind="stable")
    top = order[:k]
    tail = float(np.exp(logp[order[k:]]).sum())
    return {
        "top1": int(order[0]),
        "margin": float(z[order[0]] - z[order[1]]),
        "lse": lse,
        "tail": tail,
        "ids": [int(i) for i in top],
        "logp": [float(logp[i]) for i in top],
    }


def kl_exact(ref_logits, test_logits):
    lp = R.log_softmax(ref_logits)
    lq = R.log_softmax(test_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def kl_bucketed(rec, test_logits):
    """The test's formula: KL over the reference top-K plus one tail bucket."""
    lq = R.log_softmax(test_logits)
    ids = np.array(rec["ids"])
    lp = np.array(rec["logp"])
    kl = float((np.exp(lp) * (lp - lq[ids])).sum())
    mask = np.ones(lq.shape[0], bool)
    mask[ids] = False
    q_tail = float(np.exp(lq[mask]).sum())
    if rec["tail"] > 0:
        kl += rec["tail"] * (np.log(rec["tail"]) - np.log(q_tail))
    return kl


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=R.DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(R.REPO_ROOT, "tests", "fixtures", "model"))
    a = ap.parse_args()
    t_start = time.time()
    if not os.path.exists(a.model):
        sys.exit(f"{a.model} not found: run tools/fetch-model.sh first")
    sha = R.sha256_file(a.model)
    size = os.path.getsize(a.model)
    model_line = f"model {os.path.basename(a.model)} sha256 {sha} bytes {size}"

    t0 = time.time()
    model = R.Model(a.model, np.float64)
    meta = model.tokenizer_meta
    print(f"loaded + dequantized (float64) in {time.time() - t0:.1f} s", file=sys.stderr)
    tk_special = R.build_tokenizer(meta, parse_special=True)
    tk_plain = R.build_tokenizer(meta, parse_special=False)
    tk_hf = R.build_tokenizer(meta, parse_special=True, style="hf")

    def tok(text, special):
        ids = R.tokenize(tk_special if special else tk_plain, text, meta["add_bos"], meta["bos"])
        if special:  # llama.cpp-style splitting and HF's own pipeline must agree
            hf = R.tokenize(tk_hf, text, meta["add_bos"], meta["bos"])
            if hf != ids:
                sys.exit(f"tokenizer styles disagree on {text!r}: {ids} vs {hf}")
        return ids

    chat_text = R.chat_prompt(meta, CHAT_USER)
    prompts = PROMPTS + [("plain", 1, PLAIN_PROMPT), ("chat", 1, chat_text)]

    os.makedirs(a.out, exist_ok=True)
    lines = [
        "# Bastion reference fixture: tokenization. Written by tests/reference/make_fixtures.py;",
        "# do not edit. Records: 'prompt NAME PARSE_SPECIAL HEX' (UTF-8 text as hex, '-' when",
        "# empty) followed by 'ids COUNT ID...'; 'hparams' as the reference read them;",
        "# 'chat_user HEX': the prompt before it is the GGUF chat template (rendered by jinja2)",
        "# applied to this single user message with the assistant prefix added.",
        model_line,
        f"hparams n_layers {model.n_layer} n_embd {model.n_embd} n_heads {model.n_head} "
        f"n_kv_heads {model.n_head_kv} head_dim {model.head_dim} n_ff {model.n_ff} "
        f"n_vocab {model.n_vocab}",
    ]
    for name, special, text in prompts:
        ids = tok(text, special)
        lines.append(f"prompt {name} {special} {hexs(text)}")
        lines.append(ids_line("ids", ids))
        if name == "chat":  # the text is the GGUF chat template applied to this one message
            lines.append(f"chat_user {hexs(CHAT_USER)}")
        print(f"  tokens {name}: {len(ids)} ids", file=sys.stderr)
    with open(os.path.join(a.out, "tokens.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # Greedy continuations and teacher-forced distributions.
    seq_lines = [
        "# Bastion reference fixture: greedy continuations and teacher-forced distributions.",
        "# Written by tests/reference/make_fixtures.py (numpy, float64); do not edit.",
        "# 'sequence NAME PARSE_SPECIAL HEX', 'prompt_ids N ...', 'greedy_ids N ...' (argmax,",
        "# not stopped by end-of-generation tokens), then one 'pos P top1 ID margin M lse L tail T",
        f"# k K' line and one 'topk ID LOGP ...' line per position of prompt+greedy (logits after",
        "# the token at P).",
        model_line,
        f"top_k {TOP_K}",
    ]
    model32 = None
    summary = []
    for name, special, text in [("plain", 1, PLAIN_PROMPT), ("chat", 1, chat_text)]:
        ids = tok(text, special)
        t0 = time.time()
        gen, margins = R.greedy(model, ids, N_GENERATE)
        t_gen = time.time() - t0
        full = ids + gen
        t0 = time.time()
        logits = R.Session(model).eval(full)  # teacher-forced, one batch
        t_tf = time.time() - t0
        # The batch pass must reproduce the incremental (KV-cache) greedy choices.
        for j, t in enumerate(gen):
            if int(np.argmax(logits[len(ids) - 1 + j])) != t:
                sys.exit(f"{name}: batch and incremental passes disagree at step {j}")
        seq_lines.append(f"sequence {name} {special} {hexs(text)}")
        seq_lines.append(ids_line("prompt_ids", ids))
        seq_lines.append(ids_line("greedy_ids", gen))
        recs = []
        for p in range(len(full)):
            r = position_record(logits[p], TOP_K)
            recs.append(r)
            seq_lines.append(f"pos {p} top1 {r['top1']} margin {r['margin']:.9e} "
                             f"lse {r['lse']:.12e} tail {r['tail']:.12e} k {TOP_K}")
            seq_lines.append("topk " + " ".join(f"{i} {lp:.12e}" for i, lp in
                                                 zip(r["ids"], r["logp"])))
        # Sanity check of the tolerance and of the bucketed KL: the same pass in float32.
        if model32 is None:
            t0 = time.time()
            model32 = R.Model(a.model, np.float32)
            print(f"loaded float32 copy in {time.time() - t0:.1f} s", file=sys.stderr)
        l32 = R.Session(model32).eval(full).astype(np.float64)
        kle = kl_exact(logits, l32)
        klb = np.array([kl_bucketed(r, l32[p]) for p, r in enumerate(recs)])
        top1_ok = all(int(np.argmax(l32[p])) == r["top1"]
                      for p, r in enumerate(recs) if r["margin"] > 0.1)
        tails = np.array([r["tail"] for r in recs])
        summary.append(
            f"{name}: {len(ids)} prompt + {len(gen)} greedy tokens; greedy {t_gen:.1f} s, "
            f"teacher-forced {t_tf:.1f} s\n"
            f"  greedy text: {tk_special.decode(gen, skip_special_tokens=False)!r}\n"
            f"  greedy min margin {min(margins):.4f} (step {int(np.argmin(margins))}); "
            f"positions with margin <= 0.1: {sum(r['margin'] <= 0.1 for r in recs)}/{len(recs)}\n"
            f"  tail mass outside top-{TOP_K}: max {tails.max():.3e}, mean {tails.mean():.3e}\n"
            f"  float32 vs float64: mean KL exact {kle.mean():.3e} (max {kle.max():.3e}), "
            f"bucketed {klb.mean():.3e} (max {klb.max():.3e}); top-1 where margin > 0.1: "
            f"{'all match' if top1_ok else 'MISMATCH'}; max |dlogit| "
            f"{np.abs(l32 - logits).max():.3e}")
    with open(os.path.join(a.out, "sequences.txt"), "w") as f:
        f.write("\n".join(seq_lines) + "\n")

    for s in summary:
        print(s)
    for fn in ("tokens.txt", "sequences.txt"):
        print(f"{fn}: {os.path.getsize(os.path.join(a.out, fn))} bytes")
    print(f"total time {time.time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
