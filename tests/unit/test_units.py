"""Units of any layout (methods/units.py): the axis each layer's units live on, the engine and the studies on
[batch, tokens, features] layers, one-line refusals of layers that cannot be scored, and warnings for modules that
DeepLIFT / LRP have no rule for."""
from __future__ import annotations

import pytest
import torch
from captum.attr import LayerConductance
from torch import nn
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.config import build_config
from neuronimp.errors import UsageError
from neuronimp.methods import METHODS, MethodParams, compute_scores, delta_warnings, spec
from neuronimp.methods.ablation import apply_mask, single_unit_drop
from neuronimp.methods.selectivity import LayerStats
from neuronimp.methods.units import expand_mask, layer_layouts, reduce_units, to_units
from neuronimp.models import create_model
from neuronimp.probe import Probe
from neuronimp.studies.curves import mask_edit, noise_edit

pytestmark = pytest.mark.usefixtures("one_thread")


def _vit() -> nn.Module:
    """timm's ViT-Tiny, random init, 32 px (4 patches + the class token), one block, 4 classes, float64."""
    torch.manual_seed(0)
    return create_model("timm/vit_tiny_patch16_224", img_size=32, depth=1, num_classes=4).model.double()


class Tokens(nn.Module):
    """[B, T, F] -> a per-token linear map, ReLU, a second map, flattened into a head: every token counts."""

    def __init__(self, t: int = 3, f: int = 5, classes: int = 3) -> None:
        super().__init__()
        self.mix = nn.Linear(f, f)
        self.act = nn.ReLU()
        self.out = nn.Linear(f, f)
        self.head = nn.Linear(t * f, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.out(self.act(self.mix(x))).flatten(1))


def _tokens() -> nn.Module:
    torch.manual_seed(1)
    return Tokens().double().eval()


# ------------------------------------------------------------------ the ViT block: features summed over tokens

def test_vit_block_conductance_per_feature_matches_captum_and_completes() -> None:
    m = _vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    base, t = torch.zeros_like(x), torch.tensor([0, 2])
    s = compute_scores(m, x, base, t, ["blocks.0"], ["conductance"], MethodParams(n_steps=32, rule="gauss_legendre"))
    ours = s.scores[("blocks.0", "conductance")]
    assert ours.shape == (2, 192) and s.axis("blocks.0") == "feature"
    ref = LayerConductance(m, m.blocks[0]).attribute(x, base, target=t, n_steps=32, method="gausslegendre")
    ref = ref.detach().sum(1)  # [2, 5 tokens, 192] summed over the tokens
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-6
    # completeness: sum_u cond_u -> F(x) - F(x'), second order in the steps under the trapezoid rule
    rel = {n: compute_scores(m, x, base, t, ["blocks.0"], ["conductance"], MethodParams(n_steps=n))
           .relative_delta("blocks.0", "conductance") for n in (32, 128)}
    assert float(rel[128].max()) < 0.005
    assert (rel[32] / rel[128] > 8).all()  # ~16 for a second-order rule


def test_layers_command_shows_192_feature_units_of_a_vit_block_at_32_px() -> None:
    res = CliRunner().invoke(app, ["layers", "timm/vit_tiny_patch16_224", "--option", "img_size=32",
                                   "--option", "depth=1"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines()[1:]}
    assert rows["blocks.0"][1:] == ["5x192", "feature", "192"]  # 4 patches of 16 px + the class token
    assert rows["patch_embed"][1:] == ["4x192", "feature", "192"]
    assert create_model("timm/vit_tiny_patch16_224", img_size=32, depth=1).input_shape == (3, 32, 32)
    # MLP-Mixer's patch embedding is called `stem`, not `patch_embed`: found by its type
    assert create_model("timm/mixer_s16_224", img_size=32).input_shape == (3, 32, 32)


# ------------------------------------------------------------------ ablation: a feature in every token

def test_ablating_a_feature_zeroes_it_in_every_token_by_hand() -> None:
    m = _tokens()
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    t = torch.tensor([0, 1])
    probe = Probe(m, "act", x[:1])
    a = probe.prefix(x)  # [2, 3 tokens, 5 features]
    drops = single_unit_drop(probe, x, t, torch.zeros_like(a[:1]), a=a, axis="feature")
    assert drops.shape == (2, 5)
    for u in range(5):
        by_hand = a.clone()
        by_hand[:, :, u] = 0.0  # feature u in every token
        f = m.head(m.out(by_hand).flatten(1)).gather(1, t.unsqueeze(1)).squeeze(1)
        f0 = m.head(m.out(a).flatten(1)).gather(1, t.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(drops[:, u], f0 - f, rtol=1e-12, atol=1e-12)
    mask = torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.float64)
    got = apply_mask(a, mask, torch.zeros_like(a[:1]), "feature")
    assert torch.equal(got[0, :, [1, 4]], torch.zeros(3, 2, dtype=torch.float64))  # every token
    assert torch.equal(got[0, :, [0, 2, 3]], a[0, :, [0, 2, 3]]) and torch.equal(got[1, :, 1:], a[1, :, 1:])
    # the engine's single-unit ablation of the layer reads its axis from the layer itself (feature by default)
    s = compute_scores(m, x, torch.zeros_like(x), t, ["act"], ["ablation_zero", "random"], MethodParams())
    torch.testing.assert_close(s.scores[("act", "ablation_zero")], drops)
    assert s.scores[("act", "random")].shape == (2, 5)


def test_deletion_edits_a_feature_in_every_token() -> None:
    a = torch.randn(4, 3, 5, dtype=torch.float64)  # 2 levels x 2 inputs, 3 tokens, 5 features
    cut = mask_edit(torch.tensor([[0.0, 0, 1, 0, 0], [1.0, 0, 0, 0, 1]]), torch.zeros(1, 3, 5, dtype=torch.float64),
                    2, "feature")(a)
    assert torch.equal(cut[:2, :, 2], torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(cut[:2, :, :2], a[:2, :, :2])
    assert torch.equal(cut[2:, :, [0, 4]], torch.zeros(2, 3, 2, dtype=torch.float64))
    sd = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0])  # feature 1 has no spread: noise leaves it alone in every token
    noisy = noise_edit(torch.tensor([0.0, 1.0]), sd, 2, seed=0, axis="feature")(a)
    assert torch.equal(noisy[:, :, 1], a[:, :, 1]) and torch.equal(noisy[:2], a[:2])
    assert (noisy[2:, :, [0, 2, 3, 4]] != a[2:, :, [0, 2, 3, 4]]).all()


def test_ablate_and_select_rows_count_features_and_name_the_axis() -> None:
    import neuronimp as ni

    bundle = ni.wrap(_tokens(), input_shape=(3, 5))
    x = torch.randn(12, 3, 5, dtype=torch.float64)
    rows = ni.ablate(bundle, x[:4], layer="act", methods=["conductance"], max_k=5, attribution={"n_steps": 4})
    assert set(rows.units) == {5} and set(rows.unit_axis) == {"feature"}
    tok = ni.ablate(bundle, x[:4], layer="act", methods=["conductance"], max_k=3, attribution={"n_steps": 4},
                    units={"act": "token"})
    assert set(tok.units) == {3} and set(tok.unit_axis) == {"token"}
    sel = ni.select(bundle, x, torch.arange(12) % 2, layer="act", methods=["conductance"], classes=[0, 1],
                    per_class=6, select_per_class=3, ks=[2], random_draws=0, attribution={"n_steps": 4})
    assert set(sel.unit_axis) == {"feature"} and sel[sel.method == "all_units"].units.tolist() == ["0;1;2;3;4"]


# ------------------------------------------------------------------ the token axis, chosen explicitly

def test_token_axis_chosen_explicitly_sums_over_features() -> None:
    m = _tokens()
    x = torch.randn(3, 3, 5, dtype=torch.float64)
    base, t = torch.zeros_like(x), torch.tensor([0, 1, 2])
    p = MethodParams(n_steps=24, rule="gauss_legendre")
    both = {u: compute_scores(m, x, base, t, ["mix"], ["conductance", "activation", "layer_ig"], p, units=u)
            for u in ("auto", "token")}
    assert both["auto"].axis("mix") == "feature" and both["token"].axis("mix") == "token"
    ref = LayerConductance(m, m.mix).attribute(x, base, target=t, n_steps=24, method="gausslegendre").detach()
    torch.testing.assert_close(both["token"].scores[("mix", "conductance")], ref.sum(2), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(both["auto"].scores[("mix", "conductance")], ref.sum(1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(both["token"].scores[("mix", "activation")], m.mix(x).detach().sum(2))
    for method in ("conductance", "layer_ig"):  # the same total, split two ways
        torch.testing.assert_close(both["token"].scores[("mix", method)].sum(1),
                                   both["auto"].scores[("mix", method)].sum(1))
    frame = both["token"].to_frame()
    assert set(frame.unit_axis) == {"token"} and frame.unit.max() == 2
    with pytest.raises(UsageError, match=r"layer 'head' has output \[batch, 3\]: no token axis"):
        compute_scores(m, x, base, t, ["head"], ["activation"], p, units={"head": "token"})


def test_auto_steps_sum_each_unit_over_its_axis_like_the_fixed_sweep() -> None:
    m = _tokens()
    x = 3 * torch.randn(4, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    base, t = torch.zeros_like(x), torch.tensor([0, 1, 2, 0])
    methods = ["conductance", "internal_influence", "activation", "grad_x_act"]
    for units, axis, n_units in (("auto", "feature", 5), ("token", "token", 3)):
        for rule in ("trapezoid", "simpson"):
            auto = compute_scores(m, x, base, t, ["mix", "act"], methods,
                                  MethodParams(n_steps="auto", rule=rule, start_steps=2, max_steps=256,
                                               delta_tolerance=1e-3), units=units)
            assert auto.axis("mix") == axis and auto.steps is not None
            for i in range(4):  # each input: the fixed sweep at the steps it took, units on the same axis
                s = slice(i, i + 1)
                fixed = compute_scores(m, x[s], base[s], t[s], ["mix", "act"], methods,
                                       MethodParams(n_steps=int(auto.steps[i]), rule=rule), units=units)
                for key, ref in fixed.scores.items():
                    assert ref.shape == (1, n_units), key
                    torch.testing.assert_close(auto.scores[key][s], ref, atol=1e-10, rtol=0)
                for key, ref in fixed.deltas.items():
                    torch.testing.assert_close(auto.deltas[key][s], ref, atol=1e-10, rtol=0)


def test_coalitions_keep_or_drop_a_feature_in_every_token() -> None:
    from neuronimp.methods.coalitions import coalition_value

    m = _tokens()
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    t = torch.tensor([0, 2])
    probe = Probe(m, "act", x[:1])
    a = probe.prefix(x)  # [2, 3 tokens, 5 features]
    fill = torch.zeros_like(a[:1])
    keep = torch.rand(6, 5, generator=torch.Generator().manual_seed(5)) > 0.5
    got = coalition_value(probe, x, a, fill, "logit", target=t)(keep)  # the layer's own axis: feature
    tok = coalition_value(probe, x, a, fill, "logit", target=t, axis="token")(keep[:, :3])
    for i, k in enumerate(keep):
        by_hand = a * k.to(a).view(1, 1, 5)  # a dropped feature is zero in every token
        f = m.head(m.out(by_hand).flatten(1)).gather(1, t.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(got[i], f.detach(), rtol=1e-12, atol=1e-12)
        by_token = a * k[:3].to(a).view(1, 3, 1)  # a dropped token is zero in every feature
        f = m.head(m.out(by_token).flatten(1)).gather(1, t.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(tok[i], f.detach(), rtol=1e-12, atol=1e-12)


def test_axis_helpers_agree_and_conv1d_maps_are_channels() -> None:
    t = torch.randn(2, 3, 4, 5)
    for axis, units in (("channel", 3), ("feature", 5), ("token", 12)):
        r = reduce_units(t, axis)
        assert r.shape == (2, units)
        torch.testing.assert_close(r, to_units(t, axis).sum(2))
        mask = torch.zeros(2, units)
        mask[:, 1] = 1.0
        torch.testing.assert_close(reduce_units(t * expand_mask(mask, t.shape, axis), axis)[:, 1], r[:, 1])
    net = nn.Sequential(nn.Conv1d(4, 6, 3), nn.ReLU(), nn.Dropout(), nn.Linear(8, 8), nn.Flatten(), nn.Linear(48, 2))
    lay = layer_layouts(net.eval(), ["0", "1", "2", "3", "5"], torch.randn(1, 4, 10))
    assert {k: (v.axis, v.units) for k, v in lay.items()} == {
        "0": ("channel", 6), "1": ("channel", 6), "2": ("channel", 6), "3": ("channel", 6), "5": ("feature", 2)}
    assert layer_layouts(_tokens(), ["act"], torch.randn(1, 3, 5, dtype=torch.float64))["act"].axis == "feature"


def test_units_in_the_config_one_line_errors() -> None:
    assert build_config({"units": {"blocks": {"0": "token"}}}).units == {"blocks.0": "token"}  # --set nests dots
    for bad, msg in (({"units": "tokens"}, "did you mean 'token'"), ({"units": {"a": "chanel"}}, "layer 'a'")):
        with pytest.raises(UsageError, match=msg) as err:
            build_config(bad)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ layers that cannot be scored

class Odd(nn.Module):
    """A layer never called, one whose output is thrown away, one returning a tuple; token ids in `Ids`."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.unused = nn.Linear(4, 6)
        self.side = nn.Linear(6, 6)
        self.rnn = nn.GRU(6, 6, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        _ = self.side(h)
        o, _ = self.rnn(h.unsqueeze(1))
        return self.head(h + 0.0 * o[:, 0])


class Ids(nn.Module):
    """Token ids [B, L] -> embedding -> mean -> a data-dependent branch (no fx cut) -> two linear maps."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.mid = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.emb(ids).mean(1)
        if float(e.abs().sum()) > 1e9:
            e = 2 * e
        return self.fc(self.mid(e))


@pytest.fixture(scope="module")
def odd() -> nn.Module:
    torch.manual_seed(3)
    return Odd().double().eval()


@pytest.mark.parametrize("case, why", [("unused", "the forward pass never reaches it"),
                                       ("side", "the model's output does not depend on it"),
                                       ("rnn", "it returns a tuple, not a tensor")])
@pytest.mark.parametrize("method", METHODS.names())
def test_unscorable_layers_are_refused_with_one_line_by_every_method(odd: nn.Module, method: str, case: str,
                                                                     why: str) -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    stats = {case: LayerStats(torch.zeros(6), torch.rand(3, 6), 3)}
    with pytest.raises(UsageError) as err:
        compute_scores(odd, x, torch.zeros_like(x), torch.tensor([0, 1, 2]), [case], [method], MethodParams(n_steps=3),
                       stats=stats)
    assert str(err.value).startswith(f"layer {case!r} cannot be scored: {why}") and "\n" not in str(err.value)


@pytest.mark.parametrize("method", METHODS.names())
def test_token_id_inputs_refused_by_methods_that_interpolate_the_input(method: str) -> None:
    torch.manual_seed(4)
    m = Ids().double().eval()
    ids = torch.randint(1, 10, (3, 5))
    stats = {"mid": LayerStats(torch.zeros(4), torch.rand(3, 4), 3)}
    def call():  # noqa: ANN202
        return compute_scores(m, ids, torch.zeros_like(ids), torch.tensor([0, 1, 2]), ["mid"], [method],
                              MethodParams(n_steps=3), stats=stats)
    if spec(method).input_grad:
        with pytest.raises(UsageError, match=rf"layer 'mid' cannot be scored by {method}: the model's input is "
                                             r"torch.int64 \(token ids\)") as err:
            call()
        assert "\n" not in str(err.value)
    else:  # layer IG interpolates in the layer's own space; ablations, random and selectivity need no gradient
        assert call().scores[("mid", method)].shape == (3, 4)


# ------------------------------------------------------------------ missing rules are not silent

def test_deeplift_names_the_modules_it_has_no_rule_for() -> None:
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.GroupNorm(2, 8), nn.Linear(8, 3)
                      ).double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    p = MethodParams(n_steps=8)
    s = compute_scores(m, x, torch.zeros_like(x), torch.zeros(5, dtype=torch.long), ["0", "2"],
                       ["deeplift", "conductance"], p)
    assert s.gaps == {("0", "deeplift"): ["LayerNorm", "GroupNorm"], ("2", "deeplift"): ["GroupNorm"]}
    notes = [w for w in delta_warnings(s, p) if "no DeepLIFT rule" in w]
    assert notes == [s.notes[0], s.notes[1]] and all("\n" not in n for n in notes)
    assert notes[0].startswith("deeplift at 0: no DeepLIFT rule for LayerNorm, GroupNorm after this layer")
    assert "use conductance or layer_ig" in notes[0]
    over = [w for w in delta_warnings(s, p) if w.startswith("deeplift at 0: completeness delta")]
    assert over and "LayerNorm, GroupNorm have no rule of this method" in over[0]  # summation-to-delta misses


def _timm_acts() -> list[type[nn.Module]]:
    from timm.layers import activations as ta

    return [ta.GELU, ta.Swish, ta.HardSwish, ta.GELUTanh]


@pytest.mark.parametrize("act", [nn.SiLU, nn.Hardswish, nn.GELU, nn.Mish, nn.Hardsigmoid, nn.ReLU6, *_timm_acts()])
def test_deeplift_rescale_rule_on_every_elementwise_activation(act: type[nn.Module]) -> None:
    # Linear -> act -> Linear, scored at the first Linear's output z: the rescale rule gives unit j the
    # contribution W2[t, j] * (act(z_j) - act(z'_j)) (Shrikumar et al. 2017, eq. 3 with m = delta act / delta z),
    # and they sum to F(x) - F(x') exactly. Captum alone crosses these activations by the gradient; timm's own
    # activation classes (not subclasses of torch's) get the rule by their class name.
    torch.manual_seed(6)
    m = nn.Sequential(nn.Linear(4, 8), act(), nn.Linear(8, 3)).double().eval()
    x, b = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64) * 0.3
    t = torch.tensor([0, 1, 2, 0, 1])
    s = compute_scores(m, x, b, t, ["0"], ["deeplift"], MethodParams(n_steps=8))
    with torch.no_grad():
        want = m[2].weight[t] * (m[1](m[0](x)) - m[1](m[0](b)))
    assert not s.gaps and not s.notes
    torch.testing.assert_close(s.scores[("0", "deeplift")], want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(s.delta("0", "deeplift"), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-12)


def test_deeplift_rules_are_gone_after_the_call() -> None:
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    before = dict(SUPPORTED_NON_LINEAR)
    m = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 3)).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    compute_scores(m, x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), ["0"], ["deeplift"], MethodParams())
    assert dict(SUPPORTED_NON_LINEAR) == before and nn.SiLU not in SUPPORTED_NON_LINEAR


def test_propagation_gaps_on_norms() -> None:
    torch.manual_seed(5)
    x = torch.randn(5, 4, dtype=torch.float64)
    p = MethodParams(n_steps=8)
    relu = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    r = compute_scores(relu, x, torch.zeros_like(x), torch.zeros(5, dtype=torch.long), ["0"], ["deeplift"], p)
    assert not r.gaps and not r.notes
    norm = nn.Sequential(nn.Linear(4, 8), nn.GroupNorm(2, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    n = compute_scores(norm, x, torch.zeros_like(x), torch.zeros(5, dtype=torch.long), ["0"], ["lrp_epsilon"], p)
    assert n.gaps == {("0", "lrp_epsilon"): ["GroupNorm"]} and "no LRP rule for GroupNorm" in n.notes[0]
    mha = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Softmax(-1), nn.Linear(8, 3)).double().eval()
    n = compute_scores(mha, x, torch.zeros_like(x), torch.zeros(5, dtype=torch.long), ["0"], ["lrp_epsilon"], p)
    assert n.gaps == {("0", "lrp_epsilon"): ["Softmax"]}  # the LN-rule covers LayerNorm (lrp_transformer.py)


def test_functional_non_linearities_after_the_layer_are_named() -> None:
    # torchvision's DenseNet calls F.relu after its features; a user block may call torch.sigmoid: neither is a
    # module, so DeepLIFT crosses them by the gradient. They are listed as F.relu / F.sigmoid; inside nn.ReLU,
    # F.relu is the module's own call and is not listed; for LRP a functional ReLU conserves, a sigmoid does not.
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.fc(x))
            return self.out(torch.sigmoid(nn.functional.relu(h) - 0.5))

    torch.manual_seed(1)
    m = Block().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    p = MethodParams(n_steps=4)
    s = compute_scores(m, x, torch.zeros_like(x), torch.zeros(3, dtype=torch.long), ["fc", "act"],
                       ["deeplift", "lrp_epsilon"], p)
    assert s.gaps[("fc", "deeplift")] == ["F.relu", "F.sigmoid"] == s.gaps[("act", "deeplift")]
    assert s.gaps[("fc", "lrp_epsilon")] == ["F.sigmoid"]
    assert any("no DeepLIFT rule for F.relu, F.sigmoid after this layer" in n for n in s.notes)
