"""The one-sweep path methods against Captum (oracle), in float64, to 1e-5."""
from __future__ import annotations

import pytest
import torch
from captum.attr import InternalInfluence, LayerActivation, LayerConductance, LayerGradientXActivation

from neuronimp.methods.grid import make_grid
from neuronimp.methods.path import PATH_METHODS, path_sweep
from tests.conftest import toy_cnn, toy_mlp

N = 20
# our rule -> (Captum method for LayerConductance, Captum method and n_steps for InternalInfluence, scale)
CAPTUM = {
    "riemann_left": ("riemann_trapezoid", "riemann_left", N, 1.0),
    # Captum's trapezoid weights 1/m with halved ends sum to (m-1)/m: ours are the true trapezoid weights.
    "trapezoid": (None, "riemann_trapezoid", N + 1, (N + 1) / N),
    "gauss_legendre": ("gausslegendre", "gausslegendre", N + 1, 1.0),
}


def _case(kind: str):
    if kind == "cnn":
        m = toy_cnn()
        x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
        return m, x, torch.full_like(x, 0.1), ["1", "3"]
    m = toy_mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    return m, x, torch.zeros_like(x), ["1", "2", "3"]


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("rule", list(CAPTUM))
def test_path_methods_match_captum(kind: str, rule: str) -> None:
    m, x, b, layers = _case(kind)
    t = torch.arange(x.shape[0]) % 3
    res = path_sweep(m, x, b, t, layers, list(PATH_METHODS), make_grid(rule, N), step_chunk=7)
    cond_method, inf_method, inf_steps, scale = CAPTUM[rule]
    for l in layers:
        mod = m.get_submodule(l)
        unit = lambda a: a.flatten(2).sum(2) if a.dim() > 2 else a  # noqa: E731
        if cond_method:
            want = unit(LayerConductance(m, mod).attribute(x, b, target=t, n_steps=N, method=cond_method))
            torch.testing.assert_close(res.scores[(l, "conductance")], want, atol=1e-5, rtol=0)
        want = unit(InternalInfluence(m, mod).attribute(x, b, target=t, n_steps=inf_steps, method=inf_method))
        torch.testing.assert_close(res.scores[(l, "internal_influence")], want * scale, atol=1e-5, rtol=0)
        want = unit(LayerGradientXActivation(m, mod).attribute(x, target=t))
        torch.testing.assert_close(res.scores[(l, "grad_x_act")], want, atol=1e-10, rtol=0)
        want = unit(LayerActivation(m, mod).attribute(x))
        torch.testing.assert_close(res.scores[(l, "activation")], want, atol=1e-10, rtol=0)


def test_chunk_size_does_not_change_results() -> None:
    m, x, b, layers = _case("cnn")
    t = torch.zeros(3, dtype=torch.long)
    g = make_grid("trapezoid", 30)
    a = path_sweep(m, x, b, t, layers, list(PATH_METHODS), g, step_chunk=1)
    c = path_sweep(m, x, b, t, layers, list(PATH_METHODS), g, step_chunk=31)
    for k in a.scores:
        torch.testing.assert_close(a.scores[k], c.scores[k], atol=1e-12, rtol=0)


@pytest.mark.parametrize("rule", ["riemann_left", "trapezoid", "gauss_legendre"])
def test_completeness_delta_shrinks_with_steps(rule: str) -> None:
    m, x, b, _ = _case("cnn")
    t = torch.tensor([0, 1, 2])
    deltas = []
    for n in (4, 32, 256):
        r = path_sweep(m, x, b, t, ["1"], ["conductance"], make_grid(rule, n))
        deltas.append(float(r.deltas["1"].abs().max()))
        # the delta is exactly sum of conductances minus F(x) - F(x')
        f = m(x).gather(1, t[:, None]).squeeze(1) - m(b).gather(1, t[:, None]).squeeze(1)
        torch.testing.assert_close(r.deltas["1"], r.scores[("1", "conductance")].sum(1) - f.detach())
    assert deltas[2] < deltas[0]
    assert deltas[2] < 2e-3


def test_last_layer_conductance_is_exact_for_left_rule() -> None:
    # The logits are linear in the last hidden layer, so the left Riemann-Stieltjes sum telescopes exactly.
    m, x, b, _ = _case("mlp")
    t = torch.zeros(4, dtype=torch.long)
    r = path_sweep(m, x, b, t, ["3"], ["conductance"], make_grid("riemann_left", 3))
    assert float(r.deltas["3"].abs().max()) < 1e-12


def test_probe_fast_path_gives_the_same_numbers() -> None:
    from neuronimp.methods.path import sweep_probe

    m, x, b, layers = _case("cnn")
    t = torch.tensor([0, 1, 2])
    g = make_grid("trapezoid", 10)
    probe = sweep_probe(m, layers, x[:1], {})
    assert probe is not None and probe.layer == "1" and probe.mode == "fx"
    fast = path_sweep(m, x, b, t, layers, list(PATH_METHODS), g, 4, probe=probe)
    plain = path_sweep(m, x, b, t, layers, list(PATH_METHODS), g, 4)
    for k in plain.scores:
        torch.testing.assert_close(fast.scores[k], plain.scores[k], atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.deltas["3"], plain.deltas["3"], atol=1e-12, rtol=0)


def test_fast_path_with_container_layers() -> None:
    # Layers that are containers (like GoogLeNet's inception blocks) must stay whole in the fx suffix.
    from torch import nn

    from neuronimp.methods.path import sweep_probe

    torch.manual_seed(4)
    m = nn.Sequential(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
                      nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)).double().eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 2])
    layers = ["0", "1", "2"]
    g = make_grid("riemann_left", 6)
    probe = sweep_probe(m, layers, x[:1], {})
    assert probe is not None and probe.layer == "0"
    fast = path_sweep(m, x, torch.zeros_like(x), t, layers, list(PATH_METHODS), g, 3, probe=probe)
    plain = path_sweep(m, x, torch.zeros_like(x), t, layers, list(PATH_METHODS), g, 3)
    assert set(fast.scores) == set(plain.scores)
    for k in plain.scores:
        torch.testing.assert_close(fast.scores[k], plain.scores[k], atol=1e-12, rtol=0)
