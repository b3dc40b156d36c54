"""The method registry: every importance method is one function with one signature, registered by name.

    @method("deeplift", help="...", delta="difference")
    def _deeplift(call: MethodCall) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...

A method returns scores [B, U] (one per unit), or (scores, delta [B]) when it has a completeness or
conservation property. `delta` names that property: "difference" (scores sum to F(x) - F(x'): conductance,
layer IG, DeepLIFT), "output" (relevance sums to F(x): LRP) or "game" (Shapley values sum to v(all) - v(none),
the efficiency axiom; the method returns (scores, delta, reference [B]) since only it knows v(none)); the
engine checks it against the tolerance. `needs_stats` may be a function of the MethodParams (e.g. only
under mean ablation).
The four path methods have no function of their own: one sweep computes them together (methods/path.py),
so they are registered with `path=True`.

A method reduces the layer's output to units with `methods.units.reduce_units(t, call.axis)`: the engine resolves
the layer's unit axis (channel, feature or token) once per (model, layer) and hands it over in `call.layout`.
`input_grad=True` marks a method that interpolates or differentiates the model's input (refused, with one line, for
integer token-id inputs); `gaps` names the module types after the layer that the method has no rule for.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neuronimp.methods.grid import Grid
from neuronimp.methods.params import MethodParams
from neuronimp.methods.selectivity import LayerStats
from neuronimp.methods.units import LayerLayout, layer_layouts
from neuronimp.probe import Probe
from neuronimp.registry import Registry


@dataclass
class MethodCall:
    """What a method may read for one batch and one layer (the probe is built on first use and cached)."""

    model: nn.Module
    layer: str
    x: torch.Tensor              # [B, ...] the model's float input
    baseline: torch.Tensor       # [B or 1, ...]
    target: torch.Tensor         # [B] the class whose logit is explained
    params: MethodParams
    grid: Grid
    ids: torch.Tensor            # [B] dataset indices (seeds per input)
    stats: LayerStats | None     # dataset statistics of the layer, when the method needs them
    probes: dict[str, Probe] = field(default_factory=dict)
    shared: dict[str, torch.Tensor] = field(default_factory=dict)  # per batch, shared by every layer's call
    layout: LayerLayout | None = None  # the layer's unit axis and count (found from the model when None)

    @property
    def axis(self) -> str:
        """The layer's unit axis: channel | feature | token."""
        return self._layout().axis

    @property
    def n_units(self) -> int:
        """The layer's number of units on its axis."""
        return self._layout().units

    def _layout(self) -> LayerLayout:
        """The layer's layout, from the engine or one cached capture pass."""
        if self.layout is None:
            self.layout = layer_layouts(self.model, [self.layer], self.x[:1])[self.layer]
        return self.layout

    @property
    def probe(self) -> Probe:
        """The model cut at this layer (cached across calls in `probes`)."""
        if self.layer not in self.probes:
            self.probes[self.layer] = Probe(self.model, self.layer, self.x[:1])
        return self.probes[self.layer]


    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(F(x), F(x')) of the target class, [B] each; computed once per batch."""
        from neuronimp.methods.engine import call_outputs

        return call_outputs(self.model, self.x, self.baseline, self.target, self.shared)


MethodFn = Callable[[MethodCall], Any]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function (None for path methods), what it needs and its delta kind."""

    name: str
    fn: MethodFn | None
    help: str
    path: bool = False              # computed by the one path sweep
    needs_stats: bool | Callable[[MethodParams], bool] = False  # reads dataset statistics of the layer
    delta: str | None = None        # None | "difference" | "output" | "game"
    input_grad: bool = False        # interpolates or differentiates the model's input (path methods too)
    gaps: Callable[[Any], list[str]] | None = None  # module types after the layer -> names without a rule

    def __call__(self, call: MethodCall) -> Any:
        if self.fn is None:
            raise TypeError(f"method {self.name!r} is computed by the path sweep, not called alone")
        return self.fn(call)


METHODS: Registry = Registry("method")


def method(name: str, *, help: str, path: bool = False, needs_stats: bool | Callable[[MethodParams], bool] = False,
           delta: str | None = None, input_grad: bool = False, gaps: Callable[[Any], list[str]] | None = None
           ) -> Callable[[MethodFn | None], MethodFn | None]:
    """Decorator: register `fn` as method `name` (see the module docstring for the signature)."""

    def deco(fn: MethodFn | None) -> MethodFn | None:
        spec_ = MethodSpec(name, fn, help, path, needs_stats, delta, input_grad or path, gaps)
        METHODS.register(name, help=help)(spec_)
        return fn

    return deco


def spec(name: str) -> MethodSpec:
    """The registered spec of a method (UsageError listing the methods for an unknown name)."""
    return METHODS.get(name, where="methods")


def path_methods() -> tuple[str, ...]:
    """Names of the methods the path sweep computes."""
    return tuple(n for n in METHODS.names() if METHODS.get(n).path)
