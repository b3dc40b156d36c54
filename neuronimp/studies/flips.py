"""Study 1: ablate units in decreasing order of importance until the prediction flips.

Dhamdhere et al. 2018 ("How Important Is a Neuron?", sec. 5): for each image, rank the units of one layer
by a method's scores for the predicted class, replace the top-1, top-2, ... units by their ablation value
and report the smallest k whose prediction differs (k_flip), up to K = min(max_k, units). Ablation values
(recorded in every row): `zero`, `mean` (the unit's dataset mean per position) or `baseline` (the unit's
activation at the baseline input x', the quantity conductance measures changes from).

Ranking: scores in decreasing order, NaN last; ties go to the LOWER unit index first (stable sort), so the
result does not depend on the sort implementation.

An image whose prediction equals the prediction of the fully ablated activation (every unit replaced) is
flagged `never_flips`: ablating everything does not change it, so a flip within K is not guaranteed
(it can still happen at an intermediate k); the summary reports these images separately.

Efficiency: the layer activation `a` is given (computed once per image by the caller); every ablated
variant runs only the probe's suffix, built as one `torch.where(mask, value, a)` per call. For each
ablation value in turn, the k values of all (image, method) jobs are evaluated together in suffix batches of
at most `max_rows` rows: each job sends `chunk` k values first, then doubles its chunk, and stops at its
first flip (or at K).

The paper's check of how well scores predict ablation is `score_drop_spearman`: per image, the Spearman
rank correlation between a method's per-unit scores and the drop of the target logit when each unit alone
is ablated (with the row's ablation value).

Pure: no I/O, no progress bars, no device logic. Rows are plain dicts; `summarize` aggregates them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd
import torch

from typing import TYPE_CHECKING

from neuronimp.methods.ablation import single_unit_drop
from neuronimp.methods.units import expand_mask, unit_count
from neuronimp.probe import Probe

if TYPE_CHECKING:
    from neuronimp.studies.ablate import AblateCfg

from neuronimp.studies.papers import FLIPS_SENTENCE as PAPER  # noqa: E402,F401


@dataclass
class ImageBatch:
    """One batch of images at one layer, as the study reads it."""

    ids: torch.Tensor  # [B] long, dataset indices
    labels: torch.Tensor  # [B] true labels
    pred: torch.Tensor  # [B] the model's predicted labels
    target: torch.Tensor  # [B] the class whose logit is recorded (usually pred)
    x: torch.Tensor  # [B, ...] inputs (read only by hook-mode probes)
    a: torch.Tensor  # [B, *shape] the layer's activation, computed once
    axis: str = "channel"  # the layer's unit axis: channel | feature | token (methods/units.py)

    @property
    def units(self) -> int:
        """Units of the layer on its axis."""
        return unit_count(tuple(self.a.shape[1:]), self.axis)


@dataclass
class _Job:
    """The flip search of one (image, order, ablation)."""

    b: int
    order: int  # index into the stacked rank positions
    kind: int  # index into the ablation values
    chunk: int
    done: int = 0  # k values evaluated so far (1..done)
    k_flip: int | None = None
    new_label: int | None = None
    logits: list[float] = field(default_factory=list)


def rank_units(scores: torch.Tensor) -> torch.Tensor:
    """Units in decreasing score order [B, U]; NaN last; ties: lower unit index first."""
    s = torch.nan_to_num(scores.double(), nan=float("-inf"))
    return torch.sort(s, dim=1, descending=True, stable=True).indices


def rank_positions(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation: pos[b, u] = rank of unit u (0 = ablated first), [B, U]."""
    pos = torch.empty_like(order)
    ar = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return pos.scatter_(1, order, ar)


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..U along each row of x [B, U], ties sharing their average rank (as scipy's rankdata)."""
    x = x.detach().double()
    out = torch.empty_like(x)
    step = max(1, 2**24 // max(1, x.shape[1] ** 2))  # rows per chunk: B x U x U comparisons
    for i in range(0, x.shape[0], step):
        c = x[i : i + step]
        lt = (c.unsqueeze(1) < c.unsqueeze(2)).sum(2)  # for each i: #{j: x_j < x_i}
        eq = (c.unsqueeze(1) == c.unsqueeze(2)).sum(2)  # #{j: x_j == x_i}, itself included
        out[i : i + step] = lt + (eq + 1) / 2
    return out


def spearman(s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Spearman's rho per row of s, d [B, U] (average ranks for ties); NaN where a row is constant."""
    rs, rd = average_ranks(s.to(d.device)), average_ranks(d)
    rs, rd = rs - rs.mean(1, keepdim=True), rd - rd.mean(1, keepdim=True)
    den = (rs.square().sum(1) * rd.square().sum(1)).sqrt()
    return torch.where(den > 0, (rs * rd).sum(1) / den.clamp(min=1e-300), torch.full_like(den, float("nan"))).cpu()


def forward_rows(probe: Probe, batch: ImageBatch, value: torch.Tensor, b: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """Logits [R, C] of R ablated activations: image b[r] with the units of mask[r] (R x U, bool) set to value,
    each unit at all of its positions (a feature in every token).

    value: [1 or B, *shape]. Same result as methods.ablation.apply_mask for a 0/1 mask, in one pass.
    """
    a = batch.a[b]  # R x *shape
    per_image = value.shape[0] > 1 and value.stride(0) != 0  # an expanded batch-1 value stays broadcast
    v = value[b] if per_image else value[:1]
    m = expand_mask(mask, a.shape, batch.axis)
    xs = batch.x[b] if probe.mode == "hook" else None
    return probe.suffix(torch.where(m, v, a), xs)


def full_ablation_labels(probe: Probe, batch: ImageBatch, value: torch.Tensor) -> list[int]:
    """Predicted label of each image with every unit ablated, [B]."""
    B, U = batch.a.shape[0], batch.units  # noqa: N806
    b = torch.arange(B, device=batch.a.device)
    return forward_rows(probe, batch, value, b, torch.ones(B, U, dtype=torch.bool, device=b.device)).argmax(1).tolist()


def search_flips(probe: Probe, batch: ImageBatch, positions: torch.Tensor, value: torch.Tensor,
                 jobs: list[_Job], max_k: int, max_rows: int, record: bool) -> None:
    """Run every job until its first flip or k = max_k (or to max_k when `record`); fills the jobs in place.

    positions: [orders, B, U] rank positions; value: [1 or B, *shape], the ablation value of these jobs.
    """
    dev = batch.a.device
    pending = list(jobs)
    while pending:
        take, rows, rest = [], 0, []
        for j in pending:
            c = min(j.chunk, max_k - j.done, max_rows)
            if rows + c <= max_rows:
                take.append((j, c))
                rows += c
            else:
                rest.append(j)
        counts = torch.tensor([c for _, c in take], device=dev)
        jb = torch.tensor([j.b for j, _ in take], device=dev).repeat_interleave(counts)
        jo = torch.tensor([j.order for j, _ in take], device=dev).repeat_interleave(counts)
        k = torch.cat([torch.arange(j.done + 1, j.done + c + 1, device=dev) for j, c in take])  # R
        mask = positions[jo, jb] < k.unsqueeze(1)  # R x U: the top-k units of each row
        logits = forward_rows(probe, batch, value, jb, mask)  # R x C
        labels = logits.argmax(1).tolist()
        tlog = logits.gather(1, batch.target[jb].unsqueeze(1)).squeeze(1).tolist() if record else None
        r = 0
        for j, c in take:
            pred = int(batch.pred[j.b])
            for i in range(c):
                if j.k_flip is None and labels[r + i] != pred:
                    j.k_flip, j.new_label = j.done + i + 1, labels[r + i]
            if record:
                j.logits += tlog[r : r + c]
            r += c
            j.done += c
            j.chunk = min(2 * j.chunk, max_rows)
            if j.done < max_k and (record or j.k_flip is None):
                rest.append(j)
        pending = rest


def ablation_rows(probe: Probe, batch: ImageBatch, layer: str, scores: dict[tuple[str, int], torch.Tensor],
                  values: dict[str, torch.Tensor], cfg: AblateCfg) -> Iterator[dict]:
    """One row per (image, method, draw, ablation): k_flip, new label, never_flips, score/drop correlation.

    scores: {(method, draw): [B, U]}; values: {ablation kind: [1 or B, *shape]}.
    """
    with torch.no_grad():
        B, U = batch.a.shape[0], batch.units  # noqa: N806
        K = min(cfg.max_k, U)  # noqa: N806
        kinds, keys = list(values), list(scores)
        positions = torch.stack([rank_positions(rank_units(scores[key]).to(batch.a.device)) for key in keys])
        f0 = probe.suffix(batch.a, batch.x).gather(1, batch.target.unsqueeze(1)).squeeze(1).tolist()
        full, rho, jobs = [], {}, []
        for ki, kind in enumerate(kinds):  # one ablation value at a time: it stays broadcast when shared
            value = values[kind].to(batch.a)
            full.append(full_ablation_labels(probe, batch, value))
            if cfg.correlation:
                drops = single_unit_drop(probe, batch.x, batch.target, value, a=batch.a, max_rows=cfg.max_rows,
                                         axis=batch.axis)
                for oi, key in enumerate(keys):
                    rho[(oi, ki)] = spearman(scores[key], drops).tolist()
            mine = [_Job(b, oi, ki, cfg.chunk) for b in range(B) for oi in range(len(keys))]
            search_flips(probe, batch, positions, value, mine, K, cfg.max_rows, cfg.record_logits)
            jobs += mine
        jobs.sort(key=lambda j: (j.b, j.order, j.kind))
    for j in jobs:
        method, draw = keys[j.order]
        pred = int(batch.pred[j.b])
        yield {
            "image_id": int(batch.ids[j.b]), "true_label": int(batch.labels[j.b]), "predicted_label": pred,
            "target": int(batch.target[j.b]), "layer": layer, "method": method, "ablation": kinds[j.kind],
            "draw": draw, "units": U, "unit_axis": batch.axis, "max_k": K, "k_flip": j.k_flip,
            "flipped": j.k_flip is not None,
            "new_label": j.new_label, "never_flips": full[j.kind][j.b] == pred,
            "fully_ablated_label": full[j.kind][j.b], "target_logit": f0[j.b],
            "score_drop_spearman": rho[(j.order, j.kind)][j.b] if rho else None,
            "target_logits": tuple([f0[j.b]] + j.logits) if cfg.record_logits else (),
        }


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, method, ablation): k_flip statistics over images that can flip; never-flips apart.

    Shares are over eligible rows (not never_flips; random pools its draws). mean/median/max k_flip are
    over flipped eligible rows; mean_k_capped counts a row not flipped within K as K + 1 (a lower bound).
    """
    df = df.assign(**{c: v for c, v in (("draw", 0), ("score_drop_spearman", float("nan")),
                                         ("max_k", df["k_flip"].max() if len(df) else 0)) if c not in df})
    out = []
    for (layer, method, ablation), g in df.groupby(["layer", "method", "ablation"], sort=False):
        never = g["never_flips"].astype(bool)
        e = g[~never]
        flipped = e["flipped"].astype(bool)
        k = e.loc[flipped, "k_flip"].astype(float)
        capped = e["k_flip"].astype(float).where(flipped, e["max_k"].astype(float) + 1)
        n = max(len(e), 1)
        out.append({
            "layer": layer, "method": method, "ablation": ablation, "images": g["image_id"].nunique(),
            "draws": g["draw"].nunique(), "never_flips": g.loc[never, "image_id"].nunique(),
            "eligible": len(e), "flipped": int(flipped.sum()),
            "mean_k_flip": k.mean() if len(k) else float("nan"),
            "median_k_flip": k.median() if len(k) else float("nan"),
            "max_k_flip": k.max() if len(k) else float("nan"),
            "share_flip_le10": float((flipped & (e["k_flip"].astype(float) <= 10)).sum()) / n if len(e) else float("nan"),
            "share_not_flipped_K": float((~flipped).sum()) / n if len(e) else float("nan"),
            "mean_k_capped": capped.mean() if len(e) else float("nan"),
            "max_k": int(g["max_k"].max()),
            "spearman_mean": pd.to_numeric(g["score_drop_spearman"], errors="coerce").mean(),
            "never_flips_flipped": int(g.loc[never, "flipped"].astype(bool).sum()),
        })
    return pd.DataFrame(out)
