"""The one place that picks matplotlib's backend: Agg (files only; works on headless cluster nodes)."""
from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (set once, before pyplot is first imported)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
