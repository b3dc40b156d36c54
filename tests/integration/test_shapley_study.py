"""The `shapley` study (data-set Neuron Shapley and removal curves) and the method `shapley` in the other
studies: sharded + merged == one run, the values are monte_carlo_shapley's, the curves start at the base
accuracy and end at the fully ablated one, and ablate / select / delete take `shapley` by name."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from neuronimp import api
from neuronimp.config import build_config, check_names
from neuronimp.hooks import replace_output
from neuronimp.methods.shapley import ShapleyParams, monte_carlo_shapley
from neuronimp.runner.context import build_context
from neuronimp.runner.driver import run_study
from neuronimp.runner.merge import merge_folder
from neuronimp.runner.shards import Shard
from neuronimp.studies.shapley import eval_games

MODEL = {"name": "digits_mlp", "options": {"width": 8}}


def config(out: Path, **shapley: object) -> dict:
    """The digits MLP (random init, 8 units at relu2), 60 test digits, 6 antithetic permutations."""
    return {"name": "shapley_test", "seed": 3, "model": MODEL, "data": {"name": "digits", "split": "test"},
            "layers": ["relu2"], "runner": {"out": str(out), "progress": False},
            "shapley": {"permutations": 6, "eval_limit": 60, "part_permutations": 2, "truncation": 0.0,
                        "orders": ["shapley", "activation", "random"], "random_draws": 2, **shapley}}


def context(tree: dict):  # noqa: ANN201
    cfg = build_config(tree)
    check_names(cfg, "test")
    ctx = build_context(cfg)
    ctx.verbose = False
    return ctx


def test_sharded_and_merged_equals_one_run(tmp_path: Path, one_thread: None) -> None:
    """Two shards over the permutations, merged (marginals stacked, values rebuilt) == the unsharded run."""
    one = run_study("shapley", context(config(tmp_path / "one")), Shard(), show=False)
    for i in range(2):
        run_study("shapley", context(config(tmp_path / "sharded")), Shard(i, 2), show=False)
    merge_folder(tmp_path / "sharded", say=lambda _: None)
    merged = pd.read_csv(tmp_path / "sharded" / "shapley_values.csv")
    pd.testing.assert_frame_equal(merged, pd.read_csv(one.paths["shapley_values"]))
    keys = ["layer", "permutation", "unit"]
    marg = pd.read_csv(tmp_path / "sharded" / "shapley_marginals.csv").sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(marg, one.tables["shapley_marginals"].sort_values(keys, ignore_index=True))
    assert sorted(marg.permutation.unique()) == list(range(6))
    assert not (tmp_path / "sharded" / "shapley_curves.csv").exists()  # curves: unsharded runs only


@pytest.mark.parametrize("direction", ["remove", "add"])
def test_values_are_monte_carlo_shapley_and_curves_hit_both_ends(tmp_path: Path, one_thread: None,
                                                                 direction: str) -> None:
    """The study's values and se equal monte_carlo_shapley on the same game and seed; they sum to v(all) -
    v(none); each curve starts at the model's accuracy (k = 0) and ends at the all-ablated one (k = U)."""
    ctx = context(config(tmp_path, direction=direction))
    res = run_study("shapley", ctx, Shard(), write=False, show=False)
    values, curves = res.tables["shapley_values"], res.tables["shapley_curves"]
    g = eval_games(ctx)["games"]["relu2"]
    est = monte_carlo_shapley(g.value, 8, ShapleyParams(permutations=6, seed=3, direction=direction))
    assert torch.allclose(torch.tensor(values.shapley.to_numpy()), est.mean, atol=1e-7, rtol=0)
    assert torch.allclose(torch.tensor(values.se.to_numpy()), est.se, atol=1e-7, rtol=0)
    assert abs(values.shapley.sum() - float(g.v_all - g.v_none)) < 1e-7
    assert (values.n == 6).all() and (values.samples == 3).all()
    held_out = eval_games(ctx, "curves")  # curves_on: next = digits 60..119
    x, y = held_out["x"], held_out["y"]
    assert len(x) == 60 and not torch.equal(x, eval_games(ctx)["x"])
    model = ctx.bundle.model
    with torch.no_grad():
        base = float((model(x).argmax(1) == y).double().mean())
        with replace_output(model, "relu2", lambda a: torch.zeros_like(a)):
            ablated = float((model(x).argmax(1) == y).double().mean())
    assert set(curves.order) == {"shapley", "activation", "random"}
    assert (curves[curves.k == 0].accuracy == base).all()
    assert (curves[curves.k == 8].accuracy == ablated).all()
    assert len(curves) == (1 + 1 + 2) * 9  # orders x draws x (k = 0..8)
    summary = res.tables["shapley_summary"]
    assert (summary.base_accuracy == base).all() and (summary.half_accuracy == base / 2).all()
    for _, row in summary.iterrows():  # k_half is the first k at or below half the base accuracy
        c = curves[(curves.order == row.order) & (curves.draw == 0)]
        hit = c[c.accuracy <= base / 2 + 1e-12].k
        mid = c[c.accuracy <= (base + ablated) / 2 + 1e-12].k
        if row.order != "random":
            assert (pd.isna(row.k_half) and hit.empty) or row.k_half == hit.min()
            assert row.k_mid == mid.min()  # the all-removed end point is always at or below the midpoint


def test_bandit_and_config_checks(tmp_path: Path, one_thread: None) -> None:
    """bandit_k adds the bandit-vs-plain table; a k beyond the layer and bad orders are one-line errors."""
    res = run_study("shapley", context(config(tmp_path, bandit_k=2, bandit_round=2, orders=["shapley"])),
                    Shard(), write=False, show=False)
    b = res.tables["shapley_bandit"]
    assert list(b.search) == ["bandit", "plain"] and (b.k == 2).all()
    assert b.evaluations.iloc[0] <= b.evaluations.iloc[1]
    from neuronimp.errors import UsageError

    with pytest.raises(UsageError, match="exceeds the 8 units"):
        run_study("shapley", context(config(tmp_path, ks=[0, 9])), Shard(), write=False, show=False)
    with pytest.raises(UsageError, match="unknown order 'condutance'.*did you mean 'conductance'"):
        context(config(tmp_path, orders=["condutance"]))
    with pytest.raises(UsageError, match="curves_on = next needs shapley.eval_limit"):
        run_study("shapley", context(config(tmp_path, eval_limit=None)), Shard(), write=False, show=False)


SMALL = {"seed": 0, "model": MODEL, "data": {"name": "digits", "split": "test", "limit": 4},
         "layers": ["relu2"], "attribution": {"shapley_permutations": 4, "n_steps": 8},
         "runner": {"progress": False}}


def test_ablate_select_delete_take_shapley_by_name(one_thread: None) -> None:
    """The registered method orders ablation until the flip, top-k selection and cumulative deletion."""
    flips = api.run("ablate", {**SMALL, "methods": ["shapley", "conductance"],
                               "ablate": {"max_k": 8, "random_draws": 0, "correlation": False}})["ablate"]
    sh = flips[flips.method == "shapley"]
    assert len(sh) == 4 and sh.rel_delta.abs().max() < 1e-9  # efficiency: sum phi = v(all) - v(none)
    sel = api.run("select", {**SMALL, "data": {"name": "digits", "split": "test"}, "methods": ["shapley"],
                             "select": {"classes": [0, 1], "per_class": 4, "select_per_class": 2, "ks": [2],
                                        "random_draws": 0, "all_units": False}})["select"]
    assert set(sel.method) == {"shapley"} and (sel.k == 2).all() and sel.accuracy.between(0, 1).all()
    curves = api.run("delete", {**SMALL, "data": {"name": "digits"},
                                "train": {"epochs": 1, "batch_size": 64},
                                "delete": {"orders": ["shapley:most"], "n_levels": 3, "score_limit": 8,
                                           "stats_limit": 50, "eval_limit": 40, "selectivity": False,
                                           "figures": False}})["delete_curves"]
    assert "shapley:most" in set(curves.order)


def test_api_equals_cli(tmp_path: Path, one_thread: None) -> None:
    """`ni.run("shapley", ...)` in memory returns the tables `neuronimp shapley` writes for the same config."""
    import yaml
    from typer.testing import CliRunner

    from neuronimp.cli import app

    tree = config(tmp_path / "cli")
    path = tmp_path / "shapley.yaml"
    path.write_text(yaml.safe_dump(tree))
    res = CliRunner().invoke(app, ["shapley", "--config", str(path)])
    assert res.exit_code == 0, res.output
    got = api.run("shapley", tree)
    for name in ("shapley_values", "shapley_curves", "shapley_summary"):
        pd.testing.assert_frame_equal(got[name], pd.read_csv(tmp_path / "cli" / f"{name}.csv"), check_dtype=False)
