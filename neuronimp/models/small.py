"""Small nets for 8x8 digits (sklearn) and 28x28 MNIST / Fashion-MNIST: fast on CPU, every ReLU its own module.

`mnist_mlp` is the setup of Morcos et al. (2018), "On the importance of single directions for
generalization": a 2-hidden-layer ReLU MLP on MNIST whose hidden units are ablated one by one.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from neuronimp.errors import UsageError
from neuronimp.models.bundle import MODELS, ModelBundle
from neuronimp.models.weights import load_weights

DIGITS_SHAPE = (1, 8, 8)
MNIST_SHAPE = (1, 28, 28)


def _positive(name: str, value: int) -> int:
    """`value` if it is a positive int, else UsageError."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"option {name} must be a positive integer, got {value!r}")
    return value


def mlp(in_features: int, width: int, num_classes: int) -> nn.Sequential:
    """flatten -> fc1 -> relu1 -> fc2 -> relu2 -> fc3: two hidden ReLU layers of `width` units."""
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),                   # N x in_features
        ("fc1", nn.Linear(in_features, width)),
        ("relu1", nn.ReLU()),                        # N x width
        ("fc2", nn.Linear(width, width)),
        ("relu2", nn.ReLU()),                        # N x width
        ("fc3", nn.Linear(width, num_classes)),      # N x num_classes
    ]))


def digits_cnn_net(num_classes: int = 10) -> nn.Sequential:
    """Two 3x3 convs (16, 32 channels) on 8x8 digits, max-pool, fc 64, fc num_classes."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)),   # N x 16 x 8 x 8
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)),  # N x 32 x 8 x 8
        ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),                   # N x 32 x 4 x 4
        ("flatten", nn.Flatten()),                   # N x 512
        ("fc1", nn.Linear(32 * 4 * 4, 64)),
        ("relu3", nn.ReLU()),                        # N x 64
        ("fc2", nn.Linear(64, num_classes)),         # N x num_classes
    ]))


def mnist_cnn_net(num_classes: int = 10, dropout: float = 0.5) -> nn.Sequential:
    """conv32-bn-relu-pool, conv64-bn-relu-pool, fc 128, dropout, fc num_classes on 28x28 inputs."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 32, 3, padding=1)),   # N x 32 x 28 x 28
        ("bn1", nn.BatchNorm2d(32)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),                  # N x 32 x 14 x 14
        ("conv2", nn.Conv2d(32, 64, 3, padding=1)),  # N x 64 x 14 x 14
        ("bn2", nn.BatchNorm2d(64)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),                  # N x 64 x 7 x 7
        ("flatten", nn.Flatten()),                   # N x 3136
        ("fc1", nn.Linear(64 * 7 * 7, 128)),
        ("relu3", nn.ReLU()),                        # N x 128
        ("dropout", nn.Dropout(dropout)),
        ("fc2", nn.Linear(128, num_classes)),        # N x num_classes
    ]))


def _bundle(model: nn.Module, name: str, weights: str, num_classes: int, shape: tuple[int, ...],
            default_layer: str) -> ModelBundle:
    """Load weights and wrap a small net (no aliases, no image transform: data loaders give tensors)."""
    load_weights(model, weights, None, name=name)
    return ModelBundle(model=model, name=name, num_classes=num_classes, input_shape=shape,
                       default_layer=default_layer)


@MODELS.register("digits_mlp")
def digits_mlp(weights: str = "none", num_classes: int | None = None, width: int = 64) -> ModelBundle:
    """MLP 64-width-width-10 for 8x8 digits; default layer relu2."""
    n = _positive("num_classes", num_classes or 10)
    return _bundle(mlp(64, _positive("width", width), n), "digits_mlp", weights, n, DIGITS_SHAPE, "relu2")


@MODELS.register("digits_cnn")
def digits_cnn(weights: str = "none", num_classes: int | None = None) -> ModelBundle:
    """Small CNN (conv16, conv32, fc64) for 8x8 digits; default layer relu2 (last conv)."""
    n = _positive("num_classes", num_classes or 10)
    return _bundle(digits_cnn_net(n), "digits_cnn", weights, n, DIGITS_SHAPE, "relu2")


@MODELS.register("mnist_mlp")
def mnist_mlp(weights: str = "none", num_classes: int | None = None, width: int = 512) -> ModelBundle:
    """MLP 784-width-width-10 for 28x28 MNIST (Morcos et al. 2018); default layer relu2."""
    n = _positive("num_classes", num_classes or 10)
    return _bundle(mlp(28 * 28, _positive("width", width), n), "mnist_mlp", weights, n, MNIST_SHAPE, "relu2")


@MODELS.register("mnist_cnn")
def mnist_cnn(weights: str = "none", num_classes: int | None = None, dropout: float = 0.5) -> ModelBundle:
    """CNN with batch norm (conv32, conv64, fc128) for 28x28 MNIST; default layer relu2 (last conv)."""
    n = _positive("num_classes", num_classes or 10)
    if not 0.0 <= dropout < 1.0:
        raise UsageError(f"option dropout must be in [0, 1), got {dropout!r}")
    return _bundle(mnist_cnn_net(n, dropout), "mnist_cnn", weights, n, MNIST_SHAPE, "relu2")
