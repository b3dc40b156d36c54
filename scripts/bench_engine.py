"""Benchmark: neuronimp's one-sweep engine against Captum's separate calls, in the same process.

Case A: random-init GoogLeNet, layers inception3b/4a/4d/5b x the 4 path methods (activation, gradient x
activation, internal influence, conductance), n_steps 50: one neuronimp sweep vs 16 Captum calls.
Case B: one layer, conductance only: neuronimp vs one Captum LayerConductance call.
Case C: peak memory (max RSS of a fresh process, or CUDA peak) at n_steps 50 and 500.
Case D (--gpu-throughput): images/s for Inception-v3 at Mixed_6e, n_steps 50, float32 and bf16 autocast.

Prints the ratios; targets: A >= 6x, B >= 1x, C <= 1.3x.
    python scripts/bench_engine.py [--images 8] [--size 224] [--steps 50] [--device cpu] [--repeats 3]

Timing protocol: both sides first run once on one image (warm-up: allocator, oneDNN primitive caches), then
cases A and B alternate neuronimp and Captum `--repeats` times and compare the medians, so a burst of load
from another process on a shared machine lands on both sides instead of deciding the ratio. Where the
single-layer gain comes from: the layers before the cut run without autograd (Captum records them, since the
weights require grad), and the backward pass starts at the layer.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores
from neuronimp.models import create_model

LAYERS = ["inception3b", "inception4a", "inception4d", "inception5b"]
PATH = ["activation", "grad_x_act", "internal_influence", "conductance"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:  # noqa: ANN001
    """Wall seconds of fn()."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def compare(ours, theirs, device: torch.device, repeats: int) -> tuple[list[float], list[float]]:  # noqa: ANN001
    """Alternate ours() and theirs() `repeats` times; the wall seconds of each run."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours, device))
        b.append(timed(theirs, device))
    return a, b


def captum_all(m, x, b, t, layers, methods, steps):  # noqa: ANN001, ANN201
    """The same numbers from Captum, one call per (layer, method)."""
    from captum.attr import InternalInfluence, LayerActivation, LayerConductance, LayerGradientXActivation

    out = {}
    for layer in layers:
        mod = m.get_submodule(layer)
        for meth in methods:
            if meth == "activation":
                a = LayerActivation(m, mod).attribute(x)
            elif meth == "grad_x_act":
                a = LayerGradientXActivation(m, mod).attribute(x, target=t)
            elif meth == "internal_influence":
                a = InternalInfluence(m, mod).attribute(x, b, target=t, n_steps=steps, method="riemann_left")
            else:
                a = LayerConductance(m, mod).attribute(x, b, target=t, n_steps=steps, method="riemann_trapezoid",
                                                       internal_batch_size=x.shape[0] * 16)
            out[(layer, meth)] = a.detach().flatten(2).sum(2)
    return out


def memory_child(steps: int, images: int, size: int, device: str) -> float:
    """Peak memory (MiB) of one sweep at `steps`, measured in a fresh process."""
    code = f"""
import resource, torch, json
from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores
from neuronimp.models import create_model
dev = torch.device({device!r})
m = create_model("googlenet", weights="none").model.to(dev).eval()
x = torch.rand({images}, 3, {size}, {size}, device=dev)
with torch.no_grad():
    t = m(x).argmax(1)
if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
compute_scores(m, x, torch.zeros_like(x), t, {LAYERS!r}, {PATH!r},
               AttributionCfg(n_steps={steps}, rule="riemann_left", step_chunk=16))
peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(peak))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(res.stdout.strip().splitlines()[-1]))


def gpu_throughput(images: int, steps: int) -> None:
    """Images/s for Inception-v3 at Mixed_6e, float32 and bf16 autocast (needs CUDA)."""
    dev = torch.device("cuda")
    m = create_model("inception_v3_tv", weights="none").model.to(dev).eval()
    x = torch.rand(images, 3, 299, 299, device=dev)
    with torch.no_grad():
        t = m(x).argmax(1)
    for mode in ("float32", "bf16"):
        cfg = AttributionCfg(n_steps=steps, rule="riemann_left", step_chunk=steps + 1)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if mode == "bf16" else torch.autocast("cuda", enabled=False)

        def run() -> object:
            with ctx:
                return compute_scores(m, x, torch.zeros_like(x), t, ["Mixed_6e"], PATH, cfg)

        run()  # warm-up
        sec = timed(run, dev)
        s = run()
        rel = (s.deltas["Mixed_6e"].abs() / (s.f_input - s.f_baseline).abs().clamp(min=1e-6)).float().median()
        ips = images / sec
        print(f"D  inception_v3 Mixed_6e {mode:8s}: {ips:8.1f} images/s ({50000 / ips / 60:.1f} min for 50k), "
              f"median |delta|/|F(x)-F(x')| = {float(rel):.3%}")


def _fmt(runs: list[float]) -> str:
    return f"median {statistics.median(runs):.1f}s (" + ", ".join(f"{v:.1f}" for v in runs) + ")"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of cases A and B")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--gpu-throughput", action="store_true")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    print(f"machine: {torch.get_num_threads()} CPU threads, device {dev}, torch {torch.__version__}")
    m = create_model("googlenet", weights="none").model.to(dev).eval()
    x = torch.rand(a.images, 3, a.size, a.size, device=dev)
    b = torch.zeros_like(x)
    with torch.no_grad():
        t = m(x).argmax(1)
    cfg = AttributionCfg(n_steps=a.steps, rule="riemann_left", step_chunk=16)
    for fn in (lambda: compute_scores(m, x[:1], b[:1], t[:1], LAYERS, PATH, cfg),
               lambda: captum_all(m, x[:1], b[:1], t[:1], LAYERS, PATH, a.steps)):
        fn()  # warm-up on one image
    ours: dict = {}
    theirs: dict = {}
    t_ours, t_cap = compare(
        lambda: ours.update(compute_scores(m, x, b, t, LAYERS, PATH, cfg).scores),
        lambda: theirs.update(captum_all(m, x, b, t, LAYERS, PATH, a.steps)), dev, a.repeats)
    err = max(float((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max().clamp(min=1e-12)) for k in theirs)
    r = statistics.median(t_cap) / statistics.median(t_ours)
    print(f"A  4 layers x 4 path methods, {a.images} images {a.size}px, n_steps {a.steps}, {a.repeats} alternating "
          f"runs: neuronimp {_fmt(t_ours)}, Captum {_fmt(t_cap)}, ratio of medians {r:.1f}x (target >= 6x); "
          f"max relative difference {err:.1e}", flush=True)
    t1, t2 = compare(lambda: compute_scores(m, x, b, t, ["inception4d"], ["conductance"], cfg),
                     lambda: captum_all(m, x, b, t, ["inception4d"], ["conductance"], a.steps), dev, a.repeats)
    r = statistics.median(t2) / statistics.median(t1)
    print(f"B  1 layer x conductance, {a.repeats} alternating runs: neuronimp {_fmt(t1)}, "
          f"Captum LayerConductance {_fmt(t2)}, ratio of medians {r:.2f}x "
          f"(per-run ratios {min(y / x for x, y in zip(t1, t2)):.2f}..{max(y / x for x, y in zip(t1, t2)):.2f}; "
          f"target >= 1x)", flush=True)
    if not a.skip_memory:
        m50 = memory_child(50, a.images, a.size, a.device)
        m500 = memory_child(500, a.images, a.size, a.device)
        print(f"C  peak memory: n_steps 50 {m50:.0f} MiB, n_steps 500 {m500:.0f} MiB, ratio {m500 / m50:.2f}x "
              f"(target <= 1.3x)")
    if a.gpu_throughput:
        if not torch.cuda.is_available():
            print("D  skipped: no CUDA device")
        else:
            gpu_throughput(images=64, steps=a.steps)


if __name__ == "__main__":
    main()
