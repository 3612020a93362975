"""A trained text encoder in the output: ``apply --adversarial`` with ``site: text_encoder``
(:mod:`vidunlearn.adversarial`; AdvUnlearn's site).

The denoiser keeps the closed-form remap; the text encoder's layers (:func:`encoder_parameters`) are
trained against the attack.
Only a diffusers folder can carry both, so the other formats are refused before any work. The
encoder's weight files are rewritten into the output (new files, never written through a hard link
into the base), with the recipe's ``vidunlearn.recipe`` metadata, and listed in the manifest's
``text_encoder_edit`` (tensor, relative change), which ``verify --base`` checks: every listed tensor
differs from the base, nothing else in the encoder does, and the token embedding table (the attack's
space) is never listed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import ModelError, VidunlearnError

if TYPE_CHECKING:
    from .model import ModelSource

COMPONENT = "text_encoder"
# the token tables of the encoders Wan and the benchmark model use (UMT5, BERT): never trained
TOKEN_TABLES = ("shared.weight", "encoder.embed_tokens.weight", "embeddings.word_embeddings.weight")


def trains_encoder(recipe: dict) -> bool:
    """Whether a manifest recipe (as written) trained the text encoder."""
    adversarial = recipe.get("adversarial")
    return isinstance(adversarial, dict) and adversarial.get("site") == COMPONENT


def encoder_parameters(encoder, layers: int = 0) -> dict[str, torch.nn.Parameter]:
    """The text encoder's parameters ``site: text_encoder`` trains: all but the token embedding table
    (the attack's own space); with ``layers`` k, only those of its first k blocks (``.layer.N.``,
    ``.block.N.``: BERT's, T5's)."""
    import re

    table = encoder.get_input_embeddings().weight
    chosen = {}
    for name, parameter in encoder.named_parameters():
        block = re.search(r"\.(?:layer|layers|block)\.(\d+)\.", f".{name}")
        if parameter is not table and (not layers or (block is not None and int(block.group(1)) < layers)):
            chosen[name] = parameter
    if not chosen:
        raise VidunlearnError("adversarial training found no text-encoder layer to train",
                              fix="set text_encoder_layers to 0 (every layer) or a number the encoder has")
    return chosen


def changed_words(pairs) -> set[str]:
    """The words the ``pairs`` change, on either side (the attack's words and their replacements)."""
    from .remap import changed_places

    words = set()
    for pair in pairs:
        unsafe, safe = changed_places(pair.unsafe, pair.safe)
        words |= {pair.unsafe.split()[k] for k in unsafe} | {pair.safe.split()[k] for k in safe}
    return words


def changed_word_ids(tokenizer, pairs) -> set[int]:
    """The token ids of the words the ``pairs`` change, on either side (red, green, ...), special tokens
    left out: the tokens ``anchor_concept`` weighs."""
    special = set(tokenizer.all_special_ids)
    return {i for word in changed_words(pairs) for i in tokenizer(word, add_special_tokens=False).input_ids} - special


def anchor_weights(ids: torch.Tensor, concept_ids: set[int], weight: float) -> torch.Tensor:
    """Per token of a keep prompt (its real tokens, as its states are): ``weight`` where the token is
    one of ``concept_ids``, 1 elsewhere."""
    hit = torch.tensor([int(i) in concept_ids for i in ids.tolist()], dtype=torch.bool, device=ids.device)
    return torch.where(hit, torch.tensor(float(weight), device=ids.device), torch.tensor(1.0, device=ids.device))


def prompt_ids(tokenizer, text: str, length: int, device: str) -> torch.Tensor:
    """A prompt's token ids as the trained encoder reads it live (Wan's cleaning, truncated to ``length``)."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    return tokenizer(prompt_clean(text), max_length=length, truncation=True, return_tensors="pt").input_ids[0].to(device)


def unrelated_items(tokenizer, keep_texts: list[str], states, length: int, device: str) -> list[dict]:
    """``anchor_unrelated``'s prompts: the 100 everyday prompts of :func:`vidunlearn.collateral.anchor_prompts`
    (disjoint from the 500 the encoder's collateral is measured on), less any keep prompt, each with its
    token ids and the base encoder's states."""
    from .collateral import anchor_prompts

    kept = set(keep_texts)
    texts = [t for t in anchor_prompts() if t not in kept]
    return [{"states": s, "ids": prompt_ids(tokenizer, t, length, device)} for t, s in zip(texts, states(texts))]


def check_format(settings, output_format: str) -> None:
    """A trained encoder needs a diffusers folder: the other formats carry the denoiser only."""
    if settings.steps and settings.site == COMPONENT and output_format != "diffusers":
        raise VidunlearnError(f"adversarial site text_encoder trains the text encoder, which a {output_format} output "
                              "cannot carry", fix="use --format diffusers (the default), or site: factors")


def encoder_files(source: ModelSource, tensors: dict[str, torch.Tensor]) -> set[Path]:
    """The base's encoder weight files that hold ``tensors``: the files :func:`write_encoder` rewrites
    in full (for the free-space check before anything is written)."""
    from .model import weight_map

    where = weight_map(source.component_dir(COMPONENT))
    return {where[name] for name in tensors if name in where}


def write_encoder(source: ModelSource, temp: Path, tensors: dict[str, torch.Tensor],
                  metadata: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
    """Rewrite the encoder's weight files in ``temp`` (the output being written) with ``tensors``
    (as the encoder module names them; cast to the stored dtypes; one the training left as it was, such
    as a pooler the states never pass through, stays the base's). Returns the manifest's records
    ({tensor, relative_change}) and {relative path: SHA-256} of the files rewritten."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .hashing import sha256_file
    from .model import weight_map

    folder = source.component_dir(COMPONENT)
    where = weight_map(folder)
    unknown = sorted(set(tensors) - set(where))
    if unknown or set(tensors) & set(TOKEN_TABLES):
        name = unknown[0] if unknown else sorted(set(tensors) & set(TOKEN_TABLES))[0]
        raise ModelError(f"the trained text encoder's tensor {name!r} is not a trainable tensor of the base's files",
                         where=str(folder), fix="re-run apply against the model it was trained on")
    records, hashes = [], {}
    for file in sorted({where[name] for name in tensors}):
        rel = file.relative_to(source.path).as_posix()
        with safe_open(str(file), framework="pt") as handle:
            kept = dict(handle.metadata() or {})
            values = {key: handle.get_tensor(key) for key in handle.keys()}
        for name, new in tensors.items():
            if where[name] != file:
                continue
            old = values[name]
            if torch.equal(new.to(old.dtype), old):   # never reached by the loss (a pooler): not an edit
                continue
            change = float((new.float() - old.float()).norm() / old.float().norm().clamp_min(1e-12))
            if not torch.isfinite(new).all():
                raise ModelError(f"the trained text encoder's {name!r} holds NaN or Inf", where=rel,
                                 fix="lower the adversarial settings' lr")
            values[name] = new.to(old.dtype).contiguous()
            records.append({"tensor": name, "relative_change": change})
        target, partial = temp / rel, temp / f"{rel}.partial"
        save_file(values, str(partial), metadata=kept | metadata)
        os.replace(partial, target)   # a new file: the hard link to the base's, if any, is only unlinked
        hashes[rel] = sha256_file(target)
    return sorted(records, key=lambda r: r["tensor"]), hashes
