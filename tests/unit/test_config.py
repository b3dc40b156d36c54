"""Configs: every YAML under configs/ loads; bad configs give one precise line."""
from __future__ import annotations

from pathlib import Path

import pytest

from neuronimp.config import config_class, load_config
from neuronimp.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, config_class())  # the built-in sections plus those of registered plug-ins


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("model: {nmae: digits_cnn}\n", ["c.yaml", "model.nmae", "allowed here", "name", "did you mean 'name'"]),
        ("attribution: {n_steps: many}\n", ["attribution.n_steps", "'many'", "integer"]),
        ("attribution: {n_steps: 0}\n", ["attribution.n_steps", "greater than or equal to 1"]),
        ("attribution: {rule: romberg}\n", ["attribution.rule", "'romberg'", "riemann_left", "simpson"]),
        ("methods: [conductence]\n", ["methods", "conductence", "did you mean 'conductance'"]),
        ("model: {name: googlenett}\n", ["model.name", "googlenett", "did you mean 'googlenet'"]),
        ("data: {name: digit}\n", ["data.name", "did you mean 'digits'"]),
        ("model: [\n", ["malformed YAML", "line"]),
        ("- a\n- b\n", ["top level must be a mapping"]),
        ("attribution: {baseline: /no/such/file.pt}\n", ["attribution.baseline", "zero, mean, blur"]),
    ],
)
def test_bad_config_one_line_message(tmp_path: Path, text: str, needles: list[str]) -> None:
    with pytest.raises(UsageError) as err:
        load_config(_write(tmp_path, text))
    msg = str(err.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_precedence_defaults_file_overrides(tmp_path: Path) -> None:
    p = _write(tmp_path, "attribution: {n_steps: 20}\nruns: 1\n".replace("runs: 1\n", ""))
    assert load_config(None).attribution.n_steps == 50
    assert load_config(p).attribution.n_steps == 20
    cfg = load_config(p, ["attribution.n_steps=100", "methods=[conductance, random]", "runner.device=cpu"])
    assert cfg.attribution.n_steps == 100
    assert cfg.methods == ["conductance", "random"]
    assert cfg.attribution.rule == "trapezoid"  # untouched default


def test_bad_override() -> None:
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        load_config(None, ["attribution.n_steps"])
    with pytest.raises(UsageError, match="attribution.n_steps"):
        load_config(None, ["attribution.n_steps=-3"])
