"""Benchmark: time (and steps) until every input's completeness delta is below 1 %: neuronimp's
`n_steps: auto` against Captum LayerConductance, in the same process.

For each case:
  ours    adaptive_sweep (trapezoid and simpson rules), start 8, doubling per input (probe cut at the layer)
  ours@n  path_sweep at the largest n that auto used, for every input (what a fixed n_steps would need)
  C@50    Captum LayerConductance at its defaults (gausslegendre, n_steps 50)
  C@n*    Captum at the n_steps it needs for every input's delta <= tolerance (n searched from 50: a first-order
          guess, x1.25 until it passes, then bisection to ~10 %; only the final n is timed)
Times are CPU seconds of this process at --threads (default 1). Prints the max relative delta
|sum_u cond_u - (F(x)-F(x'))| / |F(x)-F(x')| over inputs, the steps, the CPU time, and the ratio
time(C@n*) / time(ours) (target >= 3x at an equal or smaller delta).

Cases: (a) random-init GoogLeNet re-drawn at unit scale (bench_nets.lively) at inception4d, random images
and a small random baseline, the target the class whose logit moves most; (b) digits_cnn trained here (or
--checkpoint) at relu2, test digits, zero baseline, predicted class; (c) the project's mnist_cnn on
Fashion-MNIST (configs/fashion_cnn_train.yaml's net, read offline from Debian's IDX files in
/usr/share/datasets/fashion-mnist) at relu2 (the layer of configs/fashion_ablate.yaml: 64 channels of 14x14),
the first --fashion test images, zero (black) baseline, predicted class. The net is loaded from
--fashion-checkpoint when that file exists, else trained here with neuronimp's `fit` for --fashion-epochs
(default 1: ~60 s, test accuracy ~0.88; the config trains 3) and saved there. Without the data set (c) is
skipped with a one-line message.
    PYTHONPATH=. python scripts/bench_steps.py [--images 4] [--size 112] [--digits 256] [--fashion 256]
        [--fashion-checkpoint results/checkpoints/fashion_cnn_1epoch.pt] [--cases googlenet,digits,fashion]

Measured (2-core shared CPU, 1 thread; results/benchmarks/steps_cpu.txt):
    PYTHONPATH=. python scripts/bench_steps.py --images 8 --size 112 --checkpoint results/checkpoints/digits_cnn.pt \\
        --fashion-checkpoint results/checkpoints/fashion_cnn_1epoch.pt --threads 1
  Captum n* time / neuronimp auto time (target >= 3x), max delta ours vs Captum at n*, steps per
  input ours vs Captum's n*:
    (a) GoogLeNet, 8 x 112 px:  trapezoid 7.5x (1.81 s vs 13.56 s; 0.800 % vs 0.999 %, n 8-16 vs 77),
                                simpson 10.1x (1.35 s; 0.974 %, n 8)
    (b) digits, 256:            trapezoid 3.2x (0.21 s vs 0.68 s; 0.995 % vs 0.991 %, n 8-64 vs 50),
                                simpson 4.4x (0.16 s; 0.998 %, n 8-64)
    (c) Fashion-MNIST, 256:     trapezoid 3.5x (9.31 s vs 32.99 s; 0.999 % vs 0.720 %, n 8-256 vs 107; 2.7x with
                                ours held to Captum's 0.720 %), simpson 6.8x (4.86 s; 0.997 %, n 8-128; 4.3x at 0.720 %)
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from captum.attr import LayerConductance
from torch import nn

from bench_nets import FASHION_ROOT, digits_case, googlenet_case, trained_digits_cnn, trained_fashion_cnn
from neuronimp.errors import UsageError
from neuronimp.methods.grid import make_grid
from neuronimp.methods.path import adaptive_sweep, path_sweep, sweep_probe

CHUNK = 16  # interpolation steps per pass, both sides (Captum: internal_batch_size = 16 * images)


def timed(fn):  # noqa: ANN001, ANN201
    """(CPU seconds of this process, result) of fn(): on a machine shared with other jobs the wall time
    swings 2-3x from one run to the next, the CPU time of a single-threaded run only by a few percent."""
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def rel(delta: torch.Tensor, gap: torch.Tensor) -> float:
    """max over inputs of |delta| / |F(x) - F(x')|."""
    return float((delta.detach().abs() / gap.abs()).max())


def captum(m: nn.Module, layer: str, x, b, t, n: int):  # noqa: ANN001, ANN201
    """Captum LayerConductance (gausslegendre) at n_steps n; its per-input delta."""
    lc = LayerConductance(m, m.get_submodule(layer))
    _, d = lc.attribute(x, b, target=t, n_steps=n, method="gausslegendre", internal_batch_size=CHUNK * x.shape[0],
                        return_convergence_delta=True)
    return d


def captum_search(m: nn.Module, layer: str, x, b, t, gap, tol: float,  # noqa: ANN001
                  first: tuple[int, float, float]) -> tuple[int, float, float]:
    """The n_steps Captum needs for max delta <= tol: (n, CPU seconds of that run, delta).

    From `first` (n, seconds, delta of a run already made): a first-order guess n * delta / tol (+10 %), then
    x1.25 until it passes, then bisection between the last failing and the passing n to ~10 %. Gauss-Legendre
    deltas are not monotone in n, so this is the smallest passing n found, not a proven minimum.
    """
    runs: dict[int, tuple[float, float]] = {first[0]: first[1:]}

    def run(n: int) -> bool:
        if n not in runs:
            sec, d = timed(lambda: captum(m, layer, x, b, t, n))
            runs[n] = (sec, rel(d, gap))
            print(f"    Captum n_steps {n:5d}: max delta {runs[n][1]:.3%} ({sec:.1f} CPU s)", flush=True)
        return runs[n][1] <= tol

    lo, hi = 0, first[0]
    if not run(hi):
        lo, hi = hi, max(hi + 1, int(hi * runs[hi][1] / tol * 1.1))
        while not run(hi):
            lo, hi = hi, int(hi * 1.25) + 1
            if hi > 6400:
                raise RuntimeError("Captum did not reach the tolerance by n_steps 6400")
    while lo and hi - lo > max(2, hi // 10):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if run(mid) else (mid, hi)
    return hi, runs[hi][0], runs[hi][1]


def case(name: str, m: nn.Module, layer: str, x, b, t, tol: float, repeats: int,  # noqa: ANN001
         rules: list[str]) -> dict[str, float]:
    """Run the variants on one case, print them; the time ratio C@n* / ours for each rule."""
    m = m.eval()
    for p in m.parameters():
        p.requires_grad_(False)  # Captum and neuronimp alike: no weight gradients
    probe = sweep_probe(m, [layer], x[:1], {})

    def ours(rule: str, tolerance: float = tol):  # noqa: ANN202
        return adaptive_sweep(m, x, b, t, [layer], ["conductance"], rule=rule, tolerance=tolerance,
                              step_chunk=CHUNK, probe=probe, start_steps=8, max_steps=1024)

    # warm-up on one image (allocator, oneDNN primitive caches), both sides
    adaptive_sweep(m, x[:1], b[:1], t[:1], [layer], ["conductance"], probe=probe, start_steps=8, max_steps=8)
    captum(m, layer, x[:1], b[:1], t[:1], 8)
    print(f"\n{name}: layer {layer}, {x.shape[0]} inputs {tuple(x.shape[1:])}, {x.dtype}, tolerance {tol:.0%}")
    t_ours: dict[str, list[float]] = {}
    d_ours: dict[str, float] = {}
    for rule in rules:
        t_ours[rule] = []
        for _ in range(repeats):
            sec, r = timed(lambda: ours(rule))  # noqa: B023
            t_ours[rule].append(sec)
        gap = r.f_input - r.f_baseline
        d_ours[rule] = rel(r.deltas[layer], gap)
        steps = r.steps.tolist()
        hist = {s: steps.count(s) for s in sorted(set(steps))}
        print(f"  ours auto {rule:9s}: {statistics.median(t_ours[rule]):7.2f}s  max delta {d_ours[rule]:.3%}  "
              f"steps per input {hist} ({sum(s + 1 for s in steps)} points in all)", flush=True)
        if rule == rules[0]:
            n_max = max(steps)
            sec_fix, rf = timed(lambda: path_sweep(m, x, b, t, [layer], ["conductance"],  # noqa: B023
                                                   make_grid(rule, n_max), CHUNK, probe=probe))  # noqa: B023
            print(f"  ours fixed n={n_max:<4d} : {sec_fix:7.2f}s  max delta {rel(rf.deltas[layer], gap):.3%}  "
                  f"({(n_max + 1) * x.shape[0]} points: the n a fixed n_steps would need)", flush=True)
    sec50, d50 = timed(lambda: captum(m, layer, x, b, t, 50))
    print(f"  Captum default : {sec50:7.2f}s  max delta {rel(d50, gap):.3%}  (gausslegendre, n_steps 50)", flush=True)
    print("  Captum search for the tolerance:")
    n_star, sec_star, d_star = captum_search(m, layer, x, b, t, gap, tol, (50, sec50, rel(d50, gap)))
    t_cap = [sec_star]
    for _ in range(repeats - 1):  # alternate, so a burst of load from other jobs lands on both sides
        for rule in rules:
            t_ours[rule].append(timed(lambda: ours(rule))[0])  # noqa: B023
        t_cap.append(timed(lambda: captum(m, layer, x, b, t, n_star))[0])
    mc = statistics.median(t_cap)
    print(f"  Captum n*={n_star:<5d}: {mc:7.2f}s  max delta {d_star:.3%}  (CPU s: "
          f"{', '.join(f'{v:.2f}' for v in t_cap)})", flush=True)
    ratios = {}
    for rule in rules:
        mo = statistics.median(t_ours[rule])
        ratios[rule] = mc / mo
        print(f"  => {rule}: time to every delta <= {tol:.0%}: Captum {mc:.2f}s / neuronimp auto {mo:.2f}s "
              f"(CPU s: {', '.join(f'{v:.2f}' for v in t_ours[rule])}) = {mc / mo:.1f}x (target >= 3x); Captum's "
              f"default takes {sec50 / mo:.1f}x ours' time for a {rel(d50, gap) / max(d_ours[rule], 1e-12):.1f}x "
              f"larger delta", flush=True)
        if d_star < d_ours[rule]:  # the search overshot the tolerance: give ours Captum's delta as its tolerance
            sec_eq, r_eq = timed(lambda: ours(rule, d_star))  # noqa: B023
            print(f"     at Captum's delta {d_star:.3%} as ours' tolerance: ours {sec_eq:.2f}s, max delta "
                  f"{rel(r_eq.deltas[layer], gap):.3%}, {int((r_eq.steps + 1).sum())} points: {mc / sec_eq:.1f}x",
                  flush=True)
    return ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4, help="GoogLeNet images")
    p.add_argument("--size", type=int, default=112, help="GoogLeNet image size")
    p.add_argument("--digits", type=int, default=256, help="digits test images")
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=3, help="alternating timed runs of ours and Captum at n* (medians)")
    p.add_argument("--checkpoint", default=None, help="digits_cnn state dict (else trained here, ~10 s)")
    p.add_argument("--fashion", type=int, default=256, help="Fashion-MNIST test images")
    p.add_argument("--fashion-checkpoint", default=None,
                   help="mnist_cnn state dict for Fashion-MNIST (e.g. `neuronimp train --config "
                        "configs/fashion_cnn_train.yaml`'s); if the file is missing, the net is trained here "
                        "(--fashion-epochs) and saved there")
    p.add_argument("--fashion-epochs", type=int, default=1, help="epochs when the Fashion CNN is trained here")
    p.add_argument("--fashion-root", default=FASHION_ROOT, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--cases", default="googlenet,digits,fashion")
    p.add_argument("--rules", default="trapezoid,simpson", help="rules for neuronimp auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads (times are CPU seconds of this process)")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    rules = a.rules.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), no GPU; times are CPU seconds of this "
          f"process (the machine is shared with other jobs, so wall time is noise)")
    ratios = {}
    if "googlenet" in a.cases:
        m, x, b, t = googlenet_case(a.images, a.size)
        ratios["googlenet"] = case("(a) GoogLeNet, random weights at unit scale", m, "inception4d", x, b, t,
                                   a.tolerance, a.repeats, rules)
    if "digits" in a.cases:
        t0 = time.perf_counter()
        m, data = trained_digits_cnn(a.checkpoint)
        x, b, t, acc = digits_case(m, data, a.digits)
        print(f"\ndigits_cnn: {'loaded' if a.checkpoint else 'trained here in'} "
              f"{time.perf_counter() - t0:.0f}s, test accuracy {acc:.3f}")
        ratios["digits"] = case("(b) digits_cnn, trained", m, "relu2", x, b, t, a.tolerance, a.repeats, rules)
    if "fashion" in a.cases:
        t0 = time.perf_counter()
        loaded = bool(a.fashion_checkpoint) and Path(a.fashion_checkpoint).exists()
        try:
            m, data = trained_fashion_cnn(a.fashion_checkpoint, a.fashion_root, a.fashion_epochs)
        except UsageError as e:  # no Debian fashion-mnist package (or another --fashion-root): skip, don't crash
            print(f"\n(c) Fashion-MNIST skipped: {e} (install Debian's fashion-mnist package or give --fashion-root)")
        else:
            x, b, t, acc = digits_case(m, data, a.fashion)
            how = "loaded" if loaded else f"trained here ({a.fashion_epochs} epoch(s)) in"
            print(f"\nmnist_cnn on Fashion-MNIST: {how} {time.perf_counter() - t0:.0f}s, test accuracy {acc:.3f}")
            ratios["fashion"] = case("(c) mnist_cnn, trained on Fashion-MNIST", m, "relu2", x, b, t, a.tolerance,
                                     a.repeats, rules)
    print("\nsummary, Captum time / neuronimp auto time to every delta <= tolerance: " + "; ".join(
        f"{k} " + ", ".join(f"{r} {v:.1f}x" for r, v in d.items()) for k, d in ratios.items()))


if __name__ == "__main__":
    main()
