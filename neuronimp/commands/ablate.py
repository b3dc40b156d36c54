"""`neuronimp ablate`: Study 1, ablation in order of importance until the prediction flips.

Writes (in runner.out, shard files carry the shard tag):
  ablate.csv          one row per (image, layer, method, draw, ablation); see results/README.md
  ablate_logits.csv   the target logit at every k = 0..K (only with ablate.record_logits)
  ablate_summary.csv  per (layer, method, ablation): k_flip statistics (also .md, and printed); unsharded
                      runs only (a shard's summary would not survive a merge)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from neuronimp.commands.common import baseline_for, input_mean, needs_stats, statistics, targets
from neuronimp.errors import UsageError
from neuronimp.hooks import frozen
from neuronimp.methods import compute_scores
from neuronimp.methods.ablation import ablation_value
from neuronimp.methods.engine import random_scores
from neuronimp.probe import Probe
from neuronimp.runner.context import Context
from neuronimp.runner.io import write_table, write_text
from neuronimp.runner.progress import print_table
from neuronimp.runner.shards import Shard, run_batches
from neuronimp.studies.ablate import PAPER, ImageBatch, ablation_rows, markdown, summarize

LOGIT_COLUMNS = ["image_id", "layer", "method", "ablation", "draw", "k", "target_logit"]


def order_scores(ctx: Context, ids: torch.Tensor, x: torch.Tensor, base: torch.Tensor, t: torch.Tensor,
                 units: dict[str, int], stats: dict, probes: dict) -> dict[str, dict[tuple[str, int], torch.Tensor]]:
    """Per layer: {(method, draw): scores [B, U]}; method `random` gives `ablate.random_draws` draws."""
    cfg = ctx.cfg
    engine = [m for m in cfg.methods if m != "random"]
    out: dict[str, dict[tuple[str, int], torch.Tensor]] = {layer: {} for layer in ctx.layers}
    if engine:
        with ctx.autocast():
            s = compute_scores(ctx.bundle.model, x, base, t, ctx.layers, engine, cfg.attribution, ids=ids.cpu(),
                               stats=stats, probes=probes, warn=False)
    for m in cfg.methods:
        for layer in ctx.layers:
            if m != "random":
                out[layer][(m, 0)] = s.scores[(layer, m)]
                continue
            for d in range(cfg.ablate.random_draws):  # draw d uses seed random_seed * 1000 + d
                seed = cfg.attribution.random_seed * 1000 + d
                out[layer][(m, d)] = random_scores(ids.cpu(), units[layer], seed)
    return out


def ablation_values(ctx: Context, probe: Probe, a: torch.Tensor, base: torch.Tensor, stats: dict) -> dict[str, torch.Tensor]:
    """{kind: replacement activation [1 or B, U, *s]} for the configured ablations."""
    out = {}
    for kind in ctx.cfg.ablate.ablation:
        mean = stats[probe.layer].mean if kind == "mean" else None
        a0 = probe.prefix(base) if kind == "baseline" else None  # [1 or B, U, *s]
        out[kind] = ablation_value(kind, a, mean, a0)
    return out


def check(ctx: Context) -> None:
    """Config problems the validator cannot see: random without draws."""
    if "random" in ctx.cfg.methods and ctx.cfg.ablate.random_draws == 0:
        raise UsageError("methods lists 'random' but ablate.random_draws = 0; set ablate.random_draws >= 1 "
                         "or drop 'random' from methods")


def run(ctx: Context, shard: Shard) -> Path:
    """Run the flip study over the configured split, resumably; write the tables and their metadata."""
    cfg = ctx.cfg
    check(ctx)
    layers = ctx.layers  # resolves names first: an unknown layer is a UsageError listing the layers
    ds = ctx.split()
    items = shard.select(list(range(len(ds))))
    want_stats = needs_stats(cfg.methods) or "mean" in cfg.ablate.ablation
    stats = statistics(ctx, layers) if want_stats else {}
    in_mean = input_mean(ctx) if cfg.attribution.baseline == "mean" else None
    probes: dict[str, Probe] = {}

    def work(chunk: list[int]) -> list[dict]:
        rows: list[dict] = []
        for ids, x, y in ctx.batches(ds, chunk):
            t, pred = targets(ctx, x, y)
            base = baseline_for(ctx, x, in_mean)
            for layer in layers:
                if layer not in probes:
                    probes[layer] = Probe(ctx.bundle.model, layer, x[:1])
            with frozen(ctx.bundle.model), torch.no_grad():
                acts = {layer: probes[layer].prefix(x) for layer in layers}  # once per image and layer
            units = {layer: acts[layer].shape[1] for layer in layers}
            scores = order_scores(ctx, ids, x, base, t, units, stats, probes)
            with frozen(ctx.bundle.model), torch.no_grad():
                for layer in layers:
                    p = probes[layer]
                    values = ablation_values(ctx, p, acts[layer], base, stats)
                    batch = ImageBatch(ids.cpu(), y.cpu(), pred, t, x, acts[layer])
                    rows += [r for row in ablation_rows(p, batch, layer, scores[layer], values, cfg.ablate)
                             for r in _flat(row)]
        return rows

    parts = ctx.out / "parts" / f"ablate{shard.tag}"
    key = {**cfg.model_dump(mode="json"), "weights_digest": ctx.weights_digest}  # a retrained checkpoint: new key
    df = run_batches(items, work, parts, cfg.runner.batch_size, key=key,
                     desc="ablate", show=cfg.runner.progress, unit="img")
    table = _flips(df)
    path = write_table(table.reset_index(drop=True), ctx.out / f"ablate{shard.tag}", cfg.runner.format)
    meta = {"command": "ablate", "shard": f"{shard.index}/{shard.count}"}
    ctx.write_meta(path, meta)
    if cfg.ablate.record_logits and len(df):
        lg = df[df["table"] == "logits"].drop(columns=["target_logit"])
        lg = lg.rename(columns={"target_logit_k": "target_logit"})[LOGIT_COLUMNS]
        lg = lg.astype({"image_id": int, "draw": int, "k": int})
        ctx.write_meta(write_table(lg.reset_index(drop=True), ctx.out / f"ablate_logits{shard.tag}",
                                   cfg.runner.format), meta)
    if shard.count > 1:  # a shard's summary would be wrong once the shards are merged: summarize the merge
        print(f"shard {shard.index}/{shard.count} written to {path}; after `neuronimp merge`, "
              "neuronimp.studies.ablate.summarize(table) gives the summary")
    elif len(table):
        summary = summarize(table)
        spath = write_table(summary, ctx.out / f"ablate_summary{shard.tag}", "csv")
        ctx.write_meta(spath, meta)
        write_text(spath.with_suffix(".md"), markdown(summary) + f"\n{PAPER}.\n")
        print_table(summary, f"ablation until the flip: {path}\n{PAPER}")
    return path


def _flips(df: pd.DataFrame) -> pd.DataFrame:
    """The flips rows of the tagged part tables, with boolean columns read back as booleans."""
    if df.empty:
        return df
    out = df[df["table"] == "flips"].drop(columns=["table", "k", "target_logit_k"], errors="ignore")
    for col in ("flipped", "never_flips"):
        out[col] = out[col].map(lambda v: v is True or str(v) == "True")
    return out


def _flat(row: dict) -> list[dict]:
    """A study row -> the flips row plus one logits row per k (all tagged with their table)."""
    trace = row.pop("target_logits")
    out = [{"table": "flips", **row}]
    for k, v in enumerate(trace):
        out.append({"table": "logits", "image_id": row["image_id"], "layer": row["layer"], "method": row["method"],
                    "ablation": row["ablation"], "draw": row["draw"], "k": k, "target_logit_k": v})
    return out
