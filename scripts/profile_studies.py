"""Where the time of a small end-to-end run of every study goes (cProfile; issue 16, part 3).

    python scripts/profile_studies.py [--out docs/profile.md]

Each study runs in memory through the one driver (`neuronimp.api.run`) on a digits config (trained digits CNN
from `make demo` when present, else random init); the table lists, per study, the wall time and the functions
with the largest cumulative time, grouped as data loading, the engine (scores), the study's own work.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import torch

import neuronimp as ni

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "results" / "checkpoints" / "digits_cnn.pt"
BASE = {"seed": 0, "model": {"name": "digits_cnn", "weights": str(CKPT) if CKPT.is_file() else "none"},
        "data": {"name": "digits", "split": "test", "limit": 60}, "layers": ["relu2"],
        "attribution": {"n_steps": 32}, "runner": {"progress": False, "batch_size": 30}}
STUDIES = {
    "score": {"methods": ["activation", "grad_x_act", "internal_influence", "conductance", "deeplift"]},
    "ablate": {"methods": ["conductance", "grad_x_act", "random"], "ablate": {"ablation": ["zero", "mean"]}},
    "select": {"methods": ["conductance", "activation"], "data": {"name": "digits", "split": "test"},
               "select": {"task": "p", "classes": [3, 5, 8], "per_class": 20, "select_per_class": 12,
                          "ks": [1, 4], "draws": 2}},
    "delete": {"model": {"name": "digits_mlp", "options": {"width": 16}}, "layers": ["relu1", "relu2"],
               "train": {"epochs": 5, "lr": 0.01}, "data": {"name": "digits", "split": "test"},
               "delete": {"corruptions": [0.0, 1.0], "orders": ["random", "conductance:most"], "n_levels": 5,
                          "figures": False}},
    "shapley": {"model": {"name": "digits_mlp", "options": {"width": 16}}, "layers": ["relu2"],
                "shapley": {"permutations": 8, "eval_limit": 60}},
}
GROUPS = {"data": ("neuronimp/data/", "dataloader", "torch/utils/data"), "engine": ("neuronimp/methods/",),
          "training": ("neuronimp/training.py",), "probe": ("neuronimp/probe.py",)}


def profile(study: str) -> tuple[float, pstats.Stats]:
    """Run one study in memory under cProfile; (wall seconds, stats)."""
    import tempfile

    tree = {**BASE, **STUDIES[study]}
    tree["runner"] = {**BASE["runner"], "out": tempfile.mkdtemp(prefix=f"np_profile_{study}_")}  # delete: no cache
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    ni.run(study, tree)
    prof.disable()
    return time.perf_counter() - t0, pstats.Stats(prof)


def top(stats: pstats.Stats, n: int = 8) -> list[tuple[str, float]]:
    """The neuronimp functions with the largest cumulative time (excluding the driver and the API)."""
    rows = []
    for (path, line, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "neuronimp/" in path and not any(s in path for s in ("runner/driver", "runner/parts", "api.py")):
            rows.append((f"{path.split('neuronimp/')[-1]}:{name}", cum))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> None:
    """Profile every study and write the markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "profile.md"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import neuronimp.api  # noqa: F401 - imports (and the method registry) outside the profiles
    import neuronimp.runner.driver  # noqa: F401
    import captum.attr  # noqa: F401 - DeepLIFT's first use would otherwise count Captum's import (~0.6 s)
    lines = ["# Where the time goes: one small end-to-end run of every study", "",
             f"`python scripts/profile_studies.py` ({args.threads} torch thread(s), CPU, digits configs in the "
             "script; cumulative time of the neuronimp functions that dominate).", ""]
    for study in STUDIES:
        wall, stats = profile(study)
        lines += [f"## {study}: {wall:.1f} s", "", "| function | cumulative s | share |", "|---|---|---|"]
        lines += [f"| `{f}` | {c:.2f} | {c / wall:.0%} |" for f, c in top(stats)]
        lines.append("")
        print(f"{study}: {wall:.1f} s; " + "; ".join(f"{f} {c:.2f}s" for f, c in top(stats, 3)), flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
