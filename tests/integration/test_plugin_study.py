"""A study is a plug-in: a toy study defined in THIS file, registered here, runs through the command line
(`neuronimp toy`), `--shard` + `neuronimp merge`, `--launcher local` and a `kill -9` resume, without any
change to the package. Subprocesses find it through $NEURONIMP_PLUGINS (this module's import name).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from pydantic import Field

from neuronimp.schema import Strict
from neuronimp.studies import STUDIES, Outputs, Rebuild, Study, register_study

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.integration.test_plugin_study"


class ToyCfg(Strict):
    """The toy study's own config section."""

    scale: float = 2.0
    delay: float = Field(default=0.0, ge=0)  # seconds per batch: lets the kill test land mid-run


def _total(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"rows": len(rows), "sum_margin": float(rows["margin"].sum())}])


if "toy" not in STUDIES:
    @register_study
    class Toy(Study):
        """Toy: each input's top logit times toy.scale, and the margin over the second."""

        name = "toy"
        help = "A toy plug-in study (tests only)."
        section = ToyCfg
        tables = ("toy",)
        aggregates = {"toy_total": Rebuild("toy", _total)}

        def prepare(self, ctx: Any, items: list[int]) -> dict[str, Any]:
            return {"ds": ctx.split()}

        def rows(self, ctx: Any, state: dict[str, Any], chunk: list[int]) -> dict[str, list[dict]]:
            time.sleep(ctx.cfg.toy.delay)
            rows = []
            for ids, x, y in ctx.batches(state["ds"], chunk):
                with torch.no_grad():
                    top = ctx.bundle.model(x).double().topk(2, dim=1).values
                for b in range(len(ids)):
                    rows.append({"input_id": int(ids[b]), "label": int(y[b]),
                                 "top": float(top[b, 0]) * ctx.cfg.toy.scale,
                                 "margin": float(top[b, 0] - top[b, 1])})
            return {"toy": rows}

        def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
            return Outputs(tables={"toy_total": _total(tables["toy"])}, texts={"toy.md": "toy\n"},
                           printed=[("toy rows", tables["toy"].head(3))])


def write_config(tmp: Path) -> Path:
    path = tmp / "toy.yaml"
    path.write_text("name: toy\nmodel: {name: digits_mlp, options: {width: 8}}\n"
                    "data: {name: digits, split: test, limit: 40}\n"
                    "runner: {batch_size: 4, progress: false}\ntoy: {scale: 3.0}\n")
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["NEURONIMP_PLUGINS"] = MODULE
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "neuronimp.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env())
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_toy_study_is_registered_here_and_has_its_section() -> None:
    from neuronimp.config import config_class

    assert "toy" in STUDIES.names()
    assert "toy" in config_class().model_fields  # the section came with the plug-in


def test_plugin_runs_through_cli_shards_merge_launcher_and_kill_resume(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    whole = tmp_path / "whole"
    cli("toy", "--config", str(cfg), "--set", f"runner.out={whole}")
    want = pd.read_csv(whole / "toy.csv")
    assert len(want) == 40 and list(want.input_id) == list(range(40))
    assert (whole / "toy.md").read_text() == "toy\n"
    total = pd.read_csv(whole / "toy_total.csv")
    assert total["rows"].item() == 40 and total["sum_margin"].item() == pytest.approx(want.margin.sum())
    with torch.no_grad():  # the numbers are the model's: check one row by hand
        from neuronimp.data import load_data
        from neuronimp.models import create_model

        torch.manual_seed(0)
        model = create_model("digits_mlp", width=8, num_classes=10).model
        top = model(load_data("digits").test[5][0].unsqueeze(0)).double().topk(2).values[0]
    assert want.loc[5, "top"] == pytest.approx(3.0 * float(top[0]), rel=1e-6)

    sharded = tmp_path / "sharded"
    for i in range(2):
        cli("toy", "--config", str(cfg), "--set", f"runner.out={sharded}", "--shard", f"{i}/2")
    cli("merge", str(sharded))
    pd.testing.assert_frame_equal(pd.read_csv(sharded / "toy.csv"), want)
    pd.testing.assert_frame_equal(pd.read_csv(sharded / "toy_total.csv"), total)  # rebuilt, not stacked

    launched = tmp_path / "launched"
    cli("toy", "--config", str(cfg), "--set", f"runner.out={launched}", "--launcher", "local", "--shards", "2")
    pd.testing.assert_frame_equal(pd.read_csv(launched / "toy.csv"), want)

    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "neuronimp.cli", "toy", "--config", str(cfg), "--set", f"runner.out={killed}",
            "--set", "toy.delay=0.4"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = killed / "parts" / "toy"
    deadline = time.time() + 120
    while time.time() < deadline and not (parts / "batch-000002.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("batch-*.json")))
    assert 3 <= done < 10 and not (killed / "toy.csv").exists()  # killed mid-run, nothing but parts
    again = cli("toy", "--config", str(cfg), "--set", f"runner.out={killed}", "--set", "toy.delay=0.4")
    assert "resuming" in again.stderr
    assert (killed / "toy.csv").read_bytes() == (whole / "toy.csv").read_bytes()


def test_altered_part_is_refused_with_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    cli("toy", "--config", str(cfg), "--set", f"runner.out={out}")
    part = out / "parts" / "toy" / "batch-000003.toy.csv"
    part.write_bytes(part.read_bytes()[:-20])  # truncated mid-row
    proc = cli("toy", "--config", str(cfg), "--set", f"runner.out={out}", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "batch-000003.toy.csv" in lines[0] and "truncated or altered" in lines[0]


def test_a_missing_plugin_module_is_one_line() -> None:
    e = env()
    e["NEURONIMP_PLUGINS"] = "no_such_module_xyz"
    proc = subprocess.run([sys.executable, "-m", "neuronimp.cli", "models"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=e)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: NEURONIMP_PLUGINS: cannot import plug-in module 'no_such_module_xyz' "
        "(ModuleNotFoundError: No module named 'no_such_module_xyz')"]
