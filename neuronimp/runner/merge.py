"""`neuronimp merge`: combine shard tables into one, checking that no shard is missing or duplicated.

A shard table is `<name>.shard-0001-of-0004.csv` beside its `.meta.json`. Merging a table checks that
shards 0..N-1 are all there exactly once, that they come from one config, and that no input id (input_id or
image_id) appears in two shards; only then is `<name>.csv` written (atomically, with merged metadata). Rows
follow shard order, then are stably sorted by the input id when the table has one, so a merged table lists
inputs in the order an unsharded run visits them. Shard files are kept; merging again is harmless.
Per-shard summaries (`*_summary`) and the other aggregate tables declared by the studies (`Study.aggregates`) are not stacked: a stack
of per-shard aggregates is no aggregate of the whole. Those with a rebuild function are recomputed from the
merged row tables (e.g. delete_auc_by_corruption from delete_auc); the others are named with the command
that makes them for the whole run.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.errors import UsageError, unknown
from neuronimp.runner.io import read_table, write_meta, write_table
from neuronimp.digest import file_digest
from neuronimp.runner.driver import config_key
from neuronimp.runner.parts import parts_status
from neuronimp.runner.shards import Shard
from neuronimp.studies.base import Rebuild

SHARD_FILE = re.compile(r"^(?P<name>.+)\.shard-(?P<index>\d{4})-of-(?P<count>\d{4})\.(?P<ext>csv|parquet)$")
ID_COLUMNS = ("input_id", "image_id")
# aggregates of one shard's rows cannot be stacked into the aggregate of all rows: not merged (`neuronimp
# report` recomputes them from the merged row tables)
SUMMARY_SUFFIX = "_summary"


def aggregates() -> dict[str, Rebuild | str]:
    """Aggregate tables of every registered study -> how to rebuild them from a merged row table, or the
    advice printed instead (each study declares its own: `Study.aggregates`)."""
    from neuronimp.studies import STUDIES

    out: dict[str, Rebuild | str] = {}
    for name in STUDIES.names():
        out.update(STUDIES.get(name).aggregates)
    return out


def is_aggregate(name: str) -> bool:
    """Whether the table `name` aggregates over a shard's items (never stacked)."""
    return name.endswith(SUMMARY_SUFFIX) or name in aggregates()


def _merged(folder: Path, name: str) -> Path | None:
    """The merged (unsharded) table `name` in `folder`, if there is one."""
    for ext in ("csv", "parquet"):
        if (folder / f"{name}.{ext}").is_file():
            return folder / f"{name}.{ext}"
    return None


@dataclass(frozen=True)
class ShardFile:
    """One shard table on disk."""

    name: str
    shard: Shard
    path: Path

    @property
    def meta_path(self) -> Path:
        """Its metadata file."""
        return self.path.with_suffix(".meta.json")


def shard_files(folder: Path) -> list[ShardFile]:
    """Every shard table directly in `folder`, sorted by name, count and index."""
    found = []
    for p in Path(folder).iterdir():
        m = SHARD_FILE.match(p.name)
        if m and p.is_file():
            found.append(ShardFile(m["name"], Shard(int(m["index"]), int(m["count"])), p))
    return sorted(found, key=lambda f: (f.name, f.shard.count, f.shard.index, f.path.suffix))


def unfinished(folder: Path, shard: Shard) -> str:
    """' (unfinished: 3 of 5 batches done)' when a parts folder of `shard` exists, else ''."""
    notes = []
    for manifest in sorted(Path(folder).glob(f"parts/*{shard.tag}/manifest.json")):
        st = parts_status(manifest.parent)
        notes.append(f"{st.batches_done} of {st.batches} batches done")
    return f" (unfinished: {'; '.join(notes)})" if notes else ""


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """The dotted path of the first entry where two JSON-like trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    return path or "<root>"


def _read_meta(f: ShardFile) -> dict[str, Any]:
    """The metadata of a shard table; its absence means the shard was interrupted after the table."""
    if not f.meta_path.is_file():
        raise UsageError(f"{f.path.name} has no {f.meta_path.name} (interrupted?); re-run shard {f.shard} "
                         "of that command to finish it, then merge again")
    try:
        return json.loads(f.meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"{f.meta_path} is unreadable; re-run shard {f.shard} of that command") from None


def check_complete(name: str, files: list[ShardFile], folder: Path) -> None:
    """All shards 0..N-1 of one count, each exactly once; otherwise say which are missing and why."""
    counts = sorted({f.shard.count for f in files})
    if len(counts) > 1:
        raise UsageError(f"{name}: shard files of different counts ({', '.join(map(str, counts))}) in {folder}; "
                         "remove the stale set or pick one with `neuronimp merge --count N`")
    seen: dict[int, list[str]] = defaultdict(list)
    for f in files:
        seen[f.shard.index].append(f.path.name)
    dup = {i: names for i, names in seen.items() if len(names) > 1}
    if dup:
        i, names = min(dup.items())
        raise UsageError(f"{name}: shard {i}/{counts[0]} is present twice ({', '.join(names)}); keep one")
    missing = [Shard(i, counts[0]) for i in range(counts[0]) if i not in seen]
    if missing:
        listed = ", ".join(f"{s}{unfinished(folder, s)}" for s in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise UsageError(f"{name}: missing shard(s) {listed}{more}; run them (--shard i/N) or re-run the "
                         "launcher, then merge again")


def check_intact(f: ShardFile, meta: dict[str, Any]) -> None:
    """Refuse a shard table whose bytes differ from the SHA-256 its metadata recorded (truncated or altered)."""
    want = meta.get("sha256")
    if want is not None and file_digest(f.path) != want:
        raise UsageError(f"{f.path} was truncated or altered (SHA-256 differs from {f.meta_path.name}); re-run "
                         f"shard {f.shard} of that study, then merge again")


def check_consistent(name: str, files: list[ShardFile], metas: list[dict[str, Any]],
                     frames: list[pd.DataFrame]) -> None:
    """Shards from one config, whose metadata agree with their names, with no input in two shards."""
    ref = config_key(metas[0].get("config"))
    for f, meta in zip(files, metas):
        if meta.get("shard") not in (None, str(f.shard)):
            raise UsageError(f"{f.path.name}: its metadata says shard {meta.get('shard')}, its name {f.shard}; "
                             "was it renamed?")
        cfg = config_key(meta.get("config"))
        if cfg != ref:
            raise UsageError(f"{name}: shard {f.shard} was made with a different config than shard "
                             f"{files[0].shard} ({_first_difference(ref, cfg)} differs); re-run it")
    for col in ID_COLUMNS:
        if not all(col in df.columns for df in frames if len(df)):
            continue
        owner: dict[Any, Shard] = {}
        for f, df in zip(files, frames):
            if col not in df.columns:
                continue
            for v in pd.unique(df[col]):
                if v in owner:
                    raise UsageError(f"{name}: {col} {v} is in shard {owner[v]} and shard {f.shard} "
                                     "(duplicated rows); were shards of different runs mixed?")
                owner[v] = f.shard
        break


def merge_table(name: str, files: list[ShardFile], folder: Path) -> tuple[Path, int]:
    """Check one complete set of shard files and write the merged table; returns (path, rows)."""
    check_complete(name, files, folder)
    metas = [_read_meta(f) for f in files]
    for f, meta in zip(files, metas):
        check_intact(f, meta)
    frames = [read_table(f.path) for f in files]
    check_consistent(name, files, metas, frames)
    kept = [df for df in frames if len(df)]
    df = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    id_col = next((c for c in ID_COLUMNS if c in df.columns), None)
    if id_col is not None:
        df = df.sort_values(id_col, kind="stable", ignore_index=True)
    fmt = "parquet" if files[0].path.suffix == ".parquet" else "csv"
    path = write_table(df, folder / name, fmt)
    meta = {**metas[0], "shard": "merged", "merged_from": [f.path.name for f in files], "rows": len(df),
            "sha256": file_digest(path)}
    write_meta(path, meta)
    return path, len(df)


def table_groups(folder: Path, count: int | None = None) -> dict[str, list[ShardFile]]:
    """Shard tables of `folder` grouped by table name (only sets of `count` shards when given)."""
    groups: dict[str, list[ShardFile]] = defaultdict(list)
    for f in shard_files(folder):
        if (count is None or f.shard.count == count) and not is_aggregate(f.name):
            groups[f.name].append(f)
    return dict(groups)


def rebuild_aggregates(folder: Path, count: int | None = None, say: Callable[[str], None] = print) -> list[Path]:
    """Recompute the aggregate tables whose shard files are in `folder` from the merged row tables.

    Each rebuilt table gets the metadata of its source's merged table; tables that cannot be rebuilt here
    are named, with what to run instead.
    """
    known = aggregates()
    names = sorted({f.name for f in shard_files(folder) if (count is None or f.shard.count == count)
                    and f.name in known})
    written = []
    for name in names:
        how = known[name]
        src = _merged(folder, how.source) if isinstance(how, Rebuild) else None
        if src is None:
            say(f"not merged: {name} aggregates over each shard's items; "
                + (how if isinstance(how, str) else f"merge {how.source} first"))
            continue
        df = how.fn(read_table(src))
        path = write_table(df, folder / name, "parquet" if src.suffix == ".parquet" else "csv")
        meta_file = src.with_suffix(".meta.json")
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        write_meta(path, {**meta, "table": name, "rebuilt_from": src.name, "rows": len(df),
                          "sha256": file_digest(path)})
        written.append(path)
    return written


def merge_folder(folder: Path, name: str | None = None, count: int | None = None,
                 say: Callable[[str], None] = print) -> list[Path]:
    """Merge every sharded table in `folder` (or only `name`, or only sets of `count` shards), then rebuild
    the aggregate tables from the merged ones (`rebuild_aggregates`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give the runner.out folder of a sharded run")
    groups = table_groups(folder, count)
    if not groups:
        what = f" of {count} shards" if count else ""
        raise UsageError(f"no shard tables{what} (NAME.shard-IIII-of-NNNN.csv) in {folder}; run a study with "
                         "--shard i/N or --launcher first")
    if name is not None:
        if name not in groups:
            raise unknown("table", name, groups, where=f"merge {folder}")
        groups = {name: groups[name]}
    for n, files in groups.items():  # check every table before writing any
        check_complete(n, files, folder)
    merged = [merge_table(n, files, folder)[0] for n, files in sorted(groups.items())]
    return merged + (rebuild_aggregates(folder, count, say) if name is None else [])
