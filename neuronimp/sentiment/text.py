"""Token ids <-> tokens for the sentence models (id 0 is '<pad>'), and the n-gram under a filter window."""
from __future__ import annotations

from collections.abc import Sequence

import torch

PAD = "<pad>"


def decode(ids: torch.Tensor | Sequence[int], vocab: Sequence[str]) -> list[str]:
    """Token ids [L] -> tokens [L], padding included (as '<pad>')."""
    return [vocab[int(i)] for i in ids]


def words(ids: torch.Tensor | Sequence[int], vocab: Sequence[str]) -> list[str]:
    """Token ids [L] -> the sentence's tokens, padding dropped."""
    return [vocab[int(i)] for i in ids if int(i) != 0]


def ngram(tokens: Sequence[str], start: int, width: int) -> str:
    """The `width` tokens from position `start` of a padded token list, space-joined ('<pad>' kept)."""
    return " ".join(tokens[start : start + width])


def span(ids: torch.Tensor | Sequence[int]) -> tuple[int, int]:
    """[first, last + 1) positions of the non-padding tokens of one padded row (0, 0 when empty)."""
    nz = [i for i, t in enumerate(ids) if int(t) != 0]
    return (nz[0], nz[-1] + 1) if nz else (0, 0)


def encode_like(tokens: Sequence[str], vocab: Sequence[str], length: int, offset: int) -> torch.Tensor:
    """Tokens -> ids [length]: `offset` pads, the ids (unknown -> '<unk>' = 1), pads; cut at `length`."""
    index = {t: i for i, t in enumerate(vocab)}
    row = torch.zeros(length, dtype=torch.long)
    ids = [index.get(t, 1) for t in tokens][: max(length - offset, 0)]
    if ids:
        row[offset : offset + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return row
