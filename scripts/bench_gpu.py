"""GPU throughput of conductance: images/s at n_steps 50 for GoogLeNet mixed4d (224 px) and Inception-v3
mixed6e (299 px), in float32, TF32 and bf16 autocast, each with its completeness delta and peak GPU memory,
against Captum LayerConductance in the same run.

Run through scripts/bench_gpu.sh on a CUDA machine (budget: under 4 minutes in all; measurements that would
start after --budget-s seconds are skipped and say so). On CPU, `--device cpu --smoke` runs every code path
at tiny sizes (numbers meaningless), including the out-of-memory fallback via --max-rows.

For each (model, mode) and each side (neuronimp path_sweep, trapezoid rule, probe cut at the layer; Captum
LayerConductance at its default gausslegendre), the largest chunk that fits is found first: all 51 steps x
--images rows in one pass, halving the steps per pass on CUDA out-of-memory. That run doubles as warm-up
(cuDNN autotuning); the next is timed. Weights are re-drawn at unit scale (bench_nets.lively) so that
F(x) - F(x') is not ~0 and the delta means something; throughput does not depend on the values.
    PYTHONPATH=. python scripts/bench_gpu.py --device cuda [--images 64] [--steps 50] [--budget-s 210]
    PYTHONPATH=. python scripts/bench_gpu.py --device cpu --smoke
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
from captum.attr import LayerConductance
from torch import nn

from bench_nets import lively
from neuronimp.methods.grid import make_grid
from neuronimp.methods.path import adaptive_sweep, path_sweep, sweep_probe
from neuronimp.models import create_model, resolve_layer

CASES = {"googlenet": ("mixed4d", 224), "inception_v3_tv": ("mixed6e", 299)}
SMOKE_SIZE = {"googlenet": 64, "inception_v3_tv": 96}
MODES = ("float32", "tf32", "bf16")


class SimulatedOOM(RuntimeError):
    """Raised for chunks above --max-rows, so the fallback path runs on CPU too."""


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def set_mode(mode: str, dev: torch.device) -> contextlib.AbstractContextManager:
    """TF32 switches for `mode`, and the autocast context to run it in."""
    torch.backends.cuda.matmul.allow_tf32 = mode != "float32"
    torch.backends.cudnn.allow_tf32 = mode != "float32"  # cuDNN's default is True: float32 must turn it off
    if mode == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit_chunk(run, steps: int, images: int, max_rows: int, dev: torch.device):  # noqa: ANN001, ANN201
    """The largest steps-per-pass c (from steps + 1, halving) for which run(c) fits; (c, run's result)."""
    c = steps + 1
    while True:
        try:
            if c * images > max_rows:
                raise SimulatedOOM(f"{c * images} rows > --max-rows {max_rows}")
            out = run(c)
            _sync(dev)
            return c, out
        except (torch.cuda.OutOfMemoryError, SimulatedOOM):
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if c == 1:
                raise
            c = max(1, c // 2)


def measure(run, steps: int, images: int, max_rows: int, dev: torch.device) -> dict:  # noqa: ANN001
    """Fit the chunk (= warm-up), then time one run: images/s, peak memory, the result."""
    c, _ = fit_chunk(run, steps, images, max_rows, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(dev)
    t = time.perf_counter()
    out = run(c)
    _sync(dev)
    sec = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    return {"chunk": c, "sec": sec, "ips": images / sec, "peak": peak, "out": out}


def _delta(d: torch.Tensor, gap: torch.Tensor) -> str:
    r = (d.detach().float().abs() / gap.float().abs()).cpu()
    return f"delta median {float(r.median()):.2%} max {float(r.max()):.2%}"


def line(model: str, mode: str, side: str, m: dict, images: int, delta: str) -> str:
    peak = f"{m['peak']:5.1f} GiB" if m["peak"] == m["peak"] else "  n/a (cpu)"
    return (f"{model:16s} {mode:8s} {side:22s} {m['ips']:8.1f} img/s  ({m['sec']:6.2f}s; chunk {m['chunk']:2d} steps x "
            f"{images} images)  peak {peak}  {delta}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (2 images, 64/96 px, 4 steps): a CPU path test")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--models", default=",".join(CASES))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--budget-s", type=float, default=210.0, help="skip measurements that would start later")
    p.add_argument("--max-rows", type=int, default=10**9, help="treat chunks above this many rows as OOM")
    p.add_argument("--no-captum", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: leave as is)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.smoke:
        a.images, a.steps = min(a.images, 2), min(a.steps, 4)
    dev = torch.device(a.device)
    t0 = time.perf_counter()
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {gpu}; torch {torch.__version__}; {a.images} images, n_steps {a.steps}; "
          f"rule trapezoid (ours), gausslegendre (Captum default)", flush=True)
    for name in a.models.split(","):
        alias, size = CASES[name]
        size = SMOKE_SIZE[name] if a.smoke else size
        bundle = create_model(name, weights="none")
        layer = resolve_layer(bundle, alias)
        m = lively(bundle.model).to(dev)
        for q in m.parameters():
            q.requires_grad_(False)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(a.images, 3, size, size, generator=g).to(dev)
        b = (torch.randn(a.images, 3, size, size, generator=g) * 0.1).to(dev)
        with torch.no_grad():
            t = (m(x) - m(b)).argmax(1)
        probe = sweep_probe(m, [layer], x[:1], {})
        grid = make_grid("trapezoid", a.steps)
        tag = f"{name} {alias} {size}px"
        for mode in a.modes.split(","):
            if time.perf_counter() - t0 > a.budget_s:
                print(f"{tag:16s} {mode:8s} skipped: past the {a.budget_s:.0f}s budget", flush=True)
                continue
            ctx = set_mode(mode, dev)

            def ours(c: int):  # noqa: ANN202
                with ctx:
                    return path_sweep(m, x, b, t, [layer], ["conductance"], grid, c, probe=probe)

            def theirs(c: int):  # noqa: ANN202
                with ctx:
                    return LayerConductance(m, m.get_submodule(layer)).attribute(
                        x, b, target=t, n_steps=a.steps, internal_batch_size=c * a.images,
                        return_convergence_delta=True)

            r = measure(ours, a.steps, a.images, a.max_rows, dev)
            res = r["out"]
            gap = res.f_input - res.f_baseline
            print(line(tag, mode, "neuronimp", r, a.images, _delta(res.deltas[layer], gap)), flush=True)
            if mode == "tf32" and time.perf_counter() - t0 < a.budget_s:
                def auto(c: int):  # noqa: ANN202
                    with ctx:
                        return adaptive_sweep(m, x, b, t, [layer], ["conductance"], rule="trapezoid", tolerance=0.01,
                                              step_chunk=c, probe=probe, start_steps=8, max_steps=1024)

                ra = measure(auto, 8, a.images, a.max_rows, dev)
                steps = ra["out"].steps.tolist()
                hist = {s: steps.count(s) for s in sorted(set(steps))}
                print(line(tag, mode, "neuronimp auto 1%", ra, a.images, _delta(ra["out"].deltas[layer], gap))
                      + f"  steps {hist}", flush=True)
            if a.no_captum or time.perf_counter() - t0 > a.budget_s:
                continue
            rc = measure(theirs, a.steps, a.images, a.max_rows, dev)
            print(line(tag, mode, "Captum LayerConductance", rc, a.images, _delta(rc["out"][1], gap))
                  + f"  => ours {rc['sec'] / r['sec']:.1f}x faster", flush=True)
        del m, probe
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
