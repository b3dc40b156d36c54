"""A model of the user's own, named `package.module:function` (the function returns an nn.Module or a bundle)."""
from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.models.bundle import ModelBundle, checkpoint_module
from neuronimp.models.canonical import is_activation
from neuronimp.models.weights import load_weights


def import_entry(spec: str) -> Any:
    """Import `package.module:attr` (attr may be dotted) and return the attribute."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"model {spec!r}: a user model is written 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"model {spec!r}: cannot import {module_name!r} ({err}); "
                         "is its folder on PYTHONPATH (or the package installed)?") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"model {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"model {spec!r}: {attr!r} is not callable")
    return obj


def _accepts(fn: Any, name: str) -> bool:
    """True when `fn` takes a keyword argument `name` (or **kwargs)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def guess_default_layer(model: nn.Module) -> str:
    """The last activation module, else the second-to-last top-level child (the layer before the head)."""
    acts = [n for n, m in model.named_modules() if n and is_activation(m)]
    if acts:
        return acts[-1]
    children = [n for n, _ in model.named_children()]
    return children[-2] if len(children) > 1 else (children[0] if children else "")


def user_model(spec: str, weights: str = "none", num_classes: int | None = None, **options: Any) -> ModelBundle:
    """Call the user's `package.module:function(**options)`; wrap an nn.Module (option input_shape required).

    Options read here, not passed on: input_shape, default_layer, layer_aliases. num_classes is passed on when
    the function takes it; else it is read from the output of one forward.
    """
    fn = import_entry(spec)
    input_shape = options.pop("input_shape", None)
    default_layer = options.pop("default_layer", None)
    aliases = dict(options.pop("layer_aliases", None) or {})
    if num_classes is not None and _accepts(fn, "num_classes"):
        options["num_classes"] = num_classes
    try:
        inspect.signature(fn).bind(**options)
    except TypeError as err:
        raise UsageError(f"model {spec!r}: bad options {sorted(options)}: {err}") from err
    except ValueError:  # builtins without a signature: let the call decide
        pass
    made = fn(**options)
    if isinstance(made, ModelBundle):
        bundle = made
    elif isinstance(made, nn.Module):
        if input_shape is None:
            raise UsageError(f"model {spec!r} returns an nn.Module: give option input_shape "
                             "(one example, no batch dim, e.g. [3, 224, 224])")
        shape = tuple(int(s) for s in input_shape)
        if num_classes is None:
            param = next(made.parameters(), None)
            dtype = param.dtype if param is not None and param.is_floating_point() else None
            made.eval()
            with torch.no_grad():
                num_classes = int(made(torch.zeros(1, *shape, dtype=dtype)).shape[-1])
        bundle = ModelBundle(model=made, name=spec, num_classes=num_classes, input_shape=shape,
                             layer_aliases=aliases, default_layer=default_layer or guess_default_layer(made))
    else:
        raise UsageError(f"model {spec!r} returned {type(made).__name__}; expected an nn.Module or a ModelBundle")
    load_weights(checkpoint_module(bundle), weights, None, name=spec)
    return bundle
