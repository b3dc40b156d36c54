"""Deterministic shards and resumable, kill-safe batch execution.

Work is a list of items (input indices, or study cells). `--shard i/N` keeps the items whose position is
i mod N. Items run in batches; each finished batch is written atomically as its own part file
(`parts/<table><tag>/batch-000007.csv`), so a `kill -9` at any moment loses at most the batch in flight and
never leaves a half-written row. A re-run skips the parts that exist; `manifest.json` makes sure they were
made by the same config, the same items and the same batch size. The table is always rebuilt from the part
files read back from disk, so a resumed run writes the same bytes as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.errors import UsageError
from neuronimp.runner.io import read_table, remove_stale_temps, write_table, write_text
from neuronimp.runner.progress import progress

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# runner settings that change where and how visibly a run goes, never its rows: ignored for resuming
NON_RESULT_RUNNER_KEYS = ("out", "progress", "num_workers", "parallel", "slurm", "format", "threads")


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


def resume_key(key: Any) -> Any:
    """`key` without the runner settings that cannot change rows (out, progress, launcher settings)."""
    if isinstance(key, dict) and isinstance(key.get("runner"), dict):
        runner = {k: v for k, v in key["runner"].items() if k not in NON_RESULT_RUNNER_KEYS}
        return {**key, "runner": runner}
    return key


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (config + items) for the resume manifest."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def part_path(parts_dir: Path, b: int) -> Path:
    """The part file of batch `b`."""
    return Path(parts_dir) / f"batch-{b:06d}.csv"


def make_stamp(items: Sequence[Any], batch_size: int, key: Any) -> dict[str, Any]:
    """What the manifest records: which config, which items, how they were batched."""
    return {"version": MANIFEST_VERSION, "key": fingerprint(resume_key(key)), "items": fingerprint(list(items)),
            "n_items": len(items), "batch_size": batch_size}


def read_manifest(parts_dir: Path) -> dict[str, Any] | None:
    """The manifest of a parts folder, or None when there is none."""
    manifest = Path(parts_dir) / MANIFEST
    if not manifest.exists():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{manifest} is unreadable; delete {parts_dir} to start that table afresh") from None


def check_parts(parts_dir: Path, stamp: dict[str, Any]) -> bool:
    """Check that a parts folder was made by the same run; True when it has its manifest already."""
    parts_dir = Path(parts_dir)
    old = read_manifest(parts_dir)
    if old is None:
        if parts_dir.is_dir() and any(parts_dir.glob("batch-*.csv")):
            raise UsageError(f"{parts_dir} holds part files but no {MANIFEST}; delete it (or choose another "
                             "runner.out) to start afresh")
        return False
    if old != stamp:
        what = {"key": "config", "items": "input set (data, limit or shard)", "batch_size": "batch size",
                "n_items": "input set (data, limit or shard)", "version": "manifest version"}
        differ = sorted({what.get(k, k) for k in set(old) | set(stamp) if old.get(k) != stamp.get(k)})
        raise UsageError(f"{parts_dir} holds partial results of a different {' and '.join(differ)}; "
                         "re-run with the same config and --shard, or remove that folder or choose another "
                         "runner.out")
    return True


@dataclass(frozen=True)
class PartsStatus:
    """How far a parts folder has got."""

    batches_done: int
    batches: int
    items_done: int
    items: int


def parts_status(parts_dir: Path) -> PartsStatus:
    """Finished and total batches and items of a parts folder, from its manifest and part files."""
    stamp = read_manifest(parts_dir) or {}
    n_items, bs = int(stamp.get("n_items", 0)), max(1, int(stamp.get("batch_size", 1)))
    n_batches = -(-n_items // bs)
    done = [b for b in range(n_batches) if part_path(parts_dir, b).exists()]
    items_done = sum(min(bs, n_items - b * bs) for b in done)
    return PartsStatus(len(done), n_batches, items_done, n_items)


def read_parts(parts_dir: Path, n_batches: int) -> pd.DataFrame:
    """Concatenate the part files 0..n_batches-1 in order; empty parts contribute zero rows."""
    frames = []
    for b in range(n_batches):
        part = part_path(parts_dir, b)
        try:
            df = read_table(part)
        except UsageError:
            raise UsageError(f"part file {part} is corrupt; delete it and re-run to redo that batch") from None
        if len(df):
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    """Run `work` over `items` in batches, resuming from the part files in `parts_dir`.

    `key` identifies the run (the resolved config as a dict); runner settings that cannot change the rows
    are left out of it (see `resume_key`). Returns the rows of all batches, read back from the part files.
    """
    parts_dir = Path(parts_dir)
    items = list(items)
    stamp = make_stamp(items, batch_size, key)
    has_manifest = check_parts(parts_dir, stamp)
    if has_manifest:
        remove_stale_temps(parts_dir)  # left by a batch that was being written when the process was killed
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    done = [b for b in range(len(batches)) if part_path(parts_dir, b).exists()]
    bar = progress(total=len(items), desc=desc, show=show, unit=unit)
    try:
        if done:
            n_done = sum(len(batches[b]) for b in done)
            bar.n = bar.last_print_n = bar.initial = n_done  # the rate counts only this run's items
            bar.refresh()
            bar.write(f"resuming {parts_dir}: {len(done)} of {len(batches)} batches already done", file=sys.stderr)
        for b, chunk in enumerate(batches):
            part = part_path(parts_dir, b)
            if part.exists():
                continue
            rows = work(chunk)
            if not has_manifest:  # written with the first finished batch: a run that fails early leaves nothing
                write_text(parts_dir / MANIFEST, json.dumps(stamp, sort_keys=True) + "\n")
                has_manifest = True
            write_table(pd.DataFrame(rows), part)
            bar.update(len(chunk))
    finally:
        bar.close()
    return read_parts(parts_dir, len(batches))
