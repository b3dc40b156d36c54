"""Coalitions of units and their values: the cooperative game behind Neuron Shapley.

A player is a unit of the probe's layer on its unit axis (`methods/units.py`: a channel, a feature or a token; a
dropped unit is ablated at every one of its positions). A coalition is a boolean mask `keep [M, U]` (True: the unit
keeps its activation, False: it is ablated to `value_a`), and a value function maps M coalitions to their values,
`[M]` (dataset level, e.g. accuracy) or `[M, *extra]` (e.g. the target logit of each of B inputs). Also here:
the seeded permutations and the prefix walk over them that the Monte Carlo estimators of `shapley.py` share.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from neuronimp.hooks import frozen
from neuronimp.methods.units import expand_mask, layer_layouts, unit_count
from neuronimp.probe import Probe

ValueFn = Callable[[torch.Tensor], torch.Tensor]  # keep [M, U] bool -> values [M, *extra]
METRICS = ("logit", "accuracy")


def coalition_value(
    probe: Probe, x: torch.Tensor, a: torch.Tensor, value_a: torch.Tensor,
    metric: str | Callable[[torch.Tensor], torch.Tensor], *, target: torch.Tensor | None = None,
    labels: torch.Tensor | None = None, coalition_batch: int = 256, axis: str | None = None,
) -> ValueFn:
    """The game v(keep) on inputs x: ablate the dropped units to value_a, run only the suffix, score the logits.

    a = probe.prefix(x) [B, *shape]; value_a [B or 1, *shape] (see ablation.ablation_value). axis: the layer's
    unit axis (channel | feature | token; None: the layer's own, `units.layer_layouts`); the U players are the
    units on it and keep is [M, U]. One suffix forward takes up to `coalition_batch` coalitions x B inputs.
    metric "logit": target logit per input, [M, B]; "accuracy": mean over the B inputs of argmax == labels, [M];
    a callable: logits [M, B, C] -> [M, *extra].
    """
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)} or a callable")
        need = target if metric == "logit" else labels
        if need is None:
            raise ValueError(f"metric {metric!r} needs {'target' if metric == 'logit' else 'labels'} [B]")
    if axis is None:  # auto: only a 3-D output is ambiguous ([B, C, L] or [B, tokens, F])
        axis = layer_layouts(probe.model, [probe.layer], x[:1])[probe.layer].axis if a.dim() == 3 else "channel"
    B, U = a.shape[0], unit_count(tuple(a.shape[1:]), axis)  # noqa: N806
    value_a = value_a.to(a).expand_as(a)

    def score(logits: torch.Tensor) -> torch.Tensor:  # logits [m, B, C]
        if metric == "logit":
            return logits.gather(2, target.to(logits.device).view(1, B, 1).expand(len(logits), B, 1)).squeeze(2)
        if metric == "accuracy":
            return (logits.argmax(2) == labels.to(logits.device)).to(torch.float64).mean(1)
        return metric(logits)

    def value(keep: torch.Tensor) -> torch.Tensor:
        if keep.dim() != 2 or keep.shape[1] != U:
            raise ValueError(f"keep must be [M, {U}], got {tuple(keep.shape)}")
        keep = keep.to(device=a.device, dtype=torch.bool)
        out = []
        with frozen(probe.model), torch.no_grad():
            for m0 in range(0, len(keep), coalition_batch):
                k = keep[m0 : m0 + coalition_batch]
                m = len(k)
                mask = expand_mask(k, a.shape, axis).unsqueeze(1)  # broadcasts against [m, B, *shape]
                big = torch.where(mask, a.unsqueeze(0), value_a.unsqueeze(0))  # [m, B, *shape]
                xs = x.repeat(m, *([1] * (x.dim() - 1))) if probe.mode == "hook" else None
                logits = probe.suffix(big.reshape(m * B, *a.shape[1:]), xs)  # [m * B, C]
                out.append(score(logits.view(m, B, -1)))
        return torch.cat(out)

    return value


def permutation(seed: int, p: int, n: int, antithetic: bool) -> torch.Tensor:
    """Permutation number p of n players, [n]: a function of (seed, p) only; odd p reverses p - 1 if antithetic."""
    draw = p // 2 if antithetic else p
    digest = hashlib.blake2b(f"neuronimp.shapley/{seed}/{draw}".encode(), digest_size=8).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    perm = torch.randperm(n, generator=g)
    return perm.flip(0) if antithetic and p % 2 else perm


def walk(
    value: ValueFn, perms: torch.Tensor, v_none: torch.Tensor, v_all: torch.Tensor, *, truncation: float = 0.0,
    active: torch.Tensor | None = None, direction: str = "add", coalition_batch: int = 256,
) -> tuple[torch.Tensor, int]:
    """Marginal contributions along permutations: (marginals [P, U, *extra] float64, coalitions evaluated).

    Prefix S_L = the first L units of a permutation; the unit at position L gets v(S_L) - v(S_{L-1}) (Shapley
    1953 in permutation form; v(S_0) = v_none, v(S_n) = v_all are given). Only prefixes next to an `active`
    unit are evaluated (Neuron Shapley's bandit skips the rest); marginals of inactive units are 0.
    direction "add" walks L = 1, 2, ... up from the empty coalition and truncates once |v_all - v(S_L)| <
    truncation * |v_all - v_none| (TMC-Shapley, Ghorbani & Zou 2019, Alg. 1): later units get 0. "remove"
    is Neuron Shapley's walk (Ghorbani & Zou 2020, Alg. 1): start from the full network and ablate units in
    reverse order, truncating once |v(S_L) - v_none| < truncation * |v_all - v_none|; earlier units get 0.
    The test holds for every element of a per-input value. The prefixes of all permutations advance in
    lockstep, about `coalition_batch` coalitions per call of `value`; when truncating, coalitions already
    queued beyond the truncation point in the same call are counted but their values are not used, so the
    marginals do not depend on the batching.
    """
    if direction not in ("add", "remove"):
        raise ValueError(f"direction must be 'add' or 'remove', got {direction!r}")
    P, n = perms.shape  # noqa: N806
    extra = v_all.shape
    active = torch.ones(n, dtype=torch.bool) if active is None else active.cpu()
    rank = torch.empty_like(perms)
    rank.scatter_(1, perms, torch.arange(n).expand(P, n))  # rank[p, u]: position of unit u in permutation p
    values = torch.full((P, n + 1, *extra), float("nan"), dtype=torch.float64)
    values[:, 0], values[:, n] = v_none, v_all
    unit_active = active[perms]  # [P, n]: is the unit at position L + 1 active
    needed = torch.zeros(P, n + 1, dtype=torch.bool)
    needed[:, 1:n] = unit_active[:, :-1] | unit_active[:, 1:]  # S_L is an end point of an active unit's marginal
    lengths = [needed[p].nonzero().flatten() for p in range(P)]  # prefix lengths to evaluate, in walk order
    if direction == "remove":
        lengths = [ls.flip(0) for ls in lengths]
    span = (v_all - v_none).abs()
    stop = torch.full((P,), -1, dtype=torch.long)  # prefix length where the walk truncated, -1: none
    cursor = [0] * P
    live = [p for p in range(P) if len(lengths[p])]
    evaluations = 0
    while live:
        q = max(1, coalition_batch // len(live))
        rows = [(p, L) for p in live for L in lengths[p][cursor[p] : cursor[p] + q].tolist()]
        ps, ls = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
        vals = value(rank[ps] < ls.unsqueeze(1)).detach().to("cpu", torch.float64)  # keep [M, n] -> [M, *extra]
        evaluations += len(rows)
        values[ps, ls] = vals
        done = set()
        if truncation > 0:
            ref = v_all if direction == "add" else v_none
            close = ((ref - vals).abs() < truncation * span).reshape(len(rows), -1).all(1)
            for i in close.nonzero().flatten().tolist():  # rows of one permutation come in walk order
                p = rows[i][0]
                if p not in done:
                    stop[p] = rows[i][1]
                    done.add(p)
        for p in live:
            cursor[p] += q
        live = [p for p in live if p not in done and cursor[p] < len(lengths[p])]
    for p in (stop >= 0).nonzero().flatten().tolist():
        L = int(stop[p])  # noqa: N806
        if direction == "add":
            values[p, L + 1 :] = values[p, L]
        else:
            values[p, :L] = values[p, L]
    steps = values[:, 1:] - values[:, :-1]  # [P, n, *extra]: marginal of the unit at each position
    steps[~unit_active] = 0.0
    marginals = torch.zeros_like(steps)
    marginals[torch.arange(P).unsqueeze(1), perms] = steps
    return marginals, evaluations
