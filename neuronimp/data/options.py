"""Typed data options: each loader declares its options in its signature, with ranges; checked up front.

A loader writes `test_fraction: Annotated[float, Gt(0), Lt(1)] = 0.2`; `check_data_options` reads the
annotations (typing.get_type_hints), validates every given option with a strict pydantic TypeAdapter (no
'abc' -> number, no True -> 1, no 3.0 -> int, no NaN in a range) and turns the first problem into one line:

    data.options.test_fraction = 'abc': expected a number in (0, 1); allowed options of digits: test_fraction, seed, ...

so `neuronimp validate` refuses a bad option before any file is read or any model is built.
"""
from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import TypeAdapter, ValidationError

from neuronimp.errors import UsageError, shown, unknown

# the options every data set accepts (applied by load_data after the loader; see corrupt_labels)
CorruptFraction = Annotated[float, Ge(0), Le(1)]
Seed = Annotated[int, Ge(0)]
Count = Annotated[int, Ge(0)]


def corruption_options(*, corrupt: CorruptFraction = 0.0, corrupt_seed: Seed = 0,
                       corrupt_mode: Literal["uniform", "different"] = "uniform") -> None:
    """The label-corruption options shared by every data set (a signature only: read by `option_types`)."""


@functools.lru_cache(maxsize=None)
def option_types(fn: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """Option name -> (annotation, default) of a loader's keyword arguments, annotations resolved."""
    hints = typing.get_type_hints(fn, include_extras=True)
    params = inspect.signature(fn).parameters
    return {name: (hints.get(name, Any), p.default) for name, p in params.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _bounds(meta: Sequence[Any]) -> str:
    """' in (0, 1)', ' >= 0', ' in 0..9' ... from annotated_types constraints ('' when none)."""
    lo = hi = None
    for m in meta:
        if isinstance(m, Gt):
            lo = ("(", m.gt)
        elif isinstance(m, Ge):
            lo = ("[", m.ge)
        elif isinstance(m, Lt):
            hi = (")", m.lt)
        elif isinstance(m, Le):
            hi = ("]", m.le)
    if lo and hi:
        return f" in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
    if lo:
        return f" {'>' if lo[0] == '(' else '>='} {lo[1]:g}"
    if hi:
        return f" {'<' if hi[0] == ')' else '<='} {hi[1]:g}"
    return ""


def describe(annotation: Any) -> str:
    """An option's type in words: 'a number in (0, 1)', 'an integer >= 0 or null', "one of 'a', 'b'"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, meta = args[0], args[1:]
        bounds = _bounds(meta)
        if base is int and bounds.startswith(" in ") and all(isinstance(m, (Ge, Le)) for m in meta):
            lo = next(m.ge for m in meta if isinstance(m, Ge))
            hi = next(m.le for m in meta if isinstance(m, Le))
            return f"an integer in {lo}..{hi}"
        return describe(base) + bounds
    if origin in (typing.Union, types.UnionType):
        parts = list(dict.fromkeys(describe(a) for a in args if a is not type(None)))
        if "a path" in parts and "a string" in parts:  # str | Path: a path, given as text or a Path
            parts.remove("a string")
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if annotation is Path:
        return "a path"
    if origin in (Sequence, list, tuple):
        return "a list of strings" if args == (str,) else "a list"
    if origin is Callable or annotation is Callable:
        return "a function (Python API only)"
    return getattr(annotation, "__name__", str(annotation))


def loader_options(name: str) -> dict[str, tuple[Any, Any]]:
    """Option name -> (annotation, default) accepted by data set `name`: its loader's and the corruption ones."""
    from neuronimp.data.bundle import DATASETS

    return {**option_types(DATASETS.get(name, where="data.name")), **option_types(corruption_options)}


def check_data_options(name: str, options: dict[str, Any], where: str = "data.options") -> dict[str, Any]:
    """Validate `options` of data set `name` against the loader's annotations; the checked values, or UsageError.

    One line per problem: an unknown option (with the allowed ones and the closest match), or
    "data.options.test_fraction = 'abc': expected a number in (0, 1); allowed options of digits: ...".
    """
    from neuronimp.data.bundle import DATASETS

    canonical = DATASETS.canonical(name, where="data.name")
    declared = loader_options(canonical)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in declared:
            raise unknown("option", key, declared, where=f"{where} of {canonical}")
        annotation = declared[key][0]
        if annotation is Any:
            out[key] = value
            continue
        try:
            out[key] = _adapter(annotation).validate_python(value, strict=True)
        except ValidationError:
            raise UsageError(f"{where}.{key} = {shown(value)}: expected {describe(annotation)}; "
                             f"allowed options of {canonical}: {', '.join(declared)}") from None
    return out
