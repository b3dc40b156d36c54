"""`--launcher local|slurm --shards N`: run every shard of a study as a job, then merge the shard tables.

local: N subprocesses (`python -m neuronimp.cli <command> --shard i/N`), `runner.parallel` at a time, each
  pinned to one GPU (round robin) or to its share of the CPU cores; logs in `<out>/logs/`.
slurm: one submitit job array with the resources of `runner.slurm` (partition, GPUs, time limit, ...);
  waits for it and merges unless `runner.slurm.wait` is false. `runner.slurm.cluster: local|debug` runs the
  same array through submitit without Slurm.
Shards that finished earlier with the same config are skipped; an unfinished one resumes from its last
completed batch. The bar counts items of all shards (from their part files), with items per second.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neuronimp.errors import UsageError, unknown
from neuronimp.runner.guard import check_writable
from neuronimp.runner.jobs import ShardJob, done_record, make_jobs, mark_done, marker_tables, table_files
from neuronimp.runner.merge import SHARD_FILE, check_complete, merge_table, rebuild_aggregates, table_groups
from neuronimp.runner.progress import print_table, progress
from neuronimp.runner.parts import parts_status

LAUNCHERS = ("local", "slurm")
POLL_S = {"local": 0.25, "slurm": 5.0}


@dataclass
class Outcome:
    """What became of one shard."""

    job: ShardJob
    status: str = "pending"  # skipped | ran | failed | submitted
    seconds: float | None = None
    note: str = ""


class ItemBar:
    """A progress bar over the items of every running shard, read from their parts folders."""

    def __init__(self, out: Path, jobs: list[ShardJob], show: bool) -> None:
        self.out = out
        self.tags = [j.shard.tag for j in jobs]
        # parts folders complete before we start belong to skipped shards or to other commands: not counted
        self.ignore = {p for p in self._folders() if self._finished(p)}
        self.bar = progress(total=0, desc=f"{jobs[0].command} x{len(jobs)} shards", show=show, unit="item")
        self.postfix = ""

    def _folders(self) -> list[Path]:
        return [m.parent for t in self.tags for m in self.out.glob(f"parts/*{t}/manifest.json")]

    @staticmethod
    def _finished(folder: Path) -> bool:
        st = parts_status(folder)
        return st.batches_done == st.batches

    def poll(self, shards_done: int, shards: int) -> None:
        """Refresh the totals and counts from disk."""
        stats = [parts_status(p) for p in self._folders() if p not in self.ignore]
        total, done = sum(s.items for s in stats), sum(s.items_done for s in stats)
        if total != self.bar.total:
            self.bar.total = total
        postfix = f"shards {shards_done}/{shards}"
        if postfix != self.postfix:
            self.postfix = postfix
            self.bar.set_postfix_str(postfix, refresh=False)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)  # redraws at most every tqdm mininterval

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def last_line(text: str) -> str:
    """The last non-empty line of a log (the one-line error of a failed shard)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def local_slots(cfg: Any, n_jobs: int) -> list[dict[str, str]]:
    """Environment overrides of each concurrent local slot: one GPU each, or an equal share of the cores."""
    import torch

    device = cfg.runner.device
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if gpus:
        k = cfg.runner.parallel or gpus
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()  # slots index into what we may use
        ids = [d for d in visible.split(",") if d] if visible else [str(i) for i in range(gpus)]
        return [{"CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(min(k, n_jobs))]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    k = min(cfg.runner.parallel or cores, n_jobs) if device.startswith(("cpu", "auto")) else (cfg.runner.parallel or 1)
    threads = str(max(1, cores // k))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(min(k, n_jobs))]


@dataclass
class Running:
    """A shard subprocess of the local launcher."""

    outcome: Outcome
    proc: subprocess.Popen
    slot: dict[str, str]
    started: float
    before: dict[str, int]  # its tables before it started (to tell which it wrote)
    log: Any  # the open log file


def start_local(oc: Outcome, slot: dict[str, str], out: Path) -> Running:
    """Start one shard as a subprocess, its output appended to its log."""
    log = out / "logs" / f"{oc.job.command}{oc.job.shard.tag or '.all'}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "a", encoding="utf-8")  # noqa: SIM115 (closed when the process ends)
    fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(oc.job.argv())}\n")
    fh.flush()
    before = table_files(out, oc.job.shard)
    proc = subprocess.Popen(oc.job.argv(), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **slot})
    oc.note = str(log)
    return Running(oc, proc, slot, time.monotonic(), before, fh)


def finish_local(r: Running, cfg: Any, out: Path) -> None:
    """Record how a finished shard subprocess ended; mark it done when it succeeded."""
    r.log.close()
    oc = r.outcome
    oc.seconds = time.monotonic() - r.started
    if r.proc.returncode == 0:
        mark_done(out, oc.job.command, oc.job.shard, cfg, r.before)
        oc.status = "ran"
    else:
        oc.status = "failed"
        oc.note = f"exit {r.proc.returncode}: {last_line(Path(oc.note).read_text(errors='replace'))} (log: {oc.note})"


def run_local(todo: list[Outcome], cfg: Any, out: Path, bar: ItemBar, n_shards: int) -> None:
    """Run the shards as subprocesses, a slot each; a failing shard does not stop the others."""
    free = deque(local_slots(cfg, len(todo)))
    pending = deque(todo)
    running: list[Running] = []
    finished = n_shards - len(todo)
    try:
        while pending or running:
            while pending and free:
                running.append(start_local(pending.popleft(), free.popleft(), out))
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                free.append(r.slot)
                finished += 1
                finish_local(r, cfg, out)
            bar.poll(finished, n_shards)
            if running or pending:
                time.sleep(POLL_S["local"])
    except KeyboardInterrupt:
        for r in running:
            r.proc.terminate()  # finished batches are kept; a re-launch resumes
            r.proc.wait()
        raise


def job_error(exc: BaseException) -> str:
    """The one-line cause of a failed submitit job (the UsageError message when there is one)."""
    text = str(exc)
    for ln in reversed(text.splitlines()):
        if "UsageError:" in ln:
            return ln.split("UsageError:", 1)[1].strip()
    return last_line(text)


def run_slurm(todo: list[Outcome], cfg: Any, out: Path, bar: ItemBar, n_shards: int) -> list[Any]:
    """Submit the shards as one submitit job array; wait for it when runner.slurm.wait."""
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher slurm needs submitit: pip install 'neuronimp[slurm]'") from None
    s = cfg.runner.slurm
    try:
        executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=s.cluster)
    except RuntimeError as exc:  # no srun on this machine
        raise UsageError(f"--launcher slurm: {exc}; on a machine without Slurm set runner.slurm.cluster: local "
                         "(or debug) to run the same job array here, or use --launcher local") from None
    executor.update_parameters(**slurm_parameters(s, todo[0].job.command))
    with executor.batch():
        submitted = [executor.submit(oc.job) for oc in todo]
    print(f"submitted {len(submitted)} shards as a job array through submitit ({s.cluster}): "
          f"{', '.join(str(j.job_id) for j in submitted)}; logs in {out / 'slurm'}", flush=True)
    for oc, job in zip(todo, submitted):
        oc.status, oc.note = "submitted", f"job {job.job_id}"
    if not s.wait:
        return submitted
    t0 = time.monotonic()
    finished = n_shards - len(todo)
    left = list(zip(todo, submitted))
    while left:
        for oc, job in list(left):
            if not job.done():
                continue
            left.remove((oc, job))
            finished += 1
            oc.seconds = time.monotonic() - t0
            try:
                job.result()
                oc.status = "ran"
            except Exception as exc:  # submitit wraps the job's exception; show its one line
                oc.status, oc.note = "failed", f"job {job.job_id}: {job_error(exc)}"
        bar.poll(finished, n_shards)
        if left:
            time.sleep(POLL_S["slurm"])
    return submitted


def slurm_parameters(s: Any, command: str) -> dict[str, Any]:
    """runner.slurm -> submitit AutoExecutor parameters (generic ones plus slurm_* ones)."""
    params: dict[str, Any] = {
        "name": f"neuronimp-{command}", "timeout_min": s.timeout_min, "gpus_per_node": s.gpus_per_node,
        "cpus_per_task": s.cpus_per_task, "mem_gb": s.mem_gb, "tasks_per_node": 1, "nodes": 1,
        "slurm_array_parallelism": s.array_parallelism,
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(s, key):
            params[f"slurm_{key}"] = getattr(s, key)
    if s.setup:
        params["slurm_setup"] = list(s.setup)
    if s.additional:
        params["slurm_additional_parameters"] = dict(s.additional)
    return params


def merge_written(out: Path, outcomes: list[Outcome], shards: int) -> list[Path]:
    """Merge the tables the shards wrote (named in their done-markers); other tables are left alone."""
    names = {m["name"] for oc in outcomes for t in marker_tables(out, oc.job.command, oc.job.shard)
             if (m := SHARD_FILE.match(t))}
    groups = table_groups(out, shards)
    chosen = {n: groups[n] for n in sorted(names) if n in groups}
    for name, files in chosen.items():  # check every table before writing any
        check_complete(name, files, out)
    merged = []
    for name, files in chosen.items():
        path, rows = merge_table(name, files, out)
        print(f"merged: {path} ({rows} rows from {shards} shards)")
        merged.append(path)
    for path in rebuild_aggregates(out, shards):
        print(f"rebuilt: {path} (from the merged tables)")
        merged.append(path)
    return merged


RUNNERS: dict[str, Callable[..., Any]] = {"local": run_local, "slurm": run_slurm}


def launch(command: str, config_path: Path, overrides: list[str], launcher: str, shards: int, cfg: Any) -> list[Path]:
    """Run every shard of `command` with `launcher`, skipping finished ones; merge when all are done."""
    if launcher not in LAUNCHERS:
        raise unknown("launcher", launcher, LAUNCHERS, where="--launcher")
    if shards < 1:
        raise UsageError(f"--shards {shards}: need at least 1")
    out = check_writable(cfg.runner.out)
    outcomes = [Outcome(job) for job in make_jobs(command, config_path, overrides, out, shards)]
    for oc in outcomes:
        if done_record(out, command, oc.job.shard, cfg) is not None:
            oc.status, oc.note = "skipped", "finished earlier with this config"
    todo = [oc for oc in outcomes if oc.status == "pending"]
    if todo:
        bar = ItemBar(out, [oc.job for oc in todo], cfg.runner.progress)
        try:
            RUNNERS[launcher](todo, cfg, out, bar, shards)
        finally:
            bar.close()
    summary(outcomes)
    failed = [oc for oc in outcomes if oc.status == "failed"]
    if failed:
        raise UsageError(f"{len(failed)} of {shards} shards failed; first: shard {failed[0].job.shard}: "
                         f"{failed[0].note}; fix it and re-run the same command (finished shards are skipped)")
    if any(oc.status == "submitted" for oc in outcomes):
        print(f"not waiting (runner.slurm.wait is false): when the jobs end, run `neuronimp merge {out}`")
        return []
    return merge_written(out, outcomes, shards) if shards > 1 else []


def summary(outcomes: list[Outcome]) -> None:
    """Print one line per shard: status, seconds, log or note."""
    rows = [{"shard": str(oc.job.shard), "status": oc.status,
             "seconds": "-" if oc.seconds is None else f"{oc.seconds:.1f}", "note": oc.note} for oc in outcomes]
    print_table(pd.DataFrame(rows), f"{outcomes[0].job.command}: {len(outcomes)} shards")
