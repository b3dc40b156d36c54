"""The engine's other methods against Captum, hand-computed toy networks, and the axioms."""
from __future__ import annotations

import pytest
import torch
from captum.attr import LayerDeepLift, LayerIntegratedGradients, NeuronConductance
from torch import nn

from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores
from neuronimp.methods.grid import make_grid
from neuronimp.methods.neuron import neuron_conductance
from neuronimp.methods.path import path_sweep
from neuronimp.errors import UsageError
from neuronimp.methods.selectivity import LayerStats, layer_statistics, selectivity_index
from tests.conftest import toy_cnn, toy_mlp


def _linear(w: float, b: float) -> nn.Linear:
    lin = nn.Linear(1, 1).double()
    with torch.no_grad():
        lin.weight.fill_(w)
        lin.bias.fill_(b)
    return lin


def test_saturation_example_by_hand() -> None:
    # y = x; F = 1 - relu(1 - y). x = 2, x' = 0: F(x) - F(x') = 1, but dF/dy(x) = 0 (saturated).
    m = nn.Sequential(_linear(1, 0), _linear(-1, 1), nn.ReLU(), _linear(-1, 1)).eval()
    x, b, t = torch.tensor([[2.0]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), torch.tensor([0])
    r = path_sweep(m, x, b, t, ["0"], ["grad_x_act", "conductance"], make_grid("trapezoid", 5))
    assert float(r.scores[("0", "grad_x_act")]) == 0.0
    assert float(r.scores[("0", "conductance")]) == pytest.approx(1.0, abs=1e-12)
    assert float(r.deltas["0"]) == pytest.approx(0.0, abs=1e-12)


def test_overshoot_example_by_hand() -> None:
    # y = x; F = relu(y - 1). x = 2, x' = 0: F(x) - F(x') = 1, gradient x activation = 1 * 2 = 2 overshoots.
    m = nn.Sequential(_linear(1, 0), _linear(1, -1), nn.ReLU()).eval()
    x, b, t = torch.tensor([[2.0]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64), torch.tensor([0])
    r = path_sweep(m, x, b, t, ["0"], ["grad_x_act", "conductance", "activation"], make_grid("trapezoid", 5))
    assert float(r.scores[("0", "grad_x_act")]) == pytest.approx(2.0)
    assert float(r.scores[("0", "activation")]) == pytest.approx(2.0)
    assert float(r.scores[("0", "conductance")]) == pytest.approx(1.0, abs=1e-12)
    # The paper's case: input 1, baseline 0 gives output 0 and conductance 0.
    r1 = path_sweep(m, x / 2, b, t, ["0"], ["conductance"], make_grid("riemann_left", 50))
    assert float(r1.scores[("0", "conductance")]) == pytest.approx(0.0, abs=1e-12)


def test_ignored_and_constant_units_have_zero_conductance() -> None:
    m = toy_mlp()
    with torch.no_grad():
        m[2].weight[:, 0] = 0.0  # unit 0 of layer "1" is ignored by the rest of the network
        m[0].weight[3] = 0.0  # unit 3 of layer "1" cannot change: its value is relu(bias) for every input
        m[0].bias[3] = 0.7
    x = torch.randn(5, 6, dtype=torch.float64)
    r = path_sweep(m, x, torch.zeros_like(x), torch.zeros(5, dtype=torch.long), ["1"],
                   ["conductance", "internal_influence", "activation"], make_grid("trapezoid", 16))
    cond = r.scores[("1", "conductance")]
    assert cond[:, 0].abs().max() == 0 and cond[:, 3].abs().max() == 0
    assert r.scores[("1", "internal_influence")][:, 0].abs().max() == 0
    assert torch.allclose(r.scores[("1", "activation")][:, 3], torch.full((5,), 0.7, dtype=torch.float64))


def test_conductance_is_linear_in_the_output() -> None:
    base = toy_mlp()
    head = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [2.0, -3.0, 0]]))
    m = nn.Sequential(base, head).eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    g = make_grid("riemann_left", 12)
    c = {t: path_sweep(m, x, torch.zeros_like(x), torch.full((4,), t), ["0.1"], ["conductance"], g)
         .scores[("0.1", "conductance")] for t in range(3)}
    torch.testing.assert_close(c[2], 2 * c[0] - 3 * c[1])


def test_hooks_removed_and_weights_untouched_after_success_and_error() -> None:
    m = toy_cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    cfg = AttributionCfg(n_steps=4).params()
    compute_scores(m, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), ["1", "3"],
                   ["conductance", "layer_ig", "deeplift", "ablation_zero", "lrp_epsilon"], cfg)

    class Boom(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    bad = nn.Sequential(m, Boom())
    with pytest.raises(RuntimeError, match="boom"):
        path_sweep(bad, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), ["0.1"], ["conductance"],
                   make_grid("trapezoid", 4))
    for mod in m.modules():
        assert not mod._forward_hooks and not mod._backward_hooks and not mod._forward_pre_hooks
        assert not hasattr(mod, "rule") and not hasattr(mod, "activations")
    assert all(p.requires_grad for p in m.parameters())
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_layer_ig_matches_captum() -> None:
    m = toy_cnn()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    b = torch.full_like(x, -0.2)
    t = torch.tensor([2, 0, 1])
    cfg = AttributionCfg(n_steps=16, rule="riemann_left").params()
    ours = compute_scores(m, x, b, t, ["1"], ["layer_ig"], cfg).scores[("1", "layer_ig")]
    want = LayerIntegratedGradients(m, m[1]).attribute(x, b, target=t, n_steps=16, method="riemann_left")
    torch.testing.assert_close(ours, want.flatten(2).sum(2), atol=1e-5, rtol=0)


def test_deeplift_matches_captum_and_sums_to_output_difference() -> None:
    m = toy_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    b = torch.zeros_like(x)
    t = torch.tensor([0, 1, 2, 0, 1])
    ours = compute_scores(m, x, b, t, ["3"], ["deeplift"], AttributionCfg().params()).scores[("3", "deeplift")]
    want = LayerDeepLift(m, m[3]).attribute(x, b, target=t)
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)
    diff = (m(x) - m(b)).gather(1, t[:, None]).squeeze(1).detach()
    torch.testing.assert_close(ours.sum(1), diff, atol=1e-8, rtol=0)


def test_lrp_epsilon_conserves_relevance_without_biases() -> None:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False), nn.ReLU(),
                      nn.Linear(4, 3, bias=False)).double().eval()
    x = torch.rand(4, 6, dtype=torch.float64)
    t = torch.zeros(4, dtype=torch.long)
    s = compute_scores(m, x, torch.zeros_like(x), t, ["1"], ["lrp_epsilon", "lrp_zplus"],
                       AttributionCfg(lrp_epsilon=1e-9).params())
    torch.testing.assert_close(s.scores[("1", "lrp_epsilon")].sum(1), m(x)[:, 0].detach(), atol=1e-6, rtol=0)
    assert s.scores[("1", "lrp_zplus")].shape == (4, 8)


def test_single_unit_zero_ablation_of_last_hidden_layer_by_hand() -> None:
    m = toy_mlp()
    x = torch.randn(3, 6, dtype=torch.float64)
    t = torch.tensor([0, 2, 1])
    s = compute_scores(m, x, torch.zeros_like(x), t, ["3"], ["ablation_zero", "ablation_baseline"],
                       AttributionCfg().params())
    y = m[:4](x).detach()
    y0 = m[:4](torch.zeros_like(x)).detach()
    w = m[4].weight[t].detach()  # [B, U]
    torch.testing.assert_close(s.scores[("3", "ablation_zero")], w * y)
    torch.testing.assert_close(s.scores[("3", "ablation_baseline")], w * (y - y0))


def test_selectivity_index_on_hand_made_means() -> None:
    cm = torch.tensor([[1.0, 0.0, 2.0, 3.0], [0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 1.0, 3.0]])
    si = selectivity_index(cm)
    torch.testing.assert_close(si, torch.tensor([1.0, 0.0, 1 / 3, 0.0]))


def test_selectivity_counts_only_the_classes_with_examples() -> None:
    # 5 classes, examples of classes 1 and 3 only: mu_-max is the mean over the other *present* class, so the
    # index equals the one of the 2-row table; counted as zeros, the absent classes would push it towards 1.
    m = nn.Sequential(nn.Identity()).eval()
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [0.0, 1.0]])
    y = torch.tensor([1, 1, 3])
    st = layer_statistics(m, [(x, y)], ["0"], num_classes=5)["0"]
    assert st.present.tolist() == [False, True, False, True, False]
    want = selectivity_index(torch.tensor([[2.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(selectivity_index(st.class_means, st.present), want)
    assert float(selectivity_index(st.class_means)[1]) > float(want[1]) + 0.3  # the bias it removes
    from neuronimp.studies.selectivity_study import selectivity_rows

    cm = torch.where(st.present[:, None], -st.class_means - 1, torch.zeros_like(st.class_means))
    neg = LayerStats(st.mean, cm, 3, st.present)  # absent rows (0) would win the argmax
    rows = list(selectivity_rows("0", want, neg.class_means, torch.zeros(2), {}, "zero", "feature", neg.present))
    assert [r["preferred_class"] for r in rows] == [3, 3]
    with pytest.raises(UsageError, match="at least two classes"):
        one = {"0": LayerStats(st.mean, st.class_means, 3, torch.tensor([False, True, False, False, False]))}
        compute_scores(m, x, torch.zeros_like(x), torch.zeros(3, dtype=torch.long), ["0"], ["selectivity"],
                       AttributionCfg().params(), stats=one)


def test_layer_statistics_class_means() -> None:
    m = nn.Sequential(nn.Identity()).eval()
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    y = torch.tensor([0, 0, 1])
    st = layer_statistics(m, [(x, y)], ["0"], num_classes=2)["0"]
    torch.testing.assert_close(st.class_means, torch.tensor([[2.0, 0.0], [0.0, 5.0]], dtype=torch.float64))
    torch.testing.assert_close(st.mean, torch.tensor([4 / 3, 5 / 3], dtype=torch.float64))


def test_neuron_conductance_matches_captum_and_sums_to_total() -> None:
    m = toy_cnn()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    b = torch.zeros_like(x)
    t = torch.tensor([1, 2])
    g = make_grid("riemann_left", 20)
    ours = neuron_conductance(m, "3", (2, 1, 3), x, b, t, g)
    want = NeuronConductance(m, m[3]).attribute(x, neuron_selector=(2, 1, 3), baselines=b, target=t, n_steps=20,
                                                method="riemann_left")
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=0)
    # a channel is the sum of its positions
    per_pos = sum(neuron_conductance(m, "3", (2, i, j), x, b, t, g) for i in range(4) for j in range(4))
    torch.testing.assert_close(neuron_conductance(m, "3", 2, x, b, t, g), per_pos, atol=1e-10, rtol=0)
    total = path_sweep(m, x, b, t, ["3"], ["conductance"], make_grid("riemann_left", 400)).scores[("3", "conductance")]
    fine = neuron_conductance(m, "3", 2, x, b, t, make_grid("riemann_left", 400))
    torch.testing.assert_close(fine.flatten(1).sum(1), total[:, 2], atol=2e-2, rtol=0)


def test_random_scores_depend_on_input_id_not_batch() -> None:
    m = toy_mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    cfg = AttributionCfg(random_seed=7).params()
    t = torch.zeros(4, dtype=torch.long)
    a = compute_scores(m, x, torch.zeros_like(x), t, ["1"], ["random"], cfg, ids=torch.arange(4)).scores[("1", "random")]
    b = compute_scores(m, x[2:], torch.zeros_like(x[2:]), t[2:], ["1"], ["random"], cfg,
                       ids=torch.arange(2, 4)).scores[("1", "random")]
    torch.testing.assert_close(a[2:], b)
    assert not torch.equal(a[0], a[1])


def test_frozen_restores_each_modules_own_training_flag() -> None:
    from neuronimp.hooks import frozen

    m = toy_mlp()
    m.train()
    m[1].eval()  # a child whose flag differs from its parent's
    with frozen(m):
        assert not any(mod.training for mod in m.modules())
        assert not any(p.requires_grad for p in m.parameters())
    assert m.training and m[0].training and not m[1].training
    assert all(p.requires_grad for p in m.parameters())
