"""``vidunlearn eval`` on a MoMask-layout folder (issue 22): the motion benchmark's before / after
table (:mod:`.metrics`, docs/motion-benchmark.md) for a model and, with ``compare``, its base,
written to ``out/eval.json`` in the rows form that ``vidunlearn apply --eval-json`` reads
(:func:`vidunlearn.provenance.load_eval`). Not resumable and single-process: the table at
``per_prompt`` 10 takes about two minutes on one CPU thread.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import VidunlearnError
from ..fsutil import atomic_output, check_apart, check_writable, write_json
from ..progress import SILENT, Reporter

KIND = "vidunlearn-motion-eval"
SCHEMA = 1


@dataclass(frozen=True)
class MotionEvalResult:
    out: Path
    document: dict


def _load(folder: Path):
    """The model and its runs; refused when its text encoder is not shipped (MoMask's CLIP)."""
    from ..adapters.momask import check_sampleable
    from .momask import load_runs

    model, runs = load_runs(folder)
    check_sampleable(model.opts["mask"], str(folder), "the motion eval, which generates from captions,",
                     fix="evaluate a model trained on the benchmark world (models/momask-world and its edits)")
    return model, {"root": str(runs.root), "dataset": runs.dataset, **runs.names}


def _rows(edited: dict, base: dict | None) -> list[dict]:
    """{"metric", "base", "edited"} a column of :data:`metrics.COLUMNS` the edited row has (without
    a base, the columns against the base are left out); percentages as numbers 0-100."""
    from .metrics import COLUMNS

    return [{"metric": f"{label} ({unit})" if unit else label, "base": None if base is None else base[key],
             "edited": edited[key]} for key, label, unit in COLUMNS if key in edited]


def _judged(samples: dict) -> dict:
    """{set: {judged action: count}}: what the judge read, per prompt set."""
    return {name: dict(sorted(Counter(a for _, _, a in items).items())) for name, items in samples.items()}


def settings_line(per_prompt: int, seed: int, floor: dict | None) -> str:
    from .. import __version__
    from .metrics import SETS

    n = {name: per_prompt * len(prompts()) for name, prompts in SETS.items()}
    line = (f"vidunlearn eval {__version__}, motion judge: seed {seed}, N = {per_prompt} a prompt (forget {n['forget']}, "
            f"retain {n['retain']}, paraphrase {n['para']} samples, 40-80 frames)")
    if floor is None:
        return line + "; no base, no noise floor"
    return line + (f"; FD noise floor (base seed {seed} vs {seed + 1}): forget {floor['forget']:.2f}, "
                   f"retain {floor['retain']:.2f}")


def evaluate_motion(model: Path, out: Path, compare: Path | None = None, per_prompt: int = 10, seed: int = 0,
                    force: bool = False, reporter: Reporter = SILENT) -> MotionEvalResult:
    """Sample and judge ``model`` (a MoMask-layout folder) and ``compare`` (its base; also at
    ``seed + 1`` for the noise floor) on the benchmark's forget, retain and paraphrase prompts,
    ``per_prompt`` motions each; write ``out/eval.json`` (a folder, renamed into place whole).
    ``out`` must not exist (``force`` replaces it) and must stay apart from both models."""
    from .. import __version__
    from ..adapters.momask import looks_like_momask
    from .metrics import before_after, sample_count
    from .text import TextEncoder

    model, compare = Path(model), Path(compare) if compare is not None else None
    if per_prompt < 1:
        raise VidunlearnError(f"--per-prompt must be at least 1, got {per_prompt}")
    if compare is not None and not looks_like_momask(compare):
        raise VidunlearnError("--compare is not a MoMask-layout folder (checkpoints/<dataset>/<run>/opt.txt), as "
                              "--model is", where=str(compare), fix="compare a motion model with its base motion model")
    check_writable(out, force=force)
    edited, runs = _load(model)
    base, base_runs = _load(compare) if compare is not None else (None, None)
    # the folders that hold checkpoints/ (--model may name a run folder inside one)
    check_apart(out, [("the model folder", runs["root"]), ("the --compare folder", base_runs and base_runs["root"])])
    edited.text = TextEncoder()  # one text encoder for both models
    if base is not None:
        base.text = edited.text
    total = sample_count(per_prompt) + (sample_count(per_prompt) + sample_count(per_prompt, False) if base else 0)
    with reporter.task(f"motion eval: {total} motions", total=total) as advance:
        result = before_after(edited, base, per_prompt, seed, progress=advance)
    document = {
        "kind": KIND, "schema": SCHEMA, "tool_version": __version__, "per_prompt": per_prompt, "seed": seed,
        "models": {"edited": {"path": str(model), "runs": runs},
                   "base": {"path": str(compare), "runs": base_runs} if compare is not None else None},
        "rows": _rows(result.edited, result.base),
        "settings": settings_line(per_prompt, seed, result.floor),
        "metrics": {"edited": result.edited, "base": result.base}, "floor": result.floor,
        "judged": {label: _judged(samples) for label, samples in result.samples.items()},
    }
    with atomic_output(out, directory=True, replace=force) as temp:
        write_json(temp / "eval.json", document)
    return MotionEvalResult(out, document)
