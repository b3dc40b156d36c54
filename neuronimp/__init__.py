"""neuronimp: how important is a hidden unit? Conductance and its rivals, and the studies of the papers.

The Python API (`import neuronimp as ni`): `ni.create_model`, `ni.wrap`, `ni.score` (-> Scores, `.to_frame()`),
`ni.ablate`, `ni.select`, `ni.delete` and `ni.run` (any registered study) return DataFrames; see neuronimp/api.py.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_API = ("ablate", "create_model", "delete", "run", "score", "select", "wrap")


def __getattr__(name: str) -> Any:
    """The API functions, imported on first use (so `neuronimp --help` stays fast)."""
    if name in _API:
        from neuronimp import api

        return getattr(api, name)
    if name in ("METHODS", "STUDIES"):
        from neuronimp.methods import METHODS
        from neuronimp.studies import STUDIES

        return {"METHODS": METHODS, "STUDIES": STUDIES}[name]
    raise AttributeError(f"module 'neuronimp' has no attribute {name!r}")


__all__ = [*_API, "__version__"]
