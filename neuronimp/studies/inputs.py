"""What the per-input studies share: the target of each input, the baseline, dataset statistics, unit axes.

They read the model and data through the run context (`ctx.bundle`, `ctx.split`, `ctx.batches`).
"""
from __future__ import annotations

from typing import Any

import torch

from neuronimp.errors import UsageError
from neuronimp.methods.baselines import channel_mean, make_baseline
from neuronimp.methods.selectivity import LayerStats, layer_statistics
from neuronimp.methods.targets import target_classes
from neuronimp.methods.units import UnitsChoice

STATS_LIMIT = 2000  # reference items for dataset means and class-conditional means


def targets(ctx: Any, x: torch.Tensor, y: torch.Tensor, how: str | int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(target class, predicted class) per input: the prediction, the label, or a fixed class index
    (default: the config's attribution.target)."""
    return target_classes(ctx.bundle.model, x, ctx.cfg.attribution.target if how is None else how, y)


def input_mean(ctx: Any) -> torch.Tensor:
    """Per-channel mean of the training inputs (for the 'mean' baseline)."""
    ds = ctx.split("train", limit=STATS_LIMIT)
    xs = torch.cat([x for _, x, _ in ctx.batches(ds, batch_size=256)])
    return channel_mean(xs)


def baseline_for(ctx: Any, x: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """The configured baseline for a batch x (the input mean is computed when needed and not given)."""
    kind = ctx.cfg.attribution.baseline
    if kind == "mean" and mean is None:
        mean = input_mean(ctx)
    return make_baseline(kind, x, mean, ctx.cfg.attribution.blur_sigma)


def statistics(ctx: Any, layers: list[str]) -> dict[str, LayerStats]:
    """Per-layer dataset mean and class-conditional means over (up to) STATS_LIMIT training items."""
    ds = ctx.split("train", limit=STATS_LIMIT)
    batches = ((x, y) for _, x, y in ctx.batches(ds, batch_size=256))
    return layer_statistics(ctx.bundle.model, batches, layers, ctx.data.num_classes, unit_choice(ctx))


def unit_choice(ctx: Any, bundle: Any = None, layers: list[str] | None = None) -> UnitsChoice:
    """The config's `units:` (one axis, or layer -> axis) with layer names resolved to module paths.

    bundle, layers: the model and its scored layers (module paths), default the context's. A named layer that is
    not scored is a one-line UsageError.
    """
    units = ctx.cfg.units
    if isinstance(units, str):
        return units
    from neuronimp.models import resolve_layer

    bundle = bundle if bundle is not None else ctx.bundle
    layers = layers if layers is not None else ctx.layers
    out = {}
    for name, axis in units.items():
        path = resolve_layer(bundle, name)
        if path not in layers:
            raise UsageError(f"units: layer {name!r} is not among the scored layers ({', '.join(layers)}); name "
                             "one of them or list it under layers")
        out[path] = axis
    return out
