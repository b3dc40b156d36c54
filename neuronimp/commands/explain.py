"""`neuronimp explain --unit U --index I`: the conductance of each token of sentence I through filter U.

Neuron conductance (Dhamdhere et al. 2018, eq. 2) of every token, summed over the embedding dimensions,
towards F (sentiment.target: the margin logit[positive] - logit[negative], or the predicted class's logit),
along the straight path from the baseline (the all-padding sentence) to the sentence. Printed as a
highlighted sentence (green pushes F up, red down) and written to runner.out as
  explain_unit<U>_index<I>.html  the highlighted sentence and the numbers below
  explain_unit<U>_index<I>.csv   position, token, conductance
Completeness: the token conductances sum to the filter's total conductance up to the discretisation error,
which is printed (raise attribution.n_steps when it is large).
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from neuronimp.studies.inputs import baseline_for
from neuronimp.studies.filters import filter_bank, token_ids
from neuronimp.errors import UsageError
from neuronimp.runner.context import Context
from neuronimp.runner.io import write_table, write_text
from neuronimp.sentiment import heatmap
from neuronimp.sentiment.filters import filter_flow, token_conductance
from neuronimp.sentiment.text import decode, ngram, span


def run(ctx: Context, unit: int, index: int) -> Path:
    """Highlight sentence `index` of the configured split by its token conductance through filter `unit`."""
    cfg, sc = ctx.cfg, ctx.cfg.sentiment
    bank = filter_bank(ctx)
    bank.check(unit)
    ds = ctx.split()
    if not 0 <= index < len(ds):
        raise UsageError(f"--index {index}: the {cfg.data.split} split has {len(ds)} sentences; "
                         f"allowed: 0..{len(ds) - 1}")
    ids = token_ids(ds)[index : index + 1]                                   # 1 x L
    label = int(ctx.labels(ds)[index])
    x = ctx.to_input(ids)                                                     # 1 x C x L x D
    base = baseline_for(ctx, x)
    with ctx.autocast():
        flow = filter_flow(ctx.bundle.model, bank, x, base, sc.target, ctx.params)
        tok = token_conductance(ctx.bundle.model, bank, unit, x, base, sc.target, ctx.params)[0].double()
    lo, hi = span(ids[0])
    padded = decode(ids[0], ctx.data.vocab)
    tokens, scores = padded[lo:hi], tok[lo:hi].tolist()
    start = int(flow.start[0, unit])
    gram = ngram(padded, start, bank.window(unit))
    total, summed = float(flow.conductance[0, unit]), float(tok.sum())
    names = ctx.data.class_names
    pred = int(flow.predicted[0])
    head = (f"filter {unit} (window {bank.window(unit)}, map {bank.map(unit)}) on {cfg.data.split} sentence {index}: "
            f"label {names[label]}, predicted {names[pred]}")
    facts = {"filter": unit, "window": bank.window(unit), "map": bank.map(unit), "index": index,
             "label": names[label], "predicted": names[pred], "target": sc.target, "F(x)": float(flow.score[0]),
             "fires_on": gram, "fires_at": start - lo, "activation": float(flow.activation[0, unit]),
             "filter_conductance": total, "sum_token_conductance": summed,
             "completeness_gap": summed - total, "n_steps": cfg.attribution.n_steps}
    print(head)
    print("  " + heatmap.terminal(tokens, scores))
    print(f"  fires on '{gram}' (activation {facts['activation']:.4g}); filter conductance {total:+.4g}; "
          f"sum over tokens {summed:+.4g} (gap {summed - total:+.2g} at n_steps={cfg.attribution.n_steps})")

    stem = ctx.out / f"explain_unit{unit}_index{index}"
    table = pd.DataFrame({"position": range(len(tokens)), "token": tokens, "conductance": scores})
    meta = {"command": "explain", **facts}
    ctx.write_meta(write_table(table, stem, cfg.runner.format), meta)
    body = [f"<p>{html.escape(head)}</p>", heatmap.html_sentence(tokens, scores),
            "<p class='note'>Token conductance through the filter towards "
            + ("logit[positive] - logit[negative]" if sc.target == "margin" else "the predicted class's logit")
            + "; green raises it, red lowers it; hover a token for its value.</p>",
            heatmap.html_table([facts])]
    html_path = stem.with_suffix(".html")
    write_text(html_path, heatmap.html_page(f"{cfg.name}: filter {unit}, sentence {index}", body))
    ctx.write_meta(html_path, meta)
    print(f"  written: {html_path}")
    return html_path
