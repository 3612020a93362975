"""Real-size denoisers on disk for free: every key and shape of a model built on the meta device
from its real config.json, in one safetensors file whose header is real and whose data section is
a hole (the file is truncated to its full length: sparse, no disk blocks used). Plans and dry runs
read headers only, so they see the real layout; reading a tensor gives zeros."""

from __future__ import annotations

import json
from pathlib import Path

DTYPES = {"F32": 4, "F16": 2, "BF16": 2}


def write_sparse_denoiser(folder: Path, class_name: str, config: dict, dtype: str = "F16",
                          file: str = "diffusion_pytorch_model.safetensors") -> dict[str, list[int]]:
    """Write ``folder/config.json`` and a sparse ``folder/<file>`` holding every tensor of the
    diffusers model ``class_name`` built from ``config`` (stored as ``dtype``). Returns key -> shape."""
    import diffusers
    from accelerate import init_empty_weights

    from vidunlearn.header import encode_header

    cls = getattr(diffusers, class_name)
    with init_empty_weights():
        model = cls.from_config(config)
    shapes = {key: list(tensor.shape) for key, tensor in model.state_dict().items()}
    del model
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in sorted(shapes):
        size = DTYPES[dtype]
        for dim in shapes[key]:
            size *= dim
        header[key] = {"dtype": dtype, "shape": shapes[key], "data_offsets": [offset, offset + size]}
        offset += size
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": class_name, "_diffusers_version": diffusers.__version__,
                                                    **config}, indent=2))
    prefix = encode_header(header)
    with open(folder / file, "wb") as handle:
        handle.write(prefix)
        handle.truncate(len(prefix) + offset)
    return shapes
