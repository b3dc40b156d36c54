"""The run context: the loaded model and data on a device, and batching of inputs.

Built once per command from a validated Config; studies receive tensors from it, never paths.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from neuronimp.config import Config, dump_config
from neuronimp.data import DataBundle, labels_of, load_data, take
from neuronimp.digest import file_digest
from neuronimp.errors import UsageError, one_line, shown
from neuronimp.methods.params import MethodParams
from neuronimp.models import ModelBundle, create_model, model_options, resolve_layer
from neuronimp.runner.guard import check_finite
from neuronimp.runner.io import metadata_record, write_meta, write_text
from neuronimp.runner.preflight import check_context

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def available_devices() -> list[str]:
    """The devices of this machine, as runner.device names: auto, cpu, cuda:N ..., mps."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a device this machine does not have is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = available_devices()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"runner.device = {shown(name)} is not a device name; available here: "
                         f"{', '.join(here)}") from None
    if dev.type == "cpu":
        return dev
    ok = (dev.type == "cuda" and torch.cuda.is_available()
          and (dev.index is None or dev.index < torch.cuda.device_count())) or \
        (dev.type == "mps" and "mps" in here)
    if not ok:
        raise UsageError(f"runner.device = {shown(name)} is not available on this machine; available here: "
                         f"{', '.join(here)}")
    return dev


@dataclass
class Context:
    """Everything a command needs: config, model, data, device, dtype and the output folder."""

    cfg: Config
    bundle: ModelBundle
    data: DataBundle
    device: torch.device
    dtype: torch.dtype
    out: Path
    verbose: bool = True  # print summaries (the CLI); the Python API runs quietly
    notes: set[str] = field(default_factory=set)  # one-line warnings, emitted once at the end of a run

    @property
    def params(self) -> MethodParams:
        """The methods' parameters (`attribution:` of the config)."""
        return self.cfg.attribution.params()

    def warn_once(self, message: str | None) -> None:
        """Keep a one-line warning for the end of the run (each distinct message once)."""
        if message:
            self.notes.add(message)

    @property
    def layers(self) -> list[str]:
        """The configured layers resolved to module paths (aliases accepted)."""
        names = self.cfg.layers or [self.bundle.default_layer]
        return [resolve_layer(self.bundle, n) for n in names]

    def split(self, name: str | None = None, limit: int | None = None) -> Dataset:
        """A split of the data ('train', 'test', 'dev'), cut to `limit` items (first N)."""
        name = name or self.cfg.data.split
        ds = {"train": self.data.train, "test": self.data.test, "dev": self.data.dev}.get(name)
        if ds is None:
            raise UsageError(f"data.split = {name!r}: the dataset {self.cfg.data.name!r} has no such split")
        lim = limit if limit is not None else self.cfg.data.limit
        return take(ds, lim) if lim else ds

    def to_input(self, x: torch.Tensor, embed: nn.Module | None = None) -> torch.Tensor:
        """Raw batch -> the float tensor the model takes (token ids go through the embedding).

        `embed` replaces the context's `bundle.embed` (e.g. the trained embedding of a network the delete study
        trains itself); None keeps the context's.
        """
        x = x.to(self.device, non_blocking=True)
        embed = embed if embed is not None else self.bundle.embed
        if embed is not None:
            with torch.no_grad():
                x = embed(x)
        x = x.to(self.dtype)
        if self.cfg.runner.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def batches(self, ds: Dataset, ids: list[int] | None = None, batch_size: int | None = None,
                embed: nn.Module | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (ids, x, y): ids and y as LongTensors, x the model's float input on the device.

        Token ids go through `embed` when given, else the context's `bundle.embed` (see `to_input`).
        A batch holding NaN or inf inputs raises UsageError naming the input ids.
        """
        ids = list(range(len(ds))) if ids is None else ids
        sub = torch.utils.data.Subset(ds, ids)
        loader = DataLoader(sub, batch_size=batch_size or self.cfg.runner.batch_size, shuffle=False,
                            num_workers=self.cfg.runner.num_workers, pin_memory=self.device.type == "cuda")
        start = 0
        for x, y in _loaded(loader, self.cfg.data.name):
            n = x.shape[0]
            batch_ids = torch.tensor(ids[start : start + n])
            check_finite(batch_ids, x)  # NaN/inf inputs are a usage error naming the ids
            yield batch_ids, self.to_input(x, embed), y.to(self.device)
            start += n

    def labels(self, ds: Dataset) -> torch.Tensor:
        """All labels of a dataset, [N]."""
        return labels_of(ds)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16/fp16 autocast when configured (the completeness delta shows what it costs)."""
        mode = self.cfg.runner.autocast
        if mode == "none":
            return contextlib.nullcontext()
        dt = torch.bfloat16 if mode == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dt)

    def meta(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The metadata record written beside every result of this run."""
        import yaml

        return metadata_record(yaml.safe_load(dump_config(self.cfg)), str(self.device), extra)

    def write_json(self, path: Path, record: dict[str, Any]) -> None:
        """Write a JSON record atomically (e.g. a cached network's training metrics)."""
        write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")

    def save_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Save a tensors-only checkpoint atomically with its size/SHA-256 sidecar (non-finite weights refused)."""
        from neuronimp.checkpoints import save_checkpoint

        save_checkpoint(path, state)

    def write_meta(self, table: Path, extra: dict[str, Any] | None = None) -> None:
        """Write `<table>.meta.json`."""
        write_meta(table, self.meta(extra))


def _loaded(loader: DataLoader, data: str) -> Iterator[Any]:
    """Iterate a DataLoader; a UsageError raised in a worker process (runner.num_workers >= 1) comes back as
    its own one-line message, without torch's worker traceback, and items of unequal shapes are one line.

    Workers are shut down as soon as the iteration stops early (an error, or a consumer that stops reading):
    left to the garbage collector, torch waits 5 s for each worker.
    """
    it = iter(loader)
    try:
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except UsageError as err:
                raise UsageError(one_line(err)) from None
            except RuntimeError as err:
                if "stack expects each tensor to be equal size" not in str(err):
                    raise
                raise UsageError(f"data set {data!r} gives inputs of different shapes in one batch "
                                 f"({one_line(err)[:160]}); resize them to the model's input shape") from None
            yield batch
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # torch's multi-process iterator only
        if shutdown is not None:
            shutdown()


def file_digests(cfg: Config) -> dict[str, str]:
    """SHA-256 of every file a config reads as a value (the checkpoint, a baseline tensor): what resume keys
    and done markers need so that a file replaced at the same path never reuses results made with the old."""
    out = {}
    for key, value in (("model.weights", cfg.model.weights), ("attribution.baseline", cfg.attribution.baseline)):
        path = Path(str(value)).expanduser()
        if value not in ("none", "imagenet", "zero", "mean", "blur") and path.is_file():
            out[key] = "sha256:" + file_digest(path)
    return out


def build_context(cfg: Config, *, weights: str | None = None, need_data: bool = True) -> Context:
    """Load model and data for `cfg` on its device."""
    torch.manual_seed(cfg.seed)
    if cfg.runner.threads:  # e.g. 1 per process when several share a machine (oversubscription is slow)
        torch.set_num_threads(cfg.runner.threads)
    if cfg.runner.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    device = pick_device(cfg.runner.device)
    dtype = DTYPES[cfg.runner.dtype]
    data_opts = dict(cfg.data.options)
    model_opts = dict(cfg.model.options)
    weights = weights or cfg.model.weights
    if cfg.data.name == "imagenet_folder":  # the images need the model's own preprocessing
        bundle = create_model(cfg.model.name, weights=weights, **model_opts)
        data = load_data(cfg.data.name, transform=bundle.transform, **data_opts) if need_data else None
    else:
        data = load_data(cfg.data.name, **data_opts) if need_data else None
        model_opts = model_options(data, model_opts)  # text: the vocabulary sizes the embedding
        num_classes = data.num_classes if data is not None else None
        bundle = create_model(cfg.model.name, weights=weights, num_classes=num_classes, **model_opts)
    bundle.model.to(device=device, dtype=dtype)
    if bundle.embed is not None:
        bundle.embed.to(device=device, dtype=dtype)
    if cfg.runner.channels_last:
        bundle.model.to(memory_format=torch.channels_last)
    ctx = Context(cfg, bundle, data, device, dtype, Path(cfg.runner.out))
    check_context(ctx)  # weights, layers, target, input shape: one line before any work starts
    return ctx
