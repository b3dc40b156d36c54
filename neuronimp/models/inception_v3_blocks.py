"""torchvision's Inception v3 blocks with their pools as modules (imported lazily: it imports torchvision).

torchvision pools with `F.avg_pool2d` / `F.max_pool2d`; these subclasses own `nn.AvgPool2d` / `nn.MaxPool2d`
modules instead (no parameters: same state-dict keys, same outputs), so hooks and DeepLIFT's max-pool rule
see them. With `BasicConv2d` from `inception.py` no functional or in-place ReLU is left.

Each pool reads its own copy of the block input (`x.clone()`): Captum hooks a rule module's *input tensor*,
so on the shared `x` its max-pool multiplier would replace the gradient the conv branches send to `x` too
(`canonical.shared_inputs` finds such sites; timm_inception_blocks.py does the same for timm). As in
googlenet_blocks.py: plain Captum LRP then counts the pool branch's input twice; `methods.propagation` does not.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torchvision.models import inception as tv

from neuronimp.models.inception import BasicConv2d
from neuronimp.models.inception_v3_forwards import AForward, BForward, CForward, DForward, EForward


class InceptionA(AForward, tv.InceptionA):
    """35x35 block: 1x1, 5x5, double 3x3 and avg-pool branches."""

    def __init__(self, *args: Any, conv_block: Callable[..., nn.Module] = BasicConv2d, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=conv_block, **kwargs)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)


class InceptionB(BForward, tv.InceptionB):
    """35->17 reduction: 3x3/2, double 3x3/2, max-pool branches."""

    def __init__(self, *args: Any, conv_block: Callable[..., nn.Module] = BasicConv2d, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=conv_block, **kwargs)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)


class InceptionC(CForward, tv.InceptionC):
    """17x17 block: 1x1, factorised 7x7, double 7x7 and avg-pool branches."""

    def __init__(self, *args: Any, conv_block: Callable[..., nn.Module] = BasicConv2d, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=conv_block, **kwargs)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)


class InceptionD(DForward, tv.InceptionD):
    """17->8 reduction: 3x3/2, 7x7x3/2, max-pool branches."""

    def __init__(self, *args: Any, conv_block: Callable[..., nn.Module] = BasicConv2d, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=conv_block, **kwargs)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2)


class InceptionE(EForward, tv.InceptionE):
    """8x8 block: 1x1, split 3x3, split double 3x3 and avg-pool branches."""

    def __init__(self, *args: Any, conv_block: Callable[..., nn.Module] = BasicConv2d, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=conv_block, **kwargs)
        self.pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)


# Inception3 passes `inception_blocks[0]` to its stem only: the blocks above default conv_block to ours.
BLOCKS = [BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, tv.InceptionAux]
