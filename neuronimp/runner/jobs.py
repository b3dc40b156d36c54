"""A shard job: one shard of one study, run here as a subprocess or on a cluster as a submitit callable.

A job that finishes leaves a done-marker `parts/<command><tag>.done.json` naming the run key it ran (the driver's `run_key`:
config and every input file's SHA-256) and the tables it wrote, so a re-launch skips it while those tables are still there.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronimp.runner.driver import run_key
from neuronimp.runner.io import write_text
from neuronimp.runner.merge import SHARD_FILE
from neuronimp.runner.shards import Shard

JOB_OVERRIDES = ("runner.progress=false",)  # a job's bar would only clutter its log; the launcher shows one


def yaml_str(text: str) -> str:
    """`text` as a single-quoted YAML scalar, safe for --set whatever it holds."""
    return "'" + text.replace("'", "''") + "'"


def table_files(out: Path, shard: Shard) -> dict[str, int]:
    """Top-level tables of `out` that belong to `shard` (name -> inode; a rewrite gets a new inode)."""
    found = {}
    if not out.is_dir():
        return found
    for p in out.iterdir():
        if p.suffix not in (".csv", ".parquet") or not p.is_file():
            continue
        m = SHARD_FILE.match(p.name)
        mine = (m is None) if shard.count == 1 else (m is not None and p.name.endswith(shard.tag + p.suffix))
        if mine:
            found[p.name] = p.stat().st_ino
    return found


def marker_path(out: Path, command: str, shard: Shard) -> Path:
    """Where the done-marker of a shard lives."""
    return out / "parts" / f"{command}{shard.tag or '.all'}.done.json"


def mark_done(out: Path, command: str, shard: Shard, cfg: Any, before: dict[str, int]) -> Path:
    """Record that `shard` finished, with the tables it (re)wrote since the snapshot `before`."""
    after = table_files(out, shard)
    written = sorted(n for n, ino in after.items() if before.get(n) != ino)
    record = {"command": command, "shard": str(shard), "key": run_key(command, cfg), "tables": written,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node()}
    path = marker_path(out, command, shard)
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def done_record(out: Path, command: str, shard: Shard, cfg: Any) -> dict[str, Any] | None:
    """The marker of a finished shard of this config whose tables all still exist, else None."""
    path = marker_path(out, command, shard)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("key") != run_key(command, cfg) or not all((out / t).is_file() for t in record.get("tables", [])):
        return None
    return record


def marker_tables(out: Path, command: str, shard: Shard) -> list[str]:
    """The tables a finished shard wrote, from its done-marker (none when it has no marker)."""
    try:
        return list(json.loads(marker_path(out, command, shard).read_text(encoding="utf-8"))["tables"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


@dataclass(frozen=True)
class ShardJob:
    """One shard of one study command, with the config file and --set overrides it runs with."""

    command: str
    config: str
    overrides: tuple[str, ...]
    shard: Shard

    def argv(self) -> list[str]:
        """The command line that runs this shard with this Python (the local launcher's subprocess)."""
        args = [sys.executable, "-m", "neuronimp.cli", self.command, "--config", self.config]
        for item in self.overrides:
            args += ["--set", item]
        return args + ["--shard", str(self.shard)]

    def __call__(self) -> str:
        """Run the shard in this process and mark it done (the body of a Slurm array task)."""
        from neuronimp.config import load_config
        from neuronimp.runner.context import build_context
        from neuronimp.runner.driver import run_study
        from neuronimp.studies import load_plugins

        load_plugins()
        cfg = load_config(self.config, list(self.overrides))
        out = Path(cfg.runner.out)
        before = table_files(out, self.shard)
        run_study(self.command, build_context(cfg), self.shard)
        return str(mark_done(out, self.command, self.shard, cfg, before))


def make_jobs(command: str, config_path: Path, overrides: list[str], out: Path, shards: int) -> list[ShardJob]:
    """The jobs of every shard: absolute config and output paths (jobs may start elsewhere), no progress bars."""
    fixed = (*overrides, *JOB_OVERRIDES, f"runner.out={yaml_str(str(out.resolve()))}")
    return [ShardJob(command, str(Path(config_path).resolve()), fixed, Shard(i, shards)) for i in range(shards)]
