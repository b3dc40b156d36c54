"""The model zoo: `create_model(name)` -> ModelBundle in eval mode and canonical form; layers by name or alias.

Names: the registered ones (`MODELS.names()`: googlenet, inception_v3_tv, inception_v3_timm, digits_mlp,
digits_cnn, mnist_mlp, mnist_cnn, kim_cnn), any timm model as `timm/<name>`, and a user model as
`user:package.module:function` (the older `package.module:function` still works; see models/user.py).
"""
from __future__ import annotations

import inspect
from typing import Any

from neuronimp.errors import UsageError
from neuronimp.models import inception, inception_v3, kim_cnn, small, timm_models  # noqa: F401  (register)
from neuronimp.models.bundle import MODELS, LayerInfo, ModelBundle, checkpoint_module
from neuronimp.models.canonical import canonicalise, split_call_sites
from neuronimp.models.layers import example_input, list_layers, resolve_layer
from neuronimp.models.timm_models import TIMM_PREFIX, timm_model
from neuronimp.models.user import announce_user_code, user_code_notice, user_model
from neuronimp.models.weights import load_weights

__all__ = ["MODELS", "LayerInfo", "ModelBundle", "canonicalise", "checkpoint_module", "create_model",
           "list_layers", "load_weights", "model_options", "resolve_layer", "announce_user_code",
           "user_code_notice"]


def model_options(data: Any, options: dict[str, Any]) -> dict[str, Any]:
    """A model's options completed from text data: `vocab` (sizes the embedding) and `max_len` (the padded
    sentence length); options given explicitly win. Image data (vocab None) leaves them unchanged."""
    opts = dict(options)
    if data is not None and getattr(data, "vocab", None) is not None:
        opts.setdefault("vocab", data.vocab)
        opts.setdefault("max_len", int(data.input_shape[0]))
    return opts


def _check_options(name: str, factory: Any, options: dict[str, Any]) -> None:
    """UsageError naming the allowed options when `factory` does not take `options`."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in ("weights", "num_classes")]
    bad = [k for k in options if k not in allowed]
    if bad:
        raise UsageError(f"model {name!r} takes no option {bad[0]!r}; allowed: {', '.join(allowed) or '(none)'}")


def create_model(name: str, weights: str = "none", num_classes: int | None = None, **options: Any) -> ModelBundle:
    """Build model `name` with `weights` ("none" | "imagenet" | checkpoint path), eval mode, canonical form."""
    if ":" in name:
        bundle, foreign = user_model(name, weights, num_classes, **options), True
    elif name.startswith(TIMM_PREFIX):
        bundle, foreign = timm_model(name[len(TIMM_PREFIX):], weights, num_classes, **options), True
    else:
        factory = MODELS.get(name, where="model")
        _check_options(name, factory, options)
        bundle, foreign = factory(weights=weights, num_classes=num_classes, **options), False
    canonicalise(bundle.model)
    bundle.model.eval()
    if bundle.embed is not None:
        canonicalise(bundle.embed)
        bundle.embed.eval()
    if foreign:  # code we did not write may call one activation module twice (e.g. torchvision's ResNet)
        bundle.model = split_call_sites(bundle.model, example_input(bundle), bundle.name).eval()
    return bundle
