"""Negation minimal pairs and the filters whose conductance changes sign between the two sentences.

A pair: a sentence and a copy with one negator inserted right before its first sentiment word that is not
already negated ('a good film' -> 'a not good film' / 'a never good film'). "n't" only attaches to an
auxiliary, so it is inserted only where the word before the sentiment word is one ('is good' ->
'is n't good', the treebank's tokenisation of "isn't"). Pure functions: rows out, no I/O.

Between the original (a) and the negated (b) sentence, with signs taken at |cond| >= zero_tol, a filter
  flips  when the signs are opposite and non-zero,
  off    when it is non-zero in a and zero in b,
  on     when it is zero in a and non-zero in b.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from neuronimp.sentiment.lexicon import NEGATION

AUXILIARIES = frozenset({"is", "was", "are", "were", "does", "do", "did", "has", "have", "had", "could",
                         "would", "should", "ca", "wo", "ai", "need", "must", "might"})
KINDS = ("flip", "off", "on")


@dataclass(frozen=True)
class Pair:
    """One minimal pair: the original tokens and the tokens with `negator` inserted at `position`."""

    input_id: int
    negator: str
    word: str
    polarity: int            # of the word: 1 positive, 0 negative
    position: int            # index of the word in `original` (the negator goes before it)
    original: tuple[str, ...]
    negated: tuple[str, ...]


def insert(tokens: Sequence[str], position: int, negator: str) -> tuple[str, ...] | None:
    """tokens with `negator` before tokens[position]; None where it would not read as a negation."""
    prev = tokens[position - 1] if position > 0 else ""
    if prev in NEGATION:
        return None
    if negator == "n't" and prev not in AUXILIARIES:
        return None
    return (*tokens[:position], negator, *tokens[position:])


def minimal_pairs(sentences: Sequence[Sequence[str]], input_ids: Sequence[int], lexicon: dict[str, int],
                  negators: Sequence[str], max_pairs: int) -> list[Pair]:
    """Pairs from the first sentiment word of each sentence, one per negator that fits, in sentence order."""
    pairs: list[Pair] = []
    for toks, iid in zip(sentences, input_ids):
        pos = next((i for i, t in enumerate(toks) if t in lexicon
                    and (i == 0 or toks[i - 1] not in NEGATION)), None)
        if pos is None:
            continue
        for neg in negators:
            new = insert(toks, pos, neg)
            if new is not None:
                pairs.append(Pair(int(iid), neg, toks[pos], lexicon[toks[pos]], pos, tuple(toks), new))
                if len(pairs) >= max_pairs:
                    return pairs
    return pairs


def change(a: int, b: int) -> str | None:
    """flip | off | on | None for the signs (in {-1, 0, 1}) of one filter in the original and negated sentence."""
    if a * b < 0:
        return "flip"
    if a != 0 and b == 0:
        return "off"
    if a == 0 and b != 0:
        return "on"
    return None


def change_rows(pair_id: int, sign_a: Sequence[int], sign_b: Sequence[int], cond_a: Sequence[float],
                cond_b: Sequence[float], ngrams_a: Sequence[str], ngrams_b: Sequence[str], windows: Sequence[int],
                maps: int) -> Iterator[dict]:
    """One row per filter of one pair whose sign changes (flip, off or on), with the n-grams it fires on."""
    for u in range(len(sign_a)):
        kind = change(int(sign_a[u]), int(sign_b[u]))
        if kind is not None:
            yield {"pair_id": pair_id, "filter": u, "window": windows[u // maps], "map": u % maps, "change": kind,
                   "cond_original": float(cond_a[u]), "cond_negated": float(cond_b[u]),
                   "ngram_original": ngrams_a[u], "ngram_negated": ngrams_b[u]}


def filter_summary(changes: Sequence[dict], categories: Sequence[str], top: int = 3) -> Iterator[dict]:
    """Per filter that changed in any pair: counts of flip/off/on and the n-grams it fires on when negated."""
    by: dict[int, list[dict]] = defaultdict(list)
    for r in changes:
        by[int(r["filter"])].append(r)
    rows = []
    for u, rs in by.items():
        kinds = Counter(r["change"] for r in rs)
        flips = [r for r in rs if r["change"] == "flip"]
        grams = Counter(r["ngram_negated"] for r in (flips or rs))
        before = Counter(r["ngram_original"] for r in (flips or rs))
        rows.append({"filter": u, "window": rs[0]["window"], "map": rs[0]["map"], "category": categories[u],
                     **{k: kinds.get(k, 0) for k in KINDS},
                     "mean_change": sum(r["cond_negated"] - r["cond_original"] for r in rs) / len(rs),
                     "top_ngrams_negated": " | ".join(f"{g} ({c})" for g, c in grams.most_common(top)),
                     "top_ngrams_original": " | ".join(f"{g} ({c})" for g, c in before.most_common(top))})
    yield from sorted(rows, key=lambda r: (-r["flip"], -(r["on"] + r["off"]), r["filter"]))
