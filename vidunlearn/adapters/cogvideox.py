"""CogVideoX text-to-video (diffusers ``CogVideoXPipeline``: 2B and 5B).

Text path: T5-XXL states, padded to 226 and encoded without a mask, and NOT masked anywhere in
the denoiser: all 226 positions pass ``patch_embed.text_proj``, the one layer that reads text
alone, then join the video tokens in every block's joint attention (``norm1``, ``attn1.to_q/k/v``
read text and video together). So the only site is ``patch_embed.text_proj``'s input, the raw T5
states, and a direction is estimated over all 226 positions, pads included, because the model
reads them all. Editing later layers would change how video tokens are processed too.
"""

from __future__ import annotations

from .base import Adapter, Site
from .t5 import encode_t5_padded


def encode_cogvideox(tokenizer, encoder, prompts: list[str], max_length: int, device: str, batch_size: int = 8,
                     progress=None) -> list:
    """CogVideoXPipeline's T5 states of all ``max_length`` positions (the pads' states differ from prompt to prompt)."""
    return encode_t5_padded(tokenizer, encoder, prompts, max_length, device, keep_pads=True,
                            batch_size=batch_size, progress=progress)


COGVIDEOX = Adapter(
    family="cogvideox",
    pipeline_classes=("CogVideoXPipeline",),
    denoisers=("transformer",),
    denoiser_class="CogVideoXTransformer3DModel",
    feed="patch_embed.text_proj",  # patch_embed itself also needs the video latents
    block_count_key="num_layers",
    sites={
        "text_proj_in": Site(
            name="text_proj_in",
            capture="patch_embed.text_proj",
            capture_input=True,
            targets=("patch_embed.text_proj",),
            description="raw T5 states (all 226 positions), read by patch_embed.text_proj, the one text-only layer",
        ),
    },
    default_sites=("text_proj_in",),
    encode=encode_cogvideox,
    max_sequence_length=226,  # = the transformer config's max_text_seq_length
    frame_step=4,
    size_step=16,
    aliases={"cogvideox-2b": "THUDM/CogVideoX-2b", "cogvideox-5b": "THUDM/CogVideoX-5b"},
)
