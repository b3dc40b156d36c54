"""Study 1 (ablation until the flip): hand-computed toys, a naive full-model loop as reference, ties,
never-flipping images, the score/drop rank correlation, the summary, and the probe split of every config."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from neuronimp.config import AblateCfg, AttributionCfg, load_config
from neuronimp.hooks import replace_output
from neuronimp.methods import compute_scores
from neuronimp.methods.ablation import single_unit_drop
from neuronimp.probe import Probe
from neuronimp.studies.flips import (ImageBatch, average_ranks, rank_positions, rank_units, spearman,
                                     summarize)
from neuronimp.studies.flips import ablation_rows as _rows

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def toy() -> nn.Module:
    """x [N, 4] -> a = relu(x) (layer "1", 4 units) -> logits [sum(a), 3]."""
    first, last = nn.Linear(4, 4), nn.Linear(4, 2)
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
        first.bias.zero_()
        last.weight.copy_(torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0]]))
        last.bias.copy_(torch.tensor([0.0, 3.0]))
    return nn.Sequential(first, nn.ReLU(), last).double().eval()


def batch_of(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[Probe, ImageBatch]:
    probe = Probe(model, layer, x[:1])
    with torch.no_grad():
        pred = model(x).argmax(1)
        a = probe.prefix(x)
    n = x.shape[0]
    return probe, ImageBatch(torch.arange(n), torch.zeros(n, dtype=torch.long), pred, pred, x, a)


def run(model: nn.Module, layer: str, x: torch.Tensor, scores: dict, values: dict, **cfg: object) -> list[dict]:
    probe, batch = batch_of(model, layer, x)
    return list(_rows(probe, batch, layer, scores, values, AblateCfg(**cfg)))


def one(rows: list[dict], **where: object) -> dict:
    hit = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(hit) == 1, where
    return hit[0]


X = torch.tensor([[3.0, 1.0, 0.5, 2.0], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)


def test_flip_point_by_hand() -> None:
    # image 0: logits [6.5, 3] -> class 0. Order by activation: u0 (3), u3 (2), u1, u2.
    # zero: k=1 -> 3.5 > 3; k=2 -> 1.5 < 3: flips at k = 2 to class 1.
    # baseline value a0 = [1, 0, 0, 0.75]: k=1 -> 4.5; k=2 -> 3.25; k=3 -> 2.25 < 3: flips at k = 3.
    # image 1: logits [2, 3] -> class 1; ablation only lowers logit 0: never flips, and the fully
    # ablated input is also class 1 (never_flips).
    a0 = torch.tensor([[1.0, 0.0, 0.0, 0.75]], dtype=torch.float64)
    values = {"zero": torch.zeros(1, 4, dtype=torch.float64), "baseline": a0}
    for chunk, max_rows in ((1, 1), (4, 512), (2, 3)):
        rows = run(toy(), "1", X, {("activation", 0): X.clone()}, values, chunk=chunk, max_rows=max_rows)
        z, b = one(rows, image_id=0, ablation="zero"), one(rows, image_id=0, ablation="baseline")
        assert (z["k_flip"], z["new_label"], z["flipped"], z["never_flips"]) == (2, 1, True, False)
        assert (b["k_flip"], b["new_label"], b["never_flips"]) == (3, 1, False)
        assert z["target_logit"] == pytest.approx(6.5) and z["max_k"] == 4 and z["units"] == 4
        n = one(rows, image_id=1, ablation="zero")
        assert (n["k_flip"], n["flipped"], n["new_label"], n["never_flips"]) == (None, False, None, True)
        assert n["fully_ablated_label"] == 1


def test_max_k_stops_the_search() -> None:
    rows = run(toy(), "1", X[:1], {("activation", 0): X[:1].clone()}, {"zero": torch.zeros(1, 4).double()}, max_k=1)
    assert rows[0]["k_flip"] is None and rows[0]["flipped"] is False and rows[0]["max_k"] == 1


def test_ties_go_to_the_lower_unit_index() -> None:
    assert rank_units(torch.tensor([[1.0, 2, 2, 0, 2, float("nan")]])).tolist() == [[1, 2, 4, 0, 3, 5]]
    # all scores equal: order u0, u1, ...: 6.5 - 3 = 3.5, then 3.5 - 1 = 2.5 < 3 -> k = 2
    # (higher index first would give u3, u2, u1 (3.0 is a tie, no flip), u0 -> k = 4)
    rows = run(toy(), "1", X[:1], {("m", 0): torch.zeros(1, 4)}, {"zero": torch.zeros(1, 4).double()})
    assert rows[0]["k_flip"] == 2
    order = torch.tensor([[2, 0, 3, 1]])
    assert rank_positions(order).tolist() == [[1, 3, 0, 2]]


def test_conductance_order_through_the_engine() -> None:
    # After the layer the network is linear with weight 1 per unit and the layer has no bias, so the
    # conductance of unit u is exactly a_u(x) - a_u(0) = a_u: the hand order u0, u3, u1, u2 again.
    m, x = toy(), X[:1]
    s = compute_scores(m, x, torch.zeros_like(x), torch.tensor([0]), ["1"], ["conductance"],
                       AttributionCfg(n_steps=8).params()).scores[("1", "conductance")]
    torch.testing.assert_close(s, x)
    rows = run(m, "1", x, {("conductance", 0): s}, {"zero": torch.zeros(1, 4).double()})
    assert rows[0]["k_flip"] == 2


class Net(nn.Module):
    """A random conv net; with skip=True the input reaches past the cut, so the probe uses hooks."""

    def __init__(self, skip: bool) -> None:
        super().__init__()
        self.skip = skip
        self.conv1, self.relu1 = nn.Conv2d(2, 12, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(12, 6, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(6 * 25, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))  # N x 6 x 5 x 5
        if self.skip:
            h = h + 0.05 * x.mean(1, keepdim=True)
        return self.fc(h.flatten(1))


def naive_flip(model: nn.Module, layer: str, x1: torch.Tensor, order: torch.Tensor, value: torch.Tensor,
               max_k: int) -> tuple[int | None, int | None]:
    """Re-run the whole model for every k with the top-k units patched by a forward hook."""
    with torch.no_grad():
        pred = int(model(x1).argmax(1))
        for k in range(1, max_k + 1):
            def patch(out: torch.Tensor, k: int = k) -> torch.Tensor:
                out = out.clone()
                out[:, order[:k]] = value[:, order[:k]]
                return out
            with replace_output(model, layer, patch):
                label = int(model(x1).argmax(1))
            if label != pred:
                return k, label
    return None, None


@pytest.mark.parametrize("skip", [False, True])
def test_batched_search_equals_the_naive_loop(skip: bool) -> None:
    torch.manual_seed(3)
    m = Net(skip).double().eval()
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    probe, batch = batch_of(m, "relu1", x)
    assert probe.mode == ("hook" if skip else "fx")
    scores = {("a", 0): torch.randn(6, 12), ("b", 0): batch.a.sum((2, 3)).float()}
    mean = batch.a.mean(0, keepdim=True)
    values = {"zero": torch.zeros_like(batch.a[:1]), "mean": mean, "baseline": probe.prefix(x * 0.3)}
    want: dict[tuple, tuple] = {}
    for chunk, max_rows in ((1, 7), (4, 512), (3, 5)):
        rows = list(_rows(probe, batch, "relu1", scores, values, AblateCfg(max_k=9, chunk=chunk, max_rows=max_rows)))
        assert len(rows) == 6 * 2 * 3
        for r in rows:
            i, key = r["image_id"], (r["image_id"], r["method"], r["ablation"])
            if key not in want:
                order = rank_units(scores[(r["method"], 0)])[i]
                v = values[r["ablation"]]
                want[key] = naive_flip(m, "relu1", x[i : i + 1], order, v[i : i + 1] if v.shape[0] > 1 else v, 9)
            assert (r["k_flip"], r["new_label"]) == want[key]
    assert any(r["flipped"] for r in rows) and not all(r["flipped"] for r in rows)


def test_record_logits_follow_every_k() -> None:
    # image 0, zero ablation in order u0, u3, u1, u2: logit 0 is 6.5, 3.5, 1.5, 0.5, 0
    rows = run(toy(), "1", X[:1], {("activation", 0): X[:1].clone()}, {"zero": torch.zeros(1, 4).double()},
               record_logits=True, chunk=1)
    assert rows[0]["target_logits"] == pytest.approx((6.5, 3.5, 1.5, 0.5, 0.0))
    assert rows[0]["k_flip"] == 2


def test_unit_drops_and_rank_correlation() -> None:
    torch.manual_seed(4)
    m = Net(False).double().eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    probe, batch = batch_of(m, "relu1", x)
    zero = torch.zeros_like(batch.a[:1])
    with torch.no_grad():
        # the study's call (cached activation, small suffix batches) equals the plain call ...
        got = single_unit_drop(probe, x, batch.target, zero, a=batch.a, max_rows=5)
        want = single_unit_drop(probe, x, batch.target, zero)
        # ... and the full model re-run with one unit zeroed by a forward hook
        f0 = m(x).gather(1, batch.target.unsqueeze(1)).squeeze(1)
        naive = torch.empty(4, 12, dtype=torch.float64)
        for u in range(12):
            def patch(out: torch.Tensor, u: int = u) -> torch.Tensor:
                out = out.clone()
                out[:, u] = 0
                return out
            with replace_output(m, "relu1", patch):
                naive[:, u] = f0 - m(x).gather(1, batch.target.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got, naive)
    s = torch.randn(4, 12)
    s[0, :3] = s[0, 3]  # ties: average ranks, as scipy
    rho = spearman(s, got)
    for b in range(4):
        assert float(rho[b]) == pytest.approx(spearmanr(s[b].numpy(), got[b].numpy()).statistic, abs=1e-12)
    assert torch.isnan(spearman(torch.ones(1, 5), torch.randn(1, 5)))[0]
    assert average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0]])).tolist() == [[4.0, 1.0, 4.0, 2.0, 4.0]]
    rows = list(_rows(probe, batch, "relu1", {("ablation_zero", 0): got}, {"zero": torch.zeros_like(batch.a[:1])},
                      AblateCfg()))
    assert all(r["score_drop_spearman"] == pytest.approx(1.0) for r in rows)  # a method that IS the drop


def test_summary_by_hand() -> None:
    base = {"layer": "l", "method": "m", "ablation": "zero", "draw": 0, "max_k": 20}
    ks = [(2, False), (4, False), (12, False), (None, False), (None, True), (5, True)]
    df = pd.DataFrame([{**base, "image_id": i, "k_flip": k, "flipped": k is not None, "never_flips": nf,
                        "score_drop_spearman": 0.5 if i % 2 else 0.1} for i, (k, nf) in enumerate(ks)])
    s = summarize(df).iloc[0]
    assert (s.images, s.never_flips, s.eligible, s.flipped, s.never_flips_flipped) == (6, 2, 4, 3, 1)
    assert s.mean_k_flip == pytest.approx(6.0) and s.median_k_flip == 4 and s.max_k_flip == 12
    assert s.share_flip_le10 == pytest.approx(0.5) and s.share_not_flipped_K == pytest.approx(0.25)
    assert s.mean_k_capped == pytest.approx((2 + 4 + 12 + 21) / 4)
    assert s.spearman_mean == pytest.approx(0.3)


def _config_models() -> list[tuple[str, dict, list[str | None]]]:
    """(model, options, layers) of every config in configs/ that loads; None = the model's default layer."""
    found: dict[str, tuple[str, dict, list[str | None]]] = {}
    for path in sorted(CONFIGS.glob("*.yaml")):
        try:
            cfg = load_config(path)
        except Exception:  # noqa: BLE001 - configs are validated by their own tests
            continue
        key = f"{cfg.model.name}{sorted(cfg.model.options.items())}"
        name, opts, layers = found.setdefault(key, (cfg.model.name, dict(cfg.model.options), []))
        for layer in cfg.layers or [None]:
            if layer not in layers:
                layers.append(layer)
    return list(found.values())


@pytest.mark.parametrize("name,options,layers", _config_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_split_of_every_config_model_and_layer(name: str, options: dict, layers: list[str | None]) -> None:
    from neuronimp.errors import UsageError
    from neuronimp.models import create_model, resolve_layer

    try:
        bundle = create_model(name, weights="none", **options)
    except UsageError as exc:  # models that need data-derived options (a vocabulary) are tested elsewhere
        pytest.skip(f"{name}: {exc}")
    torch.manual_seed(0)
    shape = bundle.input_shape
    if name == "googlenet":  # the fx graph and its cut do not depend on the image size; 96x96 keeps it fast
        shape = (3, 96, 96)
    x = torch.randn(1 if name.startswith("inception") else 2, *shape)  # inception v3 once, at 299x299
    with torch.no_grad():
        want = bundle.model(x)
    for layer in layers:
        path = resolve_layer(bundle, layer or bundle.default_layer)
        probe = Probe(bundle.model, path, x[:1])
        with torch.no_grad():
            got = probe.suffix(probe.prefix(x), x)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        if name in ("googlenet", "inception_v3_tv", "digits_cnn", "mnist_cnn"):
            assert probe.mode == "fx", layer  # ablations re-run only the part after the layer
