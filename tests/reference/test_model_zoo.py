"""Every method on seven networks against its reference in float64 (scripts/check_models.py; issue 13).

ResNet-18 (torchvision, through `ni.wrap`: its blocks call one ReLU twice and are split per call site), timm
EfficientNet-B0 (SiLU, squeeze-excitation), timm MobileNetV3-small (Hardswish, Hardsigmoid gates), a timm ViT
block (tokens x features), GoogLeNet, Inception-v3 and the Kim CNN: activation, gradient x activation, internal
influence, conductance, layer IG (Captum), DeepLIFT (Captum, same rules), the three ablations (hand-made hooks),
class selectivity (Morcos et al. eq. 1 written out) and the six LRP composites (zennit on a copy canonicalised by
hand) agree to 1e-6 relative, or the method refuses the layer in one line. Measured errors are 0 to 1.1e-12 (the
table in docs/model_check_table.md). Not here: `random` (no reference) and `shapley` (exact oracles in
tests/unit/test_shapley*.py).
On top: DeepLIFT sums to F(x) - F(x') where every module after the layer has a rule. (Layers that cannot be
scored are refused in one line by every method: tests/unit/test_units.py and tests/integration/test_bad_inputs.py.)
"""
from __future__ import annotations

import pytest

from scripts.check_models import CASES, METHODS, TOL, check_case

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

# where DeepLIFT has a rule for every module after the layer, its contributions sum to F(x) - F(x')
EXACT_DEEPLIFT = {"resnet18", "googlenet", "inception_v3", "kim_cnn", "efficientnet_b0", "mobilenetv3"}


@pytest.mark.parametrize("name", list(CASES))
def test_every_method_matches_its_reference(name: str) -> None:
    cells = check_case(name, METHODS, layers=CASES[name].layers[:1])
    assert {c.method for c in cells} == set(METHODS)
    for c in cells:
        assert c.status in ("match", "refused"), (c.method, c.layer, c.status, c.error, c.note)
        if c.status == "refused":
            assert "\n" not in c.note and c.layer in c.note
        else:
            assert c.error is not None and c.error <= TOL
    if name in EXACT_DEEPLIFT:
        (dl,) = [c for c in cells if c.method == "deeplift"]
        assert dl.delta is not None and dl.delta < 1e-9, dl.delta

