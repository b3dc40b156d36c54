"""MNIST and Fashion-MNIST from local IDX files: `root=`, else the folder `neuronimp data fetch NAME` fills.

Nothing is downloaded here (no download runs unseen): without root, the files are looked for in the cache
folder, torchvision's layout in the data home, and (Fashion-MNIST) Debian's /usr/share/datasets/fashion-mnist.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neuronimp.data.bundle import DATASETS, DataBundle, TensorData, need_dir
from neuronimp.data.fetch import locate
from neuronimp.data.idx import read_idx
from neuronimp.data.options import Count
from neuronimp.errors import UsageError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# training-set pixel mean and std of images in [0, 1]
STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
TV_FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def find_idx(root: Path, split: str, kind: str, folder: str) -> Path:
    """The IDX file of `split` ("train"/"t10k") and `kind` ("images"/"labels") under `root`.

    Looks in root, root/raw and root/<MNIST|FashionMNIST>/raw (torchvision's layout), gzipped or not,
    with a dash or a dot before "idx" (train-images-idx3-ubyte.gz, train-images.idx3-ubyte, ...).
    """
    n = 3 if kind == "images" else 1
    names = [f"{split}-{kind}{sep}idx{n}-ubyte{ext}" for ext in (".gz", "") for sep in ("-", ".")]
    for d in (root, root / "raw", root / folder / "raw"):
        for name in names:
            if (d / name).is_file():
                return d / name
    raise UsageError(f"{root} has no {split} {kind} IDX file; expected {names[0]} (or {names[1]}, or "
                     f"uncompressed) in it or in raw/ or {folder}/raw/")


def read_split(root: Path, split: str, folder: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 28, 28] and labels [N] of one split from local IDX files (first `limit`)."""
    images_path = find_idx(root, split, "images", folder)
    labels_path = find_idx(root, split, "labels", folder)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise UsageError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UsageError(f"file {labels_path} holds labels outside 0..9; expected 10 classes")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64))


def load_mnist_like(name: str, root: str | Path | None, normalize: bool,
                    train_limit: int | None, test_limit: int | None) -> DataBundle:
    """Shared body of `mnist` and `fashion_mnist`: float32 [1, 28, 28] in [0, 1] (or standardised)."""
    folder = TV_FOLDER[name]
    r = (need_dir(root, f"a folder with the {name} IDX files (train-images-idx3-ubyte.gz, ...)")
         if root is not None else locate(name))
    xtr, ytr = read_split(r, "train", folder, train_limit)
    xte, yte = read_split(r, "t10k", folder, test_limit)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).div_(255.0).unsqueeze(1)  # N x 1 x 28 x 28, in [0, 1]
        if normalize:
            mean, std = STATS[name]
            x = x.sub_(mean).div_(std)
        return x

    classes = FASHION_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    return DataBundle(
        train=TensorData(prep(xtr), ytr),
        test=TensorData(prep(xte), yte),
        num_classes=10,
        class_names=list(classes),
        vocab=None,
        input_shape=(1, 28, 28),
    )


@DATASETS.register("mnist")
def mnist(*, root: str | Path | None = None, normalize: bool = False,
          train_limit: Count | None = None, test_limit: Count | None = None) -> DataBundle:
    """MNIST digits, float32 [1,28,28]; root=folder of IDX files, else `neuronimp data fetch mnist`'s; first N."""
    return load_mnist_like("mnist", root, normalize, train_limit, test_limit)


@DATASETS.register("fashion_mnist", aliases=("fashion-mnist", "fmnist"))
def fashion_mnist(*, root: str | Path | None = None, normalize: bool = False,
                  train_limit: Count | None = None, test_limit: Count | None = None) -> DataBundle:
    """Fashion-MNIST; root=folder of IDX files, else `neuronimp data fetch fashion_mnist`'s, or Debian's."""
    return load_mnist_like("fashion_mnist", root, normalize, train_limit, test_limit)
