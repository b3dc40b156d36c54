"""Figures of the deletion study (matplotlib figures, returned by name: the driver saves them): ablation curves per corruption level (mean over seeds,
shaded +-1 sd over seeds) as in Morcos et al. (2018) fig. 2-3, noise curves, AUC vs generalisation gap, and
selectivity vs single-unit importance.
"""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

from neuronimp.plotting import pyplot


def _slug(model: str) -> str:
    """A file-name part for a model label: mnist_mlp(width=256) -> mnist_mlp_width256 (only [A-Za-z0-9_.-])."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "", model.replace("(", "_").replace(",", "_").replace("=", ""))


def _plt():  # noqa: ANN202 - the pyplot module
    return pyplot()


def _colors(levels: list[float]) -> dict[float, tuple]:
    cmap = _plt().get_cmap("viridis")
    return {c: cmap(i / max(1, len(levels) - 1)) for i, c in enumerate(levels)}


def _panel(ax, curves: pd.DataFrame, x: str, colors: dict) -> None:  # noqa: ANN001
    """One line per corruption: mean over seeds of the per-seed mean over draws, +-1 sd over seeds shaded."""
    for c, g in curves.groupby("corruption"):
        per_seed = g.groupby(["seed", x])["accuracy"].mean().unstack(0)  # [levels, seeds]
        mean, sd = per_seed.mean(axis=1), per_seed.std(axis=1).fillna(0)
        ax.plot(mean.index, mean.values, color=colors[c], label=f"{c:g}", lw=1.5)
        ax.fill_between(mean.index, (mean - sd).values, (mean + sd).values, color=colors[c], alpha=0.2, lw=0)


def _legend(fig, axes, **kw) -> None:  # noqa: ANN001
    """One legend of the corruption levels, right of the panels."""
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="label corruption", loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, title_fontsize=8, **kw)


def curve_figures(curves: pd.DataFrame) -> dict[str, Any]:
    """Accuracy vs fraction ablated, rows = layers, columns = orders; one PNG per (model, split, ablation)."""
    plt = _plt()
    figs = {}
    colors = _colors(sorted(curves["corruption"].unique()))
    abl = curves[curves["order"] != "noise"]
    for (model, split, ablation), g in abl.groupby(["model", "split", "ablation"]):
        layers, orders = list(dict.fromkeys(g["layer"])), list(dict.fromkeys(g["order"]))
        fig, axes = plt.subplots(len(layers), len(orders), figsize=(3.2 * len(orders), 2.8 * len(layers)),
                                 squeeze=False, sharex=True, sharey=True)
        for i, layer in enumerate(layers):
            for j, order in enumerate(orders):
                ax = axes[i][j]
                _panel(ax, g[(g.layer == layer) & (g.order == order)], "fraction_ablated", colors)
                ax.set_title(f"{layer}, {order}", fontsize=9)
                ax.set_xlabel("fraction of units ablated" if i == len(layers) - 1 else "")
                ax.set_ylabel(f"{split} accuracy" if j == 0 else "")
        _legend(fig, axes)
        fig.suptitle(f"{model}: cumulative {ablation} ablation ({split})", fontsize=10)
        safe = _slug(model)
        figs[f"delete_curves_{safe}_{split}_{ablation}.png"] = fig
    noise = curves[curves["order"] == "noise"]
    for (model, split), g in noise.groupby(["model", "split"]):
        layers = list(dict.fromkeys(g["layer"]))
        fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 2.8), squeeze=False, sharey=True)
        for j, layer in enumerate(layers):
            _panel(axes[0][j], g[g.layer == layer], "noise_scale", colors)
            axes[0][j].set_title(layer, fontsize=9)
            axes[0][j].set_xlabel("noise sd / unit sd")
        axes[0][0].set_ylabel(f"{split} accuracy")
        _legend(fig, axes)
        safe = _slug(model)
        figs[f"delete_noise_{safe}_{split}.png"] = fig
    return figs


def gap_figure(auc: pd.DataFrame) -> Any:
    """AUC (random order, train split, first ablation) against the generalisation gap, one panel per layer."""
    sel = auc[(auc["order"] == "random") & (auc["split"] == "train")]
    if sel.empty:
        return None
    ablation = "zero" if (sel["ablation"] == "zero").any() else sel["ablation"].iloc[0]
    sel = sel[sel["ablation"] == ablation]
    plt = _plt()
    layers = sorted(dict.fromkeys(sel["layer"]), key=lambda l: l == "all")  # the "all" site last
    colors = _colors(sorted(sel["corruption"].unique()))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 2.8), squeeze=False, sharey=True)
    for j, layer in enumerate(layers):
        g = sel[sel.layer == layer]
        for c, h in g.groupby("corruption"):
            axes[0][j].scatter(h["gap"], h["auc"], color=colors[c], s=18, label=f"{c:g}")
        axes[0][j].set_title(layer, fontsize=9)
        axes[0][j].set_xlabel("gap: train - test accuracy")
    axes[0][0].set_ylabel(f"AUC, random {ablation} ablation (train)")
    _legend(fig, axes)
    return fig


def selectivity_figure(units: pd.DataFrame) -> Any:
    """Selectivity vs single-unit accuracy drop on the training set, one panel per layer."""
    if units.empty:
        return None
    plt = _plt()
    layers = list(dict.fromkeys(units["layer"]))
    colors = _colors(sorted(units["corruption"].unique()))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 2.8), squeeze=False, sharey=True)
    for j, layer in enumerate(layers):
        g = units[units.layer == layer]
        for c, h in g.groupby("corruption"):
            axes[0][j].scatter(h["selectivity"], h["importance_train"], color=colors[c], s=5, alpha=0.5,
                               label=f"{c:g}")
        live = g[g["mean_activation"] > 0]  # dead units sit at (0, 0)
        rho = live.groupby(["model", "corruption", "seed"]).apply(
            lambda d: d["selectivity"].corr(d["importance_train"], method="spearman"), include_groups=False)
        axes[0][j].set_title(f"{layer}: rho (live units, mean over nets) {rho.mean():.2f}", fontsize=9)
        axes[0][j].set_xlabel("class selectivity index")
    axes[0][0].set_ylabel("training accuracy drop, unit ablated alone")
    _legend(fig, axes, markerscale=2)
    return fig


def figures(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Every figure the tables allow, by file name."""
    figs = curve_figures(tables["curves"])
    if "auc" in tables:
        figs["delete_auc_gap.png"] = gap_figure(tables["auc"])
    figs["delete_selectivity.png"] = selectivity_figure(tables.get("units", pd.DataFrame()))
    return {k: v for k, v in figs.items() if v is not None}
