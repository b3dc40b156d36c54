"""Deterministic shards and resumable, kill-safe batch execution.

Work is a list of items (input indices, or study cells). `--shard i/N` keeps the items whose position is
i mod N. Items run in batches; each finished batch is written atomically as its own part file, so a
`kill -9` at any moment loses at most the batch in flight and never leaves a half-written row. A re-run
skips the parts that exist; a manifest makes sure the parts were made by the same config and items.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.errors import UsageError
from neuronimp.runner.io import write_table, write_text
from neuronimp.runner.progress import progress


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
        return "" if self.count == 1 else f".shard-{self.index:04d}-of-{self.count:04d}"


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (config + items) for the resume manifest."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_batches(
    items: Sequence[Any],
    work: Callable[[list[Any]], list[dict[str, Any]]],
    parts_dir: Path,
    batch_size: int,
    key: Any,
    *,
    desc: str = "",
    show: bool = True,
    unit: str = "it",
) -> pd.DataFrame:
    """Run `work` over `items` in batches, resuming from the part files in `parts_dir`."""
    parts_dir = Path(parts_dir)
    manifest = parts_dir / "manifest.json"
    stamp = {"key": fingerprint(key), "items": fingerprint(list(items)), "batch_size": batch_size}
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old != stamp:
            raise UsageError(f"{parts_dir} holds partial results of a different config or input set; "
                             "remove it or choose another runner.out")
    else:
        write_text(manifest, json.dumps(stamp) + "\n")
    batches = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    done = sum(1 for b in range(len(batches)) if (parts_dir / f"batch-{b:06d}.csv").exists())
    bar = progress(total=len(items), desc=desc, show=show, unit=unit)
    try:
        for b, chunk in enumerate(batches):
            part = parts_dir / f"batch-{b:06d}.csv"
            if not part.exists():
                rows = work(chunk)
                write_table(pd.DataFrame(rows), part)
            bar.update(len(chunk))
    finally:
        bar.close()
    frames = []
    for b in range(len(batches)):
        part = parts_dir / f"batch-{b:06d}.csv"
        if part.stat().st_size > 1:
            frames.append(pd.read_csv(part))
    if done and show:
        bar.write(f"resumed: {done} of {len(batches)} batches were already done")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
