"""Literal conductance oracle: Dhamdhere et al. 2018, eq. 2 and 3, neuron by neuron, for every integration rule of
`methods/grid.py`, against the engine's one-sweep conductance (`path.path_sweep`), float64, 1e-6 relative.

Per hidden neuron y and input feature i (eq. 2), summed over i (eq. 3) and over a unit's positions:
    Cond^y = sum_i (x_i - x'_i) int_0^1 dF/dy(a) dy/dx_i(a) da,    a = x' + alpha (x - x')
The engine discretises as Shrikumar et al. 2018 do: on each interval [alpha_k, alpha_k+1] of the rule's grid it
holds dF/dy at one value gbar_k and integrates the rest exactly, since
    sum_i (x_i - x'_i) int_{alpha_k}^{alpha_k+1} dy/dx_i da = y(alpha_k+1) - y(alpha_k),
with gbar_k = dF/dy(alpha_k) (riemann_left, gauss_legendre over its nodes) or the mean of both ends (trapezoid).
The oracle does the same discretisation of the outer integral, but the inner one literally: the Jacobian dy/dx_i of
every neuron (torch.func.jacrev, at every quadrature point), times (x_i - x'_i), summed over the features i, integrated by
8-point Gauss-Legendre on each interval. The net is smooth (tanh, softplus), so that quadrature is exact to ~1e-13
and any difference is the engine's. The grids are rebuilt here from their definitions, not taken from grid.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neuronimp.methods.grid import RULES, make_grid
from neuronimp.methods.path import path_sweep, sweep_probe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
N = 6  # intervals


def smooth_cnn() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3)).double().eval()


def grid(rule: str) -> tuple[list[float], str]:
    """The points alpha_0 < ... < alpha_n of a rule and how dF/dy is held on each interval (see module doc)."""
    if rule == "riemann_left":
        return [k / N for k in range(N + 1)], "left"
    if rule == "trapezoid":
        return [k / N for k in range(N + 1)], "mean"
    if rule == "simpson":  # panels of two intervals; dF/dy and y both as the quadratic through the panel's points
        return [k / N for k in range(N + 1)], "quadratic"
    if rule == "gauss_legendre":  # N + 1 Gauss-Legendre nodes on [0, 1]; the end intervals are not covered
        nodes, _ = np.polynomial.legendre.leggauss(N + 1)
        return [float(0.5 * (v + 1)) for v in nodes], "left"
    raise ValueError(rule)


def conductance_oracle(net: nn.Sequential, cut: int, x: torch.Tensor, xb: torch.Tensor, t: int, rule: str
                       ) -> torch.Tensor:
    """Total conductance of each unit (channel) of the output of net[:cut] for one input x [C, H, W]."""
    prefix, suffix = net[:cut], net[cut:]
    dx = (x - xb).flatten()  # x_i - x'_i

    def y_of(inp: torch.Tensor) -> torch.Tensor:  # one path point [C, H, W] -> the layer's neurons, flattened
        return prefix(inp.unsqueeze(0)).flatten()

    def dfdy(alphas: list[float]) -> torch.Tensor:  # dF/dy of every neuron at each path point, [points, neurons]
        a = torch.tensor(alphas, dtype=x.dtype).view(-1, 1, 1, 1)
        y = prefix(xb + a * (x - xb)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(suffix(y)[:, t].sum(), y)  # the points are independent rows
        return g.flatten(1)

    def dydx(alphas: list[float]) -> torch.Tensor:  # the Jacobian dy_n/dx_i at each path point, [points, n, i]
        a = torch.tensor(alphas, dtype=x.dtype).view(-1, 1, 1, 1)
        return torch.func.vmap(torch.func.jacrev(y_of))(xb + a * (x - xb)).flatten(2)

    alphas, hold = grid(rule)
    nodes, weights = np.polynomial.legendre.leggauss(8)
    g = dfdy(alphas)
    if hold == "quadratic":  # Simpson: int g_q(a) y_q'(a) da on each panel, g_q and y_q Lagrange quadratics
        ys = torch.stack([y_of(xb + a * (x - xb)) for a in alphas]).detach()  # [points, neurons]
        cond = torch.zeros(g.shape[1], dtype=x.dtype)
        for m in range(0, len(alphas) - 1, 2):
            a3 = alphas[m : m + 3]
            for v, w in zip(nodes, weights):
                a = a3[0] + (a3[2] - a3[0]) * 0.5 * (v + 1)
                basis = [np.prod([(a - a3[o]) / (a3[j] - a3[o]) for o in range(3) if o != j]) for j in range(3)]
                slope = [sum(np.prod([(a - a3[o]) / (a3[j] - a3[o]) for o in range(3) if o not in (j, d)])
                             / (a3[j] - a3[d]) for d in range(3) if d != j) for j in range(3)]
                gq = sum(float(basis[j]) * g[m + j] for j in range(3))
                dyq = sum(float(slope[j]) * ys[m + j] for j in range(3))
                cond += 0.5 * (a3[2] - a3[0]) * float(w) * gq * dyq
        return cond.view(prefix(x.unsqueeze(0)).shape[1:]).flatten(1).sum(1)
    sub = [lo + (hi - lo) * 0.5 * (v + 1) for lo, hi in zip(alphas, alphas[1:]) for v in nodes]
    jac = dydx(sub).view(len(alphas) - 1, len(nodes), g.shape[1], dx.numel())  # [interval, node, neuron, i]
    shape = prefix(x.unsqueeze(0)).shape[1:]
    cond = torch.zeros(g.shape[1], dtype=x.dtype)
    for k in range(len(alphas) - 1):
        h = alphas[k + 1] - alphas[k]
        gbar = g[k] if hold == "left" else 0.5 * (g[k] + g[k + 1])
        inner = torch.zeros_like(cond)  # per neuron: sum_i (x_i - x'_i) int_{alpha_k}^{alpha_k+1} dy/dx_i da
        for j, w in enumerate(weights):
            inner += 0.5 * h * float(w) * torch.einsum("ni,i->n", jac[k, j], dx)  # sum over the features i
        cond += gbar * inner  # each neuron: dF/dy held on the interval, times its integrated change
    return cond.detach().view(shape).flatten(1).sum(1)  # a unit is a channel: sum over its positions


@pytest.mark.parametrize("rule", RULES)
def test_conductance_matches_the_per_neuron_formula(rule: str) -> None:
    net = smooth_cnn()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=g)
    xb = 0.3 * torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=g)
    t = torch.tensor([0, 2])
    layers = {"1": 2, "3": 4}  # layer name -> the cut index (net[:cut] ends at that layer)
    plain = path_sweep(net, x, xb, t, list(layers), ["conductance"], make_grid(rule, N), step_chunk=3)
    probe = sweep_probe(net, list(layers), x[:1], {})
    assert probe is not None
    fast = path_sweep(net, x, xb, t, list(layers), ["conductance"], make_grid(rule, N), step_chunk=5, probe=probe)
    for layer, cut in layers.items():
        want = torch.stack([conductance_oracle(net, cut, x[i], xb[i], int(t[i]), rule) for i in range(2)])
        scale = float(want.abs().max())
        for res in (plain, fast):
            torch.testing.assert_close(res.scores[(layer, "conductance")], want, atol=1e-6 * scale, rtol=1e-6)


def test_the_oracle_converges_to_the_exact_integral() -> None:
    # Sanity of the oracle itself: with many intervals the rules approach the same total conductance, and the
    # trapezoid rule (second order on a smooth path) gets there first. At the tanh layer (cut 2) dF/dy varies.
    net = smooth_cnn()
    x = torch.randn(2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    xb = torch.zeros_like(x)
    global N
    saved = N
    try:
        N = 24
        fine = conductance_oracle(net, 2, x, xb, 1, "trapezoid")
        N = 4
        coarse = {r: conductance_oracle(net, 2, x, xb, 1, r) for r in ("riemann_left", "trapezoid")}
    finally:
        N = saved
    err = {r: float((c - fine).abs().max()) for r, c in coarse.items()}
    assert err["trapezoid"] < err["riemann_left"] / 5
