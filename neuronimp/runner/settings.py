"""The runner's config sections: where and how a study runs (device, batching, output, Slurm)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from neuronimp.schema import Strict


class SlurmCfg(Strict):
    """`--launcher slurm`: the job array's resources, passed to submitit (docs/runner_notes.md)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int = Field(default=1, ge=0)
    cpus_per_task: int = Field(default=4, ge=1)
    mem_gb: float = Field(default=16.0, gt=0)
    timeout_min: int = Field(default=60, ge=1)
    array_parallelism: int = Field(default=32, ge=1)  # shards running at once
    setup: list[str] = Field(default_factory=list)  # shell lines run first in each job (module load ...)
    additional: dict[str, Any] = Field(default_factory=dict)  # any other sbatch option, e.g. {exclude: node7}
    cluster: Literal["slurm", "local", "debug"] = "slurm"  # submitit executor; local/debug try it without Slurm
    wait: bool = True  # wait for the array, then merge; false: print the job ids and return


class RunnerCfg(Strict):
    """Where and how it runs: device, batching, output, sharding."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = Field(default=32, ge=1)
    num_workers: int = Field(default=0, ge=0)
    dtype: Literal["float32", "float64"] = "float32"
    autocast: Literal["none", "bf16", "fp16"] = "none"
    tf32: bool = False
    channels_last: bool = False
    threads: int | None = Field(default=None, ge=1)  # CPU threads of torch (set_num_threads); default: torch's
    out: str = "results/run"
    format: Literal["csv", "parquet"] = "csv"
    progress: bool = True
    parallel: int | None = Field(default=None, ge=1)  # --launcher local: shards at once (default: GPUs or cores)
    slurm: SlurmCfg = Field(default_factory=SlurmCfg)
