"""`neuronimp ablate` end to end on the shrunk digits config: tables, summary, logits, resume, and the
user errors (unknown layer, random without draws) that must exit with code 2 and one line."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.config import load_config
from neuronimp.hooks import replace_output
from neuronimp.models import create_model
from neuronimp.studies.flips import rank_units

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "digits_ablate.yaml"
MINE = ["digits_ablate", "digits_train", "fashion_ablate", "fashion_cnn_train", "inception_mixed4d",
        "inception_v3_mixed6e"]


def small(out: Path, *extra: str) -> list[str]:
    """The demo config shrunk: random weights, 5 images, 4 interpolation steps, no progress bar."""
    sets = ["model.weights=none", "data.limit=5", f"runner.out={out}", "attribution.n_steps=4",
            "runner.progress=false", "runner.device=cpu", "methods=[grad_x_act,conductance,random]",
            "ablate.random_draws=2", *extra]
    return ["ablate", "--config", str(CONFIG), *[a for s in sets for a in ("--set", s)]]


@pytest.mark.parametrize("name", MINE)
def test_configs_validate_offline(name: str) -> None:
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.name == name


def test_ablate_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(app, small(out, "ablate.record_logits=true"))
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "ablate.csv")
    # 5 images x (2 methods + 2 random draws) x 3 ablations
    assert len(df) == 5 * 4 * 3
    for col in ("image_id", "true_label", "predicted_label", "layer", "method", "k_flip", "flipped", "new_label",
                "ablation", "draw", "never_flips", "score_drop_spearman", "delta", "rel_delta"):
        assert col in df.columns
    # the completeness delta of the order's method: conductance has one, grad_x_act and random have none
    cond = df[df.method == "conductance"]
    assert cond.delta.notna().all() and (cond.rel_delta >= 0).all()
    assert df[df.method != "conductance"][["delta", "rel_delta"]].isna().all().all()
    assert (cond.groupby("image_id").delta.nunique() == 1).all()  # one delta per image, whatever the ablation
    assert set(df.ablation) == {"zero", "mean", "baseline"} and set(df[df.method == "random"].draw) == {0, 1}
    assert (df.flipped == df.k_flip.notna()).all()
    assert ((df.k_flip[df.flipped] >= 1) & (df.k_flip[df.flipped] <= df.max_k[df.flipped])).all()
    assert (df.new_label[df.flipped] != df.predicted_label[df.flipped]).all()
    # the target logit at every k = 0..K: one trace per row, k = 0 is the unablated logit
    lg = pd.read_csv(out / "ablate_logits.csv")
    assert len(lg) == int((df.max_k + 1).sum())
    k0 = lg[lg.k == 0].merge(df, on=["image_id", "layer", "method", "ablation", "draw"])
    assert (k0.target_logit_x - k0.target_logit_y).abs().max() < 1e-5
    # summary agrees with the per-image table, and the markdown carries the paper's numbers
    summ = pd.read_csv(out / "ablate_summary.csv")
    row = summ[(summ.method == "conductance") & (summ.ablation == "zero")].iloc[0]
    g = df[(df.method == "conductance") & (df.ablation == "zero") & ~df.never_flips]
    assert row.eligible == len(g) and row.flipped == int(g.flipped.sum())
    if g.flipped.any():
        assert row.mean_k_flip == pytest.approx(g.k_flip[g.flipped].mean())
    assert "3.7" in (out / "ablate_summary.md").read_text()
    meta = json.loads((out / "ablate.meta.json").read_text())
    assert meta["command"] == "ablate" and meta["config"]["ablate"]["record_logits"] is True
    # one row against the naive loop that re-runs the whole model with the top-k units zeroed
    cfg = load_config(CONFIG, ["model.weights=none"])
    torch.manual_seed(cfg.seed)
    model = create_model("digits_cnn", weights="none").model
    from neuronimp.data import load_data

    r = df[(df.method == "grad_x_act") & (df.ablation == "zero")].iloc[0]
    x = load_data("digits").test[int(r.image_id)][0].unsqueeze(0)
    from neuronimp.methods import compute_scores

    s = compute_scores(model, x, torch.zeros_like(x), torch.tensor([int(r.predicted_label)]), ["relu2"],
                       ["grad_x_act"], cfg.attribution.model_copy(update={"n_steps": 4}).params())
    order = rank_units(s.scores[("relu2", "grad_x_act")])[0]
    want = None
    with torch.no_grad():
        for k in range(1, int(r.max_k) + 1):
            with replace_output(model, "relu2", lambda o, k=k: o.index_fill(1, order[:k], 0.0)):
                if int(model(x).argmax(1)) != int(r.predicted_label):
                    want = k
                    break
    assert (None if pd.isna(r.k_flip) else int(r.k_flip)) == want
    # resume: a second run reuses the parts and writes the same table
    again = CliRunner().invoke(app, small(out, "ablate.record_logits=true"))
    assert again.exit_code == 0, again.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "ablate.csv"), df)


def test_unknown_layer_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, small(tmp_path, "layers=[relu9]"))
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[-1]
    assert "unknown layer 'relu9'" in line and "relu2" in line and "conv1" in line
    assert "Traceback" not in res.output


def test_random_without_draws_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, small(tmp_path, "ablate.random_draws=0"))
    assert res.exit_code == 2 and "ablate.random_draws" in res.output


def test_shards_add_up_to_the_whole_run(tmp_path: Path) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "shards"
    assert CliRunner().invoke(app, small(whole)).exit_code == 0
    for i in range(2):
        res = CliRunner().invoke(app, [*small(parts), "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
    assert not (parts / "ablate_summary.csv").exists()  # a shard's summary would not survive the merge
    keys = ["image_id", "method", "ablation", "draw"]
    got = pd.concat([pd.read_csv(p) for p in sorted(parts.glob("ablate.shard-*.csv"))]).sort_values(keys)
    want = pd.read_csv(whole / "ablate.csv").sort_values(keys)
    cols = keys + ["predicted_label", "k_flip", "flipped", "new_label", "never_flips"]
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols].reset_index(drop=True))
