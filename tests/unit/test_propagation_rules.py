"""What `deeplift` adds around Captum: the adding max-pool rule (by hand on overlapping windows, swapped in and back),
and a copy of each hooked module's input (completeness on a block whose pool shares its input); and `lrp` (zennit)
conserving relevance on the same block."""
from __future__ import annotations

import pytest
import torch
from captum.attr import DeepLift
from captum.attr._core import deep_lift
from torch import nn

from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores, propagation
from neuronimp.methods.deeplift_rules import ADDING_RULES, adding_maxpool_rules

pytestmark = [pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
              pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")]

# One row [0, 2, 0] against the zero baseline, pooled by windows of 2 at stride 1: both windows take their max 2
# at the middle input, so F = sum of the two maxima = 4 = F(x) - F(x'), and DeepLIFT owes the middle input all 4.
X = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
POOLS = {1: lambda: nn.MaxPool1d(2, stride=1), 2: lambda: nn.MaxPool2d((1, 2), stride=1),
         3: lambda: nn.MaxPool3d((1, 1, 2), stride=1)}


def _pool_then_sum(dims: int) -> nn.Module:
    """max-pool (overlapping windows along the last axis) -> flatten -> sum of the two maxima (a bias-free Linear)."""
    head = nn.Linear(2, 1, bias=False)
    nn.init.ones_(head.weight)
    return nn.Sequential(POOLS[dims](), nn.Flatten(), head).double().eval()


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_overlapping_windows_by_hand(dims: int) -> None:
    m = _pool_then_sum(dims)
    x = X.view(1, 1, *([1] * (dims - 1)), 3)
    with adding_maxpool_rules():
        got = DeepLift(m).attribute(x, torch.zeros_like(x), target=0)
    torch.testing.assert_close(got.flatten(), torch.tensor([0.0, 4.0, 0.0], dtype=torch.float64))
    plain = DeepLift(m).attribute(x, torch.zeros_like(x), target=0)  # Captum's own rule: F.max_unpool keeps one
    torch.testing.assert_close(plain.flatten(), torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))


def test_baseline_with_other_maxima_by_hand() -> None:
    # x' = [1, 0, 1]: its windows peak at the outer inputs (F(x') = 2). Captum's rule splits each window's change
    # 2 - 1 into (max(y, y') - y') = 1 routed by x's argmax (the middle, twice) and (y - max(y, y')) = 0 routed by
    # x''s; the middle input gets 1 + 1 = 2 = F(x) - F(x'), the outer ones 0.
    m = _pool_then_sum(1)
    x, base = X.view(1, 1, 3), torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    with adding_maxpool_rules():
        got = DeepLift(m).attribute(x, base, target=0)
    torch.testing.assert_close(got.flatten(), torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))


def test_engine_deeplift_uses_the_adding_rule() -> None:
    # Layer attributions at a Linear before the pool (identity weights: the layer's three outputs are x itself).
    layer = nn.Linear(3, 3, bias=False)
    nn.init.eye_(layer.weight)
    m = nn.Sequential(layer, *_pool_then_sum(1)).double().eval()
    x = X.view(1, 1, 3)
    s = compute_scores(m, x, torch.zeros_like(x), torch.tensor([0]), ["0"], ["deeplift"], AttributionCfg().params())
    assert s.scores[("0", "deeplift")].sum().item() == pytest.approx(4.0, abs=1e-12)  # F(x) - F(x'); Captum's: 2


def test_captums_table_is_restored_even_when_the_body_raises() -> None:
    table = deep_lift.SUPPORTED_NON_LINEAR
    before = dict(table)
    with pytest.raises(RuntimeError, match="inside"), adding_maxpool_rules():
        assert all(table[cls] is rule for cls, rule in ADDING_RULES.items())
        raise RuntimeError("inside")
    assert table == before and table[nn.MaxPool2d] is deep_lift.maxpool2d


# ---------------------------------------------------------------- a pool that shares its input with a conv

class Block(nn.Module):
    """conv -> ReLU -> [1x1 conv | max-pool 3/1] -> ReLU -> linear, bias-free; `copy`: the pool reads h.clone()."""

    def __init__(self, copy: bool) -> None:
        super().__init__()
        self.copy = copy
        self.conv0, self.relu0 = nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.ReLU()
        self.conv, self.pool = nn.Conv2d(3, 2, 1, bias=False), nn.MaxPool2d(3, stride=1, padding=1)
        self.relu, self.flat, self.fc = nn.ReLU(), nn.Flatten(), nn.Linear(5 * 5 * 5, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu0(self.conv0(x))  # N x 3 x 5 x 5, read by both branches
        y = torch.cat([self.conv(h), self.pool(h.clone() if self.copy else h)], 1)  # N x 5 x 5 x 5
        return self.fc(self.flat(self.relu(y)))


def _block(copy: bool) -> nn.Module:
    torch.manual_seed(0)
    return Block(copy).double().eval()


def _x(seed: int) -> torch.Tensor:
    return torch.randn(4, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("copy", [False, True])
def test_deeplift_sums_to_delta_when_a_pool_shares_its_input(copy: bool) -> None:
    # Measured relative error 2e-16; without `own_inputs` 0.017 to 0.11 on the shared input (the pool's multiplier
    # replaces the gradient the 1x1 conv sends to h), still 2e-16 with the model's own copy.
    m, x, b = _block(copy), _x(1), _x(2)
    with torch.no_grad():
        d = m(x) - m(b)
    t = d.argmax(1)
    diff = d.gather(1, t[:, None]).squeeze(1)
    s = propagation.deeplift(m, "relu0", x, b, t)
    assert ((s.sum(1) - diff).abs() / diff.abs()).max() < 1e-9


@pytest.mark.parametrize("copy", [False, True])
def test_lrp_epsilon_conserves_relevance_when_a_pool_shares_its_input(copy: bool) -> None:
    # Bias-free net, epsilon 1e-9: relevance at relu0 sums to F(x). Measured relative error 2e-8 to 8e-8 with zennit
    # (each module call gets its own identity node on its input), copy or not. With Captum's LayerLRP (before
    # issue 13) the same without a copy, but 0.06 to 1.0 with the model's own copy unless every hooked module read
    # its own copy: Captum hooked both h and the copy, multiplying the pool's relevance by h twice.
    m, x = _block(copy), _x(1).abs()
    with torch.no_grad():
        f = m(x)
    t = f.argmax(1)
    r = propagation.lrp(m, "relu0", x, t, "lrp_epsilon", epsilon=1e-9)
    want = f.gather(1, t[:, None]).squeeze(1)
    assert ((r.sum(1) - want).abs() / want.abs()).max() < 1e-6


def test_own_inputs_removes_its_hooks_even_when_the_body_raises() -> None:
    m = _block(False)
    with pytest.raises(RuntimeError, match="inside"), propagation.own_inputs([m.pool, m.relu]):
        assert len(m.pool._forward_pre_hooks) == 1
        raise RuntimeError("inside")
    assert not m.pool._forward_pre_hooks and not m.relu._forward_pre_hooks


class SqueezeExcite(nn.Module):
    """y = x * sigmoid(w * x + c) per unit, the product of a squeeze-excitation block in its smallest form (the gate
    of unit j reads unit j only, so each unit's contribution can be written by hand)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w, self.c, self.gate = nn.Parameter(torch.randn(n)), nn.Parameter(torch.randn(n)), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.w * x + self.c)


def test_deeplift_product_rule_on_squeeze_excitation_gates() -> None:
    # Scored at the first Linear's output z, followed by y = z * g(z) and a bias-free sum: DeepLIFT's product rule
    # gives unit j  (g_j + g'_j)/2 (z_j - z'_j) + (z_j + z'_j)/2 (g_j - g'_j) = z_j g_j - z'_j g'_j, the exact
    # change of y_j (Shrikumar et al. 2017, sec. 3.5.3), whatever the rules inside the gate, so the
    # contributions sum to F(x) - F(x'). Plain gradients through the product do not.
    torch.manual_seed(2)
    head = nn.Linear(6, 1, bias=False)
    nn.init.ones_(head.weight)
    m = nn.Sequential(nn.Linear(4, 6), SqueezeExcite(6), head).double().eval()
    x, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.long)
    s = compute_scores(m, x, b, t, ["0"], ["deeplift"], AttributionCfg().params())
    with torch.no_grad():
        want = m[1](m[0](x)) - m[1](m[0](b))
    assert not s.gaps
    torch.testing.assert_close(s.scores[("0", "deeplift")], want, rtol=1e-9, atol=1e-12)
    assert not any(mod._forward_hooks for mod in m.modules())  # the rule's hooks are gone
    plain = DeepLift(m).attribute(x, b, target=t)  # Captum alone, at the input: misses F(x) - F(x')
    assert float((plain.detach().sum(1) - want.sum(1)).abs().max()) > 1e-3


def test_a_gate_that_is_not_a_product_is_refused_in_one_line() -> None:
    from neuronimp.errors import UsageError

    class SEModule(nn.Module):  # a name of a gate, but y = x + g(x)
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.gate(x)

    m = nn.Sequential(nn.Linear(4, 4), SEModule(), nn.Linear(4, 2)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(UsageError, match=r"module 1 \(SEModule\) does not compute x \* gate\(x\)") as err:
        compute_scores(m, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), ["0"], ["deeplift"],
                       AttributionCfg().params())
    assert "\n" not in str(err.value)
