"""The engine on randomly initialised GoogLeNet and torchvision Inception v3 (canonical blocks), float64.

Weights are re-drawn at unit scale (`lively`): with torchvision's init (std 0.01) GoogLeNet's F(x) - F(x') is
about 5e-13, so every absolute tolerance passes whatever the attributions are, and DeepLIFT's rules fall back to
plain gradients (Captum's eps is 1e-10).
"""
from __future__ import annotations

import copy

import pytest
import torch

from scripts.bench_nets import lively as _lively
from captum.attr import InternalInfluence, LayerConductance, LayerDeepLift, LayerGradientXActivation
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn

from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores
from neuronimp.methods.deeplift_rules import adding_maxpool_rules
from neuronimp.methods.propagation import own_inputs
from neuronimp.models import create_model
from neuronimp.models.canonical import shared_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-drawn conv/linear (He init) and batch-norm terms, float64, eval (the benchmarks' own `lively`)."""
    return _lively(model, seed).double().eval()


def _inputs(size: int, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A random input and a random (non-zero) baseline, [n, 3, size, size], float64."""
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(n, 3, size, size, dtype=torch.float64, generator=g) for _ in range(2))


def _target_and_diff(m: nn.Module, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The class whose logit changes most from x' to x, and that change F(x) - F(x'), both [B]."""
    with torch.no_grad():
        d = m(x) - m(b)
    t = d.argmax(1)
    return t, d.gather(1, t[:, None]).squeeze(1)


@pytest.fixture(scope="module")
def googlenet() -> nn.Module:
    return lively(create_model("googlenet", weights="none").model)


@pytest.fixture(scope="module")
def inception_v3() -> nn.Module:
    return lively(create_model("inception_v3_tv", weights="none").model)


def test_googlenet_layer_matches_captum(googlenet: nn.Module) -> None:
    m = googlenet
    x, b = _inputs(64, n=1)  # small images keep this fast; the graph is the same
    t = m(x).argmax(1)
    n = 6
    cfg = AttributionCfg(n_steps=n, rule="riemann_left", step_chunk=4).params()
    layer = "inception4d"
    s = compute_scores(m, x, b, t, [layer], ["activation", "grad_x_act", "internal_influence", "conductance",
                                             "deeplift"], cfg)
    mod = m.get_submodule(layer)
    unit = lambda a: a.detach().flatten(2).sum(2)  # noqa: E731

    def close(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
        """|got - want| <= tol * max |want|: an error relative to the layer's scale (many units are near 0)."""
        assert want.abs().max() > 1e-2  # not a comparison between numbers near zero
        torch.testing.assert_close(got, want, rtol=0, atol=tol * float(want.abs().max()))

    # Captum's path alphas and step sizes are float32 (torch.linspace, torch.tensor): measured max errors 1.4e-7
    # (conductance) and 3e-8 (internal influence) of the largest score.
    close(s.scores[(layer, "conductance")],
          unit(LayerConductance(m, mod).attribute(x, b, target=t, n_steps=n, method="riemann_trapezoid")), 1e-6)
    close(s.scores[(layer, "internal_influence")],
          unit(InternalInfluence(m, mod).attribute(x, b, target=t, n_steps=n, method="riemann_left")), 1e-6)
    close(s.scores[(layer, "grad_x_act")], unit(LayerGradientXActivation(m, mod).attribute(x, target=t)), 1e-12)
    # Our deeplift adds overlapping max-pool contributions and copies hooked inputs: Captum under the same rules.
    hooked = [mm for mm in m.modules() if type(mm) in SUPPORTED_NON_LINEAR]
    with adding_maxpool_rules(), own_inputs(hooked):
        close(s.scores[(layer, "deeplift")], unit(LayerDeepLift(m, mod).attribute(x, b, target=t)), 1e-12)


@pytest.mark.parametrize("layer", ["conv3", "inception3b", "inception4d"])
def test_googlenet_deeplift_sums_to_delta(googlenet: nn.Module, layer: str) -> None:
    # Summation-to-delta (Shrikumar et al. 2017, eq. 1) at the layer needs every ReLU and pool a module (canonical
    # blocks), each pool on its own copy of the block input (shared_inputs) and the adding max-pool rule for the
    # overlapping 3x3/2 (maxpool2, maxpool3) and 3x3/1 (branch) pools. Measured relative error (two examples):
    # 4e-16, 1e-14 (conv3), 6e-16, 1e-14 (inception3b), 3e-15, 6e-15 (inception4d); with Captum's max-pool rule
    # 0.95, 0.91 / 0.71, 0.85 / 0.44, 0.67; with the pools on the shared input (no copy by the block nor by
    # `deeplift`) inception3b 1.0, 1.0 and inception4d 0.87, 0.86.
    m = googlenet
    x, b = _inputs(64)
    t, diff = _target_and_diff(m, x, b)
    assert diff.abs().min() > 0.1  # clearly non-zero, so the relative error means something
    s = compute_scores(m, x, b, t, [layer], ["deeplift"], AttributionCfg().params()).scores[(layer, "deeplift")]
    assert ((s.sum(1) - diff).abs() / diff.abs()).max() < 1e-9


def test_no_pool_shares_its_input(googlenet: nn.Module, inception_v3: nn.Module) -> None:
    assert shared_inputs(googlenet) == []  # was inception*.branch4.0 (9 sites)
    assert shared_inputs(inception_v3) == []  # was Mixed_*.pool (11 sites)


def test_inception_v3_deeplift_sums_to_delta(inception_v3: nn.Module) -> None:
    # At Mixed_5b the overlapping 3x3/2 max-pool of Mixed_6a and the avg/max pools on block inputs lie downstream
    # (75x75: the smallest input; Mixed_7a then pools one window). Measured relative error: 8e-15, 1.2e-14; with
    # Captum's max-pool rule 0.061, 0.30; with the pools on the shared input (no copy by the block nor by
    # `deeplift`) 0.95, 0.61.
    m = inception_v3
    x, b = _inputs(75)
    t, diff = _target_and_diff(m, x, b)
    assert diff.abs().min() > 0.1
    s = compute_scores(m, x, b, t, ["Mixed_5b"], ["deeplift"], AttributionCfg().params()).scores[
        ("Mixed_5b", "deeplift")]
    assert ((s.sum(1) - diff).abs() / diff.abs()).max() < 1e-9


@pytest.mark.parametrize("layer", ["inception3b", "inception4d"])
def test_googlenet_lrp_epsilon_conserves_relevance(googlenet: nn.Module, layer: str) -> None:
    # Bias-free (batch-norm means and shifts, fc bias at 0), epsilon 1e-9: relevance at the layer sums to F(x).
    # Measured relative error 8e-10, 1e-9 (inception3b) and 4e-10, 5e-10 (inception4d) through zennit. (Captum's
    # LayerLRP, before issue 13: 2e-9 to 3e-9 with a copy of the input per hooked module, 2e4, 8e4 / 280, 220
    # without, as it multiplied the pool branch's relevance by x twice.)
    m = copy.deepcopy(googlenet)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.zero_()
                mod.bias.zero_()
        m.fc.bias.zero_()
    x, _ = _inputs(64)
    with torch.no_grad():
        f = m(x)
    t = f.argmax(1)
    f = f.gather(1, t[:, None]).squeeze(1)
    r = compute_scores(m, x, torch.zeros_like(x), t, [layer], ["lrp_epsilon"],
                       AttributionCfg(lrp_epsilon=1e-9).params()).scores[(layer, "lrp_epsilon")]
    assert ((r.sum(1) - f).abs() / f.abs()).max() < 1e-6


def test_lrp_at_an_inception_block(googlenet: nn.Module) -> None:
    # Inception blocks are containers with no LRP rule of their own: relevance is read as zennit's modified gradient
    # at their output, and nothing is left on the model afterwards.
    m = googlenet
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    t = m(x).argmax(1)
    s = compute_scores(m, x, torch.zeros_like(x), t, ["inception4d"], ["lrp_epsilon", "lrp_zplus"],
                       AttributionCfg().params())
    for meth in ("lrp_epsilon", "lrp_zplus"):
        r = s.scores[("inception4d", meth)]
        assert r.shape == (1, 528) and torch.isfinite(r).all() and r.abs().sum() > 0
    assert not any(hasattr(mod, "rule") or hasattr(mod, "canonizer_sum") for mod in m.modules())
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())
