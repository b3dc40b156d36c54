"""The `score` study: per-unit importance of every (input, layer, method), in long format.

Columns of scores.csv: input_id, label, target, layer, unit, unit_axis (channel | feature | token: what the unit
is summed over), method, score, delta (the method's per-input completeness or conservation delta, blank for methods
without one), steps (path methods: the n_steps used for the input, which `attribution.n_steps: auto` chooses per
input; see results/README.md).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from neuronimp.methods import compute_scores, delta_warnings, needs_stats, spec
from neuronimp.studies.base import Outputs, Study, register_study
from neuronimp.studies.inputs import baseline_for, input_mean, statistics, targets, unit_choice


@register_study
class Score(Study):
    """Per-unit importance of every (input, layer, method): scores.csv in long format."""

    name = "score"
    help = "Per-unit importance of every (input, layer, method): scores.csv in long format."
    tables = ("scores",)

    def check(self, ctx: Any) -> None:
        """Layer names and the `units:` entries resolve."""
        _ = unit_choice(ctx)

    def prepare(self, ctx: Any, items: list[int]) -> dict[str, Any]:
        """Dataset statistics (when a method needs them), the input mean (mean baseline) and a probe cache."""
        stats = statistics(ctx, ctx.layers) if needs_stats(ctx.cfg.methods, ctx.params) else {}
        mean = input_mean(ctx) if ctx.cfg.attribution.baseline == "mean" else None
        return {"stats": stats, "mean": mean, "probes": {}, "ds": ctx.split()}

    def rows(self, ctx: Any, state: dict[str, Any], chunk: list[int]) -> dict[str, list[dict]]:
        """One row per (input, layer, method, unit)."""
        rows: list[dict] = []
        for ids, x, y in ctx.batches(state["ds"], chunk):
            t, _ = targets(ctx, x, y)
            base = baseline_for(ctx, x, state["mean"])
            with ctx.autocast():
                s = compute_scores(ctx.bundle.model, x, base, t, ctx.layers, ctx.cfg.methods, ctx.params,
                                   ids=ids.cpu(), stats=state["stats"], probes=state["probes"], units=unit_choice(ctx))
            for msg in delta_warnings(s, ctx.params):
                ctx.warn_once(msg)
            for (layer, method), sc in s.scores.items():
                sc = sc.detach().double().cpu()
                delta = s.delta(layer, method)
                delta = delta.detach().double().cpu() if delta is not None else None
                steps = s.steps.tolist() if s.steps is not None and spec(method).path else None
                for b in range(sc.shape[0]):
                    d = float(delta[b]) if delta is not None else None
                    for u in range(sc.shape[1]):
                        rows.append({"input_id": int(ids[b]), "label": int(y[b]), "target": int(t[b]),
                                     "layer": layer, "unit": u, "unit_axis": s.axis(layer), "method": method,
                                     "score": float(sc[b, u]), "delta": d,
                                     "steps": steps[b] if steps is not None else None})
        return {"scores": rows}

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """The printed summary: mean score per (layer, method) and the largest |delta|."""
        df = tables["scores"]
        if df.empty:
            return Outputs()
        summary = df.groupby(["layer", "method"], sort=False).agg(mean_score=("score", "mean"),
                                                                  rows=("score", "size"))
        if "delta" in df and df["delta"].notna().any():  # max |sum_u score_u - reference| over inputs
            worst = df.dropna(subset=["delta"]).groupby(["layer", "method"]).delta.apply(lambda d: d.abs().max())
            summary["max_abs_delta"] = [worst.get(k) for k in summary.index]
        return Outputs(printed=[(f"scores written to {ctx.out / ('scores' + shard.tag)}", summary.reset_index())])
