"""Tests of the data zoo: digits, IDX files, label corruption, image folders, sentences."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuronimp.data import (
    DATASETS, DataBundle, TensorData, clean_str, clean_str_sst, corrupt_labels, labels_of, load_data,
    read_idx, take, write_idx,
)
from neuronimp.data.bundle import relabel
from neuronimp.data.fetch import find
from neuronimp.data.sentences import ENV_VAR
from neuronimp.data.tokens import build_vocab, encode
from neuronimp.errors import UsageError

MR_DIR = (find("mr") or ("", Path("/nonexistent/mr")))[1]  # $NEURONIMP_SENTIMENT_DIR or the fetch cache
SST_DIR = (find("sst2") or ("", Path("/nonexistent/sst2")))[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_mr = pytest.mark.skipif(not (MR_DIR / "rt-polarity.pos").is_file(), reason="no MR files (neuronimp data fetch mr)")
needs_sst2 = pytest.mark.skipif(not (SST_DIR / "stsa.binary.train").is_file(),
                                reason="no SST-2 files (neuronimp data fetch sst2)")


# ---------------------------------------------------------------- registry and options
def test_registry_names_and_unknown_option() -> None:
    assert DATASETS.names() == ["digits", "fashion_mnist", "imagenet_folder", "mnist", "mr", "sst2"]
    with pytest.raises(UsageError, match=r"unknown option 'test_frac'.*allowed: corrupt, corrupt_mode, "
                                         r"corrupt_seed, seed, test_fraction.*did you mean 'test_fraction'"):
        load_data("digits", test_frac=0.1)
    with pytest.raises(UsageError, match="unknown dataset 'digit'"):
        load_data("digit")


# ---------------------------------------------------------------- digits
def test_digits_shapes_ranges_split() -> None:
    b = load_data("digits")
    assert isinstance(b, DataBundle) and b.input_shape == (1, 8, 8) and b.num_classes == 10 and b.vocab is None
    assert b.train.x.shape == (1438, 1, 8, 8) and b.test.x.shape == (359, 1, 8, 8)
    assert b.train.x.dtype == torch.float32
    assert b.train.x.min() == 0.0 and b.train.x.max() == 1.0
    # every pixel is k/16: the loader divides sklearn's 0..16 counts by 16
    assert torch.equal(b.train.x * 16, (b.train.x * 16).round())
    # stratified: each class sends floor(0.2 * n_c + 0.5) items to test (178 zeros -> 36)
    counts = torch.bincount(torch.cat([b.train.y, b.test.y]), minlength=10)
    assert counts.sum() == 1797
    assert torch.equal(torch.bincount(b.test.y, minlength=10), (counts.double() * 0.2 + 0.5).floor().long())
    x, y = b.test[0]
    assert x.shape == (1, 8, 8) and isinstance(y, int)


def test_digits_determinism_and_seed() -> None:
    a, b, c = load_data("digits"), load_data("digits"), load_data("digits", seed=1)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.x, c.test.x)
    assert len(load_data("digits", test_fraction=0.5).test) == 901  # halves round up: 88.5 -> 89
    with pytest.raises(UsageError, match="test_fraction"):
        load_data("digits", test_fraction=1.0)


def test_digits_matches_sklearn() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    b = load_data("digits")
    all_x = torch.cat([b.train.x, b.test.x]).reshape(-1, 64).double() * 16
    assert sorted(map(tuple, all_x.tolist())) == sorted(map(tuple, d.data.tolist()))


# ---------------------------------------------------------------- IDX files
def test_idx_roundtrip_gz_and_raw(tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx3-ubyte", "a.idx3-ubyte.gz"):
        p = write_idx(tmp_path / name, a)
        got = read_idx(p, ndim=3)
        assert got.dtype == np.uint8 and np.array_equal(got, a)
    f = np.array([1.5, -2.25], dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.idx", f)), f)
    # header bytes: magic 0x00000803, then the big-endian sizes 2, 3, 4
    assert (tmp_path / "a.idx3-ubyte").read_bytes()[:16] == bytes.fromhex("00000803" "00000002" "00000003" "00000004")


def test_idx_bad_files(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "good", np.zeros((5, 2, 2), dtype=np.uint8)).read_bytes()
    (tmp_path / "trunc").write_bytes(good[:-3])
    with pytest.raises(UsageError, match=r"file .*trunc is not a valid IDX file: truncated: 33 bytes, expected 36"):
        read_idx(tmp_path / "trunc")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(UsageError, match=r"file .*magic is not a valid IDX file: bad magic number 0x01020803"):
        read_idx(tmp_path / "magic")
    with pytest.raises(UsageError, match="it has 3 dimensions, expected 1"):
        read_idx(tmp_path / "good", ndim=1)
    with gzip.open(tmp_path / "cut.gz", "wb") as fh:
        fh.write(good)
    (tmp_path / "cut2.gz").write_bytes((tmp_path / "cut.gz").read_bytes()[:20])
    with pytest.raises(UsageError, match=r"cut2.gz is not a valid IDX file: cannot read it"):
        read_idx(tmp_path / "cut2.gz")
    with pytest.raises(UsageError, match="does not exist"):
        read_idx(tmp_path / "nope")


def _fake_mnist(root: Path, gz: bool) -> None:
    rng = np.random.RandomState(0)
    ext = ".gz" if gz else ""
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(root / f"{split}-images-idx3-ubyte{ext}", rng.randint(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(root / f"{split}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_local_idx(tmp_path: Path, gz: bool) -> None:
    _fake_mnist(tmp_path, gz)
    b = load_data("mnist", root=str(tmp_path), train_limit=20)
    assert b.train.x.shape == (20, 1, 28, 28) and b.test.x.shape == (10, 1, 28, 28)
    assert 0.0 <= b.train.x.min() and b.train.x.max() <= 1.0
    raw = read_idx(next(tmp_path.glob("train-images*")))
    assert torch.allclose(b.train.x[3, 0], torch.from_numpy(raw[3]).float() / 255)
    assert b.train.y.tolist() == [i % 10 for i in range(20)]
    n = load_data("mnist", root=str(tmp_path), normalize=True)
    assert torch.allclose(n.train.x, (load_data("mnist", root=str(tmp_path)).train.x - 0.1307) / 0.3081)


def test_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no train images IDX file; expected train-images-idx3-ubyte.gz"):
        load_data("fashion_mnist", root=str(tmp_path))
    with pytest.raises(UsageError, match="does not exist"):
        load_data("mnist", root=str(tmp_path / "missing"))


def test_mnist_without_root_names_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONIMP_DATA", str(tmp_path / "home"))
    with pytest.raises(UsageError, match=r"^data set mnist not found \(looked in .*home/mnist, .*home/MNIST/raw\); "
                                         r"run `neuronimp data fetch mnist`, or put train-images-idx3-ubyte.gz, .*"
                                         r"by hand in .*home/mnist"):
        load_data("mnist")
    (tmp_path / "home" / "mnist").mkdir(parents=True)
    _fake_mnist(tmp_path / "home" / "mnist", gz=True)  # the cache folder, as `neuronimp data fetch` fills it
    assert len(load_data("mnist").train) == 30


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_files() -> None:
    b = load_data("fashion_mnist", root=str(FASHION))
    assert len(b.train) == 60000 and len(b.test) == 10000 and b.input_shape == (1, 28, 28)
    assert torch.equal(torch.bincount(b.train.y), torch.full((10,), 6000))
    assert b.train.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the published first labels
    assert b.test.y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert b.class_names[9] == "Ankle boot" and b.class_names[0] == "T-shirt/top"
    assert abs(float(b.train.x.mean()) - 0.2860) < 1e-3 and abs(float(b.train.x.std()) - 0.3530) < 1e-3


# ---------------------------------------------------------------- corruption
def test_corrupt_exact_fraction_different() -> None:
    y = torch.arange(1000) % 10
    c = corrupt_labels(y, 0.4, 10, seed=0, mode="different")
    assert int((c != y).sum()) == 400 and c.min() >= 0 and c.max() <= 9
    assert torch.equal(y, torch.arange(1000) % 10)  # input untouched


def test_corrupt_uniform_seeding() -> None:
    y = torch.arange(1000) % 10
    a, b, c = (corrupt_labels(y, 0.5, 10, seed=s) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = int((a != y).sum())
    assert changed <= 500 and abs(changed - 450) < 45  # 500 redrawn, ~1/10 keep their label by chance
    assert torch.equal(corrupt_labels(y, 0.0, 10, seed=0), y)
    assert int((corrupt_labels(y, 1.0, 10, 0, "different") != y).sum()) == 1000
    for bad in (-0.1, 1.5):
        with pytest.raises(UsageError, match="outside"):
            corrupt_labels(y, bad, 10, seed=0)


def test_corrupt_option_train_only() -> None:
    clean = load_data("digits")
    b = load_data("digits", corrupt=0.25, corrupt_seed=1, corrupt_mode="different")
    assert int((b.train.y != clean.train.y).sum()) == round(0.25 * 1438)
    assert torch.equal(b.test.y, clean.test.y) and torch.equal(b.train.x, clean.train.x)


# ---------------------------------------------------------------- helpers
def test_take_and_labels_of() -> None:
    ds = TensorData(torch.arange(10.0).unsqueeze(1), torch.arange(10) % 3)
    first = take(ds, 4)
    assert first.x.squeeze(1).tolist() == [0, 1, 2, 3] and labels_of(first).tolist() == [0, 1, 2, 0]
    a, b = take(ds, 5, seed=0), take(ds, 5, seed=0)
    assert torch.equal(a.x, b.x) and len(set(a.x.squeeze(1).tolist())) == 5
    assert take(ds, None) is ds
    assert labels_of(relabel(ds, torch.zeros(10, dtype=torch.long))).sum() == 0


# ---------------------------------------------------------------- image folders
WNIDS = ["n01440764", "n01443537", "n01484850"]


def _fake_imagenet(tmp_path: Path) -> tuple[Path, Path]:
    from PIL import Image

    root = tmp_path / "val"
    for k, w in enumerate(WNIDS):
        (root / w).mkdir(parents=True)
        for j in range(3):
            Image.new("RGB", (6, 5), (40 * k, 10 * j, 0)).save(root / w / f"ILSVRC2012_val_{k}{j}.png")
    # a 1000-line class index in which our three wnids sit at 0, 1 and 7
    order = [f"n9{i:07d}" for i in range(1000)]
    order[0], order[1], order[7] = WNIDS
    index = tmp_path / "synsets.txt"
    index.write_text("\n".join(f"{w} name of {w}" for w in order) + "\n")
    return root, index


def test_imagenet_folder_labels(tmp_path: Path) -> None:
    root, index = _fake_imagenet(tmp_path)
    b = load_data("imagenet_folder", root=str(root), class_index=str(index))
    assert b.num_classes == 1000 and b.class_names[7] == "name of n01484850"
    assert b.test.y.tolist() == [0, 0, 0, 1, 1, 1, 7, 7, 7] and b.test.wnids == WNIDS
    x, y = b.test[8]
    assert y == 7 and x.shape == (3, 5, 6) and b.input_shape == (3, 5, 6)
    assert torch.allclose(x[:, 0, 0], torch.tensor([80, 20, 0]) / 255)
    sub = load_data("imagenet_folder", root=str(root), class_index=str(index),
                    wnids=["n01484850", "n01440764"], per_class=2, transform=lambda im: im.size)
    assert sub.test.y.tolist() == [7, 7, 0, 0] and sub.test[0] == ((6, 5), 7)
    assert [f.name for f in sub.test.files[:2]] == ["ILSVRC2012_val_20.png", "ILSVRC2012_val_21.png"]


def test_imagenet_folder_json_index_and_corruption(tmp_path: Path) -> None:
    root, _ = _fake_imagenet(tmp_path)
    keras = tmp_path / "imagenet_class_index.json"
    keras.write_text(json.dumps({str(i): [w, f"c{i}"] for i, w in enumerate(WNIDS[::-1])}))
    b = load_data("imagenet_folder", root=str(root), class_index=str(keras), corrupt=1.0, corrupt_mode="different")
    assert b.test.y.tolist() == [2, 2, 2, 1, 1, 1, 0, 0, 0] and b.class_names == ["c0", "c1", "c2"]
    assert int((b.train.y != b.test.y).sum()) == 9 and b.train.wnids == WNIDS


def test_imagenet_folder_errors(tmp_path: Path) -> None:
    root, index = _fake_imagenet(tmp_path)
    with pytest.raises(UsageError, match=r"has no class folder for wnid 'n01440765'; close matches: n01440764"):
        load_data("imagenet_folder", root=str(root), class_index=str(index), wnids=["n01440765"])
    with pytest.raises(UsageError, match="holds 3 class folders, not all 1000 .* give class_index="):
        load_data("imagenet_folder", root=str(root))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="has no class subfolders"):
        load_data("imagenet_folder", root=str(tmp_path / "empty"), class_index=str(index))
    (root / "n01440764" / "ILSVRC2012_val_00.png").unlink()
    for f in (root / "n01443537").iterdir():
        f.unlink()
    with pytest.raises(UsageError, match=r"n01443537 holds no images"):
        load_data("imagenet_folder", root=str(root), class_index=str(index))
    with pytest.raises(UsageError, match="does not exist"):
        load_data("imagenet_folder", root=str(tmp_path / "nope"), class_index=str(index))


# ---------------------------------------------------------------- sentences
def test_clean_str_kim() -> None:
    assert clean_str("It's not bad, isn't it?") == "it 's not bad , is n't it ?"
    assert clean_str("It's not bad, isn't it?", literal=True) == "it 's not bad , is n't it \\?"
    assert clean_str("We've (really) seen \"THE\" film!", trec=True) == "We 've ( really ) seen THE film !"
    assert clean_str("they'd   they'll you're") == "they 'd they 'll you 're"
    assert clean_str_sst("  A -- great; film!  ") == "a great film!"


def test_vocab_and_encode() -> None:
    sents = [["b", "a", "b"], ["c", "a", "b"]]
    vocab = build_vocab(sents)
    assert vocab == ["<pad>", "<unk>", "b", "a", "c"]
    assert build_vocab(sents, min_count=2) == ["<pad>", "<unk>", "b", "a"]
    ids = encode([["a", "zzz"], ["b"] * 9], vocab, length=3 + 8)
    assert ids.tolist() == [[0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2]]


@needs_mr
def test_mr_real_files() -> None:
    b = load_data("mr", limit=300)
    assert len(b.train) == 300 and len(b.test) == 300 and b.vocab[:2] == ["<pad>", "<unk>"]
    assert b.train.x.dtype == torch.long and b.input_shape == (b.train.x.shape[1],)
    assert 120 < int(b.train.y.sum()) < 180  # the seeded permutation mixes pos and neg
    assert torch.all(b.train.x[:, :4] == 0)  # Kim's four leading pads
    full = load_data("mr", min_count=10_000)
    assert len(full.train) + len(full.dev) + len(full.test) == 10662 and len(full.test) == 1067
    assert len(full.dev) == 960  # Kim's dev: round(0.1 * 9595) of the training folds
    assert int(full.train.y.sum()) + int(full.dev.y.sum()) + int(full.test.y.sum()) == 5331
    f3 = load_data("mr", cv_fold=3, min_count=10_000)
    assert len(f3.test) == 1066 and not torch.equal(f3.test.y, full.test.y)
    with pytest.raises(UsageError, match=r"cv_fold = 10: expected an integer in 0\.\.9"):
        load_data("mr", cv_fold=10)


@needs_mr
def test_mr_tokens_decode_to_clean_sentence() -> None:
    b = load_data("mr", limit=50, dev_fraction=0)  # no dev hold-out: train is the nine folds in permuted order
    first = [b.vocab[i] for i in b.train.x[0].tolist() if i != 0]
    # split on "\n" only: str.splitlines also breaks at Latin-1 0x85, which occurs inside MR sentences
    pos = (MR_DIR / "rt-polarity.pos").read_text(encoding="latin-1").rstrip("\n").split("\n")
    neg = (MR_DIR / "rt-polarity.neg").read_text(encoding="latin-1").rstrip("\n").split("\n")
    perm = np.random.RandomState(0).permutation(len(pos) + len(neg))
    i = int(perm[1])  # permuted position 0 is fold 0 (test); position 1 is the first train item
    assert first == clean_str((pos + neg)[i]).split() and int(b.train.y[0]) == int(i < len(pos))


@needs_sst2
def test_sst2_real_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(UserWarning, match="no stsa.binary.test"):
        b = load_data("sst2", limit=200, dev_fraction=0)  # no dev hold-out: train is the file's first lines
    assert len(b.train) == 200 and len(b.test) == 200 and b.dev is None
    dev_labels = [int(line[0]) for line in (SST_DIR / "stsa.binary.dev").read_text(encoding="latin-1")
                  .split("\n")[:200]]
    assert b.test.y.tolist() == dev_labels  # no stsa.binary.test here: test is the dev file
    assert b.vocab[0] == "<pad>" and 70 < int(b.train.y.sum()) < 130
    line = (SST_DIR / "stsa.binary.train").read_text(encoding="latin-1").split("\n")[0]
    assert int(b.train.y[0]) == int(line[0])
    assert [b.vocab[i] for i in b.train.x[0].tolist() if i] == clean_str_sst(line[2:]).split()
    # env var override and a test file
    for name in ("stsa.binary.train", "stsa.binary.dev"):
        (tmp_path / name).write_text("1 good film\n0 bad film\n")
    (tmp_path / "stsa.binary.test").write_text("0 awful unseen film\n")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    t = load_data("sst2")
    assert t.test.x[0].tolist()[:7] == [0, 0, 0, 0, 1, 1, t.vocab.index("film")] and t.input_shape == (10,)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "none"))
    monkeypatch.setenv("NEURONIMP_DATA", str(tmp_path / "home"))
    with pytest.raises(UsageError, match=r"data set sst2 not found \(looked in .*none, .*home/sst2\); run `neuronimp "
                                         r"data fetch sst2`, or put stsa.binary.train, stsa.binary.dev by hand in"):
        load_data("sst2")
    with pytest.raises(UsageError, match=r"none does not exist; expected a folder with the SST-2 files"):
        load_data("sst2", root=str(tmp_path / "none"))
