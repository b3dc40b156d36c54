"""The `delete` study (Study 2): cumulative unit deletion across label corruption (Morcos et al. 2018).

The work items are networks (model x corruption x seed). Each network is trained with `training.fit` on
its corrupted training set until it fits (train.fit_target) or reaches train.epochs, and cached as
`runner.out/networks/<network>-<hash>.pt` with a `.metrics.json` (the hash covers everything that shapes
training; the run context writes them), so a re-run loads it; then it is measured by `studies.deletion`.
Every finished network is one batch of part files, so a killed run resumes at the next network.

Text models (the Kim CNN): each network is built with the data's vocabulary and padded length, its own
embedding is trained with it, saved in its checkpoint (`training.checkpoint_state`: keys `embed.*`,
`model.*`) and embeds every input the study sees; the baseline is taken in that embedding space (zero = the
all-padding sentence).

Tables in runner.out (each with .meta.json; columns in docs/delete_results.md): delete_curves,
delete_units, delete_networks, delete_auc, delete_auc_by_corruption, delete_gap_correlation,
delete_selectivity_correlation; figures delete_*.png (`studies.delete_figures`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field, field_validator

from neuronimp.digest import fingerprint
from neuronimp.data import corrupt_labels, labels_of, take
from neuronimp.data.bundle import relabel
from neuronimp.errors import UsageError, closest
from neuronimp.methods import METHODS
from neuronimp.methods.baselines import channel_mean
from neuronimp.models import ModelBundle, checkpoint_module, create_model, load_weights, model_options, resolve_layer
from neuronimp.schema import Strict
from neuronimp.studies.base import Outputs, Rebuild, Study, register_study
from neuronimp.studies.delete_summary import AUC_GROUP, auc_table, by_corruption, gap_correlation
from neuronimp.studies.deletion import NetworkData, delete_study
from neuronimp.studies.inputs import STATS_LIMIT, baseline_for, unit_choice
from neuronimp.studies.selectivity_study import selectivity_correlation
from neuronimp.training import checkpoint_state, evaluate, fit

NET_KEYS = ["model", "corruption", "seed"]
COLUMNS = {
    "curves": NET_KEYS + ["layer", "order", "draw", "ablation", "n_ablated", "fraction_ablated", "noise_scale",
                          "split", "accuracy", "units", "unit_axis"],
    "units": NET_KEYS + ["layer", "unit", "unit_axis", "selectivity", "preferred_class", "mean_activation", "ablation",
                         "importance_train", "importance_test"],
    "networks": NET_KEYS + ["epochs", "reached_fit_target", "train_acc", "test_acc", "gap", "train_acc_clean",
                            "labels_changed", "train_items", "checkpoint"],
}
ORDER_EXTRA = ("random", "accuracy_drop")  # orders that are no engine method


class DeleteNetCfg(Strict):
    """One network family of the deletion study: a registered model name and its options (no weights)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class DeleteCfg(Strict):
    """Study 2: cumulative deletion (Morcos et al. 2018)."""

    orders: list[str] = Field(default_factory=lambda: ["random"])  # random | NAME[:most|:least]
    ablation: list[Literal["zero", "mean"]] = Field(default_factory=lambda: ["zero"])
    random_draws: int = Field(default=3, ge=1)
    n_levels: int = Field(default=11, ge=2)
    noise_scales: list[float] = Field(default_factory=list)  # noise sd = scale * the unit's empirical sd
    noise_draws: int = Field(default=1, ge=1)
    corruptions: list[float] = Field(default_factory=lambda: [0.0])
    seeds: list[int] = Field(default_factory=lambda: [0])
    eval_limit: int | None = Field(default=None, ge=1)  # first N items of each split for the curves
    models: list[DeleteNetCfg] = Field(default_factory=list)  # empty: the config's model (name, options)
    scope: list[Literal["layer", "all"]] = Field(default_factory=lambda: ["layer"])  # each layer alone | all at once
    score_limit: int = Field(default=256, ge=1)  # training items whose mean engine score orders the units
    stats_limit: int = Field(default=2000, ge=2)  # items for unit means, sds (train) and class means (test)
    selectivity: bool = True  # per-unit selectivity vs single-unit accuracy drop, Spearman per layer
    figures: bool = True  # write PNG figures beside the tables

    @field_validator("corruptions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"corruption fraction {f} is outside [0, 1]")
        return v

    @field_validator("noise_scales")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        for s in v:
            if s < 0:
                raise ValueError(f"noise scale {s} is negative")
        return v

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: list[str]) -> list[str]:
        for o in v:
            name, _, way = o.partition(":")
            allowed = ORDER_EXTRA + tuple(m for m in METHODS.names() if m != "random")
            if name not in allowed:
                hint = closest(name, allowed)
                raise ValueError(f"unknown order {name!r}; allowed: {', '.join(allowed)}, each with "
                                 f"an optional ':most' or ':least'" + (f" (did you mean {hint!r}?)" if hint else ""))
            if way not in ("", "most", "least") or (name == "random" and way):
                raise ValueError(f"order {o!r}: the suffix must be ':most' or ':least' (none for random)")
        return v


@register_study
class Delete(Study):
    """Study 2: cumulative unit deletion, selectivity and generalisation (Morcos et al. 2018)."""

    name = "delete"
    help = "Study 2: cumulative unit deletion, selectivity and generalisation (Morcos et al. 2018)."
    section = DeleteCfg
    tables = ("delete_curves", "delete_units", "delete_networks")
    columns = {f"delete_{k}": v for k, v in COLUMNS.items()}
    unit = "net"
    not_in_key = ("delete.figures",)  # figures are drawn from the tables: toggling them keeps the parts
    aggregates = {"delete_auc_by_corruption": Rebuild("delete_auc", lambda auc: by_corruption(auc, AUC_GROUP)),
                  "delete_gap_correlation": Rebuild("delete_auc", lambda auc: gap_correlation(auc, AUC_GROUP))}

    def check(self, ctx: Any) -> None:
        """Usage errors that the config schema cannot see."""
        check(ctx)

    def items(self, ctx: Any) -> list[dict[str, Any]]:
        """The networks: one per (model, corruption, seed), JSON-able."""
        cfg = ctx.cfg
        models = cfg.delete.models or [cfg.model]
        return [{"model": m.name, "options": dict(m.options), "corruption": float(c), "seed": int(s)}
                for m in models for c in cfg.delete.corruptions for s in cfg.delete.seeds]

    def batch_size(self, ctx: Any) -> int:
        """One network per part."""
        return 1

    def rows(self, ctx: Any, state: Any, chunk: list[dict[str, Any]]) -> dict[str, list[dict]]:
        """Every table's rows of the networks in `chunk`."""
        out: dict[str, list[dict]] = {t: [] for t in self.tables}
        for net in chunk:
            for t, rows in study_network(ctx, net).items():
                out[f"delete_{t}"] += rows
        return out

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """AUC tables, correlations, figures and the printed summary."""
        return finish(ctx, {k.removeprefix("delete_"): v for k, v in tables.items()})


def check(ctx: Any) -> None:
    """Usage errors that the config schema cannot see."""
    opts = ctx.cfg.data.options
    for key in ("corrupt", "corrupt_seed"):
        if key in opts:
            raise UsageError(f"data.options.{key}: the delete study corrupts labels itself; set delete.corruptions "
                             "(each network's labels are drawn with its own seed)")
    if ctx.cfg.model.weights != "none" and not ctx.cfg.delete.models:
        raise UsageError("model.weights: the delete study trains its networks (cached under runner.out/networks); "
                         "use weights: none")
    if not ctx.cfg.delete.ablation:
        raise UsageError("delete.ablation is empty; allowed: zero, mean (one or both)")
    for m in ctx.cfg.delete.models or [ctx.cfg.model]:  # every layer must exist before any network is trained
        bundle = network_bundle(ctx, m.name, dict(m.options))
        for name in ctx.cfg.layers:
            resolve_layer(bundle, name)


def label(net: dict[str, Any]) -> str:
    """The model column: its name, with its options when it has any, e.g. mnist_mlp(width=256)."""
    opts = ",".join(f"{k}={v}" for k, v in sorted(net["options"].items()))
    return f"{net['model']}({opts})" if opts else net["model"]


def network_bundle(ctx: Any, name: str, options: dict[str, Any]) -> ModelBundle:
    """A randomly initialised network for the context's data, on its device and dtype: text models get the
    data's vocabulary and padded length (as `build_context` gives the config's model), and their embedding."""
    bundle = create_model(name, weights="none", num_classes=ctx.data.num_classes,
                          **model_options(ctx.data, options))
    bundle.model.to(device=ctx.device, dtype=ctx.dtype)
    if bundle.embed is not None:
        bundle.embed.to(device=ctx.device, dtype=ctx.dtype)
    return bundle


def corrupted_train(ctx: Any, net: dict[str, Any]) -> tuple[Any, float]:
    """The training set with a fraction of labels randomised by the network's seed; fraction really changed."""
    y = labels_of(ctx.data.train)
    mode = str(ctx.cfg.data.options.get("corrupt_mode", "uniform"))
    yc = corrupt_labels(y, net["corruption"], ctx.data.num_classes, net["seed"], mode)
    return relabel(ctx.data.train, yc), float((yc != y).double().mean()) if len(y) else 0.0


def tensors(ctx: Any, ds: Any, limit: int | None = None, embed: torch.nn.Module | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [N, ...] and labels [N] of the first `limit` items, on the device; token ids are embedded with
    `embed` (the network's own embedding), never the context's."""
    parts = list(ctx.batches(take(ds, limit), batch_size=1024, embed=embed))
    return torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def network_baseline(ctx: Any, bundle: ModelBundle, train: Any, x: torch.Tensor) -> torch.Tensor:
    """The configured baseline for the network's inputs x. For text it lives in the network's embedding space:
    zero is the all-padding sentence (padding embeds to zero), mean the per-channel mean of the first
    STATS_LIMIT training sentences embedded by the network (not by the context's random embedding)."""
    if bundle.embed is None or ctx.cfg.attribution.baseline != "mean":
        return baseline_for(ctx, x)  # image networks: as before
    return baseline_for(ctx, x, channel_mean(tensors(ctx, train, STATS_LIMIT, bundle.embed)[0]))


def train_or_load(ctx: Any, net: dict[str, Any], train: Any) -> tuple[ModelBundle, dict[str, Any], Path]:
    """The network's bundle, trained now or loaded from the cache, and its training record."""
    cfg = ctx.cfg
    torch.manual_seed(net["seed"])  # the initial weights (and a text model's embedding) depend on the seed
    bundle = network_bundle(ctx, net["model"], net["options"])
    key = {"net": net, "data": cfg.data.model_dump(mode="json"), "dtype": cfg.runner.dtype,
           "train": cfg.train.model_dump(mode="json", exclude={"checkpoint"})}
    if ctx.data.vocab is not None:  # text: a loader change that alters the vocabulary must not reuse the cache
        key["vocab"] = fingerprint(list(ctx.data.vocab))
    path = ctx.out / "networks" / f"{net['model']}-c{net['corruption']:g}-s{net['seed']}-{fingerprint(key)}.pt"
    metrics = path.with_suffix(".metrics.json")
    if path.is_file() and metrics.is_file():  # model (+ embedding for text), strictly: a mismatch is a UsageError
        load_weights(checkpoint_module(bundle), str(path), name=net["model"])
        _eval(bundle)
        return bundle, json.loads(metrics.read_text()), path
    res = fit(bundle.model, train, cfg.train, embed=bundle.embed, evals={"train": train}, device=ctx.device,
              dtype=ctx.dtype, seed=net["seed"], show=cfg.runner.progress,
              desc=f"train {label(net)} c={net['corruption']:g}")
    _eval(bundle)
    record = ctx.meta({"command": "delete", "network": net, "history": res.history,
                       "epochs": len(res.history), "reached_fit_target": res.reached_fit_target})
    ctx.write_json(metrics, record)
    # last: a checkpoint implies its metrics. Image: the model's state dict (as before); text: embed.* + model.*
    ctx.save_checkpoint({"model": checkpoint_state(bundle)}, path)
    return bundle, record, path


def _eval(bundle: ModelBundle) -> None:
    """Model and embedding in eval mode (dropout off)."""
    bundle.model.eval()
    if bundle.embed is not None:
        bundle.embed.eval()


def study_network(ctx: Any, net: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Train (or load) one network, measure it, and return the rows of each of its tables."""
    cfg, d = ctx.cfg, ctx.cfg.delete
    train, changed = corrupted_train(ctx, net)
    bundle, record, path = train_or_load(ctx, net, train)
    model, embed = bundle.model, bundle.embed
    layers = [resolve_layer(bundle, n) for n in (cfg.layers or [bundle.default_layer])]
    final = {k: evaluate(model, embed, ds, ctx.device, ctx.dtype)["acc"]
             for k, ds in (("train", train), ("test", ctx.data.test), ("clean", ctx.data.train))}
    head = {"model": label(net), "corruption": net["corruption"], "seed": net["seed"]}
    sx, sy = tensors(ctx, train, d.score_limit, embed)
    data = NetworkData(
        splits={"train": tensors(ctx, train, d.eval_limit, embed),
                "test": tensors(ctx, ctx.data.test, d.eval_limit, embed)},
        stats_x=tensors(ctx, train, d.stats_limit, embed)[0],
        classes=tensors(ctx, ctx.data.test, d.stats_limit, embed),
        score=(sx, sy), score_baseline=network_baseline(ctx, bundle, train, sx), num_classes=ctx.data.num_classes)
    rows = {"networks": [{**head, "epochs": record["epochs"],
             "reached_fit_target": record["reached_fit_target"], "train_acc": final["train"],
             "test_acc": final["test"], "gap": final["train"] - final["test"], "train_acc_clean": final["clean"],
             "labels_changed": changed, "train_items": len(train), "checkpoint": str(path)}],
            "curves": [], "units": []}
    units = unit_choice(ctx, bundle, layers)
    for row in delete_study(model, layers, data, d, ctx.params, cfg.attribution.target, net["seed"], units=units):
        rows[row.pop("table")].append({**head, **row})
    return rows


def finish(ctx: Any, tables: dict[str, pd.DataFrame]) -> Outputs:
    """Aggregates over the networks of the run, figures and what is printed."""
    nets = tables["networks"]
    if not nets.empty:
        nets["reached_fit_target"] = nets["reached_fit_target"].map(
            lambda v: None if pd.isna(v) else str(v).lower() in ("true", "1", "1.0"))
    out = Outputs()
    auc = auc_table(tables["curves"], NET_KEYS) if not tables["curves"].empty else pd.DataFrame()
    if not auc.empty:
        auc = auc.merge(nets[NET_KEYS + ["train_acc", "test_acc", "gap", "reached_fit_target", "epochs"]], on=NET_KEYS)
        out.tables.update(delete_auc=auc, delete_auc_by_corruption=by_corruption(auc, AUC_GROUP),
                          delete_gap_correlation=gap_correlation(auc, AUC_GROUP))
    if not tables["units"].empty:
        out.tables["delete_selectivity_correlation"] = selectivity_correlation(tables["units"], NET_KEYS)
    if ctx.cfg.delete.figures and not tables["curves"].empty:
        from neuronimp.studies.delete_figures import figures

        out.figures = figures({**tables, **{k.removeprefix("delete_"): v for k, v in out.tables.items()}})
    out.printed.append(("networks", nets.drop(columns=["checkpoint"], errors="ignore")))
    if not auc.empty:
        by = out.tables["delete_auc_by_corruption"]
        wide = by[by.order == "random"].pivot_table(index=["model", "layer", "ablation", "split"],
                                                     columns="corruption", values="auc_mean")
        out.printed.append(("AUC of normalised accuracy vs fraction ablated, random order, by corruption",
                            wide.reset_index()))
        rho = out.tables["delete_gap_correlation"].pivot_table(index=["model", "layer", "ablation", "split"],
                                                               columns="order", values="spearman_rho")
        out.printed.append(("Spearman rho of AUC with the generalisation gap across networks", rho.reset_index()))
    if "delete_selectivity_correlation" in out.tables:
        sc = out.tables["delete_selectivity_correlation"]
        out.printed.append(("Spearman rho of selectivity with single-unit accuracy drop (mean over networks)",
                            sc.groupby(["model", "layer", "split"], as_index=False)[
                                ["spearman_rho", "spearman_rho_alive", "dead_units"]].mean()))
    out.printed.append((f"\ntables written to {ctx.out}", None))
    return out
