"""Canonical form for LRP: batch norms merged into the convolution before them, residual sums that split
relevance in proportion. Every change is undone when its context (or zennit's composite context) exits.

Why: LRP rules are written for `z_k = sum_j a_j w_jk + b_k` followed by an elementwise activation
(Montavon et al. 2019, sec. 10.2). A batch norm after a conv is an affine map of z that a rule on the conv
cannot see; merged into the conv (w' = w s, b' = (b - mu) s + beta with s = gamma / sqrt(var + eps)) it
becomes part of z, and the batch norm computes the identity. A residual `y = a + b` passes the full
relevance R_y to both a and b under plain autograd (R counted twice per addition: measured 4 F(x) below two
additions of a residual MLP, 16 F(x) at layer2 of a ResNet-18); the sum rule R_a = a / (a + b) R_y,
R_b = b / (a + b) R_y (zennit's `Norm` rule on its `Sum` module) conserves it.

- Batch-norm pairs are found by following tensors in one forward pass (the batch norm reads exactly the
  tensor a conv or linear module returned), not by the order modules are registered in; zennit's
  `NamedMergeBatchNorm` then merges them and restores the parameters afterwards. A conv whose output had a
  second reader would change that reader: `lrp.lrp_layers` compares the canonized model's logits with the
  original's and refuses to go on when they differ.
- torchvision's ResNet BasicBlock and Bottleneck use zennit's own canonizers (`zennit.torchvision`): their
  forward becomes `relu(Sum(stack([identity, out])))`, with zennit's Sum module and Norm rule.
- Any other addition of two activations (timm's `x += shortcut`, a residual MLP's `h + f(h)`) goes through
  `proportional_adds`, a TorchFunctionMode active during the LRP forward pass only, which replaces
  `a + b` (add, add_, +, +=, torch.add; no alpha, both operands depending on the input) by the same sum rule.
- A squeeze-excitation block (torchvision `SqueezeExcitation`, timm `SqueezeExcite`, `SEModule`, `EffectiveSE`)
  computes y = x * g(x), a product of two functions of the input that no LRP rule covers (plain autograd sends
  g R_y to x and more through g: relevance is not conserved, 80 % off at an EfficientNet block). `gates_pass`
  applies the signal-take-all rule for multiplicative gates (Arras et al. 2017, "Explaining recurrent neural
  network predictions in sentiment analysis", sec. 3): the gate is a constant of the forward pass, R_x = R_y,
  R_g = 0. It is a forward hook returning x + (y - x).detach(): the same value, gradient 1 to x, 0 to g.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from zennit.canonizers import NamedMergeBatchNorm

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
GATES = re.compile(r"squeezeexcit|semodule|effectivese", re.I)  # class names of squeeze-excitation blocks
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def has_batch_norm(model: nn.Module) -> bool:
    """True when the model holds a batch norm with running statistics and an affine part (a merge candidate)."""
    return any(isinstance(m, _BN) and m.affine and m.running_mean is not None for m in model.modules())


def conv_bn_pairs(model: nn.Module, x1: torch.Tensor) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """(conv or linear name, batch-norm name) for every batch norm that reads a conv's output tensor, found
    in one forward pass of `x1` (no grad); also returns that pass's logits (the reference for the merge check)."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (module name, output kept alive)
    pairs: list[tuple[str, str]] = []

    def after_linear(mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (names[mod], out)

    def before_bn(mod: nn.Module, inp: tuple[Any, ...]) -> None:
        src = produced.get(id(inp[0])) if inp and isinstance(inp[0], torch.Tensor) else None
        if src is not None and src[1] is inp[0] and mod.affine and mod.running_mean is not None:
            pairs.append((src[0], names[mod]))

    handles = []
    try:
        for m in model.modules():
            if isinstance(m, _LINEAR):
                handles.append(m.register_forward_hook(after_linear))
            elif isinstance(m, _BN):
                handles.append(m.register_forward_pre_hook(before_bn))
        with torch.no_grad():
            logits = model(x1)
    finally:
        for h in handles:
            h.remove()
    unique: dict[str, str] = {}
    for conv, bn in pairs:  # a batch norm called twice is merged once (and the merge check catches it)
        unique.setdefault(bn, conv)
    return [(conv, bn) for bn, conv in unique.items()], logits


class ExactMergeBatchNorm(NamedMergeBatchNorm):
    """zennit's NamedMergeBatchNorm, with the emptied batch norm an exact identity.

    zennit 0.5.1 sets mean 0, var 1, weight 1, bias 0 but keeps `eps`, so the batch norm still divides by
    sqrt(1 + eps): a factor 1 - 5e-4 per layer with GoogLeNet's eps 1e-3, 0.8% on its logits (measured). Here
    eps is 0 while merged, and restored with the rest.
    """

    def register(self, linears: list[nn.Module], batch_norm: nn.Module) -> None:
        """Merge `batch_norm` into `linears` (zennit), then make it the identity exactly (eps = 0)."""
        self.saved_eps = batch_norm.eps
        super().register(linears, batch_norm)
        batch_norm.eps = 0.0

    def remove(self) -> None:
        """Restore parameters (zennit) and eps."""
        super().remove()
        self.batch_norm.eps = self.saved_eps


def batch_norm_merge(pairs: list[tuple[str, str]]) -> ExactMergeBatchNorm:
    """A zennit canonizer merging each of `pairs` (applied and undone by the composite context)."""
    return ExactMergeBatchNorm([((conv,), bn) for conv, bn in pairs])


def torchvision_resnet_canonizers(model: nn.Module) -> list[Any]:
    """zennit's BasicBlock / Bottleneck canonizers when the model holds torchvision ResNet blocks, else []."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if not any(isinstance(m, (BasicBlock, Bottleneck)) for m in model.modules()):
        return []
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    return [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()]


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """z + eps * sign(z), sign(0) = +1 (zennit's stabilizer)."""
    return z + eps * ((z == 0).to(z) + z.sign())


class _ProportionalAdd(torch.autograd.Function):
    """y = a + b; backward sends R_a = a R / (y + eps sign y), R_b = b R / (y + eps sign y) (sum rule)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.eps = eps
        return a + b

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        a, b = ctx.saved_tensors
        s = r / _stabilize(a + b, ctx.eps)
        return (a * s).sum_to_size(a.shape), (b * s).sum_to_size(b.shape), None


_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_IADDS = {torch.Tensor.add_, torch.Tensor.__iadd__}


class _ProportionalAdds(TorchFunctionMode):
    """Routes `a + b` of two tensors that require grad through `_ProportionalAdd` (see module docstring)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if (func in _ADDS or func in _IADDS) and not kwargs and len(args) == 2 and all(
            isinstance(t, torch.Tensor) and t.requires_grad and t.is_floating_point() for t in args
        ):
            a, b = args
            if func in _IADDS:  # keep the in-place contract: `a` itself holds the sum afterwards
                return a.copy_(_ProportionalAdd.apply(a.clone(), b, self.eps))
            return _ProportionalAdd.apply(a, b, self.eps)
        return func(*args, **kwargs)


@contextmanager
def proportional_adds(stabilizer: float = 1e-6) -> Iterator[None]:
    """While active, additions of two activations split relevance in proportion to their terms (sum rule)."""
    mode = _ProportionalAdds(stabilizer)
    with mode:
        yield


def _signal_takes_all(_module: nn.Module, inputs: tuple[Any, ...], out: Any) -> Any:
    """Forward hook of a gate y = x * g(x): the same value, with R_x = R_y and R_g = 0 under autograd."""
    x = inputs[0] if inputs else None
    if isinstance(x, torch.Tensor) and isinstance(out, torch.Tensor) and out.shape == x.shape:
        return x + (out - x).detach()
    return out


@contextmanager
def gates_pass(model: nn.Module) -> Iterator[list[str]]:
    """While active, every squeeze-excitation block (class name matching `GATES`) passes relevance to its
    signal only (module doc); yields their class names; hooks removed in `finally`."""
    gates = [m for m in model.modules() if GATES.search(type(m).__name__)]
    handles = [m.register_forward_hook(_signal_takes_all) for m in gates]
    try:
        yield sorted({type(m).__name__ for m in gates})
    finally:
        for h in handles:
            h.remove()
