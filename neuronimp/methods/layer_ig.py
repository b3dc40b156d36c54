"""Layer integrated gradients: a straight line in the layer's own space (for comparison with conductance).

score_u = sum_p (y_p - y'_p) * sum_k w_k dF/dy_p(y' + alpha_k (y - y')),  y = y(x), y' = y(x').
Unlike conductance, the path is not the image of the input path, so it says what the *suffix* does with
the layer's change, not how the input's change flows through it (Dhamdhere et al. 2018, sec. 3).
Implemented on the probe, so only the layers after the cut are run for each step (Captum's
LayerIntegratedGradients re-runs the whole model); Captum is the oracle in the tests.
"""
from __future__ import annotations

import torch

from neuronimp.hooks import frozen
from neuronimp.methods.grid import Grid
from neuronimp.methods.units import layer_layouts, reduce_units
from neuronimp.probe import Probe


def layer_ig(
    probe: Probe, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, grid: Grid, step_chunk: int = 16,
    axis: str | None = None,
) -> torch.Tensor:
    """Layer integrated gradients per unit, [B, U]; axis: the layer's unit axis (None: its default, units.py)."""
    B = x.shape[0]  # noqa: N806
    axis = axis or layer_layouts(probe.model, [probe.layer], x[:1])[probe.layer].axis
    pts = [(a, w) for a, w in zip(grid.alphas, grid.weights) if w != 0.0]
    with frozen(probe.model), torch.no_grad():
        y = probe.prefix(x)
        y0 = probe.prefix(baseline.expand_as(x))
    total = torch.zeros_like(y)
    with frozen(probe.model), torch.enable_grad():
        for i in range(0, len(pts), step_chunk):
            chunk = pts[i : i + step_chunk]
            c = len(chunk)
            a = torch.tensor([p[0] for p in chunk], dtype=y.dtype, device=y.device).view(c, *([1] * y.dim()))
            w = torch.tensor([p[1] for p in chunk], dtype=y.dtype, device=y.device).view(c, *([1] * y.dim()))
            ys = (y0.unsqueeze(0) + a * (y - y0).unsqueeze(0)).reshape(c * B, *y.shape[1:]).requires_grad_(True)
            xs = x.repeat(c, *([1] * (x.dim() - 1)))
            f = probe.suffix(ys, xs).gather(1, target.repeat(c).unsqueeze(1)).sum()
            (g,) = torch.autograd.grad(f, ys)
            total += (w * g.view(c, B, *y.shape[1:])).sum(0)
    return reduce_units(total * (y - y0), axis)
