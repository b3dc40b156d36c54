"""Study 2: cumulative unit deletion, unit noise, and selectivity vs importance in one trained network
(Morcos et al. 2018, "On the importance of single directions for generalization").

`delete_study` is a pure generator of rows tagged by `table`: "curves" (one row per curve level and split)
and "units" (one row per unit: class selectivity and single-unit accuracy drop). Training the networks,
label corruption, files and figures belong to the command (`neuronimp.commands.delete`).
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neuronimp.methods.params import MethodParams
from neuronimp.methods.selectivity import LayerStats, layer_statistics, selectivity_index
from neuronimp.methods.targets import target_classes
from neuronimp.methods.units import UnitsChoice, layer_layouts
from neuronimp.studies.curves import (Site, Treatment, curve_rows, deletion_treatment, make_sites, mix_seed,
                                      noise_treatment)
from neuronimp.studies.selectivity_study import selectivity_rows, single_unit_accuracy, unit_mean, unit_moments
from neuronimp.studies.unit_order import canonical_order, engine_scores, order_by_score, parse_order, random_rank

Tensors = tuple[torch.Tensor, torch.Tensor]  # inputs [N, ...], labels [N]


@dataclass
class NetworkData:
    """The tensors one network is studied on (all on the model's device)."""

    splits: dict[str, Tensors]   # eval sets: "train" (the labels it was trained on) and "test"
    stats_x: torch.Tensor      # training inputs: unit means (mean ablation) and sds (noise)
    classes: Tensors             # held-out inputs with true labels: class-conditional means (selectivity)
    score: Tensors               # training inputs and labels whose mean engine score orders the units
    score_baseline: torch.Tensor  # baseline of the engine's path methods: [N, ...] like score[0], or [1, ...]
    num_classes: int


def _chunks(x: torch.Tensor, size: int = 256) -> Iterator[torch.Tensor]:
    return (x[i : i + size] for i in range(0, x.shape[0], size))


def site_seed(seed: int, site: Site) -> int:
    """Seed of a site's random orders and noise: the network seed and the site's name."""
    return mix_seed(seed, zlib.crc32(site.name.encode()))


def delete_study(model: nn.Module, layers: list[str], data: NetworkData, cfg: Any, params: MethodParams,
                 target: str | int, seed: int, chunk: int = 512, units: UnitsChoice = "auto"
                 ) -> Iterator[dict[str, Any]]:
    """Rows of the deletion study of one network (in eval mode); `layers` are module paths; units: each layer's
    unit axis (auto | channel | feature | token, or layer -> axis)."""
    example = data.stats_x[:1]
    sites = make_sites(model, layers, cfg.scope, example, units)
    axes = {l: lay.axis for l, lay in layer_layouts(model, layers, example, units).items()}
    moments = unit_moments(model, _chunks(data.stats_x), layers, units)  # layer -> (mean [*shape], sd [U])
    cx, cy = data.classes
    cls = layer_statistics(model, zip(_chunks(cx), _chunks(cy)), layers, data.num_classes, units)
    values = {"zero": {l: torch.zeros_like(m).unsqueeze(0) for l, (m, _) in moments.items()},
              "mean": {l: m.unsqueeze(0) for l, (m, _) in moments.items()}}
    names = {parse_order(o)[0] for o in cfg.orders}
    scores: dict[str, dict[str, torch.Tensor]] = {}

    if cfg.selectivity or "accuracy_drop" in names:
        ablation = cfg.ablation[0]
        singles = {s.name: s for s in sites if s.name != "all"}
        if len(singles) < len(layers):
            singles = {s.name: s for s in make_sites(model, layers, ["layer"], example, units)}
        scores["accuracy_drop"] = {}
        for layer, site in singles.items():
            single = single_unit_accuracy(site, ablation, values[ablation], data.splits, chunk)
            acc0, acc = single["train"]
            scores["accuracy_drop"][layer] = acc0 - acc  # [U]
            if cfg.selectivity:
                si = selectivity_index(cls[layer].class_means, cls[layer].present)  # [U] (eq. 1)
                mean_act = unit_mean(moments[layer][0], axes[layer])  # [U]
                for row in selectivity_rows(layer, si, cls[layer].class_means, mean_act, single, ablation,
                                            axes[layer], cls[layer].present):
                    yield {"table": "units", **row}
    if "selectivity" in names:
        scores["selectivity"] = {l: selectivity_index(cls[l].class_means, cls[l].present) for l in layers}
    engine = sorted(names - {"random", "selectivity", "accuracy_drop"})
    if engine:
        sx, sy = data.score
        target = target_classes(model, sx, target, sy)[0]
        stats = {l: LayerStats(moments[l][0], cls[l].class_means, cls[l].count, cls[l].present) for l in layers}
        for name in engine:
            scores[name] = engine_scores(model, layers, name, sx, data.score_baseline, target, params, stats,
                                         units=units)

    for site in sites:
        treatments: list[Treatment] = []
        base = site_seed(seed, site)
        for spec in cfg.orders:
            name, most = parse_order(spec)
            for ablation in cfg.ablation:
                if name == "random":
                    treatments += [deletion_treatment(site, "random", d, ablation, random_rank(site.total, base, d, 0),
                                                      values[ablation], cfg.n_levels) for d in range(cfg.random_draws)]
                else:
                    rank = order_by_score(torch.cat([scores[name][l].cpu() for l in site.layers]), most)
                    treatments.append(deletion_treatment(site, canonical_order(spec), 0, ablation, rank,
                                                         values[ablation], cfg.n_levels))
        if cfg.noise_scales:
            sds = {l: sd for l, (_, sd) in moments.items()}
            treatments += [noise_treatment(site, cfg.noise_scales, d, sds, base) for d in range(cfg.noise_draws)]
        for row in curve_rows(site, treatments, data.splits, chunk):
            yield {"table": "curves", **row}
