"""Literal LRP oracle: the rules written out on dense matrices, layer by layer, for a conv-relu-conv-relu-flatten-
linear net with biases, against `lrp.lrp_relevance` at every hidden layer (float64, 1e-6 relative).

Each conv is first written out as the dense matrix of its definition (M[(o, y, x), (c, y + dy, x + dx)] =
W[o, c, dy, dx], loops over every index), so every rule below is a plain sum over j (inputs) and k (outputs).
The hidden layers read ReLU outputs, a_j >= 0, which the oracle asserts, so the rules take their textbook form:
  epsilon  R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k,  z_k = sum_j a_j w_jk + b_k   (Bach et al. 2015, eq. 58)
  gamma    R_j = sum_k a_j (w_jk + g w_jk^+) / (sum_j a_j (w_jk + g w_jk^+) + b_k + g b_k^+) R_k   for z_k > 0
           (Montavon et al. 2019, sec. 10.2.1, with the bias in the denominator as zennit does; for z_k < 0, which only
           the output logit can have with R_k != 0, the mirrored form with w^- and b^-, Andeol et al. 2021)
  zplus    R_j = sum_k a_j w_jk^+ / (sum_j a_j w_jk^+ + b_k^+) R_k          (Montavon et al. 2017; zennit
           keeps the positive bias in the denominator)
  alpha2_beta1  R_j = sum_k [2 a_j w_jk^+ / (sum_j a_j w_jk^+ + b_k^+) - a_j w_jk^- / (sum_j a_j w_jk^- + b_k^-)] R_k
           (Bach et al. 2015, eq. 60)
Every denominator other than epsilon's is stabilised as d + s sign d (sign 0 = +1), s = 1e-6; ReLU passes R on.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronimp.methods.lrp import lrp_relevance
from tests.conftest import toy_cnn

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
EPS, STAB, GAMMA = 1e-3, 1e-6, 0.3


def sgn(d: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1."""
    return torch.where(d >= 0, 1.0, -1.0).to(d)


def conv_matrix(conv: nn.Conv2d, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """The conv (stride 1, no padding) on a C x h x w input as a dense matrix M [K, J] and bias [K], by definition."""
    o_n, c_n, kh, kw = conv.weight.shape
    oh, ow = h - kh + 1, w - kw + 1
    weight = conv.weight.detach()
    m = torch.zeros(o_n * oh * ow, c_n * h * w, dtype=weight.dtype)
    for o in range(o_n):
        for y in range(oh):
            for x in range(ow):
                k = (o * oh + y) * ow + x
                for c in range(c_n):
                    for dy in range(kh):
                        for dx in range(kw):
                            m[k, (c * h + y + dy) * w + x + dx] = weight[o, c, dy, dx]
    b = conv.bias.detach().repeat_interleave(oh * ow)
    return m, b, (o_n, oh, ow)


def rule(name: str, m: torch.Tensor, b: torch.Tensor, a: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """Relevance of the inputs a [J] of z = m a + b (m [K, J]) given the outputs' relevance r_out [K]."""
    assert (a >= 0).all(), "the oracle is written for ReLU outputs"
    K, J = m.shape  # noqa: N806
    r_in = torch.zeros(J, dtype=m.dtype)
    z = m @ a + b
    for k in range(K):
        if r_out[k] == 0:
            continue
        if name == "epsilon":
            r_in += a * m[k] / (z[k] + EPS * sgn(z[k])) * r_out[k]
        elif name == "zplus":
            wp = m[k].clamp(min=0)
            d = (a * wp).sum() + b[k].clamp(min=0)
            r_in += a * wp / (d + STAB * sgn(d)) * r_out[k]
        elif name == "gamma":
            if z[k] > 0:
                wg, bg = m[k] + GAMMA * m[k].clamp(min=0), b[k] + GAMMA * b[k].clamp(min=0)
            elif z[k] < 0:
                wg, bg = m[k] + GAMMA * m[k].clamp(max=0), b[k] + GAMMA * b[k].clamp(max=0)
            else:
                continue  # z_k = 0: no share (zennit's masks z > 0 and z < 0)
            d = (a * wg).sum() + bg
            r_in += a * wg / (d + STAB * sgn(d)) * r_out[k]
        elif name == "alpha2_beta1":
            wp, wn = m[k].clamp(min=0), m[k].clamp(max=0)
            dp = (a * wp).sum() + b[k].clamp(min=0)
            dn = (a * wn).sum() + b[k].clamp(max=0)
            r_in += (2 * a * wp / (dp + STAB * sgn(dp)) - a * wn / (dn + STAB * sgn(dn))) * r_out[k]
        else:
            raise ValueError(name)
    return r_in


# composite -> (rule on the convs, rule on the dense layer); the box rule of epsilon_gamma_box sits on the first
# conv, whose input is no hidden layer, so it has no say here
COMPOSITES = {
    "epsilon": ("epsilon", "epsilon"),
    "gamma": ("gamma", "gamma"),
    "zplus": ("zplus", "zplus"),
    "epsilon_plus": ("zplus", "epsilon"),
    "epsilon_gamma_box": ("gamma", "epsilon"),
    "epsilon_alpha2_beta1": ("alpha2_beta1", "epsilon"),
}


def oracle(net: nn.Sequential, x: torch.Tensor, t: int, composite: str) -> dict[str, torch.Tensor]:
    """Relevance per unit (channel or feature) at layers "0".."4" of toy_cnn for one input x [C, H, W]."""
    conv_rule, dense_rule = COMPOSITES[composite]
    conv1, conv2, fc = net[0], net[2], net[5]
    m1, b1, shape1 = conv_matrix(conv1, x.shape[1], x.shape[2])
    a1 = (m1 @ x.flatten() + b1).clamp(min=0)  # relu1 output, flattened
    m2, b2, shape2 = conv_matrix(conv2, shape1[1], shape1[2])
    a2 = (m2 @ a1 + b2).clamp(min=0)  # relu2 output = flatten output
    w3, b3 = fc.weight.detach(), fc.bias.detach()
    logits = w3 @ a2 + b3
    r_logits = torch.zeros_like(logits)
    r_logits[t] = logits[t]  # R_out = F(x) at the target
    r_a2 = rule(dense_rule, w3, b3, a2, r_logits)
    r_a1 = rule(conv_rule, m2, b2, a1, r_a2)
    per_channel2 = r_a2.view(shape2).flatten(1).sum(1)
    per_channel1 = r_a1.view(shape1).flatten(1).sum(1)
    # ReLU passes relevance on: a conv's output holds the same relevance as the ReLU after it
    return {"0": per_channel1, "1": per_channel1, "2": per_channel2, "3": per_channel2, "4": r_a2}


@pytest.mark.parametrize("composite", list(COMPOSITES))
def test_lrp_rules_match_the_literal_formulas(composite: str) -> None:
    net = toy_cnn()  # biases on: the rules' bias terms are part of the check
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        t = net(x).argmin(1)  # the smallest logit: negative ones exercise the z < 0 branches
    ref = [oracle(net, x[i], int(t[i]), composite) for i in range(x.shape[0])]
    for layer in ("0", "1", "2", "3", "4"):
        got, delta = lrp_relevance(net, layer, x, t, composite, epsilon=EPS, gamma=GAMMA, stabilizer=STAB)
        want = torch.stack([r[layer] for r in ref])
        scale = float(want.abs().max())
        assert scale > 0
        torch.testing.assert_close(got, want, atol=1e-6 * scale, rtol=1e-6)
        f = net(x).gather(1, t[:, None]).squeeze(1).detach()
        torch.testing.assert_close(delta, want.sum(1) - f, atol=1e-6 * scale, rtol=0)
