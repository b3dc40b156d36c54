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

from neuronimp.report.summaries import curve_keys, curve_x, selection_reference
from neuronimp.report.tables import Table, slug
from neuronimp.runner.io import atomic_path
from neuronimp.studies import select_summary

DPI = 120


@contextmanager
def figure(path: Path, rows: int, cols: int, size: tuple[float, float] = (3.6, 2.8)) -> Iterator[Any]:
    """A figure of rows x cols panels, saved atomically as PNG to `path` and closed whatever happens."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

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
    """One figure per (model, layer, ablation) of a delete curves table; noise curves get their own."""
    df = df.assign(_x=curve_x(df), _corr=df["corruption"] if "corruption" in df else 0.0)
    fig_keys = [c for c in curve_keys(df) if c in ("model", "layer", "ablation")]
    made = []
    for key, g in (df.groupby(fig_keys, sort=True) if fig_keys else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        panels = list(g.groupby([c for c in ("order", "split") if c in g], sort=True))
        path = out / f"{t.slug}__curves_{slug('_'.join(map(str, key)))}.png"
        rows, cols = _grid(len(panels))
        levels = sorted(g["_corr"].unique())
        import matplotlib

        cmap = matplotlib.colormaps["viridis"]
        with figure(path, rows, cols) as (fig, axes):
            for ax, (pkey, p) in zip(axes.flat, panels):
                for i, c in enumerate(levels):
                    curve = p[p["_corr"] == c].groupby("_x")["accuracy"].agg(["mean", "min", "max"])
                    if curve.empty:
                        continue
                    color = cmap(i / max(1, len(levels) - 1))
                    ax.plot(curve.index, curve["mean"], color=color, lw=1.2, label=f"corruption {c:g}")
                    ax.fill_between(curve.index, curve["min"], curve["max"], color=color, alpha=0.15, lw=0)
                noise = p["fraction_ablated"].isna().all()
                ax.set_xlabel("noise scale" if noise else "fraction of units ablated")
                ax.set_ylabel("accuracy")
                ax.set_ylim(-0.02, 1.02)
                ax.set_title(" / ".join(map(str, pkey if isinstance(pkey, tuple) else (pkey,))), fontsize=9)
                if len(levels) > 1:
                    ax.legend(fontsize=7)
            _hide_unused(axes, len(panels))
            fig.suptitle(f"{t.rel}: " + ", ".join(f"{k} {v}" for k, v in zip(fig_keys, key)), fontsize=10)
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
