"""Neuron Shapley (Ghorbani & Zou 2020): Shapley values of a layer's units, exact or sampled, and a top-k bandit.

The game is a `ValueFn` (see coalitions.py): keep [M, U] -> values [M, *extra]. The Shapley value of unit i
(Shapley 1953) is phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! (v(S + i) - v(S)), equivalently
the mean over uniformly random permutations of i's marginal contribution to the units before it. Sampling
uses truncated Monte Carlo (TMC-Shapley, Ghorbani & Zou 2019) with optional antithetic pairs; estimates carry
sums, sums of squares and counts so shards over permutation ids merge exactly. `per_input_shapley` is the
registered method `shapley` (each input's target-logit game); the `shapley` study plays a data set's
accuracy game.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from neuronimp.hooks import frozen
from neuronimp.methods.coalitions import ValueFn, coalition_value, permutation, walk
from neuronimp.probe import Probe

MAX_EXACT_UNITS = 16


@dataclass(frozen=True)
class ShapleyParams:
    """Monte Carlo settings; truncation is relative to |v(all) - v(none)| (0: none)."""

    permutations: int = 64
    truncation: float = 0.0
    antithetic: bool = True  # permutation 2j + 1 is the reverse of permutation 2j
    coalition_batch: int = 256  # coalitions per call of the value function
    seed: int = 0
    direction: str = "add"  # "add": walk up from no unit (TMC); "remove": down from all units (Neuron Shapley)


@dataclass
class ShapleyEstimate:
    """Sums over sampled permutations, per unit; a sample is one permutation, or one antithetic pair's average."""

    sum: torch.Tensor  # [U, *extra] float64: sum of marginals
    count: torch.Tensor  # [U] int64: permutations that sampled the unit
    sample_sum: torch.Tensor  # [U, *extra]: sum of samples (pair averages when antithetic)
    sample_sq: torch.Tensor  # [U, *extra]: sum of squared samples
    samples: torch.Tensor  # [U] int64
    antithetic: bool
    evaluations: int = 0  # coalitions evaluated
    pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # half pairs: p -> (m, sampled)

    @property
    def mean(self) -> torch.Tensor:
        """The Shapley estimate [U, *extra] (nan for a unit never sampled)."""
        return self.sum / _per_unit(self.count, self.sum)

    @property
    def se(self) -> torch.Tensor:
        """Standard error of the mean [U, *extra], from the spread of the samples (inf below 2 samples)."""
        n = _per_unit(self.samples, self.sum)
        var = ((self.sample_sq - self.sample_sum**2 / n) / (n - 1)).clamp(min=0)
        return torch.where(n > 1, (var / n).sqrt(), torch.full_like(var, math.inf))


def _per_unit(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-unit counts c [U] as float64 broadcastable against like [U, *extra]."""
    return c.to(torch.float64).view(-1, *([1] * (like.dim() - 1)))


def _empty(n: int, extra: torch.Size, antithetic: bool) -> ShapleyEstimate:
    z = torch.zeros(n, *extra, dtype=torch.float64)
    c = torch.zeros(n, dtype=torch.long)
    return ShapleyEstimate(z, c, z.clone(), z.clone(), c.clone(), antithetic)


def _add_sample(est: ShapleyEstimate, m: torch.Tensor, sampled: torch.Tensor) -> None:
    w = _per_unit(sampled, m)
    est.sample_sum += m * w
    est.sample_sq += m**2 * w
    est.samples += sampled.long()


def _add(est: ShapleyEstimate, ids: list[int], marginals: torch.Tensor, sampled: torch.Tensor) -> None:
    """Fold permutations `ids` (marginals [P, U, *extra], sampled [P, U]) into est; antithetic halves pair up."""
    w = sampled.to(torch.float64).view(*sampled.shape, *([1] * (marginals.dim() - 2)))
    est.sum += (marginals * w).sum(0)
    est.count += sampled.long().sum(0)
    for p, m, s in zip(ids, marginals, sampled):
        if not est.antithetic:
            _add_sample(est, m, s)
        elif p ^ 1 in est.pending:
            m2, s2 = est.pending.pop(p ^ 1)
            _add_sample(est, (m + m2) / 2, s & s2)  # a unit counts when both halves sampled it
        else:
            est.pending[p] = (m, s)


def merge_estimates(parts: list[ShapleyEstimate]) -> ShapleyEstimate:
    """One estimate from shards over disjoint permutation ids (antithetic halves split across shards pair up)."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    out = _empty(len(first.sum), first.sum.shape[1:], first.antithetic)
    for e in parts:
        if e.antithetic != first.antithetic or e.sum.shape != first.sum.shape:
            raise ValueError("estimates differ in antithetic sampling or shape")
        for t, s in ((out.sum, e.sum), (out.sample_sum, e.sample_sum), (out.sample_sq, e.sample_sq)):
            t += s
        out.count += e.count
        out.samples += e.samples
        out.evaluations += e.evaluations
        for p, (m, s) in e.pending.items():
            if p ^ 1 in out.pending:
                m2, s2 = out.pending.pop(p ^ 1)
                _add_sample(out, (m + m2) / 2, s & s2)
            else:
                out.pending[p] = (m, s)
    return out


def exact_shapley(value: ValueFn, n_units: int, coalition_batch: int = 256) -> torch.Tensor:
    """Exact Shapley values [U, *extra] float64 from all 2^n coalitions (Shapley 1953, the textbook sum)."""
    if n_units > MAX_EXACT_UNITS:
        raise ValueError(f"exact Shapley enumerates 2^n coalitions; n = {n_units} exceeds the limit of "
                         f"{MAX_EXACT_UNITS} units (use monte_carlo_shapley)")
    codes = torch.arange(2**n_units)
    keep = (codes.unsqueeze(1) >> torch.arange(n_units)) & 1 == 1  # [2^n, n]: bit u of the code = unit u kept
    v = torch.cat([value(keep[i : i + coalition_batch]).detach().to("cpu", torch.float64)
                   for i in range(0, len(keep), coalition_batch)])  # [2^n, *extra]
    size = keep.sum(1)
    f = [math.factorial(s) for s in range(n_units + 1)]
    weight = torch.tensor([f[s] * f[n_units - s - 1] / f[n_units] for s in range(n_units)], dtype=torch.float64)
    phi = []
    for i in range(n_units):
        without = codes[~keep[:, i]]  # coalitions S not containing i
        w = weight[size[without]].view(-1, *([1] * (v.dim() - 1)))
        phi.append((w * (v[without | (1 << i)] - v[without])).sum(0))
    return torch.stack(phi)


def monte_carlo_shapley(
    value: ValueFn, n_units: int, params: ShapleyParams, permutation_ids: list[int] | None = None,
    active: torch.Tensor | None = None, *, ends: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ShapleyEstimate:
    """TMC-Shapley over permutation ids (default 0..permutations-1): per-unit sums for mean and se.

    Permutation p depends only on (seed, p) (coalitions.permutation), so shards over disjoint ids merge with
    merge_estimates to the unsharded estimate. `active` [U] bool restricts which units' marginals are sampled
    (the bandit); `ends` = (v(none), v(all)) when the caller has them, else they are evaluated here (2
    evaluations). Without truncation, evaluations = 2 + (n - 1) per permutation (all units active).
    """
    ids = list(range(params.permutations)) if permutation_ids is None else list(permutation_ids)
    evaluations = 0
    if ends is None:
        v = value(torch.arange(2).unsqueeze(1) > torch.zeros(1, n_units)).detach().to("cpu", torch.float64)
        ends, evaluations = (v[0], v[1]), 2  # rows: keep none, keep all
    v_none, v_all = ends
    active = torch.ones(n_units, dtype=torch.bool) if active is None else active.cpu()
    est = _empty(n_units, v_all.shape, params.antithetic)
    group = max(2, params.coalition_batch)
    for g0 in range(0, len(ids), group):
        chunk = ids[g0 : g0 + group]
        perms = torch.stack([permutation(params.seed, p, n_units, params.antithetic) for p in chunk])
        marg, used = walk(value, perms, v_none, v_all, truncation=params.truncation, active=active,
                          direction=params.direction, coalition_batch=params.coalition_batch)
        evaluations += used
        _add(est, chunk, marg, active.expand(len(chunk), n_units))
    est.evaluations = evaluations
    return est


@dataclass(frozen=True)
class BanditResult:
    """Outcome of bandit_topk: the top-k units (best first) and what it cost."""

    top: torch.Tensor  # [k] unit indices by decreasing estimate
    estimate: ShapleyEstimate
    settled: torch.Tensor  # [U] bool: the unit's interval excludes the top-k boundary at the end
    evaluations: int
    permutations: int
    rounds: int


def confidence_radius(est: ShapleyEstimate, delta: float, value_range: float | None) -> torch.Tensor:
    """Half-width [U] of each unit's confidence interval at level 1 - delta.

    With value_range R (the range of one marginal), the empirical Bernstein bound (Maurer & Pontil 2009,
    Thm. 4) that Neuron Shapley uses: sqrt(2 V ln(2/delta) / n) + 7 R ln(2/delta) / (3 (n - 1)), V the
    sample variance; without it the normal approximation z_{1 - delta/2} * se.
    """
    se = est.se
    if value_range is None:
        z = math.sqrt(2.0) * float(torch.erfinv(torch.tensor(1.0 - delta, dtype=torch.float64)))
        return z * se
    n = est.samples.to(torch.float64)
    log = math.log(2.0 / delta)
    bound = (2 * se**2 * log).sqrt() + 7 * value_range * log / (3 * (n - 1))  # se^2 * n = V, so V / n = se^2
    return torch.where(n > 1, bound, torch.full_like(bound, math.inf))


def bandit_topk(
    value: ValueFn, n_units: int, k: int, params: ShapleyParams, max_permutations: int, *, delta: float = 0.05,
    value_range: float | None = None, adaptive: bool = True,
) -> BanditResult:
    """The k units with the largest Shapley values, by Neuron Shapley's multi-armed bandit (sec. 3, Alg. 1).

    Rounds of params.permutations permutations (ids continue across rounds). After each round every unit
    gets an interval mean +- r (confidence_radius); with t the midpoint of the k-th and (k+1)-th largest
    means, a unit is settled when its interval excludes t, and only unsettled units are sampled in the next
    round. The set is recomputed from all data each round, so a settled unit wakes up if t moves into its
    interval (as in the paper's cb_aggregate). Stops when every unit is settled or at max_permutations.
    What skipping saves, exactly as in the authors' code: a permutation is still walked in order, but the
    prefix value v(S_L) is evaluated only if the unit added at step L or at step L + 1 is unsettled (it is
    an end point of an unsettled unit's marginal); the coalitions that only settled units need are skipped.
    The paper's threshold is the (k+1)-th mean itself, which never settles the (k+1)-th unit, so its loop
    ends when one unit is left; the midpoint lets every unit settle. adaptive=False samples every unit
    every round under the same stopping rule: plain TMC sampling to the same precision, for comparison.
    """
    if not 0 < k < n_units:
        raise ValueError(f"k must be in 1..{n_units - 1}, got {k}")
    if max_permutations < 1:
        raise ValueError(f"max_permutations must be >= 1, got {max_permutations}")
    if params.antithetic and params.permutations % 2:
        raise ValueError("antithetic rounds need an even number of permutations (pairs stay in one round)")
    v = value(torch.arange(2).unsqueeze(1) > torch.zeros(1, n_units)).detach().to("cpu", torch.float64)
    if v.dim() != 1:
        raise ValueError(f"the bandit ranks scalar values; the game returns [M, {', '.join(map(str, v.shape[1:]))}]"
                         " (average over inputs first)")
    est: ShapleyEstimate | None = None
    active = torch.ones(n_units, dtype=torch.bool)
    done, rounds = 0, 0
    while done < max_permutations and active.any():
        ids = list(range(done, min(done + params.permutations, max_permutations)))
        new = monte_carlo_shapley(value, n_units, params, ids, active if adaptive else None, ends=(v[0], v[1]))
        est = new if est is None else merge_estimates([est, new])
        done, rounds = done + len(ids), rounds + 1
        mean, radius = est.mean, confidence_radius(est, delta, value_range)
        ranked = mean.argsort(descending=True)
        t = (mean[ranked[k - 1]] + mean[ranked[k]]) / 2
        active = ((mean - radius) <= t) & (t <= mean + radius)
    assert est is not None  # the loop runs at least once
    est.evaluations += 2  # the shared end points
    return BanditResult(ranked[:k], est, ~active, est.evaluations, done, rounds)


def input_seed(seed: int, input_id: int) -> int:
    """The permutation seed of one input: a function of (seed, input id) only, so shards agree with one run."""
    return int(seed) * 1_000_003 + int(input_id)


def per_input_shapley(
    probe: Probe, x: torch.Tensor, target: torch.Tensor, value_a: torch.Tensor, ids: torch.Tensor,
    params: ShapleyParams,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapley value of each unit in the game v_b(S) = target logit of input b with only S kept (per input).

    Returns (phi [B, U], delta [B] = sum_u phi_u - (v(all) - v(none)), reference [B] = v(all) - v(none)),
    float64 on the CPU. Input b's permutations are seeded by input_seed(params.seed, ids[b]), so its values do
    not depend on the batch it came in. When the 2^U coalitions cost no more than the sampled permutations
    (2^U <= permutations * U) the value is exact (exact_shapley) and delta is 0 up to rounding; otherwise TMC
    (monte_carlo_shapley), whose delta is 0 up to rounding without truncation (every permutation's marginals
    telescope to v(all) - v(none)) and at most truncation * |v(all) - v(none)| with it.
    value_a: [1 or B, U, *s] (ablation.ablation_value).
    """
    with frozen(probe.model), torch.no_grad():
        a = probe.prefix(x)  # [B, U, *s]
    B, U = a.shape[:2]  # noqa: N806
    exact = 2**U <= params.permutations * U
    phis, refs = [], []
    for b in range(B):
        va = value_a[b : b + 1] if value_a.shape[0] > 1 else value_a[:1]
        value = coalition_value(probe, x[b : b + 1], a[b : b + 1], va, "logit", target=target[b : b + 1],
                                coalition_batch=params.coalition_batch)
        v = value(torch.arange(2).unsqueeze(1) > torch.zeros(1, U)).detach().to("cpu", torch.float64)  # [2, 1]
        if exact:
            phi = exact_shapley(value, U, params.coalition_batch)[:, 0]
        else:
            p = replace(params, seed=input_seed(params.seed, int(ids[b])))
            phi = monte_carlo_shapley(value, U, p, ends=(v[0], v[1])).mean[:, 0]
        phis.append(phi)
        refs.append(v[1, 0] - v[0, 0])
    phi, ref = torch.stack(phis), torch.stack(refs)
    return phi, phi.sum(1) - ref, ref
