"""Weights: "none" (random init), "imagenet" (online pretrained) or a local tensors-only checkpoint."""
from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from neuronimp.checkpoints import non_finite, verify_checkpoint
from neuronimp.errors import UsageError

T = TypeVar("T")
StateSource = Callable[[], Mapping[str, torch.Tensor]]


def _one_line(err: BaseException, limit: int = 200) -> str:
    """An exception as one short line: 'Type: message'."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}" if text else type(err).__name__


def fetch(name: str, download: Callable[[], T]) -> T:
    """Run an online download of pretrained weights; a failure becomes a one-line UsageError."""
    try:
        return download()
    except Exception as err:  # network, hash or hub errors all mean the same to the user
        raise UsageError(f"'imagenet' weights for model {name!r} could not be fetched ({_one_line(err)}); "
                         "download them where there is internet, save model.state_dict() with torch.save, "
                         "and pass the local checkpoint path as weights") from err


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a tensors-only checkpoint (weights_only=True) and return its state dict."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UsageError(f"checkpoint {str(path)!r} {what}; weights must be 'none', 'imagenet' or a checkpoint file")
    verify_checkpoint(path)  # size + SHA-256 against its sidecar, when `save_checkpoint` wrote one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's multi-line notes (pickle protocol ...): the error says enough
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        code = found.group(1) if found else pickled_code(path)
        if code is not None or "Unsupported global" in str(err):
            what = f" ({code})" if code else ""
            raise UsageError(f"checkpoint {str(path)!r} carries code (pickled objects{what}); neuronimp loads "
                             "only tensors (weights_only=True) and never runs it: save model.state_dict() with "
                             "torch.save instead") from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.S)
        why = " ".join(detail.group(1).split())[:120] if detail else _one_line(err, 120)
        raise UsageError(f"checkpoint {str(path)!r} is corrupt or truncated, or not a torch checkpoint "
                         f"(unpickling failed: {why}); save model.state_dict() with torch.save") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UsageError(f"checkpoint {str(path)!r} is corrupt or truncated: {_one_line(err, 120)}") from None
    state = unwrap_state_dict(obj, str(path))
    bad = non_finite(state)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(f"checkpoint {str(path)!r}: tensor {bad[0]}{more} holds NaN or inf; a model with "
                         "non-finite weights gives meaningless scores: retrain it or use another checkpoint")
    return state


def pickled_code(path: Path) -> str | None:
    """The first global (module.name) a plain pickle file would import, read without running anything
    (pickletools only lists opcodes); None when it imports none or is not a pickle at all."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as fh:
            for op, arg, _ in pickletools.genops(fh):
                if op.name == "GLOBAL" and isinstance(arg, str):
                    return arg.replace(" ", ".")
                if op.name == "STACK_GLOBAL":
                    return ".".join(strings[-2:]) if len(strings) >= 2 else "a global"
                if op.name in ("INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"):
                    return str(arg).replace(" ", ".") if op.name == "INST" else "an object"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - not a pickle (or a truncated one): nothing to name
        return None
    return None


def unwrap_state_dict(obj: object, where: str) -> dict[str, torch.Tensor]:
    """Accept a raw state dict or {"state_dict": ...} / {"model": ...}; strip a DataParallel 'module.' prefix."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"checkpoint {where!r} is not a state dict (name -> tensor), nor a dict holding one "
                         "under 'model' or 'state_dict'")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _listed(keys: list[str], n: int = 5) -> str:
    """First `n` keys, comma-separated, with the total when there are more."""
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], where: str, name: str) -> None:
    """Raise UsageError naming the first missing/unexpected/mis-shaped keys when `state` does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch (checkpoint vs model) {_listed(shapes, 3)}")
    if problems:
        raise UsageError(f"checkpoint {where!r} does not fit model {name!r}: " + "; ".join(problems))


def load_weights(model: nn.Module, weights: str, source: StateSource | None = None, *, name: str = "model",
                 ignore: tuple[str, ...] = ()) -> nn.Module:
    """Load `weights` ("none" | "imagenet" | checkpoint path) into `model`; keys starting with `ignore` are dropped.

    `source` downloads the pretrained state dict for "imagenet" (None: the model has none).
    """
    if weights == "none":
        return model
    if weights == "imagenet":
        if source is None:
            raise UsageError(f"model {name!r} has no 'imagenet' weights; use weights 'none' or a checkpoint path")
        state, where = dict(fetch(name, source)), "imagenet"
    else:
        state, where = read_checkpoint(weights), str(weights)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)} if ignore else state
    check_fit(model, state, where, name)
    model.load_state_dict(state, strict=True)
    return model
