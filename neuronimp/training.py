"""Training loop for the zoo's small image nets and the Kim CNN (plain supervised cross-entropy).

`fit` is a plain function so the studies can train many networks (corruption levels x seeds) with it. It stops
with a one-line UsageError at the first non-finite loss, and `save_checkpoint` (from neuronimp.checkpoints)
refuses non-finite weights, writes atomically and records size + SHA-256 beside the file: a run that goes
wrong never replaces a good checkpoint.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from pydantic import Field
from torch.utils.data import DataLoader, Dataset

from neuronimp.checkpoints import save_checkpoint, verify_checkpoint  # noqa: F401  (re-exported)
from neuronimp.errors import UsageError
from neuronimp.runner.progress import progress
from neuronimp.schema import Strict


class TrainCfg(Strict):
    """Training hyper-parameters (`neuronimp train`)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adam", "sgd", "adadelta"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    adadelta_rho: float = Field(default=0.95, gt=0, lt=1)
    max_norm: float | None = Field(default=None, gt=0)
    fit_target: float | None = Field(default=None, gt=0, le=1)  # stop once train accuracy reaches this
    select_on_dev: bool = False  # report test accuracy at the best dev epoch (Kim 2014)
    checkpoint: str = "results/checkpoints/model.pt"


@dataclass
class FitResult:
    """Per-epoch metrics and the summary of a training run."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    reached_fit_target: bool | None = None
    final: dict[str, float] = field(default_factory=dict)


def evaluate(model: nn.Module, embed: nn.Module | None, ds: Dataset, device: torch.device, dtype: torch.dtype,
             batch_size: int = 512) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `model` on `ds` (eval mode)."""
    was = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    with torch.no_grad():
        for x, y in DataLoader(ds, batch_size=batch_size):
            x, y = _inp(x, embed, device, dtype), y.to(device)
            out = model(x)
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    model.train(was)
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1)}


def _inp(x: torch.Tensor, embed: nn.Module | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(device)
    return (embed(x) if embed is not None else x).to(dtype)


def _optimizer(params: list[nn.Parameter], cfg: TrainCfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adadelta(params, lr=cfg.lr, rho=cfg.adadelta_rho, eps=1e-6, weight_decay=cfg.weight_decay)


def _max_norm(model: nn.Module, limit: float) -> None:
    """Kim (2014): rescale each row of the last linear layer's weight to L2 norm <= limit."""
    from neuronimp.models.kim_cnn import apply_max_norm

    apply_max_norm([m for m in model.modules() if isinstance(m, nn.Linear)][-1], limit)


def fit(
    model: nn.Module,
    train: Dataset,
    cfg: TrainCfg,
    *,
    embed: nn.Module | None = None,
    evals: dict[str, Dataset] | None = None,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    show: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train with cross-entropy; evaluate every epoch on `evals`; keep the best-dev weights on request.

    `cfg.select_on_dev` needs an `evals["dev"]`; without one it warns and keeps the last epoch's weights.
    """
    evals = evals or {}
    if cfg.select_on_dev and "dev" not in evals:
        warnings.warn("train.select_on_dev is set but the data has no dev split: no epoch selection, the last "
                      "epoch's weights are kept (give the data a dev split, e.g. data.options.dev_fraction)",
                      stacklevel=2)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=False)
    params = [p for p in model.parameters() if p.requires_grad]
    if embed is not None:
        params += [p for p in embed.parameters() if p.requires_grad]
    opt = _optimizer(params, cfg)
    res = FitResult()
    best, best_state = -1.0, None
    bar = progress(total=cfg.epochs * len(loader), desc=desc, show=show, unit="batch")
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            if embed is not None:
                embed.train()
            seen, correct, total_loss = 0, 0, 0.0
            for batch, (x, y) in enumerate(loader, start=1):
                x, y = _inp(x, embed, device, dtype), y.to(device)
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = nn.functional.cross_entropy(out, y)
                value = loss.item()
                if not math.isfinite(value):  # stop before the step: NaN weights are never kept
                    raise UsageError(f"loss is {value} at epoch {epoch}, batch {batch}: the data holds NaN/inf or "
                                     f"the learning rate ({cfg.lr:g}) is too high; training stopped, no checkpoint "
                                     "written")
                loss.backward()
                opt.step()
                if cfg.max_norm:
                    _max_norm(model, cfg.max_norm)
                seen += len(y)
                correct += int((out.argmax(1) == y).sum())
                total_loss += value * len(y)
                bar.update(1)
            model.eval()
            if embed is not None:
                embed.eval()
            row: dict[str, float] = {"epoch": epoch, "train_loss_running": total_loss / seen,
                                     "train_acc_running": correct / seen}
            for name, ds in evals.items():
                m = evaluate(model, embed, ds, device, dtype)
                row[f"{name}_acc"], row[f"{name}_loss"] = m["acc"], m["loss"]
            res.history.append(row)
            bar.set_postfix({k: round(v, 3) for k, v in row.items() if k.endswith("_acc")})
            if cfg.select_on_dev and "dev_acc" in row and row["dev_acc"] > best:
                best, res.best_epoch = row["dev_acc"], epoch
                best_state = (copy.deepcopy(model.state_dict()),
                              copy.deepcopy(embed.state_dict()) if embed is not None else None)
            fit_acc = row.get("train_acc", row["train_acc_running"])
            if cfg.fit_target is not None and fit_acc >= cfg.fit_target:
                res.reached_fit_target = True
                break
        else:
            if cfg.fit_target is not None:
                res.reached_fit_target = False
    finally:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state[0])
        if embed is not None and best_state[1] is not None:
            embed.load_state_dict(best_state[1])
    else:
        res.best_epoch = len(res.history)
    model.eval()
    if embed is not None:
        embed.eval()
    res.final = {f"{k}_acc": evaluate(model, embed, ds, device, dtype)["acc"] for k, ds in evals.items()}
    return res


def checkpoint_state(bundle: Any) -> dict[str, Any]:
    """A tensors-only checkpoint (loadable with weights_only=True) of the model and, for text, its embedding."""
    from neuronimp.models import checkpoint_module

    return checkpoint_module(bundle).state_dict()
