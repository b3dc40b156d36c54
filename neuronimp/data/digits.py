"""scikit-learn's bundled 8x8 digits (1797 images, no download): the offline default of the demo."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Annotated

from annotated_types import Gt, Lt

import numpy as np
import torch

from neuronimp.data.bundle import DATASETS, DataBundle, TensorData
from neuronimp.data.options import Seed


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images [1797, 64] in 0..16 and labels [1797], read from sklearn's CSV without importing sklearn."""
    # `import sklearn.datasets` alone costs about a second; the CSV it ships reads in ~20 ms.
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        csv = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            with gzip.open(csv, "rt") as f:
                table = np.loadtxt(f, delimiter=",")  # [1797, 65]: 64 pixels then the label
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # fallback: the slow, official way

    d = load_digits()
    return d.data, d.target


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: per class, floor(test_fraction * n_c + 0.5) shuffled items go to test.

    Returns sorted train and test index arrays (so items keep the file order within each split).
    """
    rng = np.random.RandomState(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test.append(rng.permutation(idx)[: int(np.floor(test_fraction * len(idx) + 0.5))])  # half up
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


@DATASETS.register("digits", aliases=("sklearn_digits",))
def digits(*, test_fraction: Annotated[float, Gt(0), Lt(1)] = 0.2, seed: Seed = 0) -> DataBundle:
    """scikit-learn 8x8 digits: float32 [1,8,8] in [0,1] (pixel/16), seeded stratified split."""
    data, target = _digits_arrays()
    x = torch.from_numpy((data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)  # N x 1 x 8 x 8
    y = torch.from_numpy(target)
    tr, te = stratified_split(target, float(test_fraction), int(seed))
    return DataBundle(
        train=TensorData(x[tr], y[tr]),
        test=TensorData(x[te], y[te]),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        vocab=None,
        input_shape=(1, 8, 8),
    )
