"""The `shapley` study: Neuron Shapley of a layer's units on a data set (Ghorbani & Zou 2020), and the removal
curves of their fig. 2: accuracy as the top-k units by each ranking are removed.

The game: the players are the units of a layer; v(S) = accuracy on the first `shapley.eval_limit` inputs of
`data.split` with only the units in S kept and the others ablated (zero, or their dataset mean), evaluated
through the probe's suffix on the cached activations (methods/coalitions.coalition_value). Its Shapley values
are estimated by truncated Monte Carlo over seeded permutations (methods/coalitions.permutation and walk, the
loop of methods/shapley.monte_carlo_shapley): the work items are permutation ids, so `--shard i/N` splits the
permutations, and the row table holds each permutation's marginals: `neuronimp merge` stacks them and rebuilds
shapley_values (shapley_tables.values_table) exactly as one run. The removal curves, their summary, the figure
and the bandit comparison need the whole estimate and the model: an unsharded run makes them. The curves are
measured on the next eval_limit inputs (held out from the ranking; `curves_on: same` for the same inputs).

Tables (columns in results/README.md): shapley_marginals (rows: layer, permutation, unit), shapley_values
(per unit: estimate, se, n), shapley_curves (order, draw, k, accuracy), shapley_summary (k_half per order),
shapley_bandit (with shapley.bandit_k); figure shapley_curves.png.
Orders: `shapley` = this study's estimate; `random` = random_draws seeded orders (catalog.random_scores);
any other registered method = the mean of its per-input score over the eval inputs (engine, for the
attribution.target class), highest first. Note that the engine method `shapley` (per input, target logit)
is not an order here: the name means the study's own data-set estimate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field, field_validator

from neuronimp.errors import UsageError, closest
from neuronimp.hooks import frozen
from neuronimp.methods import METHODS, needs_stats, random_scores
from neuronimp.methods.coalitions import ValueFn, coalition_value, permutation, walk
from neuronimp.methods.shapley import ShapleyParams, bandit_topk
from neuronimp.probe import Probe
from neuronimp.schema import Strict
from neuronimp.studies.base import Outputs, Rebuild, Study, register_study
from neuronimp.studies.inputs import baseline_for, input_mean, statistics, targets
from neuronimp.studies.shapley_tables import (
    CURVE_COLUMNS, MARGINAL_COLUMNS, PAPER, curves_figure, summary_table, values_table,
)
from neuronimp.studies.tabulate import markdown
from neuronimp.studies.unit_order import engine_scores, order_by_score

DEFAULT_ORDERS = ["shapley", "conductance", "deeplift", "grad_x_act", "activation", "random"]


class ShapleyCfg(Strict):
    """Neuron Shapley on a data set (Ghorbani & Zou 2020) and cumulative removal by each ranking."""

    permutations: int = Field(default=100, ge=1)  # Monte Carlo permutations (the work items)
    truncation: float = Field(default=0.0, ge=0, lt=1)  # stop a walk within this fraction of |v(all) - v(none)|
    direction: Literal["remove", "add"] = "remove"  # remove: from all units down (Neuron Shapley); add: up (TMC)
    antithetic: bool = True  # permutation 2j + 1 is the reverse of 2j
    ablation: Literal["zero", "mean"] = "zero"  # a removed unit's value: 0, or its dataset mean per position
    metric: Literal["accuracy"] = "accuracy"  # the value of a coalition on the eval inputs
    eval_limit: int | None = Field(default=500, ge=1)  # the first N inputs of data.split (None: data.limit / all)
    curves_on: Literal["next", "same"] = "next"  # removal curves on the next eval_limit inputs (held out) or the same
    orders: list[str] = Field(default_factory=lambda: list(DEFAULT_ORDERS))
    ks: list[int] = Field(default_factory=list)  # removal grid (top-k units removed); empty: every k = 0..U
    random_draws: int = Field(default=3, ge=0, le=1000)  # random orders per layer
    bandit_k: int = Field(default=0, ge=0)  # > 0: also find the top k by the bandit (and by plain sampling)
    bandit_round: int = Field(default=10, ge=2)  # permutations per bandit round (even when antithetic)
    bandit_delta: float = Field(default=0.05, gt=0, lt=1)  # 1 - confidence of the bandit's intervals
    coalition_rows: int = Field(default=8192, ge=1)  # inputs x coalitions per suffix forward (memory bound)
    part_permutations: int = Field(default=10, ge=1)  # permutations per part file (resume granularity)
    figures: bool = True

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: list[str]) -> list[str]:
        allowed = ("shapley", "random") + tuple(m for m in METHODS.names() if m not in ("random", "shapley"))
        for o in v:
            if o not in allowed:
                hint = closest(o, allowed)
                raise ValueError(f"unknown order {o!r}; allowed: {', '.join(allowed)}"
                                 + (f" (did you mean {hint!r}?)" if hint else ""))
        if len(set(v)) != len(v):
            raise ValueError("an order is listed twice")
        return v

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 0 for k in v):
            raise ValueError("every k must be >= 0")
        return sorted(set(v))


@dataclass
class Game:
    """One layer's accuracy game on the eval inputs."""

    value: ValueFn  # keep [M, U] -> accuracy [M] float64
    units: int
    v_none: torch.Tensor  # accuracy with every unit ablated, []
    v_all: torch.Tensor  # accuracy of the intact model, []
    coalitions: int  # coalitions per suffix forward


@register_study
class Shapley(Study):
    """Neuron Shapley on a data set and the accuracy curves of removing the top units by each ranking."""

    name = "shapley"
    help = "Neuron Shapley (Ghorbani & Zou 2020): unit values on a data set and top-k removal curves."
    section = ShapleyCfg
    tables = ("shapley_marginals",)
    columns = {"shapley_marginals": MARGINAL_COLUMNS}
    unit = "perm"
    aggregates = {"shapley_values": Rebuild("shapley_marginals", values_table)}
    # orders, grid, bandit and figures are made in finish from the whole estimate: changing them keeps the parts
    not_in_key = ("shapley.orders", "shapley.ks", "shapley.random_draws", "shapley.bandit_k", "shapley.bandit_round",
                  "shapley.bandit_delta", "shapley.figures")

    def check(self, ctx: Any) -> None:
        """Random orders need draws; antithetic bandit rounds hold whole pairs; layers resolve."""
        s = ctx.cfg.shapley
        if "random" in s.orders and s.random_draws == 0:
            raise UsageError("shapley.orders lists 'random' but shapley.random_draws = 0; set it >= 1 or drop "
                             "'random' from shapley.orders")
        if s.curves_on == "next" and s.eval_limit is None:
            raise UsageError("shapley.curves_on = next needs shapley.eval_limit (the curves use the next "
                             "eval_limit inputs); set it, or curves_on: same")
        if s.bandit_k and s.antithetic and s.bandit_round % 2:
            raise UsageError(f"shapley.bandit_round = {s.bandit_round}: antithetic rounds need an even number")
        _ = ctx.layers

    def items(self, ctx: Any) -> list[int]:
        """The permutation ids 0..permutations-1."""
        return list(range(ctx.cfg.shapley.permutations))

    def batch_size(self, ctx: Any) -> int:
        """Permutations per part file."""
        return ctx.cfg.shapley.part_permutations

    def prepare(self, ctx: Any, items: list[int]) -> dict[str, Any]:
        """The eval inputs and each layer's game (its activations cached once)."""
        return eval_games(ctx)

    def rows(self, ctx: Any, state: dict[str, Any], chunk: list[int]) -> dict[str, list[dict]]:
        """Each permutation's marginal per unit (0 for the units after a truncation)."""
        s = ctx.cfg.shapley
        rows: list[dict] = []
        for layer, g in state["games"].items():
            perms = torch.stack([permutation(ctx.cfg.seed, p, g.units, s.antithetic) for p in chunk])  # [P, U]
            marg, _ = walk(g.value, perms, g.v_none, g.v_all, truncation=s.truncation, direction=s.direction,
                           coalition_batch=g.coalitions)  # [P, U]
            position = perms.argsort(1)
            for i, p in enumerate(chunk):
                sample = p // 2 if s.antithetic else p
                rows += [{"layer": layer, "permutation": p, "sample": sample, "unit": u,
                          "position": int(position[i, u]), "marginal": float(marg[i, u])} for u in range(g.units)]
        return {"shapley_marginals": rows}

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """Values; and when unsharded: removal curves, their summary, the figure and the bandit table."""
        values = values_table(tables["shapley_marginals"])
        if shard.count > 1:
            return Outputs(tables={"shapley_values": values}, printed=[(
                f"shard {shard}: marginals written to {ctx.out}; `neuronimp merge` stacks them and rebuilds "
                "shapley_values; the removal curves need the whole estimate: run the study unsharded", None)])
        state = eval_games(ctx)
        held_out = ctx.cfg.shapley.curves_on == "next"
        curves = removal_curves(ctx, state, values, eval_games(ctx, "curves") if held_out else state)
        units = {layer: g.units for layer, g in state["games"].items()}
        summary = summary_table(curves, units)
        out = Outputs(tables={"shapley_values": values, "shapley_curves": curves, "shapley_summary": summary},
                      texts={"shapley_summary.md": markdown(summary, 4) + f"\n{PAPER}.\n"})
        if ctx.cfg.shapley.bandit_k:
            out.tables["shapley_bandit"] = bandit_table(ctx, state, values)
            out.printed.append(("top-k search: bandit vs plain sampling", out.tables["shapley_bandit"]))
        if ctx.cfg.shapley.figures and not curves.empty:
            out.figures["shapley_curves.png"] = curves_figure(curves, f"{ctx.cfg.name}: top-k units removed "
                                                              f"({ctx.cfg.shapley.ablation} ablation)")
        out.printed.append((f"units removed until the accuracy halves ({ctx.out / 'shapley_summary'})\n{PAPER}",
                            summary[["layer", "order", "units", "draws", "base_accuracy", "all_removed_accuracy",
                                     "k_half", "note", "k_mid"]]))
        return out


def eval_games(ctx: Any, use: Literal["values", "curves"] = "values") -> dict[str, Any]:
    """Inputs x, labels y and every layer's Game (ShapleyCfg.ablation; suffix-only evaluation): the first
    eval_limit inputs of data.split for the values, the next eval_limit for the curves (curves_on: next)."""
    s, model = ctx.cfg.shapley, ctx.bundle.model
    n = s.eval_limit
    ds = ctx.split(limit=n if use == "values" or n is None else 2 * n)
    ids = list(range(n, len(ds))) if use == "curves" and n is not None else None
    parts = list(ctx.batches(ds, ids=ids, batch_size=256))
    if not parts:
        where = "after its first shapley.eval_limit (curves_on: next); set curves_on: same" if ids is not None else ""
        raise UsageError(f"data.split = {ctx.cfg.data.split!r} has no inputs for the shapley study {where}".strip())
    x, y = torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])
    stats = statistics(ctx, ctx.layers) if s.ablation == "mean" else {}
    games: dict[str, Game] = {}
    for layer in ctx.layers:
        probe = Probe(model, layer, x[:1])
        with frozen(model), torch.no_grad():
            a = probe.prefix(x)  # [N, U, *s]
        units = a.shape[1]
        value_a = stats[layer].mean.to(a).unsqueeze(0) if s.ablation == "mean" else torch.zeros_like(a[:1])
        m = max(1, s.coalition_rows // len(x))
        value = coalition_value(probe, x, a, value_a, s.metric, labels=y, coalition_batch=m)
        v = value(torch.arange(2).unsqueeze(1) > torch.zeros(1, units)).detach().cpu().double()
        for k in s.ks:
            if k > units:
                raise UsageError(f"shapley.ks: k = {k} exceeds the {units} units of layer {layer}")
        if s.bandit_k >= units:
            raise UsageError(f"shapley.bandit_k = {s.bandit_k}: must be below the {units} units of layer {layer}")
        games[layer] = Game(value, units, v[0], v[1], m)
    return {"x": x, "y": y, "games": games, "stats": stats}


def unit_orders(ctx: Any, state: dict[str, Any], values: pd.DataFrame
                ) -> dict[str, dict[tuple[str, int], torch.Tensor]]:
    """Per layer {(order, draw): unit indices, first removed first}."""
    s, x, y = ctx.cfg.shapley, state["x"], state["y"]
    games = state["games"]
    out: dict[str, dict[tuple[str, int], torch.Tensor]] = {layer: {} for layer in games}
    engine = [o for o in s.orders if o not in ("shapley", "random")]
    scores: dict[str, dict[str, torch.Tensor]] = {}
    if engine:
        t, _ = targets(ctx, x, y)
        base = baseline_for(ctx, x, input_mean(ctx) if ctx.cfg.attribution.baseline == "mean" else None)
        stats = state["stats"] or (statistics(ctx, ctx.layers) if needs_stats(engine, ctx.params) else {})
        with ctx.autocast():
            scores = {m: engine_scores(ctx.bundle.model, list(games), m, x, base, t, ctx.params, stats)
                      for m in engine}
    for li, (layer, g) in enumerate(games.items()):
        for o in s.orders:
            if o == "shapley":
                v = values[values.layer == layer].set_index("unit").shapley.reindex(range(g.units))
                out[layer][(o, 0)] = order_by_score(torch.tensor(v.fillna(float("-inf")).to_numpy()), most=True)
            elif o == "random":
                for d in range(s.random_draws):
                    r = random_scores(torch.tensor([li]), g.units, ctx.params.random_seed, d)[0]
                    out[layer][(o, d)] = order_by_score(r, most=True)
            else:
                out[layer][(o, 0)] = order_by_score(scores[o][layer], most=True)
    return out


def removal_curves(ctx: Any, state: dict[str, Any], values: pd.DataFrame, on: dict[str, Any]) -> pd.DataFrame:
    """Accuracy on the inputs of `on` with the top k units of each order (ranked on `state`'s inputs)
    removed, for every k of the grid."""
    rows = []
    for layer, orders in unit_orders(ctx, state, values).items():
        g = on["games"][layer]
        ks = ctx.cfg.shapley.ks or list(range(g.units + 1))
        for (order, draw), rank in orders.items():
            keep = torch.ones(len(ks), g.units, dtype=torch.bool)
            for i, k in enumerate(ks):
                keep[i, rank[:k]] = False
            acc = g.value(keep).detach().cpu().double()
            rows += [{"layer": layer, "order": order, "draw": draw, "k": k, "fraction_removed": k / g.units,
                      "accuracy": float(a)} for k, a in zip(ks, acc)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def bandit_table(ctx: Any, state: dict[str, Any], values: pd.DataFrame) -> pd.DataFrame:
    """Per layer: the bandit's top-k search (Neuron Shapley, Alg. 1) against plain sampling under the same
    stopping rule, with their evaluations and the overlap of each top-k set with the sampled estimate's."""
    s, rows = ctx.cfg.shapley, []
    for layer, g in state["games"].items():
        params = ShapleyParams(permutations=s.bandit_round, truncation=s.truncation, antithetic=s.antithetic,
                               coalition_batch=g.coalitions, seed=ctx.cfg.seed, direction=s.direction)
        est_top = set(values[(values.layer == layer) & (values["rank"] <= s.bandit_k)].unit.astype(int))
        found = {}
        for search, adaptive in (("bandit", True), ("plain", False)):
            r = bandit_topk(g.value, g.units, s.bandit_k, params, s.permutations, delta=s.bandit_delta,
                            adaptive=adaptive)
            found[search] = top = [int(u) for u in r.top]
            rows.append({"layer": layer, "k": s.bandit_k, "search": search, "evaluations": r.evaluations,
                         "permutations": r.permutations, "rounds": r.rounds, "settled": int(r.settled.sum()),
                         "top_units": " ".join(map(str, top)), "overlap_with_estimate": len(est_top & set(top))})
        same = set(found["bandit"]) == set(found["plain"])
        for r in rows[-2:]:
            r["same_set"] = same
    return pd.DataFrame(rows)
