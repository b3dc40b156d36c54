"""The engine on a layer of a randomly initialised GoogLeNet (canonical blocks), float64, against Captum."""
from __future__ import annotations

import pytest
import torch
from captum.attr import InternalInfluence, LayerConductance, LayerDeepLift, LayerGradientXActivation

from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores
from neuronimp.models import create_model


@pytest.fixture(scope="module")
def googlenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("googlenet", weights="none").model.double().eval()


def test_googlenet_layer_matches_captum(googlenet: torch.nn.Module) -> None:
    m = googlenet
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)  # small images keep this fast; the graph is the same
    b = torch.zeros_like(x)
    t = m(x).argmax(1)
    n = 6
    cfg = AttributionCfg(n_steps=n, rule="riemann_left", step_chunk=4)
    layer = "inception4d"
    s = compute_scores(m, x, b, t, [layer], ["activation", "grad_x_act", "internal_influence", "conductance",
                                             "deeplift"], cfg, warn=False)
    mod = m.get_submodule(layer)
    unit = lambda a: a.flatten(2).sum(2)  # noqa: E731
    want = unit(LayerConductance(m, mod).attribute(x, b, target=t, n_steps=n, method="riemann_trapezoid"))
    torch.testing.assert_close(s.scores[(layer, "conductance")], want, atol=1e-5, rtol=0)
    want = unit(InternalInfluence(m, mod).attribute(x, b, target=t, n_steps=n, method="riemann_left"))
    torch.testing.assert_close(s.scores[(layer, "internal_influence")], want, atol=1e-5, rtol=0)
    want = unit(LayerGradientXActivation(m, mod).attribute(x, target=t))
    torch.testing.assert_close(s.scores[(layer, "grad_x_act")], want, atol=1e-5, rtol=0)
    want = unit(LayerDeepLift(m, mod).attribute(x, b, target=t))
    torch.testing.assert_close(s.scores[(layer, "deeplift")], want, atol=1e-5, rtol=0)
    # DeepLIFT's summation-to-delta holds at the layer because every ReLU is a module Captum can see.
    diff = (m(x) - m(b))[0, t].detach()
    torch.testing.assert_close(s.scores[(layer, "deeplift")].sum(1), diff, atol=1e-6, rtol=0)


def test_lrp_at_an_inception_block(googlenet: torch.nn.Module) -> None:
    # Inception blocks are containers with no LRP rule of their own: relevance is read at a tap after them.
    m = googlenet
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    t = m(x).argmax(1)
    s = compute_scores(m, x, torch.zeros_like(x), t, ["inception4d"], ["lrp_epsilon", "lrp_zplus"], AttributionCfg())
    for meth in ("lrp_epsilon", "lrp_zplus"):
        r = s.scores[("inception4d", meth)]
        assert r.shape == (1, 528) and torch.isfinite(r).all() and r.abs().sum() > 0
    assert not any(hasattr(mod, "rule") for mod in m.modules())
    assert type(m.inception4d).__name__ != "Sequential"  # the tap is gone
