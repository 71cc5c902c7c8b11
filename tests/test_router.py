"""The router foreman (docs/router.md): a router role decides each next action from a bounded
view of the run; every decision is checked (an invalid one is corrected like any invalid
output), and every invariant holds whatever it decides: budgets, the step cap, repeated
dispatches, the escalation cap, the result's schema, and resume after a kill."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hubspoke import (
    Board,
    Budget,
    Context,
    DefinitionError,
    Event,
    EventKind,
    Foreman,
    Phase,
    Role,
    Route,
    RouterView,
    SQLiteStore,
    TopK,
    Workflow,
)
from hubspoke.foreman._route_check import Step, check_decision, router_brief, router_view
from hubspoke.loader import load_workflow
from hubspoke.models.offline import Move, Turn, answer
from hubspoke.testing import SideEffects, payload_errors, stream
from tests.helpers import Killed, kill_when
from tests.test_resume import assert_contiguous, start_and_kill
from tests.workflows.planned import ROLES, Answer, Ask, Finding, Query

pytestmark = pytest.mark.anyio

CARDS = {r.name: r for r in ROLES}


class Summary(BaseModel):
    summary: str
    count: int


CARDS["summer"] = Role(
    name="summer",
    purpose="Summarise a finding.",
    input=Finding,
    output=Summary,
    function=lambda f, c: Summary(summary=f"{f.query}: {f.text}", count=1),
)


def route(action: str, **fields: Any) -> Route:
    return Route.model_validate({"action": action, **fields})


def dispatch(role: str = "searcher", **input: Any) -> Route:
    return route("dispatch", role=role, input=input or {"query": "tides"})


def accepted(id: str, role: str = "searcher", **input: Any) -> Step:
    output = Finding(query=input.get("query", id), text=f"{id} found")
    return Step(id, role, input or {"query": id}, "accepted", artifact=f"a-{id}", output=output)


def errors_of(decision: Route, steps: list[Step] | None = None, **limits: Any) -> list[str]:
    args: dict[str, Any] = {
        "roles": CARDS,
        "allowed": ["searcher", "merger"],
        "steps": steps or [],
        "max_steps": 3,
        "returns": Answer,
    } | limits
    return [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in check_decision(decision, **args)
    ]


# --- the decision check, from a table -----------------------------------------------------------

VALID: list[tuple[str, Route, list[Step]]] = [
    ("a dispatch of an allowed role", dispatch(), []),
    (
        "a reference to an accepted step",
        dispatch("merger", findings=[{"$from": "s1"}]),
        [accepted("s1")],
    ),
    ("a finish with the result's fields", route("finish", result={"text": "done"}), []),
    (
        "a finish with a field of a step's output",
        route("finish", result={"text": {"$from": "s1", "field": "text"}}),
        [accepted("s1")],
    ),
    ("an escalation", route("escalate", question="which region?"), []),
    ("an abort", route("abort", reason="nothing to find"), []),
]

INVALID: list[tuple[str, Route, list[Step], dict[str, Any], str]] = [
    (
        "a field another action takes",
        route("dispatch", role="searcher", input={"query": "x"}, question="why?"),
        [],
        {},
        "question: dispatch takes no question (it takes input, objective, role)",
    ),
    (
        "an escalation without a question",
        route("escalate", question=" "),
        [],
        {},
        "question: an escalation asks a person a question",
    ),
    ("an abort without a reason", route("abort"), [], {}, "reason: an abort says why"),
    (
        "an unknown role",
        dispatch("oracle"),
        [],
        {},
        "role: no role named 'oracle' (roles the router may dispatch: searcher, merger)",
    ),
    (
        "a role the phase does not allow",
        dispatch("summer", query="x", text="y"),
        [],
        {},
        "role: the router may not dispatch the role 'summer'",
    ),
    (
        "an input invalid for the role, strictly",
        dispatch(query="x", depth="2"),
        [],
        {},
        "input.depth: Input should be a valid integer",
    ),
    (
        "an input missing a field",
        route("dispatch", role="searcher", input={}),
        [],
        {},
        "input.query: Field required",
    ),
    (
        "a reference to a step that has no output",
        dispatch("merger", findings=[{"$from": "s1"}]),
        [Step("s1", "searcher", {"query": "a"}, "failed", "boom")],
        {},
        "input.findings: no step 's1' to take the output of (steps: s2)",
    ),
    (
        "the same dispatch again",
        dispatch(query="a"),
        [accepted("s1", query="a")],
        {},
        "action: repeats step 's1' (searcher, accepted): the same dispatch learns nothing new",
    ),
    (
        "a dispatch past the step cap",
        dispatch(query="z"),
        [accepted("s1"), accepted("s2"), accepted("s3")],
        {},
        "action: no steps left (max_steps=3)",
    ),
    (
        "a result invalid for the schema",
        route("finish", result={"txt": "done"}),
        [],
        {},
        "result.text: Field required",
    ),
    (
        "a result referencing a step that has no output",
        route("finish", result={"$from": "s9"}),
        [accepted("s1")],
        {},
        "result.$whole: no accepted step 's9' to take the output of (accepted: s1)",
    ),
    (
        "a result whose referenced output does not fit",
        route("finish", result={"$from": "s1"}),
        [accepted("s1")],
        {"returns": Summary},
        "result.summary: Field required",
    ),
]


@pytest.mark.parametrize(("name", "decision", "steps"), VALID, ids=[v[0] for v in VALID])
def test_a_valid_decision_has_no_errors(name: str, decision: Route, steps: list[Step]) -> None:
    assert errors_of(decision, steps) == []


@pytest.mark.parametrize(
    ("name", "decision", "steps", "limits", "error"), INVALID, ids=[v[0] for v in INVALID]
)
def test_an_invalid_decision_names_its_error(
    name: str, decision: Route, steps: list[Step], limits: dict[str, Any], error: str
) -> None:
    found = errors_of(decision, steps, **limits)
    assert any(e.startswith(error) for e in found), found


def test_a_router_may_offer_no_more_than_four_actions() -> None:
    schema = Route.model_json_schema()
    assert schema["properties"]["action"]["enum"] == ["dispatch", "finish", "escalate", "abort"]


# --- end to end ---------------------------------------------------------------------------------


async def lead(view: RouterView, ctx: Context) -> Route:
    """A sensible router: one search per topic, a merge of them all, then finish with it."""
    topics = view.task["topics"]
    searches = [s for s in view.steps if s.role == "searcher"]
    if len(searches) < len(topics):
        return dispatch(query=topics[len(searches)])
    merges = [s for s in view.steps if s.role == "merger"]
    if not merges:
        return dispatch("merger", findings=[{"$from": s.id} for s in searches])
    return route("finish", result={"$from": merges[0].id})


def router_card(function: Any = lead, **changes: Any) -> Role:
    return Role(
        name="lead",
        purpose="Decide the next step.",
        input=RouterView,
        output=Route,
        function=function,
        **changes,
    )


def routed(router: Role | None = None, *, players: Any = None, **phase: Any) -> Workflow:
    options: dict[str, Any] = {
        "route_by": "lead",
        "roles": ["searcher", "merger"],
        "max_steps": 6,
        "returns": Answer,
    }
    options |= phase
    return Workflow(
        name="routed",
        input=Ask,
        roles=[router or router_card(), CARDS["searcher"], CARDS["merger"], CARDS["summer"]],
        phases=[Phase(name="work", input=lambda run: run.input, **options)],
        players=players or {},
        result=lambda run: run.output("work"),
    )


def turn(n: int, decided: str) -> list[str]:
    """The stream of a router turn decided at its first attempt."""
    return [
        f"dispatch.finished work:route lead work:route[{n}] #1 output",
        f"item.accepted work:route lead work:route[{n}]",
        f"router.decided work lead work:route[{n}] turn={n} {decided}",
    ]


def step(id: str, role: str) -> list[str]:
    return [
        f"dispatch.finished work {role} work[{id}] #1 output",
        f"item.accepted work {role} work[{id}]",
    ]


def rejected_then_escalated(n: int, errors: int = 1) -> list[str]:
    """A router turn whose decision is invalid, twice the same: retried once with the errors
    as the correction, then stuck (the same decision for the same correction), then a person."""
    return [
        f"dispatch.finished work:route lead work:route[{n}] #1 output",
        f"router.rejected work lead work:route[{n}] #1 errors={errors}",
        f"item.retry work:route lead work:route[{n}] #2",
        f"dispatch.finished work:route lead work:route[{n}] #2 output",
        f"router.rejected work lead work:route[{n}] #2 errors={errors}",
        f"item.retry work:route lead work:route[{n}] #3",
        f"item.stuck work:route lead work:route[{n}] #3",
        f"item.escalated work:route lead work:route[{n}]",
        f"card.created work:route lead work:route[{n}] escalated",
        "phase.finished work:route waiting",
        "phase.finished work waiting",
        "run.finished waiting",
    ]


async def run(
    wf: Workflow, topics: list[str] | None = None, **kwargs: Any
) -> tuple[Any, list[str], SQLiteStore]:
    store = SQLiteStore(":memory:")
    result = await Foreman(wf, store, **kwargs).run(Ask(topics=topics or ["a", "b"]))
    events = store.events(result.run_id)
    assert payload_errors(events) == []
    return (
        result,
        stream(events, skip=[EventKind.DISPATCH_STARTED, EventKind.MODEL_EXCHANGE]),
        store,
    )


async def test_a_router_on_function_specialists_runs_its_decisions_to_a_result() -> None:
    result, lines, _ = await run(routed())
    assert result.status == "completed", result.reason
    assert result.result == Answer(text="a is known; b is known")
    assert lines == [
        "run.started",
        "phase.started work items=0",
        "phase.started work:route items=0",
        *turn(1, "dispatch s1=searcher"),
        *step("s1", "searcher"),
        *turn(2, "dispatch s2=searcher"),
        *step("s2", "searcher"),
        *turn(3, "dispatch s3=merger"),
        *step("s3", "merger"),
        *turn(4, "finish"),
        "item.accepted work lead work[result]",
        "phase.finished work:route completed",
        "phase.finished work completed",
        "run.finished completed",
    ]
    # Its items are decided as it runs: counted as they come (`hubspoke show` read "4/0").
    counts = {name: (p.accepted, p.items) for name, p in result.state.phases.items()}
    assert counts == {"work": (4, 4), "work:route": (4, 4)}


def always(decision: Route) -> Callable[[RouterView, Context], Any]:
    async def play(view: RouterView, ctx: Context) -> Route:
        return decision

    return play


async def counting(view: RouterView, ctx: Context) -> Route:
    """A router that never finishes: a new search every turn."""
    return dispatch(query=f"q{len(view.steps) + sum(view.earlier.values())}")


START = ["run.started", "phase.started work items=0", "phase.started work:route items=0"]


# --- a hostile router: every invariant holds, and the run ends in a declared state ---------------


@pytest.mark.parametrize(
    ("name", "decision", "error"),
    [
        ("an unknown role", dispatch("oracle"), "role: no role named 'oracle'"),
        (
            "a role it may not use",
            dispatch("summer", query="x", text="y"),
            "role: the router may not dispatch the role 'summer'",
        ),
        ("an invalid input", dispatch(query=7), "input.query: Input should be a valid"),
        ("a result invalid for the schema", route("finish", result={"txt": 1}), "result"),
    ],
)
async def test_a_router_that_keeps_deciding_wrong_is_corrected_then_handed_to_a_person(
    name: str, decision: Route, error: str
) -> None:
    result, lines, store = await run(routed(router_card(always(decision))))
    assert lines == [*START, *rejected_then_escalated(1)]
    assert result.status == "waiting"
    assert result.reason == (
        "phase 'work': its router 'lead' made no valid decision and waits for a person"
    )
    events = store.events(result.run_id)
    [first, *_] = [e for e in events if e.kind is EventKind.ROUTER_REJECTED]
    assert first.data["correction"].startswith("Your previous output was invalid:")
    assert error in first.data["correction"]
    assert not [e for e in events if e.kind is EventKind.ROUTER_DECIDED]


async def test_a_router_that_repeats_a_dispatch_is_stopped() -> None:
    result, lines, store = await run(routed(router_card(always(dispatch(query="a")))))
    assert lines == [
        *START,
        *turn(1, "dispatch s1=searcher"),
        *step("s1", "searcher"),
        *rejected_then_escalated(2),
    ]
    assert result.status == "waiting"
    [rejected, _] = [e for e in store.events(result.run_id) if e.kind is EventKind.ROUTER_REJECTED]
    assert "repeats step 's1' (searcher, accepted)" in rejected.data["correction"]


async def test_a_router_that_never_finishes_is_held_by_the_step_cap() -> None:
    result, lines, store = await run(routed(router_card(counting), max_steps=3))
    assert lines == [
        *START,
        *turn(1, "dispatch s1=searcher"),
        *step("s1", "searcher"),
        *turn(2, "dispatch s2=searcher"),
        *step("s2", "searcher"),
        *turn(3, "dispatch s3=searcher"),
        *step("s3", "searcher"),
        *rejected_then_escalated(4),
    ]
    [rejected, _] = [e for e in store.events(result.run_id) if e.kind is EventKind.ROUTER_REJECTED]
    assert "no steps left (max_steps=3)" in rejected.data["correction"]


async def test_a_router_that_would_overrun_the_budget_is_stopped_by_it() -> None:
    wf = routed(router_card(counting), max_steps=50)
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=wf.roles,
        phases=wf.phases,
        budget=Budget(steps=5),
        result=wf.result,
    )
    result, lines, _ = await run(wf)
    assert result.status == "exhausted"
    assert result.state.steps == 5  # three turns and two steps: the third step is refused
    assert lines == [
        *START,
        *turn(1, "dispatch s1=searcher"),
        *step("s1", "searcher"),
        *turn(2, "dispatch s2=searcher"),
        *step("s2", "searcher"),
        *turn(3, "dispatch s3=searcher"),
        "budget.refused work searcher work[s3] #1",
        "phase.finished work stopped",
        "phase.finished work:route stopped",
        "run.finished exhausted",
    ]


async def test_a_role_budget_holds_whatever_the_router_dispatches() -> None:
    searcher = Role(
        name="searcher",
        purpose="Search.",
        input=CARDS["searcher"].input,
        output=Finding,
        function=CARDS["searcher"].function,
        run_budget=Budget(steps=2),
    )
    wf = routed(router_card(counting), max_steps=4)
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=[wf.roles[0], searcher, CARDS["merger"], CARDS["summer"]],
        phases=wf.phases,
        result=wf.result,
    )
    result, lines, _ = await run(wf)
    # The role's budget refuses its third and fourth steps; each is left to the router, which
    # sees why, until the step cap holds it and a person is asked.
    assert result.status == "waiting"
    assert [x for x in lines if x.startswith(("item.accepted work searcher", "item.failed"))] == [
        "item.accepted work searcher work[s1]",
        "item.accepted work searcher work[s2]",
        "item.failed work searcher work[s3]",
        "item.failed work searcher work[s4]",
    ]
    assert lines.count("budget.refused work searcher work[s3] #1") == 1
    assert lines[-12:] == rejected_then_escalated(5)
    failed = result.state.items["work[s3]"]
    assert failed.reason == (
        "left to the router: failure ladder exhausted (budget: role searcher steps: reserving 1 "
        "would pass the limit 2 (2 used or reserved))"
    )


async def test_a_router_that_aborts_fails_the_phase_with_its_reason() -> None:
    result, lines, _ = await run(routed(router_card(always(route("abort", reason="no sources")))))
    assert result.status == "failed"
    assert result.reason == "phase 'work': the router aborted: no sources"
    assert lines == [
        *START,
        *turn(1, "abort"),
        "phase.finished work:route failed",
        "phase.finished work failed",
        "run.finished failed",
    ]


async def test_a_router_escalation_waits_for_a_person_whose_answer_it_then_sees(
    tmp_path: Path,
) -> None:
    seen: list[list[str]] = []

    async def asking(view: RouterView, ctx: Context) -> Route:
        seen.append(view.answers)
        if not view.answers:
            return route("escalate", question="which topic first?")
        return route("finish", result={"text": view.answers[-1]})

    wf = routed(router_card(asking))
    store = SQLiteStore(tmp_path / "j.db")
    first = await Foreman(wf, store).run(Ask(topics=["a"]), run_id="r")
    assert (first.status, first.reason) == (
        "waiting",
        "phase 'work': the router asks a person: which topic first?",
    )
    assert stream(store.events("r"), skip=[EventKind.DISPATCH_STARTED])[3:] == [
        *turn(1, "escalate")[0:3],
        "item.escalated work lead work:ask[1]",
        "card.created work lead work:ask[1] escalated",
        "phase.finished work:route waiting",
        "phase.finished work waiting",
        "run.finished waiting",
    ]
    board = Board(store, workflow=wf)
    [card] = board.cards("r", "escalated")
    board.answer(card.id, "tides", by="ada")
    done = await Foreman(wf, store).resume("r")
    assert done.status == "completed", done.reason
    assert done.result == Answer(text="which topic first? -> tides")
    assert seen == [[], ["which topic first? -> tides"]]  # the decided turn is not asked again

    # A person may skip the question instead: the router decides again, without an answer.
    seen.clear()
    await Foreman(wf, store).run(Ask(topics=["a"]), run_id="r2")
    [card] = board.cards("r2", "escalated")
    board.skip(card.id, by="ada")
    again = await Foreman(wf, store).resume("r2")
    assert (again.status, again.reason) == (
        "waiting",
        "phase 'work': the router asks a person: which topic first?",
    )
    assert seen == [[], []]


async def test_router_escalations_count_toward_the_workflows_escalation_cap() -> None:
    wf = routed(router_card(always(route("escalate", question="?"))))
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=wf.roles,
        phases=wf.phases,
        max_escalations=0,
        result=wf.result,
    )
    result, lines, _ = await run(wf)
    assert result.status == "aborted"
    assert lines[-4:] == [
        "item.failed work lead work:ask[1]",
        "phase.finished work stopped",
        "phase.finished work:route stopped",
        "run.finished aborted",
    ]


# --- the router's prompt stays small and bounded -------------------------------------------------


def prompt_tokens(router: Role, phase: Phase, view: RouterView) -> int:
    """The router's first request as the agent specialist sends it, weighed by the estimate
    budgets are charged with (`hubspoke.specialists.agent`: about 3 characters a token)."""
    from pydantic_core import to_json

    from hubspoke.specialists.agent import (
        _request_parameters,
        _schema_weight,
        _weight,
        compile_system_prompt,
    )

    brief = router_brief(phase, router.purpose)
    user = to_json(
        {"brief": brief.to_dict(), "input": view.model_dump(mode="json"), "attempt": 1}
    ).decode()
    params = _request_parameters(router)
    chars = _schema_weight(params) + _weight(compile_system_prompt(router)) + _weight(user)
    assert len(params.function_tools) + len(params.output_tools) <= 4  # at most 4 tools
    return chars // 3 + 1


def history(n: int) -> list[Step]:
    """n steps as a long run has them: accepted, failed with long reasons, stuck..."""
    steps = []
    for i in range(1, n + 1):
        if i % 7 == 0:
            steps.append(Step(f"s{i}", "searcher", {"query": f"q{i}"}, "failed", "boom " * 80))
        elif i % 11 == 0:
            steps.append(Step(f"s{i}", "merger", {}, "stuck", "the same invalid output " * 9))
        else:
            out = Summary(summary="a finding about the tides " * 20, count=i)
            steps.append(
                Step(f"s{i}", "summer", {"query": f"q{i}"}, "accepted", "", f"art_{i:020}", out)
            )
    return steps


def test_the_routers_prompt_is_small_and_does_not_grow_with_the_run() -> None:
    router = router_card()
    phase = Phase(name="work", route_by="lead", input=lambda run: run.input, roles=["searcher"])
    roles = [CARDS["searcher"], CARDS["merger"], CARDS["summer"]]
    task = {"topics": ["tides", "moons", "orbits"]}

    def at(n: int) -> int:
        view = router_view(task, roles, history(n), keep=phase.keep_steps, max_steps=1000)
        return prompt_tokens(router, phase, view)

    at_10, at_500 = at(10), at(500)
    assert at_10 < 1200 and at_500 < 1200, (at_10, at_500)
    assert abs(at_500 - at_10) <= 10, (at_10, at_500)  # the digits of counts and ids


def test_the_router_never_sees_a_workers_output() -> None:
    secret = Finding(query="q", text="the raw text of a worker")
    steps = [Step("s1", "searcher", {"query": "q"}, "accepted", "", "a1", secret)]
    view = router_view({"t": 1}, [CARDS["searcher"]], steps, keep=6, max_steps=5)
    assert "raw text" not in view.model_dump_json()
    assert view.steps[0].note == "Finding (query, text)"
    summed = [Step("s1", "summer", {}, "accepted", "", "a1", Summary(summary="tides", count=1))]
    assert router_view({}, [], summed, keep=6, max_steps=5).steps[0].note == "tides"


# --- the offline model plays the router ----------------------------------------------------------


def router_player(turn: Turn) -> Move:
    """The router as a model plays it: it reads the view in its prompt. Its first decision
    names a role that does not exist; corrected, it searches each topic, merges, finishes."""
    view = RouterView.model_validate(turn.input)
    if not view.steps and turn.correction is None:
        return answer(action="dispatch", role="oracle", input={"query": "tides"})
    topics = view.task["topics"]
    searches = [s for s in view.steps if s.role == "searcher"]
    if len(searches) < len(topics):
        return answer(action="dispatch", role="searcher", input={"query": topics[len(searches)]})
    merges = [s for s in view.steps if s.role == "merger"]
    if not merges:
        findings = [{"$from": s.id} for s in searches]
        return answer(action="dispatch", role="merger", input={"findings": findings})
    return answer(action="finish", result={"$from": merges[0].id})


async def test_the_offline_model_plays_the_router() -> None:
    router = Role(name="lead", purpose="Decide the next step.", input=RouterView, output=Route)
    result, _, store = await run(routed(router, players={"lead": router_player}))
    assert result.status == "completed", result.reason
    assert result.result == Answer(text="a is known; b is known")

    def asked(n: int, attempt: int = 1) -> list[str]:
        at = f"work:route lead work:route[{n}] #{attempt}"
        return [f"dispatch.started {at}", f"model.exchange {at} final_result"]

    def ran(id: str, role: str) -> list[str]:
        return [f"dispatch.started work {role} work[{id}] #1", *step(id, role)]

    assert stream(store.events(result.run_id)) == [
        *START,
        *asked(1),
        "dispatch.finished work:route lead work:route[1] #1 output",
        "router.rejected work lead work:route[1] #1 errors=1",
        "item.retry work:route lead work:route[1] #2",
        *asked(1, 2),
        "dispatch.finished work:route lead work:route[1] #2 output",
        "item.accepted work:route lead work:route[1]",
        "router.decided work lead work:route[1] turn=1 dispatch s1=searcher",
        *ran("s1", "searcher"),
        *asked(2),
        *turn(2, "dispatch s2=searcher"),
        *ran("s2", "searcher"),
        *asked(3),
        *turn(3, "dispatch s3=merger"),
        *ran("s3", "merger"),
        *asked(4),
        *turn(4, "finish"),
        "item.accepted work lead work[result]",
        "phase.finished work:route completed",
        "phase.finished work completed",
        "run.finished completed",
    ]
    events = store.events(result.run_id)
    [retry] = [e for e in events if e.kind is EventKind.ITEM_RETRY]
    assert retry.data["correction"] == (
        "Your previous output was invalid:\n- role: no role named 'oracle' (roles the router may "
        "dispatch: searcher, merger)"
    )


# --- resume ---------------------------------------------------------------------------------------

KILLS: dict[str, Callable[[Event], bool]] = {
    "after a dispatch was decided": lambda e: e.kind is EventKind.ROUTER_DECIDED,
    "after a step's output, before its acceptance": lambda e: (
        e.kind is EventKind.DISPATCH_FINISHED and e.item == "work[s2]"
    ),
    "after a step was accepted": lambda e: (
        e.kind is EventKind.ITEM_ACCEPTED and e.item == "work[s1]"
    ),
    "after a turn was accepted, before its decision was journaled": lambda e: (
        e.kind is EventKind.ITEM_ACCEPTED and e.item == "work:route[3]"
    ),
    "after the finish was decided, before its result": lambda e: (
        e.kind is EventKind.ROUTER_DECIDED and e.data["action"] == "finish"
    ),
}


@pytest.mark.parametrize("kill", list(KILLS), ids=list(KILLS))
async def test_a_killed_routed_run_resumes_as_the_uncrashed_run(kill: str, tmp_path: Path) -> None:
    asked: list[int] = []

    async def recording(view: RouterView, ctx: Context) -> Route:
        asked.append(len(view.steps))
        return await lead(view, ctx)

    wf = routed(router_card(recording))
    store = SQLiteStore(tmp_path / "j.db")
    whole = await Foreman(wf, store).run(Ask(topics=["a", "b"]), run_id="whole")
    uncrashed, asked_whole = stream(store.events("whole")), list(asked)
    asked.clear()
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[kill_when(KILLS[kill])]).run(
            Ask(topics=["a", "b"]), run_id="r"
        )
    before = store.events("r")
    done_before = {e.item for e in before if e.kind is EventKind.ITEM_ACCEPTED}
    result = await Foreman(wf, store).resume("r")
    assert (result.status, result.result) == (whole.status, whole.result)
    events = store.events("r")
    assert payload_errors(events) == []
    resumed_at = next(e.seq for e in events if e.kind is EventKind.RUN_RESUMED)
    again = {e.item for e in events if e.seq > resumed_at and e.kind is EventKind.DISPATCH_STARTED}
    assert not again & done_before  # no accepted step or decided turn runs again
    assert asked == asked_whole  # each turn asked once, as in the uncrashed run
    # The same decisions and acceptances, in the same order (a dispatch whose output was not
    # accepted at the crash runs again, as anywhere in hubspoke).
    kept = ("router.", "item.accepted", "phase.finished", "run.finished")
    assert [x for x in stream(events) if x.startswith(kept)] == [
        x for x in uncrashed if x.startswith(kept)
    ]


def test_a_sigkilled_routed_run_resumes_without_rerunning_accepted_steps(tmp_path: Path) -> None:
    db, effects, asked = tmp_path / "journal.db", tmp_path / "effects.db", tmp_path / "asked"
    env = {"ROUTED_DB": str(effects), "ROUTED_SLEEP": "0.05", "ROUTED_ASKED": str(asked)}
    ref = "tests.workflows.routed:workflow"
    topics = [f"t{i}" for i in range(8)]
    start_and_kill(db, ref, "run_routed", {"topics": topics}, after=7, env=env)
    store = SQLiteStore(db)
    before = store.events("run_routed")
    assert before[-1].kind is not EventKind.RUN_FINISHED
    done_before = {e.item for e in before if e.kind is EventKind.ITEM_ACCEPTED}
    decided_before = [e.data["turn"] for e in before if e.kind is EventKind.ROUTER_DECIDED]
    for name, value in env.items():
        os.environ[name] = value
    try:
        result = asyncio.run(Foreman(load_workflow(ref), store).resume("run_routed"))
    finally:
        for name in env:
            os.environ.pop(name)
    assert result.status == "completed", result.reason
    assert result.result == Answer(text="; ".join(f"{t} is known" for t in topics))
    events = store.events("run_routed")
    assert_contiguous(events)
    resumed_at = next(e.seq for e in events if e.kind is EventKind.RUN_RESUMED)
    rerun = {e.item for e in events[resumed_at:] if e.kind is EventKind.DISPATCH_STARTED}
    assert not rerun & done_before  # neither a decided turn nor an accepted step ran again
    decided = [e.data["turn"] for e in events if e.kind is EventKind.ROUTER_DECIDED]
    assert decided == list(range(1, len(topics) + 3))  # each turn decided once, in order
    assert decided[: len(decided_before)] == decided_before
    assert SideEffects(effects).count() == len(topics)  # every search ran to its end once
    store.close()


# --- a routed phase's definition -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"roles": []}, "field 'roles': list the roles the router may use"),
        ({"roles": ["oracle"]}, "field 'roles': no role named 'oracle'"),
        ({"roles": ["lead"]}, "field 'roles': the router cannot dispatch itself"),
        ({"route_by": "searcher"}, "field 'route_by': role 'searcher' takes Query and returns"),
        ({"role": "searcher"}, "field 'route_by': a routed phase's router names the roles"),
        ({"max_steps": 0}, "field 'max_steps': must be a whole number of at least 1"),
        ({"keep_steps": 0}, "field 'keep_steps': must be a whole number of at least 1"),
        ({"returns": dict}, "field 'returns': must be a pydantic model class"),
        ({"select": TopK(1, key=len)}, "field 'select': a routed phase takes no over"),
        ({"review_waits": True}, "field 'review_waits': waits for review cards: set review=True"),
    ],
)
def test_a_wrong_routed_phase_is_refused_naming_the_field(
    changes: dict[str, Any], error: str
) -> None:
    with pytest.raises(DefinitionError) as raised:
        routed(**changes).check()
    assert error in str(raised.value)


def test_a_router_with_tools_is_refused() -> None:
    def lookup(q: str) -> str:
        return q

    with pytest.raises(DefinitionError, match="a router is offered only its answers"):
        routed(router_card(tools=[lookup])).check()


def test_a_phase_named_as_a_routed_phases_router_phase_is_refused() -> None:
    wf = routed()
    clash = Phase(name="work:route", role="searcher", input=lambda run: {"query": "x"})
    with pytest.raises(DefinitionError, match="the router of phase 'work' runs as phase"):
        Workflow(
            name=wf.name, input=Ask, roles=wf.roles, phases=[*wf.phases, clash], result=wf.result
        ).check()


def test_the_live_view_shows_the_routers_decisions_and_rejections() -> None:
    import io

    from rich.console import Console

    from hubspoke.cli.live import LiveProgress

    fixture = SQLiteStore(Path(__file__).parent / "fixtures" / "journal-v5.db", read_only=True)
    screen = io.StringIO()
    console = Console(file=screen, width=200)
    live = LiveProgress(console, "run_routed", ["notes"])
    for event in fixture.events("run_routed"):
        live(event)
    console.print(live.render())
    text = screen.getvalue()
    assert (
        "router rejected notes:route[1] (router) 1 error(s): no role named 'oracle' (roles the "
        "router may dispatch: noter)"
    ) in text
    assert "router notes:route[1] (router) dispatch s1 (noter)" in text
    assert "router notes:route[2] (router) finish" in text


# --- whatever the router decides ------------------------------------------------------------------

DECISIONS = st.sampled_from(
    [
        dispatch(query="a"),
        dispatch(query="b"),
        dispatch(query="boom"),  # a step that fails
        dispatch("oracle"),
        dispatch(query=7),
        dispatch("merger", findings=[{"$from": "s1"}]),
        dispatch("merger", findings=[{"$from": "s9"}]),
        route("finish", result={"text": "done"}),
        route("finish", result={"$from": "s2"}),
        route("finish", result={"nothing": 1}),
        route("escalate", question="which?"),
        route("abort", reason="enough"),
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    decisions=st.lists(DECISIONS, min_size=1, max_size=12),
    steps_budget=st.integers(1, 12),
    max_steps=st.integers(1, 4),
)
def test_whatever_the_router_decides_every_invariant_holds_and_the_run_ends(
    decisions: list[Route], steps_budget: int, max_steps: int
) -> None:
    """A router playing any sequence of decisions, valid or not (the last one repeated): the
    run never dispatches past its budget or the step cap, no invalid decision is applied, and
    the run ends in a declared state."""
    script = iter(decisions)
    last = [decisions[-1]]

    async def play(view: RouterView, ctx: Context) -> Route:
        last[0] = next(script, last[0])
        return last[0]

    async def search(query: Query, ctx: Context) -> Finding:
        if query.query == "boom":
            raise RuntimeError("no search for boom")
        return Finding(query=query.query, text=f"{query.query} is known")

    wf = routed(router_card(play), max_steps=max_steps)
    searcher = Role(
        name="searcher", purpose="Search.", input=Query, output=Finding, function=search
    )
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=[wf.roles[0], searcher, CARDS["merger"], CARDS["summer"]],
        phases=wf.phases,
        budget=Budget(steps=steps_budget),
        result=wf.result,
    )
    store = SQLiteStore(":memory:")
    result = asyncio.run(Foreman(wf, store).run(Ask(topics=["x"])))
    events = store.events(result.run_id)
    assert payload_errors(events) == []
    assert events[-1].kind is EventKind.RUN_FINISHED
    assert result.status in ("completed", "exhausted", "waiting", "failed")
    dispatched = sum(1 for e in events if e.kind is EventKind.DISPATCH_STARTED)
    assert dispatched == result.state.steps <= steps_budget
    decided = [e.data for e in events if e.kind is EventKind.ROUTER_DECIDED]
    steps = [d for d in decided if d["action"] == "dispatch"]
    assert len(steps) <= max_steps
    assert all(d.get("role") in ("searcher", "merger") for d in steps)
    keys = [json.dumps([d["role"], d["input"]], sort_keys=True) for d in steps]
    assert len(keys) == len(set(keys))  # no dispatch was repeated
    if result.status == "completed":
        assert decided[-1]["action"] == "finish"
        assert isinstance(result.result, Answer)


async def test_a_steps_human_gate_holds_it_until_a_person_approves() -> None:
    asked: list[int] = []

    async def recording(view: RouterView, ctx: Context) -> Route:
        asked.append(len(view.steps))
        return await lead(view, ctx)

    gated = Role(
        name="searcher",
        purpose="Search.",
        input=Query,
        output=Finding,
        function=CARDS["searcher"].function,
        approve_before_dispatch=True,
    )
    wf = routed(router_card(recording))
    wf = Workflow(
        name=wf.name,
        input=Ask,
        roles=[wf.roles[0], gated, CARDS["merger"], CARDS["summer"]],
        phases=wf.phases,
        result=wf.result,
    )
    store = SQLiteStore(":memory:")
    first = await Foreman(wf, store).run(Ask(topics=["a"]))
    assert (first.status, first.reason) == ("waiting", "phase 'work': step 's1' waits for a person")
    assert not any(
        e.kind is EventKind.DISPATCH_STARTED and e.role == "searcher"
        for e in store.events(first.run_id)
    )
    board = Board(store, workflow=wf)
    [card] = board.cards(first.run_id, "review")
    board.approve(card.id, by="ada")
    done = await Foreman(wf, store).resume(first.run_id)
    assert done.status == "completed", done.reason
    assert done.result == Answer(text="a is known")
    assert asked == [0, 1, 2]  # the turn that dispatched the gated step was not asked again


async def test_a_routed_phase_with_an_outbox_writes_only_its_result() -> None:
    store = SQLiteStore(":memory:")
    result = await Foreman(routed(outbox=True), store).run(Ask(topics=["a", "b"]))
    assert result.status == "completed"
    [entry] = store.outbox(result.run_id)
    assert (entry.item, entry.content) == ("work[result]", {"text": "a is known; b is known"})


async def test_a_routed_run_does_not_resume_on_a_workflow_whose_router_changed(
    tmp_path: Path,
) -> None:
    from hubspoke import WorkflowChanged

    store = SQLiteStore(tmp_path / "j.db")
    decided = kill_when(lambda e: e.kind is EventKind.ROUTER_DECIDED)
    with pytest.raises(Killed):
        await Foreman(routed(), store, listeners=[decided]).run(Ask(topics=["a"]), run_id="r")
    for changes in ({"roles": ["searcher"]}, {"returns": Summary}):
        with pytest.raises(WorkflowChanged):
            await Foreman(routed(**changes), store).resume("r")
    assert (await Foreman(routed(), store).resume("r")).status == "completed"


def test_show_prints_the_routers_decisions(tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from hubspoke.cli import app

    db = tmp_path / "v5.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "journal-v5.db", db)
    runner = CliRunner()
    report = json.loads(
        runner.invoke(app, ["show", "run_routed", "--db", str(db), "--json"]).stdout
    )
    assert report["routes"] == {
        "notes": {
            "rejected": 1,
            "decisions": [
                {
                    "turn": 1,
                    "action": "dispatch",
                    "step": "s1",
                    "role": "noter",
                    "status": "accepted",
                },
                {"turn": 2, "action": "finish"},
            ],
        }
    }
    text = runner.invoke(app, ["show", "run_routed", "--db", str(db)]).stdout
    assert "router of notes (2 decisions, 1 rejected)" in text
