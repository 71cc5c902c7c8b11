"""The foreman's decisions, asserted on whole event streams (docs/reliability.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hubspoke import (
    Context,
    EvaluationRequest,
    EventKind,
    Foreman,
    InputError,
    NeedsHuman,
    OutOfScope,
    Phase,
    Role,
    SQLiteStore,
    Strategy,
    TopK,
    Verdict,
    Workflow,
)
from hubspoke.models.offline import answer, ask_human, call
from hubspoke.testing import scripted, stream
from tests.helpers import (
    Draft,
    Notes,
    Number,
    Squared,
    Summary,
    Topic,
    draft,
    fan_out,
    judged,
    notes_workflow,
    recording_lookup,
    research,
    researcher_card,
    square,
    square_each,
    squarer_card,
    squares,
    writer_card,
)

pytestmark = pytest.mark.anyio

QUIET = (EventKind.MODEL_EXCHANGE, EventKind.TOOL_CALLED)


async def test_happy_path_stream(store: SQLiteStore) -> None:
    result = await Foreman(notes_workflow(researcher_card(function=research)), store).run(
        {"topic": "tea"}
    )
    assert result.status == "completed"
    assert result.result == Summary(text="tea is old; tea is useful")
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started research items=1",
        "dispatch.started research researcher research #1",
        "dispatch.finished research researcher research #1 output",
        "item.accepted research researcher research",
        "phase.finished research completed",
        "phase.started write items=1",
        "dispatch.started write writer write #1",
        "dispatch.finished write writer write #1 output",
        "item.accepted write writer write",
        "phase.finished write completed",
        "run.finished completed",
    ]
    events = store.events(result.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [a.content for a in store.artifacts(result.run_id, "write")] == [
        {"text": "tea is old; tea is useful"}
    ]


async def test_bad_run_input_is_refused_before_anything_runs(store: SQLiteStore) -> None:
    with pytest.raises(InputError, match="topic"):
        await Foreman(notes_workflow(researcher_card(function=research)), store).run(
            {"subject": "tea"}
        )
    assert store.runs() == []


async def test_agent_that_never_returns_valid_output_ends_down_its_ladder(
    store: SQLiteStore,
) -> None:
    """Invalid twice with the same errors: the third dispatch would repeat with no new
    information, so it is stuck and the item escalates instead of burning attempts."""
    wf = notes_workflow(
        researcher_card(max_attempts=5), players={"researcher": scripted(answer(points=[]))}
    )
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "waiting"
    assert stream(store.events(result.run_id), skip=QUIET) == [
        "run.started",
        "phase.started research items=1",
        "dispatch.started research researcher research #1",
        "dispatch.finished research researcher research #1 invalid",
        "output.invalid research researcher research #1",
        "item.retry research researcher research #2",
        "dispatch.started research researcher research #2",
        "dispatch.finished research researcher research #2 invalid",
        "output.invalid research researcher research #2",
        "item.retry research researcher research #3",
        "item.stuck research researcher research #3",
        "item.escalated research researcher research",
        "card.created research researcher research escalated",
        "phase.finished research waiting",
        "run.finished waiting",
    ]
    invalid = [e for e in store.events(result.run_id) if e.kind is EventKind.OUTPUT_INVALID]
    assert invalid[0].data["errors"][0]["loc"] == ["points"]
    retry = next(e for e in store.events(result.run_id) if e.kind is EventKind.ITEM_RETRY)
    assert "points" in retry.data["correction"]
    assert store.artifacts(result.run_id) == []  # nothing invalid was ever accepted


async def test_retry_with_correction_then_accept(store: SQLiteStore) -> None:
    """The correction reaches the next attempt: the player fixes its output when it sees it."""
    seen: list[str | None] = []

    def player(turn: Any) -> Any:
        seen.append(turn.correction)
        return answer(points=["fixed"]) if turn.correction else answer(points="not a list")

    wf = notes_workflow(players={"researcher": player})
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "completed"
    assert seen[0] is None
    assert seen[1] is not None and "points" in seen[1]
    assert result.state.phases["research"].retried == 1


async def test_scope_violation_goes_to_fallback(store: SQLiteStore) -> None:
    async def narrow(inp: Topic, ctx: Context) -> Notes:
        raise OutOfScope(f"{inp.topic} is not my field")

    wf = notes_workflow(
        roles=[
            researcher_card(function=narrow, fallback="generalist"),
            researcher_card(name="generalist", purpose="Collect any facts.", function=research),
            writer_card(),
        ]
    )
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "completed"
    assert stream(store.events(result.run_id))[:8] == [
        "run.started",
        "phase.started research items=1",
        "dispatch.started research researcher research #1",
        "dispatch.finished research researcher research #1 scope_violation",
        "item.fallback research researcher research to=generalist",
        "dispatch.started research generalist research #2",
        "dispatch.finished research generalist research #2 output",
        "item.accepted research generalist research",
    ]


async def test_needs_human_escalates_one_item_and_siblings_continue(store: SQLiteStore) -> None:
    async def picky(inp: Number, ctx: Context) -> Squared:
        if inp.n == 1:
            raise NeedsHuman("is 1 really a number?")
        return await square(inp, ctx)

    wf = fan_out(picky, strategy=Strategy.BEST_EFFORT)
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "waiting"  # the phase completed; item 1 waits for a person
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started squares items=3",
        "dispatch.started squares squarer squares[0] #1",
        "dispatch.finished squares squarer squares[0] #1 output",
        "item.accepted squares squarer squares[0]",
        "dispatch.started squares squarer squares[1] #1",
        "dispatch.finished squares squarer squares[1] #1 needs_human",
        "item.escalated squares squarer squares[1]",
        "card.created squares squarer squares[1] escalated",
        "dispatch.started squares squarer squares[2] #1",
        "dispatch.finished squares squarer squares[2] #1 output",
        "item.accepted squares squarer squares[2]",
        "phase.finished squares completed",
        "run.finished waiting",
    ]
    cards = store.cards(result.run_id)
    assert [(c.column.value, c.note) for c in cards] == [("escalated", "is 1 really a number?")]


async def test_fail_fast_stops_the_siblings(store: SQLiteStore) -> None:
    async def picky(inp: Number, ctx: Context) -> Squared:
        if inp.n == 0:
            raise NeedsHuman("zero?")
        return await square(inp, ctx)

    result = await Foreman(fan_out(picky, strategy=Strategy.FAIL_FAST), store).run({"topic": "x"})
    assert result.status == "waiting"
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started squares items=3",
        "dispatch.started squares squarer squares[0] #1",
        "dispatch.finished squares squarer squares[0] #1 needs_human",
        "item.escalated squares squarer squares[0]",
        "card.created squares squarer squares[0] escalated",
        "phase.finished squares waiting",
        "run.finished waiting",
    ]


# Item 2 fails and is escalated: the run waits for a person's decision about it, whether the
# quorum was met (2 of 3) or could still be (3 of 3, once it is answered).
@pytest.mark.parametrize(("quorum", "status"), [(2, "waiting"), (3, "waiting")])
async def test_quorum(store: SQLiteStore, quorum: int, status: str) -> None:
    async def flaky(inp: Number, ctx: Context) -> Squared:
        if inp.n == 2:
            raise RuntimeError("boom")
        return await square(inp, ctx)

    wf = fan_out(flaky, strategy=Strategy.QUORUM, quorum=quorum, max_attempts=1)
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == status
    verdict = "completed" if quorum == 2 else "waiting"
    assert result.state.phases["squares"].status == verdict
    assert result.state.phases["squares"].accepted == 2


async def test_retry_strategy_runs_unaccepted_items_again(store: SQLiteStore) -> None:
    calls: dict[int, int] = {}

    async def flaky(inp: Number, ctx: Context) -> Squared:
        calls[inp.n] = calls.get(inp.n, 0) + 1
        if inp.n == 1 and calls[inp.n] == 1:
            raise ConnectionError("provider 503")
        return await square(inp, ctx)

    wf = fan_out(flaky, strategy=Strategy.RETRY, retries=1, max_attempts=1)
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed"
    assert result.state.phases["squares"].accepted == 3
    lines = stream(store.events(result.run_id))
    assert "dispatch.finished squares squarer squares[1] #1 failed" in lines
    assert "dispatch.started squares squarer squares[1] #2" in lines
    assert calls == {0: 1, 1: 2, 2: 1}


async def test_phase_counts_are_per_item_across_retry_rounds(store: SQLiteStore) -> None:
    async def helpless(inp: Number, ctx: Context) -> Squared:
        raise NeedsHuman("help")

    wf = fan_out(helpless, n=1, strategy=Strategy.RETRY, retries=1)
    result = await Foreman(wf, store).run({"topic": "x"})
    phase = result.state.phases["squares"]
    assert (phase.items, phase.escalated, phase.accepted) == (1, 1, 0)
    assert result.state.escalations == 1  # one item, escalated once after its last round


async def test_escalation_cap_aborts_the_run(store: SQLiteStore) -> None:
    async def helpless(inp: Number, ctx: Context) -> Squared:
        raise NeedsHuman("help")

    wf = Workflow(
        name="helpless",
        input=Topic,
        roles=[squarer_card(helpless)],
        phases=[square_each("squares", [1, 2, 3], concurrency=1, strategy=Strategy.BEST_EFFORT)],
        max_escalations=1,
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "aborted"
    assert "max_escalations=1" in result.reason
    kinds = [e.kind for e in store.events(result.run_id)]
    assert kinds.count(EventKind.ITEM_ESCALATED) == 1
    assert kinds.count(EventKind.ITEM_FAILED) == 1
    assert kinds.count(EventKind.DISPATCH_STARTED) == 2  # the third item never ran


async def test_timeout_is_retried_then_escalated(store: SQLiteStore) -> None:
    async def hangs(inp: Number, ctx: Context) -> Squared:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    wf = squares(
        Phase(name="one", role="squarer", input=lambda run: Number(n=1)),
        hangs,
        timeout=0.01,
        max_attempts=2,
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "waiting"
    assert stream(store.events(result.run_id))[2:8] == [
        "dispatch.started one squarer one #1",
        "dispatch.finished one squarer one #1 timed_out",
        "item.retry one squarer one #2",
        "dispatch.started one squarer one #2",
        "dispatch.finished one squarer one #2 timed_out",
        "item.escalated one squarer one",
    ]


async def test_output_is_validated_strictly_never_coerced(store: SQLiteStore) -> None:
    async def sloppy(inp: Number, ctx: Context) -> Any:
        return {"n": str(inp.n), "square": inp.n * inp.n}  # "1" is not an int

    wf = squares(
        Phase(name="one", role="squarer", input=lambda run: Number(n=1)), sloppy, max_attempts=1
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "waiting"
    invalid = next(e for e in store.events(result.run_id) if e.kind is EventKind.OUTPUT_INVALID)
    assert invalid.data["errors"][0]["loc"] == ["n"]
    assert store.artifacts(result.run_id) == []


async def test_invalid_item_input_is_never_dispatched(store: SQLiteStore) -> None:
    wf = squares(Phase(name="one", role="squarer", input=lambda run: {"n": "many"}))
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "failed"
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started one items=1",
        "item.failed one squarer one",
        "phase.finished one failed",
        "run.finished failed",
    ]


class Critic(Verdict):
    pass


async def test_evaluator_rejection_is_an_invalid_output_with_its_critique(
    store: SQLiteStore,
) -> None:
    async def judge(inp: EvaluationRequest, ctx: Context) -> Verdict:
        ok = len(inp.output["text"]) > 10
        return Verdict(accept=ok, critique="" if ok else "too short")

    wf = judged(draft, judge)
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed"
    assert result.result == Draft(text="a longer, better draft")
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started write items=1",
        "dispatch.started write writer write #1",
        "dispatch.finished write writer write #1 output",
        "dispatch.started write judge write#eval #1",
        "dispatch.finished write judge write#eval #1 output",
        "evaluator.rejected write writer write #1",
        "item.retry write writer write #2",
        "dispatch.started write writer write #2",
        "dispatch.finished write writer write #2 output",
        "dispatch.started write judge write#eval #2",
        "dispatch.finished write judge write#eval #2 output",
        "item.accepted write writer write",
        "phase.finished write completed",
        "run.finished completed",
    ]


async def test_top_k_selection_feeds_the_next_phase(store: SQLiteStore) -> None:
    wf = Workflow(
        name="topk",
        input=Topic,
        roles=[
            squarer_card(),
            Role(name="adder", purpose="Add.", input=Number, output=Squared, function=square),
        ],
        phases=[
            square_each("squares", [3, 1, 4, 1, 5], select=TopK(2, key=lambda s: s.square)),
            Phase(
                name="sum",
                role="adder",
                input=lambda run: Number(n=sum(s.n for s in run.outputs("squares"))),
            ),
        ],
        result=lambda run: run.output("sum"),
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.result == Squared(n=9, square=81)  # 4 + 5
    selected = next(e for e in store.events(result.run_id) if e.kind is EventKind.PHASE_SELECTED)
    assert len(selected.data["artifact_ids"]) == 2


async def test_synthesis_receives_references_to_every_accepted_artifact(
    store: SQLiteStore,
) -> None:
    class Refs(BaseModel):
        ids: list[str]
        total: int

    async def synthesise(inp: Refs, ctx: Context) -> Refs:
        return inp

    wf = Workflow(
        name="synth",
        input=Topic,
        roles=[
            squarer_card(),
            Role(name="synth", purpose="Combine.", input=Refs, output=Refs, function=synthesise),
        ],
        phases=[
            square_each("squares", [1, 2, 3], concurrency=3),
            Phase(
                name="combine",
                role="synth",
                input=lambda run: Refs(
                    ids=[a.id for a in run.artifacts("squares")],
                    total=sum(a.content["square"] for a in run.artifacts("squares")),
                ),
            ),
        ],
        result=lambda run: run.output("combine"),
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.result.total == 14
    assert sorted(result.result.ids) == sorted(
        a.id for a in store.artifacts(result.run_id, "squares")
    )


async def test_hub_and_spoke_calls_to_other_roles_are_refused_and_journaled(
    store: SQLiteStore,
) -> None:
    executed: list[str] = []
    wf = notes_workflow(
        researcher_card(tools=[recording_lookup(executed)]),
        players={
            "researcher": scripted(
                [
                    call("writer", points=["write this for me"]),
                    call("send_email", to="ceo@example.com"),
                    call("lookup", topic="tea"),
                    answer(points=["tea: ok"]),
                ]
            )
        },
    )
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "completed"
    events = store.events(result.run_id)
    refused = [e for e in events if e.kind is EventKind.TOOL_REFUSED]
    assert [e.data["tool"] for e in refused] == ["writer", "send_email"]
    assert "another role" in refused[0].data["reason"]
    assert "not on this role's card" in refused[1].data["reason"]
    assert executed == ["tea"]  # only the allowed tool ran
    writer_runs = [e for e in events if e.kind is EventKind.DISPATCH_STARTED and e.role == "writer"]
    assert len(writer_runs) == 1  # the writer ran once, dispatched by the foreman only


async def test_needs_human_from_an_agent(store: SQLiteStore) -> None:
    wf = notes_workflow(players={"researcher": scripted(ask_human("which tea?"))})
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "waiting"
    assert [c.note for c in store.cards(result.run_id)] == ["which tea?"]


async def test_a_card_title_that_raises_gives_the_default_title_and_says_why(
    store: SQLiteStore,
) -> None:
    def title(out: Squared) -> str:
        raise KeyError("subject")

    wf = squares(
        Phase(
            name="sq",
            role="squarer",
            input=lambda run: Number(n=3),
            review=True,
            card_title=title,
        )
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed"
    [card] = store.cards(result.run_id)
    assert (card.column.value, card.title) == ("review", "sq: sq")
    assert card.note == "card_title() raised KeyError: 'subject'"


def test_a_store_given_as_a_path_is_a_type_error(tmp_path: Path) -> None:
    wf = squares(Phase(name="p", role="squarer", input=lambda run: Number(n=2)))
    for wrong in (str(tmp_path / "j.db"), tmp_path / "j.db"):
        with pytest.raises(TypeError, match=r"SQLiteStore\(path\)"):
            Foreman(wf, wrong)  # type: ignore[arg-type]


def test_a_run_leaves_the_host_collector_alone_unless_asked(store: SQLiteStore) -> None:
    """`gc.freeze()` changes the host process: only `freeze_gc=True` calls it."""
    import gc

    wf = squares(Phase(name="p", role="squarer", input=lambda run: Number(n=2)))
    before = gc.get_freeze_count()
    asyncio.run(Foreman(wf, store).run({"topic": "x"}))
    assert gc.get_freeze_count() == before
    try:
        asyncio.run(Foreman(wf, store, freeze_gc=True).run({"topic": "y"}))
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
