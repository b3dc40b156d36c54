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
Completeness (Dhamdhere et al. prop. 1): sum_u conductance_u -> F(x) - F(x') as n_steps grows; the
difference is returned as `delta` for each input.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from neuronimp.hooks import capture, frozen
from neuronimp.methods.grid import Grid
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


def _chunks(seq: list[float], size: int) -> list[list[float]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


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
    cond = {l: 0.0 for l in layers}
    prev: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    k_global = 0
    with frozen(model), capture(model, layers) as out, torch.enable_grad():
        for alphas in _chunks(points, step_chunk):
            c = len(alphas)
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
            f = f.detach().view(c, B)
            for li, l in enumerate(layers):
                y = ys[li].detach().view(c, B, *ys[li].shape[1:])
                g = gs[li].view(c, B, *ys[li].shape[1:]) if gs[li] is not None else torch.zeros_like(y)
                for j in range(c):
                    k = k_global + j
                    yk, gk = y[j], g[j]
                    if points[k] == 1.0 and ("activation" in want or "grad_x_act" in want):
                        res.scores[(l, "activation")] = reduce_units(yk, axes[l])
                        res.scores[(l, "grad_x_act")] = reduce_units(yk * gk, axes[l])
                    if not needs_path or k not in chain:
                        continue
                    inf[l] = inf[l] + weights[k] * reduce_units(gk, axes[l])
                    if l in prev:
                        py, pg = prev[l]
                        gbar = pg if grid.conductance == "left" else 0.5 * (pg + gk)
                        cond[l] = cond[l] + reduce_units(gbar * (yk - py), axes[l])
                    prev[l] = (yk, gk)
            for j in range(c):
                if points[k_global + j] == 0.0 and res.f_baseline is None:
                    res.f_baseline = f[j]
                if points[k_global + j] == 1.0:
                    res.f_input = f[j]
            k_global += c
    for l in layers:
        if "internal_influence" in want:
            res.scores[(l, "internal_influence")] = inf[l]
        if "conductance" in want:
            res.scores[(l, "conductance")] = cond[l]
            res.deltas[l] = cond[l].sum(1) - (res.f_input - res.f_baseline)
    res.scores = {k: v for k, v in res.scores.items() if k[1] in want}
    return res


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
