"""Integration rules for path methods: the points alpha_k on the straight path x' + alpha (x - x').

One grid serves all path methods of a sweep (Dhamdhere et al. 2018, eq. 3 and its discretisation):
- internal influence  sum_k w_k * dF/dy(alpha_k)                      (Leino et al. 2018)
- total conductance   int_0^1 dF/dy(alpha) . y'(alpha) d alpha, a Riemann-Stieltjes integral of g = dF/dy
  against y, discretised from the samples (y_k, g_k) alone (no Jacobian-vector product is ever formed).

Rules (n = n_steps):
- riemann_left:   alphas k/n, k = 0..n; w_k = 1/n for k < n (Captum 'riemann_left' with n steps);
                  conductance sum_k g_k (y_{k+1} - y_k) (Captum LayerConductance 'riemann_trapezoid', n steps).
- trapezoid:      same n+1 points; w = 1/(2n), 1/n, ..., 1/(2n) (Captum 'riemann_trapezoid', n+1 steps);
                  conductance sum_k (g_k + g_{k+1}) / 2 (y_{k+1} - y_k): second order where the path is smooth.
- simpson:        same n+1 points, n even; w = (1, 4, 2, 4, ..., 4, 1) / (3n) (composite Simpson). Conductance
                  per panel [alpha_2i, alpha_2i+2], with d1 = y_1 - y_0 and d2 = y_2 - y_1 inside the panel,
                      g_0 (d1/2 - d2/6) + 2/3 g_1 (d1 + d2) + g_2 (d2/2 - d1/6),
                  which is both the exact integral of P_g P_y' for the quadratics P_g, P_y through the panel's
                  three samples, and one Richardson step (4 T_n - T_{n/2}) / 3 on the trapezoid sums T.
                  Fourth order where g and y are smooth in alpha (softplus, tanh, GELU, SiLU networks).
- gauss_legendre: n+1 Gauss-Legendre nodes on [0, 1] and their weights (Captum 'gausslegendre', n+1 steps);
                  conductance uses g_k over the nodes (Captum LayerConductance's default). The nodes miss
                  the end points, so its completeness delta is the largest of the rules.

Which rule to use (scripts/rule_convergence.py; results/benchmarks/rule_convergence_cpu.txt). Relative
completeness delta |sum_u cond_u - (F(x) - F(x'))| / |F(x) - F(x')| against n:
- smooth networks (tanh layer + softplus head, a SiLU CNN; float64): orders 1 / 2 / 4 for riemann_left /
  trapezoid / simpson, and ~1 for gauss_legendre (its conductance misses the end intervals). SiLU CNN at 33
  points, median delta: left 5.7e-3, trapezoid 2.4e-6, simpson 5.1e-10, gauss_legendre 6.8e-3.
- ReLU networks: y(alpha) is piecewise linear and g(alpha) piecewise constant, so every rule is exact on an
  interval without a kink and only the intervals holding kinks err: all rules are first order (measured
  0.3-1.5). The constants differ: trained digits_cnn at relu2, 65 points, max delta left 0.81 %, trapezoid
  0.39 %, simpson 0.31 %, gauss_legendre 0.71 %; random unit-scale GoogLeNet at inception4d (112 px), max delta
  at 17 points: left 3.2 %, trapezoid 0.66 %, simpson 0.62 %, gauss_legendre 3.4 %, and at 129-257 points
  trapezoid is the best (0.022 % vs simpson 0.045 %). The trapezoid's error per kink has mean zero over the
  kink's position, the left rule's does not.
So: `trapezoid` is the default (best or near-best everywhere); `simpson` is kept for smooth networks (GELU,
SiLU, softplus, tanh), where it needs far fewer points, and because on ReLU nets it reaches a 1 % delta with
fewer points under `n_steps: auto` (scripts/bench_steps.py: 4640 against 6640 points on 256 digits, 72
against 80 on 8 GoogLeNet images), with per-unit errors no larger than the trapezoid's;
`riemann_left` and `gauss_legendre` stay only for agreement with Captum and the papers. Trapezoid end
corrections (Gregory) were considered and not added: the Stieltjes trapezoid's leading error,
h^2/12 int (g' y'' - g'' y') d alpha, is not a pure end-point term, so end corrections cannot raise its
order (Simpson does), and on ReLU nets the error sits at interior kinks anyway.
riemann_left, trapezoid and simpson use nested grids (n -> 2n adds the midpoints), so `n_steps: auto`
(path.adaptive_sweep) refines them without evaluating any point twice; gauss_legendre cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES = ("riemann_left", "trapezoid", "simpson", "gauss_legendre")
NESTED_RULES = ("riemann_left", "trapezoid", "simpson")  # equally spaced k/n: refinable by doubling n


@dataclass(frozen=True)
class Grid:
    """Points of one sweep: `alphas` ascending, influence weights, and the conductance flavour."""

    alphas: tuple[float, ...]
    weights: tuple[float, ...]
    conductance: str  # "left", "trapezoid" or "simpson" (see the module docstring)

    @property
    def has_ends(self) -> bool:
        """Whether alpha = 0 and alpha = 1 are on the grid (F(x'), F(x), y(x) come for free)."""
        return self.alphas[0] == 0.0 and self.alphas[-1] == 1.0

    @property
    def n_steps(self) -> int:
        """The rule's n: intervals of an equally spaced grid, nodes - 1 for Gauss-Legendre."""
        return len(self.alphas) - 1


def make_grid(rule: str, n_steps: int) -> Grid:
    """The grid of `rule` with `n_steps` intervals (see the module docstring)."""
    if n_steps == "auto":
        from neuronimp.errors import UsageError

        raise UsageError("attribution.n_steps = 'auto' chooses the steps per input for the path methods "
                         "(activation, grad_x_act, internal_influence, conductance); this computation needs a "
                         "number: set attribution.n_steps")
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    n = n_steps
    if rule in NESTED_RULES:
        alphas = tuple(k / n for k in range(n + 1))
        if rule == "riemann_left":
            weights = tuple([1.0 / n] * n + [0.0])
            return Grid(alphas, weights, "left")
        if rule == "trapezoid":
            weights = tuple([0.5 / n] + [1.0 / n] * (n - 1) + [0.5 / n])
            return Grid(alphas, weights, "trapezoid")
        if n % 2:
            raise ValueError(f"rule simpson needs an even n_steps, got {n}")
        weights = tuple((1.0 if k in (0, n) else 4.0 if k % 2 else 2.0) / (3 * n) for k in range(n + 1))
        return Grid(alphas, weights, "simpson")
    if rule == "gauss_legendre":
        x, w = np.polynomial.legendre.leggauss(n + 1)
        return Grid(tuple(float(a) for a in 0.5 * (x + 1)), tuple(float(v) for v in 0.5 * w), "left")
    raise ValueError(f"unknown integration rule {rule!r}; allowed: {', '.join(RULES)}")


def suggest_steps(rule: str, n_steps: int, delta: float, tolerance: float) -> int:
    """The n_steps that should bring |delta| under `tolerance`, assuming first-order convergence.

    ReLU networks make the path piecewise linear, so every rule is only first order in general:
    the estimate n * |delta| / tolerance is deliberately conservative. A NaN or infinite delta has
    no such n (more steps cannot fix non-finite scores): ValueError, which `check_delta` never lets happen.
    """
    if not np.isfinite(delta):
        raise ValueError(f"no step count can bring a non-finite delta ({delta}) under the tolerance")
    if tolerance <= 0 or abs(delta) <= tolerance:
        return n_steps
    n = int(np.ceil(n_steps * abs(delta) / tolerance))
    return n + n % 2 if rule == "simpson" else n
