"""A numpy reader (and writer, for tests) of IDX files, the format of MNIST and Fashion-MNIST."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from neuronimp.errors import UsageError

# third byte of the magic number -> big-endian element type (http://yann.lecun.com/exdb/mnist/)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The (decompressed when the name ends in .gz) bytes of `path`."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise UsageError(f"file {path} is not a valid IDX file: cannot read it ({e})") from e


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a numpy array; UsageError on a bad magic or truncated file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist; expected an IDX file")
    raw = _read_bytes(path)

    def bad(why: str) -> UsageError:
        return UsageError(f"file {path} is not a valid IDX file: {why}")

    if len(raw) < 4:
        raise bad(f"only {len(raw)} bytes, shorter than the 4-byte magic number")
    zero, code, nd = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_TYPES or nd == 0:
        raise bad(f"bad magic number 0x{raw[:4].hex()} (expected 0x0000, a type code in "
                  f"{sorted(hex(c) for c in IDX_TYPES)} and a dimension count >= 1)")
    if ndim is not None and nd != ndim:
        raise bad(f"it has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise bad(f"truncated header ({len(raw)} bytes, expected {header})")
    shape = struct.unpack(f">{nd}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "too long"
        raise bad(f"{kind}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write `array` (uint8, int8, int16, int32, float32 or float64) as an IDX file, gzipped for .gz."""
    path = Path(path)
    codes = {dt.newbyteorder("=").str[1:]: c for c, dt in IDX_TYPES.items()}  # "u1" -> 0x08, ...
    a = np.asarray(array)
    code = codes[a.dtype.str[1:]]
    data = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    data += a.astype(IDX_TYPES[code]).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path
