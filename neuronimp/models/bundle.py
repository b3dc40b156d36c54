"""The model bundle (a network plus what studies need to know about it) and the model registry."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from neuronimp.registry import Registry


@dataclass
class ModelBundle:
    """A network in eval mode with its input shape, named layers and preprocessing."""

    model: nn.Module               # eval mode; every ReLU its own nn.ReLU(inplace=False) module, none shared
    name: str
    num_classes: int
    input_shape: tuple[int, ...]   # one example, no batch dim, as the model's forward takes it: (3,224,224)
    layer_aliases: dict[str, str] = field(default_factory=dict)  # paper name -> module path
    default_layer: str = ""
    transform: Callable | None = None  # PIL image -> tensor preprocessing (image-folder models), else None
    embed: nn.Module | None = None     # token ids [N, L] -> float input of `model`; None for image models


@dataclass(frozen=True)
class LayerInfo:
    """One addressable layer: module path, paper alias, output shape (no batch dim), unit count and unit axis
    (channel | feature | token, the default of `methods/units.py`; "" with a `problem` when it cannot be scored)."""

    name: str
    alias: str | None
    shape: tuple[int, ...]
    units: int
    axis: str = ""
    problem: str | None = None


# A factory takes (weights, num_classes, **options) and returns a ModelBundle whose weights are loaded.
MODELS: Registry = Registry("model")


def checkpoint_module(bundle: ModelBundle) -> nn.Module:
    """The module whose state_dict is a checkpoint: `model`, or {embed, model} for text models."""
    if bundle.embed is None:
        return bundle.model
    return nn.ModuleDict({"embed": bundle.embed, "model": bundle.model})
