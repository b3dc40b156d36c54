"""Neuron Shapley: hand-computed games, the exact oracle on a real probe, the axioms, sharding and the bandit."""
from __future__ import annotations

import itertools

import pytest
import torch

from neuronimp.hooks import replace_output
from neuronimp.methods.coalitions import coalition_value, permutation, walk
from neuronimp.methods.shapley import (
    ShapleyParams,
    bandit_topk,
    exact_shapley,
    merge_estimates,
    monte_carlo_shapley,
)
from neuronimp.probe import Probe
from tests.conftest import toy_cnn, toy_mlp

F64 = torch.float64


def additive(w: torch.Tensor):  # noqa: ANN201
    return lambda keep: keep.to(F64) @ w


def sqrt_game(w: torch.Tensor):  # noqa: ANN201
    """v(S) = sqrt(sum of w over S): concave, so a unit's marginal depends on the units before it."""
    return lambda keep: (keep.to(F64) @ w).sqrt()


W12 = torch.tensor([4.0, 3.0, 2.0, 1.6] + [0.3] * 8, dtype=F64)


def ends(value, n):  # noqa: ANN001, ANN201
    v = value(torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]))
    return v[0], v[1]


def mlp_game(layer: str, metric: str = "logit", inputs: int = 3):  # noqa: ANN201
    """The toy MLP cut at `layer` through a real Probe; mean ablation; labels = the model's own argmax."""
    model = toy_mlp()
    torch.manual_seed(3)
    x = 2 * torch.randn(inputs, 6, dtype=F64)
    probe = Probe(model, layer, x)
    a = probe.prefix(x)
    labels = model(x).argmax(1)
    return coalition_value(probe, x, a, a.mean(0, keepdim=True), metric, target=labels, labels=labels,
                           coalition_batch=64), a.shape[1]


# (a) games computed by hand


def test_additive_game_gives_the_weights_exactly(one_thread: None) -> None:
    w = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=F64)
    assert torch.equal(exact_shapley(additive(w), 4), w)
    est = monte_carlo_shapley(additive(w), 4, ShapleyParams(permutations=6, seed=5))
    assert torch.allclose(est.mean, w, atol=1e-15, rtol=0)  # every marginal of unit i is w_i
    assert torch.equal(est.se, torch.zeros(4, dtype=F64))


def test_majority_and_weighted_voting_games(one_thread: None) -> None:
    majority = lambda keep: (keep.sum(1) >= 2).to(F64)  # noqa: E731
    assert torch.allclose(exact_shapley(majority, 3), torch.full((3,), 1 / 3, dtype=F64), atol=1e-15)
    # Weighted voting [quota 3; weights 2, 1, 1]: player 0 is pivotal in 4 of 6 orders.
    voting = lambda keep: (keep.to(F64) @ torch.tensor([2.0, 1.0, 1.0], dtype=F64) >= 3).to(F64)  # noqa: E731
    assert torch.allclose(exact_shapley(voting, 3), torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=F64), atol=1e-15)
    perms = torch.tensor(list(itertools.permutations(range(3))))
    marg, evals = walk(voting, perms, *ends(voting, 3))
    assert torch.allclose(marg.mean(0), torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=F64), atol=1e-15)
    assert evals == 6 * 2


def test_exact_refuses_more_than_16_units() -> None:
    with pytest.raises(ValueError, match="16"):
        exact_shapley(additive(torch.ones(17, dtype=F64)), 17)


# (b) the exact oracle on a small real network


@pytest.mark.parametrize(("metric", "shape"), [("logit", (8, 3)), ("accuracy", (8,))])
def test_monte_carlo_within_4_se_of_exact_on_a_probe(one_thread: None, metric: str, shape: tuple) -> None:
    # 8 ReLU units; "logit": target logit of 3 inputs, values [M, 3]; "accuracy" over 16 inputs, values [M].
    value, n = mlp_game("1", metric, 3 if metric == "logit" else 16)
    exact = exact_shapley(value, n)
    est = monte_carlo_shapley(value, n, ShapleyParams(permutations=200, seed=1))
    assert exact.shape == est.mean.shape == shape
    gap = (est.mean - exact).abs()
    assert (gap <= 4 * est.se + 1e-12).all(), (gap / est.se).max()
    assert (est.se > 0).sum() >= 7  # the bound is not vacuous: marginals vary (units interact)
    if metric == "accuracy":
        assert (est.se > 1e-3).sum() >= 6 and exact.max() > 0.3


def test_all_permutations_give_the_exact_value(one_thread: None) -> None:
    value, n = mlp_game("3", "accuracy", 16)  # 7 units, accuracy over 16 inputs: values [M]
    perms = torch.tensor(list(itertools.permutations(range(n))))  # 5040
    marg, evals = walk(value, perms, *ends(value, n))
    exact = exact_shapley(value, n)
    assert torch.allclose(marg.mean(0), exact, atol=1e-12, rtol=0)
    assert exact.abs().max() > 0.05 and evals == 5040 * 6
    value, n = mlp_game("3")
    marg, _ = walk(value, perms, *ends(value, n))
    assert torch.allclose(marg.mean(0), exact_shapley(value, n), atol=1e-10, rtol=0)


# (c) efficiency: the values sum to v(all) - v(none)


def test_efficiency_exact_and_per_permutation(one_thread: None) -> None:
    value, n = mlp_game("1")
    v_none, v_all = ends(value, n)
    assert torch.allclose(exact_shapley(value, n).sum(0), v_all - v_none, atol=1e-12, rtol=0)
    perms = torch.stack([permutation(7, p, n, True) for p in range(10)])
    marg, _ = walk(value, perms, v_none, v_all)
    assert torch.allclose(marg.sum(1), (v_all - v_none).expand(10, 3), atol=1e-12, rtol=0)
    assert marg.std(0).max() > 1e-3  # the orders do differ


# (d) determinism, sharding, antithetic pairs and their standard error


def test_permutations_are_seeded_and_antithetic() -> None:
    assert torch.equal(permutation(3, 4, 9, True), permutation(3, 4, 9, True))
    assert torch.equal(permutation(3, 5, 9, True), permutation(3, 4, 9, True).flip(0))
    assert not torch.equal(permutation(3, 4, 9, True), permutation(4, 4, 9, True))
    assert not torch.equal(permutation(3, 4, 9, False), permutation(3, 5, 9, False).flip(0))


@pytest.mark.parametrize("antithetic", [True, False])
def test_shards_merge_to_the_unsharded_estimate(one_thread: None, antithetic: bool) -> None:
    game = sqrt_game(W12)
    params = ShapleyParams(permutations=40, truncation=0.05, antithetic=antithetic, seed=11, coalition_batch=16)
    whole = monte_carlo_shapley(game, 12, params)
    again = monte_carlo_shapley(game, 12, ShapleyParams(**{**params.__dict__, "coalition_batch": 7}))
    # the batching changes no marginal, only the order of the sums
    assert torch.allclose(whole.mean, again.mean, atol=1e-14, rtol=0)
    assert torch.allclose(whole.se, again.se, atol=1e-14, rtol=0)
    shards = [monte_carlo_shapley(game, 12, params, [p for p in range(40) if p % 3 == r]) for r in range(3)]
    assert any(s.pending for s in shards) == antithetic  # mod 3 splits the antithetic pairs
    merged = merge_estimates(shards)
    assert not merged.pending
    assert torch.allclose(merged.mean, whole.mean, atol=1e-12, rtol=0)
    assert torch.allclose(merged.se, whole.se, atol=1e-12, rtol=0)
    assert torch.equal(merged.count, whole.count) and torch.equal(merged.samples, whole.samples)
    assert merged.evaluations == sum(s.evaluations for s in shards)


def test_antithetic_se_is_over_pair_averages(one_thread: None) -> None:
    game, n = sqrt_game(W12), 12
    est = monte_carlo_shapley(game, n, ShapleyParams(permutations=30, seed=2))
    perms = torch.stack([permutation(2, p, n, True) for p in range(30)])
    marg, _ = walk(game, perms, *ends(game, n))
    pairs = (marg[0::2] + marg[1::2]) / 2  # [15, U]
    assert torch.allclose(est.mean, marg.mean(0), atol=1e-14, rtol=0)
    assert torch.allclose(est.se, pairs.std(0) / 15**0.5, atol=1e-14, rtol=0)
    assert est.samples.tolist() == [15] * n and est.count.tolist() == [30] * n


# (e) truncation


def test_truncation_saves_evaluations(one_thread: None) -> None:
    p = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1], dtype=F64)
    game = lambda keep: 1 - torch.where(keep, 1 - p, torch.ones_like(p)).prod(1)  # noqa: E731  (saturates)
    exact = exact_shapley(game, 10)
    full = monte_carlo_shapley(game, 10, ShapleyParams(permutations=64, seed=4))
    assert full.evaluations == 2 + 64 * 9  # v(none), v(all) once; n - 1 prefixes per permutation
    tmc = ShapleyParams(permutations=64, seed=4, truncation=0.05, coalition_batch=8)
    add = monte_carlo_shapley(game, 10, tmc)
    assert add.evaluations < 0.55 * full.evaluations, add.evaluations
    one = monte_carlo_shapley(game, 10, ShapleyParams(**{**tmc.__dict__, "coalition_batch": 1}))
    assert one.evaluations <= add.evaluations  # one coalition per call: nothing queued past a truncation
    assert torch.allclose(one.mean, add.mean, atol=1e-14, rtol=0)
    # each permutation's marginals sum to v(S_L) - v(none), within the tolerance of v(all) - v(none) = 1
    assert 1 - 0.05 <= add.mean.sum() <= 1 and (add.mean - exact).abs().max() < 0.05
    # The dual game v*(S) = v(N) - v(N minus S) has the same Shapley values and saturates from above, where
    # Neuron Shapley's walk (ablate units from the full network) truncates: the mirror image of the above.
    dual = lambda keep: game(torch.ones_like(keep)) - game(~keep)  # noqa: E731
    assert torch.allclose(exact_shapley(dual, 10), exact, atol=1e-14, rtol=0)
    down = monte_carlo_shapley(dual, 10, ShapleyParams(**{**tmc.__dict__, "direction": "remove"}))
    assert down.evaluations == add.evaluations and torch.allclose(down.mean, add.mean, atol=1e-14, rtol=0)
    up = monte_carlo_shapley(dual, 10, tmc)
    assert up.evaluations > 0.9 * full.evaluations  # the wrong direction for this game saves little


# (f) the bandit


def test_bandit_finds_top_k_with_fewer_evaluations(one_thread: None) -> None:
    game = sqrt_game(W12)
    truth = exact_shapley(game, 12).argsort(descending=True)[:3]  # units 0, 1, 2; the 4th is 0.45 vs 0.54
    params = ShapleyParams(permutations=16, seed=0)
    bandit = bandit_topk(game, 12, 3, params, max_permutations=2000)
    plain = bandit_topk(game, 12, 3, params, max_permutations=2000, adaptive=False)
    assert bandit.top.tolist() == truth.tolist() == plain.top.tolist()
    assert bandit.settled.all() and plain.settled.all()
    assert bandit.evaluations < 0.6 * plain.evaluations, (bandit.evaluations, plain.evaluations)
    assert bandit.estimate.count[4:].max() < bandit.estimate.count[2]  # settled small units stopped early
    bern = bandit_topk(game, 12, 3, params, max_permutations=2000, value_range=2.0)
    assert bern.top.tolist() == truth.tolist()


def test_bandit_stops_at_max_permutations(one_thread: None) -> None:
    tie = additive(torch.tensor([1.0, 1.0, 1.0], dtype=F64))  # k = 1 of three equal units: never settles
    r = bandit_topk(lambda k: tie(k) + 1e-3 * k[:, 0].to(F64) * k[:, 1].to(F64), 3, 1,
                    ShapleyParams(permutations=4), max_permutations=12)
    assert r.permutations == 12 and r.rounds == 3 and not r.settled[:2].any()


# (g) the batched suffix against a full forward with a hook


@pytest.mark.parametrize("mode", ["fx", "hook"])
def test_coalition_value_matches_masked_full_forward(one_thread: None, mode: str) -> None:
    model = toy_cnn()
    x = torch.randn(4, 2, 8, 8, dtype=F64)
    probe = Probe(model, "1", x)
    probe.mode = mode  # "hook": the suffix is a full forward with the layer's output replaced
    a = probe.prefix(x)  # [4, 4, 6, 6]
    fill = a.mean(0, keepdim=True)  # mean ablation
    logits = model(x)
    target, labels = logits.argmin(1), logits.argmax(1)
    keep = torch.rand(9, 4) > 0.4
    keep[0] = True
    keep[1] = False
    with torch.no_grad():
        naive = []
        for k in keep:
            with replace_output(model, "1", lambda out, k=k: torch.where(k.view(1, 4, 1, 1), out, fill)):
                naive.append(model(x))
        naive = torch.stack(naive)  # [9, 4, 3]
    want = {"logit": naive.gather(2, target.view(1, 4, 1).expand(9, 4, 1)).squeeze(2),
            "accuracy": (naive.argmax(2) == labels).to(F64).mean(1)}
    for metric, ref in want.items():
        got = coalition_value(probe, x, a, fill, metric, target=target, labels=labels, coalition_batch=2)(keep)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-12, rtol=0), metric
    assert want["accuracy"][0] == 1 and 0 < want["accuracy"].min() < 1  # the masks matter
    own = coalition_value(probe, x, a, fill, lambda lg: lg.softmax(2)[..., 0])(keep)
    assert torch.allclose(own, naive.softmax(2)[..., 0], atol=1e-12, rtol=0)
