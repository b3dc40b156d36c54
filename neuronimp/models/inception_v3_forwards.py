"""The forwards of Inception v3's blocks (Szegedy et al. 2016), pools as modules, shared by the torchvision
(`inception_v3_blocks.py`) and timm (`timm_inception_blocks.py`) subclasses: both libraries name the
children alike and wire them alike, only their pools are functional.

Each pool reads its own copy of the block input (`x.clone()`): Captum's DeepLIFT hooks a rule module's
*input tensor*, so on the shared `x` its max-pool multiplier would replace the gradient the conv branches
send to `x` too (`canonical.shared_inputs` finds such sites). Mixins: put them before the library's class.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

Block = Any  # the library block this is mixed into: its children are attributes


class AForward:
    """35x35 block: 1x1, 5x5, double 3x3 and avg-pool branches."""

    def _forward(self: Block, x: Tensor) -> list[Tensor]:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(self.pool(x.clone()))]


class BForward:
    """35->17 reduction: 3x3/2, double 3x3/2 and max-pool branches."""

    def _forward(self: Block, x: Tensor) -> list[Tensor]:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch3x3(x), b3, self.pool(x.clone())]


class CForward:
    """17x17 block: 1x1, factorised 7x7, double 7x7 and avg-pool branches."""

    def _forward(self: Block, x: Tensor) -> list[Tensor]:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        d = self.branch7x7dbl_5(self.branch7x7dbl_4(d))
        return [self.branch1x1(x), b7, d, self.branch_pool(self.pool(x.clone()))]


class DForward:
    """17->8 reduction: 3x3/2, 7x7x3/2 and max-pool branches."""

    def _forward(self: Block, x: Tensor) -> list[Tensor]:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return [b3, b7, self.pool(x.clone())]


class EForward:
    """8x8 block: 1x1, split 3x3, split double 3x3 and avg-pool branches."""

    def _forward(self: Block, x: Tensor) -> list[Tensor]:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return [self.branch1x1(x), b3, d, self.branch_pool(self.pool(x.clone()))]
