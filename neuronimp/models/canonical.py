"""Canonical form of a network: no in-place ops, one activation/pool module per call site.

Why: DeepLIFT and LRP (Captum, zennit) attach their rules to activation and pooling *modules*, and
per-layer hooks record one output per module call. A functional `F.relu` is invisible to both (the
rules silently fall back to plain gradients); a module instance registered or called twice mixes two
call sites into one hook; an in-place op rewrites the tensor a hook or a full backward hook recorded.
Torch only shares a module when the model's code does so, so functional ReLUs are fixed by replacing
blocks (see `inception.py`); a module *called* at several sites of its parent's forward (torchvision's ResNet
blocks call `self.relu` twice) is split by `split_call_sites`, which traces that parent with torch.fx and
gives each later call a copy of its own; what cannot be traced is refused. Captum also hooks the *input
tensor* of each rule module, so a pool that reads a tensor other ops read too (an Inception block's input)
rewrites their gradients as well: `shared_inputs` finds such call sites.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import fx, nn

from neuronimp.errors import UsageError

_POOL_MODULE = "torch.nn.modules.pooling"
_ACT_NAMES = ("relu", "gelu", "silu", "swish", "mish", "sigmoid", "tanh", "elu", "hardswish", "hardsigmoid",
              "softplus", "prelu", "selu", "celu", "quickgelu", "gelutanh", "hardmish")


def is_activation(module: nn.Module) -> bool:
    """True for elementwise nonlinearity modules (torch's or timm's), whose rules DeepLIFT/LRP replace."""
    if isinstance(module, nn.MultiheadAttention):
        return False
    if type(module).__module__ == "torch.nn.modules.activation":
        return True
    return type(module).__name__.lower() in _ACT_NAMES


def has_role(module: nn.Module) -> bool:
    """True for modules that must own their call site: activations and pools."""
    return is_activation(module) or type(module).__module__ == _POOL_MODULE


def canonicalise(model: nn.Module) -> nn.Module:
    """Turn off every `inplace` flag; raise UsageError if an activation/pool is registered twice."""
    for module in model.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    names: dict[int, list[str]] = defaultdict(list)
    for name, module in model.named_modules(remove_duplicate=False):
        if has_role(module):
            names[id(module)].append(name)
    shared = [ns for ns in names.values() if len(ns) > 1]
    if shared:
        listed = "; ".join(" = ".join(ns) for ns in shared[:5])
        raise UsageError(f"model shares activation/pool modules between call sites ({listed}); "
                         "DeepLIFT, LRP and layer hooks need one module per call site")
    return model


def assert_canonical(model: nn.Module) -> None:
    """Raise AssertionError unless no module is in-place and no activation/pool is registered twice."""
    inplace = [n for n, m in model.named_modules() if getattr(m, "inplace", False) is True]
    assert not inplace, f"in-place modules: {inplace[:5]}"
    seen: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if has_role(module):
            assert id(module) not in seen, f"{name} and {seen[id(module)]} are one module"
            seen[id(module)] = name


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode (no batch-norm statistics update) and restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def call_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Run `example` (batched) once and count calls of every activation/pool module, by module path."""
    counts: dict[str, int] = defaultdict(int)
    handles = []
    for name, module in model.named_modules():
        if has_role(module):
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: counts.__setitem__(
                name, counts[name] + 1)))
    try:
        with torch.no_grad(), evaluating(model):
            model(example)
    finally:
        for h in handles:
            h.remove()
    return dict(counts)


def check_call_sites(model: nn.Module, example: torch.Tensor, name: str = "model") -> None:
    """Raise UsageError if one activation/pool module is called at more than one call site."""
    repeated = {k: v for k, v in call_counts(model, example).items() if v > 1}
    if repeated:
        listed = ", ".join(f"{k} ({v} calls)" for k, v in list(repeated.items())[:5])
        raise UsageError(f"model {name!r} calls one activation/pool module at several call sites: {listed}; "
                         "DeepLIFT, LRP and layer hooks need one module per call site (give each its own module)")


def shared_inputs(model: nn.Module) -> list[str]:
    """Call sites (module paths) of activations/pools whose input tensor another op also reads (fx trace).

    Why: Captum's DeepLIFT puts its rule on the module's input tensor, so the rule's multiplier replaces the
    gradient that every reader of that tensor sends back, not just the module's own share. (Our `deeplift` and
    `lrp` also give each hooked module its own input copy per call: `methods.propagation.own_inputs`.)
    """
    graph = fx.Tracer().trace(model)
    out = []
    for node in graph.nodes:
        if node.op == "call_module" and has_role(model.get_submodule(node.target)):
            source = node.args[0]
            if isinstance(source, fx.Node) and len(source.users) > 1:
                out.append(node.target)
    return out


def split_call_sites(model: nn.Module, example: torch.Tensor, name: str = "model") -> nn.Module:
    """One module per call site: every activation/pool called k > 1 times is given k - 1 copies.

    The parent whose forward calls it is traced with torch.fx; the 2nd, 3rd ... `call_module` node of that
    module then calls `<name>_site2`, `<name>_site3` ... (deep copies, same parameters' values), and the parent is
    replaced by the resulting GraphModule, which keeps every other submodule under its old name (checkpoints and
    layer names are unchanged). A parent fx cannot trace is left as it is, and the model is refused
    (`check_call_sites`, UsageError naming the call sites). One forward pass when nothing is shared, two else.
    Returns the model (a new object only when the root itself had to be traced).
    """
    repeated = [k for k, v in call_counts(model, example).items() if v > 1]
    if not repeated:
        return model
    # deepest parents first, the root (path "") last: tracing the root inlines its custom blocks
    parents = sorted({k.rpartition(".")[0] for k in repeated}, key=lambda p: (p == "", -p.count(".")))
    for path in parents:
        parent = model.get_submodule(path) if path else model
        try:
            gm = fx.symbolic_trace(parent)
        except Exception:  # noqa: BLE001 - data-dependent control flow etc.: refused later, by name
            continue
        seen: dict[str, int] = defaultdict(int)
        for node in gm.graph.nodes:
            if node.op != "call_module" or not has_role(gm.get_submodule(node.target)):
                continue
            seen[node.target] += 1
            if seen[node.target] > 1:
                new = f"{node.target.replace('.', '_')}_site{seen[node.target]}"
                gm.add_submodule(new, copy.deepcopy(gm.get_submodule(node.target)))
                node.target = new
        for cname, child in parent.named_children():  # submodules its forward does not call keep their names
            if not hasattr(gm, cname):
                gm.add_submodule(cname, child)
        for pname, p in parent.named_parameters(recurse=False):  # and so do its own tensors (state_dict keys)
            if not hasattr(gm, pname):
                gm.register_parameter(pname, p)
        for bname, b in parent.named_buffers(recurse=False):
            if not hasattr(gm, bname):
                gm.register_buffer(bname, b)
        gm.recompile()
        gm.train(parent.training)
        if not path:
            model = gm
            continue
        grand, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(grand) if grand else model, leaf, gm)
    check_call_sites(model, example, name)
    return model
