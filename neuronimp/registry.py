"""Name -> callable registries (models, datasets, methods, studies) with "did you mean" errors.

The CLI takes its choices from here, so a name is valid exactly when something is registered under it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from neuronimp.errors import unknown

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A mapping from names (and aliases) to callables, filled by the `register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, F] = {}
        self._help: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = (), help: str = "") -> Callable[[F], F]:
        """Decorator: register `fn` under `name` (and its aliases)."""

        def deco(fn: F) -> F:
            if name in self._items or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            doc_lines = (fn.__doc__ or "").strip().splitlines()
            self._help[name] = help or (doc_lines[0] if doc_lines else "")
            for a in aliases:
                self._aliases[a] = name
            return fn

        return deco

    def canonical(self, name: str, where: str = "") -> str:
        """Resolve an alias to its registered name, or raise UsageError listing the names."""
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise unknown(self.kind, name, self.names(), where)

    def get(self, name: str, where: str = "") -> F:
        """Return the callable registered under `name` (or an alias of it)."""
        return self._items[self.canonical(name, where)]

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def names(self) -> list[str]:
        """Registered names, sorted (aliases excluded)."""
        return sorted(self._items)

    def describe(self, name: str) -> str:
        """One-line help for `name`."""
        return self._help.get(self.canonical(name), "")
