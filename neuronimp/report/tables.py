"""Find the result tables of a folder by their columns, whatever their file names.

A table's kind is recognised from its header (so renamed or hand-made tables work too). Merged tables are
preferred; shard files whose merged table is absent are reported, not read (a partial set would mislead).
Folders `parts/`, `logs/`, `slurm/`, `figures/` and hidden ones are not searched.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.errors import UsageError
from neuronimp.runner.io import read_table
from neuronimp.runner.merge import SHARD_FILE

KINDS: dict[str, frozenset[str]] = {  # kind -> columns that identify it
    "flips": frozenset({"image_id", "layer", "method", "ablation", "k_flip", "flipped"}),
    "curves": frozenset({"order", "ablation", "fraction_ablated", "split", "accuracy"}),
    "selection": frozenset({"task", "method", "k", "accuracy"}),
    "scores": frozenset({"input_id", "layer", "unit", "method", "score"}),
}
COMMANDS = {"flips": "ablate", "curves": "delete", "selection": "select", "scores": "score"}
TITLES = {"flips": "Ablation until the prediction flips", "curves": "Cumulative deletion",
          "selection": "Top-k unit selection", "scores": "Unit scores"}
SKIP_DIRS = {"parts", "logs", "slurm", "figures"}


@dataclass
class Table:
    """One result table found in the folder."""

    kind: str
    path: Path
    root: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rel(self) -> str:
        """Its path relative to the searched folder."""
        return str(self.path.relative_to(self.root))

    @property
    def slug(self) -> str:
        """A file-name-safe name for its figures: the relative path without the extension."""
        return slug(str(self.path.relative_to(self.root).with_suffix("")).replace("/", "__"))

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The table (only `columns` when given)."""
        if self.path.suffix == ".parquet":
            return pd.read_parquet(self.path, columns=columns)
        if columns is None:
            return read_table(self.path)
        return pd.read_csv(self.path, usecols=lambda c: c in set(columns))

    def describe(self) -> str:
        """'model M, layer L, data D' from the metadata, where known."""
        cfg = self.meta.get("config") or {}
        parts = []
        if cfg.get("model", {}).get("name"):
            parts.append(f"model {cfg['model']['name']}")
        if cfg.get("layers"):
            parts.append(f"layers {', '.join(map(str, cfg['layers']))}")
        if cfg.get("data", {}).get("name"):
            parts.append(f"data {cfg['data']['name']} ({cfg['data'].get('split', '')})")
        if self.meta.get("git_commit"):
            parts.append(f"commit {str(self.meta['git_commit'])[:12]}")
        return ", ".join(parts)


def slug(text: str) -> str:
    """`text` reduced to letters, digits, '_', '-' and '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "table"


def header(path: Path) -> set[str]:
    """The column names of a table file (empty when it cannot be read)."""
    try:
        if path.suffix == ".parquet":
            return set(pd.read_parquet(path).columns)
        return set(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError, ImportError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return set()


def kind_of(columns: set[str]) -> str | None:
    """The kind whose identifying columns a header holds (None for other tables)."""
    return next((k for k, need in KINDS.items() if need <= columns), None)


def _meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.with_suffix(".meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _files(folder: Path) -> list[Path]:
    """Table files under `folder`, skipping parts/logs/slurm/figures and hidden folders."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(d in SKIP_DIRS or d.startswith(".") for d in rel[:-1]) or rel[-1].startswith("."):
            continue
        if p.suffix in (".csv", ".parquet") and p.is_file():
            found.append(p)
    return found


def find_tables(folder: Path) -> tuple[list[Table], list[str]]:
    """The known tables under `folder` (by kind, then path) and notes on what was left aside."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give a results folder (a runner.out) or results/")
    tables, notes, unmerged = [], [], {}
    for p in _files(folder):
        m = SHARD_FILE.match(p.name)
        if m:
            merged = p.with_name(f"{m['name']}.{m['ext']}")
            if not merged.exists() and kind_of(header(p)):
                unmerged[merged] = unmerged.get(merged, 0) + 1
            continue
        kind = kind_of(header(p))
        if kind:
            tables.append(Table(kind, p, folder, _meta(p)))
    for merged, n in sorted(unmerged.items()):
        notes.append(f"{merged.relative_to(folder)}: only {n} shard file(s), not merged; run "
                     f"`neuronimp merge {merged.parent}` first")
    order = list(KINDS)
    tables.sort(key=lambda t: (order.index(t.kind), t.rel))
    return tables, notes


def missing_notes(tables: list[Table]) -> list[str]:
    """One line per kind with no table: which columns were looked for and which command writes them."""
    have = {t.kind for t in tables}
    return [f"no {TITLES[k].lower()} table (columns {', '.join(sorted(KINDS[k]))}): run `neuronimp {COMMANDS[k]}`"
            for k in KINDS if k not in have]
