"""Typed data options: declared in each loader's signature, checked up front (config load and load_data)."""
from __future__ import annotations

from pathlib import Path

import pytest

from neuronimp.config import load_config
from neuronimp.data import check_data_options, load_data
from neuronimp.data.options import describe, loader_options
from neuronimp.errors import UsageError

DIGITS = "allowed options of digits: test_fraction, seed, corrupt, corrupt_seed, corrupt_mode"


def _config(tmp_path: Path, options: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f"model: {{name: digits_cnn}}\ndata: {{name: digits, options: {options}}}\n")
    return p


@pytest.mark.parametrize(("options", "message"), [
    ("{test_fraction: abc}", f"data.options.test_fraction = 'abc': expected a number in (0, 1); {DIGITS}"),
    ("{test_fraction: 1}", f"data.options.test_fraction = 1: expected a number in (0, 1); {DIGITS}"),
    ("{corrupt: abc}", f"data.options.corrupt = 'abc': expected a number in [0, 1]; {DIGITS}"),
    ("{corrupt_mode: uniformly}", "data.options.corrupt_mode = 'uniformly': expected one of 'uniform', "
                                  f"'different'; {DIGITS}"),
    ("{seed: 1.5}", f"data.options.seed = 1.5: expected an integer >= 0; {DIGITS}"),
    ("{seed: true}", f"data.options.seed = True: expected an integer >= 0; {DIGITS}"),
    ("{test_frac: 0.1}", "data.options of digits: unknown option 'test_frac'; allowed: corrupt, corrupt_mode, "
                         "corrupt_seed, seed, test_fraction (did you mean 'test_fraction'?)"),
])
def test_config_refuses_bad_options_in_one_line(tmp_path: Path, options: str, message: str) -> None:
    path = _config(tmp_path, options)
    with pytest.raises(UsageError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"


def test_set_override_and_good_options(tmp_path: Path) -> None:
    path = _config(tmp_path, "{test_fraction: 0.25, corrupt: 0.5}")
    assert load_config(path).data.options == {"test_fraction": 0.25, "corrupt": 0.5}
    with pytest.raises(UsageError, match=r"data\.options\.test_fraction = 'abc': expected a number in \(0, 1\)"):
        load_config(path, ["data.options.test_fraction=abc"])
    # ints are numbers; the checked values come back typed
    assert check_data_options("digits", {"test_fraction": 0.5, "corrupt": 1}) == {"test_fraction": 0.5, "corrupt": 1.0}


def test_every_loader_declares_typed_options() -> None:
    from neuronimp.data import DATASETS

    for name in DATASETS.names():
        for option, (annotation, _) in loader_options(name).items():
            assert describe(annotation) != "Any", f"{name}.{option} has no type"
    assert describe(loader_options("sst2")["dev_fraction"][0]) == "a number in [0, 0.5) or null"
    assert describe(loader_options("mr")["cv_fold"][0]) == "an integer in 0..9"
    assert describe(loader_options("mnist")["root"][0]) == "a path or null"


def test_load_data_checks_before_reading_files(tmp_path: Path) -> None:
    # a NaN never passes a range; checked before the (empty) folder is looked at
    with pytest.raises(UsageError, match=r"^data\.options\.dev_fraction = nan: expected a number in \[0, 0\.5\)"):
        load_data("mr", root=str(tmp_path), dev_fraction=float("nan"))
    with pytest.raises(UsageError, match=r"^data\.options\.train_limit = -1: expected an integer >= 0 or null"):
        load_data("fashion_mnist", root=str(tmp_path), train_limit=-1)
    with pytest.raises(UsageError, match=r"^data\.options\.per_class = 0: expected an integer >= 1 or null"):
        load_data("imagenet_folder", root=str(tmp_path), per_class=0)
