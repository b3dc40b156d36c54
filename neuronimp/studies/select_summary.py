"""Summaries of the top-k selection study: mean and spread over runs, paired method differences, and the
paper's table (Dhamdhere et al. 2018, Table 2: accuracy % at k = 5, 10, 15, 20) beside ours.

A run is one (task, draw, split). Accuracy rows of the random-unit control are first averaged over their
control draws within a run, so every method contributes one number per run and the spread is across runs.
Pure: DataFrames in, DataFrames and text out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from neuronimp.studies.selection import ALL_UNITS, RANDOM_UNITS
from neuronimp.studies.papers import PAPER_KS, PAPER_SELECT as PAPER  # noqa: F401 (re-exported)
from neuronimp.studies.tabulate import markdown  # noqa: F401 (re-exported)

LABELS = {"activation": "Activation", "grad_x_act": "Gradient*Activation", "internal_influence":
          "Internal Influence", "conductance": "Conductance", RANDOM_UNITS: "Random units", ALL_UNITS: "All units"}
RUN = ["task", "draw", "split"]


def per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One accuracy per (task, draw, split, layer, method, k): control draws averaged."""
    keys = RUN + ["layer", "method", "k"]
    return rows.groupby(keys, as_index=False, sort=False).agg(accuracy=("accuracy", "mean"))


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (task, layer, method, k): mean, std (ddof 1) and standard error of accuracy over runs, n runs."""
    runs = per_run(rows)
    g = runs.groupby(["task", "layer", "method", "k"], sort=False).accuracy
    out = g.agg(mean="mean", std="std", n="size").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["se"] = out["std"] / np.sqrt(out["n"])
    return out


def paired(rows: pd.DataFrame, against: str = "conductance") -> pd.DataFrame:
    """Per (task, layer, k, other method): mean paired difference `against - other`, its standard error, and
    whether it exceeds twice the error (the methods share each run's images and split).

    Splits of one draw resample the same images, so they are not independent: with several draws the
    differences are first averaged per draw and the error is taken over draws (`over` = "draws"); with one
    draw it is taken over its splits (`over` = "splits", an optimistic error)."""
    runs = per_run(rows)
    runs = runs[runs.method != ALL_UNITS]
    wide = runs.pivot_table(index=RUN + ["layer", "k"], columns="method", values="accuracy")
    if against not in wide:
        return pd.DataFrame(columns=["task", "layer", "k", "method", "diff", "se", "n", "over", "beyond_noise"])
    out = []
    for other in [m for m in wide.columns if m != against]:
        d = (wide[against] - wide[other]).dropna()
        for (task, layer, k), grp in d.groupby(level=["task", "layer", "k"], sort=False):
            by_draw = grp.groupby(level="draw").mean()
            unit, vals = ("draws", by_draw) if len(by_draw) > 1 else ("splits", grp)
            n = len(vals)
            se = float(vals.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            mean = float(vals.mean())
            out.append({"task": task, "layer": layer, "k": int(k), "method": other, "diff": mean, "se": se,
                        "n": n, "over": unit, "beyond_noise": bool(n > 1 and abs(mean) > 2 * se)})
    if not out:
        return pd.DataFrame(columns=["task", "layer", "k", "method", "diff", "se", "n", "over", "beyond_noise"])
    df = pd.DataFrame(out)
    rank = {m: i for i, m in enumerate(method_order(list(df.method.unique())))}
    df["_r"] = df.method.map(rank)
    return df.sort_values(["task", "layer", "_r", "k"], kind="stable").drop(columns="_r").reset_index(drop=True)


def _cell(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "")


def method_order(methods: list[str]) -> list[str]:
    """Paper methods first (its order), then other engine methods, then the controls."""
    first = [m for m in LABELS if m in methods and m not in (RANDOM_UNITS, ALL_UNITS)]
    rest = [m for m in methods if m not in LABELS]
    return first + rest + [m for m in (RANDOM_UNITS, ALL_UNITS) if m in methods]


def table(summary: pd.DataFrame, ks: list[int], reference: str | None = None) -> pd.DataFrame:
    """The paper's layout: one row per (task, layer, method), one column per k with 'mean ± std' in %.

    The all-units row has one value (k = every unit), shown in each column. With `reference`, a row
    'paper: <method>' follows each paper method (blank where the paper has no such k).
    """
    rows = []
    for (task, layer), grp in summary.groupby(["task", "layer"], sort=False):
        for method in method_order(list(dict.fromkeys(grp.method))):
            sub = grp[grp.method == method].set_index("k")
            row = {"task": task, "layer": layer, "method": LABELS.get(method, method)}
            for k in ks:
                at = sub.iloc[0] if method == ALL_UNITS else (sub.loc[k] if k in sub.index else None)
                row[f"k={k}"] = "" if at is None else _cell(at["mean"], at["std"], int(at["n"]))
            if method == ALL_UNITS:
                row["method"] = f"All units ({int(sub.index[0])})"
            rows.append(row)
            ref = PAPER.get(reference or "", {}).get(method)
            if ref is not None and set(ks) & set(PAPER_KS):
                paper_row = {"task": task, "layer": layer, "method": f"paper: {LABELS[method]}"}
                for k in ks:
                    paper_row[f"k={k}"] = f"{ref[PAPER_KS.index(k)]:.2f}" if k in PAPER_KS else ""
                rows.append(paper_row)
    return pd.DataFrame(rows)


def comparison_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """Paired differences in percentage points, 'diff ± se', a '*' where |diff| > 2 se."""
    if diffs.empty:
        return diffs
    out = diffs.copy()
    out["conductance minus"] = out.method.map(lambda m: LABELS.get(m, m))
    out["diff (pp)"] = [f"{100 * d:+.2f} ± {100 * s:.2f}" + (" *" if b else "")
                        for d, s, b in zip(out["diff"], out["se"], out["beyond_noise"])]
    return out[["task", "layer", "k", "conductance minus", "diff (pp)", "n", "over"]]
