"""Modules that a propagation method has no rule for, named so that a run can say so.

DeepLIFT (Captum) gives its rescale rule only to the module types in `deep_lift.SUPPORTED_NON_LINEAR` (ReLU, ELU,
LeakyReLU, Sigmoid, Tanh, Softplus, Softmax, MaxPool1/2/3d; matched by exact type), to which `deeplift_rules`
adds every other element-wise activation of torch (SiLU, Hardswish, GELU ...), and squeeze-excitation gates get
the product rule (`deeplift_gates`): any other non-linearity (a norm, attention, a timm activation class) is crossed by its plain gradient, so the contributions no longer
sum to F(x) - F(x'). LRP (zennit) passes relevance unchanged through activations (`Pass`), splits it in
proportion through sums and average pools, merges batch norms into their convolutions and gives squeeze-excitation
gates the signal-take-all rule, layer norms and timm's (scaled-dot-product) attention the conservative rules of Ali
et al. 2022; other norms, a softmax or another attention product is crossed by its gradient, which does not conserve
relevance. Both matter only for modules that run after the scored layer (`LayerLayout.downstream`).

Non-linearities called as functions outside a module of their own (`F.relu(x)` in a block's forward) are
listed as `F.relu`, `F.softmax` ... (`functional_calls.py`): DeepLIFT has no rule for any of them; for LRP a
functional ReLU or max pool is harmless (the gradient conserves there), the others are not.
Known non-linear types are listed; other types are judged by their class name (timm's own `GELU`, `Attention`,
`SqueezeExcite`), so the list can name a module that is in fact linear: it is a warning, never a refusal.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from torch import nn

from neuronimp.methods.functional_calls import FunctionalCall

# element-wise or linear in eval mode: the gradient is the exact DeepLIFT multiplier and conserves LRP relevance
_LINEAR: tuple[type, ...] = (
    nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd,
    nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.Embedding, nn.EmbeddingBag, nn.Upsample, nn.ZeroPad2d, nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.ChannelShuffle, nn.Sequential, nn.ModuleList, nn.ModuleDict,
)
_NORMS: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm,
                            *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))
_MAX_POOLS: tuple[type, ...] = (nn.modules.pooling._AdaptiveMaxPoolNd, nn.FractionalMaxPool2d, nn.FractionalMaxPool3d,
                                nn.modules.pooling._LPPoolNd)
_SOFTMAX: tuple[type, ...] = (nn.Softmax, nn.Softmax2d, nn.LogSoftmax, nn.Softmin, nn.MultiheadAttention)
# products of two functions of the input, inside a module of this name (hooked by neither library)
_PRODUCT = re.compile(r"attention|squeezeexcit|semodule|effectivese", re.I)
# a module of an unknown type with one of these in its class name is a non-linearity (timm's GELU, RmsNorm ...)
_NONLINEAR_NAME = re.compile(r"gelu|silu|swish|mish|sigmoid|tanh|softmax|softplus|relu|elu$|layernorm|groupnorm|"
                             r"rmsnorm", re.I)


def _activation(t: type) -> bool:
    """One of torch's activation modules."""
    return issubclass(t, nn.Module) and t.__module__ == nn.modules.activation.__name__


def _nonlinear(t: type) -> bool:
    """A known non-linear type, or one whose class name says so."""
    return (_activation(t) or issubclass(t, _NORMS + _MAX_POOLS + _SOFTMAX + (nn.modules.pooling._MaxPoolNd,))
            or bool(_PRODUCT.search(t.__name__)) or bool(_NONLINEAR_NAME.search(t.__name__)))


def deeplift_gaps(types: Iterable[type]) -> list[str]:
    """Class names among `types` that Captum's DeepLIFT crosses by the plain gradient (module doc)."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    from neuronimp.methods.deeplift_rules import elementwise_activation
    from neuronimp.methods.lrp_canonizers import GATES

    out: list[str] = []
    for t in types:
        if issubclass(t, FunctionalCall):  # F.relu & co.: Captum's rules sit on modules only
            if t.__name__ not in out:
                out.append(t.__name__)
            continue
        if GATES.search(t.__name__):
            continue  # squeeze-excitation: DeepLIFT's product rule (deeplift_rules.deeplift_gates)
        if t in SUPPORTED_NON_LINEAR or elementwise_activation(t) or (
                issubclass(t, _LINEAR) and not _PRODUCT.search(t.__name__)):
            continue  # Captum matches its types exactly: a subclass of nn.ReLU has no rule
        if _nonlinear(t) and t.__name__ not in out:
            out.append(t.__name__)
    return out


def lrp_gaps(types: Iterable[type]) -> list[str]:
    """Class names among `types` that zennit crosses by the gradient where that does not conserve relevance."""
    from zennit.types import Activation

    from neuronimp.methods.deeplift_rules import elementwise_activation
    from neuronimp.methods.lrp_canonizers import GATES

    out: list[str] = []
    for t in types:
        if issubclass(t, FunctionalCall):  # a functional ReLU or max pool conserves under the gradient
            if t.kind not in ("relu", "max_pool") and t.__name__ not in out:
                out.append(t.__name__)
            continue
        if (issubclass(t, _LINEAR) and not _PRODUCT.search(t.__name__)) or issubclass(t, Activation):
            continue  # linear, or zennit's Pass rule (relevance unchanged)
        if elementwise_activation(t):
            continue  # another library's activation class: given Pass too (lrp.foreign_activations)
        if GATES.search(t.__name__):
            continue  # squeeze-excitation: the signal-take-all rule (lrp_canonizers.gates_pass)
        if issubclass(t, nn.LayerNorm) or _fused_attention(t):
            continue  # the LN- and AH-rules (lrp_transformer.py; timm's Attention run through SDPA)
        if issubclass(t, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
            continue  # winner takes all: the gradient conserves
        if _nonlinear(t) and t.__name__ not in out:
            out.append(t.__name__)
    return out


def _fused_attention(t: type) -> bool:
    """A timm-style attention class with a `fused_attn` switch (declared, or set in its __init__), which
    `lrp_transformer.transformer_rules` turns on so that it runs F.scaled_dot_product_attention."""
    init = getattr(t, "__init__", None)
    names = getattr(getattr(init, "__code__", None), "co_names", ())
    return "fused_attn" in getattr(t, "__annotations__", {}) or "fused_attn" in names


def gap_note(method: str, layer: str, names: list[str], finder: Callable[..., list[str]]) -> str:
    """The one-line warning for modules without a rule after `layer`; finder: deeplift_gaps or lrp_gaps."""
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    them = "them" if len(names) > 1 else "it"
    if finder is deeplift_gaps:
        return (f"{method} at {layer}: no DeepLIFT rule for {shown} after this layer; Captum crosses {them} by the "
                "plain gradient, so the scores are not DeepLIFT's and need not sum to F(x)-F(x'); use conductance or "
                "layer_ig (exact as n_steps grows) on this network")
    return (f"{method} at {layer}: no LRP rule for {shown} after this layer; zennit crosses {them} by the gradient, "
            "which does not conserve relevance (the delta shows by how much); use conductance or layer_ig on this "
            "network")
