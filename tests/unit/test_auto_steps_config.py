"""`attribution.n_steps: auto` wired through the config, the engine and the tables."""
from __future__ import annotations

import pytest
import torch

from neuronimp.config import AttributionCfg, build_config
from neuronimp.errors import UsageError
from neuronimp.methods import compute_scores
from neuronimp.methods.grid import make_grid
from neuronimp.methods.path import path_sweep
from tests.conftest import toy_cnn


def test_auto_needs_a_nested_rule_and_simpson_an_even_n() -> None:
    with pytest.raises(UsageError, match="n_steps: auto refines nested grids; rule 'gauss_legendre'"):
        build_config({"attribution": {"n_steps": "auto", "rule": "gauss_legendre"}})
    with pytest.raises(UsageError, match="simpson needs an even n_steps, got 7"):
        build_config({"attribution": {"n_steps": 7, "rule": "simpson"}})
    with pytest.raises(UsageError, match="attribution.n_steps"):
        build_config({"attribution": {"n_steps": "many"}})
    assert build_config({"attribution": {"n_steps": "auto"}}).attribution.params().auto


def test_engine_auto_equals_a_fixed_sweep_at_each_inputs_steps(one_thread: None) -> None:
    model = toy_cnn()
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64) * torch.tensor([0.1, 1, 3, 10, 30]).view(5, 1, 1, 1).double()
    base, target = torch.zeros_like(x), torch.tensor([0, 1, 2, 0, 1])
    params = AttributionCfg(n_steps="auto", delta_tolerance=0.01, start_steps=4, max_steps=256).params()
    s = compute_scores(model, x, base, target, ["1"], ["conductance", "layer_ig"], params)
    assert s.steps is not None and s.steps.shape == (5,)
    rel = s.relative_delta("1", "conductance")
    assert bool(((rel <= 0.01) | (s.steps == 256)).all())
    for b in range(5):  # each input's scores are those of a fixed grid with its own n
        n = int(s.steps[b])
        want = path_sweep(model, x[b : b + 1], base[b : b + 1], target[b : b + 1], ["1"], ["conductance"],
                          make_grid("trapezoid", n))
        assert torch.allclose(s.scores[("1", "conductance")][b], want.scores[("1", "conductance")][0], atol=1e-10)
    with pytest.raises(UsageError, match="needs a number"):
        make_grid("trapezoid", "auto")
