"""Inception v3 (Szegedy et al. 2016) from torchvision, in canonical form (see inception_v3_blocks.py)."""
from __future__ import annotations

from torch import nn

from neuronimp.models.bundle import MODELS, ModelBundle
from neuronimp.models.inception import assert_replaced, imagenet_transform
from neuronimp.models.weights import load_weights

# Paper/TF names -> torchvision module paths: mixed5b -> Mixed_5b ... mixed7c -> Mixed_7c.
V3_BLOCKS = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")
V3_ALIASES = {f"mixed{b}": f"Mixed_{b}" for b in V3_BLOCKS}


def build_inception_v3(num_classes: int = 1000, transform_input: bool = False, dropout: float = 0.5) -> nn.Module:
    """torchvision's Inception3 in canonical form, aux head off (same keys, same outputs)."""
    from torchvision.models.inception import Inception3

    from neuronimp.models.inception_v3_blocks import BLOCKS

    model = Inception3(num_classes=num_classes, aux_logits=False, transform_input=transform_input,
                       inception_blocks=list(BLOCKS), init_weights=True, dropout=dropout)
    assert_replaced(model)
    return model


@MODELS.register("inception_v3_tv", aliases=("inception_v3",))
def inception_v3_tv(weights: str = "none", num_classes: int | None = None, transform_input: bool | None = None,
                    dropout: float = 0.5) -> ModelBundle:
    """Inception v3 (torchvision), 299x299 input; default layer Mixed_6e (mixed6e)."""
    from torchvision.models import Inception_V3_Weights

    if transform_input is None:  # as torchvision: on with its ImageNet weights
        transform_input = weights == "imagenet"
    model = build_inception_v3(num_classes or 1000, transform_input, dropout)
    source = lambda: Inception_V3_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)  # noqa: E731
    load_weights(model, weights, source, name="inception_v3_tv", ignore=("AuxLogits.",))
    return ModelBundle(model=model, name="inception_v3_tv", num_classes=num_classes or 1000,
                       input_shape=(3, 299, 299), layer_aliases=dict(V3_ALIASES), default_layer="Mixed_6e",
                       transform=imagenet_transform(342, 299))
