"""One exception type for every user-facing mistake; the CLI turns it into one line and exit code 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """A bad input (config, path, name, value). Its message is one line, shown as is, exit code 2."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice closest to `name`, or None when nothing is close."""
    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return found[0] if found else None


def unknown(what: str, name: str, choices: Iterable[str], where: str = "") -> UsageError:
    """Build the standard 'unknown X' error: names the value, the allowed ones and the closest match."""
    choices = sorted(str(c) for c in choices)
    hint = closest(name, choices)
    shown = ", ".join(choices[:40]) + (f", ... ({len(choices)} in all)" if len(choices) > 40 else "")
    prefix = f"{where}: " if where else ""
    msg = f"{prefix}unknown {what} {name!r}; allowed: {shown}"
    if hint:
        msg += f" (did you mean {hint!r}?)"
    return UsageError(msg)
