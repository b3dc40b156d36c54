"""timm's Inception v3 blocks with their pools as modules (imported lazily: it imports timm).

timm pools inside its blocks with `F.avg_pool2d` / `F.max_pool2d` (its stem already owns `Pool1`/`Pool2`
and its head an `nn.AdaptiveAvgPool2d`). Hooks never see a functional pool, and Captum's DeepLIFT then
backpropagates the plain gradient through the max-pools of Mixed_6a and Mixed_7a: summation-to-delta
fails for any baseline whose max positions differ from the input's. These subclasses own `nn.AvgPool2d` /
`nn.MaxPool2d` modules with timm's exact arguments (no parameters: same state-dict keys, same outputs).

The forwards (each pool reading its own copy of the block input) are shared with the torchvision version:
`inception_v3_forwards.py`.

Subclasses rather than an fx rewrite, as `inception_v3_blocks.py` does for torchvision: the block keeps its
class, its children's order and names, and a forward one can read; `canonical_inception_v3` checks at build
time that the converted model computes what timm's does, so a timm release that re-wires its blocks fails
loudly instead of drifting.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from timm.models.inception_v3 import InceptionA as TimmA
from timm.models.inception_v3 import InceptionAux as TimmAux
from timm.models.inception_v3 import InceptionB as TimmB
from timm.models.inception_v3 import InceptionC as TimmC
from timm.models.inception_v3 import InceptionD as TimmD
from timm.models.inception_v3 import InceptionE as TimmE
from torch import Tensor, nn

from neuronimp.models.canonical import evaluating
from neuronimp.models.inception_v3_forwards import AForward, BForward, CForward, DForward, EForward


class InceptionA(AForward, TimmA):
    """35x35 block: 1x1, 5x5, double 3x3 and avg-pool (3/1, pad 1) branches."""


class InceptionB(BForward, TimmB):
    """35->17 reduction: 3x3/2, double 3x3/2 and max-pool (3/2) branches."""


class InceptionC(CForward, TimmC):
    """17x17 block: 1x1, factorised 7x7, double 7x7 and avg-pool (3/1, pad 1) branches."""


class InceptionD(DForward, TimmD):
    """17->8 reduction: 3x3/2, 7x7x3/2 and max-pool (3/2) branches."""


class InceptionE(EForward, TimmE):
    """8x8 block: 1x1, split 3x3, split double 3x3 and avg-pool (3/1, pad 1) branches."""


class InceptionAux(TimmAux):
    """Auxiliary head (only with `aux_logits=True`): avg-pool 5/3, two convs, global avg-pool, fc."""

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x.clone())  # N x 768 x 5 x 5
        x = self.conv1(self.conv0(x))  # N x 768 x 1 x 1
        return self.fc(torch.flatten(self.global_pool(x), 1))  # N x num_classes


# timm block class -> (our subclass, {child name: pool factory}); arguments exactly as timm's forward calls F.*.
_avg3 = partial(nn.AvgPool2d, kernel_size=3, stride=1, padding=1)
_max3 = partial(nn.MaxPool2d, kernel_size=3, stride=2)
CANONICAL: dict[type[nn.Module], tuple[type[nn.Module], dict[str, Callable[[], nn.Module]]]] = {
    TimmA: (InceptionA, {"pool": _avg3}),
    TimmB: (InceptionB, {"pool": _max3}),
    TimmC: (InceptionC, {"pool": _avg3}),
    TimmD: (InceptionD, {"pool": _max3}),
    TimmE: (InceptionE, {"pool": _avg3}),
    TimmAux: (InceptionAux, {"pool": partial(nn.AvgPool2d, kernel_size=5, stride=3),
                             "global_pool": partial(nn.AdaptiveAvgPool2d, (1, 1))}),
}


def adopt(block: nn.Module) -> nn.Module:
    """Our subclass of `block`'s class holding `block`'s very children (same objects, same order) plus pools."""
    cls, pools = CANONICAL[type(block)]
    new = cls.__new__(cls)
    nn.Module.__init__(new)  # skip timm's __init__: it would build (and initialise) a fresh set of convs
    for name, child in block.named_children():
        new.add_module(name, child)
    for name, make in pools.items():
        new.add_module(name, make())
    return new.train(block.training)


def canonical_inception_v3(model: nn.Module) -> nn.Module:
    """Replace, in place, every Inception block of timm's InceptionV3 `model` by `adopt(block)`; return it.

    Raises RuntimeError if the converted model's outputs differ from timm's on a random input of the smallest
    size the net takes (75x75, or 299x299 with the aux head), i.e. if the installed timm wires its blocks
    differently from ours.
    """
    targets = [(name, m) for name, m in model.named_children() if type(m) in CANONICAL]
    param = next(model.parameters())
    size = 75 if getattr(model, "AuxLogits", None) is None else 299
    x = torch.randn(1, model.in_chans, size, size, generator=torch.Generator().manual_seed(0)).to(param)
    with torch.no_grad(), evaluating(model):
        want = model(x)
        for name, block in targets:
            setattr(model, name, adopt(block))
        got = model(x)
    if not all(torch.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in zip(_tensors(got), _tensors(want))):
        raise RuntimeError("timm's Inception v3 blocks are wired unlike neuronimp/models/timm_inception_blocks.py "
                           f"(timm {_timm_version()}); update the subclasses there")
    return model


def _tensors(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The model's output as a tuple (timm returns (logits, aux) with aux_logits=True)."""
    return out if isinstance(out, tuple) else (out,)


def _timm_version() -> str:
    """The installed timm version, for the error message."""
    import timm

    return timm.__version__
