"""Study 3 (top-k selection): the class split, per-class aggregation, merging, the probe, and a synthetic task
whose informative units are planted, so the right answer is known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from neuronimp.config import SelectCfg
from neuronimp.studies.selection import (
    ALL_UNITS,
    RANDOM_UNITS,
    class_scores,
    class_split,
    merge_rankings,
    probe_accuracy,
    select_rows,
    unit_features,
)
from neuronimp.studies.select_summary import PAPER, paired, summarize, table


def test_class_split_is_disjoint_stratified_and_seeded() -> None:
    labels = np.repeat([3, 7, 9], 10)  # 3 classes x 10 items
    a = class_split(labels, 6, (0, 1))
    assert len(a.select) == 18 and len(a.evaluate) == 12
    assert not set(a.select) & set(a.evaluate)
    assert sorted(np.concatenate([a.select, a.evaluate])) == list(range(30))
    for c in (3, 7, 9):
        assert (labels[a.select] == c).sum() == 6 and (labels[a.evaluate] == c).sum() == 4
    b = class_split(labels, 6, (0, 1))
    c = class_split(labels, 6, (0, 2))
    assert np.array_equal(a.select, b.select)  # same seed, same split
    assert not np.array_equal(a.select, c.select)  # another split index, another split
    with pytest.raises(ValueError, match="need more than 10"):
        class_split(labels, 10, (0,))


def test_class_scores_mean_per_class_by_hand() -> None:
    s = np.array([[1.0, -4.0], [3.0, 0.0], [-2.0, 2.0]])
    y = np.array([0, 0, 1])
    assert class_scores(s, y, [0, 1]).tolist() == [[2.0, -2.0], [-2.0, 2.0]]
    assert class_scores(s, y, [1, 0], use_abs=True).tolist() == [[2.0, 2.0], [2.0, 2.0]]
    assert class_scores(s, y, [0, 1], aggregate="contrast").tolist() == [[4.0, -4.0], [-4.0, 4.0]]
    three = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 1.0]])  # unit 1 matters equally for every class -> 0
    assert class_scores(three, np.arange(3), [0, 1, 2], aggregate="contrast").tolist() == [
        [1.5, 0.0], [-1.5, 0.0], [0.0, 0.0]]


def test_merge_rankings_by_hand() -> None:
    # class 0 prefers units 0 > 1 > 2 > 3; class 1 prefers 3 > 0 > 2 > 1
    per_class = np.array([[9.0, 8.0, 1.0, 0.0],
                          [5.0, 0.0, 1.0, 7.0]])
    assert merge_rankings(per_class, "round_robin").tolist() == [0, 3, 1, 2]
    # ranks: class 0 -> [0,1,2,3], class 1 -> [1,3,2,0]; sums [1,4,4,3]; tie 1 vs 2 by best score (8 > 1)
    assert merge_rankings(per_class, "rank_sum").tolist() == [0, 3, 1, 2]
    # means [7, 4, 1, 3.5]
    assert merge_rankings(per_class, "mean_score").tolist() == [0, 1, 3, 2]
    # a unit both classes want is taken once; the next class moves on to its next unit
    both = np.array([[5.0, 4.0, 0.0], [5.0, 0.0, 4.0]])
    assert merge_rankings(both, "round_robin").tolist() == [0, 2, 1]
    with pytest.raises(ValueError):
        merge_rankings(both, "median")


def test_probe_separable_and_uninformative() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    x = np.eye(3)[y] * 5 + rng.normal(0, 0.3, (60, 3))
    fit_acc, acc = probe_accuracy(x[::2], y[::2], x[1::2], y[1::2])
    assert fit_acc == 1.0 and acc == 1.0
    const = np.ones((60, 2))  # no information: the probe predicts one class -> 1/3 of a balanced set
    assert probe_accuracy(const[::2], y[::2], const[1::2], y[1::2])[1] == pytest.approx(1 / 3)


def test_unit_features_keeps_all_positions_of_the_chosen_units() -> None:
    f = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # N=2, U=3, P=4
    assert unit_features(f, np.array([2, 0])).tolist() == [[8, 9, 10, 11, 0, 1, 2, 3],
                                                           [20, 21, 22, 23, 12, 13, 14, 15]]


def planted_task(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """3 classes x 40 items, 30 units: unit c (c < 3) is high exactly for class c; all others are noise."""
    rng = np.random.default_rng(seed)
    classes = [0, 1, 2]
    labels = np.repeat(classes, 40)
    act = rng.normal(0, 1, (120, 30))
    act[np.arange(120), labels] += 4.0  # the planted informative units 0, 1, 2
    features = {"fc": act[:, :, None]}  # N x U x 1
    good = np.zeros((120, 30))
    good[np.arange(120), labels] = 1.0 + rng.uniform(0, 0.1, 120)  # a method that finds the planted units
    good += rng.uniform(0, 0.2, (120, 30))
    bad = rng.uniform(0, 0.2, (120, 30))
    bad[:, 10:13] += 1.0  # a method that prefers three noise units
    scores = {("fc", "good"): good, ("fc", "bad"): bad}
    return labels, features, scores


def test_planted_units_are_found_and_beat_controls() -> None:
    labels, features, scores = planted_task()
    cfg = SelectCfg(ks=[1, 3], per_class=40, select_per_class=25, splits=3, random_draws=4)
    splits = [class_split(labels, 25, (0, s)) for s in range(3)]
    with threadpool_limits(1):  # tiny fits: BLAS threads only add contention
        rows = pd.DataFrame(select_rows(scores, features, labels, [0, 1, 2], splits, cfg, seed=(0,)))
    # counts: per split, 2 methods x 2 ks + 4 control draws x 2 ks + 1 all-units row
    assert len(rows) == 3 * (4 + 8 + 1)
    good3 = rows[(rows.method == "good") & (rows.k == 3)]
    assert set(good3.units) == {"0;1;2"}  # round robin: each class contributes its planted unit
    assert good3.accuracy.min() >= 0.95
    assert (rows[(rows.method == "good") & (rows.k == 1)].accuracy.between(0.55, 0.72)).all()  # 1 of 3 units
    bad3 = rows[(rows.method == "bad") & (rows.k == 3)]
    assert {tuple(sorted(u.split(";"))) for u in bad3.units} == {("10", "11", "12")}
    assert bad3.accuracy.max() <= 0.6
    assert rows[rows.method == ALL_UNITS].accuracy.min() >= 0.9
    assert (rows[rows.method == ALL_UNITS].k == 30).all()
    rnd = rows[rows.method == RANDOM_UNITS]
    assert sorted(rnd.control_draw.unique()) == [0, 1, 2, 3]
    assert rnd[rnd.k == 3].accuracy.mean() < good3.accuracy.mean() - 0.3
    # nested control sets: the k=1 unit of a draw is the first of its k=3 units
    for (s, r), g in rnd.groupby(["split", "control_draw"]):
        assert g[g.k == 3].units.iloc[0].startswith(g[g.k == 1].units.iloc[0] + ";")
    # pure and seeded: a second pass gives the same rows
    with threadpool_limits(1):
        again = pd.DataFrame(select_rows(scores, features, labels, [0, 1, 2], splits, cfg, seed=(0,)))
    pd.testing.assert_frame_equal(rows, again)


def test_k_larger_than_layer_is_refused() -> None:
    labels, features, scores = planted_task()
    cfg = SelectCfg(ks=[31], per_class=40, select_per_class=25)
    with pytest.raises(ValueError, match="exceeds the 30 units"):
        list(select_rows(scores, features, labels, [0, 1, 2], [class_split(labels, 25, (0,))], cfg))


def _rows() -> pd.DataFrame:
    base = {"task": "t", "layer": "fc", "k": 5}
    rows = [{**base, "draw": 0, "split": s, "method": "conductance", "accuracy": a} for s, a in enumerate([0.9, 0.8])]
    rows += [{**base, "draw": 0, "split": s, "method": "activation", "accuracy": a} for s, a in enumerate([0.6, 0.75])]
    rows += [{**base, "draw": 0, "split": s, "method": RANDOM_UNITS, "accuracy": a, "control_draw": r}
             for s, accs in enumerate([(0.2, 0.4), (0.5, 0.5)]) for r, a in enumerate(accs)]
    rows += [{**base, "k": 40, "draw": 0, "split": s, "method": ALL_UNITS, "accuracy": 1.0} for s in range(2)]
    return pd.DataFrame(rows)


def test_summary_numbers_by_hand() -> None:
    s = summarize(_rows()).set_index("method")
    assert s.loc["conductance", "mean"] == pytest.approx(0.85)
    assert s.loc["conductance", "std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert s.loc[RANDOM_UNITS, "mean"] == pytest.approx(0.4)  # control draws averaged per run: 0.3 and 0.5
    assert s.loc[RANDOM_UNITS, "std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert int(s.loc[RANDOM_UNITS, "n"]) == 2
    d = paired(_rows()).set_index("method")
    assert d.loc["activation", "diff"] == pytest.approx(0.175)  # differences 0.3 and 0.05
    assert d.loc["activation", "se"] == pytest.approx(np.std([0.3, 0.05], ddof=1) / np.sqrt(2))
    assert not d.loc["activation", "beyond_noise"]  # 0.175 < 2 * 0.125
    assert d.loc[RANDOM_UNITS, "diff"] == pytest.approx(0.45)  # 0.6 and 0.3
    assert ALL_UNITS not in d.index
    assert set(d.over) == {"splits"}  # one draw: the error is over its splits


def test_paired_error_is_over_draws_when_there_are_several() -> None:
    a, b = _rows(), _rows()
    b["draw"] = 1
    b.loc[b.method == "activation", "accuracy"] = [0.5, 0.5]  # draw 1 differences: 0.4, 0.3 -> mean 0.35
    d = paired(pd.concat([a, b])).set_index("method")
    assert d.loc["activation", "over"] == "draws" and int(d.loc["activation", "n"]) == 2
    assert d.loc["activation", "diff"] == pytest.approx((0.175 + 0.35) / 2)
    assert d.loc["activation", "se"] == pytest.approx(np.std([0.175, 0.35], ddof=1) / np.sqrt(2))


def test_table_layout_with_paper_reference() -> None:
    t = table(summarize(_rows()), [5, 10], reference="water_vessels")
    assert list(t.method) == ["Activation", "paper: Activation", "Conductance", "paper: Conductance",
                              "Random units", "All units (40)"]
    row = t.set_index("method").loc["Conductance"]
    assert row["k=5"] == "85.00 ± 7.07" and row["k=10"] == ""
    assert t.set_index("method").loc["paper: Conductance", "k=10"] == "94.05"
    assert t.set_index("method").loc["All units (40)", "k=10"] == "100.00 ± 0.00"
    assert PAPER["random_labels"]["conductance"][0] == 68.85
