"""Training never destroys a good checkpoint: NaN losses stop training, NaN weights are never written,
checkpoints are written atomically with a size + SHA-256 sidecar, and a truncated or altered file is refused."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from neuronimp.checkpoints import sidecar_path, verify_checkpoint
from neuronimp.cli import app
from neuronimp.config import TrainCfg
from neuronimp.data import TensorData
from neuronimp.errors import UsageError
from neuronimp.models.weights import read_checkpoint
from neuronimp.training import fit, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _data(n: int = 32) -> TensorData:
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_save_writes_sidecar_and_reads_back(tmp_path: Path) -> None:
    net = _net()
    path = save_checkpoint(tmp_path / "sub" / "net.pt", net.state_dict())
    record = json.loads(sidecar_path(path).read_text())
    data = path.read_bytes()
    assert sidecar_path(path).name == "net.pt.json"
    assert record["file"] == "net.pt" and record["bytes"] == len(data) and len(record["sha256"]) == 64
    assert verify_checkpoint(path) == record
    state = read_checkpoint(path)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.pt", "net.pt.json"]  # no temporary file left


def test_nan_in_data_stops_training_and_keeps_the_good_checkpoint(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "net.pt", _net().state_dict())
    before, side_before = path.read_bytes(), sidecar_path(path).read_bytes()
    bad = _data()
    bad.x[5, 2] = float("nan")  # batch 1 of 4 (batch_size 8) holds it after shuffling, or a later one
    with pytest.raises(UsageError) as err:
        fit(_net(), bad, TrainCfg(epochs=2, batch_size=8, lr=0.01), show=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("loss is nan at epoch 1, batch ")
    assert msg.endswith("the data holds NaN/inf or the learning rate (0.01) is too high; training stopped, "
                        "no checkpoint written")
    assert path.read_bytes() == before and sidecar_path(path).read_bytes() == side_before


def test_non_finite_weights_are_never_written(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "net.pt", _net().state_dict())
    before = path.read_bytes()
    state = _net().state_dict()
    state["2.bias"][1] = float("inf")
    with pytest.raises(UsageError, match=r"^checkpoint .*net\.pt: tensor 2\.bias holds NaN or inf; not written"):
        save_checkpoint(path, state)
    with pytest.raises(UsageError, match=r"tensor model\.0\.weight \(and 1 more\) holds NaN or inf"):
        save_checkpoint(path, {"model": {k: torch.full_like(v, float("nan")) for k, v in state.items()
                                         if k in ("0.weight", "0.bias")}})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["net.pt", "net.pt.json"]


def test_truncated_or_altered_checkpoint_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "net.pt", _net().state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError) as err:
        read_checkpoint(path)
    assert str(err.value) == (f"checkpoint {path} is truncated: {len(data) // 2} bytes, its sidecar records "
                              f"{len(data)}; re-run the training that wrote it, or restore the file (delete "
                              "net.pt.json only if you trust the file as it is)")
    flipped = bytearray(data)
    flipped[len(data) - 100] ^= 0x01  # inside the tensor data: torch.load alone would not notice
    path.write_bytes(bytes(flipped))
    with pytest.raises(UsageError, match=r"^checkpoint .*net\.pt was altered: its SHA-256 differs from the one its "
                                         r"sidecar records; re-run the training"):
        read_checkpoint(path)
    sidecar_path(path).unlink()  # without a sidecar (other tools' checkpoints) the file is taken as it is
    assert verify_checkpoint(path) is None and len(read_checkpoint(path)) == 4


def test_train_command_with_exploding_learning_rate_keeps_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "digits_cnn.pt"
    args = ["train", "--config", str(ROOT / "configs" / "digits_train.yaml"), "--set", f"train.checkpoint={ckpt}",
            "--set", f"runner.out={tmp_path / 'run'}", "--set", "train.epochs=1"]
    good = CliRunner().invoke(app, args)
    assert good.exit_code == 0, good.output
    before = ckpt.read_bytes()
    assert verify_checkpoint(ckpt) is not None
    res = CliRunner().invoke(app, args + ["--set", "train.optimizer=sgd", "--set", "train.lr=1e30"])
    assert res.exit_code == 2
    err = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and re.match(r"error: loss is (nan|inf) at epoch 1, batch \d+: .*no checkpoint written$", err[0])
    assert ckpt.read_bytes() == before
