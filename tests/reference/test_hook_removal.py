"""Hook-removal matrix in Captum's style: every registered method x {success, a target out of range, a module that
raises during the forward pass} leaves no hook, attribute, parameter change, flag or torch-function mode behind,
and the model computes what it computed before."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronimp.config import AttributionCfg
from neuronimp.methods import METHODS, compute_scores
from neuronimp.methods.selectivity import layer_statistics

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]
LAYERS = ["2", "6"]
TARGET_FREE = {"activation", "selectivity", "random"}  # methods that need no target (they may still check it)


class Switch(nn.Module):
    """An identity that raises when armed (a module failing in the middle of a forward pass)."""

    armed = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("boom")
        return z


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), Switch(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 2),
                      nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 3))
    with torch.no_grad():
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 1.5)
    return m.double().eval()


def _snapshot(m: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in m.state_dict().items()},
        "attrs": [sorted(vars(mod)) for mod in m.modules()],
        "grad": [p.requires_grad for p in m.parameters()],
        "mode": [mod.training for mod in m.modules()],
    }


def _assert_clean(m: nn.Module, snap: dict[str, object], x: torch.Tensor, out: torch.Tensor) -> None:
    for mod in m.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks, mod
        assert not mod._backward_hooks and not mod._backward_pre_hooks, mod
    g = torch.nn.modules.module
    assert not g._global_forward_hooks and not g._global_forward_pre_hooks and not g._global_backward_hooks
    assert not torch.overrides._get_current_function_mode_stack()
    state = m.state_dict()
    assert state.keys() == snap["state"].keys() and all(torch.equal(state[k], v) for k, v in snap["state"].items())
    assert [sorted(vars(mod)) for mod in m.modules()] == snap["attrs"]
    assert [p.requires_grad for p in m.parameters()] == snap["grad"]
    assert [mod.training for mod in m.modules()] == snap["mode"]
    with torch.no_grad():
        assert torch.equal(m(x), out)


@pytest.mark.parametrize("case", ["success", "bad_target", "raising_module"])
@pytest.mark.parametrize("method", METHODS.names())
def test_no_hook_left_behind(method: str, case: str) -> None:
    m = _model()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    stats = layer_statistics(m, [(x, y)], LAYERS, num_classes=3)
    with torch.no_grad():
        out = m(x)
    m[3].armed = False  # an instance attribute before the snapshot: the test's own switch
    snap = _snapshot(m)
    target = torch.tensor([3, 0]) if case == "bad_target" else y  # 3 is out of range for 3 classes
    m[3].armed = case == "raising_module"
    raised = None
    try:
        compute_scores(m, x, torch.zeros_like(x), target, LAYERS, [method], AttributionCfg(n_steps=3).params(), stats=stats)
    except (RuntimeError, IndexError, ValueError) as exc:  # the case's own failure, whatever the method wraps it in
        raised = exc
    finally:
        m[3].armed = False
    if case == "success":
        assert raised is None, raised
    elif case == "bad_target":
        assert raised is not None or method in TARGET_FREE
    else:
        # selectivity and random run no forward pass (random reads the unit count from the engine's cached layout)
        assert (raised is None) == (method in ("selectivity", "random")), raised
    _assert_clean(m, snap, x, out)
