"""The base of every config section: a pydantic model that forbids unknown keys.

Each study declares its own section (`studies/<name>.py`), the runner its own (`runner/settings.py`),
training its own (`training.py`); `neuronimp.config` assembles them into one experiment config.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
