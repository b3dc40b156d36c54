"""torchvision's GoogLeNet Inception block with its pool branch reading its own copy of the input.

(Imported lazily: it imports torchvision.) Captum's DeepLIFT hooks a rule module's *input tensor*: on the
block input `x`, which the three conv branches read too, the max-pool multiplier of `branch4.0` would replace
the gradient all four branches send back to `x` (`canonical.shared_inputs` finds such call sites). Giving
`branch4` `x.clone()` keeps the block's children, names (`inception4d.branch4.0`), state-dict keys and outputs.
The copy serves plain Captum DeepLIFT; plain Captum LRP then multiplies the pool branch's relevance by `x` twice.
`methods.propagation` gives every hooked module its own copy for each call, which makes both right either way.
"""
from __future__ import annotations

from torch import Tensor
from torchvision.models.googlenet import Inception as TvInception  # (the package attribute is the function)


class Inception(TvInception):
    """1x1, 1x1->3x3, 1x1->3x3 (torchvision's "5x5") and max-pool 3/1 -> 1x1 branches, concatenated."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        # N x C_in x H x W -> four N x C_i x H x W; the pool branch gets a copy (see the module docstring)
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x.clone())]
