"""HunyuanVideo text-to-video (diffusers ``HunyuanVideoPipeline``, 13B).

Text path: the prompt is wrapped in diffusers' ``DEFAULT_PROMPT_TEMPLATE``, encoded by a Llama
(``text_encoder``, ``hidden_states[-3]``: the output of the third-last decoder layer, no final
norm), and the template's 95-token prefix is cropped; what the transformer reads are the prompt
tokens plus the template's closing ``<|eot_id|>`` (its attention mask; pads are masked
everywhere). Inside the transformer the token refiner (``context_embedder``) reads those states
UNCHANGED in exactly two linear layers, the only ones with ``in_features == text_embed_dim``:

- ``context_embedder.proj_in``, per token;
- ``context_embedder.time_text_embed.text_embedder.linear_1``, on their masked MEAN over the
  tokens (added to the timestep embedding that modulates every refiner block).

The site ``text_in`` captures ``proj_in``'s input and edits both. That is exact for both modes:
both are linear in the states, so W' = W (I - lambda p p^T) and W' = W + s (W A) B^T applied to
a mean of token states equal the mean of the edited tokens' images. Editing ``proj_in`` alone
would let the concept in through the pooled mean.

Not edited (they are downstream of ``proj_in``, so its edit reaches them): the refiner blocks
(the first one's attention reads ``proj_in``'s output through a LayerNorm and token mixing, and
from its first gate on, which ``temb`` sets, the text depends on the timestep), and the
dual-stream blocks (``add_{q,k,v}_proj``, ``ff_context``: timestep-modulated norms in the first
block; from the second block on the text stream has already attended to the video tokens).

NOT covered: HunyuanVideo has a second, separate text path, the CLIP pooled vector
(``text_encoder_2``, 768-d) read by ``time_text_embed.text_embedder.linear_1`` (single file:
``vector_in.in_layer``). It is a different encoder's space; the tool captures one text encoder
per family, so that path is left as it is and a concept can still reach the model through it
(weakly: one pooled vector added to the timestep embedding).

Single files: the original / ComfyUI layout fuses tensors (``img_attn_qkv``, ``txt_attn_qkv``,
the refiner's ``self_attn_qkv``, the single blocks' ``linear1`` = q, k, v and the MLP), so it
cannot be written by renaming tensors byte for byte: ``--format single-file`` is refused in one
line (the two text-path tensors themselves are plain renames, ``txt_in.input_embedder`` and
``txt_in.c_embedder.linear_1``, but a whole file needs every tensor).
"""

from __future__ import annotations

from .base import Adapter, Site


def encode_hunyuan(tokenizer, encoder, prompts: list[str], max_length: int, device: str, batch_size: int = 8,
                   progress=None) -> list:
    """Per prompt (T_i, D): the Llama states HunyuanVideoPipeline._get_llama_prompt_embeds hands
    the transformer, at the positions its attention mask keeps after the template's prefix is
    cropped (the prompt tokens and the template's trailing ``<|eot_id|>``). Tokenised as the
    pipeline does (padding to ``max_length`` + crop_start, truncation), ``hidden_states[-3]``."""
    import torch
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    template = DEFAULT_PROMPT_TEMPLATE
    crop = template.get("crop_start")
    if crop is None:  # the pipeline's own rule (the default template gives crop_start=95)
        crop = tokenizer(template["template"], padding="max_length", return_attention_mask=False,
                         return_tensors="pt")["input_ids"].shape[-1] - 2
    dtype = next(encoder.parameters()).dtype
    states: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = [template["template"].format(p) for p in prompts[start:start + batch_size]]
            tokens = tokenizer(batch, max_length=max_length + crop, padding="max_length", truncation=True,
                               return_attention_mask=True, return_tensors="pt")
            ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
            hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-3]
            hidden = hidden.to(dtype)
            states.extend(row[keep.bool()] for row, keep in zip(hidden[:, crop:], mask[:, crop:]))
            if progress is not None:
                progress(len(batch))
    return states


HUNYUAN = Adapter(
    family="hunyuan",
    pipeline_classes=("HunyuanVideoPipeline",),
    denoisers=("transformer",),
    denoiser_class="HunyuanVideoTransformer3DModel",
    feed="context_embedder.proj_in",  # a Linear: called on (1, T, text_embed_dim) alone
    block_count_key="num_layers",  # unused: the targets name no {block}
    sites={
        "text_in": Site(
            name="text_in",
            capture="context_embedder.proj_in",
            capture_input=True,
            targets=("context_embedder.proj_in", "context_embedder.time_text_embed.text_embedder.linear_1"),
            description="raw Llama states (template-cropped hidden_states[-3]), read by the token refiner's "
                        "proj_in and, as their masked mean, by its pooled text embedder's linear_1",
        ),
    },
    default_sites=("text_in",),
    encode=encode_hunyuan,
    max_sequence_length=256,
    single_file_refusal="has a single-file layout that fuses tensors (q/k/v), which cannot be written by renaming",
    frame_step=4,
    size_step=16,  # HunyuanVideoPipeline.check_inputs: height and width divisible by 16
    aliases={"hunyuanvideo": "hunyuanvideo-community/HunyuanVideo"},
)
