"""The built-in methods, each registered under its name with the one signature of `methods.spec`.

Each entry is a thin adapter from a `MethodCall` to the family module that implements the equation:
path.py (the four path methods, one sweep), layer_ig.py, propagation.py (DeepLIFT, LRP), ablation.py,
selectivity.py, shapley.py; `random` is defined here (the only implementation: every study that wants random
scores or random orders draws them through `random_scores`).
"""
from __future__ import annotations

import torch

from neuronimp.errors import UsageError
from neuronimp.methods.ablation import ablation_value, single_unit_drop
from neuronimp.methods.layer_ig import layer_ig
from neuronimp.methods.lrp import lrp_relevance
from neuronimp.methods.propagation import deeplift
from neuronimp.methods.rules import deeplift_gaps, lrp_gaps
from neuronimp.methods.selectivity import selectivity_index
from neuronimp.methods.shapley import ShapleyParams, per_input_shapley
from neuronimp.methods.spec import MethodCall, method

for _name, _help, _delta in (
    ("activation", "sum over positions of the unit's activation y(x)", None),
    ("grad_x_act", "sum over positions of y(x) * dF/dy(x)", None),
    ("internal_influence", "path-integrated gradient dF/dy along x' -> x (Leino et al. 2018)", None),
    ("conductance", "total conductance = neuron integrated gradients (Dhamdhere et al. 2018 eq. 3, "
                    "Shrikumar et al. 2018)", "difference"),
):
    method(_name, help=_help, path=True, delta=_delta)(None)


def random_scores(ids: torch.Tensor, units: int, seed: int, draw: int = 0) -> torch.Tensor:
    """Uniform scores [B, U] in [0, 1), reproducible per input id, seed and draw (so shards agree with one run).

    Input i of draw d uses the generator seed (seed * 1000 + d) * 1_000_003 + i.
    """
    rows = [torch.rand(units, generator=torch.Generator().manual_seed((seed * 1000 + draw) * 1_000_003 + int(i)))
            for i in ids]
    return torch.stack(rows) if rows else torch.zeros(0, units)


def _difference(call: MethodCall, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, sum_u scores - (F(x) - F(x'))): the completeness residual of a method that should sum to it."""
    f, f0 = call.outputs()
    return s, s.sum(1) - (f - f0).to(s)


@method("layer_ig", help="integrated gradients on a straight line in the layer's own space", delta="difference")
def _layer_ig(call: MethodCall) -> tuple[torch.Tensor, torch.Tensor]:
    s = layer_ig(call.probe, call.x, call.baseline, call.target, call.grid, call.params.step_chunk, call.axis)
    return _difference(call, s)


@method("deeplift", help="DeepLIFT rescale contributions at the layer (Captum LayerDeepLift)", delta="difference",
        input_grad=True, gaps=deeplift_gaps)
def _deeplift(call: MethodCall) -> tuple[torch.Tensor, torch.Tensor]:
    return _difference(call, deeplift(call.model, call.layer, call.x, call.baseline, call.target, call.axis))


def _lrp(composite: str):  # noqa: ANN202 - a registered adapter
    def fn(call: MethodCall) -> tuple[torch.Tensor, torch.Tensor]:
        p = call.params
        return lrp_relevance(call.model, call.layer, call.x, call.target, composite, epsilon=p.lrp_epsilon,
                             gamma=p.lrp_gamma, stabilizer=min(p.lrp_epsilon, 1e-6), axis=call.axis)

    return fn


for _name, _comp, _help in (
    ("lrp_epsilon", "epsilon", "LRP epsilon rule on every layer (Bach et al. 2015), through zennit"),
    ("lrp_gamma", "gamma", "LRP gamma rule on every layer (Montavon et al. 2019), through zennit"),
    ("lrp_zplus", "zplus", "LRP z+ rule = deep Taylor decomposition (Montavon et al. 2017), through zennit"),
    ("lrp_epsilon_plus", "epsilon_plus", "LRP composite: z+ on convolutions, epsilon on dense layers (zennit)"),
    ("lrp_epsilon_gamma_box", "epsilon_gamma_box",
     "LRP composite: box rule on the first conv, gamma on the other convs, epsilon on dense (zennit)"),
    ("lrp_epsilon_alpha2_beta1", "epsilon_alpha2_beta1",
     "LRP composite: alpha2-beta1 on convolutions, epsilon on dense layers (zennit)"),
):
    method(_name, help=_help, delta="output", input_grad=True, gaps=lrp_gaps)(_lrp(_comp))


def _ablation(kind: str):  # noqa: ANN202 - a registered adapter
    def fn(call: MethodCall) -> torch.Tensor:
        probe = call.probe
        with torch.no_grad():
            a = probe.prefix(call.x)
            a0 = probe.prefix(call.baseline.expand_as(call.x)) if kind == "baseline" else None
        mean = call.stats.mean if call.stats is not None else None
        if kind == "mean" and mean is None:
            raise UsageError("method ablation_mean needs dataset statistics of the layer")
        return single_unit_drop(probe, call.x, call.target, ablation_value(kind, a, mean, a0), a=a, axis=call.axis)

    return fn


for _kind, _help in (("zero", "set to zero"), ("mean", "set to its dataset mean"),
                     ("baseline", "set to its value at the baseline")):
    method(f"ablation_{_kind}", help=f"drop of the target logit when the unit alone is {_help}",
           needs_stats=_kind == "mean")(_ablation(_kind))


@method("selectivity", help="class selectivity index (Morcos et al. 2018 eq. 1), the same for every input",
        needs_stats=True)
def _selectivity(call: MethodCall) -> torch.Tensor:
    if call.stats is None:
        raise UsageError("method selectivity needs class-conditional statistics of the layer")
    present = call.stats.present
    if present is not None and int(present.sum()) < 2:
        raise UsageError(f"method selectivity needs examples of at least two classes in the reference data, got "
                         f"{int(present.sum())}")
    si = selectivity_index(call.stats.class_means, present)
    return si.to(call.x).unsqueeze(0).expand(call.x.shape[0], -1)


@method("random", help="uniform random scores, seeded per input (a control)")
def _random(call: MethodCall) -> torch.Tensor:
    return random_scores(call.ids, call.n_units, call.params.random_seed).to(call.x)


@method("shapley", help="Shapley value of the unit in the game 'target logit with only a coalition of units kept' "
        "(Ghorbani & Zou 2020), per input: truncated Monte Carlo with antithetic permutations, exact when cheaper",
        needs_stats=lambda p: p.shapley_ablation == "mean", delta="game")
def _shapley(call: MethodCall) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p, probe = call.params, call.probe
    kind = p.shapley_ablation
    if kind == "mean" and call.stats is None:
        raise UsageError("method shapley with attribution.shapley_ablation = mean needs dataset statistics of the "
                         "layer; use zero or baseline")
    with torch.no_grad():  # baseline: each input's own x' (the whole batch), else one value for all: [1, U, *s]
        a = probe.prefix(call.baseline.expand_as(call.x) if kind == "baseline" else call.x[:1])
    value = ablation_value(kind, a, call.stats.mean if kind == "mean" else None, a)
    sp = ShapleyParams(permutations=p.shapley_permutations, truncation=p.shapley_truncation, seed=p.random_seed)
    phi, delta, ref = per_input_shapley(probe, call.x, call.target, value, call.ids, sp)
    return phi.to(call.x), delta.to(call.x), ref.to(call.x)
