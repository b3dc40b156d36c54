"""Kim (2014)'s sentence cleaning, a training-split vocabulary, and padded token-id tensors."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"

# Kim's process_data.py, in order. His replacements " \( ", " \) ", " \? " keep the backslash in the output
# (Python's re leaves unknown escapes such as "\(" as they are), giving the tokens "\(", "\)" and "\?".
# That is an accident of the original code; by default we emit "(", ")" and "?" (literal=True restores it).
_KIM_RULES: list[tuple[str, str, str]] = [
    (r"[^A-Za-z0-9(),!?\'\`]", " ", " "),
    (r"\'s", " 's", " 's"),
    (r"\'ve", " 've", " 've"),
    (r"n\'t", " n't", " n't"),
    (r"\'re", " 're", " 're"),
    (r"\'d", " 'd", " 'd"),
    (r"\'ll", " 'll", " 'll"),
    (r",", " , ", " , "),
    (r"!", " ! ", " ! "),
    (r"\(", " ( ", " \\( "),
    (r"\)", " ) ", " \\) "),
    (r"\?", " ? ", " \\? "),
    (r"\s{2,}", " ", " "),
]
_COMPILED = [(re.compile(p), clean, literal) for p, clean, literal in _KIM_RULES]
_NON_WORD = re.compile(r"[^A-Za-z0-9(),!?\'\`]")
_SPACES = re.compile(r"\s{2,}")


def clean_str(string: str, trec: bool = False, literal: bool = False) -> str:
    """Kim's clean_str: split off punctuation and clitics ('s 've n't 're 'd 'll), lowercase unless TREC.

    >>> clean_str("It's not bad, isn't it?")
    "it 's not bad , is n't it ?"
    """
    for pattern, clean, lit in _COMPILED:
        string = pattern.sub(lit if literal else clean, string)
    return string.strip() if trec else string.strip().lower()


def clean_str_sst(string: str) -> str:
    """Kim's clean_str_sst: drop characters outside [A-Za-z0-9(),!?'`], squeeze spaces, lowercase."""
    string = _NON_WORD.sub(" ", string)
    string = _SPACES.sub(" ", string)
    return string.strip().lower()


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int = 1) -> list[str]:
    """Index -> token: "<pad>", "<unk>", then tokens seen >= min_count times, by descending count then A-Z."""
    counts = Counter(tok for sent in sentences for tok in sent)
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return [PAD, UNK] + [t for t in kept if t not in (PAD, UNK)]


def encode(sentences: Sequence[Sequence[str]], vocab: Sequence[str], length: int, pad: int = 4) -> torch.Tensor:
    """Token ids LongTensor [N, length]: `pad` zeros, the ids (unknown -> 1), zeros to `length`; truncated.

    Kim's get_idx_from_sent pads with filter_h - 1 = 4 zeros on both sides of the longest sentence.
    """
    index = {t: i for i, t in enumerate(vocab)}
    unk = index[UNK]
    out = torch.zeros(len(sentences), length, dtype=torch.long)  # N x L, 0 = <pad>
    for row, sent in enumerate(sentences):
        ids = [index.get(t, unk) for t in sent][: max(length - pad, 0)]
        if ids:
            out[row, pad : pad + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
