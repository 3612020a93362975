"""Prompt-pair files: the only input a user writes.

A pairs file is YAML (read with the safe loader only)::

    version: 1
    concept: violence
    description: Graphic violence.          # optional
    pairs:                                  # >= 2 minimal pairs; >= 5 recommended
      - unsafe: "a man stabs a man in an alley"
        safe: "a man greets a man in an alley"
    neutral: ["a cat on a windowsill", ...] # everyday prompts for the contrastive step
    probes: [...]                           # optional held-out unsafe prompts (evaluation)
    retain: [...]                           # optional safe prompts that must keep working
    target: "a flower"                      # optional: what the concept becomes (see remap.py)

Image-to-video models read a conditioning image too: a pair may carry ``unsafe_image`` and
``safe_image`` (paths relative to the pairs file's folder, PNG or JPEG; every pair or none) and a
neutral entry may be ``{prompt: "...", image: images/x.png}``. The image path's direction is
estimated from the images alone, in the space the image layers read (docs/method.md).

Every error names the file, the line and the field, and says how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import PairsError

SCHEMA_VERSION = 1
MIN_PAIRS = 2
MAX_FILE_BYTES = 1 << 20  # 1 MiB: a pairs file is a handful of prompts
MAX_PROMPT_CHARS = 2000
MAX_PROMPTS_PER_LIST = 1000
_CONCEPT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_IMAGE_BYTES = 32 << 20  # 32 MiB per image file
MAX_IMAGE_SIDE = 4096        # pixels, width and height
IMAGE_FORMATS = ("PNG", "JPEG")
_KNOWN_KEYS = {"version", "concept", "description", "pairs", "neutral", "probes", "retain", "target"}


@dataclass(frozen=True)
class PromptPair:
    """One minimal pair: the two prompts differ only in the target concept."""

    unsafe: str
    safe: str
    unsafe_image: str | None = None  # resolved path of the conditioning image, where the pair has one
    safe_image: str | None = None


@dataclass(frozen=True)
class ConceptPairs:
    """A validated pairs file. ``sha256`` is the hash of the file's bytes (cache key)."""

    concept: str
    pairs: tuple[PromptPair, ...]
    neutral: tuple[str, ...]
    probes: tuple[str, ...]
    retain: tuple[str, ...]
    description: str
    path: str
    sha256: str
    target: str | None = None  # the replacement every unsafe prompt's concept words become (remap)
    neutral_images: tuple[str, ...] = ()  # resolved paths of the neutral entries' images, in order
    images: tuple[tuple[str, str], ...] = ()  # (path as written, SHA-256 of its bytes) of every image

    @property
    def has_images(self) -> bool:
        """True when the pairs carry images (then every pair has both)."""
        return bool(self.pairs) and self.pairs[0].unsafe_image is not None

    @property
    def unsafe_images(self) -> tuple[str, ...]:
        return tuple(p.unsafe_image for p in self.pairs if p.unsafe_image is not None)

    @property
    def safe_images(self) -> tuple[str, ...]:
        return tuple(p.safe_image for p in self.pairs if p.safe_image is not None)

    @property
    def unsafe(self) -> tuple[str, ...]:
        return tuple(p.unsafe for p in self.pairs)

    @property
    def safe(self) -> tuple[str, ...]:
        return tuple(p.safe for p in self.pairs)


def _where(path: Path, node: yaml.Node | None, field: str) -> str:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return f"{path}{line} [{field}]"


def _mapping_get(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def canonical(text: str) -> str:
    """What two prompts are compared by: format characters (Unicode category Cf: zero-width
    space, joiners, bidi marks) removed, NFKC-normalised, case-folded, whitespace collapsed."""
    visible = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(unicodedata.normalize("NFKC", visible).casefold().split())


def _check_unique_keys(path: Path, root: yaml.Node) -> None:
    """Refuse a mapping that repeats a key: PyYAML would keep the last value, this loader's
    lookups the first, and a reviewer reads whichever they see. Walks every mapping once
    (iteratively: aliases may share nodes, nesting may be deep)."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in first:
                        raise PairsError(f"duplicate key '{key.value}' (first on line {first[key.value].start_mark.line + 1})",
                                         where=f"{path}:{key.start_mark.line + 1}", fix="keep one of the two entries")
                    first[key.value] = key
                pending += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            pending += node.value


def _scalar_str(path: Path, node: yaml.Node, field: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        raise PairsError("expected a text string", where=_where(path, node, field),
                         fix="quote the prompt, e.g. \"a red car on a road\"")
    text = " ".join(node.value.split())
    if not canonical(text):
        raise PairsError("empty prompt" if not text else "the prompt has only invisible (format) characters", where=_where(path, node, field), fix="write a prompt or remove the entry")
    if len(text) > MAX_PROMPT_CHARS:
        raise PairsError(f"prompt is {len(text)} characters long (limit {MAX_PROMPT_CHARS})",
                         where=_where(path, node, field), fix="shorten it; text encoders truncate long prompts anyway")
    return text


def _string_list(path: Path, root: yaml.MappingNode, key: str, *, required: bool, minimum: int) -> tuple[str, ...]:
    node = _mapping_get(root, key)
    if node is None:
        if required:
            raise PairsError(f"missing '{key}' list", where=_where(path, None, key),
                             fix=f"add a '{key}:' list of at least {minimum} prompts")
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise PairsError("expected a list of prompts", where=_where(path, node, key), fix=f"write '{key}:' as a YAML list")
    if len(node.value) > MAX_PROMPTS_PER_LIST:
        raise PairsError(f"{len(node.value)} entries (limit {MAX_PROMPTS_PER_LIST})", where=_where(path, node, key),
                         fix="a few dozen prompts are enough")
    items = tuple(_scalar_str(path, item, f"{key}[{i}]") for i, item in enumerate(node.value))
    if len(items) < minimum:
        raise PairsError(f"{len(items)} prompts, at least {minimum} needed", where=_where(path, node, key),
                         fix=f"add prompts to '{key}'")
    return items


def _image(path: Path, node: yaml.Node | None, field: str, seen: dict[str, str]) -> str:
    """Validate one image reference (relative to the pairs file's folder) and return its
    resolved path; records (path as written -> SHA-256 of the bytes) in ``seen``."""
    if node is None or not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str" or not node.value.strip():
        raise PairsError("expected an image path", where=_where(path, node, field),
                         fix="write a path relative to the pairs file, e.g. images/knife.png")
    written = node.value.strip()
    folder = path.parent.resolve()
    if Path(written).is_absolute() or "\\" in written:
        raise PairsError(f"image path {written!r} is not relative", where=_where(path, node, field),
                         fix="write a path relative to the pairs file's folder with '/', e.g. images/knife.png")
    file = path.parent / written
    if not Path(os.path.normpath(path.parent.resolve() / written)).is_relative_to(folder):
        raise PairsError(f"image {written!r} leaves the pairs file's folder", where=_where(path, node, field),
                         fix="keep images inside the pairs file's folder (no '..', no link pointing out)")
    try:
        real = file.resolve(strict=True)
    except (OSError, RuntimeError):
        raise PairsError(f"image {written!r} not found", where=_where(path, node, field),
                         fix=f"put the image under {path.parent}/ or fix the path") from None
    if not real.is_relative_to(folder):
        raise PairsError(f"image {written!r} leaves the pairs file's folder", where=_where(path, node, field),
                         fix="keep images inside the pairs file's folder (no '..', no link pointing out)")
    if not real.is_file():
        raise PairsError(f"image {written!r} is not a file", where=_where(path, node, field))
    size = real.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise PairsError(f"image {written!r} is {size} bytes (limit {MAX_IMAGE_BYTES})", where=_where(path, node, field),
                         fix="a conditioning image of a few hundred KiB is enough")
    raw = real.read_bytes()
    check_image_bytes(raw, written, _where(path, node, field))
    seen[written] = hashlib.sha256(raw).hexdigest()
    return str(real)


def read_image(path: Path):
    """An image file named on the command line (``sample``/``eval --image``) as an RGB PIL image,
    checked as a pairs file's images are (a regular file, at most MAX_IMAGE_BYTES, PNG or JPEG
    within MAX_IMAGE_SIDE, decodes), from one read of its bytes; one line otherwise."""
    import io

    from PIL import Image

    if not path.is_file():
        raise PairsError("image not found", where=str(path), fix="pass an existing PNG or JPEG file")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise PairsError(f"image is {path.stat().st_size} bytes (limit {MAX_IMAGE_BYTES})", where=str(path),
                         fix="a conditioning image of a few hundred KiB is enough")
    raw = path.read_bytes()
    check_image_bytes(raw, path.name, str(path))
    with Image.open(io.BytesIO(raw)) as image:
        return image.convert("RGB")


def check_image_bytes(raw: bytes, name: str, where: str) -> None:
    """Refuse bytes that are not a PNG or JPEG within the size limits, in one line."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                kind, (width, height) = image.format, image.size
                if kind not in IMAGE_FORMATS:
                    raise PairsError(f"image {name!r} is {kind}, not PNG or JPEG", where=where, fix="save it as PNG or JPEG")
                if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width < 1 or height < 1:
                    raise PairsError(f"image {name!r} is {width}x{height} (limit {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE})",
                                     where=where, fix="scale it down; the image encoder reads 224x224")
                image.load()
    except PairsError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on a corrupt file
        raise PairsError(f"image {name!r} does not decode ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})",
                         where=where, fix="save it again as PNG or JPEG") from None


def _neutral(path: Path, root: yaml.MappingNode, seen: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The neutral prompts, and the images of the entries written ``{prompt: ..., image: ...}``."""
    node = _mapping_get(root, "neutral")
    if node is None or not isinstance(node, yaml.SequenceNode) or all(isinstance(i, yaml.ScalarNode) for i in node.value):
        return _string_list(path, root, "neutral", required=True, minimum=2), ()
    if len(node.value) > MAX_PROMPTS_PER_LIST:
        raise PairsError(f"{len(node.value)} entries (limit {MAX_PROMPTS_PER_LIST})", where=_where(path, node, "neutral"))
    prompts: list[str] = []
    images: list[str] = []
    for i, item in enumerate(node.value):
        field = f"neutral[{i}]"
        if isinstance(item, yaml.MappingNode):
            keys = {k.value for k, _ in item.value if isinstance(k, yaml.ScalarNode)}
            if keys != {"prompt", "image"}:
                raise PairsError(f"keys {sorted(keys)}, expected exactly ['image', 'prompt']", where=_where(path, item, field),
                                 fix="write '- {prompt: \"...\", image: images/x.png}' or a plain prompt")
            prompts.append(_scalar_str(path, _mapping_get(item, "prompt"), f"{field}.prompt"))  # type: ignore[arg-type]
            images.append(_image(path, _mapping_get(item, "image"), f"{field}.image", seen))
        else:
            prompts.append(_scalar_str(path, item, field))
    if len(prompts) < 2:
        raise PairsError(f"{len(prompts)} prompts, at least 2 needed", where=_where(path, node, "neutral"), fix="add prompts to 'neutral'")
    return tuple(prompts), tuple(images)


def _parse_pairs(path: Path, root: yaml.MappingNode, seen: dict[str, str] | None = None) -> tuple[PromptPair, ...]:
    node = _mapping_get(root, "pairs")
    if node is None:
        raise PairsError("missing 'pairs' list", where=_where(path, None, "pairs"),
                         fix="add 'pairs:' with entries '- {unsafe: ..., safe: ...}'")
    if not isinstance(node, yaml.SequenceNode):
        raise PairsError("expected a list of pairs", where=_where(path, node, "pairs"),
                         fix="write each pair as '- unsafe: ...' / '  safe: ...'")
    if len(node.value) > MAX_PROMPTS_PER_LIST:
        raise PairsError(f"{len(node.value)} pairs (limit {MAX_PROMPTS_PER_LIST})", where=_where(path, node, "pairs"))
    pairs: list[PromptPair] = []
    for i, item in enumerate(node.value):
        field = f"pairs[{i}]"
        if not isinstance(item, yaml.MappingNode):
            raise PairsError("expected a mapping with 'unsafe' and 'safe'", where=_where(path, item, field))
        keys = {k.value for k, _ in item.value if isinstance(k, yaml.ScalarNode)}
        with_images = keys == {"unsafe", "safe", "unsafe_image", "safe_image"}
        if keys != {"unsafe", "safe"} and not with_images:
            raise PairsError(f"keys {sorted(keys)}, expected exactly ['safe', 'unsafe'] (and with images "
                             "'safe_image', 'unsafe_image')", where=_where(path, item, field))
        if i and with_images != (pairs[0].unsafe_image is not None):
            raise PairsError("some pairs carry images and some do not", where=_where(path, item, field),
                             fix="give every pair 'unsafe_image' and 'safe_image', or none")
        unsafe = _scalar_str(path, _mapping_get(item, "unsafe"), f"{field}.unsafe")  # type: ignore[arg-type]
        safe = _scalar_str(path, _mapping_get(item, "safe"), f"{field}.safe")  # type: ignore[arg-type]
        if canonical(unsafe) == canonical(safe):
            raise PairsError("unsafe and safe prompts are identical", where=_where(path, item, field),
                             fix="the safe prompt must replace the concept words, e.g. 'stabs' -> 'greets'")
        images: dict[str, str | None] = {"unsafe_image": None, "safe_image": None}
        if with_images:
            seen = {} if seen is None else seen
            images = {k: _image(path, _mapping_get(item, k), f"{field}.{k}", seen) for k in images}
        pairs.append(PromptPair(unsafe=unsafe, safe=safe, **images))
    if len(pairs) < MIN_PAIRS:
        raise PairsError(f"{len(pairs)} pair(s), at least {MIN_PAIRS} needed (5 or more recommended)",
                         where=_where(path, node, "pairs"), fix="add minimal unsafe/safe pairs")
    if len({(canonical(p.unsafe), canonical(p.safe)) for p in pairs}) != len(pairs):
        raise PairsError("the same pair appears twice", where=_where(path, node, "pairs"), fix="remove the duplicate")
    return tuple(pairs)


def load_pairs(path: str | Path) -> ConceptPairs:
    """Read and validate a pairs file. Raises :class:`PairsError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise PairsError("pairs file not found", where=str(path), fix="pass an existing YAML file, e.g. pairs/violence.yaml")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PairsError(f"file is {size} bytes (limit {MAX_FILE_BYTES})", where=str(path), fix="a pairs file holds a few dozen prompts")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise PairsError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path), fix="save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PairsError(f"invalid YAML: {problem}", where=where, fix="check indentation and quoting") from None
    except RecursionError:
        raise PairsError("YAML nested too deeply", where=str(path), fix="a pairs file is a flat mapping of lists") from None
    if root is None:
        raise PairsError("file is empty", where=str(path), fix="see pairs/violence.yaml for the format")
    if not isinstance(root, yaml.MappingNode):
        raise PairsError("top level must be a mapping", where=_where(path, root, "<root>"), fix="see pairs/violence.yaml for the format")
    _check_unique_keys(path, root)
    unknown = sorted({k.value for k, _ in root.value if isinstance(k, yaml.ScalarNode)} - _KNOWN_KEYS)
    if unknown:
        raise PairsError(f"unknown key(s) {unknown}", where=_where(path, root, "<root>"), fix=f"allowed keys: {sorted(_KNOWN_KEYS)}")

    version_node = _mapping_get(root, "version")
    if version_node is None or not isinstance(version_node, yaml.ScalarNode) or version_node.value != str(SCHEMA_VERSION):
        raise PairsError(f"'version' must be {SCHEMA_VERSION}", where=_where(path, version_node, "version"),
                         fix=f"add 'version: {SCHEMA_VERSION}' at the top")
    concept_node = _mapping_get(root, "concept")
    if concept_node is None:
        raise PairsError("missing 'concept'", where=_where(path, None, "concept"), fix="add e.g. 'concept: violence'")
    concept = _scalar_str(path, concept_node, "concept")
    if not _CONCEPT_RE.match(concept):
        raise PairsError(f"concept name {concept!r} is not a slug", where=_where(path, concept_node, "concept"),
                         fix="use lowercase letters, digits and dashes, e.g. 'graphic-violence'")
    description_node = _mapping_get(root, "description")
    description = _scalar_str(path, description_node, "description") if description_node is not None else ""
    target_node = _mapping_get(root, "target")
    target = _scalar_str(path, target_node, "target") if target_node is not None else None

    seen: dict[str, str] = {}  # every image: path as written -> SHA-256
    pairs = _parse_pairs(path, root, seen)
    neutral, neutral_images = _neutral(path, root, seen)
    if pairs[0].unsafe_image is not None and len(neutral_images) < 2:
        raise PairsError(f"the pairs carry images but {len(neutral_images)} neutral entries do", where=_where(path, _mapping_get(root, "neutral"), "neutral"),
                         fix="give at least 2 neutral entries an image: '- {prompt: \"...\", image: images/x.png}'")
    images = tuple(sorted(seen.items()))
    # the file's bytes; with images, also every image's bytes (a changed image recomputes the cache)
    sha256 = hashlib.sha256(raw).hexdigest()
    if images:
        sha256 = hashlib.sha256(json.dumps({"file": sha256, "images": dict(images)}, sort_keys=True).encode()).hexdigest()
    return ConceptPairs(
        concept=concept,
        pairs=pairs,
        neutral=neutral,
        neutral_images=neutral_images,
        images=images,
        probes=_string_list(path, root, "probes", required=False, minimum=0),
        retain=_string_list(path, root, "retain", required=False, minimum=0),
        description=description,
        path=str(path),
        sha256=sha256,
        target=target,
    )
