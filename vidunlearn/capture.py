"""Record activations with forward hooks that are always removed (``finally``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def record_activations(modules: dict[str, tuple[torch.nn.Module, bool]]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record, per name, every output (or first input, when the flag is True) of each module.

    Yields ``{name: [tensor per call]}``; tensors are detached float32 CPU copies. Hooks return
    None so they never change the model's outputs, and are removed even when the body raises.
    """
    records: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    handles = []

    def make_hook(name: str, want_input: bool):
        def hook(module: torch.nn.Module, args: tuple, output: object) -> None:
            value = args[0] if want_input else output
            records[name].append(value.detach().float().cpu())
            return None

        return hook

    try:
        for name, (module, want_input) in modules.items():
            handles.append(module.register_forward_hook(make_hook(name, want_input)))
        yield records
    finally:
        for handle in handles:
            handle.remove()
