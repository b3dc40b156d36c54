"""The probe: one model cut at one named layer into `prefix: x -> a` and `suffix: a -> logits`.

The cut is made on the torch.fx graph (the layer traced as a leaf): the suffix is every node that depends on
the layer's output, so an ablation re-runs only the layers after the cut. Models that fx cannot trace, or
whose graph carries other values across the cut (skip connections), fall back to a forward hook that
patches the layer's output during a full forward. Either way the probe checks on construction that
`suffix(prefix(x), x) == model(x)`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import fx, nn

from neuronimp.errors import UsageError
from neuronimp.hooks import StopForward, replace_output, stop_after


class _LeafTracer(fx.Tracer):
    """An fx tracer that keeps the cut layer as one call_module node."""

    def __init__(self, leaf: str, keep: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.leaf = leaf
        self.keep = {leaf, *keep}  # modules that must stay whole (so forward hooks on them still fire)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.keep:
            return True
        if any(k.startswith(qualname + ".") for k in self.keep):
            return False  # a container of a kept layer must be traced through
        return super().is_leaf_module(m, qualname)


def _reach(node: fx.Node, step: Callable[[fx.Node], Iterable[fx.Node]]) -> set[fx.Node]:
    """Every node reachable from `node` by repeated `step` (users: descendants; inputs: ancestors)."""
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        for nxt in step(stack.pop()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def split_graph(model: nn.Module, layer: str, keep: tuple[str, ...] = ()) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Split `model` at `layer` into (prefix, suffix) GraphModules; ValueError when no clean cut exists.

    Modules named in `keep` stay single call_module nodes, so hooks on them fire inside the suffix.
    """
    tracer = _LeafTracer(layer, keep)
    graph = tracer.trace(model)
    cut = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(cut) != 1:
        raise ValueError(f"layer {layer!r} is called {len(cut)} times in the traced graph")
    cut_node = cut[0]
    after = _reach(cut_node, lambda n: n.users)
    before = _reach(cut_node, lambda n: n.all_input_nodes)
    outputs = [n for n in graph.nodes if n.op == "output"]
    if not outputs or outputs[0] not in after:
        raise ValueError("the model's output does not depend on the layer")
    # Anything the suffix reads other than the cut and constants would have to cross the cut.
    for n in after:
        for inp in n.all_input_nodes:
            if inp is not cut_node and inp not in after and inp.op != "get_attr":
                raise ValueError(f"value {inp.name!r} crosses the cut at {layer!r}")

    pre = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in graph.nodes:
        if n in before or n is cut_node:
            env[n] = pre.node_copy(n, lambda a: env[a])
    pre.output(env[cut_node])

    post = fx.Graph()
    env2: dict[fx.Node, fx.Node] = {cut_node: post.placeholder("a")}
    for n in graph.nodes:
        if n in after:
            for inp in n.all_input_nodes:
                if inp.op == "get_attr" and inp not in env2:
                    env2[inp] = post.node_copy(inp, lambda a: env2[a])
            env2[n] = post.node_copy(n, lambda a: env2[a])
    return fx.GraphModule(tracer.root, pre), fx.GraphModule(tracer.root, post)


class Probe:
    """A model cut at `layer`: prefix(x) -> a, suffix(a, x) -> logits (x read only in hook mode)."""

    def __init__(self, model: nn.Module, layer: str, example: torch.Tensor, *, atol: float = 1e-4,
                 keep: tuple[str, ...] = ()) -> None:
        self.model = model
        self.layer = layer
        try:
            self._prefix, self._suffix = split_graph(model, layer, keep)
            self.mode = "fx"
        except Exception as exc:  # noqa: BLE001 - any tracing failure means: use the hook fallback
            self.mode = "hook"
            self.reason = f"{type(exc).__name__}: {exc}"
        self.check(example, atol)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's activation a = prefix(x)."""
        if self.mode == "fx":
            return self._prefix(x)
        with stop_after(self.model, self.layer) as box:
            try:
                self.model(x)
            except StopForward:
                pass
        return box["out"]

    def suffix(self, a: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from the layer's activation a; hook mode also needs the inputs x that go with a."""
        if self.mode == "fx":
            return self._suffix(a)
        if x is None or x.shape[0] != a.shape[0]:
            raise ValueError("hook-mode suffix needs the inputs x matching a along the batch")
        with replace_output(self.model, self.layer, lambda _out: a):
            return self.model(x)

    def check(self, example: torch.Tensor, atol: float) -> None:
        """Verify suffix(prefix(x), x) == model(x) on `example`; fall back to hooks if fx disagrees."""
        with torch.no_grad():
            want = self.model(example)
            got = self.suffix(self.prefix(example), example)
            if self.mode == "fx" and not _close(got, want, atol):
                warnings.warn(f"fx split of {self.layer!r} disagrees with the model; using the hook fallback")
                self.mode = "hook"
                got = self.suffix(self.prefix(example), example)
        if not _close(got, want, atol):
            raise UsageError(f"cannot cut the model at layer {self.layer!r}: suffix(prefix(x)) != model(x)")


def _close(a: Any, b: Any, atol: float) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=1e-4)
