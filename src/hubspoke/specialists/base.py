"""The one interface every specialist implements: take a work item, return an outcome."""

from __future__ import annotations

from typing import Protocol

from hubspoke.outcomes import Outcome
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["Specialist"]


class Specialist(Protocol):
    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        """Work on one item. Must not raise: every failure is an `Outcome`."""
        ...
