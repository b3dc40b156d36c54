"""DeepLIFT rules swapped into Captum for the duration of one call: a max-pool rule whose unpool adds, and the
rescale rule for every element-wise activation Captum leaves out.

DeepLIFT (Shrikumar et al. 2017) through a max-pool: a window's change goes to the input that attains its max.
Captum's `deep_lift.maxpool` implements this but routes the contributions back with
`F.max_unpool{1,2,3}d`; hand-written here because of a Captum bug: F.max_unpool2d keeps one of two writes
when one input position is the max of two overlapping windows (3x3 stride 2 or stride 1 pools, as in
GoogLeNet and Inception v3), so one window's share is dropped and summation-to-delta fails. The rules below
are Captum's own `maxpool` with a scatter-add unpool; nothing else changes.

Captum gives its rescale rule (`deep_lift.nonlinear`: m = (f(x) - f(x')) / (x - x'), the gradient where
|x - x'| < eps; Shrikumar et al. 2017 sec. 3.5.1) only to ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus and
Softmax, and crosses any other activation by its plain gradient, so on SiLU / Hardswish / GELU networks the
contributions missed F(x) - F(x') by 11 % to 170 % (issue 13). The rescale rule holds for any element-wise
function of one input, so `deeplift_rules` hands Captum's own `nonlinear` to every other element-wise
activation type the model holds (`elementwise_activation`: torch's SiLU, Hardswish, Hardsigmoid, GELU, Mish,
ReLU6, Hardtanh, SELU, CELU, Softsign, ... and other libraries' classes by name, timm's GELU, Swish, HardSwish
...). Products of two functions of the input (squeeze-excitation gates: `deeplift_gates`; attention) are not
element-wise; attention stays without a rule and is named by `rules.deeplift_gaps`.

`SUPPORTED_NON_LINEAR` is Captum's module-level table (global state, like a hook): `adding_maxpool_rules`
patches it only inside a `with` block and restores it in `finally`, so plain Captum calls elsewhere are
unaffected. It is not thread-safe: do not run Captum DeepLIFT in another thread while the block is active.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


def _adding_unpool(module: nn.Module, dims: int) -> Callable[..., torch.Tensor]:
    """An unpool for `module` that sums every value routed to the same input position (max-pool indices).

    max_pool{1,2,3}d(..., return_indices=True) gives per-channel flat indices into the last `dims` input
    dimensions; scatter_add_ along those adds where F.max_unpool overwrites.
    """

    def unpool(g: torch.Tensor, idx: torch.Tensor, *_: object) -> torch.Tensor:
        size = module.input.shape  # set by Captum's forward pre-hook: N x C x *spatial (input and reference)
        flat = g.new_zeros(*size[:-dims], math.prod(size[-dims:]))
        return flat.scatter_add_(-1, idx.flatten(-dims), g.flatten(-dims)).view(size)

    return unpool


def _rule(pool: Callable[..., object], dims: int) -> Callable[..., torch.Tensor]:
    """Captum's DeepLIFT max-pool rule (`deep_lift.maxpool`) for `pool`, with the adding unpool."""

    def rule(module: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor, grad_input: torch.Tensor,
             grad_output: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        from captum.attr._core import deep_lift

        return deep_lift.maxpool(module, pool, _adding_unpool(module, dims), inputs, outputs, grad_input,
                                 grad_output, eps=eps)

    rule.__name__ = f"adding_maxpool{dims}d"
    rule.__doc__ = f"DeepLIFT max-pool rule for nn.MaxPool{dims}d whose unpool adds (Captum's drops overlaps)."
    return rule


adding_maxpool1d = _rule(F.max_pool1d, 1)
adding_maxpool2d = _rule(F.max_pool2d, 2)
adding_maxpool3d = _rule(F.max_pool3d, 3)
ADDING_RULES: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.MaxPool1d: adding_maxpool1d, nn.MaxPool2d: adding_maxpool2d, nn.MaxPool3d: adding_maxpool3d,
}


def _rescale(*args: object, **kwargs: object) -> torch.Tensor:
    """Captum's rescale rule `deep_lift.nonlinear` (imported on use: Captum loads only when DeepLIFT runs)."""
    from captum.attr._core import deep_lift

    return deep_lift.nonlinear(*args, **kwargs)


_NOT_ELEMENTWISE = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, nn.GLU, nn.MultiheadAttention)


def elementwise_activation(t: type) -> bool:
    """A module type that applies one function to each element: torch's activations but the softmaxes, GLU and
    attention, and other libraries' activation classes by name (timm's GELU, Swish, HardSwish ...:
    `models.canonical.is_activation`)."""
    from neuronimp.models.canonical import _ACT_NAMES

    if not (isinstance(t, type) and issubclass(t, nn.Module)) or issubclass(t, _NOT_ELEMENTWISE):
        return False
    return t.__module__ == nn.modules.activation.__name__ or t.__name__.lower() in _ACT_NAMES


@contextmanager
def adding_maxpool_rules() -> Iterator[None]:
    """While active, Captum's DeepLIFT uses the adding max-pool rules; the previous entries come back after."""
    with _patched(ADDING_RULES):
        yield


@contextmanager
def deeplift_rules(model: nn.Module) -> Iterator[None]:
    """While active, Captum's DeepLIFT uses the adding max-pool rules and the rescale rule on every element-wise
    activation type `model` holds that Captum has no rule for (module doc; matched by exact type, as Captum
    matches); the previous entries come back after."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    found = dict.fromkeys(type(m) for m in model.modules())
    rescale = {t: _rescale for t in found if elementwise_activation(t) and t not in SUPPORTED_NON_LINEAR}
    with _patched({**rescale, **ADDING_RULES}):
        yield


@contextmanager
def _patched(rules: dict[type[nn.Module], Callable[..., torch.Tensor]]) -> Iterator[None]:
    """Captum's SUPPORTED_NON_LINEAR with `rules` added while active, restored in `finally`."""
    from captum.attr._core import deep_lift

    table = deep_lift.SUPPORTED_NON_LINEAR
    missing = object()
    saved = {cls: table.get(cls, missing) for cls in rules}
    try:
        table.update(rules)
        yield
    finally:
        for cls, rule in saved.items():
            if rule is missing:
                table.pop(cls, None)
            else:
                table[cls] = rule


def _half_means(t: torch.Tensor) -> torch.Tensor:
    """[x; x'] (Captum runs inputs and baselines as one batch, inputs first) -> [(x + x')/2; (x + x')/2]."""
    b = t.shape[0] // 2
    m = (t[:b] + t[b:]) / 2
    return torch.cat([m, m]).detach()


@contextmanager
def deeplift_gates(model: nn.Module) -> Iterator[list[str]]:
    """While active, each squeeze-excitation block y = x * g(x) (class name matching `lrp_canonizers.GATES`) gets
    DeepLIFT's rule for products: Delta y = g_bar Delta x + x_bar Delta g with g_bar = (g + g')/2 and
    x_bar = (x + x')/2 (exact: the Shapley split of a two-factor product; Shrikumar et al. 2017, sec. 3.5.3,
    treats gates this way). Done as forward hooks: the block's output keeps its value, its gradient to x
    becomes g_bar and to g becomes x_bar; g is the output of the last module called inside the block (timm's
    `gate`, torchvision's `scale_activation`). A block that does not compute x * g is refused. Yields the
    class names of the blocks; hooks removed in `finally`. Only for Captum's DeepLIFT (batch = [inputs;
    baselines]).
    """
    from neuronimp.errors import UsageError
    from neuronimp.methods.lrp_canonizers import GATES

    gates = [(n, m) for n, m in model.named_modules() if GATES.search(type(m).__name__)]
    last: dict[int, torch.Tensor] = {}
    handles = []

    def inner(block: nn.Module) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                last[id(block)] = out
        return hook

    def outer(name: str) -> Callable[..., torch.Tensor]:
        def hook(block: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            x, g = inputs[0], last.pop(id(block), None)
            if g is None or x.shape[0] % 2 or not torch.allclose(out, x * g, rtol=1e-5, atol=1e-6 * float(
                    out.detach().abs().max().clamp(min=1e-30))):
                raise UsageError(f"deeplift: module {name} ({type(block).__name__}) does not compute x * gate(x) "
                                 "with the gate as its last submodule, so DeepLIFT has no rule for it; use "
                                 "conductance or layer_ig on this network")
            gb, xb = _half_means(g), _half_means(x)
            return (x * g).detach() + (x * gb + xb * g) - (x * gb + xb * g).detach()
        return hook

    try:
        for name, block in gates:
            for sub in block.modules():
                if sub is not block:
                    handles.append(sub.register_forward_hook(inner(block)))
            handles.append(block.register_forward_hook(outer(name)))
        yield sorted({type(m).__name__ for _, m in gates})
    finally:
        for h in handles:
            h.remove()
