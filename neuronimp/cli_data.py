"""`neuronimp data ...`: fetch the public data sets (checksummed) and list where each one is found.

Mounted on the main app by `neuronimp/cli.py` (app.add_typer(data_app, name="data")). It does not import
neuronimp.cli (which imports it), so it carries its own two-line copy of cli.usage_errors.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from neuronimp.errors import UsageError, one_line

data_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       help="Public data sets: fetch them (checksummed) and list where they are found.")


def usage_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A UsageError becomes one line on stderr and exit code 2 (as in neuronimp.cli)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@data_app.command("fetch")
@usage_errors
def fetch_cmd(name: Annotated[str, typer.Argument(help="mr | sst2 | mnist | fashion_mnist")],
              dest: Annotated[Optional[Path], typer.Option(help="folder; default: $NEURONIMP_DATA/NAME "
                                                                 "(~/.cache/neuronimp/NAME)")] = None,
              force: Annotated[bool, typer.Option(help="download again even when checked copies are there")] = False
              ) -> None:
    """Download NAME's files from their public sources, check their pinned SHA-256, write them to the folder."""
    from neuronimp.data.fetch import fetch

    fetch(name, dest, force=force, say=lambda line: typer.echo(line, err=True))


@data_app.command("list")
@usage_errors
def list_cmd(check: Annotated[bool, typer.Option(help="also check every file's SHA-256 (reads the files)")] = False
             ) -> None:
    """Each fetchable data set: the folder it is found in (and how), or that it is missing."""
    from neuronimp.data.fetch import SOURCES, cache_dir, check_folder, find

    for name in SOURCES:
        found = find(name)
        if found is None:
            typer.echo(f"{name:14s} missing: neuronimp data fetch {name}  (or put its files in {cache_dir(name)})")
            continue
        label, folder = found
        status = ""
        if check:
            problems = check_folder(name, folder)
            status = "  checksums ok" if not problems else "  CHECK FAILED: " + "; ".join(problems)
        typer.echo(f"{name:14s} {folder}  ({label}){status}")
