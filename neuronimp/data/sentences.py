"""Sentence classification data of Kim (2014): MR (rt-polarity) and SST-2 (stsa.binary.*), as token ids.

Default folder: $NEURONIMP_SENTIMENT_DIR when set, else `shared/data/sentiment` in the folder that holds the
repository checkout (…/<parent>/shared/data/sentiment beside …/<parent>/<repo>); `root=` overrides both.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from neuronimp.data.bundle import DATASETS, DataBundle, TensorData, need_dir
from neuronimp.data.tokens import build_vocab, clean_str, clean_str_sst, encode
from neuronimp.errors import UsageError

ENV_VAR = "NEURONIMP_SENTIMENT_DIR"
CLASS_NAMES = ["negative", "positive"]


def default_root() -> Path:
    """$NEURONIMP_SENTIMENT_DIR, else <parent of the repository>/shared/data/sentiment."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sentiment"


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


def _check_int(option: str, value: int | None, low: int, allow_none: bool = True) -> None:
    """UsageError unless `value` is an int >= low (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{option} must be an integer >= {low}{' or null' if allow_none else ''}, got {value!r}")


def make_bundle(train: tuple[list[list[str]], list[int]], test: tuple[list[list[str]], list[int]],
                dev: tuple[list[list[str]], list[int]] | None, min_count: int, pad: int) -> DataBundle:
    """Vocabulary from the train split only; every split padded to max train length + 2 * pad."""
    vocab = build_vocab(train[0], min_count)
    length = max((len(s) for s in train[0]), default=0) + 2 * pad

    def tensors(split: tuple[list[list[str]], list[int]]) -> TensorData:
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
def mr(*, root: str | None = None, seed: int = 0, cv_fold: int = 0, limit: int | None = None,
       min_count: int = 1, pad: int = 4) -> DataBundle:
    """MR sentence polarity (Pang & Lee 2005): 10 seeded folds, test = fold cv_fold (default 0: a 90/10 split).

    Sentences: rt-polarity.pos (label 1) then rt-polarity.neg (label 0), cleaned by Kim's clean_str
    (lowercased). A seeded permutation assigns permuted position i to fold i % 10; each split lists its
    sentences in permuted order, so `limit` (first N of each split) keeps the two classes mixed.
    """
    _check_int("cv_fold", cv_fold, 0, allow_none=False)
    if cv_fold > 9:
        raise UsageError(f"mr: cv_fold must be in 0..9 (10-fold cross-validation), got {cv_fold}")
    _check_int("limit", limit, 0)
    _check_int("min_count", min_count, 1, allow_none=False)
    _check_int("pad", pad, 0, allow_none=False)
    r = need_dir(root if root is not None else default_root(),
                 f"the MR files rt-polarity.pos and rt-polarity.neg (set root= or ${ENV_VAR})")
    pos = read_lines(r / "rt-polarity.pos")
    neg = read_lines(r / "rt-polarity.neg")
    sents = [clean_str(s).split() for s in pos + neg]
    labels = [1] * len(pos) + [0] * len(neg)
    perm, fold = cv_folds(len(sents), 10, int(seed))
    tr = perm[fold != cv_fold][:limit]
    te = perm[fold == cv_fold][:limit]
    return make_bundle(([sents[i] for i in tr], [labels[i] for i in tr]),
                       ([sents[i] for i in te], [labels[i] for i in te]), None, min_count, pad)


def read_labelled(path: Path, limit: int | None, clean: Callable[[str], str]) -> tuple[list[list[str]], list[int]]:
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
def sst2(*, root: str | None = None, limit: int | None = None, min_count: int = 1, pad: int = 4) -> DataBundle:
    """SST-2 sentences (stsa.binary.*): train, test (the dev file when no test file), dev; clean_str_sst.

    Trains on sentences only (Kim also trained on the treebank phrases, which these files do not hold).
    """
    _check_int("limit", limit, 0)
    _check_int("min_count", min_count, 1, allow_none=False)
    _check_int("pad", pad, 0, allow_none=False)
    r = need_dir(root if root is not None else default_root(),
                 f"the SST-2 files stsa.binary.train and stsa.binary.dev (set root= or ${ENV_VAR})")
    train = read_labelled(r / "stsa.binary.train", limit, clean_str_sst)
    dev = read_labelled(r / "stsa.binary.dev", limit, clean_str_sst)
    test_path = r / "stsa.binary.test"
    test = read_labelled(test_path, limit, clean_str_sst) if test_path.is_file() else dev
    return make_bundle(train, test, dev, min_count, pad)
