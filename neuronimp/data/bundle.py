"""The data bundle every loader returns, the dataset registry, and small tensor-dataset helpers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from neuronimp.errors import UsageError
from neuronimp.registry import Registry

DATASETS: Registry[Callable[..., "DataBundle"]] = Registry("dataset")


@dataclass
class DataBundle:
    """Train/test splits of one data set plus what a model needs to know about them."""

    train: Dataset  # items (x, y): x float tensor (images) or LongTensor [L] (token ids); y int
    test: Dataset
    num_classes: int
    class_names: list[str]
    vocab: list[str] | None  # text only: index -> token, index 0 is "<pad>", 1 is "<unk>"
    input_shape: tuple[int, ...]  # one example, no batch dim: (1, 28, 28), (3, 224, 224), (L,)
    dev: Dataset | None = None  # a held-out dev split, where the data set has one (SST-2)


class TensorData(Dataset):
    """A dataset held as two tensors: inputs `x` [N, ...] and labels `y` LongTensor [N]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        self.x = x
        self.y = torch.as_tensor(y, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])

    def __repr__(self) -> str:
        return f"TensorData(x={tuple(self.x.shape)} {self.x.dtype}, y={tuple(self.y.shape)})"


class IndexedSubset(Dataset):
    """The items `indices` of a dataset that is not held as tensors; keeps a `y` for fast labels."""

    def __init__(self, base: Dataset, indices: torch.Tensor) -> None:
        self.base = base
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.y = labels_of(base)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, _ = self.base[int(self.indices[i])]
        return x, int(self.y[i])


def labels_of(dataset: Dataset) -> torch.Tensor:
    """All labels of `dataset` as a LongTensor [N]; reads `.y` or `.targets`, else iterates (slow)."""
    for attr in ("y", "targets"):
        y = getattr(dataset, attr, None)
        if y is not None:
            return torch.as_tensor(y, dtype=torch.long)
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]


def take(dataset: Dataset, n: int | None, seed: int | None = None) -> Dataset:
    """The first `n` items of `dataset` (seed None), or `n` items drawn without replacement by `seed`.

    A seeded draw is a plain uniform sample (not stratified), returned in sampled order.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if n is None or (n >= size and seed is None):
        return dataset
    if n < 0:
        raise UsageError(f"cannot take {n} items: the count must be >= 0")
    n = min(n, size)
    if seed is None:
        idx = torch.arange(n)
    else:
        idx = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
    return select(dataset, idx)


def select(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    """The items `indices` of `dataset`, as a TensorData when the dataset holds tensors."""
    if isinstance(dataset, TensorData):
        return TensorData(dataset.x[indices], dataset.y[indices])
    return IndexedSubset(dataset, indices)


def relabel(dataset: Dataset, y: torch.Tensor) -> Dataset:
    """A copy of `dataset` (same inputs) with labels replaced by `y` [N]."""
    if len(y) != len(dataset):  # type: ignore[arg-type]
        raise ValueError(f"{len(y)} labels for {len(dataset)} items")  # type: ignore[arg-type]
    if isinstance(dataset, TensorData):
        return TensorData(dataset.x, y)
    if hasattr(dataset, "with_labels"):  # e.g. ImageFolderData: keeps its files and wnids
        return dataset.with_labels(torch.as_tensor(y, dtype=torch.long))
    sub = IndexedSubset(dataset, torch.arange(len(y)))
    sub.y = torch.as_tensor(y, dtype=torch.long)
    return sub


def need_dir(path: str | Path, what: str) -> Path:
    """`path` as a Path when it is an existing directory, else UsageError saying what was expected."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{p} does not exist; expected {what}")
    if not p.is_dir():
        raise UsageError(f"{p} is not a directory; expected {what}")
    return p
