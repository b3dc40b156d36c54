"""Pretrained word vectors for the words of a vocabulary: word2vec text, word2vec binary or GloVe text.

Formats (detected from the file): word2vec text and binary start with a header line "<count> <dim>";
binary records are "<word> " followed by dim little-endian float32 (an optional newline before the next
word); GloVe text has no header, one "<word> <v1> ... <vdim>" per line. Only wanted words are parsed, so
the 3.6 GB GoogleNews binary streams through in chunks.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from neuronimp.errors import UsageError

_CHUNK = 1 << 20


def _header(line: bytes) -> tuple[int, int] | None:
    """(count, dim) when `line` is a word2vec header, else None."""
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _is_text_record(line: bytes, dim: int) -> bool:
    """True when `line` reads as '<word> <dim floats>' (so the file is text, not binary)."""
    try:
        parts = line.decode("utf-8").rstrip().split(" ")
        [float(p) for p in parts[-dim:]]
    except (UnicodeDecodeError, ValueError):
        return False
    return len(parts) >= dim + 1


def _text_records(lines: Iterable[bytes], dim: int | None, wanted: set[str], where: str
                  ) -> Iterator[tuple[str, np.ndarray]]:
    """Parse '<word> <floats>' lines; yield (word, vector) for wanted words only."""
    for number, raw in enumerate(lines, 1):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n").rstrip(" ")
        if not line:
            continue
        parts = line.split(" ")
        dim = dim or len(parts) - 1
        if dim < 1 or len(parts) < dim + 1:
            raise UsageError(f"vectors file {where!r} line {number}: expected a word and {dim} numbers")
        word = " ".join(parts[:-dim])
        if word in wanted:
            try:
                yield word, np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError as err:
                raise UsageError(f"vectors file {where!r} line {number}: {err}") from err


def _binary_records(f: BinaryIO, count: int, dim: int, wanted: set[str], where: str
                    ) -> Iterator[tuple[str, np.ndarray]]:
    """Parse `count` binary records '<word> <dim float32>'; yield (word, vector) for wanted words."""
    size, buf, pos = 4 * dim, f.read(_CHUNK), 0
    for _ in range(count):
        space = buf.find(b" ", pos)
        while space < 0 or len(buf) < space + 1 + size:
            chunk = f.read(_CHUNK)
            if not chunk:
                raise UsageError(f"vectors file {where!r} is truncated (word2vec binary, {count} words expected)")
            buf, pos = buf[pos:] + chunk, 0
            space = buf.find(b" ", pos)
        word = buf[pos:space].lstrip(b"\n").decode("utf-8", errors="replace")
        if word in wanted:
            yield word, np.frombuffer(buf[space + 1:space + 1 + size], dtype="<f4").copy()
        pos = space + 1 + size


def read_vectors(path: str | Path, words: Iterable[str]) -> tuple[dict[str, torch.Tensor], int]:
    """Vectors of the given words found in a word2vec (text/binary) or GloVe file, and the file's dimension."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"vectors file {str(path)!r} not found (word2vec text/binary or GloVe text expected)")
    wanted, where = set(words), str(path)
    found: dict[str, torch.Tensor] = {}
    with path.open("rb") as f:
        first = f.readline()
        head = _header(first)
        if head is None:  # GloVe: no header, the first line is a record
            dim = len(first.decode("utf-8", errors="replace").rstrip().split(" ")) - 1
            records = _text_records(_chain(first, f), dim, wanted, where)
        else:
            count, dim = head
            start = f.tell()
            text = _is_text_record(f.readline(), dim)
            f.seek(start)
            records = _text_records(f, dim, wanted, where) if text else _binary_records(f, count, dim, wanted, where)
        if dim < 1:
            raise UsageError(f"vectors file {where!r} is empty or not word2vec/GloVe")
        for word, vec in records:
            if vec.shape != (dim,):
                raise UsageError(f"vectors file {where!r}: word {word!r} has {vec.shape[0]} numbers, not {dim}")
            found.setdefault(word, torch.from_numpy(vec))
    return found, dim


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    """`first` followed by the lines of `rest`."""
    yield first
    yield from rest
