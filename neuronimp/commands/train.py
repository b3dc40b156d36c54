"""`neuronimp train`: train the configured model; write the checkpoint and a metrics JSON beside it.

The checkpoint is a plain state dict (tensors only; loads with weights_only=True).

metrics JSON: {"history": [{epoch, train_acc, train_loss, test_acc, test_loss, dev_acc?, ...}], "final": {...},
"best_epoch": int, "reached_fit_target": bool|null} plus the usual metadata (config, commit, versions).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from neuronimp.runner.context import Context
from neuronimp.runner.io import atomic_path, write_text
from neuronimp.runner.progress import print_table
from neuronimp import training
from neuronimp.training import checkpoint_state, fit


def save_checkpoint(state: dict, path: Path) -> None:
    """Save a tensors-only checkpoint atomically, with its sidecar; refuses NaN weights (neuronimp.checkpoints)."""
    training.save_checkpoint(path, state)


def run(ctx: Context) -> Path:
    """Train, then write the checkpoint (cfg.train.checkpoint) and `<checkpoint>.metrics.json`."""
    cfg = ctx.cfg
    evals = {"train": ctx.data.train, "test": ctx.data.test}
    if ctx.data.dev is not None:  # none: `fit` warns when train.select_on_dev asks for one
        evals["dev"] = ctx.data.dev
    res = fit(ctx.bundle.model, ctx.data.train, cfg.train, embed=ctx.bundle.embed, evals=evals,
              device=ctx.device, dtype=ctx.dtype, seed=cfg.seed, show=cfg.runner.progress,
              desc=f"train {cfg.model.name}")
    ckpt = Path(cfg.train.checkpoint)
    save_checkpoint(checkpoint_state(ctx.bundle), ckpt)
    record = ctx.meta({"command": "train", "history": res.history, "final": res.final,
                       "best_epoch": res.best_epoch, "reached_fit_target": res.reached_fit_target})
    metrics = ckpt.with_suffix(".metrics.json")
    write_text(metrics, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    import pandas as pd

    print_table(pd.DataFrame([{"model": cfg.model.name, "data": cfg.data.name, "epochs": len(res.history),
                               "best_epoch": res.best_epoch, **res.final}]), f"checkpoint: {ckpt}")
    return ckpt
