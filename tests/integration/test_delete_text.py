"""`neuronimp delete` on a text model: configs/kimcnn_sst2_delete.yaml shrunk to a slice of SST-2.

Each network trains its own embedding; the cached checkpoint must hold it, a re-run must load it, and every
accuracy the study reports must come from the trained embedding, not from the context's random one.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from neuronimp.cli import app
from neuronimp.studies import STUDIES, delete
from neuronimp.config import load_config
from neuronimp.data.sentences import default_root
from neuronimp.methods.baselines import channel_mean
from neuronimp.models import checkpoint_module, load_weights
from neuronimp.runner.context import build_context
from neuronimp.training import evaluate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.skipif(not (default_root() / "stsa.binary.train").is_file(), reason="no SST-2 files"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/kimcnn_sst2_delete.yaml on 200 sentences per split, 16-d embeddings, 4 maps per window."""
    tmp = tmp_path_factory.mktemp("kimdel")
    tree = yaml.safe_load((ROOT / "configs" / "kimcnn_sst2_delete.yaml").read_text())
    tree["model"]["options"].update(embed_dim=16, maps=4)
    tree["data"]["options"]["limit"] = 200
    tree["attribution"]["n_steps"] = 4
    # a few fast epochs so the network really learns from its embedding (Kim's Adadelta needs many more)
    tree["model"]["options"]["dropout"] = 0.0
    tree["train"].update(epochs=6, batch_size=10, optimizer="adam", lr=0.01, max_norm=None)
    tree["delete"].update(corruptions=[0.0, 1.0], seeds=[0], n_levels=3, random_draws=2, noise_scales=[1.0],
                          noise_draws=1, score_limit=32, stats_limit=200, eval_limit=None,
                          orders=["random", "conductance:most", "selectivity:most"])
    tree["runner"].update(out=str(tmp / "out"), batch_size=100, progress=False)
    path = tmp / "kimdel.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _run(config: Path) -> object:
    return CliRunner().invoke(app, ["delete", "--config", str(config), "--set", "delete.figures=false"])


def test_delete_text_trains_caches_and_uses_the_networks_embedding(config: Path) -> None:
    res = _run(config)
    assert res.exit_code == 0, res.output
    cfg = load_config(config)
    out = Path(cfg.runner.out)
    nets = pd.read_csv(out / "delete_networks.csv")
    curves = pd.read_csv(out / "delete_curves.csv")
    assert len(nets) == 2 and set(nets.corruption) == {0.0, 1.0}
    assert set(curves.layer) == {"features"} and (curves.units == 12).all()      # 3 windows x 4 maps
    assert (nets.train_items == 200).all()

    ctx = build_context(cfg)
    ckpts = sorted((out / "networks").glob("*.pt"))
    assert len(ckpts) == 2
    for row in nets.itertuples():
        net = next(n for n in STUDIES.get("delete").items(ctx) if n["corruption"] == row.corruption)
        path = Path(row.checkpoint)
        # the checkpoint holds the embedding and the model (tensors only), and the embedding was trained
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        assert "embed.non_static.weight" in state and "model.fc.weight" in state
        torch.manual_seed(net["seed"])
        initial = delete.network_bundle(ctx, net["model"], net["options"])
        assert not torch.equal(state["embed.non_static.weight"], initial.embed.non_static.weight)
        # load it ourselves (model + embedding) and evaluate: the study's accuracies come from this network
        bundle = delete.network_bundle(ctx, net["model"], net["options"])
        load_weights(checkpoint_module(bundle), str(path))
        bundle.embed.eval()
        test_acc = evaluate(bundle.model, bundle.embed, ctx.data.test, ctx.device, ctx.dtype)["acc"]
        clean = evaluate(bundle.model, bundle.embed, ctx.data.train, ctx.device, ctx.dtype)["acc"]
        assert row.test_acc == pytest.approx(test_acc, abs=1e-12)
        assert row.train_acc_clean == pytest.approx(clean, abs=1e-12)
        # the unablated curve points were computed from inputs embedded by `tensors` (another code path)
        zero = curves[(curves.corruption == row.corruption) & (curves.n_ablated == 0)]
        assert zero[zero.split == "test"].accuracy.to_numpy() == pytest.approx(test_acc, abs=1e-12)
        assert zero[zero.split == "train"].accuracy.to_numpy() == pytest.approx(row.train_acc, abs=1e-12)
        # on the labels it was trained on, the network has fitted; with another (random) embedding, the
        # context's or a fresh one, the same model is near chance: the embedding that was used is the trained one
        train = delete.corrupted_train(ctx, net)[0]
        own = evaluate(bundle.model, bundle.embed, train, ctx.device, ctx.dtype)
        assert own["acc"] == pytest.approx(row.train_acc, abs=1e-12) and own["acc"] >= 0.99
        for embed in (initial.embed, ctx.bundle.embed):
            other = evaluate(bundle.model, embed, train, ctx.device, ctx.dtype)
            assert other["acc"] < 0.75 and other["loss"] > own["loss"] + 0.3
        # the zero baseline is the all-padding sentence in the trained embedding space
        ids = torch.zeros(1, ctx.data.input_shape[0], dtype=torch.long)
        assert torch.equal(bundle.embed(ids), torch.zeros(1, *bundle.input_shape))

    # re-run without the part files: the networks are loaded from the cache, not retrained, and give the
    # same numbers (a checkpoint without its embedding would give other accuracies)
    mtimes = {p: p.stat().st_mtime_ns for p in ckpts}
    for part in (out / "parts" / "delete").glob("*"):
        part.unlink()
    res2 = _run(config)
    assert res2.exit_code == 0, res2.output
    assert {p: p.stat().st_mtime_ns for p in (out / "networks").glob("*.pt")} == mtimes
    pd.testing.assert_frame_equal(pd.read_csv(out / "delete_networks.csv"), nets)
    pd.testing.assert_frame_equal(pd.read_csv(out / "delete_curves.csv"), curves)


def test_delete_text_mean_baseline_uses_the_networks_embedding(config: Path) -> None:
    cfg = load_config(config, overrides=["attribution.baseline=mean"])
    ctx = build_context(cfg)
    net = STUDIES.get("delete").items(ctx)[0]
    torch.manual_seed(1)
    bundle = delete.network_bundle(ctx, net["model"], net["options"])
    ids = torch.stack([ctx.data.train[i][0] for i in range(len(ctx.data.train))])          # N x L
    x = bundle.embed(ids)                                                                   # N x 1 x L x D
    base = delete.network_baseline(ctx, bundle, ctx.data.train, x)
    assert base.shape == (1, 1, 1, 1)
    assert base.flatten() == pytest.approx(channel_mean(x).detach().flatten(), abs=1e-6)
    ctx_mean = channel_mean(ctx.bundle.embed(ids)).detach()                                 # the context's
    assert base.flatten() != pytest.approx(ctx_mean.flatten(), abs=1e-6)
