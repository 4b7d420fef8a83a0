"""Deterministic fault injection for tests: raise at a named point instead of a timed kill.

``FINITEPREF_FAULT`` holds comma-separated points, each ``name`` (every time) or ``name:step``
(only at that step), e.g. ``FINITEPREF_FAULT=checkpoint-save:2``. Unset in normal use.
"""

from __future__ import annotations

import os

ENV = "FINITEPREF_FAULT"


class InjectedFault(RuntimeError):
    """Raised at a fault point named in ``FINITEPREF_FAULT``."""


def fault_point(name: str, step: int | None = None) -> None:
    """Raise :class:`InjectedFault` if ``FINITEPREF_FAULT`` names this point (and step)."""
    for spec in filter(None, os.environ.get(ENV, "").split(",")):
        point, _, at = spec.strip().partition(":")
        if point == name and (not at or (step is not None and int(at) == step)):
            raise InjectedFault(f"injected fault at {name}" + (f" (step {step})" if step is not None else ""))
