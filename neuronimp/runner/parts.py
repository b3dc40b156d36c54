"""Resumable, kill-safe batch execution with one part file per (batch, table), each checksummed.

Items run in batches; a finished batch writes each of its tables as `parts/<run>/batch-000007.<table>.csv`
(atomically), then its record `batch-000007.json` with every part's row count, size and SHA-256. A batch
counts as done only when its record exists, so a `kill -9` loses at most the batch in flight; a re-run skips
done batches after verifying their parts (a truncated or altered part is refused with one line naming it).
`manifest.json` ties the folder to one run key, item list and batch size. Tables are always rebuilt from the
parts read back from disk, so a resumed run writes the same bytes as an uninterrupted one; the in-memory
run (`run_memory`, the Python API) sends each batch through the same CSV round trip, so it returns the same
frames as the command line.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.digest import file_digest, fingerprint
from neuronimp.errors import UsageError
from neuronimp.runner.io import read_table, remove_stale_temps, write_table, write_text
from neuronimp.runner.progress import progress
from neuronimp.studies.tabulate import round_trip

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
Work = Callable[[list[Any]], dict[str, list[dict[str, Any]]]]


def record_path(parts_dir: Path, b: int) -> Path:
    """The record of batch `b` (written last: its presence means the batch is done)."""
    return Path(parts_dir) / f"batch-{b:06d}.json"


def part_path(parts_dir: Path, b: int, table: str) -> Path:
    """The part file of table `table` in batch `b`."""
    return Path(parts_dir) / f"batch-{b:06d}.{table}.csv"


def make_stamp(items: Sequence[Any], batch_size: int, key: Any) -> dict[str, Any]:
    """What the manifest records: which run, which items, how they were batched."""
    return {"version": MANIFEST_VERSION, "key": fingerprint(key), "items": fingerprint(list(items)),
            "n_items": len(items), "batch_size": batch_size}


def read_manifest(parts_dir: Path) -> dict[str, Any] | None:
    """The manifest of a parts folder, or None when there is none."""
    manifest = Path(parts_dir) / MANIFEST
    if not manifest.exists():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{manifest} is unreadable; delete {parts_dir} to start that run afresh") from None


def check_parts(parts_dir: Path, stamp: dict[str, Any]) -> bool:
    """Check that a parts folder was made by the same run; True when it has its manifest already."""
    parts_dir = Path(parts_dir)
    old = read_manifest(parts_dir)
    if old is None:
        if parts_dir.is_dir() and any(parts_dir.glob("batch-*")):
            raise UsageError(f"{parts_dir} holds part files but no {MANIFEST}; delete it (or choose another "
                             "runner.out) to start afresh")
        return False
    if old != stamp:
        what = {"key": "config", "items": "input set (data, limit or shard)", "batch_size": "batch size",
                "n_items": "input set (data, limit or shard)", "version": "part-file format"}
        differ = sorted({what.get(k, k) for k in set(old) | set(stamp) if old.get(k) != stamp.get(k)})
        raise UsageError(f"{parts_dir} holds partial results of a different {' and '.join(differ)}; "
                         "re-run with the same config and --shard, or remove that folder or choose another "
                         "runner.out")
    return True


def read_record(parts_dir: Path, b: int) -> dict[str, Any] | None:
    """The record of a done batch, or None when the batch is not done."""
    path = record_path(parts_dir, b)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{path} is unreadable; delete it to redo that batch") from None


def verify_batch(parts_dir: Path, b: int, record: dict[str, Any]) -> None:
    """Refuse a done batch whose part files are missing, truncated or altered (size and SHA-256)."""
    for table, want in record.get("tables", {}).items():
        part = part_path(parts_dir, b, table)
        if not part.is_file():
            raise UsageError(f"part file {part} is missing; delete {record_path(parts_dir, b).name} in that "
                             "folder to redo the batch")
        if part.stat().st_size != want["bytes"] or file_digest(part) != want["sha256"]:
            raise UsageError(f"part file {part} was truncated or altered (size or SHA-256 differs from its "
                             f"record); delete it and {record_path(parts_dir, b).name} to redo that batch")


def write_batch(parts_dir: Path, b: int, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Write every table's part of batch `b`, then the batch record with their checksums."""
    record: dict[str, Any] = {"batch": b, "tables": {}}
    for table, rows in tables.items():
        path = write_table(pd.DataFrame(rows), part_path(parts_dir, b, table))
        record["tables"][table] = {"rows": len(rows), "bytes": path.stat().st_size, "sha256": file_digest(path)}
    write_text(record_path(parts_dir, b), json.dumps(record, sort_keys=True) + "\n")


@dataclass(frozen=True)
class PartsStatus:
    """How far a parts folder has got."""

    batches_done: int
    batches: int
    items_done: int
    items: int


def parts_status(parts_dir: Path) -> PartsStatus:
    """Finished and total batches and items of a parts folder, from its manifest and batch records."""
    stamp = read_manifest(parts_dir) or {}
    n_items, bs = int(stamp.get("n_items", 0)), max(1, int(stamp.get("batch_size", 1)))
    n_batches = -(-n_items // bs)
    done = [b for b in range(n_batches) if record_path(parts_dir, b).exists()]
    items_done = sum(min(bs, n_items - b * bs) for b in done)
    return PartsStatus(len(done), n_batches, items_done, n_items)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    kept = [f for f in frames if len(f)]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


def read_parts(parts_dir: Path, n_batches: int, tables: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Every table concatenated over batches 0..n_batches-1 in order (empty parts add no rows)."""
    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in tables}
    for b in range(n_batches):
        record = read_record(parts_dir, b) or {"tables": {}}
        for t in record["tables"]:
            frames.setdefault(t, []).append(read_table(part_path(parts_dir, b, t)))
    return {t: _concat(fs) for t, fs in frames.items()}


def _batches(items: Sequence[Any], batch_size: int) -> list[list[Any]]:
    items = list(items)
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def run_memory(items: Sequence[Any], work: Work, batch_size: int, tables: Sequence[str], *, desc: str = "",
               show: bool = False, unit: str = "it") -> dict[str, pd.DataFrame]:
    """Run `work` over `items` in batches in memory; the frames equal what `run_parts` reads back."""
    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in tables}
    bar = progress(total=len(items), desc=desc, show=show, unit=unit)
    try:
        for chunk in _batches(items, batch_size):
            for t, rows in work(chunk).items():
                frames.setdefault(t, []).append(round_trip(rows))
            bar.update(len(chunk))
    finally:
        bar.close()
    return {t: _concat(fs) for t, fs in frames.items()}


def run_parts(items: Sequence[Any], work: Work, parts_dir: Path, batch_size: int, key: Any, tables: Sequence[str],
              *, desc: str = "", show: bool = True, unit: str = "it") -> dict[str, pd.DataFrame]:
    """Run `work` over `items` in batches, resuming from (and verifying) the parts in `parts_dir`.

    `key` identifies the run (see `driver.run_key`). Returns every table, read back from the part files.
    """
    parts_dir = Path(parts_dir)
    stamp = make_stamp(items, batch_size, key)
    has_manifest = check_parts(parts_dir, stamp)
    if has_manifest:
        remove_stale_temps(parts_dir)  # left by a write that was in flight when the process was killed
    batches = _batches(items, batch_size)
    done = []
    for b in range(len(batches)):
        record = read_record(parts_dir, b)
        if record is not None:
            verify_batch(parts_dir, b, record)
            done.append(b)
    bar = progress(total=len(items), desc=desc, show=show, unit=unit)
    try:
        if done:
            bar.n = bar.last_print_n = bar.initial = sum(len(batches[b]) for b in done)  # rate: this run only
            bar.refresh()
            bar.write(f"resuming {parts_dir}: {len(done)} of {len(batches)} batches already done", file=sys.stderr)
        for b, chunk in enumerate(batches):
            if b in done:
                continue
            rows = work(chunk)
            if not has_manifest:  # written with the first finished batch: a run that fails early leaves nothing
                write_text(parts_dir / MANIFEST, json.dumps(stamp, sort_keys=True) + "\n")
                has_manifest = True
            write_batch(parts_dir, b, rows)
            bar.update(len(chunk))
    finally:
        bar.close()
    frames = read_parts(parts_dir, len(batches), tables)
    return {t: frames.get(t, pd.DataFrame()) for t in dict.fromkeys([*tables, *frames])}
