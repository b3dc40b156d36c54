"""The CUDA path of every registered study: the same tables on the GPU as on the CPU (issue 16).

Each study runs twice through `ni.run` (the one driver), in float64 (`runner.dtype`), once with
`runner.device: cpu` and once on `cuda`; the tables must agree to 1e-6 relative (scores, orders, curves), except
where the study trains networks on the device (`delete`): those must have the same rows and columns and finite
numbers, since cuDNN's training is not bit-reproducible against the CPU.

Marked `gpu`: `make test` deselects them and they skip without CUDA. To check the test logic itself on a CPU
machine, run `NEURONIMP_GPU_TEST_DEVICE=cpu python -m pytest -m gpu tests/integration/test_gpu_studies.py`
(the "GPU" run is then a second CPU run).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import neuronimp as ni
from neuronimp.studies.base import STUDIES

DEVICE = os.environ.get("NEURONIMP_GPU_TEST_DEVICE", "cuda")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs a CUDA device"),
              pytest.mark.filterwarnings("ignore::UserWarning")]


def _digits(study: str, section: dict | None, out: Path, **extra: object) -> dict:
    tree = {"seed": 0, "model": {"name": "digits_cnn"}, "data": {"name": "digits", "split": "test", "limit": 24},
            "layers": ["relu2"], "methods": ["conductance", "deeplift", "lrp_epsilon", "grad_x_act", "random"],
            "attribution": {"n_steps": 8}, "runner": {"out": str(out), "batch_size": 10, "progress": False}}
    if section is not None:
        tree[study] = section
    tree.update(extra)
    return tree


def _score(out: Path) -> dict:
    return _digits("score", None, out, layers=["relu1", "fc1"],
                   methods=["activation", "grad_x_act", "internal_influence", "conductance", "layer_ig", "deeplift",
                            "lrp_epsilon_plus", "ablation_zero", "random"])


def _ablate(out: Path) -> dict:
    return _digits("ablate", {"ablation": ["zero", "baseline"], "max_k": 16, "random_draws": 2}, out)


def _select(out: Path) -> dict:
    sel = {"task": "t", "classes": [3, 5, 8], "per_class": 8, "select_per_class": 5, "ks": [1, 4], "draws": 2,
           "random_draws": 1}
    tree = _digits("select", sel, out, methods=["conductance", "activation"])
    del tree["data"]["limit"]
    return tree


def _shapley(out: Path) -> dict:
    return {"seed": 3, "model": {"name": "digits_mlp", "options": {"width": 8}},
            "data": {"name": "digits", "split": "test"}, "layers": ["relu2"],
            "runner": {"out": str(out), "progress": False},
            "shapley": {"permutations": 6, "eval_limit": 60, "part_permutations": 2, "truncation": 0.0,
                        "orders": ["shapley", "activation", "random"], "random_draws": 2}}


def _delete(out: Path) -> dict:
    tree = yaml.safe_load((ROOT / "configs" / "digits_delete_smoke.yaml").read_text())
    tree["delete"].update(corruptions=[0.0, 1.0], seeds=[0], figures=False, noise_scales=[1.0], scope=["layer"])
    tree["train"]["epochs"] = 2
    tree["runner"]["out"] = str(out)
    return tree


def _filters(out: Path) -> dict:
    from neuronimp.data.fetch import find

    if find("sst2") is None:
        pytest.skip("filters needs the SST-2 files (NEURONIMP_SENTIMENT_DIR or `neuronimp data fetch sst2`)")
    tree = yaml.safe_load((ROOT / "configs" / "kimcnn_sst2.yaml").read_text())
    tree["model"]["weights"] = "none"  # random init: the study's CUDA path, not its findings
    tree["model"]["options"].update(embed_dim=16, maps=4)
    tree["data"]["options"]["limit"] = 240
    tree["data"]["limit"] = 60
    tree["attribution"]["n_steps"] = 4
    tree["sentiment"].update(max_pairs=20, min_nonzero=2, examples=1, report_filters=2)
    tree["runner"].update(out=str(out), progress=False, batch_size=30)
    return tree


TREES = {"score": _score, "ablate": _ablate, "select": _select, "shapley": _shapley, "delete": _delete,
         "filters": _filters}
TRAINS = {"delete"}  # trains networks on the device


def test_every_registered_study_has_a_gpu_test() -> None:
    assert set(TREES) >= set(STUDIES.names())


def _close(name: str, got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and len(got) == len(want), name
    for col in want.columns:
        a, b = got[col].to_numpy(), want[col].to_numpy()
        if np.issubdtype(b.dtype, np.number):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=f"{name}.{col}")
        else:
            assert (a == b).all() or pd.Series(a).equals(pd.Series(b)), f"{name}.{col}"


@pytest.mark.parametrize("study", list(TREES))
def test_study_on_the_gpu_equals_the_cpu(study: str, tmp_path: Path) -> None:
    tree = TREES[study](tmp_path / "out")
    tree["runner"]["dtype"] = "float64"
    runs = {}
    for device in ("cpu", DEVICE):
        t = copy.deepcopy(tree)
        t["runner"]["device"] = device
        runs[device] = ni.run(study, t)
    cpu, gpu = runs["cpu"], runs[DEVICE]
    assert set(gpu) == set(cpu) and cpu
    for name, want in cpu.items():
        got = gpu[name]
        if study in TRAINS:
            assert list(got.columns) == list(want.columns) and len(got) == len(want), name
            numeric = got.select_dtypes("number")
            assert np.isfinite(numeric.to_numpy(dtype=float)[~numeric.isna().to_numpy()]).all(), name
        else:
            _close(name, got, want)
