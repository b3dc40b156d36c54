"""The registered method `shapley` (per-input target-logit game): exact oracle, efficiency axiom, determinism,
its ablation values and its "game" delta in the engine."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.methods import MethodParams, compute_scores, needs_stats
from neuronimp.methods.coalitions import coalition_value
from neuronimp.methods.shapley import ShapleyParams, exact_shapley, input_seed, monte_carlo_shapley
from neuronimp.probe import Probe
from tests.conftest import toy_mlp

F64 = torch.float64


def five_unit_net() -> nn.Module:
    """Linear(4, 5) -> ReLU (the 5 players) -> Linear(5, 6) -> ReLU -> Linear(6, 3): a non-additive game."""
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()


def oracle(model: nn.Module, layer: str, x: torch.Tensor, t: torch.Tensor, value_a: torch.Tensor) -> torch.Tensor:
    """Exact Shapley values [B, U] of each input's target-logit game, from all 2^U coalitions."""
    probe = Probe(model, layer, x[:1])
    a = probe.prefix(x)
    rows = []
    for b in range(len(x)):
        va = value_a[b : b + 1] if value_a.shape[0] > 1 else value_a
        v = coalition_value(probe, x[b : b + 1], a[b : b + 1], va, "logit", target=t[b : b + 1])
        rows.append(exact_shapley(v, a.shape[1])[:, 0])
    return torch.stack(rows)


def test_exact_on_five_units_and_efficiency(one_thread: None) -> None:
    """2^5 <= permutations * 5: the method enumerates, equals the oracle, and sums to F(x) - F(x, all ablated)."""
    model = five_unit_net()
    torch.manual_seed(0)
    x = 2 * torch.randn(4, 4, dtype=F64)
    t = model(x).argmax(1)
    s = compute_scores(model, x, torch.zeros_like(x), t, ["1"], ["shapley"], MethodParams(shapley_permutations=8))
    phi = s.scores[("1", "shapley")]
    assert torch.allclose(phi, oracle(model, "1", x, t, torch.zeros(1, 5, dtype=F64)), atol=1e-12, rtol=0)
    with torch.no_grad():  # every unit ablated to zero: the suffix of a zero activation, by hand
        none = model[4](model[3](model[2](torch.zeros(len(x), 5, dtype=F64)))).gather(1, t[:, None])[:, 0]
    ref = model(x).gather(1, t[:, None])[:, 0] - none
    assert torch.allclose(phi.sum(1), ref, atol=1e-12)
    assert torch.allclose(s.references[("1", "shapley")], ref, atol=1e-12)
    assert s.delta("1", "shapley").abs().max() < 1e-12
    assert (phi.abs() > 1e-3).sum() >= 4  # not a degenerate game


def test_monte_carlo_is_the_seeded_tmc_estimate_within_4_se(one_thread: None) -> None:
    """8 units, 16 permutations (2^8 > 16 * 8): the method is monte_carlo_shapley seeded by (seed, input id),
    within 4 standard errors of the exact value; efficiency holds per input up to rounding."""
    model = toy_mlp()
    torch.manual_seed(2)
    x = 3 * torch.randn(3, 6, dtype=F64)
    t = model(x).argmax(1)
    ids = torch.tensor([11, 12, 13])
    params = MethodParams(shapley_permutations=16, random_seed=7)
    s = compute_scores(model, x, torch.zeros_like(x), t, ["1"], ["shapley"], params, ids=ids)
    phi = s.scores[("1", "shapley")]
    exact = oracle(model, "1", x, t, torch.zeros(1, 8, dtype=F64))
    probe = Probe(model, "1", x[:1])
    a = probe.prefix(x)
    for b in range(3):
        v = coalition_value(probe, x[b : b + 1], a[b : b + 1], torch.zeros(1, 8, dtype=F64), "logit",
                            target=t[b : b + 1])
        est = monte_carlo_shapley(v, 8, ShapleyParams(permutations=16, seed=input_seed(7, int(ids[b]))))
        assert torch.allclose(phi[b], est.mean[:, 0], atol=1e-12, rtol=0)
        se = est.se[:, 0]
        assert ((phi[b] - exact[b]).abs() <= 4 * se + 1e-9).all()
    assert not torch.allclose(phi, exact, atol=1e-6)  # sampled, not enumerated
    assert s.delta("1", "shapley").abs().max() < 1e-12  # each permutation's marginals telescope


def test_deterministic_per_input_id_and_seed(one_thread: None) -> None:
    """An input's values depend on (random_seed, its id) only: the batch it came in does not matter."""
    model = toy_mlp()
    torch.manual_seed(2)
    x = 3 * torch.randn(3, 6, dtype=F64)
    t = model(x).argmax(1)
    p = MethodParams(shapley_permutations=6)
    whole = compute_scores(model, x, torch.zeros_like(x), t, ["1"], ["shapley"], p, ids=torch.tensor([4, 5, 6]))
    alone = compute_scores(model, x[1:2], torch.zeros_like(x[:1]), t[1:2], ["1"], ["shapley"], p,
                           ids=torch.tensor([5]))
    assert torch.allclose(whole.scores[("1", "shapley")][1], alone.scores[("1", "shapley")][0], atol=1e-12, rtol=0)
    other = compute_scores(model, x, torch.zeros_like(x), t, ["1"], ["shapley"],
                           MethodParams(shapley_permutations=6, random_seed=1), ids=torch.tensor([4, 5, 6]))
    assert (whole.scores[("1", "shapley")] - other.scores[("1", "shapley")]).abs().max() > 1e-3


def test_baseline_ablation_reference_and_truncation_delta(one_thread: None) -> None:
    """Baseline ablation: v(none) = F(x'), so the reference is F(x) - F(x'); with truncation the efficiency
    delta is at most truncation * |v(all) - v(none)| and relative_delta divides by the method's reference."""
    model = toy_mlp()
    torch.manual_seed(2)
    x = 3 * torch.randn(4, 6, dtype=F64)
    base = 0.5 * torch.randn(4, 6, dtype=F64)
    t = model(x).argmax(1)
    p = MethodParams(shapley_permutations=8, shapley_truncation=0.1, shapley_ablation="baseline")
    s = compute_scores(model, x, base, t, ["1"], ["shapley"], p)
    ref = s.references[("1", "shapley")]
    assert torch.allclose(ref, s.f_input - s.f_baseline, atol=1e-12)
    d = s.delta("1", "shapley")
    assert (d.abs() <= 0.1 * ref.abs() + 1e-12).all()
    assert torch.allclose(s.relative_delta("1", "shapley"), d.abs() / ref.abs())


def test_mean_ablation_needs_statistics() -> None:
    """needs_stats follows attribution.shapley_ablation; mean ablation without statistics is a UsageError."""
    assert not needs_stats(["shapley"])
    assert needs_stats(["shapley"], MethodParams(shapley_ablation="mean"))
    model = five_unit_net()
    x = torch.randn(2, 4, dtype=F64)
    with pytest.raises(UsageError, match="shapley_ablation = mean needs dataset statistics"):
        compute_scores(model, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), ["1"], ["shapley"],
                       MethodParams(shapley_ablation="mean"))
