"""The class each explanation is for: the model's prediction, the label, or a fixed class (the one helper)."""
from __future__ import annotations

import torch
from torch import nn

from neuronimp.errors import UsageError


def target_classes(model: nn.Module, x: torch.Tensor, how: str | int, y: torch.Tensor | None = None,
                   chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(target class [B], predicted class [B]) for inputs x: how = 'predicted', 'label' (needs y) or a class index.

    The prediction is computed `chunk` inputs at a time, without gradients.
    """
    with torch.no_grad():
        parts = [model(x[i : i + chunk]).argmax(1) for i in range(0, x.shape[0], chunk)]
    pred = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=x.device)
    if how == "predicted":
        return pred, pred
    if how == "label":
        if y is None:
            raise UsageError("target = 'label' needs the labels of the inputs")
        return torch.as_tensor(y).to(pred), pred
    return torch.full_like(pred, int(how)), pred
