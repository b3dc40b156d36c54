"""The importance engine: every registered method for many layers, the path methods from one sweep.

`compute_scores` dispatches through the registry (`methods.spec.METHODS`); nothing here knows a method by name
except that the path methods share one sweep. Every method with a completeness or conservation property
returns its per-input delta, kept in `Scores.deltas[(layer, method)]`.

Before scoring, one cached capture pass per (model, layers) finds each layer's unit axis and refuses, with one line
naming the layer and why, a layer that cannot be scored (`methods/units.py`), for every method alike; methods
that interpolate or differentiate the input are refused for integer (token-id) inputs. Modules after a layer that a
method has no rule for (`methods/rules.py`) are named in `Scores.notes` and in the delta warning.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.hooks import not_inplace
from neuronimp.methods import catalog  # noqa: F401 - registers the built-in methods
from neuronimp.methods.grid import make_grid, suggest_steps
from neuronimp.methods.params import MethodParams
from neuronimp.methods.path import adaptive_sweep, path_sweep, sweep_probe
from neuronimp.methods.rules import gap_note
from neuronimp.methods.selectivity import LayerStats
from neuronimp.methods.spec import METHODS, MethodCall, spec
from neuronimp.methods.units import LayerLayout, UnitsChoice, layer_layouts
from neuronimp.probe import Probe


@dataclass
class Scores:
    """Scores per (layer, method) [B, U]; per-input deltas per (layer, method) [B]; F(x), F(x') [B]; the unit axis
    of each layer; per (layer, method) the module types after the layer that the method has no rule for."""

    scores: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    deltas: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    f_input: torch.Tensor | None = None
    f_baseline: torch.Tensor | None = None
    steps: torch.Tensor | None = None  # path methods: n_steps used for each input [B] (all equal unless auto)
    references: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)  # "game" methods' own [B]
    axes: dict[str, str] = field(default_factory=dict)             # layer -> channel | feature | token
    gaps: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (layer, method) -> class names

    def axis(self, layer: str) -> str:
        """The unit axis of `layer` (channel | feature | token)."""
        return self.axes.get(layer, "channel")

    @property
    def notes(self) -> list[str]:
        """One line per (layer, method) with modules the method has no rule for (rules.gap_note)."""
        return [gap_note(m, layer, names, spec(m).gaps) for (layer, m), names in self.gaps.items()]

    def delta(self, layer: str, method: str) -> torch.Tensor | None:
        """The per-input delta of (layer, method), or None when the method has none."""
        return self.deltas.get((layer, method))

    def relative_delta(self, layer: str, method: str) -> torch.Tensor | None:
        """|delta| / |reference| per input: F(x) - F(x') for "difference" methods, F(x) for "output" ones, the
        method's own v(all) - v(none) for "game" ones."""
        d = self.delta(layer, method)
        if d is not None and (layer, method) in self.references:
            return d.abs() / self.references[(layer, method)].abs().clamp(min=1e-12).to(d)
        if d is None or self.f_input is None:
            return None
        ref = self.f_input if spec(method).delta == "output" else self.f_input - self.f_baseline
        return d.abs() / ref.abs().clamp(min=1e-12).to(d)

    def to_frame(self, ids: torch.Tensor | None = None) -> pd.DataFrame:
        """A tidy table: input, layer, unit, unit_axis, method, score, delta (the method's per-input delta, else
        NaN)."""
        rows = []
        for (layer, m), sc in self.scores.items():
            sc = sc.detach().double().cpu()
            d = self.deltas.get((layer, m))
            d = d.detach().double().cpu() if d is not None else None
            for b in range(sc.shape[0]):
                i = int(ids[b]) if ids is not None else b
                for u in range(sc.shape[1]):
                    rows.append((i, layer, u, self.axis(layer), m, float(sc[b, u]),
                                 float(d[b]) if d is not None else float("nan")))
        return pd.DataFrame(rows, columns=["input", "layer", "unit", "unit_axis", "method", "score", "delta"])


def check_delta(scores: Scores, params: MethodParams, layer: str, method: str) -> str | None:
    """A one-line warning when |delta| exceeds the tolerance for some input (relative), else None."""
    rel = scores.relative_delta(layer, method)
    if rel is None or not len(rel):
        return None
    return delta_message(method, layer, float(rel.max()), params, scores.gaps.get((layer, method)))


def delta_message(method: str, layer: str, worst: float, params: MethodParams,
                  gaps: list[str] | None = None) -> str | None:
    """The warning for a largest relative delta `worst` of (layer, method), or None within the tolerance.

    gaps: the module types after the layer that the method has no rule for (`Scores.gaps`), named in the hint.
    """
    kind = spec(method).delta
    what = {"difference": "completeness", "game": "efficiency"}.get(kind or "", "conservation")
    if not math.isfinite(worst):  # NaN/inf scores: no n_steps can help (grid.suggest_steps refuses them)
        return (f"{method} at {layer}: the {what} delta is NaN or inf for some inputs: their scores are not "
                "finite; check the weights, the inputs and the baseline")
    if worst <= params.delta_tolerance:
        return None
    ref = {"difference": "F(x)-F(x')", "game": "v(all)-v(none)"}.get(kind or "", "F(x)")
    hint = ""
    if params.auto and method == "conductance":  # only inputs that hit the cap are left above the tolerance
        hint = f"; these inputs reached attribution.max_steps = {params.max_steps}: raise it"
    elif method in ("conductance", "layer_ig") and not params.auto:
        n = suggest_steps(params.rule, params.n_steps, worst, params.delta_tolerance)
        hint = f"; try attribution.n_steps={n} (now {params.n_steps})"
    elif gaps:
        hint = (f"; after the layer, {', '.join(gaps[:8])} have no rule of this method: use "
                "conductance or layer_ig on this network")
    return (f"{method} at {layer}: {what} delta up to {worst:.1%} of {ref} exceeds the tolerance "
            f"{params.delta_tolerance:.1%}{hint}")


def delta_warnings(scores: Scores, params: MethodParams) -> list[str]:
    """One-line messages: modules without a rule (`Scores.notes`), and every (layer, method) whose delta exceeds
    the tolerance."""
    return scores.notes + [m for (layer, method) in scores.deltas if (m := check_delta(scores, params, layer, method))]


def compute_scores(
    model: nn.Module,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    layers: list[str],
    methods: list[str],
    params: MethodParams,
    *,
    ids: torch.Tensor | None = None,
    stats: dict[str, LayerStats] | None = None,
    probes: dict[str, Probe] | None = None,
    units: UnitsChoice = "auto",
) -> Scores:
    """Scores of every (layer, method) for the batch x [B, ...] against `target` [B] (module docstring).

    units: the unit axis of every layer (auto | channel | feature | token), or layer -> axis (others auto).
    A model with in-place activations is scored with them switched off for the call (and restored).
    """
    with not_inplace(model):
        layouts = check_layers(model, layers, methods, x, units)
        return _compute(model, x, baseline, target, layers, methods, params, ids, stats, probes, layouts)


def check_layers(model: nn.Module, layers: list[str], methods: list[str], x: torch.Tensor,
                 units: UnitsChoice = "auto") -> dict[str, LayerLayout]:
    """The layout of each layer; a one-line UsageError for a layer (or an input) that `methods` cannot score."""
    layouts = layer_layouts(model, layers, x[:1], units)
    if not x.is_floating_point():
        bad = [m for m in methods if spec(m).input_grad]
        if bad:
            where = f"layer {layers[0]!r}" if len(layers) == 1 else f"layers {', '.join(map(repr, layers))}"
            raise UsageError(f"{where} cannot be scored by {', '.join(bad)}: the model's input is {x.dtype} (token "
                             "ids) and these methods interpolate or differentiate the input; give the model float "
                             "inputs (embed the ids first: a bundle's `embed`), or use layer_ig, ablation_zero, "
                             "ablation_mean, ablation_baseline, random or selectivity")
    return layouts


def _compute(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, layers: list[str],
             methods: list[str], params: MethodParams, ids: torch.Tensor | None,
             stats: dict[str, LayerStats] | None, probes: dict[str, Probe] | None,
             layouts: Mapping[str, LayerLayout]) -> Scores:
    specs = [spec(m) for m in methods]
    out = Scores(axes={l: layouts[l].axis for l in layers})
    for layer in layers:
        for s in specs:
            names = s.gaps(layouts[layer].downstream) if s.gaps is not None else []
            if names:
                out.gaps[(layer, s.name)] = names
    probes = probes if probes is not None else {}
    shared: dict[str, torch.Tensor] = {}
    path = [s.name for s in specs if s.path]
    if path:
        first = min(layers, key=lambda l: layouts[l].order)
        fast = sweep_probe(model, layers, x[:1], probes, first=first)
        if params.auto:  # n per input, to the tolerance (Dhamdhere et al. eq. 3 on nested grids)
            res = adaptive_sweep(model, x, baseline, target, layers, path, params.rule, params.delta_tolerance,
                                 params.step_chunk, probe=fast, start_steps=params.start_steps,
                                 max_steps=params.max_steps, axes=out.axes)
        else:
            res = path_sweep(model, x, baseline, target, layers, path, make_grid(params.rule, params.n_steps),
                             params.step_chunk, probe=fast, axes=out.axes)
        out.steps = res.steps
        out.scores.update(res.scores)
        if "conductance" in path:  # adaptive_sweep returns the deltas that steered it even when not asked
            out.deltas.update({(layer, "conductance"): d for layer, d in res.deltas.items()})
        if res.f_input is not None and res.f_baseline is not None:
            shared.update(f_input=res.f_input, f_baseline=res.f_baseline)
    ids = ids if ids is not None else torch.arange(x.shape[0])
    if not params.auto:
        grid = make_grid(params.rule, params.n_steps)
    elif out.steps is not None and len(out.steps):  # fixed-grid methods (layer IG) at the most steps any input took
        grid = make_grid(params.rule, int(out.steps.max()))
    else:
        grid = make_grid(params.rule, params.max_steps)
    for layer in layers:
        call = MethodCall(model, layer, x, baseline, target, params, grid, ids,
                          (stats or {}).get(layer), probes, shared, layouts[layer])
        for s in specs:
            if s.path:
                continue
            result = s(call)
            scores, delta, *ref = result if isinstance(result, tuple) else (result, None)
            out.scores[(layer, s.name)] = scores.detach()
            if delta is not None:
                out.deltas[(layer, s.name)] = delta.detach()
            if ref:  # a "game" method's own reference v(all) - v(none)
                out.references[(layer, s.name)] = ref[0].detach()
    if out.deltas or "f_input" in shared:
        out.f_input, out.f_baseline = call_outputs(model, x, baseline, target, shared)
    return out


def call_outputs(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
                 shared: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(F(x), F(x')) of the target, reusing the sweep's or a method's when already computed."""
    if "f_input" not in shared:
        t = target.unsqueeze(1)
        with torch.no_grad():
            shared["f_input"] = model(x).gather(1, t).squeeze(1)
            shared["f_baseline"] = model(baseline.expand_as(x)).gather(1, t).squeeze(1)
    return shared["f_input"], shared["f_baseline"]


def needs_stats(methods: list[str], params: MethodParams | None = None) -> bool:
    """Whether any of `methods` reads dataset statistics of the layer (under `params`, default settings)."""
    p = params if params is not None else MethodParams()
    return any(s.needs_stats(p) if callable(s.needs_stats) else s.needs_stats for s in map(spec, methods))


__all__ = ["METHODS", "Scores", "check_delta", "check_layers", "compute_scores", "delta_message", "delta_warnings",
           "needs_stats"]
