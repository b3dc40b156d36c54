"""`neuronimp score`: per-unit importance for every (input, layer, method), long format.

Columns: input_id, label, target, layer, unit, method, score, delta (conductance only; blank otherwise).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from neuronimp.commands.common import baseline_for, needs_stats, statistics, targets
from neuronimp.methods import compute_scores
from neuronimp.methods.engine import check_delta
from neuronimp.runner.context import Context
from neuronimp.runner.io import write_table
from neuronimp.runner.progress import print_table
from neuronimp.runner.shards import Shard, run_batches


def score_rows(ctx: Context, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor, stats: dict, probes: dict,
               delta_warnings: set[str]) -> list[dict]:
    """Rows of one batch."""
    cfg = ctx.cfg
    t, _ = targets(ctx, x, y)
    base = baseline_for(ctx, x)
    with ctx.autocast():
        s = compute_scores(ctx.bundle.model, x, base, t, ctx.layers, cfg.methods, cfg.attribution, ids=ids.cpu(),
                           stats=stats, probes=probes, warn=False)
    for layer in ctx.layers:
        msg = check_delta(s, cfg.attribution, layer)
        if msg:
            delta_warnings.add(msg)
    rows = []
    for (layer, method), sc in s.scores.items():
        sc = sc.detach().double().cpu()
        delta = s.deltas.get(layer) if method == "conductance" else None
        for b in range(sc.shape[0]):
            d = float(delta[b]) if delta is not None else None
            for u in range(sc.shape[1]):
                rows.append({"input_id": int(ids[b]), "label": int(y[b]), "target": int(t[b]), "layer": layer,
                             "unit": u, "method": method, "score": float(sc[b, u]), "delta": d})
    return rows


def run(ctx: Context, shard: Shard) -> Path:
    """Score the configured split, resumably; write scores.csv (or the shard's file) and its metadata."""
    cfg = ctx.cfg
    ds = ctx.split()
    items = shard.select(list(range(len(ds))))
    stats = statistics(ctx, ctx.layers) if needs_stats(cfg.methods) else {}
    probes: dict = {}
    delta_warnings: set[str] = set()

    def work(chunk: list[int]) -> list[dict]:
        rows = []
        for ids, x, y in ctx.batches(ds, chunk):
            rows += score_rows(ctx, ids, x, y, stats, probes, delta_warnings)
        return rows

    parts = ctx.out / "parts" / f"scores{shard.tag}"
    key = {**cfg.model_dump(mode="json"), "weights_digest": ctx.weights_digest}  # a retrained checkpoint: new key
    df = run_batches(items, work, parts, cfg.runner.batch_size, key=key,
                     desc="score", show=cfg.runner.progress, unit="img")
    for msg in sorted(delta_warnings):
        warnings.warn(msg, stacklevel=1)
    path = write_table(df, ctx.out / f"scores{shard.tag}", cfg.runner.format)
    ctx.write_meta(path, {"command": "score", "shard": f"{shard.index}/{shard.count}"})
    if not df.empty:
        summary = df.groupby(["layer", "method"]).agg(mean_score=("score", "mean"), rows=("score", "size"))
        cond = df[df.method == "conductance"].drop_duplicates(["input_id", "layer"])
        if not cond.empty:  # completeness: max |sum_u cond_u - (F(x) - F(x'))| over inputs
            worst = cond.groupby("layer").delta.apply(lambda d: d.abs().max())
            summary["max_abs_delta"] = [worst.get(l) if m == "conductance" else None for l, m in summary.index]
        print_table(summary.reset_index(), f"scores written to {path}")
    return path
