"""Checks made before any work starts, each failure one line (UsageError).

`check_config(cfg, source)` is what `neuronimp validate` adds to loading a config: the device is available,
the model builds (weights "none", on PyTorch's "meta" device, so no memory is touched and no checkpoint or
data set is read), every configured layer resolves, reaches the forward pass and has units, and an integer
`attribution.target` is one of the model's classes when the class count is known without loading the data.
A user model (`user:package.module:function`) is not imported by `validate`: it is checked when a run builds it.

`check_context(ctx)` is what every run checks once its model and data are loaded (`build_context`): the same
layer and target checks on the real model, finite weights, and the first input's shape against the model's.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

from neuronimp.errors import UsageError, shown
from neuronimp.models import ModelBundle, create_model, resolve_layer
from neuronimp.models.canonical import evaluating
from neuronimp.models.layers import layer_shapes

# class counts of the data sets that have a fixed one: `validate` checks an integer target without loading them
KNOWN_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "mr": 2, "sst2": 2}


def check_target(target: Any, num_classes: int, model: str, where: str = "attribution.target") -> None:
    """An integer target must be a class of the model: 0..num_classes-1."""
    if isinstance(target, bool) or not isinstance(target, int):
        return  # "predicted" | "label"
    if not 0 <= target < num_classes:
        raise UsageError(f"{where} = {target}: model {model!r} has {num_classes} classes; allowed: predicted, "
                         f"label, or a class index 0..{num_classes - 1}")


def check_layers(bundle: ModelBundle, names: list[str], where: str = "layers") -> list[str]:
    """Resolve `names` (aliases or module paths; empty: the default layer) and check that each one is reached
    by the forward pass and has units; the module paths, or UsageError naming the first bad layer."""
    names = list(names) or [bundle.default_layer]
    paths = []
    for n in names:
        try:
            paths.append(resolve_layer(bundle, n))
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None
    try:
        shapes, _ = layer_shapes(bundle, paths)
    except UsageError:
        raise
    except Exception as err:  # noqa: BLE001 - a model that cannot run on a zero input: one line
        text = " ".join(str(err).split())[:160]
        raise UsageError(f"model {bundle.name!r} fails on a zero input of shape {tuple(bundle.input_shape)} "
                         f"({type(err).__name__}: {text})") from None
    for name, path in zip(names, paths):
        if path not in shapes:
            raise UsageError(f"{where}: layer {shown(name)} of model {bundle.name!r} is never reached by the "
                             "forward pass (in eval mode, e.g. an auxiliary head): its units cannot be scored")
        shape = shapes[path]
        if not shape or math.prod(shape) == 0:  # a scalar per input, or a zero-size output
            raise UsageError(f"{where}: layer {shown(name)} of model {bundle.name!r} has no units (output shape "
                             f"{list(shape)}); choose a layer with units (neuronimp layers {bundle.name})")
    return paths


def _structure_options(cfg: Any) -> dict[str, Any] | None:
    """The model options `validate` builds with: the configured ones, plus a placeholder vocabulary size for
    a text model whose vocabulary comes from the data (the layers do not depend on it). None: a user model,
    which validate does not import."""
    from neuronimp.models import MODELS
    from neuronimp.models.timm_models import TIMM_PREFIX

    name = cfg.model.name
    opts = dict(cfg.model.options)
    if ":" in name:
        return None
    if name.startswith(TIMM_PREFIX):
        return opts
    params = inspect.signature(MODELS.get(name)).parameters
    if "vocab_size" in params and "vocab" not in opts and "vocab_size" not in opts:
        opts["vocab_size"] = 2
    return opts


def build_structure(cfg: Any, num_classes: int | None) -> ModelBundle | None:
    """The configured model with weights "none", built on the meta device when it can be (no memory, no
    initialisation), else on the CPU; None for a user model (not imported by validate)."""
    opts = _structure_options(cfg)
    if opts is None:
        return None
    try:
        with torch.device("meta"):
            return create_model(cfg.model.name, weights="none", num_classes=num_classes, **opts)
    except UsageError:
        raise
    except Exception:  # noqa: BLE001 - some models need real tensors while they are built: build them for real
        return create_model(cfg.model.name, weights="none", num_classes=num_classes, **opts)


def check_config(cfg: Any, source: str, device: bool = True) -> None:
    """What `validate` checks beyond the config's keys and names: device, layers, target (module docstring).

    `device=False` leaves the device to the machine that runs (`--launcher slurm` submits from a login node).
    """
    from neuronimp.data import DATASETS
    from neuronimp.runner.context import pick_device

    try:
        if device:
            pick_device(cfg.runner.device)
    except UsageError as err:
        raise UsageError(f"{source}: {err}") from None
    data = DATASETS.canonical(cfg.data.name)
    num_classes = KNOWN_CLASSES.get(data) if data != "imagenet_folder" else None
    try:
        bundle = build_structure(cfg, num_classes)
    except UsageError as err:
        named = str(err).startswith("model") or cfg.model.name in str(err)
        raise UsageError(f"{source}: {err}" if named else f"{source}: model {cfg.model.name!r}: {err}") from None
    if bundle is None:
        return
    check_layers(bundle, cfg.layers, where=f"{source}: layers")
    try:
        check_baseline(cfg.attribution.baseline, bundle)
    except UsageError as err:
        raise UsageError(f"{source}: {err}") from None
    if data == "imagenet_folder" or num_classes is not None:  # the class count a run would give the model
        check_target(cfg.attribution.target, bundle.num_classes, bundle.name, f"{source}: attribution.target")


def check_baseline(kind: str, bundle: ModelBundle) -> None:
    """A baseline tensor file must broadcast to one input of the model (its read checks finiteness)."""
    if kind in ("zero", "mean", "blur"):
        return
    from neuronimp.methods.baselines import read_baseline_file

    t = read_baseline_file(kind)
    want = tuple(bundle.input_shape)
    try:
        shape = torch.broadcast_shapes(tuple(t.shape), (1, *want))
    except RuntimeError:
        shape = None
    if shape is None or tuple(shape[-len(want):]) != want or math.prod(shape) != math.prod(want):
        raise UsageError(f"attribution.baseline: baseline file {kind} has shape {tuple(t.shape)}; model "
                         f"{bundle.name!r} takes inputs of shape {want} (a baseline broadcasts to one input)")


def check_weights(bundle: ModelBundle) -> None:
    """Refuse a model whose parameters or buffers hold NaN or inf (from any source: checkpoint, factory)."""
    from neuronimp.checkpoints import non_finite

    modules = {"": bundle.model} if bundle.embed is None else {"embed.": bundle.embed, "": bundle.model}
    for prefix, module in modules.items():
        bad = non_finite(module.state_dict())
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise UsageError(f"model {bundle.name!r}: weight {prefix}{bad[0]}{more} holds NaN or inf; non-finite "
                             "weights give meaningless scores: retrain the model or use another checkpoint")


def check_input(bundle: ModelBundle, x0: Any, data: str) -> None:
    """The first input of the data against the model's input shape: one line when the model cannot take it
    (an RGB image folder for a 1-channel model, 28x28 images for an 8x8 model ...)."""
    if bundle.embed is not None or not isinstance(x0, torch.Tensor):
        return  # token ids go through the embedding
    got, want = tuple(x0.shape), tuple(bundle.input_shape)
    if got == want:
        return
    problem = f"inputs of data set {data!r} have shape {list(got)} but model {bundle.name!r} takes {list(want)}"
    if len(got) != len(want) or (len(want) >= 3 and got[0] != want[0]):
        what = f" ({got[0]} channels, the model {want[0]})" if len(got) == len(want) else ""
        raise UsageError(problem + what + "; choose a model made for this data (or data for this model)")
    param = next(iter(bundle.model.parameters()), None)
    try:
        with torch.no_grad(), evaluating(bundle.model):
            x = x0[None].to(param.device if param is not None else "cpu",
                            param.dtype if param is not None and param.is_floating_point() else torch.float32)
            bundle.model(x)
    except Exception as err:  # noqa: BLE001 - e.g. a flattening MLP given larger images
        raise UsageError(f"{problem}, and fails on them ({type(err).__name__}); choose a model made for this "
                         "data (or data for this model)") from None


def check_context(ctx: Any) -> None:
    """What every run checks once its model and data are loaded (module docstring)."""
    cfg = ctx.cfg
    check_weights(ctx.bundle)
    check_layers(ctx.bundle, cfg.layers)
    check_target(cfg.attribution.target, ctx.bundle.num_classes, ctx.bundle.name)
    check_baseline(cfg.attribution.baseline, ctx.bundle)
    if ctx.data is not None:
        ds = ctx.split()
        if len(ds):
            check_input(ctx.bundle, ds[0][0], cfg.data.name)
