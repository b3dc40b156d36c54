"""Summary tables of each kind of result, with the papers' numbers beside ours where the papers give them.

Pure: DataFrames in, DataFrames out. Recomputed from the row tables (so a merged sharded run is summarised
as a whole, which per-shard summary files cannot do).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from neuronimp.studies import select_summary
from neuronimp.studies.tabulate import markdown  # noqa: F401 (re-exported)
from neuronimp.studies.delete_summary import curve_auc
from neuronimp.studies.flips import summarize
from neuronimp.studies.papers import (PAPER_CURVES_NOTE, PAPER_FLIPS, PAPER_FLIPS_NOTE,  # noqa: F401 (re-exported)
                                      PAPER_SELECT_NOTE)

def _ratio(n: int, d: int) -> str:
    return f"{n}/{d}" if d else ""


def flips_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, method, ablation): the ablate study's own flip statistics (`studies.flips.summarize`, over
    eligible rows: images whose prediction survives ablating every unit are left out; random orders pool their
    draws), in the paper's layout and beside the paper's numbers. '> 10 units' counts eligible rows not flipped
    by the first 10 units."""
    if "never_flips" not in df:
        df = df.assign(never_flips=False)
    rows = []
    for r in summarize(df).itertuples(index=False):
        within10 = int(round(r.share_flip_le10 * r.eligible)) if r.eligible else 0
        paper = PAPER_FLIPS.get((r.method, r.ablation), {})
        rows.append({
            "layer": r.layer, "method": r.method, "ablation": r.ablation, "images": r.images,
            "eligible": r.eligible, "flipped": r.flipped,
            "mean k": round(float(r.mean_k_flip), 2) if r.flipped else np.nan,
            "median k": float(r.median_k_flip) if r.flipped else np.nan,
            "max k": int(r.max_k_flip) if r.flipped else np.nan,
            "> 10 units": _ratio(r.eligible - within10, r.eligible),
            "flipped by top 10": _ratio(within10, r.eligible),
            **{f"paper: {c}": paper.get(c, "") for c in ("mean k", "> 10 units", "max k", "flipped by top 10")},
        })
    return pd.DataFrame(rows)


def curve_x(df: pd.DataFrame) -> pd.Series:
    """The x of each curve row: fraction ablated, or the noise scale for noise curves."""
    x = pd.to_numeric(df["fraction_ablated"], errors="coerce")
    if "noise_scale" in df:
        x = x.fillna(pd.to_numeric(df["noise_scale"], errors="coerce"))
    return x


def curve_keys(df: pd.DataFrame) -> list[str]:
    """The columns that name one curve family (present ones of model, layer, order, ablation, split)."""
    return [c for c in ("model", "layer", "order", "ablation", "split") if c in df]


def curves_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, order, ablation, split, corruption): curves, unablated accuracy, accuracy at half
    the units ablated, and the normalised area under the curve (mean ± sd over seeds and draws)."""
    df = df.assign(_x=curve_x(df))
    keys = curve_keys(df) + (["corruption"] if "corruption" in df else [])
    per_curve = [c for c in ("seed", "draw") if c in df]
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        aucs, half, first = [], [], []
        for _, c in (g.groupby(per_curve, dropna=False) if per_curve else [(None, g)]):
            c = c.sort_values("_x")
            x, acc = c["_x"].to_numpy(float), c["accuracy"].to_numpy(float)
            aucs.append(curve_auc(x, acc))
            first.append(acc[0])
            deletion = c["fraction_ablated"].notna().all()  # noise curves run over a noise scale instead
            half.append(float(np.interp(0.5, x, acc)) if deletion and x.max() >= 0.5 else np.nan)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "curves": len(aucs),
                     "acc unablated": np.nanmean(first), "acc at 50% ablated": np.nanmean(half) if
                     np.isfinite(half).any() else np.nan,
                     "auc": np.nanmean(aucs) if np.isfinite(aucs).any() else np.nan,
                     "auc sd": float(np.nanstd(aucs, ddof=1)) if np.isfinite(aucs).sum() > 1 else 0.0})
    return pd.DataFrame(rows)


def selection_reference(df: pd.DataFrame, meta: dict) -> str | None:
    """Which paper row to show: the config's select.reference, else a task named like a paper task."""
    ref = ((meta.get("config") or {}).get("select") or {}).get("reference")
    if ref in select_summary.PAPER:
        return ref
    tasks = {str(t).lower().replace(" ", "_") for t in df["task"].unique()}
    found = sorted(tasks & set(select_summary.PAPER))
    return found[0] if found else None


def selection_summary(df: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The paper's layout: a row per (task, layer, method), a column per k ('mean ± std' %), paper rows."""
    if "layer" not in df:
        df = df.assign(layer="")
    if "draw" not in df:
        df = df.assign(draw=0)
    if "split" not in df:
        df = df.assign(split=0)
    summary = select_summary.summarize(df)
    ks = sorted(int(k) for k in df.loc[df["method"] != "all_units", "k"].unique())
    return select_summary.table(summary, ks, selection_reference(df, meta))


def scores_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, method): inputs, units, mean score, mean |score|, and the largest |completeness delta|."""
    g = df.groupby(["layer", "method"], sort=False)
    out = g.agg(inputs=("input_id", "nunique"), units=("unit", "nunique"), mean_score=("score", "mean"))
    out["mean_abs_score"] = g["score"].apply(lambda s: s.abs().mean())
    if "delta" in df:
        out["max_abs_delta"] = g["delta"].apply(lambda d: pd.to_numeric(d, errors="coerce").abs().max())
    return out.reset_index()


