"""Layers of a bundle: resolve a paper alias or module path, list the interesting layers with their units."""
from __future__ import annotations

import torch
from torch import nn

from neuronimp.errors import UsageError, closest
from neuronimp.errors import shown as shown_name
from neuronimp.models.bundle import LayerInfo, ModelBundle
from neuronimp.models.canonical import evaluating

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def is_container(module: nn.Module) -> bool:
    """A block container: its children are listed as layers (Sequential/ModuleList/ModuleDict, or opted in)."""
    return isinstance(module, _CONTAINERS) or bool(getattr(module, "is_block_container", False))


def interesting_layers(model: nn.Module) -> list[str]:
    """Children of the top model and of top-level block containers, in registration order."""
    names: list[str] = []
    for name, child in model.named_children():
        names.append(name)
        if is_container(child):
            names.extend(f"{name}.{sub}" for sub, _ in child.named_children())
    return names


def resolve_layer(bundle: ModelBundle, layer: str) -> str:
    """Alias (paper name) or module path -> module path; UsageError lists the addressable layers."""
    paths = [n for n, _ in bundle.model.named_modules() if n]
    if layer in bundle.layer_aliases:
        return bundle.layer_aliases[layer]
    if layer in paths:
        return layer
    folded = {k.lower(): v for k, v in bundle.layer_aliases.items()} | {p.lower(): p for p in paths}
    if str(layer).lower() in folded:
        return folded[str(layer).lower()]
    top = interesting_layers(bundle.model)
    rest = [p for p in paths if p not in set(top)]
    aliases = [f"{a} (= {p})" for a, p in bundle.layer_aliases.items()]
    shown = top + aliases
    listing = ", ".join(shown[:40])
    if rest or len(shown) > 40:
        listing += f", ... or any of the {len(paths)} module paths"
    hint = closest(layer, list(bundle.layer_aliases) + paths)
    msg = f"unknown layer {shown_name(layer)} for model {bundle.name!r}; allowed: {listing}"
    raise UsageError(msg + (f" (did you mean {hint!r}?)" if hint else ""))


def example_input(bundle: ModelBundle, batch: int = 1) -> torch.Tensor:
    """A zero input batch for `bundle.model`, on the model's device and in its float dtype."""
    param = next(iter(bundle.model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.get_default_dtype()
    return torch.zeros((batch, *bundle.input_shape), device=device, dtype=dtype)


def _first_tensor(out: object) -> torch.Tensor | None:
    """The tensor output of a module, or the first tensor of a tuple/list output."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return None


def layer_shapes(bundle: ModelBundle, paths: list[str]) -> tuple[dict[str, tuple[int, ...]], torch.Tensor | None]:
    """Output shape (no batch dim) of each module path on one zero input, and the logits; a path the
    forward pass never reaches is missing from the dict."""
    modules = dict(bundle.model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for path in dict.fromkeys(paths):
        def record(module: nn.Module, args: object, out: object, path: str = path) -> None:
            t = _first_tensor(out)
            if t is not None and path not in shapes:
                shapes[path] = tuple(t.shape[1:])
        hooks.append(modules[path].register_forward_hook(record))
    try:
        with torch.no_grad(), evaluating(bundle.model):
            logits = _first_tensor(bundle.model(example_input(bundle)))
    finally:
        for h in hooks:
            h.remove()
    return shapes, logits


def list_layers(bundle: ModelBundle) -> list[LayerInfo]:
    """Interesting layers with alias, output shape, unit axis and units, from one zero example run with forward hooks.

    The axis is the default one (`methods.units.unit_axis`): channel for conv maps (and conv1d maps [C, L]), feature
    for [tokens, features] and dense outputs. A layer that returns a tuple or integers is listed with its problem;
    layers the forward pass never reaches are left out.
    """
    from neuronimp.methods.units import describe_layers

    names = interesting_layers(bundle.model)
    with evaluating(bundle.model):
        found = describe_layers(bundle.model, names, example_input(bundle))
    alias_of: dict[str, str] = {}
    for alias, path in bundle.layer_aliases.items():
        alias_of.setdefault(path, alias)
    return [LayerInfo(n, alias_of.get(n), *found[n]) for n in names if n in found]
