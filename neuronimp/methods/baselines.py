"""Baselines x' for path methods: zero (black image / zero embedding = all-padding sentence), the
per-channel dataset mean, a Gaussian-blurred input, or a tensor file."""
from __future__ import annotations

from pathlib import Path

import torch

from neuronimp.errors import UsageError

BASELINES = ("zero", "mean", "blur")


def make_baseline(kind: str, x: torch.Tensor, channel_mean: torch.Tensor | None = None, sigma: float = 5.0) -> torch.Tensor:
    """The baseline for inputs x [B, ...] (broadcastable to x)."""
    if kind == "zero":
        return torch.zeros_like(x[:1])
    if kind == "mean":
        if channel_mean is None:
            raise UsageError("attribution.baseline = 'mean' needs the dataset's per-channel mean")
        return channel_mean.to(x).view(1, -1, *([1] * (x.dim() - 2)))
    if kind == "blur":
        if x.dim() != 4:
            raise UsageError("attribution.baseline = 'blur' needs image inputs [N, C, H, W]")
        from torchvision.transforms.functional import gaussian_blur

        k = int(2 * round(3 * sigma) + 1)
        return gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])
    p = Path(kind).expanduser()
    t = read_baseline_file(p)
    if t.dim() == x.dim() - 1:
        t = t.unsqueeze(0)
    try:
        torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError:
        raise UsageError(f"baseline file {p} has shape {tuple(t.shape)}, not broadcastable to inputs {tuple(x.shape)}") from None
    return t.to(x)


def read_baseline_file(path: str | Path) -> torch.Tensor:
    """The tensor of a baseline file (weights_only=True); UsageError naming the file when it is missing,
    unreadable, not a tensor, or holds NaN or inf."""
    import warnings

    p = Path(path).expanduser()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the error below says enough
            t = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"baseline file {p} not found; allowed: zero, mean, blur, or a tensor file") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a usage error
        first = " ".join(str(exc).split())[:160]
        raise UsageError(f"baseline file {p} is not a readable tensor file ({type(exc).__name__}: {first}); "
                         "save one with torch.save(tensor, path)") from None
    if not isinstance(t, torch.Tensor):
        raise UsageError(f"baseline file {p} holds a {type(t).__name__}, not a tensor")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise UsageError(f"baseline file {p} holds {bad} NaN or inf values; a baseline must be finite")
    return t


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean over a batch of inputs [N, C, ...] -> [C]."""
    return x.transpose(0, 1).flatten(1).mean(1)
