"""One item's failure ladder, end to end: the rules the issue found broken, each a kind."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from hubspoke import (
    Budget,
    Context,
    Foreman,
    InputError,
    NeedsHuman,
    Phase,
    SQLiteStore,
    Strategy,
    Workflow,
)
from hubspoke.events import EventKind
from hubspoke.testing import stream
from tests.helpers import Number, Squared, Topic, fan_out, square, squarer_card, squares

pytestmark = pytest.mark.anyio


def fan(function: Any, **changes: Any) -> Workflow:
    """`fan_out` as these rules use it: phase `sq`, best effort, at most 10 escalations."""
    preset: dict[str, Any] = dict(phase="sq", strategy=Strategy.BEST_EFFORT, max_escalations=10)
    return fan_out(function, **(preset | changes))


# rule 2: Strategy.RETRY rounds run again; an item escalates once; the cap counts items ------


async def test_retry_rounds_dispatch_again_and_escalate_each_item_once(
    store: SQLiteStore,
) -> None:
    async def helpless(inp: Number, ctx: Context) -> Squared:
        if inp.n == 0:
            return Squared(n=0, square=0)
        raise NeedsHuman(f"what is the square of {inp.n}?")

    wf = fan(helpless, strategy=Strategy.RETRY, retries=2, max_escalations=2)
    result = await Foreman(wf, store).run({"topic": "x"})
    events = store.events(result.run_id)
    for key in ("sq[1]", "sq[2]"):
        started = [e for e in events if e.kind is EventKind.DISPATCH_STARTED and e.item == key]
        # Round 2 runs again: it carries round 1's correction, so it is not the same dispatch.
        # Round 3 would repeat round 2 exactly (same correction): stuck, not dispatched.
        assert len(started) == 2
        stuck = [e for e in events if e.kind is EventKind.ITEM_STUCK and e.item == key]
        assert len(stuck) == 1
        escalated = [e for e in events if e.kind is EventKind.ITEM_ESCALATED and e.item == key]
        assert len(escalated) == 1
    assert result.state.escalations == 2
    assert result.status == "waiting"  # not aborted: the cap (2 items) is not passed by 6 requests


# rule 3: a role's per-run budget running out is that role's failure --------------------------


async def test_a_roles_run_budget_sends_its_items_down_their_ladders(store: SQLiteStore) -> None:
    async def costly(inp: Number, ctx: Context) -> Squared:
        ctx.allowance.check_tool_call()
        ctx.allowance.used.tool_calls += 1
        return Squared(n=inp.n, square=inp.n**2)

    roles = [
        squarer_card(
            costly, budget=Budget(tool_calls=1), run_budget=Budget(tool_calls=2), fallback="cheap"
        ),
        squarer_card(name="cheap"),
    ]
    result = await Foreman(fan(square, n=4, roles=roles), store).run({"topic": "x"})
    assert result.status == "completed"  # the run goes on: only the run's budget ends it
    by_role = {a.item: a.role for a in store.artifacts(result.run_id)}
    assert by_role == {"sq[0]": "squarer", "sq[1]": "squarer", "sq[2]": "cheap", "sq[3]": "cheap"}
    lines = stream(store.events(result.run_id))
    assert "budget.refused sq squarer sq[2] #1" in lines
    assert "item.fallback sq squarer sq[2] to=cheap" in lines


# rule 4: hand-offs are validated strictly ------------------------------------------------------


async def test_a_hand_off_is_never_coerced(store: SQLiteStore) -> None:
    wf = squares(Phase(name="sq", role="squarer", input=lambda run: {"n": "900"}))
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "failed"
    [failed] = [e for e in store.events(result.run_id) if e.kind is EventKind.ITEM_FAILED]
    assert "input for role 'squarer' is invalid" in failed.data["reason"]
    assert "n:" in failed.data["reason"]
    assert store.artifacts(result.run_id) == []


class _Tidied(BaseModel):
    """An input schema whose model may not dump to the text it was validated from."""

    name: str
    tags: list[str]

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


async def test_the_journal_holds_the_validated_input_not_the_hand_off(store: SQLiteStore) -> None:
    seen: list[str] = []

    async def tidy(inp: _Tidied, ctx: Context) -> Squared:
        seen.append(inp.name)
        return Squared(n=len(inp.tags), square=len(inp.tags) ** 2)

    card = squarer_card(function=tidy, input=_Tidied)
    handed = [{"name": "  padded  ", "tags": ["a"]}, {"name": "plain", "tags": ["a", "b"]}]
    wf = Workflow(
        name="w",
        input=Topic,
        roles=[card],
        phases=[Phase(name="sq", role="squarer", over=lambda run: handed, input=lambda run, e: e)],
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed"
    assert seen == ["padded", "plain"]
    started = [e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_STARTED]
    # Journaled as the validated model dumps (stripped), whether or not that is the text the
    # hand-off was validated from.
    assert [e.data["input"] for e in started] == [
        {"name": "padded", "tags": ["a"]},
        {"name": "plain", "tags": ["a", "b"]},
    ]


async def test_a_run_input_is_never_coerced_and_nan_is_refused(store: SQLiteStore) -> None:
    wf = fan(square)
    with pytest.raises(InputError, match="topic"):
        await Foreman(wf, store).run({"topic": 900})

    class Measure(Topic):
        value: float

    wf2 = Workflow(
        name="m",
        input=Measure,
        roles=wf.roles,
        phases=[Phase(name="sq", role="squarer", input=lambda run: Number(n=1))],
    )
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(InputError, match="JSON"):
            await Foreman(wf2, store).run({"topic": "x", "value": bad})
    assert store.runs() == []


# rule 8: near-repeats are stuck, however many attempts a role has -----------------------------


async def test_a_correction_that_differs_only_in_numbers_is_stuck(store: SQLiteStore) -> None:
    async def drifting(inp: Number, ctx: Context) -> Any:
        return {"n": inp.n, "square": f"about {ctx.attempt * 7}"}  # always invalid, never alike

    result = await Foreman(fan(drifting, n=1, max_attempts=50), store).run({"topic": "x"})
    started = [e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_STARTED]
    assert len(started) == 2  # the second correction says what the first did
    assert result.state.phases["sq"].stuck == 1


async def test_a_failure_that_keeps_repeating_is_stuck(store: SQLiteStore) -> None:
    async def down(inp: Number, ctx: Context) -> Squared:
        raise ConnectionError("connection refused")

    result = await Foreman(fan(down, n=1, max_attempts=50), store).run({"topic": "x"})
    started = [e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_STARTED]
    assert len(started) == 4  # the first, then the same dispatch three times, then stuck
    assert result.state.phases["sq"].stuck == 1
    assert result.state.phases["sq"].escalated == 1
