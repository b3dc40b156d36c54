"""`neuronimp select` end to end on the bundled 8x8 digits (no download): files, row counts, numbers,
resume, shards, the configs, and one-line usage errors."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.config import load_config

ROOT = Path(__file__).resolve().parents[2]
# 16 steps are coarse: the completeness warning is expected (its number is checked in select.meta.json)
pytestmark = pytest.mark.filterwarnings("ignore:conductance at:UserWarning")
SELECT_CONFIGS = ["fashion_select_footwear", "fashion_select_tops", "fashion_select_random",
                  "imagenet_water_vessels", "imagenet_random_labels"]


def _checkpoint(tmp: Path) -> Path:
    """A quickly trained digits MLP (its hidden units carry class information)."""
    from neuronimp.config import TrainCfg
    from neuronimp.data import load_data
    from neuronimp.models import create_model
    from neuronimp.training import fit

    bundle = create_model("digits_mlp", width=32)
    fit(bundle.model, load_data("digits").train, TrainCfg(epochs=3, batch_size=64, lr=3e-3), show=False)
    path = tmp / "mlp.pt"
    torch.save(bundle.model.state_dict(), path)  # a plain state dict: what models.load_weights reads
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("select")
    cfg = {
        "name": "t", "seed": 0,
        "model": {"name": "digits_mlp", "weights": str(_checkpoint(tmp)), "options": {"width": 32}},
        "data": {"name": "digits", "split": "train"},
        "layers": ["relu1", "relu2"],
        "methods": ["activation", "conductance"],
        "attribution": {"n_steps": 16},
        "select": {"task": "digits", "classes": [3, "5", "8"], "draws": 2, "splits": 2, "ks": [1, 4],
                   "per_class": 16, "select_per_class": 10, "random_draws": 2},
        "runner": {"out": str(tmp / "out"), "progress": False, "batch_size": 20},
    }
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["select", "--config", str(path)])
    assert res.exit_code == 0, res.output
    return {"tmp": tmp, "cfg": cfg, "path": path, "out": tmp / "out", "output": res.output}


def test_rows_and_numbers(setup: dict) -> None:
    df = pd.read_csv(setup["out"] / "select.csv")
    # per (draw, split, layer): 2 methods x 2 ks + 2 control draws x 2 ks + 1 all-units row = 9
    assert len(df) == 2 * 2 * 2 * 9
    assert set(df.class_ids) == {"3;5;8"} and set(df.n_select) == {30} and set(df.n_eval) == {18}
    assert df.accuracy.between(0, 1).all()
    every = df[df.method == "all_units"]
    assert set(every.k) == {32} and every.accuracy.mean() > 0.8  # trained features separate 3, 5, 8
    top = df[(df.method != "random_units") & (df.method != "all_units")]
    assert (top.units.astype(str).str.split(";").str.len() == top.k).all()
    assert (top.k <= 4).all() and set(top.method) == {"activation", "conductance"}
    meta = json.loads((setup["out"] / "select.meta.json").read_text())
    assert meta["config"]["select"]["ks"] == [1, 4] and meta["command"] == "select"
    assert set(meta["max_rel_delta"]) == {"relu1", "relu2"} and all(v >= 0 for v in meta["max_rel_delta"].values())
    # every row carries conductance's largest relative delta at its layer in its draw; the meta has the maximum
    assert df.max_rel_delta.notna().all() and (df.max_rel_delta >= 0).all()
    assert (df.groupby(["draw", "layer"]).max_rel_delta.nunique() == 1).all()
    assert meta["max_rel_delta"] == pytest.approx(df.groupby("layer").max_rel_delta.max().to_dict(), rel=1e-6)
    s = pd.read_csv(setup["out"] / "select_summary.csv")
    assert set(s.n) == {4}  # 2 draws x 2 splits
    md = (setup["out"] / "select_summary.md").read_text()
    assert "| task | layer | method | k=1 | k=4 |" in md and "All units (32)" in md and "Random units" in md
    assert "Conductance" in setup["output"]


def test_rerun_resumes_to_identical_rows(setup: dict) -> None:
    before = (setup["out"] / "select.csv").read_text()
    res = CliRunner().invoke(app, ["select", "--config", str(setup["path"])])
    assert res.exit_code == 0, res.output
    assert (setup["out"] / "select.csv").read_text() == before


def test_shards_split_the_draws(setup: dict) -> None:
    full = pd.read_csv(setup["out"] / "select.csv")
    parts = []
    for i in range(2):  # reuse the score parts of the full run (one folder per draw)
        res = CliRunner().invoke(app, ["select", "--config", str(setup["path"]), "--shard", f"{i}/2"])
        assert res.exit_code == 0, res.output
        parts.append(pd.read_csv(setup["out"] / f"select.shard-{i:04d}-of-0002.csv"))
    assert [set(p.draw) for p in parts] == [{0}, {1}]
    both = pd.concat(parts).sort_values(["draw", "split", "layer", "method", "k", "control_draw"]).reset_index(drop=True)
    ref = full.sort_values(["draw", "split", "layer", "method", "k", "control_draw"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(both, ref)


@pytest.mark.parametrize("change, needle", [
    ({"classes": [3, "Seven"]}, "unknown class 'Seven'"),
    ({"ks": [40]}, "k = 40 exceeds the 32 units"),
    ({"classes": [], "random_classes": None}, "give the task's classes"),
    ({"per_class": 500, "select_per_class": 10}, "has only"),
])
def test_usage_errors_are_one_line(setup: dict, change: dict, needle: str) -> None:
    cfg = json.loads(json.dumps(setup["cfg"]))
    cfg["select"].update(change)
    cfg["runner"]["out"] = str(setup["tmp"] / "bad")
    path = setup["tmp"] / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["select", "--config", str(path)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.output


@pytest.mark.parametrize("name", SELECT_CONFIGS)
def test_configs_validate_offline(name: str) -> None:
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.select.per_class == 50 and cfg.select.select_per_class == 30
    if name.startswith("imagenet"):
        assert cfg.select.ks == [5, 10, 15, 20] and cfg.select.reference is not None
    if name == "imagenet_water_vessels":
        assert len(cfg.select.classes) == 14 and cfg.select.classes == cfg.data.options["wnids"]
    if name == "fashion_select_random":
        assert cfg.select.random_classes == 3 and cfg.select.draws == 5
