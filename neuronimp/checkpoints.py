"""Checkpoint files that are never half-written, never hold NaN, and are checked before they are trusted.

`save_checkpoint(path, state)` refuses a state with a non-finite tensor (the old file stays), writes the
file atomically (temporary file in the same folder, fsync, rename) and records its size and SHA-256 in a
sidecar `<file>.json`. `verify_checkpoint(path)` checks a checkpoint against its sidecar, when it has one:
a truncated or altered file is refused with one line before torch.load ever sees it. Checkpoints without a
sidecar (written by other tools, or before sidecars existed) are accepted as they are.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from neuronimp.errors import UsageError, write_error

SIDECAR_SUFFIX = ".json"  # model.pt -> model.pt.json
CHUNK = 1 << 20
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of checkpoint `path`: the same name with '.json' appended (model.pt -> model.pt.json)."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def _tensors(state: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted key, tensor) of every tensor in a (nested) mapping or list."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, Mapping):
        for k, v in state.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i))


def non_finite(state: Any) -> list[str]:
    """Keys of the floating-point tensors in `state` that hold a NaN or an infinity."""
    return [k for k, t in _tensors(state)
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync, rename onto `path`; the temp file never stays."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a checkpoint reads like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write `state` (tensors only) to `path` atomically with a size + SHA-256 sidecar; refuse NaN/inf weights.

    On refusal or failure nothing is written and an existing checkpoint at `path` is left byte for byte.
    """
    path = Path(path).expanduser()
    bad = non_finite(state)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(f"checkpoint {path}: tensor {bad[0]}{more} holds NaN or inf; not written (an existing file "
                         "there is kept); lower the learning rate or check the data for NaN")
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    record = {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
        _atomic_write(sidecar_path(path), (json.dumps(record, indent=2) + "\n").encode())
    except OSError as e:
        raise write_error("cannot write checkpoint", path, e) from None
    return path


def verify_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """Check checkpoint `path` against its sidecar: the sidecar's record, None without one; UsageError on mismatch."""
    path = Path(path).expanduser()
    side = sidecar_path(path)
    if not side.is_file() or not path.is_file():
        return None
    what_to_do = (f"re-run the training that wrote it, or restore the file (delete {side.name} only if you "
                  "trust the file as it is)")
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
        size, digest = int(record["bytes"]), str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"checkpoint sidecar {side} is unreadable ({type(e).__name__}); {what_to_do}") from None
    actual = path.stat().st_size
    if actual != size:
        kind = "truncated" if actual < size else "longer than written"
        raise UsageError(f"checkpoint {path} is {kind}: {actual} bytes, its sidecar records {size}; {what_to_do}")
    if _sha256(path) != digest:
        raise UsageError(f"checkpoint {path} was altered: its SHA-256 differs from the one its sidecar records; "
                         f"{what_to_do}")
    return record
