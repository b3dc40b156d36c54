"""Networks shared by the step benchmarks: a 'lively' random GoogLeNet, a quickly trained digits CNN and a
briefly trained Fashion-MNIST CNN (mnist_cnn, read offline from Debian's IDX files).

Imported by scripts/bench_steps.py, scripts/rule_convergence.py and scripts/bench_gpu.py (run them from the
repository root, so scripts/ is on sys.path). Scripts import neuronimp, never the reverse.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neuronimp.checkpoints import save_checkpoint
from neuronimp.data import load_data
from neuronimp.models import create_model
from neuronimp.training import TrainCfg, fit

FASHION_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian's fashion-mnist package (gzipped IDX)


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw conv/linear weights (He init) and random batch-norm terms, in place; eval mode.

    With torchvision's init (std 0.01) GoogLeNet's F(x) - F(x') is ~1e-12, so every delta is trivially small;
    at unit scale the logits move by O(1) along the path like a trained net's (same as tests/unit/
    test_googlenet_engine.py).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def googlenet_case(images: int, size: int, seed: int = 1) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lively GoogLeNet, random images and a random baseline [images, 3, size, size], and the target class
    whose logit changes most from baseline to image (so F(x) - F(x') is large)."""
    m = lively(create_model("googlenet", weights="none").model)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, 3, size, size, generator=g)
    b = torch.randn(images, 3, size, size, generator=g) * 0.1
    with torch.no_grad():
        t = (m(x) - m(b)).argmax(1)
    return m, x, b, t


def trained_digits_cnn(checkpoint: str | None = None, epochs: int = 8, seed: int = 0) -> tuple[nn.Module, object]:
    """digits_cnn with the weights of `checkpoint` if that file exists, else trained here (Adam 3e-3, batch 32,
    8 epochs like configs/digits_train.yaml: 10-50 s on 2 CPU cores) and saved to `checkpoint` if one is
    named; and the digits data bundle."""
    data = load_data("digits")
    if checkpoint and Path(checkpoint).exists():  # also what `neuronimp train` writes
        return create_model("digits_cnn", weights=checkpoint).model.eval(), data
    torch.manual_seed(seed)  # the initial weights too: the same network from every script
    m = create_model("digits_cnn", weights="none").model
    xs = torch.stack([data.train[i][0] for i in range(len(data.train))])
    ys = torch.tensor([int(data.train[i][1]) for i in range(len(data.train))])
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 32):
            j = perm[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(m(xs[j]), ys[j]).backward()
            opt.step()
    if checkpoint:
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), checkpoint)
    return m.eval(), data


def digits_case(model: nn.Module, data: object, images: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The first `images` test images, a zero baseline, the predicted class, and the test accuracy (any
    image data bundle: digits, Fashion-MNIST)."""
    test = data.test  # type: ignore[attr-defined]
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor([int(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        pred = model(xs).argmax(1)
    acc = float((pred == ys).float().mean())
    x = xs[:images]
    return x, torch.zeros_like(x), pred[:images], acc


def trained_fashion_cnn(checkpoint: str | None = None, root: str = FASHION_ROOT, epochs: int = 1,
                        train_limit: int | None = None, seed: int = 0) -> tuple[nn.Module, object]:
    """mnist_cnn (conv32-bn, conv64-bn, fc128; configs/fashion_cnn_train.yaml) with the weights of `checkpoint`
    if that file exists, else trained here with the project's `fit` (Adam 1e-3, batch 128 like the config, but
    `epochs` epochs, default 1, on the first `train_limit` training images: about a minute on 1 thread) and
    saved to `checkpoint` if one is named; and the Fashion-MNIST bundle read offline from `root`.

    Raises neuronimp's UsageError (one line) when `root` or its IDX files are missing.
    """
    data = load_data("fashion_mnist", root=root, train_limit=train_limit)
    if checkpoint and Path(checkpoint).exists():  # e.g. what `neuronimp train --config configs/fashion_cnn_train.yaml` writes
        return create_model("mnist_cnn", weights=checkpoint).model.eval(), data
    torch.manual_seed(seed)
    m = create_model("mnist_cnn", weights="none").model
    fit(m, data.train, TrainCfg(epochs=epochs, batch_size=128, optimizer="adam", lr=1e-3), seed=seed, show=False)
    if checkpoint:
        save_checkpoint(checkpoint, m.state_dict())
    return m.eval(), data
