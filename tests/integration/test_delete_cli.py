"""`neuronimp delete` end to end on the digits smoke config: tables, figures, resume, usage errors."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neuronimp.cli import app

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_delete_smoke.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(out: Path, *extra: str) -> object:
    return CliRunner().invoke(app, ["delete", "--config", str(CONFIG), "--set", f"runner.out={out}", *extra])


def test_delete_cli_tables_figures_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _run(out)
    assert res.exit_code == 0, res.output
    curves = pd.read_csv(out / "delete_curves.csv")
    assert list(curves.columns) == ["model", "corruption", "seed", "layer", "order", "draw", "ablation",
                                    "n_ablated", "fraction_ablated", "noise_scale", "split", "accuracy", "units",
                                    "unit_axis"]
    nets = pd.read_csv(out / "delete_networks.csv")
    assert len(nets) == 4 and set(nets.corruption) == {0.0, 1.0}
    assert nets["gap"].tolist() == pytest.approx((nets.train_acc - nets.test_acc).tolist())
    assert set(nets["reached_fit_target"].astype(str)) <= {"True", "False"}
    assert (nets["epochs"] <= 15).all()
    # the unablated point of every train curve is the network's training accuracy (another code path)
    zero = curves[(curves.split == "train") & ((curves.n_ablated == 0) | (curves.noise_scale == 0))]
    merged = zero.merge(nets, on=["model", "corruption", "seed"])
    assert merged["accuracy"].tolist() == pytest.approx(merged["train_acc"].tolist(), abs=1e-9)
    # full ablation of a layer: the output no longer depends on the input, so one class is predicted
    full = curves[(curves.fraction_ablated == 1.0) & (curves.ablation == "zero") & (curves.split == "test")]
    assert (full["accuracy"] <= 0.2).all()
    sizes = curves.groupby("layer")["units"].first().to_dict()
    assert sizes == {"relu1": 16, "relu2": 16, "all": 32}
    assert set(curves.order) == {"random", "conductance:most", "selectivity:least", "noise"}
    units = pd.read_csv(out / "delete_units.csv")
    assert len(units) == 4 * 32 and units["selectivity"].between(0, 1).all()
    auc = pd.read_csv(out / "delete_auc.csv")
    assert len(auc) == 4 * 3 * (3 * 2 + 1) * 2  # networks x sites x (orders x ablations + noise) x splits
    clean = auc[(auc.corruption == 0) & (auc.split == "train") & (auc.order != "noise")]
    assert clean["auc"].between(0, 1.0 + 1e-9).all()  # a fitted clean net only loses training accuracy
    assert (pd.read_csv(out / "delete_auc.csv").query("order == 'random'")["draws"] == 2).all()
    corr = pd.read_csv(out / "delete_gap_correlation.csv")
    assert (corr["networks"] == 4).all()
    sc = pd.read_csv(out / "delete_selectivity_correlation.csv")
    assert len(sc) == 4 * 2 * 2 and sc["spearman_rho"].dropna().between(-1, 1).all()
    meta = json.loads((out / "delete_curves.meta.json").read_text())
    assert meta["config"]["delete"]["corruptions"] == [0.0, 1.0] and meta["table"] == "delete_curves"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "delete_selectivity.png" in pngs and "delete_auc_gap.png" in pngs
    assert any(p.startswith("delete_curves_digits_mlp") for p in pngs)
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    # resume: the cached networks are loaded, not retrained; a lost part is recomputed identically
    ckpts = {p: p.stat().st_mtime_ns for p in (out / "networks").glob("*.pt")}
    assert len(ckpts) == 4
    parts = out / "parts" / "delete"
    (parts / "batch-000002.delete_curves.csv").unlink()  # a part file lost while its batch record remains
    lost = _run(out, "--set", "delete.figures=false")
    assert lost.exit_code == 2 and "batch-000002.delete_curves.csv is missing" in lost.output
    assert len([l for l in lost.output.splitlines() if l.strip()]) == 1
    for p in parts.glob("batch-000002.*"):  # the whole batch lost: it is recomputed
        p.unlink()
    res2 = _run(out, "--set", "delete.figures=false")  # figures do not shape rows: the parts are still valid
    assert res2.exit_code == 0, res2.output
    assert {p: p.stat().st_mtime_ns for p in (out / "networks").glob("*.pt")} == ckpts
    pd.testing.assert_frame_equal(pd.read_csv(out / "delete_curves.csv"), curves)


@pytest.mark.parametrize("extra, message", [
    (["--set", "delete.orders=[random, conductnce]"], "did you mean 'conductance'"),
    (["--set", "data.options.corrupt=0.5"], "data.options.corrupt: the delete study corrupts labels itself"),
    (["--set", "layers=[relu9]"], "unknown layer 'relu9'"),
    (["--set", "delete.ablation=[]"], "delete.ablation is empty"),
])
def test_delete_cli_usage_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    res = _run(tmp_path / "bad", *extra)
    assert res.exit_code == 2
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "bad" / "networks").exists()  # refused before any network is trained
