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
        specialist's exception is a `failed` outcome, the time-out a `timed_out` one."""
        ...
