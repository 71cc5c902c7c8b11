"""The executor interface: where a specialist's dispatch runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

from hubspoke.outcomes import Outcome
from hubspoke.roles import Role
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["Executor", "Preparing", "Starting", "running"]


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


@runtime_checkable
class Starting(Protocol):
    """An executor with processes of its own for the length of a run (`PoolExecutor`): the
    foreman starts it when a run (or a resume) starts and stops it when the run ends, however
    it ends. Calls nest: a sub-workflow's run starts and stops it inside its parent's."""

    async def start(self) -> None:
        """Get ready to run dispatches (start the processes, unless a run under way did).

        Raises:
            hubspoke.errors.ExecutorError: it cannot; nothing of the run is written then.
        """
        ...

    async def stop(self) -> None:
        """The run that called `start` has ended (the last one stops the processes)."""
        ...


@asynccontextmanager
async def running(executor: object) -> AsyncIterator[None]:
    """`Starting.start` the executor for what runs inside, and `stop` it after; nothing for
    an executor that is not `Starting`."""
    if not isinstance(executor, Starting):
        yield
        return
    await executor.start()
    try:
        yield
    finally:
        await executor.stop()
