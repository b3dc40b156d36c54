"""Deterministic shards: `--shard i/N` keeps the work items whose position is i mod N (runner/parts.py runs
them resumably)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from neuronimp.errors import UsageError


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """Parse 'i/N' (0 <= i < N)."""
        if not text:
            return cls()
        try:
            i, n = (int(p) for p in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected i/N with integers, e.g. --shard 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise UsageError(f"--shard {text!r}: need 0 <= i < N and N >= 1")
        return cls(i, n)

    def select(self, items: Sequence[Any]) -> list[Any]:
        """The items of this shard, in order."""
        return [it for k, it in enumerate(items) if k % self.count == self.index]

    @property
    def tag(self) -> str:
        """The file-name tag of this shard: '' for an unsharded run, else '.shard-0001-of-0004'."""
        return "" if self.count == 1 else f".shard-{self.index:04d}-of-{self.count:04d}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
