"""Captum's layer-attribution tests (pytorch/captum, tests/attr/layer/), ported to neuronimp's API with Captum's
toy models (`captum.testing.helpers.basic_models`), inputs and expected numbers. tests/reference/README.md counts
what was ported, what passes and what does not apply. Names: test_<captum file>__<captum test>.

What changes in the port:
- Units: a unit is a channel, so per-position attributions of conv layers are summed over positions (the expected
  numbers are Captum's, summed); dense layers are unchanged.
- One input tensor: Captum's multi-input models get their attributed inputs concatenated (`Joined`); the path runs
  from the zero baseline of all of them at once, as Captum's does, and `additional_forward_args` stay fixed.
- Layer outputs only: where Captum attributes to a layer's input (`attribute_to_layer_input=True`), the port reads
  the output of the module that produces that tensor, when there is one (said at each test).
- `internal_batch_size` becomes our `step_chunk`; in-place models are canonicalised first (as `create_model` does).
- Integration rules: Captum's `gausslegendre` with n steps is our `gauss_legendre` with n (the same n + 1 nodes);
  Captum's `riemann_trapezoid` with n points is our `trapezoid` with n - 1 intervals, but Captum's weights sum to
  (n - 1) / n (1/n each, ends halved), ours to 1: our internal influence is Captum's times n / (n - 1).
"""
from __future__ import annotations

import functools

import pytest
import torch
from captum.attr import LayerConductance
from captum.testing.helpers import basic_models as bm
from torch import nn

from neuronimp.methods.grid import make_grid
from neuronimp.methods.layer_ig import layer_ig
from neuronimp.methods.lrp import lrp_layers, lrp_relevance
from neuronimp.methods.path import path_sweep, unit_sum
from neuronimp.methods.propagation import deeplift
from neuronimp.models.canonical import canonicalise
from neuronimp.probe import Probe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
              pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")]

T = torch.tensor


class Joined(nn.Module):
    """A Captum multi-input model on one tensor: inputs concatenated along dim 1, extra arguments held fixed."""

    def __init__(self, net: nn.Module, sizes: list[int], extra: tuple = ()) -> None:
        super().__init__()
        self.net, self.sizes, self.extra = net, sizes, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a held tensor follows the batch: the sweep stacks path points alpha-major (rows k * B + b)
        extra = [e.repeat(x.shape[0] // e.shape[0], *([1] * (e.dim() - 1))) if isinstance(e, torch.Tensor) else e
                 for e in self.extra]
        return self.net(*torch.split(x, self.sizes, dim=1), *extra)


def close(actual: torch.Tensor, expected: object, delta: float = 1e-4, mode: str = "sum") -> None:
    """Captum's assertTensorAlmostEqual: sum (or max) of |actual - expected| within delta."""
    expected = torch.as_tensor(expected, dtype=actual.dtype).detach()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    actual = actual.detach()
    diff = (actual - expected).abs()
    worst = float(diff.sum() if mode == "sum" else diff.max())
    assert worst <= delta, f"{actual} vs {expected}: {mode} |diff| = {worst} > {delta}"


def _target(x: torch.Tensor, t: int = 0) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long)


@functools.cache
def grid(rule: str, n: int):
    """make_grid, once per (rule, n): Gauss-Legendre nodes for n = 1500 take numpy about a second."""
    return make_grid(rule, n)


def sweep(model: nn.Module, layer: str, x: torch.Tensor, method: str, rule: str, n: int, chunk: int = 512,
          baseline: torch.Tensor | None = None, target: int = 0):
    """One path method at one layer (our path_sweep), with its completeness deltas."""
    base = torch.zeros_like(x) if baseline is None else baseline
    return path_sweep(model, x, base, _target(x, target), [layer], [method], grid(rule, n), chunk)


# ======================================================================= test_layer_conductance.py

def _conductance(net: nn.Module, layer: str, x: torch.Tensor, expected: object, baseline=None) -> None:
    """Captum's _conductance_test_assert: gausslegendre, 500 steps, three batch sizes, delta < 0.01, values 0.1."""
    for chunk in (512, 4, 20):  # Captum: internal_batch_size None, 4, 20
        res = sweep(net, layer, x, "conductance", "gauss_legendre", 500, chunk, baseline)
        assert (res.deltas[layer].abs() < 0.01).all(), res.deltas[layer]
        close(res.scores[(layer, "conductance")], expected, delta=0.1)


def test_layer_conductance__simple_input_conductance() -> None:
    net = bm.BasicModel_MultiLayer()
    _conductance(net, "linear0", T([[0.0, 100.0, 0.0]]), [[0.0, 390.0, 0.0]])


def test_layer_conductance__simple_input_with_scalar_baseline_conductance() -> None:
    net = bm.BasicModel_MultiLayer()
    x = T([[0.0, 100.0, 0.0]])
    _conductance(net, "linear0", x, [[0.0, 390.0, 0.0]], baseline=torch.zeros_like(x))  # Captum: baselines=0.0


def test_layer_conductance__simple_linear_conductance() -> None:
    _conductance(bm.BasicModel_MultiLayer(), "linear1", T([[0.0, 100.0, 0.0]]), [[90.0, 100.0, 100.0, 100.0]])


def test_layer_conductance__simple_relu_conductance() -> None:
    _conductance(bm.BasicModel_MultiLayer(), "relu", T([[0.0, 100.0, 0.0]]), [[90.0, 100.0, 100.0, 100.0]])


def test_layer_conductance__simple_output_conductance() -> None:
    _conductance(bm.BasicModel_MultiLayer(), "linear2", T([[0.0, 100.0, 0.0]]), [[390.0, 0.0]])


def test_layer_conductance__simple_multi_input_linear2_conductance() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3, 3], (4,))
    x = torch.cat([T([[0.0, 10.0, 0.0]]), T([[0.0, 10.0, 0.0]]), T([[0.0, 5.0, 0.0]])], 1)
    _conductance(net, "net.model.linear2", x, [[390.0, 0.0]])


def test_layer_conductance__simple_multi_input_relu_conductance() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3], (T([[0.0, 0.0, 0.0]]), 5))
    x = torch.cat([T([[0.0, 10.0, 1.0]]), T([[0.0, 4.0, 5.0]])], 1)
    _conductance(net, "net.model.relu", x, [[90.0, 100.0, 100.0, 100.0]])


def test_layer_conductance__simple_multi_input_relu_conductance_batch() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3], (T([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]), 5))
    x = torch.cat([T([[0.0, 10.0, 1.0], [0.0, 0.0, 10.0]]), T([[0.0, 4.0, 5.0], [0.0, 0.0, 10.0]])], 1)
    _conductance(net, "net.model.relu", x, [[90.0, 100.0, 100.0, 100.0], [100.0, 100.0, 100.0, 100.0]])


def _conductance_reference(layer: str, x: torch.Tensor, baseline: torch.Tensor | None = None, n: int = 300) -> None:
    """Captum's _conductance_reference_test_assert on BasicModel_ConvNet. Captum's reference implementation lives in
    its test helpers (not installed); Captum's LayerConductance stands in for it, with Captum's tolerances."""
    torch.manual_seed(0)
    net = bm.BasicModel_ConvNet()
    with torch.no_grad():
        t = int(net(x).sum(0).argmax())
    base = torch.zeros_like(x) if baseline is None else baseline
    res = sweep(net, layer, x, "conductance", "gauss_legendre", n, 64, base, t)
    assert (res.deltas[layer].abs() < 0.005).all(), res.deltas[layer]
    ref = LayerConductance(net, net.get_submodule(layer)).attribute(x, base, target=t, n_steps=n,
                                                                      method="gausslegendre")
    ours = res.scores[(layer, "conductance")]
    close(ours, unit_sum(ref), delta=0.07, mode="max")
    for i in range(x.shape[0]):  # batching: each example alone gives its row of the batch
        one = sweep(net, layer, x[i : i + 1], "conductance", "gauss_legendre", n, 64, base[i : i + 1], t)
        close(ours[i : i + 1], one.scores[(layer, "conductance")], delta=0.01, mode="max")


def test_layer_conductance__matching_conv1_conductance() -> None:
    _conductance_reference("conv1", 100 * torch.randn(1, 1, 10, 10), n=100)


def test_layer_conductance__matching_pool1_conductance() -> None:
    _conductance_reference("pool1", 100 * torch.randn(1, 1, 10, 10))


def test_layer_conductance__matching_conv2_conductance() -> None:
    _conductance_reference("conv2", 100 * torch.randn(1, 1, 10, 10))


def test_layer_conductance__matching_pool2_conductance() -> None:
    _conductance_reference("pool2", 100 * torch.randn(1, 1, 10, 10))


def test_layer_conductance__matching_conv_multi_input_conductance() -> None:
    _conductance_reference("relu3", 100 * torch.randn(4, 1, 10, 10))


def test_layer_conductance__matching_conv_with_baseline_conductance() -> None:
    _conductance_reference("fc1", 100 * torch.randn(3, 1, 10, 10), 100 * torch.randn(3, 1, 10, 10))


# ======================================================================= test_internal_influence.py
# Captum: riemann_trapezoid with 500 points, i.e. our trapezoid with 499 intervals. Captum's weights sum to 499/500,
# ours to 1, so Captum's value is ours times 499/500 (3.9 * 499/500 = 3.892 where the integral is 3.9): the port
# compares ours * 499/500 with Captum's expected numbers and tolerance. Where the integral itself is known by hand,
# ours is also checked against it (Captum's expected 0.8 are integrals of 0.81, 0.6 of 0.61: only Captum's scale
# brings its result within 0.01 of them).
CAPTUM_TRAPEZOID = 499 / 500


def _influence(net: nn.Module, layer: str, x: torch.Tensor, expected: object, baseline=None,
               integral: object = None) -> None:
    for chunk in (512, 5, 20):  # Captum: internal_batch_size None, 5, 20
        res = sweep(net, layer, x, "internal_influence", "trapezoid", 499, chunk, baseline)
        ours = res.scores[(layer, "internal_influence")]
        close(ours * CAPTUM_TRAPEZOID, expected, delta=0.01, mode="max")
        if integral is not None:
            close(ours, integral, delta=2e-3, mode="max")


def test_internal_influence__simple_input_internal_inf() -> None:
    # dF/dlinear0 = 3 + [alpha > 0.1] (linear1's first unit wakes up at 10): the integral is 3.9
    _influence(bm.BasicModel_MultiLayer(), "linear0", T([[0.0, 100.0, 0.0]]), [[3.9, 3.9, 3.9]],
               integral=[[3.9, 3.9, 3.9]])


def test_internal_influence__simple_linear_internal_inf() -> None:
    _influence(bm.BasicModel_MultiLayer(), "linear1", T([[0.0, 100.0, 0.0]]), [[0.9, 1.0, 1.0, 1.0]])


def test_internal_influence__simple_relu_input_internal_inf_inplace() -> None:
    # Captum: the input of the in-place `relu`; here the output of `linear1`, the tensor the relu reads.
    net = canonicalise(bm.BasicModel_MultiLayer(inplace=True))
    _influence(net, "linear1", T([[0.0, 100.0, 0.0]]), [[0.9, 1.0, 1.0, 1.0]])


def test_internal_influence__simple_linear_internal_inf_inplace() -> None:
    net = canonicalise(bm.BasicModel_MultiLayer(inplace=True))
    _influence(net, "linear1", T([[0.0, 100.0, 0.0]]), [[0.9, 1.0, 1.0, 1.0]])


def test_internal_influence__simple_relu_internal_inf() -> None:
    _influence(bm.BasicModel_MultiLayer(), "relu", T([[3.0, 4.0, 0.0]]), [[1.0, 1.0, 1.0, 1.0]])


def test_internal_influence__simple_output_internal_inf() -> None:
    _influence(bm.BasicModel_MultiLayer(), "linear2", T([[0.0, 100.0, 0.0]]), [[1.0, 0.0]])


def test_internal_influence__simple_with_baseline_internal_inf() -> None:
    # path x_1 = -20 + 100 alpha: unit 0 is on for alpha > 0.3, units 1-3 for alpha > 0.19
    _influence(bm.BasicModel_MultiLayer(), "linear1", T([[0.0, 80.0, 0.0]]), [[0.7, 0.8, 0.8, 0.8]],
               T([[0.0, -20.0, 0.0]]), integral=[[0.7, 0.81, 0.81, 0.81]])


def test_internal_influence__simple_multi_input_linear2_internal_inf() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3, 3], (4,))
    x = torch.cat([T([[0.0, 10.0, 0.0]]), T([[0.0, 10.0, 0.0]]), T([[0.0, 5.0, 0.0]])], 1)
    _influence(net, "net.model.linear2", x, [[1.0, 0.0]])


def test_internal_influence__simple_multi_input_relu_internal_inf() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3], (T([[0.0, 0.0, 0.0]]), 5))
    x = torch.cat([T([[0.0, 10.0, 1.0]]), T([[0.0, 4.0, 5.0]])], 1)
    _influence(net, "net.model.relu", x, [[1.0, 1.0, 1.0, 1.0]])


def test_internal_influence__simple_multi_input_batch_relu_internal_inf() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3], (T([[0.0, 0.0, 0.0], [0.0, 20.0, 0.0]]), 5))
    x = torch.cat([T([[0.0, 6.0, 14.0], [0.0, 80.0, 0.0]]), T([[0.0, 6.0, 14.0], [0.0, 20.0, 0.0]])], 1)
    _influence(net, "net.model.linear1", x, [[0.95, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])


def test_internal_influence__multiple_linear_internal_inf() -> None:
    x = T([[0.0, 100.0, 0.0]] * 4)
    _influence(bm.BasicModel_MultiLayer(), "linear1", x, [[0.9, 1.0, 1.0, 1.0]] * 4)


def test_internal_influence__multiple_with_baseline_internal_inf() -> None:
    x, base = T([[0.0, 80.0, 0.0], [30.0, 30.0, 0.0]]), T([[0.0, -20.0, 0.0], [-20.0, -20.0, 0.0]])
    _influence(bm.BasicModel_MultiLayer(), "linear1", x, [[0.7, 0.8, 0.8, 0.8], [0.5, 0.6, 0.6, 0.6]], base,
               integral=[[0.7, 0.81, 0.81, 0.81], [0.5, 0.61, 0.61, 0.61]])


# ======================================================================= test_layer_gradient_x_activation.py

def _gxa(net: nn.Module, layers: list[str], x: torch.Tensor, expected: list[object]) -> None:
    res = path_sweep(net, x, torch.zeros_like(x), _target(x), layers, ["grad_x_act"], make_grid("trapezoid", 1))
    for layer, want in zip(layers, expected):
        close(res.scores[(layer, "grad_x_act")], want, delta=0.01)


def test_layer_gradient_x_activation__simple_input_gradient_activation() -> None:
    _gxa(bm.BasicModel_MultiLayer(), ["linear0"], T([[0.0, 100.0, 0.0]]), [[[0.0, 400.0, 0.0]]])


def test_layer_gradient_x_activation__simple_input_gradient_activation_no_grad() -> None:
    with torch.no_grad():  # the caller's no_grad does not stop the method
        _gxa(bm.BasicModel_MultiLayer(), ["linear0"], T([[0.0, 100.0, 0.0]]), [[[0.0, 400.0, 0.0]]])


def test_layer_gradient_x_activation__simple_linear_gradient_activation() -> None:
    _gxa(bm.BasicModel_MultiLayer(), ["linear1"], T([[0.0, 100.0, 0.0]]), [[[90.0, 101.0, 101.0, 101.0]]])


def test_layer_gradient_x_activation__multi_layer_linear_gradient_activation() -> None:
    _gxa(bm.BasicModel_MultiLayer(), ["linear0", "linear1"], T([[0.0, 100.0, 0.0]]),
         [[[0.0, 400.0, 0.0]], [[90.0, 101.0, 101.0, 101.0]]])


def test_layer_gradient_x_activation__simple_linear_gradient_activation_no_grad() -> None:
    net = bm.BasicModel_MultiLayer()
    for p in net.parameters():
        p.requires_grad = False
    _gxa(net, ["linear1"], T([[0.0, 100.0, 0.0]]), [[[90.0, 101.0, 101.0, 101.0]]])
    assert not any(p.requires_grad for p in net.parameters())


def test_layer_gradient_x_activation__simple_relu_gradient_activation() -> None:
    _gxa(bm.BasicModel_MultiLayer(), ["relu"], T([[3.0, 4.0, 0.0]]), [[[0.0, 8.0, 8.0, 8.0]]])


def test_layer_gradient_x_activation__multi_layer_multi_gradient_activation() -> None:
    # Partly: `multi_relu` returns a tuple (not a layer here); `linear0` keeps Captum's numbers.
    _gxa(bm.BasicModel_MultiLayer(multi_input_module=True), ["linear0"], T([[3.0, 4.0, 0.0]]), [[[9.0, 12.0, 0.0]]])


def test_layer_gradient_x_activation__simple_output_gradient_activation() -> None:
    _gxa(bm.BasicModel_MultiLayer(), ["linear2"], T([[0.0, 100.0, 0.0]]), [[[392.0, 0.0]]])


def test_layer_gradient_x_activation__simple_gradient_activation_multi_input_linear2() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3, 3], (4,))
    x = torch.cat([T([[0.0, 10.0, 0.0]]), T([[0.0, 10.0, 0.0]]), T([[0.0, 5.0, 0.0]])], 1)
    _gxa(net, ["net.model.linear2"], x, [[[392.0, 0.0]]])


def test_layer_gradient_x_activation__simple_gradient_activation_multi_input_relu() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3], (T([[0.0, 0.0, 0.0]]), 5))
    x = torch.cat([T([[0.0, 10.0, 1.0]]), T([[0.0, 4.0, 5.0]])], 1)
    _gxa(net, ["net.model.relu"], x, [[[90.0, 101.0, 101.0, 101.0]]])


# ======================================================================= test_layer_activation.py

def _act(net: nn.Module, layers: list[str], x: torch.Tensor, expected: list[object]) -> None:
    res = path_sweep(net, x, torch.zeros_like(x), _target(x), layers, ["activation"], make_grid("trapezoid", 1))
    for layer, want in zip(layers, expected):
        close(res.scores[(layer, "activation")], want, delta=0.01)


def test_layer_activation__simple_input_activation() -> None:
    _act(bm.BasicModel_MultiLayer(), ["linear0"], T([[0.0, 100.0, 0.0]]), [[[0.0, 100.0, 0.0]]])


def test_layer_activation__simple_linear_activation() -> None:
    _act(bm.BasicModel_MultiLayer(), ["linear1"], T([[0.0, 100.0, 0.0]]), [[[90.0, 101.0, 101.0, 101.0]]])


def test_layer_activation__simple_multi_linear_activation() -> None:
    _act(bm.BasicModel_MultiLayer(), ["linear1", "linear0"], T([[0.0, 100.0, 0.0]]),
         [[[90.0, 101.0, 101.0, 101.0]], [[0.0, 100.0, 0.0]]])


def test_layer_activation__simple_relu_activation_input_inplace() -> None:
    # Captum: the input of the in-place `relu`; here the output of `linear1`, the tensor the relu reads.
    net = canonicalise(bm.BasicModel_MultiLayer(inplace=True))
    _act(net, ["linear1"], T([[2.0, -5.0, 4.0]]), [[[-9.0, 2.0, 2.0, 2.0]]])


def test_layer_activation__simple_linear_activation_inplace() -> None:
    net = canonicalise(bm.BasicModel_MultiLayer(inplace=True))
    _act(net, ["linear1"], T([[2.0, -5.0, 4.0]]), [[[-9.0, 2.0, 2.0, 2.0]]])


def test_layer_activation__simple_relu_activation() -> None:
    _act(bm.BasicModel_MultiLayer(), ["relu"], T([[3.0, 4.0, 0.0]]), [[[0.0, 8.0, 8.0, 8.0]]])


def test_layer_activation__simple_output_activation() -> None:
    _act(bm.BasicModel_MultiLayer(), ["linear2"], T([[0.0, 100.0, 0.0]]), [[[392.0, 394.0]]])


def test_layer_activation__simple_multi_layer_multi_output_activation() -> None:
    # Partly: `multi_relu` returns a tuple (not a layer here); its two tensor layers keep Captum's numbers.
    _act(bm.BasicModel_MultiLayer(multi_input_module=True), ["linear0", "linear1"], T([[0.0, 6.0, 0.0]]),
         [[[0.0, 6.0, 0.0]], [[-4.0, 7.0, 7.0, 7.0]]])


def test_layer_activation__simple_multi_input_linear2_activation() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3, 3], (4,))
    x = torch.cat([T([[0.0, 10.0, 0.0]]), T([[0.0, 10.0, 0.0]]), T([[0.0, 5.0, 0.0]])], 1)
    _act(net, ["net.model.linear2"], x, [[[392.0, 394.0]]])


def test_layer_activation__simple_multi_input_relu_activation() -> None:
    net = Joined(bm.BasicModel_MultiLayer_MultiInput(), [3, 3], (T([[0.0, 0.0, 0.0]]), 5))
    x = torch.cat([T([[0.0, 10.0, 1.0]]), T([[0.0, 4.0, 5.0]])], 1)
    _act(net, ["net.model.relu"], x, [[[90.0, 101.0, 101.0, 101.0]]])


# These two models do not output [batch, classes], which our methods read F(x) from: their output is flattened
# behind them (`1`), which leaves the layer's activation as it was.

def test_layer_activation__sequential_in_place() -> None:
    model = canonicalise(nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True)), nn.Flatten()))
    x = torch.randn(1, 3, 5, 5)
    _act(model, ["0.0"], x, [unit_sum(model[0][0](x))])


def test_layer_activation__sequential_module() -> None:
    model = nn.Sequential(bm.Conv1dSeqModel(), nn.Flatten())
    x = torch.randn(2, 4, 1000)
    _act(model, ["0.seq"], x, [unit_sum(model[0](x))])


# ======================================================================= test_layer_integrated_gradients.py

def _lig_vs_conductance(layer: str) -> None:
    """Captum's _assert_compare_with_layer_conductance: with 1500 steps layer IG and conductance agree (0.01) and so
    do their completeness deltas (0.5). Both gausslegendre, Captum's default."""
    model = bm.BasicModel_MultiLayer()
    x = T([[50.0, 50.0, 50.0]])
    t = _target(x)
    res = sweep(model, layer, x, "conductance", "gauss_legendre", 1500, 512)
    probe = Probe(model, layer, x)
    lig = layer_ig(probe, x, torch.zeros_like(x), t, grid("gauss_legendre", 1500), 512)
    close(lig, res.scores[(layer, "conductance")], delta=0.01, mode="max")
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x)))[:, 0]
    close(lig.sum(1) - gap, res.deltas[layer], delta=0.5, mode="max")


def test_layer_integrated_gradients__compare_with_layer_conductance_attr_to_outputs() -> None:
    _lig_vs_conductance("linear2")


def test_layer_integrated_gradients__compare_with_layer_conductance_attr_to_inputs() -> None:
    # Captum: the input of `linear2`; here the output of `relu`, the tensor linear2 reads.
    _lig_vs_conductance("relu")


# ======================================================================= test_layer_deeplift.py

def _relu_linear(x3: float = 1, inplace: bool = False) -> nn.Module:
    return canonicalise(Joined(bm.ReLULinearModel(inplace=inplace), [3, 3], (x3,)))


X_DL = torch.cat([T([[-10.0, 1.0, -5.0]]), T([[3.0, 3.0, 1.0]])], 1)  # Captum's x1, x2; baselines 0


def _deeplift(model: nn.Module, layer: str, x: torch.Tensor, base: torch.Tensor, expected: object) -> None:
    got = deeplift(model, layer, x, base, _target(x))
    close(got, expected)
    with torch.no_grad():  # Captum's assert_delta: completeness
        gap = (model(x) - model(base))[:, 0]
    close(got.sum(1), gap, delta=1e-4 * x.shape[0] * 100)


def test_layer_deeplift__relu_layer_deeplift() -> None:
    # Captum: the input of `relu` (the concatenation); here its output. The rescale multipliers are 0 and 1 and the
    # relu's input changes by -29 and 15, so both read [0, 15].
    _deeplift(_relu_linear(inplace=True), "net.relu", X_DL, torch.zeros_like(X_DL), [[0.0, 15.0]])


def test_layer_deeplift__relu_layer_deeplift_add_args() -> None:
    _deeplift(_relu_linear(x3=3.0), "net.relu", X_DL, torch.zeros_like(X_DL), [[0.0, 45.0]])


def test_layer_deeplift__linear_layer_deeplift() -> None:
    # Captum: the input of `l3`; here the output of `relu`, the tensor l3 reads.
    _deeplift(_relu_linear(inplace=True), "net.relu", X_DL, torch.zeros_like(X_DL), [[0.0, 15.0]])


def test_layer_deeplift__linear_layer_deeplift_batch() -> None:
    x = torch.cat([T([[-10.0, 1.0, -5.0]] * 3), T([[3.0, 3.0, 1.0]] * 3)], 1)
    base = torch.zeros(1, 6)  # Captum's baselines have batch 1
    model = _relu_linear(inplace=True)
    _deeplift(model, "net.relu", x, base.expand_as(x), [[0.0, 15.0]] * 3)  # Captum: l3's input
    _deeplift(model, "net.l3", x, base.expand_as(x), [[15.0]] * 3)  # Captum: l3's output


def test_layer_deeplift__lin_maxpool_lin_classification() -> None:
    model = bm.LinearMaxPoolLinearModel()
    x, base = torch.ones(2, 4), T([[1.0, 2.0, 3.0, 9.0], [4.0, 8.0, 6.0, 7.0]])
    _deeplift(model, "pool1", x, base, [[-8.0], [-7.0]])  # Captum: [[[-8]], [[-7]]], one unit of one position


# ======================================================================= test_layer_lrp.py
# Captum's default rule on these models is epsilon on every Linear/Conv: composite "epsilon" here.

def test_layer_lrp__lrp_basic_attributions() -> None:
    model = bm.BasicModel_ConvNet_One_Conv()
    x = torch.arange(16).view(1, 1, 4, 4).float()
    t = model(x).argmax(1)
    r, delta = lrp_relevance(model, "conv1", x, t, "epsilon")
    close(r, [[0 + 4 + 31 + 40, 0 + 0 - 6 - 15]])  # Captum's [[[0, 4], [31, 40]], [[0, 0], [-6, -15]]], summed
    close(delta, [0.0])


def test_layer_lrp__lrp_simple_attributions() -> None:
    # Captum: relevance at linear2's input equals that at linear's output, and its delta is 0. Here: `relu` (the
    # tensor linear2 reads) and `linear`.
    model = bm.SimpleLRPModel(False).eval()
    x = T([[1.0, 2.0, 3.0]])
    res = lrp_layers(model, ["relu", "linear"], x, _target(x), "epsilon")
    close(res["linear"][0], res["relu"][0])
    assert float(res["relu"][1].abs().max()) == 0.0


def test_layer_lrp__lrp_simple_repeat_attributions() -> None:
    model = bm.SimpleLRPModel(False).eval()
    x = T([[1.0, 2.0, 3.0]])
    out = model(x)
    for composite in ("gamma", "zplus"):  # Captum: GammaRule on linear, Alpha1_Beta0 on linear2
        lrp_relevance(model, "linear", x, _target(x), composite)
    close(model(x), out)


def test_layer_lrp__lrp_simple_tanh() -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 3, bias=False)
            self.linear.weight.data.fill_(0.1)
            self.tanh = torch.nn.Tanh()
            self.linear2 = nn.Linear(3, 1, bias=False)
            self.linear2.weight.data.fill_(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear2(self.tanh(self.linear(x)))

    x = T([[1.0, 2.0, 3.0]])
    r, _ = lrp_relevance(Model(), "linear", x, _target(x), "epsilon")
    close(r, [[0.0537, 0.0537, 0.0537]], delta=1e-4 * 3)  # relevance passes through tanh unchanged, as in Captum


def _gamma_model() -> nn.Module:
    model = bm.SimpleLRPModel(False)
    with torch.no_grad():
        model.linear.weight.data[0][0] = -2
    return model.eval()


def test_layer_lrp__lrp_simple_attributions_GammaRule() -> None:  # noqa: N802
    # Captum: gamma 1 on linear, 0.25 on linear2. Relevance at linear's output depends on linear2's rule only.
    x = T([[1.0, 2.0, 3.0]])
    r, _ = lrp_relevance(_gamma_model(), "linear", x, _target(x), "gamma", gamma=0.25)
    close(r, [[24.0, 36.0, 36.0]])


def test_layer_lrp__lrp_simple_attributions_AlphaBeta() -> None:  # noqa: N802
    x = T([[1.0, 2.0, 3.0]])
    r, _ = lrp_relevance(_gamma_model(), "linear", x, _target(x), "zplus")  # Captum: Alpha1_Beta0_Rule
    close(r, [[24.0, 36.0, 36.0]])


def _with_input_layer(model: nn.Module) -> nn.Module:
    """The model behind an identity module `0`, so that the relevance of the input is a layer's relevance."""
    return nn.Sequential(nn.Identity(), model).eval()


def test_layer_lrp__lrp_simple_attributions_all_layers() -> None:
    # Captum: layers [linear, linear2] attributed to their inputs; relevance[0] is the input's: here layer `0`.
    model = _with_input_layer(bm.SimpleLRPModel(False))
    x = T([[1.0, 2.0, 3.0]])
    res = lrp_layers(model, ["0", "1.relu"], x, _target(x), "epsilon")
    assert len(res) == 2
    close(res["0"][0], [[18.0, 36.0, 54.0]])


def test_layer_lrp__lrp_simple_attributions_all_layers_delta() -> None:
    model = _with_input_layer(bm.SimpleLRPModel(False))
    x = T([[1.0, 2.0, 3.0]])
    x = torch.cat((x, 2 * x))
    res = lrp_layers(model, ["0", "1.relu"], x, _target(x), "epsilon")
    relevance, delta = res["0"]
    assert len(relevance) == len(delta)
    close(relevance, [[18.0, 36.0, 54.0], [36.0, 72.0, 108.0]])
