"""Deletion curves: accuracy under cumulative unit ablation and under unit noise, many levels per batch
(Morcos et al. 2018, "On the importance of single directions for generalization", sec. 2.2 and 3.1).

A *site* is what gets perturbed: one layer, or all configured layers at once (name "all"). The probe is cut
at the site's first layer; its activation for a chunk of inputs is computed once (the cache) and every level
of every curve is evaluated from it as one batch [L * m, U, *s], re-running only the layers after the cut.
The later layers of an "all" site are edited by forward hooks (context managers) inside the suffix.

Ablation replaces the first n_k units of an order by their ablation value (zero, or the unit's mean over the
training inputs, per position) for n_k = round(k / (n_levels - 1) * U), k = 0 .. n_levels - 1; a unit is replaced
at all of its positions (a channel at every pixel, a feature in every token: `methods/units.py`). Noise adds
sd_u * scale * eps to every unit u, eps ~ N(0, 1) and sd_u the unit's empirical standard deviation over
training inputs and positions: the noise variance is scale^2 times the unit's variance. The same eps is used
at every scale of a draw (common random numbers), so a curve varies only through the scale.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neuronimp.hooks import frozen, replace_output
from neuronimp.methods.ablation import apply_mask
from neuronimp.methods.units import UnitsChoice, expand_mask, layer_layouts
from neuronimp.probe import Probe

Edit = Callable[[torch.Tensor], torch.Tensor]  # a layer's output [L*m, *shape] -> the perturbed output
MAX_ELEMS = 1 << 23  # activation elements of one suffix batch (32 MiB in float32)


@dataclass
class Site:
    """The layers perturbed together, in forward order; the probe is cut at the first."""

    name: str                        # the layer's module path, or "all"
    layers: list[str]
    units: list[int]                 # units per layer
    shapes: list[tuple[int, ...]]    # output shape per layer, no batch dim
    probe: Probe
    axes: list[str] = field(default_factory=list)  # unit axis per layer (channel | feature | token)

    def axis(self, layer: str) -> str:
        """The unit axis of one of the site's layers."""
        return self.axes[self.layers.index(layer)] if self.axes else "channel"

    @property
    def unit_axis(self) -> str:
        """The unit axes of the site's layers, as written in the tables ("channel", or "channel;feature")."""
        return ";".join(dict.fromkeys(self.axes or ["channel"]))

    @property
    def total(self) -> int:
        """Units of the site, all layers together."""
        return sum(self.units)

    @property
    def item_elems(self) -> int:
        """Activation elements one input carries through the site's layers."""
        return sum(math.prod(s) for s in self.shapes)

    def per_layer(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a tensor [..., total] over units into one piece [..., U_l] per layer."""
        return dict(zip(self.layers, torch.split(v, self.units, dim=-1)))


@dataclass
class Treatment:
    """One curve: labels of its rows, one dict per level, and the edits of each layer at all levels."""

    labels: dict[str, Any]                          # order, draw, ablation
    levels: list[dict[str, Any]]                    # per level: n_ablated, fraction_ablated, noise_scale
    edits: Callable[[int, int], dict[str, Edit]]    # (inputs m per level, offset of the first) -> edits


def make_sites(model: nn.Module, layers: list[str], scopes: list[str], example: torch.Tensor,
               units: UnitsChoice = "auto") -> list[Site]:
    """One site per layer ("layer" scope) and/or one site of all layers ("all"; skipped if it repeats one).

    units: each layer's unit axis (auto | channel | feature | token, or layer -> axis; `methods/units.py`).
    """
    lay = layer_layouts(model, layers, example[:1], units)
    order = sorted(layers, key=lambda l: lay[l].order)  # forward call order
    shapes = {l: lay[l].shape for l in order}
    sites: list[Site] = []
    if "layer" in scopes:
        sites += [Site(l, [l], [lay[l].units], [shapes[l]], Probe(model, l, example), [lay[l].axis]) for l in order]
    if "all" in scopes and (len(order) > 1 or "layer" not in scopes):
        sites.append(Site("all", order, [lay[l].units for l in order], [shapes[l] for l in order],
                          Probe(model, order[0], example), [lay[l].axis for l in order]))
    return sites


def ablation_counts(total: int, n_levels: int) -> list[int]:
    """Units ablated at each level: round(k / (n_levels - 1) * total), k = 0..n_levels-1, duplicates dropped."""
    return sorted({int(round(k * total / (n_levels - 1))) for k in range(n_levels)})


def _view(v: torch.Tensor, dim: int) -> torch.Tensor:
    """v [R] or [R, U] viewed to broadcast against an activation with `dim` dims."""
    return v.view(*v.shape, *([1] * (dim - v.dim())))


def mask_edit(mask: torch.Tensor, value: torch.Tensor, m: int, axis: str = "channel") -> Edit:
    """Ablate by mask [L, U] (1 = ablated; units on `axis`) with value [1, *shape], on a level-major batch
    [L*m, *shape]."""
    rows = mask.repeat_interleave(m, dim=0)  # [L*m, U]: row l*m + i belongs to level l
    return lambda a: apply_mask(a, rows.to(a), value.to(a), axis)


def noise_edit(scales: torch.Tensor, sd: torch.Tensor, m: int, seed: int, offset: int = 0,
               axis: str = "channel") -> Edit:
    """Add scale_l * sd_u * eps_i to a level-major batch [L*m, *shape] (sd [U] over the units of `axis`); eps_i
    [*shape] is seeded per input (seed, offset + i), so it does not depend on the chunking, and shared by the
    levels."""
    def edit(a: torch.Tensor) -> torch.Tensor:
        shape = a.shape[1:]
        eps = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(mix_seed(seed, offset + i)),
                                       dtype=torch.float64) for i in range(m)]).to(a)  # [m, U, *s]
        L = a.shape[0] // m  # noqa: N806
        s = _view(scales.to(a).repeat_interleave(m), a.dim())        # [L*m, 1, ...]
        return a + s * expand_mask(sd.to(a).unsqueeze(0), a.shape, axis) * eps.repeat(L, *([1] * (a.dim() - 1)))
    return edit


def mix_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (network seed, draw, site, offset ...)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def deletion_treatment(site: Site, order: str, draw: int, ablation: str, rank: torch.Tensor,
                       values: dict[str, torch.Tensor], n_levels: int) -> Treatment:
    """Cumulative ablation of the units in `rank` order (indices over the site's units, first = ablated first)."""
    counts = ablation_counts(site.total, n_levels)
    mask = torch.zeros(len(counts), site.total)  # [L, U_total]
    for k, c in enumerate(counts):
        mask[k, rank[:c]] = 1.0
    parts = site.per_layer(mask)
    levels = [{"n_ablated": c, "fraction_ablated": c / site.total, "noise_scale": None} for c in counts]
    return Treatment({"order": order, "draw": draw, "ablation": ablation}, levels,
                     lambda m, _off: {l: mask_edit(parts[l], values[l], m, site.axis(l)) for l in site.layers})


def noise_treatment(site: Site, scales: list[float], draw: int, sds: dict[str, torch.Tensor], seed: int) -> Treatment:
    """Gaussian noise on every unit of the site at scales 0 (always included) and `scales`."""
    grid = sorted({0.0, *(float(s) for s in scales)})
    sc = torch.tensor(grid)
    levels = [{"n_ablated": None, "fraction_ablated": None, "noise_scale": s} for s in grid]
    return Treatment({"order": "noise", "draw": draw, "ablation": "gaussian"}, levels,
                     lambda m, off: {l: noise_edit(sc, sds[l], m, mix_seed(seed, draw, i), off, site.axis(l))
                                     for i, l in enumerate(site.layers)})


def single_unit_treatment(site: Site, ablation: str, values: dict[str, torch.Tensor]) -> Treatment:
    """Level 0: nothing ablated; level 1 + u: unit u alone ablated (u over the site's units)."""
    mask = torch.cat([torch.zeros(1, site.total), torch.eye(site.total)])  # [1 + U, U]
    parts = site.per_layer(mask)
    levels = [{"unit": u} for u in range(-1, site.total)]
    return Treatment({"order": "single", "draw": 0, "ablation": ablation}, levels,
                     lambda m, _off: {l: mask_edit(parts[l], values[l], m, site.axis(l)) for l in site.layers})


def level_correct(site: Site, a: torch.Tensor, x: torch.Tensor, y: torch.Tensor, edits: dict[str, Edit],
                  n_levels: int) -> torch.Tensor:
    """Correct predictions per level [L] for one chunk: a [m, *shape] cached at the cut, x [m, ...], y [m]."""
    m = a.shape[0]
    big = a.repeat(n_levels, *([1] * (a.dim() - 1)))  # [L*m, *shape], level-major
    first = site.layers[0]
    if first in edits:
        big = edits[first](big)
    xs = x.repeat(n_levels, *([1] * (x.dim() - 1))) if site.probe.mode == "hook" else None
    with contextlib.ExitStack() as stack:
        for layer in site.layers[1:]:
            if layer in edits:
                stack.enter_context(replace_output(site.probe.model, layer, edits[layer]))
        logits = site.probe.suffix(big, xs)  # [L*m, C]
    return (logits.argmax(1).view(n_levels, m) == y.view(1, m)).sum(1)


def treatment_accuracy(site: Site, treatments: list[Treatment], x: torch.Tensor, y: torch.Tensor,
             chunk: int = 512) -> list[torch.Tensor]:
    """Accuracy [L] of every treatment on (x [N, ...], y [N]); the cut activation is computed once per chunk."""
    totals = [torch.zeros(len(t.levels), dtype=torch.long) for t in treatments]
    n = x.shape[0]
    with frozen(site.probe.model), torch.no_grad():
        for start in range(0, n, chunk):
            xc, yc = x[start : start + chunk], y[start : start + chunk]
            a = site.probe.prefix(xc)  # the cache: [c, *shape]
            for t, tr in enumerate(treatments):
                L = len(tr.levels)  # noqa: N806
                m = max(1, MAX_ELEMS // (L * site.item_elems))
                for s0 in range(0, a.shape[0], m):
                    ac, xs, ys = a[s0 : s0 + m], xc[s0 : s0 + m], yc[s0 : s0 + m]
                    edits = tr.edits(ac.shape[0], start + s0)
                    totals[t] += level_correct(site, ac, xs, ys, edits, L).cpu()
    return [tot.double() / max(n, 1) for tot in totals]


def curve_rows(site: Site, treatments: list[Treatment], splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
               chunk: int = 512) -> Iterator[dict[str, Any]]:
    """Rows (layer, order, draw, ablation, level fields, split, accuracy, units) of every treatment and split."""
    for split, (x, y) in splits.items():
        for tr, acc in zip(treatments, treatment_accuracy(site, treatments, x, y, chunk)):
            for level, value in zip(tr.levels, acc.tolist()):
                yield {"layer": site.name, **tr.labels, **level, "split": split, "accuracy": value,
                       "units": site.total, "unit_axis": site.unit_axis}
