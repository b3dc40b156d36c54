"""Random label corruption, as in Zhang et al. (2017) and Morcos et al. (2018)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from neuronimp.errors import UsageError

MODES = ("uniform", "different")


def corrupt_labels(
    labels: torch.Tensor | Sequence[int],
    fraction: float,
    num_classes: int,
    seed: int = 0,
    mode: str = "uniform",
) -> torch.Tensor:
    """Replace the labels of round(fraction * N) seeded-random items by random classes; LongTensor [N].

    mode "uniform" (Zhang et al. 2017, "partially corrupted labels"; Morcos et al. 2018): the new label is
    drawn uniformly from all `num_classes` classes, so about 1/num_classes of the chosen items keep their
    label by chance and the fraction of changed labels is about fraction * (1 - 1/num_classes).
    mode "different": the new label is drawn uniformly from the other num_classes - 1 classes, so exactly
    round(fraction * N) labels change. The input is never modified.
    """
    y = torch.as_tensor(labels, dtype=torch.long).clone()
    if not 0.0 <= float(fraction) <= 1.0:
        raise UsageError(f"label corruption fraction {fraction} is outside [0, 1]")
    if mode not in MODES:
        raise UsageError(f"unknown label corruption mode {mode!r}; allowed: {', '.join(MODES)}")
    if num_classes < 1 or (mode == "different" and num_classes < 2):
        raise UsageError(f"label corruption mode {mode!r} needs more classes than {num_classes}")
    n = len(y)
    k = int(round(float(fraction) * n))
    if k == 0:
        return y
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=g)[:k]  # [k] the items to corrupt
    if mode == "uniform":
        y[idx] = torch.randint(0, num_classes, (k,), generator=g)
    else:  # a shift of 1..C-1 modulo C is uniform over the other classes
        shift = torch.randint(1, num_classes, (k,), generator=g)
        y[idx] = (y[idx] + shift) % num_classes
    return y
