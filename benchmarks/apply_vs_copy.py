"""How close is `vidunlearn apply` to a plain copy of the checkpoint? (and to the naive way)

Builds, once (benchmarks/hub_layout.py), under ``--root`` (default /tmp/vidunlearn-bench), a pipeline folder (e.g.
``wan13b-float32``) whose denoiser is laid out exactly like the Hub's Diffusers repo of that
size (``--layout``: 1.3b = Wan2.1-T2V-1.3B, 5b = Wan2.2-TI2V-5B, 14b = Wan2.1-T2V-14B or one Wan2.2
A14B expert; ltx-2b, cogvideox-2b, cogvideox-5b, hunyuan-13b, zeroscope-1.7b, open-sora-v2: see LAYOUTS): the
real config, the real key names and shapes (the denoiser class on the meta device), ``--dtype``
(default: the Hub's), random values, shards cut like huggingface_hub cuts them at 5 GB, and the
``diffusion_pytorch_model.safetensors.index.json``; open-sora-v2 is its Hub repo's own layout
instead, one unsharded ``Open_Sora_v2.safetensors`` at the folder's root. The builder writes each
shard tensor by tensor, so it never holds more than one tensor. ONLY THE DENOISER IS REAL-SIZE: text
encoder, tokenizer, VAE and scheduler are copied from the family's tiny pipeline
(vidunlearn/tiny_families). ``--blocks N`` caps every block count at N: a REDUCED model, to check
this script cheaply; its figures are labelled REDUCED and are not the model's.

Then measures, each in a child process timed with time.perf_counter and GNU time's max RSS:
  cp     ``cp -r MODEL copy``                                   (alternating with apply)
  apply  ``vidunlearn apply --model MODEL --refusal R --out x``  (every target of the family's default site)
  naive  <denoiser class>.from_pretrained + edit those weights + save_pretrained (a family's own
         layout: safetensors load_file of the whole file + edit + save_file); skipped when the
         model does not fit in RAM

The page cache cannot be dropped here (no root): a source smaller than RAM is read from the page
cache in every step. Each step starts after ``sync`` (no dirty pages left by the previous one); the
``sync`` after it is timed separately, so "+sync" is the time until the data is on disk. Each step
also reports its CPU seconds (user + sys, GNU time): on a machine shared with other work the wall
ratio moves with the load, the CPU ratio much less. Ratios are given per round (each step against
the cp of the same round) as a median and a range.

``--before DIR`` runs a second apply from an older copy of the package (``DIR/vidunlearn``, e.g.
``git archive OLD vidunlearn | tar -x -C DIR``), alternating with the others, so that before and
after are measured in the same run under the same load; apply itself always runs this checkout's
package. ``--breakdown`` times one more apply part by part, with each thread's CPU
(benchmarks/apply_breakdown.py): cProfile (``--profile``) sees only the main thread.

    python benchmarks/apply_vs_copy.py [--layout 1.3b|5b|14b|ltx-2b|...] [--dtype float32|bfloat16|float16] [--root DIR]
                                       [--blocks N]
                                       [--repeats 2] [--naive-repeats 1] [--settle 3] [--profile]
                                       [--breakdown] [--before DIR] [--json FILE] [--delete-model]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_layout import DTYPES, LAYOUTS, build  # noqa: E402


# the synthetic refusal file holds one projection direction (no remap factors): the streaming write
# measured here is the same for every mode. No collateral: the benchmark model's text encoder is the
# tiny one, which the real-size transformer cannot read (apply would stop with one line)
PROJECTION = ("--mode", "project", "--method", "cpca", "--no-collateral")


def default_plan(model: Path) -> tuple[str, list[str], int]:
    """(site key, edited weight keys, the site's width) of the family's default site, planned on the headers."""
    from vidunlearn.model import resolve_model
    from vidunlearn.plan import plan_edits

    source = resolve_model(str(model))
    site = f"{source.denoisers[0]}/{source.adapter.default_sites[0]}"
    plan = plan_edits(source, {site: None}, None)
    return site, [f"{e.module}.weight" for e in plan], int(plan[0].weight.shape[1])


def make_refusal(model: Path, path: Path) -> None:
    """A RefusalVectors artifact for this exact folder: one random unit direction at the default site."""
    import torch

    from vidunlearn.artifacts import RefusalVectors, SiteVectors
    from vidunlearn.model import resolve_model

    source = resolve_model(str(model))
    site, _, hidden = default_plan(model)
    direction = torch.randn(hidden, generator=torch.Generator().manual_seed(7))
    direction /= direction.norm()
    vectors = RefusalVectors(
        sites={site: SiteVectors(direction=direction, refusal=3.0 * direction, basis=direction[:, None].clone(),
                                 eigenvalues=torch.tensor([1.0]), safe_mean=torch.zeros(hidden))},
        meta={"model": source.describe(), "sites": [site], "concept": "bench", "method": "cpca", "rank": 1,
              "alpha": 1.0, "level": "token", "pairs_sha256": None,
              "stats": {site: {"refusal_norm": 3.0, "retained": 1.0, "data_rank": 1, "eigenvalues": [1.0],
                               "hidden_size": hidden}}})
    vectors.save(path)


NAIVE = r"""
import json, sys, torch, diffusers
from safetensors.torch import load_file
from vidunlearn.edit import orthonormal_basis, project_weight
model_dir, refusal, out, dtype, component, cls, site, modules = sys.argv[1:9]
basis = orthonormal_basis(load_file(refusal)[site + ".direction"][:, None])
model = getattr(diffusers, cls).from_pretrained(model_dir, subfolder=component, torch_dtype=getattr(torch, dtype))
with torch.no_grad():
    for name in json.loads(modules):
        linear = model.get_submodule(name)
        linear.weight.copy_(project_weight(linear.weight, basis, 1.0))  # float32 math, dtype kept
model.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
"""
# a family's own layout (one safetensors file, no diffusers class): the whole file in memory, edited, saved
NAIVE_FILE = r"""
import json, os, sys, torch
from safetensors.torch import load_file, save_file
from vidunlearn.edit import orthonormal_basis, project_weight
model_file, refusal, out, site, keys = sys.argv[1:6]
basis = orthonormal_basis(load_file(refusal)[site + ".direction"][:, None])
state = load_file(model_file)
for key in json.loads(keys):
    state[key] = project_weight(state[key], basis, 1.0)  # float32 math, dtype kept
os.makedirs(out)
save_file(state, os.path.join(out, os.path.basename(model_file)), metadata={"format": "pt"})
"""


def denoiser_tensors(model: Path) -> dict[str, tuple[Path, str]]:
    """The denoiser's weight name -> (file, key in it), from the headers (a pipeline or a family's own layout)."""
    from vidunlearn.model import resolve_model

    source = resolve_model(str(model))
    return {name: (info.file, info.key) for name, info in source.tensor_infos(source.denoisers[0]).items()}


# ----------------------------------------------------------------------------------- measure
def _sync() -> float:
    started = time.perf_counter()
    os.sync()
    return time.perf_counter() - started


def run_step(name: str, command: list[str], out: Path, log: Path, settle: float, env: dict | None = None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    _sync()
    time.sleep(settle)  # let the file system finish the previous step's deletes (ext4 online discard)
    rss_file = log.with_suffix(".rss")
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", str(rss_file), *command],
                              stdout=handle, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - started
    sync_seconds = _sync()
    if proc.returncode != 0:
        sys.exit(f"{name} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    rss_kib, user, system = rss_file.read_text().split()[-3:]
    cpu = float(user) + float(system)
    print(f"  {name:12s} {seconds:7.2f} s  (+sync {sync_seconds:5.2f} s)  CPU {cpu:6.2f} s (user {float(user):5.2f} "
          f"sys {float(system):5.2f})  peak RSS {int(rss_kib) / 1024:8.0f} MiB  {_load_average()}", flush=True)
    return {"step": name, "seconds": seconds, "sync": sync_seconds, "rss_mib": int(rss_kib) / 1024, "cpu": cpu,
            "user": float(user), "sys": float(system), "load": os.getloadavg()[0]}


def _load_average() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def print_round_ratios(results: list[dict], names: list[str]) -> None:
    """Each round's step against the cp of the same round: median and range (the load moves)."""
    for name in names:
        for what, key in (("wall", "seconds"), ("CPU", "cpu")):
            ratios = sorted(next(r for r in results if r["step"] == name and r["round"] == c["round"])[key] / c[key]
                            for c in results if c["step"] == "cp")
            print(f"{name}/cp {what} by round: median {statistics.median(ratios):.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f} "
                  f"({', '.join(f'{x:.2f}' for x in ratios)})")


def _tensor_digests(tensors: dict[str, tuple[Path, str]], keys: list[str]) -> dict[str, str]:
    """SHA-256 of each of ``keys``' bytes; ``tensors``: name -> (file, key in it)."""
    import torch
    from safetensors import safe_open

    digests = {}
    for key in keys:
        file, stored = tensors[key]
        with safe_open(str(file), framework="pt") as handle:
            digests[key] = hashlib.sha256(handle.get_tensor(stored).contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()
    return digests


def _folder_tensors(folder: Path) -> dict[str, tuple[Path, str]]:
    from vidunlearn.model import weight_map

    return {key: (file, key) for key, file in weight_map(folder).items()}


def describe_apply_output(out: Path) -> dict:
    manifest = json.loads((out / "vidunlearn.json").read_text())
    actions = manifest["actions"]
    sizes = {rel: (out / rel).stat().st_size for rel in actions}
    by_action: dict[str, list[int]] = {}
    for rel, action in actions.items():
        by_action.setdefault(action, []).append(sizes[rel])
    links = sum(1 for rel in actions if (out / rel).stat().st_nlink > 1)
    hashed = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "vidunlearn.json")
    return {"actions": {a: (len(v), sum(v)) for a, v in by_action.items()}, "hard_links": links,
            "hashed_bytes": hashed, "edited": len(manifest["edited"])}


def check_manifest(out: Path) -> tuple[bool, float]:
    """Re-read every output file: do the SHA-256 that apply computed while writing match? (and
    how long a separate hashing pass, which apply no longer makes, would take on a warm cache)"""
    from vidunlearn.checkpoint import hash_outputs

    started = time.perf_counter()
    on_disk = hash_outputs(out)
    seconds = time.perf_counter() - started
    manifest = json.loads((out / "vidunlearn.json").read_text())["files"]
    return manifest == {k: v for k, v in on_disk.items() if k != "vidunlearn.json"}, seconds


def profile_apply(model: Path, refusal: Path, out: Path, root: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    _sync()
    stats_file = root / "apply.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(stats_file), str(BIN / "vidunlearn"), "apply",
                    "--model", str(model), "--refusal", str(refusal), "--out", str(out), *PROJECTION],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import pstats

    stats = pstats.Stats(str(stats_file))
    total = max(v[3] for v in stats.stats.values())  # cumulative time of the outermost call
    wanted = ["write_checkpoint", "rewrite_shard", "copy_range", "hexdigest", "run", "link_or_copy",
              "sha256_file", "build_card", "fingerprint", "resolve_model", "edit_linear", "_load", "tensor_bytes",
              "project_weight", "_write_all"]
    print(f"\ncProfile of one apply (total {total:.2f} s, profiler overhead included):")
    print("| function | calls | cumulative s | share |\n|---|---:|---:|---:|")
    rows = []
    for (file, _line, func), (_cc, calls, _tt, cum, _callers) in stats.stats.items():
        if func in wanted and "vidunlearn" in file:
            rows.append((cum, func, calls, Path(file).name))
    for (file, _line, func), (_cc, calls, _tt, cum, _callers) in stats.stats.items():
        if func in ("<built-in method posix.copy_file_range>", "<built-in method posix.pwrite>",
                    "<built-in method posix.link>"):
            rows.append((cum, func, calls, "builtin"))
    for cum, func, calls, where in sorted(rows, reverse=True):
        print(f"| {where}:{func} | {calls} | {cum:.2f} | {cum / total:.0%} |")
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("/tmp/vidunlearn-bench"))
    parser.add_argument("--layout", choices=list(LAYOUTS), default="1.3b", help="family and size (hub_layout.LAYOUTS)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="stored dtype (default: the Hub's for that layout, e.g. float32 for Wan 1.3B, bf16 for 14B)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of cp and of apply (alternating order)")
    parser.add_argument("--naive-repeats", type=int, default=1,
                        help="0 skips the naive baseline (skipped anyway when the model does not fit in RAM)")
    parser.add_argument("--profile", action="store_true", help="also profile one apply with cProfile")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time one apply part by part, with each thread's CPU (benchmarks/apply_breakdown.py)")
    parser.add_argument("--before", type=Path,
                        help="a folder holding an older `vidunlearn` package: run it too, alternating (same run, same load)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after cleaning, before each step")
    parser.add_argument("--blocks", type=int, default=None,
                        help="REDUCED model: every block count capped at N (to check this script cheaply; "
                             "not the model's figures)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--delete-model", action="store_true", help="delete the built model at the end (disk space)")
    args = parser.parse_args()
    root = args.root.resolve()
    spec = LAYOUTS[args.layout]
    args.dtype = args.dtype or spec.dtype
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {ram / 2**30:.1f} GiB RAM, "
          f"python {platform.python_version()}")
    model = build(root, args.layout, args.dtype, blocks=args.blocks)
    reduced = f"REDUCED ({args.blocks} blocks per stack, not the real model) " if args.blocks is not None else ""
    refusal = root / f"refusal-{model.name}.safetensors"
    make_refusal(model, refusal)
    site, edited_keys, _ = default_plan(model)
    tensors = denoiser_tensors(model)
    shard_sizes = {p.name: p.stat().st_size for p in sorted({file for file, _ in tensors.values()})}
    folder_bytes = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    largest = max(shard_sizes.values())
    print(f"{reduced}layout {args.layout} ({spec.repo}, {spec.denoiser}) {args.dtype}: folder {folder_bytes / 1e9:.3f} GB in "
          f"{len(shard_sizes)} shards ({', '.join(shard_sizes) if len(shard_sizes) == 1 else 'sharded'}); "
          f"largest shard {largest / MiB:.0f} MiB ({largest / 1e9:.3f} GB)")
    print(f"only the {spec.component} is real-size; the other components come from the {spec.family} tiny pipeline.")
    print(f"the page cache cannot be dropped here (no root): a source under {ram / 1e9:.0f} GB is read from RAM.\n")

    outputs = {"cp": root / "out-cp", "apply": root / "out-apply", "before": root / "out-before", "naive": root / "out-naive"}
    commands = {
        "cp": ["cp", "-r", str(model), str(outputs["cp"])],
        "apply": [str(BIN / "vidunlearn"), "apply", "--model", str(model), "--refusal", str(refusal), *PROJECTION,
                  "--out", str(outputs["apply"])],
        "naive": [sys.executable, "-c", NAIVE, str(model), str(refusal), str(outputs["naive"]), args.dtype, spec.component,
                  spec.denoiser, site, json.dumps([k.removesuffix(".weight") for k in edited_keys])],
    }
    if not (model / spec.component).is_dir():  # a family's own layout: one file, no diffusers class
        (file, _), = {tensors[k] for k in edited_keys}
        commands["naive"] = [sys.executable, "-c", NAIVE_FILE, str(file), str(refusal), str(outputs["naive"]), site,
                             json.dumps([tensors[k][1] for k in edited_keys])]
    commands["before"] = [*commands["apply"][:-1], str(outputs["before"])]
    # apply runs this checkout's package; "before" the one under --before (an older commit, e.g. `git archive`)
    envs = {"apply": {**os.environ, "PYTHONPATH": str(REPO)},
            "before": {**os.environ, "PYTHONPATH": str(args.before)} if args.before else None}
    results: list[dict] = []
    apply_info = check = None
    apply_digests = None
    order = ["cp", "apply", "before"] if args.before else ["cp", "apply"]
    for round_ in range(args.repeats):  # alternate the order from one round to the next
        for name in order[round_ % len(order):] + order[:round_ % len(order)]:
            results.append(run_step(name, commands[name], outputs[name], root / f"{name}-{round_}.log", args.settle,
                                    envs.get(name)))
            results[-1]["round"] = round_
            if name == "apply" and apply_info is None:
                apply_info = describe_apply_output(outputs["apply"])
                check = check_manifest(outputs["apply"])
                apply_digests = _tensor_digests({k: (outputs["apply"] / f.relative_to(model), key)  # same paths
                                                 for k, (f, key) in tensors.items()}, edited_keys)
            shutil.rmtree(outputs[name], ignore_errors=True)
    naive_match = None
    naive_repeats = args.naive_repeats
    if naive_repeats and folder_bytes > 0.8 * ram:
        print(f"  naive        skipped: loading the model whole would hold {folder_bytes / 1e9:.1f} GB in "
              f"{ram / 1e9:.1f} GB of RAM")
        naive_repeats = 0
    for round_ in range(naive_repeats):
        results.append(run_step("naive", commands["naive"], outputs["naive"], root / f"naive-{round_}.log", args.settle))
        if naive_match is None:
            naive_match = _tensor_digests(_folder_tensors(outputs["naive"]), edited_keys) == apply_digests
        shutil.rmtree(outputs["naive"], ignore_errors=True)
    _sync()

    summary = {}
    for name in ("cp", "apply", "before", "naive"):
        runs = [r for r in results if r["step"] == name]
        if runs:
            summary[name] = {"seconds": statistics.median(r["seconds"] for r in runs),
                             "with_sync": statistics.median(r["seconds"] + r["sync"] for r in runs),
                             "cpu": statistics.median(r["cpu"] for r in runs),
                             "rss_mib": max(r["rss_mib"] for r in runs), "runs": len(runs)}
    cp = summary["cp"]
    print(f"\n{reduced}| step | runs | seconds (median) | seconds incl. sync | CPU s (user+sys) | peak RSS MiB | ratio to cp | "
          "ratio incl. sync | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    labels = {"cp": "`cp -r` of the folder", "apply": "`vidunlearn apply` (streamed)",
              "before": f"`vidunlearn apply` from {args.before}",
              "naive": "naive: from_pretrained + edit + save_pretrained" if (model / spec.component).is_dir()
              else "naive: load_file + edit + save_file"}
    for name, row in summary.items():
        print(f"| {labels[name]} | {row['runs']} | {row['seconds']:.2f} | {row['with_sync']:.2f} | {row['cpu']:.2f} | "
              f"{row['rss_mib']:.0f} | {row['seconds'] / cp['seconds']:.2f} | {row['with_sync'] / cp['with_sync']:.2f} | "
              f"{row['cpu'] / cp['cpu']:.2f} |")
    print_round_ratios(results, [n for n in ("apply", "before") if n in summary])
    ratio = summary["apply"]["seconds"] / cp["seconds"]
    budget = largest / MiB + 1024
    print(f"\nlargest shard: {largest / MiB:.0f} MiB; RSS budget (largest shard + 1 GiB): {budget:.0f} MiB")
    print(f"target apply/cp <= 1.2: {'met' if ratio <= 1.2 else 'MISSED'} ({ratio:.2f}); "
          f"apply peak RSS <= budget: {'met' if summary['apply']['rss_mib'] <= budget else 'MISSED'} "
          f"({summary['apply']['rss_mib']:.0f} MiB)")
    print(f"apply: {summary['apply']['seconds'] / (folder_bytes / 1e9):.2f} s/GB; "
          f"cp: {cp['seconds'] / (folder_bytes / 1e9):.2f} s/GB")
    if apply_info:
        print(f"apply output: {apply_info['edited']} tensors edited; files by action "
              + ", ".join(f"{a}: {n} files, {b / 1e9:.3f} GB" for a, (n, b) in sorted(apply_info["actions"].items()))
              + f"; {apply_info['hard_links']} files hard-linked (st_nlink > 1)")
        print(f"manifest SHA-256 (computed while writing) equal a re-read of every output file: {check[0]} "
              f"(the re-read took {check[1]:.2f} s)")
    if naive_match is not None:
        print(f"naive output's {len(edited_keys)} edited weights bitwise equal to apply's: {naive_match}")
    per_run = "\n".join(f"  {r['step']:12s} {r['seconds']:7.2f} s  +sync {r['sync']:5.2f} s  CPU {r['cpu']:6.2f} s  "
                        f"{r['rss_mib']:7.0f} MiB  load {r['load']:.1f}" for r in results)
    print(f"\nruns in order:\n{per_run}")
    if args.json:
        args.json.write_text(json.dumps({"layout": args.layout, "dtype": args.dtype, "blocks": args.blocks, "bytes": folder_bytes,
                                         "largest_shard": largest, "summary": summary, "runs": results,
                                         "manifest_ok": check[0] if check else None, "naive_match": naive_match},
                                        indent=2) + "\n")
    if args.profile:
        profile_apply(model, refusal, outputs["apply"], root)
    if args.breakdown:
        print("\nwhere one apply's time goes (benchmarks/apply_breakdown.py, in-process, per-thread CPU):", flush=True)
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "apply_breakdown.py"), str(model), str(refusal),
                        str(outputs["apply"])], env=envs["apply"], check=True)
    if args.delete_model:
        shutil.rmtree(model, ignore_errors=True)
        (root / f"{model.name}.built").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
