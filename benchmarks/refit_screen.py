"""A screen, not a feature: refit the cross-attention remap M in closed form on a trained text encoder's
states (fifteenth session, docs/adversarial-collateral.md). The trained encoder moves the keep prompts'
states a little; the refit asks the transformer's K/V to read them as the base read the base's:

    M' = argmin  sum_keep ||M' x'_p - x_p||^2 + sum_unsafe ||M' x'_u - M x'_u||^2 + 10 ||M' x_0 - M x_0||^2 + mu ||M' - M||^2

x = the transformer's text embedder (Wan's condition_embedder.text_embedder) of the encoder's states per
token, x' the trained encoder's, x_0 that of the zero padding; keep = the pairs' neutral, retain, safe and target prompts (and the 100
everyday anchor prompts at --anchor-weight); M from the folder's first block (W' = W M); every block's
attn2.to_k / to_v written as W M' into a copy of the folder.

    python benchmarks/refit_screen.py --trained out/c2s --pairs pairs/bench/circle-to-square.yaml --out out/c2s-refit
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="models/shapes-wan")
    parser.add_argument("--trained", type=Path, required=True, help="a folder of `apply --adversarial` (site text_encoder)")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mu", type=float, default=1e-2, help="the pull towards M, relative to the mean diagonal of X^T X")
    parser.add_argument("--anchor-weight", type=float, default=0.0, help="the everyday anchor prompts' rows' weight")
    args = parser.parse_args()

    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file, save_file

    from vidunlearn.collateral import anchor_prompts
    from vidunlearn.model import resolve_model
    from vidunlearn.pairs import load_pairs
    from vidunlearn.remap import target_prompts
    from vidunlearn.textpath import encode_prompts, load_text_encoder

    name = "transformer/diffusion_pytorch_model.safetensors"
    base, trained = resolve_model(args.base), resolve_model(str(args.trained))
    (tok_b, enc_b), (tok_t, enc_t) = (load_text_encoder(s, "cpu", torch.float32) for s in (base, trained))
    length = base.adapter.max_sequence_length
    weights, edited = load_file(str(Path(args.base) / name)), load_file(str(args.trained / name))
    embedder = WanTransformer3DModel.from_pretrained(str(Path(args.base) / "transformer")).condition_embedder.text_embedder

    def project(states: torch.Tensor) -> torch.Tensor:   # the transformer's own text embedder, in float64
        with torch.no_grad():
            return embedder.double()(states.double())

    kv = lambda w: torch.cat([w["blocks.0.attn2.to_k.weight"], w["blocks.0.attn2.to_v.weight"]]).double()
    remap = torch.linalg.pinv(kv(weights)) @ kv(edited)
    concept = load_pairs(args.pairs)
    keep = list(dict.fromkeys([*concept.neutral, *concept.retain, *concept.safe, *target_prompts(concept)[0]]))
    xs, ys, ws = [], [], []
    for texts, weight in ((keep, 1.0), (list(anchor_prompts()), args.anchor_weight)):
        if weight:
            for b, t in zip(encode_prompts(tok_b, enc_b, texts, length, "cpu"), encode_prompts(tok_t, enc_t, texts, length, "cpu")):
                xs.append(project(t)), ys.append(project(b)), ws.append(torch.full((len(t),), weight, dtype=torch.float64))
    for t in encode_prompts(tok_t, enc_t, list(concept.unsafe), length, "cpu"):   # the unsafe prompts: as the training left them
        xs.append(project(t)), ys.append(project(t) @ remap.T), ws.append(torch.ones(len(t), dtype=torch.float64))
    null = project(torch.zeros(1, enc_b.config.hidden_size))   # the pipeline's zero padding token, at weight 10: kept
    xs.append(null), ys.append(null @ remap.T), ws.append(torch.full((1,), 10.0, dtype=torch.float64))
    x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
    residual = y - x @ remap.T
    gram = x.T @ (w[:, None] * x)
    mu = args.mu * float(torch.diagonal(gram).mean())
    change = (residual.T @ (w[:, None] * x)) @ torch.linalg.inv(gram + mu * torch.eye(gram.shape[0], dtype=gram.dtype))
    after = y - x @ (remap + change).T
    rel = lambda r: float((w * r.norm(dim=1) / y.norm(dim=1)).sum() / w.sum())
    print(f"rows {len(x)}; mean relative residual {rel(residual):.3f} -> {rel(after):.3f}; |M - I| "
          f"{float((remap - torch.eye(len(remap), dtype=remap.dtype)).norm()):.2f}, |M' - M| {float(change.norm()):.2f}")
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.trained, args.out)
    refit = dict(edited)
    for key, value in weights.items():
        if ".attn2.to_k.weight" in key or ".attn2.to_v.weight" in key:
            refit[key] = (value.double() @ (remap + change)).float().contiguous()
    (args.out / name).unlink()
    save_file(refit, str(args.out / name))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
