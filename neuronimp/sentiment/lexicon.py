"""Sentiment words for the negation minimal pairs: a small built-in list, or words drawn from training data.

builtin: common English evaluative adjectives of movie reviews (chosen by hand for this project, words that
read naturally after 'not' / 'never'); 1 = positive, 0 = negative.
train:   the `top` words most associated with each label in the training split, by the smoothed log-odds
ratio log((c1 + a) / (n1 + aV)) - log((c0 + a) / (n0 + aV)) with a = 0.5 (c_k: count in sentences of label
k, n_k: all tokens of label k, V: vocabulary size); only alphabetic words seen >= min_count times, never the
negators themselves.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

POSITIVE = (
    "amazing", "beautiful", "best", "brilliant", "charming", "clever", "compelling", "delightful", "effective",
    "engaging", "enjoyable", "entertaining", "excellent", "fascinating", "fine", "fresh", "fun", "funny",
    "good", "great", "impressive", "intelligent", "interesting", "lovely", "memorable", "moving", "original",
    "perfect", "powerful", "remarkable", "satisfying", "smart", "solid", "strong", "superb", "sweet",
    "terrific", "touching", "warm", "witty", "wonderful", "worth",
)
NEGATIVE = (
    "annoying", "awful", "bad", "bland", "boring", "cheap", "clumsy", "disappointing", "dull", "empty",
    "flat", "forgettable", "horrible", "lame", "lifeless", "mediocre", "overlong", "painful", "pointless",
    "poor", "predictable", "pretentious", "ridiculous", "shallow", "silly", "sloppy", "slow", "stupid",
    "tedious", "terrible", "tiresome", "ugly", "unfunny", "uninspired", "weak", "worst",
)
SMOOTHING = 0.5
NEGATION = frozenset({"not", "n't", "never", "no", "nothing", "nor", "neither", "without", "hardly"})


def builtin() -> dict[str, int]:
    """word -> polarity (1 positive, 0 negative) of the built-in list."""
    return {**{w: 1 for w in POSITIVE}, **{w: 0 for w in NEGATIVE}}


def log_odds(sentences: Sequence[Sequence[str]], labels: Sequence[int]) -> dict[str, tuple[float, int]]:
    """word -> (smoothed log-odds of label 1 vs 0, total count) over the sentences (see module doc)."""
    counts = [Counter(), Counter()]
    for toks, y in zip(sentences, labels):
        counts[int(y)].update(toks)
    vocab = set(counts[0]) | set(counts[1])
    n0, n1, v = sum(counts[0].values()), sum(counts[1].values()), max(len(vocab), 1)
    out = {}
    for w in vocab:
        lo = (math.log((counts[1][w] + SMOOTHING) / (n1 + SMOOTHING * v))
              - math.log((counts[0][w] + SMOOTHING) / (n0 + SMOOTHING * v)))
        out[w] = (lo, counts[0][w] + counts[1][w])
    return out


def from_training(sentences: Sequence[Sequence[str]], labels: Sequence[int], top: int, min_count: int,
                  exclude: Sequence[str] = ()) -> dict[str, int]:
    """word -> polarity for the `top` words most associated with each label (see module doc)."""
    skip = NEGATION | set(exclude)
    scored = [(w, lo) for w, (lo, c) in log_odds(sentences, labels).items()
              if c >= min_count and w.isalpha() and w not in skip]
    pos = sorted(scored, key=lambda t: (-t[1], t[0]))[:top]
    neg = sorted(scored, key=lambda t: (t[1], t[0]))[:top]
    return {**{w: 1 for w, lo in pos if lo > 0}, **{w: 0 for w, lo in neg if lo < 0}}
