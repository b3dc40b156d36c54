"""timm models: any `timm/<name>`, and timm's Inception v3 with the torchvision paper aliases.

timm builds activations as modules (ConvNormAct -> BatchNormAct2d.act) but with `inplace=True`;
`canonicalise` turns that off. timm's Inception v3 pools inside its blocks with `F.avg_pool2d`/`F.max_pool2d`;
`timm_model` swaps those blocks for subclasses that own pool modules (`timm_inception_blocks.py`), so hooks
and DeepLIFT's max-pool rule see them. Functional ops inside other timm models stay invisible to hooks;
`create_model` refuses models that call one activation twice.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from neuronimp.errors import UsageError, unknown
from neuronimp.models.bundle import MODELS, ModelBundle
from neuronimp.models.inception_v3 import V3_ALIASES
from neuronimp.models.weights import fetch, load_weights

TIMM_PREFIX = "timm/"


def _create(name: str, weights: str, num_classes: int | None, options: dict[str, Any]) -> nn.Module:
    """timm.create_model, pretrained when weights == "imagenet", else loaded from `weights`."""
    import timm

    if not timm.is_model(name):
        raise unknown("timm model", name, timm.list_models(), where="model")
    kwargs = dict(options) | ({"num_classes": num_classes} if num_classes is not None else {})
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as err:
        raise UsageError(f"bad option for model {TIMM_PREFIX}{name}: {err}") from err
    if weights == "imagenet":  # built once more, with timm's own download, cache and head adaptation
        return fetch(f"{TIMM_PREFIX}{name}", lambda: timm.create_model(name, pretrained=True, **kwargs))
    return load_weights(model, weights, None, name=f"{TIMM_PREFIX}{name}")


def _canonical_blocks(model: nn.Module) -> nn.Module:
    """`model` with timm's functional-pool Inception v3 blocks swapped for ours (same weights); others as is."""
    from timm.models.inception_v3 import InceptionV3

    if not isinstance(model, InceptionV3):
        return model
    from neuronimp.models.timm_inception_blocks import canonical_inception_v3

    return canonical_inception_v3(model)


def input_shape_of(model: nn.Module) -> tuple[int, ...]:
    """The input shape the model was built for: its patch embedding's image size when it has one (a ViT built with
    option img_size runs at that size, while its pretrained config still says 224), else the pretrained config's."""
    shape = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    embed = getattr(model, "patch_embed", None)  # ViT, DeiT, Swin ...; MLP-Mixer calls it `stem`
    if embed is None:
        embed = next((m for m in model.modules() if "PatchEmbed" in type(m).__name__), None)
    size = getattr(embed, "img_size", None)
    if size is not None:  # timm's PatchEmbed: img_size (H, W), its conv `proj` reads in_chans channels
        chans = getattr(getattr(embed, "proj", None), "in_channels", shape[0])
        shape = (int(chans), *(int(s) for s in size))
    return shape


def timm_transform(model: nn.Module, shape: tuple[int, ...] | None = None) -> Any:
    """timm's own eval preprocessing for `model` (resize, center crop, normalise by its pretrained config), at the
    input `shape` the model was built for."""
    import timm.data

    config = timm.data.resolve_model_data_config(model, args={"input_size": shape} if shape else None)
    return timm.data.create_transform(**config, is_training=False)


def default_layer_of(model: nn.Module) -> str:
    """The deepest feature stage timm reports (feature_info), else the last top-level child before the head."""
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1]
        return last["module"] if isinstance(last, dict) else str(last)
    children = [n for n, _ in model.named_children()]
    return children[-2] if len(children) > 1 else (children[0] if children else "")


def timm_model(name: str, weights: str = "none", num_classes: int | None = None, **options: Any) -> ModelBundle:
    """Any timm model by name (`timm/<name>`); options go to timm.create_model."""
    model = _canonical_blocks(_create(name, weights, num_classes, options))
    shape = input_shape_of(model)
    return ModelBundle(model=model, name=f"{TIMM_PREFIX}{name}", num_classes=model.num_classes,
                       input_shape=shape, layer_aliases={}, default_layer=default_layer_of(model),
                       transform=timm_transform(model, shape))


@MODELS.register("inception_v3_timm")
def inception_v3_timm(weights: str = "none", num_classes: int | None = None, **options: Any) -> ModelBundle:
    """Inception v3 (timm, torchvision-ported weights, inputs normalised to [-1, 1]); default layer Mixed_6e."""
    bundle = timm_model("inception_v3", weights, num_classes, **options)
    bundle.name = "inception_v3_timm"
    bundle.layer_aliases = dict(V3_ALIASES)
    bundle.default_layer = "Mixed_6e"
    return bundle
