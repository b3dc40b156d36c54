"""Checks the runner makes before it spends time: finite inputs, a writable output folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from neuronimp.errors import UsageError, file_in_the_way

SHOWN_IDS = 10  # input ids named in the message at most


def check_finite(ids: torch.Tensor, x: torch.Tensor) -> None:
    """Refuse a batch whose float inputs hold NaN or inf, naming the input ids (token ids pass as is)."""
    if not torch.is_floating_point(x):
        return
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)  # [N]
    if not bool(bad.any()):
        return
    found = [int(i) for i in ids[bad.cpu()].tolist()]
    shown = ", ".join(str(i) for i in found[:SHOWN_IDS]) + (f", ... ({len(found)} in this batch)"
                                                            if len(found) > SHOWN_IDS else "")
    raise UsageError(f"input ids {shown} contain NaN or inf values; clean the data set or leave those "
                     "items out (attributions of non-finite inputs are meaningless)")


def check_writable(out: str | Path) -> Path:
    """Create the output folder if needed and prove a file can be written in it; UsageError otherwise."""
    out = Path(out)
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise UsageError(f"runner.out = {str(out)!r}: {blocker} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"runner.out = {str(out)!r} cannot be written: {exc.strerror or exc}") from None
    return out
