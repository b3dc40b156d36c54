"""The CLI's own commands: exit codes and one-line errors, `layers`, `models`, `validate`, `score`."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from neuronimp.cli import app

runner = CliRunner()


def test_layers_googlenet_lists_mixed4d_with_528_units() -> None:
    res = runner.invoke(app, ["layers", "googlenet"])
    assert res.exit_code == 0, res.output
    line = next(l for l in res.output.splitlines() if l.startswith("inception4d "))
    assert "mixed4d" in line and line.split()[-1] == "528"


def test_models_lists_the_zoo() -> None:
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    for name in ("googlenet", "inception_v3_tv", "inception_v3_timm", "kim_cnn", "digits_cnn", "mnist_mlp"):
        assert name in res.output


def test_malformed_config_exit_2_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: digits_cnn, wieghts: none}\n")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    lines = [l for l in res.output.strip().splitlines() if l]
    assert len(lines) == 1 and "model.wieghts" in lines[0] and "did you mean 'weights'" in lines[0]
    assert "Traceback" not in res.output


def test_unknown_layer_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name: digits_mlp}}\ndata: {{name: digits, limit: 4}}\nlayers: [relu9]\n"
                   f"runner: {{out: {tmp_path / 'out'}, progress: false}}\n")
    res = runner.invoke(app, ["score", "--config", str(cfg)])
    assert res.exit_code == 2
    assert "unknown layer 'relu9'" in res.output and "allowed" in res.output
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_score_writes_long_format_with_metadata(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name: digits_mlp}}\ndata: {{name: digits, limit: 6}}\n"
                   f"methods: [activation, conductance, random]\nattribution: {{n_steps: 8}}\n"
                   f"runner: {{out: {tmp_path / 'out'}, progress: false, batch_size: 4}}\n")
    res = runner.invoke(app, ["score", "--config", str(cfg), "--set", "attribution.delta_tolerance=10"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert list(df.columns) == ["input_id", "label", "target", "layer", "unit", "unit_axis", "method", "score",
                                "delta", "steps"]
    units = df.unit.nunique()
    assert len(df) == 6 * units * 3
    cond = df[df.method == "conductance"]
    assert cond.delta.notna().all() and df[df.method != "conductance"].delta.isna().all()
    meta = (tmp_path / "out" / "scores.meta.json").read_text()
    assert '"git_commit"' in meta and '"torch"' in meta and '"n_steps": 8' in meta


def test_explain_image_heat_map_sums_to_unit_conductance(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name: digits_cnn}}\ndata: {{name: digits, limit: 3}}\nlayers: [relu2]\n"
                   f"attribution: {{n_steps: 200, rule: riemann_left}}\n"
                   f"runner: {{out: {tmp_path / 'out'}, progress: false}}\n")
    res = runner.invoke(app, ["explain", "--config", str(cfg), "--unit", "5", "--index", "2"])
    assert res.exit_code == 0, res.output
    png = tmp_path / "out" / "explain_relu2_unit5_index2.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    import json

    meta = json.loads((tmp_path / "out" / "explain_relu2_unit5_index2.meta.json").read_text())
    assert abs(meta["sum_pixel_conductance"] - meta["unit_conductance"]) <= 0.02 * abs(meta["unit_conductance"]) + 1e-4
    table = pd.read_csv(tmp_path / "out" / "explain_relu2_unit5_index2.csv")
    assert len(table) == 64 and abs(table.conductance.sum() - meta["sum_pixel_conductance"]) < 1e-6
    bad = runner.invoke(app, ["explain", "--config", str(cfg), "--unit", "999"])
    assert bad.exit_code == 2 and "allowed: 0..31" in bad.output
