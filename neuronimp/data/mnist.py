"""MNIST and Fashion-MNIST: local IDX files (offline) or torchvision's download (online)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neuronimp.data.bundle import DATASETS, DataBundle, TensorData, need_dir
from neuronimp.data.idx import read_idx
from neuronimp.errors import UsageError

CACHE = Path("~/.cache/neuronimp").expanduser()
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


def download_split(name: str, train: bool, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one split through torchvision (downloads into ~/.cache/neuronimp)."""
    import torchvision.datasets as tvd  # slow to import; only needed online

    cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
    try:
        ds = cls(root=str(CACHE), train=train, download=True)
    except Exception as e:  # no network, a proxy, a half-written file...
        raise UsageError(f"{name}: could not download into {CACHE} ({type(e).__name__}: {e}); give "
                         f"root=<folder with the IDX files> to read local files instead") from e
    x, y = ds.data, ds.targets.long()
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def _check_limit(option: str, value: int | None) -> int | None:
    """A train/test limit: None or a non-negative int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{option} must be a non-negative integer or null, got {value!r}")
    return value


def load_mnist_like(name: str, root: str | Path | None, normalize: bool,
                    train_limit: int | None, test_limit: int | None) -> DataBundle:
    """Shared body of `mnist` and `fashion_mnist`: float32 [1, 28, 28] in [0, 1] (or standardised)."""
    train_limit = _check_limit("train_limit", train_limit)
    test_limit = _check_limit("test_limit", test_limit)
    folder = TV_FOLDER[name]
    if root is not None:
        r = need_dir(root, f"a folder with the {name} IDX files (train-images-idx3-ubyte.gz, ...)")
        xtr, ytr = read_split(r, "train", folder, train_limit)
        xte, yte = read_split(r, "t10k", folder, test_limit)
    else:
        xtr, ytr = download_split(name, True, train_limit)
        xte, yte = download_split(name, False, test_limit)

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
def mnist(*, root: str | None = None, normalize: bool = False,
          train_limit: int | None = None, test_limit: int | None = None) -> DataBundle:
    """MNIST digits, float32 [1,28,28]; root=folder of IDX files, else torchvision download; limits take the first N."""
    return load_mnist_like("mnist", root, normalize, train_limit, test_limit)


@DATASETS.register("fashion_mnist", aliases=("fashion-mnist", "fmnist"))
def fashion_mnist(*, root: str | None = None, normalize: bool = False,
                  train_limit: int | None = None, test_limit: int | None = None) -> DataBundle:
    """Fashion-MNIST (Debian: /usr/share/datasets/fashion-mnist); root=folder of IDX files, else download."""
    return load_mnist_like("fashion_mnist", root, normalize, train_limit, test_limit)
