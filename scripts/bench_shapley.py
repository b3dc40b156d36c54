"""Benchmark: coalitions evaluated per second, batched suffix-only `coalition_value` vs a naive full re-run.

Random-init GoogLeNet (canonical ReLUs), layer inception4d (mixed4d, 528 units), `--images` inputs, `--coalitions`
random keep-masks (mean ablation). Batched: one prefix pass, then the suffix on up to `--coalition-batch`
coalitions x images per forward (neuronimp.methods.coalitions.coalition_value). Naive: per coalition, a full
forward of the images with a forward hook that masks the layer. Both sides are warmed up, then alternate
`--repeats` times; the ratio is of the medians. Also printed: the time of prefix and suffix alone, which
bounds what skipping the prefix can give. Conv and linear weights are re-drawn with Kaiming-normal init:
torchvision's own init (std 0.01) leaves |a| ~ 1e-10 at inception4d and the logits equal to the fc bias,
which would make the batched-vs-naive equality check vacuous (the work done is the same either way).
    python scripts/bench_shapley.py [--images 2] [--coalitions 32] [--size 224] [--device cpu] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from torch import nn

from neuronimp.hooks import replace_output
from neuronimp.methods.coalitions import coalition_value
from neuronimp.models import create_model, resolve_layer
from neuronimp.probe import Probe


def timed(fn, device: torch.device) -> float:  # noqa: ANN001
    """Wall seconds of fn()."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--coalitions", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--coalition-batch", type=int, default=16, help="coalitions per suffix forward")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    bundle = create_model("googlenet", weights="none")
    model = bundle.model.to(dev).eval()
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    layer = resolve_layer(bundle, "mixed4d")
    x = torch.rand(a.images, 3, a.size, a.size, device=dev)
    probe = Probe(model, layer, x)
    with torch.no_grad():
        target = model(x).argmax(1)
        units = probe.prefix(x).shape[1]
    keep = torch.rand(a.coalitions, units, device=dev) > 0.5  # [C, U]
    print(f"machine: {torch.get_num_threads()} CPU threads, device {dev}, torch {torch.__version__}; googlenet "
          f"random init, layer {layer} ({units} units), probe mode {probe.mode}, {a.images} images "
          f"{a.size}px, {a.coalitions} coalitions, coalition batch {a.coalition_batch}", flush=True)
    out: dict[str, torch.Tensor] = {}

    def batched(k: torch.Tensor) -> None:
        with torch.no_grad():
            act = probe.prefix(x)  # [B, U, h, w]: once per call, shared by every coalition
            fill = act.mean(0, keepdim=True)  # mean ablation over the images
        out["batched"] = coalition_value(probe, x, act, fill, "logit", target=target,
                                         coalition_batch=a.coalition_batch)(k)

    def naive(k: torch.Tensor) -> None:
        rows = []
        with torch.no_grad():
            fill = probe.prefix(x).mean(0, keepdim=True)
            for m in k:
                with replace_output(model, layer, lambda y, m=m: torch.where(m.view(1, -1, 1, 1), y, fill)):
                    rows.append(model(x).gather(1, target.unsqueeze(1)).squeeze(1))
        out["naive"] = torch.stack(rows)

    batched(keep[:2])  # warm-up (allocator, oneDNN primitives) at both batch shapes
    batched(keep[: a.coalition_batch])
    naive(keep[:2])
    with torch.no_grad():
        act = probe.prefix(x)
    tb, tn, parts = [], [], {"prefix": [], "suffix": [], "full model": []}
    for _ in range(a.repeats):
        tb.append(timed(lambda: batched(keep), dev))
        tn.append(timed(lambda: naive(keep), dev))
        with torch.no_grad():  # one forward of the images, cut in two and whole
            parts["prefix"].append(timed(lambda: probe.prefix(x), dev))
            parts["suffix"].append(timed(lambda: probe.suffix(act, x), dev))
            parts["full model"].append(timed(lambda: model(x), dev))
    err = float((out["batched"] - out["naive"]).abs().max())
    spread = float(out["naive"].std(0).max())  # the masks do change the logits
    t_pre, t_suf, t_full = (statistics.median(v) for v in parts.values())
    rb, rn = a.coalitions / statistics.median(tb), a.coalitions / statistics.median(tn)
    print(f"runs (s): batched {', '.join(f'{t:.2f}' for t in tb)}; naive {', '.join(f'{t:.2f}' for t in tn)}; "
          f"max |batched - naive| logit {err:.1e} (spread over coalitions {spread:.1e})")
    print(f"one forward of {a.images} images: prefix {t_pre * 1e3:.0f} ms, suffix {t_suf * 1e3:.0f} ms, full "
          f"model {t_full * 1e3:.0f} ms: skipping the prefix alone gives full / suffix = {t_full / t_suf:.1f}x")
    print(f"batched {rb:.1f} coalitions/s vs naive {rn:.1f} coalitions/s: {rb / rn:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
