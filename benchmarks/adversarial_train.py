"""Screen (issue 16): adversarial training of the edited layers (AdvUnlearn, Zhang et al. 2024,
read for the K/V edit) -- the first thing that trains, after every closed form failed to hold.

The trained weights are the ones ``vidunlearn apply`` edits (every block's cross-attention
``to_k`` / ``to_v``), started from the default remap edit, so the result is still a patched
checkpoint with no inference overhead. Each step:

1. **attack** (inner, a few Adam steps): for ``--batch`` training captions that name the concept
   (disjoint from the 4 held-out starting prompts benchmarks/attack.py attacks), move the input
   embeddings of the concept word's span (2 tokens) to minimise the current model's denoising loss
   on reference clips of the concept (the world's generator), as ``vidunlearn attack --space input``
   does. Each caption keeps its adversarial embeddings between visits (warm start), so the attack
   grows stronger as training goes;
2. **erase**: on those clips noised, the trained model conditioned on what the attack found, and on
   the caption as typed, is pulled towards the base model conditioned on the remap's target prompt
   (the concept word replaced by the target word: "red" -> "green"): MSE of the velocities;
3. **keep**: on clips of captions without the concept (and the target prompts), the trained model
   is pulled towards the base model on the same caption, weight ``--keep-weight``.

At each step of ``--eval-at`` the model is attacked from the held-out prompts with the benchmark's
budget (input 40 Adam steps, discrete 10 GCG iterations, seed 0), and with ``--efficacy-seeds``
measured by benchmarks/efficacy.py (variant ``advtrain-s<N>``: the default's apply, its
transformer replaced by the trained one; the weight change and collateral columns measured on the
trained weights). Not an option of ``vidunlearn apply``.

    OMP_NUM_THREADS=1 python benchmarks/adversarial_train.py --task red --steps 200 --eval-at 100,200 \
        --efficacy-seeds 0,1 --out /tmp/advtrain-red
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_guided_harden import task_setup  # noqa: E402
from efficacy import PAIRS, ROOT, TASKS  # noqa: E402

STEPS = {"input": 40, "discrete": 10}
SITES = ("attn2.to_k.weight", "attn2.to_v.weight")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-wan"))
    parser.add_argument("--task", default="red", choices=["red", "circle-to-square", "left"])
    parser.add_argument("--steps", type=int, default=200, help="training steps")
    parser.add_argument("--batch", type=int, default=2, help="attacked captions a step")
    parser.add_argument("--keep-batch", type=int, default=4, help="captions without the concept a step")
    parser.add_argument("--inner", type=int, default=5, help="attack steps a visit (warm-started)")
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam on the K/V weights")
    parser.add_argument("--keep-weight", type=float, default=1.0)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--references", type=int, default=4, help="clips per caption")
    parser.add_argument("--param", default="layers", choices=["layers", "factors", "text-encoder"],
                        help="layers: every edited weight free; factors: W' = W (I + A B^T) with A, B shared (the remap's form); "
                             "text-encoder: the text encoder's layers (not its embedding table) trained, the default edit's "
                             "transformer frozen (AdvUnlearn's own site; the output carries its own text encoder)")
    parser.add_argument("--eval-at", default="200")
    parser.add_argument("--efficacy-seeds", default="", help="comma-separated; empty: no efficacy run")
    parser.add_argument("--efficacy-only", action="store_true", help="no training: measure the models an earlier run saved")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    files, values = TASKS[args.task]
    pairs = [PAIRS / f for f in files]
    if args.efficacy_only:
        efficacy_run(args, sorted(int(s) for s in args.eval_at.split(",") if s), pairs)
        return 0

    import torch
    from diffusers import WanTransformer3DModel

    from vidunlearn import api, world
    from vidunlearn.attack import AttackSettings, draw
    from vidunlearn.attack_refs import reference_latents
    from vidunlearn.attack_run import attack_model, load_attacked, places_span, summary
    from vidunlearn.sampling import install_compact_padding
    from vidunlearn.textpath import encode_prompts
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    pairs, target_word, judge, sample, concept, held_out, train = task_setup(args.task)
    keep = [p for p in world.retain_prompts(values[0]) if concept.value not in p.text.split()]
    args.out.mkdir(parents=True, exist_ok=True)

    _, pipe, _, length = load_attacked(args.model, sample)
    tokenizer, encoder, vae, base = pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.transformer
    default_dir = args.out / "default"
    api.apply(args.model, out=default_dir, pairs=pairs, work_dir=args.out / "cache", force=True,
              output=api.OutputOptions(collateral=False))
    te_mode = args.param == "text-encoder"
    trained = WanTransformer3DModel.from_pretrained(default_dir if args.param != "factors" else args.model,
                                                   subfolder="transformer").eval()
    install_compact_padding(SimpleNamespace(transformer=trained), length)   # as the pipeline reads the pads
    for p in (*base.parameters(), *encoder.parameters(), *trained.parameters()):
        p.requires_grad_(False)
    layers = {f"{n}.weight": m for n, m in trained.named_modules() if n.endswith(tuple(x[:-7] for x in SITES))}
    originals = {n: p.detach().clone() for n, p in base.named_parameters() if n.endswith(SITES)}
    default_file = default_dir / "transformer" / "diffusion_pytorch_model.safetensors"
    tencoder = copy.deepcopy(encoder) if te_mode else encoder   # the encoder the trained model reads
    if te_mode:                  # the text encoder's layers; its embedding table is the attack's space, kept
        params = [p for n, p in tencoder.named_parameters() if not n.startswith("embeddings.")]
        te_originals = {n: p.detach().clone() for n, p in tencoder.named_parameters()}
    elif args.param == "layers":   # every edited weight free
        params = [m.weight for m in layers.values()]
    else:                        # W' = W (I + A B^T), A and B shared by every layer: the remap's own form
        params = shared_factors(layers, originals, load_file(str(default_file)), rank_of(default_dir))
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=args.lr)

    def states(texts: list[str]) -> list[torch.Tensor]:
        with torch.no_grad():
            return encode_prompts(tokenizer, encoder, texts, length, "cpu")

    def velocity(model, states_: torch.Tensor, x0, noise, sigma) -> torch.Tensor:
        s = sigma.view(-1, 1, 1, 1, 1)
        context = torch.cat([states_, states_.new_zeros(1, states_.shape[-1])])[None].expand(x0.shape[0], -1, -1)
        return model((1 - s) * x0 + s * noise, timestep=sigma * 1000, encoder_hidden_states=context, return_dict=False)[0]

    def trained_states(text: str) -> torch.Tensor:   # the trained model's own states, with grad in te mode
        if not te_mode:
            return states([text])[0]
        tokens = tokenizer([text], add_special_tokens=True, return_tensors="pt")   # encode_wan's, with grad
        return tencoder(tokens.input_ids, tokens.attention_mask).last_hidden_state[0]

    def goal_text(text: str, word: str) -> str:
        return " ".join(target_word if w == word else w for w in text.split())

    # the training captions: their spans, reference latents, goal states; the keep captions' latents
    table = encoder.get_input_embeddings().weight
    items = []
    for i, start in enumerate(train):
        ids, span = places_span(tokenizer, start.text, start.places, 2)
        ids = torch.tensor(ids)
        items.append({"ids": ids, "span": span, "adv": table[ids[span]].detach().clone(),
                      "latents": reference_latents(vae, dict(start.target), args.references, seed=50_000 + 100 * i),
                      "text": start.text, "typed": states([start.text])[0],
                      "goal": states([goal_text(start.text, start.word)])[0]})
    keep_items = [{"states": states([p.text])[0], "text": p.text,
                   "latents": reference_latents(vae, {a: p.labels.get(a) for a in world.ATTRIBUTES}, 2, seed=70_000 + 10 * i)}
                  for i, p in enumerate(keep)]
    keep_items += [{"states": it["goal"], "text": goal_text(it["text"], train[i].word), "latents": None}
                   for i, it in enumerate(items)]  # the targets keep their own drawing

    def encode_adv(item) -> torch.Tensor:
        embeddings = table[item["ids"]].index_put((torch.tensor(item["span"]),), item["adv"])
        mask = torch.ones(1, len(item["ids"]), dtype=torch.long)
        return tencoder(inputs_embeds=embeddings[None], attention_mask=mask).last_hidden_state[0]

    def inner_attack(item) -> torch.Tensor:
        x = item["adv"].clone().requires_grad_()
        opt = torch.optim.Adam([x], lr=args.inner_lr)
        for _ in range(args.inner):
            item["adv"] = x
            x0, noise, sigma = draw(item["latents"], args.draws, generator)
            loss = (velocity(trained, encode_adv(item), x0, noise, sigma).float() - (noise - x0)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        item["adv"] = x.detach()
        if te_mode:   # the erase loss reaches the encoder through the found embeddings
            return encode_adv(item)
        with torch.no_grad():
            return encode_adv(item)

    def save(step: int) -> Path:
        out = args.out / f"s{step}"
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(default_dir, out)
        with safe_open(str(default_file), framework="pt") as handle:
            metadata = handle.metadata()
        weights = load_file(str(default_file)) | {n: m.weight.detach().contiguous() for n, m in layers.items()}
        save_file(weights, str(out / "transformer" / "diffusion_pytorch_model.safetensors"), metadata=metadata)
        if te_mode:   # a new file, never written through a hard link into the installed package
            te_file = out / "text_encoder" / "model.safetensors"
            te_file.unlink()
            save_file({n: p.detach().contiguous() for n, p in tencoder.state_dict().items()}, str(te_file),
                      metadata={"format": "pt"})
        return out

    def attack(model: Path, space: str) -> dict:
        run = attack_model(str(model), concept, held_out, AttackSettings(space=space, steps=STEPS[space], seed=0), sample, judge)
        found = summary(run, concept, judge)
        return {"start_rate": found["start_rate"], "attack_success_rate": found["attack_success_rate"],
                "frame_rates": found["frame_rates"], "loss": [found["mean_loss_start"], found["mean_loss"]],
                "texts": [t for t in run.texts if t]}

    eval_at = {int(s) for s in args.eval_at.split(",") if s}
    log: dict = {"task": args.task, "target_word": target_word, "train_prompts": len(train), "keep_prompts": len(keep),
                 "held_out": [s.text for s in held_out], "settings": vars(args) | {"out": str(args.out)}, "steps": []}
    started = time.time()
    for step in range(1, args.steps + 1):
        chosen = torch.randperm(len(items), generator=generator)[: args.batch].tolist()
        found = [inner_attack(items[i]) for i in chosen]
        erase = 0.0
        for i, adv in zip(chosen, found):
            item = items[i]
            x0, noise, sigma = draw(item["latents"], args.draws, generator)
            with torch.no_grad():
                goal = velocity(base, item["goal"], x0, noise, sigma)
            for cond in (adv, trained_states(item["text"]) if te_mode else item["typed"]):
                erase = erase + (velocity(trained, cond, x0, noise, sigma) - goal).pow(2).mean() / (2 * len(chosen))
        kept = 0.0
        for j in torch.randperm(len(keep_items), generator=generator)[: args.keep_batch].tolist():
            k = keep_items[j]
            x0, noise, sigma = draw(k["latents"] if k["latents"] is not None else items[j - len(keep)]["latents"],
                                   args.draws, generator)
            with torch.no_grad():
                goal = velocity(base, k["states"], x0, noise, sigma)
            mine = trained_states(k["text"]) if te_mode else k["states"]
            kept = kept + (velocity(trained, mine, x0, noise, sigma) - goal).pow(2).mean() / args.keep_batch
        loss = erase + args.keep_weight * kept
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 10 == 0 or step in eval_at:
            if te_mode:
                change = {n: float((p.detach() - te_originals[n]).norm() / te_originals[n].norm().clamp_min(1e-12))
                          for n, p in tencoder.named_parameters() if p.dim() == 2 and not n.startswith("embeddings.")}
            else:
                change = {n: float((m.weight.detach() - originals[n]).norm() / originals[n].norm()) for n, m in layers.items()}
            entry = {"step": step, "erase": float(erase), "keep": float(kept),
                     "weight_change": sum(change.values()) / len(change), "seconds": round(time.time() - started)}
            if step in eval_at:
                model = save(step)
                for space in STEPS:
                    entry[f"held_out_{space}"] = attack(model, space)
            log["steps"].append(entry)
            print(json.dumps(entry), flush=True)
            (args.out / "train.json").write_text(json.dumps(log, indent=1) + "\n")

    if args.efficacy_seeds:
        efficacy_run(args, sorted(eval_at), pairs)
    return 0


def rank_of(out: Path) -> int:
    return int(json.loads((out / "vidunlearn.json").read_text())["recipe"]["edit_rank"])


def shared_factors(layers: dict, originals: dict, default: dict, rank: int) -> list:
    """Register W' = W + W A B^T on every edited layer, A and B (in, rank) shared, started at the
    default edit's own map (I + A B^T = W^-1 W' of the first layer, truncated to the edit's rank)."""
    import torch
    from torch.nn.utils import parametrize

    first = next(iter(layers))
    delta = torch.linalg.solve(originals[first].double(), default[first].double()) - torch.eye(originals[first].shape[1]).double()
    u, s, vh = torch.linalg.svd(delta)
    factor = torch.nn.Module()
    factor.a = torch.nn.Parameter((u[:, :rank] * s[:rank]).float())
    factor.b = torch.nn.Parameter(vh[:rank].T.float().contiguous())

    class Map(torch.nn.Module):
        def forward(self, weight):
            return weight + weight @ factor.a @ factor.b.T

    for module in layers.values():
        parametrize.register_parametrization(module, "weight", Map())
    error = max(float((m.weight - default[n]).norm() / (default[n] - originals[n]).norm()) for n, m in layers.items())
    print(f"shared factors of rank {rank}: the default edit reproduced to {error:.2e} of its change", flush=True)
    return [factor.a, factor.b]


def efficacy_run(args, steps: list[int], pairs) -> None:
    """benchmarks/efficacy.py on the saved models: variant advtrain-s<N> is the default's apply with
    its transformer replaced by step N's, its size columns measured on the trained weights."""
    import efficacy
    import torch
    from safetensors.torch import load_file

    from vidunlearn import api
    from vidunlearn.collateral import collateral_prompts, layer_change
    from vidunlearn.textpath import encode_prompts
    from transformers import AutoModel, AutoTokenizer
    from diffusers import WanTransformer3DModel

    tokenizer = AutoTokenizer.from_pretrained(args.model, subfolder="tokenizer")
    encoder = AutoModel.from_pretrained(args.model, subfolder="text_encoder").eval()
    base = load_file(str(Path(args.model) / "transformer" / "diffusion_pytorch_model.safetensors"))
    embedder = WanTransformer3DModel.from_pretrained(args.model, subfolder="transformer").condition_embedder.text_embedder
    with torch.no_grad():
        tokens = [embedder(s[None])[0] for s in encode_prompts(tokenizer, encoder, list(collateral_prompts()), 512, "cpu")]
    _apply, _size = api.apply, efficacy.edit_size

    def apply(*a, advtrain_step: int = 0, **k):
        _apply(*a, **k)
        if advtrain_step:
            for name in ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
                target = Path(k["out"]) / name
                target.unlink()   # apply may have hard-linked it to the installed package: a new file
                shutil.copy(args.out / f"s{advtrain_step}" / name, target)

    def edit_size(out: Path, model: str) -> dict:   # the default's own figures are measured the same way
        size = _size(out, model)
        new = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
        names = [n for n in base if n.endswith(SITES)]
        size["weight_change"] = sum(float((new[n] - base[n]).norm() / base[n].norm()) for n in names) / len(names)
        size["collateral"] = sum(layer_change(base[n], base.get(n[:-6] + "bias"), new[n], new.get(n[:-6] + "bias"), tokens)
                                 for n in names) / len(names)
        return size

    api.apply, efficacy.edit_size = apply, edit_size
    names = []
    for s in steps:
        efficacy.ALL[f"advtrain-s{s}"] = {"mode": "remap", "advtrain_step": s}
        names.append(f"advtrain-s{s}")
    sys.argv = [sys.argv[0], "--steps", "10", "--seeds", args.efficacy_seeds, "--tasks", args.task, "--variants",
                ",".join(["default", *names]), "--out", str(args.out / "efficacy"),
                "--base-from", str(ROOT / "benchmarks" / "results" / "efficacy-remap-strength1.25-seeds0-1-2-5-7.json")]
    efficacy.main()


if __name__ == "__main__":
    sys.exit(main())
