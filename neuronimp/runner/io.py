"""Result files: atomic writes (temporary file, then rename), metadata beside every result, and the
part files that make runs resumable and safe against `kill -9`.

A table is written as `name.csv` (or `.parquet`) next to `name.meta.json`, which carries the resolved
config, the git commit, package versions and the device. Nothing is ever written in place: a reader sees
either the old file or the complete new one.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.errors import UsageError, write_error
from neuronimp.studies.tabulate import FLOAT_FORMAT

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
PACKAGES = ("neuronimp", "torch", "torchvision", "timm", "captum", "numpy", "pandas", "scikit-learn", "pydantic")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success fsync and rename it onto `path`.

    A failure to create, write or rename is a UsageError naming the folder; the temporary file is removed
    whatever happens, so an interrupted or failed write leaves the old file (or none), never a partial one.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise write_error("cannot write", path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any other file
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:  # disk full, quota, permissions changed under us
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems refuse to open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files left in `folder` by writes that were killed; returns how many."""
    n = 0
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def table_path(path: Path, fmt: str = "csv") -> Path:
    """`path` with the table's extension: replaces .csv/.parquet, appends otherwise (keeps a '.shard-...' tag)."""
    path = Path(path)
    ext = ".parquet" if fmt == "parquet" else ".csv"
    return path.with_suffix(ext) if path.suffix in (".csv", ".parquet") else path.with_name(path.name + ext)


def write_table(df: pd.DataFrame, path: Path, fmt: str = "csv") -> Path:
    """Write a DataFrame atomically as CSV (default) or Parquet; returns the final path.

    A frame without columns (no rows at all) is written as an empty CSV file, which `read_table` reads back
    as zero rows.
    """
    path = table_path(path, fmt)
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            try:
                df.to_parquet(tmp, index=False)
            except ImportError:
                raise UsageError("runner.format = 'parquet' needs pyarrow: pip install 'neuronimp[parquet]'") from None
        elif len(df.columns) == 0:
            tmp.write_bytes(b"")
        else:
            df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return path


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet table written by `write_table` (an empty file is zero rows)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not a readable CSV table ({' '.join(str(exc).split())[:120]}); "
                         "delete it and re-run the command that wrote it") from None


def git_commit() -> str:
    """The commit of the neuronimp checkout (with '+dirty' when it has changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """Installed versions of the packages results depend on."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def metadata_record(config: dict[str, Any], device: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What is written beside every result: resolved config, commit, versions, device."""
    return {"config": config, "git_commit": git_commit(), "versions": versions(), "device": device,
            "host": platform.node(), **(extra or {})}


def write_meta(table: Path, record: dict[str, Any]) -> Path:
    """Write `<table>.meta.json` beside a table."""
    meta = Path(table).with_suffix(".meta.json")
    write_text(meta, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return meta
