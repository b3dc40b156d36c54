"""A model of the user's own: `user:package.module:function` (the function returns an nn.Module or a bundle).

User code is made explicit: the `user:` prefix says "this imports and runs my code". The older form
`package.module:function` keeps working, and is announced like the explicit one (`user_code_notice`). Modules
of Python's standard library (`os:system`) and of neuronimp itself are refused as model factories, before
anything is imported; a module that fails to import (a syntax error, an exception) is one line.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from typing import Any

import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.models.bundle import ModelBundle, checkpoint_module
from neuronimp.models.canonical import is_activation
from neuronimp.models.weights import load_weights

USER_PREFIX = "user:"
FORM = "'user:package.module:function'"


def parse_user_spec(spec: str) -> tuple[str, str, bool]:
    """(module, attribute, explicit) of `user:package.module:function` or the older `package.module:function`.

    UsageError, without importing anything, for a malformed name, a standard-library module or a neuronimp one.
    """
    explicit = spec.startswith(USER_PREFIX)
    body = spec[len(USER_PREFIX):] if explicit else spec
    module_name, _, attr = body.partition(":")
    if not module_name or not attr or ":" in attr:
        raise UsageError(f"model {spec!r}: a user model is written {FORM}")
    if not all(part.isidentifier() for part in module_name.split(".")) or \
            not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(f"model {spec!r}: {module_name}:{attr} is not a dotted module path and attribute; "
                         f"a user model is written {FORM}")
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names:
        raise UsageError(f"model {spec!r}: {module_name!r} is part of Python's standard library, not a model "
                         f"factory; a user model is written {FORM} with a module of your own")
    if top == "neuronimp":
        raise UsageError(f"model {spec!r}: {module_name!r} is part of neuronimp; use a registered model name "
                         "(neuronimp models lists them) instead of its module path")
    return module_name, attr, explicit


def user_code_notice(name: str) -> str | None:
    """'imports user code: package.module' for a user model name (None for registered and timm models).

    The older form without `user:` adds how to make it explicit. Raises UsageError for a refused name.
    """
    if ":" not in name or name.startswith("timm/"):
        return None
    module_name, attr, explicit = parse_user_spec(name)
    note = f"model {name!r} imports user code: {module_name}"
    return note if explicit else note + f" (write 'user:{module_name}:{attr}' to say so explicitly)"


def announce_user_code(name: str, where: str = "model.name") -> str | None:
    """Check a model name as `validate` does (no import) and warn `user_code_notice(name)`; the notice or None."""
    try:
        note = user_code_notice(name)
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    if note is not None:
        warnings.warn(note, stacklevel=2)
    return note


def _import_user_module(spec: str, module_name: str) -> Any:
    """Import the user's module; every failure (missing, syntax error, an exception while importing) is one line."""
    try:
        return importlib.import_module(module_name)
    except SyntaxError as err:
        where = f"{err.filename}:{err.lineno}" if err.filename else module_name
        raise UsageError(f"model {spec!r}: {where}: syntax error ({err.msg}); fix the module "
                         f"{module_name!r}") from None
    except ImportError as err:
        raise UsageError(f"model {spec!r}: cannot import {module_name!r} ({err}); "
                         "is its folder on PYTHONPATH (or the package installed)?") from err
    except Exception as err:  # user code raising while it is imported
        text = " ".join(str(err).split())[:200]
        raise UsageError(f"model {spec!r}: importing {module_name!r} raised {type(err).__name__}: {text}") from err


def import_entry(spec: str) -> Any:
    """Import `[user:]package.module:attr` (attr may be dotted) and return the attribute; refusals come first."""
    module_name, attr, _ = parse_user_spec(spec)
    obj: Any = _import_user_module(spec, module_name)
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
    """Call the user's `[user:]package.module:function(**options)`; wrap an nn.Module (option input_shape required).

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
