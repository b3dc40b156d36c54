"""Sentence classification data of Kim (2014): MR (rt-polarity) and SST-2 (stsa.binary.*), as token ids.

Files: `root=` when given; else the first folder holding them of $NEURONIMP_SENTIMENT_DIR (one folder with the
MR and SST-2 files, kept for compatibility) and the cache folder that `neuronimp data fetch mr|sst2` fills
(see fetch.py); else one line naming the fetch command and the folder to put the files in by hand.

Dev splits (Kim 2014, Sec. 3: "a random 10% of the training set" for early stopping) are a seeded random
`dev_fraction` of the training split, held out BEFORE the vocabulary is built: the vocabulary and the padded
length come from the remaining training sentences only (Kim built his vocabulary over all data; we are
stricter). The draw is deterministic for a given (seed, dev_fraction), so a training config and the analysis
configs that read its checkpoint build the same vocabulary as long as their data options agree.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from annotated_types import Ge, Le, Lt

from neuronimp.data.bundle import DATASETS, DataBundle, TensorData, need_dir
from neuronimp.data.fetch import ENV_SENTIMENT, cache_dir, locate
from neuronimp.data.options import Count, Seed
from neuronimp.data.tokens import build_vocab, clean_str, clean_str_sst, encode
from neuronimp.errors import UsageError

ENV_VAR = ENV_SENTIMENT
DevFraction = Annotated[float, Ge(0), Lt(0.5)]
MinCount = Annotated[int, Ge(1)]
CLASS_NAMES = ["negative", "positive"]
MR_DEV_FRACTION = 0.1    # Kim (2014): a random 10% of the training folds as dev
SST2_DEV_FRACTION = 0.1  # of stsa.binary.train, used only when there is no stsa.binary.test
DEV_STREAM = 1           # the dev draw is seeded by (DEV_STREAM, seed): independent of MR's fold permutation

Sentences = tuple[list[list[str]], list[int]]  # (token lists, labels)


def default_root() -> Path:
    """$NEURONIMP_SENTIMENT_DIR when set, else the cache folder of sst2 (compatibility; loaders use `data_root`)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else cache_dir("sst2")


def data_root(name: str, root: str | Path | None, what: str) -> Path:
    """`root` when given (it must be a folder), else where data set `name` is found (`fetch.locate`)."""
    return need_dir(root, what) if root is not None else locate(name)


def read_lines(path: Path, limit: int | None = None) -> list[str]:
    """The first `limit` lines of a Latin-1 text file (Latin-1 never fails: one byte, one character)."""
    if not path.is_file():
        raise UsageError(f"{path} does not exist; expected a text file with one sentence per line")
    try:
        with open(path, encoding="latin-1", newline=None) as f:
            lines = []
            for line in f:
                if limit is not None and len(lines) >= limit:
                    break
                lines.append(line.rstrip("\r\n"))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    return lines


def hold_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (kept, held out) of range(n): a seeded random `fraction` held out; both in increasing order.

    round(fraction * n) items, at least one when fraction > 0 and n >= 2, never all of them. Drawn with
    numpy's frozen legacy RandomState stream, so a numpy upgrade never changes the split (nor the vocabulary).
    """
    k = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, int(round(fraction * n))))
    held = np.zeros(n, dtype=bool)
    held[np.random.RandomState([DEV_STREAM, seed]).permutation(n)[:k]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def split_off(data: Sentences, fraction: float, seed: int) -> tuple[Sentences, Sentences | None]:
    """(rest, dev): `hold_out` applied to a split, each part in its original order; dev None at fraction 0."""
    if fraction <= 0:
        return data, None
    keep, held = hold_out(len(data[1]), fraction, seed)

    def part(idx: np.ndarray) -> Sentences:
        return [data[0][i] for i in idx], [data[1][i] for i in idx]

    return part(keep), part(held)


def cut(data: Sentences | None, limit: int | None) -> Sentences | None:
    """The first `limit` items of a split (all when limit is None)."""
    if data is None or limit is None:
        return data
    return data[0][:limit], data[1][:limit]


def make_bundle(train: Sentences, test: Sentences, dev: Sentences | None, min_count: int, pad: int) -> DataBundle:
    """Vocabulary from the train split only; every split padded to max train length + 2 * pad."""
    vocab = build_vocab(train[0], min_count)
    length = max((len(s) for s in train[0]), default=0) + 2 * pad

    def tensors(split: Sentences) -> TensorData:
        return TensorData(encode(split[0], vocab, length, pad), torch.tensor(split[1], dtype=torch.long))

    return DataBundle(
        train=tensors(train),
        test=tensors(test),
        num_classes=2,
        class_names=list(CLASS_NAMES),
        vocab=vocab,
        input_shape=(length,),
        dev=tensors(dev) if dev is not None else None,
    )


def cv_folds(n: int, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of range(n) and the fold of each of its positions (position i -> fold i % folds)."""
    perm = np.random.RandomState(seed).permutation(n)
    return perm, np.arange(n) % folds


@DATASETS.register("mr", aliases=("rt-polarity", "movie_reviews"))
def mr(*, root: str | Path | None = None, seed: Seed = 0, cv_fold: Annotated[int, Ge(0), Le(9)] = 0,
       dev_fraction: DevFraction = MR_DEV_FRACTION, limit: Count | None = None, min_count: MinCount = 1,
       pad: Count = 4) -> DataBundle:
    """MR sentence polarity (Pang & Lee 2005): 10 seeded folds, test = fold cv_fold, dev = 10% of the rest.

    Sentences: rt-polarity.pos (label 1) then rt-polarity.neg (label 0), cleaned by Kim's clean_str
    (lowercased). A seeded permutation assigns permuted position i to fold i % 10; fold `cv_fold` is the test
    split (never touched by dev). Kim's protocol: a seeded random `dev_fraction` (default 0.1; 0 = no dev
    split) of the other nine folds is held out as the dev split, and the vocabulary is built from the remaining
    training sentences only. Each split lists its sentences in permuted order, so `limit` (first N of each
    split, applied after the splits are drawn) keeps the two classes mixed.
    """
    r = data_root("mr", root, "a folder with the MR files rt-polarity.pos and rt-polarity.neg")
    pos = read_lines(r / "rt-polarity.pos")
    neg = read_lines(r / "rt-polarity.neg")
    sents = [clean_str(s).split() for s in pos + neg]
    labels = [1] * len(pos) + [0] * len(neg)
    perm, fold = cv_folds(len(sents), 10, seed)

    def split(idx: np.ndarray) -> Sentences:
        return [sents[i] for i in idx], [labels[i] for i in idx]

    train, dev = split_off(split(perm[fold != cv_fold]), float(dev_fraction), seed)
    return make_bundle(cut(train, limit), cut(split(perm[fold == cv_fold]), limit), cut(dev, limit),
                       min_count, pad)


def read_labelled(path: Path, limit: int | None, clean: Callable[[str], str]) -> Sentences:
    """Tokens and labels of a `label sentence` file (label 0 or 1), first `limit` lines."""
    sents: list[list[str]] = []
    labels: list[int] = []
    for no, line in enumerate(read_lines(path, limit), start=1):
        label, _, text = line.strip().partition(" ")
        if label not in ("0", "1"):
            raise UsageError(f"{path} line {no}: expected 'label sentence' with label 0 or 1, got {line[:40]!r}")
        labels.append(int(label))
        sents.append(clean(text).split())
    return sents, labels


@DATASETS.register("sst2", aliases=("sst-2", "sst_2"))
def sst2(*, root: str | Path | None = None, seed: Seed = 0, dev_fraction: DevFraction | None = None,
         limit: Count | None = None, min_count: MinCount = 1, pad: Count = 4) -> DataBundle:
    """SST-2 sentences (stsa.binary.*) with clean_str_sst; epoch selection never sees the test split.

    - stsa.binary.test present: test = that file; dev = stsa.binary.dev (dev_fraction null or 0). With an
      explicit dev_fraction > 0, dev is instead that fraction of stsa.binary.train, seeded by `seed`, and the
      dev file is not used at all.
    - stsa.binary.test missing (the shared folder): a warning, then test = stsa.binary.dev (the official dev
      set) and dev = a seeded random dev_fraction of stsa.binary.train (null means 0.1; 0 means no dev split).
    The vocabulary comes from the remaining training sentences only; `limit` cuts each split to its first N
    after the splits are drawn. Trains on sentences only (Kim also trained on the treebank phrases, which these
    files do not hold).
    """
    r = data_root("sst2", root, "a folder with the SST-2 files stsa.binary.train and stsa.binary.dev")
    train = read_labelled(r / "stsa.binary.train", None, clean_str_sst)
    dev_path, test_path = r / "stsa.binary.dev", r / "stsa.binary.test"
    if test_path.is_file():
        test = read_labelled(test_path, limit, clean_str_sst)
        fraction = float(dev_fraction or 0.0)
        train, dev = split_off(train, fraction, seed)
        if dev is None:
            dev = read_labelled(dev_path, None, clean_str_sst)
    else:
        test = read_labelled(dev_path, limit, clean_str_sst)
        fraction = SST2_DEV_FRACTION if dev_fraction is None else float(dev_fraction)
        train, dev = split_off(train, fraction, seed)
        held = (f"the dev split is a random dev_fraction={fraction:g} of stsa.binary.train (seed {seed})"
                if dev is not None else "there is no dev split (dev_fraction=0)")
        warnings.warn(f"sst2: no stsa.binary.test in {r}, so the test split is the official dev file "
                      f"stsa.binary.dev and {held}")
    return make_bundle(cut(train, limit), test, cut(dev, limit), min_count, pad)
