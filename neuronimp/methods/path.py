"""The one sweep: activation, gradient x activation, internal influence and total conductance for many
layers from ONE set of forward+backward passes along the straight input path x' + alpha (x - x').

Written by hand rather than by calling Captum's LayerConductance/InternalInfluence once per (layer,
method): those repeat the whole interpolation for every call, while all four quantities are functions of
the same y_l(alpha_k) and dF/dy_l(alpha_k). Captum stays the oracle in the tests.

Per unit u of layer l (sum over the unit's positions p: the pixels of a channel, the tokens of a feature, the
features of a token; `methods/units.py`; Dhamdhere et al. 2018, eq. 3):
  activation          sum_p y_p(x)
  grad_x_act          sum_p y_p(x) * dF/dy_p(x)
  internal_influence  sum_p sum_k w_k dF/dy_p(alpha_k)                              (Leino et al. 2018)
  conductance         sum_p sum_k c_k(dF/dy_p) * (y_p(alpha_{k+1}) - y_p(alpha_k))   (Dhamdhere et al. eq. 3)
                      (the Simpson rule uses panels of three points instead; see grid.py)
Completeness (Dhamdhere et al. prop. 1): sum_u conductance_u -> F(x) - F(x') as n_steps grows; the
difference is returned as `delta` for each input.

`path_sweep` runs one fixed grid. `adaptive_sweep` (`n_steps: auto`) doubles n per input on the nested
equally spaced grids until the completeness delta of every layer is within a tolerance, evaluating only the
new midpoints at each doubling, and returns for each input exactly what `path_sweep` returns at that
input's final n.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from neuronimp.hooks import capture, frozen
from neuronimp.methods.grid import NESTED_RULES, Grid, make_grid
from neuronimp.methods.units import layer_layouts, reduce_units
from neuronimp.probe import Probe

PATH_METHODS = ("activation", "grad_x_act", "internal_influence", "conductance")


def unit_sum(t: torch.Tensor) -> torch.Tensor:
    """[B, C, *positions] -> [B, C]: channel units (`units.reduce_units(t, "channel")`)."""
    return reduce_units(t, "channel")


@dataclass
class PathResult:
    """Scores per (layer, method) as [B, U]; conductance completeness delta per layer as [B]."""

    scores: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    f_input: torch.Tensor | None = None  # F(x), [B]
    f_baseline: torch.Tensor | None = None  # F(x'), [B]
    steps: torch.Tensor | None = None  # n_steps used for each input, [B] int64 (all equal for a fixed grid)


class Stieltjes:
    """The conductance sum of one layer, fed the samples (y_k, g_k) in ascending alpha; `total` is [B, U].

    axis: the layer's unit axis (channel | feature | token, `units.py`): what each term is summed over.
    """

    def __init__(self, flavour: str, axis: str = "channel") -> None:
        if flavour not in ("left", "trapezoid", "simpson"):
            raise ValueError(f"unknown conductance flavour {flavour!r}")
        self.flavour = flavour
        self.axis = axis
        self.total: torch.Tensor | float = 0.0
        self._prev: list[tuple[torch.Tensor, torch.Tensor]] = []

    def push(self, y: torch.Tensor, g: torch.Tensor) -> None:
        """Add the next sample: y and g = dF/dy at the next alpha, both [B, *layer shape]."""
        if self.flavour == "simpson":
            self._prev.append((y, g))
            if len(self._prev) == 3:  # one panel: integral of P_g P_y' for the quadratics through 3 samples
                (y0, g0), (y1, g1), (y2, g2) = self._prev
                d1, d2 = y1 - y0, y2 - y1
                panel = g0 * (d1 / 2 - d2 / 6) + (2 / 3) * g1 * (d1 + d2) + g2 * (d2 / 2 - d1 / 6)
                self.total = self.total + reduce_units(panel, self.axis)
                self._prev = [self._prev[2]]
            return
        if self._prev:
            py, pg = self._prev[0]
            gbar = pg if self.flavour == "left" else 0.5 * (pg + g)
            self.total = self.total + reduce_units(gbar * (y - py), self.axis)
        self._prev = [(y, g)]


def _chunks(seq: list[float], size: int) -> list[list[float]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def path_points(
    model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, layers: list[str],
    alphas: list[float], probe: Probe | None, out: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """F, y_l and dF/dy_l at x' + alpha (x - x') for each alpha: [c, B] and lists of [c, B, *layer shape].

    Runs inside `capture(model, layers)` (its dict is `out`), `frozen(model)` and `torch.enable_grad()`.
    Under autocast the half-precision outputs come back as float32 (the network still runs in half).
    """
    B, c = x.shape[0], len(alphas)  # noqa: N806
    a = torch.tensor(alphas, dtype=x.dtype, device=x.device).view(c, *([1] * x.dim()))
    xs = (baseline.unsqueeze(0) + a * (x - baseline).unsqueeze(0)).reshape(c * B, *x.shape[1:])
    out.clear()
    if probe is not None:
        with torch.no_grad():
            first = probe.prefix(xs)
        first.requires_grad_(True)
        out[probe.layer] = first
        logits = probe.suffix(first)
    else:
        xs.requires_grad_(True)  # builds the graph; no gradient w.r.t. xs is ever computed
        logits = model(xs)
    f = logits.gather(1, target.repeat(c).unsqueeze(1)).squeeze(1)  # [c*B], alpha-major
    missing = [l for l in layers if l not in out]
    if missing:
        raise RuntimeError(f"layers {missing} were not reached by the forward pass")
    ys = [out[l] for l in layers]
    gs = torch.autograd.grad(f.sum(), ys, allow_unused=True)
    yv = [_wide(y.detach()).view(c, B, *y.shape[1:]) for y in ys]
    gv = [_wide(g).view_as(y) if g is not None else torch.zeros_like(y) for g, y in zip(gs, yv)]
    return _wide(f.detach()).view(c, B), yv, gv


def _wide(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (autocast) -> float32, so the sums over steps and positions are not rounded to 8 bits."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def path_sweep(
    model: nn.Module,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    layers: list[str],
    methods: list[str],
    grid: Grid,
    step_chunk: int = 16,
    probe: Probe | None = None,
    axes: Mapping[str, str] | None = None,
) -> PathResult:
    """Compute the requested path methods for all `layers` in one chunked sweep (see module doc).

    axes: the unit axis of each layer (channel | feature | token); None: each layer's default (`units.py`).

    With a `probe` cut at the earliest of `layers` (fx mode), the part of the network before it runs
    without autograd and the backward pass starts there: same numbers, less work and memory.
    """
    B = x.shape[0]  # noqa: N806
    if axes is None:
        axes = {l: lay.axis for l, lay in layer_layouts(model, layers, x[:1]).items()}
    baseline = baseline.expand_as(x)
    want = set(methods) & set(PATH_METHODS)
    needs_path = bool(want & {"internal_influence", "conductance"})
    if needs_path:
        points = list(grid.alphas)
        weights = list(grid.weights)
        if not grid.has_ends:  # F(x'), F(x), y(x) and dF/dy(x) need the end points
            points, weights = [0.0, 1.0] + points, [0.0, 0.0] + weights
    else:
        points, weights = [1.0], [0.0]
    chain = set(range(len(points))) if grid.has_ends or not needs_path else set(range(2, len(points)))

    res = PathResult()
    inf = {l: 0.0 for l in layers}
    cond = {l: Stieltjes(grid.conductance, axes[l]) for l in layers}
    k_global = 0
    with frozen(model), capture(model, layers) as out, torch.enable_grad():
        for alphas in _chunks(points, step_chunk):
            f, ys, gs = path_points(model, x, baseline, target, layers, alphas, probe, out)
            for li, l in enumerate(layers):
                for j in range(len(alphas)):
                    k = k_global + j
                    yk, gk = ys[li][j], gs[li][j]
                    if points[k] == 1.0 and ("activation" in want or "grad_x_act" in want):
                        res.scores[(l, "activation")] = reduce_units(yk, axes[l])
                        res.scores[(l, "grad_x_act")] = reduce_units(yk * gk, axes[l])
                    if not needs_path or k not in chain:
                        continue
                    inf[l] = inf[l] + weights[k] * reduce_units(gk, axes[l])
                    cond[l].push(yk, gk)
            for j in range(len(alphas)):
                if points[k_global + j] == 0.0 and res.f_baseline is None:
                    res.f_baseline = f[j]
                if points[k_global + j] == 1.0:
                    res.f_input = f[j]
            k_global += len(alphas)
    for l in layers:
        if "internal_influence" in want:
            res.scores[(l, "internal_influence")] = inf[l]
        if "conductance" in want:
            res.scores[(l, "conductance")] = cond[l].total
            res.deltas[l] = cond[l].total.sum(1) - (res.f_input - res.f_baseline)
    res.scores = {k: v for k, v in res.scores.items() if k[1] in want}
    res.steps = torch.full((B,), grid.n_steps if needs_path else 0, dtype=torch.long, device=x.device)
    return res


def relative_delta(delta: torch.Tensor, f_input: torch.Tensor, f_baseline: torch.Tensor) -> torch.Tensor:
    """|delta| / |F(x) - F(x')| per input, [B] (inf where F(x) = F(x') and delta != 0)."""
    return delta.abs() / (f_input - f_baseline).abs()


def converged(
    delta: torch.Tensor, f_input: torch.Tensor, f_baseline: torch.Tensor, tolerance: float, atol: float
) -> torch.Tensor:
    """[B] bool: |delta| <= tolerance * |F(x) - F(x')|, or |delta| <= atol (for F(x) ~ F(x'))."""
    return (delta.abs() <= tolerance * (f_input - f_baseline).abs()) | (delta.abs() <= atol)


def adaptive_sweep(
    model: nn.Module,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    layers: list[str],
    methods: list[str],
    rule: str = "trapezoid",
    tolerance: float = 0.01,
    step_chunk: int = 16,
    probe: Probe | None = None,
    start_steps: int = 8,
    max_steps: int = 1024,
    atol: float = 1e-6,
    axes: Mapping[str, str] | None = None,
) -> PathResult:
    """`path_sweep` with n chosen per input (`n_steps: auto`): n = start_steps * 2^j, the smallest for which
    every layer's completeness delta satisfies `converged(..., tolerance, atol)`, capped at the largest
    start_steps * 2^j <= max_steps.

    Each doubling evaluates only the new midpoints (2k+1)/(2n) of the active inputs, in passes of about
    step_chunk * B interpolated inputs (the batch shrinks as inputs converge, so each pass takes more
    alphas). The Stieltjes sums need each point's neighbours, so y_l and dF/dy_l of every evaluated point
    are kept per active input (memory ~ 2 (n+1) |y_l| per input and layer) and the sums are replayed over
    them at each level in `path_sweep`'s order: for each input the result equals `path_sweep` at its final
    n to rounding. `deltas` are returned whatever `methods` holds: they decide the steps. `steps` [B] is
    the n used per input; input i was evaluated at exactly steps[i] + 1 points.

    axes: the unit axis of each layer, as in `path_sweep` (None: each layer's default, `default_axes`: no extra
    forward pass unless a layer's output is 3-D).
    """
    if rule not in NESTED_RULES:
        raise ValueError(f"n_steps auto needs a nested rule ({', '.join(NESTED_RULES)}), got {rule!r}")
    if start_steps < 1 or max_steps < start_steps or (rule == "simpson" and start_steps % 2):
        raise ValueError(f"need 1 <= start_steps <= max_steps (start_steps even for simpson), got "
                         f"{start_steps}, {max_steps}")
    B = x.shape[0]  # noqa: N806
    baseline = baseline.expand_as(x)
    want = set(methods) & set(PATH_METHODS)
    flavour = make_grid(rule, start_steps).conductance
    res = PathResult(steps=torch.zeros(B, dtype=torch.long, device=x.device))
    budget = max(1, step_chunk) * B  # interpolated inputs per forward/backward pass
    idx = torch.arange(B, device=x.device)  # original index of each active input
    ys: dict[str, list[torch.Tensor]] = {l: [] for l in layers}  # per point in alpha order, [B_active, ...]
    gs: dict[str, list[torch.Tensor]] = {l: [] for l in layers}
    gu: dict[str, list[torch.Tensor]] = {l: [] for l in layers}  # reduce_units(g, axis) per point, [B_active, U]
    f0 = f1 = torch.empty(0)
    n = start_steps
    new = [k / n for k in range(n + 1)]
    with frozen(model), capture(model, layers) as out, torch.enable_grad():
        while True:
            xa, ba, ta = x[idx], baseline[idx], target[idx]
            fresh: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {l: ([], []) for l in layers}
            for alphas in _chunks(new, max(1, budget // len(idx))):
                f, yv, gv = path_points(model, xa, ba, ta, layers, alphas, probe, out)
                if axes is None:  # each layer's default, from the outputs just captured
                    axes = default_axes(model, layers, x, [y.dim() - 1 for y in yv])
                for j, a in enumerate(alphas):
                    if a == 0.0:
                        f0 = f[j]
                    if a == 1.0:  # only on the first level: idx is still everything
                        f1 = f[j]
                        res.f_input, res.f_baseline = f1, f0
                        for li, l in enumerate(layers):
                            if "activation" in want:
                                res.scores[(l, "activation")] = reduce_units(yv[li][j], axes[l])
                            if "grad_x_act" in want:
                                res.scores[(l, "grad_x_act")] = reduce_units(yv[li][j] * gv[li][j], axes[l])
                    for li, l in enumerate(layers):
                        fresh[l][0].append(yv[li][j])
                        fresh[l][1].append(gv[li][j])
            for l in layers:  # interleave the midpoints with the points already held
                fy, fg = fresh[l]
                fu = [reduce_units(g, axes[l]) for g in fg]
                if ys[l]:
                    ys[l] = _interleave(ys[l], fy)
                    gs[l] = _interleave(gs[l], fg)
                    gu[l] = _interleave(gu[l], fu)
                else:
                    ys[l], gs[l], gu[l] = fy, fg, fu
            weights = make_grid(rule, n).weights
            done = torch.ones(len(idx), dtype=torch.bool, device=x.device)
            level: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
            for l in layers:  # replay the sums in path_sweep's order
                inf: torch.Tensor | float = 0.0
                cond = Stieltjes(flavour, axes[l])
                for k in range(n + 1):
                    inf = inf + weights[k] * gu[l][k]
                    cond.push(ys[l][k], gs[l][k])
                d = cond.total.sum(1) - (f1 - f0)
                level[l] = (inf, cond.total, d)
                done &= converged(d, f1, f0, tolerance, atol)
            if 2 * n > max_steps:
                done[:] = True
            if bool(done.any()):
                at = idx[done]
                res.steps[at] = n
                for l, (inf, cond_total, d) in level.items():
                    _put(res.deltas, l, at, d[done], B)
                    if "internal_influence" in want:
                        _put(res.scores, (l, "internal_influence"), at, inf[done], B)
                    if "conductance" in want:
                        _put(res.scores, (l, "conductance"), at, cond_total[done], B)
            if bool(done.all()):
                break
            keep = ~done
            idx, f0, f1 = idx[keep], f0[keep], f1[keep]
            for store in (ys, gs, gu):
                for l in layers:
                    store[l] = [t[keep] for t in store[l]]
            n *= 2
            new = [(2 * k + 1) / n for k in range(n // 2)]
    res.scores = {k: v for k, v in res.scores.items() if k[1] in want}
    return res


def default_axes(model: nn.Module, layers: list[str], x: torch.Tensor, dims: list[int]) -> dict[str, str]:
    """Each layer's default unit axis (`units.unit_axis` auto) from its output's dims (with the batch dim):
    channel from 4-D up, feature for 2-D (the same as channel there); a 3-D output ([B, C, L] or [B, tokens, F])
    needs the module types, so then `units.layer_layouts` decides (one capture pass on x[:1], cached)."""
    if any(d == 3 for d in dims):
        return {l: lay.axis for l, lay in layer_layouts(model, layers, x[:1]).items()}
    return {l: "channel" if d >= 4 else "feature" for l, d in zip(layers, dims)}


def _interleave(old: list[torch.Tensor], mids: list[torch.Tensor]) -> list[torch.Tensor]:
    """[p_0, m_0, p_1, m_1, ..., p_n]: the points of grid 2n from those of grid n and the new midpoints."""
    merged = [old[0]]
    for m, p in zip(mids, old[1:]):
        merged += [m, p]
    return merged


def _put(store: dict, key: object, at: torch.Tensor, value: torch.Tensor, B: int) -> None:  # noqa: N803
    """store[key][at] = value, allocating store[key] as [B, ...] zeros on first use."""
    if key not in store:
        store[key] = value.new_zeros((B, *value.shape[1:]))
    store[key][at] = value


def sweep_probe(model: nn.Module, layers: list[str], example: torch.Tensor, cache: dict[str, Probe],
                first: str | None = None) -> Probe | None:
    """A probe cut at the earliest of `layers` when that cut is clean (fx) and nests no other layer, else None.

    first: the layer the forward pass reaches first, when the caller knows it (else one capture pass finds it).
    """
    if first is None:
        with capture(model, layers) as out, torch.no_grad():
            model(example)
        first = next(iter(out))  # hooks fire in execution order
    if any(l != first and (l.startswith(first + ".") or first.startswith(l + ".")) for l in layers):
        return None
    key = "sweep:" + ",".join(sorted(layers))
    if key not in cache:
        try:  # the other layers stay whole modules in the suffix graph, so their hooks fire
            cache[key] = Probe(model, first, example, keep=tuple(layers))
        except Exception:  # noqa: BLE001 - no probe only means the plain (slower) sweep
            return None
    probe = cache[key]
    return probe if probe.mode == "fx" else None
