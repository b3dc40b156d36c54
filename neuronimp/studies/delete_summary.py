"""Summaries of the deletion study (pure functions of its tables): the area under each ablation curve,
and how it relates to the generalisation gap across networks (Morcos et al. 2018, sec. 3.1, fig. 2-3).

AUC: the trapezoid area under accuracy / unablated accuracy against the fraction of units ablated, over
[0, 1]; for the noise curves against the noise scale, divided by the largest scale. 1 means no loss at all.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from neuronimp.studies.selectivity_study import spearman

CURVE_KEYS = ["layer", "order", "ablation", "split"]
AUC_GROUP = ["model", "layer", "order", "ablation", "split"]  # one AUC comparison across networks


def curve_auc(x: np.ndarray, acc: np.ndarray) -> float:
    """Trapezoid area of acc / acc(x = 0) over x, divided by the x range; NaN when acc(0) is 0."""
    i = np.argsort(x, kind="stable")
    x, acc = np.asarray(x, float)[i], np.asarray(acc, float)[i]
    if len(x) < 2 or acc[0] <= 0 or x[-1] == x[0]:
        return float("nan")
    y = acc / acc[0]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def curve_x(curves: pd.DataFrame) -> pd.Series:
    """The x of each curve row: the fraction of units ablated, or the noise scale for noise curves."""
    return curves["fraction_ablated"].astype(float).fillna(curves["noise_scale"].astype(float))


def auc_table(curves: pd.DataFrame, net_keys: list[str]) -> pd.DataFrame:
    """One row per (network, layer, order, ablation, split): unablated accuracy, AUC (mean and sd over draws)."""
    c = curves.assign(x=curve_x(curves))
    rows = []
    for key, g in c.groupby(net_keys + CURVE_KEYS, sort=True, dropna=False):
        aucs = [curve_auc(d["x"].to_numpy(), d["accuracy"].to_numpy()) for _, d in g.groupby("draw")]
        first = g.loc[g["x"].idxmin()]
        rows.append({**dict(zip(net_keys + CURVE_KEYS, key)), "draws": len(aucs),
                     "acc_unablated": float(first["accuracy"]), "auc": float(np.mean(aucs)),
                     "auc_draw_sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0})
    return pd.DataFrame(rows)


def gap_correlation(auc: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Across networks: Spearman rho and Pearson r of AUC with the generalisation gap, per `group`."""
    rows = []
    for key, g in auc.groupby(group, sort=True):
        a, gap = g["auc"].to_numpy(float), g["gap"].to_numpy(float)
        rho, p = spearman(a, gap)
        ok = np.isfinite(a) & np.isfinite(gap)
        a, gap = a[ok], gap[ok]
        r = float(np.corrcoef(a, gap)[0, 1]) if len(a) >= 3 and np.ptp(a) and np.ptp(gap) else float("nan")
        rows.append({**dict(zip(group, key)), "networks": int(ok.sum()), "spearman_rho": rho, "p_value": p,
                     "pearson_r": r})
    return pd.DataFrame(rows)


def by_corruption(auc: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Mean and sd over seeds of AUC, accuracies and gap per (group..., corruption)."""
    cols = {"auc": "auc", "train_acc": "train_acc", "test_acc": "test_acc", "gap": "gap"}
    g = auc.groupby(group + ["corruption"], sort=True)
    out = g.agg(seeds=("seed", "nunique"), **{f"{k}_mean": (v, "mean") for k, v in cols.items()},
                auc_sd=("auc", "std"), fit=("reached_fit_target", "mean"))
    return out.reset_index()
