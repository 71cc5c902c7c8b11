"""The executor interface: where a specialist's dispatch runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from hubspoke.outcomes import Outcome
from hubspoke.roles import Role
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["Executor", "Preparing"]


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


@runtime_checkable
class Preparing(Protocol):
    """An executor that checks the specialists before any run: the foreman calls `prepare`
    when it is built. A specialist with ``in_process = True`` (a sub-foreman) runs in the
    foreman's process under every executor."""

    def prepare(self, specialists: Mapping[str, Specialist], roles: Mapping[str, Role]) -> None:
        """Check that every role's specialist (by role name) can run on this executor.

        Raises:
            hubspoke.errors.ExecutorError: one cannot; the message names the role and why.
        """
        ...
