"""`neuronimp delete`: Study 2, cumulative unit deletion across label corruption (Morcos et al. 2018).

The work items are networks (model x corruption x seed). Each network is trained with `training.fit` on
its corrupted training set until it fits (train.fit_target) or reaches train.epochs, and cached as
`runner.out/networks/<network>-<hash>.pt` with a `.metrics.json` (the hash covers everything that shapes
training), so a re-run loads it; then it is studied by `studies.delete.delete_study`. Every finished
network is one part file, so a killed run resumes at the next network.

Text models (the Kim CNN): each network is built with the data's vocabulary and padded length, its own
embedding is trained with it, saved in its checkpoint (`training.checkpoint_state`: keys `embed.*`,
`model.*`) and embeds every input the study sees; the baseline is taken in that embedding space (zero = the
all-padding sentence). Image networks are built, keyed and saved exactly as before.

Tables in runner.out (each with .meta.json; columns in docs/delete_results.md): delete_curves,
delete_units, delete_networks, delete_auc, delete_auc_by_corruption, delete_gap_correlation,
delete_selectivity_correlation; figures delete_*.png (`commands.delete_figures`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from neuronimp.commands.common import STATS_LIMIT, baseline_for
from neuronimp.commands.train import save_checkpoint
from neuronimp.data import corrupt_labels, labels_of, take
from neuronimp.data.bundle import relabel
from neuronimp.errors import UsageError
from neuronimp.methods.baselines import channel_mean
from neuronimp.models import ModelBundle, checkpoint_module, create_model, load_weights, resolve_layer
from neuronimp.runner.context import Context, model_options
from neuronimp.runner.io import write_table, write_text
from neuronimp.runner.progress import print_table
from neuronimp.runner.shards import Shard, fingerprint, run_batches
from neuronimp.studies.delete import NetworkData, delete_study
from neuronimp.studies.delete_summary import AUC_GROUP, auc_table, by_corruption, gap_correlation
from neuronimp.studies.selectivity_study import selectivity_correlation
from neuronimp.training import checkpoint_state, evaluate, fit

NET_KEYS = ["model", "corruption", "seed"]
COLUMNS = {
    "curves": NET_KEYS + ["layer", "order", "draw", "ablation", "n_ablated", "fraction_ablated", "noise_scale",
                          "split", "accuracy", "units"],
    "units": NET_KEYS + ["layer", "unit", "selectivity", "preferred_class", "mean_activation", "ablation",
                         "importance_train", "importance_test"],
    "networks": NET_KEYS + ["epochs", "reached_fit_target", "train_acc", "test_acc", "gap", "train_acc_clean",
                            "labels_changed", "train_items", "checkpoint"],
}


def networks(ctx: Context) -> list[dict[str, Any]]:
    """The work items: one per (model, corruption, seed), JSON-able."""
    cfg = ctx.cfg
    models = cfg.delete.models or [cfg.model]
    return [{"model": m.name, "options": dict(m.options), "corruption": float(c), "seed": int(s)}
            for m in models for c in cfg.delete.corruptions for s in cfg.delete.seeds]


def label(net: dict[str, Any]) -> str:
    """The model column: its name, with its options when it has any, e.g. mnist_mlp(width=256)."""
    opts = ",".join(f"{k}={v}" for k, v in sorted(net["options"].items()))
    return f"{net['model']}({opts})" if opts else net["model"]


def network_bundle(ctx: Context, name: str, options: dict[str, Any]) -> ModelBundle:
    """A randomly initialised network for the context's data, on its device and dtype: text models get the
    data's vocabulary and padded length (as `build_context` gives the config's model), and their embedding."""
    bundle = create_model(name, weights="none", num_classes=ctx.data.num_classes,
                          **model_options(ctx.data, options))
    bundle.model.to(device=ctx.device, dtype=ctx.dtype)
    if bundle.embed is not None:
        bundle.embed.to(device=ctx.device, dtype=ctx.dtype)
    return bundle


def check(ctx: Context) -> None:
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


def corrupted_train(ctx: Context, net: dict[str, Any]) -> tuple[Any, float]:
    """The training set with a fraction of labels randomised by the network's seed; fraction really changed."""
    y = labels_of(ctx.data.train)
    mode = str(ctx.cfg.data.options.get("corrupt_mode", "uniform"))
    yc = corrupt_labels(y, net["corruption"], ctx.data.num_classes, net["seed"], mode)
    return relabel(ctx.data.train, yc), float((yc != y).double().mean()) if len(y) else 0.0


def tensors(ctx: Context, ds: Any, limit: int | None = None, embed: torch.nn.Module | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [N, ...] and labels [N] of the first `limit` items, on the device; token ids are embedded with
    `embed` (the network's own embedding), never the context's."""
    parts = list(ctx.batches(take(ds, limit), batch_size=1024, embed=embed))
    return torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def network_baseline(ctx: Context, bundle: ModelBundle, train: Any, x: torch.Tensor) -> torch.Tensor:
    """The configured baseline for the network's inputs x. For text it lives in the network's embedding space:
    zero is the all-padding sentence (padding embeds to zero), mean the per-channel mean of the first
    STATS_LIMIT training sentences embedded by the network (not by the context's random embedding)."""
    if bundle.embed is None or ctx.cfg.attribution.baseline != "mean":
        return baseline_for(ctx, x)  # image networks: as before
    return baseline_for(ctx, x, channel_mean(tensors(ctx, train, STATS_LIMIT, bundle.embed)[0]))


def train_or_load(ctx: Context, net: dict[str, Any], train: Any) -> tuple[ModelBundle, dict[str, Any], Path]:
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
    write_text(metrics, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    # last: a checkpoint implies its metrics. Image: the model's state dict (as before); text: embed.* + model.*
    save_checkpoint({"model": checkpoint_state(bundle)}, path)
    return bundle, record, path


def _eval(bundle: ModelBundle) -> None:
    """Model and embedding in eval mode (dropout off)."""
    bundle.model.eval()
    if bundle.embed is not None:
        bundle.embed.eval()


def study_network(ctx: Context, net: dict[str, Any]) -> list[dict[str, Any]]:
    """Train (or load) one network, measure it, and return the rows of all its tables."""
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
    rows = [{"table": "networks", **head, "epochs": record["epochs"],
             "reached_fit_target": record["reached_fit_target"], "train_acc": final["train"],
             "test_acc": final["test"], "gap": final["train"] - final["test"], "train_acc_clean": final["clean"],
             "labels_changed": changed, "train_items": len(train), "checkpoint": str(path)}]
    rows += [{**head, **row} for row in delete_study(model, layers, data, d, cfg.attribution, net["seed"])]
    return rows


def resume_key(cfg: Any) -> dict[str, Any]:
    """The settings that shape this study's rows (other sections and delete.figures do not)."""
    return {"model": cfg.model.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json"),
            "layers": cfg.layers, "attribution": cfg.attribution.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json", exclude={"checkpoint"}), "dtype": cfg.runner.dtype,
            "delete": cfg.delete.model_dump(mode="json", exclude={"figures"})}


def _table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one table from the combined part files, with its columns in order."""
    if df.empty or "table" not in df:
        return pd.DataFrame(columns=COLUMNS[name])
    t = df[df["table"] == name]
    t = t[[c for c in COLUMNS[name] if c in t.columns]].reset_index(drop=True)
    if name == "networks":
        t["reached_fit_target"] = t["reached_fit_target"].map(
            lambda v: None if pd.isna(v) else str(v).lower() in ("true", "1", "1.0"))
    return t


def run(ctx: Context, shard: Shard) -> Path:
    """Train/load and study every network of this shard; write the tables, summaries and figures."""
    cfg = ctx.cfg
    check(ctx)
    items = shard.select(networks(ctx))
    parts = ctx.out / "parts" / f"delete{shard.tag}"
    key = resume_key(cfg)
    df = run_batches(items, lambda chunk: [r for net in chunk for r in study_network(ctx, net)], parts, 1,
                     key=key, desc="delete", show=cfg.runner.progress, unit="net")
    tables = {name: _table(df, name) for name in COLUMNS}
    nets = tables["networks"]
    auc = auc_table(tables["curves"], NET_KEYS) if not tables["curves"].empty else pd.DataFrame()
    if not auc.empty:
        auc = auc.merge(nets[NET_KEYS + ["train_acc", "test_acc", "gap", "reached_fit_target", "epochs"]], on=NET_KEYS)
        tables["auc"] = auc
        tables["auc_by_corruption"] = by_corruption(auc, AUC_GROUP)
        tables["gap_correlation"] = gap_correlation(auc, AUC_GROUP)
    if not tables["units"].empty:
        tables["selectivity_correlation"] = selectivity_correlation(tables["units"], NET_KEYS)
    written = {}
    for name, t in tables.items():
        path = write_table(t, ctx.out / f"delete_{name}{shard.tag}", cfg.runner.format)
        ctx.write_meta(path, {"command": "delete", "table": name, "shard": f"{shard.index}/{shard.count}"})
        written[name] = path
    if cfg.delete.figures and not tables["curves"].empty:
        from neuronimp.commands.delete_figures import write_figures

        write_figures(tables, ctx.out, shard.tag)
    print_table(nets.drop(columns=["checkpoint"]), "networks")
    if not auc.empty:
        by = tables["auc_by_corruption"]
        wide = by[by.order == "random"].pivot_table(index=["model", "layer", "ablation", "split"],
                                                     columns="corruption", values="auc_mean")
        print_table(wide.reset_index(), "AUC of normalised accuracy vs fraction ablated, random order, by corruption")
        rho = tables["gap_correlation"].pivot_table(index=["model", "layer", "ablation", "split"], columns="order",
                                                    values="spearman_rho")
        print_table(rho.reset_index(), "Spearman rho of AUC with the generalisation gap across networks")
    if "selectivity_correlation" in tables:
        sc = tables["selectivity_correlation"]
        print_table(sc.groupby(["model", "layer", "split"], as_index=False)[
                        ["spearman_rho", "spearman_rho_alive", "dead_units"]].mean(),
                    "Spearman rho of selectivity with single-unit accuracy drop (mean over networks)")
    print(f"\ntables written to {ctx.out}")
    return written["curves"]
