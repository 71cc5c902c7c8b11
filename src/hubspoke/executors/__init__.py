"""Executors: where specialists run.

An executor only runs a specialist on a work item (layer 3, beside the specialists); the foreman
is given one (`LocalExecutor` by default) and depends on the `Executor` protocol, never on an
engine.
"""

from typing import Protocol

from hubspoke.executors.local import LocalExecutor
from hubspoke.outcomes import Outcome
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["Executor", "LocalExecutor"]


class Executor(Protocol):
    """Runs one dispatch of a specialist."""

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        """Run `specialist` on `item` within `timeout` seconds (None: no limit).

        Must not raise: a time-out or an exception comes back as an `Outcome` of kind
        `TIMED_OUT` or `FAILED`.
        """
        ...
