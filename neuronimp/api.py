"""The Python API (`import neuronimp as ni`): models in, tensors in, DataFrames out; nothing written to disk.

    m = ni.create_model("googlenet", weights="imagenet")    # or ni.wrap(any_nn_module, input_shape=(3, 224, 224))
    s = ni.score(m, x, layers=["mixed4d", "mixed5b"], methods=["conductance", "deeplift"])
    s.to_frame()                                           # input, layer, unit, method, score, delta
    t = ni.ablate(m, x, layer="mixed4d", methods=["conductance", "grad_x_act"])  # the rows the CLI writes

`ablate`, `select` and `delete` run the registered study through the same driver as the command line
(`runner.driver.run_study`, in memory), so they return exactly the tables the CLI writes for the same
settings. Layer aliases resolve (`mixed4d`); an unknown layer is a UsageError listing the layers. A plain
`nn.Module` is used through a canonical copy (every ReLU its own non-in-place module, one per call site: a
block that calls one ReLU twice, like torchvision's ResNet blocks, is traced with torch.fx and given a copy
per call): the caller's model is never changed.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from neuronimp.data import DataBundle, TensorData
from neuronimp.errors import UsageError
from neuronimp.methods import Scores, compute_scores, delta_warnings, needs_stats
from neuronimp.methods.baselines import make_baseline
from neuronimp.methods.selectivity import layer_statistics
from neuronimp.methods.targets import target_classes
from neuronimp.models import ModelBundle, canonicalise, create_model, resolve_layer
from neuronimp.models.canonical import split_call_sites

__all__ = ["ablate", "create_model", "delete", "run", "score", "select", "wrap"]


def wrap(module: nn.Module, input_shape: tuple[int, ...], *, num_classes: int | None = None,
         layer_aliases: dict[str, str] | None = None, default_layer: str = "", name: str = "model") -> ModelBundle:
    """A canonical copy of any nn.Module as a ModelBundle (eval mode; ReLUs not in place, one per call site)."""
    model = copy.deepcopy(module).eval()
    canonicalise(model)
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.get_default_dtype()
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros((1, *input_shape), dtype=dtype, device=device)
    model = split_call_sites(model, example, name).eval()
    if num_classes is None:
        with torch.no_grad():
            num_classes = int(model(example).shape[1])
    return ModelBundle(model, name, num_classes, tuple(input_shape), dict(layer_aliases or {}), default_layer)


def _bundle(model: ModelBundle | nn.Module, x: torch.Tensor) -> ModelBundle:
    """A bundle for `model` (a plain module is wrapped: a canonical copy)."""
    if isinstance(model, ModelBundle):
        return model
    if isinstance(model, nn.Module):
        return wrap(model, tuple(x.shape[1:]))
    raise UsageError(f"model: expected a neuronimp ModelBundle or a torch nn.Module, got {type(model).__name__}")


def _layers(bundle: ModelBundle, layers: str | list[str] | None) -> list[str]:
    """Module paths of the requested layers (aliases resolved; default: the bundle's default layer)."""
    names = [layers] if isinstance(layers, str) else list(layers or [])
    if not names:
        if not bundle.default_layer:
            raise UsageError("layers: give at least one layer (this model has no default layer)")
        names = [bundle.default_layer]
    return [resolve_layer(bundle, n) for n in names]


def _target(bundle: ModelBundle, x: torch.Tensor, target: Any, y: torch.Tensor | None) -> torch.Tensor:
    """Target class per input: 'predicted', 'label' (needs y), a class index, or a tensor [B]."""
    if isinstance(target, torch.Tensor):
        return target.to(x.device).long()
    if target == "label" and y is None:
        raise UsageError("target = 'label' needs the labels: pass y=")
    if target in ("predicted", "label") or (isinstance(target, int) and 0 <= target < bundle.num_classes):
        return target_classes(bundle.model, x, target, y)[0]
    raise UsageError(f"target = {target!r}: allowed: 'predicted', 'label', a class index in "
                     f"0..{bundle.num_classes - 1}, or a tensor of classes")


def score(model: ModelBundle | nn.Module, x: torch.Tensor, *, layers: str | list[str] | None = None,
          methods: list[str] | tuple[str, ...] = ("conductance",), baseline: str | torch.Tensor = "zero",
          target: Any = "predicted", y: torch.Tensor | None = None, train: torch.Tensor | None = None,
          units: str | dict[str, str] = "auto", **attribution: Any) -> Scores:
    """Scores of every (layer, method) for inputs x [B, ...]; `.to_frame()` gives the tidy table.

    units: what a unit is (auto | channel | feature | token, or layer -> axis; the config's `units:`): auto takes
    channels of conv maps and features of [batch, tokens, features] and dense layers.
    baseline: 'zero', 'blur', 'mean' (per-channel mean of x) or a tensor; target: 'predicted', 'label' (with
    y), a class index or a tensor [B]; attribution: n_steps, rule, step_chunk, delta_tolerance, lrp_epsilon,
    lrp_gamma, random_seed, shapley_permutations, shapley_truncation, shapley_ablation (the `attribution:`
    section of a config). Methods that need dataset statistics (ablation_mean, selectivity, shapley under
    mean ablation) take them from `train` (inputs) and `y` (labels), default x.
    """
    from neuronimp.config import AttributionCfg

    bundle = _bundle(model, x)
    params = _validated(AttributionCfg, attribution, "attribution").params()
    names = _layers(bundle, layers)
    choice = _validated_units(bundle, units, names)
    t = _target(bundle, x, target, y)
    base = baseline.to(x) if isinstance(baseline, torch.Tensor) else make_baseline(
        baseline, x, x.mean(dim=[d for d in range(x.dim()) if d != 1]) if baseline == "mean" else None)
    stats = None
    if needs_stats(list(methods), params):
        ref_x = train if train is not None else x
        ref_y = torch.as_tensor(y if y is not None else _target(bundle, ref_x, "predicted", None))
        if ref_y.shape != (ref_x.shape[0],) or not (0 <= int(ref_y.min()) and int(ref_y.max()) < bundle.num_classes):
            raise UsageError(f"y: the labels of the {'train' if train is not None else 'x'} inputs, one class in "
                             f"0..{bundle.num_classes - 1} per input ({ref_x.shape[0]}), got shape "
                             f"{tuple(ref_y.shape)} and values {int(ref_y.min())}..{int(ref_y.max())}")
        stats = layer_statistics(bundle.model, [(ref_x, torch.as_tensor(ref_y).long())], names, bundle.num_classes,
                                 choice)
    ids = torch.arange(x.shape[0])
    s = compute_scores(bundle.model, x, base, t, names, list(methods), params, ids=ids, stats=stats, units=choice)
    import warnings

    for msg in delta_warnings(s, params):
        warnings.warn(msg, stacklevel=2)
    return s


def _validated_units(bundle: ModelBundle, units: str | dict[str, str], layers: list[str]) -> str | dict[str, str]:
    """`units` checked as the config's `units:` is, layer names resolved to module paths."""
    from neuronimp.methods.units import check_choice

    if isinstance(units, str):
        return check_choice(units)
    out = {}
    for name, axis in units.items():
        path = resolve_layer(bundle, name)
        if path not in layers:
            raise UsageError(f"units: layer {name!r} is not among the scored layers ({', '.join(layers)})")
        out[path] = check_choice(axis, f"units of layer {name!r}")
    return out


def _validated(section: type, values: dict[str, Any], where: str) -> Any:
    """A config section from keyword arguments; a bad key or value is a one-line UsageError."""
    from pydantic import ValidationError

    from neuronimp.config import _describe

    try:
        return section.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        err = {**err, "loc": (where, *err["loc"])}
        raise UsageError(_describe(err, "neuronimp")) from None


def _context(bundle: ModelBundle, x: torch.Tensor, y: torch.Tensor | None, tree: dict[str, Any],
             train: tuple[torch.Tensor, torch.Tensor] | None = None, class_names: list[str] | None = None) -> Any:
    """A run context over in-memory tensors: x (and labels y, default the predictions) as the test split."""
    from neuronimp.config import build_config
    from neuronimp.runner.context import Context

    cfg = build_config(tree, "neuronimp")
    model = bundle.model
    if y is None:
        with torch.no_grad():
            y = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)]) if len(x) else \
                torch.zeros(0, dtype=torch.long)
    test = TensorData(x.detach(), torch.as_tensor(y).long().cpu())
    tr = TensorData(train[0].detach(), torch.as_tensor(train[1]).long().cpu()) if train is not None else test
    names = class_names or [str(c) for c in range(bundle.num_classes)]
    data = DataBundle(tr, test, bundle.num_classes, names, None, tuple(x.shape[1:]))
    return Context(cfg, bundle, data, x.device, x.dtype, Path("."), verbose=False)


def _study_tree(layers: list[str], methods: list[str] | tuple[str, ...], attribution: dict[str, Any],
                section: str, options: dict[str, Any], batch_size: int, seed: int,
                units: str | dict[str, str] = "auto") -> dict[str, Any]:
    return {"seed": seed, "layers": layers, "methods": list(methods), "attribution": attribution,
            section: options, "runner": {"batch_size": batch_size, "progress": False}, "units": units}


def ablate(model: ModelBundle | nn.Module, x: torch.Tensor, *, layer: str | list[str] | None = None,
           methods: list[str] | tuple[str, ...] = ("conductance",), y: torch.Tensor | None = None,
           attribution: dict[str, Any] | None = None, batch_size: int = 32, seed: int = 0,
           train: tuple[torch.Tensor, torch.Tensor] | None = None, units: str | dict[str, str] = "auto",
           **options: Any) -> pd.DataFrame:
    """Study 1 on inputs x: the rows `neuronimp ablate` writes (ablate.csv), one per (input, layer, method,
    draw, ablation). options: the `ablate:` section (ablation, max_k, random_draws, record_logits, ...);
    attribution: the `attribution:` section (baseline, target, n_steps, rule, ...); units: as in `score`. Mean
    ablation and statistics-based orders read `train` = (inputs, labels), default (x, y)."""
    bundle = _bundle(model, x)
    tree = _study_tree(_layers(bundle, layer), methods, attribution or {}, "ablate", options, batch_size, seed, units)
    return _run("ablate", _context(bundle, x, y, tree, train)).tables["ablate"]


def select(model: ModelBundle | nn.Module, x: torch.Tensor, y: torch.Tensor, *, layer: str | list[str] | None = None,
           methods: list[str] | tuple[str, ...] = ("conductance",), attribution: dict[str, Any] | None = None,
           batch_size: int = 32, seed: int = 0, class_names: list[str] | None = None,
           units: str | dict[str, str] = "auto", **options: Any) -> pd.DataFrame:
    """Study 3 on labelled inputs (x, y): the rows `neuronimp select` writes (select.csv). options: the
    `select:` section (classes, per_class, select_per_class, ks, draws, splits, ...); units: as in `score`."""
    bundle = _bundle(model, x)
    tree = _study_tree(_layers(bundle, layer), methods, attribution or {}, "select", options, batch_size, seed, units)
    return _run("select", _context(bundle, x, y, tree, class_names=class_names)).tables["select"]


def run(study: str, config: str | Path | dict[str, Any], overrides: list[str] | None = None,
        write: bool = False) -> dict[str, pd.DataFrame]:
    """Any registered study for a config (a YAML path or a mapping) with `--set`-style overrides: every table
    of the run, in memory (write=True also writes them to runner.out, as the CLI does)."""
    from neuronimp.config import build_config, check_names, load_config
    from neuronimp.runner.context import build_context

    if isinstance(config, dict):
        import yaml

        from neuronimp.config import _set_dotted, parse_overrides

        tree = copy.deepcopy(config)
        for key, value in parse_overrides(overrides):
            _set_dotted(tree, key, yaml.safe_load(yaml.safe_dump(value)))
        cfg = build_config(tree, "neuronimp")
        check_names(cfg, "neuronimp")
    else:
        cfg = load_config(config, overrides)
    ctx = build_context(cfg)
    ctx.verbose = write
    return _run(study, ctx, write=write).tables


def delete(config: str | Path | dict[str, Any], overrides: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Study 2 (trains its networks): every table `neuronimp delete` writes, in memory (see `run`)."""
    return run("delete", config, overrides)


def _run(study: str, ctx: Any, write: bool = False) -> Any:
    from neuronimp.runner.driver import run_study

    return run_study(study, ctx, write=write, show=False)
