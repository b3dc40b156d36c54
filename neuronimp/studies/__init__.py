"""Studies: each one registered module (`STUDIES`) that owns its config section, items, rows and summary.

Built in: score, ablate (Dhamdhere et al. 2018 sec. 5), delete (Morcos et al. 2018), select (Dhamdhere et
al. sec. 6), filters (the Kim CNN sentiment study), shapley (Ghorbani & Zou 2020). A study of your own is one
module with a `Study` subclass decorated by `register_study`; name its module in `$NEURONIMP_PLUGINS`
(comma-separated) and the command line, the launchers and the Python API all know it (`neuronimp <name>
--config ...`).
"""
from __future__ import annotations

import importlib
import os

from neuronimp.errors import UsageError
from neuronimp.studies.base import STUDIES, Outputs, Rebuild, Study, register_study
from neuronimp.studies import ablate, delete, filters, score, select, shapley  # noqa: F401,E402 (register)

PLUGINS_ENV = "NEURONIMP_PLUGINS"

__all__ = ["PLUGINS_ENV", "STUDIES", "Outputs", "Rebuild", "Study", "load_plugins", "register_study"]


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the plug-in modules named in `spec` (default: $NEURONIMP_PLUGINS); returns their names."""
    names = [n.strip() for n in (spec if spec is not None else os.environ.get(PLUGINS_ENV, "")).split(",")
             if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import a plug-in is the user's to fix
            raise UsageError(f"{PLUGINS_ENV}: cannot import plug-in module {name!r} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return names
