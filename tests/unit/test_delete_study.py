"""Study 2 (cumulative deletion, Morcos et al. 2018): hand-computed toy networks, a literal reference for the
batched ablation levels, the selectivity index on hand-made activations, noise axioms, AUC by hand, and the
label corruption and seeding of the networks."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neuronimp.config import AttributionCfg, DeleteCfg, build_config
from neuronimp.methods.selectivity import layer_statistics, selectivity_index
from neuronimp.studies.curves import (ablation_counts, deletion_treatment, treatment_accuracy, make_sites, noise_edit,
                                      noise_treatment)
from neuronimp.studies.deletion import NetworkData, delete_study
from neuronimp.studies.delete_summary import auc_table, curve_auc, gap_correlation
from neuronimp.studies.selectivity_study import selectivity_correlation, selectivity_rows, unit_moments
from neuronimp.studies.unit_order import canonical_order, random_rank, order_by_score
from tests.conftest import toy_cnn, toy_mlp


pytestmark = pytest.mark.usefixtures("one_thread")


def summing_net() -> nn.Module:
    """h = relu(x) (4 units); logit 1 = sum(h), logit 0 = 2 (a bias): class 1 while sum(h) > 2."""
    fc1, fc2 = nn.Linear(4, 4), nn.Linear(4, 2)
    with torch.no_grad():
        fc1.weight.copy_(torch.eye(4))
        fc1.bias.zero_()
        fc2.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [1, 1, 1, 1]]))
        fc2.bias.copy_(torch.tensor([2.0, 0.0]))
    return nn.Sequential(fc1, nn.ReLU(), fc2).double().eval()


def test_ablation_counts_by_hand() -> None:
    assert ablation_counts(4, 5) == [0, 1, 2, 3, 4]
    assert ablation_counts(10, 5) == [0, 2, 5, 8, 10]  # round half to even: 2.5 -> 2, 7.5 -> 8
    assert ablation_counts(2, 11) == [0, 1, 2]  # duplicates dropped


def test_cumulative_ablation_on_a_hand_made_network() -> None:
    # One input x = [4, 1, 0.5, 0.25], label 1: sum 5.75 > 2. Most active first: ablating 4 leaves 1.75 -> wrong
    # from the first level; least active first stays right until the 4 goes (sum 0 < 2).
    model = summing_net()
    x = torch.tensor([[4.0, 1.0, 0.5, 0.25]], dtype=torch.float64)
    y = torch.tensor([1])
    data = NetworkData(splits={"train": (x, y)}, stats_x=x, classes=(x, y), score=(x, y),
                       score_baseline=torch.zeros_like(x[:1]), num_classes=2)
    cfg = DeleteCfg(orders=["activation:most", "activation:least", "random"], ablation=["zero", "mean"],
                    n_levels=5, random_draws=2, selectivity=False)
    rows = list(delete_study(model, ["1"], data, cfg, AttributionCfg(n_steps=4).params(), "predicted", seed=0))
    df = pd.DataFrame(rows)
    assert set(df["table"]) == {"curves"}

    def curve(order: str, ablation: str, draw: int = 0) -> list[float]:
        g = df[(df.order == order) & (df.ablation == ablation) & (df.draw == draw)].sort_values("n_ablated")
        assert g["fraction_ablated"].tolist() == [0, 0.25, 0.5, 0.75, 1.0]
        return g["accuracy"].tolist()

    assert curve("activation:most", "zero") == [1, 0, 0, 0, 0]
    assert curve("activation:least", "zero") == [1, 1, 1, 1, 0]
    assert curve("activation:most", "mean") == [1, 1, 1, 1, 1]  # the mean over the one input is the input
    # any order: wrong exactly once the 4 is gone, i.e. from the level where it is ablated
    for d in (0, 1):
        acc = curve("random", "zero", d)
        first = acc.index(0.0)
        assert acc == [1.0] * first + [0.0] * (5 - first)
    auc = auc_table(df, []).set_index(["order", "ablation"])
    assert auc.loc[("activation:most", "zero"), "auc"] == pytest.approx(0.125)
    assert auc.loc[("activation:least", "zero"), "auc"] == pytest.approx(0.875)
    assert auc.loc[("activation:most", "mean"), "auc"] == pytest.approx(1.0)


def _reference_mlp(model: nn.Module, x: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor],
                   values: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Literal forward of toy_mlp with units replaced after each ReLU: logits [N, 3]."""
    h = torch.relu(model[0](x))
    h = torch.where(masks[0].bool(), values[0], h)
    h = torch.relu(model[2](h))
    h = torch.where(masks[1].bool(), values[1], h)
    return model[4](h)


@pytest.mark.parametrize("scope", ["layer", "all"])
def test_batched_levels_match_a_literal_reference(scope: str) -> None:
    model = toy_mlp()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 3  # some wrong labels, so accuracy can go up as well as down
    site = make_sites(model, ["1", "3"], [scope], x[:1])[-1]
    values = {"1": torch.rand(1, 8, generator=g, dtype=torch.float64),
              "3": torch.rand(1, 7, generator=g, dtype=torch.float64)}
    rank = random_rank(site.total, seed=5, draw=0, site_index=0)
    tr = deletion_treatment(site, "random", 0, "mean", rank, values, n_levels=6)
    got = treatment_accuracy(site, [tr], x, y, chunk=17)[0]  # chunks that do not divide N
    counts = ablation_counts(site.total, 6)
    for k, c in enumerate(counts):
        m = torch.zeros(site.total)
        m[rank[:c]] = 1
        m1, m3 = (m[:8], m[8:]) if scope == "all" else (torch.zeros(8), m)
        ref = _reference_mlp(model, x, (m1, m3), (values["1"], values["3"]))
        assert float(got[k]) == pytest.approx(float((ref.argmax(1) == y).double().mean()), abs=1e-12)
    assert site.layers == (["1", "3"] if scope == "all" else ["3"])


def test_conv_mean_ablation_per_position_matches_hooked_model() -> None:
    model = toy_cnn()
    x = torch.randn(12, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    site = make_sites(model, ["1"], ["layer"], x[:1])[0]
    mean, sd = unit_moments(model, [x[:6], x[6:]], ["1"])["1"]
    with torch.no_grad():
        a = model[1](model[0](x))  # [12, 4, 6, 6]
    assert torch.allclose(mean, a.mean(0).float(), atol=1e-6)
    assert torch.allclose(sd, a.transpose(0, 1).flatten(1).std(1, unbiased=False).float(), atol=1e-5)
    rank = torch.tensor([2, 0, 3, 1])
    tr = deletion_treatment(site, "x", 0, "mean", rank, {"1": mean.double().unsqueeze(0)}, n_levels=5)
    got = treatment_accuracy(site, [tr], x, y)[0]
    for k in range(5):
        b = a.clone()
        b[:, rank[:k]] = mean.double()[rank[:k]]
        with torch.no_grad():
            ref = model[5](model[4](model[3](model[2](b))))
        assert float(got[k]) == pytest.approx(float((ref.argmax(1) == y).double().mean()))


def test_selectivity_index_on_hand_made_activations() -> None:
    # An identity "layer": the inputs are the activations. 3 classes, 4 units, 2 inputs per class.
    acts = torch.tensor([[2, 1, 3, 0], [2, 1, 3, 0],      # class 0
                         [0, 1, 1, 0], [0, 1, 1, 0],      # class 1
                         [0, 1, 0, 0], [0, 1, 2, 0]],     # class 2
                        dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    model = nn.Sequential(nn.Identity()).eval()
    stats = layer_statistics(model, [(acts, labels)], ["0"], 3)["0"]
    si = selectivity_index(stats.class_means)
    # unit 0: mu_max 2, mu_-max 0 -> 1; unit 1: flat -> 0; unit 2: mu_max 3, mu_-max (1 + 1)/2 -> 2/4; unit 3 dead -> 0
    assert si.tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0])
    single = {"train": (0.9, torch.tensor([0.9, 0.8, 0.5, 0.9]))}
    rows = list(selectivity_rows("0", si, stats.class_means, acts.mean(0), single, "zero"))
    assert [r["preferred_class"] for r in rows][:3] == [0, 0, 0]
    assert [r["importance_train"] for r in rows] == pytest.approx([0.0, 0.1, 0.4, 0.0], abs=1e-6)


def test_delete_study_units_table_and_accuracy_drop_order() -> None:
    model = summing_net()
    x = torch.tensor([[4.0, 1.0, 0.5, 0.25], [0.1, 0.2, 3.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])  # sums 5.75 (class 1, right) and 3.3 (class 1, wrong)
    data = NetworkData(splits={"train": (x, y), "test": (x[:1], y[:1])}, stats_x=x, classes=(x, y),
                       score=(x, y), score_baseline=torch.zeros_like(x), num_classes=2)
    cfg = DeleteCfg(orders=["accuracy_drop", "selectivity:least"], n_levels=5, selectivity=True)
    df = pd.DataFrame(delete_study(model, ["1"], data, cfg, AttributionCfg().params(), "predicted", seed=0))
    units = df[df.table == "units"].set_index("unit")
    # Train accuracy 0.5 unablated. Unit 0 alone: input 1 sum 1.75 < 2 goes wrong, input 2 sum 3.2 stays
    # wrong -> drop 0.5. Unit 2 alone: input 2 sum 0.3 < 2 becomes right -> drop -0.5. Units 1, 3: no change.
    assert units["importance_train"].tolist() == pytest.approx([0.5, 0.0, -0.5, 0.0])
    assert units["importance_test"].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])  # input 1 alone
    # class means: class 1 = x0, class 0 = x1 -> selectivity of unit 0: (4 - 0.1) / (4 + 0.1)
    assert units.loc[0, "selectivity"] == pytest.approx(3.9 / 4.1, rel=1e-6)
    assert units.loc[3, "selectivity"] == pytest.approx(1.0)  # active for class 1 only
    curves = df[df.table == "curves"]
    first = curves[(curves.order == "accuracy_drop:most") & (curves.split == "train")].sort_values("n_ablated")
    # most important first: drops [0.5, 0, -0.5, 0] -> order 0, 1, 3, 2 (ties keep the unit order); the
    # inputs are wrong from unit 0 on, until all are gone: input 2's sum 0 < 2 is then right
    assert first["accuracy"].tolist() == [0.5, 0.0, 0.0, 0.0, 0.5]


def test_noise_scales_each_unit_by_its_sd() -> None:
    m, scales, sd = 20000, torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0])
    a = torch.zeros(3 * m, 2, dtype=torch.float64)
    out = noise_edit(scales, sd, m, seed=1)(a).view(3, m, 2)
    assert out[0].abs().max() == 0  # scale 0: unperturbed
    assert out[1].std(0).tolist() == pytest.approx([1.0, 3.0], rel=0.03)
    assert torch.allclose(out[2], 2 * out[1])  # common random numbers across scales


def test_noise_curve_starts_at_the_clean_accuracy() -> None:
    model = toy_mlp()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    site = make_sites(model, ["1", "3"], ["all"], x[:1])[0]
    sds = {"1": torch.ones(8), "3": torch.ones(7)}
    acc = treatment_accuracy(site, [noise_treatment(site, [0.5, 100.0], 0, sds, seed=0)], x, y)[0]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).double().mean())
    assert float(acc[0]) == pytest.approx(clean)
    again = treatment_accuracy(site, [noise_treatment(site, [0.5, 100.0], 0, sds, seed=0)], x, y, chunk=7)[0]
    assert torch.equal(acc, again)  # seeded per input offset: independent of the chunking


def test_orders_and_summaries_by_hand() -> None:
    assert order_by_score(torch.tensor([0.3, 0.9, 0.3, 0.1]), most=True).tolist() == [1, 0, 2, 3]
    assert order_by_score(torch.tensor([0.3, 0.9, 0.3, 0.1]), most=False).tolist() == [3, 0, 2, 1]
    assert canonical_order("conductance") == "conductance:most"
    assert torch.equal(random_rank(10, 1, 2, 0), random_rank(10, 1, 2, 0))
    assert not torch.equal(random_rank(10, 1, 2, 0), random_rank(10, 1, 3, 0))
    assert curve_auc(np.array([0, 0.5, 1]), np.array([0.8, 0.4, 0.0])) == pytest.approx(0.5)
    assert curve_auc(np.array([0.0, 2.0]), np.array([0.5, 0.5])) == pytest.approx(1.0)  # noise: x / max scale
    assert np.isnan(curve_auc(np.array([0, 1.0]), np.array([0.0, 0.0])))
    auc = pd.DataFrame({"model": "m", "layer": "l", "order": "random", "ablation": "zero", "split": "train",
                        "auc": [0.8, 0.6, 0.5, 0.3], "gap": [0.0, 0.2, 0.3, 0.9]})
    corr = gap_correlation(auc, ["model", "layer", "order", "ablation", "split"]).iloc[0]
    assert corr["spearman_rho"] == pytest.approx(-1.0) and corr["networks"] == 4
    assert corr["pearson_r"] == pytest.approx(np.corrcoef([0.8, 0.6, 0.5, 0.3], [0, 0.2, 0.3, 0.9])[0, 1])
    units = pd.DataFrame({"model": "m", "corruption": 0.0, "seed": 0, "layer": "l", "unit": range(6),
                          "selectivity": [0.1, 0.2, 0.3, 0.4, 0.5, 0.0], "importance_train": [5, 4, 3, 2, 1.0, 0],
                          "importance_test": [1, 1, 1, 1, 1.0, 1], "mean_activation": [1, 1, 1, 1, 1, 0]})
    sc = selectivity_correlation(units, ["model", "corruption", "seed"]).set_index("split")
    assert sc.loc["train", "spearman_rho_alive"] == pytest.approx(-1.0)  # the dead unit 5 left out
    # ranks (2,3,4,5,6,1) vs (6,5,4,3,2,1): sum d^2 = 40, rho = 1 - 6 * 40 / (6 * 35)
    assert sc.loc["train", "spearman_rho"] == pytest.approx(1 - 6 * 40 / (6 * 35))
    assert sc.loc["train", "dead_units"] == 1
    assert np.isnan(sc.loc["test", "spearman_rho"])  # constant importance: undefined, not 0


def test_delete_config_checks_orders() -> None:
    from neuronimp.errors import UsageError

    with pytest.raises(UsageError, match=r"delete\.orders.*unknown order 'conductnce'.*did you mean 'conductance'"):
        build_config({"delete": {"orders": ["conductnce"]}})
    with pytest.raises(UsageError, match=r"suffix must be ':most' or ':least'"):
        build_config({"delete": {"orders": ["selectivity:top"]}})
    with pytest.raises(UsageError, match=r"noise scale -1"):
        build_config({"delete": {"noise_scales": [-1]}})


def test_corruption_fraction_and_seeding() -> None:
    from neuronimp.studies import STUDIES
    from neuronimp.studies.delete import corrupted_train
    from neuronimp.data import labels_of
    from neuronimp.runner.context import build_context

    cfg = build_config({"model": {"name": "digits_mlp", "options": {"width": 8}}, "data": {"name": "digits"},
                        "delete": {"corruptions": [0.0, 0.5, 1.0], "seeds": [0, 1]},
                        "train": {"epochs": 1}, "runner": {"progress": False, "out": "/nonexistent"}})
    ctx = build_context(cfg)
    nets = STUDIES.get("delete").items(ctx)
    assert [(n["corruption"], n["seed"]) for n in nets] == [(c, s) for c in (0.0, 0.5, 1.0) for s in (0, 1)]
    y = labels_of(ctx.data.train)
    n = len(y)
    ys = {}
    for net in nets:
        ds, changed = corrupted_train(ctx, net)
        ys[(net["corruption"], net["seed"])] = labels_of(ds)
        assert changed == pytest.approx(float((labels_of(ds) != y).double().mean()))
    assert torch.equal(ys[(0.0, 0)], y) and torch.equal(ys[(0.0, 1)], y)
    for c in (0.5, 1.0):
        # uniform mode: round(c * N) items get a random class, about 1 in 10 keeps its label by chance
        frac = float((ys[(c, 0)] != y).double().mean())
        assert abs(frac - c * 0.9) < 4 * np.sqrt(c * 0.9 * 0.1 / n) + 1 / n
        assert not torch.equal(ys[(c, 0)], ys[(c, 1)])  # each seed its own draw
    # the items left alone at c = 0.5 are exactly N - round(0.5 N) or more (kept by chance)
    assert int((ys[(0.5, 0)] == y).sum()) >= n - round(0.5 * n)
    # the same seed gives the same labels and the same initial weights (train_or_load seeds before create_model)
    ds_a, _ = corrupted_train(ctx, nets[2])
    assert torch.equal(labels_of(ds_a), ys[(0.5, 0)])
    from neuronimp.models import create_model

    w = {}
    for s in (0, 1):
        torch.manual_seed(s)
        w[s] = create_model("digits_mlp", width=8).model.fc1.weight.clone()
    torch.manual_seed(0)
    assert torch.equal(create_model("digits_mlp", width=8).model.fc1.weight, w[0])
    assert not torch.equal(w[0], w[1])


def test_engine_scores_average_over_batches_with_a_shared_baseline() -> None:
    from neuronimp.studies.unit_order import engine_scores

    model = summing_net()
    x = torch.randn(5, 4, dtype=torch.float64)
    s = engine_scores(model, ["1"], "activation", x, torch.zeros(1, 4, dtype=torch.float64),
                      torch.ones(5, dtype=torch.long), AttributionCfg(n_steps=4).params(), {}, batch=2)
    assert torch.allclose(s["1"], torch.relu(x).mean(0))  # activation score = y(x), averaged over 3 batches
    # conductance to logit 1 = sum(h) from a zero baseline: each unit's own h (completeness, linear suffix)
    c = engine_scores(model, ["1"], "conductance", x, torch.zeros(1, 4, dtype=torch.float64),
                      torch.ones(5, dtype=torch.long), AttributionCfg(n_steps=4).params(), {}, batch=2)
    assert torch.allclose(c["1"], torch.relu(x).mean(0), atol=1e-9)
