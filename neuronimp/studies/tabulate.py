"""Tables as text: the one markdown table writer (study summaries, the report), and the CSV round trip that
makes in-memory rows equal to rows read back from a part file."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

FLOAT_FORMAT = "%.9g"  # 9 significant digits: a float32 round-trips exactly


def round_trip(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a CSV part file would give them back (same writer and reader, in memory)."""
    df = pd.DataFrame(rows)
    if len(df.columns) == 0:
        return pd.DataFrame()
    text = df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return pd.read_csv(io.StringIO(text))


def markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (floats to `digits` significant digits, NaN blank, '|' escaped)."""
    if df.empty:
        return "(no rows)\n"

    def fmt(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
