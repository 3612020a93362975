"""Screen (issue 16): harden the default remap with what the attack itself finds.

RECE (``apply --harden``) erases the inputs of the edited layers that a closed form says still give
the concept; the soft-prompt attack reaches those layers only through the text encoder, and RECE did
not hold against it (docs/holding.md). This screen erases what the attack actually finds instead.
Round r:

1. attack the current edit from ``--train`` forget captions (input space, the benchmark's budget:
   40 Adam steps, seed 50 + r), captions disjoint from the 4 held-out starting prompts that
   benchmarks/attack.py attacks (seed 0);
2. run what it found through the text embedder (the K/V site's input) and take the rows of the
   attacked span (2 tokens; ``--rows all``: every token);
3. add them to the concept's erase rows, each with the same rows of the target prompt (the span
   holding the remap's target word, e.g. "green" for red) as its goal, and solve the remap again.

At each round of ``--eval-rounds`` the edit is attacked from the held-out prompts (input and
discrete spaces, benchmarks/attack.py's budget), and with ``--efficacy-seeds`` measured by
benchmarks/efficacy.py (variant ``adv-r<N>``). Not an option of ``vidunlearn apply``.

    OMP_NUM_THREADS=1 python benchmarks/attack_guided_harden.py --task red --rounds 16 --eval-rounds 8,12,16 \
        --efficacy-seeds 0,1 --out /tmp/adv-red
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efficacy import PAIRS, ROOT, TASKS  # noqa: E402

STEPS = {"input": 40, "discrete": 10}


def task_setup(task: str) -> tuple:
    """What both screens (this and adversarial_train.py) start from: the task's pairs files, the remap's
    target word, the oracle, the benchmark's sampling, the concept, its 4 held-out starting prompts
    (benchmarks/attack.py's, seed 0) and every other forget caption for training."""
    from vidunlearn import world
    from vidunlearn.attack_run import world_starts
    from vidunlearn.judges import load_judge
    from vidunlearn.pairs import load_pairs
    from vidunlearn.remap import target_prompts, word_change
    from vidunlearn.sampling import SampleSettings

    files, values = TASKS[task]
    pairs = [PAIRS / f for f in files]
    concept_pairs = load_pairs(pairs[0])
    change = word_change(concept_pairs.pairs[0].unsafe, target_prompts(concept_pairs)[0][0])
    assert change is not None
    sample = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0, seed=0)
    concept, held_out = world_starts(values[0], 4, "forget", seed=0)
    _, train = world_starts(values[0], 1000, "forget", seed=100, exclude=tuple(s.text for s in held_out))
    return pairs, change[2], load_judge("oracle"), sample, concept, held_out, train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-wan"))
    parser.add_argument("--task", default="red", choices=["red", "circle-to-square", "left"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--train", type=int, default=8, help="starting prompts attacked per round")
    parser.add_argument("--rows", default="span", choices=["span", "all"])
    parser.add_argument("--eval-rounds", default="8")
    parser.add_argument("--efficacy-seeds", default="", help="comma-separated; empty: no efficacy run")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch
    from diffusers import WanTransformer3DModel
    from transformers import AutoModel, AutoTokenizer

    from vidunlearn import api, harden
    from vidunlearn.attack import AttackSettings
    from vidunlearn.attack_run import attack_model, span_of, summary
    from vidunlearn.remap import compose, remap_factors

    torch.set_num_threads(1)
    extra: list[tuple[torch.Tensor, torch.Tensor]] = []   # (adversarial rows, goal rows), added to the erase set

    def hardened_factors(groups, gram, preserve_weight, rounds, ridge=harden.RIDGE):
        return compose([remap_factors([*g["unsafe"], *(a for a, _ in extra)], [*g["target"], *(t for _, t in extra)],
                                      g["neutral"] + g["safe"], preserve_weight, g["anchor"]) for g in groups])

    harden.hardened_factors = hardened_factors   # apply(harden=1) now solves the remap with ``extra``

    pairs, target_word, judge, sample, concept, held_out, train = task_setup(args.task)
    embedder = WanTransformer3DModel.from_pretrained(args.model, subfolder="transformer").condition_embedder.text_embedder
    tokenizer = AutoTokenizer.from_pretrained(args.model, subfolder="tokenizer")
    encoder = AutoModel.from_pretrained(args.model, subfolder="text_encoder").eval()
    goal_piece = tokenizer(target_word, add_special_tokens=False)["input_ids"]
    args.out.mkdir(parents=True, exist_ok=True)
    eval_rounds = {int(r) for r in args.eval_rounds.split(",") if r}
    log: dict = {"task": args.task, "target_word": target_word, "train_prompts": len(train), "rounds": [],
                 "held_out": [s.text for s in held_out], "settings": vars(args) | {"out": str(args.out)}}
    started = time.time()

    def build(r: int) -> str:
        out = args.out / f"r{r}"
        api.apply(args.model, out=out, pairs=pairs, work_dir=args.out / "cache", force=True,
                  recipe=api.EditRecipe(harden=1), output=api.OutputOptions(collateral=False))
        torch.save(list(extra), args.out / f"extra-r{r}.pt")
        return str(out)

    def attack(model: str, starts, space: str, seed: int) -> dict:
        run = attack_model(model, concept, starts, AttackSettings(space=space, steps=STEPS[space], seed=seed), sample, judge)
        found = summary(run, concept, judge)
        return {"run": run, "start_rate": found["start_rate"], "attack_success_rate": found["attack_success_rate"],
                "loss": [found["mean_loss_start"], found["mean_loss"]], "texts": [t for t in run.texts if t]}

    model = build(0)
    for r in range(1, args.rounds + 1):
        starts = [train[i % len(train)] for i in range((r - 1) * args.train, r * args.train)]
        result = attack(model, starts, "input", seed=50 + r)
        for start, found in zip(starts, result.pop("run").found):
            ids, span = span_of(tokenizer, start.text, start.word, 2)
            goal_ids = list(ids)
            for k, position in enumerate(span):
                goal_ids[position] = goal_piece[min(k, len(goal_piece) - 1)]
            with torch.no_grad():
                rows = embedder(found.states[None].float())[0]
                goal = embedder(encoder(input_ids=torch.tensor([goal_ids])).last_hidden_state)[0]
            keep = span if args.rows == "span" else list(range(rows.shape[0]))
            extra.append((rows[keep], goal[keep]))
        model = build(r)
        entry = {"round": r, "train_attack_success": result["attack_success_rate"], "train_loss": result["loss"],
                 "extra_rows": sum(a.shape[0] for a, _ in extra), "seconds": round(time.time() - started)}
        if r in eval_rounds:
            for space in STEPS:
                found = attack(model, held_out, space, seed=0)
                found.pop("run")
                entry[f"held_out_{space}"] = found
        log["rounds"].append(entry)
        print(json.dumps(entry), flush=True)
        (args.out / "harden.json").write_text(json.dumps(log, indent=1) + "\n")

    seeds = args.efficacy_seeds
    if seeds:
        import efficacy

        _apply = api.apply

        def apply(*a, adv_round: int = 0, **k):   # the efficacy benchmark's api.apply, with that round's rows
            extra[:] = torch.load(args.out / f"extra-r{adv_round}.pt")
            return _apply(*a, **k)

        api.apply = apply
        names = []
        for r in sorted(eval_rounds):
            efficacy.ALL[f"adv-r{r}"] = {"mode": "remap", "harden": 1, "adv_round": r}
            names.append(f"adv-r{r}")
        sys.argv = [sys.argv[0], "--steps", "10", "--seeds", seeds, "--tasks", args.task, "--variants",
                    ",".join(["default", *names]), "--out", str(args.out / "efficacy"),
                    "--base-from", str(ROOT / "benchmarks" / "results" / "efficacy-remap-strength1.25-seeds0-1-2-5-7.json")]
        efficacy.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
