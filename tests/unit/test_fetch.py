"""`neuronimp data fetch|list`: pinned checksums, downloads from local URLs (file:// and a 127.0.0.1 server),
atomic writes, one-line failures, and the missing-data message of the loaders."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.data import fetch as F
from neuronimp.data import load_data
from neuronimp.errors import UsageError

SENTIMENT = Path(os.environ.get(F.ENV_SENTIMENT, "/nonexistent"))  # tests/conftest.py sets it when ../shared exists


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the pinned table itself
def test_table_covers_the_loaders_layout() -> None:
    assert sorted(F.SOURCES) == ["fashion_mnist", "mnist", "mr", "sst2"]
    for src in F.SOURCES.values():
        assert all(len(p.sha256) == 64 and int(p.sha256, 16) >= 0 for p in src.files)
        assert all(u.startswith(("https://", "http://")) for urls in src.downloads.values() for u in urls)
    assert [p.name for p in F.SOURCES["mr"].files] == ["rt-polarity.pos", "rt-polarity.neg"]
    assert [p.name for p in F.SOURCES["sst2"].files if p.needed] == ["stsa.binary.train", "stsa.binary.dev"]
    assert [p.name for p in F.SOURCES["mnist"].files] == list(F.IDX)
    # torchvision's mirrors (torchvision/datasets/mnist.py) come first
    assert F.SOURCES["mnist"].downloads[F.IDX[0]][0] == "https://ossci-datasets.s3.amazonaws.com/mnist/" + F.IDX[0]
    assert F.SOURCES["fashion_mnist"].downloads[F.IDX[0]][0].startswith("http://fashion-mnist.s3-website.eu-central-1")


@pytest.mark.parametrize("name", ["mr", "sst2"])
def test_pins_match_the_shared_sentence_files(name: str) -> None:
    if not SENTIMENT.is_dir():
        pytest.skip("no shared sentiment folder ($NEURONIMP_SENTIMENT_DIR)")
    present = [p for p in F.SOURCES[name].files if (SENTIMENT / p.name).is_file()]
    assert {p.name for p in F.SOURCES[name].files if p.needed} <= {p.name for p in present}
    for pin in present:
        assert F.sha256_of(SENTIMENT / pin.name) == pin.sha256, pin.name


@pytest.mark.skipif(not F.DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_pins_match_debian_fashion_mnist() -> None:
    for pin in F.SOURCES["fashion_mnist"].files:
        path = F.DEBIAN_FASHION / pin.name
        # Debian re-wrote the gzip headers (no file name inside): the .gz differ, the data is the canonical one
        assert F.sha256_of(path, gzip.open) == pin.gunzip_sha256 and F.matches(path, pin)
    assert F.check_folder("fashion_mnist", F.DEBIAN_FASHION) == []


# ---------------------------------------------------------------- fetching from local URLs
def _toy(tmp_path: Path) -> tuple[F.Source, dict[str, bytes]]:
    """A toy data set: a tar.gz holding a.txt (in a subfolder, beside a README) and a plain b.txt, as file:// URLs."""
    files = {"a.txt": b"alpha\n" * 1000, "b.txt": b"beta\n"}
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "toy.tar.gz", "w:gz") as tar:
        for name, data in (("toy/a.txt", files["a.txt"]), ("toy/README", b"not kept")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (served / "b.txt").write_bytes(files["b.txt"])
    src = F.Source("toy", "a toy", {"toy.tar.gz": ((served / "toy.tar.gz").as_uri(),),
                                    "b.txt": ((served / "b.txt").as_uri(),)},
                   (F.Pinned("a.txt", sha(files["a.txt"])), F.Pinned("b.txt", sha(files["b.txt"]))))
    return src, files


def test_fetch_extracts_checks_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, files = _toy(tmp_path)
    monkeypatch.setitem(F.SOURCES, "toy", src)
    monkeypatch.setenv(F.ENV_DATA, str(tmp_path / "home"))
    said: list[str] = []
    folder = F.fetch("toy", show=False, say=said.append)
    assert folder == tmp_path / "home" / "toy"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"]  # no README, no temp folder left
    assert all((folder / n).read_bytes() == d for n, d in files.items())
    assert said == [f"toy: 2 file(s) checked and written to {folder}"]
    # a second fetch sees checked copies and downloads nothing; --force downloads again
    F.fetch("toy", show=False, say=said.append)
    assert said[-1].startswith(f"toy: already in {folder} (checksums match")
    assert F.locate("toy") == folder and F.find("toy") == ("cache", folder)


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, files = _toy(tmp_path)
    bad = dataclasses.replace(src, files=(src.files[0], F.Pinned("b.txt", "0" * 64)))
    monkeypatch.setitem(F.SOURCES, "toy", bad)
    dest = tmp_path / "cache" / "toy"
    with pytest.raises(UsageError) as err:
        F.fetch("toy", dest, show=False, say=lambda _: None)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"toy: cannot fetch {src.downloads['b.txt'][0]}: checksum mismatch")
    assert msg.endswith(f"put a.txt, b.txt by hand in {dest}") and "nothing was written" in msg
    assert not dest.exists()  # the folder the fetch created is gone again, and a.txt (good) was not kept
    # an existing copy is left byte for byte when a forced re-fetch fails
    dest.mkdir(parents=True)
    (dest / "b.txt").write_bytes(b"old copy\n")
    with pytest.raises(UsageError, match="checksum mismatch"):
        F.fetch("toy", dest, force=True, show=False, say=lambda _: None)
    assert [p.name for p in dest.iterdir()] == ["b.txt"] and (dest / "b.txt").read_bytes() == b"old copy\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of an HTTP server on 127.0.0.1 serving `folder`."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_download_network_failure_and_mirrors(server: tuple[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    data = os.urandom(300_000)
    (root / "c.bin").write_bytes(data)
    dead = f"http://127.0.0.1:{_closed_port()}/c.bin"
    pins = (F.Pinned("c.bin", sha(data)),)
    # the first mirror refuses the connection, a 404 follows, the third serves the file
    monkeypatch.setitem(F.SOURCES, "web", F.Source("web", "web", {"c.bin": (dead, base + "nope.bin", base + "c.bin")},
                                                   pins))
    said: list[str] = []
    folder = F.fetch("web", tmp_path / "d", show=True, say=said.append)
    assert (folder / "c.bin").read_bytes() == data
    assert said[0].startswith(f"web: {dead} failed: ") and said[0].endswith("trying the next mirror")
    assert said[1] == f"web: {base}nope.bin failed: HTTP 404 File not found; trying the next mirror"
    # no mirror works: one line naming the first URL, what failed, and where to put the file by hand
    monkeypatch.setitem(F.SOURCES, "web", F.Source("web", "web", {"c.bin": (dead, base + "nope.bin")}, pins))
    with pytest.raises(UsageError) as err:
        F.fetch("web", tmp_path / "e", show=False, say=lambda _: None)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"web: cannot fetch {dead}: ")
    assert "(and 1 more mirror(s) failed)" in msg and msg.endswith(f"put c.bin by hand in {tmp_path / 'e'}")
    assert not (tmp_path / "e").exists()


def test_missing_data_message_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(F.ENV_DATA, str(tmp_path / "home"))
    monkeypatch.delenv(F.ENV_SENTIMENT, raising=False)
    with pytest.raises(UsageError) as err:
        load_data("mr")
    assert str(err.value) == (
        f"data set mr not found (looked in {tmp_path / 'home' / 'mr'}); run `neuronimp data fetch mr`, or put "
        f"rt-polarity.pos, rt-polarity.neg by hand in {tmp_path / 'home' / 'mr'} (or give data.options.root)")
    res = CliRunner().invoke(app, ["data", "list"])
    assert res.exit_code == 0
    rows = {line.split()[0]: line for line in res.output.splitlines()}
    assert sorted(rows) == ["fashion_mnist", "mnist", "mr", "sst2"]
    assert rows["mr"].split(None, 1)[1] == f"missing: neuronimp data fetch mr  (or put its files in {tmp_path / 'home' / 'mr'})"
    res = CliRunner().invoke(app, ["data", "fetch", "cifar10"])
    assert res.exit_code == 2 and "unknown data set to fetch 'cifar10'; allowed: fashion_mnist, mnist, mr, sst2" in res.output


def test_fetch_mr_archive_gives_the_loader_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real MR entry, served from a local tar.gz in Cornell's layout: the loader reads the fetched cache."""
    if not (SENTIMENT / "rt-polarity.pos").is_file():
        pytest.skip("no shared MR files")
    archive = tmp_path / "rt-polaritydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("rt-polarity.pos", "rt-polarity.neg"):
            tar.add(SENTIMENT / name, arcname=f"rt-polaritydata/{name}")
    mr = dataclasses.replace(F.SOURCES["mr"], downloads={"rt-polaritydata.tar.gz": (archive.as_uri(),)})
    monkeypatch.setitem(F.SOURCES, "mr", mr)
    monkeypatch.setenv(F.ENV_DATA, str(tmp_path / "home"))
    monkeypatch.delenv(F.ENV_SENTIMENT, raising=False)
    res = CliRunner().invoke(app, ["data", "fetch", "mr"])
    assert res.exit_code == 0, res.output
    assert F.check_folder("mr", tmp_path / "home" / "mr") == []
    b = load_data("mr", limit=20, min_count=10_000)
    assert len(b.train) == 20 and b.vocab == ["<pad>", "<unk>"]
    res = CliRunner().invoke(app, ["data", "list", "--check"])
    assert f"mr             {tmp_path / 'home' / 'mr'}  (cache)  checksums ok" in res.output.splitlines()
