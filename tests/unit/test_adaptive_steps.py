"""`n_steps: auto` (path.adaptive_sweep) and the Simpson rule, in float64 on toy nets.

Oracles: a fixed path_sweep at each input's final n (to 1e-10), the analytic conductance of a separable
smooth net, Captum's InternalInfluence, and a literal Richardson step on trapezoid sums.
"""
from __future__ import annotations

import math

import pytest
import torch
from captum.attr import InternalInfluence
from torch import nn

from neuronimp.methods.grid import make_grid
from neuronimp.methods.path import PATH_METHODS, adaptive_sweep, path_sweep, sweep_probe
from tests.conftest import toy_cnn

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = ["1", "3"]


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Five inputs x' + scale * noise, scale 0, 1e-3, 1, 3, 10 (input 0 IS its baseline; input 1 stays in one
    linear region of the ReLU net, so every rule is exact for it), baselines 0.1 * (i + 1), targets."""
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.0, 1e-3, 1.0, 3.0, 10.0], dtype=torch.float64).view(5, 1, 1, 1)
    b = 0.1 * torch.arange(1, 6, dtype=torch.float64).view(5, 1, 1, 1).expand(5, 2, 8, 8).clone()
    x = b + scale * torch.randn(5, 2, 8, 8, generator=g, dtype=torch.float64)
    return x, b, torch.tensor([0, 1, 2, 0, 1])


def _same_as_fixed(m: nn.Module, x: torch.Tensor, b: torch.Tensor, t: torch.Tensor, r, rule: str) -> None:  # noqa: ANN001
    """Every input of `r` equals path_sweep at that input's steps, to 1e-10."""
    for i in range(x.shape[0]):
        s = slice(i, i + 1)
        f = path_sweep(m, x[s], b[s], t[s], LAYERS, list(PATH_METHODS), make_grid(rule, int(r.steps[i])), 5)
        assert set(f.scores) == set(r.scores)
        for k in f.scores:
            torch.testing.assert_close(r.scores[k][s], f.scores[k], atol=1e-10, rtol=0)
        for l in LAYERS:
            torch.testing.assert_close(r.deltas[l][s], f.deltas[l], atol=1e-10, rtol=0)
        torch.testing.assert_close(r.f_input[s], f.f_input, atol=1e-10, rtol=0)
        torch.testing.assert_close(r.f_baseline[s], f.f_baseline, atol=1e-10, rtol=0)


@pytest.mark.parametrize("rule", ["riemann_left", "trapezoid", "simpson"])
def test_auto_equals_fixed_sweep_at_final_steps(rule: str) -> None:
    m = toy_cnn()
    x, b, t = _inputs()
    r = adaptive_sweep(m, x, b, t, LAYERS, list(PATH_METHODS), rule=rule, tolerance=0.01, step_chunk=3,
                       start_steps=2, max_steps=512)
    assert len(set(r.steps.tolist())) > 1  # the point of doing it per input
    _same_as_fixed(m, x, b, t, r, rule)


def test_auto_with_probe_equals_plain() -> None:
    m = toy_cnn()
    x, b, t = _inputs()
    probe = sweep_probe(m, LAYERS, x[:1], {})
    assert probe is not None
    fast = adaptive_sweep(m, x, b, t, LAYERS, list(PATH_METHODS), step_chunk=4, probe=probe, start_steps=4)
    plain = adaptive_sweep(m, x, b, t, LAYERS, list(PATH_METHODS), step_chunk=4, start_steps=4)
    assert torch.equal(fast.steps, plain.steps)
    for k in plain.scores:
        torch.testing.assert_close(fast.scores[k], plain.scores[k], atol=1e-12, rtol=0)


@pytest.mark.parametrize("tolerance,max_steps", [(0.01, 512), (0.002, 512), (1e-9, 16)])
def test_every_delta_below_tolerance_or_steps_at_max(tolerance: float, max_steps: int) -> None:
    m = toy_cnn()
    x, b, t = _inputs()
    r = adaptive_sweep(m, x, b, t, LAYERS, ["conductance"], tolerance=tolerance, start_steps=2, max_steps=max_steps)
    gap = (r.f_input - r.f_baseline).abs()
    assert float(gap[0]) == 0.0 and int(r.steps[0]) == 2  # x = x': converged on the absolute threshold at once
    for i in range(1, 5):
        ok = all(float(r.deltas[l][i].abs()) <= tolerance * float(gap[i]) for l in LAYERS)
        assert ok or int(r.steps[i]) == max_steps, (i, int(r.steps[i]))
        if int(r.steps[i]) > 2:  # and it stopped at the first doubling that met the tolerance
            half = path_sweep(m, x[i : i + 1], b[i : i + 1], t[i : i + 1], LAYERS, ["conductance"],
                              make_grid("trapezoid", int(r.steps[i]) // 2))
            assert any(float(half.deltas[l].abs()) > tolerance * float(gap[i]) for l in LAYERS)
    if tolerance == 1e-9:
        assert r.steps[2:].tolist() == [16] * 3
    # an input whose path crosses no kink is done at once; the others need more: steps are per input
    assert int(r.steps[1]) == 2
    assert int(r.steps[2:].max()) > 2


def test_max_steps_rounds_down_to_a_doubling() -> None:
    m = toy_cnn()
    x, b, t = _inputs()
    r = adaptive_sweep(m, x, b, t, LAYERS, ["conductance"], tolerance=1e-12, start_steps=3, max_steps=20)
    assert r.steps[2:].tolist() == [12] * 3


class Rows(nn.Module):
    """Counts every input row the model sees (to prove no path point is evaluated twice)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().flatten(1).clone())
        return self.inner(x)


@pytest.mark.parametrize("rule", ["trapezoid", "simpson"])
def test_no_point_is_evaluated_twice(rule: str) -> None:
    m = Rows(toy_cnn())
    x, b, t = _inputs()
    layers = ["inner.1", "inner.3"]
    r = adaptive_sweep(m, x, b, t, layers, list(PATH_METHODS), rule=rule, step_chunk=5, start_steps=2,
                       max_steps=256)
    rows = torch.cat(m.seen)
    assert rows.shape[0] == int((r.steps + 1).sum())  # input i: exactly steps_i + 1 points
    # input 0 is its own baseline (all its points coincide); every other row is a distinct point
    others = rows[~(rows == b[0].flatten()).all(1)]
    assert others.shape[0] == int((r.steps[1:] + 1).sum())
    assert torch.unique(others, dim=0).shape[0] == others.shape[0]


def test_auto_rejects_gauss_legendre_and_odd_simpson() -> None:
    m = toy_cnn()
    x, b, t = _inputs()
    with pytest.raises(ValueError, match="nested"):
        adaptive_sweep(m, x, b, t, LAYERS, ["conductance"], rule="gauss_legendre")
    with pytest.raises(ValueError, match="even"):
        adaptive_sweep(m, x, b, t, LAYERS, ["conductance"], rule="simpson", start_steps=3)
    with pytest.raises(ValueError, match="even"):
        make_grid("simpson", 5)


def test_fixed_sweep_reports_its_steps() -> None:
    m = toy_cnn()
    x, b, t = _inputs()
    r = path_sweep(m, x, b, t, LAYERS, ["conductance"], make_grid("gauss_legendre", 7))
    assert r.steps.tolist() == [7] * 5


# ---- the Simpson rule on a smooth net with an analytic answer ----------------------------------------------


class SoftplusHead(nn.Module):
    """F = sum_u v_u softplus(y_u), the same for both classes: dF/dy_u depends on y_u alone."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.v = nn.Parameter(v)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (nn.functional.softplus(y) * self.v).sum(-1, keepdim=True).repeat(1, 2)


def _smooth() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = tanh(W x + c) at layer '1', then the softplus head. Since g_u = v_u sigmoid(y_u), the total
    conductance of unit u is int v_u sigmoid(y_u) dy_u = v_u (softplus(y_u(x)) - softplus(y_u(x'))) exactly."""
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), SoftplusHead(torch.randn(7, generator=g))).double().eval()
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(7, 5, generator=g) * 2)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64) * 2
    b = torch.zeros_like(x)
    with torch.no_grad():
        exact = (nn.functional.softplus(m[1](m[0](x))) - nn.functional.softplus(m[1](m[0](b)))) * m[2].v
    return m, x, b, torch.zeros(4, dtype=torch.long), exact


def _order(rule: str, ns: tuple[int, int]) -> float:
    """Observed order of the per-unit conductance error between n = ns[0] and ns[1]."""
    m, x, b, t, exact = _smooth()
    err = []
    for n in ns:
        c = path_sweep(m, x, b, t, ["1"], ["conductance"], make_grid(rule, n)).scores[("1", "conductance")]
        err.append(float((c - exact).abs().max()))
    return -math.log(err[1] / err[0]) / math.log(ns[1] / ns[0])


def test_convergence_orders_on_a_smooth_net() -> None:
    assert 0.9 < _order("riemann_left", (64, 256)) < 1.1
    assert 1.9 < _order("trapezoid", (64, 256)) < 2.1
    assert 3.7 < _order("simpson", (64, 256)) < 4.3


def test_simpson_matches_the_analytic_conductance_and_captum_influence() -> None:
    m, x, b, t, exact = _smooth()
    r = path_sweep(m, x, b, t, ["1"], list(PATH_METHODS), make_grid("simpson", 512))
    torch.testing.assert_close(r.scores[("1", "conductance")], exact, atol=1e-8, rtol=0)
    assert float(r.deltas["1"].abs().max()) < 1e-8
    # internal influence int g(alpha) d alpha: Captum's Gauss-Legendre at 200 nodes is converged for this net
    want = InternalInfluence(m, m[1]).attribute(x, b, target=t, n_steps=200, method="gausslegendre")
    torch.testing.assert_close(r.scores[("1", "internal_influence")], want, atol=1e-8, rtol=0)
    trap = path_sweep(m, x, b, t, ["1"], ["internal_influence"], make_grid("trapezoid", 512))
    assert float((trap.scores[("1", "internal_influence")] - want).abs().max()) > 1e-7  # Simpson is the better


def test_simpson_conductance_is_one_richardson_step_on_trapezoid() -> None:
    # (4 T_n - T_{n/2}) / 3 with T the trapezoid Riemann-Stieltjes sums: a literal second derivation
    m = toy_cnn()
    x, b, t = _inputs()
    for n in (2, 6, 10):
        s = path_sweep(m, x, b, t, LAYERS, ["conductance"], make_grid("simpson", n))
        tn = path_sweep(m, x, b, t, LAYERS, ["conductance"], make_grid("trapezoid", n))
        th = path_sweep(m, x, b, t, LAYERS, ["conductance"], make_grid("trapezoid", n // 2))
        for l in LAYERS:
            k = (l, "conductance")
            torch.testing.assert_close(s.scores[k], (4 * tn.scores[k] - th.scores[k]) / 3, atol=1e-10, rtol=0)
