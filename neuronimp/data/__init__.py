"""The data zoo: `load_data(name, **options) -> DataBundle`, with loaders registered in DATASETS.

Every data set also accepts `corrupt` (fraction of TRAIN labels to randomise, default 0), `corrupt_seed`
(default 0) and `corrupt_mode` ("uniform" or "different"; see `corrupt_labels`).
"""
from __future__ import annotations

import inspect
from typing import Any

from neuronimp.data import digits as _digits  # noqa: F401  (registers the loaders)
from neuronimp.data import image_folder as _image_folder  # noqa: F401
from neuronimp.data import mnist as _mnist  # noqa: F401
from neuronimp.data import sentences as _sentences  # noqa: F401
from neuronimp.data.bundle import DATASETS, DataBundle, TensorData, labels_of, relabel, take
from neuronimp.data.corruption import corrupt_labels
from neuronimp.data.idx import read_idx, write_idx
from neuronimp.data.tokens import clean_str, clean_str_sst
from neuronimp.errors import unknown

__all__ = [
    "DATASETS", "DataBundle", "TensorData", "load_data", "dataset_options", "corrupt_labels",
    "labels_of", "take", "read_idx", "write_idx", "clean_str", "clean_str_sst",
]

CORRUPTION_OPTIONS = {"corrupt": 0.0, "corrupt_seed": 0, "corrupt_mode": "uniform"}


def dataset_options(name: str) -> dict[str, Any]:
    """Option name -> default value accepted by data set `name` (its loader's plus the corruption ones)."""
    fn = DATASETS.get(name, where="load_data")
    params = inspect.signature(fn).parameters
    return {**{k: p.default for k, p in params.items()}, **CORRUPTION_OPTIONS}


def load_data(name: str, **options: Any) -> DataBundle:
    """Load data set `name` with `options`; UsageError for an unknown name or option."""
    canonical = DATASETS.canonical(name, where="load_data")
    allowed = dataset_options(canonical)
    for key in options:
        if key not in allowed:
            raise unknown("option", key, allowed, where=f"dataset {canonical!r}")
    corrupt = {k: options.pop(k, v) for k, v in CORRUPTION_OPTIONS.items()}
    bundle = DATASETS.get(canonical)(**options)
    # validate even at 0 so a bad fraction is reported whatever the data set
    y = corrupt_labels(labels_of(bundle.train) if corrupt["corrupt"] else [], float(corrupt["corrupt"]),
                       bundle.num_classes, int(corrupt["corrupt_seed"]), str(corrupt["corrupt_mode"]))
    if corrupt["corrupt"]:
        bundle.train = relabel(bundle.train, y)
    return bundle
