"""Units of a layer of any layout: which axis of a layer's output is a unit, and what a unit is summed over.

A layer's output y [B, *shape] is read as [B, U, P]: U units, each summed (scores) or averaged (statistics,
pooled features) over its P positions (`to_units`):
  channel  y [B, C, *positions]  unit = dim 1, summed over the positions (conv maps [B, C, H, W], conv1d [B, C, L])
  feature  y [B, *tokens, F]     unit = the last dim, summed over the tokens (transformer blocks, dense layers)
  token    y [B, *tokens, F]     unit = one token (every dim but the last, flattened), summed over the features
A [B, F] output has P = 1 (channel and feature agree; it has no token axis).

`auto` (the default) chooses from the layer's output and module type (`unit_axis`):
  4-D or more   channel
  3-D           channel for a Conv1d, ConvTranspose1d, BatchNorm1d, InstanceNorm1d or 1-d pool, for a
                container whose output is one of those, and for an activation, dropout, identity or Linear (which
                maps the last dim, the positions) fed straight by one (so `relu` after a conv1d is channel-first
                too); feature otherwise ([B, tokens, features])
  2-D           feature
An ablation of a unit replaces it at every one of its positions (`expand_mask`): a feature in every token, a
channel at every position, a token in every feature.

`layer_layouts` finds the layout of each layer from one capture pass on a single example (cached per model and
input shape) and refuses, with one line naming the layer and why, a layer that cannot be scored: one the forward
pass never reaches, one the output does not depend on, one that returns a tuple or integers, one with no unit
dimension. The same pass records which module types run after each layer (`LayerLayout.downstream`), and the
non-linearities called as functions outside any module (`functional_calls.py`), so methods can name the modules
that have no rule of theirs (`methods/rules.py`).
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.methods.functional_calls import FunctionalCalls

UnitAxis = Literal["channel", "feature", "token"]
UNIT_AXES: tuple[str, ...] = ("channel", "feature", "token")
UNIT_CHOICES: tuple[str, ...] = ("auto", *UNIT_AXES)
UnitsChoice = str | Mapping[str, str]  # one choice for every layer, or layer -> choice (others: auto)

# 3-D outputs of these are [B, C, L] (channel first); an activation, dropout or identity keeps its input's layout
CHANNEL_FIRST_1D: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d, nn.MaxPool1d, nn.AvgPool1d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool1d, nn.LPPool1d, nn.MaxUnpool1d,
)
_KEEPS_LAYOUT = (nn.Identity, nn.modules.dropout._DropoutNd)


def _keeps_layout(module: nn.Module) -> bool:
    """An element-wise module: activations (torch's), dropout, identity."""
    return isinstance(module, _KEEPS_LAYOUT) or (
        type(module).__module__ == nn.modules.activation.__name__ and not isinstance(module, nn.MultiheadAttention))


def check_choice(choice: str, where: str = "units") -> str:
    """`choice` if it is auto, channel, feature or token; else a one-line UsageError."""
    if choice not in UNIT_CHOICES:
        from neuronimp.errors import closest

        hint = closest(str(choice), UNIT_CHOICES)
        raise UsageError(f"{where} = {choice!r}: allowed: {', '.join(UNIT_CHOICES)}"
                         + (f" (did you mean {hint!r}?)" if hint else ""))
    return choice


def choice_for(units: UnitsChoice, layer: str) -> str:
    """The unit choice of one layer: the single choice, or the layer's entry of the mapping (default auto)."""
    return units if isinstance(units, str) else units.get(layer, "auto")


def unit_axis(module: nn.Module, shape: tuple[int, ...], choice: str = "auto", channel_first: bool = False,
              layer: str = "") -> str:
    """The unit axis of a layer whose output has `shape` (with the batch dim), as `choice` or chosen (module doc).

    channel_first: the output is known to be [B, C, L] (set by the capture pass for an activation fed by a conv1d);
    a module of a CHANNEL_FIRST_1D type is channel-first anyway.
    """
    check_choice(choice, f"units of layer {layer!r}" if layer else "units")
    name = f"layer {layer!r} " if layer else ""
    if len(shape) < 2:
        raise UsageError(f"{name}cannot be scored: its output {list(shape)} has no unit dimension")
    if choice == "auto":
        if len(shape) >= 4:
            return "channel"
        if len(shape) == 3:
            return "channel" if channel_first or isinstance(module, CHANNEL_FIRST_1D) else "feature"
        return "feature"
    if choice == "token" and len(shape) == 2:
        raise UsageError(f"units: {name}has output [batch, {shape[1]}]: no token axis; allowed: auto, channel, "
                         "feature")
    return choice


def to_units(t: torch.Tensor, axis: str) -> torch.Tensor:
    """[B, *shape] -> [B, U, P]: units on dim 1, each unit's positions (tokens, features, pixels) on dim 2."""
    if t.dim() == 2:
        return t.unsqueeze(2)
    if axis == "channel":
        return t.flatten(2)
    if axis == "feature":
        return t.flatten(1, -2).transpose(1, 2)
    if axis == "token":
        return t.flatten(1, -2)
    raise ValueError(f"unknown unit axis {axis!r}; allowed: {', '.join(UNIT_AXES)}")


def reduce_units(t: torch.Tensor, axis: str) -> torch.Tensor:
    """[B, *shape] -> [B, U]: each unit summed over its positions (channel: pixels, feature: tokens, token: features)."""
    if t.dim() == 2:
        return t
    if axis == "channel":
        return t.flatten(2).sum(2)
    if axis == "feature":
        return t.flatten(1, -2).sum(1)
    if axis == "token":
        return t.flatten(1, -2).sum(2) if t.dim() > 3 else t.sum(2)
    raise ValueError(f"unknown unit axis {axis!r}; allowed: {', '.join(UNIT_AXES)}")


def unit_count(shape: tuple[int, ...], axis: str) -> int:
    """Units of an output of `shape` (no batch dim) on `axis`."""
    if len(shape) <= 1 or axis == "channel":
        return int(shape[0]) if shape else 1
    if axis == "feature":
        return int(shape[-1])
    n = 1
    for s in shape[:-1]:
        n *= int(s)
    return n


def expand_mask(mask: torch.Tensor, shape: tuple[int, ...] | torch.Size, axis: str) -> torch.Tensor:
    """Per-unit values [N, U] (a 0/1 mask, a noise scale) as a view that broadcasts against [N, *shape[1:]].

    shape: the activation's shape with the batch dim. A unit's value reaches every one of its positions: a
    channel at every pixel, a feature in every token, a token in every feature.
    """
    n, dims = mask.shape[0], len(shape)
    if dims == 2 or axis == "channel":
        return mask.view(n, mask.shape[1], *([1] * (dims - 2)))
    if axis == "feature":
        return mask.view(n, *([1] * (dims - 2)), mask.shape[1])
    if axis == "token":
        return mask.view(n, *shape[1:-1], 1)
    raise ValueError(f"unknown unit axis {axis!r}; allowed: {', '.join(UNIT_AXES)}")


@dataclass(frozen=True)
class LayerLayout:
    """One layer as the methods see it: its unit axis and count, output shape, module and what runs after it."""

    layer: str
    axis: str                          # channel | feature | token
    shape: tuple[int, ...]             # output shape, no batch dim
    units: int
    module: str                        # the module's class name
    order: int                         # position of the layer's first call in the forward pass
    downstream: tuple[type, ...] = ()  # module types whose forward starts after the layer returned


@dataclass
class _Seen:
    """What the capture pass saw of one layer."""

    shape: tuple[int, ...] | None = None
    problem: str | None = None
    channel_first: bool = False
    order: int = -1
    end: int = -1
    leaf: torch.Tensor | None = None  # a zero scalar requiring grad, added to the output (dependence check)


@contextmanager
def _survey(model: nn.Module, layers: list[str]) -> Iterator[tuple[dict[str, _Seen], list[tuple[int, type]]]]:
    """Hooks on every module for one forward pass: layouts of `layers`, call order, channel-first tensors."""
    seen = {l: _Seen() for l in layers}
    modules = dict(model.named_modules())
    missing = [l for l in layers if l not in modules]
    if missing:
        raise UsageError(f"layer {missing[0]!r} cannot be scored: the model has no module of that name")
    wanted: dict[int, list[str]] = {}  # module -> the names it is listed under
    for l in layers:
        wanted.setdefault(id(modules[l]), []).append(l)
    starts: list[tuple[int, type]] = []  # (call number, module type) of every forward, in order
    cf_ids: set[int] = set()
    alive: list[torch.Tensor] = []  # channel-first tensors stay referenced, so their ids are not reused
    counter = [0]
    calls = FunctionalCalls(counter, starts)  # F.relu & co. called outside leaf modules (functional_calls.py)
    leaves = {id(m) for m in modules.values() if not list(m.children())}

    def pre(_m: nn.Module, _inp: Any) -> None:
        counter[0] += 1
        starts.append((counter[0], type(_m)))
        calls.inside += id(_m) in leaves

    def post(m: nn.Module, inp: Any, out: Any) -> Any:
        counter[0] += 1
        calls.inside -= id(m) in leaves
        first_in = inp[0] if isinstance(inp, tuple) and inp and isinstance(inp[0], torch.Tensor) else None
        result = None
        names = wanted.get(id(m), [])
        t = out
        for name in names:
            s = seen[name]
            if s.order < 0:
                s.order = counter[0]
            s.end = counter[0]
            if not isinstance(out, torch.Tensor):
                s.problem = (f"it returns a {type(out).__name__}, not a tensor; score a module that returns one "
                             "tensor (e.g. one of its children)")
            elif not out.is_floating_point():
                s.problem = f"it returns {out.dtype} values (token ids?), which carry no gradient"
            elif out.dim() < 2:
                s.problem = f"its output {list(out.shape)} has no unit dimension"
            else:
                s.shape = tuple(out.shape)
                if torch.is_grad_enabled():
                    s.leaf = torch.zeros((), dtype=out.dtype, device=out.device, requires_grad=True)
                    t = result = t + s.leaf
        if isinstance(t, torch.Tensor) and t.dim() == 3:
            fed = first_in is not None and id(first_in) in cf_ids  # its input is a channel-first map
            keeps = _keeps_layout(m) or isinstance(m, nn.Linear)  # a Linear maps the last dim: the positions
            cf = isinstance(m, CHANNEL_FIRST_1D) or id(out) in cf_ids or (fed and keeps)
            if cf:
                cf_ids.add(id(t))
                alive.append(t)
                for name in names:
                    seen[name].channel_first = True
        return result

    handles = []
    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        with calls:
            yield seen, starts
    finally:
        for h in handles:
            h.remove()


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, dict[str, LayerLayout]]] = weakref.WeakKeyDictionary()


def _frozen_choice(units: UnitsChoice) -> Any:
    return units if isinstance(units, str) else tuple(sorted(units.items()))


def layer_layouts(model: nn.Module, layers: list[str], example: torch.Tensor, units: UnitsChoice = "auto"
                  ) -> dict[str, LayerLayout]:
    """The layout of each layer (module doc), from one forward and backward pass on `example` [1, ...].

    UsageError (one line, naming the layer and why) for a layer that cannot be scored. Cached per model, layers,
    input shape and dtype, and unit choice.
    """
    key = (tuple(layers), tuple(example.shape[1:]), example.dtype, str(example.device), _frozen_choice(units))
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _layouts(model, layers, example[:1], units)
    return per_model[key]


def _layouts(model: nn.Module, layers: list[str], example: torch.Tensor, units: UnitsChoice) -> dict[str, LayerLayout]:
    from neuronimp.hooks import frozen

    modules = dict(model.named_modules())
    with frozen(model), _survey(model, layers) as (seen, starts), torch.enable_grad():
        out = model(example)
        for l in layers:
            if seen[l].order < 0:
                raise UsageError(f"layer {l!r} cannot be scored: the forward pass never reaches it (an unused "
                                 "branch, or a head the model skips in eval mode)")
            if seen[l].problem:
                raise UsageError(f"layer {l!r} cannot be scored: {seen[l].problem}")
        logits = out if isinstance(out, torch.Tensor) else None
        if logits is not None and logits.requires_grad:
            leaves = [seen[l].leaf for l in layers]
            grads = torch.autograd.grad(logits.sum(), leaves, allow_unused=True)
        else:  # nothing before the output requires grad: no layer reaches it
            grads = [None] * len(layers)
        for l, g in zip(layers, grads):
            if g is None and logits is not None:
                raise UsageError(f"layer {l!r} cannot be scored: the model's output does not depend on it")
    result = {}
    for l in layers:
        s = seen[l]
        axis = unit_axis(modules[l], s.shape, choice_for(units, l), s.channel_first, l)
        down = tuple(dict.fromkeys(t for n, t in starts if n > s.end))
        result[l] = LayerLayout(l, axis, s.shape[1:], unit_count(s.shape[1:], axis), type(modules[l]).__name__,
                                s.order, down)
    return result


def describe_layers(model: nn.Module, layers: list[str], example: torch.Tensor
                    ) -> dict[str, tuple[tuple[int, ...], int, str, str | None]]:
    """{layer: (output shape without batch, units, auto axis, problem or None)} for the layers the forward pass
    reaches (no gradients; nothing refused): what `neuronimp layers` prints."""
    modules = dict(model.named_modules())
    with _survey(model, layers) as (seen, _), torch.no_grad():
        model(example)
    out = {}
    for l in layers:
        s = seen[l]
        if s.order < 0:
            continue
        if s.problem or s.shape is None:
            out[l] = ((), 0, "", s.problem)
            continue
        axis = unit_axis(modules[l], s.shape, "auto", s.channel_first, l)
        out[l] = (s.shape[1:], unit_count(s.shape[1:], axis), axis, None)
    return out
