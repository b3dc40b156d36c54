"""Orders in which the deletion study ablates units (Morcos et al. 2018, sec. 2.2 and 3.3): random, by the
mean score of an engine method, by class selectivity, or by the single-unit accuracy drop; the highest score
first (`name:most`, the default) or the lowest first (`name:least`).
"""
from __future__ import annotations

import torch
from torch import nn

from neuronimp.methods import MethodParams, compute_scores
from neuronimp.methods.selectivity import LayerStats
from neuronimp.methods.units import UnitsChoice
from neuronimp.studies.curves import mix_seed


def parse_order(spec: str) -> tuple[str, bool]:
    """'name', 'name:most' or 'name:least' -> (name, most first?)."""
    name, _, way = spec.partition(":")
    return name, way != "least"


def canonical_order(spec: str) -> str:
    """The order as written in the CSV: 'random' or 'name:most' / 'name:least'."""
    name, most = parse_order(spec)
    return name if name == "random" else f"{name}:{'most' if most else 'least'}"


def order_by_score(scores: torch.Tensor, most: bool) -> torch.Tensor:
    """Unit indices by score [U], highest first (most) or lowest first; ties keep the unit order."""
    return torch.sort(scores.double().cpu(), descending=most, stable=True).indices


def random_rank(total: int, seed: int, draw: int, site_index: int) -> torch.Tensor:
    """A seeded random permutation of the site's units (the same for every ablation value)."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(mix_seed(seed, draw, site_index)))


def engine_scores(model: nn.Module, layers: list[str], method: str, x: torch.Tensor, baseline: torch.Tensor,
                  target: torch.Tensor, params: MethodParams, stats: dict[str, LayerStats],
                  batch: int = 64, units: UnitsChoice = "auto") -> dict[str, torch.Tensor]:
    """Mean over the inputs x [N, ...] of an engine method's per-unit score: layer -> [U] (float64, cpu).

    baseline: [N, ...] (one per input) or [1, ...] (shared)."""
    sums: dict[str, torch.Tensor] = {}
    probes: dict = {}
    n = x.shape[0]
    for s in range(0, n, batch):
        sl = slice(s, s + batch)
        base = baseline if baseline.shape[0] == 1 else baseline[sl]  # one baseline for all, or one per input
        out = compute_scores(model, x[sl], base, target[sl], layers, [method], params,
                             ids=torch.arange(s, min(n, s + batch)), stats=stats, probes=probes, units=units)
        for layer in layers:
            part = out.scores[(layer, method)].detach().double().sum(0).cpu()  # [U]
            sums[layer] = sums[layer] + part if layer in sums else part
    return {layer: v / n for layer, v in sums.items()}
