"""Progress bars (tqdm, on stderr, with items per second) and the final summary print."""
from __future__ import annotations

import sys
from typing import Any

import pandas as pd
from tqdm.auto import tqdm


def progress(total: int, desc: str = "", show: bool = True, unit: str = "it") -> Any:
    """A tqdm bar on stderr (disabled when `show` is False)."""
    return tqdm(total=total, desc=desc, disable=not show, unit=unit, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)


def print_table(df: pd.DataFrame, title: str = "") -> None:
    """Print a summary table to stdout as markdown-like text."""
    if title:
        print(f"\n{title}")
    if df.empty:
        print("(no rows)")
        return
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
