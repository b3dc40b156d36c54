"""The filter analysis as an HTML page and a terminal summary, with sentences highlighted by the per-token
conductance through one filter (Dhamdhere et al. 2018, eq. 2; see filters.token_conductance)."""
from __future__ import annotations

from collections import Counter
from html import escape as esc
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from neuronimp.studies.inputs import baseline_for
from neuronimp.sentiment import heatmap
from neuronimp.sentiment.filters import FilterBank, token_conductance
from neuronimp.sentiment.negation import Pair
from neuronimp.sentiment.text import decode, span

FILTER_COLUMNS = ["filter", "window", "map", "category", "n_positive", "n_negative", "n_zero", "share_positive",
                  "mean_conductance", "head_weight", "top_ngrams"]
NEG_COLUMNS = ["filter", "window", "map", "category", "flip", "off", "on", "mean_change", "top_ngrams_original",
               "top_ngrams_negated"]


def highlight(ctx: Any, bank: FilterBank, unit: int, ids: torch.Tensor) -> list[tuple[list[str], list[float]]]:
    """(tokens, per-token conductance through `unit`) of each row of ids [B, L], padding trimmed."""
    x = ctx.to_input(ids)
    with ctx.autocast():
        tok = token_conductance(ctx.bundle.model, bank, unit, x, baseline_for(ctx, x), ctx.cfg.sentiment.target,
                                ctx.params).double().cpu()
    out = []
    for b in range(ids.shape[0]):
        lo, hi = span(ids[b])
        out.append((decode(ids[b], ctx.data.vocab)[lo:hi], tok[b, lo:hi].tolist()))
    return out


def _scale(rows: Sequence[tuple[list[str], list[float]]]) -> float:
    return max((abs(v) for _, s in rows for v in s), default=0.0) or 1.0


def _records(df: pd.DataFrame | Sequence[dict], columns: Sequence[str]) -> list[dict]:
    rows = df.to_dict("records") if isinstance(df, pd.DataFrame) else list(df)
    return [{c: r.get(c, "") for c in columns} for r in rows]


def filters_page(ctx: Any, bank: FilterBank, frows: list[dict], shares: list[dict], df: pd.DataFrame,
                 prow: list[dict], nsum: list[dict], changes: list[dict], pairs: list[Pair], neg_ids: torch.Tensor,
                 all_ids: torch.Tensor) -> str:
    """The HTML report of `neuronimp filters`."""
    cfg, sc = ctx.cfg, ctx.cfg.sentiment
    first = df.drop_duplicates("input_id")
    acc = float((first.predicted == first.label).mean()) if len(first) else float("nan")
    body = [f"<p class='note'>model {cfg.model.name} ({cfg.model.weights}), data {cfg.data.name} split "
            f"{cfg.data.split}: {len(first)} sentences, accuracy {acc:.4f}. F = {sc.target} "
            f"({'logit[positive] - logit[negative]' if sc.target == 'margin' else 'logit of the predicted class'}); "
            f"baseline {cfg.attribution.baseline} (all-padding sentence); |conductance| &lt; {sc.zero_tol} counts as "
            f"zero; 'almost always' = at least {sc.almost_always:.0%} of the non-zero cases; fewer than "
            f"{sc.min_nonzero} non-zero cases: rarely active.</p>",
            "<h2>Filter signs</h2>", heatmap.html_table(shares)]
    by_mean = sorted(frows, key=lambda r: r["mean_conductance"])
    n = max(sc.report_filters, 1)
    body += ["<h3>Most positive filters (mean conductance)</h3>",
             heatmap.html_table(_records(by_mean[::-1][:n], FILTER_COLUMNS)),
             "<h3>Most negative filters</h3>", heatmap.html_table(_records(by_mean[:n], FILTER_COLUMNS))]
    by_input = {int(k): g for k, g in df.sort_values(["input_id", "filter"]).groupby("input_id")}
    for title, row in (("strongest positive", by_mean[-1]), ("strongest negative", by_mean[0])):
        u = int(row["filter"])
        top = sorted(by_input, key=lambda k: -abs(float(by_input[k].conductance.iloc[u])))[: sc.examples]
        if not top:
            continue
        body.append(f"<h3>Filter {u} ({title}; window {bank.window(u)}): sentences where it conducts most</h3>")
        shown = highlight(ctx, bank, u, all_ids[top])
        for k, (toks, sco) in zip(top, shown):
            g = by_input[k].iloc[u]
            body.append(f"<p class='note'>sentence {k}, label {int(g.label)}, fires on '{esc(g.ngram)}', "
                        f"conductance {g.conductance:+.4f}</p>" + heatmap.html_sentence(toks, sco))
    body += ["<h2>Negation minimal pairs</h2>", _negation_note(prow, nsum)]
    if nsum:
        body.append(heatmap.html_table(_records(nsum[:n], NEG_COLUMNS)))
    for u, pids in _examples(nsum, changes, sc.examples, n):
        body.append(f"<h3>Filter {u} (window {bank.window(u)}, map {bank.map(u)})</h3>")
        for k in pids:
            a, b = highlight(ctx, bank, u, torch.stack([all_ids[pairs[k].input_id], neg_ids[k]]))
            scale = _scale([a, b])
            c = next(r for r in changes if r["pair_id"] == k and r["filter"] == u)
            body.append(f"<p class='note'>pair {k} ({c['change']}): conductance {c['cond_original']:+.4f} on "
                        f"'{esc(c['ngram_original'])}' -> {c['cond_negated']:+.4f} on '{esc(c['ngram_negated'])}'</p>"
                        + heatmap.html_sentence(*a, scale=scale) + heatmap.html_sentence(*b, scale=scale))
    return heatmap.html_page(f"{cfg.name}: filter analysis", body)


def _examples(nsum: Sequence[dict], changes: Sequence[dict], per_filter: int,
              filters: int) -> list[tuple[int, list[int]]]:
    """(filter, pair ids) for the report: the top filters of the summary, flips first, then any change."""
    out = []
    for r in nsum[:filters]:
        u = int(r["filter"])
        mine = [c for c in changes if c["filter"] == u]
        mine.sort(key=lambda c: (c["change"] != "flip", -abs(c["cond_negated"] - c["cond_original"])))
        out.append((u, [int(c["pair_id"]) for c in mine[:per_filter]]))
    return out


def _negation_note(prow: Sequence[dict], nsum: Sequence[dict]) -> str:
    """One paragraph: pairs per negator, prediction changes, and how many filters flip / switch."""
    if not prow:
        return "<p>No minimal pairs: no sentence holds a sentiment word that a negator fits before.</p>"
    per = Counter(r["negator"] for r in prow)
    changed = sum(r["predicted_original"] != r["predicted_negated"] for r in prow)
    flips = sum(r["n_flip"] for r in prow)
    return (f"<p>{len(prow)} pairs ({', '.join(f'{k}: {v}' for k, v in per.items())}); the prediction changes in "
            f"{changed} ({changed / len(prow):.1%}). Filter sign changes over all pairs: {flips} flips, "
            f"{sum(r['n_off'] for r in prow)} turned off, {sum(r['n_on'] for r in prow)} turned on; "
            f"{sum(1 for r in nsum if r['flip'])} filters flip at least once.</p>")


def summary(ctx: Any, bank: FilterBank, shares: list[dict], prow: list[dict], nsum: list[dict],
            changes: list[dict], pairs: list[Pair], neg_ids: torch.Tensor, all_ids: torch.Tensor,
            html_name: str) -> list[tuple[str, pd.DataFrame | None]]:
    """What the terminal shows: shares, the filters that change most under negation, one highlighted pair."""
    sc = ctx.cfg.sentiment
    out: list[tuple[str, pd.DataFrame | None]] = [
        (f"filter signs ({sc.target}, |c| < {sc.zero_tol} is zero, almost always = {sc.almost_always:.0%}):",
         pd.DataFrame(shares))]
    if prow:
        out.append((_negation_note(prow, nsum).removeprefix("<p>").removesuffix("</p>"), None))
    if nsum:
        out.append(("filters that change sign under negation:",
                    pd.DataFrame(_records(nsum[: max(sc.report_filters, 1)], NEG_COLUMNS))))
        for u, pids in _examples(nsum, changes, 1, 1):
            for k in pids:
                a, b = highlight(ctx, bank, u, torch.stack([all_ids[pairs[k].input_id], neg_ids[k]]))
                scale = _scale([a, b])
                out.append((f"\nfilter {u}, pair {k} (token conductance through the filter):\n  "
                            + heatmap.terminal(*a, scale=scale) + "\n  " + heatmap.terminal(*b, scale=scale), None))
    out.append((f"\nreport: {ctx.out / html_name}", None))
    return out
