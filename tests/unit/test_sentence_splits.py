"""Dev splits of the Kim (2014) sentence data (MR, SST-2): held out from train, seeded, never the test split;
the SST-2 missing-test-file warning; select_on_dev without a dev split warns."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuronimp.config import TrainCfg
from neuronimp.data import DataBundle, TensorData, clean_str, clean_str_sst, load_data
from neuronimp.data.fetch import find
from neuronimp.data.sentences import cv_folds, hold_out, split_off
from neuronimp.data.tokens import build_vocab
from neuronimp.errors import UsageError
from neuronimp.training import fit

MR_DIR = (find("mr") or ("", Path("/nonexistent/mr")))[1]  # $NEURONIMP_SENTIMENT_DIR or the fetch cache
SST_DIR = (find("sst2") or ("", Path("/nonexistent/sst2")))[1]
needs_sst2 = pytest.mark.skipif(not (SST_DIR / "stsa.binary.train").is_file(), reason="no SST-2 (data fetch sst2)")
needs_mr = pytest.mark.skipif(not (MR_DIR / "rt-polarity.pos").is_file(), reason="no MR (neuronimp data fetch mr)")
NO_TEST = "no stsa.binary.test"


def lines(name: str) -> list[str]:
    """The lines of a shared sentiment file (split on '\\n' only: Latin-1 0x85 occurs inside sentences)."""
    folder = MR_DIR if name.startswith("rt-polarity") else SST_DIR
    return (folder / name).read_text(encoding="latin-1").rstrip("\n").split("\n")


def decoded(ds: TensorData, vocab: list[str], n: int) -> list[list[str]]:
    """The tokens of the first n rows, padding dropped (unknown words read '<unk>')."""
    return [[vocab[i] for i in row.tolist() if i != 0] for row in ds.x[:n]]


def known(tokens: list[str], b: DataBundle, pad: int = 4) -> list[str]:
    """`tokens` as bundle `b` encodes them: out-of-vocabulary words become '<unk>'; cut to the padded length."""
    v = set(b.vocab)
    return [t if t in v else "<unk>" for t in tokens][: b.input_shape[0] - pad]


def sst_dir(tmp_path: Path, test_lines: str | None) -> Path:
    """A folder with links to the shared stsa.binary.train/.dev and, when given, a small stsa.binary.test."""
    for name in ("stsa.binary.train", "stsa.binary.dev"):
        (tmp_path / name).symlink_to(SST_DIR / name)
    if test_lines is not None:
        (tmp_path / "stsa.binary.test").write_text(test_lines)
    return tmp_path


# ---------------------------------------------------------------- the hold-out itself
def test_hold_out_disjoint_union_seeded() -> None:
    keep, held = hold_out(6920, 0.1, seed=0)
    assert len(held) == 692 and len(keep) == 6228
    assert np.intersect1d(keep, held).size == 0 and np.array_equal(np.union1d(keep, held), np.arange(6920))
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(held) > 0)  # both keep the original order
    again, other = hold_out(6920, 0.1, seed=0)[1], hold_out(6920, 0.1, seed=1)[1]
    assert np.array_equal(again, held) and not np.array_equal(other, held)
    # at least one held out when asked for, never all; none at fraction 0
    assert [len(hold_out(n, f, 0)[1]) for n, f in ((3, 0.1), (1, 0.4), (10, 0.0), (9595, 0.1))] == [1, 0, 0, 960]
    # independent of MR's fold permutation with the same seed (a stream of its own)
    assert not np.array_equal(hold_out(100, 0.1, 0)[1], np.sort(cv_folds(100, 10, 0)[0][:10]))
    rest, dev = split_off(([["a"], ["b"], ["c"], ["d"]], [0, 1, 0, 1]), 0.25, seed=0)
    assert dev is not None and len(dev[0]) == 1 and sorted(rest[0] + dev[0]) == [["a"], ["b"], ["c"], ["d"]]
    assert split_off(([["a"]], [0]), 0.0, seed=0)[1] is None


# ---------------------------------------------------------------- SST-2
@needs_sst2
def test_sst2_dev_is_held_out_train_and_test_is_the_dev_file() -> None:
    with pytest.warns(UserWarning, match=NO_TEST):
        b = load_data("sst2", limit=60)
    assert b.dev is not None and len(b.train) == len(b.dev) == len(b.test) == 60
    train = lines("stsa.binary.train")
    keep, held = hold_out(len(train), 0.1, seed=0)
    want_train = [clean_str_sst(train[i][2:]).split() for i in keep[:60]]
    want_dev = [clean_str_sst(train[i][2:]).split() for i in held[:60]]
    assert decoded(b.train, b.vocab, 60) == want_train  # the first 60 of the kept training sentences, in order
    assert decoded(b.dev, b.vocab, 60) == [known(t, b) for t in want_dev]  # the held-out ones
    assert b.train.y.tolist() == [int(train[i][0]) for i in keep[:60]]
    assert b.dev.y.tolist() == [int(train[i][0]) for i in held[:60]]
    # vocabulary from the remaining training sentences only: held-out words are unknown
    assert b.vocab == build_vocab(want_train)
    assert any(1 in row.tolist() for row in b.dev.x)
    # the test split is the dev file, untouched by the hold-out
    dev_file = lines("stsa.binary.dev")[:60]
    assert b.test.y.tolist() == [int(line[0]) for line in dev_file]
    assert decoded(b.test, b.vocab, 60) == [known(clean_str_sst(line[2:]).split(), b) for line in dev_file]


@needs_sst2
def test_sst2_seed_and_fraction() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a, a2 = load_data("sst2", limit=50), load_data("sst2", limit=50, seed=0, dev_fraction=0.1)
        c = load_data("sst2", limit=50, seed=1)
        none = load_data("sst2", limit=50, dev_fraction=0)
    assert torch.equal(a.dev.x, a2.dev.x) and torch.equal(a.train.x, a2.train.x) and a.vocab == a2.vocab
    assert not torch.equal(c.dev.x, a.dev.x)
    assert torch.equal(c.test.y, a.test.y)  # the test split never depends on the dev draw
    assert none.dev is None and torch.equal(none.test.y, a.test.y)


@needs_sst2
def test_sst2_counts_full_size() -> None:
    with pytest.warns(UserWarning, match=NO_TEST + r".*dev_fraction=0.1 of stsa.binary.train \(seed 0\)"):
        b = load_data("sst2", min_count=10_000)  # tiny vocabulary: the split sizes are what is checked
    assert (len(b.train), len(b.dev), len(b.test)) == (6228, 692, 872)
    assert int(b.train.y.sum()) + int(b.dev.y.sum()) == sum(int(line[0]) for line in lines("stsa.binary.train"))


@needs_sst2
def test_sst2_warning_only_without_test_file(tmp_path: Path) -> None:
    (tmp_path / "missing").mkdir()
    missing = sst_dir(tmp_path / "missing", None)
    with pytest.warns(UserWarning, match=NO_TEST) as rec:
        b = load_data("sst2", root=str(missing), limit=20)
    assert len([w for w in rec if NO_TEST in str(w.message)]) == 1
    assert "stsa.binary.dev" in str(rec[0].message) and b.dev is not None
    with pytest.warns(UserWarning, match=NO_TEST + ".*no dev split"):
        assert load_data("sst2", root=str(missing), limit=20, dev_fraction=0).dev is None
    (tmp_path / "present").mkdir()
    present = sst_dir(tmp_path / "present", "0 an awful film\n1 a fine film\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        t = load_data("sst2", root=str(present), limit=20)
        t_all = load_data("sst2", root=str(present))
        held = load_data("sst2", root=str(present), dev_fraction=0.1, min_count=10_000)
    # test file present: test = that file, dev = the whole dev file, train = the whole training file
    assert t.test.y.tolist() == [0, 1] and len(t.train) == 20
    assert t.dev.y.tolist() == [int(line[0]) for line in lines("stsa.binary.dev")[:20]]
    assert (len(t_all.train), len(t_all.dev)) == (6920, 872)
    # explicit dev_fraction > 0 with a test file: dev held out from train, the dev file unused
    assert (len(held.train), len(held.dev), len(held.test)) == (6228, 692, 2)


@pytest.mark.parametrize("bad", [0.5, -0.1, 1, "0.1", True, float("nan")])
@pytest.mark.parametrize("name", ["sst2", "mr"])
def test_bad_dev_fraction(name: str, bad: object, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^data\.options\.dev_fraction = .*: expected a number in \[0, 0\.5\)"):
        load_data(name, root=str(tmp_path), dev_fraction=bad)  # checked before any file is read


def test_bad_seed() -> None:
    for name in ("sst2", "mr"):
        with pytest.raises(UsageError, match="seed = -1: expected an integer >= 0"):
            load_data(name, seed=-1)


# ---------------------------------------------------------------- MR
@needs_mr
def test_mr_dev_from_training_folds_test_fold_untouched() -> None:
    b = load_data("mr", limit=40)
    b0 = load_data("mr", limit=40, dev_fraction=0)
    assert b0.dev is None and len(b.dev) == len(b.train) == len(b.test) == 40
    pos, neg = lines("rt-polarity.pos"), lines("rt-polarity.neg")
    sents, labels = pos + neg, [1] * len(pos) + [0] * len(neg)
    perm, fold = cv_folds(len(sents), 10, 0)
    tr = perm[fold != 0]
    keep, held = hold_out(len(tr), 0.1, seed=0)
    want_train = [clean_str(sents[i]).split() for i in tr[keep[:40]]]
    assert decoded(b.train, b.vocab, 40) == want_train
    assert decoded(b.dev, b.vocab, 40) == [known(clean_str(sents[i]).split(), b) for i in tr[held[:40]]]
    assert b.dev.y.tolist() == [labels[i] for i in tr[held[:40]]]
    assert b.vocab == build_vocab(want_train)  # remaining train only
    # the test fold is the same sentences with or without the dev hold-out
    assert torch.equal(b.test.y, b0.test.y)
    te = [clean_str(sents[i]).split() for i in perm[fold == 0][:40]]
    assert decoded(b.test, b.vocab, 40) == [known(t, b) for t in te]
    assert decoded(b0.test, b0.vocab, 40) == [known(t, b0) for t in te]
    # seeds: same seed -> same dev, another seed -> another dev (and other folds)
    assert torch.equal(load_data("mr", limit=40, seed=0).dev.x, b.dev.x)
    assert not torch.equal(load_data("mr", limit=40, seed=3).dev.y, b.dev.y)


# ---------------------------------------------------------------- training
def test_select_on_dev_without_dev_warns_and_keeps_last_epoch() -> None:
    g = torch.Generator().manual_seed(0)
    ds = TensorData(torch.randn(40, 4, generator=g), torch.randint(0, 2, (40,), generator=g))
    cfg = TrainCfg(epochs=2, batch_size=20, lr=1e-2, select_on_dev=True)
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.warns(UserWarning, match=r"select_on_dev is set but the data has no dev split.*last epoch"):
        res = fit(model, ds, cfg, evals={"train": ds}, show=False)
    assert res.best_epoch == 2 and "dev_acc" not in res.history[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit(nn.Sequential(nn.Linear(4, 2)), ds, cfg, evals={"train": ds, "dev": ds}, show=False)
    assert res.final["dev_acc"] == max(h["dev_acc"] for h in res.history)
