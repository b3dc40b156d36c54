"""`neuronimp plot` and `neuronimp report` on small hand-made tables: numbers, paper rows, skipped kinds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.report.summaries import curves_summary, flips_summary
from neuronimp.report.tables import find_tables


def flips_table() -> pd.DataFrame:
    """10 images x (conductance, internal_influence), zero ablation; k_flip 1..10, one image never flips."""
    rows = []
    for i in range(10):
        for method, k in (("conductance", i + 1), ("internal_influence", 2 * i + 3)):
            flipped = k <= 16
            rows.append({"image_id": i, "true_label": 1, "predicted_label": 1, "layer": "relu2", "method": method,
                         "ablation": "zero", "draw": 0, "max_k": 16, "k_flip": k if flipped else None,
                         "flipped": flipped, "new_label": 2 if flipped else None, "never_flips": i == 9})
    return pd.DataFrame(rows)


def curves_table() -> pd.DataFrame:
    rows = []
    for corruption in (0.0, 1.0):
        for seed in (0, 1):
            for n in range(5):
                f = n / 4
                acc = (1 - f) * (0.9 if corruption == 0 else 0.5) + 0.1
                rows.append({"model": "m", "corruption": corruption, "seed": seed, "layer": "relu1", "order": "random",
                             "draw": 0, "ablation": "zero", "n_ablated": n, "fraction_ablated": f,
                             "split": "test", "accuracy": acc})
    return pd.DataFrame(rows)


def selection_table() -> pd.DataFrame:
    rows = [{"task": "water_vessels", "draw": d, "split": 0, "layer": "inception4d", "method": m, "k": k,
             "accuracy": 0.5 + 0.01 * k + 0.1 * (m == "conductance")}
            for d in range(2) for m in ("activation", "conductance") for k in (5, 10, 15, 20)]
    return pd.DataFrame(rows)


def test_flips_summary_counts_like_the_paper() -> None:
    s = flips_summary(flips_table()).set_index("method")
    c = s.loc["conductance"]
    # eligible: images 0..8 (image 9 survives full ablation); conductance k = 1..9
    assert (c["eligible"], c["flipped"], c["mean k"], c["max k"]) == (9, 9, 5.0, 9)
    assert c["> 10 units"] == "0/9" and c["flipped by top 10"] == "9/9"
    assert (c["paper: mean k"], c["paper: > 10 units"], c["paper: max k"]) == ("3.7", "3/100", "16")
    ii = s.loc["internal_influence"]  # k = 3, 5, ..., 19: 3..15 flip (7 rows), 17 and 19 do not within 16
    assert (ii["flipped"], ii["> 10 units"], ii["flipped by top 10"]) == (7, "5/9", "4/9")
    assert ii["paper: flipped by top 10"] == "5/100"


def test_curves_summary_area_and_half_point() -> None:
    s = curves_summary(curves_table()).set_index("corruption")
    assert s.loc[0.0, "curves"] == 2
    assert s.loc[0.0, "acc unablated"] == pytest.approx(1.0)
    assert s.loc[0.0, "acc at 50% ablated"] == pytest.approx(0.55)
    # a straight line from 1.0 to 0.1, normalised by its start: area (1 + 0.1) / 2
    assert s.loc[0.0, "auc"] == pytest.approx(0.55)
    assert s.loc[1.0, "auc"] == pytest.approx((1 + 0.1 / 0.6) / 2)


def _write(folder: Path, name: str, df: pd.DataFrame, meta: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{name}.csv", index=False)
    (folder / f"{name}.meta.json").write_text(json.dumps(meta or {"config": {"model": {"name": "googlenet"}}}))


def test_report_has_every_table_the_paper_numbers_and_the_figures(tmp_path: Path) -> None:
    _write(tmp_path / "abl", "ablate", flips_table())
    _write(tmp_path / "del", "delete_curves", curves_table())
    _write(tmp_path / "sel", "select", selection_table())
    _write(tmp_path / "sel", "select_summary", pd.DataFrame({"task": ["x"], "mean": [1.0]}))  # not a row table
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "report.md").read_text()
    for needle in ("Ablation until the prediction flips: `abl/ablate.csv`", "Cumulative deletion", "3/100",
                   "Top-k unit selection", "| water_vessels | inception4d | paper: Conductance | 88.10 | 94.05 | "
                   "96.43 | 94.05 |", "no unit scores table"):
        assert needle in text, needle
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert len(figures) == 3 and all(f.endswith(".png") for f in figures)
    for f in figures:
        assert f"](figures/{f})" in text
        assert (tmp_path / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_skips_what_is_missing_and_says_so(tmp_path: Path) -> None:
    _write(tmp_path, "ablate", flips_table())
    res = CliRunner().invoke(app, ["plot", str(tmp_path), "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    assert "skipped: no cumulative deletion table" in res.stdout and "skipped: no top-k unit selection" in res.stdout
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["ablate__flips_relu2_zero.png"]


def test_nothing_to_plot_or_report_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "nothing to plot" in res.stderr
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "is not a folder" in res.stderr


def test_unmerged_shards_are_reported_not_read(tmp_path: Path) -> None:
    df = flips_table()
    df[df.image_id % 2 == 0].to_csv(tmp_path / "ablate.shard-0000-of-0002.csv", index=False)
    _write(tmp_path / "sub", "ablate", df)
    tables, notes = find_tables(tmp_path)
    assert [t.rel for t in tables] == ["sub/ablate.csv"]
    assert notes == ["ablate.csv: only 1 shard file(s), not merged; run `neuronimp merge " + str(tmp_path) + "` first"]
    assert np.isfinite(flips_summary(tables[0].read())["mean k"]).all()
