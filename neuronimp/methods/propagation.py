"""DeepLIFT (rescale) relevance at a layer through Captum's LayerDeepLift; LRP through zennit (`lrp.py`).

DeepLIFT is Captum's well-tested implementation, on the canonicalised model (every ReLU its own module,
none in place: Captum's rules only see nn.Module non-linearities). DeepLIFT runs, for that call only, with
Captum's max-pool rule swapped for one whose unpool adds (`deeplift_rules.py`: Captum's drops one of two
contributions where pooling windows overlap) and with the rescale rule on every element-wise activation
(SiLU, Hardswish, GELU ...; Captum has it only for ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus, Softmax), and
squeeze-excitation gates x * g(x) split by the product rule (`deeplift_rules.deeplift_gates`).

Captum attaches its rule to the *input tensor* of each module it hooks, so for each call every such module reads
its own copy of its input (`own_inputs`). Where a tensor has several readers (an Inception block's input feeds
its pool and its convs) DeepLIFT's multiplier would otherwise replace the gradient all readers send back; with a
copy per hooked module each reader's share is scaled once and the shares add up. (zennit, used for LRP, gives
each module call its own identity node on its input already.)
  deeplift     Shrikumar et al. 2017, rescale rule, multiplied by (y - y'): sums to F(x) - F(x').
  lrp_epsilon  Bach et al. 2015, epsilon rule on every conv/linear layer (zennit composite `epsilon`).
  lrp_gamma    Montavon et al. 2019, gamma rule (gamma from the config) on conv/linear layers (`gamma`).
  lrp_zplus    z+ rule (deep Taylor decomposition, Montavon et al. 2017) on conv/linear layers (`zplus`).
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.hooks import get_module, no_new_attrs
from neuronimp.methods.deeplift_rules import deeplift_gates, deeplift_rules
from neuronimp.methods.lrp import LRP_METHODS, lrp_relevance
from neuronimp.methods.units import layer_layouts, reduce_units


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


def deeplift(model: nn.Module, layer: str, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
             axis: str | None = None) -> torch.Tensor:
    """DeepLIFT rescale contributions of the layer's units, [B, U]; over units they sum to F(x) - F(x').

    axis: the layer's unit axis (None: its default, `units.py`). Modules after the layer with no DeepLIFT rule
    (`rules.deeplift_gaps`) are crossed by their gradient: the engine warns about them.
    """
    axis = axis or layer_layouts(model, [layer], x[:1])[layer].axis
    from captum.attr import LayerDeepLift
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    # Captum hooks tensors that must require grad: parameters keep theirs here (no .grad is written).
    with no_new_attrs(model), deeplift_rules(model), deeplift_gates(model), warnings.catch_warnings():
        hooked = [m for m in model.modules() if type(m) in SUPPORTED_NON_LINEAR]  # the modules given a rule
        warnings.simplefilter("ignore")
        with own_inputs(hooked):
            attr = LayerDeepLift(model, get_module(model, layer), multiply_by_inputs=True).attribute(
                x, baseline.expand_as(x), target=target
            )
    return reduce_units(attr.detach(), axis)


def lrp(model: nn.Module, layer: str, x: torch.Tensor, target: torch.Tensor, rule: str,
        epsilon: float = 1e-6, gamma: float = 0.25, axis: str | None = None) -> torch.Tensor:
    """LRP relevance of the layer's units (output side), [B, U]: `rule` lrp_epsilon / lrp_gamma / lrp_zplus,
    through zennit (`lrp.lrp_relevance`, composites epsilon / gamma / zplus on every Linear/Conv)."""
    if rule not in LRP_METHODS:
        raise UsageError(f"unknown LRP method {rule!r}; allowed: {', '.join(LRP_METHODS)}")
    # the stabiliser of the sum and average-pool rules follows a smaller epsilon, never above zennit's 1e-6
    r, _ = lrp_relevance(model, layer, x, target, LRP_METHODS[rule], epsilon=epsilon, gamma=gamma,
                         stabilizer=min(epsilon, 1e-6), axis=axis)
    return r
