"""CompactPadding's ``null`` token is computed where the denoiser lives. A CPU zero caption fed to a
CUDA model failed every Wan sampling with ``--device cuda`` (apply --adversarial, attack, eval,
sample; found on an H200, fourteenth session). The meta device stands in for the GPU here: a CPU
input into meta weights fails the same way, "Expected all tensors to be on the same device"."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

diffusers = pytest.importorskip("diffusers")


def test_the_null_token_is_computed_on_the_denoisers_device():
    from vidunlearn.sampling import CompactPadding, install_compact_padding
    from vidunlearn.tiny import TRANSFORMER_CONFIG

    transformer = diffusers.WanTransformer3DModel(**TRANSFORMER_CONFIG).to("meta")
    assert install_compact_padding(SimpleNamespace(transformer=transformer), 16)
    processor = transformer.blocks[0].attn2.processor
    assert isinstance(processor, CompactPadding) and processor.null.device.type == "meta"
