"""DeepLIFT's max-pool rule with an unpool that adds, swapped into Captum for the duration of one call.

DeepLIFT (Shrikumar et al. 2017) through a max-pool: a window's change goes to the input that attains its max.
Captum's `deep_lift.maxpool` implements this but routes the contributions back with
`F.max_unpool{1,2,3}d`; hand-written here because of a Captum bug: F.max_unpool2d keeps one of two writes
when one input position is the max of two overlapping windows (3x3 stride 2 or stride 1 pools, as in
GoogLeNet and Inception v3), so one window's share is dropped and summation-to-delta fails. The rules below
are Captum's own `maxpool` with a scatter-add unpool; nothing else changes.

`SUPPORTED_NON_LINEAR` is Captum's module-level table (global state, like a hook): `adding_maxpool_rules`
patches it only inside a `with` block and restores it in `finally`, so plain Captum calls elsewhere are
unaffected. It is not thread-safe: do not run Captum DeepLIFT in another thread while the block is active.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


def _adding_unpool(module: nn.Module, dims: int) -> Callable[..., torch.Tensor]:
    """An unpool for `module` that sums every value routed to the same input position (max-pool indices).

    max_pool{1,2,3}d(..., return_indices=True) gives per-channel flat indices into the last `dims` input
    dimensions; scatter_add_ along those adds where F.max_unpool overwrites.
    """

    def unpool(g: torch.Tensor, idx: torch.Tensor, *_: object) -> torch.Tensor:
        size = module.input.shape  # set by Captum's forward pre-hook: N x C x *spatial (input and reference)
        flat = g.new_zeros(*size[:-dims], math.prod(size[-dims:]))
        return flat.scatter_add_(-1, idx.flatten(-dims), g.flatten(-dims)).view(size)

    return unpool


def _rule(pool: Callable[..., object], dims: int) -> Callable[..., torch.Tensor]:
    """Captum's DeepLIFT max-pool rule (`deep_lift.maxpool`) for `pool`, with the adding unpool."""

    def rule(module: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor, grad_input: torch.Tensor,
             grad_output: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        from captum.attr._core import deep_lift

        return deep_lift.maxpool(module, pool, _adding_unpool(module, dims), inputs, outputs, grad_input,
                                 grad_output, eps=eps)

    rule.__name__ = f"adding_maxpool{dims}d"
    rule.__doc__ = f"DeepLIFT max-pool rule for nn.MaxPool{dims}d whose unpool adds (Captum's drops overlaps)."
    return rule


adding_maxpool1d = _rule(F.max_pool1d, 1)
adding_maxpool2d = _rule(F.max_pool2d, 2)
adding_maxpool3d = _rule(F.max_pool3d, 3)
ADDING_RULES: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.MaxPool1d: adding_maxpool1d, nn.MaxPool2d: adding_maxpool2d, nn.MaxPool3d: adding_maxpool3d,
}


@contextmanager
def adding_maxpool_rules() -> Iterator[None]:
    """While active, Captum's DeepLIFT uses the adding max-pool rules; the previous entries come back after."""
    from captum.attr._core import deep_lift

    table = deep_lift.SUPPORTED_NON_LINEAR
    missing = object()
    saved = {cls: table.get(cls, missing) for cls in ADDING_RULES}
    try:
        table.update(ADDING_RULES)
        yield
    finally:
        for cls, rule in saved.items():
            if rule is missing:
                table.pop(cls, None)
            else:
                table[cls] = rule
