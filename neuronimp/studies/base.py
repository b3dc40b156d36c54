"""What a study is: one registered plug-in that owns its config section, its inputs, its per-batch rows,
its tables and its summary. The one driver (`neuronimp.runner.driver.run_study`) does the rest: batching,
devices, shards, part files, resume, merge, metadata, progress and printing.

    @register_study
    class Toy(Study):
        name = "toy"
        section = ToyCfg                       # the config section `toy:` (optional)
        tables = ("toy",)                      # row tables, the first is the main one
        def rows(self, ctx, state, chunk):     # pure: rows of one batch of items, per table
            return {"toy": [...]}

A study writes no files, shows no progress and picks no device: it reads inputs and the model through the
context (`ctx.batches`, `ctx.bundle`) and returns rows, frames, texts and figures.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from neuronimp.registry import Registry


@dataclass(frozen=True)
class Rebuild:
    """An aggregate table recomputed by `fn` from the merged row table `source` (used by `neuronimp merge`)."""

    source: str
    fn: Callable[[pd.DataFrame], pd.DataFrame]


@dataclass
class Outputs:
    """What `Study.finish` hands the driver to write and print (file names without the shard tag)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)   # aggregate tables: name -> frame
    texts: dict[str, str] = field(default_factory=dict)             # "ablate_summary.md" -> text
    figures: dict[str, Any] = field(default_factory=dict)           # "delete_auc_gap.png" -> matplotlib Figure
    printed: list[tuple[str, pd.DataFrame | None]] = field(default_factory=list)  # (title, table or None)
    meta: dict[str, Any] = field(default_factory=dict)              # extra metadata for every table


class Study:
    """Base of every study: override what differs (see the module docstring)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    section: ClassVar[type | None] = None          # pydantic model of the config section `<name>:`
    tables: ClassVar[tuple[str, ...]] = ()          # row tables written from the batches; tables[0] is the main
    columns: ClassVar[dict[str, list[str]]] = {}    # column order of row tables (an empty table keeps them)
    optional: ClassVar[tuple[str, ...]] = ()        # row tables not written when a run makes no rows for them
    unit: ClassVar[str] = "img"                     # what an item is, for the progress bar
    aggregates: ClassVar[dict[str, Rebuild | str]] = {}  # aggregate tables: how merge rebuilds them, or advice
    section_key: ClassVar[str] = ""                # config key of the section (default: the name)
    not_in_key: ClassVar[tuple[str, ...]] = ()     # dotted config keys that cannot change rows (kept out of
                                                   # the part files' resume key, e.g. "delete.figures")

    def check(self, ctx: Any) -> None:
        """Usage errors the config schema cannot see (raise UsageError), before any work."""

    def items(self, ctx: Any) -> Sequence[Any]:
        """The work items (JSON-able): by default the indices of the configured split."""
        return list(range(len(ctx.split())))

    def batch_size(self, ctx: Any) -> int:
        """Items per batch (one part file each)."""
        return int(ctx.cfg.runner.batch_size)

    def prepare(self, ctx: Any, items: Sequence[Any]) -> Any:
        """State shared by every batch (dataset statistics, probes); computed once per run."""
        return {}

    def rows(self, ctx: Any, state: Any, chunk: list[Any]) -> dict[str, list[dict[str, Any]]]:
        """Rows of one batch of items, per row table (pure)."""
        raise NotImplementedError

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """Aggregates, texts, figures and the printed summary from the row tables of the run (pure)."""
        return Outputs()


STUDIES: Registry = Registry("study")


def register_study(cls: type[Study]) -> type[Study]:
    """Class decorator: register one instance of the study under its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    STUDIES.register(cls.name, help=cls.help)(cls())
    return cls
