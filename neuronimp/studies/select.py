"""The `select` study (Study 3): top-k unit selection with a logistic-regression probe (Dhamdhere et al. 2018).

Per draw (a class set, or a re-draw of images for a fixed class set): `per_class` images per class from
`data.split`; every unit of each layer is scored for the image's class on the images that some split uses
for selection; then the pure selection (`studies/selection.py`) ranks, selects and fits the probe for every
split, method and k. The work items are the draws (one part file each; shards split the draws). Tables:
select.csv, select_summary.csv and select_summary.md (columns: docs/select_results.md, results/README.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, ValidationInfo, field_validator
from threadpoolctl import threadpool_limits

from neuronimp.errors import UsageError, closest
from neuronimp.hooks import capture
from neuronimp.methods import compute_scores, delta_message, needs_stats
from neuronimp.methods.units import layer_layouts, to_units
from neuronimp.schema import Strict
from neuronimp.studies.base import Outputs, Study, register_study
from neuronimp.studies.inputs import baseline_for, input_mean, statistics, targets, unit_choice
from neuronimp.studies.select_summary import comparison_table, markdown, paired, summarize, table
from neuronimp.studies.selection import class_split, select_rows
from neuronimp.studies.tabulate import round_trip

COLUMNS = ["task", "draw", "split", "classes", "class_ids", "layer", "method", "k", "control_draw", "accuracy",
           "fit_accuracy", "n_select", "n_eval", "merge", "aggregate", "use_abs", "features", "target", "units",
           "unit_axis", "max_rel_delta"]


class SelectCfg(Strict):
    """Study 3: top-k unit selection and a logistic-regression probe (Dhamdhere et al. 2018, sec. 6).

    Defaults and their reasons: docs/select_results.md ("Choices the paper leaves open").
    """

    task: str = "custom"  # a name for the rows and the summary
    classes: list[str | int] = Field(default_factory=list)  # WordNet ids, class names or indices
    random_classes: int | None = Field(default=None, ge=2)  # draw this many of `classes` (or of all) per draw
    draws: int = Field(default=1, ge=1)  # class draws (random_classes) or image re-draws (fixed classes)
    ks: list[int] = Field(default_factory=lambda: [5, 10, 15, 20])
    per_class: int = Field(default=50, ge=2)  # images per class, drawn from data.split
    select_per_class: int = Field(default=30, ge=1)  # of which these select units and fit the probe
    splits: int = Field(default=1, ge=1)  # resampled selection/evaluation splits per draw
    target: Literal["label", "predicted"] = "label"  # the class each image is scored for
    merge: Literal["round_robin", "rank_sum", "mean_score"] = "round_robin"
    use_abs: bool = False  # rank by the mean of |score| instead of the signed mean
    aggregate: Literal["mean", "contrast"] = "mean"  # contrast: a class's mean minus the other classes' mean
    features: Literal["pooled", "flat"] = "pooled"  # what the probe sees of a unit
    standardize: bool = True  # z-score the probe's features (fitted on the selection images)
    probe_c: float = Field(default=1.0, gt=0)  # inverse L2 strength of the logistic regression
    max_iter: int = Field(default=2000, ge=10)
    random_draws: int = Field(default=5, ge=0)  # random-unit control draws per split (0: none)
    all_units: bool = True  # also fit the probe on every unit of the layer
    reference: Literal["water_vessels", "random_labels"] | None = None  # paper row shown beside ours

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one k")
        if any(k < 1 for k in v):
            raise ValueError("every k must be >= 1")
        return sorted(set(v))

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str | int]) -> list[str | int]:
        if len({str(c) for c in v}) != len(v):
            raise ValueError("a class is listed twice")
        return v

    @field_validator("random_classes")
    @classmethod
    def _random_classes(cls, v: int | None, info: ValidationInfo) -> int | None:
        listed = info.data.get("classes") or []
        if v is not None and listed and v > len(listed):
            raise ValueError(f"exceeds the {len(listed)} classes listed in select.classes to draw from")
        return v

    @field_validator("select_per_class")
    @classmethod
    def _select_per_class(cls, v: int, info: ValidationInfo) -> int:
        per_class = info.data.get("per_class")
        if per_class is not None and v >= per_class:
            raise ValueError(f"must be < select.per_class ({per_class}) so every class keeps evaluation images")
        return v


@register_study
class Select(Study):
    """Study 3: top-k unit selection and a logistic-regression probe on the selected units."""

    name = "select"
    help = "Study 3: top-k unit selection and a logistic-regression probe on the selected units."
    section = SelectCfg
    tables = ("select",)
    columns = {"select": COLUMNS}
    unit = "draw"

    def check(self, ctx: Any) -> None:
        """Layer names and the `units:` entries resolve."""
        _ = unit_choice(ctx)

    def items(self, ctx: Any) -> list[int]:
        """The draws."""
        return list(range(ctx.cfg.select.draws))

    def batch_size(self, ctx: Any) -> int:
        """One draw per part file."""
        return 1

    def prepare(self, ctx: Any, items: list[int]) -> dict[str, Any]:
        """The split, its labels, the class pool, layer statistics and the input mean."""
        ds = ctx.split()
        labels = ctx.labels(ds).numpy()
        pool = class_pool(ctx, ds, labels)
        stats = statistics(ctx, ctx.layers) if needs_stats(ctx.cfg.methods, ctx.params) else {}
        mean = input_mean(ctx) if ctx.cfg.attribution.baseline == "mean" else None
        return {"ds": ds, "labels": labels, "pool": pool, "stats": stats, "mean": mean, "probes": {}}

    def rows(self, ctx: Any, state: dict[str, Any], chunk: list[int]) -> dict[str, list[dict]]:
        """Accuracy rows of the draws in `chunk`."""
        return {"select": [r for draw in chunk for r in draw_rows(ctx, state, draw)]}

    def finish(self, ctx: Any, tables: dict[str, pd.DataFrame], shard: Any) -> Outputs:
        """The completeness warning, select_summary.csv, select_summary.md and the printed tables."""
        df = tables["select"]
        if df.empty:
            return Outputs()
        worst = df.groupby("layer").max_rel_delta.max().dropna()
        for layer, w in worst.items():
            ctx.warn_once(delta_message("conductance", str(layer), float(w), ctx.params))
        return summaries(ctx, df, shard, {str(k): float(v) for k, v in worst.items()})


def draw_rows(ctx: Any, state: dict[str, Any], draw: int) -> list[dict]:
    """Every accuracy row of one draw: its task, splits, scores, features and fits."""
    cfg, sel, ds, labels = ctx.cfg, ctx.cfg.select, state["ds"], state["labels"]
    classes, items = draw_task(ctx, labels, state["pool"], draw)
    task_labels = labels[items]
    splits = [class_split(task_labels, sel.select_per_class, (cfg.seed, draw, 13, s)) for s in range(sel.splits)]
    scored = np.unique(np.concatenate([sp.select for sp in splits]))  # evaluation-only items need no scores
    features, axes = layer_features(ctx, ds, items)
    too_big = [(lay, f.shape[1]) for lay, f in features.items() if max(sel.ks) > f.shape[1]]
    if too_big:
        raise UsageError(f"select.ks: k = {max(sel.ks)} exceeds the {too_big[0][1]} units of layer "
                         f"{too_big[0][0]!r}")
    units = {layer: f.shape[1] for layer, f in features.items()}
    scored_rows = score_items(ctx, state, items[scored])
    worst = scored_rows.groupby("layer").rel_delta.max() if "rel_delta" in scored_rows else pd.Series(dtype=float)
    scores = score_arrays(scored_rows, items, units)
    names = ";".join(ctx.data.class_names[c] for c in classes)
    fixed = {"task": sel.task, "draw": draw, "classes": names, "class_ids": ";".join(map(str, classes)),
             "merge": sel.merge, "aggregate": sel.aggregate, "use_abs": sel.use_abs, "features": sel.features,
             "target": sel.target}
    with threadpool_limits(1):  # thousands of tiny fits: BLAS threads only add contention (8x slower)
        rows = [{**fixed, **r} for r in select_rows(scores, features, task_labels, classes, splits, sel,
                                                    seed=(cfg.seed, draw))]
    for r in rows:  # the largest relative completeness delta of conductance at the row's layer in this draw
        r["unit_axis"] = axes[r["layer"]]
        w = worst.get(r["layer"]) if len(worst) else None
        r["max_rel_delta"] = float(w) if w is not None and w == w else None
    return rows


def score_items(ctx: Any, state: dict[str, Any], items: np.ndarray) -> pd.DataFrame:
    """Wide score rows (input_id, layer, method, rel_delta, u0..uU-1) of `items`. rel_delta: |completeness
    delta of conductance| / |F(x) - F(x')| of the input at the layer (NaN when conductance is not computed)."""
    cfg = ctx.cfg
    frames = []
    chunk = [int(i) for i in items]
    for start in range(0, len(chunk), cfg.runner.batch_size):  # as many rows per frame as a part file had
        rows = []
        for ids, x, y in ctx.batches(state["ds"], chunk[start : start + cfg.runner.batch_size]):
            t = targets(ctx, x, y, cfg.select.target)[0]
            with ctx.autocast():
                s = compute_scores(ctx.bundle.model, x, baseline_for(ctx, x, state["mean"]), t, ctx.layers,
                                   cfg.methods, ctx.params, ids=ids.cpu(), stats=state["stats"],
                                   probes=state["probes"], units=unit_choice(ctx))
            for note in s.notes:  # modules without a rule of a method (the delta warning is in `finish`)
                ctx.warn_once(note)
            rel = {layer: s.relative_delta(layer, "conductance") for layer in ctx.layers}
            for (layer, method), sc in s.scores.items():
                sc = sc.detach().double().cpu().numpy()
                r = rel[layer].double().cpu().numpy() if rel[layer] is not None else None
                for b in range(sc.shape[0]):
                    rows.append({"input_id": int(ids[b]), "layer": layer, "method": method,
                                 "rel_delta": float(r[b]) if r is not None else float("nan"),
                                 **{f"u{u}": float(v) for u, v in enumerate(sc[b])}})
        frames.append(round_trip(rows))  # scores as a part file would give them back (9 digits)
    kept = [f for f in frames if len(f)]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


def class_lookup(ctx: Any, ds: torch.utils.data.Dataset) -> dict[str, int]:
    """Lower-cased class name or WordNet id (image folders) -> class index."""
    names = {n.lower(): i for i, n in reversed(list(enumerate(ctx.data.class_names)))}
    for f, y in zip(getattr(ds, "files", []), getattr(ds, "y", [])):
        names.setdefault(Path(f).parent.name.lower(), int(y))
    return names


def resolve_classes(ctx: Any, ds: torch.utils.data.Dataset, given: list[str | int]) -> list[int]:
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


def draw_task(ctx: Any, labels: np.ndarray, pool: list[int], draw: int) -> tuple[list[int], np.ndarray]:
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


def class_pool(ctx: Any, ds: torch.utils.data.Dataset, labels: np.ndarray) -> list[int]:
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


def layer_features(ctx: Any, ds: torch.utils.data.Dataset, items: np.ndarray
                   ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(layer -> [N, U, P] activations of `items`, layer -> unit axis): P = 1 (the mean over the unit's positions,
    'pooled') or every position ('flat'); a feature's positions are its tokens, a channel's its pixels."""
    flat = ctx.cfg.select.features == "flat"
    chunks: dict[str, list[np.ndarray]] = {layer: [] for layer in ctx.layers}
    model = ctx.bundle.model
    axes: dict[str, str] = {}
    for _, x, _ in ctx.batches(ds, [int(i) for i in items[:1]]):
        axes = {l: lay.axis for l, lay in layer_layouts(model, ctx.layers, x[:1], unit_choice(ctx)).items()}
    with capture(model, ctx.layers) as out, torch.no_grad(), ctx.autocast():
        for _, x, _ in ctx.batches(ds, [int(i) for i in items]):
            model(x)
            for layer in ctx.layers:
                a = to_units(out[layer].detach().float().cpu(), axes[layer])  # B x U x P
                chunks[layer].append((a if flat else a.mean(2, keepdim=True)).numpy())
    return {layer: np.concatenate(c) for layer, c in chunks.items()}, axes


def summaries(ctx: Any, df: pd.DataFrame, shard: Any, worst: dict[str, float]) -> Outputs:
    """select_summary (mean, std, se, n per cell), select_summary.md (paper layout + paired tests), printed."""
    sel = ctx.cfg.select
    summary = summarize(df)
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
    printed = [(f"top-k selection, accuracy % (mean ± std over {runs} runs); rows in "
                f"{ctx.out / f'select{shard.tag}'}", tab)]
    if not comp.empty:
        text += ("\n## Conductance minus each method (percentage points, paired; * where |diff| > 2 standard "
                 "errors over draws, or over splits when there is one draw)\n\n" + markdown(comp))
        printed.append(("conductance minus each method, percentage points (paired; * beyond 2 se)", comp))
    return Outputs(tables={"select_summary": summary}, texts={"select_summary.md": text}, printed=printed,
                   meta={"max_rel_delta": worst})
