"""The public data sets: where their files come from (pinned SHA-256), where they are found, and fetching them.

`neuronimp data fetch NAME` downloads NAME's files with the standard library (urllib), into a temporary folder
inside the destination, checks every file against the SHA-256 pinned below, and only then renames the files
into place: a failed or interrupted fetch leaves the destination as it was. Destination: `--dest`, else the
cache folder `$NEURONIMP_DATA/<name>` (default `~/.cache/neuronimp/<name>`).

Folder layout after a fetch (the files the loaders read, nothing else):
    mr/             rt-polarity.pos, rt-polarity.neg            (from Pang & Lee's rt-polaritydata.tar.gz)
    sst2/           stsa.binary.train, stsa.binary.dev, stsa.binary.test   (Kim 2014's SST-2 sentence splits)
    mnist/          {train,t10k}-images-idx3-ubyte.gz, {train,t10k}-labels-idx1-ubyte.gz
    fashion_mnist/  the same four names

Where the pins come from (no download was possible where this was written, so each was cross-checked offline):
- MR: the SHA-256 of the archive from Cornell is not pinned (unknown here); the two files extracted from it are
  checked instead. Their pins are those of rt-polarity.pos/.neg as shipped by Kim's CNN_sentence repository
  (identical git blobs in harvardnlp/sent-conv-torch data/raw/), which are the files of the shared offline folder.
- SST-2: GLUE's SST-2.zip is NOT used: its train.tsv holds 67k phrases and sentences mixed, and its test.tsv has
  no labels, so Kim's sentence-level protocol (6920 / 872 / 1821 sentences) cannot be rebuilt from it. The
  stsa.binary.* files of harvardnlp/sent-conv-torch (the binary SST-2 splits of Kim 2014, and the source of the
  shared offline folder: identical SHA-256 for train and dev) are fetched instead, from a pinned commit.
- MNIST, Fashion-MNIST: the SHA-256 of the .gz files as served by the mirrors torchvision uses (pins listed
  by Hugging Face datasets; cross-checked: their MD5 equals torchvision's and their SHA-256 equals these for
  every canonical file we could read). `gunzip_sha256` pins the decompressed bytes: Debian's
  dataset-fashion-mnist re-wrote the gzip headers (no file name inside), so its .gz differ from the canonical
  ones while holding the same data; a copy passes when either checksum matches.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from neuronimp.errors import UsageError, unknown

ENV_DATA = "NEURONIMP_DATA"
ENV_SENTIMENT = "NEURONIMP_SENTIMENT_DIR"  # kept for compatibility: one folder holding the MR and SST-2 files
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
CHUNK = 1 << 16
TIMEOUT_S = 60
USER_AGENT = "neuronimp-data-fetch (python urllib)"


@dataclass(frozen=True)
class Pinned:
    """One file a loader reads, with its pinned checksum(s)."""

    name: str
    sha256: str
    gunzip_sha256: str | None = None  # .gz only: SHA-256 of the decompressed bytes (matches re-gzipped copies)
    needed: bool = True  # False: fetched and used when present, but a folder without it still counts as found


@dataclass(frozen=True)
class Source:
    """A public data set: the files to download (each with mirrors, tried in order) and the files kept."""

    name: str
    what: str
    downloads: dict[str, tuple[str, ...]]  # download file name -> URLs; archives are unpacked
    files: tuple[Pinned, ...]
    sentences: bool = False  # MR / SST-2: also looked for in $NEURONIMP_SENTIMENT_DIR
    extra: tuple[tuple[str, Path], ...] = field(default=())  # (label, folder) looked in after the cache


def _mirrors(bases: tuple[str, ...], names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {n: tuple(b + n for b in bases) for n in names}


IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SST_COMMIT = "d61ded09c99c0199d8c5bca946cd65864de2b296"  # harvardnlp/sent-conv-torch master when pinned

SOURCES: dict[str, Source] = {s.name: s for s in (
    Source(
        "mr", "MR sentence polarity v1.0 (Pang & Lee 2005), 5331 + 5331 sentences",
        # torchvision-style mirror list: Cornell first, then the copy Hugging Face datasets reads
        {"rt-polaritydata.tar.gz": (
            "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
            "https://storage.googleapis.com/seldon-datasets/sentence_polarity_v1/rt-polaritydata.tar.gz")},
        (Pinned("rt-polarity.pos", "2da124ec187a9d5a29c9f04e91c540e02baed5af8868f550a26bd6fd4dbf8bf0"),
         Pinned("rt-polarity.neg", "4ace77d558c3714723843f1d65b60c01e3417b208180f0728808d76ad0eeeaca")),
        sentences=True),
    Source(
        "sst2", "SST-2 sentences (Socher et al. 2013) in Kim's binary splits: 6920 train, 872 dev, 1821 test",
        _mirrors((f"https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/{SST_COMMIT}/data/",
                  "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/"),
                 ("stsa.binary.train", "stsa.binary.dev", "stsa.binary.test")),
        (Pinned("stsa.binary.train", "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338"),
         Pinned("stsa.binary.dev", "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1"),
         Pinned("stsa.binary.test", "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
                needed=False)),
        sentences=True),
    Source(
        "mnist", "MNIST handwritten digits (LeCun et al. 1998), 60000 train + 10000 test",
        # torchvision's mirrors (torchvision/datasets/mnist.py)
        _mirrors(("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"), IDX),
        (Pinned(IDX[0], "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
         Pinned(IDX[1], "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
         Pinned(IDX[2], "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
         Pinned(IDX[3], "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
        extra=(("torchvision's layout in the data home", Path("MNIST/raw")),)),
    Source(
        "fashion_mnist", "Fashion-MNIST (Xiao et al. 2017), 60000 train + 10000 test",
        # torchvision's mirror (torchvision/datasets/mnist.py), then the repository's own copy
        _mirrors(("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                  "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"), IDX),
        (Pinned(IDX[0], "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
         Pinned(IDX[1], "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
         Pinned(IDX[2], "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
         Pinned(IDX[3], "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
        extra=(("torchvision's layout in the data home", Path("FashionMNIST/raw")),
               ("Debian's dataset-fashion-mnist", DEBIAN_FASHION))),
)}


# ---------------------------------------------------------------- where data sets are found
def data_home() -> Path:
    """$NEURONIMP_DATA, else ~/.cache/neuronimp: the folder that holds one cache folder per data set."""
    return Path(os.environ.get(ENV_DATA) or "~/.cache/neuronimp").expanduser()


def cache_dir(name: str) -> Path:
    """The cache folder of data set `name`: <data home>/<name>."""
    return data_home() / source(name).name


def source(name: str) -> Source:
    """The Source of data set `name` (aliases such as fashion-mnist accepted), or UsageError listing them."""
    from neuronimp.data.bundle import DATASETS

    canonical = DATASETS.canonical(name) if name in DATASETS else name
    if canonical not in SOURCES:
        raise unknown("data set to fetch", name, SOURCES)
    return SOURCES[canonical]


def candidates(name: str) -> list[tuple[str, Path]]:
    """(label, folder) pairs looked in, in order, when a loader gets no root: env var, cache, others."""
    src = source(name)
    out: list[tuple[str, Path]] = []
    if src.sentences and os.environ.get(ENV_SENTIMENT):
        out.append((f"${ENV_SENTIMENT}", Path(os.environ[ENV_SENTIMENT]).expanduser()))
    out.append(("cache", cache_dir(name)))
    out += [(label, data_home() / p) for label, p in src.extra]  # absolute p stays as is
    return out


def holds(src: Source, folder: Path) -> bool:
    """True when `folder` holds every needed file of `src` (existence only; see `check_folder` for checksums)."""
    return all((folder / f.name).is_file() for f in src.files if f.needed)


def find(name: str) -> tuple[str, Path] | None:
    """(label, folder) of the first candidate folder that holds data set `name`, else None."""
    src = source(name)
    return next(((label, p) for label, p in candidates(name) if holds(src, p)), None)


def locate(name: str) -> Path:
    """The folder that holds data set `name`, or a one-line UsageError naming the fetch command and the folder."""
    found = find(name)
    if found is not None:
        return found[1]
    src = source(name)
    looked = ", ".join(str(p) for _, p in candidates(name))
    needed = ", ".join(f.name for f in src.files if f.needed)
    raise UsageError(f"data set {src.name} not found (looked in {looked}); run `neuronimp data fetch {src.name}`, "
                     f"or put {needed} by hand in {cache_dir(name)} (or give data.options.root)")


# ---------------------------------------------------------------- checksums
def sha256_of(path: Path, opener: Callable[..., object] = open) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks; opener=gzip.open hashes the decompressed bytes."""
    h = hashlib.sha256()
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def matches(path: Path, pin: Pinned) -> bool:
    """True when `path` has the pinned SHA-256, or (a .gz) its decompressed bytes have the pinned one."""
    if sha256_of(path) == pin.sha256:
        return True
    if pin.gunzip_sha256 is None:
        return False
    try:
        return sha256_of(path, gzip.open) == pin.gunzip_sha256
    except (OSError, EOFError):  # not a gzip file, or a truncated one
        return False


def check_folder(name: str, folder: Path) -> list[str]:
    """Problems of `folder` as a copy of data set `name`: missing needed files, files with other checksums."""
    problems = []
    for pin in source(name).files:
        path = folder / pin.name
        if not path.is_file():
            if pin.needed:
                problems.append(f"{pin.name} missing")
        elif not matches(path, pin):
            problems.append(f"{pin.name} has another SHA-256 than the pinned one")
    return problems


# ---------------------------------------------------------------- fetching
class _Failed(Exception):
    """One URL failed (network, HTTP status, short read, checksum); the message says how."""


def _download(url: str, dest: Path, show: bool) -> None:
    """Stream `url` into `dest` with a progress bar; _Failed on any network or HTTP problem or a short read."""
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp, open(dest, "wb") as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not show, leave=False) as bar:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise _Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Failed(f"{e.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise _Failed(f"{type(e).__name__}: {' '.join(str(e).split()) or 'no detail'}") from None
    if total is not None and got != total:
        raise _Failed(f"short read: {got} of {total} bytes")


def _unpack(archive: Path, out: Path, wanted: set[str]) -> dict[str, Path]:
    """The members of a tar archive whose base name is in `wanted`, copied (never extracted by path) into `out`."""
    found: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = Path(member.name).name
                if member.isfile() and base in wanted and base not in found:
                    src = tar.extractfile(member)
                    assert src is not None  # a regular file always has a stream
                    with src, open(out / base, "wb") as fh:
                        shutil.copyfileobj(src, fh)
                    found[base] = out / base
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _Failed(f"not a readable tar archive ({type(e).__name__}: {e})") from None
    return found


def _fetch_one(download: str, url: str, src: Source, tmp: Path, show: bool) -> dict[str, Path]:
    """Download one URL into `tmp` and return the checked files it gives (name -> staged path), or _Failed."""
    pins = {p.name: p for p in src.files}
    target = tmp / download
    _download(url, target, show)
    if download in pins:
        staged = {download: target}
    else:
        unpacked = tmp / (download + ".d")
        unpacked.mkdir()
        wanted = {n for n in pins if n not in src.downloads}  # the pinned files no other download gives
        staged = _unpack(target, unpacked, wanted)
        target.unlink()
        absent = sorted(wanted - set(staged))
        if absent:
            raise _Failed(f"the archive has no {', '.join(absent)}")
    for name, path in staged.items():
        if not matches(path, pins[name]):
            raise _Failed(f"checksum mismatch: {name} has SHA-256 {sha256_of(path)[:16]}..., "
                          f"pinned {pins[name].sha256[:16]}... (a changed or corrupted download)")
    return staged


def fetch(name: str, dest: str | Path | None = None, force: bool = False, show: bool = True,
          say: Callable[[str], object] = print) -> Path:
    """Download data set `name` into `dest` (default: its cache folder), checksummed; the folder.

    Skips the download when the folder already holds checked copies (unless `force`). Files are downloaded
    into a temporary folder inside the destination, checked, then renamed into place; any failure leaves
    nothing behind and ends with a one-line UsageError naming the URL and where to put the files by hand.
    """
    src = source(name)
    folder = Path(dest).expanduser() if dest is not None else cache_dir(src.name)
    if not force and folder.is_dir() and not check_folder(src.name, folder) and \
            all((folder / p.name).is_file() for p in src.files):
        say(f"{src.name}: already in {folder} (checksums match; --force downloads again)")
        return folder
    by_hand = f"put {', '.join(p.name for p in src.files)} by hand in {folder}"
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=folder))
    except OSError as e:
        raise UsageError(f"{src.name}: cannot write to {folder} ({e.strerror or e}); give --dest DIR") from None
    try:
        staged: dict[str, Path] = {}
        for download, urls in src.downloads.items():
            failures: list[str] = []
            for url in urls:
                try:
                    staged.update(_fetch_one(download, url, src, tmp, show))
                    break
                except _Failed as e:
                    failures.append(f"{url}: {e}")
                    say(f"{src.name}: {url} failed: {e}" + ("; trying the next mirror" if url != urls[-1] else ""))
            else:
                more = f" (and {len(failures) - 1} more mirror(s) failed)" if len(failures) > 1 else ""
                raise UsageError(f"{src.name}: cannot fetch {failures[0]}{more}; nothing was written; check the "
                                 f"network (and any proxy) and try again, or {by_hand}")
        for name_, path in staged.items():
            os.replace(path, folder / name_)
    except OSError as e:
        raise UsageError(f"{src.name}: cannot write {folder} ({e.strerror or e}); give --dest DIR") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    say(f"{src.name}: {len(staged)} file(s) checked and written to {folder}")
    return folder
