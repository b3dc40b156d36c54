"""`neuronimp select`: study 3, top-k unit selection with a logistic-regression probe (Dhamdhere et al. 2018).

Per draw (a class set, or a re-draw of images for a fixed class set): `per_class` images per class from
`data.split`; every unit of each layer is scored for the image's class on the images that some split uses
for selection (resumable parts, one folder per draw, shared by sharded and unsharded runs); then the pure
study (`neuronimp.studies.select`) ranks, selects and fits the probe for every split, method and k.
Shards split the draws. Writes select.csv, select_summary.csv and select_summary.md (columns:
docs/select_results.md and results/README.md).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from neuronimp.commands.common import baseline_for, input_mean, needs_stats, statistics
from neuronimp.errors import UsageError, closest
from neuronimp.hooks import capture
from neuronimp.methods import compute_scores
from neuronimp.methods.grid import suggest_steps
from neuronimp.runner.context import Context
from neuronimp.runner.io import write_table, write_text
from neuronimp.runner.progress import print_table
from neuronimp.runner.shards import Shard, run_batches
from neuronimp.studies.select import class_split, select_rows
from neuronimp.studies.select_summary import comparison_table, markdown, paired, summarize, table

COLUMNS = ["task", "draw", "split", "classes", "class_ids", "layer", "method", "k", "control_draw", "accuracy",
           "fit_accuracy", "n_select", "n_eval", "merge", "aggregate", "use_abs", "features", "target", "units"]


def class_lookup(ctx: Context, ds: torch.utils.data.Dataset) -> dict[str, int]:
    """Lower-cased class name or WordNet id (image folders) -> class index."""
    names = {n.lower(): i for i, n in reversed(list(enumerate(ctx.data.class_names)))}
    for f, y in zip(getattr(ds, "files", []), getattr(ds, "y", [])):
        names.setdefault(Path(f).parent.name.lower(), int(y))
    return names


def resolve_classes(ctx: Context, ds: torch.utils.data.Dataset, given: list[str | int]) -> list[int]:
    """Class indices of `select.classes` entries (indices, names, or WordNet ids); UsageError otherwise."""
    lookup = class_lookup(ctx, ds)
    out = []
    for c in given:
        if isinstance(c, int) or str(c).isdigit():
            i = int(c)
            if not 0 <= i < ctx.data.num_classes:
                raise UsageError(f"select.classes: index {i} is outside 0..{ctx.data.num_classes - 1}")
        elif str(c).lower() in lookup:
            i = lookup[str(c).lower()]
        else:
            hint = closest(str(c).lower(), lookup)
            shown = ", ".join(ctx.data.class_names[:12]) + (", ..." if len(ctx.data.class_names) > 12 else "")
            raise UsageError(f"select.classes: unknown class {c!r} in data {ctx.cfg.data.name!r}; give an index, "
                             f"a name ({shown}) or a WordNet id of a folder present"
                             + (f" (did you mean {hint!r}?)" if hint else ""))
        out.append(i)
    if len(set(out)) != len(out):
        raise UsageError(f"select.classes: two entries name the same class ({given})")
    return out


def draw_task(ctx: Context, labels: np.ndarray, pool: list[int], draw: int) -> tuple[list[int], np.ndarray]:
    """(classes of the draw, positions of its per_class items per class in the split), seeded by (seed, draw)."""
    sel, seed = ctx.cfg.select, ctx.cfg.seed
    if sel.random_classes is not None:
        pick = np.random.default_rng([seed, draw, 7]).choice(pool, sel.random_classes, replace=False)
        classes = sorted(int(c) for c in pick)
    else:
        classes = list(pool)
    rng = np.random.default_rng([seed, draw, 11])
    items = []
    for c in classes:
        where = np.flatnonzero(labels == c)
        if len(where) < sel.per_class:
            raise UsageError(f"select.per_class = {sel.per_class}: class {ctx.data.class_names[c]!r} has only "
                             f"{len(where)} items in the {ctx.cfg.data.split!r} split")
        items.append(np.sort(rng.choice(where, sel.per_class, replace=False)))
    return classes, np.concatenate(items)


def class_pool(ctx: Context, ds: torch.utils.data.Dataset, labels: np.ndarray) -> list[int]:
    """The fixed task's classes, or the classes random draws pick from (listed, else every class with enough items)."""
    sel = ctx.cfg.select
    if sel.classes:
        return resolve_classes(ctx, ds, sel.classes)
    if sel.random_classes is None:
        raise UsageError("select: give the task's classes (select.classes) or a number of random classes per "
                         "draw (select.random_classes)")
    present, counts = np.unique(labels, return_counts=True)
    pool = [int(c) for c, n in zip(present, counts) if n >= sel.per_class]
    if len(pool) < sel.random_classes:
        raise UsageError(f"select.random_classes = {sel.random_classes}: only {len(pool)} classes of the "
                         f"{ctx.cfg.data.split!r} split have select.per_class = {sel.per_class} items")
    return pool


def score_draw(ctx: Context, ds: torch.utils.data.Dataset, items: np.ndarray, draw: int, stats: dict) -> pd.DataFrame:
    """Wide score rows (input_id, layer, method, rel_delta, u0..uU-1) of `items`, resumable in a per-draw parts
    folder. rel_delta: |completeness delta of conductance| / |F(x) - F(x')| of the input at the layer (NaN
    when conductance is not computed)."""
    cfg = ctx.cfg
    mean = input_mean(ctx) if cfg.attribution.baseline == "mean" else None
    probes: dict = {}

    def work(chunk: list[int]) -> list[dict]:
        rows = []
        for ids, x, y in ctx.batches(ds, chunk):
            if cfg.select.target == "label":
                t = y
            else:
                with torch.no_grad():
                    t = ctx.bundle.model(x).argmax(1)
            with ctx.autocast():
                s = compute_scores(ctx.bundle.model, x, baseline_for(ctx, x, mean), t, ctx.layers, cfg.methods,
                                   cfg.attribution, ids=ids.cpu(), stats=stats, probes=probes, warn=False)
            rel = {}
            for layer, delta in s.deltas.items():  # completeness of conductance, relative to F(x) - F(x')
                gap = (s.f_input - s.f_baseline).abs().clamp(min=1e-12)
                rel[layer] = (delta.abs() / gap).double().cpu().numpy()  # B
            for (layer, method), sc in s.scores.items():
                sc = sc.detach().double().cpu().numpy()
                for b in range(sc.shape[0]):
                    d = float(rel[layer][b]) if layer in rel else float("nan")
                    rows.append({"input_id": int(ids[b]), "layer": layer, "method": method, "rel_delta": d,
                                 **{f"u{u}": float(v) for u, v in enumerate(sc[b])}})
        return rows

    key = {"model": cfg.model.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json"),
           "layers": ctx.layers, "methods": cfg.methods, "attribution": cfg.attribution.model_dump(mode="json"),
           "dtype": cfg.runner.dtype, "autocast": cfg.runner.autocast, "target": cfg.select.target,
           "seed": cfg.seed, "weights_digest": ctx.weights_digest}
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.select.task)
    parts = ctx.out / "parts" / f"select-{slug}-draw-{draw:04d}"
    return run_batches([int(i) for i in items], work, parts, cfg.runner.batch_size, key=key,
                       desc=f"select draw {draw}", show=cfg.runner.progress, unit="img")


def score_arrays(df: pd.DataFrame, items: np.ndarray, units: dict[str, int]) -> dict[tuple[str, str], np.ndarray]:
    """Wide score rows -> (layer, method) -> [N, U] aligned with `items` (NaN where an item was not scored)."""
    pos = {int(i): p for p, i in enumerate(items)}
    out: dict[tuple[str, str], np.ndarray] = {}
    for (layer, method), grp in df.groupby(["layer", "method"], sort=False):
        n_units = units[str(layer)]  # a narrower layer than the widest leaves its extra u-columns empty
        arr = np.full((len(items), n_units), np.nan)
        arr[[pos[int(i)] for i in grp.input_id], :] = grp[[f"u{u}" for u in range(n_units)]].to_numpy(np.float64)
        out[(str(layer), str(method))] = arr
    return out


def layer_features(ctx: Context, ds: torch.utils.data.Dataset, items: np.ndarray) -> dict[str, np.ndarray]:
    """layer -> [N, U, P] activations of `items`: P = 1 (spatial mean, 'pooled') or every position ('flat')."""
    flat = ctx.cfg.select.features == "flat"
    chunks: dict[str, list[np.ndarray]] = {layer: [] for layer in ctx.layers}
    model = ctx.bundle.model
    with capture(model, ctx.layers) as out, torch.no_grad(), ctx.autocast():
        for _, x, _ in ctx.batches(ds, [int(i) for i in items]):
            model(x)
            for layer in ctx.layers:
                a = out[layer].detach().float().cpu()  # B x U x *spatial
                a = a.flatten(2) if a.dim() > 2 else a.unsqueeze(2)  # B x U x P
                chunks[layer].append((a if flat else a.mean(2, keepdim=True)).numpy())
    return {layer: np.concatenate(c) for layer, c in chunks.items()}


def run(ctx: Context, shard: Shard) -> Path:
    """Run the configured selection task over this shard's draws; write the accuracy table and summaries."""
    cfg, sel = ctx.cfg, ctx.cfg.select
    ds = ctx.split()
    labels = ctx.labels(ds).numpy()
    pool = class_pool(ctx, ds, labels)
    stats = statistics(ctx, ctx.layers) if needs_stats(cfg.methods) else {}
    worst: dict[str, float] = {}  # layer -> largest relative completeness delta of conductance
    rows: list[dict] = []
    for draw in shard.select(list(range(sel.draws))):
        classes, items = draw_task(ctx, labels, pool, draw)
        task_labels = labels[items]
        splits = [class_split(task_labels, sel.select_per_class, (cfg.seed, draw, 13, s)) for s in range(sel.splits)]
        scored = np.unique(np.concatenate([sp.select for sp in splits]))  # evaluation-only items need no scores
        features = layer_features(ctx, ds, items)
        too_big = [(lay, f.shape[1]) for lay, f in features.items() if max(sel.ks) > f.shape[1]]
        if too_big:
            raise UsageError(f"select.ks: k = {max(sel.ks)} exceeds the {too_big[0][1]} units of layer "
                             f"{too_big[0][0]!r}")
        units = {layer: f.shape[1] for layer, f in features.items()}
        scored_rows = score_draw(ctx, ds, items[scored], draw, stats)
        deltas = scored_rows.groupby("layer").rel_delta.max() if "rel_delta" in scored_rows else pd.Series()
        for layer, d in deltas.dropna().items():
            worst[str(layer)] = max(worst.get(str(layer), 0.0), float(d))
        scores = score_arrays(scored_rows, items, units)
        names = ";".join(ctx.data.class_names[c] for c in classes)
        fixed = {"task": sel.task, "draw": draw, "classes": names, "class_ids": ";".join(map(str, classes)),
                 "merge": sel.merge, "aggregate": sel.aggregate, "use_abs": sel.use_abs, "features": sel.features,
                 "target": sel.target}
        with threadpool_limits(1):  # thousands of tiny fits: BLAS threads only add contention (8x slower)
            rows += [{**fixed, **r} for r in select_rows(scores, features, task_labels, classes, splits, sel,
                                                         seed=(cfg.seed, draw))]
    tol = cfg.attribution.delta_tolerance
    for layer, w in worst.items():
        if w > tol:
            n = suggest_steps(cfg.attribution.rule, cfg.attribution.n_steps, w, tol)
            warnings.warn(f"conductance at {layer}: completeness delta up to {w:.1%} of F(x)-F(x') exceeds the "
                          f"tolerance {tol:.1%}; try attribution.n_steps={n} (now {cfg.attribution.n_steps})",
                          stacklevel=1)
    df = pd.DataFrame(rows, columns=COLUMNS)
    path = write_table(df, ctx.out / f"select{shard.tag}", cfg.runner.format)
    ctx.write_meta(path, {"command": "select", "shard": f"{shard.index}/{shard.count}",
                          "max_rel_delta": worst})
    if not df.empty:
        write_summaries(ctx, df, shard)
    return path


def write_summaries(ctx: Context, df: pd.DataFrame, shard: Shard) -> None:
    """select_summary.csv (mean, std, se, n per cell), select_summary.md (paper layout + paired tests); print."""
    sel = ctx.cfg.select
    summary = summarize(df)
    spath = write_table(summary, ctx.out / f"select_summary{shard.tag}", "csv")
    ctx.write_meta(spath, {"command": "select", "table": "summary"})
    tab = table(summary, sel.ks, sel.reference)
    comp = comparison_table(paired(df))
    runs = df.groupby(["draw", "split"]).ngroups
    head = (f"# Top-k unit selection: {sel.task}\n\nmodel {ctx.cfg.model.name} ({ctx.cfg.model.weights}), data "
            f"{ctx.cfg.data.name} ({ctx.cfg.data.split}), {sel.per_class} images per class "
            f"({sel.select_per_class} select + fit, {sel.per_class - sel.select_per_class} evaluate), "
            f"{runs} runs (draws x splits); aggregate {sel.aggregate}{' of |score|' if sel.use_abs else ''}, "
            f"merge {sel.merge}, features {sel.features}, target {sel.target}. "
            f"Accuracy in %, mean ± std over runs.\n\n")
    text = head + markdown(tab)
    if not comp.empty:
        text += ("\n## Conductance minus each method (percentage points, paired; * where |diff| > 2 standard errors "
                 "over draws, or over splits when there is one draw)\n\n"
                 + markdown(comp))
    write_text((ctx.out / f"select_summary{shard.tag}").with_suffix(".md"), text)
    print_table(tab, f"top-k selection, accuracy % (mean ± std over {runs} runs); rows in "
                     f"{ctx.out / f'select{shard.tag}'}")
    if not comp.empty:
        print_table(comp, "conductance minus each method, percentage points (paired; * beyond 2 se)")
