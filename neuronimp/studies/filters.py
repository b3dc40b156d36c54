"""The `filters` study (sentiment): the sign of each Kim CNN filter's conductance, and negation minimal pairs.

The work items are the sentences of the configured split (rows: filter_conductance, resumable); `finish`
derives the sign study and the negation study (minimal pairs built from the analysed sentences, their
conductance computed in memory) and the HTML report. Tables (file names carry the shard tag when sharded;
see results/README.md):
  filter_conductance.csv   one row per (sentence, filter): conductance to F, activation, n-gram fired on
  filter_signs.csv         one row per filter: sign counts, shares, category, top n-grams
  filter_sign_shares.csv   one row per category: filters and share
  filter_signs.png         sign map, filters x sentences
  negation_pairs.csv       one row per minimal pair: both sentences, predictions, F, changed filters
  negation_conductance.csv one row per (pair, filter) of the negated sentence
  negation_changes.csv     one row per (pair, filter) whose sign flips / turns off / turns on
  negation_filters.csv     one row per filter that changes: counts and n-grams
  filters.html             shares, top filters, highlighted minimal pairs (token conductance per filter)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import Field
from torch.utils.data import Dataset

from neuronimp.errors import UsageError
from neuronimp.schema import Strict
from neuronimp.sentiment import lexicon, negation, report, signs
from neuronimp.sentiment.filters import FilterBank, filter_flow
from neuronimp.sentiment.plots import sign_map
from neuronimp.sentiment.text import decode, encode_like, ngram, span, words
from neuronimp.studies.base import Outputs, Study, register_study
from neuronimp.studies.inputs import baseline_for
from neuronimp.studies.tabulate import round_trip

_WHOLE = "run `neuronimp filters` without --shard: its sign and negation tables describe the whole split"


class SentimentCfg(Strict):
    """The Kim CNN filter analysis (`neuronimp filters`, `neuronimp explain`; Dhamdhere et al. 2018, sentiment CNN)."""

    target: Literal["margin", "predicted"] = "margin"  # margin: logit[positive] - logit[negative]
    zero_tol: float = Field(default=0.01, ge=0)  # |conductance| below this counts as zero
    almost_always: float = Field(default=0.9, gt=0.5, le=1)  # share of non-zero cases with one sign
    min_nonzero: int = Field(default=5, ge=1)  # fewer non-zero cases: the filter is 'rarely active'
    negators: list[str] = Field(default_factory=lambda: ["not", "n't", "never"], min_length=1)
    sentiment_words: Literal["builtin", "train"] = "builtin"  # built-in lexicon, or top words per label
    top_words: int = Field(default=50, ge=1)  # per label, when sentiment_words = train
    min_word_count: int = Field(default=5, ge=1)  # train words seen fewer times are not candidates
    max_pairs: int = Field(default=500, ge=1)  # minimal pairs built from the analysed split (at most)
    examples: int = Field(default=3, ge=0)  # highlighted sentences per filter in the HTML report
    report_filters: int = Field(default=10, ge=0)  # filters shown in the terminal and the HTML report
    sign_map_sentences: int = Field(default=0, ge=0)  # sentences drawn in the sign-map PNG (0: all)


@register_study
class Filters(Study):
    """Sentiment: sign of each filter's conductance over sentences, and negation minimal pairs (Kim CNN)."""

    name = "filters"
    help = "Sentiment: sign of each filter's conductance over sentences, and negation minimal pairs (Kim CNN)."
    section = SentimentCfg
    section_key = "sentiment"
    tables = ("filter_conductance",)
    unit = "sent"
    aggregates = {name: _WHOLE for name in ("filter_signs", "filter_sign_shares", "negation_pairs",
                                             "negation_changes", "negation_filters", "negation_conductance")}

    def check(self, ctx: Any) -> None:
        """The Kim CNN's filter layer and sentence data."""
        filter_bank(ctx)

    def prepare(self, ctx: Any, items: list[int]) -> dict[str, Any]:
        """The filter bank and the token ids and labels of the split."""
        if not items:
            raise UsageError(f"this shard holds no sentences of the {len(ctx.split())} in the split")
        ds = ctx.split()
        return {"bank": filter_bank(ctx), "ids": token_ids(ds), "labels": ctx.labels(ds).tolist()}

    def rows(self, ctx: Any, state: dict[str, Any], chunk: list[int]) -> dict[str, list[dict]]:
        """Filter conductance rows of a batch of sentences."""
        labels = state["labels"]
        return {"filter_conductance": flow_rows(ctx, state["bank"], state["ids"][chunk], chunk,
                                                [labels[i] for i in chunk], "input_id")}

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """Signs, shares, the negation study, the HTML report and the printed summary."""
        out = Outputs()
        df, bank, all_ids, labels = tables["filter_conductance"], filter_bank(ctx), token_ids(ctx.split()), \
            ctx.labels(ctx.split()).tolist()
        if df.empty:
            return out
        st = sign_study(ctx, bank, df, out)
        ns = negation_study(ctx, bank, st, df, all_ids, labels, out)
        html_name = f"filters{shard.tag}.html"
        out.texts["filters.html"] = report.filters_page(ctx, bank, st.rows, st.shares, df, ns.rows, ns.summary,
                                                        ns.changes, ns.pairs, ns.ids, all_ids)
        out.printed += report.summary(ctx, bank, st.shares, ns.rows, ns.summary, ns.changes, ns.pairs, ns.ids,
                                      all_ids, html_name)
        return out


def filter_bank(ctx: Any) -> FilterBank:
    """The Kim CNN's filter layer; UsageError for other models, layers or data without a vocabulary."""
    bank = FilterBank.of(ctx.bundle.model)
    if ctx.layers != [bank.layer]:
        raise UsageError(f"layers = {ctx.cfg.layers}: the filter analysis reads the filter layer only; "
                         f"use layers: [{bank.layer}]")
    if ctx.data is None or ctx.data.vocab is None:
        raise UsageError(f"data.name = {ctx.cfg.data.name!r}: the filter analysis needs a sentence data set (mr, sst2)")
    return bank


def token_ids(ds: Dataset) -> torch.Tensor:
    """All token-id rows of a sentence dataset, [N, L]."""
    x = getattr(ds, "x", None)
    return x if isinstance(x, torch.Tensor) else torch.stack([ds[i][0] for i in range(len(ds))])


def flow_rows(ctx: Any, bank: FilterBank, ids: torch.Tensor, keys: list[int], labels: list[int],
              key_name: str) -> list[dict]:
    """Rows (one per item x filter) of the filter conductance of a batch of token-id rows [B, L]."""
    x = ctx.to_input(ids)
    with ctx.autocast():
        flow = filter_flow(ctx.bundle.model, bank, x, baseline_for(ctx, x), ctx.cfg.sentiment.target,
                           ctx.params)
    rows = []
    for b in range(ids.shape[0]):
        toks = decode(ids[b], ctx.data.vocab)
        for u in range(bank.units):
            s = int(flow.start[b, u])
            rows.append({key_name: keys[b], "label": labels[b], "predicted": int(flow.predicted[b]),
                         "target": int(flow.target[b]), "score": float(flow.score[b]), "delta": float(flow.delta[b]),
                         "filter": u, "conductance": float(flow.conductance[b, u]),
                         "activation": float(flow.activation[b, u]), "start": s,
                         "ngram": ngram(toks, s, bank.window(u))})
    return rows


def matrix(df: pd.DataFrame, key: str, column: str, units: int) -> tuple[list[int], torch.Tensor | list]:
    """(keys in order, the column as [N, U]: a float tensor, or nested lists for text) of a long table."""
    df = df.sort_values([key, "filter"])
    keys = df[key].drop_duplicates().tolist()
    if not pd.api.types.is_numeric_dtype(df[column]):
        vals = df[column].fillna("").tolist()
        return keys, [vals[i * units : (i + 1) * units] for i in range(len(keys))]
    return keys, torch.tensor(df[column].to_numpy(), dtype=torch.float64).view(len(keys), units)


def head_weight(ctx: Any) -> list[float] | None:
    """w_1 - w_0 of the Kim CNN's fc layer per filter (target margin): the sign every active filter gets."""
    fc = getattr(ctx.bundle.model, "fc", None)
    if ctx.cfg.sentiment.target != "margin" or fc is None or fc.weight.shape[0] != 2:
        return None
    w = fc.weight.detach().double().cpu()
    return (w[1] - w[0]).tolist()


def word_list(ctx: Any) -> dict[str, int]:
    """The sentiment words of the config (built-in, or from the training split)."""
    sc = ctx.cfg.sentiment
    if sc.sentiment_words == "builtin":
        return lexicon.builtin()
    train = token_ids(ctx.data.train)
    sents = [words(r, ctx.data.vocab) for r in train]
    return lexicon.from_training(sents, ctx.labels(ctx.data.train).tolist(), sc.top_words, sc.min_word_count,
                                 exclude=sc.negators)


@dataclass
class SignTable:
    """The sign study of one run: sentence keys, conductance and signs [N, U], n-grams [N][U], rows."""

    keys: list[int]
    cond: torch.Tensor
    sgn: torch.Tensor
    grams: list
    rows: list[dict]
    shares: list[dict]


def sign_study(ctx: Any, bank: FilterBank, df: pd.DataFrame, outputs: Outputs) -> SignTable:
    """Signs, categories and shares from the filter-conductance table; their tables and the sign map."""
    cfg, sc = ctx.cfg, ctx.cfg.sentiment
    keys, cond = matrix(df, "input_id", "conductance", bank.units)
    _, grams = matrix(df, "input_id", "ngram", bank.units)
    sgn = signs.signs(cond, sc.zero_tol)
    rows = list(signs.filter_rows(cond, sgn, grams, bank.windows, bank.maps, sc.almost_always, sc.min_nonzero,
                                  head_weight=head_weight(ctx)))
    shares = list(signs.share_rows(rows))
    outputs.tables.update(filter_signs=pd.DataFrame(rows), filter_sign_shares=pd.DataFrame(shares))
    order_f, order_s = signs.order(sgn, rows)
    if sc.sign_map_sentences:
        order_s = order_s[:: max(1, len(order_s) // sc.sign_map_sentences)][: sc.sign_map_sentences]
    cats = [r["category"] for r in rows]
    marks = [(i, cats[u]) for i, u in enumerate(order_f) if i == 0 or cats[order_f[i - 1]] != cats[u]]
    title = (f"{cfg.name}: sign of filter conductance ({sc.target}), |c| < {sc.zero_tol} is zero; "
             + ", ".join(f"{r['category']} {r['share']:.0%}" for r in shares))
    outputs.figures["filter_signs.png"] = sign_map(sgn, order_f, order_s, title, marks)
    return SignTable(keys, cond, sgn, grams, rows, shares)


@dataclass
class NegationStudy:
    """The minimal pairs, their token ids [P, L], one row per pair, the sign changes and their summary."""

    pairs: list[negation.Pair]
    ids: torch.Tensor
    rows: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)


def negation_study(ctx: Any, bank: FilterBank, st: SignTable, df: pd.DataFrame, all_ids: torch.Tensor,
                   labels: list[int], outputs: Outputs) -> NegationStudy:
    """Minimal pairs from the analysed sentences, the conductance of the negated ones, and the sign changes."""
    sc, vocab = ctx.cfg.sentiment, ctx.data.vocab
    negators = [n for n in sc.negators if n in vocab]
    for n in sorted(set(sc.negators) - set(negators)):
        ctx.warn_once(f"negator {n!r} is not in the vocabulary; no pairs use it")
    sents = [words(all_ids[i], vocab) for i in st.keys]
    pairs = negation.minimal_pairs(sents, st.keys, word_list(ctx), negators, sc.max_pairs)
    ids = torch.zeros(0, all_ids.shape[1], dtype=torch.long)
    if pairs:  # the negated sentence keeps the original's leading padding (cut at the row length)
        ids = torch.stack([encode_like(p.negated, vocab, all_ids.shape[1], span(all_ids[p.input_id])[0])
                           for p in pairs])
    ns = NegationStudy(pairs, ids)
    if pairs:
        plabels = [labels[p.input_id] for p in pairs]
        ndf = pd.concat([round_trip(flow_rows(ctx, bank, ids[i : i + ctx.cfg.runner.batch_size],
                                              list(range(i, min(len(pairs), i + ctx.cfg.runner.batch_size))),
                                              plabels[i : i + ctx.cfg.runner.batch_size], "pair_id"))
                         for i in range(0, len(pairs), ctx.cfg.runner.batch_size)], ignore_index=True)
        outputs.tables["negation_conductance"] = ndf
        _, ncond = matrix(ndf, "pair_id", "conductance", bank.units)
        _, ngrams = matrix(ndf, "pair_id", "ngram", bank.units)
        nsgn = signs.signs(ncond, sc.zero_tol)
        first = df.drop_duplicates("input_id").set_index("input_id")
        nfirst = ndf.drop_duplicates("pair_id").set_index("pair_id")
        row_of = {k: i for i, k in enumerate(st.keys)}
        for k, p in enumerate(pairs):
            r = row_of[p.input_id]
            ch = list(negation.change_rows(k, st.sgn[r].tolist(), nsgn[k].tolist(), st.cond[r].tolist(),
                                           ncond[k].tolist(), st.grams[r], ngrams[k], bank.windows, bank.maps))
            ns.changes += ch
            kinds = [c["change"] for c in ch]
            ns.rows.append({"pair_id": k, "input_id": p.input_id, "label": labels[p.input_id], "negator": p.negator,
                            "word": p.word, "word_polarity": p.polarity, "position": p.position,
                            "predicted_original": int(first.loc[p.input_id, "predicted"]),
                            "predicted_negated": int(nfirst.loc[k, "predicted"]),
                            "score_original": float(first.loc[p.input_id, "score"]),
                            "score_negated": float(nfirst.loc[k, "score"]),
                            **{f"n_{kind}": kinds.count(kind) for kind in negation.KINDS},
                            "original": " ".join(p.original), "negated": " ".join(p.negated)})
    ns.summary = list(negation.filter_summary(ns.changes, [r["category"] for r in st.rows]))
    for name, rows in (("negation_pairs", ns.rows), ("negation_changes", ns.changes),
                       ("negation_filters", ns.summary)):
        outputs.tables[name] = pd.DataFrame(rows)
    return ns
