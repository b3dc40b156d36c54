"""Non-linearities called as functions (F.relu, torch.sigmoid, x.softmax(...)) outside any module of their own.

DeepLIFT (Captum) and LRP (zennit) attach their rules to modules, so a block whose forward calls `F.relu(x)`
(torchvision's DenseNet after its features, many user models) is crossed by the plain gradient there, silently.
`FunctionalCalls` is a TorchFunctionMode for the one survey pass of `units.layer_layouts`: it records each such
call made while no leaf module is running (inside nn.ReLU.forward, F.relu is the module's own rule) as a
pseudo type named after the function (`F.relu`, `F.softmax` ...), placed in the call order with the modules, so
`LayerLayout.downstream` lists it and `rules.deeplift_gaps` / `rules.lrp_gaps` can name it in the warning.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


class FunctionalCall:
    """Base of the pseudo types that stand for a functional non-linearity (`kind`: relu, max_pool, ...)."""

    kind: str = ""


def _named(functions: tuple[Any, ...], kind: str) -> dict[Any, str]:
    return {f: kind for f in functions}


# function -> kind; the kind names the pseudo type `F.<kind>`
_KINDS: dict[Any, str] = {
    **_named((F.relu, torch.relu, torch.Tensor.relu, F.relu6), "relu"),
    **_named((F.gelu,), "gelu"), **_named((F.silu,), "silu"), **_named((F.mish,), "mish"),
    **_named((F.hardswish,), "hardswish"), **_named((F.hardsigmoid,), "hardsigmoid"),
    **_named((F.leaky_relu,), "leaky_relu"), **_named((F.elu, F.selu, F.celu), "elu"),
    **_named((torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid), "sigmoid"),
    **_named((torch.tanh, torch.Tensor.tanh, F.tanh), "tanh"),
    **_named((F.softplus,), "softplus"),
    **_named((F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax), "softmax"),
    **_named((F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
              F.adaptive_max_pool3d), "max_pool"),
    **_named((F.layer_norm, F.group_norm), "norm"),
}
_TYPES: dict[str, type] = {}


def functional_type(kind: str) -> type:
    """The pseudo type of functional non-linearities of `kind` (one per kind, named `F.<kind>`)."""
    if kind not in _TYPES:
        _TYPES[kind] = type(f"F.{kind}", (FunctionalCall,), {"kind": kind})
    return _TYPES[kind]


class FunctionalCalls(TorchFunctionMode):
    """Records (call number, pseudo type) for functional non-linearities outside leaf modules (module doc).

    `counter` is the survey's call counter (shared with its module hooks); `inside` counts the leaf modules
    running now (the survey's hooks raise and lower it).
    """

    def __init__(self, counter: list[int], starts: list[tuple[int, type]]) -> None:
        super().__init__()
        self.counter, self.starts, self.inside = counter, starts, 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kind = _KINDS.get(func)
        if kind is not None and self.inside == 0:
            self.counter[0] += 1
            self.starts.append((self.counter[0], functional_type(kind)))
        return func(*args, **(kwargs or {}))
