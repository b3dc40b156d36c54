"""The `ablate` study (Study 1): ablate units in order of importance until the prediction flips.

Dhamdhere et al. 2018, sec. 5; the search itself is `studies/flips.py`. Tables (shard files carry the tag):
  ablate.csv          one row per (image, layer, method, draw, ablation), with the layer's units and unit_axis (an
                      ablated feature is ablated in every token); see results/README.md. Rows of an
                      order from a method with a completeness delta carry it (`delta`, relative `rel_delta`), and
                      conductance orders the n_steps used per image (`steps`).
  ablate_logits.csv   the target logit at every k = 0..K (only with ablate.record_logits)
  ablate_summary.csv  per (layer, method, ablation): k_flip statistics (also .md, and printed); unsharded
                      runs only (a shard's summary would not survive a merge: `neuronimp report` makes it)
"""
from __future__ import annotations

from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field

from neuronimp.errors import UsageError
from neuronimp.hooks import frozen
from neuronimp.methods import compute_scores, delta_warnings, needs_stats, random_scores
from neuronimp.methods.ablation import ablation_value
from neuronimp.methods.units import layer_layouts
from neuronimp.probe import Probe
from neuronimp.schema import Strict
from neuronimp.studies.base import Outputs, Study, register_study
from neuronimp.studies.flips import PAPER, ImageBatch, ablation_rows, summarize
from neuronimp.studies.tabulate import markdown
from neuronimp.studies.inputs import baseline_for, input_mean, statistics, targets, unit_choice

LOGIT_COLUMNS = ["image_id", "layer", "method", "ablation", "draw", "k", "target_logit"]


class AblateCfg(Strict):
    """Study 1: ablation until the prediction flips (Dhamdhere et al. 2018, sec. 5)."""

    ablation: list[Literal["zero", "mean", "baseline"]] = Field(default_factory=lambda: ["zero"])
    max_k: int = Field(default=64, ge=1)  # K: stop at k = min(K, units) when the label has not flipped
    random_draws: int = Field(default=3, ge=0, le=1000)  # random orders per image (method "random")
    record_logits: bool = False  # also record the target logit at every k = 0..K (no early stop)
    correlation: bool = True  # rank correlation of scores with single-unit ablation drops
    chunk: int = Field(default=4, ge=1)  # k values per image in the first suffix batch; doubles after
    max_rows: int = Field(default=512, ge=1)  # ablated activations per suffix call (memory bound)


@register_study
class Ablate(Study):
    """Study 1: ablate units in order of importance until the prediction flips."""

    name = "ablate"
    help = "Study 1: ablate units in order of importance until the prediction flips."
    section = AblateCfg
    tables = ("ablate", "ablate_logits")
    columns = {"ablate_logits": LOGIT_COLUMNS}
    optional = ("ablate_logits",)  # only with ablate.record_logits

    def check(self, ctx: Any) -> None:
        """Random orders need draws; layer names resolve (an unknown one lists the layers)."""
        if "random" in ctx.cfg.methods and ctx.cfg.ablate.random_draws == 0:
            raise UsageError("methods lists 'random' but ablate.random_draws = 0; set ablate.random_draws >= 1 "
                             "or drop 'random' from methods")
        _ = ctx.layers
        _ = unit_choice(ctx)

    def prepare(self, ctx: Any, items: list[int]) -> dict[str, Any]:
        """Layer statistics (mean ablation, statistics-based orders), the input mean, a probe cache."""
        cfg = ctx.cfg
        want = needs_stats(cfg.methods, ctx.params) or "mean" in cfg.ablate.ablation
        return {"ds": ctx.split(), "stats": statistics(ctx, ctx.layers) if want else {},
                "mean": input_mean(ctx) if cfg.attribution.baseline == "mean" else None, "probes": {}}

    def rows(self, ctx: Any, state: dict[str, Any], chunk: list[int]) -> dict[str, list[dict]]:
        """Flip rows (and logit traces) of one batch of images."""
        cfg, model, probes, choice = ctx.cfg, ctx.bundle.model, state["probes"], unit_choice(ctx)
        flips: list[dict] = []
        logits: list[dict] = []
        for ids, x, y in ctx.batches(state["ds"], chunk):
            t, pred = targets(ctx, x, y)
            base = baseline_for(ctx, x, state["mean"])
            layouts = layer_layouts(model, ctx.layers, x[:1], choice)  # refuses a layer that cannot be scored
            for layer in ctx.layers:
                if layer not in probes:
                    probes[layer] = Probe(model, layer, x[:1])
            with frozen(model), torch.no_grad():
                acts = {layer: probes[layer].prefix(x) for layer in ctx.layers}  # once per image and layer
            orders, deltas = order_scores(ctx, ids, x, base, t, {l: lay.units for l, lay in layouts.items()}, state)
            with frozen(model), torch.no_grad():
                for layer in ctx.layers:
                    p = probes[layer]
                    values = ablation_values(cfg.ablate.ablation, p, acts[layer], base, state["stats"])
                    batch = ImageBatch(ids.cpu(), y.cpu(), pred, t, x, acts[layer], layouts[layer].axis)
                    for row in ablation_rows(p, batch, layer, orders[layer], values, cfg.ablate):
                        trace = row.pop("target_logits")
                        d = deltas.get((layer, row["method"]), {}).get(row["image_id"], (None, None, None))
                        flips.append({**row, "delta": d[0], "rel_delta": d[1], "steps": d[2]})
                        logits += [{"image_id": row["image_id"], "layer": layer, "method": row["method"],
                                    "ablation": row["ablation"], "draw": row["draw"], "k": k, "target_logit": v}
                                   for k, v in enumerate(trace)]
        return {"ablate": flips, "ablate_logits": logits}

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """The k_flip summary (unsharded runs), as a table, markdown and the printed summary."""
        table = tables["ablate"]
        if shard.count > 1:  # a shard's summary would be wrong once the shards are merged
            return Outputs(printed=[(f"shard {shard} written to {ctx.out / ('ablate' + shard.tag)}.csv; after "
                                     "`neuronimp merge`, `neuronimp report` gives the summary", None)])
        if table.empty:
            return Outputs()
        summary = summarize(table)
        return Outputs(tables={"ablate_summary": summary},
                       texts={"ablate_summary.md": markdown(summary, 3) + f"\n{PAPER}.\n"},
                       printed=[(f"ablation until the flip: {ctx.out / 'ablate'}.{ctx.cfg.runner.format}\n{PAPER}",
                                 summary)])


def order_scores(ctx: Any, ids: torch.Tensor, x: torch.Tensor, base: torch.Tensor, t: torch.Tensor,
                 units: dict[str, int], state: dict[str, Any]
                 ) -> tuple[dict[str, dict[tuple[str, int], torch.Tensor]], dict[tuple[str, str], dict[int, tuple]]]:
    """Per layer {(method, draw): scores [B, U]} (`random` gives ablate.random_draws draws), and per
    (layer, method) {image id: (delta, relative delta)} for methods with a completeness delta."""
    cfg = ctx.cfg
    engine = [m for m in cfg.methods if m != "random"]
    out: dict[str, dict[tuple[str, int], torch.Tensor]] = {layer: {} for layer in ctx.layers}
    deltas: dict[tuple[str, str], dict[int, tuple]] = {}
    if engine:
        with ctx.autocast():
            s = compute_scores(ctx.bundle.model, x, base, t, ctx.layers, engine, ctx.params, ids=ids.cpu(),
                               stats=state["stats"], probes=state["probes"], units=unit_choice(ctx))
        for (layer, m), d in s.deltas.items():
            rel = s.relative_delta(layer, m)
            steps = s.steps.tolist() if s.steps is not None and m == "conductance" else [None] * len(ids)
            deltas[(layer, m)] = {int(i): (float(d[b]), float(rel[b]), steps[b]) for b, i in enumerate(ids)}
        for msg in delta_warnings(s, ctx.params):
            ctx.warn_once(msg)
    for m in cfg.methods:
        for layer in ctx.layers:
            if m != "random":
                out[layer][(m, 0)] = s.scores[(layer, m)]
                continue
            for d in range(cfg.ablate.random_draws):
                out[layer][(m, d)] = random_scores(ids.cpu(), units[layer], cfg.attribution.random_seed, d)
    return out, deltas


def ablation_values(kinds: list[str], probe: Probe, a: torch.Tensor, base: torch.Tensor, stats: dict
                    ) -> dict[str, torch.Tensor]:
    """{kind: replacement activation [1 or B, *shape]} for the configured ablations."""
    out = {}
    for kind in kinds:
        mean = stats[probe.layer].mean if kind == "mean" else None
        a0 = probe.prefix(base) if kind == "baseline" else None  # [1 or B, U, *s]
        out[kind] = ablation_value(kind, a, mean, a0)
    return out
