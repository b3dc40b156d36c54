"""The Python API (`import neuronimp as ni`): the README's example runs, and every study gives through the API
exactly the table the CLI writes for the same settings (both go through the one driver)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

import neuronimp as ni
from neuronimp.cli import app
from neuronimp.data import load_data
from neuronimp.errors import UsageError

pytestmark = pytest.mark.filterwarnings("ignore:conductance at:UserWarning")
N = 24  # test images


def digits(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_data("digits")
    return torch.stack([d.test[i][0] for i in range(n)]), torch.tensor([d.test[i][1] for i in range(n)])


def model() -> object:
    """The CLI's model: the config seed (0), then built."""
    torch.manual_seed(0)
    return ni.create_model("digits_cnn", num_classes=10)


def test_readme_example_runs_on_digits() -> None:
    # --- the README's example, on the bundled digits (random init) ---
    m = ni.create_model("digits_cnn")                       # or ni.wrap(any_nn_module, input_shape=(1, 8, 8))
    x, _ = digits(4)
    s = ni.score(m, x, layers=["relu1", "relu2"], methods=["conductance", "deeplift"])
    df = s.to_frame()                                        # input, layer, unit, method, score, delta
    t = ni.ablate(m, x, layer="relu2", methods=["conductance", "grad_x_act"])
    # ---
    assert list(df.columns) == ["input", "layer", "unit", "unit_axis", "method", "score", "delta"]
    assert len(df) == 4 * (16 + 32) * 2
    with torch.no_grad():  # completeness: total conductance and DeepLIFT sum to F(x) - F(x') (+ the delta)
        logits = m.model(x)
        f = logits.gather(1, logits.argmax(1, keepdim=True)).squeeze(1) - m.model(torch.zeros_like(x)).gather(
            1, logits.argmax(1, keepdim=True)).squeeze(1)
    for (layer, method), g in df.groupby(["layer", "method"]):
        sums = g.groupby("input").score.sum().to_numpy()
        deltas = g.groupby("input").delta.first().to_numpy()
        assert sums - deltas == pytest.approx(f.double().numpy(), abs=1e-4), (layer, method)
    assert set(t.method) == {"conductance", "grad_x_act"} and len(t) == 4 * 2
    assert t.loc[t.method == "conductance", "delta"].notna().all() and t.loc[t.method == "grad_x_act", "delta"].isna().all()


def test_plain_module_is_scored_right_and_left_unchanged() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(4))
        net[0].bias.copy_(torch.tensor([-10.0, 1.0, 1.0, 1.0]))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    s = ni.score(net, torch.ones(1, 4), layers=["0"], methods=["activation"])
    assert s.scores[("0", "activation")].tolist() == [[-9.0, 2.0, 2.0, 2.0]]  # not the in-place ReLU's 0
    assert net[1].inplace is True and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_unknown_layer_and_bad_target_are_usage_errors() -> None:
    m = ni.create_model("digits_cnn")
    x, _ = digits(2)
    with pytest.raises(UsageError, match="unknown layer 'mixed4d'.*allowed: conv1, relu1"):
        ni.score(m, x, layers=["mixed4d"])
    with pytest.raises(UsageError, match="target = 99"):
        ni.score(m, x, layers=["relu2"], target=99)
    with pytest.raises(UsageError, match="attribution.n_steps"):
        ni.score(m, x, layers=["relu2"], n_steps=0)


def cli_run(study: str, tree: dict, tmp: Path) -> Path:
    path = tmp / f"{study}.yaml"
    path.write_text(yaml.safe_dump(tree))
    res = CliRunner().invoke(app, [study, "--config", str(path)])
    assert res.exit_code == 0, res.output
    return Path(tree["runner"]["out"])


def test_ablate_api_equals_cli(tmp_path: Path) -> None:
    opts = {"ablation": ["zero", "baseline"], "max_k": 16, "random_draws": 2}
    tree = {"seed": 0, "model": {"name": "digits_cnn"}, "data": {"name": "digits", "split": "test", "limit": N},
            "layers": ["relu2"], "methods": ["conductance", "grad_x_act", "random"],
            "attribution": {"n_steps": 8}, "ablate": opts,
            "runner": {"out": str(tmp_path / "cli"), "batch_size": 10, "progress": False}}
    want = pd.read_csv(cli_run("ablate", tree, tmp_path) / "ablate.csv")
    x, y = digits()
    got = ni.ablate(model(), x, y=y, layer="relu2", methods=["conductance", "grad_x_act", "random"],
                    attribution={"n_steps": 8}, batch_size=10, **opts)
    pd.testing.assert_frame_equal(got, want)


def test_select_api_equals_cli(tmp_path: Path) -> None:
    sel = {"task": "t", "classes": [3, 5, 8], "per_class": 8, "select_per_class": 5, "ks": [1, 4], "draws": 2,
           "random_draws": 1}
    tree = {"seed": 0, "model": {"name": "digits_cnn"}, "data": {"name": "digits", "split": "test"},
            "layers": ["relu2"], "methods": ["conductance", "activation"], "attribution": {"n_steps": 4},
            "select": sel, "runner": {"out": str(tmp_path / "cli"), "batch_size": 10, "progress": False}}
    want = pd.read_csv(cli_run("select", tree, tmp_path) / "select.csv")
    d = load_data("digits")
    x = torch.stack([d.test[i][0] for i in range(len(d.test))])
    y = torch.tensor([d.test[i][1] for i in range(len(d.test))])
    got = ni.select(model(), x, y, layer="relu2", methods=["conductance", "activation"],
                    attribution={"n_steps": 4}, batch_size=10, class_names=d.class_names, **sel)
    pd.testing.assert_frame_equal(got, want)


def test_score_and_delete_api_equal_cli(tmp_path: Path) -> None:
    tree = {"seed": 0, "model": {"name": "digits_cnn"}, "data": {"name": "digits", "limit": 6},
            "layers": ["relu1", "fc1"], "methods": ["conductance", "deeplift", "random"],
            "attribution": {"n_steps": 4}, "runner": {"out": str(tmp_path / "s"), "progress": False}}
    want = pd.read_csv(cli_run("score", tree, tmp_path) / "scores.csv")
    pd.testing.assert_frame_equal(ni.run("score", tree)["scores"], want)

    smoke = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "digits_delete_smoke.yaml").read_text())
    smoke["delete"].update(corruptions=[0.0, 1.0], seeds=[0], figures=False, noise_scales=[1.0], scope=["layer"])
    smoke["train"]["epochs"] = 3
    smoke["runner"]["out"] = str(tmp_path / "d")
    out = cli_run("delete", smoke, tmp_path)
    got = ni.delete(smoke)  # the networks come from the same cache
    for name in ("delete_curves", "delete_units", "delete_auc", "delete_gap_correlation"):
        pd.testing.assert_frame_equal(got[name], pd.read_csv(out / f"{name}.csv"), check_dtype=False)
