"""LRP through transformer blocks: conservative rules for layer norms and attention (Ali et al. 2022).

zennit has rules for linear layers, activations, sums and pools, and none for a layer norm or an attention
product: crossed by the gradient they do not conserve relevance (measured on a ViT block: up to 3e6 x F(x)).
"XAI for Transformers: Better Explanations through Conservative Propagation" (Ali et al., ICML 2022) makes both
locally linear by holding a factor constant, and LRP then propagates through the linear map:

  LN-rule  y = w (x - mean(x)) / sigma + b with sigma = sqrt(var(x) + eps) held constant: an affine map of x.
  AH-rule  o = P v with the attention weights P = softmax(q k^T * scale + mask) held constant: linear in v;
           q and k (through P) receive no relevance.

Through such a map z = J x + c, relevance follows the epsilon / LRP-0 rule (Bach et al. 2015, eq. 58) in zennit's
convention (the modified gradient IS the relevance): R_x = x * J^T (R_z / stab(z)), so sum_i R_x_i =
sum_j R_z_j (z_j - c_j) / z_j, which conserves relevance when c = 0 (the bias absorbs the rest, as in zennit's
own Epsilon rule). `_Linearised` does this for any such map given as a function of x with the constants captured.

Layer norms (nn.LayerNorm and subclasses: timm's LayerNorm, and its channels-first LayerNorm2d of ConvNeXt) get
the LN-rule through a forward hook, which checks that its own map gives the module's output. Attention gets
the AH-rule where it calls `F.scaled_dot_product_attention` (timm's ViT blocks, torch's SDPA users), through a
TorchFunctionMode active during the LRP forward pass; timm Attention modules are switched to that fused path
(`fused_attn`) for the pass and switched back afterwards. An attention written with an explicit softmax
(nn.MultiheadAttention, other code) keeps no rule and is named in the run's warning.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from neuronimp.methods.lrp_canonizers import _stabilize


class _Linearised(torch.autograd.Function):
    """Forward: fn(x) (its value). Backward: R_x = x * J^T (R / stab(fn(x))), J the Jacobian of fn at x."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], eps: float) -> torch.Tensor:
        ctx.fn, ctx.eps = fn, eps
        ctx.save_for_backward(x)
        return fn(x)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            z = ctx.fn(xd)
            (g,) = torch.autograd.grad(z, xd, r / _stabilize(z.detach(), ctx.eps))
        return x.detach() * g, None, None


def _ln_map(x: torch.Tensor, module: nn.LayerNorm, channels_first: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The layer norm as a function of its input with sigma held at its value for x: over the last dims (torch's
    LayerNorm), or over dim 1 of a channels-first map (timm's LayerNorm2d, which permutes around F.layer_norm)."""
    k = len(module.normalized_shape)
    dims = (1,) if channels_first else tuple(range(-k, 0))
    with torch.no_grad():
        sigma = (x.var(dims, unbiased=False, keepdim=True) + module.eps).sqrt()
    shape = (-1, *([1] * (x.dim() - 2))) if channels_first else tuple(module.normalized_shape)
    w = module.weight.detach().view(shape) if module.weight is not None else None
    b = module.bias.detach().view(shape) if module.bias is not None else None

    def fn(t: torch.Tensor) -> torch.Tensor:
        z = (t - t.mean(dims, keepdim=True)) / sigma
        z = z * w if w is not None else z
        return z + b if b is not None else z

    return fn


def _layer_norm_rule(eps: float) -> Callable[..., torch.Tensor]:
    """Forward hook of a LayerNorm: same output, relevance by the LN-rule (module doc). A layer norm whose output
    is neither form of `_ln_map` is refused in one line (no silent gradient)."""

    def hook(module: nn.LayerNorm, inputs: tuple[Any, ...], out: Any) -> Any:
        x = inputs[0] if inputs else None
        if not (isinstance(x, torch.Tensor) and isinstance(out, torch.Tensor) and x.requires_grad):
            return out
        k = len(module.normalized_shape)
        forms = [False] if tuple(x.shape[-k:]) == tuple(module.normalized_shape) else []
        if k == 1 and x.dim() > 2 and x.shape[1] == module.normalized_shape[0]:
            forms.append(True)
        tol = 1e-4 if out.dtype in (torch.float16, torch.bfloat16) else 1e-5
        for channels_first in forms:
            fn = _ln_map(x, module, channels_first)
            with torch.no_grad():
                same = torch.allclose(fn(x), out, rtol=tol, atol=tol * float(out.abs().max().clamp(min=1e-30)))
            if same:
                return _Linearised.apply(x, fn, eps)
        from neuronimp.errors import UsageError

        raise UsageError(f"lrp: {type(module).__name__} {tuple(module.normalized_shape)} on input "
                         f"{tuple(x.shape)} is not a layer norm over the last or the channel dims, so the LN-rule "
                         "cannot hold its scale; use conductance or layer_ig on this network")

    return hook


def _attention_weights(q: torch.Tensor, k: torch.Tensor, attn_mask: Any, is_causal: bool, scale: Any
                       ) -> torch.Tensor:
    """softmax(q k^T * scale + mask), as F.scaled_dot_product_attention computes it (no dropout), detached."""
    with torch.no_grad():
        s = (q @ k.transpose(-2, -1)) * (scale if scale is not None else q.shape[-1] ** -0.5)
        if is_causal:
            keep = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
            s = s.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
        return s.softmax(-1)


class _AttentionRule(TorchFunctionMode):
    """Routes F.scaled_dot_product_attention through the AH-rule (module doc)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and len(args) >= 3:
            q, k, v = args[:3]
            extra = dict(zip(("attn_mask", "dropout_p", "is_causal", "scale"), args[3:]))
            extra.update(kwargs)
            if (extra.get("dropout_p", 0.0) == 0.0 and not extra.get("enable_gqa", False)
                    and q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and v.requires_grad):
                p = _attention_weights(q, k, extra.get("attn_mask"), bool(extra.get("is_causal", False)),
                                       extra.get("scale"))
                return _Linearised.apply(v, lambda t: p @ t, self.eps)
        return func(*args, **kwargs)


@contextmanager
def transformer_rules(model: nn.Module, eps: float = 1e-6) -> Iterator[None]:
    """While active: the LN-rule on every LayerNorm, the AH-rule on scaled-dot-product attention (timm's
    Attention modules switched to it); hooks, flags and the mode removed in `finally`."""
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    fused = [m for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    saved = [m.fused_attn for m in fused]
    handles = [m.register_forward_hook(_layer_norm_rule(eps)) for m in norms]
    try:
        for m in fused:
            m.fused_attn = True
        with _AttentionRule(eps):
            yield
    finally:
        for h in handles:
            h.remove()
        for m, f in zip(fused, saved):
            m.fused_attn = f
