"""Checks before any work (runner/preflight.py) and the error helpers: numbers and exact refusals."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from neuronimp.config import check_out_path, load_config
from neuronimp.errors import UsageError, one_line, shorten, shown
from neuronimp.methods.engine import Scores, check_delta
from neuronimp.methods.grid import suggest_steps
from neuronimp.methods.params import MethodParams
from neuronimp.models import ModelBundle
from neuronimp.runner.context import pick_device
from neuronimp.runner.preflight import KNOWN_CLASSES, check_config, check_input, check_layers, check_target

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_passes_the_validate_checks(path: Path) -> None:
    check_config(load_config(path), str(path))  # models built on the meta device: no weights, no data


def test_known_class_counts_match_the_loader() -> None:
    from neuronimp.data import load_data

    assert load_data("digits").num_classes == KNOWN_CLASSES["digits"] == 10


def test_target_range() -> None:
    check_target(9, 10, "m")
    check_target("predicted", 10, "m")
    for bad in (10, 99, -1):
        with pytest.raises(UsageError, match=rf"attribution.target = {bad}: model 'm' has 10 classes; .* 0\.\.9"):
            check_target(bad, 10, "m")


class WithAux(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 0), nn.ReLU(),
                                  nn.Linear(0, 2))
        self.aux = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_layers_reached_and_with_units() -> None:
    bundle = ModelBundle(WithAux().eval(), "toy", 2, (1, 2, 2), default_layer="body.2")
    assert check_layers(bundle, []) == ["body.2"]
    with pytest.raises(UsageError, match="layer 'aux' of model 'toy' is never reached"):
        check_layers(bundle, ["aux"])
    with pytest.raises(UsageError, match=r"layer 'body.4' of model 'toy' has no units \(output shape \[0\]\)"):
        check_layers(bundle, ["body.4"])


def test_input_shape_against_the_model() -> None:
    bundle = ModelBundle(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()).eval(), "c", 2, (1, 8, 8))
    check_input(bundle, torch.zeros(1, 8, 8), "d")
    check_input(bundle, torch.zeros(1, 12, 12), "d")  # a conv net takes larger images
    with pytest.raises(UsageError, match=r"shape \[3, 8, 8\] but model 'c' takes \[1, 8, 8\] \(3 channels"):
        check_input(bundle, torch.zeros(3, 8, 8), "d")
    mlp = ModelBundle(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval(), "m", 2, (1, 8, 8))
    with pytest.raises(UsageError, match=r"and fails on them \(RuntimeError\)"):
        check_input(mlp, torch.zeros(1, 9, 9), "d")


def test_nan_delta_is_a_warning_never_a_step_count() -> None:
    with pytest.raises(ValueError, match="non-finite delta"):
        suggest_steps("trapezoid", 50, math.nan, 0.05)
    assert suggest_steps("trapezoid", 50, 0.1, 0.05) == 100
    s = Scores(scores={("l", "conductance"): torch.ones(2, 3)},
               deltas={("l", "conductance"): torch.tensor([0.0, math.nan])},
               f_input=torch.ones(2), f_baseline=torch.zeros(2))
    msg = check_delta(s, MethodParams(), "l", "conductance")
    assert msg is not None and "NaN or inf" in msg and "n_steps" not in msg


def test_devices() -> None:
    assert pick_device("cpu").type == "cpu"
    if not torch.backends.mps.is_available():
        with pytest.raises(UsageError, match=r"runner.device = 'mps' is not available on this machine; "
                                             r"available here: auto, cpu"):
            pick_device("mps")
    with pytest.raises(UsageError, match=r"runner.device = 'cuda:97' is not available on this machine"):
        pick_device("cuda:97")
    with pytest.raises(UsageError, match="'gpu' is not a device name"):
        pick_device("gpu")


def test_output_paths(tmp_path: Path) -> None:
    assert check_out_path(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    with pytest.raises(UsageError, match=r"is 300 bytes long; this file system allows at most 255"):
        check_out_path(tmp_path / ("n" * 300))
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match=rf"cannot be made: {tmp_path / 'f'} is a file, not a folder"):
        check_out_path(tmp_path / "f" / "out")
    with pytest.raises(UsageError, match="is a file; give a folder path"):
        check_out_path(tmp_path / "f")
    assert not (tmp_path / "a").exists()  # nothing is created


def test_shortening_and_one_line() -> None:
    assert shorten("abc") == "abc" and len(shorten("x" * 20_000)) == 80 and shorten("x" * 100).endswith("...")
    assert shown("x" * 100) == repr("x" * 77 + "...")
    worker = ("Caught UsageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
              '  File "x.py", line 1, in f\n    raise UsageError(m)\n'
              "neuronimp.errors.UsageError: cannot read image a.png")
    assert one_line(worker) == "cannot read image a.png"
    assert one_line("a\nb  c") == "a b c"
    assert one_line("name " + "y" * 5000) == "name " + "y" * 77 + "..."
