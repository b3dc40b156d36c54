"""Study 3: top-k unit selection (Dhamdhere et al. 2018, sec. 6, "feature selection").

A task is a set of classes with a few images each. Per resampled split, every class's first
`select_per_class` images (after a seeded shuffle) select units and fit the probe; the rest evaluate it.
Per method: each unit's score for the image's class is averaged per class (a [C, U] table), the per-class
rankings are merged into one order of units, and the first k units feed a multinomial logistic regression
on their activations. Controls: k random units (several draws) and all units of the layer.

Pure: arrays in, dict rows out. No I/O, no progress, no devices; scikit-learn fits the probe.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuronimp.studies.select import SelectCfg

RANDOM_UNITS = "random_units"  # the random-unit control's method name in rows
ALL_UNITS = "all_units"  # the all-units control's method name in rows


@dataclass(frozen=True)
class Split:
    """Positions (into the task's items) that select units and fit the probe, and those that evaluate it."""

    select: np.ndarray  # [C * select_per_class] int
    evaluate: np.ndarray  # [C * (per_class - select_per_class)] int


def class_split(labels: np.ndarray, n_select: int, seed: Sequence[int]) -> Split:
    """Per class a seeded shuffle: the first `n_select` items select, the rest evaluate (disjoint, stratified)."""
    rng = np.random.default_rng(list(seed))
    sel, ev = [], []
    for c in np.unique(labels):  # sorted, so the draw does not depend on item order across classes
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) <= n_select:
            raise ValueError(f"class {c} has {len(idx)} items; need more than {n_select} to keep some for evaluation")
        sel.append(idx[:n_select])
        ev.append(idx[n_select:])
    return Split(np.sort(np.concatenate(sel)), np.sort(np.concatenate(ev)))


def class_scores(scores: np.ndarray, labels: np.ndarray, classes: Sequence[int], use_abs: bool = False,
                 aggregate: str = "mean") -> np.ndarray:
    """[N, U] per-image scores -> [C, U] mean score of each unit over each class's images.

    aggregate="contrast": minus the mean of the other classes' rows, so a unit that matters equally for every
    class of the task (important, but no help in telling them apart) scores 0.
    """
    s = np.abs(scores) if use_abs else scores
    means = np.stack([s[labels == c].mean(0) for c in classes])  # C x U
    if aggregate == "mean":
        return means
    if aggregate == "contrast":
        C = len(classes)  # noqa: N806
        return means - (means.sum(0, keepdims=True) - means) / max(C - 1, 1)
    raise ValueError(f"unknown aggregate {aggregate!r}; allowed: mean, contrast")


def _order(row: np.ndarray) -> np.ndarray:
    """Units by decreasing score; ties by unit index (stable)."""
    return np.argsort(-row, kind="stable")


def merge_rankings(per_class: np.ndarray, how: str) -> np.ndarray:
    """[C, U] class scores -> all U units in selection order (top-k = the first k).

    round_robin: classes take turns adding their best unit not yet chosen (every class is represented).
    rank_sum:    Borda count; units by the sum over classes of their rank (0 = best), ties by best score.
    mean_score:  units by their score averaged over classes (= over all images when classes are balanced).
    """
    C, U = per_class.shape  # noqa: N806
    if how == "round_robin":
        orders = [_order(r) for r in per_class]
        pos = [0] * C
        chosen: list[int] = []
        seen = np.zeros(U, dtype=bool)
        while len(chosen) < U:
            for c in range(C):
                while pos[c] < U and seen[orders[c][pos[c]]]:
                    pos[c] += 1
                if pos[c] < U:
                    u = int(orders[c][pos[c]])
                    seen[u] = True
                    chosen.append(u)
        return np.asarray(chosen[:U])
    if how == "rank_sum":
        ranks = np.empty_like(per_class, dtype=np.int64)
        for c in range(C):
            ranks[c, _order(per_class[c])] = np.arange(U)
        return np.lexsort((-per_class.max(0), ranks.sum(0)))  # last key sorts first
    if how == "mean_score":
        return _order(per_class.mean(0))
    raise ValueError(f"unknown merge {how!r}; allowed: round_robin, rank_sum, mean_score")


def unit_order(scores: np.ndarray, labels: np.ndarray, classes: Sequence[int], merge: str,
               use_abs: bool = False, aggregate: str = "mean") -> np.ndarray:
    """Selection order of the units from per-image scores [N, U] of the selection images."""
    return merge_rankings(class_scores(scores, labels, classes, use_abs, aggregate), merge)


def probe_accuracy(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                   c: float = 1.0, standardize: bool = True, max_iter: int = 2000) -> tuple[float, float]:
    """(fit accuracy, evaluation accuracy) of an L2 multinomial logistic regression (scikit-learn, lbfgs)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if standardize:
        scaler = StandardScaler().fit(x_fit)  # zero-variance columns keep scale 1
        x_fit, x_eval = scaler.transform(x_fit), scaler.transform(x_eval)
    clf = LogisticRegression(C=c, max_iter=max_iter)  # lbfgs: multinomial (softmax) for > 2 classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # separable data: weights grow until max_iter
        clf.fit(x_fit, y_fit)
    return float(clf.score(x_fit, y_fit)), float(clf.score(x_eval, y_eval))


def unit_features(features: np.ndarray, units: np.ndarray) -> np.ndarray:
    """[N, U, P] activations (P = 1 pooled, or spatial positions) -> [N, len(units) * P] probe inputs."""
    return features[:, units, :].reshape(features.shape[0], -1)


def select_rows(
    scores: Mapping[tuple[str, str], np.ndarray],
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    classes: Sequence[int],
    splits: Sequence[Split],
    cfg: SelectCfg,
    seed: Sequence[int] = (0,),
) -> Iterator[dict]:
    """One row per (split, layer, method, k[, control draw]) with the probe's accuracy on the evaluation items.

    scores[(layer, method)]: [N, U] per-item scores for the item's class (rows outside every split's
    selection set are never read); features[layer]: [N, U, P]; labels: [N] class of each item.
    """
    for s, split in enumerate(splits):
        y_fit, y_ev = labels[split.select], labels[split.evaluate]
        base = {"split": s, "n_select": len(split.select), "n_eval": len(split.evaluate)}

        def fit(layer: str, units: np.ndarray) -> dict:
            f = features[layer]
            acc_fit, acc = probe_accuracy(unit_features(f[split.select], units), y_fit,
                                          unit_features(f[split.evaluate], units), y_ev,
                                          cfg.probe_c, cfg.standardize, cfg.max_iter)
            return {**base, "k": len(units), "accuracy": acc, "fit_accuracy": acc_fit,
                    "units": ";".join(str(int(u)) for u in units)}

        for layer in features:
            n_units = features[layer].shape[1]
            if max(cfg.ks) > n_units:
                raise ValueError(f"k = {max(cfg.ks)} exceeds the {n_units} units of layer {layer!r}")
            for (lay, method), sc in scores.items():
                if lay != layer:
                    continue
                order = unit_order(sc[split.select], y_fit, classes, cfg.merge, cfg.use_abs, cfg.aggregate)
                for k in cfg.ks:
                    yield {"layer": layer, "method": method, "control_draw": None, **fit(layer, order[:k])}
            for r in range(cfg.random_draws):
                perm = np.random.default_rng([*seed, s, r]).permutation(n_units)  # nested k-sets
                for k in cfg.ks:
                    yield {"layer": layer, "method": RANDOM_UNITS, "control_draw": r, **fit(layer, perm[:k])}
            if cfg.all_units:
                yield {"layer": layer, "method": ALL_UNITS, "control_draw": None,
                       **fit(layer, np.arange(n_units))}
