"""The `shapley` study's pure tables: Shapley values from the per-permutation marginals, k_half summaries of
the removal curves, and the figure (Ghorbani & Zou 2020, fig. 2: accuracy as the top-k units are removed).

DataFrames in, DataFrames (or a matplotlib figure) out; `neuronimp merge` rebuilds shapley_values with
`values_table` from the merged marginals, so sharded and unsharded runs give the same values.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MARGINAL_COLUMNS = ["layer", "permutation", "sample", "unit", "position", "marginal"]
VALUE_COLUMNS = ["layer", "unit", "shapley", "se", "n", "samples", "rank"]
CURVE_COLUMNS = ["layer", "order", "draw", "k", "fraction_removed", "accuracy"]
SUMMARY_COLUMNS = ["layer", "order", "units", "draws", "base_accuracy", "all_removed_accuracy", "half_accuracy",
                   "k_half", "k_half_min", "k_half_max", "k_half_fraction", "halved_draws", "note", "mid_accuracy",
                   "k_mid", "k_mid_fraction", "mid_draws"]
NOT_WITHIN = "not within the layer"
from neuronimp.studies.papers import PAPER_SHAPLEY as PAPER  # noqa: E402,F401 (re-exported)


def values_table(marginals: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, unit): the Shapley estimate (mean marginal over the permutations), its standard error, the
    number of permutations n, the number of samples (antithetic pairs count once) and the rank (1 = largest).

    Rows are sorted first, so the merged table of a sharded run gives the same floats as one run.
    """
    if marginals.empty:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    m = marginals.sort_values(["layer", "permutation", "unit"], kind="stable")
    keys = ["layer", "unit"]
    mean = m.groupby(keys).marginal.agg(shapley="mean", n="size")
    per_sample = m.groupby(keys + ["sample"]).marginal.mean()  # a pair's average, or one permutation's marginal
    spread = per_sample.groupby(level=[0, 1]).agg(["std", "size"])
    out = mean.join(spread).reset_index()
    out["samples"] = out.pop("size")
    out["se"] = out.pop("std") / np.sqrt(out["samples"])  # NaN below 2 samples
    out["rank"] = out.groupby("layer").shapley.rank(ascending=False, method="first").astype(int)
    return out[VALUE_COLUMNS]


def k_half(curve: pd.DataFrame, half: float) -> float:
    """The smallest k on the curve (columns k, accuracy) whose accuracy is at most `half` (NaN: none)."""
    hit = curve.loc[curve.accuracy <= half + 1e-12, "k"]
    return float(hit.min()) if len(hit) else math.nan


def summary_table(curves: pd.DataFrame, units: dict[str, int]) -> pd.DataFrame:
    """Per (layer, order): how many of the top units it takes to halve the accuracy (k_half, the smallest k
    of the grid at or below half the base accuracy; for random orders the mean over draws, with min and max),
    or `not within the layer` when removing every unit of the grid does not halve it; and k_mid, the same for
    the midpoint between the base and the all-removed accuracy (for tasks whose chance level is above half
    the base accuracy, e.g. two classes; blank when the grid stops before every unit is removed)."""
    rows = []
    for (layer, order), g in curves.groupby(["layer", "order"], sort=False):
        base = float(g.loc[g.k == 0, "accuracy"].mean())
        last = float(g.loc[g.k == units[layer], "accuracy"].mean()) if g.k.max() == units[layer] else math.nan
        draws = [d for _, d in g.groupby("draw")]
        hit = [k for k in (k_half(d, base / 2) for d in draws) if not math.isnan(k)]
        mid = [k for k in (k_half(d, (base + last) / 2) for d in draws) if not math.isnan(k)]
        mean_k = float(np.mean(hit)) if hit else math.nan
        mean_mid = float(np.mean(mid)) if mid else math.nan
        rows.append({"layer": layer, "order": order, "units": units[layer], "draws": len(draws),
                     "base_accuracy": base, "all_removed_accuracy": last, "half_accuracy": base / 2,
                     "k_half": mean_k, "k_half_min": min(hit) if hit else math.nan,
                     "k_half_max": max(hit) if hit else math.nan, "k_half_fraction": mean_k / units[layer],
                     "halved_draws": len(hit),
                     "note": "" if len(hit) == len(draws) else NOT_WITHIN if not hit else
                     f"{len(draws) - len(hit)} of {len(draws)} draws: {NOT_WITHIN}",
                     "mid_accuracy": (base + last) / 2, "k_mid": mean_mid, "k_mid_fraction": mean_mid / units[layer],
                     "mid_draws": len(mid)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def curves_figure(curves: pd.DataFrame, title: str = "") -> Any:
    """Accuracy vs the number of top units removed, one panel per layer, one line per order (random: the mean
    over draws, each draw faint); dashed: half the base accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(curves["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(5.0 * len(layers), 3.6), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        g = curves[curves.layer == layer]
        for order, o in g.groupby("order", sort=False):
            mean = o.groupby("k").accuracy.mean()
            if o.draw.nunique() > 1:
                for _, d in o.groupby("draw"):
                    ax.plot(d.k, d.accuracy, color="0.6", lw=0.5, alpha=0.5)
            ax.plot(mean.index, mean.values, lw=2.2 if order == "shapley" else 1.3, label=order)
        base = g.loc[g.k == 0, "accuracy"].mean()
        ax.axhline(base / 2, color="k", ls="--", lw=0.8)
        ax.set(xlabel="top units removed (k)", ylabel="accuracy", title=layer, ylim=(0, 1.02))
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
