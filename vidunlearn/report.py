"""What an eval says, for people: the metric rows (the CLI's table, the model card's, the HTML
report's) and the one line of settings they were measured at. Pure functions over an
``eval.json`` document (:mod:`vidunlearn.evaluate`); no torch, no files.
"""

from __future__ import annotations

from pathlib import Path

Row = tuple[str, "float | None", "float | None"]  # (metric, base, edited); None: not measured


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def metric_rows(document: dict, per_concept: bool = False) -> list[Row]:
    """(metric, base, edited) for an eval document; ``per_concept`` splits the forget rate and the
    paraphrase leak by concept (the model card's table). base is None without ``--compare``."""
    edited = document["metrics"]
    base = (document.get("base") or {}).get("metrics")
    pick = lambda metrics, *keys: None if metrics is None else _dig(metrics, keys)
    rows: list[Row] = []
    concepts = [c["value"] for c in document["concepts"]]
    if per_concept and len(concepts) > 1:
        rows += [(f"forget rate: {c}", pick(base, "forget_rate_by_concept", c), pick(edited, "forget_rate_by_concept", c))
                 for c in concepts]
    else:
        label = f"forget rate: {concepts[0]}" if per_concept else "forget rate"
        rows.append((label, pick(base, "forget_rate"), pick(edited, "forget_rate")))
    rows.append(("rest kept", pick(base, "rest_kept"), pick(edited, "rest_kept")))
    rows += [(f"retain accuracy: {a}", pick(base, "retain_accuracy", a), pick(edited, "retain_accuracy", a))
             for a in document["judge"]["attributes"]]
    if per_concept and len(concepts) > 1:
        rows += [(f"paraphrase leak: {c}", pick(base, "paraphrase_leak_by_concept", c),
                  pick(edited, "paraphrase_leak_by_concept", c)) for c in concepts]
    else:
        label = f"paraphrase leak: {concepts[0]}" if per_concept else "paraphrase leak"
        rows.append((label, pick(base, "paraphrase_leak"), pick(edited, "paraphrase_leak")))
    return rows


def concept_name(concept: dict) -> str:
    """"red" for the benchmark world's colour red; "nudity" for a yes/no judge's concept."""
    return concept["attribute"] if concept["value"] == "yes" else concept["value"]


def frame_share_rows(document: dict) -> list[Row]:
    """(``frames showing <concept>``, base, edited): the share of the forget clips' frames that show
    each concept (FADE's count; the forget rate counts a clip when any frame does, VideoEraser's)."""
    base = (document.get("base") or {}).get("metrics")
    return [(f"frames showing {concept_name(c)}", None if base is None else _dig(base, ("frame_share_by_concept", c["value"])),
             _dig(document["metrics"], ("frame_share_by_concept", c["value"]))) for c in document["concepts"]]


def frame_lines(document: dict, most: int = 17) -> list[str]:
    """"clips showing red by frame, model: f0 0%  f1 0% ...": temporal re-emergence at a glance, one
    line per concept and model (at most ``most`` evenly spaced frames; eval.json has them all)."""
    lines = []
    runs = [("base", (document.get("base") or {}).get("metrics")), ("model", document["metrics"])]
    for concept in document["concepts"]:
        for name, metrics in runs:
            rates = ((metrics or {}).get("frame_rates_by_concept") or {}).get(concept["value"]) or []
            if not rates:
                continue
            shown = min(most, len(rates))
            picked = sorted({round(i * (len(rates) - 1) / max(shown - 1, 1)) for i in range(shown)})
            cells = "  ".join(f"f{f} {share(rates[f])}" for f in picked)
            lines.append(f"clips showing {concept_name(concept)} by frame, {name}: {cells}")
    return lines


def category_rows(document: dict) -> list[tuple[str, ...]]:
    """(category, forget prompts, [base forget rate,] forget rate) for a prompt file with categories."""
    edited = document["metrics"].get("by_category") or {}
    base = ((document.get("base") or {}).get("metrics") or {}).get("by_category")
    return [(name, str(part["counts"]["forget"]), *([share(_dig(base, (name, "forget_rate")))] if base else []),
             share(part["forget_rate"])) for name, part in edited.items()]


def _dig(metrics: dict, keys: tuple[str, ...]) -> float | None:
    value: object = metrics
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def counts_line(document: dict) -> str:
    """"12 forget / 12 retain / 12 paraphrase prompts"."""
    counts = document["metrics"]["counts"]
    return f"{counts['forget']} forget / {counts['retain']} retain / {counts['paraphrase']} paraphrase prompts"


def settings_line(document: dict) -> str:
    """The settings an eval was measured at, in one line (the model card's "Measured with ...")."""
    s = document["settings"]
    return (f"vidunlearn eval {document.get('tool_version', '')}, judge {document['judge']['name']}: "
            f"{counts_line(document)}, {s['steps']} steps, {s['frames']} frames at {s['height']}x{s['width']}, "
            f"guidance {s['guidance']:g}, seed {s['seed']} + prompt index"
            + (f", first frame {Path(s['image']).name}" if s.get("image") else "")).replace("  ", " ")


def card_rows(document: dict) -> list[dict]:
    """The model card's eval rows from an eval document: per-concept numbers as percentages."""
    return [{"metric": metric, "base": share(base) if document.get("base") else "-", "edited": share(edited)}
            for metric, base, edited in metric_rows(document, per_concept=True)]


def attack_rows(document: dict) -> list[dict]:
    """The model card's rows from an attack document (``vidunlearn attack``): the concept's rate on
    the starting prompts and under the attack; base: the base model's, with ``--compare``."""
    concept, space = document["concept"]["value"], document["attack"]["space"]
    model, base = document["results"]["model"], document["results"].get("base")
    return [{"metric": f"{concept}: {label}", "base": share(base[key]) if base else "-", "edited": share(model[key])}
            for label, key in (("shown before the attack", "start_rate"),
                               (f"attack success rate ({space})", "attack_success_rate"))]


def attack_settings_line(document: dict) -> str:
    """The budget an attack ran at, in one line (the model card's "Measured with ...")."""
    a, s = document["attack"], document["sampling"]
    return (f"vidunlearn attack {document.get('tool_version', '')}, judge {document['judge']}: "
            f"{len(document['prompts'])} starting prompts, {a['space']} space, {a['steps']} steps x "
            f"{a['restarts']} restart(s), seed {a['seed']}; rendered at {s['steps']} steps").replace("  ", " ")
