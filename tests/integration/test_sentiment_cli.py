"""End to end on a slice of SST-2: `neuronimp train` a tiny Kim CNN, then the filter analysis and `explain`.

The real configs (configs/kimcnn_*.yaml) shrunk: 240 sentences per split, 16-d embeddings, 4 maps per window.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.commands import explain
from neuronimp.config import load_config
from neuronimp.data.sentences import default_root
from neuronimp.errors import UsageError
from neuronimp.runner.context import build_context
from neuronimp.runner.driver import run_study
from neuronimp.runner.shards import Shard

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (default_root() / "stsa.binary.train").is_file(), reason="no SST-2 files")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/kimcnn_sst2.yaml shrunk and trained for 3 epochs; returns the config path."""
    tmp = tmp_path_factory.mktemp("kim")
    tree = yaml.safe_load((ROOT / "configs" / "kimcnn_sst2.yaml").read_text())
    ckpt = str(tmp / "kim.pt")
    tree["model"]["weights"] = ckpt
    tree["model"]["options"].update(embed_dim=16, maps=4)
    tree["data"]["options"]["limit"] = 240
    tree["data"]["limit"] = 60
    # Adam at 0.03, not Kim's Adadelta: with 12 filters and 240 sentences Adadelta's 3 epochs leave a constant
    # (majority-class) predictor, whose ablations flip by chance only; Adam fits the training slice (~94%).
    tree["train"].update(epochs=3, checkpoint=ckpt, optimizer="adam", lr=0.03)
    tree["attribution"]["n_steps"] = 4             # the head is linear: filter conductance is exact at any n
    tree["sentiment"].update(max_pairs=20, min_nonzero=2, examples=1, report_filters=2)
    tree["runner"].update(out=str(tmp / "out"), progress=False, batch_size=30)
    path = tmp / "kim.yaml"
    path.write_text(yaml.safe_dump(tree))
    res = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    metrics = json.loads(Path(ckpt).with_suffix(".metrics.json").read_text())
    assert len(metrics["history"]) == 3 and 1 <= metrics["best_epoch"] <= 3
    assert metrics["final"]["dev_acc"] == max(h["dev_acc"] for h in metrics["history"])  # select_on_dev
    return path


def test_filters_writes_signs_shares_and_negation(trained: Path, capsys: pytest.CaptureFixture) -> None:
    ctx = build_context(load_config(trained))
    path = run_study("filters", ctx, Shard()).paths["filter_signs"]
    out = ctx.out
    cond = pd.read_csv(out / "filter_conductance.csv")
    assert len(cond) == 60 * 12 and cond["filter"].nunique() == 12
    assert cond.groupby("input_id").delta.first().abs().max() < 1e-4           # completeness, linear head
    per = cond.groupby("input_id").conductance.sum() - cond.groupby("input_id").score.first()
    assert per.std() < 1e-4          # sum_j cond_j = F(x) - F(x'), and F(x') is the same for every sentence
    fs = pd.read_csv(path)
    assert len(fs) == 12 and (fs.n_positive + fs.n_negative + fs.n_zero == 60).all()
    # linear head, and every sentence keeps an all-padding window: an active filter takes the sign of w1 - w0
    assert (fs[fs.head_weight > 0].n_negative == 0).all() and (fs[fs.head_weight < 0].n_positive == 0).all()
    shares = pd.read_csv(out / "filter_sign_shares.csv")
    assert shares.share.sum() == pytest.approx(1.0) and shares.filters.sum() == 12
    assert set(shares.category) == {"positive", "negative", "mixed", "rarely_active"}
    pairs = pd.read_csv(out / "negation_pairs.csv")
    assert 0 < len(pairs) <= 20
    assert all(n in {"not", "n't", "never"} for n in pairs.negator)
    assert (pairs.negated.str.split().str.len() == pairs.original.str.split().str.len() + 1).all()
    assert len(pd.read_csv(out / "negation_conductance.csv")) == 12 * len(pairs)
    assert (out / "filter_signs.png").stat().st_size > 1000
    html = (out / "filters.html").read_text()
    assert "<span class=\"tok\"" in html and "Filter signs" in html
    assert "<pad>" not in html and "<unk>" not in html                       # tokens are escaped
    meta = json.loads((out / "filter_signs.meta.json").read_text())
    assert meta["command"] == "filters" and meta["config"]["sentiment"]["zero_tol"] == 0.01
    assert "filter signs (margin" in capsys.readouterr().out


def test_explain_token_conductance_sums_to_the_filter(trained: Path) -> None:
    ctx = build_context(load_config(trained, ["attribution.n_steps=64"]))
    path = explain.run(ctx, unit=5, index=3)
    assert path.name == "explain_unit5_index3.html" and "<span" in path.read_text()
    tok = pd.read_csv(path.with_suffix(".csv"))
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    assert meta["window"] == 4 and meta["map"] == 1 and len(tok) > 0     # 4 maps per window: 5 = (4, 1)
    total = meta["filter_conductance"]
    assert tok.conductance.sum() == pytest.approx(total, abs=0.05 * abs(total) + 1e-6)
    with pytest.raises(UsageError, match="allowed: 0..11"):
        explain.run(ctx, unit=12, index=0)
    with pytest.raises(UsageError, match="allowed: 0..59"):
        explain.run(ctx, unit=0, index=60)


def test_filters_refuses_other_layers_and_models(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="filter layer only"):
        run_study("filters", build_context(load_config(trained, ["layers=[pool.conv3]"])), Shard())
    cfg = load_config(None, ["model.name=digits_mlp", "data.name=digits", "layers=[]", f"runner.out={tmp_path}"])
    with pytest.raises(UsageError, match="needs a Kim CNN"):
        run_study("filters", build_context(cfg), Shard())


def test_ablate_runs_on_the_filter_layer(trained: Path, tmp_path: Path) -> None:
    """Study 1 on text: the CLI's ablate command on the Kim CNN's 12 filters, 20 sentences."""
    sets = ["methods=[conductance, random]", "ablate.ablation=[zero]", "ablate.max_k=12", "ablate.random_draws=2",
            "data.limit=20", f"runner.out={tmp_path}"]
    res = CliRunner().invoke(app, ["ablate", "--config", str(trained), *sum((["--set", s] for s in sets), [])])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "ablate.csv")
    assert len(df) == 20 * 3 and set(df.method) == {"conductance", "random"}
    k = df[df.flipped].groupby("method").k_flip.mean()
    assert k["conductance"] < k["random"]              # conductance order flips the prediction sooner


def test_filters_api_equals_cli(trained: Path, tmp_path: Path) -> None:
    """`ni.run("filters", ...)` in memory returns every table `neuronimp filters` writes for the same config."""
    import neuronimp as ni

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["filters", "--config", str(trained), "--set", f"runner.out={out}"])
    assert res.exit_code == 0, res.output
    got = ni.run("filters", trained, [f"runner.out={tmp_path / 'api'}"])
    assert set(got) >= {"filter_conductance", "filter_signs", "filter_sign_shares", "negation_pairs"}
    for name, df in got.items():
        pd.testing.assert_frame_equal(df, pd.read_csv(out / f"{name}.csv"), check_dtype=False)
    assert not (tmp_path / "api").exists()  # in memory: nothing written
