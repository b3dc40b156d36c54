"""One exception type for every user-facing mistake; the CLI turns it into one line and exit code 2."""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

SHOWN = 80  # characters of a user-given name or value echoed in a message at most
LONG_TOKEN = 200  # a run of non-space characters longer than this is cut in a printed error line


class UsageError(Exception):
    """A bad input (config, path, name, value). Its message is one line, shown as is, exit code 2."""


def shorten(text: object, limit: int = SHOWN) -> str:
    """`text` as a string of at most `limit` characters: a longer one keeps its start and ends in '...'.

    For user-given names and values echoed in messages (a 20,000-character name must not be echoed whole).
    """
    s = str(text)
    return s if len(s) <= limit else s[: max(limit - 3, 1)] + "..."


def shown(value: object, limit: int = SHOWN) -> str:
    """repr() of a user-given value, shortened: `shown('relu9')` -> "'relu9'"."""
    return repr(value) if len(str(value)) <= limit else repr(shorten(value, limit))


def one_line(message: object) -> str:
    """An error message as the one line the CLI prints.

    A UsageError raised in a DataLoader worker comes back with torch's worker traceback around it ("Caught
    UsageError in DataLoader worker process 0. Original Traceback ...: <message>"): only the original message
    is kept. Any other line breaks become spaces, and runs of non-space characters longer than LONG_TOKEN
    (a pasted file, a huge name) are cut.
    """
    text = str(message)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = re.sub(r"^\S*(UsageError|Error|Exception): ", "", last.strip())
    text = " ".join(text.split())
    return re.sub(rf"\S{{{LONG_TOKEN},}}", lambda m: shorten(m.group(0), SHOWN), text)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice closest to `name`, or None when nothing is close (or `name` is absurdly long)."""
    if len(str(name)) > 1000:
        return None
    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return found[0] if found else None


def unknown(what: str, name: str, choices: Iterable[str], where: str = "") -> UsageError:
    """Build the standard 'unknown X' error: names the value, the allowed ones and the closest match."""
    choices = sorted(str(c) for c in choices)
    hint = closest(name, choices)
    listed = ", ".join(choices[:40]) + (f", ... ({len(choices)} in all)" if len(choices) > 40 else "")
    shown_name = shown(name)
    prefix = f"{where}: " if where else ""
    msg = f"{prefix}unknown {what} {shown_name}; allowed: {listed}"
    if hint:
        msg += f" (did you mean {hint!r}?)"
    return UsageError(msg)


def file_in_the_way(path: str | Path) -> Path | None:
    """The nearest existing ancestor of `path` (or `path` itself) when it is a file, not a folder; else None."""
    p = Path(path).expanduser().absolute()
    for q in (p, *p.parents):
        try:
            if q.exists():
                return None if q.is_dir() else q
        except OSError:  # e.g. a name longer than the file system allows: it does not exist
            continue
    return None


def write_error(doing: str, path: str | Path, exc: OSError) -> UsageError:
    """A one-line error for a failed write of file `path`: "cannot write X: Y is a file, not a folder" rather
    than the system's "File exists" / "Not a directory" when a parent is a file; else the system's reason."""
    blocker = file_in_the_way(Path(path).parent)
    if blocker is not None:
        return UsageError(f"{doing} {shorten(path, 240)}: {shorten(blocker, 240)} is a file, not a folder")
    return UsageError(f"{doing} {shorten(path, 240)}: {exc.strerror or exc}")
