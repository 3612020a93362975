"""A tiny CLIP BPE tokenizer, offline: byte-level chars (+ '</w>' forms) and whole words of `texts`.
Shared by the families with a CLIP text encoder (HunyuanVideo's tokenizer_2, ZeroScope)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_tokenizer(texts, model_max_length=77, pad_token="<|endoftext|>"):
    """A real ``CLIPTokenizer`` from a vocab.json + merges.txt written to a temporary folder (removed)."""
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    merges = []
    words = sorted({w for t in texts for w in re.findall(r"[a-z]+", t.lower())})
    for w in words:  # merge left to right: ((a b) c) ... </w>
        cur = w[0]
        for i, ch in enumerate(w[1:], 1):
            nxt = ch + ("</w>" if i == len(w) - 1 else "")
            merges.append(f"{cur} {nxt}")
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
    for s in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(s, len(vocab))
    merges = list(dict.fromkeys(merges))
    with tempfile.TemporaryDirectory() as temp:  # the tokenizer reads both files when built
        folder = Path(temp)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                             model_max_length=model_max_length, pad_token=pad_token)
