"""The executor interface: where a specialist's dispatch runs."""

from __future__ import annotations

from typing import Protocol

from hubspoke.outcomes import Outcome
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["Executor"]


class Executor(Protocol):
    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        """Run one dispatch within `timeout` seconds (None: no limit). Never raises: a
        specialist's exception is a `failed` outcome, the time-out a `timed_out` one, and a
        result that comes back after the time-out is `timed_out` too. Closes `ctx`
        (`Context.close`) when the dispatch ends, so nothing left running can spend or trace.
        The foreman checks the time again itself: time is the foreman's."""
        ...
