"""Every method (but shapley) at a middle layer of many timm and torchvision networks: does it run, or refuse in
one line? A robustness sweep beyond scripts/check_models.py (which checks values against references).

Random weights (timm's / torchvision's init), float32, 2 random inputs at a small size (64 px; 32 px for the
plain ViTs and the Mixer; 224 px for the Swins, whose windows need it), n_steps 4, statistics from the same 2
inputs. Prints one line per network: the layer, the seconds, `all ok` or the failing methods with their
errors, and the modules the warnings name as having no rule. Exit status 1 when a method fails with anything
but a one-line UsageError.

    PYTHONPATH=. python scripts/smoke_models.py [--models timm/convnext_atto,tv/densenet121] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch

import neuronimp as ni
from neuronimp.errors import UsageError
from neuronimp.methods import METHODS
from neuronimp.models import list_layers

# name -> input size; tv/<name> is torchvision's model through ni.wrap, timm/<name> neuronimp's timm route
MODELS = {
    "timm/convnext_atto": 64, "timm/regnetx_002": 64, "timm/densenet121": 64, "timm/deit_tiny_patch16_224": 32,
    "timm/mixer_s16_224": 32, "timm/swin_tiny_patch4_window7_224": 224, "timm/resnet50": 64,
    "timm/mobilevit_xxs": 64, "timm/efficientvit_b0": 64,
    "tv/densenet121": 64, "tv/mobilenet_v2": 64, "tv/vgg11": 64, "tv/squeezenet1_0": 64,
    "tv/shufflenet_v2_x0_5": 64, "tv/efficientnet_b0": 64, "tv/convnext_tiny": 64, "tv/swin_t": 224,
    "tv/vit_b_16": 32,
}


def build(name: str, size: int) -> ni.models.ModelBundle:  # type: ignore[name-defined]
    """The network as a ModelBundle at input size `size`."""
    if name.startswith("tv/"):
        import torchvision.models as tvm

        arch = name[3:]
        module = getattr(tvm, arch)(**({"image_size": size} if arch.startswith("vit_") else {}))
        return ni.wrap(module, (3, size, size), name=arch)
    options = {"img_size": size} if name.split("/")[1].startswith(("deit_", "mixer_", "vit_")) else {}
    return ni.create_model(name, **options)


def sweep(name: str, size: int) -> tuple[str, list[tuple[str, str, str]], set[str]]:
    """(layer, failures (method, kind, message), names of modules without a rule) for one network."""
    bundle = build(name, size)
    layers = [info.name for info in list_layers(bundle)]
    layer = layers[len(layers) // 2]
    x = torch.randn(2, *bundle.input_shape, generator=torch.Generator().manual_seed(0))
    failures, gaps = [], set()
    for method in (m for m in METHODS.names() if m != "shapley"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ni.score(bundle, x, layers=[layer], methods=[method], n_steps=4, train=x, y=torch.tensor([0, 1]))
            except UsageError as e:
                failures.append((method, "refused", str(e)))
            except Exception as e:  # noqa: BLE001 - what this sweep is for
                failures.append((method, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
        for w in caught:
            text = str(w.message)
            if " rule for " in text:
                gaps.update(n.strip() for n in text.split(" rule for ")[1].split(" after ")[0].split(","))
    return layer, failures, gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated names (default: all of MODELS)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    crashed = False
    for name in a.models.split(","):
        t0 = time.time()
        try:
            layer, failures, gaps = sweep(name, MODELS.get(name, 64))
        except UsageError as e:
            print(f"{name}: refused: {e}", flush=True)
            continue
        crashed |= any(kind != "refused" for _, kind, _ in failures)
        result = "all ok" if not failures else "; ".join(f"{m} {k}: {msg[:160]}" for m, k, msg in failures)
        named = f" | no rule named: {', '.join(sorted(gaps))}" if gaps else ""
        print(f"{name} at {layer} ({time.time() - t0:.0f} s): {result}{named}", flush=True)
    sys.exit(1 if crashed else 0)


if __name__ == "__main__":
    main()
