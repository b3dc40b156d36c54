"""DeepLIFT (rescale) and LRP relevance at a layer, through Captum's LayerDeepLift and LayerLRP.

These are Captum's well-tested implementations, on the canonicalised model (every ReLU its own module,
none in place: Captum's rules only see nn.Module non-linearities). LRP rules are set as the `rule` attribute
Captum reads, inside a context manager that removes them afterwards. DeepLIFT runs, for that call only, with
Captum's max-pool rule swapped for one whose unpool adds (`deeplift_rules.py`: Captum's drops one of two
contributions where pooling windows overlap).

Both attach their rule to the *input tensor* of each module they hook, so for each call every such module reads
its own copy of its input (`own_inputs`). Where a tensor has several readers (an Inception block's input feeds
its pool and its convs) DeepLIFT's multiplier would otherwise replace the gradient all readers send back, and a
copy made by the model itself (`x.clone()` in its code) makes Captum's LRP multiply that reader's relevance by the
input twice; with a copy per hooked module each reader's share is scaled once and the shares add up.
  deeplift     Shrikumar et al. 2017, rescale rule, multiplied by (y - y'): sums to F(x) - F(x').
  lrp_epsilon  Bach et al. 2015, epsilon rule on every layer.
  lrp_gamma    Montavon et al. 2019, gamma rule (gamma from the config) on conv/linear layers.
  lrp_zplus    z+ rule (deep Taylor decomposition, Montavon et al. 2017): Captum's Alpha1_Beta0_Rule.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.hooks import get_module, module_attrs, no_new_attrs, swap_module
from neuronimp.methods.deeplift_rules import adding_maxpool_rules
from neuronimp.methods.path import unit_sum


def _copy_input(_module: nn.Module, inputs: tuple[object, ...]) -> tuple[object, ...]:
    """Forward pre-hook: the module reads clones of its tensor inputs (same values, tensors of its own)."""
    return tuple(i.clone() if isinstance(i, torch.Tensor) else i for i in inputs)


@contextlib.contextmanager
def own_inputs(modules: list[nn.Module]) -> Iterator[None]:
    """While active, each of `modules` reads its own copy of its input; hooks removed in `finally`.

    Enter it before Captum registers its hooks: forward pre-hooks run in registration order, so Captum's then
    see, and hook, the copy.
    """
    handles = [m.register_forward_pre_hook(_copy_input) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def deeplift(model: nn.Module, layer: str, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DeepLIFT rescale contributions of the layer's units, [B, U]; over units they sum to F(x) - F(x')."""
    from captum.attr import LayerDeepLift
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    hooked = [m for m in model.modules() if type(m) in SUPPORTED_NON_LINEAR]  # the modules given a rule
    # Captum hooks tensors that must require grad: parameters keep theirs here (no .grad is written).
    with no_new_attrs(model), own_inputs(hooked), adding_maxpool_rules(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = LayerDeepLift(model, get_module(model, layer), multiply_by_inputs=True).attribute(
            x, baseline.expand_as(x), target=target
        )
    return unit_sum(attr.detach())


def _rules(model: nn.Module, rule: str, epsilon: float, gamma: float) -> dict[nn.Module, dict[str, object]]:
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule

    out: dict[nn.Module, dict[str, object]] = {}
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            r = {"lrp_epsilon": lambda: EpsilonRule(epsilon), "lrp_gamma": lambda: GammaRule(gamma),
                 "lrp_zplus": Alpha1_Beta0_Rule}[rule]()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Identity, nn.MaxPool1d, nn.MaxPool2d,
                            nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
            r = EpsilonRule(epsilon)  # shape-only and pooling modules pass relevance on in proportion (z-rule)
        else:
            continue
        out[m] = {"rule": r}
    return out


class _Tap(nn.Module):
    """An identity that returns a new tensor (backward hooks need output and input to be distinct)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def lrp(model: nn.Module, layer: str, x: torch.Tensor, target: torch.Tensor, rule: str,
        epsilon: float = 1e-6, gamma: float = 0.25) -> torch.Tensor:
    """LRP relevance of the layer's units (output side), [B, U]."""
    from captum.attr import LayerLRP
    from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS
    from captum.attr._utils.lrp_rules import EpsilonRule

    # Captum gives non-linear modules and containers no rule, so it cannot report relevance at their output;
    # a tap (an identity with the z-rule) placed right after the layer reads the relevance there.
    target_mod = get_module(model, layer)
    tap = _Tap()
    with contextlib.ExitStack() as stack:
        # Always read relevance at a tap after the layer: it works for activations and for containers
        # (an Inception block has no rule of its own) alike.
        stack.enter_context(swap_module(model, layer, nn.Sequential(target_mod, tap)))
        target_mod = tap
        stack.enter_context(no_new_attrs(model))
        rules = _rules(model, rule, epsilon, gamma)
        rules[tap] = {"rule": EpsilonRule(1e-12)}
        stack.enter_context(module_attrs(rules))
        # every module Captum's LRP hooks (a rule, or a non-linearity it passes relevance through)
        hooked = [*rules, *(m for m in model.modules() if type(m) in SUPPORTED_NON_LINEAR_LAYERS)]
        stack.enter_context(own_inputs(hooked))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        try:
            attr = LayerLRP(model, target_mod).attribute(x, target=target)
        except TypeError as exc:
            raise UsageError(f"{rule} is not available for this model: {exc}".replace("\n", " ")) from None
    return unit_sum(attr.detach())
