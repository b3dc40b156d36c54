"""Tokens coloured by a score (e.g. per-token conductance through one filter): ANSI for the terminal, HTML.

Positive scores are green, negative red; the strength of the colour is |score| / scale (scale defaults to the
largest |score| of the sentence), so the colours of one sentence compare with each other.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

POS = (46, 160, 67)    # green
NEG = (214, 39, 40)    # red
RESET = "\x1b[0m"


def _scale(scores: Sequence[float], scale: float | None) -> float:
    s = scale if scale is not None else max((abs(v) for v in scores), default=0.0)
    return s if s > 0 else 1.0


def _mix(score: float, scale: float) -> tuple[int, int, int]:
    """White blended towards green (positive) or red (negative) by |score| / scale, clipped to 1."""
    t = min(abs(score) / scale, 1.0)
    base = POS if score >= 0 else NEG
    return tuple(round(255 + t * (c - 255)) for c in base)  # type: ignore[return-value]


def ansi(tokens: Sequence[str], scores: Sequence[float], scale: float | None = None) -> str:
    """The sentence with each token on a 24-bit background colour (black text), for a terminal."""
    sc = _scale(scores, scale)
    out = []
    for tok, v in zip(tokens, scores):
        r, g, b = _mix(float(v), sc)
        out.append(f"\x1b[38;2;0;0;0;48;2;{r};{g};{b}m{tok}{RESET}")
    return " ".join(out)


def plain(tokens: Sequence[str], scores: Sequence[float], digits: int = 3) -> str:
    """The sentence with each token's score in brackets (for logs and terminals without colour)."""
    return " ".join(f"{t}[{v:+.{digits}g}]" for t, v in zip(tokens, scores))


def html_sentence(tokens: Sequence[str], scores: Sequence[float], scale: float | None = None) -> str:
    """One sentence as HTML spans coloured by score; the score shows on hover."""
    sc = _scale(scores, scale)
    spans = []
    for tok, v in zip(tokens, scores):
        r, g, b = _mix(float(v), sc)
        spans.append(f'<span class="tok" style="background: rgb({r},{g},{b})" title="{float(v):+.4f}">'
                     f"{html.escape(tok)}</span>")
    return '<div class="sent">' + " ".join(spans) + "</div>"


def html_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A list of dict rows as an HTML table (values escaped; floats to 4 significant digits)."""
    if not rows:
        return "<p>(no rows)</p>"
    cols = list(columns or rows[0].keys())

    def cell(v: object) -> str:
        return html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title: str, body: Sequence[str]) -> str:
    """A standalone HTML page (no scripts, no external files)."""
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.5}"
             ".tok{padding:1px 3px;border-radius:3px}.sent{margin:.4em 0 .8em}"
             "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
             ".note{color:#555}")
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(body)
            + "\n</body></html>\n")


def terminal(tokens: Sequence[str], scores: Sequence[float], scale: float | None = None,
             color: bool | None = None) -> str:
    """ANSI colours on a terminal (unless $NO_COLOR is set), bracketed scores otherwise."""
    import os
    import sys

    if color is None:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return ansi(tokens, scores, scale) if color else plain(tokens, scores)
