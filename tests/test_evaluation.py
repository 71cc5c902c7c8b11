"""The phase's evaluator: an evaluator that cannot judge is not a rejection (issue rule 1)."""

from __future__ import annotations

import pytest

from hubspoke import Context, EvaluationRequest, Foreman, SQLiteStore, Verdict
from hubspoke.testing import stream
from tests.helpers import Draft, Topic, drafting, judged

pytestmark = pytest.mark.anyio


async def test_an_evaluator_that_raises_keeps_the_draft_and_runs_its_own_ladder(
    store: SQLiteStore,
) -> None:
    drafts: list[int] = []

    async def flaky_judge(inp: EvaluationRequest, ctx: Context) -> Verdict:
        if ctx.attempt == 1:
            raise ConnectionError("the judge's provider is down")
        return Verdict(accept=True)

    result = await Foreman(judged(drafting(drafts), flaky_judge), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert drafts == [1]  # the writer spent no attempt on the evaluator's failure
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started write items=1",
        "dispatch.started write writer write #1",
        "dispatch.finished write writer write #1 output",
        "dispatch.started write judge write#eval #1",
        "dispatch.finished write judge write#eval #1 failed",
        "item.retry write judge write#eval #2",
        "dispatch.started write judge write#eval #2",
        "dispatch.finished write judge write#eval #2 output",
        "item.accepted write writer write",
        "phase.finished write completed",
        "run.finished completed",
    ]
    phase = result.state.phases["write"]
    assert (phase.accepted, phase.retried, phase.escalated) == (1, 0, 0)  # items, not the judge


async def test_an_evaluator_that_never_judges_escalates_the_item_naming_it(
    store: SQLiteStore,
) -> None:
    drafts: list[int] = []

    async def broken_judge(inp: EvaluationRequest, ctx: Context) -> Verdict:
        raise TimeoutError("judge unreachable")

    result = await Foreman(judged(drafting(drafts), broken_judge), store).run({"topic": "tea"})
    assert result.status == "escalated"
    assert drafts == [1]
    [card] = store.cards(result.run_id)
    assert "evaluator 'judge' could not judge" in card.note
    assert "judge unreachable" in card.note
    assert store.artifacts(result.run_id) == []  # never accepted unjudged


async def test_a_rejection_is_still_the_writers_failure(store: SQLiteStore) -> None:
    async def write(inp: Topic, ctx: Context) -> Draft:
        return Draft(text="short" if ctx.correction is None else "a longer draft")

    async def strict(inp: EvaluationRequest, ctx: Context) -> Verdict:
        long_enough = len(inp.output["text"]) > 5
        return Verdict(accept=long_enough, critique="" if long_enough else "too short")

    result = await Foreman(judged(write, strict), store).run({"topic": "tea"})
    assert result.status == "completed"
    lines = stream(store.events(result.run_id))
    assert "evaluator.rejected write writer write #1" in lines
    assert "item.retry write writer write #2" in lines
