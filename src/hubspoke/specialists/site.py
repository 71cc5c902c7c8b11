"""Which dispatch, and which model request of it, the running code serves.

The agent loop sets `REQUEST_SITE` before each model request, a function specialist before it
runs (its `turn` then `None`), so that code below them (a model, a tool) can tell where it is
called from without being handed it: the replay model of `hubspoke.replay` finds the recorded
exchange it stands for, and a side-effecting tool replayed from the journal says where a call
diverged. Task-local (a `ContextVar`; worker threads get a copy: `hubspoke.threads`).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["REQUEST_SITE", "RequestSite"]


@dataclass(frozen=True, slots=True)
class RequestSite:
    """A dispatch (its run, and phase, role, item, attempt, as the journal names them) and the
    index of its model request within the attempt (`turn`, from 0; `None` in a function
    specialist)."""

    run: str
    phase: str
    role: str
    item: str
    attempt: int
    turn: int | None


REQUEST_SITE: ContextVar[RequestSite | None] = ContextVar("hubspoke_request_site", default=None)
"""Where the running code is called from: set by the agent loop before each model request and by
a function specialist before it runs."""
