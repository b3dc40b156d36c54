"""`neuronimp plot` and `neuronimp report`: figures and a markdown report of whatever tables a folder holds."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from neuronimp.errors import UsageError
from neuronimp.report.figures import PLOTTERS
from neuronimp.report.summaries import (PAPER_CURVES_NOTE, PAPER_FLIPS_NOTE, PAPER_SELECT_NOTE, curves_summary,
                                        flips_summary, markdown, scores_summary, selection_summary)
from neuronimp.report.tables import COMMANDS, KINDS, TITLES, Table, find_tables, missing_notes
from neuronimp.runner.io import write_text

SCORE_COLUMNS = ["input_id", "layer", "unit", "method", "score", "delta"]
SUMMARIES: dict[str, tuple[Callable[..., pd.DataFrame], str]] = {
    "flips": (lambda df, t: flips_summary(df), PAPER_FLIPS_NOTE),
    "curves": (lambda df, t: curves_summary(df), PAPER_CURVES_NOTE),
    "selection": (lambda df, t: selection_summary(df, t.meta), PAPER_SELECT_NOTE),
    "scores": (lambda df, t: scores_summary(df), ""),
}


def _read(t: Table) -> pd.DataFrame:
    """A table's rows (scores tables only the columns the summary needs: they can be large)."""
    return t.read(SCORE_COLUMNS if t.kind == "scores" else None)


def make_figures(folder: Path, out: Path | None = None) -> tuple[list[Path], list[str]]:
    """Write the PNG figures of every plottable table under `folder` into `out` (default folder/figures).

    Returns the figures and notes on what was skipped; UsageError when nothing under `folder` can be plotted.
    """
    tables, notes = find_tables(folder)
    out = Path(out) if out is not None else Path(folder) / "figures"
    plottable = [t for t in tables if t.kind in PLOTTERS]
    notes += [n for n in missing_notes(tables) if "unit scores" not in n]
    if not plottable:
        raise UsageError(f"nothing to plot in {folder}: " + "; ".join(notes))
    made = []
    for t in plottable:
        df = _read(t)
        if df.empty:
            notes.append(f"{t.rel}: no rows, no figure")
            continue
        try:
            made += PLOTTERS[t.kind](t, df, out)
        except (KeyError, ValueError, TypeError) as exc:  # a hand-made table missing a column the plot needs
            notes.append(f"{t.rel}: could not plot ({type(exc).__name__}: {exc})")
    return made, notes


def _section(t: Table, figures: list[Path], report_dir: Path) -> list[str]:
    """The markdown of one table: where it came from, the summary with the paper's numbers, its figures."""
    lines = [f"## {TITLES[t.kind]}: `{t.rel}`", ""]
    if t.describe():
        lines += [f"From {t.describe()}; written by `neuronimp {COMMANDS[t.kind]}`.", ""]
    fn, note = SUMMARIES[t.kind]
    df = _read(t)
    if df.empty:
        return lines + ["(no rows)", ""]
    try:
        lines += [markdown(fn(df, t))]
    except (KeyError, ValueError, TypeError) as exc:
        lines += [f"(could not summarise this table: {type(exc).__name__}: {exc})", ""]
    if note:
        lines += [note, ""]
    for f in figures:
        if f.name.startswith(t.slug + "__"):
            lines += [f"![{f.stem}]({os.path.relpath(f, report_dir)})", ""]
    return lines


def write_report(folder: Path, out: Path | None = None, figures: bool = True) -> tuple[Path, list[str]]:
    """Write a markdown report of `folder` (default folder/report.md) with its figures; returns (path, notes)."""
    folder = Path(folder)
    tables, notes = find_tables(folder)
    if not tables:
        raise UsageError(f"no result tables in {folder}: " + "; ".join(notes + missing_notes(tables)))
    path = Path(out) if out is not None else folder / "report.md"
    made: list[Path] = []
    if figures and any(t.kind in PLOTTERS for t in tables):
        made, fig_notes = make_figures(folder, path.parent / "figures")
        notes += [n for n in fig_notes if n not in notes]
    kinds = ", ".join(f"{sum(t.kind == k for t in tables)} {k}" for k in KINDS if any(t.kind == k for t in tables))
    lines = [f"# neuronimp report: `{folder}`", "",
             f"{len(tables)} table(s) ({kinds}), {len(made)} figure(s); written {time.strftime('%Y-%m-%d %H:%M')}. "
             "Summaries are recomputed from the row tables; `paper:` columns and rows give the published "
             "numbers (their setting, not necessarily ours: compare the model and layer).", ""]
    for t in tables:
        lines += _section(t, made, path.parent)
    skipped = list(dict.fromkeys(notes + missing_notes(tables)))
    if skipped:
        lines += ["## Not in this folder", ""] + [f"- {n}" for n in skipped] + [""]
    write_text(path, "\n".join(lines))
    return path, skipped
