"""Benchmark Study 1's flip search against the naive loop; prints the speed-up measured in this one process.

Setup (the issue's): random-init GoogLeNet (create_model('googlenet', weights='none')), layer mixed4d
(528 channels), 16 random-normal images, K = 64, CPU, zero ablation, units ranked by activation.
  naive: for each image and k = 1, 2, ...: re-run the WHOLE model with the top-k units zeroed by a forward
         hook, batch of 1, stop at the first flip.
  study: the layer's activation once per image (one batched prefix), then only the suffix, all images' k
         values batched (chunks of k that double, at most max_rows rows per call), stop at the first flip.
Both must give the same k_flip for every image; the script checks it. Random-init GoogLeNet's activations
vanish through its 0.01-std init (its logits do not depend on the input in float32), so nothing flips and
both evaluate every k: a pure measure of compute, the worst case for the study's early stop. The images run in groups (study, then
naive, on each group) so that a machine whose load drifts during the run slows both alike.

  python scripts/bench_ablate.py [--images 16] [--max-k 64] [--threads N] [--max-rows 64] [--group 4] [--channels-last]
"""
from __future__ import annotations

import argparse
import time

import torch

from neuronimp.config import AblateCfg
from neuronimp.hooks import replace_output
from neuronimp.models import create_model, resolve_layer
from neuronimp.probe import Probe
from neuronimp.studies.flips import ImageBatch, ablation_rows, rank_units


def naive(model: torch.nn.Module, layer: str, x: torch.Tensor, order: torch.Tensor, pred: torch.Tensor,
          max_k: int) -> tuple[list[int | None], int]:
    """k_flip per image from full forwards with the top-k units zeroed; also the number of forwards."""
    out, calls = [], 0
    with torch.no_grad():
        for b in range(x.shape[0]):
            found = None
            for k in range(1, max_k + 1):
                units = order[b, :k]
                with replace_output(model, layer, lambda o, u=units: o.index_fill(1, u, 0.0)):
                    label = int(model(x[b : b + 1]).argmax(1))
                calls += 1
                if label != int(pred[b]):
                    found = k
                    break
            out.append(found)
    return out, calls


def main() -> None:
    """Time both searches once each (after a warm-up forward) and print their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--max-k", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--max-rows", type=int, default=64, help="suffix rows per call (64 is fastest on CPU)")
    ap.add_argument("--channels-last", action="store_true", help="both searches in channels_last (mkldnn)")
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--group", type=int, default=4, help="images per interleaved study/naive round")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bundle = create_model("googlenet", weights="none")
    model = bundle.model.eval()
    layer = resolve_layer(bundle, "mixed4d")
    x = torch.randn(args.images, *bundle.input_shape)  # 16 x 3 x 224 x 224
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    probe = Probe(model, layer, x[:1])
    with torch.no_grad():
        model(x[:2])  # warm-up
        pred = model(x).argmax(1)

    cfg = AblateCfg(max_k=args.max_k, correlation=False, chunk=args.chunk, max_rows=args.max_rows)
    t_study = t_naive = 0.0
    rows, want, calls = [], [], 0
    # Groups of images, study then naive on each: a load that drifts during the run hits both alike.
    for g in range(0, len(x), args.group):
        xg, pg = x[g : g + args.group], pred[g : g + args.group]
        t0 = time.perf_counter()
        with torch.no_grad():
            a = probe.prefix(xg)  # n x 528 x 14 x 14, once per image
        scores = {("activation", 0): a.sum((2, 3))}
        batch = ImageBatch(torch.arange(g, g + len(xg)), pg, pg, pg, xg, a)
        rows += list(ablation_rows(probe, batch, layer, scores, {"zero": torch.zeros_like(a[:1])}, cfg))
        t_study += time.perf_counter() - t0

        order = rank_units(scores[("activation", 0)])
        t0 = time.perf_counter()
        w, c = naive(model, layer, xg, order, pg, min(args.max_k, a.shape[1]))
        t_naive += time.perf_counter() - t0
        want, calls = want + w, calls + c

    got = [r["k_flip"] for r in rows]
    assert got == want, f"study {got} != naive {want}"
    flipped = [k for k in got if k is not None]
    print(f"googlenet mixed4d, {len(x)} images, K = {args.max_k}, threads = {torch.get_num_threads()}, "
          f"max_rows = {args.max_rows}, channels_last = {args.channels_last}; "
          f"flipped {len(flipped)}/{len(got)}, k_flip {got}")
    print(f"naive (whole model per k, batch 1): {t_naive:8.2f} s  ({calls} forwards)")
    print(f"study (prefix once, batched suffix): {t_study:8.2f} s")
    print(f"speed-up: {t_naive / t_study:.1f}x")


if __name__ == "__main__":
    main()
