"""Neuron conductance: the attribution to each input feature of the flow through one unit.

Cond^y_i(x) = (x_i - x'_i) * int_0^1 dF/dy(x_a) * dy/dx_i(x_a) da    (Dhamdhere et al. 2018, eq. 2)
summed over the positions p of a conv unit. At each point the gradient dF/dy is computed first and held
fixed, then d(sum_p g_p y_p)/dx gives sum_p g_p dy_p/dx_i in a second backward pass. Summed over i this
is the unit's total conductance (up to discretisation): tested against Captum's NeuronConductance.
"""
from __future__ import annotations

import torch
from torch import nn

from neuronimp.hooks import capture, frozen
from neuronimp.methods.grid import Grid


def neuron_conductance(
    model: nn.Module, layer: str, unit: int | tuple[int, ...], x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
    grid: Grid, step_chunk: int = 16,
) -> torch.Tensor:
    """Per-input-feature conductance through `unit` (a channel, or a full index like (c, h, w)), shape of x."""
    B = x.shape[0]  # noqa: N806
    baseline = baseline.expand_as(x)
    pts = [(a, w) for a, w in zip(grid.alphas, grid.weights) if w != 0.0]
    total = torch.zeros_like(x)
    with frozen(model), capture(model, [layer]) as out, torch.enable_grad():
        for i in range(0, len(pts), step_chunk):
            chunk = pts[i : i + step_chunk]
            c = len(chunk)
            a = torch.tensor([p[0] for p in chunk], dtype=x.dtype, device=x.device).view(c, *([1] * x.dim()))
            w = torch.tensor([p[1] for p in chunk], dtype=x.dtype, device=x.device).view(c, *([1] * x.dim()))
            xs = (baseline.unsqueeze(0) + a * (x - baseline).unsqueeze(0)).reshape(c * B, *x.shape[1:])
            xs.requires_grad_(True)
            f = model(xs).gather(1, target.repeat(c).unsqueeze(1)).sum()
            y = out[layer]
            (g,) = torch.autograd.grad(f, y, retain_graph=True)
            idx = (slice(None), *unit) if isinstance(unit, tuple) else (slice(None), unit)
            flow = (g.detach()[idx] * y[idx]).sum()
            (gx,) = torch.autograd.grad(flow, xs)
            total += (w * gx.view(c, B, *x.shape[1:])).sum(0)
    return total * (x - baseline)
