"""Integration rules for path methods: the points alpha_k on the straight path x' + alpha (x - x').

One grid serves all path methods of a sweep (Dhamdhere et al. 2018, eq. 3 and its discretisation):
- internal influence  sum_k w_k * dF/dy(alpha_k)                      (Leino et al. 2018)
- total conductance   sum_k c_k(g) * (y(alpha_{k+1}) - y(alpha_k))    (Dhamdhere et al. eq. 3; Shrikumar et al.)
  with c_k(g) = g_k (left Riemann-Stieltjes, the paper's formula) or (g_k + g_{k+1}) / 2 (trapezoid).

Rules (n = n_steps):
- riemann_left:   alphas k/n, k = 0..n; w_k = 1/n for k < n (Captum 'riemann_left' with n steps);
                  conductance uses g_k (Captum LayerConductance 'riemann_trapezoid', n steps).
- trapezoid:      same n+1 points; w = 1/(2n), 1/n, ..., 1/(2n) (Captum 'riemann_trapezoid', n+1 steps);
                  conductance uses (g_k + g_{k+1}) / 2, second-order accurate where the path is smooth.
- gauss_legendre: n+1 Gauss-Legendre nodes on [0, 1] and their weights (Captum 'gausslegendre', n+1 steps);
                  conductance uses g_k over the nodes (Captum LayerConductance's default). The nodes miss
                  the end points, so its completeness delta is the largest of the three.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES = ("riemann_left", "trapezoid", "gauss_legendre")


@dataclass(frozen=True)
class Grid:
    """Points of one sweep: `alphas` ascending, influence weights, and the conductance flavour."""

    alphas: tuple[float, ...]
    weights: tuple[float, ...]
    conductance: str  # "left" or "trapezoid"

    @property
    def has_ends(self) -> bool:
        """Whether alpha = 0 and alpha = 1 are on the grid (F(x'), F(x), y(x) come for free)."""
        return self.alphas[0] == 0.0 and self.alphas[-1] == 1.0


def make_grid(rule: str, n_steps: int) -> Grid:
    """The grid of `rule` with `n_steps` intervals (see the module docstring)."""
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    n = n_steps
    if rule in ("riemann_left", "trapezoid"):
        alphas = tuple(k / n for k in range(n + 1))
        if rule == "riemann_left":
            weights = tuple([1.0 / n] * n + [0.0])
            return Grid(alphas, weights, "left")
        weights = tuple([0.5 / n] + [1.0 / n] * (n - 1) + [0.5 / n])
        return Grid(alphas, weights, "trapezoid")
    if rule == "gauss_legendre":
        x, w = np.polynomial.legendre.leggauss(n + 1)
        return Grid(tuple(float(a) for a in 0.5 * (x + 1)), tuple(float(v) for v in 0.5 * w), "left")
    raise ValueError(f"unknown integration rule {rule!r}; allowed: {', '.join(RULES)}")


def suggest_steps(rule: str, n_steps: int, delta: float, tolerance: float) -> int:
    """The n_steps that should bring |delta| under `tolerance`, assuming first-order convergence.

    ReLU networks make the path piecewise linear, so even the trapezoid rule is only first order in
    general: the estimate n * |delta| / tolerance is deliberately conservative. A NaN or infinite delta has
    no such n (more steps cannot fix non-finite scores): ValueError, which `check_delta` never lets happen.
    """
    if not np.isfinite(delta):
        raise ValueError(f"no step count can bring a non-finite delta ({delta}) under the tolerance")
    if tolerance <= 0 or abs(delta) <= tolerance:
        return n_steps
    return int(np.ceil(n_steps * abs(delta) / tolerance))
