"""GoogLeNet (Inception v1, Szegedy et al. 2015), the network of the conductance paper (Dhamdhere et al. 2019).

torchvision's `BasicConv2d` ends in `F.relu(x, inplace=True)`, invisible to module hooks and to DeepLIFT's
rules; our drop-in `BasicConv2d` owns an `nn.ReLU(inplace=False)` and keeps the state-dict keys
(conv.weight, bn.*), so torchvision's ImageNet weights load unchanged and outputs are identical. Our
`Inception` block (googlenet_blocks.py) gives its max-pool branch its own copy of the block input.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import Tensor, nn

from neuronimp.models.bundle import MODELS, ModelBundle
from neuronimp.models.weights import load_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper names (Szegedy et al. Table 1; Lucid/conductance use "mixed4d") -> module paths.
GOOGLENET_ALIASES = {f"mixed{b}": f"inception{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}
GOOGLENET_AUX = ("aux1.", "aux2.")  # aux heads are off; their keys in checkpoints are dropped


class BasicConv2d(nn.Module):
    """conv -> batch norm -> ReLU, with the ReLU as its own non-in-place module (torchvision keys)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        """N x C_in x H x W -> N x C_out x H' x W'."""
        return self.relu(self.bn(self.conv(x)))


def imagenet_transform(resize: int = 256, crop: int = 224) -> Callable:
    """PIL image -> normalised tensor [3, crop, crop], as torchvision's ImageNet weights expect."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def build_googlenet(num_classes: int = 1000, transform_input: bool = False, dropout: float = 0.2) -> nn.Module:
    """torchvision's GoogLeNet with our BasicConv2d and Inception blocks, aux heads off (same keys, same outputs)."""
    from torchvision.models.googlenet import GoogLeNet, InceptionAux

    from neuronimp.models.googlenet_blocks import Inception

    # GoogLeNet passes `blocks[0]` to its stem only; the Inception blocks need conv_block explicitly.
    inception = partial(Inception, conv_block=BasicConv2d)
    model = GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=transform_input,
                      init_weights=True, blocks=[BasicConv2d, inception, InceptionAux], dropout=dropout)
    assert_replaced(model)
    return model


def assert_replaced(model: nn.Module) -> None:
    """Assert that no conv block with a functional ReLU is left (every BasicConv2d is ours)."""
    stale = [n for n, m in model.named_modules() if type(m).__name__ == "BasicConv2d" and type(m) is not BasicConv2d]
    assert not stale, f"torchvision BasicConv2d left at {stale[:3]}"


@MODELS.register("googlenet", aliases=("inception_v1",))
def googlenet(weights: str = "none", num_classes: int | None = None, transform_input: bool | None = None,
              dropout: float = 0.2) -> ModelBundle:
    """GoogLeNet / Inception v1 (torchvision), 224x224 input; default layer inception4d (mixed4d)."""
    from torchvision.models import GoogLeNet_Weights

    # torchvision turns transform_input on with its ImageNet weights (they were ported from Caffe and expect
    # inputs in [-1, 1]); pass transform_input=True for a local copy of those weights.
    if transform_input is None:
        transform_input = weights == "imagenet"
    model = build_googlenet(num_classes or 1000, transform_input, dropout)
    source = lambda: GoogLeNet_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)  # noqa: E731
    load_weights(model, weights, source, name="googlenet", ignore=GOOGLENET_AUX)
    return ModelBundle(model=model, name="googlenet", num_classes=num_classes or 1000, input_shape=(3, 224, 224),
                       layer_aliases=dict(GOOGLENET_ALIASES), default_layer="inception4d",
                       transform=imagenet_transform(256, 224))
