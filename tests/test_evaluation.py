"""The phase's evaluator: an evaluator that cannot judge is not a rejection (issue rule 1)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hubspoke import Context, EvaluationRequest, Foreman, SQLiteStore, Verdict, Workflow
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
    assert result.status == "waiting"
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


async def test_every_evaluator_dispatch_has_its_own_attempt_key(store: SQLiteStore) -> None:
    """The evaluator's retries and later evaluations never reuse an attempt key (nor, for an
    evaluator that is a sub-workflow, a sub-run id): attempts count over all the item's
    evaluations. Its idempotency key is the evaluation's own, the same for all of them."""
    keys: list[tuple[str, str]] = []
    stable: set[str] = set()

    async def write(inp: Topic, ctx: Context) -> Draft:
        return Draft(text=f"v{ctx.attempt}")

    async def judge(inp: EvaluationRequest, ctx: Context) -> Verdict:
        keys.append((ctx.attempt_key, inp.output["text"]))
        stable.add(ctx.idempotency_key)
        if ctx.correction is None and inp.output["text"] == "v1":
            raise ConnectionError("the judge's provider is down")
        return Verdict(accept=inp.output["text"] == "v2", critique="write v2")

    result = await Foreman(judged(write, judge), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert [text for _, text in keys] == ["v1", "v1", "v2"]
    assert len({key for key, _ in keys}) == 3
    assert stable == {f"{result.run_id}:write#eval"}


def test_a_resumed_evaluation_goes_on_where_its_ladder_stood() -> None:
    """Killed at every durable write of a run whose evaluator answers invalidly once, the
    resumed run ends as the uncrashed one: the evaluator's retry is not mistaken for a repeat."""
    import asyncio

    from tests.test_properties import RecordingStore, killed_at

    async def write(inp: Topic, ctx: Context) -> Draft:
        return Draft(text="a draft")

    async def judge(inp: EvaluationRequest, ctx: Context) -> Any:
        await asyncio.sleep(0)
        if ctx.correction is None:
            return {"accept": "maybe"}  # an invalid verdict: informative
        return Verdict(accept=True)

    def build() -> Workflow:
        wf = judged(write, judge)
        roles = [r if r.name != "judge" else replace(r, max_attempts=2) for r in wf.roles]
        return replace(wf, roles=roles)

    def end(store: SQLiteStore) -> tuple[str | None, list[str]]:
        record = store.run("r")
        return (record.status if record else None), [a.item for a in store.artifacts("r")]

    uncrashed = RecordingStore()
    asyncio.run(Foreman(build(), uncrashed).run({"topic": "tea"}, run_id="r"))
    want = end(uncrashed)
    assert want == ("completed", ["write"])
    for cut in sorted(set(uncrashed.commits[1:-1])):
        crashed = killed_at(uncrashed.writes, cut)
        asyncio.run(Foreman(build(), crashed).resume("r"))
        assert end(crashed) == want, f"killed after write {cut}"
        crashed.close()
