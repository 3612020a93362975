"""Run benchmarks/efficacy.py and benchmarks/attack.py over many variants at once, N jobs in parallel
(one task x one variant a job), and print what each variant missed.

For a many-core machine or a GPU, where one job leaves most of it idle: every job is its own process
(one torch thread), so the figures are each script's own, as a single run of it gives them (efficacy
at sampling seeds ``--seeds``; the attack from 8 held-out captions, input and typed spaces, with the
attack benchmark's fixed budget). Jobs run in the order given, tasks outer; past ``--deadline`` seconds
no job starts, and one still running at ``--deadline`` + ``--grace`` is stopped and reported missing.

    python benchmarks/sweep.py --tasks circle-to-square --variants adversarial200-te-keep4-anchor3-ac0.3 --jobs 2
    python benchmarks/sweep.py --device cuda --jobs 14 --tasks circle-to-square,red,left \\
        --variants adversarial200-te-keep4-anchor3-ac0.3,adversarial200-te-keep4-anchor3-ac0.3-kc8 --seeded 5

Writes OUT/<kind>-<task>-<variant>/ (each script's json and md, and its log) and OUT/sweep.md; with
``--archive FILE`` a .tar.gz of OUT after every finished job (so a stopped run keeps what it finished).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"efficacy": ["efficacy.py", "--steps", "10"], "attack": ["attack.py", "--prompts", "8", "--spaces", "input,discrete",
                                                                 "--no-checks", "--held-out"]}


def jobs(args) -> list[tuple[str, str, str]]:
    """(kind, task, variant) in run order: tasks outer, then training seeds, then variants, then kinds."""
    names = [v for v in args.variants.split(",") if v]
    seeded = [[f"{v}{f'-seed{s}' if s else ''}" for v in names] for s in range(args.seeded)] if args.seeded else [names]
    return [(kind, task, variant) for task in args.tasks.split(",") if task for group in seeded for variant in group
            for kind in args.kinds.split(",") if kind]


def command(args, kind: str, task: str, variant: str, out: Path) -> list[str]:
    extra = (["--seeds", args.seeds, "--hold-out-context", str(args.hold_out_context)]
             + [a for f in args.base_from for a in ("--base-from", str(f))]) if kind == "efficacy" else []
    return [sys.executable, str(HERE / KINDS[kind][0]), *KINDS[kind][1:], *extra, "--tasks", task, "--variants", variant,
            "--device", args.device, "--out", str(out)]


def outcome(kind: str, out: Path) -> str:
    """One cell: efficacy's missed targets per sampling seed, or the attack's success per space."""
    if kind == "efficacy":
        found = json.loads(next(out.glob("efficacy*.json")).read_text())
        return " / ".join(", ".join(v["missed"]) or "met" for run in found["runs"] for v in run["variants"].values())
    found = json.loads((out / "attack.json").read_text())
    return " / ".join(f"{r['space']} {100 * r['attack_success_rate']:.0f} %" for r in found["results"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="circle-to-square,red,left")
    parser.add_argument("--variants", required=True, help="comma-separated names of benchmarks/efficacy_variants.py")
    parser.add_argument("--seeded", type=int, default=0, metavar="N",
                        help="each variant at training seeds 0 .. N-1 (its -seedS names from 1 on)")
    parser.add_argument("--kinds", default="efficacy,attack")
    parser.add_argument("--seeds", default="0,1", help="efficacy's sampling seeds")
    parser.add_argument("--base-from", type=Path, action="append", default=[],
                        help="efficacy.py's --base-from: reuse the base's clips from an earlier run's json (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hold-out-context", type=int, default=0, metavar="K",
                        help="efficacy.py's: every job's eval set without the prompts keep_context K builds")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds after which no job starts")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds a running job gets past the deadline")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--archive", type=Path, default=None)
    args = parser.parse_args()
    if args.jobs < 1 or any(k not in KINDS for k in args.kinds.split(",")):
        parser.error(f"--jobs needs at least 1, --kinds some of {list(KINDS)}")
    todo, running, done, started = jobs(args), {}, [], time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args.out.mkdir(parents=True, exist_ok=True)
    while todo or running:
        late = time.time() - started > args.deadline
        while todo and len(running) < args.jobs and not late:
            kind, task, variant = job = todo.pop(0)
            out = args.out / f"{kind}-{task}-{variant}"
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / "log.txt", "w")
            running[job] = (subprocess.Popen(command(args, kind, task, variant, out), stdout=log, stderr=subprocess.STDOUT,
                                             env=env), time.time(), log)
        stopped = late and time.time() - started > args.deadline + args.grace
        if stopped:
            for process, _, _ in running.values():
                process.kill()
        for job, (process, t0, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[job]
            out = args.out / f"{job[0]}-{job[1]}-{job[2]}"
            try:
                cell = outcome(job[0], out) if process.returncode == 0 else \
                    "stopped at the deadline" if stopped else f"FAILED (exit {process.returncode}, {out}/log.txt)"
            except (OSError, KeyError, ValueError, StopIteration) as exc:
                cell = f"no result ({exc})"
            done.append((*job, cell, time.time() - t0))
            print(f"{job[0]:9} {job[1]:17} {job[2]:48} {time.time() - t0:5.0f} s  {cell}", flush=True)
            if args.archive is not None:
                with tarfile.open(args.archive, "w:gz") as tar:
                    tar.add(args.out, arcname=args.out.name)
        if late and not running:
            break
        time.sleep(1)
    missing = [f"{k} {t} {v}" for k, t, v in todo]
    lines = ["| kind | task | variant | outcome | s |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {t} | {v} | {c} | {s:.0f} |" for k, t, v, c, s in done]
    text = "\n".join(lines) + f"\n\nDevice {args.device}, {args.jobs} jobs at once, wall time {time.time() - started:.0f} s." + \
        (f" Not run (deadline): {'; '.join(missing)}." if missing else "") + "\n"
    (args.out / "sweep.md").write_text(text)
    if args.archive is not None:
        with tarfile.open(args.archive, "w:gz") as tar:
            tar.add(args.out, arcname=args.out.name)
    print(text)
    return 0 if all(d[3].split()[0] not in ("FAILED", "no", "stopped") for d in done) and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
