"""Unit ablation on a cached layer activation, and the single-unit ablation effect.

An ablation replaces unit u's activation by a value v_u: `zero` (v = 0), `mean` (the unit's dataset mean,
per position), or `baseline` (the unit's activation at the baseline input x', the intervention that
matches what conductance measures: the change of the unit from y(x') to y(x)). A unit is replaced at every one
of its positions (`units.expand_mask`): a channel at every pixel, a feature in every token, a token in every feature.
"""
from __future__ import annotations

import torch

from neuronimp.hooks import frozen
from neuronimp.methods.units import expand_mask, layer_layouts, unit_count
from neuronimp.probe import Probe

ABLATIONS = ("zero", "mean", "baseline")


def apply_mask(a: torch.Tensor, mask: torch.Tensor, value: torch.Tensor, axis: str = "channel") -> torch.Tensor:
    """a with units where mask == 1 replaced by `value`; a, value: [N, *shape], mask: [N, U] in {0, 1} over the
    units of `axis` (channel | feature | token)."""
    m = expand_mask(mask.to(a.dtype), a.shape, axis)
    return a * (1 - m) + value.expand_as(a) * m


def ablation_value(kind: str, a: torch.Tensor, mean: torch.Tensor | None, a_baseline: torch.Tensor | None) -> torch.Tensor:
    """The replacement activation for each unit: [B or 1, U, *s]."""
    if kind == "zero":
        return torch.zeros_like(a[:1])
    if kind == "mean":
        if mean is None:
            raise ValueError("mean ablation needs the layer's dataset mean")
        return mean.to(a).unsqueeze(0)
    if kind == "baseline":
        if a_baseline is None:
            raise ValueError("baseline ablation needs the layer's activation at the baseline")
        return a_baseline.to(a).expand_as(a)
    raise ValueError(f"unknown ablation {kind!r}; allowed: {', '.join(ABLATIONS)}")


def single_unit_drop(probe: Probe, x: torch.Tensor, target: torch.Tensor, value: torch.Tensor,
                     a: torch.Tensor | None = None, max_rows: int = 512, axis: str | None = None) -> torch.Tensor:
    """F_t(a) - F_t(a with unit u alone set to its ablation value) for every input and unit, [B, U].

    value: [1 or B, *shape]; `a` is the layer's activation prefix(x) when the caller already has it; axis: the
    layer's unit axis (None: its default, `units.py`). The B x U ablated activations run through the suffix only,
    `max_rows` at a time.
    """
    axis = axis or layer_layouts(probe.model, [probe.layer], x[:1])[probe.layer].axis
    with frozen(probe.model), torch.no_grad():
        a = probe.prefix(x) if a is None else a  # [B, *shape]
        B = a.shape[0]  # noqa: N806
        U = unit_count(tuple(a.shape[1:]), axis)  # noqa: N806
        f0 = probe.suffix(a, x).gather(1, target.unsqueeze(1)).squeeze(1)  # [B]
        value = value.to(a)
        per_image = value.shape[0] > 1 and value.stride(0) != 0  # an expanded batch-1 value stays broadcast
        b_all = torch.arange(B, device=a.device).repeat_interleave(U)
        u_all = torch.arange(U, device=a.device).repeat(B)
        out = torch.empty(B * U, dtype=f0.dtype, device=f0.device)
        for r0 in range(0, B * U, max_rows):
            b, u = b_all[r0 : r0 + max_rows], u_all[r0 : r0 + max_rows]
            m = expand_mask(torch.nn.functional.one_hot(u, U).bool(), a.shape, axis)
            v = value[b] if per_image else value[:1]
            xs = x[b] if probe.mode == "hook" else None
            f = probe.suffix(torch.where(m, v, a[b]), xs)
            out[r0 : r0 + len(b)] = f0[b] - f.gather(1, target[b].unsqueeze(1)).squeeze(1)
    return out.view(B, U)
