"""`neuronimp explain` on an image model: neuron conductance of every pixel through one unit.

Cond^y_i(x) = (x_i - x'_i) int dF/dy dy/dx_i da (Dhamdhere et al. 2018, eq. 2), summed over the unit's
positions and over colour channels, drawn as a heat map beside the input. Writes to runner.out:
  explain_<layer>_unit<U>_index<I>.png   input | conductance map (red raises F, blue lowers it)
  explain_<layer>_unit<U>_index<I>.csv   row, col, conductance (summed over channels)
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import torch

from neuronimp.studies.inputs import baseline_for, targets
from neuronimp.errors import UsageError
from neuronimp.plotting import pyplot
from neuronimp.methods.grid import make_grid
from neuronimp.methods.neuron import neuron_conductance
from neuronimp.methods.path import path_sweep
from neuronimp.runner.context import Context
from neuronimp.runner.io import atomic_path, write_table


def run(ctx: Context, unit: int, index: int) -> Path:
    """Heat map of input `index` of the configured split through `unit` of the first configured layer."""
    cfg = ctx.cfg
    layer = ctx.layers[0]
    ds = ctx.split()
    if not 0 <= index < len(ds):
        raise UsageError(f"--index {index}: the {cfg.data.split} split has {len(ds)} items; allowed: 0..{len(ds) - 1}")
    _, x, y = next(ctx.batches(ds, [index], batch_size=1))
    t, pred = targets(ctx, x, y)
    base = baseline_for(ctx, x)
    grid = make_grid(cfg.attribution.rule, cfg.attribution.n_steps)
    total = path_sweep(ctx.bundle.model, x, base, t, [layer], ["conductance"], grid, cfg.attribution.step_chunk)
    units = total.scores[(layer, "conductance")].shape[1]
    if not 0 <= unit < units:
        raise UsageError(f"--unit {unit}: layer {layer!r} has {units} units; allowed: 0..{units - 1}")
    cond = neuron_conductance(ctx.bundle.model, layer, unit, x, base, t, grid, cfg.attribution.step_chunk)
    heat = cond[0].sum(0).detach().double().cpu() if cond.dim() == 4 else cond[0].detach().double().cpu()
    unit_total = float(total.scores[(layer, "conductance")][0, unit])
    stem = ctx.out / f"explain_{layer}_unit{unit}_index{index}"
    rows, cols = heat.shape[-2], heat.shape[-1]
    table = pd.DataFrame({"row": [r for r in range(rows) for _ in range(cols)],
                          "col": [c for _ in range(rows) for c in range(cols)],
                          "conductance": heat.flatten().tolist()})
    extra = {"command": "explain", "layer": layer, "unit": unit, "index": index, "label": int(y[0]),
             "target": int(t[0]), "predicted": int(pred[0]), "unit_conductance": unit_total,
             "sum_pixel_conductance": float(heat.sum())}
    ctx.write_meta(write_table(table, stem, cfg.runner.format), extra)
    png = stem.with_suffix(".png")
    _draw(x[0].detach().float().cpu(), heat, png, f"{layer} unit {unit}: conductance {unit_total:+.3g}")
    print(f"{layer} unit {unit} on item {index} (label {int(y[0])}, target {int(t[0])}): unit conductance "
          f"{unit_total:+.4g}, sum over pixels {float(heat.sum()):+.4g}\nwritten: {png}")
    return png


def _draw(img: torch.Tensor, heat: torch.Tensor, path: Path, title: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    shown = img.permute(1, 2, 0) if img.shape[0] == 3 else img[0]
    shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp(min=1e-12)
    axes[0].imshow(shown.numpy(), cmap=None if img.shape[0] == 3 else "gray")
    axes[0].set_title("input")
    lim = float(heat.abs().max()) or 1.0
    im = axes[1].imshow(heat.numpy(), cmap="bwr", vmin=-lim, vmax=lim)
    axes[1].set_title("neuron conductance")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    for a in axes:
        a.axis("off")
    fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
