"""ONE driver for every registered study: `run_study(name, ctx, shard)`.

It asks the study for its items, runs them in batches (resumable part files on disk, or in memory for the
Python API), then writes every table with its metadata, the study's texts and figures, prints the summary
and returns the frames. The CLI, the local/Slurm launchers and `neuronimp.api` all come through here; the
driver knows no study by name.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.config import study_sections
from neuronimp.runner.context import Context, file_digests
from neuronimp.runner.io import write_table, write_text
from neuronimp.digest import file_digest, fingerprint
from neuronimp.runner.parts import run_memory, run_parts
from neuronimp.runner.progress import print_table
from neuronimp.runner.shards import Shard
from neuronimp.studies import STUDIES, Study

# runner settings that change where and how visibly a run goes, never its rows: not part of the run key
NON_RESULT_RUNNER_KEYS = ("out", "progress", "num_workers", "parallel", "slurm", "format", "threads")


def config_key(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (as a dict) without the runner settings that cannot change rows."""
    runner = config.get("runner")
    if isinstance(runner, dict):
        return {**config, "runner": {k: v for k, v in runner.items() if k not in NON_RESULT_RUNNER_KEYS}}
    return config


def run_key(study: str, cfg: Any, ignore: tuple[str, ...] = ()) -> str:
    """The one resume key: study, resolved config (less runner-only settings) and every input file's SHA-256.

    Used by the part-file manifests and by the launchers' done markers: a checkpoint retrained at the same
    path changes the key, so nothing computed with the old one is reused. A study reads the common sections
    and its own, so the sections of other studies are left out: registering a plug-in (whose section every
    config then carries) changes no other study's key. `ignore`: dotted config keys that cannot change the
    rows (the study's `not_in_key`), left out of the part files' key only.
    """
    own = (STUDIES.get(study).section_key or study) if study in STUDIES else None
    others = set(study_sections()) - {own}
    config = {k: v for k, v in config_key(cfg.model_dump(mode="json")).items() if k not in others}
    for dotted in ignore:
        config = _without(config, dotted.split("."))
    return fingerprint({"study": study, "config": config, "files": file_digests(cfg)})


def _without(tree: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """A copy of `tree` without the entry at `path` (unchanged when there is none)."""
    head, rest = path[0], path[1:]
    if not rest:
        return {k: v for k, v in tree.items() if k != head}
    if not isinstance(tree.get(head), dict):
        return tree
    return {**tree, head: _without(tree[head], rest)}


@dataclass
class StudyResult:
    """Every table of a run (row tables and aggregates) and, when written, their paths."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    main: str = ""

    @property
    def path(self) -> Path | None:
        """The main table's path (None for an in-memory run)."""
        return self.paths.get(self.main)


def _ordered(df: pd.DataFrame, columns: list[str] | None) -> pd.DataFrame:
    """A row table with its declared columns in order (an empty table keeps its header)."""
    if columns is None:
        return df
    if df.empty:
        return pd.DataFrame(columns=columns)
    return df[[c for c in columns if c in df.columns]].reset_index(drop=True)


def tagged(name: str, tag: str) -> str:
    """'ablate_summary.md' with the shard tag before the suffix."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}{tag}.{ext}" if dot else name + tag


def run_study(name: str, ctx: Context, shard: Shard = Shard(), *, write: bool = True,
              show: bool | None = None) -> StudyResult:
    """Run study `name` for the context's config on one shard; write and print unless told not to."""
    study: Study = STUDIES.get(name, where="study")
    cfg = ctx.cfg
    show = cfg.runner.progress if show is None else show
    study.check(ctx)
    items = shard.select(list(study.items(ctx)))
    state = study.prepare(ctx, items)

    def work(chunk: list[Any]) -> dict[str, list[dict[str, Any]]]:
        return study.rows(ctx, state, chunk)

    bs = study.batch_size(ctx)
    if write:
        parts = ctx.out / "parts" / f"{study.name}{shard.tag}"
        key = run_key(study.name, cfg, study.not_in_key)
        frames = run_parts(items, work, parts, bs, key, study.tables, desc=study.name, show=show, unit=study.unit)
    else:
        frames = run_memory(items, work, bs, study.tables, desc=study.name, show=show, unit=study.unit)
    frames = {t: _ordered(frames.get(t, pd.DataFrame()), study.columns.get(t)) for t in study.tables}
    out = study.finish(ctx, frames, shard)
    for msg in sorted(ctx.notes):
        warnings.warn(msg, stacklevel=2)
    ctx.notes.clear()
    res = StudyResult({**frames, **out.tables}, main=study.tables[0])
    if write:
        meta = {"command": study.name, "shard": str(shard), **out.meta}
        for t, df in res.tables.items():
            if t != res.main and df.empty and (len(df.columns) == 0 or t in study.optional):
                continue  # a table this run did not make (e.g. logits when not recorded)
            path = write_table(df, ctx.out / f"{t}{shard.tag}", cfg.runner.format)
            ctx.write_meta(path, {**meta, "table": t, "rows": len(df), "sha256": file_digest(path)})
            res.paths[t] = path
        for fname, text in out.texts.items():
            write_text(ctx.out / tagged(fname, shard.tag), text)
        for fname, fig in out.figures.items():
            save_figure(fig, ctx.out / tagged(fname, shard.tag))
    if ctx.verbose:
        for title, df in out.printed:
            if df is None:
                print(title)
            else:
                print_table(df, title)
    return res


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt

    from neuronimp.runner.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
