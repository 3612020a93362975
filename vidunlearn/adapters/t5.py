"""T5 prompt encoding as LTXPipeline and CogVideoXPipeline do it (shared by those adapters): pad
to exactly ``max_length``, truncate, add ``</s>``, and run the encoder WITHOUT an attention mask,
so the real tokens attend to the pads and their states depend on ``max_length``."""

from __future__ import annotations


def encode_t5_padded(tokenizer, encoder, prompts: list[str], max_length: int, device: str, *, keep_pads: bool,
                     batch_size: int = 8, progress=None) -> list:
    """[(T_i, D)] per prompt: the real tokens (``keep_pads=False``: the denoiser masks the pads
    out, LTX) or all ``max_length`` positions (``keep_pads=True``: the denoiser reads them all,
    CogVideoX)."""
    import torch

    states: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start:start + batch_size])
            tokens = tokenizer(batch, padding="max_length", max_length=max_length, truncation=True,
                               add_special_tokens=True, return_tensors="pt")
            hidden = encoder(tokens.input_ids.to(device))[0]  # no mask, as the pipelines
            lengths = [max_length] * len(batch) if keep_pads else tokens.attention_mask.sum(dim=1).tolist()
            states.extend(row[:length] for row, length in zip(hidden, lengths))
            if progress is not None:
                progress(len(batch))
    return states
