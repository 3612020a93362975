"""A model folder in a family's own layout (``Adapter.layout``), the second kind of source beside a
diffusers pipeline folder: Open-Sora 2.0's Hub repo. The denoiser is one safetensors file at the
folder's root, read and written as a single file under its own key names (the family's key names
are the tool's names for it: an identity keymap); its config comes from its tensors' shapes
(``FolderLayout.config``), and it is built on the meta device from the adapter's own module tree
(``Adapter.denoiser_factory``). The text encoder and tokenizer are transformers folders inside it
(``FolderLayout.folders``), loaded exactly as a pipeline's components are: safetensors only,
strictly, no remote code.

Nothing here knows a family: every fact comes from the adapter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .adapters import ADAPTERS, Adapter
from .errors import ModelError
from .hashing import sha256_files
from .model import ModelSource, TensorInfo, contained, header_infos, model_files, read_header, tensor_infos
from .modelfiles import check_folder_files
from .singlefile import SingleFileSource


def layout_adapter(path: Path) -> Adapter | None:
    """The adapter whose layout ``path`` has (its denoiser file at the root), or None."""
    return next((a for a in ADAPTERS if a.layout is not None and (path / a.layout.denoiser_file).is_file()), None)


def layout_folder(file: Path) -> Path | None:
    """The folder around ``file`` when ``file`` is the denoiser file of a family's layout, or None."""
    adapter = layout_adapter(file.parent)
    return file.parent if adapter is not None and adapter.layout.denoiser_file == file.name else None  # type: ignore[union-attr]


@dataclass(frozen=True)
class LayoutSource(SingleFileSource):
    """A folder in ``adapter.layout``: the denoiser from ``file`` (``infos``: its tensors by its own
    key names), the other components from their subfolders."""

    @property
    def denoisers(self) -> list[str]:
        return list(self.adapter.denoisers[:1])

    def component_dir(self, component: str) -> Path:
        if component in self.denoisers:
            return self.path
        return self.path / self._folder(component)[0]

    def _folder(self, component: str) -> tuple[str, str, str]:
        assert self.adapter.layout is not None
        if component not in self.adapter.layout.folders:
            raise ModelError(f"the {self.adapter.family} layout has no {component!r}", where=str(self.path),
                             fix=f"its components: {sorted(self.adapter.layout.folders)}")
        return self.adapter.layout.folders[component]

    def raw_config(self, component: str) -> dict:
        """The denoiser's config from its tensors' shapes; any other component's config.json."""
        if component not in self.denoisers:
            return ModelSource.raw_config(self, component)
        assert self.adapter.layout is not None
        try:
            return self.adapter.layout.config({key: info.shape for key, info in self.infos.items()})
        except ModelError as exc:
            raise ModelError(exc.what, where=str(self.file), fix=exc.fix) from None

    def tensor_infos(self, component: str) -> dict[str, TensorInfo]:
        return self.infos if component in self.denoisers else tensor_infos(self.component_dir(component))

    @cached_property
    def fingerprint(self) -> str:
        """What extract reads, by content: the tokenizer's and text encoder's files and the
        denoiser's config and text-path tensors (never sizes or modification times)."""
        digest = hashlib.sha256(json.dumps({"family": self.adapter.family, "file": self.file.name}).encode())
        folders = sorted({self._folder(c)[0] for c in (self.adapter.tokenizer, self.adapter.text_encoder)})
        files = [file for folder in folders for file in model_files(self.path, folder)]
        for file, identity in zip(files, sha256_files([contained(file, self.path) for file in files])):
            digest.update(f"{file.relative_to(self.path).as_posix()}\0{identity}\n".encode())
        digest.update(self.text_path_digest().encode())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {**ModelSource.describe(self), "single_file": self.file.name}


def load_layout(path: Path, adapter: Adapter, *, name: str, repo_id: str | None, revision: str | None) -> LayoutSource:
    """``path`` (a folder in ``adapter.layout``) as a source, read from headers and configs alone."""
    layout = adapter.layout
    assert layout is not None
    check_folder_files(path)
    for component, (folder, _, _) in sorted(layout.folders.items()):
        if not (path / folder).is_dir():
            raise ModelError(f"no {folder}/ folder (the {component}) beside {layout.denoiser_file}", where=str(path),
                             fix=f"download the whole {adapter.family} folder (its Hub repo: "
                                 f"{', '.join(sorted(set(adapter.aliases.values())))})")
        check_folder_files(path / folder)
    file = path / layout.denoiser_file
    infos = header_infos(file, read_header(contained(file, path))[0])
    index = {"_class_name": adapter.pipeline_class, adapter.denoisers[0]: ["vidunlearn", adapter.denoiser_class],
             **{component: [library, cls] for component, (_, library, cls) in layout.folders.items()}}
    source = LayoutSource(name=name, path=path, repo_id=repo_id, revision=revision, adapter=adapter, index=index,
                          file=file, infos=infos)
    source.config(adapter.denoisers[0])  # the file is this family's denoiser, and its sizes bounded, before any use
    return source
