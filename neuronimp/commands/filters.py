"""`neuronimp filters`: the sign of each Kim CNN filter's conductance, and negation minimal pairs.

Writes into runner.out (file names carry the shard tag when sharded; see results/README.md):
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

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from neuronimp.commands.common import baseline_for
from neuronimp.errors import UsageError
from neuronimp.runner.context import Context
from neuronimp.runner.io import write_table
from neuronimp.runner.shards import Shard, run_batches
from neuronimp.sentiment import lexicon, negation, report, signs
from neuronimp.sentiment.filters import FilterBank, filter_flow
from neuronimp.sentiment.plots import sign_map
from neuronimp.sentiment.text import decode, encode_like, ngram, span, words


def filter_bank(ctx: Context) -> FilterBank:
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


def flow_rows(ctx: Context, bank: FilterBank, ids: torch.Tensor, keys: list[int], labels: list[int],
              key_name: str) -> list[dict]:
    """Rows (one per item x filter) of the filter conductance of a batch of token-id rows [B, L]."""
    x = ctx.to_input(ids)
    with ctx.autocast():
        flow = filter_flow(ctx.bundle.model, bank, x, baseline_for(ctx, x), ctx.cfg.sentiment.target,
                           ctx.cfg.attribution)
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


def conductance_table(ctx: Context, bank: FilterBank, ids: torch.Tensor, keys: list[int], labels: list[int],
                      name: str, key_name: str, tag: str) -> pd.DataFrame:
    """Filter conductance of token-id rows `ids` [N, L] (row i has key keys[i], label labels[i]), resumable
    in part files under out/parts/<name>."""
    cfg = ctx.cfg
    pos = {k: i for i, k in enumerate(keys)}

    def work(chunk: list[int]) -> list[dict]:
        at = [pos[k] for k in chunk]
        return flow_rows(ctx, bank, ids[at], chunk, [labels[i] for i in at], key_name)

    # resume key: what shapes these numbers (so a re-run with other sign or negation options reuses them)
    key = {"name": name, "ids": hashlib.sha256(ids.contiguous().numpy().tobytes()).hexdigest(),
           "target": cfg.sentiment.target, "dtype": cfg.runner.dtype, "autocast": cfg.runner.autocast,
           "weights_digest": ctx.weights_digest,
           **cfg.model_dump(mode="json", include={"seed", "model", "data", "attribution"})}
    return run_batches(keys, work, ctx.out / "parts" / f"{name}{tag}", cfg.runner.batch_size, key=key,
                       desc=name, show=cfg.runner.progress, unit="sent")


def head_weight(ctx: Context) -> list[float] | None:
    """w_1 - w_0 of the Kim CNN's fc layer per filter (target margin): the sign every active filter gets."""
    fc = getattr(ctx.bundle.model, "fc", None)
    if ctx.cfg.sentiment.target != "margin" or fc is None or fc.weight.shape[0] != 2:
        return None
    w = fc.weight.detach().double().cpu()
    return (w[1] - w[0]).tolist()


def word_list(ctx: Context) -> dict[str, int]:
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
    path: Path          # filter_signs.csv


def sign_study(ctx: Context, bank: FilterBank, df: pd.DataFrame, tag: str, meta: dict) -> SignTable:
    """Signs, categories and shares from the filter-conductance table; writes their CSVs and the PNG."""
    cfg, sc, out = ctx.cfg, ctx.cfg.sentiment, ctx.out
    keys, cond = matrix(df, "input_id", "conductance", bank.units)
    _, grams = matrix(df, "input_id", "ngram", bank.units)
    sgn = signs.signs(cond, sc.zero_tol)
    rows = list(signs.filter_rows(cond, sgn, grams, bank.windows, bank.maps, sc.almost_always, sc.min_nonzero,
                                  head_weight=head_weight(ctx)))
    shares = list(signs.share_rows(rows))
    path = write_table(pd.DataFrame(rows), out / f"filter_signs{tag}", cfg.runner.format)
    ctx.write_meta(path, meta)
    ctx.write_meta(write_table(pd.DataFrame(shares), out / f"filter_sign_shares{tag}", cfg.runner.format), meta)
    order_f, order_s = signs.order(sgn, rows)
    if sc.sign_map_sentences:
        order_s = order_s[:: max(1, len(order_s) // sc.sign_map_sentences)][: sc.sign_map_sentences]
    cats = [r["category"] for r in rows]
    marks = [(i, cats[u]) for i, u in enumerate(order_f) if i == 0 or cats[order_f[i - 1]] != cats[u]]
    title = (f"{cfg.name}: sign of filter conductance ({sc.target}), |c| < {sc.zero_tol} is zero; "
             + ", ".join(f"{r['category']} {r['share']:.0%}" for r in shares))
    sign_map(sgn, order_f, order_s, out / f"filter_signs{tag}.png", title, marks)
    return SignTable(keys, cond, sgn, grams, rows, shares, path)


@dataclass
class NegationStudy:
    """The minimal pairs, their token ids [P, L], one row per pair, the sign changes and their summary."""

    pairs: list[negation.Pair]
    ids: torch.Tensor
    rows: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)


def negation_study(ctx: Context, bank: FilterBank, st: SignTable, df: pd.DataFrame, all_ids: torch.Tensor,
                   labels: list[int], tag: str, meta: dict) -> NegationStudy:
    """Minimal pairs from the analysed sentences, the conductance of the negated ones, and the sign changes."""
    cfg, sc, out, vocab = ctx.cfg, ctx.cfg.sentiment, ctx.out, ctx.data.vocab
    negators = [n for n in sc.negators if n in vocab]
    for n in sorted(set(sc.negators) - set(negators)):
        warnings.warn(f"negator {n!r} is not in the vocabulary; no pairs use it", stacklevel=1)
    sents = [words(all_ids[i], vocab) for i in st.keys]
    pairs = negation.minimal_pairs(sents, st.keys, word_list(ctx), negators, sc.max_pairs)
    ids = torch.zeros(0, all_ids.shape[1], dtype=torch.long)
    if pairs:  # the negated sentence keeps the original's leading padding (cut at the row length)
        ids = torch.stack([encode_like(p.negated, vocab, all_ids.shape[1], span(all_ids[p.input_id])[0])
                           for p in pairs])
    ns = NegationStudy(pairs, ids)
    if pairs:
        ndf = conductance_table(ctx, bank, ids, list(range(len(pairs))), [labels[p.input_id] for p in pairs],
                                "negation_conductance", "pair_id", tag)
        ctx.write_meta(write_table(ndf, out / f"negation_conductance{tag}", cfg.runner.format), meta)
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
        ctx.write_meta(write_table(pd.DataFrame(rows), out / f"{name}{tag}", cfg.runner.format), meta)
    return ns


def run(ctx: Context, shard: Shard) -> Path:
    """Filter signs over the configured split and the negation study; returns the path of filter_signs.csv."""
    cfg, out, tag = ctx.cfg, ctx.out, shard.tag
    bank = filter_bank(ctx)
    ds = ctx.split()
    all_ids = token_ids(ds)                                                   # N x L
    items = shard.select(list(range(len(ds))))
    if not items:
        raise UsageError(f"shard {shard.index}/{shard.count} holds no sentences of the {len(ds)} in the split")
    labels = ctx.labels(ds).tolist()
    meta = {"command": "filters", "shard": f"{shard.index}/{shard.count}"}
    df = conductance_table(ctx, bank, all_ids[items], items, [labels[i] for i in items], "filter_conductance",
                           "input_id", tag)
    ctx.write_meta(write_table(df, out / f"filter_conductance{tag}", cfg.runner.format), meta)
    st = sign_study(ctx, bank, df, tag, meta)
    ns = negation_study(ctx, bank, st, df, all_ids, labels, tag, meta)
    html = report.filters_page(ctx, bank, st.rows, st.shares, df, ns.rows, ns.summary, ns.changes, ns.pairs,
                               ns.ids, all_ids)
    html_path = report.save(ctx, out / f"filters{tag}.html", html, meta)
    report.print_summary(ctx, bank, st.shares, ns.rows, ns.summary, ns.changes, ns.pairs, ns.ids, all_ids, html_path)
    return st.path
