"""Executors: where specialists run."""

from typing import Protocol

from hubspoke.executors.local import LocalExecutor
from hubspoke.outcomes import Outcome
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["Executor", "LocalExecutor"]


class Executor(Protocol):
    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome: ...
