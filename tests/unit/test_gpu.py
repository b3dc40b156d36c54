"""GPU paths: the same numbers on CUDA as on CPU (skipped on machines without a GPU)."""
from __future__ import annotations

import pytest
import torch

from neuronimp.config import AttributionCfg
from neuronimp.methods import compute_scores
from tests.conftest import toy_cnn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_matches_cpu_in_float64() -> None:
    m = toy_cnn()
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 0])
    cfg = AttributionCfg(n_steps=16).params()
    methods = ["activation", "grad_x_act", "internal_influence", "conductance", "ablation_zero"]
    cpu = compute_scores(m, x, torch.zeros_like(x), t, ["1", "3"], methods, cfg)
    g = compute_scores(m.cuda(), x.cuda(), torch.zeros_like(x).cuda(), t.cuda(), ["1", "3"], methods, cfg)
    for k, v in cpu.scores.items():
        torch.testing.assert_close(g.scores[k].cpu(), v, atol=1e-9, rtol=0)


def test_bf16_autocast_reports_its_delta() -> None:
    m = toy_cnn().float().cuda()
    x = torch.randn(4, 2, 8, 8, device="cuda")
    t = torch.tensor([0, 1, 2, 0], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        s = compute_scores(m, x, torch.zeros_like(x), t, ["3"], ["conductance"], AttributionCfg(n_steps=32).params())
    assert torch.isfinite(s.deltas[("3", "conductance")]).all()
    full = compute_scores(m, x, torch.zeros_like(x), t, ["3"], ["conductance"], AttributionCfg(n_steps=32).params())
    # the last conv layer of a ReLU net converges fast in fp32
    assert full.deltas[("3", "conductance")].abs().max() < 1e-3
    c16, c32 = s.scores[("3", "conductance")].float(), full.scores[("3", "conductance")]
    assert (c16 - c32).abs().max() <= 0.05 * c32.abs().max()  # bf16 costs precision, not meaning
