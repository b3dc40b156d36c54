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

# Dhamdhere et al. 2018, sec. 5: GoogLeNet mixed4d, 100 ImageNet images, units zeroed in order of importance
PAPER_FLIPS = {
    ("conductance", "zero"): {"mean k": "3.7", "> 10 units": "3/100", "max k": "16", "flipped by top 10": ""},
    ("internal_influence", "zero"): {"mean k": "", "> 10 units": "", "max k": "", "flipped by top 10": "5/100"},
}
PAPER_FLIPS_NOTE = ("paper (Dhamdhere et al. 2018, GoogLeNet mixed4d, 100 ImageNet images, zero ablation): in "
                    "conductance order the prediction flips after 3.7 units on average, 3 of 100 images need more "
                    "than 10 units, at most 16; ablating the top 10 units by internal influence flips only 5 of 100.")
PAPER_CURVES_NOTE = ("paper (Morcos et al. 2018): networks that memorise (trained on randomised labels) lose accuracy "
                     "faster under cumulative ablation than networks that generalise, and a unit's class "
                     "selectivity predicts its importance poorly.")
PAPER_SELECT_NOTE = ("paper (Dhamdhere et al. 2018, feature-selection table): accuracy (%) of a classifier on the "
                     "top-k units; 'paper:' rows give the published numbers where the task matches.")


def _ratio(n: int, d: int) -> str:
    return f"{n}/{d}" if d else ""


def flips_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, method, ablation): flip statistics over eligible rows, then the paper's numbers.

    Eligible rows exclude images whose prediction survives ablating every unit (`never_flips`); random
    orders pool their draws. '> 10 units' counts eligible rows not flipped by the first 10 units.
    """
    rows = []
    for (layer, method, ablation), g in df.groupby(["layer", "method", "ablation"], sort=False):
        never = g["never_flips"].astype(str).eq("True") if "never_flips" in g else pd.Series(False, g.index)
        e = g[~never]
        flipped = e["flipped"].astype(str).eq("True")
        k = pd.to_numeric(e["k_flip"], errors="coerce")
        kf = k[flipped]
        within10 = int((flipped & (k <= 10)).sum())
        paper = PAPER_FLIPS.get((method, ablation), {})
        rows.append({
            "layer": layer, "method": method, "ablation": ablation, "images": g["image_id"].nunique(),
            "eligible": len(e), "flipped": int(flipped.sum()),
            "mean k": round(float(kf.mean()), 2) if len(kf) else np.nan,
            "median k": float(kf.median()) if len(kf) else np.nan,
            "max k": int(kf.max()) if len(kf) else np.nan,
            "> 10 units": _ratio(len(e) - within10, len(e)),
            "flipped by top 10": _ratio(within10, len(e)),
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


