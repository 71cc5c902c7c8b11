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
from collections import deque

from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Runs a dispatch in-process, with its time-out; never raises but `CancelledError`."""

    __slots__ = ("_watch",)

    def __init__(self) -> None:
        self._watch: _Watch | None = None
        """The watch of the loop this executor last ran on (a new loop gets a new one; the
        old one still rings its alarms, from its own loop's timer)."""

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
                try:
                    return await specialist.dispatch(item, ctx)
                except asyncio.CancelledError:
                    if task.cancelling() > before:
                        raise  # a real cancellation: the run's
                    return _raised_cancelled()
                except Exception as e:  # a specialist must not raise; if one does, it failed
                    return Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            # What `asyncio.timeout_at` does, with no context manager and, for most dispatches,
            # no timer of their own: one watch per loop rings every alarm (`_Watch`).
            alarm = _Alarm(task, deadline)
            watch = self._watch
            if watch is None or watch.loop is not loop:
                watch = self._watch = _Watch(loop)
            watch.add(alarm)
            # The specialist is awaited here, not through a helper coroutine: one frame fewer
            # per dispatch.
            try:
                outcome = await specialist.dispatch(item, ctx)
            except asyncio.CancelledError:
                if task.cancelling() <= before:  # raised by the specialist, not sent to it
                    outcome = _raised_cancelled()
                elif alarm.rang and task.uncancel() <= before:  # our own cancellation only
                    return Outcome(OutcomeKind.TIMED_OUT, message=f"no result within {timeout:g}s")
                else:
                    raise
            except Exception as e:  # a specialist must not raise; if one does, it failed
                outcome = Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
            finally:
                watch.discard(alarm)
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

    __slots__ = ("deadline", "done", "handle", "rang", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task: asyncio.Task[object] | None = task
        self.deadline = deadline
        self.rang = False
        self.done = False
        """The dispatch ended: the alarm must not ring."""
        self.handle: asyncio.TimerHandle | None = None
        """Its own loop timer, when the watch's queue could not take it."""

    def ring(self) -> None:
        if not self.done and self.task is not None:
            self.rang = True
            self.task.cancel()


class _Watch:
    """Rings the alarms of one event loop's dispatches with one loop timer, not one each.

    A loop timer per dispatch costs a `TimerHandle`, a push onto the loop's heap and a cancel
    (the handle then stays on the heap until the loop sweeps it); with thousands of dispatches
    in flight that is a few µs each. Dispatches with the same time-out start in order, so their
    deadlines come in order: they wait in a FIFO queue, and one timer is set for its head.
    An alarm whose deadline is earlier than the queue's tail (a shorter time-out after a longer
    one) gets its own timer, as before. An alarm that ends is marked done and left in the
    queue; the queue is swept when more than half of it is done, so it holds at most about
    twice the dispatches in flight.
    """

    __slots__ = ("done", "handle", "loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: deque[_Alarm] = deque()
        self.handle: asyncio.TimerHandle | None = None
        self.done = 0
        """Alarms in `queue` whose dispatch ended."""

    def add(self, alarm: _Alarm) -> None:
        queue = self.queue
        if queue and alarm.deadline < queue[-1].deadline:
            alarm.handle = self.loop.call_at(alarm.deadline, alarm.ring)
            return
        queue.append(alarm)
        if self.handle is None:
            self.handle = self.loop.call_at(alarm.deadline, self._ring)

    def discard(self, alarm: _Alarm) -> None:
        """The alarm's dispatch ended: it will not ring."""
        if alarm.done:  # it rang: the queue let it go then
            return
        alarm.done, alarm.task = True, None  # a done alarm waiting in the queue keeps no task
        if alarm.handle is not None:
            alarm.handle.cancel()
            return
        self.done += 1
        if self.done > 64 and self.done * 2 > len(self.queue):
            self.queue = deque(a for a in self.queue if not a.done)
            self.done = 0
            if not self.queue and self.handle is not None:
                self.handle.cancel()
                self.handle = None

    def _ring(self) -> None:
        """Ring every alarm whose deadline passed; set the timer for the next one."""
        self.handle = None
        queue, now = self.queue, self.loop.time()
        while queue:
            alarm = queue[0]
            if alarm.done:
                queue.popleft()
                self.done -= 1
            elif alarm.deadline <= now:
                queue.popleft()
                alarm.ring()
                alarm.done = True  # out of the queue: `discard` will not count it
            else:
                self.handle = self.loop.call_at(alarm.deadline, self._ring)
                return


def _raised_cancelled() -> Outcome:
    return Outcome(OutcomeKind.FAILED, message="the specialist raised CancelledError")
