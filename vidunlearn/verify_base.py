"""``verify --base``: the output must be exactly the base plus the recipe's edit.

The edited set is recomputed, never read from the manifest: the recipe's sites and module regex are
planned on the base with the planner ``apply`` uses (:func:`vidunlearn.plan.plan_edits`), and
the recipe's mode says whether weights, biases or both change. Then:

- every tensor of every output weight file is compared with the base's (byte for byte, or as the
  base cast to the output's dtype for ``--save-dtype``); every tensor of the base is in the output;
  every non-safetensors file is byte-identical to the base's and every file of the base is there;
- the tensors that differ are exactly the planned ones, in every file that holds them (an fp16
  variant or any other copy that still holds a planned tensor unedited fails); fp8 scales of
  planned weights may change too;
- each change has the recipe's shape (:mod:`vidunlearn.verify_sites`);
- the manifest's ``edited`` list is exactly the planned set, and every file with a changed tensor
  carries the recipe's ``vidunlearn.recipe`` metadata.
"""

from __future__ import annotations

import filecmp
from dataclasses import dataclass
from pathlib import Path

import torch

from .adapters import Adapter
from .adapters.wan import WAN
from .checkpoint import SKIP_FILES
from .encoder_edit import COMPONENT as ENCODER
from .errors import VidunlearnError
from .layerchange import read_tensor
from .model import ModelSource, TensorInfo, header_infos, model_files, read_header, resolve_model, weight_map
from .plan import plan_edits
from .quant import SCALE_SUFFIX, dequantize, is_fp8
from .singlefile import IGNORED_KEYS, IGNORED_SUFFIXES, SingleFileSource, read_single_file, shape_summary
from .variants import variant_of, weight_index
from .verify import WEIGHT_SUFFIXES, Verification
from .verify_manifest import Manifest, Recipe, VerifyError
from .verify_sites import SiteChecks, Target

CASTS = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
MODIFIED = "this output was modified after apply; do not use it"
WRONG_BASE = "check --base: it must be the model this output was made from"


def resolve_base(base: str) -> Path:
    path = Path(base)
    return path if path.exists() else resolve_model(base).path


@dataclass(frozen=True)
class HeaderSource(SingleFileSource):
    """A single-file base planned from its header alone (no --config): its config is its block count."""

    def config(self, component: str) -> dict:
        return {self.adapter.block_count_key: shape_summary(self.infos)[0]}

    def component_dir(self, component: str) -> Path:
        return self.path

    def tensor_infos(self, component: str) -> dict[str, TensorInfo]:
        return self.infos


def plan_source(base: Path) -> ModelSource:
    from .layoutsource import layout_folder

    if base.is_dir():
        return resolve_model(str(base))
    folder = layout_folder(base)  # a family's own layout (Open-Sora): the folder around its file
    if folder is not None:
        return resolve_model(str(folder))
    infos, scales, prefix = read_single_file(base)
    return HeaderSource(name=str(base), path=base, repo_id=None, revision=None, adapter=WAN, index={}, file=base,
                        prefix=prefix, infos=infos, scales=scales)


def expected_targets(source: ModelSource, recipe: Recipe) -> dict[tuple[str, str], Target]:
    """(component, diffusers key) -> what the recipe changes there, planned on the base."""
    for site in recipe.sites:
        component, name = site.split("/", 1)
        if component not in source.denoisers or name not in source.adapter.sites:
            raise VerifyError(f"the recipe's site {site[:80]!r} is not a site of the base (components "
                              f"{source.denoisers}, sites {sorted(source.adapter.sites)})", where=str(source.path),
                              fix=WRONG_BASE)
    plan = plan_edits(source, {site: None for site in recipe.sites}, recipe.modules)
    spec = recipe.spec()
    targets: dict[tuple[str, str], Target] = {}
    for edit in plan:
        if spec.touches_weight:
            key = (edit.component, f"{edit.module}.weight")
            targets[key] = Target(edit.site, edit.component, edit.module, "weight")
        if spec.touches_bias:
            if edit.bias is None:
                raise VerifyError(f"the recipe's mode {recipe.mode!r} changes {edit.module}.bias, which the base lacks",
                                  where=str(source.path), fix=WRONG_BASE)
            targets[(edit.component, f"{edit.module}.bias")] = Target(edit.site, edit.component, edit.module, "bias")
    return targets


def _diffusers_name(key: str, adapter: Adapter = WAN) -> str:
    """A single file's key by its diffusers name, through the family's keymap (a single-file base,
    read without a config, is a Wan transformer: the one family read from single files)."""
    if adapter.keymap is None:
        raise VerifyError(f"a single file for the {adapter.family} family, which has none", fix=MODIFIED)
    try:
        return adapter.keymap.to_diffusers(key)
    except VidunlearnError:
        raise VerifyError(f"tensor {key[:80]!r} is not a {adapter.family} transformer tensor", fix=MODIFIED) from None


def check_listed(manifest: Manifest, targets: dict[tuple[str, str], Target], original_names: bool) -> None:
    """The manifest's ``edited`` list is exactly the planned set (a single-file base records its own keys)."""
    listed = {(c, _diffusers_name(t) if original_names else t) for c, t in manifest.edited}
    extra, missing = sorted(listed - set(targets)), sorted(set(targets) - listed)
    if extra:
        raise VerifyError(f"the manifest lists {extra[0][0]}/{extra[0][1]} as edited, but it is not an edit site of "
                          "the recipe", where=str(manifest.path), fix=MODIFIED)
    if missing:
        raise VerifyError(f"the recipe edits {missing[0][0]}/{missing[0][1]}, which the manifest does not list",
                          where=str(manifest.path), fix=MODIFIED)


class _Files:
    """Safetensors headers, read once per file."""

    def __init__(self) -> None:
        self.cache: dict[Path, tuple[dict[str, TensorInfo], int]] = {}

    def infos(self, path: Path) -> dict[str, TensorInfo]:
        return self._read(path)[0]

    def raw(self, info: TensorInfo) -> bytes:
        with open(info.file, "rb") as handle:
            handle.seek(self._read(info.file)[1] + info.begin)
            return handle.read(info.end - info.begin)

    def value(self, info: TensorInfo) -> tuple[torch.Tensor, float | None]:
        """float32 values, fp8 dequantised with the file's ``scale_weight`` (and that scale)."""
        tensor = read_tensor(info.file, info.key)
        if not is_fp8(info.dtype):
            return tensor.float(), None
        scale_key = info.key[: -len("weight")] + SCALE_SUFFIX
        scale = read_tensor(info.file, scale_key) if scale_key in self.infos(info.file) else None
        return dequantize(tensor, scale), float(scale.float().reshape(())) if scale is not None else None

    def _read(self, path: Path) -> tuple[dict[str, TensorInfo], int]:
        if path not in self.cache:
            header, start = read_header(path)
            self.cache[path] = (header_infos(path, header), start)
        return self.cache[path]


@dataclass(frozen=True)
class Pairing:
    """One output weight file of ``component`` and, per tensor key, (base key, diffusers key or None
    for a marker or scale)."""

    out: Path
    rel: str
    component: str
    base: dict[str, TensorInfo]
    names: dict[str, tuple[str, str | None]]


class Comparison:
    def __init__(self, out: Path, targets: dict[tuple[str, str], Target], checks: SiteChecks,
                 result: Verification) -> None:
        self.out, self.targets, self.checks, self.result = out, targets, checks, result
        self.files = _Files()
        self.encoder_edit: dict[str, float] = {}   # a trained text encoder's listed tensors (encoder_edit)

    def same_keys(self, pairing: Pairing) -> None:
        """Every tensor of the output file is in the base with its shape, and every base tensor in it."""
        out_infos = self.files.infos(pairing.out)
        mapped = {pairing.names[k][0] for k in out_infos}
        for key, info in sorted(out_infos.items()):
            base = pairing.base.get(pairing.names[key][0])
            if base is None or list(base.shape) != list(info.shape):
                raise VerifyError(f"tensor {key[:80]!r} is not in the base (or has another shape)",
                                  where=str(pairing.out), fix=WRONG_BASE)
        if len(mapped) != len(out_infos):
            raise VerifyError("two tensors of this file are the same tensor of the base", where=str(pairing.out),
                              fix=MODIFIED)
        absent = sorted(set(pairing.base) - mapped)
        if absent:
            raise VerifyError(f"tensor {absent[0][:80]!r} of the base is missing from this file",
                              where=str(pairing.out), fix=MODIFIED)

    def compare(self, pairing: Pairing) -> None:
        self.same_keys(pairing)
        out_infos = self.files.infos(pairing.out)
        for key, info in sorted(out_infos.items()):
            base_key, name = pairing.names[key]
            base = pairing.base[base_key]
            target = self.targets.get((pairing.component, name)) if name is not None else None
            trained = pairing.component == ENCODER and key in self.encoder_edit
            if self._identical(info, base):
                if target is not None or trained:
                    raise VerifyError(f"holds an unedited copy of {name!r}, which the recipe edits",
                                      where=str(pairing.out), fix="delete the output and re-run apply; do not use it")
                self.result.identical_tensors += 1
                continue
            if name is None and key.endswith(SCALE_SUFFIX):
                name = _diffusers_name(key[: -len(SCALE_SUFFIX)] + "weight")
                if (pairing.component, name) in self.targets:
                    continue  # the fp8 scale of an edited weight may grow
                target = None
            if target is None and trained:
                self._trained(pairing, key, info, base)
                continue
            if target is None:
                raise VerifyError(f"tensor {key[:80]!r} differs from the base but is not listed as edited (not an edit "
                                  "site of the recipe)", where=str(pairing.out), fix=MODIFIED)
            new, scale = self.files.value(info)
            old, _ = self.files.value(base)
            self.checks.add(target, pairing.out, pairing.rel, key, old, new, info.dtype, scale)

    def _trained(self, pairing: Pairing, key: str, info: TensorInfo, base: TensorInfo) -> None:
        """A trained text-encoder tensor: finite, and changed by what the manifest records."""
        new, old = self.files.value(info)[0], self.files.value(base)[0]
        change = float((new - old).norm() / old.norm().clamp_min(1e-12))
        if not torch.isfinite(new).all() or abs(change - self.encoder_edit[key]) > 1e-3 * max(change, 1e-6):
            raise VerifyError(f"text-encoder tensor {key[:80]!r} changed by {change:.4g}, the manifest says "
                              f"{self.encoder_edit[key]:.4g}", where=str(pairing.out), fix=MODIFIED)
        self.checks.files.add(pairing.out)   # its file must carry the recipe's metadata
        self.result.encoder_tensors += 1

    def _identical(self, info: TensorInfo, base: TensorInfo) -> bool:
        if info.file.resolve() == base.file.resolve() or (info.file.exists() and info.file.samefile(base.file)):
            return info.key == base.key
        if info.dtype == base.dtype:
            return self.files.raw(info) == self.files.raw(base)
        if info.dtype in CASTS and not is_fp8(base.dtype):  # only converted by --save-dtype: the same values
            new, old = self.files.value(info)[0], self.files.value(base)[0]
            return torch.equal(new, old.to(CASTS[info.dtype]).float())
        return False


def _droppable(source: ModelSource, edited: set[str], out_files: set[str]) -> set[str]:
    """Base files an output may leave out: weight files of an edited component other than the
    shards (and index) of the one weights variant the output keeps (another variant such as
    ``*.fp16.safetensors``, a pickle). Leaving an unedited copy out is the safe way; every tensor
    of the kept variant is still compared in its shards."""
    droppable = set()
    for component in edited:
        folder = source.component_dir(component)
        kept = {variant_of(Path(rel).name) for rel in out_files
                if rel.startswith(f"{component}/") and rel.endswith(".safetensors")}
        variant = kept.pop() if len(kept) == 1 else None
        shards = {path.resolve() for path in weight_map(folder, variant).values()}
        index = weight_index(folder, variant)
        for file in model_files(source.path, component):
            rel = file.relative_to(source.path).as_posix()
            if file.resolve() in shards or (index is not None and file.resolve() == index.resolve()):
                continue
            if file.name.endswith(WEIGHT_SUFFIXES) or (variant_of(file.name) != variant and ".safetensors" in file.name):
                droppable.add(rel)
    return droppable


def compare_folder(comparison: Comparison, manifest: Manifest, source: ModelSource) -> None:
    base = source.path
    base_files = {f.relative_to(base).as_posix() for f in model_files(base)} - SKIP_FILES
    out_files = set(manifest.files) - {"README.md"}
    edited = {t.component for t in comparison.targets.values()}
    missing = sorted(set(base_files) - out_files - _droppable(source, edited, out_files))
    if missing:
        raise VerifyError("a file of the base is missing from the output", where=str(comparison.out / missing[0]),
                          fix=MODIFIED)
    for rel in sorted(out_files):
        out_file, base_file = comparison.out / rel, base / rel
        if rel not in base_files:
            raise VerifyError("file is not in the base", where=str(out_file), fix=WRONG_BASE)
        if not rel.endswith(".safetensors"):
            if not out_file.samefile(base_file) and not filecmp.cmp(out_file, base_file, shallow=False):
                raise VerifyError("file differs from the base", where=str(out_file),
                                  fix="this output is not the base plus the edit")
            comparison.result.identical_files += 1
            continue
        component = rel.split("/", 1)[0] if "/" in rel else ""
        keys = comparison.files.infos(out_file)
        comparison.compare(Pairing(out_file, rel, component, comparison.files.infos(base_file),
                                   {k: (k, k) for k in keys}))


def _plan_name(key: str) -> str | None:
    return None if key in IGNORED_KEYS or key.endswith(IGNORED_SUFFIXES) else _diffusers_name(key)


def compare_single_files(comparison: Comparison, manifest: Manifest, source: ModelSource) -> None:
    files = sorted(rel for rel in manifest.files if rel.endswith(".safetensors"))
    if isinstance(source, HeaderSource):  # a single-file base: the same file, the same keys
        if len(files) != 1:
            raise VerifyError(f"{len(files)} weight files; a single-file base gives one", where=str(comparison.out),
                              fix=WRONG_BASE)
        keys = comparison.files.infos(comparison.out / files[0])
        comparison.compare(Pairing(comparison.out / files[0], files[0], "transformer",
                                   comparison.files.infos(source.file), {k: (k, _plan_name(k)) for k in keys}))
        return
    seen: set[str] = set()
    for rel in files:
        out_file = comparison.out / rel
        component = read_header(out_file)[0].get("__metadata__", {}).get("vidunlearn.component", "transformer")
        if component not in source.denoisers or component in seen:
            raise VerifyError(f"the file says it is component {component[:40]!r}, which is not a denoiser of the base "
                              "or has another file too", where=str(out_file), fix=WRONG_BASE)
        seen.add(component)
        names = {k: (_diffusers_name(k, source.adapter),) * 2 for k in comparison.files.infos(out_file)}
        comparison.compare(Pairing(out_file, rel, component, source.tensor_infos(component), names))
    if set(source.denoisers) - seen:
        raise VerifyError(f"no file for {sorted(set(source.denoisers) - seen)[0]!r} of the base",
                          where=str(comparison.out), fix=MODIFIED)


def compare_with_base(out: Path, manifest: Manifest, output_format: str, base: Path, result: Verification) -> None:
    """Raise :class:`VerifyError` unless ``out`` is exactly ``base`` plus the recipe's edit."""
    if output_format == "diffusers" and not base.is_dir():
        raise VerifyError("a diffusers folder output needs its base pipeline folder as --base", where=str(base),
                          fix=WRONG_BASE)
    source = plan_source(base)
    targets = expected_targets(source, manifest.recipe)
    check_listed(manifest, targets, original_names=isinstance(source, HeaderSource))
    checks = SiteChecks(targets, manifest.recipe, result)
    comparison = Comparison(out, targets, checks, result)
    comparison.encoder_edit = manifest.encoder_edit
    from .verify_lora import compare_lora

    {"diffusers": compare_folder, "single-file": compare_single_files, "lora": compare_lora}[output_format](
        comparison, manifest, source)
    checks.finish()
    if result.encoder_tensors != len(manifest.encoder_edit):
        raise VerifyError(f"the manifest lists {len(manifest.encoder_edit)} trained text-encoder tensors and "
                          f"{result.encoder_tensors} were found changed", where=str(out), fix=MODIFIED)
    for file in sorted(checks.files):
        if read_header(file)[0].get("__metadata__", {}).get("vidunlearn.recipe") != manifest.recipe_sha256:
            raise VerifyError("tensors changed in a file that apply did not write (no vidunlearn.recipe metadata)",
                              where=str(file), fix=MODIFIED)
    result.sites, result.rank = list(manifest.recipe.sites), manifest.recipe.rank
    result.mode, result.strength = manifest.recipe.mode, manifest.recipe.strength

