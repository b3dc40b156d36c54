"""The Kim CNN's filter layer as named units, and the conductance that flows through each filter.

Unit j of `features` (N x maps*len(windows)) is map j % maps of window windows[j // maps]: the max over time of
relu(conv_w(x))[map], so it "fires on" the n-gram at the argmax position of that max (Kim 2014, Sec. 2).

Conductance is measured for a sentiment score F (Dhamdhere et al. 2018, eq. 3 for a filter, eq. 2 per token):
- "margin": F = logit[positive] - logit[negative], the log-odds of 'positive' (one score for every sentence,
  so signs compare across sentences; a filter with positive conductance pushes towards 'positive');
- "predicted": F = the logit of the sentence's predicted class (the convention of `neuronimp score`).
Because dropout is off at evaluation and `fc` is linear, the conductance of filter j to F is exactly
w_Fj * (a_j(x) - a_j(x')) (w_F the row of fc for F; for the margin w_1 - w_0): tested in test_sentiment.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from neuronimp.methods.params import MethodParams
from neuronimp.methods.targets import target_classes
from neuronimp.errors import UsageError
from neuronimp.hooks import capture
from neuronimp.methods import compute_scores
from neuronimp.methods.grid import make_grid
from neuronimp.methods.neuron import neuron_conductance

TARGETS = ("margin", "predicted")


class Margin(nn.Module):
    """Wraps a 2-class model: logits [N, 2] -> [N, 2] = (l0 - l1, l1 - l0); output 1 is the margin."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # hooks.frozen() restores the wrapper's own flag with .train(flag), which recurses: a wrapper left in
        # the default training mode would switch the Kim CNN's dropout on after the first sweep.
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x ... -> N x 2."""
        logits = self.model(x)                       # N x 2
        d = logits[:, 1] - logits[:, 0]              # N
        return torch.stack([-d, d], dim=1)


@dataclass(frozen=True)
class FilterBank:
    """The filter layer of a Kim CNN: window sizes, maps per window, the layer's module path."""

    windows: tuple[int, ...]
    maps: int
    layer: str = "features"

    @classmethod
    def of(cls, model: nn.Module) -> "FilterBank":
        """Read windows and maps from a Kim CNN (`model.pool` an NgramConvs); UsageError for other models."""
        pool = getattr(model, "pool", None)
        windows = getattr(pool, "windows", None)
        if pool is None or not windows or not hasattr(model, "features"):
            raise UsageError("the filter analysis needs a Kim CNN (model.name: kim_cnn) with layer 'features'")
        conv = getattr(pool, f"conv{windows[0]}")
        return cls(tuple(int(w) for w in windows), int(conv.out_channels))

    @property
    def units(self) -> int:
        """Number of filters (300 for Kim's 3 windows x 100 maps)."""
        return len(self.windows) * self.maps

    def window(self, unit: int) -> int:
        """The window size (n-gram length) of filter `unit`."""
        return self.windows[unit // self.maps]

    def map(self, unit: int) -> int:
        """The feature map index of filter `unit` within its window."""
        return unit % self.maps

    def check(self, unit: int) -> int:
        """`unit` when it is a filter index, else UsageError."""
        if not 0 <= unit < self.units:
            raise UsageError(f"unit {unit} is not a filter; allowed: 0..{self.units - 1} "
                             f"({len(self.windows)} windows {list(self.windows)} x {self.maps} maps)")
        return unit


def head(model: nn.Module, target: str) -> tuple[nn.Module, str]:
    """(the module whose output F is explained, the path of the filter layer inside it)."""
    if target == "margin":
        n = model.fc.out_features if hasattr(model, "fc") else 2
        if n != 2:
            raise UsageError(f"sentiment.target = 'margin' needs a 2-class model, this one has {n} classes")
        return Margin(model), "model.features"
    if target == "predicted":
        return model, "features"
    raise UsageError(f"sentiment.target = {target!r}: allowed: {', '.join(TARGETS)}")


def targets(model: nn.Module, x: torch.Tensor, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of F in the head's output [B], predicted class [B]); margin: always output 1."""
    _, pred = target_classes(model, x, "predicted")
    return (torch.ones_like(pred) if target == "margin" else pred), pred


def fired(model: nn.Module, bank: FilterBank, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max-pooled activation [B, U], start position of the argmax n-gram [B, U]) of every filter."""
    names = [f"pool.relu{w}" for w in bank.windows]
    with capture(model, names) as out, torch.no_grad():
        model(x)
    acts, starts = [], []
    for name in names:
        a = out[name].flatten(2)                     # B x maps x (L - w + 1)
        v, i = a.max(dim=2)                          # B x maps
        acts.append(v)
        starts.append(i)
    return torch.cat(acts, 1), torch.cat(starts, 1)


@dataclass
class Flow:
    """Filter conductance of a batch: conductance, activation and n-gram start [B, U]; F, target, delta [B]."""

    conductance: torch.Tensor
    activation: torch.Tensor
    start: torch.Tensor
    score: torch.Tensor       # F(x)
    target: torch.Tensor      # index of F in the head's output
    predicted: torch.Tensor   # argmax class of the model
    delta: torch.Tensor       # sum_j cond_j - (F(x) - F(x')), the completeness gap


def filter_flow(model: nn.Module, bank: FilterBank, x: torch.Tensor, baseline: torch.Tensor, target: str,
                cfg: MethodParams) -> Flow:
    """Total conductance of every filter to F for a batch of embedded sentences x [B, C, L, D]."""
    module, layer = head(model, target)
    t, pred = targets(model, x, target)
    s = compute_scores(module, x, baseline, t, [layer], ["conductance"], cfg)
    act, start = fired(model, bank, x)
    return Flow(s.scores[(layer, "conductance")].detach(), act, start, s.f_input.detach(), t, pred,
                s.deltas[(layer, "conductance")].detach())


def token_conductance(model: nn.Module, bank: FilterBank, unit: int, x: torch.Tensor, baseline: torch.Tensor,
                      target: str, cfg: MethodParams) -> torch.Tensor:
    """Neuron conductance of each token through filter `unit` (Dhamdhere et al. eq. 2), [B, L].

    Summed over the embedding dimensions (and channels); padding tokens get exactly 0 (x = x' there).
    Summed over tokens it approaches the filter's total conductance as attribution.n_steps grows.
    """
    module, layer = head(model, target)
    t, _ = targets(model, x, target)
    grid = make_grid(cfg.rule, cfg.n_steps)
    attr = neuron_conductance(module, layer, bank.check(unit), x, baseline, t, grid, cfg.step_chunk)
    return attr.sum(dim=(1, 3)).detach()             # B x C x L x D -> B x L


def closed_form(model: nn.Module, bank: FilterBank, x: torch.Tensor, baseline: torch.Tensor,
                target: str) -> torch.Tensor:
    """w_Fj * (a_j(x) - a_j(x')) [B, U]: the exact filter conductance for the Kim CNN's linear head."""
    act, _ = fired(model, bank, x)
    act0, _ = fired(model, bank, baseline.expand_as(x))
    w = model.fc.weight.detach()                     # classes x U
    t, _ = targets(model, x, target)
    rows = (w[1] - w[0]).expand(x.shape[0], -1) if target == "margin" else w[t]
    return rows * (act - act0)
