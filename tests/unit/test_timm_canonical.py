"""timm's Inception v3 in canonical form: pools as modules, same weights and outputs, DeepLIFT complete.

Random init, float64, 75x75 inputs (the smallest the net takes: Mixed_7a needs a 3x3 input).
"""
from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch
from torch import fx, nn

from neuronimp.methods.deeplift_rules import adding_maxpool_rules
from neuronimp.models import create_model
from neuronimp.models.canonical import assert_canonical, call_counts, canonicalise, check_call_sites, shared_inputs
from neuronimp.models.timm_inception_blocks import CANONICAL, InceptionB, adopt, canonical_inception_v3

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 75
BLOCKS = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c"]
MAX_POOLS = ["Pool1", "Pool2", "Mixed_6a.pool", "Mixed_7a.pool"]  # the stem's two were modules already
AVG_POOLS = [f"{b}.pool" for b in BLOCKS if b not in ("Mixed_6a", "Mixed_7a")]


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module]:
    """(timm's model as timm builds it, in-place off; our converted deep copy), float64, eval mode."""
    import timm

    torch.manual_seed(0)
    ref = canonicalise(timm.create_model("inception_v3")).eval()
    ours = canonical_inception_v3(copy.deepcopy(ref))
    return ref.double(), ours.double()


def _functional(model: nn.Module) -> list[str]:
    """Names of the pool/ReLU functions an fx trace (into every non-torch.nn module) finds called directly."""
    graph = fx.Tracer().trace(model)
    names = [getattr(n.target, "__name__", str(n.target)) for n in graph.nodes if n.op == "call_function"]
    return [n for n in names if "pool" in n or "relu" in n]


def _x(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_same_outputs_and_state_dict(models: tuple[nn.Module, nn.Module]) -> None:
    ref, ours = models
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    want, got = ref.state_dict(), ours.state_dict()
    assert list(got) == list(want)  # same keys in the same order: pools hold no state
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_adopt_moves_children_without_copying() -> None:
    from timm.models.inception_v3 import InceptionD

    block = InceptionD(32)
    new = adopt(block)
    assert isinstance(new, InceptionD) and type(new) is not InceptionD
    assert [n for n, _ in new.named_children()] == [n for n, _ in block.named_children()] + ["pool"]
    assert all(a is b for a, b in zip(new.parameters(), block.parameters(), strict=True))
    assert all(a is b for a, b in zip(new.buffers(), block.buffers(), strict=True))


@pytest.mark.parametrize("timm_cls", list(CANONICAL))
def test_pool_arguments_are_timms(timm_cls: type[nn.Module]) -> None:
    # Read the F.*_pool2d calls out of timm's own source and build the module each one describes.
    source = inspect.getsource(timm_cls)
    assert len(re.findall(r"F\.\w*pool\w*\(", source)) == len(CANONICAL[timm_cls][1])  # one module each
    calls = re.findall(r"F\.(avg|max)_pool2d\(x, ([^)]*)\)", source)
    assert calls, f"no functional pool found in timm's {timm_cls.__name__}: has timm changed?"
    kind, args = calls[0]
    want = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[kind](**eval(f"dict({args})"))  # noqa: S307 (timm source)
    got = CANONICAL[timm_cls][1]["pool"]()
    assert type(got) is type(want) and got.extra_repr() == want.extra_repr()


def test_every_pool_and_relu_is_a_module_called_once(models: tuple[nn.Module, nn.Module]) -> None:
    ref, ours = models
    assert sorted(_functional(ref)) == sorted(["max_pool2d"] * 2 + ["avg_pool2d"] * 9)  # the scan sees them
    assert _functional(ours) == []
    counts = call_counts(ours, _x(1))
    assert all(v == 1 for v in counts.values())
    pools = {n: type(m) for n, m in ours.named_modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))}
    assert pools == {n: nn.MaxPool2d for n in MAX_POOLS} | {n: nn.AvgPool2d for n in AVG_POOLS}
    assert set(pools) <= set(counts)
    relus = [n for n, m in ours.named_modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 94 and all(counts[n] == 1 for n in relus)  # one per conv (ConvNormAct: bn.act)
    assert_canonical(ours)
    check_call_sites(ours, _x(1), "inception_v3_timm")
    assert shared_inputs(ours) == []  # each pool reads its own copy of the block input


def test_create_model_converts_timms_inception_v3() -> None:
    bundle = create_model("inception_v3_timm")
    m = bundle.model
    assert isinstance(m.Mixed_6a.pool, nn.MaxPool2d) and isinstance(m.Mixed_7b.pool, nn.AvgPool2d)
    assert _functional(m) == [] and shared_inputs(m) == []
    assert bundle.default_layer == "Mixed_6e" and not m.training


def test_aux_head_is_converted_too() -> None:
    import timm

    ref = canonicalise(timm.create_model("inception_v3", aux_logits=True)).eval()
    ours = canonical_inception_v3(copy.deepcopy(ref))
    assert isinstance(ours.AuxLogits.pool, nn.AvgPool2d) and isinstance(ours.AuxLogits.global_pool,
                                                                         nn.AdaptiveAvgPool2d)
    assert _functional(ours.AuxLogits) == [] and "AuxLogits.pool" not in shared_inputs(ours)
    x = torch.randn(1, 3, 299, 299)  # the aux head needs a 17x17 Mixed_6e output
    with torch.no_grad():
        for got, want in zip(ours(x), ref(x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_conversion_refuses_a_timm_wired_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def swapped(self: InceptionB, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.pool(x.clone()), self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))]

    monkeypatch.setattr(InceptionB, "_forward", swapped)
    with pytest.raises(RuntimeError, match="wired unlike"):
        canonical_inception_v3(timm.create_model("inception_v3"))


# ---------------------------------------------------------------- DeepLIFT summation-to-delta

def _relative_delta(model: nn.Module, layer: str, x: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """|sum of LayerDeepLift attributions - (F(x) - F(x'))| / |F(x) - F(x')| per example (target: argmax)."""
    from captum.attr import LayerDeepLift

    with torch.no_grad():
        target = model(x).argmax(1)
        diff = (model(x) - model(base)).gather(1, target[:, None]).squeeze(1)
    _, delta = LayerDeepLift(model, model.get_submodule(layer)).attribute(
        x, base, target=target, return_convergence_delta=True)
    return delta.abs() / diff.abs()


def test_deeplift_sums_to_delta_only_after_the_conversion(models: tuple[nn.Module, nn.Module]) -> None:
    # A random baseline: with the all-zero one every activation of this bias-free random net is 0 at the
    # baseline, DeepLIFT reduces to gradient x input and even functional max-pools sum exactly.
    ref, ours = models
    x, base = _x(seed=1), _x(seed=2)
    # After Mixed_6a only Mixed_7a max-pools, in one 3x3 window at 75x75 (see the next test for overlaps).
    assert _relative_delta(ours, "Mixed_6b", x, base).max() < 1e-9  # measured 4e-14, 5e-13
    assert _relative_delta(ref, "Mixed_6b", x, base).min() > 1e-2  # measured 8e-2, 0.95: gradient at F.max_pool2d


def test_deeplift_complete_at_mixed_5b_given_a_rule_for_overlapping_pools(models: tuple[nn.Module, nn.Module]) -> None:
    # Mixed_6a max-pools 3/2 windows that overlap; Captum's rule routes contributions with F.max_unpool2d,
    # which drops all but one when an input wins two windows (65% and 450% of F(x) - F(x') here). With the
    # package's adding rule (what `deeplift` uses) the converted net is exact at Mixed_5b as well; timm's own
    # stays far off.
    ref, ours = models
    x, base = _x(seed=1), _x(seed=2)
    assert _relative_delta(ours, "Mixed_5b", x, base).min() > 1e-1  # Captum's own rule: the 65% and 450%
    with adding_maxpool_rules():
        assert _relative_delta(ours, "Mixed_5b", x, base).max() < 1e-9  # measured 8e-15, 3e-13
        assert _relative_delta(ref, "Mixed_5b", x, base).min() > 1e-1  # measured 0.83, 8.8


def test_torchvision_resnet_gets_one_relu_per_call_site() -> None:
    # torchvision's BasicBlock calls self.relu twice: `split_call_sites` traces the block with torch.fx and gives
    # the second call a copy, so wrap() accepts it; parameter names (checkpoints) and outputs are unchanged.
    import neuronimp as ni
    from torchvision.models import resnet18

    torch.manual_seed(0)
    plain = resnet18(num_classes=10).eval()
    b = ni.wrap(plain, (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(b.model(x), plain(x), rtol=0, atol=0)
    assert list(b.model.state_dict()) == list(plain.state_dict())
    counts = call_counts(b.model, x)
    assert counts["layer1.0.relu"] == 1 and counts["layer1.0.relu_site2"] == 1 and max(counts.values()) == 1
    assert_canonical(b.model)
    with pytest.warns(UserWarning):  # the biases of a random net absorb some relevance
        s = ni.score(b, x, layers=["layer2"], methods=["deeplift", "lrp_epsilon"])
    assert s.scores[("layer2", "deeplift")].shape == (2, 128)


def test_a_shared_call_site_that_cannot_be_traced_is_refused_in_one_line() -> None:
    import neuronimp as ni
    from neuronimp.errors import UsageError

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.relu, self.out = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.relu(self.fc(x))
            if h.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace it
                h = self.relu(h + 1)
            return self.out(h)

    with pytest.raises(UsageError, match=r"calls one activation/pool module at several call sites: relu \(2 calls\)"
                       ) as err:
        ni.wrap(Branchy(), (4,))
    assert "\n" not in str(err.value)


def test_split_keeps_uncalled_submodules_and_own_tensors_for_checkpoints() -> None:
    from neuronimp.models.canonical import split_call_sites

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.relu, self.unused = nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)
            self.scale = nn.Parameter(torch.ones(3))
            self.register_buffer("shift", torch.zeros(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.relu(self.fc(x)) * self.scale + self.shift)

    torch.manual_seed(0)
    m = nn.Sequential(Block(), nn.Linear(3, 2))
    keys = set(m.state_dict())
    x = torch.randn(4, 3)
    want = m(x)
    out = split_call_sites(m, x)
    assert set(out.state_dict()) == keys and isinstance(out[0], torch.fx.GraphModule)
    assert max(call_counts(out, x).values()) == 1
    torch.testing.assert_close(out(x), want, rtol=0, atol=0)
    out.load_state_dict(nn.Sequential(Block(), nn.Linear(3, 2)).state_dict())  # strict: the same keys
