"""The data zoo: `load_data(name, **options) -> DataBundle`, with loaders registered in DATASETS.

Every loader declares its options with types and ranges in its signature (see `options.py`); they are
checked up front by `check_data_options`. Every data set also accepts `corrupt` (fraction of TRAIN labels to
randomise, default 0), `corrupt_seed` (default 0) and `corrupt_mode` ("uniform" or "different"; see
`corrupt_labels`). Files of the public data sets come from `neuronimp data fetch NAME` (see `fetch.py`).
"""
from __future__ import annotations

from typing import Any

from neuronimp.data import digits as _digits  # noqa: F401  (registers the loaders)
from neuronimp.data import image_folder as _image_folder  # noqa: F401
from neuronimp.data import mnist as _mnist  # noqa: F401
from neuronimp.data import sentences as _sentences  # noqa: F401
from neuronimp.data.bundle import DATASETS, DataBundle, TensorData, labels_of, relabel, take
from neuronimp.data.corruption import corrupt_labels
from neuronimp.data.idx import read_idx, write_idx
from neuronimp.data.options import check_data_options, loader_options
from neuronimp.data.tokens import clean_str, clean_str_sst

__all__ = [
    "DATASETS", "DataBundle", "TensorData", "load_data", "dataset_options", "corrupt_labels",
    "labels_of", "take", "read_idx", "write_idx", "clean_str", "clean_str_sst", "check_data_options",
]

CORRUPTION_OPTIONS = {"corrupt": 0.0, "corrupt_seed": 0, "corrupt_mode": "uniform"}


def dataset_options(name: str) -> dict[str, Any]:
    """Option name -> default value accepted by data set `name` (its loader's plus the corruption ones)."""
    return {k: default for k, (_, default) in loader_options(DATASETS.canonical(name, where="load_data")).items()}


def load_data(name: str, **options: Any) -> DataBundle:
    """Load data set `name` with `options`; UsageError for an unknown name, option or a badly typed value."""
    canonical = DATASETS.canonical(name, where="load_data")
    options = check_data_options(canonical, options)
    corrupt = {k: options.pop(k, v) for k, v in CORRUPTION_OPTIONS.items()}
    bundle = DATASETS.get(canonical)(**options)
    # validate even at 0 so a bad fraction is reported whatever the data set
    y = corrupt_labels(labels_of(bundle.train) if corrupt["corrupt"] else [], float(corrupt["corrupt"]),
                       bundle.num_classes, int(corrupt["corrupt_seed"]), str(corrupt["corrupt_mode"]))
    if corrupt["corrupt"]:
        bundle.train = relabel(bundle.train, y)
    return bundle
