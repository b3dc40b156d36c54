"""Bad inputs end with one clear line on stderr and exit code 2, and leave no partial or corrupt result file.

Each case runs the CLI (typer's CliRunner, in process; one case also as a real subprocess) on the tiny
score config with one thing broken.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.data import write_idx
from neuronimp.models import create_model

CONFIG = Path(__file__).resolve().parents[1] / "data" / "tiny_score.yaml"
TINY = CONFIG.read_text()


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and stderr of one CLI call."""
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stderr


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit 2, exactly one line on stderr starting with 'error:', no traceback, naming what is wrong."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def assert_no_results(out: Path) -> None:
    """No table, part or temporary file anywhere under the output folder."""
    if out.exists():
        left = [p for p in out.rglob("*") if p.is_file()]
        assert not left, left


def score(cfg: Path, out: Path, *sets: str) -> tuple[int, str]:
    args = ["score", "--config", str(cfg), "--set", f"runner.out={out}"]
    for s in sets:
        args += ["--set", s]
    return run_cli(*args)


def config_with(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


# ---------------------------------------------------------------- malformed configs
CONFIG_CASES: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "bad_yaml": (lambda t: t + "methods: [activation, conductance\n", ("malformed YAML", "line")),
    "tab_yaml": (lambda t: t.replace("  n_steps: 4", "\tn_steps: 4"), ("malformed YAML",)),
    "not_a_mapping": (lambda t: "- just\n- a list\n", ("must be a mapping",)),
    "unknown_key": (lambda t: t.replace("batch_size: 4", "batchsize: 4"),
                    ("unknown key 'runner.batchsize'", "did you mean 'batch_size'")),
    "wrong_type": (lambda t: t.replace("batch_size: 4", "batch_size: many"), ("runner.batch_size", "'many'")),
    "out_of_range": (lambda t: t.replace("n_steps: 4", "n_steps: 0"), ("attribution.n_steps", "greater than")),
    "bad_literal": (lambda t: t.replace("split: test", "split: tset"), ("data.split", "'tset'")),
    "unknown_model": (lambda t: t.replace("name: digits_mlp", "name: digits_mpl"),
                      ("unknown model 'digits_mpl'", "did you mean 'digits_mlp'")),
    "unknown_dataset": (lambda t: t.replace("name: digits\n", "name: digit\n"),
                        ("unknown dataset 'digit'", "did you mean 'digits'")),
    "unknown_method": (lambda t: t.replace("[activation, conductance]", "[activation, conductanse]"),
                       ("unknown method 'conductanse'", "did you mean 'conductance'")),
    "unknown_model_option": (lambda t: t.replace("{width: 16}", "{widht: 16}"), ("widht",)),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_malformed_config(case: str, tmp_path: Path) -> None:
    edit, needles = CONFIG_CASES[case]
    text = edit(TINY)
    assert text != TINY
    out = tmp_path / "out"
    assert_one_line_error(*score(config_with(tmp_path, text), out), *needles)
    assert_no_results(out)


def test_missing_config_and_bad_override(tmp_path: Path) -> None:
    assert_one_line_error(*score(tmp_path / "nope.yaml", tmp_path / "out"), "config file not found")
    assert_one_line_error(*score(CONFIG, tmp_path / "out", "attribution.n_steps=[1"), "--set attribution.n_steps")
    assert_one_line_error(*score(CONFIG, tmp_path / "out", "runner.slurm.partiton=gpu"),
                          "did you mean 'partition'")
    assert_one_line_error(*run_cli("score", "--config", str(CONFIG), "--shard", "2/2"), "--shard '2/2'")
    assert_one_line_error(*run_cli("score", "--config", str(CONFIG), "--launcher", "slrum"),
                          "did you mean 'slurm'")
    assert_no_results(tmp_path / "out")


def test_real_subprocess_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = config_with(tmp_path, TINY.replace("batch_size: 4", "batchsize: 4"))
    proc = subprocess.run([sys.executable, "-m", "neuronimp.cli", "score", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "did you mean 'batch_size'")


# ---------------------------------------------------------------- checkpoints
def _good_checkpoint(path: Path) -> Path:
    bundle = create_model("digits_mlp", weights="none", width=16)
    torch.save(bundle.model.state_dict(), path)
    return path


class Payload:
    """A pickled class: a checkpoint holding it carries code."""

    def __reduce__(self) -> tuple:
        return (os.getcwd, ())


CHECKPOINTS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "truncated": (lambda p: p.write_bytes(_good_checkpoint(p).read_bytes()[:300]), ("corrupt or truncated",)),
    "garbage": (lambda p: p.write_bytes(b"not a checkpoint at all" * 10), ("corrupt or truncated",)),
    "empty": (lambda p: p.write_bytes(b""), ("corrupt or truncated",)),
    "carries_code": (lambda p: torch.save({"model": Payload()}, p), ("carries code",)),
    "whole_module": (lambda p: torch.save(torch.nn.Linear(2, 2), p), ("carries code",)),
    "wrong_model": (lambda p: torch.save(torch.nn.Linear(2, 2).state_dict(), p), ("does not fit model",)),
    "missing": (lambda p: None, ("not found",)),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_bad_checkpoint(case: str, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt"
    CHECKPOINTS[case][0](ckpt)
    out = tmp_path / "out"
    assert_one_line_error(*score(CONFIG, out, f"model.weights={ckpt}"), *CHECKPOINTS[case][1])
    assert_no_results(out)


def test_good_checkpoint_loads(tmp_path: Path) -> None:
    ckpt = _good_checkpoint(tmp_path / "model.pt")
    code, err = score(CONFIG, tmp_path / "out", f"model.weights={ckpt}", "data.limit=2")
    assert code == 0, err


# ---------------------------------------------------------------- data files
def _mnist_folder(root: Path, images: np.ndarray) -> Path:
    """A folder of MNIST IDX files: 4 train and len(images) test images."""
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(root / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", images)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(len(images), dtype=np.uint8) % 10)
    return root


def _mnist_args(root: Path) -> list[str]:
    return ["model.name=mnist_mlp", "model.options={width: 8}", "data.name=mnist", f"data.options={{root: '{root}'}}",
            "data.limit=6", "runner.batch_size=2"]


def test_truncated_idx_file(tmp_path: Path) -> None:
    root = _mnist_folder(tmp_path / "mnist", np.full((6, 28, 28), 7, np.uint8))
    f = root / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    out = tmp_path / "out"
    assert_one_line_error(*score(CONFIG, out, *_mnist_args(root)), "not a valid IDX file", "truncated")
    assert_no_results(out)


def test_nan_inputs_are_refused_naming_the_ids(tmp_path: Path) -> None:
    images = np.full((6, 28, 28), 100.0, np.float32)
    images[0, 3, 3] = np.nan
    images[1, 0, 0] = np.inf
    root = _mnist_folder(tmp_path / "mnist", images)
    out = tmp_path / "out"
    assert_one_line_error(*score(CONFIG, out, *_mnist_args(root)), "input ids 0, 1 contain NaN or inf")
    assert_no_results(out)
    images[0, 3, 3] = images[1, 0, 0] = 1.0
    images[4, 5, 5] = np.nan  # in the third batch: the two finished batches stay, no table is written
    _mnist_folder(tmp_path / "mnist", images)
    assert_one_line_error(*score(CONFIG, out, *_mnist_args(root)), "input ids 4 contain NaN")
    assert not (out / "scores.csv").exists()
    assert sorted(p.name for p in (out / "parts" / "score").iterdir()) == [
        "batch-000000.json", "batch-000000.scores.csv", "batch-000001.json", "batch-000001.scores.csv",
        "manifest.json"]


# ---------------------------------------------------------------- output folders
def test_output_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, err = score(CONFIG, tmp_path / "file" / "out")
    assert_one_line_error(code, err, str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "x"


def _read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    probe = Path("/sys/neuronimp-test-out")  # root writes anywhere a mode allows; sysfs refuses new folders
    try:
        probe.mkdir()
    except OSError:
        return probe / "out"
    probe.rmdir()
    pytest.skip("no read-only folder available to root here")


def test_output_in_a_read_only_folder(tmp_path: Path) -> None:
    out = _read_only_dir(tmp_path)
    try:
        code, err = score(CONFIG, out)
        assert_one_line_error(code, err, "cannot write")
        assert not out.exists()
        code, err = run_cli("score", "--config", str(CONFIG), "--set", f"runner.out={out}", "--launcher", "local")
        assert_one_line_error(code, err, "cannot be written")
    finally:
        if out.parent.name == "ro":
            out.parent.chmod(0o755)


def test_merge_of_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    assert_one_line_error(*run_cli("merge", str(tmp_path / "nope")), "is not a folder")
    assert_one_line_error(*run_cli("merge", str(tmp_path)), "no shard tables")
