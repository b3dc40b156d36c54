"""Unit ablation on a cached layer activation, and the single-unit ablation effect.

An ablation replaces unit u's activation by a value v_u: `zero` (v = 0), `mean` (the unit's dataset mean,
per position), or `baseline` (the unit's activation at the baseline input x', the intervention that
matches what conductance measures: the change of the unit from y(x') to y(x)).
"""
from __future__ import annotations

import torch

from neuronimp.hooks import frozen
from neuronimp.probe import Probe

ABLATIONS = ("zero", "mean", "baseline")


def apply_mask(a: torch.Tensor, mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """a with units where mask == 1 replaced by `value`; a, value: [N, U, *s], mask: [N, U] in {0, 1}."""
    m = mask.to(a.dtype).view(*mask.shape, *([1] * (a.dim() - 2)))
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


def single_unit_drop(
    probe: Probe, x: torch.Tensor, target: torch.Tensor, value: torch.Tensor, unit_chunk: int = 64,
    a: torch.Tensor | None = None,
) -> torch.Tensor:
    """Drop of the target logit when each unit alone is ablated: F(x) - F(x with a_u := v_u), [B, U].

    `a` is the layer's activation prefix(x) when the caller already has it (saves a prefix pass).
    """
    with frozen(probe.model), torch.no_grad():
        a = probe.prefix(x) if a is None else a  # [B, U, *s]
        B, U = a.shape[:2]  # noqa: N806
        f0 = probe.suffix(a, x).gather(1, target.unsqueeze(1)).squeeze(1)
        value = value.expand_as(a)
        out = torch.empty(B, U, dtype=a.dtype, device=a.device)
        for u0 in range(0, U, unit_chunk):
            units = torch.arange(u0, min(U, u0 + unit_chunk), device=a.device)
            c = len(units)
            mask = torch.zeros(c, B, U, dtype=a.dtype, device=a.device)
            mask[torch.arange(c), :, units] = 1
            big = apply_mask(a.repeat(c, *([1] * (a.dim() - 1))), mask.view(c * B, U),
                             value.repeat(c, *([1] * (a.dim() - 1))))
            xs = x.repeat(c, *([1] * (x.dim() - 1))) if probe.mode == "hook" else None
            f = probe.suffix(big, xs).gather(1, target.repeat(c).unsqueeze(1)).view(c, B)
            out[:, u0 : u0 + c] = (f0.unsqueeze(0) - f).T
    return out
