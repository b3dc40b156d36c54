"""Every method on seven networks against its reference, in float64 (issue 13's "done means").

Networks (random weights re-drawn at unit scale by `bench_nets.lively`, so F(x) - F(x') is O(1); float64; two
random inputs and a random baseline; the target is the class whose logit moves most):
  resnet18         torchvision ResNet-18 through `ni.wrap` (64 px), layer2 and layer3
  efficientnet_b0  timm (SiLU, squeeze-excitation gates, residual adds; 64 px), blocks.4
  mobilenetv3      timm mobilenetv3_small_100 (Hardswish, Hardsigmoid gates; 64 px), blocks.3
  vit_block        timm vit_tiny_patch16_224 at img_size 32 (LayerNorm, attention, GELU), blocks.1: [B, 5, 192],
                   units = features summed over the 5 tokens
  googlenet        torchvision GoogLeNet (canonical blocks; 64 px), inception4d
  inception_v3     torchvision Inception-v3 (canonical blocks; 75 px), Mixed_6e
  kim_cnn          neuronimp's Kim CNN on embeddings [B, 1, 12, 300] (vocabulary 50), features (max-pooled maps)

References (each computed here, on the same canonical model, never by the code it checks):
  activation, grad_x_act        Captum LayerActivation, LayerGradientXActivation
  internal_influence            Captum InternalInfluence, riemann_left, n steps (ours: riemann_left, n)
  conductance                   Captum LayerConductance, riemann_trapezoid, n steps (its sum g_k (y_k+1 - y_k)
                                is our riemann_left conductance; Dhamdhere et al. 2018 eq. 3)
  layer_ig                      Captum LayerIntegratedGradients, riemann_left, n steps
  deeplift                      Captum LayerDeepLift under the same rules (adding max-pool, rescale on every
                                element-wise activation, product rule on squeeze-excitation gates); the
                                summation-to-delta residual is the independent check
  ablation_zero / _baseline /   the drop of the target logit when a forward hook sets the unit (every position of
  _mean                         it) to zero / to its value at the baseline / to its mean over 6 reference inputs
                                (per position), one unit at a time (units 0-3 and
                                the Fibonacci numbers to 89 that the layer has)
  selectivity                   Morcos et al. 2018 eq. 1 written out on the 6 reference inputs (3 classes present, 2 for
                                the Kim CNN)
  lrp_*                         zennit's composite of that name on a copy canonicalised here by hand: each batch
                                norm folded into the conv or linear called just before it, every residual add
                                written as zennit's Sum module (its Norm rule; in timm's blocks by wrapping, in
                                blocks traced by torch.fx by rewriting the graph's add nodes), layer norms with
                                sigma held constant and attention as P v with P held constant, both as modules
                                under zennit's Norm rule (Ali et al. 2022's LN- and AH-rules), squeeze-excitation gates given the
                                signal-take-all rule (Arras et al. 2017); relevance = zennit's modified gradient
                                at the layer's output, seeded with F(x) at the target logit
The error is max |ours - reference| / max |reference| over inputs and units. A cell passes at 1e-6, or when the
method refuses the layer with a one-line UsageError. Also listed: each method's relative delta (completeness,
summation-to-delta or conservation) and the warnings it gave. Printed as a markdown table.

    PYTHONPATH=.:scripts python scripts/check_models.py [--models resnet18,vit_block] [--out docs/model_check.md]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nets import lively  # noqa: E402

import neuronimp as ni  # noqa: E402
from neuronimp.errors import UsageError  # noqa: E402
from neuronimp.models import ModelBundle  # noqa: E402

N_STEPS = 8
TOL = 1e-6
METHODS = ("activation", "grad_x_act", "internal_influence", "conductance", "layer_ig", "deeplift",
           "ablation_zero", "ablation_baseline", "ablation_mean", "selectivity", "lrp_epsilon", "lrp_gamma", "lrp_zplus", "lrp_epsilon_plus",
           "lrp_epsilon_gamma_box", "lrp_epsilon_alpha2_beta1")
LRP = {"lrp_epsilon": "epsilon", "lrp_gamma": "gamma", "lrp_zplus": "zplus", "lrp_epsilon_plus": "epsilon_plus",
       "lrp_epsilon_gamma_box": "epsilon_gamma_box", "lrp_epsilon_alpha2_beta1": "epsilon_alpha2_beta1"}
EPS, GAMMA = 1e-6, 0.25
ABLATED = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89]  # units whose ablation is redone by hand (a forward pass each)


def ablated(bundle: ModelBundle, layer: str, x: torch.Tensor, axis: str) -> list[int]:
    """The units of ABLATED that the layer has."""
    from neuronimp.methods.units import layer_layouts

    n = layer_layouts(bundle.model, [layer], x[:1], {layer: axis})[layer].units
    return [u for u in ABLATED if u < n]  # the config defaults (attribution.lrp_epsilon, lrp_gamma)


@dataclass
class Case:
    build: Callable[[], ModelBundle]
    layers: tuple[str, ...]
    shape: tuple[int, ...]


def _resnet18() -> ModelBundle:
    from torchvision.models import resnet18

    return ni.wrap(resnet18(), (3, 64, 64), name="resnet18")


CASES: dict[str, Case] = {
    "resnet18": Case(_resnet18, ("layer2", "layer3"), (3, 64, 64)),
    "efficientnet_b0": Case(lambda: ni.create_model("timm/efficientnet_b0"), ("blocks.4",), (3, 64, 64)),
    "mobilenetv3": Case(lambda: ni.create_model("timm/mobilenetv3_small_100"), ("blocks.3",), (3, 64, 64)),
    "vit_block": Case(lambda: ni.create_model("timm/vit_tiny_patch16_224", img_size=32), ("blocks.1",), (3, 32, 32)),
    "googlenet": Case(lambda: ni.create_model("googlenet"), ("inception4d",), (3, 64, 64)),
    "inception_v3": Case(lambda: ni.create_model("inception_v3_tv"), ("Mixed_6e",), (3, 75, 75)),
    "kim_cnn": Case(lambda: ni.create_model("kim_cnn", vocab_size=50, max_len=12), ("features",), (1, 12, 300)),
}


# ------------------------------------------------------------------------------------------ the references

def _reduce(a: torch.Tensor, axis: str) -> torch.Tensor:
    """Per-unit sums of a layer-shaped attribution: channel = dim 1 (over positions), feature = last dim."""
    a = a.detach()
    if a.dim() == 2:
        return a
    if axis == "channel":
        return a.flatten(2).sum(2)
    if axis == "feature":
        return a.flatten(1, -2).sum(1)
    return a.flatten(2).sum(2)  # token: dim 1 of [B, T, F], summed over features


def _captum(name: str, m: nn.Module, mod: nn.Module, x: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
            ) -> torch.Tensor:
    from captum import attr

    if name == "activation":
        return attr.LayerActivation(m, mod).attribute(x)
    if name == "grad_x_act":
        return attr.LayerGradientXActivation(m, mod).attribute(x, target=t)
    if name == "internal_influence":
        return attr.InternalInfluence(m, mod).attribute(x, b, target=t, n_steps=N_STEPS, method="riemann_left")
    if name == "conductance":
        return attr.LayerConductance(m, mod).attribute(x, b, target=t, n_steps=N_STEPS, method="riemann_trapezoid")
    if name == "layer_ig":
        return attr.LayerIntegratedGradients(m, mod).attribute(x, b, target=t, n_steps=N_STEPS, method="riemann_left")
    raise KeyError(name)


def _deeplift(m: nn.Module, mod: nn.Module, x: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    from captum.attr import LayerDeepLift
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    from neuronimp.methods.deeplift_rules import deeplift_gates, deeplift_rules
    from neuronimp.methods.propagation import own_inputs

    with deeplift_rules(m), deeplift_gates(m):
        hooked = [mm for mm in m.modules() if type(mm) in SUPPORTED_NON_LINEAR]
        with own_inputs(hooked), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LayerDeepLift(m, mod).attribute(x, b, target=t)


def _outputs(m: nn.Module, mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's output for inputs x (a forward hook)."""
    store: dict[str, torch.Tensor] = {}
    h = mod.register_forward_hook(lambda _m, _i, o: store.__setitem__("y", o.detach()))
    with torch.no_grad():
        m(x)
    h.remove()
    return store["y"]


def _ablation(m: nn.Module, mod: nn.Module, x: torch.Tensor, b: torch.Tensor, t: torch.Tensor, axis: str,
              kind: str, units: list[int], train: torch.Tensor) -> torch.Tensor:
    """[B, len(units)]: F(x) - F(x with unit u set to 0 / to its baseline value / to its mean over `train` at each
    position), by a forward hook, one unit at a time, for the listed units."""
    y0 = {"zero": None, "baseline": _outputs(m, mod, b), "mean": _outputs(m, mod, train).mean(0, keepdim=True)}[kind]
    with torch.no_grad():
        f = m(x).gather(1, t[:, None]).squeeze(1)
    store = {"y": _outputs(m, mod, x)}
    dim = 1 if axis == "channel" else -1
    out = []
    for u in units:
        def patch(_m: nn.Module, _i: object, o: torch.Tensor, u: int = u) -> torch.Tensor:
            o = o.clone()
            idx = (slice(None),) * (dim % o.dim()) + (u,)
            o[idx] = 0.0 if y0 is None else y0.expand_as(o)[idx]
            return o

        h = mod.register_forward_hook(patch)
        with torch.no_grad():
            out.append(f - m(x).gather(1, t[:, None]).squeeze(1))
        h.remove()
    return torch.stack(out, 1)


class _SkipSum(nn.Module):
    """block(x) + x as zennit's Sum module (its Norm rule splits relevance in proportion)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        from zennit.layer import Sum

        self.block, self.sum = block, Sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sum(torch.stack([self.block(x), x], dim=-1))


def _vit_block_forward(self: nn.Module, x: torch.Tensor, attn_mask: object = None, is_causal: bool = False
                       ) -> torch.Tensor:
    """timm's vision_transformer.Block.forward with its two residual adds written as zennit Sum modules."""
    x = self.ref_sum1(torch.stack([x, self.drop_path1(self.ls1(self.attn(self.norm1(x))))], dim=-1))
    return self.ref_sum2(torch.stack([x, self.drop_path2(self.ls2(self.mlp(self.norm2(x))))], dim=-1))


class _RefLayerNorm(nn.Module):
    """A LayerNorm with sigma held constant (Ali et al. 2022's LN-rule): zennit's Norm rule then gives the epsilon
    rule through the affine map that is left."""

    def __init__(self, ln: nn.LayerNorm) -> None:
        super().__init__()
        self.ln = ln

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.ln.normalized_shape), 0))
        sigma = (x.var(dims, unbiased=False, keepdim=True) + self.ln.eps).sqrt().detach()
        z = (x - x.mean(dims, keepdim=True)) / sigma
        return z * self.ln.weight + self.ln.bias


class _RefAttentionProduct(nn.Module):
    """o = P v with the attention weights P (set before each call) held constant: the AH-rule, by zennit's Norm."""

    p: torch.Tensor

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.p @ v


def _ref_attention_forward(self: nn.Module, x: torch.Tensor, attn_mask: object = None, is_causal: bool = False
                           ) -> torch.Tensor:
    """timm's Attention.forward (no mask, no gate) with softmax(q k^T / sqrt(d)) detached and P v a module."""
    B, N, _ = x.shape  # noqa: N806
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = self.q_norm(q), self.k_norm(k)
    self.ref_pv.p = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1).detach()
    o = self.ref_pv(v).transpose(1, 2).reshape(B, N, -1)
    return self.proj(self.norm(o))


def _gate_forward(orig: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """y = x * g(x) -> same value, relevance R_x = R_y (signal takes all, Arras et al. 2017)."""
    return lambda x: x + (orig(x) - x).detach()


def _sum_modules(gm: torch.fx.GraphModule) -> None:
    """In a traced block, every `a + b` of two tensors becomes zennit's Sum module on stack([a, b], -1)."""
    import operator

    from zennit.layer import Sum

    k = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add) and all(
                isinstance(a, torch.fx.Node) for a in node.args[:2]) and len(node.args) == 2 and not node.kwargs:
            k += 1
            gm.add_submodule(f"ref_sum{k}", Sum())
            with gm.graph.inserting_before(node):
                stacked = gm.graph.call_function(torch.stack, (list(node.args),), {"dim": -1})
                summed = gm.graph.call_module(f"ref_sum{k}", (stacked,))
            node.replace_all_uses_with(summed)
            gm.graph.erase_node(node)
    gm.recompile()


def _fold_batch_norms(m: nn.Module, x1: torch.Tensor) -> None:
    """Fold every batch norm into the conv/linear module called just before it (w' = w s, b' = (b - mu) s + beta,
    s = gamma / sqrt(var + eps)), then make the batch norm the identity (mean 0, var 1, eps 0, gamma 1, beta 0)."""
    order: list[nn.Module] = []
    hs = [mm.register_forward_pre_hook(lambda mod, _i: order.append(mod)) for mm in m.modules()
          if not list(mm.children()) or isinstance(mm, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        m(x1)
    for h in hs:
        h.remove()
    with torch.no_grad():
        for i, bn in enumerate(order):
            if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or i == 0:
                continue
            conv = order[i - 1]
            if not isinstance(conv, (nn.Conv2d, nn.Linear, nn.Conv1d)):
                raise RuntimeError(f"no conv before batch norm {bn}")
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (-1,) + (1,) * (conv.weight.dim() - 1)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(s.view(shape))
            conv.bias = nn.Parameter((bias - bn.running_mean) * s + bn.bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.eps = 0.0
            bn.weight.fill_(1.0)
            bn.bias.zero_()


def _composite(name: str, x: torch.Tensor, canonizers: list[object]) -> object:
    from zennit import composites as zc
    from zennit.rules import Epsilon, Gamma, Norm, ZPlus
    from zennit.types import Linear

    extra = [(_RefLayerNorm, Norm(stabilizer=EPS)), (_RefAttentionProduct, Norm(stabilizer=EPS))]
    if name in ("epsilon", "gamma", "zplus"):
        rule = {"epsilon": Epsilon(epsilon=EPS), "gamma": Gamma(gamma=GAMMA, stabilizer=EPS),
                "zplus": ZPlus(stabilizer=EPS)}[name]
        return zc.LayerMapComposite(extra + zc.layer_map_base(EPS) + [(Linear, rule)], canonizers=canonizers)
    if name == "epsilon_plus":
        return zc.EpsilonPlus(epsilon=EPS, stabilizer=EPS, layer_map=extra, canonizers=canonizers)
    if name == "epsilon_alpha2_beta1":
        return zc.EpsilonAlpha2Beta1(epsilon=EPS, stabilizer=EPS, layer_map=extra, canonizers=canonizers)
    dims = tuple(range(1, x.dim()))
    return zc.EpsilonGammaBox(low=x.amin(dim=dims, keepdim=True), high=x.amax(dim=dims, keepdim=True),
                              epsilon=EPS, gamma=GAMMA, stabilizer=EPS, layer_map=extra, canonizers=canonizers)


def _lrp(model: nn.Module, layer: str, x: torch.Tensor, t: torch.Tensor, composite: str) -> torch.Tensor:
    """zennit relevance at the layer's output on a hand-canonicalised copy (module doc)."""
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
    from timm.models.vision_transformer import Block
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from zennit.layer import Sum

    m = copy.deepcopy(model)
    _fold_batch_norms(m, x[:1])
    canonizers: list[object] = []
    for parent in list(m.modules()):
        for cname, child in list(parent.named_children()):
            if isinstance(child, (InvertedResidual, DepthwiseSeparableConv)) and child.has_skip:
                child.has_skip = False
                setattr(parent, cname, _SkipSum(child))
    for parent in list(m.modules()):
        for cname, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, cname, _RefLayerNorm(child))
    for mod in m.modules():
        if isinstance(mod, torch.fx.GraphModule):  # a block neuronimp traced to split its call sites
            _sum_modules(mod)
        if type(mod).__name__ == "Attention" and hasattr(mod, "qkv"):
            mod.ref_pv = _RefAttentionProduct()
            mod.forward = types.MethodType(_ref_attention_forward, mod)
        if isinstance(mod, Block):
            mod.ref_sum1, mod.ref_sum2 = Sum(), Sum()
            mod.forward = types.MethodType(_vit_block_forward, mod)
        if type(mod).__name__ in ("SqueezeExcite", "SqueezeExcitation", "SEModule", "EffectiveSEModule"):
            mod.forward = _gate_forward(mod.forward)
    if any(isinstance(mod, (BasicBlock, Bottleneck)) for mod in m.modules()):
        from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

        canonizers = [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()]
    # the layer by its path in the original model (a _SkipSum moved blocks under `.block`)
    names = {n.replace(".block", ""): mod for n, mod in m.named_modules()}
    store: dict[str, torch.Tensor] = {}
    h = names[layer].register_forward_hook(lambda _m, _i, o: store.__setitem__("y", o))
    xg = x.clone().requires_grad_(True)
    with _composite(composite, x, canonizers).context(m), torch.enable_grad():
        logits = m(xg)
        f = logits.gather(1, t[:, None])
        seed = torch.zeros_like(logits).scatter(1, t[:, None], f.detach())
        (g,) = torch.autograd.grad(logits, store["y"], grad_outputs=seed)
    h.remove()
    return g


def _selectivity(y: torch.Tensor, labels: torch.Tensor, axis: str) -> torch.Tensor:
    """[1, U]: Morcos et al. 2018 eq. 1 over the classes in `labels`: (mu_max - mu_-max) / (mu_max + mu_-max), each
    unit's activation averaged over its positions, then over the examples of each class; 0 for a dead unit."""
    unit = _reduce(y, axis) / (y[0].numel() / _reduce(y, axis).shape[1])  # per-unit mean over positions
    means = torch.stack([unit[labels == c].mean(0) for c in labels.unique()])
    top = means.max(0).values
    rest = (means.sum(0) - top) / (len(means) - 1)
    dead = (top + rest) == 0  # a unit silent on every class: index 0 (neuronimp's convention, module doc)
    return torch.where(dead, torch.zeros_like(top), (top - rest) / torch.where(dead, 1.0, top + rest)).unsqueeze(0)


def reference(bundle: ModelBundle, layer: str, method: str, x: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
              axis: str, train: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference scores [B, U] of `method` (module doc)."""
    m = bundle.model
    mod = m.get_submodule(layer)
    if method in LRP:
        return _reduce(_lrp(m, layer, x, t, LRP[method]), axis)
    if method == "deeplift":
        return _reduce(_deeplift(m, mod, x, b, t), axis)
    if method.startswith("ablation_"):
        return _ablation(m, mod, x, b, t, axis, method.removeprefix("ablation_"), ablated(bundle, layer, x, axis),
                         train)
    if method == "selectivity":
        return _selectivity(_outputs(m, mod, train), labels, axis).expand(x.shape[0], -1)
    return _reduce(_captum(method, m, mod, x, b, t), axis)


# ------------------------------------------------------------------------------------------ the check

@dataclass
class Cell:
    model: str
    layer: str
    method: str
    status: str          # match | MISMATCH | refused | ERROR
    error: float | None  # max |ours - ref| / max |ref|
    delta: float | None  # max relative delta of the method (None: it has none)
    note: str            # the refusal or the first warning


def check_case(name: str, methods: tuple[str, ...] = METHODS, seed: int = 0, layers: tuple[str, ...] = ()
               ) -> list[Cell]:
    """Every method at every layer of case `name` (or at `layers`), against its reference."""
    case = CASES[name]
    torch.manual_seed(seed)
    bundle = case.build()
    lively(bundle.model, seed).double().eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, *case.shape, generator=g, dtype=torch.float64)
    b = torch.randn(2, *case.shape, generator=g, dtype=torch.float64) * 0.1
    train = torch.randn(6, *case.shape, generator=g, dtype=torch.float64)  # statistics for mean / selectivity
    labels = torch.tensor([0, 1, 2, 0, 1, 2]) % bundle.num_classes  # 3 (Kim CNN: 2) classes present
    with torch.no_grad():
        t = (bundle.model(x) - bundle.model(b)).argmax(1)
    cells = []
    for layer in layers or case.layers:
        for method in methods:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    s = ni.score(bundle, x, layers=[layer], methods=[method], baseline=b, target=t, n_steps=N_STEPS,
                                 rule="riemann_left", lrp_epsilon=EPS, lrp_gamma=GAMMA, train=train, y=labels)
                except UsageError as e:
                    cells.append(Cell(name, layer, method, "refused" if "\n" not in str(e) else "ERROR", None,
                                      None, str(e)))
                    continue
            ours = s.scores[(layer, method)]
            rel = s.relative_delta(layer, method)
            want = reference(bundle, layer, method, x, b, t, s.axis(layer), train, labels)
            if method.startswith("ablation_"):
                ours = ours[:, ablated(bundle, layer, x, s.axis(layer))]
            err = float((ours - want).abs().max() / want.abs().max().clamp(min=1e-300))
            note = str(caught[0].message) if caught else ""
            cells.append(Cell(name, layer, method, "match" if err <= TOL else "MISMATCH", err,
                              None if rel is None else float(rel.abs().max()), note))
    return cells


def table(cells: list[Cell]) -> str:
    """Markdown: one row per (model, layer, method)."""
    rows = ["| model | layer | method | status | error vs reference | relative delta | warning or refusal |",
            "|---|---|---|---|---:|---:|---|"]
    for c in cells:
        err = "" if c.error is None else f"{c.error:.1e}"
        delta = "" if c.delta is None else f"{c.delta:.1e}"
        note = c.note.replace("|", "/")
        rows.append(f"| {c.model} | {c.layer} | {c.method} | {c.status} | {err} | {delta} | {note} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="", help="also write the table to this markdown file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cells: list[Cell] = []
    for name in a.models.split(","):
        t0 = time.time()
        got = check_case(name)
        cells += got
        bad = [c for c in got if c.status not in ("match", "refused")]
        print(f"{name}: {len(got)} cells, {len(bad)} failing, {time.time() - t0:.1f} s", file=sys.stderr)
    text = table(cells)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    if any(c.status not in ("match", "refused") for c in cells):
        sys.exit(1)


if __name__ == "__main__":
    main()
