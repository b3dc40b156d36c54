"""Completeness delta of conductance against the number of points, per integration rule.

For each setup, the path is sampled once at N + 1 equally spaced points; riemann_left, trapezoid and simpson at
every n dividing N are the sums over every (N/n)-th sample (exactly what path_sweep computes at n), and
gauss_legendre is swept separately at each n (its nodes do not nest). Prints the median and max over inputs
of |sum_u cond_u - (F(x) - F(x'))| / |F(x) - F(x')| and the observed order -d log(median) / d log n.

Setups: smooth (tanh layer, softplus head: the per-unit conductance is analytic, v_u (softplus(y_u(x)) -
softplus(y_u(x')))), smooth_cnn (SiLU conv net), digits (digits_cnn trained here, relu2), googlenet
(random 'lively' GoogLeNet at inception4d, float32).
    PYTHONPATH=. python scripts/rule_convergence.py [--setups smooth,digits,googlenet] [--size 64]
"""
from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from neuronimp.hooks import capture, frozen
from neuronimp.methods.grid import make_grid
from neuronimp.methods.path import Stieltjes, path_points, path_sweep, sweep_probe

RULES = {"riemann_left": "left", "trapezoid": "trapezoid", "simpson": "simpson"}


def dense(model, x, b, t, layer, big_n, chunk=16):  # noqa: ANN001, ANN201
    """F at the ends and (y_k, g_k) for k = 0..big_n at alpha = k / big_n."""
    probe = sweep_probe(model, [layer], x[:1], {})
    alphas = [k / big_n for k in range(big_n + 1)]
    ys, gs, fs = [], [], []
    with frozen(model), capture(model, [layer]) as out, torch.enable_grad():
        for i in range(0, len(alphas), chunk):
            f, yv, gv = path_points(model, x, b, t, [layer], alphas[i : i + chunk], probe, out)
            ys += list(yv[0])
            gs += list(gv[0])
            fs += list(f)
    return fs[0], fs[-1], ys, gs


def sub_sum(ys, gs, flavour: str, stride: int) -> torch.Tensor:  # noqa: ANN001
    """The conductance [B, U] of the sub-grid taking every `stride`-th sample."""
    s = Stieltjes(flavour)
    for k in range(0, len(ys), stride):
        s.push(ys[k], gs[k])
    return s.total


def table(name: str, model, x, b, t, layer, big_n, gl_max, exact=None) -> None:  # noqa: ANN001
    """Print delta (or per-unit error against `exact`) against n for every rule."""
    f0, f1, ys, gs = dense(model, x, b, t, layer, big_n)
    gap = (f1 - f0).abs()
    ns = [n for n in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if n <= big_n and big_n % n == 0]
    rows: dict[str, list[tuple[float, float]]] = {}
    for rule, fl in RULES.items():
        rows[rule] = []
        for n in ns:
            c = sub_sum(ys, gs, fl, big_n // n)
            if exact is not None:  # per-unit error relative to the largest exact unit
                rel = (c - exact).abs().amax(1) / exact.abs().amax(1)
            else:
                rel = (c.sum(1) - (f1 - f0)).abs() / gap
            rows[rule].append((float(rel.median()), float(rel.max())))
    rows["gauss_legendre"] = []
    for n in ns:
        if n > gl_max:
            rows["gauss_legendre"].append((math.nan, math.nan))
            continue
        r = path_sweep(model, x, b, t, [layer], ["conductance"], make_grid("gauss_legendre", n), 16)
        c = r.scores[(layer, "conductance")]
        if exact is not None:
            rel = (c - exact).abs().amax(1) / exact.abs().amax(1)
        else:
            rel = r.deltas[layer].abs() / gap
        rows["gauss_legendre"].append((float(rel.median()), float(rel.max())))
    what = "max per-unit error / max |exact unit|" if exact is not None else "|delta| / |F(x)-F(x')|"
    print(f"\n{name}: layer {layer}, {x.shape[0]} inputs, {x.dtype}; {what}: median (max) over inputs; "
          f"order = -slope of log median")
    print("  n+1 points " + "".join(f"{r:>26s}" for r in rows))
    for i, n in enumerate(ns):
        cells = []
        for r in rows:
            med, mx = rows[r][i]
            order = ""
            if i and rows[r][i - 1][0] > 0 and med > 0 and not math.isnan(med):
                order = f"{-math.log(med / rows[r][i - 1][0]) / math.log(n / ns[i - 1]):+.1f}"
            cells.append(f"{med:9.2e} ({mx:8.2e}) {order:>4s}")
        print(f"  {n + 1:>10d} " + "".join(f"{c:>26s}" for c in cells), flush=True)


class Softplus(nn.Module):
    """F = sum_u v_u softplus(y_u) (+ 0 * x): separable, so cond_u = v_u (softplus(y_u(x)) - softplus(y_u(x')))."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.v = nn.Parameter(v)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (nn.functional.softplus(y) * self.v).sum(-1, keepdim=True).repeat(1, 2)


def smooth_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """tanh(W x + c) layer '1' then a softplus head; 6 inputs of scale 1..3; the analytic conductance."""
    torch.manual_seed(0)  # the biases
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), Softplus(torch.randn(7, generator=g))).double().eval()
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(7, 5, generator=g) * 2)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64) * torch.linspace(1, 3, 6, dtype=torch.float64)[:, None]
    b = torch.zeros_like(x)
    with torch.no_grad():
        y1, y0 = m[1](m[0](x)), m[1](m[0](b))
        exact = (nn.functional.softplus(y1) - nn.functional.softplus(y0)) * m[2].v
    return m, x, b, torch.zeros(6, dtype=torch.long), exact


def smooth_cnn() -> nn.Module:
    """A SiLU conv net (a smooth stand-in for EfficientNet-like nets), float64; layer "1" is the first SiLU (the last one feeds a linear head: exact)."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(), nn.Conv2d(8, 8, 3), nn.SiLU(), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 5)).double().eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default="smooth,smooth_cnn,digits,googlenet")
    p.add_argument("--size", type=int, default=64, help="GoogLeNet image size")
    p.add_argument("--images", type=int, default=2, help="GoogLeNet images")
    p.add_argument("--float64", action="store_true", help="GoogLeNet in float64 (float32 rounding floors the delta ~1e-4)")
    p.add_argument("--points", type=int, default=256, help="GoogLeNet: the densest grid n")
    p.add_argument("--checkpoint", default=None, help="digits_cnn weights (else trained here)")
    a = p.parse_args()
    setups = a.setups.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "smooth" in setups:
        m, x, b, t, exact = smooth_case()
        table("smooth (tanh layer, softplus head)", m, x, b, t, "1", 1024, 64, exact=exact)
        table("smooth (tanh layer, softplus head)", m, x, b, t, "1", 1024, 64)
    if "smooth_cnn" in setups:
        m = smooth_cnn()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 3, 12, 12, generator=g, dtype=torch.float64) * 2
        with torch.no_grad():
            t = (m(x) - m(torch.zeros_like(x))).argmax(1)
        table("smooth_cnn (SiLU)", m, x, torch.zeros_like(x), t, "1", 512, 64)
    if "digits" in setups:
        from bench_nets import digits_case, trained_digits_cnn

        m, data = trained_digits_cnn(a.checkpoint)
        x, b, t, acc = digits_case(m, data, 16)
        print(f"\ndigits_cnn test accuracy {acc:.3f}")
        m = m.double()
        table("digits_cnn (trained, ReLU)", m, x.double(), b.double(), t, "relu2", 1024, 128)
    if "googlenet" in setups:
        from bench_nets import googlenet_case

        m, x, b, t = googlenet_case(a.images, a.size)
        if a.float64:
            m, x, b = m.double(), x.double(), b.double()
        table(f"googlenet (lively, ReLU, {a.size}px)", m, x, b, t, "inception4d", a.points, 32)


if __name__ == "__main__":
    main()
