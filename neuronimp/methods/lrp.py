"""LRP relevance at hidden layers through zennit: rules by composite name, canonical form, one backward pass.

Relevance flows backwards as zennit's modified gradient: each rule hook replaces the gradient a module sends
to its input by the relevance of that input, so the (modified) gradient that reaches a layer's output IS the
relevance there, R_y = grad_y (not y * grad_y). The backward pass starts from R_out = F(x) at the target
logit (zero elsewhere), so relevance is measured in logit units, and one pass gives every requested layer.

Rules (z_k = sum_j a_j w_jk + b_k; R_j = sum_k q_jk R_k):
  epsilon   q_jk = a_j w_jk / (z_k + eps sign z_k)                          Bach et al. 2015, eq. 58
  gamma     q_jk = a_j (w_jk + gamma w_jk^+) / sum_j a_j (w_jk + gamma w_jk^+)  Montavon et al. 2019, sec. 10.2.1
            (zennit's generalised form, Andeol et al. 2021: for z_k < 0 and a_j < 0 the negative parts take
            the place of the positive ones; biases enter the denominators as b + gamma b^+ / b + gamma b^-)
  zplus     q_jk = (a_j^+ w_jk^+ + a_j^- w_jk^-) / (sum_j (a_j^+ w_jk^+ + a_j^- w_jk^-) + b_k^+)
            (z+ / deep Taylor, Montavon et al. 2017; alpha=1, beta=0)
  alpha2_beta1  2 (positive share) - 1 (negative share)                     Bach et al. 2015, eq. 60
  box       z^B rule for the first convolution with input bounds [low, high]  Montavon et al. 2017
Composites (LRP_COMPOSITES): `epsilon`, `gamma`, `zplus` put that one rule on every Linear/Conv module;
`epsilon_plus` (z+ on convs, epsilon on dense), `epsilon_gamma_box` (box on the first conv, gamma on the
other convs, epsilon on dense) and `epsilon_alpha2_beta1` are zennit's composites of those names. All of them
pass relevance unchanged through activations and batch norms, split it in proportion through average pools
and residual sums (`Norm`), and route it by the gradient through max pools (winner takes all), concatenation
and reshapes. Denominators other than epsilon's are stabilised by `stabilizer` (zennit's default 1e-6).

Canonical form (lrp_canonizers.py): batch norms merged into their convs (pairs found by following tensors),
torchvision ResNet blocks through zennit's ResNet canonizers, any other `a + b` of activations through the sum
rule, squeeze-excitation gates by the signal-take-all rule (Arras et al. 2017: R_x = R_y, the gate gets none), layer
norms and scaled-dot-product attention by the LN- and AH-rules of Ali et al. 2022 (lrp_transformer.py).
Everything is undone afterwards: parameters, hooks, attributes, requires_grad and train/eval flags.

The conservation residual `delta = sum_u R_u - F(x)` is returned for each input: what the rules absorb
(bias terms, epsilon, z+'s positive biases, relevance of units with a zero denominator), 0 up to the
stabilisers on a bias-free network under the epsilon, z+ and gamma rules.

Captum's LayerLRP is no longer used for LRP. It gives containers and non-linearities no rule, and its relevance
doubled at every residual block of torchvision's ResNet-18 (whose blocks call one ReLU module twice): summed over
layer1 / layer2 / layer3 of a bias-free random ResNet-18 it gave 64 / 16 / 4 F(x), and 4 F(x) below the two plain
`+` of a residual MLP (measured with the code before issue 13; tests/unit/test_lrp.py shows the same counts when
the sums here pass relevance as a plain gradient). Captum stays for DeepLIFT (propagation.py) and as an
oracle in the tests.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.hooks import capture, frozen, no_new_attrs
from neuronimp.methods.lrp_canonizers import (
    batch_norm_merge,
    conv_bn_pairs,
    gates_pass,
    has_batch_norm,
    proportional_adds,
    torchvision_resnet_canonizers,
)
from neuronimp.methods.lrp_transformer import transformer_rules
from neuronimp.methods.units import layer_layouts, reduce_units

LRP_COMPOSITES = ("epsilon", "gamma", "zplus", "epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1")
# method names of the engine -> composite
LRP_METHODS = {"lrp_epsilon": "epsilon", "lrp_gamma": "gamma", "lrp_zplus": "zplus"}


def make_composite(name: str, *, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6,
                   low: Any = None, high: Any = None, canonizers: list[Any] | None = None,
                   activations: tuple[type, ...] = ()) -> Any:
    """The zennit composite called `name` (one of LRP_COMPOSITES) with these parameters and canonizers;
    `activations`: more element-wise activation types (other libraries' classes) given zennit's Pass rule."""
    from zennit import composites as zc
    from zennit.rules import Epsilon, Gamma, Pass, ZPlus
    from zennit.types import Linear

    canonizers = canonizers or []
    extra = [(activations, Pass())] if activations else []
    if name in ("epsilon", "gamma", "zplus"):
        rule = {"epsilon": lambda: Epsilon(epsilon=epsilon), "gamma": lambda: Gamma(gamma=gamma, stabilizer=stabilizer),
                "zplus": lambda: ZPlus(stabilizer=stabilizer)}[name]()
        return zc.LayerMapComposite(extra + zc.layer_map_base(stabilizer) + [(Linear, rule)], canonizers=canonizers)
    if name == "epsilon_plus":
        return zc.EpsilonPlus(epsilon=epsilon, stabilizer=stabilizer, layer_map=extra, canonizers=canonizers)
    if name == "epsilon_alpha2_beta1":
        return zc.EpsilonAlpha2Beta1(epsilon=epsilon, stabilizer=stabilizer, layer_map=extra, canonizers=canonizers)
    if name == "epsilon_gamma_box":
        if low is None or high is None:
            raise UsageError("composite epsilon_gamma_box needs input bounds low and high")
        return zc.EpsilonGammaBox(low=low, high=high, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer,
                                  layer_map=extra, canonizers=canonizers)
    raise UsageError(f"unknown LRP composite {name!r}; allowed: {', '.join(LRP_COMPOSITES)}")


def foreign_activations(model: nn.Module) -> tuple[type, ...]:
    """Element-wise activation types in `model` that zennit does not know (timm's GELU, Swish ...): they get
    zennit's Pass rule like torch's own (`deeplift_rules.elementwise_activation` decides what is element-wise)."""
    from zennit.types import Activation

    from neuronimp.methods.deeplift_rules import elementwise_activation

    found = dict.fromkeys(type(m) for m in model.modules())
    return tuple(t for t in found if elementwise_activation(t) and not issubclass(t, Activation))


def _bounds(x: torch.Tensor, low: Any, high: Any) -> tuple[Any, Any]:
    """Input bounds for the box rule: given, else each input's own min and max ([B, 1, ...], per input)."""
    dims = tuple(range(1, x.dim()))
    low = x.detach().amin(dim=dims, keepdim=True) if low is None else low
    high = x.detach().amax(dim=dims, keepdim=True) if high is None else high
    return low, high


def lrp_layers(
    model: nn.Module,
    layers: list[str],
    x: torch.Tensor,
    target: torch.Tensor,
    composite: str = "epsilon_plus",
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    low: Any = None,
    high: Any = None,
    axes: dict[str, str] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{layer: (relevance [B, U] summed over each unit's positions, delta [B] = sum_u R_u - F(x))} from one
    backward pass; axes: each layer's unit axis (None: the defaults, `units.py`)."""
    if composite not in LRP_COMPOSITES:
        raise UsageError(f"unknown LRP composite {composite!r}; allowed: {', '.join(LRP_COMPOSITES)}")
    if composite == "epsilon_gamma_box":
        low, high = _bounds(x, low, high)
    if axes is None:
        axes = {l: lay.axis for l, lay in layer_layouts(model, layers, x[:1]).items()}
    x = x.detach().clone().requires_grad_(True)  # zennit hooks a module only when its input requires grad
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with frozen(model), no_new_attrs(model):
        pairs, ref = conv_bn_pairs(model, x[:1].detach()) if has_batch_norm(model) else ([], None)
        canon = torchvision_resnet_canonizers(model) + ([batch_norm_merge(pairs)] if pairs else [])
        comp = make_composite(composite, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer, low=low, high=high,
                              canonizers=canon, activations=foreign_activations(model))
        with comp.context(model), gates_pass(model), transformer_rules(model, stabilizer), \
                capture(model, layers) as acts, torch.enable_grad():
            with proportional_adds(stabilizer):
                logits = model(x)
            if ref is not None:
                _check_same(ref[0], logits[0].detach())
            missing = [l for l in layers if l not in acts]
            if missing:
                raise RuntimeError(f"layers {missing} were not reached by the forward pass")
            f = logits.gather(1, target.view(-1, 1)).squeeze(1)  # F(x) [B]; raises on a bad target
            seed = torch.zeros_like(logits).scatter(1, target.view(-1, 1), f.detach().view(-1, 1))
            ys = [acts[l] for l in layers]
            grads = torch.autograd.grad(logits, ys, grad_outputs=seed, allow_unused=True)
        for l, y, g in zip(layers, ys, grads):
            r = reduce_units(g.detach() if g is not None else torch.zeros_like(y.detach()), axes[l])
            out[l] = (r, r.sum(1) - f.detach())
    return out


def _check_same(want: torch.Tensor, got: torch.Tensor) -> None:
    """RuntimeError unless the canonized model computes the original logits (batch-norm merge check)."""
    tol = 1e-4 * float(want.abs().max().clamp(min=1e-12))
    if not torch.allclose(got, want, rtol=1e-4, atol=tol):
        worst = float((got - want).abs().max())
        raise RuntimeError(f"merging batch norms into their convolutions changed the model's output (by up to "
                           f"{worst:.3g}): a merged conv output has another reader; LRP needs a canonical model")


def lrp_relevance(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    target: torch.Tensor,
    composite: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low: Any = None,
    high: Any = None,
    stabilizer: float = 1e-6,
    axis: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevance [B, U] of the layer's units, delta [B] = sum_u R_u - F(x)) under `composite` (module doc)."""
    return lrp_layers(model, [layer], x, target, composite, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer,
                      low=low, high=high, axes=None if axis is None else {layer: axis})[layer]
