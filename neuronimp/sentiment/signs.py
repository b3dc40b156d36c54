"""The sign of each filter's conductance over a set of sentences (Dhamdhere et al. 2018, their sentiment CNN).

A case (sentence, filter) is zero when |conductance| < zero_tol, else positive or negative. A filter is
'positive' (resp. 'negative') when at least `almost_always` of its non-zero cases are positive (negative),
'mixed' otherwise, and 'rarely_active' when it has fewer than `min_nonzero` non-zero cases (too few to say).
Pure functions of tensors and strings: rows out, no I/O.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import torch

CATEGORIES = ("positive", "negative", "mixed", "rarely_active")


def signs(cond: torch.Tensor, zero_tol: float) -> torch.Tensor:
    """Conductance [N, U] -> signs in {-1, 0, +1} [N, U] (|c| < zero_tol is 0)."""
    s = torch.sign(cond).to(torch.int8)
    s[cond.abs() < zero_tol] = 0
    return s


def category(n_pos: int, n_neg: int, almost_always: float, min_nonzero: int) -> str:
    """positive | negative | mixed | rarely_active, from the counts of positive and negative cases."""
    n = n_pos + n_neg
    if n < min_nonzero:
        return "rarely_active"
    if n_pos >= almost_always * n:
        return "positive"
    if n_neg >= almost_always * n:
        return "negative"
    return "mixed"


def filter_rows(cond: torch.Tensor, sgn: torch.Tensor, ngrams: Sequence[Sequence[str]], windows: Sequence[int],
                maps: int, almost_always: float, min_nonzero: int, top: int = 3,
                head_weight: Sequence[float] | None = None) -> Iterator[dict]:
    """One row per filter: counts of each sign, shares of the non-zero cases, category, top n-grams.

    cond, sgn: [N, U]; ngrams[n][u] the n-gram filter u fires on in sentence n; top n-grams are counted over
    the non-zero cases; head_weight[u] (optional) the filter's weight in the linear head towards F.
    """
    n_pos = (sgn > 0).sum(0)                                  # U
    n_neg = (sgn < 0).sum(0)
    for u in range(cond.shape[1]):
        p, q = int(n_pos[u]), int(n_neg[u])
        nz = p + q
        fired = Counter(ngrams[n][u] for n in range(cond.shape[0]) if sgn[n, u] != 0)
        yield {
            "filter": u, "window": windows[u // maps], "map": u % maps,
            "n_sentences": int(cond.shape[0]), "n_positive": p, "n_negative": q,
            "n_zero": int(cond.shape[0]) - nz,
            "share_positive": p / nz if nz else float("nan"), "share_negative": q / nz if nz else float("nan"),
            "category": category(p, q, almost_always, min_nonzero),
            "mean_conductance": float(cond[:, u].mean()), "mean_abs_conductance": float(cond[:, u].abs().mean()),
            "head_weight": float(head_weight[u]) if head_weight is not None else float("nan"),
            "top_ngrams": " | ".join(f"{g} ({c})" for g, c in fired.most_common(top)),
        }


def share_rows(rows: Sequence[dict]) -> Iterator[dict]:
    """One row per category: number and share of filters (shares of all filters, summing to 1)."""
    counts = Counter(r["category"] for r in rows)
    total = max(len(rows), 1)
    for c in CATEGORIES:
        yield {"category": c, "filters": counts.get(c, 0), "share": counts.get(c, 0) / total}


def order(sgn: torch.Tensor, rows: Sequence[dict]) -> tuple[list[int], list[int]]:
    """Display order for the sign map: filters by category then share positive; sentences by sign sum."""
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    filters = sorted(range(len(rows)), key=lambda u: (rank[rows[u]["category"]],
                                                      -(rows[u]["share_positive"] if nz(rows[u]) else 0.0), u))
    sentences = sorted(range(sgn.shape[0]), key=lambda n: (float(sgn[n].float().sum()), n))
    return filters, sentences


def nz(row: dict) -> bool:
    """Whether a filter row has any non-zero case."""
    return row["n_positive"] + row["n_negative"] > 0
