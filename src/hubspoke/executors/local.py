"""The default executor: specialists run as coroutines on the foreman's event loop.

Time is the foreman's: a dispatch that has not returned when its time-out passes is cancelled
and `timed_out`, and so is one that returns after it, whatever it returns: a specialist that
swallows its cancellation and answers anyway, or that blocked the loop past its time-out, is
never accepted. Blocking code belongs in sync tools and sync function specialists, which run in
worker threads (`hubspoke.threads`): awaiting a thread is cancelled at once, so their time-out is
prompt even though the thread runs on. An async specialist that catches the cancellation and
goes on awaiting holds its dispatch until it returns (a coroutine cannot be stopped from
outside); what it returns then is discarded. When the dispatch ends, its context is closed: a
thread or task it left running can call no tool and record nothing more.
"""

from __future__ import annotations

import asyncio

from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Runs a dispatch in-process, with its time-out; never raises but `CancelledError`."""

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        """Run `specialist.dispatch(item, ctx)`; `timeout` in seconds, `None` for none.

        Returns the specialist's outcome; `timed_out` if it did not return within `timeout`,
        or returned after it; `failed` if it raised (`CancelledError` it was not sent included).
        The context is closed when this returns.

        Raises:
            asyncio.CancelledError: this call was cancelled (and the dispatch with it).
        """
        task = asyncio.current_task()
        assert task is not None
        # Cancellations already requested of this task (and handled) before the dispatch: only
        # one beyond them is this dispatch's, as `asyncio.timeout` counts them.
        before = task.cancelling()
        try:
            if timeout is None:
                return await _dispatch(specialist, item, ctx, before)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            # What `asyncio.timeout_at` does, with one timer and no context manager: a dispatch
            # pays for its time-out on every call, and every role has one (300 s by default).
            alarm = _Alarm(task)
            handle = loop.call_at(deadline, alarm.ring)
            try:
                outcome = await _dispatch(specialist, item, ctx, before)
            except asyncio.CancelledError:
                if alarm.rang and task.uncancel() <= before:  # our own cancellation only
                    return Outcome(OutcomeKind.TIMED_OUT, message=f"no result within {timeout:g}s")
                raise
            finally:
                handle.cancel()
            if alarm.rang:
                task.uncancel()
            if alarm.rang or loop.time() > deadline:
                # It came back late: it ignored its cancellation, or blocked the loop past its
                # time-out. Time is the foreman's: what it returned is discarded.
                return Outcome(
                    OutcomeKind.TIMED_OUT,
                    message=f"returned after its {timeout:g}s time-out; the result is discarded",
                )
            return outcome
        finally:
            ctx.close()


class _Alarm:
    """Cancels the dispatch's task when its time-out passes, and remembers that it did."""

    __slots__ = ("rang", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.rang = False

    def ring(self) -> None:
        self.rang = True
        self.task.cancel()


async def _dispatch(specialist: Specialist, item: WorkItem, ctx: Context, before: int) -> Outcome:
    try:
        return await specialist.dispatch(item, ctx)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling() > before:
            raise  # a real cancellation: the time-out's, or the run's
        return Outcome(OutcomeKind.FAILED, message="the specialist raised CancelledError")
    except Exception as e:  # a specialist must not raise; if one does, it is a failure
        return Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
