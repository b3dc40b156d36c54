"""Class selectivity vs importance of single units (Morcos et al. 2018, sec. 2.3 and 3.3).

For each unit: the class selectivity index (mu_max - mu_-max) / (mu_max + mu_-max) of its class-conditional
mean activations (eq. 1; `methods.selectivity.selectivity_index`), and its importance: the drop of accuracy
when it alone is ablated. The paper found selectivity a poor predictor of importance: Spearman's rho per
layer near zero or negative.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuronimp.hooks import capture, frozen
from neuronimp.methods.units import UnitsChoice, layer_layouts, to_units
from neuronimp.studies.curves import Site, single_unit_treatment, treatment_accuracy


def unit_moments(model: nn.Module, batches: Iterable[torch.Tensor], layers: list[str], units: UnitsChoice = "auto"
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: mean activation per position [*shape] and each unit's sd over inputs and its positions [U]
    (units on each layer's axis: `methods/units.py`)."""
    s1: dict[str, torch.Tensor] = {}
    s2: dict[str, torch.Tensor] = {}
    n = 0
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise ValueError("no inputs for the unit moments")
    axes = {l: lay.axis for l, lay in layer_layouts(model, layers, first[:1], units).items()}
    with frozen(model), capture(model, layers) as out, torch.no_grad():
        for x in itertools.chain([first], it):
            model(x)
            n += x.shape[0]
            for layer in layers:
                a = out[layer].double()  # [B, U, *s]
                s1[layer] = s1.get(layer, 0) + a.sum(0)
                s2[layer] = s2.get(layer, 0) + (a * a).sum(0)
    if n == 0:
        raise ValueError("no inputs for the unit moments")
    res = {}
    for layer in layers:
        mean = s1[layer] / n                                      # [*shape]
        flat_mean = unit_mean(mean, axes[layer])                  # [U]
        flat_sq = unit_mean(s2[layer] / n, axes[layer])
        sd = (flat_sq - flat_mean**2).clamp(min=0).sqrt()         # [U]: E[a^2] - E[a]^2 over inputs, positions
        res[layer] = (mean.float(), sd.float())
    return res


def unit_mean(t: torch.Tensor, axis: str) -> torch.Tensor:
    """A per-position quantity [*shape] (no batch dim) averaged over each unit's positions, [U]."""
    return to_units(t.unsqueeze(0), axis)[0].mean(1)


def single_unit_accuracy(site: Site, ablation: str, values: dict[str, torch.Tensor],
                         splits: dict[str, tuple[torch.Tensor, torch.Tensor]], chunk: int = 512
                         ) -> dict[str, tuple[float, torch.Tensor]]:
    """Per split: (accuracy with nothing ablated, accuracy [U] with each unit alone ablated)."""
    tr = single_unit_treatment(site, ablation, values)
    out = {}
    for split, (x, y) in splits.items():
        acc = treatment_accuracy(site, [tr], x, y, chunk)[0]  # [1 + U]
        out[split] = (float(acc[0]), acc[1:])
    return out


def selectivity_rows(layer: str, si: torch.Tensor, class_means: torch.Tensor, mean_act: torch.Tensor,
                     single: dict[str, tuple[float, torch.Tensor]], ablation: str, axis: str = "channel",
                     present: torch.Tensor | None = None) -> Iterator[dict[str, Any]]:
    """One row per unit (on `axis`): selectivity, preferred class (among the classes `present`), mean activation,
    accuracy drop per split."""
    seen = class_means if present is None else class_means.masked_fill(~present.to(class_means.device)[:, None],
                                                                         float("-inf"))
    pref = seen.argmax(0)
    for u in range(si.shape[0]):
        row: dict[str, Any] = {"layer": layer, "unit": u, "unit_axis": axis, "selectivity": float(si[u]),
                               "preferred_class": int(pref[u]), "mean_activation": float(mean_act[u]),
                               "ablation": ablation}
        for split, (acc0, acc) in single.items():
            row[f"importance_{split}"] = acc0 - float(acc[u])
        yield row


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its p-value; NaN when either side is constant or fewer than 3 pairs."""
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = spearmanr(a, b)
    return float(r.statistic), float(r.pvalue)


def selectivity_correlation(units: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Spearman rho of selectivity with importance per (keys..., layer, split), over the units."""
    rows = []
    splits = [c.removeprefix("importance_") for c in units.columns if c.startswith("importance_")]
    for key, g in units.groupby(keys + ["layer"], sort=True):
        # dead units (mean activation 0 on the training inputs) sit at (0, 0) and can make a correlation
        alive = g[g["mean_activation"] > 0] if "mean_activation" in g else g
        for split in splits:
            rho, p = spearman(g["selectivity"].to_numpy(float), g[f"importance_{split}"].to_numpy(float))
            rho_a, p_a = spearman(alive["selectivity"].to_numpy(float), alive[f"importance_{split}"].to_numpy(float))
            rows.append({**dict(zip(keys + ["layer"], key)), "split": split, "units": len(g),
                         "spearman_rho": rho, "p_value": p, "dead_units": len(g) - len(alive),
                         "spearman_rho_alive": rho_a, "p_value_alive": p_a,
                         "mean_selectivity": float(g["selectivity"].mean()),
                         "mean_importance": float(g[f"importance_{split}"].mean())})
    return pd.DataFrame(rows)
