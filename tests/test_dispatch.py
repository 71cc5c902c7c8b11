"""One dispatch: time is the foreman's, and a specialist can ask for a retry (issue rule 5)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import pytest

from hubspoke import Budget, Context, Foreman, Phase, Retry, SQLiteStore, Workflow
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.base import Specialist
from hubspoke.testing import stream
from hubspoke.work import WorkItem
from tests.helpers import Number, Squared, square, squares

pytestmark = pytest.mark.anyio


class IgnoresTimeouts:
    """An executor that runs the specialist to its end whatever the time-out says, as a remote
    engine might: the foreman must still refuse what comes back late."""

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        await asyncio.sleep(0.05)  # makes the result late: 50 ms against a 10 ms time-out
        return await specialist.dispatch(item, ctx)


def one_square(function: Any, **card: Any) -> Workflow:
    """One item, `p` (`Number(n=3)`), for a squaring card named `sq`."""
    return squares(
        Phase(name="p", role="sq", input=lambda run: Number(n=3)), function, name="sq", **card
    )


async def test_a_result_after_its_time_out_is_timed_out_whatever_the_executor_does(
    store: SQLiteStore,
) -> None:
    wf = one_square(square, timeout=0.01, max_attempts=1)
    result = await Foreman(wf, store, executor=IgnoresTimeouts()).run({"topic": "x"})
    assert result.status == "waiting"
    assert store.artifacts(result.run_id) == []  # a late output is never accepted
    assert "dispatch.finished p sq p #1 timed_out" in stream(store.events(result.run_id))


async def test_a_function_specialist_asks_for_a_retry_with_its_correction(
    store: SQLiteStore,
) -> None:
    seen: list[str | None] = []

    async def recount(inp: Number, ctx: Context) -> Squared:
        seen.append(ctx.correction)
        if ctx.attempt == 1:
            raise Retry("count again, carefully")
        return Squared(n=inp.n, square=inp.n**2)

    result = await Foreman(one_square(recount), store).run({"topic": "x"})
    assert result.status == "completed"
    assert seen[0] is None
    assert seen[1] is not None and "count again, carefully" in seen[1]
    lines = stream(store.events(result.run_id))
    assert "dispatch.finished p sq p #1 invalid" in lines
    assert "item.retry p sq p #2" in lines


def test_outcomes_are_immutable() -> None:
    outcome = Outcome(OutcomeKind.OUTPUT, raw={"n": 1})
    with pytest.raises(AttributeError):
        outcome.kind = OutcomeKind.INVALID  # type: ignore[misc]


async def test_a_time_out_the_deadline_did_not_cause_is_a_time_out(store: SQLiteStore) -> None:
    """A specialist's own `timed_out` under a run with a deadline still far off is retried like
    any time-out, not taken for the run's deadline passing."""

    async def square(inp: Number, ctx: Context) -> Squared | Outcome:
        if ctx.attempt == 1:
            return Outcome(OutcomeKind.TIMED_OUT, message="the upstream API timed out")
        return Squared(n=inp.n, square=inp.n**2)

    wf = replace(one_square(square), budget=Budget(seconds=60))
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed", result.reason


async def test_a_task_that_handled_a_cancellation_before_still_times_out(
    store: SQLiteStore,
) -> None:
    """The executor counts cancellations from its own entry, as `asyncio.timeout` does."""

    async def slow(inp: Number, ctx: Context) -> Squared:
        await asyncio.Event().wait()  # never returns: only the time-out ends it
        raise AssertionError

    task = asyncio.current_task()
    assert task is not None
    task.cancel()  # a cancellation this task handled earlier (a shutdown request, say)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)
    result = await Foreman(one_square(slow, timeout=0.05, max_attempts=1), store).run(
        {"topic": "x"}
    )
    assert result.status == "waiting"
    assert "dispatch.finished p sq p #1 timed_out" in stream(store.events(result.run_id))
    task.uncancel()
