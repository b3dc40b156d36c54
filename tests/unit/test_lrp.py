"""LRP through zennit (`methods/lrp.py`): conservation at every cut of bias-free ResNet-18, GoogLeNet and
Inception v3, the canonizers (batch-norm merge, residual sums) against hand-made equivalents, and a model
left exactly as it was."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from neuronimp.methods import lrp as lrp_mod
from neuronimp.methods import propagation
from neuronimp.methods.lrp import LRP_COMPOSITES, lrp_layers, lrp_relevance
from neuronimp.models import create_model
from tests.conftest import toy_cnn

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"epsilon": 1e-12, "stabilizer": 1e-12}  # conservation up to these only


def bias_free(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-init weights, random batch-norm statistics and scales with shifts chosen so that every merged
    conv has bias 0 (beta = mu * gamma / sqrt(var + eps)), all biases 0; float64, eval."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(m.running_mean * m.weight / (m.running_var + m.eps).sqrt())
    return model.double().eval()


def _target(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        f = m(x)
    t = f.argmax(1)
    return t, f.gather(1, t[:, None]).squeeze(1)


def _worst_relative_error(m: nn.Module, layers: list[str], x: torch.Tensor, composite: str) -> float:
    t, f = _target(m, x)
    res = lrp_layers(m, layers, x, t, composite, **TINY)
    worst = 0.0
    for layer, (r, delta) in res.items():
        torch.testing.assert_close(delta, r.sum(1) - f, atol=1e-12 * float(f.abs().max()), rtol=0)
        worst = max(worst, float((delta.abs() / f.abs()).max()))
    return worst


RESNET_CUTS = ["act1", "maxpool", *(f"layer{i}.{j}" for i in range(1, 5) for j in range(2)), "global_pool"]
GOOGLENET_CUTS = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                  "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                  "inception5a", "inception5b", "avgpool"]
V3_CUTS = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
           "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
           "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"]
CONSERVING = ["epsilon", "zplus", "epsilon_plus"]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return bias_free(create_model("timm/resnet18", num_classes=10).model)


@pytest.mark.parametrize("composite", CONSERVING)
def test_conserved_at_every_cut_of_a_bias_free_resnet18(resnet18: nn.Module, composite: str) -> None:
    # timm's blocks add with `x += shortcut`: the sum rule of `proportional_adds`. Measured worst relative error
    # over the 11 cuts 2e-10 (epsilon, zplus, epsilon_plus); also 1e-10 with gamma and epsilon_alpha2_beta1.
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _worst_relative_error(resnet18, RESNET_CUTS, x, composite) < 1e-4


def test_resnet_without_the_sum_rule_counts_each_block_twice(resnet18: nn.Module, monkeypatch) -> None:
    # The defect the sum rule fixes: with `+` as a plain gradient, relevance doubles at each of the 2 blocks per
    # stage, so layer3's input (= layer2's output) gets 4 F(x) and layer2's 16 F(x).
    monkeypatch.setattr(lrp_mod, "proportional_adds", lambda _eps: contextlib.nullcontext())
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t, f = _target(resnet18, x)
    res = lrp_layers(resnet18, ["layer2", "layer3"], x, t, "epsilon", **TINY)
    torch.testing.assert_close(res["layer3"][0].sum(1) / f, torch.full_like(f, 4.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(res["layer2"][0].sum(1) / f, torch.full_like(f, 16.0), atol=1e-4, rtol=0)


def test_torchvision_resnet_uses_zennits_canonizer_and_agrees_with_the_sum_rule(monkeypatch) -> None:
    # torchvision's blocks go through zennit's ResNetBasicBlockCanonizer (Sum module, Norm rule); the generic
    # sum rule on their `out += identity` must give the same relevance. Measured difference 1e-16.
    from torchvision.models import resnet18

    torch.manual_seed(0)
    m = bias_free(resnet18(num_classes=10))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t, f = _target(m, x)
    layers = ["layer1", "layer2", "layer3", "layer4"]
    zennit_way = lrp_layers(m, layers, x, t, "epsilon_plus", **TINY)
    for layer in layers:
        r, delta = zennit_way[layer]
        assert float((delta.abs() / f.abs()).max()) < 1e-4
    monkeypatch.setattr(lrp_mod, "torchvision_resnet_canonizers", lambda _m: [])
    generic = lrp_layers(m, layers, x, t, "epsilon_plus", **TINY)
    for layer in layers:
        torch.testing.assert_close(generic[layer][0], zennit_way[layer][0], atol=1e-9 * float(f.abs().max()), rtol=0)


@pytest.fixture(scope="module")
def googlenet() -> nn.Module:
    return bias_free(create_model("googlenet", num_classes=10).model)


@pytest.fixture(scope="module")
def inception_v3() -> nn.Module:
    return bias_free(create_model("inception_v3_tv", num_classes=10).model)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus"])  # z+ measured too, see below
def test_conserved_at_every_cut_of_a_bias_free_googlenet(googlenet: nn.Module, composite: str) -> None:
    # Concatenated branches, overlapping max pools (winner takes all) and average pools (Norm rule) all conserve.
    # Measured worst relative error over the 17 cuts 9e-10 (epsilon), 5e-10 (zplus), 6e-10 (epsilon_plus).
    m = googlenet
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert _worst_relative_error(m, GOOGLENET_CUTS, x, composite) < 1e-4


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus"])  # z+ measured too, see below
def test_conserved_at_every_cut_of_a_bias_free_inception_v3(inception_v3: nn.Module, composite: str) -> None:
    # Measured worst relative error over the 19 cuts 1e-8 (epsilon), 5e-9 (zplus), 4e-9 (epsilon_plus).
    m = inception_v3
    x = torch.randn(2, 3, 75, 75, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert _worst_relative_error(m, V3_CUTS, x, composite) < 1e-4


class ResidualMLP(nn.Module):
    """h = relu(l1 x); h = h + relu(l2 h); h = h + relu(l3 h); out(h): two plain `+` above r1, bias-free."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.l1, self.r1 = nn.Linear(4, 6, bias=False), nn.ReLU()
        self.l2, self.r2 = nn.Linear(6, 6, bias=False), nn.ReLU()
        self.l3, self.r3 = nn.Linear(6, 6, bias=False), nn.ReLU()
        self.out = nn.Linear(6, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r1(self.l1(x))
        h = h + self.r2(self.l2(h))
        h += self.r3(self.l3(h))  # in place, as timm writes it
        return self.out(h)


def test_residual_mlp_with_plain_additions() -> None:
    # r1 is a cut: its relevance sums to F(x) (Captum's LayerLRP: exactly 4 F(x), the report). r2 and r3
    # are branches, not cuts: their shares plus the skip path's make up F(x) at the next cut.
    m = ResidualMLP().double().eval()
    x = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    t, f = _target(m, x)
    for composite in CONSERVING:
        r, delta = lrp_relevance(m, "r1", x, t, composite, **TINY)
        assert float((delta.abs() / f.abs()).max()) < 1e-9
    # the share split by hand at the last addition: R_h2 = h2 / (h2 + b3) R, R_b3 = b3 / (h2 + b3) R (sum rule)
    with torch.no_grad():
        h1 = m.r1(m.l1(x))
        h2 = h1 + m.r2(m.l2(h1))
        b3 = m.r3(m.l3(h2))
        h3 = h2 + b3
        r_h3 = h3 * m.out.weight[t] * (f / (h3 * m.out.weight[t]).sum(1))[:, None]  # epsilon rule at `out`
    r3, _ = lrp_relevance(m, "r3", x, t, "epsilon", **TINY)
    want = torch.where(h3 == 0, 0.0, b3 / h3.where(h3 != 0, 1.0) * r_h3)  # h3 = 0 only where h2 = b3 = 0
    torch.testing.assert_close(r3, want, atol=1e-10, rtol=0)


def test_residual_mlp_without_the_sum_rule_reports_four_times(monkeypatch) -> None:
    monkeypatch.setattr(lrp_mod, "proportional_adds", lambda _eps: contextlib.nullcontext())
    m = ResidualMLP().double().eval()
    x = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    t, f = _target(m, x)
    r, _ = lrp_relevance(m, "r1", x, t, "epsilon", **TINY)
    torch.testing.assert_close(r.sum(1) / f, torch.full_like(f, 4.0), atol=1e-9, rtol=0)


# ---------------------------------------------------------------- batch-norm merge against a hand-folded copy

class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5, eps=1e-3), nn.ReLU()
        self.flat, self.fc = nn.Flatten(), nn.Linear(5 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))))


def _conv_bn(seed: int = 7) -> nn.Module:
    torch.manual_seed(seed)
    m = ConvBN()
    with torch.no_grad():
        for bn in (m.bn1, m.bn2):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n))
            bn.running_var.copy_(torch.rand(n) + 0.5)
            bn.weight.copy_(torch.randn(n))  # some negative scales: merged filters change sign
            bn.bias.copy_(torch.randn(n))
    return m.double().eval()


def _folded(m: ConvBN) -> nn.Module:
    """The same function with each batch norm folded into its conv by hand and replaced by an identity."""
    f = ConvBN().double().eval()
    f.load_state_dict(m.state_dict())
    with torch.no_grad():
        for conv, bn in ((f.conv1, f.bn1), (f.conv2, f.bn2)):
            s = bn.weight / (bn.running_var + bn.eps).sqrt()
            b = conv.bias if conv.bias is not None else torch.zeros_like(s)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size).double()
            new.weight.copy_(conv.weight * s[:, None, None, None])
            new.bias.copy_((b - bn.running_mean) * s + bn.bias)
            setattr(f, "conv1" if conv is f.conv1 else "conv2", new)
        f.bn1, f.bn2 = nn.Identity(), nn.Identity()
    return f


@pytest.mark.parametrize("composite", LRP_COMPOSITES)
def test_batch_norm_merge_equals_a_hand_folded_model(composite: str) -> None:
    m = _conv_bn()
    folded = _folded(m)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(folded(x), m(x))
    t = torch.tensor([0, 1, 2])
    got = lrp_layers(m, ["relu1", "relu2"], x, t, composite)
    want = lrp_layers(folded, ["relu1", "relu2"], x, t, composite)
    for layer in ("relu1", "relu2"):
        torch.testing.assert_close(got[layer][0], want[layer][0], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(got[layer][1], want[layer][1], atol=1e-10, rtol=1e-10)


def test_a_conv_output_with_a_second_reader_is_refused() -> None:
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.relu, self.fc = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.conv(x)
            return self.fc((self.relu(self.bn(z)) + z).flatten(1))  # z read by the batch norm and the sum

    m = TwoReaders().double().eval()
    with torch.no_grad():
        m.bn.running_mean.fill_(0.5)
        m.bn.weight.fill_(2.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(RuntimeError, match="changed the model's output"):
        lrp_relevance(m, "relu", torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1]), "epsilon")
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert m.bn.eps == 1e-5


# ---------------------------------------------------------------- the API

def test_model_is_left_exactly_as_it_was() -> None:
    m = create_model("googlenet", num_classes=10).model.double()
    m.train()
    m.inception4a.branch1.bn.eval()  # a mixed mode, restored per module
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    attrs = {mod: set(vars(mod)) for mod in m.modules()}
    grads = [p.requires_grad for p in m.parameters()]
    modes = [mod.training for mod in m.modules()]
    for composite in ("epsilon_gamma_box", "zplus"):
        lrp_relevance(m, "inception4a", x, torch.tensor([3]), composite)
    with pytest.raises(RuntimeError):  # a bad target raises after the forward, inside every context
        lrp_relevance(m, "inception4a", x, torch.tensor([10]), "epsilon_plus")
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())  # bit for bit (eps included)
    assert all(mod.eps == 1e-3 for mod in m.modules() if isinstance(mod, nn.BatchNorm2d))
    assert {mod: set(vars(mod)) for mod in m.modules()} == attrs
    assert [p.requires_grad for p in m.parameters()] == grads
    assert [mod.training for mod in m.modules()] == modes
    for mod in m.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks and not mod._backward_hooks
        assert not getattr(mod, "_backward_pre_hooks", None)
    assert not torch.overrides._get_current_function_mode_stack()  # the sum-rule mode is popped


def test_many_layers_in_one_pass_equal_one_at_a_time() -> None:
    m = toy_cnn()
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([1, 2])
    both = lrp_layers(m, ["1", "3"], x, t, "gamma", gamma=0.5)
    for layer in ("1", "3"):
        r, d = lrp_relevance(m, layer, x, t, "gamma", gamma=0.5)
        torch.testing.assert_close(both[layer][0], r, atol=1e-14, rtol=0)
        torch.testing.assert_close(both[layer][1], d, atol=1e-14, rtol=0)


def test_engine_names_map_to_composites() -> None:
    m = toy_cnn()
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 2])
    for name, composite in {"lrp_epsilon": "epsilon", "lrp_gamma": "gamma", "lrp_zplus": "zplus"}.items():
        got = propagation.lrp(m, "3", x, t, name, 1e-6, 0.3)
        want, _ = lrp_relevance(m, "3", x, t, composite, epsilon=1e-6, gamma=0.3)
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_box_bounds_default_to_each_inputs_range() -> None:
    m = _conv_bn()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 1])
    r, d = lrp_relevance(m, "relu1", x, t, "epsilon_gamma_box")
    low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    r2, d2 = lrp_relevance(m, "relu1", x, t, "epsilon_gamma_box", low=low, high=high)
    torch.testing.assert_close(r, r2, atol=0, rtol=0)
    # above the first conv the box rule has no say: gamma on convs, epsilon on the dense layer
    assert torch.isfinite(r).all() and torch.isfinite(d).all()


def test_unknown_composite_names_the_allowed_ones() -> None:
    from neuronimp.errors import UsageError

    with pytest.raises(UsageError, match="epsilon_plus"):
        lrp_relevance(toy_cnn(), "1", torch.rand(1, 2, 8, 8, dtype=torch.float64), torch.tensor([0]), "eps")


class _SEBlock(nn.Module):
    """conv -> relu -> squeeze-excitation (x * sigmoid(W2 relu(W1 mean x))) -> + shortcut; class name as timm's."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU()
        self.se = SqueezeExcite(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.act(self.conv(x))) + x


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce, self.act, self.expand, self.gate = nn.Conv2d(c, 2, 1), nn.ReLU(), nn.Conv2d(2, c, 1), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


def _se_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), _SEBlock(8), _SEBlock(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4, bias=False)).double().eval()


@pytest.mark.parametrize("composite", CONSERVING)
def test_squeeze_excitation_gates_pass_relevance_to_the_signal(composite: str) -> None:
    # Signal-take-all (Arras et al. 2017): R_x = R_y through y = x * g(x), the gate gets none, so a bias-free net
    # with SE blocks conserves relevance at every cut, the layers inside the gate receive nothing, and the
    # model's outputs are unchanged. Without the rule (gradient through the product) relevance is lost.
    m = _se_net()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    before = m(x)
    assert _worst_relative_error(m, ["1", "2", "3"], x, composite) < 1e-6
    t, f = _target(m, x)
    inside = lrp_layers(m, ["2.se.expand"], x, t, composite, **TINY)["2.se.expand"][0]
    assert float(inside.abs().max()) == 0.0
    torch.testing.assert_close(m(x), before, rtol=0, atol=0)
    assert not any(m._forward_hooks for m in m.modules())


def test_without_the_gate_rule_relevance_is_not_conserved(monkeypatch) -> None:
    from neuronimp.methods import lrp_canonizers

    monkeypatch.setattr(lrp_mod, "gates_pass", lambda _m: contextlib.nullcontext([]))
    m = _se_net()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert _worst_relative_error(m, ["1"], x, "epsilon") > 1e-2
    assert lrp_canonizers.GATES.search("SqueezeExcitation") and lrp_canonizers.GATES.search("SEModule")


# ------------------------------------------------------------------ transformers (Ali et al. 2022)

@pytest.fixture(scope="module")
def vit() -> nn.Module:
    """A 3-block timm ViT at 32 px, bias-free (linear biases, layer-norm shifts), float64."""
    m = create_model("timm/vit_tiny_patch16_224", img_size=32, depth=3, num_classes=10).model
    m = bias_free(m)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm) and mod.bias is not None:
                mod.bias.zero_()
    return m


@pytest.mark.parametrize("composite", CONSERVING)
def test_conserved_at_every_block_of_a_bias_free_vit(vit: nn.Module, composite: str) -> None:
    # LN-rule (sigma held constant) and AH-rule (attention weights held constant) make every block locally linear;
    # with the sum rule on the residual adds relevance is conserved at each block's output. Measured worst
    # relative error 1e-8 (epsilon, z+); crossed by the gradient (before) it was off by up to 3e6 x F(x).
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _worst_relative_error(vit, ["blocks.0", "blocks.1", "blocks.2", "norm"], x, composite) < 1e-6


def test_without_the_transformer_rules_relevance_is_not_conserved(vit: nn.Module, monkeypatch) -> None:
    monkeypatch.setattr(lrp_mod, "transformer_rules", lambda _m, _eps: contextlib.nullcontext())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _worst_relative_error(vit, ["blocks.0"], x, "epsilon") > 1e-2


def test_transformer_rules_leave_the_model_as_it_was(vit: nn.Module) -> None:
    attn = vit.blocks[0].attn
    attn.fused_attn = False  # the explicit-softmax path is switched to SDPA for the pass, then back
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    before = vit(x)
    t, _ = _target(vit, x)
    lrp_layers(vit, ["blocks.1"], x, t, "epsilon", **TINY)
    assert attn.fused_attn is False and not any(m._forward_hooks for m in vit.modules())
    torch.testing.assert_close(vit(x), before, rtol=0, atol=0)
    attn.fused_attn = True


def test_layer_norm_rule_by_hand() -> None:
    # One LayerNorm y = w (x - mean x) / sigma + b between two linear maps: with sigma constant, y = J x + b with
    # J = diag(w / sigma) (I - 1 1^T / n), and the epsilon rule gives R_x = x * J^T (R_y / y) (Bach et al. eq. 58).
    torch.manual_seed(7)
    m = nn.Sequential(nn.Linear(5, 6, bias=False), nn.LayerNorm(6), nn.Linear(6, 3, bias=False)).double().eval()
    x = torch.randn(2, 5, dtype=torch.float64)
    t = torch.tensor([0, 2])
    r = lrp_layers(m, ["0", "1"], x, t, "epsilon", **TINY)
    with torch.no_grad():
        h = m[0](x)
        y = m[1](h)
        f = m(x).gather(1, t[:, None]).squeeze(1)
        ry = m[2].weight[t] * y * (f / (y @ m[2].weight.T).gather(1, t[:, None]).squeeze(1))[:, None]
        sigma = (h.var(1, unbiased=False, keepdim=True) + m[1].eps).sqrt()
        n = h.shape[1]
        centre = torch.eye(n, dtype=torch.float64) - 1.0 / n
        want = torch.stack([h[i] * (((m[1].weight / sigma[i]).view(-1, 1) * centre).T @ (ry[i] / y[i]))
                            for i in range(2)])
    torch.testing.assert_close(r["1"][0], ry, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r["0"][0], want, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name,cuts", [("timm/efficientnet_b0", ["blocks.1", "blocks.3", "blocks.5", "conv_head"]),
                                       ("timm/mobilenetv3_small_100", ["blocks.1", "blocks.3", "blocks.5"])])
def test_conserved_through_squeeze_excitation_nets(name: str, cuts: list[str]) -> None:
    # SiLU / Hardswish pass relevance (zennit's Pass), squeeze-excitation gates by signal-take-all, residual adds
    # by the sum rule, batch norms merged: a bias-free EfficientNet-B0 / MobileNetV3 conserves at every block.
    # Measured worst relative error 4e-7 and 7e-10 (the stabilisers, at F(x) ~ 0.02 and ~ 20); with biases the
    # random nets' biases absorb 5-80 % (docs/model_check_table.md).
    m = bias_free(create_model(name, num_classes=10).model)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _worst_relative_error(m, cuts, x, "epsilon") < 1e-4


def test_conserved_through_convnext_channels_first_layer_norms() -> None:
    # timm's LayerNorm2d normalises dim 1 of an NCHW map (it permutes around F.layer_norm): the LN-rule finds that
    # form by checking its map against the module's output. Measured worst relative error 7e-6 (stabilisers).
    m = bias_free(create_model("timm/convnext_atto", num_classes=10).model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm) and mod.bias is not None:
                mod.bias.zero_()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _worst_relative_error(m, ["stages.0", "stages.1", "stages.2"], x, "epsilon") < 1e-4


def test_a_layer_norm_the_rule_does_not_recognise_is_refused_in_one_line() -> None:
    from neuronimp.errors import UsageError

    class DoubledNorm(nn.LayerNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    m = nn.Sequential(nn.Linear(4, 6), DoubledNorm(6), nn.Linear(6, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(UsageError, match=r"lrp: DoubledNorm \(6,\) on input \(2, 6\) is not a layer norm") as err:
        lrp_layers(m, ["0"], x, torch.zeros(2, dtype=torch.long), "epsilon")
    assert "\n" not in str(err.value)
    assert not any(mod._forward_hooks for mod in m.modules())


def test_other_libraries_activation_classes_pass_relevance() -> None:
    # timm's GELU / Swish are their own classes (not torch's): zennit would cross them by the gradient, which does
    # not conserve; they get zennit's Pass rule like torch's activations, and are not named as gaps.
    from timm.layers import activations as ta

    from neuronimp.methods.lrp import foreign_activations
    from neuronimp.methods.rules import lrp_gaps

    torch.manual_seed(8)
    m = nn.Sequential(nn.Linear(5, 8, bias=False), ta.GELU(), nn.Linear(8, 8, bias=False), ta.Swish(),
                      nn.Linear(8, 3, bias=False)).double().eval()
    assert set(foreign_activations(m)) == {ta.GELU, ta.Swish} and lrp_gaps([ta.GELU, ta.Swish]) == []
    x = torch.randn(4, 5, dtype=torch.float64)
    assert _worst_relative_error(m, ["0", "2"], x, "epsilon") < 1e-6
