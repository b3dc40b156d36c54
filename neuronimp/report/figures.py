"""PNG figures of the result tables (matplotlib, Agg backend: no display needed).

flip histograms   per (layer, ablation): one panel per method, images by the number of units ablated until
                  the prediction flipped, plus a grey bar for eligible images not flipped within max_k
deletion curves   per (model, layer, ablation): one panel per (order, split), accuracy against the fraction
                  of units ablated, a line per label-corruption level (mean over seeds and draws, min-max band)
selection curves  per (task, layer): accuracy against k, a line per method (mean ± std over draws and
                  splits), the all-units probe as a dotted line, the paper's numbers as open markers
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronimp.plotting import pyplot
from neuronimp.report.summaries import selection_reference
from neuronimp.report.tables import Table, slug
from neuronimp.studies.delete_figures import curve_figures
from neuronimp.runner.io import atomic_path
from neuronimp.studies import select_summary

DPI = 120


@contextmanager
def figure(path: Path, rows: int, cols: int, size: tuple[float, float] = (3.6, 2.8)) -> Iterator[Any]:
    """A figure of rows x cols panels, saved atomically as PNG to `path` and closed whatever happens."""
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return -(-n // cols), cols


def _hide_unused(axes: np.ndarray, n: int) -> None:
    for ax in axes.flat[n:]:
        ax.set_visible(False)


def flip_histograms(t: Table, df: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per (layer, ablation) of an ablate per-image table."""
    made = []
    for (layer, ablation), g in df.groupby(["layer", "ablation"], sort=False):
        methods = list(dict.fromkeys(g["method"]))
        path = out / f"{t.slug}__flips_{slug(str(layer))}_{slug(str(ablation))}.png"
        rows, cols = _grid(len(methods))
        max_k = int(pd.to_numeric(g.get("max_k", g["k_flip"]), errors="coerce").max() or 1)
        with figure(path, rows, cols) as (fig, axes):
            for ax, method in zip(axes.flat, methods):
                m = g[g["method"] == method]
                if "never_flips" in m:
                    m = m[~m["never_flips"].astype(str).eq("True")]
                flipped = m["flipped"].astype(str).eq("True")
                k = pd.to_numeric(m.loc[flipped, "k_flip"], errors="coerce").dropna().astype(int)
                ax.hist(k, bins=np.arange(0.5, max_k + 1.5), color="tab:blue")
                if (~flipped).sum():
                    ax.bar(max_k + 2, int((~flipped).sum()), width=1.0, color="grey", label="not flipped")
                    ax.legend(fontsize=7)
                ax.axvline(10.5, color="k", lw=0.6, ls="--")
                mean = f"mean {k.mean():.1f}" if len(k) else "no flips"
                ax.set_title(f"{method} ({mean}, n={len(m)})", fontsize=9)
                ax.set_xlabel("units ablated until the flip")
                ax.set_ylabel("images")
            _hide_unused(axes, len(methods))
            fig.suptitle(f"{t.rel}: layer {layer}, {ablation} ablation", fontsize=10)
        made.append(path)
    return made


def deletion_curves(t: Table, df: pd.DataFrame, out: Path) -> list[Path]:
    """The delete study's own figures (studies/delete_figures.py): accuracy vs fraction ablated per
    (model, split, ablation), rows = layers, columns = orders, one colour per corruption level; noise curves apart."""
    defaults = {"model": "", "split": "", "ablation": "", "layer": "", "order": "random", "corruption": 0.0, "seed": 0}
    df = df.assign(**{k: v for k, v in defaults.items() if k not in df})
    made = []
    for name, fig in curve_figures(df).items():
        path = out / f"{t.slug}__{name.removeprefix('delete_')}"
        plt = pyplot()
        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)
        made.append(path)
    return made


def selection_curves(t: Table, df: pd.DataFrame, out: Path) -> list[Path]:
    """One figure per (task, layer) of a select table, with the paper's numbers when the task matches."""
    df = df if "layer" in df else df.assign(layer="")
    ref = select_summary.PAPER.get(selection_reference(df, t.meta) or "", {})
    made = []
    for (task, layer), g in df.groupby(["task", "layer"], sort=True):
        path = out / f"{t.slug}__selection_{slug(str(task))}_{slug(str(layer))}.png"
        with figure(path, 1, 1, size=(5.0, 3.6)) as (fig, axes):
            ax = axes[0, 0]
            methods = select_summary.method_order(list(dict.fromkeys(g["method"])))
            for i, method in enumerate(methods):
                m = g[g["method"] == method]
                color = f"C{i % 10}"
                label = select_summary.LABELS.get(method, method)
                if method == select_summary.ALL_UNITS:
                    ax.axhline(100 * m["accuracy"].mean(), color=color, ls=":", label=label)
                    continue
                s = m.groupby("k")["accuracy"].agg(["mean", "std"]).fillna(0.0)
                ax.errorbar(s.index, 100 * s["mean"], yerr=100 * s["std"], color=color, marker="o", ms=3,
                            capsize=2, ls="--" if method == select_summary.RANDOM_UNITS else "-", label=label)
                if method in ref:
                    ax.plot(select_summary.PAPER_KS, ref[method], color=color, marker="o", mfc="none", ls="",
                            ms=6, label=f"paper: {label}")
            ax.set_xticks(sorted(int(k) for k in g.loc[g["method"] != select_summary.ALL_UNITS, "k"].unique()))
            ax.set_xlabel("k (units selected)")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{t.rel}: {task}" + (f", layer {layer}" if layer else ""), fontsize=9)
            ax.legend(fontsize=6, ncol=2)
        made.append(path)
    return made


PLOTTERS = {"flips": flip_histograms, "curves": deletion_curves, "selection": selection_curves}
