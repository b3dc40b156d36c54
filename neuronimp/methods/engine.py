"""The importance engine: every method for many layers, with the path methods from one sweep."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from neuronimp.config import AttributionCfg
from neuronimp.errors import UsageError
from neuronimp.methods.ablation import ablation_value, single_unit_drop
from neuronimp.methods.grid import make_grid, suggest_steps
from neuronimp.methods.layer_ig import layer_ig
from neuronimp.methods.path import PATH_METHODS, PathResult, path_sweep, sweep_probe
from neuronimp.methods.propagation import deeplift, lrp
from neuronimp.methods.selectivity import LayerStats, selectivity_index
from neuronimp.probe import Probe
from neuronimp.registry import Registry

METHODS: Registry = Registry("method")
for _name, _help in {
    "activation": "sum over positions of the unit's activation y(x)",
    "grad_x_act": "sum over positions of y(x) * dF/dy(x)",
    "internal_influence": "path-integrated gradient dF/dy along x' -> x (Leino et al. 2018)",
    "conductance": "total conductance = neuron integrated gradients (Dhamdhere et al. 2018, Shrikumar et al. 2018)",
    "layer_ig": "integrated gradients on a straight line in the layer's own space",
    "deeplift": "DeepLIFT rescale contributions at the layer (Captum LayerDeepLift)",
    "lrp_epsilon": "LRP epsilon-rule relevance at the layer (Captum LayerLRP)",
    "lrp_gamma": "LRP gamma-rule relevance at the layer (Captum LayerLRP)",
    "lrp_zplus": "LRP z+ rule = deep Taylor decomposition (Captum Alpha1_Beta0_Rule)",
    "ablation_zero": "drop of the target logit when the unit alone is set to zero",
    "ablation_mean": "drop of the target logit when the unit alone is set to its dataset mean",
    "ablation_baseline": "drop of the target logit when the unit alone is set to its value at the baseline",
    "selectivity": "class selectivity index (Morcos et al. 2018), the same for every input",
    "random": "uniform random scores, seeded per input (a control)",
}.items():
    METHODS.register(_name, help=_help)(lambda: None)


Scores = PathResult  # the engine's result: path-method fields plus every other method's scores


def random_scores(ids: torch.Tensor, units: int, seed: int) -> torch.Tensor:
    """Uniform scores [B, U], reproducible per input id (so shards agree with a single run)."""
    rows = [torch.rand(units, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i))) for i in ids]
    return torch.stack(rows)


def check_delta(scores: Scores, cfg: AttributionCfg, layer: str) -> str | None:
    """A warning text when |delta| exceeds tolerance * |F(x) - F(x')| for some input, else None."""
    if layer not in scores.deltas or scores.f_input is None:
        return None
    gap = (scores.f_input - scores.f_baseline).abs().clamp(min=1e-12)
    rel = scores.deltas[layer].abs() / gap
    worst = float(rel.max())
    if worst <= cfg.delta_tolerance:
        return None
    n = suggest_steps(cfg.rule, cfg.n_steps, worst, cfg.delta_tolerance)
    return (f"conductance at {layer}: completeness delta up to {worst:.1%} of F(x)-F(x') exceeds the tolerance "
            f"{cfg.delta_tolerance:.1%}; try attribution.n_steps={n} (now {cfg.n_steps})")


def compute_scores(
    model: nn.Module,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: torch.Tensor,
    layers: list[str],
    methods: list[str],
    cfg: AttributionCfg,
    *,
    ids: torch.Tensor | None = None,
    stats: dict[str, LayerStats] | None = None,
    probes: dict[str, Probe] | None = None,
    warn: bool = True,
) -> Scores:
    """Scores of every (layer, method) for the batch x [B, ...] against `target` [B]."""
    for m in methods:
        METHODS.canonical(m, where="methods")
    grid = make_grid(cfg.rule, cfg.n_steps)
    out = Scores()
    path = [m for m in methods if m in PATH_METHODS]
    probes = probes if probes is not None else {}
    if path:
        fast = sweep_probe(model, layers, x[:1], probes)
        res = path_sweep(model, x, baseline, target, layers, path, grid, cfg.step_chunk, probe=fast)
        out.scores.update(res.scores)
        out.deltas.update(res.deltas)
        out.f_input, out.f_baseline = res.f_input, res.f_baseline
    ids = ids if ids is not None else torch.arange(x.shape[0])
    for layer in layers:
        for m in methods:
            if m in PATH_METHODS:
                continue
            if m in ("layer_ig",) or m.startswith("ablation_"):
                if layer not in probes:
                    probes[layer] = Probe(model, layer, x[:1])
                probe = probes[layer]
            if m == "layer_ig":
                s = layer_ig(probe, x, baseline, target, grid, cfg.step_chunk)
            elif m == "deeplift":
                s = deeplift(model, layer, x, baseline, target)
            elif m.startswith("lrp_"):
                s = lrp(model, layer, x, target, m, cfg.lrp_epsilon, cfg.lrp_gamma)
            elif m.startswith("ablation_"):
                kind = m.removeprefix("ablation_")
                with torch.no_grad():
                    a = probe.prefix(x)
                    a0 = probe.prefix(baseline.expand_as(x)) if kind == "baseline" else None
                mean = stats[layer].mean if (stats and layer in stats) else None
                if kind == "mean" and mean is None:
                    raise UsageError("method ablation_mean needs dataset statistics of the layer")
                s = single_unit_drop(probe, x, target, ablation_value(kind, a, mean, a0), a=a)
            elif m == "selectivity":
                if not stats or layer not in stats:
                    raise UsageError("method selectivity needs class-conditional statistics of the layer")
                s = selectivity_index(stats[layer].class_means).to(x).unsqueeze(0).expand(x.shape[0], -1)
            elif m == "random":
                units = _units(model, layer, x[:1])
                s = random_scores(ids, units, cfg.random_seed).to(x)
            else:  # pragma: no cover - guarded by the registry
                raise UsageError(f"method {m!r} has no implementation")
            out.scores[(layer, m)] = s.detach()
    if warn:
        for layer in layers:
            msg = check_delta(out, cfg, layer)
            if msg:
                warnings.warn(msg, stacklevel=2)
    return out


def _units(model: nn.Module, layer: str, x1: torch.Tensor) -> int:
    from neuronimp.hooks import capture

    with capture(model, [layer]) as out, torch.no_grad():
        model(x1)
    return out[layer].shape[1]


def _check_registry() -> None:
    from neuronimp.config import ALL_METHODS

    if set(METHODS.names()) != set(ALL_METHODS):  # the config's list and the engine must agree
        raise RuntimeError(f"method lists differ: {set(METHODS.names()) ^ set(ALL_METHODS)}")


_check_registry()
