"""The local executor: time is the foreman's. A dispatch past its time-out is `timed_out`
whatever it returns later; when a dispatch ends, its context accepts nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, cast

import pytest

from hubspoke import Context, EventKind, Foreman, Phase, SQLiteStore, Workflow
from hubspoke.executors import LocalExecutor
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists import ContextError, ToolRefused
from hubspoke.testing import stream
from tests.helpers import Number, Squared, squares

pytestmark = pytest.mark.anyio


def lookup(topic: str) -> str:
    """Look a topic up."""
    raise AssertionError("never runs: the dispatch has ended")


def once(function: Any, **card: Any) -> Workflow:
    """One item, `p` (`Number(n=3)`), one attempt, for a `squarer` card that holds `lookup`."""
    return squares(
        Phase(name="p", role="squarer", input=lambda run: Number(n=3)),
        function,
        tools=[lookup],
        max_attempts=1,
        **card,
    )


TIMED_OUT = [
    "dispatch.started p squarer p #1",
    "dispatch.finished p squarer p #1 timed_out",
    "item.escalated p squarer p",
]


async def test_a_specialist_that_ignores_its_cancellation_and_answers_is_timed_out(
    store: SQLiteStore,
) -> None:
    async def stubborn(inp: Number, ctx: Context) -> Squared:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: it answers anyway, late
            await asyncio.Event().wait()
        return Squared(n=inp.n, square=inp.n * inp.n)

    result = await Foreman(once(stubborn, timeout=0.05), store).run({"topic": "x"})
    assert result.status == "waiting"
    events = store.events(result.run_id)
    assert stream(events)[2:5] == TIMED_OUT
    finished = next(e for e in events if e.kind is EventKind.DISPATCH_FINISHED)
    assert finished.data["message"] == "returned after its 0.05s time-out; the result is discarded"
    assert not store.artifacts(result.run_id, "p")


async def test_a_specialist_that_blocks_the_loop_past_its_time_out_is_timed_out(
    store: SQLiteStore,
) -> None:
    async def blocks(inp: Number, ctx: Context) -> Squared:
        threading.Event().wait(0.2)  # the fault: blocking code in an async function
        return Squared(n=inp.n, square=inp.n * inp.n)

    result = await Foreman(once(blocks, timeout=0.05), store).run({"topic": "x"})
    assert result.status == "waiting"
    assert stream(store.events(result.run_id))[2:5] == TIMED_OUT


async def test_a_specialist_that_raises_cancelled_error_fails_the_dispatch_not_the_run(
    store: SQLiteStore,
) -> None:
    async def raises(inp: Number, ctx: Context) -> Squared:
        raise asyncio.CancelledError

    result = await Foreman(once(raises), store).run({"topic": "x"})
    assert result.status == "waiting"
    events = store.events(result.run_id)
    finished = next(e for e in events if e.kind is EventKind.DISPATCH_FINISHED)
    assert (finished.data["outcome"], finished.data["message"]) == (
        "failed",
        "the specialist raised CancelledError",
    )


async def test_a_context_accepts_nothing_once_its_dispatch_has_ended(store: SQLiteStore) -> None:
    go = asyncio.Event()
    left_running: list[asyncio.Task[None]] = []
    refused: list[Exception] = []

    async def later(ctx: Context) -> None:
        await go.wait()
        for act in (
            lambda: ctx.call_tool("lookup", topic="late"),
            lambda: ctx.trace.append({"kind": "tool.called", "tool": "lookup"}),
            lambda: ctx.allowance.used.add(usd=1.0),
        ):
            try:
                outcome = act()
                if asyncio.iscoroutine(outcome):
                    await outcome
            except (ToolRefused, ContextError) as e:
                refused.append(e)

    async def leaves_a_task(inp: Number, ctx: Context) -> Squared:
        left_running.append(asyncio.create_task(later(ctx)))
        return Squared(n=inp.n, square=inp.n * inp.n)

    result = await Foreman(once(leaves_a_task), store).run({"topic": "x"})
    assert result.status == "completed"
    events = store.events(result.run_id)
    go.set()
    await left_running[0]
    assert [type(e) for e in refused] == [ToolRefused, ContextError, ContextError]
    assert all("the dispatch has ended" in str(e) for e in refused)
    assert store.events(result.run_id) == events


class _Closable:
    def close(self) -> None:
        pass


class _Sleeper:
    """A specialist whose work item is how long it takes, in seconds."""

    async def dispatch(self, item: Any, ctx: Any) -> Outcome:
        await asyncio.sleep(item)
        return Outcome(OutcomeKind.OUTPUT, raw=item)


async def _kind(executor: LocalExecutor, seconds: float, timeout: float) -> OutcomeKind:
    outcome = await executor.execute(
        cast(Any, _Sleeper()), cast(Any, seconds), cast(Any, _Closable()), timeout
    )
    return outcome.kind


async def test_dispatches_in_flight_together_each_time_out_on_their_own() -> None:
    # One timer rings the alarms of all dispatches with the same time-out: those that hang
    # time out, those that answered are not cancelled late, and the queue of ended alarms is
    # swept while the others wait (three in four end at once).
    executor = LocalExecutor()
    seconds = [3600.0 if i % 4 == 0 else 0.0 for i in range(400)]
    kinds = await asyncio.gather(*(_kind(executor, s, 0.1) for s in seconds))
    assert kinds == [OutcomeKind.TIMED_OUT if s else OutcomeKind.OUTPUT for s in seconds]
    again = await asyncio.gather(_kind(executor, 3600.0, 0.05), _kind(executor, 0.0, 0.05))
    assert list(again) == [OutcomeKind.TIMED_OUT, OutcomeKind.OUTPUT]


async def test_a_shorter_time_out_after_a_longer_one_is_not_held_behind_it() -> None:
    executor = LocalExecutor()
    long = asyncio.ensure_future(_kind(executor, 3600.0, 3600.0))
    await asyncio.sleep(0)  # the long one is in flight, its alarm queued first
    short = asyncio.ensure_future(_kind(executor, 3600.0, 0.05))
    done, _ = await asyncio.wait([long, short], return_when=asyncio.FIRST_COMPLETED)
    assert done == {short} and short.result() is OutcomeKind.TIMED_OUT
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long


def test_an_executor_used_on_a_second_event_loop_times_out_there_too() -> None:
    # The watch belongs to the loop it was made on: a foreman's executor reused by a second
    # `asyncio.run` gets a new one, whose timer runs on the new loop.
    executor = LocalExecutor()
    for _ in range(2):
        kinds = asyncio.run(_both(executor))
        assert kinds == [OutcomeKind.TIMED_OUT, OutcomeKind.OUTPUT]


async def _both(executor: LocalExecutor) -> list[OutcomeKind]:
    return list(await asyncio.gather(_kind(executor, 3600.0, 0.05), _kind(executor, 0.0, 0.05)))
