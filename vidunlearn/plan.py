"""What ``apply`` will change: every linear layer each edit site reaches, planned from the shard
headers alone (:func:`plan_edits`), and, for a dry run, checked against the denoiser built on the
meta device from its config (:func:`check_against_config`). No weight is read here; the writing
is :mod:`vidunlearn.checkpoint`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bounds import check_buildable
from .edit import EditSpec
from .errors import ModelError
from .model import FLOAT_DTYPES, ModelSource, TensorInfo


@dataclass(frozen=True)
class PlannedEdit:
    """One linear layer to rewrite. ``site`` is ``component/site_name``."""

    component: str
    module: str
    site: str
    weight: TensorInfo
    bias: TensorInfo | None
    spec: EditSpec | None  # None in a dry run, before any direction is known

    @property
    def keys(self) -> list[str]:
        assert self.spec is not None
        keys = [self.weight.key] if self.spec.touches_weight else []
        if self.spec.touches_bias and self.bias is not None:
            keys.append(self.bias.key)
        return keys


def plan_edits(source: ModelSource, specs: dict[str, EditSpec | None], module_filter: str | None) -> list[PlannedEdit]:
    """Every layer each site's spec applies to (``site key -> spec``; a None spec plans a dry
    run), checked against the shard headers alone.

    Fails when a targeted module is missing or its input size differs from the direction's.
    """
    adapter = source.adapter
    plan: list[PlannedEdit] = []
    for site_key, spec in sorted(specs.items()):
        component, site_name = site_key.split("/", 1)
        if component not in source.denoisers:
            raise ModelError(f"component {component!r} is not in this model (has {source.denoisers})",
                             where=str(source.path), fix="use refusal vectors extracted from this model")
        infos = source.tensor_infos(component)
        modules = adapter.targets_matching(adapter.site(site_name), source.config(component), module_filter)
        if not modules:
            raise ModelError(f"--sites {module_filter!r} matches no target layer of {site_key}",
                             fix="use a regex on module names such as 'attn2.to_k'")
        for module in modules:
            weight = infos.get(f"{module}.weight")
            if weight is None:
                raise ModelError(f"targeted module {module!r} (from config.json) is missing from the weights",
                                 where=str(source.component_dir(component)),
                                 fix="the weights and config.json come from different models")
            hidden = spec.basis.shape[0] if spec is not None else weight.shape[-1]
            if len(weight.shape) != 2 or weight.shape[1] != hidden:
                raise ModelError(f"{module}.weight has shape {list(weight.shape)}, the direction has size {hidden}",
                                 where=component, fix="the refusal vectors come from another model")
            bias = infos.get(f"{module}.bias")
            for info in (weight, bias):
                if info is not None and info.dtype not in FLOAT_DTYPES:
                    raise ModelError(f"{info.key} is stored as {info.dtype}, not a float dtype", where=str(info.file),
                                     fix="re-download the model; the file may be hostile")
            if spec is not None and spec.touches_bias and bias is None:
                raise ModelError(f"mode {spec.mode!r} needs {module}.bias, which is absent", fix="use --mode project")
            plan.append(PlannedEdit(component, module, site_key, weight, bias, spec))
    return plan


def check_against_config(source: ModelSource, plan: list[PlannedEdit]) -> int:
    """Build each planned component on the meta device from its config alone (no weights, no
    memory) and check it against the shard headers: the same key set and shapes, and every
    planned module a linear layer. Returns the number of tensors checked. This is what proves a
    dry run's plan, before any byte is read or written."""
    checked = 0
    for component in sorted({edit.component for edit in plan}):
        model = check_buildable(source, component)  # stopped as soon as it outgrows the weights
        expected = {k: list(v.shape) for k, v in model.state_dict().items()}
        stored = {k: list(v.shape) for k, v in source.tensor_infos(component).items()}
        where = str(source.component_dir(component))
        if set(expected) != set(stored):
            missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
            raise ModelError(f"checkpoint keys do not match config.json ({len(missing)} missing, e.g. "
                             f"{missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]})", where=where,
                             fix="the weights and config.json come from different models")
        wrong = [k for k in expected if expected[k] != stored[k]]
        if wrong:
            raise ModelError(f"{wrong[0]} is {stored[wrong[0]]} in the checkpoint but {expected[wrong[0]]} by "
                             f"config.json ({len(wrong)} such tensors)", where=where,
                             fix="the weights and config.json come from different models")
        for edit in (e for e in plan if e.component == component):
            if not isinstance(model.get_submodule(edit.module), torch.nn.Linear):
                raise ModelError(f"{edit.module} is not a linear layer", where=where, fix="check --sites")
        checked += len(expected)
    return checked
