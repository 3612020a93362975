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

Every error names the file, the line and the field, and says how to fix it.
"""

from __future__ import annotations

import hashlib
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
_KNOWN_KEYS = {"version", "concept", "description", "pairs", "neutral", "probes", "retain", "target"}


@dataclass(frozen=True)
class PromptPair:
    """One minimal pair: the two prompts differ only in the target concept."""

    unsafe: str
    safe: str


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


def _parse_pairs(path: Path, root: yaml.MappingNode) -> tuple[PromptPair, ...]:
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
        if keys != {"unsafe", "safe"}:
            raise PairsError(f"keys {sorted(keys)}, expected exactly ['safe', 'unsafe']", where=_where(path, item, field))
        unsafe = _scalar_str(path, _mapping_get(item, "unsafe"), f"{field}.unsafe")  # type: ignore[arg-type]
        safe = _scalar_str(path, _mapping_get(item, "safe"), f"{field}.safe")  # type: ignore[arg-type]
        if canonical(unsafe) == canonical(safe):
            raise PairsError("unsafe and safe prompts are identical", where=_where(path, item, field),
                             fix="the safe prompt must replace the concept words, e.g. 'stabs' -> 'greets'")
        pairs.append(PromptPair(unsafe=unsafe, safe=safe))
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

    return ConceptPairs(
        concept=concept,
        pairs=_parse_pairs(path, root),
        neutral=_string_list(path, root, "neutral", required=True, minimum=2),
        probes=_string_list(path, root, "probes", required=False, minimum=0),
        retain=_string_list(path, root, "retain", required=False, minimum=0),
        description=description,
        path=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        target=target,
    )
