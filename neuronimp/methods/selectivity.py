"""Dataset statistics of a layer's units, and the class selectivity index (Morcos et al. 2018, eq. 1).

selectivity_u = (mu_max - mu_-max) / (mu_max + mu_-max), where mu_max is the largest class-conditional
mean activation of unit u and mu_-max the mean of the class-conditional means over all other classes (the classes with examples in the reference set).
Activations are averaged over each unit's positions (the pixels of a channel, the tokens of a feature, the features of
a token: `methods/units.py`). The index is 0 where both
means are 0 (a dead unit), and lies in [0, 1] for non-negative (post-ReLU) activations.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from neuronimp.hooks import capture, frozen
from neuronimp.methods.units import UnitsChoice, layer_layouts, to_units


@dataclass
class LayerStats:
    """Per-layer statistics over a reference set: per-position mean [U, *s], class means [C, U], count."""

    mean: torch.Tensor
    class_means: torch.Tensor
    count: int
    present: torch.Tensor | None = None  # [C] bool: classes seen in the reference set (None: all)


def layer_statistics(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], layers: list[str], num_classes: int,
    units: UnitsChoice = "auto",
) -> dict[str, LayerStats]:
    """Mean activation (per position) and class-conditional unit means [C, U] (units on each layer's axis, from
    `units`: auto, channel, feature, token or layer -> axis), from (x, y) batches."""
    sums: dict[str, torch.Tensor] = {}
    csum: dict[str, torch.Tensor] = {}
    counts = torch.zeros(num_classes, dtype=torch.float64)
    n = 0
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise ValueError("no data for layer statistics")
    axes = {l: lay.axis for l, lay in layer_layouts(model, layers, first[0][:1], units).items()}
    with frozen(model), capture(model, layers) as out, torch.no_grad():
        for x, y in itertools.chain([first], it):
            model(x)
            counts += torch.bincount(y.cpu(), minlength=num_classes).double()
            n += x.shape[0]
            for l in layers:
                a = out[l].double()
                unit = to_units(a, axes[l]).mean(2)  # [B, U]
                sums[l] = sums.get(l, 0) + a.sum(0)
                c = torch.zeros(num_classes, unit.shape[1], dtype=torch.float64, device=unit.device)
                c.index_add_(0, y.to(unit.device), unit)
                csum[l] = csum.get(l, 0) + c
    if n == 0:
        raise ValueError("no data for layer statistics")
    seen = counts > 0
    per = counts.clamp(min=1).unsqueeze(1)
    # kept in float64 (the sums are): a float64 run needs them to 1e-16, a float32 run casts them where used
    return {l: LayerStats(sums[l] / n, csum[l].cpu() / per, n, seen) for l in layers}


def selectivity_index(class_means: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """Class selectivity of each unit from class-conditional means [C, U] -> [U] (Morcos et al. eq. 1), over the
    classes `present` in the reference set ([C] bool; None: every row). A class with no example has no mean: counted
    as 0 it would pull mu_-max down and every index towards 1 (a 50-image subset of ImageNet's 1000 classes)."""
    if present is not None:
        class_means = class_means[present.to(class_means.device)]
    C = class_means.shape[0]  # noqa: N806
    if C < 2:
        raise ValueError("class selectivity needs examples of at least two classes")
    mu_max, idx = class_means.max(0)
    rest = (class_means.sum(0) - mu_max) / (C - 1)
    denom = mu_max + rest
    si = (mu_max - rest) / torch.where(denom == 0, torch.ones_like(denom), denom)
    return torch.where(denom == 0, torch.zeros_like(si), si)
