"""The sign map: filters (rows) x sentences (columns), each cell the sign of the filter's conductance."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neuronimp.plotting import pyplot


def sign_map(sgn: torch.Tensor, filters: Sequence[int], sentences: Sequence[int], title: str,
             boundaries: Sequence[tuple[int, str]] = ()) -> Any:
    """The figure of signs [N, U] (rows `filters`, columns `sentences`); boundaries: (row, label) marks."""
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    grid = sgn[list(sentences)][:, list(filters)].T.float().numpy()     # U x N
    fig, ax = plt.subplots(figsize=(10, 7), dpi=120)
    cmap = ListedColormap([(0.84, 0.15, 0.16), (1.0, 1.0, 1.0), (0.18, 0.63, 0.26)])  # -1 red, 0, +1 green
    ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-1, vmax=1)
    for row, label in boundaries:
        ax.axhline(row - 0.5, color="black", linewidth=0.8)
        ax.text(grid.shape[1] + 1, row, label, va="top", fontsize=8, clip_on=False)
    ax.set_xlabel("sentences (sorted by the sum of their filter signs)")
    ax.set_ylabel("filters (grouped by category)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
