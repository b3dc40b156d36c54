"""Every temporary change to a model, as a context manager undone in `finally`.

PyTorch hooks are global state on the module (TransformerLens's warning): nothing here leaves a hook, a
flag or a changed `requires_grad` behind, even when the body raises.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path `name` (already resolved; see models.resolve_layer)."""
    return model.get_submodule(name)


@contextmanager
def capture(model: nn.Module, layers: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output tensor of each layer on every forward (the last call wins).

    The recorded tensors stay in the autograd graph, so `torch.autograd.grad(F, [out[l] ...])` gives
    dF/dy for each layer from one backward pass.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(out).__name__}, not a tensor")
            outputs[name] = out

        return hook

    try:
        for name in layers:
            handles.append(get_module(model, name).register_forward_hook(make(name)))
        yield outputs
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replace_output(model: nn.Module, layer: str, value: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, the output y of `layer` is replaced by `value(y)` (the hook fallback of the probe)."""
    handle = get_module(model, layer).register_forward_hook(lambda _m, _i, out: value(out))
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Parameters take no gradients inside the block (restored afterwards); the model is put in eval mode."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]  # each module's own flag: a wrapper may differ
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
        for m, flag in modes:
            m.training = flag


@contextmanager
def module_attrs(modules: dict[nn.Module, dict[str, Any]]) -> Iterator[None]:
    """Set attributes on modules (e.g. Captum's LRP `rule`) and restore or delete them afterwards."""
    missing = object()
    saved = [(m, k, getattr(m, k, missing)) for m, attrs in modules.items() for k in attrs]
    try:
        for m, attrs in modules.items():
            for k, v in attrs.items():
                setattr(m, k, v)
        yield
    finally:
        for m, k, old in saved:
            if old is missing:
                if hasattr(m, k):
                    delattr(m, k)
            else:
                setattr(m, k, old)


@contextmanager
def not_inplace(model: nn.Module) -> Iterator[None]:
    """Every module's `inplace` flag off inside the block (restored afterwards): an in-place ReLU would overwrite
    the activation a hook records at the layer before it."""
    flags = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    try:
        for m in flags:
            m.inplace = False
        yield
    finally:
        for m in flags:
            m.inplace = True


class StopForward(Exception):
    """Raised by a hook to end a forward pass early once the wanted activation is recorded."""


@contextmanager
def stop_after(model: nn.Module, layer: str) -> Iterator[dict[str, torch.Tensor]]:
    """Record `layer`'s output and abort the forward there (callers catch StopForward)."""
    box: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        box["out"] = out
        raise StopForward

    handle = get_module(model, layer).register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


@contextmanager
def no_new_attrs(model: nn.Module) -> Iterator[None]:
    """Delete any attribute a library adds to the model's modules (Captum's LRP leaves `rule`, `activations`)."""
    before = {m: set(vars(m)) for m in model.modules()}
    try:
        yield
    finally:
        for m, keys in before.items():
            for k in set(vars(m)) - keys:
                delattr(m, k)


@contextmanager
def swap_module(model: nn.Module, name: str, new: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put `new` at dotted path `name` (the old module is put back afterwards)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    try:
        yield new
    finally:
        setattr(parent, child, old)
