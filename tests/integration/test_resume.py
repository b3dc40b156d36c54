"""Kill -9 safety, resuming, determinism, and the launchers, on a tiny real `neuronimp score` run.

The runs are real subprocesses of the CLI (separate interpreters), on CPU, under tmp_path.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from neuronimp.cli import app

CONFIG = Path(__file__).resolve().parents[1] / "data" / "tiny_score.yaml"
# more, smaller batches than the base config, so that a kill lands in the middle of the run
KILL_SETS = ["data.limit=60", "runner.batch_size=2", "attribution.n_steps=8"]


def cli(*args: str) -> list[str]:
    """The command line of the real CLI in this interpreter."""
    return [sys.executable, "-m", "neuronimp.cli", *args]


def score_args(out: Path, sets: list[str]) -> list[str]:
    args = ["score", "--config", str(CONFIG), "--set", f"runner.out={out}"]
    for s in sets:
        args += ["--set", s]
    return args


def run_score(out: Path, sets: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli(*score_args(out, sets)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the kill config."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_score(out, KILL_SETS)
    return out


def parts_of(out: Path) -> list[Path]:
    """The records of the finished batches (a batch is done once its record, written last, exists)."""
    d = out / "parts" / "score"
    return sorted(d.glob("batch-*.json")) if d.is_dir() else []


def start_and_kill(out: Path, after_parts: int) -> int:
    """Start a run, SIGKILL it once `after_parts` batches are done; returns the done batches at the kill."""
    proc = subprocess.Popen(cli(*score_args(out, KILL_SETS)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(parts_of(out)) < after_parts:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return len(parts_of(out))


def test_kill_9_then_resume_gives_the_same_bytes(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    total = len(parts_of(reference))  # 30 batches
    first = start_and_kill(out, 3)
    assert first < total and not (out / "scores.csv").exists()
    files = sorted((out / "parts" / "score").glob("batch-*"))
    assert len(files) >= 2 * first  # each done batch: its record and its part file
    for p in files:  # every record and part file is whole: the same bytes as the uninterrupted run's
        assert p.read_bytes() == (reference / "parts" / "score" / p.name).read_bytes(), p.name
    second = start_and_kill(out, first + 4)  # resumes, then dies again
    assert first + 4 <= second < total
    proc = run_score(out, KILL_SETS)
    assert f"{second} of {total} batches already done" in proc.stderr
    assert (out / "scores.csv").read_bytes() == (reference / "scores.csv").read_bytes()
    assert not list((out / "parts" / "score").glob(".*.tmp"))


def test_same_config_and_seed_give_identical_bytes(reference: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    run_score(again, KILL_SETS)
    assert (again / "scores.csv").read_bytes() == (reference / "scores.csv").read_bytes()
    df = pd.read_csv(again / "scores.csv")
    assert len(df) == 60 * 2 * 16 and set(df.method) == {"activation", "conductance"}


def _sorted(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    return df.sort_values(["input_id", "layer", "method", "unit"], ignore_index=True)


def test_local_launcher_runs_merges_and_skips_finished_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["score", "--config", str(CONFIG), "--set", f"runner.out={out}", "--launcher", "local", "--shards", "2"]
    proc = subprocess.run(cli(*args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "merged:" in proc.stdout and (out / "scores.shard-0001-of-0002.csv").is_file()
    assert (out / "logs" / "score.shard-0000-of-0002.log").is_file()
    single = tmp_path / "single"
    res = CliRunner().invoke(app, score_args(single, []))
    assert res.exit_code == 0, res.output
    merged, whole = _sorted(out / "scores.csv"), _sorted(single / "scores.csv")
    pd.testing.assert_frame_equal(merged, whole, rtol=1e-6)  # shards batch other inputs together
    stamp = (out / "scores.csv").stat().st_mtime_ns
    res = CliRunner().invoke(app, args[:-4] + ["--launcher", "local", "--shards", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("skipped") == 2 and not re.search(r"\bran\b", res.stdout)
    assert (out / "scores.csv").stat().st_mtime_ns >= stamp


def test_slurm_launcher_through_submitit_debug_executor(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = score_args(out, ["runner.slurm.cluster=debug"]) + ["--launcher", "slurm", "--shards", "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "submitted 3 shards" in res.stdout and "merged:" in res.stdout
    df = pd.read_csv(out / "scores.csv")
    assert df.input_id.drop_duplicates().tolist() == list(range(12))  # merged in input order
    assert len(df) == 12 * 2 * 16
    assert sorted(p.name for p in (out / "parts").glob("*.done.json")) == [
        f"score.shard-000{i}-of-0003.done.json" for i in range(3)]


def test_sharded_runs_by_hand_then_merge(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(app, score_args(out, []) + ["--shard", "0/2"]).exit_code == 0
    res = runner.invoke(app, ["merge", str(out)])
    assert res.exit_code == 2 and "missing shard(s) 1/2" in res.stderr
    assert runner.invoke(app, score_args(out, []) + ["--shard", "1/2"]).exit_code == 0
    res = runner.invoke(app, ["merge", str(out)])
    assert res.exit_code == 0 and "merged:" in res.stdout
    assert sorted(pd.read_csv(out / "scores.csv").input_id.unique()) == list(range(12))


def test_retrained_checkpoint_at_the_same_path_does_not_reuse_parts(tmp_path: Path) -> None:
    """Part files are keyed by the checkpoint's bytes, not only its path: new weights never meet old parts."""
    import torch

    from neuronimp.models import create_model

    ckpt, out = tmp_path / "mlp.pt", tmp_path / "out"
    sets = [f"model.weights={ckpt}"]
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save({"model": create_model("digits_mlp", weights="none", width=16).model.state_dict()}, ckpt)
        res = CliRunner().invoke(app, score_args(out, sets))
        if seed == 0:
            assert res.exit_code == 0, res.output
    assert res.exit_code == 2 and "holds partial results of a different config" in res.output
    assert len(res.output.strip().splitlines()) == 1
