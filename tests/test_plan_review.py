"""Review gates on planned phases: each step's output is a card, and only what a person approved
(or amended) flows on to the steps that take it, to a replan and to the run's result.

A planned phase with `review=True` cards every accepted step's output, like a static fan-out's
items; a step that takes a reviewed step's output (``$from``) or waits for it (``after``) starts
only once that card is approved or amended, and takes the approved or amended version; a
skipped card is a step that ended without an output. With `review_waits=True` the phase also
waits for the cards no other step needs. A kill while cards are pending resumes without
running a finished step again or carding it twice; a kill between an item's end and its card
(an item that already holds one: its escalation's, or its gate's) resumes with that card made,
once, in static, planned and routed phases alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hubspoke import (
    Board,
    Context,
    DefinitionError,
    EventKind,
    Foreman,
    NeedsHuman,
    Phase,
    Plan,
    Risk,
    Role,
    Route,
    RouterView,
    RunLocked,
    SQLiteStore,
    Strategy,
    Workflow,
)
from hubspoke.cli.report import plan_report, route_report
from hubspoke.journal import RunState
from hubspoke.router import RouterStep
from hubspoke.testing import payload_errors, stream
from tests.helpers import Killed, kill_when
from tests.workflows.planned import ROLES, Answer, Ask, Finding, Query

pytestmark = pytest.mark.anyio

CARDS = {r.name: r for r in ROLES}
PLAN = [
    {"id": "a", "role": "searcher", "input": {"query": "tides"}, "objective": "find tides"},
    {"id": "b", "role": "searcher", "input": {"query": "moons"}, "objective": "find moons"},
    {
        "id": "m",
        "role": "merger",
        "input": {"findings": [{"$from": "a"}, {"$from": "b"}]},
        "objective": "merge them",
    },
]


def workflow(
    steps: list[dict[str, Any]] = PLAN,
    *,
    searcher: Role = CARDS["searcher"],
    result: bool = True,
    **phase: Any,
) -> Workflow:
    async def lead(ask: Ask, ctx: Context) -> Plan:
        return Plan.model_validate({"steps": steps})

    fields: dict[str, Any] = dict(
        name="research",
        plan_by="lead",
        input=lambda run: run.input,
        roles=["searcher", "merger"],
        review=True,
        max_replans=0,
    )
    return Workflow(
        name="reviewed",
        input=Ask,
        roles=[
            Role(name="lead", purpose="Plan.", input=Ask, output=Plan, function=lead),
            searcher,
            CARDS["merger"],
        ],
        phases=[Phase(**(fields | phase))],
        result=(lambda run: run.step("research", "m")) if result else None,
    )


def dispatched(store: SQLiteStore, run_id: str, since: int = 0) -> list[str]:
    return [
        e.item or ""
        for e in store.events(run_id)
        if e.kind is EventKind.DISPATCH_STARTED and e.seq > since
    ]


def created(store: SQLiteStore, run_id: str) -> list[str]:
    return [e.item or "" for e in store.events(run_id) if e.kind is EventKind.CARD_CREATED]


def shown(store: SQLiteStore, run_id: str = "r") -> dict[str, str]:
    """Each step's status as `hubspoke show` reports it."""
    state = RunState.fold(run_id, store.events(run_id))
    if state.plans:
        return {s["id"]: s["status"] for s in plan_report(state)["research"]["steps"]}
    return {d["step"]: d["status"] for d in route_report(state)["work"]["decisions"] if "step" in d}


def last_seq(store: SQLiteStore, run_id: str) -> int:
    return store.events(run_id)[-1].seq


# --- the check ------------------------------------------------------------------------------------


def test_a_planned_phase_takes_a_review_gate_and_with_it_a_high_risk_role() -> None:
    risky = Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=CARDS["searcher"].function,
        risk=Risk.HIGH,
    )
    workflow(searcher=risky, review=True, review_waits=True).check()
    with pytest.raises(DefinitionError) as raised:
        workflow(searcher=risky, review=False).check()
    assert raised.value.field == "roles"
    assert "must pass the phase's review gate (set review=True)" in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"review": False, "review_waits": True}, "review_waits", "set review=True too"),
        ({"outbox": True}, "outbox", "must not leave before a person approves it"),
        ({"review": "yes"}, "review", "must be True or False"),
    ],
)
def test_a_planned_phases_wrong_review_gate_is_refused(
    changes: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(DefinitionError) as raised:
        workflow(**changes).check()
    assert raised.value.field == field and says in str(raised.value)


def test_a_follow_up_of_a_planned_phase_is_refused() -> None:
    wf = workflow()
    follow = Workflow(
        name="after",
        input=Finding,
        roles=[CARDS["searcher"]],
        phases=[Phase(name="p", role="searcher", input=lambda run: Query(query="x"))],
    )
    with pytest.raises(DefinitionError) as raised:
        Workflow(
            name=wf.name,
            input=wf.input,
            roles=wf.roles,
            phases=wf.phases,
            follow_ups={"research": follow},
        ).check()
    assert "is planned or routed" in str(raised.value)


# --- end to end -----------------------------------------------------------------------------------


async def test_each_step_is_a_card_and_the_merge_takes_what_people_approved_and_amended() -> None:
    wf = workflow(review_waits=True)
    store = SQLiteStore(":memory:")
    first = await Foreman(wf, store).run(Ask(topics=["x"]), run_id="r")
    assert first.status == "waiting"
    assert first.reason == "phase 'research': step(s) a, b wait for a person's review"
    lines = stream(store.events("r"))
    assert [line for line in lines if line.split()[0] in ("card.created", "phase.finished")] == [
        "phase.finished research:plan completed",
        "card.created research searcher research[a] review",
        "card.created research searcher research[b] review",
        "phase.finished research waiting",
    ]
    assert "research[m]" not in dispatched(store, "r")  # nothing unapproved flows on
    assert shown(store) == {"a": "review", "b": "review", "m": "not run"}  # hubspoke show
    board = Board(store, workflow=wf)
    cards = {c.item: c for c in board.cards("r", "review")}
    assert sorted(cards) == ["research[a]", "research[b]"]
    assert cards["research[a]"].title == "research: step a (searcher): find tides"
    assert cards["research[a]"].phase == "research"
    board.approve(cards["research[a]"].id, by="ada")
    board.amend(cards["research[b]"].id, set={"text": "moons, as amended"}, by="ada")
    assert shown(store) == {"a": "accepted", "b": "accepted", "m": "not run"}
    mark = last_seq(store, "r")
    second = await Foreman(wf, store).resume("r")
    assert second.status == "waiting"  # now for the merge's own card
    assert second.reason == "phase 'research': step(s) m wait for a person's review"
    assert dispatched(store, "r", mark) == ["research[m]"]  # a and b did not run again
    [merged] = board.cards("r", "review")
    assert merged.item == "research[m]"
    assert merged.title == "research: step m (merger): merge them"
    assert board.card(merged.id).content == {"text": "tides is known; moons, as amended"}
    board.approve(merged.id, by="ada")
    done = await Foreman(wf, store).resume("r")
    assert done.status == "completed"
    assert done.result == Answer(text="tides is known; moons, as amended")
    assert created(store, "r") == ["research[a]", "research[b]", "research[m]"]  # once each
    assert payload_errors(store.events("r")) == []


async def test_without_review_waits_only_outputs_another_step_takes_are_waited_for() -> None:
    wf = workflow(result=False)
    store = SQLiteStore(":memory:")
    first = await Foreman(wf, store).run(Ask(topics=["x"]), run_id="r")
    assert first.status == "waiting"  # the merge needs a and b
    assert first.reason == "phase 'research': step(s) a, b wait for a person's review"
    assert "research[m]" not in dispatched(store, "r")
    board = Board(store, workflow=wf)
    for card in board.cards("r", "review"):
        board.approve(card.id, by="ada")
    done = await Foreman(wf, store).resume("r")
    assert done.status == "completed"  # the merge's card is no step's input: not waited for
    [pending] = board.cards("r", "review")
    assert pending.item == "research[m]"


async def test_a_step_waits_for_the_review_of_a_step_it_waits_for_without_taking_its_output() -> (
    None
):
    steps = [
        PLAN[0],
        {"id": "c", "role": "searcher", "input": {"query": "c"}, "after": ["a"], "objective": "c"},
    ]
    wf = workflow(steps, result=False)
    store = SQLiteStore(":memory:")
    first = await Foreman(wf, store).run(Ask(topics=["x"]), run_id="r")
    assert first.status == "waiting"
    assert first.reason == "phase 'research': step(s) a wait for a person's review"
    assert dispatched(store, "r") == ["research:plan[1]", "research[a]"]


@pytest.mark.parametrize(
    ("strategy", "status"), [(Strategy.FAIL_FAST, "failed"), (Strategy.BEST_EFFORT, "completed")]
)
async def test_a_skipped_step_is_one_without_an_output_so_its_dependent_never_runs(
    strategy: Strategy, status: str
) -> None:
    wf = workflow(strategy=strategy, result=False)
    store = SQLiteStore(":memory:")
    await Foreman(wf, store).run(Ask(topics=["x"]), run_id="r")
    board = Board(store, workflow=wf)
    cards = {c.item: c for c in board.cards("r", "review")}
    board.approve(cards["research[a]"].id, by="ada")
    board.skip(cards["research[b]"].id, by="ada", note="off topic")
    mark = last_seq(store, "r")
    done = await Foreman(wf, store).resume("r")
    assert done.status == status
    assert dispatched(store, "r", mark) == []  # the merge never ran
    finished = [
        line for line in stream(store.events("r")) if line.startswith("phase.finished research ")
    ]
    assert finished[-1] == f"phase.finished research {status}"
    if status == "failed":
        assert done.reason == (
            "phase 'research': the plan stalled (step(s) b ended without an output, so m "
            "cannot run) with no replan left (max_replans=0)"
        )


async def test_a_replan_after_a_skip_is_told_and_keeps_only_approved_steps() -> None:
    seen: list[str | None] = []
    second_plan = [
        {"id": "c", "role": "searcher", "input": {"query": "comets"}, "objective": "comets"},
        {
            "id": "n",
            "role": "merger",
            "input": {"findings": [{"$from": "a"}, {"$from": "c"}]},
            "objective": "merge again",
        },
    ]
    plans = [PLAN, second_plan]

    async def lead(ask: Ask, ctx: Context) -> Plan:
        seen.append(ctx.correction)
        return Plan.model_validate({"steps": plans[len(seen) - 1]})

    base = workflow(review_waits=True, max_replans=1)
    wf = Workflow(
        name=base.name,
        input=Ask,
        roles=[
            Role(name="lead", purpose="Plan.", input=Ask, output=Plan, function=lead),
            *base.roles[1:],
        ],
        phases=base.phases,
        result=lambda run: run.step("research", "n"),
    )
    store = SQLiteStore(":memory:")
    await Foreman(wf, store).run(Ask(topics=["x"]), run_id="r")
    board = Board(store, workflow=wf)
    cards = {c.item: c for c in board.cards("r", "review")}
    board.amend(cards["research[a]"].id, set={"text": "tides, amended"}, by="ada")
    board.skip(cards["research[b]"].id, by="ada")
    await Foreman(wf, store).resume("r")
    assert seen[1] is not None
    assert "- a (searcher): accepted" in seen[1]
    assert "- b (searcher): skipped: a person skipped its output at review" in seen[1]
    for card in board.cards("r", "review"):  # c, then n
        board.approve(card.id, by="ada")
        await Foreman(wf, store).resume("r")
    for card in board.cards("r", "review"):
        board.approve(card.id, by="ada")
    done = await Foreman(wf, store).resume("r")
    assert done.status == "completed", (done.reason, stream(store.events("r")))
    assert done.result == Answer(text="tides, amended; comets is known")


@pytest.mark.parametrize(
    "at",
    [
        "item.accepted research[b]",  # between b's acceptance and its card
        "card.created research[b]",
        "phase.finished research",  # the cards written, the verdict not
    ],
)
async def test_a_kill_with_cards_pending_resumes_without_running_or_carding_anything_twice(
    tmp_path: Path, at: str
) -> None:
    kind, _, where = at.partition(" ")
    wf = workflow(review_waits=True)
    store = SQLiteStore(tmp_path / "j.db")
    kill = kill_when(lambda e: e.kind.value == kind and where in (e.item, e.phase))
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[kill]).run(Ask(topics=["x"]), run_id="r")
    ran = dispatched(store, "r")
    mark = last_seq(store, "r")
    waiting = await Foreman(wf, store).resume("r")
    assert waiting.status == "waiting"
    assert not set(dispatched(store, "r", mark)) & set(ran)
    board = Board(store, workflow=wf)
    pending = board.cards("r", "review")
    assert sorted((c.item, c.title) for c in pending) == [
        ("research[a]", "research: step a (searcher): find tides"),
        ("research[b]", "research: step b (searcher): find moons"),
    ]
    mark = last_seq(store, "r")
    again = await Foreman(wf, store).resume("r")  # nothing decided: nothing changes
    assert (again.status, last_seq(store, "r")) == ("waiting", mark)
    for card in pending:
        board.approve(card.id, by="ada")
    mark = last_seq(store, "r")
    second = await Foreman(wf, store).resume("r")
    assert second.status == "waiting"
    assert dispatched(store, "r", mark) == ["research[m]"]
    [merged] = board.cards("r", "review")
    board.approve(merged.id, by="ada")
    done = await Foreman(wf, store).resume("r")
    assert done.status == "completed"
    assert done.result == Answer(text="tides is known; moons is known")
    cards = created(store, "r")
    assert sorted(cards) == ["research[a]", "research[b]", "research[m]"]  # none twice
    items = [e.item for e in store.events("r") if e.kind is EventKind.ITEM_ACCEPTED]
    assert len(items) == len(set(items))


# --- routed phases --------------------------------------------------------------------------------


def routed_workflow(
    views: list[RouterView],
    *,
    searcher: Role = CARDS["searcher"],
    result: bool = True,
    **phase: Any,
) -> Workflow:
    """A router that searches each topic, merges what was approved, and finishes with it,
    noting every view it is given in `views`."""

    async def router(view: RouterView, ctx: Context) -> Route:
        views.append(view)
        topics = view.task["topics"]
        searches = [s for s in view.steps if s.role == "searcher"]
        if len(searches) < len(topics):
            query = topics[len(searches)]
            return Route(action="dispatch", role="searcher", input={"query": query})
        merges = [s for s in view.steps if s.role == "merger"]
        if not merges:
            found = [{"$from": s.id} for s in searches if s.status == "accepted"]
            return Route(action="dispatch", role="merger", input={"findings": found})
        if merges[0].status != "accepted":  # in review: its output cannot be used yet
            return Route(action="finish", result={"text": "see the board"})
        return Route(action="finish", result={"$from": merges[0].id})

    fields: dict[str, Any] = dict(
        name="work",
        route_by="lead",
        input=lambda run: run.input,
        roles=["searcher", "merger"],
        returns=Answer,
        review=True,
    )
    return Workflow(
        name="routed",
        input=Ask,
        roles=[
            Role(
                name="lead",
                purpose="Route.",
                input=RouterView,
                output=Route,
                function=router,
            ),
            searcher,
            CARDS["merger"],
        ],
        phases=[Phase(**(fields | phase))],
        result=(lambda run: run.output("work")) if result else None,
    )


def test_a_routed_phase_takes_a_review_gate_and_with_it_a_high_risk_role() -> None:
    risky = Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=CARDS["searcher"].function,
        risk=Risk.HIGH,
    )
    routed_workflow([], searcher=risky, review_waits=True).check()
    with pytest.raises(DefinitionError) as raised:
        routed_workflow([], searcher=risky, review=False).check()
    assert raised.value.field == "roles"
    with pytest.raises(DefinitionError) as raised:
        routed_workflow([], outbox=True).check()
    assert raised.value.field == "outbox"


@pytest.mark.parametrize(
    ("gate", "refused"),
    [({}, True), ({"review": True}, False), ({"approve_before_dispatch": True}, False)],
)
def test_a_high_risk_router_needs_a_gate_for_its_result(
    gate: dict[str, Any], refused: bool
) -> None:
    """A routed phase's result is its router's output (it may hold the router's own words): a
    high-risk router's result passes the phase's review gate, or its turns a human gate."""
    base = routed_workflow([], review=gate.get("review", False))
    lead = base.roles[0]
    risky = Role(
        name=lead.name,
        purpose=lead.purpose,
        input=lead.input,
        output=lead.output,
        function=lead.function,
        risk=Risk.HIGH,
        approve_before_dispatch=gate.get("approve_before_dispatch", False),
    )
    wf = Workflow(name=base.name, input=Ask, roles=[risky, *base.roles[1:]], phases=base.phases)
    if not refused:
        wf.check()
        return
    with pytest.raises(DefinitionError) as raised:
        wf.check()
    assert raised.value.field == "route_by"
    assert "role 'lead' is high-risk: its result must pass the phase's review gate" in str(
        raised.value
    )


async def decide_all(board: Board, run_id: str, verb: str = "approve") -> list[str]:
    decided = []
    for card in board.cards(run_id, "review"):
        getattr(board, verb)(card.id, by="ada")
        decided.append(card.item)
    return decided


async def test_with_review_waits_the_router_decides_only_on_what_people_approved() -> None:
    views: list[RouterView] = []
    wf = routed_workflow(views, review_waits=True)
    store = SQLiteStore(":memory:")
    board = Board(store, workflow=wf)
    first = await Foreman(wf, store).run(Ask(topics=["tides", "moons"]), run_id="r")
    assert first.status == "waiting"
    assert first.reason == "phase 'work': step(s) s1 wait for a person's review"
    [card] = board.cards("r", "review")
    assert (card.item, card.title) == ("work[s1]", "work: step s1 (searcher)")
    assert shown(store) == {"s1": "review"}
    board.amend(card.id, set={"text": "tides, amended"}, by="ada")
    steps = []
    for _ in range(3):  # s2, the merge s3, the result: each waits for its card's decision
        mark = last_seq(store, "r")
        waiting = await Foreman(wf, store).resume("r")
        ran = [k for k in dispatched(store, "r", mark) if not k.startswith("work:route")]
        if waiting.reason.endswith("its result waits for review"):
            [result] = board.cards("r", "review")  # amended in the phase's own schema
            board.amend(result.id, set={"text": "the answer, amended"}, by="ada")
            steps.append((waiting.status, waiting.reason, ran, [result.item]))
            continue
        steps.append((waiting.status, waiting.reason, ran, await decide_all(board, "r")))
    assert steps == [
        (
            "waiting",
            "phase 'work': step(s) s2 wait for a person's review",
            ["work[s2]"],
            ["work[s2]"],
        ),
        (
            "waiting",
            "phase 'work': step(s) s3 wait for a person's review",
            ["work[s3]"],
            ["work[s3]"],
        ),
        ("waiting", "phase 'work': its result waits for review", [], ["work[result]"]),
    ]
    done = await Foreman(wf, store).resume("r")
    assert done.status == "completed", done.reason
    assert done.result == Answer(text="the answer, amended")
    [merged] = [
        e for e in store.events("r") if e.kind is EventKind.ITEM_ACCEPTED and e.item == "work[s3]"
    ]
    assert [
        a.content for a in store.artifacts("r", "work") if a.id == merged.data["artifact_id"]
    ] == [
        {"text": "tides, amended; moons is known"}  # the merge took the amended search
    ]
    # The router never saw a step in review: each turn came after every card was decided.
    assert all(s.status == "accepted" for v in views for s in v.steps)
    assert created(store, "r") == ["work[s1]", "work[s2]", "work[s3]", "work[result]"]
    assert payload_errors(store.events("r")) == []


async def test_without_review_waits_the_router_sees_a_step_in_review_but_not_its_output() -> None:
    views: list[RouterView] = []
    wf = routed_workflow(views, result=False)
    store = SQLiteStore(":memory:")
    done = await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    assert done.status == "completed"
    in_review = RouterStep(
        id="s1",
        role="searcher",
        status="review",
        note="its output waits for a person's review",
        artifact="",
    )
    assert views[1].steps == [in_review]
    merge = store.events("r")
    [merged] = [e for e in merge if e.kind is EventKind.ROUTER_DECIDED and e.data["turn"] == 2]
    assert merged.data["input"] == {"findings": []}  # nothing unapproved flows on
    board = Board(store, workflow=wf)
    assert [c.item for c in board.cards("r", "review")] == ["work[s1]", "work[s2]", "work[result]"]


async def test_a_skipped_step_is_shown_to_the_router_as_skipped_and_never_used() -> None:
    views: list[RouterView] = []
    wf = routed_workflow(views, review_waits=True)
    store = SQLiteStore(":memory:")
    board = Board(store, workflow=wf)
    await Foreman(wf, store).run(Ask(topics=["tides", "moons"]), run_id="r")
    assert await decide_all(board, "r", "skip") == ["work[s1]"]
    await Foreman(wf, store).resume("r")
    assert views[-1].steps[0] == RouterStep(
        id="s1",
        role="searcher",
        status="skipped",
        note="a person skipped its output at review",
        artifact="",
    )
    assert await decide_all(board, "r") == ["work[s2]"]
    await Foreman(wf, store).resume("r")
    [merge] = board.cards("r", "review")
    assert board.card(merge.id).content == {"text": "moons is known"}


@pytest.mark.parametrize("at", ["item.accepted", "card.created"])
async def test_a_routed_run_killed_with_a_card_pending_resumes_without_a_second_card(
    tmp_path: Path, at: str
) -> None:
    views: list[RouterView] = []
    wf = routed_workflow(views, review_waits=True)
    store = SQLiteStore(tmp_path / "j.db")
    kill = kill_when(lambda e: e.kind.value == at and e.item == "work[s1]")
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[kill]).run(Ask(topics=["tides"]), run_id="r")
    mark = last_seq(store, "r")
    waiting = await Foreman(wf, store).resume("r")
    assert waiting.status == "waiting"
    assert "work[s1]" not in dispatched(store, "r", mark)
    board = Board(store, workflow=wf)
    assert await decide_all(board, "r") == ["work[s1]"]
    while (result := await Foreman(wf, store).resume("r")).status == "waiting":
        assert await decide_all(board, "r") != []
    assert result.status == "completed"
    assert result.result == Answer(text="tides is known")
    assert created(store, "r") == ["work[s1]", "work[s2]", "work[result]"]
    assert [k for k in dispatched(store, "r") if not k.startswith("work:route")] == [
        "work[s1]",
        "work[s2]",
    ]


async def test_a_router_that_takes_a_step_in_review_is_told_it_waits_for_a_person() -> None:
    corrections: list[str | None] = []

    async def router(view: RouterView, ctx: Context) -> Route:
        if not view.steps:
            return Route(action="dispatch", role="searcher", input={"query": "tides"})
        corrections.append(ctx.correction)
        if ctx.correction is None:  # takes the search, still in review
            return Route(action="dispatch", role="merger", input={"findings": [{"$from": "s1"}]})
        return Route(action="finish", result={"text": "the search waits for review"})

    base = routed_workflow([], result=False)
    card = Role(name="lead", purpose="Route.", input=RouterView, output=Route, function=router)
    wf = Workflow(name=base.name, input=Ask, roles=[card, *base.roles[1:]], phases=base.phases)
    store = SQLiteStore(":memory:")
    done = await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    assert done.status == "completed"
    assert corrections[0] is None and corrections[1] is not None
    assert (
        "- input.findings: step 's1' waits for a person's review: its output can be used once "
        "approved; dispatch something else, finish, escalate or abort"
    ) in corrections[1]
    assert "work[s2]" not in dispatched(store, "r")


async def test_a_foreman_waiting_for_people_goes_on_at_each_approval(tmp_path: Path) -> None:
    wf = workflow(review_waits=True)
    store = SQLiteStore(tmp_path / "j.db")
    foreman = Foreman(wf, store)
    first = await foreman.run(Ask(topics=["x"]), run_id="r")
    assert first.status == "waiting"
    watching = asyncio.create_task(foreman.wait_for_people("r", timeout=30, poll=0.01))
    board = Board(store, workflow=wf)
    approved: list[str] = []
    while not watching.done():  # approve each card as it appears, while the foreman watches
        for card in board.cards("r", "review"):
            with contextlib.suppress(RunLocked):  # the foreman is driving the run right now
                board.approve(card.id, by="ada")
                approved.append(card.item)
        await asyncio.sleep(0.01)
    done = await watching
    assert done.status == "completed"
    assert done.result == Answer(text="tides is known; moons is known")
    assert sorted(approved) == ["research[a]", "research[b]", "research[m]"]


# --- cards a kill kept from being written ---------------------------------------------------------

AGAIN = "ask me again"


async def search_asking(query: Query, ctx: Context) -> Finding:
    """A search that asks a person first (and again while told to), then searches on the
    answer."""
    if ctx.correction is None or ctx.correction.endswith(AGAIN):
        raise NeedsHuman(f"where should I look for {query.query}?")
    return Finding(query=query.query, text=f"{query.query}: {ctx.correction}")


def escalating(kind: str, cause: str) -> Workflow:
    """A review-gated phase (static, planned or routed) of one search, which asks a person
    (``asks``), waits at a human gate (``gate``) or at one that times out and escalates
    (``gate-timeout``)."""
    searcher = Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=search_asking if cause == "asks" else CARDS["searcher"].function,
        approve_before_dispatch=cause.startswith("gate"),
        gate_timeout=1e-6 if cause == "gate-timeout" else None,
    )
    if kind == "routed":
        return routed_workflow([], searcher=searcher, review_waits=True)
    if kind == "planned":
        return workflow([PLAN[0]], searcher=searcher, result=False, review_waits=True)
    return Workflow(
        name="static",
        input=Ask,
        roles=[searcher],
        phases=[
            Phase(
                name="research",
                role="searcher",
                input=lambda run: Query(query="tides"),
                review=True,
                review_waits=True,
            )
        ],
        result=lambda run: run.output("research"),
    )


KEYS = {"static": "research", "planned": "research[a]", "routed": "work[s1]"}


def cards_made(store: SQLiteStore, key: str, column: str) -> int:
    """The cards of the item `key` made in `column` (``review``: its output's, not its
    gate's, which carries no artifact)."""
    return sum(
        1
        for e in store.events("r")
        if e.kind is EventKind.CARD_CREATED
        and e.item == key
        and e.data["column"] == column
        and (column != "review" or "artifact_id" in e.data)
    )


def review_card_of(key: str) -> Any:
    return kill_when(
        lambda e: e.kind is EventKind.CARD_CREATED and e.item == key and "artifact_id" in e.data
    )


async def finish(wf: Workflow, store: SQLiteStore, board: Board) -> Any:
    """Resume, approving every card in review, until the run no longer waits."""
    while (run := await Foreman(wf, store).resume("r")).status == "waiting":
        assert await decide_all(board, "r") != [], run.reason
    return run


@pytest.mark.parametrize("at", ["item.accepted", "card.created"])
@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("static", "asks"),
        ("planned", "asks"),
        ("static", "gate"),
        ("planned", "gate"),
        ("routed", "gate"),
        ("static", "gate-timeout"),
        ("planned", "gate-timeout"),
        ("routed", "gate-timeout"),
    ],
)
async def test_an_output_killed_before_its_review_card_gets_it_on_resume_once(
    tmp_path: Path, kind: str, cause: str, at: str
) -> None:
    """An item with a card already (its escalation's, same id; or its gate's) is accepted and
    killed before its review card is written: each resume makes the card that is missing, and
    only that one (killed as it makes it, a second resume does not make it again)."""
    wf, key = escalating(kind, cause), KEYS[kind]
    store = SQLiteStore(tmp_path / "j.db")
    board = Board(store, workflow=wf)
    run = await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    assert run.status == "waiting"
    if cause == "gate-timeout":  # escalated at the next resume
        run = await Foreman(wf, store).resume("r")
    if cause.startswith("gate"):
        [gate] = board.cards("r", "review")
        board.approve(gate.id, by="ada")
    if cause != "gate":
        [asked] = board.cards("r", "escalated")
        assert asked.item == key
        board.answer(asked.id, "the almanac", by="ada")
    accepted = kill_when(lambda e: e.kind is EventKind.ITEM_ACCEPTED and e.item == key)
    with pytest.raises(Killed):
        kill = accepted if at == "item.accepted" else review_card_of(key)
        await Foreman(wf, store, listeners=[kill]).resume("r")
    assert cards_made(store, key, "review") == (at == "card.created")
    if at == "item.accepted":  # the resume makes the card; killed as it does
        with pytest.raises(Killed):
            await Foreman(wf, store, listeners=[review_card_of(key)]).resume("r")
    mark = last_seq(store, "r")
    waiting = await Foreman(wf, store).resume("r")
    assert waiting.status == "waiting", waiting.reason
    assert key not in dispatched(store, "r", mark)  # accepted once: never run again
    [card] = board.cards("r", "review")
    assert card.item == key
    said = "tides: A person answered: the almanac" if cause == "asks" else "tides is known"
    assert board.card(card.id).content == {"query": "tides", "text": said}
    board.approve(card.id, by="ada")
    done = await finish(wf, store, board)
    assert done.status == "completed", done.reason
    assert cards_made(store, key, "review") == 1  # made once, never again once approved
    assert payload_errors(store.events("r")) == []


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("static", "asks"),
        ("planned", "asks"),
        ("static", "gate-timeout"),
        ("routed", "gate-timeout"),
    ],
)
async def test_an_item_killed_before_its_escalation_card_gets_it_on_resume_once(
    tmp_path: Path, kind: str, cause: str
) -> None:
    """The same for an escalation: an item that asks again after an answer (its card, the
    answered one, is there) or whose gate card is there is killed before its escalation card
    is written; the resume makes it, once, and a person can answer."""
    wf, key = escalating(kind, cause), KEYS[kind]
    store = SQLiteStore(tmp_path / "j.db")
    board = Board(store, workflow=wf)
    await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    escalated = kill_when(lambda e: e.kind is EventKind.ITEM_ESCALATED and e.item == key)
    if cause == "asks":
        [asked] = board.cards("r", "escalated")
        board.answer(asked.id, AGAIN, by="ada")
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[escalated]).resume("r")
    made = cards_made(store, key, "escalated")
    waiting = await Foreman(wf, store).resume("r")
    assert waiting.status == "waiting", waiting.reason
    assert cards_made(store, key, "escalated") == made + 1
    mark = last_seq(store, "r")
    again = await Foreman(wf, store).resume("r")  # nothing decided: nothing changes
    assert (again.status, last_seq(store, "r")) == ("waiting", mark)
    [asked] = board.cards("r", "escalated")
    assert asked.item == key
    if cause.startswith("gate"):
        [gate] = board.cards("r", "review")
        board.approve(gate.id, by="ada")
    board.answer(asked.id, "the almanac", by="ada")
    done = await finish(wf, store, board)
    assert done.status == "completed", done.reason
    assert cards_made(store, key, "escalated") == made + 1
    assert payload_errors(store.events("r")) == []


async def test_a_routed_step_that_waits_for_a_person_keeps_its_phase_waiting_at_every_resume(
    tmp_path: Path,
) -> None:
    """A step escalated at its gate's time-out waits for a person, and so does its phase: a
    resume that something else let go on (its gate approved first) does not ask the router."""
    wf = escalating("routed", "gate-timeout")
    store = SQLiteStore(tmp_path / "j.db")
    board = Board(store, workflow=wf)
    await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    escalated = await Foreman(wf, store).resume("r")
    assert (escalated.status, escalated.reason) == (
        "waiting",
        "phase 'work': step 's1' waits for a person",
    )
    [gate] = board.cards("r", "review")
    board.approve(gate.id, by="ada")  # decided: the run goes on, but s1 still waits
    mark = last_seq(store, "r")
    still = await Foreman(wf, store).resume("r")
    assert (still.status, still.reason) == ("waiting", "phase 'work': step 's1' waits for a person")
    assert dispatched(store, "r", mark) == []  # the router was not asked
    [asked] = board.cards("r", "escalated")
    board.answer(asked.id, "go on", by="ada")
    done = await finish(wf, store, board)
    assert done.status == "completed", done.reason
    assert [k for k in dispatched(store, "r") if not k.startswith("work:route")] == [
        "work[s1]",
        "work[s2]",
    ]


def static_reviewed(result: Any) -> Workflow:
    """A static review-gated phase of one search, for comparison."""
    return Workflow(
        name="static",
        input=Ask,
        roles=[CARDS["searcher"]],
        phases=[
            Phase(
                name="work",
                role="searcher",
                input=lambda run: Query(query="tides"),
                review=True,
                review_waits=True,
            )
        ],
        result=result,
    )


@pytest.mark.parametrize("kind", ["routed", "static"])
async def test_a_skipped_result_card_leaves_the_phase_without_an_output(kind: str) -> None:
    """A routed phase's result skipped at review is a phase without an output, as a static
    review phase's skipped output is: a `result` that reads it fails the run, and one that
    reads it with a fallback (`run.outputs`) completes."""

    def build(result: Any) -> Workflow:
        if kind == "static":
            return static_reviewed(result)
        base = routed_workflow([], review_waits=True)
        return Workflow(
            name=base.name, input=Ask, roles=base.roles, phases=base.phases, result=result
        )

    outcomes = []
    for wf in (build(lambda run: run.output("work")), build(lambda run: run.outputs("work"))):
        store = SQLiteStore(":memory:")
        board = Board(store, workflow=wf)
        run = await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
        while run.status == "waiting":
            [card] = board.cards("r", "review")
            verb = "skip" if card.item in ("work", "work[result]") else "approve"
            getattr(board, verb)(card.id, by="ada")
            run = await Foreman(wf, store).resume("r")
        phase = RunState.fold("r", store.events("r")).phases["work"]
        outcomes.append((phase.status, run.status, run.reason, run.result))
    assert outcomes == [
        (
            "completed",
            "failed",
            "result() raised OutputLookupError: phase 'work' has no accepted output",
            None,
        ),
        ("completed", "completed", "", []),
    ]


@pytest.mark.parametrize("verb", ["", "park", "skip"])
@pytest.mark.parametrize("kind", ["static", "planned", "routed"])
async def test_a_gate_card_decided_while_its_item_was_escalated_stays_as_decided(
    kind: str, verb: str
) -> None:
    """An item escalated at its gate's time-out comes back to its gate once answered: the gate
    card is the one a person may have parked or skipped meanwhile, not a new card in review."""
    wf, key = escalating(kind, "gate-timeout"), KEYS[kind]
    store = SQLiteStore(":memory:")
    board = Board(store, workflow=wf)
    await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    await Foreman(wf, store).resume("r")  # the gate times out: escalated
    [gate] = board.cards("r", "review")
    if verb:
        getattr(board, verb)(gate.id, by="ada")
    [asked] = board.cards("r", "escalated")
    board.answer(asked.id, "go on", by="ada")
    run = await Foreman(wf, store).resume("r")
    column = {"": "review", "park": "parked", "skip": "skipped"}[verb]
    assert board.card(gate.id).card.column.value == column
    made = [e for e in store.events("r") if e.kind is EventKind.CARD_CREATED]
    assert [e.data["card_id"] for e in made].count(gate.id) == 1  # made once
    assert key not in dispatched(store, "r")
    item = RunState.fold("r", store.events("r")).items[key]
    assert item.status == {"": "gated", "park": "parked", "skip": "skipped"}[verb]
    if not verb:
        assert run.status == "waiting"
    elif kind == "routed":  # parked or skipped: the router went on without it
        assert run.reason == "phase 'work': step(s) s2 wait for a person's review"
    else:  # parked or skipped: nothing waits for it
        assert run.status != "waiting"


async def test_a_planned_step_escalated_at_its_gate_is_waited_for_before_a_replan() -> None:
    """A step escalated at its gate's time-out waits for a person's answer, like a step in
    review, before the plan is declared stalled: a replan around it would leave its card open
    and the run waiting for an item no plan runs."""
    wf = escalating("planned", "gate-timeout")
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=wf.roles,
        phases=[replace(wf.phases[0], max_replans=1)],
        result=lambda run: run.step("research", "a"),
    )
    store = SQLiteStore(":memory:")
    board = Board(store, workflow=wf)
    await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    escalated = await Foreman(wf, store).resume("r")
    assert (escalated.status, escalated.reason) == (
        "waiting",
        "phase 'research': step(s) a wait for a person",
    )
    assert dispatched(store, "r") == ["research:plan[1]"]  # the planner was not asked again
    [gate] = board.cards("r", "review")
    board.approve(gate.id, by="ada")
    [asked] = board.cards("r", "escalated")
    board.answer(asked.id, "go on", by="ada")
    done = await finish(wf, store, board)
    assert done.status == "completed", done.reason
    assert done.result == Finding(query="tides", text="tides is known")
    assert dispatched(store, "r") == ["research:plan[1]", "research[a]"]
    assert not any(e.kind is EventKind.PLAN_STALLED for e in store.events("r"))


async def test_a_planned_step_escalated_at_its_gate_and_skipped_is_replanned() -> None:
    wf = escalating("planned", "gate-timeout")
    wf = Workflow(
        name=wf.name, input=Ask, roles=wf.roles, phases=[replace(wf.phases[0], max_replans=1)]
    )
    store = SQLiteStore(":memory:")
    board = Board(store, workflow=wf)
    await Foreman(wf, store).run(Ask(topics=["tides"]), run_id="r")
    await Foreman(wf, store).resume("r")
    [asked] = board.cards("r", "escalated")
    board.skip(asked.id, by="ada")
    await Foreman(wf, store).resume("r")
    [stalled] = [e for e in store.events("r") if e.kind is EventKind.PLAN_STALLED]
    assert stalled.data["reason"] == "step(s) a ended without an output"
    assert "research:plan[2]" in dispatched(store, "r")


@pytest.mark.parametrize("kind", ["planned", "routed"])
async def test_a_planner_or_router_killed_before_its_escalation_card_gets_it_on_resume(
    kind: str,
) -> None:
    """A planner's or router's item (phase ``PHASE:plan``, ``PHASE:route``: no phase of the
    workflow's own) that escalates is carded on resume too, so a person can answer it."""
    if kind == "planned":
        wf = workflow([{"id": "a", "role": "nobody", "input": {}, "objective": "x"}], result=False)
        key = "research:plan[1]"
    else:

        async def router(view: RouterView, ctx: Context) -> Route:
            return Route(action="dispatch", role="nobody", input={})

        base = routed_workflow([], result=False)
        card = Role(name="lead", purpose="Route.", input=RouterView, output=Route, function=router)
        wf = Workflow(name=base.name, input=Ask, roles=[card, *base.roles[1:]], phases=base.phases)
        key = "work:route[1]"
    store = SQLiteStore(":memory:")
    kill = kill_when(lambda e: e.kind is EventKind.ITEM_ESCALATED and e.item == key)
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[kill]).run(Ask(topics=["tides"]), run_id="r")
    waiting = await Foreman(wf, store).resume("r")
    assert waiting.status == "waiting"
    [asked] = Board(store).cards("r", "escalated")
    assert asked.item == key
    mark = last_seq(store, "r")
    Board(store).skip(asked.id, by="ada")
    await Foreman(wf, store).resume("r")
    assert not [
        e for e in store.events("r") if e.seq > mark and e.kind is EventKind.CARD_CREATED
    ]  # made once


async def test_the_web_board_decides_a_planned_steps_card_and_the_merge_takes_it(
    tmp_path: Path,
) -> None:
    """The web app's amend and approve on step cards, then `resume`: the merge takes the
    approved and the amended outputs (the web app decides through `decisions.Board`)."""
    import re

    from fastapi.testclient import TestClient

    from hubspoke.web.app import create_app

    wf = workflow(review_waits=True)
    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    await Foreman(wf, store).run(Ask(topics=["x"]), run_id="r")
    cards = {c.item: c.id for c in Board(store).cards("r", "review")}
    token, base = "tok-plan-review", "http://127.0.0.1:8765"
    with TestClient(create_app(db, token, by="ana"), base_url=base) as web:
        assert web.get(f"/?token={token}", follow_redirects=False).status_code == 303
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', web.get("/board").text)
        assert found is not None
        csrf = found.group(1)
        amended = web.post(
            f"/cards/{cards['research[a]']}/amend",
            data={"csrf": csrf, "field.text": "tides, amended on the web"},
            follow_redirects=False,
        )
        approved = web.post(
            f"/cards/{cards['research[b]']}/decide",
            data={"csrf": csrf, "verb": "approve"},
            follow_redirects=False,
        )
        assert (amended.status_code, approved.status_code) == (303, 303)
    waiting = await Foreman(wf, store).resume("r")
    assert waiting.reason == "phase 'research': step(s) m wait for a person's review"
    [merged] = Board(store).cards("r", "review")
    assert Board(store).card(merged.id).content == {
        "text": "tides, amended on the web; moons is known"
    }
