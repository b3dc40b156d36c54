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
variant runs only the probe's suffix. The k values of all (image, method, ablation) jobs are evaluated
together in suffix batches of at most `max_rows` rows: each job sends `chunk` k values first, then
doubles its chunk, and stops at its first flip (or at K).

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

from neuronimp.config import AblateCfg
from neuronimp.methods.ablation import apply_mask
from neuronimp.probe import Probe

PAPER = ("paper (GoogLeNet mixed4d, 100 ImageNet images, zero ablation): conductance order flips after 3.7 units "
         "on average, 3 of 100 images need more than 10, maximum 16; the top 10 by internal influence flip "
         "only 5 of 100")


@dataclass
class ImageBatch:
    """One batch of images at one layer, as the study reads it."""

    ids: torch.Tensor  # [B] long, dataset indices
    labels: torch.Tensor  # [B] true labels
    pred: torch.Tensor  # [B] the model's predicted labels
    target: torch.Tensor  # [B] the class whose logit is recorded (usually pred)
    x: torch.Tensor  # [B, ...] inputs (read only by hook-mode probes)
    a: torch.Tensor  # [B, U, *s] the layer's activation, computed once


@dataclass
class _Job:
    """The flip search of one (image, order, ablation)."""

    b: int
    order: int  # index into the stacked rank positions
    kind: int  # index into the stacked ablation values
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


def spearman(s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Spearman's rho per row of s, d [B, U] (average ranks for ties); NaN where a row is constant."""
    from scipy.stats import rankdata

    rs = torch.from_numpy(rankdata(s.detach().double().cpu().numpy(), axis=1))
    rd = torch.from_numpy(rankdata(d.detach().double().cpu().numpy(), axis=1))
    rs, rd = rs - rs.mean(1, keepdim=True), rd - rd.mean(1, keepdim=True)
    den = (rs.square().sum(1) * rd.square().sum(1)).sqrt()
    return torch.where(den > 0, (rs * rd).sum(1) / den.clamp(min=1e-300), torch.full_like(den, float("nan")))


def forward_rows(probe: Probe, batch: ImageBatch, values: torch.Tensor, b: torch.Tensor, kind: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """Logits [R, C] of R ablated activations: image b[r] with units mask[r] (R x U) set to values[kind[r]]."""
    a = batch.a[b]  # R x U x *s
    v = values[kind, b if values.shape[1] > 1 else torch.zeros_like(b)]  # R x U x *s
    xs = batch.x[b] if probe.mode == "hook" else None
    return probe.suffix(apply_mask(a, mask, v), xs)


def stack_values(values: dict[str, torch.Tensor], a: torch.Tensor) -> torch.Tensor:
    """Ablation values {kind: [1 or B, U, *s]} -> [kinds, 1 or B, U, *s] (B only when some kind varies)."""
    n = max(v.shape[0] for v in values.values())
    return torch.stack([v.to(a).expand(n, *a.shape[1:]) for v in values.values()])


def unit_drops(probe: Probe, batch: ImageBatch, values: torch.Tensor, kind: int, max_rows: int) -> torch.Tensor:
    """F_t(a) - F_t(a with unit u alone ablated) for every image and unit, [B, U]."""
    B, U = batch.a.shape[:2]  # noqa: N806
    f0 = probe.suffix(batch.a, batch.x).gather(1, batch.target.unsqueeze(1)).squeeze(1)  # B
    b_all = torch.arange(B, device=batch.a.device).repeat_interleave(U)
    u_all = torch.arange(U, device=batch.a.device).repeat(B)
    out = torch.empty(B * U, dtype=f0.dtype, device=f0.device)
    for r0 in range(0, B * U, max_rows):
        b, u = b_all[r0 : r0 + max_rows], u_all[r0 : r0 + max_rows]
        mask = torch.nn.functional.one_hot(u, U).to(batch.a.dtype)
        f = forward_rows(probe, batch, values, b, torch.full_like(b, kind), mask)
        out[r0 : r0 + len(b)] = f0[b] - f.gather(1, batch.target[b].unsqueeze(1)).squeeze(1)
    return out.view(B, U)


def full_ablation_labels(probe: Probe, batch: ImageBatch, values: torch.Tensor) -> torch.Tensor:
    """Predicted label with every unit ablated, [kinds, B]."""
    K, B, U = values.shape[0], batch.a.shape[0], batch.a.shape[1]  # noqa: N806
    b = torch.arange(B, device=batch.a.device).repeat(K)
    kind = torch.arange(K, device=batch.a.device).repeat_interleave(B)
    mask = torch.ones(K * B, U, dtype=batch.a.dtype, device=batch.a.device)
    return forward_rows(probe, batch, values, b, kind, mask).argmax(1).view(K, B)


def search_flips(probe: Probe, batch: ImageBatch, positions: torch.Tensor, values: torch.Tensor,
                 jobs: list[_Job], max_k: int, max_rows: int, record: bool) -> None:
    """Run every job until its first flip or k = max_k (or to max_k when `record`); fills the jobs in place.

    positions: [orders, B, U] rank positions; values: [kinds, 1 or B, U, *s].
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
        jk = torch.tensor([j.kind for j, _ in take], device=dev).repeat_interleave(counts)
        k = torch.cat([torch.arange(j.done + 1, j.done + c + 1, device=dev) for j, c in take])  # R
        mask = (positions[jo, jb] < k.unsqueeze(1)).to(batch.a.dtype)  # R x U: the top-k units
        logits = forward_rows(probe, batch, values, jb, jk, mask)  # R x C
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

    scores: {(method, draw): [B, U]}; values: {ablation kind: [1 or B, U, *s]}.
    """
    with torch.no_grad():
        B, U = batch.a.shape[:2]  # noqa: N806
        K = min(cfg.max_k, U)  # noqa: N806
        kinds = list(values)
        vals = stack_values(values, batch.a)  # kinds x (1 or B) x U x *s
        keys = list(scores)
        positions = torch.stack([rank_positions(rank_units(scores[key]).to(batch.a.device)) for key in keys])
        full = full_ablation_labels(probe, batch, vals).tolist()  # kinds x B
        f0 = probe.suffix(batch.a, batch.x).gather(1, batch.target.unsqueeze(1)).squeeze(1).tolist()
        rho: dict[tuple[int, int], list[float]] = {}
        if cfg.correlation:
            for ki in range(len(kinds)):
                drops = unit_drops(probe, batch, vals, ki, cfg.max_rows)
                for oi, key in enumerate(keys):
                    rho[(oi, ki)] = spearman(scores[key], drops).tolist()
        jobs = [_Job(b, oi, ki, cfg.chunk) for b in range(B) for oi in range(len(keys)) for ki in range(len(kinds))]
        search_flips(probe, batch, positions, vals, jobs, K, cfg.max_rows, cfg.record_logits)
    for j in jobs:
        method, draw = keys[j.order]
        pred = int(batch.pred[j.b])
        yield {
            "image_id": int(batch.ids[j.b]), "true_label": int(batch.labels[j.b]), "predicted_label": pred,
            "target": int(batch.target[j.b]), "layer": layer, "method": method, "ablation": kinds[j.kind],
            "draw": draw, "units": U, "max_k": K, "k_flip": j.k_flip, "flipped": j.k_flip is not None,
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


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table of df (floats rounded)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.{digits}g}"
        return str(v)

    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"
